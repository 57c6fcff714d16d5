//! The element holds frames only while a mode needs them as generation input (never in
//! passthrough or extend-forward) and keeps every event in order behind held frames. Everything
//! it sends downstream goes through a queue to a worker, the source pad's task (like `queue`'s):
//! generations run there, off the streaming thread, so upstream keeps feeding (a live source is
//! never held back by a generation) and a flush or a state change cancels a generation at its
//! next phase (text encoding, a chunk of the VAE encode, a denoising step, a latent frame of the
//! VAE decode, a frame of post-processing) and returns within that bound.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoInfo;
use soragen_core::model::WanVace;
use soragen_core::tasks::{
    TaskInputs, TaskKind, TaskParams, Window, next_whole_frame_window, run_task,
    whole_frame_windows,
};
use soragen_core::video::Frame;

use super::Mode;
use super::mask::{self, MaskError, MaskStream};
use super::reference::{ReferenceError, ReferencePads};
use crate::frames::{self, FrameMemory, SharedGpu};
use crate::generation::{
    BusProgress, FrameGrid, GeneratedBy, GenerationSettings, frame_grid, mark_generated,
    refused_while_running, stamp,
};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "soragen",
        gst::DebugColorFlags::empty(),
        Some("Soragen generative video"),
    )
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
    /// Reference images (`reference`), read at READY -> PAUSED.
    references: Vec<std::path::PathBuf>,
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
            references: Vec::new(),
        }
    }
}

