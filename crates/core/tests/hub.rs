//! Models by name: a folder is used as it is; a repository id is found in a cache laid out as
//! the Hugging Face tools lay it out, or fetched into it from a hub (a local stand-in, see
//! `fake_hub`), only the files a model needs; offline or unreachable, one line that names the
//! local models.

mod fake_hub;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use fake_hub::{FakeHub, tiny};
use soragen_core::hub::{Hub, ModelId};
use soragen_core::model::WanVace;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn scratch(name: &str) -> PathBuf {
    fake_hub::scratch("hub", name)
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

/// Lays `folder` out in `cache` as the hub's tools do: each file a blob, the snapshot a tree of
/// relative links to the blobs, `refs/REVISION` naming the commit.
fn lay_out(cache: &Path, repo: &str, revision: &str, commit: &str, folder: &Path) -> PathBuf {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshot = root.join("snapshots").join(commit);
    fn link(dir: &Path, snapshot: &Path, blobs: &Path, depth: usize) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let target = snapshot.join(entry.file_name());
            if entry.path().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                link(&entry.path(), &target, blobs, depth + 1);
            } else {
                let blob = format!(
                    "{:x}-{}",
                    std::fs::metadata(entry.path()).unwrap().len(),
                    entry.file_name().display()
                );
                std::fs::copy(entry.path(), blobs.join(&blob)).unwrap();
                let up = "../".repeat(depth + 2);
                std::os::unix::fs::symlink(format!("{up}blobs/{blob}"), target).unwrap();
            }
        }
    }
    std::fs::create_dir_all(root.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    link(folder, &snapshot, &root.join("blobs"), 0);
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs").join(revision), commit).unwrap();
    snapshot
}

/// The tiny model as a hub repository would hold it: plus files a model folder does not need.
fn repository(dir: &Path) -> PathBuf {
    let repo = dir.join("repository");
    copy_dir(&tiny(), &repo);
    std::fs::write(repo.join(".gitattributes"), "*.safetensors filter=lfs\n").unwrap();
    std::fs::write(
        repo.join("transformer/diffusion_pytorch_model.bin"),
        b"pickled weights",
    )
    .unwrap();
    std::fs::create_dir_all(repo.join("assets")).unwrap();
    std::fs::write(repo.join("assets/logo.png"), b"png").unwrap();
    repo
}

fn one_line(error: &soragen_core::Error) -> String {
    let text = error.to_string();
    assert_eq!(text.lines().count(), 1, "{text}");
    text
}

#[test]
fn ids_parse_with_an_optional_revision_and_paths_do_not() {
    let id = ModelId::parse("Wan-AI/Wan2.1-VACE-1.3B-diffusers").unwrap();
    assert_eq!(
        (id.repo.as_str(), id.revision.as_str()),
        ("Wan-AI/Wan2.1-VACE-1.3B-diffusers", "main")
    );
    let id = ModelId::parse("acme/tiny@v1.0").unwrap();
    assert_eq!(
        (id.repo.as_str(), id.revision.as_str()),
        ("acme/tiny", "v1.0")
    );
    assert_eq!(id.to_string(), "acme/tiny@v1.0");
    for path in [
        "/models/wan",
        "./wan/vace",
        "../a/b",
        "a/b/c",
        "tiny",
        "a/",
        "/b",
        "a/b@",
    ] {
        assert_eq!(ModelId::parse(path), None, "{path}");
    }
}

#[test]
fn a_folder_is_used_as_it_is() {
    let hub = Hub::new(scratch("folder")).offline(true);
    assert_eq!(hub.resolve(tiny().to_str().unwrap()).unwrap(), tiny());
}

#[test]
fn an_id_is_found_in_a_cache_laid_out_like_the_hubs() {
    let cache = scratch("layout");
    let snapshot = lay_out(&cache, "acme/tiny-vace", "main", COMMIT, &tiny());
    let hub = Hub::new(cache.clone()).offline(true);
    for spec in [
        "acme/tiny-vace",
        "acme/tiny-vace@main",
        &format!("acme/tiny-vace@{COMMIT}"),
    ] {
        assert_eq!(hub.resolve(spec).unwrap(), snapshot, "{spec}");
    }
    WanVace::load(&snapshot, DType::F32, &Device::Cpu).unwrap();

    let listed = hub.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.to_string(), listed[0].commit.as_str()),
        ("acme/tiny-vace".into(), COMMIT)
    );
    assert_eq!(listed[0].folder, snapshot);
    assert!(listed[0].complete);
    assert!(listed[0].bytes > 100_000, "{} bytes", listed[0].bytes);
}

