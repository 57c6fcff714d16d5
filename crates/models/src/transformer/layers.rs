//! Building blocks of the Wan transformer: linear layers, norms and attention.

use candle_core::{CpuStorage, CustomOp3, D, DType, Layout, Result, Shape, Tensor, bail};
use candle_nn::VarBuilder;

use super::rope::RopeTables;

/// `nn.Linear` (with bias) run as a single 2-D matmul over all leading dimensions, so a
/// `[B, L, in]` input is one large GEMM rather than `B` broadcast ones.
pub(super) struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self { weight: vb.get((out_dim, in_dim), "weight")?, bias: vb.get(out_dim, "bias")? })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (out_dim, in_dim) = self.weight.dims2()?;
        let mut shape = x.dims().to_vec();
        match shape.last_mut() {
            Some(last) if *last == in_dim => *last = out_dim,
            _ => bail!("linear layer expects inputs [..., {in_dim}], got {:?}", x.shape()),
        }
        let rows = x.elem_count() / in_dim;
        x.reshape((rows, in_dim))?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?
            .reshape(shape)
    }
}

/// Root-mean-square norm over the last dimension, computed in f32.
pub(super) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let normed =
        candle_nn::ops::rms_norm(&x.to_dtype(DType::F32)?, &weight.to_dtype(DType::F32)?, eps as f32)?;
    normed.to_dtype(x.dtype())
}

/// LayerNorm over the last dimension without its own affine, followed by `* scale + shift`
/// where `scale` and `shift` are `[S, D]` with one row per sample (`S == B`) or one for all
/// (`S == 1`). `x` is `[B, L, D]`; the result is f32. This is both the modulated norm of the
/// blocks (`scale = 1 + scale_msa`) and an affine LayerNorm (`scale = weight`, `shift = bias`).
pub(super) fn layer_norm_affine(x: &Tensor, scale: &Tensor, shift: &Tensor, eps: f64) -> Result<Tensor> {
    let (batch, _, dim) = x.dims3()?;
    let (scale_rows, scale_dim) = scale.dims2()?;
    if scale.dims() != shift.dims() || scale_dim != dim || !(scale_rows == 1 || scale_rows == batch) {
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
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(variance + eps)?.sqrt()?)?
        .broadcast_mul(&scale.unsqueeze(1)?)?
        .broadcast_add(&shift.unsqueeze(1)?)
}

/// CPU kernel of [`layer_norm_affine`]: one pass over memory per row, mean and variance taken
/// in two passes over the (cached) row with f64 sums, rows split over threads.
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
        fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
            match (storage, layout.contiguous_offsets()) {
                (CpuStorage::F32(data), Some((start, end))) => Ok(&data[start..end]),
                _ => bail!("layer norm kernel expects contiguous f32 tensors"),
            }
        }
        let x = contiguous(x, x_layout)?;
        let scale = contiguous(scale, scale_layout)?;
        let shift = contiguous(shift, shift_layout)?;
        let (_, seq_len, dim) = x_layout.shape().dims3()?;
        let scale_rows = scale.len() / dim;
        let eps = self.eps;

        let normalise_rows = |first_row: usize, out: &mut [f32]| {
            for (i, out_row) in out.chunks_exact_mut(dim).enumerate() {
                let row = first_row + i;
                let x_row = &x[row * dim..(row + 1) * dim];
                let affine_row = if scale_rows == 1 { 0 } else { row / seq_len };
                let scale_row = &scale[affine_row * dim..(affine_row + 1) * dim];
                let shift_row = &shift[affine_row * dim..(affine_row + 1) * dim];
                let mean = x_row.iter().map(|&v| v as f64).sum::<f64>() / dim as f64;
                let variance =
                    x_row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / dim as f64;
                let inv_std = (1.0 / (variance + eps).sqrt()) as f32;
                let mean = mean as f32;
                for (((o, &v), &s), &b) in out_row.iter_mut().zip(x_row).zip(scale_row).zip(shift_row) {
                    *o = (v - mean) * inv_std * s + b;
                }
            }
        };

        let mut out = vec![0f32; x.len()];
        let rows = x.len() / dim.max(1);
        let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
        let rows_per_thread = rows.div_ceil(threads).max(1);
        if threads == 1 || dim == 0 {
            normalise_rows(0, &mut out);
        } else {
            std::thread::scope(|scope| {
                for (i, chunk) in out.chunks_mut(rows_per_thread * dim).enumerate() {
                    let normalise_rows = &normalise_rows;
                    scope.spawn(move || normalise_rows(i * rows_per_thread, chunk));
                }
            });
        }
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }
}

