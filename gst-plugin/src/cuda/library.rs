//! The few functions of GStreamer's CUDA library (`libgstcuda-1.0`, from gst-plugins-bad) that
//! the CUDA memory path needs, declared from its 1.22 headers and loaded at run time: no Rust
//! bindings exist, and a plugin linked against it would not load where it is missing.

use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use gst::ffi::{GstBufferPool, GstContext, GstElement, GstMemory, GstQuery};
use gst::glib::ffi::gboolean;
use libloading::Library;

/// The library's name on Linux (Debian: `libgstreamer-plugins-bad1.0-0`).
pub const LIBRARY: &str = "libgstcuda-1.0.so.0";

/// `GST_MAP_CUDA`: map a CUDA memory for its device pointer instead of a host copy.
pub const MAP_CUDA: gst::ffi::GstMapFlags = gst::ffi::GST_MAP_FLAG_LAST << 1;

/// `GST_CAPS_FEATURE_MEMORY_CUDA_MEMORY`.
pub const CAPS_FEATURE: &str = "memory:CUDAMemory";

/// `GstCudaContext`, a `GstObject` holding a `CUcontext`.
#[repr(C)]
pub struct GstCudaContext {
    _opaque: [u8; 0],
}

/// The public start of `GstCudaMemory`: the memory's context follows the `GstMemory`.
#[repr(C)]
pub struct GstCudaMemory {
    pub mem: GstMemory,
    pub context: *mut GstCudaContext,
}

/// The loaded functions; the library stays loaded for the life of the process.
pub struct GstCuda {
    /// Loads the CUDA driver for the library; false without one.
    load_library: unsafe extern "C" fn() -> gboolean,
    /// Wraps an existing `CUcontext` of a `CUdevice`.
    pub context_new_wrapped: unsafe extern "C" fn(*mut c_void, c_int) -> *mut GstCudaContext,
    pub context_get_handle: unsafe extern "C" fn(*mut GstCudaContext) -> *mut c_void,
    /// Answers a `gst.cuda.context` context query with the given context.
    pub handle_context_query:
        unsafe extern "C" fn(*mut GstElement, *mut GstQuery, *mut GstCudaContext) -> gboolean,
    /// A `gst.cuda.context` context holding the given one, for a have-context message.
    pub context_new_cuda_context: unsafe extern "C" fn(*mut GstCudaContext) -> *mut GstContext,
    pub is_cuda_memory: unsafe extern "C" fn(*mut GstMemory) -> gboolean,
    pub memory_init_once: unsafe extern "C" fn(),
    pub buffer_pool_new: unsafe extern "C" fn(*mut GstCudaContext) -> *mut GstBufferPool,
    _library: Library,
}

impl GstCuda {
    /// # Safety
    /// `name` must be a build of libgstcuda-1.0 whose functions have the 1.22 signatures.
    unsafe fn open(name: &str) -> Result<Self, String> {
        // SAFETY: loading runs the library's initialisers, which only register GObject types.
        let library = unsafe { Library::new(name) }
            .map_err(|e| format!("{name} did not load ({e}): install GStreamer's CUDA library (libgstreamer-plugins-bad1.0-0)"))?;
        macro_rules! function {
            ($symbol:literal) => {
                // SAFETY: the field's type is the function's signature in the 1.22 headers.
                *unsafe { library.get(concat!($symbol, "\0").as_bytes()) }
                    .map_err(|e| format!("{name} has no {}: {e}", $symbol))?
            };
        }
        let cuda = Self {
            load_library: function!("gst_cuda_load_library"),
            context_new_wrapped: function!("gst_cuda_context_new_wrapped"),
            context_get_handle: function!("gst_cuda_context_get_handle"),
            handle_context_query: function!("gst_cuda_handle_context_query"),
            context_new_cuda_context: function!("gst_context_new_cuda_context"),
            is_cuda_memory: function!("gst_is_cuda_memory"),
            memory_init_once: function!("gst_cuda_memory_init_once"),
            buffer_pool_new: function!("gst_cuda_buffer_pool_new"),
            _library: library,
        };
        // SAFETY: both take no arguments and may be called any number of times.
        unsafe {
            if (cuda.load_library)() == 0 {
                return Err(format!("{name} found no CUDA driver (libcuda.so.1)"));
            }
            (cuda.memory_init_once)();
        }
        Ok(cuda)
    }
}

/// The library, loaded on first use; the error says in one line why it cannot be used.
pub fn gst_cuda() -> Result<&'static GstCuda, &'static str> {
    static LOADED: OnceLock<Result<GstCuda, String>> = OnceLock::new();
    // SAFETY: LIBRARY is GStreamer's own CUDA library, whose ABI is stable within 1.x.
    LOADED
        .get_or_init(|| unsafe { GstCuda::open(LIBRARY) })
        .as_ref()
        .map_err(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_one_line_saying_what_to_install() {
        // SAFETY: nothing is loaded.
        let error = unsafe { GstCuda::open("libgstcuda-nonexistent.so") }
            .err()
            .unwrap();
        assert!(error.contains("libgstreamer-plugins-bad1.0-0"), "{error}");
        assert_eq!(error.lines().count(), 1);
    }

    #[test]
    fn the_map_flag_is_gstreamers() {
        assert_eq!(MAP_CUDA, 0x20000);
    }
}
