//! Which property lives on which object, as the OpenFX 1.5.1 headers define it (each
//! property's "Valid on" line; cross-checked with the standard's property-set table,
//! `openfx-props.yml`, which the `openfx` crate 0.6.0 carries as generated code). A strict
//! host answers `kOfxStatErrUnknown` for any other name, as HostSupport does, so the plugin
//! cannot come to rely on a property a real host does not have.

use std::ffi::CStr;

use soragen_ofx_ffi::sys::*;

use crate::Profile;

/// The objects a host hands the plugin property sets of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    Host,
    EffectDescriptor,
    EffectInstance,
    ClipDescriptor,
    ClipInstance,
    Image,
    ParamSet,
    /// A parameter of the given `kOfxParamType...` (descriptor and instance alike).
    Param(ParamKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Integer,
    Double,
    Boolean,
    Choice,
    String,
    Other,
}

impl ParamKind {
    pub fn from_type(kind: &str) -> Self {
        let is = |name: &CStr| name.to_str() == Ok(kind);
        if is(kOfxParamTypeInteger) {
            ParamKind::Integer
        } else if is(kOfxParamTypeDouble) {
            ParamKind::Double
        } else if is(kOfxParamTypeBoolean) {
            ParamKind::Boolean
        } else if is(kOfxParamTypeChoice) {
            ParamKind::Choice
        } else if is(kOfxParamTypeString) {
            ParamKind::String
        } else {
            ParamKind::Other
        }
    }
}

const HOST: &[&CStr] = &[
    kOfxPropType,
    kOfxPropName,
    kOfxPropLabel,
    kOfxPropVersion,
    kOfxPropVersionLabel,
    kOfxPropAPIVersion,
    kOfxPropHostOSHandle,
    kOfxImageEffectHostPropIsBackground,
    kOfxImageEffectHostPropNativeOrigin,
    kOfxImageEffectInstancePropSequentialRender,
    kOfxImageEffectPropSupportsOverlays,
    kOfxImageEffectPropSupportsMultiResolution,
    kOfxImageEffectPropSupportsTiles,
    kOfxImageEffectPropTemporalClipAccess,
    kOfxImageEffectPropSupportedComponents,
    kOfxImageEffectPropSupportedContexts,
    kOfxImageEffectPropSupportedPixelDepths,
    kOfxImageEffectPropSupportsMultipleClipDepths,
    kOfxImageEffectPropSupportsMultipleClipPARs,
    kOfxImageEffectPropSetableFrameRate,
    kOfxImageEffectPropSetableFielding,
    kOfxImageEffectPropRenderQualityDraft,
    kOfxParamHostPropSupportsCustomInteract,
    kOfxParamHostPropSupportsStringAnimation,
    kOfxParamHostPropSupportsChoiceAnimation,
    kOfxParamHostPropSupportsBooleanAnimation,
    kOfxParamHostPropSupportsCustomAnimation,
    kOfxParamHostPropMaxParameters,
    kOfxParamHostPropMaxPages,
    kOfxParamHostPropPageRowColumnCount,
];

/// Shared by the effect descriptor and (in HostSupport and most hosts) its instances.
const EFFECT_DESCRIPTOR: &[&CStr] = &[
    kOfxPropType,
    kOfxPropLabel,
    kOfxPropShortLabel,
    kOfxPropLongLabel,
    kOfxPropVersion,
    kOfxPropVersionLabel,
    kOfxPropPluginDescription,
    kOfxPluginPropFilePath,
    kOfxImageEffectPropSupportedContexts,
    kOfxImageEffectPluginPropGrouping,
    kOfxImageEffectPluginPropSingleInstance,
    kOfxImageEffectPluginRenderThreadSafety,
    kOfxImageEffectPluginPropHostFrameThreading,
    kOfxImageEffectPluginPropOverlayInteractV1,
    kOfxImageEffectPropSupportsMultiResolution,
    kOfxImageEffectPropSupportsTiles,
    kOfxImageEffectPropTemporalClipAccess,
    kOfxImageEffectPropSupportedPixelDepths,
    kOfxImageEffectPluginPropFieldRenderTwiceAlways,
    kOfxImageEffectPropSupportsMultipleClipDepths,
    kOfxImageEffectPropSupportsMultipleClipPARs,
    kOfxImageEffectPropClipPreferencesSlaveParam,
];

