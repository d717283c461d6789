//! Moving large byte buffers between memory and files with their CRC-32, in as few
//! passes over memory as possible.
//!
//! * Writes go to the writer in large slices (a `BufWriter` passes a slice at least as
//!   large as its buffer straight to the file, without copying it), and the CRC-32 of
//!   a large buffer is computed on a second thread while the buffer is written.
//! * Reads go straight into the destination buffer in chunks, each chunk hashed while
//!   it is still in the cache. From a [`File`], a large buffer is read with positioned
//!   reads (into memory that is not zeroed first, on Linux), as two halves on two
//!   threads, and the two CRCs are combined. Never through a memory map: a file
//!   truncated while a map of it is read kills the process with `SIGBUS`, where a read
//!   comes back short and is an error.
//!
//! Buffers below [`PARALLEL_MIN`] bytes, and every buffer on a machine with a single
//! core, are handled on the calling thread. The bytes hashed and written or read are
//! the same either way: only the schedule differs.

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use crc32fast::Hasher;

/// Reads and hashes go in chunks of this many bytes (small enough to be hashed from
/// the cache right after they are read, large enough to make few system calls).
pub(crate) const CHUNK: usize = 1 << 20;

/// Buffers of at least this many bytes are hashed or read on two threads.
pub(crate) const PARALLEL_MIN: usize = 2 << 20;

