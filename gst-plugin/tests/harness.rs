//! The `soragen` and `soragensrc` elements under gstreamer-check's Harness, on the tiny model:
//! buffer counts, timestamps, untouched pass-through buffers, events, latency, flushing,
//! cancellation and errors.

use std::str::FromStr;
use std::sync::Once;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst_check::Harness;
use gstsoragen::generation::{GENERATED_META, PROGRESS_MESSAGE};

const TINY_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny");
const SIZE: u32 = 32;
/// 16 frames per second.
const FRAME: gst::ClockTime = gst::ClockTime::from_nseconds(62_500_000);

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstsoragen::plugin_register_static().unwrap();
    });
}

fn caps(format: &str) -> String {
    format!("video/x-raw,format={format},width={SIZE},height={SIZE},framerate=16/1")
}

/// A harness around `soragen` with `properties` (gst-launch syntax), RGBA input, playing.
fn harness(properties: &str) -> Harness {
    harness_with_format(properties, "RGBA")
}

fn harness_with_format(properties: &str, format: &str) -> Harness {
    let mut h = element_harness(&format!("soragen model={TINY_MODEL} steps=2 {properties}"));
    h.set_src_caps_str(&caps(format));
    h.play();
    h
}

/// A harness around the one element `description` (gst-launch syntax) makes.
fn element_harness(description: &str) -> Harness {
    init();
    let element = gst::parse::launch(description).unwrap();
    let src = element.static_pad("src").is_some().then_some("src");
    let sink = element.static_pad("sink").is_some().then_some("sink");
    Harness::with_element(&element, sink, src)
}

/// Frame `index` of a test stream: RGBA filled with the index, timestamped at 16 fps.
fn frame(index: u64) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(vec![index as u8; (SIZE * SIZE * 4) as usize]);
    let b = buffer.get_mut().unwrap();
    b.set_pts(FRAME * index);
    b.set_duration(FRAME);
    b.set_offset(index);
    b.set_offset_end(index + 1);
    buffer
}

fn data_ptr(buffer: &gst::BufferRef) -> *const u8 {
    buffer.map_readable().unwrap().as_slice().as_ptr()
}

fn is_generated(buffer: &gst::BufferRef) -> bool {
    gst::meta::CustomMeta::from_buffer(buffer, GENERATED_META).is_ok()
}

/// Pulls everything the element has pushed so far.
fn pull_all(h: &mut Harness) -> Vec<gst::Buffer> {
    std::iter::from_fn(|| h.try_pull()).collect()
}

fn pts_in_frames(buffers: &[gst::Buffer]) -> Vec<u64> {
    buffers.iter().map(|b| b.pts().unwrap().nseconds() / FRAME.nseconds()).collect()
}

/// Asserts `pulled` is exactly the pushed `original`: same buffer memory (no copy), shifted by
/// `shift` frames.
fn assert_untouched(pulled: &gst::Buffer, original: &gst::Buffer, shift: u64) {
    assert_eq!(data_ptr(pulled), data_ptr(original), "pass-through frames must not be copied");
    assert_eq!(pulled.pts(), original.pts().map(|pts| pts + FRAME * shift));
    assert_eq!(pulled.duration(), original.duration());
    assert!(!is_generated(pulled));
}

fn assert_generated_frames(buffers: &[gst::Buffer], first_frame: u64) {
    for (buffer, index) in buffers.iter().zip(first_frame..) {
        assert_eq!(buffer.pts(), Some(FRAME * index), "generated frame {index}");
        assert_eq!(buffer.duration(), Some(FRAME));
        assert_eq!(buffer.offset(), index);
        assert_eq!(buffer.offset_end(), index + 1);
        assert_eq!(buffer.size(), (SIZE * SIZE * 4) as usize);
        let meta = gst::meta::CustomMeta::from_buffer(buffer, GENERATED_META).expect("generated meta");
        let s = meta.structure();
        assert!(s.get::<String>("model").unwrap().ends_with("tiny"));
        assert_eq!(s.get::<String>("prompt").unwrap(), "a harbour");
        assert_eq!(s.get::<u64>("seed").unwrap(), 7);
    }
}

fn event_types(h: &mut Harness) -> Vec<gst::EventType> {
    std::iter::from_fn(|| h.try_pull_event()).map(|e| e.type_()).collect()
}

