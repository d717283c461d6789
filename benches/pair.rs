//! `bench-pair`: tempo's side of the paired rounds of `cargo xtask bench`.
//!
//! On a shared machine, two measurements taken a minute apart can differ by 2x: the
//! neighbours' load moves. Ratios whose two sides are measured at different times
//! (tempo's criterion suites, then PyTorch's script) inherit that noise. For the
//! figures whose targets are ratios, xtask therefore runs this server and PyTorch's
//! script in server mode side by side, and asks them in turn, workload by workload,
//! round after round; each side's figure is its best over the rounds, and the two sides
//! of a ratio were measured seconds apart.
//!
//! The rounds also measure what has an absolute target (a scheduler step), so that its
//! figure is the best of measurements spread over the run rather than of one moment.
//!
//! Protocol: one workload id per line on stdin (the criterion ids: `adam_step/n=10000000`,
//! `bandwidth/adam_traffic/n=10000000`, `sched_step/name=OneCycleLR`,
//! `ckpt/load/n=25178112`, and the candle workloads `candle/adam_step/n=10000000`
//! (tempo over candle `Var`s) and `candle_nn/adam_step/n=10000000` (candle-nn's AdamW),
//! the burn workloads `burn/adam_step/...` (tempo through tempo-burn) and
//! `burn_own/adam_step/...` (burn's own Adam/AdamW), ...); one JSON line per
//! id on stdout: `{"id", "ns", "iters"}` (the fastest batch's time per call) or
//! `{"id", "error"}`. Workloads are built on first use and kept. Timing is the same as
//! the PyTorch side's: a batch of calls lasting at least `TEMPO_PAIR_BATCH_MS` (30 ms),
//! `TEMPO_PAIR_SAMPLES` (5) batches, the fastest.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use benches::burn::{BurnSide, BurnWorkload};
use benches::candle::{CandleSide, CandleWorkload};
use benches::{OptKind, OptWorkload, Result, SchedWorkload, MIX_TENSORS, MIX_TOTAL};
use serde_json::json;
use tempo::ckpt::{load, save, TrainingState};

/// Elements per triad array (as in the criterion suite).
const TRIAD_N: usize = 1 << 24;
/// Elements per array of the Adam-pattern reference.
const ADAM_N: usize = 10_000_000;

/// Whose parameters a step workload updates.
enum Side {
    Tensors,
    Candle(CandleSide),
    Burn(BurnSide),
}

enum Work {
    Triad(Vec<f32>, Vec<f32>, Vec<f32>),
    Traffic([Vec<f32>; 4]),
    Opt(OptWorkload),
    Candle(CandleWorkload),
    Burn(BurnWorkload),
    Sched(SchedWorkload),
    Save(Rc<TrainingState>, PathBuf),
    Load(PathBuf),
}

impl Work {
    /// The workload `id`; the checkpoint workloads share one training state (`state`,
    /// built on first use).
    fn new(id: &str, state: &mut Option<Rc<TrainingState>>) -> Result<Work> {
        let ckpt_n = benches::ckpt_params();
        if id == format!("bandwidth/triad/n={TRIAD_N}") {
            let b = benches::normal(TRIAD_N, 1, 1.0).into_raw_vec_and_offset().0;
            let c = benches::normal(TRIAD_N, 2, 1.0).into_raw_vec_and_offset().0;
            return Ok(Work::Triad(vec![0.0; TRIAD_N], b, c));
        }
        if id == format!("bandwidth/adam_traffic/n={ADAM_N}") {
            return Ok(Work::Traffic([
                vec![0.5; ADAM_N],
                vec![1e-9; ADAM_N],
                vec![0.0; ADAM_N],
                vec![0.0; ADAM_N],
            ]));
        }
        if id == format!("ckpt/save/n={ckpt_n}") || id == format!("ckpt/load/n={ckpt_n}") {
            let state = match state {
                Some(s) => Rc::clone(s),
                None => Rc::clone(state.insert(Rc::new(benches::big_training_state()?))),
            };
            let op = if id.starts_with("ckpt/save/") {
                "save"
            } else {
                "load"
            };
            let path = benches::scratch_dir()?.join(format!("pair-{op}-25m.tempo"));
            save(&path, &state)?;
            return Ok(if op == "save" {
                Work::Save(state, path)
            } else {
                Work::Load(path)
            });
        }
        if let Some(name) = id.strip_prefix("sched_step/name=") {
            for (n, spec) in benches::scheduler_specs()? {
                if n == name {
                    return Ok(Work::Sched(SchedWorkload::new(&spec)?));
                }
            }
        }
        // `candle/adam_step/...` (tempo over candle Vars), `candle_nn/adam_step/...`;
        // `burn/adam_step/...` (tempo through tempo-burn), `burn_own/adam_step/...`.
        let (side, rest) = if let Some(r) = id.strip_prefix("candle/") {
            (Side::Candle(CandleSide::Tempo), r)
        } else if let Some(r) = id.strip_prefix("candle_nn/") {
            (Side::Candle(CandleSide::CandleNn), r)
        } else if let Some(r) = id.strip_prefix("burn/") {
            (Side::Burn(BurnSide::Tempo), r)
        } else if let Some(r) = id.strip_prefix("burn_own/") {
            (Side::Burn(BurnSide::Burn), r)
        } else {
            (Side::Tensors, id)
        };
        for kind in OptKind::ALL {
            let Some(size) = rest
                .strip_prefix(kind.bench_name())
                .and_then(|s| s.strip_prefix('/'))
            else {
                continue;
            };
            let sizes = if size == format!("mix/tensors={MIX_TENSORS},n={MIX_TOTAL}") {
                benches::model_mix_sizes()
            } else if let Some(n) = size.strip_prefix("n=").and_then(|n| n.parse().ok()) {
                vec![n]
            } else {
                break;
            };
            return Ok(match side {
                Side::Candle(side) => Work::Candle(CandleWorkload::new(kind, &sizes, side)?),
                Side::Burn(side) => Work::Burn(BurnWorkload::new(kind, &sizes, side)?),
                Side::Tensors => Work::Opt(OptWorkload::new(kind, &sizes, 1)?),
            });
        }
        Err(format!("no workload `{id}`").into())
    }

