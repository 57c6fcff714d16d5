//! The parameters every Soragen effect shows, defined from one table, and their values at a
//! time as the task API's settings.

use std::ffi::CStr;

use soragen_core::presets::LoraSpec;
use soragen_core::tasks::{TaskParams, defaults};
use soragen_ofx_ffi::sys::*;
use soragen_ofx_ffi::{ParamSet, Result, optional};

use crate::effects::EffectKind;

pub const PROMPT: &CStr = c"prompt";
pub const NEGATIVE_PROMPT: &CStr = c"negativePrompt";
pub const SEED: &CStr = c"seed";
pub const STEPS: &CStr = c"steps";
pub const GUIDANCE: &CStr = c"guidance";
pub const FRAMES: &CStr = c"frames";
pub const CONTEXT_FRAMES: &CStr = c"contextFrames";
pub const MODEL: &CStr = c"model";
pub const COLOR_MATCH: &CStr = c"colorMatch";
pub const DRAFT: &CStr = c"draft";
pub const DIRECTION: &CStr = c"direction";
pub const USE_MASK: &CStr = c"useMask";
pub const MASK_DILATION: &CStr = c"maskDilation";
pub const MASK_FEATHER: &CStr = c"maskFeather";
pub const WINDOW_FRAMES: &CStr = c"windowFrames";
pub const REFERENCE_FRAME: &CStr = c"referenceFrame";
pub const LORA: &CStr = c"lora";
pub const LORA_STRENGTH: &CStr = c"loraStrength";
pub const SAMPLING: &CStr = c"sampling";

/// Environment variable naming the default model folder.
pub const MODEL_ENV: &str = "SORAGEN_MODEL";

enum Kind {
    Text {
        multi_line: bool,
    },
    /// A file path the host lets the user pick.
    File,
    /// Integer: default, range, display range.
    Int {
        default: i32,
        range: (i32, i32),
        display: (i32, i32),
    },
    Double {
        default: f64,
        range: (f64, f64),
        display: (f64, f64),
    },
    Bool {
        default: bool,
    },
    Choice {
        options: &'static [&'static str],
    },
}

struct Spec {
    name: &'static CStr,
    label: &'static str,
    hint: &'static str,
    kind: Kind,
}

const fn spec(name: &'static CStr, label: &'static str, hint: &'static str, kind: Kind) -> Spec {
    Spec {
        name,
        label,
        hint,
        kind,
    }
}

const COMMON: &[Spec] = &[
    spec(
        PROMPT,
        "Prompt",
        "What the generated frames should show.",
        Kind::Text { multi_line: true },
    ),
    spec(
        NEGATIVE_PROMPT,
        "Negative Prompt",
        "What the generated frames should avoid (used when Guidance is above 1).",
        Kind::Text { multi_line: true },
    ),
    spec(
        SEED,
        "Seed",
        "Noise seed: the same seed and settings give the same frames.",
        Kind::Int {
            default: 0,
            range: (0, i32::MAX),
            display: (0, 10_000),
        },
    ),
    spec(
        STEPS,
        "Steps",
        "Denoising steps: more is slower and finer.",
        Kind::Int {
            default: defaults::STEPS as i32,
            range: (1, 200),
            display: (1, 100),
        },
    ),
    spec(
        GUIDANCE,
        "Guidance",
        "How strongly to follow the prompt; 1 turns guidance off (twice as fast).",
        Kind::Double {
            default: defaults::GUIDANCE,
            range: (1.0, 20.0),
            display: (1.0, 10.0),
        },
    ),
    spec(
        CONTEXT_FRAMES,
        "Context Frames",
        "Source frames next to the cut that the new frames continue from.",
        Kind::Int {
            default: defaults::CONTEXT_FRAMES as i32,
            range: (1, 40),
            display: (1, 24),
        },
    ),
    spec(
        MODEL,
        "Model",
        "Wan2.1-VACE model: a folder (diffusers layout) or a Hugging Face repository id such as Wan-AI/Wan2.1-VACE-1.3B-diffusers (fetched once into the Hugging Face cache). Defaults to the SORAGEN_MODEL environment variable.",
        Kind::Text { multi_line: false },
    ),
    spec(
        COLOR_MATCH,
        "Colour Matching",
        "Match colour and brightness of new frames to the source they continue.",
        Kind::Bool { default: true },
    ),
    spec(
        DRAFT,
        "Draft Quality",
        "Fast sampling (see Sampling) for a quick look; renders at a render scale below 1 are drafts too.",
        Kind::Bool { default: false },
    ),
    spec(
        SAMPLING,
        "Sampling",
        "Quality: the model's own 50 steps with guidance. Fast: 4 steps without guidance (the distill-4 preset), for a step-distilled LoRA such as lightx2v's or CausVid's given as LoRA; draft renders use it too.",
        Kind::Choice {
            options: &["Quality", "Fast"],
        },
    ),
    spec(
        LORA,
        "LoRA",
        "A LoRA adapter (.safetensors, diffusers/PEFT or Wan/ComfyUI names) merged into the model's transformer when it loads; empty for none.",
        Kind::File,
    ),
    spec(
        LORA_STRENGTH,
        "LoRA Strength",
        "How strongly the LoRA adapter applies (1 = as trained).",
        Kind::Double {
            default: 1.0,
            range: (-4.0, 4.0),
            display: (0.0, 2.0),
        },
    ),
    spec(
        WINDOW_FRAMES,
        "Window Frames",
        "Frames the model makes at once (4n+1); longer results take several windows, each continuing the last. Fewer use less memory.",
        Kind::Int {
            default: defaults::WINDOW_FRAMES as i32,
            range: (5, 1001),
            display: (9, 161),
        },
    ),
    spec(
        REFERENCE_FRAME,
        "Reference Frame",
        "Which frame of the Reference input (0 = its first) shows the subject whose look every generated frame keeps.",
        Kind::Int {
            default: 0,
            range: (0, 100_000),
            display: (0, 1000),
        },
    ),
];

