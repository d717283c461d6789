//! The distributed optimizer on MPI, checked from inside every rank; run by
//! `tests/it/mpirun.rs` as `mpirun -np N dist-check MODE`. Prints one `ok ...` line per
//! check on rank 0 and exits non-zero on the first failure.
//!
//! Modes: `train` (N ranks equal one process, with whole-parameter and with flat
//! sharding; per-rank state; resume with N ranks under either sharding, and in one
//! process), `mismatch` (the last rank builds another model), `die` (the last rank ends
//! abruptly after two steps), `refuse` (flat sharding of Adafactor).

use std::process::ExitCode;

use ndarray::ArrayD;
use tempo_dist::{
    Communicator, DistConfig, DistError, DistributedOptimizer, GradReduction, MpiRuntime, Sharding,
};
use tempo_optim::{build_optimizer, Optimizer, OptimizerSpec, OptimizerStateDict};
use tempo_tensor::Tensor;

const SHAPES: &[&[usize]] = &[&[3, 4], &[3], &[7], &[2, 2, 2], &[1]];
const BATCH: usize = 12;
const STEPS: usize = 6;
const SPECS: &[&str] = &[
    r#"{"type": "AdamW", "kwargs": {"lr": 0.05, "amsgrad": true}}"#,
    r#"{"type": "SGD", "kwargs": {"lr": 0.1, "momentum": 0.9, "nesterov": true}}"#,
    r#"{"type": "Adam", "kwargs": {"lr": 0.05}, "groups": [{"params": [0, 2], "lr": 0.01}, {"params": [1, 3, 4]}]}"#,
];

fn params(shapes: &[&[usize]]) -> Vec<Tensor<f64>> {
    shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let n: usize = s.iter().product();
            let v = (0..n).map(|i| ((i + 3 * k) as f64 * 0.37).sin()).collect();
            Tensor::parameter(ArrayD::from_shape_vec(s.to_vec(), v).expect("shape"))
        })
        .collect()
}

fn optimizer(spec: &str, ps: &[Tensor<f64>]) -> Box<dyn Optimizer<f64>> {
    build_optimizer(&OptimizerSpec::from_json(spec).expect("spec"), ps).expect("optimizer")
}

/// Each parameter's gradient: the sum over `rows` of a separable quadratic's samples.
fn set_grads(ps: &[Tensor<f64>], rows: std::ops::Range<usize>, t: usize) {
    for (k, p) in ps.iter().enumerate() {
        let x = p.to_vec();
        let g: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let mut sum = 0.0;
                for s in rows.clone() {
                    let a = 1.0 + ((s * 7 + i * 3 + k) % 5) as f64 * 0.25;
                    let target = ((s + 2 * i + 5 * k + t) as f64 * 0.61).cos();
                    sum += 2.0 * a * (a * x - target) / BATCH as f64;
                }
                sum
            })
            .collect();
        p.set_grad(Some(ArrayD::from_shape_vec(p.shape(), g).expect("shape")))
            .expect("grad");
    }
}

fn rows(rank: usize, size: usize) -> std::ops::Range<usize> {
    rank * BATCH / size..(rank + 1) * BATCH / size
}

/// One process summing each step's gradient in `shares(t)` rank shares, in rank order.
fn single(
    spec: &str,
    from: usize,
    to: usize,
    ps: &[Tensor<f64>],
    opt: &mut dyn Optimizer<f64>,
    shares: usize,
) {
    for t in from..to {
        let mut total: Vec<ArrayD<f64>> = Vec::new();
        for r in 0..shares {
            set_grads(ps, rows(r, shares), t);
            for (k, p) in ps.iter().enumerate() {
                let g = p.grad().clone().expect("grad");
                match total.get_mut(k) {
                    Some(acc) => *acc = &*acc + &g,
                    None => total.push(g),
                }
            }
        }
        for (p, g) in ps.iter().zip(total) {
            p.set_grad(Some(g)).expect("grad");
        }
        opt.step().expect("step");
    }
    let _ = spec;
}

