//! Adam with PyTorch's semantics, whose state can be saved and restored.
//!
//! candle-nn's `AdamW` is decoupled-weight-decay Adam with decay 0.01 by default and keeps its moments private, so
//! it can neither match `torch.optim.Adam` out of the box nor be checkpointed. This one is the textbook update
//! (Kingma & Ba, Algorithm 1) as PyTorch writes it:
//! `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)`.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, Device, Layout, Result, Tensor, Var};
use candle_nn::Optimizer;

use kernel::{adam_update, AdamStep};

mod kernel;

/// Adam's hyper-parameters; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator for stability.
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl AdamConfig {
    /// For step `t` (1-based): the step size `lr / (1 − β1ᵗ)` and `√(1 − β2ᵗ)`, the bias corrections of both moments.
    pub fn corrections(&self, t: u64) -> (f64, f64) {
        let t = t.min(i32::MAX as u64) as i32;
        (
            self.lr / (1.0 - self.beta1.powi(t)),
            (1.0 - self.beta2.powi(t)).sqrt(),
        )
    }
}

/// Adam's state: the step count and each parameter's first and second moments, in the optimiser's parameter
/// order (for a [`Vae`](vae_model::Vae), [`VaeConfig::parameter_shapes`](vae_model::VaeConfig::parameter_shapes)
/// order). This is what a checkpoint holds.
#[derive(Debug, Clone)]
pub struct AdamState {
    /// Steps taken (PyTorch's `state['step']`).
    pub step: u64,
    /// `(m, v)` per parameter.
    pub moments: Vec<(Tensor, Tensor)>,
}

/// The optimiser, a candle-nn [`Optimizer`]: parameters with their first and second moments.
///
/// ```
/// use candle_core::{Device, Var};
/// use candle_nn::Optimizer;
/// use vae_train::{Adam, AdamConfig};
///
/// let p = Var::new(&[1.0f32, -2.0], &Device::Cpu)?;
/// let mut opt = Adam::new(vec![p.clone()], AdamConfig { lr: 0.1, ..Default::default() })?;
/// opt.backward_step(&p.as_tensor().sqr()?.sum_all()?)?; // minimise ‖p‖²
/// let moved = p.as_tensor().to_vec1::<f32>()?;
/// assert!((moved[0] - 0.9).abs() < 1e-4 && (moved[1] + 1.9).abs() < 1e-4); // Adam's first step is lr
/// # Ok::<(), candle_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Adam {
    params: Vec<Var>,
    moments: Vec<Moments>,
    step: u64,
    cfg: AdamConfig,
}

/// A parameter's first and second moments.
#[derive(Debug)]
enum Moments {
    /// On the parameter's device, updated by composed tensor ops (which every backend has).
    Tensors { m: Tensor, v: Tensor },
    /// For an `f32` parameter on the CPU: plain buffers, updated in place in one pass with the parameter by
    /// [`InPlaceAdam`], instead of eleven tensor ops that each allocate their result.
    Host { m: Vec<f32>, v: Vec<f32> },
}

impl Moments {
    fn zeros(p: &Var) -> Result<Self> {
        Ok(if p.device().is_cpu() && p.dtype() == DType::F32 {
            let n = p.elem_count();
            Moments::Host {
                m: vec![0.0; n],
                v: vec![0.0; n],
            }
        } else {
            Moments::Tensors {
                m: p.zeros_like()?,
                v: p.zeros_like()?,
            }
        })
    }

    /// As tensors of `p`'s shape (copies of the host buffers).
    fn tensors(&self, p: &Var) -> Result<(Tensor, Tensor)> {
        Ok(match self {
            Moments::Tensors { m, v } => (m.clone(), v.clone()),
            Moments::Host { m, v } => (
                Tensor::from_slice(m, p.shape(), &Device::Cpu)?,
                Tensor::from_slice(v, p.shape(), &Device::Cpu)?,
            ),
        })
    }

