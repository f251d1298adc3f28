//! `cargo xtask train`: vae-train built in release for a device, then trained.

use anyhow::Result;

use crate::cmd::status;
use crate::device::vae_train_on;
use crate::flags::TrainArgs;

/// `vae-train train --preset P --device D --download [flags]`, built in release for the device.
pub fn run(args: &TrainArgs) -> Result<()> {
    // --download fetches (and verifies) only what is missing; vae-train's own flags may follow.
    let mut cmd = vae_train_on(&args.device, args.compute_cap.as_deref())?;
    cmd.args([
        "train",
        "--preset",
        &args.preset,
        "--device",
        &args.device,
        "--download",
    ])
    .args(&args.train_flags);
    status(&mut cmd)
}
