//! Resuming `tempo train`: after SIGKILL and after Ctrl-C, bit for bit.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempo::ckpt::{load, Object, TrainingState};

use crate::{check_ok, run_in, tempo_in, TINY_CONFIG};

fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    name.starts_with("ckpt-") && name.ends_with(".tempo")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn final_state(dir: &Path) -> TrainingState {
    let last = checkpoints(dir).pop().expect("a checkpoint");
    load(&last).unwrap()
}

/// Bit-for-bit equality of everything that decides the numbers of a run.
fn check_same_run(a: &TrainingState, b: &TrainingState) {
    assert_eq!(a.step, b.step);
    assert_eq!(a.epoch, b.epoch);
    assert_eq!(a.model.len(), b.model.len());
    for ((na, ta), (nb, tb)) in a.model.iter().zip(&b.model) {
        assert_eq!(na, nb);
        let bits = |t: &tempo::tensor::TensorData| -> Vec<u64> {
            t.to_f64_vec().iter().map(|v| v.to_bits()).collect()
        };
        assert_eq!(bits(ta), bits(tb), "parameter {na} differs");
    }
    assert_eq!(a.optimizer, b.optimizer, "optimizer state differs");
    assert_eq!(a.scheduler, b.scheduler, "scheduler state differs");
    assert_eq!(a.rng, b.rng, "generator differs");
    assert_eq!(a.metadata, b.metadata, "metrics differ");
}

fn uninterrupted(dir: &Path) -> TrainingState {
    check_ok(&run_in(
        dir,
        &[
            "train",
            "--config",
            "tiny.toml",
            "--run-dir",
            "straight",
            "-q",
        ],
    ));
    final_state(&dir.join("straight"))
}

#[test]
fn resume_after_sigkill_gives_the_same_final_parameters() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), TINY_CONFIG).unwrap();
    let straight = uninterrupted(dir.path());

    // A slowed-down run, killed with SIGKILL as soon as its first checkpoint lands.
    let run_dir = dir.path().join("killed");
    let mut child = tempo_in(dir.path())
        .args([
            "train",
            "--config",
            "tiny.toml",
            "--run-dir",
            "killed",
            "-q",
        ])
        .args(["--step-delay-ms", "15"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while checkpoints(&run_dir).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before a checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = final_state(&run_dir);
    assert!(
        at_kill.step < straight.step,
        "killed after the run finished"
    );

    check_ok(&run_in(dir.path(), &["train", "--resume", "killed", "-q"]));
    let resumed = final_state(&run_dir);
    check_same_run(&straight, &resumed);
}

#[test]
fn ctrl_c_saves_mid_epoch_and_exits_130_and_resume_finishes_the_same() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), TINY_CONFIG).unwrap();
    let straight = uninterrupted(dir.path());

    let run_dir = dir.path().join("stopped");
    let child = tempo_in(dir.path())
        .args(["train", "--config", "tiny.toml", "--run-dir", "stopped"])
        .args(["--step-delay-ms", "15"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt in the middle of the second epoch (23 batches each).
    let started = Instant::now();
    while checkpoints(&run_dir).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoint appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    // The shell's own `kill`, so no kill binary is needed.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -INT {}", child.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("tempo train --resume"), "{stderr}");
    let at_stop = final_state(&run_dir);
    let batch = at_stop
        .metadata
        .get("batch_in_epoch")
        .and_then(|v| v.as_i64());
    assert!(
        batch.is_some_and(|b| b > 0),
        "saved at an epoch boundary: {batch:?}"
    );

    check_ok(&run_in(dir.path(), &["train", "--resume", "stopped", "-q"]));
    check_same_run(&straight, &final_state(&run_dir));
    // The resumed run's checkpoint is a training state PyTorch-style tools can read.
    let object = tempo::ckpt::load_object(checkpoints(&run_dir).pop().unwrap()).unwrap();
    assert!(matches!(object.get("epoch"), Some(Object::Int(3))));
}
