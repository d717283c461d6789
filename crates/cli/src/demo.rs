//! `tempo demo`: PyTorch's Adam + CyclicLR(triangular2) question, run in tempo.
//!
//! A 2-20-20-4 net (no activation), `Adam(lr=0.1)` and
//! `CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=1, mode="triangular2",
//! cycle_momentum=False)`, ten steps with a checkpoint after each; then the last
//! checkpoint is reloaded into fresh objects and the optimizer is printed as PyTorch
//! prints it, with an account of which lr each step used and why.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempo::ckpt::{
    load_object, module_state_from_object, module_state_to_object, optimizer_state_from_object,
    optimizer_state_to_object, save_object, scheduler_state_from_object, scheduler_state_to_object,
    Object,
};
use tempo::nn::{Linear, Module, Sequential, StateDict};
use tempo::optim::{build_optimizer, Optimizer, OptimizerSpec};
use tempo::param_groups::{Dict, OptimizerParamGroups, Value};
use tempo::sched::{build_scheduler, LRScheduler, SchedulerSpec};
use tempo::tensor::{Generator, Tensor};

use crate::Outcome;

const OPTIMIZER: &str = r#"{"type": "Adam", "kwargs": {"lr": 0.1}}"#;
const SCHEDULER: &str = "CyclicLR(base_lr=1e-3, max_lr=0.1, step_size_up=1, \
                         mode=\"triangular2\", cycle_momentum=False)";
const EPOCHS: usize = 10;

