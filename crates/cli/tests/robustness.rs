//! Issue 24's cases, each as the user met it: outputs that replace the old one whole or not at
//! all (also under SIGKILL and with two runs at once), inputs never overwritten, numbers, sizes
//! and files that are not what they claim refused in one line, non-finite values never written
//! or cached, a damaged or unwritable cache, and stop signals.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use soragen_core::video::{Frame, Video, write_png_dir, write_y4m};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("soragen-robust-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn clip(width: usize, height: usize, frames: usize) -> Video {
    let mut video = Video::new(width, height, Some((24, 1)));
    for f in 0..frames {
        let rgb: Vec<u8> = (0..width * height * 3)
            .map(|i| (i * 7 + f * 13) as u8)
            .collect();
        let alpha = vec![if f % 2 == 0 { 0 } else { 255 }; width * height];
        video.frames.push(Frame::from_8bit(&rgb, Some(&alpha)));
    }
    video
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `soragen ARGS` with the tiny model and tiny settings for the flags ARGS does not give.
fn task(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_soragen"));
    command.args(args);
    let defaults = [
        ("--model", path(&tiny())),
        ("--steps", "1".into()),
        ("--guidance", "1".into()),
        ("--context-frames", "2".into()),
        ("--window-frames", "9".into()),
        ("--working-pixels", "256".into()),
        ("--prompt", "a boat".into()),
    ];
    for (flag, value) in defaults.iter().filter(|(flag, _)| !args.contains(flag)) {
        command.args([*flag, value.as_str()]);
    }
    command
}

fn run(args: &[&str]) -> Output {
    task(args).output().unwrap()
}

/// Fails with exit code `code`, one line on stderr holding `expected`.
fn assert_refused(output: &Output, code: i32, expected: &str) {
    let message = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "one line: {message}");
    assert!(
        message.starts_with("soragen: ") && message.contains(expected),
        "{message} lacks {expected}"
    );
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A PNG folder output and its record agree: the record lists exactly the folder's frames and
/// says how many there are (`seed` tells which run wrote it). Returns the seed.
fn whole_output(out: &Path) -> u64 {
    let record = read_json(&out.with_file_name(format!(
        "{}.json",
        out.file_name().unwrap().to_string_lossy()
    )));
    let listed: Vec<String> = record["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    assert_eq!(names(out), listed, "the record lists the folder's frames");
    let video = Video::read(out).unwrap();
    let seed = record["params"]["seed"].as_u64().unwrap();
    assert_eq!(
        video.len(),
        if seed == 1 { 9 } else { 5 },
        "frames of the run that wrote the record"
    );
    seed
}

fn generate(out: &Path, seed: u64) -> Command {
    let frames = if seed == 1 { "9" } else { "5" };
    let mut command = task(&[
        "generate",
        "--frames",
        frames,
        "--width",
        "16",
        "--height",
        "16",
        "--output",
        &path(out),
    ]);
    command.args(["--seed", &seed.to_string()]);
    command
}

#[test]
fn a_kill_at_any_point_of_a_replace_leaves_the_whole_old_or_the_whole_new_output() {
    let dir = scratch("kill");
    let out = dir.join("out");
    assert!(generate(&out, 1).output().unwrap().status.success());
    let mut outcomes = std::collections::BTreeMap::new();
    // Each commit step pauses 40 ms here; kills land from before the commit to after it.
    for offset in (0..400).step_by(15) {
        let mut child = generate(&out, 2)
            .env(soragen_core::output::STEP_DELAY_ENV, "40")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The staged record appears once the frames are written, just before the commit.
        let started = Instant::now();
        while !names(&dir)
            .iter()
            .any(|n| n.starts_with(".out.json.") && n.ends_with(".new"))
        {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no commit began"
            );
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(offset));
        let _ = child.kill();
        child.wait().unwrap();
        // Right after the kill the frames are whole (old or new), or moved aside whole.
        if out.exists() {
            assert!([5, 9].contains(&Video::read(&out).unwrap().len()));
        }
        soragen_core::output::recover(&out).unwrap();
        let seed = whole_output(&out);
        *outcomes.entry(seed).or_insert(0) += 1;
        assert_eq!(
            names(&dir),
            ["out", "out.json"],
            "nothing left beside the output"
        );
        // Back to the old output for the next kill.
        if seed == 2 {
            assert!(generate(&out, 1).output().unwrap().status.success());
        }
    }
    println!(
        "kills that left the old output: {:?}, the new: {:?}",
        outcomes.get(&1),
        outcomes.get(&2)
    );
    assert!(
        outcomes.len() == 2,
        "kills landed both before and after the point of no return: {outcomes:?}"
    );
}

