//! Building blocks of the Wan transformer: linear layers, norms and attention.

use candle_core::{DType, Result, Tensor, bail};
use candle_nn::VarBuilder;

use super::kernels;
use super::rope::RopeTables;

/// `nn.Linear` (with bias) run as a single 2-D matmul over all leading dimensions, so a
/// `[B, L, in]` input is one large GEMM rather than `B` broadcast ones.
pub(super) struct Linear {
    weight: Tensor,
    bias: Tensor,
}

impl Linear {
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get((out_dim, in_dim), "weight")?,
            bias: vb.get(out_dim, "bias")?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (out_dim, in_dim) = self.weight.dims2()?;
        let mut shape = x.dims().to_vec();
        match shape.last_mut() {
            Some(last) if *last == in_dim => *last = out_dim,
            _ => bail!(
                "linear layer expects inputs [..., {in_dim}], got {:?}",
                x.shape()
            ),
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
    let normed = candle_nn::ops::rms_norm(
        &x.to_dtype(DType::F32)?,
        &weight.to_dtype(DType::F32)?,
        eps as f32,
    )?;
    normed.to_dtype(x.dtype())
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
    let block_rows =
        (ATTENTION_SCORE_BLOCK / (batch * heads * k_len).max(1)).clamp(1, q_len.max(1));
    let mut blocks = Vec::with_capacity(q_len.div_ceil(block_rows));
    for start in (0..q_len).step_by(block_rows) {
        let q_block = q.narrow(2, start, block_rows.min(q_len - start))?;
        let probs = kernels::softmax_last_dim(q_block.matmul(&k_t)?.to_dtype(DType::F32)?)?
            .to_dtype(v.dtype())?;
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
        x.reshape((batch, len, self.heads, dim / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn query(&self, x: &Tensor) -> Result<Tensor> {
        self.split_heads(&rms_norm(&self.to_q.forward(x)?, &self.norm_q, self.eps)?)
    }

    fn key_value(&self, context: &Tensor) -> Result<(Tensor, Tensor)> {
        let key = self.split_heads(&rms_norm(
            &self.to_k.forward(context)?,
            &self.norm_k,
            self.eps,
        )?)?;
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
        Self {
            linear_in,
            linear_out,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_out
            .forward(&kernels::gelu_tanh(self.linear_in.forward(x)?)?)
    }
}
