//! Adafactor: factored second moments, relative step sizes and update clipping.

use tempo_tensor::Float;

use crate::hyper::hyperparameters;
use crate::kernels::{f, fma, wide, Lerp};
use crate::state::{ParamState, StateReader, StateValue};
use crate::validate::{adafactor_eps, clipping_threshold, non_negative, non_positive};
use crate::whole::{whole_tensor_optimizer, WholeAlgorithm};
use crate::OptimError;

hyperparameters! {
    /// Adafactor's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct AdafactorConfig as "Adafactor" {
        /// Learning rate (1e-2): the largest relative step size, and the weight decay's
        /// coefficient.
        lr = 1e-2,
        /// The decay rate of beta2: `1 - beta2_t = t^beta2_decay` (-0.8).
        beta2_decay: f64 = -0.8,
        /// `(eps1, eps2)` ((None, 1e-3)): `eps1` bounds the variance estimate from below
        /// (`None`: the parameters' machine epsilon); `eps2` bounds the parameter scale.
        eps: (Option<f64>, f64) = (None, 1e-3),
        /// The update clipping threshold (1.0).
        d: f64 = 1.0,
        /// Decoupled weight decay (0.0).
        weight_decay = 0.0,
        /// PyTorch's `foreach` flag, stored in the groups; tempo always computes
        /// `foreach=False`'s numbers.
        foreach = None,
        maximize = false,
    }
    check {
        lr: non_negative,
        beta2_decay: non_positive,
        eps: adafactor_eps,
        d: clipping_threshold,
        weight_decay: non_negative,
    }
}

whole_tensor_optimizer!(
    /// Adafactor (Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear
    /// Memory Cost", ICML 2018), as PyTorch's `torch.optim.Adafactor` computes it with
    /// `foreach=False` (its default): `lr` caps the relative step size
    /// `rho_t = min(lr, 1/sqrt(t))` and scales the decoupled weight decay, and `eps1`
    /// bounds the variance estimate rather than the squared gradient (PyTorch's
    /// deviations from the paper, kept).
    ///
    /// State: `step`, and for a parameter of two or more dimensions the factored second
    /// moment `row_var` (shape `[..., R, 1]`) and `col_var` (shape `[..., 1, C]`) over its
    /// last two dimensions; for a vector (or a 0-d parameter) the full `variance`.
    Adafactor,
    AdafactorConfig
);

/// One parameter's state.
#[derive(Debug, Clone)]
pub(crate) struct AdafactorState<T> {
    step: T,
    /// `row_var` and `col_var` for a parameter of two or more dimensions, else `variance`.
    moments: Moments<T>,
}

#[derive(Debug, Clone)]
enum Moments<T> {
    Factored { row_var: Vec<T>, col_var: Vec<T> },
    Full { variance: Vec<T> },
}

/// A parameter's shape as `(batch, rows, cols)` over its last two dimensions, or `None`
/// for a vector or a 0-d parameter.
fn factored(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match shape {
        [lead @ .., r, c] => Some((lead.iter().product(), *r, *c)),
        _ => None,
    }
}

fn row_shape(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    if let Some(last) = s.last_mut() {
        *last = 1;
    }
    s
}

fn col_shape(shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    let n = s.len();
    s[n - 2] = 1;
    s
}

/// `torch.linalg.vector_norm` of `x`, rounded once to `T` (accumulated in f64).
fn norm<T: Float>(x: impl Iterator<Item = T>) -> T {
    f(x.map(|v| {
        let v = wide(v);
        v * v
    })
    .sum::<f64>()
    .sqrt())
}

/// `max(a, b)` as Python's `max(a, b)` computes it (the first unless the second is larger).
fn py_max(a: f64, b: f64) -> f64 {
    if b > a {
        b
    } else {
        a
    }
}

/// `min(a, b)` as Python's `min(a, b)` computes it.
fn py_min(a: f64, b: f64) -> f64 {
    if b < a {
        b
    } else {
        a
    }
}

/// `clamp_min`: NaN stays NaN.
fn clamp_min<T: Float>(x: T, lo: T) -> T {
    if x < lo {
        lo
    } else {
        x
    }
}

impl<T: Float> WholeAlgorithm<T> for AdafactorConfig {
    type State = AdafactorState<T>;
    type Scratch = Vec<T>;

    fn init_state(&self, shape: &[usize]) -> AdafactorState<T> {
        let moments = match factored(shape) {
            Some((b, r, c)) => Moments::Factored {
                row_var: vec![T::zero(); b * r],
                col_var: vec![T::zero(); b * c],
            },
            None => Moments::Full {
                variance: vec![T::zero(); shape.iter().product()],
            },
        };
        AdafactorState {
            step: T::zero(),
            moments,
        }
    }

    fn check_state(
        &self,
        st: &AdafactorState<T>,
        shape: &[usize],
        param: usize,
    ) -> Result<(), OptimError> {
        let ok = match (&st.moments, factored(shape)) {
            (Moments::Factored { row_var, col_var }, Some((b, r, c))) => {
                row_var.len() == b * r && col_var.len() == b * c
            }
            (Moments::Full { variance }, None) => variance.len() == shape.iter().product::<usize>(),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(OptimError::MissingState {
                param,
                key: if factored(shape).is_some() {
                    "row_var".into()
                } else {
                    "variance".into()
                },
            })
        }
    }

