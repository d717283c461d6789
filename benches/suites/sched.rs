//! Scheduler steps, every scheduler, on a real optimizer's groups; and the closed form
//! `lr_at` where a scheduler has one.

use criterion::{black_box, BenchmarkId, Criterion};

use benches::SchedWorkload;

use crate::check;

pub(crate) fn bench(c: &mut Criterion) {
    let specs = check(benches::scheduler_specs(), "scheduler specs");
    let mut g = c.benchmark_group("sched_step");
    for (name, spec) in &specs {
        let mut w = check(SchedWorkload::new(spec), name);
        g.bench_function(BenchmarkId::from_parameter(format!("name={name}")), |b| {
            b.iter(|| check(w.step(), name))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("sched_lr_at");
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
