//! The training loop: Adam on −ELBO, per-epoch evaluation, metrics, checkpoints, and the final artefacts.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vae_data::{Batcher, Dataset, MnistData};
use vae_model::{beta_elbo, Vae, VaeRng};

use crate::eval::{evaluate, ElboSums};
use crate::fused::{self, FusedVae, StepTerms};
use crate::{checkpoint, figures, Adam, AdamConfig, Engine, RunConfig};

/// The optimiser state of whichever engine trains.
enum Trainer {
    Autograd(Adam),
    Fused(Box<FusedVae>),
}

impl Trainer {
    fn step_count(&self) -> u64 {
        match self {
            Trainer::Autograd(a) => a.step_count(),
            Trainer::Fused(f) => f.step_count(),
        }
    }

    fn adam_tensors(&mut self) -> candle_core::Result<Vec<(String, Tensor)>> {
        match self {
            Trainer::Autograd(a) => Ok(a.state_tensors()),
            Trainer::Fused(f) => f.adam_tensors(),
        }
    }
}

/// Resolves `auto` and checks the choice fits the device and model.
pub fn resolve_engine(cfg: &RunConfig, device: &Device) -> Result<Engine> {
    let fused_ok = fused::supports(&cfg.model);
    match cfg.training.engine {
        Engine::Auto if device.is_cpu() && fused_ok => Ok(Engine::Fused),
        Engine::Auto | Engine::Autograd => Ok(Engine::Autograd),
        Engine::Fused if !device.is_cpu() => {
            bail!("the fused engine runs on the CPU only; use --engine autograd")
        }
        Engine::Fused if !fused_ok => {
            bail!("the fused engine does not support this model; use --engine autograd")
        }
        Engine::Fused => Ok(Engine::Fused),
    }
}

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
    /// Show a progress bar when stderr is a terminal.
    pub progress: bool,
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
}

/// The seed of the evaluation stream of an epoch: separate from the training stream, so evaluating never changes
/// what training draws (and a resumed run matches an uninterrupted one).
fn eval_seed(seed: u64, epoch: usize) -> u64 {
    seed ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)
}

/// Loads the dataset of `cfg` and builds the train (shuffled) and test batchers.
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
    let images = data.train_images.narrow(0, 0, keep)?;
    let labels = data.train_labels.narrow(0, 0, keep)?;
    let train = Batcher::new(&images, &labels, t.batch_size, device)?.binarize(t.binarize.into());
    let test = Batcher::new(&data.test_images, &data.test_labels, 1000, device)?
        .binarize(t.binarize.into());
    Ok((train, test))
}

