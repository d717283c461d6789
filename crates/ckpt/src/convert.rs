//! Converting between `.pt` files and tempo checkpoints.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use crate::format::MAGIC;
use crate::torch::archive_name;
use crate::write::write_atomic_checked;
use crate::{
    load_object, read_pt, read_safetensors, write_pt_to, write_safetensors_to, write_tempo,
    CkptError, Object,
};

/// A checkpoint file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// The tempo format (a safetensors file with versioned metadata).
    Tempo,
    /// PyTorch's `torch.save` zip format.
    Torch,
    /// A plain safetensors file (a dict of named tensors, as `model.safetensors`).
    Safetensors,
}

impl Format {
    /// The format a destination path asks for: `.pt`, `.pth`, `.bin` and `.ckpt` are
    /// PyTorch's, `.safetensors` plain safetensors, anything else tempo's.
    pub fn from_extension(path: impl AsRef<Path>) -> Format {
        match path.as_ref().extension().and_then(|e| e.to_str()) {
            Some("pt" | "pth" | "bin" | "ckpt") => Format::Torch,
            Some("safetensors") => Format::Safetensors,
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
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46") {
        // A torch.save zip, or the legacy format's magic-number pickle.
        Ok(Format::Torch)
    } else if head.len() >= 8 && head[8..].starts_with(MAGIC) {
        Ok(Format::Tempo)
    } else if head.len() > 8 && head[8] == b'{' {
        Ok(Format::Safetensors)
    } else {
        Err(CkptError::BadMagic {
            format: "checkpoint",
            expected: "a tempo checkpoint, a torch.save zip or a safetensors file".into(),
            found: format!("{:02x?}", &head[..head.len().min(16)]),
        })
    }
}

/// Converts `src` (either format, detected by content) into `dst` (format by
/// extension, see [`Format::from_extension`]), losslessly, replacing `dst` if it
/// exists: see [`convert_checked`].
pub fn convert(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<(), CkptError> {
    convert_checked(src, dst, true).map(|_| ())
}

/// Converts `src` (either format, detected by content) into `dst` (format by
/// extension, see [`Format::from_extension`]) and returns what `src` holds.
///
/// Every value, dtype, shape and key order is kept; tensor views become contiguous
/// tensors, and tensors that shared a storage are stored separately. The output is
/// written to a temporary file, read back and compared with the input bit for bit
/// (NaN payloads and signs, and the sign of zero, included) before it takes `dst`'s
/// name: a conversion that would lose anything is [`CkptError::NotLossless`] and leaves
/// no file behind. An existing `dst` is replaced only if `replace` (else
/// [`CkptError::Exists`]), and only by a verified file.
pub fn convert_checked(
    src: impl AsRef<Path>,
    dst: impl AsRef<Path>,
    replace: bool,
) -> Result<Object, CkptError> {
    let object = read_any(src.as_ref())?;
    write_verified(dst.as_ref(), Format::from_extension(&dst), &object, replace)?;
    Ok(object)
}

/// Reads a checkpoint in any format tempo reads, detected by content.
pub fn read_any(path: impl AsRef<Path>) -> Result<Object, CkptError> {
    let path = path.as_ref();
    match detect_format(path)? {
        Format::Torch => read_pt(path),
        Format::Tempo => load_object(path),
        Format::Safetensors => read_safetensors(path),
    }
}

/// Writes `object` to `dst` in `format`, atomically, after reading the temporary file
/// back and comparing it with `object` bit for bit.
fn write_verified(
    dst: &Path,
    format: Format,
    object: &Object,
    replace: bool,
) -> Result<(), CkptError> {
    let archive = archive_name(dst);
    write_atomic_checked(
        dst,
        replace,
        |file| {
            let mut w = BufWriter::with_capacity(1 << 20, file);
            match format {
                Format::Torch => write_pt_to(&mut w, &archive, object)?,
                Format::Tempo => write_tempo(&mut w, object)?,
                Format::Safetensors => write_safetensors_to(&mut w, object)?,
            }
            w.flush()?;
            Ok(())
        },
        |tmp| {
            let back = match format {
                Format::Torch => read_pt(tmp)?,
                Format::Tempo => load_object(tmp)?,
                Format::Safetensors => read_safetensors(tmp)?,
            };
            match object.first_difference(&back) {
                None => Ok(()),
                Some(detail) => Err(CkptError::NotLossless {
                    path: dst.to_path_buf(),
                    detail,
                }),
            }
        },
    )
}

/// Converts a `.pt` file into a tempo checkpoint, verified as [`convert_checked`] does.
pub fn pt_to_tempo(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<(), CkptError> {
    write_verified(dst.as_ref(), Format::Tempo, &read_pt(src)?, true)
}

/// Converts a tempo checkpoint into a `.pt` file that `torch.load(weights_only=True)`
/// reads, verified as [`convert_checked`] does.
pub fn tempo_to_pt(src: impl AsRef<Path>, dst: impl AsRef<Path>) -> Result<(), CkptError> {
    write_verified(dst.as_ref(), Format::Torch, &load_object(src)?, true)
}
