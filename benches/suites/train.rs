//! Training loops: the seed's iteration (2-20-20-4 net, Adam + CyclicLR) and one epoch
//! of the default `tempo train` on the digits (read from crates/cli/data/digits.csv.gz).

use criterion::{black_box, Criterion, Throughput};

use benches::{SeedLoop, TrainEpoch};

use crate::check;

pub(crate) fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("train");
    let mut seed = check(SeedLoop::new(), "seed setup");
    g.bench_function("seed_iteration", |b| {
        b.iter(|| black_box(check(seed.iteration(), "seed iteration")))
    });

    let mut epoch = check(TrainEpoch::new(), "train setup");
    g.throughput(Throughput::Elements(epoch.samples() as u64));
    g.sample_size(20);
    g.bench_function("digits_epoch/batch=32", |b| {
        b.iter(|| black_box(check(epoch.epoch(), "train epoch")))
    });
    g.finish();
}
