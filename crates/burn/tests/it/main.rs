//! tempo-burn's integration tests: schedulers against tempo's own numbers and through
//! burn's records, optimizers against PyTorch's conformance traces through burn.

mod optim;
mod sched;
mod training;
