//! Checkpoints written by other training code, made here with tempo's own writers in
//! the shapes those programs write: Hugging Face Trainer folders, Lightning `.ckpt`
//! files, timm's optimizers, bare state dicts and plain safetensors files.

use std::path::Path;

use tempo::ckpt::{write_pt, write_safetensors, AnyTensor, Elements, Object};

use crate::{check_ok, run_in};

fn s(text: &str) -> Object {
    Object::Str(text.into())
}

fn tensor(shape: &[usize], e: Elements) -> Object {
    Object::Tensor(AnyTensor::new(shape.to_vec(), e).unwrap())
}

fn f32s(shape: &[usize]) -> Object {
    let n: usize = shape.iter().product();
    tensor(
        shape,
        Elements::F32((0..n).map(|i| i as f32 * 0.5).collect()),
    )
}

fn bf16s(shape: &[usize]) -> Object {
    let n: usize = shape.iter().product();
    tensor(shape, Elements::BF16(vec![0x3f80; n]))
}

/// A model state dict: two layers.
fn model() -> Object {
    Object::OrderedDict {
        entries: vec![
            (s("fc.weight"), f32s(&[4, 3])),
            (s("fc.bias"), f32s(&[4])),
            (s("out.weight"), f32s(&[2, 4])),
            (s("out.bias"), f32s(&[2])),
        ],
        attrs: vec![],
    }
}

/// torch 2.15's AdamW state dict for [`model`], with one long param group.
fn adamw(step: f64) -> Object {
    let state = (0..4)
        .map(|i| {
            let shape: &[usize] = match i {
                0 => &[4, 3],
                1 => &[4],
                2 => &[2, 4],
                _ => &[2],
            };
            (
                Object::Int(i),
                Object::str_dict([
                    ("step", tensor(&[], Elements::F32(vec![step as f32]))),
                    ("exp_avg", f32s(shape)),
                    ("exp_avg_sq", f32s(shape)),
                ]),
            )
        })
        .collect();
    Object::str_dict([
        ("state", Object::Dict(state)),
        (
            "param_groups",
            Object::List(vec![Object::str_dict([
                ("lr", Object::Float(5e-5)),
                (
                    "betas",
                    Object::Tuple(vec![Object::Float(0.9), Object::Float(0.999)]),
                ),
                ("eps", Object::Float(1e-8)),
                ("weight_decay", Object::Float(0.0)),
                ("amsgrad", Object::Bool(false)),
                ("foreach", Object::None),
                ("maximize", Object::Bool(false)),
                ("capturable", Object::Bool(false)),
                ("differentiable", Object::Bool(false)),
                ("fused", Object::None),
                ("decoupled_weight_decay", Object::Bool(true)),
                ("initial_lr", Object::Float(5e-5)),
                ("params", Object::List((0..4).map(Object::Int).collect())),
            ])]),
        ),
    ])
}

/// HF's LambdaLR state (its lambda is not saved).
fn lambda_lr(step: i64) -> Object {
    Object::str_dict([
        ("base_lrs", Object::List(vec![Object::Float(5e-5)])),
        ("last_epoch", Object::Int(step)),
        ("_step_count", Object::Int(step + 1)),
        ("_get_lr_called_within_step", Object::Bool(false)),
        ("_last_lr", Object::List(vec![Object::Float(4e-5)])),
        ("lr_lambdas", Object::List(vec![Object::None])),
    ])
}

fn inspect(dir: &Path, what: &str) -> String {
    check_ok(&run_in(dir, &["inspect", what]))
}

fn check_contains(out: &str, needles: &[&str]) {
    for needle in needles {
        assert!(out.contains(needle), "missing `{needle}` in:\n{out}");
    }
}