#[test]
fn two_runs_writing_one_output_each_commit_whole() {
    let dir = scratch("concurrent");
    let out = dir.join("out");
    for _ in 0..3 {
        let children: Vec<_> = [1, 2]
            .map(|seed| generate(&out, seed).stderr(Stdio::piped()).spawn().unwrap())
            .into_iter()
            .collect();
        for child in children {
            let result = child.wait_with_output().unwrap();
            assert!(result.status.success(), "{}", stderr(&result));
        }
        whole_output(&out);
        assert_eq!(names(&dir), ["out", "out.json"]);
    }
}

#[test]
fn an_output_that_is_holds_or_lies_inside_an_input_is_refused_and_the_input_kept() {
    let dir = scratch("inputs");
    let shot = dir.join("shot");
    write_png_dir(&clip(16, 16, 3), &shot).unwrap();
    write_png_dir(&clip(16, 16, 3), &dir.join("mask")).unwrap();
    write_y4m(&clip(16, 16, 3), &dir.join("clip.y4m")).unwrap();
    let before = Video::read(&shot).unwrap();
    let (shot, mask, y4m) = (
        path(&shot),
        path(&dir.join("mask")),
        path(&dir.join("clip.y4m")),
    );
    let inside = path(&dir.join("shot/inner"));
    let cases: [&[&str]; 6] = [
        &["replace-background", "--input", &shot, "--output", &shot],
        &[
            "replace-background",
            "--input",
            &shot,
            "--mask",
            &mask,
            "--output",
            &mask,
        ],
        &["replace-background", "--input", &shot, "--output", &inside],
        &[
            "insert", "--from", &y4m, "--to", &shot, "--frames", "1", "--output", &shot,
        ],
        &["extend", "--input", &y4m, "--frames", "1", "--output", &y4m],
        &[
            "extend",
            "--input",
            &y4m,
            "--frames",
            "1",
            "--output",
            &path(&dir),
        ],
    ];
    for args in cases {
        assert_refused(&run(args), 1, "would overwrite the input");
    }
    let model_inside = path(&tiny().join("out"));
    let run_in_model = run(&[
        "generate",
        "--frames",
        "1",
        "--width",
        "16",
        "--height",
        "16",
        "--output",
        &model_inside,
    ]);
    assert_refused(&run_in_model, 1, "would overwrite the input");
    // `vace` onto its own frames, and a task onto its own video file (refused before ffmpeg
    // reads it).
    let vace = Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args(["vace", "--model", &path(&tiny()), "--prompt", "a boat"])
        .args(["--video", &shot, "--mask", &mask, "--output", &shot])
        .output()
        .unwrap();
    assert_refused(&vace, 1, "would overwrite the input");
    let mp4 = path(&dir.join("clip.mp4"));
    std::fs::write(&mp4, b"the user's video").unwrap();
    assert_refused(
        &run(&["extend", "--input", &mp4, "--frames", "1", "--output", &mp4]),
        1,
        "would overwrite the input",
    );
    assert_eq!(std::fs::read(&mp4).unwrap(), b"the user's video");
    assert_eq!(Video::read(Path::new(&shot)).unwrap(), before);
    assert_eq!(names(&dir), ["clip.mp4", "clip.y4m", "mask", "shot"]);
}

