//! `tempo train --distributed` under `mpirun` (with the `distributed` feature, which
//! needs Open MPI; CI runs these), and its error without the feature. Every `mpirun` is
//! bounded by `timeout`, so a stuck rank fails the test instead of hanging it.

#[cfg(not(feature = "distributed"))]
#[test]
fn without_mpi_support_the_flag_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::run_in(dir.path(), &["train", "--distributed", "--epochs", "1"]);
    crate::check_error(&out, "--features distributed");
}

#[cfg(feature = "distributed")]
mod mpi {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Output, Stdio};
    use std::time::{Duration, Instant};

    use tempo::ckpt::{load, TrainingState};
    use tempo::tensor::TensorData;

    use crate::{check_ok, run_in, TINY_CONFIG};

    /// `mpirun` on loopback, at most 120 s, with `args` for every rank (`:` separates
    /// the programs of an MPMD run).
    fn mpirun(dir: &Path, ranks: usize, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.current_dir(dir)
            .args([
                "-k",
                "5",
                "120",
                "mpirun",
                "--allow-run-as-root",
                "--oversubscribe",
            ])
            .args([
                "--mca",
                "btl",
                "self,tcp",
                "--mca",
                "btl_tcp_if_include",
                "lo",
            ])
            .args([
                "--mca",
                "oob_tcp_if_include",
                "lo",
                "-np",
                &ranks.to_string(),
            ])
            .arg(env!("CARGO_BIN_EXE_tempo"));
        for a in args {
            if *a == ":" {
                c.args([":", "-np", "1", env!("CARGO_BIN_EXE_tempo")]);
            } else {
                c.arg(a);
            }
        }
        c
    }

    fn run_mpi(dir: &Path, ranks: usize, args: &[&str]) -> Output {
        mpirun(dir, ranks, args)
            .output()
            .expect("mpirun (Open MPI) must be installed to test the distributed feature")
    }

    fn text(out: &Output) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn checkpoints(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|e| e == "tempo"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn last(dir: &Path) -> TrainingState {
        load(checkpoints(dir).last().expect("a checkpoint")).unwrap()
    }

    fn values(t: &TensorData) -> Vec<f64> {
        t.to_f64_vec()
    }

    /// Bit-for-bit equality of everything that decides a run's numbers.
    fn check_identical(a: &TrainingState, b: &TrainingState) {
        assert_eq!((a.epoch, a.step), (b.epoch, b.step));
        for ((na, ta), (nb, tb)) in a.model.iter().zip(&b.model) {
            assert_eq!(na, nb);
            let bits = |t: &TensorData| values(t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(bits(ta) == bits(tb), "parameter {na} differs");
        }
        assert_eq!(a.optimizer, b.optimizer, "optimizer state differs");
        assert_eq!(a.scheduler, b.scheduler, "scheduler state differs");
        assert_eq!(a.rng, b.rng, "generator differs");
        assert_eq!(a.metadata, b.metadata, "metrics differ");
    }

    /// The largest difference between two runs' parameters, relative to each
    /// parameter tensor's largest magnitude.
    fn max_relative_difference(a: &TrainingState, b: &TrainingState) -> f64 {
        let mut worst = 0.0f64;
        for ((_, ta), (_, tb)) in a.model.iter().zip(&b.model) {
            let (va, vb) = (values(ta), values(tb));
            let scale = va.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (x, y) in va.iter().zip(&vb) {
                worst = worst.max((x - y).abs() / scale);
            }
        }
        worst
    }

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tiny.toml"), TINY_CONFIG).unwrap();
        dir
    }

    const TINY: &[&str] = &["train", "--distributed", "--config", "tiny.toml", "-q"];

    fn with<'a>(base: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(more).copied().collect()
    }

    /// Two ranks against one process over three epochs (69 AdamW + OneCycleLR steps of a
    /// 64-16-10 MLP in f32, global batch 64). They differ only in summation order: each
    /// rank's weight gradient sums 32 rows, and the two halves are added after, where one
    /// process sums 64 rows in one matrix product. That moves gradients by an f32 ulp or
    /// so (~1e-7 relative); AdamW divides by the gradient's running RMS, so a step moves
    /// a weight by about lr whatever its gradient, and a few ulps of gradient change a
    /// step by a few ulps of lr. Over 69 steps that stays below 1e-5 of each tensor's
    /// largest weight (measured: 3.4e-7; the loss is not chaotic at this lr).
    #[test]
    fn two_ranks_match_one_process_and_two_runs_are_identical() {
        let dir = setup();
        let d = dir.path();
        check_ok(&run_in(
            d,
            &["train", "--config", "tiny.toml", "--run-dir", "one", "-q"],
        ));
        let two = run_mpi(d, 2, &with(TINY, &["--run-dir", "two"]));
        check_ok(&two);
        let again = run_mpi(d, 2, &with(TINY, &["--run-dir", "again"]));
        check_ok(&again);
        let (one, two, again) = (
            last(&d.join("one")),
            last(&d.join("two")),
            last(&d.join("again")),
        );
        check_identical(&two, &again);
        let diff = max_relative_difference(&one, &two);
        println!(
            "2 ranks vs one process after 3 epochs: max relative parameter difference {diff:.3e}"
        );
        assert!(diff < 1e-5, "{diff}");
        // The checkpoint has exactly the single-process layout: the same state names,
        // ids, groups and shapes.
        let (a, b) = (one.optimizer.unwrap(), two.optimizer.unwrap());
        assert_eq!(a.param_groups.len(), b.param_groups.len());
        let layout = |s: &tempo::optim::OptimizerStateDict| {
            s.state
                .iter()
                .map(|(id, st)| {
                    let keys: Vec<(String, Vec<usize>)> = st
                        .entries
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_tensor()
                                    .map(|t| t.shape().to_vec())
                                    .unwrap_or_default(),
                            )
                        })
                        .collect();
                    (*id, keys)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(layout(&a), layout(&b));
        assert_eq!(one.scheduler, two.scheduler);
        // PyTorch's format too: the 2-rank checkpoint converts to .pt and back unchanged.
        let ckpt = checkpoints(&d.join("two")).pop().unwrap();
        check_ok(&run_in(d, &["convert", ckpt.to_str().unwrap(), "two.pt"]));
        check_ok(&run_in(d, &["convert", "two.pt", "back.tempo"]));
        let back = load(d.join("back.tempo")).unwrap();
        assert_eq!(back.optimizer, Some(b));
        // One display, from rank 0: the run's lines appear once.
        let out = run_mpi(
            d,
            2,
            &[
                "train",
                "--distributed",
                "--config",
                "tiny.toml",
                "--run-dir",
                "shown",
            ],
        );
        let shown = check_ok(&out);
        assert_eq!(shown.matches("done: test accuracy").count(), 1, "{shown}");
        assert!(shown.contains("on 2 ranks"), "{shown}");
    }

    /// Keeps the first checkpoint of `from` (after epoch 1) in a new run directory.
    fn first_checkpoint_of(d: &Path, from: &str, to: &str) {
        let target = d.join(to);
        std::fs::create_dir_all(&target).unwrap();
        let first = checkpoints(&d.join(from)).remove(0);
        std::fs::copy(&first, target.join(first.file_name().unwrap())).unwrap();
        std::fs::copy(d.join(from).join("config.toml"), target.join("config.toml")).unwrap();
    }

    #[test]
    fn a_two_rank_checkpoint_resumes_with_two_ranks_three_ranks_and_one_process() {
        let dir = setup();
        let d = dir.path();
        check_ok(&run_mpi(d, 2, &with(TINY, &["--run-dir", "straight"])));
        let straight = last(&d.join("straight"));
        for (name, ranks) in [("two", 2), ("three", 3), ("one", 0)] {
            first_checkpoint_of(d, "straight", name);
            if ranks == 0 {
                check_ok(&run_in(d, &["train", "--resume", name, "-q"]));
            } else {
                check_ok(&run_mpi(
                    d,
                    ranks,
                    &["train", "--distributed", "--resume", name, "-q"],
                ));
            }
            let resumed = last(&d.join(name));
            if ranks == 2 {
                check_identical(&straight, &resumed);
            } else {
                // Another number of ranks adds the gradients in another order: the
                // tolerance of the comparison with one process above.
                assert_eq!(
                    (resumed.epoch, resumed.step),
                    (straight.epoch, straight.step)
                );
                let diff = max_relative_difference(&straight, &resumed);
                println!("resumed as `{name}`: max relative difference {diff:.3e}");
                assert!(diff < 1e-5, "{name}: {diff}");
            }
        }
    }

    #[test]
    fn ranks_with_different_configs_stop_with_the_difference() {
        let dir = setup();
        let d = dir.path();
        let out = run_mpi(
            d,
            1,
            &[
                "train",
                "--distributed",
                "--hidden",
                "16",
                "--run-dir",
                "a",
                ":",
                "train",
                "--distributed",
                "--hidden",
                "32",
                "--run-dir",
                "a",
            ],
        );
        let text = text(&out);
        assert_ne!(out.status.code(), Some(0), "{text}");
        assert_ne!(out.status.code(), Some(124), "timed out:\n{text}");
        let message = "rank 1 disagrees with rank 0 about the training configuration: rank 0 has `hidden = [16]`, rank 1 has `hidden = [32]`";
        // Every rank finds the difference and reports it, but once the first rank exits
        // with an error mpirun ends the others, sometimes before their report is out: at
        // least one report, and never a run that goes on.
        assert!(text.contains(message), "{text}");
        assert!(checkpoints(&d.join("a")).is_empty());
    }

    /// The pid of `tempo` rank `rank` of a run whose command line mentions `marker`.
    fn rank_pid(marker: &str, rank: usize) -> Option<u32> {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            let has =
                |hay: &[u8], needle: &str| hay.split(|&b| b == 0).any(|s| s == needle.as_bytes());
            if String::from_utf8_lossy(&cmdline).contains(marker)
                && cmdline.starts_with(env!("CARGO_BIN_EXE_tempo").as_bytes())
                && has(&environ, &format!("OMPI_COMM_WORLD_RANK={rank}"))
            {
                return Some(pid);
            }
        }
        None
    }

    fn wait_for(child: &mut Child, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    #[test]
    fn a_killed_rank_ends_the_run_and_leaves_the_last_checkpoint_intact() {
        let dir = setup();
        let d = dir.path();
        let run_dir = d.join("killed");
        let marker = run_dir.to_string_lossy().into_owned();
        let mut child = mpirun(
            d,
            2,
            &with(
                TINY,
                &[
                    "--run-dir",
                    &marker,
                    "--epochs",
                    "50",
                    "--step-delay-ms",
                    "20",
                ],
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun runs");
        // Wait for the first checkpoint, then kill rank 1 mid-epoch.
        let start = Instant::now();
        while checkpoints(&run_dir).is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no checkpoint appeared"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let pid = rank_pid(&marker, 1).expect("rank 1 is running");
        let killed = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let code = wait_for(&mut child, Duration::from_secs(60));
        let out = child.wait_with_output().unwrap();
        let text = text(&out);
        let code = code.expect("the run did not end after a rank was killed");
        assert_ne!(code, 0, "{text}");
        assert_ne!(code, 124, "timed out:\n{text}");
        assert!(
            text.contains("process rank 1") && text.contains("signal 9"),
            "{text}"
        );
        // The checkpoints on disk are whole: the newest loads and resumes.
        let last = checkpoints(&run_dir).pop().unwrap();
        load(&last).unwrap();
        check_ok(&run_in(
            d,
            &[
                "train",
                "--resume",
                &marker,
                "--checkpoint-every",
                "1",
                "-q",
            ],
        ));
    }
}
