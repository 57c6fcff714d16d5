use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use gst_video::VideoInfo;
use soragen_core::model::WanVace;
use soragen_core::tasks::{TaskInputs, TaskKind, animate_request, run_task};
use soragen_core::video::Video;

use crate::frames::{self, FrameMemory, SharedGpu};
use crate::generation::{
    BusProgress, GeneratedBy, GenerationSettings, frame_grid, mark_generated,
    refused_while_running, stamp,
};
use crate::images;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "soragensrc",
        gst::DebugColorFlags::empty(),
        Some("Soragen text to video source"),
    )
});

/// Wan2.1's native size and rate, preferred when downstream leaves them open.
const DEFAULT_WIDTH: i32 = 832;
const DEFAULT_HEIGHT: i32 = 480;
const DEFAULT_FPS: gst::Fraction = gst::Fraction::from_integer(16);

#[derive(Clone, Debug)]
struct Settings {
    generation: GenerationSettings,
    num_frames: u32,
    /// A still to animate (frame 0 of the clip) instead of text to video.
    image: Option<PathBuf>,
    references: Vec<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            generation: GenerationSettings::default(),
            num_frames: 81,
            image: None,
            references: Vec::new(),
        }
    }
}

#[derive(Default)]
struct State {
    model: Option<Arc<WanVace>>,
    info: Option<VideoInfo>,
    /// Where the negotiated caps keep frames.
    memory: FrameMemory,
    /// The generated clip, once generated: kept, so that seeks replay it.
    clip: Option<Arc<Vec<gst::Buffer>>>,
    /// The clip's next frame to push.
    next: u64,
    /// `image` and `reference`, read at READY -> PAUSED.
    image: Option<Arc<Video>>,
    references: Arc<Vec<Video>>,
}

#[derive(Default)]
pub struct SoragenSrc {
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// The model's GPU shared with the pipeline (from start), or why not.
    gpu: SharedGpu,
    /// Set by unlock (flush, PAUSED -> READY): a running generation stops at its next step.
    cancel: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl SoragenSrc {
    fn generate(
        &self,
        model: &WanVace,
        info: &VideoInfo,
        memory: &FrameMemory,
    ) -> Result<Vec<gst::Buffer>, gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let (image, references) = {
            let state = lock(&self.state);
            (state.image.clone(), state.references.clone())
        };
        // A still: the same extension as `soragen animate` (the still is frame 0, kept).
        let request = match &image {
            Some(image) => animate_request((**image).clone(), settings.num_frames as usize),
            None => Ok((
                TaskKind::Generate {
                    frames: settings.num_frames as usize,
                    width: info.width() as usize,
                    height: info.height() as usize,
                },
                TaskInputs::default(),
            )),
        };
        let (kind, mut inputs) = request.map_err(|e| {
            gst::element_imp_error!(self, gst::LibraryError::Settings, ("{e}"));
            gst::FlowError::Error
        })?;
        inputs.references = references.to_vec();
        gst::debug!(CAT, imp = self, "generating {kind:?}");
        let element = self.obj();
        let observer = BusProgress::new(element.upcast_ref(), &self.cancel);
        let output = match run_task(
            model,
            &kind,
            &inputs,
            &settings.generation.task_params(),
            &observer,
        ) {
            Ok(mut output) => {
                if image.is_some() {
                    output.record.task = "animate".to_string();
                }
                output
            }
            Err(soragen_core::Error::Cancelled) => return Err(gst::FlowError::Flushing),
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("Generation failed: {e}"));
                return Err(gst::FlowError::Error);
            }
        };
        let record = GeneratedBy {
            model: model.folder.display().to_string(),
            prompt: settings.generation.prompt.clone(),
            seed: settings.generation.seed,
            task: output.record.task.clone(),
        };
        let grid = frame_grid(Some(info.fps()), gst::ClockTime::ZERO);
        let mut buffers = Vec::with_capacity(output.video.frames.len());
        // Frame by frame, so that a flush or a state change stops the conversion too.
        for (frame, index) in output.video.frames.iter().zip(0u64..) {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(gst::FlowError::Flushing);
            }
            let mut buffer = memory.to_buffers(&[frame], info).map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    ("Cannot convert frames: {e}")
                );
                gst::FlowError::Error
            })?;
            let mut buffer = buffer.pop().ok_or(gst::FlowError::Error)?;
            let buffer_mut = buffer.make_mut();
            let (pts, duration) = grid.frame(gst::ClockTime::ZERO, index);
            stamp(buffer_mut, pts, duration, Some(info.fps()));
            mark_generated(buffer_mut, &record);
            buffers.push(buffer);
        }
        Ok(buffers)
    }
}

