//! The training loop: Adam on −ELBO, per-epoch evaluation, metrics, checkpoints, and the final artefacts.

mod epoch;
mod progress;
mod start;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;
use vae_data::{Batcher, Data};
use vae_model::{RngState, Vae, VaeRng};

use crate::checkpoint::Partial;
use crate::engine::{resolve_engine, TrainEngine};
use crate::eval::{evaluate, ElboSums};
use crate::interrupt::{Interrupt, Interrupted};
use crate::metrics::{append_metrics, rewrite_metrics, EpochMetrics};
use crate::profile::{self, Profile};
use crate::rundir::{files, RunDir};
use crate::{charts, checkpoint, images, latent, AdamConfig, Engine, RunConfig};
use epoch::{run_epoch, EpochEnd, StopWhen};
use progress::EpochProgress;
use start::StartingPoint;

/// Where and how to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// The data directory (datasets in `<data_dir>/<dataset>/`).
    pub data_dir: PathBuf,
    /// The run directory.
    pub out_dir: PathBuf,
    /// Where the tensors live.
    pub device: Device,
    /// Continue from `<out_dir>/checkpoint.safetensors`.
    pub resume: bool,
    /// Replace an earlier run in `out_dir` (without it, a fresh run into a used directory is refused).
    pub overwrite: bool,
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
    /// Asks the run to stop after its current step, checkpointing the partial epoch.
    pub interrupt: Interrupt,
    /// Refuse a folder with an unreadable picture rather than skip it.
    pub strict: bool,
    /// Stop as on an interrupt once this many optimiser steps are done in all (time-boxed runs, tests).
    pub stop_after_steps: Option<u64>,
}

/// The seed of the evaluation stream of an epoch: separate from the training stream, so evaluating never changes
/// what training draws (and a resumed run matches an uninterrupted one).
fn eval_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)
}

/// Builds the train (shuffled) and test batchers of `cfg` over `data`.
pub fn batchers(cfg: &RunConfig, data: &Data, device: &Device) -> Result<(Batcher, Batcher)> {
    let t = &cfg.training;
    let dim = data.dim();
    if dim != cfg.model.input_dim {
        bail!(
            "model.input_dim is {} but {} examples have {dim} values",
            cfg.model.input_dim,
            cfg.dataset
        );
    }
    let n = data.train_images.dim(0)?;
    let keep = t.train_subset.unwrap_or(n).min(n);
    if t.batch_size > keep {
        bail!(
            "training.batch_size {} is more than the {keep} training images",
            t.batch_size
        );
    }
    // Parameters, gradients and Adam's two moments, plus a step's activations (generously: ten batch-wide
    // buffers as wide as the widest layer).
    let params = cfg.model.num_parameters() as u128;
    let widest = cfg
        .model
        .plan()
        .layers()
        .map(|l| l.fan_out.max(l.fan_in))
        .max()
        .unwrap_or(0);
    let step = 10 * t.batch_size as u128 * widest as u128;
    crate::ensure_memory(4 * (4 * params + step), "this model and batch size")?;
    let images = data.train_images.narrow(0, 0, keep)?;
    let labels = data.train_labels.narrow(0, 0, keep)?;
    let train = Batcher::new(&images, &labels, t.batch_size, device)?.binarize(t.binarize);
    let test = crate::eval::test_batcher(data, t.binarize, None, device)?;
    Ok((train, test))
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// The metrics of every epoch, as in `metrics.jsonl`.
    pub history: Vec<EpochMetrics>,
    /// The engine that trained (`auto` resolved).
    pub engine: Engine,
    /// The files written into the run directory.
    pub files: Vec<&'static str>,
    /// Where the epochs' time went (ms per epoch), with `VAE_PROFILE` set.
    pub profile: Option<Profile>,
}

