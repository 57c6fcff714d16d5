//! The GPU side: `convert.cu` compiled once per device by NVRTC, launched on the stream the
//! host's [`StreamOrder`] picks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use candle_core::Device;
use candle_core::cuda_backend::cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError, LaunchConfig, PushKernelArg,
    result, sys,
};
use candle_core::cuda_backend::cudarc::nvrtc;

use super::layout::{DeviceImage, ImageLayout, Position, Region};
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
    compose: CudaFunction,
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
    let mut compiled = COMPILED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(kernels) = compiled.get(&context.ordinal()) {
        return Ok(kernels.clone());
    }
    let ptx = nvrtc::compile_ptx(SOURCE)
        .map_err(|e| Error::Gpu(format!("compiling convert.cu: {e:?}")))?;
    let module = context.load_module(ptx).map_err(gpu_error)?;
    let kernels = Arc::new(Kernels {
        import: module.load_function("import_image").map_err(gpu_error)?,
        export: module.load_function("export_image").map_err(gpu_error)?,
        compose: module.load_function("compose_region").map_err(gpu_error)?,
    });
    compiled.insert(context.ordinal(), kernels.clone());
    Ok(kernels)
}

/// How many CUDA devices the driver reports, without creating a context: 0 where there is no
/// driver, or it cannot start.
pub fn cuda_device_count() -> usize {
    // cudarc panics on a missing library where it loads them at run time: look first, and catch
    // what is left.
    if crate::device::cuda_unavailable().is_some() {
        return 0;
    }
    let count = crate::device::catch_cuda_panic(|| {
        result::init().and_then(|()| result::device::get_count())
    });
    match count {
        Ok(Ok(count)) => usize::try_from(count).unwrap_or(0),
        _ => 0,
    }
}

/// The device of the CUDA context current on this thread (the one a host renders with), or
/// None when no context is current.
pub fn current_device_ordinal() -> Result<Option<usize>> {
    let Some(_) = result::ctx::get_current().map_err(gpu_error)? else {
        return Ok(None);
    };
    let mut device = 0;
    // SAFETY: a context is current; the call writes one device number.
    unsafe { sys::cuCtxGetDevice(&mut device) }
        .result()
        .map_err(gpu_error)?;
    Ok(Some(device as usize))
}

fn launch_config(layout: &ImageLayout) -> Result<LaunchConfig> {
    grid(layout.width, layout.height).ok_or_else(|| {
        Error::Input(format!(
            "a {}x{} image is too large for the GPU conversion",
            layout.width, layout.height
        ))
    })
}

