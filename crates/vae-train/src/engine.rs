//! The two ways to take a training step behind one trait, so the training loop never asks which one it drives.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use vae_model::{beta_elbo, iwae_bound, Vae, VaeRng};

use crate::config::Loss;
use crate::fused::{self, FusedVae};
use crate::gemm::StepBackend;
use crate::metrics::StepTerms;
use crate::{Adam, AdamConfig, AdamState, Engine, FlatAdam};

/// A model being trained with Adam on a [`Loss`]; `Send`, so that its steps can run on a thread of rayon's pool.
pub trait TrainEngine: Send {
    /// One optimiser step on the batch `x [rows, input_dim]` of host pixels and their `labels` (read by a
    /// conditional model), with ε drawn from `noise` (`rows × noise_per_image()` draws).
    fn step(
        &mut self,
        x: &[f32],
        labels: &[u32],
        rows: usize,
        noise: &mut VaeRng,
    ) -> Result<StepTerms>;
    /// The current parameters as a model on the training device.
    fn model(&self) -> Result<Vae>;
    /// Adam's step count and moments, for a checkpoint.
    fn adam_state(&self) -> Result<AdamState>;
    /// Continues from a checkpoint's Adam state (already checked against the model's shapes).
    fn restore_adam(&mut self, state: &AdamState) -> Result<()>;
    /// Normals a step draws from its noise stream per image: the dimension of z, times k for IWAE.
    fn noise_per_image(&self) -> usize;
}

/// Resolves `auto` and checks that the choice fits the device and model.
pub fn resolve_engine(
    engine: Engine,
    model: &vae_model::VaeConfig,
    device: &Device,
) -> Result<Engine> {
    let lacks = fused::unsupported(model);
    match engine {
        Engine::Auto if device.is_cpu() && lacks.is_none() => Ok(Engine::Fused),
        Engine::Auto | Engine::Autograd => Ok(Engine::Autograd),
        Engine::Fused if !device.is_cpu() => {
            bail!("the fused engine runs on the CPU only; use --engine autograd")
        }
        Engine::Fused => match lacks {
            Some(what) => {
                bail!("the fused engine does not support {what}; use --engine autograd")
            }
            None => Ok(Engine::Fused),
        },
    }
}

/// The engine `engine` (resolved by [`resolve_engine`]) starting from the parameters of `initial`.
pub fn build_engine(
    engine: Engine,
    initial: &Vae,
    adam: AdamConfig,
    loss: Loss,
) -> Result<Box<dyn TrainEngine>> {
    Ok(match engine {
        Engine::Fused => {
            let fused = FusedVae::new(initial)?;
            let adam = FlatAdam::new(adam, fused.parameter_count());
            Box::new(FusedEngine {
                fused,
                adam,
                eps: Vec::new(),
                gemm: None,
                loss,
            })
        }
        Engine::Autograd | Engine::Auto => Box::new(AutogradEngine::new(initial, adam, loss)?),
    })
}

/// Candle's autograd and our [`Adam`] on tensors: any device, any model.
pub struct AutogradEngine {
    vae: Vae,
    adam: Adam,
    loss: Loss,
}

impl AutogradEngine {
    /// Trainable copies of `initial`'s parameters.
    pub fn new(initial: &Vae, adam: AdamConfig, loss: Loss) -> Result<Self> {
        let varmap = VarMap::new();
        let mut vars = Vec::new();
        {
            let mut data = varmap
                .data()
                .lock()
                .expect("a fresh VarMap is not poisoned");
            for (name, t) in initial.named_tensors() {
                // Detached, so `from_tensor` makes the one copy the engine owns.
                let var = Var::from_tensor(&t.detach())?;
                vars.push(var.clone());
                data.insert(name, var);
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, initial.device());
        let mut vae = Vae::new(initial.config(), vb)?;
        if let Some(d) = initial.dataset() {
            vae.set_dataset(d);
        }
        if initial.device().is_cpu() {
            crate::cpu::keep_freed_buffers();
        }
        Ok(Self {
            vae,
            adam: Adam::new(vars, adam)?,
            loss,
        })
    }
}

impl TrainEngine for AutogradEngine {
    fn step(
        &mut self,
        x: &[f32],
        labels: &[u32],
        rows: usize,
        noise: &mut VaeRng,
    ) -> Result<StepTerms> {
        let device = self.vae.device();
        let x = Tensor::from_slice(x, (rows, x.len() / rows), device)?;
        let labels = Tensor::from_slice(labels, labels.len(), device)?;
        let (vae, y) = (&self.vae, Some(&labels));
        let terms = match self.loss {
            Loss::Elbo { beta } => beta_elbo(&x, &vae.forward(&x, y, noise)?, beta)?,
            Loss::Iwae { k } => iwae_bound(vae, &x, y, &vae.noise(k * rows, noise)?)?,
        };
        let grads = terms.loss.backward()?;
        crate::profile::time(crate::profile::Phase::Adam, || self.adam.step(&grads))?;
        let scalar = |t: &Tensor| -> Result<f64> { Ok(t.to_scalar::<f32>()? as f64) };
        Ok(StepTerms {
            loss: scalar(&terms.loss)?,
            recon: scalar(&terms.recon)?,
            kl: scalar(&terms.kl)?,
        })
    }

    fn model(&self) -> Result<Vae> {
        Ok(self.vae.clone())
    }

    fn adam_state(&self) -> Result<AdamState> {
        Ok(self.adam.state()?)
    }

    fn restore_adam(&mut self, state: &AdamState) -> Result<()> {
        Ok(self.adam.restore(state)?)
    }

    fn noise_per_image(&self) -> usize {
        self.vae.config().latent_dim * self.loss.samples()
    }
}

/// The hand-derived CPU step of [`crate::fused`] and its Adam, with ε drawn into a reused buffer.
struct FusedEngine {
    fused: FusedVae,
    adam: FlatAdam,
    eps: Vec<f32>,
    loss: Loss,
    /// The sgemm backend of this run's steps, chosen at the first step.
    gemm: Option<StepBackend>,
}

impl TrainEngine for FusedEngine {
    fn step(
        &mut self,
        x: &[f32],
        labels: &[u32],
        rows: usize,
        noise: &mut VaeRng,
    ) -> Result<StepTerms> {
        let loss = self.loss;
        let gemm = match self.gemm {
            Some(g) => g,
            None => *self
                .gemm
                .insert(self.fused.calibrate_gemm(x, labels, rows, loss)),
        };
        self.eps.resize(rows * self.noise_per_image(), 0.0);
        crate::profile::time(crate::profile::Phase::Noise, || {
            noise.fill_normal(&mut self.eps)
        });
        let (fused, adam, eps) = (&mut self.fused, &mut self.adam, &self.eps);
        Ok(gemm.run(|| fused.train_step(adam, x, labels, eps, rows, loss)))
    }

    fn model(&self) -> Result<Vae> {
        Ok(self.fused.to_vae()?)
    }

    fn adam_state(&self) -> Result<AdamState> {
        Ok(self.fused.adam_state(&self.adam)?)
    }

    fn restore_adam(&mut self, state: &AdamState) -> Result<()> {
        Ok(self.fused.restore_adam(&mut self.adam, state)?)
    }

    fn noise_per_image(&self) -> usize {
        self.fused.latent_dim() * self.loss.samples()
    }
}
