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
