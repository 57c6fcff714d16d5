//! The four effects of the bundle: what each declares to the host and which clips it has in
//! each context.

use std::ffi::CStr;

use soragen_ofx_ffi::sys::*;
use soragen_ofx_ffi::{Depth, ImageEffect, Result, Status, optional};

use crate::{cuda, params};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EffectKind {
    Extend,
    Insert,
    ReplaceBackground,
    Generate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Context {
    Filter,
    General,
    Transition,
    Generator,
}

impl Context {
    pub fn name(self) -> &'static CStr {
        match self {
            Context::Filter => kOfxImageEffectContextFilter,
            Context::General => kOfxImageEffectContextGeneral,
            Context::Transition => kOfxImageEffectContextTransition,
            Context::Generator => kOfxImageEffectContextGenerator,
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            Context::Filter,
            Context::General,
            Context::Transition,
            Context::Generator,
        ]
        .into_iter()
        .find(|c| c.name().to_str() == Ok(name))
    }
}

/// The second input of Insert in the General context (Nuke, Natron): the clip to lead into.
pub const NEXT_CLIP: &CStr = c"Next";
/// Replace Background's optional matte (white = subject to keep).
pub const MASK_CLIP: &CStr = c"Mask";
/// Optional reference image (a subject's look) on every effect; the Reference Frame parameter
/// picks its frame.
pub const REFERENCE_CLIP: &CStr = c"Reference";
/// Generate's optional still: connected, the clip starts from it (image to video).
pub const IMAGE_CLIP: &CStr = c"Image";

/// One input clip: name, optional, is a mask.
pub struct Input {
    pub name: &'static CStr,
    pub optional: bool,
    pub mask: bool,
}

const fn input(name: &'static CStr) -> Input {
    Input {
        name,
        optional: false,
        mask: false,
    }
}

/// Extra inputs must be optional in the Filter, Transition and Generator contexts (1.5.1,
/// "Image Effect Contexts"): hosts that cannot wire them still load the effect.
const fn optional_input(name: &'static CStr) -> Input {
    Input {
        name,
        optional: true,
        mask: false,
    }
}

const REFERENCE: Input = optional_input(REFERENCE_CLIP);
const SOURCE: &[Input] = &[input(kOfxImageEffectSimpleSourceClipName), REFERENCE];
const TRANSITION: &[Input] = &[
    input(kOfxImageEffectTransitionSourceFromClipName),
    input(kOfxImageEffectTransitionSourceToClipName),
    REFERENCE,
];
const SOURCE_AND_NEXT: &[Input] = &[
    input(kOfxImageEffectSimpleSourceClipName),
    input(NEXT_CLIP),
    REFERENCE,
];
const SOURCE_AND_MASK: &[Input] = &[
    input(kOfxImageEffectSimpleSourceClipName),
    Input {
        name: MASK_CLIP,
        optional: true,
        mask: true,
    },
    REFERENCE,
];
const IMAGE_AND_REFERENCE: &[Input] = &[optional_input(IMAGE_CLIP), REFERENCE];

impl EffectKind {
    pub const ALL: [EffectKind; 4] = [
        EffectKind::Extend,
        EffectKind::Insert,
        EffectKind::ReplaceBackground,
        EffectKind::Generate,
    ];

