//! 3-D rotary position embedding of Wan (diffusers `WanRotaryPosEmbed`).
//!
//! Each head's `Dh / 2` rotation pairs (adjacent elements) are split over the three latent
//! axes: `Dh / 6` pairs each for height and width, the rest for time. Pair `i` of an axis that
//! owns `n` pairs turns by `position / theta^(i / n)`; positions are patch-grid indices.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Tensor, bail};

const THETA: f64 = 10_000.0;

/// cos/sin tables `[F * H * W, Dh / 2]` (f32) for one patch grid.
pub(super) struct RopeTables {
    cos: Tensor,
    sin: Tensor,
    /// The same tables times the attention scale `1 / sqrt(Dh)`, so rotating the queries also
    /// scales them.
    scaled_cos: Tensor,
    scaled_sin: Tensor,
}

impl RopeTables {
    fn rotate(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        candle_nn::rotary_emb::rope_i(&x.to_dtype(DType::F32)?, cos, sin)?.to_dtype(x.dtype())
    }

    /// Rotates and scales queries `[B, H, L, Dh]` (contiguous).
    pub fn rotate_query(&self, q: &Tensor) -> Result<Tensor> {
        Self::rotate(q, &self.scaled_cos, &self.scaled_sin)
    }

    /// Rotates keys `[B, H, L, Dh]` (contiguous).
    pub fn rotate_key(&self, k: &Tensor) -> Result<Tensor> {
        Self::rotate(k, &self.cos, &self.sin)
    }
}

/// Builds the tables on first use for each patch grid and keeps them.
pub(super) struct Rope {
    head_dim: usize,
    max_positions: usize,
    device: Device,
    cache: Mutex<HashMap<(usize, usize, usize), Arc<RopeTables>>>,
}

impl Rope {
    pub fn new(head_dim: usize, max_positions: usize, device: &Device) -> Self {
        Self {
            head_dim,
            max_positions,
            device: device.clone(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn tables(&self, grid: (usize, usize, usize)) -> Result<Arc<RopeTables>> {
        // The cache only ever holds finished tables, so a poisoned lock is still usable.
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tables) = cache.get(&grid) {
            return Ok(tables.clone());
        }
        let tables = Arc::new(self.build(grid)?);
        cache.insert(grid, tables.clone());
        Ok(tables)
    }

    fn build(&self, (frames, height, width): (usize, usize, usize)) -> Result<RopeTables> {
        if frames.max(height).max(width) > self.max_positions {
            bail!(
                "patch grid {frames}x{height}x{width} exceeds rope_max_seq_len {}",
                self.max_positions
            )
        }
        let pairs = self.head_dim / 2;
        let spatial_pairs = self.head_dim / 6;
        let axis_pairs = [pairs - 2 * spatial_pairs, spatial_pairs, spatial_pairs];
        // Angle per unit position of every pair, axis by axis (f64 like the reference).
        let axis_freqs: Vec<Vec<f64>> = axis_pairs
            .iter()
            .map(|&n| {
                (0..n)
                    .map(|i| 1.0 / THETA.powf((2 * i) as f64 / (2 * n) as f64))
                    .collect()
            })
            .collect();

        let tokens = frames * height * width;
        let mut cos = Vec::with_capacity(tokens * pairs);
        let mut sin = Vec::with_capacity(tokens * pairs);
        for f in 0..frames {
            for h in 0..height {
                for w in 0..width {
                    for (position, freqs) in [f, h, w].into_iter().zip(&axis_freqs) {
                        for freq in freqs {
                            let angle = position as f64 * freq;
                            cos.push(angle.cos() as f32);
                            sin.push(angle.sin() as f32);
                        }
                    }
                }
            }
        }
        let cos = Tensor::from_vec(cos, (tokens, pairs), &self.device)?;
        let sin = Tensor::from_vec(sin, (tokens, pairs), &self.device)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        Ok(RopeTables {
            scaled_cos: (&cos * scale)?,
            scaled_sin: (&sin * scale)?,
            cos,
            sin,
        })
    }
}