/// Trains a model as `cfg` says, writing everything into `opts.out_dir`. Returns the metrics of every epoch.
pub fn train(cfg: &RunConfig, opts: &TrainOptions) -> Result<Vec<EpochMetrics>> {
    let out = &opts.out_dir;
    std::fs::create_dir_all(out)
        .with_context(|| format!("{}: cannot create run directory", out.display()))?;
    let dataset: Dataset = cfg.dataset.parse().map_err(anyhow::Error::msg)?;
    let data = vae_data::load(&opts.data_dir, dataset)?;
    let (train_data, test_data) = batchers(cfg, &data, &opts.device)?;
    let t = &cfg.training;

    let mut rng = VaeRng::seed_from(t.seed);
    let (mut vae, varmap) = Vae::init(&cfg.model, &mut rng, &opts.device)?;
    vae.set_dataset(cfg.dataset.clone());
    let mut params: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .expect("not poisoned")
        .clone()
        .into_iter()
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let adam = AdamConfig {
        lr: t.lr,
        ..Default::default()
    };
    let engine = resolve_engine(cfg, &opts.device)?;

    let ckpt_path = out.join(files::CHECKPOINT);
    let metrics_path = out.join(files::METRICS);
    let mut history: Vec<EpochMetrics> = Vec::new();
    let mut first_epoch = 1;
    let mut resumed = None;
    if opts.resume {
        if !ckpt_path.is_file() {
            bail!(
                "{}: no checkpoint to resume from (train without --resume first)",
                ckpt_path.display()
            );
        }
        let ck = checkpoint::load(&ckpt_path)?;
        if !cfg.resumable_from(&ck.config) {
            bail!(
                "{}: the checkpoint was written with a different config; resume with the same preset and flags \
                 (only --epochs may change), or use another --out. checkpoint: {} now: {}",
                ckpt_path.display(),
                serde_json::to_string(&ck.config)?,
                serde_json::to_string(cfg)?
            );
        }
        for (name, var) in &params {
            let saved = ck.tensors.get(&format!("model.{name}")).with_context(|| {
                format!("{}: missing tensor `model.{name}`", ckpt_path.display())
            })?;
            if saved.dims() != var.dims() {
                bail!(
                    "{}: tensor `model.{name}` has shape {:?}, expected {:?}",
                    ckpt_path.display(),
                    saved.dims(),
                    var.dims()
                );
            }
            var.set(&saved.to_device(&opts.device)?)?;
        }
        rng = VaeRng::from_state(ck.rng);
        first_epoch = ck.epoch + 1;
        history = read_metrics(&metrics_path)?
            .into_iter()
            .filter(|m| m.epoch <= ck.epoch)
            .collect();
        tracing::info!(
            epoch = ck.epoch,
            step = ck.step,
            "resumed from {}",
            ckpt_path.display()
        );
        resumed = Some(ck);
    }
    let adam_state = |k: &str| {
        resumed
            .as_ref()
            .and_then(|ck| ck.tensors.get(&format!("adam.{k}")).cloned())
    };
    let mut trainer = match engine {
        Engine::Fused => {
            let mut f = FusedVae::new(&cfg.model, adam);
            f.load_params(&params)?;
            if let Some(ck) = &resumed {
                f.load_adam(ck.step, adam_state)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", ckpt_path.display()))?;
            }
            Trainer::Fused(Box::new(f))
        }
        _ => {
            let mut a = Adam::new(params.clone(), adam)?;
            if let Some(ck) = &resumed {
                a.restore(ck.step, adam_state)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", ckpt_path.display()))?;
            }
            Trainer::Autograd(a)
        }
    };
    write_json(&out.join(files::CONFIG), cfg)?;
    rewrite_metrics(&metrics_path, &history)?;

    tracing::info!(
        preset_dataset = %cfg.dataset,
        params = cfg.model.num_parameters(),
        train_images = train_data.len(),
        device = ?opts.device,
        engine = ?engine,
        gemm = fused::gemm_backend(),
        "training {} epochs of batch {}",
        t.epochs,
        t.batch_size
    );
    for epoch in first_epoch..=t.epochs {
        let mut bar = EpochProgress::new(opts.progress, train_data.num_batches(), epoch, t.epochs);
        let (sums, secs) = match &mut trainer {
            Trainer::Autograd(opt) => {
                run_epoch(&train_data, &mut rng, &mut bar, |x, rows, noise| {
                    autograd_step(&vae, opt, x, rows, noise, t.beta)
                })?
            }
            Trainer::Fused(f) => {
                let mut eps = Vec::new();
                let r = run_epoch(&train_data, &mut rng, &mut bar, |x, rows, noise| {
                    Ok(fused_step(f, &mut eps, x, rows, noise, t.beta))
                })?;
                f.store_params(&params)?;
                r
            }
        };
        bar.finish();
        let tr = sums.averages();
        let te = evaluate(
            &vae,
            &test_data,
            &mut VaeRng::seed_from(eval_seed(t.seed, epoch)),
        )?;
        let m = EpochMetrics {
            epoch,
            train_loss: tr.loss,
            train_recon: tr.recon,
            train_kl: tr.kl,
            test_loss: te.loss,
            test_recon: te.recon,
            test_kl: te.kl,
            epoch_s: secs,
            images_per_s: train_data.len() as f64 / secs,
        };
        // Checkpoint first: a crash between the two leaves a metrics line the resume would drop, never a gap.
        let step = trainer.step_count();
        checkpoint::save(
            &ckpt_path,
            cfg,
            epoch,
            step,
            &params,
            trainer.adam_tensors()?,
            &rng,
        )?;
        append_metrics(&metrics_path, &m)?;
        tracing::info!(
            "epoch {epoch}/{}: train {:.3} (recon {:.3}, kl {:.3}) | test {:.3} (recon {:.3}, kl {:.3}) | {:.2} s, {:.0} img/s",
            t.epochs, m.train_loss, m.train_recon, m.train_kl, m.test_loss, m.test_recon, m.test_kl, m.epoch_s, m.images_per_s
        );
        history.push(m);
    }

    vae.save(out.join(files::MODEL))?;
    let mut fig_rng = VaeRng::seed_from(t.seed);
    figures::write_grid(
        &out.join(files::SAMPLES),
        &vae.sample(64, &mut fig_rng)?,
        8,
        8,
        data.rows,
        data.cols,
    )?;
    let originals = test_images(&data, 8, &opts.device)?;
    let recon = vae.reconstruct(&originals)?;
    figures::write_reconstructions(
        &out.join(files::RECONSTRUCTIONS),
        &originals,
        &recon,
        data.rows,
        data.cols,
    )?;
    if cfg.model.latent_dim == 2 {
        figures::write_manifold(&out.join(files::MANIFOLD), &vae, 20, data.rows, data.cols)?;
    }
    tracing::info!("wrote {}", out.display());
    Ok(history)
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

/// One pass over `data` in a fresh order from `rng`, calling `step(x, rows, noise)` for each batch of pixels
/// `x [rows, D]`. Both engines go through here, so they draw the same random numbers in the same order: the noise
/// stream is split off `rng` first, then the shuffle and any binarisation come from `rng`. Returns the epoch's sums
/// and the seconds spent.
fn run_epoch(
    data: &Batcher,
    rng: &mut VaeRng,
    bar: &mut EpochProgress,
    mut step: impl FnMut(&[f32], usize, &mut VaeRng) -> Result<StepTerms>,
) -> Result<(ElboSums, f64)> {
    let mut sums = ElboSums::default();
    let mut noise = VaeRng::seed_from(rand::RngCore::next_u64(rng));
    let mut x = Vec::with_capacity(data.batch_size() * data.dim());
    let start = Instant::now();
    let order = data.shuffled_order(rng);
    let mut seen = 0;
    for (i, idx) in order.chunks(data.batch_size()).enumerate() {
        if data.drops_last() && idx.len() < data.batch_size() {
            break;
        }
        data.fill(idx, &mut x, rng);
        let terms = step(&x, idx.len(), &mut noise)?;
        seen += idx.len();
        sums.add(idx.len(), terms.loss, terms.recon, terms.kl);
        bar.step(i, seen, &sums, terms.loss)?;
    }
    Ok((sums, start.elapsed().as_secs_f64()))
}

/// One autograd step: Candle's forward and backward, then our Adam.
fn autograd_step(
    vae: &Vae,
    opt: &mut Adam,
    x: &[f32],
    rows: usize,
    noise: &mut VaeRng,
    beta: f64,
) -> Result<StepTerms> {
    let x = Tensor::from_slice(x, (rows, x.len() / rows), vae.device())?;
    let out = vae.forward(&x, noise)?;
    let terms = beta_elbo(&x, &out, beta)?;
    opt.step(&terms.loss.backward()?)?;
    let scalar = |t: &Tensor| -> Result<f64> { Ok(t.to_scalar::<f32>()? as f64) };
    Ok(StepTerms {
        loss: scalar(&terms.loss)?,
        recon: scalar(&terms.recon)?,
        kl: scalar(&terms.kl)?,
    })
}

/// One fused step, with ε drawn into a reused buffer.
fn fused_step(
    f: &mut FusedVae,
    eps: &mut Vec<f32>,
    x: &[f32],
    rows: usize,
    noise: &mut VaeRng,
    beta: f64,
) -> StepTerms {
    eps.resize(rows * f.latent_dim(), 0.0);
    noise.fill_normal(eps);
    f.train_step(x, eps, rows, beta)
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

/// A helper for callers that only have images: the first `n` test images of a dataset, on `device`.
pub fn test_images(data: &MnistData, n: usize, device: &Device) -> Result<Tensor> {
    let n = n.min(data.test_images.dim(0)?);
    Ok(data.test_images.narrow(0, 0, n)?.to_device(device)?)
}
