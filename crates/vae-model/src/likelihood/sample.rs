//! One draw of every value from the decoder's distribution, for `--sample-pixels`.

use candle_core::{DType, Result, Tensor};

use super::{HALF_BIN, MIN_LOG_SCALE};
use crate::{Likelihood, VaeRng};

/// One draw of each value from p(x | out), in [0, 1]: a Bernoulli's 0 or 1, a Gaussian's value clamped to [0, 1],
/// a continuous Bernoulli's by its inverse CDF, a discretised logistic's 8-bit level k/255. The uniform and normal
/// draws come from `rng`, one per value in row order, so a seed gives the same pictures.
///
/// # Shapes
/// `out [N, k·D]` (the decoder's output) → `[N, D]`, on `out`'s device.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use vae_model::{likelihood, Likelihood, VaeRng};
/// let logits = Tensor::new(&[[-30f32, 30.0]], &Device::Cpu).unwrap();
/// let x = likelihood::sample(Likelihood::Bernoulli, None, &logits, &mut VaeRng::seed_from(1)).unwrap();
/// assert_eq!(x.to_vec2::<f32>().unwrap(), vec![vec![0.0, 1.0]]);
/// ```
pub fn sample(
    likelihood: Likelihood,
    sigma: Option<f64>,
    out: &Tensor,
    rng: &mut VaeRng,
) -> Result<Tensor> {
    let (n, width) = out.dims2()?;
    let d = width / likelihood.outputs_per_value(sigma);
    let rows: Vec<Vec<f64>> = out.to_dtype(DType::F64)?.to_vec2()?;
    let mut values = Vec::with_capacity(n * d);
    for row in &rows {
        let (first, second) = row.split_at(d);
        for (j, &o) in first.iter().enumerate() {
            let x = match likelihood {
                Likelihood::Bernoulli => f64::from(rng.uniform_vec(1, 0.0, 1.0)[0] < sigmoid(o)),
                Likelihood::Gaussian => {
                    let s = sigma.unwrap_or_else(|| second[j].max(MIN_LOG_SCALE).exp());
                    o + s * f64::from(rng.normal_vec(1)[0])
                }
                Likelihood::ContinuousBernoulli => {
                    cb_inverse_cdf(o, rng.uniform_vec(1, 0.0, 1.0)[0])
                }
                Likelihood::Logistic => {
                    let u = rng.uniform_vec(1, 1e-12, 1.0 - 1e-12)[0];
                    let x = o + second[j].max(MIN_LOG_SCALE).exp() * (u / (1.0 - u)).ln();
                    (x / (2.0 * HALF_BIN)).round() * (2.0 * HALF_BIN)
                }
            };
            values.push(x.clamp(0.0, 1.0) as f32);
        }
    }
    Tensor::from_vec(values, (n, d), out.device())
}

fn sigmoid(l: f64) -> f64 {
    1.0 / (1.0 + (-l).exp())
}

/// The continuous Bernoulli's inverse CDF at `u` for logit `l`: `log(1 + u(eˡ − 1)) / l`, written for l > 0 as
/// `1 + log(u + (1 − u)e⁻ˡ) / l` so that eˡ never overflows; `u` itself near l = 0, where the density is flat.
fn cb_inverse_cdf(l: f64, u: f64) -> f64 {
    if l.abs() < 1e-6 {
        u
    } else if l > 0.0 {
        1.0 + (u + (1.0 - u) * (-l).exp()).ln() / l
    } else {
        (u * l.exp_m1()).ln_1p() / l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inverse CDF maps u to the x whose CDF is u: F(x) = (eˡˣ − 1)/(eˡ − 1), computed here independently.
    #[test]
    fn the_continuous_bernoullis_inverse_cdf_inverts_its_cdf() {
        for l in [-40.0, -3.0, -0.5, -1e-3, 1e-3, 0.5, 3.0, 40.0] {
            for u in [0.01, 0.3, 0.5, 0.77, 0.99] {
                let x: f64 = cb_inverse_cdf(l, u);
                let cdf = (l * x).exp_m1() / l.exp_m1();
                assert!((cdf - u).abs() < 1e-9, "l {l}, u {u}: x {x}, F(x) {cdf}");
            }
        }
    }

    /// Draws average to each distribution's mean ([`super::super::mean`], the closed forms) within 4 standard errors.
    #[test]
    fn draws_average_to_the_mean() {
        let n = 20_000;
        let cases: [(Likelihood, Option<f64>, Vec<f32>); 4] = [
            (Likelihood::Bernoulli, None, vec![0.7]),
            (Likelihood::Gaussian, Some(0.1), vec![0.4]),
            (Likelihood::ContinuousBernoulli, None, vec![2.0]),
            (Likelihood::Logistic, None, vec![0.5, -3.0]),
        ];
        for (likelihood, sigma, params) in cases {
            let out = Tensor::from_vec(
                params.repeat(n),
                (n, params.len()),
                &candle_core::Device::Cpu,
            )
            .unwrap();
            let x = sample(likelihood, sigma, &out, &mut VaeRng::seed_from(3)).unwrap();
            let xs: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
            let avg = xs.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            let var = xs
                .iter()
                .map(|&v| (f64::from(v) - avg).powi(2))
                .sum::<f64>()
                / n as f64;
            let mean: f64 = super::super::mean(likelihood, sigma, &out.narrow(0, 0, 1).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0]
                .into();
            let se = (var / n as f64).sqrt();
            assert!(
                (avg - mean).abs() < 4.0 * se + 1e-6,
                "{likelihood:?}: average {avg}, mean {mean}, se {se}"
            );
            if likelihood == Likelihood::Logistic {
                assert!(
                    xs.iter()
                        .all(|v| (v * 255.0 - (v * 255.0).round()).abs() < 1e-3),
                    "8-bit levels"
                );
            }
        }
    }
}
