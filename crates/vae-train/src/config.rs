//! Run configuration: a preset from `models/<name>.toml`, with command-line overrides applied on top.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use vae_data::{Binarize, DataSource};
use vae_model::VaeConfig;

/// The presets shipped in `models/`, built into the binary so it also runs outside the repository.
pub const BUILTIN_PRESETS: [(&str, &str); 11] = [
    ("mnist", include_str!("../presets/mnist.toml")),
    ("mnist-seed", include_str!("../presets/mnist-seed.toml")),
    (
        "fashion-mnist",
        include_str!("../presets/fashion-mnist.toml"),
    ),
    ("mnist-2d", include_str!("../presets/mnist-2d.toml")),
    ("mnist-iwae", include_str!("../presets/mnist-iwae.toml")),
    (
        "mnist-iwae-k50",
        include_str!("../presets/mnist-iwae-k50.toml"),
    ),
    ("mnist-cvae", include_str!("../presets/mnist-cvae.toml")),
    (
        "fashion-mnist-cvae",
        include_str!("../presets/fashion-mnist-cvae.toml"),
    ),
    ("mnist-conv", include_str!("../presets/mnist-conv.toml")),
    (
        "fashion-mnist-conv",
        include_str!("../presets/fashion-mnist-conv.toml"),
    ),
    ("cifar10-conv", include_str!("../presets/cifar10-conv.toml")),
];

/// How gradients are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// `fused` on the CPU, `autograd` on a GPU.
    #[default]
    Auto,
    /// Candle's autograd and our Adam on tensors: any device.
    Autograd,
    /// The hand-derived CPU step (the `fused` module): same maths, much faster on a CPU.
    Fused,
}

/// What training minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// −ELBO, with the KL weighted by `beta`.
    #[default]
    Elbo,
    /// The importance-weighted bound with `k` samples per image (Burda et al. 2016).
    Iwae,
}

/// The objective with its parameters, as the engines take it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// `recon + beta · kl`.
    Elbo {
        /// KL weight.
        beta: f64,
    },
    /// The k-sample importance-weighted bound.
    Iwae {
        /// Samples per image.
        k: usize,
    },
}

impl Loss {
    /// z samples per image per step: 1 for the ELBO, k for IWAE.
    pub fn samples(self) -> usize {
        match self {
            Loss::Elbo { .. } => 1,
            Loss::Iwae { k } => k,
        }
    }
}

/// The most samples per image `training.k` accepts: each is a decoder pass per image per step.
pub const MAX_IWAE_K: usize = 5000;

fn default_k() -> usize {
    1
}
fn is_default_k(k: &usize) -> bool {
    *k == 1
}

fn default_seed() -> u64 {
    1
}
fn default_beta() -> f64 {
    1.0
}

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Seed of the run's one RNG (init, noise, shuffling).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// KL weight β in the training objective (1 is the plain ELBO).
    #[serde(default = "default_beta")]
    pub beta: f64,
    /// Target binarisation.
    #[serde(default)]
    pub binarize: Binarize,
    /// How gradients are computed (the numbers agree to float rounding, not bit for bit).
    #[serde(default)]
    pub engine: Engine,
    /// Train on the first N training images only (for quick checks); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<usize>,
    /// What training minimises.
    #[serde(default)]
    pub objective: Objective,
    /// Importance samples per image for `objective = "iwae"`.
    #[serde(default = "default_k", skip_serializing_if = "is_default_k")]
    pub k: usize,
}

impl TrainingConfig {
    /// The objective with its parameters.
    pub fn loss(&self) -> Loss {
        match self.objective {
            Objective::Elbo => Loss::Elbo { beta: self.beta },
            Objective::Iwae => Loss::Iwae { k: self.k },
        }
    }
}

/// Everything a run needs: the resolved preset plus overrides. Written to `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The dataset: `mnist`, `fashion-mnist` or `folder:PATH` in the file.
    pub dataset: DataSource,
    /// How a folder's pictures become examples (`[data]`); absent for the built-in datasets.
    #[serde(default, skip_serializing_if = "DataConfig::is_unset")]
    pub data: DataConfig,
    /// The architecture.
    pub model: VaeConfig,
    /// The optimisation.
    pub training: TrainingConfig,
}

