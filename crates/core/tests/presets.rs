//! Sampling presets on the tiny model: a `distill-4` window costs 4 transformer evaluations
//! where the default (`quality`: 50 steps with guidance) costs 100, counted on the model; the
//! preset's flow shift and a step cache reach the task commands.

use std::path::PathBuf;

use candle_core::{DType, Device};
use soragen_core::model::WanVace;
use soragen_core::presets::Preset;
use soragen_core::step_cache::StepCache;
use soragen_core::tasks::{TaskInputs, TaskKind, TaskParams, run_task};
use soragen_core::vace::Silent;
use soragen_core::video::{Frame, Video};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny")
}

#[test]
fn a_distilled_preset_runs_4_forwards_per_window_where_the_default_runs_100() {
    let model = WanVace::load(&tiny(), DType::F32, &Device::Cpu).unwrap();
    let kind = TaskKind::Generate {
        frames: 5,
        width: 32,
        height: 32,
    };
    let forwards = |params: &TaskParams| {
        let before = model.transformer_forwards();
        run_task(&model, &kind, &TaskInputs::default(), params, &Silent).unwrap();
        model.transformer_forwards() - before
    };
    let mut params = TaskParams {
        prompt: "a kite".into(),
        ..TaskParams::default()
    };
    assert_eq!(forwards(&params), 100);
    Preset::named("quality").unwrap().apply(&mut params);
    assert_eq!(forwards(&params), 100);
    Preset::named("distill-4").unwrap().apply(&mut params);
    assert_eq!((params.steps, params.guidance), (4, 1.0));
    assert_eq!(soragen_core::presets::DISTILL_4.name, "distill-4");
    assert_eq!(forwards(&params), 4);
    assert!(
        Preset::named("fast")
            .unwrap_err()
            .to_string()
            .contains("distill-4")
    );
}

/// A clip of `frames` frames of `side`x`side` with a gradient that moves, so that each frame
/// differs.
fn clip(frames: usize, side: usize) -> Video {
    let mut video = Video::new(side, side, Some((16, 1)));
    for f in 0..frames {
        let rgb: Vec<u8> = (0..side * side * 3)
            .map(|i| ((i * 7 + f * 31) % 256) as u8)
            .collect();
        video.frames.push(Frame::from_8bit(&rgb, None));
    }
    video
}

/// A task command (extend) samples with the preset's flow shift, not only its steps and
/// guidance: `distill-4`'s shift 5 gives other frames than the tiny model's own shift 3 at the
/// same steps and guidance, and the record says which shift ran.
#[test]
fn a_preset_reaches_the_task_with_its_flow_shift() {
    let model = WanVace::load(&tiny(), DType::F32, &Device::Cpu).unwrap();
    let kind = TaskKind::ExtendForward { frames: 4 };
    let inputs = TaskInputs {
        clip: Some(clip(4, 32)),
        ..TaskInputs::default()
    };
    let mut preset = TaskParams {
        prompt: "a kite".into(),
        ..TaskParams::default()
    };
    Preset::named("distill-4").unwrap().apply(&mut preset);
    assert_eq!(preset.flow_shift, Some(5.0));
    let own_shift = TaskParams {
        flow_shift: None,
        ..preset.clone()
    };
    let with_preset = run_task(&model, &kind, &inputs, &preset, &Silent).unwrap();
    let without = run_task(&model, &kind, &inputs, &own_shift, &Silent).unwrap();
    assert!(
        with_preset.video.frames != without.video.frames,
        "the preset's flow shift did not change the frames"
    );
    assert_eq!(with_preset.record.params.flow_shift, Some(5.0));
}

/// The step cache chosen for a task reaches its windows: forwards skip blocks, and the frames
/// change (the tiny random model moves too much between steps for a small threshold).
#[test]
fn a_step_cache_reaches_the_task() {
    let model = WanVace::load(&tiny(), DType::F32, &Device::Cpu).unwrap();
    let kind = TaskKind::ExtendForward { frames: 4 };
    let inputs = TaskInputs {
        clip: Some(clip(4, 32)),
        ..TaskInputs::default()
    };
    let plain = TaskParams {
        prompt: "a kite".into(),
        steps: 8,
        guidance: 1.0,
        ..TaskParams::default()
    };
    let cached = TaskParams {
        step_cache: StepCache::parse("first-block:0.7").unwrap(),
        ..plain.clone()
    };
    let before = model.transformer_cached_forwards();
    let with_cache = run_task(&model, &kind, &inputs, &cached, &Silent).unwrap();
    assert!(model.transformer_cached_forwards() > before);
    let without = run_task(&model, &kind, &inputs, &plain, &Silent).unwrap();
    assert!(
        with_cache.video.frames != without.video.frames,
        "the step cache did not change the frames"
    );
}

#[test]
fn step_cache_specs_parse_and_bad_ones_say_what_is_wrong() {
    assert_eq!(StepCache::parse("none").unwrap(), None);
    assert_eq!(
        StepCache::parse("first-block").unwrap(),
        Some(StepCache::FIRST_BLOCK)
    );
    let cache = StepCache::parse("first-block:0.1").unwrap();
    assert_eq!(cache, Some(StepCache::FirstBlock { threshold: 0.1 }));
    assert_eq!(StepCache::parse(&StepCache::spec(cache)).unwrap(), cache);
    for (spec, says) in [
        ("teacache", "unknown step cache"),
        ("first-block:x", "not a number"),
        ("first-block:2", "out of range"),
    ] {
        let error = StepCache::parse(spec).unwrap_err().to_string();
        assert!(error.contains(says), "{spec}: {error}");
    }
}
