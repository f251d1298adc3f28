//! The explorer's model calls: what `vae-train serve` answers on its `POST /api/...` routes, and what the
//! WebAssembly module of `vae-train export-web` answers in the browser, from the same code.
//!
//! [`Explorer`] holds a model of pictures. Each call takes the JSON body of its route, checks it (every refusal is
//! one line, [`CallError::Bad`]), and answers PNG bytes or JSON, exactly as the page reads them.
//!
//! ```
//! use vae_model::{Vae, VaeConfig, VaeRng};
//! use vae_web::Explorer;
//!
//! let cfg = VaeConfig { hidden_dims: vec![16], latent_dim: 2, ..VaeConfig::mnist() };
//! let (vae, _) = Vae::init(&cfg, &mut VaeRng::seed_from(1), &candle_core::Device::Cpu)?;
//! let explorer = Explorer::new(vae).map_err(|e| e.to_string())?;
//! let png = explorer.call("/api/decode", r#"{"z": [0.5, -1]}"#).map_err(|e| e.to_string())?;
//! assert_eq!(&png[1..4], b"PNG");
//! assert!(explorer.call("/api/decode", r#"{"z": [0.5]}"#).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod calls;
#[cfg(target_arch = "wasm32")]
mod wasm;

pub use calls::{
    CallError, DecodeRequest, EncodeRequest, Encoded, Explorer, InterpolateRequest, SamplesRequest,
    MAX_ABS_Z, MAX_IMAGES, MAX_SIDE,
};
