//! UniPC (Zhao et al. 2023) as diffusers' `UniPCMultistepScheduler` runs it with flow sigmas
//! and flow (velocity) prediction: a multistep predictor (UniP) and corrector (UniC) on the
//! data prediction x0 = sample - sigma * velocity, with alpha = 1 - sigma.

use std::collections::VecDeque;

use candle_core::{Result, Tensor, bail};
use serde::Deserialize;

use super::schedule::{TimeShiftType, ensure_finite, linspace, shift_sigmas, stretch_to_terminal};
use super::{Scheduler, divide, index_for_timestep, scale};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    Sample,
    VPrediction,
    FlowPrediction,
}

/// The B(h) of the UniPC updates. The reference maps its legacy names to bh2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SolverType {
    Bh1,
    #[serde(alias = "midpoint", alias = "heun", alias = "logrho")]
    Bh2,
}

/// The noise level the last step ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalSigmasType {
    Zero,
    /// The last step's own level (the last step then returns its input unchanged).
    SigmaMin,
}

/// Only used by the discrete (non-flow) schedules, whose timesteps flow sigmas replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimestepSpacing {
    Linspace,
    Leading,
    Trailing,
}

/// `UniPCMultistepScheduler`'s configuration, with the reference's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct UniPcConfig {
    pub num_train_timesteps: usize,
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: String,
    pub trained_betas: Option<Vec<f64>>,
    pub solver_order: usize,
    pub prediction_type: PredictionType,
    pub thresholding: bool,
    pub dynamic_thresholding_ratio: f64,
    pub sample_max_value: f64,
    pub predict_x0: bool,
    pub solver_type: SolverType,
    pub lower_order_final: bool,
    /// Steps whose corrector is skipped (the corrector of step i runs at the start of step i + 1).
    pub disable_corrector: Vec<i64>,
    pub solver_p: Option<serde_json::Value>,
    pub use_karras_sigmas: bool,
    pub use_exponential_sigmas: bool,
    pub use_beta_sigmas: bool,
    pub use_flow_sigmas: bool,
    pub flow_shift: f64,
    pub timestep_spacing: TimestepSpacing,
    pub steps_offset: i64,
    pub final_sigmas_type: FinalSigmasType,
    pub rescale_betas_zero_snr: bool,
    pub use_dynamic_shifting: bool,
    pub time_shift_type: TimeShiftType,
    pub sigma_min: Option<f64>,
    pub sigma_max: Option<f64>,
    pub shift_terminal: Option<f64>,
}

impl Default for UniPcConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: "linear".to_string(),
            trained_betas: None,
            solver_order: 2,
            prediction_type: PredictionType::Epsilon,
            thresholding: false,
            dynamic_thresholding_ratio: 0.995,
            sample_max_value: 1.0,
            predict_x0: true,
            solver_type: SolverType::Bh2,
            lower_order_final: true,
            disable_corrector: Vec::new(),
            solver_p: None,
            use_karras_sigmas: false,
            use_exponential_sigmas: false,
            use_beta_sigmas: false,
            use_flow_sigmas: false,
            flow_shift: 1.0,
            timestep_spacing: TimestepSpacing::Linspace,
            steps_offset: 0,
            final_sigmas_type: FinalSigmasType::Zero,
            rescale_betas_zero_snr: false,
            use_dynamic_shifting: false,
            time_shift_type: TimeShiftType::Exponential,
            sigma_min: None,
            sigma_max: None,
            shift_terminal: None,
        }
    }
}

