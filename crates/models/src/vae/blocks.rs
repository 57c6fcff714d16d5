//! Building blocks shared by the encoder and decoder. Inputs and outputs are frames-first
//! `[B, T, C, H, W]` (see `causal_conv`).

use candle_core::{DType, Result, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Module, VarBuilder};

use super::causal_conv::{
    CausalConv3d, FeatureCache, frames_to_images, images_to_frames, last_frames,
};

/// `WanRMS_norm` (channel-first, no bias): `x / max(||x||_2 over channels, 1e-12) * sqrt(C) * gamma`,
/// computed in f32.
pub(super) struct ChannelRmsNorm {
    /// Stored as `[C, 1, 1, 1]` (video layers) or `[C, 1, 1]` (attention).
    gamma: Tensor,
    channels: usize,
}

impl ChannelRmsNorm {
    pub(super) fn load(vb: VarBuilder, channels: usize, images: bool) -> Result<Self> {
        let gamma = if images {
            vb.get((channels, 1, 1), "gamma")?
        } else {
            vb.get((channels, 1, 1, 1), "gamma")?
        };
        Ok(Self { gamma, channels })
    }

    /// `x` is `[..., C, H, W]`.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let channel_dim = x.rank() - 3;
        let xf = x.to_dtype(DType::F32)?;
        let norm = xf.sqr()?.sum_keepdim(channel_dim)?.sqrt()?.maximum(1e-12)?;
        let gain = (self
            .gamma
            .to_dtype(DType::F32)?
            .reshape((self.channels, 1, 1))?
            * (self.channels as f64).sqrt())?;
        xf.broadcast_div(&norm)?
            .broadcast_mul(&gain)?
            .to_dtype(x.dtype())
    }
}

