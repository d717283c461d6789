//! Converting between `.pt` files and tempo checkpoints.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::format::MAGIC;
use crate::{load_object, read_pt, save_object, write_pt, CkptError};

/// A checkpoint file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The tempo format (a safetensors file with versioned metadata).
    Tempo,
    /// PyTorch's `torch.save` zip format.
    Torch,
}

impl Format {
    /// The format a destination path asks for: `.pt` and `.pth` are PyTorch's,
    /// anything else is tempo's.
    pub fn from_extension(path: impl AsRef<Path>) -> Format {
        match path.as_ref().extension().and_then(|e| e.to_str()) {
            Some("pt" | "pth") => Format::Torch,
            _ => Format::Tempo,
        }
    }
}

/// The format of an existing file, by its first bytes.
pub fn detect_format(path: impl AsRef<Path>) -> Result<Format, CkptError> {
    let path = path.as_ref();
    let mut head = Vec::with_capacity(8 + MAGIC.len());
    File::open(path)
        .and_then(|f| f.take(8 + MAGIC.len() as u64).read_to_end(&mut head))
        .map_err(CkptError::io(path))?;
    if head.starts_with(b"PK\x03\x04") {
        Ok(Format::Torch)
    } else if head.len() >= 8 && head[8..].starts_with(MAGIC) {
        Ok(Format::Tempo)
    } else {
        Err(CkptError::BadMagic {
            format: "checkpoint",
            expected: "a tempo checkpoint or a torch.save zip".into(),
            found: format!("{:02x?}", &head[..head.len().min(16)]),
        })
    }
}

/// Converts `src` (either format, detected by content) into `dst` (format by
/// extension, see [`Format::from_extension`]), losslessly: every value, dtype, shape
/// and key order is kept. Tensor views become contiguous tensors, and tensors that
/// shared a storage are stored separately. The write is atomic.
pub fn convert(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<(), CkptError> {
    let object = match detect_format(&src)? {
        Format::Torch => read_pt(&src)?,
        Format::Tempo => load_object(&src)?,
    };
    match Format::from_extension(&dst) {
        Format::Torch => write_pt(dst, &object),
        Format::Tempo => save_object(dst, &object),
    }
}

/// Converts a `.pt` file into a tempo checkpoint.
pub fn pt_to_tempo(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<(), CkptError> {
    save_object(dst, &read_pt(src)?)
}

/// Converts a tempo checkpoint into a `.pt` file that `torch.load(weights_only=True)` reads.
pub fn tempo_to_pt(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<(), CkptError> {
    write_pt(dst, &load_object(src)?)
}