#[test]
fn passthrough_pushes_the_same_buffers_and_needs_no_model() {
    let mut h = element_harness("soragen");
    h.set_src_caps_str(&caps("RGBA"));
    h.play();
    for index in 0..5 {
        let input = frame(index);
        let output = h.push_and_pull(input.clone()).unwrap();
        assert_eq!(output.as_ptr(), input.as_ptr(), "the very same GstBuffer");
    }
    assert_eq!(h.query_latency(), Some(gst::ClockTime::ZERO));
}

#[test]
fn extend_forward_appends_frames_at_eos_before_eos() {
    let mut h = harness("mode=extend-forward frames=3 context-frames=2 prompt=\"a harbour\" seed=7");
    let inputs: Vec<_> = (0..4).map(frame).collect();
    for input in &inputs {
        h.push(input.clone()).unwrap();
    }
    let passed = pull_all(&mut h);
    assert_eq!(passed.len(), 4, "extend-forward holds no frames");
    for (pulled, original) in passed.iter().zip(&inputs) {
        assert_untouched(pulled, original, 0);
    }
    let _startup_events = event_types(&mut h);
    assert!(h.push_event(gst::event::Eos::new()));
    let generated = pull_all(&mut h);
    assert_eq!(generated.len(), 3);
    assert_generated_frames(&generated, 4);
    assert_eq!(event_types(&mut h), vec![gst::EventType::Eos], "EOS after the generated frames");
    assert_eq!(h.query_latency(), Some(gst::ClockTime::ZERO));
}

#[test]
fn extend_backward_holds_context_then_shifts_the_stream() {
    let mut h = harness(
        "mode=extend-backward frames=3 context-frames=2 prompt=\"a harbour\" seed=7 processing-latency=1000000000",
    );
    h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
    assert_eq!(
        h.query_latency(),
        Some(gst::ClockTime::from_mseconds(10) + FRAME * 2 + gst::ClockTime::SECOND),
        "upstream + held frames + processing budget"
    );
    let inputs: Vec<_> = (0..4).map(frame).collect();
    h.push(inputs[0].clone()).unwrap();
    // A serialized event behind a held frame waits for it.
    h.push_event(gst::event::CustomDownstream::new(gst::Structure::new_empty("marker")));
    assert!(h.try_pull().is_none(), "the first frame is held as context");
    let before: Vec<_> = event_types(&mut h);
    assert!(!before.contains(&gst::EventType::CustomDownstream), "events never overtake held frames");
    h.push(inputs[1].clone()).unwrap();
    let output = pull_all(&mut h);
    assert_eq!(output.len(), 5);
    assert_generated_frames(&output[..3], 0);
    assert_untouched(&output[3], &inputs[0], 3);
    assert_untouched(&output[4], &inputs[1], 3);
    assert_eq!(event_types(&mut h), vec![gst::EventType::CustomDownstream]);
    // Later frames go straight through, shifted.
    let later = h.push_and_pull(inputs[2].clone()).unwrap();
    assert_untouched(&later, &inputs[2], 3);
}

#[test]
fn extend_backward_generates_at_eos_from_a_short_stream() {
    let mut h = harness("mode=extend-backward frames=2 context-frames=4 prompt=\"a harbour\" seed=7");
    h.push(frame(0)).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let output = pull_all(&mut h);
    assert_eq!(pts_in_frames(&output), vec![0, 1, 2]);
    assert_generated_frames(&output[..2], 0);
    assert_eq!(event_types(&mut h).last(), Some(&gst::EventType::Eos));
}

#[test]
fn insert_fills_a_timestamp_jump_and_marks_the_rest_as_gap() {
    let mut h = harness("mode=insert frames=3 context-frames=2 prompt=\"a harbour\" seed=7");
    let first: Vec<_> = (0..2).map(frame).collect();
    let second: Vec<_> = (10..12).map(frame).collect();
    for b in first.iter().chain(&second) {
        h.push(b.clone()).unwrap();
    }
    let output = pull_all(&mut h);
    // The 8-frame jump takes the 3 new frames just before the second piece; no shift.
    assert_eq!(pts_in_frames(&output), vec![0, 1, 7, 8, 9, 10, 11]);
    assert_generated_frames(&output[2..5], 7);
    assert_untouched(&output[5], &second[0], 0);
    let gap = std::iter::from_fn(|| h.try_pull_event())
        .find(|e| e.type_() == gst::EventType::Gap)
        .expect("the unfilled part of the jump as a gap event");
    let gst::EventView::Gap(gap) = gap.view() else { unreachable!() };
    assert_eq!(gap.get(), (FRAME * 2, Some(FRAME * 5)));
}

