//! Loss functions (PyTorch's `nn.functional` losses), with mean, sum or no reduction.

use tempo_tensor::{Float, Tensor, TensorError};

use crate::NnError;

/// How a loss combines per-element values (PyTorch's `reduction`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean (PyTorch's default).
    #[default]
    Mean,
    /// The sum.
    Sum,
    /// No reduction: per-element losses.
    None,
}

fn reduce<T: Float>(t: Tensor<T>, reduction: Reduction) -> Tensor<T> {
    match reduction {
        Reduction::Mean => t.mean(),
        Reduction::Sum => t.sum(),
        Reduction::None => t,
    }
}

fn same_shape<T: Float>(op: &'static str, a: &Tensor<T>, b: &Tensor<T>) -> Result<(), NnError> {
    let (sa, sb) = (a.shape(), b.shape());
    if sa == sb {
        Ok(())
    } else {
        Err(TensorError::ShapeMismatch {
            op,
            left: sa,
            right: sb,
        }
        .into())
    }
}

/// The squared error `(prediction - target)²`, reduced (`F.mse_loss`). Unlike PyTorch,
/// which broadcasts with a warning, the shapes must be equal.
pub fn mse_loss<T: Float>(
    prediction: &Tensor<T>,
    target: &Tensor<T>,
    reduction: Reduction,
) -> Result<Tensor<T>, NnError> {
    same_shape("mse_loss", prediction, target)?;
    Ok(reduce(prediction.sub(target)?.square(), reduction))
}

/// The absolute error `|prediction - target|`, reduced (`F.l1_loss`); shapes must be equal.
pub fn l1_loss<T: Float>(
    prediction: &Tensor<T>,
    target: &Tensor<T>,
    reduction: Reduction,
) -> Result<Tensor<T>, NnError> {
    same_shape("l1_loss", prediction, target)?;
    Ok(reduce(prediction.sub(target)?.abs(), reduction))
}

/// The cross-entropy of `[n, c]` logits against integer class targets
/// (`F.cross_entropy` without weights or label smoothing): `-log_softmax(logits)[i, t_i]`,
/// reduced.
pub fn cross_entropy<T: Float>(
    logits: &Tensor<T>,
    targets: &[usize],
    reduction: Reduction,
) -> Result<Tensor<T>, NnError> {
    let shape = logits.shape();
    if shape.len() != 2 {
        return Err(TensorError::Rank {
            op: "cross_entropy",
            expected: "2-d [n, c] logits",
            shape,
        }
        .into());
    }
    let picked = logits.log_softmax(1)?.pick(targets)?;
    Ok(reduce(picked.neg(), reduction))
}

/// Mean-squared-error loss as an object (`nn.MSELoss`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MSELoss {
    /// The reduction.
    pub reduction: Reduction,
}

impl MSELoss {
    /// The loss of `prediction` against `target`.
    pub fn forward<T: Float>(
        &self,
        prediction: &Tensor<T>,
        target: &Tensor<T>,
    ) -> Result<Tensor<T>, NnError> {
        mse_loss(prediction, target, self.reduction)
    }
}

/// L1 loss as an object (`nn.L1Loss`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L1Loss {
    /// The reduction.
    pub reduction: Reduction,
}

impl L1Loss {
    /// The loss of `prediction` against `target`.
    pub fn forward<T: Float>(
        &self,
        prediction: &Tensor<T>,
        target: &Tensor<T>,
    ) -> Result<Tensor<T>, NnError> {
        l1_loss(prediction, target, self.reduction)
    }
}

/// Cross-entropy loss as an object (`nn.CrossEntropyLoss`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrossEntropyLoss {
    /// The reduction.
    pub reduction: Reduction,
}

impl CrossEntropyLoss {
    /// The loss of `[n, c]` logits against class indices.
    pub fn forward<T: Float>(
        &self,
        logits: &Tensor<T>,
        targets: &[usize],
    ) -> Result<Tensor<T>, NnError> {
        cross_entropy(logits, targets, self.reduction)
    }
}
