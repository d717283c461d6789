//! Constructor checks, with PyTorch's conditions (`not 0.0 <= x`, so NaN is rejected).

use tempo_param_groups::Value;

use crate::OptimError;

pub(crate) fn repr(v: f64) -> String {
    Value::Float(v).to_string()
}

fn invalid(
    optimizer: &'static str,
    name: &str,
    value: String,
    expected: &'static str,
) -> OptimError {
    OptimError::InvalidHyperparameter {
        optimizer,
        name: name.to_string(),
        value,
        expected,
    }
}

/// `0 <= v` (NaN fails).
pub(crate) fn non_negative(optimizer: &'static str, name: &str, v: f64) -> Result<(), OptimError> {
    if 0.0 <= v {
        Ok(())
    } else {
        Err(invalid(optimizer, name, repr(v), "a number >= 0"))
    }
}

/// `0 <= v < 1` for `betas[index]`.
pub(crate) fn beta(optimizer: &'static str, index: usize, v: f64) -> Result<(), OptimError> {
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(invalid(
            optimizer,
            &format!("betas[{index}]"),
            repr(v),
            "0 <= beta < 1",
        ))
    }
}

/// `lr`, `eps`, both betas and `weight_decay`, in Adam's order.
pub(crate) fn adam_like(
    optimizer: &'static str,
    lr: f64,
    eps: f64,
    betas: (f64, f64),
    weight_decay: f64,
) -> Result<(), OptimError> {
    non_negative(optimizer, "lr", lr)?;
    non_negative(optimizer, "eps", eps)?;
    beta(optimizer, 0, betas.0)?;
    beta(optimizer, 1, betas.1)?;
    non_negative(optimizer, "weight_decay", weight_decay)
}

/// A custom condition.
pub(crate) fn require(
    ok: bool,
    optimizer: &'static str,
    name: &str,
    value: String,
    expected: &'static str,
) -> Result<(), OptimError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(optimizer, name, value, expected))
    }
}
