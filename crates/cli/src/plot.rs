//! `tempo plot`: draw learning-rate schedules without an optimizer or a model.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value as Json;
use tempo::sched::{
    simulate, SchedError, SchedulerSpec, SimulatedGroups, Trajectory, SCHEDULER_NAMES,
};

use crate::charts::{self, Figure, Line, Panel};
use crate::config::{one_line, TRANSFORMERS_WITH_LENGTH};
use crate::Outcome;

const AFTER_HELP: &str = "\
Schedulers are written as PyTorch calls without the optimizer argument, or given as a
TOML/JSON file holding {type, kwargs, schedulers} (or a training config, whose
[scheduler] table is used). OneCycleLR without total_steps runs for --steps steps.
Hugging Face transformers' schedules are transformers:<name>(...) with get_scheduler's
arguments (num_warmup_steps, num_training_steps, scheduler_specific_kwargs={...}, or the
schedule's own arguments directly); without num_training_steps they span --steps steps.
Row 0 of the output is the lr after the scheduler's construction: the lr the first
optimizer step uses; row t is the lr after t scheduler steps.

Examples:
  tempo plot --scheduler 'CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=4, mode=\"triangular2\")' -o cyclic.svg
  tempo plot --scheduler 'OneCycleLR(max_lr=0.1, total_steps=100)' \\
             --scheduler 'OneCycleLR(max_lr=0.1, total_steps=100, anneal_strategy=\"linear\")' -o onecycle.svg
  tempo plot --scheduler 'SequentialLR(schedulers=[LinearLR(start_factor=0.01, total_iters=10), CosineAnnealingLR(T_max=90)], milestones=[10])' --steps 100 -o warmup.png
  tempo plot --scheduler 'transformers:cosine_with_restarts(num_warmup_steps=10, num_cycles=3)' -o hf.svg
  tempo plot --spec my-schedule.toml --lr 0.1,0.01 --optimizer adam --csv > lr.csv";

/// The help's end: [`AFTER_HELP`] and every scheduler name tempo knows.
fn after_help() -> String {
    let mut out = format!("{AFTER_HELP}\n\nSchedulers:");
    let mut line = String::new();
    for name in SCHEDULER_NAMES {
        if !line.is_empty() && line.len() + name.len() + 2 > 86 {
            let _ = write!(out, "\n  {}", line.trim_end_matches(' '));
            line.clear();
        }
        let _ = write!(line, "{name}, ");
    }
    let _ = write!(out, "\n  {}", line.trim_end_matches([',', ' ']));
    out
}

/// Where the simulated optimizer keeps momentum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OptimizerKind {
    /// SGD-like groups: `momentum` (0.9).
    SGD,
    /// Adam-like groups: `betas` = (0.9, 0.999).
    Adam,
}

/// Arguments of `tempo plot`.
#[derive(Debug, clap::Args)]
#[command(after_help = after_help())]
pub(crate) struct PlotArgs {
    /// A scheduler as a PyTorch call, e.g. 'StepLR(step_size=30, gamma=0.1)'; repeat to overlay.
    #[arg(long = "scheduler", short = 's', value_name = "CALL")]
    pub(crate) schedulers: Vec<String>,
    /// A scheduler spec file (TOML or JSON); repeat to overlay.
    #[arg(long = "spec", value_name = "FILE")]
    pub(crate) specs: Vec<PathBuf>,
    /// How many scheduler steps to draw.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub(crate) steps: usize,
    /// The initial lr of each param group, comma-separated (one group per value).
    #[arg(
        long,
        visible_alias = "groups",
        value_delimiter = ',',
        default_value = "0.1",
        value_name = "LR,..."
    )]
    pub(crate) lr: Vec<f64>,
    /// Whether momentum lives in `momentum` (sgd) or `betas[0]` (adam).
    #[arg(long, value_enum, default_value_t = OptimizerKind::SGD)]
    pub(crate) optimizer: OptimizerKind,
    /// The picture to write: .svg or .png (PNG text uses tempo's embedded font).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Print the values as CSV on stdout.
    #[arg(long)]
    pub(crate) csv: bool,
    /// The picture's title (default: the scheduler call).
    #[arg(long)]
    pub(crate) title: Option<String>,
}

