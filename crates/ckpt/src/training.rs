//! A whole training state, and its layout as an object tree.

use std::io::Write;
use std::path::Path;

use tempo_param_groups::{Dict, Value};

use crate::torch::map::{
    module_state_from_owned, module_state_to_object_with, optimizer_state_from_owned,
    optimizer_state_to_object_with, scheduler_state_from_object, scheduler_state_to_object, take,
};
use tempo_tensor::{GeneratorState, TensorData};

use crate::write::write_tempo_with;
use crate::{
    load_object, write_atomic, AnyTensor, CkptError, ModuleStateDict, Object, OptimizerStateDict,
};

/// The `kind` a training state's tree carries.
pub const TRAINING_STATE_KIND: &str = "tempo.TrainingState";

/// One named array of a random generator's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RngArray {
    /// 32-bit words (MT19937's 624-word state).
    U32(Vec<u32>),
    /// 64-bit words (an index, a seed, a counter).
    U64(Vec<u64>),
}

/// A random generator's state: named arrays, generic over the generator
/// (`[("mt", U32(624 words)), ("index", U64([i]))]` for MT19937).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RngState {
    /// The generator's name (`mt19937`).
    pub kind: String,
    /// The arrays, in order.
    pub arrays: Vec<(String, RngArray)>,
}

/// Everything needed to resume training, as one checkpoint holds it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainingState {
    /// The epoch counter.
    pub epoch: i64,
    /// The step (iteration) counter.
    pub step: i64,
    /// The model's state dict.
    pub model: ModuleStateDict,
    /// The optimizer's state dict, if there is an optimizer.
    pub optimizer: Option<OptimizerStateDict>,
    /// The scheduler's state dict, if there is a scheduler.
    pub scheduler: Option<Dict>,
    /// The random generator's state, if it is saved.
    pub rng: Option<RngState>,
    /// The user's metadata (metrics, config, notes).
    pub metadata: Dict,
}

impl From<&GeneratorState> for RngState {
    /// tempo's MT19937 generator: `seed` and `index` (u64), `mt` (624 u32 words), and
    /// the cached Box–Muller halves as their bits (empty when there is none).
    fn from(g: &GeneratorState) -> RngState {
        RngState {
            kind: "mt19937".into(),
            arrays: vec![
                ("seed".into(), RngArray::U64(vec![g.seed()])),
                ("mt".into(), RngArray::U32(g.mt().to_vec())),
                ("index".into(), RngArray::U64(vec![g.index() as u64])),
                (
                    "next_double_normal".into(),
                    RngArray::U64(
                        g.next_double_normal()
                            .map(f64::to_bits)
                            .into_iter()
                            .collect(),
                    ),
                ),
                (
                    "next_float_normal".into(),
                    RngArray::U32(
                        g.next_float_normal()
                            .map(f32::to_bits)
                            .into_iter()
                            .collect(),
                    ),
                ),
            ],
        }
    }
}

impl TryFrom<&RngState> for GeneratorState {
    type Error = CkptError;

    /// The generator state [`RngState::from`] saved; `Err` if an array is missing, has
    /// the wrong type or length, or the generator rejects the state.
    fn try_from(r: &RngState) -> Result<GeneratorState, CkptError> {
        if r.kind != "mt19937" {
            return Err(CkptError::schema("rng.kind", "mt19937", r.kind.clone()));
        }
        let find = |name: &str| r.arrays.iter().find(|(n, _)| n == name).map(|(_, a)| a);
        let u64s = |name: &str, max: usize| match find(name) {
            Some(RngArray::U64(v)) if v.len() <= max => Ok(v.clone()),
            other => Err(CkptError::schema(
                format!("rng.arrays.{name}"),
                format!("at most {max} uint64"),
                format!("{other:?}"),
            )),
        };
        let u32s = |name: &str| match find(name) {
            Some(RngArray::U32(v)) => Ok(v.clone()),
            other => Err(CkptError::schema(
                format!("rng.arrays.{name}"),
                "uint32 words",
                format!("{other:?}"),
            )),
        };
        let one = |name: &str| -> Result<u64, CkptError> {
            u64s(name, 1)?
                .first()
                .copied()
                .ok_or_else(|| CkptError::schema(format!("rng.arrays.{name}"), "one value", "none"))
        };
        let index = usize::try_from(one("index")?)
            .map_err(|_| CkptError::schema("rng.arrays.index", "a position", "a huge number"))?;
        let float = u32s("next_float_normal")?;
        if float.len() > 1 {
            return Err(CkptError::schema(
                "rng.arrays.next_float_normal",
                "at most one word",
                float.len().to_string(),
            ));
        }
        GeneratorState::new(
            one("seed")?,
            u32s("mt")?,
            index,
            u64s("next_double_normal", 1)?
                .first()
                .map(|&b| f64::from_bits(b)),
            float.first().map(|&b| f32::from_bits(b)),
        )
        .map_err(|e| CkptError::schema("rng", "a valid MT19937 state", e.to_string()))
    }
}

