//! Wan2.1 diffusion transformer, text-to-video (diffusers `WanTransformer3DModel`) and with the
//! VACE control branch (`WanVACETransformer3DModel`), as one model: a config with
//! `vace_layers` (and the `vace_*` tensors) adds the branch.
//!
//! The image-to-video variant (CLIP image tokens, `image_dim` / `added_kv_proj_dim`) and the
//! Wan2.2 per-token timesteps are not implemented.

mod cache;
mod kernels;
mod layers;
mod names;
mod rope;

pub use cache::FirstBlockCache;
pub use names::{diffusers_to_original_name, original_to_diffusers_name};

use candle_core::{DType, Result, Tensor, bail};
use candle_nn::VarBuilder;
use serde::Deserialize;

use kernels::layer_norm_affine;
use layers::{Attention, GeluMlp, Linear, MergedText, TextKeys};
use rope::{Rope, RopeTables};

/// The diffusers `config.json` of `WanTransformer3DModel` / `WanVACETransformer3DModel`.
/// Missing fields take the diffusers defaults; `vace_layers` absent or null means plain Wan.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// (time, height, width) patch of the input Conv3d.
    pub patch_size: [usize; 3],
    pub num_attention_heads: usize,
    pub attention_head_dim: usize,
    pub in_channels: usize,
    /// Null means `in_channels`.
    pub out_channels: Option<usize>,
    pub text_dim: usize,
    /// Size of the sinusoidal timestep embedding.
    pub freq_dim: usize,
    pub ffn_dim: usize,
    pub num_layers: usize,
    /// Affine LayerNorm before cross-attention.
    pub cross_attn_norm: bool,
    /// Must be `rms_norm_across_heads`.
    pub qk_norm: Option<String>,
    pub eps: f64,
    /// Image-to-video only: must be null.
    pub image_dim: Option<usize>,
    /// Image-to-video only: must be null.
    pub added_kv_proj_dim: Option<usize>,
    /// Largest patch-grid extent along any axis the rotary embedding covers.
    pub rope_max_seq_len: usize,
    /// Image-to-video only: must be null.
    pub pos_embed_seq_len: Option<usize>,
    /// Main blocks after which a VACE hint is added (must include 0).
    pub vace_layers: Option<Vec<usize>>,
    /// Channels of the VACE control input.
    pub vace_in_channels: usize,
}

impl Default for Config {
    /// The defaults of diffusers' constructor (not a published checkpoint).
    fn default() -> Self {
        Self {
            patch_size: [1, 2, 2],
            num_attention_heads: 40,
            attention_head_dim: 128,
            in_channels: 16,
            out_channels: Some(16),
            text_dim: 4096,
            freq_dim: 256,
            ffn_dim: 13824,
            num_layers: 40,
            cross_attn_norm: true,
            qk_norm: Some(QK_NORM.to_string()),
            eps: 1e-6,
            image_dim: None,
            added_kv_proj_dim: None,
            rope_max_seq_len: 1024,
            pos_embed_seq_len: None,
            vace_layers: None,
            vace_in_channels: 96,
        }
    }
}

const QK_NORM: &str = "rms_norm_across_heads";

impl Config {
    /// Hidden size (`heads * head_dim`).
    pub fn dim(&self) -> usize {
        self.num_attention_heads * self.attention_head_dim
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels.unwrap_or(self.in_channels)
    }

    pub fn is_vace(&self) -> bool {
        self.vace_layers.is_some()
    }