impl UniPcConfig {
    /// Rejects what the reference rejects and what we do not implement.
    fn validate(&self) -> Result<()> {
        let alternative_sigmas = [
            ("use_karras_sigmas", self.use_karras_sigmas),
            ("use_exponential_sigmas", self.use_exponential_sigmas),
            ("use_beta_sigmas", self.use_beta_sigmas),
        ];
        let selected: Vec<_> = alternative_sigmas.iter().filter(|(_, on)| *on).collect();
        if selected.len() > 1 {
            bail!(
                "UniPC: only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be set"
            );
        }
        if let Some((name, _)) = selected.first() {
            bail!(
                "UniPC: {name} is not implemented (with flow sigmas the reference derives it from the \
                 VP beta schedule and ignores flow_shift)"
            );
        }
        if !self.use_flow_sigmas {
            bail!("UniPC: only flow sigmas are implemented (use_flow_sigmas must be true)");
        }
        if self.prediction_type != PredictionType::FlowPrediction {
            bail!(
                "UniPC: prediction_type {:?} is not implemented with flow sigmas, only flow_prediction",
                self.prediction_type
            );
        }
        if !self.predict_x0 {
            bail!(
                "UniPC: flow_prediction requires predict_x0 = true (the reference rejects it too)"
            );
        }
        if self.thresholding {
            bail!("UniPC: thresholding is not implemented");
        }
        if self.solver_p.as_ref().is_some_and(|p| !p.is_null()) {
            bail!("UniPC: solver_p (an external predictor) is not supported");
        }
        if self.use_dynamic_shifting {
            bail!("UniPC: use_dynamic_shifting is not implemented (it needs a per-call mu)");
        }
        if self.solver_order == 0 {
            bail!("UniPC: solver_order must be at least 1");
        }
        if self.num_train_timesteps == 0 {
            bail!("UniPC: num_train_timesteps must be at least 1");
        }
        if !(self.flow_shift > 0.0 && self.flow_shift.is_finite()) {
            bail!(
                "UniPC: flow_shift must be positive, got {}",
                self.flow_shift
            );
        }
        let known_schedule =
            ["linear", "scaled_linear", "squaredcos_cap_v2"].contains(&self.beta_schedule.as_str());
        if self.trained_betas.is_none() && !known_schedule {
            bail!(
                "UniPC: beta_schedule {:?} is not implemented by the reference",
                self.beta_schedule
            );
        }
        if self.solver_type == SolverType::Bh1 && self.final_sigmas_type == FinalSigmasType::Zero {
            bail!(
                "UniPC: solver_type bh1 with final_sigmas_type zero makes the reference's last step NaN \
                 (B(h) = -inf); use bh2 or final_sigmas_type sigma_min"
            );
        }
        Ok(())
    }
}

pub struct UniPcMultistepScheduler {
    config: UniPcConfig,
    timesteps: Vec<f64>,
    sigmas: Vec<f32>,
    step_index: Option<usize>,
    /// Converted (x0) model outputs of the last `solver_order` steps, newest last.
    model_outputs: VecDeque<Tensor>,
    /// Steps taken so far, capped at `solver_order`: the multistep warm-up.
    lower_order_nums: usize,
    /// The predictor's input of the previous step, for the corrector.
    last_sample: Option<Tensor>,
    /// The predictor order of the previous step, which its corrector reuses.
    last_order: usize,
}

