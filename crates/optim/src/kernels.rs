//! The shared elementwise core: one fused pass over each parameter's elements, with
//! exact fused multiply-adds dispatched at run time, and a step's whole element space
//! shared between the caller and the worker threads of [`crate::pool`].
//!
//! Every optimizer writes its per-element update as a [`Kernel`]: a plain loop over
//! [`Lanes`] (the parameter, its gradient and up to three state buffers) using the
//! helpers below, each of which is the exact f32/f64 semantics of the PyTorch op it
//! stands for (the Python floats of PyTorch's code stay f64). A step collects one [`Task`] per parameter (the kernel
//! with that parameter's own coefficients, and its lanes) into a [`Batch`], and
//! [`Batch::run`] runs them all:
//!
//! * compiled with `fma,avx2` enabled when the CPU has them (checked once, at run time),
//!   so `mul_add` is one instruction and the loop is vectorized; otherwise the same loop
//!   compiled for the baseline target, where `mul_add` is a (slower, equally exact)
//!   library call. Both give the same bits: every operation is IEEE-754 and elementwise.
//! * when the step has at least [`PARALLEL_THRESHOLD`] elements in all and the machine
//!   more than one core: the concatenation of all the tasks' elements is cut into one
//!   contiguous part per thread (the caller and the workers), and each part into chunks
//!   that its thread takes in order, then the other threads once they are done with
//!   their own part; a chunk may cover the end of one parameter and the start of the
//!   next. Each thread thus updates the same elements at every step, which stay in its
//!   caches, unless another thread is late. Elements are independent, so the split never
//!   changes a number.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use tempo_tensor::Float;

use crate::pool::{pool, Share};

/// Steps with at least this many elements in all are shared with the worker threads.
pub(crate) const PARALLEL_THRESHOLD: usize = 1 << 16;

/// The largest chunk a thread takes at once (256 KiB of each f32 buffer).
const MAX_CHUNK: usize = 1 << 16;
/// The smallest chunk, so that taking one costs little next to running it.
const MIN_CHUNK: usize = 1 << 12;

/// The slices one kernel pass reads and writes: all of the same length, except unused
/// state slots, which are empty.
pub(crate) struct Lanes<'a, T> {
    pub(crate) p: &'a mut [T],
    pub(crate) g: &'a [T],
    pub(crate) s: [&'a mut [T]; 3],
}

impl<'a, T> Lanes<'a, T> {
    pub(crate) fn new(p: &'a mut [T], g: &'a [T]) -> Self {
        Self {
            p,
            g,
            s: [&mut [], &mut [], &mut []],
        }
    }

    pub(crate) fn with(mut self, slot: usize, buf: &'a mut [T]) -> Self {
        self.s[slot] = buf;
        self
    }
}

/// The loop of a kernel: `each!(lanes, |p, g, a, b| body)` runs `body` on each element,
/// with `p` the parameter's (`&mut`), `g` the gradient's and `a`, `b`, ... those of the
/// first state slots (`&mut`), in order. A macro rather than a function taking a
/// closure: the loop is written out where it is used, as the kernel would write it, so
/// its code (and vectorization) is exactly that of a hand-written loop.
macro_rules! each {
    ($l:ident, |$p:ident, $g:ident| $body:block) => {
        for ($p, &$g) in $l.p.iter_mut().zip($l.g) $body
    };
    ($l:ident, |$p:ident, $g:ident, $a:ident| $body:block) => {{
        let [$a, _, _] = $l.s;
        for (($p, &$g), $a) in $l.p.iter_mut().zip($l.g).zip($a.iter_mut()) $body
    }};
    ($l:ident, |$p:ident, $g:ident, $a:ident, $b:ident| $body:block) => {{
        let [$a, $b, _] = $l.s;
        for (($p, &$g), ($a, $b)) in $l.p.iter_mut().zip($l.g).zip($a.iter_mut().zip($b.iter_mut()))
            $body
    }};
    ($l:ident, |$p:ident, $g:ident, $a:ident, $b:ident, $c:ident| $body:block) => {{
        let [$a, $b, $c] = $l.s;
        for ((($p, &$g), ($a, $b)), $c) in $l
            .p
            .iter_mut()
            .zip($l.g)
            .zip($a.iter_mut().zip($b.iter_mut()))
            .zip($c.iter_mut())
            $body
    }};
}

