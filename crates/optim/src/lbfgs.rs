//! L-BFGS with an optional strong-Wolfe line search.

use std::marker::PhantomData;

use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};
use tempo_tensor::{Float, Tensor};

use crate::hyper::{hyperparameters, Hyperparameters};
use crate::kernels::{f, fma, wide};
use crate::param_group::{GroupReader, Groups};
use crate::state::{tensor_to_vec, ParamState, StateValue};
use crate::store::{LockScope, WithSlots};
use crate::validate::{line_search_fn, non_negative};
use crate::{OptimError, Optimizer, OptimizerStateDict, Param, ParamGroup};

hyperparameters! {
    /// LBFGS's hyperparameters, by PyTorch's names; `Default` is PyTorch's defaults.
    pub struct LBFGSConfig as "LBFGS" {
        /// Step length (1).
        lr = 1,
        /// Iterations per `step` (20).
        max_iter: i64 = 20,
        /// Closure evaluations per `step` (`None`: `max_iter * 5 / 4`).
        max_eval: Option<i64> = None,
        /// Stop when the largest gradient element is at most this (1e-7).
        tolerance_grad: f64 = 1e-7,
        /// Stop when the step or the loss changes by less than this (1e-9).
        tolerance_change: f64 = 1e-9,
        /// Number of curvature pairs kept (100).
        history_size: i64 = 100,
        /// `None` (fixed step `lr`) or `"strong_wolfe"`.
        line_search_fn: Option<String> = None,
        maximize = false,
    }
    check { lr: non_negative, line_search_fn: line_search_fn }
    defaults resolve_max_eval;
}

/// PyTorch's constructor stores `max_eval` resolved (`max_iter * 5 // 4` for `None`).
fn resolve_max_eval(c: &LBFGSConfig, d: &mut Dict) {
    d.insert("max_eval", Value::Int(c.max_eval_or_default()));
}

impl LBFGSConfig {
    /// `max_eval`, as PyTorch's constructor resolves its `None`.
    fn max_eval_or_default(&self) -> i64 {
        self.max_eval.unwrap_or(self.max_iter * 5 / 4)
    }
}

const NAME: &str = "LBFGS";

