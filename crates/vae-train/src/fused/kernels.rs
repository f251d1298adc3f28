//! The element-wise work of a fused step, written so the compiler vectorises it: no libm calls in the loops, and
//! reductions kept in 16 independent lanes (a single running sum would serialise the loop). On x86-64 each kernel is
//! also compiled for AVX2+FMA and picked at run time; the results are the same either way, since Rust never fuses a
//! multiply and an add on its own.

use rayon::prelude::*;
use vae_model::Activation;

use crate::cpu::PARALLEL_CHUNK;
#[cfg(target_arch = "x86_64")]
use crate::cpu::{has_avx2, has_avx512};

/// exp(x) for x ≤ 0 in f32 (Cephes' `expf`: range reduction by ln 2 and a degree-6 polynomial, ~1 ulp), written
/// without calls or branches so that it vectorises.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Cephes' coefficients, verbatim
fn exp_neg(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Clamped so the result never goes subnormal (slow): below −87.3 it is e^−87.3 ≈ 1.2e-38 instead of smaller,
    // an absolute error under 1.3e-38.
    let x = x.max(-87.3);
    // Round to nearest by adding 1.5·2²³: plain SSE2 can do it, where `round` needs SSE4.1.
    const MAGIC: f32 = 12_582_912.0;
    let n = (x * LOG2E + MAGIC) - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1)
        * (r * r)
        + r
        + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// ln(1 + e) for e in [0, 1], as 2·atanh(e / (2 + e)): the series in t² ≤ 1/9 converges fast and, unlike
/// `ln(1 + e)` computed directly, keeps full precision when e is tiny.
#[inline(always)]
fn ln_1p_unit(e: f32) -> f32 {
    let t = e / (2.0 + e);
    let t2 = t * t;
    let s = 1.0
        + t2 * (1.0 / 3.0
            + t2 * (1.0 / 5.0
                + t2 * (1.0 / 7.0 + t2 * (1.0 / 9.0 + t2 * (1.0 / 11.0 + t2 * (1.0 / 13.0))))));
    2.0 * t * s
}

/// BCE(l, t) = max(l, 0) − l·t + ln(1 + e), given `e = exp(−|l|)`.
#[inline(always)]
fn bce_term(l: f32, t: f32, e: f32) -> f32 {
    l.max(0.0) - l * t + ln_1p_unit(e)
}

/// One element of the BCE pass: returns the loss term and writes `(σ(l) − x)·scale` over the logit.
#[inline(always)]
fn bce_one(l: &mut f32, t: f32, scale: f32) -> f32 {
    let e = exp_neg(-l.abs());
    let loss = bce_term(*l, t, e);
    let inv = 1.0 / (1.0 + e);
    let sig = if *l >= 0.0 { inv } else { e * inv };
    *l = (sig - t) * scale;
    loss
}

#[inline(always)]
fn bce_body(logits: &mut [f32], x: &[f32], scale: f32) -> f64 {
    const LANES: usize = 16;
    let mut total = 0f64;
    // Blocks bound the f32 lanes' rounding error; the blocks are summed in f64.
    for (lb, xb) in logits.chunks_mut(4096).zip(x.chunks(4096)) {
        let mut acc = [0f32; LANES];
        let mut lc = lb.chunks_exact_mut(LANES);
        let mut xc = xb.chunks_exact(LANES);
        for (l, t) in (&mut lc).zip(&mut xc) {
            for k in 0..LANES {
                acc[k] += bce_one(&mut l[k], t[k], scale);
            }
        }
        let mut tail = 0f32;
        for (l, &t) in lc.into_remainder().iter_mut().zip(xc.remainder()) {
            tail += bce_one(l, t, scale);
        }
        total += acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64;
    }
    total
}

/// Σ BCE(l, x) over the slices (in f64), replacing each logit with `(σ(l) − x)·scale`. With `e = exp(−|l|)`:
/// BCE = max(l, 0) − l·x + ln(1 + e), and σ(l) = 1/(1+e) for l ≥ 0, e/(1+e) otherwise; nothing overflows.
///
/// A batch's logits are split across the threads in chunks of a fixed size, whose sums are added in order: the same
/// result whatever the thread count.
pub fn bce_and_grad(logits: &mut [f32], x: &[f32], scale: f32) -> f64 {
    assert_eq!(logits.len(), x.len());
    if logits.len() < 2 * PARALLEL_CHUNK {
        return bce_and_grad_serial(logits, x, scale);
    }
    let sums: Vec<f64> = logits
        .par_chunks_mut(PARALLEL_CHUNK)
        .zip(x.par_chunks(PARALLEL_CHUNK))
        .map(|(l, x)| bce_and_grad_serial(l, x, scale))
        .collect();
    sums.iter().sum()
}