/// The one JSON line `vae-train train` prints on stdout, for scripts (`cargo xtask bench` and its end-to-end
/// check read it).
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// The run directory.
    pub out: PathBuf,
    /// The final model file.
    pub model: PathBuf,
    /// The resolved config.
    pub config: PathBuf,
    /// The last epoch's metrics.
    #[serde(rename = "final")]
    pub last: Option<EpochMetrics>,
    /// Every epoch's metrics.
    pub history: Vec<EpochMetrics>,
    /// The engine that trained.
    pub engine: Engine,
    /// The files written into the run directory.
    pub files: Vec<&'static str>,
    /// The fused engine's matrix-product backend.
    pub gemm: String,
    /// Where the epochs' time went, with `VAE_PROFILE` set.
    pub profile: Option<Profile>,
    /// The process's peak resident set, where the OS reports it.
    pub peak_rss_mib: Option<f64>,
}

impl TrainSummary {
    /// The summary of `report`, a run into `out_dir`, with this process's peak memory.
    pub fn new(out_dir: &Path, report: TrainReport) -> Self {
        Self {
            out: out_dir.to_path_buf(),
            model: out_dir.join(files::MODEL),
            config: out_dir.join(files::CONFIG),
            last: report.history.last().cloned(),
            history: report.history,
            engine: report.engine,
            files: report.files,
            gemm: crate::gemm::backend_summary(),
            profile: report.profile,
            peak_rss_mib: crate::peak_rss_mib(),
        }
    }
}

/// Trains a model as `cfg` says, writing everything into `opts.out_dir`. A run refused before it had anything to
/// keep (no checkpoint) removes the run directory it created, so that a failed first try leaves no empty folder.
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> Result<TrainReport> {
    crate::gemm::run_model_products_here();
    let created = !opts.out_dir.exists();
    let result = train_into(cfg, opts);
    let kept = opts.out_dir.join(crate::rundir::files::CHECKPOINT).exists();
    if result.is_err() && created && !kept {
        let _ = std::fs::remove_dir_all(&opts.out_dir);
    }
    result
}

/// [`train`], leaving the run directory as it is.
fn train_into(cfg: &RunConfig, opts: &TrainOptions) -> Result<TrainReport> {
    let (cfg, data) = crate::data::load_for_run(cfg, &opts.data_dir, opts.strict)?;
    let cfg = &cfg;
    let engine = resolve_engine(cfg.training.engine, &cfg.model, &opts.device)?;
    let mut run = Run::prepare(cfg, opts, engine, data)?;
    for epoch in run.first_epoch..=cfg.training.epochs {
        run.epoch(epoch)?;
    }
    let files = run.write_artefacts()?;
    Ok(TrainReport {
        history: run.history,
        engine,
        files,
        profile: run.profile,
    })
}

/// A run in progress: its data, its engine, its one RNG and what it has measured.
struct Run<'a> {
    cfg: &'a RunConfig,
    _dir: RunDir,
    opts: &'a TrainOptions,
    /// The first test images and their labels, for the reconstructions figure.
    originals: (Tensor, Tensor),
    /// What each label means (none for data without classes).
    class_names: Vec<String>,
    train_data: Batcher,
    test_data: Batcher,
    rng: VaeRng,
    engine: Box<dyn TrainEngine>,
    first_epoch: usize,
    /// Where the first epoch resumes, when the checkpoint was written mid-epoch.
    partial: Option<Partial>,
    /// Optimiser steps taken, over all epochs.
    steps: u64,
    history: Vec<EpochMetrics>,
    /// Where the epochs' time went, with `VAE_PROFILE`.
    profile: Option<Profile>,
}

