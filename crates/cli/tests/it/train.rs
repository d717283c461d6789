//! `tempo train`.

use std::path::Path;

use crate::{check_error, check_ok, run_in, TINY_CONFIG};

/// The rows of metrics.csv of kind `epoch`: (epoch, train loss, test accuracy).
fn epoch_rows(run_dir: &Path) -> Vec<(u64, f64, f64)> {
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    csv.lines()
        .filter(|l| l.starts_with("epoch,"))
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let n = cells.len();
            (
                cells[2].parse().unwrap(),
                cells[n - 2].parse().unwrap(),
                cells[n - 1].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_default_job_reaches_95_percent_on_the_digits() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_ok(&run_in(dir.path(), &["train", "--run-dir", "run"]));
    // Not a terminal: no progress bar, but one summary line per epoch.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("epoch ")).count(),
        15,
        "{out}"
    );
    let rows = epoch_rows(&dir.path().join("run"));
    assert_eq!(rows.len(), 15);
    let (_, _, accuracy) = rows[14];
    assert!(accuracy >= 0.95, "test accuracy {accuracy}");
    for file in [
        "config.toml",
        "metrics.csv",
        "lr.svg",
        "loss.svg",
        "ckpt-000000000675.tempo",
    ] {
        assert!(
            dir.path().join("run").join(file).is_file(),
            "missing {file}"
        );
    }
}

#[test]
fn no_arguments_means_train_into_a_timestamped_run_dir() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::tempo_in(dir.path()).output().unwrap();
    check_ok(&out);
    let runs: Vec<_> = std::fs::read_dir(dir.path().join("runs"))
        .unwrap()
        .collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].as_ref().unwrap().path();
    assert!(run.join("metrics.csv").is_file());
    assert!(run.file_name().unwrap().to_string_lossy().starts_with("20"));
}

#[test]
fn config_flags_metrics_and_pictures() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), TINY_CONFIG).unwrap();
    let out = run_in(
        dir.path(),
        &[
            "train",
            "--config",
            "tiny.toml",
            "--epochs",
            "2",
            "--keep",
            "1",
            "--run-dir",
            "r",
        ],
    );
    let stdout = check_ok(&out);
    assert!(stdout.contains("AdamW + OneCycleLR"), "{stdout}");
    let run = dir.path().join("r");
    // 1438 training samples in batches of 64: 23 steps per epoch.
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("kind,step,epoch,lr_0,momentum_0,loss,test_accuracy")
    );
    assert_eq!(csv.lines().filter(|l| l.starts_with("step,")).count(), 46);
    assert_eq!(epoch_rows(&run).len(), 2);
    // OneCycleLR over 46 steps, cos: step 1 uses max_lr/25 (up to rounding), momentum 0.95.
    let first: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert!((first[3].parse::<f64>().unwrap() - 0.02 / 25.0).abs() < 1e-15);
    assert!((first[4].parse::<f64>().unwrap() - 0.95).abs() < 1e-15);
    // --keep 1: only the last checkpoint stays.
    let ckpts: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("ckpt-"))
        .collect();
    assert_eq!(ckpts.len(), 1);
    let svg = std::fs::read_to_string(run.join("lr.svg")).unwrap();
    assert!(
        svg.contains("learning rate") && svg.contains("momentum"),
        "lr.svg"
    );
    let svg = std::fs::read_to_string(run.join("loss.svg")).unwrap();
    assert!(
        svg.contains("test accuracy") && svg.contains("training loss"),
        "loss.svg"
    );
    // The saved config has the overrides.
    let saved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(saved.contains("epochs = 2"), "{saved}");
}

