//! Muon: momentum orthogonalized by a Newton-Schulz iteration in bfloat16.

use tempo_tensor::Float;

use crate::bf16::{gemm, round, round_f64, sum_of_squares, Gemm};
use crate::hyper::{hyperparameters, Hyperparameters};
use crate::kernels::{f, fma, wide, Lerp};
use crate::param_group::GroupReader;
use crate::state::{ParamState, StateReader, StateWriter};
use crate::validate::{adjust_lr_fn, non_negative, require};
use crate::whole::{whole_tensor_optimizer, WholeAlgorithm};
use crate::OptimError;

/// The learning-rate adjustments `adjust_lr_fn` names.
pub const MUON_ADJUST_LR_FNS: &[&str] = &["original", "match_rms_adamw", "spectral_unclamped"];

hyperparameters! {
    /// Muon's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct MuonConfig as "Muon" {
        lr = 1e-3,
        /// Decoupled weight decay (0.1).
        weight_decay = 0.1,
        momentum = 0.95,
        nesterov = true,
        /// The Newton-Schulz polynomial's coefficients `(a, b, c)` ((3.4445, -4.775, 2.0315)).
        ns_coefficients: (f64, f64, f64) = (3.4445, -4.7750, 2.0315),
        /// The smallest norm the iteration divides by (1e-7).
        eps = 1e-7,
        /// Newton-Schulz iterations (5; fewer than 100).
        ns_steps: i64 = 5,
        /// How the learning rate is scaled by the matrix's shape `A x B`: `None` or
        /// `"original"` (`sqrt(max(1, A/B))`), `"match_rms_adamw"` (`0.2 * sqrt(max(A, B))`),
        /// `"spectral_unclamped"` (`sqrt(A/B)`).
        adjust_lr_fn: Option<String> = None,
    }
    check {
        lr: non_negative,
        momentum: non_negative,
        weight_decay: non_negative,
        adjust_lr_fn: adjust_lr_fn,
    }
}

whole_tensor_optimizer!(
    /// Muon (Jordan et al., "Muon: An optimizer for hidden layers in neural networks",
    /// 2024; Liu et al., "Muon is Scalable for LLM Training", 2025), PyTorch's
    /// `torch.optim.Muon`: SGD momentum (Nesterov by default) whose update is
    /// orthogonalized by `ns_steps` quintic Newton-Schulz iterations, then scaled by the
    /// matrix's shape (`adjust_lr_fn`), with decoupled weight decay.
    ///
    /// Only 2-D parameters (anything else is an `Err` at construction, as in PyTorch).
    /// The iteration runs in bfloat16 where PyTorch runs it: the update is rounded to
    /// bfloat16, divided by its (bfloat16) norm, and every matrix product's result is
    /// rounded once to bfloat16 (`addmm`'s `beta * C + alpha * A @ B` included); the
    /// products accumulate in f32 with fused multiply-adds, as PyTorch's CPU bfloat16
    /// GEMM does, so results agree with PyTorch's to within the order of those sums.
    ///
    /// State: `momentum_buffer` (no step count, as in PyTorch). Group values of
    /// `adjust_lr_fn` other than the known names scale by 1, as in PyTorch.
    Muon,
    MuonConfig
);

/// How a group scales its learning rate.
#[derive(Debug, Clone, Copy, PartialEq)]
enum AdjustLR {
    Original,
    MatchRMSAdamW,
    SpectralUnclamped,
    /// A name PyTorch does not know, set on a group: scale 1.
    Unit,
}

/// One parameter's state.
#[derive(Debug, Clone)]
pub(crate) struct MuonState<T> {
    momentum_buffer: Vec<T>,
}

/// The Newton-Schulz iteration's buffers, kept between steps.
#[derive(Debug, Default)]
pub(crate) struct MuonScratch {
    x: Vec<f32>,
    next: Vec<f32>,
    gram: Vec<f32>,
    poly: Vec<f32>,
    packed: Vec<f32>,
}

impl AdjustLR {
    /// A group's `adjust_lr_fn`.
    fn of(name: Option<&str>) -> Self {
        match name {
            None | Some("original") => AdjustLR::Original,
            Some("match_rms_adamw") => AdjustLR::MatchRMSAdamW,
            Some("spectral_unclamped") => AdjustLR::SpectralUnclamped,
            Some(_) => AdjustLR::Unit,
        }
    }
}

