//! The instance actions: clip preferences, frames needed, time domain, regions of interest and
//! render (find the window in the cache or generate it, then serve the frame).

use std::cell::Cell;
use std::collections::hash_map::DefaultHasher;
use std::ffi::CStr;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use soragen_core::limits;
use soragen_core::memory::{self, ModelSizes};
use soragen_core::model::vae_temporal_factor_of;
use soragen_core::presets::DISTILL_4;
use soragen_core::tasks::{TaskInputs, TaskKind, animate_request, run_task, window_activations};
use soragen_core::vace::Observer;
use soragen_core::video::{Frame, Video, rate_from_f64};
use soragen_ofx_ffi::sys::*;
use soragen_ofx_ffi::{
    Action, Clip, Components, Image, ImageEffect, Memory, PropertySet, RectI, Status,
};

use crate::cuda::{self, DeviceRender};
use crate::effects::{Context, EffectKind, IMAGE_CLIP, MASK_CLIP, NEXT_CLIP, REFERENCE_CLIP};
use crate::failure::{Failure, GPU_OUT_OF_MEMORY};
use crate::instance::{self, Generated, Instance};
use crate::memory::OutOfMemory;
use crate::params::Settings;
use crate::pixels;
use crate::plan::{self, FramePlan, Generation, GenerationTask, Range, Role, Timing};

/// Actions on an instance (which can carry a persistent message), as opposed to descriptors.
pub fn is_instance_action(action: Action) -> bool {
    !matches!(
        action,
        Action::Load | Action::Unload | Action::Describe | Action::DescribeInContext
    )
}

fn clip_name(context: Context, role: Role) -> &'static CStr {
    match (context, role) {
        (Context::Transition, Role::Source) => kOfxImageEffectTransitionSourceFromClipName,
        (Context::Transition, Role::Next) => kOfxImageEffectTransitionSourceToClipName,
        (_, Role::Source) => kOfxImageEffectSimpleSourceClipName,
        (_, Role::Next) => NEXT_CLIP,
        (_, Role::Mask) => MASK_CLIP,
        (_, Role::Image) => IMAGE_CLIP,
        (_, Role::Reference) => REFERENCE_CLIP,
    }
}

fn frame(time: f64) -> i64 {
    time.round() as i64
}

fn frames((first, last): (f64, f64)) -> Range {
    (frame(first), frame(last))
}

impl Instance {
    fn clip(&self, effect: ImageEffect, role: Role) -> soragen_ofx_ffi::Result<Clip> {
        effect.clip(clip_name(self.context, role))
    }

    fn has_role(&self, role: Role) -> bool {
        self.effect
            .inputs(self.context)
            .iter()
            .any(|input| input.name == clip_name(self.context, role))
    }

    /// What the host says about time, from the properties the standard defines for it: each
    /// clip's frame range, the effect's duration, the Transition parameter at `time`. A host
    /// that lacks one leaves it None; `plan` says what is missing where it matters.
    fn timing(&self, effect: ImageEffect, time: f64) -> soragen_ofx_ffi::Result<Timing> {
        let connected_range = |role| self.connected_range(effect, role);
        let transition = if self.context == Context::Transition {
            Some(
                effect
                    .params()?
                    .param(kOfxImageEffectTransitionParamName)?
                    .double(time)?,
            )
        } else {
            None
        };
        let duration = effect
            .properties()?
            .double(kOfxImageEffectInstancePropEffectDuration)
            .ok();
        // The source's rate: its clip's, else the effect's (both defined by the standard).
        let source_rate = self
            .clip(effect, Role::Source)
            .ok()
            .and_then(|clip| clip.properties.double(kOfxImageEffectPropFrameRate).ok());
        let rate = source_rate.or_else(|| {
            effect
                .properties()
                .ok()?
                .double(kOfxImageEffectPropFrameRate)
                .ok()
        });
        Ok(Timing {
            fps: rate.and_then(rate_from_f64),
            source: connected_range(Role::Source)?,
            next: connected_range(Role::Next)?,
            // The still is the Image clip's first frame.
            still: connected_range(Role::Image)?.map(|(first, _)| first),
            output: effect
                .clip(kOfxImageEffectOutputClipName)?
                .frame_range()
                .map(frames),
            duration: duration
                .filter(|d| d.is_finite() && *d >= 1.0)
                .map(|d| d.round() as i64),
            transition,
        })
    }