/// The effect instance: note there is no frame range here; the clips have those.
const EFFECT_INSTANCE: &[&CStr] = &[
    kOfxPropType,
    kOfxImageEffectPropContext,
    kOfxPropInstanceData,
    kOfxImageEffectPropPluginHandle,
    kOfxImageEffectPropProjectSize,
    kOfxImageEffectPropProjectOffset,
    kOfxImageEffectPropProjectExtent,
    kOfxImageEffectPropProjectPixelAspectRatio,
    kOfxImageEffectInstancePropEffectDuration,
    kOfxImageEffectInstancePropSequentialRender,
    kOfxImageEffectPropSupportsTiles,
    kOfxImageEffectPropFrameRate,
    kOfxPropIsInteractive,
];

/// OpenFX 1.5 GPU render (ofxGPURender.h): on the host and effect descriptors, and the
/// instance, for hosts that know them.
const GPU: &[&CStr] = &[
    kOfxImageEffectPropCudaRenderSupported,
    kOfxImageEffectPropCudaStreamSupported,
];

const CLIP_DESCRIPTOR: &[&CStr] = &[
    kOfxPropType,
    kOfxPropName,
    kOfxPropLabel,
    kOfxPropShortLabel,
    kOfxPropLongLabel,
    kOfxImageEffectPropSupportedComponents,
    kOfxImageEffectPropTemporalClipAccess,
    kOfxImageClipPropOptional,
    kOfxImageClipPropFieldExtraction,
    kOfxImageClipPropIsMask,
    kOfxImageEffectPropSupportsTiles,
];

const CLIP_INSTANCE: &[&CStr] = &[
    kOfxImageEffectPropPixelDepth,
    kOfxImageEffectPropComponents,
    kOfxImageClipPropUnmappedPixelDepth,
    kOfxImageClipPropUnmappedComponents,
    kOfxImageEffectPropPreMultiplication,
    kOfxImagePropPixelAspectRatio,
    kOfxImageEffectPropFrameRate,
    kOfxImageClipPropFieldOrder,
    kOfxImageClipPropConnected,
    kOfxImageEffectPropUnmappedFrameRate,
    kOfxImageClipPropContinuousSamples,
];

/// On clip instances, for hosts that report frame ranges (MLT does not).
const CLIP_RANGES: &[&CStr] = &[
    kOfxImageEffectPropFrameRange,
    kOfxImageEffectPropUnmappedFrameRange,
];

const IMAGE: &[&CStr] = &[
    kOfxPropType,
    kOfxImageEffectPropPixelDepth,
    kOfxImageEffectPropComponents,
    kOfxImageEffectPropPreMultiplication,
    kOfxImageEffectPropRenderScale,
    kOfxImagePropPixelAspectRatio,
    kOfxImagePropData,
    kOfxImagePropBounds,
    kOfxImagePropRegionOfDefinition,
    kOfxImagePropRowBytes,
    kOfxImagePropField,
    kOfxImagePropUniqueIdentifier,
];

const PARAM_SET: &[&CStr] = &[kOfxPluginPropParamPageOrder, kOfxPropParamSetNeedsSyncing];

/// Every parameter type but groups and pages.
const PARAM: &[&CStr] = &[
    kOfxPropType,
    kOfxPropName,
    kOfxPropLabel,
    kOfxPropShortLabel,
    kOfxPropLongLabel,
    kOfxPropIcon,
    kOfxParamPropType,
    kOfxParamPropSecret,
    kOfxParamPropHint,
    kOfxParamPropScriptName,
    kOfxParamPropParent,
    kOfxParamPropEnabled,
    kOfxParamPropDataPtr,
    kOfxParamPropInteractV1,
    kOfxParamPropInteractSize,
    kOfxParamPropInteractSizeAspect,
    kOfxParamPropInteractMinimumSize,
    kOfxParamPropInteractPreferedSize,
    kOfxParamPropHasHostOverlayHandle,
    kOfxParamPropUseHostOverlayHandle,
    kOfxParamPropDefault,
    kOfxParamPropAnimates,
    kOfxParamPropIsAnimating,
    kOfxParamPropIsAutoKeying,
    kOfxParamPropPersistant,
    kOfxParamPropEvaluateOnChange,
    kOfxParamPropPluginMayWrite,
    kOfxParamPropCacheInvalidation,
    kOfxParamPropCanUndo,
];

const PARAM_RANGE: &[&CStr] = &[
    kOfxParamPropMin,
    kOfxParamPropMax,
    kOfxParamPropDisplayMin,
    kOfxParamPropDisplayMax,
];
const PARAM_DOUBLE: &[&CStr] = &[
    kOfxParamPropIncrement,
    kOfxParamPropDigits,
    kOfxParamPropDoubleType,
    kOfxParamPropShowTimeMarker,
];
const PARAM_CHOICE: &[&CStr] = &[kOfxParamPropChoiceOption, kOfxParamPropChoiceOrder];
const PARAM_STRING: &[&CStr] = &[kOfxParamPropStringMode, kOfxParamPropStringFilePathExists];

