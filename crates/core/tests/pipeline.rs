//! The VACE pipeline equals diffusers' `WanVACEPipeline` run with the same initial latents on
//! the same tiny random models (fixtures from `models/reference/pipeline.py`): several configs,
//! frame counts, sizes and mask shapes, with and without guidance.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use soragen_core::model::WanVace;
use soragen_core::vace::{Noise, Sampling, Silent, VaceInput, max_abs_diff, read_latents};
use soragen_core::video::Video;

const TOLERANCE: f32 = 1e-3;

fn cases() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/pipeline");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert!(cases.len() >= 3, "pipeline fixtures missing in {}", root.display());
    cases
}

fn run_case(case: &Path) -> f32 {
    let request: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(case.join("request.json")).unwrap()).unwrap();
    let device = Device::Cpu;
    let model = WanVace::load(&case.join(request["model"].as_str().unwrap()), DType::F32, &device).unwrap();
    let video = Video::read(&case.join("video")).unwrap();
    let masks = Video::read(&case.join("mask")).unwrap();
    let input = VaceInput::from_frames(&video, &masks.mask_bits(), &device).unwrap();
    let sampling = Sampling {
        steps: request["steps"].as_u64().unwrap() as usize,
        guidance: request["guidance"].as_f64().unwrap(),
        flow_shift: None,
        conditioning_scale: 1.0,
        noise: Noise::Latents(read_latents(&case.join("latents.safetensors"), &device).unwrap()),
    };
    let prompt = model.encode_prompt(request["prompt"].as_str().unwrap()).unwrap();
    let negative = model.encode_prompt(request["negative"].as_str().unwrap()).unwrap();
    let frames = model.generate(&input, &prompt, Some(&negative), &sampling, &Silent).unwrap();
    let expected = candle_core::safetensors::load(case.join("expected.safetensors"), &device).unwrap();
    let expected = &expected["frames"];
    assert_eq!(frames.dims(), expected.dims(), "{}", case.display());
    max_abs_diff(&frames, expected).unwrap()
}

#[test]
fn matches_diffusers_wan_vace_pipeline() {
    for case in cases() {
        let diff = run_case(&case);
        println!("{}: max |diff| = {diff:e}", case.file_name().unwrap().to_string_lossy());
        assert!(diff <= TOLERANCE, "{}: max |diff| {diff} > {TOLERANCE}", case.display());
    }
}
