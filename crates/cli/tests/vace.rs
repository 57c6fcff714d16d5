//! `soragen vace` end to end: the built binary reproduces diffusers' WanVACEPipeline from
//! `--latents`, is deterministic with `--seed`, and fails in one line without leaving output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::Device;

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/fixtures/pipeline")
        .join(case)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("soragen-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn soragen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args(args)
        .output()
        .unwrap()
}

fn vace_args<'a>(case: &'a Path, request: &'a serde_json::Value, output: &'a str) -> Vec<String> {
    let model = case.join(request["model"].as_str().unwrap());
    [
        "vace",
        "--model",
        model.to_str().unwrap(),
        "--video",
        case.join("video").to_str().unwrap(),
        "--mask",
        case.join("mask").to_str().unwrap(),
        "--prompt",
        request["prompt"].as_str().unwrap(),
        "--negative-prompt",
        request["negative"].as_str().unwrap(),
        "--steps",
        &request["steps"].to_string(),
        "--guidance",
        &request["guidance"].to_string(),
        "--output",
        output,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn request(case: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(case.join("request.json")).unwrap()).unwrap()
}

fn frames(path: &Path) -> candle_core::Tensor {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()["frames"].clone()
}

fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    soragen_models::max_abs_diff(a, b).unwrap()
}

