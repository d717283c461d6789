//! `tempo inspect`: what a tempo checkpoint, a PyTorch `.pt` file, a safetensors file
//! or a Hugging Face checkpoint folder holds.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use std::sync::OnceLock;

use tempo::ckpt::{
    detect_format, read_any, read_pt_inert, CkptError, Format, Object, TRAINING_STATE_KIND,
};
use tempo::optim::OPTIMIZERS;
use tempo::param_groups::Value;
use tempo::sched::{scheduler_group_keys, schedulers_with_state_keys};

use crate::metrics::Metrics;
use crate::Outcome;

const AFTER_HELP: &str = "\
Reads tempo checkpoints, torch.save files (.pt, .pth, .bin, Lightning's .ckpt), plain
safetensors files, and Hugging Face Trainer checkpoint folders (checkpoint-N/: the
global step and logged lrs from trainer_state.json, optimizer.pt, scheduler.pt and
model.safetensors together, and the schedule's name, warmup and steps from
training_args.bin, read as inert data: nothing in it is imported or run).

Recognises, at the top level, one level down and in lists (Lightning's
optimizer_states and lr_schedulers): module state dicts (name -> tensor), optimizer
state dicts ({state, param_groups}) and scheduler state dicts (with last_epoch).
PyTorch does not save class names: an optimizer is named only when its param groups
have exactly the keys of one of tempo's optimizers (else it is shown as unknown, with
its keys and state), a scheduler is inferred from its keys, and both say so.

Examples:
  tempo inspect runs/2024-01-01T12-00-00/ckpt-000000000675.tempo
  tempo inspect testdata/conformance/torch-checkpoints/seed_epoch5_float32.pt
  tempo inspect output/checkpoint-500";

