//! The editing tasks every host calls: extend a clip forward or backward, insert frames
//! between two clips, replace a background, generate from text. Each becomes one or more VACE
//! requests (frames + masks + prompt); see `../shared/docs/models.md`.
//!
//! This module fixes the API the CLI, the OpenFX plugin and the GStreamer element share.
//!
//! Frames the user keeps come out bit-identical: source frames are copied through, and a
//! replaced background is composited onto the source frame at its own resolution, so pixels
//! outside the (dilated, feathered) background mask are the source's samples, whatever their
//! range. Only the model's view of the clip is resized (to the working size, see
//! [`working_size`]) and converted into the model's space (display-referred sRGB in [0, 1],
//! see [`crate::colour_space`]); generated frames are converted back into the clip's space and
//! made at the clip's depth ([`Depth::quantise`]), so a host that hands the task its own earlier
//! output (window by window) gives the model what a whole-clip run gives it.
//!
//! Masks: an all-black background mask (no background in a frame) leaves that frame as it is
//! and runs nothing for it; an all-white one regenerates the whole frame, conditioned on the
//! frames around it.

mod cache;
mod colour;
mod plan;
mod resample;

use std::ops::Range;
use std::path::PathBuf;

use candle_core::Tensor;
use serde::Serialize;

use cache::{Cache, Key};
use colour::ChannelStats;
pub use colour::{Likeness, Seam, likeness, seam};
pub use plan::{Window, next_whole_frame_window, whole_frame_windows};
use resample::{Between, between};

use crate::colour_space::ColourSpace;
use crate::limits;
use crate::memory;
use crate::model::WanVace;
use crate::step_cache::StepCache;
use crate::vace::{Noise, Observer, Prompt, Sampling, VaceInput, checkpoint};
use crate::video::{Depth, Frame, Video};
use crate::{Error, Result};

/// Frames in one Wan2.1 window (5 s at its native 16 fps).
pub const WINDOW_FRAMES: usize = 81;
/// Pixels of Wan2.1-VACE 1.3B's native 832x480.
pub const NATIVE_PIXELS: usize = 832 * 480;
/// Wan2.1's training frame rate, given to generated clips.
pub const MODEL_FPS: (u32, u32) = (16, 1);

/// What the user asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskKind {
    /// `frames` new frames after the clip's last frame.
    ExtendForward { frames: usize },
    /// `frames` new frames before the clip's first frame.
    ExtendBackward { frames: usize },
    /// `frames` new frames leading from the end of `clip` into the start of `next`.
    Insert { frames: usize },
    /// Keep the subject, regenerate the background (mask: 255 = background).
    ReplaceBackground,
    /// Text to video.
    Generate {
        frames: usize,
        width: usize,
        height: usize,
    },
}

/// The frames a task works on. Which are required depends on the [`TaskKind`].
#[derive(Clone, Debug, Default)]
pub struct TaskInputs {
    /// The source clip; clip A for an insert. Absent for generate.
    pub clip: Option<Video>,
    /// Clip B for an insert.
    pub next: Option<Video>,
    /// Background mask per frame of `clip` for replace-background, grey levels, one byte per
    /// pixel (> 127 = background, to be replaced). Absent: the clip's alpha channel decides
    /// (transparent = background).
    pub mask: Option<Vec<Vec<u8>>>,
    /// Reference images (one-frame clips of any size: a subject's look, usually on white),
    /// given to every model window alike so that the subject keeps its look across windows;
    /// each is fitted to the working size as diffusers fits it ([`crate::vace::fit_reference`]).
    pub references: Vec<Video>,
    /// Replace background and generate, run window by window by a host (see
    /// [`whole_frame_windows`]): the frames the window before made at the window's `context`
    /// (in the clip's colour space), which this window reads first as known frames. They are
    /// not part of the output.
    pub previous: Vec<Frame>,
}

/// The defaults of [`TaskParams`], which every surface shows as its own (CLI flags, OpenFX
/// parameters, GStreamer properties).
pub mod defaults {
    pub const STEPS: usize = 50;
    pub const GUIDANCE: f64 = 5.0;
    pub const CONTEXT_FRAMES: usize = 8;
    pub const MASK_DILATION: usize = 4;
    pub const MASK_FEATHER: usize = 2;
    pub const WINDOW_FRAMES: usize = super::WINDOW_FRAMES;
}

/// Everything besides the frames that changes the output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskParams {
    pub prompt: String,
    pub negative_prompt: String,
    pub seed: u64,
    pub steps: usize,
    pub guidance: f64,
    /// Overrides the scheduler's flow shift (a preset's, see [`crate::presets`]).
    pub flow_shift: Option<f64>,
    /// Reuse work between denoising steps ([`crate::step_cache`]).
    pub step_cache: Option<StepCache>,
    /// Source frames nearest the cut that condition an extension or insert.
    pub context_frames: usize,
    /// Match colour and brightness of generated frames to the source they continue.
    pub color_match: bool,
    /// Grow the background mask by this many pixels (tight mattes leave halos).
    pub mask_dilation: usize,
    /// Soften the composite edge over this many pixels.
    pub mask_feather: usize,
    /// Pixel count of the model's working size (multiples of 16, aspect kept). `None`: the
    /// model's native 832x480, or the clip's own size when smaller (clips are never upscaled).
    pub working_pixels: Option<usize>,
    /// Frames per model window ([`WINDOW_FRAMES`] for Wan2.1); longer outputs take several.
    pub window_frames: usize,
    /// Feed a source with a stated frame rate to the model at its 16 fps, so that motion
    /// continues at the source's speed (see `Timeline` in this module); false: one to one.
    pub match_frame_rate: bool,
    /// A folder of finished windows to reuse and fill (see `tasks/cache.rs`); it does not
    /// change the output, so it is not part of the record.
    #[serde(skip)]
    pub cache: Option<PathBuf>,
}

