//! `tempo train`: an MLP on the digits (or a CSV), with checkpoints, resume and pictures.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::Outcome;

/// Arguments of `tempo train`.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct TrainArgs {
    /// A TOML configuration (see configs/default.toml); flags override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Continue the run in RUN_DIR from its latest checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    pub(crate) resume: Option<PathBuf>,
    /// Suppress the progress bar and the per-epoch lines.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

/// Runs `tempo train`.
pub(crate) fn run(args: TrainArgs) -> Result<Outcome> {
    let _ = args;
    bail!("not yet")
}
