//! `OptimError`: errors from building, stepping, saving and loading optimizers.

use tempo_param_groups::ParamGroupError;
use tempo_tensor::TensorError;
use thiserror::Error;

/// Everything that can go wrong when building, stepping, saving or loading an optimizer.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum OptimError {
    /// A constructor argument is out of its valid range (PyTorch's `ValueError`).
    #[error("{optimizer}: invalid value for `{name}`: {value} (expected {expected})")]
    InvalidHyperparameter {
        /// The optimizer's PyTorch class name.
        optimizer: &'static str,
        /// The hyperparameter, by PyTorch's name (`lr`, `betas[0]`, `etas`, ...).
        name: String,
        /// The offending value, as written.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// A constructor argument has the wrong type (a string where a number is expected).
    #[error("{optimizer}: `{name}` must be {expected}, found {found}")]
    WrongArgumentType {
        /// The optimizer's PyTorch class name.
        optimizer: &'static str,
        /// The argument.
        name: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A keyword argument that the optimizer does not take.
    #[error("{optimizer}: unknown argument `{name}` (expected one of: {accepted})")]
    UnknownArgument {
        /// The optimizer's PyTorch class name.
        optimizer: &'static str,
        /// The unknown argument.
        name: String,
        /// The accepted arguments, comma separated.
        accepted: String,
    },
    /// An optimizer class name tempo does not know.
    #[error("unknown optimizer `{name}` (expected one of: {accepted})")]
    UnknownOptimizer {
        /// The name that was asked for.
        name: String,
        /// The known names, comma separated.
        accepted: String,
    },
    /// An option PyTorch has but tempo does not implement (`fused=True`, `capturable=True`, ...).
    #[error("{optimizer}: `{option}` is not supported by tempo ({reason})")]
    Unsupported {
        /// The optimizer's PyTorch class name.
        optimizer: &'static str,
        /// The option.
        option: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// The optimizer was given no parameters at all.
    #[error("optimizer got an empty parameter list")]
    EmptyParameters,
    /// A parameter index in a spec does not exist.
    #[error("param group {group} names parameter {index}, but only {len} parameters were given")]
    ParamIndexOutOfRange {
        /// The group.
        group: usize,
        /// The index.
        index: usize,
        /// How many parameters there are.
        len: usize,
    },
    /// A parameter already belongs to another group (PyTorch's "some parameters appear in
    /// more than one parameter group").
    #[error("a parameter of the new group {group} already appears in param group {other}: some parameters appear in more than one parameter group")]
    ParamInTwoGroups {
        /// The group being added.
        group: usize,
        /// The group that already holds the parameter.
        other: usize,
    },
    /// A parameter appears twice in the same group.
    #[error("param group {group} lists the same parameter at positions {first} and {second}")]
    DuplicateParam {
        /// The group.
        group: usize,
        /// The first position.
        first: usize,
        /// The second position.
        second: usize,
    },
    /// The optimizer supports a single param group only (LBFGS).
    #[error("{optimizer} doesn't support per-parameter options (parameter groups): expected 1 group, found {found}")]
    SingleGroupOnly {
        /// The optimizer's PyTorch class name.
        optimizer: &'static str,
        /// How many groups were given.
        found: usize,
    },
    /// A group lacks a hyperparameter the step needs.
    #[error("param group {group} has no `{key}`")]
    MissingHyperparameter {
        /// The group.
        group: usize,
        /// The key.
        key: String,
    },
    /// A group's hyperparameter has the wrong type.
    #[error("param group {group}: `{key}` must be {expected}, found {found}")]
    WrongHyperparameterType {
        /// The group.
        group: usize,
        /// The key.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// A parameter has a shape the optimizer cannot step (Muon: only 2-D matrices).
    #[error("{optimizer} only supports {expected} parameters, whereas parameter {param} has shape {shape:?}")]
    UnsupportedParamShape {
        /// The optimizer's PyTorch class name.
        optimizer: &'static str,
        /// The parameter's state-dict id.
        param: usize,
        /// The parameter's shape.
        shape: Vec<usize>,
        /// The shapes the optimizer supports.
        expected: &'static str,
    },
    /// A gradient does not have its parameter's shape.
    #[error("parameter {param}: gradient shape {got:?} does not match the parameter's shape {expected:?}")]
    GradShapeMismatch {
        /// The parameter's state-dict id.
        param: usize,
        /// The parameter's shape.
        expected: Vec<usize>,
        /// The gradient's shape.
        got: Vec<usize>,
    },
    /// The parameter's storage cannot be stepped (a dtype or device the storage does
    /// not support, a storage error); reported by a [`crate::Param`] implementation.
    #[error("parameter {param}: {reason}")]
    Storage {
        /// The parameter's state-dict id.
        param: usize,
        /// What is wrong, and what is supported.
        reason: String,
    },
    /// A loaded state dict has a different number of param groups.
    #[error("loaded state dict has {got} parameter groups, but the optimizer has {expected}")]
    GroupCountMismatch {
        /// The optimizer's group count.
        expected: usize,
        /// The state dict's group count.
        got: usize,
    },
    /// A loaded param group has a different number of parameters.
    #[error("loaded state dict contains a parameter group that doesn't match the size of optimizer's group: group {group} has {got} parameters, the optimizer's has {expected}")]
    GroupSizeMismatch {
        /// The group.
        group: usize,
        /// The optimizer's group size.
        expected: usize,
        /// The state dict's group size.
        got: usize,
    },
    /// A loaded param group has no valid `params` list of integer ids.
    #[error("loaded param group {group} has no `params` list of integer ids")]
    MissingParamIds {
        /// The group.
        group: usize,
    },
    /// Loaded state refers to a parameter id that no group lists.
    #[error("loaded state refers to parameter id {param}, which no loaded param group lists")]
    UnknownStateId {
        /// The id.
        param: usize,
    },
    /// A state tensor has the wrong shape for its parameter.
    #[error("state `{key}` of parameter {param} has shape {got:?}, expected {expected:?}")]
    StateShapeMismatch {
        /// The parameter's state-dict id.
        param: usize,
        /// The state name.
        key: String,
        /// The shape the parameter needs.
        expected: Vec<usize>,
        /// The shape found.
        got: Vec<usize>,
    },
    /// A state entry the optimizer needs is missing.
    #[error("state of parameter {param} has no `{key}`")]
    MissingState {
        /// The parameter's state-dict id.
        param: usize,
        /// The state name.
        key: String,
    },
    /// A state entry has the wrong type.
    #[error("state `{key}` of parameter {param} must be {expected}, found {found}")]
    WrongStateType {
        /// The parameter's state-dict id.
        param: usize,
        /// The state name.
        key: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: &'static str,
    },
    /// The optimizer needs a closure (`step_with_closure`), as LBFGS does.
    #[error("{optimizer} requires a closure: call step_with_closure")]
    ClosureRequired {
        /// The optimizer's PyTorch class name.
        optimizer: &'static str,
    },
    /// A spec could not be parsed.
    #[error("invalid optimizer spec: {message}")]
    InvalidSpec {
        /// What is wrong.
        message: String,
    },
    /// [`set_num_threads`](crate::set_num_threads) was given 0 threads, or came after the
    /// worker threads had started with another number.
    #[error("set_num_threads: expected {expected}, found {requested}")]
    NumThreads {
        /// The number asked for.
        requested: usize,
        /// What would have been accepted, and why.
        expected: String,
    },
    /// An error reading or writing a param group through the scheduler seam.
    #[error(transparent)]
    ParamGroup(#[from] ParamGroupError),
    /// An error from a tensor operation.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}
