//! Schedulers described as data: the `scheduler` field of tempo's config and case files.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tempo_param_groups::OptimizerParamGroups;

use crate::transformers_scheduler;
use crate::{
    ChainedScheduler, ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, CyclicLR,
    CyclicLRConfig, ExponentialLR, InverseSqrtLR, LRLambda, LRScheduler, LambdaLR, LambdaLRConfig,
    LinearLR, MultiStepLR, MultiplicativeLR, MultiplicativeLRConfig, NamedLambda, OneCycleLR,
    PerGroup, PolynomialLR, ReduceLROnPlateau, ScaleFn, SchedError, SequentialLR, StepLR,
    TransformersConfig, TransformersSchedule, WarmupCosineLR, WarmupStableDecayLR, SWALR,
};

/// A scheduler as data: PyTorch's class name, its keyword arguments by PyTorch's names,
/// and, for SequentialLR and ChainedScheduler, the children (built in order on the same
/// optimizer, before the parent).
///
/// This is exactly the `scheduler` field of the conformance case files:
///
/// ```
/// use tempo_sched::SchedulerSpec;
/// let spec: SchedulerSpec = serde_json::from_str(
///     r#"{"type": "StepLR", "kwargs": {"step_size": 3, "gamma": 0.5}}"#,
/// ).unwrap();
/// assert_eq!(spec.r#type, "StepLR");
/// assert_eq!(spec, "StepLR(step_size=3, gamma=0.5)".parse().unwrap());
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerSpec {
    /// The PyTorch class name (`"CyclicLR"`), or a preset's name (`"WarmupCosineLR"`).
    pub r#type: String,
    /// The keyword arguments, by PyTorch's names; missing means none.
    #[serde(default)]
    pub kwargs: Map<String, Json>,
    /// The children of SequentialLR and ChainedScheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedulers: Option<Vec<SchedulerSpec>>,
}

impl SchedulerSpec {
    /// A spec without arguments.
    pub fn new(r#type: impl Into<String>) -> Self {
        SchedulerSpec {
            r#type: r#type.into(),
            kwargs: Map::new(),
            schedulers: None,
        }
    }

    /// Adds a keyword argument.
    pub fn kwarg(mut self, name: impl Into<String>, value: impl Into<Json>) -> Self {
        self.kwargs.insert(name.into(), value.into());
        self
    }

    /// Sets the children (SequentialLR, ChainedScheduler).
    pub fn children(mut self, schedulers: Vec<SchedulerSpec>) -> Self {
        self.schedulers = Some(schedulers);
        self
    }
}

impl std::str::FromStr for SchedulerSpec {
    type Err = SchedError;
    /// Parses a Python call, see [`parse_scheduler_call`](crate::parse_scheduler_call).
    fn from_str(s: &str) -> Result<Self, SchedError> {
        crate::call::parse_scheduler_call(s)
    }
}

/// Builds one registered scheduler from its spec.
type Builder =
    fn(&SchedulerSpec, &mut dyn OptimizerParamGroups) -> Result<Box<dyn LRScheduler>, SchedError>;

/// One scheduler tempo has: an entry of [`SCHEDULERS`].
#[derive(Debug, Clone, Copy)]
pub struct SchedulerInfo {
    /// PyTorch's class name, a preset's name, or `transformers:<name>`.
    pub name: &'static str,
    /// A call with the arguments it requires (the others at their defaults), as
    /// [`SchedulerSpec`]'s `FromStr` reads it: what the tests, the benchmarks and the
    /// CLI build when they want one of each.
    pub example: &'static str,
    build: Builder,
}

/// One entry: `name => example, builder`.
macro_rules! registry {
    ($($name:literal => $example:literal, $build:expr;)*) => {
        /// Every scheduler tempo has, with an example call and its builder: the one
        /// list behind [`build_scheduler`], [`SCHEDULER_NAMES`] and everything that lists
        /// schedulers.
        pub const SCHEDULERS: &[SchedulerInfo] = &[$(SchedulerInfo {
            name: $name,
            example: $example,
            build: $build,
        }),*];

        /// Every scheduler name [`build_scheduler`] knows (those of [`SCHEDULERS`]).
        pub const SCHEDULER_NAMES: &[&str] = &[$($name),*];
    };
}