impl Default for TaskParams {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            seed: 0,
            steps: defaults::STEPS,
            guidance: defaults::GUIDANCE,
            flow_shift: None,
            step_cache: None,
            context_frames: defaults::CONTEXT_FRAMES,
            color_match: true,
            mask_dilation: defaults::MASK_DILATION,
            mask_feather: defaults::MASK_FEATHER,
            working_pixels: None,
            window_frames: defaults::WINDOW_FRAMES,
            match_frame_rate: true,
            cache: None,
        }
    }
}

/// What was generated, for the sidecar JSON next to CLI outputs and for hosts to attach.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerationRecord {
    pub model: String,
    pub task: String,
    /// Frame ranges of the output that came from the model (half-open).
    pub generated: Vec<Range<usize>>,
    pub params: TaskParams,
}

/// A finished task: the whole result clip and which of its frames are generated.
#[derive(Clone, Debug)]
pub struct TaskOutput {
    /// Extend: the extended clip. Insert: A, the new frames, then B. Replace background: the
    /// clip with its background replaced. Generate: the new clip.
    pub video: Video,
    pub record: GenerationRecord,
}

impl TaskKind {
    /// The task's name in records and sidecars, as the CLI spells the command.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::ExtendForward { .. } => "extend-forward",
            TaskKind::ExtendBackward { .. } => "extend-backward",
            TaskKind::Insert { .. } => "insert",
            TaskKind::ReplaceBackground => "replace-background",
            TaskKind::Generate { .. } => "generate",
        }
    }
}

/// The model's working size for a `width` x `height` clip: multiples of `multiple`, aspect
/// kept, about `pixels` pixels.
pub fn working_size(width: usize, height: usize, pixels: usize, multiple: usize) -> (usize, usize) {
    let scale = (pixels as f64 / (width * height) as f64).sqrt();
    let fit =
        |side: usize| ((side as f64 * scale / multiple as f64).round() as usize).max(1) * multiple;
    (fit(width), fit(height))
}

/// Peak bytes of a task window's activations ([`memory::ModelSizes::run_activations`]) as a
/// host sees the window: the model works at the working size, one model window (4n+1 frames,
/// at most `window_frames`) at a time.
pub fn window_activations(sizes: &memory::ModelSizes, window: &memory::Window) -> u64 {
    let multiple = sizes.spatial * sizes.patch;
    let pixels = NATIVE_PIXELS.min(window.width.saturating_mul(window.height));
    let (width, height) = working_size(window.width, window.height, pixels, multiple);
    let temporal = sizes.temporal.max(1);
    let frames = ((window.frames.max(1) - 1).div_ceil(temporal))
        .saturating_mul(temporal)
        .saturating_add(1)
        .min(window.window_frames.max(1));
    sizes.run_activations(&memory::Run {
        frames,
        references: 0,
        width,
        height,
        guidance: window.guidance,
    })
}

/// Runs an editing task: the whole result clip and the record of what was generated.
pub fn run_task(
    model: &WanVace,
    kind: &TaskKind,
    inputs: &TaskInputs,
    params: &TaskParams,
    observer: &dyn Observer,
) -> Result<TaskOutput> {
    check_params(model, params)?;
    let working = preflight(model, kind, inputs, params)?;
    let mut timeline = Timeline::new(kind, inputs, params)?;
    let generated = timeline.generated();
    let pending: Vec<bool> = match kind {
        // Every frame after the previous window's counts, whatever the masks say, so that a
        // host that sees the frames one window at a time plans the same windows
        // ([`whole_frame_windows`]).
        TaskKind::ReplaceBackground | TaskKind::Generate { .. } => (0..timeline.slots.len())
            .map(|slot| slot >= inputs.previous.len())
            .collect(),
        _ => timeline.slots.iter().map(Slot::is_pending).collect(),
    };
    let windows = plan::windows(
        &pending,
        params.window_frames,
        params.context_frames,
        model.vae_temporal_factor(),
        timeline.backward,
    );
    // A window the masks keep whole (no background in any of its frames) needs no model; the
    // others keep their numbers (and seeds).
    let windows: Vec<(usize, Range<isize>)> = windows
        .into_iter()
        .enumerate()
        .filter(|(_, window)| window.clone().any(|p| timeline.is_pending(p)))
        .collect();
    if !windows.is_empty() {
        checkpoint(observer)?;
        let prompt = model.encode_prompt(&params.prompt)?;
        checkpoint(observer)?;
        let negative = if params.guidance > 1.0 {
            Some(model.encode_prompt(&params.negative_prompt)?)
        } else {
            None
        };
        // A cache that cannot be used costs only time: run without it.
        let references = fitted_references(inputs, working)?;
        let cache = params.cache.as_deref().and_then(|dir| {
            match open_cache(dir, model, params, &references) {
                Ok(cache) => Some(cache),
                Err(e) => {
                    observer.warn(&format!("running without the cache: {e}"));
                    None
                }
            }
        });
        let references = references
            .into_iter()
            .map(|pixels| {
                Ok(Tensor::from_vec(
                    pixels,
                    (1, 3, 1, working.1, working.0),
                    &model.device,
                )?)
            })
            .collect::<Result<Vec<_>>>()?;
        let request = Request {
            model,
            working,
            prompt: &prompt,
            negative: negative.as_ref(),
            references,
            params,
            observer,
            cache,
            cache_failed: Default::default(),
        };
        let count = windows.last().map_or(0, |(index, _)| index + 1);
        for (index, window) in windows {
            checkpoint(observer)?;
            observer.window(index, count);
            timeline.run_window(&request, window, params.seed.wrapping_add(index as u64))?;
        }
    }
    let record = GenerationRecord {
        model: model.folder.display().to_string(),
        task: kind.name().to_string(),
        generated,
        params: params.clone(),
    };
    Ok(TaskOutput {
        video: timeline.into_video(),
        record,
    })
}

