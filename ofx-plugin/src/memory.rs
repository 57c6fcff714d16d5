//! Whether a generation fits in memory, checked before it starts. A failed allocation inside
//! the model aborts the whole host process, so before generating a window the plugin estimates
//! its peak need (the weights when the model is not loaded yet, plus the window's activations)
//! and refuses with `kOfxStatErrMemory` when that exceeds the memory the machine has available,
//! the headroom under the process's cgroup limit, or `SORAGEN_MAX_MEMORY`.
//!
//! The estimate is a model of the largest live tensors, not a measurement: the transformer's
//! hidden states (with every VACE hint kept for the main blocks), its feed-forward activations
//! and attention score blocks, and the VAE's full-resolution feature maps. The plugin's own
//! buffers are allocated fallibly ([`zeroed`]); allocations inside the model are not, so a need
//! the estimate misses still aborts.

use std::fmt;
use std::io::Read;
use std::path::Path;

use soragen_core::tasks::{NATIVE_PIXELS, working_size};
use soragen_models::transformer;
use soragen_models::vae;
use soragen_models::weights::read_config;

/// Environment variable capping the memory one generation may take: bytes, or a number with
/// K, M, G or T (powers of 1024), e.g. `16G`.
pub const MAX_MEMORY_ENV: &str = "SORAGEN_MAX_MEMORY";

/// Bytes per element: the plugin runs the model in f32.
const ELEMENT: u64 = 4;
/// Elements of one attention score block (the transformer's `ATTENTION_SCORE_BLOCK`), alive in
/// f32 twice (scores and probabilities).
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
/// The text encoder's run, the scheduler and the frames themselves: small next to the rest.
const FIXED: u64 = 256 << 20;

/// The sizes of a model that decide how much memory a window takes.
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
    /// Bytes of all weights once loaded in f32.
    pub weights: u64,
}

/// One generation as the model runs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Frames of the clip the window covers (generated and conditioning frames).
    pub frames: usize,
    pub width: usize,
    pub height: usize,
    /// Frames per model window (a longer task runs several, one after the other).
    pub window_frames: usize,
    /// Classifier-free guidance runs the transformer on a batch of two.
    pub guidance: bool,
}

fn model_error(folder: &Path, what: impl fmt::Display) -> String {
    format!("{}: {what}", folder.display())
}

impl ModelSizes {
    /// Reads the sizes from a diffusers model folder: the configs and the safetensors headers.
    pub fn read(folder: &Path) -> Result<Self, String> {
        let transformer_dir = folder.join("transformer");
        let t: transformer::Config = read_config(&transformer_dir.join("config.json"))
            .map_err(|e| model_error(folder, e))?;
        let v: vae::Config =
            read_config(&folder.join("vae/config.json")).map_err(|e| model_error(folder, e))?;
        let widest_level = *v.dim_mult.first().unwrap_or(&1) as u64;
        let mut weights = 0;
        for part in ["text_encoder", "transformer", "vae"] {
            weights += stored_elements(&folder.join(part))? * ELEMENT;
        }
        Ok(Self {
            dim: (t.num_attention_heads * t.attention_head_dim) as u64,
            ffn_dim: t.ffn_dim as u64,
            vace_layers: t.vace_layers.as_ref().map_or(0, Vec::len) as u64,
            patch: t.patch_size[1],
            spatial: v.spatial_compression(),
            temporal: v.temporal_compression(),
            vae_channels: v.base_dim.max(v.decoder_base_dim.unwrap_or(0)) as u64 * widest_level,
            weights,
        })
    }

    /// Peak bytes of the window's activations.
    pub fn activations(&self, window: &Window) -> u64 {
        let multiple = self.spatial * self.patch;
        let pixels = NATIVE_PIXELS.min(window.width * window.height);
        let (width, height) = working_size(window.width, window.height, pixels, multiple);
        // One model window: 4n+1 frames, at most window_frames.
        let temporal = self.temporal.max(1);
        let frames = ((window.frames.max(1) - 1).div_ceil(temporal) * temporal + 1)
            .min(window.window_frames.max(1));
        let latent_frames = ((frames - 1) / temporal + 1) as u64;
        let tokens = latent_frames * (height / multiple) as u64 * (width / multiple) as u64;
        let batch = if window.guidance { 2 } else { 1 };
        let hidden = batch * tokens * self.dim * (HIDDEN_MAPS + self.vace_layers);
        let feed_forward = 2 * batch * tokens * self.ffn_dim;
        let transformer = (hidden + feed_forward + 2 * ATTENTION_BLOCK) * ELEMENT;
        let vae =
            VAE_MAPS * self.vae_channels * VAE_CHUNK_FRAMES * (width * height) as u64 * ELEMENT;
        transformer.max(vae) + FIXED
    }
}

/// Elements in the safetensors files of a model part folder, from their headers.
fn stored_elements(dir: &Path) -> Result<u64, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| model_error(dir, e))?;
    let mut elements = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            elements += header_elements(&path).map_err(|e| model_error(&path, e))?;
        }
    }
    Ok(elements)
}

