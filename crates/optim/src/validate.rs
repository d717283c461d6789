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
pub(crate) fn non_negative(optimizer: &'static str, name: &str, v: &f64) -> Result<(), OptimError> {
    let v = *v;
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

/// Both betas: `0 <= beta < 1`, named `betas[0]` and `betas[1]`.
pub(crate) fn betas(
    optimizer: &'static str,
    _name: &str,
    v: &(f64, f64),
) -> Result<(), OptimError> {
    beta(optimizer, 0, v.0)?;
    beta(optimizer, 1, v.1)
}

/// SGD's check, `x < 0` is an error (PyTorch's, unlike the other optimizers'): NaN passes.
pub(crate) fn at_least_zero_or_nan(
    optimizer: &'static str,
    name: &str,
    v: &f64,
) -> Result<(), OptimError> {
    require(
        v.is_nan() || *v >= 0.0,
        optimizer,
        name,
        repr(*v),
        "a number >= 0",
    )
}

/// `0 <= rho <= 1` (Adadelta).
pub(crate) fn rho_range(optimizer: &'static str, name: &str, v: &f64) -> Result<(), OptimError> {
    require(
        (0.0..=1.0).contains(v),
        optimizer,
        name,
        repr(*v),
        "0 <= rho <= 1",
    )
}

/// Rprop's `0 < etaminus < 1 < etaplus`.
pub(crate) fn etas(
    optimizer: &'static str,
    name: &str,
    &(minus, plus): &(f64, f64),
) -> Result<(), OptimError> {
    require(
        0.0 < minus && minus < 1.0 && 1.0 < plus,
        optimizer,
        name,
        format!("({}, {})", repr(minus), repr(plus)),
        "0 < etaminus < 1 < etaplus",
    )
}

/// `v <= 0` (Adafactor's `beta2_decay`; NaN fails).
pub(crate) fn non_positive(optimizer: &'static str, name: &str, v: &f64) -> Result<(), OptimError> {
    require(0.0 >= *v, optimizer, name, repr(*v), "a number <= 0")
}

/// Adafactor's `(eps1, eps2)`: both `>= 0`, `eps1` may be `None`.
pub(crate) fn adafactor_eps(
    optimizer: &'static str,
    _name: &str,
    &(eps1, eps2): &(Option<f64>, f64),
) -> Result<(), OptimError> {
    if let Some(e1) = eps1 {
        require(
            0.0 <= e1,
            optimizer,
            "eps[0] (epsilon1)",
            repr(e1),
            "a number >= 0 or None",
        )?;
    }
    require(
        0.0 <= eps2,
        optimizer,
        "eps[1] (epsilon2)",
        repr(eps2),
        "a number >= 0",
    )
}

/// Adafactor's `d >= 1`.
pub(crate) fn clipping_threshold(
    optimizer: &'static str,
    name: &str,
    v: &f64,
) -> Result<(), OptimError> {
    require(
        1.0 <= *v,
        optimizer,
        name,
        repr(*v),
        "a clipping threshold >= 1",
    )
}

/// Muon's `adjust_lr_fn`: `None` or one of [`crate::MUON_ADJUST_LR_FNS`].
pub(crate) fn adjust_lr_fn(
    optimizer: &'static str,
    name: &str,
    v: &Option<String>,
) -> Result<(), OptimError> {
    match v {
        Some(f) => require(
            crate::MUON_ADJUST_LR_FNS.contains(&f.as_str()),
            optimizer,
            name,
            format!("{f:?}"),
            "None, \"original\", \"match_rms_adamw\" or \"spectral_unclamped\" (this adjust learning rate function is not supported)",
        ),
        None => Ok(()),
    }
}

/// LBFGS's `line_search_fn`: `None` or `"strong_wolfe"`.
pub(crate) fn line_search_fn(
    optimizer: &'static str,
    _name: &str,
    v: &Option<String>,
) -> Result<(), OptimError> {
    match v.as_deref() {
        None | Some("strong_wolfe") => Ok(()),
        Some(other) => Err(OptimError::Unsupported {
            optimizer,
            option: format!("line_search_fn={other:?}"),
            reason: "only 'strong_wolfe' is supported",
        }),
    }
}