    /// Rejects variants this implementation does not cover and inconsistent sizes.
    pub fn validate(&self) -> Result<()> {
        if self.image_dim.is_some()
            || self.added_kv_proj_dim.is_some()
            || self.pos_embed_seq_len.is_some()
        {
            bail!(
                "Wan image-to-video (image_dim / added_kv_proj_dim / pos_embed_seq_len set) is not \
                 supported: only text-to-video and VACE"
            )
        }
        if self.qk_norm.as_deref() != Some(QK_NORM) {
            bail!(
                "Wan qk_norm {:?} is not supported: only {QK_NORM:?}",
                self.qk_norm
            )
        }
        if self.num_attention_heads == 0
            || self.attention_head_dim == 0
            || !self.attention_head_dim.is_multiple_of(2)
        {
            bail!(
                "Wan needs at least one head and an even head dim (rotary pairs), got {} x {}",
                self.num_attention_heads,
                self.attention_head_dim
            )
        }
        if self.patch_size.contains(&0) {
            bail!("Wan patch_size {:?} has a zero extent", self.patch_size)
        }
        if let Some(layers) = &self.vace_layers {
            if !layers.contains(&0) {
                bail!("VACE layers {layers:?} must include layer 0")
            }
            if let Some(&layer) = layers.iter().find(|&&layer| layer >= self.num_layers) {
                bail!(
                    "VACE layer {layer} is out of range for {} transformer layers",
                    self.num_layers
                )
            }
        }
        Ok(())
    }
}

/// Conv3d whose kernel equals its stride, computed as one matmul over flattened patches.
struct PatchEmbedding {
    /// `[dim, channels, pt, ph, pw]`, kept as stored.
    weight: Tensor,
    bias: Tensor,
    patch: [usize; 3],
}

impl PatchEmbedding {
    fn load(vb: VarBuilder, in_channels: usize, dim: usize, patch: [usize; 3]) -> Result<Self> {
        let [pt, ph, pw] = patch;
        Ok(Self {
            weight: vb.get((dim, in_channels, pt, ph, pw), "weight")?,
            bias: vb.get(dim, "bias")?,
            patch,
        })
    }

    /// `[B, C, F, H, W]` -> tokens `[B, F' * H' * W', dim]` in (frame, row, column) order. Like
    /// the strided convolution, trailing positions that do not fill a patch are dropped.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, channels, frames, height, width) = x.dims5()?;
        let (dim, weight_channels, ..) = self.weight.dims5()?;
        if channels != weight_channels {
            bail!(
                "patch embedding expects {weight_channels} channels, got input {:?}",
                x.shape()
            )
        }
        let [pt, ph, pw] = self.patch;
        let (gf, gh, gw) = (frames / pt, height / ph, width / pw);
        let x = x
            .narrow(2, 0, gf * pt)?
            .narrow(3, 0, gh * ph)?
            .narrow(4, 0, gw * pw)?;
        let patch_len = channels * pt * ph * pw;
        let patches = x
            .reshape(vec![batch, channels, gf, pt, gh, ph, gw, pw])?
            .permute(vec![0, 2, 4, 6, 1, 3, 5, 7])?
            .reshape((batch * gf * gh * gw, patch_len))?;
        patches
            .matmul(&self.weight.reshape((dim, patch_len))?.t()?)?
            .broadcast_add(&self.bias)?
            .reshape((batch, gf * gh * gw, dim))
    }
}

/// One transformer block (diffusers `WanTransformerBlock`; also the body of a VACE block).
struct Block {
    self_attn: Attention,
    /// Affine LayerNorm before cross-attention as f32 (weight, bias), if configured.
    cross_norm: Option<(Tensor, Tensor)>,
    cross_attn: Attention,
    ffn: GeluMlp,
    /// `[1, 6, dim]` f32: shift, scale, gate of self-attention, then of the feed-forward.
    scale_shift_table: Tensor,
    eps: f64,
}

