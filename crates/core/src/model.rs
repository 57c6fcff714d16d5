//! A Wan2.1-VACE model folder in diffusers layout, loaded: `model_index.json`, `transformer/`,
//! `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`. Every part's weights must be used
//! entirely: a folder of another model family fails here, by name, instead of producing noise.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use candle_core::{DType, Device, DeviceLocation, Tensor};
use soragen_models::lora::{Adapters, LoraSpec};
use soragen_models::scheduler::{Scheduler, SchedulerConfig};
use soragen_models::text_encoder::{self, UMT5EncoderModel};
use soragen_models::tokenizer::T5Tokenizer;
use soragen_models::transformer::{self, WanTransformer, diffusers_to_original_name};
use soragen_models::vae::{self, AutoencoderKLWan, Tiling};
use soragen_models::weights::{Weights, read_config};

use crate::device::model_device;
use crate::progress::Observer;
use crate::{Error, Result};
use crate::{limits, memory};

/// Prompt length the Wan pipelines pad and truncate to.
pub const MAX_PROMPT_TOKENS: usize = 512;

pub struct WanVace {
    pub folder: PathBuf,
    pub device: Device,
    /// Compute dtype of the transformer and the text encoder; the VAE runs in f32.
    pub dtype: DType,
    /// LoRA adapters merged into the transformer (canonical paths), in the order applied.
    pub adapters: Vec<LoraSpec>,
    pub(crate) tokenizer: T5Tokenizer,
    pub(crate) text_encoder: UMT5EncoderModel,
    pub(crate) vae: AutoencoderKLWan,
    pub(crate) transformer: WanTransformer,
    scheduler: SchedulerConfig,
}

fn part_dir(folder: &Path, part: &str) -> Result<PathBuf> {
    let dir = folder.join(part);
    if dir.is_dir() {
        Ok(dir)
    } else {
        Err(Error::Input(format!(
            "{}: missing the {part}/ folder of a diffusers model",
            folder.display()
        )))
    }
}

/// Prompt embeddings, computed once per prompt and reusable across generations.
#[derive(Clone)]
pub struct Prompt {
    pub embeddings: Tensor,
}

/// Frames per latent frame of the VAE in `folder`, from its config alone: hosts plan model
/// windows (whose lengths are multiples of it, plus one) before the model loads.
pub fn vae_temporal_factor_of(folder: &Path) -> Result<usize> {
    let config: vae::Config = read_config(&part_dir(folder, "vae")?.join("config.json"))?;
    config.validate()?;
    Ok(config.temporal_compression())
}

/// How the parts' tensors are served while the model is built.
#[derive(Clone, Copy)]
enum Tensors {
    /// Read from the files.
    Read,
    /// Placeholders of the files' tensors: checks the folder without reading its data.
    Checked,
}

/// Loads one part's weights and builds it, then insists every tensor was used.
fn load_part<T>(
    dir: &Path,
    (dtype, device, tensors): (DType, &Device, Tensors),
    rename: Option<fn(&str) -> String>,
    build: impl FnOnce(candle_nn::VarBuilder<'static>) -> candle_core::Result<T>,
) -> Result<T> {
    let weights = Weights::open_dir(dir)?;
    // NaN or infinite weights would give black frames without another sign: refused by name.
    weights.ensure_finite()?;
    let weights = match tensors {
        Tensors::Read => weights,
        Tensors::Checked => weights.as_placeholders(),
    };
    let mut vb = weights.var_builder(dtype, device);
    if let Some(rename) = rename {
        vb = vb.rename_f(rename);
    }
    let part =
        build(vb).map_err(|e| Error::Input(format!("{}: {}", dir.display(), first_line(&e))))?;
    weights.ensure_all_used()?;
    Ok(part)
}

/// `model_index.json` must be a diffusers pipeline index naming every part we load.
fn check_model_index(folder: &Path) -> Result<()> {
    let path = folder.join("model_index.json");
    let bytes = soragen_models::files::read_bounded(&path, soragen_models::files::TEXT_LIMIT)
        .map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "no model_index.json".into()
            } else {
                format!("model_index.json {e}")
            };
            Error::Input(format!(
                "{} is not a diffusers model folder ({why})",
                folder.display()
            ))
        })?;
    let index: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Input(format!(
            "{}: model_index.json is not JSON: {e}",
            folder.display()
        ))
    })?;
    let missing: Vec<&str> = [
        "transformer",
        "vae",
        "text_encoder",
        "tokenizer",
        "scheduler",
    ]
    .into_iter()
    .filter(|part| {
        index
            .get(part)
            .is_none_or(|entry| entry.as_array().is_none_or(|a| a.len() != 2))
    })
    .collect();
    if !index.is_object() || !missing.is_empty() {
        return Err(Error::Input(format!(
            "{}: model_index.json is not a diffusers pipeline index (it lacks {})",
            folder.display(),
            missing.join(", ")
        )));
    }
    Ok(())
}

