//! What both elements share: the generation properties, loading the model, progress on the bus
//! with cancellation, and the meta that marks generated buffers.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use gst::glib;
use gst::prelude::*;
use soragen_core::device::{DeviceChoice, default_dtype};
use soragen_core::hub::resolve_model;
use soragen_core::model::WanVace;
use soragen_core::presets::{self, LoraSpec, Preset};
use soragen_core::step_cache::StepCache;
use soragen_core::tasks::TaskParams;
use soragen_core::vace::Observer;

/// Name of the custom meta on every generated buffer; its structure holds `model`, `prompt`,
/// `seed` and `task`.
pub const GENERATED_META: &str = "GstSoragenGeneratedMeta";

/// Name of the element messages that report progress: `step`, `total` (denoising steps of the
/// current window), `window`, `windows` (0-based window of how many; replace-background counts
/// the windows of the stream, `windows` 0 when the segment does not say how long it is).
pub const PROGRESS_MESSAGE: &str = "soragen-progress";

pub fn register_meta() {
    if !gst::meta::CustomMeta::is_registered(GENERATED_META) {
        gst::meta::CustomMeta::register(GENERATED_META, &[]);
    }
}

/// Properties both elements have, with their defaults.
#[derive(Clone, Debug)]
pub struct GenerationSettings {
    pub model: Option<PathBuf>,
    pub prompt: String,
    pub negative_prompt: String,
    pub steps: u32,
    pub guidance: f64,
    pub seed: u64,
    pub device: DeviceChoice,
    pub window_frames: u32,
    /// LoRA adapters merged into the transformer when the model loads.
    pub lora: Vec<LoraSpec>,
    /// Steps, guidance and flow shift in place of `steps` and `guidance`.
    pub preset: Option<&'static Preset>,
    pub step_cache: Option<StepCache>,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        let params = TaskParams::default();
        Self {
            model: None,
            prompt: params.prompt,
            negative_prompt: params.negative_prompt,
            steps: params.steps as u32,
            guidance: params.guidance,
            seed: params.seed,
            device: DeviceChoice::default(),
            window_frames: params.window_frames as u32,
            lora: Vec::new(),
            preset: None,
            step_cache: params.step_cache,
        }
    }
}

impl GenerationSettings {
    pub fn properties() -> Vec<glib::ParamSpec> {
        let defaults = Self::default();
        // The model and the device are fixed once the model is loaded (READY -> PAUSED).
        vec![
            glib::ParamSpecString::builder("model")
                .nick("Model")
                .blurb("A Wan2.1-VACE model: a folder in diffusers layout (model_index.json, transformer/, vae/, ...) or a Hugging Face repository id such as Wan-AI/Wan2.1-VACE-1.3B-diffusers (looked up in, or fetched into, the Hugging Face cache)")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("prompt")
                .nick("Prompt")
                .blurb("What the generated frames show")
                .default_value(Some(defaults.prompt.as_str()))
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("negative-prompt")
                .nick("Negative prompt")
                .blurb("What the generated frames should not show (used when guidance > 1)")
                .default_value(Some(defaults.negative_prompt.as_str()))
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("steps")
                .nick("Steps")
                .blurb("Denoising steps per generation: more is slower and finer")
                .minimum(1)
                .maximum(1000)
                .default_value(defaults.steps)
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("guidance")
                .nick("Guidance")
                .blurb("Classifier-free guidance scale; 1 or less disables guidance (twice as fast)")
                .minimum(0.0)
                .maximum(30.0)
                .default_value(defaults.guidance)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt64::builder("seed")
                .nick("Seed")
                .blurb("Random seed: the same seed, prompt and frames give the same output")
                .default_value(defaults.seed)
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("device")
                .nick("Device")
                .blurb("Where the model runs: \"auto\" (the GPU in a CUDA build when one opens, else the CPU), \"cpu\", or \"cuda:N\" (GPU N; needs a CUDA build)")
                .default_value(Some(defaults.device.to_string().as_str()))
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("window-frames")
                .nick("Window frames")
                .blurb("Frames the model makes at once (4n+1); longer results take several windows, each continuing the last. Fewer use less memory; replace-background holds one window and a frame back")
                .minimum(5)
                .maximum(1001)
                .default_value(defaults.window_frames)
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("lora")
                .nick("LoRA adapters")
                .blurb("LoRA adapters (.safetensors: diffusers/PEFT or Wan/ComfyUI names, e.g. a lightx2v or CausVid step-distilled adapter) merged into the transformer when the model loads: FILE or FILE:STRENGTH, several separated by ';'")
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("preset")
                .nick("Preset")
                .blurb("Sampling preset in place of steps and guidance: \"distill-4\" (4 steps, guidance 1, flow shift 5, for a step-distilled LoRA), \"quality\" (50 steps, guidance 5), or none")
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("step-cache")
                .nick("Step cache")
                .blurb("Reuse work between denoising steps: \"first-block\" or \"first-block:THRESHOLD\" (diffusers' First Block Cache, default threshold 0.05; higher is faster and further from the uncached frames), or none")
                .default_value(Some(StepCache::spec(defaults.step_cache).as_str()))
                .mutable_playing()
                .build(),
        ]
    }

