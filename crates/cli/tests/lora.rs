//! `--lora FILE[:STRENGTH]` on `soragen vace` and the task commands, with the tiny model and the
//! adapters of `models/fixtures/lora` (whose merge is checked against diffusers in
//! crates/models/tests/lora.rs).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Device;
use soragen_core::video::{Frame, Video, write_png_dir};

fn models() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn adapter(name: &str) -> String {
    models()
        .join("fixtures/lora")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("soragen-cli-lora-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn soragen(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn frames(path: &Path) -> candle_core::Tensor {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()["frames"].clone()
}

fn diff(a: &Path, b: &Path) -> f32 {
    soragen_models::max_abs_diff(&frames(a), &frames(b)).unwrap()
}

/// `soragen vace` on the tiny_extend fixture from its fixed latents, plus `extra`.
fn vace(output: &Path, extra: &[&str]) -> Output {
    let case = models().join("fixtures/pipeline/tiny_extend");
    let mut args: Vec<String> = [
        "vace",
        "--model",
        models().join("tiny").to_str().unwrap(),
        "--video",
        case.join("video").to_str().unwrap(),
        "--mask",
        case.join("mask").to_str().unwrap(),
        "--prompt",
        "waves",
        "--steps",
        "2",
        "--guidance",
        "1",
        "--latents",
        case.join("latents.safetensors").to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    soragen(&args)
}

#[test]
fn vace_merges_adapters_with_their_strengths() {
    let dir = scratch("vace");
    let run = |name: &str, extra: &[&str]| {
        let out = dir.join(name);
        let result = vace(&out, extra);
        assert!(result.status.success(), "{extra:?}: {}", stderr(&result));
        out
    };
    let base = run("base.safetensors", &[]);
    let peft = adapter("peft.safetensors");
    let wan = adapter("wan.safetensors");
    let zero = run("zero.safetensors", &["--lora", &format!("{peft}:0")]);
    assert_eq!(diff(&base, &zero), 0.0, "strength 0 is the base model");
    let one = run("one.safetensors", &["--lora", &peft]);
    assert!(diff(&base, &one) > 1e-3, "the adapter changes the frames");
    let explicit = run("explicit.safetensors", &["--lora", &format!("{peft}:1.0")]);
    assert_eq!(diff(&one, &explicit), 0.0, "no strength means 1");
    let stacked = run(
        "stacked.safetensors",
        &[
            "--lora",
            &format!("{peft}:0.7"),
            "--lora",
            &format!("{wan}:-0.6"),
        ],
    );
    assert!(diff(&stacked, &one) > 1e-3 && diff(&stacked, &base) > 1e-3);
}

#[test]
fn task_commands_take_adapters_and_refuse_bad_ones_in_one_line() {
    let dir = scratch("tasks");
    let mut clip = Video::new(16, 16, Some((16, 1)));
    for f in 0..2 {
        let rgb: Vec<u8> = (0..16 * 16 * 3).map(|i| (i * 7 + f) as u8).collect();
        clip.frames.push(Frame::from_8bit(&rgb, None));
    }
    write_png_dir(&clip, &dir.join("in")).unwrap();
    let extend = |output: &str, lora: &[&str]| {
        let mut args: Vec<String> = [
            "extend",
            "--input",
            dir.join("in").to_str().unwrap(),
            "--frames",
            "2",
            "--model",
            models().join("tiny").to_str().unwrap(),
            "--steps",
            "1",
            "--guidance",
            "1",
            "--context-frames",
            "2",
            "--window-frames",
            "9",
            "--prompt",
            "a boat",
            "--output",
            dir.join(output).to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for l in lora {
            args.extend(["--lora".to_string(), l.to_string()]);
        }
        soragen(&args)
    };
    let result = extend(
        "out.y4m",
        &[&format!("{}:0.5", adapter("wan_ab.safetensors"))],
    );
    assert!(result.status.success(), "{}", stderr(&result));
    assert!(dir.join("out.y4m").is_file());

    // An adapter with a key the model does not have: one line naming the key and the file.
    let bad = dir.join("bad.safetensors");
    let tensors = std::collections::HashMap::from([
        (
            "transformer.blocks.9.attn1.to_q.lora_A.weight".to_string(),
            candle_core::Tensor::zeros((2, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        ),
        (
            "transformer.blocks.9.attn1.to_q.lora_B.weight".to_string(),
            candle_core::Tensor::zeros((32, 2), candle_core::DType::F32, &Device::Cpu).unwrap(),
        ),
    ]);
    candle_core::safetensors::save(&tensors, &bad).unwrap();
    let result = extend("failed.y4m", &[bad.to_str().unwrap()]);
    let message = stderr(&result);
    assert_eq!(result.status.code(), Some(1), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("transformer.blocks.9.attn1.to_q.lora_A.weight")
            && message.contains("bad.safetensors"),
        "{message}"
    );
    assert!(!dir.join("failed.y4m").exists());

    // A missing file, and a strength that is not a number.
    let result = extend(
        "failed.y4m",
        &[dir.join("missing.safetensors").to_str().unwrap()],
    );
    assert_eq!(result.status.code(), Some(1));
    assert!(
        stderr(&result).contains("missing.safetensors"),
        "{}",
        stderr(&result)
    );
    let result = extend(
        "failed.y4m",
        &[&format!("{}:inf", adapter("peft.safetensors"))],
    );
    assert!(!result.status.success());
    assert!(stderr(&result).contains("finite"), "{}", stderr(&result));
}

/// `--preset distill-4` with its adapter gives what `--steps 4 --guidance 1 --flow-shift 5` gives.
#[test]
fn presets_set_steps_guidance_and_shift() {
    let dir = scratch("preset");
    let peft = adapter("peft.safetensors");
    let strip = |extra: &[&str]| -> Vec<String> { extra.iter().map(|s| s.to_string()).collect() };
    let run = |name: &str, extra: Vec<String>| {
        let out = dir.join(name);
        let case = models().join("fixtures/pipeline/tiny_extend");
        let mut args: Vec<String> = [
            "vace",
            "--model",
            models().join("tiny").to_str().unwrap(),
            "--video",
            case.join("video").to_str().unwrap(),
            "--mask",
            case.join("mask").to_str().unwrap(),
            "--prompt",
            "waves",
            "--latents",
            case.join("latents.safetensors").to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--lora",
            &peft,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra);
        let result = soragen(&args);
        assert!(result.status.success(), "{}", stderr(&result));
        out
    };
    let preset = run("preset.safetensors", strip(&["--preset", "distill-4"]));
    let explicit = run(
        "explicit.safetensors",
        strip(&["--steps", "4", "--guidance", "1", "--flow-shift", "5"]),
    );
    assert_eq!(diff(&preset, &explicit), 0.0);
    // The record next to the output says which sampling and adapters made it.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("preset.safetensors.json")).unwrap(),
    )
    .unwrap();
    let params = &record["params"];
    assert_eq!(
        (
            params["preset"].as_str(),
            params["steps"].as_u64(),
            params["guidance"].as_f64()
        ),
        (Some("distill-4"), Some(4), Some(1.0))
    );
    assert_eq!(params["flow_shift"].as_f64(), Some(5.0));
    assert_eq!(params["lora"][0]["file"].as_str(), Some(peft.as_str()));
    assert_eq!(params["lora"][0]["strength"].as_f64(), Some(1.0));
    let unknown = soragen(&strip(&[
        "generate", "--model", "x", "--frames", "5", "--output", "y.y4m", "--preset", "fast",
    ]));
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("distill-4"),
        "{}",
        stderr(&unknown)
    );
    let both = soragen(&strip(&[
        "generate",
        "--model",
        "x",
        "--frames",
        "5",
        "--output",
        "y.y4m",
        "--preset",
        "distill-4",
        "--steps",
        "8",
    ]));
    assert!(!both.status.success());
}
