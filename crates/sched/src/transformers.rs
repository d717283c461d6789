//! Hugging Face transformers' named schedules (`transformers.get_scheduler(name, ...)`,
//! transformers 5.25), number for number.
//!
//! Every one of them is, in transformers, a PyTorch `LambdaLR` whose function is the
//! named schedule (a `functools.partial`): `lr = initial_lr * f(last_epoch)`. tempo
//! builds exactly that, a [`LambdaLR`](crate::LambdaLR) with the schedule as its
//! function, so the state dict is the one transformers writes (`lr_lambdas: [{}]` per
//! group, `[None]` for `constant`), resume is exact, and
//! [`lr_at`](crate::LRScheduler::lr_at) is the closed form.
//!
//! tempo's own presets ([`WarmupCosineLR`](crate::WarmupCosineLR),
//! [`WarmupStableDecayLR`](crate::WarmupStableDecayLR),
//! [`InverseSqrtLR`](crate::InverseSqrtLR)) are other schedules (they floor at a
//! minimum lr after the end, count the warmup differently or take an absolute minimum),
//! so each name keeps its own numbers.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tempo_param_groups::OptimizerParamGroups;

use crate::base::invalid;
use crate::{DecayShape, LRLambda, LambdaLR, LambdaLRConfig, PerGroup, SchedError};

fn half() -> f64 {
    0.5
}
fn one() -> f64 {
    1.0
}
fn lr_end_default() -> f64 {
    1e-7
}
fn cosine_shape() -> DecayShape {
    DecayShape::Cosine
}

