//! Tensor operations: forward values with ndarray and the backward closures that
//! autograd records. One file per op family.

mod elementwise;
mod gemm;
mod matmul;
mod reduce;
mod shape;

use ndarray::{ArrayD, Axis, IxDyn};

use crate::{Float, TensorError};

/// The shape two operands broadcast to (NumPy/PyTorch rules: align trailing axes, a
/// length of 1 stretches).
pub(crate) fn broadcast_shape(
    op: &'static str,
    a: &[usize],
    b: &[usize],
) -> Result<Vec<usize>, TensorError> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(TensorError::ShapeMismatch {
                op,
                left: a.to_vec(),
                right: b.to_vec(),
            });
        };
    }
    Ok(out)
}

/// Sums a broadcast gradient back down to `shape` (the reverse of broadcasting).
pub(crate) fn sum_to_shape<T: Float>(g: ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    if g.shape() == shape {
        return g;
    }
    let mut g = g;
    let extra = g.ndim() - shape.len();
    for _ in 0..extra {
        g = g.sum_axis(Axis(0));
    }
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 && g.shape()[i] != 1 {
            g = g.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    g
}

/// Checks that `axis` exists in a tensor of rank `ndim`.
pub(crate) fn check_axis(op: &'static str, axis: usize, ndim: usize) -> Result<(), TensorError> {
    if axis < ndim {
        Ok(())
    } else {
        Err(TensorError::AxisOutOfRange { op, axis, ndim })
    }
}

/// Reshapes an owned array in row-major order (copying only if it is not contiguous).
/// The caller guarantees the element count matches.
pub(crate) fn reshape_owned<T: Float>(a: ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    let a = if a.is_standard_layout() {
        a
    } else {
        a.as_standard_layout().into_owned()
    };
    match a.into_shape_with_order(IxDyn(shape)) {
        Ok(r) => r,
        // Unreachable for matching element counts and standard layout.
        Err(e) => panic!("tempo-tensor internal reshape failed: {e}"),
    }
}

/// Runs `f` on the values of two tensors, taking one read lock when they are the same
/// tensor (`x.mul(&x)`), so a value is never read-locked twice by one thread.
pub(crate) fn read2<T: Float, R>(
    a: &crate::Tensor<T>,
    b: &crate::Tensor<T>,
    f: impl FnOnce(&ArrayD<T>, &ArrayD<T>) -> R,
) -> R {
    let ga = a.data();
    if a.ptr_eq(b) {
        f(&ga, &ga)
    } else {
        let gb = b.data();
        f(&ga, &gb)
    }
}

/// An array of `shape` from row-major elements. The caller guarantees the count.
pub(crate) fn array_from<T: Float>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    match ArrayD::from_shape_vec(IxDyn(shape), v) {
        Ok(a) => a,
        // Unreachable: every caller computes `v` with exactly `shape`'s element count.
        Err(e) => panic!("tempo-tensor internal array construction failed: {e}"),
    }
}
