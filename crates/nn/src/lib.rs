//! `tempo-nn`: layers, activations, losses and PyTorch-compatible state dicts on
//! [`tempo_tensor`].
//!
//! A [`Module`] has a forward function and named parameters in a stable order, with
//! PyTorch's dotted names (`fc1.weight`), so a state dict moves between tempo and
//! PyTorch key for key. [`Linear::new`] initialises exactly as `nn.Linear` does from
//! the same seed.
//!
//! ```
//! use ndarray::arr2;
//! use tempo_nn::{mse_loss, Linear, Module, ReLU, Reduction, Sequential};
//! use tempo_tensor::{no_grad, Generator, Tensor};
//!
//! // torch.manual_seed(0); nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))
//! let mut rng = Generator::new(0);
//! let model = Sequential::<f32>::new()
//!     .with(Linear::new(2, 8, true, &mut rng))?
//!     .with(ReLU)?
//!     .with(Linear::new(8, 1, true, &mut rng))?;
//! let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
//!
//! let x = Tensor::from_array(arr2(&[[0.5f32, -1.0], [2.0, 0.25]]).into_dyn());
//! let y = Tensor::from_array(arr2(&[[1.0f32], [0.0]]).into_dyn());
//! let loss = mse_loss(&model.forward(&x)?, &y, Reduction::Mean)?;
//! loss.backward()?;
//!
//! // One plain SGD step, then clear the gradients.
//! no_grad(|| {
//!     for p in model.parameters() {
//!         let g = p.grad().clone().expect("every parameter took part");
//!         p.data_mut().scaled_add(-0.1, &g);
//!     }
//! });
//! model.zero_grad();
//!
//! // State dicts round-trip and refuse mismatched shapes.
//! let sd = model.state_dict();
//! model.load_state_dict(&sd)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod activation;
mod error;
mod linear;
mod loss;
mod module;
mod sequential;
mod state_dict;

pub use activation::{ReLU, Sigmoid, Tanh, GELU};
pub use error::NnError;
pub use linear::{kaiming_uniform_bound, linear_bias_bound, Linear};
pub use loss::{cross_entropy, l1_loss, mse_loss, CrossEntropyLoss, L1Loss, MSELoss, Reduction};
pub use module::Module;
pub use sequential::Sequential;
pub use state_dict::StateDict;
