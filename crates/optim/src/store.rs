//! The parameter-storage seam: what a step needs from the storage of a parameter, so
//! that every optimizer steps tempo-tensor's tensors or any other framework's.
//!
//! A step asks the storage for each parameter's data (written), its gradient (read),
//! its shape, and nothing else; tempo keeps the optimizer state (moments, step counts)
//! itself, in plain vectors. [`Param`] is that request. Its one substantial method,
//! [`Param::lock`], hands the optimizer every parameter of the step locked together, as
//! slices, through a callback (frameworks such as candle give `&mut` access to a
//! storage only inside a callback), so the engine can run all updates of the step as
//! one multi-threaded batch without copying.

use std::sync::{RwLockReadGuard, RwLockWriteGuard};

use ndarray::ArrayD;
use tempo_tensor::{Float, Tensor};

use crate::OptimError;

/// Which parameters [`Param::lock`] hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    /// Only the parameters that have a gradient (an elementwise step: PyTorch skips a
    /// parameter whose `grad` is `None`). Every slot's `grad` is `Some`.
    WithGrad,
    /// Every parameter; a slot's `grad` is `None` where the parameter has none (LBFGS,
    /// which reads a missing gradient as zeros and moves every parameter).
    All,
}

/// One parameter locked for a step: its elements in row-major (C) order, to write, and
/// its gradient's elements in the same order, to read.
#[derive(Debug)]
pub struct Slot<'a, T> {
    /// The parameter's position in the list given to [`Param::lock`] (its state-dict id).
    pub id: usize,
    /// The parameter's elements.
    pub data: &'a mut [T],
    /// The gradient's elements (as many as `data`), or `None` if it has no gradient.
    pub grad: Option<&'a [T]>,
}

/// The callback [`Param::lock`] lends the slots to: it updates them and returns
/// `Ok(())`, or an `Err` that stops the step.
pub type WithSlots<'f, T> = dyn FnMut(&mut [Slot<'_, T>]) -> Result<(), OptimError> + 'f;

/// The storage of one parameter, as a step sees it.
///
/// Implemented for tempo-tensor's [`Tensor`]; another framework implements it for a
/// handle on its own variables (a shared, cheaply cloned reference, like a `Tensor`: the
/// optimizer keeps one per parameter in its groups). Every optimizer is generic over
/// it, with `Tensor<T>` as the default, so `Adam<f32>` is `Adam<f32, Tensor<f32>>`.
///
/// # Plugging in a foreign framework
///
/// 1. Give the optimizer a handle per parameter that can reach the parameter's data and
///    its current gradient. Where the framework keeps gradients apart from variables
///    (candle's `GradStore`), the handle carries a gradient slot that the adapter fills
///    before the step and clears after it ([`Param::zero_grad`]).
/// 2. In [`Param::lock`], check everything that can fail (a gradient's shape, a dtype
///    or device the adapter does not support) for **all** parameters first, returning an
///    `Err` ([`OptimError::GradShapeMismatch`], [`OptimError::Storage`]) before calling
///    `f`, so that a failed step changes nothing. Then lock the parameters and call `f`
///    with their slots, in increasing id order: once with all of them, or, if holding
///    every lock at once is impractical, several times with consecutive runs of them.
/// 3. A storage that cannot lend its memory (a GPU) copies each parameter and gradient
///    into host vectors, calls `f` on those, and writes the data back.
///
/// The optimizer never reads or writes a parameter outside `lock`, and never keeps a
/// slice after `f` returns.
pub trait Param<T: Float>: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// What [`Param::lock`] keeps between steps so that a steady-state step does not
    /// allocate (the vectors of its locks); `()` if it needs nothing. The optimizer
    /// owns one and passes it to every call.
    type Scratch: Default + Send + Sync;

    /// The parameter's shape.
    fn shape(&self) -> Vec<usize>;

    /// The number of elements.
    fn numel(&self) -> usize;

    /// Whether `self` and `other` are the same parameter (the same storage): an
    /// optimizer refuses a parameter listed twice.
    fn same(&self, other: &Self) -> bool;

    /// Whether the parameter has a gradient now.
    fn has_grad(&self) -> bool;

    /// Drops the gradient (PyTorch's `zero_grad(set_to_none=True)`).
    fn zero_grad(&self);

    /// Locks the parameters of `params` that `scope` selects (data for writing, gradient
    /// for reading) and calls `f` with their [`Slot`]s in increasing id order (the id of
    /// `params[i]` is `i`), once or in several consecutive runs; returns `f`'s first
    /// `Err`, and stops there.
    ///
    /// Checks before the first call of `f` everything that can fail: a gradient whose
    /// shape differs from its parameter's is [`OptimError::GradShapeMismatch`]; a storage
    /// the implementation cannot step is [`OptimError::Storage`].
    fn lock(
        params: &[Self],
        scope: LockScope,
        scratch: &mut Self::Scratch,
        f: &mut WithSlots<'_, T>,
    ) -> Result<(), OptimError>;
}

