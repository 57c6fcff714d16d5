//! A measure of subject consistency over a long extension (several model windows): each
//! window's frames against the reference image as the model sees it (`tasks::likeness`:
//! colour and structure), with and without the reference. On the tiny random model the numbers
//! say nothing about how well a real model keeps a subject; the test records them, checks that
//! the reference reaches every window (each window's measure moves with it), and is where a
//! run with real weights would record its own.

use std::path::PathBuf;

use candle_core::DType;
use soragen_core::model::WanVace;
use soragen_core::tasks::{Likeness, TaskInputs, TaskKind, TaskParams, likeness, run_task};
use soragen_core::vace::{Silent, fit_reference};
use soragen_core::video::{Frame, Video};

/// New frames per window: 9-frame windows, 2 of them context.
const NEW_PER_WINDOW: usize = 7;
const WINDOWS: usize = 3;
const SOURCE: usize = 4;

fn params() -> TaskParams {
    TaskParams {
        prompt: "a red coat".into(),
        steps: 2,
        guidance: 1.0,
        context_frames: 2,
        working_pixels: Some(32 * 16),
        window_frames: 9,
        color_match: false,
        ..TaskParams::default()
    }
}

fn image(width: usize, height: usize, paint: impl Fn(usize, usize) -> [u8; 3]) -> Video {
    let mut video = Video::new(width, height, Some((16, 1)));
    let rgb: Vec<u8> = (0..width * height)
        .flat_map(|i| paint(i % width, i / width))
        .collect();
    video.frames.push(Frame::from_8bit(&rgb, None));
    video
}

/// The reference as the model sees it at the clip's size, as a frame.
fn as_seen(reference: &Video, width: usize, height: usize) -> Frame {
    let planes = fit_reference(reference, width, height).unwrap();
    let plane = width * height;
    let rgb: Vec<u8> = (0..plane)
        .flat_map(|i| (0..3).map(move |c| c * plane + i))
        .map(|at| ((planes[at] + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8)
        .collect();
    Frame::from_8bit(&rgb, None)
}

/// Mean likeness of each window's new frames to `seen`.
fn per_window(video: &Video, seen: &Frame) -> Vec<Likeness> {
    (0..WINDOWS)
        .map(|w| {
            let start = SOURCE + w * NEW_PER_WINDOW;
            let frames = &video.frames[start..start + NEW_PER_WINDOW];
            let all: Vec<Likeness> = frames.iter().map(|f| likeness(f, seen)).collect();
            let n = all.len() as f64;
            Likeness {
                colour: all.iter().map(|l| l.colour).sum::<f64>() / n,
                structure: all.iter().map(|l| l.structure).sum::<f64>() / n,
            }
        })
        .collect()
}

#[test]
fn subject_consistency_across_windows_with_and_without_a_reference() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
    let model = WanVace::shared(&folder, DType::F32).unwrap();
    let (width, height) = (40, 20);
    let mut source = Video::new(width, height, Some((16, 1)));
    for f in 0..SOURCE {
        let frame = image(width, height, |x, y| {
            [
                (60 + x + f) as u8,
                (50 + y * 3) as u8,
                (90 + (x * y) % 40) as u8,
            ]
        });
        source.frames.extend(frame.frames);
    }
    // A red subject on white, of another size and aspect than the clip.
    let reference = image(24, 40, |x, y| {
        if (6..18).contains(&x) && y > 8 {
            [200, 30, 40]
        } else {
            [255, 255, 255]
        }
    });
    let seen = as_seen(&reference, width, height);
    let kind = TaskKind::ExtendForward {
        frames: WINDOWS * NEW_PER_WINDOW,
    };
    let run = |references: Vec<Video>| {
        let inputs = TaskInputs {
            clip: Some(source.clone()),
            references,
            ..TaskInputs::default()
        };
        run_task(&model, &kind, &inputs, &params(), &Silent).unwrap()
    };
    let without = per_window(&run(vec![]).video, &seen);
    let with_output = run(vec![reference.clone()]);
    let with = per_window(&with_output.video, &seen);
    for (w, (a, b)) in without.iter().zip(&with).enumerate() {
        println!(
            "window {w}: colour {:.1} without the reference, {:.1} with; structure {:.1} without, {:.1} with",
            a.colour, b.colour, a.structure, b.structure
        );
        assert!(
            a != b,
            "window {w}: the reference must reach every window ({a:?})"
        );
        assert!(b.colour.is_finite() && b.structure.is_finite());
    }
    let drift = |l: &[Likeness]| l[WINDOWS - 1].colour - l[0].colour;
    println!(
        "colour drift from the first to the last window: {:.1} without, {:.1} with",
        drift(&without),
        drift(&with)
    );
    assert_eq!(
        per_window(&run(vec![reference]).video, &seen),
        with,
        "deterministic"
    );
}