    /// A connected input's frame range. An input without one counts as unconnected: Resolve
    /// reports unconnected optional inputs as connected, and hosts that give no ranges (MLT)
    /// cannot connect optional inputs.
    fn connected_range(
        &self,
        effect: ImageEffect,
        role: Role,
    ) -> soragen_ofx_ffi::Result<Option<Range>> {
        if !self.has_role(role) {
            return Ok(None);
        }
        let clip = self.clip(effect, role)?;
        Ok(if clip.connected() {
            clip.frame_range().map(frames)
        } else {
            None
        })
    }

    /// The time of the Reference input's frame that `settings` picks, None where no reference
    /// is connected; past the clip's end is the user's to fix.
    fn reference_time(
        &self,
        effect: ImageEffect,
        settings: &Settings,
    ) -> Result<Option<i64>, Failure> {
        let Some((first, last)) = self.connected_range(effect, Role::Reference)? else {
            return Ok(None);
        };
        let time = first + settings.reference_frame;
        if time > last {
            return Err(Failure::User(format!(
                "Reference Frame {} is past the Reference input's last frame ({} frames)",
                settings.reference_frame,
                last - first + 1
            )));
        }
        Ok(Some(time))
    }

    fn settings(&self, effect: ImageEffect, time: f64) -> soragen_ofx_ffi::Result<Settings> {
        Settings::read(effect.params()?, self.effect, time)
    }

    /// What output frame `time` is, with the settings at that time.
    fn plan_at(&self, effect: ImageEffect, time: f64) -> Result<(FramePlan, Settings), Failure> {
        let settings = self.settings(effect, time)?;
        // The tasks that make every frame run the core's model windows, whose lengths the
        // model's VAE sets.
        let temporal = match self.effect {
            EffectKind::ReplaceBackground | EffectKind::Generate => {
                vae_temporal_factor_of(&Instance::model_folder(&settings.model)?)?
            }
            EffectKind::Extend | EffectKind::Insert => 1,
        };
        let plan = plan::plan(
            self.effect,
            self.context,
            &self.timing(effect, time)?,
            &settings,
            temporal,
            frame(time),
        )
        .map_err(|e| Failure::User(e.to_string()))?;
        Ok((plan, settings))
    }

    fn reads_mask(&self, effect: ImageEffect, settings: &Settings) -> bool {
        settings.use_mask
            && self.has_role(Role::Mask)
            && self.clip(effect, Role::Mask).is_ok_and(|c| c.connected())
    }
}

pub fn clip_preferences(effect: ImageEffect, out: PropertySet) -> soragen_ofx_ffi::Result<()> {
    let instance = instance::get(effect)?;
    // Generated frames differ from frame to frame even where no input does.
    out.set_bool(kOfxImageEffectFrameVarying, true)?;
    if instance
        .effect
        .inputs(instance.context)
        .iter()
        .all(|input| input.optional)
    {
        let output = format!(
            "{kOfxImageClipPropComponents_}{}",
            kOfxImageEffectOutputClipName.to_string_lossy()
        );
        out.set_string_named(&output, kOfxImageComponentRGBA.to_str().unwrap_or_default())?;
    }
    Ok(())
}

pub fn time_domain(effect: ImageEffect, out: PropertySet) -> soragen_ofx_ffi::Result<()> {
    let instance = instance::get(effect)?;
    // Only the General context may change the output's length.
    if instance.context != Context::General {
        return Err(Status::REPLY_DEFAULT);
    }
    let settings = instance.settings(effect, 0.0)?;
    let (first, last) =
        plan::time_domain(instance.effect, &instance.timing(effect, 0.0)?, &settings)
            .ok_or(Status::REPLY_DEFAULT)?;
    out.set_doubles(kOfxImageEffectPropFrameRange, &[first as f64, last as f64])
}