/// The task's reference images fitted to the working size, [3, H, W] in [-1, 1] each.
fn fitted_references(
    inputs: &TaskInputs,
    (width, height): (usize, usize),
) -> Result<Vec<Vec<f32>>> {
    inputs
        .references
        .iter()
        .map(|reference| crate::vace::fit_reference(reference, width, height))
        .collect()
}

/// Image to video: a clip of `frames` frames (at least 2) whose frame 0 is `image` (a one-frame
/// clip), bit-identical, and the rest generated from it: an extension forward of the one-frame
/// clip, at the model's 16 fps, through [`run_task`] (windows, cache, references and colour
/// matching as for any extension). The record names the task `animate`.
pub fn animate(
    model: &WanVace,
    image: &Video,
    frames: usize,
    references: &[Video],
    params: &TaskParams,
    observer: &dyn Observer,
) -> Result<TaskOutput> {
    let (kind, mut inputs) = animate_request(image.clone(), frames)?;
    inputs.references = references.to_vec();
    let mut output = run_task(model, &kind, &inputs, params, observer)?;
    output.record.task = "animate".to_string();
    Ok(output)
}

/// The extension [`animate`] runs: the still as a one-frame clip at 16 fps, `frames - 1` new
/// frames after it.
pub fn animate_request(mut image: Video, frames: usize) -> Result<(TaskKind, TaskInputs)> {
    if image.len() != 1 {
        return Err(Error::Input(format!(
            "the still is one image, not {} frames",
            image.len()
        )));
    }
    if frames < 2 {
        return Err(Error::Request(format!(
            "{frames} frames: animate makes at least 2 (the still, then new frames)"
        )));
    }
    image.fps = Some(MODEL_FPS);
    Ok((
        TaskKind::ExtendForward { frames: frames - 1 },
        TaskInputs {
            clip: Some(image),
            ..TaskInputs::default()
        },
    ))
}

/// The cache and the part of every window's key the whole task shares.
fn open_cache(
    dir: &std::path::Path,
    model: &WanVace,
    params: &TaskParams,
    references: &[Vec<f32>],
) -> Result<(Cache, Key)> {
    let cache = Cache::open(dir)?;
    let mut key = Key::new();
    cache::add_model(&mut key, model)?;
    key.add("prompt", params.prompt.as_bytes());
    key.add("negative prompt", params.negative_prompt.as_bytes());
    key.add("steps", &(params.steps as u64).to_le_bytes());
    key.add("guidance", &params.guidance.to_le_bytes());
    // Only when set, as references: caches made before these existed stay valid.
    if let Some(shift) = params.flow_shift {
        key.add("flow shift", &shift.to_le_bytes());
    }
    if let Some(step_cache) = params.step_cache {
        key.add("step cache", StepCache::spec(Some(step_cache)).as_bytes());
    }
    // No entry for no references: caches made before references existed stay valid.
    for reference in references {
        key.add_f32s("reference", reference);
    }
    Ok((cache, key))
}

/// Frames of the output clip a task makes, from the request alone.
fn output_frames(kind: &TaskKind, inputs: &TaskInputs) -> usize {
    let len = |clip: &Option<Video>| clip.as_ref().map_or(0, Video::len);
    match *kind {
        TaskKind::ExtendForward { frames } | TaskKind::ExtendBackward { frames } => {
            len(&inputs.clip).saturating_add(frames)
        }
        TaskKind::Insert { frames } => len(&inputs.clip)
            .saturating_add(frames)
            .saturating_add(len(&inputs.next)),
        TaskKind::ReplaceBackground => len(&inputs.clip),
        TaskKind::Generate { frames, .. } => frames,
    }
}

/// Every count and size of the request in range, and its memory within the budget, before
/// anything is allocated for it: the output clip and the model's timeline of as many frames,
/// and one window's buffers at the working size. Returns the working size.
fn preflight(
    model: &WanVace,
    kind: &TaskKind,
    inputs: &TaskInputs,
    params: &TaskParams,
) -> Result<(usize, usize)> {
    let (width, height) = match (kind, &inputs.clip) {
        (
            TaskKind::Generate {
                frames,
                width,
                height,
            },
            _,
        ) => {
            at_least_one(*frames)?;
            limits::frame_size("generate", *width, *height)
                .map_err(|e| Error::Request(e.to_string()))?;
            (*width, *height)
        }
        (_, Some(clip)) => (clip.width, clip.height),
        // Timeline::new names what is missing.
        (_, None) => return Ok((0, 0)),
    };
    if let TaskKind::ExtendForward { frames }
    | TaskKind::ExtendBackward { frames }
    | TaskKind::Insert { frames } = *kind
    {
        at_least_one(frames)?;
    }
    let frames = limits::FRAMES.request(output_frames(kind, inputs))?;
    let multiple = model.vae_spatial_factor() * model.patch_size();
    let pixels = params
        .working_pixels
        .unwrap_or(NATIVE_PIXELS.min(width * height));
    let working = working_size(width, height, pixels, multiple);
    // Rounding to the model's multiple can grow a very narrow frame's working size.
    limits::WORKING_PIXELS.request(working.0.saturating_mul(working.1)).map_err(|_| {
        Error::Request(format!(
            "{width}x{height} frames give a working size of {}x{}: too narrow or too large for the model",
            working.0, working.1
        ))
    })?;
    // A frame rate below the model's stretches the timeline: more model frames than output.
    let stretch = inputs
        .clip
        .as_ref()
        .map_or(1.0, |clip| source_step(clip, params))
        .recip()
        .max(1.0)
        .ceil();
    let clip = limits::bytes(
        "the output",
        &[
            frames,
            width,
            height,
            3,
            std::mem::size_of::<f32>(),
            1 + stretch as usize,
        ],
    )?;
    // One model window at a time, by the core's estimate (as the OpenFX plugin checks it); a
    // GPU holds its activations in its own memory, so there only its frames count.
    let run = memory::Run {
        frames: params.window_frames,
        references: inputs.references.len(),
        width: working.0,
        height: working.1,
        guidance: params.guidance > 1.0,
    };
    let window = match memory::ModelSizes::read(&model.folder, model.dtype) {
        Ok(sizes) if model.device.is_cpu() => sizes.run_activations(&run),
        _ => memory::frame_tensors(&run),
    };
    limits::fits("this task", clip.saturating_add(window))?;
    Ok(working)
}