/// `WanResidualBlock`: two (RMS norm, SiLU, causal 3x3x3 conv) stages plus a 1x1x1 shortcut
/// when the width changes. Dropout is the identity at inference.
pub(super) struct ResidualBlock {
    norm1: ChannelRmsNorm,
    conv1: CausalConv3d,
    norm2: ChannelRmsNorm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

impl ResidualBlock {
    pub(super) fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        let shortcut = if in_dim != out_dim {
            Some(CausalConv3d::load(
                vb.pp("conv_shortcut"),
                in_dim,
                out_dim,
                (1, 1),
                1,
                (0, 0),
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: ChannelRmsNorm::load(vb.pp("norm1"), in_dim, false)?,
            conv1: CausalConv3d::load(vb.pp("conv1"), in_dim, out_dim, (3, 3), 1, (1, 1))?,
            norm2: ChannelRmsNorm::load(vb.pp("norm2"), out_dim, false)?,
            conv2: CausalConv3d::load(vb.pp("conv2"), out_dim, out_dim, (3, 3), 1, (1, 1))?,
            shortcut,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        let residual = match &self.shortcut {
            Some(conv) => conv.forward(x)?,
            None => x.clone(),
        };
        let h = self.norm1.forward(x)?.silu()?;
        let h = self.conv1.forward_cached(&h, cache.next_slot())?;
        let h = self.norm2.forward(&h)?.silu()?;
        let h = self.conv2.forward_cached(&h, cache.next_slot())?;
        h + residual
    }
}

/// `WanAttentionBlock`: single-head self-attention over the pixels of each frame.
pub(super) struct AttentionBlock {
    norm: ChannelRmsNorm,
    /// `[3C, C, 1, 1]` and `[3C]`.
    to_qkv_weight: Tensor,
    to_qkv_bias: Tensor,
    /// `[C, C, 1, 1]` and `[C]`.
    proj_weight: Tensor,
    proj_bias: Tensor,
    channels: usize,
}

impl AttentionBlock {
    pub(super) fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        Ok(Self {
            norm: ChannelRmsNorm::load(vb.pp("norm"), channels, true)?,
            to_qkv_weight: vb.get((3 * channels, channels, 1, 1), "to_qkv.weight")?,
            to_qkv_bias: vb.get(3 * channels, "to_qkv.bias")?,
            proj_weight: vb.get((channels, channels, 1, 1), "proj.weight")?,
            proj_bias: vb.get(channels, "proj.bias")?,
            channels,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let n = b * t;
        let pixels = h * w;
        let normed = self
            .norm
            .forward(&frames_to_images(x)?)?
            .reshape((n, c, pixels))?;
        // Channels-first projections: [N, 3C, HW] holds q^T, k^T, v^T stacked.
        let qkv_t = pointwise(&normed, &self.to_qkv_weight, &self.to_qkv_bias)?;
        let q = qkv_t.narrow(1, 0, c)?.transpose(1, 2)?;
        let k_t = qkv_t.narrow(1, c, c)?;
        let v_t = qkv_t.narrow(1, 2 * c, c)?;
        let scores = (q.matmul(&k_t)? * (1.0 / (self.channels as f64).sqrt()))?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        // (probs @ v)^T = v^T @ probs^T, kept channels-first for the output projection.
        let attended_t = v_t.matmul(&probs.transpose(1, 2)?)?;
        let out = pointwise(&attended_t, &self.proj_weight, &self.proj_bias)?;
        out.reshape((b, t, c, h, w))? + x
    }
}

/// A 1x1 convolution on `[N, C, P]` with a `[O, C, 1, 1]` weight: `[N, O, P]`.
fn pointwise(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (n, _, _) = x.dims3()?;
    let (out_c, in_c, _, _) = weight.dims4()?;
    let weight = weight.reshape((out_c, in_c))?.broadcast_left(n)?;
    weight.matmul(x)?.broadcast_add(&bias.reshape((out_c, 1))?)
}

/// `WanMidBlock`: residual, (attention, residual) x num_layers; the reference uses one layer.
pub(super) struct MidBlock {
    first: ResidualBlock,
    layers: Vec<(AttentionBlock, ResidualBlock)>,
}

impl MidBlock {
    pub(super) fn load(vb: VarBuilder, dim: usize) -> Result<Self> {
        const NUM_LAYERS: usize = 1;
        let first = ResidualBlock::load(vb.pp("resnets.0"), dim, dim)?;
        let layers = (0..NUM_LAYERS)
            .map(|i| {
                Ok((
                    AttentionBlock::load(vb.pp(format!("attentions.{i}")), dim)?,
                    ResidualBlock::load(vb.pp(format!("resnets.{}", i + 1)), dim, dim)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self { first, layers })
    }

    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        let mut x = self.first.forward(x, cache)?;
        for (attention, residual) in &self.layers {
            x = residual.forward(&attention.forward(&x)?, cache)?;
        }
        Ok(x)
    }
}

/// The variants of `WanResample` used by the Wan2.1 encoder / decoder.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum ResampleMode {
    Upsample2d,
    Upsample3d,
    Downsample2d,
    Downsample3d,
}

/// `WanResample`: 2x spatial resampling of every frame, plus, in the 3d modes, 2x temporal
/// resampling by a causal (3, 1, 1) convolution (`time_conv`).
pub(super) struct Resample {
    mode: ResampleMode,
    /// `resample.1`: the 3x3 convolution after nearest upsampling / before striding.
    conv: Conv2d,
    time_conv: Option<CausalConv3d>,
}

impl Resample {
    /// `upsample_out_dim` is the upsampling convolution's width (the reference default `dim / 2`).
    pub(super) fn load(
        vb: VarBuilder,
        dim: usize,
        mode: ResampleMode,
        upsample_out_dim: usize,
    ) -> Result<Self> {
        let (conv_out, conv_config) = match mode {
            ResampleMode::Upsample2d | ResampleMode::Upsample3d => (
                upsample_out_dim,
                Conv2dConfig {
                    padding: 1,
                    ..Default::default()
                },
            ),
            ResampleMode::Downsample2d | ResampleMode::Downsample3d => (
                dim,
                Conv2dConfig {
                    stride: 2,
                    ..Default::default()
                },
            ),
        };
        let conv = candle_nn::conv2d(dim, conv_out, 3, conv_config, vb.pp("resample.1"))?;
        let time_conv = match mode {
            ResampleMode::Upsample3d => Some(CausalConv3d::load(
                vb.pp("time_conv"),
                dim,
                2 * dim,
                (3, 1),
                1,
                (1, 0),
            )?),
            ResampleMode::Downsample3d => Some(CausalConv3d::load(
                vb.pp("time_conv"),
                dim,
                dim,
                (3, 1),
                2,
                (0, 0),
            )?),
            ResampleMode::Upsample2d | ResampleMode::Downsample2d => None,
        };
        Ok(Self {
            mode,
            conv,
            time_conv,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        let x = match (&self.time_conv, self.mode) {
            (Some(time_conv), ResampleMode::Upsample3d) => upsample_time(time_conv, x, cache)?,
            _ => x.clone(),
        };
        let batch = x.dim(0)?;
        let images = frames_to_images(&x)?;
        let images = match self.mode {
            ResampleMode::Upsample2d | ResampleMode::Upsample3d => {
                let (_, _, h, w) = images.dims4()?;
                // Nearest-exact at scale 2 is plain nearest: source index = target index / 2.
                images.upsample_nearest2d(2 * h, 2 * w)?
            }
            // ZeroPad2d((0, 1, 0, 1)): one zero column on the right, one zero row at the bottom.
            ResampleMode::Downsample2d | ResampleMode::Downsample3d => {
                images.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?
            }
        };
        let x = images_to_frames(&self.conv.forward(&images)?, batch)?;
        match (&self.time_conv, self.mode) {
            (Some(time_conv), ResampleMode::Downsample3d) => downsample_time(time_conv, &x, cache),
            _ => Ok(x),
        }
    }
}

/// Doubles the frame count: each frame becomes the two halves of a causal (3, 1, 1) conv's
/// 2C channels. The very first chunk passes through unchanged (so one latent frame decodes to
/// one frame); later chunks form a causal stream that starts with zero past.
fn upsample_time(time_conv: &CausalConv3d, x: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
    let first_chunk = cache.is_first_chunk();
    let slot = cache.next_slot();
    if first_chunk {
        return Ok(x.clone());
    }
    let (b, t, c, h, w) = x.dims5()?;
    let doubled = time_conv.forward_cached(x, slot)?;
    // [B, T, 2, C, H, W] -> [B, 2T, C, H, W]: frame 2t + s is half s of output frame t.
    doubled.reshape((b, 2 * t, c, h, w))
}

/// Halves the frame count with a stride-2 (3, 1, 1) conv over the previous chunk's last frame
/// followed by this chunk. The very first chunk (the first frame) passes through unchanged.
fn downsample_time(
    time_conv: &CausalConv3d,
    x: &Tensor,
    cache: &mut FeatureCache,
) -> Result<Tensor> {
    let slot = cache.next_slot();
    let out = match slot.as_ref() {
        None => x.clone(),
        Some(previous) => time_conv.forward(&Tensor::cat(&[previous, x], 1)?)?,
    };
    *slot = Some(last_frames(None, x, 1)?);
    Ok(out)
}
