//! Where the models run and in which precision.
//!
//! A build with the `cuda` feature runs on CUDA device 0 when it opens; without the feature, or
//! when no device opens (no GPU, a driver that fails to start), everything runs on the CPU and
//! the cuda build says why in one line on stderr. `SORAGEN_DEVICE=cpu` (or `cuda`, `cuda:N`)
//! overrides the choice, e.g. to compare both in one build.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use candle_core::{DType, Device};

/// The environment variable that overrides the device choice.
pub const DEVICE_VARIABLE: &str = "SORAGEN_DEVICE";

/// A device request: `SORAGEN_DEVICE`'s value, or what the build prefers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Cpu,
    Cuda(usize),
}

impl DeviceRequest {
    /// Reads `cpu`, `cuda` (device 0) or `cuda:N`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("{DEVICE_VARIABLE}={other}: expected cpu, cuda or cuda:N")),
        }
    }

    /// What a build runs on unless told otherwise: the GPU when it has CUDA support.
    pub fn preferred() -> Self {
        if cfg!(feature = "cuda") { Self::Cuda(0) } else { Self::Cpu }
    }
}

/// Opens the requested device, or says in one line why it cannot. Every request for one GPU
/// gets the same handle: candle cannot mix tensors of two handles to one device, and the model
/// cache (`WanVace::shared_on`) tells copies apart by device location.
pub fn open_device(request: DeviceRequest) -> Result<Device, String> {
    static OPENED: OnceLock<Mutex<HashMap<usize, Device>>> = OnceLock::new();
    match request {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Cuda(_) if !cfg!(feature = "cuda") => {
            Err("this build of Soragen has no CUDA support (cargo feature `cuda`)".into())
        }
        DeviceRequest::Cuda(ordinal) => {
            let mut opened = OPENED.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
            if let Some(device) = opened.get(&ordinal) {
                return Ok(device.clone());
            }
            let device = Device::new_cuda(ordinal).map_err(|e| {
                let reason = e.to_string();
                format!("CUDA device {ordinal} did not open: {}", reason.lines().next().unwrap_or("unknown error"))
            })?;
            opened.insert(ordinal, device.clone());
            Ok(device)
        }
    }
}

/// The device models run on unless a host chooses another, decided once per process.
pub fn model_device() -> Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let request = match std::env::var(DEVICE_VARIABLE) {
                Ok(text) => DeviceRequest::parse(&text),
                Err(_) => Ok(DeviceRequest::preferred()),
            };
            match request.and_then(open_device) {
                Ok(device) => device,
                Err(reason) => {
                    eprintln!("soragen: running on the CPU: {reason}");
                    Device::Cpu
                }
            }
        })
        .clone()
}

/// The compute precision that suits a device: bf16 on a GPU (half the memory, tensor cores),
/// f32 on the CPU (where bf16 is slower and reproduces the reference less closely).
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cuda() { DType::BF16 } else { DType::F32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_requests_parse_cpu_cuda_and_ordinals() {
        assert_eq!(DeviceRequest::parse("cpu"), Ok(DeviceRequest::Cpu));
        assert_eq!(DeviceRequest::parse("cuda"), Ok(DeviceRequest::Cuda(0)));
        assert_eq!(DeviceRequest::parse(" cuda:3 "), Ok(DeviceRequest::Cuda(3)));
        let error = DeviceRequest::parse("gpu").unwrap_err();
        assert!(error.contains("SORAGEN_DEVICE=gpu") && error.contains("cuda:N"), "{error}");
        assert!(DeviceRequest::parse("cuda:x").is_err());
    }

    #[test]
    fn the_cpu_always_opens_and_runs_in_f32() {
        let device = open_device(DeviceRequest::Cpu).unwrap();
        assert!(device.is_cpu());
        assert_eq!(default_dtype(&device), DType::F32);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_build_without_cuda_prefers_the_cpu_and_explains_a_cuda_request() {
        assert_eq!(DeviceRequest::preferred(), DeviceRequest::Cpu);
        let reason = open_device(DeviceRequest::Cuda(0)).unwrap_err();
        assert!(reason.contains("no CUDA support"), "{reason}");
        assert!(model_device().is_cpu());
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn a_cuda_build_opens_a_gpu_or_falls_back_to_the_cpu_with_a_reason() {
        assert_eq!(DeviceRequest::preferred(), DeviceRequest::Cuda(0));
        match open_device(DeviceRequest::Cuda(0)) {
            Ok(device) => assert_eq!(default_dtype(&device), DType::BF16),
            Err(reason) => {
                assert!(reason.starts_with("CUDA device 0 did not open: "), "{reason}");
                assert_eq!(reason.lines().count(), 1);
            }
        }
        // An ordinal no machine has fails with a reason, never a panic.
        assert!(open_device(DeviceRequest::Cuda(4096)).is_err());
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn every_request_for_one_gpu_gets_the_same_handle() {
        if let (Ok(first), Ok(second)) = (open_device(DeviceRequest::Cuda(0)), open_device(DeviceRequest::Cuda(0))) {
            assert!(first.same_device(&second));
        }
    }
}
