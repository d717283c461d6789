//! Property tests: save → load is the identity in both formats, and random or mutated
//! bytes never make a reader panic.

use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use tempo_ckpt::{
    read_pt_bytes, read_tempo_bytes, write_pt_bytes, write_tempo_bytes, AnyTensor, DType, Object,
};

use crate::golden::golden_object;
use crate::torch_checkpoint;

const DTYPES: [DType; 10] = [
    DType::Bool,
    DType::U8,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::F16,
    DType::BF16,
    DType::F32,
    DType::F64,
];

fn arb_tensor() -> impl Strategy<Value = AnyTensor> {
    (0..DTYPES.len(), vec(0..4usize, 0..3)).prop_flat_map(|(d, shape)| {
        let dtype = DTYPES[d];
        let n: usize = shape.iter().product();
        vec(any::<u8>(), n * dtype.size()).prop_map(move |mut bytes| {
            if dtype == DType::Bool {
                bytes.iter_mut().for_each(|b| *b &= 1);
            }
            AnyTensor::from_le_bytes(dtype, shape.clone(), &bytes).unwrap()
        })
    })
}

/// Objects whose dict keys and set items are distinct under Python's equality (a
/// Python dict would merge `1` and `True`).
fn arb_object() -> impl Strategy<Value = Object> {
    let leaf = prop_oneof![
        Just(Object::None),
        any::<bool>().prop_map(Object::Bool),
        any::<i64>().prop_map(Object::Int),
        any::<f64>().prop_map(Object::Float),
        ".{0,12}".prop_map(Object::Str),
        vec(any::<u8>(), 0..6).prop_map(Object::Bytes),
        arb_tensor().prop_map(Object::Tensor),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Object::List),
            vec(inner.clone(), 0..5).prop_map(Object::Tuple),
            btree_map("[a-z$]{0,6}", inner.clone(), 0..4).prop_map(|m| Object::Dict(
                m.into_iter().map(|(k, v)| (Object::Str(k), v)).collect()
            )),
            btree_map(any::<i64>(), inner.clone(), 0..4).prop_map(|m| Object::Dict(
                m.into_iter().map(|(k, v)| (Object::Int(k), v)).collect()
            )),
            (
                btree_map("[a-z.]{1,8}", inner.clone(), 0..4),
                btree_map("_[a-z]{1,4}", inner, 0..2)
            )
                .prop_map(|(e, a)| {
                    Object::OrderedDict {
                        entries: e.into_iter().map(|(k, v)| (Object::Str(k), v)).collect(),
                        attrs: a.into_iter().collect(),
                    }
                }),
            btree_map(any::<i64>(), any::<i64>(), 0..4).prop_map(|m| Object::Counter(
                m.into_iter()
                    .map(|(k, v)| (Object::Int(k), Object::Int(v)))
                    .collect()
            )),
            btree_set(any::<i64>(), 0..4)
                .prop_map(|s| Object::Set(s.into_iter().map(Object::Int).collect())),
            btree_set("[a-z]{0,3}", 0..3)
                .prop_map(|s| Object::FrozenSet(s.into_iter().map(Object::Str).collect())),
        ]
    })
}

/// Equality that sees NaNs as equal (their debug forms are the same).
fn same(a: &Object, b: &Object) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Up to four random edits: flip, overwrite, truncate, insert.
fn mutate(mut bytes: Vec<u8>, edits: &[(u8, usize, u8)]) -> Vec<u8> {
    for &(kind, at, value) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match kind % 4 {
            0 => bytes[at] ^= value | 1,
            1 => bytes[at] = bytes[at].wrapping_add(value | 1),
            2 => bytes.truncate(at),
            _ => bytes.insert(at, value),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn tempo_save_then_load_is_the_identity(o in arb_object()) {
        let back = read_tempo_bytes(&write_tempo_bytes(&o).unwrap()).unwrap();
        prop_assert!(same(&back, &o), "{back:?} != {o:?}");
    }

    #[test]
    fn pt_save_then_load_is_the_identity(o in arb_object()) {
        let back = read_pt_bytes(&write_pt_bytes("archive", &o).unwrap()).unwrap();
        prop_assert!(same(&back, &o), "{back:?} != {o:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_errors(bytes in vec(any::<u8>(), 0..512)) {
        prop_assert!(read_tempo_bytes(&bytes).is_err());
        prop_assert!(read_pt_bytes(&bytes).is_err());
    }

    #[test]
    fn any_edit_of_a_tempo_file_is_an_error(edits in vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..4)) {
        let good = write_tempo_bytes(&golden_object()).unwrap();
        let bad = mutate(good.clone(), &edits);
        prop_assume!(bad != good);
        prop_assert!(read_tempo_bytes(&bad).is_err());
    }

    #[test]
    fn edited_torch_files_never_panic(edits in vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..4)) {
        let good = std::fs::read(torch_checkpoint("seed_epoch5_float32.pt")).unwrap();
        let _ = read_pt_bytes(&mutate(good, &edits));
        // Also a pickle-heavy file, written by tempo.
        let ours = write_pt_bytes("a", &golden_object()).unwrap();
        let _ = read_pt_bytes(&mutate(ours, &edits));
    }
}
