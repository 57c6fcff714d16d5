//! Soragen's inference core, shared by the CLI, the OpenFX plugin and the GStreamer element.

pub mod colour_space;
pub mod device;
pub mod gpu;
pub mod hub;
pub mod limits;
pub mod memory;
pub mod model;
pub mod output;
pub mod presets;
pub mod progress;
pub mod step_cache;
pub mod tasks;
pub mod vace;
pub mod video;

/// Everything that can go wrong, worded for the user: each host shows `to_string()` as-is.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Frames, masks or files the user gave cannot be used.
    #[error("{0}")]
    Input(String),
    /// A request whose parameters do not fit the model (sizes, frame counts, ...).
    #[error("{0}")]
    Request(String),
    /// Writing results failed.
    #[error("{0}")]
    Output(String),
    /// Loading or running the model failed.
    // candle errors may carry a backtrace after the first line: keep one line.
    #[error("{}", .0.to_string().lines().next().unwrap_or("model error"))]
    Model(candle_core::Error),
    /// The user or host cancelled; nothing was produced.
    #[error("cancelled")]
    Cancelled,
    /// The GPU ran out of memory: hosts free their caches and say so (OpenFX has a status for it).
    #[error("out of GPU memory")]
    GpuOutOfMemory,
    /// Any other CUDA failure, in one line.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A device that was asked for cannot be named or opened.
    #[error(transparent)]
    Device(#[from] device::DeviceError),
    /// A number outside the range a request allows.
    #[error(transparent)]
    OutOfRange(#[from] limits::OutOfRange),
}

/// CUDA's and cuBLAS's names for a failed allocation, as they appear in candle's errors.
const GPU_OUT_OF_MEMORY: [&str; 2] = ["CUDA_ERROR_OUT_OF_MEMORY", "CUBLAS_STATUS_ALLOC_FAILED"];

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        // candle reports a failed GPU allocation like any other error; hosts must tell it apart.
        let text = e.to_string();
        if GPU_OUT_OF_MEMORY.iter().any(|name| text.contains(name)) {
            Error::GpuOutOfMemory
        } else {
            Error::Model(e)
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_allocation_failures_inside_candle_become_out_of_memory() {
        let cuda = candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
        );
        assert!(matches!(Error::from(cuda), Error::GpuOutOfMemory));
        let cublas = candle_core::Error::Msg("CublasError(CUBLAS_STATUS_ALLOC_FAILED)".into());
        assert_eq!(Error::from(cublas).to_string(), "out of GPU memory");
        let other = candle_core::Error::Msg("shape mismatch".into());
        assert!(matches!(Error::from(other), Error::Model(_)));
        assert_eq!(
            Error::Gpu("CUDA_ERROR_LAUNCH_FAILED".into()).to_string(),
            "GPU error: CUDA_ERROR_LAUNCH_FAILED"
        );
    }
}