#[test]
fn reproduces_diffusers_from_given_latents() {
    for name in ["tiny_extend", "wide_background", "single_frame"] {
        let case = fixture(name);
        let request = request(&case);
        let out = scratch(name).join("frames.safetensors");
        let mut args = vace_args(&case, &request, out.to_str().unwrap());
        args.extend([
            "--latents".into(),
            case.join("latents.safetensors").to_str().unwrap().into(),
        ]);
        let result = Command::new(env!("CARGO_BIN_EXE_soragen"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let diff = max_abs_diff(&frames(&out), &frames(&case.join("expected.safetensors")));
        println!("{name}: max |diff| = {diff:e}");
        assert!(diff <= 1e-3, "{name}: {diff}");
    }
}

#[test]
fn same_seed_same_frames_and_png_y4m_outputs() {
    let case = fixture("tiny_extend");
    let request = request(&case);
    let dir = scratch("seed");
    let run = |output: &Path, seed: &str| {
        let mut args = vace_args(&case, &request, output.to_str().unwrap());
        args.extend(["--seed".into(), seed.into()]);
        let result = Command::new(env!("CARGO_BIN_EXE_soragen"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
    };
    run(&dir.join("a.safetensors"), "7");
    run(&dir.join("b.safetensors"), "7");
    run(&dir.join("c.safetensors"), "8");
    assert_eq!(
        max_abs_diff(
            &frames(&dir.join("a.safetensors")),
            &frames(&dir.join("b.safetensors"))
        ),
        0.0
    );
    assert!(
        max_abs_diff(
            &frames(&dir.join("a.safetensors")),
            &frames(&dir.join("c.safetensors"))
        ) > 0.01
    );

    run(&dir.join("pngs"), "7");
    let pngs = std::fs::read_dir(dir.join("pngs")).unwrap().count();
    assert_eq!(pngs, 5);
    run(&dir.join("clip.y4m"), "7");
    let y4m = std::fs::read(dir.join("clip.y4m")).unwrap();
    assert!(y4m.starts_with(b"YUV4MPEG2 W32 H32"));
    assert_eq!(y4m.windows(6).filter(|w| w == b"FRAME\n").count(), 5);
}

/// Each failure: non-zero exit, exactly one line on stderr, and no output left behind.
fn assert_fails(args: &[String], output: &Path, expected: &str) {
    let result = Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(!result.status.success(), "should fail: {args:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(expected), "{stderr} lacks {expected}");
    assert!(!output.exists(), "{} was written", output.display());
}

#[test]
fn bad_requests_fail_in_one_line_without_output() {
    let case = fixture("tiny_extend");
    let request = request(&case);
    let dir = scratch("errors");
    let output = dir.join("out.safetensors");
    let base = vace_args(&case, &request, output.to_str().unwrap());
    let set = |mut args: Vec<String>, flag: &str, value: &str| {
        let at = args.iter().position(|a| a == flag).unwrap();
        args[at + 1] = value.to_string();
        args
    };
    let with = |flag: &str, value: &str| set(base.clone(), flag, value);

    assert_fails(
        &with("--model", "/nowhere"),
        &output,
        "no such model folder, and not a repository id",
    );
    let empty = dir.join("empty-model");
    std::fs::create_dir_all(&empty).unwrap();
    assert_fails(
        &with("--model", empty.to_str().unwrap()),
        &output,
        "no model_index.json",
    );
    // 4 frames: the model needs 4n+1.
    let four = dir.join("four");
    std::fs::create_dir_all(&four).unwrap();
    for i in 0..4 {
        std::fs::copy(
            case.join("video").join(format!("{i:05}.png")),
            four.join(format!("{i:05}.png")),
        )
        .unwrap();
    }
    assert_fails(
        &with("--video", four.to_str().unwrap()),
        &output,
        "4 frames but 5 masks",
    );
    let four_and_four = set(
        with("--video", four.to_str().unwrap()),
        "--mask",
        four.to_str().unwrap(),
    );
    assert_fails(&four_and_four, &output, "4n+1 frames");
    assert_fails(
        &with("--video", dir.join("missing").to_str().unwrap()),
        &output,
        "does not exist",
    );
    assert_fails(&with("--steps", "0"), &output, "steps 0 is out of range");
    let mut with_latents = base.clone();
    with_latents.extend([
        "--latents".into(),
        fixture("single_frame")
            .join("latents.safetensors")
            .to_str()
            .unwrap()
            .into(),
    ]);
    assert_fails(&with_latents, &output, "latents have shape");
    let bad_png = dir.join("bad");
    std::fs::create_dir_all(&bad_png).unwrap();
    std::fs::write(bad_png.join("00000.png"), b"nope").unwrap();
    assert_fails(
        &with("--mask", bad_png.to_str().unwrap()),
        &output,
        "unreadable PNG",
    );

    // An output folder holding someone's files is never replaced.
    let precious = dir.join("precious");
    std::fs::create_dir_all(&precious).unwrap();
    std::fs::write(precious.join("notes.txt"), b"mine").unwrap();
    let result = soragen(
        &with("--output", precious.to_str().unwrap())
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!result.status.success());
    assert_eq!(std::fs::read(precious.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn ctrl_c_stops_between_steps_and_writes_nothing() {
    let case = fixture("tiny_extend");
    let request = request(&case);
    let output = scratch("interrupt").join("out.y4m");
    let mut args = vace_args(&case, &request, output.to_str().unwrap());
    let steps = args.iter().position(|a| a == "--steps").unwrap();
    args[steps + 1] = "10000".into();
    let mut child = Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(
        started.elapsed().as_secs() < 20,
        "did not stop within a step"
    );
    assert_eq!(status.code(), Some(130));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("cancelled, nothing written"), "{stderr}");
    assert!(!output.exists());
}

/// `--reference IMG`, repeated, reproduces diffusers' `reference_images` (the reference_*
/// fixtures: one, two and three references of odd sizes); the record lists them.
#[test]
fn references_reproduce_diffusers() {
    for name in ["reference_one", "reference_two", "reference_three"] {
        let case = fixture(name);
        let request = request(&case);
        let out = scratch(name).join("frames.safetensors");
        let mut args = vace_args(&case, &request, out.to_str().unwrap());
        args.extend([
            "--latents".into(),
            case.join("latents.safetensors").to_str().unwrap().into(),
        ]);
        let mut references: Vec<PathBuf> = std::fs::read_dir(case.join("references"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        references.sort();
        for reference in &references {
            args.extend(["--reference".into(), reference.to_str().unwrap().into()]);
        }
        let result = Command::new(env!("CARGO_BIN_EXE_soragen"))
            .args(&args)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        let diff = max_abs_diff(&frames(&out), &frames(&case.join("expected.safetensors")));
        println!("{name}: max |diff| = {diff:e}");
        assert!(diff <= 5e-5, "{name}: {diff}");
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.with_file_name("frames.safetensors.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            record["references"].as_array().unwrap().len(),
            references.len()
        );
    }
    // A reference that is not a PNG: one line, nothing written.
    let case = fixture("reference_one");
    let request = request(&case);
    let dir = scratch("bad-reference");
    let out = dir.join("frames.safetensors");
    let mut args = vace_args(&case, &request, out.to_str().unwrap());
    args.extend([
        "--reference".into(),
        case.join("request.json").to_str().unwrap().into(),
    ]);
    let result = Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    let message = String::from_utf8_lossy(&result.stderr);
    assert!(
        message.contains("PNG") && message.lines().count() == 1,
        "{message}"
    );
    assert!(!out.exists());
}
