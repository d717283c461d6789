//! Autograd behaviour: accumulation, no-grad scopes, leaves, and shape errors.

use ndarray::{arr1, arr2, ArrayD};
use tempo_tensor::{is_grad_enabled, no_grad, NoGradGuard, Tensor, TensorError};

fn param(v: &[f64]) -> Tensor<f64> {
    Tensor::parameter(arr1(v).into_dyn())
}

fn grad_vec(t: &Tensor<f64>) -> Vec<f64> {
    t.grad()
        .clone()
        .expect("has a grad")
        .iter()
        .copied()
        .collect()
}

fn assert_all_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-12, "got {got:?}, want {want:?}");
    }
}

#[test]
fn grads_accumulate_until_zeroed() {
    let w = param(&[1.0, 2.0]);
    let loss = || w.square().sum();
    loss().backward().unwrap();
    assert_all_close(&grad_vec(&w), &[2.0, 4.0]);
    loss().backward().unwrap();
    assert_all_close(&grad_vec(&w), &[4.0, 8.0]);
    w.zero_grad();
    assert!(w.grad().is_none());
    loss().backward().unwrap();
    assert_all_close(&grad_vec(&w), &[2.0, 4.0]);
}

#[test]
fn no_grad_records_nothing_and_restores_mode() {
    let w = param(&[1.0, 2.0]);
    let y = no_grad(|| {
        assert!(!is_grad_enabled());
        w.mul_scalar(3.0)
    });
    assert!(is_grad_enabled());
    assert!(!y.requires_grad() && y.is_leaf());
    assert!(matches!(y.sum().backward(), Err(TensorError::Backward(_))));
    {
        let _g = NoGradGuard::new();
        let _inner = NoGradGuard::new();
        assert!(!w.exp().requires_grad());
    }
    assert!(w.exp().requires_grad());
}

#[test]
fn constants_get_no_grad_and_intermediates_keep_none() {
    let w = param(&[1.0, -1.0]);
    let c = Tensor::from_array(arr1(&[3.0, 4.0]).into_dyn());
    let h = w.mul(&c).unwrap();
    assert!(!h.is_leaf() && h.requires_grad());
    h.relu().sum().backward().unwrap();
    assert!(c.grad().is_none());
    assert!(h.grad().is_none(), "non-leaf grads are not retained");
    assert_all_close(&grad_vec(&w), &[3.0, 0.0]);
}

#[test]
fn diamond_graph_sums_both_paths() {
    // y = a*b + exp(a*b), with the product shared.
    let a = param(&[0.5]);
    let b = param(&[2.0]);
    let p = a.mul(&b).unwrap();
    let y = p.add(&p.exp()).unwrap().sum();
    y.backward().unwrap();
    let e = 1f64.exp();
    assert_all_close(&grad_vec(&a), &[2.0 * (1.0 + e)]);
    assert_all_close(&grad_vec(&b), &[0.5 * (1.0 + e)]);
}

#[test]
fn backward_needs_one_element() {
    let w = param(&[1.0, 2.0]);
    match w.square().backward() {
        Err(TensorError::NotScalar { op, shape }) => {
            assert_eq!(op, "backward");
            assert_eq!(shape, vec![2]);
        }
        other => panic!("expected NotScalar, got {other:?}"),
    }
    let y = w.square();
    y.backward_with(arr1(&[1.0, 0.5]).into_dyn()).unwrap();
    assert_all_close(&grad_vec(&w), &[2.0, 2.0]);
    assert!(matches!(
        y.backward_with(ArrayD::zeros(vec![3])),
        Err(TensorError::ShapeMismatch { .. })
    ));
}

#[test]
fn shape_errors_name_both_shapes() {
    let a = Tensor::<f64>::zeros(&[2, 3]);
    let b = Tensor::<f64>::zeros(&[4, 5]);
    let expect_mismatch = |r: Result<Tensor<f64>, TensorError>, op: &str| match r {
        Err(e @ TensorError::ShapeMismatch { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(op), "{msg}");
        }
        other => panic!("{op}: expected ShapeMismatch, got {other:?}"),
    };
    expect_mismatch(a.add(&b), "add");
    expect_mismatch(a.sub(&b), "sub");
    expect_mismatch(a.mul(&b), "mul");
    expect_mismatch(a.div(&b), "div");
    expect_mismatch(a.matmul(&b), "matmul");
    expect_mismatch(a.linear(&b, None), "linear");
    expect_mismatch(a.reshape(&[7]), "reshape");
    expect_mismatch(Tensor::concat(&[&a, &b], 0), "concat");
    let err = a.matmul(&b).unwrap_err().to_string();
    assert!(err.contains("[2, 3]") && err.contains("[4, 5]"), "{err}");
    assert!(matches!(
        a.sum_axis(2, false),
        Err(TensorError::AxisOutOfRange {
            axis: 2,
            ndim: 2,
            ..
        })
    ));
    assert!(matches!(
        a.rows(1..3),
        Err(TensorError::InvalidArgument { .. })
    ));
    assert!(matches!(
        a.index_select(&[0, 2]),
        Err(TensorError::IndexOutOfRange {
            index: 2,
            len: 2,
            ..
        })
    ));
    assert!(matches!(
        a.cross_entropy(&[0, 3]),
        Err(TensorError::IndexOutOfRange {
            index: 3,
            len: 3,
            ..
        })
    ));
    assert!(matches!(
        a.cross_entropy(&[0]),
        Err(TensorError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        Tensor::<f64>::from_vec(&[2, 2], vec![1.0]),
        Err(TensorError::ElementCount { .. })
    ));
    assert!(matches!(a.item(), Err(TensorError::NotScalar { .. })));
}

#[test]
fn f32_training_step_reduces_loss() {
    // A generic-element-type smoke test: one f32 linear-regression step lowers the loss.
    let x = Tensor::from_array(arr2(&[[1.0f32, 2.0], [3.0, -1.0]]).into_dyn());
    let y = Tensor::from_array(arr2(&[[1.0f32], [2.0]]).into_dyn());
    let w = Tensor::parameter(arr2(&[[0.1f32, -0.2]]).into_dyn());
    let loss = |w: &Tensor<f32>| x.linear(w, None).unwrap().sub(&y).unwrap().square().mean();
    let l0 = loss(&w);
    l0.backward().unwrap();
    no_grad(|| {
        let g = w.grad().clone().unwrap();
        w.data_mut().scaled_add(-0.05, &g);
    });
    let l1 = loss(&w);
    assert!(l1.item().unwrap() < l0.item().unwrap());
}
