//! LoRA adapters for the Wan / Wan-VACE transformer, merged into the weights as the model is
//! built: `W + strength * (alpha / rank) * B A` for a low-rank pair, `W + strength * diff` for a
//! full-weight delta, `b + strength * diff_b` for a bias delta. The merge happens once, when the
//! `VarBuilder` serves a weight (see [`Adapters::wrap`]): weights no adapter touches are served
//! by the wrapped builder untouched, and a denoising step costs what it costs without adapters.
//!
//! Adapter files are read in the layouts published for Wan2.1:
//! - diffusers / PEFT names, `transformer.blocks.0.attn1.to_q.lora_A.weight` and `lora_B`
//!   (optionally `.alpha`, and `lora_B.bias` for a bias delta);
//! - the original Wan / ComfyUI names, `diffusion_model.blocks.0.self_attn.q.lora_down.weight` /
//!   `lora_up` / `alpha` (or `lora_A` / `lora_B`), with `diff` / `diff_b` full-weight deltas,
//!   mapped onto ours by the loader's own map ([`original_to_diffusers_name`]).
//!
//! Without a prefix, a file whose names use the original segments (`self_attn`, `ffn.0`,
//! `head.head`, ...) is read with the original names, any other with diffusers' names. VACE
//! blocks take adapters like the main blocks (`vace_blocks.N...`).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Error, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use candle_nn::var_builder::SimpleBackend;
use memmap2::Mmap;
use safetensors::SafeTensors;

use crate::transformer::original_to_diffusers_name;

fn err(msg: String) -> Error {
    Error::Msg(msg)
}

/// One adapter file and the strength it is applied with.
#[derive(Clone, Debug)]
pub struct LoraSpec {
    pub path: PathBuf,
    pub strength: f64,
}

impl PartialEq for LoraSpec {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.strength.to_bits() == other.strength.to_bits()
    }
}

impl Eq for LoraSpec {}

impl Hash for LoraSpec {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.path.hash(state);
        self.strength.to_bits().hash(state);
    }
}

impl LoraSpec {
    pub fn new(path: impl Into<PathBuf>, strength: f64) -> Self {
        Self {
            path: path.into(),
            strength,
        }
    }

    /// `FILE` (strength 1) or `FILE:STRENGTH`. A suffix after the last `:` that is not a number
    /// belongs to the file name (`C:\adapters\x.safetensors`).
    pub fn parse(arg: &str) -> Result<Self> {
        let (path, strength) = match arg.rsplit_once(':') {
            Some((path, strength)) if !path.is_empty() => match strength.trim().parse::<f64>() {
                Ok(value) if value.is_finite() => (path, value),
                Ok(_) => {
                    return Err(err(format!(
                        "LoRA strength in {arg:?} is not a finite number"
                    )));
                }
                Err(_) => (arg, 1.0),
            },
            _ => (arg, 1.0),
        };
        if path.is_empty() {
            return Err(err(format!("LoRA {arg:?} names no file")));
        }
        Ok(Self::new(path, strength))
    }

    /// The same adapter with its path made absolute (and resolved) where the file exists: the
    /// identity a loaded model is known by.
    pub fn canonical(&self) -> Self {
        Self {
            path: self
                .path
                .canonicalize()
                .unwrap_or_else(|_| self.path.clone()),
            strength: self.strength,
        }
    }
}

impl std::fmt::Display for LoraSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.strength)
    }
}

/// What one adapter key changes in one tensor.
enum Change {
    /// `scale * up @ down`, `down` `[rank, in...]`, `up` `[out, rank, 1...]`.
    LowRank { down: Tensor, up: Tensor },
    /// `scale * diff`, of the tensor's shape.
    Full(Tensor),
}

struct Delta {
    change: Change,
    scale: f64,
    /// The adapter key (of the down matrix for a pair) and its file, for errors.
    key: String,
    file: Arc<PathBuf>,
}

impl Delta {
    fn describe(&self) -> String {
        format!("LoRA key {} in {}", self.key, self.file.display())
    }

    /// The change as an f32 tensor of `shape` on `device`.
    fn tensor(&self, target: &str, shape: &[usize], device: &Device) -> Result<Tensor> {
        let mismatch = |got: &[usize]| {
            err(format!(
                "{} does not fit {target}: it changes a {got:?} tensor, the model's is {shape:?}",
                self.describe()
            ))
        };
        let change = match &self.change {
            Change::LowRank { down, up } => {
                let rank = down.dim(0)?;
                let down = down
                    .to_device(device)?
                    .to_dtype(DType::F32)?
                    .flatten_from(1)?;
                let up = up
                    .to_device(device)?
                    .to_dtype(DType::F32)?
                    .reshape((up.dim(0)?, rank))?;
                let product = up.matmul(&down)?;
                let (out, inner) = product.dims2()?;
                if shape.first() != Some(&out) || shape[1..].iter().product::<usize>() != inner {
                    return Err(mismatch(&[out, inner]));
                }
                product.reshape(shape)?
            }
            Change::Full(diff) => {
                if diff.dims() != shape {
                    return Err(mismatch(diff.dims()));
                }
                diff.to_device(device)?.to_dtype(DType::F32)?
            }
        };
        change.affine(self.scale, 0.0)
    }
}