const AFTER_HELP: &str = "\
The PyTorch program this reproduces:

  torch.manual_seed(0)
  net = NetX()                      # fc1 2->20, fc2 20->20, out 20->4, no activation
  targets = [torch.randint(0, 10, (4,)) for _ in range(10)]
  opt = torch.optim.Adam(net.parameters(), lr=0.1)
  sched = CyclicLR(opt, base_lr=1e-3, max_lr=0.1, step_size_up=1,
                   mode=\"triangular2\", cycle_momentum=False)
  for epoch in range(10):
      opt.zero_grad(); loss = torch.sum(targets[epoch] - net(torch.tensor([1.0, 2.0])))
      loss.backward(); opt.step(); sched.step()
      torch.save({...}, f\"demo-epoch-{epoch + 1:02}.tempo\")
  print(opt)                        # after reloading the last checkpoint

Examples:
  tempo demo
  tempo demo --run-dir /tmp/demo";

/// Arguments of `tempo demo`.
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct DemoArgs {
    /// Where the ten checkpoints go.
    #[arg(long, value_name = "DIR", default_value = "runs/demo")]
    pub(crate) run_dir: PathBuf,
}

/// The seed's network: three Linear layers named as in the PyTorch program.
fn net_x(rng: &mut Generator) -> Result<Sequential<f32>> {
    Ok(Sequential::new()
        .with_named("fc1", Linear::new(2, 20, true, rng))?
        .with_named("fc2", Linear::new(20, 20, true, rng))?
        .with_named("out", Linear::new(20, 4, true, rng))?)
}

/// What one step did.
struct StepLog {
    lr_used: f64,
    loss: f64,
    last_epoch_after: i64,
    lr_after: f64,
}

/// The optimizer and scheduler of the demo, built on a model's parameters.
struct Training {
    optimizer: Box<dyn Optimizer<f32>>,
    scheduler: Box<dyn LRScheduler>,
    /// The lr the optimizer was constructed with, before the scheduler wrote its own.
    lr_given: f64,
}

fn build(model: &Sequential<f32>) -> Result<Training> {
    let spec = OptimizerSpec::from_json(OPTIMIZER)?;
    let mut optimizer = build_optimizer(&spec, &model.parameters())?;
    let lr_given = optimizer.lr(0)?;
    let sched_spec: SchedulerSpec = SCHEDULER.parse()?;
    let groups: &mut dyn OptimizerParamGroups = optimizer.as_mut();
    let scheduler = build_scheduler(&sched_spec, groups)?;
    Ok(Training {
        optimizer,
        scheduler,
        lr_given,
    })
}

fn checkpoint_path(dir: &Path, epoch: usize) -> PathBuf {
    dir.join(format!("demo-epoch-{epoch:02}.tempo"))
}

/// Runs `tempo demo`.
pub(crate) fn run(args: &DemoArgs) -> Result<Outcome> {
    std::fs::create_dir_all(&args.run_dir)
        .with_context(|| format!("cannot create {}", args.run_dir.display()))?;
    let mut rng = Generator::new(0);
    let model = net_x(&mut rng)?;
    let targets: Vec<Vec<i64>> = (0..EPOCHS)
        .map(|_| rng.randint(0, 10, 4))
        .collect::<Result<_, _>>()?;
    let input = Tensor::<f32>::from_vec(&[1, 2], vec![1.0, 2.0])?;
    let Training {
        optimizer: mut opt,
        scheduler: mut sched,
        lr_given,
    } = build(&model)?;
    let lr_after_construction = opt.lr(0)?;
    let initial_lr = opt.initial_lr(0);

    let mut log = Vec::new();
    for (epoch, target) in targets.iter().enumerate() {
        let lr_used = opt.lr(0)?;
        opt.zero_grad();
        let prediction = model.forward(&input)?;
        let target = Tensor::from_vec(&[1, 4], target.iter().map(|&t| t as f32).collect())?;
        let loss = target.sub(&prediction)?.sum();
        loss.backward()?;
        opt.step()?;
        let groups: &mut dyn OptimizerParamGroups = opt.as_mut();
        sched.step(groups)?;
        let state = sched.state_dict();
        log.push(StepLog {
            lr_used,
            loss: f64::from(loss.item()?),
            last_epoch_after: state
                .get("last_epoch")
                .and_then(Value::as_i64)
                .unwrap_or(-1),
            lr_after: opt.lr(0)?,
        });
        save(
            &checkpoint_path(&args.run_dir, epoch + 1),
            epoch,
            &model,
            opt.as_ref(),
            sched.as_ref(),
        )?;
    }

    // Reload the last checkpoint into fresh objects, as a resuming PyTorch user would:
    // build the scheduler first, then load the optimizer's and the scheduler's states.
    let last = checkpoint_path(&args.run_dir, EPOCHS);
    let (model2, opt2, sched2) = reload(&last)?;
    let sched_state = sched2.state_dict();

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Trained the 2-20-20-4 net for {EPOCHS} steps; checkpoints in {}.",
        args.run_dir.display()
    );
    let _ = writeln!(
        out,
        "Reloaded {} ({} parameters) and printed the optimizer as PyTorch does:\n",
        last.display(),
        model2.parameters().iter().map(Tensor::numel).sum::<usize>()
    );
    out.push_str(&pytorch_repr(opt2.name(), &opt2.state_dict().param_groups));
    out.push_str("\n\n");
    out.push_str(&explain(
        lr_given,
        lr_after_construction,
        initial_lr,
        &sched_state,
        &log,
        opt2.lr(0)?,
    ));
    print!("{out}");
    Ok(Outcome::Done)
}

fn save(
    path: &Path,
    epoch: usize,
    model: &Sequential<f32>,
    opt: &dyn Optimizer<f32>,
    sched: &dyn LRScheduler,
) -> Result<()> {
    let object = Object::Dict(vec![
        (Object::Str("epoch".into()), Object::Int(epoch as i64)),
        (
            Object::Str("net_x_state_dict".into()),
            module_state_to_object(&model.state_dict().to_tensor_data()),
        ),
        (
            Object::Str("optimizer_state_dict".into()),
            optimizer_state_to_object(&opt.state_dict()),
        ),
        (
            Object::Str("scheduler".into()),
            scheduler_state_to_object(&sched.state_dict()),
        ),
    ]);
    save_object(path, &object).with_context(|| format!("cannot save {}", path.display()))
}

type Reloaded = (
    Sequential<f32>,
    Box<dyn Optimizer<f32>>,
    Box<dyn LRScheduler>,
);

fn reload(path: &Path) -> Result<Reloaded> {
    let object = load_object(path).with_context(|| format!("cannot load {}", path.display()))?;
    let get = |k: &str| {
        object
            .get(k)
            .with_context(|| format!("{} has no `{k}`", path.display()))
    };
    let model = net_x(&mut Generator::new(0))?;
    let weights = StateDict::from_tensor_data(module_state_from_object(get("net_x_state_dict")?)?)?;
    model.load_state_dict(&weights)?;
    let Training {
        optimizer: mut opt,
        scheduler: mut sched,
        ..
    } = build(&model)?;
    opt.load_state_dict(&optimizer_state_from_object(get("optimizer_state_dict")?)?)?;
    sched.load_state_dict(&scheduler_state_from_object(get("scheduler")?)?)?;
    Ok((model, opt, sched))
}

/// PyTorch's `Optimizer.__repr__`: the class name, then each group's keys (but `params`)
/// sorted, with `str()` of each value (Python's repr, but strings unquoted).
pub(crate) fn pytorch_repr(name: &str, groups: &[Dict]) -> String {
    let mut s = format!("{name} (");
    for (i, group) in groups.iter().enumerate() {
        let _ = write!(s, "\nParameter Group {i}\n");
        let mut keys: Vec<&str> = group.keys().filter(|k| *k != "params").collect();
        keys.sort_unstable();
        for key in keys {
            let value = match group.get(key) {
                Some(Value::Str(text)) => text.clone(),
                Some(v) => v.to_string(),
                None => continue,
            };
            let _ = writeln!(s, "    {key}: {value}");
        }
    }
    s.push(')');
    s
}

fn f64_list(state: &Dict, key: &str) -> Vec<f64> {
    state
        .get(key)
        .and_then(Value::as_slice)
        .map(|items| items.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

fn repr(v: f64) -> String {
    Value::Float(v).to_string()
}

/// Which lr each step used and why, from the numbers of this run.
fn explain(
    lr_given: f64,
    lr_after_construction: f64,
    initial_lr: Option<f64>,
    sched: &Dict,
    log: &[StepLog],
    final_lr: f64,
) -> String {
    let base = f64_list(sched, "base_lrs")
        .first()
        .copied()
        .unwrap_or(f64::NAN);
    let max = f64_list(sched, "max_lrs")
        .first()
        .copied()
        .unwrap_or(f64::NAN);
    let total = sched
        .get("total_size")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    let ratio = sched
        .get("step_ratio")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    let last_epoch = sched
        .get("last_epoch")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    let step_count = sched
        .get("_step_count")
        .and_then(Value::as_i64)
        .unwrap_or(-1);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Why lr is {} and not Adam's lr={}:",
        repr(final_lr),
        repr(lr_given)
    );
    let _ = writeln!(
        s,
        "  * CyclicLR's constructor wrote base_lr = {} into the group's lr, then recorded\n    \
         initial_lr = {} (a setdefault of the lr it had just written) and applied step 0\n    \
         (last_epoch = 0: cycle 1, x = 0, lr = base_lr). The first step already used lr = {};\n    \
         Adam's lr={} was overwritten before any step.",
        repr(base),
        initial_lr.map_or("(missing)".into(), repr),
        repr(lr_after_construction),
        repr(lr_given),
    );
    let _ = writeln!(
        s,
        "  * A cycle is step_size_up + step_size_down = {} steps (step_ratio {}). After step k,\n    \
         last_epoch = k, cycle = floor(1 + k/{total}), x = 1 + k/{total} - cycle: odd k sit at the\n    \
         top (x = {ratio}), lr = base_lr + (max_lr - base_lr) * 2^-(cycle-1); even k are back at base_lr.",
        repr(total),
        repr(ratio),
        total = repr(total),
        ratio = repr(ratio),
    );
    let _ = writeln!(
        s,
        "\n  step  lr used               loss          last_epoch after  lr for next step"
    );
    for (i, l) in log.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {:>4}  {:<20}  {:>12.6}  {:>16}  {}",
            i + 1,
            repr(l.lr_used),
            l.loss,
            l.last_epoch_after,
            repr(l.lr_after)
        );
    }
    let peaks: Vec<String> = log
        .iter()
        .filter(|l| l.last_epoch_after % 2 == 1)
        .map(|l| repr(l.lr_after))
        .collect();
    let _ = writeln!(
        s,
        "\n  * triangular2 halves the climb above base_lr every cycle; the peaks (from max_lr = {}) were\n    \
         {}.\n    The 0.1 that step 2 used is the first peak, max_lr, not Adam's lr.",
        repr(max),
        peaks.join(", ")
    );
    let _ = writeln!(
        s,
        "  * After {} steps last_epoch = {last_epoch} is {}, so lr = {} (base_lr), and initial_lr is still {}.\n    \
         The scheduler has counted _step_count = {step_count} (its constructor's step plus {}).",
        log.len(),
        if last_epoch % 2 == 0 { "even" } else { "odd" },
        repr(final_lr),
        initial_lr.map_or("(missing)".into(), repr),
        log.len(),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_sorts_keys_skips_params_and_unquotes_strings() {
        let mut g = Dict::new();
        g.insert("lr", 0.001);
        g.insert("betas", Value::Tuple(vec![0.9.into(), 0.999.into()]));
        g.insert("params", Value::List(vec![Value::Int(0)]));
        g.insert("eps", 1e-8);
        g.insert("foreach", Value::None);
        g.insert("mode", "triangular2");
        assert_eq!(
            pytorch_repr("Adam", &[g]),
            "Adam (\nParameter Group 0\n    betas: (0.9, 0.999)\n    eps: 1e-08\n    foreach: None\n    lr: 0.001\n    mode: triangular2\n)"
        );
    }
}
