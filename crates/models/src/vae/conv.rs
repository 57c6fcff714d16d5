//! Causal 3D convolution (`WanCausalConv3d`), per-frame 2D convolution, and the per-call feature
//! cache that lets a video be processed chunk by chunk exactly as the reference does.
//!
//! Activations inside the VAE are frames-first and channels-last, `[B, T, H, W, C]`: time slicing
//! stays contiguous (for B = 1), per-pixel ops (norms, attention, pointwise convolutions) see rows
//! of C contiguous values, and a convolution is, per tile of output rows, one gather (im2col: rows
//! of C values copied, on the CPU by all threads straight into one buffer, elsewhere by
//! `index_select`) and one `[pixels, K] x [K, out]` matmul, the operand shape the CPU GEMM runs
//! fastest (several times faster than candle's conv2d on these sizes).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use crate::cpu::{self, F32Values, Strided};

/// Upper bound on the elements of one im2col tile (the `[pixels, K]` matrix fed to one matmul).
/// Small in unit tests, so that their small convolutions run in several tiles.
const IM2COL_TILE_ELEMENTS: usize = if cfg!(test) { 1 << 8 } else { 1 << 22 };

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

/// Where a convolution reads its input relative to its output.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    /// Zero frames before the first input frame (the causal time padding).
    context: usize,
    time_stride: usize,
    spatial_stride: usize,
    /// Zero rows/columns before (top, left) and after (bottom, right) the image.
    pad_before: usize,
    pad_after: usize,
}