/// Refuses a config value that is not a finite number.
fn finite(dir: &Path, name: &str, values: &[f64]) -> Result<()> {
    match values.iter().find(|v| !v.is_finite()) {
        Some(v) => Err(Error::Input(format!(
            "{}/config.json: {name} holds {v}, not a finite number",
            dir.display()
        ))),
        None => Ok(()),
    }
}

/// Refuses a config value that must be above zero (an epsilon, a standard deviation).
fn positive(dir: &Path, name: &str, values: &[f64]) -> Result<()> {
    match values.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
        Some(v) => Err(Error::Input(format!(
            "{}/config.json: {name} holds {v}; it must be above 0",
            dir.display()
        ))),
        None => Ok(()),
    }
}

fn first_line(e: &candle_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// Which copy of a model: its folder, the device it lives on, its compute dtype and the LoRA
/// adapters merged into it.
type ModelKey = (PathBuf, DeviceLocation, DType, Vec<LoraSpec>);

/// Models loaded in this process: every plugin instance and element of a process shares one
/// copy of the weights per device and dtype while any of them holds it.
fn loaded() -> &'static Mutex<HashMap<ModelKey, Weak<WanVace>>> {
    static LOADED: OnceLock<Mutex<HashMap<ModelKey, Weak<WanVace>>>> = OnceLock::new();
    LOADED.get_or_init(Mutex::default)
}

fn model_key(folder: &Path, device: &Device, dtype: DType, adapters: &[LoraSpec]) -> ModelKey {
    let folder = folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf());
    (
        folder,
        device.location(),
        dtype,
        adapters.iter().map(LoraSpec::canonical).collect(),
    )
}

impl WanVace {
    /// The process-wide copy of a model on [`model_device`], loaded on first use.
    pub fn shared(folder: &Path, dtype: DType) -> Result<Arc<Self>> {
        Self::shared_on(folder, &model_device(), dtype)
    }

    /// The process-wide copy of a model (with `adapters` merged) on [`model_device`] where
    /// something holds it loaded:
    /// lets a host tell whether using the model costs a load (and the memory of its weights).
    pub fn already_loaded(folder: &Path, dtype: DType, adapters: &[LoraSpec]) -> Option<Arc<Self>> {
        let key = model_key(folder, &model_device(), dtype, adapters);
        loaded()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .and_then(Weak::upgrade)
    }

    /// The process-wide copy of a model on `device`, loaded on first use.
    pub fn shared_on(folder: &Path, device: &Device, dtype: DType) -> Result<Arc<Self>> {
        Self::shared_with_adapters(folder, device, dtype, &[])
    }

    /// [`Self::shared_on`] with LoRA adapters merged into the transformer: a model with other
    /// adapters (or strengths) is another copy.
    pub fn shared_with_adapters(
        folder: &Path,
        device: &Device,
        dtype: DType,
        adapters: &[LoraSpec],
    ) -> Result<Arc<Self>> {
        let key = model_key(folder, device, dtype, adapters);
        // Loading under the lock makes a second caller wait for the first load, not repeat it.
        let mut loaded = loaded().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(model) = loaded.get(&key).and_then(Weak::upgrade) {
            return Ok(model);
        }
        let model = Self::load_with_adapters(folder, dtype, device, adapters)?;
        loaded.retain(|_, m| m.strong_count() > 0);
        loaded.insert(key, Arc::downgrade(&model));
        Ok(model)
    }

    pub fn load(folder: &Path, dtype: DType, device: &Device) -> Result<Arc<Self>> {
        Self::load_with_adapters(folder, dtype, device, &[])
    }

    /// [`Self::load`] with LoRA adapters (see `soragen_models::lora`) merged into the
    /// transformer's weights as they load: no cost per step. An adapter key that matches no
    /// tensor, or does not fit it, fails the load naming the key and its file.
    pub fn load_with_adapters(
        folder: &Path,
        dtype: DType,
        device: &Device,
        adapters: &[LoraSpec],
    ) -> Result<Arc<Self>> {
        let mut model = Self::build_with(folder, (dtype, device, Tensors::Read), adapters)?;
        model.adapters = adapters.iter().map(LoraSpec::canonical).collect();
        Ok(Arc::new(model))
    }

