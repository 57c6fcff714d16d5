//! Causal 3D convolution (`WanCausalConv3d`) and the per-call feature cache that lets a video be
//! processed chunk by chunk exactly as the reference does.
//!
//! Activations inside the VAE are kept frames-first, `[B, T, C, H, W]`: every frame is then a
//! contiguous `[C, H, W]` image, so per-frame 2D ops (spatial convolutions, norms, attention)
//! see a free `[B*T, C, H, W]` reshape and time slicing stays contiguous for B = 1.

use candle_core::{IndexOp, Result, Tensor};
use candle_nn::VarBuilder;

/// `[B, T, C, H, W]` -> `[B*T, C, H, W]`.
pub(super) fn frames_to_images(x: &Tensor) -> Result<Tensor> {
    let (b, t, c, h, w) = x.dims5()?;
    x.reshape((b * t, c, h, w))
}

/// `[B*T, C, H, W]` -> `[B, T, C, H, W]`.
pub(super) fn images_to_frames(x: &Tensor, batch: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((batch, n / batch, c, h, w))
}

/// The last `count` frames of the stream `previous ++ x` (fewer when the stream is shorter),
/// copied out so that a cached slice does not keep the whole chunk alive.
pub(super) fn last_frames(previous: Option<&Tensor>, x: &Tensor, count: usize) -> Result<Tensor> {
    let t = x.dim(1)?;
    if t >= count {
        return if t == count {
            Ok(x.clone())
        } else {
            x.narrow(1, t - count, count)?.copy()
        };
    }
    match previous {
        Some(prev) => {
            let keep = (count - t).min(prev.dim(1)?);
            let prev_tail = prev.narrow(1, prev.dim(1)? - keep, keep)?;
            Tensor::cat(&[&prev_tail, x], 1)
        }
        None => Ok(x.clone()),
    }
}

/// State of the cached convolutions while one video is encoded or decoded chunk by chunk (the
/// reference's `feat_cache` / `feat_idx`): one slot per cached layer, visited in execution order.
pub(super) struct FeatureCache {
    slots: Vec<Option<Tensor>>,
    cursor: usize,
    chunks_started: usize,
}

impl FeatureCache {
    pub(super) fn new() -> Self {
        Self {
            slots: Vec::new(),
            cursor: 0,
            chunks_started: 0,
        }
    }

    /// Starts the next chunk: layers will see their slots again from the first one.
    pub(super) fn begin_chunk(&mut self) {
        self.cursor = 0;
        self.chunks_started += 1;
    }

    pub(super) fn is_first_chunk(&self) -> bool {
        self.chunks_started <= 1
    }

    /// The slot of the next cached layer (empty on the first chunk).
    pub(super) fn next_slot(&mut self) -> &mut Option<Tensor> {
        if self.cursor == self.slots.len() {
            self.slots.push(None);
        }
        self.cursor += 1;
        &mut self.slots[self.cursor - 1]
    }
}

/// `WanCausalConv3d`: a Conv3d whose time padding is all on the past side (2 * padding_t zero
/// frames, replaced by cached frames of the previous chunk when there are any).
///
/// Built from 2D convolutions, one per time tap: output frame j is
/// `bias + sum_k conv2d(frame[j * stride_t + k], weight[:, :, k])` over the left-padded stream.
pub(super) struct CausalConv3d {
    /// `[out, in, kt, kh, kw]`, as stored.
    weight: Tensor,
    bias: Tensor,
    time_stride: usize,
    /// Frames of past context the convolution reads (its causal padding).
    context: usize,
    spatial_padding: usize,
}

impl CausalConv3d {
    /// `kernel` is (kt, ks) with a square spatial kernel; `padding` is (padding_t, padding_s) as
    /// given to the reference module (the time padding is doubled and moved to the past).
    pub(super) fn load(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        time_stride: usize,
        padding: (usize, usize),
    ) -> Result<Self> {
        let (kt, ks) = kernel;
        let weight = vb.get((out_channels, in_channels, kt, ks, ks), "weight")?;
        let bias = vb.get(out_channels, "bias")?;
        Ok(Self {
            weight,
            bias,
            time_stride,
            context: 2 * padding.0,
            spatial_padding: padding.1,
        })
    }