#[test]
fn a_hugging_face_trainer_folder_is_one_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint-500");
    std::fs::create_dir(&ckpt).unwrap();
    write_pt(ckpt.join("optimizer.pt"), &adamw(500.0)).unwrap();
    write_pt(ckpt.join("scheduler.pt"), &lambda_lr(500)).unwrap();
    write_safetensors(ckpt.join("model.safetensors"), &model()).unwrap();
    std::fs::write(
        ckpt.join("trainer_state.json"),
        r#"{"global_step": 500, "max_steps": 1000, "epoch": 2.0, "num_train_epochs": 4,
            "log_history": [{"step": 10, "learning_rate": 5e-06, "loss": 2.1},
                            {"step": 500, "learning_rate": 4e-05, "loss": 0.7}],
            "best_metric": null}"#,
    )
    .unwrap();
    let out = inspect(dir.path(), "checkpoint-500");
    check_contains(
        &out,
        &[
            "Hugging Face Trainer checkpoint folder",
            "global step: 500 of 1000, epoch 2 of 4",
            "learning rate logged 2 times: 0.000005 at step 10, 0.00004 at step 500",
            "model: model state dict, 4 tensors, 26 values",
            "optimizer: optimizer state dict, AdamW (its hyperparameter keys are exactly AdamW's), 1 param group",
            "state: 4 params with state (step, exp_avg, exp_avg_sq), 56 values in float32",
            "step 500",
            "scheduler: scheduler state dict, LambdaLR or MultiplicativeLR",
            "last_epoch: 500",
        ],
    );
    // Each file alone: a top-level optimizer or scheduler state dict is one thing.
    let out = inspect(&ckpt, "optimizer.pt");
    check_contains(&out, &["(top level): optimizer state dict, AdamW"]);
    assert!(!out.contains("model state dict"), "{out}");
    let out = inspect(&ckpt, "scheduler.pt");
    check_contains(&out, &["(top level): scheduler state dict"]);
    let out = inspect(&ckpt, "model.safetensors");
    check_contains(
        &out,
        &[
            "safetensors file",
            "(top level): model state dict, 4 tensors",
            "fc.weight",
        ],
    );
}

#[test]
fn a_lightning_checkpoint_lists_its_optimizers_and_schedulers() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = Object::str_dict([
        ("epoch", Object::Int(3)),
        ("global_step", Object::Int(120)),
        ("pytorch-lightning_version", s("2.5.0")),
        ("state_dict", model()),
        ("optimizer_states", Object::List(vec![adamw(120.0)])),
        ("lr_schedulers", Object::List(vec![lambda_lr(120)])),
    ]);
    write_pt(dir.path().join("last.ckpt"), &ckpt).unwrap();
    let out = inspect(dir.path(), "last.ckpt");
    check_contains(
        &out,
        &[
            "global_step: 120",
            "state_dict: model state dict, 4 tensors",
            "optimizer_states: list of 1 state dicts",
            "optimizer_states[0]: optimizer state dict, AdamW",
            "lr_schedulers: list of 1 state dicts",
            "lr_schedulers[0]: scheduler state dict",
        ],
    );
}

#[test]
fn an_unknown_optimizer_is_shown_as_unknown_with_its_keys_and_state() {
    let dir = tempfile::tempdir().unwrap();
    // timm's Lion, with bf16 state: no tempo optimizer has these keys.
    let lion = Object::str_dict([
        (
            "state",
            Object::Dict(vec![(
                Object::Int(0),
                Object::str_dict([("exp_avg", bf16s(&[4, 3]))]),
            )]),
        ),
        (
            "param_groups",
            Object::List(vec![Object::str_dict([
                ("lr", Object::Float(1e-4)),
                (
                    "betas",
                    Object::Tuple(vec![Object::Float(0.9), Object::Float(0.99)]),
                ),
                ("weight_decay", Object::Float(0.0)),
                ("caution", Object::Bool(false)),
                ("maximize", Object::Bool(false)),
                ("foreach", Object::None),
                ("params", Object::List(vec![Object::Int(0)])),
            ])]),
        ),
    ]);
    write_pt(dir.path().join("lion.pt"), &lion).unwrap();
    let out = inspect(dir.path(), "lion.pt");
    check_contains(
        &out,
        &[
            "unknown optimizer (its hyperparameter keys match none of tempo's optimizers)",
            "betas=(0.9, 0.99), caution=False",
            "state: 1 params with state (exp_avg), 12 values in bfloat16, 24 bytes",
        ],
    );
    assert!(!out.contains("Adamax"), "{out}");
}