/// One of transformers' named schedules with its arguments, by transformers' names
/// (`num_warmup_steps`, `num_training_steps`, and each schedule function's own).
///
/// As JSON: `{"name": "cosine", "num_warmup_steps": 100, "num_training_steps": 1000}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformersSchedule {
    /// `get_linear_schedule_with_warmup`: linear warmup from 0, then linear decay to 0 at
    /// `num_training_steps`.
    Linear {
        /// Steps of linear warmup.
        num_warmup_steps: i64,
        /// The step at which the lr reaches 0.
        num_training_steps: i64,
    },
    /// `get_cosine_schedule_with_warmup`: linear warmup, then `num_cycles` cosine waves
    /// (0.5: half a wave, down to 0 at `num_training_steps`; it rises again after).
    Cosine {
        /// Steps of linear warmup.
        num_warmup_steps: i64,
        /// The length of warmup plus the waves.
        num_training_steps: i64,
        /// Waves of the cosine (0.5).
        #[serde(default = "half")]
        num_cycles: f64,
    },
    /// `get_cosine_with_hard_restarts_schedule_with_warmup`: linear warmup, then
    /// `num_cycles` cosine decays to 0, each restarting at the base lr; 0 after
    /// `num_training_steps`.
    CosineWithRestarts {
        /// Steps of linear warmup.
        num_warmup_steps: i64,
        /// The step at which the last decay ends.
        num_training_steps: i64,
        /// The number of decays (1).
        #[serde(default = "one")]
        num_cycles: f64,
    },
    /// `get_polynomial_decay_schedule_with_warmup`: linear warmup, then a polynomial
    /// decay from the optimizer's default lr to `lr_end`, reached at
    /// `num_training_steps`.
    Polynomial {
        /// Steps of linear warmup.
        num_warmup_steps: i64,
        /// The step at which the lr reaches `lr_end`.
        num_training_steps: i64,
        /// The final lr (1e-7); must be below the optimizer's default lr.
        #[serde(default = "lr_end_default")]
        lr_end: f64,
        /// The polynomial's power (1.0).
        #[serde(default = "one")]
        power: f64,
    },
    /// `get_constant_schedule`: the base lr throughout.
    Constant,
    /// `get_constant_schedule_with_warmup`: linear warmup, then the base lr.
    ConstantWithWarmup {
        /// Steps of linear warmup.
        num_warmup_steps: i64,
    },
    /// `get_inverse_sqrt_schedule`: linear warmup, then `1 / sqrt((s + timescale -
    /// num_warmup_steps) / timescale)`.
    InverseSqrt {
        /// Steps of linear warmup.
        num_warmup_steps: i64,
        /// The decay's time scale (`num_warmup_steps`, or 10000 when that is 0).
        #[serde(default)]
        timescale: Option<i64>,
    },
    /// `get_cosine_with_min_lr_schedule_with_warmup`: the cosine schedule, from the base
    /// lr down to a minimum; exactly one of `min_lr` and `min_lr_rate`.
    CosineWithMinLr {
        /// Steps of linear warmup.
        num_warmup_steps: i64,
        /// The length of warmup plus the waves.
        num_training_steps: i64,
        /// Waves of the cosine (0.5).
        #[serde(default = "half")]
        num_cycles: f64,
        /// The minimum lr, as a rate of the optimizer's default lr.
        #[serde(default)]
        min_lr: Option<f64>,
        /// The minimum lr as a fraction of each group's base lr.
        #[serde(default)]
        min_lr_rate: Option<f64>,
    },
    /// `get_cosine_with_min_lr_schedule_with_warmup_lr_rate`: as `cosine_with_min_lr`,
    /// shifted by one step (the warmup reaches the base lr at its last step, the minimum
    /// comes at `num_training_steps - 1`), with an optional warmup start rate.
    CosineWarmupWithMinLr {
        /// Steps of linear warmup.
        num_warmup_steps: i64,
        /// The length of warmup plus the waves.
        num_training_steps: i64,
        /// Waves of the cosine (0.5).
        #[serde(default = "half")]
        num_cycles: f64,
        /// The minimum lr, as a rate of the optimizer's default lr.
        #[serde(default)]
        min_lr: Option<f64>,
        /// The minimum lr as a fraction of each group's base lr.
        #[serde(default)]
        min_lr_rate: Option<f64>,
        /// The lr at step 0 as a fraction of the base (else `1 / num_warmup_steps`).
        #[serde(default)]
        warmup_lr_rate: Option<f64>,
    },
    /// `get_wsd_schedule`: warmup, a stable phase at the base lr, a decay to
    /// `min_lr_ratio`, then `min_lr_ratio`.
    WarmupStableDecay {
        /// Steps of warmup.
        num_warmup_steps: i64,
        /// Steps of decay (required).
        num_decay_steps: i64,
        /// The whole length; the stable phase is what warmup and decay leave of it.
        #[serde(default)]
        num_training_steps: Option<i64>,
        /// Steps of the stable phase (wins over `num_training_steps`).
        #[serde(default)]
        num_stable_steps: Option<i64>,
        /// `linear` (default), `cosine` or `1-sqrt`.
        #[serde(default)]
        warmup_type: DecayShape,
        /// `linear`, `cosine` (default) or `1-sqrt`.
        #[serde(default = "cosine_shape")]
        decay_type: DecayShape,
        /// The lr at the end, as a fraction of the base (0).
        #[serde(default)]
        min_lr_ratio: f64,
        /// Waves of the cosine decay (0.5).
        #[serde(default = "half")]
        num_cycles: f64,
    },
}

/// Every name [`TransformersSchedule`] knows, as transformers spells it.
pub const TRANSFORMERS_SCHEDULES: &[&str] = &[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "cosine_with_min_lr",
    "cosine_warmup_with_min_lr",
    "warmup_stable_decay",
];

/// The arguments of [`transformers_scheduler`].
#[derive(Debug, Clone, PartialEq)]
pub struct TransformersConfig {
    /// The schedule.
    pub schedule: TransformersSchedule,
    /// The optimizer's default lr (`optimizer.defaults["lr"]`), which `polynomial`
    /// decays from and `min_lr` is divided by; `None`: the first group's base lr (its
    /// `initial_lr`, else its lr), which it is unless groups were given their own lrs.
    pub optimizer_lr: Option<f64>,
    /// PyTorch's `last_epoch` (-1), as for every scheduler.
    pub last_epoch: i64,
}

