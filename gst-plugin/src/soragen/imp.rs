//! The element holds frames only while a mode needs them as generation input (never in
//! passthrough or extend-forward), keeps every event in order behind held frames, and runs
//! generations on the streaming thread with no lock held, so a flush or a state change can cancel
//! them between two denoising steps.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoInfo;
use soragen_core::model::WanVace;
use soragen_core::tasks::{TaskInputs, TaskKind, run_task};

use super::Mode;
use super::mask::{self, MaskError, MaskStream};
use crate::frames::{self, FrameMemory, SharedGpu};
use crate::generation::{BusProgress, GeneratedBy, GenerationSettings, mark_generated, stamp};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new("soragen", gst::DebugColorFlags::empty(), Some("Soragen generative video"))
});

/// Frame duration assumed when neither the caps nor the buffers state one.
const FALLBACK_FRAME_DURATION: gst::ClockTime = gst::ClockTime::from_mseconds(40);

#[derive(Clone, Debug)]
struct Settings {
    generation: GenerationSettings,
    mode: Mode,
    frames: u32,
    context_frames: u32,
    insert_at: Vec<gst::ClockTime>,
    processing_latency: gst::ClockTime,
    color_match: bool,
    mask_dilation: u32,
    mask_feather: u32,
}

impl Default for Settings {
    fn default() -> Self {
        let params = soragen_core::tasks::TaskParams::default();
        Self {
            generation: GenerationSettings::default(),
            mode: Mode::default(),
            frames: 16,
            context_frames: params.context_frames as u32,
            insert_at: Vec::new(),
            processing_latency: gst::ClockTime::ZERO,
            color_match: params.color_match,
            mask_dilation: params.mask_dilation as u32,
            mask_feather: params.mask_feather as u32,
        }
    }
}

impl Settings {
    /// Frames a mode holds back before it can generate.
    fn held_frames(&self) -> u64 {
        match self.mode {
            Mode::Passthrough | Mode::ExtendForward => 0,
            Mode::ExtendBackward | Mode::Insert => self.context_frames as u64,
            Mode::ReplaceBackground => self.frames as u64,
        }
    }
}

/// A buffer or serialized event that arrived while frames were held: it leaves in order.
enum Held {
    Buffer(gst::Buffer),
    Event(gst::Event),
}

/// Where the generated frames of a job go relative to the held items.
enum Placement {
    /// Before them (extend-backward, insert), timestamped from `start`, after the `lead` events.
    Before { start: gst::ClockTime, lead: Vec<gst::Event> },
    /// After the stream's last frame (extend-forward).
    After { start: gst::ClockTime },
    /// In place of the held frames, one for one (replace-background).
    Replace,
}

/// One generation and what to push around it, taken out of the state so that it runs unlocked.
struct Job {
    /// None: nothing to generate, only held items to release.
    task: Option<(TaskKind, Vec<gst::Buffer>, Vec<gst::Buffer>)>,
    placement: Placement,
    held: VecDeque<Held>,
    /// Added to the PTS of held original frames.
    shift: gst::ClockTime,
    info: Option<VideoInfo>,
    model: Option<Arc<WanVace>>,
    frame_duration: gst::ClockTime,
    /// The video segment, to match held frames with masks by running time.
    segment: gst::FormattedSegment<gst::ClockTime>,
    memory: FrameMemory,
}

#[derive(Default)]
struct State {
    /// Settings fixed from READY -> PAUSED on (the ones marked mutable-ready).
    mode: Mode,
    frames: u64,
    context_frames: usize,
    insert_at: Vec<gst::ClockTime>,
    model: Option<Arc<WanVace>>,
    info: Option<VideoInfo>,
    /// Where the negotiated caps keep frames.
    memory: FrameMemory,
    segment: gst::FormattedSegment<gst::ClockTime>,
    held: VecDeque<Held>,
    /// The latest frames that went through: context of the next extension or insert (extra
    /// references, no copies).
    recent: VecDeque<gst::Buffer>,
    /// Insert: a boundary was seen; frames after it are held as the insert's second clip.
    collecting: bool,
    /// Extend-backward: the frames before the first one were generated.
    extended: bool,
    /// Output PTS minus input PTS of original frames (generated frames placed before them).
    shift: gst::ClockTime,
    /// Running time where the last frame that went through ends (insert measures gaps from it).
    last_end_running_time: Option<gst::ClockTime>,
    /// PTS where the last frame that went through ends (extend-forward continues from it).
    last_end_pts: Option<gst::ClockTime>,
    last_duration: Option<gst::ClockTime>,
    next_insert_at: usize,
    /// The latency of our own last Latency message.
    posted_latency: Option<gst::ClockTime>,
}

impl State {
    fn held_frames(&self) -> usize {
        self.held.iter().filter(|h| matches!(h, Held::Buffer(_))).count()
    }