#[test]
fn insert_at_a_gap_event_pushes_the_second_piece_back() {
    let mut h = harness("mode=insert frames=3 context-frames=2 prompt=\"a harbour\" seed=7");
    h.push(frame(0)).unwrap();
    h.push(frame(1)).unwrap();
    assert!(h.push_event(gst::event::Gap::builder(FRAME * 2).duration(FRAME).build()));
    let second: Vec<_> = (3..6).map(frame).collect();
    for b in &second {
        h.push(b.clone()).unwrap();
    }
    let output = pull_all(&mut h);
    // 3 new frames in a 1-frame gap: the second piece moves back by 2 frames.
    assert_eq!(pts_in_frames(&output), vec![0, 1, 2, 3, 4, 5, 6, 7]);
    assert_generated_frames(&output[2..5], 2);
    assert_untouched(&output[5], &second[0], 2);
    assert_untouched(&output[7], &second[2], 2);
    assert!(!event_types(&mut h).contains(&gst::EventType::Gap), "the new frames fill the gap");
}

#[test]
fn insert_at_listed_times_and_at_eos_with_a_short_second_piece() {
    let mut h = harness(&format!(
        "mode=insert frames=2 context-frames=3 prompt=\"a harbour\" seed=7 insert-at=\"<(guint64){}>\"",
        (FRAME * 2).nseconds()
    ));
    for index in 0..4 {
        h.push(frame(index)).unwrap();
    }
    assert_eq!(pts_in_frames(&pull_all(&mut h)), vec![0, 1], "frames from the insert point on are held");
    assert!(h.push_event(gst::event::Eos::new()));
    let output = pull_all(&mut h);
    assert_eq!(pts_in_frames(&output), vec![2, 3, 4, 5]);
    assert_generated_frames(&output[..2], 2);
}

#[test]
fn insert_at_a_segment_change() {
    let mut h = harness("mode=insert frames=2 context-frames=1 prompt=\"a harbour\" seed=7");
    h.push(frame(0)).unwrap();
    h.push(frame(1)).unwrap();
    // As `concat` does: the second piece restarts at 0, its running time continues.
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_base(FRAME * 2);
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    h.push(frame(0)).unwrap();
    let output = pull_all(&mut h);
    assert_eq!(pts_in_frames(&output), vec![0, 1, 0, 1, 2]);
    assert_generated_frames(&output[2..4], 0);
}

#[test]
fn replace_background_regenerates_windows_of_frames() {
    let mut h = harness("mode=replace-background frames=2 prompt=\"a harbour\" seed=7");
    let inputs: Vec<_> = (0..3).map(frame).collect();
    h.push(inputs[0].clone()).unwrap();
    // Repeated caps do not cut a window short.
    assert!(h.push_event(gst::event::Caps::new(&gst::Caps::from_str(&caps("RGBA")).unwrap())));
    assert!(h.try_pull().is_none());
    h.push(inputs[1].clone()).unwrap();
    h.push(inputs[2].clone()).unwrap();
    let output = pull_all(&mut h);
    assert_eq!(output.len(), 2);
    assert_generated_frames(&output, 0);
    assert_ne!(data_ptr(&output[0]), data_ptr(&inputs[0]));
    assert!(h.push_event(gst::event::Eos::new()));
    let rest = pull_all(&mut h);
    assert_eq!(pts_in_frames(&rest), vec![2]);
}

/// `soragen` in replace-background with its mask pad requested, RGBx video (no alpha: the
/// masks must come from the pad), playing; returns the video and the mask harness.
fn replace_background_with_mask_pad(properties: &str, mask_size: u32) -> (Harness, Harness) {
    let mut video = element_harness(&format!(
        "soragen model={TINY_MODEL} steps=2 mode=replace-background prompt=\"a harbour\" seed=7 {properties}"
    ));
    let mut mask = Harness::with_element(&video.element().unwrap(), Some("mask"), None);
    mask.set_src_caps_str(&format!("video/x-raw,format=GRAY8,width={mask_size},height={mask_size},framerate=8/1"));
    video.set_src_caps_str(&caps("RGBx"));
    video.play();
    (video, mask)
}