/// Adapters read and mapped onto the transformer's (diffusers) tensor names, ready to merge.
pub struct Adapters {
    /// Target tensor name -> its changes, in the order the adapters were given.
    deltas: BTreeMap<String, Vec<Delta>>,
    /// Targets the model asked for.
    applied: Mutex<BTreeSet<String>>,
}

/// How a file names its tensors.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Naming {
    Diffusers,
    Original,
}

/// Path segments only the original Wan names use (at the start of a name or inside a block).
const ORIGINAL_SEGMENTS: &[&str] = &[
    "self_attn",
    "cross_attn",
    "head",
    "time_embedding",
    "text_embedding",
    "time_projection",
    "modulation",
    "before_proj",
    "after_proj",
];

/// Key endings: (suffix, what it is).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Part {
    Down,
    Up,
    UpBias,
    Alpha,
    Diff,
    DiffBias,
}

const SUFFIXES: &[(&str, Part)] = &[
    (".lora_A.weight", Part::Down),
    (".lora_B.weight", Part::Up),
    (".lora_down.weight", Part::Down),
    (".lora_up.weight", Part::Up),
    (".lora_B.bias", Part::UpBias),
    (".alpha", Part::Alpha),
    (".diff", Part::Diff),
    (".diff_b", Part::DiffBias),
];

/// The parts of one module's adapter in one file.
#[derive(Default)]
struct ModuleParts {
    down: Option<(String, Tensor)>,
    up: Option<(String, Tensor)>,
    up_bias: Option<(String, Tensor)>,
    alpha: Option<(String, Tensor)>,
    diff: Option<(String, Tensor)>,
    diff_bias: Option<(String, Tensor)>,
}

impl ModuleParts {
    fn slot(&mut self, part: Part) -> &mut Option<(String, Tensor)> {
        match part {
            Part::Down => &mut self.down,
            Part::Up => &mut self.up,
            Part::UpBias => &mut self.up_bias,
            Part::Alpha => &mut self.alpha,
            Part::Diff => &mut self.diff,
            Part::DiffBias => &mut self.diff_bias,
        }
    }
}

