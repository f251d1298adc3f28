//! Every subcommand's flags, in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vae_data::{Binarize, DataSource, Dataset};
use vae_train::{DeviceKind, Overrides};

#[derive(Parser)]
#[command(
    name = "vae-train",
    version,
    about = "Train and use a variational auto-encoder on MNIST-style data"
)]
pub struct Cli {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    #[cfg(feature = "serve")]
    Serve(ServeArgs),
    /// Write the explorer of a model as a static site (HTML, JS, its WebAssembly module and the model) that any
    /// static file server shows, with no vae-train behind it.
    #[cfg(feature = "serve")]
    ExportWeb(ExportWebArgs),
    /// Convert a PyTorch VAE's weights (.pt, .pth or .safetensors: the teaching code's layout, pytorch/examples',
    /// or ours) into a model file.
    Import(ImportArgs),
    /// Fetch and verify a dataset's published files.
    Download(DownloadArgs),
    /// Write a dataset's examples as PNG files in class folders: a folder that `--dataset folder:DIR` reads.
    ExportImages(ExportImagesArgs),
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
pub struct Common {
    #[command(flatten)]
    pub device: DeviceArg,
    #[command(flatten)]
    pub data: DataDir,
}

/// `--device`, for every subcommand that runs the model.
#[derive(Args)]
pub struct DeviceArg {
    /// Where the tensors live.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceKind,
}

/// `--data-dir`, for subcommands that read datasets.
#[derive(Args)]
pub struct DataDir {
    /// Data directory [default: $VAE_DATA_DIR or data/].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Common {
    /// `--data-dir`, else `$VAE_DATA_DIR`, else `data/`.
    pub fn data_dir(&self) -> PathBuf {
        self.data.data_dir()
    }
}

impl DataDir {
    /// `--data-dir`, else `$VAE_DATA_DIR`, else `data/`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .or_else(|| std::env::var_os("VAE_DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| "data".into())
    }
}

