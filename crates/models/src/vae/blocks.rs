//! Building blocks shared by the encoder and decoder. Inputs and outputs are frames-first,
//! channels-last `[B, T, H, W, C]` (see `conv`).

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::conv::{CausalConv3d, FeatureCache, last_frames};

/// `WanRMS_norm` (channel-first in the reference, no bias): `x / max(||x||_2, 1e-12) * sqrt(C) * gamma`
/// over the channels, computed in f32.
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

    /// `x` is `[..., C]`, contiguous.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // x * sqrt(C) / ||x|| = x / rms(x): an RMS norm, whose epsilon of 1e-24 / C under the root
        // stands in for the reference's clamp of ||x|| at 1e-12 (they differ only near 1e-12).
        let gamma = self.gamma.to_dtype(DType::F32)?.reshape(self.channels)?;
        let eps = (1e-24 / self.channels as f64) as f32;
        candle_nn::ops::rms_norm(&x.to_dtype(DType::F32)?, &gamma, eps)?.to_dtype(x.dtype())
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
    /// 1x1 convolutions: `[3C, C, 1, 1]` / `[3C]` and `[C, C, 1, 1]` / `[C]`.
    to_qkv: (Tensor, Tensor),
    proj: (Tensor, Tensor),
    channels: usize,
}

impl AttentionBlock {
    pub(super) fn load(vb: VarBuilder, channels: usize) -> Result<Self> {
        let c = channels;
        Ok(Self {
            norm: ChannelRmsNorm::load(vb.pp("norm"), c, true)?,
            to_qkv: (
                vb.get((3 * c, c, 1, 1), "to_qkv.weight")?,
                vb.get(3 * c, "to_qkv.bias")?,
            ),
            proj: (
                vb.get((c, c, 1, 1), "proj.weight")?,
                vb.get(c, "proj.bias")?,
            ),
            channels,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, h, w, c) = x.dims5()?;
        let (frames, pixels) = (b * t, h * w);
        let normed = self.norm.forward(x)?.reshape((frames * pixels, c))?;
        let qkv = pointwise(&normed, &self.to_qkv)?.reshape((frames, pixels, 3 * c))?;
        let q = qkv.narrow(2, 0, c)?;
        let k = qkv.narrow(2, c, c)?;
        let v = qkv.narrow(2, 2 * c, c)?;
        let scores = (q.matmul(&k.transpose(1, 2)?)? * (1.0 / (self.channels as f64).sqrt()))?;
        let attended = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
        let out = pointwise(&attended.reshape((frames * pixels, c))?, &self.proj)?;
        out.reshape((b, t, h, w, c))? + x
    }
}

/// A 1x1 convolution on pixel rows `[P, C]` with a `[O, C, 1, 1]` weight: `[P, O]`.
fn pointwise(x: &Tensor, (weight, bias): &(Tensor, Tensor)) -> Result<Tensor> {
    let (out_c, in_c, _, _) = weight.dims4()?;
    x.matmul(&weight.reshape((out_c, in_c))?.t()?)?
        .broadcast_add(bias)
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
    upsample: bool,
    /// `resample.1`: the 3x3 convolution after nearest upsampling / the strided one.
    conv: CausalConv3d,
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
        let vb_conv = vb.pp("resample.1");
        let vb_time = vb.pp("time_conv");
        let (upsample, conv, time_conv) = match mode {
            ResampleMode::Upsample2d | ResampleMode::Upsample3d => (
                true,
                CausalConv3d::load_per_frame(vb_conv, dim, upsample_out_dim, 3, 1, (1, 1))?,
                (mode == ResampleMode::Upsample3d)
                    .then(|| CausalConv3d::load(vb_time, dim, 2 * dim, (3, 1), 1, (1, 0)))
                    .transpose()?,
            ),
            // ZeroPad2d((0, 1, 0, 1)) then a stride-2 convolution: one zero row / column after.
            ResampleMode::Downsample2d | ResampleMode::Downsample3d => (
                false,
                CausalConv3d::load_per_frame(vb_conv, dim, dim, 3, 2, (0, 1))?,
                (mode == ResampleMode::Downsample3d)
                    .then(|| CausalConv3d::load(vb_time, dim, dim, (3, 1), 2, (0, 0)))
                    .transpose()?,
            ),
        };
        Ok(Self {
            upsample,
            conv,
            time_conv,
        })
    }

    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        if self.upsample {
            let x = match &self.time_conv {
                Some(time_conv) => upsample_time(time_conv, x, cache)?,
                None => x.clone(),
            };
            self.conv.forward(&upsample_nearest(&x)?)
        } else {
            let x = self.conv.forward(x)?;
            match &self.time_conv {
                Some(time_conv) => downsample_time(time_conv, &x, cache),
                None => Ok(x),
            }
        }
    }
}

/// 2x nearest upsampling of every frame (nearest-exact at scale 2 is plain nearest).
fn upsample_nearest(x: &Tensor) -> Result<Tensor> {
    let (b, t, h, w, c) = x.dims5()?;
    x.reshape((b * t, h, 1, w, 1, c))?
        .broadcast_as((b * t, h, 2, w, 2, c))?
        .contiguous()?
        .reshape((b, t, 2 * h, 2 * w, c))
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
    let (b, t, h, w, c) = x.dims5()?;
    let doubled = time_conv.forward_cached(x, slot)?;
    // [B, T, H, W, (2, C)] -> [B, T, 2, H, W, C]: frame 2t + s is half s of output frame t.
    doubled
        .reshape((b, t, h, w, 2, c))?
        .permute((0, 1, 4, 2, 3, 5))?
        .contiguous()?
        .reshape((b, 2 * t, h, w, c))
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