#[test]
fn long_values_are_shown_whole_and_wrapped() {
    let dir = tempfile::tempdir().unwrap();
    let phases: Vec<Object> = (0..6)
        .map(|i| {
            Object::str_dict([
                ("end_step", Object::Float(f64::from(i) * 10.0)),
                ("start_lr", s("initial_lr")),
                ("end_lr", s("max_lr")),
                ("marker", s(&format!("phase-{i}"))),
            ])
        })
        .collect();
    // OneCycleLR's keys, as PyTorch writes them without momentum cycling.
    let sched = Object::str_dict([
        ("total_steps", Object::Int(60)),
        ("_schedule_phases", Object::List(phases)),
        ("_anneal_func_type", s("cos")),
        ("cycle_momentum", Object::Bool(false)),
        ("base_lrs", Object::List(vec![Object::Float(0.004)])),
        ("last_epoch", Object::Int(0)),
        ("_step_count", Object::Int(1)),
        ("_last_lr", Object::List(vec![Object::Float(0.004)])),
    ]);
    write_pt(dir.path().join("s.pt"), &sched).unwrap();
    let out = inspect(dir.path(), "s.pt");
    check_contains(&out, &["OneCycleLR", "'phase-0'", "'phase-5'"]);
    assert!(!out.contains("..."), "{out}");
    assert!(out.lines().all(|l| l.chars().count() <= 110), "{out}");
}

/// A tempo run's first epoch (of three: the scheduler's schedule is the run's), as a `.pt` file and as a Lightning `.ckpt` (the model
/// under `state_dict` with Lightning's `model.` prefix, the optimizer and scheduler in
/// `optimizer_states` and `lr_schedulers`, the step in `global_step`).
fn foreign_checkpoints(dir: &Path) {
    std::fs::write(dir.join("tiny.toml"), crate::TINY_CONFIG).unwrap();
    let args = ["train", "--config", "tiny.toml", "--run-dir", "first", "-q"];
    check_ok(&run_in(dir, &args));
    check_ok(&run_in(
        dir,
        &["convert", "first/ckpt-000000000023.tempo", "first.pt"],
    ));
    let state = tempo::ckpt::read_pt(dir.join("first.pt")).unwrap();
    let model = state.get("model").unwrap().entries().unwrap();
    let lightning = Object::str_dict([
        ("epoch", Object::Int(0)),
        ("global_step", Object::Int(23)),
        ("pytorch-lightning_version", s("2.5.0")),
        (
            "state_dict",
            Object::OrderedDict {
                entries: model
                    .iter()
                    .map(|(k, v)| (s(&format!("model.{}", k.as_str().unwrap())), v.clone()))
                    .collect(),
                attrs: vec![],
            },
        ),
        (
            "optimizer_states",
            Object::List(vec![state.get("optimizer").unwrap().clone()]),
        ),
        (
            "lr_schedulers",
            Object::List(vec![state.get("scheduler").unwrap().clone()]),
        ),
    ]);
    write_pt(dir.join("last.ckpt"), &lightning).unwrap();
}

#[test]
fn train_resumes_from_a_pt_file_or_a_lightning_checkpoint_that_matches_its_config() {
    let dir = tempfile::tempdir().unwrap();
    foreign_checkpoints(dir.path());
    for (file, run) in [("first.pt", "from-pt"), ("last.ckpt", "from-ckpt")] {
        let out = check_ok(&run_in(
            dir.path(),
            &[
                "train",
                "--config",
                "tiny.toml",
                "--resume",
                file,
                "--run-dir",
                run,
            ],
        ));
        assert!(out.contains("from step 23 (epoch 2, batch 0)"), "{out}");
        assert!(!out.contains("epoch   1/3"), "{out}");
        assert!(out.contains("epoch   3/3"), "{out}");
        assert!(dir
            .path()
            .join(run)
            .join("ckpt-000000000069.tempo")
            .is_file());
    }
}