/// A grey mask at `FRAME * start` lasting `frames` frames, every pixel at `level`.
fn mask_frame(level: u8, start: u64, frames: u64, size: u32) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(vec![level; (size * size) as usize]);
    let b = buffer.get_mut().unwrap();
    b.set_pts(FRAME * start);
    b.set_duration(FRAME * frames);
    buffer
}

/// Pushes masks on their own thread, as their own streaming thread would (a mask waits until
/// the video has reached it).
fn push_masks(mut mask: Harness, masks: Vec<gst::Buffer>) -> std::thread::JoinHandle<Harness> {
    std::thread::spawn(move || {
        for buffer in masks {
            let _ = mask.push(buffer);
        }
        mask
    })
}

#[test]
fn replace_background_matches_masks_from_the_mask_pad_by_running_time() {
    let (mut h, mask) = replace_background_with_mask_pad("frames=4", SIZE);
    // Masks at half the video's rate: white (all background) over frames 0-1, black (no
    // background) over frames 2-3.
    let masks = push_masks(mask, vec![mask_frame(255, 0, 2, SIZE), mask_frame(0, 2, 2, SIZE)]);
    let inputs: Vec<_> = (0..4).map(frame).collect();
    for input in &inputs {
        h.push(input.clone()).unwrap();
    }
    masks.join().unwrap();
    let output = pull_all(&mut h);
    assert_eq!(pts_in_frames(&output), vec![0, 1, 2, 3]);
    assert_generated_frames(&output[..2], 0);
    assert_untouched(&output[2], &inputs[2], 0);
    assert_untouched(&output[3], &inputs[3], 0);
}

#[test]
fn a_mask_of_another_size_is_an_error() {
    let (mut h, mut mask) = replace_background_with_mask_pad("frames=2", SIZE / 2);
    let bus = bus_for(&h);
    h.push(frame(0)).unwrap();
    mask.push(mask_frame(255, 0, 2, SIZE / 2)).unwrap();
    assert_eq!(h.push(frame(1)), Err(gst::FlowError::NotNegotiated));
    let text = error_text(&bus);
    assert!(text.contains("masks are 16x16 but the video is 32x32"), "{text}");
}

#[test]
fn a_frame_before_the_first_mask_is_an_error() {
    let (mut h, mask) = replace_background_with_mask_pad("frames=2", SIZE);
    let bus = bus_for(&h);
    let masks = push_masks(mask, vec![mask_frame(255, 2, 2, SIZE)]);
    h.push(frame(0)).unwrap();
    assert_eq!(h.push(frame(1)), Err(gst::FlowError::Error));
    let text = error_text(&bus);
    assert!(text.contains("no mask for the frame") && text.contains("the mask stream starts at"), "{text}");
    h.push_event(gst::event::Eos::new());
    masks.join().unwrap();
}

#[test]
fn a_mask_stream_that_ends_before_the_video_is_an_error() {
    let (mut h, mut mask) = replace_background_with_mask_pad("frames=2", SIZE);
    let bus = bus_for(&h);
    h.push(frame(0)).unwrap();
    mask.push(mask_frame(255, 0, 1, SIZE)).unwrap();
    assert!(mask.push_event(gst::event::Eos::new()));
    assert_eq!(h.push(frame(1)), Err(gst::FlowError::Error));
    let text = error_text(&bus);
    assert!(text.contains("the mask stream ended (EOS) before the video"), "{text}");
}

#[test]
fn the_mask_pad_serves_only_replace_background() {
    init();
    let element = gst::ElementFactory::make("soragen")
        .property_from_str("mode", "extend-forward")
        .property("model", TINY_MODEL)
        .build()
        .unwrap();
    assert!(element.request_pad_simple("mask").is_some());
    let template = element.pad_template("mask").unwrap();
    assert!(element.request_pad(&template, None, None).is_none(), "one mask pad at most");
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    assert!(element.set_state(gst::State::Paused).is_err());
    assert!(error_text(&bus).contains("The mask pad serves only mode=replace-background"));
    element.set_state(gst::State::Null).unwrap();
}

