//! A long task's memory is bounded by one window: a counting allocator measures the peak heap
//! of `run_task` beyond the output it returns, for one window and for several, and the peak
//! must not grow with the number of windows.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use candle_core::DType;
use soragen_core::model::WanVace;
use soragen_core::tasks::{TaskInputs, TaskKind, TaskOutput, TaskParams, run_task};
use soragen_core::vace::Silent;
use soragen_core::video::{Frame, Video};

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
    let before = HELD.load(Relaxed);
    PEAK.store(before, Relaxed);
    let output = run_task(model, &kind, &inputs, &params, &Silent).unwrap();
    let peak = PEAK.load(Relaxed) - before;
    let mib = |bytes: usize| bytes as f64 / (1 << 20) as f64;
    (mib(peak), mib(peak - output_bytes(&output)))
}

#[test]
fn memory_beyond_the_output_does_not_grow_with_the_window_count() {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/tiny");
    let model = WanVace::load(&folder, DType::F32, &candle_core::Device::Cpu).unwrap();
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
