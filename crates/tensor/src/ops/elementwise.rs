//! Elementwise ops: broadcasting binary arithmetic, arithmetic with a scalar, and unary
//! functions (activations included).

use ndarray::{ArrayD, Zip};

use super::{broadcast_shape, read2, sum_to_shape};
use crate::autograd::record;
use crate::{Float, Tensor, TensorError};

/// `f(a, b)` elementwise with broadcasting.
fn zip_map<T: Float>(
    op: &'static str,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    f: impl Fn(T, T) -> T,
) -> Result<ArrayD<T>, TensorError> {
    if a.shape() == b.shape() {
        return Ok(Zip::from(a).and(b).map_collect(|&x, &y| f(x, y)));
    }
    let shape = broadcast_shape(op, a.shape(), b.shape())?;
    let bad = || TensorError::ShapeMismatch {
        op,
        left: a.shape().to_vec(),
        right: b.shape().to_vec(),
    };
    let av = a.broadcast(shape.clone()).ok_or_else(bad)?;
    let bv = b.broadcast(shape).ok_or_else(bad)?;
    Ok(Zip::from(&av).and(&bv).map_collect(|&x, &y| f(x, y)))
}

/// The value of a tensor broadcast to `shape` (a copy when the shapes differ).
fn expand<T: Float>(a: &ArrayD<T>, shape: &[usize]) -> ArrayD<T> {
    match a.broadcast(shape) {
        Some(v) => v.to_owned(),
        // Unreachable: `shape` is the broadcast shape computed in the forward pass.
        None => panic!(
            "tempo-tensor internal broadcast failed: {:?} to {shape:?}",
            a.shape()
        ),
    }
}

/// A unary op with derivative `d(x, y)` in terms of the input `x` and output `y`.
fn unary<T: Float>(
    name: &'static str,
    x: &Tensor<T>,
    f: impl Fn(T) -> T,
    d: impl Fn(T, T) -> T + Send + Sync + 'static,
) -> Tensor<T> {
    let value = x.data().mapv(f);
    record(name, value, &[x], move |g, out, inputs| {
        let xv = inputs[0].data();
        let mut g = g;
        Zip::from(&mut g)
            .and(&*xv)
            .and(out)
            .for_each(|g, &x, &y| *g *= d(x, y));
        vec![Some(g)]
    })
}

fn erf(x: f64) -> f64 {
    crate::math::erf(x)
}

impl<T: Float> Tensor<T> {
    /// `self + other` with broadcasting.
    pub fn add(&self, other: &Tensor<T>) -> Result<Tensor<T>, TensorError> {
        let value = read2(self, other, |a, b| zip_map("add", a, b, |a, b| a + b))?;
        let (sa, sb) = (self.shape(), other.shape());
        Ok(record("add", value, &[self, other], move |g, _, inputs| {
            let gb = inputs[1]
                .requires_grad()
                .then(|| sum_to_shape(g.clone(), &sb));
            let ga = inputs[0].requires_grad().then(|| sum_to_shape(g, &sa));
            vec![ga, gb]
        }))
    }

    /// `self - other` with broadcasting.
    pub fn sub(&self, other: &Tensor<T>) -> Result<Tensor<T>, TensorError> {
        let value = read2(self, other, |a, b| zip_map("sub", a, b, |a, b| a - b))?;
        let (sa, sb) = (self.shape(), other.shape());
        Ok(record("sub", value, &[self, other], move |g, _, inputs| {
            let gb = inputs[1]
                .requires_grad()
                .then(|| sum_to_shape(g.mapv(|v| -v), &sb));
            let ga = inputs[0].requires_grad().then(|| sum_to_shape(g, &sa));
            vec![ga, gb]
        }))
    }

    /// `self * other` elementwise with broadcasting.
    pub fn mul(&self, other: &Tensor<T>) -> Result<Tensor<T>, TensorError> {
        let value = read2(self, other, |a, b| zip_map("mul", a, b, |a, b| a * b))?;
        let (sa, sb) = (self.shape(), other.shape());
        let out_shape = value.shape().to_vec();
        Ok(record("mul", value, &[self, other], move |g, _, inputs| {
            read2(&inputs[0], &inputs[1], |a, b| {
                let ga = inputs[0]
                    .requires_grad()
                    .then(|| sum_to_shape(&g * &expand(b, &out_shape), &sa));
                let gb = inputs[1]
                    .requires_grad()
                    .then(|| sum_to_shape(&g * &expand(a, &out_shape), &sb));
                vec![ga, gb]
            })
        }))
    }

    /// `self / other` elementwise with broadcasting.
    pub fn div(&self, other: &Tensor<T>) -> Result<Tensor<T>, TensorError> {
        let value = read2(self, other, |a, b| zip_map("div", a, b, |a, b| a / b))?;
        let (sa, sb) = (self.shape(), other.shape());
        let out_shape = value.shape().to_vec();
        Ok(record(
            "div",
            value,
            &[self, other],
            move |g, out, inputs| {
                let b = expand(&inputs[1].data(), &out_shape);
                let ga = inputs[0]
                    .requires_grad()
                    .then(|| sum_to_shape(&g / &b, &sa));
                let gb = inputs[1].requires_grad().then(|| {
                    // d(a/b)/db = -(a/b)/b
                    let mut gb = g.clone();
                    Zip::from(&mut gb)
                        .and(out)
                        .and(&b)
                        .for_each(|g, &y, &b| *g = -*g * y / b);
                    sum_to_shape(gb, &sb)
                });
                vec![ga, gb]
            },
        ))
    }