    fn frame_duration(&self) -> gst::ClockTime {
        self.info
            .as_ref()
            .filter(|info| info.fps().numer() > 0)
            .and_then(|info| {
                gst::ClockTime::SECOND.mul_div_floor(info.fps().denom() as u64, info.fps().numer() as u64)
            })
            .or(self.last_duration)
            .unwrap_or(FALLBACK_FRAME_DURATION)
    }

    /// Stream time (timestamps) that passes in `running` time at the segment's rate.
    fn timestamp_span(&self, running: gst::ClockTime) -> gst::ClockTime {
        gst::ClockTime::from_nseconds((running.nseconds() as f64 * self.segment.rate().abs()) as u64)
    }

    /// Running time that `span` of timestamps takes at the segment's rate.
    fn running_span(&self, span: gst::ClockTime) -> gst::ClockTime {
        gst::ClockTime::from_nseconds((span.nseconds() as f64 / self.segment.rate().abs()) as u64)
    }

    /// How much longer the output is than the input so far: the generated frames that move
    /// the stream (known in advance when extending; grows with each insert).
    fn extension(&self) -> gst::ClockTime {
        match self.mode {
            Mode::ExtendForward | Mode::ExtendBackward => self.frame_duration() * self.frames,
            Mode::Insert => self.shift,
            Mode::Passthrough | Mode::ReplaceBackground => gst::ClockTime::ZERO,
        }
    }

    /// The input segment with its stop and duration moved by the extension.
    fn output_segment(&self) -> gst::FormattedSegment<gst::ClockTime> {
        let extension = self.extension();
        let mut segment = self.segment.clone();
        if let Some(stop) = segment.stop() {
            segment.set_stop(stop + extension);
        }
        if let Some(duration) = segment.duration() {
            segment.set_duration(duration + extension);
        }
        segment
    }

    /// Forgets everything about the stream so far (flush, caps change, stop), keeping the setup.
    fn reset_stream(&mut self) {
        self.held.clear();
        self.recent.clear();
        self.collecting = false;
        self.extended = false;
        self.shift = gst::ClockTime::ZERO;
        self.last_end_running_time = None;
        self.last_end_pts = None;
        self.next_insert_at = 0;
    }

    /// Notes a frame that goes through now; it may serve as context later.
    fn remember(&mut self, buffer: &gst::Buffer) {
        self.note_end(buffer);
        if matches!(self.mode, Mode::ExtendForward | Mode::Insert) {
            self.recent.push_back(buffer.clone());
            while self.recent.len() > self.context_frames {
                self.recent.pop_front();
            }
        }
    }

    /// Notes where an original frame that goes through (now or after a generation) ends.
    fn note_end(&mut self, buffer: &gst::Buffer) {
        let duration = buffer.duration().unwrap_or(self.frame_duration());
        if let Some(pts) = buffer.pts() {
            self.last_end_pts = Some(pts + duration);
            self.last_end_running_time = self.segment.to_running_time(pts + duration);
        }
    }

    /// Insert: whether `buffer` starts a new piece (a jump in timestamps or an `insert-at` time).
    fn starts_piece(&mut self, buffer: &gst::Buffer) -> bool {
        let Some(pts) = buffer.pts() else { return false };
        let mut boundary = false;
        while self.insert_at.get(self.next_insert_at).is_some_and(|&at| at <= pts) {
            self.next_insert_at += 1;
            boundary = true;
        }
        let jump = match (self.segment.to_running_time(pts), self.last_end_running_time) {
            (Some(start), Some(end)) => self.timestamp_span(start.saturating_sub(end)) > self.frame_duration() / 2,
            _ => false,
        };
        (boundary || jump) && !self.recent.is_empty()
    }

    fn job(&mut self, task: Option<(TaskKind, Vec<gst::Buffer>, Vec<gst::Buffer>)>, placement: Placement) -> Job {
        Job {
            task,
            placement,
            held: std::mem::take(&mut self.held),
            shift: self.shift,
            info: self.info.clone(),
            model: self.model.clone(),
            frame_duration: self.frame_duration(),
            segment: self.segment.clone(),
            memory: self.memory.clone(),
        }
    }

