//! Loading a training state into live objects, all or nothing.

use tempo_nn::{Module, StateDict};
use tempo_optim::Optimizer;
use tempo_sched::LRScheduler;
use tempo_tensor::Float;

use crate::{CkptError, TrainingState};

/// Loads `state` into a live model, optimizer and scheduler, **all or nothing**: if any
/// part is refused (a missing or unexpected key, a shape, a dtype, a group count, another
/// scheduler's state), every object is left as it was and the error names the part.
///
/// Each object's own `load_state_dict` checks its part before changing anything; when a
/// later part is refused, the parts already loaded are put back from snapshots taken
/// before the first change. Pass `None` for an object the run does not have. Order, as
/// PyTorch documents it: construct the optimizer and the scheduler first (the scheduler's
/// constructor writes `lr` and `initial_lr`), then restore, so the saved group values win.
pub fn restore<T: Float>(
    state: &TrainingState,
    model: &dyn Module<T>,
    optimizer: Option<&mut dyn Optimizer<T>>,
    scheduler: Option<&mut dyn LRScheduler>,
) -> Result<(), CkptError> {
    let model_state = StateDict::<T>::from_tensor_data(state.model.clone())?;
    let optimizer_state = match (&optimizer, &state.optimizer) {
        (Some(_), None) => return Err(CkptError::MissingPart { part: "optimizer" }),
        (Some(_), Some(sd)) => Some(sd),
        (None, _) => None,
    };
    let scheduler_state = match (&scheduler, &state.scheduler) {
        (Some(_), None) => return Err(CkptError::MissingPart { part: "scheduler" }),
        (Some(_), Some(sd)) => Some(sd),
        (None, _) => None,
    };

    let model_before = model.state_dict();
    model.load_state_dict(&model_state)?;

    // A snapshot of an object always loads back into it, so the roll-backs below
    // cannot fail; their results are ignored.
    let mut optimizer = optimizer;
    let optimizer_before = optimizer.as_ref().map(|o| o.state_dict());
    if let (Some(opt), Some(sd)) = (optimizer.as_mut(), optimizer_state) {
        if let Err(e) = opt.load_state_dict(sd) {
            let _ = model.load_state_dict(&model_before);
            return Err(e.into());
        }
    }

    if let (Some(sched), Some(sd)) = (scheduler, scheduler_state) {
        if let Err(e) = sched.load_state_dict(sd) {
            let _ = model.load_state_dict(&model_before);
            if let (Some(opt), Some(before)) = (optimizer.as_mut(), optimizer_before.as_ref()) {
                let _ = opt.load_state_dict(before);
            }
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;
    use tempo_nn::{Linear, Sequential};
    use tempo_optim::{Adam, AdamConfig};
    use tempo_param_groups::{OptimizerParamGroups, Value};
    use tempo_sched::{StepLR, StepLRConfig};
    use tempo_tensor::Generator;

    struct Run {
        model: Sequential<f64>,
        opt: Adam<f64>,
        sched: StepLR,
    }

    fn run(seed: u64) -> Run {
        let mut rng = Generator::new(seed);
        let model = Sequential::new()
            .with(Linear::<f64>::new(3, 2, true, &mut rng))
            .expect("model");
        let mut opt = Adam::new(model.parameters(), AdamConfig::default()).expect("adam");
        let sched = StepLR::new(&mut opt, StepLRConfig::new(2)).expect("steplr");
        Run { model, opt, sched }
    }

    fn trained(seed: u64, steps: usize) -> Run {
        let mut r = run(seed);
        for _ in 0..steps {
            for p in r.model.parameters() {
                let g = ArrayD::from_elem(p.shape(), 0.5);
                p.set_grad(Some(g)).expect("grad");
            }
            r.opt.step().expect("step");
            r.sched.step(&mut r.opt).expect("sched");
        }
        r
    }

    fn state_of(r: &Run) -> TrainingState {
        TrainingState {
            model: r.model.state_dict().to_tensor_data(),
            optimizer: Some(r.opt.state_dict()),
            scheduler: Some(r.sched.state_dict()),
            ..TrainingState::default()
        }
    }

    #[test]
    fn a_valid_state_restores_every_object() {
        let src = trained(1, 3);
        let mut dst = run(2);
        restore(
            &state_of(&src),
            &dst.model,
            Some(&mut dst.opt),
            Some(&mut dst.sched),
        )
        .expect("restore");
        assert_eq!(dst.model.state_dict(), src.model.state_dict());
        assert_eq!(dst.opt.state_dict(), src.opt.state_dict());
        assert_eq!(dst.sched.state_dict(), src.sched.state_dict());
    }

    #[test]
    fn a_refused_scheduler_state_leaves_model_and_optimizer_as_they_were() {
        let src = trained(1, 3);
        let mut state = state_of(&src);
        let mut bad = state.scheduler.clone().expect("scheduler state");
        bad.insert("last_epoch", Value::Str("three".into()));
        state.scheduler = Some(bad);

        let mut dst = trained(2, 1);
        let (model_before, opt_before, sched_before) = (
            dst.model.state_dict(),
            dst.opt.state_dict(),
            dst.sched.state_dict(),
        );
        let err = restore(&state, &dst.model, Some(&mut dst.opt), Some(&mut dst.sched));
        assert!(matches!(err, Err(CkptError::Scheduler(_))), "{err:?}");
        assert_eq!(dst.model.state_dict(), model_before);
        assert_eq!(dst.opt.state_dict(), opt_before);
        assert_eq!(dst.sched.state_dict(), sched_before);
        assert!(dst.opt.lr(0).is_ok());
    }

    #[test]
    fn a_refused_optimizer_state_leaves_the_model_as_it_was() {
        let src = trained(1, 3);
        let mut state = state_of(&src);
        if let Some(opt) = state.optimizer.as_mut() {
            opt.param_groups.push(opt.param_groups[0].clone());
        }
        let mut dst = trained(2, 1);
        let model_before = dst.model.state_dict();
        let err = restore(&state, &dst.model, Some(&mut dst.opt), None);
        assert!(matches!(err, Err(CkptError::Optimizer(_))), "{err:?}");
        assert_eq!(dst.model.state_dict(), model_before);
    }

    #[test]
    fn missing_parts_and_wrong_dtypes_are_named() {
        let src = trained(1, 1);
        let mut state = state_of(&src);
        state.scheduler = None;
        let mut dst = run(2);
        let err = restore(&state, &dst.model, Some(&mut dst.opt), Some(&mut dst.sched));
        assert!(
            matches!(err, Err(CkptError::MissingPart { part: "scheduler" })),
            "{err:?}"
        );

        let mut f32_model = Sequential::<f32>::new();
        f32_model
            .push(Linear::<f32>::new(3, 2, true, &mut Generator::new(0)))
            .expect("push");
        let err = restore::<f32>(&state_of(&src), &f32_model, None, None);
        assert!(err.is_err(), "an f64 state must not load into an f32 model");
    }
}
