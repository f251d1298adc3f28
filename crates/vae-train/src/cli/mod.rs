//! The `vae-train` command line: the flags in [`args`], one module per group of commands, and the dispatch.

pub mod args;
mod charts;
mod data;
mod draw;
mod eval;
mod import;
mod model;
#[cfg(feature = "serve")]
mod serve;
mod shell;
mod train;

use anyhow::Result;

use args::{Cli, Command};

/// Runs the command `cli` names, logging to stderr (`RUST_LOG` filters, `info` by default; coloured on a terminal
/// only).
pub fn run(cli: Cli) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file or a pipe gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    // Training stops at a checkpoint on a signal, and the server on Ctrl-C; any other command is ended at once,
    // without the temporary file it may be writing.
    let stops_itself = matches!(cli.command, Command::Train(_)) || is_serve(&cli.command);
    if !stops_itself {
        vae_train::interrupt::remove_pending_on_signals()?;
    }
    match cli.command {
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Sample(a) => draw::sample(a),
        Command::Reconstruct(a) => draw::reconstruct(a),
        Command::Encode(a) => draw::encode(a),
        Command::Generate(a) => draw::generate(a),
        Command::Interpolate(a) => draw::interpolate(a),
        Command::Traverse(a) => draw::traverse(a),
        Command::Scatter(a) => charts::scatter(a),
        Command::Curves(a) => charts::curves(a),
        Command::Import(a) => import::run(a),
        #[cfg(feature = "serve")]
        Command::Serve(a) => serve::run(a),
        #[cfg(feature = "serve")]
        Command::ExportWeb(a) => serve::export_web(a),
        Command::Download(a) => data::download(a),
        Command::ExportImages(a) => data::export_images(a),
        Command::Preset(a) => data::preset(a),
        Command::Completions { shell } => {
            print!("{}", shell::completions(shell));
            Ok(())
        }
        Command::Man { out } => shell::write_man_pages(&out),
    }
}

fn is_serve(command: &Command) -> bool {
    #[cfg(feature = "serve")]
    if matches!(command, Command::Serve(_)) {
        return true;
    }
    let _ = command;
    false
}
