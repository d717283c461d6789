//! Every differentiable op: the forward value equals an ndarray oracle, and the
//! autograd gradient equals central finite differences, in f64 on random small shapes.

use ndarray::{Array2, ArrayD, Axis, IxDyn};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use tempo_tensor::{Tensor, TensorError};

/// Forward values must match the ndarray oracle to this relative/absolute tolerance.
const FWD_TOL: f64 = 1e-12;
/// Finite-difference step.
const H: f64 = 1e-6;
/// Gradient tolerance: |autograd - numeric| <= ATOL + RTOL |numeric|. The central
/// difference has truncation error O(H²) and rounding error about 1e-16 · |L| / H.
const RTOL: f64 = 1e-5;
const ATOL: f64 = 1e-6;

type Op = dyn Fn(&[Tensor<f64>]) -> Result<Tensor<f64>, TensorError>;

/// A fixed, non-trivial cotangent: reduces an output to `Σ c_i out_i` so every element's
/// gradient is checked, not only the sum's.
fn cotangent(shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| 0.5 + ((i * 7 + 3) % 11) as f64 / 10.0)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).expect("fits")
}

fn weighted_sum(out: &Tensor<f64>) -> Result<Tensor<f64>, TensorError> {
    Ok(out.mul(&Tensor::from_array(cotangent(&out.shape())))?.sum())
}

/// Checks autograd against central differences for `op` at `inputs`.
fn check_grad(inputs: &[ArrayD<f64>], op: &Op) -> Result<(), TestCaseError> {
    let params: Vec<Tensor<f64>> = inputs.iter().cloned().map(Tensor::parameter).collect();
    let loss = weighted_sum(&op(&params).map_err(|e| TestCaseError::fail(e.to_string()))?)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    loss.backward()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let eval = |xs: &[ArrayD<f64>]| -> f64 {
        let consts: Vec<Tensor<f64>> = xs.iter().cloned().map(Tensor::from_array).collect();
        let out = op(&consts).expect("op succeeded at the base point");
        weighted_sum(&out)
            .expect("same shape")
            .item()
            .expect("scalar")
    };
    for (i, p) in params.iter().enumerate() {
        let grad = p
            .grad()
            .clone()
            .unwrap_or_else(|| ArrayD::zeros(inputs[i].shape()));
        prop_assert_eq!(grad.shape(), inputs[i].shape());
        for (j, &g) in grad.iter().enumerate() {
            let mut plus = inputs.to_vec();
            let mut minus = inputs.to_vec();
            plus[i].as_slice_mut().expect("standard layout")[j] += H;
            minus[i].as_slice_mut().expect("standard layout")[j] -= H;
            let numeric = (eval(&plus) - eval(&minus)) / (2.0 * H);
            prop_assert!(
                (g - numeric).abs() <= ATOL + RTOL * numeric.abs(),
                "input {} element {}: autograd {} vs numeric {}",
                i,
                j,
                g,
                numeric
            );
        }
    }
    Ok(())
}

/// Checks the forward value against `oracle`, then the gradient.
fn check_op(
    inputs: Vec<ArrayD<f64>>,
    op: &Op,
    oracle: impl Fn(&[ArrayD<f64>]) -> ArrayD<f64>,
) -> Result<(), TestCaseError> {
    let consts: Vec<Tensor<f64>> = inputs.iter().cloned().map(Tensor::from_array).collect();
    let got = op(&consts).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let want = oracle(&inputs);
    prop_assert_eq!(got.shape(), want.shape().to_vec());
    for (g, w) in got.data().iter().zip(want.iter()) {
        prop_assert!(
            (g - w).abs() <= FWD_TOL * (1.0 + w.abs()),
            "forward {} vs oracle {}",
            g,
            w
        );
    }
    check_grad(&inputs, op)
}

// ------------------------------------------------------------------ strategies

fn shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..4, 1..4)
}

fn array_in(shape: Vec<usize>, lo: f64, hi: f64) -> impl Strategy<Value = ArrayD<f64>> {
    let n: usize = shape.iter().product();
    prop::collection::vec(lo..hi, n)
        .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).expect("fits"))
}

fn array(lo: f64, hi: f64) -> impl Strategy<Value = ArrayD<f64>> {
    shape().prop_flat_map(move |s| array_in(s, lo, hi))
}