#[test]
fn destinations_are_checked_before_any_work_and_a_failed_run_keeps_the_old_output() {
    let dir = scratch("late");
    let out = dir.join("late.y4m");
    std::fs::write(&out, b"the old output").unwrap();
    std::fs::create_dir_all(dir.join("late.y4m.json")).unwrap();
    std::fs::write(dir.join("late.y4m.json/x"), b"x").unwrap();
    let started = Instant::now();
    // 10000 steps would take minutes: the refusal must come first.
    let late = path(&out);
    let result = task(&[
        "generate", "--frames", "5", "--width", "16", "--height", "16", "--steps", "10000",
        "--output", &late,
    ])
    .output()
    .unwrap();
    assert_refused(&result, 1, "late.y4m.json exists and is not a file");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(std::fs::read(&out).unwrap(), b"the old output");

    // A user's own frames (an ffmpeg-style sequence, a folder named like a frame) are kept.
    let theirs = dir.join("theirs");
    std::fs::create_dir_all(theirs.join("00007.png")).unwrap();
    std::fs::write(theirs.join("00007.png/keep.txt"), b"mine").unwrap();
    std::fs::write(theirs.join("00000.png"), b"theirs").unwrap();
    let result = run(&[
        "generate",
        "--frames",
        "1",
        "--width",
        "16",
        "--height",
        "16",
        "--output",
        &path(&theirs),
    ]);
    assert_refused(&result, 1, "holds other files");
    assert_eq!(
        std::fs::read(theirs.join("00007.png/keep.txt")).unwrap(),
        b"mine"
    );
    assert_eq!(std::fs::read(theirs.join("00000.png")).unwrap(), b"theirs");

    // A folder we wrote is replaced, files and record together.
    let ours = dir.join("ours");
    assert!(generate(&ours, 1).output().unwrap().status.success());
    assert!(generate(&ours, 2).output().unwrap().status.success());
    assert_eq!(whole_output(&ours), 2);
    assert_eq!(
        names(&dir),
        ["late.y4m", "late.y4m.json", "ours", "ours.json", "theirs"]
    );
}