pub(crate) use each;

/// [`Lanes`] filled slot by slot, in order: how `optimizer_state!` lends a state's
/// buffers to its kernel (an absent buffer leaves its slot empty).
pub(crate) struct Slots<'a, T> {
    lanes: Lanes<'a, T>,
    next: usize,
}

impl<'a, T> Slots<'a, T> {
    pub(crate) fn new(lanes: Lanes<'a, T>) -> Self {
        Self { lanes, next: 0 }
    }

    /// The parameter's number of elements.
    pub(crate) fn len(&self) -> usize {
        self.lanes.p.len()
    }

    /// Puts `buf`, if any, in the next slot.
    pub(crate) fn bind(mut self, buf: Option<&'a mut [T]>) -> Self {
        if let Some(buf) = buf {
            self.lanes = self.lanes.with(self.next, buf);
        }
        self.next += 1;
        self
    }

    pub(crate) fn finish(self) -> Lanes<'a, T> {
        self.lanes
    }
}

/// One optimizer's per-element update, with its coefficients already computed.
///
/// Implementations mark `run` `#[inline(always)]`, so that it is compiled inside the
/// `fma,avx2` wrapper of [`Batch::run`]. `run` may be called on any part of a parameter's
/// elements, on any thread, so it must not depend on where the part starts.
pub(crate) trait Kernel<T: Float>: Sync {
    /// Runs the update over all elements of `lanes`.
    fn run(&self, lanes: Lanes<'_, T>);
}

/// [`Lanes`] taken apart into pointers, so that disjoint element ranges can be handed to
/// several threads at once. Holds the lanes' exclusive borrows for `'a`.
///
/// Invariant: `p` and `g` are valid for `len` elements, and each state slot `s[i]` is
/// valid for `len` elements if `used[i]`, else never read.
struct SharedLanes<'a, T> {
    p: *mut T,
    g: *const T,
    s: [*mut T; 3],
    used: [bool; 3],
    len: usize,
    _borrow: PhantomData<Lanes<'a, T>>,
}

// SAFETY: `SharedLanes` stands for the `&'a mut [T]`s and the `&'a [T]` it was made of;
// it hands out only disjoint ranges of them (the contract of `range`), so sending or
// sharing it is sending or sharing those borrows, which is sound for `T: Send + Sync`.
unsafe impl<T: Send + Sync> Send for SharedLanes<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for SharedLanes<'_, T> {}

impl<'a, T> SharedLanes<'a, T> {
    /// Takes `lanes` apart. Panics (before any thread sees them) unless the gradient has
    /// the parameter's length and every state slot is empty or of that length.
    fn new(lanes: Lanes<'a, T>) -> Self {
        let len = lanes.p.len();
        assert_eq!(lanes.g.len(), len, "gradient and parameter lengths differ");
        let [a, b, c] = lanes.s;
        let used = [!a.is_empty(), !b.is_empty(), !c.is_empty()];
        for s in [&*a, &*b, &*c] {
            assert!(
                s.is_empty() || s.len() == len,
                "a state buffer of {} elements for a parameter of {len}",
                s.len()
            );
        }
        Self {
            p: lanes.p.as_mut_ptr(),
            g: lanes.g.as_ptr(),
            s: [a.as_mut_ptr(), b.as_mut_ptr(), c.as_mut_ptr()],
            used,
            len,
            _borrow: PhantomData,
        }
    }