impl TransformersConfig {
    /// A fresh run of `schedule`.
    pub fn new(schedule: TransformersSchedule) -> Self {
        TransformersConfig {
            schedule,
            optimizer_lr: None,
            last_epoch: -1,
        }
    }
}

/// The schedule function with everything resolved: what transformers' `partial` holds.
#[derive(Debug, Clone, Copy)]
enum Lambda {
    Linear {
        w: i64,
        t: i64,
    },
    /// Also `cosine_with_min_lr` (`r` > 0): transformers' module defines the cosine
    /// function twice and the later one, with the min-lr rate, is the one that runs.
    Cosine {
        w: i64,
        t: i64,
        nc: f64,
        r: f64,
    },
    CosineWithRestarts {
        w: i64,
        t: i64,
        nc: f64,
    },
    Polynomial {
        w: i64,
        t: i64,
        lr_end: f64,
        power: f64,
        lr_init: f64,
    },
    Constant,
    ConstantWithWarmup {
        w: i64,
    },
    InverseSqrt {
        w: i64,
        timescale: i64,
    },
    CosineWarmupWithMinLr {
        w: f64,
        t: f64,
        nc: f64,
        r: f64,
        wr: Option<f64>,
    },
    Wsd {
        w: i64,
        s: i64,
        d: i64,
        warmup: DecayShape,
        decay: DecayShape,
        m: f64,
        nc: f64,
    },
}

/// Python's `max(0.0, x)` (and `max(0, x)`, whose int 0 is the same lr factor).
fn max0(x: f64) -> f64 {
    if x > 0.0 {
        x
    } else {
        0.0
    }
}

/// `float(s) / float(max(1, w))`.
fn warmup(s: i64, w: i64) -> f64 {
    s as f64 / w.max(1) as f64
}

/// The cosine with min-lr factor transformers computes after the warmup.
fn cosine_factor(nc: f64, p: f64, r: f64) -> f64 {
    let f = 0.5 * (1.0 + (PI * nc * 2.0 * p).cos());
    max0(f * (1.0 - r) + r)
}

impl Lambda {
    fn eval(&self, s: i64) -> f64 {
        match *self {
            Lambda::Linear { w, t } => {
                if s < w {
                    warmup(s, w)
                } else {
                    max0((t - s) as f64 / (t - w).max(1) as f64)
                }
            }
            Lambda::Cosine { w, t, nc, r } => {
                if s < w {
                    return warmup(s, w);
                }
                let p = (s - w) as f64 / (t - w).max(1) as f64;
                cosine_factor(nc, p, r)
            }
            Lambda::CosineWithRestarts { w, t, nc } => {
                if s < w {
                    return warmup(s, w);
                }
                let p = (s - w) as f64 / (t - w).max(1) as f64;
                if p >= 1.0 {
                    return 0.0;
                }
                // Python's float `%` by 1.0 on a non-negative number is fmod.
                max0(0.5 * (1.0 + (PI * ((nc * p) % 1.0)).cos()))
            }
            Lambda::Polynomial {
                w,
                t,
                lr_end,
                power,
                lr_init,
            } => {
                if s < w {
                    warmup(s, w)
                } else if s > t {
                    lr_end / lr_init
                } else {
                    let lr_range = lr_init - lr_end;
                    let pct = 1.0 - (s - w) as f64 / (t - w) as f64;
                    (lr_range * pct.powf(power) + lr_end) / lr_init
                }
            }
            Lambda::Constant => 1.0,
            Lambda::ConstantWithWarmup { w } => {
                if s < w {
                    s as f64 / (w as f64).max(1.0)
                } else {
                    1.0
                }
            }
            Lambda::InverseSqrt { w, timescale } => {
                if s < w {
                    warmup(s, w)
                } else {
                    let shift = timescale - w;
                    1.0 / ((s + shift) as f64 / timescale as f64).sqrt()
                }
            }
            Lambda::CosineWarmupWithMinLr { w, t, nc, r, wr } => {
                let s = s as f64;
                if s < w {
                    return match wr {
                        None => (s + 1.0) / w.max(1.0),
                        Some(wr) => wr + (1.0 - wr) * s / (w - 1.0).max(1.0),
                    };
                }
                let p = (s - w + 1.0) / (t - w).max(1.0);
                cosine_factor(nc, p, r)
            }
            Lambda::Wsd {
                w,
                s: stable,
                d,
                warmup: up,
                decay,
                m,
                nc,
            } => {
                if s < w {
                    let p = warmup(s, w);
                    let f = match up {
                        DecayShape::Linear => p,
                        DecayShape::Cosine => 0.5 * (1.0 - (PI * p).cos()),
                        DecayShape::OneMinusSqrt => 1.0 - (1.0 - p).sqrt(),
                    };
                    return max0(f * (1.0 - m) + m);
                }
                if s < w + stable {
                    return 1.0;
                }
                if s < w + stable + d {
                    let p = (s - w - stable) as f64 / d.max(1) as f64;
                    let f = match decay {
                        DecayShape::Linear => 1.0 - p,
                        DecayShape::Cosine => 0.5 * (1.0 + (PI * nc * 2.0 * p).cos()),
                        DecayShape::OneMinusSqrt => 1.0 - p.sqrt(),
                    };
                    return max0(f * (1.0 - m) + m);
                }
                m
            }
        }
    }
}

