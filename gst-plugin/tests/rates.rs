//! One request, the same frames on every surface: `soragen mode=extend-forward` on a stream
//! equals the core's task on the whole clip (what the CLI runs) at 16, 24, 25 and 29.97 fps.
//! The element keeps the source frames next to the cut that the task picks 1/16 s apart
//! (`tasks::context_span`); before, it kept exactly `context-frames`, too few above 16 fps.
//! (ofx-plugin/tests/rates.rs checks the OpenFX bundle the same way.)

mod common;

use common::{TINY_MODEL, init};
use gst::prelude::*;
use gst_check::Harness;
use soragen_core::tasks::{TaskInputs, TaskKind, TaskParams, run_task};
use soragen_core::vace::Silent;
use soragen_core::video::{Frame, Video};

const SIZE: usize = 32;

/// Frame `index` of a moving gradient, RGBA, opaque.
fn pixels(index: usize) -> Vec<u8> {
    (0..SIZE * SIZE)
        .flat_map(|i| {
            let (x, y) = (i % SIZE, i / SIZE);
            [
                (x * 7 + index * 9) as u8,
                (y * 5 + index * 3) as u8,
                ((x + y) * 3 + index * 11) as u8,
                255,
            ]
        })
        .collect()
}

fn frame_of(rgba: &[u8]) -> Frame {
    let rgb: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let alpha: Vec<u8> = rgba.chunks_exact(4).map(|p| p[3]).collect();
    Frame::from_8bit(&rgb, Some(&alpha))
}

const RATES: [(u64, u64); 4] = [(16, 1), (24, 1), (25, 1), (30000, 1001)];

/// Pushes frames `indices` (their pictures and places on the frame grid) through `soragen`
/// with `properties` at `num/den` fps, then EOS; returns every buffer it pushes.
fn through_element(
    properties: &str,
    (num, den): (u64, u64),
    indices: &[usize],
) -> Vec<gst::Buffer> {
    init();
    let element = gst::parse::launch(&format!(
        "soragen model={TINY_MODEL} device=cpu steps=2 guidance=1 seed=7 prompt=\"a harbour\" {properties}"
    ))
    .unwrap();
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGBA,width={SIZE},height={SIZE},framerate={num}/{den}"
    ));
    h.play();
    let duration = gst::ClockTime::SECOND.mul_div_round(den, num).unwrap();
    for &index in indices {
        let mut buffer = gst::Buffer::from_mut_slice(pixels(index));
        let b = buffer.get_mut().unwrap();
        b.set_pts(
            gst::ClockTime::SECOND
                .mul_div_round(index as u64 * den, num)
                .unwrap(),
        );
        b.set_duration(duration);
        h.push(buffer).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    std::iter::from_fn(|| h.pull_until_eos().ok().flatten()).collect()
}

fn rgb_of(buffers: &[gst::Buffer]) -> Vec<Vec<u8>> {
    buffers
        .iter()
        .map(|b| frame_of(b.map_readable().unwrap().as_slice()).rgb_8bit())
        .collect()
}

fn clip(indices: std::ops::Range<usize>, (num, den): (u64, u64)) -> Video {
    let mut clip = Video::new(SIZE, SIZE, Some((num as u32, den as u32)));
    clip.frames = indices.map(|index| frame_of(&pixels(index))).collect();
    clip
}

/// The core's whole task (what the CLI runs), RGB of the output frames in `range`.
fn core_frames(
    kind: TaskKind,
    inputs: TaskInputs,
    context: usize,
    range: std::ops::Range<usize>,
) -> Vec<Vec<u8>> {
    let model = soragen_core::model::WanVace::shared(
        std::path::Path::new(TINY_MODEL),
        candle_core::DType::F32,
    )
    .unwrap();
    let params = TaskParams {
        prompt: "a harbour".into(),
        seed: 7,
        steps: 2,
        guidance: 1.0,
        context_frames: context,
        ..TaskParams::default()
    };
    let whole = run_task(&model, &kind, &inputs, &params, &Silent).unwrap();
    whole.video.frames[range]
        .iter()
        .map(Frame::rgb_8bit)
        .collect()
}

/// A 12-frame clip extended by 4 frames in `mode`: the element's new frames (`new` of its
/// output) against the core's whole task, at every rate.
fn extension_equals_the_core_task(mode: &str, kind: TaskKind, new: std::ops::Range<usize>) {
    let (count, context) = (12, 3);
    for rate in RATES {
        let out = through_element(
            &format!("mode={mode} frames={} context-frames={context}", new.len()),
            rate,
            &(0..count).collect::<Vec<_>>(),
        );
        let expected = core_frames(
            kind.clone(),
            TaskInputs {
                clip: Some(clip(0..count, rate)),
                ..TaskInputs::default()
            },
            context,
            new.clone(),
        );
        assert!(
            rgb_of(&out[new.clone()]) == expected,
            "{rate:?} fps: the element's {mode} differs from the core's on the whole clip"
        );
    }
}

#[test]
fn an_extension_equals_the_core_task_on_the_whole_clip_at_every_rate() {
    extension_equals_the_core_task(
        "extend-forward",
        TaskKind::ExtendForward { frames: 4 },
        12..16,
    );
}

