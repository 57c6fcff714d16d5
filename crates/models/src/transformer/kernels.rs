//! CPU kernels for the element-wise work of the transformer that candle runs with scalar
//! `exp`/`tanh` (softmax, GELU) or with a one-pass variance (LayerNorm). On other devices
//! and dtypes the callers fall back to candle ops.
//!
//! The loops are branch-free over plain slices so that they auto-vectorise, and rows are
//! split over the rayon pool (the one candle's matrix products use).

use candle_core::{CpuStorage, CustomOp3, DType, InplaceOp1, Layout, Result, Shape, Tensor, bail};
use rayon::prelude::*;

use gemm::Parallelism;

use crate::cpu::{F32Values, Strided, gemm};

/// `exp` in f32 to about 1 ulp (Cephes `expf`): `2^n * p(r)` with `r = x - n ln 2`.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_2e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    let exponent = (shifted.to_bits() as i32 - ROUND.to_bits() as i32 + 127) as u32;
    p * f32::from_bits(exponent << 23)
}

const LANES: usize = 8;

/// Folds `map(v)` over `values` with `LANES` independent accumulators (this vectorises,
/// unlike a serial fold).
#[inline(always)]
fn lane_fold(
    values: &[f32],
    init: f32,
    map: impl Fn(f32) -> f32,
    op: impl Fn(f32, f32) -> f32,
) -> f32 {
    let mut acc = [init; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = op(*a, map(v));
        }
    }
    rest.iter()
        .fold(acc.into_iter().fold(init, &op), |a, &v| op(a, map(v)))
}

fn add(a: f32, b: f32) -> f32 {
    a + b
}

/// Work on whole rows of a buffer: `first_row` is the index of `rows`' first row.
trait RowKernel: Sync {
    /// Must be `#[inline(always)]` so it is compiled into [`run_wide`] with AVX2.
    fn run(&self, first_row: usize, rows: &mut [f32]);
}

/// `kernel.run` compiled for AVX2 + FMA (the crate targets baseline x86-64, where the loops
/// vectorise only 4 wide).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_wide(kernel: &impl RowKernel, first_row: usize, rows: &mut [f32]) {
    kernel.run(first_row, rows)
}

fn run_widest(kernel: &impl RowKernel, first_row: usize, rows: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features `run_wide` is compiled for (checked just above).
        return unsafe { run_wide(kernel, first_row, rows) };
    }
    kernel.run(first_row, rows)
}

/// Runs `kernel` over `data` cut into whole rows of `row_len`, the rows split over the rayon
/// pool.
fn par_rows(data: &mut [f32], row_len: usize, kernel: &impl RowKernel) {
    const MIN_ELEMENTS_PER_TASK: usize = 1 << 14;
    let rows = data.len().checked_div(row_len).unwrap_or(0);
    let tasks = candle_core::utils::get_num_threads()
        .min(data.len() / MIN_ELEMENTS_PER_TASK)
        .clamp(1, rows.max(1));
    if tasks == 1 {
        run_widest(kernel, 0, data);
        return;
    }
    let rows_per_task = rows.div_ceil(tasks);
    data.par_chunks_mut(rows_per_task * row_len)
        .enumerate()
        .for_each(|(i, chunk)| run_widest(kernel, i * rows_per_task, chunk));
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
        _ => bail!("wan kernel expects a contiguous f32 tensor"),
    }
}

fn contiguous_f32_mut<'a>(storage: &'a mut CpuStorage, layout: &Layout) -> Result<&'a mut [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(data), Some((start, end))) => Ok(&mut data[start..end]),
        _ => bail!("wan kernel expects a contiguous f32 tensor"),
    }
}

fn fast_path(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous()
}

/// Softmax over the last dimension. Takes ownership because on CPU it overwrites `x`.
pub(super) fn softmax_last_dim(x: Tensor) -> Result<Tensor> {
    if !fast_path(&x) {
        return candle_nn::ops::softmax_last_dim(&x);
    }
    x.inplace_op1(&SoftmaxInPlace)?;
    Ok(x)
}

struct SoftmaxInPlace;

impl InplaceOp1 for SoftmaxInPlace {
    fn name(&self) -> &'static str {
        "wan-softmax"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let row_len = layout.dims().last().copied().unwrap_or(1);
        par_rows(
            contiguous_f32_mut(storage, layout)?,
            row_len,
            &SoftmaxRows {
                row_len,
                bias: None,
            },
        );
        Ok(())
    }
}

