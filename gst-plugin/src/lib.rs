//! GStreamer plugin `soragen`: generative video (Wan2.1-VACE) in pipelines.
//!
//! - `soragen` generates frames inside a stream: extend it forward or backward, fill the
//!   boundary between two pieces, replace the background.
//! - `soragensrc` generates a clip from a text prompt, or brings a still to life.
//!
//! Generated buffers carry a [`generation::GENERATED_META`] custom meta (model, prompt, seed,
//! task); progress comes as [`generation::PROGRESS_MESSAGE`] element messages.

use gst::glib;

#[cfg(feature = "cuda")]
mod cuda;
mod frames;
pub mod generation;
mod images;
pub mod soragen;
pub mod soragensrc;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    generation::register_meta();
    soragen::register(plugin)?;
    soragensrc::register(plugin)?;
    Ok(())
}

gst::plugin_define!(
    soragen,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "Apache 2.0",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
