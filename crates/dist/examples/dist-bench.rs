//! Data-parallel throughput: a 784-2048-2048-10 ReLU MLP (5.8 M f32 parameters) on
//! synthetic data, AdamW, a global batch of 256 split across the ranks.
//!
//! ```text
//! cargo build --release -p tempo-dist --features mpi --example dist-bench
//! target/release/examples/dist-bench --plain          # one process, no MPI wrapper
//! mpirun -np 1 target/release/examples/dist-bench     # the distributed optimizer on 1 rank
//! mpirun -np 2 target/release/examples/dist-bench     # on 2 ranks
//! ```
//!
//! Rank 0 prints samples per second, each rank's optimizer-state bytes against one
//! process's, and where a step's time goes (forward and backward, the gradient
//! all-reduce, the local optimizer step, the parameter broadcast).
//! Options: `--steps N` (timed steps, default 20), `--batch N` (global batch, 256).

use std::time::{Duration, Instant};

use ndarray::ArrayD;
use tempo_dist::{Communicator, DistConfig, DistError, DistributedOptimizer, MpiRuntime};
use tempo_optim::{AdamW, AdamWConfig, Optimizer};
use tempo_tensor::{Generator, Tensor};

const SIZES: &[usize] = &[784, 2048, 2048, 10];
const WARMUP: usize = 3;

struct Options {
    steps: usize,
    batch: usize,
    plain: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        steps: 20,
        batch: 256,
        plain: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v: &usize| v > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--steps" => o.steps = number("--steps")?,
            "--batch" => o.batch = number("--batch")?,
            "--plain" => o.plain = true,
            other => {
                return Err(format!(
                    "unknown option {other} (expected --steps N, --batch N, --plain)"
                ))
            }
        }
    }
    Ok(o)
}

/// Weights and biases of the MLP, PyTorch's `Linear` initialisation bounds.
fn model(rng: &mut Generator) -> Vec<Tensor<f32>> {
    let mut ps = Vec::new();
    for w in SIZES.windows(2) {
        let bound = 1.0 / (w[0] as f64).sqrt();
        ps.push(Tensor::parameter(rng.uniform(&[w[1], w[0]], -bound, bound)));
        ps.push(Tensor::parameter(rng.uniform(&[w[1]], -bound, bound)));
    }
    ps
}

/// The mean cross-entropy of `x` (rows) against `y`, with gradients.
fn loss(ps: &[Tensor<f32>], x: &ArrayD<f32>, y: &[usize]) -> Result<f32, DistError> {
    let mut h = Tensor::from_array(x.clone());
    for (i, layer) in ps.chunks(2).enumerate() {
        h = h.linear(&layer[0], Some(&layer[1]))?;
        if i + 1 < ps.len() / 2 {
            h = h.relu();
        }
    }
    let l = h.cross_entropy(y)?;
    l.backward()?;
    Ok(l.item()?)
}

fn state_bytes(opt: &dyn Optimizer<f32>) -> usize {
    opt.state_dict()
        .state
        .iter()
        .flat_map(|(_, s)| s.entries.iter())
        .filter_map(|(_, v)| v.as_tensor())
        .map(|t| t.len() * t.dtype().size())
        .sum()
}

#[derive(Default)]
struct Times {
    compute: Duration,
    all_reduce: Duration,
    local_step: Duration,
    broadcast: Duration,
}

fn main() -> Result<(), String> {
    let o = options()?;
    let e = |e: DistError| e.to_string();
    let mut rng = Generator::new(0);
    let ps = model(&mut rng);
    let params: usize = ps.iter().map(Tensor::numel).sum();
    let data: ArrayD<f32> = rng.normal(&[o.batch, SIZES[0]], 0.0, 1.0);
    let labels: Vec<usize> = (0..o.batch)
        .map(|_| (rng.next_u32() % 10) as usize)
        .collect();
    let adamw = AdamW::new(ps.clone(), AdamWConfig::default()).map_err(|e| e.to_string())?;
    if o.plain {
        let mut opt: Box<dyn Optimizer<f32>> = Box::new(adamw);
        let mut times = Times::default();
        let mut started = Instant::now();
        for s in 0..WARMUP + o.steps {
            if s == WARMUP {
                started = Instant::now();
                times = Times::default();
            }
            opt.zero_grad();
            let t0 = Instant::now();
            loss(&ps, &data, &labels).map_err(e)?;
            let t1 = Instant::now();
            opt.step().map_err(|e| e.to_string())?;
            times.compute += t1 - t0;
            times.local_step += t1.elapsed();
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "one process (no MPI): {params} parameters, global batch {}, {:.1} samples/s; optimizer state {} bytes; per step: forward+backward {:.1} ms, optimizer step {:.1} ms",
            o.batch,
            (o.batch * o.steps) as f64 / elapsed,
            state_bytes(opt.as_ref()),
            ms(times.compute, o.steps),
            ms(times.local_step, o.steps),
        );
        return Ok(());
    }
    let runtime = MpiRuntime::init().map_err(e)?;
    let comm = runtime.world();
    let (rank, size) = (comm.rank(), comm.size());
    let rows = rank * o.batch / size..(rank + 1) * o.batch / size;
    let x = data
        .slice(ndarray::s![rows.clone(), ..])
        .to_owned()
        .into_dyn();
    let y = labels[rows].to_vec();
    let mut opt = DistributedOptimizer::new(
        Box::new(adamw),
        Box::new(runtime.world()),
        DistConfig::default(),
    )
    .map_err(e)?;
    let mut times = Times::default();
    let mut started = Instant::now();
    for s in 0..WARMUP + o.steps {
        if s == WARMUP {
            let mut done = [0u64];
            comm.all_reduce_sum_u64(&[0], &mut done).map_err(e)?;
            started = Instant::now();
            times = Times::default();
        }
        opt.zero_grad();
        let t0 = Instant::now();
        loss(&ps, &x, &y).map_err(e)?;
        times.compute += t0.elapsed();
        opt.step().map_err(e)?;
        let t = opt.last_step_timings();
        times.all_reduce += t.all_reduce;
        times.local_step += t.local_step;
        times.broadcast += t.broadcast;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mine = opt.local_state_bytes() as u64;
    let mut total = [0u64];
    comm.all_reduce_sum_u64(&[mine], &mut total).map_err(e)?;
    let all = comm.all_gather_bytes(&mine.to_le_bytes()).map_err(e)?;
    let per_rank: Vec<u64> = all
        .iter()
        .map(|b| u64::from_le_bytes(b.as_slice().try_into().unwrap_or([0; 8])))
        .collect();
    if rank == 0 {
        println!(
            "{size} ranks: {params} parameters, global batch {}, {:.1} samples/s; optimizer state per rank {per_rank:?} bytes of {} ({:.2} of one process's at most); rank 0 per step: forward+backward {:.1} ms, gradient all-reduce {:.1} ms, optimizer step {:.1} ms, parameter broadcast {:.1} ms",
            o.batch,
            (o.batch * o.steps) as f64 / elapsed,
            total[0],
            per_rank.iter().copied().max().unwrap_or(0) as f64 / total[0].max(1) as f64,
            ms(times.compute, o.steps),
            ms(times.all_reduce, o.steps),
            ms(times.local_step, o.steps),
            ms(times.broadcast, o.steps),
        );
    }
    Ok(())
}

fn ms(d: Duration, steps: usize) -> f64 {
    d.as_secs_f64() * 1e3 / steps as f64
}