impl Block {
    fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let dim = config.dim();
        let heads = config.num_attention_heads;
        // Like diffusers, norms and modulation tables are kept in f32 whatever the weights dtype.
        let vb_f32 = vb.to_dtype(DType::F32);
        let cross_norm = if config.cross_attn_norm {
            let norm = vb_f32.pp("norm2");
            Some((norm.get(dim, "weight")?, norm.get(dim, "bias")?))
        } else {
            None
        };
        Ok(Self {
            self_attn: Attention::load(vb.pp("attn1"), dim, heads, config.eps)?,
            cross_norm,
            cross_attn: Attention::load(vb.pp("attn2"), dim, heads, config.eps)?,
            ffn: GeluMlp::new(
                Linear::load(vb.pp("ffn.net.0.proj"), dim, config.ffn_dim)?,
                Linear::load(vb.pp("ffn.net.2"), config.ffn_dim, dim)?,
            ),
            scale_shift_table: vb_f32.get((1, 6, dim), "scale_shift_table")?,
            eps: config.eps,
        })
    }

    /// `x` `[B, L, dim]`, `text` this block's keys of the embedded text, `time_modulation`
    /// `[B or 1, 6, dim]` f32.
    fn forward(
        &self,
        x: &Tensor,
        text: &TextKeys,
        time_modulation: &Tensor,
        rope: &RopeTables,
    ) -> Result<Tensor> {
        let dtype = x.dtype();
        let modulation = self.scale_shift_table.broadcast_add(time_modulation)?;
        let part = |i: usize| modulation.narrow(1, i, 1)?.squeeze(1);
        let modulated_norm = |x: &Tensor, shift: usize| -> Result<Tensor> {
            layer_norm_affine(x, &(part(shift + 1)? + 1.0)?, &part(shift)?, self.eps)?
                .to_dtype(dtype)
        };

        let attn = self
            .self_attn
            .self_attention(&modulated_norm(x, 0)?, rope)?;
        let x = gated_residual(x, &attn, &part(2)?)?;

        let normed = match &self.cross_norm {
            Some((weight, bias)) => {
                layer_norm_affine(&x, &weight.unsqueeze(0)?, &bias.unsqueeze(0)?, self.eps)?
                    .to_dtype(dtype)?
            }
            None => x.clone(),
        };
        let x = self.cross_attn.cross_attention(&normed, text, &x)?;

        let ffn = self.ffn.forward(&modulated_norm(&x, 3)?)?;
        gated_residual(&x, &ffn, &part(5)?)
    }
}

/// `x + y * gate` in f32 (gate `[B or 1, dim]`), back in the dtype of `x`.
fn gated_residual(x: &Tensor, y: &Tensor, gate: &Tensor) -> Result<Tensor> {
    let update = y.to_dtype(DType::F32)?.broadcast_mul(&gate.unsqueeze(1)?)?;
    (x.to_dtype(DType::F32)? + update)?.to_dtype(x.dtype())
}

/// diffusers `WanVACETransformerBlock`: a block over the control stream that emits a hint.
struct VaceBlock {
    /// Only the first block: adds the projected control to the patch-embedded latents.
    proj_in: Option<Linear>,
    block: Block,
    proj_out: Linear,
}

/// The VACE control branch.
struct Vace {
    patch_embedding: PatchEmbedding,
    blocks: Vec<VaceBlock>,
    /// Main block after which hint `k` is added. diffusers hands the hints out in order while
    /// walking the main blocks, so hint `k` goes to the `k`-th smallest VACE layer.
    injection_layers: Vec<usize>,
}

/// Control stream of one forward: VACE blocks run lazily, just before their hint is due, so
/// only one hint is alive at a time.
struct VaceRun<'a> {
    vace: &'a Vace,
    /// The control tokens, until the first VACE block turns them into the control stream.
    stream: Tensor,
    /// Patch-embedded latents, needed by the first VACE block only.
    latent_tokens: Option<Tensor>,
    scales: Vec<f64>,
    next_hint: usize,
}