impl Settings {
    /// Frames a mode holds back before it can generate.
    fn held_frames(&self) -> u64 {
        match self.mode {
            Mode::Passthrough | Mode::ExtendForward => 0,
            Mode::ExtendBackward | Mode::Insert => self.context_frames as u64,
            // A model window, and one frame to know the window is not the stream's last.
            Mode::ReplaceBackground => self.generation.window_frames as u64 + 1,
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
    Before {
        start: gst::ClockTime,
        lead: Vec<gst::Event>,
    },
    /// After the stream's last frame (extend-forward).
    After { start: gst::ClockTime },
    /// In place of the held frames, one for one (replace-background).
    Replace,
}

/// One generation and what to push around it, taken out of the state so that it runs unlocked.
struct Job {
    /// Matches the job with its generation's result.
    id: u64,
    /// None: nothing to generate, only held items to release.
    task: Option<(TaskKind, Vec<gst::Buffer>, Vec<gst::Buffer>)>,
    placement: Placement,
    held: VecDeque<Held>,
    /// Added to the PTS of held original frames.
    shift: gst::ClockTime,
    info: Option<VideoInfo>,
    model: Option<Arc<WanVace>>,
    frame_duration: gst::ClockTime,
    grid: FrameGrid,
    /// Replace-background: the core's model window of the stream this job runs, and how many
    /// there are (0: not known).
    window: Option<(Window, usize)>,
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
    /// Replace-background: the last model window planned, and the frames of the stream it is
    /// planned over so far (the core's windows, as the CLI runs them on the whole clip).
    window: Option<Window>,
    seen: usize,
    window_frames: usize,
    /// Running time where the last input frame (held or not) ends: jumps are measured from it.
    last_input_end: Option<gst::ClockTime>,
    /// Insert: why the next boundary cannot get frames (the pieces around it differ in size).
    unfillable: Option<String>,
    /// The latency of our own last Latency message.
    posted_latency: Option<gst::ClockTime>,
    /// The `reference` images, given to every generation.
    references: Arc<Vec<soragen_core::video::Video>>,
}

impl State {
    fn held_frames(&self) -> usize {
        self.held
            .iter()
            .filter(|h| matches!(h, Held::Buffer(_)))
            .count()
    }

    /// Frames next to a cut that a generation reads: the context frames, which the core picks
    /// 1/16 s apart at the stream's rate (more than `context-frames` above 16 fps), so that the
    /// element conditions on what the CLI and OpenFX do (`tasks::context_span`).
    fn context_span(&self) -> usize {
        let params = soragen_core::tasks::TaskParams {
            context_frames: self.context_frames,
            ..soragen_core::tasks::TaskParams::default()
        };
        let fps = self
            .fps()
            .map(|fps| (fps.numer() as u32, fps.denom() as u32));
        soragen_core::tasks::context_span(&params, fps)
    }

    /// The caps' frame rate, when they state one.
    fn fps(&self) -> Option<gst::Fraction> {
        self.info
            .as_ref()
            .map(VideoInfo::fps)
            .filter(|fps| fps.numer() > 0 && fps.denom() > 0)
    }

    /// The time of `frames` frames on the rational frame grid (rounded once), or the buffers'
    /// own duration times `frames` without a rate.
    fn frames_time(&self, frames: u64) -> gst::ClockTime {
        self.grid().span(frames)
    }

    fn grid(&self) -> FrameGrid {
        frame_grid(
            self.fps(),
            self.last_duration.unwrap_or(FALLBACK_FRAME_DURATION),
        )
    }

    /// One frame's duration (rounded): gap thresholds and buffers without a duration.
    fn frame_duration(&self) -> gst::ClockTime {
        self.frames_time(1)
    }

    /// Stream time (timestamps) that passes in `running` time at the segment's rate.
    fn timestamp_span(&self, running: gst::ClockTime) -> gst::ClockTime {
        gst::ClockTime::from_nseconds(
            (running.nseconds() as f64 * self.segment.rate().abs()) as u64,
        )
    }

    /// Running time that `span` of timestamps takes at the segment's rate.
    fn running_span(&self, span: gst::ClockTime) -> gst::ClockTime {
        gst::ClockTime::from_nseconds((span.nseconds() as f64 / self.segment.rate().abs()) as u64)
    }

    /// How much longer the output is than the input so far: the generated frames that move
    /// the stream (known in advance when extending; grows with each insert).
    fn extension(&self) -> gst::ClockTime {
        match self.mode {
            Mode::ExtendForward | Mode::ExtendBackward => self.frames_time(self.frames),
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
        self.last_input_end = None;
        self.unfillable = None;
        self.window = None;
        self.seen = 0;
    }

    /// New caps mid-stream (what was held is drained already): frames of another format cannot
    /// serve as context for the new ones, but the stream's timing goes on, so that a caps
    /// change neither restarts an extension nor moves timestamps back.
    fn new_caps(&mut self, info: &VideoInfo) {
        if let Some(old) = &self.info
            && (old.width(), old.height()) != (info.width(), info.height())
            && self.mode == Mode::Insert
            && !self.recent.is_empty()
        {
            self.unfillable = Some(format!(
                "the pieces around the boundary have different sizes ({}x{}, then {}x{}): insert needs pieces of one size",
                old.width(),
                old.height(),
                info.width(),
                info.height()
            ));
        }
        self.held.clear();
        self.recent.clear();
        self.collecting = false;
    }

    /// Notes a frame that goes through now; it may serve as context later.
    fn remember(&mut self, buffer: &gst::Buffer) {
        self.note_end(buffer);
        if matches!(self.mode, Mode::ExtendForward | Mode::Insert) {
            self.recent.push_back(buffer.clone());
            while self.recent.len() > self.context_span() {
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

    /// Insert: whether `buffer` starts a new piece (a jump in timestamps or an `insert-at`
    /// time); Err with the reason when it would but there is nothing before it to insert from.
    fn starts_piece(&mut self, buffer: &gst::Buffer) -> Result<bool, String> {
        let Some(pts) = buffer.pts() else {
            return Ok(false);
        };
        let mut listed = None;
        while let Some(&at) = self
            .insert_at
            .get(self.next_insert_at)
            .filter(|&&at| at <= pts)
        {
            self.next_insert_at += 1;
            listed = Some(at);
        }
        let jump = match (self.segment.to_running_time(pts), self.last_input_end) {
            (Some(start), Some(end)) => {
                self.timestamp_span(start.saturating_sub(end)) > self.frame_duration() / 2
            }
            _ => false,
        };
        self.last_input_end =
            running_end(&self.segment, buffer, self.frame_duration()).or(self.last_input_end);
        if !jump && listed.is_none() {
            return Ok(false);
        }
        if self.recent.is_empty() && !self.collecting {
            return match (listed, self.unfillable.take()) {
                (_, Some(reason)) => Err(reason),
                (Some(at), None) => Err(format!(
                    "insert-at {at} is at or before the first frame ({pts}): there are no frames before it to insert from"
                )),
                (None, None) => Ok(false),
            };
        }
        Ok(true)
    }

    /// Replace-background: the next of the core's model windows over the frames seen, with the
    /// held frames it makes (and the events among them) as a job; None while the next window
    /// needs frames not seen yet (`ended`: none will come).
    fn take_window(&mut self, ended: bool) -> Option<Job> {
        let params = TaskParams {
            window_frames: self.window_frames,
            context_frames: self.context_frames,
            ..TaskParams::default()
        };
        let temporal = self.model.as_ref()?.vae_temporal_factor();
        let window =
            next_whole_frame_window(self.window.as_ref(), self.seen, ended, &params, temporal)?;
        let mut taken = VecDeque::new();
        let mut buffers = Vec::new();
        while buffers.len() < window.new.len() {
            let item = self.held.pop_front()?;
            if let Held::Buffer(buffer) = &item {
                buffers.push(buffer.clone());
            }
            taken.push_back(item);
        }
        if let Some(last) = buffers.last() {
            self.note_end(last);
        }
        // How many windows the segment holds, when it has a stop.
        let count = match (self.segment.start(), self.segment.stop()) {
            (Some(start), Some(stop)) if stop > start => {
                let frames = (stop - start)
                    .nseconds()
                    .div_ceil(self.frame_duration().nseconds().max(1));
                whole_frame_windows(frames as usize, &params, temporal).len()
            }
            _ => 0,
        };
        let rest = std::mem::replace(&mut self.held, taken);
        let mut job = self.job(
            Some((TaskKind::ReplaceBackground, buffers, vec![])),
            Placement::Replace,
        );
        self.held = rest;
        job.window = Some((window.clone(), count.max(window.index + 1)));
        self.window = Some(window);
        Some(job)
    }

    fn job(
        &mut self,
        task: Option<(TaskKind, Vec<gst::Buffer>, Vec<gst::Buffer>)>,
        placement: Placement,
    ) -> Job {
        Job {
            id: 0,
            task,
            placement,
            held: std::mem::take(&mut self.held),
            shift: self.shift,
            info: self.info.clone(),
            model: self.model.clone(),
            frame_duration: self.frame_duration(),
            grid: self.grid(),
            window: None,
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
        let new_frames_span = self.frames_time(self.frames);
        if held_buffers.is_empty() {
            if self.mode == Mode::ExtendForward && at_eos && !self.recent.is_empty() {
                let start = self.last_end_pts? + self.shift;
                let clip = std::mem::take(&mut self.recent).into();
                return Some(self.job(
                    Some((TaskKind::ExtendForward { frames: count }, clip, vec![])),
                    Placement::After { start },
                ));
            }
            self.collecting = false;
            return (!self.held.is_empty()).then(|| self.job(None, Placement::Replace));
        }
        let first_pts = held_buffers[0].pts().unwrap_or(gst::ClockTime::ZERO);
        let gap = match (
            self.segment.to_running_time(first_pts),
            self.last_end_running_time,
        ) {
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
                    Some((
                        TaskKind::ExtendBackward { frames: count },
                        held_buffers,
                        vec![],
                    )),
                    Placement::Before {
                        start,
                        lead: vec![],
                    },
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
                    lead.push(
                        gst::event::Gap::builder(gap_start)
                            .duration(gap - new_frames_span)
                            .build(),
                    );
                }
                // The stream got longer: so does its segment.
                if self.shift != shift_before
                    && (self.segment.stop().is_some() || self.segment.duration().is_some())
                {
                    lead.push(gst::event::Segment::new(&self.output_segment()));
                }
                let previous = std::mem::take(&mut self.recent).into();
                let skip = held_buffers.len().saturating_sub(self.context_span());
                self.recent = held_buffers[skip..].iter().cloned().collect();
                Some(self.job(
                    Some((TaskKind::Insert { frames: count }, previous, held_buffers)),
                    Placement::Before { start, lead },
                ))
            }
            Mode::ReplaceBackground => {
                // What is held here is the stream's end (EOS, or an event that ends the
                // planning, such as new caps): the last windows; the next frame starts anew.
                let job = self.take_window(true);
                if self.held_frames() == 0 {
                    self.window = None;
                    self.seen = 0;
                }
                job
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
    /// Still images from the `reference_%u` request pads.
    reference_pads: ReferencePads,
    /// The model's GPU shared with the pipeline (from READY -> PAUSED), or why not.
    gpu: SharedGpu,
    settings: Mutex<Settings>,
    state: Mutex<State>,
    /// Set by FLUSH_START and PAUSED -> READY: a running generation (or a wait for masks) stops
    /// at its next phase.
    cancel: AtomicBool,
    /// What goes downstream, in order, to the worker (the source pad's task).
    queue: Mutex<Queue>,
    /// Signalled when the queue gets an item or a result, frees room, empties, or starts
    /// flushing.
    queue_changed: Condvar,
    /// The generator thread (READY -> PAUSED to PAUSED -> READY) and how to hand it work.
    generator: Mutex<Option<(mpsc::Sender<Generation>, std::thread::JoinHandle<()>)>>,
    /// Counts flushes and stops: a generation of an older epoch is abandoned.
    epoch: AtomicU64,
    next_job: AtomicU64,
    /// A generator thread that was told to stop (it ends at its generation's next phase).
    stopping: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// When the last flush or stop began: the log says how long a generation took to stop.
    cancelled_at: Mutex<Option<std::time::Instant>>,
    /// Replace-background: the last frames the generator made in the stream's last model
    /// window, which the next window reads first.
    last_window_frames: Mutex<Vec<Frame>>,
}

/// What the generator thread needs of a job. Generations start as soon as their input is
/// there, while the worker still pushes the frames before them (a sink holds each push back to
/// the frame's time): their result is waited for only when the worker reaches the job.
struct Generation {
    id: u64,
    epoch: u64,
    task: (TaskKind, Vec<gst::Buffer>, Vec<gst::Buffer>),
    info: VideoInfo,
    model: Arc<WanVace>,
    memory: FrameMemory,
    window: Option<(Window, usize)>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    frame_duration: gst::ClockTime,
}

type Generated = Result<Vec<(usize, gst::Buffer)>, gst::FlowError>;

/// What the streaming thread hands the worker, in stream order.
enum Item {
    Buffer(gst::Buffer),
    Event(gst::Event),
    /// A generation and the held items around it.
    Job(Box<Job>),
}

impl Item {
    /// Input buffers the item holds (what bounds the queue).
    fn buffers(&self) -> usize {
        match self {
            Item::Buffer(_) => 1,
            Item::Event(_) => 0,
            Item::Job(job) => job
                .held
                .iter()
                .filter(|h| matches!(h, Held::Buffer(_)))
                .count(),
        }
    }
}

struct Queue {
    items: VecDeque<Item>,
    /// Input buffers in `items` and in the item the worker handles: upstream waits while
    /// there are more than the limit.
    buffers: usize,
    /// The worker is handling an item.
    busy: bool,
    /// Flushing or stopped: nothing is queued, a waiting chain returns FLUSHING.
    flushing: bool,
    /// What the worker's last push (or generation) returned: errors go back upstream.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// Finished generations by job id, until the worker reaches their job.
    results: HashMap<u64, Generated>,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            items: VecDeque::new(),
            buffers: 0,
            busy: false,
            flushing: true,
            flow: Ok(gst::FlowSuccess::Ok),
            results: HashMap::new(),
        }
    }
}

/// Input buffers the queue takes beyond what a mode holds and generates: upstream runs ahead of
/// the worker by this much while a generation runs.
const QUEUE_SLACK: usize = 16;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Output PTS of an original frame once generated frames were placed before it: on the frame
/// grid when the frame was (a sum of two rounded grid times can be 1 ns off it).
fn shifted(mut buffer: gst::Buffer, shift: gst::ClockTime, grid: &FrameGrid) -> gst::Buffer {
    if !shift.is_zero() {
        let on_grid =
            |time: gst::ClockTime| match (grid.frame_at(time), grid.frame_at(time + shift)) {
                (Some(_), Some(frame)) => grid.span(frame),
                _ => time + shift,
            };
        // Only the buffer's metadata is copied (when shared): the memory stays the same.
        let buffer = buffer.make_mut();
        buffer.set_pts(buffer.pts().map(on_grid));
        buffer.set_dts(buffer.dts().map(on_grid));
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
        lock(&self.queue).flow?;
        if buffer.duration().is_some() {
            state.last_duration = buffer.duration();
        }
        let hold = match state.mode {
            Mode::Passthrough | Mode::ExtendForward => false,
            Mode::ExtendBackward => !state.extended,
            Mode::Insert => match state.starts_piece(&buffer) {
                // A boundary while the frames after the previous one are held (closer than
                // context-frames): the previous insert takes the frames up to here as its
                // second piece and its frames become this one's context.
                Ok(true) if state.collecting && state.held_frames() > 0 => {
                    let limit = self.queue_limit(&state);
                    let job = state.take_job(false);
                    state.collecting = true;
                    if let Some(job) = job {
                        drop(state);
                        self.enqueue(Item::Job(Box::new(job)), limit)?;
                        state = lock(&self.state);
                    }
                    true
                }
                Ok(boundary) => {
                    state.collecting |= boundary;
                    state.collecting
                }
                Err(reason) => {
                    self.warn_no_insert(&reason);
                    state.collecting
                }
            },
            Mode::ReplaceBackground => {
                if let Some(end) = running_end(&state.segment, &buffer, state.frame_duration()) {
                    self.masks.video_reached(end);
                }
                true
            }
        };
        let limit = self.queue_limit(&state);
        if !hold {
            state.remember(&buffer);
            let buffer = shifted(buffer, state.shift, &state.grid());
            drop(state);
            return self.enqueue(Item::Buffer(buffer), limit);
        }
        state.held.push_back(Held::Buffer(buffer));
        if state.mode == Mode::ReplaceBackground {
            state.seen += 1;
            while let Some(job) = state.take_window(false) {
                drop(state);
                self.enqueue(Item::Job(Box::new(job)), limit)?;
                state = lock(&self.state);
            }
            return Ok(gst::FlowSuccess::Ok);
        }
        if state.held_frames() < state.context_span() {
            return Ok(gst::FlowSuccess::Ok);
        }
        let job = state.take_job(false);
        drop(state);
        job.map_or(Ok(gst::FlowSuccess::Ok), |job| {
            self.enqueue(Item::Job(Box::new(job)), limit)
        })
    }

    /// How many input buffers the queue takes: what a generation holds and makes, what the
    /// stream was pushed back by (a live source keeps its pace while the output runs that much
    /// later), and some slack.
    fn queue_limit(&self, state: &State) -> usize {
        let duration = state.frame_duration().nseconds().max(1);
        let behind = (state.shift.nseconds() / duration) as usize;
        let made = match state.mode {
            Mode::ReplaceBackground => state.window_frames,
            _ => state.frames as usize + state.context_frames,
        };
        made * 2 + behind + QUEUE_SLACK
    }

    /// Queues an item for the worker; waits while the queue holds more than `limit` buffers.
    /// Errors: the worker's last flow error, or FLUSHING.
    fn enqueue(&self, mut item: Item, limit: usize) -> Result<gst::FlowSuccess, gst::FlowError> {
        let count = item.buffers();
        if let Item::Job(job) = &mut item {
            self.start_generation(job)?;
        }
        let mut queue = lock(&self.queue);
        loop {
            if queue.flushing {
                return Err(gst::FlowError::Flushing);
            }
            queue.flow?;
            if count == 0 || queue.buffers < limit {
                break;
            }
            queue = self
                .queue_changed
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
        queue.buffers += count;
        queue.items.push_back(item);
        self.queue_changed.notify_all();
        Ok(gst::FlowSuccess::Ok)
    }

    /// Queues a serialized event behind what is queued (false when flushing or failed).
    fn enqueue_event(&self, event: gst::Event) -> bool {
        self.enqueue(Item::Event(event), usize::MAX).is_ok()
    }

    /// Waits until the worker has sent everything queued (a drain or allocation query must
    /// not overtake it). False when flushing.
    fn wait_until_sent(&self) -> bool {
        let mut queue = lock(&self.queue);
        while !queue.flushing && (queue.busy || !queue.items.is_empty()) {
            queue = self
                .queue_changed
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
        !queue.flushing
    }

    /// One turn of the worker: the next item, pushed (a job generated first). On a flow error
    /// (or flushing) the task pauses and the error goes upstream at the next chain.
    fn worker(&self) {
        let item = {
            let mut queue = lock(&self.queue);
            loop {
                if queue.flushing {
                    drop(queue);
                    let _ = self.srcpad.pause_task();
                    return;
                }
                if let Some(item) = queue.items.pop_front() {
                    queue.busy = true;
                    break item;
                }
                queue = self
                    .queue_changed
                    .wait(queue)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        let count = item.buffers();
        let result = match item {
            Item::Buffer(buffer) => self.srcpad.push(buffer),
            Item::Event(event) => {
                let kind = event.type_();
                // Generations before the EOS waited for their masks; later masks are not needed.
                if kind == gst::EventType::Eos {
                    self.masks.video_ended(true);
                }
                if !self.srcpad.push_event(event) {
                    gst::debug!(CAT, imp = self, "downstream refused {kind:?}");
                }
                Ok(gst::FlowSuccess::Ok)
            }
            Item::Job(job) => self.run(*job),
        };
        let mut queue = lock(&self.queue);
        queue.busy = false;
        queue.buffers -= count.min(queue.buffers);
        if let Err(error) = result {
            gst::debug!(CAT, imp = self, "worker pausing: {error:?}");
            if !queue.flushing {
                queue.flow = Err(error);
            }
            queue.items.clear();
            queue.buffers = 0;
            self.queue_changed.notify_all();
            drop(queue);
            let _ = self.srcpad.pause_task();
            return;
        }
        self.queue_changed.notify_all();
    }

    /// Starts the worker on the source pad (activation, FLUSH_STOP).
    fn start_worker(&self) -> Result<(), glib::BoolError> {
        {
            let mut queue = lock(&self.queue);
            queue.items.clear();
            queue.buffers = 0;
            queue.flushing = false;
            queue.flow = Ok(gst::FlowSuccess::Ok);
        }
        let element = self.obj().downgrade();
        self.srcpad.start_task(move || match element.upgrade() {
            Some(element) => element.imp().worker(),
            None => std::thread::yield_now(),
        })
    }

    /// Stops whatever the worker does (a generation at its next phase) and empties the queue.
    fn set_flushing(&self) {
        *lock(&self.cancelled_at) = Some(std::time::Instant::now());
        self.cancel.store(true, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut queue = lock(&self.queue);
        queue.flushing = true;
        queue.items.clear();
        queue.buffers = 0;
        queue.results.clear();
        self.queue_changed.notify_all();
        drop(queue);
        self.masks.wake();
        self.reference_pads.wake();
    }

    fn src_activate_mode(
        &self,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "only push mode"));
        }
        if active {
            self.cancel.store(false, Ordering::SeqCst);
            self.start_worker()
                .map_err(|e| gst::loggable_error!(CAT, "cannot start the worker: {e}"))
        } else {
            self.set_flushing();
            self.srcpad
                .stop_task()
                .map_err(|e| gst::loggable_error!(CAT, "cannot stop the worker: {e}"))
        }
    }

    /// Hands a job's generation to the generator thread, which starts it at once.
    fn start_generation(&self, job: &mut Job) -> Result<(), gst::FlowError> {
        let Some((kind, clip, next)) = &job.task else {
            return Ok(());
        };
        let (Some(info), Some(model)) = (&job.info, &job.model) else {
            return Err(gst::FlowError::NotNegotiated);
        };
        job.id = self.next_job.fetch_add(1, Ordering::SeqCst);
        let generation = Generation {
            id: job.id,
            epoch: self.epoch.load(Ordering::SeqCst),
            task: (kind.clone(), clip.clone(), next.clone()),
            info: info.clone(),
            model: model.clone(),
            memory: job.memory.clone(),
            window: job.window.clone(),
            segment: job.segment.clone(),
            frame_duration: job.frame_duration,
        };
        let generator = lock(&self.generator);
        let sent = generator
            .as_ref()
            .is_some_and(|(sender, _)| sender.send(generation).is_ok());
        if sent {
            Ok(())
        } else {
            Err(gst::FlowError::Flushing)
        }
    }

    /// Starts the generator thread (READY -> PAUSED).
    fn start_generator(&self) {
        if let Some(previous) = lock(&self.stopping).take() {
            let _ = previous.join();
        }
        let (sender, receiver) = mpsc::channel::<Generation>();
        let element = self.obj().clone();
        let thread = std::thread::Builder::new()
            .name("soragen-generate".into())
            .spawn(move || {
                // Ends when the sender is dropped (PAUSED -> READY).
                for generation in receiver {
                    let imp = element.imp();
                    let current = || imp.epoch.load(Ordering::SeqCst) == generation.epoch;
                    if !current() {
                        continue;
                    }
                    let result = imp.generate(&generation);
                    let mut queue = lock(&imp.queue);
                    if current() {
                        queue.results.insert(generation.id, result);
                    }
                    imp.queue_changed.notify_all();
                }
            })
            .expect("a thread for the generator");
        *lock(&self.generator) = Some((sender, thread));
    }

    /// Stops the generator thread without waiting for it: its generation (cancelled already)
    /// stops at its next phase and the thread ends; the next start waits for that.
    fn stop_generator(&self) {
        let generator = lock(&self.generator).take();
        if let Some((sender, thread)) = generator {
            drop(sender);
            *lock(&self.stopping) = Some(thread);
        }
    }

    /// Queues whatever is held (and, at EOS, the extend-forward generation), before an event
    /// that must not overtake it.
    fn drain(&self, at_eos: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        let job = lock(&self.state).take_job(at_eos);
        job.map_or(Ok(gst::FlowSuccess::Ok), |job| {
            self.enqueue(Item::Job(Box::new(job)), usize::MAX)
        })
    }

    /// Runs a job's generation, then pushes its output in order (on the worker).
    fn run(&self, job: Job) -> Result<gst::FlowSuccess, gst::FlowError> {
        let generated = match &job.task {
            Some(_) => {
                let mut queue = lock(&self.queue);
                loop {
                    if queue.flushing {
                        return Err(gst::FlowError::Flushing);
                    }
                    if let Some(result) = queue.results.remove(&job.id) {
                        break result?;
                    }
                    queue = self
                        .queue_changed
                        .wait(queue)
                        .unwrap_or_else(|e| e.into_inner());
                }
            }
            None => vec![],
        };
        let info = job.info.as_ref();
        let mut originals = job.held.into_iter().map(|item| match item {
            Held::Buffer(buffer) => Held::Buffer(shifted(buffer, job.shift, &job.grid)),
            event => event,
        });
        let mut output: Vec<Held> = vec![];
        match job.placement {
            Placement::Before { start, lead } => {
                output.extend(lead.into_iter().map(Held::Event));
                output.extend(
                    generated
                        .into_iter()
                        .zip(0u64..)
                        .map(|((_, mut buffer), i)| {
                            let (pts, duration) = job.grid.frame(start, i);
                            stamp_generated(&mut buffer, pts, duration, info);
                            Held::Buffer(buffer)
                        }),
                );
                output.extend(originals);
            }
            Placement::After { start } => {
                output.extend(originals);
                output.extend(
                    generated
                        .into_iter()
                        .zip(0u64..)
                        .map(|((_, mut buffer), i)| {
                            let (pts, duration) = job.grid.frame(start, i);
                            stamp_generated(&mut buffer, pts, duration, info);
                            Held::Buffer(buffer)
                        }),
                );
            }
            Placement::Replace => {
                // Frames the task left alone (no background in them) go out untouched.
                let mut generated = generated.into_iter().peekable();
                let mut index = 0;
                for item in originals.by_ref() {
                    output.push(match item {
                        Held::Buffer(original) => {
                            let replacement =
                                generated
                                    .next_if(|(i, _)| *i == index)
                                    .map(|(_, mut buffer)| {
                                        let pts = original.pts().unwrap_or(gst::ClockTime::ZERO);
                                        let duration =
                                            original.duration().unwrap_or(job.frame_duration);
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
    fn generate(&self, generation: &Generation) -> Generated {
        let (kind, clip, next) = (
            &generation.task.0,
            &generation.task.1[..],
            &generation.task.2[..],
        );
        let (info, memory, model) = (&generation.info, &generation.memory, &*generation.model);
        // A flush, a stop, or a flush since this generation was asked for.
        let cancelled = || {
            self.cancel.load(Ordering::SeqCst)
                || self.epoch.load(Ordering::SeqCst) != generation.epoch
        };
        let mask = match kind {
            TaskKind::ReplaceBackground if self.mask_pad().is_some() => {
                Some(self.masks_for(clip, generation)?)
            }
            _ => None,
        };
        let settings = lock(&self.settings).clone();
        let convert_failed = |e: glib::BoolError| {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("Cannot convert frames: {e}")
            );
            gst::FlowError::Error
        };
        if cancelled() {
            return Err(gst::FlowError::Flushing);
        }
        // A model window after the first reads the last frames the window before made.
        let window = generation.window.as_ref();
        let previous = match window {
            Some((window, _)) if window.index > 0 => {
                let made = lock(&self.last_window_frames);
                made[made.len().saturating_sub(window.context.len())..].to_vec()
            }
            _ => Vec::new(),
        };
        let mut references = lock(&self.state).references.to_vec();
        references.extend(self.pad_references()?);
        let inputs = TaskInputs {
            clip: Some(memory.to_video(clip, info).map_err(convert_failed)?),
            next: (!next.is_empty())
                .then(|| memory.to_video(next, info))
                .transpose()
                .map_err(convert_failed)?,
            mask,
            references,
            previous,
        };
        let params = soragen_core::tasks::TaskParams {
            context_frames: settings.context_frames as usize,
            color_match: settings.color_match,
            mask_dilation: settings.mask_dilation as usize,
            mask_feather: settings.mask_feather as usize,
            seed: settings
                .generation
                .seed
                .wrapping_add(window.map_or(0, |(w, _)| w.index as u64)),
            ..settings.generation.task_params()
        };
        gst::debug!(
            CAT,
            imp = self,
            "generating {kind:?} from {} + {} frames",
            clip.len(),
            next.len()
        );
        let element = self.obj();
        let mut observer = BusProgress::with_cancel(element.upcast_ref(), cancelled);
        if let Some((window, count)) = window {
            observer = observer.in_stream_window(window.index as u32, *count as u32);
        }
        let output = match run_task(model, kind, &inputs, &params, &observer) {
            Ok(output) => output,
            Err(soragen_core::Error::Cancelled) => {
                let after = lock(&self.cancelled_at).map(|at| at.elapsed());
                gst::info!(
                    CAT,
                    imp = self,
                    "generation stopped {after:?} after the flush or stop"
                );
                return Err(gst::FlowError::Flushing);
            }
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("Generation failed: {e}"));
                return Err(gst::FlowError::Error);
            }
        };
        if window.is_some() {
            let frames = &output.video.frames;
            *lock(&self.last_window_frames) =
                frames[frames.len().saturating_sub(params.context_frames)..].to_vec();
        }
        let record = GeneratedBy {
            model: model.folder.display().to_string(),
            prompt: settings.generation.prompt.clone(),
            seed: settings.generation.seed,
            task: output.record.task.clone(),
        };
        let indices: Vec<usize> = output
            .record
            .generated
            .iter()
            .flat_map(Clone::clone)
            .collect();
        // Replaced backgrounds keep the source's own samples outside the generated region
        // (in system memory; CUDA frames are RGBA, where the conversion keeps them anyway).
        let source = inputs.clip.as_ref().filter(|_| {
            *kind == TaskKind::ReplaceBackground && matches!(memory, FrameMemory::System)
        });
        // Frame by frame, so that a flush or a state change stops the conversion too.
        let mut buffers = Vec::with_capacity(indices.len());
        for &index in &indices {
            if cancelled() {
                return Err(gst::FlowError::Flushing);
            }
            let frame = &output.video.frames[index];
            let mut converted = memory.to_buffers(&[frame], info).map_err(convert_failed)?;
            if let (Some(source), Some(buffer)) = (source, converted.first_mut()) {
                let changed: Vec<bool> = frame
                    .rgb
                    .chunks_exact(3)
                    .zip(source.frames[index].rgb.chunks_exact(3))
                    .map(|(a, b)| a != b)
                    .collect();
                *buffer = frames::keep_source_samples(&clip[index], buffer, &changed, info)
                    .map_err(convert_failed)?;
            }
            buffers.extend(converted);
        }
        Ok(indices
            .into_iter()
            .zip(buffers)
            .map(|(index, mut buffer)| {
                mark_generated(buffer.make_mut(), &record);
                (index, buffer)
            })
            .collect())
    }

    /// The reference pads' images, waiting for those still to come (a pad that is not linked
    /// or ended without one is an error).
    fn pad_references(&self) -> Result<Vec<soragen_core::video::Video>, gst::FlowError> {
        let unlinked = self
            .obj()
            .sink_pads()
            .into_iter()
            .find(|pad| pad.name().starts_with(REFERENCE_PAD_PREFIX) && !pad.is_linked());
        if let Some(pad) = unlinked {
            gst::element_imp_error!(
                self,
                gst::CoreError::Pad,
                (
                    "{} is not linked: link a still image to it or release it",
                    pad.name()
                )
            );
            return Err(gst::FlowError::Error);
        }
        match self.reference_pads.images(&self.cancel) {
            Ok(images) => Ok(images),
            Err(ReferenceError::Cancelled) => Err(gst::FlowError::Flushing),
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                Err(gst::FlowError::Error)
            }
        }
    }

    /// A reference pad's image; later buffers are dropped.
    fn reference_chain(
        &self,
        pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match self.reference_pads.push(&pad.name(), &buffer) {
            Ok(()) => Ok(gst::FlowSuccess::Ok),
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                Err(gst::FlowError::Error)
            }
        }
    }

    /// A reference pad's events stay with it: none goes downstream.
    fn reference_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(caps) => match VideoInfo::from_caps(caps.caps()) {
                Ok(info) => self.reference_pads.set_caps(&pad.name(), info),
                Err(_) => {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("Invalid reference caps {}", caps.caps())
                    );
                    return false;
                }
            },
            gst::EventView::Eos(_) => self.reference_pads.end(&pad.name()),
            _ => {}
        }
        true
    }

    fn mask_pad(&self) -> Option<gst::Pad> {
        lock(&self.mask_pad).clone()
    }

    /// The masks of a replace-background window's frames from the mask pad, waiting for them.
    fn masks_for(
        &self,
        clip: &[gst::Buffer],
        job: &Generation,
    ) -> Result<Vec<Vec<u8>>, gst::FlowError> {
        let info = &job.info;
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
            (true, Some(times)) => {
                self.masks
                    .masks_for(&times, (info.width(), info.height()), &self.cancel)
            }
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
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("Invalid mask caps {}", caps.caps())
                    );
                    return false;
                }
            },
            EventView::Segment(segment) => {
                match segment.segment().clone().downcast::<gst::ClockTime>() {
                    Ok(segment) => self.masks.set_segment(segment),
                    Err(_) => {
                        gst::element_imp_error!(
                            self,
                            gst::StreamError::Format,
                            ("Only time segments are supported on the mask pad")
                        );
                        return false;
                    }
                }
            }
            EventView::Eos(_) => self.masks.end(),
            _ => {}
        }
        true
    }

    fn mask_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view() {
            // The template's grey formats, at any size (the size is checked against the video's).
            gst::QueryView::Caps(_) | gst::QueryView::AcceptCaps(_) => {
                gst::Pad::query_default(pad, Some(&*self.obj()), query)
            }
            _ => false,
        }
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        gst::log!(CAT, obj = pad, "handling event {event:?}");
        match event.view() {
            EventView::FlushStart(_) => {
                self.set_flushing();
                let forwarded = self.srcpad.push_event(event);
                // Waits for the worker's turn to end: a generation stops at its next phase.
                let _ = self.srcpad.pause_task();
                forwarded
            }
            EventView::FlushStop(_) => {
                lock(&self.state).reset_stream();
                self.masks.video_ended(false);
                self.cancel.store(false, Ordering::SeqCst);
                let forwarded = self.srcpad.push_event(event);
                if self.srcpad.is_active() && self.start_worker().is_err() {
                    return false;
                }
                forwarded
            }
            _ if lock(&self.state).mode == Mode::Passthrough => {
                gst::Pad::event_default(pad, Some(&*self.obj()), event)
            }
            EventView::Caps(caps) => {
                let Ok(info) = VideoInfo::from_caps(caps.caps()) else {
                    gst::element_imp_error!(
                        self,
                        gst::CoreError::Negotiation,
                        ("Invalid caps {}", caps.caps())
                    );
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
                state.new_caps(&info);
                state.info = Some(info);
                state.memory = memory;
                drop(state);
                self.update_latency();
                self.enqueue_event(event)
            }
            EventView::Segment(segment) => {
                if self.drain(false).is_err() {
                    return false;
                }
                let Ok(segment) = segment.segment().clone().downcast::<gst::ClockTime>() else {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ("Only time segments are supported")
                    );
                    return false;
                };
                let mut state = lock(&self.state);
                if segment.rate() < 0.0
                    && matches!(
                        state.mode,
                        Mode::ExtendForward | Mode::ExtendBackward | Mode::Insert
                    )
                {
                    drop(state);
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::NotImplemented,
                        (
                            "Extend and insert modes cannot run in reverse playback (segment rate {}): play forward",
                            segment.rate()
                        )
                    );
                    return false;
                }
                state.segment = segment;
                // A new segment after frames (as `concat` makes) is a boundary between pieces.
                if state.mode == Mode::Insert {
                    if !state.recent.is_empty() {
                        state.collecting = true;
                    } else if let Some(reason) = state.unfillable.take() {
                        drop(state);
                        self.warn_no_insert(&reason);
                        state = lock(&self.state);
                    }
                }
                let output = state.output_segment();
                let extended = output != state.segment;
                drop(state);
                // The rate may have changed the running time held frames take.
                self.update_latency();
                if extended {
                    self.enqueue_event(
                        gst::event::Segment::builder(&output)
                            .seqnum(event.seqnum())
                            .build(),
                    )
                } else {
                    self.enqueue_event(event)
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
                self.drain(false).is_ok() && self.enqueue_event(event)
            }
            EventView::SegmentDone(_) => {
                // A segment seek's end: extend-forward appends here as at EOS.
                let drained = self.drain(true).is_ok();
                drained && self.enqueue_event(event)
            }
            EventView::Eos(_) => {
                let drained = self.drain(true).is_ok();
                drained && self.enqueue_event(event)
            }
            _ if event.is_serialized() => self.forward_in_order(event),
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    /// Warns that a boundary gets no inserted frames, and why.
    fn warn_no_insert(&self, reason: &str) {
        gst::element_imp_warning!(
            self,
            gst::StreamError::Failed,
            ("No frames inserted: {reason}")
        );
    }

    /// Queues a serialized event now, or behind the held frames it must not overtake.
    fn forward_in_order(&self, event: gst::Event) -> bool {
        let mut state = lock(&self.state);
        if state.held.is_empty() {
            drop(state);
            self.enqueue_event(event)
        } else {
            state.held.push_back(Held::Event(event));
            true
        }
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        // Serialized queries must not overtake what the worker has yet to send.
        if matches!(
            query.view(),
            gst::QueryView::Drain(_) | gst::QueryView::Allocation(_)
        ) && lock(&self.state).mode != Mode::Passthrough
            && !self.wait_until_sent()
        {
            return false;
        }
        if let gst::QueryViewMut::Caps(_) = query.view_mut() {
            let answered = gst::Pad::query_default(pad, Some(&*self.obj()), query);
            if let gst::QueryViewMut::Caps(q) = query.view_mut()
                && let Some(caps) = q.result_owned()
            {
                let mut caps = self.usable_caps(caps);
                if lock(&self.settings).mode == Mode::ReplaceBackground && self.mask_pad().is_none()
                {
                    // The mask comes from the alpha channel: offer only formats that have one.
                    caps = caps.intersect_with_mode(
                        &frames::element_caps(&frames::ALPHA_FORMATS),
                        gst::CapsIntersectMode::First,
                    );
                }
                q.set_result(&caps);
            }
            return answered;
        }
        self.answer_context_query(query) || gst::Pad::query_default(pad, Some(&*self.obj()), query)
    }

    /// Leaves out CUDA memory when the mode touches frames and the model's GPU is not shared.
    fn usable_caps(&self, caps: gst::Caps) -> gst::Caps {
        if lock(&self.settings).mode == Mode::Passthrough {
            caps
        } else {
            self.gpu.usable_caps(caps)
        }
    }

    fn answer_context_query(&self, query: &mut gst::QueryRef) -> bool {
        self.gpu
            .answer_context_query(self.obj().upcast_ref(), query)
    }

    /// How frames of `caps` are read and written; passthrough never touches them.
    fn memory_for(
        &self,
        caps: &gst::CapsRef,
        mode: Mode,
    ) -> Result<FrameMemory, frames::CudaFramesUnusable> {
        if mode == Mode::Passthrough {
            Ok(FrameMemory::System)
        } else {
            self.gpu.memory_for(caps)
        }
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
                gst::GenericFormattedValue::Time(Some(duration)) => {
                    q.set(duration + lock(&self.state).extension())
                }
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
            gst::debug!(
                CAT,
                imp = self,
                "latency: upstream {min} - {max:?}, ours {ours}"
            );
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
        // Once the rate is known the context spans more frames above 16 fps.
        let held = match state.mode {
            Mode::ExtendBackward | Mode::Insert if state.info.is_some() => {
                held.max(state.context_span() as u64)
            }
            _ => held,
        };
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
        let _ = self
            .obj()
            .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
    }
}

fn stamp_generated(
    buffer: &mut gst::Buffer,
    pts: gst::ClockTime,
    duration: gst::ClockTime,
    info: Option<&VideoInfo>,
) {
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
                Soragen::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.chain(buffer),
                )
            })
            .event_function(|pad, parent, event| {
                Soragen::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                Soragen::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_query(pad, query),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .activatemode_function(|_pad, parent, mode, active| {
                Soragen::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic activating the source pad")),
                    |this| this.src_activate_mode(mode, active),
                )
            })
            .query_function(|pad, parent, query| {
                Soragen::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_query(pad, query),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS | gst::PadFlags::PROXY_ALLOCATION)
            .build();
        Self {
            sinkpad,
            srcpad,
            mask_pad: Mutex::default(),
            masks: MaskStream::default(),
            reference_pads: ReferencePads::default(),
            gpu: SharedGpu::default(),
            settings: Mutex::default(),
            state: Mutex::default(),
            cancel: AtomicBool::new(false),
            queue: Mutex::default(),
            queue_changed: Condvar::new(),
            generator: Mutex::default(),
            epoch: AtomicU64::new(0),
            next_job: AtomicU64::new(0),
            stopping: Mutex::default(),
            cancelled_at: Mutex::default(),
            last_window_frames: Mutex::default(),
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
                    .blurb("Frames to generate per extension or insert (replace-background runs windows of window-frames)")
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
                crate::images::reference_property(),
            ]);
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
            "mode" => settings.mode = value.get().expect("type checked upstream"),
            "frames" => settings.frames = value.get().expect("type checked upstream"),
            "context-frames" => {
                settings.context_frames = value.get().expect("type checked upstream")
            }
            "insert-at" => {
                let times = value.get::<gst::Array>().expect("type checked upstream");
                settings.insert_at = times
                    .iter()
                    .filter_map(|t| t.get::<u64>().ok())
                    .map(gst::ClockTime::from_nseconds)
                    .collect();
                settings.insert_at.sort();
            }
            "processing-latency" => {
                settings.processing_latency =
                    gst::ClockTime::from_nseconds(value.get().expect("type checked upstream"))
            }
            "color-match" => settings.color_match = value.get().expect("type checked upstream"),
            "mask-dilation" => settings.mask_dilation = value.get().expect("type checked upstream"),
            "mask-feather" => settings.mask_feather = value.get().expect("type checked upstream"),
            "reference" => {
                settings.references = crate::images::parse_paths(
                    value
                        .get::<Option<String>>()
                        .expect("type checked upstream")
                        .as_deref(),
                )
            }
            name => unreachable!("unknown property {name}"),
        }
        drop(settings);
        if matches!(
            pspec.name(),
            "frames" | "context-frames" | "processing-latency" | "mode"
        ) {
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
            "insert-at" => {
                gst::Array::new(settings.insert_at.iter().map(|t| t.nseconds())).to_value()
            }
            "processing-latency" => settings.processing_latency.nseconds().to_value(),
            "color-match" => settings.color_match.to_value(),
            "mask-dilation" => settings.mask_dilation.to_value(),
            "mask-feather" => settings.mask_feather.to_value(),
            "reference" => crate::images::join_paths(&settings.references).to_value(),
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
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                // Replace-background: white = background, one mask per video frame by running time.
                gst::PadTemplate::new(
                    "mask",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &frames::caps(&mask::FORMATS),
                )
                .unwrap(),
                // One still image each, a reference for every generation (after `reference`'s).
                gst::PadTemplate::new(
                    "reference_%u",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &frames::caps(&frames::FORMATS),
                )
                .unwrap(),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
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
                let references = match crate::images::read("reference", &settings.references) {
                    Ok(references) => Arc::new(references),
                    Err(message) => {
                        self.post_error_message(message);
                        return Err(gst::StateChangeError);
                    }
                };
                *lock(&self.state) = State {
                    mode: settings.mode,
                    frames: settings.frames as u64,
                    context_frames: settings.context_frames as usize,
                    window_frames: settings.generation.window_frames as usize,
                    insert_at: settings.insert_at,
                    model,
                    references,
                    ..State::default()
                };
                self.cancel.store(false, Ordering::SeqCst);
                self.masks.start();
                self.reference_pads.restart();
                self.start_generator();
            }
            // Stops a running generation (and a wait for masks or for room in the queue) so
            // that deactivating the pads does not wait for them.
            gst::StateChange::PausedToReady => {
                self.set_flushing();
                self.masks.stop();
                self.stop_generator();
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

    fn request_new_pad(
        &self,
        template: &gst::PadTemplate,
        name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        if template.name_template().starts_with(REFERENCE_PAD_PREFIX) {
            return self.request_reference_pad(template, name);
        }
        if template.name_template() != "mask" || self.mask_pad().is_some() {
            gst::warning!(CAT, imp = self, "there is one mask pad at most");
            return None;
        }
        let pad = gst::Pad::builder_from_template(template)
            .name("mask")
            .chain_function(|_pad, parent, buffer| {
                Soragen::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.mask_chain(buffer),
                )
            })
            .event_function(|_pad, parent, event| {
                Soragen::catch_panic_pad_function(parent, || false, |this| this.mask_event(event))
            })
            .query_function(|pad, parent, query| {
                Soragen::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.mask_query(pad, query),
                )
            })
            .build();
        self.obj().add_pad(&pad).ok()?;
        *lock(&self.mask_pad) = Some(pad.clone());
        Some(pad)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        if pad.name().starts_with(REFERENCE_PAD_PREFIX) {
            let _ = pad.set_active(false);
            let _ = self.obj().remove_pad(pad);
            self.reference_pads.remove(&pad.name());
            return;
        }
        self.masks.stop();
        let _ = pad.set_active(false);
        let _ = self.obj().remove_pad(pad);
        *lock(&self.mask_pad) = None;
    }
}

/// What the names of reference request pads start with (`reference_0`, `reference_1`, ...).
const REFERENCE_PAD_PREFIX: &str = "reference_";

impl Soragen {
    /// A `reference_%u` pad: the name asked for, else the first free index.
    fn request_reference_pad(
        &self,
        template: &gst::PadTemplate,
        name: Option<&str>,
    ) -> Option<gst::Pad> {
        let taken = self.reference_pads.names();
        let name = match name {
            Some(name)
                if name
                    .strip_prefix(REFERENCE_PAD_PREFIX)?
                    .parse::<u32>()
                    .is_ok() =>
            {
                name.to_string()
            }
            Some(name) => {
                gst::warning!(CAT, imp = self, "{name} is not a reference_N name");
                return None;
            }
            None => (0..)
                .map(|i| format!("{REFERENCE_PAD_PREFIX}{i}"))
                .find(|n| !taken.contains(n))?,
        };
        if taken.contains(&name) {
            gst::warning!(CAT, imp = self, "{name} exists already");
            return None;
        }
        let pad = gst::Pad::builder_from_template(template)
            .name(name.as_str())
            .chain_function(|pad, parent, buffer| {
                Soragen::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.reference_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                Soragen::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.reference_event(pad, event),
                )
            })
            .build();
        self.reference_pads.add(&name);
        if self.obj().add_pad(&pad).is_err() {
            self.reference_pads.remove(&name);
            return None;
        }
        Some(pad)
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