#[test]
fn a_foreign_checkpoint_that_does_not_match_the_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    foreign_checkpoints(dir.path());
    let sgd = crate::TINY_CONFIG.replace("type = \"AdamW\"", "type = \"SGD\"");
    std::fs::write(dir.path().join("sgd.toml"), sgd).unwrap();
    let no_sched = crate::TINY_CONFIG
        .split("[scheduler]")
        .next()
        .unwrap()
        .to_string()
        + "[checkpoint]\nevery = 1\n";
    std::fs::write(dir.path().join("nosched.toml"), no_sched).unwrap();
    for (file, extra, needle) in [
        (
            "last.ckpt",
            &["--config", "tiny.toml", "--hidden", "8"][..],
            "`0.weight` has shape [16, 64], the run's model needs [8, 64]",
        ),
        (
            "first.pt",
            &["--config", "sgd.toml"][..],
            "the optimizer is AdamW, the run's config has SGD",
        ),
        (
            "first.pt",
            &["--config", "nosched.toml"][..],
            "a scheduler state dict, but the run's config has no scheduler",
        ),
    ] {
        let args = [&["train", "--resume", file, "--run-dir", "x"][..], extra].concat();
        let out = run_in(dir.path(), &args);
        crate::check_error(&out, needle);
        assert!(
            !dir.path().join("x").exists(),
            "a refused run left its directory"
        );
    }
    // A run directory is continued with its own config.
    let out = run_in(dir.path(), &["train", "--resume", "first", "--lr", "0.1"]);
    crate::check_error(&out, "--lr cannot be used");
}

/// `testdata/foreign/sparse.pt`, written by PyTorch's own `torch.save`
/// (`testdata/foreign/make_torch_fixtures.py`).
#[test]
fn inspect_shows_sparse_tensors_and_convert_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let src = crate::testdata("../foreign/sparse.pt");
    let src = src.to_str().unwrap();
    let out = inspect(dir.path(), src);
    check_contains(
        &out,
        &[
            "coo: sparse_coo tensor [4, 5] float32, 3 stored, coalesced (indices [2, 3] int64, values [3] float32)",
            "uncoalesced: sparse_coo tensor [3, 2] float64, 3 stored, not coalesced",
            "csr32: sparse_csr tensor [2, 3] bfloat16, 3 stored (crow_indices [3] int32, col_indices [3] int32, values [3] bfloat16)",
            "csc: sparse_csc tensor [2, 3] float32, 3 stored (ccol_indices [4] int64, row_indices [3] int64",
            "bsr: sparse_bsr tensor [4, 4] float32, 3 stored (crow_indices [3] int64, col_indices [3] int64, values [3, 2, 2] float32)",
        ],
    );
    check_ok(&run_in(dir.path(), &["convert", src, "s.tempo"]));
    check_ok(&run_in(dir.path(), &["convert", "s.tempo", "s.pt"]));
    assert_eq!(
        inspect(dir.path(), "s.pt")
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        out.lines().skip(1).collect::<Vec<_>>()
    );
    let bad = crate::testdata("../foreign/sparse_bad.pt");
    crate::check_error(
        &run_in(dir.path(), &["inspect", bad.to_str().unwrap()]),
        "at `emb.weight`: a torch.sparse_coo tensor: index 9 in dimension 0 is outside the size [4]",
    );
}

