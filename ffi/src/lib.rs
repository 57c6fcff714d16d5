//! OpenFX for Soragen: the raw C API (`sys`) and a thin safe layer over it.
//!
//! `sys` is bindgen output of the OpenFX 1.5 headers as published in the `openfx` crate, whose
//! status constants are right (plain bindgen drops the `((int) N)` macros; see
//! `../shared/docs/hosts.md`). Everything else wraps handles valid for one action call: property
//! sets, the image effect and its clips and images, parameters, messages and progress. Plugin
//! code uses only this layer; every raw pointer stays in here.

// The OpenFX names (kOfxStat...) are used as written in the C headers.
#![allow(non_upper_case_globals)]

pub mod sys;

mod effect;
mod entry;
mod host;
mod image;
mod param;
mod property;
mod status;

pub use effect::{Clip, ImageEffect, MessageKind};
pub use entry::{Action, Call, dispatch, set_host};
pub use image::{Components, Depth, Image, Memory, RectI};
pub use param::{Param, ParamSet};
pub use property::PropertySet;
pub use status::{Result, Status, optional};