#[derive(Args)]
pub struct TrainArgs {
    /// Preset name (models/<NAME>.toml, or a built-in) or a path to a .toml file.
    #[arg(long, default_value = "mnist")]
    pub preset: String,
    #[command(flatten)]
    pub overrides: Overrides,
    /// Run directory [default: runs/<preset>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from the run directory's checkpoint.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace an earlier run in the run directory (its files are removed first).
    #[arg(long)]
    pub overwrite: bool,
    /// Directory of presets.
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// Fetch the dataset first if it is missing (from $VAE_DATA_MIRROR or the built-in mirrors).
    #[arg(long)]
    pub download: bool,
    /// Refuse a folder with an unreadable picture, rather than skip it.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub on: ModelOnData,
    /// Also estimate −log p(x) with K importance samples per image (at most 100000; a progress bar shows on a
    /// terminal).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub iw_samples: u32,
    /// How to binarise the test images [default: as the model was trained, from its metadata; `none` for files
    /// without it]. `dynamic` binarises the test set once, the same every time (seed 2016).
    #[arg(long)]
    pub binarize: Option<Binarize>,
    /// Evaluate the first N test images only.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub test_subset: Option<u64>,
    /// Also write the test images as evaluated (binarised as said above) to this `.npy` file, `[n, input_dim]`
    /// f32, for an independent evaluator (`bench/torch_iw_estimate.py`).
    #[arg(long)]
    pub inputs_out: Option<PathBuf>,
    #[command(flatten)]
    pub replace: Replace,
    /// Seed of the importance samples (and of a dynamic binarisation's draws, which use seed 2016 unless a model
    /// says otherwise).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args)]
pub struct SampleArgs {
    /// A model.safetensors written by `train` or `import`.
    #[arg(long)]
    pub model: PathBuf,
    /// Number of samples (laid out in a near-square grid). A conditional model without `--digit` gives one row
    /// per class, of N/10 (rounded up) samples each.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// A conditional model's class to sample under: 0-9 for MNIST and Fashion-MNIST.
    #[arg(long)]
    pub digit: Option<u32>,
    /// Scales the prior's standard deviation: z ~ N(0, T² I).
    #[arg(long, default_value_t = 1.0, value_parser = temperature, allow_negative_numbers = true)]
    pub temperature: f64,
    #[command(flatten)]
    pub draw: Draw,
    /// Output: .png (a grid) or .npy (`[n, 28, 28]` f32 probabilities, row-major as in the grid).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub replace: Replace,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub on: ModelOnData,
    /// What to make more of: a class, by index (a digit 0-9) or name (its first test examples), or an image file
    /// (PNG or JPEG, any size; for a 28×28 grey model made into an input as MNIST was: grey, fitted into 20×20,
    /// centred by its centre of mass; for another, resized and cropped as its folder's pictures were).
    #[arg(long)]
    pub like: String,
    /// Number of images; sample i comes from example i mod (the number of examples).
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// Scales the standard deviation of each example's posterior the images are drawn from; 0 decodes the
    /// posterior means.
    #[arg(long, default_value_t = 1.0, value_parser = temperature, allow_negative_numbers = true)]
    pub temperature: f64,
    #[command(flatten)]
    pub draw: Draw,
    /// Output: .png (a grid) or .npy (`[n, 28, 28]` f32 probabilities).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub replace: Replace,
}

#[derive(Args)]
pub struct InterpolateArgs {
    #[command(flatten)]
    pub on: ModelOnData,
    /// The start: a test-set index, or an image file (PNG or JPEG, made into an input as for `generate --like`).
    #[arg(long)]
    pub from: String,
    /// The end: a test-set index or an image file.
    #[arg(long)]
    pub to: String,
    /// Images along the path, ends included.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub steps: u32,
    /// Along the great circle between the two means instead of the straight line.
    #[arg(long)]
    pub slerp: bool,
    /// Output: .png (one row) or .npy (`[steps, 28, 28]` f32 probabilities).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub replace: Replace,
}

#[derive(Args)]
pub struct TraverseArgs {
    #[command(flatten)]
    pub on: ModelOnData,
    /// Index of the test image whose posterior mean is the centre.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Each dimension moves from −RANGE to +RANGE (in units of the prior's σ) around the mean.
    #[arg(long, default_value_t = 3.0, value_parser = traverse_range, allow_negative_numbers = true)]
    pub range: f64,
    /// Images per dimension.
    #[arg(long, default_value_t = 9, value_parser = clap::value_parser!(u32).range(2..=100))]
    pub steps: u32,
    /// Show only the N most used dimensions [default: all].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub dims: Option<u32>,
    /// Output: .png (a row per dimension) or .npy (`[dims·steps, 28, 28]` f32 probabilities).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub replace: Replace,
}

#[derive(Args)]
pub struct ScatterArgs {
    #[command(flatten)]
    pub on: ModelOnData,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub replace: Replace,
}

#[derive(Args)]
pub struct CurvesArgs {
    /// A run directory (holding metrics.jsonl).
    #[arg(long)]
    pub run: PathBuf,
    /// Output PNG [default: <RUN>/curves.png].
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub replace: Replace,
}

/// A model and the test set it is used on: every command that reads both.
#[derive(Args)]
pub struct ModelOnData {
    /// A model.safetensors written by `train`.
    #[arg(long)]
    pub model: PathBuf,
    /// Dataset: mnist, fashion-mnist, cifar10, folder:PATH or npy:PATH [default: the one in the model's metadata].
    #[arg(long)]
    pub dataset: Option<DataSource>,
    #[command(flatten)]
    pub common: Common,
}

/// `--force`, for every command that writes a file.
#[derive(Args)]
pub struct Replace {
    /// Replace an output file even when it holds something other than what the command writes (a model, say).
    #[arg(long)]
    pub force: bool,
}

/// The seed of every command that draws z.
#[derive(Args)]
pub struct Draw {
    /// Seed of the draws: the same seed gives the same images.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Draw each value from the decoder's distribution instead of showing its mean (a Bernoulli decoder's pixels
    /// come out black or white, a logistic's as 8-bit levels).
    #[arg(long)]
    pub sample_pixels: bool,
}

impl Draw {
    /// What the images show.
    pub fn pixels(&self) -> vae_train::latent::Pixels {
        if self.sample_pixels {
            vae_train::latent::Pixels::Drawn
        } else {
            vae_train::latent::Pixels::Mean
        }
    }
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
pub struct ReconstructArgs {
    #[command(flatten)]
    pub on: ModelOnData,
    /// Number of test images.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    /// Output: .png (the test images above their reconstructions) or .npy (the reconstructions, `[n, 28, 28]` f32
    /// probabilities, decoded from the posterior means).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub replace: Replace,
}

#[derive(Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub on: ModelOnData,
    /// Number of test images, from the first.
    #[arg(long, default_value_t = 8)]
    pub n: usize,
    /// Output .npy: the posterior means, `[n, latent_dim]` f32.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub replace: Replace,
    /// Also write the images encoded (grey levels, `[n, input_dim]` f32) to this .npy.
    #[arg(long)]
    pub inputs_out: Option<PathBuf>,
}

#[cfg(feature = "serve")]
#[derive(Args)]
pub struct ServeArgs {
    /// A model.safetensors (its run directory's loss curves are shown when they are beside it).
    #[arg(long)]
    pub model: PathBuf,
    /// Address and port to listen on; anything but 127.0.0.1 lets other machines use the explorer.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// Dataset whose test set the page uses [default: the one in the model's metadata].
    #[arg(long)]
    pub dataset: Option<DataSource>,
    /// Connections served at once; one more is answered 503 and closed.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,
    /// Seconds a client may take to send a request (headers or body) or leave its connection idle.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub timeout: u32,
    #[command(flatten)]
    pub data: DataDir,
}

#[cfg(feature = "serve")]
#[derive(Args)]
pub struct ExportWebArgs {
    /// A model.safetensors (its run directory's loss curves go into the site when they are beside it).
    #[arg(long)]
    pub model: PathBuf,
    /// The folder to write: new or empty, or replaced whole with --overwrite.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace the site export-web wrote in --out before (once the new site is written whole).
    #[arg(long)]
    pub overwrite: bool,
    /// Publish without the test set when it cannot be read: sliders in index order, no test images to morph.
    #[arg(long)]
    pub no_test_set: bool,
    /// Dataset whose test set the page uses [default: the one in the model's metadata].
    #[arg(long)]
    pub dataset: Option<DataSource>,
    #[command(flatten)]
    pub data: DataDir,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The PyTorch file: a `state_dict` saved by `torch.save` (.pt, .pth) or a .safetensors file.
    #[arg(long)]
    pub from: PathBuf,
    /// The model file to write (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub replace: Replace,
    /// The dataset the model was trained on, recorded in the file.
    #[arg(long, default_value = "mnist")]
    pub dataset: Dataset,
    /// The hidden layers' non-linearity, for a file of our own layout (the other layouts are ReLU).
    #[arg(long, value_enum, default_value = "relu")]
    pub activation: ActivationArg,
}

/// `--activation`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ActivationArg {
    /// max(0, x).
    Relu,
    /// tanh(x).
    Tanh,
}

