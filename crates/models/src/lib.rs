//! Wan2.1 + VACE model parts, each matching its reference implementation
//! (`diffusers`, `transformers`) on the same weights.

mod cpu;
pub mod files;
pub mod lora;
pub mod scheduler;
pub mod text_encoder;
pub mod tokenizer;
pub mod transformer;
pub mod vae;
pub mod weights;

use candle_core::{DType, Result, Tensor};

/// Largest absolute difference between two tensors of one shape, in f32: the measure every
/// parity check against the reference uses.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
    if a.dims() != b.dims() {
        candle_core::bail!("cannot compare shapes {:?} and {:?}", a.dims(), b.dims());
    }
    let diff = (a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?.abs()?;
    diff.flatten_all()?.max(0)?.to_scalar::<f32>()
}
