//! The distributed optimizer on MPI, checked from inside every rank; run by
//! `tests/it/mpirun.rs` as `mpirun -np N dist-check MODE`. Prints one `ok ...` line per
//! check on rank 0 and exits non-zero on the first failure.
//!
//! Modes: `train` (N ranks equal one process, with whole-parameter and with flat
//! sharding; per-rank state; resume with N ranks under either sharding, and in one
//! process), `mismatch` (the last rank builds another model), `die` (the last rank ends
//! abruptly after two steps), `refuse` (flat sharding of Adafactor), `collectives`
//! (the float collectives, short and long, against sums computed on every rank).

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
        let first_run = values(&ps);
        if !same(&first_run, &values(&reference), size) {
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
        // The same run twice (saving in between changes nothing): the same bits.
        if straight
            .iter()
            .zip(&first_run)
            .any(|(a, b)| a.to_bits() != b.to_bits())
        {
            return Err(format!(
                "{spec}, {sharding:?}: two runs on {size} ranks differ"
            ));
        }
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
        report.push(format!("{spec}, {sharding:?}: two runs alike; saved with {size} ranks, resumed with {size} ranks bit for bit (either sharding) and in one process"));
    }
    Ok(report)
}

/// Rank `r`'s element `i`: values whose sums round, so a wrong order or a lost term
/// shows.
fn contribution(r: usize, i: usize) -> f64 {
    ((i * 7 + r * 13) as f64 * 0.37).sin() * 10f64.powi((i % 7) as i32 - 3)
}

/// All-reduce, reduce-scatter (pairwise between two ranks) and all-gather in f32 and
/// f64, of short and long messages, against the sums in rank order: bit for bit with
/// two ranks; with more, MPI may add in another order, so within a few roundings of the
/// terms' magnitude (1e-6 of it in f32, 1e-14 in f64).
fn check_collectives(comm: &tempo_dist::MpiComm) -> Result<Vec<String>, String> {
    let (rank, size) = (comm.rank(), comm.size());
    let e = |e: DistError| e.to_string();
    let mut report = Vec::new();
    for n in [10usize, 200_003] {
        let block = n.div_ceil(size);
        let len = block * size;
        let sum64 = |i: usize| (1..size).fold(contribution(0, i), |a, r| a + contribution(r, i));
        let sum32 = |i: usize| {
            (1..size).fold(contribution(0, i) as f32, |a, r| {
                a + contribution(r, i) as f32
            })
        };
        let magnitude = |i: usize| (0..size).map(|r| contribution(r, i).abs()).sum::<f64>();
        let ok = |i: usize, got64: f64, got32: f32| {
            if size <= 2 {
                got64.to_bits() == sum64(i).to_bits() && got32.to_bits() == sum32(i).to_bits()
            } else {
                (got64 - sum64(i)).abs() <= 1e-14 * magnitude(i)
                    && f64::from(got32 - sum32(i)).abs() <= 1e-6 * magnitude(i)
            }
        };
        let mine64: Vec<f64> = (0..len).map(|i| contribution(rank, i)).collect();
        let mine32: Vec<f32> = mine64.iter().map(|&x| x as f32).collect();
        let mut all64 = vec![0.0; len];
        comm.all_reduce_sum_f64(&mine64, &mut all64).map_err(e)?;
        let mut all32 = vec![0.0f32; len];
        comm.all_reduce_sum_f32(&mine32, &mut all32).map_err(e)?;
        if let Some(i) = (0..len).find(|&i| !ok(i, all64[i], all32[i])) {
            return Err(format!(
                "all-reduce of {len}: element {i} is {} / {}, expected {} / {}",
                all64[i],
                all32[i],
                sum64(i),
                sum32(i)
            ));
        }
        let mut part64 = vec![0.0; block];
        comm.reduce_scatter_sum_f64(&mine64, &mut part64)
            .map_err(e)?;
        let mut part32 = vec![0.0f32; block];
        comm.reduce_scatter_sum_f32(&mine32, &mut part32)
            .map_err(e)?;
        if let Some(k) = (0..block).find(|&k| !ok(rank * block + k, part64[k], part32[k])) {
            return Err(format!(
                "reduce-scatter of {len}: element {k} of rank {rank}'s block is wrong"
            ));
        }
        let mut gathered64 = vec![0.0; len];
        comm.all_gather_f64(&part64, &mut gathered64).map_err(e)?;
        let mut gathered32 = vec![0.0f32; len];
        comm.all_gather_f32(&part32, &mut gathered32).map_err(e)?;
        if let Some(i) = (0..len).find(|&i| !ok(i, gathered64[i], gathered32[i])) {
            return Err(format!("all-gather of {len}: element {i} is wrong"));
        }
        report.push(format!(
            "{size} ranks: all-reduce, reduce-scatter and all-gather of {len} elements"
        ));
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
        "collectives" => check_collectives(&world).map_err(|e| e.to_string()),
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
