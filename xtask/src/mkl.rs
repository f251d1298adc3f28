//! `cargo xtask mkl`: Intel MKL's runtime (PyPI's `mkl` wheel, the package registry being the one place this
//! project downloads from) in a venv in the cache folder, where `vae-train` looks for `libmkl_rt` as it starts.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cmd::{cache_dir, status};

/// The wheel's version: the MKL every build of ours finds there.
const MKL_VERSION: &str = "2026.2.1";

/// Installs the wheel (once) and returns the library's path.
pub fn install() -> Result<PathBuf> {
    let venv = cache_dir()?.join("mkl").join("venv");
    let lib = venv.join("lib").join("libmkl_rt.so.3");
    let done = venv.join(format!(".installed-{MKL_VERSION}"));
    if !done.exists() {
        if !venv.join("bin/pip").exists() {
            status(Command::new("python3").args(["-m", "venv"]).arg(&venv))
                .context("making a venv for the MKL wheel needs python3 with venv")?;
        }
        let spec = format!("mkl=={MKL_VERSION}");
        status(Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--no-deps",
            &spec,
        ]))?;
        std::fs::write(&done, "")?;
    }
    if !lib.exists() {
        bail!(
            "{}: not there after installing mkl {MKL_VERSION}",
            lib.display()
        );
    }
    Ok(lib)
}

/// `cargo xtask mkl`: installs and says where.
pub fn run() -> Result<()> {
    let lib = install()?;
    println!(
        "MKL {MKL_VERSION}: {} (vae-train finds it there; VAE_MKL names another, VAE_MKL=0 turns it off)",
        lib.display()
    );
    Ok(())
}
