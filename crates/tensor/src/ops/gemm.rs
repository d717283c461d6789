//! Small dense matrix products on row-major slices.
//!
//! For the small layers typical of tempo's models (a 2→20→20→4 network), packing
//! matrices for a blocked GEMM costs more than the arithmetic, so products up to
//! [`SMALL`] multiply-adds use these plain loops over contiguous rows (which the
//! compiler vectorises); larger ones go to ndarray's blocked `dot`.

use crate::Float;

/// The largest `m * k * n` computed with the plain loops.
pub(crate) const SMALL: usize = 1 << 16;

/// `Σ a_i b_i` with eight independent accumulators (vectorisable).
#[inline]
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += *x * *y;
    }
    s
}

/// `y += alpha * x`.
#[inline]
fn axpy<T: Float>(alpha: T, x: &[T], y: &mut [T]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// `C[m, n] = A[m, k] · B[k, n]`.
pub(crate) fn mm_nn<T: Float>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut c = vec![T::zero(); m * n];
    if n == 0 {
        return c;
    }
    for (ar, cr) in a.chunks_exact(k.max(1)).zip(c.chunks_exact_mut(n)) {
        for (&s, br) in ar.iter().zip(b.chunks_exact(n)) {
            axpy(s, br, cr);
        }
    }
    c
}

/// `C[m, n] = A[m, k] · B[n, k]ᵀ`.
pub(crate) fn mm_nt<T: Float>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut c = Vec::with_capacity(m * n);
    if k == 0 {
        c.resize(m * n, T::zero());
        return c;
    }
    for ar in a.chunks_exact(k) {
        for br in b.chunks_exact(k) {
            c.push(dot(ar, br));
        }
    }
    c
}

/// `C[k, n] = A[m, k]ᵀ · B[m, n]`.
pub(crate) fn mm_tn<T: Float>(a: &[T], b: &[T], m: usize, k: usize, n: usize) -> Vec<T> {
    let mut c = vec![T::zero(); k * n];
    if n == 0 || k == 0 {
        return c;
    }
    for (ar, br) in a.chunks_exact(k).zip(b.chunks_exact(n)).take(m) {
        for (&s, cr) in ar.iter().zip(c.chunks_exact_mut(n)) {
            axpy(s, br, cr);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn arr(r: usize, c: usize, seed: usize) -> Array2<f64> {
        Array2::from_shape_fn((r, c), |(i, j)| {
            ((i * 31 + j * 17 + seed) % 13) as f64 - 6.0
        })
    }

    #[test]
    fn products_match_ndarray() {
        for &(m, k, n) in &[(1, 1, 1), (3, 9, 5), (2, 17, 20), (4, 0, 3), (1, 20, 4)] {
            let a = arr(m, k, 1);
            let b = arr(k, n, 2);
            let bt = b.t().as_standard_layout().into_owned();
            let g = arr(m, n, 3);
            let want = a.dot(&b);
            let s = |x: &Array2<f64>| x.as_slice().unwrap().to_vec();
            assert_eq!(mm_nn(&s(&a), &s(&b), m, k, n), s(&want));
            assert_eq!(mm_nt(&s(&a), &s(&bt), m, k, n), s(&want));
            assert_eq!(mm_tn(&s(&a), &s(&g), m, k, n), s(&a.t().dot(&g)));
        }
    }
}
