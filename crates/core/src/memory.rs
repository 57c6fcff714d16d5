//! How much memory a generation takes, estimated before it starts from the model folder's
//! configs and weight headers, so that a run that cannot fit is refused against the budget
//! ([`crate::limits::budget`]) before anything is allocated for it: a failed allocation inside
//! the model aborts the process (a CLI run, or the whole host of the OpenFX plugin).
//!
//! The estimate is a model of the largest live tensors, not a measurement: the transformer's
//! hidden states (with every VACE hint kept for the main blocks), its feed-forward activations
//! and attention score blocks, and the VAE's full-resolution feature maps. Allocations inside
//! the model are not fallible, so a need the estimate misses still aborts.
//!
//! The VAE's maps grow with the frame size (tens of GiB at 1080p), so the VAE runs in spatial
//! tiles ([`vae_tiling`]) when whole frames would not fit the budget; a run's estimate counts
//! the VAE at its tiled peak, the least it needs.

use std::path::Path;

use candle_core::DType;
use soragen_models::transformer;
use soragen_models::vae::{self, Tiling};
use soragen_models::weights::{Weights, read_config};

use crate::Result;
use crate::limits;

/// Elements of one attention score block (the transformer's `ATTENTION_SCORE_BLOCK`), alive
/// twice (scores and probabilities).
const ATTENTION_BLOCK: u64 = 1 << 24;
/// Transformer hidden states `[batch, tokens, dim]` alive within a block besides the VACE
/// hints: input, norm output, q, k, v, attention output, residual, cross-attention output.
const HIDDEN_MAPS: u64 = 8;
/// Full-resolution VAE feature maps (chunks of 4 frames) alive at the VAE's peak, im2col
/// buffers of its convolutions included. Calibrated on the decode benchmark (BENCHMARKS.md:
/// 128x128, base width 96, peak RSS less the weights).
const VAE_MAPS: u64 = 24;
/// Frames the VAE works on at a time.
const VAE_CHUNK_FRAMES: u64 = 4;
/// Bytes per element of the VAE's activations: it runs in f32 whatever the model's dtype.
const VAE_ELEMENT: u64 = 4;
/// Rows of decoded tiles a tiled VAE pass holds for blending: the row above and this one.
const VAE_TILE_ROWS: u64 = 2;
/// Full-size frame tensors of one run, 3 channels in f32: the frames, the masks, the two VACE
/// context halves and the output.
const FRAME_MAPS: u64 = 5;
/// The text encoder's run and the scheduler: small next to the rest.
const FIXED: u64 = 256 << 20;

/// The sizes of a model that decide how much memory a run takes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSizes {
    pub dim: u64,
    pub ffn_dim: u64,
    pub vace_layers: u64,
    /// Latent patch side and the VAE's spatial and temporal compression.
    pub patch: usize,
    pub spatial: usize,
    pub temporal: usize,
    /// Channels of the VAE's full-resolution feature maps (encoder or decoder, the wider).
    pub vae_channels: u64,
    /// Bytes per element of the weights and activations (the dtype the model runs in).
    pub element: u64,
    /// Bytes of all weights once loaded in that dtype.
    pub weights: u64,
}

/// One model run: `frames` frames (4n+1) plus `references` reference images at `width` x
/// `height`, the size the model works at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Run {
    pub frames: usize,
    pub references: usize,
    pub width: usize,
    pub height: usize,
    /// Classifier-free guidance runs the transformer on a batch of two.
    pub guidance: bool,
}

/// One window of an editing task, as the host sees it (the clip's size, not the model's):
/// `crate::tasks::window_activations` estimates it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Frames of the clip the window covers (generated and conditioning frames).
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    /// Frames per model window (a longer task runs several, one after the other).
    pub window_frames: usize,
    pub guidance: bool,
}

impl ModelSizes {
    /// Reads the sizes from a diffusers model folder (its configs and weight headers) for a
    /// model run in `dtype`.
    pub fn read(folder: &Path, dtype: DType) -> Result<Self> {
        let t: transformer::Config = read_config(&folder.join("transformer/config.json"))?;
        let v: vae::Config = read_config(&folder.join("vae/config.json"))?;
        let element = dtype.size_in_bytes() as u64;
        let mut weights = 0u64;
        for part in ["text_encoder", "transformer", "vae"] {
            let elements = Weights::open_dir(&folder.join(part))?.elements();
            weights = weights.saturating_add(elements.saturating_mul(element));
        }
        Ok(Self {
            dim: (t.num_attention_heads * t.attention_head_dim) as u64,
            ffn_dim: t.ffn_dim as u64,
            vace_layers: t.vace_layers.as_ref().map_or(0, Vec::len) as u64,
            patch: t.patch_size[1],
            spatial: v.spatial_compression(),
            temporal: v.temporal_compression(),
            vae_channels: vae_channels(&v),
            element,
            weights,
        })
    }

