//! Matrix products: `matmul` (PyTorch's rules for a right operand of rank 1 or 2) and a
//! fused `linear` layer product `x · wᵀ + b`.

use ndarray::{ArrayD, CowArray, Ix2};

use super::gemm::{mm_nn, mm_nt, mm_tn, SMALL};
use super::{array_from, read2};
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

/// Which operands of a product are transposed.
#[derive(Clone, Copy)]
enum Form {
    /// `A[m, k] · B[k, n]`
    NN,
    /// `A[m, k] · B[n, k]ᵀ`
    NT,
    /// `A[m, k]ᵀ · B[m, n]` (result `[k, n]`)
    TN,
}

/// A product of two arrays read as row-major matrices, as row-major elements: plain
/// loops for small contiguous operands, ndarray's blocked `dot` otherwise.
fn product<T: Float>(
    form: Form,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    m: usize,
    k: usize,
    n: usize,
) -> Vec<T> {
    if m * k * n <= SMALL {
        if let (Some(sa), Some(sb)) = (a.as_slice(), b.as_slice()) {
            return match form {
                Form::NN => mm_nn(sa, sb, m, k, n),
                Form::NT => mm_nt(sa, sb, m, k, n),
                Form::TN => mm_tn(sa, sb, m, k, n),
            };
        }
    }
    let c = match form {
        Form::NN => view2(a, m, k).dot(&view2(b, k, n)),
        Form::NT => view2(a, m, k).dot(&view2(b, n, k).t()),
        Form::TN => view2(a, m, k).t().dot(&view2(b, m, n)),
    };
    c.iter().copied().collect()
}

/// How a matmul's operands were flattened to 2-d: `a` as `[m, k]`, `b` as `[k, n]`.
struct MatmulDims {
    m: usize,
    k: usize,
    n: usize,
    a_shape: Vec<usize>,
    b_shape: Vec<usize>,
}

