//! The editing tasks every host calls: extend a clip forward or backward, insert frames
//! between two clips, replace a background, generate from text. Each becomes one or more VACE
//! requests (frames + masks + prompt); see `../shared/docs/models.md`.
//!
//! This module fixes the API the CLI, the OpenFX plugin and the GStreamer element share.

use std::ops::Range;

use serde::Serialize;

use crate::video::Video;

/// What the user asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskKind {
    /// `frames` new frames after the clip's last frame.
    ExtendForward { frames: usize },
    /// `frames` new frames before the clip's first frame.
    ExtendBackward { frames: usize },
    /// `frames` new frames leading from the end of `clip` into the start of `next`.
    Insert { frames: usize },
    /// Keep the subject, regenerate the background (mask: 255 = background).
    ReplaceBackground,
    /// Text to video.
    Generate { frames: usize, width: usize, height: usize },
}

/// The frames a task works on. Which are required depends on the [`TaskKind`].
#[derive(Clone, Debug, Default)]
pub struct TaskInputs {
    /// The source clip; clip A for an insert. Absent for generate.
    pub clip: Option<Video>,
    /// Clip B for an insert.
    pub next: Option<Video>,
    /// Background mask per frame of `clip` for replace-background, grey levels, one byte per
    /// pixel (> 127 = background, to be replaced). Absent: the clip's alpha channel decides
    /// (transparent = background).
    pub mask: Option<Vec<Vec<u8>>>,
}

/// Everything besides the frames that changes the output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskParams {
    pub prompt: String,
    pub negative_prompt: String,
    pub seed: u64,
    pub steps: usize,
    pub guidance: f64,
    /// Source frames nearest the cut that condition an extension or insert.
    pub context_frames: usize,
    /// Match colour and brightness of generated frames to the source they continue.
    pub color_match: bool,
    /// Grow the background mask by this many pixels (tight mattes leave halos).
    pub mask_dilation: usize,
    /// Soften the composite edge over this many pixels.
    pub mask_feather: usize,
}

impl Default for TaskParams {
    fn default() -> Self {
        Self {
            prompt: String::new(),
            negative_prompt: String::new(),
            seed: 0,
            steps: 50,
            guidance: 5.0,
            context_frames: 8,
            color_match: true,
            mask_dilation: 4,
            mask_feather: 2,
        }
    }
}

/// What was generated, for the sidecar JSON next to CLI outputs and for hosts to attach.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GenerationRecord {
    pub model: String,
    pub task: String,
    /// Frame ranges of the output that came from the model (half-open).
    pub generated: Vec<Range<usize>>,
    pub params: TaskParams,
}

/// A finished task: the whole result clip and which of its frames are generated.
#[derive(Clone, Debug)]
pub struct TaskOutput {
    /// Extend: the extended clip. Insert: A, the new frames, then B. Replace background: the
    /// clip with its background replaced. Generate: the new clip.
    pub video: Video,
    pub record: GenerationRecord,
}
