//! Golden files: checkpoints written by each format version must keep loading, with
//! exactly the values they were written with. `TEMPO_BLESS=1` writes them anew (only
//! when a new format version adds its own golden files; old ones are never rewritten).

use std::path::PathBuf;

use ndarray::{ArrayD, IxDyn};
use tempo_ckpt::{
    load, load_object, write_tempo_bytes, AnyTensor, DType, Elements, Object, OptimizerStateDict,
    ParamState, RngArray, RngState, StateValue, TrainingState,
};
use tempo_param_groups::{Dict, Value};
use tempo_tensor::TensorData;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn f32s(shape: &[usize], v: &[f32]) -> TensorData {
    TensorData::F32(ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap())
}

/// The training state of `v1_training_state.tempo`, written out by hand.
pub(crate) fn golden_state() -> TrainingState {
    let mut group = Dict::new();
    group.insert("lr", 0.025750000000000002);
    group.insert("betas", Value::Tuple(vec![0.9.into(), 0.999.into()]));
    group.insert("eps", 1e-8);
    group.insert("weight_decay", 0i64);
    group.insert("foreach", Value::None);
    group.insert("amsgrad", false);
    group.insert("initial_lr", 0.001);
    group.insert("params", Value::List(vec![Value::Int(0), Value::Int(1)]));
    let step = f32s(&[], &[5.0]);
    let state = vec![
        (
            1,
            ParamState {
                entries: vec![
                    ("step".into(), StateValue::Tensor(step.clone())),
                    (
                        "exp_avg".into(),
                        StateValue::Tensor(f32s(&[2], &[0.5, -0.5])),
                    ),
                    (
                        "exp_avg_sq".into(),
                        StateValue::Tensor(f32s(&[2], &[0.25, 0.125])),
                    ),
                ],
            },
        ),
        (
            0,
            ParamState {
                entries: vec![
                    ("step".into(), StateValue::Tensor(step)),
                    (
                        "exp_avg".into(),
                        StateValue::Tensor(f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0])),
                    ),
                    (
                        "exp_avg_sq".into(),
                        StateValue::Tensor(f32s(&[2, 2], &[1e-3, 2e-3, 3e-3, f32::MIN_POSITIVE])),
                    ),
                ],
            },
        ),
    ];
    let mut sched = Dict::new();
    sched.insert(
        "milestones",
        Value::Map(vec![
            (Value::Int(3), Value::Int(1)),
            (Value::Int(6), Value::Int(2)),
        ]),
    );
    sched.insert("gamma", 0.1);
    sched.insert("base_lrs", Value::float_list([0.001]));
    sched.insert("last_epoch", 5i64);
    sched.insert("_step_count", 6i64);
    sched.insert("_is_initial", false);
    sched.insert("_last_lr", Value::float_list([0.025750000000000002]));
    let mut metadata = Dict::new();
    metadata.insert("val_loss", 0.125);
    metadata.insert("note", "ünïcödé \"quoted\" \\ text");
    metadata.insert(
        "config",
        Value::Dict([("hidden", Value::Int(20))].into_iter().collect()),
    );
    TrainingState {
        epoch: 4,
        step: 5,
        model: vec![
            ("fc.weight".into(), f32s(&[2, 2], &[0.1, -0.2, 0.3, -0.4])),
            ("fc.bias".into(), f32s(&[2], &[0.0, -0.0])),
            (
                "head.weight".into(),
                TensorData::F64(
                    ArrayD::from_shape_vec(IxDyn(&[1, 3]), vec![1.0 / 3.0, f64::MAX, -1e-300])
                        .unwrap(),
                ),
            ),
        ],
        optimizer: Some(OptimizerStateDict {
            state,
            param_groups: vec![group],
        }),
        scheduler: Some(sched),
        rng: Some(RngState {
            kind: "mt19937".into(),
            arrays: vec![
                (
                    "mt".into(),
                    RngArray::U32(vec![0, 1, u32::MAX, 0x8000_0000]),
                ),
                ("index".into(), RngArray::U64(vec![624, u64::MAX])),
            ],
        }),
        metadata,
    }
}