    /// Checks a model folder as [`Self::load`] does (`model_index.json`, every part present and
    /// of one model, every tensor there with the shape the configs ask for and finite values,
    /// none left unused) without building the model from the weights: one read of the files,
    /// no memory beyond their mapping.
    pub fn verify(folder: &Path) -> Result<()> {
        Self::build(folder, (DType::BF16, &Device::Cpu, Tensors::Checked)).map(drop)
    }

    fn build(folder: &Path, serve: (DType, &Device, Tensors)) -> Result<Self> {
        Self::build_with(folder, serve, &[])
    }

    fn build_with(
        folder: &Path,
        serve: (DType, &Device, Tensors),
        adapters: &[LoraSpec],
    ) -> Result<Self> {
        // Adapters are read first: a bad file fails before the large parts load.
        let lora = Arc::new(Adapters::load(adapters)?);
        let (dtype, device, _) = serve;
        check_model_index(folder)?;
        let tokenizer_dir = part_dir(folder, "tokenizer")?;
        let tokenizer = T5Tokenizer::from_file(tokenizer_dir.join("tokenizer.json"))?;

        let dir = part_dir(folder, "text_encoder")?;
        let config: text_encoder::Config = read_config(&dir.join("config.json"))?;
        positive(&dir, "layer_norm_epsilon", &[config.layer_norm_epsilon])?;
        // Parts of different models fail here by name, before any weights are read.
        let transformer_dir = part_dir(folder, "transformer")?;
        let transformer_config: transformer::Config =
            read_config(&transformer_dir.join("config.json"))?;
        positive(&transformer_dir, "eps", &[transformer_config.eps])?;
        if transformer_config.text_dim != config.d_model {
            return Err(Error::Input(format!(
                "{}: the transformer takes text of width {} (text_dim) but the text encoder gives {} (d_model): parts of different models",
                folder.display(),
                transformer_config.text_dim,
                config.d_model
            )));
        }
        let text_encoder = load_part(&dir, serve, None, |vb| UMT5EncoderModel::load(vb, &config))?;

        let dir = part_dir(folder, "vae")?;
        let config: vae::Config = read_config(&dir.join("config.json"))?;
        positive(&dir, "latents_std", &config.latents_std)?;
        // Each level halves the frame (2^levels): Wan's VAE has 4; a handful at most.
        let levels = config.dim_mult.len();
        if !(1..=8).contains(&levels)
            || !(levels - 1..=8).contains(&config.temperal_downsample.len())
        {
            return Err(Error::Input(format!(
                "{}/config.json: dim_mult must list 1 to 8 levels, temperal_downsample one fewer",
                dir.display()
            )));
        }
        finite(&dir, "latents_mean", &config.latents_mean)?;
        let vae = load_part(&dir, (DType::F32, device, serve.2), None, |vb| {
            AutoencoderKLWan::load(vb, &config)
        })?;

        let (dir, config) = (transformer_dir, transformer_config);
        // The original Wan release names its tensors differently (`patch_embedding` stays,
        // `blocks.N.self_attn.q` ...): serve those names under diffusers' ones.
        let original = Weights::open_dir(&dir)?.contains("blocks.0.self_attn.q.weight");
        let rename = original.then_some(diffusers_to_original_name as fn(&str) -> String);
        let transformer = load_part(&dir, serve, rename, |vb| {
            let vb = if lora.is_empty() { vb } else { lora.wrap(vb) };
            WanTransformer::load(vb, &config)
        })?;
        lora.ensure_all_applied()?;
        if !config.is_vace() {
            return Err(Error::Input(format!(
                "{}: the transformer has no VACE layers; editing needs a Wan2.1-VACE model",
                folder.display()
            )));
        }

        let scheduler = SchedulerConfig::from_file(
            part_dir(folder, "scheduler")?.join("scheduler_config.json"),
        )?;
        Ok(Self {
            folder: folder.to_path_buf(),
            device: device.clone(),
            dtype,
            adapters: Vec::new(),
            tokenizer,
            text_encoder,
            vae,
            transformer,
            scheduler,
        })
    }

    pub fn vae_spatial_factor(&self) -> usize {
        self.vae.config().spatial_compression()
    }

