//! Set-up the test binaries share: the tiny model, GStreamer with the plugin registered, a
//! Harness around one element, its bus and progress messages.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::sync::Once;

use gst::prelude::*;
use gst_check::Harness;
use gstsoragen::generation::PROGRESS_MESSAGE;

pub const TINY_MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny");

/// 16 frames per second.
pub const FRAME: gst::ClockTime = gst::ClockTime::from_nseconds(62_500_000);

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstsoragen::plugin_register_static().unwrap();
    });
}

/// A harness around the one element `description` (gst-launch syntax) makes.
pub fn element_harness(description: &str) -> Harness {
    init();
    let element = gst::parse::launch(description).unwrap();
    let src = element.static_pad("src").is_some().then_some("src");
    let sink = element.static_pad("sink").is_some().then_some("sink");
    Harness::with_element(&element, sink, src)
}

/// A bus of the test's own for the harnessed element (a Harness gives it none).
pub fn bus_for(h: &Harness) -> gst::Bus {
    let bus = gst::Bus::new();
    h.element().unwrap().set_bus(Some(&bus));
    bus
}

/// The next `soragen-progress` message (one per denoising step).
pub fn wait_for_progress(bus: &gst::Bus) -> gst::Structure {
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Element],
        )
        .expect("a progress message");
    let s = message.structure().unwrap().to_owned();
    assert_eq!(s.name(), PROGRESS_MESSAGE);
    s
}
