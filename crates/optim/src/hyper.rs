//! One declaration per optimizer: [`hyperparameters!`] declares its hyperparameters
//! (PyTorch's names, key order, defaults as PyTorch writes them, checks) and
//! [`optimizer_state!`] its per-parameter state (PyTorch's names and order).
//!
//! From the first come the public config struct and its `Default`, the defaults dict
//! (PyTorch's key order and int/float kinds), the constructor's validation, and one
//! reader that serves a spec's kwargs and a param group alike; the step reads the very
//! config type the user configured. From the second come the state struct, its
//! creation, its checks before a step, and its state-dict entries both ways.

use tempo_param_groups::{Dict, Value};

use crate::kernels::Lanes;
use crate::kwargs::Kwargs;
use crate::param_group::GroupReader;
use crate::state::{ParamState, StateReader};
use crate::OptimError;

/// A hyperparameter's Rust type: how it is read from a group or kwargs value and written
/// to the defaults dict.
pub(crate) trait HyperValue: Sized {
    /// How PyTorch wrote the default, where that matters: an `f64` whose default is a
    /// Python int (`weight_decay=0`) is saved as that int while it keeps that value.
    type Kind: Copy;
    /// What a valid value looks like, for errors.
    const EXPECTED: &'static str;
    /// The value, if `v` is one (Python truthiness for flags, as PyTorch's `if`).
    fn read(v: &Value) -> Option<Self>;
    /// The value in the defaults dict.
    fn write(&self, kind: Self::Kind) -> Value;
}

/// A Python number for a defaults dict: an int where PyTorch's default is an int and the
/// value is that default (PyTorch saves `weight_decay: 0`), else a float.
#[allow(clippy::float_cmp)] // equal to the int default, exactly
fn py_num(v: f64, int_default: Option<i64>) -> Value {
    match int_default {
        Some(i) if v == i as f64 && !(v == 0.0 && v.is_sign_negative()) => Value::Int(i),
        _ => Value::Float(v),
    }
}

impl HyperValue for f64 {
    type Kind = Option<i64>;
    const EXPECTED: &'static str = "a number";
    fn read(v: &Value) -> Option<Self> {
        v.as_f64()
    }
    fn write(&self, kind: Option<i64>) -> Value {
        py_num(*self, kind)
    }
}

impl HyperValue for i64 {
    type Kind = ();
    const EXPECTED: &'static str = "an integer";
    fn read(v: &Value) -> Option<Self> {
        v.as_i64()
    }
    fn write(&self, (): ()) -> Value {
        Value::Int(*self)
    }
}

impl HyperValue for bool {
    type Kind = ();
    const EXPECTED: &'static str = "a bool";
    fn read(v: &Value) -> Option<Self> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            Value::None => Some(false),
            _ => None,
        }
    }
    fn write(&self, (): ()) -> Value {
        Value::Bool(*self)
    }
}