    pub const fn identifier(self) -> &'static CStr {
        match self {
            EffectKind::Extend => c"org.soragen.Extend",
            EffectKind::Insert => c"org.soragen.Insert",
            EffectKind::ReplaceBackground => c"org.soragen.ReplaceBackground",
            EffectKind::Generate => c"org.soragen.Generate",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            EffectKind::Extend => "Soragen Extend",
            EffectKind::Insert => "Soragen Insert",
            EffectKind::ReplaceBackground => "Soragen Replace Background",
            EffectKind::Generate => "Soragen Generate",
        }
    }

    fn description(self) -> &'static str {
        match self {
            EffectKind::Extend => {
                "Generates frames after the clip's last frame (or before its first) that continue it."
            }
            EffectKind::Insert => {
                "Generates frames leading from the end of one clip into the start of the next."
            }
            EffectKind::ReplaceBackground => {
                "Keeps the subject (from a mask or the source's alpha) and generates a new background."
            }
            EffectKind::Generate => "Generates a clip from the prompt.",
        }
    }

    pub fn contexts(self) -> &'static [Context] {
        match self {
            EffectKind::Extend | EffectKind::ReplaceBackground => {
                &[Context::Filter, Context::General]
            }
            EffectKind::Insert => &[Context::Transition, Context::General],
            // General too, so that hosts without the Generator context (Nuke) list it.
            EffectKind::Generate => &[Context::Generator, Context::General],
        }
    }

    pub fn inputs(self, context: Context) -> &'static [Input] {
        match (self, context) {
            (EffectKind::Generate, _) => IMAGE_AND_REFERENCE,
            (EffectKind::Insert, Context::Transition) => TRANSITION,
            (EffectKind::Insert, _) => SOURCE_AND_NEXT,
            (EffectKind::ReplaceBackground, _) => SOURCE_AND_MASK,
            (EffectKind::Extend, _) => SOURCE,
        }
    }

    /// The Describe action: what the effect is and what it supports.
    pub fn describe(self, effect: ImageEffect) -> Result<()> {
        let props = effect.properties()?;
        // What a host needs to list the effect at all.
        props.set_string(kOfxPropLabel, self.label())?;
        let contexts: Vec<&CStr> = self.contexts().iter().map(|c| c.name()).collect();
        props.set_strings(kOfxImageEffectPropSupportedContexts, &contexts)?;
        props.set_strings(
            kOfxImageEffectPropSupportedPixelDepths,
            &[Depth::Float.name(), Depth::Short.name(), Depth::Byte.name()],
        )?;
        // The rest has defaults in the standard; a host that does not know one goes on without.
        optional(props.set_string(kOfxPropPluginDescription, self.description()))?;
        optional(props.set_string(kOfxImageEffectPluginPropGrouping, "Soragen"))?;
        optional(props.set_bool(kOfxImageEffectPropSupportsMultipleClipDepths, false))?;
        optional(props.set_bool(kOfxImageEffectPropTemporalClipAccess, true))?;
        optional(props.set_bool(kOfxImageEffectPropSupportsTiles, true))?;
        optional(props.set_bool(kOfxImageEffectPluginPropFieldRenderTwiceAlways, false))?;
        // Renders of one instance are serialised by the host; instances share the model and
        // the cache of generated windows, which guard themselves.
        optional(props.set_strings(
            kOfxImageEffectPluginRenderThreadSafety,
            &[kOfxImageEffectRenderInstanceSafe],
        ))?;
        optional(props.set_bool(kOfxImageEffectPluginPropHostFrameThreading, false))?;
        cuda::describe(props)
    }

    /// The DescribeInContext action: clips and parameters.
    pub fn describe_in_context(self, effect: ImageEffect, context: Context) -> Result<()> {
        if !self.contexts().contains(&context) {
            return Err(Status::ERR_UNSUPPORTED);
        }
        let colour = [kOfxImageComponentRGBA, kOfxImageComponentRGB];
        let output = effect.define_clip(kOfxImageEffectOutputClipName)?;
        output.set_strings(kOfxImageEffectPropSupportedComponents, &colour)?;
        for input in self.inputs(context) {
            let clip = effect.define_clip(input.name)?;
            if input.mask {
                clip.set_strings(
                    kOfxImageEffectPropSupportedComponents,
                    &[
                        kOfxImageComponentAlpha,
                        kOfxImageComponentRGBA,
                        kOfxImageComponentRGB,
                    ],
                )?;
                optional(clip.set_bool(kOfxImageClipPropIsMask, true))?;
            } else {
                clip.set_strings(kOfxImageEffectPropSupportedComponents, &colour)?;
            }
            clip.set_bool(kOfxImageClipPropOptional, input.optional)?;
            optional(clip.set_bool(kOfxImageEffectPropTemporalClipAccess, true))?;
            optional(clip.set_bool(kOfxImageEffectPropSupportsTiles, true))?;
        }
        let params = effect.params()?;
        if context == Context::Transition {
            // The host animates this 0..1 over the transition; frames come from the time.
            let transition =
                params.define(kOfxParamTypeDouble, kOfxImageEffectTransitionParamName)?;
            transition.set_string(kOfxPropLabel, "Transition")?;
            optional(transition.set_string(
                kOfxParamPropHint,
                "Position in the transition (set by the host).",
            ))?;
            optional(transition.set_double(kOfxParamPropMin, 0.0))?;
            optional(transition.set_double(kOfxParamPropMax, 1.0))?;
            optional(transition.set_double(kOfxParamPropDisplayMin, 0.0))?;
            optional(transition.set_double(kOfxParamPropDisplayMax, 1.0))?;
        }
        params::define(params, self)
    }
}
