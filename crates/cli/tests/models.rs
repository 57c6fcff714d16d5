//! `soragen models` and `--model ID`, run as the built binary against a local stand-in for the
//! Hugging Face hub (`HF_ENDPOINT`) and a scratch cache (`HF_HUB_CACHE`).

#[path = "../../core/tests/fake_hub/mod.rs"]
mod fake_hub;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fake_hub::{FakeHub, tiny};

const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn scratch(name: &str) -> PathBuf {
    fake_hub::scratch("models", name)
}

/// `soragen ARGS...` with the cache in `cache`, the hub at `endpoint`, offline if asked.
fn soragen(args: &[&str], cache: &Path, endpoint: &str, offline: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_soragen"));
    command
        .args(args)
        .env("HF_HUB_CACHE", cache)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN");
    if offline {
        command.env("HF_HUB_OFFLINE", "1");
    } else {
        command.env_remove("HF_HUB_OFFLINE");
    }
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_model_is_fetched_listed_verified_and_used_by_its_id() {
    let dir = scratch("fetch");
    let cache = dir.join("cache");
    let site = FakeHub::serve(&tiny(), "acme/tiny-vace", COMMIT);

    let empty = soragen(&["models", "list"], &cache, &site.endpoint, false);
    assert!(empty.status.success(), "{}", stderr(&empty));
    assert!(
        stdout(&empty).starts_with("no models in"),
        "{}",
        stdout(&empty)
    );

    let fetched = soragen(
        &["models", "fetch", "acme/tiny-vace"],
        &cache,
        &site.endpoint,
        false,
    );
    assert!(fetched.status.success(), "{}", stderr(&fetched));
    let folder = cache.join("models--acme--tiny-vace/snapshots").join(COMMIT);
    assert_eq!(stdout(&fetched).trim(), folder.display().to_string());
    assert!(
        folder
            .join("transformer/diffusion_pytorch_model.safetensors")
            .is_file()
    );

    let listed = soragen(&["models", "list"], &cache, &site.endpoint, true);
    let line = stdout(&listed);
    assert!(
        line.starts_with("acme/tiny-vace\t") && line.contains("\tcomplete\t"),
        "{line}"
    );

    for spec in ["acme/tiny-vace", tiny().to_str().unwrap()] {
        let verified = soragen(&["models", "verify", spec], &cache, &site.endpoint, true);
        assert!(verified.status.success(), "{spec}: {}", stderr(&verified));
        assert!(
            stdout(&verified).contains("a complete Wan2.1-VACE model"),
            "{}",
            stdout(&verified)
        );
    }

    // Offline, a task finds the model by its id in the cache.
    let output = dir.join("kite.y4m");
    let args = [
        "generate",
        "--model",
        "acme/tiny-vace",
        "--frames",
        "5",
        "--width",
        "32",
        "--height",
        "16",
    ];
    let mut args = args.to_vec();
    let output_arg = output.to_str().unwrap();
    args.extend([
        "--steps",
        "1",
        "--guidance",
        "1",
        "--window-frames",
        "5",
        "--context-frames",
        "2",
    ]);
    args.extend(["--output", output_arg]);
    let generated = soragen(&args, &cache, "http://127.0.0.1:9", true);
    assert!(generated.status.success(), "{}", stderr(&generated));
    assert!(output.is_file());

    // An id that is not there: one line, naming the local models.
    let missing = soragen(
        &[
            "generate",
            "--model",
            "acme/missing",
            "--frames",
            "5",
            "--output",
            output_arg,
        ],
        &cache,
        "http://127.0.0.1:9",
        true,
    );
    assert_eq!(missing.status.code(), Some(1));
    let error = stderr(&missing);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.contains("acme/missing") && error.contains("HF_HUB_OFFLINE"),
        "{error}"
    );
    assert!(
        error.trim_end().ends_with("local models: acme/tiny-vace"),
        "{error}"
    );
}

#[test]
fn fetch_without_a_reachable_hub_is_one_line() {
    let cache = scratch("unreachable");
    let output = soragen(
        &["models", "fetch", "Wan-AI/Wan2.1-VACE-1.3B-diffusers"],
        &cache,
        "http://127.0.0.1:9",
        false,
    );
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.contains("cannot fetch Wan-AI/Wan2.1-VACE-1.3B-diffusers from http://127.0.0.1:9"),
        "{error}"
    );
}

#[test]
fn verify_names_what_is_wrong_with_a_folder() {
    let dir = scratch("verify");
    let broken = dir.join("broken");
    copy_dir(&tiny(), &broken);
    // The VAE's weights in the transformer's place.
    std::fs::copy(
        broken.join("vae/diffusion_pytorch_model.safetensors"),
        broken.join("transformer/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let output = soragen(
        &["models", "verify", broken.to_str().unwrap()],
        &dir,
        "http://127.0.0.1:9",
        true,
    );
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.contains("transformer") && error.contains("missing tensor"),
        "{error}"
    );
}
