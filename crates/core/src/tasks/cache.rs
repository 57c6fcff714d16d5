//! A content-addressed store of finished model windows, in a plain directory that machines can
//! share (a render farm's network share): `ab/abcdef....safetensors`, named by the SHA-256 of
//! everything that changes the window's output: the model folder's identity, this build's
//! version, the dtype and device kind, the window's exact input pixels and mask at the working
//! size, the prompts, steps, guidance and seed. Entries hold the model's raw output at the
//! working size; compositing and colour matching are redone from the source on every run.
//! Files appear by rename, so a reader never sees a half-written entry; each holds the SHA-256
//! of its values, checked on every read: a damaged entry counts as absent and is replaced.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use crate::model::WanVace;
use crate::{Error, Result};

/// A key being built: labelled, length-prefixed fields, so no two field lists hash alike.
#[derive(Clone)]
pub(crate) struct Key(Sha256);

impl Key {
    pub(crate) fn new() -> Self {
        let mut key = Self(Sha256::new());
        key.add("format", b"soragen-window-1");
        key.add("build", env!("CARGO_PKG_VERSION").as_bytes());
        key
    }

    pub(crate) fn add(&mut self, label: &str, bytes: &[u8]) {
        for field in [label.as_bytes(), bytes] {
            self.0.update((field.len() as u64).to_le_bytes());
            self.0.update(field);
        }
    }

    pub(crate) fn add_f32s(&mut self, label: &str, values: &[f32]) {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add(label, &bytes);
    }

    fn hex(self) -> String {
        self.0
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The model as far as its output goes: every small file's content and every weight file's
/// name, size and safetensors header (tensor names, shapes, offsets); hashing gigabytes of
/// weights on every run would cost more than it protects against. Plus dtype and device kind.
pub(crate) fn add_model(key: &mut Key, model: &WanVace) -> Result<()> {
    let mut files = Vec::new();
    list_files(&model.folder, &mut files)?;
    files.sort();
    for file in files {
        let relative = file
            .strip_prefix(&model.folder)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        let unreadable =
            |e: std::io::Error| Error::Input(format!("cannot read {}: {e}", file.display()));
        let bytes = if file.extension().is_some_and(|e| e == "safetensors") {
            let (size, header) = soragen_models::weights::raw_header(&file).map_err(unreadable)?;
            [size.to_le_bytes().as_slice(), &header].concat()
        } else {
            soragen_models::files::read_bounded(&file, soragen_models::files::TEXT_LIMIT)
                .map_err(unreadable)?
        };
        key.add(&relative, &bytes);
    }
    // LoRA adapters are small next to a model: their whole content counts, with the strength.
    for adapter in &model.adapters {
        let bytes = std::fs::read(&adapter.path)
            .map_err(|e| Error::Input(format!("cannot read {}: {e}", adapter.path.display())))?;
        key.add(
            "lora",
            &[bytes.as_slice(), &adapter.strength.to_le_bytes()].concat(),
        );
    }
    key.add("dtype", format!("{:?}", model.dtype).as_bytes());
    key.add(
        "device",
        if model.device.is_cpu() {
            b"cpu"
        } else {
            b"accelerator"
        },
    );
    Ok(())
}

fn list_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let path = entry.path();
        // Folders are entered only when real ones, never through links (a link loop).
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            list_files(&path, files)?;
        } else if !entry.file_name().to_string_lossy().starts_with('.') {
            files.push(path);
        }
    }
    Ok(())
}

/// The SHA-256 of an entry's values, stored beside them.
fn checksum_of(values: &[f32]) -> Vec<u8> {
    let mut hash = Sha256::new();
    for value in values {
        hash.update(value.to_le_bytes());
    }
    hash.finalize().to_vec()
}

pub(crate) struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Output(format!("cannot use {} as a cache: {e}", dir.display())))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.safetensors"))
    }

    /// The stored output for `key`, if there is one of the expected shape; an unreadable
    /// entry counts as absent and is overwritten by the next `put`.
    pub(crate) fn get(&self, key: Key, shape: &[usize]) -> (String, Option<Vec<f32>>) {
        let key = key.hex();
        let path = self.path(&key);
        let stored = soragen_models::files::open_regular(&path)
            .ok()
            .and_then(|_| candle_core::safetensors::load(&path, &Device::Cpu).ok())
            .and_then(|mut tensors| Some((tensors.remove("frames")?, tensors.remove("checksum")?)))
            .filter(|(frames, _)| frames.dims() == shape)
            .and_then(|(frames, checksum)| {
                let values = frames.flatten_all().ok()?.to_vec1::<f32>().ok()?;
                let intact = checksum.to_vec1::<u8>().ok()? == checksum_of(&values);
                (intact && values.iter().all(|v| v.is_finite())).then_some(values)
            });
        (key, stored)
    }

    pub(crate) fn put(&self, key: &str, values: &[f32], shape: &[usize]) -> Result<()> {
        let path = self.path(key);
        let failed = |e: &dyn std::fmt::Display| {
            Error::Output(format!("cannot write {}: {e}", path.display()))
        };
        let folder = path.parent().expect("entries sit in a subfolder");
        std::fs::create_dir_all(folder).map_err(|e| failed(&e))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Output(
                "a window with non-finite values is never cached".into(),
            ));
        }
        let frames = Tensor::from_slice(values, shape, &Device::Cpu)?;
        let checksum = Tensor::new(checksum_of(values), &Device::Cpu)?;
        // A random name, so two machines filling one share never write the same file; it is
        // removed unless it is renamed into place.
        let staging = tempfile::Builder::new()
            .suffix(".partial")
            .tempfile_in(folder)
            .map_err(|e| failed(&e))?
            .into_temp_path();
        candle_core::safetensors::save(
            &std::collections::HashMap::from([("frames", frames), ("checksum", checksum)]),
            &staging,
        )
        .map_err(|e| failed(&e))?;
        staging.persist(&path).map_err(|e| failed(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_windows_are_never_cached_and_an_entry_that_is_no_file_counts_as_absent() {
        let dir = std::env::temp_dir().join(format!("soragen-cache-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = Cache::open(&dir).unwrap();
        let mut key = Key::new();
        key.add("case", b"one");
        let (name, stored) = cache.get(key.clone(), &[2]);
        assert_eq!(stored, None);
        let error = cache.put(&name, &[1.0, f32::NAN], &[2]).unwrap_err();
        assert!(error.to_string().contains("never cached"), "{error}");
        assert!(!cache.path(&name).exists(), "nothing non-finite is stored");

        // A FIFO in place of the entry would block a plain read: it is skipped, then replaced.
        let entry = cache.path(&name);
        std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&entry)
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(cache.get(key.clone(), &[2]).1, None);
        cache.put(&name, &[1.0, 2.0], &[2]).unwrap();
        assert!(std::fs::symlink_metadata(&entry).unwrap().is_file());
        assert_eq!(cache.get(key, &[2]).1, Some(vec![1.0, 2.0]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
