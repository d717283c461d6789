//! `tempo plot`.

use crate::{check_error, check_ok, run_in};

const SEED_CYCLIC: &str =
    "CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=1, mode=\"triangular2\", cycle_momentum=False)";

#[test]
fn csv_of_the_seed_schedule_is_pytorchs() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_ok(&run_in(
        dir.path(),
        &[
            "plot",
            "--scheduler",
            SEED_CYCLIC,
            "--steps",
            "10",
            "--optimizer",
            "adam",
            "--csv",
        ],
    ));
    // PyTorch's values (CyclicLR triangular2): base_lr on even steps, halving peaks on odd ones.
    let expected = [
        0.001,
        0.1,
        0.001,
        0.0505,
        0.001,
        0.025750000000000002,
        0.001,
        0.013375000000000001,
        0.001,
        0.0071875,
        0.001,
    ];
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("step,lr_0"));
    let values: Vec<f64> = lines
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(values.len(), expected.len());
    for (got, want) in values.iter().zip(expected) {
        assert!((got - want).abs() <= 1e-15 * want, "{got} vs {want}");
    }
}

#[test]
fn overlaid_schedulers_to_svg_and_png() {
    let dir = tempfile::tempdir().unwrap();
    check_ok(&run_in(
        dir.path(),
        &[
            "plot",
            "-s",
            "OneCycleLR(max_lr=0.1, total_steps=50)",
            "-s",
            "OneCycleLR(max_lr=0.1, total_steps=50, anneal_strategy=\"linear\")",
            "--steps",
            "49",
            "--lr",
            "0.1,0.01",
            "-o",
            "one.svg",
        ],
    ));
    let svg = std::fs::read_to_string(dir.path().join("one.svg")).unwrap();
    for text in [
        "learning rate",
        "momentum",
        "scheduler step",
        "anneal_strategy",
        "group 1",
    ] {
        assert!(svg.contains(text), "one.svg lacks {text}");
    }
    std::fs::write(
        dir.path().join("spec.toml"),
        "type = \"CosineAnnealingWarmRestarts\"\n[kwargs]\nT_0 = 10\nT_mult = 2\n",
    )
    .unwrap();
    check_ok(&run_in(
        dir.path(),
        &[
            "plot",
            "--spec",
            "spec.toml",
            "--steps",
            "70",
            "-o",
            "warm.png",
        ],
    ));
    let png = std::fs::read(dir.path().join("warm.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn bad_specs_name_the_offending_argument() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["plot", "-s", "StepLR(step_sise=3)", "--csv"]);
    check_error(&out, "step_sise");
    let out = run_in(dir.path(), &["plot", "-s", "StepLR(step_size=3", "--csv"]);
    check_error(&out, "StepLR(step_size=3");
    let out = run_in(dir.path(), &["plot", "-s", "NoSuchLR(gamma=0.5)", "--csv"]);
    check_error(&out, "NoSuchLR");
    let out = run_in(
        dir.path(),
        &["plot", "-s", "StepLR(step_size=3)", "-o", "x.jpg"],
    );
    check_error(&out, ".svg or .png");
    let out = run_in(dir.path(), &["plot", "--spec", "missing.toml", "--csv"]);
    check_error(&out, "missing.toml");
    let out = run_in(dir.path(), &["plot", "-s", "StepLR(step_size=3)"]);
    check_error(&out, "--csv");
}

#[test]
fn help_lists_every_scheduler_and_transformers_schedules_plot() {
    let dir = tempfile::tempdir().unwrap();
    let help = check_ok(&run_in(dir.path(), &["plot", "--help"]));
    for name in tempo::sched::SCHEDULER_NAMES {
        assert!(
            help.contains(name),
            "`{name}` is not in tempo plot --help:\n{help}"
        );
    }
    // transformers' linear schedule over the plot's length: warmup 0, 0.05, then down to 0.
    let out = check_ok(&run_in(
        dir.path(),
        &[
            "plot",
            "-s",
            "transformers:linear(num_warmup_steps=2)",
            "--steps",
            "6",
            "--csv",
        ],
    ));
    let values: Vec<f64> = out
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let want = [0.0, 0.05, 0.1, 0.075, 0.05, 0.025, 0.0];
    assert_eq!(values.len(), want.len(), "{out}");
    for (got, want) in values.iter().zip(want) {
        assert!((got - want).abs() <= 1e-15, "{got} vs {want}");
    }
    let out = run_in(
        dir.path(),
        &[
            "plot",
            "-s",
            "transformers:cosinus(num_warmup_steps=2)",
            "--csv",
        ],
    );
    check_error(&out, "cosine_with_restarts");
}