    /// Sets one of the shared properties; false when `name` is not one of them. An invalid value
    /// is refused with a warning and the old value kept.
    pub fn set_property(
        &mut self,
        element: &gst::Element,
        name: &str,
        value: &glib::Value,
    ) -> bool {
        match name {
            "model" => {
                self.model = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            }
            "prompt" => {
                self.prompt = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "negative-prompt" => {
                self.negative_prompt = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default()
            }
            "steps" => self.steps = value.get().expect("type checked upstream"),
            "guidance" => self.guidance = value.get().expect("type checked upstream"),
            "seed" => self.seed = value.get().expect("type checked upstream"),
            "window-frames" => self.window_frames = value.get().expect("type checked upstream"),
            "lora" | "preset" | "step-cache" => {
                let text = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
                let parsed = match name {
                    "lora" => presets::parse_adapters(&text).map(|lora| self.lora = lora),
                    "preset" => Preset::optional(&text).map(|preset| self.preset = preset),
                    _ => StepCache::parse(&text).map(|cache| self.step_cache = cache),
                };
                if let Err(reason) = parsed {
                    glib::g_warning!(
                        "soragen",
                        "{}: invalid {name} {text:?}: {reason}; keeping the current value",
                        element.name(),
                    );
                }
            }
            "device" => {
                let text = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
                match DeviceChoice::parse(&text) {
                    Ok(device) => self.device = device,
                    Err(reason) => glib::g_warning!(
                        "soragen",
                        "{}: invalid device {reason} (or auto); keeping \"{}\"",
                        element.name(),
                        self.device
                    ),
                }
            }
            _ => return false,
        }
        true
    }

    pub fn property(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "model" => self
                .model
                .as_ref()
                .map(|m| m.display().to_string())
                .to_value(),
            "prompt" => self.prompt.to_value(),
            "negative-prompt" => self.negative_prompt.to_value(),
            "steps" => self.steps.to_value(),
            "guidance" => self.guidance.to_value(),
            "seed" => self.seed.to_value(),
            "device" => self.device.to_string().to_value(),
            "window-frames" => self.window_frames.to_value(),
            "lora" => (!self.lora.is_empty())
                .then(|| presets::adapters_text(&self.lora))
                .to_value(),
            "preset" => self.preset.map(|p| p.name).to_value(),
            "step-cache" => StepCache::spec(self.step_cache).to_value(),
            _ => return None,
        })
    }

    /// The model, loaded once per process and shared by every element using the same folder.
    pub fn load_model(&self) -> Result<Arc<WanVace>, gst::ErrorMessage> {
        let Some(folder) = &self.model else {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("No model set: set the 'model' property to a Wan2.1-VACE model folder or repository id")
            ));
        };
        let fail = |e: soragen_core::Error| {
            gst::error_msg!(
                gst::LibraryError::Init,
                ("Cannot load the model {}: {e}", folder.display())
            )
        };
        // A folder, or a repository id looked up in (and fetched into) the Hugging Face cache.
        let folder = resolve_model(&folder.to_string_lossy()).map_err(fail)?;
        let device = self.open_device()?;
        WanVace::shared_with_adapters(&folder, &device, default_dtype(&device), &self.lora)
            .map_err(fail)
    }

    /// The device the `device` property names, opened (one handle per GPU in the process).
    pub fn open_device(&self) -> Result<candle_core::Device, gst::ErrorMessage> {
        self.device.open().map_err(|reason| {
            gst::error_msg!(
                gst::LibraryError::Init,
                ("Cannot use device {}: {reason}", self.device)
            )
        })
    }

    pub fn task_params(&self) -> TaskParams {
        let mut params = TaskParams {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            seed: self.seed,
            steps: self.steps as usize,
            guidance: self.guidance,
            window_frames: self.window_frames as usize,
            step_cache: self.step_cache,
            ..TaskParams::default()
        };
        if let Some(preset) = self.preset {
            preset.apply(&mut params);
        }
        params
    }
}

