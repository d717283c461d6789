//! `tempo inspect`: what a tempo checkpoint or a PyTorch `.pt` file holds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempo::ckpt::{
    detect_format, load_object, optimizer_state_from_object, read_pt, Format, Object,
    OptimizerStateDict, StateValue, TRAINING_STATE_KIND,
};
use tempo::param_groups::{Dict, Value};

use crate::metrics::Metrics;
use crate::Outcome;

const AFTER_HELP: &str = "\
Recognises, at the top level or one level down: module state dicts (name -> tensor),
optimizer state dicts ({state, param_groups}) and scheduler state dicts (with last_epoch).
PyTorch does not save class names: the optimizer's and scheduler's types are inferred
from their keys, and said so.

Examples:
  tempo inspect runs/2024-01-01T12-00-00/ckpt-000000000675.tempo
  tempo inspect testdata/conformance/torch-checkpoints/seed_epoch5_float32.pt";

/// Arguments of `tempo inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct InspectArgs {
    /// A tempo checkpoint (.tempo) or a PyTorch checkpoint (.pt, .pth).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
}

/// Runs `tempo inspect`.
pub(crate) fn run(args: &InspectArgs) -> Result<Outcome> {
    print!("{}", inspect(&args.file)?);
    Ok(Outcome::Done)
}

/// The summary `tempo inspect` prints.
pub(crate) fn inspect(path: &Path) -> Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let format =
        detect_format(path).with_context(|| format!("cannot inspect {}", path.display()))?;
    let (object, format_name) = match format {
        Format::Torch => (read_pt(path)?, "PyTorch checkpoint (torch.save zip)"),
        Format::Tempo => (load_object(path)?, "tempo checkpoint"),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {format_name}, {}",
        path.display(),
        bytes(size as usize)
    );
    if object.get("kind").and_then(Object::as_str) == Some(TRAINING_STATE_KIND) {
        let _ = writeln!(out, "kind: {TRAINING_STATE_KIND} (a training state)");
    }
    match object.entries() {
        Some(entries) => {
            for (k, v) in entries {
                let key = key_name(k);
                if key == "kind" {
                    continue;
                }
                describe(&mut out, &key, v, 0);
            }
        }
        None => describe(&mut out, "(top level)", &object, 0),
    }
    Ok(out)
}

fn key_name(k: &Object) -> String {
    match k {
        Object::Str(s) => s.clone(),
        other => other
            .to_value("key")
            .map_or_else(|_| other.type_name().to_string(), |v| v.to_string()),
    }
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

/// One entry: recognised state dicts get a structured summary, scalars their value.
fn describe(out: &mut String, key: &str, v: &Object, level: usize) {
    let pad = indent(level);
    if let Some(tensors) = module_tensors(v) {
        let params: usize = tensors.iter().map(|(_, t)| t.len()).sum();
        let _ = writeln!(
            out,
            "{pad}{key}: model state dict, {} tensors, {params} values",
            tensors.len()
        );
        let width = tensors.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, t) in &tensors {
            let _ = writeln!(
                out,
                "{pad}  {name:<width$}  {:<12} {}",
                format!("{:?}", t.shape()),
                t.dtype().torch_name()
            );
        }
        return;
    }
    if v.get("state").is_some() && v.get("param_groups").is_some() {
        match optimizer_state_from_object(v) {
            Ok(sd) => describe_optimizer(out, key, &sd, level),
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{pad}{key}: an optimizer state dict that tempo cannot read: {e}"
                );
            }
        }
        return;
    }
    if v.get("last_epoch").is_some() || v.get("_last_lr").is_some() {
        describe_scheduler(out, key, v, level);
        return;
    }
    if key == "metadata" {
        if let Some(entries) = v.entries() {
            let _ = writeln!(out, "{pad}metadata:");
            for (k, item) in entries {
                describe_metadata(out, &key_name(k), item, level + 1);
            }
            return;
        }
    }
    if key == "rng" {
        if let Some(kind) = v.get("kind").and_then(Object::as_str) {
            let _ = writeln!(out, "{pad}rng: {kind} generator state");
            return;
        }
    }
    match v {
        Object::Tensor(t) => {
            let _ = writeln!(
                out,
                "{pad}{key}: tensor {:?} {}{}",
                t.shape(),
                t.dtype().torch_name(),
                t.item_f64().map(|x| format!(" = {x}")).unwrap_or_default()
            );
        }
        Object::Dict(entries) | Object::OrderedDict { entries, .. } if level < 2 => {
            let _ = writeln!(out, "{pad}{key}: dict with {} entries", entries.len());
            for (k, item) in entries {
                describe(out, &key_name(k), item, level + 1);
            }
        }
        other => {
            let _ = writeln!(out, "{pad}{key}: {}", short_value(other));
        }
    }
}

