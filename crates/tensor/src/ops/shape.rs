//! Shape and indexing ops: reshape, transpose, row slices and selections, concatenation.

use std::ops::Range;

use ndarray::{ArrayD, Axis, Slice};

use super::{check_axis, reshape_owned};
use crate::autograd::record;
use crate::{Float, Tensor, TensorError};

impl<T: Float> Tensor<T> {
    /// The same elements in row-major order with a new shape of the same size.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor<T>, TensorError> {
        let old = self.shape();
        let expected: usize = shape.iter().product();
        if expected != self.numel() {
            return Err(TensorError::ShapeMismatch {
                op: "reshape",
                left: old,
                right: shape.to_vec(),
            });
        }
        let value = reshape_owned(self.to_array(), shape);
        Ok(record("reshape", value, &[self], move |g, _, _| {
            vec![Some(reshape_owned(g, &old))]
        }))
    }

    /// Swaps two axes.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor<T>, TensorError> {
        let ndim = self.data().ndim();
        check_axis("transpose", a, ndim)?;
        check_axis("transpose", b, ndim)?;
        let value = {
            let d = self.data();
            let mut v = d.view();
            v.swap_axes(a, b);
            v.as_standard_layout().into_owned()
        };
        Ok(record("transpose", value, &[self], move |g, _, _| {
            let mut g = g;
            g.swap_axes(a, b);
            vec![Some(g.as_standard_layout().into_owned())]
        }))
    }

    /// The rows `range` along the first axis (a mini-batch: PyTorch's `x[start:end]`).
    /// Errs when the range is reversed or runs past the end.
    pub fn rows(&self, range: Range<usize>) -> Result<Tensor<T>, TensorError> {
        let shape = self.shape();
        let Some(&len) = shape.first() else {
            return Err(TensorError::Rank {
                op: "rows",
                expected: "a tensor of rank >= 1",
                shape,
            });
        };
        if range.start > range.end || range.end > len {
            return Err(TensorError::InvalidArgument {
                op: "rows",
                reason: format!("range {range:?} does not fit an axis of length {len}"),
            });
        }
        let value = self
            .data()
            .slice_axis(Axis(0), Slice::from(range.clone()))
            .to_owned();
        Ok(record("rows", value, &[self], move |g, _, _| {
            let mut gx = ArrayD::zeros(shape.clone());
            gx.slice_axis_mut(Axis(0), Slice::from(range.clone()))
                .assign(&g);
            vec![Some(gx)]
        }))
    }

    /// The rows at `indices` along the first axis, in that order (repeats allowed):
    /// PyTorch's `index_select(0, indices)`.
    pub fn index_select(&self, indices: &[usize]) -> Result<Tensor<T>, TensorError> {
        let shape = self.shape();
        let Some(&len) = shape.first() else {
            return Err(TensorError::Rank {
                op: "index_select",
                expected: "a tensor of rank >= 1",
                shape,
            });
        };
        if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
            return Err(TensorError::IndexOutOfRange {
                op: "index_select",
                index: bad,
                len,
            });
        }
        let value = self.data().select(Axis(0), indices);
        let indices = indices.to_vec();
        Ok(record("index_select", value, &[self], move |g, _, _| {
            let mut gx = ArrayD::zeros(shape.clone());
            for (row, &i) in g.axis_iter(Axis(0)).zip(&indices) {
                let mut dst = gx.index_axis_mut(Axis(0), i);
                dst += &row;
            }
            vec![Some(gx)]
        }))
    }

    /// Joins tensors along `axis`; all other axes must agree (PyTorch's `torch.cat`).
    pub fn concat(tensors: &[&Tensor<T>], axis: usize) -> Result<Tensor<T>, TensorError> {
        let Some(first) = tensors.first() else {
            return Err(TensorError::InvalidArgument {
                op: "concat",
                reason: "expected at least one tensor, found none".to_string(),
            });
        };
        let s0 = first.shape();
        check_axis("concat", axis, s0.len())?;
        let mut lens = Vec::with_capacity(tensors.len());
        for t in tensors {
            let s = t.shape();
            let compatible = s.len() == s0.len()
                && s.iter()
                    .zip(&s0)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !compatible {
                return Err(TensorError::ShapeMismatch {
                    op: "concat",
                    left: s0,
                    right: s,
                });
            }
            lens.push(s[axis]);
        }
        let value = {
            // Copies, so a tensor listed twice is never read-locked twice at once.
            let arrays: Vec<_> = tensors.iter().map(|t| t.to_array()).collect();
            let views: Vec<_> = arrays.iter().map(|a| a.view()).collect();
            ndarray::concatenate(Axis(axis), &views).map_err(|_| TensorError::ShapeMismatch {
                op: "concat",
                left: s0.clone(),
                right: s0.clone(),
            })?
        };
        Ok(record("concat", value, tensors, move |g, _, inputs| {
            let mut start = 0;
            lens.iter()
                .zip(inputs)
                .map(|(&len, t)| {
                    let part = Slice::from(start..start + len);
                    start += len;
                    t.requires_grad()
                        .then(|| g.slice_axis(Axis(axis), part).to_owned())
                })
                .collect()
        }))
    }
}
