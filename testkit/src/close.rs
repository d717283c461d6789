//! Tolerance comparison of floats, as the conformance cases state it.

use serde::Deserialize;

/// `|got - want| <= atol + rtol * |want|`, the comparison of the conformance cases.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Tolerance {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
}

/// Whether `got` matches `want` within `tol`. NaN matches only NaN; infinities match
/// only themselves.
pub fn close(got: f64, want: f64, tol: Tolerance) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got.to_bits() == want.to_bits();
    }
    (got - want).abs() <= tol.atol + tol.rtol * want.abs()
}

/// The first element where two sequences disagree.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// The element index (`usize::MAX` when the lengths differ).
    pub index: usize,
    /// What tempo computed (the length, when the lengths differ).
    pub got: f64,
    /// What was expected (the length, when the lengths differ).
    pub want: f64,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.index == usize::MAX {
            write!(f, "length {} instead of {}", self.got, self.want)
        } else {
            write!(
                f,
                "element {}: got {:e}, want {:e}",
                self.index, self.got, self.want
            )
        }
    }
}

/// The first mismatch between `got` and `want`, or `None` if all match within `tol`.
pub fn first_mismatch(got: &[f64], want: &[f64], tol: Tolerance) -> Option<Mismatch> {
    if got.len() != want.len() {
        return Some(Mismatch {
            index: usize::MAX,
            got: got.len() as f64,
            want: want.len() as f64,
        });
    }
    got.iter()
        .zip(want)
        .position(|(&g, &w)| !close(g, w, tol))
        .map(|index| Mismatch {
            index,
            got: got[index],
            want: want[index],
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance {
        rtol: 1e-5,
        atol: 1e-6,
    };

    #[test]
    fn close_uses_atol_plus_rtol() {
        assert!(close(1.0 + 1e-5, 1.0, TOL));
        assert!(!close(1.0 + 2e-5, 1.0, TOL));
        assert!(close(5e-7, 0.0, TOL));
        assert!(!close(f64::NAN, 0.0, TOL));
        assert!(close(f64::NAN, f64::NAN, TOL));
        assert!(!close(f64::INFINITY, f64::NEG_INFINITY, TOL));
    }

    #[test]
    fn first_mismatch_reports_index_and_lengths() {
        assert_eq!(first_mismatch(&[1.0, 2.0], &[1.0, 2.0], TOL), None);
        let m = first_mismatch(&[1.0, 2.5], &[1.0, 2.0], TOL).map(|m| m.index);
        assert_eq!(m, Some(1));
        let m = first_mismatch(&[1.0], &[1.0, 2.0], TOL).map(|m| m.index);
        assert_eq!(m, Some(usize::MAX));
    }
}