/// The entries of a dict whose values are all tensors (a module's state dict).
fn module_tensors(v: &Object) -> Option<Vec<(String, &tempo::ckpt::AnyTensor)>> {
    let entries = v.entries()?;
    if entries.is_empty() {
        return None;
    }
    entries
        .iter()
        .map(|(k, t)| Some((k.as_str()?.to_string(), t.as_tensor()?)))
        .collect()
}

fn short_value(v: &Object) -> String {
    let text = match v.to_value("value") {
        Ok(value) => value.to_string(),
        Err(_) => format!("a {}", v.type_name()),
    };
    truncate(&text, 100)
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max).collect();
        format!("{head}...")
    }
}

/// PyTorch does not save the optimizer's class: tell it from the group's keys.
pub(crate) fn infer_optimizer(group: &Dict) -> &'static str {
    let has = |k: &str| group.contains_key(k);
    if has("ns_coefficients") {
        "Muon"
    } else if has("beta2_decay") {
        "Adafactor"
    } else if has("momentum_decay") {
        "NAdam"
    } else if has("etas") && has("step_sizes") {
        "Rprop"
    } else if has("lambd") && has("t0") {
        "ASGD"
    } else if has("rho") {
        "Adadelta"
    } else if has("lr_decay") {
        "Adagrad"
    } else if has("centered") {
        "RMSprop"
    } else if has("history_size") {
        "LBFGS"
    } else if has("dampening") || has("nesterov") {
        "SGD"
    } else if has("betas") && has("amsgrad") {
        match group.get("decoupled_weight_decay") {
            Some(Value::Bool(true)) => "AdamW",
            _ => "Adam",
        }
    } else if has("betas") && has("decoupled_weight_decay") {
        "RAdam"
    } else if has("betas") {
        "Adamax"
    } else {
        "unknown"
    }
}

fn describe_optimizer(out: &mut String, key: &str, sd: &OptimizerStateDict, level: usize) {
    let pad = indent(level);
    let kind = sd.param_groups.first().map_or("unknown", infer_optimizer);
    let _ = writeln!(
        out,
        "{pad}{key}: optimizer state dict, {kind} (inferred from its hyperparameters), {} param group{}",
        sd.param_groups.len(),
        if sd.param_groups.len() == 1 { "" } else { "s" }
    );
    for (i, group) in sd.param_groups.iter().enumerate() {
        let params = group
            .get("params")
            .and_then(Value::as_slice)
            .map_or(0, <[Value]>::len);
        let mut keys: Vec<&str> = group.keys().filter(|k| *k != "params").collect();
        keys.sort_unstable();
        let pairs: Vec<String> = keys
            .iter()
            .filter_map(|k| group.get(k).map(|v| format!("{k}={v}")))
            .collect();
        let _ = writeln!(out, "{pad}  group {i}: {params} params");
        for line in wrap(&pairs, 96) {
            let _ = writeln!(out, "{pad}    {line}");
        }
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut values = 0usize;
    let mut bytes_total = 0usize;
    let mut steps: Vec<f64> = Vec::new();
    for (_, st) in &sd.state {
        for (k, v) in &st.entries {
            if !keys.contains(&k.as_str()) {
                keys.push(k);
            }
            if let StateValue::Tensor(t) = v {
                values += t.len();
                bytes_total += t.len() * t.dtype().size();
            }
            if k == "step" {
                if let Some(s) = v.as_f64() {
                    steps.push(s);
                }
            }
        }
    }
    if sd.state.is_empty() {
        let _ = writeln!(out, "{pad}  state: empty (no step taken yet)");
    } else {
        let step = match (
            steps.iter().copied().reduce(f64::min),
            steps.iter().copied().reduce(f64::max),
        ) {
            (Some(a), Some(b)) if (a - b).abs() < 0.5 => format!(", step {a}"),
            (Some(a), Some(b)) => format!(", steps {a}..{b}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{pad}  state: {} params with state ({}), {values} values, {}{step}",
            sd.state.len(),
            keys.join(", "),
            bytes(bytes_total)
        );
    }
}

/// PyTorch does not save the scheduler's class: tell it from the state's keys.
pub(crate) fn infer_scheduler(has: impl Fn(&str) -> bool) -> &'static str {
    if has("_schedule_phases") {
        "OneCycleLR"
    } else if has("max_lrs") && has("step_ratio") {
        "CyclicLR"
    } else if has("T_0") {
        "CosineAnnealingWarmRestarts"
    } else if has("T_max") {
        "CosineAnnealingLR"
    } else if has("_schedulers") && has("_milestones") {
        "SequentialLR"
    } else if has("_schedulers") {
        "ChainedScheduler"
    } else if has("patience") {
        "ReduceLROnPlateau"
    } else if has("_anneal_strategy") {
        "SWALR"
    } else if has("lr_lambdas") {
        "LambdaLR or MultiplicativeLR"
    } else if has("step_size") {
        "StepLR"
    } else if has("milestones") {
        "MultiStepLR"
    } else if has("start_factor") {
        "LinearLR"
    } else if has("factor") && has("total_iters") {
        "ConstantLR"
    } else if has("power") {
        "PolynomialLR"
    } else if has("gamma") {
        "ExponentialLR"
    } else {
        "unknown"
    }
}

fn describe_scheduler(out: &mut String, key: &str, v: &Object, level: usize) {
    let pad = indent(level);
    let kind = infer_scheduler(|k| v.get(k).is_some());
    let _ = writeln!(
        out,
        "{pad}{key}: scheduler state dict, {kind} (inferred from its keys)"
    );
    for (k, item) in v.entries().unwrap_or_default() {
        let name = key_name(k);
        if name == "_schedulers" {
            if let Some(children) = item.items() {
                for (i, child) in children.iter().enumerate() {
                    describe_scheduler(out, &format!("_schedulers[{i}]"), child, level + 1);
                }
                continue;
            }
        }
        let _ = writeln!(out, "{pad}  {name}: {}", short_value(item));
    }
}

fn describe_metadata(out: &mut String, key: &str, v: &Object, level: usize) {
    let pad = indent(level);
    match (key, v.as_str()) {
        ("metrics", Some(text)) => match serde_json::from_str::<Metrics>(text) {
            Ok(m) => {
                let last = m
                    .epochs
                    .last()
                    .map(|e| {
                        format!(
                            ", last epoch {}: train loss {:.4}, test accuracy {:.2}%",
                            e.epoch,
                            e.train_loss,
                            100.0 * e.test_accuracy
                        )
                    })
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{pad}metrics: tempo train history, {} steps, {} epochs{last}",
                    m.steps.len(),
                    m.epochs.len()
                );
            }
            Err(_) => {
                let _ = writeln!(out, "{pad}metrics: {}", truncate(text, 100));
            }
        },
        ("config", Some(text)) => {
            let _ = writeln!(out, "{pad}config: TOML, {} lines", text.lines().count());
            for line in text
                .lines()
                .filter(|l| l.starts_with('[') || l.contains(" = "))
                .take(40)
            {
                let _ = writeln!(out, "{pad}  {line}");
            }
        }
        _ => {
            let _ = writeln!(out, "{pad}{key}: {}", short_value(v));
        }
    }
}

