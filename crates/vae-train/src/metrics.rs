//! A step's loss terms, and `metrics.jsonl`: one line of numbers per finished epoch, the run's history that the
//! charts, the explorer and resumed runs read back.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Per-image averages of one step's loss terms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTerms {
    /// The objective: `recon + β kl` for the ELBO, the k-sample bound for IWAE.
    pub loss: f64,
    /// Reconstruction term (BCE; averaged over the samples for IWAE).
    pub recon: f64,
    /// KL term (for IWAE, the samples' average of log q(z|x) − log p(z)).
    pub kl: f64,
}

/// One line of `metrics.jsonl` (nats per image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training objective over the epoch's steps (with β), as the model changed.
    pub train_loss: f64,
    /// Mean training reconstruction term.
    pub train_recon: f64,
    /// Mean training KL term.
    pub train_kl: f64,
    /// Test −ELBO after the epoch.
    pub test_loss: f64,
    /// Test reconstruction term.
    pub test_recon: f64,
    /// Test KL term.
    pub test_kl: f64,
    /// Seconds spent on training steps only (no evaluation, no I/O).
    pub epoch_s: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

/// Reads `metrics.jsonl` (empty when absent).
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{}: line {}", path.display(), i + 1))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| path.display().to_string()),
    }
}

/// Replaces `metrics.jsonl` with `history`, atomically.
pub fn rewrite_metrics(path: &Path, history: &[EpochMetrics]) -> Result<()> {
    let mut text = String::new();
    for m in history {
        text.push_str(&serde_json::to_string(m)?);
        text.push('\n');
    }
    vae_model::write_atomic(path, text.as_bytes())
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Appends one epoch's line to `metrics.jsonl`.
pub fn append_metrics(path: &Path, m: &EpochMetrics) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .with_context(|| path.display().to_string())?;
    writeln!(f, "{}", serde_json::to_string(m)?).with_context(|| path.display().to_string())
}
