//! Parity of the flow-matching schedulers with diffusers (fixtures from
//! `models/reference/scheduler.py`): schedules must match exactly, closed-loop sampling
//! within 1e-5, and configurations on which the reference produces NaN/inf must be rejected.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use soragen_models::scheduler::{Scheduler, SchedulerConfig};

const SAMPLE_TOLERANCE: f32 = 1e-5;

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fixtures/scheduler");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("io.safetensors").exists())
        .collect();
    dirs.sort();
    dirs
}

fn scalar(io: &HashMap<String, Tensor>, name: &str) -> i64 {
    io[name].to_scalar::<i64>().unwrap()
}

fn values(tensor: &Tensor) -> Vec<f64> {
    tensor
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    soragen_models::max_abs_diff(a, b).unwrap()
}

/// Replays the fixture's closed loop (model output = 0.5 * sample + noise[i]) from the
/// current scheduler state; returns the largest deviation from the reference samples.
fn replay(scheduler: &mut dyn Scheduler, io: &HashMap<String, Tensor>) -> f32 {
    let start = scalar(io, "start_index") as usize;
    let bf16_output = scalar(io, "bf16_model_output") == 1;
    let timesteps = scheduler.timesteps().to_vec();
    let mut sample = io["sample_0"].clone();
    let mut worst = 0f32;
    for (i, &timestep) in timesteps[start..].iter().enumerate() {
        let noise = io["noise"].get(i).unwrap();
        let sample_f32 = sample.to_dtype(DType::F32).unwrap();
        let mut model_output = ((sample_f32 * 0.5).unwrap() + noise).unwrap();
        if bf16_output {
            model_output = model_output.to_dtype(DType::BF16).unwrap();
        }
        sample = scheduler.step(&model_output, timestep, &sample).unwrap();
        let diff = max_abs_diff(&sample, &io["samples"].get(i).unwrap());
        assert!(diff.is_finite(), "step {i}: non-finite deviation");
        worst = worst.max(diff);
    }
    worst
}

#[test]
fn fixtures_match_reference() {
    let dirs = fixture_dirs();
    assert!(!dirs.is_empty(), "no scheduler fixtures found");
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let config = SchedulerConfig::from_file(dir.join("scheduler_config.json")).unwrap();
        let io = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
        let steps = scalar(&io, "num_inference_steps") as usize;
        let scheduler = config.build().and_then(|mut scheduler| {
            scheduler.set_timesteps(steps)?;
            Ok(scheduler)
        });

        let reference_finite = values(&io["samples"].flatten_all().unwrap())
            .iter()
            .all(|v| v.is_finite());
        if !reference_finite {
            match scheduler {
                Err(e) => println!("{name}: reference is not finite, rejected: {e}"),
                Ok(_) => {
                    panic!("{name}: the reference produces NaN/inf but the config was accepted")
                }
            }
            continue;
        }
        let mut scheduler = scheduler.unwrap_or_else(|e| panic!("{name}: {e}"));

        assert_eq!(
            scheduler.timesteps(),
            values(&io["timesteps"]),
            "{name}: timesteps"
        );
        let sigmas: Vec<f64> = scheduler.sigmas().iter().map(|&s| s as f64).collect();
        assert_eq!(sigmas, values(&io["sigmas"]), "{name}: sigmas");

        let first = replay(scheduler.as_mut(), &io);
        scheduler.reset();
        let second = replay(scheduler.as_mut(), &io);
        println!(
            "{name}: {steps} steps, timesteps and sigmas exact, max |diff| {first:.3e} (after reset {second:.3e})"
        );
        assert!(
            first <= SAMPLE_TOLERANCE && second <= SAMPLE_TOLERANCE,
            "{name}: {first} / {second}"
        );
    }
}

fn parse(json: &str) -> SchedulerConfig {
    serde_json::from_str(json).unwrap()
}

