//! The umT5 encoder of the Wan pipelines (`transformers.UMT5EncoderModel`) and the pipeline's prompt
//! embedding (`_get_t5_prompt_embeds`: the encoder output cut to each prompt's real token count, then
//! zero-padded to `max_sequence_length`).
//!
//! umT5 is T5 v1.1 with a relative position bias of its own in every layer: pre-norm blocks with T5's
//! RMS norm (no mean subtraction, no bias), attention without 1/sqrt(d) scaling, and a feed-forward
//! that is gated (`wi_0`, `wi_1`) or not (`wi`) with the activation the config names.
//!
//! Precision follows transformers in f32 and bf16: norms compute their statistics in f32 and round the
//! normalized value to the weight dtype before scaling; scores, bias, mask and softmax are f32. In f16
//! transformers also keeps `wo` in f32 and clamps infinities; we do not (use bf16 or f32).

use candle_core::{DType, Device, Module, Result, Tensor, bail};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Deserialize;

/// `transformers.UMT5Config` (the fields the encoder uses; the others in `config.json` are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub relative_attention_num_buckets: usize,
    pub relative_attention_max_distance: usize,
    pub layer_norm_epsilon: f64,
    /// `"gated-gelu"`, `"relu"`, `"gated-silu"`...: gating and activation unless the two fields below
    /// say otherwise (transformers lets them override it).
    pub feed_forward_proj: String,
    pub dense_act_fn: Option<String>,
    pub is_gated_act: Option<bool>,
    pub is_decoder: bool,
}

impl Default for Config {
    /// transformers' defaults.
    fn default() -> Self {
        Self {
            vocab_size: 250112,
            d_model: 512,
            d_kv: 64,
            d_ff: 1024,
            num_layers: 8,
            num_heads: 6,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
            feed_forward_proj: "gated-gelu".into(),
            dense_act_fn: None,
            is_gated_act: None,
            is_decoder: false,
        }
    }
}

impl Config {
    /// The feed-forward activation and whether it is gated, as `UMT5Config.__post_init__` derives them.
    fn feed_forward(&self) -> Result<(Activation, bool)> {
        let parts: Vec<&str> = self.feed_forward_proj.split('-').collect();
        let (gated, derived_act) = match parts.as_slice() {
            [act] => (false, *act),
            ["gated", act] => (true, *act),
            _ => bail!(
                "feed_forward_proj {:?} is not of the form `gated-{{ACT}}` or `{{ACT}}`",
                self.feed_forward_proj
            ),
        };
        let derived_act = if self.feed_forward_proj == "gated-gelu" {
            "gelu_new"
        } else {
            derived_act
        };
        let act = self.dense_act_fn.as_deref().unwrap_or(derived_act);
        Ok((
            Activation::from_name(act)?,
            self.is_gated_act.unwrap_or(gated),
        ))
    }

    fn validate(&self) -> Result<()> {
        if self.is_decoder {
            bail!(
                "is_decoder: the umT5 decoder (causal attention, cross-attention) is not implemented"
            );
        }
        if self.d_model == 0 || self.d_kv == 0 || self.num_heads == 0 || self.d_ff == 0 {
            bail!("d_model, d_kv, num_heads and d_ff must be positive");
        }
        let max_exact = self.relative_attention_num_buckets / 4;
        if max_exact == 0 || self.relative_attention_max_distance <= max_exact {
            bail!(
                "relative_attention_num_buckets {} / max_distance {}: need at least 4 buckets and a max distance \
                 above num_buckets / 4 (transformers divides by zero or indexes out of range otherwise)",
                self.relative_attention_num_buckets,
                self.relative_attention_max_distance
            );
        }
        Ok(())
    }

