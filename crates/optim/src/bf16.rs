//! bfloat16 arithmetic as PyTorch's CPU kernels do it, for Muon's Newton-Schulz
//! iteration: values are kept as `f32`s that hold bfloat16 numbers, every operation is
//! computed in f32 and its result rounded once to bfloat16 ([`round`]).
//!
//! [`gemm`] is the matrix product behind `@` and `addmm` on bfloat16 matrices:
//! `out = round(fma(beta, C, alpha * (A @ B)))`, each dot product accumulated in f32 in
//! index order with fused multiply-adds (as oneDNN's bfloat16 GEMM accumulates in f32),
//! and rounded once. It is cache-blocked (packed 16-column strips of `B`, `KC`-deep
//! blocks of the inner dimension, `MC`-row panels of `A`), compiled with FMA and AVX-512
//! or AVX2 when the CPU has them (detected at run time, with tiles as tall as the
//! registers allow; otherwise the same loops for the baseline target, with exact
//! library FMAs), and large products are shared by row panels with the worker threads
//! of [`crate::pool`]. Every output element is computed
//! by one thread, in the same order, on every path: neither the dispatch nor the threads
//! change a bit.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::pool::{pool, Share};

/// Rounds an f32 to the nearest bfloat16 (ties to even), as `c10::BFloat16(float)`;
/// NaN becomes the quiet NaN `0x7fc0`.
#[inline(always)]
pub(crate) fn round(x: f32) -> f32 {
    if x.is_nan() {
        return f32::from_bits(0x7fc0_0000);
    }
    let u = x.to_bits();
    let bias = ((u >> 16) & 1) + 0x7fff;
    f32::from_bits((u.wrapping_add(bias) >> 16) << 16)
}

/// An f64 converted to bfloat16 as PyTorch converts a double tensor: to f32 first
/// (ties to even), then to bfloat16.
#[inline(always)]
pub(crate) fn round_f64(x: f64) -> f32 {
    round(x as f32)
}

/// Columns of a packed strip of `B`, and of the micro-kernel's tile.
const NR: usize = 16;
/// Rows of the micro-kernel's tile on the portable path and with AVX2 (`MR x NR`
/// accumulators: 12 of AVX2's 16 vector registers).
const MR: usize = 6;
/// Rows of the micro-kernel's tile with AVX-512 (one 16-lane register per row; taller
/// tiles measured no faster).
const MR_AVX512: usize = 8;
// The tile dispatch in `panel_generic` covers tiles of up to 12 rows.
const _: () =
    assert!(MR <= 12 && MR_AVX512 <= 12 && MC.is_multiple_of(MR) && MC.is_multiple_of(MR_AVX512));
/// Depth of a block of the inner dimension (a strip block is `KC * NR` f32s: 16 KiB).
const KC: usize = 256;
/// Rows of a panel of `A` (the unit of work a thread takes).
const MC: usize = 72;
/// Products of at least this many multiply-adds are shared with the worker threads.
const PARALLEL_FLOPS: usize = 1 << 21;

/// One product `out = round(fma(beta, C, alpha * (A @ B)))` of row-major f32 matrices
/// (PyTorch's CPU bfloat16 `addmm` fuses `beta * C` with the scaled product).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gemm<'a> {
    /// Rows of `A` and of the output.
    pub(crate) m: usize,
    /// Columns of `B` and of the output.
    pub(crate) n: usize,
    /// The inner dimension.
    pub(crate) k: usize,
    /// `m x k`.
    pub(crate) a: &'a [f32],
    /// `k x n`, or `n x k` when `b_transposed` (then the product is `A @ B^T`).
    pub(crate) b: &'a [f32],
    /// Whether `b` holds `B^T`.
    pub(crate) b_transposed: bool,
    /// The product's scale.
    pub(crate) alpha: f32,
    /// `beta` and `C` (`m x n`), or `None` for a plain product.
    pub(crate) c: Option<(f32, &'a [f32])>,
}