struct SoftmaxRows<'a> {
    row_len: usize,
    /// Added to every row first, `[row_len]`.
    bias: Option<&'a [f32]>,
}

impl RowKernel for SoftmaxRows<'_> {
    #[inline(always)]
    fn run(&self, _: usize, rows: &mut [f32]) {
        for row in rows.chunks_exact_mut(self.row_len) {
            if let Some(bias) = self.bias {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
            let max = lane_fold(row, f32::NEG_INFINITY, |v| v, f32::max);
            for v in row.iter_mut() {
                *v = exp(*v - max);
            }
            let inv_sum = 1.0 / lane_fold(row, 0.0, |v| v, add);
            for v in row.iter_mut() {
                *v *= inv_sum;
            }
        }
    }
}

/// Queries per task of [`attention`]: their logits against all keys stay in the cache.
const ATTENTION_QUERY_BLOCK: usize = 64;

/// The output buffer of [`attention`], written by the tasks at disjoint places.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes its own rows of its own head (see `attention`).
unsafe impl Send for SharedOut {}
// SAFETY: as for Send: no two tasks touch the same element.
unsafe impl Sync for SharedOut {}

/// Softmax attention of already-scaled queries `q` `[B, H, Lq, Dh]` over keys and values
/// `[B, H, Lk, Dh]`, with `key_bias` `[Lk]` added to every query's logits; returns
/// `[B, Lq, H * Dh]`. On the CPU in f32 (else `None`): blocks of queries of one head are the
/// tasks of the rayon pool, each two single-threaded products around a softmax, written
/// straight into the heads-interleaved output.
pub(super) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    key_bias: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let (batch, heads, q_len, head_dim) = q.dims4()?;
    let k_len = k.dim(2)?;
    if k.dims() != [batch, heads, k_len, head_dim]
        || v.dims() != k.dims()
        || key_bias.is_some_and(|bias| bias.dims() != [k_len])
    {
        bail!(
            "attention cannot take q {:?}, k {:?}, v {:?} and key bias {:?}",
            q.shape(),
            k.shape(),
            v.shape(),
            key_bias.map(Tensor::shape)
        )
    }
    let (Some(q), Some(k), Some(v)) = (F32Values::of(q), F32Values::of(k), F32Values::of(v)) else {
        return Ok(None);
    };
    let bias = match key_bias.map(F32Values::of) {
        Some(None) => return Ok(None),
        bias => bias.flatten(),
    };
    let (q, k, v) = (q.get(), k.get(), v.get());
    let softmax = SoftmaxRows {
        row_len: k_len,
        bias: bias.as_ref().map(F32Values::get),
    };
    let dim = heads * head_dim;
    let mut out = vec![0f32; batch * q_len * dim];
    let shared_out = SharedOut(out.as_mut_ptr());
    let blocks = q_len.div_ceil(ATTENTION_QUERY_BLOCK);
    (0..batch * heads * blocks).into_par_iter().for_each_init(
        Vec::new,
        |logits: &mut Vec<f32>, task| {
            let (head_index, block) = (task / blocks, task % blocks);
            let (sample, head) = (head_index / heads, head_index % heads);
            let first = block * ATTENTION_QUERY_BLOCK;
            let rows = ATTENTION_QUERY_BLOCK.min(q_len - first);
            let q = &q[(head_index * q_len + first) * head_dim..][..rows * head_dim];
            let k = &k[head_index * k_len * head_dim..][..k_len * head_dim];
            let v = &v[head_index * k_len * head_dim..][..k_len * head_dim];
            logits.resize(rows * k_len, 0.0);
            let out = shared_out;
            // SAFETY: all operands are row-major within the slices taken above; the output
            // rows `first..first + rows` of `sample`, columns of `head`, are this task's only.
            unsafe {
                gemm(
                    (rows, k_len, head_dim),
                    Strided::rows(logits.as_mut_ptr(), k_len),
                    false,
                    Strided::rows(q.as_ptr(), head_dim),
                    Strided::transposed(k.as_ptr(), head_dim),
                    1.0,
                    Parallelism::None,
                );
                run_widest(&softmax, 0, logits);
                let out_start = (sample * q_len + first) * dim + head * head_dim;
                gemm(
                    (rows, head_dim, k_len),
                    Strided::rows(out.0.add(out_start), dim),
                    false,
                    Strided::rows(logits.as_ptr(), k_len),
                    Strided::rows(v.as_ptr(), head_dim),
                    1.0,
                    Parallelism::None,
                );
            }
        },
    );
    Ok(Some(Tensor::from_vec(
        out,
        (batch, q_len, dim),
        &candle_core::Device::Cpu,
    )?))
}