fn segment_with(rate: f64, stop: Option<gst::ClockTime>) -> gst::Event {
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_rate(rate);
    segment.set_stop(stop);
    gst::event::Segment::new(&segment)
}

/// The segments the element pushed so far, leaving its other events out.
fn pushed_segments(h: &mut Harness) -> Vec<gst::FormattedSegment<gst::ClockTime>> {
    std::iter::from_fn(|| h.try_pull_event())
        .filter_map(|e| match e.view() {
            gst::EventView::Segment(s) => Some(s.segment().clone().downcast::<gst::ClockTime>().unwrap()),
            _ => None,
        })
        .collect()
}

#[test]
fn extending_moves_the_segment_stop_by_the_new_frames() {
    for mode in ["extend-forward", "extend-backward"] {
        let mut h = harness(&format!("mode={mode} frames=3 context-frames=1 prompt=\"a harbour\" seed=7"));
        let _startup = pushed_segments(&mut h);
        assert!(h.push_event(segment_with(1.0, Some(FRAME * 4))));
        assert_eq!(pushed_segments(&mut h).last().unwrap().stop(), Some(FRAME * 7), "{mode}");
    }
}

#[test]
fn insert_moves_the_segment_stop_by_what_it_pushes_back() {
    let mut h = harness("mode=insert frames=3 context-frames=1 prompt=\"a harbour\" seed=7");
    assert!(h.push_event(segment_with(1.0, Some(FRAME * 5))));
    h.push(frame(0)).unwrap();
    assert!(h.push_event(gst::event::Gap::builder(FRAME).duration(FRAME).build()));
    let _before = pushed_segments(&mut h);
    h.push(frame(2)).unwrap();
    h.push(frame(3)).unwrap();
    // 3 new frames in a 1-frame gap push the rest back by 2 frames: so does the stop.
    assert_eq!(pushed_segments(&mut h).last().unwrap().stop(), Some(FRAME * 7));
    assert_eq!(pts_in_frames(&pull_all(&mut h)), vec![0, 1, 2, 3, 4, 5]);
}

#[test]
fn the_duration_query_counts_the_new_frames() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=5 ! {} ! soragen name=s mode=extend-forward frames=3 model={TINY_MODEL} ! fakesink",
        caps("RGBA")
    ))
    .unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    assert!(pipeline.state(gst::ClockTime::from_seconds(30)).0.is_ok());
    let soragen = pipeline.downcast_ref::<gst::Bin>().unwrap().by_name("s").unwrap();
    let duration = soragen.static_pad("src").unwrap().query_duration::<gst::ClockTime>();
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(duration, Some(FRAME * 8), "5 frames + 3 new ones");
}

#[test]
fn insert_measures_gaps_in_timestamps_at_any_rate() {
    for rate in [0.5, 2.0] {
        // A jump of 8 frames: the 3 new frames go just before the second piece.
        let mut h = harness("mode=insert frames=3 context-frames=2 prompt=\"a harbour\" seed=7");
        assert!(h.push_event(segment_with(rate, None)));
        for index in [0, 1, 10, 11] {
            h.push(frame(index)).unwrap();
        }
        assert_eq!(pts_in_frames(&pull_all(&mut h)), vec![0, 1, 7, 8, 9, 10, 11], "rate {rate}");
        let gap = std::iter::from_fn(|| h.try_pull_event()).find(|e| e.type_() == gst::EventType::Gap).unwrap();
        let gst::EventView::Gap(gap) = gap.view() else { unreachable!() };
        assert_eq!(gap.get(), (FRAME * 2, Some(FRAME * 5)), "rate {rate}");
        // A gap event of 1 frame: the second piece moves back by 2 frames.
        let mut h = harness("mode=insert frames=3 context-frames=2 prompt=\"a harbour\" seed=7");
        assert!(h.push_event(segment_with(rate, None)));
        h.push(frame(0)).unwrap();
        h.push(frame(1)).unwrap();
        assert!(h.push_event(gst::event::Gap::builder(FRAME * 2).duration(FRAME).build()));
        for index in 3..5 {
            h.push(frame(index)).unwrap();
        }
        assert_eq!(pts_in_frames(&pull_all(&mut h)), vec![0, 1, 2, 3, 4, 5, 6], "rate {rate}");
    }
}

