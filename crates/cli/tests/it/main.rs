//! End-to-end tests of the `tempo` binary: each command run as a user runs it.

mod convert;
mod demo;
mod distributed;
mod foreign;
mod inspect;
mod plot;
mod resume;
mod safety;
mod train;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `tempo` binary, run in `dir`.
pub(crate) fn tempo_in(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tempo"));
    c.current_dir(dir);
    c
}

/// Runs `tempo args...` in `dir` and returns its output.
pub(crate) fn run_in(dir: &Path, args: &[&str]) -> Output {
    tempo_in(dir)
        .args(args)
        .output()
        .expect("the tempo binary runs")
}

/// Asserts success and returns stdout.
pub(crate) fn check_ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tempo failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a failure with exit code 1 and a short `error: ...` message containing
/// `needle`, without a backtrace; returns stderr.
pub(crate) fn check_error(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.starts_with("error: "), "stderr: {stderr}");
    assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    assert!(stderr.lines().count() <= 2, "more than two lines: {stderr}");
    assert!(
        !stderr.contains("backtrace") && !stderr.contains("panicked"),
        "{stderr}"
    );
    stderr
}

/// The repository's conformance data.
pub(crate) fn testdata(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/conformance")
        .join(path)
}

/// A small, fast training config: 3 epochs of 23 batches of a 64-16-10 MLP.
pub(crate) const TINY_CONFIG: &str = r#"
seed = 3
epochs = 3
batch_size = 64

[model]
hidden = [16]

[optimizer]
type = "AdamW"
[optimizer.kwargs]
lr = 0.001

[scheduler]
type = "OneCycleLR"
step_every = "batch"
[scheduler.kwargs]
max_lr = 0.02

[checkpoint]
every = 1
keep = 10
"#;

#[test]
fn every_command_has_help_with_examples() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["train", "demo", "plot", "inspect", "convert"] {
        let out = check_ok(&run_in(dir.path(), &[cmd, "--help"]));
        assert!(
            out.contains("Examples:"),
            "{cmd} --help has no examples:\n{out}"
        );
        assert!(out.contains("Usage: tempo"), "{cmd}:\n{out}");
    }
    let top = check_ok(&run_in(dir.path(), &["--help"]));
    for cmd in ["train", "demo", "plot", "inspect", "convert"] {
        assert!(top.contains(cmd), "{top}");
    }
}

#[test]
fn a_wrong_flag_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["plot", "--stepz", "3"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--stepz"), "{stderr}");
}
