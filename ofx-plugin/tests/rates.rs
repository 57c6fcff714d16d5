//! One request, the same frames on every surface: each task through the OpenFX bundle equals
//! the core's task on the whole clip (what the CLI runs), at 16, 24, 25 and 29.97 fps.
//! - Extensions and inserts: the plugin reads the clip's rate and hands the task the source
//!   frames next to the cut that it picks 1/16 s apart (`tasks::context_span`); before, it passed
//!   no rate and the frames it fetched were too few above 16 fps.
//! - Replace background and generate: the plugin runs the core's model windows one at a time,
//!   each after the frames the previous one made (`tasks::whole_frame_windows`); before, it cut
//!   the clip into windows of its own, each on its own.
//!
//! (gst-plugin/tests/rates.rs checks the GStreamer element the same way.)

mod common;

use std::ffi::CStr;

use common::*;
use soragen_core::tasks::{TaskInputs, TaskKind, TaskParams, run_task};
use soragen_core::vace::Silent;
use soragen_core::video::{Frame, Video, rate_from_f64};
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Footage, Instance, Pixels, Profile, Value};

const RATES: [f64; 4] = [16.0, 24.0, 25.0, 30000.0 / 1001.0];
const PROMPT: &str = "a red kite over the sea";
const NEXT: &CStr = c"Next";

/// An 8-bit RGBA picture as the core's frame (rows top-down).
fn frame_of(pixels: &Pixels) -> Frame {
    let (mut rgb, mut alpha) = (Vec::new(), Vec::new());
    for y in (pixels.bounds.y1..pixels.bounds.y2).rev() {
        for pixel in pixels.row(y).chunks_exact(4) {
            rgb.extend_from_slice(&pixel[..3]);
            alpha.push(pixel[3]);
        }
    }
    Frame::from_8bit(&rgb, Some(&alpha))
}

fn clip_of(footage: &Footage, rate: f64) -> Video {
    let mut clip = Video::new(SIZE.0, SIZE.1, rate_from_f64(rate));
    clip.frames = footage.frames.values().map(frame_of).collect();
    clip
}

/// The settings `quick` and `windowFrames` give the effects, as the core's parameters.
fn params(context: usize, window_frames: usize) -> TaskParams {
    TaskParams {
        prompt: PROMPT.into(),
        seed: 0,
        steps: 2,
        guidance: 1.0,
        context_frames: context,
        window_frames,
        ..TaskParams::default()
    }
}

/// The core's whole task, RGB of the output frames in `range`.
fn core_frames(
    kind: TaskKind,
    inputs: TaskInputs,
    params: &TaskParams,
    range: std::ops::Range<usize>,
) -> Vec<Vec<u8>> {
    let model =
        soragen_core::model::WanVace::shared(&tiny_model(), candle_core::DType::F32).unwrap();
    let whole = run_task(&model, &kind, &inputs, params, &Silent).unwrap();
    whole.video.frames[range]
        .iter()
        .map(Frame::rgb_8bit)
        .collect()
}

fn ofx_frames(instance: &Instance, times: std::ops::Range<i64>) -> Vec<Vec<u8>> {
    times
        .map(|t| frame_of(&instance.render(t as f64).unwrap()).rgb_8bit())
        .collect()
}

