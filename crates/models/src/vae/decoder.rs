//! `WanDecoder3d` (Wan2.1 layout: `WanUpBlock`s, no attention outside the mid block).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::Config;
use super::blocks::{ChannelRmsNorm, MidBlock, Resample, ResampleMode, ResidualBlock};
use super::conv::{CausalConv3d, FeatureCache};

/// `WanUpBlock`: `num_res_blocks + 1` residual blocks, then an optional 2x upsampler.
struct UpBlock {
    resnets: Vec<ResidualBlock>,
    upsampler: Option<Resample>,
}

impl UpBlock {
    fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        let mut x = x.clone();
        for resnet in &self.resnets {
            x = resnet.forward(&x, cache)?;
        }
        match &self.upsampler {
            Some(upsampler) => upsampler.forward(&x, cache),
            None => Ok(x),
        }
    }
}

pub(super) struct Decoder {
    conv_in: CausalConv3d,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    norm_out: ChannelRmsNorm,
    conv_out: CausalConv3d,
}

impl Decoder {
    pub(super) fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let dim = config.decoder_base_dim.unwrap_or(config.base_dim);
        let levels = config.dim_mult.len();
        // Widths from the bottleneck up: [mult[-1], mult[-1], ..., mult[0]] * dim.
        let dims: Vec<usize> = std::iter::once(config.dim_mult[levels - 1])
            .chain(config.dim_mult.iter().rev().copied())
            .map(|m| dim * m)
            .collect();
        // The encoder's temporal pattern, reversed (`temperal_upsample` in the reference).
        let temporal_upsample: Vec<bool> =
            config.temperal_downsample.iter().rev().copied().collect();

        let vb_up = vb.pp("up_blocks");
        let mut up_blocks = Vec::with_capacity(levels);
        for level in 0..levels {
            // Every upsampler halves the width, so the blocks after the first start at half.
            let in_dim = if level > 0 {
                dims[level] / 2
            } else {
                dims[level]
            };
            let out_dim = dims[level + 1];
            let vb_block = vb_up.pp(level);
            let resnets = (0..=config.num_res_blocks)
                .map(|i| {
                    let block_in = if i == 0 { in_dim } else { out_dim };
                    ResidualBlock::load(vb_block.pp(format!("resnets.{i}")), block_in, out_dim)
                })
                .collect::<Result<_>>()?;
            let upsampler = if level != levels - 1 {
                let mode = if temporal_upsample[level] {
                    ResampleMode::Upsample3d
                } else {
                    ResampleMode::Upsample2d
                };
                Some(Resample::load(
                    vb_block.pp("upsamplers.0"),
                    out_dim,
                    mode,
                    out_dim / 2,
                )?)
            } else {
                None
            };
            up_blocks.push(UpBlock { resnets, upsampler });
        }
        let out_dim = dims[levels];
        Ok(Self {
            conv_in: CausalConv3d::load(
                vb.pp("conv_in"),
                config.z_dim,
                dims[0],
                (3, 3),
                1,
                (1, 1),
            )?,
            mid_block: MidBlock::load(vb.pp("mid_block"), dims[0])?,
            up_blocks,
            norm_out: ChannelRmsNorm::load(vb.pp("norm_out"), out_dim, false)?,
            conv_out: CausalConv3d::load(
                vb.pp("conv_out"),
                out_dim,
                config.out_channels,
                (3, 3),
                1,
                (1, 1),
            )?,
        })
    }

    /// One latent frame `[B, 1, z, h, w]` (the cache carries the causal past).
    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        let x = self.conv_in.forward_cached(x, cache.next_slot())?;
        let mut x = self.mid_block.forward(&x, cache)?;
        for block in &self.up_blocks {
            x = block.forward(&x, cache)?;
        }
        let x = self.norm_out.forward(&x)?.silu()?;
        self.conv_out.forward_cached(&x, cache.next_slot())
    }
}