pub fn frames_needed(
    effect: ImageEffect,
    args: PropertySet,
    out: PropertySet,
) -> soragen_ofx_ffi::Result<()> {
    let instance = instance::get(effect)?;
    let time = args.double(kOfxPropTime)?;
    let Ok((plan, settings)) = instance.plan_at(effect, time) else {
        // No such output frame: render will say why; nothing to fetch.
        return Err(Status::REPLY_DEFAULT);
    };
    let mut needed = plan::frames_needed(&plan, instance.reads_mask(effect, &settings));
    if matches!(plan, FramePlan::Generate { .. })
        && let Ok(Some(reference)) = instance.reference_time(effect, &settings)
    {
        needed.push((Role::Reference, (reference, reference)));
    }
    for (role, (first, last)) in needed {
        let name = format!(
            "{kOfxImageClipPropFrameRange_}{}",
            clip_name(instance.context, role).to_string_lossy()
        );
        out.set_doubles_named(&name, &[first as f64, last as f64])?;
    }
    Ok(())
}

/// Generation reads whole frames, whatever part of the output is being rendered.
pub fn regions_of_interest(
    effect: ImageEffect,
    args: PropertySet,
    out: PropertySet,
) -> soragen_ofx_ffi::Result<()> {
    let instance = instance::get(effect)?;
    let time = args.double(kOfxPropTime)?;
    for input in instance.effect.inputs(instance.context) {
        let clip = effect.clip(input.name)?;
        if clip.connected() {
            let name = format!("{kOfxImageClipPropRoI_}{}", input.name.to_string_lossy());
            out.set_doubles_named(&name, &clip.region_of_definition(time)?)?;
        }
    }
    Ok(())
}

pub fn render(effect: ImageEffect, args: PropertySet) -> Result<(), Failure> {
    let gpu = cuda::begin(args)?;
    let instance = instance::get(effect)?;
    let on_gpu = gpu.is_some();
    let result = render_with(effect, args, &instance, gpu.as_ref());
    let result = match (result, gpu) {
        (Ok(()), Some(gpu)) => gpu.finish(),
        (result, _) => result,
    };
    match result {
        Err(Failure::GpuOutOfMemory) => {
            // Free what we hold before the host retries (or falls back to the CPU).
            instance.purge();
            // A render on host memory reports it like any other lack of memory.
            Err(if on_gpu {
                Failure::GpuOutOfMemory
            } else {
                Failure::OutOfMemory(GPU_OUT_OF_MEMORY.into())
            })
        }
        other => other,
    }
}

/// Renders on the host's images: in host memory, or on the GPU where `gpu` is given.
fn render_with(
    effect: ImageEffect,
    args: PropertySet,
    instance: &Instance,
    gpu: Option<&DeviceRender>,
) -> Result<(), Failure> {
    let memory = if gpu.is_some() {
        Memory::Cuda
    } else {
        Memory::Host
    };
    let time = args.double(kOfxPropTime)?;
    let [x1, y1, x2, y2] = args.ints(kOfxImageEffectPropRenderWindow)?;
    let window = RectI { x1, y1, x2, y2 };
    let scale = args.doubles::<2>(kOfxImageEffectPropRenderScale)?;
    let (plan, settings) = instance.plan_at(effect, time)?;
    let mut output = effect
        .clip(kOfxImageEffectOutputClipName)?
        .image(time, memory)?
        .ok_or_else(|| Failure::User(format!("the host gave no output image at frame {time}")))?;
    match plan {
        FramePlan::Keep { role, time } => {
            let source = fetch(instance, effect, role, time, memory)?;
            match gpu {
                Some(gpu) => gpu.copy_image(&output, window, &source)?,
                None => pixels::copy_image(&mut output, window, &source),
            }
        }
        FramePlan::Generate {
            window: generation,
            offset,
        } => {
            // Hosts ask for drafts by render scale (proxies, previews) or by render quality.
            let draft = settings.draft
                || scale.iter().any(|s| *s < 1.0)
                || args
                    .bool(kOfxImageEffectPropRenderQualityDraft)
                    .unwrap_or(false);
            let generated =
                instance.generated(effect, gpu, &generation, &settings, scale, draft)?;
            let new_frame = generated
                .video
                .frames
                .get(generated.first_output + offset)
                .ok_or_else(|| {
                    Failure::User(format!(
                        "the model returned too few frames for frame {time}"
                    ))
                })?;
            // In-place edits keep source pixels: copy them exactly where they survived.
            let unchanged = if generation.edits_in_place() {
                Some(fetch(instance, effect, Role::Source, frame(time), memory)?)
            } else {
                None
            };
            match gpu {
                Some(gpu) => gpu.write_frame(
                    &output,
                    window,
                    new_frame,
                    generated.rect,
                    unchanged.as_ref(),
                )?,
                None => pixels::write_frame(
                    &mut output,
                    window,
                    new_frame,
                    generated.rect,
                    unchanged.as_ref(),
                ),
            }
        }
    }
    effect.clear_persistent_message();
    Ok(())
}

