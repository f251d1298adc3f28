//! Every flag of `cargo xtask`, in one place: the clap types that `main.rs` parses and hands to the tasks.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Automation for the VAE workspace"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Task>,
}

impl Cli {
    /// Prints the help, for a bare `cargo xtask`.
    pub fn print_help() -> anyhow::Result<()> {
        use clap::CommandFactory;
        Ok(Self::command().print_help()?)
    }
}

/// The tasks.
#[derive(Subcommand)]
pub enum Task {
    /// Fetch and verify datasets into data/ (or --data-dir): `vae-train download` with the same flags.
    Download {
        /// Flags for `vae-train download` (--dataset, --data-dir, --mirror, --from).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        flags: Vec<OsString>,
    },
    /// Build vae-train in release for a device, fetch the data if missing, and train.
    Train(TrainArgs),
    /// Build the workspace in release with a device's feature set (cuda and metal into `target/DEVICE/`).
    Build(BuildArgs),
    /// Run the lints, the test suite and the end-to-end check (the README's test command); with --device cuda,
    /// the tests that need an NVIDIA GPU.
    Test {
        /// cpu, or cuda for the GPU tests.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Build the cuda feature against stub libraries and type-check the metal feature for macOS: no GPU needed.
    CheckGpu,
    /// Check formatting, clippy (-D warnings), rustdoc (-D warnings) and that the four crates package.
    Lint,
    /// Build the explorer's WebAssembly module into target/web/pkg/ (vae-train embeds it for `export-web`);
    /// installs rustup's wasm32 target and the matching wasm-bindgen-cli when missing.
    Web,
    /// Write vae-train's man pages into target/man/.
    Man,
    /// Time training epochs of each preset, ours and (where importable) PyTorch's, side by side.
    Bench(BenchArgs),
    /// Install Intel MKL's runtime (PyPI's `mkl` wheel) into a venv in the cache folder, where vae-train finds it
    /// and adds MKL to the sgemm backends it measures.
    Mkl,
    /// Train the runs behind docs/concepts.md, write its figures into docs/concepts/, print its tables.
    Figures(FiguresArgs),
    /// Run each cargo-fuzz target (IDX reader, Vae::load, checkpoint, preset parser) for N seconds.
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

// The flag structs carry no doc comment of their own: the task's, above, is their help's first line.

#[derive(clap::Args)]
pub struct TrainArgs {
    #[arg(long, default_value = "mnist")]
    pub preset: String,
    /// cpu, cuda or metal (the name of vae-train's feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// For cuda: the GPU's compute capability (e.g. 90), when nvidia-smi cannot tell.
    #[arg(long)]
    pub compute_cap: Option<String>,
    /// Flags passed to `vae-train train`, after `--` (e.g. -- --epochs 2).
    #[arg(last = true)]
    pub train_flags: Vec<OsString>,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// cpu, cuda or metal.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// For cuda: the GPU's compute capability (e.g. 90), when nvidia-smi cannot tell.
    #[arg(long)]
    pub compute_cap: Option<String>,
}

#[derive(clap::Args)]
pub struct FiguresArgs {
    /// Only one section: `likelihoods` (the decoder's distribution on Fashion-MNIST's grey levels).
    #[arg(long, value_parser = ["likelihoods"])]
    pub only: Option<String>,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Epochs per run; the median epoch time is reported.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Runs of each side, alternating ours and PyTorch's (0: no training timed, for `--web` or `--folder` alone).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Presets to time.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "mnist,mnist-seed,mnist-cvae,mnist-iwae"
    )]
    pub presets: Vec<String>,
    /// Our other configurations, timed on the first preset: `openblas`, `mkl`, `blis`, `gemm` and `gemm-avx2` (that
    /// sgemm forced), `avx2` (no AVX-512: our kernels' AVX2 paths, OpenBLAS's Haswell kernels, the `gemm` crate's AVX2
    /// kernels), `autograd` (the Candle engine).
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = ["openblas", "mkl", "blis", "gemm", "gemm-avx2", "avx2", "autograd"]
    )]
    pub variants: Vec<String>,
    /// Report where our epoch's time goes (`VAE_PROFILE=1`): products, element-wise work, Adam, data, other, and
    /// each product's GFLOP/s.
    #[arg(long)]
    pub profile: bool,
    /// Skip PyTorch even if it is importable.
    #[arg(long)]
    pub no_torch: bool,
    /// Skip the compiled PyTorch (its compilation takes about half a minute a round).
    #[arg(long)]
    pub no_torch_compile: bool,
    /// Skip the likelihood row.
    #[arg(long)]
    pub no_likelihood: bool,
    /// Importance samples per image for the likelihood row.
    #[arg(long, default_value_t = 5000)]
    pub likelihood_k: usize,
    /// Test images for the likelihood row.
    #[arg(long, default_value_t = 1000)]
    pub likelihood_images: usize,
    /// Also time MNIST as a folder of PNGs: the first read (decoded, cached), the cached one, and an epoch from it
    /// beside one from the IDX files.
    #[arg(long)]
    pub folder: bool,
    /// Also time the explorer's WebAssembly module in headless Chromium: one decode of the `mnist` model (median
    /// of 100) and the exported page's time to interactive.
    #[arg(long)]
    pub web: bool,
    /// Instead of training epochs, time each preset's products alone (the shapes of one profiled epoch) on each of
    /// our sgemm backends and through `torch.matmul`, in `--rounds` alternated rounds: GFLOP/s side by side.
    #[arg(long)]
    pub sgemm: bool,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench/bench.json")]
    pub json: PathBuf,
}