    /// T5's bidirectional relative position bucket of `relative_position` = key - query
    /// (`UMT5Attention._relative_position_bucket`, with its float32 logarithm).
    pub fn relative_position_bucket(&self, relative_position: i64) -> u32 {
        let num_buckets = (self.relative_attention_num_buckets / 2) as i64;
        let max_exact = num_buckets / 2;
        let direction = if relative_position > 0 {
            num_buckets
        } else {
            0
        };
        let distance = relative_position.abs();
        let bucket = if distance < max_exact {
            distance
        } else {
            let log_ratio = (distance as f32 / max_exact as f32).ln()
                / (self.relative_attention_max_distance as f64 / max_exact as f64).ln() as f32
                * (num_buckets - max_exact) as f32;
            (max_exact + log_ratio as i64).min(num_buckets - 1)
        };
        (direction + bucket) as u32
    }
}

/// The feed-forward activations of transformers' `ACT2FN` that umT5 configs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// `gelu`: the exact (erf) GELU.
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `silu` / `swish`.
    Silu,
}

impl Activation {
    fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "relu" => Self::Relu,
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Self::GeluTanh,
            "silu" | "swish" => Self::Silu,
            other => bail!(
                "dense activation {other:?} is not implemented (relu, gelu, gelu_new, silu are)"
            ),
        })
    }

    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Relu => xs.relu(),
            Self::Gelu => xs.gelu_erf(),
            Self::GeluTanh => xs.gelu(),
            Self::Silu => xs.silu(),
        }
    }
}

/// T5's RMS norm (`UMT5LayerNorm`).
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(size: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            eps,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        if xs.dtype() == DType::F32 {
            candle_nn::ops::rms_norm(xs, &self.weight, self.eps as f32)
        } else {
            // Statistics in f32, the normalized value rounded to the weight dtype, then scaled, as
            // transformers does in half precision.
            candle_nn::ops::rms_norm_slow(xs, &self.weight, self.eps as f32)
        }
    }
}

/// `UMT5Attention` of an encoder layer, with its own relative position bias.
#[derive(Debug, Clone)]
struct SelfAttention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    relative_attention_bias: Embedding,
    num_heads: usize,
    d_kv: usize,
}

impl SelfAttention {
    fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let inner = cfg.num_heads * cfg.d_kv;
        Ok(Self {
            q: candle_nn::linear_no_bias(cfg.d_model, inner, vb.pp("q"))?,
            k: candle_nn::linear_no_bias(cfg.d_model, inner, vb.pp("k"))?,
            v: candle_nn::linear_no_bias(cfg.d_model, inner, vb.pp("v"))?,
            o: candle_nn::linear_no_bias(inner, cfg.d_model, vb.pp("o"))?,
            relative_attention_bias: candle_nn::embedding(
                cfg.relative_attention_num_buckets,
                cfg.num_heads,
                vb.pp("relative_attention_bias"),
            )?,
            num_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
        })
    }

    /// `xs` [B, L, d_model]; `buckets` [L * L] u32 (query-major); `mask` [B, 1, 1, L] f32, 0 or f32::MIN.
    fn forward(&self, xs: &Tensor, buckets: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (batch, length, _) = xs.dims3()?;
        let heads = |projection: &Linear| -> Result<Tensor> {
            projection
                .forward(xs)?
                .reshape((batch, length, self.num_heads, self.d_kv))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (heads(&self.q)?, heads(&self.k)?, heads(&self.v)?);
        // [H, L, L] position bias, f32 like the scores, gathered from the [H, buckets] table so that it
        // comes out contiguous.
        let bias = self
            .relative_attention_bias
            .embeddings()
            .to_dtype(DType::F32)?
            .t()?
            .contiguous()?
            .index_select(buckets, 1)?
            .reshape((self.num_heads, length, length))?;
        // No 1/sqrt(d_kv) scaling in T5.
        let scores = q
            .matmul(&k.t()?)?
            .to_dtype(DType::F32)?
            .broadcast_add(&bias)?
            .broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        let attended = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch, length, ()))?;
        self.o.forward(&attended)
    }
}