impl UniPcMultistepScheduler {
    pub fn new(config: UniPcConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            timesteps: Vec::new(),
            sigmas: Vec::new(),
            step_index: None,
            model_outputs: VecDeque::new(),
            lower_order_nums: 0,
            last_sample: None,
            last_order: 0,
        })
    }

    pub fn config(&self) -> &UniPcConfig {
        &self.config
    }

    /// Rejects step counts for which the reference's last step yields inf/NaN: a multistep
    /// update into sigma = 0 (infinite log-SNR), or order >= 3 into sigma_min (a zero step).
    fn check_last_order(&self, num_inference_steps: usize) -> Result<()> {
        let last_order = if self.config.lower_order_final {
            1
        } else {
            self.config.solver_order.min(num_inference_steps)
        };
        let limit = match self.config.final_sigmas_type {
            FinalSigmasType::Zero => 1,
            FinalSigmasType::SigmaMin => 2,
        };
        if last_order > limit {
            bail!(
                "UniPC: without lower_order_final, {num_inference_steps} steps end with an order \
                 {last_order} step into final_sigmas_type {:?}, which the reference computes as \
                 inf/NaN; set lower_order_final = true",
                self.config.final_sigmas_type
            );
        }
        Ok(())
    }

    /// UniP/UniC scalars of an update from level `s0` to level `t` that uses the converted
    /// outputs at `s0`, `s0 - 1`, ..., `s0 - order + 1`, in the reference's float32 order.
    fn coefficients(&self, t: usize, s0: usize, order: usize) -> Result<Coefficients> {
        let alpha_lambda = |index: usize| -> Result<(f32, f32)> {
            let Some(&sigma) = self.sigmas.get(index) else {
                bail!(
                    "UniPC: no noise level {index} in a schedule of {}",
                    self.sigmas.len()
                )
            };
            let alpha = 1.0 - sigma;
            Ok((alpha, ln(alpha) - ln(sigma)))
        };
        let (alpha_t, lambda_t) = alpha_lambda(t)?;
        let (_, lambda_s0) = alpha_lambda(s0)?;
        let h = lambda_t - lambda_s0;

        let mut rks = Vec::with_capacity(order);
        for i in 1..order {
            let Some(si) = s0.checked_sub(i) else {
                bail!("UniPC: an order {order} update needs {i} earlier steps before step {s0}")
            };
            rks.push((alpha_lambda(si)?.1 - lambda_s0) / h);
        }
        rks.push(1.0);

        // Data prediction: the exponential integrator runs in -h.
        let hh = -h;
        let h_phi_1 = exp_m1(hh);
        let b_h = match self.config.solver_type {
            SolverType::Bh1 => hh,
            SolverType::Bh2 => exp_m1(hh),
        };
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial = 1u64;
        let mut r = Vec::with_capacity(order);
        let mut b = Vec::with_capacity(order);
        for i in 1..=order {
            r.push(
                rks.iter()
                    .map(|rk| rk.powi(i as i32 - 1))
                    .collect::<Vec<f32>>(),
            );
            b.push(h_phi_k * factorial as f32 / b_h);
            factorial *= i as u64 + 1;
            h_phi_k = h_phi_k / hh - (1.0 / factorial as f64) as f32;
        }
        rks.pop();
        Ok(Coefficients {
            sigma_ratio: self.sigmas[t] / self.sigmas[s0],
            alpha_h_phi_1: alpha_t * h_phi_1,
            alpha_b_h: alpha_t * b_h,
            rks,
            r,
            b,
        })
    }

    /// `(m_i - m_0) / r_i` for the earlier converted outputs m_i (newest is m_0).
    fn differences(&self, rks: &[f32]) -> Result<Vec<Tensor>> {
        let m0 = self.newest_output()?;
        rks.iter()
            .enumerate()
            .map(|(i, &rk)| {
                let Some(mi) = self.model_outputs.iter().rev().nth(i + 1) else {
                    bail!("UniPC: missing model output {} steps back", i + 1)
                };
                divide(&(mi - m0)?, rk)
            })
            .collect()
    }

    fn newest_output(&self) -> Result<&Tensor> {
        match self.model_outputs.back() {
            Some(m0) => Ok(m0),
            None => bail!("UniPC: no model output recorded yet"),
        }
    }

    /// The UniP predictor from level `step_index` to the next one.
    fn predict(&self, sample: &Tensor, step_index: usize, order: usize) -> Result<Tensor> {
        let c = self.coefficients(step_index + 1, step_index, order)?;
        let m0 = self.newest_output()?;
        let x_t = (scale(sample, c.sigma_ratio)? - scale(m0, c.alpha_h_phi_1)?)?;
        if order == 1 {
            return Ok(x_t);
        }
        // Order 2 uses rho = 1/2 rather than solving its 1x1 system.
        let rhos = match order {
            2 => vec![0.5],
            _ => {
                let r = c.r[..order - 1]
                    .iter()
                    .map(|row| row[..order - 1].to_vec())
                    .collect();
                solve(r, c.b[..order - 1].to_vec())?
            }
        };
        let residual = weighted_sum(&rhos, &self.differences(&c.rks)?)?;
        x_t - scale(&residual, c.alpha_b_h)?
    }

    /// The UniC corrector: redoes the previous step from its input `last_sample`, now that
    /// the converted model output `model_t` at the level it reached is known.
    fn correct(
        &self,
        model_t: &Tensor,
        last_sample: &Tensor,
        step_index: usize,
        order: usize,
    ) -> Result<Tensor> {
        let c = self.coefficients(step_index, step_index - 1, order)?;
        let m0 = self.newest_output()?;
        let x_t = (scale(last_sample, c.sigma_ratio)? - scale(m0, c.alpha_h_phi_1)?)?;
        // Order 1 uses rho = 1/2 rather than solving its 1x1 system.
        let rhos = match order {
            1 => vec![0.5],
            _ => solve(c.r, c.b)?,
        };
        let Some((rho_t, rhos)) = rhos.split_last() else {
            bail!("UniPC: empty corrector weights")
        };
        let mut correction = scale(&(model_t - m0)?, *rho_t)?;
        if !rhos.is_empty() {
            correction = (weighted_sum(rhos, &self.differences(&c.rks)?)? + correction)?;
        }
        x_t - scale(&correction, c.alpha_b_h)?
    }
}