    /// Takes what is held (and, at EOS, the extend-forward context) as a job; None when there is
    /// nothing to generate or release.
    fn take_job(&mut self, at_eos: bool) -> Option<Job> {
        let held_buffers: Vec<gst::Buffer> = self
            .held
            .iter()
            .filter_map(|h| match h {
                Held::Buffer(b) => Some(b.clone()),
                Held::Event(_) => None,
            })
            .collect();
        let count = self.frames as usize;
        let duration = self.frame_duration();
        let new_frames_span = duration * self.frames;
        if held_buffers.is_empty() {
            if self.mode == Mode::ExtendForward && at_eos && !self.recent.is_empty() {
                let start = self.last_end_pts? + self.shift;
                let clip = std::mem::take(&mut self.recent).into();
                return Some(self.job(Some((TaskKind::ExtendForward { frames: count }, clip, vec![])), Placement::After { start }));
            }
            self.collecting = false;
            return (!self.held.is_empty()).then(|| self.job(None, Placement::Replace));
        }
        let first_pts = held_buffers[0].pts().unwrap_or(gst::ClockTime::ZERO);
        let gap = match (self.segment.to_running_time(first_pts), self.last_end_running_time) {
            (Some(start), Some(end)) => self.timestamp_span(start.saturating_sub(end)),
            _ => gst::ClockTime::ZERO,
        };
        if let Some(last) = held_buffers.last() {
            self.note_end(last);
        }
        match self.mode {
            Mode::Passthrough | Mode::ExtendForward => unreachable!("these modes hold no frames"),
            Mode::ExtendBackward => {
                self.extended = true;
                // The originals follow the generated frames: the stream stays continuous.
                self.shift = new_frames_span;
                let start = first_pts;
                Some(self.job(
                    Some((TaskKind::ExtendBackward { frames: count }, held_buffers, vec![])),
                    Placement::Before { start, lead: vec![] },
                ))
            }
            Mode::Insert => {
                self.collecting = false;
                // The new frames fill what they can of the gap between the pieces; whatever they
                // do not fit in pushes the second piece (and the rest of the stream) back.
                let shift_before = self.shift;
                self.shift += new_frames_span.saturating_sub(gap);
                let start = (first_pts + self.shift).saturating_sub(new_frames_span);
                // Gap events that opened this boundary are replaced by the new frames and by a
                // gap event for the part they do not fill.
                let mut lead: Vec<gst::Event> = vec![];
                while let Some(Held::Event(event)) = self.held.front() {
                    if event.type_() != gst::EventType::Gap {
                        lead.push(event.clone());
                    }
                    self.held.pop_front();
                }
                if gap > new_frames_span {
                    let gap_start = (first_pts + shift_before).saturating_sub(gap);
                    lead.push(gst::event::Gap::builder(gap_start).duration(gap - new_frames_span).build());
                }
                // The stream got longer: so does its segment.
                if self.shift != shift_before && (self.segment.stop().is_some() || self.segment.duration().is_some()) {
                    lead.push(gst::event::Segment::new(&self.output_segment()));
                }
                let previous = std::mem::take(&mut self.recent).into();
                let skip = held_buffers.len().saturating_sub(self.context_frames);
                self.recent = held_buffers[skip..].iter().cloned().collect();
                Some(self.job(Some((TaskKind::Insert { frames: count }, previous, held_buffers)), Placement::Before { start, lead }))
            }
            Mode::ReplaceBackground => {
                Some(self.job(Some((TaskKind::ReplaceBackground, held_buffers, vec![])), Placement::Replace))
            }
        }
    }
}

pub struct Soragen {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    /// Replace-background's grey mask stream, when requested.
    mask_pad: Mutex<Option<gst::Pad>>,
    masks: MaskStream,
    /// The model's GPU shared with the pipeline (from READY -> PAUSED), or why not.
    gpu: SharedGpu,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Set by FLUSH_START and PAUSED -> READY: a running generation (or a wait for masks) stops
    /// at its next step.
    cancel: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Output PTS of an original frame once generated frames were placed before it.
fn shifted(mut buffer: gst::Buffer, shift: gst::ClockTime) -> gst::Buffer {
    if !shift.is_zero() {
        // Only the buffer's metadata is copied (when shared): the memory stays the same.
        let buffer = buffer.make_mut();
        buffer.set_pts(buffer.pts().map(|pts| pts + shift));
        buffer.set_dts(buffer.dts().map(|dts| dts + shift));
    }
    buffer
}

impl Soragen {
    fn chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut state = lock(&self.state);
        if state.mode == Mode::Passthrough {
            drop(state);
            return self.srcpad.push(buffer);
        }
        if buffer.duration().is_some() {
            state.last_duration = buffer.duration();
        }
        let hold = match state.mode {
            Mode::Passthrough | Mode::ExtendForward => false,
            Mode::ExtendBackward => !state.extended,
            Mode::Insert => {
                if !state.collecting && state.starts_piece(&buffer) {
                    state.collecting = true;
                }
                state.collecting
            }
            Mode::ReplaceBackground => {
                if let Some(end) = running_end(&state.segment, &buffer, state.frame_duration()) {
                    self.masks.video_reached(end);
                }
                true
            }
        };
        if !hold {
            state.remember(&buffer);
            let buffer = shifted(buffer, state.shift);
            drop(state);
            return self.srcpad.push(buffer);
        }
        state.held.push_back(Held::Buffer(buffer));
        let enough = match state.mode {
            Mode::ReplaceBackground => state.held_frames() as u64 >= state.frames,
            _ => state.held_frames() >= state.context_frames,
        };
        if !enough {
            return Ok(gst::FlowSuccess::Ok);
        }
        let job = state.take_job(false);
        drop(state);
        job.map_or(Ok(gst::FlowSuccess::Ok), |job| self.run(job))
    }

