//! The epoch's progress bar on a terminal, debug-level log lines otherwise.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::eval::ElboSums;

/// A progress bar on a terminal; debug-level log lines otherwise.
pub struct EpochProgress {
    bar: Option<indicatif::ProgressBar>,
    start: Instant,
    epoch: usize,
}

impl EpochProgress {
    pub(super) fn new(enabled: bool, batches: usize, epoch: usize, epochs: usize) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(batches as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{epoch}/{epochs}"));
            bar
        });
        Self {
            bar,
            start: Instant::now(),
            epoch,
        }
    }

    /// Records a finished step; errors if the loss is not finite.
    pub(super) fn step(
        &mut self,
        step: usize,
        images: usize,
        sums: &ElboSums,
        loss: f64,
    ) -> Result<()> {
        if !loss.is_finite() {
            bail!(
                "the loss became {loss} at epoch {}, step {}; try a lower --lr",
                self.epoch,
                step + 1
            );
        }
        if let Some(bar) = &self.bar {
            // Redrawing costs time on the hot path; a few times a second is plenty.
            if step.is_multiple_of(16) {
                let secs = self.start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.2} | {:.0} img/s",
                    sums.averages().loss,
                    images as f64 / secs
                ));
            }
            bar.inc(1);
        } else if (step + 1).is_multiple_of(100) {
            tracing::debug!(
                epoch = self.epoch,
                step = step + 1,
                loss = sums.averages().loss,
                "training"
            );
        }
        Ok(())
    }

    pub(super) fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
