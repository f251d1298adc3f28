//! `cargo xtask lint`: formatting, clippy, rustdoc and packaging, each as CI holds them. `cargo xtask test` runs it
//! first.

use anyhow::Result;

use crate::cmd::{cargo, features, status};

/// The crates others depend on, in dependency order; `cargo package` checks each builds from its packaged files.
const PUBLISHED: [&str; 3] = ["vae-model", "vae-data", "vae-train"];

/// Fails on an unformatted line, a clippy warning, a rustdoc warning (a broken doc link, a missing doc) or a crate
/// that does not package.
pub fn lint() -> Result<()> {
    status(cargo().args(["fmt", "--all", "--", "--check"]))?;
    status(
        cargo()
            .args(["clippy", "--workspace", "--all-targets"])
            .args(features("cpu"))
            .args(["--", "-D", "warnings"]),
    )?;
    status(
        cargo()
            .args(["doc", "--workspace", "--no-deps"])
            .args(features("cpu"))
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // All three at once: cargo verifies vae-data and vae-train against the just-packaged vae-model and vae-data
    // (none is on crates.io yet), so no `--no-verify` is needed. `--allow-dirty` because this checks contents, not
    // whether they are committed.
    let mut package = cargo();
    package.args(["package", "--allow-dirty"]);
    for p in PUBLISHED {
        package.args(["-p", p]);
    }
    status(&mut package)
}