/// Arguments of `tempo inspect`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct InspectArgs {
    /// A tempo checkpoint, a PyTorch checkpoint (.pt, .pth, .bin, .ckpt), a
    /// safetensors file, or a Hugging Face checkpoint folder.
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
    if path.is_dir() {
        return crate::inspect_hf::inspect_folder(path);
    }
    let format =
        detect_format(path).with_context(|| format!("cannot inspect {}", path.display()))?;
    let format_name = match format {
        Format::Torch => "PyTorch checkpoint (torch.save zip)",
        Format::Tempo => "tempo checkpoint",
        Format::Safetensors => "safetensors file",
        _ => "checkpoint",
    };
    // The first line: the file, its format and size.
    let mut out = format!(
        "{}: {format_name}, {}\n",
        path.display(),
        bytes(size as usize)
    );
    let object = match read_any(path) {
        // A pickled class the safe loader refuses (HF's training_args.bin): described
        // from inert records, never loaded.
        Err(CkptError::ForbiddenGlobal { .. }) if format == Format::Torch => {
            let object = read_pt_inert(path)
                .with_context(|| format!("cannot inspect {}", path.display()))?;
            crate::inspect_hf::describe_args(&mut out, &object);
            return Ok(out);
        }
        other => other.with_context(|| format!("cannot inspect {}", path.display()))?,
    };
    if object.get("kind").and_then(Object::as_str) == Some(TRAINING_STATE_KIND) {
        let _ = writeln!(out, "kind: {TRAINING_STATE_KIND} (a training state)");
    }
    match object.entries() {
        // A state dict at the top level (HF's optimizer.pt and scheduler.pt, a bare
        // model state dict) is one thing, not one block per entry.
        Some(_) if recognised(&object) => describe(&mut out, "(top level)", &object, 0),
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

/// Whether `v` is a model, optimizer or scheduler state dict.
pub(crate) fn recognised(v: &Object) -> bool {
    module_tensors(v).is_some() || is_optimizer(v) || is_scheduler(v)
}

fn is_optimizer(v: &Object) -> bool {
    v.get("state").is_some() && v.get("param_groups").is_some()
}

fn is_scheduler(v: &Object) -> bool {
    v.get("last_epoch").is_some() || v.get("_last_lr").is_some()
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
pub(crate) fn describe(out: &mut String, key: &str, v: &Object, level: usize) {
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
    if is_optimizer(v) {
        describe_optimizer(out, key, v, level);
        return;
    }
    if is_scheduler(v) {
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
    if let Some(items) = v.items() {
        if !items.is_empty()
            && items
                .iter()
                .all(|i| recognised(i) || lightning_scheduler(i))
        {
            let _ = writeln!(out, "{pad}{key}: list of {} state dicts", items.len());
            for (i, item) in items.iter().enumerate() {
                match item.get("scheduler") {
                    // Lightning wraps each scheduler's state with its settings.
                    Some(inner) if lightning_scheduler(item) => {
                        let settings: Vec<String> = item
                            .entries()
                            .unwrap_or_default()
                            .iter()
                            .filter(|(k, _)| k.as_str() != Some("scheduler"))
                            .map(|(k, v)| format!("{}={}", key_name(k), short_value(v)))
                            .collect();
                        describe(out, &format!("{key}[{i}]"), inner, level + 1);
                        for line in wrap(&settings, 96) {
                            let _ = writeln!(out, "{pad}    {line}");
                        }
                    }
                    _ => describe(out, &format!("{key}[{i}]"), item, level + 1),
                }
            }
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
        Object::Sparse(sparse) => {
            let _ = writeln!(out, "{pad}{key}: {}", sparse_summary(sparse));
        }
        Object::Quantized(q) => {
            let _ = writeln!(out, "{pad}{key}: {}", quantized_summary(q));
        }
        Object::Dict(entries) | Object::OrderedDict { entries, .. } if level < 2 => {
            let _ = writeln!(out, "{pad}{key}: dict with {} entries", entries.len());
            for (k, item) in entries {
                describe(out, &key_name(k), item, level + 1);
            }
        }
        other => {
            let _ = writeln!(
                out,
                "{pad}{key}: {}",
                wrap_value(&short_value(other), 96, &pad)
            );
        }
    }
}

/// Lightning's `lr_schedulers` entries: `{"scheduler": <state dict>, "interval": ...}`
/// (older versions), or the state dict itself.
fn lightning_scheduler(v: &Object) -> bool {
    v.get("scheduler").is_some_and(is_scheduler)
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

/// A value as Python prints it, whole (long ones are wrapped by [`wrap_value`]).
fn short_value(v: &Object) -> String {
    match v.to_value("value") {
        Ok(value) => value.to_string(),
        Err(_) => match v {
            Object::Tensor(t) => format!("tensor {:?} {}", t.shape(), t.dtype()),
            Object::MetaTensor { dtype, shape } => {
                format!("meta tensor {shape:?} {dtype} (no data)")
            }
            Object::Sparse(sparse) => sparse_summary(sparse),
            Object::Quantized(q) => quantized_summary(q),
            other => format!("a {}", other.type_name()),
        },
    }
}

/// A quantized tensor: dtype, shape and the quantizer's parameters.
fn quantized_summary(q: &tempo::ckpt::QuantizedTensor) -> String {
    use tempo::ckpt::QScheme;
    let params = match q.scheme() {
        QScheme::PerTensorAffine { scale, zero_point } => {
            format!("scale {scale}, zero_point {zero_point}")
        }
        QScheme::PerChannelAffine {
            scales,
            zero_points,
            axis,
            ..
        } => format!(
            "axis {axis}, {} scales {}, zero_points {}",
            scales.len(),
            scales.dtype(),
            zero_points.dtype()
        ),
        _ => String::new(),
    };
    format!(
        "quantized tensor {:?} {} {} ({params})",
        q.shape(),
        q.dtype(),
        q.scheme().torch_name()
    )
}

/// A sparse tensor: layout, dense size, dtype, stored values and each part.
fn sparse_summary(s: &tempo::ckpt::SparseTensor) -> String {
    let parts: Vec<String> = s
        .parts()
        .iter()
        .map(|(name, t)| format!("{name} {:?} {}", t.shape(), t.dtype()))
        .collect();
    let coalesced = match s.is_coalesced() {
        Some(true) => ", coalesced",
        Some(false) => ", not coalesced",
        None => "",
    };
    format!(
        "{} tensor {:?} {}, {} stored{coalesced} ({})",
        s.layout().torch_name(),
        s.size(),
        s.values().dtype(),
        s.nnz(),
        parts.join(", ")
    )
}

/// `text` in lines of at most about `width` characters, broken after `, `, the lines
/// after the first indented by `pad` and two spaces more.
fn wrap_value(text: &str, width: usize, pad: &str) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for (i, part) in text.split_inclusive(", ").enumerate() {
        if i > 0 && line_len + part.len() > width {
            out.truncate(out.trim_end().len());
            out.push('\n');
            out.push_str(pad);
            out.push_str("    ");
            line_len = 0;
        }
        out.push_str(part);
        line_len += part.len();
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max).collect();
        format!("{head}...")
    }
}

/// An optimizer's name, sorted group keys and default `decoupled_weight_decay`.
type KeySet = (&'static str, Vec<String>, Option<bool>);

/// Each of tempo's optimizers (its registry, [`OPTIMIZERS`]): its PyTorch name, the
/// keys of its param groups' defaults, and its default `decoupled_weight_decay` (what
/// tells AdamW from Adam, whose groups have the same keys).
fn optimizer_key_sets() -> &'static [KeySet] {
    static SETS: OnceLock<Vec<KeySet>> = OnceLock::new();
    SETS.get_or_init(|| {
        OPTIMIZERS
            .iter()
            .map(|o| {
                let defaults = (o.defaults)();
                let mut keys: Vec<String> = defaults.keys().map(str::to_string).collect();
                keys.sort_unstable();
                let decoupled = match defaults.get("decoupled_weight_decay") {
                    Some(Value::Bool(b)) => Some(*b),
                    _ => None,
                };
                (o.name, keys, decoupled)
            })
            .collect()
    })
}

/// PyTorch does not save the optimizer's class: it is named only if the group's
/// hyperparameter keys (less those a scheduler adds) are exactly those of one of
/// tempo's optimizers (timm's Lion, Lamb or Adopt, say, are no Adam); `None` otherwise.
pub(crate) fn infer_optimizer(group: &Object) -> Option<&'static str> {
    let mut keys: Vec<String> = group
        .entries()?
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .filter(|k| *k != "params" && !scheduler_group_keys().iter().any(|g| g == k))
        .map(str::to_string)
        .collect();
    keys.sort_unstable();
    let decoupled = match group.get("decoupled_weight_decay") {
        Some(Object::Bool(b)) => Some(*b),
        _ => None,
    };
    let matches: Vec<_> = optimizer_key_sets()
        .iter()
        .filter(|(_, k, _)| *k == keys)
        .collect();
    match matches.as_slice() {
        [] => None,
        [(name, _, _)] => Some(name),
        several => several
            .iter()
            .find(|(_, _, d)| *d == decoupled)
            .map(|(name, _, _)| *name),
    }
}

/// An optimizer state dict, from the raw value: it need not load into a tempo
/// optimizer (an unknown class, bf16 state) to be described.
fn describe_optimizer(out: &mut String, key: &str, v: &Object, level: usize) {
    let pad = indent(level);
    let groups: &[Object] = v
        .get("param_groups")
        .and_then(Object::items)
        .unwrap_or_default();
    let kinds: Vec<Option<&str>> = groups.iter().map(infer_optimizer).collect();
    let kind = match kinds.first() {
        Some(Some(k)) if kinds.iter().all(|x| x == &Some(*k)) => {
            format!("{k} (its hyperparameter keys are exactly {k}'s)")
        }
        _ => "unknown optimizer (its hyperparameter keys match none of tempo's optimizers)"
            .to_string(),
    };
    let _ = writeln!(
        out,
        "{pad}{key}: optimizer state dict, {kind}, {} param group{}",
        groups.len(),
        if groups.len() == 1 { "" } else { "s" }
    );
    for (i, group) in groups.iter().enumerate() {
        let entries = group.entries().unwrap_or_default();
        let params = group
            .get("params")
            .and_then(Object::items)
            .map_or(0, <[Object]>::len);
        let mut pairs: Vec<(String, String)> = entries
            .iter()
            .filter(|(k, _)| k.as_str() != Some("params"))
            .map(|(k, v)| (key_name(k), short_value(v)))
            .collect();
        pairs.sort();
        let pairs: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "{pad}  group {i}: {params} params");
        for line in wrap(&pairs, 96) {
            let _ = writeln!(out, "{pad}    {line}");
        }
    }
    let state: &[(Object, Object)] = v.get("state").and_then(Object::entries).unwrap_or_default();
    let mut keys: Vec<String> = Vec::new();
    let mut dtypes: Vec<String> = Vec::new();
    let mut values = 0usize;
    let mut bytes_total = 0usize;
    let mut steps: Vec<f64> = Vec::new();
    for (_, st) in state {
        for (k, item) in st.entries().unwrap_or_default() {
            let k = key_name(k);
            if let Object::Tensor(t) = item {
                values += t.len();
                bytes_total += t.nbytes();
                let d = t.dtype().to_string();
                if !dtypes.contains(&d) {
                    dtypes.push(d);
                }
            }
            if k == "step" {
                let s = match item {
                    Object::Tensor(t) => t.item_f64(),
                    Object::Float(f) => Some(*f),
                    Object::Int(i) => Some(*i as f64),
                    _ => None,
                };
                steps.extend(s);
            }
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    if state.is_empty() {
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
            "{pad}  state: {} params with state ({}), {values} values in {}, {}{step}",
            state.len(),
            keys.join(", "),
            dtypes.join(" and "),
            bytes(bytes_total)
        );
    }
}

/// PyTorch does not save a scheduler's class: it is named from the state dict's keys,
/// compared exactly with those of each of tempo's schedulers
/// ([`schedulers_with_state_keys`]); an unknown one is reported with its keys.
pub(crate) fn infer_scheduler(state: &Object) -> String {
    let keys: Vec<&str> = state
        .entries()
        .unwrap_or_default()
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .collect();
    let names = schedulers_with_state_keys(keys.iter().copied());
    if names.is_empty() {
        format!("unknown (keys: {})", keys.join(", "))
    } else {
        names.join(" or ")
    }
}

fn describe_scheduler(out: &mut String, key: &str, v: &Object, level: usize) {
    let pad = indent(level);
    let kind = infer_scheduler(v);
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
        let _ = writeln!(
            out,
            "{pad}  {name}: {}",
            wrap_value(&short_value(item), 96, &pad)
        );
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
            let _ = writeln!(out, "{pad}{key}: {}", wrap_value(&short_value(v), 96, &pad));
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

pub(crate) fn bytes(n: usize) -> String {
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
    fn optimizers_are_named_only_on_an_exact_match_of_their_keys() {
        let group = |keys: &[(&str, Object)]| Object::str_dict(keys.iter().cloned());
        let betas = || Object::Tuple(vec![Object::Float(0.9), Object::Float(0.999)]);
        let f = Object::Float;
        let b = Object::Bool;
        // torch 2.15's Adam and AdamW groups: the same keys, told apart by a value.
        let adam = |decoupled: bool| {
            group(&[
                ("lr", f(1e-3)),
                ("betas", betas()),
                ("eps", f(1e-8)),
                ("weight_decay", f(0.0)),
                ("amsgrad", b(false)),
                ("maximize", b(false)),
                ("foreach", Object::None),
                ("capturable", b(false)),
                ("differentiable", b(false)),
                ("fused", Object::None),
                ("decoupled_weight_decay", b(decoupled)),
                ("params", Object::List(vec![Object::Int(0)])),
                ("initial_lr", f(1e-3)),
            ])
        };
        assert_eq!(infer_optimizer(&adam(true)), Some("AdamW"));
        assert_eq!(infer_optimizer(&adam(false)), Some("Adam"));
        // timm's Lion and Lamb are none of tempo's optimizers.
        let lion = group(&[
            ("lr", f(1e-4)),
            ("betas", betas()),
            ("weight_decay", f(0.0)),
            ("caution", b(false)),
            ("maximize", b(false)),
            ("foreach", Object::None),
        ]);
        assert_eq!(infer_optimizer(&lion), None);
        let lamb = group(&[
            ("lr", f(1e-3)),
            ("bias_correction", b(true)),
            ("betas", betas()),
            ("eps", f(1e-6)),
            ("weight_decay", f(0.01)),
            ("grad_averaging", b(true)),
            ("max_grad_norm", f(1.0)),
            ("trust_clip", b(false)),
            ("always_adapt", b(false)),
        ]);
        assert_eq!(infer_optimizer(&lamb), None);
        // Every tempo optimizer is recognised from its own default group.
        for (name, keys, _) in optimizer_key_sets() {
            let g = group(
                &keys
                    .iter()
                    .map(|k| {
                        let v = if k == "decoupled_weight_decay" {
                            b(*name == "AdamW")
                        } else {
                            Object::None
                        };
                        (k.as_str(), v)
                    })
                    .collect::<Vec<_>>(),
            );
            assert_eq!(infer_optimizer(&g), Some(*name), "{keys:?}");
        }
        assert_eq!(optimizer_key_sets().len(), OPTIMIZERS.len());
    }

    #[test]
    fn scheduler_types_from_state_keys() {
        let of = |keys: &[&str]| {
            let dict = Object::Dict(
                keys.iter()
                    .map(|k| (Object::Str(k.to_string()), Object::None))
                    .collect(),
            );
            infer_scheduler(&dict)
        };
        let tail = ["base_lrs", "last_epoch", "_step_count", "_last_lr"];
        let with_tail = |own: &[&'static str]| [own, &tail[..]].concat();
        assert_eq!(
            of(&with_tail(&[
                "total_steps",
                "_schedule_phases",
                "_anneal_func_type",
                "cycle_momentum"
            ])),
            "OneCycleLR"
        );
        assert_eq!(of(&with_tail(&["step_size", "gamma"])), "StepLR");
        assert_eq!(of(&with_tail(&["gamma"])), "ExponentialLR");
        assert_eq!(
            of(&with_tail(&["lr_lambdas"])),
            "LambdaLR or MultiplicativeLR"
        );
        // A key more than StepLR's is no StepLR.
        assert_eq!(
            of(&["step_size", "gamma", "warmup", "last_epoch"]),
            "unknown (keys: step_size, gamma, warmup, last_epoch)"
        );
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