/// `lr` scaled for a matrix of `rows x cols`, as PyTorch's `_adjust_lr`.
fn adjusted_lr(lr: f64, adjust: AdjustLR, rows: usize, cols: usize) -> f64 {
    let (a, b) = (rows as f64, cols as f64);
    let ratio = match adjust {
        AdjustLR::Original => {
            let r = a / b;
            if r > 1.0 {
                r.sqrt()
            } else {
                1.0
            }
        }
        AdjustLR::MatchRMSAdamW => 0.2 * a.max(b).sqrt(),
        AdjustLR::SpectralUnclamped => (a / b).sqrt(),
        AdjustLR::Unit => 1.0,
    };
    lr * ratio
}

impl MuonScratch {
    /// PyTorch's `_zeropower_via_newtonschulz` on the bfloat16 matrix `x` (`m x n`,
    /// `m <= n`, already transposed if the update is tall): leaves the result in `self.x`.
    fn newton_schulz(&mut self, m: usize, n: usize, sum_sq: f32, h: &MuonConfig) {
        let (a, b, c) = h.ns_coefficients;
        // The norm: the f32 sum of squares (taken by the caller, in the memory order of
        // the untransposed copy), its f32 square root rounded to bfloat16, clamped at
        // the bfloat16 eps; the division is in f32, rounded to bfloat16.
        let norm = round(sum_sq.sqrt());
        let eps = h.eps as f32;
        let eps = round(eps);
        let norm = if norm < eps { eps } else { norm };
        for v in &mut self.x {
            *v = round(*v / norm);
        }
        self.gram.resize(m * m, 0.0);
        self.poly.resize(m * m, 0.0);
        self.next.resize(m * n, 0.0);
        for _ in 0..h.ns_steps.max(0) {
            // gram = X @ X^T
            let g = Gemm {
                m,
                n: m,
                k: n,
                a: &self.x,
                b: &self.x,
                b_transposed: true,
                alpha: 1.0,
                c: None,
            };
            gemm(&g, &mut self.gram, &mut self.packed);
            // poly = addmm(gram, gram, gram, beta=b, alpha=c)
            let g = Gemm {
                m,
                n: m,
                k: m,
                a: &self.gram,
                b: &self.gram,
                b_transposed: false,
                alpha: c as f32,
                c: Some((b as f32, &self.gram)),
            };
            gemm(&g, &mut self.poly, &mut self.packed);
            // X = addmm(X, poly, X, beta=a)
            let g = Gemm {
                m,
                n,
                k: m,
                a: &self.poly,
                b: &self.x,
                b_transposed: false,
                alpha: 1.0,
                c: Some((a as f32, &self.x)),
            };
            gemm(&g, &mut self.next, &mut self.packed);
            std::mem::swap(&mut self.x, &mut self.next);
        }
    }
}

impl<T: Float> WholeAlgorithm<T> for MuonConfig {
    type State = MuonState<T>;
    type Scratch = (Vec<T>, MuonScratch);

    fn check_param(&self, shape: &[usize], param: usize) -> Result<(), OptimError> {
        if shape.len() == 2 {
            Ok(())
        } else {
            Err(OptimError::UnsupportedParamShape {
                optimizer: "Muon",
                param,
                shape: shape.to_vec(),
                expected: "2D",
            })
        }
    }

    /// PyTorch checks `ns_steps` at each step.
    fn hyper(&self, g: &GroupReader<'_>) -> Result<MuonConfig, OptimError> {
        let h = <MuonConfig as Hyperparameters>::from_group(g)?;
        if h.ns_steps >= 100 {
            require(
                false,
                "Muon",
                &format!("ns_steps (param group {})", g.group),
                h.ns_steps.to_string(),
                "fewer than 100 (Number of steps must be less than 100 for computational efficiency)",
            )?;
        }
        Ok(h)
    }

    fn init_state(&self, shape: &[usize]) -> MuonState<T> {
        MuonState {
            momentum_buffer: vec![T::zero(); shape.iter().product()],
        }
    }

    fn check_state(
        &self,
        st: &MuonState<T>,
        shape: &[usize],
        param: usize,
    ) -> Result<(), OptimError> {
        let n: usize = shape.iter().product();
        if st.momentum_buffer.len() == n {
            Ok(())
        } else {
            Err(OptimError::MissingState {
                param,
                key: "momentum_buffer".into(),
            })
        }
    }

