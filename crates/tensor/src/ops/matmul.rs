//! Matrix products: `matmul` (PyTorch's rules for a right operand of rank 1 or 2) and a
//! fused `linear` layer product `x · wᵀ + b`.

use ndarray::{Array2, ArrayD, ArrayView2, Axis, CowArray, Ix2};

use super::{read2, reshape_owned};
use crate::autograd::record;
use crate::{Float, Tensor, TensorError};

/// A 2-d view of `a` as `[rows, cols]` in row-major order (copying only when `a` is not
/// contiguous). The caller guarantees `rows * cols == a.len()`.
fn view2<T: Float>(a: &ArrayD<T>, rows: usize, cols: usize) -> CowArray<'_, T, Ix2> {
    let cow = a.as_standard_layout();
    match cow.into_shape_with_order((rows, cols)) {
        Ok(v) => v,
        // Unreachable: standard layout and matching element counts.
        Err(e) => panic!("tempo-tensor internal 2-d view failed: {e}"),
    }
}

/// How a matmul's operands were flattened to 2-d: `a` as `[m, k]`, `b` as `[k, n]`.
#[derive(Clone)]
struct MatmulDims {
    m: usize,
    k: usize,
    n: usize,
    a_shape: Vec<usize>,
    b_shape: Vec<usize>,
}

fn matmul_dims(a: &[usize], b: &[usize]) -> Result<(MatmulDims, Vec<usize>), TensorError> {
    let mismatch = || TensorError::ShapeMismatch {
        op: "matmul",
        left: a.to_vec(),
        right: b.to_vec(),
    };
    if a.is_empty() || b.is_empty() || b.len() > 2 {
        return Err(TensorError::Rank {
            op: "matmul",
            expected: "a left operand of rank >= 1 and a right operand of rank 1 or 2",
            shape: if b.len() > 2 || b.is_empty() {
                b.to_vec()
            } else {
                a.to_vec()
            },
        });
    }
    let k = a[a.len() - 1];
    let m: usize = a[..a.len() - 1].iter().product();
    let (kb, n) = if b.len() == 2 {
        (b[0], b[1])
    } else {
        (b[0], 1)
    };
    if k != kb {
        return Err(mismatch());
    }
    let mut out: Vec<usize> = a[..a.len() - 1].to_vec();
    if b.len() == 2 {
        out.push(n);
    }
    Ok((
        MatmulDims {
            m,
            k,
            n,
            a_shape: a.to_vec(),
            b_shape: b.to_vec(),
        },
        out,
    ))
}

fn dot<T: Float>(a: &ArrayView2<'_, T>, b: &ArrayView2<'_, T>) -> Array2<T> {
    a.dot(b)
}

impl<T: Float> Tensor<T> {
    /// The matrix product, following `torch.matmul` for a right operand of rank 1 or
    /// 2: `[.., m, k] × [k, n] → [.., m, n]`, `[.., k] × [k] → [..]`, `[k] × [k, n] → [n]`.
    /// Errs on mismatched inner dimensions (naming both shapes) or a right operand of
    /// another rank.
    pub fn matmul(&self, other: &Tensor<T>) -> Result<Tensor<T>, TensorError> {
        let (dims, out_shape) = matmul_dims(&self.shape(), &other.shape())?;
        let value = read2(self, other, |a, b| {
            let c = dot(
                &view2(a, dims.m, dims.k).view(),
                &view2(b, dims.k, dims.n).view(),
            );
            reshape_owned(c.into_dyn(), &out_shape)
        });
        Ok(record(
            "matmul",
            value,
            &[self, other],
            move |g, _, inputs| {
                let d = &dims;
                let g2 = view2(&g, d.m, d.n);
                let ga = inputs[0].requires_grad().then(|| {
                    let b = inputs[1].data();
                    let ga = dot(&g2.view(), &view2(&b, d.k, d.n).t());
                    reshape_owned(ga.into_dyn(), &d.a_shape)
                });
                let gb = inputs[1].requires_grad().then(|| {
                    let a = inputs[0].data();
                    let gb = dot(&view2(&a, d.m, d.k).t(), &g2.view());
                    reshape_owned(gb.into_dyn(), &d.b_shape)
                });
                vec![ga, gb]
            },
        ))
    }

    /// A linear layer's product `x · wᵀ + b` (PyTorch's `F.linear`) for `x` of shape
    /// `[.., in]`, `weight` `[out, in]` and `bias` `[out]`, giving `[.., out]`. One
    /// graph node instead of three.
    pub fn linear(
        &self,
        weight: &Tensor<T>,
        bias: Option<&Tensor<T>>,
    ) -> Result<Tensor<T>, TensorError> {
        let xs = self.shape();
        let ws = weight.shape();
        if ws.len() != 2 {
            return Err(TensorError::Rank {
                op: "linear",
                expected: "a 2-d weight",
                shape: ws,
            });
        }
        if xs.is_empty() || xs[xs.len() - 1] != ws[1] {
            return Err(TensorError::ShapeMismatch {
                op: "linear",
                left: xs,
                right: ws,
            });
        }
        let (out_f, in_f) = (ws[0], ws[1]);
        if let Some(b) = bias {
            let bs = b.shape();
            if bs != [out_f] {
                return Err(TensorError::ShapeMismatch {
                    op: "linear bias",
                    left: ws,
                    right: bs,
                });
            }
        }
        let m: usize = xs[..xs.len() - 1].iter().product();
        let mut out_shape = xs[..xs.len() - 1].to_vec();
        out_shape.push(out_f);
        let mut y = read2(self, weight, |x, w| {
            dot(&view2(x, m, in_f).view(), &view2(w, out_f, in_f).t())
        });
        if let Some(b) = bias {
            let b = b.data();
            let b1 = view2(&b, 1, out_f);
            y += &b1;
        }
        let value = reshape_owned(y.into_dyn(), &out_shape);
        let backward = move |g: ArrayD<T>, _: &ArrayD<T>, inputs: &[Tensor<T>]| {
            let g2 = view2(&g, m, out_f);
            let gx = inputs[0].requires_grad().then(|| {
                let w = inputs[1].data();
                let gx = dot(&g2.view(), &view2(&w, out_f, in_f).view());
                reshape_owned(gx.into_dyn(), &xs)
            });
            let gw = inputs[1].requires_grad().then(|| {
                let x = inputs[0].data();
                dot(&g2.t(), &view2(&x, m, in_f).view()).into_dyn()
            });
            let gb = inputs
                .get(2)
                .filter(|b| b.requires_grad())
                .map(|_| g2.sum_axis(Axis(0)).into_dyn());
            let mut grads = vec![gx, gw];
            if inputs.len() == 3 {
                grads.push(gb);
            }
            grads
        };
        Ok(match bias {
            Some(b) => record("linear", value, &[self, weight, b], backward),
            None => record("linear", value, &[self, weight], backward),
        })
    }

    /// The transpose of a 2-d tensor (a 0-d or 1-d tensor is returned unchanged), like
    /// PyTorch's `t()`.
    pub fn t(&self) -> Result<Tensor<T>, TensorError> {
        match self.data().ndim() {
            0 | 1 => Ok(self.clone()),
            2 => self.transpose(0, 1),
            _ => Err(TensorError::Rank {
                op: "t",
                expected: "a tensor of rank <= 2",
                shape: self.shape(),
            }),
        }
    }
}
