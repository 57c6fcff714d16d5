//! Weights of one model part: memory-mapped safetensors files (single or sharded with a
//! `*.safetensors.index.json`), served to the model constructors through a `VarBuilder` that
//! checks every request (name, shape, dtype) and records which tensors were used, so that a
//! checkpoint with a missing, misshapen or unexpected tensor is refused with its file and name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Error, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;
use memmap2::Mmap;
use safetensors::{Dtype as StDtype, SafeTensors};

/// Where one tensor lives.
#[derive(Clone, Debug)]
struct Entry {
    /// Index into `Weights::files`; `None` for a placeholder (see [`Weights::placeholders`]).
    file: Option<usize>,
    dtype: DType,
    shape: Vec<usize>,
    /// Byte range in the file, header included.
    bytes: (usize, usize),
}

struct MappedFile {
    path: PathBuf,
    map: Mmap,
}

/// The tensors of one model part and a record of which of them the model asked for.
pub struct Weights {
    /// What the error messages call this set of tensors (a folder or a file).
    origin: String,
    files: Vec<MappedFile>,
    entries: HashMap<String, Entry>,
    used: Mutex<BTreeSet<String>>,
}

fn err(msg: String) -> Error {
    Error::Msg(msg)
}

fn candle_dtype(dtype: StDtype) -> Option<DType> {
    Some(match dtype {
        StDtype::F32 => DType::F32,
        StDtype::F16 => DType::F16,
        StDtype::BF16 => DType::BF16,
        StDtype::F64 => DType::F64,
        StDtype::I64 => DType::I64,
        StDtype::U32 => DType::U32,
        StDtype::U8 => DType::U8,
        _ => return None,
    })
}

impl Weights {
    /// Opens the weights of a model part folder: the shards named by a `*.safetensors.index.json`
    /// if there is one, otherwise every `*.safetensors` file in it.
    pub fn open_dir(dir: &Path) -> Result<Arc<Self>> {
        if !dir.is_dir() {
            return Err(err(format!(
                "model folder {} does not exist",
                dir.display()
            )));
        }
        let listing = std::fs::read_dir(dir)
            .map_err(|e| err(format!("cannot read {}: {e}", dir.display())))?;
        let mut names: Vec<String> = listing
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let files: Vec<PathBuf> = match names
            .iter()
            .find(|n| n.ends_with(".safetensors.index.json"))
        {
            Some(index) => shards_of_index(&dir.join(index))?,
            None => names
                .iter()
                .filter(|n| n.ends_with(".safetensors"))
                .map(|n| dir.join(n))
                .collect(),
        };
        if files.is_empty() {
            return Err(err(format!(
                "no *.safetensors weights in {}",
                dir.display()
            )));
        }
        Self::open_files(&dir.display().to_string(), &files)
    }

