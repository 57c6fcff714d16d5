//! Wan2.1 + VACE model parts, each matching its reference implementation
//! (`diffusers`, `transformers`) on the same weights.

pub mod scheduler;
pub mod text_encoder;
pub mod tokenizer;
pub mod transformer;
pub mod vae;
pub mod weights;