#[glib::object_subclass]
impl ObjectSubclass for SoragenSrc {
    const NAME: &'static str = "GstSoragenSrc";
    type Type = super::SoragenSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for SoragenSrc {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let mut properties = GenerationSettings::properties();
            properties.push(
                glib::ParamSpecUInt::builder("num-frames")
                    .nick("Number of frames")
                    .blurb("Length of the generated clip in frames")
                    .minimum(1)
                    .maximum(10_000)
                    .default_value(Settings::default().num_frames)
                    .mutable_ready()
                    .build(),
            );
            properties.push(
                glib::ParamSpecString::builder("image")
                    .nick("Image")
                    .blurb("A PNG still to bring to life: the clip's first frame (kept exactly) at the still's size; num-frames counts it")
                    .mutable_ready()
                    .build(),
            );
            properties.push(images::reference_property());
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        if refused_while_running(self.obj().upcast_ref(), pspec, value) {
            return;
        }
        let mut settings = lock(&self.settings);
        if settings
            .generation
            .set_property(self.obj().upcast_ref(), pspec.name(), value)
        {
            return;
        }
        match pspec.name() {
            "num-frames" => settings.num_frames = value.get().expect("type checked upstream"),
            "image" => {
                settings.image = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .filter(|path| !path.is_empty())
                    .map(PathBuf::from)
            }
            "reference" => {
                settings.references = images::parse_paths(
                    value
                        .get::<Option<String>>()
                        .expect("type checked upstream")
                        .as_deref(),
                )
            }
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "num-frames" => settings.num_frames.to_value(),
            "image" => settings
                .image
                .as_ref()
                .map(|path| path.display().to_string())
                .to_value(),
            "reference" => images::join_paths(&settings.references).to_value(),
            name => settings
                .generation
                .property(name)
                .unwrap_or_else(|| unreachable!("unknown property {name}")),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_format(gst::Format::Time);
    }
}

impl GstObjectImpl for SoragenSrc {}

impl ElementImpl for SoragenSrc {
    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::NullToReady {
            let settings = lock(&self.settings).generation.clone();
            // A device that does not open is reported when the model loads.
            if let Ok(device) = settings.open_device() {
                self.gpu.share(self.obj().upcast_ref(), &device);
            }
        }
        // The model loads here rather than in start(): basesrc adds a generic "Failed to start"
        // error to ours when start() fails; this way the reason is the only error.
        if transition == gst::StateChange::ReadyToPaused {
            let settings = lock(&self.settings).clone();
            let model = settings.generation.load_model().and_then(|model| {
                let image = images::read("image", settings.image.as_slice())?.pop();
                let references = images::read("reference", &settings.references)?;
                Ok((model, image, references))
            });
            match model {
                Ok((model, image, references)) => {
                    // Shared already, unless the device property changed in READY.
                    self.gpu.share(self.obj().upcast_ref(), &model.device);
                    *lock(&self.state) = State {
                        model: Some(model),
                        image: image.map(Arc::new),
                        references: Arc::new(references),
                        ..State::default()
                    };
                }
                Err(message) => {
                    self.post_error_message(message);
                    return Err(gst::StateChangeError);
                }
            }
        }
        let success = self.parent_change_state(transition)?;
        if transition == gst::StateChange::ReadyToNull {
            self.gpu.stop();
        }
        Ok(success)
    }

    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Soragen text to video",
                "Source/Video",
                "Generates a clip from a text prompt with a Wan2.1-VACE model",
                "Soragen developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = frames::element_caps(&frames::FORMATS);
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for SoragenSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        self.cancel.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = State::default();
        Ok(())
    }

    /// The template's caps, without CUDA memory unless the model's GPU is shared.
    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        let mut caps = self
            .gpu
            .usable_caps(self.obj().src_pad().pad_template_caps());
        // A still fixes the size: the clip starts with it, unscaled.
        if let Some(image) = lock(&self.state).image.clone() {
            caps.make_mut()
                .set("width", i32::try_from(image.width).unwrap_or(i32::MAX));
            caps.make_mut()
                .set("height", i32::try_from(image.height).unwrap_or(i32::MAX));
        }
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        })
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Duration(q) = query.view_mut()
            && q.format() == gst::Format::Time
        {
            let Some(duration) = self.clip_duration() else {
                return false;
            };
            q.set(duration);
            return true;
        }
        self.gpu
            .answer_context_query(self.obj().upcast_ref(), query)
            || BaseSrcImplExt::parent_query(self, query)
    }

    /// Seekable in time, forward: the clip is generated once and kept.
    fn is_seekable(&self) -> bool {
        true
    }

    fn do_seek(&self, segment: &mut gst::Segment) -> bool {
        let Some(segment) = segment.downcast_ref::<gst::ClockTime>() else {
            return false;
        };
        if segment.rate() < 0.0 {
            gst::warning!(CAT, imp = self, "reverse playback is not supported");
            return false;
        }
        let start = segment.start().unwrap_or(gst::ClockTime::ZERO);
        let mut state = lock(&self.state);
        // Before negotiation the caps' rate is not known: start at frame 0, seek again later.
        let fps = state.info.as_ref().map(VideoInfo::fps);
        let grid = frame_grid(fps, gst::ClockTime::ZERO);
        // The first frame that ends after the seek position.
        state.next = match fps.filter(|fps| fps.numer() > 0) {
            Some(fps) => start
                .nseconds()
                .mul_div_floor(
                    fps.numer() as u64,
                    fps.denom() as u64 * gst::ClockTime::SECOND.nseconds(),
                )
                .unwrap_or(0),
            None => 0,
        };
        while state.next > 0 && grid.span(state.next) > start {
            state.next -= 1;
        }
        true
    }

    fn fixate(&self, mut caps: gst::Caps) -> gst::Caps {
        caps.truncate();
        if let Some(s) = caps.make_mut().structure_mut(0) {
            s.fixate_field_nearest_int("width", DEFAULT_WIDTH);
            s.fixate_field_nearest_int("height", DEFAULT_HEIGHT);
            s.fixate_field_nearest_fraction("framerate", DEFAULT_FPS);
        }
        self.parent_fixate(caps)
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = VideoInfo::from_caps(caps)
            .map_err(|_| gst::loggable_error!(CAT, "Invalid caps {caps}"))?;
        if info.fps().numer() <= 0 || info.fps().denom() <= 0 {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                (
                    "soragensrc makes a clip of frames at a frame rate: framerate {}/{} states none (ask for e.g. framerate=16/1)",
                    info.fps().numer(),
                    info.fps().denom()
                )
            );
            return Err(gst::loggable_error!(CAT, "no frame rate in {caps}"));
        }
        let memory = self
            .gpu
            .memory_for(caps)
            .map_err(|reason| gst::loggable_error!(CAT, "{reason}"))?;
        let mut state = lock(&self.state);
        if state.info.as_ref() != Some(&info) {
            state.clip = None;
        }
        state.info = Some(info);
        state.memory = memory;
        Ok(())
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.cancel.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.cancel.store(false, Ordering::SeqCst);
        Ok(())
    }
}

