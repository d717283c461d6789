//! The memory-bandwidth reference, measured in the same run as the optimizers: STREAM's
//! triad, and Adam's access pattern without its arithmetic, over arrays far larger than
//! the caches (64 MiB each; this machine's last-level cache is 32 MiB).

use criterion::{black_box, Criterion, Throughput};

/// Elements per array: 2^24 f32.
const N: usize = 1 << 24;

pub(crate) fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("bandwidth");
    g.sample_size(10);

    let mut a = vec![0.0f32; N];
    let b = benches::normal(N, 1, 1.0).into_raw_vec_and_offset().0;
    let cc = benches::normal(N, 2, 1.0).into_raw_vec_and_offset().0;
    g.throughput(Throughput::Bytes(12 * N as u64));
    g.bench_function(format!("triad/n={N}"), |bch| {
        bch.iter(|| benches::triad(black_box(&mut a), &b, &cc, 0.5))
    });
    drop(a);

    let mut p = b;
    let mut m = cc;
    let mut v = vec![0.0f32; N];
    let gr = vec![1e-9f32; N];
    g.throughput(Throughput::Bytes(28 * N as u64));
    g.bench_function(format!("adam_traffic/n={N}"), |bch| {
        bch.iter(|| benches::adam_traffic(black_box(&mut p), &gr, &mut m, &mut v))
    });
    g.finish();
}
