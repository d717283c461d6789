//! PyTorch's `torch.save` format: a zip archive with a pickle (`data.pkl`) and one raw
//! little-endian record per storage (`data/<key>`).

mod legacy;
pub(crate) mod map;
mod pickle;
mod unpickle;
mod zip;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::mem::MaybeUninit;
use std::path::Path;
use std::rc::Rc;

pub use map::{
    module_state_from_object, module_state_to_object, optimizer_state_from_object,
    optimizer_state_to_object, scheduler_state_from_object, scheduler_state_to_object,
};

use crate::io::Filled;
use crate::tensor::{numel, Elements};
use crate::write::write_atomic;
use crate::{AnyTensor, CkptError, DType, Object};
use unpickle::TensorSpec;
use zip::{check_crc, Archive, ZipWriter};

/// Reads a file written by `torch.save` (the zip format of PyTorch 1.6 and later, and
/// the legacy format before it), as
/// `torch.load(path, weights_only=True, map_location="cpu")` would.
///
/// Only plain data (None, bools, ints, floats, strings, bytes, lists, tuples, sets,
/// dicts, `OrderedDict`, `Counter`) and tensors are built; any other global in the
/// pickle is an error, never code. Tensor views (offset, strides) are read as
/// contiguous tensors; parameters are read as their data. Every CRC in the archive is
/// checked.
///
/// Storages are read straight into their tensors with positioned reads, a large one as
/// two halves on two threads, each half checksummed as it arrives.
pub fn read_pt(path: impl AsRef<Path>) -> Result<Object, CkptError> {
    let path = path.as_ref();
    let mut file = File::open(path).map_err(CkptError::io(path))?;
    if is_legacy(&mut file)? {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(CkptError::io(path))?;
        return legacy::read_legacy(&bytes);
    }
    // Positioned reads, not a memory map: a file truncated by another process while it
    // is read then gives a short read (an error), where a map would give SIGBUS.
    #[cfg(any(unix, windows))]
    return read_pt_with(&mut file, &mut |file, at, buf, crc| {
        crate::io::read_at_hashed(file, at, buf, crc)
    });
    #[cfg(not(any(unix, windows)))]
    read_pt_from(&mut file)
}

/// Reads a `torch.save` file for inspection only, such as Hugging Face's
/// `training_args.bin` (a pickled `TrainingArguments` dataclass, which
/// `torch.load(weights_only=True)` refuses).
///
/// Like [`read_pt`], but an instance of a class off the allow-list (a dataclass, an
/// enum member, `torch.device`) is read as an inert [`Object::Record`]: its class path,
/// creation arguments and state. Nothing is imported, constructed or called, so this
/// is as safe as [`read_pt`]; but a record is not the object it describes, and no
/// writer or state loader accepts one. Use it to look at a file, never to load state.
/// The legacy format (PyTorch < 1.6) is read as [`read_pt`] reads it.
pub fn read_pt_inert(path: impl AsRef<Path>) -> Result<Object, CkptError> {
    let path = path.as_ref();
    let mut file = File::open(path).map_err(CkptError::io(path))?;
    read_pt_inert_from(&mut file).map_err(|e| match e {
        CkptError::Stream(source) => CkptError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    })
}

/// [`read_pt_inert`] from any seekable reader (a file, or a `Cursor` over bytes).
pub fn read_pt_inert_from<R: Read + Seek>(reader: &mut R) -> Result<Object, CkptError> {
    if is_legacy(reader)? {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        return legacy::read_legacy(&bytes);
    }
    read_pt_with_mode(
        reader,
        &mut |r, at, buf, crc| {
            r.seek(SeekFrom::Start(at))?;
            crate::io::read_hashed(r, buf, crc)
        },
        true,
    )
}

/// [`read_pt`] from any seekable reader (a file, or a `Cursor` over bytes).
pub fn read_pt_from<R: Read + Seek>(reader: &mut R) -> Result<Object, CkptError> {
    if is_legacy(reader)? {
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes)?;
        return legacy::read_legacy(&bytes);
    }
    read_pt_with(reader, &mut |r, at, buf, crc| {
        r.seek(SeekFrom::Start(at))?;
        crate::io::read_hashed(r, buf, crc)
    })
}