/// A scheduler whose config is its kwargs, read by serde.
macro_rules! typed {
    ($ty:ident) => {
        |s, opt| Ok(Box::new($ty::new(opt, config(&s.r#type, &s.kwargs)?)?))
    };
}

registry! {
    "LambdaLR" => "LambdaLR(lr_lambda={'fn': 'pow', 'base': 0.95})", |s, opt| {
        let (lr_lambda, last_epoch) = lr_lambdas(&s.r#type, &s.kwargs)?;
        let config = LambdaLRConfig { lr_lambda, last_epoch };
        Ok(Box::new(LambdaLR::new(opt, config)?))
    };
    "MultiplicativeLR" => "MultiplicativeLR(lr_lambda={'fn': 'const', 'factor': 0.95})", |s, opt| {
        let (lr_lambda, last_epoch) = lr_lambdas(&s.r#type, &s.kwargs)?;
        let config = MultiplicativeLRConfig { lr_lambda, last_epoch };
        Ok(Box::new(MultiplicativeLR::new(opt, config)?))
    };
    "StepLR" => "StepLR(step_size=3)", typed!(StepLR);
    "MultiStepLR" => "MultiStepLR(milestones=[3, 6])", typed!(MultiStepLR);
    "ConstantLR" => "ConstantLR()", typed!(ConstantLR);
    "LinearLR" => "LinearLR()", typed!(LinearLR);
    "ExponentialLR" => "ExponentialLR(gamma=0.9)", typed!(ExponentialLR);
    "PolynomialLR" => "PolynomialLR()", typed!(PolynomialLR);
    "CosineAnnealingLR" => "CosineAnnealingLR(T_max=10)", typed!(CosineAnnealingLR);
    "CosineAnnealingWarmRestarts" => "CosineAnnealingWarmRestarts(T_0=4)",
        typed!(CosineAnnealingWarmRestarts);
    "CyclicLR" => "CyclicLR(base_lr=0.01, max_lr=0.1)", cyclic;
    "OneCycleLR" => "OneCycleLR(max_lr=0.1, total_steps=20)", typed!(OneCycleLR);
    "ReduceLROnPlateau" => "ReduceLROnPlateau()", typed!(ReduceLROnPlateau);
    "SWALR" => "SWALR(swa_lr=0.05)", typed!(SWALR);
    "SequentialLR" =>
        "SequentialLR(schedulers=[ConstantLR(), ExponentialLR(gamma=0.9)], milestones=[3])",
        |s, opt| {
            let config = config(&s.r#type, &s.kwargs)?;
            let children = children(s, opt)?;
            Ok(Box::new(SequentialLR::new(opt, children, config)?))
        };
    "ChainedScheduler" =>
        "ChainedScheduler(schedulers=[ConstantLR(), ExponentialLR(gamma=0.9)])",
        |s, opt| {
            if let Some(k) = s.kwargs.keys().next() {
                return Err(spec_error(&s.r#type, format!("unknown argument `{k}`")));
            }
            let children = children(s, opt)?;
            Ok(Box::new(ChainedScheduler::new(opt, children)?))
        };
    "WarmupCosineLR" => "WarmupCosineLR(warmup_steps=2, total_steps=10)", typed!(WarmupCosineLR);
    "WarmupStableDecayLR" =>
        "WarmupStableDecayLR(warmup_steps=2, stable_steps=3, decay_steps=5)",
        typed!(WarmupStableDecayLR);
    "InverseSqrtLR" => "InverseSqrtLR(warmup_steps=2)", typed!(InverseSqrtLR);
    "transformers:linear" =>
        "transformers:linear(num_warmup_steps=2, num_training_steps=10)", transformers;
    "transformers:cosine" =>
        "transformers:cosine(num_warmup_steps=2, num_training_steps=10)", transformers;
    "transformers:cosine_with_restarts" =>
        "transformers:cosine_with_restarts(num_warmup_steps=2, num_training_steps=10)",
        transformers;
    "transformers:polynomial" =>
        "transformers:polynomial(num_warmup_steps=2, num_training_steps=10)", transformers;
    "transformers:constant" => "transformers:constant()", transformers;
    "transformers:constant_with_warmup" =>
        "transformers:constant_with_warmup(num_warmup_steps=2)", transformers;
    "transformers:inverse_sqrt" => "transformers:inverse_sqrt(num_warmup_steps=2)", transformers;
    "transformers:cosine_with_min_lr" =>
        "transformers:cosine_with_min_lr(num_warmup_steps=2, num_training_steps=10, min_lr=0.001)",
        transformers;
    "transformers:cosine_warmup_with_min_lr" =>
        "transformers:cosine_warmup_with_min_lr(num_warmup_steps=2, num_training_steps=10, min_lr=0.001)",
        transformers;
    "transformers:warmup_stable_decay" =>
        "transformers:warmup_stable_decay(num_warmup_steps=2, num_decay_steps=5, num_training_steps=10)",
        transformers;
    "transformers:reduce_lr_on_plateau" => "transformers:reduce_lr_on_plateau()", transformers;
}

/// The children of SequentialLR and ChainedScheduler, built in order on `opt`.
fn children(
    spec: &SchedulerSpec,
    opt: &mut dyn OptimizerParamGroups,
) -> Result<Vec<Box<dyn LRScheduler>>, SchedError> {
    let specs = spec
        .schedulers
        .as_deref()
        .ok_or_else(|| spec_error(&spec.r#type, "missing `schedulers`"))?;
    specs.iter().map(|s| build_scheduler(s, opt)).collect()
}

/// CyclicLR, whose `scale_fn` is a named function.
fn cyclic(
    spec: &SchedulerSpec,
    opt: &mut dyn OptimizerParamGroups,
) -> Result<Box<dyn LRScheduler>, SchedError> {
    let name = spec.r#type.as_str();
    let mut kw = spec.kwargs.clone();
    let scale_fn = match kw.remove("scale_fn") {
        None | Some(Json::Null) => None,
        Some(v) => {
            let f = named(name, "scale_fn", &v)?;
            Some(ScaleFn::new(move |x| f.eval(x as i64)))
        }
    };
    let mut cfg: CyclicLRConfig = config(name, &kw)?;
    cfg.scale_fn = scale_fn;
    Ok(Box::new(CyclicLR::new(opt, cfg)?))
}

fn spec_error(name: &str, reason: impl ToString) -> SchedError {
    SchedError::InvalidSpec {
        scheduler: name.to_string(),
        reason: reason.to_string(),
    }
}

fn config<T: DeserializeOwned>(name: &str, kwargs: &Map<String, Json>) -> Result<T, SchedError> {
    serde_json::from_value(Json::Object(kwargs.clone())).map_err(|e| spec_error(name, e))
}

fn named(name: &str, arg: &str, v: &Json) -> Result<NamedLambda, SchedError> {
    serde_json::from_value(v.clone()).map_err(|e| spec_error(name, format!("`{arg}`: {e}")))
}

/// `lr_lambda`: one named function, or a list of them (one per group); and `last_epoch`.
fn lr_lambdas(
    name: &str,
    kwargs: &Map<String, Json>,
) -> Result<(PerGroup<LRLambda>, i64), SchedError> {
    if let Some(k) = kwargs
        .keys()
        .find(|k| !matches!(k.as_str(), "lr_lambda" | "last_epoch"))
    {
        return Err(spec_error(
            name,
            format!("unknown argument `{k}`, expected `lr_lambda` or `last_epoch`"),
        ));
    }
    let last_epoch = match kwargs.get("last_epoch") {
        None => -1,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| spec_error(name, format!("`last_epoch`: expected an int, found {v}")))?,
    };
    let lambdas = match kwargs.get("lr_lambda") {
        None => return Err(spec_error(name, "missing argument `lr_lambda`")),
        Some(Json::Array(items)) => PerGroup::Each(
            items
                .iter()
                .map(|v| named(name, "lr_lambda", v).map(LRLambda::from))
                .collect::<Result<_, _>>()?,
        ),
        Some(v) => PerGroup::All(named(name, "lr_lambda", v)?.into()),
    };
    Ok((lambdas, last_epoch))
}

/// An optional int argument (`None` for a missing key or `null`).
fn opt_int(name: &str, kw: &Map<String, Json>, arg: &str) -> Result<Option<i64>, SchedError> {
    match kw.get(arg) {
        None | Some(Json::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| spec_error(name, format!("`{arg}`: expected an int, found {v}"))),
    }
}

/// `transformers:<name>`: transformers' `get_scheduler(name, optimizer, **kwargs)`.
fn transformers(
    spec: &SchedulerSpec,
    opt: &mut dyn OptimizerParamGroups,
) -> Result<Box<dyn LRScheduler>, SchedError> {
    let (name, kw) = (spec.r#type.as_str(), &spec.kwargs);
    let schedule = name.strip_prefix("transformers:").unwrap_or(name);
    let mut specific = match kw.get("scheduler_specific_kwargs") {
        None | Some(Json::Null) => Map::new(),
        Some(Json::Object(m)) => m.clone(),
        Some(v) => {
            return Err(spec_error(
                name,
                format!("`scheduler_specific_kwargs`: expected a dict, found {v}"),
            ))
        }
    };
    // tempo also takes the schedule's own arguments beside get_scheduler's.
    for (k, v) in kw {
        let own = matches!(
            k.as_str(),
            "num_warmup_steps"
                | "num_training_steps"
                | "scheduler_specific_kwargs"
                | "last_epoch"
                | "optimizer_lr"
        );
        if !own && specific.insert(k.clone(), v.clone()).is_some() {
            return Err(spec_error(
                name,
                format!("`{k}` is given twice (also in scheduler_specific_kwargs)"),
            ));
        }
    }
    if schedule == "reduce_lr_on_plateau" {
        return Ok(Box::new(ReduceLROnPlateau::new(
            opt,
            config(name, &specific)?,
        )?));
    }
    let (schedule, mut last_epoch) = TransformersSchedule::from_get_scheduler(
        schedule,
        opt_int(name, kw, "num_warmup_steps")?,
        opt_int(name, kw, "num_training_steps")?,
        &specific,
    )?;
    if let Some(e) = opt_int(name, kw, "last_epoch")? {
        last_epoch = e;
    }
    let optimizer_lr = match kw.get("optimizer_lr") {
        None | Some(Json::Null) => None,
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            spec_error(
                name,
                format!("`optimizer_lr`: expected a number, found {v}"),
            )
        })?),
    };
    let config = TransformersConfig {
        schedule,
        optimizer_lr,
        last_epoch,
    };
    Ok(Box::new(transformers_scheduler(opt, config)?))
}

/// Builds the scheduler a spec describes on `opt` (children first, in order, as PyTorch
/// code would), applying its construction to the groups.
///
/// LambdaLR and MultiplicativeLR take named functions (`{"fn": "pow", "base": 0.95}`,
/// `const`, `warmup_linear`, `inv_sqrt`; one, or a list with one per group), and so does
/// CyclicLR's `scale_fn`. An unknown scheduler or argument, or a bad value, is an `Err`
/// naming it.
///
/// `"transformers:<name>"` is Hugging Face transformers' `get_scheduler(name, optimizer,
/// num_warmup_steps, num_training_steps, scheduler_specific_kwargs)` (see
/// [`transformers_scheduler`]), with its kwargs by those names; tempo also takes the
/// schedule's own arguments beside them, `last_epoch`, and `optimizer_lr` (the
/// optimizer's default lr, which transformers reads from the optimizer; default: the
/// first group's base lr).
pub fn build_scheduler(
    spec: &SchedulerSpec,
    opt: &mut dyn OptimizerParamGroups,
) -> Result<Box<dyn LRScheduler>, SchedError> {
    let name = spec.r#type.as_str();
    let composite = matches!(name, "SequentialLR" | "ChainedScheduler");
    if spec.schedulers.is_some() && !composite {
        return Err(spec_error(
            name,
            "only SequentialLR and ChainedScheduler take `schedulers`",
        ));
    }
    match SCHEDULERS.iter().find(|s| s.name == name) {
        Some(entry) => (entry.build)(spec, opt),
        // transformers' own refusal names its schedules.
        None if name.starts_with("transformers:") => transformers(spec, opt),
        None => Err(SchedError::UnknownScheduler {
            name: name.to_string(),
        }),
    }
}
