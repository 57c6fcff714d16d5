//! Float64 noise-schedule arithmetic, in numpy's order of operations so that the float32
//! sigmas (and the timesteps derived from them) come out bit-identical to the reference.

use candle_core::{Result, bail};
use serde::Deserialize;

/// How `use_dynamic_shifting` would shift the schedule. Dynamic shifting needs a per-call `mu`
/// that the Wan pipelines do not pass, so it is rejected; the field is still validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeShiftType {
    Exponential,
    Linear,
}

/// `np.linspace(start, stop, num)`: `i * step + start`, with the endpoint stored exactly.
pub(super) fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let div = (num - 1) as f64;
    let delta = stop - start;
    let step = delta / div;
    (0..num)
        .map(|i| match i {
            _ if i == num - 1 => stop,
            // numpy's fallback when the step underflows to zero.
            _ if step == 0.0 => i as f64 / div * delta + start,
            _ => i as f64 * step + start,
        })
        .collect()
}

/// The flow-matching time shift `shift * s / (1 + (shift - 1) * s)`.
pub(super) fn shift_sigmas(sigmas: &mut [f64], shift: f64) {
    for sigma in sigmas {
        *sigma = shift * *sigma / (1.0 + (shift - 1.0) * *sigma);
    }
}

/// Stretches the schedule so that it ends at `terminal` (`stretch_shift_to_terminal`).
pub(super) fn stretch_to_terminal(sigmas: &mut [f64], terminal: f64) {
    let Some(&last) = sigmas.last() else { return };
    let scale_factor = (1.0 - last) / (1.0 - terminal);
    for sigma in sigmas {
        *sigma = 1.0 - (1.0 - *sigma) / scale_factor;
    }
}

/// Karras et al. (2022) spacing between the first and last of `sigmas` (rho = 7).
pub(super) fn karras(sigmas: &[f64], num_inference_steps: usize) -> Vec<f64> {
    let (sigma_max, sigma_min) = (sigmas[0], sigmas[sigmas.len() - 1]);
    let rho = 7.0;
    let min_inv_rho = sigma_min.powf(1.0 / rho);
    let max_inv_rho = sigma_max.powf(1.0 / rho);
    linspace(0.0, 1.0, num_inference_steps)
        .into_iter()
        .map(|ramp| (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(rho))
        .collect()
}

/// Log-uniform spacing between the first and last of `sigmas`.
pub(super) fn exponential(sigmas: &[f64], num_inference_steps: usize) -> Vec<f64> {
    let (sigma_max, sigma_min) = (sigmas[0], sigmas[sigmas.len() - 1]);
    linspace(sigma_max.ln(), sigma_min.ln(), num_inference_steps)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// The reference computes NaN schedules without complaint (e.g. `shift_terminal` with a single
/// step stretches a zero-length schedule); refuse them instead.
pub(super) fn ensure_finite(sigmas: &[f64], scheduler: &str) -> Result<()> {
    if sigmas.iter().any(|s| !s.is_finite()) {
        bail!(
            "{scheduler}: this configuration and step count give a non-finite noise schedule: {sigmas:?}"
        );
    }
    Ok(())
}