fn bce_and_grad_serial(logits: &mut [f32], x: &[f32], scale: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked above).
        return unsafe { bce_avx512(logits, x, scale) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        return unsafe { bce_avx2(logits, x, scale) };
    }
    bce_body(logits, x, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn bce_avx512(logits: &mut [f32], x: &[f32], scale: f32) -> f64 {
    bce_body(logits, x, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bce_avx2(logits: &mut [f32], x: &[f32], scale: f32) -> f64 {
    bce_body(logits, x, scale)
}

/// Σ BCE(l, x) over the slices, in f64, leaving the logits as they are: [`bce_and_grad`]'s loss without the
/// gradient's division and store, for the estimator, which needs only the sum.
pub fn bce_sum(logits: &[f32], x: &[f32]) -> f64 {
    assert_eq!(logits.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked above).
        return unsafe { bce_sum_avx512(logits, x) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        return unsafe { bce_sum_avx2(logits, x) };
    }
    bce_sum_body(logits, x)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn bce_sum_avx512(logits: &[f32], x: &[f32]) -> f64 {
    bce_sum_body(logits, x)
}

#[inline(always)]
fn bce_sum_body(logits: &[f32], x: &[f32]) -> f64 {
    const LANES: usize = 16;
    let one = |l: f32, t: f32| bce_term(l, t, exp_neg(-l.abs()));
    let mut acc = [0f32; LANES];
    let (lc, xc) = (logits.chunks_exact(LANES), x.chunks_exact(LANES));
    let tail: f32 = (lc.remainder().iter().zip(xc.remainder()))
        .map(|(&l, &t)| one(l, t))
        .sum();
    for (l, t) in lc.zip(xc) {
        for k in 0..LANES {
            acc[k] += one(l[k], t[k]);
        }
    }
    acc.iter().map(|&a| a as f64).sum::<f64>() + tail as f64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bce_sum_avx2(logits: &[f32], x: &[f32]) -> f64 {
    bce_sum_body(logits, x)
}

/// tanh(x) as `sign(x)·(1 − e)/(1 + e)` with `e = exp(−2|x|)`: no call and no branch, so it vectorises (libm's
/// `tanhf` is a call per element, and made tanh the largest cost of a step of the 784-200-200-50 tanh model).
/// Near 0 the subtraction loses relative precision, so below |x| < 1/4 its odd Taylor series to x¹¹ is used.
#[inline(always)]
fn tanh_fast(x: f32) -> f32 {
    let a = x.abs();
    let e = exp_neg(-2.0 * a);
    let big = (1.0 - e) / (1.0 + e);
    let a2 = a * a;
    let small = a
        * (1.0
            - a2 * (1.0 / 3.0
                - a2 * (2.0 / 15.0
                    - a2 * (17.0 / 315.0 - a2 * (62.0 / 2835.0 - a2 * (1382.0 / 155_925.0))))));
    let t = if a < 0.25 { small } else { big };
    t.copysign(x)
}

#[inline(always)]
fn activate_body(h: &mut [f32], act: Activation) {
    match act {
        Activation::Relu => h.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Tanh => h.iter_mut().for_each(|v| *v = tanh_fast(*v)),
        Activation::LeakyRelu => {
            let slope = Activation::LEAKY_SLOPE as f32;
            h.iter_mut().for_each(|v| *v = v.max(*v * slope))
        }
        Activation::Elu => h
            .iter_mut()
            .for_each(|v| *v = if *v > 0.0 { *v } else { v.exp_m1() }),
        Activation::Silu => h.iter_mut().for_each(|v| *v /= 1.0 + (-*v).exp()),
    }
}

/// `h ← act(h)` in place.
pub fn activate(h: &mut [f32], act: Activation) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked above).
        return unsafe { activate_avx512(h, act) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        return unsafe { activate_avx2(h, act) };
    }
    activate_body(h, act)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn activate_avx512(h: &mut [f32], act: Activation) {
    activate_body(h, act)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn activate_avx2(h: &mut [f32], act: Activation) {
    activate_body(h, act)
}

/// `grad ← grad ⊙ act'(a)`, written in terms of the activation's output `h = act(a)`.
pub fn act_backward(grad: &mut [f32], h: &[f32], act: Activation) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked above).
        return unsafe { act_backward_avx512(grad, h, act) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports AVX2 and FMA (checked above).
        return unsafe { act_backward_avx2(grad, h, act) };
    }
    act_backward_body(grad, h, act)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn act_backward_avx512(grad: &mut [f32], h: &[f32], act: Activation) {
    act_backward_body(grad, h, act)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn act_backward_avx2(grad: &mut [f32], h: &[f32], act: Activation) {
    act_backward_body(grad, h, act)
}

#[inline(always)]
fn act_backward_body(grad: &mut [f32], h: &[f32], act: Activation) {
    match act {
        Activation::Relu => grad
            .iter_mut()
            .zip(h)
            .for_each(|(g, &h)| *g = if h > 0.0 { *g } else { 0.0 }),
        Activation::Tanh => grad.iter_mut().zip(h).for_each(|(g, &h)| *g *= 1.0 - h * h),
        Activation::LeakyRelu => {
            let slope = Activation::LEAKY_SLOPE as f32;
            grad.iter_mut()
                .zip(h)
                .for_each(|(g, &h)| *g *= if h > 0.0 { 1.0 } else { slope })
        }
        Activation::Elu => grad
            .iter_mut()
            .zip(h)
            .for_each(|(g, &h)| *g *= if h > 0.0 { 1.0 } else { h + 1.0 }),
        // SiLU is not monotonic: its output does not give its slope, so `fused::supports` refuses it.
        Activation::Silu => unreachable!("the fused engine does not train SiLU models"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_libm_to_a_few_ulp() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (got, want) = (exp_neg(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 4.0 * f32::EPSILON, "relative error {worst}");
        assert_eq!(exp_neg(0.0), 1.0);
        let tiny = exp_neg(-200.0);
        assert!(tiny > 0.0 && tiny < 1.3e-38 && tiny.is_normal(), "{tiny}");
    }

    #[test]
    fn ln_1p_matches_libm_including_tiny_arguments() {
        for i in 0..=100_000 {
            let e = i as f32 / 100_000.0;
            let (got, want) = (ln_1p_unit(e), e.ln_1p());
            assert!(
                (got - want).abs() <= 2.0 * f32::EPSILON * want.max(f32::MIN_POSITIVE),
                "{e}: {got} vs {want}"
            );
        }
        assert_eq!(ln_1p_unit(1e-30), 1e-30);
    }

    #[test]
    fn tanh_matches_libm_to_a_few_ulp_across_its_range() {
        let mut worst = 0f32;
        for i in -200_000..=200_000 {
            let x = 12.0 * i as f32 / 200_000.0;
            let (got, want) = (tanh_fast(x), x.tanh());
            worst = worst.max((got - want).abs() / want.abs().max(f32::MIN_POSITIVE));
        }
        assert!(worst < 4.0 * f32::EPSILON, "relative error {worst}");
        assert_eq!(tanh_fast(0.0), 0.0);
        assert_eq!(tanh_fast(1e-30), 1e-30);
        assert_eq!((tanh_fast(100.0), tanh_fast(-100.0)), (1.0, -1.0));
        let mut h = vec![-3.0f32, -0.5, 0.0, 0.25, 7.0];
        activate(&mut h, Activation::Tanh);
        for (got, x) in h.iter().zip([-3.0f32, -0.5, 0.0, 0.25, 7.0]) {
            assert!((got - x.tanh()).abs() <= 2.0 * f32::EPSILON, "{x}");
        }
    }

    #[test]
    fn bce_pass_matches_the_definition() {
        let logits: Vec<f32> = (0..1001).map(|i| (i as f32 - 500.0) / 5.0).collect();
        let x: Vec<f32> = (0..1001).map(|i| (i % 7) as f32 / 6.0).collect();
        let mut grad = logits.clone();
        let total = bce_and_grad(&mut grad, &x, 0.5);
        let mut want = 0f64;
        for ((&l, &t), &g) in logits.iter().zip(&x).zip(&grad) {
            let (l64, t64) = (l as f64, t as f64);
            want += l64.max(0.0) - l64 * t64 + (-l64.abs()).exp().ln_1p();
            let sig = 1.0 / (1.0 + (-l64).exp());
            assert!((g as f64 - (sig - t64) * 0.5).abs() < 1e-6, "grad at {l}");
        }
        assert!((total - want).abs() < 1e-5 * want, "{total} vs {want}");
        let row = |r: usize| 77 * r..(77 * r + 77).min(logits.len());
        for r in 0..=1000 / 77 {
            let sum = bce_sum(&logits[row(r)], &x[row(r)]);
            let mut g = logits[row(r)].to_vec();
            let with_grad = bce_and_grad(&mut g, &x[row(r)], 1.0);
            assert!(
                (sum - with_grad).abs() < 1e-6 * with_grad,
                "row {r}: {sum} vs {with_grad}"
            );
        }
    }
}
