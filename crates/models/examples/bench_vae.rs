//! Soragen's half of the VAE benchmark (run by `models/reference/bench_vae.py`, which runs
//! diffusers on the same VAE folder and inputs, measures both processes' peak RSS and writes
//! BENCHMARKS.md).
//!
//!     cargo run --release -p soragen-models --example bench_vae -- \
//!         VAE_DIR INPUTS encode|decode|load whole|tiled REPEATS
//!
//! Loads `AutoencoderKLWan` (f32, CPU) and encodes the tensor `video` or decodes the tensor
//! `latents` of INPUTS on whole frames or in diffusers' default tiles; with REPEATS > 1, after
//! a warm-up run. `load` only loads the weights and reads the inputs (the baseline of a
//! memory measurement). Prints the median seconds as JSON.

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use soragen_models::vae::{AutoencoderKLWan, Config, Tiling};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, folder, inputs, mode, tiles, repeats] = &args[..] else {
        return Err(
            "usage: bench_vae VAE_DIR INPUTS encode|decode|load whole|tiled REPEATS".into(),
        );
    };
    let folder = PathBuf::from(folder);
    let tiling = match tiles.as_str() {
        "whole" => None,
        "tiled" => Some(Tiling::default()),
        other => return Err(format!("whole or tiled, not {other}").into()),
    };
    let repeats: usize = repeats.parse()?;
    let config: Config =
        serde_json::from_str(&std::fs::read_to_string(folder.join("config.json"))?)?;
    let weights = folder.join("diffusion_pytorch_model.safetensors");
    // SAFETY: the benchmark's files are not changed while it maps them.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? };
    let vae = AutoencoderKLWan::load(vb, &config)?;
    let tensors = candle_core::safetensors::load(inputs, &Device::Cpu)?;
    let run = || -> candle_core::Result<Tensor> {
        match mode.as_str() {
            "encode" => vae.encode_until(&tensors["video"], tiling.as_ref(), &|| false),
            _ => vae.decode_until(&tensors["latents"], tiling.as_ref(), &|| false),
        }
        .map(|out| out.expect("never stopped"))
    };
    let seconds = match mode.as_str() {
        "load" => None,
        "encode" | "decode" => {
            if repeats > 1 {
                run()?; // warm-up: page in the weights, size the allocator
            }
            let mut times = Vec::with_capacity(repeats);
            for _ in 0..repeats.max(1) {
                let start = Instant::now();
                run()?;
                times.push(start.elapsed().as_secs_f64());
            }
            times.sort_by(f64::total_cmp);
            Some(times[times.len() / 2])
        }
        other => return Err(format!("encode, decode or load, not {other}").into()),
    };
    println!(
        "{{\"seconds\": {}, \"threads\": {}}}",
        seconds.map_or("null".into(), |s| format!("{s:.4}")),
        candle_core::utils::get_num_threads()
    );
    Ok(())
}