fn build_error(json: &str) -> String {
    match parse(json).build() {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

/// The `scheduler/scheduler_config.json` of the Wan2.1 diffusers folders.
const WAN_CONFIG: &str = r#"{
  "_class_name": "UniPCMultistepScheduler",
  "_diffusers_version": "0.33.0.dev0",
  "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001,
  "disable_corrector": [], "dynamic_thresholding_ratio": 0.995, "final_sigmas_type": "zero",
  "flow_shift": 3.0, "lower_order_final": true, "num_train_timesteps": 1000,
  "predict_x0": true, "prediction_type": "flow_prediction", "rescale_betas_zero_snr": false,
  "sample_max_value": 1.0, "solver_order": 2, "solver_p": null, "solver_type": "bh2",
  "steps_offset": 0, "thresholding": false, "timestep_spacing": "linspace",
  "trained_betas": null, "use_beta_sigmas": false, "use_exponential_sigmas": false,
  "use_flow_sigmas": true, "use_karras_sigmas": false
}"#;

#[test]
fn wan_config_and_flow_shift_override() {
    let mut scheduler = parse(WAN_CONFIG).build().unwrap();
    scheduler.set_timesteps(50).unwrap();
    assert_eq!(scheduler.timesteps().len(), 50);
    assert_eq!(scheduler.timesteps()[0], 999.0);
    assert_eq!(scheduler.init_noise_sigma(), 1.0);
    let shift_3 = scheduler.timesteps()[1];

    let mut shifted = parse(WAN_CONFIG).with_flow_shift(5.0).build().unwrap();
    shifted.set_timesteps(50).unwrap();
    assert!(
        shifted.timesteps()[1] > shift_3,
        "a larger shift keeps more steps at high noise"
    );

    let euler = parse(WAN_CONFIG).to_flow_match_euler();
    assert_eq!(euler.shift, 3.0);
    let mut euler = SchedulerConfig::FlowMatchEuler(euler).build().unwrap();
    euler.set_timesteps(50).unwrap();
    assert_eq!(euler.timesteps()[0], 1000.0);
}

#[test]
fn legacy_solver_names_are_bh2() {
    let json = WAN_CONFIG.replace(r#""solver_type": "bh2""#, r#""solver_type": "midpoint""#);
    match parse(&json) {
        SchedulerConfig::UniPc(config) => {
            assert_eq!(
                config.solver_type,
                soragen_models::scheduler::SolverType::Bh2
            )
        }
        other => panic!("parsed as {other:?}"),
    }
}

#[test]
fn unsupported_configs_are_errors() {
    let with = |field: &str, value: &str| {
        let mut config: serde_json::Value = serde_json::from_str(WAN_CONFIG).unwrap();
        config[field] = serde_json::from_str(value).unwrap();
        config.to_string()
    };
    let cases = [
        (with("use_karras_sigmas", "true"), "use_karras_sigmas"),
        (with("use_beta_sigmas", "true"), "use_beta_sigmas"),
        (with("use_flow_sigmas", "false"), "flow sigmas"),
        (with("prediction_type", r#""epsilon""#), "prediction_type"),
        (with("predict_x0", "false"), "predict_x0"),
        (with("thresholding", "true"), "thresholding"),
        (with("use_dynamic_shifting", "true"), "use_dynamic_shifting"),
        (with("solver_order", "0"), "solver_order"),
        (with("solver_type", r#""bh1""#), "bh1"),
        (with("beta_schedule", r#""cosine""#), "beta_schedule"),
        (with("solver_p", "{}"), "solver_p"),
        (with("flow_shift", "0.0"), "flow_shift"),
        (
            r#"{"_class_name": "UniPCMultistepScheduler"}"#.to_string(),
            "flow sigmas",
        ),
        (
            r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "stochastic_sampling": true}"#
                .to_string(),
            "stochastic_sampling",
        ),
        (
            r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": true}"#
                .to_string(),
            "use_dynamic_shifting",
        ),
    ];
    for (json, expected) in cases {
        let error = build_error(&json);
        assert!(error.contains(expected), "{expected}: {error}");
    }

    for json in [
        with("final_sigmas_type", r#""zeroish""#),
        with("solver_type", r#""bh3""#),
        r#"{"_class_name": "DDIMScheduler"}"#.to_string(),
    ] {
        assert!(
            serde_json::from_str::<SchedulerConfig>(&json).is_err(),
            "{json}"
        );
    }

    // Without lower_order_final the last multistep update into sigma = 0 is inf/NaN.
    let mut scheduler = parse(&with("lower_order_final", "false")).build().unwrap();
    assert!(scheduler.set_timesteps(1).is_ok());
    assert!(scheduler.set_timesteps(2).is_err());
    assert!(scheduler.set_timesteps(0).is_err());

    // The reference stretches a one-step schedule to NaN.
    for json in [
        with("shift_terminal", "0.1"),
        r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "shift_terminal": 0.1}"#.to_string(),
    ] {
        let mut scheduler = parse(&json).build().unwrap();
        assert!(scheduler.set_timesteps(1).is_err(), "{json}");
        assert!(scheduler.set_timesteps(2).is_ok(), "{json}");
    }
}

#[test]
fn stepping_outside_the_schedule_is_an_error() {
    let sample = Tensor::zeros((1, 4, 2, 3, 3), DType::F32, &Device::Cpu).unwrap();
    for json in [
        WAN_CONFIG,
        r#"{"_class_name": "FlowMatchEulerDiscreteScheduler"}"#,
    ] {
        let mut scheduler = parse(json).build().unwrap();
        assert!(
            scheduler.step(&sample, 999.0, &sample).is_err(),
            "before set_timesteps"
        );
        scheduler.set_timesteps(2).unwrap();
        let timesteps = scheduler.timesteps().to_vec();
        for &t in &timesteps {
            scheduler.step(&sample, t, &sample).unwrap();
        }
        assert!(
            scheduler.step(&sample, timesteps[1], &sample).is_err(),
            "after the last step"
        );
    }
}