/// Above this many score elements per query block, attention runs over blocks of queries so
/// the `[B, H, Lq, Lk]` score matrix is never materialised whole (32k tokens at 480p).
const ATTENTION_SCORE_BLOCK: usize = 1 << 24;

/// Softmax attention of already-scaled queries `[B, H, Lq, Dh]` over keys and values
/// `[B, H, Lk, Dh]` (all contiguous), returned as `[B, Lq, H * Dh]`.
fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (batch, heads, q_len, head_dim) = q.dims4()?;
    let k_len = k.dim(2)?;
    let k_t = k.t()?;
    let block_rows = (ATTENTION_SCORE_BLOCK / (batch * heads * k_len).max(1)).clamp(1, q_len.max(1));
    let mut blocks = Vec::with_capacity(q_len.div_ceil(block_rows));
    for start in (0..q_len).step_by(block_rows) {
        let q_block = q.narrow(2, start, block_rows.min(q_len - start))?;
        let scores = q_block.matmul(&k_t)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(v.dtype())?;
        blocks.push(probs.matmul(v)?.transpose(1, 2)?.contiguous()?);
    }
    Tensor::cat(&blocks, 1)?.reshape((batch, q_len, heads * head_dim))
}

/// diffusers `WanAttention` without the image (I2V) branch: q/k/v projections, RMS norm of q
/// and k over all heads together, softmax attention, output projection.
pub(super) struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    norm_q: Tensor,
    norm_k: Tensor,
    heads: usize,
    eps: f64,
}

impl Attention {
    pub fn load(vb: VarBuilder, dim: usize, heads: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            to_q: Linear::load(vb.pp("to_q"), dim, dim)?,
            to_k: Linear::load(vb.pp("to_k"), dim, dim)?,
            to_v: Linear::load(vb.pp("to_v"), dim, dim)?,
            to_out: Linear::load(vb.pp("to_out.0"), dim, dim)?,
            norm_q: vb.get(dim, "norm_q.weight")?,
            norm_k: vb.get(dim, "norm_k.weight")?,
            heads,
            eps,
        })
    }

    /// `[B, L, H * Dh]` -> contiguous `[B, H, L, Dh]`.
    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, len, dim) = x.dims3()?;
        x.reshape((batch, len, self.heads, dim / self.heads))?.transpose(1, 2)?.contiguous()
    }

    fn query(&self, x: &Tensor) -> Result<Tensor> {
        self.split_heads(&rms_norm(&self.to_q.forward(x)?, &self.norm_q, self.eps)?)
    }

    fn key_value(&self, context: &Tensor) -> Result<(Tensor, Tensor)> {
        let key = self.split_heads(&rms_norm(&self.to_k.forward(context)?, &self.norm_k, self.eps)?)?;
        Ok((key, self.split_heads(&self.to_v.forward(context)?)?))
    }

    /// Self-attention over `x` `[B, L, dim]` with q and k rotated by `rope`.
    pub fn self_attention(&self, x: &Tensor, rope: &RopeTables) -> Result<Tensor> {
        let query = rope.rotate_query(&self.query(x)?)?;
        let (key, value) = self.key_value(x)?;
        let key = rope.rotate_key(&key)?;
        self.to_out.forward(&attention(&query, &key, &value)?)
    }

    /// Attention of `x` `[B, L, dim]` over the (unmasked) text tokens `context` `[B, Lt, dim]`.
    pub fn cross_attention(&self, x: &Tensor, context: &Tensor) -> Result<Tensor> {
        let query = self.query(x)?;
        let head_dim = query.dim(3)?;
        let query = (query * (1.0 / (head_dim as f64).sqrt()))?;
        let (key, value) = self.key_value(context)?;
        self.to_out.forward(&attention(&query, &key, &value)?)
    }
}

/// `Linear -> GELU(tanh) -> Linear`, the block feed-forward and the text embedder.
pub(super) struct GeluMlp {
    linear_in: Linear,
    linear_out: Linear,
}

impl GeluMlp {
    pub fn new(linear_in: Linear, linear_out: Linear) -> Self {
        Self { linear_in, linear_out }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_out.forward(&self.linear_in.forward(x)?.gelu()?)
    }
}