/// Reports denoising progress as element messages and stops at the next step once `cancel` is
/// set (by a flush or a state change to READY).
pub struct BusProgress<'a> {
    pub element: &'a gst::Element,
    cancel: Box<dyn Fn() -> bool + 'a>,
    window: AtomicU32,
    windows: AtomicU32,
    /// The window of the stream this task is (replace-background: one task per window), which
    /// the messages report instead of the task's own windows.
    stream_window: Option<(u32, u32)>,
}

impl<'a> BusProgress<'a> {
    pub fn new(element: &'a gst::Element, cancel: &'a AtomicBool) -> Self {
        Self::with_cancel(element, move || cancel.load(Ordering::SeqCst))
    }

    /// Stops once `cancel` says so.
    pub fn with_cancel(element: &'a gst::Element, cancel: impl Fn() -> bool + 'a) -> Self {
        Self {
            element,
            cancel: Box::new(cancel),
            window: AtomicU32::new(0),
            windows: AtomicU32::new(1),
            stream_window: None,
        }
    }

    /// Reports window `index` of `count` (0: not known) of the stream.
    pub fn in_stream_window(mut self, index: u32, count: u32) -> Self {
        self.stream_window = Some((index, count));
        self
    }
}

impl Observer for BusProgress<'_> {
    fn step(&self, done: usize, total: usize) {
        let structure = gst::Structure::builder(PROGRESS_MESSAGE)
            .field("step", done as u32)
            .field("total", total as u32)
            .field(
                "window",
                self.stream_window
                    .map_or_else(|| self.window.load(Ordering::Relaxed), |w| w.0),
            )
            .field(
                "windows",
                self.stream_window
                    .map_or_else(|| self.windows.load(Ordering::Relaxed), |w| w.1),
            )
            .build();
        let _ = self.element.post_message(
            gst::message::Element::builder(structure)
                .src(self.element)
                .build(),
        );
    }

    fn window(&self, index: usize, count: usize) {
        self.window.store(index as u32, Ordering::Relaxed);
        self.windows.store(count as u32, Ordering::Relaxed);
    }

    fn cancelled(&self) -> bool {
        (self.cancel)()
    }
}

/// Gives a generated buffer its own timing: `offset` is the frame number at the stream's frame
/// rate (as `videotestsrc` counts), left unset without a rate.
pub fn stamp(
    buffer: &mut gst::BufferRef,
    pts: gst::ClockTime,
    duration: gst::ClockTime,
    fps: Option<gst::Fraction>,
) {
    buffer.set_pts(pts);
    buffer.set_dts(gst::ClockTime::NONE);
    buffer.set_duration(duration);
    let frame = fps.filter(|fps| fps.numer() > 0).and_then(|fps| {
        pts.nseconds().mul_div_round(
            fps.numer() as u64,
            fps.denom() as u64 * gst::ClockTime::SECOND.nseconds(),
        )
    });
    if let Some(frame) = frame {
        buffer.set_offset(frame);
        buffer.set_offset_end(frame + 1);
    }
}

