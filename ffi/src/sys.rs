//! The OpenFX C API, flattened into one namespace like the C headers.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]

pub use openfx::sys::generic::core::*;
pub use openfx::sys::generic::property::*;
pub use openfx::sys::image_effect_v1::gpu_render::*;
pub use openfx::sys::image_effect_v1::image_effect::*;
pub use openfx::sys::image_effect_v1::memory::*;
pub use openfx::sys::image_effect_v1::message::*;
pub use openfx::sys::image_effect_v1::multi_thread::*;
pub use openfx::sys::image_effect_v1::param::*;
pub use openfx::sys::image_effect_v1::progress::*;
pub use openfx::sys::image_effect_v1::time_line::*;

/// Prefix of the per-clip frame range properties in GetFramesNeeded's out-args (the header
/// spells it in prose only).
pub const kOfxImageClipPropFrameRange_: &str = "OfxImageClipPropFrameRange_";
/// Prefix of the per-clip preference properties in GetClipPreferences' out-args.
pub const kOfxImageClipPropRoI_: &str = "OfxImageClipPropRoI_";
pub const kOfxImageClipPropComponents_: &str = "OfxImageClipPropComponents_";
pub const kOfxImageClipPropDepth_: &str = "OfxImageClipPropDepth_";
