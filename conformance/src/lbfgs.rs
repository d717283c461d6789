//! `lbfgs` cases: closure-driven minimisation, the objective evaluated through autograd.

use serde_json::Value as Json;
use tempo::optim::{build_optimizer, OptimError, OptimizerSpec, StateValue};
use tempo::tensor::{Float, Tensor, TensorError};
use tempo_testkit::Case;

use crate::util::{array, compare, flat, params};

/// A case objective, read once.
enum Objective<T: Float> {
    Rosenbrock,
    Quadratic { a: Tensor<T>, b: Tensor<T> },
}

impl<T: Float> Objective<T> {
    fn from_case(spec: &Json, n: usize) -> Result<Self, String> {
        match spec["type"].as_str() {
            Some("rosenbrock") => Ok(Objective::Rosenbrock),
            Some("quadratic") => {
                let a: Vec<Vec<f64>> =
                    serde_json::from_value(spec["A"].clone()).map_err(|e| format!("A: {e}"))?;
                let b: Vec<f64> =
                    serde_json::from_value(spec["b"].clone()).map_err(|e| format!("b: {e}"))?;
                let flat_a: Vec<f64> = a.iter().flatten().copied().collect();
                Ok(Objective::Quadratic {
                    a: Tensor::from_array(array::<T>(&[n, n], &flat_a)?),
                    b: Tensor::from_array(array::<T>(&[n], &b)?),
                })
            }
            other => Err(format!("unsupported objective {other:?}")),
        }
    }

    /// The objective at `x`, as a graph ending in a scalar, in PyTorch's order of ops.
    fn eval(&self, x: &Tensor<T>) -> Result<Tensor<T>, TensorError> {
        let n = x.numel();
        match self {
            Objective::Rosenbrock => {
                // sum(100 * (x[1:] - x[:-1]**2)**2 + (1 - x[:-1])**2)
                let head = x.rows(0..n - 1)?;
                let tail = x.rows(1..n)?;
                let a = tail.sub(&head.square())?.square().mul_scalar(100.0);
                let b = head.rsub_scalar(1.0).square();
                Ok(a.add(&b)?.sum())
            }
            Objective::Quadratic { a, b } => {
                // 0.5 * x @ (A @ x) - b @ x
                let ax = a.matmul(x)?;
                let xax = x.mul(&ax)?.sum().mul_scalar(0.5);
                let bx = b.mul(x)?.sum();
                xax.sub(&bx)
            }
        }
    }
}

pub(crate) fn run<T: Float>(case: &Case) -> Result<(), String> {
    let tol = case.tolerance;
    let params = params::<T>(case)?;
    let x = params.first().cloned().ok_or("the case has no parameter")?;
    let spec: OptimizerSpec = serde_json::from_value(case.optimizer.clone().unwrap_or_default())
        .map_err(|e| format!("optimizer spec: {e}"))?;
    let mut opt =
        build_optimizer(&spec, &params).map_err(|e| format!("building the optimizer: {e}"))?;
    let objective = Objective::<T>::from_case(&case.raw["objective"], x.numel())?;
    let want = &case.expect;
    for t in 0..case.steps {
        let mut closure = || -> Result<f64, OptimError> {
            x.zero_grad();
            let loss = objective.eval(&x)?;
            loss.backward()?;
            Ok(Float::to_f64(loss.item()?))
        };
        let returned = opt
            .step_with_closure(&mut closure)
            .map_err(|e| format!("step {t}: {e}"))?
            .ok_or_else(|| format!("step {t} returned no loss"))?;
        let want_loss = want
            .returned_loss
            .get(t)
            .copied()
            .ok_or_else(|| format!("no returned_loss for call {t}"))?;
        compare(
            &format!("call {t} returned loss"),
            &[returned],
            &[want_loss],
            tol,
        )?;
        let want_x = want
            .params
            .get(t)
            .and_then(|p| p.first())
            .ok_or_else(|| format!("no params for call {t}"))?;
        compare(&format!("call {t} x"), &flat(&x), want_x, tol)?;
        if let Some(&want_evals) = want.func_evals.get(t) {
            let sd = opt.state_dict();
            let evals = sd
                .state
                .first()
                .and_then(|(_, st)| st.entries.iter().find(|(k, _)| k == "func_evals"))
                .and_then(|(_, v)| match v {
                    StateValue::Int(i) => Some(*i),
                    _ => None,
                })
                .ok_or_else(|| format!("call {t}: no func_evals in the optimizer state"))?;
            if evals != want_evals as i64 {
                return Err(format!("call {t}: func_evals {evals}, want {want_evals}"));
            }
        }
    }
    Ok(())
}