/// Attaches the meta that marks a buffer as generated.
pub fn mark_generated(buffer: &mut gst::BufferRef, record: &GeneratedBy) {
    let mut meta =
        gst::meta::CustomMeta::add(buffer, GENERATED_META).expect("meta registered at plugin load");
    let s = meta.mut_structure();
    s.set("model", &record.model);
    s.set("prompt", &record.prompt);
    s.set("seed", record.seed);
    s.set("task", &record.task);
}

/// What the meta of a generated buffer says.
#[derive(Clone, Debug)]
pub struct GeneratedBy {
    pub model: String,
    pub prompt: String,
    pub seed: u64,
    pub task: String,
}

/// A stream's frame grid: frame n starts n × den / num seconds after frame 0, rounded once
/// (never a rounded duration added up); without a rate every frame lasts `fallback`.
#[derive(Clone, Copy, Debug)]
pub struct FrameGrid {
    fps: Option<gst::Fraction>,
    fallback: gst::ClockTime,
}

pub fn frame_grid(fps: Option<gst::Fraction>, fallback: gst::ClockTime) -> FrameGrid {
    FrameGrid {
        fps: fps.filter(|fps| fps.numer() > 0 && fps.denom() > 0),
        fallback,
    }
}

impl FrameGrid {
    /// The time `frames` frames take from a frame on the grid.
    pub fn span(&self, frames: u64) -> gst::ClockTime {
        self.fps
            .and_then(|fps| {
                gst::ClockTime::SECOND
                    .mul_div_round(frames * fps.denom() as u64, fps.numer() as u64)
            })
            .unwrap_or(self.fallback * frames)
    }

    /// The grid frame nearest `time`, when `time` lies on the grid (within 1 µs, what a
    /// muxer's rounding leaves).
    pub fn frame_at(&self, time: gst::ClockTime) -> Option<u64> {
        let fps = self.fps?;
        let frame = time.nseconds().mul_div_round(
            fps.numer() as u64,
            fps.denom() as u64 * gst::ClockTime::SECOND.nseconds(),
        )?;
        (self.span(frame).nseconds().abs_diff(time.nseconds()) <= 1_000).then_some(frame)
    }

    /// PTS and duration of the `index`-th frame from `start`: the grid's own frame times when
    /// `start` lies on the grid, else `start` plus the grid's spans.
    pub fn frame(&self, start: gst::ClockTime, index: u64) -> (gst::ClockTime, gst::ClockTime) {
        match self.frame_at(start) {
            Some(first) => {
                let pts = self.span(first + index);
                (pts, self.span(first + index + 1) - pts)
            }
            None => (
                start + self.span(index),
                self.span(index + 1) - self.span(index),
            ),
        }
    }
}

/// Refuses (with a warning) to change a property that may change only in NULL or READY (flag
/// `GST_PARAM_MUTABLE_READY`) once the element is PAUSED or PLAYING, or on its way there: the
/// running element could not follow it. True when refused.
pub fn refused_while_running(
    element: &gst::Element,
    pspec: &glib::ParamSpec,
    value: &glib::Value,
) -> bool {
    let ready_only = pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_READY);
    let (_, current, pending) = element.state(gst::ClockTime::ZERO);
    if !ready_only || (current <= gst::State::Ready && pending <= gst::State::Ready) {
        return false;
    }
    glib::g_warning!(
        "soragen",
        "{}: property '{}' can change only in the NULL or READY state (it is {current:?}): keeping the current value, not {value:?}",
        element.name(),
        pspec.name(),
    );
    true
}