fn check_params(model: &WanVace, params: &TaskParams) -> Result<()> {
    limits::STEPS.request(params.steps)?;
    limits::GUIDANCE.request(params.guidance)?;
    if let Some(shift) = params.flow_shift {
        limits::FLOW_SHIFT.request(shift)?;
    }
    if let Some(StepCache::FirstBlock { threshold }) = params.step_cache {
        crate::step_cache::THRESHOLD.request(threshold)?;
    }
    limits::CONTEXT_FRAMES.request(params.context_frames)?;
    limits::WINDOW_FRAMES.request(params.window_frames)?;
    limits::MASK_PIXELS.request(params.mask_dilation)?;
    limits::MASK_PIXELS.request(params.mask_feather)?;
    if let Some(pixels) = params.working_pixels {
        limits::WORKING_PIXELS.request(pixels)?;
    }
    let (window, temporal) = (params.window_frames, model.vae_temporal_factor());
    if window == 0 || (window - 1) % temporal != 0 {
        return Err(Error::Request(format!(
            "window of {window} frames: a model window holds {temporal}n+1 frames (e.g. {}, {WINDOW_FRAMES})",
            2 * temporal + 1
        )));
    }
    if 2 * params.context_frames + 1 > window {
        return Err(Error::Request(format!(
            "{} context frames need a window of at least {} frames",
            params.context_frames,
            2 * params.context_frames + 1
        )));
    }
    Ok(())
}

/// Half-open ranges of the true runs.
fn runs(flags: &[bool]) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for (i, _) in flags.iter().enumerate().filter(|(_, f)| **f) {
        match ranges.last_mut() {
            Some(last) if last.end == i => last.end = i + 1,
            _ => ranges.push(i..i + 1),
        }
    }
    ranges
}

/// One frame of the model's timeline while a task runs.
enum Slot {
    /// A source frame, or one an earlier window generated: known to the model (mask 0).
    Fixed(Frame),
    /// A frame to generate whole.
    New,
    /// A source frame whose background is regenerated; `weight` per pixel, 1 = replace.
    Replace { source: Frame, weight: Vec<f32> },
}

impl Slot {
    fn is_pending(&self) -> bool {
        !matches!(self, Slot::Fixed(_))
    }
}

/// What every window of one task shares.
struct Request<'a> {
    model: &'a WanVace,
    working: (usize, usize),
    prompt: &'a Prompt,
    negative: Option<&'a Prompt>,
    /// The same reference images for every window, [1, 3, 1, H, W] at the working size.
    references: Vec<Tensor>,
    params: &'a TaskParams,
    observer: &'a dyn Observer,
    cache: Option<(Cache, Key)>,
    /// Set when the cache could not be written: the rest of the task runs without it.
    cache_failed: std::cell::Cell<bool>,
}

/// Where an output frame comes from.
enum Pick {
    /// A source frame, copied through.
    Source(Frame),
    /// A moment of the model's timeline: one slot, or a time-weighted blend of two neighbours.
    Model(Between),
}

/// A task as the model sees it, and how its output is put together.
///
/// Frame rates: Wan is trained on 16 fps clips, so a model frame is 1/16 s whatever the source
/// rate. With [`TaskParams::match_frame_rate`] and a source that states its rate (a 23.976, 24,
/// 25, 29.97, 30 or 50 fps timeline), the context frames are picked from the source 1/16 s
/// apart (every `fps / 16` source frames, rounded to the nearest frame), so the model sees
/// motion at the speed it was trained on and continues it at that speed; each frame of the new
/// stretch of the output at the source rate is the two model frames around its moment, blended
/// by how near it is to each (a frame that falls on a model frame is that frame exactly; the
/// first and last new frames blend with the fixed frames the stretch starts or ends at). Motion
/// keeps the source's speed and stays smooth above 16 fps. Without a stated rate, or with
/// matching off, frames are fed one to one.
struct Timeline {
    /// The frames the model sees, at its rate.
    slots: Vec<Slot>,
    /// The output, frame by frame.
    output: Vec<Pick>,
    width: usize,
    height: usize,
    fps: Option<(u32, u32)>,
    /// The clip's space and depth, which generated frames are made in.
    colour: ColourSpace,
    depth: Depth,
    /// Windows run from the end towards the start (extend backward).
    backward: bool,
    /// Colour of the source frames new frames continue; `None`: no matching.
    anchor: Option<ChannelStats>,
}

fn required<'a>(clip: &'a Option<Video>, what: &str, task: &TaskKind) -> Result<&'a Video> {
    let clip = clip
        .as_ref()
        .ok_or_else(|| Error::Input(format!("{} needs {what}", task.name())))?;
    if clip.is_empty() {
        return Err(Error::Input(format!(
            "{} has no frames",
            what.trim_start_matches("an ").trim_start_matches("a ")
        )));
    }
    Ok(clip)
}

/// The previous window's frames are the output's kind of frame, for the tasks that take them.
fn check_previous(kind: &TaskKind, inputs: &TaskInputs) -> Result<()> {
    if inputs.previous.is_empty() {
        return Ok(());
    }
    let (width, height) = match (kind, &inputs.clip) {
        (TaskKind::Generate { width, height, .. }, _) => (*width, *height),
        (TaskKind::ReplaceBackground, Some(clip)) => (clip.width, clip.height),
        (TaskKind::ReplaceBackground, None) => return Ok(()),
        _ => {
            return Err(Error::Request(format!(
                "{} continues its own context: it takes no previous window's frames",
                kind.name()
            )));
        }
    };
    match inputs
        .previous
        .iter()
        .position(|frame| frame.rgb.len() != width * height * 3)
    {
        Some(index) => Err(Error::Input(format!(
            "the previous window's frame {index} is not {width}x{height} RGB like this task's frames"
        ))),
        None => Ok(()),
    }
}