impl VaceRun<'_> {
    /// `x` with the scaled hint added if one is due after main block `layer`.
    fn add_hint_after(
        &mut self,
        layer: usize,
        x: Tensor,
        text: &[TextKeys],
        time_modulation: &Tensor,
        rope: &RopeTables,
    ) -> Result<Tensor> {
        if self.vace.injection_layers.get(self.next_hint) != Some(&layer) {
            return Ok(x);
        }
        let index = self.next_hint;
        let vace_block = &self.vace.blocks[index];
        let mut input = self.stream.clone();
        if let Some(proj_in) = &vace_block.proj_in {
            let Some(latent_tokens) = self.latent_tokens.take() else {
                bail!("only the first VACE block takes the latent tokens")
            };
            input = proj_in.add_to(&latent_tokens, &input, 1.0)?;
        }
        self.stream = vace_block
            .block
            .forward(&input, &text[index], time_modulation, rope)?;
        self.next_hint += 1;
        vace_block
            .proj_out
            .add_to(&x, &self.stream, self.scales[index])
    }
}

/// Text conditioning of a [`WanTransformer`], made by [`WanTransformer::text_context`].
pub struct TextContext {
    batch: usize,
    /// Per main block.
    blocks: Vec<TextKeys>,
    /// Per VACE block.
    vace_blocks: Vec<TextKeys>,
}

/// Wan2.1 transformer, plain or VACE (see the module docs).
pub struct WanTransformer {
    config: Config,
    dtype: DType,
    patch_embedding: PatchEmbedding,
    /// Timestep embedder, f32 like diffusers.
    time_embedder: (Linear, Linear),
    time_proj: Linear,
    text_embedder: GeluMlp,
    blocks: Vec<Block>,
    vace: Option<Vace>,
    proj_out: Linear,
    /// `[1, 2, dim]` f32: shift and scale of the output norm.
    scale_shift_table: Tensor,
    rope: Rope,
    /// Forward passes run so far (see [`Self::forward_count`]).
    forwards: std::sync::atomic::AtomicUsize,
    /// Of those, the ones that skipped blocks (see [`Self::cached_forward_count`]).
    cached_forwards: std::sync::atomic::AtomicUsize,
}

