//! Host images in GPU memory (OpenFX CUDA renders, GStreamer `memory:CUDAMemory`) to and from
//! the core's frames.
//!
//! The layouts, the stream decisions and the reference conversion build everywhere (and are
//! tested without a GPU); the conversion on the GPU ([`ImageConverter`]) needs the `cuda`
//! feature. See `convert.rs` for what crosses to host memory and why.

mod layout;
mod pixels;
mod stream;

#[cfg(feature = "cuda")]
mod convert;

#[cfg(feature = "cuda")]
pub use convert::{ImageConverter, cuda_device_count, current_device_ordinal};
pub use layout::{DeviceImage, ImageLayout, PixelFormat, Position, Region};
pub use pixels::{read_image, write_image};
pub use stream::{StreamOrder, StreamPlan};
