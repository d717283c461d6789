//! Reading tempo checkpoints: everything is validated before a value is returned.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::mem::MaybeUninit;
use std::path::Path;

use serde_json::Value as Json;

use crate::format::{decode, tensor_refs, CHECKSUM_KEY, FORMAT_VERSION, MAGIC, MAX_HEADER};
use crate::io::Filled;
use crate::tensor::{numel, Elements};
use crate::{AnyTensor, CkptError, DType, DTypeFiles, Object};

/// Reads a tempo checkpoint.
///
/// The tensors are read straight into their final buffers with positioned reads, a
/// large tensor as two halves on two threads, each half checksummed as it arrives.
pub fn load_object(path: impl AsRef<Path>) -> Result<Object, CkptError> {
    let path = path.as_ref();
    let mut file = File::open(path).map_err(CkptError::io(path))?;
    let header = read_header(&mut file)?;
    let start = 8 + header.hashed.len() as u64;
    // Positioned reads, not a memory map: a file truncated by another process while it
    // is read then gives a short read (an error), where a map would give SIGBUS.
    #[cfg(any(unix, windows))]
    {
        let mut at = start;
        read_data(header, |buf, crc| {
            let filled = crate::io::read_at_hashed(&file, at, buf, crc)?;
            at += buf.len() as u64;
            Ok(filled)
        })
    }
    #[cfg(not(any(unix, windows)))]
    read_data(header, |buf, crc| {
        crate::io::read_hashed(&mut file, buf, crc)
    })
}

/// [`load_object`] from bytes in memory.
pub fn read_tempo_bytes(bytes: &[u8]) -> Result<Object, CkptError> {
    read_tempo(&mut std::io::Cursor::new(bytes))
}

/// A parsed and validated header.
struct Header {
    /// The header bytes with the checksum digits replaced by `0`, for hashing.
    hashed: Vec<u8>,
    checksum: u32,
    content: Json,
    /// `(name, dtype, shape, length in bytes)` in data order.
    tensors: Vec<(String, DType, Vec<usize>, u64)>,
}

fn bad_header(expected: impl Into<String>, found: impl Into<String>) -> CkptError {
    CkptError::malformed("tempo checkpoint header", expected, found)
}