    fn update(
        &self,
        h: &Self,
        st: &mut MuonState<T>,
        shape: &[usize],
        p: &mut [T],
        g: &[T],
        (update, ns): &mut (Vec<T>, MuonScratch),
    ) {
        let (rows, cols) = match shape {
            [r, c] => (*r, *c),
            _ => return, // `check_param` ruled this out at construction.
        };
        // buf.lerp_(grad, 1 - momentum); update = grad.lerp(buf, momentum) or buf
        let to_grad = Lerp::<T>::new(1.0 - h.momentum);
        for (b, &gi) in st.momentum_buffer.iter_mut().zip(g) {
            *b = to_grad.apply(*b, gi);
        }
        update.clear();
        if h.nesterov {
            let to_buf = Lerp::<T>::new(h.momentum);
            update.extend(
                g.iter()
                    .zip(&st.momentum_buffer)
                    .map(|(&gi, &b)| to_buf.apply(gi, b)),
            );
        } else {
            update.extend_from_slice(&st.momentum_buffer);
        }
        // The bfloat16 copy, transposed if tall.
        let tall = rows > cols;
        let (m, n) = if tall { (cols, rows) } else { (rows, cols) };
        ns.x.clear();
        ns.x.resize(m * n, 0.0);
        for i in 0..rows {
            for j in 0..cols {
                let v = round_f64(wide(update[i * cols + j]));
                if tall {
                    ns.x[j * rows + i] = v;
                } else {
                    ns.x[i * cols + j] = v;
                }
            }
        }
        let sum_sq = if tall {
            sum_of_squares((0..m * n).map(|k| ns.x[(k % cols) * rows + k / cols]))
        } else {
            sum_of_squares(ns.x.iter().copied())
        };
        ns.newton_schulz(m, n, sum_sq, h);
        let lr = adjusted_lr(h.lr, AdjustLR::of(h.adjust_lr_fn.as_deref()), rows, cols);
        let decay: T = f(1.0 - h.lr * h.weight_decay);
        let step: T = f(-lr);
        for i in 0..rows {
            for j in 0..cols {
                let o = if tall {
                    ns.x[j * rows + i]
                } else {
                    ns.x[i * cols + j]
                };
                let x = &mut p[i * cols + j];
                *x = fma(step, f(f64::from(o)), *x * decay);
            }
        }
    }

    fn save_state(&self, st: &MuonState<T>, shape: &[usize]) -> ParamState {
        StateWriter::new(shape)
            .tensor("momentum_buffer", &st.momentum_buffer)
            .finish()
    }

    fn load_state(&self, r: &StateReader<'_>) -> Result<MuonState<T>, OptimError> {
        Ok(MuonState {
            momentum_buffer: r.tensor("momentum_buffer")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_adjustments_are_pytorchs() {
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-15 * b.abs();
        assert!(close(
            adjusted_lr(0.02, AdjustLR::Original, 64, 32),
            0.02 * 2f64.sqrt()
        ));
        assert!(close(adjusted_lr(0.02, AdjustLR::Original, 32, 64), 0.02));
        assert!(close(
            adjusted_lr(0.02, AdjustLR::MatchRMSAdamW, 64, 64),
            0.02 * 0.2 * 8.0
        ));
        assert!(close(
            adjusted_lr(0.02, AdjustLR::SpectralUnclamped, 32, 64),
            0.02 * 0.5f64.sqrt()
        ));
        assert!(close(adjusted_lr(0.02, AdjustLR::Unit, 32, 64), 0.02));
    }

    #[test]
    fn newton_schulz_orthogonalizes() {
        // Five default iterations bring every singular value of a well-conditioned
        // matrix into roughly (0.5, 1.5): X X^T is near the identity.
        let (m, n) = (4, 6);
        let mut s = MuonScratch {
            x: (0..m * n)
                .map(|i| {
                    let diagonal = if i % (n + 1) == 0 { 3.0 } else { 0.0 };
                    round(((i * 7 % 11) as f32 - 5.0) * 0.3 + diagonal)
                })
                .collect(),
            ..MuonScratch::default()
        };
        let h = MuonConfig::default();
        let sq = sum_of_squares(s.x.iter().copied());
        s.newton_schulz(m, n, sq, &h);
        for i in 0..m {
            let d: f32 = (0..n).map(|k| s.x[i * n + k] * s.x[i * n + k]).sum();
            assert!((0.2..2.5).contains(&d), "row {i}: squared norm {d}");
        }
    }
}
