//! Why an action did not succeed, and how the host hears of it.

use soragen_ofx_ffi::{ImageEffect, MessageKind, Status};

use crate::memory::OutOfMemory;

/// Why an action did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// A host call failed: its status goes back as is.
    Host(Status),
    /// Something the user can fix: shown through the message suite.
    User(String),
    /// The host or the user stopped the render.
    Cancelled,
    /// Not enough memory to go on: shown, and `kOfxStatErrMemory` for the host.
    OutOfMemory(String),
    /// A GPU render that could not run: shown, and `kOfxStatGPURenderFailed` for the host.
    Gpu(String),
    /// The GPU ran out of memory: caches freed, shown, and `kOfxStatGPUOutOfMemory`.
    GpuOutOfMemory,
}

impl From<OutOfMemory> for Failure {
    fn from(error: OutOfMemory) -> Self {
        Failure::OutOfMemory(error.to_string())
    }
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Failure::Host(status)
    }
}

impl From<soragen_core::Error> for Failure {
    fn from(error: soragen_core::Error) -> Self {
        match error {
            soragen_core::Error::Cancelled => Failure::Cancelled,
            soragen_core::Error::GpuOutOfMemory => Failure::GpuOutOfMemory,
            soragen_core::Error::Gpu(message) => Failure::Gpu(message),
            other => Failure::User(other.to_string()),
        }
    }
}

/// Reports a failure to the host: user-facing ones through the message suite.
pub fn report(effect: ImageEffect, result: Result<(), Failure>) -> soragen_ofx_ffi::Result<()> {
    let (message, status) = match result {
        Ok(()) => return Ok(()),
        Err(Failure::Host(status)) => return Err(status),
        Err(Failure::Cancelled) => return Err(Status::FAILED),
        Err(Failure::User(message)) => (message, Status::FAILED),
        Err(Failure::OutOfMemory(message)) => (message, Status::ERR_MEMORY),
        Err(Failure::Gpu(message)) => (message, Status::GPU_RENDER_FAILED),
        Err(Failure::GpuOutOfMemory) => (GPU_OUT_OF_MEMORY.into(), Status::GPU_OUT_OF_MEMORY),
    };
    // A failed message post must not hide the failure itself; hosts without a message suite
    // (or that do not show it) still log stderr.
    let message = format!("Soragen: {message}");
    eprintln!("{message}");
    let _ = effect.set_persistent_message(MessageKind::Error, &message);
    Err(status)
}

pub const GPU_OUT_OF_MEMORY: &str =
    "out of GPU memory (Soragen's caches are freed): try a draft, fewer frames or a smaller model";