/// How a `folder:` dataset's pictures become examples: a preset's `[data]`, or `--image-size`, `--channels` and
/// `--test-fraction`. Training fills every field in from the folder, so `config.json` records what was used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The examples' side [default: the shorter side of the first picture].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size: Option<usize>,
    /// 1 (grey) or 3 (RGB) [default: those of the first picture].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<usize>,
    /// The share held out for testing where the folder has no `train/` and `test/` [default: 0.1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_fraction: Option<f64>,
}

impl DataConfig {
    fn is_unset(&self) -> bool {
        *self == Self::default()
    }
}

/// `` `table.key`, line N: `` for the byte offset `at` of a TOML text: the table header above it and the key on its
/// line (the key part is left out where the line holds none, as in a syntax error).
fn key_at(text: &str, at: usize) -> String {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or_default();
    let table = before
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']').map(str::trim));
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty());
    match (table, key) {
        (Some(t), Some(k)) => format!("`{t}.{k}`, line {line}: "),
        (None, Some(k)) => format!("`{k}`, line {line}: "),
        _ => format!("line {line}: "),
    }
}

/// The line of `table.key` (or a top-level `key`) in a TOML text.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = dotted.rsplit_once('.').unwrap_or(("", dotted));
    let mut current = "";
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if let Some(t) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = t.trim();
        } else if current == table && l.split_once('=').is_some_and(|(k, _)| k.trim() == key) {
            return Some(i + 1);
        }
    }
    None
}

/// Command-line values that replace the preset's (`vae-train train --epochs …`).
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct Overrides {
    /// The dataset: mnist, fashion-mnist or folder:PATH.
    #[cfg_attr(feature = "cli", arg(long))]
    pub dataset: Option<DataSource>,
    /// Passes over the training set.
    #[cfg_attr(feature = "cli", arg(long))]
    pub epochs: Option<usize>,
    /// Images per step.
    #[cfg_attr(feature = "cli", arg(long))]
    pub batch_size: Option<usize>,
    /// Adam learning rate.
    #[cfg_attr(feature = "cli", arg(long))]
    pub lr: Option<f64>,
    /// Hidden widths, e.g. 400 or 512,256.
    #[cfg_attr(feature = "cli", arg(long, value_delimiter = ','))]
    pub hidden_dims: Option<Vec<usize>>,
    /// Dimension of z.
    #[cfg_attr(feature = "cli", arg(long))]
    pub latent_dim: Option<usize>,
    /// The decoder's distribution: bernoulli, gaussian, continuous-bernoulli or logistic.
    #[cfg_attr(feature = "cli", arg(long))]
    pub likelihood: Option<vae_model::Likelihood>,
    /// A Gaussian decoder's fixed σ [default: the decoder predicts σ per value].
    #[cfg_attr(feature = "cli", arg(long))]
    pub sigma: Option<f64>,
    /// Seed of the run's one RNG.
    #[cfg_attr(feature = "cli", arg(long))]
    pub seed: Option<u64>,
    /// A folder's examples' side (pictures are resized and centre-cropped to it).
    #[cfg_attr(feature = "cli", arg(long))]
    pub image_size: Option<usize>,
    /// A folder's examples' channels: 1 (grey) or 3 (RGB).
    #[cfg_attr(feature = "cli", arg(long))]
    pub channels: Option<usize>,
    /// The share of a folder without train/ and test/ held out for testing [default: 0.1].
    #[cfg_attr(feature = "cli", arg(long))]
    pub test_fraction: Option<f64>,
    /// KL weight in the training objective.
    #[cfg_attr(feature = "cli", arg(long))]
    pub beta: Option<f64>,
    /// Target binarisation: none, static or dynamic.
    #[cfg_attr(feature = "cli", arg(long))]
    pub binarize: Option<Binarize>,
    /// Train on the first N training images only.
    #[cfg_attr(feature = "cli", arg(long))]
    pub train_subset: Option<usize>,
    /// How gradients are computed [default: the preset's, normally auto: fused on CPU, autograd on GPU].
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub engine: Option<Engine>,
    /// What training minimises: elbo or iwae.
    #[cfg_attr(feature = "cli", arg(long, value_enum))]
    pub objective: Option<Objective>,
    /// Importance samples per image (with --objective iwae).
    #[cfg_attr(feature = "cli", arg(long))]
    pub k: Option<usize>,
}

