//! `cargo xtask bench [--quick] [--vs-torch]`: runs tempo's criterion suites (package
//! `benches`), the allocation probe, and with `--vs-torch` the same workloads in
//! PyTorch; then writes `target/bench/summary.md` and `summary.json`, where every figure
//! is a ratio to a reference measured in the same run (memory bandwidth, PyTorch, the
//! targets).
//!
//! It reads criterion's files (`target/criterion/**/new/{benchmark,estimates}.json`)
//! written after the run started, so results left by an earlier run are never mixed in.
//! The PyTorch side is a Python script embedded below, written to
//! `target/bench/torch_bench.py` and run with `TEMPO_TORCH_PYTHON` (else `python3`).
//!
//! Then the paired rounds: tempo's `bench-pair` (benches/pair.rs) and, with
//! `--vs-torch`, the PyTorch script in server mode are asked for the figures the
//! targets compare (optimizer steps, bandwidth references, scheduler steps, checkpoint
//! save and load), workload by workload, in turn, over several rounds; each side keeps
//! its best. On a shared machine whose memory bandwidth moves 2x within a minute, this is
//! what makes a ratio's two sides comparable. The verdicts use these figures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

const USAGE: &str = "usage: cargo xtask bench [--quick] [--vs-torch] [--summary-only]

  --quick         short measurements and fewer sizes (under 3 minutes)
  --vs-torch      also run the same workloads in PyTorch (TEMPO_TORCH_PYTHON, else python3)
  --summary-only  rebuild the summary from the newest results without running anything";

/// The workloads, in one place: the PyTorch script gets them from here (in its config),
/// and tests below fail when `benches/lib.rs` (tempo's side), the script or tempo's
/// scheduler registry drift from them.
///
/// The schedulers stepped by `sched_step/name=...`.
const SCHEDULERS: &[&str] = &[
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "PolynomialLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "CyclicLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "SWALR",
    "SequentialLR",
    "ChainedScheduler",
    "WarmupCosineLR",
    "WarmupStableDecayLR",
    "InverseSqrtLR",
];

/// Optimizers: benchmark group, display name, bytes moved per f32 parameter and step,
/// and the spec both sides build (PyTorch's class and keyword arguments).
const OPTIMIZERS: &[(&str, &str, f64, &str)] = &[
    (
        "sgd_momentum_step",
        "SGD (momentum 0.9)",
        20.0,
        r#"{"type": "SGD", "kwargs": {"lr": 0.01, "momentum": 0.9}}"#,
    ),
    (
        "adam_step",
        "Adam",
        28.0,
        r#"{"type": "Adam", "kwargs": {"lr": 0.001}}"#,
    ),
    (
        "adamw_step",
        "AdamW",
        28.0,
        r#"{"type": "AdamW", "kwargs": {"lr": 0.001, "weight_decay": 0.01}}"#,
    ),
];

const MIX: &str = "mix/tensors=200,n=10000000";
const BIG: &str = "n=10000000";
const CKPT_N: &str = "n=25178112";

/// PyTorch's side of the comparison.
const TORCH_SCRIPT: &str = include_str!("bench_torch.py");

struct Options {
    quick: bool,
    vs_torch: bool,
    summary_only: bool,
    /// When the run started (progress messages count from it).
    started: SystemTime,
}

pub(crate) fn run(args: &[String]) -> Result<ExitCode> {
    let mut o = Options {
        quick: false,
        vs_torch: false,
        summary_only: false,
        started: SystemTime::now(),
    };
    for a in args {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--vs-torch" => o.vs_torch = true,
            "--summary-only" => o.summary_only = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(ExitCode::SUCCESS);
            }
            other => bail!("unknown option `{other}`\n{USAGE}"),
        }
    }
    let target = target_dir();
    let out = target.join("bench");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let criterion_home = target.join("criterion");
    let scratch = out.join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));

    let started = o.started;
    let since = if o.summary_only {
        SystemTime::UNIX_EPOCH
    } else {
        started
    };
    if !o.summary_only {
        run_criterion(&o, &criterion_home, &scratch)?;
        eprintln!("criterion suites done after {:.0} s", secs(started));
        let mem = run_memory_probe(&o)?;
        std::fs::write(out.join("memory.json"), format!("{mem:#}\n"))?;
        eprintln!("allocation probe done after {:.0} s", secs(started));
        let torch = if o.vs_torch {
            run_torch(&o, &out, &scratch, threads)?
        } else {
            json!({"skipped": "not requested (run with --vs-torch)"})
        };
        std::fs::write(out.join("torch.json"), format!("{torch:#}\n"))?;
        if o.vs_torch {
            eprintln!("PyTorch suites done after {:.0} s", secs(started));
        }
        let torch_python = torch["results"].is_object().then(torch_python);
        let paired = run_pairs(&o, &out, &scratch, threads, torch_python.as_deref())?;
        std::fs::write(out.join("paired.json"), format!("{paired:#}\n"))?;
        eprintln!("all workloads done after {:.0} s", secs(started));
    }
    let tempo = read_criterion(&criterion_home, since)?;
    if tempo.is_empty() {
        bail!(
            "no criterion results under {} (run without --summary-only)",
            criterion_home.display()
        );
    }
    let mem = read_json(&out.join("memory.json")).unwrap_or(Value::Null);
    let torch = read_json(&out.join("torch.json")).unwrap_or(Value::Null);
    let paired = read_json(&out.join("paired.json")).unwrap_or(Value::Null);
    let summary = Summary::build(&tempo, &mem, &torch, &paired, threads, o.quick);
    let md = summary.markdown();
    std::fs::write(out.join("summary.md"), &md)?;
    std::fs::write(out.join("summary.json"), format!("{:#}\n", summary.json))?;
    println!("{md}");
    println!(
        "summary written to {} and summary.json (took {:.0} s)",
        out.join("summary.md").display(),
        secs(started)
    );
    Ok(ExitCode::SUCCESS)
}

fn secs(since: SystemTime) -> f64 {
    since.elapsed().map_or(0.0, |d| d.as_secs_f64())
}

