//! The backends chosen on this machine, kept in a JSON file that every run reads, so that runs on one machine
//! agree.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::Backend;

/// Where the choices are kept: `$VAE_GEMM_CACHE`, else `$XDG_CACHE_HOME/vae-candle/sgemm.json`, else
/// `~/.cache/vae-candle/sgemm.json` (none without a home).
pub fn cache_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VAE_GEMM_CACHE") {
        return Some(p.into());
    }
    Some(cache_dir()?.join("sgemm.json"))
}

/// This project's cache folder: `$XDG_CACHE_HOME/vae-candle`, else `~/.cache/vae-candle` (none without a home).
pub fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("vae-candle"))
}

/// The cache file: per machine (CPU model and threads), the choice for each key (a product's shape, or a training
/// step's shapes).
pub(super) type Cache = BTreeMap<String, BTreeMap<String, Backend>>;

/// This machine's key in the cache: the CPU model and the threads the products use.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            let line = c.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split(':').nth(1)?.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{cpu}, {} threads", rayon::current_num_threads())
}

/// The choice for `key` on this machine in `cache`.
fn cached(cache: &Cache, key: &str) -> Option<Backend> {
    cache.get(&machine()).and_then(|m| m.get(key).copied())
}

/// The choice recorded at `path` for `key` on this machine, if any.
pub(super) fn read(path: &Path, key: &str) -> std::io::Result<Option<Backend>> {
    with_locked_cache(path, |cache| (cached(cache, key), false))
}

/// Records `mine` for `key` unless another run recorded a choice meanwhile, which wins; returns the choice that
/// stands. A cache that cannot be written costs a warning, saying `otherwise`.
pub(super) fn record(path: &Path, key: &str, mine: Backend, otherwise: &str) -> Backend {
    let recorded = with_locked_cache(path, |cache| match cached(cache, key) {
        Some(theirs) => (theirs, false),
        None => {
            let here = cache.entry(machine()).or_default();
            here.insert(key.to_string(), mine);
            (mine, true)
        }
    });
    recorded.unwrap_or_else(|e| {
        warn_once(&format!("sgemm cache {}: {e}; {otherwise}", path.display()));
        mine
    })
}

/// Runs `f` on the cache at `path` under an exclusive lock, writing it back (atomically) when `f` says it changed.
/// A file that is not a cache is replaced, with a warning.
pub(super) fn with_locked_cache<T>(
    path: &Path,
    f: impl FnOnce(&mut Cache) -> (T, bool),
) -> std::io::Result<T> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let lock_path = path.with_extension("lock");
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    lock.lock()?;
    let mut cache: Cache = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn_once(&format!(
                "sgemm cache {}: not a cache ({e}); starting it again",
                path.display()
            ));
            Cache::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Cache::new(),
        Err(e) => return Err(e),
    };
    let (out, changed) = f(&mut cache);
    if changed {
        let text = serde_json::to_string_pretty(&cache).map_err(std::io::Error::other)?;
        vae_model::write_atomic(path, text.as_bytes())?;
    }
    Ok(out)
}

/// Logs `msg` once per process: a cache that cannot be used says so once, not at every product.
pub(super) fn warn_once(msg: &str) {
    static WARNED: OnceLock<()> = OnceLock::new();
    WARNED.get_or_init(|| tracing::warn!("{msg}"));
}