fn wrap(items: &[String], width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for item in items {
        if !line.is_empty() && line.len() + 2 + item.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push_str(", ");
        }
        line.push_str(item);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn bytes(n: usize) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimizer_types_from_pytorch_group_keys() {
        let group = |keys: &[(&str, Value)]| -> Dict { keys.iter().cloned().collect() };
        let betas = || Value::Tuple(vec![0.9.into(), 0.999.into()]);
        assert_eq!(
            infer_optimizer(&group(&[
                ("betas", betas()),
                ("amsgrad", false.into()),
                ("decoupled_weight_decay", true.into())
            ])),
            "AdamW"
        );
        assert_eq!(
            infer_optimizer(&group(&[
                ("betas", betas()),
                ("amsgrad", false.into()),
                ("decoupled_weight_decay", false.into())
            ])),
            "Adam"
        );
        assert_eq!(
            infer_optimizer(&group(&[("momentum", 0.9.into()), ("dampening", 0.into())])),
            "SGD"
        );
        assert_eq!(infer_optimizer(&group(&[("lr", 0.1.into())])), "unknown");
        // Muon's groups hold `nesterov` too, as SGD's do.
        assert_eq!(
            infer_optimizer(&group(&[
                ("momentum", 0.95.into()),
                ("nesterov", true.into()),
                (
                    "ns_coefficients",
                    Value::Tuple(vec![3.4445.into(), (-4.775).into(), 2.0315.into()])
                )
            ])),
            "Muon"
        );
        assert_eq!(
            infer_optimizer(&group(&[
                ("beta2_decay", (-0.8).into()),
                ("eps", Value::Tuple(vec![Value::None, 1e-3.into()])),
                ("d", 1.0.into())
            ])),
            "Adafactor"
        );
    }

    #[test]
    fn scheduler_types_from_state_keys() {
        let of = |keys: &[&str]| infer_scheduler(|k| keys.contains(&k));
        assert_eq!(
            of(&["max_lrs", "total_size", "step_ratio", "last_epoch"]),
            "CyclicLR"
        );
        assert_eq!(of(&["total_steps", "_schedule_phases"]), "OneCycleLR");
        assert_eq!(of(&["step_size", "gamma"]), "StepLR");
        assert_eq!(of(&["gamma", "last_epoch"]), "ExponentialLR");
    }

    #[test]
    fn wrapping_keeps_items_whole() {
        let items: Vec<String> = ["a=1", "b=2", "c=3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(wrap(&items, 8), ["a=1, b=2", "c=3"]);
        assert_eq!(bytes(2048), "2.0 KiB");
    }
}
