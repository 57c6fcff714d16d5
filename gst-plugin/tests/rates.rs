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
    let rgb = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    Frame {
        rgb,
        alpha: Some(rgba.chunks_exact(4).map(|p| p[3]).collect()),
    }
}

#[test]
fn an_extension_equals_the_core_task_on_the_whole_clip_at_every_rate() {
    init();
    let model = soragen_core::model::WanVace::shared(
        std::path::Path::new(TINY_MODEL),
        candle_core::DType::F32,
    )
    .unwrap();
    let (count, frames, context) = (12, 4, 3);
    for (num, den) in [(16, 1), (24, 1), (25, 1), (30000, 1001)] {
        let element = gst::parse::launch(&format!(
            "soragen model={TINY_MODEL} device=cpu mode=extend-forward frames={frames} context-frames={context} \
             steps=2 guidance=1 seed=7 prompt=\"a harbour\""
        ))
        .unwrap();
        let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
        h.set_src_caps_str(&format!(
            "video/x-raw,format=RGBA,width={SIZE},height={SIZE},framerate={num}/{den}"
        ));
        h.play();
        let duration = gst::ClockTime::SECOND.mul_div_round(den, num).unwrap();
        for index in 0..count {
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
        let out: Vec<gst::Buffer> = std::iter::from_fn(|| h.pull().ok())
            .take(count + frames)
            .collect();
        let generated: Vec<Vec<u8>> = out[count..]
            .iter()
            .map(|b| frame_of(b.map_readable().unwrap().as_slice()).rgb)
            .collect();

        let mut clip = Video::new(SIZE, SIZE, Some((num as u32, den as u32)));
        clip.frames = (0..count).map(|index| frame_of(&pixels(index))).collect();
        let params = TaskParams {
            prompt: "a harbour".into(),
            seed: 7,
            steps: 2,
            guidance: 1.0,
            context_frames: context,
            ..TaskParams::default()
        };
        let inputs = TaskInputs {
            clip: Some(clip),
            ..TaskInputs::default()
        };
        let whole = run_task(
            &model,
            &TaskKind::ExtendForward { frames },
            &inputs,
            &params,
            &Silent,
        )
        .unwrap();
        let expected: Vec<Vec<u8>> = whole.video.frames[count..]
            .iter()
            .map(|f| f.rgb.clone())
            .collect();
        assert!(
            generated == expected,
            "{num}/{den} fps: the element's extension differs from the core's on the whole clip"
        );
    }
}
