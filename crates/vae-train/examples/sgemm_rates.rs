//! Each product shape's GFLOP/s on every sgemm backend of this build, for `cargo xtask bench --sgemm`.
//!
//! `sgemm_rates [--ms MS] SHAPE...`, each shape as the profile writes it (`"NT 128x400x784"`), each timed for
//! at least MS milliseconds (default 300) per backend; one JSON line per shape and backend on stdout. OpenBLAS runs
//! the kernels `vae-train` would (see `vae_train::pin_openblas_kernels`).

use std::time::Duration;

use vae_train::gemm::{rate, Backend, GemmShape};

fn main() -> anyhow::Result<()> {
    vae_train::pin_openblas_kernels();
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut ms = 300;
    if args.first().is_some_and(|a| a == "--ms") {
        let value = args
            .get(1)
            .ok_or_else(|| anyhow::anyhow!("--ms: no value"))?;
        ms = value
            .parse()
            .map_err(|_| anyhow::anyhow!("--ms: `{value}` is not a number of milliseconds"))?;
        args.drain(..2);
    }
    let shapes: Vec<GemmShape> = args.iter().map(|s| s.parse()).collect::<Result<_, _>>()?;
    for shape in shapes {
        for backend in Backend::available() {
            let gflop_per_s = rate(shape, backend, Duration::from_millis(ms));
            let line = serde_json::json!({
                "shape": shape.to_string(),
                "backend": backend.name(),
                "gflop_per_s": gflop_per_s,
            });
            println!("{line}");
        }
    }
    Ok(())
}
