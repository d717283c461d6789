//! The `Optimizer` trait: PyTorch's `torch.optim.Optimizer` API.

use tempo_param_groups::OptimizerParamGroups;
use tempo_tensor::{Float, Tensor};

use crate::{OptimError, OptimizerStateDict, Param, ParamGroup};

/// An optimizer over parameters of element type `T`, in PyTorch's terms, stored in `P`
/// (tempo's [`Tensor`] by default; any [`Param`]).
///
/// The trait is object-safe: `Box<dyn Optimizer<T>>` is what [`crate::build_optimizer`]
/// returns, and it coerces to `&mut dyn OptimizerParamGroups` for a scheduler.
///
/// Every step reads its hyperparameters from the group dicts, so a scheduler's writes
/// (`lr`, `betas`, `momentum`, ...) take effect at the next step.
pub trait Optimizer<T: Float, P: Param<T> = Tensor<T>>: OptimizerParamGroups + Send {
    /// PyTorch's class name (`"Adam"`, `"SGD"`, ...).
    fn name(&self) -> &'static str;

    /// One optimization step over every parameter that has a gradient. Parameters whose
    /// gradient is `None` are skipped entirely (no state, no step count), as in PyTorch.
    ///
    /// Returns whether any parameter was updated, so a caller can tell a skipped step
    /// from a real one. LBFGS needs a closure and returns `Err(ClosureRequired)` here.
    fn step(&mut self) -> Result<bool, OptimError>;

    /// PyTorch's `step(closure)`: runs `closure` (which recomputes the loss and the
    /// gradients) and steps. The default calls the closure once, then [`Optimizer::step`],
    /// and returns the closure's loss; LBFGS calls it as often as its line search needs
    /// and returns the loss of the first call.
    fn step_with_closure(
        &mut self,
        closure: &mut dyn FnMut() -> Result<f64, OptimError>,
    ) -> Result<Option<f64>, OptimError> {
        let loss = closure()?;
        self.step()?;
        Ok(Some(loss))
    }

    /// Sets every parameter's gradient to `None` (PyTorch's default `set_to_none=True`).
    fn zero_grad(&mut self);

    /// The parameters, in state-dict id order (group by group).
    fn params(&self) -> Vec<P>;

    /// Whether the update is elementwise: each element of a parameter moves by its own
    /// value, gradient and state, and by scalars shared by the whole parameter (the step
    /// count), so any slice of a parameter can be stepped on its own, with the same
    /// numbers. True for every optimizer built on the elementwise engine; false (the
    /// default) for Adafactor (a factored second moment over rows and columns), Muon (an
    /// orthogonalised matrix) and LBFGS (every parameter at once). Distributed training
    /// shards the state of an elementwise optimizer by element ranges.
    fn is_elementwise(&self) -> bool {
        false
    }

    /// PyTorch's `add_param_group`: missing hyperparameters are filled from the
    /// optimizer's defaults; a parameter already in a group is an error.
    fn add_param_group(&mut self, group: ParamGroup<T, P>) -> Result<(), OptimError>;

    /// The state in PyTorch's `state_dict()` layout (a copy, unlike PyTorch's aliases).
    fn state_dict(&self) -> OptimizerStateDict;

    /// PyTorch's `load_state_dict`: the saved groups (all hyperparameters, including `lr`
    /// and `initial_lr`) replace the current ones, and the saved state is mapped onto the
    /// current parameters by position. Checks the group count, each group's size and
    /// every state tensor's shape before changing anything.
    fn load_state_dict(&mut self, state_dict: &OptimizerStateDict) -> Result<(), OptimError>;
}
