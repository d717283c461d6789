//! The shared elementwise core: one fused pass over a parameter's elements, with exact
//! fused multiply-adds dispatched at run time and large tensors split over two threads.
//!
//! Every optimizer writes its per-element update as a [`Kernel`]: a plain loop over
//! [`Lanes`] (the parameter, its gradient and up to three state buffers) using the
//! helpers below, each of which is the exact f32/f64 semantics of the PyTorch op it
//! stands for (SEMANTICS.md §0.2). [`launch`] runs the loop:
//!
//! * compiled with `fma,avx2` enabled when the CPU has them (checked once, at run time),
//!   so `mul_add` is one instruction and the loop is vectorized; otherwise the same loop
//!   compiled for the baseline target, where `mul_add` is a (slower, equally exact)
//!   library call. Both give the same bits: every operation is IEEE-754 and elementwise.
//! * on two threads, each taking half of the elements, when the tensor has at least
//!   [`PARALLEL_THRESHOLD`] elements and the machine more than one core. Elements are
//!   independent, so the split never changes a number.

use std::sync::OnceLock;

use tempo_tensor::Float;

/// Tensors with at least this many elements are updated on two threads.
pub(crate) const PARALLEL_THRESHOLD: usize = 1 << 16;

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

    fn len(&self) -> usize {
        self.p.len()
    }

    fn split_at(self, mid: usize) -> (Self, Self) {
        let (p0, p1) = self.p.split_at_mut(mid);
        let (g0, g1) = self.g.split_at(mid);
        let [a, b, c] = self.s;
        let (a0, a1) = split_state(a, mid);
        let (b0, b1) = split_state(b, mid);
        let (c0, c1) = split_state(c, mid);
        (
            Lanes {
                p: p0,
                g: g0,
                s: [a0, b0, c0],
            },
            Lanes {
                p: p1,
                g: g1,
                s: [a1, b1, c1],
            },
        )
    }
}

fn split_state<T>(s: &mut [T], mid: usize) -> (&mut [T], &mut [T]) {
    if s.is_empty() {
        (&mut [], &mut [])
    } else {
        s.split_at_mut(mid)
    }
}

/// One optimizer's per-element update, with its coefficients already computed.
///
/// Implementations mark `run` `#[inline(always)]`, so that it is compiled inside the
/// `fma,avx2` wrapper of [`launch`].
pub(crate) trait Kernel<T: Float>: Sync {
    /// Runs the update over all elements of `lanes`.
    fn run(&self, lanes: Lanes<'_, T>);
}

/// Runs `kernel` over `lanes`: on two threads for large tensors, with FMA when available.
pub(crate) fn launch<T: Float, K: Kernel<T>>(kernel: &K, lanes: Lanes<'_, T>) {
    #[cfg(test)]
    if PORTABLE_ONLY.with(std::cell::Cell::get) {
        kernel.run(lanes);
        return;
    }
    let n = lanes.len();
    if n >= PARALLEL_THRESHOLD && cores() > 1 {
        // Split on a 64-element boundary so both halves start cache-line aligned.
        let mid = (n / 2) & !63;
        let (first, second) = lanes.split_at(mid);
        std::thread::scope(|s| {
            s.spawn(|| run_one(kernel, second));
            run_one(kernel, first);
        });
    } else {
        run_one(kernel, lanes);
    }
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run the portable path (baseline target, one thread).
    pub(crate) static PORTABLE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

#[inline]
fn run_one<T: Float, K: Kernel<T>>(kernel: &K, lanes: Lanes<'_, T>) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("avx2")
        {
            // SAFETY: the CPU supports the features `run_fma` is compiled for.
            unsafe { run_fma(kernel, lanes) };
            return;
        }
    }
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

/// A Python float rounded once to the tensor's type: `F(x)` in SEMANTICS.md.
#[inline(always)]
pub(crate) fn f<T: Float>(x: f64) -> T {
    <T as Float>::from_f64(x)
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
        launch(&Axpy(0.1), Lanes::new(&mut p, &g).with(0, &mut s));
        assert!(p.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(s.iter().all(|&v| (v - 1.0).abs() < f32::EPSILON));
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
