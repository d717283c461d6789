//! Sparse tensors (COO, CSR, CSC, BSR, BSC) from files `torch.save` wrote, through
//! every format and back, bit for bit.
//!
//! `testdata/foreign/sparse.pt` and `sparse_bad.pt` were written by PyTorch 2.15's own
//! `torch.save` (`testdata/foreign/make_torch_fixtures.py`), so they hold exactly what
//! torch writes: `_rebuild_sparse_tensor(_get_layout("torch.sparse_coo"), (indices,
//! values, torch.Size(size), is_coalesced))`, and `(crow_indices, col_indices, values,
//! size)` (or `ccol_indices, row_indices`) for the compressed layouts, every part an
//! ordinary `_rebuild_tensor_v2` tensor (CSR's `col_indices` a view at offset 3 of a
//! storage it shares with nothing else).

use std::path::PathBuf;

use tempo_ckpt::{
    convert_checked, load_object, read_pt, read_pt_bytes, read_tempo_bytes, write_pt_bytes,
    write_tempo_bytes, AnyTensor, CkptError, Elements, Object, SparseLayout, SparseTensor,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/foreign")
        .join(name)
}

fn sparse<'a>(o: &'a Object, key: &str) -> &'a SparseTensor {
    match o.get(key) {
        Some(Object::Sparse(s)) => s,
        other => panic!("{key}: {other:?}"),
    }
}

fn i64s(t: &AnyTensor) -> Vec<i64> {
    match t.elements() {
        Elements::I64(v) => v.clone(),
        Elements::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        other => panic!("{other:?}"),
    }
}

fn f32s(t: &AnyTensor) -> Vec<f32> {
    match t.elements() {
        Elements::F32(v) => v.clone(),
        other => panic!("{other:?}"),
    }
}

/// Reads `o` back through `.pt` bytes and tempo bytes; both must be identical to it.
fn check_round_trips(o: &Object) {
    let pt = write_pt_bytes("a", o).unwrap();
    assert_eq!(read_pt_bytes(&pt).unwrap().first_difference(o), None);
    let tempo = write_tempo_bytes(o).unwrap();
    assert_eq!(read_tempo_bytes(&tempo).unwrap().first_difference(o), None);
}

#[test]
fn every_sparse_layout_torch_writes_is_read_part_for_part() {
    let o = read_pt(fixture("sparse.pt")).unwrap();
    let coo = sparse(&o, "coo");
    assert_eq!(coo.layout(), SparseLayout::Coo);
    assert_eq!(coo.size(), &[4, 5]);
    assert_eq!(coo.is_coalesced(), Some(true));
    assert_eq!(coo.indices().shape(), &[2, 3]);
    assert_eq!(i64s(coo.indices()), [0, 1, 3, 2, 0, 4]);
    assert_eq!(f32s(coo.values()), [1.5, -2.0, 3.25]);
    // Uncoalesced, a repeated index, a dense dimension, a NaN: kept as written.
    let u = sparse(&o, "uncoalesced");
    assert_eq!(u.is_coalesced(), Some(false));
    assert_eq!((u.size(), u.values().shape()), (&[3, 2][..], &[3, 2][..]));
    assert_eq!(i64s(u.indices()), [1, 0, 1]);
    let csr = sparse(&o, "csr");
    assert_eq!(csr.layout(), SparseLayout::Csr);
    assert_eq!(i64s(csr.indices()), [0, 1, 3]);
    assert_eq!(i64s(csr.plain_indices().unwrap()), [1, 0, 2]);
    assert_eq!(f32s(csr.values()), [1.0, 2.0, 3.0]);
    let csr32 = sparse(&o, "csr32");
    assert_eq!(csr32.indices().dtype(), tempo_ckpt::DType::I32);
    assert_eq!(csr32.values().dtype(), tempo_ckpt::DType::BF16);
    let csc = sparse(&o, "csc");
    assert_eq!(csc.layout(), SparseLayout::Csc);
    assert_eq!(i64s(csc.indices()), [0, 1, 2, 3]);
    assert_eq!(i64s(csc.plain_indices().unwrap()), [1, 0, 1]);
    assert_eq!(f32s(csc.values()), [2.0, 1.0, 3.0]);
    let bsr = sparse(&o, "bsr");
    assert_eq!((bsr.layout(), bsr.nnz()), (SparseLayout::Bsr, 3));
    assert_eq!(i64s(bsr.indices()), [0, 1, 3]);
    assert_eq!(i64s(bsr.plain_indices().unwrap()), [1, 0, 1]);
    assert_eq!(bsr.values().shape(), &[3, 2, 2]);
    assert_eq!(
        f32s(bsr.values()),
        [2.0, 3.0, 6.0, 7.0, 8.0, 9.0, 12.0, 13.0, 10.0, 11.0, 14.0, 15.0]
    );
    assert_eq!(sparse(&o, "bsc").layout(), SparseLayout::Bsc);
    // A sparse nn.Parameter is read as its data, as for dense parameters.
    assert_eq!(sparse(&o, "param").first_difference(coo), None);
    check_round_trips(&o);
}

