//! `cargo xtask conformance [PATH ...]`: builds the conformance runner in release mode
//! and runs it on the given case files or directories (default: the repository's
//! copy of the PyTorch traces and torch checkpoints).

use std::process::ExitCode;

use anyhow::Context;

pub(crate) fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::cargo();
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "--package",
        "tempo-conformance",
        "--bin",
        "tempo-conformance",
        "--",
    ]);
    if args.is_empty() {
        let root = crate::workspace_root().join("testdata/conformance");
        cmd.arg(root.join("cases"))
            .arg(root.join("torch-checkpoints"));
    } else {
        cmd.args(args);
    }
    let status = cmd.status().context("running the conformance runner")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