impl WanTransformer {
    /// Loads the weights under their diffusers names (compute dtype: the `VarBuilder`'s).
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        config.validate()?;
        let dim = config.dim();
        let vb_f32 = vb.to_dtype(DType::F32);
        let embedder = vb.pp("condition_embedder");
        let blocks = (0..config.num_layers)
            .map(|i| Block::load(vb.pp(format!("blocks.{i}")), config))
            .collect::<Result<_>>()?;
        let vace = match &config.vace_layers {
            Some(layers) => {
                let blocks = (0..layers.len())
                    .map(|i| {
                        let vb = vb.pp(format!("vace_blocks.{i}"));
                        Ok(VaceBlock {
                            proj_in: if i == 0 {
                                Some(Linear::load(vb.pp("proj_in"), dim, dim)?)
                            } else {
                                None
                            },
                            block: Block::load(vb.clone(), config)?,
                            proj_out: Linear::load(vb.pp("proj_out"), dim, dim)?,
                        })
                    })
                    .collect::<Result<_>>()?;
                let mut injection_layers = layers.clone();
                injection_layers.sort_unstable();
                injection_layers.dedup();
                Some(Vace {
                    patch_embedding: PatchEmbedding::load(
                        vb.pp("vace_patch_embedding"),
                        config.vace_in_channels,
                        dim,
                        config.patch_size,
                    )?,
                    blocks,
                    injection_layers,
                })
            }
            None => None,
        };
        Ok(Self {
            config: config.clone(),
            dtype: vb.dtype(),
            patch_embedding: PatchEmbedding::load(
                vb.pp("patch_embedding"),
                config.in_channels,
                dim,
                config.patch_size,
            )?,
            time_embedder: (
                Linear::load(
                    vb_f32.pp("condition_embedder.time_embedder.linear_1"),
                    config.freq_dim,
                    dim,
                )?,
                Linear::load(
                    vb_f32.pp("condition_embedder.time_embedder.linear_2"),
                    dim,
                    dim,
                )?,
            ),
            time_proj: Linear::load(embedder.pp("time_proj"), dim, 6 * dim)?,
            text_embedder: GeluMlp::new(
                Linear::load(embedder.pp("text_embedder.linear_1"), config.text_dim, dim)?,
                Linear::load(embedder.pp("text_embedder.linear_2"), dim, dim)?,
            ),
            blocks,
            vace,
            proj_out: Linear::load(
                vb.pp("proj_out"),
                dim,
                config.out_channels() * config.patch_size.iter().product::<usize>(),
            )?,
            scale_shift_table: vb_f32.get((1, 2, dim), "scale_shift_table")?,
            rope: Rope::new(
                config.attention_head_dim,
                config.rope_max_seq_len,
                vb.device(),
            ),
            forwards: Default::default(),
            cached_forwards: Default::default(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many forward evaluations this model has run, per sample: a denoising step counts
    /// one, two with guidance (the prompt and the negative prompt, even in one batch of two).
    /// What step distillation and caching save.
    pub fn forward_count(&self) -> usize {
        self.forwards.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Of [`Self::forward_count`], the forwards that ran only the first block (and the VACE
    /// blocks) and reused the cached residual of the others ([`FirstBlockCache`]).
    pub fn cached_forward_count(&self) -> usize {
        self.cached_forwards
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The text conditioning for [`Self::forward_with_text`]: every block's cross-attention
    /// keys and values of `text_embeddings` `[B, Lt, text_dim]` (the text encoder output),
    /// computed once for all the denoising steps of a prompt.
    pub fn text_context(&self, text_embeddings: &Tensor) -> Result<TextContext> {
        let merged = MergedText::new(text_embeddings)?;
        let embedded = MergedText {
            tokens: self
                .text_embedder
                .forward(&merged.tokens.to_dtype(self.dtype)?)?,
            ..merged
        };
        Ok(TextContext {
            batch: text_embeddings.dim(0)?,
            blocks: self
                .blocks
                .iter()
                .map(|block| block.cross_attn.text_keys(&embedded))
                .collect::<Result<_>>()?,
            vace_blocks: self
                .vace
                .iter()
                .flat_map(|vace| &vace.blocks)
                .map(|vace_block| vace_block.block.cross_attn.text_keys(&embedded))
                .collect::<Result<_>>()?,
        })
    }

    /// Predicts the flow velocity `[B, out_channels, F, H, W]` (each extent cut down to a whole
    /// number of patches) for `latents` `[B, in_channels, F, H, W]` at `timestep` `[B]` (or
    /// `[1]`, values on the 0..1000 scale), conditioned on the text encoder output
    /// `text_embeddings` `[B, Lt, text_dim]`.
    ///
    /// `vace` is the control input `[B, vace_in_channels, Fc, H, W]` (`Fc <= F`; missing trailing
    /// frames count as zero tokens, as in diffusers) with one context scale per VACE layer or a
    /// single one for all. `None` on a VACE model runs the main blocks without hints (diffusers
    /// has no such mode: it requires a control input).
    pub fn forward(
        &self,
        latents: &Tensor,
        timestep: &Tensor,
        text_embeddings: &Tensor,
        vace: Option<(&Tensor, &[f64])>,
    ) -> Result<Tensor> {
        self.forward_with_text(
            latents,
            timestep,
            &self.text_context(text_embeddings)?,
            vace,
        )
    }

    /// [`Self::forward`] on text prepared by [`Self::text_context`].
    pub fn forward_with_text(
        &self,
        latents: &Tensor,
        timestep: &Tensor,
        text: &TextContext,
        vace: Option<(&Tensor, &[f64])>,
    ) -> Result<Tensor> {
        self.forward_cached(latents, timestep, text, vace, None)
    }

    /// [`Self::forward_with_text`], with the blocks after the first skipped when `cache` says
    /// their work can be reused (see [`FirstBlockCache`]; one cache per guidance branch).
    pub fn forward_cached(
        &self,
        latents: &Tensor,
        timestep: &Tensor,
        text: &TextContext,
        vace: Option<(&Tensor, &[f64])>,
        cache: Option<&mut FirstBlockCache>,
    ) -> Result<Tensor> {
        let (batch, _, frames, height, width) = latents.dims5()?;
        let [pt, ph, pw] = self.config.patch_size;
        let grid = (frames / pt, height / ph, width / pw);
        if grid.0 * grid.1 * grid.2 == 0 {
            bail!(
                "latents {:?} hold no whole patch of {:?}",
                latents.shape(),
                self.config.patch_size
            )
        }
        if text.batch != batch {
            bail!(
                "text of batch {} does not match the latent batch {batch}",
                text.batch
            )
        }
        self.forwards
            .fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
        let rope = self.rope.tables(grid)?;
        let (temb, time_modulation) = self.embed_timestep(timestep, batch)?;
        let mut x = self
            .patch_embedding
            .forward(&latents.to_dtype(self.dtype)?)?;

        let mut vace_run = match (vace, &self.vace) {
            (Some((control, scales)), Some(branch)) => {
                Some(self.start_vace(branch, control, scales, &x, grid)?)
            }
            (Some(_), None) => bail!("VACE control given to a Wan transformer without VACE layers"),
            (None, _) => None,
        };
        let mut add_hint = |layer: usize, x: Tensor| match vace_run.as_mut() {
            Some(run) => run.add_hint_after(layer, x, &text.vace_blocks, &time_modulation, &rope),
            None => Ok(x),
        };
        let blocks: Vec<_> = self.blocks.iter().zip(&text.blocks).collect();
        let mut first_computed = 0;
        // The first block's output, when the remaining blocks run and their residual is cached.
        let mut cache_head = None;
        if let Some(cache) = cache {
            let [(first, keys), .., _] = blocks.as_slice() else {
                bail!("the first block cache needs a transformer of two blocks or more")
            };
            let head = first.forward(&x, keys, &time_modulation, &rope)?;
            match cache.reusable(&(&head - &x)?)? {
                // The skipped blocks pass their input through; every hint is still added.
                Some(tail_residual) => {
                    self.cached_forwards
                        .fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                    x = (&head + tail_residual)?;
                    for layer in 0..blocks.len() {
                        x = add_hint(layer, x)?;
                    }
                    first_computed = blocks.len();
                }
                None => {
                    x = add_hint(0, head.clone())?;
                    cache_head = Some((cache, head));
                    first_computed = 1;
                }
            }
        }
        for (layer, (block, keys)) in blocks.iter().enumerate().skip(first_computed) {
            x = block.forward(&x, keys, &time_modulation, &rope)?;
            if layer + 1 == blocks.len()
                && let Some((cache, head)) = cache_head.take()
            {
                cache.store_tail((&x - head)?);
            }
            x = add_hint(layer, x)?;
        }

        let table = self
            .scale_shift_table
            .broadcast_add(&temb.to_dtype(DType::F32)?.unsqueeze(1)?)?;
        let shift = table.narrow(1, 0, 1)?.squeeze(1)?;
        let scale = (table.narrow(1, 1, 1)?.squeeze(1)? + 1.0)?;
        let x = layer_norm_affine(&x, &scale, &shift, self.config.eps)?.to_dtype(self.dtype)?;
        self.unpatchify(&self.proj_out.forward(&x)?, batch, grid)
    }

    /// Sinusoidal embedding -> `temb` `[n, dim]` (model dtype) and the block modulation
    /// `[n, 6, dim]` (f32), `n` = number of timesteps.
    fn embed_timestep(&self, timestep: &Tensor, batch: usize) -> Result<(Tensor, Tensor)> {
        let timesteps: Vec<f32> = timestep.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        if timesteps.len() != batch && timesteps.len() != 1 {
            bail!(
                "expected {batch} timesteps (or one), got {:?}",
                timestep.shape()
            )
        }
        let sinusoid = sinusoidal_embedding(
            &timesteps,
            self.config.freq_dim,
            self.scale_shift_table.device(),
        )?;
        let (linear_1, linear_2) = &self.time_embedder;
        let temb = linear_2
            .forward(&linear_1.forward(&sinusoid)?.silu()?)?
            .to_dtype(self.dtype)?;
        let dim = self.config.dim();
        let modulation =
            self.time_proj
                .forward(&temb.silu()?)?
                .reshape((timesteps.len(), 6, dim))?;
        Ok((temb, modulation.to_dtype(DType::F32)?))
    }

    fn start_vace<'a>(
        &self,
        vace: &'a Vace,
        control: &Tensor,
        scales: &[f64],
        latent_tokens: &Tensor,
        (frames, height, width): (usize, usize, usize),
    ) -> Result<VaceRun<'a>> {
        let vace_layers = vace.blocks.len();
        let scales = match scales.len() {
            1 => vec![scales[0]; vace_layers],
            n if n == vace_layers => scales.to_vec(),
            n => bail!(
                "got {n} VACE context scales for {vace_layers} VACE layers (give one per layer, or one)"
            ),
        };
        let (batch, _, control_frames, control_height, control_width) = control.dims5()?;
        let [pt, ph, pw] = self.config.patch_size;
        let (tokens, dim) = (latent_tokens.dim(1)?, latent_tokens.dim(2)?);
        if batch != latent_tokens.dim(0)?
            || (control_height / ph, control_width / pw) != (height, width)
            || control_frames / pt > frames
        {
            bail!(
                "VACE control {:?} does not fit the latent patch grid {frames}x{height}x{width} (batch {})",
                control.shape(),
                latent_tokens.dim(0)?
            )
        }
        let control_tokens = vace
            .patch_embedding
            .forward(&control.to_dtype(self.dtype)?)?;
        let missing = tokens - control_tokens.dim(1)?;
        let stream = if missing == 0 {
            control_tokens
        } else {
            let padding =
                Tensor::zeros((batch, missing, dim), self.dtype, control_tokens.device())?;
            Tensor::cat(&[control_tokens, padding], 1)?
        };
        Ok(VaceRun {
            vace,
            stream,
            latent_tokens: Some(latent_tokens.clone()),
            scales,
            next_hint: 0,
        })
    }

    /// `[B, L, pt * ph * pw * C]` -> `[B, C, F, H, W]`.
    fn unpatchify(
        &self,
        x: &Tensor,
        batch: usize,
        (gf, gh, gw): (usize, usize, usize),
    ) -> Result<Tensor> {
        let [pt, ph, pw] = self.config.patch_size;
        let channels = self.config.out_channels();
        x.reshape(vec![batch, gf, gh, gw, pt, ph, pw, channels])?
            .permute(vec![0, 7, 1, 4, 2, 5, 3, 6])?
            .reshape((batch, channels, gf * pt, gh * ph, gw * pw))
    }
}

/// diffusers `Timesteps(flip_sin_to_cos=True, downscale_freq_shift=0)`: `[cos, sin]` of
/// `t * 10000^(-i / half)`, zero-padded to an odd `dim`; f32 like the reference.
fn sinusoidal_embedding(
    timesteps: &[f32],
    dim: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = -(10_000f64.ln() as f32) * i as f32 / half as f32;
            (exponent as f64).exp() as f32
        })
        .collect();
    let mut embedding = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let args: Vec<f64> = freqs.iter().map(|&f| (t * f) as f64).collect();
        embedding.extend(args.iter().map(|a| a.cos() as f32));
        embedding.extend(args.iter().map(|a| a.sin() as f32));
        embedding.extend(std::iter::repeat_n(0f32, dim - 2 * half));
    }
    Tensor::from_vec(embedding, (timesteps.len(), dim), device)
}
