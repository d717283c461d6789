//! PyTorch's reference traces for the elementwise optimizers (`optim__*` cases): every
//! parameter after every step, the final state, and a state-dict round trip mid-run.

use serde_json::Value as Json;
use tempo_optim::{build_optimizer, Optimizer, StateValue};
use tempo_tensor::{Float, Tensor};
use tempo_testkit::Case;

use crate::case::{array, check_close, flat, fresh_params, load_cases, optimizer_spec};

fn run<T: Float>(case: &Case) -> Result<(), String> {
    let tol = case.tolerance;
    let grads = case.grads.as_ref().ok_or("case has no grads")?;
    let want_params = &case.expect.params;
    if want_params.is_empty() {
        return Err("case has no expected params".into());
    }
    let spec = optimizer_spec(case)?;
    let mut params: Vec<Tensor<T>> = fresh_params(case);
    let mut opt = build_optimizer(&spec, &params).map_err(|e| format!("build: {e}"))?;
    for t in 1..=case.steps {
        for (p, (g, spec)) in params.iter().zip(grads[t - 1].iter().zip(&case.params)) {
            p.set_grad(Some(array(&spec.shape, g)))
                .map_err(|e| e.to_string())?;
        }
        let stepped = opt.step().map_err(|e| format!("step {t}: {e}"))?;
        if !stepped {
            return Err(format!("step {t}: step() reported no update"));
        }
        for (i, p) in params.iter().enumerate() {
            check_close(
                &format!("step {t}, param {i}"),
                &flat(p),
                &want_params[t - 1][i],
                tol,
            )?;
        }
        if !case.expect.lr.is_empty() {
            let lrs = case
                .expect
                .lr
                .get(t)
                .ok_or(format!("step {t}: no lr row"))?;
            for (gi, &want) in lrs.iter().enumerate() {
                let got = opt.lr(gi).map_err(|e| e.to_string())?;
                check_close(&format!("step {t}, lr of group {gi}"), &[got], &[want], tol)?;
            }
        }
        if case.resume_at == Some(t) {
            let sd = opt.state_dict();
            let saved: Vec<Vec<f64>> = params.iter().map(flat).collect();
            params = fresh_params(case);
            for (p, v) in params.iter().zip(&saved) {
                let mut d = p.data_mut();
                for (x, &y) in d.iter_mut().zip(v) {
                    *x = <T as Float>::from_f64(y);
                }
            }
            opt = build_optimizer(&spec, &params).map_err(|e| format!("rebuild: {e}"))?;
            opt.load_state_dict(&sd)
                .map_err(|e| format!("load_state_dict at step {t}: {e}"))?;
        }
    }
    check_final_state(opt.as_ref(), case)
}

fn check_final_state<T: Float>(opt: &dyn Optimizer<T>, case: &Case) -> Result<(), String> {
    let Some(want) = &case.expect.final_state else {
        return Ok(());
    };
    let sd = opt.state_dict();
    let got_ids: Vec<String> = sd.state.iter().map(|(i, _)| i.to_string()).collect();
    let want_ids: Vec<String> = want.keys().cloned().collect();
    if got_ids != want_ids {
        return Err(format!(
            "final state ids {got_ids:?}, want {want_ids:?} (first-touch order)"
        ));
    }
    for ((id, st), (_, want_st)) in sd.state.iter().zip(want) {
        let want_st = want_st
            .as_object()
            .ok_or("final_state entry is not an object")?;
        let got_keys: Vec<&str> = st.keys().collect();
        let want_keys: Vec<&str> = want_st.keys().map(String::as_str).collect();
        if got_keys != want_keys {
            return Err(format!("state {id}: keys {got_keys:?}, want {want_keys:?}"));
        }
        for (key, w) in want_st {
            let got = st.get(key).ok_or_else(|| format!("state {id}: no {key}"))?;
            let got_v: Vec<f64> = match got {
                StateValue::Tensor(t) => t.to_f64_vec(),
                other => vec![other
                    .as_f64()
                    .ok_or_else(|| format!("state {id}.{key}: not numeric"))?],
            };
            let want_v: Vec<f64> = match w {
                Json::Array(a) => a.iter().filter_map(Json::as_f64).collect(),
                Json::Number(n) => vec![n.as_f64().unwrap_or(f64::NAN)],
                _ => return Err(format!("state {id}.{key}: unexpected JSON {w}")),
            };
            if let (StateValue::Tensor(t), Json::Number(_)) = (got, w) {
                if !t.shape().is_empty() {
                    return Err(format!(
                        "state {id}.{key}: want a 0-d tensor, got shape {:?}",
                        t.shape()
                    ));
                }
            }
            check_close(
                &format!("final state {id}.{key}"),
                &got_v,
                &want_v,
                case.tolerance,
            )?;
        }
    }
    Ok(())
}

fn run_case(case: &Case) -> Result<(), String> {
    match case.dtype.as_str() {
        "float32" => run::<f32>(case),
        "float64" => run::<f64>(case),
        other => Err(format!("unknown dtype {other}")),
    }
}

#[test]
fn optim_cases_match_pytorch() {
    let cases = load_cases("optim__");
    assert_eq!(cases.len(), 64, "expected the 64 optim__ cases");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|c| run_case(c).err().map(|e| format!("{}: {e}", c.name)))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
