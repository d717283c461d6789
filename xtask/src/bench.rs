//! `cargo xtask bench`: placeholder until the benchmark suites land.

use std::process::ExitCode;

pub(crate) fn run(_args: &[String]) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the benchmark suites are not written yet")
}
