//! The GPU side: `convert.cu` compiled once per device by NVRTC, launched on the stream the
//! host's [`StreamOrder`] picks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::Device;
use candle_core::cuda_backend::cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg, sys,
};
use candle_core::cuda_backend::cudarc::nvrtc;

use super::layout::{DeviceImage, ImageLayout};
use super::pixels::check_frame;
use super::stream::{StreamOrder, StreamPlan};
use crate::video::{Frame, Video};
use crate::{Error, Result};

const SOURCE: &str = include_str!("convert.cu");
/// Threads per block along x and y.
const TILE: u32 = 16;

struct Kernels {
    import: CudaFunction,
    export: CudaFunction,
}

pub(crate) fn gpu_error(e: DriverError) -> Error {
    if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        Error::GpuOutOfMemory
    } else {
        Error::Gpu(format!("{e:?}"))
    }
}

/// The conversion kernels of a device's context, compiled on first use.
fn kernels(context: &Arc<CudaContext>) -> Result<Arc<Kernels>> {
    static COMPILED: OnceLock<Mutex<HashMap<usize, Arc<Kernels>>>> = OnceLock::new();
    let mut compiled = COMPILED.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    if let Some(kernels) = compiled.get(&context.ordinal()) {
        return Ok(kernels.clone());
    }
    let ptx = nvrtc::compile_ptx(SOURCE).map_err(|e| Error::Gpu(format!("compiling convert.cu: {e:?}")))?;
    let module = context.load_module(ptx).map_err(gpu_error)?;
    let kernels = Arc::new(Kernels {
        import: module.load_function("import_image").map_err(gpu_error)?,
        export: module.load_function("export_image").map_err(gpu_error)?,
    });
    compiled.insert(context.ordinal(), kernels.clone());
    Ok(kernels)
}

fn launch_config(layout: &ImageLayout) -> Result<LaunchConfig> {
    let blocks = |pixels: usize| u32::try_from(pixels.div_ceil(TILE as usize)).ok();
    match (blocks(layout.width), blocks(layout.height)) {
        (Some(x), Some(y)) if y <= 65_535 && i32::try_from(layout.width).is_ok() => {
            Ok(LaunchConfig { grid_dim: (x, y, 1), block_dim: (TILE, TILE, 1), shared_mem_bytes: 0 })
        }
        _ => Err(Error::Input(format!("a {}x{} image is too large for the GPU conversion", layout.width, layout.height))),
    }
}

/// Converts one render's images on one stream: the host's images into the core's frames
/// ([`Video`], what the tasks take) and finished frames back into the host's images.
///
/// Only 8-bit frames cross to host memory: the format, pitch and row-order conversion and the
/// quantisation run on the GPU, so each frame crosses once each way at a quarter of the size
/// of float RGBA. The tasks themselves then work on host frames and run the models on the
/// model device.
pub struct ImageConverter {
    stream: Arc<CudaStream>,
    plan: StreamPlan,
    kernels: Arc<Kernels>,
}

impl ImageConverter {
    /// A converter for images on `device` (a CUDA device of this process, e.g.
    /// [`crate::device::model_device`]) ordered as `order` asks.
    ///
    /// # Safety
    /// A host stream in `order` must be a live stream of `device`'s primary context (the one
    /// the CUDA runtime uses) and outlive the converter.
    pub unsafe fn new(device: &Device, order: StreamOrder) -> Result<Self> {
        let context = device.as_cuda_device().map_err(|e| Error::Gpu(e.to_string()))?.cuda_stream().context().clone();
        let stream = match order {
            // SAFETY: the caller vouches for the stream; a borrowed stream is never destroyed.
            StreamOrder::Host(stream) => unsafe { context.wrap_borrowed_stream(stream as sys::CUstream) },
            // The calling thread's default stream: no extra stream for the context to track,
            // and the same one candle queues this thread's work on.
            StreamOrder::Own => context.per_thread_stream(),
        };
        Ok(Self { stream, plan: order.plan(), kernels: kernels(&context)? })
    }

