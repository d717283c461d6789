//! Steady-state steps allocate nothing: state is created at first touch only, and the
//! update is one fused pass without temporaries.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ndarray::ArrayD;
use serde_json::json;
use tempo_optim::{build_optimizer, OptimizerSpec};
use tempo_tensor::Tensor;

/// Counts allocations made by the current thread (tests run on several threads).
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn steady_state_steps_do_not_allocate() {
    let configs = [
        json!({"type": "SGD", "kwargs": {"lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 0.1}}),
        json!({"type": "Adam", "kwargs": {"lr": 0.1, "amsgrad": true, "weight_decay": 0.1}}),
        json!({"type": "AdamW", "kwargs": {"lr": 0.1}}),
        json!({"type": "Adagrad", "kwargs": {"lr": 0.1, "lr_decay": 0.01}}),
        json!({"type": "Adadelta", "kwargs": {}}),
        json!({"type": "Adamax", "kwargs": {}}),
        json!({"type": "NAdam", "kwargs": {"decoupled_weight_decay": true, "weight_decay": 0.1}}),
        json!({"type": "RAdam", "kwargs": {}}),
        json!({"type": "RMSprop", "kwargs": {"momentum": 0.9, "centered": true}}),
        json!({"type": "Rprop", "kwargs": {}}),
        json!({"type": "ASGD", "kwargs": {"t0": 2.0}}),
    ];
    for cfg in configs {
        let spec: OptimizerSpec = serde_json::from_value(cfg.clone()).expect("spec");
        let params: Vec<Tensor<f32>> = (1..4)
            .map(|n| Tensor::parameter(ArrayD::from_elem(vec![n * 100], 0.5)))
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