impl PushSrcImpl for SoragenSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        let mut state = lock(&self.state);
        if state.clip.is_none() {
            let (Some(model), Some(info)) = (state.model.clone(), state.info.clone()) else {
                return Err(gst::FlowError::NotNegotiated);
            };
            let memory = state.memory.clone();
            // Generation runs unlocked: unlock() and queries must not wait for it.
            drop(state);
            let clip = self.generate(&model, &info, &memory)?;
            state = lock(&self.state);
            state.clip = Some(Arc::new(clip));
        }
        let next = state.next;
        let buffer = state
            .clip
            .as_ref()
            .and_then(|clip| clip.get(next as usize).cloned());
        let Some(buffer) = buffer else {
            return Err(gst::FlowError::Eos);
        };
        state.next += 1;
        drop(state);
        // A segment seek's stop ends the clip early.
        let stop = self
            .obj()
            .segment()
            .downcast::<gst::ClockTime>()
            .ok()
            .and_then(|segment| segment.stop());
        if let (Some(stop), Some(pts)) = (stop, buffer.pts())
            && pts >= stop
        {
            return Err(gst::FlowError::Eos);
        }
        Ok(CreateSuccess::NewBuffer(buffer))
    }
}

impl SoragenSrc {
    /// The clip's length once the caps give its frame rate.
    fn clip_duration(&self) -> Option<gst::ClockTime> {
        let frames = lock(&self.settings).num_frames as u64;
        let fps = lock(&self.state)
            .info
            .as_ref()
            .map(VideoInfo::fps)
            .filter(|fps| fps.numer() > 0)?;
        Some(frame_grid(Some(fps), gst::ClockTime::ZERO).span(frames))
    }
}