/// Values in ±[0.05, 2]: away from the kinks of relu and abs at 0.
fn array_away_from_zero() -> impl Strategy<Value = ArrayD<f64>> {
    array(0.05, 2.0).prop_flat_map(|a| {
        let n = a.len();
        (Just(a), prop::collection::vec(any::<bool>(), n)).prop_map(|(mut a, signs)| {
            for (v, s) in a.iter_mut().zip(signs) {
                if s {
                    *v = -*v;
                }
            }
            a
        })
    })
}

/// Two shapes that broadcast: `b` drops some leading axes of `a` and sets some of the
/// rest to 1 (or the roles are swapped).
fn broadcast_pair(lo: f64, hi: f64) -> impl Strategy<Value = (ArrayD<f64>, ArrayD<f64>)> {
    (shape(), any::<u8>(), any::<bool>()).prop_flat_map(move |(a, bits, swap)| {
        let drop = (bits as usize) % a.len();
        let b: Vec<usize> = a[drop..]
            .iter()
            .enumerate()
            .map(|(i, &d)| if bits >> (i + 2) & 1 == 1 { 1 } else { d })
            .collect();
        let (a, b) = if swap { (b, a) } else { (a, b) };
        (array_in(a, lo, hi), array_in(b, lo, hi))
    })
}

/// The co-broadcast of `a` and `b` by ndarray (the oracle).
fn zip_oracle(a: &ArrayD<f64>, b: &ArrayD<f64>, f: impl Fn(f64, f64) -> f64) -> ArrayD<f64> {
    let n = a.ndim().max(b.ndim());
    let pad = |s: &[usize]| {
        let mut v = vec![1; n - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (sa, sb) = (pad(a.shape()), pad(b.shape()));
    let shape: Vec<usize> = sa.iter().zip(&sb).map(|(&x, &y)| x.max(y)).collect();
    let a = a.broadcast(IxDyn(&shape)).expect("broadcasts");
    let b = b.broadcast(IxDyn(&shape)).expect("broadcasts");
    ndarray::Zip::from(&a).and(&b).map_collect(|&x, &y| f(x, y))
}

fn matrix(rows: usize, cols: usize) -> impl Strategy<Value = ArrayD<f64>> {
    array_in(vec![rows, cols], -2.0, 2.0)
}

fn to2(a: &ArrayD<f64>) -> Array2<f64> {
    a.clone().into_dimensionality().expect("2-d")
}

fn unary_oracle(f: fn(f64) -> f64) -> impl Fn(&[ArrayD<f64>]) -> ArrayD<f64> {
    move |x| x[0].mapv(f)
}

fn gelu_ref(x: f64) -> f64 {
    // Φ via erfc-free identity on a high-precision series is what tempo does; here the
    // oracle integrates the normal density with Simpson's rule instead.
    let n = 20_000;
    let (a, b) = (-12.0_f64, x);
    let h = (b - a) / n as f64;
    let pdf = |t: f64| (-0.5 * t * t).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let mut s = pdf(a) + pdf(b);
    for k in 1..n {
        let t = a + k as f64 * h;
        s += if k % 2 == 1 { 4.0 } else { 2.0 } * pdf(t);
    }
    x * s * h / 3.0
}

fn cfg() -> ProptestConfig {
    ProptestConfig::with_cases(32)
}

// ------------------------------------------------------------------ binary ops

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn add((a, b) in broadcast_pair(-2.0, 2.0)) {
        check_op(vec![a, b], &|t| t[0].add(&t[1]), |x| zip_oracle(&x[0], &x[1], |p, q| p + q))?;
    }

    #[test]
    fn sub((a, b) in broadcast_pair(-2.0, 2.0)) {
        check_op(vec![a, b], &|t| t[0].sub(&t[1]), |x| zip_oracle(&x[0], &x[1], |p, q| p - q))?;
    }

    #[test]
    fn mul((a, b) in broadcast_pair(-2.0, 2.0)) {
        check_op(vec![a, b], &|t| t[0].mul(&t[1]), |x| zip_oracle(&x[0], &x[1], |p, q| p * q))?;
    }

    #[test]
    fn div((a, b) in broadcast_pair(0.5, 2.0)) {
        check_op(vec![a, b], &|t| t[0].div(&t[1]), |x| zip_oracle(&x[0], &x[1], |p, q| p / q))?;
    }

    #[test]
    fn mul_same_tensor_twice(a in array(-2.0, 2.0)) {
        check_op(vec![a], &|t| t[0].mul(&t[0]), |x| x[0].mapv(|v| v * v))?;
    }

    #[test]
    fn scalar_arithmetic(a in array(-2.0, 2.0), s in 0.5f64..3.0) {
        check_op(vec![a.clone()], &move |t| Ok(t[0].add_scalar(s)), move |x| x[0].mapv(|v| v + s))?;
        check_op(vec![a.clone()], &move |t| Ok(t[0].sub_scalar(s)), move |x| x[0].mapv(|v| v - s))?;
        check_op(vec![a.clone()], &move |t| Ok(t[0].rsub_scalar(s)), move |x| x[0].mapv(|v| s - v))?;
        check_op(vec![a.clone()], &move |t| Ok(t[0].mul_scalar(s)), move |x| x[0].mapv(|v| v * s))?;
        check_op(vec![a], &move |t| Ok(t[0].div_scalar(s)), move |x| x[0].mapv(|v| v / s))?;
    }
}

// ------------------------------------------------------------------ unary ops

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn neg(a in array(-2.0, 2.0)) {
        check_op(vec![a], &|t| Ok(t[0].neg()), unary_oracle(|v| -v))?;
    }

    #[test]
    fn abs(a in array_away_from_zero()) {
        check_op(vec![a], &|t| Ok(t[0].abs()), unary_oracle(f64::abs))?;
    }

    #[test]
    fn pow(a in array(0.5, 2.0), p in -2.0f64..3.0) {
        check_op(vec![a], &move |t| Ok(t[0].pow(p)), move |x| x[0].mapv(|v| v.powf(p)))?;
    }

    #[test]
    fn square(a in array(-2.0, 2.0)) {
        check_op(vec![a], &|t| Ok(t[0].square()), unary_oracle(|v| v * v))?;
    }

    #[test]
    fn sqrt(a in array(0.2, 3.0)) {
        check_op(vec![a], &|t| Ok(t[0].sqrt()), unary_oracle(f64::sqrt))?;
    }

    #[test]
    fn exp(a in array(-2.0, 2.0)) {
        check_op(vec![a], &|t| Ok(t[0].exp()), unary_oracle(f64::exp))?;
    }

    #[test]
    fn log(a in array(0.2, 3.0)) {
        check_op(vec![a], &|t| Ok(t[0].log()), unary_oracle(f64::ln))?;
    }

    #[test]
    fn relu(a in array_away_from_zero()) {
        check_op(vec![a], &|t| Ok(t[0].relu()), unary_oracle(|v| v.max(0.0)))?;
    }

    #[test]
    fn tanh(a in array(-2.0, 2.0)) {
        check_op(vec![a], &|t| Ok(t[0].tanh()), unary_oracle(f64::tanh))?;
    }

    #[test]
    fn sigmoid(a in array(-3.0, 3.0)) {
        check_op(vec![a], &|t| Ok(t[0].sigmoid()), unary_oracle(|v| 1.0 / (1.0 + (-v).exp())))?;
    }

    #[test]
    fn gelu(a in array(-3.0, 3.0)) {
        check_op(vec![a], &|t| Ok(t[0].gelu()), unary_oracle(gelu_ref))?;
    }
}

