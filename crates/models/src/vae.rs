//! Wan2.1 video VAE, matching `diffusers.AutoencoderKLWan` (diffusers 0.42.1).
//!
//! Causal in time: the encoder sees the first frame alone, then chunks of 4 frames; the decoder
//! sees one latent frame at a time. Every causal convolution carries its last frames from chunk
//! to chunk (the reference's feature cache), so results match the reference's chunked path.
//! The Wan2.2 variants (`is_residual`, `patch_size`) are refused.

mod blocks;
mod conv;
mod decoder;
mod encoder;
mod tiling;

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use conv::{CausalConv3d, FeatureCache};
use decoder::Decoder;
use encoder::Encoder;
use tiling::Direction;
pub use tiling::Tiling;

/// Frames the encoder processes per chunk after the first frame (hard-coded in the reference).
const ENCODE_CHUNK_FRAMES: usize = 4;

/// `config.json` of `AutoencoderKLWan`. Missing fields take the reference defaults (Wan2.1).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    pub base_dim: usize,
    /// Decoder width when it differs from the encoder's (`None`: `base_dim`).
    pub decoder_base_dim: Option<usize>,
    pub z_dim: usize,
    pub dim_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Levels (1, 1/2, 1/4, ...) whose encoder down blocks get attention (see `encode`).
    pub attn_scales: Vec<f64>,
    /// Per encoder level (but the last): downsample time as well as space.
    pub temperal_downsample: Vec<bool>,
    /// Training only.
    pub dropout: f64,
    pub latents_mean: Vec<f64>,
    pub latents_std: Vec<f64>,
    /// Wan2.2 residual up/down blocks: not implemented.
    pub is_residual: bool,
    pub in_channels: usize,
    pub out_channels: usize,
    /// Wan2.2 pixel patchification: not implemented (1 / absent only).
    pub patch_size: Option<usize>,
    /// Informational (used by pipelines); the architecture fields decide the real factors.
    pub scale_factor_temporal: Option<usize>,
    pub scale_factor_spatial: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            base_dim: 96,
            decoder_base_dim: None,
            z_dim: 16,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            attn_scales: vec![],
            temperal_downsample: vec![false, true, true],
            dropout: 0.0,
            latents_mean: vec![
                -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508, 0.4134,
                -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
            ],
            latents_std: vec![
                2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743, 3.2687, 2.1526,
                2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.916,
            ],
            is_residual: false,
            in_channels: 3,
            out_channels: 3,
            patch_size: None,
            scale_factor_temporal: Some(4),
            scale_factor_spatial: Some(8),
        }
    }
}

impl Config {
    /// Rejects variants this implementation does not cover and configs the reference cannot build.
    pub fn validate(&self) -> Result<()> {
        if self.is_residual {
            candle_core::bail!("AutoencoderKLWan: is_residual (the Wan2.2 VAE) is not supported")
        }
        if let Some(p) = self.patch_size.filter(|&p| p != 1) {
            candle_core::bail!("AutoencoderKLWan: patch_size {p} (the Wan2.2 VAE) is not supported")
        }
        if self.dim_mult.is_empty() || self.dim_mult.contains(&0) {
            candle_core::bail!(
                "AutoencoderKLWan: dim_mult must be non-empty and positive, got {:?}",
                self.dim_mult
            )
        }
        if self.base_dim == 0 || self.decoder_base_dim == Some(0) || self.z_dim == 0 {
            candle_core::bail!(
                "AutoencoderKLWan: base_dim, decoder_base_dim and z_dim must be positive"
            )
        }
        if self.temperal_downsample.len() + 1 < self.dim_mult.len() {
            candle_core::bail!(
                "AutoencoderKLWan: temperal_downsample needs {} entries (one per level but the last), got {}",
                self.dim_mult.len() - 1,
                self.temperal_downsample.len()
            )
        }
        Ok(())
    }

    /// Spatial size ratio between pixels and latents: 2 per level but the last.
    pub fn spatial_compression(&self) -> usize {
        1 << (self.dim_mult.len() - 1)
    }

    /// Frame ratio between the encoder's input and its latents (4 for Wan2.1).
    pub fn temporal_compression(&self) -> usize {
        1 << self.encoder_temporal_downsamples()
    }

    /// Latent frames the encoder makes of `frames` video frames, which must be 4n + 1 (the
    /// first frame alone, then chunks of 4).
    pub fn latent_frames(&self, frames: usize) -> Result<usize> {
        if frames == 0 || !(frames - 1).is_multiple_of(ENCODE_CHUNK_FRAMES) {
            candle_core::bail!("AutoencoderKLWan: frame count must be 4n + 1, got {frames}")
        }
        Ok(1 + (frames - 1) / self.temporal_compression())
    }

    fn encoder_temporal_downsamples(&self) -> usize {
        self.temperal_downsample[..self.dim_mult.len() - 1]
            .iter()
            .filter(|&&t| t)
            .count()
    }
}