fn config() -> DistConfig {
    config_with(Sharding::WholeParameters)
}

fn config_with(sharding: Sharding) -> DistConfig {
    DistConfig {
        bucket_elements: 5,
        sharding,
        reduction: GradReduction::Sum,
        check_groups_every_step: true,
    }
}

fn train(
    ps: &[Tensor<f64>],
    opt: &mut DistributedOptimizer<f64>,
    from: usize,
    to: usize,
) -> Result<(), DistError> {
    for t in from..to {
        opt.zero_grad();
        set_grads(ps, rows(opt.rank(), opt.size()), t);
        opt.step()?;
    }
    Ok(())
}

fn values(ps: &[Tensor<f64>]) -> Vec<f64> {
    ps.iter().flat_map(|p| p.to_vec()).collect()
}

/// Bit for bit with 2 ranks (a sum of two is the same in either order); within 1e-12
/// relative with more (MPI may add three or more partial sums in another order).
fn same(got: &[f64], want: &[f64], size: usize) -> bool {
    got.iter().zip(want).all(|(g, w)| {
        if size <= 2 {
            g.to_bits() == w.to_bits()
        } else {
            (g - w).abs() <= 1e-12 * w.abs().max(1.0)
        }
    })
}

/// The whole state on every rank (each rank gathers once).
fn everywhere(opt: &DistributedOptimizer<f64>) -> Result<OptimizerStateDict, DistError> {
    let mut mine = None;
    for root in 0..opt.size() {
        if let Some(s) = opt.consolidated_state_dict(root)? {
            mine = Some(s);
        }
    }
    mine.ok_or(DistError::InvalidArgument {
        what: "consolidation",
        expected: "a state on every rank".into(),
        found: "none".into(),
    })
}

fn check_train(comm_rt: &MpiRuntime) -> Result<Vec<String>, String> {
    let mut report = Vec::new();
    for sharding in [Sharding::WholeParameters, Sharding::Flat] {
        report.extend(check_train_with(comm_rt, sharding)?);
    }
    Ok(report)
}