fn general(inputs: Vec<(&'static CStr, Footage)>, rate: f64) -> soragen_ofx_host::Setup {
    let mut setup = setup(
        kOfxImageEffectContextGeneral,
        inputs,
        Depth::Byte,
        Components::Rgba,
    );
    setup.frame_rate = rate;
    setup
}

#[test]
fn an_extension_forward_equals_the_core_task_on_the_whole_clip_at_every_rate() {
    let host = common::host(Profile::RESOLVE);
    let (frames, context) = (4, 3);
    for rate in RATES {
        let source = footage(0, 12, Depth::Byte, Components::Rgba, false, 11);
        let instance = host
            .instance(EXTEND, general(vec![(SOURCE, source.clone())], rate))
            .unwrap();
        quick(&instance, frames, context);
        let expected = core_frames(
            TaskKind::ExtendForward {
                frames: frames as usize,
            },
            TaskInputs {
                clip: Some(clip_of(&source, rate)),
                ..TaskInputs::default()
            },
            &params(context as usize, 81),
            12..16,
        );
        assert!(
            ofx_frames(&instance, 12..16) == expected,
            "{rate} fps: the OpenFX extension differs from the core's on the whole clip"
        );
    }
}

#[test]
fn an_extension_backward_equals_the_core_task_on_the_whole_clip_at_every_rate() {
    let host = common::host(Profile::RESOLVE);
    let (frames, context) = (4, 3);
    for rate in RATES {
        // The clip starts at frame 4: the new frames are 0..4.
        let source = footage(4, 12, Depth::Byte, Components::Rgba, false, 12);
        let instance = host
            .instance(EXTEND, general(vec![(SOURCE, source.clone())], rate))
            .unwrap();
        quick(&instance, frames, context);
        instance.set("direction", Value::Int(1));
        let expected = core_frames(
            TaskKind::ExtendBackward {
                frames: frames as usize,
            },
            TaskInputs {
                clip: Some(clip_of(&source, rate)),
                ..TaskInputs::default()
            },
            &params(context as usize, 81),
            0..4,
        );
        assert!(
            ofx_frames(&instance, 0..4) == expected,
            "{rate} fps: the OpenFX extension backward differs from the core's"
        );
    }
}

#[test]
fn an_insert_equals_the_core_task_on_the_whole_clips_at_every_rate() {
    let host = common::host(Profile::RESOLVE);
    let (frames, context) = (5, 3);
    for rate in RATES {
        let a = footage(0, 12, Depth::Byte, Components::Rgba, false, 13);
        let b = footage(0, 12, Depth::Byte, Components::Rgba, false, 14);
        let instance = host
            .instance(
                INSERT,
                general(vec![(SOURCE, a.clone()), (NEXT, b.clone())], rate),
            )
            .unwrap();
        quick(&instance, frames, context);
        let expected = core_frames(
            TaskKind::Insert {
                frames: frames as usize,
            },
            TaskInputs {
                clip: Some(clip_of(&a, rate)),
                next: Some(clip_of(&b, rate)),
                ..TaskInputs::default()
            },
            &params(context as usize, 81),
            12..17,
        );
        assert!(
            ofx_frames(&instance, 12..17) == expected,
            "{rate} fps: the OpenFX insert differs from the core's"
        );
    }
}

/// 20 frames in windows of 9 after 2 frames of context: three windows, each reading the last
/// frames of the one before.
#[test]
fn a_long_background_replacement_equals_the_core_task_on_the_whole_clip() {
    let host = common::host(Profile::RESOLVE);
    let source = footage(0, 20, Depth::Byte, Components::Rgba, false, 15);
    let instance = host
        .instance(
            REPLACE_BACKGROUND,
            general(vec![(SOURCE, source.clone())], 24.0),
        )
        .unwrap();
    quick(&instance, 4, 2);
    instance.set("windowFrames", Value::Int(9));
    let expected = core_frames(
        TaskKind::ReplaceBackground,
        TaskInputs {
            clip: Some(clip_of(&source, 24.0)),
            ..TaskInputs::default()
        },
        &params(2, 9),
        0..20,
    );
    // The last frame first: a render reaches back for the windows it continues.
    let last = ofx_frames(&instance, 19..20);
    let got = ofx_frames(&instance, 0..20);
    assert!(last[0] == got[19]);
    assert!(
        got == expected,
        "the OpenFX replacement differs from the core's on the whole clip"
    );
    assert_eq!(instance.log().progress_starts, 3, "each window made once");
}

#[test]
fn a_long_generated_clip_equals_the_core_task() {
    let host = common::host(Profile::RESOLVE);
    let mut setup = setup(
        kOfxImageEffectContextGenerator,
        vec![],
        Depth::Byte,
        Components::Rgba,
    );
    setup.effect_range = Some((0.0, 19.0));
    let instance = host.instance(GENERATE, setup).unwrap();
    quick(&instance, 20, 2);
    instance.set("windowFrames", Value::Int(9));
    let expected = core_frames(
        TaskKind::Generate {
            frames: 20,
            width: SIZE.0,
            height: SIZE.1,
        },
        TaskInputs::default(),
        &params(2, 9),
        0..20,
    );
    // The last frame first: it needs the two windows before it, made on the way.
    let last = ofx_frames(&instance, 19..20);
    assert_eq!(instance.log().progress_starts, 3);
    let got = ofx_frames(&instance, 0..20);
    assert!(last[0] == got[19]);
    assert!(
        got == expected,
        "the OpenFX generator differs from the core's generate"
    );
}
