//! Scheduler steps, every scheduler, on a real optimizer's groups; and the closed form
//! `lr_at` where a scheduler has one.

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{black_box, BenchmarkGroup, BenchmarkId, Criterion};

use benches::SchedWorkload;

use crate::check;

pub(crate) fn bench(c: &mut Criterion) {
    let specs = check(benches::scheduler_specs(), "scheduler specs");
    let mut g = c.benchmark_group("sched_step");
    quick_timing(&mut g);
    for (name, spec) in &specs {
        let mut w = check(SchedWorkload::new(spec), name);
        g.bench_function(BenchmarkId::from_parameter(format!("name={name}")), |b| {
            b.iter(|| check(w.step(), name))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("sched_lr_at");
    quick_timing(&mut g);
    for (name, spec) in &specs {
        let w = check(SchedWorkload::new(spec), name);
        if w.sched.lr_at(12_345).is_none() {
            continue;
        }
        g.bench_function(BenchmarkId::from_parameter(format!("name={name}")), |b| {
            b.iter(|| w.sched.lr_at(black_box(12_345)))
        });
    }
    g.finish();
}

/// In a quick run, shorter still: a step takes nanoseconds, so a third of a second is
/// tens of millions of steps.
fn quick_timing(g: &mut BenchmarkGroup<'_, WallTime>) {
    if benches::quick() {
        g.warm_up_time(Duration::from_millis(100))
            .measurement_time(Duration::from_millis(300));
    }
}