/// Cargo's target directory: `CARGO_TARGET_DIR`, else `target` in the workspace.
fn target_dir() -> PathBuf {
    let root = crate::workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let p = PathBuf::from(d);
            if p.is_absolute() {
                p
            } else {
                root.join(p)
            }
        }
        None => root.join("target"),
    }
}

fn run_criterion(o: &Options, criterion_home: &Path, scratch: &Path) -> Result<()> {
    let mut cmd = crate::cargo();
    cmd.args(["bench", "--package", "benches", "--bench", "main", "--"])
        .env("CRITERION_HOME", criterion_home)
        .env("TEMPO_BENCH_SCRATCH", scratch)
        .env("TEMPO_BENCH_QUICK", if o.quick { "1" } else { "0" });
    eprintln!(
        "running the criterion suites ({})",
        if o.quick { "quick" } else { "full" }
    );
    let status = cmd.status().context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed ({status})");
    }
    Ok(())
}

/// `cargo run` of one of the `benches` package's binaries, with the profile `cargo bench`
/// built the workspace with: nothing to rebuild.
fn bench_bin(name: &str) -> Command {
    let mut cmd = crate::cargo();
    cmd.args([
        "run",
        "--quiet",
        "--profile",
        "bench",
        "--package",
        "benches",
        "--bin",
        name,
    ]);
    cmd
}

/// The PyTorch script (written to `out`) run by `python` with `config`.
fn torch_command(python: &str, out: &Path, config: &Value, threads: usize) -> Result<Command> {
    let script = out.join("torch_bench.py");
    std::fs::write(&script, TORCH_SCRIPT)?;
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg(config.to_string())
        .env("OMP_NUM_THREADS", threads.to_string());
    Ok(cmd)
}

fn run_memory_probe(o: &Options) -> Result<Value> {
    eprintln!("running the allocation probe");
    let output = bench_bin("bench-memory")
        .env("TEMPO_BENCH_QUICK", if o.quick { "1" } else { "0" })
        .stderr(Stdio::inherit())
        .output()
        .context("running the allocation probe")?;
    if !output.status.success() {
        bail!("the allocation probe failed ({})", output.status);
    }
    serde_json::from_slice(&output.stdout).context("reading the allocation probe's JSON")
}

