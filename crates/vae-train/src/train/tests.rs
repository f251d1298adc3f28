//! The training loop's failure paths, driven through an engine that misbehaves on purpose.

use std::path::Path;

use anyhow::Result;
use candle_core::Device;
use vae_model::{Vae, VaeRng};

use super::{Run, TrainOptions};
use crate::engine::{build_engine, TrainEngine};
use crate::interrupt::Interrupt;
use crate::metrics::read_metrics;
use crate::rundir::files;
use crate::{AdamConfig, AdamState, Engine, Overrides, RunConfig, StepTerms};

/// Trains like `inner`, but hands out a model with one NaN weight: finite training losses, a non-finite test
/// loss.
struct NanModel(Box<dyn TrainEngine>);

impl TrainEngine for NanModel {
    fn step(
        &mut self,
        x: &[f32],
        labels: &[u32],
        rows: usize,
        noise: &mut VaeRng,
    ) -> Result<StepTerms> {
        self.0.step(x, labels, rows, noise)
    }
    fn model(&self) -> Result<Vae> {
        let vae = self.0.model()?;
        let mut tensors = vae.named_tensors();
        // The output layer's bias: a NaN there reaches every logit (ReLU would hide one in a hidden layer).
        let (_, t) = tensors.last_mut().unwrap();
        let mut v = t.to_vec1::<f32>()?;
        v[0] = f32::NAN;
        *t = candle_core::Tensor::new(v, t.device())?;
        Ok(Vae::from_tensors(
            vae.config(),
            tensors.into_iter().collect(),
            vae.device(),
        )?)
    }
    fn adam_state(&self) -> Result<AdamState> {
        self.0.adam_state()
    }
    fn restore_adam(&mut self, state: &AdamState) -> Result<()> {
        self.0.restore_adam(state)
    }
    fn noise_per_image(&self) -> usize {
        self.0.noise_per_image()
    }
}

#[test]
fn a_non_finite_test_loss_stops_before_anything_of_the_epoch_is_written() {
    let data_dir = crate::tests_data_dir();
    let (base, _) = RunConfig::load_preset("mnist", Path::new("/nonexistent")).unwrap();
    let cfg = base
        .apply(&Overrides {
            epochs: Some(2),
            hidden_dims: Some(vec![32]),
            latent_dim: Some(4),
            train_subset: Some(1000),
            ..Default::default()
        })
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = TrainOptions {
        data_dir,
        out_dir: tmp.path().join("run"),
        device: Device::Cpu,
        resume: false,
        overwrite: false,
        progress: false,
        interrupt: Interrupt::none(),
        strict: false,
        stop_after_steps: None,
    };
    let (cfg, data) = crate::data::load_for_run(&cfg, &opts.data_dir, false).unwrap();
    let mut run = Run::prepare(&cfg, &opts, Engine::Fused, data).unwrap();
    run.epoch(1).unwrap();
    let checkpoint = opts.out_dir.join(files::CHECKPOINT);
    let metrics = opts.out_dir.join(files::METRICS);
    let before = (
        std::fs::read(&checkpoint).unwrap(),
        std::fs::read(&metrics).unwrap(),
    );

    // Continue from the epoch-1 state, through an engine whose model holds a NaN.
    let current = run.engine.model().unwrap();
    let adam = run.engine.adam_state().unwrap();
    let mut inner = build_engine(
        Engine::Fused,
        &current,
        AdamConfig::default(),
        crate::Loss::Elbo { beta: 1.0 },
    )
    .unwrap();
    inner.restore_adam(&adam).unwrap();
    run.engine = Box::new(NanModel(inner));
    let msg = run.epoch(2).unwrap_err().to_string();
    assert!(
        msg.contains("the test loss became NaN after epoch 2"),
        "{msg}"
    );
    assert!(msg.contains("checkpoint still holds epoch 1"), "{msg}");
    let after = (
        std::fs::read(&checkpoint).unwrap(),
        std::fs::read(&metrics).unwrap(),
    );
    assert!(
        before == after,
        "the epoch-1 checkpoint and metrics are untouched"
    );
    assert_eq!(read_metrics(&metrics).unwrap().len(), 1);
}
