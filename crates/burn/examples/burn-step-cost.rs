//! What one optimizer step costs through tempo-burn against burn's own optimizer: the
//! digits MLP's parameters (64-128-10, 9,610 elements), a fixed gradient, `STEPS` steps
//! of burn's `AdamW` and of tempo's `AdamW` (a `TempoOptimizer`) inside burn's
//! `ModuleOptimizer`, on the ndarray backend, f32.
//!
//! ```text
//! cargo run --release -p tempo-burn --example burn-step-cost
//! ```

use std::time::Instant;

use burn_core as burn;

use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use burn_nn::{Linear, LinearConfig};
use burn_optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use tempo_burn::TempoOptimizer;
use tempo_optim::OptimizerSpec;

const STEPS: usize = 200;

#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    out: Linear,
}

fn grads(model: &Mlp, device: &Device) -> GradientsParams {
    let x = Tensor::<2>::random([32, 64], Distribution::Normal(0.0, 1.0), device);
    let loss = model
        .out
        .forward(model.hidden.forward(x))
        .powi_scalar(2)
        .mean();
    GradientsParams::from_grads(loss.backward(), model)
}

fn time(name: &str, mut optim: ModuleOptimizer, device: &Device) -> f64 {
    let mut model = Mlp {
        hidden: LinearConfig::new(64, 128).init(device),
        out: LinearConfig::new(128, 10).init(device),
    };
    let mut total = 0.0;
    for i in 0..STEPS + 10 {
        let g = grads(&model, device);
        let start = Instant::now();
        model = optim.step(1e-3, model, g);
        // Reading the weights back waits for the step to finish.
        let _ = model.out.weight.val().into_data();
        if i >= 10 {
            total += start.elapsed().as_secs_f64();
        }
    }
    let per_step = total / STEPS as f64 * 1e6;
    println!("{name:>24}: {per_step:8.1} us per step");
    per_step
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::default().autodiff();
    let burn_own = time("burn AdamW", AdamWConfig::new().init(), &device);
    let tempo = TempoOptimizer::new(&OptimizerSpec::from_json(
        r#"{"type": "AdamW", "kwargs": {"lr": 1e-3}}"#,
    )?)?;
    let ours = time("tempo AdamW (tempo-burn)", tempo.init(), &device);
    println!("tempo-burn / burn: {:.2}x", ours / burn_own);
    Ok(())
}
