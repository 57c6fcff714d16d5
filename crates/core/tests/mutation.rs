//! A randomized mutation test over what users hand us: media headers and files (`.y4m`, PNG)
//! and model folders (a copy of `models/tiny` with one file damaged at a time). Every case must
//! end in a result or a one-line error: no panic, no abort, no hang. A fixed seed and 500 cases
//! by default; `SORAGEN_MUTATION_CASES=N` runs more (and `SORAGEN_MUTATION_SEED` others).

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

use soragen_core::model::WanVace;
use soragen_core::video::{Frame, Video, write_png_dir, write_y4m};

/// xorshift64*: small, seedable, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("soragen-mutation-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Numbers that break naive size and rate arithmetic.
const NASTY: [&str; 14] = [
    "0",
    "-1",
    "1",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "9223372036854775808",
    "1e308",
    "NaN",
    "inf",
    "100000",
    "2147483648",
    "",
    "16",
];

/// One damaged copy of `original`: bytes flipped, cut short, spliced, or a number swapped.
fn mutate(rng: &mut Rng, original: &[u8]) -> Vec<u8> {
    let mut bytes = original.to_vec();
    match rng.below(5) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
        }
        1 => bytes.truncate(rng.below(bytes.len())),
        2 => {
            let at = rng.below(bytes.len());
            let junk: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
            bytes.splice(at..at, junk);
        }
        _ => {
            // Replace one run of ASCII digits with a nasty number.
            let digits: Vec<usize> = (0..bytes.len())
                .filter(|&i| bytes[i].is_ascii_digit())
                .collect();
            if let Some(&start) = digits.get(rng.below(digits.len())) {
                let end = (start..bytes.len())
                    .find(|&i| !bytes[i].is_ascii_digit())
                    .unwrap_or(bytes.len());
                bytes.splice(start..end, rng.pick(&NASTY).bytes());
            }
        }
    }
    bytes
}

/// Runs `case`; a panic or an error of several lines is added to `failures`.
fn survives(failures: &mut Vec<String>, what: &str, case: impl FnOnce() -> Result<(), String>) {
    match std::panic::catch_unwind(AssertUnwindSafe(case)) {
        Ok(Ok(())) => {}
        Ok(Err(message)) if !message.contains('\n') => {}
        Ok(Err(message)) => failures.push(format!("{what}: an error of several lines: {message}")),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or(panic.downcast_ref::<&str>().map(|s| s.to_string()));
            failures.push(format!("{what}: panicked: {}", message.unwrap_or_default()));
        }
    }
}

fn sample_clip() -> Video {
    let mut video = Video::new(16, 16, Some((24, 1)));
    for f in 0..3 {
        let rgb: Vec<u8> = (0..16 * 16 * 3).map(|i| (i + f * 40) as u8).collect();
        video.frames.push(Frame::from_8bit(&rgb, None));
    }
    video
}

#[test]
fn damaged_media_files_give_a_clip_or_one_line() {
    let dir = scratch("media");
    let cases = env_number("SORAGEN_MUTATION_CASES", 500) / 2;
    let mut rng = Rng(env_number("SORAGEN_MUTATION_SEED", 24) | 1);
    write_y4m(&sample_clip(), &dir.join("clip.y4m")).unwrap();
    write_png_dir(&sample_clip(), &dir.join("frames")).unwrap();
    let mut y4m = std::fs::read(dir.join("clip.y4m")).unwrap();
    // Every chroma layout the reader takes, and a limited-range header, as starting points.
    let header_end = y4m.iter().position(|&b| b == b'\n').unwrap();
    let headers = [
        "YUV4MPEG2 W16 H16 F24:1 C420jpeg",
        "YUV4MPEG2 W16 H16 F30000:1001 C444 XCOLORRANGE=FULL",
    ];
    let png = std::fs::read(dir.join("frames/00000.png")).unwrap();
    let mut failures = Vec::new();
    for case in 0..cases {
        if case % 2 == 0 {
            let header = rng.pick(&headers);
            y4m.splice(..header_end.min(y4m.len()), header.bytes());
            let path = dir.join("case.y4m");
            std::fs::write(&path, mutate(&mut rng, &y4m)).unwrap();
            survives(&mut failures, &format!("y4m case {case}"), || {
                Video::read(&path).map(drop).map_err(|e| e.to_string())
            });
            y4m = std::fs::read(dir.join("clip.y4m")).unwrap();
        } else {
            let frames = dir.join("case");
            let _ = std::fs::remove_dir_all(&frames);
            std::fs::create_dir_all(&frames).unwrap();
            std::fs::write(frames.join("00000.png"), mutate(&mut rng, &png)).unwrap();
            survives(&mut failures, &format!("png case {case}"), || {
                Video::read(&frames).map(drop).map_err(|e| e.to_string())
            });
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, found)
        } else {
            found.push(path)
        }
    }
}

#[test]
fn damaged_model_folders_are_verified_or_refused_in_one_line() {
    let dir = scratch("models");
    let model = dir.join("tiny");
    copy_dir(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny"),
        &model,
    );
    let mut targets = Vec::new();
    files(&model, &mut targets);
    // The tokenizer is a large vocabulary checked by its own tests; damage the rest.
    targets.retain(|p| !p.ends_with("README.md") && !p.to_string_lossy().contains("tokenizer"));
    targets.sort();
    let cases = env_number("SORAGEN_MUTATION_CASES", 500) / 2;
    let mut rng = Rng(env_number("SORAGEN_MUTATION_SEED", 24).wrapping_mul(3) | 1);
    let mut failures = Vec::new();
    for case in 0..cases {
        let target = rng.pick(&targets).clone();
        let original = std::fs::read(&target).unwrap();
        let damaged = if target.extension().is_some_and(|e| e == "safetensors") && rng.below(2) == 0
        {
            // Weights: damage the header (its first bytes) or the values.
            let mut bytes = original.clone();
            let header = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let at = if rng.below(2) == 0 {
                rng.below(header)
            } else {
                header + rng.below(bytes.len() - header)
            };
            bytes[at] = rng.next() as u8;
            bytes
        } else {
            mutate(&mut rng, &original)
        };
        std::fs::write(&target, damaged).unwrap();
        let what = format!(
            "case {case}: {}",
            target.strip_prefix(&model).unwrap().display()
        );
        survives(&mut failures, &what, || {
            WanVace::verify(&model).map_err(|e| e.to_string())
        });
        std::fs::write(&target, original).unwrap();
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    WanVace::verify(&model).unwrap();
}