fn at_least_one(frames: usize) -> Result<()> {
    if frames == 0 {
        return Err(Error::Request(
            "the number of frames to generate must be at least 1".into(),
        ));
    }
    limits::FRAMES.request(frames).map(drop)
}

fn fixed(frames: Vec<Frame>) -> impl Iterator<Item = Slot> {
    frames.into_iter().map(Slot::Fixed)
}

fn new_frames(count: usize) -> impl Iterator<Item = Slot> {
    std::iter::repeat_with(|| Slot::New).take(count)
}

fn exact(slot: usize) -> Pick {
    Pick::Model(Between::at(slot))
}

fn sources(clip: &Video) -> impl Iterator<Item = Pick> + '_ {
    clip.frames.iter().cloned().map(Pick::Source)
}

/// The colour statistics of source frames as the model sees them.
fn stats(frames: &[Frame], colour: ColourSpace) -> Option<ChannelStats> {
    let model: Vec<Vec<f32>> = frames.iter().map(|f| colour.to_model(&f.rgb)).collect();
    ChannelStats::of(model.iter().map(Vec::as_slice))
}

/// Source frames per model frame (see [`Timeline`]).
fn source_step(clip: &Video, params: &TaskParams) -> f64 {
    step_at(clip.fps, params)
}

fn step_at(fps: Option<(u32, u32)>, params: &TaskParams) -> f64 {
    match fps {
        Some((num, den)) if params.match_frame_rate && num > 0 && den > 0 => {
            (num as f64 / den as f64) / (MODEL_FPS.0 as f64 / MODEL_FPS.1 as f64)
        }
        _ => 1.0,
    }
}

/// How many source frames next to a cut (before it for an extension forward, after it for one
/// backward, on each side for an insert) a task reads from a clip at `fps`: the context frames
/// it picks one model frame apart and the frames its colour matching anchors on. A host that
/// hands over frames on demand (OpenFX, GStreamer) gives this many, ending (or starting) at the
/// cut, and the task sees exactly what it sees in the whole clip.
pub fn context_span(params: &TaskParams, fps: Option<(u32, u32)>) -> usize {
    let step = step_at(fps, params);
    let count = params.context_frames;
    // The farthest pick, k = count - 1: `context_before` rounds (last - k·step) half up, which
    // is k·step - 1/2 rounded up; `context_after` rounds k·step half up.
    let x = count.saturating_sub(1) as f64 * step;
    let farthest = (x - 0.5).ceil().max((x + 0.5).floor()) as usize;
    (farthest + 1).max(count.max(1))
}

/// Up to `count` source frames one model frame apart, ending on the clip's last frame.
fn context_before(clip: &Video, step: f64, count: usize) -> Vec<Frame> {
    let last = clip.len() as f64 - 1.0;
    let mut picked: Vec<Frame> = (0..count)
        .map(|k| (last - k as f64 * step).round())
        .take_while(|&at| at >= 0.0)
        .map(|at| clip.frames[at as usize].clone())
        .collect();
    picked.reverse();
    picked
}

/// Up to `count` source frames one model frame apart, starting on the clip's first frame.
fn context_after(clip: &Video, step: f64, count: usize) -> Vec<Frame> {
    (0..count)
        .map(|k| (k as f64 * step).round() as usize)
        .take_while(|&at| at < clip.len())
        .map(|at| clip.frames[at].clone())
        .collect()
}

/// Model frames that span `frames` new source frames. `closed`: the stretch ends on a fixed
/// frame (an insert), which sits one model frame after the last new one.
fn model_frames(frames: usize, step: f64, closed: bool) -> usize {
    let model = if closed {
        ((frames + 1) as f64 / step).round() - 1.0
    } else {
        (frames as f64 / step).round()
    };
    (model as usize).max(1)
}

/// The moment of new source frame `at` (1-based) in model frames after the fixed frame the
/// stretch starts at, as numerator and denominator: `frames` new source frames span `model` new
/// model frames (`closed`: up to the fixed frame after them).
fn model_time(at: usize, frames: usize, model: usize, closed: bool) -> (isize, usize) {
    let (numerator, denominator) = if closed {
        (at * (model + 1), frames + 1)
    } else {
        (at * model, frames)
    };
    (numerator as isize, denominator)
}

/// The output's new frames when the stretch runs forward from slot `first_new` (its first new
/// model frame) in a timeline of `slots`.
fn stretch(
    frames: usize,
    model: usize,
    closed: bool,
    first_new: usize,
    slots: usize,
) -> impl Iterator<Item = Pick> {
    (1..=frames).map(move |at| {
        let (numerator, denominator) = model_time(at, frames, model, closed);
        Pick::Model(between(
            numerator + (first_new as isize - 1) * denominator as isize,
            denominator,
            slots,
        ))
    })
}

