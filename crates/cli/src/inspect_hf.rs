//! `tempo inspect` on a folder: a Hugging Face `Trainer` checkpoint (`checkpoint-N/`
//! with `optimizer.pt`, `scheduler.pt`, `model.safetensors`, `trainer_state.json`,
//! `training_args.bin`, `rng_state.pth`), described as one thing.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value as Json;
use tempo::ckpt::{read_any, read_pt, read_pt_inert, Object};
use tempo::sched::TRANSFORMERS_SCHEDULES;

use crate::inspect::{bytes, describe};

/// The files of a Trainer checkpoint that hold state dicts, and what each is.
const STATE_FILES: &[(&str, &str)] = &[
    ("model.safetensors", "model"),
    ("pytorch_model.bin", "model"),
    ("optimizer.pt", "optimizer"),
    ("scheduler.pt", "scheduler"),
];

/// The summary of a checkpoint folder.
pub(crate) fn inspect_folder(dir: &Path) -> Result<String> {
    let mut out = String::new();
    let has = |name: &str| dir.join(name).is_file();
    if !STATE_FILES.iter().any(|(f, _)| has(f))
        && !has("trainer_state.json")
        && !has("training_args.bin")
    {
        bail!(
            "{} is a folder but not a Hugging Face Trainer checkpoint: it has none of \
             trainer_state.json, training_args.bin, optimizer.pt, scheduler.pt, model.safetensors, pytorch_model.bin",
            dir.display()
        );
    }
    let _ = writeln!(
        out,
        "{}: Hugging Face Trainer checkpoint folder",
        dir.display()
    );
    let from_name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("checkpoint-"))
        .and_then(|n| n.parse::<u64>().ok());
    let state_path = dir.join("trainer_state.json");
    let trainer_state: Option<Json> = if has("trainer_state.json") {
        let text = std::fs::read_to_string(&state_path)
            .with_context(|| format!("cannot read {}", state_path.display()))?;
        Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", state_path.display()))?,
        )
    } else {
        None
    };
    match (&trainer_state, from_name) {
        (Some(ts), _) => describe_trainer_state(&mut out, ts),
        (None, Some(step)) => {
            let _ = writeln!(out, "global step: {step} (from the folder's name)");
        }
        (None, None) => {}
    }
    for (file, label) in STATE_FILES {
        let path = dir.join(file);
        if !path.is_file() {
            continue;
        }
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        let object = read_any(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let _ = writeln!(out, "{file} ({}):", bytes(size as usize));
        describe(&mut out, label, &object, 1);
        if *label == "scheduler" && object.get("lr_lambdas").is_some() {
            let _ = writeln!(
                out,
                "    (a LambdaLR: its lambda is code, which torch.save does not keep; \
                 the schedule's name is in training_args.bin and its lrs in trainer_state.json)"
            );
        }
    }
    if has("training_args.bin") {
        // A pickled TrainingArguments dataclass, which the safe loader refuses: read as
        // inert records, for this description only (nothing is imported or run).
        let path = dir.join("training_args.bin");
        match read_pt_inert(&path) {
            Ok(o) => describe_args(&mut out, &o),
            Err(e) => {
                let _ = writeln!(out, "training_args.bin: unreadable: {e}");
            }
        }
    }
    if has("rng_state.pth") {
        let path = dir.join("rng_state.pth");
        let line = match read_pt(&path) {
            Ok(o) => {
                let keys: Vec<String> = o
                    .entries()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|(k, _)| k.as_str().map(str::to_string))
                    .collect();
                format!("generator states ({})", keys.join(", "))
            }
            Err(e) => format!("not read: {e}"),
        };
        let _ = writeln!(out, "rng_state.pth: {line}");
    }
    Ok(out)
}

fn describe_trainer_state(out: &mut String, ts: &Json) {
    let num = |k: &str| ts.get(k).and_then(Json::as_f64);
    let int = |k: &str| ts.get(k).and_then(Json::as_u64);
    let step = int("global_step");
    let of = int("max_steps")
        .map(|m| format!(" of {m}"))
        .unwrap_or_default();
    let epoch = match (num("epoch"), num("num_train_epochs")) {
        (Some(e), Some(n)) => format!(", epoch {e} of {n}"),
        (Some(e), None) => format!(", epoch {e}"),
        _ => String::new(),
    };
    if let Some(step) = step {
        let _ = writeln!(out, "global step: {step}{of}{epoch} (trainer_state.json)");
    }
    let logs: Vec<(u64, f64)> = ts
        .get("log_history")
        .and_then(Json::as_array)
        .map(|h| {
            h.iter()
                .filter_map(|e| Some((e.get("step")?.as_u64()?, e.get("learning_rate")?.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    if let (Some(first), Some(last)) = (logs.first(), logs.last()) {
        let _ = writeln!(
            out,
            "learning rate logged {} times: {} at step {}, {} at step {}",
            logs.len(),
            first.1,
            first.0,
            last.1,
            last.0
        );
    }
    if let Some(best) = ts.get("best_metric").filter(|b| !b.is_null()) {
        let at = ts
            .get("best_model_checkpoint")
            .and_then(Json::as_str)
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        let _ = writeln!(out, "best metric: {best}{at}");
    }
}

/// The schedule settings `training_args.bin` holds, each on a line saying where it
/// came from.
const ARGS_KEYS: &[&str] = &[
    "lr_scheduler_type",
    "learning_rate",
    "warmup_steps",
    "warmup_ratio",
    "max_steps",
    "num_train_epochs",
];

/// The schedule settings of a `training_args.bin` read as inert records: the
/// dataclass's attribute dict (its state), or a plain dict.
pub(crate) fn describe_args(out: &mut String, o: &Object) {
    let (class, fields) = match o {
        Object::Record {
            class,
            state: Some(state),
            ..
        } => (Some(class.as_str()), state.as_ref()),
        other => (None, other),
    };
    let what = class.map_or_else(
        || format!("a {}", o.type_name()),
        |c| format!("a pickled `{c}`"),
    );
    let lines: Vec<String> = ARGS_KEYS
        .iter()
        .filter_map(|&k| {
            let v = fields.get(k)?;
            Some(match v {
                // An enum member: its value, and the enum it is from.
                Object::Record { class, args, .. } => match args.as_slice() {
                    [Object::Str(name)] => {
                        let known = TRANSFORMERS_SCHEDULES.contains(&name.as_str());
                        let tempo = if k == "lr_scheduler_type" && known {
                            format!("; tempo: `transformers:{name}`")
                        } else {
                            String::new()
                        };
                        format!("{k}: {name} (training_args.bin, the enum `{class}`{tempo})")
                    }
                    _ => format!("{k}: an instance of `{class}` (training_args.bin)"),
                },
                other => match other.to_value(k) {
                    Ok(value) => format!("{k}: {value} (training_args.bin)"),
                    Err(_) => format!("{k}: a {} (training_args.bin)", other.type_name()),
                },
            })
        })
        .collect();
    if lines.is_empty() {
        let _ = writeln!(out, "training_args.bin: {what} without schedule settings");
        return;
    }
    let _ = writeln!(
        out,
        "training_args.bin: {what}, read as inert data (nothing imported or run):"
    );
    for line in lines {
        let _ = writeln!(out, "  {line}");
    }
}