/// The Python that runs the PyTorch side: `TEMPO_TORCH_PYTHON`, else `python3`.
fn torch_python() -> String {
    std::env::var("TEMPO_TORCH_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The PyTorch script's configuration (shapes and sizes in step with benches/lib.rs).
fn torch_config(o: &Options, scratch: &Path, threads: usize) -> Value {
    let sizes: Vec<u64> = if o.quick {
        vec![10_000_000]
    } else {
        vec![1_000, 100_000, 10_000_000]
    };
    json!({
        "quick": o.quick,
        "threads": threads,
        "sizes": sizes,
        "mix": model_mix_sizes(),
        "schedulers": SCHEDULERS,
        "optimizers": OPTIMIZERS
            .iter()
            .map(|&(group, _, _, spec)| {
                let spec: Value = serde_json::from_str(spec).unwrap_or(Value::Null);
                (group.to_string(), spec)
            })
            .collect::<serde_json::Map<String, Value>>(),
        "digits": crate::workspace_root().join("crates/cli/data/digits.csv.gz"),
        "scratch": scratch,
        "ckpt": {"layers": 12, "out": 1024, "in": 2048},
        "pair": {"batch_ms": pair_batch_ms(o), "samples": PAIR_SAMPLES},
        // A quick run's optimizer sizes and checkpoints are all measured in the paired
        // rounds; a full run also has the small sizes, and measures everything twice.
        "suites": if o.quick {
            json!(["sched", "train"])
        } else {
            json!(["optim", "sched", "train", "ckpt"])
        },
    })
}

/// The PyTorch run, or why there is none.
fn run_torch(o: &Options, out: &Path, scratch: &Path, threads: usize) -> Result<Value> {
    let python = torch_python();
    let probe = Command::new(&python)
        .args(["-c", "import torch; print(torch.__version__)"])
        .output();
    match probe {
        Ok(p) if p.status.success() => {}
        Ok(_) => {
            return Ok(json!({"skipped": format!("`import torch` fails with {python}")}));
        }
        Err(e) => return Ok(json!({"skipped": format!("cannot run {python}: {e}")})),
    }
    let config = torch_config(o, scratch, threads);
    eprintln!("running the PyTorch workloads with {python} ({threads} threads)");
    let output = torch_command(&python, out, &config, threads)?
        .stderr(Stdio::inherit())
        .output()
        .context("running the PyTorch script")?;
    if !output.status.success() {
        // tempo's figures stand without PyTorch's: say why the column is empty.
        eprintln!(
            "the PyTorch script failed ({}); its column is skipped",
            output.status
        );
        return Ok(json!({"skipped": format!("the PyTorch script failed ({})", output.status)}));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().last().unwrap_or_default();
    serde_json::from_str(last).context("reading the PyTorch script's JSON")
}

/// Timed batches per workload per round, on both sides.
const PAIR_SAMPLES: u64 = 5;

/// The shortest timed batch of the paired rounds, ms.
fn pair_batch_ms(o: &Options) -> u64 {
    if o.quick {
        30
    } else {
        100
    }
}

/// The workloads of the paired rounds: tempo's id and the PyTorch ids it is compared
/// with (none for the bandwidth references, which pair with tempo's optimizers).
fn paired_workloads() -> Vec<(String, Vec<String>)> {
    let mut w = vec![
        ("bandwidth/triad/n=16777216".to_string(), vec![]),
        ("bandwidth/adam_traffic/n=10000000".to_string(), vec![]),
    ];
    for &(group, _, _, _) in OPTIMIZERS {
        for size in [BIG, MIX] {
            w.push((
                format!("{group}/{size}"),
                vec![format!("{group}/{size}"), format!("{group}_fused/{size}")],
            ));
        }
    }
    for (id, _, _) in candle_pairs().into_iter().chain(burn_pairs()) {
        w.push((id, vec![]));
    }
    for name in SCHEDULERS {
        w.push((format!("sched_step/name={name}"), vec![]));
    }
    for (op, torch_op) in [("save", "torch_save"), ("load", "torch_load")] {
        w.push((
            format!("ckpt/{op}/{CKPT_N}"),
            vec![format!("ckpt/{torch_op}/{CKPT_N}")],
        ));
    }
    w
}

/// The workloads on a framework's parameters: for Adam and AdamW at 1e7 parameters and
/// over the 200-tensor mix, the step through tempo's adapter (ids `{prefix}/...`), with
/// the ids of the same step over tempo's tensors and of the framework's own optimizer
/// (`{own}/...`).
fn framework_pairs(prefix: &str, own: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for group in ["adam_step", "adamw_step"] {
        for size in [BIG, MIX] {
            out.push((
                format!("{prefix}/{group}/{size}"),
                format!("{group}/{size}"),
                format!("{own}/{group}/{size}"),
            ));
        }
    }
    out
}

/// The candle workloads: over candle CPU `Var`s through tempo-candle, against
/// candle-nn's `AdamW`.
fn candle_pairs() -> Vec<(String, String, String)> {
    framework_pairs("candle", "candle_nn")
}

/// The burn workloads: over a burn module's parameters (ndarray backend) through
/// tempo-burn, against burn's own optimizer.
fn burn_pairs() -> Vec<(String, String, String)> {
    framework_pairs("burn", "burn_own")
}

/// The order a round asks for the paired workloads in: [`paired_workloads`], with the
/// Adam-pattern bandwidth reference asked again right before each optimizer workload,
/// so that the reference is measured as often as, and next to, what it bounds (its best
/// is kept, as every figure's).
fn pair_schedule() -> Vec<(String, Vec<String>)> {
    let reference = "bandwidth/adam_traffic/n=10000000";
    let mut out = Vec::new();
    for (id, torch_ids) in paired_workloads() {
        let optimizer = OPTIMIZERS
            .iter()
            .any(|(g, _, _, _)| id.starts_with(&format!("{g}/")));
        if optimizer {
            out.push((reference.to_string(), vec![]));
        }
        let candle = id.starts_with("candle/");
        let burn = id.starts_with("burn/");
        out.push((id.clone(), torch_ids));
        if candle {
            out.push((id.replacen("candle/", "candle_nn/", 1), vec![]));
        }
        if burn {
            out.push((id.replacen("burn/", "burn_own/", 1), vec![]));
        }
    }
    out
}

/// A benchmark server (benches/pair.rs, or the PyTorch script in server mode): asked
/// for one workload id at a time, it answers with one JSON line.
struct Server {
    name: &'static str,
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Server {
    fn spawn(name: &'static str, mut cmd: Command) -> Result<Server> {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().context("no stdout")?);
        Ok(Server {
            name,
            child,
            input,
            output,
        })
    }

    /// The fastest time per call of workload `id`, ns; `None` (reported) if the server
    /// could not run it.
    fn ask(&mut self, id: &str) -> Result<Option<f64>> {
        let input = self.input.as_mut().context("server closed")?;
        writeln!(input, "{id}")?;
        input.flush()?;
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            bail!("{} stopped answering (asked for {id})", self.name);
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}'s answer for {id}: {line}", self.name))?;
        if let Some(e) = v["error"].as_str() {
            eprintln!("{}: {id}: {e}", self.name);
            return Ok(None);
        }
        Ok(v["ns"].as_f64())
    }

    fn finish(mut self) -> Result<()> {
        drop(self.input.take());
        let status = self.child.wait()?;
        if !status.success() {
            bail!("{} failed ({status})", self.name);
        }
        Ok(())
    }
}

/// The paired rounds: tempo's `bench-pair` and, with `python`, the PyTorch script in
/// server mode run side by side; every round asks each of them for every paired
/// workload in turn (who goes first alternates), so the two sides of a ratio are
/// measured seconds apart. Each side's figure is its best over the rounds.
fn run_pairs(
    o: &Options,
    out: &Path,
    scratch: &Path,
    threads: usize,
    python: Option<&str>,
) -> Result<Value> {
    let rounds = if o.quick { 3 } else { 5 };
    eprintln!("running the paired rounds ({rounds})");
    let mut cmd = bench_bin("bench-pair");
    cmd.env("TEMPO_BENCH_SCRATCH", scratch)
        .env("TEMPO_PAIR_BATCH_MS", pair_batch_ms(o).to_string())
        .env("TEMPO_PAIR_SAMPLES", PAIR_SAMPLES.to_string());
    let mut tempo = Server::spawn("bench-pair", cmd)?;
    let mut torch = match python {
        Some(python) => {
            let mut config = torch_config(o, scratch, threads);
            config["serve"] = json!(true);
            let cmd = torch_command(python, out, &config, threads)?;
            Some(Server::spawn("the PyTorch script", cmd)?)
        }
        None => None,
    };
    let mut best_tempo: BTreeMap<String, f64> = BTreeMap::new();
    let mut best_torch: BTreeMap<String, f64> = BTreeMap::new();
    let keep = |best: &mut BTreeMap<String, f64>, id: &str, ns: Option<f64>| {
        if let Some(ns) = ns {
            let slot = best.entry(id.to_string()).or_insert(f64::INFINITY);
            *slot = slot.min(ns);
        }
    };
    for round in 0..rounds {
        for (id, torch_ids) in pair_schedule() {
            let torch_first = round % 2 == 1;
            if !torch_first {
                keep(&mut best_tempo, &id, tempo.ask(&id)?);
            }
            if let Some(t) = torch.as_mut() {
                for tid in &torch_ids {
                    keep(&mut best_torch, tid, t.ask(tid)?);
                }
            }
            if torch_first {
                keep(&mut best_tempo, &id, tempo.ask(&id)?);
            }
        }
        eprintln!(
            "paired round {} of {rounds} done after {:.0} s",
            round + 1,
            secs(o.started)
        );
    }
    tempo.finish()?;
    if let Some(t) = torch {
        t.finish()?;
    }
    Ok(json!({
        "rounds": rounds,
        "batch_ms": pair_batch_ms(o),
        "samples": PAIR_SAMPLES,
        "tempo": best_tempo,
        "torch": best_torch,
    }))
}

/// benches/lib.rs's `model_mix_sizes`, for the PyTorch script.
fn model_mix_sizes() -> Vec<usize> {
    let (tensors, total, small) = (200, 10_000_000, 1024);
    let pairs = tensors / 2;
    let rest = total - pairs * small;
    let weights: Vec<usize> = (0..pairs).map(|k| 1 + (7 * k) % 13).collect();
    let sum: usize = weights.iter().sum();
    let mut sizes = Vec::with_capacity(tensors);
    let mut given = 0;
    for (k, &w) in weights.iter().enumerate() {
        let n = if k + 1 == pairs {
            rest - given
        } else {
            rest * w / sum
        };
        given += n;
        sizes.push(n);
        sizes.push(small);
    }
    sizes
}

fn read_json(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// One criterion result.
#[derive(Debug, Clone)]
struct Measured {
    /// The fastest sample's time per iteration, ns.
    ns: f64,
    /// Criterion's median time per iteration, ns.
    median: f64,
    /// Criterion's throughput: elements or bytes per iteration.
    elements: Option<f64>,
    bytes: Option<f64>,
}

/// Every benchmark under `home` whose `new/estimates.json` was written after `since`.
fn read_criterion(home: &Path, since: SystemTime) -> Result<BTreeMap<String, Measured>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !p.is_dir() {
                continue;
            }
            if p.file_name().is_some_and(|n| n == "new") {
                let est = p.join("estimates.json");
                let fresh = std::fs::metadata(&est)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= since);
                if !fresh {
                    continue;
                }
                let (Ok(b), Ok(es)) = (read_json(&p.join("benchmark.json")), read_json(&est))
                else {
                    continue;
                };
                let Some(id) = b["full_id"].as_str() else {
                    continue;
                };
                let Some(median) = es["median"]["point_estimate"].as_f64() else {
                    continue;
                };
                // The fastest sample: on a shared machine, other work only ever adds time.
                let ns = read_json(&p.join("sample.json"))
                    .ok()
                    .and_then(|s| {
                        let iters = s["iters"].as_array()?;
                        let times = s["times"].as_array()?;
                        iters
                            .iter()
                            .zip(times)
                            .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64()?))
                            .reduce(f64::min)
                    })
                    .unwrap_or(median);
                out.insert(
                    id.to_string(),
                    Measured {
                        ns,
                        median,
                        elements: b["throughput"]["Elements"].as_f64(),
                        bytes: b["throughput"]["Bytes"].as_f64(),
                    },
                );
            } else {
                stack.push(p);
            }
        }
    }
    Ok(out)
}