/// Whether this process may run more than one thread at a time (asked once).
fn parallel() -> bool {
    static PARALLEL: OnceLock<bool> = OnceLock::new();
    *PARALLEL.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// The CRC-32 state of `bytes`.
fn hash(bytes: &[u8]) -> Hasher {
    let mut h = Hasher::new();
    h.update(bytes);
    h
}

/// Writes all of `bytes` to `w`, adding them to the CRC-32 state `crc`.
///
/// A large buffer is written with one call (so that a `BufWriter` passes it through
/// without copying it) while a second thread hashes it; a small one is hashed and
/// written chunk by chunk on this thread.
pub(crate) fn write_hashed<W: Write + ?Sized>(
    w: &mut W,
    bytes: &[u8],
    crc: &mut Hasher,
) -> io::Result<()> {
    if bytes.len() < PARALLEL_MIN || !parallel() {
        for chunk in bytes.chunks(CHUNK) {
            crc.update(chunk);
            w.write_all(chunk)?;
        }
        return Ok(());
    }
    let (written, hashed) = std::thread::scope(|s| {
        let hasher = std::thread::Builder::new().spawn_scoped(s, || hash(bytes));
        let written = w.write_all(bytes);
        let hashed = hasher
            .ok()
            .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        (written, hashed)
    });
    written?;
    // A thread that could not be started leaves the hashing to this one.
    crc.combine(&hashed.unwrap_or_else(|| hash(bytes)));
    Ok(())
}

/// Proof that every byte of a buffer was written: made only by this module's readers,
/// and only once they have filled the whole buffer it names. A tensor's memory is read
/// into without zeroing it first (zeroing 300 MB costs two thirds of copying it); the
/// code that then treats it as initialised checks the proof against that memory.
#[derive(Debug)]
pub(crate) struct Filled {
    addr: usize,
    len: usize,
}

impl Filled {
    fn of(buf: &[MaybeUninit<u8>]) -> Filled {
        Filled {
            addr: buf.as_ptr() as usize,
            len: buf.len(),
        }
    }

    /// Whether this is the proof for exactly `buf`.
    pub(crate) fn is_for(&self, buf: &[MaybeUninit<u8>]) -> bool {
        self.addr == buf.as_ptr() as usize && self.len == buf.len()
    }
}

/// `buf` zeroed, as initialised bytes (for the readers that need `&mut [u8]`).
fn zeroed(buf: &mut [MaybeUninit<u8>]) -> &mut [u8] {
    buf.fill(MaybeUninit::new(0));
    // SAFETY: every byte was just written, and `MaybeUninit<u8>` has `u8`'s layout.
    unsafe { &mut *(std::ptr::from_mut(buf) as *mut [u8]) }
}

/// Copies `src` into `dst`, which must have its length.
///
/// On x86-64, a large copy uses non-temporal stores (SSE2's `movntdq`, part of the
/// baseline): the destination's cache lines are written whole, without being read first
/// (no read-for-ownership: a third less memory traffic) and without evicting the
/// source, which is hashed right after. A tensor being loaded is not read again soon.
fn copy_into(src: &[u8], dst: &mut [MaybeUninit<u8>]) {
    assert_eq!(
        src.len(),
        dst.len(),
        "copy between buffers of different sizes"
    );
    #[cfg(target_arch = "x86_64")]
    if src.len() >= STREAM_MIN {
        // SAFETY: as below; `copy_streaming` only adds alignment handling.
        unsafe { copy_streaming(src.as_ptr(), dst.as_mut_ptr().cast(), src.len()) };
        return;
    }
    // SAFETY: both are valid for `src.len()` bytes and cannot overlap (a shared and an
    // exclusive borrow); `MaybeUninit<u8>` has `u8`'s layout.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast(), src.len()) }
}

/// Copies of at least this many bytes use non-temporal stores.
#[cfg(target_arch = "x86_64")]
const STREAM_MIN: usize = 64 << 10;

/// `n` bytes from `s` to `d` with non-temporal 16-byte stores to `d`, after a head
/// that aligns `d` to 16 bytes and before a tail of less than 64 bytes.
///
/// # Safety
/// `s` valid for reads and `d` for writes of `n` bytes; the two do not overlap.
#[cfg(target_arch = "x86_64")]
unsafe fn copy_streaming(s: *const u8, d: *mut u8, n: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    let head = d.align_offset(16).min(n);
    let body_end = head + (n - head) / 64 * 64;
    // SAFETY: every offset below is `< n`; `d + i` is 16-byte aligned in the body
    // (`head` aligns it and the body moves in steps of 64); unaligned loads from `s`.
    unsafe {
        std::ptr::copy_nonoverlapping(s, d, head);
        let mut i = head;
        while i < body_end {
            let a = _mm_loadu_si128(s.add(i).cast::<__m128i>());
            let b = _mm_loadu_si128(s.add(i + 16).cast::<__m128i>());
            let c = _mm_loadu_si128(s.add(i + 32).cast::<__m128i>());
            let e = _mm_loadu_si128(s.add(i + 48).cast::<__m128i>());
            _mm_stream_si128(d.add(i).cast::<__m128i>(), a);
            _mm_stream_si128(d.add(i + 16).cast::<__m128i>(), b);
            _mm_stream_si128(d.add(i + 32).cast::<__m128i>(), c);
            _mm_stream_si128(d.add(i + 48).cast::<__m128i>(), e);
            i += 64;
        }
        // Non-temporal stores are weakly ordered: fence them before anything else
        // (another thread's read after the join) can see the buffer.
        _mm_sfence();
        std::ptr::copy_nonoverlapping(s.add(body_end), d.add(body_end), n - body_end);
    }
}

/// Fills `dst` with `src` (of the same length), or `InvalidInput` if the lengths differ.
pub(crate) fn copy_bytes(src: &[u8], dst: &mut [MaybeUninit<u8>]) -> io::Result<Filled> {
    if src.len() != dst.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} bytes for a buffer of {}", src.len(), dst.len()),
        ));
    }
    copy_into(src, dst);
    Ok(Filled::of(dst))
}

/// Fills all of `buf` from `r`, adding the bytes read to the CRC-32 state `crc`.
pub(crate) fn read_hashed<R: Read + ?Sized>(
    r: &mut R,
    buf: &mut [MaybeUninit<u8>],
    crc: &mut Hasher,
) -> io::Result<Filled> {
    let filled = Filled::of(buf);
    for chunk in buf.chunks_mut(CHUNK) {
        let chunk = zeroed(chunk);
        r.read_exact(chunk)?;
        crc.update(chunk);
    }
    Ok(filled)
}

