//! The VACE primitive: source frames + a mask per frame + a prompt -> generated frames, with
//! the semantics of `diffusers.WanVACEPipeline` (video + mask + prompt + reference images).
//!
//! Masked source pixels are greyed (0 in [-1, 1]); the transformer is conditioned on the
//! 96-channel VACE context: VAE(video * (1 - mask)), VAE(video * mask), both normalised, and
//! the mask folded 8x8 into 64 channels and resized in time to the latent frame count.
//!
//! Reference images (a subject's look, usually on white) are fitted to the frames' size
//! ([`fit_reference`]), each VAE-encoded alone as one frame and put in front of the video's
//! context as (VAE(reference), zeros) with a mask of 0. As diffusers does, each reference goes
//! in front of those before it, so the context's order is the references reversed, then the
//! video. The latents gain one frame per reference; those frames are dropped before decoding.

use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::Distribution;

use soragen_models::transformer::{FirstBlockCache, TextContext};
use soragen_models::vae::Tiling;

use crate::limits;
use crate::model::WanVace;
use crate::step_cache::StepCache;
// Where hosts have always found them.
pub use crate::model::Prompt;
pub use crate::progress::{Observer, Silent, checkpoint};
use crate::video::Video;
use crate::{Error, Result};

/// The source clip and its mask as the pipeline consumes them.
pub struct VaceInput {
    /// [1, 3, F, H, W] in [-1, 1].
    pub video: Tensor,
    /// [1, 1, F, H, W], 1 = generate, 0 = keep.
    pub mask: Tensor,
    /// Reference images, each [1, 3, 1, H, W] in [-1, 1] at the frames' size (see
    /// [`fit_reference`]), in the order given.
    pub references: Vec<Tensor>,
}

impl VaceInput {
    /// Frames (converted from the clip's colour space into the model's) and one generate flag
    /// per pixel and frame.
    pub fn from_frames(video: &Video, mask: &[Vec<bool>], device: &Device) -> Result<Self> {
        let (f, h, w) = (video.len(), video.height, video.width);
        if mask.len() != f {
            return Err(Error::Input(format!(
                "{f} frames but {} masks: give one mask per frame",
                mask.len()
            )));
        }
        if mask.iter().any(|m| m.len() != h * w) {
            return Err(Error::Input(format!(
                "masks must have the frames' size {w}x{h}"
            )));
        }
        // Same arithmetic as diffusers' image processor: x / 255 (8-bit frames hold exactly
        // that), then 2x - 1.
        let pixels: Vec<f32> = video
            .frames
            .iter()
            .flat_map(|frame| video.colour.to_model(&frame.rgb))
            .map(|x| 2.0 * x - 1.0)
            .collect();
        let video = Tensor::from_vec(pixels, (f, h, w, 3), device)?
            .permute((3, 0, 1, 2))?
            .unsqueeze(0)?;
        let bits: Vec<f32> = mask
            .iter()
            .flatten()
            .map(|&b| if b { 1.0 } else { 0.0 })
            .collect();
        let mask = Tensor::from_vec(bits, (1, 1, f, h, w), device)?;
        Ok(Self {
            video: video.contiguous()?,
            mask,
            references: Vec::new(),
        })
    }

    /// Adds reference images (one-frame clips of any size), each fitted to the frames' size as
    /// diffusers fits them ([`fit_reference`]).
    pub fn with_references(mut self, references: &[Video]) -> Result<Self> {
        let (_, h, w) = self.dims();
        let device = self.video.device().clone();
        for reference in references {
            let pixels = fit_reference(reference, w, h)?;
            let tensor = Tensor::from_vec(pixels, (1, 3, 1, h, w), &device)?;
            self.references.push(tensor);
        }
        Ok(self)
    }

    fn dims(&self) -> (usize, usize, usize) {
        let (_, _, f, h, w) = self.video.dims5().expect("video is 5-D by construction");
        (f, h, w)
    }
}

/// The spatial factor diffusers' image processor rounds a reference's size down to (Wan's VAE).
const REFERENCE_MULTIPLE: usize = 8;

