//! `cargo xtask lint`: the code's structure, formatting, clippy, rustdoc and packaging, each as CI holds them.
//! `cargo xtask test` runs it first.

use anyhow::Result;

use crate::cmd::{cargo, features, status};

/// The crates others depend on, in dependency order; `cargo package` checks each builds from its packaged files.
const PUBLISHED: [&str; 4] = ["vae-model", "vae-data", "vae-web", "vae-train"];

/// Fails on a break of the structure ([`crate::structure`]), an unformatted line, a clippy warning, a rustdoc warning (a broken doc link, a missing doc) or a crate
/// that does not package.
pub fn run() -> Result<()> {
    crate::structure::check(&crate::cmd::project_root())?;
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
    // All at once: cargo verifies each crate against the just-packaged ones it depends on
    // (none is on crates.io yet), so no `--no-verify` is needed. `--allow-dirty` because this checks contents, not
    // whether they are committed.
    forget_unpacked_packages()?;
    let mut package = cargo();
    // The verify builds only show that the packaged files compile; debug info would only slow them.
    package
        .args(["package", "--allow-dirty"])
        .env("CARGO_PROFILE_DEV_DEBUG", "false");
    for p in PUBLISHED {
        package.args(["-p", p]);
    }
    status(&mut package)
}

/// Cargo unpacks the packages it verifies against into `$CARGO_HOME/registry/src/<local registry>/` and builds them
/// in the dev profile; since a published version never changes, it reuses both on the next run, so vae-train would
/// be checked against the vae-model of an earlier run. Our crates' unpacked copies (in local, non-crates.io
/// registries) and their dev-profile fingerprints are removed first.
fn forget_unpacked_packages() -> Result<()> {
    let fingerprints = crate::cmd::target_dir().join("debug/.fingerprint");
    for entry in std::fs::read_dir(&fingerprints)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if PUBLISHED.iter().any(|p| name.starts_with(&format!("{p}-"))) {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return Ok(());
    };
    let Ok(registries) = std::fs::read_dir(&src) else {
        return Ok(());
    };
    for registry in registries.flatten() {
        if registry
            .file_name()
            .to_string_lossy()
            .starts_with("index.crates.io")
        {
            continue;
        }
        for unpacked in std::fs::read_dir(registry.path())?.flatten() {
            let name = unpacked.file_name().to_string_lossy().into_owned();
            if PUBLISHED.iter().any(|p| name.starts_with(&format!("{p}-"))) {
                std::fs::remove_dir_all(unpacked.path())?;
            }
        }
    }
    Ok(())
}
