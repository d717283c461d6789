//! `tempo-ckpt`: checkpoints.

mod error;
mod object;
mod state;
mod tensor;
mod torch;
mod write;

pub use error::CkptError;
pub use object::{Object, MAX_DEPTH};
pub use state::{ModuleStateDict, OptimizerStateDict, ParamState, StateValue};
pub use tensor::{AnyTensor, DType, Elements};
pub use torch::{
    module_state_from_object, module_state_to_object, optimizer_state_from_object,
    optimizer_state_to_object, read_pt, read_pt_bytes, read_pt_from, scheduler_state_from_object,
    scheduler_state_to_object, write_pt, write_pt_bytes, write_pt_to,
};
pub use write::write_atomic;