/// A reference image (the first frame of `image`) fitted to `width` x `height` as diffusers'
/// `WanVACEPipeline.preprocess_conditions` fits it: sides not multiples of 8 are first resized
/// (Pillow's Lanczos) down to the nearest multiples of 8; then the image is scaled, aspect kept,
/// to fit inside the frame (bilinear, `align_corners=False`, no antialiasing, as
/// `torch.nn.functional.interpolate`; sizes truncated as Python's `int`) and centred on a white
/// canvas. Returns [3, height, width] in [-1, 1].
pub fn fit_reference(image: &Video, width: usize, height: usize) -> Result<Vec<f32>> {
    let Some(frame) = image.frames.first() else {
        return Err(Error::Input("a reference image holds no frame".into()));
    };
    if image.frames.len() != 1 {
        return Err(Error::Input(format!(
            "a reference is one image, not {} frames",
            image.frames.len()
        )));
    }
    let (w0, h0) = (image.width, image.height);
    let (w1, h1) = (w0 - w0 % REFERENCE_MULTIPLE, h0 - h0 % REFERENCE_MULTIPLE);
    if w1 == 0 || h1 == 0 {
        return Err(Error::Input(format!(
            "a {w0}x{h0} reference image is too small: at least {REFERENCE_MULTIPLE}x{REFERENCE_MULTIPLE} pixels"
        )));
    }
    let model = image.colour.to_model(&frame.rgb);
    let pixels: Vec<f32> = if (w1, h1) == (w0, h0) {
        model.iter().map(|&x| 2.0 * x - 1.0).collect()
    } else {
        // Pillow resizes 8-bit images: so do we, for the same reference.
        let bytes: Vec<u8> = model.into_iter().map(crate::video::to_8bit).collect();
        lanczos::resize(&bytes, w0, h0, w1, h1)
            .iter()
            .map(|&v| 2.0 * (v as f32 / 255.0) - 1.0)
            .collect()
    };
    // Python: scale = min(H / h, W / w); int(h * scale), int(w * scale).
    let scale = (height as f64 / h1 as f64).min(width as f64 / w1 as f64);
    let (nh, nw) = (
        ((h1 as f64) * scale) as usize,
        ((w1 as f64) * scale) as usize,
    );
    let (nh, nw) = (nh.clamp(1, height), nw.clamp(1, width));
    let rows = bilinear_taps(h1, nh);
    let cols = bilinear_taps(w1, nw);
    let (top, left) = ((height - nh) / 2, (width - nw) / 2);
    let mut canvas = vec![1.0f32; 3 * height * width];
    for (y, &(y0, y1, ly)) in rows.iter().enumerate() {
        for (x, &(x0, x1, lx)) in cols.iter().enumerate() {
            for c in 0..3 {
                let at = |yy: usize, xx: usize| pixels[(yy * w1 + xx) * 3 + c];
                let value = (1.0 - ly) * ((1.0 - lx) * at(y0, x0) + lx * at(y0, x1))
                    + ly * ((1.0 - lx) * at(y1, x0) + lx * at(y1, x1));
                canvas[(c * height + top + y) * width + left + x] = value;
            }
        }
    }
    Ok(canvas)
}

/// Source indices and weight of the second for each output index of a bilinear resize from
/// `input` to `output` samples, as PyTorch computes them (f32, `align_corners=False`).
fn bilinear_taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let source = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (source as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, source - i0 as f32)
        })
        .collect()
}

/// Pillow's `Image.resize(size, Image.LANCZOS)` on 8-bit RGB: separable, antialiased,
/// fixed-point coefficients, horizontal pass first, each pass rounded to 8 bits.
mod lanczos {
    const PRECISION_BITS: u32 = 32 - 8 - 2;
    const SUPPORT: f64 = 3.0;

    fn sinc(x: f64) -> f64 {
        if x == 0.0 {
            1.0
        } else {
            let x = x * std::f64::consts::PI;
            x.sin() / x
        }
    }

    fn filter(x: f64) -> f64 {
        if (-SUPPORT..SUPPORT).contains(&x) {
            sinc(x) * sinc(x / 3.0)
        } else {
            0.0
        }
    }