const NAME: &str = "transformers";

/// An int argument that must be `>= 0`.
fn steps(arg: &'static str, v: i64) -> Result<i64, SchedError> {
    if (0..1 << 52).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(NAME, arg, "an int >= 0", v))
    }
}

fn finite(arg: &'static str, v: f64) -> Result<f64, SchedError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(invalid(NAME, arg, "a finite number", v))
    }
}

/// transformers' min-lr rule: exactly one of `min_lr` (divided by the default lr) and
/// `min_lr_rate`.
fn min_lr_rate(
    min_lr: Option<f64>,
    rate: Option<f64>,
    optimizer_lr: f64,
) -> Result<f64, SchedError> {
    match (min_lr, rate) {
        (Some(_), Some(_)) => Err(invalid(
            NAME,
            "min_lr",
            "only one of min_lr or min_lr_rate",
            "both",
        )),
        (Some(m), None) => finite("min_lr", m / optimizer_lr),
        (None, Some(r)) => finite("min_lr_rate", r),
        (None, None) => Err(invalid(
            NAME,
            "min_lr_rate",
            "one of min_lr or min_lr_rate",
            "neither",
        )),
    }
}

impl TransformersSchedule {
    /// transformers' name of the schedule (`"cosine_with_restarts"`).
    pub fn name(&self) -> &'static str {
        match self {
            TransformersSchedule::Linear { .. } => "linear",
            TransformersSchedule::Cosine { .. } => "cosine",
            TransformersSchedule::CosineWithRestarts { .. } => "cosine_with_restarts",
            TransformersSchedule::Polynomial { .. } => "polynomial",
            TransformersSchedule::Constant => "constant",
            TransformersSchedule::ConstantWithWarmup { .. } => "constant_with_warmup",
            TransformersSchedule::InverseSqrt { .. } => "inverse_sqrt",
            TransformersSchedule::CosineWithMinLr { .. } => "cosine_with_min_lr",
            TransformersSchedule::CosineWarmupWithMinLr { .. } => "cosine_warmup_with_min_lr",
            TransformersSchedule::WarmupStableDecay { .. } => "warmup_stable_decay",
        }
    }

    /// Validates the arguments as transformers' schedule function does (and, where
    /// transformers would divide by zero at some later step, at once).
    fn resolve(&self, optimizer_lr: f64) -> Result<Lambda, SchedError> {
        Ok(match *self {
            TransformersSchedule::Linear {
                num_warmup_steps,
                num_training_steps,
            } => Lambda::Linear {
                w: steps("num_warmup_steps", num_warmup_steps)?,
                t: steps("num_training_steps", num_training_steps)?,
            },
            TransformersSchedule::Cosine {
                num_warmup_steps,
                num_training_steps,
                num_cycles,
            } => Lambda::Cosine {
                w: steps("num_warmup_steps", num_warmup_steps)?,
                t: steps("num_training_steps", num_training_steps)?,
                nc: finite("num_cycles", num_cycles)?,
                r: 0.0,
            },
            TransformersSchedule::CosineWithRestarts {
                num_warmup_steps,
                num_training_steps,
                num_cycles,
            } => Lambda::CosineWithRestarts {
                w: steps("num_warmup_steps", num_warmup_steps)?,
                t: steps("num_training_steps", num_training_steps)?,
                nc: finite("num_cycles", num_cycles)?,
            },
            TransformersSchedule::Polynomial {
                num_warmup_steps,
                num_training_steps,
                lr_end,
                power,
            } => {
                let (w, t) = (
                    steps("num_warmup_steps", num_warmup_steps)?,
                    steps("num_training_steps", num_training_steps)?,
                );
                let lr_end = finite("lr_end", lr_end)?;
                // Python's `not (lr_init > lr_end)`: a NaN lr is refused too.
                if optimizer_lr.partial_cmp(&lr_end) != Some(std::cmp::Ordering::Greater) {
                    return Err(SchedError::InvalidArgument {
                        scheduler: NAME,
                        arg: "lr_end",
                        expected: "smaller than the optimizer's initial lr",
                        found: format!("lr_end {lr_end:?}, initial lr {optimizer_lr:?}"),
                    });
                }
                if t == w {
                    // transformers: ZeroDivisionError at step num_training_steps.
                    return Err(SchedError::DivisionByZero {
                        scheduler: NAME,
                        what: "polynomial's num_training_steps - num_warmup_steps",
                    });
                }
                Lambda::Polynomial {
                    w,
                    t,
                    lr_end,
                    power: finite("power", power)?,
                    lr_init: optimizer_lr,
                }
            }
            TransformersSchedule::Constant => Lambda::Constant,
            TransformersSchedule::ConstantWithWarmup { num_warmup_steps } => {
                Lambda::ConstantWithWarmup {
                    w: steps("num_warmup_steps", num_warmup_steps)?,
                }
            }
            TransformersSchedule::InverseSqrt {
                num_warmup_steps,
                timescale,
            } => {
                let w = steps("num_warmup_steps", num_warmup_steps)?;
                let timescale = match timescale {
                    None if w == 0 => 10_000,
                    None => w,
                    Some(ts) if (1..1 << 52).contains(&ts) => ts,
                    Some(ts) => return Err(invalid(NAME, "timescale", "an int > 0", ts)),
                };
                Lambda::InverseSqrt { w, timescale }
            }
            TransformersSchedule::CosineWithMinLr {
                num_warmup_steps,
                num_training_steps,
                num_cycles,
                min_lr,
                min_lr_rate: rate,
            } => Lambda::Cosine {
                w: steps("num_warmup_steps", num_warmup_steps)?,
                t: steps("num_training_steps", num_training_steps)?,
                nc: finite("num_cycles", num_cycles)?,
                r: min_lr_rate(min_lr, rate, optimizer_lr)?,
            },
            TransformersSchedule::CosineWarmupWithMinLr {
                num_warmup_steps,
                num_training_steps,
                num_cycles,
                min_lr,
                min_lr_rate: rate,
                warmup_lr_rate,
            } => Lambda::CosineWarmupWithMinLr {
                w: steps("num_warmup_steps", num_warmup_steps)? as f64,
                t: steps("num_training_steps", num_training_steps)? as f64,
                nc: finite("num_cycles", num_cycles)?,
                r: min_lr_rate(min_lr, rate, optimizer_lr)?,
                wr: warmup_lr_rate
                    .map(|wr| finite("warmup_lr_rate", wr))
                    .transpose()?,
            },
            TransformersSchedule::WarmupStableDecay {
                num_warmup_steps,
                num_decay_steps,
                num_training_steps,
                num_stable_steps,
                warmup_type,
                decay_type,
                min_lr_ratio,
                num_cycles,
            } => {
                let w = steps("num_warmup_steps", num_warmup_steps)?;
                let d = steps("num_decay_steps", num_decay_steps)?;
                let s = match (num_stable_steps, num_training_steps) {
                    (Some(s), _) => steps("num_stable_steps", s)?,
                    // May be negative, as in transformers: the decay then starts early.
                    (None, Some(t)) => steps("num_training_steps", t)? - w - d,
                    (None, None) => {
                        return Err(invalid(
                            NAME,
                            "num_training_steps",
                            "given, or num_stable_steps given",
                            "neither",
                        ))
                    }
                };
                Lambda::Wsd {
                    w,
                    s,
                    d,
                    warmup: warmup_type,
                    decay: decay_type,
                    m: finite("min_lr_ratio", min_lr_ratio)?,
                    nc: finite("num_cycles", num_cycles)?,
                }
            }
        })
    }

    /// The schedule's factor at step `s` (the lr is `initial_lr` times it), with
    /// `optimizer_lr` the optimizer's default lr; `Err` for arguments transformers
    /// refuses.
    pub fn factor(&self, optimizer_lr: f64, s: i64) -> Result<f64, SchedError> {
        Ok(self.resolve(optimizer_lr)?.eval(s))
    }

    /// Reads transformers' `get_scheduler(name, optimizer, num_warmup_steps,
    /// num_training_steps, scheduler_specific_kwargs)` arguments, with its rules: an
    /// unknown name is an `Err` listing the known ones; `constant` ignores every
    /// argument; the others need `num_warmup_steps`; `constant_with_warmup` ignores
    /// the rest; `inverse_sqrt` ignores `num_training_steps`; all but
    /// `warmup_stable_decay` of the others need it; an argument the schedule function
    /// does not take is an `Err`. `last_epoch` among `scheduler_specific_kwargs` is
    /// returned beside the schedule (-1 when absent or ignored).
    pub fn from_get_scheduler(
        name: &str,
        num_warmup_steps: Option<i64>,
        num_training_steps: Option<i64>,
        scheduler_specific_kwargs: &Map<String, Json>,
    ) -> Result<(TransformersSchedule, i64), SchedError> {
        let spec_error = |reason: String| SchedError::InvalidSpec {
            scheduler: format!("transformers:{name}"),
            reason,
        };
        if !TRANSFORMERS_SCHEDULES.contains(&name) {
            return Err(spec_error(format!(
                "`{name}` is not one of transformers' schedules: {}",
                TRANSFORMERS_SCHEDULES.join(", ")
            )));
        }
        if name == "constant" {
            return Ok((TransformersSchedule::Constant, -1));
        }
        let w = num_warmup_steps
            .ok_or_else(|| spec_error("requires `num_warmup_steps`".to_string()))?;
        let mut object = Map::new();
        object.insert("name".into(), name.into());
        object.insert("num_warmup_steps".into(), w.into());
        let mut last_epoch = -1;
        if name != "constant_with_warmup" {
            for (k, v) in scheduler_specific_kwargs {
                if k == "last_epoch" {
                    last_epoch = v.as_i64().ok_or_else(|| {
                        spec_error(format!("`last_epoch`: expected an int, found {v}"))
                    })?;
                } else if k == "num_warmup_steps" || k == "num_training_steps" {
                    return Err(spec_error(format!(
                        "`{k}` is an argument of get_scheduler, not of the schedule"
                    )));
                } else {
                    object.insert(k.clone(), v.clone());
                }
            }
        }
        match (name, num_training_steps) {
            ("constant_with_warmup" | "inverse_sqrt", _) => {}
            ("warmup_stable_decay", t) => {
                if let Some(t) = t {
                    object.insert("num_training_steps".into(), t.into());
                }
            }
            (_, Some(t)) => {
                object.insert("num_training_steps".into(), t.into());
            }
            (_, None) => return Err(spec_error("requires `num_training_steps`".to_string())),
        }
        let schedule =
            serde_json::from_value(Json::Object(object)).map_err(|e| spec_error(e.to_string()))?;
        Ok((schedule, last_epoch))
    }
}