fn header_elements(path: &Path) -> Result<u64, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut length = [0u8; 8];
    file.read_exact(&mut length).map_err(|e| e.to_string())?;
    let length = usize::try_from(u64::from_le_bytes(length)).map_err(|e| e.to_string())?;
    let mut header = Vec::new();
    file.take(length as u64)
        .read_to_end(&mut header)
        .map_err(|e| e.to_string())?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| format!("not a safetensors file ({e})"))?;
    let shape_elements = |tensor: &serde_json::Value| -> u64 {
        tensor["shape"].as_array().map_or(0, |dims| {
            dims.iter().map(|d| d.as_u64().unwrap_or(0)).product()
        })
    };
    Ok(header
        .iter()
        .filter(|(name, _)| *name != "__metadata__")
        .map(|(_, t)| shape_elements(t))
        .sum())
}

/// A size such as `16G`, `512M` or `1048576` (powers of 1024; a trailing `B` or `iB` allowed).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text
        .strip_suffix("iB")
        .or_else(|| text.strip_suffix('B'))
        .unwrap_or(text);
    let (number, shift) = match text.chars().last()?.to_ascii_uppercase() {
        'K' => (&text[..text.len() - 1], 10),
        'M' => (&text[..text.len() - 1], 20),
        'G' => (&text[..text.len() - 1], 30),
        'T' => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)?;
    Some((value * (1u64 << shift) as f64) as u64)
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// Headroom under a cgroup limit from its limit and usage files' contents (`max`, or a limit
/// too large to be one, means none).
pub fn cgroup_headroom(limit: &str, usage: &str) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok().filter(|l| *l < 1 << 60)?;
    let usage: u64 = usage.trim().parse().ok()?;
    Some(limit.saturating_sub(usage))
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The least headroom under the memory limits of this process's cgroups (v2: its own group and
/// every parent; v1: the memory controller's group).
fn cgroup_available() -> Option<u64> {
    let groups = read(Path::new("/proc/self/cgroup"))?;
    let mut least: Option<u64> = None;
    let mut consider = |headroom: Option<u64>| {
        if let Some(h) = headroom {
            least = Some(least.map_or(h, |l| l.min(h)));
        }
    };
    for line in groups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if id == "0" && controllers.is_empty() {
            let mut dir = Path::new("/sys/fs/cgroup").join(path);
            loop {
                consider(cgroup_headroom(
                    &read(&dir.join("memory.max")).unwrap_or_default(),
                    &read(&dir.join("memory.current")).unwrap_or_default(),
                ));
                if !dir.pop() || dir == Path::new("/sys/fs") {
                    break;
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            // Inside a cgroup namespace the group's own folder is the mount's root.
            let root = Path::new("/sys/fs/cgroup/memory");
            let dir = [root.join(path), root.to_path_buf()]
                .into_iter()
                .find(|d| d.join("memory.limit_in_bytes").is_file());
            if let Some(dir) = dir {
                consider(cgroup_headroom(
                    &read(&dir.join("memory.limit_in_bytes")).unwrap_or_default(),
                    &read(&dir.join("memory.usage_in_bytes")).unwrap_or_default(),
                ));
            }
        }
    }
    least
}

/// What one generation may use now, and what limits it.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub bytes: u64,
    pub limited_by: &'static str,
}

/// The memory a generation may take now: the least of the machine's available memory, the
/// cgroup headroom and `SORAGEN_MAX_MEMORY`. None when nothing says (no /proc, no variable).
pub fn budget() -> Result<Option<Budget>, String> {
    let mut budgets = Vec::new();
    if let Ok(text) = std::env::var(MAX_MEMORY_ENV) {
        let bytes = parse_size(&text)
            .ok_or_else(|| format!("{MAX_MEMORY_ENV}={text} is not a size (e.g. 16G)"))?;
        budgets.push(Budget {
            bytes,
            limited_by: MAX_MEMORY_ENV,
        });
    }
    if let Some(bytes) = read(Path::new("/proc/meminfo"))
        .as_deref()
        .and_then(mem_available)
    {
        budgets.push(Budget {
            bytes,
            limited_by: "the memory available on this machine",
        });
    }
    if let Some(bytes) = cgroup_available() {
        budgets.push(Budget {
            bytes,
            limited_by: "this process's memory limit (cgroup)",
        });
    }
    Ok(budgets.into_iter().min_by_key(|b| b.bytes))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Refuses, with a message saying what to change, when `need` bytes exceed the budget.
pub fn check(need: u64, budget: Option<&Budget>) -> Result<(), String> {
    match budget {
        Some(budget) if need > budget.bytes => Err(format!(
            "not enough memory: this generation needs about {} but {} allows {}; lower Frames, render at a smaller size, or set Guidance to 1",
            gib(need),
            budget.limited_by,
            gib(budget.bytes)
        )),
        _ => Ok(()),
    }
}

/// An allocation the plugin could not make.
#[derive(Debug, PartialEq)]
pub struct OutOfMemory {
    pub bytes: usize,
}

impl fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not enough memory for a frame buffer of {} bytes",
            self.bytes
        )
    }
}