/// L-BFGS (Nocedal, "Updating Quasi-Newton Matrices with Limited Storage", Math. Comp.
/// 1980; Liu & Nocedal 1989), with the strong-Wolfe line search of Nocedal & Wright,
/// "Numerical Optimization", alg. 3.5/3.6: PyTorch's `torch.optim.LBFGS`.
///
/// It needs a closure that recomputes the loss and the gradients: use
/// [`Optimizer::step_with_closure`] (plain `step` is an error). A single param group
/// only. The state is global and, as in PyTorch, saved under parameter id 0 with
/// PyTorch's names (`func_evals`, `n_iter`, `al`, `d`, `t`, `old_dirs`, `old_stps`,
/// `ro`, `H_diag`, `prev_flat_grad`, `prev_loss`). Scalars that are tensors in PyTorch
/// are rounded to the parameters' type where PyTorch rounds them; dot products are
/// summed in two lanes, as PyTorch's BLAS sums them (inferred from its traces, which
/// tempo's f64 runs then match to the last bits).
#[derive(Debug)]
pub struct LBFGS<T: Float, P: Param<T> = Tensor<T>> {
    config: LBFGSConfig,
    defaults: Dict,
    groups: Groups<T, P>,
    state: Option<LBFGSState<T>>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum HDiag<T> {
    /// PyTorch's int `1`.
    One,
    Tensor(T),
}

#[derive(Debug, Clone, Default)]
struct LBFGSState<T> {
    /// Keys in insertion order (PyTorch's dict order).
    keys: Vec<&'static str>,
    func_evals: i64,
    n_iter: i64,
    al: Option<Vec<Option<T>>>,
    d: Option<Vec<T>>,
    t: Option<f64>,
    old_dirs: Vec<Vec<T>>,
    old_stps: Vec<Vec<T>>,
    ro: Vec<T>,
    h_diag: Option<HDiag<T>>,
    prev_flat_grad: Option<Vec<T>>,
    prev_loss: Option<f64>,
}

impl<T> LBFGSState<T> {
    fn touch(&mut self, key: &'static str) {
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }
}

/// A scalar as PyTorch's LBFGS holds it: a Python float, or a 0-d tensor of the
/// parameters' type. Arithmetic follows PyTorch's promotion: anything involving a
/// tensor is computed in `T` (the Python operand rounded to `T` first).
#[derive(Debug, Clone, Copy)]
struct Num<T> {
    v: f64,
    tensor: bool,
    _t: PhantomData<T>,
}

impl<T: Float> Num<T> {
    fn py(v: f64) -> Self {
        Self {
            v,
            tensor: false,
            _t: PhantomData,
        }
    }
    fn ten(v: T) -> Self {
        Self {
            v: wide(v),
            tensor: true,
            _t: PhantomData,
        }
    }
    fn round(v: f64) -> f64 {
        wide(f::<T>(v))
    }
    fn bin(self, o: Self, op: impl Fn(f64, f64) -> f64) -> Self {
        if self.tensor || o.tensor {
            let a = if self.tensor {
                self.v
            } else {
                Self::round(self.v)
            };
            let b = if o.tensor { o.v } else { Self::round(o.v) };
            Self {
                v: Self::round(op(a, b)),
                tensor: true,
                _t: PhantomData,
            }
        } else {
            Self::py(op(self.v, o.v))
        }
    }
    fn add(self, o: Self) -> Self {
        self.bin(o, |a, b| a + b)
    }
    fn sub(self, o: Self) -> Self {
        self.bin(o, |a, b| a - b)
    }
    fn mul(self, o: Self) -> Self {
        self.bin(o, |a, b| a * b)
    }
    fn div(self, o: Self) -> Self {
        self.bin(o, |a, b| a / b)
    }
    fn unary(self, op: impl Fn(f64) -> f64) -> Self {
        if self.tensor {
            Self {
                v: Self::round(op(self.v)),
                tensor: true,
                _t: PhantomData,
            }
        } else {
            Self::py(op(self.v))
        }
    }
    fn abs(self) -> Self {
        self.unary(f64::abs)
    }
    /// The comparison operands: rounded to `T` when either is a tensor.
    fn cmp_pair(self, o: Self) -> (f64, f64) {
        if self.tensor || o.tensor {
            let a = if self.tensor {
                self.v
            } else {
                Self::round(self.v)
            };
            let b = if o.tensor { o.v } else { Self::round(o.v) };
            (a, b)
        } else {
            (self.v, o.v)
        }
    }
    fn lt(self, o: Self) -> bool {
        let (a, b) = self.cmp_pair(o);
        a < b
    }
    fn le(self, o: Self) -> bool {
        let (a, b) = self.cmp_pair(o);
        a <= b
    }
    fn gt(self, o: Self) -> bool {
        o.lt(self)
    }
    fn ge(self, o: Self) -> bool {
        o.le(self)
    }
    /// Python's `min(a, b)`: `b` if `b < a`, else `a`.
    fn min(self, o: Self) -> Self {
        if o.lt(self) {
            o
        } else {
            self
        }
    }
    /// Python's `max(a, b)`: `b` if `b > a`, else `a`.
    fn max(self, o: Self) -> Self {
        if o.gt(self) {
            o
        } else {
            self
        }
    }
}

/// `a.dot(b)` as PyTorch's CPU BLAS `dot` sums it: two partial sums, of the products at
/// even and at odd indices (the two lanes of a vector of doubles), added at the end.
/// (Summed in index order instead, a 4-element Rosenbrock run drifts from PyTorch's by
/// 5e-15 after two calls, and a diverging run amplifies that drift far past 1e-10; with
/// the two lanes every f64 trace matches to the last bits.)
fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut lanes = [T::zero(); 2];
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        lanes[i % 2] += x * y;
    }
    lanes[0] + lanes[1]
}

fn abs_max<T: Float>(a: &[T]) -> T {
    a.iter().fold(T::zero(), |m, &x| {
        if x.abs() > m || x.is_nan() {
            x.abs()
        } else {
            m
        }
    })
}

/// `x.add_(y, alpha)`: `fma(F(alpha), y, x)`.
fn axpy<T: Float>(x: &mut [T], alpha: f64, y: &[T]) {
    let a = f::<T>(alpha);
    for (x, &y) in x.iter_mut().zip(y) {
        *x = fma(a, y, *x);
    }
}

impl<T: Float, P: Param<T>> LBFGS<T, P> {
    /// One group holding `params`. Validates `config`.
    pub fn new(params: Vec<P>, config: LBFGSConfig) -> Result<Self, OptimError> {
        Self::with_groups(vec![ParamGroup::new(params)], config)
    }