const KEYS: [&str; 8] = [
    "kind",
    "epoch",
    "step",
    "model",
    "optimizer",
    "scheduler",
    "rng",
    "metadata",
];

fn rng_to_object(rng: &RngState) -> Object {
    let arrays = rng
        .arrays
        .iter()
        .map(|(name, a)| {
            let (dtype, values) = match a {
                RngArray::U32(v) => (
                    "uint32",
                    v.iter().map(|&x| Object::Int(i64::from(x))).collect(),
                ),
                // u64 words are stored as the i64 with the same bits.
                RngArray::U64(v) => ("uint64", v.iter().map(|&x| Object::Int(x as i64)).collect()),
            };
            (
                name.clone(),
                Object::str_dict([
                    ("dtype", Object::Str(dtype.into())),
                    ("values", Object::List(values)),
                ]),
            )
        })
        .collect::<Vec<_>>();
    Object::str_dict([
        ("kind", Object::Str(rng.kind.clone())),
        ("arrays", Object::str_dict(arrays)),
    ])
}

fn rng_from_object(o: &Object) -> Result<RngState, CkptError> {
    let kind = o
        .get("kind")
        .and_then(Object::as_str)
        .ok_or_else(|| CkptError::schema("rng.kind", "a string", "none"))?;
    let arrays_obj = o
        .get("arrays")
        .and_then(Object::entries)
        .ok_or_else(|| CkptError::schema("rng.arrays", "a dict", "none"))?;
    let mut arrays = Vec::new();
    for (k, v) in arrays_obj {
        let name = k
            .as_str()
            .ok_or_else(|| CkptError::schema("rng.arrays", "string keys", k.type_name()))?;
        let path = format!("rng.arrays.{name}");
        let values = v
            .get("values")
            .and_then(Object::items)
            .ok_or_else(|| CkptError::schema(&path, "a `values` list", "none"))?;
        let ints: Vec<i64> = values
            .iter()
            .map(|x| {
                x.as_i64()
                    .ok_or_else(|| CkptError::schema(&path, "ints", x.type_name()))
            })
            .collect::<Result<_, _>>()?;
        let array = match v.get("dtype").and_then(Object::as_str) {
            Some("uint32") => RngArray::U32(
                ints.iter()
                    .map(|&x| {
                        u32::try_from(x)
                            .map_err(|_| CkptError::schema(&path, "uint32 values", x.to_string()))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some("uint64") => RngArray::U64(ints.iter().map(|&x| x as u64).collect()),
            other => {
                return Err(CkptError::schema(
                    &path,
                    "dtype uint32 or uint64",
                    format!("{other:?}"),
                ))
            }
        };
        arrays.push((name.to_string(), array));
    }
    Ok(RngState {
        kind: kind.to_string(),
        arrays,
    })
}

impl TrainingState {
    /// The object tree a checkpoint stores: a dict with `kind`, `epoch`, `step`,
    /// `model` (an `OrderedDict` of tensors), `optimizer` and `scheduler` (PyTorch's
    /// layouts, or None), `rng` (or None) and `metadata`. Converted to `.pt`, it is an
    /// ordinary PyTorch checkpoint dict.
    pub fn to_object(&self) -> Object {
        self.to_object_with(&mut |t| Object::Tensor(AnyTensor::from(t)))
    }

    /// [`TrainingState::to_object`] with `tensor` making each tensor's object, in
    /// tree order.
    fn to_object_with<'a>(&'a self, tensor: &mut dyn FnMut(&'a TensorData) -> Object) -> Object {
        Object::str_dict([
            ("kind", Object::Str(TRAINING_STATE_KIND.into())),
            ("epoch", Object::Int(self.epoch)),
            ("step", Object::Int(self.step)),
            ("model", module_state_to_object_with(&self.model, tensor)),
            (
                "optimizer",
                self.optimizer
                    .as_ref()
                    .map_or(Object::None, |o| optimizer_state_to_object_with(o, tensor)),
            ),
            (
                "scheduler",
                self.scheduler
                    .as_ref()
                    .map_or(Object::None, scheduler_state_to_object),
            ),
            ("rng", self.rng.as_ref().map_or(Object::None, rng_to_object)),
            ("metadata", Object::from(&self.metadata)),
        ])
    }

    /// Reads the tree [`TrainingState::to_object`] makes, checking every part.
    ///
    /// This copies every tensor of `o`. When the tree is yours to give away (what
    /// [`crate::read_pt`] and [`crate::load_object`] return),
    /// `TrainingState::try_from(object)` checks the same and moves the tensors
    /// instead: for a model with Adam's state, that skips copying three times the
    /// model's size.
    ///
    /// ```
    /// # use tempo_ckpt::{read_pt_bytes, write_pt_bytes, TrainingState};
    /// let bytes = write_pt_bytes("run", &TrainingState::default().to_object())?;
    /// let object = read_pt_bytes(&bytes)?;
    /// assert_eq!(TrainingState::from_object(&object)?, TrainingState::default());
    /// // The fast path: no tensor is copied.
    /// assert_eq!(TrainingState::try_from(object)?, TrainingState::default());
    /// # Ok::<(), tempo_ckpt::CkptError>(())
    /// ```
    pub fn from_object(o: &Object) -> Result<TrainingState, CkptError> {
        TrainingState::try_from(o.clone())
    }
}

impl TryFrom<Object> for TrainingState {
    type Error = CkptError;

    /// [`TrainingState::from_object`], moving the tensors instead of copying them: the
    /// fast way to read a training state out of a `.pt` file
    /// (`TrainingState::try_from(read_pt(path)?)`). [`load`] reads tempo checkpoints
    /// this way.
    fn try_from(o: Object) -> Result<TrainingState, CkptError> {
        let type_name = o.type_name();
        let Object::Dict(mut entries) = o else {
            return Err(CkptError::schema("training state", "a dict", type_name));
        };
        for (k, _) in &entries {
            if !k.as_str().is_some_and(|k| KEYS.contains(&k)) {
                return Err(CkptError::schema(
                    "training state",
                    format!("only the keys {KEYS:?}"),
                    crate::object::key_repr(k),
                ));
            }
        }
        let mut get =
            |k: &str| take(&mut entries, k).ok_or_else(|| CkptError::schema(k, "a value", "none"));
        let kind = get("kind")?;
        if kind.as_str() != Some(TRAINING_STATE_KIND) {
            return Err(CkptError::schema(
                "kind",
                TRAINING_STATE_KIND,
                format!("{kind:?}"),
            ));
        }
        let int = |k: &str, v: Object| {
            v.as_i64()
                .ok_or_else(|| CkptError::schema(k, "an int", v.type_name()))
        };
        let epoch = int("epoch", get("epoch")?)?;
        let step = int("step", get("step")?)?;
        let (model, optimizer, scheduler, rng, metadata) = (
            get("model")?,
            get("optimizer")?,
            get("scheduler")?,
            get("rng")?,
            get("metadata")?,
        );
        let metadata = match metadata.to_value("metadata")? {
            Value::Dict(d) => d,
            other => {
                return Err(CkptError::schema(
                    "metadata",
                    "a dict with string keys",
                    other.type_name(),
                ))
            }
        };
        let optional = |v: Object| {
            if matches!(v, Object::None) {
                None
            } else {
                Some(v)
            }
        };
        Ok(TrainingState {
            epoch,
            step,
            model: module_state_from_owned(model)?,
            optimizer: optional(optimizer)
                .map(optimizer_state_from_owned)
                .transpose()?,
            scheduler: optional(scheduler)
                .as_ref()
                .map(scheduler_state_from_object)
                .transpose()?,
            rng: optional(rng).as_ref().map(rng_from_object).transpose()?,
            metadata,
        })
    }
}

/// Saves a training state as a tempo checkpoint, atomically.
///
/// The tensors are written straight from the state, without a copy.
pub fn save(path: impl AsRef<Path>, state: &TrainingState) -> Result<(), CkptError> {
    let mut tensors = Vec::new();
    let tree = state.to_object_with(&mut |t| {
        tensors.push(t);
        Object::Tensor(AnyTensor::placeholder())
    });
    write_atomic(path, |file| {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        write_tempo_with(&mut w, &tree, tensors)?;
        w.flush()?;
        Ok(())
    })
}

/// Loads a training state from a tempo checkpoint. The returned value is fully
/// validated (magic, version, checksum, layout, dtypes); apply it with the model's and
/// optimizer's own load functions, which check it against the live objects first.
///
/// The tensors are read once, straight into the state's arrays (see [`load_object`]),
/// and moved, never copied.
pub fn load(path: impl AsRef<Path>) -> Result<TrainingState, CkptError> {
    TrainingState::try_from(load_object(path)?)
}