    /// The lanes of elements `lo..hi`.
    ///
    /// # Safety
    /// `lo <= hi <= self.len`, and the ranges of lanes alive at the same time (on any
    /// thread) must not overlap.
    unsafe fn range(&self, lo: usize, hi: usize) -> Lanes<'_, T> {
        debug_assert!(lo <= hi && hi <= self.len);
        let n = hi - lo;
        // SAFETY: by the invariant, `p`, `g` and the used state slots are valid for
        // `len` elements and exclusively ours (or shared, for `g`) for `'a`; the caller
        // guarantees that `lo..hi` is in bounds and that no other live lanes overlap it.
        unsafe {
            let slot = |i: usize| -> &mut [T] {
                if self.used[i] {
                    std::slice::from_raw_parts_mut(self.s[i].add(lo), n)
                } else {
                    &mut []
                }
            };
            Lanes {
                p: std::slice::from_raw_parts_mut(self.p.add(lo), n),
                g: std::slice::from_raw_parts(self.g.add(lo), n),
                s: [slot(0), slot(1), slot(2)],
            }
        }
    }

    /// All the lanes, for one thread.
    fn all(&mut self) -> Lanes<'_, T> {
        // SAFETY: `0..len` is in bounds, and `&mut self` excludes any other live lanes.
        unsafe { self.range(0, self.len) }
    }
}

/// One parameter's update in a step: its kernel (with its own coefficients) and lanes.
pub(crate) struct Task<'a, T, K> {
    kernel: K,
    lanes: SharedLanes<'a, T>,
    /// Where the parameter's elements start in the concatenation of the batch's.
    start: usize,
}

/// The updates of one step, run together by [`Batch::run`].
pub(crate) struct Batch<'a, T, K> {
    tasks: Vec<Task<'a, T, K>>,
    total: usize,
}

impl<'a, T: Float, K: Kernel<T>> Batch<'a, T, K> {
    /// An empty batch that reuses `tasks`' allocation.
    pub(crate) fn new(tasks: Vec<Task<'a, T, K>>) -> Self {
        debug_assert!(tasks.is_empty());
        Self { tasks, total: 0 }
    }

    /// Adds the update of one parameter.
    pub(crate) fn push(&mut self, kernel: K, lanes: Lanes<'a, T>) {
        let lanes = SharedLanes::new(lanes);
        let start = self.total;
        self.total += lanes.len;
        self.tasks.push(Task {
            kernel,
            lanes,
            start,
        });
    }

    /// The tasks' vector, emptied, for the next step.
    pub(crate) fn into_tasks(mut self) -> Vec<Task<'a, T, K>> {
        self.tasks.clear();
        self.tasks
    }

    /// Runs every task: with FMA when available; shared with the worker threads when
    /// the batch has at least [`PARALLEL_THRESHOLD`] elements.
    pub(crate) fn run(&mut self) {
        #[cfg(test)]
        if PORTABLE_ONLY.with(std::cell::Cell::get) {
            for t in &mut self.tasks {
                t.kernel.run(t.lanes.all());
            }
            return;
        }
        let fma = has_fma();
        if self.total >= PARALLEL_THRESHOLD {
            if let Some((pool, threads)) = pool() {
                pool.run(&Split::new(&self.tasks, self.total, threads, fma));
                return;
            }
        }
        for t in &mut self.tasks {
            run_one(fma, &t.kernel, t.lanes.all());
        }
    }
}

/// The chunk size for `total` elements on `threads` threads: about eight chunks per
/// thread (for balance when a thread is late), a multiple of 64 elements, within
/// [`MIN_CHUNK`, `MAX_CHUNK`].
fn chunk_len(total: usize, threads: usize) -> usize {
    total
        .div_ceil(8 * threads)
        .next_multiple_of(64)
        .clamp(MIN_CHUNK, MAX_CHUNK)
}