/// The property names `object` has in a host of `profile`.
pub fn names(object: Object, profile: &Profile) -> Vec<&'static str> {
    let gpu: &[&CStr] = if profile.gpu_properties { GPU } else { &[] };
    let parts: Vec<&[&'static CStr]> = match object {
        Object::Host => vec![HOST, gpu],
        Object::EffectDescriptor => vec![EFFECT_DESCRIPTOR, gpu],
        Object::EffectInstance => vec![EFFECT_INSTANCE, EFFECT_DESCRIPTOR, gpu],
        Object::ClipDescriptor => vec![CLIP_DESCRIPTOR],
        Object::ClipInstance => vec![
            CLIP_DESCRIPTOR,
            CLIP_INSTANCE,
            if profile.frame_ranges {
                CLIP_RANGES
            } else {
                &[]
            },
        ],
        Object::Image => vec![IMAGE],
        Object::ParamSet => vec![PARAM_SET],
        Object::Param(kind) => match kind {
            ParamKind::Integer => vec![PARAM, PARAM_RANGE],
            ParamKind::Double => vec![PARAM, PARAM_RANGE, PARAM_DOUBLE],
            ParamKind::Boolean | ParamKind::Other => vec![PARAM],
            ParamKind::Choice => vec![PARAM, PARAM_CHOICE],
            ParamKind::String => vec![PARAM, PARAM_STRING],
        },
    };
    let mut names: Vec<&'static str> = parts
        .concat()
        .into_iter()
        .map(|name| name.to_str().expect("ASCII names"))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Action arguments (ofxImageEffect.h, each action's inArgs/outArgs); `clips`: the instance's
/// clip names, for the per-clip out-args of GetFramesNeeded, GetRegionsOfInterest and
/// GetClipPreferences.
pub mod args {
    use std::ffi::CStr;

    use soragen_ofx_ffi::sys::*;

    pub const DESCRIBE_IN_CONTEXT: &[&CStr] = &[kOfxImageEffectPropContext];
    pub const CLIP_PREFERENCES_OUT: &[&CStr] = &[
        kOfxImageEffectPropFrameRate,
        kOfxImageEffectPropPreMultiplication,
        kOfxImageClipPropFieldOrder,
        kOfxImageClipPropContinuousSamples,
        kOfxImageEffectFrameVarying,
    ];
    pub const CLIP_PREFERENCES_PER_CLIP: &[&str] = &[
        kOfxImageClipPropComponents_,
        kOfxImageClipPropDepth_,
        "OfxImageClipPropPAR_",
    ];
    pub const TIME_DOMAIN_OUT: &[&CStr] = &[kOfxImageEffectPropFrameRange];
    pub const FRAMES_NEEDED_IN: &[&CStr] = &[kOfxPropTime];
    pub const REGIONS_OF_INTEREST_IN: &[&CStr] = &[
        kOfxPropTime,
        kOfxImageEffectPropRenderScale,
        kOfxImageEffectPropRegionOfInterest,
    ];
    pub const RENDER_IN: &[&CStr] = &[
        kOfxPropTime,
        kOfxImageEffectPropFieldToRender,
        kOfxImageEffectPropRenderWindow,
        kOfxImageEffectPropRenderScale,
        kOfxImageEffectPropSequentialRenderStatus,
        kOfxImageEffectPropInteractiveRenderStatus,
        kOfxImageEffectPropRenderQualityDraft,
    ];
    /// Render in-args of OpenFX 1.5 GPU render, for hosts that know it.
    pub const RENDER_IN_GPU: &[&CStr] = &[
        kOfxImageEffectPropCudaEnabled,
        kOfxImageEffectPropCudaStream,
    ];

    /// `fixed` plus each of `per_clip` prefixes followed by each clip name.
    pub fn with_clips(fixed: &[&CStr], per_clip: &[&str], clips: &[String]) -> Vec<String> {
        let per_clip = per_clip
            .iter()
            .flat_map(|prefix| clips.iter().map(move |clip| format!("{prefix}{clip}")));
        names(fixed).into_iter().chain(per_clip).collect()
    }

    pub fn names(fixed: &[&CStr]) -> Vec<String> {
        fixed
            .iter()
            .map(|name| name.to_string_lossy().into_owned())
            .collect()
    }
}