/// `UMT5DenseGatedActDense` (`wi_0`, `wi_1`, `wo`) or `UMT5DenseActDense` (`wi`, `wo`).
#[derive(Debug, Clone)]
enum FeedForward {
    Gated {
        wi_0: Linear,
        wi_1: Linear,
        wo: Linear,
        act: Activation,
    },
    Plain {
        wi: Linear,
        wo: Linear,
        act: Activation,
    },
}

impl FeedForward {
    fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (act, gated) = cfg.feed_forward()?;
        let wo = candle_nn::linear_no_bias(cfg.d_ff, cfg.d_model, vb.pp("wo"))?;
        let wi = |name: &str| candle_nn::linear_no_bias(cfg.d_model, cfg.d_ff, vb.pp(name));
        Ok(if gated {
            Self::Gated {
                wi_0: wi("wi_0")?,
                wi_1: wi("wi_1")?,
                wo,
                act,
            }
        } else {
            Self::Plain {
                wi: wi("wi")?,
                wo,
                act,
            }
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Self::Gated {
                wi_0,
                wi_1,
                wo,
                act,
            } => wo.forward(&(act.apply(&wi_0.forward(xs)?)? * wi_1.forward(xs)?)?),
            Self::Plain { wi, wo, act } => wo.forward(&act.apply(&wi.forward(xs)?)?),
        }
    }
}

/// `UMT5Block` of the encoder: `layer.0` self-attention, `layer.1` feed-forward, both pre-norm residual.
#[derive(Debug, Clone)]
struct Block {
    attention_norm: LayerNorm,
    attention: SelfAttention,
    feed_forward_norm: LayerNorm,
    feed_forward: FeedForward,
}

impl Block {
    fn load(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (attention, feed_forward) = (vb.pp("layer.0"), vb.pp("layer.1"));
        Ok(Self {
            attention_norm: LayerNorm::load(
                cfg.d_model,
                cfg.layer_norm_epsilon,
                attention.pp("layer_norm"),
            )?,
            attention: SelfAttention::load(cfg, attention.pp("SelfAttention"))?,
            feed_forward_norm: LayerNorm::load(
                cfg.d_model,
                cfg.layer_norm_epsilon,
                feed_forward.pp("layer_norm"),
            )?,
            feed_forward: FeedForward::load(cfg, feed_forward.pp("DenseReluDense"))?,
        })
    }

    fn forward(&self, xs: &Tensor, buckets: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let attended = self
            .attention
            .forward(&self.attention_norm.forward(xs)?, buckets, mask)?;
        let xs = (xs + attended)?;
        let fed = self
            .feed_forward
            .forward(&self.feed_forward_norm.forward(&xs)?)?;
        xs + fed
    }
}

/// `transformers.UMT5EncoderModel`.
#[derive(Debug, Clone)]
pub struct UMT5EncoderModel {
    shared: Embedding,
    blocks: Vec<Block>,
    final_layer_norm: LayerNorm,
    config: Config,
}

