//! Data-parallel throughput: a 784-2048-2048-10 ReLU MLP (5.8 M f32 parameters) on
//! synthetic data, AdamW, a global batch (256 by default) split across the ranks.
//!
//! ```text
//! cargo build --release -p tempo-dist --features mpi --example dist-bench
//! target/release/examples/dist-bench --plain          # one process, no MPI wrapper
//! mpirun -np 1 target/release/examples/dist-bench     # the distributed optimizer on 1 rank
//! mpirun -np 2 target/release/examples/dist-bench     # on 2 ranks
//! mpirun -np 2 target/release/examples/dist-bench --comm   # the bare collectives
//! ```
//!
//! Under `mpirun`, rank 0 prints, for each sharding (whole parameters, then flat
//! ranges) and each global batch, samples per second, each rank's optimizer-state bytes
//! against one process's, and where a step's time goes (forward and backward, the
//! gradient all-reduce or reduce-scatter, the local optimizer step, the parameter
//! broadcast or all-gather). `--comm` times the bare collectives over the model's size
//! instead: all-reduce, reduce-scatter, all-gather.
//! Options: `--steps N` (timed steps, default 20), `--batch N[,N...]` (global batches,
//! 256), `--sharding whole|flat|both` (both), `--plain`, `--comm`.

use std::time::{Duration, Instant};

use ndarray::ArrayD;
use tempo_dist::{
    Communicator, DistConfig, DistError, DistributedOptimizer, MpiComm, MpiRuntime, Sharding,
};
use tempo_optim::{AdamW, AdamWConfig, Optimizer};
use tempo_tensor::{Generator, Tensor};

const SIZES: &[usize] = &[784, 2048, 2048, 10];
const WARMUP: usize = 3;