/// The f32 sum of squares of bfloat16 values in memory order, as PyTorch's CPU
/// `norm()` of a bfloat16 tensor takes it: 8 lanes, each adding `x[16v + l]^2` then
/// `x[16v + 8 + l]^2` for every complete chunk of 16, the lanes folded left to right,
/// then the remaining elements one at a time. (Products of bfloat16 values are exact in
/// f32.)
pub(crate) fn sum_of_squares(x: impl ExactSizeIterator<Item = f32> + Clone) -> f32 {
    let len = x.len();
    let full = len / 16 * 16;
    let mut lanes = [0.0f32; 8];
    let mut it = x.clone();
    for _ in 0..full / 16 {
        let chunk: [f32; 16] = std::array::from_fn(|_| it.next().unwrap_or(0.0));
        for l in 0..8 {
            lanes[l] += chunk[l] * chunk[l];
            lanes[l] += chunk[8 + l] * chunk[8 + l];
        }
    }
    let mut s = lanes.iter().fold(0.0f32, |a, &b| a + b);
    for v in it {
        s += v * v;
    }
    s
}

/// Computes `g` into `out` (`m x n`), using `packed` as the packing buffer.
///
/// Panics if a slice is shorter than its dimensions say (a bug in the caller).
pub(crate) fn gemm(g: &Gemm<'_>, out: &mut [f32], packed: &mut Vec<f32>) {
    let (m, n, k) = (g.m, g.n, g.k);
    assert!(g.a.len() >= m * k && g.b.len() >= k * n && out.len() >= m * n);
    if let Some((_, c)) = g.c {
        assert!(c.len() >= m * n);
    }
    pack(g, packed);
    let isa = isa();
    let panels = m.div_ceil(MC);
    if m * n * k >= PARALLEL_FLOPS && panels > 1 {
        if let Some((pool, _)) = pool() {
            let job = Job {
                g,
                packed,
                out: OutPtr(out.as_mut_ptr()),
                next: AtomicUsize::new(0),
                panels,
                isa,
            };
            pool.run(&job);
            return;
        }
    }
    for p in 0..panels {
        let i0 = p * MC;
        let i1 = (i0 + MC).min(m);
        panel(g, packed, &mut out[i0 * n..i1 * n], i0, i1, isa);
    }
}

/// Packs `B` as strips of `NR` columns, each `k x NR` row-major, zero-padded.
fn pack(g: &Gemm<'_>, packed: &mut Vec<f32>) {
    let (n, k) = (g.n, g.k);
    let strips = n.div_ceil(NR);
    packed.clear();
    packed.resize(strips * k * NR, 0.0);
    for s in 0..strips {
        let strip = &mut packed[s * k * NR..(s + 1) * k * NR];
        let cols = (n - s * NR).min(NR);
        for kk in 0..k {
            let row = &mut strip[kk * NR..kk * NR + cols];
            for (j, v) in row.iter_mut().enumerate() {
                let col = s * NR + j;
                *v = if g.b_transposed {
                    g.b[col * k + kk]
                } else {
                    g.b[kk * n + col]
                };
            }
        }
    }
}

/// The output's pointer, shared by the threads of one product.
struct OutPtr(*mut f32);

/// One product shared with the worker threads, by row panels.
struct Job<'a, 'g> {
    g: &'a Gemm<'g>,
    packed: &'a [f32],
    out: OutPtr,
    next: AtomicUsize,
    panels: usize,
    isa: Isa,
}

// SAFETY: the threads write through `out` only to the rows of the panels they took
// from `next`, each panel once (see `work`), so sharing the pointer shares disjoint
// `&mut` rows of the output, which the caller lent to `gemm` for the whole job.
unsafe impl Sync for Job<'_, '_> {}

