//! Building an optimizer from a serde description with PyTorch's names.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use tempo_param_groups::Dict;
use tempo_tensor::Float;
#[cfg(test)]
use tempo_tensor::Tensor;

use crate::hyper::Hyperparameters;
use crate::kwargs::{json_to_value, Kwargs};
use crate::{
    ASGDConfig, Adadelta, AdadeltaConfig, Adafactor, AdafactorConfig, Adagrad, AdagradConfig, Adam,
    AdamConfig, AdamW, AdamWConfig, Adamax, AdamaxConfig, LBFGSConfig, Muon, MuonConfig, NAdam,
    NAdamConfig, OptimError, Optimizer, Param, ParamGroup, RAdam, RAdamConfig, RMSprop,
    RMSpropConfig, Rprop, RpropConfig, SGDConfig, ASGD, LBFGS, SGD,
};

/// An optimizer described by PyTorch's class and argument names: the `optimizer` field
/// of tempo's conformance cases.
///
/// ```json
/// {"type": "Adam", "kwargs": {"lr": 0.1, "betas": [0.9, 0.999]},
///  "groups": [{"params": [0, 2], "lr": 0.05}, {"params": [1]}]}
/// ```
///
/// `kwargs` are the constructor's keyword arguments (PyTorch's defaults fill the rest;
/// `foreach` is accepted, stored in the groups, and changes no number). `groups` name
/// parameters by index into the list given to [`build_optimizer`] (or `"all"`), with
/// per-group overrides; without `groups` there is one group holding every parameter.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct OptimizerSpec {
    /// PyTorch's class name: `SGD`, `Adam`, `AdamW`, `Adagrad`, `Adadelta`, `Adamax`,
    /// `NAdam`, `RAdam`, `RMSprop`, `Rprop`, `ASGD`, `LBFGS`, `Adafactor`, `Muon`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Constructor keyword arguments, by PyTorch's names.
    #[serde(default)]
    pub kwargs: Map<String, Json>,
    /// Param groups; `None` means one group with every parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<GroupSpec>>,
}

/// One param group of an [`OptimizerSpec`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct GroupSpec {
    /// Which parameters the group holds.
    pub params: ParamSelection,
    /// Per-group hyperparameter overrides, by PyTorch's names, in order.
    #[serde(flatten)]
    pub options: Map<String, Json>,
}

/// The parameters of a [`GroupSpec`]: indices, or `"all"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "RawSelection", into = "RawSelection")]
pub enum ParamSelection {
    /// Every parameter, in order.
    All,
    /// These parameters, by index.
    Indices(Vec<usize>),
}

#[derive(Deserialize, Serialize)]
#[serde(untagged)]
enum RawSelection {
    Indices(Vec<usize>),
    Name(String),
}

impl TryFrom<RawSelection> for ParamSelection {
    type Error = String;
    fn try_from(raw: RawSelection) -> Result<Self, String> {
        match raw {
            RawSelection::Indices(v) => Ok(ParamSelection::Indices(v)),
            RawSelection::Name(s) if s == "all" => Ok(ParamSelection::All),
            RawSelection::Name(s) => Err(format!(
                "group params must be a list of indices or \"all\", found {s:?}"
            )),
        }
    }
}

impl From<ParamSelection> for RawSelection {
    fn from(s: ParamSelection) -> Self {
        match s {
            ParamSelection::All => RawSelection::Name("all".into()),
            ParamSelection::Indices(v) => RawSelection::Indices(v),
        }
    }
}

impl OptimizerSpec {
    /// Parses a spec from JSON text.
    pub fn from_json(text: &str) -> Result<Self, OptimError> {
        serde_json::from_str(text).map_err(|e| OptimError::InvalidSpec {
            message: e.to_string(),
        })
    }
}

/// What tempo knows of one optimizer class without building it: an entry of
/// [`OPTIMIZERS`].
#[derive(Debug, Clone, Copy)]
pub struct OptimizerInfo {
    /// PyTorch's class name.
    pub name: &'static str,
    /// PyTorch's `optimizer.defaults`: every hyperparameter of a param group at its
    /// default, in PyTorch's key order and numeric kinds.
    pub defaults: fn() -> Dict,
}

fn defaults_of<C: Hyperparameters + Default>() -> Dict {
    C::default().defaults()
}

