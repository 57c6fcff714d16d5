//! A long task's memory is bounded by one window: a counting allocator measures the peak heap
//! of `run_task` beyond the output it returns, for one window and for several, and the peak
//! must not grow with the number of windows. And a tiled VAE decode's peak is bounded by its
//! tiles, with frames close to the whole-frame decode's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Tensor};
use soragen_core::model::WanVace;
use soragen_core::tasks::{TaskInputs, TaskKind, TaskOutput, TaskParams, run_task};
use soragen_core::vace::Silent;
use soragen_core::video::{Frame, Video};
use soragen_models::vae::Tiling;

/// The system allocator, counting the bytes held now and the most held since the last reset.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let held = HELD.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(held, Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout goes to the system allocator unchanged.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in alloc.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            grew(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the pointer came from this allocator (the system's) with this layout.
        unsafe { System.dealloc(pointer, layout) };
        HELD.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as in dealloc; the system allocator takes the same arguments.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            HELD.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One measurement at a time: the counters are the whole process's.
static MEASURING: Mutex<()> = Mutex::new(());

/// Runs `work` and returns its result and the peak heap it added, in MiB.
fn measure<T>(work: impl FnOnce() -> T) -> (T, f64) {
    let before = HELD.load(Relaxed);
    PEAK.store(before, Relaxed);
    let result = work();
    let peak = PEAK.load(Relaxed) - before;
    (result, peak as f64 / (1 << 20) as f64)
}

fn tiny_model() -> Arc<WanVace> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
    WanVace::load(&folder, DType::F32, &Device::Cpu).unwrap()
}

/// A clip much larger than the model's working size, so that the output dominates.
fn clip(frames: usize) -> Video {
    let (width, height) = (640, 320);
    let mut video = Video::new(width, height, Some((16, 1)));
    for f in 0..frames {
        let rgb: Vec<u8> = (0..width * height * 3)
            .map(|i| ((i / 3 % width + f * 7) % 251) as u8)
            .collect();
        video.frames.push(Frame::from_8bit(&rgb, None));
    }
    video
}

fn output_bytes(output: &TaskOutput) -> usize {
    output
        .video
        .frames
        .iter()
        .map(|f| f.rgb.len() + f.alpha.as_ref().map_or(0, Vec::len))
        .sum::<usize>()
        * size_of::<f32>()
}

/// Peak heap while the task ran, in all and beyond the output it returned, in MiB.
fn peak_beyond_output(model: &WanVace, frames: usize) -> (f64, f64) {
    let params = TaskParams {
        prompt: "a lighthouse".into(),
        steps: 1,
        guidance: 1.0,
        context_frames: 2,
        working_pixels: Some(32 * 16),
        window_frames: 9,
        ..TaskParams::default()
    };
    let inputs = TaskInputs {
        clip: Some(clip(4)),
        ..TaskInputs::default()
    };
    let kind = TaskKind::ExtendForward { frames };
    let (output, peak) = measure(|| run_task(model, &kind, &inputs, &params, &Silent).unwrap());
    (peak, peak - output_bytes(&output) as f64 / (1 << 20) as f64)
}

#[test]
fn memory_beyond_the_output_does_not_grow_with_the_window_count() {
    let _measuring = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let model = tiny_model();
    // Windows of 9 frames with 2 of context: 7 new frames each.
    peak_beyond_output(&model, 7);
    let (one_peak, one_beyond) = peak_beyond_output(&model, 7);
    let (three_peak, three_beyond) = peak_beyond_output(&model, 21);
    println!("1 window: peak {one_peak:.2} MiB, {one_beyond:.2} MiB beyond the output");
    println!("3 windows: peak {three_peak:.2} MiB, {three_beyond:.2} MiB beyond the output");
    assert!(
        three_peak > one_peak,
        "the longer output must cost more in all"
    );
    assert!(
        three_beyond <= one_beyond * 1.05 + 0.1,
        "{three_beyond:.2} MiB vs {one_beyond:.2} MiB"
    );
}

/// Mean of |x| over all elements.
fn mean_abs(x: &Tensor) -> f32 {
    x.abs().unwrap().mean_all().unwrap().to_scalar().unwrap()
}

#[test]
fn tiled_decoding_bounds_memory_and_stays_close_to_whole_frames() {
    let _measuring = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let model = tiny_model();
    // 2 latent frames of 384 x 384 pixels: 2 x 2 of diffusers' default tiles (256 pixels
    // every 192), blended over 64 pixels.
    // Deterministic, noise-like latents.
    let latents = (Tensor::arange(0f32, (16 * 2 * 48 * 48) as f32, &Device::Cpu).unwrap() * 0.61)
        .unwrap()
        .sin()
        .unwrap()
        .reshape((1, 16, 2, 48, 48))
        .unwrap();
    let tiling = Tiling::default();
    let (whole, whole_peak) = measure(|| model.decode_frames_tiled(&latents, None).unwrap());
    let (tiled, tiled_peak) =
        measure(|| model.decode_frames_tiled(&latents, Some(&tiling)).unwrap());
    assert_eq!(tiled.dims(), whole.dims());
    assert_eq!(tiled.dims(), [5, 384, 384, 3]);
    let largest = soragen_models::max_abs_diff(&tiled, &whole).unwrap();
    let mean = mean_abs(&(&tiled - &whole).unwrap());
    let spread = mean_abs(&whole.broadcast_sub(&whole.mean_all().unwrap()).unwrap());
    println!(
        "decode peak: whole frames {whole_peak:.1} MiB, tiled {tiled_peak:.1} MiB; |tiled - whole| max {largest:.3e}, mean {mean:.3e}; the frames' mean deviation {spread:.3e}"
    );
    // A tile sees less of the frame than the whole-frame pass (the mid block's attention spans
    // one tile): the frames differ everywhere, but by little next to their own variation.
    assert!(mean > 1e-4, "tiles made no difference: {mean}");
    assert!(mean < spread / 10.0, "{mean} vs {spread}");
    assert!(largest < 0.25, "{largest}");
    assert!(
        tiled_peak < whole_peak * 0.75,
        "{tiled_peak:.1} vs {whole_peak:.1} MiB"
    );
}