    /// Replaced by saved moments of `p`'s size.
    fn restore(&mut self, p: &Var, m: &Tensor, v: &Tensor) -> Result<()> {
        match self {
            Moments::Tensors { m: mm, v: vv } => {
                *mm = m.to_device(p.device())?.reshape(p.shape())?;
                *vv = v.to_device(p.device())?.reshape(p.shape())?;
            }
            Moments::Host { m: mm, v: vv } => {
                let host = |t: &Tensor| {
                    t.reshape(p.shape())?
                        .flatten_all()?
                        .to_dtype(DType::F32)?
                        .to_vec1()
                };
                (*mm, *vv) = (host(m)?, host(v)?);
            }
        }
        Ok(())
    }
}

/// Adam on an `f32` CPU parameter (the op's destination) from its gradient, with the moments it holds: the fused
/// engine's kernel. CPU only: on other devices [`Moments::Tensors`] takes the composed ops.
struct InPlaceAdam<'a> {
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    c: AdamStep,
}

impl candle_core::InplaceOp2 for InPlaceAdam<'_> {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn cpu_fwd(&self, p: &mut CpuStorage, lp: &Layout, g: &CpuStorage, lg: &Layout) -> Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (p, g) else {
            candle_core::bail!("adam: f32 parameters and gradients only");
        };
        let (Some((p0, p1)), Some((g0, g1))) = (lp.contiguous_offsets(), lg.contiguous_offsets())
        else {
            candle_core::bail!("adam: contiguous parameters and gradients only");
        };
        let (mut m, mut v) = (self.m.borrow_mut(), self.v.borrow_mut());
        adam_update(&mut p[p0..p1], &g[g0..g1], &mut m, &mut v, self.c);
        Ok(())
    }
}

impl Optimizer for Adam {
    type Config = AdamConfig;