const FRAMES_SPEC: Spec = spec(
    FRAMES,
    "Frames",
    "How many frames to generate (Generate: the clip's length).",
    Kind::Int {
        default: 33,
        range: (1, 1000),
        display: (1, 161),
    },
);
const DIRECTION_SPEC: Spec = spec(
    DIRECTION,
    "Direction",
    "Extend after the last source frame or before the first.",
    Kind::Choice {
        options: &["Forward", "Backward"],
    },
);
const MASK_SPECS: &[Spec] = &[
    spec(
        USE_MASK,
        "Use Mask",
        "Take the subject from the Mask input (white = keep); off: from the source's alpha.",
        Kind::Bool { default: false },
    ),
    spec(
        MASK_DILATION,
        "Mask Dilation",
        "Grow the background region by this many pixels (tight mattes leave halos).",
        Kind::Int {
            default: defaults::MASK_DILATION as i32,
            range: (0, 256),
            display: (0, 64),
        },
    ),
    spec(
        MASK_FEATHER,
        "Mask Feather",
        "Soften the edge between kept and new pixels over this many pixels.",
        Kind::Int {
            default: defaults::MASK_FEATHER as i32,
            range: (0, 256),
            display: (0, 32),
        },
    ),
];

fn specs(effect: EffectKind) -> impl Iterator<Item = &'static Spec> {
    let extra: &[Spec] = match effect {
        EffectKind::Extend => std::slice::from_ref(&DIRECTION_SPEC),
        EffectKind::ReplaceBackground => MASK_SPECS,
        EffectKind::Insert | EffectKind::Generate => &[],
    };
    COMMON
        .iter()
        .chain(std::iter::once(&FRAMES_SPEC))
        .chain(extra)
}

