//! The run directory: held by one run at a time, and never holding the files of two runs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// File names inside a run directory.
pub mod files {
    /// Final weights.
    pub const MODEL: &str = "model.safetensors";
    /// Resolved config.
    pub const CONFIG: &str = "config.json";
    /// Resume state.
    pub const CHECKPOINT: &str = "checkpoint.safetensors";
    /// One JSON object per epoch.
    pub const METRICS: &str = "metrics.jsonl";
    /// 8×8 prior samples.
    pub const SAMPLES: &str = "samples.png";
    /// Test digits over their reconstructions.
    pub const RECONSTRUCTIONS: &str = "reconstructions.png";
    /// For a 2-D latent space: the decoded 20×20 grid over the latent plane.
    pub const MANIFOLD: &str = "manifold.png";
    /// The loss curves of every epoch.
    pub const CURVES: &str = "curves.png";
    /// The test set's posterior means, coloured by label.
    pub const SCATTER: &str = "scatter.png";
    /// Every file a run writes.
    pub const ALL: [&str; 9] = [
        CONFIG,
        CHECKPOINT,
        METRICS,
        MODEL,
        SAMPLES,
        RECONSTRUCTIONS,
        MANIFOLD,
        CURVES,
        SCATTER,
    ];
}

/// The file that names the pid of the run holding the directory, while it runs (for the message; the lock itself is
/// on the directory).
pub const LOCK: &str = ".lock";

/// An exclusive OS lock (`flock`) on a run directory itself, released when dropped or when the process dies, so it
/// can't go stale.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    _lock: File,
}

impl RunDir {
    /// Creates the directory if needed and takes its lock, or says which process holds it.
    pub fn acquire(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("{}: cannot create run directory", path.display()))?;
        let lock = File::open(path).with_context(|| path.display().to_string())?;
        let pid_path = path.join(LOCK);
        if !locked_within(&lock, Duration::from_secs(2)) {
            let holder = std::fs::read_to_string(&pid_path).unwrap_or_default();
            let holder = if holder.trim().is_empty() {
                "unknown"
            } else {
                holder.trim()
            };
            bail!(
                "{}: another training run (pid {holder}) is using this run directory; wait for it or use another --out",
                path.display()
            );
        }
        std::fs::write(&pid_path, std::process::id().to_string())
            .with_context(|| pid_path.display().to_string())?;
        let dir = Self {
            path: path.to_path_buf(),
            _lock: lock,
        };
        dir.sweep_temporaries()?;
        Ok(dir)
    }

    /// The run directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The files of an earlier run that are present.
    pub fn existing_run_files(&self) -> Vec<&'static str> {
        files::ALL
            .into_iter()
            .filter(|f| self.path.join(f).exists())
            .collect()
    }

    /// For a fresh run: refuses a directory holding another run's files, unless `overwrite`, which removes them
    /// first, so the directory never mixes two runs.
    pub fn start_fresh(&self, overwrite: bool) -> Result<()> {
        let found = self.existing_run_files();
        if found.is_empty() {
            return Ok(());
        }
        if !overwrite {
            bail!(
                "{}: holds a run already ({}); pass --resume to continue it or --overwrite to replace it",
                self.path.display(),
                found.join(", ")
            );
        }
        for f in found {
            let p = self.path.join(f);
            std::fs::remove_file(&p).with_context(|| format!("{}: cannot remove", p.display()))?;
        }
        tracing::info!("removed the earlier run in {}", self.path.display());
        Ok(())
    }

    /// Removes the temporary files an interrupted write of ours left (`.tmp-*`); nobody else writes here while
    /// the lock is held.
    fn sweep_temporaries(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.path)
            .with_context(|| format!("{}: cannot list", self.path.display()))?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
                tracing::info!("removed stale temporary {}", entry.path().display());
            }
        }
        Ok(())
    }
}

/// Whether `lock` was taken within `wait`. A run that has just ended can leave its lock for a moment to a child
/// process another thread of the same program was starting (the child holds a copy of the handle until it runs its
/// program), as when a test resumes a run another thread just finished. A run that really holds it is refused after
/// `wait`.
fn locked_within(lock: &File, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        if lock.try_lock().is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        // Before the lock goes (with the file handle, after this), so no later holder's pid is removed.
        let _ = std::fs::remove_file(self.path.join(LOCK));
    }
}