/// At most this many threads get a part of their own (more threads only help others).
const MAX_PARTS: usize = 32;

/// A chunk counter on a cache line of its own (no false sharing between threads).
#[repr(align(128))]
struct Counter(AtomicUsize);

/// A batch cut into one contiguous part per thread, and each part into chunks of
/// `chunk` elements. Thread `k` takes the chunks of part `k` in order, then helps the
/// other parts: the same thread runs the same elements at every step (they stay in its
/// caches) unless another thread was late. Made only by [`Batch::run`], which holds the
/// batch mutably while the split runs: the split's ranges are the only lanes of its
/// tasks alive.
struct Split<'b, 'a, T, K> {
    tasks: &'b [Task<'a, T, K>],
    total: usize,
    parts: usize,
    /// Elements per part (a multiple of `chunk`; the last part may be shorter).
    part: usize,
    chunk: usize,
    /// The next chunk of each part, counted from the part's start.
    next: [Counter; MAX_PARTS],
    fma: bool,
}

impl<'b, 'a, T: Float, K: Kernel<T>> Split<'b, 'a, T, K> {
    fn new(tasks: &'b [Task<'a, T, K>], total: usize, threads: usize, fma: bool) -> Self {
        let parts = threads.clamp(1, MAX_PARTS);
        let chunk = chunk_len(total, parts);
        Self {
            tasks,
            total,
            parts,
            part: total.div_ceil(parts).next_multiple_of(chunk),
            chunk,
            next: std::array::from_fn(|_| Counter(AtomicUsize::new(0))),
            fma,
        }
    }

    /// Takes the next chunk of part `k`, if any is left: its element range.
    fn take(&self, k: usize) -> Option<(usize, usize)> {
        let start = k * self.part;
        let end = (start + self.part).min(self.total);
        let i = self.next[k].0.fetch_add(1, Ordering::Relaxed);
        let lo = start.checked_add(i.checked_mul(self.chunk)?)?;
        (lo < end).then(|| (lo, (lo + self.chunk).min(end)))
    }

    /// Runs elements `lo..hi` of the concatenation, task by task.
    fn run_range(&self, lo: usize, hi: usize) {
        let first = self.tasks.partition_point(|t| t.start + t.lanes.len <= lo);
        for t in self.tasks[first..].iter().take_while(|t| t.start < hi) {
            let a = lo.max(t.start) - t.start;
            let b = hi.min(t.start + t.lanes.len) - t.start;
            if a < b {
                // SAFETY: `a < b <= len`; chunk `lo..hi` is taken by one thread only (each
                // part's counter hands out each index once), chunks do not overlap, and
                // `Batch::run` holds the batch mutably for the whole `Pool::run`, so no
                // other lanes of these tasks are alive.
                let lanes = unsafe { t.lanes.range(a, b) };
                run_one(self.fma, &t.kernel, lanes);
            }
        }
    }
}

impl<T: Float, K: Kernel<T>> Share for Split<'_, '_, T, K> {
    fn work(&self, thread: usize) {
        for k in (0..self.parts).map(|j| (thread + j) % self.parts) {
            while let Some((lo, hi)) = self.take(k) {
                self.run_range(lo, hi);
            }
        }
    }

