//! Common video files (`.mp4`, `.mov`, `.mkv`, `.webm`) in and out through the `ffmpeg`
//! command, by way of a temporary `.y4m` that the core reads and writes. `.mkv` is written
//! losslessly (FFV1, 4:4:4); `.mp4`/`.mov` (H.264) and `.webm` (VP9) are lossy 4:2:0, so frames
//! kept from the source are bit-identical only in PNG, `.y4m` and `.mkv` outputs.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use soragen_core::video::{Video, write_y4m};
use soragen_core::{Error, Result};

const CONTAINERS: [&str; 4] = ["mp4", "mov", "mkv", "webm"];

fn extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

pub fn is_container(path: &Path) -> bool {
    extension(path).is_some_and(|e| CONTAINERS.contains(&e.as_str()))
}

/// A scratch `.y4m` in the temporary folder, removed when dropped.
fn scratch_y4m(error: fn(String) -> Error) -> Result<tempfile::TempPath> {
    tempfile::Builder::new()
        .prefix("soragen-")
        .suffix(".y4m")
        .tempfile()
        .map(tempfile::NamedTempFile::into_temp_path)
        .map_err(|e| error(format!("cannot create a scratch file: {e}")))
}

/// An ffmpeg log line without its `[demuxer @ 0x...] ` prefix.
fn log_line(line: &str) -> &str {
    let line = line.trim();
    match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((origin, message)) if origin.contains(" @ ") => message.trim(),
        _ => line,
    }
}

/// Runs `ffmpeg ARGS`; `about` names the file in errors. At `-v error` ffmpeg prints only
/// errors, yet exits 0 after some (a file that ends early, a damaged packet: fewer or repaired
/// frames), so any line it prints fails the run too: nothing is lost silently.
fn ffmpeg(args: &[&OsStr], about: &Path, error: fn(String) -> Error) -> Result<()> {
    let output = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .map_err(|e| {
            error(format!(
                "{}: video files need the ffmpeg command ({e})",
                about.display()
            ))
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut lines = stderr.lines().map(log_line).filter(|l| !l.is_empty());
    if output.status.success() {
        return match lines.next() {
            None => Ok(()),
            Some(first) => Err(error(format!(
                "{}: damaged or truncated, ffmpeg: {first}",
                about.display()
            ))),
        };
    }
    // On a failure the last line says what stopped it.
    let reason = lines.next_back().unwrap_or("failed");
    Err(error(format!("{}: ffmpeg: {reason}", about.display())))
}

/// Reads frames: video files through ffmpeg, PNG folders and `.y4m` files as the core does.
pub fn read(path: &Path) -> Result<Video> {
    if !is_container(path) {
        return Video::read(path);
    }
    if !path.is_file() {
        return Err(Error::Input(format!("{} does not exist", path.display())));
    }
    let decoded = scratch_y4m(Error::Input)?;
    let mut args: Vec<&OsStr> = vec!["-i".as_ref(), path.as_os_str()];
    args.extend(["-f", "yuv4mpegpipe", "-pix_fmt", "yuv444p"].map(OsStr::new));
    args.push(decoded.as_os_str());
    ffmpeg(&args, path, Error::Input)?;
    Video::read(&decoded)
}

/// Encodes frames into `staging`, a video file of `output`'s kind.
pub fn write(video: &Video, output: &Path, staging: &Path) -> Result<()> {
    let frames = scratch_y4m(Error::Output)?;
    write_y4m(video, &frames)?;
    let codec: &[&str] = match extension(output).as_deref() {
        // Level 3 with slice checksums: a damaged packet is found when the file is read.
        Some("mkv") => &[
            "-c:v",
            "ffv1",
            "-level",
            "3",
            "-slicecrc",
            "1",
            "-pix_fmt",
            "yuv444p",
        ],
        Some("webm") => &[
            "-c:v",
            "libvpx-vp9",
            "-crf",
            "20",
            "-b:v",
            "0",
            "-pix_fmt",
            "yuv420p",
        ],
        _ => &[
            "-c:v",
            "libx264",
            "-crf",
            "12",
            "-pix_fmt",
            "yuv420p",
            "-vf",
            "scale=out_range=tv",
        ],
    };
    // The staging name ends in `.partial`: tell ffmpeg the container by name.
    let format = match extension(output).as_deref() {
        Some("mkv") => "matroska",
        Some("webm") => "webm",
        Some("mov") => "mov",
        _ => "mp4",
    };
    let mut args: Vec<&OsStr> = vec!["-i".as_ref(), frames.as_os_str()];
    args.extend(codec.iter().map(OsStr::new));
    // The same frames give the same bytes: no encoder version, creation time or random
    // segment id (Matroska) in the file.
    args.extend(["-fflags", "+bitexact", "-flags:v", "+bitexact"].map(OsStr::new));
    args.extend([OsStr::new("-f"), OsStr::new(format), staging.as_os_str()]);
    ffmpeg(&args, output, Error::Output)
}