/// `WanCausalConv3d`: a Conv3d whose time padding is all on the past side (2 * padding_t zero
/// frames, replaced by cached frames of the previous chunk when there are any). Also serves the
/// per-frame `nn.Conv2d`s, as a (1, k, k) kernel without past context.
pub(super) struct CausalConv3d {
    /// `[out, in, kt, kh, kw]`, or `[out, in, kh, kw]` for a per-frame 2D convolution.
    weight: Tensor,
    bias: Tensor,
    geometry: Geometry,
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
        Ok(Self {
            weight: vb.get((out_channels, in_channels, kt, ks, ks), "weight")?,
            bias: vb.get(out_channels, "bias")?,
            geometry: Geometry {
                context: 2 * padding.0,
                time_stride,
                spatial_stride: 1,
                pad_before: padding.1,
                pad_after: padding.1,
            },
        })
    }

    /// An `nn.Conv2d(in, out, kernel, stride)` applied to every frame, with `pad_before` /
    /// `pad_after` zero rows and columns on the top-left / bottom-right sides.
    pub(super) fn load_per_frame(
        vb: VarBuilder,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        (pad_before, pad_after): (usize, usize),
    ) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out_channels, in_channels, kernel, kernel), "weight")?,
            bias: vb.get(out_channels, "bias")?,
            geometry: Geometry {
                context: 0,
                time_stride: 1,
                spatial_stride: stride,
                pad_before,
                pad_after,
            },
        })
    }

    /// Non-cached call: the whole input is one chunk with a zero past.
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with_history(None, x)
    }

    /// Cached call: reads the past from `slot` and leaves the last `context` frames of the stream
    /// there for the next chunk.
    pub(super) fn forward_cached(&self, x: &Tensor, slot: &mut Option<Tensor>) -> Result<Tensor> {
        let y = self.forward_with_history(slot.as_ref(), x)?;
        *slot = Some(last_frames(slot.as_ref(), x, self.geometry.context)?);
        Ok(y)
    }

    /// Convolves `x` `[B, T, H, W, C]` preceded by `history` (the last frames of the same stream,
    /// at most `context` of them); the missing past is zeros.
    fn forward_with_history(&self, history: Option<&Tensor>, x: &Tensor) -> Result<Tensor> {
        let g = self.geometry;
        let weight = match self.weight.rank() {
            4 => self.weight.unsqueeze(2)?,
            _ => self.weight.clone(),
        };
        let (out_c, in_c, kt, kh, kw) = weight.dims5()?;
        let known = history.map_or(Ok(0), |h| h.dim(1))?;
        if known > g.context {
            candle_core::bail!(
                "causal conv: {known} cached frames for a context of {}",
                g.context
            )
        }
        let stream = match history {
            Some(h) => Tensor::cat(&[h, x], 1)?,
            None => x.clone(),
        };
        let (b, frames, h, w, c) = stream.dims5()?;
        if c != in_c {
            candle_core::bail!("causal conv: {c} input channels, expected {in_c}")
        }
        // Frame indices count from the start of the zero-padded stream: `missing` zeros first.
        let missing = g.context - known;
        let padded_frames = missing + frames;
        let (padded_h, padded_w) = (
            h + g.pad_before + g.pad_after,
            w + g.pad_before + g.pad_after,
        );
        if padded_frames < kt || padded_h < kh || padded_w < kw {
            candle_core::bail!(
                "causal conv: input {:?} smaller than the kernel {:?}",
                stream.dims(),
                weight.dims()
            )
        }
        let out_t = (padded_frames - kt) / g.time_stride + 1;
        let out_h = (padded_h - kh) / g.spatial_stride + 1;
        let out_w = (padded_w - kw) / g.spatial_stride + 1;
        // Leading temporal taps that read only padding for every output frame contribute zero:
        // drop them from the kernel.
        let first_tap = missing
            .saturating_sub((out_t - 1) * g.time_stride)
            .min(kt - 1);
        let taps = kt - first_tap;

        let pixels = stream.reshape((b * frames * h * w, c))?;
        // One tap reading output frame t from input frame t, pixel for pixel: a plain matmul.
        let is_pointwise = taps * kh * kw == 1
            && missing == first_tap
            && g.time_stride == 1
            && g.spatial_stride == 1
            && g.pad_before + g.pad_after == 0;
        let out = if is_pointwise {
            let kernel = weight.narrow(2, first_tap, 1)?.reshape((out_c, in_c))?;
            match cpu::linear(&pixels, &kernel, &self.bias, None)? {
                Some(out) => out,
                None => pixels.matmul(&kernel.t()?)?.broadcast_add(&self.bias)?,
            }
        } else {
            // K runs over (tap_t, tap_h, tap_w, channel), the order in which im2col lays out a
            // patch; the reference weight is (channel, tap_t, tap_h, tap_w).
            let k = taps * kh * kw * in_c;
            let kernel = weight
                .narrow(2, first_tap, taps)?
                .permute((0, 2, 3, 4, 1))?
                .contiguous()?
                .reshape((out_c, k))?;
            let plan = Im2Col {
                batch: b,
                frames,
                height: h,
                width: w,
                missing,
                first_tap,
                taps,
                kernel_h: kh,
                kernel_w: kw,
                geometry: g,
                out_t,
                out_h,
                out_w,
            };
            match plan.convolve_on_cpu(&pixels, &kernel, &self.bias)? {
                Some(out) => out,
                None => plan.convolve(&pixels, &kernel)?.broadcast_add(&self.bias)?,
            }
        };
        out.reshape((b, out_t, out_h, out_w, out_c))
    }
}

/// Where every im2col patch reads, for `[B, T, H, W]` pixels flattened row-major.
struct Im2Col {
    batch: usize,
    frames: usize,
    height: usize,
    width: usize,
    missing: usize,
    first_tap: usize,
    taps: usize,
    kernel_h: usize,
    kernel_w: usize,
    geometry: Geometry,
    out_t: usize,
    out_h: usize,
    out_w: usize,
}

impl Im2Col {
    /// Values in one patch: taps times input channels.
    fn patch_len(&self, channels: usize) -> usize {
        self.taps * self.kernel_h * self.kernel_w * channels
    }

