//! Every `sched__*` case of PyTorch's reference traces, through `build_scheduler` and
//! the step protocol of testdata/conformance/README.md, with its resume round trip.

use tempo_sched::SchedulerSpec;
use tempo_testkit::{cases_dir, load_case, load_cases, Case, Tolerance};

use crate::common::{build_spec, check_lr_sequence, check_resume, fake_from_case, run, Drive};

fn run_case(case: &Case) {
    let name = &case.name;
    let spec: SchedulerSpec = serde_json::from_value(case.scheduler.clone().expect("a scheduler"))
        .expect("scheduler spec");
    let fresh = fake_from_case(case.optimizer.as_ref().expect("an optimizer"));
    let steps = case.steps;
    let drive = if let Some(m) = &case.metrics {
        Drive::Metrics(m.clone())
    } else if let Some(e) = &case.epochs {
        Drive::Epochs(e.clone())
    } else {
        Drive::Plain
    };
    let resume_at = case.resume_at;
    let Tolerance { rtol, atol } = case.tolerance;
    let build = build_spec(&spec);
    let want = &case.expect.lr;
    for resume in [None, resume_at] {
        let (lrs, moms) = run(&build, &fresh, steps, &drive, resume, false)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let what = format!("{name} (resume at {resume:?})");
        check_lr_sequence(&what, &lrs, want, rtol, atol);
        if case.record_momentum {
            if let Some(want_m) = &case.expect.momentum {
                assert_eq!(
                    moms.iter()
                        .map(|r| r.iter().map(Option::is_some).collect::<Vec<_>>())
                        .collect::<Vec<_>>(),
                    want_m
                        .iter()
                        .map(|r| r.iter().map(Option::is_some).collect::<Vec<_>>())
                        .collect::<Vec<_>>(),
                    "{what}: which groups have a momentum"
                );
                let flat = |rows: &[Vec<Option<f64>>]| -> Vec<Vec<f64>> {
                    rows.iter()
                        .map(|r| r.iter().map(|x| x.unwrap_or(0.0)).collect())
                        .collect()
                };
                check_lr_sequence(
                    &format!("{what} momentum"),
                    &flat(&moms),
                    &flat(want_m),
                    rtol,
                    atol,
                );
            }
        }
    }
    // Beyond the case's resume point: every split point, with and without initial_lr.
    check_resume(name, &build, &fresh, steps, &drive);
}

#[test]
fn every_sched_case_matches_pytorch() {
    let cases = load_cases("sched__").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cases.len() >= 24,
        "expected the 24 sched cases, found {}",
        cases.len()
    );
    for case in &cases {
        run_case(case);
    }
}

/// The seed scenario's scheduler state, exactly as SEMANTICS §5 item 8 prints it.
#[test]
fn cyclic_seed_state_dict_is_pytorchs() {
    use tempo_param_groups::Value;
    use tempo_sched::build_scheduler;
    let case = load_case(&cases_dir().join("sched__cyclic_triangular2_seed.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut opt = fake_from_case(case.optimizer.as_ref().expect("an optimizer"));
    let spec: SchedulerSpec =
        serde_json::from_value(case.scheduler.clone().expect("a scheduler")).expect("spec");
    let mut s = build_scheduler(&spec, &mut opt).expect("build");
    for _ in 0..10 {
        s.step(&mut opt).expect("step");
    }
    let sd = s.state_dict();
    assert_eq!(
        Value::Dict(sd).to_string(),
        "{'max_lrs': [0.1], 'total_size': 2.0, 'step_ratio': 0.5, 'mode': 'triangular2', 'gamma': 1.0, \
         'scale_mode': 'cycle', 'cycle_momentum': False, 'base_lrs': [0.001], 'last_epoch': 10, \
         '_step_count': 11, '_is_initial': False, '_get_lr_called_within_step': False, '_last_lr': [0.001], \
         '_scale_fn_custom': None}"
    );
    let g = &opt.groups[0];
    assert_eq!(
        Value::Dict(g.clone()).to_string(),
        "{'lr': 0.001, 'betas': (0.9, 0.999), 'eps': 1e-08, 'weight_decay': 0, 'amsgrad': False, \
         'maximize': False, 'foreach': None, 'capturable': False, 'differentiable': False, 'fused': None, \
         'decoupled_weight_decay': False, 'initial_lr': 0.001}"
    );
    let _ = s.lr_at(0);
}