    /// Zero moments for each parameter.
    fn new(params: Vec<Var>, cfg: AdamConfig) -> Result<Self> {
        let moments = params
            .iter()
            .map(Moments::zeros)
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            params,
            moments,
            step: 0,
            cfg,
        })
    }

    /// One update from the gradients in `grads`; parameters without a gradient are left alone.
    fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let AdamConfig {
            beta1, beta2, eps, ..
        } = self.cfg;
        let (step_size, bc2_sqrt) = self.cfg.corrections(self.step);
        let host_step = AdamStep::new(&self.cfg, self.step);
        for (p, moments) in self.params.iter().zip(&mut self.moments) {
            let Some(g) = grads.get(p) else { continue };
            match moments {
                Moments::Host { m, v } => {
                    let op = InPlaceAdam {
                        m: RefCell::new(m),
                        v: RefCell::new(v),
                        c: host_step,
                    };
                    p.as_tensor().inplace_op2(&g.contiguous()?, &op)?;
                }
                Moments::Tensors { m, v } => {
                    *m = ((&*m * beta1)? + (g * (1.0 - beta1))?)?;
                    *v = ((&*v * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
                    let denom = ((v.sqrt()? / bc2_sqrt)? + eps)?;
                    let update = (m.div(&denom)? * step_size)?;
                    p.set(&p.as_tensor().sub(&update)?)?;
                }
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f64 {
        self.cfg.lr
    }

    fn set_learning_rate(&mut self, lr: f64) {
        self.cfg.lr = lr;
    }
}

impl Adam {
    /// Steps taken so far (PyTorch's `state['step']`).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The step count and moments, for a checkpoint.
    pub fn state(&self) -> Result<AdamState> {
        Ok(AdamState {
            step: self.step,
            moments: (self.params.iter().zip(&self.moments))
                .map(|(p, m)| m.tensors(p))
                .collect::<Result<_>>()?,
        })
    }

    /// Continues from a saved [`AdamState`] whose moments have the parameters' shapes, in the same order.
    pub fn restore(&mut self, state: &AdamState) -> Result<()> {
        if state.moments.len() != self.params.len() {
            candle_core::bail!(
                "{} optimiser moments for {} parameters",
                state.moments.len(),
                self.params.len()
            );
        }
        for ((p, moments), (m, v)) in self
            .params
            .iter()
            .zip(&mut self.moments)
            .zip(&state.moments)
        {
            moments.restore(p, m, v)?;
        }
        self.step = state.step;
        Ok(())
    }
}

/// Adam's moments as flat buffers beside a flat parameter buffer (the fused engine's), updated in one pass over
/// every parameter.
#[derive(Debug, Clone)]
pub struct FlatAdam {
    cfg: AdamConfig,
    m: Vec<f32>,
    v: Vec<f32>,
    step: u64,
}

impl FlatAdam {
    /// Fresh moments for `len` parameters.
    pub fn new(cfg: AdamConfig, len: usize) -> Self {
        Self {
            cfg,
            m: vec![0.0; len],
            v: vec![0.0; len],
            step: 0,
        }
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One step: `params` updated from their `grads` (both as long as the moments).
    pub fn update(&mut self, params: &mut [f32], grads: &[f32]) {
        self.step += 1;
        let c = AdamStep::new(&self.cfg, self.step);
        let (m, v) = (&mut self.m, &mut self.v);
        crate::profile::time(crate::profile::Phase::Adam, || {
            adam_update(params, grads, m, v, c)
        });
    }

    /// The first and second moments.
    pub fn moments(&self) -> (&[f32], &[f32]) {
        (&self.m, &self.v)
    }

    /// Continues from `step` steps with moments `m` and `v` (as long as the current ones).
    pub fn restore(&mut self, step: u64, m: Vec<f32>, v: Vec<f32>) {
        assert!(
            m.len() == self.m.len() && v.len() == self.v.len(),
            "moments for every parameter"
        );
        (self.step, self.m, self.v) = (step, m, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two steps on f(p) = ½‖p‖², worked by hand with PyTorch's formula: in f64 (the composed tensor ops) and in
    /// f32 (the in-place CPU update).
    #[test]
    fn matches_the_pytorch_update_by_hand() {
        let start = [1.0f64, -2.0, 3e-3, 0.0];
        let mut expect = start;
        let (mut m, mut v) = ([0.0f64; 4], [0.0f64; 4]);
        for t in 1..=2 {
            for i in 0..4 {
                let g = expect[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let denom = (v[i].sqrt() / (1.0 - 0.999f64.powi(t)).sqrt()) + 1e-8;
                expect[i] -= 0.1 / (1.0 - 0.9f64.powi(t)) * m[i] / denom;
            }
        }
        // The first step of Adam moves each coordinate by lr (up to ε): 1 → 0.9 → ~0.8.
        assert!((expect[0] - 0.8).abs() < 1e-3);
        for dtype in [DType::F64, DType::F32] {
            let p = Var::new(&start, &Device::Cpu).unwrap();
            let p = Var::from_tensor(&p.to_dtype(dtype).unwrap()).unwrap();
            let cfg = AdamConfig {
                lr: 0.1,
                ..Default::default()
            };
            let mut opt = Adam::new(vec![p.clone()], cfg).unwrap();
            let host = matches!(opt.moments[0], Moments::Host { .. });
            assert_eq!(host, dtype == DType::F32);
            for _ in 1..=2 {
                let loss = (p.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
            let got = p.to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
            let tolerance = if host { 1e-6 } else { 1e-12 };
            for i in 0..4 {
                assert!(
                    (got[i] - expect[i]).abs() < tolerance,
                    "{dtype:?}: {got:?} vs {expect:?}"
                );
            }
            assert_eq!(opt.step_count(), 2);
        }
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let run = |split: bool| {
            let p = Var::new(&[0.5f32, 1.5, -1.0], &Device::Cpu).unwrap();
            let mut opt = Adam::new(vec![p.clone()], AdamConfig::default()).unwrap();
            for k in 0..4 {
                if split && k == 2 {
                    let saved = opt.state().unwrap();
                    opt = Adam::new(vec![p.clone()], AdamConfig::default()).unwrap();
                    opt.restore(&saved).unwrap();
                }
                let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
            p.as_tensor().to_vec1::<f32>().unwrap()
        };
        assert_eq!(run(false), run(true));
    }
}
