//! Reductions (sum, mean), softmax / log-softmax along an axis, and the negative
//! log-likelihood of integer class targets.

use ndarray::{ArrayD, Axis, Zip};

use super::check_axis;
use crate::autograd::record;
use crate::{Float, Tensor, TensorError};

/// Broadcasts a gradient of a reduced shape (axis kept with length 1) back over `shape`.
fn expand_axis<T: Float>(g: &ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    match g.broadcast(shape) {
        Some(v) => v.to_owned(),
        // Unreachable: `g` has `shape` with one axis set to 1.
        None => panic!(
            "tempo-tensor internal broadcast failed: {:?} to {shape:?}",
            g.shape()
        ),
    }
}

impl<T: Float> Tensor<T> {
    /// The sum of all elements, as a 0-d tensor.
    pub fn sum(&self) -> Tensor<T> {
        let shape = self.shape();
        let value = ndarray::arr0(self.data().sum()).into_dyn();
        record("sum", value, &[self], move |g, _, _| {
            let v = g.iter().next().copied().unwrap_or_else(T::zero);
            vec![Some(ArrayD::from_elem(shape.clone(), v))]
        })
    }

    /// The mean of all elements, as a 0-d tensor (NaN for an empty tensor, as in PyTorch).
    pub fn mean(&self) -> Tensor<T> {
        let shape = self.shape();
        let n = T::from_usize(self.numel()).unwrap_or_else(T::nan);
        let value = ndarray::arr0(self.data().sum() / n).into_dyn();
        record("mean", value, &[self], move |g, _, _| {
            let v = g.iter().next().copied().unwrap_or_else(T::zero) / n;
            vec![Some(ArrayD::from_elem(shape.clone(), v))]
        })
    }

    /// The sum along `axis`; `keepdim` keeps it with length 1.
    pub fn sum_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor<T>, TensorError> {
        let shape = self.shape();
        check_axis("sum_axis", axis, shape.len())?;
        let mut value = self.data().sum_axis(Axis(axis));
        if keepdim {
            value = value.insert_axis(Axis(axis));
        }
        Ok(record("sum_axis", value, &[self], move |g, _, _| {
            let g = if keepdim {
                g
            } else {
                g.insert_axis(Axis(axis))
            };
            vec![Some(expand_axis(&g, &shape))]
        }))
    }

    /// The mean along `axis`; `keepdim` keeps it with length 1.
    pub fn mean_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor<T>, TensorError> {
        let shape = self.shape();
        check_axis("mean_axis", axis, shape.len())?;
        let n = T::from_usize(shape[axis]).unwrap_or_else(T::nan);
        let mut value = self.data().sum_axis(Axis(axis)).mapv_into(|v| v / n);
        if keepdim {
            value = value.insert_axis(Axis(axis));
        }
        Ok(record("mean_axis", value, &[self], move |g, _, _| {
            let g = if keepdim {
                g
            } else {
                g.insert_axis(Axis(axis))
            };
            vec![Some(expand_axis(&g, &shape).mapv_into(|v| v / n))]
        }))
    }

    /// Softmax along `axis` (shifted by the maximum for stability).
    pub fn softmax(&self, axis: usize) -> Result<Tensor<T>, TensorError> {
        check_axis("softmax", axis, self.data().ndim())?;
        let mut value = self.to_array();
        for mut lane in value.lanes_mut(Axis(axis)) {
            let m = lane.fold(T::neg_infinity(), |m, &v| m.max(v));
            lane.mapv_inplace(|v| (v - m).exp());
            let s = lane.sum();
            lane.mapv_inplace(|v| v / s);
        }
        Ok(record("softmax", value, &[self], move |g, out, _| {
            // dx = y * (g - sum(g * y))
            let mut gx = g;
            Zip::from(gx.lanes_mut(Axis(axis)))
                .and(out.lanes(Axis(axis)))
                .for_each(|mut gl, yl| {
                    let dot = Zip::from(&gl)
                        .and(&yl)
                        .fold(T::zero(), |acc, &g, &y| acc + g * y);
                    Zip::from(&mut gl)
                        .and(&yl)
                        .for_each(|g, &y| *g = y * (*g - dot));
                });
            vec![Some(gx)]
        }))
    }

    /// Log-softmax along `axis`: `x - max - ln Σ e^(x - max)`.
    pub fn log_softmax(&self, axis: usize) -> Result<Tensor<T>, TensorError> {
        check_axis("log_softmax", axis, self.data().ndim())?;
        let mut value = self.to_array();
        for mut lane in value.lanes_mut(Axis(axis)) {
            let m = lane.fold(T::neg_infinity(), |m, &v| m.max(v));
            let lse = lane.fold(T::zero(), |acc, &v| acc + (v - m).exp()).ln();
            lane.mapv_inplace(|v| v - m - lse);
        }
        Ok(record("log_softmax", value, &[self], move |g, out, _| {
            // dx = g - softmax * sum(g)
            let mut gx = g;
            Zip::from(gx.lanes_mut(Axis(axis)))
                .and(out.lanes(Axis(axis)))
                .for_each(|mut gl, yl| {
                    let s = gl.sum();
                    Zip::from(&mut gl)
                        .and(&yl)
                        .for_each(|g, &y| *g -= y.exp() * s);
                });
            vec![Some(gx)]
        }))
    }

    /// For a 2-d `[n, c]` tensor, the element `[i, targets[i]]` of each row: a `[n]`
    /// tensor (PyTorch's `x[range(n), targets]`). Errs on a length or class mismatch.
    pub fn pick(&self, targets: &[usize]) -> Result<Tensor<T>, TensorError> {
        let shape = self.shape();
        if shape.len() != 2 {
            return Err(TensorError::Rank {
                op: "pick",
                expected: "a 2-d [n, c] tensor",
                shape,
            });
        }
        let (n, c) = (shape[0], shape[1]);
        if targets.len() != n {
            return Err(TensorError::ShapeMismatch {
                op: "pick",
                left: shape,
                right: vec![targets.len()],
            });
        }
        if let Some(&bad) = targets.iter().find(|&&t| t >= c) {
            return Err(TensorError::IndexOutOfRange {
                op: "pick",
                index: bad,
                len: c,
            });
        }
        let value = {
            let d = self.data();
            ArrayD::from_shape_fn(vec![n], |i| d[[i[0], targets[i[0]]]])
        };
        let targets = targets.to_vec();
        Ok(record("pick", value, &[self], move |g, _, _| {
            let mut gx = ArrayD::zeros(vec![n, c]);
            for (i, (&t, &gi)) in targets.iter().zip(g.iter()).enumerate() {
                gx[[i, t]] += gi;
            }
            vec![Some(gx)]
        }))
    }

    /// The mean negative log-likelihood of integer class `targets` given `[n, c]`
    /// log-probabilities (PyTorch's `nll_loss` with `reduction='mean'`, no weights).
    pub fn nll(&self, targets: &[usize]) -> Result<Tensor<T>, TensorError> {
        Ok(self.pick(targets)?.mean().neg())
    }

    /// The mean cross-entropy of `[n, c]` logits against integer class `targets`
    /// (PyTorch's `cross_entropy` with `reduction='mean'`): `nll(log_softmax(logits, 1))`.
    pub fn cross_entropy(&self, targets: &[usize]) -> Result<Tensor<T>, TensorError> {
        let shape = self.shape();
        if shape.len() != 2 {
            return Err(TensorError::Rank {
                op: "cross_entropy",
                expected: "2-d [n, c] logits",
                shape,
            });
        }
        self.log_softmax(1)?.nll(targets)
    }
}