#[test]
fn held_frames_count_in_running_time_at_the_segment_rate() {
    let mut h = harness("mode=extend-backward frames=3 context-frames=2");
    h.set_upstream_latency(gst::ClockTime::ZERO);
    assert!(h.push_event(segment_with(0.5, None)));
    assert_eq!(h.query_latency(), Some(FRAME * 4), "2 frames at half speed");
}

#[test]
fn extend_and_insert_refuse_reverse_playback() {
    for mode in ["extend-forward", "extend-backward", "insert"] {
        let mut h = harness(&format!("mode={mode}"));
        let bus = bus_for(&h);
        h.push_event(segment_with(-1.0, Some(FRAME * 10)));
        assert!(error_text(&bus).contains("cannot run in reverse playback"), "{mode}");
        assert!(h.push(frame(0)).is_err(), "{mode}: no frame goes through");
    }
    let mut h = harness("mode=replace-background frames=1");
    let bus = bus_for(&h);
    h.push_event(segment_with(-1.0, Some(FRAME * 10)));
    h.push(frame(0)).unwrap();
    assert!(bus.pop_filtered(&[gst::MessageType::Error]).is_none(), "replace-background plays in reverse");
}

#[test]
fn generated_frames_come_out_in_the_input_format() {
    for format in ["RGBx", "BGRA", "BGRx", "RGB", "I420", "NV12"] {
        let mut h = harness_with_format("mode=extend-forward frames=2 context-frames=1 prompt=\"a harbour\" seed=7", format);
        let info = gst_video::VideoInfo::from_caps(&gst::Caps::from_str(&caps(format)).unwrap()).unwrap();
        let mut input = gst::Buffer::with_size(info.size()).unwrap();
        input.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        input.get_mut().unwrap().set_duration(FRAME);
        h.push(input).unwrap();
        assert!(h.push_event(gst::event::Eos::new()));
        let output = pull_all(&mut h);
        assert_eq!(output.len(), 3, "{format}");
        assert!(output[1..].iter().all(|b| b.size() == info.size()), "{format}");
    }
}

fn bus_for(h: &Harness) -> gst::Bus {
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    bus
}

fn wait_for_progress(bus: &gst::Bus) -> gst::Structure {
    let message = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Element])
        .expect("a progress message");
    let s = message.structure().unwrap().to_owned();
    assert_eq!(s.name(), PROGRESS_MESSAGE);
    s
}

#[test]
fn progress_messages_report_steps() {
    let mut h = harness("mode=extend-forward frames=2 context-frames=1 steps=3");
    let bus = bus_for(&h);
    h.push(frame(0)).unwrap();
    h.push_event(gst::event::Eos::new());
    let steps: Vec<u32> = (0..3).map(|_| wait_for_progress(&bus).get("step").unwrap()).collect();
    assert_eq!(steps, vec![1, 2, 3]);
    assert!(bus.pop_filtered(&[gst::MessageType::Element]).is_none(), "one message per step");
}

/// Starts a long generation on another thread, runs `interrupt` once it is under way, and
/// returns the time it took the push to come back, with its result.
fn interrupt_generation(
    interrupt: impl FnOnce(&gst::Element),
) -> (Duration, Result<gst::FlowSuccess, gst::FlowError>, Harness) {
    let mut h = harness("mode=extend-backward frames=1 context-frames=1 steps=1000");
    let bus = bus_for(&h);
    let element = h.element().unwrap();
    let pusher = std::thread::spawn(move || {
        let result = h.push(frame(0));
        (Instant::now(), result, h)
    });
    wait_for_progress(&bus);
    let started = Instant::now();
    interrupt(&element);
    let (returned, result, h) = pusher.join().unwrap();
    (returned.saturating_duration_since(started), result, h)
}

