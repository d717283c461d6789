//! tempo-dist's integration tests: the distributed optimizer against a single process,
//! with the ranks as threads ([`LocalComm`]); the same code runs on MPI under `mpirun`
//! (`examples/dist-check.rs`, driven by `mpirun.rs`).

mod faults;
mod mpirun;
mod training;

use ndarray::ArrayD;
use tempo_dist::{
    Communicator, DistConfig, DistError, DistributedOptimizer, GradReduction, LocalComm, Sharding,
};
use tempo_optim::{build_optimizer, Optimizer, OptimizerSpec};
use tempo_tensor::Tensor;

/// Parameter shapes of the test model: sizes that do not split evenly.
pub(crate) const SHAPES: &[&[usize]] = &[&[3, 4], &[3], &[7], &[2, 2, 2], &[1]];
/// Samples in the global batch.
pub(crate) const BATCH: usize = 12;

/// The model's parameters, the same on every rank.
pub(crate) fn params(shapes: &[&[usize]]) -> Vec<Tensor<f64>> {
    shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let n: usize = s.iter().product();
            Tensor::parameter(
                ArrayD::from_shape_vec(
                    s.to_vec(),
                    (0..n).map(|i| ((i + 3 * k) as f64 * 0.37).sin()).collect(),
                )
                .unwrap(),
            )
        })
        .collect()
}

/// The optimizer of a case.
pub(crate) fn optimizer(spec: &str, params: &[Tensor<f64>]) -> Box<dyn Optimizer<f64>> {
    build_optimizer(&OptimizerSpec::from_json(spec).unwrap(), params).unwrap()
}

/// Sample `s`'s gradient for element `i` of a parameter at value `x` at step `t`: a
/// separable quadratic loss whose targets move with the step, divided by the global
/// batch (the loss is a mean over the batch).
fn sample_grad(x: f64, s: usize, i: usize, k: usize, t: usize) -> f64 {
    let a = 1.0 + ((s * 7 + i * 3 + k) % 5) as f64 * 0.25;
    let target = ((s + 2 * i + 5 * k + t) as f64 * 0.61).cos();
    2.0 * a * (a * x - target) / BATCH as f64
}

/// Sets each parameter's gradient to the sum over `rows` of the samples' gradients.
pub(crate) fn set_grads(params: &[Tensor<f64>], rows: std::ops::Range<usize>, step: usize) {
    for (k, p) in params.iter().enumerate() {
        let g = p.data().indexed_iter().map(|_| 0.0).collect::<Vec<_>>();
        let mut g = ArrayD::from_shape_vec(p.shape(), g).unwrap();
        for (i, (slot, &x)) in g.iter_mut().zip(p.data().iter()).enumerate() {
            for s in rows.clone() {
                *slot += sample_grad(x, s, i, k, step);
            }
        }
        p.set_grad(Some(g)).unwrap();
    }
}

/// Rank `rank`'s rows of the global batch: contiguous, sizes differing by at most one.
pub(crate) fn rows(rank: usize, size: usize) -> std::ops::Range<usize> {
    rank * BATCH / size..(rank + 1) * BATCH / size
}

/// The single-process reference: each step's gradient summed rank share by rank share
/// (the order in which the ranks' sums are added), or straight through the batch.
pub(crate) fn single(
    spec: &str,
    steps: usize,
    shares: impl Fn(usize) -> usize,
) -> (Vec<Tensor<f64>>, Box<dyn Optimizer<f64>>) {
    let ps = params(SHAPES);
    let mut opt = optimizer(spec, &ps);
    for t in 0..steps {
        let mut total: Vec<ArrayD<f64>> = Vec::new();
        let shares = shares(t);
        for r in 0..shares {
            set_grads(&ps, rows(r, shares), t);
            for (k, p) in ps.iter().enumerate() {
                let g = p.grad().clone().unwrap();
                match total.get_mut(k) {
                    Some(acc) => *acc = &*acc + &g,
                    None => total.push(g),
                }
            }
        }
        for (p, g) in ps.iter().zip(total) {
            p.set_grad(Some(g)).unwrap();
        }
        opt.step().unwrap();
    }
    (ps, opt)
}

/// Both ways of sharding the state.
pub(crate) const SHARDINGS: [Sharding; 2] = [Sharding::WholeParameters, Sharding::Flat];

/// A distributed optimizer over this rank's copy of the model (gradients summed, as
/// each rank's loss is already divided by the global batch), whole parameters sharded.
pub(crate) fn distributed(
    spec: &str,
    comm: LocalComm,
) -> Result<(Vec<Tensor<f64>>, DistributedOptimizer<f64>), DistError> {
    distributed_with(spec, comm, Sharding::WholeParameters)
}

/// [`distributed`] with the state sharded by `sharding`.
pub(crate) fn distributed_with(
    spec: &str,
    comm: LocalComm,
    sharding: Sharding,
) -> Result<(Vec<Tensor<f64>>, DistributedOptimizer<f64>), DistError> {
    let ps = params(SHAPES);
    let inner = optimizer(spec, &ps);
    let config = DistConfig {
        // Small buckets: a gradient is split across several messages (with flat
        // sharding, each rank's range across several rounds).
        bucket_elements: 5,
        sharding,
        reduction: GradReduction::Sum,
        check_groups_every_step: true,
    };
    Ok((
        ps,
        DistributedOptimizer::new(inner, Box::new(comm), config)?,
    ))
}

/// `steps` data-parallel steps from step `from`, each rank on its share of the batch.
pub(crate) fn train(
    ps: &[Tensor<f64>],
    opt: &mut DistributedOptimizer<f64>,
    from: usize,
    steps: usize,
) -> Result<(), DistError> {
    let (rank, size) = (opt.rank(), opt.size());
    for t in from..from + steps {
        opt.zero_grad();
        set_grads(ps, rows(rank, size), t);
        assert!(opt.step()?);
    }
    Ok(())
}

/// Every parameter's bits.
pub(crate) fn bits(ps: &[Tensor<f64>]) -> Vec<u64> {
    ps.iter()
        .flat_map(|p| p.to_vec())
        .map(f64::to_bits)
        .collect()
}

/// Runs `f` on `size` ranks and unwraps each rank's result.
pub(crate) fn on_ranks<R: Send>(
    size: usize,
    f: impl Fn(LocalComm) -> Result<R, DistError> + Sync,
) -> Vec<R> {
    LocalComm::run(size, f)
        .into_iter()
        .enumerate()
        .map(|(r, res)| res.unwrap_or_else(|e| panic!("rank {r}: {e}")))
        .collect()
}

/// The optimizers the cases run: every elementwise kind the sharding must carry, with
/// options that give them all their state.
pub(crate) const SPECS: &[&str] = &[
    r#"{"type": "AdamW", "kwargs": {"lr": 0.05, "amsgrad": true}}"#,
    r#"{"type": "SGD", "kwargs": {"lr": 0.1, "momentum": 0.9, "nesterov": true}}"#,
    r#"{"type": "ASGD", "kwargs": {"lr": 0.05, "t0": 2}}"#,
    r#"{"type": "Adam", "kwargs": {"lr": 0.05}, "groups": [{"params": [0, 2], "lr": 0.01}, {"params": [1, 3, 4]}]}"#,
];

#[test]
fn communicator_ranks_are_numbered() {
    let ids = on_ranks(3, |c| Ok((c.rank(), c.size())));
    assert_eq!(ids, vec![(0, 3), (1, 3), (2, 3)]);
}
