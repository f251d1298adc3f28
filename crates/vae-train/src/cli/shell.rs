//! What a shell and `man` read: completion scripts and man pages, made from the flags themselves.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::args::Cli;

/// The completion script for `shell`.
pub(super) fn completions(shell: clap_complete::Shell) -> String {
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
pub(super) fn write_man_pages(out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    // No pages for `help`: `vae-train help X` is the same as `vae-train X --help`.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    clap_mangen::generate_to(cmd, out)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(())
}
