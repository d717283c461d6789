//! Every dtype `torch.save` writes, and what PyTorch's safe loader reads but tempo
//! cannot hold (an error naming the key path and what it is).

use tempo_ckpt::{
    convert, load_object, read_pt, read_pt_bytes, write_pt, write_pt_bytes, AnyTensor, CkptError,
    DType, DTypeFiles, Object,
};

/// One small tensor of every dtype tempo holds, with bytes that differ per element
/// (NaN and signalling-NaN bit patterns included for the float types).
fn every_dtype() -> Vec<(DType, AnyTensor)> {
    let dtypes = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::I16,
        DType::U16,
        DType::I32,
        DType::U32,
        DType::I64,
        DType::U64,
        DType::F16,
        DType::BF16,
        DType::F32,
        DType::F64,
        DType::F8E4M3FN,
        DType::F8E4M3FNUZ,
        DType::F8E5M2,
        DType::F8E5M2FNUZ,
        DType::F8E8M0FNU,
        DType::C32,
        DType::C64,
        DType::C128,
    ];
    dtypes
        .into_iter()
        .map(|d| {
            let n = 2 * 3;
            let bytes: Vec<u8> = (0..n * d.size())
                .map(|i| {
                    if d == DType::Bool {
                        (i % 2) as u8
                    } else {
                        (i as u8).wrapping_mul(37) ^ 0xff
                    }
                })
                .collect();
            (d, AnyTensor::from_le_bytes(d, vec![2, 3], &bytes).unwrap())
        })
        .collect()
}

#[test]
fn every_dtype_round_trips_through_pt_and_tempo_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let object = Object::str_dict(
        every_dtype()
            .into_iter()
            .map(|(d, t)| (d.torch_name(), Object::Tensor(t))),
    );
    let pt = dir.path().join("all.pt");
    write_pt(&pt, &object).unwrap();
    assert_eq!(read_pt(&pt).unwrap().first_difference(&object), None);
    let tempo = dir.path().join("all.tempo");
    convert(&pt, &tempo).unwrap();
    assert_eq!(load_object(&tempo).unwrap().first_difference(&object), None);
    let back = dir.path().join("back.pt");
    convert(&tempo, &back).unwrap();
    assert_eq!(read_pt(&back).unwrap().first_difference(&object), None);
}

#[test]
fn new_dtypes_are_written_as_torch_writes_them() {
    // uint16, float8, complex32: an UntypedStorage of bytes and `_rebuild_tensor_v3`
    // with the dtype; complex64 through its legacy ComplexFloatStorage.
    for (d, t) in every_dtype() {
        let bytes = write_pt_bytes("a", &Object::Tensor(t.clone())).unwrap();
        let has = |s: &str| bytes.windows(s.len()).any(|w| w == s.as_bytes());
        match d.torch_storage() {
            Some(storage) => {
                assert!(has(storage) && has("_rebuild_tensor_v2"), "{d}");
                assert!(!has("UntypedStorage"), "{d}");
            }
            None => {
                assert!(has("UntypedStorage") && has("_rebuild_tensor_v3"), "{d}");
                assert!(has(&format!("torch\n{}\n", d.torch_name())), "{d}");
            }
        }
        assert!(
            read_pt_bytes(&bytes)
                .unwrap()
                .bitwise_eq(&Object::Tensor(t)),
            "{d}"
        );
    }
}

/// A pickle (protocol 2) of `{"model": {"w": <global>(args)}}`, in a torch.save zip.
fn pt_with_call(global: &str, args: &[u8]) -> Vec<u8> {
    let mut pkl =
        b"\x80\x02}q\x00X\x05\x00\x00\x00modelq\x01}q\x02X\x01\x00\x00\x00wq\x03c".to_vec();
    pkl.extend_from_slice(global.as_bytes());
    pkl.extend_from_slice(b"\nq\x04");
    pkl.extend_from_slice(args);
    pkl.extend_from_slice(b"Rq\x05ss.");
    // Reuse tempo's writer for the archive around a placeholder pickle, then swap in
    // this one: the zip reader checks CRCs, so build the archive with the zip crate.
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in [
        ("a/data.pkl", pkl.as_slice()),
        ("a/byteorder", b"little".as_slice()),
        ("a/version", b"3\n".as_slice()),
    ] {
        z.start_file(name, opts).unwrap();
        std::io::Write::write_all(&mut z, data).unwrap();
    }
    z.finish().unwrap();
    out.into_inner()
}

#[test]
fn what_tempo_cannot_hold_is_an_error_naming_its_key_path() {
    for (global, args, what) in [
        (
            "torch._utils\n_rebuild_nested_tensor",
            b")".as_slice(),
            "a nested tensor",
        ),
        (
            "torch._utils\n_rebuild_wrapper_subclass",
            b")",
            "a tensor subclass",
        ),
    ] {
        let err = read_pt_bytes(&pt_with_call(global, args)).unwrap_err();
        match &err {
            CkptError::Unsupported { path, what: w } => {
                assert_eq!(path, "model.w", "{err}");
                assert!(w.starts_with(what), "{err}");
            }
            other => panic!("{global}: {other}"),
        }
    }
    // A forbidden global is still refused as code.
    let err = read_pt_bytes(&pt_with_call("os\nsystem", b")")).unwrap_err();
    assert!(matches!(err, CkptError::ForbiddenGlobal { .. }), "{err}");
}

