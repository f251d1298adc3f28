//! `cargo xtask`: the project's automation, as plain Rust (see matklad/cargo-xtask).
//!
//! One module per task. Each runs `$CARGO` or the `vae-train` binary and asks the binary for what it knows (presets,
//! run summaries) rather than keeping copies of its schemas.

mod bench;
mod build;
mod cmd;
mod cuda;
mod e2e;
mod figures;
mod fuzz;
mod lint;
mod man;
#[cfg(test)]
mod structure;
mod test;

use std::ffi::OsString;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Automation for the VAE workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Task>,
}

#[derive(Subcommand)]
enum Task {
    /// Fetch and verify datasets into data/ (or --data-dir): `vae-train download` with the same flags.
    Download {
        /// Flags for `vae-train download` (--dataset, --data-dir, --mirror, --from).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        flags: Vec<OsString>,
    },
    /// Build vae-train in release for a device, fetch the data if missing, and train.
    Train {
        #[arg(long, default_value = "mnist")]
        preset: String,
        /// cpu, cuda or metal (the name of vae-train's feature).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// For cuda: the GPU's compute capability (e.g. 90), when nvidia-smi cannot tell.
        #[arg(long)]
        compute_cap: Option<String>,
        /// Flags passed to `vae-train train`, after `--` (e.g. -- --epochs 2).
        #[arg(last = true)]
        train_flags: Vec<OsString>,
    },
    /// Build the workspace in release with a device's feature set (cuda and metal into `target/DEVICE/`).
    Build {
        /// cpu, cuda or metal.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// For cuda: the GPU's compute capability (e.g. 90), when nvidia-smi cannot tell.
        #[arg(long)]
        compute_cap: Option<String>,
    },
    /// Run the lints, the test suite and the end-to-end check (the README's test command); with --device cuda,
    /// the tests that need an NVIDIA GPU.
    Test {
        /// cpu, or cuda for the GPU tests.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Build the cuda feature against stub libraries and type-check the metal feature for macOS: no GPU needed.
    CheckGpu,
    /// Check formatting, clippy (-D warnings), rustdoc (-D warnings) and that the three crates package.
    Lint,
    /// Write vae-train's man pages into target/man/.
    Man,
    /// Time training epochs of each preset, ours and (where importable) PyTorch's, side by side.
    Bench(bench::BenchArgs),
    /// Train the runs behind docs/concepts.md, write its figures into docs/concepts/, print its tables.
    Figures,
    /// Run each cargo-fuzz target (IDX reader, Vae::load, checkpoint, preset parser) for N seconds.
    Fuzz {
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    pin_data_dir();
    let Some(task) = cli.command else {
        // Bare `cargo xtask`: the help, as a successful answer rather than a usage error.
        use clap::CommandFactory;
        Cli::command().print_help()?;
        return Ok(());
    };
    match task {
        Task::Download { flags } => cmd::status(cmd::vae_train("cpu").arg("download").args(flags)),
        Task::Train {
            preset,
            device,
            compute_cap,
            train_flags,
        } => build::train(&preset, &device, compute_cap.as_deref(), &train_flags),
        Task::Build {
            device,
            compute_cap,
        } => build::build(&device, compute_cap.as_deref()),
        Task::Test { device } => match device.as_str() {
            "cpu" => test::test(),
            "cuda" => test::test_cuda(),
            other => anyhow::bail!("--device {other}: the GPU tests exist for cuda only"),
        },
        Task::CheckGpu => cuda::check_gpu(),
        Task::Lint => lint::lint(),
        Task::Man => man::man().map(drop),
        Task::Bench(args) => bench::bench(&args),
        Task::Fuzz { seconds } => fuzz::fuzz(seconds),
        Task::Figures => figures::figures(),
    }
}

/// Makes a relative `$VAE_DATA_DIR` absolute, from the directory xtask was started in, so that everything xtask
/// starts (vae-train at the workspace root, test binaries in their crates' folders) sees the same folder. Unset, each
/// falls back to `data/` at the workspace root.
fn pin_data_dir() {
    if let Some(dir) = std::env::var_os("VAE_DATA_DIR").filter(|d| !d.is_empty()) {
        if let Ok(abs) = std::path::absolute(&dir) {
            std::env::set_var("VAE_DATA_DIR", abs);
        }
    }
}