impl<'a> Run<'a> {
    /// Loads the data, and builds the engine from a fresh seeded model or from the run directory's checkpoint.
    fn prepare(
        cfg: &'a RunConfig,
        opts: &'a TrainOptions,
        kind: Engine,
        data: Data,
    ) -> Result<Self> {
        let out = &opts.out_dir;
        let dir = RunDir::acquire(out)?;
        if !opts.resume {
            dir.start_fresh(opts.overwrite)?;
        }
        let (train_data, test_data) = batchers(cfg, &data, &opts.device)?;
        // The batchers hold the pixels now; of the dataset, the run keeps only the figures' originals.
        let originals = data.first_test_images(8, &opts.device)?;
        let labels = data.test_labels.narrow(0, 0, originals.dim(0)?)?;
        let originals = (originals, labels.to_device(&opts.device)?);
        let class_names = data.class_names.clone();
        drop(data);
        let adam = AdamConfig {
            lr: cfg.training.lr,
            ..Default::default()
        };
        let start = match opts.resume {
            true => StartingPoint::resume(cfg, opts, kind, adam)?,
            false => StartingPoint::fresh(cfg, opts, kind, adam)?,
        };
        write_json(&out.join(files::CONFIG), cfg)?;
        rewrite_metrics(&out.join(files::METRICS), &start.history)?;
        log_start(cfg, opts, kind, train_data.len());
        Ok(Self {
            cfg,
            _dir: dir,
            opts,
            originals,
            class_names,
            train_data,
            test_data,
            rng: start.rng,
            engine: start.engine,
            first_epoch: start.first_epoch,
            partial: start.partial,
            steps: start.steps,
            history: start.history,
            profile: None,
        })
    }

    /// After a stop mid-epoch: a checkpoint of how far the epoch got (with the RNG at its start, to replay it).
    fn checkpoint_partial(
        &self,
        epoch: usize,
        epoch_start: RngState,
        partial: Partial,
    ) -> Result<()> {
        let path = self.opts.out_dir.join(files::CHECKPOINT);
        let (model, adam) = (self.engine.model()?, self.engine.adam_state()?);
        let rng = VaeRng::from_state(epoch_start);
        checkpoint::save(
            &path,
            self.cfg,
            epoch - 1,
            &model,
            &adam,
            &rng,
            Some(&partial),
        )
    }

    /// Trains one epoch, evaluates, checkpoints, and appends the epoch's metrics.
    fn epoch(&mut self, epoch: usize) -> Result<()> {
        let (sums, secs) = self.train_epoch(epoch)?;
        let model = self.engine.model()?;
        let t = &self.cfg.training;
        let mut eval_rng = VaeRng::seed_from(eval_seed(t.seed, epoch));
        let (tr, te) = (
            sums.averages(),
            evaluate(&model, &self.test_data, &mut eval_rng)?,
        );
        // A diverged model is never checkpointed: the last good checkpoint stays the last good one.
        for (name, value) in [("loss", te.loss), ("recon", te.recon), ("kl", te.kl)] {
            if !value.is_finite() {
                bail!(
                    "the test {name} became {value} after epoch {epoch}; nothing of this epoch was written, \
                     the checkpoint still holds epoch {}; try a lower --lr",
                    epoch - 1
                );
            }
        }
        let m = EpochMetrics {
            epoch,
            train_loss: tr.loss,
            train_recon: tr.recon,
            train_kl: tr.kl,
            test_loss: te.loss,
            test_recon: te.recon,
            test_kl: te.kl,
            epoch_s: secs,
            images_per_s: self.train_data.len() as f64 / secs,
        };
        // Checkpoint first: a crash between the two leaves a metrics line the resume would drop, never a gap.
        let out = &self.opts.out_dir;
        let adam = self.engine.adam_state()?;
        let path = out.join(files::CHECKPOINT);
        checkpoint::save(&path, self.cfg, epoch, &model, &adam, &self.rng, None)?;
        append_metrics(&out.join(files::METRICS), &m)?;
        tracing::info!(
            "epoch {epoch}/{}: train {:.3} (recon {:.3}, kl {:.3}) | test {:.3} (recon {:.3}, kl {:.3}) | {:.2} s, {:.0} img/s",
            t.epochs, m.train_loss, m.train_recon, m.train_kl, m.test_loss, m.test_recon, m.test_kl, m.epoch_s, m.images_per_s
        );
        self.history.push(m);
        Ok(())
    }