/// Defines the effect's parameters on its descriptor.
pub fn define(params: ParamSet, effect: EffectKind) -> Result<()> {
    for spec in specs(effect) {
        let kind = match spec.kind {
            Kind::Text { .. } | Kind::File => kOfxParamTypeString,
            Kind::Int { .. } => kOfxParamTypeInteger,
            Kind::Double { .. } => kOfxParamTypeDouble,
            Kind::Bool { .. } => kOfxParamTypeBoolean,
            Kind::Choice { .. } => kOfxParamTypeChoice,
        };
        let props = params.define(kind, spec.name)?;
        props.set_string(kOfxPropLabel, spec.label)?;
        optional(props.set_string(kOfxParamPropHint, spec.hint))?;
        // Generation settings are not keyframed: one window uses one set of values.
        optional(props.set_bool(kOfxParamPropAnimates, false))?;
        match spec.kind {
            Kind::Text { multi_line } => {
                let mode = if multi_line {
                    kOfxParamStringIsMultiLine
                } else {
                    kOfxParamStringIsSingleLine
                };
                optional(props.set_strings(kOfxParamPropStringMode, &[mode]))?;
                if spec.name == MODEL {
                    props.set_string(
                        kOfxParamPropDefault,
                        &std::env::var(MODEL_ENV).unwrap_or_default(),
                    )?;
                }
            }
            Kind::File => {
                optional(props.set_strings(kOfxParamPropStringMode, &[kOfxParamStringIsFilePath]))?;
            }
            Kind::Int {
                default,
                range,
                display,
            } => {
                props.set_int(kOfxParamPropDefault, default)?;
                props.set_int(kOfxParamPropMin, range.0)?;
                props.set_int(kOfxParamPropMax, range.1)?;
                optional(props.set_int(kOfxParamPropDisplayMin, display.0))?;
                optional(props.set_int(kOfxParamPropDisplayMax, display.1))?;
            }
            Kind::Double {
                default,
                range,
                display,
            } => {
                props.set_double(kOfxParamPropDefault, default)?;
                props.set_double(kOfxParamPropMin, range.0)?;
                props.set_double(kOfxParamPropMax, range.1)?;
                optional(props.set_double(kOfxParamPropDisplayMin, display.0))?;
                optional(props.set_double(kOfxParamPropDisplayMax, display.1))?;
            }
            Kind::Bool { default } => props.set_bool(kOfxParamPropDefault, default)?,
            Kind::Choice { options } => {
                for (index, option) in options.iter().enumerate() {
                    props.set_string_at(kOfxParamPropChoiceOption, index, option)?;
                }
                props.set_int(kOfxParamPropDefault, 0)?;
            }
        }
    }
    Ok(())
}

/// Parameter values at one time.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub task: TaskParams,
    pub frames: usize,
    pub model: String,
    /// LoRA adapters merged into the model (the LoRA parameter, with its strength).
    pub adapters: Vec<LoraSpec>,
    /// The Fast choice: the `distill-4` preset, as draft renders use.
    pub fast: bool,
    pub draft: bool,
    pub backward: bool,
    pub use_mask: bool,
    /// Frame of the Reference input, counted from its first frame.
    pub reference_frame: i64,
}

impl Settings {
    pub fn read(params: ParamSet, effect: EffectKind, time: f64) -> Result<Self> {
        let int = |name: &CStr| -> Result<i32> { params.param(name)?.int(time) };
        let text = |name: &CStr| -> Result<String> { params.param(name)?.string(time) };
        let has_mask = effect == EffectKind::ReplaceBackground;
        let defaults = TaskParams::default();
        Ok(Self {
            task: TaskParams {
                prompt: text(PROMPT)?,
                negative_prompt: text(NEGATIVE_PROMPT)?,
                seed: int(SEED)?.max(0) as u64,
                steps: int(STEPS)?.max(1) as usize,
                guidance: params.param(GUIDANCE)?.double(time)?,
                context_frames: int(CONTEXT_FRAMES)?.max(1) as usize,
                window_frames: int(WINDOW_FRAMES)?.max(1) as usize,
                color_match: int(COLOR_MATCH)? != 0,
                mask_dilation: if has_mask {
                    int(MASK_DILATION)?.max(0) as usize
                } else {
                    defaults.mask_dilation
                },
                mask_feather: if has_mask {
                    int(MASK_FEATHER)?.max(0) as usize
                } else {
                    defaults.mask_feather
                },
                ..defaults
            },
            frames: int(FRAMES)?.max(1) as usize,
            model: text(MODEL)?.trim().to_string(),
            adapters: match text(LORA)?.trim() {
                "" => Vec::new(),
                file => vec![LoraSpec::new(
                    file,
                    params.param(LORA_STRENGTH)?.double(time)?,
                )],
            },
            fast: int(SAMPLING)? == 1,
            draft: int(DRAFT)? != 0,
            backward: effect == EffectKind::Extend && int(DIRECTION)? == 1,
            use_mask: has_mask && int(USE_MASK)? != 0,
            reference_frame: int(REFERENCE_FRAME)?.max(0) as i64,
        })
    }
}