    /// Generates (and releases) whatever is held, before an event that must not overtake it.
    fn drain(&self, at_eos: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        let job = lock(&self.state).take_job(at_eos);
        job.map_or(Ok(gst::FlowSuccess::Ok), |job| self.run(job))
    }

    /// Runs a job's generation, then pushes its output in order. Called with no lock held.
    fn run(&self, job: Job) -> Result<gst::FlowSuccess, gst::FlowError> {
        let generated = match (&job.task, &job.info, &job.model) {
            (Some((kind, clip, next)), Some(info), Some(model)) => {
                let masks = match kind {
                    TaskKind::ReplaceBackground if self.mask_pad().is_some() => Some(self.masks_for(clip, &job, info)?),
                    _ => None,
                };
                self.generate(model, (kind, clip, next), masks, info, &job.memory)?
            }
            (Some(_), ..) => return Err(gst::FlowError::NotNegotiated),
            (None, ..) => vec![],
        };
        let info = job.info.as_ref();
        let mut originals = job.held.into_iter().map(|item| match item {
            Held::Buffer(buffer) => Held::Buffer(shifted(buffer, job.shift)),
            event => event,
        });
        let mut output: Vec<Held> = vec![];
        match job.placement {
            Placement::Before { start, lead } => {
                output.extend(lead.into_iter().map(Held::Event));
                output.extend(generated.into_iter().zip(0u64..).map(|((_, mut buffer), i)| {
                    stamp_generated(&mut buffer, start + job.frame_duration * i, job.frame_duration, info);
                    Held::Buffer(buffer)
                }));
                output.extend(originals);
            }
            Placement::After { start } => {
                output.extend(originals);
                output.extend(generated.into_iter().zip(0u64..).map(|((_, mut buffer), i)| {
                    stamp_generated(&mut buffer, start + job.frame_duration * i, job.frame_duration, info);
                    Held::Buffer(buffer)
                }));
            }
            Placement::Replace => {
                // Frames the task left alone (no background in them) go out untouched.
                let mut generated = generated.into_iter().peekable();
                let mut index = 0;
                for item in originals.by_ref() {
                    output.push(match item {
                        Held::Buffer(original) => {
                            let replacement = generated.next_if(|(i, _)| *i == index).map(|(_, mut buffer)| {
                                let pts = original.pts().unwrap_or(gst::ClockTime::ZERO);
                                let duration = original.duration().unwrap_or(job.frame_duration);
                                stamp_generated(&mut buffer, pts, duration, info);
                                buffer
                            });
                            index += 1;
                            Held::Buffer(replacement.unwrap_or(original))
                        }
                        event => event,
                    });
                }
            }
        }
        for item in output {
            match item {
                Held::Buffer(buffer) => {
                    self.srcpad.push(buffer)?;
                }
                Held::Event(event) => {
                    self.srcpad.push_event(event);
                }
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// The generated frames of one task with their index in the task's output clip, as buffers
    /// in the stream's format (not yet stamped).
    fn generate(
        &self,
        model: &WanVace,
        (kind, clip, next): (&TaskKind, &[gst::Buffer], &[gst::Buffer]),
        mask: Option<Vec<Vec<u8>>>,
        info: &VideoInfo,
        memory: &FrameMemory,
    ) -> Result<Vec<(usize, gst::Buffer)>, gst::FlowError> {
        let settings = lock(&self.settings).clone();
        let convert_failed = |e: glib::BoolError| {
            gst::element_imp_error!(self, gst::StreamError::Format, ("Cannot convert frames: {e}"));
            gst::FlowError::Error
        };
        let inputs = TaskInputs {
            clip: Some(memory.to_video(clip, info).map_err(convert_failed)?),
            next: (!next.is_empty()).then(|| memory.to_video(next, info)).transpose().map_err(convert_failed)?,
            mask,
        };
        let params = soragen_core::tasks::TaskParams {
            context_frames: settings.context_frames as usize,
            color_match: settings.color_match,
            mask_dilation: settings.mask_dilation as usize,
            mask_feather: settings.mask_feather as usize,
            ..settings.generation.task_params()
        };
        gst::debug!(CAT, imp = self, "generating {kind:?} from {} + {} frames", clip.len(), next.len());
        let element = self.obj();
        let observer = BusProgress::new(element.upcast_ref(), &self.cancel);
        let output = match run_task(model, kind, &inputs, &params, &observer) {
            Ok(output) => output,
            Err(soragen_core::Error::Cancelled) => {
                gst::debug!(CAT, imp = self, "generation cancelled");
                return Err(gst::FlowError::Flushing);
            }
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
        let indices: Vec<usize> = output.record.generated.iter().flat_map(Clone::clone).collect();
        let new_frames: Vec<_> = indices.iter().map(|&index| &output.video.frames[index]).collect();
        let buffers = memory.to_buffers(&new_frames, info).map_err(convert_failed)?;
        Ok(indices
            .into_iter()
            .zip(buffers)
            .map(|(index, mut buffer)| {
                mark_generated(buffer.make_mut(), &record);
                (index, buffer)
            })
            .collect())
    }

    fn mask_pad(&self) -> Option<gst::Pad> {
        lock(&self.mask_pad).clone()
    }

    /// The masks of a replace-background window's frames from the mask pad, waiting for them.
    fn masks_for(&self, clip: &[gst::Buffer], job: &Job, info: &VideoInfo) -> Result<Vec<Vec<u8>>, gst::FlowError> {
        let linked = self.mask_pad().is_some_and(|pad| pad.is_linked());
        let times: Option<Vec<_>> = clip
            .iter()
            .map(|buffer| {
                let middle = buffer.duration().unwrap_or(job.frame_duration) / 2;
                job.segment.to_running_time(buffer.pts()? + middle)
            })
            .collect();
        let result = match (linked, times) {
            (false, _) => Err(MaskError::NotLinked),
            (true, None) => Err(MaskError::Untimed),
            (true, Some(times)) => self.masks.masks_for(&times, (info.width(), info.height()), &self.cancel),
        };
        result.map_err(|e| match e {
            MaskError::Cancelled => gst::FlowError::Flushing,
            MaskError::Size { .. } => {
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{e}"));
                gst::FlowError::NotNegotiated
            }
            e => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{e}"));
                gst::FlowError::Error
            }
        })
    }

    fn mask_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        match self.masks.push(buffer) {
            Ok(()) => Ok(gst::FlowSuccess::Ok),
            Err(MaskError::Flushing) => Err(gst::FlowError::Flushing),
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                Err(gst::FlowError::Error)
            }
        }
    }

    /// The mask pad's events stay with the mask stream: none goes downstream.
    fn mask_event(&self, event: gst::Event) -> bool {
        use gst::EventView;
        match event.view() {
            EventView::FlushStart(_) => self.masks.stop(),
            EventView::FlushStop(_) => self.masks.start(),
            EventView::Caps(caps) => match VideoInfo::from_caps(caps.caps()) {
                Ok(info) => self.masks.set_caps(info),
                Err(_) => {
                    gst::element_imp_error!(self, gst::CoreError::Negotiation, ("Invalid mask caps {}", caps.caps()));
                    return false;
                }
            },
            EventView::Segment(segment) => match segment.segment().clone().downcast::<gst::ClockTime>() {
                Ok(segment) => self.masks.set_segment(segment),
                Err(_) => {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("Only time segments are supported on the mask pad"));
                    return false;
                }
            },
            EventView::Eos(_) => self.masks.end(),
            _ => {}
        }
        true
    }

