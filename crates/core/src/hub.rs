//! Models by name: a model is a local folder or a Hugging Face repository id
//! (`owner/name`, optionally `@revision`), found in the standard Hugging Face cache or fetched
//! into it with `hf-hub`.
//!
//! The cache is the one the Python tools use, so each side finds what the other downloaded:
//! `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. A model lives in
//! `models--owner--name/`: `refs/REVISION` holds a commit, `snapshots/COMMIT/` the files (links
//! into `blobs/`). `HF_ENDPOINT` names the hub (default `https://huggingface.co`), `HF_TOKEN`
//! authenticates (else the token file `huggingface-cli login` writes), and `HF_HUB_OFFLINE=1`
//! never touches the network.
//!
//! A model found complete in the cache is used without asking the hub; [`Hub::fetch`] asks the
//! hub for the revision's current commit and fetches what is missing. Only the files a model
//! folder needs are fetched: `model_index.json`, and in each part's folder its JSON files
//! (configs, tokenizer, shard index) and safetensors weights.

use std::fmt;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use crate::{Error, Result};

/// The Hugging Face hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The folders of a Wan2.1-VACE model in diffusers layout, and the file each must hold.
const PARTS: [(&str, &str); 5] = [
    ("transformer", "config.json"),
    ("vae", "config.json"),
    ("text_encoder", "config.json"),
    ("tokenizer", "tokenizer.json"),
    ("scheduler", "scheduler_config.json"),
];

/// Parts whose weights a model folder holds.
const WEIGHTED_PARTS: [&str; 3] = ["transformer", "vae", "text_encoder"];

/// A repository on the hub at a revision (a branch, a tag or a commit).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelId {
    /// `owner/name`.
    pub repo: String,
    pub revision: String,
}

impl ModelId {
    /// `owner/name` or `owner/name@revision`; `None` for anything else (a path, say).
    pub fn parse(spec: &str) -> Option<Self> {
        let (repo, revision) = spec.split_once('@').unwrap_or((spec, "main"));
        let (owner, name) = repo.split_once('/')?;
        let word = |part: &str| {
            !part.is_empty()
                && !part.starts_with(['.', '-'])
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        let revision_ok =
            !revision.is_empty() && !revision.contains("..") && !revision.starts_with('/');
        (word(owner) && word(name) && revision_ok).then(|| Self {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }

    /// The repository's folder in the cache.
    fn folder_name(&self) -> String {
        format!("models--{}", self.repo.replace('/', "--"))
    }
}

impl fmt::Display for ModelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.revision == "main" {
            f.write_str(&self.repo)
        } else {
            write!(f, "{}@{}", self.repo, self.revision)
        }
    }
}

/// A model snapshot found in the cache.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedModel {
    /// The repository, at the revision name that points to this snapshot (its commit if none).
    pub id: ModelId,
    pub commit: String,
    pub folder: PathBuf,
    /// Every file a model folder needs is there.
    pub complete: bool,
    /// Bytes of the files in the snapshot.
    pub bytes: u64,
}

/// Where models are looked up and fetched: a cache folder and a hub.
#[derive(Clone, Debug)]
pub struct Hub {
    cache: PathBuf,
    endpoint: String,
    token: Option<String>,
    offline: bool,
    progress: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Whether an environment flag is on, as `huggingface_hub` reads them.
fn flag(name: &str) -> bool {
    env(name).is_some_and(|v| ["1", "true", "yes", "on"].contains(&v.to_ascii_lowercase().as_str()))
}

impl Hub {
    /// The cache and hub the environment names (see the module documentation).
    pub fn from_env() -> Self {
        let home = || env("HOME").map(|home| PathBuf::from(home).join(".cache/huggingface"));
        let cache = env("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| env("HF_HOME").map(|home| PathBuf::from(home).join("hub")))
            .or_else(|| home().map(|home| home.join("hub")))
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        let mut hub = Self::new(cache).offline(flag("HF_HUB_OFFLINE"));
        if let Some(endpoint) = env("HF_ENDPOINT") {
            hub = hub.endpoint(&endpoint);
        }
        hub.token = env("HF_TOKEN").or(hub.token);
        hub
    }

    /// The hub at [`DEFAULT_ENDPOINT`] with its cache in `cache`, online, without a progress bar.
    pub fn new(cache: PathBuf) -> Self {
        let token = Cache::new(cache.clone()).token();
        Self {
            cache,
            endpoint: DEFAULT_ENDPOINT.to_string(),
            token,
            offline: false,
            progress: false,
        }
    }

    pub fn endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = endpoint.trim_end_matches('/').to_string();
        self
    }

