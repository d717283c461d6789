//! Plain safetensors files (Hugging Face's `model.safetensors`): a flat dict of named
//! tensors, read into an [`Object`] and written from one.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{Map, Value as Json};

use crate::read::read_prefixed_header;
use crate::tensor::{numel, Elements};
use crate::write::write_atomic;
use crate::{AnyTensor, CkptError, DType, DTypeFiles, Object};

fn bad(expected: impl Into<String>, found: impl Into<String>) -> CkptError {
    CkptError::malformed("safetensors header", expected, found)
}

/// Reads a safetensors file as a dict of its tensors, in the header's order (the
/// `__metadata__` strings are left out: see [`read_safetensors_metadata`]). Every
/// dtype, shape and offset is checked against the file before any data is read.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Object, CkptError> {
    let path = path.as_ref();
    let mut file = File::open(path).map_err(CkptError::io(path))?;
    let (map, data_start, data_len) = header(&mut file)?;
    let mut out = Vec::new();
    for (name, info) in &map {
        if name == "__metadata__" {
            continue;
        }
        let (dtype, shape, start, nbytes) = entry(name, info, data_len)?;
        let n = nbytes / dtype.size() as u64;
        let n = usize::try_from(n).map_err(|_| bad("a tensor that fits in memory", name))?;
        let mut crc = crc32fast::Hasher::new();
        let at = data_start + start;
        let elements = Elements::fill_le(dtype, n, |buf| {
            #[cfg(any(unix, windows))]
            let filled = crate::io::read_at_hashed(&file, at, buf, &mut crc)?;
            #[cfg(not(any(unix, windows)))]
            let filled = {
                (&file).seek(SeekFrom::Start(at))?;
                crate::io::read_hashed(&mut (&file), buf, &mut crc)?
            };
            Ok(filled)
        })?;
        let tensor = AnyTensor::new(shape, elements).map_err(|_| CkptError::BadTensor {
            name: name.clone(),
            detail: "its shape does not hold its elements".into(),
        })?;
        out.push((Object::Str(name.clone()), Object::Tensor(tensor)));
    }
    Ok(Object::Dict(out))
}

/// The `__metadata__` strings of a safetensors file (`{"format": "pt"}`), in order.
pub fn read_safetensors_metadata(
    path: impl AsRef<Path>,
) -> Result<Vec<(String, String)>, CkptError> {
    let path = path.as_ref();
    let mut file = File::open(path).map_err(CkptError::io(path))?;
    let (map, _, _) = header(&mut file)?;
    Ok(map
        .get("__metadata__")
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default())
}

/// The header's JSON object, where the data starts, and the data's length.
fn header(file: &mut File) -> Result<(Map<String, Json>, u64, u64), CkptError> {
    let (bytes, file_len) = read_prefixed_header(
        file,
        [
            "safetensors header length",
            "safetensors header",
            "the safetensors header",
        ],
    )?;
    let header_len = bytes.len() as u64;
    let json: Json =
        serde_json::from_slice(&bytes).map_err(|e| bad("a JSON object", e.to_string()))?;
    let Json::Object(map) = json else {
        return Err(bad("a JSON object", "another JSON value"));
    };
    Ok((map, 8 + header_len, file_len - 8 - header_len))
}

/// A tensor entry: dtype, shape, start in the data section and length in bytes,
/// checked against the data section's length.
fn entry(
    name: &str,
    info: &Json,
    data_len: u64,
) -> Result<(DType, Vec<usize>, u64, u64), CkptError> {
    let info = info
        .as_object()
        .ok_or_else(|| bad(format!("an object for tensor `{name}`"), "another value"))?;
    let dtype = DType::from_safetensors_name(
        info.get("dtype")
            .and_then(Json::as_str)
            .ok_or_else(|| bad(format!("a dtype for `{name}`"), "none"))?,
    )?;
    let shape = info
        .get("shape")
        .and_then(Json::as_array)
        .and_then(|dims| {
            dims.iter()
                .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| bad(format!("a shape of non-negative ints for `{name}`"), "none"))?;
    let (start, end) = info
        .get("data_offsets")
        .and_then(Json::as_array)
        .filter(|o| o.len() == 2)
        .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
        .ok_or_else(|| bad(format!("two data offsets for `{name}`"), "none"))?;
    let nbytes = numel(&shape).and_then(|n| (n as u64).checked_mul(dtype.size() as u64));
    if end < start || Some(end - start) != nbytes {
        return Err(CkptError::BadTensor {
            name: name.to_string(),
            detail: format!(
                "{dtype} of shape {shape:?} does not fit the data offsets [{start}, {end}]"
            ),
        });
    }
    if end > data_len {
        return Err(CkptError::Truncated {
            what: "safetensors tensor data",
            offset: start,
            needed: end - start,
            available: data_len.saturating_sub(start),
        });
    }
    Ok((dtype, shape, start, end - start))
}

/// Writes a dict of named tensors (a model state dict) as a plain safetensors file,
/// atomically, with `{"format": "pt"}` as its metadata, as Hugging Face writes
/// `model.safetensors`. Anything but string keys and tensor values is an error
/// naming its key.
pub fn write_safetensors(path: impl AsRef<Path>, object: &Object) -> Result<(), CkptError> {
    write_atomic(path, |file| {
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write_safetensors_to(&mut w, object)?;
        w.flush()?;
        Ok(())
    })
}

/// [`write_safetensors`] to any writer.
pub fn write_safetensors_to<W: Write>(mut w: W, object: &Object) -> Result<(), CkptError> {
    let entries = object.entries().ok_or_else(|| {
        CkptError::schema("the root", "a dict of named tensors", object.type_name())
    })?;
    let mut tensors = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let name = k.as_str().ok_or_else(|| {
            CkptError::schema(
                "the root",
                "string keys",
                format!("a {} key", k.type_name()),
            )
        })?;
        let t = v
            .as_tensor()
            .ok_or_else(|| CkptError::schema(name, "a tensor", v.type_name()))?;
        tensors.push((name, t));
    }
    let mut header = Map::new();
    let mut meta = Map::new();
    meta.insert("format".into(), Json::String("pt".into()));
    header.insert("__metadata__".into(), Json::Object(meta));
    let mut offset = 0u64;
    for (name, t) in &tensors {
        let end = offset + t.nbytes() as u64;
        let mut info = Map::new();
        info.insert(
            "dtype".into(),
            Json::String(t.dtype().safetensors_name().into()),
        );
        info.insert(
            "shape".into(),
            t.shape().iter().map(|&d| Json::from(d)).collect(),
        );
        info.insert(
            "data_offsets".into(),
            Json::Array(vec![offset.into(), end.into()]),
        );
        header.insert((*name).to_string(), Json::Object(info));
        offset = end;
    }
    let mut text = serde_json::to_string(&Json::Object(header))
        .map_err(|e| CkptError::malformed("safetensors header", "JSON", e.to_string()))?
        .into_bytes();
    while (text.len() + 8) % 8 != 0 {
        text.push(b' ');
    }
    w.write_all(&(text.len() as u64).to_le_bytes())?;
    w.write_all(&text)?;
    for (_, t) in &tensors {
        w.write_all(&t.le_bytes())?;
    }
    Ok(())
}
