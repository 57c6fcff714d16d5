//! Deep and colour-managed frames through the `soragen` binary on the tiny model: 16-bit PNG
//! and OpenEXR sequences keep every kept sample exactly, come back at their depth and in their
//! colour space, and generated frames are not stepped at 8 bits.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use soragen_core::colour_space::ColourSpace;
use soragen_core::video::{Depth, Frame, Video, write_frames_dir};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("soragen-colour-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `soragen extend` of 3 frames on the tiny model, with tiny settings.
fn extend(input: &Path, output: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_soragen"))
        .arg("extend")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .arg("--model")
        .arg(tiny())
        .args(["--frames", "3", "--steps", "2", "--guidance", "1"])
        .args(["--context-frames", "2", "--window-frames", "9"])
        .args(["--working-pixels", "512", "--prompt", "a boat"])
        .args(extra)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A 40x24 clip of 4 frames at `depth` whose samples come from `sample(frame, index)`.
fn clip(depth: Depth, sample: impl Fn(usize, usize) -> f32) -> Video {
    let mut video = Video::new(40, 24, Some((16, 1)));
    video.depth = depth;
    for f in 0..4 {
        let rgb = (0..40 * 24 * 3).map(|i| sample(f, i)).collect();
        video.frames.push(Frame { rgb, alpha: None });
    }
    video
}

/// The fewest distinct sample values any channel of `frames` holds.
fn fewest_levels(frames: &[Frame]) -> usize {
    (0..3)
        .map(|channel| {
            let mut levels: Vec<u32> = frames
                .iter()
                .flat_map(|f| f.rgb.iter().skip(channel).step_by(3))
                .map(|v| v.to_bits())
                .collect();
            levels.sort_unstable();
            levels.dedup();
            levels.len()
        })
        .min()
        .unwrap()
}

/// Runs `source` through `extend` and checks the result: the kept frames exactly the source's,
/// the output at the source's depth and in its space, and generated frames with more than 256
/// levels per channel. Returns the result.
fn extend_keeps_and_deepens(name: &str, source: &Video, extra: &[&str]) -> Video {
    let dir = scratch(name);
    write_frames_dir(source, &dir.join("in")).unwrap();
    let out = dir.join("out");
    let run = extend(&dir.join("in"), &out, extra);
    assert!(run.status.success(), "{}", stderr(&run));
    let result = Video::read(&out).unwrap();
    assert_eq!(result.len(), 7);
    assert_eq!(result.depth, source.depth, "written at the input's depth");
    assert!(
        result.frames[..4] == source.frames[..],
        "{name}: kept frames are the source's samples, bit for bit"
    );
    let levels = fewest_levels(&result.frames[4..]);
    assert!(
        levels > 256,
        "{name}: generated frames have only {levels} levels in a channel"
    );
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[test]
fn sixteen_bit_png_frames_keep_every_sample_and_gain_levels() {
    // Steps of one 16-bit level: an 8-bit path would merge them.
    let source = clip(Depth::Sixteen, |f, i| {
        (20_000 + (i * 37 + f * 501) % 9_000) as f32 / 65535.0
    });
    let result = extend_keeps_and_deepens("png16", &source, &[]);
    assert_eq!(result.colour, ColourSpace::Srgb);
}

#[test]
fn exr_frames_keep_values_beyond_zero_and_one_at_half_and_float() {
    for depth in [Depth::Half, Depth::Float] {
        // Scene-linear highlights up to 8 and negative (out-of-gamut) values, exact in halves.
        let source = clip(depth, |f, i| ((i * 13 + f * 7) % 641) as f32 / 64.0 - 2.0);
        assert!(source.frames[0].rgb.iter().any(|&v| v > 1.0));
        assert!(source.frames[0].rgb.iter().any(|&v| v < 0.0));
        let result = extend_keeps_and_deepens(&format!("exr-{depth:?}"), &source, &[]);
        assert_eq!(
            result.colour,
            ColourSpace::Linear,
            "OpenEXR is read as linear"
        );
    }
}

#[test]
fn the_colour_space_flag_changes_what_the_model_sees_and_names_are_checked() {
    // 16-bit levels, so that the PNG holds the samples exactly.
    let source = clip(Depth::Sixteen, |f, i| {
        ((i * 5 + f) % 900 * 60) as f32 / 65535.0
    });
    let as_srgb = extend_keeps_and_deepens("as-srgb", &source, &["--colour-space", "srgb"]);
    let as_log = extend_keeps_and_deepens("as-log", &source, &["--colour-space", "acescct"]);
    assert!(
        as_srgb.frames[4..] != as_log.frames[4..],
        "the same samples read as ACEScct are another picture to the model"
    );
    let dir = scratch("bad-space");
    write_frames_dir(&source, &dir.join("in")).unwrap();
    let run = extend(
        &dir.join("in"),
        &dir.join("out"),
        &["--colour-space", "rec2100"],
    );
    assert!(!run.status.success());
    let message = stderr(&run);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("unknown colour space \"rec2100\""),
        "{message}"
    );
    assert!(!dir.join("out").exists(), "nothing written");
}