/// GELU, tanh approximation. Takes ownership because on CPU it overwrites `x`.
pub(super) fn gelu_tanh(x: Tensor) -> Result<Tensor> {
    if !fast_path(&x) {
        return x.gelu();
    }
    x.inplace_op1(&GeluTanhInPlace)?;
    Ok(x)
}

struct GeluTanhInPlace;

impl InplaceOp1 for GeluTanhInPlace {
    fn name(&self) -> &'static str {
        "wan-gelu-tanh"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        par_rows(contiguous_f32_mut(storage, layout)?, 1, self);
        Ok(())
    }
}

impl RowKernel for GeluTanhInPlace {
    #[inline(always)]
    fn run(&self, _: usize, values: &mut [f32]) {
        const SQRT_2_OVER_PI: f32 = 0.797_884_6;
        // 0.5 x (1 + tanh(u)) == x / (1 + exp(-2u))
        for v in values.iter_mut() {
            let x = *v;
            let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
            *v = x / (1.0 + exp(-2.0 * u));
        }
    }
}

/// LayerNorm over the last dimension of `x` `[B, L, D]` followed by `* scale + shift`, the
/// affine rows `[S, D]` being per sample (`S == B`) or shared (`S == 1`); result in f32.
pub(super) fn layer_norm_affine(
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let (batch, _, dim) = x.dims3()?;
    let (scale_rows, scale_dim) = scale.dims2()?;
    if scale.dims() != shift.dims() || scale_dim != dim || !(scale_rows == 1 || scale_rows == batch)
    {
        bail!(
            "layer norm of {:?} cannot take scale {:?} and shift {:?}",
            x.shape(),
            scale.shape(),
            shift.shape()
        )
    }
    let x = x.to_dtype(DType::F32)?;
    let scale = scale.to_dtype(DType::F32)?;
    let shift = shift.to_dtype(DType::F32)?;
    if x.device().is_cpu() {
        return x.contiguous()?.apply_op3_no_bwd(
            &scale.contiguous()?,
            &shift.contiguous()?,
            &LayerNormAffine { eps },
        );
    }
    let centred = x.broadcast_sub(&x.mean_keepdim(candle_core::D::Minus1)?)?;
    let variance = centred.sqr()?.mean_keepdim(candle_core::D::Minus1)?;
    centred
        .broadcast_div(&(variance + eps)?.sqrt()?)?
        .broadcast_mul(&scale.unsqueeze(1)?)?
        .broadcast_add(&shift.unsqueeze(1)?)
}

/// Mean, then variance from the centred values: two passes over the (cached) row.
struct LayerNormAffine {
    eps: f64,
}

impl CustomOp3 for LayerNormAffine {
    fn name(&self) -> &'static str {
        "wan-layer-norm-affine"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        scale: &CpuStorage,
        scale_layout: &Layout,
        shift: &CpuStorage,
        shift_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (_, seq_len, dim) = x_layout.shape().dims3()?;
        let rows = LayerNormRows {
            x: contiguous_f32(x, x_layout)?,
            scale: contiguous_f32(scale, scale_layout)?,
            shift: contiguous_f32(shift, shift_layout)?,
            seq_len,
            dim,
            eps: self.eps,
        };
        let mut out = vec![0f32; rows.x.len()];
        par_rows(&mut out, dim, &rows);
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

struct LayerNormRows<'a> {
    x: &'a [f32],
    /// `[S, dim]`, `S` 1 or the batch size.
    scale: &'a [f32],
    shift: &'a [f32],
    seq_len: usize,
    dim: usize,
    eps: f64,
}

