//! A burn MLP on the handwritten digits the `tempo` CLI embeds, trained with tempo's
//! AdamW and OneCycleLR (cycling AdamW's beta1, as PyTorch's OneCycleLR does) through
//! burn's own training loop: `lr = scheduler.step()`, `model = optimizer.step(lr, ...)`.
//!
//! ```text
//! cargo run --release -p tempo-burn --example burn-digits
//! ```
//!
//! Prints each epoch's lr, beta1, loss and test accuracy; exits with an error unless
//! the test accuracy reaches 95%.

use std::io::Read;

use burn_core as burn;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use burn_nn::loss::CrossEntropyLossConfig;
use burn_nn::{Linear, LinearConfig, Relu};
use burn_optim::lr_scheduler::LrScheduler;
use burn_optim::GradientsParams;
use tempo_burn::{TempoLRScheduler, TempoOptimizer};
use tempo_optim::OptimizerSpec;

/// scikit-learn's digits (UCI, CC BY 4.0), as the CLI embeds them: 1,797 rows of 64
/// pixels in 0..=16 and the class in the last column.
static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../cli/data/digits.csv.gz");

const EPOCHS: usize = 12;
const BATCH: usize = 32;

#[derive(Module, Debug)]
struct Mlp {
    hidden: Linear,
    out: Linear,
    relu: Relu,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(64, 128).init(device),
            out: LinearConfig::new(128, 10).init(device),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.out.forward(self.relu.forward(self.hidden.forward(x)))
    }
}

/// Pixels scaled to [0, 1], and labels.
fn digits() -> Result<(Vec<[f32; 64]>, Vec<i64>), String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot decompress the digits: {e}"))?;
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let cells: Vec<f32> = line
            .split(',')
            .map(|c| c.trim().parse::<f32>())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("digits line {}: {e}", n + 1))?;
        let [pixels @ .., label] = cells.as_slice() else {
            return Err(format!("digits line {} is empty", n + 1));
        };
        let row: [f32; 64] = std::array::from_fn(|i| pixels.get(i).copied().unwrap_or(0.0) / 16.0);
        xs.push(row);
        ys.push(*label as i64);
    }
    Ok((xs, ys))
}

fn batch(xs: &[[f32; 64]], ys: &[i64], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
    let flat: Vec<f32> = xs.iter().flatten().copied().collect();
    let x = Tensor::from_data(TensorData::new(flat, [xs.len(), 64]), device);
    let y = Tensor::from_data(TensorData::new(ys.to_vec(), [ys.len()]), device);
    (x, y)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let device = Device::default().autodiff();
    let (xs, ys) = digits()?;
    // Every fifth sample is held out for testing.
    let (mut train_x, mut train_y, mut test_x, mut test_y) = (vec![], vec![], vec![], vec![]);
    for (i, (x, y)) in xs.iter().zip(&ys).enumerate() {
        if i % 5 == 0 {
            test_x.push(*x);
            test_y.push(*y);
        } else {
            train_x.push(*x);
            train_y.push(*y);
        }
    }
    let steps_per_epoch = train_x.len().div_ceil(BATCH);

    let adamw = TempoOptimizer::new(&OptimizerSpec::from_json(
        r#"{"type": "AdamW", "kwargs": {"lr": 0.01, "weight_decay": 0.01}}"#,
    )?)?;
    let spec = format!(
        "OneCycleLR(max_lr=0.01, total_steps={})",
        EPOCHS * steps_per_epoch
    )
    .parse()?;
    let mut scheduler = TempoLRScheduler::for_optimizer(&spec, &adamw)?;
    let mut optimizer = adamw.init();
    let mut model = Mlp::new(&device);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);

    let mut accuracy = 0.0;
    for epoch in 1..=EPOCHS {
        let mut total = 0.0;
        let mut lr = 0.0;
        for (xb, yb) in train_x.chunks(BATCH).zip(train_y.chunks(BATCH)) {
            let (x, y) = batch(xb, yb, &device);
            let loss = loss_fn.forward(model.forward(x), y);
            total += loss.clone().into_scalar::<f32>() as f64 * xb.len() as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            lr = scheduler.step();
            model = optimizer.step(lr, model, grads);
        }
        if let Some(e) = scheduler.take_error().or_else(|| adamw.take_error()) {
            return Err(e.into());
        }
        let (x, y) = batch(&test_x, &test_y, &device);
        let predicted = model.forward(x).argmax(1).squeeze_dim::<1>(1);
        let correct = predicted.equal(y).int().sum().into_scalar::<i64>();
        accuracy = correct as f64 / test_x.len() as f64;
        let beta1 = adamw
            .hyperparameters()
            .get("betas")
            .and_then(|b| b.as_slice()?.first()?.as_f64());
        println!(
            "epoch {epoch:2}  lr {lr:.6}  beta1 {:.4}  loss {:.4}  test accuracy {:.2}%",
            beta1.unwrap_or(f64::NAN),
            total / train_x.len() as f64,
            100.0 * accuracy
        );
    }
    if accuracy < 0.95 {
        return Err(format!("test accuracy {:.2}% is below 95%", 100.0 * accuracy).into());
    }
    Ok(())
}