    fn stop(&self) {
        // Past every part's end, and far enough from overflow that the few increments
        // still to come cannot wrap around to a valid chunk.
        for c in &self.next {
            c.0.store(usize::MAX / 2, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run the portable path (baseline target, one thread).
    pub(crate) static PORTABLE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the CPU has FMA and AVX2 (detected once; later calls read a cached flag).
fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[inline]
fn run_one<T: Float, K: Kernel<T>>(fma: bool, kernel: &K, lanes: Lanes<'_, T>) {
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: `fma` comes from `has_fma`: the CPU supports the features `run_fma`
        // is compiled for.
        unsafe { run_fma(kernel, lanes) };
        return;
    }
    let _ = fma;
    kernel.run(lanes);
}

/// The kernel compiled with FMA and AVX2: `mul_add` becomes `vfmadd`, and the loop is
/// vectorized 8 (f32) or 4 (f64) wide.
///
/// # Safety
/// The CPU must support `fma` and `avx2`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma,avx2")]
unsafe fn run_fma<T: Float, K: Kernel<T>>(kernel: &K, lanes: Lanes<'_, T>) {
    kernel.run(lanes);
}

/// `fma(a, b, c)`: `a*b + c` with one rounding.
#[inline(always)]
pub(crate) fn fma<T: Float>(a: T, b: T, c: T) -> T {
    num_traits::Float::mul_add(a, b, c)
}

/// `torch.maximum(a, b)`: NaN if either is NaN.
#[inline(always)]
pub(crate) fn maximum<T: Float>(a: T, b: T) -> T {
    let m = if a > b { a } else { b };
    if a.is_nan() {
        a
    } else {
        m
    }
}

/// `torch.sign`.
#[inline(always)]
pub(crate) fn sign<T: Float>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        x
    }
}

/// PyTorch's CPU `lerp_(end, weight)` with a scalar weight `W = F(w)`:
/// `fma(W, e-x, x)` if `|W| < 0.5`, else `fma(W-1, e-x, e)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lerp<T> {
    w: T,
    w_minus_1: T,
    high: bool,
}

impl<T: Float> Lerp<T> {
    pub(crate) fn new(weight: f64) -> Self {
        let w: T = f(weight);
        Self {
            w,
            w_minus_1: w - T::one(),
            high: w.abs() >= f(0.5),
        }
    }

    #[inline(always)]
    pub(crate) fn apply(self, x: T, end: T) -> T {
        let d = end - x;
        if self.high {
            fma(self.w_minus_1, d, end)
        } else {
            fma(self.w, d, x)
        }
    }
}

/// A Python float rounded once to the tensor's type, where PyTorch passes a Python float to a tensor op.
#[inline(always)]
pub(crate) fn f<T: Float>(x: f64) -> T {
    <T as Float>::from_f64(x)
}

/// Advances a step counter (a 0-d tensor of the parameters' type) and returns its new
/// value, widened: PyTorch's `state_step += 1` and `_get_value(state_step)`.
#[inline]
pub(crate) fn advance<T: Float>(step: &mut T) -> f64 {
    *step += T::one();
    wide(*step)
}

/// A tensor element widened to f64 (exact): PyTorch's `.item()`.
#[inline(always)]
pub(crate) fn wide<T: Float>(x: T) -> f64 {
    <T as Float>::to_f64(x)
}

/// The gradient as the update sees it: negated when maximizing, then L2 weight decay
/// `fma(F(wd), p, g)` when `wd != 0`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GradPrep<T> {
    pub(crate) maximize: bool,
    pub(crate) l2: Option<T>,
}

impl<T: Float> GradPrep<T> {
    pub(crate) fn new(maximize: bool, weight_decay: f64) -> Self {
        Self {
            maximize,
            l2: (weight_decay != 0.0).then(|| f(weight_decay)),
        }
    }

