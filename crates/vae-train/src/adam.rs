//! Adam with PyTorch's semantics, whose state can be saved and restored.
//!
//! candle-nn's `AdamW` is decoupled-weight-decay Adam with decay 0.01 by default and keeps its moments private, so
//! it can neither match `torch.optim.Adam` out of the box nor be checkpointed. This one is the textbook update
//! (Kingma & Ba, Algorithm 1) as PyTorch writes it:
//! `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`, `p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)`.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

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

/// The optimiser: named parameters with their first and second moments.
#[derive(Debug)]
pub struct Adam {
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: u64,
    cfg: AdamConfig,
}

impl Adam {
    /// Zero moments for each parameter. Names are used only for checkpoints.
    pub fn new(params: Vec<(String, Var)>, cfg: AdamConfig) -> Result<Self> {
        let m = params
            .iter()
            .map(|(_, p)| p.zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            params,
            m,
            v,
            step: 0,
            cfg,
        })
    }

    /// Steps taken so far (PyTorch's `state['step']`).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// One update from the gradients in `grads`; parameters without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let AdamConfig {
            beta1, beta2, eps, ..
        } = self.cfg;
        let (step_size, bc2_sqrt) = self.cfg.corrections(self.step);
        for (i, (_, p)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(p) else { continue };
            let m = ((&self.m[i] * beta1)? + (g * (1.0 - beta1))?)?;
            let v = ((&self.v[i] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let denom = ((v.sqrt()? / bc2_sqrt)? + eps)?;
            let update = (m.div(&denom)? * step_size)?;
            p.set(&p.as_tensor().sub(&update)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<param>`, `v.<param>`), for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len());
        for (i, (name, _)) in self.params.iter().enumerate() {
            out.push((format!("m.{name}"), self.m[i].clone()));
            out.push((format!("v.{name}"), self.v[i].clone()));
        }
        out
    }

    /// Restores moments and step count saved by [`Adam::state_tensors`]. `get` looks a tensor up by name.
    pub fn restore(
        &mut self,
        step: u64,
        mut get: impl FnMut(&str) -> Option<Tensor>,
    ) -> std::result::Result<(), String> {
        for (i, (name, p)) in self.params.iter().enumerate() {
            for (slot, key) in [
                (&mut self.m[i], format!("m.{name}")),
                (&mut self.v[i], format!("v.{name}")),
            ] {
                let t = get(&key).ok_or_else(|| format!("missing optimiser tensor `{key}`"))?;
                if t.dims() != p.dims() {
                    return Err(format!(
                        "optimiser tensor `{key}` has shape {:?}, expected {:?}",
                        t.dims(),
                        p.dims()
                    ));
                }
                *slot = t.to_device(p.device()).map_err(|e| e.to_string())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two steps on f(p) = ½‖p‖², worked by hand with PyTorch's formula.
    #[test]
    fn matches_the_pytorch_update_by_hand() {
        let p = Var::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
        let cfg = AdamConfig {
            lr: 0.1,
            ..Default::default()
        };
        let mut opt = Adam::new(vec![("p".into(), p.clone())], cfg).unwrap();
        let mut expect = [1.0f64, -2.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=2 {
            let loss = (p.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
            for i in 0..2 {
                let g = expect[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let denom = (v[i].sqrt() / (1.0 - 0.999f64.powi(t)).sqrt()) + 1e-8;
                expect[i] -= 0.1 / (1.0 - 0.9f64.powi(t)) * m[i] / denom;
            }
        }
        let got = p.as_tensor().to_vec1::<f64>().unwrap();
        for i in 0..2 {
            assert!((got[i] - expect[i]).abs() < 1e-12, "{got:?} vs {expect:?}");
        }
        // The first step of Adam moves each coordinate by lr (up to ε): 1 → 0.9 → ~0.8.
        assert!((got[0] - 0.8).abs() < 1e-3);
        assert_eq!(opt.step_count(), 2);
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let run = |split: bool| {
            let p = Var::new(&[0.5f32, 1.5, -1.0], &Device::Cpu).unwrap();
            let mut opt = Adam::new(vec![("w".into(), p.clone())], AdamConfig::default()).unwrap();
            for k in 0..4 {
                if split && k == 2 {
                    let saved: std::collections::HashMap<_, _> =
                        opt.state_tensors().into_iter().collect();
                    let step = opt.step_count();
                    opt = Adam::new(vec![("w".into(), p.clone())], AdamConfig::default()).unwrap();
                    opt.restore(step, |k| saved.get(k).cloned()).unwrap();
                }
                let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
            p.as_tensor().to_vec1::<f32>().unwrap()
        };
        assert_eq!(run(false), run(true));
    }
}