impl Adapters {
    /// Reads every adapter (none: an empty set that changes nothing).
    pub fn load(specs: &[LoraSpec]) -> Result<Self> {
        let mut deltas: BTreeMap<String, Vec<Delta>> = BTreeMap::new();
        for spec in specs {
            for (target, delta) in read_adapter(spec)? {
                deltas.entry(target).or_default().push(delta);
            }
        }
        Ok(Self {
            deltas,
            applied: Mutex::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.deltas.is_empty()
    }

    /// The model tensors (diffusers names) the adapters change.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.deltas.keys().map(String::as_str)
    }

    /// `vb` with the adapters merged into the tensors it serves. `vb` must serve the diffusers
    /// names (wrap outside any renaming).
    pub fn wrap(self: &Arc<Self>, vb: VarBuilder<'static>) -> VarBuilder<'static> {
        let (dtype, device) = (vb.dtype(), vb.device().clone());
        let backend: Box<dyn SimpleBackend> = Box::new(Merging {
            adapters: Arc::clone(self),
            inner: vb,
        });
        VarBuilder::from_backend(backend, dtype, device)
    }

    /// Fails, naming the first key and its file, if an adapter changes a tensor the model never
    /// asked for: an adapter for another model or variant.
    pub fn ensure_all_applied(&self) -> Result<()> {
        let applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        let missing: Vec<(&String, &Delta)> = self
            .deltas
            .iter()
            .filter(|(target, _)| !applied.contains(*target))
            .flat_map(|(target, deltas)| deltas.iter().map(move |d| (target, d)))
            .collect();
        match missing.first() {
            None => Ok(()),
            Some((target, delta)) => {
                let more = if missing.len() > 1 {
                    format!(" (and {} more)", missing.len() - 1)
                } else {
                    String::new()
                };
                Err(err(format!(
                    "{} matches no tensor of the transformer (as {target}){more}",
                    delta.describe()
                )))
            }
        }
    }

    fn merge(&self, name: &str, base: Tensor, dtype: DType) -> Result<Tensor> {
        let Some(deltas) = self.deltas.get(name) else {
            return base.to_dtype(dtype);
        };
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        let shape = base.dims().to_vec();
        let mut merged = base.to_dtype(DType::F32)?;
        for delta in deltas {
            merged = (merged + delta.tensor(name, &shape, base.device())?)?;
        }
        merged.to_dtype(dtype)
    }
}

/// A `VarBuilder` backend that merges the adapters into what `inner` serves.
struct Merging {
    adapters: Arc<Adapters>,
    inner: VarBuilder<'static>,
}

impl SimpleBackend for Merging {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        if !self.adapters.deltas.contains_key(name) {
            return self
                .inner
                .get_with_hints_dtype(s, name, h, dtype)?
                .to_device(dev);
        }
        let base = self
            .inner
            .get_with_hints_dtype(s, name, h, DType::F32)?
            .to_device(dev)?;
        self.adapters.merge(name, base, dtype)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        if !self.adapters.deltas.contains_key(name) {
            return self.inner.get_unchecked_dtype(name, dtype)?.to_device(dev);
        }
        let base = self
            .inner
            .get_unchecked_dtype(name, DType::F32)?
            .to_device(dev)?;
        self.adapters.merge(name, base, dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.contains_tensor(name)
    }
}

/// The adapter's changes, by target tensor (diffusers name).
fn read_adapter(spec: &LoraSpec) -> Result<Vec<(String, Delta)>> {
    let path = &spec.path;
    let file = std::fs::File::open(path)
        .map_err(|e| err(format!("cannot open LoRA file {}: {e}", path.display())))?;
    // SAFETY: read-only map, dropped before returning (the tensors are copied out).
    let map = unsafe { Mmap::map(&file) }
        .map_err(|e| err(format!("cannot map LoRA file {}: {e}", path.display())))?;
    let tensors = SafeTensors::deserialize(&map).map_err(|e| {
        err(format!(
            "{} is not a valid safetensors file: {e}",
            path.display()
        ))
    })?;
    let peft = PeftAlpha::from_metadata(&map, path)?;
    let names: Vec<String> = tensors.names().into_iter().map(str::to_string).collect();
    if names.is_empty() {
        return Err(err(format!(
            "LoRA file {} holds no tensors",
            path.display()
        )));
    }
    let file = Arc::new(path.clone());
    let unknown = |key: &str| err(format!("unknown LoRA key {key} in {}", path.display()));

    // The naming of the whole file, from its prefixes or else its segments.
    let strip = |name: &str| -> Option<(Naming, String)> {
        for (prefix, naming) in [
            ("transformer.", Naming::Diffusers),
            ("model.diffusion_model.", Naming::Original),
            ("diffusion_model.", Naming::Original),
        ] {
            if let Some(rest) = name.strip_prefix(prefix) {
                return Some((naming, rest.to_string()));
            }
        }
        None
    };
    let unprefixed_naming = if names.iter().any(|n| {
        n.split('.')
            .any(|segment| ORIGINAL_SEGMENTS.contains(&segment))
            || n.contains(".ffn.0.")
            || n.contains(".ffn.2.")
    }) {
        Naming::Original
    } else {
        Naming::Diffusers
    };

    let mut modules: BTreeMap<(String, Naming), ModuleParts> = BTreeMap::new();
    for name in &names {
        let (naming, rest) = strip(name).unwrap_or((unprefixed_naming, name.clone()));
        let Some((module, part)) = SUFFIXES
            .iter()
            .find_map(|(suffix, part)| rest.strip_suffix(suffix).map(|m| (m.to_string(), *part)))
        else {
            return Err(unknown(name));
        };
        let view = tensors
            .tensor(name)
            .map_err(|e| err(format!("{}: {name}: {e}", path.display())))?;
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            safetensors::Dtype::F64 => DType::F64,
            other => {
                return Err(err(format!(
                    "LoRA key {name} in {} has unsupported dtype {other:?}",
                    path.display()
                )));
            }
        };
        let tensor = Tensor::from_raw_buffer(view.data(), dtype, view.shape(), &Device::Cpu)?;
        let slot = modules.entry((module, naming)).or_default().slot(part);
        if let Some((other, _)) = slot {
            return Err(err(format!(
                "LoRA keys {other} and {name} in {} are the same part of one module",
                path.display()
            )));
        }
        *slot = Some((name.clone(), tensor));
    }

    let mut out = Vec::new();
    for ((module, naming), parts) in modules {
        let target = |kind: &str| match naming {
            Naming::Diffusers => format!("{module}.{kind}"),
            Naming::Original => original_to_diffusers_name(&format!("{module}.{kind}")),
        };
        let delta = |key: &str, change: Change, scale: f64| Delta {
            change,
            scale,
            key: key.to_string(),
            file: Arc::clone(&file),
        };
        let mut scale = spec.strength;
        match (parts.down, parts.up) {
            (Some((down_key, down)), Some((up_key, up))) => {
                let rank = down.dims().first().copied().unwrap_or(0);
                let up_dims = up.dims();
                if rank == 0
                    || down.rank() < 2
                    || up_dims.len() != down.rank()
                    || up_dims[1] != rank
                    || up_dims[2..].iter().any(|&d| d != 1)
                {
                    return Err(err(format!(
                        "LoRA keys {down_key} {:?} and {up_key} {up_dims:?} in {} do not make a low-rank pair",
                        down.dims(),
                        path.display()
                    )));
                }
                if let Some((alpha_key, alpha)) = &parts.alpha {
                    let values = alpha
                        .to_dtype(DType::F64)?
                        .flatten_all()?
                        .to_vec1::<f64>()?;
                    let [alpha] = values[..] else {
                        return Err(err(format!(
                            "LoRA key {alpha_key} in {} is not a single number",
                            path.display()
                        )));
                    };
                    scale *= alpha / rank as f64;
                } else if naming == Naming::Diffusers
                    && let Some(peft) = &peft
                {
                    scale *= peft.scale(&module, rank);
                }
                out.push((
                    target("weight"),
                    delta(&down_key, Change::LowRank { down, up }, scale),
                ));
            }
            (Some((key, _)), None) | (None, Some((key, _))) => {
                return Err(err(format!(
                    "LoRA key {key} in {} has no {} matrix",
                    path.display(),
                    if key.contains("down") || key.contains("lora_A") {
                        "up (B)"
                    } else {
                        "down (A)"
                    }
                )));
            }
            (None, None) => {
                if let Some((key, _)) = parts.alpha {
                    return Err(err(format!(
                        "LoRA key {key} in {} belongs to no low-rank pair",
                        path.display()
                    )));
                }
            }
        }
        if let Some((key, bias)) = parts.up_bias {
            // PEFT scales lora_B's bias like the product.
            out.push((target("bias"), delta(&key, Change::Full(bias), scale)));
        }
        if let Some((key, diff)) = parts.diff {
            out.push((
                target("weight"),
                delta(&key, Change::Full(diff), spec.strength),
            ));
        }
        if let Some((key, diff)) = parts.diff_bias {
            out.push((
                target("bias"),
                delta(&key, Change::Full(diff), spec.strength),
            ));
        }
    }
    Ok(out)
}

/// The scaling diffusers saves in a file's `lora_adapter_metadata` (the PEFT `LoraConfig` of the
/// transformer, keys `transformer.lora_alpha`, `transformer.alpha_pattern`,
/// `transformer.use_rslora`) for files without `.alpha` keys.
struct PeftAlpha {
    alpha: Option<f64>,
    /// Module name or trailing part of one (PEFT's pattern `(.*\.)?NAME$`) -> alpha.
    pattern: Vec<(String, f64)>,
    rslora: bool,
}

impl PeftAlpha {
    fn from_metadata(map: &[u8], path: &std::path::Path) -> Result<Option<Self>> {
        let (_, metadata) = SafeTensors::read_metadata(map).map_err(|e| {
            err(format!(
                "{} is not a valid safetensors file: {e}",
                path.display()
            ))
        })?;
        let Some(text) = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get("lora_adapter_metadata"))
        else {
            return Ok(None);
        };
        let bad = |what: &str| err(format!("{}: lora_adapter_metadata {what}", path.display()));
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(&format!("is not JSON: {e}")))?;
        let alpha = match json.get("transformer.lora_alpha") {
            None | Some(serde_json::Value::Null) => None,
            Some(value) => Some(
                value
                    .as_f64()
                    .ok_or_else(|| bad("has a lora_alpha that is not a number"))?,
            ),
        };
        let mut pattern = Vec::new();
        if let Some(object) = json
            .get("transformer.alpha_pattern")
            .and_then(|v| v.as_object())
        {
            for (name, value) in object {
                let value = value
                    .as_f64()
                    .ok_or_else(|| bad(&format!("has a non-numeric alpha for {name}")))?;
                pattern.push((name.trim_start_matches('^').to_string(), value));
            }
        }
        let rslora = json
            .get("transformer.use_rslora")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Ok(Some(Self {
            alpha,
            pattern,
            rslora,
        }))
    }

    /// `alpha / rank` (or `alpha / sqrt(rank)` with rsLoRA) for `module`, 1 without an alpha.
    fn scale(&self, module: &str, rank: usize) -> f64 {
        let alpha = self
            .pattern
            .iter()
            .find(|(name, _)| module == name || module.ends_with(&format!(".{name}")))
            .map(|(_, alpha)| *alpha)
            .or(self.alpha);
        match alpha {
            None => 1.0,
            Some(alpha) if self.rslora => alpha / (rank as f64).sqrt(),
            Some(alpha) => alpha / rank as f64,
        }
    }
}
