//! What the vae-train test binaries share: the data directory and running the binary.
#![allow(dead_code)]

#[cfg(feature = "serve")]
pub mod browser;
pub mod torch;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The product's data directory (`$VAE_DATA_DIR`, else `data/` at the workspace root) with both datasets verified
/// in it; `cargo xtask test` downloads them there first.
pub fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("VAE_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data"));
        for d in vae_data::Dataset::IDX {
            if let Err(e) = vae_data::verify(&dir, d) {
                panic!("{e}\n(run `cargo xtask download --dataset {d}`, or `cargo xtask test`, which does)");
            }
        }
        dir
    })
}

/// Runs the `vae-train` binary (quiet logs, no mirror): its exit code, stdout and stderr.
pub fn vae_train(args: &[&str]) -> (Option<i32>, String, String) {
    vae_train_env(args, &[])
}

/// [`vae_train`] with environment variables set (`Some`) or removed (`None`).
pub fn vae_train_env(
    args: &[&str],
    env: &[(&str, Option<&OsStr>)],
) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vae-train"));
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("VAE_DATA_MIRROR");
    for (key, value) in env {
        match value {
            Some(v) => cmd.env(key, v),
            None => cmd.env_remove(key),
        };
    }
    let out = cmd.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// `vae-train train` of a small model (one hidden layer of 32 units, `latent` dimensions) for one epoch on the first
/// `images` training images, into `out`, with `extra` flags.
pub fn quick_train(
    out: &Path,
    latent: usize,
    images: usize,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    quick_train_env(out, latent, images, extra, &[])
}

/// [`quick_train`] with environment variables set or removed, as [`vae_train_env`] takes them.
pub fn quick_train_env(
    out: &Path,
    latent: usize,
    images: usize,
    extra: &[&str],
    env: &[(&str, Option<&OsStr>)],
) -> (Option<i32>, String, String) {
    let (latent, images) = (latent.to_string(), images.to_string());
    let (data, out) = (data_dir().to_str().unwrap(), out.to_str().unwrap());
    let args = [
        "train",
        "--epochs",
        "1",
        "--hidden-dims",
        "32",
        "--latent-dim",
        &latent,
        "--train-subset",
        &images,
        "--data-dir",
        data,
        "--out",
        out,
    ];
    vae_train_env(&[&args[..], extra].concat(), env)
}

/// The shipped model: MNIST, a 20-D latent space, unconditional.
pub fn shipped_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/mnist-seed.safetensors")
}

/// A small conditional model (one epoch on 1000 images, a 3-D latent space) in `dir`, with its run's metrics.
pub fn conditional_model(dir: &Path) -> PathBuf {
    let (code, _, err) = quick_train(dir, 3, 1000, &["--preset", "mnist-cvae"]);
    assert_eq!(code, Some(0), "{err}");
    dir.join("model.safetensors")
}

/// `per_class` RGB pictures of `side × side` pixels in two class folders under `root` (the ImageFolder layout of
/// `--dataset folder:`): a red square on a blue field in `red/`, the colours swapped in `blue/`, the square a
/// third of the side and placed differently in each picture.
pub fn colour_pictures(root: &Path, per_class: usize, side: u32) {
    let (red, blue) = (image::Rgb([230, 30, 20]), image::Rgb([20, 40, 220]));
    let square = side / 3;
    for (class, ink, field) in [("red", red, blue), ("blue", blue, red)] {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class as u32 {
            let (x0, y0) = (i % (side - square), (i * 7) % (side - square));
            let img = image::RgbImage::from_fn(side, side, |x, y| {
                let inside = (x0..x0 + square).contains(&x) && (y0..y0 + square).contains(&y);
                if inside {
                    ink
                } else {
                    field
                }
            });
            img.save(dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}
