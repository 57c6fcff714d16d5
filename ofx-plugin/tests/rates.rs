//! One request, the same frames on every surface: an extension through the OpenFX bundle
//! equals the core's task on the whole clip (what the CLI runs) at 16, 24, 25 and 29.97 fps.
//! The plugin reads the clip's rate and hands the task the source frames next to the cut that
//! it picks 1/16 s apart; before, it passed no rate and the frames it fetched were too few above
//! 16 fps. (gst-plugin/tests/rates.rs checks the GStreamer element the same way.)

mod common;

use common::*;
use soragen_core::tasks::{TaskInputs, TaskKind, TaskParams, run_task};
use soragen_core::vace::Silent;
use soragen_core::video::{Frame, Video, rate_from_f64};
use soragen_ofx_ffi::sys::*;
use soragen_ofx_host::{Components, Depth, Pixels, Profile};

/// An 8-bit RGBA picture as the core's frame (rows top-down).
fn frame_of(pixels: &Pixels) -> Frame {
    let (mut rgb, mut alpha) = (Vec::new(), Vec::new());
    for y in (pixels.bounds.y1..pixels.bounds.y2).rev() {
        for pixel in pixels.row(y).chunks_exact(4) {
            rgb.extend_from_slice(&pixel[..3]);
            alpha.push(pixel[3]);
        }
    }
    Frame {
        rgb,
        alpha: Some(alpha),
    }
}

#[test]
fn an_extension_equals_the_core_task_on_the_whole_clip_at_every_rate() {
    let host = common::host(Profile::RESOLVE);
    let model =
        soragen_core::model::WanVace::shared(&tiny_model(), candle_core::DType::F32).unwrap();
    let (frames, context) = (4, 3);
    for rate in [16.0, 24.0, 25.0, 30000.0 / 1001.0] {
        let source = footage(0, 12, Depth::Byte, Components::Rgba, false, 11);
        let mut setup = setup(
            kOfxImageEffectContextGeneral,
            vec![(SOURCE, source.clone())],
            Depth::Byte,
            Components::Rgba,
        );
        setup.frame_rate = rate;
        let instance = host.instance(EXTEND, setup).unwrap();
        quick(&instance, frames, context);
        let from_ofx: Vec<Frame> = (12..16)
            .map(|t| frame_of(&instance.render(t as f64).unwrap()))
            .collect();

        let mut clip = Video::new(SIZE.0, SIZE.1, rate_from_f64(rate));
        clip.frames = source.frames.values().map(frame_of).collect();
        let params = TaskParams {
            prompt: "a red kite over the sea".into(),
            negative_prompt: String::new(),
            seed: 0,
            steps: 2,
            guidance: 1.0,
            context_frames: context as usize,
            ..TaskParams::default()
        };
        let inputs = TaskInputs {
            clip: Some(clip),
            ..TaskInputs::default()
        };
        let whole = run_task(
            &model,
            &TaskKind::ExtendForward {
                frames: frames as usize,
            },
            &inputs,
            &params,
            &Silent,
        )
        .unwrap();
        let expected: Vec<Vec<u8>> = whole.video.frames[12..]
            .iter()
            .map(|f| f.rgb.clone())
            .collect();
        let got: Vec<Vec<u8>> = from_ofx.iter().map(|f| f.rgb.clone()).collect();
        assert!(
            got == expected,
            "{rate} fps: the OpenFX extension differs from the core's on the whole clip"
        );
    }
}
