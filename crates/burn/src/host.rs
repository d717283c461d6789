//! [`HostParam`]: a parameter copied out of burn into host memory, the storage tempo's
//! optimizers step (through tempo-optim's [`Param`] seam) for one burn tensor.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tempo_optim::{LockScope, OptimError, Param, Slot, WithSlots};
use tempo_tensor::Float;

#[derive(Debug)]
struct Host<T> {
    shape: Vec<usize>,
    data: Vec<T>,
    grad: Option<Vec<T>>,
}

/// One parameter's elements and gradient, row-major, in host memory.
#[derive(Debug, Clone)]
pub(crate) struct HostParam<T>(Arc<Mutex<Host<T>>>);

impl<T: Float> HostParam<T> {
    /// A parameter of `shape` holding `data`, with gradient `grad`.
    pub(crate) fn new(shape: Vec<usize>, data: Vec<T>, grad: Option<Vec<T>>) -> Self {
        Self(Arc::new(Mutex::new(Host { shape, data, grad })))
    }

    fn lock_host(&self) -> MutexGuard<'_, Host<T>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The elements, taken out, and the gradient dropped (the parameter is left empty
    /// until the next [`HostParam::put`]).
    pub(crate) fn take_data(&self) -> Vec<T> {
        let mut h = self.lock_host();
        h.grad = None;
        std::mem::take(&mut h.data)
    }

    /// Puts the elements and the gradient of the next step in; the shape is the
    /// parameter's own.
    pub(crate) fn put(&self, data: Vec<T>, grad: Vec<T>) {
        let mut h = self.lock_host();
        h.data = data;
        h.grad = Some(grad);
    }
}

impl<T: Float> Param<T> for HostParam<T> {
    type Scratch = ();

    fn shape(&self) -> Vec<usize> {
        self.lock_host().shape.clone()
    }

    fn numel(&self) -> usize {
        self.lock_host().data.len()
    }

    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn has_grad(&self) -> bool {
        self.lock_host().grad.is_some()
    }

    fn zero_grad(&self) {
        self.lock_host().grad = None;
    }

    fn lock(
        params: &[Self],
        scope: LockScope,
        _scratch: &mut (),
        f: &mut WithSlots<'_, T>,
    ) -> Result<(), OptimError> {
        let mut guards = Vec::with_capacity(params.len());
        for (id, p) in params.iter().enumerate() {
            let g = p.lock_host();
            if g.grad.is_none() && scope == LockScope::WithGrad {
                continue;
            }
            if let Some(grad) = &g.grad {
                if grad.len() != g.data.len() {
                    return Err(OptimError::GradShapeMismatch {
                        param: id,
                        expected: g.shape.clone(),
                        got: vec![grad.len()],
                    });
                }
            }
            guards.push((id, g));
        }
        let mut slots: Vec<Slot<'_, T>> = guards
            .iter_mut()
            .map(|(id, g)| {
                let Host { data, grad, .. } = &mut **g;
                Slot {
                    id: *id,
                    data: data.as_mut_slice(),
                    grad: grad.as_deref(),
                }
            })
            .collect();
        f(&mut slots)
    }
}
