//! `checkpoint.safetensors`: weights, Adam moments and step, epoch, RNG position and the run config, written
//! atomically every epoch so `--resume` continues exactly where the run stopped.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use vae_model::{RngState, VaeRng};

use crate::RunConfig;

/// The `format` value of a checkpoint.
pub const CHECKPOINT_FORMAT: &str = "vae-candle-checkpoint/1";

/// What a checkpoint restores.
#[derive(Debug)]
pub struct Checkpoint {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// The run's RNG, positioned after the last completed epoch.
    pub rng: RngState,
    /// The config the run was started with.
    pub config: RunConfig,
    /// `model.<name>` and `adam.{m,v}.<name>` tensors.
    pub tensors: HashMap<String, Tensor>,
}

/// Writes a checkpoint (temp file, fsync, rename).
pub fn save(
    path: &Path,
    cfg: &RunConfig,
    epoch: usize,
    step: u64,
    params: &[(String, candle_core::Var)],
    adam_state: Vec<(String, Tensor)>,
    rng: &VaeRng,
) -> Result<()> {
    let state = rng.state();
    let mut md = HashMap::new();
    md.insert("format".to_string(), CHECKPOINT_FORMAT.to_string());
    md.insert("config".to_string(), serde_json::to_string(cfg)?);
    md.insert("epoch".to_string(), epoch.to_string());
    md.insert("step".to_string(), step.to_string());
    md.insert(
        "rng_seed".to_string(),
        state.seed.iter().map(|b| format!("{b:02x}")).collect(),
    );
    md.insert("rng_stream".to_string(), state.stream.to_string());
    md.insert("rng_word_pos".to_string(), state.word_pos.to_string());
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for (name, var) in params {
        tensors.push((
            format!("model.{name}"),
            var.as_tensor().to_device(&Device::Cpu)?,
        ));
    }
    for (name, t) in adam_state {
        tensors.push((format!("adam.{name}"), t.to_device(&Device::Cpu)?));
    }
    let bytes = safetensors::serialize(tensors, Some(md))
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    vae_model::write_atomic(path, &bytes)
        .with_context(|| format!("{}: cannot write checkpoint", path.display()))
}

/// Reads a checkpoint; every problem is reported against the file.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let ctx = || path.display().to_string();
    let bytes = std::fs::read(path).with_context(ctx)?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow!("{}: not a checkpoint ({e})", path.display()))?;
    let md = meta.metadata().clone().unwrap_or_default();
    let get = |k: &str| {
        md.get(k).ok_or_else(|| {
            anyhow!(
                "{}: not a checkpoint (no `{k}` in metadata)",
                path.display()
            )
        })
    };
    if get("format")? != CHECKPOINT_FORMAT {
        bail!(
            "{}: unknown checkpoint format {:?} (expected {CHECKPOINT_FORMAT:?})",
            path.display(),
            get("format")?
        );
    }
    let config: RunConfig =
        serde_json::from_str(get("config")?).with_context(|| format!("{}: bad config", ctx()))?;
    let num = |k: &str| -> Result<u128> {
        get(k)?
            .parse()
            .map_err(|_| anyhow!("{}: bad `{k}`", path.display()))
    };
    let hex = get("rng_seed")?;
    let seed_bytes: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| anyhow!("{}: bad `rng_seed`", path.display()))?;
    let seed: [u8; 32] = seed_bytes
        .try_into()
        .map_err(|_| anyhow!("{}: bad `rng_seed`", path.display()))?;
    let rng = RngState {
        seed,
        stream: num("rng_stream")? as u64,
        word_pos: num("rng_word_pos")?,
    };
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| anyhow!("{}: corrupt checkpoint ({e})", path.display()))?;
    for (name, t) in &tensors {
        if t.dtype() != DType::F32 {
            bail!(
                "{}: tensor `{name}` is {:?}, expected F32",
                path.display(),
                t.dtype()
            );
        }
    }
    Ok(Checkpoint {
        epoch: num("epoch")? as usize,
        step: num("step")? as u64,
        rng,
        config,
        tensors,
    })
}
