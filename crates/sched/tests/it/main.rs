//! tempo-sched's integration tests: PyTorch's reference traces, resume, closed forms,
//! composites, validation.

mod allocations;
mod cases;
mod common;
mod composites;
mod errors;
mod last_epoch;
mod props;
mod registry;
mod state;
mod transformers;
