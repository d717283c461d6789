//! `tempo-tensor`: ndarray-backed tensors in f32 and f64 with reverse-mode autograd.
//!
//! A [`Tensor`] is a cheap, clonable handle (like a PyTorch tensor object): clones
//! share the same value and gradient. Leaf tensors made with [`Tensor::parameter`]
//! require grad; `backward()` on a scalar result accumulates into their `.grad`
//! until it is zeroed, as in PyTorch.
//!
//! ```
//! use ndarray::ArrayD;
//! use tempo_tensor::Tensor;
//!
//! let w = Tensor::<f64>::parameter(ArrayD::from_shape_vec(vec![2], vec![1.0, -2.0]).unwrap());
//! assert_eq!(w.shape(), vec![2]);
//! assert!(w.grad().is_none());
//! w.data_mut()[[0]] = 3.0;
//! assert!((w.data()[[0]] - 3.0).abs() < 1e-15);
//! ```

mod data;
mod element;
mod error;
mod tensor;

pub use data::TensorData;
pub use element::{DType, Float};
pub use error::TensorError;
pub use tensor::{Tensor, TensorId};
