//! Progress on the terminal, and stop requests (Ctrl-C, SIGTERM).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use soragen_core::vace::Observer;
use soragen_core::{Error, Result};

/// Where a run stands with stop requests (Ctrl-C, SIGTERM), shared with the signal handler.
pub(crate) const RUNNING: u8 = 0;
pub(crate) const STOP_REQUESTED: u8 = 1;
/// The output is being committed: a stop waits for the commit to finish.
pub(crate) const COMMITTING: u8 = 2;
pub(crate) const COMMITTING_STOP_REQUESTED: u8 = 3;

/// Progress on a terminal; Ctrl-C or SIGTERM asks to stop between denoising steps.
pub(crate) struct Terminal {
    state: Arc<AtomicU8>,
    /// The current window's steps; indicatif draws nothing when stderr is not a terminal.
    bar: ProgressBar,
}

impl Terminal {
    pub(crate) fn new() -> Self {
        let state = Arc::new(AtomicU8::new(RUNNING));
        let shared = Arc::clone(&state);
        // A second stop request ends the process at once, for a user who does not want to
        // wait, except while the output is committed: that finishes first, so an output is
        // never left half replaced.
        let _ = ctrlc::set_handler(move || {
            match shared.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| match s {
                RUNNING => Some(STOP_REQUESTED),
                COMMITTING => Some(COMMITTING_STOP_REQUESTED),
                _ => None,
            }) {
                Ok(RUNNING) => {
                    eprintln!("\nstopping after the current step (Ctrl-C again to quit now)")
                }
                Ok(_) => eprintln!("\nstopping once the output is written in full"),
                Err(STOP_REQUESTED) => std::process::exit(130),
                Err(_) => {}
            }
        });
        let bar = ProgressBar::new(0).with_style(
            ProgressStyle::with_template("[{bar:30}] step {pos}/{len}  {step_time}  eta {eta}")
                .expect("a valid template")
                // Steps take seconds: time per step reads better than steps per second.
                .with_key(
                    "step_time",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = match state.pos() {
                            0 => write!(w, "-"),
                            done => write!(
                                w,
                                "{:.2} s/step",
                                state.elapsed().as_secs_f64() / done as f64
                            ),
                        };
                    },
                )
                .progress_chars("#>-"),
        );
        Self { state, bar }
    }

    /// Enters the commit: from here a stop request finishes writing the output. Fails with
    /// [`Error::Cancelled`] when a stop was requested before.
    pub(crate) fn begin_commit(&self) -> Result<()> {
        match self
            .state
            .compare_exchange(RUNNING, COMMITTING, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::Cancelled),
        }
    }

    /// After a commit: a stop requested during it still ends the run as stopped.
    pub(crate) fn stopped_while_committing(&self) -> bool {
        self.state.load(Ordering::SeqCst) == COMMITTING_STOP_REQUESTED
    }
}

impl Observer for Terminal {
    fn step(&self, done: usize, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(done as u64);
        if done == total {
            self.bar.finish();
        }
    }

    fn window(&self, index: usize, count: usize) {
        // Rates and the estimate start again with each window.
        self.bar.reset();
        if count > 1 {
            self.bar.println(format!("window {}/{count}", index + 1));
        }
    }

    fn cancelled(&self) -> bool {
        self.state.load(Ordering::SeqCst) != RUNNING
    }

    fn warn(&self, message: &str) {
        self.bar
            .suspend(|| eprintln!("soragen: warning: {message}"));
    }
}