impl Share for Job<'_, '_> {
    fn work(&self, _thread: usize) {
        let (m, n) = (self.g.m, self.g.n);
        loop {
            let p = self.next.fetch_add(1, Ordering::Relaxed);
            if p >= self.panels {
                return;
            }
            let i0 = p * MC;
            let i1 = (i0 + MC).min(m);
            // SAFETY: panel `p` is taken by this thread only (`fetch_add`), its rows
            // `i0..i1` lie inside the `m x n` output `gemm` checked, and the output
            // outlives the job (`Pool::run` returns only when every thread is done).
            let rows =
                unsafe { std::slice::from_raw_parts_mut(self.out.0.add(i0 * n), (i1 - i0) * n) };
            panel(self.g, self.packed, rows, i0, i1, self.isa);
        }
    }

    fn stop(&self) {
        self.next.store(usize::MAX / 2, Ordering::Relaxed);
    }
}

/// The instruction set a product runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    /// The baseline target, with exact library FMAs.
    Portable,
    /// FMA and AVX2.
    Avx2,
    /// FMA and AVX-512 (F).
    Avx512,
}

/// The instruction set products run on: the best of this CPU (the standard library
/// caches the detection), or the one a test forces.
fn isa() -> Isa {
    #[cfg(test)]
    if let Some(forced) = FORCE_ISA.with(std::cell::Cell::get) {
        return forced;
    }
    best_isa()
}

/// The best instruction set of this CPU.
fn best_isa() -> Isa {
    if !has_fma() {
        return Isa::Portable;
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return Isa::Avx512;
    }
    Isa::Avx2
}

/// Whether the CPU has FMA and AVX2.
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

#[cfg(test)]
thread_local! {
    /// Tests set this to run the products of this thread on a given instruction set
    /// (one the CPU has).
    static FORCE_ISA: std::cell::Cell<Option<Isa>> = const { std::cell::Cell::new(None) };
}

/// Rows `i0..i1` of the product into `rows` (those rows of the output).
fn panel(g: &Gemm<'_>, packed: &[f32], rows: &mut [f32], i0: usize, i1: usize, isa: Isa) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `isa` comes from `isa()`: the CPU supports the features `panel_avx512`
        // is compiled for.
        Isa::Avx512 => unsafe { panel_avx512(g, packed, rows, i0, i1) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, for `panel_avx2`.
        Isa::Avx2 => unsafe { panel_avx2(g, packed, rows, i0, i1) },
        _ => panel_generic::<MR>(g, packed, rows, i0, i1, Isa::Portable),
    }
}

/// [`panel_generic`] compiled with FMA and AVX2.
///
/// # Safety
/// The CPU must support `fma` and `avx2`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma,avx2")]
unsafe fn panel_avx2(g: &Gemm<'_>, packed: &[f32], rows: &mut [f32], i0: usize, i1: usize) {
    panel_generic::<MR>(g, packed, rows, i0, i1, Isa::Avx2);
}

/// [`panel_generic`] compiled with FMA and AVX-512, on taller tiles.
///
/// # Safety
/// The CPU must support `fma`, `avx2` and `avx512f`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma,avx2,avx512f")]
unsafe fn panel_avx512(g: &Gemm<'_>, packed: &[f32], rows: &mut [f32], i0: usize, i1: usize) {
    panel_generic::<MR_AVX512>(g, packed, rows, i0, i1, Isa::Avx512);
}

