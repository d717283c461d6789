//! The zip container of `torch.save`: stored (uncompressed) entries whose data start at
//! 64-byte boundaries, with zip64 end records. Only what torch writes is read: stored
//! entries, one disk, no encryption.

use std::io::{Read, Seek, SeekFrom, Write};

use crate::io::write_hashed;
use crate::CkptError;

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
/// torch aligns every entry's data to this many bytes.
pub(crate) const ALIGNMENT: u64 = 64;

/// One stored entry of the archive.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    /// Where the data starts in the file.
    pub(crate) data_offset: u64,
    pub(crate) size: u64,
    pub(crate) crc: u32,
}

/// The entries of a zip archive, validated against the file's length.
#[derive(Debug)]
pub(crate) struct Archive {
    pub(crate) entries: Vec<Entry>,
    pub(crate) file_len: u64,
    /// Entry index by name (the first of repeated names, as torch's reader finds).
    by_name: std::collections::HashMap<String, usize>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads `len` bytes at `offset`, after checking that the file holds them.
pub(crate) fn read_at<R: Read + Seek>(
    r: &mut R,
    file_len: u64,
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<Vec<u8>, CkptError> {
    check_range(file_len, offset, len, what)?;
    let mut buf = vec![0u8; len as usize];
    r.seek(SeekFrom::Start(offset))?;
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// `Err(Truncated)` unless `[offset, offset + len)` lies in a file of `file_len` bytes.
pub(crate) fn check_range(
    file_len: u64,
    offset: u64,
    len: u64,
    what: &'static str,
) -> Result<(), CkptError> {
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(CkptError::Truncated {
            what,
            offset,
            needed: len,
            available: file_len.saturating_sub(offset),
        }),
    }
}

impl Archive {
    /// Reads and validates the central directory and every local header.
    pub(crate) fn read<R: Read + Seek>(r: &mut R) -> Result<Archive, CkptError> {
        let file_len = r.seek(SeekFrom::End(0))?;
        let head = read_at(r, file_len, 0, file_len.min(4), "zip signature")?;
        if head.len() < 4 || u32_at(&head, 0) != LOCAL_SIG {
            let found = if head.first() == Some(&0x80) {
                "a bare pickle (the legacy torch.save format of PyTorch < 1.6 is not supported)"
                    .to_string()
            } else {
                format!("bytes {head:02x?}")
            };
            return Err(CkptError::BadMagic {
                format: "torch.save zip",
                expected: "PK\\x03\\x04".into(),
                found,
            });
        }
        // The end of central directory record: 22 bytes plus a comment of up to 64 KiB.
        let tail_len = file_len.min(22 + 0xFFFF);
        let tail_start = file_len - tail_len;
        let tail = read_at(r, file_len, tail_start, tail_len, "zip end record")?;
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| {
                u32_at(&tail, i) == EOCD_SIG
                    && 22 + u16_at(&tail, i + 20) as usize <= tail.len() - i
            })
            .ok_or_else(|| {
                CkptError::malformed("zip archive", "an end of central directory record", "none")
            })?;
        let mut count = u64::from(u16_at(&tail, eocd + 10));
        let mut cd_size = u64::from(u32_at(&tail, eocd + 12));
        let mut cd_offset = u64::from(u32_at(&tail, eocd + 16));
        let eocd_pos = tail_start + eocd as u64;
        if eocd_pos >= 20 {
            let loc = read_at(r, file_len, eocd_pos - 20, 20, "zip64 locator")?;
            if u32_at(&loc, 0) == ZIP64_LOCATOR_SIG {
                let at = u64_at(&loc, 8);
                let rec = read_at(r, file_len, at, 56, "zip64 end record")?;
                if u32_at(&rec, 0) != ZIP64_EOCD_SIG {
                    return Err(CkptError::malformed(
                        "zip64 end record",
                        "signature PK\\x06\\x06",
                        format!("{:08x}", u32_at(&rec, 0)),
                    ));
                }
                count = u64_at(&rec, 32);
                cd_size = u64_at(&rec, 40);
                cd_offset = u64_at(&rec, 48);
            }
        }
        if count > cd_size / 46 {
            return Err(CkptError::malformed(
                "zip central directory",
                format!("room for {count} entries"),
                format!("{cd_size} bytes"),
            ));
        }
        let cd = read_at(r, file_len, cd_offset, cd_size, "zip central directory")?;
        let mut entries = Vec::with_capacity(count as usize);
        let mut at = 0usize;
        for _ in 0..count {
            if at + 46 > cd.len() || u32_at(&cd, at) != CENTRAL_SIG {
                return Err(CkptError::malformed(
                    "zip central directory",
                    "a central file header (PK\\x01\\x02)",
                    format!("{} bytes at {at}", cd.len().saturating_sub(at).min(4)),
                ));
            }
            let flags = u16_at(&cd, at + 8);
            let method = u16_at(&cd, at + 10);
            let crc = u32_at(&cd, at + 16);
            let mut csize = u64::from(u32_at(&cd, at + 20));
            let mut size = u64::from(u32_at(&cd, at + 24));
            let name_len = usize::from(u16_at(&cd, at + 28));
            let extra_len = usize::from(u16_at(&cd, at + 30));
            let comment_len = usize::from(u16_at(&cd, at + 32));
            let mut local = u64::from(u32_at(&cd, at + 42));
            let end = at + 46 + name_len + extra_len + comment_len;
            if end > cd.len() {
                return Err(CkptError::malformed(
                    "zip central directory",
                    format!("{} bytes for an entry", end - at),
                    format!("{}", cd.len() - at),
                ));
            }
            let name = std::str::from_utf8(&cd[at + 46..at + 46 + name_len])
                .map_err(|_| CkptError::malformed("zip entry name", "UTF-8", "invalid bytes"))?
                .to_string();
            // The zip64 extra field holds, in order, the fields that are 0xFFFFFFFF.
            let mut extra = &cd[at + 46 + name_len..at + 46 + name_len + extra_len];
            while extra.len() >= 4 {
                let id = u16_at(extra, 0);
                let len = usize::from(u16_at(extra, 2));
                let body = &extra[4..(4 + len).min(extra.len())];
                if id == 1 {
                    let mut fields = body.chunks_exact(8).map(|c| u64_at(c, 0));
                    let mut next = |v: &mut u64| -> Result<(), CkptError> {
                        if *v == 0xFFFF_FFFF {
                            *v = fields.next().ok_or_else(|| {
                                CkptError::malformed("zip64 extra field", "a 64-bit value", "none")
                            })?;
                        }
                        Ok(())
                    };
                    next(&mut size)?;
                    next(&mut csize)?;
                    next(&mut local)?;
                }
                extra = &extra[(4 + len).min(extra.len())..];
            }
            if flags & 1 != 0 || method != 0 || csize != size {
                return Err(CkptError::malformed(
                    "zip entry",
                    "a stored, unencrypted entry (torch.save never compresses)",
                    format!("`{name}` with method {method} and flags {flags:#x}"),
                ));
            }
            let lh = read_at(r, file_len, local, 30, "zip local header")?;
            if u32_at(&lh, 0) != LOCAL_SIG {
                return Err(CkptError::malformed(
                    "zip local header",
                    "signature PK\\x03\\x04",
                    format!("{:08x} at offset {local}", u32_at(&lh, 0)),
                ));
            }
            let data_offset = local + 30 + u64::from(u16_at(&lh, 26)) + u64::from(u16_at(&lh, 28));
            check_range(file_len, data_offset, size, "zip entry data")?;
            entries.push(Entry {
                name,
                data_offset,
                size,
                crc,
            });
            at = end;
        }
        let mut by_name = std::collections::HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            by_name.entry(e.name.clone()).or_insert(i);
        }
        Ok(Archive {
            entries,
            file_len,
            by_name,
        })
    }

