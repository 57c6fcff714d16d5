//! `soragensrc`: text to video as a source element; the clip is generated when the first buffer
//! is asked for, at the size and frame rate negotiated downstream.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    pub struct SoragenSrc(ObjectSubclass<imp::SoragenSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "soragensrc",
        gst::Rank::NONE,
        SoragenSrc::static_type(),
    )
}
