//! Between GStreamer buffers in any supported format and the core's 8-bit RGB frames.
//! GStreamer's own video converter does the colour work (YUV matrices, chroma siting), through
//! packed RGBA in both directions. In a CUDA build, frames in CUDA memory of the model's GPU
//! are converted there (`crate::cuda`).

#[cfg(feature = "cuda")]
use std::sync::{Arc, Mutex};

use candle_core::Device;
use gst::glib;
use gst_video::prelude::*;
use gst_video::{VideoFormat, VideoFrame, VideoInfo};
use soragen_core::video::{Frame, Video};

/// Formats both elements accept and produce (system memory).
pub const FORMATS: [VideoFormat; 7] = [
    VideoFormat::Rgba,
    VideoFormat::Rgbx,
    VideoFormat::Bgra,
    VideoFormat::Bgrx,
    VideoFormat::Rgb,
    VideoFormat::I420,
    VideoFormat::Nv12,
];

/// Formats whose alpha channel can carry the background mask.
pub const ALPHA_FORMATS: [VideoFormat; 2] = [VideoFormat::Rgba, VideoFormat::Bgra];

pub fn caps(formats: &[VideoFormat]) -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .format_list(formats.iter().copied())
        .build()
}

/// The element's caps for `formats`: in a CUDA build, first those the CUDA path takes in CUDA
/// memory, then all in system memory.
pub fn element_caps(formats: &[VideoFormat]) -> gst::Caps {
    #[cfg(feature = "cuda")]
    let caps = {
        let mut all = crate::cuda::caps(formats);
        all.merge(caps(formats));
        all
    };
    #[cfg(not(feature = "cuda"))]
    let caps = caps(formats);
    caps
}

/// Where the negotiated caps keep frames, and so how they are read and written.
#[derive(Clone, Default)]
pub enum FrameMemory {
    #[default]
    System,
    /// `memory:CUDAMemory` on the model's GPU.
    #[cfg(feature = "cuda")]
    Cuda(Arc<crate::cuda::CudaFrames>),
}

impl FrameMemory {
    pub fn to_video(
        &self,
        buffers: &[gst::Buffer],
        info: &VideoInfo,
    ) -> Result<Video, glib::BoolError> {
        match self {
            #[cfg(feature = "cuda")]
            Self::Cuda(cuda) if buffers.iter().all(|buffer| cuda.is_ours(buffer)) => {
                cuda.to_video(buffers, info)
            }
            // CUDA memory of another context is mapped through host memory, like system memory.
            _ => to_video(buffers, info),
        }
    }

    pub fn to_buffers(
        &self,
        frames: &[&Frame],
        info: &VideoInfo,
    ) -> Result<Vec<gst::Buffer>, glib::BoolError> {
        match self {
            #[cfg(feature = "cuda")]
            Self::Cuda(cuda) => cuda.to_buffers(frames, info),
            Self::System => frames.iter().map(|frame| to_buffer(frame, info)).collect(),
        }
    }
}

static CAT: std::sync::LazyLock<gst::DebugCategory> = std::sync::LazyLock::new(|| {
    gst::DebugCategory::new(
        "soragen-gpu",
        gst::DebugColorFlags::empty(),
        Some("Soragen's GPU shared with the pipeline"),
    )
});

/// The model's GPU as shared with the pipeline (cuda build), or why not: it decides whether caps
/// in CUDA memory are offered and how their frames are read and written. The elements share the
/// GPU the `device` property names from NULL -> READY, before any CUDA element of the pipeline
/// looks for a context (at READY -> PAUSED, downstream first), so that all of them take ours.
/// Until then CUDA memory is offered (as the templates do), so that pipelines asking for it can
/// be linked.
#[derive(Default)]
pub struct SharedGpu {
    /// None until a device is shared or refused.
    #[cfg(feature = "cuda")]
    cuda: Mutex<Option<Result<Arc<crate::cuda::CudaFrames>, String>>>,
}