/// The registry: every optimizer tempo has, as `type(config)`. It drives
/// [`build_optimizer`], [`OPTIMIZERS`], [`OPTIMIZER_NAMES`] and everything that lists
/// optimizers (the CLI's recognition of a foreign state dict, the benchmarks, the tests).
macro_rules! registry {
    ($($opt:ident($config:ident)),* $(,)?) => {
        /// Every optimizer tempo has, in the order of PyTorch's documentation.
        pub const OPTIMIZERS: &[OptimizerInfo] = &[$(OptimizerInfo {
            name: <$config as Hyperparameters>::NAME,
            defaults: defaults_of::<$config>,
        }),*];

        /// The optimizer class names [`build_optimizer`] knows (those of [`OPTIMIZERS`]).
        pub const OPTIMIZER_NAMES: &[&str] = &[$(<$config as Hyperparameters>::NAME),*];

        fn build_named<T: Float, P: Param<T>>(
            spec: &OptimizerSpec,
            groups: Vec<ParamGroup<T, P>>,
        ) -> Result<Box<dyn Optimizer<T, P>>, OptimError> {
            $(if spec.kind == <$config as Hyperparameters>::NAME {
                let kw = Kwargs::new(<$config as Hyperparameters>::NAME, &spec.kwargs);
                let config = <$config as Hyperparameters>::from_kwargs(&kw)?;
                return Ok(Box::new($opt::from_spec(groups, config, &kw.dict)?));
            })*
            Err(OptimError::UnknownOptimizer {
                name: spec.kind.clone(),
                accepted: OPTIMIZER_NAMES.join(", "),
            })
        }
    };
}

registry! {
    SGD(SGDConfig),
    Adam(AdamConfig),
    AdamW(AdamWConfig),
    Adagrad(AdagradConfig),
    Adadelta(AdadeltaConfig),
    Adamax(AdamaxConfig),
    NAdam(NAdamConfig),
    RAdam(RAdamConfig),
    RMSprop(RMSpropConfig),
    Rprop(RpropConfig),
    ASGD(ASGDConfig),
    LBFGS(LBFGSConfig),
    Adafactor(AdafactorConfig),
    Muon(MuonConfig),
}

fn groups_of<T: Float, P: Param<T>>(
    spec: &OptimizerSpec,
    params: &[P],
) -> Result<Vec<ParamGroup<T, P>>, OptimError> {
    let Some(groups) = &spec.groups else {
        return Ok(vec![ParamGroup::new(params.to_vec())]);
    };
    groups
        .iter()
        .enumerate()
        .map(|(gi, g)| {
            let ps = match &g.params {
                ParamSelection::All => params.to_vec(),
                ParamSelection::Indices(ix) => ix
                    .iter()
                    .map(|&i| {
                        params
                            .get(i)
                            .cloned()
                            .ok_or(OptimError::ParamIndexOutOfRange {
                                group: gi,
                                index: i,
                                len: params.len(),
                            })
                    })
                    .collect::<Result<_, _>>()?,
            };
            let mut group = ParamGroup::new(ps);
            for (k, v) in &g.options {
                group.options.insert(k.clone(), json_to_value(k, v));
            }
            Ok(group)
        })
        .collect()
}

