//! `soragen`: Soragen's generative video tasks from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

mod args;
mod container;
mod credentials;
mod models;
mod outputs;
mod progress;
mod tasks;

use clap::{Parser, Subcommand};
use soragen_core::limits;
use soragen_core::presets::Preset;
use soragen_core::tasks::defaults;
use soragen_core::vace::{Noise, Sampling, VaceInput, read_latents};
use soragen_core::video::{Sink, Video, model_frames};
use soragen_core::{Error, Result, model::WanVace};
use soragen_models::lora::LoraSpec;

use args::{device_and_dtype, limited, parse_lora, parse_preset, parse_step_cache};
use outputs::{commit_output, prepare_output, write_frames};
use progress::Terminal;

#[derive(Parser)]
#[command(
    name = "soragen",
    version,
    about = "Generative video for editors: VACE on Wan2.1"
)]
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
    /// Image to video: the still is frame 0 (kept bit-identical), the rest is generated from it.
    Animate(tasks::AnimateArgs),
    /// Lists, fetches and verifies models in the Hugging Face cache.
    Models {
        #[command(subcommand)]
        command: models::ModelsCommand,
    },
    /// Content Credentials (C2PA) of a file.
    Credentials {
        #[command(subcommand)]
        command: credentials::CredentialsCommand,
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
    #[arg(long, default_value_t = defaults::STEPS, value_parser = limited(limits::STEPS))]
    steps: usize,
    /// Classifier-free guidance scale (1 or less: no guidance, half the work).
    #[arg(long, default_value_t = defaults::GUIDANCE, value_parser = limited(limits::GUIDANCE))]
    guidance: f64,
    /// Overrides the scheduler's flow shift (published: 3.0 at 480p, 5.0 at 720p).
    #[arg(long, value_parser = limited(limits::FLOW_SHIFT))]
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
    /// Reuse work between denoising steps: `first-block[:THRESHOLD]` is diffusers' First Block
    /// Cache (threshold default 0.05; higher is faster and further from the uncached frames).
    #[arg(long, value_name = "first-block[:THRESHOLD]", value_parser = parse_step_cache)]
    step_cache: Option<soragen_core::step_cache::StepCache>,
    /// A folder of PNG images, a .y4m file, or a .safetensors file (`frames`, f32 [F, H, W, 3]).
    #[arg(long)]
    output: PathBuf,
    /// A reference image (PNG, any size; fitted to the frames as diffusers fits
    /// `reference_images`); repeat for several, in diffusers' order.
    #[arg(long = "reference", value_name = "IMG")]
    references: Vec<PathBuf>,
}

fn run_vace(args: VaceArgs) -> Result<()> {
    let terminal = Terminal::new();
    let (device, dtype) = device_and_dtype(args.dtype.as_deref())?;
    let folder = models::model_folder(&args.model)?;
    let mut inputs = vec![args.video.as_path(), args.mask.as_path(), folder.as_path()];
    inputs.extend(args.latents.as_deref());
    inputs.extend(args.references.iter().map(PathBuf::as_path));
    inputs.extend(args.lora.iter().map(|adapter| adapter.path.as_path()));
    let destination = prepare_output(&args.output, &inputs)?;
    let video = container::read(&args.video)?;
    let masks = container::read(&args.mask)?;
    if masks.len() != video.len() {
        return Err(Error::Input(format!(
            "{} frames but {} masks",
            video.len(),
            masks.len()
        )));
    }
    if (masks.width, masks.height) != (video.width, video.height) {
        return Err(Error::Input(format!(
            "masks are {}x{} but frames are {}x{}",
            masks.width, masks.height, video.width, video.height
        )));
    }
    let guidance = args.preset.map_or(args.guidance, |p| p.guidance);
    // The pre-flight, as the task commands have it: sizes and memory before the model loads or
    // any tensor is made, so a run that cannot fit is one error, never an abort.
    soragen_core::memory::check_run(
        &folder,
        dtype,
        &soragen_core::memory::Run {
            frames: video.len(),
            references: args.references.len(),
            width: video.width,
            height: video.height,
            guidance: guidance > 1.0,
        },
        device.is_cpu(),
    )?;
    let model = WanVace::load_with_adapters(&folder, dtype, &device, &args.lora)?;
    model.check_size(video.len(), video.height, video.width)?;
    let references = args
        .references
        .iter()
        .map(|path| Video::read_image(path))
        .collect::<Result<Vec<_>>>()?;
    let input = VaceInput::from_frames(&video, &masks.mask_bits(), &device)?
        .with_references(&references)?;
    let noise = match &args.latents {
        Some(path) => Noise::Latents(read_latents(path, &device)?),
        None => Noise::Seed(args.seed),
    };
    let sampling = Sampling {
        steps: args.preset.map_or(args.steps, |p| p.steps),
        guidance,
        flow_shift: args.flow_shift.or(args.preset.and_then(|p| p.flow_shift)),
        conditioning_scale: 1.0,
        noise,
        cache: args.step_cache,
    };
    let prompt = model.encode_prompt(&args.prompt)?;
    let negative = if sampling.uses_guidance() {
        Some(model.encode_prompt(&args.negative_prompt)?)
    } else {
        None
    };
    let frames = model.generate(&input, &prompt, negative.as_ref(), &sampling, &terminal)?;
    let record = serde_json::json!({
        "model": folder.display().to_string(),
        "task": "vace",
        "params": {
            "prompt": args.prompt, "negative_prompt": args.negative_prompt, "seed": args.seed,
            "steps": sampling.steps, "guidance": sampling.guidance, "flow_shift": sampling.flow_shift,
            "step_cache": sampling.cache,
            "preset": args.preset.map(|p| p.name),
            "lora": args.lora.iter().map(|a| serde_json::json!({"file": a.path.display().to_string(), "strength": a.strength})).collect::<Vec<_>>(),
        },
        "references": args.references.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    });
    let output = args.output;
    commit_output(
        destination,
        record,
        &terminal,
        |staging| match Sink::for_path(&output) {
            Sink::Safetensors(_) => frames
                .save_safetensors("frames", staging)
                .map_err(|e| Error::Output(format!("cannot write {}: {e}", output.display()))),
            _ => {
                let (_, height, width, _) = frames.dims4()?;
                let values = frames.flatten_all()?.to_vec1::<f32>()?;
                write_frames(
                    &model_frames(&values, width, height, video.fps),
                    &output,
                    staging,
                )
            }
        },
    )
}

fn main() -> ExitCode {
    // Usage errors in one line, like every other error; help and version as clap prints them.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // clap's first paragraph, which may list arguments on lines of their own.
            let text = e.to_string();
            let paragraph: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let line = paragraph.join(" ");
            eprintln!("soragen: {}", line.strip_prefix("error: ").unwrap_or(&line));
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Vace(args) => run_vace(args),
        Command::Extend(args) => tasks::extend(args),
        Command::Insert(args) => tasks::insert(args),
        Command::ReplaceBackground(args) => tasks::replace_background(args),
        Command::Generate(args) => tasks::generate(args),
        Command::Animate(args) => tasks::animate(args),
        Command::Models { command } => models::run(command),
        Command::Credentials { command } => credentials::run(command),
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
