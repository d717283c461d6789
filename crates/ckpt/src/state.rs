//! The plain state types checkpoints carry, as the optimizer and module crates define
//! them: a module's state dict and an optimizer's state dict.

use tempo_param_groups::Dict;
use tempo_tensor::TensorData;

/// A module's state dict: `(dotted name, tensor)` in PyTorch's order (`fc1.weight`,
/// `fc1.bias`, ...).
pub type ModuleStateDict = Vec<(String, TensorData)>;

/// One value of an optimizer's per-parameter state (`step`, `exp_avg`, `momentum_buffer`).
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    /// A tensor (PyTorch keeps `step` as a 0-d tensor).
    Tensor(TensorData),
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// `None` (SGD's `momentum_buffer` before the first step).
    None,
    /// A list of values.
    List(Vec<StateValue>),
}

/// The state of one parameter, in PyTorch's key order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamState {
    /// `(key, value)` pairs.
    pub entries: Vec<(String, StateValue)>,
}

/// An optimizer's state dict in PyTorch's layout.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerStateDict {
    /// Per-parameter state keyed by the parameter's integer id, in insertion order.
    pub state: Vec<(usize, ParamState)>,
    /// The param groups: hyperparameters, then `"params": [ids]` last.
    pub param_groups: Vec<Dict>,
}
