//! The `soragen` and `soragensrc` elements under gstreamer-check's Harness, on the tiny model:
//! buffer counts, timestamps, untouched pass-through buffers, events, latency, flushing,
//! cancellation and errors.

mod common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use common::{FRAME, TINY_MODEL, bus_for, element_harness, init, wait_for_progress};
use gst::prelude::*;
use gst_check::Harness;
use gstsoragen::generation::GENERATED_META;

const SIZE: u32 = 32;
/// Every format the pads offer in system memory (none has more than 8 bits).
const FORMATS: [&str; 7] = ["RGBA", "RGBx", "BGRA", "BGRx", "RGB", "I420", "NV12"];

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

/// Waits until the element's worker has sent everything it was given (a drain query, which
/// the element answers only then).
fn settle(h: &Harness) {
    let mut query = gst::query::Drain::new();
    h.srcpad().unwrap().peer_query(&mut query);
}

/// Pulls everything the element has pushed so far.
fn pull_all(h: &mut Harness) -> Vec<gst::Buffer> {
    settle(h);
    std::iter::from_fn(|| h.try_pull()).collect()
}

fn pts_in_frames(buffers: &[gst::Buffer]) -> Vec<u64> {
    buffers
        .iter()
        .map(|b| b.pts().unwrap().nseconds() / FRAME.nseconds())
        .collect()
}

/// Asserts `pulled` is exactly the pushed `original`: same buffer memory (no copy), shifted by
/// `shift` frames.
fn assert_untouched(pulled: &gst::Buffer, original: &gst::Buffer, shift: u64) {
    assert_eq!(
        data_ptr(pulled),
        data_ptr(original),
        "pass-through frames must not be copied"
    );
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
        let meta =
            gst::meta::CustomMeta::from_buffer(buffer, GENERATED_META).expect("generated meta");
        let s = meta.structure();
        assert!(s.get::<String>("model").unwrap().ends_with("tiny"));
        assert_eq!(s.get::<String>("prompt").unwrap(), "a harbour");
        assert_eq!(s.get::<u64>("seed").unwrap(), 7);
    }
}

fn event_types(h: &mut Harness) -> Vec<gst::EventType> {
    settle(h);
    std::iter::from_fn(|| h.try_pull_event())
        .map(|e| e.type_())
        .collect()
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
    let mut h =
        harness("mode=extend-forward frames=3 context-frames=2 prompt=\"a harbour\" seed=7");
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
    assert_eq!(
        event_types(&mut h),
        vec![gst::EventType::Eos],
        "EOS after the generated frames"
    );
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
    h.push_event(gst::event::CustomDownstream::new(
        gst::Structure::new_empty("marker"),
    ));
    assert!(h.try_pull().is_none(), "the first frame is held as context");
    let before: Vec<_> = event_types(&mut h);
    assert!(
        !before.contains(&gst::EventType::CustomDownstream),
        "events never overtake held frames"
    );
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
    let mut h =
        harness("mode=extend-backward frames=2 context-frames=4 prompt=\"a harbour\" seed=7");
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
    let gst::EventView::Gap(gap) = gap.view() else {
        unreachable!()
    };
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
    assert!(
        !event_types(&mut h).contains(&gst::EventType::Gap),
        "the new frames fill the gap"
    );
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
    assert_eq!(
        pts_in_frames(&pull_all(&mut h)),
        vec![0, 1],
        "frames from the insert point on are held"
    );
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
    // The core's windows of 5 frames: the first once a sixth frame shows it is not the last,
    // the second (frame 5, after frame 4 as the first made it) at EOS.
    let mut h = harness(
        "mode=replace-background window-frames=5 context-frames=1 prompt=\"a harbour\" seed=7",
    );
    let inputs: Vec<_> = (0..6).map(frame).collect();
    h.push(inputs[0].clone()).unwrap();
    // Repeated caps do not cut a window short.
    assert!(h.push_event(gst::event::Caps::new(
        &gst::Caps::from_str(&caps("RGBA")).unwrap()
    )));
    for input in &inputs[1..5] {
        h.push(input.clone()).unwrap();
    }
    settle(&h);
    assert!(
        h.try_pull().is_none(),
        "a window waits for the frame after it"
    );
    h.push(inputs[5].clone()).unwrap();
    let output = pull_all(&mut h);
    assert_eq!(output.len(), 5);
    assert_generated_frames(&output, 0);
    assert_ne!(data_ptr(&output[0]), data_ptr(&inputs[0]));
    assert!(h.push_event(gst::event::Eos::new()));
    let rest = pull_all(&mut h);
    assert_eq!(pts_in_frames(&rest), vec![5]);
}

