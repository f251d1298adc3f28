//! Tensors as `.npy` files, for NumPy and other tools to read.

use std::path::Path;

use anyhow::Result;
use candle_core::Tensor;

/// `t` as a `.npy` file at `path`, which is replaced only once the whole file is written.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fail = |e: &dyn std::fmt::Display| anyhow::anyhow!("{}: cannot write: {e}", path.display());
    let (_pending, tmp) = vae_model::Pending::create(|| {
        vae_model::temp_file_builder()
            .suffix(".npy")
            .tempfile_in(dir)
    })
    .map_err(|e| fail(&e))?;
    t.to_device(&candle_core::Device::Cpu)?
        .write_npy(tmp.path())
        .map_err(|e| fail(&e))?;
    tmp.persist(path).map_err(|e| fail(&e.error))?;
    Ok(())
}
