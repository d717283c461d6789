//! Resume is exact: for random optimizers, schedulers, models and split points k, n
//! straight steps equal k steps + save to a file + load into fresh objects + n - k
//! steps, bit for bit (model, optimizer, scheduler and random generator).

use proptest::prelude::*;
use tempo_ckpt::{load, save, write_tempo_bytes, RngState, TrainingState};
use tempo_nn::{mse_loss, Linear, Module, Reduction, Sequential, StateDict, Tanh};
use tempo_optim::{build_optimizer, Optimizer, OptimizerSpec};
use tempo_param_groups::{Dict, OptimizerParamGroups};
use tempo_sched::{build_scheduler, LRScheduler, SchedulerSpec};
use tempo_tensor::{Float, Generator, GeneratorState, Tensor};

const OPTIMIZERS: &[&str] = &[
    r#"{"type": "SGD", "kwargs": {"lr": 0.05, "momentum": 0.9, "nesterov": true}}"#,
    r#"{"type": "SGD", "kwargs": {"lr": 0.05, "weight_decay": 0.01}}"#,
    r#"{"type": "Adam", "kwargs": {"lr": 0.01, "amsgrad": true}}"#,
    r#"{"type": "AdamW", "kwargs": {"lr": 0.01}}"#,
    r#"{"type": "Adagrad", "kwargs": {"lr": 0.05}}"#,
    r#"{"type": "Adadelta", "kwargs": {"lr": 1.0}}"#,
    r#"{"type": "Adamax", "kwargs": {"lr": 0.01}}"#,
    r#"{"type": "NAdam", "kwargs": {"lr": 0.01}}"#,
    r#"{"type": "RAdam", "kwargs": {"lr": 0.01}}"#,
    r#"{"type": "RMSprop", "kwargs": {"lr": 0.01, "momentum": 0.5, "centered": true}}"#,
    r#"{"type": "Rprop", "kwargs": {"lr": 0.01}}"#,
    r#"{"type": "ASGD", "kwargs": {"lr": 0.01}}"#,
];

const SCHEDULERS: &[&str] = &[
    "StepLR(step_size=2, gamma=0.5)",
    "MultiStepLR(milestones=[1, 3], gamma=0.5)",
    "ExponentialLR(gamma=0.9)",
    "CosineAnnealingLR(T_max=4)",
    "CyclicLR(base_lr=0.001, max_lr=0.1, step_size_up=2, mode=\"triangular2\", cycle_momentum=False)",
    "OneCycleLR(max_lr=0.1, total_steps=20, cycle_momentum=False)",
    "LinearLR(start_factor=0.5, total_iters=3)",
    "ConstantLR(factor=0.5, total_iters=2)",
    "PolynomialLR(total_iters=4, power=2.0)",
    "CosineAnnealingWarmRestarts(T_0=2, T_mult=2)",
];

struct Run<T: Float> {
    model: Sequential<T>,
    opt: Box<dyn Optimizer<T>>,
    sched: Box<dyn LRScheduler>,
    rng: Generator,
    sizes: Vec<usize>,
}

fn build<T: Float>(optimizer: &str, scheduler: &str, sizes: &[usize], seed: u64) -> Run<T> {
    let mut rng = Generator::new(seed);
    let mut model = Sequential::new();
    for (i, w) in sizes.windows(2).enumerate() {
        model.push(Linear::new(w[0], w[1], true, &mut rng)).unwrap();
        if i + 2 < sizes.len() {
            model.push(Tanh).unwrap();
        }
    }
    let mut opt = build_optimizer(
        &OptimizerSpec::from_json(optimizer).unwrap(),
        &model.parameters(),
    )
    .unwrap();
    let spec: SchedulerSpec = scheduler.parse().unwrap();
    let groups: &mut dyn OptimizerParamGroups = opt.as_mut();
    let sched = build_scheduler(&spec, groups).unwrap();
    Run {
        model,
        opt,
        sched,
        rng,
        sizes: sizes.to_vec(),
    }
}

/// One training step on data drawn from the run's own generator.
fn train_step<T: Float>(run: &mut Run<T>) {
    let (first, last) = (run.sizes[0], run.sizes[run.sizes.len() - 1]);
    let x = Tensor::from_array(run.rng.uniform::<T>(&[3, first], -1.0, 1.0));
    let y = Tensor::from_array(run.rng.uniform::<T>(&[3, last], -1.0, 1.0));
    run.opt.zero_grad();
    let loss = mse_loss(&run.model.forward(&x).unwrap(), &y, Reduction::Mean).unwrap();
    loss.backward().unwrap();
    run.opt.step().unwrap();
    let groups: &mut dyn OptimizerParamGroups = run.opt.as_mut();
    run.sched.step(groups).unwrap();
}

fn snapshot<T: Float>(run: &Run<T>, step: usize) -> TrainingState {
    TrainingState {
        epoch: 0,
        step: step as i64,
        model: run.model.state_dict().to_tensor_data(),
        optimizer: Some(run.opt.state_dict()),
        scheduler: Some(run.sched.state_dict()),
        rng: Some(RngState::from(&run.rng.state())),
        metadata: Dict::new(),
    }
}