#[test]
fn user_csv_with_a_named_target_column() {
    let dir = tempfile::tempdir().unwrap();
    // Two separable classes: the label is whether x + y > 1 (no randomness needed).
    let mut csv = String::from("x,label,y\n");
    for i in 0..200 {
        let x = (i % 20) as f64 / 20.0;
        let y = (i / 20) as f64 / 10.0;
        csv.push_str(&format!("{x},{},{y}\n", u8::from(x + y > 1.0)));
    }
    std::fs::write(dir.path().join("d.csv"), csv).unwrap();
    let out = run_in(
        dir.path(),
        &[
            "train",
            "--data",
            "d.csv",
            "--target-column",
            "label",
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--hidden",
            "8",
            "--run-dir",
            "r",
            "--quiet",
        ],
    );
    let stdout = check_ok(&out);
    assert_eq!(stdout, "", "--quiet prints nothing");
    assert_eq!(epoch_rows(&dir.path().join("r")).len(), 2);

    let out = run_in(
        dir.path(),
        &[
            "train",
            "--data",
            "d.csv",
            "--target-column",
            "class",
            "--run-dir",
            "r2",
        ],
    );
    check_error(&out, "no column named `class`");
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &["train", "--data", "missing.csv", "--run-dir", "r"],
    );
    check_error(&out, "missing.csv");
    std::fs::write(
        dir.path().join("bad.toml"),
        TINY_CONFIG.replace("max_lr = 0.02", "max_lr = 0.02\nmax_lrr = 1"),
    )
    .unwrap();
    let out = run_in(
        dir.path(),
        &["train", "--config", "bad.toml", "--run-dir", "r"],
    );
    check_error(&out, "max_lrr");
    std::fs::write(
        dir.path().join("bad2.toml"),
        TINY_CONFIG.replace("type = \"AdamW\"", "type = \"AdamX\""),
    )
    .unwrap();
    let out = run_in(
        dir.path(),
        &["train", "--config", "bad2.toml", "--run-dir", "r"],
    );
    check_error(&out, "AdamX");
    let out = run_in(dir.path(), &["train", "--resume", "nowhere"]);
    check_error(&out, "nowhere");
    let out = run_in(dir.path(), &["train", "--threads", "0", "--run-dir", "r"]);
    check_error(
        &out,
        "--threads: set_num_threads: expected at least 1, found 0",
    );
}

#[test]
fn the_number_of_threads_changes_no_number() {
    // Hidden layers large enough that every step is shared between threads (2^16
    // elements or more in all): one thread and three give the same run, bit for bit.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wide.toml"),
        TINY_CONFIG
            .replace("epochs = 3", "epochs = 1")
            .replace("hidden = [16]", "hidden = [256, 256]"),
    )
    .unwrap();
    let metrics = |threads: &str| {
        let run_dir = format!("r{threads}");
        check_ok(&run_in(
            dir.path(),
            &[
                "train",
                "--config",
                "wide.toml",
                "--threads",
                threads,
                "--run-dir",
                &run_dir,
                "-q",
            ],
        ));
        std::fs::read_to_string(dir.path().join(run_dir).join("metrics.csv")).unwrap()
    };
    let (one, three) = (metrics("1"), metrics("3"));
    assert!(one.lines().count() > 10, "{one}");
    assert_eq!(one, three);
}

#[test]
fn a_per_epoch_scheduler_changes_the_lr_only_between_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let config = TINY_CONFIG
        .replace("type = \"AdamW\"", "type = \"SGD\"")
        .replace("lr = 0.001", "lr = 0.1\nmomentum = 0.9")
        .replace(
            "type = \"OneCycleLR\"\nstep_every = \"batch\"",
            "type = \"StepLR\"\nstep_every = \"epoch\"",
        )
        .replace("max_lr = 0.02", "step_size = 1\ngamma = 0.5");
    std::fs::write(dir.path().join("step.toml"), config).unwrap();
    check_ok(&run_in(
        dir.path(),
        &["train", "--config", "step.toml", "--run-dir", "r", "-q"],
    ));
    let csv = std::fs::read_to_string(dir.path().join("r/metrics.csv")).unwrap();
    for line in csv.lines().filter(|l| l.starts_with("step,")) {
        let cells: Vec<&str> = line.split(',').collect();
        let epoch: i32 = cells[2].parse().unwrap();
        let lr: f64 = cells[3].parse().unwrap();
        // StepLR(step_size=1, gamma=0.5) from 0.1: 0.1, 0.05, 0.025 by epoch.
        let want = 0.1 * 0.5f64.powi(epoch - 1);
        assert!((lr - want).abs() <= 1e-15, "{line}");
        assert_eq!(cells[4], "0.9", "SGD's momentum is not cycled: {line}");
    }
}

#[test]
fn every_shipped_config_trains() {
    let configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&configs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[
                "train",
                "--config",
                path.to_str().unwrap(),
                "--epochs",
                "1",
                "--run-dir",
                "r",
            ],
        );
        let stdout = check_ok(&out);
        assert!(
            stdout.contains("epoch   1/1"),
            "{}: {stdout}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 3, "configs/ holds {seen} configs");
}