#[test]
fn an_extension_backward_equals_the_core_task_on_the_whole_clip_at_every_rate() {
    extension_equals_the_core_task(
        "extend-backward",
        TaskKind::ExtendBackward { frames: 4 },
        0..4,
    );
}

/// Two pieces with a jump of exactly the new frames between them.
#[test]
fn an_insert_equals_the_core_task_on_the_whole_clips_at_every_rate() {
    let (count, frames, context) = (12, 5, 3);
    for rate in RATES {
        let indices: Vec<usize> = (0..count)
            .chain(count + frames..2 * count + frames)
            .collect();
        let out = through_element(
            &format!("mode=insert frames={frames} context-frames={context}"),
            rate,
            &indices,
        );
        let expected = core_frames(
            TaskKind::Insert { frames },
            TaskInputs {
                clip: Some(clip(0..count, rate)),
                next: Some(clip(count + frames..2 * count + frames, rate)),
                ..TaskInputs::default()
            },
            context,
            count..count + frames,
        );
        assert!(
            rgb_of(&out[count..count + frames]) == expected,
            "{rate:?} fps: the element's insert differs from the core's"
        );
    }
}

/// Frame `index` with a transparent left third: the background to replace.
fn with_background(index: usize) -> Vec<u8> {
    let mut rgba = pixels(index);
    for (i, pixel) in rgba.chunks_exact_mut(4).enumerate() {
        if i % SIZE < SIZE / 3 {
            pixel[3] = 0;
        }
    }
    rgba
}

/// 20 frames in windows of 9 after 2 frames of context: three model windows, each after the
/// frames the one before made, as the core runs them on the whole clip (before, the element cut
/// the stream into windows of `frames`, each on its own).
#[test]
fn a_long_background_replacement_equals_the_core_task_on_the_whole_clip() {
    init();
    let count = 20;
    let element = gst::parse::launch(&format!(
        "soragen model={TINY_MODEL} device=cpu steps=2 guidance=1 seed=7 prompt=\"a harbour\" \
         mode=replace-background context-frames=2 window-frames=9"
    ))
    .unwrap();
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGBA,width={SIZE},height={SIZE},framerate=24/1"
    ));
    h.play();
    for index in 0..count {
        let mut buffer = gst::Buffer::from_mut_slice(with_background(index));
        let b = buffer.get_mut().unwrap();
        b.set_pts(
            gst::ClockTime::SECOND
                .mul_div_round(index as u64, 24)
                .unwrap(),
        );
        h.push(buffer).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let out: Vec<gst::Buffer> = std::iter::from_fn(|| h.pull_until_eos().ok().flatten()).collect();
    assert_eq!(out.len(), count);

    let mut clip = Video::new(SIZE, SIZE, Some((24, 1)));
    clip.frames = (0..count).map(|i| frame_of(&with_background(i))).collect();
    let model = soragen_core::model::WanVace::shared(
        std::path::Path::new(TINY_MODEL),
        candle_core::DType::F32,
    )
    .unwrap();
    let params = TaskParams {
        prompt: "a harbour".into(),
        seed: 7,
        steps: 2,
        guidance: 1.0,
        context_frames: 2,
        window_frames: 9,
        ..TaskParams::default()
    };
    let inputs = TaskInputs {
        clip: Some(clip),
        ..TaskInputs::default()
    };
    let whole = run_task(
        &model,
        &TaskKind::ReplaceBackground,
        &inputs,
        &params,
        &Silent,
    )
    .unwrap();
    let expected: Vec<Vec<u8>> = whole.video.frames.iter().map(Frame::rgb_8bit).collect();
    assert!(
        rgb_of(&out) == expected,
        "the element's replacement differs from the core's on the whole clip"
    );
}

/// `soragensrc` makes what `soragen generate` makes: 20 frames in the core's windows of 17
/// after 8 frames of context (0..17, then 17..20 after 9..17), at any rate it is asked for.
#[test]
fn a_long_generated_clip_equals_the_core_task() {
    init();
    let count = 20;
    let element = gst::parse::launch(&format!(
        "soragensrc model={TINY_MODEL} device=cpu steps=2 guidance=1 seed=7 prompt=\"a harbour\" \
         num-frames={count} window-frames=17"
    ))
    .unwrap();
    let mut h = Harness::with_element(&element, None, Some("src"));
    h.set_sink_caps_str(&format!(
        "video/x-raw,format=RGBA,width={SIZE},height={SIZE},framerate=30000/1001"
    ));
    h.play();
    let out: Vec<gst::Buffer> = (0..count).map(|_| h.pull().unwrap()).collect();

    let model = soragen_core::model::WanVace::shared(
        std::path::Path::new(TINY_MODEL),
        candle_core::DType::F32,
    )
    .unwrap();
    let params = TaskParams {
        prompt: "a harbour".into(),
        seed: 7,
        steps: 2,
        guidance: 1.0,
        window_frames: 17,
        ..TaskParams::default()
    };
    let kind = TaskKind::Generate {
        frames: count,
        width: SIZE,
        height: SIZE,
    };
    let whole = run_task(&model, &kind, &TaskInputs::default(), &params, &Silent).unwrap();
    let expected: Vec<Vec<u8>> = whole.video.frames.iter().map(Frame::rgb_8bit).collect();
    assert!(
        rgb_of(&out) == expected,
        "soragensrc differs from the core's generate"
    );
}