/// `len` zero bytes, or an error instead of aborting when the allocation fails.
pub fn zeroed(len: usize) -> Result<Vec<u8>, OutOfMemory> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|_| OutOfMemory { bytes: len })?;
    buffer.resize(len, 0);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wan2.1-VACE 1.3B's sizes (weights left out).
    fn wan_1_3b() -> ModelSizes {
        ModelSizes {
            dim: 1536,
            ffn_dim: 8960,
            vace_layers: 15,
            patch: 2,
            spatial: 8,
            temporal: 4,
            vae_channels: 96,
            weights: 0,
        }
    }

    fn window(frames: usize, width: usize, height: usize, guidance: bool) -> Window {
        Window {
            frames,
            width,
            height,
            window_frames: 81,
            guidance,
        }
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Some(1 << 20));
        assert_eq!(parse_size("16G"), Some(16 << 30));
        assert_eq!(parse_size(" 512 MiB"), Some(512 << 20));
        assert_eq!(parse_size("1.5k"), Some(1536));
        assert_eq!(parse_size("2TB"), Some(2 << 40));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1G"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn available_memory_and_cgroup_headroom_are_read_from_their_files() {
        let meminfo = "MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   23639832 kB\n";
        assert_eq!(mem_available(meminfo), Some(23639832 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(
            cgroup_headroom("8589934592\n", "4294967296\n"),
            Some(4 << 30)
        );
        assert_eq!(
            cgroup_headroom("max\n", "4294967296\n"),
            None,
            "v2: no limit"
        );
        assert_eq!(
            cgroup_headroom("9223372036854771712\n", "1"),
            None,
            "v1: no limit"
        );
        assert_eq!(
            cgroup_headroom("100", "200"),
            Some(0),
            "over the limit already"
        );
    }

    #[test]
    fn a_window_needs_more_with_more_frames_pixels_and_guidance_and_never_more_than_one_model_window()
     {
        // A narrow VAE, so that the transformer's need decides.
        let sizes = ModelSizes {
            vae_channels: 8,
            ..wan_1_3b()
        };
        let need = |w: Window| sizes.activations(&w);
        assert!(need(window(33, 832, 480, true)) > need(window(17, 832, 480, true)));
        assert!(need(window(33, 832, 480, true)) > need(window(33, 416, 240, true)));
        assert!(need(window(81, 832, 480, true)) > need(window(81, 832, 480, false)));
        assert_eq!(
            need(window(200, 832, 480, true)),
            need(window(81, 832, 480, true)),
            "longer tasks run window by window"
        );
        // Clips above the native size run at the native size.
        assert_eq!(
            need(window(81, 1920, 1080, true)),
            need(window(81, 1920 * 2, 1080 * 2, true))
        );
    }

    #[test]
    fn the_vae_works_on_chunks_of_frames_so_its_need_does_not_grow_with_frames() {
        let sizes = wan_1_3b();
        let need = |frames| sizes.activations(&window(frames, 832, 480, false));
        assert_eq!(
            need(17),
            need(81),
            "the VAE's full-resolution maps decide for Wan 1.3B at 480p"
        );
        // 81 frames at 480p with guidance: GiBs in f32 on the CPU, not megabytes nor terabytes.
        let full = sizes.activations(&window(81, 832, 480, true));
        assert!((8u64 << 30..64 << 30).contains(&full), "{}", gib(full));
    }

    #[test]
    fn the_check_says_what_limits_and_what_to_change() {
        let budget = Budget {
            bytes: 1 << 30,
            limited_by: MAX_MEMORY_ENV,
        };
        assert_eq!(check(1 << 29, Some(&budget)), Ok(()));
        assert_eq!(check(1 << 40, None), Ok(()), "nothing known: no refusal");
        let message = check(3 << 30, Some(&budget)).unwrap_err();
        assert!(
            message.contains("3.0 GiB")
                && message.contains("SORAGEN_MAX_MEMORY allows 1.0 GiB")
                && message.contains("lower Frames"),
            "{message}"
        );
    }

    #[test]
    fn the_tiny_model_sizes_come_from_its_folder() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tiny");
        let sizes = ModelSizes::read(&folder).unwrap();
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
        assert!(
            ModelSizes::read(Path::new("/nonexistent"))
                .unwrap_err()
                .contains("/nonexistent")
        );
    }

    #[test]
    fn failed_allocations_are_errors() {
        assert_eq!(zeroed(16).unwrap(), vec![0; 16]);
        assert_eq!(zeroed(usize::MAX), Err(OutOfMemory { bytes: usize::MAX }));
    }
}
