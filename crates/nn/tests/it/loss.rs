//! Losses against values worked out by hand.

use ndarray::{arr1, arr2};
use tempo_nn::{
    cross_entropy, l1_loss, mse_loss, CrossEntropyLoss, L1Loss, MSELoss, Module, NnError,
    Reduction, Sigmoid, Tanh, GELU,
};
use tempo_tensor::{Tensor, TensorError};

fn close(got: f64, want: f64) {
    assert!((got - want).abs() <= 1e-12, "got {got}, want {want}");
}

fn vec_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        close(*g, *w);
    }
}

#[test]
fn mse_and_l1_reductions() {
    let p = Tensor::parameter(arr1(&[1.0, 2.0, 3.0]).into_dyn());
    let t = Tensor::from_array(arr1(&[0.0, 2.0, 5.0]).into_dyn());
    // differences 1, 0, -2
    let mse = mse_loss(&p, &t, Reduction::Mean).unwrap();
    close(mse.item().unwrap(), 5.0 / 3.0);
    close(
        MSELoss {
            reduction: Reduction::Sum,
        }
        .forward(&p, &t)
        .unwrap()
        .item()
        .unwrap(),
        5.0,
    );
    vec_close(
        &mse_loss(&p, &t, Reduction::None).unwrap().to_vec(),
        &[1.0, 0.0, 4.0],
    );
    close(
        l1_loss(&p, &t, Reduction::Mean).unwrap().item().unwrap(),
        1.0,
    );
    close(
        L1Loss {
            reduction: Reduction::Sum,
        }
        .forward(&p, &t)
        .unwrap()
        .item()
        .unwrap(),
        3.0,
    );
    mse.backward().unwrap();
    // d/dp mean((p - t)^2) = 2 (p - t) / 3
    vec_close(
        &p.grad()
            .clone()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        &[2.0 / 3.0, 0.0, -4.0 / 3.0],
    );
}

#[test]
fn losses_refuse_mismatched_shapes() {
    let p = Tensor::<f64>::zeros(&[3]);
    let t = Tensor::<f64>::zeros(&[3, 1]);
    assert!(matches!(
        mse_loss(&p, &t, Reduction::Mean),
        Err(NnError::Tensor(TensorError::ShapeMismatch {
            op: "mse_loss",
            ..
        }))
    ));
    assert!(matches!(
        l1_loss(&p, &t, Reduction::Mean),
        Err(NnError::Tensor(TensorError::ShapeMismatch {
            op: "l1_loss",
            ..
        }))
    ));
    assert!(matches!(
        cross_entropy(&p, &[0, 0, 0], Reduction::Mean),
        Err(NnError::Tensor(TensorError::Rank { .. }))
    ));
}

#[test]
fn cross_entropy_reductions() {
    // Row 0: equal logits, class 1 -> ln 2. Row 1: probabilities 1/4, 3/4, class 0 -> ln 4.
    let logits = Tensor::parameter(arr2(&[[0.0, 0.0], [0.0, 3f64.ln()]]).into_dyn());
    let targets = [1, 0];
    let sum = cross_entropy(&logits, &targets, Reduction::Sum).unwrap();
    close(sum.item().unwrap(), 8f64.ln());
    let mean = CrossEntropyLoss::default()
        .forward(&logits, &targets)
        .unwrap();
    close(mean.item().unwrap(), 8f64.ln() / 2.0);
    vec_close(
        &cross_entropy(&logits, &targets, Reduction::None)
            .unwrap()
            .to_vec(),
        &[2f64.ln(), 4f64.ln()],
    );
    // d/dlogits of the sum: softmax - onehot.
    sum.backward().unwrap();
    let g: Vec<f64> = logits.grad().clone().unwrap().iter().copied().collect();
    vec_close(&g, &[0.5, -0.5, 0.25 - 1.0, 0.75]);
}

#[test]
fn activations_apply_elementwise() {
    let x = Tensor::from_array(arr1(&[0.0f64, 1.0]).into_dyn());
    vec_close(&Tanh.forward(&x).unwrap().to_vec(), &[0.0, 1f64.tanh()]);
    vec_close(
        &Sigmoid.forward(&x).unwrap().to_vec(),
        &[0.5, 1.0 / (1.0 + (-1f64).exp())],
    );
    // GELU(1) = Φ(1) = 0.8413447460685429 (standard normal CDF at 1).
    vec_close(
        &GELU.forward(&x).unwrap().to_vec(),
        &[0.0, 0.841_344_746_068_542_9],
    );
    assert!(Module::<f64>::named_parameters(&GELU).is_empty());
}
