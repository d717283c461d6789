//! `tempo-conformance [PATH ...]`: runs conformance cases and prints one line per
//! failing case, then `conformance: N passed, M failed`. Exits 1 if any failed.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut paths: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if paths.is_empty() {
        paths = vec![tempo_testkit::cases_dir(), tempo_testkit::checkpoints_dir()];
    }
    let outcomes = tempo_conformance::run_paths(&paths);
    let mut failed = 0;
    for o in &outcomes {
        if let Err(e) = &o.result {
            failed += 1;
            println!("FAIL {}: {e}", o.name);
        }
    }
    println!(
        "conformance: {} passed, {} failed",
        outcomes.len() - failed,
        failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
