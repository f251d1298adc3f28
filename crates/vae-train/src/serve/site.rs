//! `vae-train export-web`: the explorer as a static site. The same page as `serve`, with its GET routes written
//! as files under `api/` and its POST calls answered in the browser by the WebAssembly module ([`vae_web`]).

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::api::{test_image_of, Explorer};
use super::{EXPLORER_CSS, EXPLORER_JS, INDEX_HTML};

/// Test images the site carries for the morph (the server has the whole test set).
pub const SITE_TEST_IMAGES: usize = 100;

/// The module's files (`vae_web.js`, `vae_web_bg.wasm`) as `cargo xtask web` built them, when this binary has
/// them.
#[cfg(vae_web_pkg)]
const MODULE: Option<[(&str, &[u8]); 2]> = Some([
    (
        "vae_web.js",
        include_bytes!(concat!(env!("VAE_WEB_PKG"), "/vae_web.js")),
    ),
    (
        "vae_web_bg.wasm",
        include_bytes!(concat!(env!("VAE_WEB_PKG"), "/vae_web_bg.wasm")),
    ),
]);
#[cfg(not(vae_web_pkg))]
const MODULE: Option<[(&str, &[u8]); 2]> = None;

/// Whether this binary carries the WebAssembly module.
pub fn has_module() -> bool {
    MODULE.is_some()
}

/// Refuses an `out` that holds anything, unless `overwrite`; what [`export_site`] checks first, for a caller to
/// check before it loads anything.
pub fn check_out(out: &Path, overwrite: bool) -> Result<()> {
    let Some(_) = MODULE else {
        bail!(
            "this vae-train was built without the explorer's WebAssembly module: run `cargo xtask web` \
             (or `cargo xtask build`), then build vae-train again"
        );
    };
    let holds_something = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(_) if out.exists() => bail!("{}: is not a folder", out.display()),
        Err(_) => false,
    };
    if holds_something && !overwrite {
        bail!(
            "{}: not empty; give --overwrite to replace it, or a new folder",
            out.display()
        );
    }
    Ok(())
}

/// Writes the site of `explorer`, whose model file holds `model_bytes`, into `out`: built whole in a temporary
/// folder beside it, then renamed into place (replacing what `out` held only then). Returns the files written.
pub fn export_site(
    explorer: &Explorer,
    model_bytes: &[u8],
    out: &Path,
    overwrite: bool,
) -> Result<usize> {
    check_out(out, overwrite)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)
        .with_context(|| format!("{}: cannot create the folder", parent.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".export-web-")
        .tempdir_in(parent)
        .map_err(|e| anyhow::anyhow!("{}: cannot write there ({})", parent.display(), e.kind()))?;
    let _pending = vae_model::Pending::new(tmp.path());
    let written = write_files(explorer, model_bytes, tmp.path())?;
    let old = out.with_file_name(format!(
        ".{}.replaced-{}",
        out.file_name()
            .map_or("site".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    if out.exists() {
        std::fs::rename(out, &old).with_context(|| format!("{}: cannot replace", out.display()))?;
    }
    let tmp = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp, out) {
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::rename(&old, out);
        return Err(e).with_context(|| format!("{}: cannot write", out.display()));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(written)
}

/// The site's files into `dir`.
fn write_files(explorer: &Explorer, model_bytes: &[u8], dir: &Path) -> Result<usize> {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("index.html".into(), INDEX_HTML.into()),
        ("explorer.js".into(), EXPLORER_JS.into()),
        ("explorer.css".into(), EXPLORER_CSS.into()),
        (
            "site.json".into(),
            br#"{"backend": "wasm", "model": "model.safetensors"}"#.to_vec(),
        ),
        ("model.safetensors".into(), model_bytes.to_vec()),
    ];
    for (name, bytes) in MODULE.into_iter().flatten() {
        files.push((name.into(), bytes.to_vec()));
    }
    let tests = explorer
        .test()
        .map_or(0, |d| d.test_images.dims()[0].min(SITE_TEST_IMAGES));
    let mut info = explorer.info().clone();
    info.test_images = tests;
    files.push(("api/model".into(), serde_json::to_vec(&info)?));
    let [plane_png, curves_png] = explorer.pngs();
    if let Some(png) = plane_png {
        let layout = explorer.plane_layout().map_err(|e| anyhow::anyhow!(e.1))?;
        files.push(("api/plane".into(), serde_json::to_vec(&layout)?));
        files.push(("api/plane.png".into(), png.to_vec()));
    }
    if let Some(png) = curves_png {
        files.push(("api/curves.png".into(), png.to_vec()));
    }
    if let Some(data) = explorer.test() {
        for i in 0..tests {
            let image = test_image_of(data, i).map_err(|e| anyhow::anyhow!(e.1))?;
            files.push((format!("api/test/{i}"), serde_json::to_vec(&image)?));
        }
    }
    std::fs::create_dir_all(dir.join("api/test"))?;
    for (name, bytes) in &files {
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(files.len())
}
