//! Whole-matrix optimizer steps in f32: Muon (five bfloat16 Newton-Schulz iterations,
//! three matrix products each) and Adafactor (factored second moments) on one square
//! weight matrix of 256², 1024² and 2048² elements. Gradients are set once; each
//! iteration is one `step()` in steady state. Muon's throughput is reported in
//! elements; its multiply-adds per step are `ns_steps * (2 m^2 n + m^3)` for an
//! `m x n` matrix (`m <= n`).

use criterion::{black_box, BenchmarkId, Criterion, SamplingMode, Throughput};
use tempo::optim::{build_optimizer, OptimizerSpec};
use tempo::tensor::Tensor;

use crate::check;

pub(crate) fn bench(c: &mut Criterion) {
    let sides: &[usize] = if benches::quick() {
        &[1024]
    } else {
        &[256, 1024, 2048]
    };
    for (name, spec) in [
        ("muon_step", r#"{"type": "Muon", "kwargs": {"lr": 0.02}}"#),
        (
            "adafactor_step",
            r#"{"type": "Adafactor", "kwargs": {"lr": 0.01}}"#,
        ),
    ] {
        let spec = check(
            OptimizerSpec::from_json(spec).map_err(Into::into),
            "optimizer spec",
        );
        let mut g = c.benchmark_group(name);
        for &n in sides {
            if n >= 1024 {
                g.sample_size(10).sampling_mode(SamplingMode::Flat);
            }
            let p = Tensor::parameter(
                benches::normal(n * n, 7, 0.02)
                    .into_shape_with_order(vec![n, n])
                    .expect("n*n elements"),
            );
            check(
                p.set_grad(Some(
                    benches::normal(n * n, 8, 1e-3)
                        .into_shape_with_order(vec![n, n])
                        .expect("n*n elements"),
                ))
                .map_err(Into::into),
                "gradient",
            );
            let mut opt = check(
                build_optimizer(&spec, std::slice::from_ref(&p)).map_err(Into::into),
                "optimizer setup",
            );
            check(opt.step().map_err(Into::into), "optimizer step");
            g.throughput(Throughput::Elements((n * n) as u64));
            g.bench_function(BenchmarkId::from_parameter(format!("n={n}x{n}")), |b| {
                b.iter(|| black_box(check(opt.step().map_err(Into::into), "optimizer step")))
            });
        }
        g.finish();
    }
}