    fn mask_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view() {
            // The template's grey formats, at any size (the size is checked against the video's).
            gst::QueryView::Caps(_) | gst::QueryView::AcceptCaps(_) => gst::Pad::query_default(pad, Some(&*self.obj()), query),
            _ => false,
        }
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling event {event:?}");
        match event.view() {
            EventView::FlushStart(_) => {
                self.cancel.store(true, Ordering::SeqCst);
                self.masks.wake();
                self.srcpad.push_event(event)
            }
            EventView::FlushStop(_) => {
                lock(&self.state).reset_stream();
                self.masks.video_ended(false);
                self.cancel.store(false, Ordering::SeqCst);
                self.srcpad.push_event(event)
            }
            EventView::Caps(caps) => {
                let Ok(info) = VideoInfo::from_caps(caps.caps()) else {
                    gst::element_imp_error!(self, gst::CoreError::Negotiation, ("Invalid caps {}", caps.caps()));
                    return false;
                };
                // Repeated caps (as `concat` sends for each piece) change nothing: keep what is held.
                if lock(&self.state).info.as_ref() == Some(&info) {
                    return self.forward_in_order(event);
                }
                if self.drain(false).is_err() {
                    return false;
                }
                let mut state = lock(&self.state);
                if state.mode == Mode::ReplaceBackground
                    && self.mask_pad().is_none()
                    && !frames::ALPHA_FORMATS.contains(&info.format())
                {
                    drop(state);
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        (
                            "replace-background without a mask pad takes its mask from the alpha channel: {:?} has none (use RGBA or BGRA, or link a grey mask stream to the mask pad)",
                            info.format()
                        )
                    );
                    return false;
                }
                let memory = match self.memory_for(caps.caps(), state.mode) {
                    Ok(memory) => memory,
                    Err(reason) => {
                        drop(state);
                        gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{reason}"));
                        return false;
                    }
                };
                // Frames of another format cannot serve as context for the new ones.
                state.reset_stream();
                state.info = Some(info);
                state.memory = memory;
                drop(state);
                self.update_latency();
                self.srcpad.push_event(event)
            }
            EventView::Segment(segment) => {
                if self.drain(false).is_err() {
                    return false;
                }
                let Ok(segment) = segment.segment().clone().downcast::<gst::ClockTime>() else {
                    gst::element_imp_error!(self, gst::StreamError::Format, ("Only time segments are supported"));
                    return false;
                };
                let mut state = lock(&self.state);
                if segment.rate() < 0.0 && matches!(state.mode, Mode::ExtendForward | Mode::ExtendBackward | Mode::Insert) {
                    drop(state);
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::NotImplemented,
                        ("Extend and insert modes cannot run in reverse playback (segment rate {}): play forward", segment.rate())
                    );
                    return false;
                }
                state.segment = segment;
                // A new segment after frames (as `concat` makes) is a boundary between pieces.
                if state.mode == Mode::Insert && !state.recent.is_empty() {
                    state.collecting = true;
                }
                let output = state.output_segment();
                let extended = output != state.segment;
                drop(state);
                // The rate may have changed the running time held frames take.
                self.update_latency();
                if extended {
                    self.srcpad.push_event(gst::event::Segment::builder(&output).seqnum(event.seqnum()).build())
                } else {
                    self.srcpad.push_event(event)
                }
            }
            EventView::Gap(_) => {
                let mut state = lock(&self.state);
                if state.mode == Mode::Insert {
                    if state.collecting && state.held_frames() > 0 {
                        drop(state);
                        if self.drain(false).is_err() {
                            return false;
                        }
                        state = lock(&self.state);
                    }
                    if !state.recent.is_empty() {
                        state.collecting = true;
                        state.held.push_back(Held::Event(event));
                        return true;
                    }
                }
                drop(state);
                self.drain(false).is_ok() && self.srcpad.push_event(event)
            }
            EventView::Eos(_) => {
                let drained = self.drain(true).is_ok();
                self.masks.video_ended(true);
                drained && self.srcpad.push_event(event)
            }
            _ if event.is_serialized() => self.forward_in_order(event),
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    /// Pushes a serialized event now, or queues it behind the held frames it must not overtake.
    fn forward_in_order(&self, event: gst::Event) -> bool {
        let mut state = lock(&self.state);
        if state.held.is_empty() {
            drop(state);
            self.srcpad.push_event(event)
        } else {
            state.held.push_back(Held::Event(event));
            true
        }
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Caps(_) = query.view_mut() {
            let answered = gst::Pad::query_default(pad, Some(&*self.obj()), query);
            if let gst::QueryViewMut::Caps(q) = query.view_mut()
                && let Some(caps) = q.result_owned()
            {
                let mut caps = self.usable_caps(caps);
                if lock(&self.settings).mode == Mode::ReplaceBackground && self.mask_pad().is_none() {
                    // The mask comes from the alpha channel: offer only formats that have one.
                    caps = caps.intersect_with_mode(&frames::element_caps(&frames::ALPHA_FORMATS), gst::CapsIntersectMode::First);
                }
                q.set_result(&caps);
            }
            return answered;
        }
        self.answer_context_query(query) || gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    /// Leaves out CUDA memory when the mode touches frames and the model's GPU is not shared.
    fn usable_caps(&self, caps: gst::Caps) -> gst::Caps {
        if lock(&self.settings).mode == Mode::Passthrough { caps } else { self.gpu.usable_caps(caps) }
    }

    fn answer_context_query(&self, query: &mut gst::QueryRef) -> bool {
        self.gpu.answer_context_query(self.obj().upcast_ref(), query)
    }

    /// How frames of `caps` are read and written; passthrough never touches them.
    fn memory_for(&self, caps: &gst::CapsRef, mode: Mode) -> Result<FrameMemory, String> {
        if mode == Mode::Passthrough { Ok(FrameMemory::System) } else { self.gpu.memory_for(caps) }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Caps(_) = query.view_mut() {
            let answered = gst::Pad::query_default(pad, Some(&*self.obj()), query);
            if let gst::QueryViewMut::Caps(q) = query.view_mut()
                && let Some(caps) = q.result_owned()
            {
                q.set_result(&self.usable_caps(caps));
            }
            return answered;
        }
        if self.answer_context_query(query) {
            return true;
        }
        if let gst::QueryViewMut::Duration(q) = query.view_mut()
            && q.format() == gst::Format::Time
        {
            let mut upstream = gst::query::Duration::new(gst::Format::Time);
            if !self.sinkpad.peer_query(&mut upstream) {
                return false;
            }
            match upstream.result() {
                gst::GenericFormattedValue::Time(Some(duration)) => q.set(duration + lock(&self.state).extension()),
                unknown => q.set(unknown),
            }
            return true;
        }
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let mut upstream = gst::query::Latency::new();
            if !self.sinkpad.peer_query(&mut upstream) {
                return false;
            }
            let (live, min, max) = upstream.result();
            let ours = self.own_latency();
            gst::debug!(CAT, imp = self, "latency: upstream {min} - {max:?}, ours {ours}");
            q.set(live, min + ours, max.map(|max| max + ours));
            return true;
        }
        gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    /// The running time held frames take at the segment's rate + the processing budget, for
    /// modes that hold frames.
    fn own_latency(&self) -> gst::ClockTime {
        let settings = lock(&self.settings);
        let (held, budget) = (settings.held_frames(), settings.processing_latency);
        drop(settings);
        if held == 0 {
            return gst::ClockTime::ZERO;
        }
        let state = lock(&self.state);
        state.running_span(state.frame_duration() * held) + budget
    }

    /// Posts a Latency message when our latency changed since the last one.
    fn update_latency(&self) {
        let latency = self.own_latency();
        let mut state = lock(&self.state);
        if state.info.is_none() || state.posted_latency == Some(latency) {
            return;
        }
        state.posted_latency = Some(latency);
        drop(state);
        let _ = self.obj().post_message(gst::message::Latency::builder().src(&*self.obj()).build());
    }
}