#[test]
fn flush_cancels_a_running_generation_and_drops_held_frames() {
    let (took, result, mut h) = interrupt_generation(|element| {
        assert!(element.static_pad("sink").unwrap().send_event(gst::event::FlushStart::new()));
    });
    assert_eq!(result, Err(gst::FlowError::Flushing));
    assert!(took < Duration::from_secs(2), "cancelled within a step, took {took:?}");
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(pull_all(&mut h).is_empty(), "nothing of the cancelled generation comes out");
    // After the flush the element starts over: the next frame is context again.
    let element = h.element().unwrap();
    element.set_property("steps", 2u32);
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
    h.push(frame(0)).unwrap();
    assert_eq!(pts_in_frames(&pull_all(&mut h)), vec![0, 1]);
}

#[test]
fn state_change_to_ready_cancels_a_running_generation() {
    let (took, result, _h) = interrupt_generation(|element| {
        element.set_state(gst::State::Ready).unwrap();
    });
    assert_eq!(result, Err(gst::FlowError::Flushing));
    assert!(took < Duration::from_secs(2), "cancelled within a step, took {took:?}");
}

#[test]
fn latency_message_when_the_latency_changes() {
    let mut h = harness("mode=replace-background frames=4");
    let bus = bus_for(&h);
    h.element().unwrap().set_property("processing-latency", gst::ClockTime::SECOND.nseconds());
    let message = bus.pop_filtered(&[gst::MessageType::Latency]);
    assert!(message.is_some(), "a Latency message after the budget changed");
    h.set_upstream_latency(gst::ClockTime::ZERO);
    assert_eq!(h.query_latency(), Some(FRAME * 4 + gst::ClockTime::SECOND));
}

fn error_text(bus: &gst::Bus) -> String {
    let message = bus.pop_filtered(&[gst::MessageType::Error]).expect("an error message on the bus");
    let gst::MessageView::Error(error) = message.view() else { unreachable!() };
    error.error().to_string()
}

#[test]
fn a_bad_model_fails_ready_to_paused_with_a_message() {
    init();
    for (model, expected) in [
        ("/nonexistent/model", "/nonexistent/model"),
        (env!("CARGO_MANIFEST_DIR"), "not a diffusers model folder"),
    ] {
        let element = gst::ElementFactory::make("soragen")
            .property_from_str("mode", "extend-forward")
            .property("model", model)
            .build()
            .unwrap();
        let bus = gst::Bus::new();
        element.set_bus(Some(&bus));
        assert!(element.set_state(gst::State::Paused).is_err());
        let text = error_text(&bus);
        assert!(text.contains(expected), "{text}");
        element.set_state(gst::State::Null).unwrap();
    }
    let element = gst::ElementFactory::make("soragen").property_from_str("mode", "insert").build().unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    assert!(element.set_state(gst::State::Paused).is_err());
    assert!(error_text(&bus).contains("No model set"));
    element.set_state(gst::State::Null).unwrap();
}

#[test]
fn replace_background_refuses_formats_without_alpha() {
    let mut h = element_harness(&format!("soragen mode=replace-background model={TINY_MODEL}"));
    let bus = bus_for(&h);
    h.play();
    h.set_src_caps_str(&caps("RGBx"));
    assert_eq!(h.push(frame(0)), Err(gst::FlowError::NotNegotiated));
    assert!(error_text(&bus).contains("alpha"));
}

#[test]
fn an_invalid_device_is_refused_and_the_old_value_kept() {
    init();
    let element = gst::ElementFactory::make("soragen").build().unwrap();
    assert_eq!(element.property::<String>("device"), "auto");
    element.set_property("device", "gpu");
    assert_eq!(element.property::<String>("device"), "auto");
    for device in ["cpu", "cuda:1", "auto"] {
        element.set_property("device", device);
        assert_eq!(element.property::<String>("device"), device);
    }
    element.set_property("device", "cuda");
    assert_eq!(element.property::<String>("device"), "cuda:0");
}

#[test]
fn soragensrc_generates_the_clip_then_eos() {
    let mut h = element_harness(&format!(
        "soragensrc model={TINY_MODEL} steps=2 num-frames=5 prompt=\"a harbour\" seed=7"
    ));
    h.set_sink_caps_str(&caps("RGBA"));
    h.play();
    let output: Vec<_> = (0..5).map(|_| h.pull().unwrap()).collect();
    assert_generated_frames(&output, 0);
    assert!(
        std::iter::from_fn(|| h.pull_event().ok()).any(|e| e.type_() == gst::EventType::Eos),
        "EOS after the clip"
    );
}
