//! `vae-train`: train, evaluate and draw from the VAE. See `vae-train --help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use vae_data::{Binarize, Dataset, DownloadOptions, Source};
use vae_model::{Vae, VaeRng};
use vae_train::{
    eval, images, latent, npy, open_device, train, DeviceKind, Overrides, RunConfig, TrainOptions,
};

#[derive(Parser)]
#[command(
    name = "vae-train",
    version,
    about = "Train and use a variational auto-encoder on MNIST-style data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model from a preset (models/<NAME>.toml); flags override the preset.
    Train(TrainArgs),
    /// Print the test-set −ELBO terms of a saved model as one JSON line.
    Eval(EvalArgs),
    /// Write a grid of images decoded from prior samples.
    Sample(SampleArgs),
    /// Write test images above their reconstructions (or, as .npy, the reconstructions themselves).
    Reconstruct(ReconstructArgs),
    /// Write the posterior means of the first test images as .npy: the model's embedding of them.
    Encode(EncodeArgs),
    /// More images like a digit: decoded samples of the posteriors of its first test examples.
    Generate(GenerateArgs),
    /// Decode the path between the posterior means of two test images.
    Interpolate(InterpolateArgs),
    /// Vary each latent dimension in turn around a test image's posterior mean, most used dimension first.
    Traverse(TraverseArgs),
    /// Plot the test set's posterior means coloured by label (a wider latent on its first two principal components).
    Scatter(ScatterArgs),
    /// Plot a run's loss curves from its metrics.jsonl.
    Curves(CurvesArgs),
    /// Explore a model in the browser: a local page to move through its latent space, draw and morph digits.
    Serve(ServeArgs),
    /// Convert a PyTorch VAE's weights (.pt, .pth or .safetensors: the teaching code's layout, pytorch/examples',
    /// or ours) into a model file.
    Import(ImportArgs),
    /// Fetch and verify a dataset's four files.
    Download(DownloadArgs),
    /// Print a preset, resolved with any overrides, as the JSON of `config.json`.
    Preset(PresetArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) to stdout.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (vae-train.1 and one per subcommand) into a folder; `cargo xtask man` runs it.
    #[command(hide = true)]
    Man {
        /// The folder (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Where the tensors live and where the datasets are: shared by every subcommand that uses both.
#[derive(Args)]
struct Common {
    #[command(flatten)]
    device: DeviceArg,
    #[command(flatten)]
    data: DataDir,
}

/// `--device`, for every subcommand that runs the model.
#[derive(Args)]
struct DeviceArg {
    /// Where the tensors live.
    #[arg(long, value_enum, default_value = "cpu")]
    device: DeviceKind,
}

/// `--data-dir`, for subcommands that read datasets.
#[derive(Args)]
struct DataDir {
    /// Data directory [default: $VAE_DATA_DIR or data/].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Common {
    fn data_dir(&self) -> PathBuf {
        self.data.data_dir()
    }
}

impl DataDir {
    /// `--data-dir`, else `$VAE_DATA_DIR`, else `data/`.
    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .or_else(|| std::env::var_os("VAE_DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| "data".into())
    }
}

#[derive(Args)]
struct TrainArgs {
    /// Preset name (models/<NAME>.toml, or a built-in) or a path to a .toml file.
    #[arg(long, default_value = "mnist")]
    preset: String,
    #[command(flatten)]
    overrides: Overrides,
    /// Run directory [default: runs/<preset>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the run directory's checkpoint.
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// Replace an earlier run in the run directory (its files are removed first).
    #[arg(long)]
    overwrite: bool,
    /// Directory of presets.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Fetch the dataset first if it is missing (from $VAE_DATA_MIRROR or the built-in mirrors).
    #[arg(long)]
    download: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    on: ModelOnData,
    /// Also estimate −log p(x) with K importance samples per image (at most 100000; a progress bar shows on a
    /// terminal).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    iw_samples: u32,
    /// How to binarise the test images [default: as the model was trained, from its metadata; `none` for files
    /// without it]. `dynamic` binarises the test set once, the same every time (seed 2016).
    #[arg(long)]
    binarize: Option<Binarize>,
    /// Evaluate the first N test images only.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    test_subset: Option<u64>,
    /// Also write the test images as evaluated (binarised as said above) to this `.npy` file, `[n, input_dim]`
    /// f32, for an independent evaluator (`bench/torch_iw_estimate.py`).
    #[arg(long)]
    inputs_out: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args)]
struct SampleArgs {
    #[arg(long)]
    model: PathBuf,
    /// Number of samples (laid out in a near-square grid). A conditional model without `--digit` gives one row
    /// per class, of N/10 (rounded up) samples each.
    #[arg(long, default_value_t = 64)]
    n: usize,
    /// A conditional model's class to sample under: 0-9 for MNIST and Fashion-MNIST.
    #[arg(long)]
    digit: Option<u32>,
    #[command(flatten)]
    draw: Draw,
    /// Output: .png (a grid) or .npy (`[n, 28, 28]` f32 probabilities, row-major as in the grid).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    on: ModelOnData,
    /// What to make more of: a digit 0-9 (its first test examples), or an image file (PNG or JPEG, any size,
    /// made into a 28×28 input as MNIST was: grey, fitted into 20×20, centred by its centre of mass).
    #[arg(long)]
    like: String,
    /// Number of images; sample i comes from example i mod (the number of examples).
    #[arg(long, default_value_t = 64)]
    n: usize,
    #[command(flatten)]
    draw: Draw,
    /// Output: .png (a grid) or .npy (`[n, 28, 28]` f32 probabilities).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct InterpolateArgs {
    #[command(flatten)]
    on: ModelOnData,
    /// The start: a test-set index, or an image file (PNG or JPEG, made into an input as for `generate --like`).
    #[arg(long)]
    from: String,
    /// The end: a test-set index or an image file.
    #[arg(long)]
    to: String,
    /// Images along the path, ends included.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=1000))]
    steps: u32,
    /// Along the great circle between the two means instead of the straight line.
    #[arg(long)]
    slerp: bool,
    /// Output: .png (one row) or .npy (`[steps, 28, 28]` f32 probabilities).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct TraverseArgs {
    #[command(flatten)]
    on: ModelOnData,
    /// Index of the test image whose posterior mean is the centre.
    #[arg(long, default_value_t = 0)]
    index: usize,
    /// Each dimension moves from −RANGE to +RANGE (in units of the prior's σ) around the mean.
    #[arg(long, default_value_t = 3.0, value_parser = traverse_range, allow_negative_numbers = true)]
    range: f64,
    /// Images per dimension.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(2..=100))]
    steps: u32,
    /// Show only the N most used dimensions [default: all].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    dims: Option<u32>,
    /// Output: .png (a row per dimension) or .npy (`[dims·steps, 28, 28]` f32 probabilities).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct ScatterArgs {
    #[command(flatten)]
    on: ModelOnData,
    /// Output PNG.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct CurvesArgs {
    /// A run directory (holding metrics.jsonl).
    #[arg(long)]
    run: PathBuf,
    /// Output PNG [default: <RUN>/curves.png].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A model and the test set it is used on: every command that reads both.
#[derive(Args)]
struct ModelOnData {
    /// A model.safetensors written by `train`.
    #[arg(long)]
    model: PathBuf,
    /// Dataset [default: the one in the model's metadata].
    #[arg(long)]
    dataset: Option<Dataset>,
    #[command(flatten)]
    common: Common,
}

/// How z is drawn: every command that samples.
#[derive(Args)]
struct Draw {
    /// Scales the standard deviation z is drawn with: the prior's for `sample` (z ~ N(0, T² I)), the posterior's
    /// for `generate` (0 decodes the posterior means).
    #[arg(long, default_value_t = 1.0, value_parser = temperature, allow_negative_numbers = true)]
    temperature: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `--temperature`: a finite number in [0, 100].
fn temperature(s: &str) -> Result<f64, String> {
    let t: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=100.0).contains(&t) {
        Ok(t)
    } else {
        Err(format!("{s} is not in [0, 100]"))
    }
}

/// `--range`: a finite number in (0, 100].
fn traverse_range(s: &str) -> Result<f64, String> {
    let r: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if r > 0.0 && r <= 100.0 {
        Ok(r)
    } else {
        Err(format!("{s} is not in (0, 100]"))
    }
}

#[derive(Args)]
struct ReconstructArgs {
    #[command(flatten)]
    on: ModelOnData,
    /// Number of test images.
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// Output: .png (the test images above their reconstructions) or .npy (the reconstructions, `[n, 28, 28]` f32
    /// probabilities, decoded from the posterior means).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct EncodeArgs {
    #[command(flatten)]
    on: ModelOnData,
    /// Number of test images, from the first.
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// Output .npy: the posterior means, `[n, latent_dim]` f32.
    #[arg(long)]
    out: PathBuf,
    /// Also write the images encoded (grey levels, `[n, input_dim]` f32) to this .npy.
    #[arg(long)]
    inputs_out: Option<PathBuf>,
}

#[derive(Args)]
struct ServeArgs {
    /// A model.safetensors (its run directory's loss curves are shown when they are beside it).
    #[arg(long)]
    model: PathBuf,
    /// Address and port to listen on; anything but 127.0.0.1 lets other machines use the explorer.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: std::net::SocketAddr,
    /// Dataset whose test set the page uses [default: the one in the model's metadata].
    #[arg(long)]
    dataset: Option<Dataset>,
    #[command(flatten)]
    data: DataDir,
}

#[derive(Args)]
struct ImportArgs {
    /// The PyTorch file: a `state_dict` saved by `torch.save` (.pt, .pth) or a .safetensors file.
    #[arg(long)]
    from: PathBuf,
    /// The model file to write (.safetensors).
    #[arg(long)]
    out: PathBuf,
    /// The dataset the model was trained on, recorded in the file.
    #[arg(long, default_value = "mnist")]
    dataset: Dataset,
    /// The hidden layers' non-linearity, for a file of our own layout (the other layouts are ReLU).
    #[arg(long, value_enum, default_value = "relu")]
    activation: ActivationArg,
}

/// `--activation`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ActivationArg {
    Relu,
    Tanh,
}

#[derive(Args)]
struct DownloadArgs {
    /// mnist, fashion-mnist or all.
    #[arg(long, default_value = "mnist")]
    dataset: String,
    /// Base URL(s), comma-separated, replacing the built-in mirrors; files at <URL>/<dataset>/<file>.
    #[arg(long)]
    mirror: Option<String>,
    /// Copy from a local folder instead of downloading.
    #[arg(long, conflicts_with = "mirror")]
    from: Option<PathBuf>,
    #[command(flatten)]
    data: DataDir,
}

#[derive(Args)]
struct PresetArgs {
    /// Preset name (models/<NAME>.toml, or a built-in) or a path to a .toml file.
    name: String,
    /// Directory of presets.
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<vae_train::Interrupted>().is_some() => {
            let stop = e.downcast_ref::<vae_train::Interrupted>().expect("checked");
            eprintln!("{stop}");
            ExitCode::from(stop.exit_code())
        }
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(a) => cmd_train(a),
        Command::Eval(a) => cmd_eval(a),
        Command::Sample(a) => cmd_sample(a),
        Command::Reconstruct(a) => cmd_reconstruct(a),
        Command::Encode(a) => cmd_encode(a),
        Command::Generate(a) => cmd_generate(a),
        Command::Interpolate(a) => cmd_interpolate(a),
        Command::Traverse(a) => cmd_traverse(a),
        Command::Scatter(a) => {
            let (vae, data, dataset) = model_and_data(&a.on)?;
            let test = test_set(&vae, &data, &a.on.model)?;
            write_chart(&a.out, &latent::scatter_figure(&vae, &test, dataset)?)
        }
        Command::Curves(a) => {
            let metrics = a.run.join(vae_train::rundir::files::METRICS);
            let history = vae_train::metrics::read_metrics(&metrics)?;
            anyhow::ensure!(
                !history.is_empty(),
                "{}: no epochs recorded",
                metrics.display()
            );
            let out = a
                .out
                .unwrap_or_else(|| a.run.join(vae_train::rundir::files::CURVES));
            write_chart(&out, &vae_train::charts::curves_png(&history)?)
        }
        Command::Import(a) => cmd_import(a),
        Command::Serve(a) => cmd_serve(a),
        Command::Download(a) => cmd_download(a),
        Command::Completions { shell } => {
            print!("{}", completions(shell));
            Ok(())
        }
        Command::Man { out } => write_man_pages(&out),
        Command::Preset(a) => {
            let (preset, _) = RunConfig::load_preset(&a.name, &a.models_dir)?;
            println!("{}", serde_json::to_string(&preset.apply(&a.overrides)?)?);
            Ok(())
        }
    }
}