fn check_resume<T: Float>(
    optimizer: &str,
    scheduler: &str,
    sizes: &[usize],
    seed: u64,
    n: usize,
    k: usize,
) {
    let mut straight = build::<T>(optimizer, scheduler, sizes, seed);
    for _ in 0..n {
        train_step(&mut straight);
    }

    let mut first = build::<T>(optimizer, scheduler, sizes, seed);
    for _ in 0..k {
        train_step(&mut first);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resume.tempo");
    save(&path, &snapshot(&first, k)).unwrap();
    drop(first);

    // Fresh objects with another initialisation, restored as PyTorch's docs say:
    // scheduler built first, then the optimizer's and the scheduler's states loaded.
    let loaded = load(&path).unwrap();
    let mut resumed = build::<T>(optimizer, scheduler, sizes, seed ^ 0x5eed);
    resumed
        .opt
        .load_state_dict(loaded.optimizer.as_ref().unwrap())
        .unwrap();
    resumed
        .sched
        .load_state_dict(loaded.scheduler.as_ref().unwrap())
        .unwrap();
    resumed
        .model
        .load_state_dict(&StateDict::from_tensor_data(loaded.model.clone()).unwrap())
        .unwrap();
    resumed
        .rng
        .set_state(&GeneratorState::try_from(loaded.rng.as_ref().unwrap()).unwrap())
        .unwrap();
    for _ in k..n {
        train_step(&mut resumed);
    }

    // The tempo serialization is deterministic: equal bytes are equal bits everywhere.
    let a = write_tempo_bytes(&snapshot(&straight, n).to_object()).unwrap();
    let b = write_tempo_bytes(&snapshot(&resumed, n).to_object()).unwrap();
    assert!(
        a == b,
        "resume after {k} of {n} steps differs: {optimizer} / {scheduler} / {sizes:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn resume_after_any_k_steps_equals_the_straight_run(
        optimizer in 0..OPTIMIZERS.len(),
        scheduler in 0..SCHEDULERS.len(),
        sizes in proptest::collection::vec(1..5usize, 2..4),
        seed in any::<u64>(),
        n in 1..7usize,
        k_frac in 0.0..=1.0f64,
        f64_dtype in any::<bool>(),
    ) {
        let k = ((n as f64) * k_frac).round() as usize;
        if f64_dtype {
            check_resume::<f64>(OPTIMIZERS[optimizer], SCHEDULERS[scheduler], &sizes, seed, n, k);
        } else {
            check_resume::<f32>(OPTIMIZERS[optimizer], SCHEDULERS[scheduler], &sizes, seed, n, k);
        }
    }
}

#[test]
fn every_optimizer_and_scheduler_resumes_exactly() {
    for (i, optimizer) in OPTIMIZERS.iter().enumerate() {
        let scheduler = SCHEDULERS[i % SCHEDULERS.len()];
        check_resume::<f32>(optimizer, scheduler, &[3, 4, 2], i as u64, 5, 2);
    }
    for (i, scheduler) in SCHEDULERS.iter().enumerate() {
        check_resume::<f64>(
            OPTIMIZERS[i % OPTIMIZERS.len()],
            scheduler,
            &[2, 3],
            100 + i as u64,
            6,
            3,
        );
    }
}

/// Every optimizer and scheduler of the registries (a new one is tested without
/// editing a list): each optimizer at its defaults that steps a model without a
/// closure (Muon takes matrices only, LBFGS a closure), under StepLR; each scheduler
/// from its example that steps without a metric, over SGD with momentum.
#[test]
fn every_registered_optimizer_and_scheduler_resumes_exactly() {
    let model = Linear::<f64>::new(2, 3, true, &mut Generator::new(1));
    for (i, info) in tempo_optim::OPTIMIZERS.iter().enumerate() {
        let spec = format!(r#"{{"type": "{}"}}"#, info.name);
        let steps = build_optimizer(
            &OptimizerSpec::from_json(&spec).unwrap(),
            &model.parameters(),
        )
        .map(|mut o| o.step().is_ok());
        if steps == Ok(true) {
            check_resume::<f32>(
                &spec,
                "StepLR(step_size=2, gamma=0.5)",
                &[3, 2],
                i as u64,
                5,
                2,
            );
        }
    }
    for (i, info) in tempo_sched::SCHEDULERS.iter().enumerate() {
        let mut opt = build_optimizer(
            &OptimizerSpec::from_json(OPTIMIZERS[0]).unwrap(),
            &model.parameters(),
        )
        .unwrap();
        let groups: &mut dyn OptimizerParamGroups = opt.as_mut();
        let needs_metric = build_scheduler(&info.example.parse().unwrap(), groups)
            .unwrap_or_else(|e| panic!("{}: {e}", info.example))
            .needs_metric();
        if !needs_metric {
            check_resume::<f64>(OPTIMIZERS[0], info.example, &[2, 3], 200 + i as u64, 6, 3);
        }
    }
}