#[test]
fn plain_safetensors_files_are_read_written_and_converted_both_ways() {
    use tempo_ckpt::{
        convert_checked, detect_format, read_safetensors, read_safetensors_metadata,
        write_safetensors, Format,
    };
    let dir = tempfile::tempdir().unwrap();
    let model = Object::str_dict(
        every_dtype()
            .into_iter()
            .map(|(d, t)| (format!("layer.{d}"), Object::Tensor(t))),
    );
    let st = dir.path().join("model.safetensors");
    write_safetensors(&st, &model).unwrap();
    assert_eq!(detect_format(&st).unwrap(), Format::Safetensors);
    assert_eq!(
        read_safetensors(&st).unwrap().first_difference(&model),
        None
    );
    assert_eq!(
        read_safetensors_metadata(&st).unwrap(),
        [("format".to_string(), "pt".to_string())]
    );
    // The safetensors crate reads what tempo writes (in the dtypes it knows).
    let common = Object::str_dict(
        every_dtype()
            .into_iter()
            .filter(|(d, _)| matches!(d, DType::F32 | DType::BF16 | DType::I64 | DType::F8E5M2))
            .map(|(d, t)| (format!("layer.{d}"), Object::Tensor(t))),
    );
    let common_path = dir.path().join("common.safetensors");
    write_safetensors(&common_path, &common).unwrap();
    let common_bytes = std::fs::read(&common_path).unwrap();
    let parsed = safetensors::SafeTensors::deserialize(&common_bytes).unwrap();
    let f32s = parsed.tensor("layer.float32").unwrap();
    assert_eq!(f32s.shape(), &[2, 3]);
    assert_eq!(parsed.len(), 4);
    let bytes = std::fs::read(&st).unwrap();
    // safetensors -> .pt -> safetensors, bit for bit.
    let pt = dir.path().join("model.pt");
    convert_checked(&st, &pt, false).unwrap();
    assert_eq!(read_pt(&pt).unwrap().first_difference(&model), None);
    let again = dir.path().join("again.safetensors");
    convert_checked(&pt, &again, false).unwrap();
    assert_eq!(
        read_safetensors(&again).unwrap().first_difference(&model),
        None
    );
    // Only a dict of tensors is a safetensors file: anything else names its key.
    let err = write_safetensors(
        dir.path().join("x.safetensors"),
        &Object::str_dict([("epoch", Object::Int(3))]),
    )
    .unwrap_err();
    assert!(
        matches!(err, CkptError::Schema { ref path, .. } if path == "epoch"),
        "{err}"
    );
    // A tensor past the end of the file.
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(
        read_safetensors(&cut),
        Err(CkptError::Truncated { .. })
    ));
}

/// `testdata/foreign/legacy.pt`, written by `testdata/foreign/make_fixtures.py` in
/// the legacy `torch.save` layout (PyTorch < 1.6).
#[test]
fn the_legacy_torch_save_format_is_read_and_converts_to_the_zip_format() {
    use tempo_ckpt::{detect_format, Elements, Format};
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/foreign/legacy.pt");
    assert_eq!(detect_format(&path).unwrap(), Format::Torch);
    let o = read_pt(&path).unwrap();
    assert_eq!(o.get("epoch"), Some(&Object::Int(7)));
    assert!(matches!(o.get("best"), Some(Object::Float(f)) if f.is_nan()));
    let model = o.get("model").unwrap();
    let t = |name: &str| model.get(name).and_then(Object::as_tensor).unwrap().clone();
    assert_eq!(t("fc.weight").shape(), &[2, 3]);
    assert_eq!(
        t("fc.weight").elements(),
        &Elements::F32(vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    );
    assert_eq!(t("fc.bias").elements(), &Elements::F64(vec![-1.0, 2.5]));
    assert_eq!(
        t("ids.t").elements(),
        &Elements::I64(vec![0, 3, 1, 4, 2, 5])
    );
    assert_eq!(t("ids.row").elements(), &Elements::I64(vec![3, 4, 5]));
    // To the zip format and tempo's, bit for bit.
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("new.pt");
    convert(&path, &zip).unwrap();
    assert_eq!(read_pt(&zip).unwrap().first_difference(&o), None);
    assert_eq!(&std::fs::read(&zip).unwrap()[..4], b"PK\x03\x04");
    // Cut short anywhere, it is an error, never a panic.
    let bytes = std::fs::read(&path).unwrap();
    for n in (0..bytes.len()).step_by(7) {
        assert!(read_pt_bytes(&bytes[..n]).is_err(), "cut at {n}");
    }
}

#[test]
fn meta_tensors_keep_their_dtype_and_shape_through_every_format() {
    use tempo_ckpt::{load_object, read_tempo_bytes, write_tempo_bytes};
    let meta = |dtype, shape: &[usize]| Object::MetaTensor {
        dtype,
        shape: shape.to_vec(),
    };
    let object = Object::str_dict([
        ("w", meta(DType::F32, &[4, 3])),
        ("scale", meta(DType::F8E4M3FN, &[])),
        ("b", meta(DType::BF16, &[0])),
    ]);
    let bytes = write_pt_bytes("m", &object).unwrap();
    let has = |s: &[u8]| bytes.windows(s.len()).any(|w| w == s);
    assert!(has(b"_rebuild_meta_tensor_no_storage") && has(b"torch\nfloat8_e4m3fn\n"));
    assert_eq!(
        read_pt_bytes(&bytes).unwrap().first_difference(&object),
        None
    );
    let tempo = write_tempo_bytes(&object).unwrap();
    assert_eq!(
        read_tempo_bytes(&tempo).unwrap().first_difference(&object),
        None
    );
    let dir = tempfile::tempdir().unwrap();
    let pt = dir.path().join("m.pt");
    write_pt(&pt, &object).unwrap();
    convert(&pt, dir.path().join("m.tempo")).unwrap();
    let back = load_object(dir.path().join("m.tempo")).unwrap();
    assert_eq!(back.first_difference(&object), None);
    let other = Object::str_dict([("w", meta(DType::F64, &[4, 3]))]);
    assert!(back.first_difference(&other).is_some());
}
