//! The editing task commands: `extend`, `insert`, `replace-background`, `generate`.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use soragen_core::colour_space::ColourSpace;
use soragen_core::model::WanVace;
use soragen_core::tasks::{TaskInputs, TaskKind, TaskParams, animate_request, defaults, run_task};
use soragen_core::video::{Frame, Video};
use soragen_core::{Error, Result};

use soragen_core::limits;

use crate::args::{device_and_dtype, limited};
use crate::container;
use crate::credentials::Credentials;
use crate::outputs::{commit_output, frames_only, prepare_output, write_frames};
use crate::progress::Terminal;

/// Model and generation settings every task command takes.
#[derive(Args)]
pub struct Common {
    /// Model folder in diffusers layout (model_index.json, transformer/, vae/, ...), or a Hugging
    /// Face repository id (owner/name[@revision]), fetched into the Hugging Face cache if missing.
    #[arg(long)]
    model: String,
    #[arg(long, default_value = "")]
    prompt: String,
    #[arg(long, default_value = "")]
    negative_prompt: String,
    /// Seed of the initial noise (window k of a long output uses seed + k).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Denoising steps.
    #[arg(long, default_value_t = defaults::STEPS, value_parser = limited(limits::STEPS))]
    steps: usize,
    /// Classifier-free guidance scale (1 or less: no guidance, half the work).
    #[arg(long, default_value_t = defaults::GUIDANCE, value_parser = limited(limits::GUIDANCE))]
    guidance: f64,
    /// Source frames nearest the cut that condition an extension or insert.
    #[arg(long, default_value_t = defaults::CONTEXT_FRAMES, value_parser = limited(limits::CONTEXT_FRAMES))]
    context_frames: usize,
    /// Leave generated colours as the model made them instead of matching them to the source.
    #[arg(long)]
    no_color_match: bool,
    /// Grow the background mask by this many pixels (tight mattes leave halos).
    #[arg(long, default_value_t = defaults::MASK_DILATION, value_parser = limited(limits::MASK_PIXELS))]
    mask_dilation: usize,
    /// Soften the composite edge over this many pixels.
    #[arg(long, default_value_t = defaults::MASK_FEATHER, value_parser = limited(limits::MASK_PIXELS))]
    mask_feather: usize,
    /// Pixels of the model's working size [default: 832x480, or the clip's own size if smaller].
    #[arg(long, value_parser = limited(limits::WORKING_PIXELS))]
    working_pixels: Option<usize>,
    /// Frames per model window (4n+1); longer outputs take several windows.
    #[arg(long, default_value_t = defaults::WINDOW_FRAMES, value_parser = limited(limits::WINDOW_FRAMES))]
    window_frames: usize,
    /// A folder of finished windows to reuse and fill, shareable between machines (e.g. a
    /// render farm's network share).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Feed frames to the model one to one instead of at its 16 fps (see README).
    #[arg(long)]
    no_frame_rate_match: bool,
    /// Weight and compute dtype [default: bf16 on a GPU, f32 on the CPU].
    #[arg(long, value_parser = ["f32", "bf16", "f16"])]
    dtype: Option<String>,
    /// A LoRA adapter (.safetensors, diffusers/PEFT or Wan/ComfyUI names) merged into the
    /// transformer, with its strength (default 1); repeat for several.
    #[arg(long, value_name = "FILE[:STRENGTH]", value_parser = crate::args::parse_lora)]
    lora: Vec<soragen_models::lora::LoraSpec>,
    /// Sampling preset: `distill-4` (4 steps, guidance 1, for a distilled LoRA given with
    /// --lora) or `quality` (50 steps, guidance 5); instead of --steps and --guidance.
    #[arg(long, value_parser = crate::args::parse_preset, conflicts_with_all = ["steps", "guidance"])]
    preset: Option<&'static soragen_core::presets::Preset>,
    /// Reuse work between denoising steps: `first-block[:THRESHOLD]` is diffusers' First Block
    /// Cache (threshold default 0.05; higher is faster and further from the uncached frames).
    #[arg(long, value_name = "first-block[:THRESHOLD]", value_parser = crate::args::parse_step_cache)]
    step_cache: Option<soragen_core::step_cache::StepCache>,
    /// A folder of images (00000.png, ...; 16-bit PNG for 16-bit inputs, OpenEXR for EXR
    /// inputs), a .y4m file, or a video file (.mkv lossless, .mp4/.mov/.webm lossy, via
    /// ffmpeg), written in the input's colour space; the record of what was generated goes next
    /// to it as OUTPUT.json.
    #[arg(long)]
    output: PathBuf,
    /// The colour space of the input frames, for inputs that do not say: srgb, rec709, linear,
    /// acescg, acescct, aces2065-1, davinci-intermediate, rec2020-pq, rec2020-hlg [default:
    /// linear for OpenEXR, srgb for everything else].
    #[arg(long, value_name = "NAME")]
    colour_space: Option<ColourSpace>,
    /// A reference image (PNG, any size; e.g. the subject on white), given to every window so
    /// the subject keeps its look; repeat for several.
    #[arg(long = "reference", value_name = "IMG")]
    references: Vec<PathBuf>,
    #[command(flatten)]
    signing: crate::credentials::SigningArgs,
}