impl RunConfig {
    /// Parses a preset's TOML; `origin` names it in errors, which also name the key and its line.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let mut cfg: RunConfig = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| key_at(text, span.start))
                .unwrap_or_default();
            anyhow::anyhow!("{origin}: {at}{}", e.message().trim().replace('\n', "; "))
        })?;
        // A conditional model has as many classes as its dataset, recorded so that its file says so.
        if let (true, None, Some(d)) = (
            cfg.model.conditional,
            cfg.model.num_classes,
            cfg.dataset.builtin(),
        ) {
            cfg.model.num_classes = Some(d.class_names().len());
        }
        cfg.validate().map_err(|e| {
            let msg = format!("{e:#}");
            // Validation messages start with the key they are about, e.g. `training.epochs must be …`.
            let key = msg.split_whitespace().next().unwrap_or_default();
            match line_of_key(text, key) {
                Some(line) => anyhow::anyhow!("{origin}: line {line}: {msg}"),
                None => anyhow::anyhow!("{origin}: {msg}"),
            }
        })?;
        Ok(cfg)
    }

    /// Finds a preset: a path to a `.toml` file, else `<models_dir>/<name>.toml`, else a built-in preset.
    pub fn load_preset(name: &str, models_dir: &Path) -> Result<(Self, PathBuf)> {
        let as_path = PathBuf::from(name);
        let is_path = as_path.extension().is_some_and(|e| e == "toml") || name.contains('/');
        let path = if is_path {
            as_path
        } else {
            models_dir.join(format!("{name}.toml"))
        };
        if is_path || path.is_file() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("{}: cannot read preset", path.display()))?;
            return Ok((Self::from_toml(&text, &path.display().to_string())?, path));
        }
        match BUILTIN_PRESETS.iter().find(|(n, _)| *n == name) {
            Some((n, text)) => Ok((
                Self::from_toml(text, &format!("built-in preset {n}"))?,
                PathBuf::from(format!("models/{n}.toml")),
            )),
            None => {
                let known: Vec<&str> = BUILTIN_PRESETS.iter().map(|(n, _)| *n).collect();
                bail!(
                    "unknown preset `{name}`: no {} and no built-in preset of that name (built-in: {})",
                    path.display(),
                    known.join(", ")
                )
            }
        }
    }

    /// Applies command-line overrides, then re-validates.
    pub fn apply(mut self, o: &Overrides) -> Result<Self> {
        let t = &mut self.training;
        t.epochs = o.epochs.unwrap_or(t.epochs);
        t.batch_size = o.batch_size.unwrap_or(t.batch_size);
        t.lr = o.lr.unwrap_or(t.lr);
        t.seed = o.seed.unwrap_or(t.seed);
        t.beta = o.beta.unwrap_or(t.beta);
        t.binarize = o.binarize.unwrap_or(t.binarize);
        t.train_subset = o.train_subset.or(t.train_subset);
        t.engine = o.engine.unwrap_or(t.engine);
        t.objective = o.objective.unwrap_or(t.objective);
        t.k = o.k.unwrap_or(t.k);
        if let Some(source) = &o.dataset {
            self.dataset = source.clone();
            // A conditional model has its dataset's classes: a built-in one's now, a folder's once read.
            if self.model.conditional {
                self.model.num_classes = source.builtin().map(|d| d.class_names().len());
            }
        }
        let d = &mut self.data;
        d.image_size = o.image_size.or(d.image_size);
        d.channels = o.channels.or(d.channels);
        d.test_fraction = o.test_fraction.or(d.test_fraction);
        if let Some(h) = &o.hidden_dims {
            self.model.hidden_dims = h.clone();
        }
        self.model.latent_dim = o.latent_dim.unwrap_or(self.model.latent_dim);
        if let Some(likelihood) = o.likelihood {
            self.model.likelihood = likelihood;
            // A preset's σ belongs to its Gaussian; another likelihood has none.
            if likelihood != vae_model::Likelihood::Gaussian {
                self.model.sigma = None;
            }
        }
        self.model.sigma = o.sigma.or(self.model.sigma);
        self.validate().context("invalid command-line override")?;
        Ok(self)
    }

    /// Checks every value is in range.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.validate_data()?;
        let t = &self.training;
        if t.epochs == 0 {
            bail!("training.epochs must be at least 1");
        }
        if t.batch_size == 0 {
            bail!("training.batch_size must be at least 1");
        }
        if !(t.lr.is_finite() && t.lr > 0.0 && t.lr < 1.0) {
            bail!("training.lr must be in (0, 1), got {}", t.lr);
        }
        if !(t.beta.is_finite() && t.beta >= 0.0) {
            bail!("training.beta must be a finite number >= 0, got {}", t.beta);
        }
        if t.train_subset == Some(0) {
            bail!("training.train_subset must be at least 1");
        }
        if !(1..=MAX_IWAE_K).contains(&t.k) {
            bail!("training.k must be in 1..={MAX_IWAE_K}, got {}", t.k);
        }
        match t.objective {
            Objective::Elbo if t.k != 1 => {
                bail!(
                    "training.k = {} needs objective = \"iwae\" (the ELBO takes one sample)",
                    t.k
                )
            }
            Objective::Iwae if t.beta != 1.0 => {
                bail!(
                    "training.beta = {} applies to the ELBO only, not objective = \"iwae\"",
                    t.beta
                )
            }
            _ => {}
        }
        Ok(())
    }

    /// The dataset's side of [`RunConfig::validate`]: a built-in dataset's classes, a folder's `[data]`.
    fn validate_data(&self) -> Result<()> {
        let d = &self.data;
        if let (DataSource::Arrays(_), true) = (
            &self.dataset,
            d.image_size.is_some() || d.channels.is_some(),
        ) {
            bail!("data.image_size and data.channels apply to folder: datasets; an array's examples keep their shape");
        }
        let Some(builtin) = self.dataset.builtin() else {
            if let Some(f) = d.test_fraction.filter(|f| !(*f > 0.0 && *f < 1.0)) {
                bail!("data.test_fraction must be in (0, 1), got {f}");
            }
            if let Some(c) = d.channels.filter(|c| *c != 1 && *c != 3) {
                bail!("data.channels must be 1 (grey) or 3 (RGB), got {c}");
            }
            if let Some(s) = d
                .image_size
                .filter(|s| !(1..=vae_data::MAX_SIDE as usize).contains(s))
            {
                bail!(
                    "data.image_size must be in 1-{}, got {s}",
                    vae_data::MAX_SIDE
                );
            }
            return Ok(());
        };
        if !d.is_unset() {
            bail!("data (image_size, channels, test_fraction) applies to folder: datasets, not {builtin}, whose examples are as published");
        }
        let classes = builtin.class_names().len();
        if self.model.conditional && self.model.label_dim() != classes {
            bail!(
                "model.num_classes is {} but {builtin} has {classes} classes",
                self.model.label_dim(),
            );
        }
        Ok(())
    }

    /// Whether a checkpoint written under `other` can be resumed under `self`: everything but the epoch count
    /// must match.
    pub fn resumable_from(&self, other: &RunConfig) -> bool {
        let mut a = self.clone();
        a.training.epochs = other.training.epochs;
        a == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_presets_parse_and_match_the_design() {
        let get = |n: &str| {
            RunConfig::load_preset(n, Path::new("/nonexistent"))
                .unwrap()
                .0
        };
        let m = get("mnist");
        assert_eq!(
            (m.model.hidden_dims.clone(), m.model.latent_dim),
            (vec![400], 20)
        );
        assert_eq!(
            (
                m.training.batch_size,
                m.training.epochs,
                m.training.lr,
                m.training.seed
            ),
            (128, 10, 1e-3, 1)
        );
        let s = get("mnist-seed");
        assert_eq!(
            (
                s.model.hidden_dims.clone(),
                s.training.batch_size,
                s.training.lr
            ),
            (vec![200], 32, 3e-4)
        );
        assert_eq!(
            get("fashion-mnist").dataset,
            vae_data::Dataset::FashionMnist.into()
        );
        let d = get("mnist-2d");
        assert_eq!((d.model.latent_dim, d.training.epochs), (2, 20));
        let iwae = get("mnist-iwae");
        assert_eq!(
            (iwae.model.hidden_dims.clone(), iwae.model.latent_dim),
            (vec![200, 200], 50)
        );
        assert_eq!(iwae.model.activation, vae_model::Activation::Tanh);
        assert_eq!(
            (iwae.training.binarize, iwae.training.batch_size),
            (Binarize::Dynamic, 100)
        );
        assert_eq!(iwae.training.loss(), Loss::Elbo { beta: 1.0 });
        let k50 = get("mnist-iwae-k50");
        assert_eq!(k50.training.loss(), Loss::Iwae { k: 50 });
        assert_eq!(k50.model, iwae.model);
        let cvae = get("mnist-cvae");
        assert!(cvae.model.conditional);
        assert_eq!(cvae.model.latent_dim, 4);
        // Resolved with the dataset's ten classes, so that the model file records them.
        assert_eq!(cvae.model.num_classes, Some(10));
        let plain = vae_model::VaeConfig {
            conditional: false,
            num_classes: None,
            latent_dim: 20,
            ..cvae.model.clone()
        };
        assert_eq!(
            (plain, cvae.training.clone()),
            (m.model.clone(), m.training.clone())
        );
        let fashion = get("fashion-mnist-cvae");
        assert_eq!(
            (fashion.dataset, &fashion.model),
            (
                vae_data::DataSource::Builtin(vae_data::Dataset::FashionMnist),
                &cvae.model
            )
        );
    }

    #[test]
    fn the_conv_presets_are_the_issues_nets() {
        let get = |n: &str| {
            RunConfig::load_preset(n, Path::new("/nonexistent"))
                .unwrap()
                .0
        };
        let conv = get("mnist-conv");
        assert_eq!(conv.model.num_parameters(), 1_700_609);
        assert_eq!(
            (
                conv.training.batch_size,
                conv.training.lr,
                conv.training.epochs
            ),
            (128, 1e-3, 10)
        );
        let fashion = get("fashion-mnist-conv");
        assert_eq!(
            (&fashion.model, &fashion.training),
            (&conv.model, &conv.training)
        );
        assert_eq!(fashion.dataset, vae_data::Dataset::FashionMnist.into());
        let cifar = get("cifar10-conv");
        assert_eq!(cifar.dataset, vae_data::Dataset::Cifar10.into());
        assert_eq!(
            (cifar.model.likelihood, cifar.model.latent_dim),
            (vae_model::Likelihood::Logistic, 128)
        );
        assert_eq!(cifar.model.plan().out.weight_shape(), [32, 6, 3, 3]);
        // A conv model's unknown key is named, as any other.
        let text = BUILTIN_PRESETS
            .iter()
            .find(|(n, _)| *n == "mnist-conv")
            .unwrap()
            .1;
        let err = RunConfig::from_toml(
            &text.replace("padding = 1", "padding = 1, dilation = 2"),
            "c.toml",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("dilation"), "{err:#}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let base = BUILTIN_PRESETS[0].1;
        let err = RunConfig::from_toml(
            &base.replace("lr = 1e-3", "lr = 1e-3\nmomentum = 0.9"),
            "x.toml",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("momentum"), "{err:#}");
        let err =
            RunConfig::from_toml(&base.replace("lr = 1e-3", "lr = -1"), "x.toml").unwrap_err();
        assert!(format!("{err:#}").contains("training.lr"), "{err:#}");
        let err =
            RunConfig::from_toml(&base.replace("epochs = 10", "epochs = 0"), "x.toml").unwrap_err();
        assert!(
            format!("{err:#}").contains("x.toml") && format!("{err:#}").contains("epochs"),
            "{err:#}"
        );
        let err =
            RunConfig::from_toml(&base.replace("\"mnist\"", "\"cifar\""), "x.toml").unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown dataset `cifar`"),
            "{err:#}"
        );
        let err = RunConfig::from_toml(
            &base.replace("hidden_dims = [400]", "hidden_dims = []"),
            "x.toml",
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("hidden layer"), "{err:#}");
        let err = RunConfig::load_preset("nope", Path::new("models")).unwrap_err();
        assert!(err.to_string().contains("unknown preset `nope`"), "{err}");
        let with = |extra: &str| {
            let text = base.replace("seed = 1", &format!("seed = 1\n{extra}"));
            RunConfig::from_toml(&text, "x.toml").map_err(|e| format!("{e:#}"))
        };
        let e = with("objective = \"iwae\"\nk = 0").unwrap_err();
        assert!(e.contains("training.k must be in 1..=5000, got 0"), "{e}");
        let e = with("k = 50").unwrap_err();
        assert!(
            e.contains("training.k = 50 needs objective = \"iwae\""),
            "{e}"
        );
        let e = with("objective = \"iwae\"\nk = 5\nbeta = 0.5").unwrap_err();
        assert!(
            e.contains("training.beta = 0.5 applies to the ELBO only"),
            "{e}"
        );
        let e = with("objective = \"iwea\"").unwrap_err();
        assert!(
            e.contains("`training.objective`") && e.contains("iwea"),
            "{e}"
        );
        let ok = with("objective = \"iwae\"\nk = 5").unwrap();
        assert_eq!(ok.training.loss(), Loss::Iwae { k: 5 });
    }

    #[test]
    fn preset_errors_name_the_key_and_its_line() {
        let base = BUILTIN_PRESETS[0].1;
        let line = |key: &str| {
            base.lines()
                .position(|l| l.trim_start().starts_with(key))
                .unwrap()
                + 1
        };
        let err = |text: &str| format!("{:#}", RunConfig::from_toml(text, "x.toml").unwrap_err());
        let e = err(&base.replace("epochs = 10", "epochs = \"ten\""));
        assert!(
            e.contains(&format!("`training.epochs`, line {}", line("epochs"))),
            "{e}"
        );
        let e = err(&base.replace("epochs = 10", "epochs = 0"));
        assert!(
            e.contains(&format!("line {}: training.epochs", line("epochs"))),
            "{e}"
        );
        let e = err(&base.replace("lr = 1e-3", "lr = = 1"));
        assert!(e.contains(&format!("line {}", line("lr"))), "{e}");
        assert!(!e.contains('\n'), "{e}");
        let e = format!(
            "{:#}",
            RunConfig::load_preset("gone.toml", Path::new("models")).unwrap_err()
        );
        assert!(
            e.starts_with("gone.toml: cannot read preset") && !e.contains(".toml.toml"),
            "{e}"
        );
    }

    #[test]
    fn overrides_apply_and_are_validated() {
        let m = RunConfig::from_toml(BUILTIN_PRESETS[0].1, "mnist").unwrap();
        let o = Overrides {
            epochs: Some(2),
            hidden_dims: Some(vec![64, 32]),
            lr: Some(0.01),
            ..Default::default()
        };
        let r = m.clone().apply(&o).unwrap();
        assert_eq!(
            (
                r.training.epochs,
                r.model.hidden_dims.clone(),
                r.training.lr
            ),
            (2, vec![64, 32], 0.01)
        );
        assert!(r.resumable_from(&RunConfig {
            training: TrainingConfig {
                epochs: 7,
                ..r.training.clone()
            },
            ..r.clone()
        }));
        assert!(!r.resumable_from(&m));
        assert!(m
            .apply(&Overrides {
                batch_size: Some(0),
                ..Default::default()
            })
            .is_err());
    }
}