    /// The entry named `name`.
    pub(crate) fn entry(&self, name: &str) -> Option<&Entry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// Reads a whole (small) entry and checks its CRC-32.
    pub(crate) fn read_entry<R: Read + Seek>(
        &self,
        r: &mut R,
        entry: &Entry,
    ) -> Result<Vec<u8>, CkptError> {
        let data = read_at(
            r,
            self.file_len,
            entry.data_offset,
            entry.size,
            "zip entry data",
        )?;
        check_crc(entry, crc32fast::hash(&data))?;
        Ok(data)
    }
}

/// `Err(ChecksumMismatch)` unless `found` is the entry's CRC-32. A CRC of 0 on a
/// non-empty entry means the writer did not compute one (torch can be told not to).
pub(crate) fn check_crc(entry: &Entry, found: u32) -> Result<(), CkptError> {
    if entry.crc == found || (entry.crc == 0 && entry.size > 0) {
        Ok(())
    } else {
        Err(CkptError::ChecksumMismatch {
            what: format!("zip entry `{}`", entry.name),
            expected: entry.crc,
            found,
        })
    }
}

struct Central {
    name: String,
    offset: u64,
    size: u64,
    crc: u32,
}

/// Writes a zip archive the way torch's `PyTorchFileWriter` does: stored entries,
/// 64-byte aligned data (padding in an `FB` extra field), data descriptors, zip64 end
/// records. The CRC is computed while the data is written (on a second thread for
/// large entries).
pub(crate) struct ZipWriter<W: Write> {
    w: W,
    pos: u64,
    central: Vec<Central>,
}

