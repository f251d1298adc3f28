//! `RunConfig::from_toml` and `apply` on hostile preset text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vae_train::{Overrides, RunConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = RunConfig::from_toml(text, "fuzz.toml") {
        let _ = cfg.apply(&Overrides::default());
    }
});
