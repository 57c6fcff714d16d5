//! Where the models run and in which precision.
//!
//! A build with the `cuda` feature runs on CUDA device 0 when it opens; without the feature, or
//! when no device opens (no NVIDIA driver, a missing CUDA library, no GPU, a driver that fails to
//! start), everything runs on the CPU and the cuda build says why in one line on stderr.
//! `SORAGEN_DEVICE=cpu` (or `cuda`, `cuda:N`) overrides the choice, e.g. to compare both in one
//! build.
//!
//! A cuda build made as `.ci/cuda-toolchain.sh` makes it loads the driver and the CUDA libraries
//! at run time (cudarc's `dynamic-loading`), so it starts without them; cudarc panics where one
//! is missing, or where the driver predates CUDA 13 and lacks a function, so `open_device` looks
//! for each library and asks the driver's version first, and catches any panic left.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use candle_core::{DType, Device};

/// The environment variable that overrides the device choice.
pub const DEVICE_VARIABLE: &str = "SORAGEN_DEVICE";

/// Why a device cannot be named or opened, in one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("{0:?}: expected {1}")]
    Unknown(String, &'static str),
    #[error("this build of Soragen has no CUDA support (cargo feature `cuda`)")]
    NoCudaSupport,
    #[error("CUDA device {ordinal} did not open: {reason}")]
    DidNotOpen { ordinal: usize, reason: String },
}

/// A device request: `SORAGEN_DEVICE`'s value, or what the build prefers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Cpu,
    Cuda(usize),
}

impl DeviceRequest {
    /// Reads `cpu`, `cuda` (device 0) or `cuda:N`.
    pub fn parse(text: &str) -> Result<Self, DeviceError> {
        match text.trim() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Unknown(other.into(), "cpu, cuda or cuda:N")),
        }
    }

    /// What a build runs on unless told otherwise: the GPU when it has CUDA support.
    pub fn preferred() -> Self {
        if cfg!(feature = "cuda") {
            Self::Cuda(0)
        } else {
            Self::Cpu
        }
    }
}

impl std::fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

/// A device as a user names it on a surface (a GStreamer `device` property): `auto` (the
/// process's [`model_device`]), or a device of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Exactly(DeviceRequest),
}

impl DeviceChoice {
    /// Reads `auto`, `cpu`, `cuda` (device 0) or `cuda:N`.
    pub fn parse(text: &str) -> Result<Self, DeviceError> {
        match text.trim() {
            "auto" => Ok(Self::Auto),
            other => DeviceRequest::parse(other)
                .map(Self::Exactly)
                .map_err(|_| DeviceError::Unknown(other.into(), "auto, cpu, cuda or cuda:N")),
        }
    }

    /// The device chosen, opened, or in one line why it cannot be.
    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            Self::Auto => Ok(model_device()),
            Self::Exactly(request) => open_device(request),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Exactly(request) => request.fmt(f),
        }
    }
}

/// Opens the requested device, or says in one line why it cannot. Every request for one GPU
/// gets the same handle: candle cannot mix tensors of two handles to one device, and the model
/// cache (`WanVace::shared_on`) tells copies apart by device location.
pub fn open_device(request: DeviceRequest) -> Result<Device, DeviceError> {
    static OPENED: OnceLock<Mutex<HashMap<usize, Device>>> = OnceLock::new();
    match request {
        DeviceRequest::Cpu => Ok(Device::Cpu),
        DeviceRequest::Cuda(_) if !cfg!(feature = "cuda") => Err(DeviceError::NoCudaSupport),
        DeviceRequest::Cuda(ordinal) => {
            let mut opened = OPENED
                .get_or_init(Mutex::default)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(device) = opened.get(&ordinal) {
                return Ok(device.clone());
            }
            let fail = |reason: &str| DeviceError::DidNotOpen {
                ordinal,
                reason: reason.lines().next().unwrap_or("unknown error").into(),
            };
            #[cfg(feature = "cuda")]
            if let Some(reason) = cuda_unavailable() {
                return Err(fail(&reason));
            }
            let device = match catch_cuda_panic(|| Device::new_cuda(ordinal)) {
                Ok(Ok(device)) => device,
                Ok(Err(e)) => return Err(fail(&e.to_string())),
                Err(panic) => return Err(fail(&panic)),
            };
            opened.insert(ordinal, device.clone());
            Ok(device)
        }
    }
}

