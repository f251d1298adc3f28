//! One pass over the training set, and what may end it early.

use std::time::Instant;

use anyhow::Result;
use vae_data::Batcher;
use vae_model::VaeRng;

use super::progress::EpochProgress;
use crate::checkpoint::Partial;
use crate::cpu;
use crate::engine::TrainEngine;
use crate::eval::ElboSums;
use crate::interrupt::Interrupt;
use crate::profile::{self, Phase};

/// What can end an epoch early: a signal, or a set number of steps in all.
pub(super) struct StopWhen<'a> {
    pub interrupt: &'a Interrupt,
    pub after_steps: Option<u64>,
}

/// Why an epoch stopped early.
#[derive(Debug, Clone, Copy)]
pub(super) enum StopReason {
    /// SIGINT or SIGTERM, by number.
    Signal(i32),
    /// The `stop_after_steps` limit.
    StepLimit,
}

impl StopReason {
    /// The signal's number, for [`crate::Interrupted`] (none for the step limit).
    pub fn signal(self) -> Option<i32> {
        match self {
            Self::Signal(sig) => Some(sig),
            Self::StepLimit => None,
        }
    }
}

impl StopWhen<'_> {
    /// Whether the run must stop before its next step, and why.
    fn check(&self, steps: u64) -> Option<StopReason> {
        match self.interrupt.requested() {
            Some(sig) => Some(StopReason::Signal(sig)),
            None => self
                .after_steps
                .is_some_and(|n| steps >= n)
                .then_some(StopReason::StepLimit),
        }
    }
}

/// How an epoch ended.
pub(super) enum EpochEnd {
    /// Every batch: the sums and the seconds spent.
    Done(ElboSums, f64),
    /// Stopped before a step: how far it got, and why.
    Stopped(Partial, StopReason),
}

/// One pass over `data` in a fresh order from `rng`, one engine step per batch. The noise stream is split off
/// `rng` first, then the shuffle and any binarisation come from `rng`, so every engine draws the same numbers in the
/// same order. Resuming an interrupted epoch replays the draws of the batches it had done, without training.
pub(super) fn run_epoch(
    data: &Batcher,
    rng: &mut VaeRng,
    bar: &mut EpochProgress,
    engine: &mut dyn TrainEngine,
    resume: Option<Partial>,
    steps: &mut u64,
    stop: &StopWhen,
) -> Result<EpochEnd> {
    let (mut sums, secs_before, skip) = resume.map_or((ElboSums::default(), 0.0, 0), |p| {
        (p.sums, p.secs, p.batches)
    });
    let mut noise = VaeRng::seed_from(rand::RngCore::next_u64(rng));
    let mut skipped_eps = Vec::new();
    let start = Instant::now();
    let mut seen = 0;
    // The next batches are made on a thread of their own while a step runs (in the same order, from the same
    // draws); it stops when the receiver is dropped.
    let (ready, batches) = std::sync::mpsc::sync_channel(2);
    let making = data.epoch(rng);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for batch in making {
                if ready.send(batch).is_err() {
                    break;
                }
            }
        });
        let mut batches = batches.into_iter().enumerate();
        while let Some((i, batch)) = profile::time(Phase::Data, || batches.next()) {
            let rows = batch.rows();
            seen += rows;
            if i < skip {
                skipped_eps.resize(rows * engine.noise_per_image(), 0.0);
                noise.fill_normal(&mut skipped_eps);
                continue;
            }
            if let Some(reason) = stop.check(*steps) {
                let secs = secs_before + start.elapsed().as_secs_f64();
                let partial = Partial {
                    batches: i,
                    sums,
                    secs,
                };
                return Ok(EpochEnd::Stopped(partial, reason));
            }
            let terms = profile::time(Phase::Step, || {
                cpu::on_pool(|| engine.step(&batch.images, &batch.labels, rows, &mut noise))
            })?;
            *steps += 1;
            sums.add(rows, terms.loss, terms.recon, terms.kl);
            bar.step(i, seen, &sums, terms.loss)?;
        }
        Ok(EpochEnd::Done(
            sums,
            secs_before + start.elapsed().as_secs_f64(),
        ))
    })
}
