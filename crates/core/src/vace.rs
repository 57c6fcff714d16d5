//! The VACE primitive: source frames + a mask per frame + a prompt -> generated frames, with
//! the semantics of `diffusers.WanVACEPipeline` (video + mask + prompt, no reference images).
//!
//! Masked source pixels are greyed (0 in [-1, 1]); the transformer is conditioned on the
//! 96-channel VACE context: VAE(video * (1 - mask)), VAE(video * mask), both normalised, and
//! the mask folded 8x8 into 64 channels and resized in time to the latent frame count.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::Distribution;
use soragen_models::transformer::TextContext;

use crate::limits;
use crate::model::WanVace;
use crate::video::Video;
use crate::{Error, Result};

/// The source clip and its mask as the pipeline consumes them.
pub struct VaceInput {
    /// [1, 3, F, H, W] in [-1, 1].
    pub video: Tensor,
    /// [1, 1, F, H, W], 1 = generate, 0 = keep.
    pub mask: Tensor,
}

impl VaceInput {
    /// Frames as 8-bit RGB and one generate flag per pixel and frame.
    pub fn from_frames(video: &Video, mask: &[Vec<bool>], device: &Device) -> Result<Self> {
        let (f, h, w) = (video.len(), video.height, video.width);
        if mask.len() != f {
            return Err(Error::Input(format!("{f} frames but {} masks: give one mask per frame", mask.len())));
        }
        if mask.iter().any(|m| m.len() != h * w) {
            return Err(Error::Input(format!("masks must have the frames' size {w}x{h}")));
        }
        // Same arithmetic as diffusers' image processor: x / 255, then 2x - 1.
        let pixels: Vec<f32> = video
            .frames
            .iter()
            .flat_map(|frame| frame.rgb.iter().map(|&v| 2.0 * (v as f32 / 255.0) - 1.0))
            .collect();
        let video = Tensor::from_vec(pixels, (f, h, w, 3), device)?.permute((3, 0, 1, 2))?.unsqueeze(0)?;
        let bits: Vec<f32> = mask.iter().flatten().map(|&b| if b { 1.0 } else { 0.0 }).collect();
        let mask = Tensor::from_vec(bits, (1, 1, f, h, w), device)?;
        Ok(Self { video: video.contiguous()?, mask })
    }

    fn dims(&self) -> (usize, usize, usize) {
        let (_, _, f, h, w) = self.video.dims5().expect("video is 5-D by construction");
        (f, h, w)
    }
}

/// Where the initial noise comes from.
pub enum Noise {
    /// Gaussian noise from a seeded generator: same seed, same output, on this build.
    Seed(u64),
    /// Exactly these latents, [1, C, F', H/8, W/8] (as `WanVACEPipeline(latents=...)`).
    Latents(Tensor),
}

/// Sampling parameters.
pub struct Sampling {
    pub steps: usize,
    /// Classifier-free guidance scale; at or below 1 the negative prompt is not run.
    pub guidance: f64,
    /// Overrides the scheduler's configured flow shift.
    pub flow_shift: Option<f64>,
    /// VACE context scale, for every VACE layer.
    pub conditioning_scale: f64,
    pub noise: Noise,
}

impl Sampling {
    /// Refuses steps, guidance and flow shift out of their ranges ([`crate::limits`]).
    pub fn check(&self) -> Result<()> {
        limits::STEPS.request(self.steps)?;
        limits::GUIDANCE.request(self.guidance)?;
        if let Some(shift) = self.flow_shift {
            limits::FLOW_SHIFT.request(shift)?;
        }
        Ok(())
    }

    pub fn uses_guidance(&self) -> bool {
        self.guidance > 1.0
    }
}

