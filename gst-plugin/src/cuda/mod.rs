//! Frames in CUDA memory (`memory:CUDAMemory`, cargo feature `cuda`): the model's GPU context
//! is shared with the pipeline's CUDA elements, frames are read and written on the GPU, and
//! only the 8-bit frames the tasks take cross to host memory.

mod device;
mod library;

pub use device::{CudaFrames, caps, is_cuda_caps};
pub use library::CAPS_FEATURE;
