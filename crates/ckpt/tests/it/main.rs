//! Integration tests of tempo-ckpt: PyTorch files, the tempo format, conversion,
//! corrupted input and the checkpointer.

mod checkpointer;
mod corruption;
mod dtypes;
mod golden;
mod inert;
mod props;
mod quantized;
mod resume;
mod sparse;
mod tempo_format;
mod torch_files;
mod torch_write;

use std::path::PathBuf;

/// A file of the PyTorch reference checkpoints.
pub(crate) fn torch_checkpoint(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/conformance/torch-checkpoints")
        .join(name)
}