/// What a host sees of a running generation: progress per denoising step and a way to stop.
pub trait Observer {
    /// Called after each denoising step (1-based `done` of `total`).
    fn step(&self, done: usize, total: usize);
    /// Called when a task starts its `index`-th (0-based) of `count` model windows.
    fn window(&self, _index: usize, _count: usize) {}
    /// Polled before each step and between the other phases (text encoding, each chunk of the
    /// VAE encode, each latent frame of the VAE decode, post-processing per frame): true stops
    /// the generation with [`Error::Cancelled`].
    fn cancelled(&self) -> bool {
        false
    }
    /// Something the user should know that does not stop the work (a cache that cannot be
    /// used); said once per occasion.
    fn warn(&self, message: &str) {
        eprintln!("soragen: warning: {message}");
    }
}

/// [`Error::Cancelled`] once `observer` asks to stop: the check between two phases.
pub fn checkpoint(observer: &dyn Observer) -> Result<()> {
    if observer.cancelled() { Err(Error::Cancelled) } else { Ok(()) }
}

/// An observer that shows nothing and never cancels.
pub struct Silent;

impl Observer for Silent {
    fn step(&self, _: usize, _: usize) {}
}

/// What the denoising steps of one generation are conditioned on ([`WanVace::conditioning`]).
pub struct Conditioning {
    /// The VACE context, one copy per batch entry (prompt, then negative prompt).
    control: Tensor,
    /// VACE context scale per VACE layer.
    scales: Vec<f64>,
    text: TextContext,
    /// With guidance: the batch is (prompt, negative prompt), combined with this scale.
    guidance: Option<f64>,
}

/// Prompt embeddings, computed once per prompt and reusable across generations.
#[derive(Clone)]
pub struct Prompt {
    pub embeddings: Tensor,
}

/// Fails with an error naming `what` when `tensor` holds a NaN or an infinity: a broken part
/// (weights, configuration) or input would otherwise come out as black frames. One reduction:
/// `x * 0` sums to 0 exactly when every value is finite.
pub(crate) fn ensure_finite(tensor: &Tensor, what: &str) -> Result<()> {
    let zeros = tensor.to_dtype(DType::F32)?.affine(0.0, 0.0)?;
    if zeros.sum_all()?.to_scalar::<f32>()? == 0.0 {
        Ok(())
    } else {
        Err(Error::Request(format!("{what} produced NaN or infinite values: nothing was written")))
    }
}

impl WanVace {
    /// Checks sizes against the model: frames 4n+1 (the VAE's temporal factor), height and width
    /// multiples of 16 (VAE spatial factor x patch size).
    pub fn check_size(&self, frames: usize, height: usize, width: usize) -> Result<()> {
        let (temporal, spatial) = (self.vae_temporal_factor(), self.vae_spatial_factor() * self.patch_size());
        if frames == 0 || !(frames - 1).is_multiple_of(temporal) {
            return Err(Error::Request(format!(
                "{frames} frames: the model needs {temporal}n+1 frames (e.g. {}, {}, 81)",
                temporal + 1,
                2 * temporal + 1
            )));
        }
        if height == 0 || width == 0 || !height.is_multiple_of(spatial) || !width.is_multiple_of(spatial) {
            return Err(Error::Request(format!(
                "{width}x{height}: width and height must be non-zero multiples of {spatial}"
            )));
        }
        Ok(())
    }

    /// The initial latents' shape for a clip: [1, C, 1 + (F-1)/4, H/8, W/8].
    pub fn latent_shape(&self, frames: usize, height: usize, width: usize) -> [usize; 5] {
        let s = self.vae_spatial_factor();
        [1, self.latent_channels(), (frames - 1) / self.vae_temporal_factor() + 1, height / s, width / s]
    }

    /// The 96-channel VACE context [1, 2C + s*s, F', h, w] for a clip and its mask.
    pub fn vace_context(&self, input: &VaceInput) -> Result<Tensor> {
        self.vace_context_observed(input, &Silent)
    }