    /// Offline: models come from the cache only.
    pub fn offline(mut self, offline: bool) -> Self {
        self.offline = offline;
        self
    }

    /// A progress bar per file fetched, on standard error when it is a terminal.
    pub fn progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// A model folder for `spec`: an existing folder as it is, else a repository id from the
    /// cache, fetched first when it is not there complete (unless offline).
    pub fn resolve(&self, spec: &str) -> Result<PathBuf> {
        self.look_up(spec, !self.offline)
    }

    /// A model folder for `spec` as [`Self::resolve`] finds it, but never fetching.
    pub fn find(&self, spec: &str) -> Result<PathBuf> {
        self.look_up(spec, false)
    }

    fn look_up(&self, spec: &str, fetch: bool) -> Result<PathBuf> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(path.to_path_buf());
        }
        let Some(id) = ModelId::parse(spec) else {
            return Err(Error::Input(format!(
                "{spec}: no such model folder, and not a repository id (owner/name[@revision])"
            )));
        };
        if let Some(folder) = self.cached(&id) {
            return Ok(folder);
        }
        if !fetch {
            let why = if self.offline {
                "offline: HF_HUB_OFFLINE is set"
            } else {
                "`soragen models fetch` gets it"
            };
            return Err(Error::Input(format!(
                "no folder {spec}, and {id} is not in the model cache {} ({why}); {}",
                self.cache.display(),
                self.local_models_line()
            )));
        }
        self.fetch(&id).map_err(|e| {
            Error::Input(format!(
                "no folder {spec}, and {e}; {}",
                self.local_models_line()
            ))
        })
    }

    /// The complete snapshot of `id` in the cache, if there is one.
    pub fn cached(&self, id: &ModelId) -> Option<PathBuf> {
        let repo = self.cache.join(id.folder_name());
        let commit = read_small(&repo.join("refs").join(&id.revision))
            .map(|commit| commit.trim().to_string())
            .unwrap_or_else(|_| id.revision.clone());
        let folder = repo.join("snapshots").join(commit);
        is_complete(&folder).then_some(folder)
    }

    /// Asks the hub for `id`'s current commit and fetches the files a model folder needs that
    /// the cache lacks; returns the snapshot folder.
    pub fn fetch(&self, id: &ModelId) -> Result<PathBuf> {
        if self.offline {
            return Err(Error::Input(format!(
                "cannot fetch {id}: offline (HF_HUB_OFFLINE is set)"
            )));
        }
        let failed = |e: ApiError| {
            Error::Input(format!(
                "cannot fetch {id} from {}: {}",
                self.endpoint,
                reason(&e)
            ))
        };
        let api = ApiBuilder::from_cache(Cache::new(self.cache.clone()))
            .with_endpoint(self.endpoint.clone())
            .with_token(self.token.clone())
            .with_progress(self.progress)
            .build()
            .map_err(failed)?;
        let info = api
            .repo(Repo::with_revision(
                id.repo.clone(),
                RepoType::Model,
                id.revision.clone(),
            ))
            .info()
            .map_err(failed)?;
        let files: Vec<&str> = info
            .siblings
            .iter()
            .map(|s| s.rfilename.as_str())
            .filter(|f| needed(f))
            .collect();
        if !files.contains(&"model_index.json") {
            return Err(Error::Input(format!(
                "{id} is not a diffusers model (it has no model_index.json)"
            )));
        }
        // Files are fetched for the commit the hub named, into that commit's snapshot, and the
        // revision points to it only once all are there.
        let repo = api.repo(Repo::with_revision(
            id.repo.clone(),
            RepoType::Model,
            info.sha.clone(),
        ));
        let snapshot = self
            .cache
            .join(id.folder_name())
            .join("snapshots")
            .join(&info.sha);
        for file in files
            .into_iter()
            .filter(|file| !snapshot.join(file).is_file())
        {
            repo.download(file).map_err(failed)?;
        }
        if !is_complete(&snapshot) {
            return Err(Error::Input(format!(
                "{id} at {}: the repository lacks files a Wan2.1-VACE diffusers model needs",
                info.sha
            )));
        }
        let ref_path = self
            .cache
            .join(id.folder_name())
            .join("refs")
            .join(&id.revision);
        let written = ref_path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&ref_path, &info.sha));
        written.map_err(|e| Error::Output(format!("cannot write {}: {e}", ref_path.display())))?;
        Ok(snapshot)
    }

    /// The model snapshots in the cache, by repository and revision.
    pub fn list(&self) -> Vec<CachedModel> {
        let mut models = Vec::new();
        for repo_folder in sorted_entries(&self.cache) {
            let Some(repo) = repo_folder
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("models--"))
                .map(|n| n.replacen("--", "/", 1))
            else {
                continue;
            };
            // hf-hub also writes a ref named after the commit when fetching by commit.
            let refs: Vec<(String, String)> = refs_of(&repo_folder.join("refs"))
                .into_iter()
                .filter(|(name, commit)| name != commit)
                .collect();
            for snapshot in sorted_entries(&repo_folder.join("snapshots")) {
                let commit = snapshot
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let revisions: Vec<&String> = refs
                    .iter()
                    .filter(|(_, c)| *c == commit)
                    .map(|(r, _)| r)
                    .collect();
                let names = if revisions.is_empty() {
                    vec![&commit]
                } else {
                    revisions
                };
                for revision in names {
                    models.push(CachedModel {
                        id: ModelId {
                            repo: repo.clone(),
                            revision: revision.clone(),
                        },
                        commit: commit.clone(),
                        complete: is_complete(&snapshot),
                        bytes: folder_bytes(&snapshot),
                        folder: snapshot.clone(),
                    });
                }
            }
        }
        models
    }

    /// "local models: a, b@v2" or "no local models", for error messages.
    fn local_models_line(&self) -> String {
        let names: Vec<String> = self
            .list()
            .iter()
            .filter(|m| m.complete)
            .map(|m| m.id.to_string())
            .collect();
        if names.is_empty() {
            format!("no models in {}", self.cache.display())
        } else {
            format!("local models: {}", names.join(", "))
        }
    }
}