/// A tensor locked for a step: its data (written), its gradient (read), and a
/// contiguous copy of the gradient if it is not contiguous itself.
///
/// The copy is boxed: rare, it allocates anyway, and the box keeps a lock at 48 bytes
/// instead of 152, which a step moves into the vector of locks without a `memcpy`
/// call (about a tenth of a small step's fixed cost per parameter).
struct TensorLock<'a, T> {
    id: usize,
    data: RwLockWriteGuard<'a, ArrayD<T>>,
    grad: RwLockReadGuard<'a, Option<ArrayD<T>>>,
    contiguous: Option<Box<ArrayD<T>>>,
}

/// The [`Param::Scratch`] of tempo's [`Tensor`]: the allocations of a step's locks and
/// slots, kept between steps.
pub struct TensorLocks<T: 'static> {
    locks: Spare<TensorLock<'static, T>>,
    slots: Spare<Slot<'static, T>>,
}

impl<T: 'static> Default for TensorLocks<T> {
    fn default() -> Self {
        Self {
            locks: Spare::default(),
            slots: Spare::default(),
        }
    }
}

impl<T: 'static> std::fmt::Debug for TensorLocks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorLocks")
            .field("locks", &self.locks)
            .field("slots", &self.slots)
            .finish()
    }
}

impl<T: Float> Param<T> for Tensor<T> {
    type Scratch = TensorLocks<T>;

    fn shape(&self) -> Vec<usize> {
        Tensor::shape(self)
    }

    fn numel(&self) -> usize {
        Tensor::numel(self)
    }

    fn same(&self, other: &Self) -> bool {
        self.ptr_eq(other)
    }

    fn has_grad(&self) -> bool {
        self.grad().is_some()
    }

    fn zero_grad(&self) {
        Tensor::zero_grad(self);
    }

    fn lock(
        params: &[Self],
        scope: LockScope,
        scratch: &mut TensorLocks<T>,
        f: &mut WithSlots<'_, T>,
    ) -> Result<(), OptimError> {
        let mut locked: Vec<TensorLock<'_, T>> = scratch.locks.lend();
        if let Err(e) = lock_tensors(params, scope, &mut locked) {
            scratch.locks.restore(locked);
            return Err(e);
        }
        let mut slots: Vec<Slot<'_, T>> = scratch.slots.lend();
        for l in &mut locked {
            let TensorLock {
                id,
                data,
                grad,
                contiguous,
            } = l;
            let grad = grad.as_ref().map(|g| match g.as_slice() {
                Some(s) => s,
                None => contiguous
                    .insert(Box::new(g.as_standard_layout().into_owned()))
                    .as_slice()
                    .unwrap_or(&[]),
            });
            if data.as_slice().is_none() {
                **data = data.as_standard_layout().into_owned();
            }
            slots.push(Slot {
                id: *id,
                data: data.as_slice_mut().unwrap_or(&mut []),
                grad,
            });
        }
        let result = f(&mut slots);
        scratch.slots.restore(slots);
        scratch.locks.restore(locked);
        result
    }
}

/// Locks, in id order, every tensor `scope` selects (into `locked`), checking each
/// gradient's shape.
fn lock_tensors<'a, T: Float>(
    params: &'a [Tensor<T>],
    scope: LockScope,
    locked: &mut Vec<TensorLock<'a, T>>,
) -> Result<(), OptimError> {
    for (id, p) in params.iter().enumerate() {
        let grad = p.grad();
        if grad.is_none() && scope == LockScope::WithGrad {
            continue;
        }
        let data = p.data_mut();
        if let Some(g) = grad.as_ref() {
            if g.shape() != data.shape() {
                return Err(OptimError::GradShapeMismatch {
                    param: id,
                    expected: data.shape().to_vec(),
                    got: g.shape().to_vec(),
                });
            }
        }
        locked.push(TensorLock {
            id,
            data,
            grad,
            contiguous: None,
        });
    }
    Ok(())
}