    pub fn vae_temporal_factor(&self) -> usize {
        self.vae.config().temporal_compression()
    }

    pub fn patch_size(&self) -> usize {
        self.transformer.config().patch_size[1]
    }

    pub fn latent_channels(&self) -> usize {
        self.transformer.config().in_channels
    }

    /// Transformer forward passes this model has run (see `WanTransformer::forward_count`).
    pub fn transformer_forwards(&self) -> usize {
        self.transformer.forward_count()
    }

    /// Of those, the ones that reused the step cache's work (see
    /// `WanTransformer::cached_forward_count`).
    pub fn transformer_cached_forwards(&self) -> usize {
        self.transformer.cached_forward_count()
    }

    pub fn vace_layer_count(&self) -> usize {
        self.transformer
            .config()
            .vace_layers
            .as_ref()
            .map_or(0, Vec::len)
    }

    /// A fresh sampler as the folder configures it, with an optional flow-shift override.
    pub fn scheduler(&self, flow_shift: Option<f64>) -> Result<Box<dyn Scheduler + Send>> {
        let config = match flow_shift {
            Some(shift) => self.scheduler.clone().with_flow_shift(shift),
            None => self.scheduler.clone(),
        };
        Ok(config.build()?)
    }

    /// The text encoder's output for a prompt, cut to its tokens and zero-padded to 512, as
    /// the Wan pipelines feed it to the transformer.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Prompt> {
        let tokens = self
            .tokenizer
            .encode_prompts(&[prompt], MAX_PROMPT_TOKENS)?;
        let (ids, mask) = tokens.to_tensors(&self.device)?;
        let embeddings = self
            .text_encoder
            .encode_prompt(&ids, &mask, MAX_PROMPT_TOKENS)?;
        Ok(Prompt {
            embeddings: embeddings.to_dtype(self.dtype)?,
        })
    }

    /// How the VAE runs on `frames` frames of `width` x `height` pixels now: on whole frames
    /// when their activations fit the memory budget, else in tiles ([`memory::vae_tiling`]).
    /// The budget is the host's: on a GPU, whose memory it does not see, whole frames.
    pub fn vae_tiling(&self, frames: usize, width: usize, height: usize) -> Result<Option<Tiling>> {
        let available = if self.device.is_cpu() {
            limits::budget()?.map(|budget| budget.bytes)
        } else {
            None
        };
        let channels = memory::vae_channels(self.vae.config());
        Ok(memory::vae_tiling(
            channels, frames, width, height, available,
        ))
    }

    /// VAE encoding (the posterior's mode) of [1, 3, F, H, W] in [-1, 1], normalised, in tiles
    /// where whole frames would not fit ([`Self::vae_tiling`]); stops between chunks of frames
    /// with [`Error::Cancelled`] once `observer` asks.
    pub(crate) fn encode_latents(&self, video: &Tensor, observer: &dyn Observer) -> Result<Tensor> {
        let (_, _, frames, height, width) = video.dims5()?;
        let tiling = self.vae_tiling(frames, width, height)?;
        let latents =
            self.vae
                .encode_until(&video.to_dtype(DType::F32)?, tiling.as_ref(), &|| {
                    observer.cancelled()
                })?;
        Ok(self
            .vae
            .normalize_latents(&latents.ok_or(Error::Cancelled)?)?)
    }

    /// VAE decoding of normalised latents to [1, 3, F, H, W] in [-1, 1], on whole frames or in
    /// `tiling`'s tiles; stops between latent frames with [`Error::Cancelled`] once `observer`
    /// asks.
    pub(crate) fn decode_latents(
        &self,
        latents: &Tensor,
        tiling: Option<&Tiling>,
        observer: &dyn Observer,
    ) -> Result<Tensor> {
        let latents = self
            .vae
            .denormalize_latents(&latents.to_dtype(DType::F32)?)?;
        self.vae
            .decode_until(&latents, tiling, &|| observer.cancelled())?
            .ok_or(Error::Cancelled)
    }

    /// The frame count and size the VAE decodes `latents` `[B, C, T, h, w]` to.
    pub(crate) fn decoded_size(&self, latents: &Tensor) -> Result<(usize, usize, usize)> {
        let (_, _, t, h, w) = latents.dims5()?;
        let s = self.vae_spatial_factor();
        Ok((
            1 + (t.max(1) - 1) * self.vae_temporal_factor(),
            w * s,
            h * s,
        ))
    }
}