    /// Peak bytes of one run's activations and frame tensors (saturating: a size too large
    /// to count never fits).
    pub fn run_activations(&self, run: &Run) -> u64 {
        let multiple = (self.spatial * self.patch).max(1) as u64;
        let temporal = self.temporal.max(1);
        let latent_frames = (run.frames.max(1) - 1).div_ceil(temporal) as u64 + 1;
        let tokens = (latent_frames + run.references as u64)
            .saturating_mul((run.height as u64).div_ceil(multiple))
            .saturating_mul((run.width as u64).div_ceil(multiple));
        let batch = if run.guidance { 2 } else { 1 };
        let product = |factors: &[u64]| {
            factors
                .iter()
                .fold(1u64, |product, &f| product.saturating_mul(f))
        };
        let hidden = product(&[batch, tokens, self.dim, HIDDEN_MAPS + self.vace_layers]);
        let feed_forward = product(&[2, batch, tokens, self.ffn_dim]);
        let transformer = product(&[
            hidden
                .saturating_add(feed_forward)
                .saturating_add(2 * ATTENTION_BLOCK),
            self.element,
        ]);
        let vae = vae_activations(self.vae_channels, run.frames, run.width, run.height, None).min(
            vae_activations(
                self.vae_channels,
                run.frames,
                run.width,
                run.height,
                Some(&Tiling::default()),
            ),
        );
        transformer
            .max(vae)
            .saturating_add(frame_tensors(run))
            .saturating_add(FIXED)
    }
}

/// Channels of a VAE's full-resolution feature maps (encoder or decoder, the wider).
pub fn vae_channels(config: &vae::Config) -> u64 {
    let widest_level = *config.dim_mult.first().unwrap_or(&1) as u64;
    config.base_dim.max(config.decoder_base_dim.unwrap_or(0)) as u64 * widest_level
}

/// Peak bytes of the VAE's activations (encoding or decoding) on `frames` frames of `width` x
/// `height` pixels, on whole frames or in `tiling`'s tiles: its feature maps at the size of a
/// frame or a tile, and with tiles the decoded rows of tiles held for blending (the frames
/// themselves are [`frame_tensors`]). Saturating.
pub fn vae_activations(
    channels: u64,
    frames: usize,
    width: usize,
    height: usize,
    tiling: Option<&Tiling>,
) -> u64 {
    let product = |factors: &[u64]| {
        factors
            .iter()
            .fold(1u64, |product, &f| product.saturating_mul(f))
    };
    let maps = |pixels: usize| {
        product(&[
            VAE_MAPS,
            channels,
            VAE_CHUNK_FRAMES,
            pixels as u64,
            VAE_ELEMENT,
        ])
    };
    match tiling {
        None => maps(width.saturating_mul(height)),
        Some(tiling) => {
            // A row of tiles spans the width once plus the overlaps, 3 channels per pixel.
            let row_width = (width as u64).saturating_mul(tiling.tile_sample_min_width as u64)
                / tiling.tile_sample_stride_width.max(1) as u64;
            let rows = product(&[
                VAE_TILE_ROWS,
                frames as u64,
                tiling.tile_sample_min_height.min(height) as u64,
                row_width.max(width as u64),
                3 * VAE_ELEMENT,
            ]);
            maps(tiling.tile_pixels(width, height)).saturating_add(rows)
        }
    }
}

/// How the VAE runs on `frames` frames of `width` x `height` pixels: on whole frames (`None`)
/// when their activations fit in `available` bytes or nothing says what is available, else in
/// diffusers' default tiles (256 x 256 pixels every 192).
pub fn vae_tiling(
    channels: u64,
    frames: usize,
    width: usize,
    height: usize,
    available: Option<u64>,
) -> Option<Tiling> {
    let whole = vae_activations(channels, frames, width, height, None);
    match available {
        Some(available) if whole > available => Some(Tiling::default()),
        _ => None,
    }
}

/// Bytes of a run's full-size frame tensors (f32, 3 channels), held in host memory whatever
/// the device.
pub fn frame_tensors(run: &Run) -> u64 {
    [
        FRAME_MAPS,
        run.frames.saturating_add(run.references) as u64,
        run.width as u64,
        run.height as u64,
        3 * 4,
    ]
    .iter()
    .fold(1u64, |product, &f| product.saturating_mul(f))
}

