//! `cargo xtask`: the project's automation, as plain Rust (see matklad/cargo-xtask).
//!
//! The flags are declared in [`flags`]; each task is a module with its own `run`. Each runs `$CARGO` or the
//! `vae-train` binary and asks the binary for what it knows (presets, run summaries) rather than keeping copies of
//! its schemas.

mod bench;
mod build;
mod check_gpu;
mod cmd;
mod cuda;
mod device;
mod download;
mod e2e;
mod figures;
mod flags;
mod fuzz;
mod lint;
mod man;
mod mkl;
mod readme;
mod structure;
mod summary;
mod test;
mod train;
mod web;

use anyhow::Result;
use clap::Parser;

use flags::{Cli, Task};

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    cmd::pin_data_dir();
    let Some(task) = cli.command else {
        // Bare `cargo xtask`: the help, as a successful answer rather than a usage error.
        return Cli::print_help();
    };
    match task {
        Task::Download { flags } => download::run(&flags),
        Task::Train(args) => train::run(&args),
        Task::Build(args) => build::run(&args),
        Task::Test { device } => test::run(&device),
        Task::CheckGpu => check_gpu::run(),
        Task::Lint => lint::run(),
        Task::Man => man::run().map(drop),
        Task::Bench(args) => bench::run(&args),
        Task::Mkl => mkl::run(),
        Task::Fuzz { seconds } => fuzz::run(seconds),
        Task::Figures(args) => figures::run(&args),
        Task::Web => web::run(),
    }
}