fn check_train_with(comm_rt: &MpiRuntime, sharding: Sharding) -> Result<Vec<String>, String> {
    let mut report = Vec::new();
    let e = |e: DistError| e.to_string();
    for spec in SPECS {
        let comm = comm_rt.world();
        let (rank, size) = (comm.rank(), comm.size());
        // N ranks against one process.
        let ps = params(SHAPES);
        let mut opt =
            DistributedOptimizer::new(optimizer(spec, &ps), Box::new(comm), config_with(sharding))
                .map_err(e)?;
        train(&ps, &mut opt, 0, STEPS).map_err(e)?;
        let reference = params(SHAPES);
        let mut ropt = optimizer(spec, &reference);
        single(spec, 0, STEPS, &reference, ropt.as_mut(), size);
        if !same(&values(&ps), &values(&reference), size) {
            return Err(format!(
                "{spec}: rank {rank}'s parameters differ from one process's"
            ));
        }
        let whole = opt.consolidated_state_dict(0).map_err(e)?;
        if let Some(whole) = &whole {
            if size <= 2 && whole != &ropt.state_dict() {
                return Err(format!(
                    "{spec}: the consolidated state differs from one process's"
                ));
            }
        }
        // State per rank.
        let mine = opt.local_state_bytes() as u64;
        let mut sum = [0u64];
        opt.communicator()
            .all_reduce_sum_u64(&[mine], &mut sum)
            .map_err(e)?;
        report.push(format!(
            "{spec}, {sharding:?}: {size} ranks equal one process; rank {rank} holds {mine} of {} state bytes",
            sum[0]
        ));
        // Save after 3 steps; resume with the same ranks (under both shardings) and in
        // one process.
        let ps = params(SHAPES);
        let comm = comm_rt.world();
        let mut opt =
            DistributedOptimizer::new(optimizer(spec, &ps), Box::new(comm), config_with(sharding))
                .map_err(e)?;
        train(&ps, &mut opt, 0, 3).map_err(e)?;
        let saved = everywhere(&opt).map_err(e)?;
        let saved_values: Vec<ArrayD<f64>> = ps.iter().map(|p| p.to_array()).collect();
        train(&ps, &mut opt, 3, STEPS).map_err(e)?;
        let straight = values(&ps);
        drop(opt);
        for resumed_with in [Sharding::WholeParameters, Sharding::Flat] {
            let resumed = params(SHAPES);
            for (p, v) in resumed.iter().zip(&saved_values) {
                *p.data_mut() = v.clone();
            }
            let mut opt = DistributedOptimizer::new(
                optimizer(spec, &resumed),
                Box::new(comm_rt.world()),
                config_with(resumed_with),
            )
            .map_err(e)?;
            opt.load_state_dict(&saved).map_err(e)?;
            train(&resumed, &mut opt, 3, STEPS).map_err(e)?;
            if values(&resumed)
                .iter()
                .zip(&straight)
                .any(|(a, b)| a.to_bits() != b.to_bits())
            {
                return Err(format!(
                    "{spec}: saved with {sharding:?}, resuming with {size} ranks and {resumed_with:?} differs from the straight run"
                ));
            }
        }
        // One process (every rank does it alone) continues from the same checkpoint.
        let alone = params(SHAPES);
        for (p, v) in alone.iter().zip(&saved_values) {
            *p.data_mut() = v.clone();
        }
        let mut one = optimizer(spec, &alone);
        one.load_state_dict(&saved).map_err(|e| e.to_string())?;
        single(spec, 3, STEPS, &alone, one.as_mut(), size);
        if !same(&values(&alone), &straight, size) {
            return Err(format!(
                "{spec}: resuming in one process differs from {size} ranks"
            ));
        }
        report.push(format!("{spec}, {sharding:?}: saved with {size} ranks, resumed with {size} ranks bit for bit (either sharding) and in one process"));
    }
    Ok(report)
}

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let runtime = match MpiRuntime::init() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let world = runtime.world();
    let (rank, size) = (world.rank(), world.size());
    let result: Result<Vec<String>, String> = match mode.as_str() {
        "train" => check_train(&runtime),
        "mismatch" => {
            let mut shapes = SHAPES.to_vec();
            if rank == size - 1 {
                shapes[3] = &[2, 4];
            }
            let ps = params(&shapes);
            DistributedOptimizer::new(
                optimizer(SPECS[0], &ps),
                Box::new(runtime.world()),
                config(),
            )
            .map(|_| vec!["no mismatch found".to_string()])
            .map_err(|e| e.to_string())
        }
        "die" => {
            let ps = params(SHAPES);
            let mut opt = DistributedOptimizer::new(
                optimizer(SPECS[0], &ps),
                Box::new(runtime.world()),
                config(),
            )
            .map_err(|e| e.to_string());
            match &mut opt {
                Ok(opt) => {
                    let mut out = Ok(vec![]);
                    for t in 0..1000 {
                        if rank == size - 1 && t == 2 {
                            eprintln!("rank {rank}: ending abruptly");
                            std::process::abort();
                        }
                        if let Err(e) = train(&ps, opt, t, t + 1) {
                            out = Err(e.to_string());
                            break;
                        }
                    }
                    out
                }
                Err(e) => Err(e.clone()),
            }
        }
        "refuse" => {
            let ps = params(&[&[3, 4], &[2, 2]]);
            DistributedOptimizer::new(
                optimizer(r#"{"type": "Adafactor"}"#, &ps),
                Box::new(runtime.world()),
                config_with(Sharding::Flat),
            )
            .map(|_| vec!["Adafactor was taken".to_string()])
            .map_err(|e| e.to_string())
        }
        other => Err(format!(
            "unknown mode `{other}` (expected train, mismatch, die or refuse)"
        )),
    };
    drop(world);
    match result {
        Ok(lines) => {
            if rank == 0 {
                for l in lines {
                    println!("ok {l}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rank {rank}: error: {e}");
            ExitCode::FAILURE
        }
    }
}