    fn vace_context_observed(&self, input: &VaceInput, observer: &dyn Observer) -> Result<Tensor> {
        let inactive = input.video.broadcast_mul(&(1.0 - &input.mask)?)?;
        let reactive = input.video.broadcast_mul(&input.mask)?;
        let inactive = self.encode_latents(&inactive, observer)?;
        let reactive = self.encode_latents(&reactive, observer)?;
        ensure_finite(&inactive, "the VAE encoder")?;
        ensure_finite(&reactive, "the VAE encoder")?;
        let mask = self.fold_mask(&input.mask, inactive.dim(2)?)?;
        Ok(Tensor::cat(&[&inactive, &reactive, &mask], 1)?)
    }

    /// The mask [1, 1, F, H, W] folded s x s into s*s channels at latent resolution
    /// ([1, s*s, F', H/s, W/s]), resized in time by nearest-exact sampling as the reference does.
    fn fold_mask(&self, mask: &Tensor, latent_frames: usize) -> Result<Tensor> {
        let s = self.vae_spatial_factor();
        let (_, _, f, h, w) = mask.dims5()?;
        let folded = mask
            .reshape((f, h / s, s, w / s, s))?
            .permute((2, 4, 0, 1, 3))?
            .reshape((s * s, f, h / s, w / s))?;
        // nearest-exact: source index floor((i + 0.5) * f / f'), never at a rounding boundary
        // for 4n+1 frames.
        let picks: Vec<u32> = (0..latent_frames)
            .map(|i| ((((2 * i + 1) * f) / (2 * latent_frames)).min(f - 1)) as u32)
            .collect();
        let picks = Tensor::from_vec(picks, latent_frames, mask.device())?;
        Ok(folded.index_select(&picks, 1)?.unsqueeze(0)?)
    }

