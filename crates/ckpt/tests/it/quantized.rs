//! Quantized tensors from a file `torch.save` wrote, through every format and back,
//! bit for bit.
//!
//! `testdata/foreign/quantized.pt` was written by PyTorch 2.15's own `torch.save`
//! (`testdata/foreign/make_torch_fixtures.py`), so it holds exactly what torch writes:
//! `_rebuild_qtensor(storage, offset, size, stride, quantizer_params, False,
//! OrderedDict())` with the integers in a `QInt8Storage` (`QUInt8Storage`,
//! `QInt32Storage`, `QUInt4x2Storage`: 5 four-bit values in 3 bytes) and
//! `(per_tensor_affine, scale, zero_point)` or `(per_channel_affine, scales tensor,
//! zero points tensor, axis)`; a `per_channel_affine_float_qparams` tensor is written
//! as `per_channel_affine` with float32 scales and zero points; the transposed tensor
//! is a view (stride (1, 3)) of its storage.

use std::path::PathBuf;

use tempo_ckpt::{
    convert_checked, load_object, read_pt, read_pt_bytes, read_tempo_bytes, write_pt_bytes,
    write_tempo_bytes, CkptError, DType, Elements, Object, QDType, QScheme, QuantizedTensor,
};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/foreign/quantized.pt")
}

fn q<'a>(o: &'a Object, key: &str) -> &'a QuantizedTensor {
    match o.get(key) {
        Some(Object::Quantized(q)) => q,
        other => panic!("{key}: {other:?}"),
    }
}

