use std::collections::VecDeque;
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
use soragen_core::tasks::{TaskInputs, TaskKind, run_task};

use crate::frames::{self, FrameMemory, SharedGpu};
use crate::generation::{BusProgress, GeneratedBy, GenerationSettings, mark_generated, stamp};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("soragensrc", gst::DebugColorFlags::empty(), Some("Soragen text to video source"))
});

/// Wan2.1's native size and rate, preferred when downstream leaves them open.
const DEFAULT_WIDTH: i32 = 832;
const DEFAULT_HEIGHT: i32 = 480;
const DEFAULT_FPS: gst::Fraction = gst::Fraction::from_integer(16);

#[derive(Clone, Debug)]
struct Settings {
    generation: GenerationSettings,
    num_frames: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self { generation: GenerationSettings::default(), num_frames: 81 }
    }
}

#[derive(Default)]
struct State {
    model: Option<Arc<WanVace>>,
    info: Option<VideoInfo>,
    /// Where the negotiated caps keep frames.
    memory: FrameMemory,
    /// The generated clip, once generated, minus the frames already pushed.
    pending: Option<VecDeque<gst::Buffer>>,
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
    fn generate(&self, model: &WanVace, info: &VideoInfo, memory: &FrameMemory) -> Result<VecDeque<gst::Buffer>, gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let kind = TaskKind::Generate {
            frames: settings.num_frames as usize,
            width: info.width() as usize,
            height: info.height() as usize,
        };
        gst::debug!(CAT, imp = self, "generating {kind:?}");
        let element = self.obj();
        let observer = BusProgress::new(element.upcast_ref(), &self.cancel);
        let output = match run_task(model, &kind, &TaskInputs::default(), &settings.generation.task_params(), &observer) {
            Ok(output) => output,
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
        let duration = gst::ClockTime::SECOND
            .mul_div_floor(info.fps().denom() as u64, info.fps().numer().max(1) as u64)
            .unwrap_or(gst::ClockTime::ZERO);
        let frames: Vec<_> = output.video.frames.iter().collect();
        let buffers = memory.to_buffers(&frames, info).map_err(|e| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("Cannot convert frames: {e}"));
            gst::FlowError::Error
        })?;
        Ok(buffers
            .into_iter()
            .zip(0u64..)
            .map(|(mut buffer, index)| {
                let buffer_mut = buffer.make_mut();
                stamp(buffer_mut, duration * index, duration, Some(info.fps()));
                mark_generated(buffer_mut, &record);
                buffer
            })
            .collect())
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
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        if settings.generation.set_property(self.obj().upcast_ref(), pspec.name(), value) {
            return;
        }
        match pspec.name() {
            "num-frames" => settings.num_frames = value.get().expect("type checked upstream"),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        match pspec.name() {
            "num-frames" => settings.num_frames.to_value(),
            name => settings.generation.property(name).unwrap_or_else(|| unreachable!("unknown property {name}")),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_format(gst::Format::Time);
    }
}

impl GstObjectImpl for SoragenSrc {}

impl ElementImpl for SoragenSrc {
    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::NullToReady {
            let settings = lock(&self.settings).generation.clone();
            // A device that does not open is reported when the model loads.
            if let Ok(device) = settings.open_device() {
                self.gpu.share(self.obj().upcast_ref(), &device);
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
            vec![gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).unwrap()]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseSrcImpl for SoragenSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let model = lock(&self.settings).generation.load_model()?;
        // Shared already, unless the device property changed in READY.
        self.gpu.share(self.obj().upcast_ref(), &model.device);
        *lock(&self.state) = State { model: Some(model), ..State::default() };
        self.cancel.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = State::default();
        Ok(())
    }

    /// The template's caps, without CUDA memory unless the model's GPU is shared.
    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        let caps = self.gpu.usable_caps(self.obj().src_pad().pad_template_caps());
        Some(match filter {
            Some(filter) => filter.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
            None => caps,
        })
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        self.gpu.answer_context_query(self.obj().upcast_ref(), query) || BaseSrcImplExt::parent_query(self, query)
    }

    fn is_seekable(&self) -> bool {
        false
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
        let info = VideoInfo::from_caps(caps).map_err(|_| gst::loggable_error!(CAT, "Invalid caps {caps}"))?;
        let memory = self.gpu.memory_for(caps).map_err(|reason| gst::loggable_error!(CAT, "{reason}"))?;
        let mut state = lock(&self.state);
        state.info = Some(info);
        state.memory = memory;
        state.pending = None;
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
    fn create(&self, _buffer: Option<&mut gst::BufferRef>) -> Result<CreateSuccess, gst::FlowError> {
        let mut state = lock(&self.state);
        if state.pending.is_none() {
            let (Some(model), Some(info)) = (state.model.clone(), state.info.clone()) else {
                return Err(gst::FlowError::NotNegotiated);
            };
            let memory = state.memory.clone();
            // Generation runs unlocked: unlock() and queries must not wait for it.
            drop(state);
            let clip = self.generate(&model, &info, &memory)?;
            state = lock(&self.state);
            state.pending = Some(clip);
        }
        match state.pending.as_mut().and_then(VecDeque::pop_front) {
            Some(buffer) => Ok(CreateSuccess::NewBuffer(buffer)),
            None => Err(gst::FlowError::Eos),
        }
    }
}
