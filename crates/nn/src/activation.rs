//! Parameter-free activation modules.

use tempo_tensor::{Float, Tensor};

use crate::{Module, NnError};

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $method:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name;

        impl<T: Float> Module<T> for $name {
            fn forward(&self, x: &Tensor<T>) -> Result<Tensor<T>, NnError> {
                Ok(x.$method())
            }

            fn collect_parameters(&self, _prefix: &str, _out: &mut Vec<(String, Tensor<T>)>) {}
        }
    };
}

activation!(
    /// `max(x, 0)` (PyTorch's `nn.ReLU`).
    ReLU,
    relu
);
activation!(
    /// The hyperbolic tangent (PyTorch's `nn.Tanh`).
    Tanh,
    tanh
);
activation!(
    /// The logistic sigmoid (PyTorch's `nn.Sigmoid`).
    Sigmoid,
    sigmoid
);
activation!(
    /// The exact GELU `x Φ(x)` (PyTorch's `nn.GELU()`, `approximate='none'`).
    GELU,
    gelu
);
