//! `tempo demo`: PyTorch's numbers, printed as PyTorch prints them.

use crate::{check_error, check_ok, run_in, testdata};

const PYTORCH_REPR: &str = "\
Adam (
Parameter Group 0
    amsgrad: False
    betas: (0.9, 0.999)
    capturable: False
    decoupled_weight_decay: False
    differentiable: False
    eps: 1e-08
    foreach: None
    fused: None
    initial_lr: 0.001
    lr: 0.001
    maximize: False
    weight_decay: 0
)";

#[test]
fn demo_prints_the_group_as_pytorch_and_matches_its_trace() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_ok(&run_in(dir.path(), &["demo", "--run-dir", "d"]));
    assert!(out.contains(PYTORCH_REPR), "{out}");
    assert!(out.contains("last_epoch = 10 is even"), "{out}");
    for epoch in 1..=10 {
        assert!(dir
            .path()
            .join(format!("d/demo-epoch-{epoch:02}.tempo"))
            .is_file());
    }

    // The step table against PyTorch's recorded trace of the same program.
    let case: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(testdata("cases/training__seed_net_x_float32.json")).unwrap(),
    )
    .unwrap();
    let losses: Vec<f64> = case["expect"]["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let lrs: Vec<f64> = case["expect"]["lr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_f64().unwrap())
        .collect();
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.len() == 5 && cells[0].parse::<u32>().is_ok())
        .collect();
    assert_eq!(rows.len(), 10, "{out}");
    for (i, row) in rows.iter().enumerate() {
        let lr_used: f64 = row[1].parse().unwrap();
        let loss: f64 = row[2].parse().unwrap();
        let lr_next: f64 = row[4].parse().unwrap();
        assert!(
            (lr_used - lrs[i]).abs() <= 1e-15 * lrs[i],
            "step {}: lr {lr_used}",
            i + 1
        );
        assert!((lr_next - lrs[i + 1]).abs() <= 1e-15 * lrs[i + 1]);
        // The case's float32 tolerance, plus the 6 decimals printed.
        assert!(
            (loss - losses[i]).abs() <= 1e-5 + 1e-5 * losses[i].abs() + 5e-7,
            "step {}: loss {loss} vs PyTorch {}",
            i + 1,
            losses[i]
        );
    }
}

#[test]
fn demo_reports_an_unwritable_run_dir() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "not a directory").unwrap();
    let out = run_in(dir.path(), &["demo", "--run-dir", "file/sub"]);
    check_error(&out, "file/sub");
}