fn fetch(
    instance: &Instance,
    effect: ImageEffect,
    role: Role,
    time: i64,
    memory: Memory,
) -> Result<Image, Failure> {
    let clip = instance.clip(effect, role)?;
    let missing = || {
        Failure::User(format!(
            "the {} input has no frame {time}",
            clip_name(instance.context, role).to_string_lossy()
        ))
    };
    if !clip.connected() {
        return Err(missing());
    }
    clip.image(time as f64, memory)?.ok_or_else(missing)
}

/// Progress through the host's progress suite; cancels on the host's abort or the user's.
struct HostProgress {
    effect: ImageEffect,
    cancelled: Cell<bool>,
}

impl Observer for HostProgress {
    fn step(&self, done: usize, total: usize) {
        if !self
            .effect
            .progress_update(done as f64 / total.max(1) as f64)
        {
            self.cancelled.set(true);
        }
    }

    fn cancelled(&self) -> bool {
        self.cancelled.get() || self.effect.aborted()
    }
}

/// Adds one image's content to the cache key: the host's identifier where it gives one, else
/// its pixels; for device images, `read`: what was read of them (the model sees only that).
fn identify(image: &Image, read: &[&[u8]], key: &mut DefaultHasher) {
    match (image.unique_id(), image.memory()) {
        (Some(id), _) => id.hash(key),
        (None, Memory::Host) => pixels::content_hash(image, key),
        (None, Memory::Cuda) => (image.bounds, read).hash(key),
    }
}

fn identify_clip(images: &[Image], video: &Video, key: &mut DefaultHasher) {
    for (image, frame) in images.iter().zip(&video.frames) {
        let (rgb, alpha) = (frame.rgb_8bit(), frame.alpha_8bit().unwrap_or_default());
        identify(image, &[rgb.as_slice(), alpha.as_slice()], key);
    }
}

/// Mask images as mattes over `rect` (white = subject).
fn read_mattes(
    masks: &[Image],
    rect: RectI,
    gpu: Option<&DeviceRender>,
) -> Result<Vec<Vec<u8>>, Failure> {
    let Some(gpu) = gpu else {
        return Ok(masks
            .iter()
            .map(|mask| pixels::to_matte(mask, rect))
            .collect::<Result<Vec<_>, _>>()?);
    };
    if masks.iter().any(|mask| mask.bounds != rect) {
        return Err(Failure::User(
            "on the GPU the mask must cover the source's frame exactly".into(),
        ));
    }
    // CUDA images are RGBA: the matte is the alpha.
    Ok(gpu
        .frames(masks)?
        .into_iter()
        .map(|frame| pixels::matte_of(frame, Components::Rgba))
        .collect())
}