/// Whether the reader holds a legacy (pre-1.6) `torch.save` file; it is left at its
/// start.
fn is_legacy<R: Read + Seek>(reader: &mut R) -> Result<bool, CkptError> {
    reader.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(legacy::LEGACY_MAGIC.len());
    reader
        .take(legacy::LEGACY_MAGIC.len() as u64)
        .read_to_end(&mut head)?;
    reader.seek(SeekFrom::Start(0))?;
    Ok(head == legacy::LEGACY_MAGIC)
}

/// Fills a buffer from a reader at an offset, adding the bytes to a CRC-32.
type Fill<'f, R> = dyn FnMut(&mut R, u64, &mut [MaybeUninit<u8>], &mut crc32fast::Hasher) -> std::io::Result<Filled>
    + 'f;

/// [`read_pt_from`], with `fill` reading a storage that is a whole tensor.
fn read_pt_with<R: Read + Seek>(
    reader: &mut R,
    fill: &mut Fill<'_, R>,
) -> Result<Object, CkptError> {
    read_pt_with_mode(reader, fill, false)
}

/// [`read_pt_with`], in inspection mode if `inert` (see [`read_pt_inert`]).
fn read_pt_with_mode<R: Read + Seek>(
    reader: &mut R,
    fill: &mut Fill<'_, R>,
    inert: bool,
) -> Result<Object, CkptError> {
    let archive = Archive::read(reader)?;
    let pkl = archive
        .entries
        .iter()
        .find(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"))
        .ok_or_else(|| {
            CkptError::malformed("torch.save archive", "a `<name>/data.pkl` entry", "none")
        })?;
    let prefix = pkl.name[..pkl.name.len() - "data.pkl".len()].to_string();
    // The small records (byteorder, version, ...) are checked here, the storages when
    // they are read.
    let data_prefix = format!("{prefix}data/");
    for e in archive
        .entries
        .iter()
        .filter(|e| !e.name.starts_with(&data_prefix) && e.name != pkl.name)
    {
        let content = archive.read_entry(reader, e)?;
        if e.name == format!("{prefix}byteorder") && content != b"little" {
            return Err(CkptError::malformed(
                "torch.save byteorder",
                "little",
                String::from_utf8_lossy(&content).into_owned(),
            ));
        }
    }
    let pickle = archive.read_entry(reader, pkl)?;
    let mut budget = archive.file_len.saturating_mul(4).saturating_add(1 << 20);
    let mut cache: HashMap<(String, DType), Rc<Elements>> = HashMap::new();
    let mut load = |spec: &TensorSpec| -> Result<AnyTensor, CkptError> {
        let bad = |detail: String| CkptError::BadTensor {
            name: format!("data/{}", spec.key),
            detail,
        };
        let entry = archive
            .entry(&format!("{prefix}data/{}", spec.key))
            .ok_or_else(|| bad("the archive has no such record".into()))?;
        let es = spec.dtype.size() as u64;
        if spec.storage_numel.checked_mul(es) != Some(entry.size) {
            return Err(bad(format!(
                "a storage of {} {} elements needs {} bytes, the record has {}",
                spec.storage_numel,
                spec.dtype,
                spec.storage_numel.saturating_mul(es),
                entry.size
            )));
        }
        let n = numel(&spec.size).ok_or_else(|| bad(format!("size {:?} overflows", spec.size)))?;
        let nbytes = (n as u64).saturating_mul(es);
        budget = budget.checked_sub(nbytes).ok_or(CkptError::TooLarge {
            what: "the tensors' total size (views of one storage are copied)",
            found: nbytes,
            limit: archive.file_len.saturating_mul(4).saturating_add(1 << 20),
        })?;
        let whole = spec.offset == 0
            && n as u64 == spec.storage_numel
            && is_contiguous(&spec.size, &spec.stride);
        if whole {
            // The common case: the tensor is its storage. Read it straight into place,
            // checksumming in the same pass.
            let mut hasher = crc32fast::Hasher::new();
            let elements = Elements::fill_le(spec.dtype, n, |buf| {
                Ok(fill(reader, entry.data_offset, buf, &mut hasher)?)
            })?;
            check_crc(entry, hasher.finalize())?;
            return AnyTensor::new(spec.size.clone(), elements);
        }
        let storage = match cache.get(&(spec.key.clone(), spec.dtype)) {
            Some(s) => Rc::clone(s),
            None => {
                // The record's size was checked against the file and the storage's
                // element count; it is read straight into the storage's elements, and
                // its CRC checked before the elements are.
                let numel = usize::try_from(spec.storage_numel)
                    .map_err(|_| bad(format!("{} elements", spec.storage_numel)))?;
                let s = Rc::new(Elements::fill_le(spec.dtype, numel, |buf| {
                    let mut hasher = crc32fast::Hasher::new();
                    let filled = fill(reader, entry.data_offset, buf, &mut hasher)?;
                    check_crc(entry, hasher.finalize())?;
                    Ok(filled)
                })?);
                cache.insert((spec.key.clone(), spec.dtype), Rc::clone(&s));
                s
            }
        };
        AnyTensor::from_view(&storage, spec.offset, &spec.size, &spec.stride).map_err(bad)
    };
    if inert {
        unpickle::unpickle_inert(&pickle, &mut load)
    } else {
        unpickle::unpickle(&pickle, &mut load)
    }
}

/// [`read_pt`] from bytes in memory.
pub fn read_pt_bytes(bytes: &[u8]) -> Result<Object, CkptError> {
    read_pt_from(&mut std::io::Cursor::new(bytes))
}

/// Whether `stride` is the row-major stride of `size` (dimensions of size 1 may have
/// any stride, as in PyTorch).
pub(crate) fn is_contiguous(size: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in size.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

/// Writes `object` as `torch.save(object, path)` would, atomically (temp file, fsync,
/// rename, fsync of the directory), so that `torch.load(path, weights_only=True)`
/// reads it back. The archive's top folder is the file's stem, as in torch.
pub fn write_pt(path: impl AsRef<Path>, object: &Object) -> Result<(), CkptError> {
    let path = path.as_ref();
    let name = archive_name(path);
    write_atomic(path, |file| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        write_pt_to(&mut w, &name, object)?;
        w.flush()?;
        Ok(())
    })
}

/// The archive folder name torch derives from a path: the file stem.
pub(crate) fn archive_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("archive");
    let clean: String = stem
        .chars()
        .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
        .collect();
    if clean.is_empty() {
        "archive".to_string()
    } else {
        clean
    }
}