impl Scheduler for UniPcMultistepScheduler {
    fn set_timesteps(&mut self, num_inference_steps: usize) -> Result<()> {
        if num_inference_steps == 0 {
            bail!("UniPC: num_inference_steps must be at least 1");
        }
        self.check_last_order(num_inference_steps)?;
        let train_steps = self.config.num_train_timesteps as f64;
        let mut sigmas = linspace(1.0, 1.0 / train_steps, num_inference_steps + 1);
        sigmas.pop();
        shift_sigmas(&mut sigmas, self.config.flow_shift);
        if let Some(terminal) = self.config.shift_terminal.filter(|&t| t != 0.0) {
            stretch_to_terminal(&mut sigmas, terminal);
        }
        ensure_finite(&sigmas, "UniPC")?;
        // sigma = 1 would make log(alpha) infinite in the first updates.
        let eps = 1e-6;
        if (sigmas[0] - 1.0).abs() < eps {
            sigmas[0] -= eps;
        }
        // Integer timesteps, truncated towards zero like the reference's int64 cast.
        self.timesteps = sigmas.iter().map(|s| (s * train_steps).trunc()).collect();
        let sigma_last = match self.config.final_sigmas_type {
            FinalSigmasType::Zero => 0.0,
            FinalSigmasType::SigmaMin => sigmas[sigmas.len() - 1],
        };
        sigmas.push(sigma_last);
        self.sigmas = sigmas.into_iter().map(|s| s as f32).collect();
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
        if self.timesteps.is_empty() {
            bail!("UniPC: call set_timesteps before step");
        }
        let step_index = match self.step_index {
            Some(index) => index,
            None => {
                index_for_timestep(&self.timesteps, timestep).unwrap_or(self.timesteps.len() - 1)
            }
        };
        self.step_index = Some(step_index);
        if step_index >= self.timesteps.len() {
            bail!("UniPC: all {} steps have been taken", self.timesteps.len());
        }

        let sigma = self.sigmas[step_index];
        // x0 = sample - sigma * v; the product is rounded to the model output's dtype as in
        // torch (a bf16 transformer's output), the difference is in the sample's dtype.
        let model_x0 = (sample - scale(model_output, sigma)?.to_dtype(sample.dtype())?)?;

        let corrector_enabled = step_index > 0
            && !self
                .config
                .disable_corrector
                .contains(&(step_index as i64 - 1));
        let sample = match (&self.last_sample, corrector_enabled) {
            (Some(last_sample), true) => {
                self.correct(&model_x0, last_sample, step_index, self.last_order)?
            }
            _ => sample.clone(),
        };

        if self.model_outputs.len() == self.config.solver_order {
            self.model_outputs.pop_front();
        }
        self.model_outputs.push_back(model_x0);

        let remaining = self.timesteps.len() - step_index;
        let order = match self.config.lower_order_final {
            true => self.config.solver_order.min(remaining),
            false => self.config.solver_order,
        };
        let order = order.min(self.lower_order_nums + 1);

        let prev_sample = self.predict(&sample, step_index, order)?;
        self.last_sample = Some(sample);
        self.last_order = order;
        self.lower_order_nums = (self.lower_order_nums + 1).min(self.config.solver_order);
        self.step_index = Some(step_index + 1);
        Ok(prev_sample)
    }

    fn reset(&mut self) {
        self.step_index = None;
        self.model_outputs.clear();
        self.lower_order_nums = 0;
        self.last_sample = None;
        self.last_order = 0;
    }
}

struct Coefficients {
    /// sigma_t / sigma_s0
    sigma_ratio: f32,
    /// alpha_t * h phi_1(h)
    alpha_h_phi_1: f32,
    /// alpha_t * B(h)
    alpha_b_h: f32,
    /// Log-SNR offsets of the earlier levels, relative to the step size h.
    rks: Vec<f32>,
    /// The order conditions R rho = b (R[k][j] = r_j^k, with r = [rks..., 1]).
    r: Vec<Vec<f32>>,
    b: Vec<f32>,
}

// The reference's float32 log/expm1 (SLEEF kernels on CPU) are within an ulp of the correctly
// rounded values and almost always equal to them; glibc's float32 versions differ more often.
// That matters: the b_k recursion below cancels catastrophically for small steps, so an ulp
// in expm1(-h) grows to ~1e-5 in the samples of an order-3, 50-step run.
fn ln(x: f32) -> f32 {
    (x as f64).ln() as f32
}

fn exp_m1(x: f32) -> f32 {
    (x as f64).exp_m1() as f32
}

/// `sum_k weights[k] * tensors[k]`, the reference's `einsum("k,bkc...->bc...")`.
fn weighted_sum(weights: &[f32], tensors: &[Tensor]) -> Result<Tensor> {
    let mut terms = weights.iter().zip(tensors).map(|(&w, t)| scale(t, w));
    let Some(first) = terms.next() else {
        bail!("UniPC: empty weighted sum")
    };
    terms.try_fold(first?, |sum, term| sum + term?)
}

/// Solves the small system `a x = b` in float32 by Gaussian elimination with partial
/// pivoting (LAPACK's gesv, as `torch.linalg.solve` calls it).
fn solve(mut a: Vec<Vec<f32>>, mut b: Vec<f32>) -> Result<Vec<f32>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .unwrap_or(col);
        if a[pivot][col] == 0.0 || !a[pivot][col].is_finite() {
            bail!("UniPC: singular order conditions (repeated noise levels in the schedule?)");
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let inverse = 1.0 / a[col][col];
        let pivot_row = a[col].clone();
        for row in col + 1..n {
            let factor = a[row][col] * inverse;
            for (entry, pivot_entry) in a[row][col + 1..].iter_mut().zip(&pivot_row[col + 1..]) {
                *entry -= factor * pivot_entry;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0f32; n];
    for row in (0..n).rev() {
        let known: f32 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - known) / a[row][row];
    }
    Ok(x)
}