    /// The groups (exactly one is allowed, as in PyTorch).
    pub fn with_groups(
        groups: Vec<ParamGroup<T, P>>,
        config: LBFGSConfig,
    ) -> Result<Self, OptimError> {
        Self::build(groups, config, None)
    }

    pub(crate) fn from_spec(
        groups: Vec<ParamGroup<T, P>>,
        config: LBFGSConfig,
        kwargs: &Dict,
    ) -> Result<Self, OptimError> {
        Self::build(groups, config, Some(kwargs))
    }

    fn build(
        groups: Vec<ParamGroup<T, P>>,
        config: LBFGSConfig,
        overrides: Option<&Dict>,
    ) -> Result<Self, OptimError> {
        config.validate()?;
        if groups.len() != 1 {
            return Err(OptimError::SingleGroupOnly {
                optimizer: NAME,
                found: groups.len(),
            });
        }
        let (groups, defaults) = Groups::configured(groups, &config, overrides)?;
        Ok(Self {
            config,
            defaults,
            groups,
            state: None,
        })
    }

    /// The constructor's configuration.
    pub fn config(&self) -> &LBFGSConfig {
        &self.config
    }

    fn hyper(&self) -> Result<LBFGSConfig, OptimError> {
        let h = LBFGSConfig::from_group(&GroupReader {
            dict: &self.groups.options[0],
            group: 0,
        })?;
        line_search_fn(NAME, "line_search_fn", &h.line_search_fn)?;
        Ok(h)
    }

    fn params_vec(&self) -> Vec<P> {
        self.groups.flat.clone()
    }

    fn numel(&self) -> usize {
        self.groups.flat().map(P::numel).sum()
    }

    /// Calls `f` with every parameter locked, in id order (LBFGS is not a hot path: a
    /// fresh lock scratch per call).
    fn with_all(&self, f: &mut WithSlots<'_, T>) -> Result<(), OptimError> {
        P::lock(
            &self.groups.flat,
            LockScope::All,
            &mut P::Scratch::default(),
            f,
        )
    }