/// Builds the optimizer `spec` describes over `params` (indexed by the groups' `params`),
/// stored in tempo's tensors or any [`Param`].
///
/// Unknown class names and unknown keyword arguments are errors that name them; invalid
/// hyperparameters are errors that name the hyperparameter and its value.
pub fn build_optimizer<T: Float, P: Param<T>>(
    spec: &OptimizerSpec,
    params: &[P],
) -> Result<Box<dyn Optimizer<T, P>>, OptimError> {
    build_named(spec, groups_of(spec, params)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{PARALLEL_THRESHOLD, PORTABLE_ONLY};
    use ndarray::ArrayD;

    /// Seven steps of `kind` over parameters of `sizes`, where parameter `i` has no
    /// gradient at the steps `s` with `(s + i) % 4 == 3` (so the parameters' step counts,
    /// and their bias corrections, differ); returns the parameters' bits.
    fn run<T: Float>(
        kind: &str,
        kwargs: serde_json::Value,
        portable: bool,
        sizes: &[usize],
    ) -> Vec<u64> {
        PORTABLE_ONLY.with(|c| c.set(portable));
        let params: Vec<Tensor<T>> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| {
                Tensor::parameter(ArrayD::from_shape_fn(vec![n], |i| {
                    <T as Float>::from_f64((i[0] as f64 * 0.013 + k as f64).sin())
                }))
            })
            .collect();
        let spec: OptimizerSpec =
            serde_json::from_value(serde_json::json!({"type": kind, "kwargs": kwargs})).unwrap();
        let mut opt = build_optimizer(&spec, &params).unwrap();
        for s in 0..7 {
            for (k, p) in params.iter().enumerate() {
                let g = ((s + k) % 4 != 3).then(|| {
                    ArrayD::from_shape_fn(vec![sizes[k]], |i| {
                        <T as Float>::from_f64((i[0] as f64 * 0.7 + (s + k) as f64).cos())
                    })
                });
                p.set_grad(g).unwrap();
            }
            opt.step().unwrap();
        }
        PORTABLE_ONLY.with(|c| c.set(false));
        params
            .iter()
            .flat_map(|p| {
                p.data()
                    .iter()
                    .map(|&x| <T as Float>::to_f64(x).to_bits())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn elementwise_optimizers_say_so() {
        let p = Tensor::<f64>::parameter(ArrayD::from_elem(vec![2, 3], 0.5));
        for kind in OPTIMIZER_NAMES {
            let spec: OptimizerSpec =
                serde_json::from_value(serde_json::json!({"type": kind})).unwrap();
            let opt = build_optimizer(&spec, std::slice::from_ref(&p)).unwrap();
            let whole = ["Adafactor", "Muon", "LBFGS"].contains(kind);
            assert_eq!(opt.is_elementwise(), !whole, "{kind}");
        }
    }

    #[test]
    fn fast_and_portable_paths_give_the_same_bits() {
        // Every optimizer of the registry that steps vectors without a closure, with
        // options that take its costlier paths where it has them.
        let kwargs = |kind: &str| match kind {
            "SGD" => {
                serde_json::json!({"lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 0.01})
            }
            "Adam" => serde_json::json!({"lr": 0.01, "amsgrad": true, "weight_decay": 0.1}),
            "AdamW" => serde_json::json!({"lr": 0.01}),
            "Adagrad" => serde_json::json!({"lr": 0.1, "weight_decay": 0.1}),
            "Adadelta" => serde_json::json!({"weight_decay": 0.1}),
            "Adamax" => serde_json::json!({"lr": 0.02}),
            "NAdam" => {
                serde_json::json!({"lr": 0.02, "weight_decay": 0.1, "decoupled_weight_decay": true})
            }
            "RAdam" => serde_json::json!({"lr": 0.01, "betas": [0.9, 0.5]}),
            "RMSprop" => {
                serde_json::json!({"lr": 0.01, "momentum": 0.5, "centered": true, "weight_decay": 0.1})
            }
            "Rprop" => serde_json::json!({"lr": 0.01}),
            "ASGD" => serde_json::json!({"lr": 0.05, "t0": 1.0, "weight_decay": 0.1}),
            _ => serde_json::json!({}),
        };
        let steps_vectors = |kind: &str| {
            let spec: OptimizerSpec =
                serde_json::from_value(serde_json::json!({"type": kind})).unwrap();
            let p = Tensor::<f64>::parameter(ArrayD::from_elem(vec![3], 0.5));
            match build_optimizer(&spec, std::slice::from_ref(&p)) {
                Err(OptimError::UnsupportedParamShape { .. }) => false,
                built => {
                    p.set_grad(Some(ArrayD::from_elem(vec![3], 0.1))).unwrap();
                    !matches!(
                        built.unwrap().step(),
                        Err(OptimError::ClosureRequired { .. })
                    )
                }
            }
        };
        let configs: Vec<_> = OPTIMIZER_NAMES
            .iter()
            .filter(|kind| steps_vectors(kind))
            .map(|kind| (*kind, kwargs(kind)))
            .collect();
        // One tensor above the threshold, and a step split across tensors of sizes
        // around the chunk sizes (a chunk may cover the end of one and the start of the
        // next).
        let one = [PARALLEL_THRESHOLD + 77];
        let many = [4097, 1, 65_535, 0, 70_001, 63, 1024, 65_537, 9];
        for (kind, kw) in configs {
            for sizes in [&one[..], &many[..]] {
                assert!(
                    run::<f32>(kind, kw.clone(), false, sizes)
                        == run::<f32>(kind, kw.clone(), true, sizes),
                    "{kind} f32, sizes {sizes:?}"
                );
                assert!(
                    run::<f64>(kind, kw.clone(), false, sizes)
                        == run::<f64>(kind, kw.clone(), true, sizes),
                    "{kind} f64, sizes {sizes:?}"
                );
            }
        }
    }
}