impl Timeline {
    fn new(kind: &TaskKind, inputs: &TaskInputs, params: &TaskParams) -> Result<Self> {
        check_previous(kind, inputs)?;
        let context = params.context_frames;
        // Matching anchors on the source frames nearest the cut.
        let near = context.max(1);
        let (slots, output, clip, backward, anchor) = match *kind {
            TaskKind::ExtendForward { frames } => {
                let clip = required(&inputs.clip, "an input clip", kind)?;
                at_least_one(frames)?;
                let step = source_step(clip, params);
                let known = context_before(clip, step, context);
                let (start, model) = (known.len(), model_frames(frames, step, false));
                let slots: Vec<Slot> = fixed(known).chain(new_frames(model)).collect();
                let new = stretch(frames, model, false, start, slots.len());
                let anchor = stats(&clip.frames[clip.len().saturating_sub(near)..], clip.colour);
                (
                    slots,
                    sources(clip).chain(new).collect(),
                    clip,
                    false,
                    anchor,
                )
            }
            TaskKind::ExtendBackward { frames } => {
                let clip = required(&inputs.clip, "an input clip", kind)?;
                at_least_one(frames)?;
                let step = source_step(clip, params);
                let known = context_after(clip, step, context);
                let model = model_frames(frames, step, false);
                let slots: Vec<Slot> = new_frames(model).chain(fixed(known)).collect();
                let len = slots.len();
                let new = (1..=frames).rev().map(move |before| {
                    let (numerator, denominator) = model_time(before, frames, model, false);
                    Pick::Model(between(
                        (model * denominator) as isize - numerator,
                        denominator,
                        len,
                    ))
                });
                let anchor = stats(&clip.frames[..near.min(clip.len())], clip.colour);
                (
                    slots,
                    new.chain(sources(clip)).collect(),
                    clip,
                    true,
                    anchor,
                )
            }
            TaskKind::Insert { frames } => {
                let a = required(&inputs.clip, "a first clip (A)", kind)?;
                let b = required(&inputs.next, "a second clip (B)", kind)?;
                at_least_one(frames)?;
                if (a.width, a.height) != (b.width, b.height) {
                    return Err(Error::Input(format!(
                        "clip A is {}x{} but clip B is {}x{}: insert needs clips of one size",
                        a.width, a.height, b.width, b.height
                    )));
                }
                if a.colour != b.colour {
                    return Err(Error::Input(format!(
                        "clip A is {} but clip B is {}: insert needs clips in one colour space",
                        a.colour, b.colour
                    )));
                }
                let step = source_step(a, params);
                let (tail, head) = (
                    context_before(a, step, context),
                    context_after(b, step, context),
                );
                let (start, model) = (tail.len(), model_frames(frames, step, true));
                let slots: Vec<Slot> = fixed(tail)
                    .chain(new_frames(model))
                    .chain(fixed(head))
                    .collect();
                let new = stretch(frames, model, true, start, slots.len());
                let mut anchor_frames = a.frames[a.len().saturating_sub(near)..].to_vec();
                anchor_frames.extend_from_slice(&b.frames[..near.min(b.len())]);
                (
                    slots,
                    sources(a).chain(new).chain(sources(b)).collect(),
                    a,
                    false,
                    stats(&anchor_frames, a.colour),
                )
            }
            TaskKind::ReplaceBackground => {
                let clip = required(&inputs.clip, "an input clip", kind)?;
                let previous = inputs.previous.len();
                let slots = fixed(inputs.previous.clone())
                    .chain(background_slots(clip, inputs.mask.as_deref(), params)?)
                    .collect();
                (
                    slots,
                    (previous..previous + clip.len()).map(exact).collect(),
                    clip,
                    false,
                    None,
                )
            }
            TaskKind::Generate {
                frames,
                width,
                height,
            } => {
                at_least_one(frames)?;
                if width == 0 || height == 0 {
                    return Err(Error::Request(format!(
                        "{width}x{height}: width and height must be at least 1"
                    )));
                }
                let previous = inputs.previous.len();
                return Ok(Self {
                    slots: fixed(inputs.previous.clone())
                        .chain(new_frames(frames))
                        .collect(),
                    output: (previous..previous + frames).map(exact).collect(),
                    width,
                    height,
                    fps: Some(MODEL_FPS),
                    colour: ColourSpace::default(),
                    depth: Depth::default(),
                    backward: false,
                    anchor: None,
                });
            }
        };
        Ok(Self {
            slots,
            output,
            width: clip.width,
            height: clip.height,
            fps: clip.fps,
            colour: clip.colour,
            depth: clip.depth,
            backward,
            anchor: anchor.filter(|_| params.color_match),
        })
    }

    /// Output frames that come from the model.
    fn generated(&self) -> Vec<Range<usize>> {
        let generated = |moment: &Between| {
            self.slots[moment.from].is_pending()
                || (moment.weight > 0.0 && self.slots[moment.to].is_pending())
        };
        let flags: Vec<bool> = self
            .output
            .iter()
            .map(|pick| matches!(pick, Pick::Model(moment) if generated(moment)))
            .collect();
        runs(&flags)
    }

    /// Generates the pending frames in `positions` (see [`plan`]) and fixes them.
    /// Whether the model is to make the frame at `position` (not padding past the ends).
    fn is_pending(&self, position: isize) -> bool {
        usize::try_from(position)
            .ok()
            .and_then(|p| self.slots.get(p))
            .is_some_and(Slot::is_pending)
    }