/// The function of one of transformers' schedules as a LambdaLR's `lr_lambda`.
fn lambda(schedule: &TransformersSchedule, optimizer_lr: f64) -> Result<LRLambda, SchedError> {
    let f = schedule.resolve(optimizer_lr)?;
    // `constant` is a plain function in transformers (its state entry is None); the
    // others are `functools.partial`s (an empty dict).
    let partial = !matches!(f, Lambda::Constant);
    Ok(LRLambda::pure(move |s| f.eval(s), partial))
}

/// One of transformers' named schedules on `opt`, as transformers builds it: a
/// [`LambdaLR`] whose function is the schedule (PyTorch's `lr = initial_lr * f(epoch)`).
///
/// ```
/// use tempo_sched::{transformers_scheduler, LRScheduler, SimulatedGroups, TransformersConfig,
///     TransformersSchedule};
/// let mut opt = SimulatedGroups::adam(&[0.1], (0.9, 0.999));
/// let schedule = TransformersSchedule::Linear { num_warmup_steps: 2, num_training_steps: 4 };
/// let mut s = transformers_scheduler(&mut opt, TransformersConfig::new(schedule))?;
/// let mut lrs = vec![opt.lrs()[0]];
/// for _ in 0..4 {
///     s.step(&mut opt)?;
///     lrs.push(opt.lrs()[0]);
/// }
/// assert_eq!(lrs, [0.0, 0.05, 0.1, 0.05, 0.0]);
/// # Ok::<(), tempo_sched::SchedError>(())
/// ```
pub fn transformers_scheduler(
    opt: &mut dyn OptimizerParamGroups,
    config: TransformersConfig,
) -> Result<LambdaLR, SchedError> {
    let optimizer_lr = match config.optimizer_lr {
        Some(lr) => lr,
        None if opt.num_groups() == 0 => 0.0,
        None => match opt.initial_lr(0) {
            Some(lr) => lr,
            None => opt.lr(0)?,
        },
    };
    let f = lambda(&config.schedule, optimizer_lr)?;
    LambdaLR::new(
        opt,
        LambdaLRConfig {
            lr_lambda: PerGroup::All(f),
            last_epoch: config.last_epoch,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(json: &str) -> TransformersSchedule {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn unknown_arguments_and_names_are_refused() {
        assert!(serde_json::from_str::<TransformersSchedule>(
            r#"{"name": "linear", "num_warmup_steps": 1, "num_training_steps": 3, "power": 2}"#
        )
        .is_err());
        let err =
            TransformersSchedule::from_get_scheduler("cosinus", Some(1), Some(3), &Map::new())
                .expect_err("unknown");
        assert!(err.to_string().contains("cosine_with_restarts"), "{err}");
    }

    #[test]
    fn get_schedulers_rules() {
        let none = Map::new();
        let (s, e) = TransformersSchedule::from_get_scheduler("constant", None, None, &none)
            .expect("constant needs nothing");
        assert_eq!((s, e), (TransformersSchedule::Constant, -1));
        assert!(TransformersSchedule::from_get_scheduler("linear", None, Some(3), &none).is_err());
        assert!(TransformersSchedule::from_get_scheduler("linear", Some(1), None, &none).is_err());
        let (s, _) = TransformersSchedule::from_get_scheduler("inverse_sqrt", Some(2), None, &none)
            .expect("T is not needed");
        assert_eq!(
            s,
            sched(r#"{"name": "inverse_sqrt", "num_warmup_steps": 2}"#)
        );
        let mut kw = Map::new();
        kw.insert("num_cycles".into(), 3.into());
        kw.insert("last_epoch".into(), 4.into());
        let (s, e) =
            TransformersSchedule::from_get_scheduler("cosine_with_restarts", Some(1), Some(9), &kw)
                .expect("with kwargs");
        assert_eq!(e, 4);
        assert_eq!(
            s,
            TransformersSchedule::CosineWithRestarts {
                num_warmup_steps: 1,
                num_training_steps: 9,
                num_cycles: 3.0
            }
        );
        // warmup_stable_decay requires num_decay_steps.
        assert!(TransformersSchedule::from_get_scheduler(
            "warmup_stable_decay",
            Some(1),
            Some(9),
            &none
        )
        .is_err());
    }

    #[test]
    fn edge_cases_follow_transformers() {
        // polynomial: lr_end must be below the default lr; T == W divides by zero.
        let poly = |w, t, lr_end| TransformersSchedule::Polynomial {
            num_warmup_steps: w,
            num_training_steps: t,
            lr_end,
            power: 1.0,
        };
        assert!(poly(1, 5, 0.1).factor(0.1, 0).is_err());
        assert!(matches!(
            poly(3, 3, 1e-7).factor(0.1, 0),
            Err(SchedError::DivisionByZero { .. })
        ));
        let f = poly(1, 5, 1e-3).factor(0.1, 9).expect("valid");
        assert!((f - 0.01).abs() < 1e-15);
        // min_lr and min_lr_rate: exactly one.
        let min = |min_lr, rate| TransformersSchedule::CosineWithMinLr {
            num_warmup_steps: 0,
            num_training_steps: 4,
            num_cycles: 0.5,
            min_lr,
            min_lr_rate: rate,
        };
        assert!(min(Some(0.01), Some(0.1)).factor(0.1, 0).is_err());
        assert!(min(None, None).factor(0.1, 0).is_err());
        let end = min(Some(0.01), None).factor(0.1, 4).expect("valid");
        assert!((end - 0.1).abs() < 1e-15, "{end}");
        // inverse_sqrt: timescale defaults to W, or 10000 for W = 0.
        let inv = TransformersSchedule::InverseSqrt {
            num_warmup_steps: 4,
            timescale: None,
        };
        assert!((inv.factor(0.1, 16).expect("valid") - 0.5).abs() < 1e-15);
        // The cosine rises again after num_training_steps; hard restarts stay at 0.
        let cos = sched(r#"{"name": "cosine", "num_warmup_steps": 3, "num_training_steps": 10}"#);
        assert!(cos.factor(0.1, 12).expect("valid") > cos.factor(0.1, 11).expect("valid"));
        let hard = sched(
            r#"{"name": "cosine_with_restarts", "num_warmup_steps": 3, "num_training_steps": 10}"#,
        );
        assert_eq!(
            hard.factor(0.1, 12).expect("valid").to_bits(),
            0.0f64.to_bits()
        );
        // warmup_stable_decay: neither T nor S is an error; a negative stable phase is not.
        let wsd = |t: Option<i64>, s: Option<i64>| TransformersSchedule::WarmupStableDecay {
            num_warmup_steps: 2,
            num_decay_steps: 4,
            num_training_steps: t,
            num_stable_steps: s,
            warmup_type: DecayShape::Linear,
            decay_type: DecayShape::Linear,
            min_lr_ratio: 0.0,
            num_cycles: 0.5,
        };
        assert!(wsd(None, None).factor(0.1, 0).is_err());
        assert!((wsd(Some(5), None).factor(0.1, 2).expect("valid") - 0.75).abs() < 1e-15);
        assert!((wsd(Some(5), Some(1)).factor(0.1, 2).expect("valid") - 1.0).abs() < 1e-15);
    }
}
