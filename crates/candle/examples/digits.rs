//! A candle MLP (64-128-10) on the handwritten digits that `tempo train` embeds,
//! trained with tempo's AdamW (no weight decay on biases) and OneCycleLR, with a
//! checkpoint per epoch and `--resume`.
//!
//! ```sh
//! cargo run --release -p tempo-candle --example digits                       # 20 epochs
//! cargo run --release -p tempo-candle --example digits -- --epochs 5         # stop early
//! cargo run --release -p tempo-candle --example digits -- --resume           # continue
//! ```
//!
//! Options: `--epochs N` (20), `--run-dir DIR` (`target/candle-digits`), `--resume`
//! (continue from `DIR/last.tempo`: variables, optimizer, scheduler and counters).

use std::io::Read;
use std::path::PathBuf;

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{linear, Linear, Optimizer, VarBuilder, VarMap};
use tempo_candle::{capture, load, restore, save, CandleOptimizer, GroupRule, NamedVars, PtKeys};
use tempo_sched::{LRScheduler, OneCycleLR, OneCycleLRConfig};

static DIGITS_CSV_GZ: &[u8] = include_bytes!("../../cli/data/digits.csv.gz");

type Error = Box<dyn std::error::Error>;

const BATCH: usize = 32;
const TOTAL_EPOCHS: usize = 20;

struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.fc2.forward(&self.fc1.forward(x)?.relu()?)
    }
}

/// The digits: 1,797 rows of 64 pixels (scaled to [0, 1]) and a class.
fn digits() -> Result<(Vec<f32>, Vec<u32>), Error> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ).read_to_string(&mut text)?;
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let cells: Vec<f32> = line
            .split(',')
            .map(|c| c.trim().parse::<f32>())
            .collect::<Result<_, _>>()?;
        let (label, pixels) = cells.split_last().ok_or("an empty row")?;
        x.extend(pixels.iter().map(|p| p / 16.0));
        y.push(*label as u32);
    }
    Ok((x, y))
}

/// A seeded permutation of `0..n` (xorshift, Fisher-Yates).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p.swap(i, (s % (i as u64 + 1)) as usize);
    }
    p
}

fn rows(x: &Tensor, y: &Tensor, idx: &[usize]) -> candle_core::Result<(Tensor, Tensor)> {
    let ix = Tensor::from_iter(idx.iter().map(|&i| i as u32), x.device())?;
    Ok((x.index_select(&ix, 0)?, y.index_select(&ix, 0)?))
}

fn accuracy(model: &Mlp, x: &Tensor, y: &Tensor) -> candle_core::Result<f64> {
    let pred = model.forward(x)?.argmax(D::Minus1)?;
    let right = pred
        .eq(y)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(f64::from(right) / y.dims()[0] as f64)
}

fn main() -> Result<(), Error> {
    let mut epochs = TOTAL_EPOCHS;
    let mut run_dir = PathBuf::from("target/candle-digits");
    let mut resume = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--epochs" => epochs = args.next().ok_or("--epochs needs a number")?.parse()?,
            "--run-dir" => run_dir = args.next().ok_or("--run-dir needs a path")?.into(),
            "--resume" => resume = true,
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let dev = Device::Cpu;
    let (x, y) = digits()?;
    let n = y.len();
    let x = Tensor::from_vec(x, (n, 64), &dev)?;
    let y = Tensor::from_vec(y, n, &dev)?;
    let split = permutation(n, 0);
    let (train_idx, test_idx) = split.split_at(n * 4 / 5);
    let (x_test, y_test) = rows(&x, &y, test_idx)?;

    // The model, as any candle user builds it.
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = Mlp {
        fc1: linear(64, 128, vb.pp("fc1"))?,
        fc2: linear(128, 10, vb.pp("fc2"))?,
    };

    // tempo: named parameters in PyTorch's order, AdamW without decay on biases,
    // OneCycleLR over the whole run.
    let vars = NamedVars::from_varmap(
        &varmap,
        &["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"],
    )?;
    let rules = [
        GroupRule::rest(),
        GroupRule::patterns(["*.bias"]).with("weight_decay", 0.0),
    ];
    let mut opt =
        CandleOptimizer::<f32>::from_call("AdamW(lr=1e-3, weight_decay=0.01)", &vars, &rules)?;
    let batches = train_idx.len().div_ceil(BATCH);
    let total = (TOTAL_EPOCHS * batches) as u64;
    let mut sched = OneCycleLR::new(&mut opt, OneCycleLRConfig::new(0.01, total))?;

    std::fs::create_dir_all(&run_dir)?;
    let ckpt = run_dir.join("last.tempo");
    let mut first_epoch = 0;
    let mut step = 0;
    if resume {
        let state = load(&ckpt, &PtKeys::default())?;
        restore(&state, &vars, Some(&mut opt), Some(&mut sched))?;
        first_epoch = usize::try_from(state.epoch)?;
        step = state.step;
        println!("resumed from {} after epoch {first_epoch}", ckpt.display());
    }

    for epoch in first_epoch..epochs.min(TOTAL_EPOCHS) {
        let order = permutation(train_idx.len(), epoch as u64 + 1);
        let mut loss_sum = 0.0;
        for chunk in order.chunks(BATCH) {
            let idx: Vec<usize> = chunk.iter().map(|&i| train_idx[i]).collect();
            let (xb, yb) = rows(&x, &y, &idx)?;
            let loss = candle_nn::loss::cross_entropy(&model.forward(&xb)?, &yb)?;
            opt.backward_step(&loss)?; // candle_nn::Optimizer
            sched.step(&mut opt)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?);
            step += 1;
        }
        let state = capture(&vars, Some(&opt), Some(&sched), epoch as i64 + 1, step)?;
        save(&ckpt, &state)?;
        println!(
            "epoch {:>2}: loss {:.4}, lr {:.5}, test accuracy {:.2}%",
            epoch + 1,
            loss_sum / batches as f64,
            opt.learning_rate(),
            100.0 * accuracy(&model, &x_test, &y_test)?
        );
    }
    println!(
        "test accuracy {:.2}% (checkpoint: {})",
        100.0 * accuracy(&model, &x_test, &y_test)?,
        ckpt.display()
    );
    Ok(())
}