/// Images of one clip at the window's times as the core's video, and where its pixels sit.
fn read_clip(images: &[Image], gpu: Option<&DeviceRender>) -> Result<(Video, RectI), Failure> {
    if let Some(gpu) = gpu {
        return gpu.read_clip(images);
    }
    let rect = images[0].bounds;
    let mut video = Video::new(rect.width(), rect.height(), None);
    video
        .frames
        .try_reserve_exact(images.len())
        .map_err(|_| OutOfMemory {
            bytes: images.len() * size_of::<Frame>(),
        })?;
    for image in images {
        if image.bounds != rect {
            return Err(Failure::User(
                "input frames change size inside one window".into(),
            ));
        }
        video.frames.push(pixels::to_frame(image, rect)?);
    }
    Ok((video, rect))
}

impl Instance {
    /// The window's frames: from the cache, or generated now (and cached only when complete).
    fn generated(
        &self,
        effect: ImageEffect,
        gpu: Option<&DeviceRender>,
        window: &Generation,
        settings: &Settings,
        scale: [f64; 2],
        draft: bool,
    ) -> Result<Arc<Generated>, Failure> {
        let memory = if gpu.is_some() {
            Memory::Cuda
        } else {
            Memory::Host
        };
        let fetch_all = |role, times: &[i64]| {
            times
                .iter()
                .map(|&t| fetch(self, effect, role, t, memory))
                .collect::<Result<Vec<_>, _>>()
        };
        let sources = fetch_all(window.source_role(), &window.source_times)?;
        let reference = self
            .reference_time(effect, settings)?
            .map(|time| fetch(self, effect, Role::Reference, time, memory))
            .transpose()?;
        let nexts = fetch_all(Role::Next, &window.next_times)?;
        let masks = if self.reads_mask(effect, settings) {
            fetch_all(Role::Mask, &window.source_times)?
        } else {
            vec![]
        };

        let mut key = DefaultHasher::new();
        (
            self.effect,
            window.task,
            window.first,
            window.index,
            window.frames,
            window.fps,
        )
            .hash(&mut key);
        serde_json::to_string(&settings.task)
            .unwrap_or_default()
            .hash(&mut key);
        (
            &settings.model,
            settings.fast || draft,
            scale.map(f64::to_bits),
        )
            .hash(&mut key);
        for adapter in &settings.adapters {
            (&adapter.path, adapter.strength.to_bits()).hash(&mut key);
        }
        let mut inputs = TaskInputs::default();
        let rect = if !sources.is_empty() {
            let (mut video, rect) = read_clip(&sources, gpu)?;
            identify_clip(&sources, &video, &mut key);
            video.fps = window.fps;
            inputs.clip = Some(video);
            if !masks.is_empty() {
                let mut background = Vec::new();
                background
                    .try_reserve_exact(masks.len())
                    .map_err(|_| OutOfMemory {
                        bytes: masks.len() * size_of::<Vec<u8>>(),
                    })?;
                for (mask, mut matte) in masks.iter().zip(read_mattes(&masks, rect, gpu)?) {
                    identify(mask, &[&matte], &mut key);
                    // Masks say where the subject is; the task wants the background (> 127).
                    matte.iter_mut().for_each(|v| *v = 255 - *v);
                    background.push(matte);
                }
                inputs.mask = Some(background);
            }
            rect
        } else {
            let [width, height] = effect
                .properties()?
                .doubles(kOfxImageEffectPropProjectSize)?;
            RectI {
                x1: 0,
                y1: 0,
                x2: (width * scale[0]).round() as i32,
                y2: (height * scale[1]).round() as i32,
            }
        };
        if !nexts.is_empty() {
            let (mut video, _) = read_clip(&nexts, gpu)?;
            identify_clip(&nexts, &video, &mut key);
            video.fps = window.fps;
            inputs.next = Some(video);
        }
        if let Some(image) = &reference {
            // Any size: the core fits it to the working size.
            let (video, _) = read_clip(std::slice::from_ref(image), gpu)?;
            identify_clip(std::slice::from_ref(image), &video, &mut key);
            inputs.references = vec![video];
        }
        rect.hash(&mut key);
        let mut kind = window.task_kind(rect.width(), rect.height());
        if window.task == GenerationTask::Animate {
            let still = inputs
                .clip
                .take()
                .ok_or_else(|| Failure::User("the Image input gave no still".into()))?;
            let (animate, animated) = animate_request(still, window.frames)?;
            kind = animate;
            inputs.clip = animated.clip;
        }
        if window.context > 0 {
            // A model window after the first reads the last frames the window before it made
            // (the core's windows: the result is the whole task's, and each seam continuous).
            let (
                FramePlan::Generate {
                    window: previous, ..
                },
                _,
            ) = self.plan_at(effect, (window.first - 1) as f64)?
            else {
                return Err(Failure::User(format!(
                    "frame {} should have been generated",
                    window.first - 1
                )));
            };
            let before = self.generated(effect, gpu, &previous, settings, scale, draft)?;
            let made = &before.video.frames[before.first_output..];
            let context = made.len().checked_sub(window.context).ok_or_else(|| {
                Failure::User(format!(
                    "the window before frame {} made too few frames",
                    window.first
                ))
            })?;
            inputs.previous = made[context..].to_vec();
            before.key.hash(&mut key);
        }
        let key = key.finish();

        if let Some(hit) = self.cached(key) {
            return Ok(hit);
        }
        let _generating = self.generating();
        if let Some(hit) = self.cached(key) {
            return Ok(hit);
        }
        let folder = Instance::model_folder(&settings.model)?;
        let loaded = self.loaded_model(&folder, &settings.adapters);
        self.check_memory(&folder, loaded.is_none(), window, rect, settings)?;
        let model = match loaded {
            Some(model) => model,
            None => self.load_model(&folder, &settings.adapters)?,
        };
        let mut params = settings.task.clone();
        if settings.fast || draft {
            DISTILL_4.apply(&mut params);
        }
        params.seed = params.seed.wrapping_add(window.index as u64);
        let progress = HostProgress {
            effect,
            cancelled: Cell::new(false),
        };
        effect.progress_start("Soragen: generating");
        let result = run_task(&model, &kind, &inputs, &params, &progress);
        effect.progress_end();
        let output = result?;
        let first_output = match kind {
            TaskKind::ReplaceBackground | TaskKind::Generate { .. } => 0,
            // Offsets count from the still, which is the window's first frame.
            _ if window.task == GenerationTask::Animate && window.index == 0 => 0,
            _ => output.record.generated.first().map_or(0, |r| r.start),
        };
        let generated = Arc::new(Generated {
            video: output.video,
            first_output,
            rect,
            key,
        });
        self.store(key, generated.clone());
        Ok(generated)
    }

