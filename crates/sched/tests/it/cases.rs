//! Every `sched__*` case of PyTorch's reference traces, through `build_scheduler` and
//! the step protocol of testdata/conformance/README.md, with its resume round trip.

use std::path::PathBuf;

use serde_json::Value as Json;
use tempo_sched::SchedulerSpec;

use crate::common::{build_spec, check_lr_sequence, check_resume, fake_from_case, run, Drive};

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/conformance/cases")
}

fn rows(v: &Json) -> Vec<Vec<f64>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("a row")
                .iter()
                .map(|x| x.as_f64().expect("a number"))
                .collect()
        })
        .collect()
}

fn floats(v: &Json) -> Vec<f64> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn run_case(case: &Json) {
    let name = case["name"].as_str().expect("name");
    let spec: SchedulerSpec =
        serde_json::from_value(case["scheduler"].clone()).expect("scheduler spec");
    let fresh = fake_from_case(&case["optimizer"]);
    let steps = case["steps"].as_u64().expect("steps") as usize;
    let drive = if let Some(m) = case.get("metrics").filter(|m| !m.is_null()) {
        Drive::Metrics(floats(m))
    } else if let Some(e) = case.get("epochs").filter(|e| !e.is_null()) {
        Drive::Epochs(floats(e))
    } else {
        Drive::Plain
    };
    let resume_at = case
        .get("resume_at")
        .and_then(Json::as_u64)
        .map(|k| k as usize);
    let (rtol, atol) = (
        case["tolerance"]["rtol"].as_f64().expect("rtol"),
        case["tolerance"]["atol"].as_f64().expect("atol"),
    );
    let build = build_spec(&spec);
    let want = rows(&case["expect"]["lr"]);
    for resume in [None, resume_at] {
        let (lrs, moms) = run(&build, &fresh, steps, &drive, resume, false)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let what = format!("{name} (resume at {resume:?})");
        check_lr_sequence(&what, &lrs, &want, rtol, atol);
        if case["record_momentum"].as_bool() == Some(true) {
            if let Some(m) = case["expect"].get("momentum") {
                let want_m: Vec<Vec<Option<f64>>> = m
                    .as_array()
                    .expect("momentum rows")
                    .iter()
                    .map(|r| {
                        r.as_array()
                            .expect("a row")
                            .iter()
                            .map(Json::as_f64)
                            .collect()
                    })
                    .collect();
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
                    &flat(&want_m),
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
    let mut names: Vec<_> = std::fs::read_dir(cases_dir())
        .expect("the conformance cases are in testdata")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("sched__"))
        })
        .collect();
    names.sort();
    assert!(
        names.len() >= 24,
        "expected the 24 sched cases, found {}",
        names.len()
    );
    for path in &names {
        let text = std::fs::read_to_string(path).expect("readable case");
        let case: Json = serde_json::from_str(&text).expect("valid JSON");
        run_case(&case);
    }
}

/// The seed scenario's scheduler state, exactly as SEMANTICS §5 item 8 prints it.
#[test]
fn cyclic_seed_state_dict_is_pytorchs() {
    use tempo_param_groups::Value;
    use tempo_sched::build_scheduler;
    let case: Json = serde_json::from_str(
        &std::fs::read_to_string(cases_dir().join("sched__cyclic_triangular2_seed.json"))
            .expect("case"),
    )
    .expect("json");
    let mut opt = fake_from_case(&case["optimizer"]);
    let spec: SchedulerSpec = serde_json::from_value(case["scheduler"].clone()).expect("spec");
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
