//! `soragen`: generates frames inside a running video stream (extend it forward or backward,
//! fill a boundary between two pieces, replace the background); frames it does not generate
//! pass through untouched.

use gst::glib;
use gst::prelude::*;

mod imp;
mod mask;
mod reference;

/// What the element does to the stream.
#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSoragenMode")]
pub enum Mode {
    #[default]
    #[enum_value(
        name = "Passthrough: frames go through unchanged, no model needed",
        nick = "passthrough"
    )]
    Passthrough,
    #[enum_value(
        name = "Extend forward: 'frames' new frames after the stream's last frame, at EOS",
        nick = "extend-forward"
    )]
    ExtendForward,
    #[enum_value(
        name = "Extend backward: 'frames' new frames before the first frame; the stream follows, shifted",
        nick = "extend-backward"
    )]
    ExtendBackward,
    #[enum_value(
        name = "Insert: 'frames' new frames at each boundary (gap event, timestamp jump, new segment, insert-at)",
        nick = "insert"
    )]
    Insert,
    #[enum_value(
        name = "Replace background: regenerate the background (white in the grey stream on the 'mask' pad, else transparent alpha), in windows of 'frames'",
        nick = "replace-background"
    )]
    ReplaceBackground,
}

glib::wrapper! {
    pub struct Soragen(ObjectSubclass<imp::Soragen>) @extends gst::Element, gst::Object;
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Mode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "soragen",
        gst::Rank::NONE,
        Soragen::static_type(),
    )
}