struct Options {
    steps: usize,
    batches: Vec<usize>,
    shardings: Vec<Sharding>,
    plain: bool,
    comm: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        steps: 20,
        batches: vec![256],
        shardings: vec![Sharding::WholeParameters, Sharding::Flat],
        plain: false,
        comm: false,
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
            "--batch" => {
                let list = args.next().unwrap_or_default();
                o.batches = list
                    .split(',')
                    .map(|b| b.parse().ok().filter(|&b: &usize| b > 0))
                    .collect::<Option<_>>()
                    .ok_or_else(|| format!("--batch needs positive numbers, found `{list}`"))?;
            }
            "--sharding" => {
                o.shardings = match args.next().as_deref() {
                    Some("whole") => vec![Sharding::WholeParameters],
                    Some("flat") => vec![Sharding::Flat],
                    Some("both") => vec![Sharding::WholeParameters, Sharding::Flat],
                    other => {
                        return Err(format!(
                            "--sharding needs whole, flat or both, found {other:?}"
                        ))
                    }
                }
            }
            "--plain" => o.plain = true,
            "--comm" => o.comm = true,
            other => {
                return Err(format!(
                    "unknown option {other} (expected --steps N, --batch N[,N...], --sharding whole|flat|both, --plain, --comm)"
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

/// The main thread's time on a CPU and waiting for one (`/proc/thread-self/schedstat`,
/// Linux): how much of the machine the process got while other programs ran.
#[derive(Default, Clone, Copy)]
struct Sched {
    running_ns: u64,
    waiting_ns: u64,
}

impl Sched {
    fn now() -> Self {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        let mut fields = text
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        Self {
            running_ns: fields.next().unwrap_or(0),
            waiting_ns: fields.next().unwrap_or(0),
        }
    }

    /// The share of `elapsed` seconds since `self` spent on a CPU and waiting for one.
    fn since(self, elapsed: f64) -> String {
        let now = Self::now();
        let share = |ns: u64| ns as f64 * 1e-9 / elapsed * 100.0;
        format!(
            "main thread on a CPU {:.0}% of the time, waiting for one {:.0}%",
            share(now.running_ns.saturating_sub(self.running_ns)),
            share(now.waiting_ns.saturating_sub(self.waiting_ns)),
        )
    }
}

#[derive(Default)]
struct Times {
    sched: Sched,
    compute: Duration,
    wait: Duration,
    all_reduce: Duration,
    local_step: Duration,
    broadcast: Duration,
}

fn main() -> Result<(), String> {
    let o = options()?;
    if o.plain {
        for &batch in &o.batches {
            plain(&o, batch)?;
        }
        return Ok(());
    }
    let e = |e: DistError| e.to_string();
    let runtime = MpiRuntime::init().map_err(e)?;
    if o.comm {
        return collectives(&runtime.world()).map_err(e);
    }
    for &sharding in &o.shardings {
        for &batch in &o.batches {
            distributed(&o, &runtime, sharding, batch).map_err(e)?;
        }
    }
    Ok(())
}

/// The model's parameters, the inputs, their labels, and AdamW over the parameters.
type Setup = (Vec<Tensor<f32>>, ArrayD<f32>, Vec<usize>, AdamW<f32>);

/// The model, `batch` samples of synthetic data and their labels, and AdamW.
fn setup(batch: usize) -> Result<Setup, String> {
    let mut rng = Generator::new(0);
    let ps = model(&mut rng);
    let data: ArrayD<f32> = rng.normal(&[batch, SIZES[0]], 0.0, 1.0);
    let labels: Vec<usize> = (0..batch).map(|_| (rng.next_u32() % 10) as usize).collect();
    let adamw = AdamW::new(ps.clone(), AdamWConfig::default()).map_err(|e| e.to_string())?;
    Ok((ps, data, labels, adamw))
}

/// One process, no MPI.
fn plain(o: &Options, batch: usize) -> Result<(), String> {
    let (ps, data, labels, adamw) = setup(batch)?;
    let params: usize = ps.iter().map(Tensor::numel).sum();
    let mut opt: Box<dyn Optimizer<f32>> = Box::new(adamw);
    let mut times = Times::default();
    let mut started = Instant::now();
    for s in 0..WARMUP + o.steps {
        if s == WARMUP {
            started = Instant::now();
            times = Times::default();
            times.sched = Sched::now();
        }
        opt.zero_grad();
        let t0 = Instant::now();
        loss(&ps, &data, &labels).map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        opt.step().map_err(|e| e.to_string())?;
        times.compute += t1 - t0;
        times.local_step += t1.elapsed();
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "one process (no MPI): {params} parameters, global batch {batch}, {:.1} samples/s; optimizer state {} bytes; {}; per step: forward+backward {:.1} ms, optimizer step {:.1} ms",
        (batch * o.steps) as f64 / elapsed,
        state_bytes(opt.as_ref()),
        times.sched.since(elapsed),
        ms(times.compute, o.steps),
        ms(times.local_step, o.steps),
    );
    Ok(())
}

/// The distributed optimizer under `sharding`, each rank on its rows of the batch.
fn distributed(
    o: &Options,
    runtime: &MpiRuntime,
    sharding: Sharding,
    batch: usize,
) -> Result<(), DistError> {
    let comm = runtime.world();
    let (rank, size) = (comm.rank(), comm.size());
    let (ps, data, labels, adamw) = setup(batch).map_err(|m| DistError::InvalidArgument {
        what: "benchmark setup",
        expected: "a model".into(),
        found: m,
    })?;
    let params: usize = ps.iter().map(Tensor::numel).sum();
    let rows = rank * batch / size..(rank + 1) * batch / size;
    let x = data
        .slice(ndarray::s![rows.clone(), ..])
        .to_owned()
        .into_dyn();
    let y = labels[rows].to_vec();
    let config = DistConfig {
        sharding,
        ..DistConfig::default()
    };
    let mut opt = DistributedOptimizer::new(Box::new(adamw), Box::new(runtime.world()), config)?;
    let mut times = Times::default();
    let mut started = Instant::now();
    for s in 0..WARMUP + o.steps {
        if s == WARMUP {
            let mut done = [0u64];
            comm.all_reduce_sum_u64(&[0], &mut done)?;
            started = Instant::now();
            times = Times::default();
            times.sched = Sched::now();
        }
        opt.zero_grad();
        let t0 = Instant::now();
        loss(&ps, &x, &y)?;
        let t1 = Instant::now();
        // A rank that finished its share first waits here for the slower one, so that
        // the step's own times below are the collectives' and not the wait.
        let mut done = [0u64];
        comm.all_reduce_sum_u64(&[0], &mut done)?;
        times.compute += t1 - t0;
        times.wait += t1.elapsed();
        opt.step()?;
        let t = opt.last_step_timings();
        times.all_reduce += t.all_reduce;
        times.local_step += t.local_step;
        times.broadcast += t.broadcast;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let sched = times.sched.since(elapsed);
    let mine = opt.local_state_bytes() as u64;
    let mut total = [0u64];
    comm.all_reduce_sum_u64(&[mine], &mut total)?;
    let all = comm.all_gather_bytes(&mine.to_le_bytes())?;
    let per_rank: Vec<u64> = all
        .iter()
        .map(|b| u64::from_le_bytes(b.as_slice().try_into().unwrap_or([0; 8])))
        .collect();
    if rank == 0 {
        let (reduce, gather) = match sharding {
            Sharding::Flat => ("reduce-scatter", "broadcast of the updated ranges"),
            _ => ("all-reduce", "parameter broadcast"),
        };
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        println!(
            "{size} ranks, {sharding:?}: {params} parameters, global batch {batch}, {:.1} samples/s; optimizer state per rank {per_rank:?} bytes of {} ({:.2} of the total at most); {threads} CPU(s) per rank; rank 0: {sched}; rank 0 per step: forward+backward {:.1} ms, waiting for the other ranks {:.1} ms, gradient {reduce} {:.1} ms, optimizer step {:.1} ms, {gather} {:.1} ms",
            (batch * o.steps) as f64 / elapsed,
            total[0],
            per_rank.iter().copied().max().unwrap_or(0) as f64 / total[0].max(1) as f64,
            ms(times.compute, o.steps),
            ms(times.wait, o.steps),
            ms(times.all_reduce, o.steps),
            ms(times.local_step, o.steps),
            ms(times.broadcast, o.steps),
        );
    }
    Ok(())
}

/// The bare collectives over the model's number of f32 elements, 10 times each after
/// one warm-up: what the transport gives.
fn collectives(comm: &MpiComm) -> Result<(), DistError> {
    let n: usize = SIZES.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
    let size = comm.size();
    let block = n.div_ceil(size);
    let send = vec![1.0f32; block * size];
    let mut whole = vec![0.0f32; block * size];
    let mut part = vec![0.0f32; block];
    let reps = 10;
    let time = |f: &mut dyn FnMut() -> Result<(), DistError>| -> Result<f64, DistError> {
        f()?;
        let mut done = [0u64];
        comm.all_reduce_sum_u64(&[0], &mut done)?;
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        Ok(t.elapsed().as_secs_f64() * 1e3 / reps as f64)
    };
    let all_reduce = time(&mut || comm.all_reduce_sum_f32(&send, &mut whole))?;
    let reduce_scatter = time(&mut || comm.reduce_scatter_sum_f32(&send, &mut part))?;
    let all_gather = time(&mut || comm.all_gather_f32(&part, &mut whole))?;
    let broadcasts = time(&mut || {
        for (root, range) in whole.chunks_mut(block).enumerate() {
            comm.broadcast_f32(root, range)?;
        }
        Ok(())
    })?;
    if comm.rank() == 0 {
        let mb = (n * 4) as f64 / 1e6;
        println!(
            "{size} ranks, {n} f32 ({mb:.1} MB): all-reduce {all_reduce:.1} ms, reduce-scatter {reduce_scatter:.1} ms, all-gather {all_gather:.1} ms, a broadcast from each rank of its range {broadcasts:.1} ms"
        );
    }
    Ok(())
}

fn ms(d: Duration, steps: usize) -> f64 {
    d.as_secs_f64() * 1e3 / steps as f64
}
