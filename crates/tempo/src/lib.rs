//! tempo: PyTorch's `torch.optim` and `torch.optim.lr_scheduler` in Rust, with the same
//! numbers, exact resume, and checkpoints that move between PyTorch and Rust.
//!
//! Each crate of the workspace is re-exported as a module.

pub use tempo_ckpt as ckpt;
pub use tempo_nn as nn;
pub use tempo_optim as optim;
pub use tempo_param_groups as param_groups;
pub use tempo_sched as sched;
pub use tempo_tensor as tensor;
