//! Euler sampling of the flow ODE, as diffusers' `FlowMatchEulerDiscreteScheduler` runs it:
//! `x <- x + (sigma_next - sigma) * v`.

use candle_core::{DType, Result, Tensor, bail};
use serde::Deserialize;

use super::schedule::{
    TimeShiftType, ensure_finite, exponential, karras, linspace, shift_sigmas, stretch_to_terminal,
};
use super::{Scheduler, index_for_timestep, scale};

/// `FlowMatchEulerDiscreteScheduler`'s configuration, with the reference's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct FlowMatchEulerConfig {
    pub num_train_timesteps: usize,
    pub shift: f64,
    pub use_dynamic_shifting: bool,
    pub base_shift: Option<f64>,
    pub max_shift: Option<f64>,
    pub base_image_seq_len: usize,
    pub max_image_seq_len: usize,
    /// Runs the schedule from sigma 0 up to 1 (Mochi).
    pub invert_sigmas: bool,
    pub shift_terminal: Option<f64>,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub time_shift_type: TimeShiftType,
    pub stochastic_sampling: bool,
}

impl Default for FlowMatchEulerConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            shift: 1.0,
            use_dynamic_shifting: false,
            base_shift: Some(0.5),
            max_shift: Some(1.15),
            base_image_seq_len: 256,
            max_image_seq_len: 4096,
            invert_sigmas: false,
            shift_terminal: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            time_shift_type: TimeShiftType::Exponential,
            stochastic_sampling: false,
        }
    }
}

impl FlowMatchEulerConfig {
    fn validate(&self) -> Result<()> {
        let alternatives = [
            self.use_karras_sigmas,
            self.use_exponential_sigmas,
            self.use_beta_sigmas,
        ];
        if alternatives.iter().filter(|&&on| on).count() > 1 {
            bail!(
                "Euler: only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be set"
            );
        }
        if self.use_beta_sigmas {
            bail!("Euler: use_beta_sigmas is not implemented");
        }
        if self.use_dynamic_shifting {
            bail!("Euler: use_dynamic_shifting is not implemented (it needs a per-call mu)");
        }
        if self.stochastic_sampling {
            bail!("Euler: stochastic_sampling is not implemented");
        }
        if self.num_train_timesteps == 0 {
            bail!("Euler: num_train_timesteps must be at least 1");
        }
        if !(self.shift > 0.0 && self.shift.is_finite()) {
            bail!("Euler: shift must be positive, got {}", self.shift);
        }
        Ok(())
    }
}

pub struct FlowMatchEulerDiscreteScheduler {
    config: FlowMatchEulerConfig,
    /// The first and last noise levels of the shifted training schedule, which bound the
    /// inference schedule (float32 values, as the reference keeps them).
    sigma_max: f64,
    sigma_min: f64,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    step_index: Option<usize>,
}

impl FlowMatchEulerDiscreteScheduler {
    pub fn new(config: FlowMatchEulerConfig) -> Result<Self> {
        config.validate()?;
        // The training schedule is t / N for t = N..1, shifted, in float32; only its ends
        // (1 and 1 / N, shifted) are used. The inference schedule is then shifted a second
        // time, as in the reference.
        let train_steps = config.num_train_timesteps as f32;
        let shift = config.shift as f32;
        let shift_minus_one = (config.shift - 1.0) as f32;
        let shifted = |sigma: f32| shift * sigma / (1.0 + shift_minus_one * sigma);
        Ok(Self {
            sigma_max: shifted(1.0) as f64,
            sigma_min: shifted(1.0 / train_steps) as f64,
            config,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            step_index: None,
        })
    }

    pub fn config(&self) -> &FlowMatchEulerConfig {
        &self.config
    }
}

impl Scheduler for FlowMatchEulerDiscreteScheduler {
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        if num_inference_steps == 0 {
            bail!("Euler: num_inference_steps must be at least 1");
        }
        let train_steps = self.config.num_train_timesteps as f64;
        let mut sigmas: Vec<f64> = linspace(
            self.sigma_max * train_steps,
            self.sigma_min * train_steps,
            num_inference_steps,
        )
        .into_iter()
        .map(|t| t / train_steps)
        .collect();
        shift_sigmas(&mut sigmas, self.config.shift);
        if let Some(terminal) = self.config.shift_terminal.filter(|&t| t != 0.0) {
            stretch_to_terminal(&mut sigmas, terminal);
        }
        if self.config.use_karras_sigmas {
            sigmas = karras(&sigmas, num_inference_steps);
        } else if self.config.use_exponential_sigmas {
            sigmas = exponential(&sigmas, num_inference_steps);
        }
        ensure_finite(&sigmas, "Euler")?;

        let mut sigmas: Vec<f32> = sigmas.into_iter().map(|s| s as f32).collect();
        let final_sigma = if self.config.invert_sigmas {
            sigmas.iter_mut().for_each(|s| *s = 1.0 - *s);
            1.0
        } else {
            0.0
        };
        let train_steps = self.config.num_train_timesteps as f32;
        self.timesteps = sigmas.iter().map(|&s| (s * train_steps) as f64).collect();
        sigmas.push(final_sigma);
        self.sigmas = sigmas;
        self.reset();
        Ok(())
    }

    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    fn step(&mut self, model_output: &Tensor, timestep: f64, sample: &Tensor) -> Result<Tensor> {
        let step_index = match self.step_index {
            Some(index) => index,
            None => match index_for_timestep(&self.timesteps, timestep) {
                Some(index) => index,
                None => bail!("Euler: timestep {timestep} is not in the schedule"),
            },
        };
        let (Some(&sigma), Some(&sigma_next)) =
            (self.sigmas.get(step_index), self.sigmas.get(step_index + 1))
        else {
            bail!("Euler: all {} steps have been taken", self.timesteps.len());
        };
        // The reference upcasts the sample to float32 and returns the model output's dtype;
        // dt * v is rounded to the model output's dtype first.
        let work_dtype = match model_output.dtype() {
            DType::F64 => DType::F64,
            _ => DType::F32,
        };
        let velocity_step = scale(model_output, sigma_next - sigma)?.to_dtype(work_dtype)?;
        let sample = sample.to_dtype(DType::F32)?.to_dtype(work_dtype)?;
        let prev_sample = (sample + velocity_step)?;
        self.step_index = Some(step_index + 1);
        prev_sample.to_dtype(model_output.dtype())
    }

    fn reset(&mut self) {
        self.step_index = None;
    }
}
