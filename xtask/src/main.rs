//! tempo's automation: `cargo xtask <task>`.
//!
//! - `conformance [PATH ...]`: runs PyTorch reference traces through tempo.
//! - `tidy`: checks the dependency rules between tempo's crates and the source rules
//!   (module docs, `forbid(unsafe_code)`, the code map, cited docs).
//! - `bench [--quick] [--vs-torch]`: runs the criterion suites and writes a summary
//!   under `target/bench/`.
//!
//! xtask depends on no library crate of tempo's: it runs cargo.

#![forbid(unsafe_code)]

use std::process::ExitCode;

mod bench;
mod conformance;
mod source_rules;
mod tidy;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, r)) => (t.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match task {
        "conformance" => conformance::run(rest),
        "tidy" => tidy::run(rest),
        "bench" => bench::run(rest),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 conformance [PATH ...]   run conformance cases (files or directories)\n  \
                 tidy                     check the dependency rules between crates\n  \
                 bench [--quick] [--vs-torch]  run the benchmarks, summary in target/bench/"
            );
            return if task == "help" || task == "--help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask {task}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives one level below it).
fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into())
}

/// `cargo`, as the running cargo names itself.
fn cargo() -> std::process::Command {
    let mut cmd =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}
