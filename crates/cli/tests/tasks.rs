//! The task commands, run as the built `soragen` binary on the tiny model: outputs, sidecar
//! records, exit codes, one-line errors, and no output left behind when a command fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use soragen_core::video::{Frame, Video, write_png_dir, write_y4m};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("soragen-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn clip(width: usize, height: usize, frames: usize, shade: u8) -> Video {
    let mut video = Video::new(width, height, Some((24, 1)));
    for f in 0..frames {
        let rgb: Vec<u8> = (0..width * height * 3)
            .map(|i| shade.wrapping_add(((i / 3) % width + f) as u8))
            .collect();
        video.frames.push(Frame::from_8bit(&rgb, None));
    }
    video
}

/// `soragen ARGS... --model tiny` with tiny settings.
fn soragen(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_soragen"));
    command.args(args).arg("--model").arg(tiny());
    command.args([
        "--steps",
        "2",
        "--guidance",
        "1",
        "--context-frames",
        "2",
        "--window-frames",
        "9",
    ]);
    command.args(["--working-pixels", "512", "--prompt", "a boat"]);
    command.output().unwrap()
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn record(output: &Path, sidecar: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(output.with_file_name(sidecar)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Nothing in `dir` but the inputs the test wrote: no output, no record, no staging files.
fn assert_nothing_written(dir: &Path, inputs: &[&str]) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = inputs.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn extend_writes_the_whole_clip_and_its_record() {
    let dir = scratch("extend");
    let source = clip(40, 24, 4, 30);
    write_png_dir(&source, &dir.join("in")).unwrap();
    let (input, out) = (path(&dir.join("in")), dir.join("out"));
    let run = soragen(&[
        "extend",
        "--input",
        &input,
        "--frames",
        "3",
        "--seed",
        "7",
        "--output",
        &path(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let result = Video::read(&out).unwrap();
    assert_eq!((result.len(), result.width, result.height), (7, 40, 24));
    assert_eq!(
        result.frames[..4],
        source.frames[..],
        "the source frames come back unchanged"
    );
    let extended = record(&out, "out.json");
    assert_eq!(extended["task"], "extend-forward");
    assert_eq!(
        extended["generated"],
        serde_json::json!([{ "start": 4, "end": 7 }])
    );
    assert_eq!(extended["params"]["seed"], 7);
    assert_eq!(extended["params"]["prompt"], "a boat");
    assert!(extended["model"].as_str().unwrap().ends_with("tiny"));

    // A .y4m source states its frame rate, and the output keeps it.
    write_y4m(&source, &dir.join("in.y4m")).unwrap();
    let back = dir.join("back.y4m");
    let run = soragen(&[
        "extend",
        "--input",
        &path(&dir.join("in.y4m")),
        "--direction",
        "backward",
        "--frames",
        "2",
        "--output",
        &path(&back),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let result = Video::read(&back).unwrap();
    assert_eq!((result.len(), result.fps), (6, Some((24, 1))));
    assert_eq!(
        record(&back, "back.y4m.json")["generated"],
        serde_json::json!([{ "start": 0, "end": 2 }])
    );
}

#[test]
fn insert_joins_two_clips_and_refuses_different_sizes() {
    let dir = scratch("insert");
    write_y4m(&clip(32, 16, 3, 10), &dir.join("a.y4m")).unwrap();
    write_png_dir(&clip(32, 16, 2, 90), &dir.join("b")).unwrap();
    let (a, b, out) = (
        path(&dir.join("a.y4m")),
        path(&dir.join("b")),
        dir.join("joined"),
    );
    let run = soragen(&[
        "insert",
        "--from",
        &a,
        "--to",
        &b,
        "--frames",
        "4",
        "--output",
        &path(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(Video::read(&out).unwrap().len(), 9);
    assert_eq!(
        record(&out, "joined.json")["generated"],
        serde_json::json!([{ "start": 3, "end": 7 }])
    );

    let dir = scratch("insert-mismatch");
    write_png_dir(&clip(32, 16, 2, 10), &dir.join("a")).unwrap();
    write_png_dir(&clip(16, 16, 2, 10), &dir.join("b")).unwrap();
    let (a, b, out) = (
        path(&dir.join("a")),
        path(&dir.join("b")),
        path(&dir.join("out")),
    );
    let run = soragen(&[
        "insert", "--from", &a, "--to", &b, "--frames", "2", "--output", &out,
    ]);
    assert_eq!(run.status.code(), Some(1));
    let message = stderr(&run);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("clip A is 32x16 but clip B is 16x16"),
        "{message}"
    );
    assert_nothing_written(&dir, &["a", "b"]);
}

#[test]
fn replace_background_takes_a_mask_folder() {
    let dir = scratch("replace");
    let source = clip(32, 16, 2, 50);
    write_png_dir(&source, &dir.join("in")).unwrap();
    let mut masks = Video::new(32, 16, None);
    for _ in 0..2 {
        let rgb: Vec<u8> = (0..32 * 16 * 3)
            .map(|i| if (i / 3) % 32 < 8 { 255 } else { 0 })
            .collect();
        masks.frames.push(Frame::from_8bit(&rgb, None));
    }
    write_png_dir(&masks, &dir.join("mask")).unwrap();
    let out = dir.join("out.y4m");
    let (input, mask) = (path(&dir.join("in")), path(&dir.join("mask")));
    let args = ["replace-background", "--input", &input, "--mask", &mask];
    let run = soragen(&[&args[..], &["--output", &path(&out)]].concat());
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(Video::read(&out).unwrap().len(), 2);
    assert_eq!(record(&out, "out.y4m.json")["task"], "replace-background");

    // One mask too few: refused before any work, nothing written.
    std::fs::remove_file(dir.join("mask/00001.png")).unwrap();
    let out = dir.join("again");
    let run = soragen(&[&args[..], &["--output", &path(&out)]].concat());
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("2 frames but there are 1 masks"),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists() && !dir.join("again.json").exists());
}

#[test]
fn generate_makes_frames_of_the_asked_size() {
    let dir = scratch("generate");
    let out = dir.join("gen");
    let run = soragen(&[
        "generate",
        "--frames",
        "5",
        "--width",
        "24",
        "--height",
        "16",
        "--output",
        &path(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let result = Video::read(&out).unwrap();
    assert_eq!((result.len(), result.width, result.height), (5, 24, 16));
}

#[test]
fn bad_requests_fail_in_one_line_and_write_nothing() {
    let dir = scratch("errors");
    write_png_dir(&clip(16, 16, 2, 0), &dir.join("in")).unwrap();
    let input = path(&dir.join("in"));
    let out = path(&dir.join("out"));
    let missing = path(&dir.join("missing"));
    let tensors = path(&dir.join("out.safetensors"));
    // Exit code 2: refused as the command line is parsed.
    let cases: [(&[&str], &str, i32); 4] = [
        (
            &[
                "extend", "--input", &input, "--frames", "0", "--output", &out,
            ],
            "frame count 0 is out of range",
            2,
        ),
        (
            &[
                "extend", "--input", &missing, "--frames", "2", "--output", &out,
            ],
            "does not exist",
            1,
        ),
        (
            &["replace-background", "--input", &input, "--output", &out],
            "alpha",
            1,
        ),
        (
            &[
                "extend", "--input", &input, "--frames", "2", "--output", &tensors,
            ],
            "folder of images",
            1,
        ),
    ];
    for (args, expected, code) in cases {
        let run = soragen(args);
        let message = stderr(&run);
        assert_eq!(run.status.code(), Some(code), "{args:?}: {message}");
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(
            message.starts_with("soragen: ") && message.contains(expected),
            "{args:?}: {message}"
        );
        assert_nothing_written(&dir, &["in"]);
    }
}

#[test]
fn an_output_folder_holding_other_files_is_left_alone() {
    let dir = scratch("occupied");
    write_png_dir(&clip(16, 16, 2, 0), &dir.join("in")).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    std::fs::write(dir.join("out/notes.txt"), "mine").unwrap();
    let (input, out) = (path(&dir.join("in")), path(&dir.join("out")));
    let run = soragen(&[
        "extend", "--input", &input, "--frames", "1", "--output", &out,
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        stderr(&run).contains("holds other files"),
        "{}",
        stderr(&run)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out/notes.txt")).unwrap(),
        "mine"
    );
    assert_nothing_written(&dir, &["in", "out"]);
}

#[test]
fn a_cache_folder_makes_a_repeated_request_give_the_same_frames() {
    let dir = scratch("cache");
    write_png_dir(&clip(16, 16, 3, 40), &dir.join("in")).unwrap();
    let (input, cache) = (path(&dir.join("in")), path(&dir.join("cache")));
    for out in ["first", "second"] {
        let output = path(&dir.join(out));
        let run = soragen(&[
            "extend", "--input", &input, "--frames", "9", "--cache", &cache, "--output", &output,
        ]);
        assert!(run.status.success(), "{}", stderr(&run));
    }
    assert_eq!(
        Video::read(&dir.join("first")).unwrap(),
        Video::read(&dir.join("second")).unwrap()
    );
    let entries = std::fs::read_dir(dir.join("cache")).unwrap().count();
    assert!(entries >= 1, "the cache holds the finished windows");
}

/// Video files go through ffmpeg (`apt-get install ffmpeg`): an .mp4 in, a lossless .mkv out.
#[test]
fn video_files_are_read_and_written_through_ffmpeg() {
    let dir = scratch("containers");
    let source = clip(32, 16, 4, 60);
    write_y4m(&source, &dir.join("source.y4m")).unwrap();
    let encoded = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-i",
            &path(&dir.join("source.y4m")),
            "-c:v",
            "libx264",
        ])
        .args(["-pix_fmt", "yuv420p", &path(&dir.join("in.mp4"))])
        .status()
        .expect("the ffmpeg command (apt-get install ffmpeg)");
    assert!(encoded.success());
    let out = dir.join("out.mkv");
    let run = soragen(&[
        "extend",
        "--input",
        &path(&dir.join("in.mp4")),
        "--frames",
        "3",
        "--output",
        &path(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let written = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-i",
            &path(&out),
            "-f",
            "yuv4mpegpipe",
            "-pix_fmt",
            "yuv444p",
        ])
        .arg(dir.join("back.y4m"))
        .status()
        .unwrap();
    assert!(written.success());
    let back = Video::read(&dir.join("back.y4m")).unwrap();
    assert_eq!(
        (back.len(), back.width, back.height, back.fps),
        (7, 32, 16, Some((24, 1)))
    );
    assert_eq!(
        record(&out, "out.mkv.json")["generated"],
        serde_json::json!([{ "start": 4, "end": 7 }])
    );

    let run = soragen(&[
        "extend",
        "--input",
        &path(&dir.join("broken.mp4")),
        "--frames",
        "3",
        "--output",
        &path(&out),
    ]);
    assert!(stderr(&run).contains("does not exist"), "{}", stderr(&run));
    std::fs::write(dir.join("broken.mp4"), b"not a video").unwrap();
    let run = soragen(&[
        "extend",
        "--input",
        &path(&dir.join("broken.mp4")),
        "--frames",
        "3",
        "--output",
        &path(&out),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(stderr(&run).lines().count(), 1, "{}", stderr(&run));
    assert!(
        stderr(&run).contains("broken.mp4: ffmpeg:"),
        "{}",
        stderr(&run)
    );
}

fn reference_png(dir: &Path, name: &str, width: usize, height: usize, shade: u8) -> PathBuf {
    let folder = dir.join(format!("{name}-dir"));
    write_png_dir(&clip(width, height, 1, shade), &folder).unwrap();
    let file = dir.join(format!("{name}.png"));
    std::fs::rename(folder.join("00000.png"), &file).unwrap();
    std::fs::remove_dir_all(folder).unwrap();
    file
}

/// `--reference` on the task commands: the references change the new frames, never the kept
/// ones, and the record lists them.
#[test]
fn task_commands_take_references() {
    let dir = scratch("task-references");
    let source = clip(40, 24, 4, 30);
    write_png_dir(&source, &dir.join("in")).unwrap();
    let (one, two) = (
        reference_png(&dir, "one", 24, 40, 200),
        reference_png(&dir, "two", 50, 13, 10),
    );
    let input = path(&dir.join("in"));
    let (plain, with) = (dir.join("plain"), dir.join("with"));
    let run = soragen(&[
        "extend",
        "--input",
        &input,
        "--frames",
        "3",
        "--output",
        &path(&plain),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let run = soragen(&[
        "extend",
        "--input",
        &input,
        "--frames",
        "3",
        "--reference",
        &path(&one),
        "--reference",
        &path(&two),
        "--output",
        &path(&with),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let (plain, with_refs) = (Video::read(&plain).unwrap(), Video::read(&with).unwrap());
    assert_eq!(with_refs.frames[..4], source.frames[..]);
    assert_ne!(with_refs.frames[4..], plain.frames[4..]);
    let record = record(&with, "with.json");
    assert_eq!(
        record["references"],
        serde_json::json!([path(&one), path(&two)])
    );

    let generated = dir.join("gen.y4m");
    let run = soragen(&[
        "generate",
        "--frames",
        "5",
        "--width",
        "32",
        "--height",
        "16",
        "--reference",
        &path(&one),
        "--output",
        &path(&generated),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));

    // A missing reference: one line, exit 1, nothing written.
    let run = soragen(&[
        "extend",
        "--input",
        &input,
        "--frames",
        "3",
        "--reference",
        &path(&dir.join("none.png")),
        "--output",
        &path(&dir.join("x")),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(stderr(&run).lines().count(), 1, "{}", stderr(&run));
    assert!(!dir.join("x").exists());
}

/// `soragen animate`: the still is frame 0, bit-identical; N frames in all at 16 fps; the
/// record says `animate`; fewer than 2 frames is refused.
#[test]
fn animate_keeps_the_still_as_frame_zero() {
    let dir = scratch("animate");
    let still = reference_png(&dir, "still", 40, 24, 77);
    let stored = Video::read_image(&still).unwrap();
    let out = dir.join("out.y4m");
    let pngs = dir.join("out");
    let run = soragen(&[
        "animate",
        "--image",
        &path(&still),
        "--frames",
        "12",
        "--output",
        &path(&pngs),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let result = Video::read(&pngs).unwrap();
    assert_eq!((result.len(), result.width, result.height), (12, 40, 24));
    assert_eq!(
        result.frames[0], stored.frames[0],
        "the still comes back bit for bit"
    );
    assert!(
        result.frames[1..]
            .iter()
            .all(|f| f.rgb != stored.frames[0].rgb)
    );
    let animated = record(&pngs, "out.json");
    assert_eq!(animated["task"], "animate");
    assert_eq!(
        animated["generated"],
        serde_json::json!([{ "start": 1, "end": 12 }])
    );
    let run = soragen(&[
        "animate",
        "--image",
        &path(&still),
        "--frames",
        "5",
        "--reference",
        &path(&still),
        "--output",
        &path(&out),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(Video::read(&out).unwrap().fps, Some((16, 1)));

    let run = soragen(&[
        "animate",
        "--image",
        &path(&still),
        "--frames",
        "1",
        "--output",
        &path(&dir.join("one")),
    ]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("at least 2"), "{}", stderr(&run));
    assert!(!dir.join("one").exists());
}
