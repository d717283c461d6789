//! The tempo format: safetensors compatibility, round trips, atomicity, versions.

use ndarray::{ArrayD, IxDyn};
use safetensors::SafeTensors;
use tempo_ckpt::{
    load, load_object, read_pt, read_tempo_bytes, save, save_object, write_pt, write_tempo_bytes,
    CkptError, Object, TrainingState, FORMAT_VERSION, MAGIC,
};
use tempo_tensor::TensorData;

use crate::golden::{golden_object, golden_state};
use crate::torch_checkpoint;

#[test]
fn checkpoints_are_safetensors_files() {
    let bytes = write_tempo_bytes(&golden_state().to_object()).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let w = st.tensor("model/fc.weight").unwrap();
    assert_eq!(w.dtype(), safetensors::Dtype::F32);
    assert_eq!(w.shape(), &[2, 2]);
    let values: Vec<f32> = w
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values, [0.1, -0.2, 0.3, -0.4]);
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["format"], "tempo-checkpoint");
    assert_eq!(meta["format_version"], FORMAT_VERSION.to_string());
    assert!(meta["content"].contains("\"epoch\":4"));
    assert_eq!(&bytes[8..8 + MAGIC.len()], MAGIC);
    let all = write_tempo_bytes(&golden_object()).unwrap();
    assert_eq!(SafeTensors::deserialize(&all).unwrap().len(), 10);
}

#[test]
fn a_torch_checkpoint_survives_the_tempo_format() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in ["float32", "float64"] {
        let original = read_pt(torch_checkpoint(&format!("seed_epoch5_{dtype}.pt"))).unwrap();
        let path = dir.path().join(format!("{dtype}.tempo"));
        save_object(&path, &original).unwrap();
        assert_eq!(load_object(&path).unwrap(), original);
    }
}

#[test]
fn saving_a_state_directly_equals_saving_its_tree() {
    // `save` writes the tensors straight from the state; the bytes must be those of
    // the general path.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("direct.tempo");
    save(&path, &golden_state()).unwrap();
    let general = write_tempo_bytes(&golden_state().to_object()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), general);
}

#[test]
fn saving_replaces_atomically_and_leaves_no_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.tempo");
    let mut state = golden_state();
    save(&path, &state).unwrap();
    state.epoch += 1;
    save(&path, &state).unwrap();
    assert_eq!(load(&path).unwrap().epoch, 5);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["state.tempo"]);
    assert!(matches!(
        save(dir.path().join("missing/x.tempo"), &state),
        Err(CkptError::Io { .. })
    ));
}

#[test]
fn other_files_and_future_versions_are_refused() {
    let bytes = write_tempo_bytes(&Object::Int(1)).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let future = text.replacen("\"format_version\":\"1\"", "\"format_version\":\"2\"", 1);
    match read_tempo_bytes(future.as_bytes()) {
        Err(CkptError::UnsupportedVersion { found, supported }) => {
            assert_eq!((found.as_str(), supported), ("2", 1))
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    // A plain safetensors file is not a tempo checkpoint.
    let plain = safetensors::serialize(
        Vec::<(&str, safetensors::tensor::TensorView<'_>)>::new(),
        &None,
    )
    .unwrap();
    assert!(matches!(
        read_tempo_bytes(&plain),
        Err(CkptError::BadMagic { .. })
    ));
    let pt = std::fs::read(torch_checkpoint("seed_epoch5_float32.pt")).unwrap();
    assert!(matches!(
        read_tempo_bytes(&pt),
        Err(CkptError::TooLarge { .. } | CkptError::Truncated { .. })
    ));
    assert_eq!(read_tempo_bytes(&bytes).unwrap(), Object::Int(1));
}

#[test]
fn training_states_check_their_layout() {
    let mut o = golden_state().to_object();
    assert_eq!(TrainingState::from_object(&o).unwrap(), golden_state());
    if let Object::Dict(entries) = &mut o {
        entries.push((Object::Str("extra".into()), Object::None));
    }
    assert!(matches!(
        TrainingState::from_object(&o),
        Err(CkptError::Schema { .. })
    ));
    let no_kind = Object::str_dict([("epoch", Object::Int(1))]);
    assert!(matches!(
        TrainingState::from_object(&no_kind),
        Err(CkptError::Schema { .. })
    ));
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the bytes are in the file")
}

/// `Err(ChecksumMismatch)` from `read` after flipping a bit of the file at `at`.
fn check_flip_detected(
    path: &std::path::Path,
    bytes: &[u8],
    at: usize,
    read: fn(&std::path::Path) -> Result<(), CkptError>,
) {
    let mut bad = bytes.to_vec();
    bad[at] ^= 0x04;
    std::fs::write(path, &bad).unwrap();
    let result = read(path);
    assert!(
        matches!(result, Err(CkptError::ChecksumMismatch { .. })),
        "flip at {at} of {}: {result:?}",
        bytes.len()
    );
}

#[test]
fn large_tensors_round_trip_and_every_part_of_them_is_checksummed() {
    // Tensors of megabytes are hashed on a second thread while they are written, and
    // read as two halves on two threads: the bytes must be those of the in-memory
    // writer, the checksum that of the whole file, and a flipped bit in either half of
    // a tensor must be caught, in the tempo format and in `.pt` files.
    let n = 1_500_001; // 6 MB of f32; an odd count, so the halves split an element
    let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.001).sin()).collect();
    let big = ArrayD::from_shape_vec(IxDyn(&[n]), values).unwrap();
    let mut state = golden_state();
    state.model.push(("big".into(), TensorData::F32(big)));
    let dir = tempfile::tempdir().unwrap();

    let path = dir.path().join("big.tempo");
    save(&path, &state).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes == write_tempo_bytes(&state.to_object()).unwrap());
    let key = b"\"checksum\":\"crc32:";
    let at = find(&bytes, key) + key.len();
    let mut zeroed = bytes.clone();
    zeroed[at..at + 8].copy_from_slice(b"00000000");
    let recorded = std::str::from_utf8(&bytes[at..at + 8]).unwrap();
    assert_eq!(recorded, format!("{:08x}", crc32fast::hash(&zeroed)));
    assert_eq!(load(&path).unwrap(), state);
    assert_eq!(read_tempo_bytes(&bytes).unwrap(), state.to_object());
    let start = find(&bytes, &(0.001f32).sin().to_le_bytes());
    let start = start - 4; // the first element, sin(0) = 0, precedes it
    for at in [start + 10, start + 2 * n, start + 4 * n - 1] {
        check_flip_detected(&path, &bytes, at, |p| load(p).map(drop));
    }

    let pt = dir.path().join("big.pt");
    write_pt(&pt, &state.to_object()).unwrap();
    let read = read_pt(&pt).unwrap();
    assert_eq!(TrainingState::try_from(read).unwrap(), state);
    let bytes = std::fs::read(&pt).unwrap();
    let start = find(&bytes, &(0.001f32).sin().to_le_bytes()) - 4;
    for at in [start + 10, start + 2 * n, start + 4 * n - 1] {
        check_flip_detected(&pt, &bytes, at, |p| read_pt(p).map(drop));
    }
}