impl RowKernel for LayerNormRows<'_> {
    #[inline(always)]
    fn run(&self, first_row: usize, out: &mut [f32]) {
        let dim = self.dim;
        let shared_affine = self.scale.len() == dim;
        for (i, out_row) in out.chunks_exact_mut(dim).enumerate() {
            let row = first_row + i;
            let x_row = &self.x[row * dim..(row + 1) * dim];
            let sample = if shared_affine { 0 } else { row / self.seq_len };
            let affine = sample * dim..(sample + 1) * dim;
            let mean = lane_fold(x_row, 0.0, |v| v, add) / dim as f32;
            let variance = lane_fold(x_row, 0.0, |v| (v - mean) * (v - mean), add) / dim as f32;
            let inv_std = (1.0 / (variance as f64 + self.eps).sqrt()) as f32;
            let affine_rows = self.scale[affine.clone()].iter().zip(&self.shift[affine]);
            for ((o, &v), (&s, &b)) in out_row.iter_mut().zip(x_row).zip(affine_rows) {
                *o = (v - mean) * inv_std * s + b;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        crate::max_abs_diff(a, b).unwrap()
    }

    #[test]
    fn exp_is_accurate_to_a_few_ulp() {
        let mut worst = 0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let exact = (x as f64).exp();
            worst = worst.max(((super::exp(x) as f64) - exact).abs() / exact);
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
    }

    #[test]
    fn softmax_and_gelu_match_candle() {
        let x = (Tensor::randn(0f32, 1.0, (4, 33, 517), &Device::Cpu).unwrap() * 20.0).unwrap();
        let expected = candle_nn::ops::softmax_last_dim(&x).unwrap();
        let ours = super::softmax_last_dim(x.copy().unwrap()).unwrap();
        assert!(max_abs_diff(&ours, &expected) < 1e-6);
        let expected = x.gelu().unwrap();
        let ours = super::gelu_tanh(x.copy().unwrap()).unwrap();
        assert!(max_abs_diff(&ours, &expected) < 1e-4);
    }

    #[test]
    fn attention_matches_candle() {
        // Several query blocks, a key count that is no multiple of the SIMD width, a bias.
        let device = Device::Cpu;
        let (batch, heads, q_len, k_len, head_dim) = (2, 3, 150, 37, 16);
        let randn =
            |shape: (usize, usize, usize, usize)| Tensor::randn(0f32, 1.0, shape, &device).unwrap();
        let q = randn((batch, heads, q_len, head_dim));
        let k = randn((batch, heads, k_len, head_dim));
        let v = randn((batch, heads, k_len, head_dim));
        let bias = Tensor::randn(0f32, 1.0, k_len, &device).unwrap();
        let logits = q
            .matmul(&k.t().unwrap())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&logits).unwrap();
        let expected = probs
            .matmul(&v)
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .reshape((batch, q_len, heads * head_dim))
            .unwrap();
        let ours = super::attention(&q, &k, &v, Some(&bias)).unwrap().unwrap();
        assert!(max_abs_diff(&ours, &expected) < 1e-5);
    }

    #[test]
    fn layer_norm_matches_candle() {
        // Large enough to be split over threads; an offset mean tests the two-pass variance.
        let (batch, len, dim) = (2, 301, 96);
        let x =
            (Tensor::randn(0f32, 1.0, (batch, len, dim), &Device::Cpu).unwrap() + 30.0).unwrap();
        let scale = Tensor::randn(0f32, 1.0, (batch, dim), &Device::Cpu).unwrap();
        let shift = Tensor::randn(0f32, 1.0, (batch, dim), &Device::Cpu).unwrap();
        let ones = Tensor::ones(dim, DType::F32, &Device::Cpu).unwrap();
        let normed =
            candle_nn::ops::layer_norm_slow(&x, &ones, &ones.zeros_like().unwrap(), 1e-6).unwrap();
        let affine = |scale: &Tensor, shift: &Tensor| {
            normed
                .broadcast_mul(&scale.unsqueeze(1).unwrap())
                .unwrap()
                .broadcast_add(&shift.unsqueeze(1).unwrap())
                .unwrap()
        };
        let ours = super::layer_norm_affine(&x, &scale, &shift, 1e-6).unwrap();
        assert!(max_abs_diff(&ours, &affine(&scale, &shift)) < 1e-4);
        let (scale, shift) = (
            scale.narrow(0, 1, 1).unwrap(),
            shift.narrow(0, 1, 1).unwrap(),
        );
        let shared = super::layer_norm_affine(&x, &scale, &shift, 1e-6).unwrap();
        assert!(max_abs_diff(&shared, &affine(&scale, &shift)) < 1e-4);
    }
}
