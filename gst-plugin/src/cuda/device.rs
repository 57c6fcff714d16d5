//! The model's GPU shared with the pipeline: the primary CUDA context that candle (and the CUDA
//! runtime) uses, wrapped as a `GstCudaContext` and offered to the other CUDA elements, so that
//! their buffers are device memory our kernels can read. Frames are read from CUDA memory with
//! the CUDA map flag and generated frames written into a CUDA buffer pool of that context.

use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::sync::Mutex;

use gst::glib;
use gst::glib::translate::{FromGlibPtrFull, ToGlibPtr};
use gst::prelude::*;
use gst_video::{VideoFormat, VideoInfo};
use soragen_core::gpu::{DeviceImage, ImageConverter, PixelFormat, StreamOrder};
use soragen_core::video::{Frame, Video};

use super::library::{CAPS_FEATURE, GstCuda, GstCudaContext, GstCudaMemory, MAP_CUDA, gst_cuda};

/// Formats the CUDA path reads and writes (packed 8-bit with alpha).
pub const FORMATS: [VideoFormat; 2] = [VideoFormat::Rgba, VideoFormat::Bgra];

/// Whether caps carry frames in CUDA memory.
pub fn is_cuda_caps(caps: &gst::CapsRef) -> bool {
    caps.features(0)
        .is_some_and(|features| features.contains(CAPS_FEATURE))
}

/// `caps` with the formats of `formats` that the CUDA path handles, in CUDA memory.
pub fn caps(formats: &[VideoFormat]) -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .features([CAPS_FEATURE])
        .format_list(formats.iter().copied().filter(|f| FORMATS.contains(f)))
        .build()
}

fn pixel_format(info: &VideoInfo) -> Result<PixelFormat, glib::BoolError> {
    match info.format() {
        VideoFormat::Rgba => Ok(PixelFormat::Rgba8),
        VideoFormat::Bgra => Ok(PixelFormat::Bgra8),
        other => Err(glib::bool_error!(
            "{other:?} in CUDA memory is not supported (use RGBA or BGRA)"
        )),
    }
}

fn core_error(e: soragen_core::Error) -> glib::BoolError {
    glib::bool_error!("{e}")
}

/// Takes ownership of a new `GstObject`, sinking its floating reference if it has one.
///
/// # Safety
/// `ptr` must be a new, non-null `GstObject` of type `T` that the caller owns.
unsafe fn take_object<T: glib::object::ObjectType + FromGlibPtrFull<*mut T::GlibType>>(
    ptr: *mut T::GlibType,
) -> T {
    let object = ptr as *mut glib::gobject_ffi::GObject;
    // SAFETY: as promised by the caller.
    unsafe {
        if glib::gobject_ffi::g_object_is_floating(object) != glib::ffi::GFALSE {
            glib::gobject_ffi::g_object_ref_sink(object);
        }
        T::from_glib_full(ptr)
    }
}

/// A video frame mapped for its device pointer; unmapped on drop.
struct CudaMapping(gst_video::ffi::GstVideoFrame);

impl CudaMapping {
    /// # Safety
    /// `buffer` must hold CUDA memory, and be writable when `flags` asks for writing.
    unsafe fn new(
        buffer: &gst::BufferRef,
        info: &VideoInfo,
        flags: gst::ffi::GstMapFlags,
    ) -> Result<Self, glib::BoolError> {
        let mut frame = MaybeUninit::zeroed();
        // SAFETY: `frame` is written by a successful map; the caller vouches for the buffer.
        let mapped = unsafe {
            gst_video::ffi::gst_video_frame_map(
                frame.as_mut_ptr(),
                info.to_glib_none().0,
                buffer.as_mut_ptr(),
                flags | MAP_CUDA,
            )
        };
        if mapped == glib::ffi::GFALSE {
            return Err(glib::bool_error!("cannot map a frame in CUDA memory"));
        }
        // SAFETY: mapped above.
        Ok(Self(unsafe { frame.assume_init() }))
    }

