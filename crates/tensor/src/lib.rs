//! `tempo-tensor`: ndarray-backed tensors in f32 and f64 with reverse-mode autograd.
//!
//! A [`Tensor`] is a cheap, clonable handle (like a PyTorch tensor object): clones
//! share the same value and gradient. Leaf tensors made with [`Tensor::parameter`]
//! require grad; ops on them record a graph, and [`Tensor::backward`] on a scalar
//! result accumulates into their `.grad` until it is zeroed, as in PyTorch. Inside
//! [`no_grad`] (or while a [`NoGradGuard`] lives) nothing is recorded.
//!
//! Ops whose operand shapes can disagree return `Result<_, TensorError>`, naming both
//! shapes. [`Generator`] reproduces PyTorch's CPU random generator bit for bit.
//!
//! ```
//! use ndarray::ArrayD;
//! use tempo_tensor::{no_grad, Tensor};
//!
//! let w = Tensor::<f64>::parameter(ArrayD::from_shape_vec(vec![2], vec![1.0, -2.0]).unwrap());
//! let x = Tensor::from_vec(&[2], vec![3.0, 4.0]).unwrap();
//! // loss = sum((w * x)^2)
//! let loss = w.mul(&x).unwrap().square().sum();
//! loss.backward().unwrap();
//! // d loss / d w = 2 (w x) x
//! let g = w.grad().clone().unwrap();
//! assert!((g[[0]] - 18.0).abs() < 1e-12 && (g[[1]] - -64.0).abs() < 1e-12);
//!
//! // An optimizer step: update in place without recording a graph.
//! no_grad(|| {
//!     let g = w.grad().clone().unwrap();
//!     w.data_mut().scaled_add(-0.1, &g);
//! });
//! w.zero_grad();
//! assert!(w.grad().is_none());
//! ```

#![forbid(unsafe_code)]

mod autograd;
mod data;
mod element;
mod error;
mod math;
mod ops;
mod rng;
mod tensor;

pub use autograd::{is_grad_enabled, no_grad, NoGradGuard};
pub use data::TensorData;
pub use element::{DType, Float};
pub use error::TensorError;
pub use rng::{Generator, GeneratorState};
pub use tensor::{Tensor, TensorId};
