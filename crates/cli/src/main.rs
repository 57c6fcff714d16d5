//! `soragen`: Soragen's generative video tasks from the command line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

mod container;
mod models;
mod tasks;

use std::cell::Cell;

use clap::{Parser, Subcommand};
use soragen_core::vace::{Noise, Observer, Sampling, VaceInput, read_latents};
use soragen_core::video::{Sink, Video, quantise, write_png_dir, write_y4m};
use soragen_core::{Error, Result, model::WanVace};
use soragen_core::presets::Preset;
use soragen_models::lora::LoraSpec;

#[derive(Parser)]
#[command(name = "soragen", version, about = "Generative video for editors: VACE on Wan2.1")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Source frames + a mask per frame + a prompt -> generated frames (the VACE primitive).
    Vace(VaceArgs),
    /// Adds N frames after a clip's last frame (or before its first), continuing it.
    Extend(tasks::ExtendArgs),
    /// Puts N new frames between two clips, leading from the end of one into the start of the other.
    Insert(tasks::InsertArgs),
    /// Keeps the subject and regenerates the background from the prompt.
    ReplaceBackground(tasks::ReplaceBackgroundArgs),
    /// Text to video.
    Generate(tasks::GenerateArgs),
    /// Lists, fetches and verifies models in the Hugging Face cache.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
}

#[derive(clap::Args)]
struct VaceArgs {
    /// Model folder in diffusers layout (model_index.json, transformer/, vae/, ...), or a Hugging
    /// Face repository id (owner/name[@revision]), fetched into the Hugging Face cache if missing.
    #[arg(long)]
    model: String,
    /// Source frames: a folder of PNG images (name order) or a .y4m file.
    #[arg(long)]
    video: PathBuf,
    /// Masks, one per frame, same forms as --video: grey > 127 = generate, else keep.
    #[arg(long)]
    mask: PathBuf,
    #[arg(long)]
    prompt: String,
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// Denoising steps.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// Classifier-free guidance scale (1 or less: no guidance, half the work).
    #[arg(long, default_value_t = 5.0)]
    guidance: f64,
    /// Overrides the scheduler's flow shift (published: 3.0 at 480p, 5.0 at 720p).
    #[arg(long)]
    flow_shift: Option<f64>,
    /// Seed of the initial noise.
    #[arg(long, default_value_t = 0, conflicts_with = "latents")]
    seed: u64,
    /// Initial noise from a .safetensors file holding `latents` [1, C, F', H/8, W/8].
    #[arg(long)]
    latents: Option<PathBuf>,
    /// Weight and compute dtype [default: bf16 on a GPU, f32 on the CPU].
    #[arg(long, value_parser = ["f32", "bf16", "f16"])]
    dtype: Option<String>,
    /// A LoRA adapter (.safetensors, diffusers/PEFT or Wan/ComfyUI names) merged into the
    /// transformer, with its strength (default 1); repeat for several.
    #[arg(long, value_name = "FILE[:STRENGTH]", value_parser = parse_lora)]
    lora: Vec<LoraSpec>,
    /// Sampling preset: `distill-4` (4 steps, guidance 1, flow shift 5, for a distilled LoRA
    /// given with --lora) or `quality` (50 steps, guidance 5); instead of --steps and --guidance.
    #[arg(long, value_parser = parse_preset, conflicts_with_all = ["steps", "guidance"])]
    preset: Option<&'static Preset>,
    /// A folder of PNG images, a .y4m file, or a .safetensors file (`frames`, f32 [F, H, W, 3]).
    #[arg(long)]
    output: PathBuf,
}

/// Progress on a terminal; Ctrl-C asks to stop between denoising steps.
struct Terminal {
    interrupted: Arc<AtomicBool>,
    /// When the current window's first step began.
    started: Cell<Instant>,
    draw: bool,
}

impl Terminal {
    fn new() -> Self {
        let interrupted = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&interrupted);
        // A second Ctrl-C ends the process at once, for a user who does not want to wait.
        let _ = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping after the current step (Ctrl-C again to quit now)");
        });
        Self { interrupted, started: Cell::new(Instant::now()), draw: std::io::stderr().is_terminal() }
    }
}

impl Observer for Terminal {
    fn step(&self, done: usize, total: usize) {
        if !self.draw {
            return;
        }
        const WIDTH: usize = 30;
        let filled = WIDTH * done / total.max(1);
        let per_step = self.started.get().elapsed().as_secs_f64() / done.max(1) as f64;
        let eta = per_step * (total - done) as f64;
        eprint!(
            "\r[{}{}] step {done}/{total}  {per_step:.2} s/step  eta {eta:.0} s ",
            "#".repeat(filled),
            " ".repeat(WIDTH - filled)
        );
        if done == total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    }

    fn window(&self, index: usize, count: usize) {
        self.started.set(Instant::now());
        if self.draw && count > 1 {
            eprintln!("window {}/{count}", index + 1);
        }
    }