/// Rows `i0..i1` by tiles of at most `TILE` rows. Each output element is accumulated
/// in the same order whatever the tile, so the tile height changes no bit.
#[inline(always)]
fn panel_generic<const TILE: usize>(
    g: &Gemm<'_>,
    packed: &[f32],
    rows: &mut [f32],
    i0: usize,
    i1: usize,
    isa: Isa,
) {
    let (n, k) = (g.n, g.k);
    let strips = n.div_ceil(NR);
    // This panel's rows of A for one block of the inner dimension, tile by tile, each
    // tile's `kc x rows` values column after column (`a[kk * rows + r]`), so that a
    // tile reads A contiguously.
    // On the stack: a panel may run on a worker thread, and steps allocate nothing.
    let mut apack = [0.0f32; MC * KC];
    let mut k0 = 0;
    // A product with k = 0 is the epilogue alone.
    loop {
        let kc = KC.min(k - k0);
        let first = k0 == 0;
        let last = k0 + kc == k;
        let mut r0 = i0;
        while r0 < i1 {
            let r = TILE.min(i1 - r0);
            let dst = &mut apack[(r0 - i0) * kc..(r0 - i0 + r) * kc];
            for rr in 0..r {
                let src = &g.a[(r0 + rr) * k + k0..(r0 + rr) * k + k0 + kc];
                for (kk, &v) in src.iter().enumerate() {
                    dst[kk * r + rr] = v;
                }
            }
            r0 += r;
        }
        for s in 0..strips {
            let strip = &packed[s * k * NR + k0 * NR..s * k * NR + (k0 + kc) * NR];
            let cols = (n - s * NR).min(NR);
            let mut r0 = i0;
            while r0 < i1 {
                let r = TILE.min(i1 - r0);
                let tile = Tile {
                    g,
                    strip,
                    a: &apack[(r0 - i0) * kc..(r0 - i0 + r) * kc],
                    kc,
                    col0: s * NR,
                    cols,
                    first,
                    last,
                    isa,
                };
                let out = &mut rows[(r0 - i0) * n..(r0 - i0 + r) * n];
                match r {
                    12 => tile.run::<12>(r0, out),
                    11 => tile.run::<11>(r0, out),
                    10 => tile.run::<10>(r0, out),
                    9 => tile.run::<9>(r0, out),
                    8 => tile.run::<8>(r0, out),
                    7 => tile.run::<7>(r0, out),
                    6 => tile.run::<6>(r0, out),
                    5 => tile.run::<5>(r0, out),
                    4 => tile.run::<4>(r0, out),
                    3 => tile.run::<3>(r0, out),
                    2 => tile.run::<2>(r0, out),
                    _ => tile.run::<1>(r0, out),
                }
                r0 += r;
            }
        }
        k0 += kc;
        if k0 >= k {
            break;
        }
    }
}

/// `acc[r] += a[kk * R + r] * strip[kk]` for `kk` in `0..kc`, one fused multiply-add per
/// element in `kk` order, with AVX-512: one 16-lane register per row.
///
/// # Safety
/// The CPU must support `avx512f`; `a` (packed, `a[kk * R + r]`) holds at least
/// `kc * R` values and `strip` at least `kc * NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma,avx2,avx512f")]
unsafe fn kernel_avx512<const R: usize>(
    acc: &mut [[f32; NR]; R],
    a: &[f32],
    strip: &[f32],
    kc: usize,
) {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };
    let mut v: [__m512; R] = [_mm512_setzero_ps(); R];
    for (x, row) in v.iter_mut().zip(acc.iter()) {
        // SAFETY: `row` is NR = 16 f32s.
        *x = unsafe { _mm512_loadu_ps(row.as_ptr()) };
    }
    for kk in 0..kc {
        // SAFETY: `strip` holds `kc * NR` values (the caller's promise).
        let b = unsafe { _mm512_loadu_ps(strip.as_ptr().add(kk * NR)) };
        for (r, x) in v.iter_mut().enumerate() {
            // SAFETY: `a` holds `kc * R` values (the caller's promise).
            let av = unsafe { *a.get_unchecked(kk * R + r) };
            *x = _mm512_fmadd_ps(_mm512_set1_ps(av), b, *x);
        }
    }
    for (x, row) in v.iter().zip(acc.iter_mut()) {
        // SAFETY: as for the loads.
        unsafe { _mm512_storeu_ps(row.as_mut_ptr(), *x) };
    }
}

