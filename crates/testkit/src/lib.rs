//! Test helpers for tempo (a dev-only crate): float comparison with an explicit
//! tolerance, and the reader for PyTorch reference traces ("conformance cases").
//!
//! ```
//! use tempo_testkit::{close, Tolerance};
//!
//! let tol = Tolerance { rtol: 1e-10, atol: 1e-12 };
//! assert!(close(0.1 + 0.2, 0.3, tol));
//! assert!(!close(0.3001, 0.3, tol));
//! ```

#![forbid(unsafe_code)]

mod case;
mod close;

pub use case::{cases_dir, checkpoints_dir, load_case, Case, CaseError, Expect, ParamSpec};
pub use close::{close, first_mismatch, Mismatch, Tolerance};
