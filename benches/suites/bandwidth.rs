//! The memory-bandwidth reference, measured in the same run as the optimizers: STREAM's
//! triad over arrays far larger than the caches (64 MiB each; this machine's last-level
//! cache is 32 MiB), and Adam's access pattern without its arithmetic over exactly the
//! working set of the 1e7-parameter optimizer benchmarks (4 × 40 MB), so that whatever
//! the caches keep of it counts the same on both sides of the ratio.

use criterion::{black_box, Criterion, SamplingMode, Throughput};

/// Elements per triad array: 2^24 f32.
const N: usize = 1 << 24;
/// Elements per array of the Adam-pattern reference: the optimizer benchmarks' 1e7.
const ADAM_N: usize = 10_000_000;

pub(crate) fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("bandwidth");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);

    let mut a = vec![0.0f32; N];
    let b = benches::normal(N, 1, 1.0).into_raw_vec_and_offset().0;
    let cc = benches::normal(N, 2, 1.0).into_raw_vec_and_offset().0;
    g.throughput(Throughput::Bytes(12 * N as u64));
    g.bench_function(format!("triad/n={N}"), |bch| {
        bch.iter(|| benches::triad(black_box(&mut a), &b, &cc, 0.5))
    });
    drop(a);

    drop((b, cc));
    let mut p = vec![0.5f32; ADAM_N];
    let mut m = vec![0.0f32; ADAM_N];
    let mut v = vec![0.0f32; ADAM_N];
    let gr = vec![1e-9f32; ADAM_N];
    g.throughput(Throughput::Bytes(28 * ADAM_N as u64));
    g.bench_function(format!("adam_traffic/n={ADAM_N}"), |bch| {
        bch.iter(|| benches::adam_traffic(black_box(&mut p), &gr, &mut m, &mut v))
    });
    drop((p, m, v, gr));

    // The same traffic over the model-shaped mix, threaded two ways: per tensor (a
    // fork-join for each tensor of at least 2^16 elements, smaller ones on one core, as
    // tempo-optim's `launch` does), and once per step over all tensors.
    let sizes = benches::model_mix_sizes();
    let mut mix = benches::MixTraffic::new(&sizes);
    g.throughput(Throughput::Bytes(28 * benches::MIX_TOTAL as u64));
    g.bench_function("adam_traffic_mix/per_tensor", |bch| {
        bch.iter(|| mix.per_tensor())
    });
    g.bench_function("adam_traffic_mix/one_fork_join", |bch| {
        bch.iter(|| mix.one_fork_join())
    });
    g.finish();
}
