//! PyTorch's LBFGS traces (`lbfgs__*` cases): the loss each `step(closure)` returns, the
//! parameters after it, and the cumulative closure evaluations.

use serde_json::Value as Json;
use tempo_optim::{build_optimizer, OptimError, StateValue};
use tempo_tensor::{Float, Tensor};

use crate::case::{check_close, flat, fresh_params, load_cases, Case};

/// An objective, computed in `T` in the order PyTorch's forward and autograd use.
enum Objective {
    Rosenbrock,
    Quadratic { a: Vec<Vec<f64>>, b: Vec<f64> },
}

fn objective(case: &Case) -> Result<Objective, String> {
    let o = case.objective.as_ref().ok_or("no objective")?;
    match o.get("type").and_then(Json::as_str) {
        Some("rosenbrock") => Ok(Objective::Rosenbrock),
        Some("quadratic") => {
            let nums = |v: &Json| -> Vec<f64> {
                v.as_array()
                    .map(|a| a.iter().filter_map(Json::as_f64).collect())
                    .unwrap_or_default()
            };
            let a = o
                .get("A")
                .and_then(Json::as_array)
                .ok_or("quadratic without A")?
                .iter()
                .map(nums)
                .collect();
            let b = nums(o.get("b").ok_or("quadratic without b")?);
            Ok(Objective::Quadratic { a, b })
        }
        other => Err(format!("unknown objective {other:?}")),
    }
}

fn c<T: Float>(v: f64) -> T {
    <T as Float>::from_f64(v)
}

/// Loss and gradient of `sum(100 (x[1:] - x[:-1]^2)^2 + (1 - x[:-1])^2)`. The gradient
/// sums autograd's three contributions in the engine's order: `1 - x[:-1]`, then
/// `x[:-1]**2`, then `x[1:]`.
fn rosenbrock<T: Float>(x: &[T]) -> (T, Vec<T>) {
    let n = x.len();
    let mut loss = T::zero();
    let mut g = vec![T::zero(); n];
    let mut from_tail = vec![T::zero(); n];
    for i in 0..n - 1 {
        let a = x[i] * x[i];
        let b = x[i + 1] - a;
        let e = c::<T>(100.0) * (b * b);
        let f1 = c::<T>(1.0) - x[i];
        loss += e + f1 * f1;
        let gb = c::<T>(100.0) * (c::<T>(2.0) * b);
        let g_f1 = -(c::<T>(2.0) * f1);
        let g_a = (-gb) * (c::<T>(2.0) * x[i]);
        g[i] = g_f1 + g_a;
        from_tail[i + 1] = gb;
    }
    for i in 0..n {
        g[i] += from_tail[i];
    }
    (loss, g)
}

/// Loss and gradient of `0.5 xᵀ(Ax) - bᵀx`: the gradient is `(-b + 0.5·Ax) + Aᵀ(0.5·x)`.
fn quadratic<T: Float>(x: &[T], a: &[Vec<f64>], b: &[f64]) -> (T, Vec<T>) {
    let n = x.len();
    let am: Vec<Vec<T>> = a
        .iter()
        .map(|r| r.iter().map(|&v| c(v)).collect())
        .collect();
    let bv: Vec<T> = b.iter().map(|&v| c(v)).collect();
    let ax: Vec<T> = am
        .iter()
        .map(|r| r.iter().zip(x).fold(T::zero(), |s, (&p, &q)| s + p * q))
        .collect();
    let xax = x.iter().zip(&ax).fold(T::zero(), |s, (&p, &q)| s + p * q);
    let bx = bv.iter().zip(x).fold(T::zero(), |s, (&p, &q)| s + p * q);
    let loss = c::<T>(0.5) * xax - bx;
    let half_x: Vec<T> = x.iter().map(|&v| c::<T>(0.5) * v).collect();
    let g = (0..n)
        .map(|j| {
            let atx = (0..n).fold(T::zero(), |s, i| s + am[i][j] * half_x[i]);
            (-bv[j] + c::<T>(0.5) * ax[j]) + atx
        })
        .collect();
    (loss, g)
}

fn closure_for<T: Float>(
    x: Tensor<T>,
    obj: &Objective,
) -> impl FnMut() -> Result<f64, OptimError> + '_ {
    move || {
        x.zero_grad();
        let xs: Vec<T> = x.data().iter().copied().collect();
        let (loss, g) = match obj {
            Objective::Rosenbrock => rosenbrock(&xs),
            Objective::Quadratic { a, b } => quadratic(&xs, a, b),
        };
        let shape = x.shape();
        x.set_grad(Some(
            ndarray::ArrayD::from_shape_vec(shape, g).map_err(|_| OptimError::EmptyParameters)?,
        ))?;
        Ok(<T as Float>::to_f64(loss))
    }
}

fn run<T: Float>(case: &Case) -> Result<(), String> {
    let obj = objective(case)?;
    let params: Vec<Tensor<T>> = fresh_params(case);
    let mut opt = build_optimizer(&case.optimizer, &params).map_err(|e| format!("build: {e}"))?;
    let want_loss = case
        .expect
        .returned_loss
        .as_ref()
        .ok_or("no returned_loss")?;
    let want_params = case.expect.params.as_ref().ok_or("no params")?;
    let want_evals = case.expect.func_evals.as_ref().ok_or("no func_evals")?;
    let mut closure = closure_for(params[0].clone(), &obj);
    for t in 0..case.steps {
        let loss = opt
            .step_with_closure(&mut closure)
            .map_err(|e| format!("call {t}: {e}"))?
            .ok_or("no loss")?;
        check_close(
            &format!("call {t}, returned loss"),
            &[loss],
            &[want_loss[t]],
            &case.tolerance,
        )?;
        check_close(
            &format!("call {t}, x"),
            &flat(&params[0]),
            &want_params[t][0],
            &case.tolerance,
        )?;
        let sd = opt.state_dict();
        let evals = sd
            .state_of(0)
            .and_then(|s| s.get("func_evals"))
            .and_then(StateValue::as_f64);
        if evals != Some(want_evals[t] as f64) {
            return Err(format!(
                "call {t}: func_evals {evals:?}, want {}",
                want_evals[t]
            ));
        }
    }
    Ok(())
}

#[test]
fn lbfgs_cases_match_pytorch() {
    let cases = load_cases(&["lbfgs__"]);
    assert_eq!(cases.len(), 4, "expected the 4 lbfgs__ cases");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            let r = match c.dtype.as_str() {
                "float32" => run::<f32>(c),
                _ => run::<f64>(c),
            };
            r.err().map(|e| format!("{}: {e}", c.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