    /// Output rows (one (b, t, h) line of `out_w` pixels each) per tile, so that a tile's
    /// patches stay within [`IM2COL_TILE_ELEMENTS`].
    fn rows_per_tile(&self, patch_len: usize) -> usize {
        (IM2COL_TILE_ELEMENTS / (self.out_w * patch_len)).max(1)
    }

    fn rows(&self) -> usize {
        self.batch * self.out_t * self.out_h
    }

    /// Calls `visit` with the input pixel (index into `[B, T, H, W]` flattened row-major) that
    /// each tap of output pixel `ow` of output row `row` reads, in (tap_t, tap_h, tap_w) order;
    /// `None` where it reads padding.
    fn visit_patch(&self, row: usize, ow: usize, mut visit: impl FnMut(Option<usize>)) {
        let g = &self.geometry;
        let oh = row % self.out_h;
        let ot = (row / self.out_h) % self.out_t;
        let b = row / (self.out_h * self.out_t);
        for tap_t in self.first_tap..self.first_tap + self.taps {
            // Index in the padded stream, then in the real frames.
            let frame = (ot * g.time_stride + tap_t).checked_sub(self.missing);
            for tap_h in 0..self.kernel_h {
                let y = (oh * g.spatial_stride + tap_h)
                    .checked_sub(g.pad_before)
                    .filter(|&y| y < self.height);
                for tap_w in 0..self.kernel_w {
                    let x = (ow * g.spatial_stride + tap_w)
                        .checked_sub(g.pad_before)
                        .filter(|&x| x < self.width);
                    visit(match (frame, y, x) {
                        (Some(t), Some(y), Some(x)) => {
                            Some(((b * self.frames + t) * self.height + y) * self.width + x)
                        }
                        _ => None,
                    });
                }
            }
        }
    }

