//! The same checks on MPI: `examples/dist-check.rs` under `mpirun` (only with the `mpi`
//! feature, which needs Open MPI; CI runs them). Every run is bounded by `timeout`, so a
//! stuck rank fails the test instead of hanging it.

#![cfg(feature = "mpi")]

use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/dist-check`, which `cargo test` builds with this binary.
fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory");
    dir.join("examples").join("dist-check")
}

/// `mpirun -np ranks dist-check mode` on loopback, at most 120 s; (exit code, output).
fn mpirun(ranks: usize, mode: &str) -> (i32, String) {
    let out = Command::new("timeout")
        .args([
            "-k",
            "5",
            "120",
            "mpirun",
            "--allow-run-as-root",
            "--oversubscribe",
        ])
        .args([
            "--mca",
            "btl",
            "self,tcp",
            "--mca",
            "btl_tcp_if_include",
            "lo",
        ])
        .args([
            "--mca",
            "oob_tcp_if_include",
            "lo",
            "-np",
            &ranks.to_string(),
        ])
        .arg(example())
        .arg(mode)
        .output()
        .expect("mpirun (Open MPI) must be installed to test the mpi feature");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn ranks_equal_one_process_and_resume_on_mpi() {
    for ranks in [2, 3] {
        let (code, out) = mpirun(ranks, "train");
        assert_eq!(code, 0, "{ranks} ranks:\n{out}");
        let oks = out.lines().filter(|l| l.starts_with("ok ")).count();
        // 3 optimizers, 2 shardings, 2 checks each.
        assert_eq!(oks, 12, "{ranks} ranks:\n{out}");
        for sharding in ["WholeParameters", "Flat"] {
            let lines = |text: &str| {
                out.lines()
                    .filter(|l| l.contains(&format!(", {sharding}: ")) && l.contains(text))
                    .count()
            };
            assert_eq!(
                lines(&format!("{ranks} ranks equal one process")),
                3,
                "{out}"
            );
            assert_eq!(
                lines(&format!(
                    "resumed with {ranks} ranks bit for bit (either sharding) and in one process"
                )),
                3,
                "{out}"
            );
        }
    }
}

#[test]
fn the_float_collectives_sum_short_and_long_messages() {
    for ranks in [2, 3] {
        let (code, out) = mpirun(ranks, "collectives");
        assert_eq!(code, 0, "{ranks} ranks:\n{out}");
        let oks = out.lines().filter(|l| l.starts_with("ok ")).count();
        assert_eq!(oks, 2, "{ranks} ranks:\n{out}");
    }
}

#[test]
fn flat_sharding_refuses_adafactor_on_every_rank() {
    let (code, out) = mpirun(2, "refuse");
    assert_ne!(code, 0, "{out}");
    assert_ne!(code, 124, "timed out:\n{out}");
    let message = "Adafactor cannot be sharded by ranges of elements (Sharding::Flat)";
    assert_eq!(out.matches(message).count(), 2, "{out}");
}

#[test]
fn a_mismatched_rank_ends_the_run_on_every_rank() {
    let (code, out) = mpirun(2, "mismatch");
    assert_ne!(code, 0, "{out}");
    assert_ne!(code, 124, "timed out:\n{out}");
    let message = "rank 1 disagrees with rank 0 about the optimizer and its parameters: rank 0 has `parameter 3 of shape [2, 2, 2]`, rank 1 has `parameter 3 of shape [2, 4]`";
    // Both ranks say it (not only the one that differs).
    assert_eq!(out.matches(message).count(), 2, "{out}");
}

#[test]
fn a_rank_that_dies_ends_the_run() {
    let (code, out) = mpirun(3, "die");
    assert_ne!(code, 0, "{out}");
    assert_ne!(code, 124, "timed out (a rank hung):\n{out}");
    assert!(out.contains("rank 2: ending abruptly"), "{out}");
    assert!(
        out.contains("process rank 2") && out.contains("exited on signal"),
        "{out}"
    );
}
