//! Building blocks of the Wan transformer: linear layers, norms and attention.

use candle_core::{DType, Result, Tensor, bail};
use candle_nn::VarBuilder;

use super::kernels;
use super::rope::RopeTables;
use crate::cpu;

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
        self.forward_onto(x, None)
    }

    /// `residual + scale * forward(x)`, the residual shaped like the output.
    pub fn add_to(&self, residual: &Tensor, x: &Tensor, scale: f64) -> Result<Tensor> {
        self.forward_onto(x, Some((residual, scale)))
    }

    fn forward_onto(&self, x: &Tensor, residual: Option<(&Tensor, f64)>) -> Result<Tensor> {
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
        let x = x.reshape((rows, in_dim))?;
        let residual = match residual {
            Some((residual, scale)) => Some((residual.reshape((rows, out_dim))?, scale)),
            None => None,
        };
        let fused = cpu::linear(
            &x,
            &self.weight,
            &self.bias,
            residual
                .as_ref()
                .map(|(residual, scale)| (residual, *scale as f32)),
        )?;
        let out = match (fused, residual) {
            (Some(out), _) => out,
            (None, None) => x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?,
            (None, Some((residual, scale))) => {
                let y = x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)?;
                (residual + (y * scale)?)?
            }
        };
        out.reshape(shape)
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
/// `[B, H, Lk, Dh]` (all contiguous), returned as `[B, Lq, H * Dh]`. `key_bias` `[Lk]` (f32)
/// is added to every query's logits.
fn attention(q: &Tensor, k: &Tensor, v: &Tensor, key_bias: Option<&Tensor>) -> Result<Tensor> {
    if let Some(out) = kernels::attention(q, k, v, key_bias)? {
        return Ok(out);
    }
    let (batch, heads, q_len, head_dim) = q.dims4()?;
    let k_len = k.dim(2)?;
    let k_t = k.t()?;
    let block_rows =
        (ATTENTION_SCORE_BLOCK / (batch * heads * k_len).max(1)).clamp(1, q_len.max(1));
    let mut blocks = Vec::with_capacity(q_len.div_ceil(block_rows));
    for start in (0..q_len).step_by(block_rows) {
        let q_block = q.narrow(2, start, block_rows.min(q_len - start))?;
        let mut logits = q_block.matmul(&k_t)?.to_dtype(DType::F32)?;
        if let Some(bias) = key_bias {
            logits = logits.broadcast_add(bias)?;
        }
        let probs = kernels::softmax_last_dim(logits)?.to_dtype(v.dtype())?;
        blocks.push(probs.matmul(v)?.transpose(1, 2)?.contiguous()?);
    }
    Tensor::cat(&blocks, 1)?.reshape((batch, q_len, heads * head_dim))
}

/// Cross-attention keys and values of the text, computed once per prompt.
///
/// The Wan pipelines pad every prompt to 512 tokens with zero embeddings, whose keys and values
/// are all the same. Those are stored once, as the last key, with the logit bias `ln(count)`:
/// `exp(s + ln n) = n * exp(s)`, so the softmax weighs it exactly as `n` identical keys.
pub(super) struct TextKeys {
    key: Tensor,
    value: Tensor,
    /// `[Lk]` f32, present when the last key stands for several tokens.
    bias: Option<Tensor>,
}

/// The text tokens `[B, Lt, dim]` reduced to distinct ones: the trailing run of tokens equal
/// to the last one (in every sample) kept once, with the count of tokens it stands for.
pub(super) struct MergedText {
    pub tokens: Tensor,
    pub last_token_count: usize,
}

impl MergedText {
    /// Finds the trailing run of identical rows in `text` `[B, Lt, D]` (compared exactly) and
    /// keeps, for all samples alike, the rows before the longest sample's run plus one.
    pub fn new(text: &Tensor) -> Result<Self> {
        let (_, len, _) = text.dims3()?;
        if len < 2 {
            return Ok(Self {
                tokens: text.clone(),
                last_token_count: 1,
            });
        }
        let rows = text.to_dtype(DType::F32)?.to_vec3::<f32>()?;
        let distinct = rows
            .iter()
            .map(|sample| {
                let last = &sample[len - 1];
                // At least the last row itself, even when NaN compares unequal.
                let run = sample.iter().rev().take_while(|row| *row == last).count();
                len - run.max(1)
            })
            .max()
            .unwrap_or(0);
        let keep = distinct + 1;
        Ok(Self {
            tokens: text.narrow(1, 0, keep)?,
            last_token_count: len - keep + 1,
        })
    }
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
        self.to_out.forward(&attention(&query, &key, &value, None)?)
    }

    /// The keys and values of the embedded text tokens for [`Self::cross_attention`].
    pub fn text_keys(&self, text: &MergedText) -> Result<TextKeys> {
        let (key, value) = self.key_value(&text.tokens)?;
        let bias = if text.last_token_count > 1 {
            let len = key.dim(2)?;
            let mut bias = vec![0f32; len];
            bias[len - 1] = (text.last_token_count as f32).ln();
            Some(Tensor::from_vec(bias, len, key.device())?)
        } else {
            None
        };
        Ok(TextKeys { key, value, bias })
    }

    /// `residual` plus the attention of `x` `[B, L, dim]` over the (unmasked) text tokens.
    pub fn cross_attention(
        &self,
        x: &Tensor,
        text: &TextKeys,
        residual: &Tensor,
    ) -> Result<Tensor> {
        let query = self.query(x)?;
        let head_dim = query.dim(3)?;
        let query = (query * (1.0 / (head_dim as f64).sqrt()))?;
        let attended = attention(&query, &text.key, &text.value, text.bias.as_ref())?;
        self.to_out.add_to(residual, &attended, 1.0)
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

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::{VarBuilder, VarMap};

    use super::{Attention, MergedText};

    #[test]
    fn merged_padding_tokens_give_the_same_cross_attention() {
        let device = Device::Cpu;
        let (dim, heads) = (12, 3);
        let weights = VarMap::new();
        let attention = Attention::load(
            VarBuilder::from_varmap(&weights, DType::F32, &device),
            dim,
            heads,
            1e-6,
        )
        .unwrap();
        for var in weights.all_vars() {
            var.set(&Tensor::randn(0f32, 0.5, var.shape(), &device).unwrap())
                .unwrap();
        }
        // Sample 0 has 4 distinct tokens, sample 1 has 6, then equal padding up to 30.
        let padding = Tensor::randn(0f32, 1.0, (1, 1, dim), &device).unwrap();
        let sample = |real: usize| {
            let tokens = Tensor::randn(0f32, 1.0, (1, real, dim), &device).unwrap();
            Tensor::cat(&[tokens, padding.repeat((1, 30 - real, 1)).unwrap()], 1).unwrap()
        };
        let text = Tensor::cat(&[sample(4), sample(6)], 0).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 5, dim), &device).unwrap();

        let merged = MergedText::new(&text).unwrap();
        assert_eq!(merged.tokens.dims(), [2, 7, dim]);
        assert_eq!(merged.last_token_count, 24);
        let unmerged = MergedText {
            tokens: text,
            last_token_count: 1,
        };
        let expected = attention
            .cross_attention(&x, &attention.text_keys(&unmerged).unwrap(), &x)
            .unwrap();
        let ours = attention
            .cross_attention(&x, &attention.text_keys(&merged).unwrap(), &x)
            .unwrap();
        assert!(crate::max_abs_diff(&ours, &expected).unwrap() < 1e-5);
    }
}