/// Fills all of `buf` from `file` at `offset`, adding the bytes read to the CRC-32
/// state `crc`. Positioned reads: the file's cursor is not used. A large buffer is read
/// as two halves on two threads, whose CRCs are combined. A file shorter than
/// `offset + buf.len()` (one truncated while it is read, too) is `UnexpectedEof`.
#[cfg(any(unix, windows))]
pub(crate) fn read_at_hashed(
    file: &File,
    offset: u64,
    buf: &mut [MaybeUninit<u8>],
    crc: &mut Hasher,
) -> io::Result<Filled> {
    let filled = Filled::of(buf);
    let serial = |buf: &mut [MaybeUninit<u8>], offset: u64, h: &mut Hasher| -> io::Result<()> {
        let mut at = offset;
        for chunk in buf.chunks_mut(CHUNK) {
            let len = chunk.len() as u64;
            h.update(read_exact_at_uninit(file, chunk, at)?);
            at += len;
        }
        Ok(())
    };
    #[cfg(target_os = "linux")]
    if buf.len() >= PARALLEL_MIN {
        crate::pages::advise_huge_pages(buf);
    }
    if buf.len() < PARALLEL_MIN || !parallel() {
        return serial(buf, offset, crc).map(|()| filled);
    }
    let half = buf.len() / 2;
    let (first, second) = buf.split_at_mut(half);
    let second_at = offset + half as u64;
    let (read, rest) = std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .spawn_scoped(s, || {
                let mut h = Hasher::new();
                serial(&mut *second, second_at, &mut h).map(|()| h)
            })
            .ok();
        let read = serial(first, offset, crc);
        let rest = other.map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        (read, rest)
    });
    read?;
    match rest {
        Some(rest) => crc.combine(&rest?),
        // A thread that could not be started leaves the second half to this one.
        None => serial(second, second_at, crc)?,
    }
    Ok(filled)
}

