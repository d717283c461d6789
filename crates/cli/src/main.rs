//! `tempo`: train a model with PyTorch's optimizers and schedulers, draw schedules,
//! and inspect or convert checkpoints.
//!
//! With no arguments, `tempo` runs `tempo train` on its embedded default: an MLP on the
//! handwritten digits, AdamW with OneCycleLR, a checkpoint every epoch.

#![forbid(unsafe_code)]

mod charts;
mod checkpoint;
mod config;
mod convert;
mod data;
mod demo;
mod inspect;
mod inspect_hf;
mod metrics;
mod plot;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// PyTorch's optimizers and LR schedulers in Rust, with the same numbers.
#[derive(Debug, Parser)]
#[command(
    name = "tempo",
    version,
    about = "Train with PyTorch's optimizers and LR schedulers, draw schedules, inspect and convert checkpoints.",
    long_about = "Train with PyTorch's optimizers and LR schedulers, draw schedules, inspect and \
                  convert checkpoints.\n\nWith no command, `tempo` runs `tempo train` with the \
                  embedded defaults: a 64-128-10 MLP on the handwritten digits, AdamW with \
                  OneCycleLR, a checkpoint every epoch in runs/<timestamp>.",
    after_help = "Examples:\n  \
        tempo                                   train the default model on the embedded digits\n  \
        tempo train --epochs 5 --run-dir runs/a  a shorter run into runs/a\n  \
        tempo train --resume runs/a              continue runs/a from its latest checkpoint\n  \
        tempo demo                              PyTorch's Adam + CyclicLR question, answered\n  \
        tempo plot --scheduler 'OneCycleLR(max_lr=0.1, total_steps=100)' -o onecycle.svg\n  \
        tempo inspect runs/a/ckpt-000005.tempo  what a checkpoint holds\n  \
        tempo convert model.pt model.tempo      PyTorch checkpoint to tempo's format"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a model (the default command).
    Train(train::TrainArgs),
    /// Run PyTorch's Adam + CyclicLR(triangular2) example and explain its learning rates.
    Demo(demo::DemoArgs),
    /// Draw learning-rate schedules to SVG or PNG, or print them as CSV.
    Plot(plot::PlotArgs),
    /// Summarise a tempo checkpoint or a PyTorch `.pt` file.
    Inspect(inspect::InspectArgs),
    /// Convert a checkpoint between PyTorch `.pt` and tempo's format.
    Convert(convert::ConvertArgs),
}

/// The exit code of a run that Ctrl-C stopped after saving a checkpoint (128 + SIGINT).
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// What a command reports back to `main`.
pub(crate) enum Outcome {
    /// It finished.
    Done,
    /// The user interrupted it; it saved what it could.
    Interrupted,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with code 0; usage errors to stderr with code 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let result = match cli.command {
        None => train::run(train::TrainArgs::default()),
        Some(Command::Train(args)) => train::run(args),
        Some(Command::Demo(args)) => demo::run(&args),
        Some(Command::Plot(args)) => plot::run(&args),
        Some(Command::Inspect(args)) => inspect::run(&args),
        Some(Command::Convert(args)) => convert::run(&args),
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Interrupted) => ExitCode::from(EXIT_INTERRUPTED),
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The anyhow chain on one line: `outer: inner: root cause`.
fn error_chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        // Some errors repeat their source in their own message; skip exact repeats.
        if parts.last().is_some_and(|last| last.contains(&s)) {
            continue;
        }
        parts.push(s);
    }
    parts.join(": ")
}
