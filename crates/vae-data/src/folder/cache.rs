//! The decoded examples of a folder, kept under the data directory so that the next run starts at once.
//!
//! A cache file is named by a SHA-256 over every picture's path, size, modification time, label and split and the
//! settings, so a changed folder or setting is a different file and never a stale one. It is written atomically
//! (nothing half-written stays); one that cannot be read is decoded again, and one that cannot be written is
//! only a warning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use sha2::{Digest, Sha256};

use super::scan::Scan;
use super::Decoded;
use crate::Result;

/// Changes whenever the decoding does, so older caches are not read.
const VERSION: &str = "vae-folder-cache/1";

/// The cache file for these files and settings.
fn path(cache_dir: &Path, scan: &Scan, size: usize, channels: usize) -> PathBuf {
    let mut h = Sha256::new();
    h.update(format!(
        "{VERSION}\n{size}\n{channels}\n{}\n",
        scan.has_split
    ));
    for f in &scan.files {
        h.update(format!(
            "{}\t{}\t{}\t{}\t{}\n",
            f.relative, f.bytes, f.mtime_ns, f.label, f.test
        ));
    }
    let key = hex::encode(&h.finalize()[..16]);
    cache_dir.join(format!("folder-{key}.safetensors"))
}

/// The cached decode, if there is one that reads back whole.
pub(crate) fn read(
    cache_dir: &Path,
    scan: &Scan,
    size: usize,
    channels: usize,
) -> Result<Option<Decoded>> {
    let path = path(cache_dir, scan, size, channels);
    let started = std::time::Instant::now();
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    match parse(&bytes, scan.files.len(), channels * size * size) {
        Some(d) => {
            tracing::info!(
                "{}: {} examples from the cache in {:.2} s",
                path.display(),
                d.kept.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(Some(d))
        }
        None => {
            tracing::warn!("{}: unreadable cache; decoding again", path.display());
            Ok(None)
        }
    }
}

fn parse(bytes: &[u8], files: usize, dim: usize) -> Option<Decoded> {
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu).ok()?;
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    let md = header.metadata().as_ref()?;
    let pixels = tensors
        .get("pixels")?
        .flatten_all()
        .ok()?
        .to_vec1::<u8>()
        .ok()?;
    let kept: Vec<usize> = tensors
        .get("kept")?
        .to_vec1::<u32>()
        .ok()?
        .into_iter()
        .map(|i| i as usize)
        .collect();
    let skipped: Vec<String> = serde_json::from_str(md.get("skipped")?).ok()?;
    let skipped_count: usize = md.get("skipped_count")?.parse().ok()?;
    let whole = pixels.len() == kept.len() * dim
        && kept.iter().all(|&i| i < files)
        && kept.len() + skipped_count == files;
    whole.then_some(Decoded {
        pixels,
        kept,
        skipped,
        skipped_count,
    })
}

/// Keeps `d` for the next run; a failure is logged, not returned, since the examples are in hand.
pub(crate) fn write(
    cache_dir: &Path,
    scan: &Scan,
    size: usize,
    channels: usize,
    d: &Decoded,
) -> Result<()> {
    let path = path(cache_dir, scan, size, channels);
    let dim = channels * size * size;
    let kept: Vec<u32> = d.kept.iter().map(|&i| i as u32).collect();
    let tensors = vec![
        (
            "pixels".to_string(),
            Tensor::from_slice(&d.pixels, (d.kept.len(), dim), &Device::Cpu)?,
        ),
        (
            "kept".to_string(),
            Tensor::from_vec(kept, d.kept.len(), &Device::Cpu)?,
        ),
    ];
    let metadata = BTreeMap::from([
        (
            "skipped".to_string(),
            serde_json::to_string(&d.skipped).expect("strings"),
        ),
        ("skipped_count".to_string(), d.skipped_count.to_string()),
    ]);
    let written = std::fs::create_dir_all(cache_dir)
        .map_err(|e| e.to_string())
        .and_then(|()| vae_model::safetensors_bytes(tensors, &metadata).map_err(|e| e.to_string()))
        .and_then(|bytes| vae_model::write_atomic(&path, &bytes).map_err(|e| e.to_string()));
    if let Err(e) = written {
        tracing::warn!("{}: not cached ({e})", path.display());
    }
    Ok(())
}