// ------------------------------------------------------------------ reductions

fn array_and_axis() -> impl Strategy<Value = (ArrayD<f64>, usize, bool)> {
    array(-2.0, 2.0).prop_flat_map(|a| {
        let n = a.ndim();
        (Just(a), 0..n, any::<bool>())
    })
}

fn keep(a: ArrayD<f64>, axis: usize, keepdim: bool) -> ArrayD<f64> {
    if keepdim {
        a.insert_axis(Axis(axis))
    } else {
        a
    }
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn sum_all(a in array(-2.0, 2.0)) {
        check_op(vec![a], &|t| Ok(t[0].sum()), |x| ndarray::arr0(x[0].sum()).into_dyn())?;
    }

    #[test]
    fn mean_all(a in array(-2.0, 2.0)) {
        check_op(vec![a], &|t| Ok(t[0].mean()), |x| ndarray::arr0(x[0].sum() / x[0].len() as f64).into_dyn())?;
    }

    #[test]
    fn sum_axis((a, axis, keepdim) in array_and_axis()) {
        check_op(vec![a], &move |t| t[0].sum_axis(axis, keepdim),
            move |x| keep(x[0].sum_axis(Axis(axis)), axis, keepdim))?;
    }

    #[test]
    fn mean_axis((a, axis, keepdim) in array_and_axis()) {
        check_op(vec![a], &move |t| t[0].mean_axis(axis, keepdim),
            move |x| keep(x[0].mean_axis(Axis(axis)).expect("non-empty"), axis, keepdim))?;
    }

    #[test]
    fn softmax((a, axis, _k) in array_and_axis()) {
        check_op(vec![a], &move |t| t[0].softmax(axis), move |x| {
            let e = x[0].mapv(f64::exp);
            let s = e.sum_axis(Axis(axis)).insert_axis(Axis(axis));
            &e / &s
        })?;
    }

    #[test]
    fn log_softmax((a, axis, _k) in array_and_axis()) {
        check_op(vec![a], &move |t| t[0].log_softmax(axis), move |x| {
            let s = x[0].mapv(f64::exp).sum_axis(Axis(axis)).mapv(f64::ln).insert_axis(Axis(axis));
            &x[0] - &s
        })?;
    }
}

