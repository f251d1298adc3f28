//! A variational auto-encoder (Kingma & Welling, *Auto-Encoding Variational Bayes*, 2014) on Candle.
//!
//! The encoder maps an image x to a diagonal Gaussian q(z|x) = N(mu, exp(logvar)). The reparameterisation trick
//! draws z = mu + σ·ε with ε ~ N(0, I), so the sample is differentiable in mu and logvar. The decoder maps z to one
//! Bernoulli logit per pixel. Training minimises −ELBO = BCE reconstruction + KL(q(z|x) ‖ N(0, I)), in nats per image.
//!
//! All randomness comes from [`VaeRng`], because Candle's CPU generator cannot be seeded.
//!
//! Why each piece is what it is (the two heads of the encoder, reparameterisation, binary cross-entropy, the KL
//! term, the gap between the ELBO and log p(x)) is answered next to these functions, with measured figures, in the
//! repository's `docs/concepts.md`.
//!
//! ```
//! use candle_core::Device;
//! use vae_model::{elbo, Vae, VaeConfig, VaeRng};
//!
//! let device = Device::Cpu;
//! let mut rng = VaeRng::seed_from(1);
//! let cfg = VaeConfig { hidden_dims: vec![32], latent_dim: 4, ..VaeConfig::mnist() };
//! let (vae, _params) = Vae::init(&cfg, &mut rng, &device)?;
//!
//! let x = rng.uniform((8, 784), 0.0, 1.0, &device)?; // eight "images" in [0, 1]
//! let out = vae.forward(&x, None, &mut rng)?; // None: no labels, for an unconditional model
//! assert_eq!(out.logits.dims(), &[8, 784]);
//! assert_eq!(out.mu.dims(), &[8, 4]);
//!
//! let terms = elbo(&x, &out)?;
//! let (recon, kl) = (terms.recon.to_scalar::<f32>()?, terms.kl.to_scalar::<f32>()?);
//! assert!(recon > 0.0 && kl >= 0.0);
//! assert!((terms.loss.to_scalar::<f32>()? - (recon + kl)).abs() < 1e-3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod activation;
mod config;
mod conv;
mod cpu_kernels;
mod dense;
mod io;
pub mod latent;
mod layers;
pub mod likelihood;
mod loss;
mod model;
mod product;
mod reader;
mod rng;
mod sgemm;

pub use config::{
    Activation, Block, ConvShape, ConvStack, LayerKind, LayerPlan, LayerSpec, Likelihood,
    ScaleHead, VaeConfig, DEFAULT_NUM_CLASSES, MAX_PARAMETERS,
};
pub use conv::{conv2d, conv_layer, conv_transpose2d, ConvLayer};
pub use dense::dense_layer;
pub use io::{
    format_of, remove_pending, safetensors_bytes, temp_file_builder, write_atomic, Pending, FORMAT,
    FORMAT_V2,
};
pub use layers::{Conv, Dense};
pub use likelihood::{bce_with_logits, log_density, log_likelihood};
pub use loss::{beta_elbo, elbo, iwae_bound, kl_divergence, log_importance_weights, ElboTerms};
pub use model::{Decoder, Encoder, Vae, VaeOutput};
pub use product::linear_product;
pub use reader::{first_non_finite, CheckedTensors, SafetensorsReader, TensorProblem};
pub use rng::{RngState, VaeRng};
pub use sgemm::{set_cpu_sgemm, BadShape, CpuSgemm, GemmShape};

/// What can go wrong outside the tensor maths: a bad config, or a file that is not a model of ours.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config describes no valid model.
    #[error("invalid model config: {0}")]
    Config(String),
    /// The file is readable but not a valid `vae-candle/1` model.
    #[error("{}: {msg}", path.display())]
    Format {
        /// The offending file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// The file could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error (in the message, and deliberately not a `source()`, so a chain prints it once).
        error: std::io::Error,
    },
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

// The README's Rust example is compiled with the doctests, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
