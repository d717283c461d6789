//! Steady-state steps allocate nothing: state is created at first touch only, the update
//! is one fused pass without temporaries, and large steps are shared with persistent
//! worker threads (whose own allocations the crate's unit tests count). Nor do the
//! writes a scheduler makes between steps.

use ndarray::ArrayD;
use serde_json::json;
use tempo_optim::{build_optimizer, OptimizerSpec};
use tempo_tensor::Tensor;
use tempo_testkit::{thread_allocations as allocations, CountingAllocator};

/// Counts allocations per thread (tests run on several threads): this binary's tests
/// count those of their own thread only.
#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Steps every elementwise optimizer over tensors of `sizes`: after the first step (which
/// creates the state), steps on this thread allocate nothing.
fn check_steady_state_steps(sizes: &[usize]) {
    // Every optimizer of the registry that steps vectors without a closure, with
    // options that take its costlier paths where it has them.
    let configs = crate::resume::stepped_over_vectors()
        .into_iter()
        .map(|kind| {
            let kwargs = match kind {
                "SGD" => json!({"lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 0.1}),
                "Adam" => json!({"lr": 0.1, "amsgrad": true, "weight_decay": 0.1}),
                "AdamW" => json!({"lr": 0.1}),
                "Adagrad" => json!({"lr": 0.1, "lr_decay": 0.01}),
                "NAdam" => json!({"decoupled_weight_decay": true, "weight_decay": 0.1}),
                "RMSprop" => json!({"momentum": 0.9, "centered": true}),
                "ASGD" => json!({"t0": 2.0}),
                _ => json!({}),
            };
            json!({"type": kind, "kwargs": kwargs})
        });
    for cfg in configs {
        let spec: OptimizerSpec = serde_json::from_value(cfg.clone()).expect("spec");
        let params: Vec<Tensor<f32>> = sizes
            .iter()
            .map(|&n| Tensor::parameter(ArrayD::from_elem(vec![n], 0.5)))
            .collect();
        for p in &params {
            p.set_grad(Some(ArrayD::from_shape_fn(p.shape(), |i| {
                (i[0] as f32 * 0.37).sin()
            })))
            .expect("grad");
        }
        let mut opt = build_optimizer(&spec, &params).expect("build");
        let first = allocations();
        opt.step().expect("first step");
        // The counter works: the first step creates the state.
        assert!(
            allocations() > first,
            "{cfg}: the first step should allocate state"
        );
        let before = allocations();
        for _ in 0..10 {
            opt.step().expect("step");
        }
        assert_eq!(
            allocations() - before,
            0,
            "{cfg}: steady-state steps allocated"
        );
    }
}

#[test]
fn steady_state_steps_do_not_allocate() {
    check_steady_state_steps(&[100, 200, 300]);
}

#[test]
fn steady_state_steps_over_large_tensors_do_not_allocate() {
    // Above the size at which a step is shared with worker threads: one large tensor,
    // and a mix of small and large ones split across the threads as one batch.
    check_steady_state_steps(&[70_000]);
    check_steady_state_steps(&[1024, 70_001, 3, 65_536, 1024, 20_000]);
}

#[test]
fn scheduler_writes_do_not_allocate() {
    for cfg in [
        json!({"type": "Adam", "kwargs": {"lr": 0.1}}),
        json!({"type": "SGD", "kwargs": {"lr": 0.1, "momentum": 0.9}}),
    ] {
        let spec: OptimizerSpec = serde_json::from_value(cfg.clone()).expect("spec");
        let params = [Tensor::<f32>::parameter(ArrayD::from_elem(vec![4], 0.5))];
        let mut opt = build_optimizer(&spec, &params).expect("build");
        // The first write of a new key stores the key.
        let first = allocations();
        opt.set_initial_lr(0, 0.1).expect("initial_lr");
        assert!(allocations() > first, "{cfg}: a new key should allocate");
        let before = allocations();
        for i in 0..10 {
            let x = 0.01 * f64::from(i);
            opt.set_lr(0, x).expect("lr");
            opt.set_initial_lr(0, x).expect("initial_lr");
            opt.set_momentum(0, 0.8 + x).expect("momentum");
            assert!((opt.momentum(0).expect("momentum") - (0.8 + x)).abs() < 1e-15);
        }
        assert_eq!(
            allocations() - before,
            0,
            "{cfg}: scheduler writes allocated"
        );
    }
}
