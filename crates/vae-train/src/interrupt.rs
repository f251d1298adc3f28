//! Stopping a run cleanly: on SIGINT or SIGTERM the run finishes its current step, checkpoints the partial epoch
//! and ends; a second signal ends the process at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Result;

/// Whether (and by which signal) a stop was asked for.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// One that fires only through [`Interrupt::request`] (a library run, a test).
    pub fn none() -> Self {
        Self::default()
    }

    /// One that fires on SIGINT or SIGTERM. A second signal exits at once with 128 + its number.
    pub fn on_signals() -> Result<Self> {
        let this = Self::default();
        let seen = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees `seen` as it was before this signal set it.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, seen.clone())?;
            signal_hook::flag::register(sig, seen.clone())?;
            signal_hook::flag::register_usize(sig, this.signal.clone(), sig as usize)?;
        }
        Ok(this)
    }

    /// Asks the run to stop as a signal `sig` would.
    pub fn request(&self, sig: i32) {
        self.signal.store(sig as usize, Ordering::SeqCst);
    }

    /// The signal that asked for a stop, if one did.
    pub fn requested(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }
}

/// For a command that is not a training run: on SIGINT, SIGTERM or SIGHUP, removes the temporary files being
/// written ([`vae_model::Pending`]) and exits with 128 + the signal, so that no `.tmp-*` file stays behind.
pub fn remove_pending_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            vae_model::remove_pending();
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}

/// The error a stopped run ends with, after its checkpoint is written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("interrupted in epoch {epoch} after step {step}; the checkpoint holds that step: run the same command with --resume to continue")]
pub struct Interrupted {
    /// The signal, or `None` for a stop after a set number of steps.
    pub signal: Option<i32>,
    /// The epoch that was cut short.
    pub epoch: usize,
    /// Steps done in it.
    pub step: usize,
}

impl Interrupted {
    /// The conventional exit status: 128 + the signal (130 for SIGINT, 143 for SIGTERM).
    pub fn exit_code(&self) -> u8 {
        self.signal.map_or(1, |s| (128 + s).clamp(0, 255) as u8)
    }
}