/// The completion script for `shell`.
fn completions(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "vae-train", &mut script);
    let script = String::from_utf8_lossy(&script).into_owned();
    // clap_complete's bash script names a hyphenated binary's subcommand states two ways (clap-rs/clap#6421), so
    // no subcommand's flags would complete; spell the case labels as its loop does.
    match shell {
        clap_complete::Shell::Bash => script.replace("vae__subcmd__train", "vae__train"),
        _ => script,
    }
}

/// `vae-train.1` and `vae-train-<subcommand>.1` for every visible subcommand.
fn write_man_pages(out: &Path) -> Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    // No pages for `help`: `vae-train help X` is the same as `vae-train X --help`.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    clap_mangen::generate_to(cmd, out)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(())
}

fn parse_datasets(s: &str) -> Result<Vec<Dataset>> {
    if s == "all" {
        return Ok(Dataset::ALL.to_vec());
    }
    Ok(vec![s
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}, or all"))?])
}

fn cmd_download(a: DownloadArgs) -> Result<()> {
    let data_dir = a.data.data_dir();
    let mut opts = DownloadOptions::new(&data_dir);
    opts.source = match a.from {
        Some(dir) => Source::LocalDir(dir),
        None => Source::from_mirror_flag_or_env(a.mirror.as_deref()),
    };
    for d in parse_datasets(&a.dataset)? {
        let report = vae_data::download(d, &opts)?;
        let fetched = report
            .iter()
            .filter(|(_, o)| matches!(o, vae_data::Outcome::Fetched(_)))
            .count();
        tracing::info!(
            "{d}: 4 files verified in {} ({fetched} fetched)",
            vae_data::dataset_dir(&data_dir, d).display()
        );
    }
    Ok(())
}

fn cmd_train(a: TrainArgs) -> Result<()> {
    let (preset, origin) = RunConfig::load_preset(&a.preset, &a.models_dir)?;
    let cfg = preset.apply(&a.overrides)?;
    let name = Path::new(&a.preset)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or(a.preset.clone());
    let out_dir = a.out.unwrap_or_else(|| Path::new("runs").join(&name));
    let data_dir = a.common.data_dir();
    let device = open_device(a.common.device.device)?;
    if a.download {
        vae_data::download(cfg.dataset, &DownloadOptions::new(&data_dir))?;
    }
    tracing::info!(preset = %origin.display(), out = %out_dir.display(), "config {}", serde_json::to_string(&cfg)?);
    let opts = TrainOptions {
        data_dir,
        out_dir: out_dir.clone(),
        device,
        resume: a.resume,
        overwrite: a.overwrite,
        progress: true,
        interrupt: vae_train::Interrupt::on_signals()?,
        stop_after_steps: None,
    };
    let report = train(&cfg, &opts)?;
    // One summary line on stdout, for scripts (`cargo xtask bench` and its end-to-end check read it).
    let summary = serde_json::json!({
        "out": out_dir,
        "model": out_dir.join(vae_train::rundir::files::MODEL),
        "config": out_dir.join(vae_train::rundir::files::CONFIG),
        "final": report.history.last(),
        "history": report.history,
        "engine": report.engine,
        "files": report.files,
        "gemm": vae_train::fused::gemm_backend(),
        "profile": report.profile,
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{summary}");
    Ok(())
}

/// The process's peak resident set (VmHWM), where the OS reports it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn load_model(path: &Path, kind: DeviceKind) -> Result<Vae> {
    let device = open_device(kind)?;
    Ok(Vae::load(path, &device)?)
}

fn model_dataset(vae: &Vae, flag: Option<Dataset>, path: &Path) -> Result<Dataset> {
    match flag {
        Some(d) => Ok(d),
        None => vae.dataset().and_then(|d| d.parse().ok()).with_context(|| {
            format!(
                "{}: no known dataset in the metadata; pass --dataset",
                path.display()
            )
        }),
    }
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let (vae, data, dataset) = model_and_data(&a.on)?;
    let binarize = recorded_binarize(&vae, a.binarize, &a.on.model)?;
    let subset = a.test_subset.map(|n| n as usize);
    let test = eval::test_batcher(&data, binarize, subset, vae.device())?;
    if let Some(path) = &a.inputs_out {
        let mut rng = VaeRng::seed_from(a.seed);
        let images = test.in_order(&mut rng).map(|b| b.tensors().map(|(x, _)| x));
        let images: Vec<candle_core::Tensor> = images.collect::<Result<_, _>>()?;
        npy::write_npy(path, &candle_core::Tensor::cat(&images, 0)?)?;
    }
    let avg = eval::evaluate(&vae, &test, &mut VaeRng::seed_from(a.seed))?;
    anyhow::ensure!(
        avg.loss.is_finite(),
        "{}: the test loss is {}; the model's outputs overflow",
        a.on.model.display(),
        avg.loss
    );
    let usage = eval::latent_usage(&vae, &test, &mut VaeRng::seed_from(a.seed))?;
    let mut out = serde_json::json!({
        "model": a.on.model.display().to_string(),
        "dataset": dataset.name(),
        "binarize": binarize.name(),
        "test_images": test.len(),
        "test_loss": avg.loss,
        "test_recon": avg.recon,
        "test_kl": avg.kl,
        "active_units": usage.active_units,
        "kl_per_dim": usage.kl_per_dim,
        "mean_variance_per_dim": usage.mean_variance,
    });
    if a.iw_samples > 0 {
        let k = a.iw_samples as usize;
        let start = std::time::Instant::now();
        let iw = eval::iw_nll(&vae, &test, k, &mut VaeRng::seed_from(a.seed))?;
        out["iw_seconds"] = start.elapsed().as_secs_f64().into();
        anyhow::ensure!(
            iw.nll.is_finite(),
            "{}: the importance-weighted estimate is {}",
            a.on.model.display(),
            iw.nll
        );
        out["iw_samples"] = a.iw_samples.into();
        out["test_nll_iw"] = iw.nll.into();
        out["test_nll_iw_se"] = iw.se.into();
    }
    println!("{out}");
    Ok(())
}

/// `flag` if given, else the binarisation the model records (none for files without it).
fn recorded_binarize(vae: &Vae, flag: Option<Binarize>, path: &Path) -> Result<Binarize> {
    Ok(match (flag, vae.binarize()) {
        (Some(b), _) => b,
        (None, Some(name)) => name
            .parse()
            .with_context(|| format!("{}: metadata `binarize`", path.display()))?,
        (None, None) => Binarize::None,
    })
}

/// The model's input must be the dataset's images.
fn ensure_fits(vae: &Vae, data: &vae_data::MnistData, dataset: Dataset, path: &Path) -> Result<()> {
    let pixels = data.rows * data.cols;
    if pixels != vae.config().input_dim {
        anyhow::bail!(
            "{}: model input_dim {} does not fit {dataset} images of {pixels} pixels",
            path.display(),
            vae.config().input_dim
        );
    }
    let (classes, labels) = (vae.config().label_dim(), dataset.class_names().len());
    if classes != 0 && classes != labels {
        anyhow::bail!(
            "{}: a conditional model of {classes} classes does not fit {dataset}'s {labels}",
            path.display()
        );
    }
    Ok(())
}

fn side(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

fn cmd_serve(a: ServeArgs) -> Result<()> {
    let vae = load_model(&a.model, DeviceKind::Cpu)?;
    // The test set orders the sliders and feeds the test-image picker; the page works without it.
    let data = match model_dataset(&vae, a.dataset, &a.model) {
        Ok(dataset) => match vae_data::load(&a.data.data_dir(), dataset) {
            Ok(data) => {
                ensure_fits(&vae, &data, dataset, &a.model)?;
                Some((data, dataset))
            }
            Err(e) => {
                tracing::warn!("no test set ({e:#}): sliders in index order, no test images");
                None
            }
        },
        Err(e) => {
            tracing::warn!("{e:#}: sliders in index order, no test images");
            None
        }
    };
    if !a.bind.ip().is_loopback() {
        tracing::warn!(
            "listening on {}: anyone who can reach this machine can use the explorer",
            a.bind
        );
    }
    let run_dir = a
        .model
        .parent()
        .filter(|d| d.join(vae_train::rundir::files::METRICS).is_file());
    vae_train::serve::serve(vae, data, run_dir, a.bind, |addr| {
        println!("http://{addr}/");
        let _ = std::io::Write::flush(&mut std::io::stdout());
    })
}

fn cmd_import(a: ImportArgs) -> Result<()> {
    anyhow::ensure!(
        a.out.extension().is_some_and(|e| e == "safetensors"),
        "{}: the model is written as .safetensors",
        a.out.display()
    );
    let activation = match a.activation {
        ActivationArg::Relu => vae_model::Activation::Relu,
        ActivationArg::Tanh => vae_model::Activation::Tanh,
    };
    let (mut vae, layout) = vae_train::import::import(&a.from, activation)?;
    vae.set_dataset(a.dataset.name());
    vae.save(&a.out)?;
    let cfg = serde_json::to_string(vae.config())?;
    tracing::info!("{}: {layout} layout, {cfg}", a.from.display());
    println!(
        "{}",
        serde_json::json!({ "out": a.out.display().to_string(), "layout": layout, "config": vae.config() })
    );
    Ok(())
}

fn cmd_sample(a: SampleArgs) -> Result<()> {
    anyhow::ensure!(a.n > 0, "--n must be at least 1");
    let vae = load_model(&a.model, a.device.device)?;
    let classes = vae.config().label_dim();
    ensure_samples_fit(&vae, a.n.max(classes))?;
    let mut rng = VaeRng::seed_from(a.draw.seed);
    let t = a.draw.temperature;
    let images = match (a.digit, classes) {
        (Some(d), 0) => anyhow::bail!(
            "--digit {d}: {} is not a conditional model (train one with `conditional = true`, e.g. the mnist-cvae preset)",
            a.model.display()
        ),
        (Some(d), _) if d as usize >= classes => anyhow::bail!(
            "--digit {d}: the model's classes are 0-{}",
            classes - 1
        ),
        (Some(d), _) => {
            let labels = candle_core::Tensor::full(d, a.n, vae.device())?;
            latent::prior_samples(&vae, a.n, Some(&labels), t, &mut rng)?
        }
        (None, 0) => latent::prior_samples(&vae, a.n, None, t, &mut rng)?,
        (None, _) => {
            let per_class = a.n.div_ceil(classes);
            let labels = latent::class_rows(classes, per_class, vae.device())?;
            let images = latent::prior_samples(&vae, labels.dim(0)?, Some(&labels), t, &mut rng)?;
            let hw = image_side(&vae)?;
            images::write_images(&a.out, &images, classes, per_class, hw, hw)?;
            tracing::info!("wrote {}: a row per class, 0 to {}", a.out.display(), classes - 1);
            return Ok(());
        }
    };
    write_square(&a.out, &images, &vae)
}

/// A chart's PNG at `out`, which must end in `.png`.
fn write_chart(out: &Path, png: &[u8]) -> Result<()> {
    anyhow::ensure!(
        out.extension().is_some_and(|e| e == "png"),
        "{}: a chart is written as .png",
        out.display()
    );
    images::write_png(out, png)?;
    tracing::info!("wrote {}", out.display());
    Ok(())
}

/// Refuses an `--n` whose samples would not fit in memory: z, logits and probabilities of each, then the picture.
fn ensure_samples_fit(vae: &Vae, n: usize) -> Result<()> {
    let floats = n as u128 * (vae.config().input_dim + vae.config().latent_dim) as u128;
    vae_train::ensure_memory(16 * floats, &format!("--n {n}"))
}

/// `images` in a near-square grid (or as `.npy`), by the extension of `out`.
fn write_square(out: &Path, images: &candle_core::Tensor, vae: &Vae) -> Result<()> {
    let (n, hw) = (images.dim(0)?, image_side(vae)?);
    let cols = side(n);
    images::write_images(out, images, n.div_ceil(cols), cols, hw, hw)?;
    tracing::info!("wrote {}", out.display());
    Ok(())
}

/// The model and the dataset it was trained on (or `--dataset`), checked to fit each other.
fn model_and_data(on: &ModelOnData) -> Result<(Vae, vae_data::MnistData, Dataset)> {
    let vae = load_model(&on.model, on.common.device.device)?;
    let dataset = model_dataset(&vae, on.dataset, &on.model)?;
    let data = vae_data::load(&on.common.data_dir(), dataset)?;
    ensure_fits(&vae, &data, dataset, &on.model)?;
    Ok((vae, data, dataset))
}

/// The whole test set, binarised as the model was trained.
fn test_set(vae: &Vae, data: &vae_data::MnistData, path: &Path) -> Result<vae_data::Batcher> {
    let binarize = recorded_binarize(vae, None, path)?;
    Ok(eval::test_batcher(data, binarize, None, vae.device())?)
}

/// Test image `index` as `[1, input_dim]` with its label `[1]`, or an error naming `flag` and the valid range.
fn test_image(
    data: &vae_data::MnistData,
    index: usize,
    flag: &str,
    vae: &Vae,
) -> Result<(candle_core::Tensor, candle_core::Tensor)> {
    let n = data.test_images.dim(0)?;
    anyhow::ensure!(
        index < n,
        "{flag} {index}: the test set has {n} images (0..={})",
        n - 1
    );
    let labels = data
        .test_labels
        .narrow(0, index, 1)?
        .to_device(vae.device())?;
    Ok((data.test_pixels(index, 1, vae.device())?, labels))
}

/// A picture file made into the model's input, `[1, 784]`. A file has no label, so a conditional model, which
/// needs one, refuses it.
fn image_file(path: &Path, vae: &Vae) -> Result<candle_core::Tensor> {
    anyhow::ensure!(
        vae.config().input_dim == 784,
        "{}: image files are made into 28×28 inputs, and this model takes {}",
        path.display(),
        vae.config().input_dim
    );
    anyhow::ensure!(
        !vae.config().conditional,
        "{}: a conditional model needs each image's label, which a file lacks; give a test-set digit or index",
        path.display()
    );
    let px = vae_train::digitize::load(path)?;
    Ok(candle_core::Tensor::from_vec(px, (1, 784), vae.device())?)
}

/// `spec` as a test-set index, else as an image file; with the label of a test image.
fn example(
    data: &vae_data::MnistData,
    spec: &str,
    flag: &str,
    vae: &Vae,
) -> Result<(candle_core::Tensor, Option<candle_core::Tensor>)> {
    match spec.parse::<usize>() {
        Ok(index) => test_image(data, index, flag, vae).map(|(x, y)| (x, Some(y))),
        Err(_) => Ok((image_file(Path::new(spec), vae)?, None)),
    }
}

fn cmd_generate(a: GenerateArgs) -> Result<()> {
    anyhow::ensure!(a.n > 0, "--n must be at least 1");
    let (vae, data, _) = model_and_data(&a.on)?;
    ensure_samples_fit(&vae, a.n)?;
    let (examples, labels) = match a.like.parse::<i64>() {
        Ok(digit) => {
            anyhow::ensure!(
                (0..=9).contains(&digit),
                "--like {digit}: a digit is 0-9 (or give an image file)"
            );
            let labels = data
                .test_labels
                .to_dtype(candle_core::DType::U32)?
                .to_vec1::<u32>()?;
            let of_digit: Vec<u32> = (0..labels.len() as u32)
                .filter(|&i| labels[i as usize] == digit as u32)
                .take(a.n)
                .collect();
            anyhow::ensure!(
                !of_digit.is_empty(),
                "--like {digit}: no test image has that label"
            );
            let idx = candle_core::Tensor::new(of_digit.as_slice(), &candle_core::Device::Cpu)?;
            let take = |t: &candle_core::Tensor| t.index_select(&idx, 0)?.to_device(vae.device());
            let images = vae_data::unit_pixels(&take(&data.test_images)?)?;
            (images, Some(take(&data.test_labels)?))
        }
        Err(_) => (image_file(Path::new(&a.like), &vae)?, None),
    };
    let mut rng = VaeRng::seed_from(a.draw.seed);
    let t = a.draw.temperature;
    let images = latent::posterior_samples(&vae, &examples, labels.as_ref(), a.n, t, &mut rng)?;
    write_square(&a.out, &images, &vae)
}

fn cmd_interpolate(a: InterpolateArgs) -> Result<()> {
    let (vae, data, _) = model_and_data(&a.on)?;
    let (from, from_label) = example(&data, &a.from, "--from", &vae)?;
    let (to, to_label) = example(&data, &a.to, "--to", &vae)?;
    // Both ends come with labels whenever the model is conditional (image files are refused there).
    let labels = match (from_label, to_label) {
        (Some(a), Some(b)) => Some(candle_core::Tensor::cat(&[a, b], 0)?),
        _ => None,
    };
    let steps = a.steps as usize;
    let images = latent::interpolate(&vae, (&from, &to), labels.as_ref(), steps, a.slerp)?;
    let hw = image_side(&vae)?;
    images::write_images(&a.out, &images, 1, steps, hw, hw)?;
    tracing::info!("wrote {}", a.out.display());
    Ok(())
}

fn cmd_traverse(a: TraverseArgs) -> Result<()> {
    let (vae, data, _) = model_and_data(&a.on)?;
    let (x, label) = test_image(&data, a.index, "--index", &vae)?;
    let test = test_set(&vae, &data, &a.on.model)?;
    let usage = eval::latent_usage(&vae, &test, &mut VaeRng::seed_from(0))?;
    let mut order = latent::by_usage(&usage.kl_per_dim);
    order.truncate(a.dims.map_or(order.len(), |n| n as usize));
    let steps = a.steps as usize;
    let images = latent::traverse(&vae, &x, Some(&label), &order, a.range, steps)?;
    let hw = image_side(&vae)?;
    images::write_images(&a.out, &images, order.len(), steps, hw, hw)?;
    let inactive: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&d| usage.kl_per_dim[d] < latent::INACTIVE_KL)
        .collect();
    if !inactive.is_empty() {
        tracing::info!(
            "{} of the {} dimensions shown are inactive (average KL < {} nats), the last rows: {inactive:?}",
            inactive.len(),
            order.len(),
            latent::INACTIVE_KL
        );
    }
    let kl: Vec<f64> = order.iter().map(|&d| usage.kl_per_dim[d]).collect();
    println!(
        "{}",
        serde_json::json!({ "out": a.out.display().to_string(), "rows": order, "kl_per_row": kl, "inactive": inactive })
    );
    tracing::info!("wrote {}", a.out.display());
    Ok(())
}

fn image_side(vae: &Vae) -> Result<usize> {
    let d = vae.config().input_dim;
    let s = (d as f64).sqrt().round() as usize;
    anyhow::ensure!(s * s == d, "input_dim {d} is not a square image");
    Ok(s)
}

fn cmd_reconstruct(a: ReconstructArgs) -> Result<()> {
    anyhow::ensure!(a.n > 0, "--n must be at least 1");
    let (vae, data, _) = model_and_data(&a.on)?;
    let originals = data.first_test_images(a.n, vae.device())?;
    let labels = data.test_labels.narrow(0, 0, originals.dim(0)?)?;
    let recon = vae.reconstruct(&originals, Some(&labels.to_device(vae.device())?))?;
    match a.out.extension().is_some_and(|e| e == "npy") {
        true => images::write_images(&a.out, &recon, 1, a.n, data.rows, data.cols)?,
        false => images::write_reconstructions(&a.out, &originals, &recon, data.rows, data.cols)?,
    }
    tracing::info!("wrote {}", a.out.display());
    Ok(())
}

fn cmd_encode(a: EncodeArgs) -> Result<()> {
    anyhow::ensure!(a.n > 0, "--n must be at least 1");
    for path in std::iter::once(&a.out).chain(&a.inputs_out) {
        anyhow::ensure!(
            path.extension().is_some_and(|e| e == "npy"),
            "{}: encode writes .npy",
            path.display()
        );
    }
    let (vae, data, _) = model_and_data(&a.on)?;
    let originals = data.first_test_images(a.n, vae.device())?;
    let labels = data.test_labels.narrow(0, 0, originals.dim(0)?)?;
    let (mu, _) = vae.encode(&originals, Some(&labels.to_device(vae.device())?))?;
    npy::write_npy(&a.out, &mu)?;
    if let Some(path) = &a.inputs_out {
        npy::write_npy(path, &originals)?;
    }
    tracing::info!("wrote {}", a.out.display());
    Ok(())
}
