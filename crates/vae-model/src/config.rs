//! The model's shape: what `Vae::new` builds and what a saved file records.

use serde::{Deserialize, Serialize};

use crate::Error;

/// The non-linearity between hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(0, x)`, the pytorch/examples choice.
    Relu,
    /// `tanh(x)`, the choice of the original paper.
    Tanh,
}

/// The decoder's output distribution p(x | z), which fixes the reconstruction term of the ELBO.
///
/// Only the Bernoulli decoder exists today; the enum is non-exhaustive so that a Gaussian decoder can be added
/// without breaking callers that match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Likelihood {
    /// Each pixel is an independent Bernoulli whose logit the decoder outputs; the reconstruction term is the
    /// binary cross-entropy, which also accepts grey levels in [0, 1] as targets.
    Bernoulli,
}

/// The architecture of a VAE: `input_dim → hidden_dims… → (mu, logvar) [latent_dim]`, and the mirror image back.
///
/// ```
/// let cfg = vae_model::VaeConfig::mnist();
/// assert_eq!(cfg.hidden_dims, vec![400]);
/// cfg.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaeConfig {
    /// Pixels per image (784 for 28×28).
    pub input_dim: usize,
    /// Widths of the encoder's hidden layers, first to last; the decoder uses them in reverse.
    pub hidden_dims: Vec<usize>,
    /// Dimension of the latent code z.
    pub latent_dim: usize,
    /// Non-linearity after each hidden layer.
    pub activation: Activation,
    /// Decoder output distribution.
    pub likelihood: Likelihood,
}

impl VaeConfig {
    /// The pytorch/examples VAE: 784-400-20, ReLU, Bernoulli.
    pub fn mnist() -> Self {
        Self {
            input_dim: 784,
            hidden_dims: vec![400],
            latent_dim: 20,
            activation: Activation::Relu,
            likelihood: Likelihood::Bernoulli,
        }
    }

    /// Rejects shapes that would build a degenerate model: zero widths or no hidden layer.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.input_dim == 0 {
            return bad("input_dim must be at least 1".into());
        }
        if self.latent_dim == 0 {
            return bad("latent_dim must be at least 1".into());
        }
        if self.hidden_dims.is_empty() {
            return bad("hidden_dims needs at least one hidden layer".into());
        }
        if let Some(i) = self.hidden_dims.iter().position(|&d| d == 0) {
            return bad(format!(
                "hidden_dims[{i}] is 0; every hidden layer needs at least 1 unit"
            ));
        }
        Ok(())
    }

    /// Every parameter tensor of the model with its shape, in the `state_dict` naming of the safetensors format.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut linear = |name: String, fan_in: usize, fan_out: usize| {
            out.push((format!("{name}.weight"), vec![fan_out, fan_in]));
            out.push((format!("{name}.bias"), vec![fan_out]));
        };
        let mut fan_in = self.input_dim;
        for (i, &h) in self.hidden_dims.iter().enumerate() {
            linear(format!("encoder.hidden.{i}"), fan_in, h);
            fan_in = h;
        }
        linear("encoder.mu".into(), fan_in, self.latent_dim);
        linear("encoder.logvar".into(), fan_in, self.latent_dim);
        let mut fan_in = self.latent_dim;
        for (i, &h) in self.hidden_dims.iter().rev().enumerate() {
            linear(format!("decoder.hidden.{i}"), fan_in, h);
            fan_in = h;
        }
        linear("decoder.out".into(), fan_in, self.input_dim);
        out
    }

    /// Total number of scalar parameters.
    pub fn num_parameters(&self) -> usize {
        self.parameter_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_degenerate_shapes() {
        let ok = VaeConfig::mnist();
        ok.validate().unwrap();
        for (cfg, needle) in [
            (
                VaeConfig {
                    input_dim: 0,
                    ..ok.clone()
                },
                "input_dim",
            ),
            (
                VaeConfig {
                    latent_dim: 0,
                    ..ok.clone()
                },
                "latent_dim",
            ),
            (
                VaeConfig {
                    hidden_dims: vec![],
                    ..ok.clone()
                },
                "at least one hidden layer",
            ),
            (
                VaeConfig {
                    hidden_dims: vec![400, 0],
                    ..ok.clone()
                },
                "hidden_dims[1]",
            ),
        ] {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn mnist_parameter_count_matches_pytorch_examples() {
        // 784*400+400 + 2*(400*20+20) + 20*400+400 + 400*784+784, as torch's sum(p.numel()) prints.
        assert_eq!(VaeConfig::mnist().num_parameters(), 652_824);
    }

    #[test]
    fn serde_round_trip_and_unknown_keys() {
        let cfg = VaeConfig {
            hidden_dims: vec![512, 256],
            activation: Activation::Tanh,
            ..VaeConfig::mnist()
        };
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(json.contains("\"activation\":\"tanh\""));
        assert!(json.contains("\"likelihood\":\"bernoulli\""));
        assert_eq!(serde_json::from_str::<VaeConfig>(&json).unwrap(), cfg);
        let extra = json.replace('}', ",\"dropout\":0.5}");
        assert!(serde_json::from_str::<VaeConfig>(&extra)
            .unwrap_err()
            .to_string()
            .contains("dropout"));
    }
}
