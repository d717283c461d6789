//! Optimizer steps in f32: SGD with momentum, Adam and AdamW over one tensor of 1e3, 1e5
//! and 1e7 parameters, and over the model-shaped mix (200 tensors, 10M parameters).
//! Gradients are set once; each iteration is one `step()` in steady state (state
//! created by a step before timing).

use criterion::{black_box, BenchmarkId, Criterion, SamplingMode, Throughput};

use benches::{OptKind, OptWorkload, MIX_TENSORS, MIX_TOTAL};

use crate::check;

pub(crate) fn bench(c: &mut Criterion) {
    let sizes: &[usize] = if benches::quick() {
        &[10_000_000]
    } else {
        &[1_000, 100_000, 10_000_000]
    };
    for kind in OptKind::ALL {
        let mut g = c.benchmark_group(kind.bench_name());
        for &n in sizes {
            if n >= 1_000_000 {
                g.sample_size(10).sampling_mode(SamplingMode::Flat);
            }
            let mut w = check(OptWorkload::new(kind, &[n], 1), "optimizer setup");
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(BenchmarkId::from_parameter(format!("n={n}")), |b| {
                b.iter(|| black_box(check(w.step(), "optimizer step")))
            });
        }
        g.sample_size(10).sampling_mode(SamplingMode::Flat);
        let mix = benches::model_mix_sizes();
        let mut w = check(OptWorkload::new(kind, &mix, 1), "optimizer setup");
        g.throughput(Throughput::Elements(MIX_TOTAL as u64));
        g.bench_function(
            BenchmarkId::from_parameter(format!("mix/tensors={MIX_TENSORS},n={MIX_TOTAL}")),
            |b| b.iter(|| black_box(check(w.step(), "optimizer step"))),
        );
        g.finish();
    }
}