impl UMT5EncoderModel {
    /// Tensor names as transformers saves them: `shared.weight` (or `encoder.embed_tokens.weight`, the
    /// tied copy some checkpoints hold instead), `encoder.block.{i}.layer.{0,1}...`,
    /// `encoder.final_layer_norm.weight`.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        cfg.validate()?;
        let embedding = if vb.contains_tensor("shared.weight") {
            "shared"
        } else {
            "encoder.embed_tokens"
        };
        let shared = candle_nn::embedding(cfg.vocab_size, cfg.d_model, vb.pp(embedding))?;
        let encoder = vb.pp("encoder");
        let blocks = (0..cfg.num_layers)
            .map(|i| Block::load(cfg, encoder.pp(format!("block.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_norm = LayerNorm::load(
            cfg.d_model,
            cfg.layer_norm_epsilon,
            encoder.pp("final_layer_norm"),
        )?;
        Ok(Self {
            shared,
            blocks,
            final_layer_norm,
            config: cfg.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// `input_ids` [B, L] (u32 or i64), `attention_mask` [B, L] (nonzero = real token, any dtype) ->
    /// `last_hidden_state` [B, L, d_model], padded positions included.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: &Tensor) -> Result<Tensor> {
        let (batch, length) = input_ids.dims2()?;
        if length == 0 {
            bail!("input_ids hold no token");
        }
        if attention_mask.dims() != input_ids.dims() {
            bail!(
                "attention_mask {:?} does not match input_ids {:?}",
                attention_mask.shape(),
                input_ids.shape()
            );
        }
        if !matches!(input_ids.dtype(), DType::U32 | DType::I64) {
            bail!("input_ids must be u32 or i64, got {:?}", input_ids.dtype());
        }
        // Checked here: an out-of-range gather is not an error on every device.
        let ids = input_ids.flatten_all()?.to_dtype(DType::I64)?;
        let (lowest, highest) = (
            ids.min(0)?.to_scalar::<i64>()?,
            ids.max(0)?.to_scalar::<i64>()?,
        );
        if lowest < 0 || highest >= self.config.vocab_size as i64 {
            bail!(
                "token ids span [{lowest}, {highest}], the vocabulary has {} entries",
                self.config.vocab_size
            );
        }
        let device = input_ids.device();
        let buckets = self.buckets(length, device)?;
        // Additive mask over the keys: 0 where attended, the lowest f32 elsewhere (as transformers).
        let mask = attention_mask
            .ne(0f64)?
            .where_cond(
                &Tensor::zeros((), DType::F32, device)?.broadcast_as((batch, length))?,
                &Tensor::new(f32::MIN, device)?.broadcast_as((batch, length))?,
            )?
            .reshape((batch, 1, 1, length))?;
        let mut xs = self.shared.forward(input_ids)?;
        for block in &self.blocks {
            xs = block.forward(&xs, &buckets, &mask)?;
        }
        self.final_layer_norm.forward(&xs)
    }

    /// The pipeline's `_get_t5_prompt_embeds`: [`Self::forward`], then each row cut to its number of
    /// mask > 0 tokens and zero-padded to `max_sequence_length` -> [B, max_sequence_length, d_model].
    pub fn encode_prompt(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        max_sequence_length: usize,
    ) -> Result<Tensor> {
        let hidden = self.forward(input_ids, attention_mask)?;
        let (batch, length, d_model) = hidden.dims3()?;
        let lengths = attention_mask
            .gt(0f64)?
            .to_dtype(DType::U32)?
            .sum(1)?
            .to_vec1::<u32>()?;
        if let Some(&too_long) = lengths.iter().find(|&&n| n as usize > max_sequence_length) {
            bail!("{too_long} tokens do not fit max_sequence_length {max_sequence_length}");
        }
        let kept = length.min(max_sequence_length);
        let keep: Vec<u8> = lengths
            .iter()
            .flat_map(|&n| (0..kept).map(move |position| u8::from(position < n as usize)))
            .collect();
        let shape = (batch, kept, d_model);
        let keep =
            Tensor::from_vec(keep, (batch, kept, 1), hidden.device())?.broadcast_as(shape)?;
        let zeros = Tensor::zeros((), hidden.dtype(), hidden.device())?.broadcast_as(shape)?;
        keep.where_cond(&hidden.narrow(1, 0, kept)?, &zeros)?
            .pad_with_zeros(1, 0, max_sequence_length - kept)
    }

    /// Bucket of every (query, key) pair, query-major, shared by all layers.
    fn buckets(&self, length: usize, device: &Device) -> Result<Tensor> {
        let length = length as i64;
        let by_offset: Vec<u32> = (1 - length..length)
            .map(|offset| self.config.relative_position_bucket(offset))
            .collect();
        let buckets: Vec<u32> = (0..length)
            .flat_map(|query| (0..length).map(move |key| (key - query + length - 1) as usize))
            .map(|index| by_offset[index])
            .collect();
        Tensor::from_vec(buckets, (length * length) as usize, device)
    }
}