/// An empty vector, kept between steps only for its allocation, and lent to each step
/// as a vector of the same type with the step's lifetimes (`Slot<'step, T>` for a
/// `Spare<Slot<'static, T>>`).
///
/// Invariant: the vector is always empty.
pub(crate) struct Spare<X>(Vec<X>);

// SAFETY: a `Spare` never holds an `X` (it is always empty), only an allocation, which
// any thread may own and free.
unsafe impl<X> Send for Spare<X> {}
// SAFETY: as above; `&Spare` gives access to nothing but the (empty) vector's capacity.
unsafe impl<X> Sync for Spare<X> {}

impl<X> Default for Spare<X> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<X> std::fmt::Debug for Spare<X> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Spare(capacity {})", self.0.capacity())
    }
}

impl<X> Spare<X> {
    /// The kept allocation, as an empty `Vec<Y>` (`Y` is `X` with other lifetimes).
    pub(crate) fn lend<Y>(&mut self) -> Vec<Y> {
        recycle(std::mem::take(&mut self.0))
    }

    /// Keeps `v`'s allocation (dropping its elements) until the next `lend`.
    pub(crate) fn restore<Y>(&mut self, v: Vec<Y>) {
        self.0 = recycle(v);
    }
}

/// Empties `v` and returns its allocation as a `Vec<Y>`. For types of the same size and
/// alignment (here: the same type with other lifetimes), `collect` reuses the source
/// allocation in place, so this does not allocate; the allocation test checks it.
fn recycle<X, Y>(mut v: Vec<X>) -> Vec<Y> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector was emptied"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64]) -> Tensor<f64> {
        Tensor::parameter(ArrayD::from_shape_vec(vec![v.len()], v.to_vec()).unwrap())
    }

    #[test]
    fn lock_hands_out_the_selected_tensors_in_id_order() {
        let ps = [t(&[1.0, 2.0]), t(&[3.0]), t(&[4.0, 5.0, 6.0])];
        ps[0]
            .set_grad(Some(ArrayD::from_elem(vec![2], 0.5)))
            .unwrap();
        ps[2]
            .set_grad(Some(ArrayD::from_elem(vec![3], 0.25)))
            .unwrap();
        let mut scratch = TensorLocks::default();
        let mut seen = Vec::new();
        Param::lock(&ps, LockScope::WithGrad, &mut scratch, &mut |slots| {
            for s in slots.iter_mut() {
                seen.push((s.id, s.grad.map(<[f64]>::to_vec)));
                let g = s.grad.unwrap_or(&[]);
                for (d, &g) in s.data.iter_mut().zip(g) {
                    *d -= g;
                }
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [(0, Some(vec![0.5, 0.5])), (2, Some(vec![0.25, 0.25, 0.25]))]
        );
        assert_eq!(ps[0].to_vec(), [0.5, 1.5]);
        assert_eq!(ps[2].to_vec(), [3.75, 4.75, 5.75]);
        let mut ids = Vec::new();
        Param::lock(&ps, LockScope::All, &mut scratch, &mut |slots| {
            ids.extend(slots.iter().map(|s| (s.id, s.grad.is_some())));
            Ok(())
        })
        .unwrap();
        assert_eq!(ids, [(0, true), (1, false), (2, true)]);
    }

    #[test]
    fn a_wrong_gradient_shape_is_refused_before_anything_is_lent() {
        let ps = [t(&[1.0, 2.0]), t(&[3.0])];
        ps[0]
            .set_grad(Some(ArrayD::from_elem(vec![2], 0.5)))
            .unwrap();
        *ps[1].grad_mut() = Some(ArrayD::from_elem(vec![2], 0.5));
        let mut called = false;
        let r = Param::lock(
            &ps,
            LockScope::WithGrad,
            &mut TensorLocks::default(),
            &mut |_| {
                called = true;
                Ok(())
            },
        );
        assert_eq!(
            r,
            Err(OptimError::GradShapeMismatch {
                param: 1,
                expected: vec![1],
                got: vec![2],
            })
        );
        assert!(!called);
    }
}