#[derive(Args)]
pub struct DownloadArgs {
    /// mnist, fashion-mnist, cifar10 or all (the three).
    #[arg(long, default_value = "mnist")]
    pub dataset: String,
    /// Base URL(s), comma-separated, replacing the built-in mirrors; files at <URL>/<dataset>/<file>.
    #[arg(long)]
    pub mirror: Option<String>,
    /// Copy from a local folder instead of downloading.
    #[arg(long, conflicts_with = "mirror")]
    pub from: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataDir,
}

#[derive(Args)]
pub struct ExportImagesArgs {
    /// The dataset: mnist, fashion-mnist, cifar10, folder:PATH or npy:PATH.
    #[arg(long)]
    pub dataset: DataSource,
    /// The folder to write (new or empty); written whole or not at all.
    #[arg(long)]
    pub out: PathBuf,
    /// Which examples: train or test (class folders directly under --out), or both (under train/ and test/).
    #[arg(long, value_enum, default_value = "both")]
    pub split: SplitArg,
    #[command(flatten)]
    pub data: DataDir,
}

/// `--split`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum SplitArg {
    /// The training examples.
    Train,
    /// The test examples.
    Test,
    /// Both, under train/ and test/.
    Both,
}

#[derive(Args)]
pub struct PresetArgs {
    /// Preset name (models/<NAME>.toml, or a built-in) or a path to a .toml file.
    pub name: String,
    /// Directory of presets.
    #[arg(long, default_value = "models")]
    pub models_dir: PathBuf,
    /// Print the model's layers (kind, input and output shapes, weight shape, parameters) instead of the JSON.
    #[arg(long)]
    pub layers: bool,
    #[command(flatten)]
    pub overrides: Overrides,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every problem of `cmd`'s help and its subcommands': a flag or value without a description, or rustdoc's
    /// link syntax shown as it is.
    fn problems(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        let rustdoc =
            |text: &str| text.contains("[`") || text.contains("`]") || text.contains("crate::");
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            if help.trim().is_empty() {
                out.push(format!("{path} --{id}: no description"));
            }
            let values = arg.get_possible_values();
            let texts = values
                .iter()
                .filter_map(|v| v.get_help())
                .map(|h| h.to_string());
            for text in std::iter::once(help).chain(texts) {
                if rustdoc(&text) {
                    out.push(format!("{path} --{id}: rustdoc syntax in {text:?}"));
                }
            }
        }
        for sub in cmd.get_subcommands() {
            let name = format!("{path} {}", sub.get_name());
            if sub
                .get_about()
                .is_none_or(|a| a.to_string().trim().is_empty())
            {
                out.push(format!("{name}: no description"));
            }
            problems(sub, &name, out);
        }
    }

    #[test]
    fn every_flag_has_a_description_without_rustdoc_syntax() {
        let mut found = Vec::new();
        problems(&Cli::command(), "vae-train", &mut found);
        assert!(found.is_empty(), "{}", found.join("\n"));
    }
}
