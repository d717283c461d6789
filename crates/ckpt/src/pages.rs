//! Advice to the kernel about the memory a large tensor is read into (Linux).
//!
//! tempo reads checkpoints with positioned reads, never through a memory map: a file
//! truncated by another process while a map of it is read kills the reader with
//! `SIGBUS`, where a read just comes back short (an error).

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