    fn run_window(&mut self, request: &Request, positions: Range<isize>, seed: u64) -> Result<()> {
        let (width, height) = request.working;
        let size = (self.width, self.height);
        let count = positions.len();
        let mut pixels: Vec<f32> = Vec::with_capacity(count * width * height * 3);
        let mut mask: Vec<f32> = Vec::with_capacity(count * width * height);
        let mut targets = Vec::new();
        for (offset, position) in positions.enumerate() {
            checkpoint(request.observer)?;
            let slot = usize::try_from(position)
                .ok()
                .and_then(|p| self.slots.get(p));
            match slot {
                None | Some(Slot::New) => {
                    pixels.resize(pixels.len() + width * height * 3, 0.0);
                    mask.resize(mask.len() + width * height, 1.0);
                }
                Some(Slot::Fixed(frame)) => {
                    let small = self.model_view(&frame.rgb, request.working);
                    pixels.extend(small.iter().map(|v| 2.0 * (v / 255.0) - 1.0));
                    mask.resize(mask.len() + width * height, 0.0);
                }
                Some(Slot::Replace { source, weight }) => {
                    let small = self.model_view(&source.rgb, request.working);
                    let weight = resample::resize(weight, size, 1, request.working);
                    for (pixel, w) in small.chunks_exact(3).zip(weight) {
                        // Any trace of background at the working size is regenerated.
                        let replace = w > 1e-6;
                        pixels.extend(pixel.iter().map(|v| {
                            if replace {
                                0.0
                            } else {
                                2.0 * (v / 255.0) - 1.0
                            }
                        }));
                        mask.push(if replace { 1.0 } else { 0.0 });
                    }
                }
            }
            if slot.is_some_and(Slot::is_pending) {
                targets.push((offset, position as usize));
            }
        }
        let shape = [count, height, width, 3];
        let cached = request
            .cache
            .as_ref()
            .filter(|_| !request.cache_failed.get())
            .map(|(cache, task_key)| {
                let mut key = task_key.clone();
                key.add_f32s("pixels", &pixels);
                key.add_f32s("mask", &mask);
                key.add(
                    "shape",
                    &shape.map(|d| d as u64).map(u64::to_le_bytes).concat(),
                );
                key.add("seed", &seed.to_le_bytes());
                (cache, cache.get(key, &shape))
            });
        let output = match cached {
            Some((_, (_, Some(stored)))) => stored,
            cached => {
                let output = Self::generate(request, pixels, mask, shape, seed)?;
                if let Some((cache, (key, None))) = cached
                    && let Err(e) = cache.put(&key, &output, &shape)
                {
                    request
                        .observer
                        .warn(&format!("running without the cache: {e}"));
                    request.cache_failed.set(true);
                }
                output
            }
        };
        let frame_len = width * height * 3;
        let mut frames: Vec<Vec<f32>> = targets
            .iter()
            .map(|&(offset, _)| output[offset * frame_len..][..frame_len].to_vec())
            .collect();
        let new: Vec<bool> = targets
            .iter()
            .map(|&(_, p)| matches!(self.slots[p], Slot::New))
            .collect();
        if let Some(anchor) = &self.anchor {
            let mut whole: Vec<Vec<f32>> = frames
                .iter()
                .zip(&new)
                .filter(|(_, n)| **n)
                .map(|(f, _)| f.clone())
                .collect();
            colour::match_to(&mut whole, anchor);
            let mut matched = whole.into_iter();
            for (frame, _) in frames.iter_mut().zip(&new).filter(|(_, n)| **n) {
                *frame = matched.next().expect("one matched frame per new frame");
            }
        }
        for ((_, position), frame) in targets.into_iter().zip(frames) {
            checkpoint(request.observer)?;
            let scaled: Vec<f32> = frame.iter().map(|v| v * 255.0).collect();
            // In place: one frame's worth of memory beyond the held frames.
            let mut generated = resample::resize(&scaled, request.working, 3, size);
            generated.iter_mut().for_each(|v| *v /= 255.0);
            self.colour.from_model_in_place(&mut generated);
            // A replaced background keeps the source's alpha (the matte, where it came from
            // there): only colour is generated.
            let frame = match &self.slots[position] {
                Slot::Replace { source, weight } => Frame {
                    rgb: composite(&source.rgb, &generated, weight, self.depth),
                    alpha: source.alpha.clone(),
                },
                _ => {
                    let depth = self.depth;
                    generated.iter_mut().for_each(|v| *v = depth.quantise(*v));
                    Frame {
                        rgb: generated,
                        alpha: None,
                    }
                }
            };
            self.slots[position] = Slot::Fixed(frame);
        }
        Ok(())
    }

    /// A frame of the clip as the model sees it: in the model's space, at the working size, on
    /// the 0..255 scale (resampled on that scale as ever, so 8-bit sRGB sources give the model
    /// the same values bit for bit).
    fn model_view(&self, rgb: &[f32], working: (usize, usize)) -> Vec<f32> {
        let mut scaled = rgb.to_vec();
        self.colour.to_model_in_place(&mut scaled);
        scaled.iter_mut().for_each(|v| *v *= 255.0);
        resample::resize(&scaled, (self.width, self.height), 3, working)
    }

    /// The model's output [F, H, W, 3] in [0, 1] for one window's pixels (in [-1, 1]) and mask.
    fn generate(
        request: &Request,
        pixels: Vec<f32>,
        mask: Vec<f32>,
        [count, height, width, _]: [usize; 4],
        seed: u64,
    ) -> Result<Vec<f32>> {
        let model = request.model;
        let device = &model.device;
        let video = Tensor::from_vec(pixels, (count, height, width, 3), device)?
            .permute((3, 0, 1, 2))?
            .unsqueeze(0)?;
        let input = VaceInput {
            video: video.contiguous()?,
            mask: Tensor::from_vec(mask, (1, 1, count, height, width), device)?,
            references: request.references.clone(),
        };
        let sampling = Sampling {
            steps: request.params.steps,
            guidance: request.params.guidance,
            flow_shift: request.params.flow_shift,
            conditioning_scale: 1.0,
            noise: Noise::Seed(seed),
            cache: request.params.step_cache,
        };
        let output = model.generate(
            &input,
            request.prompt,
            request.negative,
            &sampling,
            request.observer,
        )?;
        Ok(output.flatten_all()?.to_vec1::<f32>()?)
    }

