//! `tempo inspect`.

use anyhow::{bail, Result};

use crate::Outcome;

/// Arguments of `tempo inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {}

/// Runs `tempo inspect`.
pub(crate) fn run(args: &InspectArgs) -> Result<Outcome> {
    let _ = args;
    bail!("not yet")
}
