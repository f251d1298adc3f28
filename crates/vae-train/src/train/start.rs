//! Where a run starts: a fresh seeded model, or the run directory's checkpoint.

use anyhow::{bail, Result};
use vae_model::{Vae, VaeRng};

use super::TrainOptions;
use crate::checkpoint::{self, Partial};
use crate::engine::{build_engine, TrainEngine};
use crate::metrics::{read_metrics, EpochMetrics};
use crate::rundir::files;
use crate::{AdamConfig, Engine, RunConfig};

/// The engine, RNG and history a run begins with.
pub(super) struct StartingPoint {
    pub engine: Box<dyn TrainEngine>,
    /// The run's one RNG, where the model's initialisation (or the checkpoint) left it.
    pub rng: VaeRng,
    pub first_epoch: usize,
    /// Where the first epoch resumes, when the checkpoint was written mid-epoch.
    pub partial: Option<Partial>,
    /// Optimiser steps already taken.
    pub steps: u64,
    pub history: Vec<EpochMetrics>,
}

impl StartingPoint {
    /// The model initialised from the seed, which the run's RNG then continues from.
    pub fn fresh(
        cfg: &RunConfig,
        opts: &TrainOptions,
        kind: Engine,
        adam: AdamConfig,
    ) -> Result<Self> {
        let mut rng = VaeRng::seed_from(cfg.training.seed);
        let (model, _) = Vae::init(&cfg.model, &mut rng, &opts.device)?;
        Ok(Self {
            engine: build_engine(kind, &model, adam, cfg.training.loss())?,
            rng,
            first_epoch: 1,
            partial: None,
            steps: 0,
            history: Vec::new(),
        })
    }

    /// The checkpoint's model, optimiser, RNG and metrics, checked against `cfg` first.
    pub fn resume(
        cfg: &RunConfig,
        opts: &TrainOptions,
        kind: Engine,
        adam: AdamConfig,
    ) -> Result<Self> {
        let out = &opts.out_dir;
        let ck = checkpoint::load(&out.join(files::CHECKPOINT), cfg, &opts.device)?;
        if cfg.training.epochs <= ck.epoch {
            bail!(
                "{}: the checkpoint has {} epochs done; to continue, pass --epochs greater than {}",
                out.display(),
                ck.epoch,
                ck.epoch
            );
        }
        let mut engine = build_engine(kind, &ck.model, adam, cfg.training.loss())?;
        engine.restore_adam(&ck.adam)?;
        let history = read_metrics(&out.join(files::METRICS))?
            .into_iter()
            .filter(|m| m.epoch <= ck.epoch)
            .collect();
        tracing::info!(
            epoch = ck.epoch,
            step = ck.adam.step,
            "resumed from {}",
            out.display()
        );
        Ok(Self {
            engine,
            rng: VaeRng::from_state(ck.rng),
            first_epoch: ck.epoch + 1,
            partial: ck.partial,
            steps: ck.adam.step,
            history,
        })
    }
}