    /// The output clip. Each slot's frame is moved into the output, or released, after the
    /// last output frame that uses it, so the output is never held twice.
    fn into_video(self) -> Video {
        let mut video = Video::new(self.width, self.height, self.fps);
        (video.colour, video.depth) = (self.colour, self.depth);
        let depth = self.depth;
        let mut last_use = vec![None; self.slots.len()];
        for (index, pick) in self.output.iter().enumerate() {
            if let Pick::Model(moment) = pick {
                last_use[moment.from] = Some(index);
                last_use[moment.to] = Some(index);
            }
        }
        let mut slots: Vec<Option<Frame>> = self
            .slots
            .into_iter()
            .zip(&last_use)
            .map(|(slot, used)| match slot {
                Slot::Fixed(frame) => used.map(|_| frame),
                _ => unreachable!("every window ran, so every slot is fixed"),
            })
            .collect();
        video.frames = self
            .output
            .into_iter()
            .enumerate()
            .map(|(index, pick)| match pick {
                Pick::Source(frame) => frame,
                Pick::Model(moment) => {
                    let last = |slot: usize| last_use[slot] == Some(index);
                    let frame = match (moment.weight == 0.0, last(moment.from)) {
                        (true, true) => slots[moment.from].take(),
                        (true, false) => slots[moment.from].clone(),
                        (false, _) => slots[moment.from]
                            .as_ref()
                            .zip(slots[moment.to].as_ref())
                            .map(|(from, to)| Frame {
                                rgb: resample::blend(&from.rgb, &to.rgb, moment.weight)
                                    .into_iter()
                                    .map(|v| depth.quantise(v))
                                    .collect(),
                                alpha: None,
                            }),
                    };
                    for slot in [moment.from, moment.to]
                        .into_iter()
                        .filter(|&slot| last(slot))
                    {
                        slots[slot] = None;
                    }
                    frame.expect("a slot is released only after its last use")
                }
            })
            .collect();
        video
    }
}

/// Source where `weight` is 0 (its exact samples), generated where 1, blended between (at the
/// clip's depth).
fn composite(source: &[f32], generated: &[f32], weight: &[f32], depth: Depth) -> Vec<f32> {
    source
        .chunks_exact(3)
        .zip(generated.chunks_exact(3))
        .zip(weight)
        .flat_map(|((s, g), &w)| {
            std::array::from_fn::<f32, 3, _>(|c| {
                if w == 0.0 {
                    s[c]
                } else {
                    depth.quantise(s[c] * (1.0 - w) + g[c] * w)
                }
            })
        })
        .collect()
}

/// One slot per clip frame: the frame as it is where its background mask is empty, else a
/// replacement with the dilated, feathered mask as composite weight.
fn background_slots(
    clip: &Video,
    masks: Option<&[Vec<u8>]>,
    params: &TaskParams,
) -> Result<Vec<Slot>> {
    let pixels = clip.width * clip.height;
    let background: Vec<Vec<f32>> = match masks {
        Some(masks) => {
            if masks.len() != clip.len() {
                return Err(Error::Input(format!(
                    "the clip has {} frames but there are {} masks: give one mask per frame",
                    clip.len(),
                    masks.len()
                )));
            }
            if let Some(index) = masks.iter().position(|m| m.len() != pixels) {
                return Err(Error::Input(format!(
                    "mask {index} has {} pixels but the clip's frames are {}x{}",
                    masks[index].len(),
                    clip.width,
                    clip.height
                )));
            }
            masks.iter().map(|m| m.iter().map(|&v| if v > 127 { 1.0 } else { 0.0 }).collect()).collect()
        }
        None => clip
            .frames
            .iter()
            .enumerate()
            .map(|(index, frame)| match &frame.alpha {
                // Transparent: below half (below 128 at 8 bits).
                Some(alpha) => Ok(alpha.iter().map(|&a| if a < 0.5 { 1.0 } else { 0.0 }).collect()),
                None => Err(Error::Input(format!(
                    "replace-background needs a mask, or frames with an alpha channel (frame {index} has none)"
                ))),
            })
            .collect::<Result<_>>()?,
    };
    // Without a mask, opaque frames would come back unchanged as if processed (what MLT hands
    // OpenFX effects). An all-black mask is the user's word: keep everything.
    if masks.is_none()
        && background
            .iter()
            .all(|frame| frame.iter().all(|&b| b == 0.0))
    {
        return Err(Error::Input(format!(
            "the frames' alpha channel is opaque everywhere in these {} frames, so it marks no background to replace: give a mask (white = background) or frames whose alpha is transparent where the background is",
            clip.len()
        )));
    }
    Ok(clip
        .frames
        .iter()
        .zip(background)
        .map(|(frame, background)| {
            if background.iter().all(|&b| b == 0.0) {
                return Slot::Fixed(frame.clone());
            }
            let weight = resample::shape_mask(
                &background,
                (clip.width, clip.height),
                params.mask_dilation,
                params.mask_feather,
            );
            Slot::Replace {
                source: frame.clone(),
                weight,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use memory::{ModelSizes, Window};

    /// Wan2.1-VACE 1.3B's sizes in f32 (weights left out), with a narrow VAE so that the
    /// transformer's need decides.
    fn wan_1_3b() -> ModelSizes {
        ModelSizes {
            vae_channels: 8,
            ..crate::memory::tests::wan_1_3b()
        }
    }

    fn window(frames: usize, width: usize, height: usize, guidance: bool) -> Window {
        Window {
            frames,
            width,
            height,
            window_frames: 81,
            guidance,
        }
    }

    #[test]
    fn a_window_needs_more_with_more_frames_pixels_and_guidance_and_never_more_than_one_model_window()
     {
        let sizes = wan_1_3b();
        let need = |w: Window| window_activations(&sizes, &w);
        assert!(need(window(33, 832, 480, true)) > need(window(17, 832, 480, true)));
        assert!(need(window(33, 832, 480, true)) > need(window(33, 416, 240, true)));
        assert!(need(window(81, 832, 480, true)) > need(window(81, 832, 480, false)));
        assert_eq!(
            need(window(200, 832, 480, true)),
            need(window(81, 832, 480, true)),
            "longer tasks run window by window"
        );
        // Clips above the native size run at the native size.
        assert_eq!(
            need(window(81, 1920, 1080, true)),
            need(window(81, 1920 * 2, 1080 * 2, true))
        );
    }
}
