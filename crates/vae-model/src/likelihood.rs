//! log p(x | z) under each decoder distribution, and the mean a picture shows.
//!
//! The decoder's output `out [N, k·D]` holds, per value, a logit (Bernoulli, continuous Bernoulli), a mean
//! (Gaussian of fixed σ), or a mean and then, in its second half, a log-scale (Gaussian of learned σ, logistic);
//! see [`Likelihood::outputs_per_value`]. Values `x` are in [0, 1]. `sigma` is a Gaussian's fixed σ, if any
//! ([`crate::VaeConfig::sigma`]).

use candle_core::{Result, Tensor, D};

use crate::Likelihood;

mod sample;
pub use sample::sample;

/// The smallest log-scale the decoder may predict (PixelCNN++'s bound): σ and s stay above e⁻⁷.
pub const MIN_LOG_SCALE: f64 = -7.0;

/// Half the width of an 8-bit value's bin on [0, 1]: value k/255 stands for [k/255 − ½/255, k/255 + ½/255].
const HALF_BIN: f64 = 0.5 / 255.0;

/// Below this |logit|, the continuous Bernoulli's normaliser is its Taylor series (the closed form is 0/0 at 0).
const CB_TAYLOR_BELOW: f64 = 1e-2;

/// Below this |logit|, the continuous Bernoulli's mean is its Taylor series (the closed form cancels in f32).
const CB_MEAN_SERIES_BELOW: f64 = 0.1;

/// log p(x | out) of each value, in nats.
///
/// # Shapes
/// `out [N, k·D]` (the decoder's output), `x [N, D]` → `[N, D]`.
pub fn log_density(
    likelihood: Likelihood,
    sigma: Option<f64>,
    out: &Tensor,
    x: &Tensor,
) -> Result<Tensor> {
    match likelihood {
        Likelihood::Bernoulli => bce_with_logits(out, x)?.neg(),
        Likelihood::Gaussian => gaussian(sigma, out, x),
        Likelihood::ContinuousBernoulli => continuous_bernoulli(out, x),
        Likelihood::Logistic => logistic(out, x),
    }
}

/// log p(x | out) summed over each row: `[N, k·D]`, `[N, D]` → `[N]`.
pub fn log_likelihood(
    likelihood: Likelihood,
    sigma: Option<f64>,
    out: &Tensor,
    x: &Tensor,
) -> Result<Tensor> {
    log_density(likelihood, sigma, out, x)?.sum(D::Minus1)
}

/// The distribution's mean of each value, clamped to [0, 1] (a Gaussian's or a logistic's mean may lie outside).
///
/// # Shapes
/// `out [N, k·D]` → `[N, D]`.
pub fn mean(likelihood: Likelihood, sigma: Option<f64>, out: &Tensor) -> Result<Tensor> {
    let m = match likelihood {
        Likelihood::Bernoulli => return candle_nn::ops::sigmoid(out),
        Likelihood::Gaussian | Likelihood::Logistic => match likelihood.outputs_per_value(sigma) {
            2 => out.narrow(1, 0, out.dim(1)? / 2)?,
            _ => out.clone(),
        },
        Likelihood::ContinuousBernoulli => continuous_bernoulli_mean(out)?,
    };
    m.clamp(0.0, 1.0)
}

/// `(location, log-scale)` of an output of two halves, the log-scale bounded below by [`MIN_LOG_SCALE`].
fn halves(out: &Tensor) -> Result<(Tensor, Tensor)> {
    let d = out.dim(1)? / 2;
    Ok((
        out.narrow(1, 0, d)?,
        out.narrow(1, d, d)?.maximum(MIN_LOG_SCALE)?,
    ))
}

/// Element-wise binary cross-entropy of `targets` under Bernoulli `logits`: −[t·log σ(l) + (1−t)·log(1−σ(l))].
///
/// Computed as `max(l, 0) − l·t + log(1 + exp(−|l|))`, which never takes the log of 0 nor exponentiates a large
/// number, so it is finite and exact for logits of ±100 where the naive form gives inf or NaN.
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let softplus_tail = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (logits.relu()? - logits.mul(targets)?)? + softplus_tail
}

/// log(1 + eˣ), without overflow: `max(x, 0) + log(1 + e^−|x|)`.
fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// log N(x; μ, σ²) = −½((x − μ)/σ)² − log σ − ½ log 2π.
fn gaussian(sigma: Option<f64>, out: &Tensor, x: &Tensor) -> Result<Tensor> {
    let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
    let (mu, log_sigma) = match sigma {
        Some(s) => (out.clone(), out.zeros_like()?.affine(0.0, s.ln())?),
        None => halves(out)?,
    };
    let z = (x - &mu)?.mul(&log_sigma.neg()?.exp()?)?;
    ((z.sqr()? * -0.5)? - log_sigma)? - half_log_2pi
}