// ------------------------------------------------------------------ class targets

fn logits_and_targets() -> impl Strategy<Value = (ArrayD<f64>, Vec<usize>)> {
    (1usize..5, 1usize..5).prop_flat_map(|(n, c)| (matrix(n, c), prop::collection::vec(0..c, n)))
}

fn log_softmax_rows(x: &ArrayD<f64>) -> Array2<f64> {
    let x = to2(x);
    let lse = x
        .mapv(f64::exp)
        .sum_axis(Axis(1))
        .mapv(f64::ln)
        .insert_axis(Axis(1));
    &x - &lse
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn pick((a, t) in logits_and_targets()) {
        let t2 = t.clone();
        check_op(vec![a], &move |x| x[0].pick(&t), move |x| {
            let m = to2(&x[0]);
            ArrayD::from_shape_fn(IxDyn(&[t2.len()]), |i| m[[i[0], t2[i[0]]]])
        })?;
    }

    #[test]
    fn nll((a, t) in logits_and_targets()) {
        let t2 = t.clone();
        check_op(vec![a], &move |x| x[0].nll(&t), move |x| {
            let m = to2(&x[0]);
            let s: f64 = t2.iter().enumerate().map(|(i, &c)| -m[[i, c]]).sum();
            ndarray::arr0(s / t2.len() as f64).into_dyn()
        })?;
    }

    #[test]
    fn cross_entropy((a, t) in logits_and_targets()) {
        let t2 = t.clone();
        check_op(vec![a], &move |x| x[0].cross_entropy(&t), move |x| {
            let l = log_softmax_rows(&x[0]);
            let s: f64 = t2.iter().enumerate().map(|(i, &c)| -l[[i, c]]).sum();
            ndarray::arr0(s / t2.len() as f64).into_dyn()
        })?;
    }
}

// ------------------------------------------------------------------ products

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn matmul_2d((a, b) in (1usize..4, 1usize..4, 1usize..4).prop_flat_map(|(m, k, n)| (matrix(m, k), matrix(k, n)))) {
        check_op(vec![a, b], &|t| t[0].matmul(&t[1]), |x| to2(&x[0]).dot(&to2(&x[1])).into_dyn())?;
    }

    #[test]
    fn matmul_vector_cases((v, m, w) in (1usize..4, 1usize..4).prop_flat_map(|(k, n)| (array_in(vec![k], -2.0, 2.0), matrix(k, n), array_in(vec![n], -2.0, 2.0)))) {
        // [k] x [k, n] -> [n]
        check_op(vec![v.clone(), m.clone()], &|t| t[0].matmul(&t[1]), |x| {
            let v: ndarray::Array1<f64> = x[0].clone().into_dimensionality().expect("1-d");
            v.dot(&to2(&x[1])).into_dyn()
        })?;
        // [k, n] x [n] -> [k]
        check_op(vec![m, w], &|t| t[0].matmul(&t[1]), |x| {
            let w: ndarray::Array1<f64> = x[1].clone().into_dimensionality().expect("1-d");
            to2(&x[0]).dot(&w).into_dyn()
        })?;
    }

    #[test]
    fn matmul_batched((a, b) in (1usize..3, 1usize..4, 1usize..4, 1usize..4).prop_flat_map(|(p, m, k, n)| (array_in(vec![p, m, k], -2.0, 2.0), matrix(k, n)))) {
        check_op(vec![a, b], &|t| t[0].matmul(&t[1]), |x| {
            let b = to2(&x[1]);
            let outs: Vec<_> = x[0].axis_iter(Axis(0)).map(|a| {
                let a: ndarray::ArrayView2<f64> = a.into_dimensionality().expect("2-d");
                a.dot(&b).insert_axis(Axis(0))
            }).collect();
            let views: Vec<_> = outs.iter().map(|o| o.view()).collect();
            ndarray::concatenate(Axis(0), &views).expect("same shapes").into_dyn()
        })?;
    }

    #[test]
    fn linear((x, w, b, one_d) in (1usize..4, 1usize..4, 1usize..4).prop_flat_map(|(m, i, o)| (matrix(m, i), matrix(o, i), array_in(vec![o], -2.0, 2.0), any::<bool>()))) {
        let x = if one_d { x.index_axis(Axis(0), 0).to_owned() } else { x };
        let oracle = |x: &[ArrayD<f64>]| {
            let xs = x[0].shape().to_vec();
            let x2 = x[0].clone().into_shape_with_order((xs.iter().product::<usize>() / xs[xs.len() - 1], xs[xs.len() - 1])).expect("2-d");
            let mut y = x2.dot(&to2(&x[1]).t());
            if x.len() == 3 {
                y += &x[2];
            }
            let mut out = xs[..xs.len() - 1].to_vec();
            out.push(y.shape()[1]);
            y.as_standard_layout().into_owned().into_shape_with_order(IxDyn(&out)).expect("fits")
        };
        check_op(vec![x.clone(), w.clone(), b], &|t| t[0].linear(&t[1], Some(&t[2])), oracle)?;
        check_op(vec![x, w], &|t| t[0].linear(&t[1], None), oracle)?;
    }
}

