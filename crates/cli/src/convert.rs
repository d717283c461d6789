//! `tempo convert`.

use anyhow::{bail, Result};

use crate::Outcome;

/// Arguments of `tempo convert`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConvertArgs {}

/// Runs `tempo convert`.
pub(crate) fn run(args: &ConvertArgs) -> Result<Outcome> {
    let _ = args;
    bail!("not yet")
}
