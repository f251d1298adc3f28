//! The training loop: Adam on −ELBO, per-epoch evaluation, metrics, checkpoints, and the final artefacts.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::profile::{self, Phase, Profile};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vae_data::{Batcher, MnistData};
use vae_model::{RngState, Vae, VaeRng};

use crate::checkpoint::Partial;
use crate::engine::{build_engine, resolve_engine, TrainEngine};
use crate::eval::{evaluate, ElboSums};
use crate::interrupt::{Interrupt, Interrupted};
use crate::rundir::RunDir;
use crate::{checkpoint, explore, figures, fused, plots, AdamConfig, Engine, RunConfig};

/// One line of `metrics.jsonl` (nats per image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training objective over the epoch's steps (with β), as the model changed.
    pub train_loss: f64,
    /// Mean training reconstruction term.
    pub train_recon: f64,
    /// Mean training KL term.
    pub train_kl: f64,
    /// Test −ELBO after the epoch.
    pub test_loss: f64,
    /// Test reconstruction term.
    pub test_recon: f64,
    /// Test KL term.
    pub test_kl: f64,
    /// Seconds spent on training steps only (no evaluation, no I/O).
    pub epoch_s: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

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
    /// Stop as on an interrupt once this many optimiser steps are done in all (time-boxed runs, tests).
    pub stop_after_steps: Option<u64>,
}

/// File names inside a run directory.
pub mod files {
    /// Final weights.
    pub const MODEL: &str = "model.safetensors";
    /// Resolved config.
    pub const CONFIG: &str = "config.json";
    /// Resume state.
    pub const CHECKPOINT: &str = "checkpoint.safetensors";
    /// One JSON object per epoch.
    pub const METRICS: &str = "metrics.jsonl";
    /// 8×8 prior samples.
    pub const SAMPLES: &str = "samples.png";
    /// Test digits over their reconstructions.
    pub const RECONSTRUCTIONS: &str = "reconstructions.png";
    /// For a 2-D latent space: the decoded 20×20 grid over the latent plane.
    pub const MANIFOLD: &str = "manifold.png";
    /// The loss curves of every epoch.
    pub const CURVES: &str = "curves.png";
    /// The test set's posterior means, coloured by label.
    pub const SCATTER: &str = "scatter.png";
    /// Every file a run writes.
    pub const ALL: [&str; 9] = [
        CONFIG,
        CHECKPOINT,
        METRICS,
        MODEL,
        SAMPLES,
        RECONSTRUCTIONS,
        MANIFOLD,
        CURVES,
        SCATTER,
    ];
}

/// The seed of the evaluation stream of an epoch: separate from the training stream, so evaluating never changes
/// what training draws (and a resumed run matches an uninterrupted one).
fn eval_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)
}