/// `testdata/foreign/quantized.pt`, written by PyTorch's own `torch.save`
/// (`testdata/foreign/make_torch_fixtures.py`).
#[test]
fn inspect_shows_quantized_tensors_and_convert_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let src = crate::testdata("../foreign/quantized.pt");
    let src = src.to_str().unwrap();
    let out = inspect(dir.path(), src);
    check_contains(
        &out,
        &[
            "qint8: quantized tensor [2, 3] qint8 per_tensor_affine (scale 0.1, zero_point 3)",
            "qint32: quantized tensor [2, 3] qint32 per_tensor_affine (scale 0.001, zero_point -7)",
            "quint4x2: quantized tensor [5] quint4x2 per_tensor_affine (scale 1, zero_point 0)",
            "per_channel: quantized tensor [2, 3] quint8 per_channel_affine (axis 0, 2 scales float64, zero_points int64)",
            "float_qparams: quantized tensor [2, 3] quint8 per_channel_affine (axis 1, 3 scales float32, zero_points float32)",
        ],
    );
    check_ok(&run_in(dir.path(), &["convert", src, "q.tempo"]));
    check_ok(&run_in(dir.path(), &["convert", "q.tempo", "q.pt"]));
    assert_eq!(
        inspect(dir.path(), "q.pt")
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        out.lines().skip(1).collect::<Vec<_>>()
    );
}

/// A Trainer folder with `training_args.bin` as transformers 5.25 writes it
/// (`testdata/foreign/checkpoint-40/`, from `testdata/foreign/make_torch_fixtures.py`):
/// its schedule settings are shown, each with where it came from.
#[test]
fn a_trainer_folder_shows_the_schedule_in_training_args() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint-40");
    std::fs::create_dir(&ckpt).unwrap();
    std::fs::copy(
        crate::testdata("../foreign/checkpoint-40/training_args.bin"),
        ckpt.join("training_args.bin"),
    )
    .unwrap();
    write_pt(ckpt.join("scheduler.pt"), &lambda_lr(40)).unwrap();
    std::fs::write(
        ckpt.join("trainer_state.json"),
        r#"{"global_step": 40, "max_steps": 100, "epoch": 0.8, "num_train_epochs": 2,
            "log_history": [{"step": 10, "learning_rate": 0.0003, "loss": 2.1}]}"#,
    )
    .unwrap();
    let out = inspect(dir.path(), "checkpoint-40");
    check_contains(
        &out,
        &[
            "global step: 40 of 100, epoch 0.8 of 2 (trainer_state.json)",
            "scheduler: scheduler state dict, LambdaLR or MultiplicativeLR",
            "training_args.bin: a pickled `transformers.training_args.TrainingArguments`, read as inert data (nothing imported or run):",
            "  lr_scheduler_type: cosine (training_args.bin, the enum `transformers.trainer_utils.SchedulerType`; tempo: `transformers:cosine`)",
            "  learning_rate: 0.0003 (training_args.bin)",
            "  warmup_steps: 8 (training_args.bin)",
            "  max_steps: 100 (training_args.bin)",
            "  num_train_epochs: 2 (training_args.bin)",
        ],
    );
    // The folder alone with training_args.bin is a Trainer folder too.
    std::fs::remove_file(ckpt.join("scheduler.pt")).unwrap();
    std::fs::remove_file(ckpt.join("trainer_state.json")).unwrap();
    let out = inspect(dir.path(), "checkpoint-40");
    check_contains(
        &out,
        &[
            "global step: 40 (from the folder's name)",
            "warmup_steps: 8",
        ],
    );
    // The file alone: the same description; converting it is refused (it is not a
    // checkpoint of data, and a record is never loaded).
    let out = inspect(&ckpt, "training_args.bin");
    check_contains(
        &out,
        &[
            "training_args.bin: PyTorch checkpoint (torch.save zip)",
            "read as inert data (nothing imported or run):",
            "  max_steps: 100 (training_args.bin)",
        ],
    );
    let err = crate::check_error(
        &run_in(&ckpt, &["convert", "training_args.bin", "args.tempo"]),
        "TrainingArguments",
    );
    assert!(err.contains("allow-list"), "{err}");
}
