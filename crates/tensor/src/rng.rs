//! A seeded random generator that reproduces PyTorch's default CPU generator (MT19937)
//! and its uniform, normal and integer draws.
//!
//! * Seeding (`torch.manual_seed(s)`): the standard MT19937 `init_genrand` on the low 32
//!   bits of `s`; the cached normal samples are cleared.
//! * f32 uniform on `[lo, hi)`: one 32-bit output `u` per element,
//!   `x = (u & 0xFFFFFF) as f32 * 2^-24`, value `fma(x, F(hi) - F(lo), F(lo))`.
//! * f64 uniform: one 64-bit draw per element made of two outputs
//!   (`u64 = first << 32 | second`), `x = (u64 & (2^53 - 1)) as f64 * 2^-53`,
//!   value `fma(x, hi - lo, lo)` — PyTorch's `uniform_real_distribution<double>`
//!   on `random64()`.
//! * Integers in `[low, high)`: `low + u % (high - low)` with one 32-bit output per
//!   element when the range is below 2^32, else a 64-bit draw (`torch.randint`).
//! * Normal: PyTorch's CPU `normal_` for contiguous tensors of at least 16 elements
//!   (uniforms for the whole tensor first, then Box–Muller on blocks of 16, redoing
//!   the last 16 when the size is not a multiple of 16); below 16 elements, one
//!   Box–Muller draw per element from two f64 uniforms, caching the sine half.
//!   The f64 path uses libm `ln`, `cos`, `sin` and agrees with PyTorch to the last ulp
//!   or so; PyTorch's f32 path of 16 or more elements uses vectorised math whose last
//!   bits tempo does not reproduce.

use ndarray::ArrayD;

use crate::{DType, Float, TensorError};

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// A random generator reproducing `torch.Generator()` on the CPU, bit for bit.
///
/// ```
/// use tempo_tensor::Generator;
/// let mut g = Generator::new(0);
/// // numpy.random.RandomState(0) and torch.manual_seed(0) start with this output.
/// assert_eq!(g.next_u32(), 2_357_136_044);
/// let saved = g.state();
/// let a = g.uniform::<f32>(&[3], -1.0, 1.0);
/// g.set_state(&saved).unwrap();
/// assert_eq!(g.uniform::<f32>(&[3], -1.0, 1.0), a);
/// ```
#[derive(Clone)]
pub struct Generator {
    seed: u64,
    mt: Box<[u32; N]>,
    index: usize,
    next_double_normal: Option<f64>,
    next_float_normal: Option<f32>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("seed", &self.seed)
            .field("index", &self.index)
            .finish()
    }
}

/// A snapshot of a [`Generator`]: everything needed to continue its stream exactly.
///
/// A plain struct (no serialization format): checkpoint code stores its parts.
/// Invariant: `mt` has 624 words and `index <= 624`.
///
/// `index` is the position of the next word of `mt` to temper; 624 means the state must
/// be regenerated ("twisted") before the next output. PyTorch's `mt19937` keeps the same
/// position as `next = index` and `left = 625 - index`.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorState {
    seed: u64,
    mt: Vec<u32>,
    index: usize,
    next_double_normal: Option<f64>,
    next_float_normal: Option<f32>,
}

impl GeneratorState {
    /// Builds a state from its parts; errs unless `mt` has 624 words and `index <= 624`.
    pub fn new(
        seed: u64,
        mt: Vec<u32>,
        index: usize,
        next_double_normal: Option<f64>,
        next_float_normal: Option<f32>,
    ) -> Result<Self, TensorError> {
        if mt.len() != N {
            return Err(TensorError::InvalidArgument {
                op: "GeneratorState::new",
                reason: format!("expected {N} state words, found {}", mt.len()),
            });
        }
        if index > N {
            return Err(TensorError::InvalidArgument {
                op: "GeneratorState::new",
                reason: format!("expected a position of at most {N}, found {index}"),
            });
        }
        Ok(Self {
            seed,
            mt,
            index,
            next_double_normal,
            next_float_normal,
        })
    }

    /// The seed last given to `manual_seed` (PyTorch's `initial_seed()`).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The 624 words of MT19937 state.
    pub fn mt(&self) -> &[u32] {
        &self.mt
    }

    /// The position of the next word (624: twist first).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The cached second half of an f64 Box–Muller pair, if any.
    pub fn next_double_normal(&self) -> Option<f64> {
        self.next_double_normal
    }

    /// The cached second half of an f32 Box–Muller pair, if any.
    pub fn next_float_normal(&self) -> Option<f32> {
        self.next_float_normal
    }
}

impl Generator {
    /// A generator seeded like `torch.manual_seed(seed)`.
    pub fn new(seed: u64) -> Self {
        let mut g = Self {
            seed,
            mt: Box::new([0; N]),
            index: N,
            next_double_normal: None,
            next_float_normal: None,
        };
        g.manual_seed(seed);
        g
    }

