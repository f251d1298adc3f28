//! The WebAssembly face of [`Explorer`]: `new WebExplorer(bytes)` and `explorer.call(path, body)`, for the page's
//! static-site backend (`assets/explorer/explorer.js`).

use std::path::Path;

use candle_core::Device;
use vae_model::Vae;
use wasm_bindgen::prelude::*;

use crate::Explorer;

/// A model loaded from the bytes of its safetensors file, answering the explorer's `POST /api/...` calls.
#[wasm_bindgen]
pub struct WebExplorer(Explorer);

#[wasm_bindgen]
impl WebExplorer {
    /// Loads the model in `bytes`, checked as `vae-train` checks a model file; the error is one line.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8]) -> Result<WebExplorer, JsError> {
        let vae = Vae::from_bytes(Path::new("model.safetensors"), bytes, &Device::Cpu)
            .map_err(|e| JsError::new(&e.to_string()))?;
        Explorer::new(vae)
            .map(Self)
            .map_err(|e| JsError::new(&format!("model.safetensors: {e}")))
    }

    /// Answers `POST path` with the JSON `body`: PNG bytes, or `/api/encode`'s JSON.
    pub fn call(&self, path: &str, body: &str) -> Result<Vec<u8>, JsError> {
        self.0
            .call(path, body)
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// The decoded image of `z` as values in the model's layout (what `/api/decode` draws).
    #[wasm_bindgen(js_name = decodeValues)]
    pub fn decode_values(&self, z: &[f64], label: Option<u32>) -> Result<Vec<f32>, JsError> {
        self.0
            .decode_values(z, label)
            .map_err(|e| JsError::new(&e.to_string()))
    }
}
