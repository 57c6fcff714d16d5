//! Sampling presets: named step counts, guidance and flow shift. `distill-4` is the setting the
//! published step- and guidance-distilled Wan2.1 LoRAs (lightx2v's CFG + step distillation,
//! CausVid) are made for: 4 steps at guidance 1 (no negative pass) and flow shift 5, so a window
//! costs 4 transformer evaluations instead of the 100 of 50 guided steps. The adapter itself is
//! given with `--lora` (a preset without its adapter produces poor frames).

/// The adapter spec every surface parses (re-exported: hosts need not depend on the models crate).
pub use soragen_models::lora::LoraSpec;

use crate::tasks::TaskParams;
use crate::{Error, Result};

/// Separates adapters in one text value (the GStreamer `lora` property), as it separates
/// reference images.
pub const ADAPTER_SEPARATOR: char = ';';

/// `FILE[:STRENGTH]` adapters separated by [`ADAPTER_SEPARATOR`]; empty text: none.
pub fn parse_adapters(text: &str) -> Result<Vec<LoraSpec>> {
    text.split(ADAPTER_SEPARATOR)
        .map(str::trim)
        .filter(|spec| !spec.is_empty())
        .map(|spec| LoraSpec::parse(spec).map_err(|e| Error::Input(e.to_string())))
        .collect()
}

/// The text [`parse_adapters`] reads back.
pub fn adapters_text(adapters: &[LoraSpec]) -> String {
    adapters
        .iter()
        .map(|a| format!("{}:{}", a.path.display(), a.strength))
        .collect::<Vec<_>>()
        .join(&ADAPTER_SEPARATOR.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preset {
    pub name: &'static str,
    pub steps: usize,
    pub guidance: f64,
    /// Overrides the scheduler's flow shift; `None` keeps the model folder's.
    pub flow_shift: Option<f64>,
    /// What the preset is made for, for help texts.
    pub about: &'static str,
}

pub const PRESETS: &[Preset] = &[
    Preset {
        name: "quality",
        steps: 50,
        guidance: 5.0,
        flow_shift: None,
        about: "the model's own sampling: 50 steps with guidance 5 (100 transformer evaluations a window)",
    },
    Preset {
        name: "distill-4",
        steps: 4,
        guidance: 1.0,
        flow_shift: Some(5.0),
        about: "4 steps, guidance 1, flow shift 5, for a step- and guidance-distilled LoRA \
                (lightx2v, CausVid) given with --lora (4 transformer evaluations a window)",
    },
];

/// The few-step preset: what a host's Fast choice and its draft renders use.
pub const DISTILL_4: &Preset = &PRESETS[1];

impl Preset {
    /// The preset of that name, or an error listing them.
    pub fn named(name: &str) -> Result<&'static Preset> {
        PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            Error::Input(format!(
                "unknown preset {name:?}: use one of {}",
                names.join(", ")
            ))
        })
    }

    /// [`Self::named`], with empty text or `none` meaning no preset (a host's setting).
    pub fn optional(name: &str) -> Result<Option<&'static Preset>> {
        match name.trim() {
            "" | "none" => Ok(None),
            name => Self::named(name).map(Some),
        }
    }

    /// Sets the task's steps, guidance and flow shift (a preset without a shift keeps the
    /// model folder's).
    pub fn apply(&self, params: &mut TaskParams) {
        params.steps = self.steps;
        params.guidance = self.guidance;
        params.flow_shift = self.flow_shift;
    }
}
