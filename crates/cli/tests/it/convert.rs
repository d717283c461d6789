//! `tempo convert`.

use tempo::ckpt::{load_object, read_pt};

use crate::{check_error, check_ok, run_in, testdata};

#[test]
fn pt_to_tempo_and_back_is_lossless() {
    let dir = tempfile::tempdir().unwrap();
    let pt = testdata("torch-checkpoints/seed_epoch5_float64.pt");
    let out = check_ok(&run_in(
        dir.path(),
        &["convert", pt.to_str().unwrap(), "seed.tempo"],
    ));
    assert!(out.contains("reads back identical"), "{out}");
    check_ok(&run_in(dir.path(), &["convert", "seed.tempo", "again.pt"]));
    let original = read_pt(&pt).unwrap();
    assert_eq!(
        load_object(dir.path().join("seed.tempo")).unwrap(),
        original
    );
    assert_eq!(read_pt(dir.path().join("again.pt")).unwrap(), original);
}

#[test]
fn convert_refuses_to_overwrite_or_guess() {
    let dir = tempfile::tempdir().unwrap();
    let pt = testdata("torch-checkpoints/seed_epoch5_float32.pt");
    let pt = pt.to_str().unwrap();
    check_ok(&run_in(dir.path(), &["convert", pt, "a.tempo"]));
    let out = run_in(dir.path(), &["convert", pt, "a.tempo"]);
    check_error(&out, "--force");
    check_ok(&run_in(dir.path(), &["convert", pt, "a.tempo", "--force"]));
    let out = run_in(dir.path(), &["convert", pt, "a.txt"]);
    check_error(&out, ".tempo or .safetensors");
    let out = run_in(dir.path(), &["convert", "missing.pt", "b.tempo"]);
    check_error(&out, "missing.pt");
}
