//! `vae-train`: train, evaluate and draw from the VAE. See `vae-train --help`.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    vae_train::pin_openblas_kernels();
    vae_train::shorten_candle_spin();
    vae_train::gemm::run_model_products_here();
    match cli::run(cli::args::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<vae_train::Interrupted>() {
            Some(stop) => {
                eprintln!("{stop}");
                ExitCode::from(stop.exit_code())
            }
            None => {
                eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
                ExitCode::FAILURE
            }
        },
    }
}