/// `soragen` in replace-background with its mask pad requested, RGBx video (no alpha: the
/// masks must come from the pad), playing; returns the video and the mask harness.
fn replace_background_with_mask_pad(properties: &str, mask_size: u32) -> (Harness, Harness) {
    let mut video = element_harness(&format!(
        "soragen model={TINY_MODEL} steps=2 mode=replace-background prompt=\"a harbour\" seed=7 {properties}"
    ));
    let mut mask = Harness::with_element(&video.element().unwrap(), Some("mask"), None);
    mask.set_src_caps_str(&format!(
        "video/x-raw,format=GRAY8,width={mask_size},height={mask_size},framerate=8/1"
    ));
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
    let (mut h, mask) = replace_background_with_mask_pad("window-frames=5 context-frames=1", SIZE);
    // Masks at half the video's rate: white (all background) over frames 0-1, black (no
    // background) over frames 2-3.
    let masks = push_masks(
        mask,
        vec![mask_frame(255, 0, 2, SIZE), mask_frame(0, 2, 2, SIZE)],
    );
    let inputs: Vec<_> = (0..4).map(frame).collect();
    for input in &inputs {
        h.push(input.clone()).unwrap();
    }
    // The stream's only window, at its end.
    assert!(h.push_event(gst::event::Eos::new()));
    // The mask harness holds the mask pad: it stays until the output is pulled.
    let _mask = masks.join().unwrap();
    let output = pull_all(&mut h);
    assert_eq!(pts_in_frames(&output), vec![0, 1, 2, 3]);
    assert_generated_frames(&output[..2], 0);
    assert_untouched(&output[2], &inputs[2], 0);
    assert_untouched(&output[3], &inputs[3], 0);
}

#[test]
fn a_mask_of_another_size_is_an_error() {
    let (mut h, mut mask) =
        replace_background_with_mask_pad("window-frames=5 context-frames=1", SIZE / 2);
    let bus = bus_for(&h);
    h.push(frame(0)).unwrap();
    mask.push(mask_frame(255, 0, 6, SIZE / 2)).unwrap();
    // A window of 5 runs once the sixth frame is in.
    for index in 1..6 {
        h.push(frame(index)).unwrap();
    }
    settle(&h);
    assert_eq!(
        h.push(frame(6)),
        Err(gst::FlowError::NotNegotiated),
        "the worker's error goes upstream"
    );
    let text = error_text(&bus);
    assert!(
        text.contains("masks are 16x16 but the video is 32x32"),
        "{text}"
    );
}

#[test]
fn a_frame_before_the_first_mask_is_an_error() {
    let (mut h, mask) = replace_background_with_mask_pad("window-frames=5 context-frames=1", SIZE);
    let bus = bus_for(&h);
    let masks = push_masks(mask, vec![mask_frame(255, 2, 6, SIZE)]);
    for index in 0..6 {
        h.push(frame(index)).unwrap();
    }
    settle(&h);
    assert_eq!(h.push(frame(6)), Err(gst::FlowError::Error));
    let text = error_text(&bus);
    assert!(
        text.contains("no mask for the frame") && text.contains("the mask stream starts at"),
        "{text}"
    );
    h.push_event(gst::event::Eos::new());
    // The mask harness holds the mask pad: it stays until the output is pulled.
    let _mask = masks.join().unwrap();
}

