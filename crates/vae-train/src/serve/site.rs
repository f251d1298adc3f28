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
    match (holds_something, overwrite) {
        (false, _) => Ok(()),
        (true, false) => bail!(
            "{}: not empty; give --overwrite to replace a site export-web wrote, or a new folder",
            out.display()
        ),
        (true, true) if is_site(out) => Ok(()),
        (true, true) => bail!(
            "{}: holds files and no site.json of export-web; --overwrite replaces only a site it wrote",
            out.display()
        ),
    }
}

/// Whether `dir` holds a site [`export_site`] wrote (its `site.json`).
fn is_site(dir: &Path) -> bool {
    std::fs::read(dir.join("site.json")).is_ok_and(|b| b == SITE_JSON)
}

/// What tells the page it is a static site, and [`is_site`] that a folder is one.
const SITE_JSON: &[u8] = br#"{"backend": "wasm", "model": "model.safetensors"}"#;

/// Writes the site of `explorer`, whose model file holds `model_bytes`, into `out` (a symlink's target): built whole
/// in a temporary folder beside it, then put in place (see `place`). Returns the files written.
pub fn export_site(
    explorer: &Explorer,
    model_bytes: &[u8],
    out: &Path,
    overwrite: bool,
) -> Result<usize> {
    let out = &match out.is_symlink() {
        true => out
            .canonicalize()
            .with_context(|| out.display().to_string())?,
        false => out.to_path_buf(),
    };
    check_out(out, overwrite)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)
        .with_context(|| format!("{}: cannot create the folder", parent.display()))?;
    // A signal removes it: the new site before it is placed, the old one after the swap.
    let (_pending, tmp) = vae_model::Pending::create(|| {
        tempfile::Builder::new()
            .prefix(".export-web-")
            .tempdir_in(parent)
    })
    .map_err(|e| anyhow::anyhow!("{}: cannot write there ({})", parent.display(), e.kind()))?;
    let written = write_files(explorer, model_bytes, tmp.path())?;
    place(tmp.path(), out, overwrite)?;
    Ok(written)
}

/// Puts the finished site `tmp` at `out`. Onto nothing or an empty folder, a plain rename, which fails where `out`
/// holds anything (so no run replaces another's site unasked). With `overwrite`, `out` still a site, the two
/// folders swap in one step, and the old site, now at `tmp`, goes when `tmp` does: `out` is never missing.
fn place(tmp: &Path, out: &Path, overwrite: bool) -> Result<()> {
    let err = match std::fs::rename(tmp, out) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if !overwrite || !out.is_dir() {
        return Err(err).with_context(|| format!("{}: cannot put the site there", out.display()));
    }
    check_out(out, true)?;
    exchange(tmp, out).with_context(|| format!("{}: cannot replace", out.display()))
}

/// Swaps two folders atomically (`renameat2` with `RENAME_EXCHANGE`).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths for the duration of the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    match r {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Swaps two folders by three renames, where no atomic swap is at hand: `b` is missing for a moment.
#[cfg(not(target_os = "linux"))]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let aside = a.with_extension("old");
    std::fs::rename(b, &aside)?;
    if let Err(e) = std::fs::rename(a, b) {
        let _ = std::fs::rename(&aside, b);
        return Err(e);
    }
    std::fs::rename(&aside, a)
}

/// The site's files into `dir`.
fn write_files(explorer: &Explorer, model_bytes: &[u8], dir: &Path) -> Result<usize> {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("index.html".into(), INDEX_HTML.into()),
        ("explorer.js".into(), EXPLORER_JS.into()),
        ("explorer.css".into(), EXPLORER_CSS.into()),
        ("site.json".into(), SITE_JSON.to_vec()),
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