fn matmul_dims(a: &[usize], b: &[usize]) -> Result<(MatmulDims, Vec<usize>), TensorError> {
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
        return Err(TensorError::ShapeMismatch {
            op: "matmul",
            left: a.to_vec(),
            right: b.to_vec(),
        });
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

impl<T: Float> Tensor<T> {
    /// The matrix product, following `torch.matmul` for a right operand of rank 1 or
    /// 2: `[.., m, k] × [k, n] → [.., m, n]`, `[.., k] × [k] → [..]`, `[k] × [k, n] → [n]`.
    /// Errs on mismatched inner dimensions (naming both shapes) or a right operand of
    /// another rank.
    pub fn matmul(&self, other: &Tensor<T>) -> Result<Tensor<T>, TensorError> {
        let (d, value) = read2(self, other, |a, b| {
            let (d, out_shape) = matmul_dims(a.shape(), b.shape())?;
            let c = product(Form::NN, a, b, d.m, d.k, d.n);
            Ok::<_, TensorError>((d, array_from(&out_shape, c)))
        })?;
        Ok(record(
            "matmul",
            value,
            &[self, other],
            move |g, _, inputs| {
                let ga = inputs[0].requires_grad().then(|| {
                    let b = inputs[1].data();
                    array_from(&d.a_shape, product(Form::NT, &g, &b, d.m, d.n, d.k))
                });
                let gb = inputs[1].requires_grad().then(|| {
                    let a = inputs[0].data();
                    array_from(&d.b_shape, product(Form::TN, &a, &g, d.m, d.k, d.n))
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
        let (xs, (out_f, in_f), m, mut y) = read2(self, weight, |x, w| {
            let (xs, ws) = (x.shape(), w.shape());
            if ws.len() != 2 {
                return Err(TensorError::Rank {
                    op: "linear",
                    expected: "a 2-d weight",
                    shape: ws.to_vec(),
                });
            }
            if xs.is_empty() || xs[xs.len() - 1] != ws[1] {
                return Err(TensorError::ShapeMismatch {
                    op: "linear",
                    left: xs.to_vec(),
                    right: ws.to_vec(),
                });
            }
            let (out_f, in_f) = (ws[0], ws[1]);
            let m: usize = xs[..xs.len() - 1].iter().product();
            Ok((
                xs.to_vec(),
                (out_f, in_f),
                m,
                product(Form::NT, x, w, m, in_f, out_f),
            ))
        })?;
        if let Some(b) = bias {
            let b = b.data();
            if b.shape() != [out_f] {
                return Err(TensorError::ShapeMismatch {
                    op: "linear bias",
                    left: vec![out_f, in_f],
                    right: b.shape().to_vec(),
                });
            }
            if out_f > 0 {
                for row in y.chunks_exact_mut(out_f) {
                    for (v, &bv) in row.iter_mut().zip(b.iter()) {
                        *v += bv;
                    }
                }
            }
        }
        let mut out_shape = xs[..xs.len() - 1].to_vec();
        out_shape.push(out_f);
        let value = array_from(&out_shape, y);
        let backward = move |g: ArrayD<T>, _: &ArrayD<T>, inputs: &[Tensor<T>]| {
            let gx = inputs[0].requires_grad().then(|| {
                let w = inputs[1].data();
                array_from(&xs, product(Form::NN, &g, &w, m, out_f, in_f))
            });
            let gw = inputs[1].requires_grad().then(|| {
                let x = inputs[0].data();
                array_from(&[out_f, in_f], product(Form::TN, &g, &x, m, out_f, in_f))
            });
            let mut grads = vec![gx, gw];
            if let Some(b) = inputs.get(2) {
                grads.push(b.requires_grad().then(|| {
                    let mut gb = vec![T::zero(); out_f];
                    if out_f > 0 {
                        let g = g.as_standard_layout();
                        for row in g.as_slice().unwrap_or(&[]).chunks_exact(out_f) {
                            for (acc, &v) in gb.iter_mut().zip(row) {
                                *acc += v;
                            }
                        }
                    }
                    array_from(&[out_f], gb)
                }));
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn ints(r: usize, c: usize, seed: usize) -> ArrayD<f64> {
        Array2::from_shape_fn((r, c), |(i, j)| ((i * 7 + j * 3 + seed) % 9) as f64 - 4.0).into_dyn()
    }

    /// Integer-valued operands: every summation order gives the same exact result, so the
    /// blocked and plain paths must agree exactly.
    #[test]
    fn blocked_and_plain_paths_agree() {
        for &(m, k, n) in &[(64, 64, 32), (3, 5, 4)] {
            let a = ints(m, k, 1);
            let b = ints(k, n, 2);
            let bt = ints(n, k, 3);
            let g = ints(m, n, 4);
            let plain = |f: Form, x: &ArrayD<f64>, y: &ArrayD<f64>, m, k, n| match f {
                Form::NN => mm_nn(x.as_slice().unwrap(), y.as_slice().unwrap(), m, k, n),
                Form::NT => mm_nt(x.as_slice().unwrap(), y.as_slice().unwrap(), m, k, n),
                Form::TN => mm_tn(x.as_slice().unwrap(), y.as_slice().unwrap(), m, k, n),
            };
            assert_eq!(
                product(Form::NN, &a, &b, m, k, n),
                plain(Form::NN, &a, &b, m, k, n)
            );
            assert_eq!(
                product(Form::NT, &a, &bt, m, k, n),
                plain(Form::NT, &a, &bt, m, k, n)
            );
            assert_eq!(
                product(Form::TN, &a, &g, m, k, n),
                plain(Form::TN, &a, &g, m, k, n)
            );
            // A column-major operand takes the ndarray path at any size.
            let a_f = a.t().as_standard_layout().into_owned().reversed_axes();
            assert!(!a_f.is_standard_layout());
            assert_eq!(
                product(Form::NN, &a_f, &b, m, k, n),
                plain(Form::NN, &a, &b, m, k, n)
            );
        }
    }
}
