//! `Tensor`: a shared handle to a value, its gradient and its place in the autograd graph.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use ndarray::ArrayD;

use crate::autograd::Node;
use crate::{Float, TensorError};

/// A tensor's identity: equal for clones of one handle, distinct for distinct tensors.
/// Optimizers use it to refuse a parameter that appears in two groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl TensorId {
    fn fresh() -> Self {
        TensorId(NEXT_ID.fetch_add(1, Ordering::Relaxed))
    }
}

struct Inner<T: Float> {
    id: TensorId,
    data: RwLock<ArrayD<T>>,
    /// A leaf's accumulated gradient; for a non-leaf, scratch space used only while a
    /// backward pass runs (empty otherwise, as PyTorch keeps no non-leaf grads).
    grad: RwLock<Option<ArrayD<T>>>,
    requires_grad: bool,
    /// How this tensor was computed, when it is the result of an op on tensors that
    /// require grad (PyTorch's `grad_fn`); `None` for leaves.
    node: Option<Node<T>>,
}

/// A tensor handle. Cloning is cheap and shares the value and the gradient.
///
/// Invariants: a tensor's gradient, when present, has the tensor's shape. Values made
/// by constructors and ops, and gradients stored by backward passes, are in standard
/// (row-major, contiguous) layout, so `as_slice()` succeeds on them; code that replaces
/// a value through [`Tensor::data_mut`] should keep it so (ops do not rely on it).
pub struct Tensor<T: Float> {
    inner: Arc<Inner<T>>,
}

impl<T: Float> Clone for Tensor<T> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Float> std::fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("shape", &self.shape())
            .field("dtype", &T::DTYPE)
            .field("requires_grad", &self.inner.requires_grad)
            .field("grad_fn", &self.node().map(|n| n.name()))
            .finish()
    }
}

fn read<X>(lock: &RwLock<X>) -> RwLockReadGuard<'_, X> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<X>(lock: &RwLock<X>) -> RwLockWriteGuard<'_, X> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

impl<T: Float> Tensor<T> {
    fn new(data: ArrayD<T>, requires_grad: bool) -> Self {
        let data = if data.is_standard_layout() {
            data
        } else {
            data.as_standard_layout().into_owned()
        };
        Self {
            inner: Arc::new(Inner {
                id: TensorId::fresh(),
                data: RwLock::new(data),
                grad: RwLock::new(None),
                requires_grad,
                node: None,
            }),
        }
    }

    /// The result of an op: a non-leaf that requires grad, recording how it was made.
    pub(crate) fn from_node(data: ArrayD<T>, node: Node<T>) -> Self {
        Self {
            inner: Arc::new(Inner {
                id: TensorId::fresh(),
                data: RwLock::new(data),
                grad: RwLock::new(None),
                requires_grad: true,
                node: Some(node),
            }),
        }
    }

    /// The recorded op, for non-leaf tensors.
    pub(crate) fn node(&self) -> Option<&Node<T>> {
        self.inner.node.as_ref()
    }

    /// Whether this tensor is a leaf: made directly rather than computed by an op that
    /// records a graph. Constants and parameters are leaves.
    pub fn is_leaf(&self) -> bool {
        self.inner.node.is_none()
    }

    /// A 0-d constant holding `value`.
    pub fn scalar(value: T) -> Self {
        Self::from_array(ndarray::arr0(value).into_dyn())
    }

    /// A constant of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::from_array(ArrayD::zeros(shape.to_vec()))
    }

    /// A constant of ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::from_array(ArrayD::ones(shape.to_vec()))
    }

    /// A parameter (requires grad) from row-major data and a shape.
    pub fn parameter_from_vec(shape: &[usize], data: Vec<T>) -> Result<Self, TensorError> {
        let t = Self::from_vec(shape, data)?;
        Ok(Self::parameter(t.to_array()))
    }

    /// A copy of the value, cut off from the graph (a constant leaf). Unlike PyTorch's
    /// `detach`, the copy does not share storage with `self`.
    pub fn detach(&self) -> Self {
        Self::from_array(self.to_array())
    }

    /// A copy of the value as an owned array.
    pub fn to_array(&self) -> ArrayD<T> {
        self.data().clone()
    }

    /// The elements in row-major order.
    pub fn to_vec(&self) -> Vec<T> {
        self.data().iter().copied().collect()
    }

    /// The single element of a one-element tensor (PyTorch's `.item()`).
    pub fn item(&self) -> Result<T, TensorError> {
        let d = self.data();
        if d.len() == 1 {
            if let Some(v) = d.iter().next() {
                return Ok(*v);
            }
        }
        Err(TensorError::NotScalar {
            op: "item",
            shape: d.shape().to_vec(),
        })
    }

    /// A constant tensor (no grad).
    pub fn from_array(data: ArrayD<T>) -> Self {
        Self::new(data, false)
    }

    /// A leaf tensor that requires grad: a trainable parameter.
    pub fn parameter(data: ArrayD<T>) -> Self {
        Self::new(data, true)
    }

    /// A tensor from row-major data and a shape.
    pub fn from_vec(shape: &[usize], data: Vec<T>) -> Result<Self, TensorError> {
        let expected: usize = shape.iter().product();
        let found = data.len();
        ArrayD::from_shape_vec(shape.to_vec(), data)
            .map(Self::from_array)
            .map_err(|_| TensorError::ElementCount {
                shape: shape.to_vec(),
                expected,
                found,
            })
    }

    /// This tensor's identity.
    pub fn id(&self) -> TensorId {
        self.inner.id
    }

    /// Whether two handles are the same tensor.
    pub fn ptr_eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether gradients flow into this tensor.
    pub fn requires_grad(&self) -> bool {
        self.inner.requires_grad
    }

    /// The shape.
    pub fn shape(&self) -> Vec<usize> {
        read(&self.inner.data).shape().to_vec()
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        read(&self.inner.data).len()
    }

    /// Reads the value.
    pub fn data(&self) -> RwLockReadGuard<'_, ArrayD<T>> {
        read(&self.inner.data)
    }

    /// Writes the value in place (what an optimizer does, outside autograd).
    pub fn data_mut(&self) -> RwLockWriteGuard<'_, ArrayD<T>> {
        write(&self.inner.data)
    }

    /// Reads the gradient slot (`None` until a backward pass reaches this tensor, or
    /// after `zero_grad`).
    pub fn grad(&self) -> RwLockReadGuard<'_, Option<ArrayD<T>>> {
        read(&self.inner.grad)
    }

    /// Writes the gradient slot.
    pub fn grad_mut(&self) -> RwLockWriteGuard<'_, Option<ArrayD<T>>> {
        write(&self.inner.grad)
    }

    /// Replaces the gradient. Errs if its shape is not the tensor's.
    pub fn set_grad(&self, grad: Option<ArrayD<T>>) -> Result<(), TensorError> {
        if let Some(g) = &grad {
            let shape = self.shape();
            if g.shape() != shape.as_slice() {
                return Err(TensorError::ShapeMismatch {
                    op: "set_grad",
                    left: shape,
                    right: g.shape().to_vec(),
                });
            }
        }
        *self.grad_mut() = grad;
        Ok(())
    }

    /// Drops the gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        *self.grad_mut() = None;
    }
}