/// Runs `f`, turning a panic into its message without printing it: cudarc panics where a CUDA
/// library lacks a function, and the caller reports that in its own one line. (The panic hook is
/// process-wide: a panic on another thread meanwhile also goes unprinted, though still caught
/// wherever it is.)
pub(crate) fn catch_cuda_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Mutex<()> = Mutex::new(());
    let _only_one = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let printing = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(printing);
    result.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "CUDA panicked".into())
    })
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
            match request {
                Err(reason) => {
                    eprintln!("soragen: running on the CPU: {DEVICE_VARIABLE}: {reason}");
                    Device::Cpu
                }
                Ok(request) => open_device(request).unwrap_or_else(|reason| {
                    eprintln!("soragen: running on the CPU: {reason}");
                    Device::Cpu
                }),
            }
        })
        .clone()
}

/// The compute precision that suits a device: bf16 on a GPU (half the memory, tensor cores),
/// f32 on the CPU (where bf16 is slower and reproduces the reference less closely).
pub fn default_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    }
}

/// The shared libraries a CUDA run loads (cudarc in its run-time loading mode): the driver's
/// libcuda, NVRTC (the conversion kernels of `soragen_core::gpu`), cuBLAS, cuBLASLt and cuRAND
/// (candle's device).
#[cfg(feature = "cuda")]
const CUDA_LIBRARIES: [&str; 5] = ["cuda", "nvrtc", "cublas", "cublasLt", "curand"];

/// The file names cudarc tries for a library on Linux (CUDA 13 bindings), the usual one first.
#[cfg(feature = "cuda")]
fn library_names(library: &str) -> Vec<String> {
    let suffixes: &[&str] = if library == "cuda" {
        &[".1", ""]
    } else {
        &["", ".13", ".12", ".11", ".10", ".9", ".1"]
    };
    suffixes
        .iter()
        .map(|suffix| format!("lib{library}.so{suffix}"))
        .collect()
}

/// The first of `names` the dynamic loader opens, if any.
#[cfg(feature = "cuda")]
fn first_loadable(names: &[String]) -> Option<&str> {
    // SAFETY: loading runs a library's initialisers; these are NVIDIA's CUDA libraries, which
    // cudarc loads anyway (or a test's libc).
    names
        .iter()
        .map(String::as_str)
        .find(|name| unsafe { libloading::Library::new(name) }.is_ok())
}

/// The oldest driver a cuda build runs with: it calls the CUDA 13 driver API, whose functions
/// older drivers lack (cudarc would panic on the first one missing).
#[cfg(feature = "cuda")]
const OLDEST_DRIVER: i32 = 13000;

/// Why a driver supporting CUDA `version` (as `cuDriverGetVersion` says: 12040 is 12.4) cannot
/// run this build, if it cannot.
#[cfg(feature = "cuda")]
fn driver_too_old(version: i32) -> Option<String> {
    let release = |version: i32| format!("{}.{}", version / 1000, version % 1000 / 10);
    (version < OLDEST_DRIVER).then(|| {
        format!(
            "the NVIDIA driver supports CUDA {}, this build needs CUDA {} or later (update the driver)",
            release(version),
            release(OLDEST_DRIVER)
        )
    })
}

/// The CUDA version the driver `library` supports, if it says.
#[cfg(feature = "cuda")]
fn driver_version(library: &str) -> Option<i32> {
    type GetVersion = unsafe extern "C" fn(*mut std::ffi::c_int) -> std::ffi::c_int;
    // SAFETY: the driver's libcuda; cuDriverGetVersion(int *) writes one int and may be called
    // before cuInit.
    unsafe {
        let library = libloading::Library::new(library).ok()?;
        let get_version = library.get::<GetVersion>(b"cuDriverGetVersion\0").ok()?;
        let mut version = 0;
        (get_version(&mut version) == 0).then_some(version)
    }
}

