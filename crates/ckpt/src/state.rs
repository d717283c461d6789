//! The plain state types checkpoints carry: a module's state dict (defined here, as a
//! list of named tensors) and an optimizer's state dict (tempo-optim's types).

use tempo_tensor::TensorData;

pub use tempo_optim::{OptimizerStateDict, ParamState, StateValue};

/// A module's state dict: `(dotted name, tensor)` in PyTorch's order (`fc1.weight`,
/// `fc1.bias`, ...).
pub type ModuleStateDict = Vec<(String, TensorData)>;