    fn update(
        &self,
        h: &Self,
        st: &mut AdafactorState<T>,
        shape: &[usize],
        p: &mut [T],
        g: &[T],
        scratch: &mut Vec<T>,
    ) {
        let eps1 = h.eps.0.unwrap_or_else(|| wide(T::epsilon()));
        st.step += T::one();
        let step = wide(st.step);
        let one_minus_beta2 = step.powf(h.beta2_decay);
        let rho = py_min(h.lr, 1.0 / step.powf(0.5));
        let numel = p.len();
        let root_n = (numel as f64).powf(0.5);
        let alpha = py_max(h.eps.1, wide(norm(p.iter().copied())) / root_n) * rho;
        if h.weight_decay != 0.0 {
            let c: T = f(1.0 - h.lr * h.weight_decay);
            for x in p.iter_mut() {
                *x *= c;
            }
        }
        let grad = |i: usize| if h.maximize { -g[i] } else { g[i] };
        let lerp = Lerp::<T>::new(one_minus_beta2);
        let var = scratch;
        var.clear();
        match (&mut st.moments, factored(shape)) {
            (Moments::Factored { row_var, col_var }, Some((batches, rows, cols))) => {
                let n_cols: T = f(cols as f64);
                let n_rows: T = f(rows as f64);
                let lo: T = f(eps1);
                for b in 0..batches {
                    let base = b * rows * cols;
                    let rv = &mut row_var[b * rows..(b + 1) * rows];
                    for (r, v) in rv.iter_mut().enumerate() {
                        let n = norm((0..cols).map(|c| grad(base + r * cols + c)));
                        *v = lerp.apply(*v, n * n / n_cols);
                    }
                    let cv = &mut col_var[b * cols..(b + 1) * cols];
                    for (c, v) in cv.iter_mut().enumerate() {
                        let n = norm((0..rows).map(|r| grad(base + r * cols + c)));
                        *v = lerp.apply(*v, n * n / n_rows);
                    }
                    let mean = rv.iter().fold(T::zero(), |s, &x| s + x) / n_rows;
                    let denom = clamp_min(mean, lo);
                    for &r in rv.iter() {
                        var.extend(cv.iter().map(|&c| r * c / denom));
                    }
                }
            }
            (Moments::Full { variance }, _) => {
                for (i, v) in variance.iter_mut().enumerate() {
                    let gi = grad(i);
                    *v = lerp.apply(*v, gi * gi);
                }
                var.extend_from_slice(variance);
            }
            // `check_state` ruled this out before the step.
            (Moments::Factored { .. }, None) => return,
        }
        let lo: T = f(eps1 * eps1);
        for (i, u) in var.iter_mut().enumerate() {
            *u = T::one() / clamp_min(*u, lo).sqrt() * grad(i);
        }
        let denom = py_max(1.0, wide(norm(var.iter().copied())) / (root_n * h.d));
        let step_size: T = f(-alpha / denom);
        for (x, &u) in p.iter_mut().zip(var.iter()) {
            *x = fma(step_size, u, *x);
        }
    }

    fn save_state(&self, st: &AdafactorState<T>, shape: &[usize]) -> ParamState {
        let mut out = ParamState::new();
        out.insert("step", StateValue::scalar(st.step));
        match &st.moments {
            Moments::Factored { row_var, col_var } => {
                out.insert("row_var", StateValue::tensor(&row_shape(shape), row_var));
                out.insert("col_var", StateValue::tensor(&col_shape(shape), col_var));
            }
            Moments::Full { variance } => {
                out.insert("variance", StateValue::tensor(shape, variance))
            }
        }
        out
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<AdafactorState<T>, OptimError> {
        let step = r.scalar("step")?;
        let moments = if factored(r.shape).is_some() {
            let rs = row_shape(r.shape);
            let cs = col_shape(r.shape);
            let read = |shape: &[usize], key: &str| {
                StateReader {
                    state: r.state,
                    shape,
                    param: r.param,
                }
                .tensor(key)
            };
            Moments::Factored {
                row_var: read(&rs, "row_var")?,
                col_var: read(&cs, "col_var")?,
            }
        } else {
            Moments::Full {
                variance: r.tensor("variance")?,
            }
        };
        Ok(AdafactorState { step, moments })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factoring_is_over_the_last_two_dimensions() {
        assert_eq!(factored(&[3, 4]), Some((1, 3, 4)));
        assert_eq!(factored(&[2, 3, 5]), Some((2, 3, 5)));
        assert_eq!(factored(&[4]), None);
        assert_eq!(factored(&[]), None);
        assert_eq!(row_shape(&[2, 3, 5]), vec![2, 3, 1]);
        assert_eq!(col_shape(&[2, 3, 5]), vec![2, 1, 5]);
    }

    #[test]
    fn python_min_and_max_keep_the_first_on_ties_and_nan() {
        assert!(py_min(f64::NAN, 1.0).is_nan());
        assert!((py_min(1.0, f64::NAN) - 1.0).abs() < 1e-300);
        assert!((py_max(1.0, f64::NAN) - 1.0).abs() < 1e-300);
    }
}
