//! tempo's benchmarks: one criterion binary, one module per suite.
//!
//! Run them with `cargo xtask bench` (which also writes the summary); `cargo bench -p
//! benches -- adam_step` runs a subset. `TEMPO_BENCH_QUICK=1` shortens the measurements
//! and drops the small sizes.

use std::time::Duration;

use criterion::Criterion;

#[path = "suites/bandwidth.rs"]
mod bandwidth;
#[path = "suites/ckpt.rs"]
mod ckpt;
#[path = "suites/matrix.rs"]
mod matrix;
#[path = "suites/optim.rs"]
mod optim;
#[path = "suites/sched.rs"]
mod sched;
#[path = "suites/train.rs"]
mod train;

/// Criterion's settings: short in a quick run, criterion's defaults otherwise. No plots
/// (the summary is xtask's).
fn config() -> Criterion {
    let c = Criterion::default().without_plots();
    if benches::quick() {
        // Criterion's analysis bootstraps 100 000 resamples per benchmark by default,
        // about as long as a quick measurement; the summary reads the samples, not the
        // bootstrap's intervals.
        c.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(500))
            .sample_size(20)
            .nresamples(5_000)
    } else {
        c.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
    }
}

/// Unwraps a setup or step result, stopping the run with the error's message.
pub(crate) fn check<T>(r: benches::Result<T>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            eprintln!("benchmark {what}: {e}");
            std::process::exit(1)
        }
    }
}

fn main() {
    let mut c = config().configure_from_args();
    bandwidth::bench(&mut c);
    optim::bench(&mut c);
    matrix::bench(&mut c);
    sched::bench(&mut c);
    train::bench(&mut c);
    ckpt::bench(&mut c);
    c.final_summary();
}