#[test]
fn a_mask_stream_that_ends_before_the_video_is_an_error() {
    let (mut h, mut mask) =
        replace_background_with_mask_pad("window-frames=5 context-frames=1", SIZE);
    let bus = bus_for(&h);
    h.push(frame(0)).unwrap();
    mask.push(mask_frame(255, 0, 1, SIZE)).unwrap();
    assert!(mask.push_event(gst::event::Eos::new()));
    for index in 1..6 {
        h.push(frame(index)).unwrap();
    }
    settle(&h);
    assert_eq!(h.push(frame(6)), Err(gst::FlowError::Error));
    let text = error_text(&bus);
    assert!(
        text.contains("the mask stream ended (EOS) before the video"),
        "{text}"
    );
    assert!(
        !text.contains("gap"),
        "a mask stream that ended has no gap: {text}"
    );
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
    assert!(
        element.request_pad(&template, None, None).is_none(),
        "one mask pad at most"
    );
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
    settle(h);
    std::iter::from_fn(|| h.try_pull_event())
        .filter_map(|e| match e.view() {
            gst::EventView::Segment(s) => {
                Some(s.segment().clone().downcast::<gst::ClockTime>().unwrap())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn extending_moves_the_segment_stop_by_the_new_frames() {
    for mode in ["extend-forward", "extend-backward"] {
        let mut h = harness(&format!(
            "mode={mode} frames=3 context-frames=1 prompt=\"a harbour\" seed=7"
        ));
        let _startup = pushed_segments(&mut h);
        assert!(h.push_event(segment_with(1.0, Some(FRAME * 4))));
        assert_eq!(
            pushed_segments(&mut h).last().unwrap().stop(),
            Some(FRAME * 7),
            "{mode}"
        );
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
    assert_eq!(
        pushed_segments(&mut h).last().unwrap().stop(),
        Some(FRAME * 7)
    );
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
    let soragen = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("s")
        .unwrap();
    let duration = soragen
        .static_pad("src")
        .unwrap()
        .query_duration::<gst::ClockTime>();
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
        assert_eq!(
            pts_in_frames(&pull_all(&mut h)),
            vec![0, 1, 7, 8, 9, 10, 11],
            "rate {rate}"
        );
        let gap = std::iter::from_fn(|| h.try_pull_event())
            .find(|e| e.type_() == gst::EventType::Gap)
            .unwrap();
        let gst::EventView::Gap(gap) = gap.view() else {
            unreachable!()
        };
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
        assert_eq!(
            pts_in_frames(&pull_all(&mut h)),
            vec![0, 1, 2, 3, 4, 5, 6],
            "rate {rate}"
        );
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
        assert!(
            error_text(&bus).contains("cannot run in reverse playback"),
            "{mode}"
        );
        assert!(h.push(frame(0)).is_err(), "{mode}: no frame goes through");
    }
    let mut h = harness("mode=replace-background frames=1");
    let bus = bus_for(&h);
    h.push_event(segment_with(-1.0, Some(FRAME * 10)));
    h.push(frame(0)).unwrap();
    assert!(
        bus.pop_filtered(&[gst::MessageType::Error]).is_none(),
        "replace-background plays in reverse"
    );
}

#[test]
fn generated_frames_come_out_in_the_input_format_and_kept_ones_untouched() {
    for format in FORMATS {
        let mut h = harness_with_format(
            "mode=extend-forward frames=2 context-frames=1 prompt=\"a harbour\" seed=7",
            format,
        );
        let info =
            gst_video::VideoInfo::from_caps(&gst::Caps::from_str(&caps(format)).unwrap()).unwrap();
        let mut input = gst::Buffer::with_size(info.size()).unwrap();
        input.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        input.get_mut().unwrap().set_duration(FRAME);
        h.push(input.clone()).unwrap();
        assert!(h.push_event(gst::event::Eos::new()));
        let output = pull_all(&mut h);
        assert_eq!(output.len(), 3, "{format}");
        assert_untouched(&output[0], &input, 0);
        assert!(
            output[1..].iter().all(|b| b.size() == info.size()),
            "{format}"
        );
    }
}

#[test]
fn progress_messages_report_steps() {
    let mut h = harness("mode=extend-forward frames=2 context-frames=1 steps=3");
    let bus = bus_for(&h);
    h.push(frame(0)).unwrap();
    h.push_event(gst::event::Eos::new());
    let steps: Vec<u32> = (0..3)
        .map(|_| wait_for_progress(&bus).get("step").unwrap())
        .collect();
    assert_eq!(steps, vec![1, 2, 3]);
    assert!(
        bus.pop_filtered(&[gst::MessageType::Element]).is_none(),
        "one message per step"
    );
}

/// Starts a long generation (the push returns at once: the element's worker generates), runs
/// `interrupt` once it is under way, and returns how long `interrupt` took.
fn interrupt_generation(interrupt: impl FnOnce(&gst::Element)) -> (Duration, Harness) {
    let mut h = harness("mode=extend-backward frames=1 context-frames=1 steps=1000");
    let bus = bus_for(&h);
    let element = h.element().unwrap();
    let pushed = Instant::now();
    h.push(frame(0)).unwrap();
    assert!(
        pushed.elapsed() < Duration::from_secs(1),
        "generation runs off the streaming thread"
    );
    wait_for_progress(&bus);
    let started = Instant::now();
    interrupt(&element);
    (started.elapsed(), h)
}

#[test]
fn flush_cancels_a_running_generation_and_drops_held_frames() {
    let (took, mut h) = interrupt_generation(|element| {
        assert!(
            element
                .static_pad("sink")
                .unwrap()
                .send_event(gst::event::FlushStart::new())
        );
    });
    assert!(
        took < Duration::from_millis(500),
        "cancelled within a step, took {took:?}"
    );
    assert_eq!(h.push(frame(1)), Err(gst::FlowError::Flushing));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        pull_all(&mut h).is_empty(),
        "nothing of the cancelled generation comes out"
    );
    // After the flush the element starts over: the next frame is context again.
    let element = h.element().unwrap();
    element.set_property("steps", 2u32);
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
    h.push(frame(0)).unwrap();
    assert_eq!(pts_in_frames(&pull_all(&mut h)), vec![0, 1]);
}

#[test]
fn state_change_to_ready_cancels_a_running_generation() {
    let (took, _h) = interrupt_generation(|element| {
        element.set_state(gst::State::Ready).unwrap();
    });
    assert!(
        took < Duration::from_millis(500),
        "cancelled within a step, took {took:?}"
    );
}

#[test]
fn latency_message_when_the_latency_changes() {
    let mut h = harness("mode=replace-background window-frames=5 context-frames=1");
    let bus = bus_for(&h);
    h.element()
        .unwrap()
        .set_property("processing-latency", gst::ClockTime::SECOND.nseconds());
    let message = bus.pop_filtered(&[gst::MessageType::Latency]);
    assert!(
        message.is_some(),
        "a Latency message after the budget changed"
    );
    h.set_upstream_latency(gst::ClockTime::ZERO);
    // A window of 5 and the frame after it.
    assert_eq!(h.query_latency(), Some(FRAME * 6 + gst::ClockTime::SECOND));
}

fn error_text(bus: &gst::Bus) -> String {
    let message = bus
        .pop_filtered(&[gst::MessageType::Error])
        .expect("an error message on the bus");
    let gst::MessageView::Error(error) = message.view() else {
        unreachable!()
    };
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
    let element = gst::ElementFactory::make("soragen")
        .property_from_str("mode", "insert")
        .build()
        .unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    assert!(element.set_state(gst::State::Paused).is_err());
    assert!(error_text(&bus).contains("No model set"));
    element.set_state(gst::State::Null).unwrap();
}

#[test]
fn replace_background_refuses_formats_without_alpha() {
    let mut h = element_harness(&format!(
        "soragen mode=replace-background model={TINY_MODEL}"
    ));
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

/// Frame `n` of a 24 fps stream, on the exact grid.
fn at_24(n: u64) -> gst::ClockTime {
    gst::ClockTime::SECOND.mul_div_round(n, 24).unwrap()
}

fn frame_24(index: u64) -> gst::Buffer {
    let mut buffer = frame(index);
    let b = buffer.get_mut().unwrap();
    b.set_pts(at_24(index));
    b.set_duration(at_24(index + 1) - at_24(index));
    buffer
}

#[test]
fn timestamps_lie_exactly_on_the_frame_grid() {
    for mode in ["extend-backward", "extend-forward"] {
        let mut h = element_harness(&format!(
            "soragen model={TINY_MODEL} steps=2 mode={mode} frames=5 context-frames=2 prompt=\"a harbour\" seed=7"
        ));
        h.set_src_caps_str(&format!(
            "video/x-raw,format=RGBA,width={SIZE},height={SIZE},framerate=24/1"
        ));
        h.play();
        for index in 0..4 {
            h.push(frame_24(index)).unwrap();
        }
        assert!(h.push_event(gst::event::Eos::new()));
        let output = pull_all(&mut h);
        let pts: Vec<_> = output.iter().map(|b| b.pts().unwrap()).collect();
        let expected: Vec<_> = (0..9).map(at_24).collect();
        assert_eq!(pts, expected, "{mode}: frame n at round(n / 24 s)");
        for (buffer, n) in output.iter().zip(0..).filter(|(b, _)| is_generated(b)) {
            assert_eq!(
                buffer.duration(),
                Some(at_24(n + 1) - at_24(n)),
                "{mode}: frame {n}"
            );
        }
        assert_eq!(
            output[5].pts(),
            Some(gst::ClockTime::from_nseconds(208_333_333))
        );
    }
}

#[test]
fn soragensrc_timestamps_duration_and_seeking() {
    let mut h = element_harness(&format!(
        "soragensrc model={TINY_MODEL} steps=2 num-frames=6 prompt=\"a harbour\" seed=7"
    ));
    h.set_sink_caps_str(&format!(
        "video/x-raw,format=RGBA,width={SIZE},height={SIZE},framerate=24/1"
    ));
    let bus = bus_for(&h);
    h.play();
    let output: Vec<_> = (0..6).map(|_| h.pull().unwrap()).collect();
    let pts: Vec<_> = output.iter().map(|b| b.pts().unwrap()).collect();
    assert_eq!(pts, (0..6).map(at_24).collect::<Vec<_>>());
    assert_eq!(
        pts[5],
        gst::ClockTime::from_nseconds(208_333_333),
        "frame 5 at 24 fps"
    );
    let element = h.element().unwrap();
    let src = element.static_pad("src").unwrap();
    assert_eq!(
        src.query_duration::<gst::ClockTime>(),
        Some(at_24(6)),
        "6 frames at 24 fps"
    );
    let mut seeking = gst::query::Seeking::new(gst::Format::Time);
    assert!(src.query(&mut seeking));
    assert!(seeking.result().0, "a generated clip is seekable");
    while bus.pop_filtered(&[gst::MessageType::Element]).is_some() {}
    // A flushing seek to frame 3 replays the kept clip from there, generating nothing.
    assert!(h.push_upstream_event(gst::event::Seek::new(
        1.0,
        gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
        gst::SeekType::Set,
        at_24(3),
        gst::SeekType::None,
        gst::ClockTime::NONE,
    )));
    let replayed: Vec<_> = std::iter::from_fn(|| h.pull().ok())
        .take_while(|b| b.pts() != Some(at_24(5)))
        .collect();
    let first_after_seek = replayed
        .iter()
        .rposition(|b| b.pts() == Some(at_24(3)))
        .expect("frame 3 again");
    assert_eq!(
        replayed.len() - first_after_seek,
        2,
        "frames 3 and 4, then 5"
    );
    assert!(
        bus.pop_filtered(&[gst::MessageType::Element]).is_none(),
        "no new generation"
    );
}

#[test]
fn soragensrc_refuses_a_frame_rate_of_0() {
    init();
    let pipeline = gst::parse::launch(&format!(
        "soragensrc model={TINY_MODEL} steps=1 num-frames=1 ! video/x-raw,format=RGBA,width=32,height=32,framerate=0/1 ! fakesink"
    ))
    .unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(30), &[gst::MessageType::Error])
        .expect("an error");
    pipeline.set_state(gst::State::Null).unwrap();
    let gst::MessageView::Error(error) = message.view() else {
        unreachable!()
    };
    let text = error.error().to_string();
    assert!(text.contains("framerate 0/1"), "{text}");
}

#[test]
fn soragensrc_without_a_model_posts_one_error() {
    init();
    let element = gst::ElementFactory::make("soragensrc").build().unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    assert!(element.set_state(gst::State::Paused).is_err());
    assert!(error_text(&bus).contains("No model set"));
    assert!(
        bus.pop_filtered(&[gst::MessageType::Error]).is_none(),
        "exactly one error"
    );
    element.set_state(gst::State::Null).unwrap();
}

#[test]
fn ready_only_properties_are_refused_while_running() {
    let mut h = harness("mode=extend-backward frames=3 context-frames=2");
    h.set_upstream_latency(gst::ClockTime::ZERO);
    let latency = h.query_latency();
    let element = h.element().unwrap();
    element.set_property_from_str("mode", "insert");
    element.set_property("frames", 9u32);
    element.set_property("context-frames", 5u32);
    element.set_property("model", "/elsewhere");
    element.set_property("device", "cpu");
    let mode = element.property_value("mode");
    assert_eq!(
        gst::glib::EnumValue::from_value(&mode).unwrap().1.nick(),
        "extend-backward"
    );
    assert_eq!(element.property::<u32>("frames"), 3);
    assert_eq!(element.property::<u32>("context-frames"), 2);
    assert!(element.property::<String>("model").ends_with("tiny"));
    assert_eq!(element.property::<String>("device"), "auto");
    assert_eq!(h.query_latency(), latency, "the latency stays");
    // The element runs on with the old ones: 2 frames of context, then 3 new frames.
    h.push(frame(0)).unwrap();
    h.push(frame(1)).unwrap();
    assert_eq!(pts_in_frames(&pull_all(&mut h)), vec![0, 1, 2, 3, 4]);
    // Settings that may change while playing still do.
    element.set_property("steps", 3u32);
    assert_eq!(element.property::<u32>("steps"), 3);
    element.set_state(gst::State::Ready).unwrap();
    element.set_property("frames", 9u32);
    assert_eq!(element.property::<u32>("frames"), 9, "accepted in READY");
    let src = element_harness(&format!("soragensrc model={TINY_MODEL} num-frames=3"));
    let src_element = src.element().unwrap();
    src_element.set_state(gst::State::Paused).unwrap();
    src_element.set_property("num-frames", 7u32);
    assert_eq!(src_element.property::<u32>("num-frames"), 3);
    src_element.set_state(gst::State::Null).unwrap();
}

/// A frame of `width` x `height` RGBA at 16 fps.
fn sized_frame(index: u64, width: u32, height: u32) -> gst::Buffer {
    let mut buffer = gst::Buffer::from_mut_slice(vec![index as u8; (width * height * 4) as usize]);
    let b = buffer.get_mut().unwrap();
    b.set_pts(FRAME * index);
    b.set_duration(FRAME);
    buffer
}

fn rgba_caps(width: u32, height: u32) -> String {
    format!("video/x-raw,format=RGBA,width={width},height={height},framerate=16/1")
}

#[test]
fn a_caps_change_drains_and_timestamps_never_go_back() {
    let mut h = element_harness(&format!(
        "soragen model={TINY_MODEL} steps=2 mode=extend-backward frames=5 context-frames=2 prompt=\"a harbour\" seed=7"
    ));
    h.set_src_caps_str(&rgba_caps(64, 48));
    h.play();
    h.push(sized_frame(0, 64, 48)).unwrap();
    h.push(sized_frame(1, 64, 48)).unwrap();
    h.set_src_caps_str(&rgba_caps(96, 64));
    for index in 2..5 {
        h.push(sized_frame(index, 96, 64)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let output = pull_all(&mut h);
    assert_eq!(
        pts_in_frames(&output),
        (0..10).collect::<Vec<_>>(),
        "5 new frames once, then the stream shifted"
    );
    assert_eq!(output.iter().filter(|b| is_generated(b)).count(), 5);
}

#[test]
fn close_boundaries_each_get_their_own_insert() {
    // insert-at frames 4 and 6 are closer than 3 context frames.
    let mut h = harness(&format!(
        "mode=insert frames=2 context-frames=3 prompt=\"a harbour\" seed=7 insert-at=\"<(guint64){}, (guint64){}>\"",
        (FRAME * 4).nseconds(),
        (FRAME * 6).nseconds()
    ));
    let inputs: Vec<_> = (0..10).map(frame).collect();
    for input in &inputs {
        h.push(input.clone()).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let output = pull_all(&mut h);
    let generated: Vec<bool> = output.iter().map(|b| is_generated(b)).collect();
    // O4 G2 O2 G2 O4.
    let expected: Vec<bool> = [
        vec![false; 4],
        vec![true; 2],
        vec![false; 2],
        vec![true; 2],
        vec![false; 4],
    ]
    .concat();
    assert_eq!(generated, expected);
    assert_eq!(pts_in_frames(&output), (0..14).collect::<Vec<_>>());
    assert_untouched(&output[6], &inputs[4], 2);
    assert_untouched(&output[10], &inputs[6], 4);
    // Two timestamp jumps 2 frames apart: both filled.
    let mut h = harness("mode=insert frames=2 context-frames=3 prompt=\"a harbour\" seed=7");
    for index in [0, 1, 2, 10, 11, 20, 21, 22, 23] {
        h.push(frame(index)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let output = pull_all(&mut h);
    assert_eq!(
        pts_in_frames(&output),
        vec![0, 1, 2, 8, 9, 10, 11, 18, 19, 20, 21, 22, 23]
    );
    assert_eq!(output.iter().filter(|b| is_generated(b)).count(), 4);
}

fn warning_text(bus: &gst::Bus) -> String {
    let message = bus
        .pop_filtered(&[gst::MessageType::Warning])
        .expect("a warning on the bus");
    let gst::MessageView::Warning(warning) = message.view() else {
        unreachable!()
    };
    warning.error().to_string()
}

#[test]
fn an_insert_that_cannot_be_made_is_a_warning() {
    let mut h = harness(&format!(
        "mode=insert frames=2 context-frames=1 insert-at=\"<(guint64){}>\"",
        FRAME.nseconds()
    ));
    let bus = bus_for(&h);
    h.push(frame(1)).unwrap();
    let text = warning_text(&bus);
    assert!(text.contains("at or before the first frame"), "{text}");
    // Pieces of different sizes, as concat joins them.
    let mut h = element_harness(&format!(
        "soragen model={TINY_MODEL} steps=2 mode=insert frames=2 context-frames=1"
    ));
    let bus = bus_for(&h);
    h.set_src_caps_str(&rgba_caps(64, 48));
    h.play();
    h.push(sized_frame(0, 64, 48)).unwrap();
    h.set_src_caps_str(&rgba_caps(96, 64));
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_base(FRAME);
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    h.push(sized_frame(0, 96, 64)).unwrap();
    let text = warning_text(&bus);
    assert!(
        text.contains("different sizes (64x48, then 96x64)"),
        "{text}"
    );
}

#[test]
fn extend_forward_generates_at_segment_done() {
    let mut h =
        harness("mode=extend-forward frames=3 context-frames=2 prompt=\"a harbour\" seed=7");
    for index in 0..4 {
        h.push(frame(index)).unwrap();
    }
    let _ = pull_all(&mut h);
    let _ = event_types(&mut h);
    assert!(h.push_event(gst::event::SegmentDone::new(
        gst::GenericFormattedValue::from(FRAME * 4)
    )));
    let generated = pull_all(&mut h);
    assert_eq!(
        generated.len(),
        3,
        "the new frames at the segment seek's end"
    );
    assert_generated_frames(&generated, 4);
    assert_eq!(event_types(&mut h), vec![gst::EventType::SegmentDone]);
}

/// On 557ab08 this fails at RGBA already: the kept pixels' alpha became 255 (every frame was
/// rewritten whole, through 8-bit RGB).
#[test]
fn replace_background_keeps_the_source_samples_in_every_format() {
    for format in FORMATS {
        let mut h = element_harness(&format!(
            "soragen model={TINY_MODEL} steps=2 mode=replace-background frames=1 prompt=\"a harbour\" seed=7"
        ));
        let bus = bus_for(&h);
        let mut mask = Harness::with_element(&h.element().unwrap(), Some("mask"), None);
        mask.set_src_caps_str(&format!(
            "video/x-raw,format=GRAY8,width={SIZE},height={SIZE},framerate=16/1"
        ));
        h.set_src_caps_str(&caps(format));
        h.play();
        // The left half is background.
        let matte: Vec<u8> = (0..SIZE * SIZE)
            .map(|i| if i % SIZE < SIZE / 2 { 255 } else { 0 })
            .collect();
        let mut matte = gst::Buffer::from_mut_slice(matte);
        matte.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        matte.get_mut().unwrap().set_duration(FRAME);
        let masks = push_masks(mask, vec![matte]);
        let info =
            gst_video::VideoInfo::from_caps(&gst::Caps::from_str(&caps(format)).unwrap()).unwrap();
        // Samples that do not survive RGB and back: a ramp of unusual levels.
        let bytes: Vec<u8> = (0..info.size())
            .map(|i| (17 + (i * 37) % 220) as u8)
            .collect();
        let mut input = gst::Buffer::from_mut_slice(bytes.clone());
        input.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        input.get_mut().unwrap().set_duration(FRAME);
        h.push(input).unwrap();
        assert!(h.push_event(gst::event::Eos::new()));
        // The mask harness holds the mask pad: it stays until the output is pulled.
        let _mask = masks.join().unwrap();
        let output = pull_all(&mut h);
        if let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
            let gst::MessageView::Error(error) = message.view() else {
                unreachable!()
            };
            panic!("{format}: {}", error.error());
        }
        assert_eq!(output.len(), 1, "{format}");
        assert!(is_generated(&output[0]));
        let out = output[0].map_readable().unwrap();
        // Kept: the right half beyond the dilated (4) and feathered (2) edge, x >= 24.
        let finfo = info.format_info();
        let mut compared = 0;
        for component in 0..finfo.n_components() as u8 {
            let c = component as usize;
            let (plane, offset, step) = (
                finfo.plane()[c] as usize,
                info.offset()[finfo.plane()[c] as usize],
                finfo.pixel_stride()[c] as usize,
            );
            let stride = info.stride()[plane] as usize;
            for sy in 0..finfo.scale_height(component, SIZE) as usize {
                for sx in 0..finfo.scale_width(component, SIZE) as usize {
                    if (sx << finfo.w_sub()[c]) < 24 {
                        continue;
                    }
                    let at = offset + sy * stride + sx * step + finfo.poffset()[c] as usize;
                    assert_eq!(
                        out[at], bytes[at],
                        "{format}: component {c} sample ({sx}, {sy}) changed"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 0);
        let left_changed = (0..SIZE as usize)
            .any(|y| out[y * info.stride()[0] as usize] != bytes[y * info.stride()[0] as usize]);
        assert!(left_changed, "{format}: the background was regenerated");
    }
}

#[test]
fn a_live_insert_goes_out_on_time_without_a_queue() {
    init();
    // 3 s of live video; 8 frames inserted at 1 s; a clock-synchronised sink that drops what
    // comes more than 20 ms late (as video sinks do), and no queue after soragen.
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc is-live=true num-buffers=48 pattern=ball ! video/x-raw,format=RGBA,width=64,height=48,framerate=16/1 ! \
         soragen mode=insert frames=8 context-frames=2 steps=2 processing-latency=2000000000 model={TINY_MODEL} \
         insert-at=\"<(guint64)1000000000>\" ! fakesink name=sink sync=true qos=true max-lateness=20000000"
    ))
    .unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS");
    assert_eq!(message.type_(), gst::MessageType::Eos, "{message:?}");
    let sink = pipeline
        .downcast_ref::<gst::Bin>()
        .unwrap()
        .by_name("sink")
        .unwrap();
    let stats = sink.property::<gst::Structure>("stats");
    pipeline.set_state(gst::State::Null).unwrap();
    eprintln!("live insert: {stats}");
    assert_eq!(
        stats.get::<u64>("dropped").unwrap(),
        0,
        "no frame late: {stats}"
    );
    assert_eq!(
        stats.get::<u64>("rendered").unwrap(),
        56,
        "48 frames + 8 new ones: {stats}"
    );
}

#[test]
fn replace_background_progress_counts_the_windows_of_the_stream() {
    // 12 frames in the core's windows of 5 after 1 frame of context: 0..5, 5..9, 9..12.
    let mut h = harness("mode=replace-background window-frames=5 context-frames=1 steps=1");
    let bus = bus_for(&h);
    assert!(h.push_event(segment_with(1.0, Some(FRAME * 12))));
    let mut transparent = frame(0);
    for index in 0..12 {
        // Transparent pixels (alpha 0 < 128) are background.
        transparent = frame(index);
        transparent
            .get_mut()
            .unwrap()
            .map_writable()
            .unwrap()
            .iter_mut()
            .skip(3)
            .step_by(4)
            .for_each(|a| *a = 0);
        h.push(transparent.clone()).unwrap();
    }
    drop(transparent);
    assert!(h.push_event(gst::event::Eos::new()));
    settle(&h);
    let windows: Vec<(u32, u32)> = (0..3)
        .map(|_| {
            let s = wait_for_progress(&bus);
            (s.get("window").unwrap(), s.get("windows").unwrap())
        })
        .collect();
    assert_eq!(windows, vec![(0, 3), (1, 3), (2, 3)]);
}

/// A LoRA adapter of `models/fixtures/lora` (made for the tiny model).
fn adapter(name: &str) -> String {
    format!(
        "{}/../models/fixtures/lora/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// The bytes of the frames extend-forward generates after 4 frames, with `properties`.
fn extension(properties: &str) -> Vec<Vec<u8>> {
    let mut h = harness(&format!(
        "mode=extend-forward frames=2 context-frames=2 prompt=\"a harbour\" seed=3 {properties}"
    ));
    for index in 0..4 {
        h.push(frame(index)).unwrap();
    }
    pull_all(&mut h);
    assert!(h.push_event(gst::event::Eos::new()));
    let generated = pull_all(&mut h);
    assert_eq!(generated.len(), 2, "{properties}");
    generated
        .iter()
        .map(|b| b.map_readable().unwrap().as_slice().to_vec())
        .collect()
}

/// `lora`, `preset` and `step-cache` reach the generation (on both elements: they are
/// shared settings): each changes the frames. `lora` is fixed from READY -> PAUSED like `model`.
#[test]
fn lora_preset_and_step_cache_change_the_frames() {
    let base = extension("");
    let adapted = extension(&format!("lora=\"{}:0.5\"", adapter("wan_ab.safetensors")));
    assert!(adapted != base, "the adapter did not change the frames");
    assert!(
        extension("preset=distill-4") != base,
        "the preset did not change the frames"
    );
    let uncached = extension("steps=6 guidance=1");
    assert!(
        extension("steps=6 guidance=1 step-cache=first-block:0.9") != uncached,
        "the step cache did not change the frames"
    );

    let h = harness(&format!("lora=\"{}\"", adapter("peft.safetensors")));
    let element = h.element().unwrap();
    element.set_property("lora", adapter("wan.safetensors"));
    assert_eq!(
        element.property::<Option<String>>("lora"),
        Some(format!("{}:1", adapter("peft.safetensors"))),
        "lora changed while playing"
    );
    element.set_property("step-cache", "sometimes");
    assert_eq!(element.property::<String>("step-cache"), "none");
}

/// An adapter that does not fit the model fails READY -> PAUSED with an error on the bus naming
/// the key and the file, as a bad model does; so does a missing file.
#[test]
fn a_bad_adapter_fails_ready_to_paused_with_a_message() {
    init();
    let bad = std::env::temp_dir().join(format!(
        "soragen-gst-bad-lora-{}.safetensors",
        std::process::id()
    ));
    let key = "transformer.blocks.9.attn1.to_q.lora_A.weight";
    let tensors = std::collections::HashMap::from([
        (
            key.to_string(),
            candle_core::Tensor::zeros((2, 32), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap(),
        ),
        (
            "transformer.blocks.9.attn1.to_q.lora_B.weight".to_string(),
            candle_core::Tensor::zeros((32, 2), candle_core::DType::F32, &candle_core::Device::Cpu)
                .unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&tensors, &bad).unwrap();
    let missing = std::env::temp_dir().join("soragen-gst-missing-lora.safetensors");
    for (lora, expected) in [(&bad, key), (&missing, "soragen-gst-missing-lora")] {
        for factory in ["soragen", "soragensrc"] {
            let element = gst::ElementFactory::make(factory)
                .property("model", TINY_MODEL)
                .property("lora", lora.to_str().unwrap())
                .build()
                .unwrap();
            if factory == "soragen" {
                element.set_property_from_str("mode", "extend-forward");
            }
            let bus = gst::Bus::new();
            element.set_bus(Some(&bus));
            assert!(element.set_state(gst::State::Paused).is_err(), "{factory}");
            let text = error_text(&bus);
            assert!(text.contains(expected), "{factory}: {text}");
            element.set_state(gst::State::Null).unwrap();
        }
    }
    std::fs::remove_file(&bad).unwrap();
}
