//! The allocation probe: runs the optimizer workloads of the benchmarks under a counting
//! global allocator and prints, as JSON, the allocations per steady-state step and the
//! peak live heap of a step against what the step must hold (parameters + gradients +
//! optimizer state).
//!
//! `cargo xtask bench` runs it (`cargo run --release -p benches --bin bench-memory`) and
//! puts its figures in the summary. `TEMPO_BENCH_QUICK=1` skips the mix.

use benches::{OptKind, OptWorkload};
use serde_json::{json, Value};
use tempo_testkit::{live_bytes, CountingAllocator, Window};

/// The system allocator, counting allocations of every thread and keeping the peak of
/// the live bytes.
#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Bytes of optimizer state per f32 parameter.
fn state_bytes(kind: OptKind) -> usize {
    match kind {
        OptKind::SGDMomentum => 4,
        OptKind::Adam | OptKind::AdamW => 8,
    }
}

fn probe(kind: OptKind, label: &str, sizes: &[usize]) -> benches::Result<Value> {
    let n: usize = sizes.iter().sum();
    let base = live_bytes();
    let first = Window::open();
    // Parameters and gradients, the optimizer, and its first step (which creates the state).
    let mut w = OptWorkload::new(kind, sizes, 1)?;
    let first_peak = first.close().peak_extra_bytes;
    let held = live_bytes() - base;
    let required = n * (8 + state_bytes(kind));
    let steps = 5;
    let steady = Window::open();
    for _ in 0..steps {
        w.step()?;
    }
    let steady = steady.close();
    let (allocs, steady_peak) = (steady.allocations, steady.peak_extra_bytes);
    Ok(json!({
        "optimizer": kind.bench_name(),
        "workload": label,
        "params": n,
        "tensors": sizes.len(),
        "required_bytes": required,
        "held_bytes": held,
        "first_step_peak_bytes": first_peak,
        "first_step_peak_ratio": first_peak as f64 / required as f64,
        "steady_step_peak_extra_bytes": steady_peak,
        "steady_step_peak_ratio": (held + steady_peak) as f64 / required as f64,
        "allocs_per_step": allocs as f64 / steps as f64,
    }))
}

fn run() -> benches::Result<Value> {
    let mut optim = Vec::new();
    for kind in OptKind::ALL {
        optim.push(probe(kind, "n=1000", &[1_000])?);
        optim.push(probe(kind, "n=10000000", &[10_000_000])?);
        if !benches::quick() {
            optim.push(probe(
                kind,
                "mix/tensors=200,n=10000000",
                &benches::model_mix_sizes(),
            )?);
        }
    }
    let mut seed = benches::SeedLoop::new()?;
    for _ in 0..3 {
        seed.iteration()?;
    }
    let iters = 100;
    let win = Window::open();
    for _ in 0..iters {
        seed.iteration()?;
    }
    let seed_allocs = win.close().allocations;
    let mut sched = Vec::new();
    for (name, spec) in benches::scheduler_specs()? {
        let mut w = benches::SchedWorkload::new(&spec)?;
        w.step()?;
        let win = Window::open();
        for _ in 0..100 {
            w.step()?;
        }
        let a = win.close().allocations;
        sched.push(json!({"name": name, "allocs_per_step": a as f64 / 100.0}));
    }
    Ok(json!({
        "optim": optim,
        "seed_iteration_allocs": seed_allocs as f64 / iters as f64,
        "sched": sched,
    }))
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(v) => {
            println!("{v:#}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-memory: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
