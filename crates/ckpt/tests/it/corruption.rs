//! Bad input: truncated and flipped files, wrong magic or version, lengths past the end,
//! absurd sizes, unknown dtypes and malicious pickles. Each is an error, never a panic.

use std::io::Write;

use tempo_ckpt::{
    load_object, read_pt, read_pt_bytes, read_tempo_bytes, write_pt, write_tempo_bytes, AnyTensor,
    CkptError, DType, Object, MAGIC,
};

use crate::golden::golden_object;
use crate::torch_checkpoint;

/// Recomputes a tempo checkpoint's checksum after an edit (CRC-32 of the file with
/// the 8 digits zeroed), so that the structural checks behind it can be tested.
fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
    let key = b"\"checksum\":\"crc32:";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    bytes[at..at + 8].copy_from_slice(b"00000000");
    let crc = crc32fast::hash(&bytes);
    bytes[at..at + 8].copy_from_slice(format!("{crc:08x}").as_bytes());
    bytes
}

/// Replaces `from` by `to` in the header and fixes the header length and checksum.
fn edit_header(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + len]).unwrap();
    assert!(header.contains(from), "{from} not in the header");
    let header = header.replacen(from, to, 1);
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&bytes[8 + len..]);
    reseal(out)
}

#[test]
fn every_flipped_byte_and_every_truncation_of_a_tempo_file_is_an_error() {
    let bytes = write_tempo_bytes(&golden_object()).unwrap();
    assert!(read_tempo_bytes(&bytes).is_ok());
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80] {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            assert!(
                read_tempo_bytes(&bad).is_err(),
                "flip {mask:#x} at {i} went unnoticed"
            );
        }
    }
    for len in 0..bytes.len() {
        assert!(
            read_tempo_bytes(&bytes[..len]).is_err(),
            "truncation to {len} went unnoticed"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(read_tempo_bytes(&longer).is_err());
}

#[test]
fn flipped_data_is_reported_as_a_checksum_mismatch() {
    let mut bytes = write_tempo_bytes(&golden_object()).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    assert!(matches!(
        read_tempo_bytes(&bytes),
        Err(CkptError::ChecksumMismatch { .. })
    ));
}

#[test]
fn structural_errors_of_tempo_files_are_named() {
    let good = write_tempo_bytes(&golden_object()).unwrap();
    let case = |bytes: Vec<u8>| read_tempo_bytes(&bytes).unwrap_err();
    assert!(
        matches!(case(edit_header(&good, "\"BF16\"", "\"F4\"")), CkptError::UnknownDType { found } if found == "F4")
    );
    assert!(matches!(
        case(edit_header(&good, "\"shape\":[1,1]", "\"shape\":[1,2]")),
        CkptError::BadTensor { .. }
    ));
    assert!(matches!(
        case(edit_header(
            &good,
            "\"shape\":[3]",
            "\"shape\":[4611686018427387904,4]"
        )),
        CkptError::BadTensor { .. }
    ));
    assert!(matches!(
        case(edit_header(
            &good,
            "\"data_offsets\":[0,8]",
            "\"data_offsets\":[0,800000]"
        )),
        CkptError::BadTensor { .. }
    ));
    assert!(
        matches!(case(edit_header(&good, "{\\\"$tensor\\\":\\\"uint8\\\"}", "1")), CkptError::BadTensor { name, .. } if name == "uint8")
    );
    assert!(matches!(
        case(edit_header(
            &good,
            "\\\"$tuple\\\":[\\\"$tuple",
            "\\\"$eval\\\":[\\\"$tuple"
        )),
        CkptError::Malformed { .. }
    ));
    assert!(matches!(
        case(edit_header(
            &good,
            "\"format\":\"tempo-checkpoint\"",
            "\"format\":\"tempo-checkpoinT\""
        )),
        CkptError::BadMagic { .. }
    ));
    assert!(matches!(
        case(edit_header(
            &good,
            "\"format_version\":\"1\"",
            "\"format_version\":\"x\""
        )),
        CkptError::UnsupportedVersion { .. }
    ));
    // Lengths that point past the end, and absurd ones: no allocation is attempted.
    let mut past = good.clone();
    past[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
    assert!(matches!(case(past), CkptError::Truncated { .. }));
    let mut absurd = good.clone();
    absurd[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(case(absurd), CkptError::TooLarge { .. }));
    assert!(matches!(
        case(b"1234567".to_vec()),
        CkptError::Truncated { .. }
    ));
    let mut magic = good;
    magic[8 + MAGIC.len() - 3] = b'X';
    assert!(matches!(case(magic), CkptError::BadMagic { .. }));
}

#[test]
fn truncated_and_flipped_torch_files_never_panic() {
    let bytes = std::fs::read(torch_checkpoint("seed_epoch5_float32.pt")).unwrap();
    let original = read_pt_bytes(&bytes).unwrap();
    for len in 0..bytes.len() {
        assert!(
            read_pt_bytes(&bytes[..len]).is_err(),
            "truncation to {len} went unnoticed"
        );
    }
    // The bytes of every entry's data (pickle and storages, covered by CRCs).
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
    let covered: Vec<(u64, u64)> = (0..z.len())
        .map(|i| {
            let e = z.by_index(i).unwrap();
            (e.data_start(), e.data_start() + e.size())
        })
        .collect();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x04;
        let in_data = covered.iter().any(|&(a, b)| (a..b).contains(&(i as u64)));
        if let Ok(o) = read_pt_bytes(&bad) {
            // Flips in padding, timestamps or unused header fields change nothing read.
            assert!(!in_data, "a flip in entry data at {i} went unnoticed");
            assert_eq!(o, original, "a flip at {i} changed the value silently");
        }
    }
}

/// A zip archive holding `archive/data.pkl` and the given storages, written with the
/// `zip` crate.
fn pt_with_pickle(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", stored).unwrap();
    z.write_all(pickle).unwrap();
    for (key, data) in storages {
        z.start_file(format!("archive/data/{key}"), stored).unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// A pickle of one tensor: `_rebuild_tensor_v2(('storage', <storage>, '0', 'cpu', numel), offset, size, stride, False, OrderedDict())`.
fn tensor_pickle(storage: &str, numel: u32, offset: u8, size: &[u32], stride: &[u32]) -> Vec<u8> {
    let mut p =
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n".to_vec();
    p.extend_from_slice(storage.as_bytes());
    p.extend_from_slice(b"\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ");
    p.extend_from_slice(&numel.to_le_bytes());
    p.extend_from_slice(b"tQK");
    p.push(offset);
    for dims in [size, stride] {
        p.push(b'(');
        for d in dims {
            p.push(b'J');
            p.extend_from_slice(&d.to_le_bytes());
        }
        p.push(b't');
    }
    p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtR.");
    p
}

#[test]
fn views_of_a_storage_are_read_as_torch_defines_them() {
    // Six float32s 0..5; the view at offset 1 with size [2, 2] and strides [1, 2] is
    // the transpose of [[1, 2], [3, 4]] read column by column: [[1, 3], [2, 4]].
    let storage: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let p = tensor_pickle("FloatStorage", 6, 1, &[2, 2], &[1, 2]);
    let o = read_pt_bytes(&pt_with_pickle(&p, &[("0", &storage)])).unwrap();
    let t = o.as_tensor().unwrap();
    assert_eq!(t.shape(), &[2, 2]);
    assert_eq!(
        t.elements(),
        &tempo_ckpt::Elements::F32(vec![1.0, 3.0, 2.0, 4.0])
    );
    // The same storage as int64s: three of them, the last one alone.
    let p = tensor_pickle("LongStorage", 3, 2, &[1], &[1]);
    let o = read_pt_bytes(&pt_with_pickle(&p, &[("0", &storage)])).unwrap();
    let want = i64::from_le_bytes(storage[16..24].try_into().unwrap());
    assert_eq!(
        o.as_tensor().unwrap().elements(),
        &tempo_ckpt::Elements::I64(vec![want])
    );
}

#[test]
fn large_views_read_from_files_are_checksummed() {
    // A view (offset 1) of a 4.8 MB storage: the storage is read from the file in two
    // halves on two threads, checksummed, then the view is taken.
    let n = 1_200_000u32;
    let storage: Vec<u8> = (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let p = tensor_pickle("FloatStorage", n, 1, &[n - 1], &[1]);
    let bytes = pt_with_pickle(&p, &[("0", &storage)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("view.pt");
    std::fs::write(&path, &bytes).unwrap();
    let o = read_pt(&path).unwrap();
    let expected: Vec<f32> = (1..n).map(|i| i as f32).collect();
    assert_eq!(
        o.as_tensor().unwrap().elements(),
        &tempo_ckpt::Elements::F32(expected)
    );
    assert_eq!(read_pt_bytes(&bytes).unwrap(), o);
    let tail = &storage[storage.len() - 16..];
    let at = bytes.windows(16).position(|w| w == tail).unwrap();
    let mut bad = bytes.clone();
    bad[at] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        read_pt(&path),
        Err(CkptError::ChecksumMismatch { .. })
    ));
}

#[test]
fn malicious_and_inconsistent_pickles_are_errors() {
    let read = |pickle: &[u8], storages: &[(&str, &[u8])]| {
        read_pt_bytes(&pt_with_pickle(pickle, storages))
    };
    // A well-formed tensor loads (the helpers are right).
    let ok = read(
        &tensor_pickle("FloatStorage", 2, 0, &[2], &[1]),
        &[("0", &[0, 0, 128, 63, 0, 0, 0, 64])],
    )
    .unwrap();
    assert_eq!(ok.as_tensor().unwrap().item_f64(), None);
    assert_eq!(ok.as_tensor().unwrap().shape(), &[2]);
    // Code execution attempts.
    for p in [
        &b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R."[..],
        b"\x80\x02cbuiltins\neval\n.",
        b"\x80\x02ctorch\nload\n.",
    ] {
        assert!(
            matches!(read(p, &[]), Err(CkptError::ForbiddenGlobal { .. })),
            "{p:?}"
        );
    }
    assert!(matches!(
        read(b"\x80\x02(cos\nsystem\ni.", &[]),
        Err(CkptError::ForbiddenGlobal { .. })
    ));
    assert!(matches!(
        read(b"\x80\x02(i__main__\nX\n.", &[]),
        Err(CkptError::Pickle { .. })
    ));
    // Deep nesting and huge memo indices.
    let mut deep = b"\x80\x02".to_vec();
    deep.extend(std::iter::repeat_n(b'(', 200_000));
    deep.extend(std::iter::repeat_n(b')', 1));
    deep.extend(std::iter::repeat_n(b't', 200_000));
    deep.push(b'.');
    assert!(matches!(
        read(&deep, &[]),
        Err(CkptError::TooDeep { .. } | CkptError::Pickle { .. })
    ));
    assert!(matches!(
        read(b"\x80\x02Nr\xff\xff\xff\xff0j\xfe\xff\xff\xff.", &[]),
        Err(CkptError::Pickle { .. })
    ));
    // Storages that do not match their records, views past the storage, expansions
    // beyond what the file holds, unknown dtypes.
    let four = [0u8; 4];
    assert!(matches!(
        read(
            &tensor_pickle("FloatStorage", 1_000_000_000, 0, &[1], &[1]),
            &[("0", &four)]
        ),
        Err(CkptError::BadTensor { .. })
    ));
    assert!(matches!(
        read(
            &tensor_pickle("FloatStorage", 1, 0, &[2], &[1]),
            &[("0", &four)]
        ),
        Err(CkptError::BadTensor { .. })
    ));
    assert!(matches!(
        read(
            &tensor_pickle("FloatStorage", 1, 1, &[1], &[1]),
            &[("0", &four)]
        ),
        Err(CkptError::BadTensor { .. })
    ));
    assert!(matches!(
        read(&tensor_pickle("FloatStorage", 1, 0, &[1], &[1]), &[]),
        Err(CkptError::BadTensor { .. })
    ));
    let expand = tensor_pickle("FloatStorage", 1, 0, &[1 << 30, 1 << 30], &[0, 0]);
    assert!(matches!(
        read(&expand, &[("0", &four)]),
        Err(CkptError::TooLarge { .. })
    ));
    assert!(matches!(
        read(
            &tensor_pickle("ComplexFloatStorage", 1, 0, &[1], &[1]),
            &[("0", &four)]
        ),
        Err(CkptError::BadTensor { .. })
    ));
    assert!(matches!(
        read(
            &tensor_pickle("QInt8Storage", 1, 0, &[1], &[1]),
            &[("0", &four)]
        ),
        Err(CkptError::Unsupported { .. })
    ));
    // A storage whose bytes do not match its CRC.
    let mut bytes = pt_with_pickle(
        &tensor_pickle("FloatStorage", 1, 0, &[], &[]),
        &[("0", &four)],
    );
    let at = bytes.windows(11).position(|w| w == b"archive/dat").unwrap();
    let data = bytes[at..]
        .windows(14)
        .position(|w| w == b"archive/data/0")
        .unwrap()
        + at
        + 14;
    bytes[data] ^= 1;
    assert!(matches!(
        read_pt_bytes(&bytes),
        Err(CkptError::ChecksumMismatch { .. })
    ));
    // Not a zip at all.
    assert!(matches!(
        read_pt_bytes(b"\x80\x02N."),
        Err(CkptError::BadMagic { .. })
    ));
}

/// The file readers (`load_object`, `read_pt`: positioned reads, 2 MiB+ tensors on
/// two threads) return what the byte readers return, and
/// fail where they fail: truncations in the header, in a small tensor and in the middle
/// of a large one, and a flipped byte of a large tensor.
#[test]
fn file_readers_agree_with_byte_readers_and_refuse_the_same_damage() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut fields = match golden_object() {
        Object::Dict(d) => d,
        other => panic!("not a dict: {other:?}"),
    };
    fields.push((
        Object::Str("big".into()),
        Object::Tensor(AnyTensor::from_le_bytes(DType::F32, vec![3 << 18], &big).unwrap()),
    ));
    let object = Object::Dict(fields);

    let tempo = write_tempo_bytes(&object).unwrap();
    let pt_path = dir.path().join("whole.pt");
    write_pt(&pt_path, &object).unwrap();
    let pt = std::fs::read(&pt_path).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
        path
    };
    let path = write("whole.tempo", &tempo);
    // Compared through Debug: the golden object holds a NaN, which is not == itself.
    let same = |a: &Object, b: &Object| format!("{a:?}") == format!("{b:?}");
    let from_file = load_object(&path).unwrap();
    assert!(same(&from_file, &read_tempo_bytes(&tempo).unwrap()));
    assert!(
        same(&from_file, &object),
        "the tempo file did not round-trip"
    );
    assert!(same(
        &read_pt(&pt_path).unwrap(),
        &read_pt_bytes(&pt).unwrap()
    ));

    let big_at = |bytes: &[u8]| {
        bytes
            .windows(64)
            .position(|w| w == &big[1 << 20..(1 << 20) + 64])
            .unwrap()
    };
    for (what, bytes, load) in [
        (
            "tempo",
            &tempo,
            (&|p: &std::path::Path| load_object(p).map(drop))
                as &dyn Fn(&std::path::Path) -> Result<(), CkptError>,
        ),
        ("pt", &pt, &|p: &std::path::Path| read_pt(p).map(drop)),
    ] {
        let middle = big_at(bytes);
        for len in [0, 7, 8, 100, bytes.len() / 3, middle, bytes.len() - 1] {
            let path = write(&format!("cut-{len}.{what}"), &bytes[..len]);
            assert!(load(&path).is_err(), "{what} cut to {len} went unnoticed");
        }
        let mut flipped = bytes.clone();
        flipped[middle + 5] ^= 0x10;
        let path = write(&format!("flipped.{what}"), &flipped);
        assert!(
            load(&path).is_err(),
            "{what}: a flip in the big tensor went unnoticed"
        );
    }
}

/// A file cut short by another process while tempo reads it is an error (or, if the
/// read won the race, the whole value), never a crash: the readers use positioned
/// reads, which come back short, and no memory map, whose reads past a truncation
/// would kill the process with SIGBUS. Another thread truncates and restores the
/// file over and over while it is read.
#[test]
fn a_file_truncated_while_it_is_read_is_an_error_not_a_crash() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let object = Object::str_dict([(
        "w",
        Object::Tensor(AnyTensor::from_le_bytes(DType::F32, vec![4 << 20], &big).unwrap()),
    )]);
    let cases = [
        (
            dir.path().join("a.tempo"),
            write_tempo_bytes(&object).unwrap(),
        ),
        (
            dir.path().join("a.pt"),
            tempo_ckpt::write_pt_bytes("a", &object).unwrap(),
        ),
    ];
    for (path, bytes) in &cases {
        std::fs::write(path, bytes).unwrap();
        let read = |p: &std::path::Path| {
            if p.extension().is_some_and(|e| e == "pt") {
                read_pt(p)
            } else {
                load_object(p)
            }
        };
        let stop = AtomicBool::new(false);
        let (mut ok, mut failed) = (0, 0);
        std::thread::scope(|s| {
            s.spawn(|| {
                // Truncate to a quarter (inside the tensor), then restore, until told.
                let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
                let mut cuts = 0u32;
                while !stop.load(Ordering::Relaxed) || cuts == 0 {
                    f.set_len(bytes.len() as u64 / 4).unwrap();
                    std::thread::yield_now();
                    f.set_len(0).unwrap();
                    std::os::unix::fs::FileExt::write_all_at(&f, bytes, 0).unwrap();
                    cuts += 1;
                }
            });
            for _ in 0..12 {
                match read(path) {
                    Ok(o) => {
                        assert!(o.bitwise_eq(&object), "a read returned other data");
                        ok += 1;
                    }
                    Err(e) => {
                        assert!(
                            matches!(
                                e,
                                CkptError::Io { .. }
                                    | CkptError::Stream(_)
                                    | CkptError::Truncated { .. }
                                    | CkptError::ChecksumMismatch { .. }
                                    | CkptError::Malformed { .. }
                                    | CkptError::BadMagic { .. }
                                    | CkptError::BadTensor { .. }
                            ),
                            "{e}"
                        );
                        failed += 1;
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(ok + failed, 12, "{}", path.display());
        // And a file that stays truncated is always an error.
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(bytes.len() as u64 / 2)
            .unwrap();
        assert!(read(path).is_err(), "{}", path.display());
    }
}