    fn cancelled(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

/// `--lora FILE[:STRENGTH]`.
fn parse_lora(arg: &str) -> std::result::Result<LoraSpec, String> {
    LoraSpec::parse(arg).map_err(|e| e.to_string())
}

/// `--preset NAME`.
fn parse_preset(name: &str) -> std::result::Result<&'static Preset, String> {
    Preset::named(name).map_err(|e| e.to_string())
}

/// The device the models run on (see `soragen_core::device`) and the dtype `--dtype` names, or
/// the one that suits the device.
fn device_and_dtype(dtype: Option<&str>) -> Result<(candle_core::Device, candle_core::DType)> {
    let device = soragen_core::device::model_device();
    let dtype = match dtype {
        Some(name) => soragen_models::weights::parse_dtype(name)?,
        None => soragen_core::device::default_dtype(&device),
    };
    Ok((device, dtype))
}

fn run_vace(args: VaceArgs) -> Result<()> {
    let (device, dtype) = device_and_dtype(args.dtype.as_deref())?;
    let video = container::read(&args.video)?;
    let masks = container::read(&args.mask)?;
    if masks.len() != video.len() {
        return Err(Error::Input(format!("{} frames but {} masks", video.len(), masks.len())));
    }
    if (masks.width, masks.height) != (video.width, video.height) {
        return Err(Error::Input(format!(
            "masks are {}x{} but frames are {}x{}",
            masks.width, masks.height, video.width, video.height
        )));
    }
    let model = WanVace::load_with_adapters(&models::model_folder(&args.model)?, dtype, &device, &args.lora)?;
    model.check_size(video.len(), video.height, video.width)?;
    let input = VaceInput::from_frames(&video, &masks.mask_bits(), &device)?;
    let noise = match &args.latents {
        Some(path) => Noise::Latents(read_latents(path, &device)?),
        None => Noise::Seed(args.seed),
    };
    let sampling = Sampling {
        steps: args.preset.map_or(args.steps, |p| p.steps),
        guidance: args.preset.map_or(args.guidance, |p| p.guidance),
        flow_shift: args.flow_shift.or(args.preset.and_then(|p| p.flow_shift)),
        conditioning_scale: 1.0,
        noise,
    };
    let prompt = model.encode_prompt(&args.prompt)?;
    let negative = if sampling.uses_guidance() { Some(model.encode_prompt(&args.negative_prompt)?) } else { None };
    let terminal = Terminal::new();
    let frames = model.generate(&input, &prompt, negative.as_ref(), &sampling, &terminal)?;
    write_output(&frames, &video, &args.output)
}

fn write_output(frames: &candle_core::Tensor, source: &Video, output: &Path) -> Result<()> {
    let staged = stage(output, |staging| match Sink::for_path(output) {
        Sink::Safetensors(_) => frames
            .save_safetensors("frames", staging)
            .map_err(|e| Error::Output(format!("cannot write {}: {e}", output.display()))),
        _ => {
            let (_, height, width, _) = frames.dims4()?;
            let values = frames.flatten_all()?.to_vec1::<f32>()?;
            write_frames(&quantise(&values, width, height, source.fps), output, staging)
        }
    })?;
    commit(&staged, output)
}

/// 8-bit frames as `output` asks: a video file, a `.y4m` file, else a PNG folder.
fn write_frames(video: &Video, output: &Path, staging: &Path) -> Result<()> {
    if container::is_container(output) {
        return container::write(video, output, staging);
    }
    match Sink::for_path(output) {
        Sink::Y4m(_) => write_y4m(video, staging),
        _ => write_png_dir(video, staging),
    }
}

/// Task outputs are 8-bit frames: refuses an output path that asks for anything else.
fn frames_only(output: &Path) -> Result<()> {
    match Sink::for_path(output) {
        Sink::Safetensors(_) => {
            Err(Error::Output(format!("{}: write frames as a PNG folder or a .y4m file", output.display())))
        }
        _ => Ok(()),
    }
}

/// `.NAME.partial` beside `path`: where an output is written before it takes its name, so an
/// interrupted run never leaves an output that looks complete.
fn staging_path(path: &Path) -> PathBuf {
    path.with_file_name(format!(".{}.partial", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()))
}

fn discard(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
    let _ = std::fs::remove_file(path);
}

/// Writes `path`'s staging copy with `write`; nothing is left behind if that fails.
fn stage(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    let staging = staging_path(path);
    discard(&staging);
    match write(&staging) {
        Ok(()) => Ok(staging),
        Err(e) => {
            discard(&staging);
            Err(e)
        }
    }
}

/// Gives a staged output its final name, replacing an earlier output (a folder only when it
/// holds nothing but frames we write).
fn commit(staged: &Path, output: &Path) -> Result<()> {
    let result = replace(staged, output);
    if result.is_err() {
        discard(staged);
    }
    result
}

fn replace(staged: &Path, output: &Path) -> Result<()> {
    if output.is_dir() {
        ensure_only_frames(output)?;
        std::fs::remove_dir_all(output)
            .map_err(|e| Error::Output(format!("cannot replace {}: {e}", output.display())))?;
    }
    std::fs::rename(staged, output).map_err(|e| Error::Output(format!("cannot write {}: {e}", output.display())))
}

/// An output folder is replaced only if it holds nothing but frames we would write
/// (`00000.png`, ...): never a user's own files.
fn ensure_only_frames(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Output(format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_frame = name.len() == 9 && name.ends_with(".png") && name[..5].bytes().all(|b| b.is_ascii_digit());
        if !is_frame {
            return Err(Error::Output(format!(
                "{} exists and holds other files ({name}): choose a new output folder",
                dir.display()
            )));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Vace(args) => run_vace(args),
        Command::Extend(args) => tasks::extend(args),
        Command::Insert(args) => tasks::insert(args),
        Command::ReplaceBackground(args) => tasks::replace_background(args),
        Command::Generate(args) => tasks::generate(args),
        Command::Models { command } => models::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Cancelled) => {
            eprintln!("soragen: cancelled, nothing written");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("soragen: {e}");
            ExitCode::FAILURE
        }
    }
}