#[test]
fn a_file_soragen_did_not_write_is_never_replaced_and_one_it_wrote_is() {
    let dir = scratch("foreign");
    let out = dir.join("clip.y4m");
    std::fs::write(&out, b"the user's clip").unwrap();
    let started = Instant::now();
    let result = task(&[
        "generate",
        "--frames",
        "5",
        "--width",
        "16",
        "--height",
        "16",
        "--steps",
        "10000",
        "--output",
        &path(&out),
    ])
    .output()
    .unwrap();
    assert_refused(&result, 1, "clip.y4m exists and soragen did not write it");
    assert!(
        stderr(&result).contains("move it away"),
        "{}",
        stderr(&result)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refused before any work"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"the user's clip");
    assert_eq!(names(&dir), ["clip.y4m"]);
    // Moved away, the same command writes it, and run again (as README's commands may be)
    // replaces its own output.
    std::fs::remove_file(&out).unwrap();
    for seed in [1, 2] {
        let result = generate(&out, seed).output().unwrap();
        assert!(result.status.success(), "{}", stderr(&result));
    }
    assert_eq!(
        Video::read(&out).unwrap().len(),
        5,
        "the second run's frames"
    );
    assert_eq!(names(&dir), ["clip.y4m", "clip.y4m.json"]);
}

/// Video files (through ffmpeg): the same run writes the same bytes, and a file that ends early
/// or holds a damaged packet is refused instead of giving fewer or patched frames.
#[test]
fn video_files_are_the_same_bytes_every_run_and_damaged_ones_are_refused() {
    let dir = scratch("containers");
    for extension in ["mkv", "webm", "mp4", "mov"] {
        let written: Vec<Vec<u8>> = ["a", "b"]
            .iter()
            .map(|name| {
                let out = dir.join(format!("{name}.{extension}"));
                let result = generate(&out, 1).output().unwrap();
                assert!(result.status.success(), "{}", stderr(&result));
                std::fs::read(&out).unwrap()
            })
            .collect();
        assert!(
            written[0] == written[1],
            "{extension}: two identical runs wrote different bytes"
        );
    }
    let whole = std::fs::read(dir.join("a.mkv")).unwrap();
    let mut damaged = whole.clone();
    let middle = whole.len() / 2;
    for byte in &mut damaged[middle..middle + 40] {
        *byte ^= 0x55;
    }
    std::fs::write(dir.join("truncated.mkv"), &whole[..middle]).unwrap();
    std::fs::write(dir.join("damaged.mkv"), damaged).unwrap();
    let out = dir.join("a.mkv");
    for input in ["truncated.mkv", "damaged.mkv"] {
        let result = run(&[
            "extend",
            "--input",
            &path(&dir.join(input)),
            "--frames",
            "1",
            "--output",
            &path(&out),
        ]);
        assert_refused(
            &result,
            1,
            &format!("{input}: damaged or truncated, ffmpeg: "),
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            whole,
            "the old output is kept"
        );
    }
    // The whole file reads.
    let result = run(&[
        "extend",
        "--input",
        &path(&dir.join("b.mkv")),
        "--frames",
        "1",
        "--output",
        &path(&out),
    ]);
    assert!(result.status.success(), "{}", stderr(&result));
}

#[test]
fn out_of_range_numbers_are_refused_at_parse_time_in_one_line() {
    let dir = scratch("numbers");
    let out = path(&dir.join("out"));
    let generate = |extra: &[&str]| {
        let mut args = vec!["generate", "--output", &out];
        args.extend(extra);
        for (flag, value) in [("--frames", "5"), ("--width", "16"), ("--height", "16")] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        task(&args).output().unwrap()
    };
    let cases: [(&[&str], &str); 10] = [
        (&["--guidance", "inf"], "guidance inf is out of range"),
        (&["--guidance", "nan"], "guidance NaN is out of range"),
        (&["--guidance", "1e308"], "is out of range"),
        (&["--frames", "18446744073709551615"], "frame count"),
        (&["--frames", "1000000000"], "frame count"),
        (
            &["--context-frames", "9223372036854775808"],
            "context frames",
        ),
        (&["--width", "1", "--height", "1000000000"], "width/height"),
        (&["--working-pixels", "100000000"], "working pixels"),
        (&["--steps", "0"], "steps 0 is out of range"),
        (&["--frames", "12x"], "is not a number"),
    ];
    for (extra, expected) in cases {
        assert_refused(&generate(extra), 2, expected);
    }
    let vace = Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args([
            "vace", "--model", "m", "--video", "v", "--mask", "m", "--prompt", "p", "--output",
            &out,
        ])
        .args(["--flow-shift", "1e308"])
        .output()
        .unwrap();
    assert_refused(&vace, 2, "flow shift 1e308 is out of range");
    assert_eq!(names(&dir), Vec::<String>::new());
}

/// A PNG of `width` x `height` with no pixel data: a header, the start of the data, an end.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(data);
        let mut crc = 0xffff_ffffu32;
        for byte in crc_input {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        let mut bytes = (data.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(kind);
        bytes.extend_from_slice(data);
        bytes.extend_from_slice(&(!crc).to_be_bytes());
        bytes
    }
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[test]
fn media_that_declare_huge_sizes_or_rates_are_one_line_errors() {
    let dir = scratch("media");
    let out = path(&dir.join("out"));
    let headers = [
        (
            "W4294967296 H4294967296",
            "width and height must be from 1 to 16384",
        ),
        (
            "W2147483648 H8589934592 C420",
            "width and height must be from 1 to 16384",
        ),
        (
            "W1000000 H1000000",
            "width and height must be from 1 to 16384",
        ),
        ("W16 H16 F1:4294967295", "frame rate"),
        ("W16 H16 F1:10000", "frame rate"),
    ];
    for (index, (header, expected)) in headers.into_iter().enumerate() {
        let file = dir.join(format!("{index}.y4m"));
        std::fs::write(&file, format!("YUV4MPEG2 {header}\nFRAME\n")).unwrap();
        assert_refused(
            &run(&[
                "extend",
                "--input",
                &path(&file),
                "--frames",
                "1",
                "--output",
                &out,
            ]),
            1,
            expected,
        );
    }
    let pngs = dir.join("pngs");
    std::fs::create_dir_all(&pngs).unwrap();
    std::fs::write(pngs.join("00000.png"), png_header_only(100_000, 100_000)).unwrap();
    assert_refused(
        &run(&[
            "extend",
            "--input",
            &path(&pngs),
            "--frames",
            "1",
            "--output",
            &out,
        ]),
        1,
        "16384",
    );
    // A header line without end is not read whole.
    std::fs::write(dir.join("long.y4m"), vec![b'Y'; 1 << 20]).unwrap();
    let long = path(&dir.join("long.y4m"));
    assert_refused(
        &run(&[
            "extend", "--input", &long, "--frames", "1", "--output", &out,
        ]),
        1,
        "longer than 4 KiB",
    );
    let names = names(&dir);
    assert!(!names.iter().any(|n| n.starts_with("out")), "{names:?}");
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `soragen models verify FOLDER`, bounded in time (a FIFO must not block it).
fn verify(folder: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args(["models", "verify", &path(folder)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("verify {} did not finish", folder.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Writes NaN over the first value of the first f32 tensor of a safetensors file.
fn poison(file: &Path) -> String {
    let mut bytes = std::fs::read(file).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let (name, info) = header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, t)| {
            t["dtype"] == "F32" && t["shape"].as_array().is_some_and(|s| !s.is_empty())
        })
        .min_by_key(|(name, _)| name.to_string())
        .unwrap();
    let start = 8 + header_len + info["data_offsets"][0].as_u64().unwrap() as usize;
    bytes[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(file, bytes).unwrap();
    name.clone()
}

fn edit_config(file: &Path, key: &str, value: serde_json::Value) {
    let mut config = read_json(file);
    config[key] = value;
    std::fs::write(file, serde_json::to_string(&config).unwrap()).unwrap();
}

#[test]
fn broken_models_are_refused_by_load_and_verify_naming_the_part() {
    let dir = scratch("models");
    let fresh = |name: &str| {
        let folder = dir.join(name);
        copy_dir(&tiny(), &folder);
        folder
    };
    let out = path(&dir.join("out"));
    let nan = fresh("nan");
    let tensor = poison(&nan.join("text_encoder/model.safetensors"));
    let expected = format!("tensor {tensor} holds NaN or infinite values");
    let verified = verify(&nan);
    assert!(
        !verified.status.success() && stderr(&verified).contains(&expected),
        "{}",
        stderr(&verified)
    );
    assert!(
        stderr(&verified).contains("text_encoder"),
        "{}",
        stderr(&verified)
    );
    let nan_model = path(&nan);
    let args = [
        "generate", "--frames", "1", "--width", "16", "--height", "16", "--model", &nan_model,
        "--output", &out,
    ];
    assert_refused(&task(&args).output().unwrap(), 1, &expected);

    let cases: [(&str, &str, serde_json::Value, &str); 4] = [
        (
            "text_encoder/config.json",
            "layer_norm_epsilon",
            (-1.0).into(),
            "layer_norm_epsilon holds -1",
        ),
        (
            "vae/config.json",
            "latents_std",
            serde_json::Value::from(vec![0.0; 16]),
            "latents_std holds 0",
        ),
        (
            "transformer/config.json",
            "text_dim",
            8.into(),
            "parts of different models",
        ),
        (
            "model_index.json",
            "vae",
            serde_json::Value::Null,
            "lacks vae",
        ),
    ];
    for (index, (file, key, value, expected)) in cases.into_iter().enumerate() {
        let folder = fresh(&format!("config{index}"));
        edit_config(&folder.join(file), key, value);
        let verified = verify(&folder);
        assert!(
            !verified.status.success() && stderr(&verified).contains(expected),
            "{}",
            stderr(&verified)
        );
    }

    // A FIFO or a link to a device in place of a weights file: refused at once, not read.
    let fifo = fresh("fifo");
    let weights = fifo.join("vae/diffusion_pytorch_model.safetensors");
    std::fs::remove_file(&weights).unwrap();
    mkfifo(&weights);
    let verified = verify(&fifo);
    assert!(
        stderr(&verified).contains("not a regular file"),
        "{}",
        stderr(&verified)
    );
    let device = fresh("device");
    let weights = device.join("vae/diffusion_pytorch_model.safetensors");
    std::fs::remove_file(&weights).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &weights).unwrap();
    assert!(stderr(&verify(&device)).contains("not a regular file"));
    assert!(
        verify(&tiny()).status.success(),
        "{}",
        stderr(&verify(&tiny()))
    );
}

#[test]
fn frames_that_are_not_files_are_refused_at_once() {
    let dir = scratch("fifo");
    let out = path(&dir.join("out"));
    mkfifo(&dir.join("clip.y4m"));
    let result = run(&[
        "extend",
        "--input",
        &path(&dir.join("clip.y4m")),
        "--frames",
        "1",
        "--output",
        &out,
    ]);
    assert_refused(&result, 1, "not a regular file");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    std::os::unix::fs::symlink("/dev/zero", frames.join("00000.png")).unwrap();
    let result = run(&[
        "extend",
        "--input",
        &path(&frames),
        "--frames",
        "1",
        "--output",
        &out,
    ]);
    assert_refused(&result, 1, "not a regular file");
    std::os::unix::fs::symlink("loop.png", frames.join("loop.png")).unwrap();
    std::fs::remove_file(frames.join("00000.png")).unwrap();
    let result = run(&[
        "extend",
        "--input",
        &path(&frames),
        "--frames",
        "1",
        "--output",
        &out,
    ]);
    assert_refused(&result, 1, "loop.png");
}

#[test]
fn non_finite_latents_are_refused() {
    let dir = scratch("latents");
    let case = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/fixtures/pipeline/tiny_extend");
    let latents =
        candle_core::safetensors::load(case.join("latents.safetensors"), &candle_core::Device::Cpu)
            .unwrap()
            .remove("latents")
            .unwrap();
    let nan = (latents * f64::NAN).unwrap();
    nan.save_safetensors("latents", dir.join("nan.safetensors"))
        .unwrap();
    let result = Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args([
            "vace",
            "--model",
            &path(&tiny()),
            "--prompt",
            "x",
            "--steps",
            "1",
            "--guidance",
            "1",
        ])
        .args([
            "--video",
            &path(&case.join("video")),
            "--mask",
            &path(&case.join("mask")),
        ])
        .args([
            "--latents",
            &path(&dir.join("nan.safetensors")),
            "--output",
            &path(&dir.join("out.y4m")),
        ])
        .output()
        .unwrap();
    assert_refused(
        &result,
        1,
        "the given latents produced NaN or infinite values",
    );
    assert_eq!(names(&dir), ["nan.safetensors"]);
}

/// `soragen vace` has the task commands' pre-flight: sizes and memory are checked before the
/// model loads or any tensor is made, so a run that cannot fit is one line, never an abort.
#[test]
fn a_vace_run_that_cannot_fit_is_refused_before_the_model_loads() {
    let dir = scratch("vace-fit");
    let (video, mask) = (dir.join("video.y4m"), dir.join("mask.y4m"));
    write_y4m(&clip(16, 16, 5), &video).unwrap();
    write_y4m(&clip(16, 16, 5), &mask).unwrap();
    // Weights holding NaN fail the load naming the tensor: a refusal about memory instead
    // shows that the check came first.
    let model = dir.join("model");
    copy_dir(&tiny(), &model);
    poison(&model.join("text_encoder/model.safetensors"));
    let out = dir.join("out.y4m");
    let vace = |max_memory: &str| {
        Command::new(env!("CARGO_BIN_EXE_soragen"))
            .args(["vace", "--model", &path(&model), "--prompt", "a boat"])
            .args(["--video", &path(&video), "--mask", &path(&mask)])
            .args(["--steps", "1", "--guidance", "1", "--output", &path(&out)])
            .env("SORAGEN_MAX_MEMORY", max_memory)
            .output()
            .unwrap()
    };
    // The clip itself fits in 1 MiB (reading it is checked too); the run does not.
    assert_refused(&vace("1M"), 1, "not enough memory: this run needs about");
    assert_refused(&vace("1M"), 1, "SORAGEN_MAX_MEMORY allows 0.0 GiB");
    // With room, the same run goes on to the load, which finds the NaN.
    assert_refused(&vace("64G"), 1, "NaN or infinite");
    assert_eq!(names(&dir), ["mask.y4m", "model", "video.y4m"]);
}

/// The task commands check one model window with the same estimate: a budget that holds the
/// clip but not the model's activations refuses the task before its first window.
#[test]
fn a_task_whose_window_cannot_fit_is_refused_before_it_runs() {
    let dir = scratch("task-fit");
    let out = dir.join("out.y4m");
    let result = task(&[
        "generate",
        "--frames",
        "5",
        "--width",
        "16",
        "--height",
        "16",
        "--output",
        &path(&out),
    ])
    .env("SORAGEN_MAX_MEMORY", "1M")
    .output()
    .unwrap();
    assert_refused(&result, 1, "not enough memory: this task needs about");
    assert_eq!(names(&dir), Vec::<String>::new());
}

fn cache_entries(cache: &Path) -> Vec<PathBuf> {
    let mut entries = Vec::new();
    for shard in std::fs::read_dir(cache).unwrap() {
        for entry in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            entries.push(entry.unwrap().path());
        }
    }
    entries
}

#[test]
fn a_damaged_cache_entry_is_recomputed_and_an_unwritable_cache_is_skipped_with_one_warning() {
    let dir = scratch("cache");
    let cache = dir.join("cache");
    let generate = |out: &str, cache: &Path| {
        let out = path(&dir.join(out));
        task(&[
            "generate", "--frames", "5", "--width", "16", "--height", "16", "--output", &out,
            "--seed", "3",
        ])
        .args(["--cache", &path(cache)])
        .output()
        .unwrap()
    };
    let first = generate("first", &cache);
    assert!(first.status.success(), "{}", stderr(&first));
    let entries = cache_entries(&cache);
    assert_eq!(entries.len(), 1);
    // Flip one byte of the stored values (the end of the file holds them).
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x10;
    std::fs::write(&entries[0], &bytes).unwrap();
    let second = generate("second", &cache);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(
        Video::read(&dir.join("first")).unwrap(),
        Video::read(&dir.join("second")).unwrap()
    );
    assert_ne!(
        std::fs::read(&entries[0]).unwrap(),
        bytes,
        "the damaged entry was replaced"
    );

    // A cache path that cannot be a folder: the run goes on without it, saying so once.
    let blocked = dir.join("blocked");
    std::fs::write(&blocked, b"a file").unwrap();
    let third = generate("third", &blocked);
    assert!(third.status.success(), "{}", stderr(&third));
    assert_eq!(
        stderr(&third)
            .matches("warning: running without the cache")
            .count(),
        1,
        "{}",
        stderr(&third)
    );
    assert_eq!(
        Video::read(&dir.join("first")).unwrap(),
        Video::read(&dir.join("third")).unwrap()
    );
}

#[test]
fn models_list_ends_with_link_loops_in_the_cache() {
    let dir = scratch("loops");
    let snapshot = dir.join("hub/models--a--b/snapshots/0123");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::os::unix::fs::symlink("..", snapshot.join("up")).unwrap();
    std::os::unix::fs::symlink(".", snapshot.join("here")).unwrap();
    std::os::unix::fs::symlink("../0123", snapshot.join("again")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_soragen"))
        .args(["models", "list"])
        .env("HF_HUB_CACHE", dir.join("hub"))
        .env("HF_HUB_OFFLINE", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("models list did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("a/b"));
}

/// Starts a long run, waits for its progress to begin, and sends `signal`.
fn stop_with(signal: &str, name: &str) {
    let dir = scratch(name);
    let out = dir.join("out.y4m");
    // An output of ours (our record beside it), so the run may replace it.
    std::fs::write(&out, b"old").unwrap();
    std::fs::write(dir.join("out.y4m.json"), b"{\"task\": \"generate\"}").unwrap();
    let long = [
        "generate", "--frames", "5", "--width", "16", "--height", "16", "--steps", "10000",
    ];
    let child = task(&[&long[..], &["--output", &path(&out)]].concat())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    let result = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "did not stop within a step"
    );
    assert_eq!(result.status.code(), Some(130), "{}", stderr(&result));
    assert!(
        stderr(&result).contains("cancelled, nothing written"),
        "{}",
        stderr(&result)
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"old");
    assert_eq!(
        names(&dir),
        ["out.y4m", "out.y4m.json"],
        "no staging files left"
    );
}

#[test]
fn sigterm_stops_like_ctrl_c_and_leaves_nothing_behind() {
    stop_with("-TERM", "term");
}

#[test]
fn a_stop_during_the_commit_finishes_it_and_says_so() {
    let dir = scratch("commit-stop");
    let out = dir.join("out");
    assert!(generate(&out, 1).output().unwrap().status.success());
    let child = generate(&out, 2)
        .env(soragen_core::output::STEP_DELAY_ENV, "300")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !names(&dir).iter().any(|n| n.ends_with(".commit")) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no commit began"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    for _ in 0..2 {
        assert!(
            Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let result = child.wait_with_output().unwrap();
    assert_eq!(result.status.code(), Some(130), "{}", stderr(&result));
    assert!(
        stderr(&result).contains("after writing"),
        "{}",
        stderr(&result)
    );
    assert_eq!(whole_output(&out), 2);
    assert_eq!(names(&dir), ["out", "out.json"]);
}

#[test]
fn a_stop_while_the_output_is_written_keeps_the_old_one_and_does_not_exit_0() {
    let dir = scratch("write-stop");
    let out = dir.join("out");
    assert!(generate(&out, 1).output().unwrap().status.success());
    let child = generate(&out, 2)
        .env(soragen_core::output::STEP_DELAY_ENV, "500")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The staged record is written with the frames, before the commit begins.
    let started = Instant::now();
    while !names(&dir)
        .iter()
        .any(|n| n.starts_with(".out.json.") && n.ends_with(".new"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing was staged"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let result = child.wait_with_output().unwrap();
    assert_eq!(result.status.code(), Some(130), "{}", stderr(&result));
    assert!(
        stderr(&result).contains("cancelled, nothing written"),
        "{}",
        stderr(&result)
    );
    assert_eq!(whole_output(&out), 1);
    assert_eq!(names(&dir), ["out", "out.json"]);
}