/// [`kernel_avx512`] with FMA and AVX2: two 8-lane registers per row.
///
/// # Safety
/// The CPU must support `fma` and `avx2`; `a` (packed, `a[kk * R + r]`) holds at least
/// `kc * R` values and `strip` at least `kc * NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma,avx2")]
unsafe fn kernel_avx2<const R: usize>(
    acc: &mut [[f32; NR]; R],
    a: &[f32],
    strip: &[f32],
    kc: usize,
) {
    use std::arch::x86_64::{
        __m256, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };
    let mut v: [[__m256; 2]; R] = [[_mm256_setzero_ps(); 2]; R];
    for (x, row) in v.iter_mut().zip(acc.iter()) {
        // SAFETY: `row` is NR = 16 f32s.
        unsafe {
            x[0] = _mm256_loadu_ps(row.as_ptr());
            x[1] = _mm256_loadu_ps(row.as_ptr().add(8));
        }
    }
    for kk in 0..kc {
        // SAFETY: `strip` holds `kc * NR` values (the caller's promise).
        let (b0, b1) = unsafe {
            let p = strip.as_ptr().add(kk * NR);
            (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
        };
        for (r, x) in v.iter_mut().enumerate() {
            // SAFETY: `a` holds `kc * R` values (the caller's promise).
            let av = _mm256_set1_ps(unsafe { *a.get_unchecked(kk * R + r) });
            x[0] = _mm256_fmadd_ps(av, b0, x[0]);
            x[1] = _mm256_fmadd_ps(av, b1, x[1]);
        }
    }
    for (x, row) in v.iter().zip(acc.iter_mut()) {
        // SAFETY: as for the loads.
        unsafe {
            _mm256_storeu_ps(row.as_mut_ptr(), x[0]);
            _mm256_storeu_ps(row.as_mut_ptr().add(8), x[1]);
        }
    }
}

/// One `R x NR` tile of the output over one block of the inner dimension.
struct Tile<'a, 'g> {
    g: &'a Gemm<'g>,
    strip: &'a [f32],
    /// The tile's rows of A for this block, packed: `a[kk * R + r]`.
    a: &'a [f32],
    kc: usize,
    col0: usize,
    cols: usize,
    first: bool,
    last: bool,
    isa: Isa,
}

impl Tile<'_, '_> {
    /// Accumulates rows `r0..r0+R` (written to `out`, those rows of the output; between
    /// blocks of the inner dimension it holds the f32 partial sums).
    #[inline(always)]
    fn run<const R: usize>(&self, r0: usize, out: &mut [f32]) {
        let n = self.g.n;
        let mut acc = [[0.0f32; NR]; R];
        if !self.first {
            for (r, row) in acc.iter_mut().enumerate() {
                row[..self.cols]
                    .copy_from_slice(&out[r * n + self.col0..r * n + self.col0 + self.cols]);
            }
        }
        let kc = self.kc;
        let a = &self.a[..kc * R];
        let strip = &self.strip[..kc * NR];
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the tile runs on AVX-512 only when `isa()` found it; `a` holds
            // `kc` values per row and `strip` `kc * NR`.
            Isa::Avx512 => unsafe { kernel_avx512(&mut acc, a, strip, kc) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, for FMA and AVX2.
            Isa::Avx2 => unsafe { kernel_avx2(&mut acc, a, strip, kc) },
            _ => {
                for (b, ak) in strip.chunks_exact(NR).zip(a.chunks_exact(R)) {
                    for (row, &av) in acc.iter_mut().zip(ak) {
                        for (x, &bv) in row.iter_mut().zip(b) {
                            *x = av.mul_add(bv, *x);
                        }
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let o = &mut out[r * n + self.col0..r * n + self.col0 + self.cols];
            if !self.last {
                o.copy_from_slice(&row[..self.cols]);
                continue;
            }
            let alpha = self.g.alpha;
            match self.g.c {
                None => {
                    for (y, &x) in o.iter_mut().zip(row) {
                        *y = round(alpha * x);
                    }
                }
                Some((beta, c)) => {
                    let cr = &c[(r0 + r) * n + self.col0..(r0 + r) * n + self.col0 + self.cols];
                    for ((y, &x), &cv) in o.iter_mut().zip(row).zip(cr) {
                        *y = round(beta.mul_add(cv, alpha * x));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to the even 1.
        assert_eq!(round(1.0 + 1.0 / 256.0).to_bits(), 1.0f32.to_bits());
        // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties to 1 + 2^-6.
        assert_eq!(
            round(1.0 + 3.0 / 256.0).to_bits(),
            (1.0f32 + 1.0 / 64.0).to_bits()
        );
        assert_eq!(
            round(1.0 + 1.5 / 256.0).to_bits(),
            (1.0f32 + 1.0 / 128.0).to_bits()
        );
        assert!(round(f32::NAN).is_nan());
        assert_eq!(round(f32::INFINITY).to_bits(), f32::INFINITY.to_bits());
        // Double rounding through f32, as PyTorch converts a double tensor.
        assert_eq!(
            round_f64(1.0 + 1.0 / 256.0 + 1e-12).to_bits(),
            1.0f32.to_bits()
        );
    }

    /// The reference: each dot product accumulated in index order with FMAs.
    fn naive(g: &Gemm<'_>) -> Vec<f32> {
        let mut out = vec![0.0; g.m * g.n];
        for i in 0..g.m {
            for j in 0..g.n {
                let mut acc = 0.0f32;
                for kk in 0..g.k {
                    let b = if g.b_transposed {
                        g.b[j * g.k + kk]
                    } else {
                        g.b[kk * g.n + j]
                    };
                    acc = g.a[i * g.k + kk].mul_add(b, acc);
                }
                out[i * g.n + j] = match g.c {
                    None => round(g.alpha * acc),
                    Some((beta, c)) => round(beta.mul_add(c[i * g.n + j], g.alpha * acc)),
                };
            }
        }
        out
    }

    /// Every instruction set this CPU runs.
    fn isas() -> Vec<Isa> {
        let mut all = vec![Isa::Portable];
        if has_fma() {
            all.push(Isa::Avx2);
        }
        if best_isa() == Isa::Avx512 {
            all.push(Isa::Avx512);
        }
        all
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| round(((i as f32 * 0.37 + seed as f32).sin()) * 1.5))
            .collect()
    }

    #[test]
    fn blocked_threaded_and_portable_products_match_the_naive_one_bit_for_bit() {
        // Sizes around the tile, strip, block and panel edges, and one big enough to
        // be shared with the worker threads.
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 2),
            (4, 16, 256),
            (5, 17, 257),
            (65, 33, 300),
            (130, 140, 520),
            (150, 47, 33),
            (7, 9, 0),
        ] {
            for transposed in [false, true] {
                for with_c in [false, true] {
                    let a = data(m * k, 1);
                    let b = data(k * n, 2);
                    let c = data(m * n, 3);
                    let g = Gemm {
                        m,
                        n,
                        k,
                        a: &a,
                        b: &b,
                        b_transposed: transposed,
                        alpha: if with_c { 2.0315 } else { 1.0 },
                        c: with_c.then_some((-4.775, &c[..])),
                    };
                    let want = naive(&g);
                    for isa in isas() {
                        FORCE_ISA.with(|f| f.set(Some(isa)));
                        let mut out = vec![f32::NAN; m * n];
                        gemm(&g, &mut out, &mut Vec::new());
                        FORCE_ISA.with(|f| f.set(None));
                        let same = out
                            .iter()
                            .zip(&want)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same,
                            "m={m} n={n} k={k} transposed={transposed} c={with_c} {isa:?}"
                        );
                    }
                }
            }
        }
    }
}
