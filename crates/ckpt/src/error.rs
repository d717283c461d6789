//! `CkptError`: everything that can go wrong reading or writing a checkpoint.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong when tempo reads or writes a checkpoint.
///
/// Bad input is always one of these, never a panic: every length, offset, index and
/// size read from a file is checked against what the file can hold before it is used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CkptError {
    /// An operating-system I/O error, with the path it happened on.
    #[error("I/O error on `{path}`: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An I/O error on a stream that has no path (a reader or writer given by the caller).
    #[error("I/O error: {0}")]
    Stream(#[from] std::io::Error),
    /// The file ends before a structure it announces.
    #[error("truncated {what}: it needs {needed} bytes at offset {offset}, but only {available} are there")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        needed: u64,
        /// How many bytes there are from `offset` on.
        available: u64,
    },
    /// The file does not start with the expected magic.
    #[error("not a {format} file: expected {expected}, found {found}")]
    BadMagic {
        /// The format that was expected.
        format: &'static str,
        /// The expected magic.
        expected: String,
        /// What the file has instead.
        found: String,
    },
    /// The file is a tempo checkpoint of a version this build cannot read.
    #[error(
        "unsupported tempo checkpoint version {found}: this build reads versions 1 to {supported}"
    )]
    UnsupportedVersion {
        /// The version in the file.
        found: String,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The content does not hash to the checksum stored in the file.
    #[error("checksum mismatch in {what}: the file records {expected:08x}, the content hashes to {found:08x} (the file is corrupted)")]
    ChecksumMismatch {
        /// What was checked.
        what: String,
        /// The CRC-32 recorded in the file.
        expected: u32,
        /// The CRC-32 of the content as read.
        found: u32,
    },
    /// A structure in the file is malformed.
    #[error("malformed {what}: expected {expected}, found {found}")]
    Malformed {
        /// The structure.
        what: &'static str,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A size in the file is above a limit, or above what the file can hold.
    #[error("{what} is too large: {found} (the limit is {limit})")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// Its value.
        found: u64,
        /// The limit.
        limit: u64,
    },
    /// A dtype name that tempo does not know.
    #[error(
        "unknown dtype `{found}` (tempo holds {})",
        crate::tensor::known_dtypes()
    )]
    UnknownDType {
        /// The name found in the file.
        found: String,
    },
    /// A pickle opcode cannot be executed.
    #[error("pickle error at byte {offset} (opcode {opcode:#04x}): {detail}")]
    Pickle {
        /// The opcode's position in `data.pkl`.
        offset: usize,
        /// The opcode byte.
        opcode: u8,
        /// What went wrong.
        detail: String,
    },
    /// The pickle names a global that is not on the allow-list.
    #[error("the pickle refers to `{module}.{name}`, which is not on the allow-list: only plain data and tensors are loaded, as `torch.load(weights_only=True)` does")]
    ForbiddenGlobal {
        /// The module.
        module: String,
        /// The name.
        name: String,
    },
    /// The file holds something PyTorch's safe loader reads but tempo cannot hold.
    #[error("at `{path}`: {what}, which tempo cannot hold")]
    Unsupported {
        /// Where in the value (`state.0.exp_avg`).
        path: String,
        /// What it is (`a sparse tensor`, `a tensor of dtype torch.qint8`).
        what: String,
    },
    /// A sparse or quantized tensor whose parts do not fit together (torch.load
    /// refuses it too).
    #[error("at `{path}`: {what}: {detail}")]
    InvalidTensor {
        /// Where in the value (`model.emb.weight`); empty when not yet known.
        path: String,
        /// What it is, with its layout or dtype (`a torch.sparse_csr tensor`).
        what: String,
        /// What does not fit.
        detail: String,
    },
    /// Values are nested deeper than tempo accepts.
    #[error("values are nested more than {limit} levels deep")]
    TooDeep {
        /// The nesting limit.
        limit: usize,
    },
    /// A tensor's data does not fit the storage or shape it claims.
    #[error("tensor `{name}`: {detail}")]
    BadTensor {
        /// The tensor's name or storage key.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// A value does not have the structure a state dict needs.
    #[error("at `{path}`: expected {expected}, found {found}")]
    Schema {
        /// Where in the value (`optimizer.state.0.step`).
        path: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// The destination exists and was not to be replaced.
    #[error("`{path}` exists already (it was left as it was)")]
    Exists {
        /// The destination.
        path: PathBuf,
    },
    /// A converted file does not read back bit for bit as its source (it was not kept).
    #[error("the conversion into `{path}` does not read back bit for bit as its source, at {detail}; the output was not kept")]
    NotLossless {
        /// The destination.
        path: PathBuf,
        /// Where the two first differ and how.
        detail: String,
    },
    /// Every checkpoint in a directory is unreadable.
    #[error("no intact checkpoint in `{dir}`: {skipped}")]
    NoIntactCheckpoint {
        /// The directory.
        dir: PathBuf,
        /// Each checkpoint tried, newest first, and why it was skipped.
        skipped: String,
    },
    /// A checkpoint directory holds no checkpoint.
    #[error("no checkpoint in `{dir}`")]
    NoCheckpoint {
        /// The directory.
        dir: PathBuf,
    },
    /// A configuration value is invalid.
    #[error("invalid {what}: {detail}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A training state lacks a part that the live objects need.
    #[error("the checkpoint has no {part} state, but a live {part} was given to restore")]
    MissingPart {
        /// `optimizer` or `scheduler`.
        part: &'static str,
    },
    /// The model refused the checkpoint's state dict (nothing was changed).
    #[error("restoring the model: {0}")]
    Model(#[from] tempo_nn::NnError),
    /// The optimizer refused the checkpoint's state dict (nothing was changed).
    #[error("restoring the optimizer: {0}")]
    Optimizer(#[from] tempo_optim::OptimError),
    /// The scheduler refused the checkpoint's state (nothing was changed).
    #[error("restoring the scheduler: {0}")]
    Scheduler(#[from] tempo_sched::SchedError),
}

impl CkptError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CkptError {
        let path = path.into();
        move |source| CkptError::Io { path, source }
    }

    /// The error with its key path, if it is an [`CkptError::InvalidTensor`] without one.
    pub(crate) fn at(self, at: &str) -> CkptError {
        match self {
            CkptError::InvalidTensor { path, what, detail } if path.is_empty() => {
                CkptError::InvalidTensor {
                    path: if at.is_empty() {
                        "the root".into()
                    } else {
                        at.to_string()
                    },
                    what,
                    detail,
                }
            }
            other => other,
        }
    }

    pub(crate) fn malformed(
        what: &'static str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> CkptError {
        CkptError::Malformed {
            what,
            expected: expected.into(),
            found: found.into(),
        }
    }

    pub(crate) fn schema(
        path: impl Into<String>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> CkptError {
        CkptError::Schema {
            path: path.into(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}
