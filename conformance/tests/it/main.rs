//! Every shipped PyTorch reference trace passes through tempo.

#[test]
fn every_shipped_case_passes() {
    let outcomes = tempo_conformance::run_paths(&[
        tempo_testkit::cases_dir(),
        tempo_testkit::checkpoints_dir(),
    ]);
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err().map(|e| format!("{}: {e}", o.name)))
        .collect();
    assert!(outcomes.len() >= 90, "only {} cases found", outcomes.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        outcomes.len(),
        failures.join("\n")
    );
}
