//! Every scheduler of the registry, from its example call: it builds under its own
//! name, steps, and resumes exactly from its state dict. A new entry is tested here
//! without editing a list.

use tempo_sched::{build_scheduler, SchedulerSpec, SimulatedGroups, SCHEDULERS, SCHEDULER_NAMES};

/// Ten steps (with a metric where the scheduler needs one), the lrs after each.
fn steps(s: &mut dyn tempo_sched::LRScheduler, opt: &mut SimulatedGroups, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for t in 0..n {
        let r = if s.needs_metric() {
            s.step_with_metric(opt, 1.0 / (1.0 + (t % 4) as f64))
        } else {
            s.step(opt)
        };
        r.unwrap_or_else(|e| panic!("{} at step {t}: {e}", s.name()));
        out.extend(opt.lrs().iter().map(|x| x.to_bits()));
    }
    out
}

#[test]
fn every_registered_scheduler_builds_steps_and_resumes() {
    assert_eq!(SCHEDULERS.len(), SCHEDULER_NAMES.len());
    for info in SCHEDULERS {
        let spec: SchedulerSpec = info
            .example
            .parse()
            .unwrap_or_else(|e| panic!("{}: {e}", info.example));
        assert_eq!(spec.r#type, info.name, "{}", info.example);
        let fresh = || SimulatedGroups::sgd(&[0.1, 0.05], 0.9);
        // Ten straight steps.
        let mut opt = fresh();
        let mut s =
            build_scheduler(&spec, &mut opt).unwrap_or_else(|e| panic!("{}: {e}", info.name));
        let straight = steps(s.as_mut(), &mut opt, 10);
        // Four steps, a state-dict round trip into a fresh scheduler, six more.
        let mut opt = fresh();
        let mut s = build_scheduler(&spec, &mut opt).expect("build");
        let mut resumed = steps(s.as_mut(), &mut opt, 4);
        let state = s.state_dict();
        let mut again = build_scheduler(&spec, &mut fresh()).expect("rebuild");
        again
            .load_state_dict(&state)
            .unwrap_or_else(|e| panic!("{}: load_state_dict: {e}", info.name));
        resumed.extend(steps(again.as_mut(), &mut opt, 6));
        assert_eq!(straight, resumed, "{}: the resumed run differs", info.name);
    }
}

#[test]
fn an_unknown_name_is_refused() {
    let mut opt = SimulatedGroups::with_lrs(&[0.1]);
    assert!(matches!(
        build_scheduler(&SchedulerSpec::new("StepLRR"), &mut opt),
        Err(tempo_sched::SchedError::UnknownScheduler { ref name }) if name == "StepLRR"
    ));
}