    /// Convolves `x` `[B, T, C, H, W]` preceded by `history` (the last frames of the same stream,
    /// at most `context` of them); the missing past is zeros.
    pub(super) fn forward_with_history(
        &self,
        history: Option<&Tensor>,
        x: &Tensor,
    ) -> Result<Tensor> {
        let (kt, stride) = (self.weight.dim(2)?, self.time_stride);
        let known = history.map_or(Ok(0), |h| h.dim(1))?;
        if known > self.context {
            candle_core::bail!(
                "causal conv: {known} cached frames for a context of {}",
                self.context
            )
        }
        // Frame indices below refer to the padded stream: `missing` zeros, history, x.
        let missing = self.context - known;
        let padded_len = missing + known + x.dim(1)?;
        if padded_len < kt {
            candle_core::bail!("causal conv: {padded_len} frames for a temporal kernel of {kt}")
        }
        let out_frames = (padded_len - kt) / stride + 1;
        // Taps that read only padding for every output frame contribute exactly zero: skip them,
        // and materialise only the zero frames that the remaining taps read.
        let last_out = (out_frames - 1) * stride;
        let taps: Vec<usize> = (0..kt).filter(|k| k + last_out >= missing).collect();
        let Some(&first_tap) = taps.first() else {
            candle_core::bail!("causal conv: every output frame reads only padding")
        };
        let zeros_needed = missing.saturating_sub(first_tap);
        let skipped = missing - zeros_needed;
        let mut parts = Vec::with_capacity(3);
        if zeros_needed > 0 {
            let (b, _, c, h, w) = x.dims5()?;
            parts.push(Tensor::zeros(
                (b, zeros_needed, c, h, w),
                x.dtype(),
                x.device(),
            )?);
        }
        parts.extend(history.cloned());
        parts.push(x.clone());
        let stream = if parts.len() == 1 {
            x.clone()
        } else {
            Tensor::cat(&parts, 1)?
        };

        let tap_output = |k: usize| -> Result<Tensor> {
            let frames = select_frames(&stream, k - skipped, stride, out_frames)?;
            self.conv_tap(&frames_to_images(&frames)?, k)
        };
        let mut sum = tap_output(first_tap)?;
        for &k in &taps[1..] {
            sum = (sum + tap_output(k)?)?;
        }
        let out = sum.broadcast_add(&self.bias.reshape((self.bias.dim(0)?, 1, 1))?)?;
        images_to_frames(&out, x.dim(0)?)
    }

    /// Non-cached call: the whole input is one chunk with a zero past.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with_history(None, x)
    }

    /// Cached call: reads the past from `slot` and leaves the last `context` frames of the stream
    /// there for the next chunk.
    pub(super) fn forward_cached(&self, x: &Tensor, slot: &mut Option<Tensor>) -> Result<Tensor> {
        let y = self.forward_with_history(slot.as_ref(), x)?;
        *slot = Some(last_frames(slot.as_ref(), x, self.context)?);
        Ok(y)
    }

    /// One temporal tap of the kernel over frames given as images `[N, C, H, W]`.
    fn conv_tap(&self, images: &Tensor, tap: usize) -> Result<Tensor> {
        let kernel = self.weight.i((.., .., tap))?;
        let (out_c, in_c, kh, kw) = kernel.dims4()?;
        if kh == 1 && kw == 1 && self.spatial_padding == 0 {
            // A pointwise convolution is a matmul over the flattened pixels.
            let (n, c, h, w) = images.dims4()?;
            let kernel = kernel.reshape((out_c, in_c))?.broadcast_left(n)?;
            kernel
                .matmul(&images.reshape((n, c, h * w))?)?
                .reshape((n, out_c, h, w))
        } else {
            images.conv2d(&kernel, self.spatial_padding, 1, 1, 1)
        }
    }
}

/// Frames `start, start + stride, ...` (`count` of them) of `x` `[B, T, ...]`.
fn select_frames(x: &Tensor, start: usize, stride: usize, count: usize) -> Result<Tensor> {
    if stride == 1 || count == 1 {
        return x.narrow(1, start, count);
    }
    let ids: Vec<u32> = (0..count).map(|j| (start + j * stride) as u32).collect();
    x.index_select(&Tensor::new(ids, x.device())?, 1)
}