#[test]
fn an_incomplete_snapshot_is_not_used_offline() {
    let cache = scratch("incomplete");
    let snapshot = lay_out(&cache, "acme/tiny-vace", "main", COMMIT, &tiny());
    std::fs::remove_file(snapshot.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    let hub = Hub::new(cache).offline(true);
    assert!(!hub.list()[0].complete);
    let error = one_line(&hub.resolve("acme/tiny-vace").unwrap_err());
    assert!(
        error.contains("acme/tiny-vace is not in the model cache") && error.contains("offline"),
        "{error}"
    );
}

#[test]
fn offline_an_unknown_id_says_so_and_names_the_local_models() {
    let cache = scratch("offline");
    lay_out(&cache, "acme/tiny-vace", "main", COMMIT, &tiny());
    lay_out(
        &cache,
        "acme/other",
        "v2",
        "fedcba9876543210fedcba9876543210fedcba98",
        &tiny(),
    );
    let hub = Hub::new(cache).offline(true).endpoint("http://127.0.0.1:9");
    let error = one_line(
        &hub.resolve("Wan-AI/Wan2.1-VACE-1.3B-diffusers")
            .unwrap_err(),
    );
    assert!(
        error.contains("Wan-AI/Wan2.1-VACE-1.3B-diffusers") && error.contains("HF_HUB_OFFLINE"),
        "{error}"
    );
    assert!(
        error.ends_with("local models: acme/other@v2, acme/tiny-vace"),
        "{error}"
    );

    let empty = Hub::new(scratch("offline-empty")).offline(true);
    let error = one_line(&empty.resolve("acme/tiny-vace").unwrap_err());
    assert!(error.contains("no models in"), "{error}");
}

#[test]
fn an_unreachable_hub_is_one_line_naming_the_local_models() {
    let cache = scratch("unreachable");
    lay_out(&cache, "acme/tiny-vace", "main", COMMIT, &tiny());
    // Nothing listens on the discard port.
    let hub = Hub::new(cache).endpoint("http://127.0.0.1:9");
    let error = one_line(&hub.resolve("acme/missing").unwrap_err());
    assert!(
        error.contains("cannot fetch acme/missing from http://127.0.0.1:9"),
        "{error}"
    );
    assert!(error.ends_with("local models: acme/tiny-vace"), "{error}");
}

#[test]
fn fetching_fills_the_cache_in_the_hubs_layout_with_only_what_a_model_needs() {
    let dir = scratch("fetch");
    let hub_site = FakeHub::serve(&repository(&dir), "acme/tiny-vace", COMMIT);
    let cache = dir.join("cache");
    let hub = Hub::new(cache.clone()).endpoint(&hub_site.endpoint);

    let folder = hub.resolve("acme/tiny-vace").unwrap();
    let root = cache.join("models--acme--tiny-vace");
    assert_eq!(folder, root.join("snapshots").join(COMMIT));
    assert_eq!(
        std::fs::read_to_string(root.join("refs/main"))
            .unwrap()
            .trim(),
        COMMIT
    );
    let weights = folder.join("transformer/diffusion_pytorch_model.safetensors");
    assert!(
        weights.is_symlink(),
        "snapshot files are links into the blobs"
    );
    assert!(
        std::fs::canonicalize(&weights)
            .unwrap()
            .starts_with(std::fs::canonicalize(root.join("blobs")).unwrap())
    );
    let mut expected: Vec<String> = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ]
    .map(String::from)
    .to_vec();
    expected.sort();
    assert_eq!(
        hub_site.files_fetched(),
        expected,
        "only the files a model folder needs"
    );
    WanVace::verify(&folder).unwrap();
    WanVace::load(&folder, DType::F32, &Device::Cpu).unwrap();

    // Found complete in the cache: the hub is not asked again.
    let asked = hub_site.requests().len();
    assert_eq!(hub.resolve("acme/tiny-vace").unwrap(), folder);
    assert_eq!(hub_site.requests().len(), asked);

    // A file lost from the snapshot is fetched again, and only it.
    std::fs::remove_file(folder.join("vae/config.json")).unwrap();
    let fresh = FakeHub::serve(&repository(&dir.join("again")), "acme/tiny-vace", COMMIT);
    let hub = hub.endpoint(&fresh.endpoint);
    assert_eq!(hub.resolve("acme/tiny-vace").unwrap(), folder);
    assert_eq!(fresh.files_fetched(), vec!["vae/config.json".to_string()]);
}

#[test]
fn a_repository_that_is_not_a_diffusers_model_is_refused() {
    let dir = scratch("not-diffusers");
    let repo = repository(&dir);
    std::fs::remove_file(repo.join("model_index.json")).unwrap();
    let site = FakeHub::serve(&repo, "acme/weights-only", COMMIT);
    let hub = Hub::new(dir.join("cache")).endpoint(&site.endpoint);
    let error = one_line(&hub.resolve("acme/weights-only").unwrap_err());
    assert!(
        error.contains("acme/weights-only is not a diffusers model"),
        "{error}"
    );
    assert!(site.files_fetched().is_empty());
}
