//! What a host sees of a running generation, and how it stops one.

use crate::{Error, Result};

/// What a host sees of a running generation: progress per denoising step and a way to stop.
pub trait Observer {
    /// Called after each denoising step (1-based `done` of `total`).
    fn step(&self, done: usize, total: usize);
    /// Called when a task starts its `index`-th (0-based) of `count` model windows.
    fn window(&self, _index: usize, _count: usize) {}
    /// Polled before each step and between the other phases (text encoding, each chunk of the
    /// VAE encode, each latent frame of the VAE decode, post-processing per frame): true stops
    /// the generation with [`Error::Cancelled`].
    fn cancelled(&self) -> bool {
        false
    }
    /// Something the user should know that does not stop the work (a cache that cannot be
    /// used); said once per occasion.
    fn warn(&self, message: &str) {
        eprintln!("soragen: warning: {message}");
    }
}

/// [`Error::Cancelled`] once `observer` asks to stop: the check between two phases.
pub fn checkpoint(observer: &dyn Observer) -> Result<()> {
    if observer.cancelled() {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

/// An observer that shows nothing and never cancels.
pub struct Silent;

impl Observer for Silent {
    fn step(&self, _: usize, _: usize) {}
}
