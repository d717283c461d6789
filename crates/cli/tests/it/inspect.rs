//! `tempo inspect`.

use crate::{check_error, check_ok, run_in, testdata};

#[test]
fn inspect_pytorchs_seed_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let pt = testdata("torch-checkpoints/seed_epoch5_float32.pt");
    let out = check_ok(&run_in(dir.path(), &["inspect", pt.to_str().unwrap()]));
    for needle in [
        "PyTorch checkpoint",
        "epoch: 4",
        "net_x_state_dict: model state dict, 6 tensors, 564 values",
        "fc1.weight  [20, 2]",
        "out.bias    [4]",
        "Adam (its hyperparameter keys are exactly Adam's), 1 param group",
        "eps=1e-08",
        "initial_lr=0.001",
        "lr=0.025750000000000002",
        // Two moments of the 564 parameters, and one 0-d step tensor per parameter.
        "state: 6 params with state (step, exp_avg, exp_avg_sq), 1134 values",
        "step 5",
        "CyclicLR (inferred from its keys)",
        "last_epoch: 5",
        "mode: 'triangular2'",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
}

#[test]
fn inspect_a_tempo_train_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), crate::TINY_CONFIG).unwrap();
    check_ok(&run_in(
        dir.path(),
        &[
            "train",
            "--config",
            "tiny.toml",
            "--epochs",
            "1",
            "--run-dir",
            "r",
            "-q",
        ],
    ));
    let out = check_ok(&run_in(
        dir.path(),
        &["inspect", "r/ckpt-000000000023.tempo"],
    ));
    for needle in [
        "tempo checkpoint",
        "tempo.TrainingState",
        "step: 23",
        "0.weight  [16, 64]",
        "AdamW (its hyperparameter keys are exactly AdamW's)",
        "OneCycleLR (inferred",
        "rng: mt19937",
        "metrics: tempo train history, 23 steps, 1 epochs",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
}

#[test]
fn inspect_refuses_what_is_not_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.pt"), "just text").unwrap();
    let out = run_in(dir.path(), &["inspect", "notes.pt"]);
    check_error(&out, "notes.pt");
    let out = run_in(dir.path(), &["inspect", "absent.tempo"]);
    check_error(&out, "absent.tempo");
}
