//! Adam's update on flat `f32` buffers, in one vectorised pass: the kernel both the tensor optimiser and the fused
//! engine's flat moments run.

use rayon::prelude::*;

use super::AdamConfig;
use crate::cpu::PARALLEL_CHUNK;
#[cfg(target_arch = "x86_64")]
use crate::cpu::{has_avx2, has_avx512};

/// Adam's constants for one step, in f32.
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// lr / (1 − β1ᵗ).
    pub step_size: f32,
    /// 1 / √(1 − β2ᵗ).
    pub inv_sqrt_bc2: f32,
    pub eps: f32,
}

impl AdamStep {
    /// The constants of step `t` (1-based) under `cfg`.
    pub fn new(cfg: &AdamConfig, t: u64) -> Self {
        let (step_size, bc2_sqrt) = cfg.corrections(t);
        Self {
            beta1: cfg.beta1 as f32,
            one_minus_beta1: (1.0 - cfg.beta1) as f32,
            beta2: cfg.beta2 as f32,
            one_minus_beta2: (1.0 - cfg.beta2) as f32,
            step_size: step_size as f32,
            inv_sqrt_bc2: (1.0 / bc2_sqrt) as f32,
            eps: cfg.eps as f32,
        }
    }
}

#[inline(always)]
fn adam_body(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamStep) {
    let flush = |x: f32| if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x };
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = flush(c.beta1 * *m + c.one_minus_beta1 * g);
        *v = flush(c.beta2 * *v + c.one_minus_beta2 * g * g);
        *p -= c.step_size * *m / (v.sqrt() * c.inv_sqrt_bc2 + c.eps);
    }
}

/// `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`, `p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)`: PyTorch's Adam, in
/// place, in one pass.
///
/// Moments are flushed to zero once subnormal. A parameter whose gradient is always 0 (a weight from a pixel that
/// is black in every image, a dead ReLU) has moments that decay by β each step into the subnormal range, where each
/// arithmetic operation costs about a hundred cycles; at |m| < 1.2e-38 its contribution to the update is far below
/// an f32 weight's resolution.
///
/// Each element's update is independent, so the parameters are split across the threads with no effect on the
/// result. Below half a million parameters waking a second thread costs more than it saves.
pub fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamStep) {
    assert!(g.len() == p.len() && m.len() == p.len() && v.len() == p.len());
    if p.len() < 1 << 19 {
        return adam_serial(p, g, m, v, c);
    }
    p.par_chunks_mut(PARALLEL_CHUNK)
        .zip(g.par_chunks(PARALLEL_CHUNK))
        .zip(m.par_chunks_mut(PARALLEL_CHUNK))
        .zip(v.par_chunks_mut(PARALLEL_CHUNK))
        .for_each(|(((p, g), m), v)| adam_serial(p, g, m, v, c));
}

fn adam_serial(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamStep) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked above).
        return unsafe { adam_avx512(p, g, m, v, c) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        return unsafe { adam_avx2(p, g, m, v, c) };
    }
    adam_body(p, g, m, v, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn adam_avx512(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamStep) {
    adam_body(p, g, m, v, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn adam_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: AdamStep) {
    adam_body(p, g, m, v, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_split_across_threads_equals_pytorchs_formula_element_by_element() {
        // Large enough to be split into chunks; values that exercise the flush of subnormal moments too.
        let n = (1 << 19) + 5 * PARALLEL_CHUNK + 123;
        let wave = |i: usize, f: f32| ((i as f32 * f).sin() * 1e-3).max(-5e-4);
        let g: Vec<f32> = (0..n)
            .map(|i| if i % 7 == 0 { 0.0 } else { wave(i, 0.37) })
            .collect();
        let (mut p, mut m, mut v) = (vec![0.5f32; n], vec![1e-38f32; n], vec![1e-6f32; n]);
        let cfg = AdamConfig::default();
        let c = AdamStep::new(&cfg, 3);
        let (p0, m0, v0) = (p.clone(), m.clone(), v.clone());
        adam_update(&mut p, &g, &mut m, &mut v, c);
        let (b1, b2) = (cfg.beta1, cfg.beta2);
        let (bc1, bc2) = (1.0 - b1.powi(3), 1.0 - b2.powi(3));
        for i in 0..n {
            let gi = g[i] as f64;
            let mi = b1 * m0[i] as f64 + (1.0 - b1) * gi;
            let vi = b2 * v0[i] as f64 + (1.0 - b2) * gi * gi;
            let pi = p0[i] as f64 - cfg.lr / bc1 * mi / ((vi / bc2).sqrt() + cfg.eps);
            let expect_m = if mi.abs() < f32::MIN_POSITIVE as f64 {
                0.0
            } else {
                mi
            };
            assert!(
                (m[i] as f64 - expect_m).abs() <= 1e-6 * expect_m.abs(),
                "m[{i}]: {} vs {expect_m}",
                m[i]
            );
            assert!((v[i] as f64 - vi).abs() <= 1e-6 * vi, "v[{i}]");
            assert!((p[i] as f64 - pi).abs() <= 1e-6, "p[{i}]: {} vs {pi}", p[i]);
        }
    }
}
