//! Writing `.pt` files as torch.save does, and converting between the formats.

use std::io::Read;

use tempo_ckpt::{
    convert, detect_format, load, load_object, pt_to_tempo, read_pt, read_pt_bytes, save,
    tempo_to_pt, write_pt, write_pt_bytes, Format, Object, TrainingState,
};

use crate::golden::{golden_object, golden_state};
use crate::torch_checkpoint;

/// The entry names and contents of a zip archive, read with the `zip` crate.
fn zip_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>, u64)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut e = z.by_index(i).unwrap();
            assert_eq!(e.compression(), zip::CompressionMethod::Stored);
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (e.name().to_string(), data, e.data_start())
        })
        .collect()
}

#[test]
fn rewriting_a_torch_file_gives_torch_layout_and_the_same_storages() {
    let path = torch_checkpoint("seed_epoch5_float32.pt");
    let original_bytes = std::fs::read(&path).unwrap();
    let original = read_pt(&path).unwrap();
    let written = write_pt_bytes("seed_epoch5_float32", &original).unwrap();
    assert_eq!(read_pt_bytes(&written).unwrap(), original);

    let ours = zip_entries(&written);
    let theirs = zip_entries(&original_bytes);
    let names = |v: &[(String, Vec<u8>, u64)]| v.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&ours), names(&theirs));
    for ((name, data, start), (_, their_data, _)) in ours.iter().zip(&theirs) {
        assert_eq!(start % 64, 0, "{name} is not 64-byte aligned");
        if name.contains("/data/")
            || name.ends_with("version")
            || name.ends_with("byteorder")
            || name.ends_with("alignment")
        {
            assert_eq!(data, their_data, "{name}");
        }
    }
}

#[test]
fn every_value_and_dtype_survives_pt_and_back() {
    let o = golden_object();
    let back = read_pt_bytes(&write_pt_bytes("archive", &o).unwrap()).unwrap();
    assert_eq!(format!("{back:?}"), format!("{o:?}"));
}

#[test]
fn convert_is_lossless_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let src = torch_checkpoint("seed_epoch5_float64.pt");
    let tempo = dir.path().join("seed.tempo");
    let pt = dir.path().join("seed.pt");
    convert(&src, &tempo).unwrap();
    assert_eq!(detect_format(&tempo).unwrap(), Format::Tempo);
    convert(&tempo, &pt).unwrap();
    assert_eq!(detect_format(&pt).unwrap(), Format::Torch);
    let original = read_pt(&src).unwrap();
    assert_eq!(load_object(&tempo).unwrap(), original);
    assert_eq!(read_pt(&pt).unwrap(), original);

    // A training state: tempo → .pt → tempo.
    let state_path = dir.path().join("state.tempo");
    save(&state_path, &golden_state()).unwrap();
    tempo_to_pt(&state_path, dir.path().join("state.pth")).unwrap();
    pt_to_tempo(dir.path().join("state.pth"), dir.path().join("again.tempo")).unwrap();
    assert_eq!(
        load(dir.path().join("again.tempo")).unwrap(),
        golden_state()
    );
    let as_torch = read_pt(dir.path().join("state.pth")).unwrap();
    assert_eq!(
        TrainingState::from_object(&as_torch).unwrap(),
        golden_state()
    );
    assert!(matches!(
        as_torch.get("model"),
        Some(Object::OrderedDict { .. })
    ));
}

#[test]
fn pt_writes_are_atomic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.pt");
    write_pt(&path, &Object::Int(1)).unwrap();
    write_pt(&path, &Object::Int(2)).unwrap();
    assert_eq!(read_pt(&path).unwrap(), Object::Int(2));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // The archive folder is the file stem, as torch names it.
    let names = zip_entries(&std::fs::read(&path).unwrap());
    assert_eq!(names[0].0, "m/data.pkl");
}

