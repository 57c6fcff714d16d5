//! Flow-matching samplers of the Wan pipelines, matching diffusers step for step:
//! `UniPCMultistepScheduler` with flow sigmas (the published Wan configuration) and
//! `FlowMatchEulerDiscreteScheduler` (plain Euler) as the simple alternative.
//!
//! Like the reference, schedules are computed in float64 and stored as float32, and every
//! step runs the reference's float32 scalar arithmetic on tensors of the sample's dtype.

mod flow_match_euler;
mod schedule;
mod unipc;

use std::path::Path;

use candle_core::{Result, Tensor};
use serde::Deserialize;

pub use flow_match_euler::{FlowMatchEulerConfig, FlowMatchEulerDiscreteScheduler};
pub use schedule::TimeShiftType;
pub use unipc::{
    FinalSigmasType, PredictionType, SolverType, TimestepSpacing, UniPcConfig,
    UniPcMultistepScheduler,
};

/// What a denoising loop needs from a sampler.
pub trait Scheduler {
    /// Builds the schedule for `num_inference_steps` steps and clears the sampling state.
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()>;

    /// The values to pass to the transformer as `timestep`, one per step.
    fn timesteps(&self) -> &[f64];

    /// The noise levels: one per step, then the level the last step ends at.
    fn sigmas(&self) -> &[f32];

    /// Advances `sample` from `timestep` (one of `timesteps()`) to the next noise level, given
    /// the model's output there. The first call locates `timestep` in the schedule (so a loop
    /// may start mid-schedule); later calls advance one step each.
    fn step(&mut self, model_output: &Tensor, timestep: f64, sample: &Tensor) -> Result<Tensor>;

    /// Clears the sampling state (step counter, multistep history) and keeps the schedule, so
    /// that the same schedule can be sampled again.
    fn reset(&mut self);

    /// Standard deviation of the initial latents: flow matching starts from pure N(0, 1) noise.
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
}

/// A `scheduler/scheduler_config.json`, selected by its `_class_name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "_class_name")]
pub enum SchedulerConfig {
    #[serde(rename = "UniPCMultistepScheduler")]
    UniPc(UniPcConfig),
    #[serde(rename = "FlowMatchEulerDiscreteScheduler")]
    FlowMatchEuler(FlowMatchEulerConfig),
}

impl SchedulerConfig {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::files::read_text(path, crate::files::TEXT_LIMIT)
            .map_err(|e| candle_core::Error::msg(format!("reading {}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| candle_core::Error::msg(format!("parsing {}: {e}", path.display())))
    }

    /// Overrides the schedule shift (`flow_shift` for UniPC, `shift` for Euler), as the
    /// pipelines' `from_config(config, flow_shift=...)` does.
    pub fn with_flow_shift(self, shift: f64) -> Self {
        match self {
            Self::UniPc(config) => Self::UniPc(UniPcConfig {
                flow_shift: shift,
                ..config
            }),
            Self::FlowMatchEuler(config) => {
                Self::FlowMatchEuler(FlowMatchEulerConfig { shift, ..config })
            }
        }
    }

    /// The Euler configuration with the same training length, shift and terminal stretch, for
    /// sampling a UniPC model folder with the simple Euler sampler instead.
    pub fn to_flow_match_euler(&self) -> FlowMatchEulerConfig {
        match self {
            Self::UniPc(config) => FlowMatchEulerConfig {
                num_train_timesteps: config.num_train_timesteps,
                shift: config.flow_shift,
                shift_terminal: config.shift_terminal,
                ..FlowMatchEulerConfig::default()
            },
            Self::FlowMatchEuler(config) => config.clone(),
        }
    }

    pub fn build(self) -> Result<Box<dyn Scheduler + Send>> {
        Ok(match self {
            Self::UniPc(config) => Box::new(UniPcMultistepScheduler::new(config)?),
            Self::FlowMatchEuler(config) => Box::new(FlowMatchEulerDiscreteScheduler::new(config)?),
        })
    }
}

/// `tensor * factor` with `factor` rounded to the tensor's dtype first, as torch does for a
/// float32 0-dim tensor times a (possibly lower precision) tensor.
fn scale(tensor: &Tensor, factor: f32) -> Result<Tensor> {
    tensor.affine(factor as f64, 0.0)
}

/// `tensor / divisor` as a true division (`Tensor / f64` multiplies by the reciprocal).
fn divide(tensor: &Tensor, divisor: f32) -> Result<Tensor> {
    let divisor = Tensor::new(divisor, tensor.device())?.to_dtype(tensor.dtype())?;
    tensor.broadcast_div(&divisor)
}

/// The position of `timestep` in `schedule`: torch's `index_for_timestep`, which takes the
/// second of duplicated values so that a run starting mid-schedule does not repeat a level.
fn index_for_timestep(schedule: &[f64], timestep: f64) -> Option<usize> {
    let mut matches = schedule
        .iter()
        .enumerate()
        .filter(|&(_, &t)| t == timestep)
        .map(|(i, _)| i);
    let first = matches.next()?;
    Some(matches.next().unwrap_or(first))
}
