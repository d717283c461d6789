//! Runs PyTorch reference traces ("conformance cases", described in
//! `testdata/conformance/README.md`) through tempo and reports the first mismatch of
//! each failing case.
//!
//! ```no_run
//! let outcomes = tempo_conformance::run_paths(&[tempo_testkit::cases_dir()]);
//! let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
//! println!("conformance: {} passed, {} failed", outcomes.len() - failed, failed);
//! ```

#![forbid(unsafe_code)]

mod lbfgs;
mod steps;
mod torch_ckpt;
mod training;
mod util;

use std::path::{Path, PathBuf};

/// The outcome of one case.
#[derive(Debug)]
pub struct Outcome {
    /// The case's name (or its file, when it could not be read).
    pub name: String,
    /// `Err` holds the first mismatch, or why the case could not run.
    pub result: Result<(), String>,
}

/// Runs every case found at `paths` (files, or directories of `*.json` files), in file
/// name order.
pub fn run_paths(paths: &[PathBuf]) -> Vec<Outcome> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "json"))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => files.push(p.join(format!("<unreadable: {e}>"))),
            }
        } else {
            files.push(p.clone());
        }
    }
    files.iter().map(|f| run_file(f)).collect()
}

/// Runs one case file.
pub fn run_file(path: &Path) -> Outcome {
    let case = match tempo_testkit::load_case(path) {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                name: path.display().to_string(),
                result: Err(e.to_string()),
            }
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&case, path)))
        .unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("panicked: {msg}"))
        });
    Outcome {
        name: case.name.clone(),
        result,
    }
}

fn run_case(case: &tempo_testkit::Case, path: &Path) -> Result<(), String> {
    let f64_case = match case.dtype.as_str() {
        "float64" => true,
        "float32" => false,
        other => return Err(format!("unsupported dtype `{other}`")),
    };
    match (case.kind.as_str(), f64_case) {
        ("scheduler" | "optimizer", true) => steps::run::<f64>(case),
        ("scheduler" | "optimizer", false) => steps::run::<f32>(case),
        ("training", true) => training::run::<f64>(case),
        ("training", false) => training::run::<f32>(case),
        ("lbfgs", true) => lbfgs::run::<f64>(case),
        ("lbfgs", false) => lbfgs::run::<f32>(case),
        ("torch_checkpoint", true) => torch_ckpt::run::<f64>(case, path),
        ("torch_checkpoint", false) => torch_ckpt::run::<f32>(case, path),
        (other, _) => Err(format!("unsupported case kind `{other}`")),
    }
}