/// Fills `buf` from `file` at `offset` and returns it as initialised bytes; on Linux
/// without zeroing it first (the kernel writes into it), elsewhere after zeroing it.
#[cfg(any(unix, windows))]
fn read_exact_at_uninit<'b>(
    file: &File,
    buf: &'b mut [MaybeUninit<u8>],
    offset: u64,
) -> io::Result<&'b mut [u8]> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut done = 0;
        while done < buf.len() {
            let at = offset
                .checked_add(done as u64)
                .and_then(|at| libc::off_t::try_from(at).ok())
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
            let rest = &mut buf[done..];
            // SAFETY: `rest` is valid for writes of `rest.len()` bytes; `pread` writes at
            // most that many into it and nothing else.
            let n =
                unsafe { libc::pread(file.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len(), at) };
            match n {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n if n > 0 => done += n as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        // SAFETY: `pread` wrote every byte of `buf` (`done == buf.len()`), and
        // `MaybeUninit<u8>` has `u8`'s layout.
        Ok(unsafe { &mut *(std::ptr::from_mut(buf) as *mut [u8]) })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let buf = zeroed(buf);
        read_exact_at(file, buf, offset)?;
        Ok(buf)
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes written through `MaybeUninit` (all initialised in these tests).
    fn init(buf: &[MaybeUninit<u8>]) -> Vec<u8> {
        // SAFETY: the tests only create initialised buffers.
        buf.iter().map(|b| unsafe { b.assume_init() }).collect()
    }

    #[test]
    fn streaming_copies_carry_every_byte_at_any_alignment() {
        let src = pattern((3 << 17) + 200);
        for (from, to, n) in [
            (0, 0, 3 << 17),
            (1, 0, (1 << 16) + 63),
            (0, 1, 1 << 16),
            (7, 13, (1 << 17) + 1),
            (3, 5, (1 << 16) - 1),
            (64, 15, 3 << 16),
        ] {
            let mut dst = vec![MaybeUninit::new(0xAAu8); n + 40];
            copy_into(&src[from..from + n], &mut dst[to..to + n]);
            let got = init(&dst);
            assert!(got[to..to + n] == src[from..from + n], "{from} {to} {n}");
            assert!(got[..to].iter().chain(&got[to + n..]).all(|&b| b == 0xAA));
        }
    }

    #[test]
    fn copies_are_checked_and_proved() {
        let src = pattern(1000);
        let mut dst = vec![MaybeUninit::new(0u8); 1000];
        let filled = copy_bytes(&src, &mut dst).unwrap();
        assert!(filled.is_for(&dst) && !filled.is_for(&dst[1..]));
        assert!(init(&dst) == src);
        let err = copy_bytes(&src[1..], &mut dst).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// Bytes that differ from position to position (so that a misplaced chunk shows).
    fn pattern(n: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9u32;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    }

    /// Sizes on both sides of every threshold: empty, partial chunks, serial, split.
    const SIZES: [usize; 7] = [
        0,
        1,
        CHUNK + 7,
        PARALLEL_MIN - 1,
        PARALLEL_MIN,
        PARALLEL_MIN + 1,
        2 * PARALLEL_MIN + CHUNK / 3,
    ];

    #[test]
    fn writes_carry_the_bytes_and_their_crc_whatever_the_size() {
        for n in SIZES {
            let bytes = pattern(n);
            let mut crc = Hasher::new();
            crc.update(b"prefix");
            let mut out = std::io::BufWriter::with_capacity(CHUNK, Vec::new());
            write_hashed(&mut out, &bytes, &mut crc).unwrap();
            let out = out.into_inner().unwrap();
            assert!(out == bytes, "size {n}: the bytes differ");
            let whole = [b"prefix".as_slice(), &bytes].concat();
            assert_eq!(crc.finalize(), crc32fast::hash(&whole), "size {n}");
        }
    }

    #[test]
    fn positioned_and_streamed_reads_fill_the_buffer_and_hash_it() {
        let big = SIZES[SIZES.len() - 1];
        let data = pattern(big + 100);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        for n in SIZES {
            let expected = &data[100..100 + n];
            let mut buf = vec![MaybeUninit::new(0xAAu8); n];
            let mut crc = Hasher::new();
            crc.update(b"prefix");
            let filled = read_at_hashed(&file, 100, &mut buf, &mut crc).unwrap();
            assert!(filled.is_for(&buf), "size {n}");
            assert!(init(&buf) == expected, "size {n}: the bytes differ");
            let whole = [b"prefix".as_slice(), expected].concat();
            assert_eq!(crc.finalize(), crc32fast::hash(&whole), "size {n}");

            let mut buf = vec![MaybeUninit::new(0xAAu8); n];
            let mut crc = Hasher::new();
            let filled = read_hashed(&mut &data[100..], &mut buf, &mut crc).unwrap();
            assert!(filled.is_for(&buf), "size {n}");
            assert!(init(&buf) == expected, "size {n}: the bytes differ");
            assert_eq!(crc.finalize(), crc32fast::hash(expected), "size {n}");
        }
    }

    #[test]
    fn reads_past_the_end_are_errors() {
        let data = pattern(PARALLEL_MIN * 2);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let mut crc = Hasher::new();
        // The first half is in the file, the second is not (the second thread fails);
        // then neither is.
        for at in [PARALLEL_MIN as u64, 3 * PARALLEL_MIN as u64] {
            let mut buf = vec![MaybeUninit::new(0u8); PARALLEL_MIN * 2];
            let err = read_at_hashed(&file, at, &mut buf, &mut crc).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        }
        let mut buf = vec![MaybeUninit::new(0u8); 10];
        let err = read_hashed(&mut &data[..5], &mut buf, &mut crc).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
