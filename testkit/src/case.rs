//! Reading the PyTorch reference traces and checkpoints the tests compare against.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value as Json;

use crate::Tolerance;

/// The repository's copy of the PyTorch reference traces.
pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance/cases")
}

/// The repository's copy of the `torch.save` checkpoints.
pub fn checkpoints_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/conformance/torch-checkpoints")
}

/// Why a case file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a case.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
}

/// One initial parameter: its shape and row-major data.
#[derive(Debug, Clone, Deserialize)]
pub struct ParamSpec {
    /// The shape.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<f64>,
}

/// What PyTorch produced.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Expect {
    /// One row per step (and row 0 after construction), one value per group.
    #[serde(default)]
    pub lr: Vec<Vec<f64>>,
    /// Momentum rows, `null` for a group without momentum.
    #[serde(default)]
    pub momentum: Option<Vec<Vec<Option<f64>>>>,
    /// Parameters after each step, one flattened array per param.
    #[serde(default)]
    pub params: Vec<Vec<Vec<f64>>>,
    /// The optimizer's per-param state after the last step: an object per state-dict
    /// id, each of the state's values by name, both in the file's (PyTorch's) order.
    #[serde(default)]
    pub final_state: Option<serde_json::Map<String, Json>>,
    /// Training cases: the loss per epoch or mini-batch.
    #[serde(default)]
    pub loss: Vec<f64>,
    /// Training cases: final parameters by name.
    #[serde(default)]
    pub final_params: Option<BTreeMap<String, Vec<f64>>>,
    /// Training cases: the final param groups as PyTorch prints them.
    #[serde(default)]
    pub final_param_groups: Option<Vec<serde_json::Map<String, Json>>>,
    /// LBFGS cases: what each `step(closure)` returned.
    #[serde(default)]
    pub returned_loss: Vec<f64>,
    /// LBFGS cases: the optimizer's cumulative `func_evals` after each call.
    #[serde(default)]
    pub func_evals: Vec<u64>,
}

/// A conformance case (see `testdata/conformance/README.md`). Fields a kind does not
/// use are absent; unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    /// Format version (1).
    pub format: u32,
    /// `sched/...`, `optim/...`, `combo/...`, `training/...`, `lbfgs/...`, `checkpoint/...`.
    pub name: String,
    /// `scheduler`, `optimizer`, `training`, `lbfgs`, `torch_checkpoint`.
    pub kind: String,
    /// `float32` or `float64`.
    pub dtype: String,
    /// Initial parameters.
    #[serde(default)]
    pub params: Vec<ParamSpec>,
    /// The optimizer spec, PyTorch's names.
    #[serde(default)]
    pub optimizer: Option<Json>,
    /// The scheduler spec, PyTorch's names.
    #[serde(default)]
    pub scheduler: Option<Json>,
    /// Steps (epochs in training cases).
    #[serde(default)]
    pub steps: usize,
    /// `grads[t-1][i]`: param i's gradient at step t.
    #[serde(default)]
    pub grads: Option<Vec<Vec<Vec<f64>>>>,
    /// ReduceLROnPlateau metrics, one per step.
    #[serde(default)]
    pub metrics: Option<Vec<f64>>,
    /// Fractional epochs for CosineAnnealingWarmRestarts, one per step.
    #[serde(default)]
    pub epochs: Option<Vec<f64>>,
    /// Round-trip all state after this step.
    #[serde(default)]
    pub resume_at: Option<usize>,
    /// Whether `expect.momentum` was recorded.
    #[serde(default)]
    pub record_momentum: bool,
    /// What PyTorch produced.
    #[serde(default)]
    pub expect: Expect,
    /// The comparison tolerance.
    #[serde(default = "default_tolerance")]
    pub tolerance: Tolerance,
    /// Every field, for kinds with fields of their own (`model`, `init`, `objective`, ...).
    #[serde(skip)]
    pub raw: Json,
}

fn default_tolerance() -> Tolerance {
    Tolerance {
        rtol: 0.0,
        atol: 0.0,
    }
}

/// Reads a case file.
pub fn load_case(path: &Path) -> Result<Case, CaseError> {
    let text = std::fs::read_to_string(path).map_err(|source| CaseError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let raw: Json = serde_json::from_str(&text).map_err(|source| CaseError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let mut case: Case =
        serde_json::from_value(raw.clone()).map_err(|source| CaseError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    case.raw = raw;
    Ok(case)
}

/// Reads every case of [`cases_dir`] whose file name starts with `prefix` (`optim__`,
/// `sched__`, ...), in file name order.
pub fn load_cases(prefix: &str) -> Result<Vec<Case>, CaseError> {
    let dir = cases_dir();
    let io = |source| CaseError::Io {
        path: dir.clone(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with(prefix) && name.ends_with(".json") {
            paths.push(path);
        }
    }
    paths.sort();
    paths.iter().map(|p| load_case(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_case_parses() {
        let mut n = 0;
        for entry in std::fs::read_dir(cases_dir()).expect("cases dir") {
            let path = entry.expect("entry").path();
            let case = load_case(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(case.format, 1, "{}", case.name);
            assert!(case.tolerance.rtol > 0.0, "{} has a tolerance", case.name);
            n += 1;
        }
        assert!(n >= 80, "found {n} cases");
    }

    #[test]
    fn cases_are_chosen_by_prefix_in_name_order() {
        let cases = load_cases("lbfgs__").expect("cases");
        let names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("lbfgs/")), "{names:?}");
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        assert!(load_cases("no such prefix").expect("cases").is_empty());
    }

    #[test]
    fn a_missing_or_malformed_case_is_an_error() {
        let missing = cases_dir().join("no-such-case.json");
        assert!(matches!(load_case(&missing), Err(CaseError::Io { .. })));
        let dir = std::env::temp_dir().join(format!("tempo-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"format": 1, "name": "x"}"#).expect("write");
        let err = load_case(&bad).map(|c| c.name);
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(matches!(err, Err(CaseError::Parse { .. })), "{err:?}");
    }

    #[test]
    fn final_state_keeps_pytorchs_order() {
        let case = load_case(&cases_dir().join("optim__adam_amsgrad_weight_decay_float64.json"))
            .expect("case");
        let state = case.expect.final_state.expect("a final state");
        let keys: Vec<&str> = state["0"]
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]);
    }
}
