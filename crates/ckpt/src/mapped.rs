//! Read-only memory maps of a range of a file (Linux), for reading large tensors: the
//! kernel maps the page cache's pages instead of copying them through `read`, and the
//! copy into the tensor's buffer is an ordinary `memcpy` that both cores can share.
//!
//! A range is mapped only after checking that the file holds all of it, so reading the
//! mapping never faults past the end of the file. What a mapping cannot guard against
//! is another process truncating the file while it is being read (the process would
//! get `SIGBUS`): tempo itself never truncates a checkpoint in place (it replaces files
//! by renaming a finished temporary file over them), so this only concerns files that
//! are rewritten in place by other tools while tempo loads them.

use std::fs::File;
use std::os::fd::AsRawFd;

/// A read-only, private mapping of `len` bytes of a file from `offset`, unmapped on drop.
pub(crate) struct Mapping {
    /// The start of the mapping (page-aligned, at or before `offset`).
    base: *mut libc::c_void,
    /// The length of the mapping: `skip + len`.
    mapped: usize,
    /// `offset` minus the page-aligned start of the mapping.
    skip: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned: sharing `&Mapping` across threads only
// shares reads of memory nobody writes through it.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len > 0` bytes of `file` from `offset`, or `None` if the file is shorter
    /// than `offset + len` or the system refuses (the caller then reads instead).
    pub(crate) fn new(file: &File, offset: u64, len: usize) -> Option<Mapping> {
        let end = offset.checked_add(u64::try_from(len).ok()?)?;
        if len == 0 || file.metadata().ok()?.len() < end {
            return None;
        }
        let page = page_size()?;
        let start = offset - offset % page;
        let skip = usize::try_from(offset - start).ok()?;
        let mapped = skip.checked_add(len)?;
        let start = libc::off_t::try_from(start).ok()?;
        // SAFETY: a fresh private read-only mapping of a file we hold open: it aliases
        // no Rust object. MAP_POPULATE maps the pages now (one call rather than a fault
        // per page).
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                file.as_raw_fd(),
                start,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        Some(Mapping {
            base,
            mapped,
            skip,
            len,
        })
    }

    /// The `len` bytes of the file from `offset`.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `base..base + mapped` is mapped readable for the life of `self`, and
        // the file held at least `offset + len` bytes when it was mapped.
        unsafe { std::slice::from_raw_parts(self.base.cast::<u8>().add(self.skip), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no slice of it outlives `self`.
        unsafe {
            libc::munmap(self.base, self.mapped);
        }
    }
}

fn page_size() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).ok().filter(|&p| p > 0)
}

/// Asks the kernel to back the 2 MiB-aligned interior of `buf` with transparent huge
/// pages (where the system leaves that to `madvise`): a freshly allocated tensor is then
/// faulted in a few hundred 2 MiB steps instead of one 4 KiB page at a time. Advice
/// only: the contents are unchanged, and a refusal changes nothing.
pub(crate) fn advise_huge_pages(buf: &mut [std::mem::MaybeUninit<u8>]) {
    const HUGE: usize = 2 << 20;
    let addr = buf.as_mut_ptr() as usize;
    let start = addr.next_multiple_of(HUGE);
    let end = (addr + buf.len()) / HUGE * HUGE;
    if end > start {
        // SAFETY: `start..end` lies within `buf`, which we borrow mutably; MADV_HUGEPAGE
        // does not change the memory's contents.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_mapping_holds_the_files_bytes_at_any_offset() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        for (offset, len) in [(0, 1), (1, 4096), (4095, 5000), (4096, 10), (100, 99_900)] {
            let m = Mapping::new(&file, offset as u64, len).unwrap();
            assert!(m.bytes() == &data[offset..offset + len], "{offset} {len}");
        }
        // Past the end, or nothing: no mapping.
        assert!(Mapping::new(&file, 99_000, 1001).is_none());
        assert!(Mapping::new(&file, 200_000, 1).is_none());
        assert!(Mapping::new(&file, 10, 0).is_none());
        assert!(Mapping::new(&file, u64::MAX, 1).is_none());
    }

    #[test]
    fn huge_page_advice_keeps_the_contents() {
        use std::mem::MaybeUninit;
        let mut buf: Vec<MaybeUninit<u8>> = (0..(5 << 20))
            .map(|i: usize| MaybeUninit::new(i as u8))
            .collect();
        advise_huge_pages(&mut buf);
        advise_huge_pages(&mut buf[1..10]);
        // SAFETY: every element was initialised above.
        assert!(buf
            .iter()
            .enumerate()
            .all(|(i, b)| unsafe { b.assume_init() } == i as u8));
    }
}