    /// Per output sample: first input index and fixed-point weights (Pillow's precompute_coeffs
    /// and normalize_coeffs_8bpc).
    fn coefficients(input: usize, output: usize) -> Vec<(usize, Vec<i32>)> {
        let scale = input as f64 / output as f64;
        let filterscale = scale.max(1.0);
        let support = SUPPORT * filterscale;
        (0..output)
            .map(|xx| {
                let center = (xx as f64 + 0.5) * scale;
                let ss = 1.0 / filterscale;
                let xmin = ((center - support + 0.5) as i64).max(0) as usize;
                let xmax = ((center + support + 0.5) as i64).min(input as i64) as usize;
                let weights: Vec<f64> = (xmin..xmax)
                    .map(|x| filter((x as f64 - center + 0.5) * ss))
                    .collect();
                let total: f64 = weights.iter().sum();
                let fixed = weights
                    .iter()
                    .map(|&w| {
                        let w = if total != 0.0 { w / total } else { w };
                        let v = w * (1i64 << PRECISION_BITS) as f64;
                        (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                    })
                    .collect();
                (xmin, fixed)
            })
            .collect()
    }

    fn clip8(v: i64) -> u8 {
        (v >> PRECISION_BITS).clamp(0, 255) as u8
    }

    /// Resizes interleaved RGB `w0` x `h0` to `w1` x `h1`.
    pub fn resize(rgb: &[u8], w0: usize, h0: usize, w1: usize, h1: usize) -> Vec<u8> {
        let mut current = rgb.to_vec();
        if w1 != w0 {
            let coeffs = coefficients(w0, w1);
            let mut out = vec![0u8; h0 * w1 * 3];
            for y in 0..h0 {
                for (x, (xmin, k)) in coeffs.iter().enumerate() {
                    for c in 0..3 {
                        let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                        for (i, &kk) in k.iter().enumerate() {
                            ss += current[(y * w0 + xmin + i) * 3 + c] as i64 * kk as i64;
                        }
                        out[(y * w1 + x) * 3 + c] = clip8(ss);
                    }
                }
            }
            current = out;
        }
        if h1 != h0 {
            let coeffs = coefficients(h0, h1);
            let mut out = vec![0u8; h1 * w1 * 3];
            for (y, (ymin, k)) in coeffs.iter().enumerate() {
                for x in 0..w1 {
                    for c in 0..3 {
                        let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                        for (i, &kk) in k.iter().enumerate() {
                            ss += current[((ymin + i) * w1 + x) * 3 + c] as i64 * kk as i64;
                        }
                        out[(y * w1 + x) * 3 + c] = clip8(ss);
                    }
                }
            }
            current = out;
        }
        current
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
    /// Reuse work between steps (faster, further from the uncached frames).
    pub cache: Option<StepCache>,
}

impl Sampling {
    /// Refuses steps, guidance and flow shift out of their ranges ([`crate::limits`]).
    pub fn check(&self) -> Result<()> {
        limits::STEPS.request(self.steps)?;
        limits::GUIDANCE.request(self.guidance)?;
        if let Some(shift) = self.flow_shift {
            limits::FLOW_SHIFT.request(shift)?;
        }
        if let Some(StepCache::FirstBlock { threshold }) = self.cache {
            crate::step_cache::THRESHOLD.request(threshold)?;
        }
        Ok(())
    }

    pub fn uses_guidance(&self) -> bool {
        self.guidance > 1.0
    }
}

/// What the denoising steps of one generation are conditioned on ([`WanVace::conditioning`]).
pub struct Conditioning {
    /// VACE context scale per VACE layer.
    scales: Vec<f64>,
    branches: Branches,
    /// With guidance: the branches are (prompt, negative prompt), combined with this scale.
    guidance: Option<f64>,
}

/// How the guidance branches run.
enum Branches {
    /// All in one batch: larger matrix products run faster on the CPU than one call per
    /// branch, and give the same numbers (the transformer is per-sample).
    Batched {
        /// The VACE context, once per branch.
        control: Tensor,
        text: TextContext,
    },
    /// One forward per branch, each with its own cache (diffusers' cache contexts "cond" and
    /// "uncond"): the branches may skip different steps.
    Cached {
        control: Tensor,
        branches: Vec<(TextContext, Mutex<FirstBlockCache>)>,
    },
}

/// Fails with an error naming `what` when `tensor` holds a NaN or an infinity: a broken part
/// (weights, configuration) or input would otherwise come out as black frames. One reduction:
/// `x * 0` sums to 0 exactly when every value is finite.
pub(crate) fn ensure_finite(tensor: &Tensor, what: &str) -> Result<()> {
    let zeros = tensor.to_dtype(DType::F32)?.affine(0.0, 0.0)?;
    if zeros.sum_all()?.to_scalar::<f32>()? == 0.0 {
        Ok(())
    } else {
        Err(Error::Request(format!(
            "{what} produced NaN or infinite values: nothing was written"
        )))
    }
}

impl WanVace {
    /// Checks sizes against the model: frames 4n+1 (the VAE's temporal factor), height and width
    /// multiples of 16 (VAE spatial factor x patch size).
    pub fn check_size(&self, frames: usize, height: usize, width: usize) -> Result<()> {
        let (temporal, spatial) = (
            self.vae_temporal_factor(),
            self.vae_spatial_factor() * self.patch_size(),
        );
        if frames == 0 || !(frames - 1).is_multiple_of(temporal) {
            return Err(Error::Request(format!(
                "{frames} frames: the model needs {temporal}n+1 frames (e.g. {}, {}, 81)",
                temporal + 1,
                2 * temporal + 1
            )));
        }
        if height == 0
            || width == 0
            || !height.is_multiple_of(spatial)
            || !width.is_multiple_of(spatial)
        {
            return Err(Error::Request(format!(
                "{width}x{height}: width and height must be non-zero multiples of {spatial}"
            )));
        }
        Ok(())
    }

    /// The initial latents' shape for a clip: [1, C, 1 + (F-1)/4, H/8, W/8].
    pub fn latent_shape(&self, frames: usize, height: usize, width: usize) -> [usize; 5] {
        let s = self.vae_spatial_factor();
        [
            1,
            self.latent_channels(),
            (frames - 1) / self.vae_temporal_factor() + 1,
            height / s,
            width / s,
        ]
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
        let mut context = Tensor::cat(&[&inactive, &reactive, &mask], 1)?;
        for reference in &input.references {
            checkpoint(observer)?;
            let latent = self.encode_latents(reference, observer)?;
            ensure_finite(&latent, "the VAE encoder")?;
            // (VAE(reference), zeros) and a mask of 0 (the mask padding goes in front as well:
            // diffusers issue #11779, fixed in the diffusers we match).
            let (_, c, _, h, w) = latent.dims5()?;
            let zeros = Tensor::zeros(
                (1, c + mask.dim(1)?, 1, h, w),
                latent.dtype(),
                latent.device(),
            )?;
            let entry = Tensor::cat(&[&latent, &zeros], 1)?;
            context = Tensor::cat(&[&entry, &context], 2)?;
        }
        Ok(context)
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
                let values: Vec<f32> = (0..count)
                    .map(|_| rand_distr::StandardNormal.sample(&mut rng))
                    .collect();
                Ok(Tensor::from_vec(values, shape.as_slice(), &self.device)?)
            }
        }
    }