    /// The epoch's training steps: their sums and seconds, or, when stopped early, a partial checkpoint and
    /// [`Interrupted`].
    fn train_epoch(&mut self, epoch: usize) -> Result<(ElboSums, f64)> {
        let batches = self.train_data.num_batches();
        let mut bar =
            EpochProgress::new(self.opts.progress, batches, epoch, self.cfg.training.epochs);
        let epoch_start = self.rng.state();
        let stop = StopWhen {
            interrupt: &self.opts.interrupt,
            after_steps: self.opts.stop_after_steps,
        };
        profile::reset();
        let end = run_epoch(
            &self.train_data,
            &mut self.rng,
            &mut bar,
            &mut *self.engine,
            self.partial.take(),
            &mut self.steps,
            &stop,
        )?;
        bar.finish();
        match end {
            EpochEnd::Done(sums, secs) => {
                if profile::enabled() {
                    let p = Profile::take(std::time::Duration::from_secs_f64(secs));
                    self.profile = Some(match self.profile.take() {
                        Some(before) => before.merge(p),
                        None => p,
                    });
                }
                Ok((sums, secs))
            }
            EpochEnd::Stopped(partial, reason) => {
                let step = partial.batches;
                self.checkpoint_partial(epoch, epoch_start, partial)?;
                Err(Interrupted {
                    signal: reason.signal(),
                    epoch,
                    step,
                }
                .into())
            }
        }
    }

    /// The final model and its figures; returns every file of the run directory.
    fn write_artefacts(&self) -> Result<Vec<&'static str>> {
        let out = &self.opts.out_dir;
        let mut vae = self.engine.model()?;
        vae.set_dataset(self.cfg.dataset.to_string());
        vae.set_binarize(self.cfg.training.binarize.name());
        if let Some(options) = crate::data::recorded_options(self.cfg) {
            vae.set_data_options(options);
        }
        vae.save(out.join(files::MODEL))?;
        let mut written = vec![
            files::CONFIG,
            files::CHECKPOINT,
            files::METRICS,
            files::MODEL,
        ];
        match vae.config().image_shape() {
            Some(shape) => written.extend(self.write_pictures(&vae, shape)?),
            None => tracing::info!(
                "the examples are vectors of {} values: no samples, reconstructions or manifold to draw",
                vae.config().input_dim
            ),
        }
        images::write_png(
            &out.join(files::CURVES),
            &charts::curves_png(&self.history)?,
        )?;
        let scatter = latent::scatter_figure(&vae, &self.test_data, &self.class_names)?;
        images::write_png(&out.join(files::SCATTER), &scatter)?;
        written.extend([files::CURVES, files::SCATTER]);
        if latent::has_plane(&self.cfg.model) && vae.config().image_shape().is_some() {
            let shape = vae.config().image_shape().expect("checked");
            images::write_manifold(&out.join(files::MANIFOLD), &vae, 20, shape)?;
            written.push(files::MANIFOLD);
        }
        tracing::info!("wrote {}", out.display());
        Ok(written)
    }

    /// The samples (a row of 8 per class for a conditional model) and the reconstructions figures.
    fn write_pictures(&self, vae: &Vae, shape: images::Shape) -> Result<[&'static str; 2]> {
        let (out, device) = (&self.opts.out_dir, &self.opts.device);
        let mut fig_rng = VaeRng::seed_from(self.cfg.training.seed);
        let (rows, labels) = match vae.config().label_dim() {
            0 => (8, None),
            classes => (classes, Some(latent::class_rows(classes, 8, device)?)),
        };
        let samples = vae.sample(rows * 8, labels.as_ref(), &mut fig_rng)?;
        images::write_grid(&out.join(files::SAMPLES), &samples, rows, 8, shape)?;
        let (originals, labels) = &self.originals;
        let recon = vae.reconstruct(originals, Some(labels))?;
        images::write_reconstructions(&out.join(files::RECONSTRUCTIONS), originals, &recon, shape)?;
        Ok([files::SAMPLES, files::RECONSTRUCTIONS])
    }
}

/// The run's first log line: what trains, on what, how.
fn log_start(cfg: &RunConfig, opts: &TrainOptions, kind: Engine, train_images: usize) {
    tracing::info!(
        dataset = %cfg.dataset,
        params = cfg.model.num_parameters(),
        train_images,
        device = ?opts.device,
        engine = ?kind,
        gemm = %crate::gemm::backend_summary(),
        "training {} epochs of batch {}",
        cfg.training.epochs,
        cfg.training.batch_size
    );
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    vae_model::write_atomic(path, text.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}