/// `AutoencoderKLWan` (Wan2.1). Tensor names are the reference's: `encoder.*`, `quant_conv.*`,
/// `post_quant_conv.*`, `decoder.*`.
pub struct AutoencoderKLWan {
    encoder: Encoder,
    quant_conv: CausalConv3d,
    post_quant_conv: CausalConv3d,
    decoder: Decoder,
    config: Config,
    dtype: DType,
}

impl AutoencoderKLWan {
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        config.validate()?;
        let z = config.z_dim;
        Ok(Self {
            encoder: Encoder::load(vb.pp("encoder"), config)?,
            quant_conv: CausalConv3d::load(vb.pp("quant_conv"), 2 * z, 2 * z, (1, 1), 1, (0, 0))?,
            post_quant_conv: CausalConv3d::load(vb.pp("post_quant_conv"), z, z, (1, 1), 1, (0, 0))?,
            decoder: Decoder::load(vb.pp("decoder"), config)?,
            config: config.clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Video `[B, in_channels, F, H, W]` in [-1, 1] (F = 4n + 1, H and W multiples of the spatial
    /// compression) -> the posterior mode (mean) `[B, z_dim, latent_frames(F), H/8, W/8]`,
    /// un-normalised, as `vae.encode(x).latent_dist.mode()`. Computed in the weights' dtype.
    pub fn encode(&self, video: &Tensor) -> Result<Tensor> {
        Ok(self
            .encode_until(video, None, &|| false)?
            .expect("never stopped"))
    }

    /// [`Self::encode`] in overlapping spatial tiles, as diffusers' `encode` after
    /// `enable_tiling` (`tiled_encode`): bounded memory at any frame size.
    pub fn encode_tiled(&self, video: &Tensor, tiling: &Tiling) -> Result<Tensor> {
        Ok(self
            .encode_until(video, Some(tiling), &|| false)?
            .expect("never stopped"))
    }

    /// [`Self::encode`], or [`Self::encode_tiled`] with `tiling`, polling `stop` before each
    /// chunk of frames: `None` once it says stop.
    pub fn encode_until(
        &self,
        video: &Tensor,
        tiling: Option<&Tiling>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Tensor>> {
        let (_, channels, frames, height, width) = video.dims5()?;
        let config = &self.config;
        if channels != config.in_channels {
            candle_core::bail!(
                "AutoencoderKLWan::encode: {channels} channels, expected {}",
                config.in_channels
            )
        }
        config.latent_frames(frames)?;
        let spatial = config.spatial_compression();
        if height % spatial != 0 || width % spatial != 0 || height == 0 || width == 0 {
            candle_core::bail!(
                "AutoencoderKLWan::encode: height and width must be multiples of {spatial}, got {height}x{width}"
            )
        }
        if frames > 1 && config.encoder_temporal_downsamples() > 2 {
            candle_core::bail!(
                "AutoencoderKLWan::encode: more than 2 temporal downsamples cannot run on chunks of 4 frames"
            )
        }
        let x = to_channels_last(&video.to_dtype(self.dtype)?)?;
        let encode_tile = |tile: &Tensor| self.encode_tile(tile, stop);
        let moments = match tiling {
            None => encode_tile(&x)?,
            Some(tiling) => {
                let grid = tiling.grid(spatial, Direction::Encode)?;
                grid.run(&x, (height / spatial, width / spatial), &encode_tile)?
            }
        };
        // The mean is the first half of the channels (`DiagonalGaussianDistribution`).
        moments
            .map(|m| to_channels_first(&m.narrow(4, 0, config.z_dim)?))
            .transpose()
    }

    /// The encoder's moments `[B, T', h, w, 2 z]` of channels-last frames `[B, F, H, W, C]`
    /// (one tile, or the whole frames), with a fresh causal cache: the first frame alone, then
    /// chunks of 4, as the reference. `None` once `stop` says stop.
    fn encode_tile(&self, x: &Tensor, stop: &dyn Fn() -> bool) -> Result<Option<Tensor>> {
        let frames = x.dim(1)?;
        let mut cache = FeatureCache::new();
        let mut chunks = Vec::with_capacity(1 + (frames - 1) / ENCODE_CHUNK_FRAMES);
        let mut start = 0;
        while start < frames {
            let len = if start == 0 { 1 } else { ENCODE_CHUNK_FRAMES };
            if stop() {
                return Ok(None);
            }
            cache.begin_chunk();
            chunks.push(
                self.encoder
                    .forward(&x.narrow(1, start, len)?, &mut cache)?,
            );
            start += len;
        }
        self.quant_conv.forward(&Tensor::cat(&chunks, 1)?).map(Some)
    }

    /// Latents `[B, z_dim, T, h, w]` (un-normalised) -> video `[B, out_channels, F, 8h, 8w]`
    /// clamped to [-1, 1], as `vae.decode(z).sample`. Computed in the weights' dtype.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        Ok(self
            .decode_until(latents, None, &|| false)?
            .expect("never stopped"))
    }

    /// [`Self::decode`] in overlapping spatial tiles, as diffusers' `decode` after
    /// `enable_tiling` (`tiled_decode`): bounded memory at any frame size.
    pub fn decode_tiled(&self, latents: &Tensor, tiling: &Tiling) -> Result<Tensor> {
        Ok(self
            .decode_until(latents, Some(tiling), &|| false)?
            .expect("never stopped"))
    }

    /// [`Self::decode`], or [`Self::decode_tiled`] with `tiling`, polling `stop` before each
    /// latent frame: `None` once it says stop.
    pub fn decode_until(
        &self,
        latents: &Tensor,
        tiling: Option<&Tiling>,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Tensor>> {
        let (_, channels, frames, height, width) = latents.dims5()?;
        if channels != self.config.z_dim {
            candle_core::bail!(
                "AutoencoderKLWan::decode: {channels} latent channels, expected {}",
                self.config.z_dim
            )
        }
        if frames == 0 || height == 0 || width == 0 {
            candle_core::bail!(
                "AutoencoderKLWan::decode: empty latents {:?}",
                latents.dims()
            )
        }
        let z = to_channels_last(&latents.to_dtype(self.dtype)?)?;
        let decode_tile = |tile: &Tensor| self.decode_tile(tile, stop);
        let video = match tiling {
            None => decode_tile(&z)?,
            Some(tiling) => {
                let spatial = self.config.spatial_compression();
                let grid = tiling.grid(spatial, Direction::Decode)?;
                grid.run(&z, (height * spatial, width * spatial), &decode_tile)?
            }
        };
        video
            .map(|v| to_channels_first(&v.clamp(-1f32, 1f32)?))
            .transpose()
    }

    /// Unclamped frames `[B, F, H, W, C]` of channels-last latents `[B, T, h, w, z]` (one tile,
    /// or the whole frames), with a fresh causal cache: one latent frame at a time, as the
    /// reference. `None` once `stop` says stop.
    fn decode_tile(&self, z: &Tensor, stop: &dyn Fn() -> bool) -> Result<Option<Tensor>> {
        // Pointwise in space and time: per tile or per frame, the same values.
        let z = self.post_quant_conv.forward(z)?;
        let frames = z.dim(1)?;
        let mut cache = FeatureCache::new();
        let mut chunks = Vec::with_capacity(frames);
        for i in 0..frames {
            if stop() {
                return Ok(None);
            }
            cache.begin_chunk();
            chunks.push(self.decoder.forward(&z.narrow(1, i, 1)?, &mut cache)?);
        }
        Tensor::cat(&chunks, 1).map(Some)
    }

    /// `(z - mean) * (1 / std)` per channel, in f32 like the Wan pipelines; `z` is `[B, z_dim, ...]`.
    pub fn normalize_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let (mean, inv_std) = self.latent_stats(latents)?;
        latents
            .to_dtype(DType::F32)?
            .broadcast_sub(&mean)?
            .broadcast_mul(&inv_std)?
            .to_dtype(latents.dtype())
    }

    /// `z / (1 / std) + mean` per channel, in f32 like the Wan pipelines.
    pub fn denormalize_latents(&self, latents: &Tensor) -> Result<Tensor> {
        let (mean, inv_std) = self.latent_stats(latents)?;
        latents
            .to_dtype(DType::F32)?
            .broadcast_div(&inv_std)?
            .broadcast_add(&mean)?
            .to_dtype(latents.dtype())
    }

    /// `latents_mean` and `1 / latents_std` as f32, shaped to broadcast over `latents`' channel dim.
    fn latent_stats(&self, latents: &Tensor) -> Result<(Tensor, Tensor)> {
        let config = &self.config;
        let z = config.z_dim;
        if config.latents_mean.len() != z || config.latents_std.len() != z {
            candle_core::bail!(
                "AutoencoderKLWan: latents_mean / latents_std have {} / {} entries for z_dim {z}",
                config.latents_mean.len(),
                config.latents_std.len()
            )
        }
        if latents.rank() < 2 || latents.dim(1)? != z {
            candle_core::bail!(
                "AutoencoderKLWan: latents {:?} do not have {z} channels in dim 1",
                latents.dims()
            )
        }
        let mut shape = vec![1; latents.rank()];
        shape[1] = z;
        let mean: Vec<f32> = config.latents_mean.iter().map(|&m| m as f32).collect();
        let inv_std: Vec<f32> = config.latents_std.iter().map(|&s| 1.0 / s as f32).collect();
        let device = latents.device();
        Ok((
            Tensor::from_vec(mean, shape.clone(), device)?,
            Tensor::from_vec(inv_std, shape, device)?,
        ))
    }
}

/// `[B, C, T, H, W]` (the reference layout) -> `[B, T, H, W, C]` (the internal one, see `conv`).
fn to_channels_last(x: &Tensor) -> Result<Tensor> {
    x.permute((0, 2, 3, 4, 1))?.contiguous()
}

/// `[B, T, H, W, C]` -> `[B, C, T, H, W]`.
fn to_channels_first(x: &Tensor) -> Result<Tensor> {
    x.permute((0, 4, 1, 2, 3))?.contiguous()
}