    /// Any device: per tile of output rows, the patches gathered by `index_select` (padding
    /// reads are `u32::MAX`, which it turns into zeros), times the kernel. No bias.
    fn convolve(&self, pixels: &Tensor, kernel: &Tensor) -> Result<Tensor> {
        const PAD: u32 = u32::MAX;
        let total = pixels.dim(0)?;
        if total >= PAD as usize {
            candle_core::bail!("causal conv: {total} input pixels exceed the u32 index range")
        }
        let (_, k) = kernel.dims2()?;
        let kernel_t = kernel.t()?;
        let rows_per_tile = self.rows_per_tile(k);
        let tiles = (0..self.rows())
            .step_by(rows_per_tile)
            .map(|start| {
                let end = (start + rows_per_tile).min(self.rows());
                let mut ids = Vec::with_capacity((end - start) * self.out_w * self.patch_len(1));
                for row in start..end {
                    for ow in 0..self.out_w {
                        self.visit_patch(row, ow, |pixel| {
                            ids.push(pixel.map_or(PAD, |p| p as u32))
                        });
                    }
                }
                let ids = Tensor::new(ids, pixels.device())?;
                pixels
                    .index_select(&ids, 0)?
                    .reshape(((end - start) * self.out_w, k))?
                    .matmul(&kernel_t)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&tiles, 0)
    }

    /// The CPU, f32: per tile, the patches copied straight from `pixels` `[P, C]` into one
    /// reused buffer (split over the rayon pool) and multiplied into the output, which starts
    /// as the bias. `None` for other devices and dtypes.
    fn convolve_on_cpu(
        &self,
        pixels: &Tensor,
        kernel: &Tensor,
        bias: &Tensor,
    ) -> Result<Option<Tensor>> {
        let (out_c, k) = kernel.dims2()?;
        let channels = pixels.dim(1)?;
        let (Some(pixels_values), Some(kernel_values), Some(bias_values)) = (
            F32Values::of(pixels),
            F32Values::of(kernel),
            F32Values::of(bias),
        ) else {
            return Ok(None);
        };
        let (input, bias) = (pixels_values.get(), bias_values.get());
        let pixels_out = self.rows() * self.out_w;
        let mut out = bias.repeat(pixels_out);
        let rows_per_tile = self.rows_per_tile(k);
        let mut patches = vec![0f32; rows_per_tile.min(self.rows()) * self.out_w * k];
        for start in (0..self.rows()).step_by(rows_per_tile) {
            let end = (start + rows_per_tile).min(self.rows());
            let tile_pixels = (end - start) * self.out_w;
            let patches = &mut patches[..tile_pixels * k];
            patches
                .par_chunks_mut(k)
                .enumerate()
                .for_each(|(i, patch)| {
                    let mut taps = patch.chunks_exact_mut(channels);
                    self.visit_patch(start + i / self.out_w, i % self.out_w, |pixel| {
                        if let Some(tap) = taps.next() {
                            match pixel {
                                Some(p) => tap.copy_from_slice(&input[p * channels..][..channels]),
                                None => tap.fill(0.0),
                            }
                        }
                    });
                });
            let dst = &mut out[start * self.out_w * out_c..end * self.out_w * out_c];
            // SAFETY: `dst` is `tile_pixels x out_c`, `patches` `tile_pixels x k` and the
            // kernel `out_c x k`, all row-major and distinct.
            unsafe {
                cpu::gemm(
                    (tile_pixels, out_c, k),
                    Strided::rows(dst.as_mut_ptr(), out_c),
                    true,
                    Strided::rows(patches.as_ptr(), k),
                    Strided::transposed(kernel_values.get().as_ptr(), k),
                    1.0,
                    cpu::parallelism(),
                )
            }
        }
        Ok(Some(Tensor::from_vec(
            out,
            (pixels_out, out_c),
            pixels.device(),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};
    use std::collections::HashMap;

    /// Direct (loop) causal convolution of `x` `[B, T, H, W, C]` after `missing` zero frames.
    fn naive(x: &Tensor, weight: &Tensor, bias: &Tensor, g: Geometry, missing: usize) -> Vec<f32> {
        let (b, t, h, w, c) = x.dims5().unwrap();
        let (o, _, kt, kh, kw) = weight.dims5().unwrap();
        let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let wv: Vec<f32> = weight.flatten_all().unwrap().to_vec1().unwrap();
        let bv: Vec<f32> = bias.to_vec1().unwrap();
        let (ph, pw) = (
            h + g.pad_before + g.pad_after,
            w + g.pad_before + g.pad_after,
        );
        let ot_n = (missing + t - kt) / g.time_stride + 1;
        let (oh_n, ow_n) = (
            (ph - kh) / g.spatial_stride + 1,
            (pw - kw) / g.spatial_stride + 1,
        );
        let mut out = Vec::new();
        for bi in 0..b {
            for ot in 0..ot_n {
                for oh in 0..oh_n {
                    for ow in 0..ow_n {
                        for oc in 0..o {
                            let mut s = bv[oc];
                            for dt in 0..kt {
                                for dy in 0..kh {
                                    for dx in 0..kw {
                                        let ti =
                                            (ot * g.time_stride + dt) as isize - missing as isize;
                                        let yi = (oh * g.spatial_stride + dy) as isize
                                            - g.pad_before as isize;
                                        let xi = (ow * g.spatial_stride + dx) as isize
                                            - g.pad_before as isize;
                                        if ti < 0
                                            || yi < 0
                                            || xi < 0
                                            || yi >= h as isize
                                            || xi >= w as isize
                                        {
                                            continue;
                                        }
                                        let (ti, yi, xi) = (ti as usize, yi as usize, xi as usize);
                                        for ic in 0..c {
                                            let xval =
                                                xv[(((bi * t + ti) * h + yi) * w + xi) * c + ic];
                                            let wval =
                                                wv[(((oc * c + ic) * kt + dt) * kh + dy) * kw + dx];
                                            s += xval * wval;
                                        }
                                    }
                                }
                            }
                            out.push(s);
                        }
                    }
                }
            }
        }
        out
    }

    fn conv(
        o: usize,
        i: usize,
        k: (usize, usize, usize),
        g: Geometry,
    ) -> (CausalConv3d, Tensor, Tensor) {
        let dev = Device::Cpu;
        let weight = Tensor::randn(0f32, 1., (o, i, k.0, k.1, k.2), &dev).unwrap();
        let bias = Tensor::randn(0f32, 1., o, &dev).unwrap();
        let vars = HashMap::from([
            ("weight".to_string(), weight.clone()),
            ("bias".to_string(), bias.clone()),
        ]);
        let vb = VarBuilder::from_tensors(vars, DType::F32, &dev);
        let c = CausalConv3d {
            weight: vb.get((o, i, k.0, k.1, k.2), "weight").unwrap(),
            bias: vb.get(o, "bias").unwrap(),
            geometry: g,
        };
        (c, weight, bias)
    }

    #[test]
    fn matches_direct_convolution() {
        let g3 = Geometry {
            context: 2,
            time_stride: 1,
            spatial_stride: 1,
            pad_before: 1,
            pad_after: 1,
        };
        let down = Geometry {
            context: 0,
            time_stride: 1,
            spatial_stride: 2,
            pad_before: 0,
            pad_after: 1,
        };
        let time_down = Geometry {
            context: 0,
            time_stride: 2,
            spatial_stride: 1,
            pad_before: 0,
            pad_after: 0,
        };
        let point = Geometry {
            context: 0,
            time_stride: 1,
            spatial_stride: 1,
            pad_before: 0,
            pad_after: 0,
        };
        for (k, g, frames, history) in [
            ((3, 3, 3), g3, 1, 0),
            ((3, 3, 3), g3, 4, 0),
            ((3, 3, 3), g3, 1, 1),
            ((3, 3, 3), g3, 2, 2),
            ((1, 3, 3), down, 3, 0),
            ((3, 1, 1), time_down, 5, 0),
            ((3, 1, 1), g3, 2, 1),
            ((1, 1, 1), point, 3, 0),
        ] {
            let (c, weight, bias) = conv(5, 4, k, g);
            let dev = Device::Cpu;
            let hist = (history > 0)
                .then(|| Tensor::randn(0f32, 1., (2, history, 6, 4, 4), &dev).unwrap());
            let x = Tensor::randn(0f32, 1., (2, frames, 6, 4, 4), &dev).unwrap();
            let stream = match &hist {
                Some(h) => Tensor::cat(&[h, &x], 1).unwrap(),
                None => x.clone(),
            };
            let expected = naive(&stream, &weight, &bias, g, g.context - history);
            // f32 takes the CPU path; f64 the one other devices and dtypes take.
            let f64_conv = CausalConv3d {
                weight: weight.to_dtype(DType::F64).unwrap(),
                bias: bias.to_dtype(DType::F64).unwrap(),
                geometry: g,
            };
            let f64_hist = hist.as_ref().map(|h| h.to_dtype(DType::F64).unwrap());
            let f64_x = x.to_dtype(DType::F64).unwrap();
            for (path, ours) in [
                ("cpu", c.forward_with_history(hist.as_ref(), &x).unwrap()),
                (
                    "generic",
                    f64_conv
                        .forward_with_history(f64_hist.as_ref(), &f64_x)
                        .unwrap()
                        .to_dtype(DType::F32)
                        .unwrap(),
                ),
            ] {
                let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
                assert_eq!(ours.len(), expected.len(), "{path} {k:?} {g:?}");
                let diff = ours
                    .iter()
                    .zip(&expected)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    diff < 1e-4,
                    "{path} {k:?} {g:?} frames {frames} history {history}: {diff}"
                );
            }
        }
    }
}