    /// Reseeds (only the low 32 bits of `seed` reach MT19937, as in PyTorch) and clears
    /// the cached normal samples.
    pub fn manual_seed(&mut self, seed: u64) {
        self.seed = seed;
        self.mt[0] = seed as u32;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
        self.next_double_normal = None;
        self.next_float_normal = None;
    }

    /// The seed last set.
    pub fn initial_seed(&self) -> u64 {
        self.seed
    }

    fn twist(&mut self) {
        let mt = &mut self.mt;
        for i in 0..N {
            let y = (mt[i] & UPPER_MASK) | (mt[(i + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            mt[i] = mt[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The next 32-bit output (PyTorch's `random()`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// The next 64-bit output: two 32-bit outputs, the first in the high half
    /// (PyTorch's `random64()`).
    pub fn next_u64(&mut self) -> u64 {
        let hi = self.next_u32() as u64;
        let lo = self.next_u32() as u64;
        (hi << 32) | lo
    }

    /// One f32 uniform sample on `[lo, hi)` as PyTorch draws it.
    fn uniform_f32(&mut self, lo: f32, hi: f32) -> f32 {
        let x = (self.next_u32() & 0x00ff_ffff) as f32 * (1.0 / 16_777_216.0);
        x.mul_add(hi - lo, lo)
    }

    /// One f64 uniform sample on `[lo, hi)` as PyTorch draws it.
    fn uniform_f64(&mut self, lo: f64, hi: f64) -> f64 {
        let x = (self.next_u64() & ((1u64 << 53) - 1)) as f64 * (1.0 / 9_007_199_254_740_992.0);
        x.mul_add(hi - lo, lo)
    }

    /// Fills `a` in row-major order with uniform samples on `[low, high)`, like
    /// `tensor.uniform_(low, high)`. The bounds are rounded to `T` first.
    pub fn uniform_<T: Float>(&mut self, a: &mut ArrayD<T>, low: f64, high: f64) {
        if T::DTYPE == DType::F32 {
            let (lo, hi) = (low as f32, high as f32);
            for v in a.iter_mut() {
                *v = <T as Float>::from_f64(self.uniform_f32(lo, hi) as f64);
            }
        } else {
            for v in a.iter_mut() {
                *v = <T as Float>::from_f64(self.uniform_f64(low, high));
            }
        }
    }

    /// A new array of uniform samples on `[low, high)` (`torch.empty(shape).uniform_`).
    pub fn uniform<T: Float>(&mut self, shape: &[usize], low: f64, high: f64) -> ArrayD<T> {
        let mut a = ArrayD::zeros(shape.to_vec());
        self.uniform_(&mut a, low, high);
        a
    }

    /// `n` integers uniform on `[low, high)` (`torch.randint(low, high, (n,))`).
    /// Errs when the range is empty.
    pub fn randint(&mut self, low: i64, high: i64, n: usize) -> Result<Vec<i64>, TensorError> {
        if low >= high {
            return Err(TensorError::InvalidArgument {
                op: "randint",
                reason: format!("expected low < high, found low={low}, high={high}"),
            });
        }
        let range = high.wrapping_sub(low) as u64;
        Ok((0..n)
            .map(|_| {
                let u = if range >= 1 << 32 {
                    self.next_u64()
                } else {
                    self.next_u32() as u64
                };
                low.wrapping_add((u % range) as i64)
            })
            .collect())
    }

    /// Fills `a` in row-major order with normal samples (`tensor.normal_(mean, std)`).
    pub fn normal_<T: Float>(&mut self, a: &mut ArrayD<T>, mean: f64, std: f64) {
        let size = a.len();
        if size >= 16 {
            let mut buf = vec![0.0f64; size];
            if T::DTYPE == DType::F32 {
                self.normal_fill(
                    &mut buf,
                    mean,
                    std,
                    |g| g.uniform_f32(0.0, 1.0) as f64,
                    true,
                );
            } else {
                self.normal_fill(&mut buf, mean, std, |g| g.uniform_f64(0.0, 1.0), false);
            }
            for (v, &b) in a.iter_mut().zip(&buf) {
                *v = <T as Float>::from_f64(b);
            }
        } else {
            for v in a.iter_mut() {
                *v = <T as Float>::from_f64(self.normal_scalar(mean, std));
            }
        }
    }

    /// A new array of normal samples (`torch.randn(shape) * std + mean`).
    pub fn normal<T: Float>(&mut self, shape: &[usize], mean: f64, std: f64) -> ArrayD<T> {
        let mut a = ArrayD::zeros(shape.to_vec());
        self.normal_(&mut a, mean, std);
        a
    }

    /// PyTorch's `normal_fill`: uniforms for everything, then Box–Muller per block of
    /// 16 (`u1 = 1 - data[j]`, `u2 = data[j + 8]`). `single` computes in f32.
    fn normal_fill(
        &mut self,
        data: &mut [f64],
        mean: f64,
        std: f64,
        mut uniform: impl FnMut(&mut Self) -> f64,
        single: bool,
    ) {
        for v in data.iter_mut() {
            *v = uniform(self);
        }
        let block = |d: &mut [f64]| {
            for j in 0..8 {
                if single {
                    let (mean, std) = (mean as f32, std as f32);
                    let u1 = 1.0 - d[j] as f32;
                    let u2 = d[j + 8] as f32;
                    let radius = (-2.0 * u1.ln()).sqrt();
                    let theta = 2.0f32 * std::f32::consts::PI * u2;
                    d[j] = (radius * theta.cos() * std + mean) as f64;
                    d[j + 8] = (radius * theta.sin() * std + mean) as f64;
                } else {
                    let u1 = 1.0 - d[j];
                    let u2 = d[j + 8];
                    let radius = (-2.0 * u1.ln()).sqrt();
                    let theta = 2.0 * std::f64::consts::PI * u2;
                    d[j] = radius * theta.cos() * std + mean;
                    d[j + 8] = radius * theta.sin() * std + mean;
                }
            }
        };
        let size = data.len();
        let mut i = 0;
        while i + 16 <= size {
            block(&mut data[i..i + 16]);
            i += 16;
        }
        if !size.is_multiple_of(16) {
            let tail = &mut data[size - 16..];
            for v in tail.iter_mut() {
                *v = uniform(self);
            }
            block(tail);
        }
    }

    /// PyTorch's `normal_distribution<double>`: Box–Muller from two f64 uniforms, the
    /// sine half cached for the next call.
    fn normal_scalar(&mut self, mean: f64, std: f64) -> f64 {
        if let Some(z) = self.next_double_normal.take() {
            return z * std + mean;
        }
        let u1 = self.uniform_f64(0.0, 1.0);
        let u2 = self.uniform_f64(0.0, 1.0);
        let r = (-2.0 * (-u2).ln_1p()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u1;
        self.next_double_normal = Some(r * theta.sin());
        r * theta.cos() * std + mean
    }

    /// A snapshot of the generator.
    pub fn state(&self) -> GeneratorState {
        GeneratorState {
            seed: self.seed,
            mt: self.mt.to_vec(),
            index: self.index,
            next_double_normal: self.next_double_normal,
            next_float_normal: self.next_float_normal,
        }
    }

    /// Restores a snapshot taken with [`Generator::state`].
    pub fn set_state(&mut self, state: &GeneratorState) -> Result<(), TensorError> {
        let mt: [u32; N] =
            state
                .mt
                .as_slice()
                .try_into()
                .map_err(|_| TensorError::InvalidArgument {
                    op: "Generator::set_state",
                    reason: format!("expected {N} state words, found {}", state.mt.len()),
                })?;
        if state.index > N {
            return Err(TensorError::InvalidArgument {
                op: "Generator::set_state",
                reason: format!("expected a position of at most {N}, found {}", state.index),
            });
        }
        *self.mt = mt;
        self.seed = state.seed;
        self.index = state.index;
        self.next_double_normal = state.next_double_normal;
        self.next_float_normal = state.next_float_normal;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_reference_outputs() {
        // The reference implementation's init_genrand(5489) stream starts 3499211612,
        // 581869302, 3890346734; seed 0 (numpy RandomState(0)) starts 2357136044.
        let mut g = Generator::new(5489);
        assert_eq!(
            [g.next_u32(), g.next_u32(), g.next_u32()],
            [3_499_211_612, 581_869_302, 3_890_346_734]
        );
        let mut g = Generator::new(0);
        assert_eq!(g.next_u32(), 2_357_136_044);
    }

    #[test]
    fn seed_uses_low_32_bits() {
        let mut a = Generator::new((1 << 32) + 5);
        let mut b = Generator::new(5);
        assert_eq!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn state_round_trip_continues_the_stream() {
        let mut g = Generator::new(42);
        for _ in 0..700 {
            g.next_u32();
        }
        let _ = g.normal::<f64>(&[3], 0.0, 1.0);
        let s = g.state();
        let a: Vec<u32> = (0..1000).map(|_| g.next_u32()).collect();
        let mut h = Generator::new(1);
        h.set_state(&s).unwrap();
        let b: Vec<u32> = (0..1000).map(|_| h.next_u32()).collect();
        assert_eq!(a, b);
        let bad = GeneratorState::new(0, vec![0; 3], 0, None, None);
        assert!(matches!(bad, Err(TensorError::InvalidArgument { .. })));
    }

    #[test]
    fn randint_rejects_empty_range() {
        let mut g = Generator::new(0);
        assert!(matches!(
            g.randint(3, 3, 1),
            Err(TensorError::InvalidArgument { .. })
        ));
    }
}
