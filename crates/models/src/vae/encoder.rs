//! `WanEncoder3d` (Wan2.1 layout: plain residual down blocks).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::Config;
use super::blocks::{
    AttentionBlock, ChannelRmsNorm, MidBlock, Resample, ResampleMode, ResidualBlock,
};
use super::conv::{CausalConv3d, FeatureCache};

/// One entry of the reference's flat `down_blocks` list.
enum DownLayer {
    Residual(ResidualBlock),
    /// Present when `attn_scales` selects a level; the reference encoder cannot run these (it
    /// hands them the feature cache), so they are loaded but refused at encode time.
    Attention,
    Resample(Resample),
}

pub(super) struct Encoder {
    conv_in: CausalConv3d,
    down_blocks: Vec<DownLayer>,
    mid_block: MidBlock,
    norm_out: ChannelRmsNorm,
    conv_out: CausalConv3d,
}

impl Encoder {
    /// Outputs `2 * z_dim` channels (mean and log-variance).
    pub(super) fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
        let dim = config.base_dim;
        let dims: Vec<usize> = std::iter::once(1)
            .chain(config.dim_mult.iter().copied())
            .map(|m| dim * m)
            .collect();
        let levels = config.dim_mult.len();
        let conv_in = CausalConv3d::load(
            vb.pp("conv_in"),
            config.in_channels,
            dims[0],
            (3, 3),
            1,
            (1, 1),
        )?;

        let vb_down = vb.pp("down_blocks");
        let mut down_blocks = Vec::new();
        let mut scale = 1.0;
        for level in 0..levels {
            let mut in_dim = dims[level];
            let out_dim = dims[level + 1];
            for _ in 0..config.num_res_blocks {
                let vb_layer = vb_down.pp(down_blocks.len());
                down_blocks.push(DownLayer::Residual(ResidualBlock::load(
                    vb_layer, in_dim, out_dim,
                )?));
                if config.attn_scales.contains(&scale) {
                    // Loaded so that the tensor names are checked, unused (see `DownLayer`).
                    AttentionBlock::load(vb_down.pp(down_blocks.len()), out_dim)?;
                    down_blocks.push(DownLayer::Attention);
                }
                in_dim = out_dim;
            }
            if level != levels - 1 {
                let mode = if config.temperal_downsample[level] {
                    ResampleMode::Downsample3d
                } else {
                    ResampleMode::Downsample2d
                };
                let vb_layer = vb_down.pp(down_blocks.len());
                down_blocks.push(DownLayer::Resample(Resample::load(
                    vb_layer,
                    out_dim,
                    mode,
                    out_dim / 2,
                )?));
                scale /= 2.0;
            }
        }
        let out_dim = dims[levels];
        Ok(Self {
            conv_in,
            down_blocks,
            mid_block: MidBlock::load(vb.pp("mid_block"), out_dim)?,
            norm_out: ChannelRmsNorm::load(vb.pp("norm_out"), out_dim, false)?,
            conv_out: CausalConv3d::load(
                vb.pp("conv_out"),
                out_dim,
                2 * config.z_dim,
                (3, 3),
                1,
                (1, 1),
            )?,
        })
    }

    /// One chunk of frames `[B, T, C, H, W]` (the cache carries the causal past).
    pub(super) fn forward(&self, x: &Tensor, cache: &mut FeatureCache) -> Result<Tensor> {
        let mut x = self.conv_in.forward_cached(x, cache.next_slot())?;
        for layer in &self.down_blocks {
            x = match layer {
                DownLayer::Residual(block) => block.forward(&x, cache)?,
                DownLayer::Resample(resample) => resample.forward(&x, cache)?,
                DownLayer::Attention => candle_core::bail!(
                    "AutoencoderKLWan: attention in the encoder's down blocks (non-empty attn_scales) \
                     is not supported; the reference encoder cannot run it either"
                ),
            };
        }
        let x = self.mid_block.forward(&x, cache)?;
        let x = self.norm_out.forward(&x)?.silu()?;
        self.conv_out.forward_cached(&x, cache.next_slot())
    }
}