/// A diverged run's checkpoint: NaNs of every sign and payload in plain floats and in
/// tensors of every float dtype, and a negative zero.
fn nan_object() -> Object {
    use tempo_ckpt::{AnyTensor, Elements};
    let payload = f64::from_bits(0x7ff4_0000_0000_beef);
    let f32s = vec![
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7fa0_0001),
        f32::from_bits(0xffc0_1234),
        -0.0,
        f32::INFINITY,
    ];
    let t = |e: Elements| Object::Tensor(AnyTensor::new(vec![e.len()], e).unwrap());
    Object::str_dict([
        ("epoch", Object::Int(1)),
        ("best", Object::Float(f64::NAN)),
        ("neg_nan", Object::Float(-f64::NAN)),
        ("payload", Object::Float(payload)),
        ("neg_zero", Object::Float(-0.0)),
        (
            "metrics",
            Object::List(vec![Object::Float(0.5), Object::Float(-payload)]),
        ),
        ("w32", t(Elements::F32(f32s.clone()))),
        (
            "w64",
            t(Elements::F64(vec![
                f64::NAN,
                -f64::NAN,
                payload,
                -payload,
                -0.0,
            ])),
        ),
        (
            "w16",
            t(Elements::F16(vec![0x7e00, 0xfe00, 0x7d01, 0x8000])),
        ),
        (
            "wb16",
            t(Elements::BF16(vec![0x7fc0, 0xffc0, 0x7f81, 0x8000])),
        ),
    ])
}

#[test]
fn nans_of_every_sign_and_payload_convert_bit_for_bit_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let object = nan_object();
    let src = dir.path().join("diverged.pt");
    write_pt(&src, &object).unwrap();
    let tempo = dir.path().join("diverged.tempo");
    let back = dir.path().join("back.pt");
    convert(&src, &tempo).unwrap();
    convert(&tempo, &back).unwrap();
    for (path, got) in [
        (&src, read_pt(&src).unwrap()),
        (&tempo, load_object(&tempo).unwrap()),
        (&back, read_pt(&back).unwrap()),
    ] {
        assert_eq!(got.first_difference(&object), None, "{}", path.display());
    }
    // The comparison itself sees a changed NaN payload, sign or zero.
    let mut changed = object.clone();
    if let Object::Dict(d) = &mut changed {
        d[2].1 = Object::Float(f64::NAN);
    }
    let diff = object.first_difference(&changed).unwrap();
    assert!(diff.contains("neg_nan"), "{diff}");
    assert!(!object.bitwise_eq(&Object::str_dict([("neg_zero", Object::Float(0.0))])));
}

#[test]
fn a_conversion_that_fails_replaces_nothing_and_leaves_nothing() {
    use tempo_ckpt::{convert_checked, CkptError};
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.pt");
    write_pt(&src, &nan_object()).unwrap();
    let dst = dir.path().join("out.tempo");
    std::fs::write(&dst, b"the user's file").unwrap();
    let listing = || {
        let mut v: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    // Not asked to replace: refused, and the file is as it was.
    let err = convert_checked(&src, &dst, false).unwrap_err();
    assert!(matches!(err, CkptError::Exists { .. }), "{err}");
    assert_eq!(std::fs::read(&dst).unwrap(), b"the user's file");
    // A source that cannot be read, even when asked to replace.
    let bad = dir.path().join("bad.pt");
    let mut bytes = std::fs::read(&src).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 30);
    std::fs::write(&bad, &bytes).unwrap();
    assert!(convert_checked(&bad, &dst, true).is_err());
    assert_eq!(std::fs::read(&dst).unwrap(), b"the user's file");
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(listing(), before);
    // Asked to replace: a verified file replaces it.
    let read = convert_checked(&src, &dst, true).unwrap();
    assert!(read.bitwise_eq(&nan_object()));
    assert!(load_object(&dst).unwrap().bitwise_eq(&nan_object()));
    assert_eq!(listing(), before);
}
