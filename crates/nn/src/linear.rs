//! `Linear`, PyTorch's `nn.Linear` with its initialisation.

use ndarray::ArrayD;
use tempo_tensor::{Float, Generator, Tensor};

use crate::{Module, NnError};

/// A fully connected layer `y = x · Wᵀ + b` (PyTorch's `nn.Linear`), with the weight
/// stored as `[out_features, in_features]` like PyTorch.
#[derive(Debug, Clone)]
pub struct Linear<T: Float> {
    weight: Tensor<T>,
    bias: Option<Tensor<T>>,
}

/// PyTorch's `kaiming_uniform_(w, a=sqrt(5))` bound for a fan-in, computed in f64 as
/// torch computes it: `gain = sqrt(2 / (1 + a**2))`, `bound = sqrt(3) * gain / sqrt(fan_in)`.
pub fn kaiming_uniform_bound(fan_in: usize) -> f64 {
    let a = 5f64.sqrt();
    let gain = (2.0 / (1.0 + a.powf(2.0))).sqrt();
    let std = gain / (fan_in as f64).sqrt();
    3f64.sqrt() * std
}

/// PyTorch's `nn.Linear` bias bound `1 / sqrt(fan_in)` (0 when `fan_in` is 0).
pub fn linear_bias_bound(fan_in: usize) -> f64 {
    if fan_in == 0 {
        0.0
    } else {
        1.0 / (fan_in as f64).sqrt()
    }
}

impl<T: Float> Linear<T> {
    /// A layer initialised as PyTorch's `nn.Linear(in_features, out_features, bias)`
    /// does, drawing from `rng` in torch's order: the weight (kaiming-uniform with
    /// `a = sqrt(5)`) in row-major `[out][in]` order, then the bias
    /// (`U(-1/sqrt(in), 1/sqrt(in))`). With `Generator::new(seed)` this reproduces
    /// `torch.manual_seed(seed); nn.Linear(...)` bit for bit (f32 and f64).
    pub fn new(in_features: usize, out_features: usize, bias: bool, rng: &mut Generator) -> Self {
        let mut w = ArrayD::zeros(vec![out_features, in_features]);
        if in_features > 0 {
            // PyTorch leaves a zero-element weight untouched (with a warning).
            let bound = kaiming_uniform_bound(in_features);
            rng.uniform_(&mut w, -bound, bound);
        }
        let bias = bias.then(|| {
            let bound = linear_bias_bound(in_features);
            Tensor::parameter(rng.uniform(&[out_features], -bound, bound))
        });
        Self {
            weight: Tensor::parameter(w),
            bias,
        }
    }

    /// A layer with the given weight `[out, in]` and optional bias `[out]`.
    pub fn from_weights(weight: ArrayD<T>, bias: Option<ArrayD<T>>) -> Result<Self, NnError> {
        let ws = weight.shape().to_vec();
        if ws.len() != 2 {
            return Err(NnError::BadShape {
                what: "Linear weight ([out, in])",
                expected: vec![0, 0],
                found: ws,
            });
        }
        if let Some(b) = &bias {
            if b.shape() != [ws[0]] {
                return Err(NnError::BadShape {
                    what: "Linear bias ([out])",
                    expected: vec![ws[0]],
                    found: b.shape().to_vec(),
                });
            }
        }
        Ok(Self {
            weight: Tensor::parameter(weight),
            bias: bias.map(Tensor::parameter),
        })
    }

    /// The weight `[out_features, in_features]`.
    pub fn weight(&self) -> &Tensor<T> {
        &self.weight
    }

    /// The bias `[out_features]`, if any.
    pub fn bias(&self) -> Option<&Tensor<T>> {
        self.bias.as_ref()
    }

    /// The input size.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// The output size.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }
}

impl<T: Float> Module<T> for Linear<T> {
    /// `x` of shape `[.., in]` (a single sample `[in]` included) gives `[.., out]`.
    fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>, NnError> {
        Ok(x.linear(&self.weight, self.bias.as_ref())?)
    }

    fn collect_parameters(&self, prefix: &str, out: &mut Vec<(String, Tensor<T>)>) {
        out.push((format!("{prefix}weight"), self.weight.clone()));
        if let Some(b) = &self.bias {
            out.push((format!("{prefix}bias"), b.clone()));
        }
    }
}