impl Common {
    fn params(&self) -> TaskParams {
        let mut params = TaskParams {
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            seed: self.seed,
            steps: self.steps,
            guidance: self.guidance,
            context_frames: self.context_frames,
            color_match: !self.no_color_match,
            mask_dilation: self.mask_dilation,
            mask_feather: self.mask_feather,
            working_pixels: self.working_pixels,
            window_frames: self.window_frames,
            match_frame_rate: !self.no_frame_rate_match,
            cache: self.cache.clone(),
            step_cache: self.step_cache,
            ..TaskParams::default()
        };
        if let Some(preset) = self.preset {
            preset.apply(&mut params);
        }
        params
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Direction {
    Forward,
    Backward,
}

#[derive(Args)]
pub struct ExtendArgs {
    /// The clip: a folder of PNG images (name order), a .y4m file, or a video file (via ffmpeg).
    #[arg(long)]
    input: PathBuf,
    #[arg(long, value_enum, default_value = "forward")]
    direction: Direction,
    /// New frames to add.
    #[arg(long, value_parser = limited(limits::FRAMES))]
    frames: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct InsertArgs {
    /// The clip the new frames continue (PNG folder, .y4m or video file).
    #[arg(long)]
    from: PathBuf,
    /// The clip the new frames lead into, of the same size.
    #[arg(long)]
    to: PathBuf,
    /// New frames between the two clips.
    #[arg(long, value_parser = limited(limits::FRAMES))]
    frames: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct ReplaceBackgroundArgs {
    /// The clip (PNG folder, .y4m or video file).
    #[arg(long)]
    input: PathBuf,
    /// One mask per frame, same forms as --input: white (grey > 127) = background to replace.
    /// Without it, the input's alpha channel decides (transparent = background).
    #[arg(long)]
    mask: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct AnimateArgs {
    /// The still (PNG): frame 0 of the output, kept bit-identical.
    #[arg(long)]
    image: PathBuf,
    /// Frames of the output, the still included (at least 2), at 16 fps.
    #[arg(long, value_parser = limited(limits::FRAMES))]
    frames: usize,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct GenerateArgs {
    #[arg(long, value_parser = limited(limits::FRAMES))]
    frames: usize,
    #[arg(long, default_value_t = 832, value_parser = limited(limits::SIDE))]
    width: usize,
    #[arg(long, default_value_t = 480, value_parser = limited(limits::SIDE))]
    height: usize,
    #[command(flatten)]
    common: Common,
}

pub fn extend(args: ExtendArgs) -> Result<()> {
    let kind = match args.direction {
        Direction::Forward => TaskKind::ExtendForward {
            frames: args.frames,
        },
        Direction::Backward => TaskKind::ExtendBackward {
            frames: args.frames,
        },
    };
    let read = || {
        Ok(TaskInputs {
            clip: Some(container::read(&args.input)?),
            ..TaskInputs::default()
        })
    };
    run(&kind, &[&args.input], read, &args.common)
}

pub fn insert(args: InsertArgs) -> Result<()> {
    let read = || {
        let (clip, next) = (container::read(&args.from)?, container::read(&args.to)?);
        Ok(TaskInputs {
            clip: Some(clip),
            next: Some(next),
            mask: None,
            references: Vec::new(),
            previous: Vec::new(),
        })
    };
    run(
        &TaskKind::Insert {
            frames: args.frames,
        },
        &[&args.from, &args.to],
        read,
        &args.common,
    )
}

pub fn replace_background(args: ReplaceBackgroundArgs) -> Result<()> {
    let read = || {
        let mask = match &args.mask {
            Some(path) => {
                let masks = container::read(path)?;
                let grey =
                    |bits: Vec<bool>| bits.into_iter().map(|b| if b { 255 } else { 0 }).collect();
                Some(masks.mask_bits().into_iter().map(grey).collect())
            }
            None => None,
        };
        Ok(TaskInputs {
            clip: Some(container::read(&args.input)?),
            next: None,
            mask,
            references: Vec::new(),
            previous: Vec::new(),
        })
    };
    let mut inputs = vec![args.input.as_path()];
    inputs.extend(args.mask.as_deref());
    run(&TaskKind::ReplaceBackground, &inputs, read, &args.common)
}

pub fn generate(args: GenerateArgs) -> Result<()> {
    let kind = TaskKind::Generate {
        frames: args.frames,
        width: args.width,
        height: args.height,
    };
    run(&kind, &[], || Ok(TaskInputs::default()), &args.common)
}

pub fn animate(args: AnimateArgs) -> Result<()> {
    // Refused before anything is read: the request itself is wrong.
    let placeholder = Video {
        frames: vec![Frame::from_8bit(&[0; 3], None)],
        ..Video::new(1, 1, None)
    };
    let (kind, _) = animate_request(placeholder, args.frames)?;
    let read = || Ok(animate_request(Video::read_image(&args.image)?, args.frames)?.1);
    run_named(&kind, "animate", &[&args.image], read, &args.common)
}

/// Checks the output against `sources` (and the model and cache folders) before reading them
/// with `read` and running the task; then commits the frames and their record together.
fn run(
    kind: &TaskKind,
    sources: &[&Path],
    read: impl FnOnce() -> Result<TaskInputs>,
    common: &Common,
) -> Result<()> {
    run_named(kind, kind.name(), sources, read, common)
}

/// [`run`], the record naming the task `task`; references (--reference) are read and protected
/// like the other inputs, and listed in the record.
fn run_named(
    kind: &TaskKind,
    task: &str,
    sources: &[&Path],
    read: impl FnOnce() -> Result<TaskInputs>,
    common: &Common,
) -> Result<()> {
    frames_only(&common.output)?;
    let terminal = Terminal::new();
    let (device, dtype) = device_and_dtype(common.dtype.as_deref())?;
    let folder = crate::models::model_folder(&common.model)?;
    let mut protected = sources.to_vec();
    protected.push(&folder);
    protected.extend(common.cache.as_deref());
    protected.extend(common.lora.iter().map(|adapter| adapter.path.as_path()));
    protected.extend(common.references.iter().map(PathBuf::as_path));
    let destination = prepare_output(&common.output, &protected)?;
    let credentials = Credentials::for_output(&common.signing, &common.output)?;
    let mut inputs = read()?;
    if let Some(space) = common.colour_space {
        for clip in inputs.clip.iter_mut().chain(inputs.next.iter_mut()) {
            clip.colour = space;
        }
    }
    inputs.references = common
        .references
        .iter()
        .map(|path| Video::read_image(path))
        .collect::<Result<_>>()?;
    let model = WanVace::load_with_adapters(&folder, dtype, &device, &common.lora)?;
    let output = run_task(&model, kind, &inputs, &common.params(), &terminal)?;
    drop(inputs);
    let mut record = serde_json::to_value(&output.record)
        .map_err(|e| Error::Output(format!("cannot describe the output: {e}")))?;
    record["task"] = task.into();
    if !common.references.is_empty() {
        let paths: Vec<String> = common
            .references
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        record["references"] = paths.into();
    }
    let signed_record = record.clone();
    commit_output(destination, record, &terminal, |staging| {
        write_frames(&output.video, &common.output, staging)?;
        match &credentials {
            Some(credentials) => credentials.sign(staging, &common.output, &signed_record, sources),
            None => Ok(()),
        }
    })?;
    if credentials.is_none() {
        crate::credentials::say_unsigned(&common.output);
    }
    Ok(())
}
