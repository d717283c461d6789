//! `tempo-ckpt`: checkpoints, the only place in tempo that knows file formats.
//!
//! * **The tempo format** ([`save`]/[`load`] for a [`TrainingState`],
//!   [`save_object`]/[`load_object`] for any [`Object`] tree): a safetensors file whose
//!   `__metadata__` holds a magic, a version, a CRC-32 of the whole file and the rest of
//!   the state as JSON. safetensors tools in Python and Rust read the weights directly.
//!   Specified in `docs/checkpoint-format.md`.
//! * **Crash-safe writes** ([`write_atomic`]): temp file, fsync, rename, fsync of the
//!   directory. A [`Checkpointer`] keeps the last N checkpoints and the best.
//! * **PyTorch in and out**: [`read_pt`] reads `torch.save` files with a restricted
//!   pickle VM (like `torch.load(weights_only=True)`: plain data and tensors only, never
//!   code); [`write_pt`] writes files `torch.load` reads; [`convert`] goes both ways.
//!   [`module_state_from_object`], [`optimizer_state_from_object`] and
//!   [`scheduler_state_from_object`] map PyTorch's state-dict layouts onto tempo's.
//!
//! Readers validate everything before returning, and bad input of any kind is an
//! [`CkptError`], never a panic.
//!
//! # Performance
//!
//! Tensor bytes cross memory once in each direction. [`save`] writes straight from the
//! state's arrays (no intermediate tree of copies), in large writes, computing the
//! checksum on a second thread; [`load`] and [`read_pt`] read each tensor straight
//! into its final, unzeroed buffer with positioned reads (never a memory map, so a
//! file truncated while it is read is an error, not a `SIGBUS`), large ones as two
//! halves on two threads, checksumming as the bytes arrive. A tree you own converts to a [`TrainingState`] without a copy with
//! `TrainingState::try_from(object)`; [`TrainingState::from_object`] takes a
//! reference and therefore copies every tensor.
//!
//! # Example: a training state through the tempo format and PyTorch's
//!
//! ```
//! use ndarray::{ArrayD, IxDyn};
//! use tempo_ckpt::{load, read_pt, save, write_pt, Object, TrainingState};
//! use tempo_tensor::TensorData;
//!
//! let dir = tempfile::tempdir()?;
//! let weight = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
//! let mut state = TrainingState { epoch: 3, step: 300, ..TrainingState::default() };
//! state.model.push(("fc.weight".into(), TensorData::F32(weight)));
//! state.metadata.insert("val_loss", 0.25);
//!
//! save(dir.path().join("run.tempo"), &state)?;
//! assert_eq!(load(dir.path().join("run.tempo"))?, state);
//!
//! // The same state as a PyTorch checkpoint dict: torch.load reads it.
//! write_pt(dir.path().join("run.pt"), &state.to_object())?;
//! let back = read_pt(dir.path().join("run.pt"))?;
//! assert_eq!(back.get("epoch"), Some(&Object::Int(3)));
//! assert_eq!(TrainingState::try_from(back)?, state); // moves the tensors, no copy
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checkpointer;
mod convert;
mod error;
mod format;
mod io;
mod object;
#[cfg(target_os = "linux")]
mod pages;
mod quantized;
mod read;
mod restore;
mod safetensors;
mod sparse;
mod state;
mod tensor;
mod torch;
mod training;
mod write;

pub use checkpointer::{
    CheckpointEntry, Checkpointer, CheckpointerConfig, LatestCheckpoint, MetricMode,
    SkippedCheckpoint,
};
pub use convert::{
    convert, convert_checked, detect_format, pt_to_tempo, read_any, tempo_to_pt, Format,
};
pub use error::CkptError;
pub use format::{FORMAT_VERSION, MAGIC};
pub use object::{Object, MAX_DEPTH};
pub use quantized::{QDType, QScheme, QuantizedTensor};
pub use read::{load_object, peek_object, read_tempo, read_tempo_bytes};
pub use restore::restore;
pub use safetensors::{
    read_safetensors, read_safetensors_metadata, write_safetensors, write_safetensors_to,
};
pub use sparse::{SparseLayout, SparseTensor};
pub use state::{ModuleStateDict, OptimizerStateDict, ParamState, StateValue};
pub use tempo_tensor::DType;
pub use tensor::{AnyTensor, DTypeFiles, Elements};
pub use torch::{
    module_state_from_object, module_state_to_object, optimizer_state_from_object,
    optimizer_state_to_object, read_pt, read_pt_bytes, read_pt_from, read_pt_inert,
    read_pt_inert_from, scheduler_state_from_object, scheduler_state_to_object, write_pt,
    write_pt_bytes, write_pt_to,
};
pub use training::{load, save, RngArray, RngState, TrainingState, TRAINING_STATE_KIND};
pub use write::{save_object, write_atomic, write_tempo, write_tempo_bytes};