/// The pre-flight of one VACE run (`soragen vace`) before its model loads: the frame count and
/// size in range, and what the run takes within the memory budget. On the host (`on_host`)
/// that is the weights plus the run's activations; a GPU holds those in its own memory, so
/// then only the frame tensors count.
pub fn check_run(folder: &Path, dtype: DType, run: &Run, on_host: bool) -> Result<()> {
    limits::FRAMES.request(run.frames)?;
    limits::frame_size("the clip", run.width, run.height)?;
    // A folder whose sizes cannot be read does not load either, and the loader says why better.
    let need = match ModelSizes::read(folder, dtype) {
        Ok(sizes) if on_host => sizes.run_activations(run).saturating_add(sizes.weights),
        _ => frame_tensors(run),
    };
    limits::fits("this run", need)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Wan2.1-VACE 1.3B's sizes in f32 (weights left out).
    pub(crate) fn wan_1_3b() -> ModelSizes {
        ModelSizes {
            dim: 1536,
            ffn_dim: 8960,
            vace_layers: 15,
            patch: 2,
            spatial: 8,
            temporal: 4,
            vae_channels: 96,
            element: 4,
            weights: 0,
        }
    }

    fn gib(bytes: u64) -> f64 {
        bytes as f64 / (1u64 << 30) as f64
    }

    #[test]
    fn the_need_at_480p_is_gibs_not_megabytes_nor_terabytes() {
        let sizes = wan_1_3b();
        let run = |frames, guidance| {
            sizes.run_activations(&Run {
                frames,
                references: 0,
                width: 832,
                height: 480,
                guidance,
            })
        };
        // A short window without guidance: the VAE decides, at its tiled peak, far below its
        // whole frames' maps.
        let tiled = vae_activations(96, 17, 832, 480, Some(&Tiling::default()));
        let whole = vae_activations(96, 17, 832, 480, None);
        assert!(tiled * 4 < whole, "{} vs {}", gib(tiled), gib(whole));
        assert!((tiled..whole).contains(&run(17, false)));
        let full = run(81, true);
        assert!((8.0..64.0).contains(&gib(full)), "{}", gib(full));
    }

    #[test]
    fn whole_frames_where_they_fit_tiles_where_they_do_not() {
        let budget = Some(8 << 30);
        assert_eq!(vae_tiling(96, 81, 256, 256, budget), None);
        assert_eq!(
            vae_tiling(96, 81, 832, 480, budget),
            Some(Tiling::default())
        );
        assert_eq!(
            vae_tiling(96, 81, 1920, 1088, budget),
            Some(Tiling::default())
        );
        assert_eq!(vae_tiling(96, 81, 832, 480, Some(64 << 30)), None);
        assert_eq!(vae_tiling(96, 81, 1920, 1088, None), None, "nothing known");
        // Tiled, 1080p fits that budget and costs little more than 720p; whole frames grow
        // with the pixels.
        let tiled = |w, h| vae_activations(96, 81, w, h, Some(&Tiling::default()));
        let whole = |w, h| vae_activations(96, 81, w, h, None);
        assert!(tiled(1920, 1088) < 8 << 30, "{}", gib(tiled(1920, 1088)));
        assert!(tiled(1920, 1088) < tiled(1280, 720) * 3 / 2);
        assert!(whole(1920, 1088) > 5 * whole(832, 480));
        assert!(whole(1920, 1088) > 8 * tiled(1920, 1088));
        // A frame within one tile: tiles cost what whole frames cost, and a little more.
        assert!(tiled(256, 256) >= whole(256, 256));
        assert!(tiled(256, 256) < whole(256, 256) * 11 / 10);
    }

    #[test]
    fn a_run_at_its_full_size_counts_references_and_never_overflows() {
        let sizes = ModelSizes {
            vae_channels: 8,
            ..wan_1_3b()
        };
        let run = Run {
            frames: 17,
            references: 0,
            width: 832,
            height: 480,
            guidance: true,
        };
        let with_reference = Run {
            references: 1,
            ..run
        };
        assert!(sizes.run_activations(&with_reference) > sizes.run_activations(&run));
        // A vace run is not resized: 4K needs far more than the same clip at 480p.
        let large = Run {
            width: 3840,
            height: 2160,
            ..run
        };
        assert!(sizes.run_activations(&large) > 10 * sizes.run_activations(&run));
        let huge = Run {
            frames: usize::MAX,
            references: usize::MAX / 2,
            width: usize::MAX,
            height: usize::MAX,
            guidance: true,
        };
        assert_eq!(sizes.run_activations(&huge), u64::MAX);
    }

    #[test]
    fn the_tiny_model_sizes_come_from_its_folder() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
        let sizes = ModelSizes::read(&folder, DType::F32).unwrap();
        assert_eq!(
            (
                sizes.dim,
                sizes.ffn_dim,
                sizes.vace_layers,
                sizes.patch,
                sizes.spatial,
                sizes.temporal
            ),
            (32, 64, 2, 2, 8, 4)
        );
        let bytes_on_disk: u64 = ["text_encoder", "transformer", "vae"]
            .iter()
            .flat_map(|part| std::fs::read_dir(folder.join(part)).unwrap().flatten())
            .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        // The tiny model is stored in f32: its weights take about their files' size.
        assert!(
            sizes.weights <= bytes_on_disk && sizes.weights * 10 > bytes_on_disk * 9,
            "{} vs {bytes_on_disk}",
            sizes.weights
        );
        let half = ModelSizes::read(&folder, DType::BF16).unwrap();
        assert_eq!(half.weights * 2, sizes.weights);
        let error = ModelSizes::read(Path::new("/nonexistent"), DType::F32).unwrap_err();
        assert!(error.to_string().contains("/nonexistent"), "{error}");
    }
}
