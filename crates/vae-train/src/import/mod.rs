//! `vae-train import`: a PyTorch VAE's weights as one of our models, recognised by its tensor names.
//!
//! PyTorch files (`.pt`, `.pth`: a zip of pickles) are read by Candle's own unpickler behind our bounds
//! ([`pytorch`]), so no Python is needed and no file can take the process down.
//! Three layouts are known; each tensor keeps its values, only its name changes:
//!
//! | layout | encoder | heads | decoder |
//! |---|---|---|---|
//! | the teaching code | `img_2hid` | `hid_2mu`, `hid_2sigma` (σ itself) | `z_2hid`, `hid_2img` |
//! | pytorch/examples `vae` | `fc1` | `fc21`, `fc22` (log σ²) | `fc3`, `fc4` |
//! | ours | `encoder.hidden.{i}` | `encoder.mu`, `encoder.logvar` or `encoder.std` | `decoder.hidden.{i}`, `decoder.out` |

pub mod pytorch;
mod scan;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use vae_model::{Activation, Likelihood, ScaleHead, Vae, VaeConfig, DEFAULT_NUM_CLASSES};

/// A known naming of a one-hidden-layer VAE: its names for our encoder hidden layer, mu head, scale head, decoder
/// hidden layer and output layer, and what its scale head predicts.
struct NamedLayout {
    name: &'static str,
    layers: [&'static str; 5],
    scale_head: ScaleHead,
}

const TEACHING: NamedLayout = NamedLayout {
    name: "the teaching code's (img_2hid, hid_2mu, hid_2sigma, z_2hid, hid_2img)",
    layers: ["img_2hid", "hid_2mu", "hid_2sigma", "z_2hid", "hid_2img"],
    scale_head: ScaleHead::Std,
};

const PYTORCH_EXAMPLES: NamedLayout = NamedLayout {
    name: "pytorch/examples' (fc1, fc21, fc22, fc3, fc4)",
    layers: ["fc1", "fc21", "fc22", "fc3", "fc4"],
    scale_head: ScaleHead::Logvar,
};

/// The layouts this command knows, for the error that lists them.
const KNOWN: &str = "the teaching code's (img_2hid, hid_2mu, hid_2sigma, z_2hid, hid_2img), pytorch/examples' \
     (fc1, fc21, fc22, fc3, fc4), and ours (encoder.hidden.{i}, encoder.mu, encoder.logvar or encoder.std, \
     decoder.hidden.{i}, decoder.out)";

/// Reads `path` (`.pt`, `.pth` or `.safetensors`) and returns the model its tensors describe, on the CPU, with the
/// layout it was recognised as. `activation` is what our own layout's hidden layers apply (the names do not say);
/// the other two layouts are ReLU by definition.
pub fn import(path: &Path, activation: Activation) -> Result<(Vae, &'static str)> {
    let tensors = read_tensors(path)?;
    let (config, renamed, layout) = recognise(tensors, activation)
        .with_context(|| format!("{}: not a VAE this command knows", path.display()))?;
    let vae = Vae::from_tensors(&config, renamed, &Device::Cpu)
        .with_context(|| format!("{}: the tensors do not form a {layout} VAE", path.display()))?;
    // A model with a NaN or an infinity would be written, then refused by every command that loads it.
    for (name, t) in vae.named_tensors() {
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            anyhow::bail!(
                "{}: tensor `{name}` holds {v}; a model's weights must be finite",
                path.display()
            );
        }
    }
    Ok((vae, layout))
}

/// Every tensor of the file as f32, by name. A PyTorch file may hold the `state_dict` itself or a checkpoint dict
/// with it under `state_dict` or `model_state_dict`.
fn read_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if path.exists() && !path.is_file() {
        anyhow::bail!(
            "{}: --from must be a regular file, and this is not one",
            path.display()
        );
    }
    let tensors: Vec<(String, Tensor)> = match ext {
        "safetensors" => candle_core::safetensors::load(path, &Device::Cpu)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?
            .into_iter()
            .collect(),
        "pt" | "pth" => {
            anyhow::ensure!(path.is_file(), "{}: no such file", path.display());
            pytorch::read(path).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?
        }
        _ => bail!(
            "{}: expected a .pt, .pth or .safetensors file",
            path.display()
        ),
    };
    tensors
        .into_iter()
        .map(|(name, t)| Ok((name, t.to_dtype(DType::F32)?)))
        .collect()
}

