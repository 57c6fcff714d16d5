//! Soragen's half of the VACE benchmark (run by `models/reference/bench.py`, which times
//! diffusers on the same model folder and inputs and writes BENCHMARKS.md).
//!
//!     cargo run --release -p soragen-core --example bench_vace -- MODEL INPUTS REPEATS
//!
//! Times one full denoising step (transformer + VACE, with guidance: two forwards, then the
//! scheduler step) and one VAE decode, after a warm-up run of each; prints JSON.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use soragen_core::model::WanVace;
use soragen_core::vace::{Noise, Sampling, VaceInput};

fn median_seconds(repeats: usize, mut run: impl FnMut()) -> f64 {
    run(); // warm-up: page in the weights, size the allocator
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (model, inputs, repeats) = (
        PathBuf::from(&args[1]),
        PathBuf::from(&args[2]),
        args[3].parse::<usize>()?,
    );
    let device = Device::Cpu;
    let wan = WanVace::load(&model, DType::F32, &device)?;
    let tensors = candle_core::safetensors::load(&inputs, &device)?;
    let input = VaceInput {
        video: tensors["video"].clone(),
        mask: tensors["mask"].clone(),
        references: Vec::new(),
    };
    let latents = tensors["latents"].clone();
    let prompt =
        wan.encode_prompt("a harbour at dawn, the camera pans slowly over fishing boats")?;
    let negative = wan.encode_prompt("blurry, low quality")?;
    let sampling = Sampling {
        steps: 50,
        guidance: 5.0,
        flow_shift: None,
        conditioning_scale: 1.0,
        noise: Noise::Seed(0),
        cache: None,
    };
    // Once per generation: the VACE context and the text keys of both prompts.
    let conditioning = wan.conditioning(&input, &prompt, Some(&negative), &sampling)?;

    let mut scheduler = wan.scheduler(None)?;
    scheduler.set_timesteps(sampling.steps)?;
    let t = scheduler.timesteps()[0];
    let step = median_seconds(repeats, || {
        scheduler.reset();
        let velocity = wan.velocity(&latents, t, &conditioning).unwrap();
        scheduler.step(&velocity, t, &latents).unwrap();
    });
    let decode = median_seconds(repeats, || {
        let frames: Tensor = wan.decode_frames(&latents).unwrap();
        assert_eq!(frames.dim(0).unwrap(), input.video.dim(2).unwrap());
    });
    println!(
        "{{\"step_s\": {step:.4}, \"decode_s\": {decode:.4}, \"peak_rss_mib\": {:.0}, \"threads\": {}}}",
        peak_rss_mib(),
        candle_core::utils::get_num_threads()
    );
    Ok(())
}