    /// Opens an explicit list of safetensors files as one set of tensors.
    pub fn open_files(origin: &str, paths: &[PathBuf]) -> Result<Arc<Self>> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        for (index, path) in paths.iter().enumerate() {
            let file = crate::files::open_regular(path)
                .map_err(|e| err(format!("cannot open weights file {}: {e}", path.display())))?;
            // SAFETY: the map is read-only; a file truncated by another process while we
            // run is outside what any safetensors reader can defend against.
            let map = unsafe { Mmap::map(&file) }
                .map_err(|e| err(format!("cannot map weights file {}: {e}", path.display())))?;
            let (header_len, metadata) = SafeTensors::read_metadata(&map).map_err(|e| {
                err(format!(
                    "{} is not a valid safetensors file (corrupt or truncated header): {e}",
                    path.display()
                ))
            })?;
            let data_start = 8 + header_len;
            for (name, info) in metadata.tensors() {
                let dtype = candle_dtype(info.dtype).ok_or_else(|| {
                    err(format!(
                        "{}: tensor {name} has unsupported dtype {:?}",
                        path.display(),
                        info.dtype
                    ))
                })?;
                let entry = Entry {
                    file: Some(index),
                    dtype,
                    shape: info.shape.clone(),
                    bytes: (
                        data_start + info.data_offsets.0,
                        data_start + info.data_offsets.1,
                    ),
                };
                if entries.insert(name.clone(), entry).is_some() {
                    return Err(err(format!(
                        "tensor {name} appears in more than one weights file of {origin}"
                    )));
                }
            }
            files.push(MappedFile {
                path: path.clone(),
                map,
            });
        }
        Ok(Arc::new(Self {
            origin: origin.to_string(),
            files,
            entries,
            used: Mutex::default(),
        }))
    }

    /// Stand-ins for a checkpoint we do not have: every tensor of `manifest` (name -> dtype and
    /// shape) is served as a zero-stride view of one zero, so even a 14B model is "loaded"
    /// without memory. Used to check that a model asks for exactly a published tensor set.
    pub fn placeholders(
        origin: &str,
        manifest: &BTreeMap<String, (DType, Vec<usize>)>,
    ) -> Arc<Self> {
        let entries = manifest
            .iter()
            .map(|(name, (dtype, shape))| {
                (
                    name.clone(),
                    Entry {
                        file: None,
                        dtype: *dtype,
                        shape: shape.clone(),
                        bytes: (0, 0),
                    },
                )
            })
            .collect();
        Arc::new(Self {
            origin: origin.to_string(),
            files: vec![],
            entries,
            used: Mutex::default(),
        })
    }

    /// Placeholders (see [`Self::placeholders`]) of exactly these tensors: builds a model
    /// against a checkpoint's names, shapes and dtypes without reading or holding its data.
    pub fn as_placeholders(&self) -> Arc<Self> {
        let entries = self
            .entries
            .iter()
            .map(|(name, entry)| {
                (
                    name.clone(),
                    Entry {
                        file: None,
                        ..entry.clone()
                    },
                )
            })
            .collect();
        Arc::new(Self {
            origin: self.origin.clone(),
            files: vec![],
            entries,
            used: Mutex::default(),
        })
    }

    /// A `VarBuilder` over these tensors, converting each to `dtype` on `device`.
    pub fn var_builder(self: &Arc<Self>, dtype: DType, device: &Device) -> VarBuilder<'static> {
        let backend: Box<dyn SimpleBackend> = Box::new(Backend(Arc::clone(self)));
        VarBuilder::from_backend(backend, dtype, device.clone())
    }

    /// Elements of all tensors, from the headers (what the weights take once loaded, per
    /// byte of the dtype they are loaded in).
    pub fn elements(&self) -> u64 {
        self.entries
            .values()
            .map(|e| e.shape.iter().map(|&d| d as u64).product::<u64>())
            .sum()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Tensors the model never asked for, sorted.
    pub fn unused(&self) -> Vec<String> {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut unused: Vec<String> = self
            .entries
            .keys()
            .filter(|n| !used.contains(*n))
            .cloned()
            .collect();
        unused.sort();
        unused
    }

    /// Fails, naming them, if some tensors were left unused: a checkpoint of another variant
    /// or a model we build wrongly would otherwise load silently.
    pub fn ensure_all_used(&self) -> Result<()> {
        let unused = self.unused();
        if unused.is_empty() {
            return Ok(());
        }
        const SHOWN: usize = 5;
        let mut list = unused
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if unused.len() > SHOWN {
            list.push_str(&format!(" and {} more", unused.len() - SHOWN));
        }
        Err(err(format!(
            "unexpected tensors in {}: {list}",
            self.origin
        )))
    }

    /// Fails, naming the tensor and its file, when a floating-point tensor holds a NaN or an
    /// infinity: such weights make every output black or noise without any other sign. One
    /// pass over the memory-mapped data; placeholders have none to check.
    pub fn ensure_finite(&self) -> Result<()> {
        let mut names: Vec<&String> = self.entries.keys().collect();
        names.sort();
        for name in names {
            let entry = &self.entries[name];
            let Some(file) = entry.file else { continue };
            let bytes = self.files[file]
                .map
                .get(entry.bytes.0..entry.bytes.1)
                .ok_or_else(|| {
                    err(format!(
                        "{}: tensor {name} lies outside the file",
                        self.where_is(entry)
                    ))
                })?;
            if !all_finite(entry.dtype, bytes) {
                return Err(err(format!(
                    "{}: tensor {name} holds NaN or infinite values",
                    self.where_is(entry)
                )));
            }
        }
        Ok(())
    }

    fn where_is(&self, entry: &Entry) -> String {
        match entry.file {
            Some(index) => self.files[index].path.display().to_string(),
            None => self.origin.clone(),
        }
    }

    fn fetch(
        &self,
        name: &str,
        expected: Option<&Shape>,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let Some(entry) = self.entries.get(name) else {
            let shape = expected
                .map(|s| format!(" (shape {:?})", s.dims()))
                .unwrap_or_default();
            return Err(err(format!(
                "missing tensor {name}{shape} in {}",
                self.origin
            )));
        };
        if let Some(expected) = expected
            && expected.dims() != entry.shape.as_slice()
        {
            return Err(err(format!(
                "{}: tensor {name} has shape {:?}, expected {:?}",
                self.where_is(entry),
                entry.shape,
                expected.dims()
            )));
        }
        if entry.dtype.is_float() != dtype.is_float() {
            return Err(err(format!(
                "{}: tensor {name} has dtype {:?}, expected a {} tensor",
                self.where_is(entry),
                entry.dtype,
                if dtype.is_float() {
                    "floating-point"
                } else {
                    "integer"
                }
            )));
        }
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        match entry.file {
            Some(index) => {
                let bytes = &self.files[index].map[entry.bytes.0..entry.bytes.1];
                Tensor::from_raw_buffer(bytes, entry.dtype, &entry.shape, dev)?.to_dtype(dtype)
            }
            None => Tensor::zeros((), dtype, dev)?.broadcast_as(entry.shape.as_slice()),
        }
    }
}