    #[inline(always)]
    pub(crate) fn apply(self, g: T, p: T) -> T {
        let g = if self.maximize { -g } else { g };
        match self.l2 {
            Some(wd) => fma(wd, p, g),
            None => g,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Axpy(f32);
    impl Kernel<f32> for Axpy {
        #[inline(always)]
        fn run(&self, l: Lanes<'_, f32>) {
            let [s0, _, _] = l.s;
            for ((p, &g), s) in l.p.iter_mut().zip(l.g).zip(s0.iter_mut()) {
                *p = fma(self.0, g, *p);
                *s += 1.0;
            }
        }
    }

    #[test]
    fn fma_is_fused_and_threads_do_not_change_numbers() {
        // 0.1f32 * 3 + x rounds differently with and without fusion for these inputs.
        let n = PARALLEL_THRESHOLD + 1000;
        let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let orig: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut p = orig.clone();
        let mut s = vec![0.0f32; n];
        let want: Vec<f32> = orig
            .iter()
            .zip(&g)
            .map(|(&p, &g)| 0.1f32.mul_add(g, p))
            .collect();
        // The check is meaningful only if fusing changes some of these elements.
        let unfused = orig
            .iter()
            .zip(&g)
            .filter(|(&p, &g)| (0.1f32 * g + p).to_bits() != 0.1f32.mul_add(g, p).to_bits());
        assert!(unfused.count() > 0);
        let mut batch = Batch::new(Vec::new());
        batch.push(Axpy(0.1), Lanes::new(&mut p, &g).with(0, &mut s));
        batch.run();
        assert!(p.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(s.iter().all(|&v| (v - 1.0).abs() < f32::EPSILON));
    }

    /// Runs `Axpy(0.1 * (i + 1))` over tensor `i` of `sizes` (one batch), counting visits
    /// in a state slot; returns the parameters' bits and the counts.
    fn axpy_batch(sizes: &[usize], portable: bool) -> (Vec<u32>, Vec<f32>) {
        let total: usize = sizes.iter().sum();
        let g: Vec<f32> = (0..total).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut p: Vec<f32> = (0..total).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut s = vec![0.0f32; total];
        let mut batch = Batch::new(Vec::new());
        let (mut p_rest, mut g_rest, mut s_rest) = (&mut p[..], &g[..], &mut s[..]);
        for (i, &n) in sizes.iter().enumerate() {
            let (pi, pr) = std::mem::take(&mut p_rest).split_at_mut(n);
            let (gi, gr) = g_rest.split_at(n);
            let (si, sr) = std::mem::take(&mut s_rest).split_at_mut(n);
            (p_rest, g_rest, s_rest) = (pr, gr, sr);
            batch.push(Axpy(0.1 * (i + 1) as f32), Lanes::new(pi, gi).with(0, si));
        }
        PORTABLE_ONLY.with(|c| c.set(portable));
        batch.run();
        PORTABLE_ONLY.with(|c| c.set(false));
        drop(batch);
        (p.iter().map(|x| x.to_bits()).collect(), s)
    }

    #[test]
    fn a_step_split_across_tensors_gives_the_same_bits() {
        let sizes = [
            0,
            1,
            63,
            MIN_CHUNK - 1,
            MIN_CHUNK + 1,
            MAX_CHUNK - 1,
            MAX_CHUNK + 1,
            1024,
            3 * MAX_CHUNK + 17,
            70_001,
            5,
        ];
        let total: usize = sizes.iter().sum();
        assert!(total >= PARALLEL_THRESHOLD);
        // Tensors straddle chunk boundaries on one worker or many, and some span chunks.
        for threads in [2, 4] {
            let chunk = chunk_len(total, threads);
            let mut start = 0;
            let (mut straddles, mut spans) = (0, 0);
            for &n in &sizes {
                let (first, last) = (start / chunk, (start + n).saturating_sub(1) / chunk);
                straddles += usize::from(n > 0 && first != last);
                spans += usize::from(last > first + 1);
                start += n;
            }
            assert!(
                straddles >= 3 && spans >= 1,
                "{threads} threads: chunk {chunk}"
            );
        }
        let (fast, counts) = axpy_batch(&sizes, false);
        let (portable, _) = axpy_batch(&sizes, true);
        assert!(fast == portable);
        assert!(counts.iter().all(|&c| (c - 1.0).abs() < f32::EPSILON));
        // Each tensor used its own coefficient.
        let mut start = 0;
        for (i, &n) in sizes.iter().enumerate() {
            let c = 0.1 * (i + 1) as f32;
            for (j, &bits) in fast.iter().enumerate().skip(start).take(n) {
                let (p0, g) = ((j as f32 * 0.11).cos(), (j as f32 * 0.37).sin());
                assert_eq!(bits, c.mul_add(g, p0).to_bits(), "tensor {i}, element {j}");
            }
            start += n;
        }
    }

    #[test]
    fn any_thread_can_finish_a_split() {
        // Whichever threads show up, in whatever order, every element is run once.
        let sizes = [5000, 1, 70_001, 0, 4096];
        let total: usize = sizes.iter().sum();
        for order in [&[0usize][..], &[1], &[2, 0], &[7, 1, 0]] {
            let mut bufs: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = sizes
                .iter()
                .map(|&n| (vec![1.0; n], vec![1.0; n], vec![0.0; n]))
                .collect();
            let mut batch = Batch::new(Vec::new());
            for (p, g, s) in &mut bufs {
                batch.push(Axpy(1.0), Lanes::new(p, g).with(0, s));
            }
            let split = Split::new(&batch.tasks, total, 3, false);
            for &thread in order {
                split.work(thread);
            }
            drop(batch);
            for (p, _, s) in &bufs {
                assert!(
                    p.iter().all(|&x| (x - 2.0).abs() < f32::EPSILON),
                    "{order:?}"
                );
                assert!(
                    s.iter().all(|&x| (x - 1.0).abs() < f32::EPSILON),
                    "{order:?}"
                );
            }
        }
    }

    // The test pools are std's threads; under loom the pool is loom's (`pool.rs`).
    #[cfg(not(loom))]
    #[test]
    fn split_on_a_pool_runs_every_element_once() {
        // Small enough for Miri: the split's lanes, shared by real threads.
        let sizes = [5000, 1, 3000, 0, 77];
        let total: usize = sizes.iter().sum();
        let mut bufs: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = sizes
            .iter()
            .map(|&n| {
                let p = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
                let g = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
                (p, g, vec![0.0; n])
            })
            .collect();
        // (Compared with copies: under Miri, `cos` and `sin` need not repeat a result.)
        let orig: Vec<Vec<f32>> = bufs.iter().map(|(p, _, _)| p.clone()).collect();
        let mut batch = Batch::new(Vec::new());
        for (i, (p, g, s)) in bufs.iter_mut().enumerate() {
            batch.push(Axpy(0.1 * (i + 1) as f32), Lanes::new(p, g).with(0, s));
        }
        crate::pool::tests::with_pool(2, |pool| {
            pool.run(&Split::new(&batch.tasks, total, 3, false));
        });
        drop(batch);
        for (i, ((p, g, s), p0)) in bufs.iter().zip(&orig).enumerate() {
            let c = 0.1 * (i + 1) as f32;
            for (j, ((&p, &g), &p0)) in p.iter().zip(g).zip(p0).enumerate() {
                assert_eq!(
                    p.to_bits(),
                    c.mul_add(g, p0).to_bits(),
                    "tensor {i}, element {j}"
                );
            }
            assert!(
                s.iter().all(|&v| v.to_bits() == 1.0f32.to_bits()),
                "tensor {i}"
            );
        }
    }

    #[test]
    fn lerp_uses_pytorchs_two_branches() {
        let lo = Lerp::<f32>::new(0.1);
        assert_eq!(
            lo.apply(1.0, 3.0).to_bits(),
            0.1f32.mul_add(2.0, 1.0).to_bits()
        );
        let hi = Lerp::<f32>::new(0.9);
        assert_eq!(
            hi.apply(1.0, 3.0).to_bits(),
            (0.9f32 - 1.0).mul_add(2.0, 3.0).to_bits()
        );
        assert!(maximum(f32::NAN, 1.0).is_nan());
        assert!(maximum(1.0, f32::NAN).is_nan());
        assert_eq!(maximum(1.0f32, 2.0).to_bits(), 2.0f32.to_bits());
    }
}