/// The config of the VAE whose tensors these are, and the tensors under our names.
fn recognise(
    mut tensors: HashMap<String, Tensor>,
    activation: Activation,
) -> Result<(VaeConfig, HashMap<String, Tensor>, &'static str)> {
    for layout in [TEACHING, PYTORCH_EXAMPLES] {
        let [encoder, mu, ..] = layout.layers;
        if !tensors.contains_key(&format!("{encoder}.weight")) {
            continue;
        }
        let ours = [
            "encoder.hidden.0".to_string(),
            "encoder.mu".into(),
            format!("encoder.{}", layout.scale_head.name()),
            "decoder.hidden.0".into(),
            "decoder.out".into(),
        ];
        let mut renamed = HashMap::new();
        for (theirs, ours) in layout.layers.iter().zip(ours) {
            for part in ["weight", "bias"] {
                let name = format!("{theirs}.{part}");
                let t = tensors
                    .remove(&name)
                    .with_context(|| format!("{} layout without `{name}`", layout.name))?;
                renamed.insert(format!("{ours}.{part}"), t);
            }
        }
        ensure_nothing_left(&tensors, layout.name)?;
        let dims = |name: &str| renamed[&format!("{name}.weight")].dims().to_vec();
        let (w_enc, w_mu) = (dims("encoder.hidden.0"), dims("encoder.mu"));
        anyhow::ensure!(
            w_enc.len() == 2 && w_mu.len() == 2,
            "`{encoder}.weight` and `{mu}.weight` must be matrices"
        );
        let config = VaeConfig {
            input_dim: w_enc[1],
            input_shape: None,
            conv: None,
            hidden_dims: vec![w_enc[0]],
            latent_dim: w_mu[0],
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
            sigma: None,
            scale_head: layout.scale_head,
            conditional: false,
            num_classes: None,
        };
        return Ok((config, renamed, layout.name));
    }
    if tensors.contains_key("encoder.mu.weight") {
        let config = our_config(&tensors, activation)?;
        return Ok((config, tensors, "our"));
    }
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    bail!("tensors found: {names:?}; layouts known: {KNOWN}")
}

/// A file of our layout: the widths from the shapes, a conditional model where both first layers read ten more
/// inputs than the data and z have.
fn our_config(tensors: &HashMap<String, Tensor>, activation: Activation) -> Result<VaeConfig> {
    let dims = |name: &str| -> Result<Vec<usize>> {
        Ok(tensors
            .get(name)
            .with_context(|| format!("our layout without `{name}`"))?
            .dims()
            .to_vec())
    };
    let hidden: Vec<usize> = (0..)
        .map_while(|i| tensors.get(&format!("encoder.hidden.{i}.weight")))
        .map(|t| t.dims()[0])
        .collect();
    let (mu, out, first) = (
        dims("encoder.mu.weight")?,
        dims("decoder.out.weight")?,
        dims("encoder.hidden.0.weight")?,
    );
    anyhow::ensure!(
        mu.len() == 2 && out.len() == 2 && first.len() == 2,
        "our layout's weights must be matrices"
    );
    let (input_dim, latent_dim, first_in) = (out[0], mu[0], first[1]);
    let conditional = first_in == input_dim + DEFAULT_NUM_CLASSES;
    let scale_head = match tensors.contains_key("encoder.std.weight") {
        true => ScaleHead::Std,
        false => ScaleHead::Logvar,
    };
    Ok(VaeConfig {
        input_dim,
        input_shape: None,
        conv: None,
        hidden_dims: hidden,
        latent_dim,
        activation,
        likelihood: Likelihood::Bernoulli,
        sigma: None,
        scale_head,
        conditional,
        num_classes: conditional.then_some(DEFAULT_NUM_CLASSES),
    })
}

/// Refuses a file with tensors beyond the layout's: it is some other model, and dropping them would be a guess.
fn ensure_nothing_left(rest: &HashMap<String, Tensor>, layout: &str) -> Result<()> {
    let mut names: Vec<&String> = rest.keys().collect();
    names.sort();
    anyhow::ensure!(
        names.is_empty(),
        "tensors beyond {layout} layout: {names:?}"
    );
    Ok(())
}