/// One schedule to draw.
struct Schedule {
    label: String,
    trajectory: Trajectory,
}

/// Runs `tempo plot`.
pub(crate) fn run(args: &PlotArgs) -> Result<Outcome> {
    if args.schedulers.is_empty() && args.specs.is_empty() {
        bail!("no scheduler given: use --scheduler 'StepLR(step_size=30)' or --spec FILE");
    }
    if args.output.is_none() && !args.csv {
        bail!("nothing to write: give -o FILE (.svg or .png) and/or --csv");
    }
    if args.lr.is_empty() || args.lr.iter().any(|lr| !lr.is_finite()) {
        bail!("--lr must be one or more numbers separated by commas");
    }
    if let Some(out) = &args.output {
        check_picture_extension(out)?;
    }
    let groups = match args.optimizer {
        OptimizerKind::SGD => SimulatedGroups::sgd(&args.lr, 0.9),
        OptimizerKind::Adam => SimulatedGroups::adam(&args.lr, (0.9, 0.999)),
    };
    let mut specs: Vec<(String, SchedulerSpec)> = Vec::new();
    for call in &args.schedulers {
        let spec: SchedulerSpec = call
            .parse()
            .map_err(|e| anyhow::anyhow!("bad --scheduler `{call}`: {e}"))?;
        specs.push((call.clone(), spec));
    }
    for path in &args.specs {
        specs.push((file_label(path), load_spec(path)?));
    }
    let mut schedules = Vec::new();
    for (label, mut spec) in specs {
        fill_total_steps(&mut spec, args.steps);
        let trajectory = simulate(&spec, &groups, args.steps).map_err(|e| match e {
            SchedError::MetricRequired { scheduler } => anyhow::anyhow!(
                "cannot plot `{label}`: {scheduler} follows a validation metric, which a plot does not have"
            ),
            e => anyhow::anyhow!("cannot run `{label}`: {e}"),
        })?;
        schedules.push(Schedule { label, trajectory });
    }
    if args.csv {
        print!("{}", to_csv(&schedules));
    }
    if let Some(out) = &args.output {
        let title = args
            .title
            .clone()
            .unwrap_or_else(|| match schedules.as_slice() {
                [one] => one.label.clone(),
                _ => "Learning-rate schedules".into(),
            });
        charts::save(&figure(&schedules, title), out)?;
        eprintln!("wrote {}", out.display());
    }
    Ok(Outcome::Done)
}

fn check_picture_extension(path: &Path) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") || e.eq_ignore_ascii_case("png") => Ok(()),
        _ => bail!(
            "cannot tell the picture format of {}: expected a file name ending in .svg or .png",
            path.display()
        ),
    }
}

fn file_label(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// A spec file: `{type, kwargs, schedulers}` in TOML or JSON, or a training config whose
/// `[scheduler]` table is the spec.
pub(crate) fn load_spec(path: &Path) -> Result<SchedulerSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read spec file {}", path.display()))?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let value: Json = if is_json {
        serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{} is not valid JSON: {e}", path.display()))?
    } else {
        toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not valid TOML: {}",
                path.display(),
                one_line(&e.to_string())
            )
        })?
    };
    let mut value = match value.get("scheduler") {
        Some(inner) if value.get("type").is_none() => inner.clone(),
        _ => value,
    };
    if let Some(obj) = value.as_object_mut() {
        obj.remove("step_every");
    }
    serde_json::from_value(value).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a scheduler spec (expected `type`, `kwargs` and, for SequentialLR, `schedulers`): {e}",
            path.display()
        )
    })
}

