//! diffusers' First Block Cache (`hooks/first_block_cache.py`, `FirstBlockCacheConfig`), as
//! `enable_cache` applies it to `WanVACETransformer3DModel`: it hooks the main `blocks` only
//! (`vace_blocks` is not a name it looks for), so the VACE blocks run and their hints are added
//! on every forward, skipped or not.
//!
//! Each forward runs the first block and compares its residual (output - input) with the one of
//! the last forward that ran every block: when `mean|r - r_last| / mean|r_last|` is at most the
//! threshold, the other blocks are skipped and their residual from that forward (last block's
//! output - first block's output) is added instead. A state belongs to one cache context
//! (diffusers' `cache_context("cond")` / `("uncond")`): one per guidance branch, per generation.

use candle_core::{DType, Result, Tensor};

/// The cache of one denoising branch over one generation (a fresh one per generation, as
/// diffusers resets its hooks at the end of each pipeline call).
#[derive(Debug)]
pub struct FirstBlockCache {
    threshold: f64,
    /// First block's residual at the last forward that ran every block.
    head_residual: Option<Tensor>,
    /// Last block's output minus first block's output, at that forward.
    tail_residual: Option<Tensor>,
    /// Per forward so far: true where the remaining blocks ran.
    computed: Vec<bool>,
}

impl FirstBlockCache {
    /// diffusers' `FirstBlockCacheConfig` default threshold.
    pub const DEFAULT_THRESHOLD: f64 = 0.05;

    pub fn new(threshold: f64) -> Self {
        Self {
            threshold,
            head_residual: None,
            tail_residual: None,
            computed: Vec::new(),
        }
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Forwards so far that reused the cached residual instead of running the blocks after
    /// the first.
    pub fn skipped(&self) -> usize {
        self.computed.iter().filter(|&&c| !c).count()
    }

    /// Per forward so far: whether the blocks after the first ran (false: skipped).
    pub fn decisions(&self) -> &[bool] {
        &self.computed
    }

    /// The cached remaining-blocks residual when `head_residual` (first block output - input)
    /// is close enough to the last computed one; `None` when every block must run.
    pub(super) fn reusable(&mut self, head_residual: &Tensor) -> Result<Option<Tensor>> {
        let reuse = match (&self.head_residual, &self.tail_residual) {
            (Some(last), Some(tail)) => {
                let mean_abs = |t: &Tensor| -> Result<f32> {
                    t.to_dtype(DType::F32)?
                        .abs()?
                        .mean_all()?
                        .to_scalar::<f32>()
                };
                // f32 division like diffusers' `(absmean / prev_absmean).item()`.
                let change = mean_abs(&(head_residual - last)?)? / mean_abs(last)?;
                (change as f64 <= self.threshold).then(|| tail.clone())
            }
            _ => None,
        };
        self.computed.push(reuse.is_none());
        if reuse.is_none() {
            self.head_residual = Some(head_residual.clone());
        }
        Ok(reuse)
    }

    /// Records the remaining blocks' residual of a forward that ran them all.
    pub(super) fn store_tail(&mut self, tail_residual: Tensor) {
        self.tail_residual = Some(tail_residual);
    }
}
