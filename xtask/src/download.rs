//! `cargo xtask download`: `vae-train download` with the same flags.

use std::ffi::OsString;

use anyhow::Result;

use crate::cmd::{status, vae_train};

/// Fetches and verifies the datasets `flags` name.
pub fn run(flags: &[OsString]) -> Result<()> {
    status(vae_train("cpu").arg("download").args(flags))
}