    /// The host's images as 8-bit frames with alpha, top row first. Waits for this stream
    /// (the host's own work that wrote the images), not for the device.
    ///
    /// # Safety
    /// Every image must be device memory of this context that the layout describes, written
    /// by work queued on this stream (or finished) and left alone until this returns.
    pub unsafe fn import_frames(&self, images: &[DeviceImage]) -> Result<Vec<Frame>> {
        let mut staged = Vec::with_capacity(images.len());
        for image in images {
            let pixels = image.layout.width * image.layout.height;
            // SAFETY: every element is written by the kernel before it is read back.
            let mut rgb: CudaSlice<u8> = unsafe { self.stream.alloc(3 * pixels) }.map_err(gpu_error)?;
            let mut alpha: CudaSlice<u8> = unsafe { self.stream.alloc(pixels) }.map_err(gpu_error)?;
            let (top_row, down_step) = (image.row_address(0), image.layout.down_step() as i64);
            let (format, width, height) =
                (image.layout.format.kernel_code(), image.layout.width as i32, image.layout.height as i32);
            let config = launch_config(&image.layout)?;
            let mut launch = self.stream.launch_builder(&self.kernels.import);
            launch.arg(&top_row).arg(&down_step).arg(&format).arg(&width).arg(&height).arg(&mut rgb).arg(&mut alpha);
            // SAFETY: the arguments match the kernel's signature; the caller vouches for the image.
            unsafe { launch.launch(config) }.map_err(gpu_error)?;
            staged.push((rgb, alpha));
        }
        let mut frames = Vec::with_capacity(images.len());
        for (rgb, alpha) in &staged {
            let rgb = self.stream.clone_dtoh(rgb).map_err(gpu_error)?;
            let alpha = self.stream.clone_dtoh(alpha).map_err(gpu_error)?;
            frames.push(Frame { rgb, alpha: Some(alpha) });
        }
        self.stream.synchronize().map_err(gpu_error)?;
        Ok(frames)
    }

    /// The host's images as a clip; all must have one size.
    ///
    /// # Safety
    /// As [`ImageConverter::import_frames`].
    pub unsafe fn import_video(&self, images: &[DeviceImage], fps: Option<(u32, u32)>) -> Result<Video> {
        let Some(first) = images.first() else {
            return Err(Error::Input("no images to import".into()));
        };
        let (width, height) = (first.layout.width, first.layout.height);
        if let Some(other) = images.iter().find(|i| (i.layout.width, i.layout.height) != (width, height)) {
            return Err(Error::Input(format!(
                "images of one clip differ in size: {width}x{height} and {}x{}",
                other.layout.width, other.layout.height
            )));
        }
        // SAFETY: passed on from the caller.
        let frames = unsafe { self.import_frames(images) }?;
        Ok(Video { width, height, frames, fps })
    }

    /// Queues writing `frame` (top row first, alpha or opaque) into the host's image. Returns
    /// without waiting: [`ImageConverter::finish`] decides whether to.
    ///
    /// # Safety
    /// The image must be device memory of this context that the layout describes, not used by
    /// the host until this stream has passed this point.
    pub unsafe fn export_frame(&self, frame: &Frame, image: &DeviceImage) -> Result<()> {
        check_frame(frame, &image.layout)?;
        let config = launch_config(&image.layout)?;
        // Copies from pageable memory return once the bytes are staged: `frame` may go after.
        let rgb = self.stream.clone_htod(&frame.rgb).map_err(gpu_error)?;
        let alpha = frame.alpha.as_ref().map(|a| self.stream.clone_htod(a)).transpose().map_err(gpu_error)?;
        let null: u64 = 0;
        let (top_row, down_step) = (image.row_address(0), image.layout.down_step() as i64);
        let (format, width, height) =
            (image.layout.format.kernel_code(), image.layout.width as i32, image.layout.height as i32);
        let mut launch = self.stream.launch_builder(&self.kernels.export);
        launch.arg(&rgb);
        match &alpha {
            Some(alpha) => launch.arg(alpha),
            None => launch.arg(&null),
        };
        launch.arg(&format).arg(&width).arg(&height).arg(&top_row).arg(&down_step);
        // SAFETY: the arguments match the kernel's signature; the caller vouches for the image.
        unsafe { launch.launch(config) }.map_err(gpu_error)?;
        // Dropping the staging buffers frees them in stream order, after the kernel.
        Ok(())
    }

    /// Ends the render as planned: on the host's stream, returns at once (the host orders its
    /// reads after our kernels); on our own, waits until the output is written.
    pub fn finish(self) -> Result<()> {
        if self.plan.wait_before_return {
            self.stream.synchronize().map_err(gpu_error)?;
        }
        Ok(())
    }
}