/// Reads a header laid out as tempo's format and safetensors lay theirs out (a
/// little-endian u64 length, then that many bytes), after checking the length against
/// the file and [`MAX_HEADER`]. `what` names, for errors, the length field, the header,
/// and the header when it is too large. Returns the header's bytes and the file's length.
pub(crate) fn read_prefixed_header<R: Read + Seek>(
    r: &mut R,
    what: [&'static str; 3],
) -> Result<(Vec<u8>, u64), CkptError> {
    let [what_len, what_header, what_large] = what;
    let file_len = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    if file_len < 8 {
        return Err(CkptError::Truncated {
            what: what_len,
            offset: 0,
            needed: 8,
            available: file_len,
        });
    }
    let mut len = [0u8; 8];
    r.read_exact(&mut len)?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER {
        return Err(CkptError::TooLarge {
            what: what_large,
            found: header_len,
            limit: MAX_HEADER,
        });
    }
    if header_len > file_len - 8 {
        return Err(CkptError::Truncated {
            what: what_header,
            offset: 8,
            needed: header_len,
            available: file_len - 8,
        });
    }
    let mut header = vec![0u8; header_len as usize];
    r.read_exact(&mut header)?;
    Ok((header, file_len))
}

/// Reads and validates the header: magic, version, metadata, tensor table (dtypes,
/// shapes, offsets that tile the data section exactly), content JSON and its tensor
/// references. Nothing of the data section is read.
fn read_header<R: Read + Seek>(r: &mut R) -> Result<Header, CkptError> {
    let (header, file_len) = read_prefixed_header(
        r,
        [
            "tempo checkpoint header length",
            "tempo checkpoint header",
            "the checkpoint header",
        ],
    )?;
    let header_len = header.len() as u64;
    if !header.starts_with(MAGIC) {
        let n = header.len().min(MAGIC.len());
        return Err(CkptError::BadMagic {
            format: "tempo checkpoint",
            expected: String::from_utf8_lossy(MAGIC).into_owned(),
            found: String::from_utf8_lossy(&header[..n]).into_owned(),
        });
    }
    let rest = &header[MAGIC.len()..];
    let version_len = rest.iter().position(|&b| b == b'"').unwrap_or(rest.len());
    let version = String::from_utf8_lossy(&rest[..version_len]).into_owned();
    match version.parse::<u32>() {
        Ok(v) if (1..=FORMAT_VERSION).contains(&v) => {}
        _ => {
            return Err(CkptError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            })
        }
    }

    let json: Json =
        serde_json::from_slice(&header).map_err(|e| bad_header("JSON", e.to_string()))?;
    let Json::Object(map) = json else {
        return Err(bad_header("a JSON object", "another JSON value"));
    };
    let meta = map
        .get("__metadata__")
        .and_then(Json::as_object)
        .ok_or_else(|| bad_header("`__metadata__`", "none"))?;
    let text = |key: &str| -> Result<&str, CkptError> {
        meta.get(key)
            .and_then(Json::as_str)
            .ok_or_else(|| bad_header(format!("a string `{key}` in `__metadata__`"), "none"))
    };
    let checksum_text = text("checksum")?;
    let checksum = checksum_text
        .strip_prefix("crc32:")
        .filter(|h| h.len() == 8 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| bad_header("a checksum `crc32:` + 8 hex digits", checksum_text))?;
    let content: Json = serde_json::from_str(text("content")?)
        .map_err(|e| bad_header("content JSON", e.to_string()))?;

    // The checksum digits: JSON escaping keeps the key from occurring inside strings.
    let at = header
        .windows(CHECKSUM_KEY.len())
        .position(|w| w == CHECKSUM_KEY)
        .map(|p| p + CHECKSUM_KEY.len())
        .filter(|&p| p + 8 <= header.len())
        .ok_or_else(|| bad_header("the checksum in the metadata's first entries", "none"))?;
    let mut hashed = header;
    hashed[at..at + 8].copy_from_slice(b"00000000");

    let data_len = file_len - 8 - header_len;
    let mut tensors = Vec::new();
    let mut ranges = Vec::new();
    for (name, info) in &map {
        if name == "__metadata__" {
            continue;
        }
        let info = info
            .as_object()
            .ok_or_else(|| bad_header(format!("an object for tensor `{name}`"), "another value"))?;
        let dtype_name = info
            .get("dtype")
            .and_then(Json::as_str)
            .ok_or_else(|| bad_header(format!("a dtype for `{name}`"), "none"))?;
        let dtype = DType::from_safetensors_name(dtype_name)?;
        let shape = info
            .get("shape")
            .and_then(Json::as_array)
            .and_then(|dims| {
                dims.iter()
                    .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                bad_header(
                    format!("a shape of non-negative ints for `{name}`"),
                    "something else",
                )
            })?;
        let offsets = info
            .get("data_offsets")
            .and_then(Json::as_array)
            .filter(|o| o.len() == 2)
            .and_then(|o| Some((o[0].as_u64()?, o[1].as_u64()?)))
            .ok_or_else(|| {
                bad_header(format!("two data offsets for `{name}`"), "something else")
            })?;
        let nbytes = numel(&shape).and_then(|n| (n as u64).checked_mul(dtype.size() as u64));
        if offsets.1 < offsets.0 || Some(offsets.1 - offsets.0) != nbytes {
            return Err(CkptError::BadTensor {
                name: name.clone(),
                detail: format!(
                    "{dtype} of shape {shape:?} does not fit the data offsets {offsets:?}"
                ),
            });
        }
        ranges.push((offsets.0, offsets.1, tensors.len()));
        tensors.push((name.clone(), dtype, shape, offsets.1 - offsets.0));
    }
    // The tensors must tile the data section exactly, as safetensors requires.
    ranges.sort_unstable();
    let mut next = 0u64;
    for &(begin, end, i) in &ranges {
        if begin != next {
            return Err(CkptError::BadTensor {
                name: tensors[i].0.clone(),
                detail: format!(
                    "data starts at {begin}, expected {next} (tensors must tile the data section)"
                ),
            });
        }
        next = end;
    }
    if next != data_len {
        return Err(CkptError::Truncated {
            what: "tempo checkpoint data",
            offset: 8 + header_len,
            needed: next,
            available: data_len,
        });
    }
    let ordered = ranges.iter().map(|&(_, _, i)| tensors[i].clone()).collect();

    // Every tensor is referenced exactly once by the content.
    let mut refs = Vec::new();
    tensor_refs(&content, &mut refs);
    let names: HashSet<&str> = map
        .keys()
        .filter(|k| *k != "__metadata__")
        .map(String::as_str)
        .collect();
    let mut seen = HashSet::new();
    for r in &refs {
        if !names.contains(r.as_str()) || !seen.insert(r.as_str()) {
            return Err(CkptError::BadTensor {
                name: r.clone(),
                detail: "referenced but not in the file, or referenced twice".into(),
            });
        }
    }
    if let Some(unused) = names.iter().find(|n| !seen.contains(*n)) {
        return Err(CkptError::BadTensor {
            name: unused.to_string(),
            detail: "in the file but not referenced by the content".into(),
        });
    }
    Ok(Header {
        hashed,
        checksum,
        content,
        tensors: ordered,
    })
}