/// log CB(x; λ) = x log λ + (1 − x) log(1 − λ) + log C(λ), with λ = σ(l) and C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ),
/// which in the logit is `l / tanh(l / 2)`: its log is `log 2 + l²/12 − 7 l⁴/1440 + …` near l = 0 (λ = ½).
fn continuous_bernoulli(l: &Tensor, x: &Tensor) -> Result<Tensor> {
    let small = l.abs()?.lt(CB_TAYLOR_BELOW)?;
    // The closed form on a logit kept away from 0, so that neither branch (nor its gradient) is NaN.
    let safe = small.where_cond(&l.ones_like()?, l)?;
    let direct = (safe.abs()?.log()? - (&safe * 0.5)?.tanh()?.abs()?.log()?)?;
    let l2 = l.sqr()?;
    let taylor = (((&l2 / 12.0)? - (l2.sqr()? * (7.0 / 1440.0))?)? + std::f64::consts::LN_2)?;
    let log_norm = small.where_cond(&taylor, &direct)?;
    bce_with_logits(l, x)?.neg()? + log_norm
}

/// E[x] under CB(λ): `λ / (2λ − 1) + 1 / (2 artanh(1 − 2λ))`, which in the logit is `σ(l) / tanh(l/2) − 1/l`,
/// and `½ + l/12 − l³/720 + l⁵/30240` below |l| = [`CB_MEAN_SERIES_BELOW`], where the two terms of about 1/l
/// would cancel in f32 (the series' next term is under 1e-13 there).
fn continuous_bernoulli_mean(l: &Tensor) -> Result<Tensor> {
    let small = l.abs()?.lt(CB_MEAN_SERIES_BELOW)?;
    let safe = small.where_cond(&l.ones_like()?, l)?;
    let direct = (candle_nn::ops::sigmoid(&safe)?.div(&(&safe * 0.5)?.tanh()?)? - safe.recip()?)?;
    let l2 = l.sqr()?;
    // ((l⁴/30240 − l²/720) + 1/12)·l + ½, by Horner.
    let inner = (((&l2 / 30240.0)? - (1.0 / 720.0))?.mul(&l2)? + (1.0 / 12.0))?;
    let taylor = (inner.mul(l)? + 0.5)?;
    small.where_cond(&taylor, &direct)
}

/// The discretised logistic: the mass of Logistic(μ, s) over x's bin of width 1/255, the bin of 0 reaching down to
/// −∞ and the bin of 1 up to +∞. The mass `σ(a) − σ(b)` is taken in log space from whichever tail x is in, so that
/// it keeps its digits far from the mean (no density-times-width stands in for it).
fn logistic(out: &Tensor, x: &Tensor) -> Result<Tensor> {
    let (mu, log_s) = halves(out)?;
    let inv_s = log_s.neg()?.exp()?;
    let centred = (x - &mu)?;
    let plus = (&centred + HALF_BIN)?.mul(&inv_s)?;
    let minus = (&centred - HALF_BIN)?.mul(&inv_s)?;
    // log σ(a) = a − softplus(a); log(1 − σ(a)) = −softplus(a).
    let (log_cdf_plus, log_cdf_minus) =
        ((&plus - softplus(&plus)?)?, (&minus - softplus(&minus)?)?);
    let (log_sf_plus, log_sf_minus) = (softplus(&plus)?.neg()?, softplus(&minus)?.neg()?);
    let below_mean = log_diff_exp(&log_cdf_plus, &log_cdf_minus)?;
    let above_mean = log_diff_exp(&log_sf_minus, &log_sf_plus)?;
    let interior = centred.gt(0.0)?.where_cond(&above_mean, &below_mean)?;
    let top = x.gt(1.0 - HALF_BIN)?.where_cond(&log_sf_minus, &interior)?;
    x.lt(HALF_BIN)?.where_cond(&log_cdf_plus, &top)
}

/// log(e^hi − e^lo) for lo < hi: `hi + log(1 − e^(lo − hi))`.
fn log_diff_exp(hi: &Tensor, lo: &Tensor) -> Result<Tensor> {
    hi + log1m_exp(&(lo - hi)?)?
}

/// log(1 − e^d) for d < 0, accurate as d → 0⁻ (where 1 − e^d cancels): there `log(−d) + d/2 + d²/24`.
fn log1m_exp(d: &Tensor) -> Result<Tensor> {
    // Never exactly 0 (a bin too narrow for the scale to resolve in f32), so the log below stays finite.
    let d = d.minimum(-1e-30)?;
    let near_zero = d.gt(-1e-2)?;
    let series = ((d.neg()?.log()? + (&d * 0.5)?)? + (d.sqr()? / 24.0)?)?;
    let safe = near_zero.where_cond(&d.ones_like()?.neg()?, &d)?;
    let direct = (safe.exp()?.neg()? + 1.0)?.log()?;
    near_zero.where_cond(&series, &direct)
}

#[cfg(test)]
mod tests;