/// A target's verdict.
struct Verdict {
    target: String,
    measured: String,
    met: Option<bool>,
    note: String,
}

struct Summary {
    md: String,
    json: Value,
}

fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "—".into()
    } else if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() => {
            if r >= 100.0 {
                format!("{r:.0}×")
            } else if r >= 10.0 {
                format!("{r:.1}×")
            } else {
                format!("{r:.2}×")
            }
        }
        _ => "—".into(),
    }
}

fn fmt_frac(r: Option<f64>) -> String {
    r.filter(|r| r.is_finite())
        .map_or("—".into(), |r| format!("{:.0}%", r * 100.0))
}

fn mark(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    }
}

impl Summary {
    fn build(
        tempo: &BTreeMap<String, Measured>,
        mem: &Value,
        torch: &Value,
        paired: &Value,
        threads: usize,
        quick: bool,
    ) -> Summary {
        let t = |id: &str| tempo.get(id);
        // The paired rounds (when they ran): each side's best, measured in turn.
        let has_pairs = paired["tempo"].is_object();
        let pair_tempo = |id: &str| paired["tempo"][id].as_f64();
        let pair_torch = |id: &str| paired["torch"][id].as_f64();
        let pair_note = format!(
            "paired rounds: best of {} on each side, measured in turn",
            paired["rounds"]
        );
        let torch_results = &torch["results"];
        let has_torch = torch_results.is_object();
        // PyTorch's figure for `id`: from the paired rounds when they measured it, else
        // from the PyTorch suites.
        let pt = |id: &str| {
            paired["torch"][id]
                .as_f64()
                .or_else(|| torch_results[id]["ns"].as_f64())
        };
        // PyTorch's time over tempo's: both from the paired rounds when both were measured
        // there (seconds apart), else PyTorch's figure over `tempo_ns` (the suites').
        let vs = |tempo_id: &str, torch_id: &str, tempo_ns: f64| match (
            paired["tempo"][tempo_id].as_f64(),
            pt(torch_id),
        ) {
            (Some(a), Some(b)) if paired["torch"][torch_id].is_number() => Some(b / a),
            (_, b) => b.map(|p| p / tempo_ns),
        };
        let mut md = String::new();
        let mut verdicts: Vec<Verdict> = Vec::new();
        let mut rows_json = Vec::new();

        let _ = writeln!(md, "# tempo benchmarks\n");
        let _ = writeln!(
            md,
            "Measured in one run of `cargo xtask bench{}{}` on {} thread(s); every ratio \
             compares figures from this same run. Times are the fastest sample per iteration on \
             each side (criterion's samples for tempo, timed batches for PyTorch): the machine is \
             shared, and other work only ever adds time. Medians are in summary.json. The \
             verdicts under Targets use the paired rounds (see that section) where they measured \
             the figure: both sides of a ratio measured seconds apart, best of several rounds.",
            if quick { " --quick" } else { "" },
            if has_torch { " --vs-torch" } else { "" },
            threads
        );
        if has_torch {
            let _ = writeln!(
                md,
                "PyTorch {} with torch.set_num_threads({}).\n",
                torch["torch_version"].as_str().unwrap_or("?"),
                torch["threads"]
            );
        } else {
            let _ = writeln!(
                md,
                "PyTorch column skipped: {}.\n",
                torch["skipped"].as_str().unwrap_or("no PyTorch results")
            );
        }

        // Memory bandwidth.
        let bw = |id: &str| t(id).and_then(|m| m.bytes.map(|b| b / m.ns)); // GB/s
        let triad = bw("bandwidth/triad/n=16777216");
        let traffic = bw("bandwidth/adam_traffic/n=10000000");
        let mix_per_tensor = bw("bandwidth/adam_traffic_mix/per_tensor");
        let mix_one_join = bw("bandwidth/adam_traffic_mix/one_fork_join");
        let bound = match (triad, traffic) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let pair_bw = |id: &str, bytes: f64| pair_tempo(id).map(|ns| bytes / ns);
        let pair_triad = pair_bw("bandwidth/triad/n=16777216", 12.0 * 16_777_216.0);
        let pair_traffic = pair_bw("bandwidth/adam_traffic/n=10000000", 28.0 * 1e7);
        let pair_bound = match (pair_triad, pair_traffic) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let _ = writeln!(md, "## Memory bandwidth (the reference)\n");
        let _ = writeln!(md, "| kernel | GB/s |\n|---|---:|");
        let _ = writeln!(
            md,
            "| STREAM triad `a = b + s·c`, 3 × 64 MiB, 12 B/element | {} |",
            triad.map_or("—".into(), |v| format!("{v:.1}"))
        );
        let _ = writeln!(
            md,
            "| Adam's access pattern without arithmetic (read 4, write 3 in place), 4 × 40 MB (the 1e7 optimizer working set), 28 B/element | {} |",
            traffic.map_or("—".into(), |v| format!("{v:.1}"))
        );
        let _ = writeln!(
            md,
            "| the same over the model-shaped mix, a fork-join per tensor (tempo-optim's threading) | {} |",
            mix_per_tensor.map_or("—".into(), |v| format!("{v:.1}"))
        );
        let _ = writeln!(
            md,
            "| the same over the model-shaped mix, one fork-join per step over all tensors | {} |",
            mix_one_join.map_or("—".into(), |v| format!("{v:.1}"))
        );
        let _ = writeln!(
            md,
            "\nThe bound below is the higher of the first two: {} GB/s. An optimizer's fraction of it is \
             (bytes per parameter × parameters/s) / bound.\n",
            bound.map_or("—".into(), |v| format!("{v:.1}"))
        );

        // Optimizers.
        let _ = writeln!(md, "## Optimizer step, f32\n");
        let _ = writeln!(
            md,
            "| optimizer | parameters | tempo | G params/s | of bandwidth bound | vs PyTorch default | vs PyTorch fused |\n|---|---|---:|---:|---:|---:|---:|"
        );
        for &(group, label, bpp, _) in OPTIMIZERS {
            let ids: Vec<String> = tempo
                .keys()
                .filter(|k| k.starts_with(&format!("{group}/")))
                .cloned()
                .collect();
            let mut ids = ids;
            ids.sort_by_key(|k| {
                let tail = k.rsplit_once('/').map_or("", |(_, t)| t);
                (
                    k.contains("/mix/"),
                    tail.trim_start_matches("n=").parse::<u64>().unwrap_or(0),
                )
            });
            for id in &ids {
                let Some(m) = t(id) else { continue };
                let n = m.elements.unwrap_or(0.0);
                let rate = n / m.ns; // G params/s
                let frac = bound.map(|b| rate * bpp / b);
                let param = id.split_once('/').map_or("", |(_, p)| p);
                let vs_default = vs(id, id, m.ns);
                let fused_id = format!("{group}_fused/{param}");
                let vs_fused = vs(id, &fused_id, m.ns);
                let _ = writeln!(
                    md,
                    "| {label} | {param} | {} | {rate:.2} | {} | {} | {} |",
                    fmt_ns(m.ns),
                    fmt_frac(frac),
                    fmt_ratio(vs_default),
                    fmt_ratio(vs_fused)
                );
                rows_json.push(json!({
                    "id": id, "ns": m.ns, "gparams_per_s": rate, "bandwidth_fraction": frac,
                    "vs_torch_default": vs_default, "vs_torch_fused": vs_fused,
                    "torch_default_ns": pt(id), "torch_fused_ns": pt(&fused_id),
                }));
            }
            // The verdicts use the paired rounds' figures when they ran, else the suites'.
            let (big_id, mix_id) = (format!("{group}/{BIG}"), format!("{group}/{MIX}"));
            let fused_id = format!("{group}_fused/{BIG}");
            let (big, mix, fused, bd, note) = if has_pairs {
                (
                    pair_tempo(&big_id),
                    pair_tempo(&mix_id),
                    pair_torch(&fused_id),
                    pair_bound,
                    pair_note.clone(),
                )
            } else {
                (
                    t(&big_id).map(|m| m.ns),
                    t(&mix_id).map(|m| m.ns),
                    pt(&fused_id),
                    bound,
                    String::new(),
                )
            };
            if let Some(b) = big {
                let frac = bd.map(|bd| 1e7 / b * bpp / bd);
                verdicts.push(Verdict {
                    target: format!("{label}, 1e7 parameters: ≥ 0.9 of the bandwidth bound"),
                    measured: fmt_frac(frac),
                    met: frac.map(|f| f >= 0.9),
                    note: note.clone(),
                });
                let fused = fused.map(|p| p / b);
                verdicts.push(Verdict {
                    target: format!("{label}, 1e7 parameters: ≥ PyTorch fused"),
                    measured: fmt_ratio(fused),
                    met: fused.map(|r| r >= 1.0),
                    note: match fused {
                        Some(_) => note.clone(),
                        None if has_torch => "PyTorch has no fused variant here".into(),
                        None => String::new(),
                    },
                });
            }
            if let (Some(b), Some(m)) = (big, mix) {
                let r = b / m;
                verdicts.push(Verdict {
                    target: format!("{label}: model-shaped mix within 10% of one tensor"),
                    measured: format!("{:.0}% of one tensor's throughput", r * 100.0),
                    met: Some(r >= 0.9),
                    note,
                });
            }
        }

        // Schedulers.
        let _ = writeln!(md, "\n## Scheduler step (on an Adam optimizer's groups)\n");
        let _ = writeln!(
            md,
            "| scheduler | tempo `step` | vs 50 ns target | PyTorch `step` | speed-up vs PyTorch | tempo `lr_at` |\n|---|---:|---:|---:|---:|---:|"
        );
        let mut worst: Option<(String, f64)> = None;
        let mut worst_paired: Option<(String, f64)> = None;
        for name in SCHEDULERS {
            let id = format!("sched_step/name={name}");
            if let Some(ns) = pair_tempo(&id) {
                if worst_paired.as_ref().is_none_or(|(_, w)| ns > *w) {
                    worst_paired = Some((name.to_string(), ns));
                }
            }
            let Some(m) = t(&id) else { continue };
            let lr_at = t(&format!("sched_lr_at/name={name}")).map(|m| m.ns);
            let p = pt(&id);
            let _ = writeln!(
                md,
                "| {name} | {} | {} | {} | {} | {} |",
                fmt_ns(m.ns),
                fmt_ratio(Some(m.ns / 50.0)),
                p.map_or("—".into(), fmt_ns),
                fmt_ratio(p.map(|p| p / m.ns)),
                lr_at.map_or("—".into(), fmt_ns)
            );
            rows_json.push(json!({"id": id, "ns": m.ns, "torch_ns": p, "lr_at_ns": lr_at}));
            if worst.as_ref().is_none_or(|(_, w)| m.ns > *w) {
                worst = Some((name.to_string(), m.ns));
            }
        }
        let (worst, note) = match worst_paired {
            Some(w) => (Some(w), pair_note.clone()),
            None => (worst, String::new()),
        };
        if let Some((name, ns)) = &worst {
            verdicts.push(Verdict {
                target: "every scheduler step < 50 ns".into(),
                measured: format!(
                    "slowest {name}: {} ({:.1}× the target)",
                    fmt_ns(*ns),
                    ns / 50.0
                ),
                met: Some(*ns < 50.0),
                note,
            });
        }

        // Training loops.
        let _ = writeln!(md, "\n## Training loops\n");
        let _ = writeln!(
            md,
            "| workload | tempo | PyTorch | speed-up |\n|---|---:|---:|---:|"
        );
        for (id, label) in [
            (
                "train/seed_iteration",
                "seed iteration: 2-20-20-4 net, zero_grad, forward, loss, backward, Adam, CyclicLR",
            ),
            (
                "train/digits_epoch/batch=32",
                "one epoch of default `tempo train` (64-128-10 MLP, AdamW + OneCycleLR, 45 batches of 32 digits)",
            ),
        ] {
            let Some(m) = t(id) else { continue };
            let p = pt(id);
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} |",
                fmt_ns(m.ns),
                p.map_or("—".into(), fmt_ns),
                fmt_ratio(p.map(|p| p / m.ns))
            );
            rows_json.push(json!({"id": id, "ns": m.ns, "torch_ns": p}));
            if id == "train/seed_iteration" {
                let r = p.map(|p| p / m.ns);
                verdicts.push(Verdict {
                    target: "seed iteration ≥ 50× faster than PyTorch".into(),
                    measured: fmt_ratio(r),
                    met: r.map(|r| r >= 50.0),
                    note: String::new(),
                });
            }
        }

        // Checkpoints.
        let _ = writeln!(
            md,
            "\n## Checkpoints: 25.2M-parameter model with Adam state (302 MB of tensors)\n"
        );
        let _ = writeln!(
            md,
            "| operation | tempo | GB/s | of its file-system bound | PyTorch | GB/s | speed-up |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        let raw = |op: &str| t(&format!("ckpt/{op}/{CKPT_N}")).map(|m| m.ns);
        let (disk_write, disk_fsync, disk_read) =
            (raw("disk_write"), raw("disk_write_fsync"), raw("disk_read"));
        let torch_save = pt(&format!("ckpt/torch_save/{CKPT_N}"));
        let torch_load = pt(&format!("ckpt/torch_load/{CKPT_N}"));
        for (op, label, reference, bound, target) in [
            (
                "save",
                "tempo format save (atomic: fsync + rename)",
                torch_save,
                disk_fsync,
                Some(2.0),
            ),
            (
                "save_nosync",
                "  the general path: `to_object` tree + `write_tempo`, no fsync",
                torch_save,
                disk_write,
                None,
            ),
            (
                "to_object",
                "  of that: `TrainingState::to_object` (a copy of every tensor; `save` makes none)",
                None,
                None,
                None,
            ),
            (
                "load",
                "tempo format load (checksummed, validated)",
                torch_load,
                disk_read,
                Some(3.0),
            ),
            (
                "pt_save",
                "`.pt` write (`write_pt`)",
                torch_save,
                disk_write,
                None,
            ),
            (
                "pt_load",
                "`.pt` read (`read_pt` + `TrainingState::try_from`, no copy)",
                torch_load,
                disk_read,
                None,
            ),
            (
                "disk_write",
                "reference: write 302 MB to a file",
                None,
                None,
                None,
            ),
            (
                "disk_write_fsync",
                "reference: write 302 MB to a file + fsync",
                None,
                None,
                None,
            ),
            (
                "disk_read",
                "reference: read 302 MB from a cached file",
                None,
                None,
                None,
            ),
        ] {
            let id = format!("ckpt/{op}/{CKPT_N}");
            let Some(m) = t(&id) else { continue };
            let gbs = m.bytes.map(|b| b / m.ns);
            let pgbs = reference.and_then(|p| m.bytes.map(|b| b / p));
            let torch_op = if op.ends_with("save") || op == "save_nosync" {
                "torch_save"
            } else {
                "torch_load"
            };
            let r = reference.and(vs(&id, &format!("ckpt/{torch_op}/{CKPT_N}"), m.ns));
            let _ = writeln!(
                md,
                "| {label} | {} | {} | {} | {} | {} | {} |",
                fmt_ns(m.ns),
                gbs.map_or("—".into(), |v| format!("{v:.2}")),
                fmt_frac(bound.map(|b| b / m.ns)),
                reference.map_or("—".into(), fmt_ns),
                pgbs.map_or("—".into(), |v| format!("{v:.2}")),
                fmt_ratio(r)
            );
            rows_json.push(json!({"id": id, "ns": m.ns, "gb_per_s": gbs, "torch_ns": reference}));
            if let Some(x) = target {
                let torch_op = if op == "save" { "save" } else { "load" };
                let (r, note) = if has_pairs {
                    let ours = pair_tempo(&id);
                    let theirs = pair_torch(&format!("ckpt/torch_{torch_op}/{CKPT_N}"));
                    let r = ours.zip(theirs).map(|(a, b)| b / a);
                    (
                        r,
                        if r.is_some() {
                            pair_note.clone()
                        } else {
                            String::new()
                        },
                    )
                } else {
                    (r, String::new())
                };
                verdicts.push(Verdict {
                    target: format!("checkpoint {op} ≥ {x}× torch.{torch_op}"),
                    measured: fmt_ratio(r),
                    met: r.map(|r| r >= x),
                    note,
                });
            }
        }

        // Memory.
        let _ = writeln!(
            md,
            "\n## Allocations and peak memory (counting allocator)\n"
        );
        let _ = writeln!(
            md,
            "| optimizer | workload | allocations per steady step | peak of first step / (params + grads + state) | peak of a steady step / (params + grads + state) |\n|---|---|---:|---:|---:|"
        );
        let mut max_allocs: f64 = 0.0;
        let mut adam_peak: f64 = 0.0;
        if let Some(rows) = mem["optim"].as_array() {
            for r in rows {
                let allocs = r["allocs_per_step"].as_f64().unwrap_or(f64::NAN);
                let first = r["first_step_peak_ratio"].as_f64().unwrap_or(f64::NAN);
                let steady = r["steady_step_peak_ratio"].as_f64().unwrap_or(f64::NAN);
                let opt = r["optimizer"].as_str().unwrap_or("?");
                let workload = r["workload"].as_str().unwrap_or("?");
                let _ = writeln!(
                    md,
                    "| {opt} | {workload} | {allocs} | {first:.3} | {steady:.3} |"
                );
                max_allocs = max_allocs.max(allocs);
                if opt == "adam_step" && workload != "n=1000" {
                    adam_peak = adam_peak.max(first).max(steady);
                }
            }
            let _ = writeln!(
                md,
                "\nThe seed iteration allocates {} times; scheduler steps allocate {}.",
                mem["seed_iteration_allocs"],
                mem["sched"]
                    .as_array()
                    .map(|s| {
                        let v: Vec<f64> = s
                            .iter()
                            .filter_map(|x| x["allocs_per_step"].as_f64())
                            .collect();
                        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = v.iter().copied().fold(0.0, f64::max);
                        format!("{lo}–{hi} times per step")
                    })
                    .unwrap_or_else(|| "?".into())
            );
            verdicts.push(Verdict {
                target: "no allocation per optimizer step in steady state".into(),
                measured: format!("at most {max_allocs} per step"),
                met: Some(max_allocs == 0.0),
                note: String::new(),
            });
            verdicts.push(Verdict {
                target: "peak memory of an Adam step ≤ 1.10 × (params + grads + state)".into(),
                measured: format!("{adam_peak:.3}×"),
                met: Some(adam_peak <= 1.10),
                note: String::new(),
            });
        } else {
            let _ = writeln!(md, "(the allocation probe did not run)");
        }

        // Paired rounds.
        if has_pairs {
            let _ = writeln!(md, "\n## Paired rounds\n");
            let with_torch = paired["torch"].as_object().is_some_and(|m| !m.is_empty());
            let _ = writeln!(
                md,
                "The figures the targets compare, measured again in {} rounds in which {} \
                 asked for each workload in turn, so both sides of a ratio are measured seconds \
                 apart; each figure is that side's best over the rounds (batches of at least {} \
                 ms, {} per round). The bandwidth bound here is {} GB/s.\n",
                paired["rounds"],
                if with_torch {
                    "tempo's `bench-pair` and the PyTorch script (as a server) are"
                } else {
                    "tempo's `bench-pair` (alone: run with `--vs-torch` for PyTorch's side) is"
                },
                paired["batch_ms"],
                paired["samples"],
                pair_bound.map_or("—".into(), |v| format!("{v:.1}"))
            );
            let _ = writeln!(
                md,
                "| workload | tempo | of bandwidth bound | PyTorch | speed-up | PyTorch fused | speed-up |\n|---|---:|---:|---:|---:|---:|---:|"
            );
            for (id, torch_ids) in paired_workloads() {
                let Some(ns) = pair_tempo(&id) else { continue };
                let bpp = OPTIMIZERS
                    .iter()
                    .find(|(g, _, _, _)| id.starts_with(&format!("{g}/")))
                    .map(|&(_, _, b, _)| b);
                let frac = bpp.zip(pair_bound).map(|(b, bd)| 1e7 / ns * b / bd);
                let theirs = |i: usize| torch_ids.get(i).and_then(|t| pair_torch(t));
                let _ = writeln!(
                    md,
                    "| {id} | {} | {} | {} | {} | {} | {} |",
                    fmt_ns(ns),
                    fmt_frac(frac),
                    theirs(0).map_or("—".into(), fmt_ns),
                    fmt_ratio(theirs(0).map(|p| p / ns)),
                    theirs(1).map_or("—".into(), fmt_ns),
                    fmt_ratio(theirs(1).map(|p| p / ns)),
                );
            }
        }

        // On candle and on burn: (json key, the framework's own side's key, heading,
        // paragraph, table header, workloads).
        let frameworks = [
            (
                "candle",
                "candle_nn",
                "On candle",
                "An optimizer step over candle CPU `Var`s through tempo-candle (in place), against \
                 the same step over tempo's own tensors (goal: at least 0.95) and candle-nn's own \
                 `AdamW` on the same variables (Adam: weight decay 0).",
                "| workload | on candle | on tensors | tensors / candle | candle-nn AdamW | speed-up over candle-nn |",
                candle_pairs(),
            ),
            (
                "burn",
                "burn_own",
                "On burn",
                "An optimizer step over a burn module's f32 parameters (ndarray backend) through \
                 tempo-burn (each parameter copied to host memory and back), against the same \
                 step over tempo's own tensors and burn's own `Adam`/`AdamW` (eps 1e-8) on the \
                 same parameters.",
                "| workload | through tempo-burn | on tensors | tensors / burn | burn's own | burn's own / tempo-burn |",
                burn_pairs(),
            ),
        ];
        for (key, own_key, heading, paragraph, header, pairs) in frameworks {
            if !has_pairs || !pairs.iter().any(|(id, _, _)| pair_tempo(id).is_some()) {
                continue;
            }
            let _ = writeln!(md, "\n## {heading} (paired rounds)\n");
            let _ = writeln!(md, "{paragraph}\n");
            let _ = writeln!(md, "{header}\n|---|---:|---:|---:|---:|---:|");
            let mut rows = Vec::new();
            for (id, tensors, own) in pairs {
                let Some(ns) = pair_tempo(&id) else { continue };
                let (t, o) = (pair_tempo(&tensors), pair_tempo(&own));
                let _ = writeln!(
                    md,
                    "| {id} | {} | {} | {} | {} | {} |",
                    fmt_ns(ns),
                    t.map_or("—".into(), fmt_ns),
                    fmt_ratio(t.map(|t| t / ns)),
                    o.map_or("—".into(), fmt_ns),
                    fmt_ratio(o.map(|o| o / ns)),
                );
                let mut row = serde_json::Map::new();
                row.insert("id".into(), json!(id));
                row.insert(format!("{key}_ns"), json!(ns));
                row.insert("tensors_ns".into(), json!(t));
                row.insert(format!("{own_key}_ns"), json!(o));
                row.insert(format!("tensors_over_{key}"), json!(t.map(|t| t / ns)));
                row.insert(format!("{own_key}_over_{key}"), json!(o.map(|o| o / ns)));
                rows.push(serde_json::Value::Object(row));
            }
            rows_json.push(json!({ key: rows }));
        }

        // Targets.
        let _ = writeln!(md, "\n## Targets\n");
        let _ = writeln!(md, "| target | measured | verdict |\n|---|---|---|");
        for v in &verdicts {
            let note = if v.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.note)
            };
            let _ = writeln!(
                md,
                "| {} | {}{note} | {} |",
                v.target,
                v.measured,
                mark(v.met)
            );
        }

        let json = json!({
            "quick": quick,
            "threads": threads,
            "bandwidth_gb_per_s": {
                "triad": triad, "adam_traffic": traffic, "bound": bound,
                "adam_traffic_mix_per_tensor": mix_per_tensor,
                "adam_traffic_mix_one_fork_join": mix_one_join,
            },
            "torch": if has_torch {
                json!({"version": torch["torch_version"], "threads": torch["threads"]})
            } else {
                json!({"skipped": torch["skipped"]})
            },
            "rows": rows_json,
            "paired": paired,
            "memory": mem,
            "targets": verdicts.iter().map(|v| json!({
                "target": v.target, "measured": v.measured, "met": v.met,
            })).collect::<Vec<_>>(),
            "tempo_raw": tempo.iter().map(|(k, m)| (k.clone(), json!({
                "ns": m.ns, "median_ns": m.median, "elements": m.elements, "bytes": m.bytes,
            }))).collect::<serde_json::Map<_, _>>(),
            "torch_raw": torch_results,
        });
        Summary { md, json }
    }

    fn markdown(&self) -> String {
        self.md.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    /// The workload tables are the one list: tempo's side (`benches/lib.rs`) builds
    /// the same optimizer specs and schedulers, every scheduler is one of tempo's
    /// registry, and the PyTorch script builds every one (or says it has no class).
    fn workload_tables_match_tempo_and_the_script() {
        let root = crate::workspace_root();
        let read = |p: &str| std::fs::read_to_string(root.join(p)).expect(p);
        let benches = read("benches/lib.rs");
        let registry = read("crates/sched/src/spec.rs");
        for &(group, _, _, spec) in OPTIMIZERS {
            assert!(benches.contains(group), "benches/lib.rs has no {group}");
            assert!(
                benches.contains(spec),
                "benches/lib.rs builds {group} otherwise"
            );
            let spec: Value = serde_json::from_str(spec).expect("a JSON spec");
            assert!(spec["type"].is_string(), "{group}: {spec}");
        }
        for name in SCHEDULERS {
            let quoted = format!("\"{name}\"");
            assert!(
                benches.contains(&format!("{quoted},")),
                "benches/lib.rs has no {name}"
            );
            assert!(
                registry.contains(&format!("{quoted} =>")),
                "{name} is not registered"
            );
            assert!(
                TORCH_SCRIPT.contains(&quoted),
                "the PyTorch script does not know {name}"
            );
        }
    }

    #[test]
    fn mix_sizes_add_up() {
        let s = model_mix_sizes();
        assert_eq!(s.len(), 200);
        assert_eq!(s.iter().sum::<usize>(), 10_000_000);
        assert!(s.iter().all(|&n| n >= 1024));
    }

    #[test]
    fn ratios_format() {
        assert_eq!(fmt_ratio(Some(2.5)), "2.50×");
        assert_eq!(fmt_ratio(Some(55.0)), "55.0×");
        assert_eq!(fmt_ratio(None), "—");
        assert_eq!(fmt_ns(430_000.0), "430.0 µs");
    }
}