#[test]
fn sparse_tensors_convert_losslessly_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("sparse.pt");
    let original = read_pt(&src).unwrap();
    let tempo = dir.path().join("sparse.tempo");
    convert_checked(&src, &tempo, false).unwrap();
    assert_eq!(
        load_object(&tempo).unwrap().first_difference(&original),
        None
    );
    let back = dir.path().join("back.pt");
    convert_checked(&tempo, &back, false).unwrap();
    let again = read_pt(&back).unwrap();
    assert_eq!(again.first_difference(&original), None);
    // What tempo writes is what torch writes: the same rebuild call, layout object and
    // torch.Size (torch 2.15 reads it back to the same tensors).
    let bytes = std::fs::read(&back).unwrap();
    let has = |s: &[u8]| bytes.windows(s.len()).any(|w| w == s);
    assert!(has(b"ctorch._utils\n_rebuild_sparse_tensor\n"));
    assert!(has(b"ctorch.serialization\n_get_layout\n"));
    assert!(has(b"torch.sparse_bsc") && has(b"ctorch\nSize\n"));
}

#[test]
fn a_sparse_tensor_torch_load_refuses_is_an_error_naming_its_key_path() {
    // An index of 9 in a size of 4: torch.load refuses it when it validates.
    let err = read_pt(fixture("sparse_bad.pt")).unwrap_err();
    match &err {
        CkptError::InvalidTensor { path, what, detail } => {
            assert_eq!(path, "emb.weight", "{err}");
            assert!(what.contains("torch.sparse_coo"), "{err}");
            assert!(detail.contains("index 9"), "{err}");
        }
        other => panic!("{other}"),
    }
    // Cut short anywhere, the file is an error, never a panic.
    let bytes = std::fs::read(fixture("sparse.pt")).unwrap();
    for n in (0..bytes.len()).step_by(97) {
        assert!(read_pt_bytes(&bytes[..n]).is_err(), "cut at {n}");
    }
}

#[test]
fn a_coo_tensor_without_the_coalesced_flag_keeps_it_absent() {
    // PyTorch before 2.1 wrote (indices, values, size): no `is_coalesced`.
    let t = |shape: &[usize], v: Vec<i64>| AnyTensor::new(shape.to_vec(), Elements::I64(v));
    let values = AnyTensor::new(vec![2], Elements::F64(vec![1.0, f64::NAN])).unwrap();
    let coo = SparseTensor::coo(t(&[1, 2], vec![0, 3]).unwrap(), values, vec![4], None).unwrap();
    let o = Object::str_dict([("w", Object::Sparse(Box::new(coo)))]);
    check_round_trips(&o);
    let back = read_pt_bytes(&write_pt_bytes("a", &o).unwrap()).unwrap();
    assert_eq!(sparse(&back, "w").is_coalesced(), None);
    let flagged = SparseTensor::coo(
        t(&[1, 2], vec![0, 3]).unwrap(),
        AnyTensor::new(vec![2], Elements::F64(vec![1.0, f64::NAN])).unwrap(),
        vec![4],
        Some(false),
    )
    .unwrap();
    let other = Object::str_dict([("w", Object::Sparse(Box::new(flagged)))]);
    assert!(back
        .first_difference(&other)
        .unwrap()
        .contains("is_coalesced"));
}

/// `testdata/foreign/sparse_legacy.pt`: torch.save(..., _use_new_zipfile_serialization=
/// False) of a COO, a CSR and a quantized tensor, by PyTorch 2.15 itself.
#[test]
fn sparse_and_quantized_tensors_in_the_legacy_format_are_read() {
    let o = read_pt(fixture("sparse_legacy.pt")).unwrap();
    let coo = sparse(&o, "coo");
    assert_eq!((coo.size(), i64s(coo.indices())), (&[3][..], vec![0, 2]));
    assert_eq!(f32s(coo.values()), [1.0, -1.0]);
    let csr = sparse(&o, "csr");
    assert_eq!(i64s(csr.indices()), [0, 1, 2]);
    assert_eq!(i64s(csr.plain_indices().unwrap()), [1, 0]);
    match o.get("q") {
        Some(Object::Quantized(q)) => {
            assert_eq!(q.data().elements(), &Elements::U8(vec![2, 3]));
        }
        other => panic!("{other:?}"),
    }
    check_round_trips(&o);
}

#[test]
fn peeking_at_a_tempo_file_with_sparse_tensors_skips_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = read_pt(fixture("sparse.pt")).unwrap();
    if let Object::Dict(entries) = &mut o {
        entries.push((Object::Str("epoch".into()), Object::Int(4)));
    }
    let path = dir.path().join("s.tempo");
    tempo_ckpt::save_object(&path, &o).unwrap();
    let peeked = tempo_ckpt::peek_object(&path).unwrap();
    assert_eq!(peeked.get("epoch"), Some(&Object::Int(4)));
    assert_eq!(peeked.get("csr"), Some(&Object::None));
    assert_eq!(load_object(&path).unwrap().first_difference(&o), None);
}