/// The object of `v1_all_dtypes.tempo`: one tensor of every dtype, and every kind of value.
pub(crate) fn golden_object() -> Object {
    let t = |dtype: DType, shape: Vec<usize>, bytes: &[u8]| {
        Object::Tensor(AnyTensor::from_le_bytes(dtype, shape, bytes).unwrap())
    };
    Object::str_dict([
        ("bool", t(DType::Bool, vec![3], &[1, 0, 1])),
        ("uint8", t(DType::U8, vec![2], &[0, 255])),
        ("int8", t(DType::I8, vec![2], &[0x80, 0x7f])),
        ("int16", t(DType::I16, vec![1], &[0x34, 0x12])),
        ("int32", t(DType::I32, vec![], &[0xff, 0xff, 0xff, 0xff])),
        (
            "int64",
            t(DType::I64, vec![1, 1], &[1, 0, 0, 0, 0, 0, 0, 0x80]),
        ),
        ("float16", t(DType::F16, vec![2], &[0x00, 0x3c, 0x00, 0xc0])),
        (
            "bfloat16",
            t(DType::BF16, vec![2], &[0x80, 0x3f, 0x00, 0x40]),
        ),
        ("float32", t(DType::F32, vec![0, 4], &[])),
        (
            "float64",
            t(DType::F64, vec![1], &[0, 0, 0, 0, 0, 0, 0xf8, 0x7f]),
        ),
        (
            "values",
            Object::List(vec![
                Object::None,
                Object::Bool(true),
                Object::Int(i64::MIN),
                Object::Float(f64::INFINITY),
                Object::Bytes(vec![0, 1, 254]),
                Object::Tuple(vec![Object::Str("$tuple".into())]),
                Object::Set(vec![Object::Int(1)]),
                Object::FrozenSet(vec![Object::Str("a".into())]),
                Object::Dict(vec![
                    (Object::Int(1), Object::Str("one".into())),
                    (Object::None, Object::Float(2.5)),
                ]),
                Object::Counter(vec![(Object::Int(3), Object::Int(2))]),
                Object::OrderedDict {
                    entries: vec![(Object::Str("x".into()), Object::Int(1))],
                    attrs: vec![(
                        "_metadata".into(),
                        Object::str_dict([("", Object::str_dict([("version", Object::Int(1))]))]),
                    )],
                },
            ]),
        ),
    ])
}

fn bless(name: &str, bytes: &[u8]) {
    if std::env::var_os("TEMPO_BLESS").is_some() && !golden(name).exists() {
        std::fs::write(golden(name), bytes).unwrap();
    }
}

#[test]
fn v1_training_state_keeps_loading() {
    let expected = golden_state();
    bless(
        "v1_training_state.tempo",
        &write_tempo_bytes(&expected.to_object()).unwrap(),
    );
    let loaded = load(golden("v1_training_state.tempo")).unwrap();
    assert_eq!(loaded, expected);
    // The writer of this version still produces the same bytes.
    let bytes = std::fs::read(golden("v1_training_state.tempo")).unwrap();
    assert_eq!(write_tempo_bytes(&loaded.to_object()).unwrap(), bytes);
}

#[test]
fn v1_all_dtypes_keeps_loading() {
    let expected = golden_object();
    bless(
        "v1_all_dtypes.tempo",
        &write_tempo_bytes(&expected).unwrap(),
    );
    let loaded = load_object(golden("v1_all_dtypes.tempo")).unwrap();
    // Compare through the debug form: the float64 tensor holds a NaN.
    assert_eq!(format!("{loaded:?}"), format!("{expected:?}"));
    let Some(Object::Tensor(nan)) = loaded.get("float64") else {
        panic!("float64 is not a tensor")
    };
    assert!(matches!(nan.elements(), Elements::F64(v) if v[0].is_nan()));
}