fn stamp_generated(buffer: &mut gst::Buffer, pts: gst::ClockTime, duration: gst::ClockTime, info: Option<&VideoInfo>) {
    stamp(buffer.make_mut(), pts, duration, info.map(|i| i.fps()));
}

#[glib::object_subclass]
impl ObjectSubclass for Soragen {
    const NAME: &'static str = "GstSoragen";
    type Type = super::Soragen;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|_pad, parent, buffer| {
                Soragen::catch_panic_pad_function(parent, || Err(gst::FlowError::Error), |this| this.chain(buffer))
            })
            .event_function(|pad, parent, event| {
                Soragen::catch_panic_pad_function(parent, || false, |this| this.sink_event(pad, event))
            })
            .query_function(|pad, parent, query| {
                Soragen::catch_panic_pad_function(parent, || false, |this| this.sink_query(pad, query))
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .query_function(|pad, parent, query| {
                Soragen::catch_panic_pad_function(parent, || false, |this| this.src_query(pad, query))
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        Self {
            sinkpad,
            srcpad,
            mask_pad: Mutex::default(),
            masks: MaskStream::default(),
            gpu: SharedGpu::default(),
            settings: Mutex::default(),
            state: Mutex::default(),
            cancel: AtomicBool::new(false),
        }
    }
}

impl ObjectImpl for Soragen {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let defaults = Settings::default();
            let mut properties = GenerationSettings::properties();
            properties.extend([
                glib::ParamSpecEnum::builder_with_default("mode", defaults.mode)
                    .nick("Mode")
                    .blurb("What to generate")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("frames")
                    .nick("Frames")
                    .blurb("Frames to generate per extension or insert; window length for replace-background")
                    .minimum(1)
                    .maximum(1000)
                    .default_value(defaults.frames)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("context-frames")
                    .nick("Context frames")
                    .blurb("Source frames next to a cut that condition an extension or insert (held back by extend-backward and insert)")
                    .minimum(1)
                    .maximum(256)
                    .default_value(defaults.context_frames)
                    .mutable_ready()
                    .build(),
                gst::ParamSpecArray::builder("insert-at")
                    .nick("Insert at")
                    .blurb("Insert mode: also insert before the first frame at or after each of these PTS (ns), e.g. \"<(guint64)2000000000>\"")
                    .element_spec(&glib::ParamSpecUInt64::builder("insert-at-time").nick("Time").blurb("PTS in ns").build())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("processing-latency")
                    .nick("Processing latency")
                    .blurb("Time budget (ns) one generation may take, added to the reported latency of modes that hold frames")
                    .maximum(u64::MAX - 1)
                    .default_value(defaults.processing_latency.nseconds())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoolean::builder("color-match")
                    .nick("Color match")
                    .blurb("Match colour and brightness of generated frames to the frames they continue")
                    .default_value(defaults.color_match)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("mask-dilation")
                    .nick("Mask dilation")
                    .blurb("Replace-background: grow the background mask by this many pixels")
                    .maximum(256)
                    .default_value(defaults.mask_dilation)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("mask-feather")
                    .nick("Mask feather")
                    .blurb("Replace-background: soften the composite edge over this many pixels")
                    .maximum(256)
                    .default_value(defaults.mask_feather)
                    .mutable_playing()
                    .build(),
            ]);
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
            "mode" => settings.mode = value.get().expect("type checked upstream"),
            "frames" => settings.frames = value.get().expect("type checked upstream"),
            "context-frames" => settings.context_frames = value.get().expect("type checked upstream"),
            "insert-at" => {
                let times = value.get::<gst::Array>().expect("type checked upstream");
                settings.insert_at = times.iter().filter_map(|t| t.get::<u64>().ok()).map(gst::ClockTime::from_nseconds).collect();
                settings.insert_at.sort();
            }
            "processing-latency" => {
                settings.processing_latency = gst::ClockTime::from_nseconds(value.get().expect("type checked upstream"))
            }
            "color-match" => settings.color_match = value.get().expect("type checked upstream"),
            "mask-dilation" => settings.mask_dilation = value.get().expect("type checked upstream"),
            "mask-feather" => settings.mask_feather = value.get().expect("type checked upstream"),
            name => unreachable!("unknown property {name}"),
        }
        drop(settings);
        if matches!(pspec.name(), "frames" | "context-frames" | "processing-latency" | "mode") {
            self.update_latency();
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        if let Some(value) = settings.generation.property(pspec.name()) {
            return value;
        }
        match pspec.name() {
            "mode" => settings.mode.to_value(),
            "frames" => settings.frames.to_value(),
            "context-frames" => settings.context_frames.to_value(),
            "insert-at" => gst::Array::new(settings.insert_at.iter().map(|t| t.nseconds())).to_value(),
            "processing-latency" => settings.processing_latency.nseconds().to_value(),
            "color-match" => settings.color_match.to_value(),
            "mask-dilation" => settings.mask_dilation.to_value(),
            "mask-feather" => settings.mask_feather.to_value(),
            name => unreachable!("unknown property {name}"),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
    }
}

impl GstObjectImpl for Soragen {}

impl ElementImpl for Soragen {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Soragen generative video",
                "Filter/Effect/Video",
                "Extends a stream forward or backward, fills boundaries between pieces, or replaces the background with frames generated by a Wan2.1-VACE model",
                "Soragen developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = frames::element_caps(&frames::FORMATS);
            vec![
                gst::PadTemplate::new("src", gst::PadDirection::Src, gst::PadPresence::Always, &caps).unwrap(),
                gst::PadTemplate::new("sink", gst::PadDirection::Sink, gst::PadPresence::Always, &caps).unwrap(),
                // Replace-background: white = background, one mask per video frame by running time.
                gst::PadTemplate::new("mask", gst::PadDirection::Sink, gst::PadPresence::Request, &frames::caps(&mask::FORMATS))
                    .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(&self, transition: gst::StateChange) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::NullToReady => {
                let settings = lock(&self.settings).clone();
                // A device that does not open is reported when the model loads.
                if settings.mode != Mode::Passthrough
                    && let Ok(device) = settings.generation.open_device()
                {
                    self.gpu.share(self.obj().upcast_ref(), &device);
                }
            }
            gst::StateChange::ReadyToPaused => {
                let settings = lock(&self.settings).clone();
                if settings.mode != Mode::ReplaceBackground && self.mask_pad().is_some() {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Pad,
                        ("The mask pad serves only mode=replace-background: release it or change the mode")
                    );
                    return Err(gst::StateChangeError);
                }
                let model = if settings.mode == Mode::Passthrough {
                    None
                } else {
                    match settings.generation.load_model() {
                        Ok(model) => Some(model),
                        Err(message) => {
                            self.post_error_message(message);
                            return Err(gst::StateChangeError);
                        }
                    }
                };
                // Shared already, unless the device property changed in READY.
                if let Some(model) = &model {
                    self.gpu.share(self.obj().upcast_ref(), &model.device);
                }
                *lock(&self.state) = State {
                    mode: settings.mode,
                    frames: settings.frames as u64,
                    context_frames: settings.context_frames as usize,
                    insert_at: settings.insert_at,
                    model,
                    ..State::default()
                };
                self.cancel.store(false, Ordering::SeqCst);
                self.masks.start();
            }
            // Stops a running generation (and waits for masks) so that deactivating the pads
            // does not wait for them.
            gst::StateChange::PausedToReady => {
                self.cancel.store(true, Ordering::SeqCst);
                self.masks.stop();
            }
            _ => {}
        }
        let success = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::PausedToReady => *lock(&self.state) = State::default(),
            gst::StateChange::ReadyToNull => self.gpu.stop(),
            _ => {}
        }
        Ok(success)
    }

    fn request_new_pad(&self, template: &gst::PadTemplate, _name: Option<&str>, _caps: Option<&gst::Caps>) -> Option<gst::Pad> {
        if template.name_template() != "mask" || self.mask_pad().is_some() {
            gst::warning!(CAT, imp = self, "there is one mask pad at most");
            return None;
        }
        let pad = gst::Pad::builder_from_template(template)
            .name("mask")
            .chain_function(|_pad, parent, buffer| {
                Soragen::catch_panic_pad_function(parent, || Err(gst::FlowError::Error), |this| this.mask_chain(buffer))
            })
            .event_function(|_pad, parent, event| {
                Soragen::catch_panic_pad_function(parent, || false, |this| this.mask_event(event))
            })
            .query_function(|pad, parent, query| {
                Soragen::catch_panic_pad_function(parent, || false, |this| this.mask_query(pad, query))
            })
            .build();
        self.obj().add_pad(&pad).ok()?;
        *lock(&self.mask_pad) = Some(pad.clone());
        Some(pad)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        self.masks.stop();
        let _ = pad.set_active(false);
        let _ = self.obj().remove_pad(pad);
        *lock(&self.mask_pad) = None;
    }
}

/// Running time where `buffer` ends.
fn running_end(
    segment: &gst::FormattedSegment<gst::ClockTime>,
    buffer: &gst::Buffer,
    frame_duration: gst::ClockTime,
) -> Option<gst::ClockTime> {
    segment.to_running_time(buffer.pts()? + buffer.duration().unwrap_or(frame_duration))
}