/// [`Hub::resolve`] on the hub and cache the environment names.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    Hub::from_env().resolve(spec)
}

/// A repository file a model folder needs.
fn needed(file: &str) -> bool {
    if file == "model_index.json" {
        return true;
    }
    let Some((part, name)) = file.split_once('/') else {
        return false;
    };
    PARTS.iter().any(|(p, _)| *p == part)
        && !name.contains('/')
        && (name.ends_with(".json") || name.ends_with(".safetensors"))
}

/// Every file of a model folder is there: the parts' configs and, for parts with weights, the
/// shards their index names or at least one safetensors file.
fn is_complete(folder: &Path) -> bool {
    folder.join("model_index.json").is_file()
        && PARTS
            .iter()
            .all(|(part, file)| folder.join(part).join(file).is_file())
        && WEIGHTED_PARTS
            .iter()
            .all(|part| weights_complete(&folder.join(part)))
}

fn weights_complete(dir: &Path) -> bool {
    let files: Vec<PathBuf> = sorted_entries(dir);
    let named = |suffix: &str| {
        files
            .iter()
            .find(|f| f.to_str().is_some_and(|n| n.ends_with(suffix)) && f.is_file())
    };
    match named(".safetensors.index.json") {
        Some(index) => {
            shards(index).is_some_and(|shards| shards.iter().all(|s| dir.join(s).is_file()))
        }
        None => named(".safetensors").is_some(),
    }
}

/// The shard files a weights index names.
fn shards(index: &Path) -> Option<Vec<String>> {
    let text = soragen_models::files::read_text(index, soragen_models::files::TEXT_LIMIT).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let map = json.get("weight_map")?.as_object()?;
    Some(
        map.values()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
    )
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Revision name -> commit, from a repository's `refs/` folder (names may have slashes).
fn refs_of(dir: &Path) -> Vec<(String, String)> {
    let mut refs = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in sorted_entries(&next) {
            if is_real_dir(&entry) {
                pending.push(entry);
            } else if let (Ok(name), Ok(commit)) = (entry.strip_prefix(dir), read_small(&entry)) {
                refs.push((
                    name.to_string_lossy().into_owned(),
                    commit.trim().to_string(),
                ));
            }
        }
    }
    refs.sort();
    refs
}

/// Bytes of the files under `dir`, following the snapshot's links into the blobs.
fn folder_bytes(dir: &Path) -> u64 {
    sorted_entries(dir)
        .iter()
        .map(|entry| {
            if is_real_dir(entry) {
                folder_bytes(entry)
            } else {
                entry.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

/// A folder itself, not a link to one: walks never follow links into folders, so link loops
/// in a cache cannot make them endless.
fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// A ref file's text (a commit hash), read only from a regular file and bounded.
fn read_small(path: &Path) -> std::io::Result<String> {
    soragen_models::files::read_text(path, 4096)
}

/// One line saying why a request to the hub failed.
fn reason(error: &ApiError) -> String {
    let text = error.to_string();
    if text.contains("status code 401") || text.contains("status code 404") {
        return "the hub has no such model (a private or gated one needs HF_TOKEN)".to_string();
    }
    text.lines().next().unwrap_or("failed").to_string()
}
