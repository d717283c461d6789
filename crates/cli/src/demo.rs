//! `tempo demo`.

use anyhow::{bail, Result};

use crate::Outcome;

/// Arguments of `tempo demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {}

/// Runs `tempo demo`.
pub(crate) fn run(args: &DemoArgs) -> Result<Outcome> {
    let _ = args;
    bail!("not yet")
}