impl SharedGpu {
    #[cfg(feature = "cuda")]
    fn shared(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<Result<Arc<crate::cuda::CudaFrames>, String>>> {
        self.cuda.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shares `device` (the model's) with the pipeline, unless it is already shared: a
    /// have-context message from `element` offers our CUDA context to the other CUDA elements.
    /// Logs why not where it cannot.
    pub fn share(&self, element: &gst::Element, device: &Device) {
        if let Err(reason) = self.try_share(element, device) {
            gst::info!(CAT, obj = element, "no frames in CUDA memory: {reason}");
        }
    }

    fn try_share(&self, element: &gst::Element, device: &Device) -> Result<(), String> {
        #[cfg(feature = "cuda")]
        {
            if let Some(Ok(cuda)) = self.shared().as_ref()
                && cuda.device().same_device(device)
            {
                return Ok(());
            }
            let shared = if device.is_cuda() {
                crate::cuda::CudaFrames::new(device).map(Arc::new)
            } else {
                Err("the model runs on the CPU".into())
            };
            if let Ok(cuda) = &shared {
                let _ = element.post_message(cuda.have_context_message(element));
            }
            let result = shared.as_ref().map(|_| ()).map_err(String::clone);
            *self.shared() = Some(shared);
            result
        }
        #[cfg(not(feature = "cuda"))]
        {
            let _ = (element, device);
            Err("this build has no CUDA support".into())
        }
    }

    /// Stops sharing (READY -> NULL).
    pub fn stop(&self) {
        #[cfg(feature = "cuda")]
        {
            *self.shared() = None;
        }
    }

    /// `caps` without CUDA memory once the GPU could not be shared.
    pub fn usable_caps(&self, caps: gst::Caps) -> gst::Caps {
        #[cfg(feature = "cuda")]
        if let Some(Err(_)) = *self.shared() {
            let mut system = gst::Caps::new_empty();
            for (structure, features) in caps.iter_with_features() {
                if !features.contains(crate::cuda::CAPS_FEATURE) {
                    system
                        .get_mut()
                        .expect("new caps")
                        .append_structure_full(structure.to_owned(), Some(features.to_owned()));
                }
            }
            return system;
        }
        caps
    }

    /// Answers a `gst.cuda.context` query with our context, when shared.
    pub fn answer_context_query(&self, element: &gst::Element, query: &mut gst::QueryRef) -> bool {
        #[cfg(feature = "cuda")]
        if let gst::QueryView::Context(_) = query.view()
            && let Some(Ok(cuda)) = self.shared().as_ref()
        {
            return cuda.answer_context_query(element, query);
        }
        let _ = (element, query);
        false
    }

    /// How frames of `caps` are read and written: CUDA memory needs the GPU shared.
    pub fn memory_for(&self, caps: &gst::CapsRef) -> Result<FrameMemory, CudaFramesUnusable> {
        #[cfg(feature = "cuda")]
        if crate::cuda::is_cuda_caps(caps) {
            return match self.shared().as_ref() {
                Some(Ok(cuda)) => Ok(FrameMemory::Cuda(cuda.clone())),
                Some(Err(reason)) => Err(CudaFramesUnusable::NotShared(reason.clone())),
                None => Err(CudaFramesUnusable::NoDevice),
            };
        }
        let _ = caps;
        Ok(FrameMemory::System)
    }
}

/// Why negotiated frames in CUDA memory cannot be used (only a cuda build negotiates them).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
#[derive(Clone, Debug, thiserror::Error)]
pub enum CudaFramesUnusable {
    #[error("Frames in CUDA memory need the model on a GPU shared with the pipeline: {0}")]
    NotShared(String),
    #[error(
        "Frames in CUDA memory need the model on a GPU shared with the pipeline: no device is open"
    )]
    NoDevice,
}

/// Packed RGBA of the same geometry and timing as `info` (the converter refuses anything else).
fn rgba_info(info: &VideoInfo) -> Result<VideoInfo, glib::BoolError> {
    VideoInfo::builder(VideoFormat::Rgba, info.width(), info.height())
        .fps(info.fps())
        .par(info.par())
        .interlace_mode(info.interlace_mode())
        .build()
}

fn converter(
    from: &VideoInfo,
    to: &VideoInfo,
) -> Result<gst_video::VideoConverter, glib::BoolError> {
    gst_video::VideoConverter::new(from, to, None)
}

fn fps(info: &VideoInfo) -> Option<(u32, u32)> {
    let fps = info.fps();
    (fps.numer() > 0).then(|| (fps.numer() as u32, fps.denom() as u32))
}

/// Reads buffers of format `info` into a clip; alpha is kept where the format has it.
fn to_video(buffers: &[gst::Buffer], info: &VideoInfo) -> Result<Video, glib::BoolError> {
    let rgba = rgba_info(info)?;
    let convert = converter(info, &rgba)?;
    let (width, height) = (info.width() as usize, info.height() as usize);
    let mut video = Video::new(width, height, fps(info));
    for buffer in buffers {
        let source = VideoFrame::from_buffer_readable(buffer.clone(), info)
            .map_err(|_| glib::bool_error!("cannot map a video frame"))?;
        let target = gst::Buffer::with_size(rgba.size())?;
        let mut target = VideoFrame::from_buffer_writable(target, &rgba)
            .map_err(|_| glib::bool_error!("cannot map a video frame"))?;
        convert.frame(&source, &mut target);
        let stride = target.plane_stride()[0] as usize;
        let data = target.plane_data(0)?;
        let mut rgb = Vec::with_capacity(width * height * 3);
        let mut alpha = info.has_alpha().then(|| Vec::with_capacity(width * height));
        for row in data.chunks(stride).take(height) {
            for pixel in row[..width * 4].chunks_exact(4) {
                rgb.extend_from_slice(&pixel[..3]);
                if let Some(alpha) = alpha.as_mut() {
                    alpha.push(pixel[3]);
                }
            }
        }
        video.frames.push(Frame::from_8bit(&rgb, alpha.as_deref()));
    }
    Ok(video)
}

/// Writes one core frame as a new buffer of format `info` (opaque where the frame has no alpha).
fn to_buffer(frame: &Frame, info: &VideoInfo) -> Result<gst::Buffer, glib::BoolError> {
    let rgba = rgba_info(info)?;
    let (width, height) = (info.width() as usize, info.height() as usize);
    if frame.rgb.len() != width * height * 3 {
        return Err(glib::bool_error!(
            "generated frame does not match {}x{}",
            width,
            height
        ));
    }
    let mut source = VideoFrame::from_buffer_writable(gst::Buffer::with_size(rgba.size())?, &rgba)
        .map_err(|_| glib::bool_error!("cannot map a video frame"))?;
    let stride = source.plane_stride()[0] as usize;
    let data = source.plane_data_mut(0)?;
    let (rgb, alpha) = (frame.rgb_8bit(), frame.alpha_8bit());
    for (y, row) in data.chunks_mut(stride).take(height).enumerate() {
        for (x, pixel) in row[..width * 4].chunks_exact_mut(4).enumerate() {
            let i = y * width + x;
            pixel[..3].copy_from_slice(&rgb[i * 3..i * 3 + 3]);
            pixel[3] = alpha.as_ref().map_or(255, |a| a[i]);
        }
    }
    if info.format() == VideoFormat::Rgba {
        return Ok(source.into_buffer());
    }
    let mut target = VideoFrame::from_buffer_writable(gst::Buffer::with_size(info.size())?, info)
        .map_err(|_| glib::bool_error!("cannot map a video frame"))?;
    converter(&rgba, info)?.frame(&source, &mut target);
    Ok(target.into_buffer())
}

/// A replaced-background frame as a buffer of `info`'s format that keeps the source's own
/// samples: a copy of `original` where the generated frame's samples are written only for the
/// pixels in `changed` (one flag per pixel, row by row). A sample of a subsampled plane (the
/// chroma of I420 and NV12) is written when any pixel it covers changed. So no kept pixel goes
/// through RGB and back.
pub fn keep_source_samples(
    original: &gst::Buffer,
    generated: &gst::Buffer,
    changed: &[bool],
    info: &VideoInfo,
) -> Result<gst::Buffer, glib::BoolError> {
    let (width, height) = (info.width() as usize, info.height() as usize);
    if changed.len() != width * height {
        return Err(glib::bool_error!(
            "{} change flags for a {width}x{height} frame",
            changed.len()
        ));
    }
    let finfo = info.format_info();
    if finfo
        .depth()
        .iter()
        .take(finfo.n_components() as usize)
        .any(|&depth| depth != 8)
    {
        return Err(glib::bool_error!("{:?}: only 8-bit formats", info.format()));
    }
    let generated = VideoFrame::from_buffer_readable(generated.clone(), info)
        .map_err(|_| glib::bool_error!("cannot map a video frame"))?;
    let mut target = VideoFrame::from_buffer_writable(original.copy_deep()?, info)
        .map_err(|_| glib::bool_error!("cannot map a video frame"))?;
    for component in 0..finfo.n_components() as usize {
        let plane = finfo.plane()[component] as usize;
        let (offset, step) = (
            finfo.poffset()[component] as usize,
            finfo.pixel_stride()[component] as usize,
        );
        let (w_sub, h_sub) = (finfo.w_sub()[component], finfo.h_sub()[component]);
        let samples_x = finfo.scale_width(component as u8, width as u32) as usize;
        let samples_y = finfo.scale_height(component as u8, height as u32) as usize;
        let (source_stride, target_stride) = (
            generated.plane_stride()[plane] as usize,
            target.plane_stride()[plane] as usize,
        );
        let source = generated.plane_data(plane as u32)?;
        let target = target.plane_data_mut(plane as u32)?;
        for sy in 0..samples_y {
            let rows = (sy << h_sub)..((sy + 1) << h_sub).min(height);
            for sx in 0..samples_x {
                let columns = (sx << w_sub)..((sx + 1) << w_sub).min(width);
                if rows
                    .clone()
                    .any(|y| changed[y * width..][columns.clone()].iter().any(|&c| c))
                {
                    target[sy * target_stride + sx * step + offset] =
                        source[sy * source_stride + sx * step + offset];
                }
            }
        }
    }
    Ok(target.into_buffer())
}