fn per_tensor(q: &QuantizedTensor) -> (f64, i64) {
    match q.scheme() {
        QScheme::PerTensorAffine { scale, zero_point } => (*scale, *zero_point),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_quantized_dtype_torch_writes_is_read_with_its_parameters() {
    let o = read_pt(fixture()).unwrap();
    let qint8 = q(&o, "qint8");
    assert_eq!((qint8.dtype(), qint8.shape()), (QDType::QInt8, &[2, 3][..]));
    assert_eq!(
        qint8.data().elements(),
        &Elements::I8(vec![-7, 3, 8, 23, 1, 13])
    );
    assert_eq!(per_tensor(qint8), (0.1, 3));
    let quint8 = q(&o, "quint8");
    assert_eq!(
        quint8.data().elements(),
        &Elements::U8(vec![108, 128, 138, 168, 123, 148])
    );
    assert_eq!(per_tensor(quint8), (0.05, 128));
    let qint32 = q(&o, "qint32");
    assert_eq!(
        qint32.data().elements(),
        &Elements::I32(vec![-1007, -7, 493, 1993, -257, 993])
    );
    assert_eq!(per_tensor(qint32), (1e-3, -7));
    // Two 4-bit values a byte, the first in the low bits: 0,1 | 2,3 | 4.
    let packed = q(&o, "quint4x2");
    assert_eq!(packed.shape(), &[5]);
    assert_eq!(
        packed.data().elements(),
        &Elements::U8(vec![0x10, 0x32, 0x04])
    );
    match q(&o, "per_channel").scheme() {
        QScheme::PerChannelAffine {
            scales,
            zero_points,
            axis,
            float_qparams_name,
        } => {
            assert_eq!(scales.elements(), &Elements::F64(vec![0.1, 0.2]));
            assert_eq!(zero_points.elements(), &Elements::I64(vec![0, 10]));
            assert_eq!((*axis, *float_qparams_name), (0, false));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        q(&o, "per_channel").data().elements(),
        &Elements::U8(vec![0, 0, 5, 20, 9, 15])
    );
    match q(&o, "float_qparams").scheme() {
        QScheme::PerChannelAffine {
            scales,
            zero_points,
            axis,
            ..
        } => {
            assert_eq!(
                (scales.dtype(), zero_points.dtype(), *axis),
                (DType::F32, DType::F32, 1)
            );
            assert_eq!(zero_points.elements(), &Elements::F32(vec![0.0, 1.0, -1.0]));
        }
        other => panic!("{other:?}"),
    }
    // A view is read as the contiguous tensor it shows, as dense views are.
    let t = q(&o, "transposed");
    assert_eq!(t.shape(), &[3, 2]);
    assert_eq!(
        t.data().elements(),
        &Elements::I8(vec![-7, 23, 3, 1, 8, 13])
    );
    // Through .pt and tempo bytes, identical.
    let pt = write_pt_bytes("a", &o).unwrap();
    assert_eq!(read_pt_bytes(&pt).unwrap().first_difference(&o), None);
    let has = |s: &[u8]| pt.windows(s.len()).any(|w| w == s);
    assert!(has(b"ctorch._utils\n_rebuild_qtensor\n") && has(b"ctorch\nQUInt4x2Storage\n"));
    assert!(has(b"ctorch\nper_channel_affine\n"));
    let tempo = write_tempo_bytes(&o).unwrap();
    assert_eq!(read_tempo_bytes(&tempo).unwrap().first_difference(&o), None);
}

#[test]
fn quantized_tensors_convert_losslessly_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let original = read_pt(fixture()).unwrap();
    let tempo = dir.path().join("q.tempo");
    convert_checked(fixture(), &tempo, false).unwrap();
    assert_eq!(
        load_object(&tempo).unwrap().first_difference(&original),
        None
    );
    let back = dir.path().join("q.pt");
    convert_checked(&tempo, &back, false).unwrap();
    assert_eq!(read_pt(&back).unwrap().first_difference(&original), None);
    // A scale that differs in its last bit is a difference.
    let scheme = QScheme::PerTensorAffine {
        scale: f64::from_bits(0.1f64.to_bits() + 1),
        zero_point: 3,
    };
    let qint8 = q(&original, "qint8");
    let nudged =
        QuantizedTensor::new(QDType::QInt8, vec![2, 3], qint8.data().clone(), scheme).unwrap();
    assert!(qint8.first_difference(&nudged).is_some());
}

/// A pickle (protocol 2) of `{"w": _rebuild_qtensor(<args>)}` with one QInt8Storage
/// record of `numel` bytes, in a torch.save zip.
fn pt_with_qtensor(numel: u8, args: &[u8]) -> Vec<u8> {
    let mut pkl = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_qtensor\n((X\x07\x00\x00\x00storagectorch\nQInt8Storage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK".to_vec();
    pkl.push(numel);
    pkl.extend_from_slice(b"tQ");
    pkl.extend_from_slice(args);
    pkl.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtRs.");
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let data = vec![1u8; usize::from(numel)];
    for (name, bytes) in [
        ("a/data.pkl", pkl.as_slice()),
        ("a/byteorder", b"little".as_slice()),
        ("a/data/0", data.as_slice()),
        ("a/version", b"3\n".as_slice()),
    ] {
        z.start_file(name, opts).unwrap();
        std::io::Write::write_all(&mut z, bytes).unwrap();
    }
    z.finish().unwrap();
    out.into_inner()
}

#[test]
fn a_quantized_tensor_torch_refuses_is_an_error_naming_its_key_path() {
    // offset 0, size (2, 2), stride (2, 1), (per_channel_affine, [0.1, 0.2, 0.3], [0, 0, 0], 0):
    // three scales for two channels (torch's _rebuild_qtensor raises ValueError).
    let args = b"K\x00K\x02K\x02\x86K\x02K\x01\x86(ctorch\nper_channel_affine\n]\x28G?\xb9\x99\x99\x99\x99\x99\x9aG?\xc9\x99\x99\x99\x99\x99\x9aG?\xd3333333e](K\x00K\x00K\x00eK\x00t";
    let err = read_pt_bytes(&pt_with_qtensor(4, args)).unwrap_err();
    match &err {
        CkptError::InvalidTensor { path, what, detail } => {
            assert_eq!(path, "w", "{err}");
            assert!(what.contains("torch.qint8"), "{err}");
            assert!(detail.contains("2 scales"), "{err}");
        }
        other => panic!("{other}"),
    }
    // The same with two scales loads, the lists made the tensors torch makes.
    let args = b"K\x00K\x02K\x02\x86K\x02K\x01\x86(ctorch\nper_channel_affine\n](G?\xb9\x99\x99\x99\x99\x99\x9aG?\xc9\x99\x99\x99\x99\x99\x9ae](K\x00K\x05eK\x00t";
    let o = read_pt_bytes(&pt_with_qtensor(4, args)).unwrap();
    match q(&o, "w").scheme() {
        QScheme::PerChannelAffine {
            scales,
            zero_points,
            ..
        } => {
            assert_eq!(scales.elements(), &Elements::F64(vec![0.1, 0.2]));
            assert_eq!(zero_points.elements(), &Elements::I64(vec![0, 5]));
        }
        other => panic!("{other:?}"),
    }
    // A view past the end of its storage (4 elements, size 2x3).
    let args = b"K\x00K\x02K\x03\x86K\x03K\x01\x86ctorch\nper_tensor_affine\nG?\xb9\x99\x99\x99\x99\x99\x9aK\x00\x87";
    assert!(matches!(
        read_pt_bytes(&pt_with_qtensor(4, args)),
        Err(CkptError::BadTensor { .. })
    ));
    // The symmetric schemes are refused by torch's rebuild too: named, with the key path.
    let args = b"K\x00K\x02K\x02\x86K\x02K\x01\x86ctorch\nper_tensor_symmetric\nG?\xb9\x99\x99\x99\x99\x99\x9aK\x00\x87";
    match read_pt_bytes(&pt_with_qtensor(4, args)).unwrap_err() {
        CkptError::Unsupported { path, what } => {
            assert_eq!(path, "w");
            assert!(what.contains("per_tensor_symmetric"), "{what}");
        }
        other => panic!("{other}"),
    }
    // Cut short anywhere, the fixture is an error, never a panic.
    let bytes = std::fs::read(fixture()).unwrap();
    for n in (0..bytes.len()).step_by(89) {
        assert!(read_pt_bytes(&bytes[..n]).is_err(), "cut at {n}");
    }
}
