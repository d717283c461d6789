//! Data safety: a run whose loss becomes NaN stops and says where (with
//! `--allow-nonfinite-loss` it goes on, and `tempo convert` takes its checkpoint, NaNs
//! and all, to PyTorch without touching anything else); `--resume` skips a corrupt
//! latest checkpoint and says so.

use tempo::ckpt::{load_object, read_pt};

use crate::{check_error, check_ok, run_in, TINY_CONFIG};

#[test]
fn a_diverged_run_stops_and_its_checkpoint_converts_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), TINY_CONFIG).unwrap();
    let base = [
        "train",
        "--config",
        "tiny.toml",
        "--epochs",
        "1",
        "--lr",
        "1e30",
    ];

    let out = run_in(dir.path(), &[&base[..], &["--run-dir", "a"]].concat());
    let err = check_error(&out, "the training loss is");
    assert!(err.contains("at step 2 (epoch 1, batch 2"), "{err}");
    assert!(err.contains("no checkpoint was saved before it"), "{err}");
    assert!(err.contains("--allow-nonfinite-loss"), "{err}");
    assert!(!dir.path().join("a/ckpt-000000000023.tempo").exists());

    let args = [
        &base[..],
        &["--run-dir", "b", "--allow-nonfinite-loss", "-q"],
    ]
    .concat();
    check_ok(&run_in(dir.path(), &args));
    let ckpt = dir.path().join("b/ckpt-000000000023.tempo");
    let original = load_object(&ckpt).unwrap();
    let weights = original.get("model").and_then(|m| m.get("0.weight"));
    let nan_weights = weights.and_then(|w| w.as_tensor()).map(|t| {
        t.le_bytes()
            .chunks(4)
            .any(|b| f32::from_le_bytes(b.try_into().unwrap()).is_nan())
    });
    assert_eq!(nan_weights, Some(true), "the run did not diverge");

    // A user's existing file is not replaced without -f, nor by a failed conversion.
    std::fs::write(dir.path().join("mine.pt"), b"keep me").unwrap();
    let ckpt_arg = ckpt.to_str().unwrap();
    check_error(
        &run_in(dir.path(), &["convert", ckpt_arg, "mine.pt"]),
        "--force",
    );
    std::fs::write(
        dir.path().join("cut.tempo"),
        &std::fs::read(&ckpt).unwrap()[..300],
    )
    .unwrap();
    check_error(
        &run_in(dir.path(), &["convert", "cut.tempo", "mine.pt", "-f"]),
        "cut.tempo",
    );
    assert_eq!(
        std::fs::read(dir.path().join("mine.pt")).unwrap(),
        b"keep me"
    );

    let out = check_ok(&run_in(dir.path(), &["convert", ckpt_arg, "mine.pt", "-f"]));
    assert!(out.contains("reads back identical"), "{out}");
    check_ok(&run_in(dir.path(), &["convert", "mine.pt", "again.tempo"]));
    let pt = read_pt(dir.path().join("mine.pt")).unwrap();
    assert_eq!(pt.first_difference(&original), None);
    let again = load_object(dir.path().join("again.tempo")).unwrap();
    assert_eq!(again.first_difference(&original), None);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

#[test]
fn resume_skips_a_corrupt_latest_checkpoint_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), TINY_CONFIG).unwrap();
    let args = [
        "train",
        "--config",
        "tiny.toml",
        "--epochs",
        "2",
        "--run-dir",
        "r",
        "-q",
    ];
    check_ok(&run_in(dir.path(), &args));
    let latest = dir.path().join("r/ckpt-000000000046.tempo");
    let len = std::fs::metadata(&latest).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&latest)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let out = run_in(dir.path(), &["train", "--resume", "r"]);
    let stdout = check_ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped") && stderr.contains("ckpt-000000000046.tempo"),
        "{stderr}"
    );
    assert!(stderr.contains("truncated"), "{stderr}");
    assert!(stderr.contains("ckpt-000000000023.tempo"), "{stderr}");
    assert!(stdout.contains("resuming after step 23"), "{stdout}");
    assert!(stdout.contains("epoch   2/2"), "{stdout}");
}
