//! PyTorch's legacy `torch.save` format (before 1.6, or
//! `_use_new_zipfile_serialization=False`): pickles in a row, then the storages.
//!
//! The file is: a pickle of the magic number `0x1950a86a20f9469cfc6c`, a pickle of the
//! protocol version 1001, a pickle of `sys_info` (`little_endian`, type sizes), the
//! pickle of the value (tensors refer to storages by key), a pickle of the list of
//! storage keys, then each storage in that order: its element count (8 bytes,
//! little-endian) and its little-endian bytes.

use std::collections::HashMap;

use super::unpickle::{tensor_specs_prefix, unpickle_prefix, TensorSpec};
use crate::tensor::{numel, Elements};
use crate::{AnyTensor, CkptError, DType, Object};

/// The first pickle of every legacy file: protocol 2, `LONG1` of the magic number.
pub(crate) const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.";

fn bad(expected: impl Into<String>, found: impl Into<String>) -> CkptError {
    CkptError::malformed("legacy torch.save file", expected, found)
}

/// No tensors are allowed in the small pickles around the value.
fn no_tensors(_: &TensorSpec) -> Result<AnyTensor, CkptError> {
    Err(bad("plain data", "a tensor"))
}

/// Reads a legacy `torch.save` file from its bytes.
pub(crate) fn read_legacy(bytes: &[u8]) -> Result<Object, CkptError> {
    let mut pos = LEGACY_MAGIC.len();
    if !bytes.starts_with(LEGACY_MAGIC) {
        return Err(CkptError::BadMagic {
            format: "legacy torch.save",
            expected: "the magic number 0x1950a86a20f9469cfc6c".into(),
            found: format!("{:02x?}", &bytes[..bytes.len().min(16)]),
        });
    }
    let (version, n) = unpickle_prefix(&bytes[pos..], &mut no_tensors)?;
    if version != Object::Int(1001) {
        return Err(bad("protocol version 1001", format!("{version:?}")));
    }
    pos += n;
    let (sys_info, n) = unpickle_prefix(&bytes[pos..], &mut no_tensors)?;
    if sys_info.get("little_endian") != Some(&Object::Bool(true)) {
        return Err(bad(
            "a file written on a little-endian machine",
            "little_endian is not True",
        ));
    }
    pos += n;
    // The value, a first time to find where it ends and which storages it uses.
    let main = pos;
    let (views, n) = tensor_specs_prefix(&bytes[main..])?;
    let specs: HashMap<String, (DType, u64)> = views
        .into_iter()
        .map(|spec| (spec.key, (spec.dtype, spec.storage_numel)))
        .collect();
    pos += n;
    let (keys, n) = unpickle_prefix(&bytes[pos..], &mut no_tensors)?;
    pos += n;
    let keys = keys
        .items()
        .ok_or_else(|| bad("a list of storage keys", keys.type_name()))?
        .iter()
        .map(|k| match k {
            Object::Str(s) => Ok(s.clone()),
            Object::Int(i) => Ok(i.to_string()),
            other => Err(bad("string storage keys", other.type_name())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Each storage: its element count, then its bytes.
    let mut storages: HashMap<String, Elements> = HashMap::new();
    for key in keys {
        let (dtype, numel_expected) = *specs
            .get(&key)
            .ok_or_else(|| bad(format!("a tensor using storage `{key}`"), "none"))?;
        let head = bytes.get(pos..pos + 8).ok_or(CkptError::Truncated {
            what: "legacy storage header",
            offset: pos as u64,
            needed: 8,
            available: (bytes.len() - pos.min(bytes.len())) as u64,
        })?;
        let count = u64::from_le_bytes(head.try_into().unwrap_or_default());
        if count != numel_expected {
            return Err(CkptError::BadTensor {
                name: key,
                detail: format!("the pickle says {numel_expected} elements, the storage {count}"),
            });
        }
        pos += 8;
        let len = count
            .checked_mul(dtype.size() as u64)
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&l| l <= bytes.len() - pos)
            .ok_or(CkptError::Truncated {
                what: "legacy storage data",
                offset: pos as u64,
                needed: count.saturating_mul(dtype.size() as u64),
                available: (bytes.len() - pos) as u64,
            })?;
        storages.insert(key, Elements::from_le_bytes(dtype, &bytes[pos..pos + len])?);
        pos += len;
    }
    // The value again, with its tensors.
    let (object, _) = unpickle_prefix(&bytes[main..], &mut |spec| {
        let bad_tensor = |detail: String| CkptError::BadTensor {
            name: spec.key.clone(),
            detail,
        };
        let storage = storages
            .get(&spec.key)
            .ok_or_else(|| bad_tensor("its storage is not in the file".into()))?;
        let n = numel(&spec.size).ok_or_else(|| bad_tensor("its size overflows".into()))?;
        if spec.offset == 0 && n == storage.len() && super::is_contiguous(&spec.size, &spec.stride)
        {
            return AnyTensor::new(spec.size.clone(), storage.clone());
        }
        AnyTensor::from_view(storage, spec.offset, &spec.size, &spec.stride).map_err(bad_tensor)
    })?;
    Ok(object)
}