/// A schedule that needs its length gets the plot's when the spec does not give it:
/// OneCycleLR `steps + 1` optimizer steps (whose lrs are rows `0..=steps`),
/// transformers' schedules `num_training_steps = steps`.
fn fill_total_steps(spec: &mut SchedulerSpec, steps: usize) {
    if spec.r#type == "OneCycleLR"
        && !["total_steps", "epochs", "steps_per_epoch"]
            .iter()
            .any(|k| spec.kwargs.contains_key(*k))
    {
        spec.kwargs
            .insert("total_steps".into(), Json::from(steps + 1));
    }
    let stable_given = spec.kwargs.contains_key("num_stable_steps")
        || spec
            .kwargs
            .get("scheduler_specific_kwargs")
            .is_some_and(|k| k.get("num_stable_steps").is_some());
    if TRANSFORMERS_WITH_LENGTH.contains(&spec.r#type.as_str())
        && !spec.kwargs.contains_key("num_training_steps")
        && !(spec.r#type == "transformers:warmup_stable_decay" && stable_given)
    {
        spec.kwargs
            .insert("num_training_steps".into(), Json::from(steps));
    }
    if let Some(children) = spec.schedulers.as_mut() {
        for c in children {
            fill_total_steps(c, steps);
        }
    }
}

/// Whether a schedule's momentum changes at all (else it is not drawn).
fn momentum_varies(t: &Trajectory, group: usize) -> bool {
    let mut values = t
        .momentum
        .iter()
        .filter_map(|row| row.get(group).copied().flatten());
    let Some(first) = values.next() else {
        return false;
    };
    values.any(|m| (m - first).abs() > 1e-15)
}

fn num_groups(t: &Trajectory) -> usize {
    t.lr.first().map_or(0, Vec::len)
}

fn figure(schedules: &[Schedule], title: String) -> Figure {
    let several = schedules.len() > 1;
    let name = |s: &Schedule, g: usize, what: &str| {
        let groups = num_groups(&s.trajectory);
        match (several, groups > 1) {
            (false, false) => what.to_string(),
            (false, true) => format!("{what}, group {g}"),
            (true, false) => s.label.clone(),
            (true, true) => format!("{}, group {g}", s.label),
        }
    };
    let mut lr_lines = Vec::new();
    let mut momentum_lines = Vec::new();
    for s in schedules {
        for g in 0..num_groups(&s.trajectory) {
            lr_lines.push(Line {
                label: name(s, g, "lr"),
                points: s
                    .trajectory
                    .lr
                    .iter()
                    .enumerate()
                    .map(|(t, row)| (t as f64, row[g]))
                    .collect(),
            });
            if momentum_varies(&s.trajectory, g) {
                momentum_lines.push(Line {
                    label: name(s, g, "momentum"),
                    points: s
                        .trajectory
                        .momentum
                        .iter()
                        .enumerate()
                        .filter_map(|(t, row)| row.get(g).copied().flatten().map(|m| (t as f64, m)))
                        .collect(),
                });
            }
        }
    }
    let mut panels = vec![Panel {
        x_label: "scheduler step".into(),
        y_label: "learning rate".into(),
        lines: lr_lines,
    }];
    if !momentum_lines.is_empty() {
        panels.push(Panel {
            x_label: "scheduler step".into(),
            y_label: "momentum".into(),
            lines: momentum_lines,
        });
    }
    Figure { title, panels }
}

/// `step,lr_0,...` (with `s<i>_` prefixes when several schedules are drawn), plus momentum
/// columns for groups whose momentum the scheduler cycles.
fn to_csv(schedules: &[Schedule]) -> String {
    let several = schedules.len() > 1;
    let mut header = String::from("step");
    let mut columns: Vec<(usize, usize, bool)> = Vec::new(); // (schedule, group, momentum?)
    for (i, s) in schedules.iter().enumerate() {
        let prefix = if several {
            format!("s{}_", i + 1)
        } else {
            String::new()
        };
        for g in 0..num_groups(&s.trajectory) {
            let _ = write!(header, ",{prefix}lr_{g}");
            columns.push((i, g, false));
        }
        for g in 0..num_groups(&s.trajectory) {
            if momentum_varies(&s.trajectory, g) {
                let _ = write!(header, ",{prefix}momentum_{g}");
                columns.push((i, g, true));
            }
        }
    }
    let mut out = header;
    out.push('\n');
    let rows = schedules
        .iter()
        .map(|s| s.trajectory.lr.len())
        .max()
        .unwrap_or(0);
    for t in 0..rows {
        let _ = write!(out, "{t}");
        for &(i, g, momentum) in &columns {
            out.push(',');
            let traj = &schedules[i].trajectory;
            let v = if momentum {
                traj.momentum
                    .get(t)
                    .and_then(|r| r.get(g))
                    .copied()
                    .flatten()
            } else {
                traj.lr.get(t).and_then(|r| r.get(g)).copied()
            };
            if let Some(v) = v {
                let _ = write!(out, "{v}");
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(call: &str, lrs: &[f64], steps: usize) -> Schedule {
        let mut spec: SchedulerSpec = call.parse().unwrap();
        fill_total_steps(&mut spec, steps);
        let trajectory = simulate(&spec, &SimulatedGroups::sgd(lrs, 0.9), steps).unwrap();
        Schedule {
            label: call.into(),
            trajectory,
        }
    }

    #[test]
    fn csv_rows_are_the_lr_after_each_step() {
        let s = schedule("StepLR(step_size=2, gamma=0.5)", &[1.0], 4);
        assert_eq!(to_csv(&[s]), "step,lr_0\n0,1\n1,1\n2,0.5\n3,0.5\n4,0.25\n");
    }

    #[test]
    fn csv_has_momentum_columns_when_it_cycles_and_prefixes_for_several() {
        let a = schedule("OneCycleLR(max_lr=0.1)", &[0.1, 0.2], 10);
        let b = schedule("StepLR(step_size=2)", &[0.1, 0.2], 10);
        let csv = to_csv(&[a, b]);
        let header = csv.lines().next().unwrap();
        assert_eq!(
            header,
            "step,s1_lr_0,s1_lr_1,s1_momentum_0,s1_momentum_1,s2_lr_0,s2_lr_1"
        );
        assert_eq!(csv.lines().count(), 12);
    }

    #[test]
    fn spec_files_in_toml_json_and_train_configs() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("s.toml");
        std::fs::write(
            &toml_path,
            "type = \"StepLR\"\n[kwargs]\nstep_size = 3\ngamma = 0.5\n",
        )
        .unwrap();
        let spec = load_spec(&toml_path).unwrap();
        assert_eq!(spec, "StepLR(step_size=3, gamma=0.5)".parse().unwrap());
        let json_path = dir.path().join("s.json");
        std::fs::write(
            &json_path,
            r#"{"type": "SequentialLR", "kwargs": {"milestones": [2]}, "schedulers": [
                {"type": "LinearLR", "kwargs": {"start_factor": 0.5, "total_iters": 2}},
                {"type": "ExponentialLR", "kwargs": {"gamma": 0.9}}]}"#,
        )
        .unwrap();
        assert_eq!(load_spec(&json_path).unwrap().r#type, "SequentialLR");
        let config = dir.path().join("train.toml");
        std::fs::write(&config, crate::config::DEFAULT_CONFIG).unwrap();
        assert_eq!(load_spec(&config).unwrap().r#type, "OneCycleLR");
        std::fs::write(&json_path, "{\"kwargs\": {}}").unwrap();
        let e = load_spec(&json_path).unwrap_err().to_string();
        assert!(e.contains("not a scheduler spec"), "{e}");
    }
}
