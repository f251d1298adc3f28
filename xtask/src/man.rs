//! `cargo xtask man`: the man pages of `vae-train`, written by the binary itself (clap_mangen) so they always match
//! its flags.

use std::path::PathBuf;

use anyhow::Result;

use crate::cmd::{status, target_dir, vae_train};

/// Writes `vae-train.1` and one page per subcommand into `target/man/` and returns that folder.
pub fn run() -> Result<PathBuf> {
    let out = target_dir().join("man");
    status(vae_train("cpu").args(["man", "--out"]).arg(&out))?;
    eprintln!(
        "man pages in {}: `man -l {}/vae-train.1`",
        out.display(),
        out.display()
    );
    Ok(out)
}