/// Why a CUDA run cannot start, in one line: a library it loads is missing, or the driver is
/// too old; None where it can. (Other systems than Linux name the libraries differently; the
/// panic guard in `open_device` remains.)
#[cfg(feature = "cuda")]
pub(crate) fn cuda_unavailable() -> Option<String> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    for library in CUDA_LIBRARIES {
        let names = library_names(library);
        match first_loadable(&names) {
            None if library == "cuda" => {
                return Some("no NVIDIA driver (libcuda.so.1 not found)".into());
            }
            None => {
                return Some(format!(
                    "the CUDA library {} is missing (install CUDA 13's NVRTC, cuBLAS and cuRAND, or add their \
                     folder to LD_LIBRARY_PATH)",
                    names[1]
                ));
            }
            Some(driver) if library == "cuda" => {
                if let Some(reason) = driver_version(driver).and_then(driver_too_old) {
                    return Some(reason);
                }
            }
            Some(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_requests_parse_cpu_cuda_and_ordinals() {
        assert_eq!(DeviceRequest::parse("cpu"), Ok(DeviceRequest::Cpu));
        assert_eq!(DeviceRequest::parse("cuda"), Ok(DeviceRequest::Cuda(0)));
        assert_eq!(DeviceRequest::parse(" cuda:3 "), Ok(DeviceRequest::Cuda(3)));
        let error = DeviceRequest::parse("gpu").unwrap_err().to_string();
        assert!(
            error.contains("\"gpu\"") && error.contains("cuda:N"),
            "{error}"
        );
        assert!(DeviceRequest::parse("cuda:x").is_err());
        assert_eq!(DeviceChoice::parse("auto"), Ok(DeviceChoice::Auto));
        let error = DeviceChoice::parse("gpu").unwrap_err().to_string();
        assert_eq!(error, "\"gpu\": expected auto, cpu, cuda or cuda:N");
        for text in ["cpu", "cuda:2"] {
            assert_eq!(DeviceChoice::parse(text).unwrap().to_string(), text);
        }
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
        assert_eq!(reason, DeviceError::NoCudaSupport);
        assert!(reason.to_string().contains("no CUDA support"), "{reason}");
        assert!(model_device().is_cpu());
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn a_cuda_build_opens_a_gpu_or_falls_back_to_the_cpu_with_a_reason() {
        assert_eq!(DeviceRequest::preferred(), DeviceRequest::Cuda(0));
        match open_device(DeviceRequest::Cuda(0)) {
            Ok(device) => assert_eq!(default_dtype(&device), DType::BF16),
            Err(reason) => {
                let reason = reason.to_string();
                assert!(
                    reason.starts_with("CUDA device 0 did not open: "),
                    "{reason}"
                );
                assert_eq!(reason.lines().count(), 1);
            }
        }
        // An ordinal no machine has fails with a reason, never a panic.
        assert!(open_device(DeviceRequest::Cuda(4096)).is_err());
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn a_cuda_build_without_the_driver_says_so_in_one_line() {
        let names = [
            "libsoragen-no-such-library.so".to_string(),
            "libc.so.6".to_string(),
        ];
        assert_eq!(first_loadable(&names), Some("libc.so.6"));
        assert_eq!(first_loadable(&names[..1]), None);
        assert_eq!(library_names("cuda"), ["libcuda.so.1", "libcuda.so"]);
        assert!(library_names("cublas").contains(&"libcublas.so.13".to_string()));
        if first_loadable(&library_names("cuda")).is_none() {
            // A machine without the NVIDIA driver, where a run-time loading build gets this far.
            let reason = open_device(DeviceRequest::Cuda(0)).unwrap_err().to_string();
            assert_eq!(
                reason,
                "CUDA device 0 did not open: no NVIDIA driver (libcuda.so.1 not found)"
            );
            assert!(model_device().is_cpu());
        }
    }

    #[test]
    fn a_cuda_panic_becomes_its_message_unprinted_and_printing_resumes() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Counts the panics of this test's thread that reach the hook, then prints as before.
        static PRINTED: AtomicUsize = AtomicUsize::new(0);
        let this_test = std::thread::current().id();
        let printing = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == this_test {
                PRINTED.fetch_add(1, Ordering::SeqCst);
            }
            printing(info)
        }));
        assert_eq!(catch_cuda_panic(|| 7), Ok(7));
        assert_eq!(
            catch_cuda_panic(|| panic!("Expected symbol in library")),
            Err("Expected symbol in library".into())
        );
        assert_eq!(
            catch_cuda_panic(|| std::panic::panic_any(3)),
            Err("CUDA panicked".into())
        );
        assert_eq!(PRINTED.load(Ordering::SeqCst), 0, "the panics were printed");
        let _ = std::panic::catch_unwind(|| panic!("an expected panic, printed"));
        assert_eq!(
            PRINTED.load(Ordering::SeqCst),
            1,
            "the hook was not put back"
        );
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn a_driver_older_than_cuda_13_is_named_with_what_to_do() {
        assert_eq!(
            driver_too_old(12040).as_deref(),
            Some(
                "the NVIDIA driver supports CUDA 12.4, this build needs CUDA 13.0 or later (update the driver)"
            )
        );
        assert_eq!(driver_too_old(13000), None);
        assert_eq!(driver_too_old(13020), None);
        assert_eq!(driver_version("libsoragen-no-such-driver.so"), None);
    }

    #[cfg(feature = "cuda")]
    #[test]
    fn every_request_for_one_gpu_gets_the_same_handle() {
        if let (Ok(first), Ok(second)) = (
            open_device(DeviceRequest::Cuda(0)),
            open_device(DeviceRequest::Cuda(0)),
        ) {
            assert!(first.same_device(&second));
        }
    }
}
