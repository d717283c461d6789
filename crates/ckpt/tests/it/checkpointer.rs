//! The checkpointer: keeping the last N and the best.

use tempo_ckpt::{
    CheckpointEntry, Checkpointer, CheckpointerConfig, CkptError, MetricMode, TrainingState,
};

fn state(step: i64, loss: f64) -> TrainingState {
    let mut s = TrainingState {
        epoch: step / 10,
        step,
        ..TrainingState::default()
    };
    s.metadata.insert("val_loss", loss);
    s
}

fn steps(c: &Checkpointer) -> Vec<u64> {
    c.list()
        .unwrap()
        .iter()
        .map(|e: &CheckpointEntry| e.step)
        .collect()
}

#[test]
fn keeps_the_last_n_and_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let config = CheckpointerConfig {
        keep_last: 2,
        keep_best: Some(("val_loss".into(), MetricMode::Min)),
        ..Default::default()
    };
    let c = Checkpointer::new(dir.path().join("run"), config).unwrap();
    assert_eq!(c.latest().unwrap(), None);
    assert_eq!(c.load_latest().unwrap(), None);
    for (step, loss) in [(10, 0.5), (20, 0.1), (30, 0.3), (40, 0.4), (50, 0.2)] {
        c.save(&state(step, loss)).unwrap();
    }
    assert_eq!(steps(&c), [20, 40, 50]);
    assert_eq!(c.best().unwrap(), Some(c.path_for(20)));
    assert_eq!(c.latest().unwrap(), Some(c.path_for(50)));
    assert_eq!(c.load_latest().unwrap().unwrap(), state(50, 0.2));

    // A new checkpointer on the same directory finds the same files.
    let again = Checkpointer::new(c.dir(), CheckpointerConfig::default()).unwrap();
    assert_eq!(again.latest().unwrap(), Some(c.path_for(50)));
    assert_eq!(again.best().unwrap(), None);
}

#[test]
fn keeps_only_the_last_without_a_metric() {
    let dir = tempfile::tempdir().unwrap();
    let c = Checkpointer::new(
        dir.path(),
        CheckpointerConfig {
            keep_last: 1,
            ..Default::default()
        },
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a checkpoint").unwrap();
    for step in [3, 1, 2] {
        c.save(&state(step, 1.0)).unwrap();
    }
    // Steps order the checkpoints, not the time they were written; the file just
    // written is never deleted.
    assert_eq!(steps(&c), [2, 3]);
    c.save(&state(4, 1.0)).unwrap();
    assert_eq!(steps(&c), [4]);
    assert!(dir.path().join("notes.txt").exists());
}

#[test]
fn bad_configs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let zero = CheckpointerConfig {
        keep_last: 0,
        ..Default::default()
    };
    assert!(matches!(
        Checkpointer::new(dir.path(), zero),
        Err(CkptError::InvalidConfig {
            what: "keep_last",
            ..
        })
    ));
    let slash = CheckpointerConfig {
        prefix: "a/b".into(),
        ..Default::default()
    };
    assert!(matches!(
        Checkpointer::new(dir.path(), slash),
        Err(CkptError::InvalidConfig { what: "prefix", .. })
    ));
    let c = Checkpointer::new(dir.path(), CheckpointerConfig::default()).unwrap();
    assert!(matches!(
        c.save(&state(-1, 0.0)),
        Err(CkptError::InvalidConfig { what: "step", .. })
    ));
}

#[test]
fn a_corrupt_latest_checkpoint_falls_back_to_the_newest_intact_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = CheckpointerConfig {
        keep_last: 5,
        keep_best: Some(("val_loss".into(), MetricMode::Min)),
        ..Default::default()
    };
    let c = Checkpointer::new(dir.path(), config).unwrap();
    for (step, loss) in [(10, 0.5), (20, 0.1), (30, 0.3)] {
        c.save(&state(step, loss)).unwrap();
    }
    // The newest has a flipped byte at its end; the one before is cut short.
    let newest = c.path_for(30);
    let mut bytes = std::fs::read(&newest).unwrap();
    *bytes.last_mut().unwrap() ^= 0x20;
    std::fs::write(&newest, &bytes).unwrap();
    let middle = c.path_for(20);
    let len = std::fs::metadata(&middle).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&middle)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let latest = c.load_latest_intact().unwrap().unwrap();
    assert_eq!(latest.state, state(10, 0.5));
    assert_eq!(latest.entry.path, c.path_for(10));
    let skipped: Vec<(u64, String)> = latest
        .skipped
        .iter()
        .map(|s| (s.entry.step, s.to_string()))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert_eq!((skipped[0].0, skipped[1].0), (30, 20));
    assert!(
        matches!(latest.skipped[0].error, CkptError::Malformed { .. }),
        "{skipped:?}"
    );
    assert!(
        skipped[0].1.contains("ckpt-000000000030.tempo"),
        "{skipped:?}"
    );
    assert!(skipped[1].1.contains("truncated"), "{skipped:?}");
    assert_eq!(c.load_latest().unwrap().unwrap(), state(10, 0.5));
    // Saving goes on, though two checkpoints cannot be read for their metric.
    c.save(&state(40, 0.4)).unwrap();
    assert_eq!(c.best().unwrap(), Some(c.path_for(40)));

    // With nothing intact, the error names every file tried.
    for step in [10, 40] {
        std::fs::write(c.path_for(step), b"not a checkpoint").unwrap();
    }
    let err = c.load_latest_intact().unwrap_err();
    let CkptError::NoIntactCheckpoint { skipped, .. } = &err else {
        panic!("{err}")
    };
    for step in [10, 20, 30, 40] {
        assert!(skipped.contains(&format!("step {step})")), "{err}");
    }
}
