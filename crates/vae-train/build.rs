//! Embeds the explorer's WebAssembly module for `export-web` when `cargo xtask web` has built it (into
//! `target/web/pkg/`, or the folder `VAE_WEB_PKG` names): sets `cfg(vae_web_pkg)` and `VAE_WEB_PKG`. Without it the
//! binary builds, and `export-web` says how to get the module.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vae_web_pkg)");
    println!("cargo::rerun-if-env-changed=VAE_WEB_PKG");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let pkg = std::env::var_os("VAE_WEB_PKG")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target/web/pkg"));
    let files = ["vae_web.js", "vae_web_bg.wasm"].map(|f| pkg.join(f));
    for f in &files {
        println!("cargo::rerun-if-changed={}", f.display());
    }
    if files.iter().all(|f| f.is_file()) {
        println!("cargo::rustc-cfg=vae_web_pkg");
        println!("cargo::rustc-env=VAE_WEB_PKG={}", pkg.display());
    }
}