impl<W: Write> ZipWriter<W> {
    pub(crate) fn new(w: W) -> Self {
        ZipWriter {
            w,
            pos: 0,
            central: Vec::new(),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.w.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Adds a stored entry.
    pub(crate) fn add(&mut self, name: &str, data: &[u8]) -> std::io::Result<()> {
        let size = data.len() as u64;
        let offset = self.pos;
        let big = size >= 0xFFFF_FFFF || offset >= 0xFFFF_FFFF;
        let mut extra = Vec::new();
        if big {
            extra.extend_from_slice(&1u16.to_le_bytes());
            let mut body = Vec::new();
            if size >= 0xFFFF_FFFF {
                body.extend_from_slice(&size.to_le_bytes());
                body.extend_from_slice(&size.to_le_bytes());
            }
            if offset >= 0xFFFF_FFFF {
                body.extend_from_slice(&offset.to_le_bytes());
            }
            extra.extend_from_slice(&(body.len() as u16).to_le_bytes());
            extra.extend_from_slice(&body);
        }
        let start = offset + 30 + name.len() as u64 + extra.len() as u64 + 4;
        let padding = (ALIGNMENT - start % ALIGNMENT) % ALIGNMENT;
        extra.extend_from_slice(b"FB");
        extra.extend_from_slice(&(padding as u16).to_le_bytes());
        extra.extend(std::iter::repeat_n(b'Z', padding as usize));

        let mut header = Vec::with_capacity(30 + name.len() + extra.len());
        header.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        header.extend_from_slice(&(if big { 45u16 } else { 0 }).to_le_bytes());
        header.extend_from_slice(&0x0808u16.to_le_bytes()); // data descriptor, UTF-8
        header.extend_from_slice(&[0u8; 2 + 2 + 2]); // stored, time, date
        header.extend_from_slice(&[0u8; 4]); // crc (in the descriptor)
        let local_size: u32 = if big { 0xFFFF_FFFF } else { 0 };
        header.extend_from_slice(&local_size.to_le_bytes());
        header.extend_from_slice(&local_size.to_le_bytes());
        header.extend_from_slice(&(name.len() as u16).to_le_bytes());
        header.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        header.extend_from_slice(name.as_bytes());
        header.extend_from_slice(&extra);
        self.put(&header)?;
        debug_assert_eq!(self.pos % ALIGNMENT, 0);

        let mut hasher = crc32fast::Hasher::new();
        write_hashed(&mut self.w, data, &mut hasher)?;
        self.pos += size;
        let crc = hasher.finalize();
        let mut descriptor = Vec::with_capacity(24);
        descriptor.extend_from_slice(&DESCRIPTOR_SIG.to_le_bytes());
        descriptor.extend_from_slice(&crc.to_le_bytes());
        if size >= 0xFFFF_FFFF {
            descriptor.extend_from_slice(&size.to_le_bytes());
            descriptor.extend_from_slice(&size.to_le_bytes());
        } else {
            descriptor.extend_from_slice(&(size as u32).to_le_bytes());
            descriptor.extend_from_slice(&(size as u32).to_le_bytes());
        }
        self.put(&descriptor)?;
        self.central.push(Central {
            name: name.to_string(),
            offset,
            size,
            crc,
        });
        Ok(())
    }

    /// Writes the central directory and the end records; returns the writer.
    pub(crate) fn finish(mut self) -> std::io::Result<W> {
        let cd_offset = self.pos;
        let central = std::mem::take(&mut self.central);
        for c in &central {
            let mut body = Vec::new();
            if c.size >= 0xFFFF_FFFF {
                body.extend_from_slice(&c.size.to_le_bytes());
                body.extend_from_slice(&c.size.to_le_bytes());
            }
            if c.offset >= 0xFFFF_FFFF {
                body.extend_from_slice(&c.offset.to_le_bytes());
            }
            let mut extra = Vec::new();
            if !body.is_empty() {
                extra.extend_from_slice(&1u16.to_le_bytes());
                extra.extend_from_slice(&(body.len() as u16).to_le_bytes());
                extra.extend_from_slice(&body);
            }
            // Sizes and offsets of 4 GiB and more are 0xFFFFFFFF here, real in the zip64 field.
            let size32 = u32::try_from(c.size).unwrap_or(u32::MAX);
            let off32 = u32::try_from(c.offset).unwrap_or(u32::MAX);
            let mut h = Vec::with_capacity(46 + c.name.len() + extra.len());
            h.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
            let version: u16 = if extra.is_empty() { 0 } else { 45 };
            h.extend_from_slice(&version.to_le_bytes()); // made by
            h.extend_from_slice(&version.to_le_bytes()); // needed
            h.extend_from_slice(&0x0808u16.to_le_bytes());
            h.extend_from_slice(&[0u8; 6]); // stored, time, date
            h.extend_from_slice(&c.crc.to_le_bytes());
            h.extend_from_slice(&size32.to_le_bytes());
            h.extend_from_slice(&size32.to_le_bytes());
            h.extend_from_slice(&(c.name.len() as u16).to_le_bytes());
            h.extend_from_slice(&(extra.len() as u16).to_le_bytes());
            h.extend_from_slice(&[0u8; 2 + 2 + 2 + 4]); // comment, disk, attrs
            h.extend_from_slice(&off32.to_le_bytes());
            h.extend_from_slice(c.name.as_bytes());
            h.extend_from_slice(&extra);
            self.put(&h)?;
        }
        let cd_size = self.pos - cd_offset;
        let count = central.len() as u64;
        let zip64_at = self.pos;
        let mut e = Vec::with_capacity(56 + 20 + 22);
        e.extend_from_slice(&ZIP64_EOCD_SIG.to_le_bytes());
        e.extend_from_slice(&44u64.to_le_bytes());
        e.extend_from_slice(&0x031eu16.to_le_bytes()); // made by (as torch)
        e.extend_from_slice(&45u16.to_le_bytes());
        e.extend_from_slice(&[0u8; 8]); // disks
        e.extend_from_slice(&count.to_le_bytes());
        e.extend_from_slice(&count.to_le_bytes());
        e.extend_from_slice(&cd_size.to_le_bytes());
        e.extend_from_slice(&cd_offset.to_le_bytes());
        e.extend_from_slice(&ZIP64_LOCATOR_SIG.to_le_bytes());
        e.extend_from_slice(&0u32.to_le_bytes());
        e.extend_from_slice(&zip64_at.to_le_bytes());
        e.extend_from_slice(&1u32.to_le_bytes());
        e.extend_from_slice(&EOCD_SIG.to_le_bytes());
        e.extend_from_slice(&[0u8; 4]); // disks
        let count16 = u16::try_from(count).unwrap_or(0xFFFF);
        e.extend_from_slice(&count16.to_le_bytes());
        e.extend_from_slice(&count16.to_le_bytes());
        e.extend_from_slice(&u32::try_from(cd_size).unwrap_or(0xFFFF_FFFF).to_le_bytes());
        e.extend_from_slice(
            &u32::try_from(cd_offset)
                .unwrap_or(0xFFFF_FFFF)
                .to_le_bytes(),
        );
        e.extend_from_slice(&0u16.to_le_bytes()); // comment
        self.put(&e)?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn written_archives_read_back_aligned() {
        let mut z = ZipWriter::new(Vec::new());
        z.add("a/data.pkl", b"hello").unwrap();
        z.add("a/data/0", &[7u8; 100]).unwrap();
        z.add("a/version", b"").unwrap();
        let bytes = z.finish().unwrap();
        let mut r = Cursor::new(&bytes);
        let archive = Archive::read(&mut r).unwrap();
        let names: Vec<_> = archive.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a/data.pkl", "a/data/0", "a/version"]);
        for e in &archive.entries {
            assert_eq!(e.data_offset % ALIGNMENT, 0, "{}", e.name);
        }
        let e = archive.entry("a/data/0").unwrap().clone();
        assert_eq!(archive.read_entry(&mut r, &e).unwrap(), vec![7u8; 100]);
    }

    #[test]
    fn a_flipped_byte_fails_the_crc() {
        let mut z = ZipWriter::new(Vec::new());
        z.add("a/data.pkl", b"hello").unwrap();
        let mut bytes = z.finish().unwrap();
        bytes[64] ^= 1;
        let mut r = Cursor::new(&bytes);
        let archive = Archive::read(&mut r).unwrap();
        let e = archive.entries[0].clone();
        assert!(matches!(
            archive.read_entry(&mut r, &e),
            Err(CkptError::ChecksumMismatch { .. })
        ));
    }
}