    fn initial_latents(&self, noise: &Noise, shape: [usize; 5]) -> Result<Tensor> {
        match noise {
            Noise::Latents(latents) => {
                if latents.dims() != shape {
                    return Err(Error::Input(format!(
                        "latents have shape {:?}, the request needs {shape:?}",
                        latents.dims()
                    )));
                }
                let latents = latents.to_dtype(DType::F32)?.to_device(&self.device)?;
                ensure_finite(&latents, "the given latents")?;
                Ok(latents)
            }
            Noise::Seed(seed) => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(*seed);
                let count = shape.iter().product();
                let values: Vec<f32> =
                    (0..count).map(|_| rand_distr::StandardNormal.sample(&mut rng)).collect();
                Ok(Tensor::from_vec(values, shape.as_slice(), &self.device)?)
            }
        }
    }

    /// Everything the denoising steps are conditioned on, prepared once per generation: the
    /// VACE context of the clip and the transformer's text keys of the prompt and, with
    /// guidance, of the negative prompt (the two batched together).
    pub fn conditioning(
        &self,
        input: &VaceInput,
        prompt: &Prompt,
        negative: Option<&Prompt>,
        sampling: &Sampling,
    ) -> Result<Conditioning> {
        self.conditioning_observed(input, prompt, negative, sampling, &Silent)
    }

    fn conditioning_observed(
        &self,
        input: &VaceInput,
        prompt: &Prompt,
        negative: Option<&Prompt>,
        sampling: &Sampling,
        observer: &dyn Observer,
    ) -> Result<Conditioning> {
        let control = self.vace_context_observed(input, observer)?.to_dtype(self.dtype)?;
        let scales = vec![sampling.conditioning_scale; self.vace_layer_count()];
        let (control, text, guidance) = match negative {
            // Both branches in one batch of two: larger matrix products run faster on the CPU
            // than two calls, and give the same numbers (the transformer is per-sample).
            Some(negative) if sampling.uses_guidance() => (
                Tensor::cat(&[&control, &control], 0)?,
                Tensor::cat(&[&prompt.embeddings, &negative.embeddings], 0)?,
                Some(sampling.guidance),
            ),
            _ => (control, prompt.embeddings.clone(), None),
        };
        ensure_finite(&text, "the text encoder")?;
        let text = self.transformer.text_context(&text)?;
        Ok(Conditioning { control, scales, text, guidance })
    }

    /// The guided flow velocity at timestep `t`: the transformer on the prompt and, with
    /// guidance, on the negative prompt, combined as `uncond + g * (cond - uncond)`.
    pub fn velocity(&self, latents: &Tensor, t: f64, conditioning: &Conditioning) -> Result<Tensor> {
        let batch = conditioning.control.dim(0)?;
        let latents = latents.to_dtype(self.dtype)?;
        let latents = if batch == 1 { latents } else { Tensor::cat(&vec![&latents; batch], 0)? };
        let timestep = Tensor::new(vec![t as f32; batch], &self.device)?;
        let control = Some((&conditioning.control, conditioning.scales.as_slice()));
        let out = self.transformer.forward_with_text(&latents, &timestep, &conditioning.text, control)?;
        let out = out.to_dtype(DType::F32)?;
        ensure_finite(&out, "the transformer")?;
        match conditioning.guidance {
            Some(guidance) => {
                let (conditional, unconditional) = (out.narrow(0, 0, 1)?, out.narrow(0, 1, 1)?);
                Ok((&unconditional + ((conditional - &unconditional)? * guidance)?)?)
            }
            None => Ok(out),
        }
    }

    /// Runs the pipeline and returns frames [F, H, W, 3] in [0, 1] (f32).
    pub fn generate(
        &self,
        input: &VaceInput,
        prompt: &Prompt,
        negative: Option<&Prompt>,
        sampling: &Sampling,
        observer: &dyn Observer,
    ) -> Result<Tensor> {
        let (frames, height, width) = input.dims();
        self.check_size(frames, height, width)?;
        sampling.check()?;
        let negative = match (sampling.uses_guidance(), negative) {
            (true, None) => return Err(Error::Request("guidance needs a negative prompt".into())),
            (true, Some(n)) => Some(n),
            (false, _) => None,
        };
        checkpoint(observer)?;
        let conditioning = self.conditioning_observed(input, prompt, negative, sampling, observer)?;
        let mut latents = self.initial_latents(&sampling.noise, self.latent_shape(frames, height, width))?;
        let mut scheduler = self.scheduler(sampling.flow_shift)?;
        scheduler.set_timesteps(sampling.steps)?;
        let timesteps = scheduler.timesteps().to_vec();
        for (index, &t) in timesteps.iter().enumerate() {
            checkpoint(observer)?;
            let velocity = self.velocity(&latents, t, &conditioning)?;
            latents = scheduler.step(&velocity, t, &latents)?;
            ensure_finite(&latents, &format!("denoising step {}", index + 1))?;
            observer.step(index + 1, timesteps.len());
        }
        self.decode_frames_observed(&latents, observer)
    }

    /// Decodes latents to frames [F, H, W, 3] in [0, 1], as diffusers' postprocess does
    /// (`x / 2 + 0.5`, clamped).
    pub fn decode_frames(&self, latents: &Tensor) -> Result<Tensor> {
        self.decode_frames_observed(latents, &Silent)
    }

    fn decode_frames_observed(&self, latents: &Tensor, observer: &dyn Observer) -> Result<Tensor> {
        let video = self.decode_latents(latents, observer)?;
        ensure_finite(&video, "the VAE decoder")?;
        let video = ((video / 2.0)? + 0.5)?.clamp(0f32, 1f32)?;
        Ok(video.squeeze(0)?.permute((1, 2, 3, 0))?.contiguous()?)
    }
}

/// Reads `latents` from a `.safetensors` file (the CLI's `--latents`).
pub fn read_latents(path: &Path, device: &Device) -> Result<Tensor> {
    // candle maps the file: refuse anything but a regular file first (a FIFO would block).
    soragen_models::files::open_regular(path)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    let tensors = candle_core::safetensors::load(path, device)
        .map_err(|e| Error::Input(format!("{}: {}", path.display(), e.to_string().lines().next().unwrap_or(""))))?;
    tensors
        .get("latents")
        .cloned()
        .ok_or_else(|| Error::Input(format!("{} holds no tensor named `latents`", path.display())))
}
