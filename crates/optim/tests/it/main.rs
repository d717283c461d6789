//! tempo-optim's integration tests: PyTorch conformance cases, resume properties and
//! validation errors.

mod alloc;
mod case;
mod conformance;
mod lbfgs;
mod resume;
mod store;
mod validation;
mod whole;
