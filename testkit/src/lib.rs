//! What tempo's tests share, dev-only (the crates' tests, the benchmarks and the
//! conformance runner use it; no library does): float comparison with an explicit
//! tolerance, the reader for PyTorch's reference traces ("conformance cases"), and a
//! counting global allocator for the tests that prove a step allocates nothing.
//!
//! ```
//! use tempo_testkit::{close, Tolerance};
//!
//! let tol = Tolerance { rtol: 1e-10, atol: 1e-12 };
//! assert!(close(0.1 + 0.2, 0.3, tol));
//! assert!(!close(0.3001, 0.3, tol));
//! ```
//!
//! It depends on nothing of tempo's, so every tempo crate can take it as a
//! dev-dependency without a cycle.

// `unsafe` only in `alloc.rs`: the allocator's forwarding to the system allocator.
#![deny(unsafe_code)]

mod alloc;
mod case;
mod close;

pub use alloc::{
    allocations_in, live_bytes, thread_allocations, CountingAllocator, Window, WindowCounts,
};
pub use case::{
    cases_dir, checkpoints_dir, load_case, load_cases, Case, CaseError, Expect, ParamSpec,
};
pub use close::{close, first_mismatch, Mismatch, Tolerance};
