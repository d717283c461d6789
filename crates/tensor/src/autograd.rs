//! Reverse-mode autograd: grad mode, graph nodes and the backward pass.
//!
//! Every op whose inputs require grad (while grad mode is on) returns a non-leaf tensor
//! holding a [`Node`]: its inputs and a closure mapping the output's gradient to the
//! inputs' gradients. Tensor ids grow with creation time, so an op's output always has
//! a larger id than its inputs: processing nodes in decreasing id order is a
//! topological order, and the backward pass needs only a max-heap, no hash map. A
//! non-leaf's gradient is gathered in its own `grad` slot while the pass runs and
//! taken out when the node is processed.

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use ndarray::ArrayD;

use crate::{Float, Tensor, TensorError};

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record a graph on this thread (true unless inside [`no_grad`] or while a
/// [`NoGradGuard`] lives).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Disables graph recording on this thread until dropped, then restores the previous
/// mode (PyTorch's `torch.no_grad()` context manager).
///
/// ```
/// use tempo_tensor::{is_grad_enabled, NoGradGuard};
/// {
///     let _guard = NoGradGuard::new();
///     assert!(!is_grad_enabled());
/// }
/// assert!(is_grad_enabled());
/// ```
#[derive(Debug)]
#[must_use = "grad mode is restored when the guard is dropped"]
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    /// Turns grad mode off for this thread.
    pub fn new() -> Self {
        let previous = GRAD_ENABLED.with(|g| g.replace(false));
        Self { previous }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Runs `f` with graph recording off (optimizer updates, evaluation), like
/// `with torch.no_grad():`. Results computed inside are constants.
///
/// ```
/// use tempo_tensor::{no_grad, Tensor};
/// let w = Tensor::<f64>::parameter(ndarray::arr1(&[1.0, 2.0]).into_dyn());
/// let y = no_grad(|| w.square());
/// assert!(!y.requires_grad());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Maps the output's gradient (and value) to one optional gradient per input, in the
/// order of the node's inputs. `None` means "no gradient for this input".
pub(crate) type BackwardFn<T> =
    Box<dyn Fn(ArrayD<T>, &ArrayD<T>, &[Tensor<T>]) -> Vec<Option<ArrayD<T>>> + Send + Sync>;

/// How a non-leaf tensor was computed.
pub(crate) struct Node<T: Float> {
    name: &'static str,
    inputs: Vec<Tensor<T>>,
    backward: BackwardFn<T>,
}

impl<T: Float> Node<T> {
    /// The op's name (for debugging output).
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }
}

/// Wraps an op's result: a non-leaf recording `backward` when grad mode is on and some
/// input requires grad, a constant otherwise (the closure is then never boxed).
pub(crate) fn record<T: Float, F>(
    name: &'static str,
    value: ArrayD<T>,
    inputs: &[&Tensor<T>],
    backward: F,
) -> Tensor<T>
where
    F: Fn(ArrayD<T>, &ArrayD<T>, &[Tensor<T>]) -> Vec<Option<ArrayD<T>>> + Send + Sync + 'static,
{
    if is_grad_enabled() && inputs.iter().any(|t| t.requires_grad()) {
        let node = Node {
            name,
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
            backward: Box::new(backward),
        };
        Tensor::from_node(value, node)
    } else {
        Tensor::from_array(value)
    }
}

/// A heap entry ordered by tensor id (largest first = latest created = processed first).
struct ById<T: Float>(Tensor<T>);

impl<T: Float> PartialEq for ById<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.id() == other.0.id()
    }
}
impl<T: Float> Eq for ById<T> {}
impl<T: Float> PartialOrd for ById<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T: Float> Ord for ById<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.id().cmp(&other.0.id())
    }
}

/// Adds `g` into a gradient slot (sets it when empty). Stored gradients are always in
/// standard (row-major, contiguous) layout, so optimizers may use `as_slice`.
fn accumulate<T: Float>(slot: &mut Option<ArrayD<T>>, g: ArrayD<T>) {
    match slot {
        Some(acc) => *acc += &g,
        None if g.is_standard_layout() => *slot = Some(g),
        None => *slot = Some(g.as_standard_layout().into_owned()),
    }
}

impl<T: Float> Tensor<T> {
    /// Backpropagates from this one-element tensor (usually a loss), seeding with 1:
    /// every leaf that requires grad and contributed to it gets the gradient added to
    /// its `.grad` (gradients accumulate until zeroed, as in PyTorch).
    ///
    /// Unlike PyTorch the graph is kept, so a second call accumulates again.
    /// Backward passes through one shared graph must not run concurrently.
    pub fn backward(&self) -> Result<(), TensorError> {
        let shape = self.shape();
        if self.numel() != 1 {
            return Err(TensorError::NotScalar {
                op: "backward",
                shape,
            });
        }
        self.backward_with(ArrayD::from_elem(shape, T::one()))
    }

    /// Backpropagates with an explicit output gradient of this tensor's shape
    /// (PyTorch's `backward(gradient)`).
    pub fn backward_with(&self, grad: ArrayD<T>) -> Result<(), TensorError> {
        if !self.requires_grad() {
            return Err(TensorError::Backward(
                "the tensor does not require grad and has no grad_fn".to_string(),
            ));
        }
        let shape = self.shape();
        if grad.shape() != shape.as_slice() {
            return Err(TensorError::ShapeMismatch {
                op: "backward",
                left: shape,
                right: grad.shape().to_vec(),
            });
        }
        if self.is_leaf() {
            accumulate(&mut self.grad_mut(), grad);
            return Ok(());
        }
        *self.grad_mut() = Some(grad);
        let mut heap = BinaryHeap::new();
        heap.push(ById(self.clone()));
        while let Some(ById(t)) = heap.pop() {
            let Some(g) = t.grad_mut().take() else {
                continue;
            };
            let Some(node) = t.node() else { continue };
            let grads = {
                let out = t.data();
                (node.backward)(g, &out, &node.inputs)
            };
            for (input, gi) in node.inputs.iter().zip(grads) {
                let Some(gi) = gi else { continue };
                if !input.requires_grad() {
                    continue;
                }
                let mut slot = input.grad_mut();
                if input.is_leaf() {
                    accumulate(&mut slot, gi);
                } else {
                    let first = slot.is_none();
                    accumulate(&mut slot, gi);
                    drop(slot);
                    if first {
                        heap.push(ById(input.clone()));
                    }
                }
            }
        }
        Ok(())
    }
}