    /// Refuses a generation that would not fit in memory (`soragen_core::memory`): the model's
    /// weights when it is not loaded yet, plus the window's activations, in the dtype the
    /// model runs in here.
    fn check_memory(
        &self,
        folder: &Path,
        with_weights: bool,
        window: &Generation,
        rect: RectI,
        settings: &Settings,
    ) -> Result<(), Failure> {
        // A folder whose sizes cannot be read does not load either; the loader says why, better.
        let Ok(sizes) = ModelSizes::read(folder, Instance::dtype()) else {
            return Ok(());
        };
        let frames = if window.edits_in_place() {
            window.frames
        } else {
            window.frames + window.source_times.len() + window.next_times.len()
        };
        let activations = window_activations(
            &sizes,
            &memory::Window {
                frames,
                width: rect.width(),
                height: rect.height(),
                window_frames: settings.task.window_frames,
                guidance: settings.task.guidance > 1.0,
            },
        );
        let need = activations + if with_weights { sizes.weights } else { 0 };
        let budget = limits::budget().map_err(|e| Failure::User(e.to_string()))?;
        limits::check("this generation", need, budget.as_ref()).map_err(|e| {
            Failure::OutOfMemory(format!(
                "{e}; lower Frames, render at a smaller size, or set Guidance to 1"
            ))
        })
    }
}