impl HyperValue for String {
    type Kind = ();
    const EXPECTED: &'static str = "a string";
    fn read(v: &Value) -> Option<Self> {
        match v {
            Value::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
    fn write(&self, (): ()) -> Value {
        Value::Str(self.clone())
    }
}

/// A hyperparameter type that may also be `None` (`Option<Self>`).
pub(crate) trait Nullable: HyperValue<Kind = ()> {
    /// [`HyperValue::EXPECTED`], or None.
    const EXPECTED_OR_NONE: &'static str;
}

impl Nullable for bool {
    const EXPECTED_OR_NONE: &'static str = "a bool or None";
}

impl Nullable for i64 {
    const EXPECTED_OR_NONE: &'static str = "an integer or None";
}

impl Nullable for String {
    const EXPECTED_OR_NONE: &'static str = "a string or None";
}

impl<H: Nullable> HyperValue for Option<H> {
    type Kind = ();
    const EXPECTED: &'static str = H::EXPECTED_OR_NONE;
    fn read(v: &Value) -> Option<Self> {
        match v {
            Value::None => Some(None),
            v => H::read(v).map(Some),
        }
    }
    fn write(&self, (): ()) -> Value {
        self.as_ref().map_or(Value::None, |h| h.write(()))
    }
}

impl HyperValue for (f64, f64) {
    type Kind = (Option<i64>, Option<i64>);
    const EXPECTED: &'static str = "a pair of numbers";
    fn read(v: &Value) -> Option<Self> {
        match v.as_slice()? {
            [a, b] => Some((a.as_f64()?, b.as_f64()?)),
            _ => None,
        }
    }
    fn write(&self, kind: Self::Kind) -> Value {
        Value::Tuple(vec![py_num(self.0, kind.0), py_num(self.1, kind.1)])
    }
}

/// Adafactor's `(eps1, eps2)`: `eps1` may be `None` (or `"None"`, from a TOML file).
impl HyperValue for (Option<f64>, f64) {
    type Kind = ();
    const EXPECTED: &'static str = "a pair (eps1 or None, eps2) of numbers";
    fn read(v: &Value) -> Option<Self> {
        match v.as_slice()? {
            [Value::None, b] => Some((None, b.as_f64()?)),
            [Value::Str(s), b] if s == "None" => Some((None, b.as_f64()?)),
            [a, b] => Some((Some(a.as_f64()?), b.as_f64()?)),
            _ => None,
        }
    }
    fn write(&self, (): ()) -> Value {
        let first = self.0.map_or(Value::None, Value::Float);
        Value::Tuple(vec![first, Value::Float(self.1)])
    }
}

impl HyperValue for (f64, f64, f64) {
    type Kind = ();
    const EXPECTED: &'static str =
        "a tuple of exactly 3 numbers (Coefficients must be a tuple of exactly 3 values)";
    fn read(v: &Value) -> Option<Self> {
        match v.as_slice()? {
            [a, b, c] => Some((a.as_f64()?, b.as_f64()?, c.as_f64()?)),
            _ => None,
        }
    }
    fn write(&self, (): ()) -> Value {
        Value::Tuple(vec![
            Value::Float(self.0),
            Value::Float(self.1),
            Value::Float(self.2),
        ])
    }
}

/// A default as PyTorch writes it: the Rust literal's kind is Python's (`0` is an int,
/// `0.0` and `1e-3` are floats), so the declaration says both the value and its kind.
pub(crate) trait PyDefault<H: HyperValue> {
    /// The value and its kind.
    fn py(self) -> (H, H::Kind);
}

impl PyDefault<f64> for f64 {
    fn py(self) -> (f64, Option<i64>) {
        (self, None)
    }
}

impl PyDefault<f64> for i32 {
    fn py(self) -> (f64, Option<i64>) {
        (f64::from(self), Some(i64::from(self)))
    }
}

impl PyDefault<i64> for i32 {
    fn py(self) -> (i64, ()) {
        (i64::from(self), ())
    }
}

impl PyDefault<bool> for bool {
    fn py(self) -> (bool, ()) {
        (self, ())
    }
}

impl<X> PyDefault<Option<X>> for Option<X>
where
    Option<X>: HyperValue<Kind = ()>,
{
    fn py(self) -> (Option<X>, ()) {
        (self, ())
    }
}

impl<A: PyDefault<f64>, B: PyDefault<f64>> PyDefault<(f64, f64)> for (A, B) {
    fn py(self) -> ((f64, f64), (Option<i64>, Option<i64>)) {
        let (a, ka) = self.0.py();
        let (b, kb) = self.1.py();
        ((a, b), (ka, kb))
    }
}

impl PyDefault<(Option<f64>, f64)> for (Option<f64>, f64) {
    fn py(self) -> ((Option<f64>, f64), ()) {
        (self, ())
    }
}

impl PyDefault<(f64, f64, f64)> for (f64, f64, f64) {
    fn py(self) -> ((f64, f64, f64), ()) {
        (self, ())
    }
}

/// The value of a default written as PyTorch writes it.
pub(crate) fn py_default<H: HyperValue>(d: impl PyDefault<H>) -> H {
    d.py().0
}

/// A default's entry in the defaults dict: `v` with the kind of PyTorch's default `d`.
pub(crate) fn py_value<H: HyperValue>(v: &H, d: impl PyDefault<H>) -> Value {
    v.write(d.py().1)
}

/// Where hyperparameters are read from: a spec's kwargs (a missing key is the
/// default) or a param group (every key is there; a missing one is an error).
pub(crate) enum Source<'a> {
    /// The constructor's keyword arguments.
    Kwargs(&'a Kwargs<'a>),
    /// A param group's dict, at a step.
    Group(&'a GroupReader<'a>),
}

impl Source<'_> {
    /// The hyperparameter `key`, or `default()` where kwargs leave it out.
    pub(crate) fn get<H: HyperValue>(
        &self,
        key: &str,
        default: impl FnOnce() -> H,
    ) -> Result<H, OptimError> {
        match self {
            Source::Kwargs(kw) => match kw.dict.get(key) {
                None => Ok(default()),
                Some(v) => H::read(v).ok_or_else(|| OptimError::WrongArgumentType {
                    optimizer: kw.optimizer,
                    name: key.into(),
                    expected: H::EXPECTED,
                    found: v.to_string(),
                }),
            },
            Source::Group(g) => {
                let v = g.value(key)?;
                H::read(v).ok_or_else(|| g.wrong(key, H::EXPECTED, v))
            }
        }
    }
}

