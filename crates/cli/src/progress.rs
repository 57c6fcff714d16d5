//! Progress on the terminal, and stop requests (Ctrl-C, SIGTERM).

use std::cell::Cell;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

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
    /// When the current window's first step began.
    started: Cell<Instant>,
    draw: bool,
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
        Self {
            state,
            started: Cell::new(Instant::now()),
            draw: std::io::stderr().is_terminal(),
        }
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
        if !self.draw {
            return;
        }
        const WIDTH: usize = 30;
        let filled = WIDTH * done / total.max(1);
        let per_step = self.started.get().elapsed().as_secs_f64() / done.max(1) as f64;
        let eta = per_step * (total - done) as f64;
        eprint!(
            "\r[{}{}] step {done}/{total}  {per_step:.2} s/step  eta {eta:.0} s ",
            "#".repeat(filled),
            " ".repeat(WIDTH - filled)
        );
        if done == total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    }

    fn window(&self, index: usize, count: usize) {
        self.started.set(Instant::now());
        if self.draw && count > 1 {
            eprintln!("window {}/{count}", index + 1);
        }
    }

    fn cancelled(&self) -> bool {
        self.state.load(Ordering::SeqCst) != RUNNING
    }
}
