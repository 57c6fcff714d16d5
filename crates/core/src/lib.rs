//! Soragen's inference core, shared by the CLI, the OpenFX plugin and the GStreamer element.

pub mod hub;
pub mod model;
pub mod tasks;
pub mod vace;
pub mod video;

use std::fmt;

/// Everything that can go wrong, worded for the user: each host shows `to_string()` as-is.
#[derive(Debug)]
pub enum Error {
    /// Frames, masks or files the user gave cannot be used.
    Input(String),
    /// A request whose parameters do not fit the model (sizes, frame counts, ...).
    Request(String),
    /// Writing results failed.
    Output(String),
    /// Loading or running the model failed.
    Model(candle_core::Error),
    /// The user or host cancelled; nothing was produced.
    Cancelled,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input(m) | Error::Request(m) | Error::Output(m) => f.write_str(m),
            // candle errors may carry a backtrace after the first line: keep one line.
            Error::Model(e) => f.write_str(e.to_string().lines().next().unwrap_or("model error")),
            Error::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for Error {}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Model(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