    /// `self + s` (the scalar is rounded once to the element type, as PyTorch does).
    pub fn add_scalar(&self, s: f64) -> Tensor<T> {
        let s = <T as Float>::from_f64(s);
        let value = self.data().mapv(|x| x + s);
        record("add_scalar", value, &[self], |g, _, _| vec![Some(g)])
    }

    /// `self - s`.
    pub fn sub_scalar(&self, s: f64) -> Tensor<T> {
        let s = <T as Float>::from_f64(s);
        let value = self.data().mapv(|x| x - s);
        record("sub_scalar", value, &[self], |g, _, _| vec![Some(g)])
    }

    /// `s - self`.
    pub fn rsub_scalar(&self, s: f64) -> Tensor<T> {
        let s = <T as Float>::from_f64(s);
        let value = self.data().mapv(|x| s - x);
        record("rsub_scalar", value, &[self], |g, _, _| vec![Some(-g)])
    }

    /// `self * s`.
    pub fn mul_scalar(&self, s: f64) -> Tensor<T> {
        let s = <T as Float>::from_f64(s);
        let value = self.data().mapv(|x| x * s);
        record("mul_scalar", value, &[self], move |g, _, _| {
            vec![Some(g.mapv_into(|v| v * s))]
        })
    }

    /// `self / s` (a true division, as PyTorch's `x / s`).
    pub fn div_scalar(&self, s: f64) -> Tensor<T> {
        let s = <T as Float>::from_f64(s);
        let value = self.data().mapv(|x| x / s);
        record("div_scalar", value, &[self], move |g, _, _| {
            vec![Some(g.mapv_into(|v| v / s))]
        })
    }

    /// `-self`.
    pub fn neg(&self) -> Tensor<T> {
        let value = self.data().mapv(|x| -x);
        record("neg", value, &[self], |g, _, _| vec![Some(-g)])
    }

    /// `|self|` (gradient `sign(x)`, 0 at 0 as in PyTorch).
    pub fn abs(&self) -> Tensor<T> {
        unary(
            "abs",
            self,
            |x| x.abs(),
            |x, _| {
                if x > T::zero() {
                    T::one()
                } else if x < T::zero() {
                    -T::one()
                } else {
                    T::zero()
                }
            },
        )
    }

    /// `self ** p` for a scalar exponent.
    pub fn pow(&self, p: f64) -> Tensor<T> {
        let pt = <T as Float>::from_f64(p);
        let pm1 = <T as Float>::from_f64(p - 1.0);
        unary(
            "pow",
            self,
            move |x| x.powf(pt),
            move |x, _| pt * x.powf(pm1),
        )
    }

    /// `self * self`.
    pub fn square(&self) -> Tensor<T> {
        let two = <T as Float>::from_f64(2.0);
        unary("square", self, |x| x * x, move |x, _| two * x)
    }

    /// The square root.
    pub fn sqrt(&self) -> Tensor<T> {
        let half = <T as Float>::from_f64(0.5);
        unary("sqrt", self, |x| x.sqrt(), move |_, y| half / y)
    }

    /// `e ** self`.
    pub fn exp(&self) -> Tensor<T> {
        unary("exp", self, |x| x.exp(), |_, y| y)
    }

    /// The natural logarithm.
    pub fn log(&self) -> Tensor<T> {
        unary("log", self, |x| x.ln(), |x, _| T::one() / x)
    }

    /// `max(self, 0)` (gradient 0 at 0, as in PyTorch).
    pub fn relu(&self) -> Tensor<T> {
        unary(
            "relu",
            self,
            |x| if x > T::zero() { x } else { T::zero() },
            |x, _| if x > T::zero() { T::one() } else { T::zero() },
        )
    }

    /// The hyperbolic tangent.
    pub fn tanh(&self) -> Tensor<T> {
        unary("tanh", self, |x| x.tanh(), |_, y| T::one() - y * y)
    }

    /// The logistic sigmoid `1 / (1 + e^-x)`.
    pub fn sigmoid(&self) -> Tensor<T> {
        unary(
            "sigmoid",
            self,
            |x| T::one() / (T::one() + (-x).exp()),
            |_, y| y * (T::one() - y),
        )
    }

    /// The exact GELU `x * Φ(x)` with Φ the standard normal CDF (PyTorch's
    /// `approximate='none'`).
    pub fn gelu(&self) -> Tensor<T> {
        unary(
            "gelu",
            self,
            |x| {
                let xf = Float::to_f64(x);
                <T as Float>::from_f64(0.5 * xf * (1.0 + erf(xf * std::f64::consts::FRAC_1_SQRT_2)))
            },
            |x, _| {
                let xf = Float::to_f64(x);
                let cdf = 0.5 * (1.0 + erf(xf * std::f64::consts::FRAC_1_SQRT_2));
                let pdf = (-0.5 * xf * xf).exp() / (2.0 * std::f64::consts::PI).sqrt();
                <T as Float>::from_f64(cdf + xf * pdf)
            },
        )
    }
}