/// Reads a tempo checkpoint from `r`: the header is validated first, then the data is
/// read straight into the tensors while its CRC-32 is computed, and the value is
/// returned only if the checksum matches.
pub fn read_tempo<R: Read + Seek>(r: &mut R) -> Result<Object, CkptError> {
    let header = read_header(r)?;
    read_data(header, |buf, crc| crate::io::read_hashed(r, buf, crc))
}

/// Reads the data section after a validated header: `fill` puts the next bytes of the
/// data section into the buffer it is given (each tensor's, in file order) and adds
/// them to the CRC-32. The value is returned only if the checksum matches.
fn read_data(
    header: Header,
    mut fill: impl FnMut(&mut [MaybeUninit<u8>], &mut crc32fast::Hasher) -> std::io::Result<Filled>,
) -> Result<Object, CkptError> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&(header.hashed.len() as u64).to_le_bytes());
    hasher.update(&header.hashed);
    let mut tensors = HashMap::with_capacity(header.tensors.len());
    for (name, dtype, shape, nbytes) in header.tensors {
        let n = (nbytes / dtype.size() as u64) as usize;
        let elements = Elements::fill_le(dtype, n, |buf| Ok(fill(buf, &mut hasher)?))?;
        tensors.insert(name, AnyTensor::new(shape, elements)?);
    }
    let found = hasher.finalize();
    if found != header.checksum {
        return Err(CkptError::ChecksumMismatch {
            what: "tempo checkpoint".into(),
            expected: header.checksum,
            found,
        });
    }
    decode(&header.content, &mut tensors, 0)
}

/// The content of a tempo checkpoint with every tensor replaced by `None`, read from
/// the header alone (the checksum is not verified). Cheap even for large files: the
/// checkpointer uses it to read metrics.
pub fn peek_object(path: impl AsRef<Path>) -> Result<Object, CkptError> {
    let path = path.as_ref();
    let mut file = File::open(path).map_err(CkptError::io(path))?;
    let header = read_header(&mut file)?;
    let mut placeholders = HashMap::new();
    for (name, dtype, _, _) in &header.tensors {
        placeholders.insert(
            name.clone(),
            AnyTensor::new(vec![0], Elements::zeroed(*dtype, 0))?,
        );
    }
    let mut o = crate::format::decode_in(&header.content, &mut placeholders, 0, true)?;
    strip_tensors(&mut o);
    Ok(o)
}

fn strip_tensors(o: &mut Object) {
    match o {
        Object::Tensor(_) => *o = Object::None,
        Object::List(v) | Object::Tuple(v) | Object::Set(v) | Object::FrozenSet(v) => {
            v.iter_mut().for_each(strip_tensors)
        }
        Object::Dict(e) | Object::Counter(e) => e.iter_mut().for_each(|(_, v)| strip_tensors(v)),
        Object::OrderedDict { entries, attrs } => {
            entries.iter_mut().for_each(|(_, v)| strip_tensors(v));
            attrs.iter_mut().for_each(|(_, v)| strip_tensors(v));
        }
        _ => {}
    }
}