    fn image(&self, info: &VideoInfo) -> Result<DeviceImage, glib::BoolError> {
        let pitch = usize::try_from(self.0.info.stride[0])
            .map_err(|_| glib::bool_error!("negative pitch in CUDA memory"))?;
        DeviceImage::top_down(
            self.0.data[0] as u64,
            info.width() as usize,
            info.height() as usize,
            pixel_format(info)?,
            pitch,
        )
        .map_err(core_error)
    }
}

impl Drop for CudaMapping {
    fn drop(&mut self) {
        // SAFETY: mapped in `new`, unmapped once.
        unsafe { gst_video::ffi::gst_video_frame_unmap(&mut self.0) }
    }
}

/// The model's CUDA device as the pipeline sees it.
pub struct CudaFrames {
    gst_cuda: &'static GstCuda,
    /// The model's device; keeps the context alive while GStreamer uses the wrapper.
    device: candle_core::Device,
    /// The `GstCudaContext` wrapping the device's primary context.
    context: gst::Object,
    /// The wrapped `CUcontext`'s address: CUDA memory of this context is ours to read.
    handle: usize,
    /// Output buffers, for the caps they were made for.
    pool: Mutex<Option<(gst::Caps, gst::BufferPool)>>,
}

impl CudaFrames {
    /// Wraps the context of `device` (the model's); says why not in one line when it cannot.
    pub fn new(device: &candle_core::Device) -> Result<Self, String> {
        let gst_cuda = gst_cuda()?;
        let cuda = device
            .as_cuda_device()
            .map_err(|_| "the model does not run on a GPU".to_string())?;
        let context = cuda.cuda_stream().context().clone();
        let handle = context.cu_ctx() as *mut c_void;
        // SAFETY: a live context of its device; a wrapped context is never destroyed by GStreamer.
        let wrapped = unsafe { (gst_cuda.context_new_wrapped)(handle, context.cu_device()) };
        let handle = handle as usize;
        if wrapped.is_null() {
            return Err("GStreamer could not wrap the model's CUDA context".into());
        }
        // SAFETY: a new GstCudaContext, ours.
        let context = unsafe { take_object::<gst::Object>(wrapped as *mut gst::ffi::GstObject) };
        Ok(Self {
            gst_cuda,
            device: device.clone(),
            context,
            handle,
            pool: Mutex::default(),
        })
    }

    /// The model's device whose context this is.
    pub fn device(&self) -> &candle_core::Device {
        &self.device
    }

    fn context_ptr(&self) -> *mut GstCudaContext {
        self.context.as_ptr() as *mut GstCudaContext
    }

    /// Answers a `gst.cuda.context` context query with our context.
    pub fn answer_context_query(&self, element: &gst::Element, query: &mut gst::QueryRef) -> bool {
        // SAFETY: live element, query and context.
        unsafe {
            (self.gst_cuda.handle_context_query)(
                element.as_ptr(),
                query.as_mut_ptr(),
                self.context_ptr(),
            ) != glib::ffi::GFALSE
        }
    }

    /// A have-context message offering our context to the whole pipeline.
    pub fn have_context_message(&self, element: &gst::Element) -> gst::Message {
        // SAFETY: returns a new GstContext holding a reference to ours.
        let context = unsafe {
            gst::Context::from_glib_full((self.gst_cuda.context_new_cuda_context)(
                self.context_ptr(),
            ))
        };
        gst::message::HaveContext::builder(context)
            .src(element)
            .build()
    }

    /// Whether `buffer` is one CUDA memory of our context, readable by our kernels.
    pub fn is_ours(&self, buffer: &gst::BufferRef) -> bool {
        if buffer.n_memory() != 1 {
            return false;
        }
        let memory = buffer.peek_memory(0).as_mut_ptr();
        // SAFETY: a live memory; `context` is read only from CUDA memory.
        unsafe {
            (self.gst_cuda.is_cuda_memory)(memory) != glib::ffi::GFALSE
                && (self.gst_cuda.context_get_handle)((*(memory as *mut GstCudaMemory)).context)
                    as usize
                    == self.handle
        }
    }