// ------------------------------------------------------------------ shapes and indexing

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn reshape(a in array(-2.0, 2.0)) {
        let n = a.len();
        check_op(vec![a], &move |t| t[0].reshape(&[n, 1]), move |x| x[0].clone().into_shape_with_order(IxDyn(&[n, 1])).expect("fits"))?;
    }

    #[test]
    fn transpose((a, p, q) in array(-2.0, 2.0).prop_flat_map(|a| { let n = a.ndim(); (Just(a), 0..n, 0..n) })) {
        check_op(vec![a], &move |t| t[0].transpose(p, q), move |x| {
            let mut v = x[0].view();
            v.swap_axes(p, q);
            v.to_owned()
        })?;
    }

    #[test]
    fn t_2d(a in (1usize..4, 1usize..4).prop_flat_map(|(m, n)| matrix(m, n))) {
        check_op(vec![a], &|t| t[0].t(), |x| to2(&x[0]).t().to_owned().into_dyn())?;
    }

    #[test]
    fn rows((a, s, e) in array(-2.0, 2.0).prop_flat_map(|a| { let n = a.shape()[0]; (Just(a), 0..=n) }).prop_flat_map(|(a, s)| { let n = a.shape()[0]; (Just(a), Just(s), s..=n) })) {
        check_op(vec![a], &move |t| t[0].rows(s..e), move |x| x[0].slice_axis(Axis(0), (s..e).into()).to_owned())?;
    }

    #[test]
    fn index_select((a, idx) in array(-2.0, 2.0).prop_flat_map(|a| { let n = a.shape()[0]; (Just(a), prop::collection::vec(0..n, 0..5)) })) {
        let i2 = idx.clone();
        check_op(vec![a], &move |t| t[0].index_select(&idx), move |x| x[0].select(Axis(0), &i2))?;
    }

    #[test]
    fn concat((a, b, axis) in shape().prop_flat_map(|s| { let n = s.len(); (Just(s), 0..n, 1usize..4) }).prop_flat_map(|(s, axis, len)| {
        let mut s2 = s.clone();
        s2[axis] = len;
        (array_in(s, -2.0, 2.0), array_in(s2, -2.0, 2.0), Just(axis))
    })) {
        check_op(vec![a, b], &move |t| Tensor::concat(&[&t[0], &t[1], &t[0]], axis), move |x| {
            ndarray::concatenate(Axis(axis), &[x[0].view(), x[1].view(), x[0].view()]).expect("fits")
        })?;
    }

    #[test]
    fn mlp_composite((x, w1, b1, w2) in (1usize..4, 1usize..4, 1usize..4).prop_flat_map(|(m, i, h)| (matrix(m, i), matrix(h, i), array_in(vec![h], -1.0, 1.0), matrix(2, h)))) {
        // A two-layer network with a shared input used twice: exercises graph joins.
        check_grad(&[x, w1, b1, w2], &|t| {
            let h = t[0].linear(&t[1], Some(&t[2]))?.tanh();
            let y = h.matmul(&t[3].t()?)?;
            y.log_softmax(1)?.add(&h.sigmoid().sum_axis(1, true)?)
        })?;
    }
}