/// One thread per pixel of a `width` x `height` area, when the grid and the kernels' int
/// coordinates can hold it.
fn grid(width: usize, height: usize) -> Option<LaunchConfig> {
    let blocks = |pixels: usize| u32::try_from(pixels.div_ceil(TILE as usize)).ok();
    match (blocks(width), blocks(height)) {
        (Some(x), Some(y))
            if y <= 65_535 && i32::try_from(width).is_ok() && i32::try_from(height).is_ok() =>
        {
            Some(LaunchConfig {
                grid_dim: (x.max(1), y.max(1), 1),
                block_dim: (TILE, TILE, 1),
                shared_mem_bytes: 0,
            })
        }
        _ => None,
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
        let context = device
            .as_cuda_device()
            .map_err(|e| Error::Gpu(e.to_string()))?
            .cuda_stream()
            .context()
            .clone();
        let stream = match order {
            // SAFETY: the caller vouches for the stream; a borrowed stream is never destroyed.
            StreamOrder::Host(stream) => unsafe {
                context.wrap_borrowed_stream(stream as sys::CUstream)
            },
            // The calling thread's default stream: no extra stream for the context to track,
            // and the same one candle queues this thread's work on.
            StreamOrder::Own => context.per_thread_stream(),
        };
        Ok(Self {
            stream,
            plan: order.plan(),
            kernels: kernels(&context)?,
        })
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
            let mut rgb: CudaSlice<u8> =
                unsafe { self.stream.alloc(3 * pixels) }.map_err(gpu_error)?;
            let mut alpha: CudaSlice<u8> =
                unsafe { self.stream.alloc(pixels) }.map_err(gpu_error)?;
            let (top_row, down_step) = (image.row_address(0), image.layout.down_step() as i64);
            let (format, width, height) = (
                image.layout.format.kernel_code(),
                image.layout.width as i32,
                image.layout.height as i32,
            );
            let config = launch_config(&image.layout)?;
            let mut launch = self.stream.launch_builder(&self.kernels.import);
            launch
                .arg(&top_row)
                .arg(&down_step)
                .arg(&format)
                .arg(&width)
                .arg(&height)
                .arg(&mut rgb)
                .arg(&mut alpha);
            // SAFETY: the arguments match the kernel's signature; the caller vouches for the image.
            unsafe { launch.launch(config) }.map_err(gpu_error)?;
            staged.push((rgb, alpha));
        }
        let mut frames = Vec::with_capacity(images.len());
        for (rgb, alpha) in &staged {
            let rgb = self.stream.clone_dtoh(rgb).map_err(gpu_error)?;
            let alpha = self.stream.clone_dtoh(alpha).map_err(gpu_error)?;
            frames.push(Frame::from_8bit(&rgb, Some(&alpha)));
        }
        self.stream.synchronize().map_err(gpu_error)?;
        Ok(frames)
    }

    /// The host's images as a clip; all must have one size.
    ///
    /// # Safety
    /// As [`ImageConverter::import_frames`].
    pub unsafe fn import_video(
        &self,
        images: &[DeviceImage],
        fps: Option<(u32, u32)>,
    ) -> Result<Video> {
        let Some(first) = images.first() else {
            return Err(Error::Input("no images to import".into()));
        };
        let (width, height) = (first.layout.width, first.layout.height);
        if let Some(other) = images
            .iter()
            .find(|i| (i.layout.width, i.layout.height) != (width, height))
        {
            return Err(Error::Input(format!(
                "images of one clip differ in size: {width}x{height} and {}x{}",
                other.layout.width, other.layout.height
            )));
        }
        // SAFETY: passed on from the caller.
        let frames = unsafe { self.import_frames(images) }?;
        Ok(Video {
            frames,
            ..Video::new(width, height, fps)
        })
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
        let rgb = self
            .stream
            .clone_htod(&frame.rgb_8bit())
            .map_err(gpu_error)?;
        let alpha = frame
            .alpha_8bit()
            .map(|a| self.stream.clone_htod(&a))
            .transpose()
            .map_err(gpu_error)?;
        let null: u64 = 0;
        let (top_row, down_step) = (image.row_address(0), image.layout.down_step() as i64);
        let (format, width, height) = (
            image.layout.format.kernel_code(),
            image.layout.width as i32,
            image.layout.height as i32,
        );
        let mut launch = self.stream.launch_builder(&self.kernels.export);
        launch.arg(&rgb);
        match &alpha {
            Some(alpha) => launch.arg(alpha),
            None => launch.arg(&null),
        };
        launch
            .arg(&format)
            .arg(&width)
            .arg(&height)
            .arg(&top_row)
            .arg(&down_step);
        // SAFETY: the arguments match the kernel's signature; the caller vouches for the image.
        unsafe { launch.launch(config) }.map_err(gpu_error)?;
        // Dropping the staging buffers frees them in stream order, after the kernel.
        Ok(())
    }

    /// Queues copying `source` (placed at `at` over the output) into `region` of `output`,
    /// bytes as they are: kept frames come out bit-identical. Pixels of the region the source
    /// does not cover become zero.
    ///
    /// # Safety
    /// Both images must be device memory of this context that their layouts describe, the
    /// source written by work queued on this stream (or finished), the output not used by the
    /// host until this stream has passed this point.
    pub unsafe fn copy_region(
        &self,
        output: &DeviceImage,
        region: Region,
        source: &DeviceImage,
        at: Position,
    ) -> Result<()> {
        // SAFETY: passed on from the caller.
        unsafe { self.compose(output, region, Some((source, at)), None) }
    }

    /// Queues writing `frame` (`width` x `height`, placed at `at`) into `region` of `output`,
    /// opaque, zero where the frame does not reach. Where `unchanged` (an in-place edit's
    /// source, placed over the output) has a pixel that reads as exactly the generated colour,
    /// that pixel is written instead, at full precision.
    ///
    /// # Safety
    /// As [`ImageConverter::copy_region`].
    pub unsafe fn write_region(
        &self,
        output: &DeviceImage,
        region: Region,
        frame: &Frame,
        (width, height): (usize, usize),
        at: Position,
        unchanged: Option<(&DeviceImage, Position)>,
    ) -> Result<()> {
        if frame.rgb.len() != 3 * width * height {
            return Err(Error::Output(format!(
                "a frame of {} samples is not {width}x{height} RGB",
                frame.rgb.len()
            )));
        }
        // SAFETY: passed on from the caller.
        unsafe { self.compose(output, region, unchanged, Some((frame, width, height, at))) }
    }

    /// Launches `compose_region` (see `convert.cu`).
    unsafe fn compose(
        &self,
        output: &DeviceImage,
        region: Region,
        source: Option<(&DeviceImage, Position)>,
        frame: Option<(&Frame, usize, usize, Position)>,
    ) -> Result<()> {
        region.check_inside(&output.layout)?;
        if region.width == 0 || region.height == 0 {
            return Ok(());
        }
        if let Some((image, _)) = source
            && image.layout.format != output.layout.format
        {
            return Err(Error::Input(format!(
                "a {:?} image cannot be copied into a {:?} one",
                image.layout.format, output.layout.format
            )));
        }
        let config = grid(region.width, region.height).ok_or_else(|| {
            Error::Input(format!(
                "a {}x{} region is too large for the GPU",
                region.width, region.height
            ))
        })?;
        let int = |value: usize| {
            i32::try_from(value)
                .map_err(|_| Error::Input(format!("{value} pixels is too large for the GPU")))
        };
        let (out_top, out_step, format) = (
            output.row_address(0),
            output.layout.down_step() as i64,
            output.layout.format.kernel_code(),
        );
        let (left, top, width, height) = (
            int(region.left)?,
            int(region.top)?,
            int(region.width)?,
            int(region.height)?,
        );
        let null: u64 = 0;
        let (source_top, source_step, source_at, source_width, source_height) = match source {
            Some((image, at)) => (
                image.row_address(0),
                image.layout.down_step() as i64,
                at,
                int(image.layout.width)?,
                int(image.layout.height)?,
            ),
            None => (null, 0, Position { left: 0, top: 0 }, 0, 0),
        };
        let rgb = frame
            .map(|(frame, ..)| self.stream.clone_htod(&frame.rgb_8bit()))
            .transpose()
            .map_err(gpu_error)?;
        let (frame_at, frame_width, frame_height) = match frame {
            Some((_, width, height, at)) => (at, int(width)?, int(height)?),
            None => (Position { left: 0, top: 0 }, 0, 0),
        };
        let mut launch = self.stream.launch_builder(&self.kernels.compose);
        launch
            .arg(&out_top)
            .arg(&out_step)
            .arg(&format)
            .arg(&left)
            .arg(&top)
            .arg(&width)
            .arg(&height);
        launch
            .arg(&source_top)
            .arg(&source_step)
            .arg(&source_at.left)
            .arg(&source_at.top)
            .arg(&source_width)
            .arg(&source_height);
        match &rgb {
            Some(rgb) => launch.arg(rgb),
            None => launch.arg(&null),
        };
        launch
            .arg(&frame_at.left)
            .arg(&frame_at.top)
            .arg(&frame_width)
            .arg(&frame_height);
        // SAFETY: the arguments match the kernel's signature; the caller vouches for the images.
        unsafe { launch.launch(config) }.map_err(gpu_error)?;
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