/// Writes `object` in the `torch.save` layout to `w`, under the top folder
/// `archive_name`. Tensors become one storage each (`data/0`, `data/1`, ...), in the
/// order they appear, stored uncompressed at 64-byte aligned offsets.
pub fn write_pt_to<W: Write>(w: W, archive_name: &str, object: &Object) -> Result<(), CkptError> {
    let (pkl, tensors) = pickle::pickle(object)?;
    let mut zip = ZipWriter::new(w);
    zip.add(&format!("{archive_name}/data.pkl"), &pkl)?;
    zip.add(&format!("{archive_name}/.format_version"), b"1")?;
    zip.add(&format!("{archive_name}/.storage_alignment"), b"64")?;
    zip.add(&format!("{archive_name}/byteorder"), b"little")?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&pkl);
    for (i, t) in tensors.iter().enumerate() {
        let bytes = t.le_bytes();
        zip.add(&format!("{archive_name}/data/{i}"), &bytes)?;
        hasher.update(&(bytes.len() as u64).to_le_bytes());
    }
    zip.add(&format!("{archive_name}/version"), b"3\n")?;
    // torch writes a random 40-digit id; a digest of the content keeps output reproducible.
    let digest = u64::from(hasher.finalize());
    let id = format!(
        "{:020}{:020}",
        digest.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10u64.pow(19),
        digest
    );
    zip.add(
        &format!("{archive_name}/.data/serialization_id"),
        id.as_bytes(),
    )?;
    zip.finish()?;
    Ok(())
}

/// [`write_pt_to`] into a new byte vector.
pub fn write_pt_bytes(archive_name: &str, object: &Object) -> Result<Vec<u8>, CkptError> {
    let mut out = Vec::new();
    write_pt_to(&mut out, archive_name, object)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguity_ignores_unit_dimensions() {
        assert!(is_contiguous(&[2, 3], &[3, 1]));
        assert!(is_contiguous(&[2, 1, 3], &[3, 99, 1]));
        assert!(is_contiguous(&[], &[]));
        assert!(!is_contiguous(&[2, 3], &[1, 2]));
    }

    #[test]
    fn archive_names_are_stems() {
        assert_eq!(
            archive_name(Path::new("/tmp/seed_epoch5.pt")),
            "seed_epoch5"
        );
        assert_eq!(archive_name(Path::new("model.tar.pth")), "model.tar");
    }
}