    fn run(&mut self) -> Result<()> {
        match self {
            Work::Triad(a, b, c) => benches::triad(std::hint::black_box(a), b, c, 0.5),
            Work::Traffic([p, g, m, v]) => {
                benches::adam_traffic(std::hint::black_box(p), g, m, v);
            }
            Work::Opt(w) => {
                std::hint::black_box(w.step()?);
            }
            Work::Candle(w) => w.step()?,
            Work::Burn(w) => w.step()?,
            Work::Sched(w) => w.step()?,
            Work::Save(state, path) => save(path, state)?,
            Work::Load(path) => drop(std::hint::black_box(load(path)?)),
        }
        Ok(())
    }
}

/// The fastest batch's time per call, in ns, and the calls timed.
fn measure(w: &mut Work, batch: Duration, samples: usize) -> Result<(f64, u64)> {
    w.run()?;
    let mut n: u64 = 1;
    let mut dt;
    loop {
        let t = Instant::now();
        for _ in 0..n {
            w.run()?;
        }
        dt = t.elapsed();
        if dt >= batch || n >= 1 << 24 {
            break;
        }
        let scaled = (n as f64 * batch.as_secs_f64() / dt.as_secs_f64().max(1e-9)) as u64;
        n = (n * 2).max(scaled);
    }
    // A slow call (a checkpoint) gets fewer batches, as on the PyTorch side.
    let k = if n == 1 && dt > 10 * batch {
        samples.min(3)
    } else {
        samples
    };
    let mut best = f64::INFINITY;
    for _ in 0..k {
        let t = Instant::now();
        for _ in 0..n {
            w.run()?;
        }
        best = best.min(t.elapsed().as_secs_f64() * 1e9 / n as f64);
    }
    Ok((best, n * k as u64))
}

fn env_num(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let batch = Duration::from_millis(env_num("TEMPO_PAIR_BATCH_MS", 30));
    let samples = env_num("TEMPO_PAIR_SAMPLES", 5) as usize;
    let mut works: HashMap<String, Work> = HashMap::new();
    let mut state = None;
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let id = line.trim();
        if id.is_empty() {
            continue;
        }
        let result = (|| -> Result<(f64, u64)> {
            if !works.contains_key(id) {
                let w = Work::new(id, &mut state)?;
                works.insert(id.to_string(), w);
            }
            let w = works.get_mut(id).ok_or("workload vanished")?;
            measure(w, batch, samples)
        })();
        let reply = match result {
            Ok((ns, iters)) => json!({"id": id, "ns": ns, "iters": iters}),
            Err(e) => json!({"id": id, "error": e.to_string()}),
        };
        let mut out = stdout.lock();
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
    for w in works.values() {
        if let Work::Save(_, p) | Work::Load(p) = w {
            let _ = std::fs::remove_file(p);
        }
    }
}