/// Builds the train (shuffled) and test batchers of `cfg` over `data`.
pub fn batchers(cfg: &RunConfig, data: &MnistData, device: &Device) -> Result<(Batcher, Batcher)> {
    let t = &cfg.training;
    let dim = data.rows * data.cols;
    if dim != cfg.model.input_dim {
        bail!(
            "model.input_dim is {} but {} images have {dim} pixels",
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

/// Trains a model as `cfg` says, writing everything into `opts.out_dir`.
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> Result<TrainReport> {
    let engine = resolve_engine(cfg.training.engine, &cfg.model, &opts.device)?;
    let mut run = Run::prepare(cfg, opts, engine)?;
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
    /// Image height and width.
    shape: (usize, usize),
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
    fn prepare(cfg: &'a RunConfig, opts: &'a TrainOptions, kind: Engine) -> Result<Self> {
        let out = &opts.out_dir;
        let dir = RunDir::acquire(out)?;
        if !opts.resume {
            dir.start_fresh(opts.overwrite)?;
        }
        let data = vae_data::load(&opts.data_dir, cfg.dataset)?;
        let (train_data, test_data) = batchers(cfg, &data, &opts.device)?;
        // The batchers hold the pixels now; of the dataset, the run keeps only the figures' originals.
        let originals = data.first_test_images(8, &opts.device)?;
        let labels = data.test_labels.narrow(0, 0, originals.dim(0)?)?;
        let (originals, shape) = (
            (originals, labels.to_device(&opts.device)?),
            (data.rows, data.cols),
        );
        drop(data);
        let t = &cfg.training;
        let adam = AdamConfig {
            lr: t.lr,
            ..Default::default()
        };
        let start = if opts.resume {
            Start::resume(cfg, opts, kind, adam)?
        } else {
            Start::fresh(cfg, opts, kind, adam)?
        };
        let Start {
            engine,
            rng,
            first_epoch,
            partial,
            steps,
            history,
        } = start;
        write_json(&out.join(files::CONFIG), cfg)?;
        rewrite_metrics(&out.join(files::METRICS), &history)?;
        tracing::info!(
            dataset = %cfg.dataset,
            params = cfg.model.num_parameters(),
            train_images = train_data.len(),
            device = ?opts.device,
            engine = ?kind,
            gemm = fused::gemm_backend(),
            "training {} epochs of batch {}",
            t.epochs,
            t.batch_size
        );
        Ok(Self {
            cfg,
            _dir: dir,
            opts,
            originals,
            shape,
            train_data,
            test_data,
            rng,
            engine,
            first_epoch,
            partial,
            steps,
            history,
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
        let t = &self.cfg.training;
        let mut bar = EpochProgress::new(
            self.opts.progress,
            self.train_data.num_batches(),
            epoch,
            t.epochs,
        );
        let epoch_start = self.rng.state();
        let stop = Stop {
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
        let (sums, secs) = match end {
            EpochEnd::Done(sums, secs) => {
                if profile::enabled() {
                    let p = Profile::take(std::time::Duration::from_secs_f64(secs));
                    self.profile = Some(match self.profile.take() {
                        Some(before) => before.merge(p),
                        None => p,
                    });
                }
                (sums, secs)
            }
            EpochEnd::Stopped(partial, signal) => {
                let step = partial.batches;
                self.checkpoint_partial(epoch, epoch_start, partial)?;
                return Err(Interrupted {
                    signal,
                    epoch,
                    step,
                }
                .into());
            }
        };
        let model = self.engine.model()?;
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
        checkpoint::save(
            &out.join(files::CHECKPOINT),
            self.cfg,
            epoch,
            &model,
            &adam,
            &self.rng,
            None,
        )?;
        append_metrics(&out.join(files::METRICS), &m)?;
        tracing::info!(
            "epoch {epoch}/{}: train {:.3} (recon {:.3}, kl {:.3}) | test {:.3} (recon {:.3}, kl {:.3}) | {:.2} s, {:.0} img/s",
            t.epochs, m.train_loss, m.train_recon, m.train_kl, m.test_loss, m.test_recon, m.test_kl, m.epoch_s, m.images_per_s
        );
        self.history.push(m);
        Ok(())
    }

    /// The final model and its figures; returns every file of the run directory.
    fn write_artefacts(&self) -> Result<Vec<&'static str>> {
        let (out, device) = (&self.opts.out_dir, &self.opts.device);
        let (h, w) = self.shape;
        let mut vae = self.engine.model()?;
        vae.set_dataset(self.cfg.dataset.name());
        vae.set_binarize(self.cfg.training.binarize.name());
        vae.save(out.join(files::MODEL))?;
        let mut fig_rng = VaeRng::seed_from(self.cfg.training.seed);
        // A conditional model's samples: a row of 8 per class.
        let (rows, labels) = match vae.config().label_dim() {
            0 => (8, None),
            classes => (classes, Some(explore::class_rows(classes, 8, device)?)),
        };
        let samples = vae.sample(rows * 8, labels.as_ref(), &mut fig_rng)?;
        let path = out.join(files::SAMPLES);
        figures::write_grid(&path, &samples, rows, 8, h, w)?;
        let (originals, labels) = &self.originals;
        let recon = vae.reconstruct(originals, Some(labels))?;
        let path = out.join(files::RECONSTRUCTIONS);
        figures::write_reconstructions(&path, originals, &recon, h, w)?;
        figures::write_png(&out.join(files::CURVES), &plots::curves_png(&self.history)?)?;
        let scatter = explore::scatter_figure(&vae, &self.test_data, self.cfg.dataset)?;
        figures::write_png(&out.join(files::SCATTER), &scatter)?;
        let mut written = vec![
            files::CONFIG,
            files::CHECKPOINT,
            files::METRICS,
            files::MODEL,
            files::SAMPLES,
            files::RECONSTRUCTIONS,
            files::CURVES,
            files::SCATTER,
        ];
        // A conditional model's 2-D latent holds the style within each class: no single manifold shows it.
        if self.cfg.model.latent_dim == 2 && !self.cfg.model.conditional {
            figures::write_manifold(&out.join(files::MANIFOLD), &vae, 20, h, w)?;
            written.push(files::MANIFOLD);
        }
        tracing::info!("wrote {}", out.display());
        Ok(written)
    }
}

/// Where a run starts: a fresh seeded model, or the run directory's checkpoint.
struct Start {
    engine: Box<dyn TrainEngine>,
    rng: VaeRng,
    first_epoch: usize,
    partial: Option<Partial>,
    steps: u64,
    history: Vec<EpochMetrics>,
}

impl Start {
    /// The model initialised from the seed, which the run's RNG then continues from.
    fn fresh(cfg: &RunConfig, opts: &TrainOptions, kind: Engine, adam: AdamConfig) -> Result<Self> {
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
    fn resume(
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

/// A progress bar on a terminal; debug-level log lines otherwise.
pub struct EpochProgress {
    bar: Option<indicatif::ProgressBar>,
    start: Instant,
    epoch: usize,
}

impl EpochProgress {
    fn new(enabled: bool, batches: usize, epoch: usize, epochs: usize) -> Self {
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
    fn step(&mut self, step: usize, images: usize, sums: &ElboSums, loss: f64) -> Result<()> {
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

    fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What can end an epoch early: a signal, or a set number of steps in all.
struct Stop<'a> {
    interrupt: &'a Interrupt,
    after_steps: Option<u64>,
}

impl Stop<'_> {
    /// `Some(signal)` when the run must stop before its next step (`Some(None)` for the step limit).
    fn check(&self, steps: u64) -> Option<Option<i32>> {
        match self.interrupt.requested() {
            Some(sig) => Some(Some(sig)),
            None => self.after_steps.is_some_and(|n| steps >= n).then_some(None),
        }
    }
}

/// How an epoch ended.
enum EpochEnd {
    /// Every batch: the sums and the seconds spent.
    Done(ElboSums, f64),
    /// Stopped before a step: how far it got, and the signal that stopped it.
    Stopped(Partial, Option<i32>),
}

/// One pass over `data` in a fresh order from `rng`, one engine step per batch. The noise stream is split off
/// `rng` first, then the shuffle and any binarisation come from `rng`, so every engine draws the same numbers in the
/// same order. Resuming an interrupted epoch replays the draws of the batches it had done, without training.
fn run_epoch(
    data: &Batcher,
    rng: &mut VaeRng,
    bar: &mut EpochProgress,
    engine: &mut dyn TrainEngine,
    resume: Option<Partial>,
    steps: &mut u64,
    stop: &Stop,
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
            if let Some(signal) = stop.check(*steps) {
                let secs = secs_before + start.elapsed().as_secs_f64();
                let partial = Partial {
                    batches: i,
                    sums,
                    secs,
                };
                return Ok(EpochEnd::Stopped(partial, signal));
            }
            let terms = profile::time(Phase::Step, || {
                engine.step(&batch.images, &batch.labels, rows, &mut noise)
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

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    vae_model::write_atomic(path, text.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Reads `metrics.jsonl` (empty when absent).
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{}: line {}", path.display(), i + 1))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

fn rewrite_metrics(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for m in history {
        text.push_str(&serde_json::to_string(m)?);
        text.push('\n');
    }
    vae_model::write_atomic(path, text.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}

fn append_metrics(path: &Path, m: &EpochMetrics) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| path.display().to_string())?;
    writeln!(f, "{}", serde_json::to_string(m)?).with_context(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::StepTerms;
    use crate::AdamState;
    use crate::Overrides;

    /// Trains like `inner`, but hands out a model with one NaN weight: finite training losses, a non-finite test
    /// loss.
    struct NanModel(Box<dyn TrainEngine>);

    impl TrainEngine for NanModel {
        fn step(
            &mut self,
            x: &[f32],
            labels: &[u32],
            rows: usize,
            noise: &mut VaeRng,
        ) -> Result<StepTerms> {
            self.0.step(x, labels, rows, noise)
        }
        fn model(&self) -> Result<Vae> {
            let vae = self.0.model()?;
            let mut tensors = vae.named_tensors();
            // The output layer's bias: a NaN there reaches every logit (ReLU would hide one in a hidden layer).
            let (_, t) = tensors.last_mut().unwrap();
            let mut v = t.to_vec1::<f32>()?;
            v[0] = f32::NAN;
            *t = candle_core::Tensor::new(v, t.device())?;
            Ok(Vae::from_tensors(
                vae.config(),
                tensors.into_iter().collect(),
                vae.device(),
            )?)
        }
        fn adam_state(&self) -> Result<AdamState> {
            self.0.adam_state()
        }
        fn restore_adam(&mut self, state: &AdamState) -> Result<()> {
            self.0.restore_adam(state)
        }
        fn noise_per_image(&self) -> usize {
            self.0.noise_per_image()
        }
    }

    #[test]
    fn a_non_finite_test_loss_stops_before_anything_of_the_epoch_is_written() {
        let data_dir = crate::tests_data_dir();
        let (base, _) = RunConfig::load_preset("mnist", Path::new("/nonexistent")).unwrap();
        let cfg = base
            .apply(&Overrides {
                epochs: Some(2),
                hidden_dims: Some(vec![32]),
                latent_dim: Some(4),
                train_subset: Some(1000),
                ..Default::default()
            })
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let opts = TrainOptions {
            data_dir,
            out_dir: tmp.path().join("run"),
            device: Device::Cpu,
            resume: false,
            overwrite: false,
            progress: false,
            interrupt: Interrupt::none(),
            stop_after_steps: None,
        };
        let mut run = Run::prepare(&cfg, &opts, Engine::Fused).unwrap();
        run.epoch(1).unwrap();
        let checkpoint = opts.out_dir.join(files::CHECKPOINT);
        let metrics = opts.out_dir.join(files::METRICS);
        let before = (
            std::fs::read(&checkpoint).unwrap(),
            std::fs::read(&metrics).unwrap(),
        );

        // Continue from the epoch-1 state, through an engine whose model holds a NaN.
        let current = run.engine.model().unwrap();
        let adam = run.engine.adam_state().unwrap();
        let mut inner = build_engine(
            Engine::Fused,
            &current,
            AdamConfig::default(),
            crate::Loss::Elbo { beta: 1.0 },
        )
        .unwrap();
        inner.restore_adam(&adam).unwrap();
        run.engine = Box::new(NanModel(inner));
        let msg = run.epoch(2).unwrap_err().to_string();
        assert!(
            msg.contains("the test loss became NaN after epoch 2"),
            "{msg}"
        );
        assert!(msg.contains("checkpoint still holds epoch 1"), "{msg}");
        let after = (
            std::fs::read(&checkpoint).unwrap(),
            std::fs::read(&metrics).unwrap(),
        );
        assert!(
            before == after,
            "the epoch-1 checkpoint and metrics are untouched"
        );
        assert_eq!(read_metrics(&metrics).unwrap().len(), 1);
    }
}