/// The `VarBuilder` side of a shared [`Weights`].
struct Backend(Arc<Weights>);

impl SimpleBackend for Backend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        self.0.fetch(name, Some(&s), dtype, dev)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.0.fetch(name, None, dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

/// The shard files a `*.safetensors.index.json` names, in order of first appearance.
/// Whether every little-endian value of `dtype` in `bytes` is finite: its exponent bits are not
/// all set (all set is an infinity or a NaN in every IEEE format).
fn all_finite(dtype: DType, bytes: &[u8]) -> bool {
    fn check<const N: usize>(bytes: &[u8], exponent: u64) -> bool {
        bytes.chunks_exact(N).all(|value| {
            let mut word = [0u8; 8];
            word[..N].copy_from_slice(value);
            u64::from_le_bytes(word) & exponent != exponent
        })
    }
    match dtype {
        DType::F32 => check::<4>(bytes, 0x7f80_0000),
        DType::F64 => check::<8>(bytes, 0x7ff0_0000_0000_0000),
        DType::F16 => check::<2>(bytes, 0x7c00),
        DType::BF16 => check::<2>(bytes, 0x7f80),
        _ => true,
    }
}

fn shards_of_index(index: &Path) -> Result<Vec<PathBuf>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = crate::files::read_text(index, crate::files::TEXT_LIMIT)
        .map_err(|e| err(format!("cannot read {}: {e}", index.display())))?;
    let parsed: Index = serde_json::from_str(&text).map_err(|e| {
        err(format!(
            "{} is not a valid weights index: {e}",
            index.display()
        ))
    })?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut shards: Vec<PathBuf> = Vec::new();
    for shard in parsed.weight_map.values() {
        let path = dir.join(shard);
        if !shards.contains(&path) {
            if !path.is_file() {
                return Err(err(format!(
                    "{} names the shard {shard}, which is missing",
                    index.display()
                )));
            }
            shards.push(path);
        }
    }
    Ok(shards)
}

/// A safetensors file's size and raw JSON header, read bounded by the file's size: what
/// identifies its weights without reading them (the window cache's key). Parsing goes through
/// [`Weights::open_files`].
pub fn raw_header(path: &Path) -> std::io::Result<(u64, Vec<u8>)> {
    use std::io::Read;
    let mut reader = crate::files::open_regular(path)?;
    let size = reader.metadata()?.len();
    let mut length = [0u8; 8];
    reader.read_exact(&mut length)?;
    let mut header = vec![0u8; u64::from_le_bytes(length).min(size) as usize];
    reader.read_exact(&mut header)?;
    Ok((size, header))
}

/// Reads a part's `config.json` (or any JSON config) into `T`, naming the file in every error.
pub fn read_config<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = crate::files::read_text(path, crate::files::TEXT_LIMIT)
        .map_err(|e| err(format!("cannot read config {}: {e}", path.display())))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("{}: {e}", path.display())))?;
    if let Some(bad) = out_of_bounds(&value) {
        return Err(err(format!(
            "{}: {bad} is out of range for a model config",
            path.display()
        )));
    }
    serde_json::from_value(value).map_err(|e| err(format!("{}: {e}", path.display())))
}

/// Largest integer and longest list a model config may hold: real ones stay far below (the
/// largest, a vocabulary, is ~256k), and products of a few such sizes cannot overflow.
const CONFIG_INTEGER_MAX: u64 = 1 << 24;
const CONFIG_LIST_MAX: usize = 4096;

/// The first integer or list in `value` too large to be a model size, so that sizes computed
/// from a damaged config never overflow.
fn out_of_bounds(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Number(n) if n.as_u64().is_some_and(|n| n > CONFIG_INTEGER_MAX) => {
            Some(n.to_string())
        }
        serde_json::Value::Number(n)
            if n.as_i64().is_some_and(|n| n < -(CONFIG_INTEGER_MAX as i64)) =>
        {
            Some(n.to_string())
        }
        serde_json::Value::Array(items) if items.len() > CONFIG_LIST_MAX => {
            Some(format!("a list of {}", items.len()))
        }
        serde_json::Value::Array(items) => items.iter().find_map(out_of_bounds),
        serde_json::Value::Object(fields) => fields.values().find_map(out_of_bounds),
        _ => None,
    }
}

/// The dtype the user chose for the weights: `f32` (the CPU default), `bf16` or `f16`.
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(err(format!(
            "unknown dtype {other:?}: use f32, bf16 or f16"
        ))),
    }
}
