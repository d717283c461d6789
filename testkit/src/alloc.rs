//! A counting global allocator, to prove that a step allocates nothing and to measure
//! the heap a step holds.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting on the way: the allocations (and reallocations) each
/// thread makes, for tests that run on several threads at once ([`allocations_in`]),
/// and the allocations, live bytes and peak of the whole process, for the allocation
/// probe of the benchmarks ([`Window`]).
///
/// A binary installs it itself. Without that, nothing is counted and every count is 0,
/// so a test that finds no allocations should also check that the counter sees one
/// where there must be one.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: tempo_testkit::CountingAllocator = tempo_testkit::CountingAllocator;
///
/// fn main() {
///     let (n, v) = tempo_testkit::allocations_in(|| vec![1u8; 3]);
///     assert_eq!((n, v.len()), (1, 3));
///     let (n, sum) = tempo_testkit::allocations_in(|| v.iter().sum::<u8>());
///     assert_eq!((n, sum), (0, 3));
/// }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

thread_local! {
    /// This thread's allocations. Const-initialised and without a destructor, so
    /// reading or writing it never allocates.
    static THREAD_ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Allocations of every thread.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The most `LIVE` has been since the last [`Window::open`].
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn count_allocation(bytes: usize) {
    ALLOCATIONS.fetch_add(1, Relaxed);
    // `try_with`: a thread being torn down has no counter, and that is not an error.
    let _ = THREAD_ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    let now = LIVE.fetch_add(bytes, Relaxed) + bytes;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's layout and pointer
// unchanged; the counting touches only atomics and a const-initialised thread-local
// (no allocation, no destructor) and never the memory returned.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Relaxed);
        count_allocation(new_size);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// The allocations (and reallocations) the current thread has made so far.
pub fn thread_allocations() -> u64 {
    THREAD_ALLOCATIONS.with(Cell::get)
}

/// The allocations the current thread makes while `f` runs (those of other threads,
/// such as tests running beside it, are not counted), and `f`'s result.
pub fn allocations_in<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let before = thread_allocations();
    let r = f();
    (thread_allocations() - before, r)
}

/// The bytes the whole process holds on the heap now.
pub fn live_bytes() -> usize {
    LIVE.load(Relaxed)
}

/// A window over the allocator activity of the whole process (every thread), from
/// [`Window::open`] to [`Window::close`]. Windows do not nest: opening one restarts
/// the peak.
#[derive(Debug)]
pub struct Window {
    allocations: u64,
    live: usize,
}

/// What happened in a [`Window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCounts {
    /// Allocations (and reallocations) made by every thread.
    pub allocations: u64,
    /// The most the live heap grew above its size at the opening.
    pub peak_extra_bytes: usize,
}

impl Window {
    /// Starts counting, and restarts the peak at the live bytes of now.
    pub fn open() -> Self {
        let live = LIVE.load(Relaxed);
        PEAK.store(live, Relaxed);
        Self {
            allocations: ALLOCATIONS.load(Relaxed),
            live,
        }
    }

    /// What happened since [`Window::open`].
    pub fn close(self) -> WindowCounts {
        WindowCounts {
            allocations: ALLOCATIONS.load(Relaxed) - self.allocations,
            peak_extra_bytes: PEAK.load(Relaxed).saturating_sub(self.live),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    use super::*;

    #[global_allocator]
    static GLOBAL: CountingAllocator = CountingAllocator;

    #[test]
    fn the_thread_count_sees_each_allocation_and_reallocation() {
        assert_eq!(allocations_in(|| drop(black_box(vec![1u8; 3]))).0, 1);
        assert_eq!(allocations_in(|| drop(black_box(vec![0u64; 3]))).0, 1);
        assert_eq!(allocations_in(|| ()).0, 0);
        let (n, v) = allocations_in(|| {
            let mut v = black_box(Vec::<u8>::with_capacity(1));
            v.extend_from_slice(&[1, 2, 3, 4]);
            v
        });
        assert_eq!((n, v.len()), (2, 4), "an allocation, then a reallocation");
    }

    #[test]
    fn the_thread_count_leaves_out_other_threads() {
        let (n, ()) = allocations_in(|| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    for _ in 0..100 {
                        drop(black_box(vec![1u8; 3]));
                    }
                });
            });
        });
        // Spawning a thread allocates on this one, but far fewer times than the
        // hundred allocations the thread itself makes.
        assert!(n < 100, "{n} allocations counted on this thread");
    }

    #[test]
    fn a_window_sees_every_thread_and_the_peak() {
        let window = Window::open();
        let big = black_box(vec![0u8; 1 << 20]);
        drop(big);
        std::thread::scope(|s| {
            s.spawn(|| drop(black_box(vec![1u8; 3])));
        });
        let counts = window.close();
        // Other tests of this binary may allocate in the window too: at least ours.
        assert!(counts.allocations >= 2, "{counts:?}");
        assert!(counts.peak_extra_bytes >= 1 << 20, "{counts:?}");
    }
}