    /// Buffers of our context as a clip, converted on the GPU.
    pub fn to_video(
        &self,
        buffers: &[gst::Buffer],
        info: &VideoInfo,
    ) -> Result<Video, glib::BoolError> {
        let mappings = buffers
            .iter()
            // SAFETY: the caller checked that they are our CUDA memory (`is_ours`).
            .map(|buffer| unsafe { CudaMapping::new(buffer, info, gst::ffi::GST_MAP_READ) })
            .collect::<Result<Vec<_>, _>>()?;
        let images = mappings
            .iter()
            .map(|m| m.image(info))
            .collect::<Result<Vec<_>, _>>()?;
        let fps = info.fps();
        let fps = (fps.numer() > 0).then(|| (fps.numer() as u32, fps.denom() as u32));
        // SAFETY: the images are mapped device memory of our context until `mappings` goes.
        let video = unsafe {
            let converter =
                ImageConverter::new(&self.device, StreamOrder::Own).map_err(core_error)?;
            let video = converter.import_video(&images, fps).map_err(core_error)?;
            converter.finish().map_err(core_error)?;
            video
        };
        Ok(video)
    }

    /// Frames as new buffers of our CUDA buffer pool, written on the GPU; returns once written.
    pub fn to_buffers(
        &self,
        frames: &[&Frame],
        info: &VideoInfo,
    ) -> Result<Vec<gst::Buffer>, glib::BoolError> {
        let pool = self.pool_for(info)?;
        // SAFETY: no host stream: the converter's own, finished before returning.
        let converter =
            unsafe { ImageConverter::new(&self.device, StreamOrder::Own) }.map_err(core_error)?;
        let mut buffers = Vec::with_capacity(frames.len());
        for frame in frames {
            let mut buffer = pool
                .acquire_buffer(None)
                .map_err(|e| glib::bool_error!("no CUDA buffer: {e:?}"))?;
            let buffer_ref = buffer
                .get_mut()
                .ok_or_else(|| glib::bool_error!("a pool buffer is shared"))?;
            // SAFETY: a new, writable buffer of our CUDA pool.
            let mapping = unsafe { CudaMapping::new(buffer_ref, info, gst::ffi::GST_MAP_WRITE) }?;
            // SAFETY: the image is mapped device memory of our context, read by nobody before
            // `finish` has waited for the conversion.
            unsafe { converter.export_frame(frame, &mapping.image(info)?) }.map_err(core_error)?;
            drop(mapping);
            buffers.push(buffer);
        }
        converter.finish().map_err(core_error)?;
        Ok(buffers)
    }

    /// The buffer pool for frames of `info`, made again when the caps change.
    fn pool_for(&self, info: &VideoInfo) -> Result<gst::BufferPool, glib::BoolError> {
        let mut caps = info.to_caps()?;
        caps.get_mut()
            .expect("new caps")
            .set_features_simple(Some(gst::CapsFeatures::new([CAPS_FEATURE])));
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((pool_caps, pool)) = pool.as_ref()
            && *pool_caps == caps
        {
            return Ok(pool.clone());
        }
        // SAFETY: a new GstBufferPool of our context, ours.
        let new_pool = unsafe {
            take_object::<gst::BufferPool>((self.gst_cuda.buffer_pool_new)(self.context_ptr()))
        };
        let mut config = new_pool.config();
        config.set_params(Some(&caps), info.size() as u32, 0, 0);
        new_pool.set_config(config)?;
        new_pool.set_active(true)?;
        if let Some((_, old)) = pool.replace((caps, new_pool.clone())) {
            let _ = old.set_active(false);
        }
        Ok(new_pool)
    }
}

impl Drop for CudaFrames {
    fn drop(&mut self) {
        if let Some((_, pool)) = self
            .pool
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = pool.set_active(false);
        }
    }
}