/// What [`hyperparameters!`] derives for a config.
pub(crate) trait Hyperparameters:
    Sized + Clone + std::fmt::Debug + Send + Sync + 'static
{
    /// What a step reads from a group: the config itself (AdamW's step reads Adam's).
    type Hyper: Hyperparameters;
    /// PyTorch's class name.
    const NAME: &'static str;
    /// Every key of the defaults dict, in PyTorch's order, and whether it is a
    /// constructor argument (AdamW's `decoupled_weight_decay` is not).
    const KEYS: &'static [(&'static str, bool)];
    /// The constructor's checks (PyTorch's `ValueError`s, in PyTorch's order).
    fn validate(&self) -> Result<(), OptimError>;
    /// The defaults dict, in PyTorch's key order and numeric kinds.
    fn defaults(&self) -> Dict;
    /// Reads every hyperparameter from kwargs or a group.
    fn read(src: &Source<'_>) -> Result<Self, OptimError>;
    /// Reads a spec's kwargs: unknown names and code-path flags set to `True` are
    /// errors, missing names are PyTorch's defaults.
    fn from_kwargs(kw: &Kwargs<'_>) -> Result<Self, OptimError>;
    /// Reads a param group's hyperparameters, at a step.
    fn from_group(g: &GroupReader<'_>) -> Result<Self, OptimError> {
        Self::read(&Source::Group(g))
    }
}

/// The hyperparameters that recur across optimizers, declared once: a name, its Rust
/// type and its doc (to which a table adds the default, in parentheses). A
/// [`hyperparameters!`] table lists them as `name = default`.
macro_rules! well_known {
    ($what:ident lr) => { crate::hyper::well_known!(@$what f64, "Learning rate") };
    ($what:ident betas) => {
        crate::hyper::well_known!(@$what (f64, f64), "Decay rates of the first and second moments")
    };
    ($what:ident eps) => { crate::hyper::well_known!(@$what f64, "Added to the denominator") };
    ($what:ident weight_decay) => { crate::hyper::well_known!(@$what f64, "L2 penalty") };
    ($what:ident momentum) => { crate::hyper::well_known!(@$what f64, "Momentum factor") };
    ($what:ident amsgrad) => {
        crate::hyper::well_known!(
            @$what bool, "AMSGrad: divide by the running maximum of the second moment"
        )
    };
    ($what:ident nesterov) => { crate::hyper::well_known!(@$what bool, "Nesterov momentum") };
    ($what:ident maximize) => {
        crate::hyper::well_known!(@$what bool, "Maximize the objective")
    };
    ($what:ident decoupled_weight_decay) => {
        crate::hyper::well_known!(@$what bool, "Decoupled weight decay, as AdamW")
    };
    ($what:ident foreach) => {
        crate::hyper::well_known!(
            @$what Option<bool>,
            "PyTorch's `foreach` flag, stored in the groups without changing tempo's numbers"
        )
    };
    ($what:ident $other:ident) => {
        compile_error!(concat!(
            "`", stringify!($other), "` is no well-known hyperparameter: write `",
            stringify!($other), ": type = default` with a doc"
        ))
    };
    (@ty $ty:ty, $doc:literal) => { $ty };
    (@doc $ty:ty, $doc:literal) => { $doc };
}

pub(crate) use well_known;

/// Declares an optimizer's config: the keys of PyTorch's defaults dict, in PyTorch's
/// order, several to a line.
///
/// - `name = default` is a public field of a [`well_known!`] name, which gives its type
///   and doc (a `///` doc before it replaces the latter); `default` is written as in
///   PyTorch, so its kind is Python's (`0` is an int, `0.0` a float: see [`PyDefault`]).
/// - `name: type = default`, with a doc, is a public field of any other name.
/// - `name: flag value` is a code-path flag (`capturable`, `differentiable`, `fused`):
///   in the dict at `value`, accepted as a kwarg only at its default.
/// - `name: fixed value` is in the dict at `value` and is no argument (AdamW's
///   `decoupled_weight_decay`).
///
/// Then `check` lists the constructor's checks in PyTorch's order (`field: checker`,
/// a checker being `fn(&'static str, &str, &Type) -> Result<(), OptimError>`), and
/// optionally `also` a function of the whole config for checks across fields,
/// `kwargs` a function of the raw kwargs for checks of the written form, `steps as` the
/// config a step reads where it is not this one, and `defaults` a function that
/// completes the defaults dict (LBFGS resolves `max_eval`).
macro_rules! hyperparameters {
    (
        $(#[$meta:meta])*
        pub struct $config:ident as $name:literal {
            $($body:tt)*
        }
        check { $($ckey:ident: $check:path),* $(,)? }
        $(also $also:path;)?
        $(kwargs $kwcheck:path;)?
        $(steps as $hyper:ty;)?
        $(defaults $fixup:path;)?
    ) => {
        crate::hyper::hyperparameters!(@munch
            [$(#[$meta])* $config $name [$($hyper)?] [$($fixup)?]]
            [$($ckey $check),*] [$($also)?] [$($kwcheck)?]
            fields [] dict [] flags [] keys []
            $($body)*
        );
    };
    // A field.
    (@munch $head:tt $checks:tt $also:tt $kwcheck:tt
        fields [$($fields:tt)*] dict [$($dict:tt)*] flags [$($flags:tt)*] keys [$($keys:tt)*]
        $(#[$doc:meta])* $key:ident : $ty:ty = $default:expr , $($rest:tt)*
    ) => {
        crate::hyper::hyperparameters!(@munch $head $checks $also $kwcheck
            fields [$($fields)* $(#[$doc])* $key: $ty = $default,]
            dict [$($dict)* (stringify!($key), field $key $default)]
            flags [$($flags)*]
            keys [$($keys)* field $key,]
            $($rest)*
        );
    };
    // A well-known field with its own doc.
    (@munch $head:tt $checks:tt $also:tt $kwcheck:tt
        fields [$($fields:tt)*] dict [$($dict:tt)*] flags [$($flags:tt)*] keys [$($keys:tt)*]
        $(#[$doc:meta])+ $key:ident = $default:expr , $($rest:tt)*
    ) => {
        crate::hyper::hyperparameters!(@munch $head $checks $also $kwcheck
            fields [$($fields)* $(#[$doc])+
                $key: crate::hyper::well_known!(ty $key) = $default,]
            dict [$($dict)* (stringify!($key), field $key $default)]
            flags [$($flags)*]
            keys [$($keys)* field $key,]
            $($rest)*
        );
    };
    // A well-known field.
    (@munch $head:tt $checks:tt $also:tt $kwcheck:tt
        fields [$($fields:tt)*] dict [$($dict:tt)*] flags [$($flags:tt)*] keys [$($keys:tt)*]
        $key:ident = $default:expr , $($rest:tt)*
    ) => {
        crate::hyper::hyperparameters!(@munch $head $checks $also $kwcheck
            fields [$($fields)*
                #[doc = concat!(
                    crate::hyper::well_known!(doc $key), " (", stringify!($default), ")."
                )]
                $key: crate::hyper::well_known!(ty $key) = $default,]
            dict [$($dict)* (stringify!($key), field $key $default)]
            flags [$($flags)*]
            keys [$($keys)* field $key,]
            $($rest)*
        );
    };
    // A code-path flag (an argument at its default only) or a fixed entry (none).
    (@munch $head:tt $checks:tt $also:tt $kwcheck:tt
        fields [$($fields:tt)*] dict [$($dict:tt)*] flags [$($flags:tt)*] keys [$($keys:tt)*]
        $key:ident : $kind:ident $value:expr , $($rest:tt)*
    ) => {
        crate::hyper::hyperparameters!(@munch $head $checks $also $kwcheck
            fields [$($fields)*]
            dict [$($dict)* (stringify!($key), fixed $value)]
            flags [$($flags)* $kind $key,]
            keys [$($keys)* $kind $key,]
            $($rest)*
        );
    };
    (@munch
        [$(#[$meta:meta])* $config:ident $name:literal [$($hyper:ty)?] [$($fixup:path)?]]
        [$($ckey:ident $check:path),*] [$($also:path)?] [$($kwcheck:path)?]
        fields [$($(#[$doc:meta])* $key:ident: $ty:ty = $default:expr,)*]
        dict [$(($dkey:expr, $dkind:ident $($dval:tt)*))*]
        flags [$($fkind:ident $flag:ident,)*]
        keys [$($akind:ident $akey:ident,)*]
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $config {
            $($(#[$doc])* pub $key: $ty,)*
        }

        impl Default for $config {
            fn default() -> Self {
                Self { $($key: crate::hyper::py_default::<$ty>($default),)* }
            }
        }

        impl crate::hyper::Hyperparameters for $config {
            type Hyper = crate::hyper::hyperparameters!(@hyper $($hyper)?);
            const NAME: &'static str = $name;
            const KEYS: &'static [(&'static str, bool)] = &[$(
                (stringify!($akey), crate::hyper::hyperparameters!(@argument $akind))
            ),*];

            fn validate(&self) -> Result<(), crate::OptimError> {
                $($check($name, stringify!($ckey), &self.$ckey)?;)*
                $($also(self)?;)?
                Ok(())
            }

            fn defaults(&self) -> tempo_param_groups::Dict {
                let mut d = tempo_param_groups::Dict::new();
                $(d.insert($dkey, crate::hyper::hyperparameters!(@value self $dkind $($dval)*));)*
                $($fixup(self, &mut d);)?
                d
            }

            fn read(src: &crate::hyper::Source<'_>) -> Result<Self, crate::OptimError> {
                Ok(Self {
                    $($key: src.get(stringify!($key), || {
                        crate::hyper::py_default::<$ty>($default)
                    })?,)*
                })
            }

            fn from_kwargs(kw: &crate::kwargs::Kwargs<'_>) -> Result<Self, crate::OptimError> {
                let accepted: Vec<&str> = <Self as crate::hyper::Hyperparameters>::KEYS
                    .iter()
                    .filter_map(|&(k, argument)| argument.then_some(k))
                    .collect();
                kw.check_known(&accepted)?;
                $(crate::hyper::hyperparameters!(@flag kw $fkind $flag);)*
                $($kwcheck(kw)?;)?
                Self::read(&crate::hyper::Source::Kwargs(kw))
            }
        }
    };
    (@argument fixed) => { false };
    (@argument $kind:ident) => { true };
    (@flag $kw:ident flag $key:ident) => {
        $kw.unsupported_flag(stringify!($key), crate::kwargs::SINGLE_TENSOR_ONLY)?
    };
    (@flag $kw:ident fixed $key:ident) => { () };
    (@hyper) => { Self };
    (@hyper $hyper:ty) => { $hyper };
    (@value $self:ident field $key:ident $default:expr) => {
        crate::hyper::py_value(&$self.$key, $default)
    };
    (@value $self:ident fixed $value:expr) => {
        crate::hyper::Fixed::value($value)
    };
}

pub(crate) use hyperparameters;

/// What [`optimizer_state!`] derives for one parameter's state under the algorithm `A`,
/// over elements of type `T`.
pub(crate) trait Buffers<A: Hyperparameters, T>: Sized {
    /// Fresh state for a parameter of `numel` elements.
    fn init(config: &A, hyper: &A::Hyper, numel: usize) -> Self;
    /// Checks, before a step changes anything, that the state can be stepped under
    /// `hyper` (a buffer the hyperparameters need is there).
    fn check(&self, hyper: &A::Hyper, param: usize) -> Result<(), OptimError>;
    /// Advances the step counters (`counter` entries), as a step does first.
    fn advance(&mut self);
    /// The lanes a step under `hyper` runs over: `lanes` (the parameter and its
    /// gradient) with the state's buffers in its slots, in their declared order; a
    /// buffer `hyper` does not need leaves its slot empty, and a `lazy` one it needs is
    /// created (zeros) here.
    fn lanes<'a>(&'a mut self, hyper: &A::Hyper, lanes: Lanes<'a, T>) -> Lanes<'a, T>;
    /// The state in PyTorch's names and order.
    fn save(&self, shape: &[usize]) -> ParamState;
    /// Reads state saved by `save` (or by PyTorch).
    fn load(reader: &StateReader<'_>) -> Result<Self, OptimError>;
}

/// Declares one parameter's state, entries in PyTorch's names and order:
///
/// - `name: counter`: a step count, a 0-d tensor of the parameters' type starting at 0,
///   advanced by every step before the kernel is made (PyTorch's `state_step += 1`);
/// - `name: scalar(init)`: a 0-d tensor of the parameters' type, starting at `init`;
/// - `name: tensor(init)`: a buffer of the parameter's shape filled with `init`;
/// - `name: tensor(init) if (cond)`: created only if `cond` holds when the state is
///   created; a step that needs it (`cond`) and finds none is an error;
/// - `name: lazy if (cond)`: created (zeros) by the first step that needs it (`cond`),
///   saved once it exists.
///
/// `init` and `cond` are `f64` and `bool` expressions of the constructor's config and
/// a group's hyperparameters, named by the closure-like head `|config, hyper|`; the
/// state serves the configs listed after `for`. The buffers (every entry but the
/// scalars) are the kernel's state lanes, in this order (see [`Buffers::lanes`]).
macro_rules! optimizer_state {
    (
        $(#[$meta:meta])*
        $state:ident for $($config:ty),+ ; |$c:ident, $h:ident| $entries:tt
    ) => {
        crate::hyper::optimizer_state!(@struct [$(#[$meta])*] $state $entries);
        $(crate::hyper::optimizer_state!(@impl $state $config, $c, $h, $entries);)+
    };
    (@struct [$(#[$meta:meta])*] $state:ident {
        $($key:ident: $kind:ident $(($($init:tt)*))? $(if ($($cond:tt)*))?),* $(,)?
    }) => {
        $(#[$meta])*
        pub(crate) struct $state<T> {
            $($key: crate::hyper::optimizer_state!(@ty $kind $(if ($($cond)*))?),)*
        }

        impl<T: tempo_tensor::Float> Default for $state<T> {
            fn default() -> Self {
                Self { $($key: Default::default(),)* }
            }
        }

        impl<T: tempo_tensor::Float> std::fmt::Debug for $state<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($state))
                    $(.field(stringify!($key), &self.$key))*
                    .finish()
            }
        }
    };
    (@impl $state:ident $config:ty, $c:ident, $h:ident, {
        $($key:ident: $kind:ident $(($($init:tt)*))? $(if ($($cond:tt)*))?),* $(,)?
    }) => {
        impl<T: tempo_tensor::Float> crate::hyper::Buffers<$config, T> for $state<T> {
            #[allow(unused_variables)]
            fn init(
                $c: &$config,
                $h: &<$config as crate::hyper::Hyperparameters>::Hyper,
                numel: usize,
            ) -> Self {
                Self {
                    $($key: crate::hyper::optimizer_state!(
                        @init numel $kind $(($($init)*))? $(if ($($cond)*))?
                    ),)*
                }
            }

            #[allow(unused_variables)]
            fn check(
                &self,
                $h: &<$config as crate::hyper::Hyperparameters>::Hyper,
                param: usize,
            ) -> Result<(), crate::OptimError> {
                $(crate::hyper::optimizer_state!(
                    @check self param $key $kind $(if ($($cond)*))?
                );)*
                Ok(())
            }

            fn advance(&mut self) {
                $(crate::hyper::optimizer_state!(@advance self $key $kind);)*
            }

            #[allow(unused_variables)]
            fn lanes<'a>(
                &'a mut self,
                $h: &<$config as crate::hyper::Hyperparameters>::Hyper,
                lanes: crate::kernels::Lanes<'a, T>,
            ) -> crate::kernels::Lanes<'a, T> {
                let lanes = crate::kernels::Slots::new(lanes);
                $(let lanes = crate::hyper::optimizer_state!(
                    @lane lanes self $key $kind $(if ($($cond)*))?
                );)*
                lanes.finish()
            }

            fn save(&self, shape: &[usize]) -> crate::state::ParamState {
                let w = crate::state::StateWriter::new(shape);
                $(let w = crate::hyper::optimizer_state!(
                    @save w self $key $kind $(if ($($cond)*))?
                );)*
                w.finish()
            }

            fn load(
                r: &crate::state::StateReader<'_>,
            ) -> Result<Self, crate::OptimError> {
                Ok(Self {
                    $($key: crate::hyper::optimizer_state!(
                        @load r $key $kind $(if ($($cond)*))?
                    ),)*
                })
            }
        }
    };
    (@ty counter) => { T };
    (@ty scalar) => { T };
    (@ty tensor) => { Vec<T> };
    (@ty $($optional:tt)+) => { Option<Vec<T>> };
    (@init $n:ident counter) => { T::zero() };
    (@init $n:ident scalar ($($init:tt)*)) => { crate::kernels::f($($init)*) };
    (@init $n:ident tensor ($($init:tt)*)) => { vec![crate::kernels::f($($init)*); $n] };
    (@init $n:ident tensor ($($init:tt)*) if ($($cond:tt)*)) => {
        ($($cond)*).then(|| vec![crate::kernels::f($($init)*); $n])
    };
    (@init $n:ident lazy if ($($cond:tt)*)) => { None };
    (@check $s:ident $param:ident $key:ident tensor if ($($cond:tt)*)) => {
        if ($($cond)*) && $s.$key.is_none() {
            return Err(crate::OptimError::MissingState {
                param: $param,
                key: stringify!($key).into(),
            });
        }
    };
    (@check $s:ident $param:ident $key:ident $($other:tt)*) => { () };
    (@advance $s:ident $key:ident counter) => { crate::kernels::advance(&mut $s.$key) };
    (@advance $s:ident $key:ident $($other:tt)*) => { () };
    (@lane $l:ident $s:ident $key:ident counter) => { $l };
    (@lane $l:ident $s:ident $key:ident scalar) => { $l };
    (@lane $l:ident $s:ident $key:ident tensor) => { $l.bind(Some(&mut $s.$key[..])) };
    (@lane $l:ident $s:ident $key:ident tensor if ($($cond:tt)*)) => {
        {
            let needed: bool = $($cond)*;
            $l.bind(if needed { $s.$key.as_deref_mut() } else { None })
        }
    };
    (@lane $l:ident $s:ident $key:ident lazy if ($($cond:tt)*)) => {{
        let (n, needed): (usize, bool) = ($l.len(), $($cond)*);
        $l.bind(if needed {
            Some(&mut $s.$key.get_or_insert_with(|| vec![T::zero(); n])[..])
        } else {
            None
        })
    }};
    (@save $w:ident $s:ident $key:ident counter) => { $w.scalar(stringify!($key), $s.$key) };
    (@save $w:ident $s:ident $key:ident scalar) => { $w.scalar(stringify!($key), $s.$key) };
    (@save $w:ident $s:ident $key:ident tensor) => { $w.tensor(stringify!($key), &$s.$key) };
    (@save $w:ident $s:ident $key:ident $($optional:tt)+) => {
        $w.opt_tensor(stringify!($key), $s.$key.as_ref())
    };
    (@load $r:ident $key:ident counter) => { $r.scalar(stringify!($key))? };
    (@load $r:ident $key:ident scalar) => { $r.scalar(stringify!($key))? };
    (@load $r:ident $key:ident tensor) => { $r.tensor(stringify!($key))? };
    (@load $r:ident $key:ident $($optional:tt)+) => { $r.opt_tensor(stringify!($key))? };
}

pub(crate) use optimizer_state;

/// A flag's or fixed entry's value in the defaults dict (`false`, `None`, `true`).
pub(crate) trait Fixed {
    /// The dict value.
    fn value(self) -> Value;
}

impl Fixed for bool {
    fn value(self) -> Value {
        Value::Bool(self)
    }
}

impl Fixed for Option<bool> {
    fn value(self) -> Value {
        self.map_or(Value::None, Value::Bool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_numbers_keep_int_defaults() {
        assert_eq!(py_value(&0.0, 0), Value::Int(0));
        assert_eq!(py_value(&0.1, 0), Value::Float(0.1));
        assert_eq!(py_value(&0.0, 0.0), Value::Float(0.0));
        assert_eq!(py_value(&-0.0, 0), Value::Float(-0.0));
        assert_eq!(
            py_value(&(1e-6, 50.0), (1e-6, 50)),
            Value::Tuple(vec![Value::Float(1e-6), Value::Int(50)])
        );
    }
}