    /// Everything the denoising steps are conditioned on, prepared once per generation: the
    /// VACE context of the clip and the transformer's text keys of the prompt and, with
    /// guidance, of the negative prompt (batched together, or one by one with a step cache).
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
        let control = self
            .vace_context_observed(input, observer)?
            .to_dtype(self.dtype)?;
        let scales = vec![sampling.conditioning_scale; self.vace_layer_count()];
        let (texts, guidance) = match negative {
            Some(negative) if sampling.uses_guidance() => (
                vec![&prompt.embeddings, &negative.embeddings],
                Some(sampling.guidance),
            ),
            _ => (vec![&prompt.embeddings], None),
        };
        for text in &texts {
            ensure_finite(text, "the text encoder")?;
        }
        let branches = match sampling.cache {
            None => Branches::Batched {
                control: Tensor::cat(&vec![&control; texts.len()], 0)?,
                text: self.transformer.text_context(&Tensor::cat(&texts, 0)?)?,
            },
            Some(StepCache::FirstBlock { threshold }) => Branches::Cached {
                control,
                branches: texts
                    .into_iter()
                    .map(|text| {
                        let cache = Mutex::new(FirstBlockCache::new(threshold));
                        Ok((self.transformer.text_context(text)?, cache))
                    })
                    .collect::<Result<_>>()?,
            },
        };
        Ok(Conditioning {
            scales,
            branches,
            guidance,
        })
    }

    /// The guided flow velocity at timestep `t`: the transformer on the prompt and, with
    /// guidance, on the negative prompt, combined as `uncond + g * (cond - uncond)`.
    pub fn velocity(
        &self,
        latents: &Tensor,
        t: f64,
        conditioning: &Conditioning,
    ) -> Result<Tensor> {
        let latents = latents.to_dtype(self.dtype)?;
        let scales = conditioning.scales.as_slice();
        let out = match &conditioning.branches {
            Branches::Batched { control, text } => {
                let batch = control.dim(0)?;
                let latents = Tensor::cat(&vec![&latents; batch], 0)?;
                let timestep = Tensor::new(vec![t as f32; batch], &self.device)?;
                self.transformer.forward_with_text(
                    &latents,
                    &timestep,
                    text,
                    Some((control, scales)),
                )?
            }
            Branches::Cached { control, branches } => {
                let timestep = Tensor::new(&[t as f32], &self.device)?;
                let outputs = branches
                    .iter()
                    .map(|(text, cache)| {
                        let mut cache = cache.lock().expect("a branch cache is never poisoned");
                        self.transformer.forward_cached(
                            &latents,
                            &timestep,
                            text,
                            Some((control, scales)),
                            Some(&mut cache),
                        )
                    })
                    .collect::<candle_core::Result<Vec<_>>>()?;
                Tensor::cat(&outputs, 0)?
            }
        };
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
        for reference in &input.references {
            if reference.dims() != [1, 3, 1, height, width] {
                return Err(Error::Input(format!(
                    "a reference image has shape {:?}, the frames need [1, 3, 1, {height}, {width}]",
                    reference.dims()
                )));
            }
        }
        checkpoint(observer)?;
        let conditioning =
            self.conditioning_observed(input, prompt, negative, sampling, observer)?;
        // One more latent frame per reference (diffusers: num_frames + 4 per reference).
        let references = input.references.len();
        let mut shape = self.latent_shape(frames, height, width);
        shape[2] += references;
        let mut latents = self.initial_latents(&sampling.noise, shape)?;
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
        // The references' frames are not part of the clip: dropped before decoding (diffusers
        // drops them only when decoding, issue #14170; we never return latents).
        let latents = latents.narrow(2, references, shape[2] - references)?;
        self.decode_frames_observed(&latents, observer)
    }

    /// Decodes latents to frames [F, H, W, 3] in [0, 1], as diffusers' postprocess does
    /// (`x / 2 + 0.5`, clamped); in tiles where whole frames would not fit
    /// ([`WanVace::vae_tiling`]).
    pub fn decode_frames(&self, latents: &Tensor) -> Result<Tensor> {
        self.decode_frames_observed(latents, &Silent)
    }

    /// [`Self::decode_frames`] on whole frames (`None`) or in the given tiles.
    pub fn decode_frames_tiled(&self, latents: &Tensor, tiling: Option<&Tiling>) -> Result<Tensor> {
        self.decode_frames_with(latents, tiling, &Silent)
    }

    fn decode_frames_observed(&self, latents: &Tensor, observer: &dyn Observer) -> Result<Tensor> {
        let (frames, width, height) = self.decoded_size(latents)?;
        let tiling = self.vae_tiling(frames, width, height)?;
        self.decode_frames_with(latents, tiling.as_ref(), observer)
    }

    fn decode_frames_with(
        &self,
        latents: &Tensor,
        tiling: Option<&Tiling>,
        observer: &dyn Observer,
    ) -> Result<Tensor> {
        let video = self.decode_latents(latents, tiling, observer)?;
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
    let tensors = candle_core::safetensors::load(path, device).map_err(|e| {
        Error::Input(format!(
            "{}: {}",
            path.display(),
            e.to_string().lines().next().unwrap_or("")
        ))
    })?;
    tensors.get("latents").cloned().ok_or_else(|| {
        Error::Input(format!(
            "{} holds no tensor named `latents`",
            path.display()
        ))
    })
}
