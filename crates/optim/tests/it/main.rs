//! tempo-optim's integration tests: PyTorch conformance cases, resume properties and
//! validation errors.

mod case;
mod conformance;
mod lbfgs;
mod resume;
mod validation;