    fn gather_flat_grad(&self, maximize: bool) -> Result<Vec<T>, OptimError> {
        let mut out = Vec::with_capacity(self.numel());
        self.with_all(&mut |slots| {
            for s in slots.iter() {
                match s.grad {
                    Some(g) => out.extend(g.iter().map(|&x| if maximize { -x } else { x })),
                    None => out.extend(std::iter::repeat_n(T::zero(), s.data.len())),
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn add_grad(&self, t: f64, d: &[T]) -> Result<(), OptimError> {
        let mut off = 0;
        let a = f::<T>(t);
        self.with_all(&mut |slots| {
            for s in slots.iter_mut() {
                let n = s.data.len();
                let src = d.get(off..off + n).unwrap_or(&[]);
                for (x, &y) in s.data.iter_mut().zip(src) {
                    *x = fma(a, y, *x);
                }
                off += n;
            }
            Ok(())
        })
    }

    fn clone_param(&self) -> Result<Vec<Vec<T>>, OptimError> {
        let mut out = Vec::with_capacity(self.groups.num_params());
        self.with_all(&mut |slots| {
            out.extend(slots.iter().map(|s| s.data.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    fn set_param(&self, x: &[Vec<T>]) -> Result<(), OptimError> {
        let mut k = 0;
        self.with_all(&mut |slots| {
            for s in slots.iter_mut() {
                if let Some(v) = x.get(k) {
                    s.data.copy_from_slice(v);
                }
                k += 1;
            }
            Ok(())
        })
    }

    fn run(
        &mut self,
        closure: &mut dyn FnMut() -> Result<f64, OptimError>,
    ) -> Result<f64, OptimError> {
        let h = self.hyper()?;
        let sign = if h.maximize { -1.0 } else { 1.0 };
        let mut st = self.state.take().unwrap_or_default();
        st.touch("func_evals");
        st.touch("n_iter");
        let result = self.run_with(&h, sign, &mut st, closure);
        self.state = Some(st);
        result
    }

    fn run_with(
        &self,
        h: &LBFGSConfig,
        sign: f64,
        st: &mut LBFGSState<T>,
        closure: &mut dyn FnMut() -> Result<f64, OptimError>,
    ) -> Result<f64, OptimError> {
        let orig_loss = closure()?;
        let mut loss = sign * orig_loss;
        let mut current_evals = 1i64;
        st.func_evals += 1;
        let history_size = usize::try_from(h.history_size).unwrap_or(0);
        let max_eval = h.max_eval_or_default();
        let mut flat_grad = self.gather_flat_grad(h.maximize)?;
        let tol_grad = Num::<T>::py(h.tolerance_grad);
        let tol_change = Num::<T>::py(h.tolerance_change);
        let mut opt_cond = Num::<T>::ten(abs_max(&flat_grad)).le(tol_grad);
        if opt_cond {
            return Ok(orig_loss);
        }
        let mut d = st.d.take().unwrap_or_default();
        let mut t = Num::<T>::py(st.t.unwrap_or(h.lr));
        let mut h_diag = st.h_diag.unwrap_or(HDiag::One);
        let mut prev_flat_grad = st.prev_flat_grad.take();
        let mut prev_loss = st.prev_loss;
        let mut n_iter = 0i64;
        while n_iter < h.max_iter {
            n_iter += 1;
            st.n_iter += 1;
            if st.n_iter == 1 {
                d = flat_grad.iter().map(|&g| -g).collect();
                st.old_dirs.clear();
                st.old_stps.clear();
                st.ro.clear();
                h_diag = HDiag::One;
            } else {
                let prev = prev_flat_grad.as_deref().unwrap_or(&[]);
                let y: Vec<T> = flat_grad.iter().zip(prev).map(|(&a, &b)| a - b).collect();
                let tt = f::<T>(t.v);
                let s: Vec<T> = d.iter().map(|&x| x * tt).collect();
                let ys = dot(&y, &s);
                if Num::<T>::ten(ys).gt(Num::py(1e-10)) {
                    if st.old_dirs.len() == history_size && !st.old_dirs.is_empty() {
                        st.old_dirs.remove(0);
                        st.old_stps.remove(0);
                        st.ro.remove(0);
                    }
                    let yy = dot(&y, &y);
                    st.old_dirs.push(y);
                    st.old_stps.push(s);
                    st.ro.push(T::one() / ys);
                    h_diag = HDiag::Tensor(ys / yy);
                }
                let num_old = st.old_dirs.len();
                if st.al.is_none() {
                    st.al = Some(vec![None; history_size]);
                    st.touch("al");
                }
                let al = st.al.get_or_insert_with(Vec::new);
                if al.len() < num_old {
                    al.resize(num_old, None);
                }
                let mut q: Vec<T> = flat_grad.iter().map(|&g| -g).collect();
                for i in (0..num_old).rev() {
                    let a = dot(&st.old_stps[i], &q) * st.ro[i];
                    al[i] = Some(a);
                    axpy(&mut q, wide(-a), &st.old_dirs[i]);
                }
                let mut r: Vec<T> = match h_diag {
                    HDiag::One => q,
                    HDiag::Tensor(hd) => q.iter().map(|&x| x * hd).collect(),
                };
                for (((y, s), &ro), a) in st
                    .old_dirs
                    .iter()
                    .zip(&st.old_stps)
                    .zip(&st.ro)
                    .zip(al.iter())
                {
                    let be = dot(y, &r) * ro;
                    let a = a.unwrap_or_else(T::zero);
                    axpy(&mut r, wide(a - be), s);
                }
                d = r;
            }
            match &mut prev_flat_grad {
                Some(p) => p.clone_from(&flat_grad),
                None => prev_flat_grad = Some(flat_grad.clone()),
            }
            prev_loss = Some(loss);
            t = if st.n_iter == 1 {
                let sum = flat_grad.iter().fold(T::zero(), |a, &g| a + g.abs());
                Num::py(1.0)
                    .min(Num::py(1.0).div(Num::ten(sum)))
                    .mul(Num::py(h.lr))
            } else {
                Num::py(h.lr)
            };
            let gtd = Num::<T>::ten(dot(&flat_grad, &d));
            if gtd.gt(Num::py(-h.tolerance_change)) {
                break;
            }
            let mut ls_func_evals = 0i64;
            if h.line_search_fn.is_some() {
                let x_init = self.clone_param()?;
                let max_ls = max_eval - current_evals;
                let mut obj = |t: f64, d: &[T]| -> Result<(f64, Vec<T>), OptimError> {
                    self.add_grad(t, d)?;
                    let l = sign * closure()?;
                    let g = self.gather_flat_grad(h.maximize)?;
                    self.set_param(&x_init)?;
                    Ok((l, g))
                };
                let (l, g, new_t, evals) =
                    strong_wolfe(&mut obj, t, &d, loss, flat_grad, gtd, max_ls)?;
                loss = l;
                flat_grad = g;
                t = new_t;
                ls_func_evals = evals;
                self.add_grad(t.v, &d)?;
                opt_cond = Num::<T>::ten(abs_max(&flat_grad)).le(tol_grad);
            } else {
                self.add_grad(t.v, &d)?;
                if n_iter != h.max_iter {
                    loss = sign * closure()?;
                    flat_grad = self.gather_flat_grad(h.maximize)?;
                    opt_cond = Num::<T>::ten(abs_max(&flat_grad)).le(tol_grad);
                    ls_func_evals = 1;
                }
            }
            current_evals += ls_func_evals;
            st.func_evals += ls_func_evals;
            if n_iter == h.max_iter || current_evals >= max_eval || opt_cond {
                break;
            }
            let tt = f::<T>(t.v);
            let dt_max = d.iter().fold(T::zero(), |m, &x| {
                let v = (x * tt).abs();
                if v > m || v.is_nan() {
                    v
                } else {
                    m
                }
            });
            if Num::<T>::ten(dt_max).le(tol_change) {
                break;
            }
            if (loss - prev_loss.unwrap_or(loss)).abs() < h.tolerance_change {
                break;
            }
        }
        st.d = Some(d);
        st.touch("d");
        st.t = Some(t.v);
        st.touch("t");
        st.touch("old_dirs");
        st.touch("old_stps");
        st.touch("ro");
        st.h_diag = Some(h_diag);
        st.touch("H_diag");
        st.prev_flat_grad = prev_flat_grad;
        st.touch("prev_flat_grad");
        st.prev_loss = prev_loss;
        st.touch("prev_loss");
        Ok(orig_loss)
    }
}

/// Cubic interpolation of two points with values and derivatives, clamped to `bounds`
/// (PyTorch's `_cubic_interpolate`).
fn cubic_interpolate<T: Float>(
    x1: Num<T>,
    f1: Num<T>,
    g1: Num<T>,
    x2: Num<T>,
    f2: Num<T>,
    g2: Num<T>,
    bounds: Option<(Num<T>, Num<T>)>,
) -> Num<T> {
    let (xmin, xmax) = match bounds {
        Some(b) => b,
        None => {
            if x1.le(x2) {
                (x1, x2)
            } else {
                (x2, x1)
            }
        }
    };
    let three = Num::py(3.0);
    let two = Num::py(2.0);
    let d1 = g1.add(g2).sub(three.mul(f1.sub(f2)).div(x1.sub(x2)));
    let d2_square = d1.mul(d1).sub(g1.mul(g2));
    if d2_square.ge(Num::py(0.0)) {
        let d2 = d2_square.unary(f64::sqrt);
        let min_pos = if x1.le(x2) {
            x2.sub(
                x2.sub(x1)
                    .mul(g2.add(d2).sub(d1).div(g2.sub(g1).add(two.mul(d2)))),
            )
        } else {
            x1.sub(
                x1.sub(x2)
                    .mul(g1.add(d2).sub(d1).div(g1.sub(g2).add(two.mul(d2)))),
            )
        };
        min_pos.max(xmin).min(xmax)
    } else {
        xmin.add(xmax).div(two)
    }
}

type Eval<'a, T> = dyn FnMut(f64, &[T]) -> Result<(f64, Vec<T>), OptimError> + 'a;

/// PyTorch's `_strong_wolfe` (c1 = 1e-4, c2 = 0.9, tolerance_change = 1e-9).
#[allow(clippy::too_many_arguments)]
fn strong_wolfe<T: Float>(
    obj: &mut Eval<'_, T>,
    t: Num<T>,
    d: &[T],
    f: f64,
    g: Vec<T>,
    gtd: Num<T>,
    max_ls: i64,
) -> Result<(f64, Vec<T>, Num<T>, i64), OptimError> {
    let c1 = Num::<T>::py(1e-4);
    let c2 = Num::<T>::py(0.9);
    let tolerance_change = Num::<T>::py(1e-9);
    let fnum = Num::<T>::py(f);
    let mut t = t;
    let d_norm = Num::<T>::ten(abs_max(d));
    let (mut f_new, mut g_new) = obj(t.v, d)?;
    let mut ls_func_evals = 1i64;
    let mut gtd_new = Num::<T>::ten(dot(&g_new, d));
    let (mut t_prev, mut f_prev, mut g_prev, mut gtd_prev) = (Num::<T>::py(0.0), f, g.clone(), gtd);
    let mut done = false;
    let mut ls_iter = 0i64;
    let mut bracket: Vec<Num<T>> = Vec::new();
    let mut bracket_f: Vec<f64> = Vec::new();
    let mut bracket_g: Vec<Vec<T>> = Vec::new();
    let mut bracket_gtd: Vec<Num<T>> = Vec::new();
    let armijo = |f_new: f64, t: Num<T>| Num::<T>::py(f_new).gt(fnum.add(c1.mul(t).mul(gtd)));
    while ls_iter < max_ls {
        if armijo(f_new, t) || (ls_iter > 1 && f_new >= f_prev) {
            bracket = vec![t_prev, t];
            bracket_f = vec![f_prev, f_new];
            bracket_g = vec![g_prev.clone(), g_new.clone()];
            bracket_gtd = vec![gtd_prev, gtd_new];
            break;
        }
        if gtd_new.abs().le(Num::py(-c2.v).mul(gtd)) {
            bracket = vec![t];
            bracket_f = vec![f_new];
            bracket_g = vec![g_new.clone()];
            done = true;
            break;
        }
        if gtd_new.ge(Num::py(0.0)) {
            bracket = vec![t_prev, t];
            bracket_f = vec![f_prev, f_new];
            bracket_g = vec![g_prev.clone(), g_new.clone()];
            bracket_gtd = vec![gtd_prev, gtd_new];
            break;
        }
        let min_step = t.add(Num::py(0.01).mul(t.sub(t_prev)));
        let max_step = t.mul(Num::py(10.0));
        let tmp = t;
        t = cubic_interpolate(
            t_prev,
            Num::py(f_prev),
            gtd_prev,
            t,
            Num::py(f_new),
            gtd_new,
            Some((min_step, max_step)),
        );
        t_prev = tmp;
        f_prev = f_new;
        g_prev = g_new.clone();
        gtd_prev = gtd_new;
        (f_new, g_new) = obj(t.v, d)?;
        ls_func_evals += 1;
        gtd_new = Num::ten(dot(&g_new, d));
        ls_iter += 1;
    }
    if ls_iter == max_ls {
        bracket = vec![Num::py(0.0), t];
        bracket_f = vec![f, f_new];
        bracket_g = vec![g, g_new.clone()];
    }
    let mut insuf_progress = false;
    let (mut low_pos, mut high_pos) = if bracket_f[0] <= *bracket_f.last().unwrap_or(&bracket_f[0])
    {
        (0, 1)
    } else {
        (1, 0)
    };
    while !done && ls_iter < max_ls && bracket.len() == 2 && bracket_gtd.len() == 2 {
        if bracket[1]
            .sub(bracket[0])
            .abs()
            .mul(d_norm)
            .lt(tolerance_change)
        {
            break;
        }
        t = cubic_interpolate(
            bracket[0],
            Num::py(bracket_f[0]),
            bracket_gtd[0],
            bracket[1],
            Num::py(bracket_f[1]),
            bracket_gtd[1],
            None,
        );
        let bmax = bracket[0].max(bracket[1]);
        let bmin = bracket[0].min(bracket[1]);
        let eps = Num::py(0.1).mul(bmax.sub(bmin));
        if bmax.sub(t).min(t.sub(bmin)).lt(eps) {
            if insuf_progress || t.ge(bmax) || t.le(bmin) {
                t = if t.sub(bmax).abs().lt(t.sub(bmin).abs()) {
                    bmax.sub(eps)
                } else {
                    bmin.add(eps)
                };
                insuf_progress = false;
            } else {
                insuf_progress = true;
            }
        } else {
            insuf_progress = false;
        }
        (f_new, g_new) = obj(t.v, d)?;
        ls_func_evals += 1;
        gtd_new = Num::ten(dot(&g_new, d));
        ls_iter += 1;
        if armijo(f_new, t) || f_new >= bracket_f[low_pos] {
            bracket[high_pos] = t;
            bracket_f[high_pos] = f_new;
            bracket_g[high_pos] = g_new.clone();
            bracket_gtd[high_pos] = gtd_new;
            (low_pos, high_pos) = if bracket_f[0] <= bracket_f[1] {
                (0, 1)
            } else {
                (1, 0)
            };
        } else {
            if gtd_new.abs().le(Num::py(-c2.v).mul(gtd)) {
                done = true;
            } else if gtd_new
                .mul(bracket[high_pos].sub(bracket[low_pos]))
                .ge(Num::py(0.0))
            {
                bracket[high_pos] = bracket[low_pos];
                bracket_f[high_pos] = bracket_f[low_pos];
                bracket_g[high_pos] = bracket_g[low_pos].clone();
                bracket_gtd[high_pos] = bracket_gtd[low_pos];
            }
            bracket[low_pos] = t;
            bracket_f[low_pos] = f_new;
            bracket_g[low_pos] = g_new.clone();
            bracket_gtd[low_pos] = gtd_new;
        }
    }
    let low_pos = low_pos.min(bracket.len() - 1);
    Ok((
        bracket_f[low_pos],
        std::mem::take(&mut bracket_g[low_pos]),
        bracket[low_pos],
        ls_func_evals,
    ))
}

/// The group dict, lent in place: `run` reads it again at every step.
impl<T: Float, P: Param<T>> OptimizerParamGroups for LBFGS<T, P> {
    fn num_groups(&self) -> usize {
        self.groups.num_groups()
    }
    fn get(&self, group: usize, key: &str) -> Option<&Value> {
        self.groups.get(group, key)
    }
    fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value> {
        self.groups.get_mut(group, key)
    }
    fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        self.groups.insert(group, key, value)
    }
}

fn tensor<T: Float>(v: &[T]) -> StateValue {
    StateValue::tensor(&[v.len()], v)
}

impl<T: Float, P: Param<T>> Optimizer<T, P> for LBFGS<T, P> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn step(&mut self) -> Result<bool, OptimError> {
        Err(OptimError::ClosureRequired { optimizer: NAME })
    }

    fn step_with_closure(
        &mut self,
        closure: &mut dyn FnMut() -> Result<f64, OptimError>,
    ) -> Result<Option<f64>, OptimError> {
        self.run(closure).map(Some)
    }

    fn zero_grad(&mut self) {
        self.groups.zero_grad()
    }

    fn params(&self) -> Vec<P> {
        self.params_vec()
    }

    fn add_param_group(&mut self, _group: ParamGroup<T, P>) -> Result<(), OptimError> {
        Err(OptimError::SingleGroupOnly {
            optimizer: NAME,
            found: self.groups.len() + 1,
        })
    }

    fn state_dict(&self) -> OptimizerStateDict {
        let mut state = Vec::new();
        if let Some(st) = &self.state {
            let mut ps = ParamState::new();
            for &k in &st.keys {
                let v = match k {
                    "func_evals" => StateValue::Int(st.func_evals),
                    "n_iter" => StateValue::Int(st.n_iter),
                    "al" => StateValue::List(
                        st.al
                            .iter()
                            .flatten()
                            .map(|a| a.map_or(StateValue::None, StateValue::scalar))
                            .collect(),
                    ),
                    "d" => st.d.as_deref().map_or(StateValue::None, tensor),
                    "t" => st.t.map_or(StateValue::None, StateValue::Float),
                    "old_dirs" => StateValue::List(st.old_dirs.iter().map(|v| tensor(v)).collect()),
                    "old_stps" => StateValue::List(st.old_stps.iter().map(|v| tensor(v)).collect()),
                    "ro" => {
                        StateValue::List(st.ro.iter().map(|&v| StateValue::scalar(v)).collect())
                    }
                    "H_diag" => match st.h_diag {
                        Some(HDiag::Tensor(v)) => StateValue::scalar(v),
                        Some(HDiag::One) => StateValue::Int(1),
                        None => StateValue::None,
                    },
                    "prev_flat_grad" => st
                        .prev_flat_grad
                        .as_deref()
                        .map_or(StateValue::None, tensor),
                    "prev_loss" => st.prev_loss.map_or(StateValue::None, StateValue::Float),
                    _ => StateValue::None,
                };
                ps.insert(k, v);
            }
            state.push((0, ps));
        }
        OptimizerStateDict {
            state,
            param_groups: self.groups.state_dict_groups(),
        }
    }

    fn load_state_dict(&mut self, sd: &OptimizerStateDict) -> Result<(), OptimError> {
        let map = self.groups.map_saved_ids(&sd.param_groups)?;
        let numel = self.numel();
        let mut new_state = None;
        for (id, ps) in &sd.state {
            if !map.iter().any(|&(s, k)| s == *id as i64 && k == 0) {
                return Err(OptimError::UnknownStateId { param: *id });
            }
            new_state = Some(load_lbfgs_state(ps, *id, numel)?);
        }
        self.groups
            .load_options(&sd.param_groups, &self.defaults, |_| {});
        self.state = new_state;
        Ok(())
    }
}

fn load_lbfgs_state<T: Float>(
    ps: &ParamState,
    param: usize,
    numel: usize,
) -> Result<LBFGSState<T>, OptimError> {
    let wrong = |key: &str, expected: &'static str, v: &StateValue| OptimError::WrongStateType {
        param,
        key: key.into(),
        expected,
        found: v.type_name(),
    };
    let flat = |key: &str, v: &StateValue| -> Result<Vec<T>, OptimError> {
        let t = v.as_tensor().ok_or_else(|| wrong(key, "a tensor", v))?;
        if t.len() != numel {
            return Err(OptimError::StateShapeMismatch {
                param,
                key: key.into(),
                expected: vec![numel],
                got: t.shape().to_vec(),
            });
        }
        Ok(tensor_to_vec(t))
    };
    let scalar = |key: &str, v: &StateValue| -> Result<T, OptimError> {
        v.as_f64()
            .map(f::<T>)
            .ok_or_else(|| wrong(key, "a number or a 0-d tensor", v))
    };
    let list = |key: &str, v: &StateValue| -> Result<Vec<StateValue>, OptimError> {
        match v {
            StateValue::List(items) => Ok(items.clone()),
            _ => Err(wrong(key, "a list", v)),
        }
    };
    let mut st = LBFGSState::<T>::default();
    for (k, v) in &ps.entries {
        let key: &'static str = match k.as_str() {
            "func_evals" => {
                st.func_evals = v.as_f64().ok_or_else(|| wrong(k, "an int", v))? as i64;
                "func_evals"
            }
            "n_iter" => {
                st.n_iter = v.as_f64().ok_or_else(|| wrong(k, "an int", v))? as i64;
                "n_iter"
            }
            "al" => {
                st.al = Some(
                    list(k, v)?
                        .iter()
                        .map(|x| {
                            if matches!(x, StateValue::None) {
                                Ok(None)
                            } else {
                                scalar(k, x).map(Some)
                            }
                        })
                        .collect::<Result<_, _>>()?,
                );
                "al"
            }
            "d" => {
                st.d = if matches!(v, StateValue::None) {
                    None
                } else {
                    Some(flat(k, v)?)
                };
                "d"
            }
            "t" => {
                st.t = v.as_f64();
                "t"
            }
            "old_dirs" => {
                st.old_dirs = list(k, v)?
                    .iter()
                    .map(|x| flat(k, x))
                    .collect::<Result<_, _>>()?;
                "old_dirs"
            }
            "old_stps" => {
                st.old_stps = list(k, v)?
                    .iter()
                    .map(|x| flat(k, x))
                    .collect::<Result<_, _>>()?;
                "old_stps"
            }
            "ro" => {
                st.ro = list(k, v)?
                    .iter()
                    .map(|x| scalar(k, x))
                    .collect::<Result<_, _>>()?;
                "ro"
            }
            "H_diag" => {
                st.h_diag = match v {
                    StateValue::Int(1) => Some(HDiag::One),
                    StateValue::None => None,
                    _ => Some(HDiag::Tensor(scalar(k, v)?)),
                };
                "H_diag"
            }
            "prev_flat_grad" => {
                st.prev_flat_grad = if matches!(v, StateValue::None) {
                    None
                } else {
                    Some(flat(k, v)?)
                };
                "prev_flat_grad"
            }
            "prev_loss" => {
                st.prev_loss = v.as_f64();
                "prev_loss"
            }
            _ => continue,
        };
        st.touch(key);
    }
    if st.old_dirs.len() != st.old_stps.len() || st.old_dirs.len() != st.ro.len() {
        return Err(OptimError::StateShapeMismatch {
            param,
            key: "old_stps".into(),
            expected: vec![st.old_dirs.len()],
            got: vec![st.old_stps.len(), st.ro.len()],
        });
    }
    Ok(st)
}
