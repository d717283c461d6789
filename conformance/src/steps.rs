//! The step protocol of `scheduler`, `optimizer` and `combo` cases.

use tempo::optim::{build_optimizer, Optimizer, OptimizerSpec};
use tempo::param_groups::OptimizerParamGroups;
use tempo::sched::{build_scheduler, LRScheduler, SchedulerSpec};
use tempo::tensor::{Float, Tensor};
use tempo_testkit::Case;

use crate::util::{array, compare, compare_final_state, flat, params};

struct Run<T: Float> {
    params: Vec<Tensor<T>>,
    opt: Box<dyn Optimizer<T>>,
    sched: Option<Box<dyn LRScheduler>>,
}

fn fresh<T: Float>(case: &Case) -> Result<Run<T>, String> {
    let params = params::<T>(case)?;
    let spec: OptimizerSpec = serde_json::from_value(case.optimizer.clone().unwrap_or_default())
        .map_err(|e| format!("optimizer spec: {e}"))?;
    let mut opt =
        build_optimizer(&spec, &params).map_err(|e| format!("building the optimizer: {e}"))?;
    let sched = match &case.scheduler {
        None | Some(serde_json::Value::Null) => None,
        Some(s) => {
            let mut spec: SchedulerSpec =
                serde_json::from_value(s.clone()).map_err(|e| format!("scheduler spec: {e}"))?;
            give_optimizer_lr(&mut spec, case);
            let groups: &mut dyn OptimizerParamGroups = &mut *opt;
            Some(
                build_scheduler(&spec, groups)
                    .map_err(|e| format!("building the scheduler: {e}"))?,
            )
        }
    };
    Ok(Run { params, opt, sched })
}

/// transformers' schedules read the optimizer's default lr (`optimizer.defaults["lr"]`:
/// the case's optimizer `kwargs.lr`), which a param group does not hold: pass it on.
fn give_optimizer_lr(spec: &mut SchedulerSpec, case: &Case) {
    if let Some(children) = spec.schedulers.as_mut() {
        children.iter_mut().for_each(|c| give_optimizer_lr(c, case));
    }
    let lr = case
        .optimizer
        .as_ref()
        .and_then(|o| o.get("kwargs"))
        .and_then(|k| k.get("lr"))
        .cloned();
    if let Some(lr) = lr.filter(|_| spec.r#type.starts_with("transformers:")) {
        spec.kwargs.entry("optimizer_lr").or_insert(lr);
    }
}

fn lrs<T: Float>(opt: &dyn Optimizer<T>) -> Result<Vec<f64>, String> {
    (0..opt.num_groups())
        .map(|g| opt.lr(g).map_err(|e| e.to_string()))
        .collect()
}

fn momenta<T: Float>(opt: &dyn Optimizer<T>) -> Vec<Option<f64>> {
    (0..opt.num_groups())
        .map(|g| opt.momentum(g).ok())
        .collect()
}

/// Save everything, throw it away, rebuild, load (FORMAT's resume order).
fn resume<T: Float>(case: &Case, run: Run<T>) -> Result<Run<T>, String> {
    let saved = crate::torch_ckpt::round_trip_state(
        run.params.iter().map(|p| p.data().clone()).collect(),
        run.opt.state_dict(),
        run.sched.as_ref().map(|s| s.state_dict()),
    )?;
    let mut next = fresh::<T>(case)?;
    for (p, v) in next.params.iter().zip(&saved.model) {
        *p.data_mut() = v.clone();
    }
    saved.load_states(next.opt.as_mut(), next.sched.as_mut())?;
    Ok(next)
}

pub(crate) fn run<T: Float>(case: &Case) -> Result<(), String> {
    let tol = case.tolerance;
    let want = &case.expect;
    let mut run = fresh::<T>(case)?;
    let check_row = |run: &Run<T>, t: usize| -> Result<(), String> {
        let want_lr = want
            .lr
            .get(t)
            .ok_or_else(|| format!("no expected lr row {t}"))?;
        compare(&format!("lr row {t}"), &lrs(&*run.opt)?, want_lr, tol)?;
        if case.record_momentum {
            if let Some(rows) = &want.momentum {
                let got = momenta(&*run.opt);
                let want_row = rows
                    .get(t)
                    .ok_or_else(|| format!("no expected momentum row {t}"))?;
                if got
                    .iter()
                    .map(Option::is_some)
                    .ne(want_row.iter().map(Option::is_some))
                {
                    return Err(format!("momentum row {t}: got {got:?}, want {want_row:?}"));
                }
                let g: Vec<f64> = got.into_iter().flatten().collect();
                let w: Vec<f64> = want_row.iter().flatten().copied().collect();
                compare(&format!("momentum row {t}"), &g, &w, tol)?;
            }
        }
        Ok(())
    };
    check_row(&run, 0)?;
    for t in 1..=case.steps {
        if let Some(grads) = &case.grads {
            let step_grads = grads
                .get(t - 1)
                .ok_or_else(|| format!("no grads for step {t}"))?;
            for (i, (p, g)) in run.params.iter().zip(step_grads).enumerate() {
                let g =
                    array::<T>(&p.shape(), g).map_err(|e| format!("grad {i} at step {t}: {e}"))?;
                p.set_grad(Some(g)).map_err(|e| e.to_string())?;
            }
            run.opt
                .step()
                .map_err(|e| format!("optimizer step {t}: {e}"))?;
            let want_params = want
                .params
                .get(t - 1)
                .ok_or_else(|| format!("no expected params at step {t}"))?;
            for (i, (p, w)) in run.params.iter().zip(want_params).enumerate() {
                compare(&format!("step {t} param {i}"), &flat(p), w, tol)?;
            }
        }
        if let Some(s) = run.sched.as_mut() {
            let groups: &mut dyn OptimizerParamGroups = &mut *run.opt;
            let r = if let Some(m) = &case.metrics {
                s.step_with_metric(groups, m[t - 1])
            } else if let Some(e) = &case.epochs {
                s.step_to_epoch(groups, e[t - 1])
            } else {
                s.step(groups)
            };
            r.map_err(|e| format!("scheduler step {t}: {e}"))?;
        }
        check_row(&run, t)?;
        if case.resume_at == Some(t) {
            run = resume(case, run)?;
        }
    }
    if let Some(fs) = &want.final_state {
        compare_final_state(&run.opt.state_dict(), fs, tol)?;
    }
    Ok(())
}
