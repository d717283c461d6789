//! `tempo train`: an MLP on the digits (or a CSV), with checkpoints, resume and pictures.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::Axis;
use tempo::nn::{cross_entropy, Linear, Module, ReLU, Reduction, Sequential, StateDict};
use tempo::optim::{build_optimizer, Optimizer, OptimizerSpec};
use tempo::param_groups::OptimizerParamGroups;
use tempo::sched::{build_scheduler, LRScheduler, SchedulerSpec};
use tempo::tensor::{no_grad, Generator, Tensor};

use crate::checkpoint::{self, Progress};
use crate::config::{StepEvery, TrainConfig};
use crate::data::{self, Dataset};
use crate::metrics::{EpochRecord, Metrics, StepRecord, CSV_LAYOUT};
use crate::Outcome;

#[path = "distributed.rs"]
mod distributed;

const AFTER_HELP: &str = "\
With no options, trains a 64-128-10 MLP on the embedded handwritten digits with AdamW
and OneCycleLR (configs/default.toml), saving a checkpoint every epoch in
runs/<timestamp>. Options override the config file.

The run directory gets config.toml, the checkpoints (ckpt-<step>.tempo, the last
--keep of them), metrics.csv, lr.svg (each group's lr and cycled momentum per step) and
loss.svg (training loss per step, test accuracy per epoch). Ctrl-C saves a checkpoint at
the next batch boundary and exits with code 130; --resume continues it bit for bit.
--resume also takes a PyTorch checkpoint (.pt, Lightning's .ckpt) whose model,
optimizer and scheduler match the config (same layer names and shapes, optimizer and
scheduler classes): a new run continues from its step; a mismatch is an error.
A NaN or infinite batch loss stops the run (exit code 1) with the step and the last
good checkpoint, saving nothing; --allow-nonfinite-loss keeps going.
A ReduceLROnPlateau scheduler follows the test loss (step_every = \"epoch\") or the
mini-batch loss (step_every = \"batch\").

";

const EXAMPLES: &str = "\
Examples:
  tempo train
  tempo train --epochs 5 --batch-size 64 --lr 0.02 --run-dir runs/short
  tempo train --config my.toml --data my.csv --target-column label
  tempo train --resume runs/short
  tempo train --config my.toml --resume lightning/last.ckpt --run-dir runs/continued";

/// Arguments of `tempo train`.
#[derive(Debug, Default, clap::Args)]
#[command(after_help = format!("{AFTER_HELP}{CSV_LAYOUT}\n\n{EXAMPLES}"))]
pub(crate) struct TrainArgs {
    /// A TOML configuration (see configs/default.toml); the options below override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Passes over the training set.
    #[arg(long, value_name = "N")]
    pub(crate) epochs: Option<usize>,
    /// Samples per mini-batch.
    #[arg(long, value_name = "N")]
    pub(crate) batch_size: Option<usize>,
    /// The optimizer's lr; for OneCycleLR and CyclicLR, their peak max_lr.
    #[arg(long, value_name = "LR")]
    pub(crate) lr: Option<f64>,
    /// Seeds the split, the model's init and the shuffles.
    #[arg(long, value_name = "N")]
    pub(crate) seed: Option<u64>,
    /// Hidden layer sizes, comma-separated (e.g. 256,128).
    #[arg(long, value_delimiter = ',', value_name = "N,...")]
    pub(crate) hidden: Option<Vec<usize>>,
    /// A CSV file with a header row instead of the embedded digits.
    #[arg(long, value_name = "CSV")]
    pub(crate) data: Option<PathBuf>,
    /// The CSV's integer class column (default: the last column).
    #[arg(long, value_name = "NAME")]
    pub(crate) target_column: Option<String>,
    /// Where checkpoints, metrics and pictures go (default: `runs/<timestamp>`).
    #[arg(long, value_name = "DIR")]
    pub(crate) run_dir: Option<PathBuf>,
    /// Save a checkpoint every N epochs (the last epoch is always saved).
    #[arg(long, value_name = "N")]
    pub(crate) checkpoint_every: Option<usize>,
    /// Keep the newest N checkpoints.
    #[arg(long, value_name = "N")]
    pub(crate) keep: Option<usize>,
    /// Continue the run in RUN_DIR from its latest checkpoint, with its saved config; or
    /// continue from a PyTorch checkpoint (.pt, Lightning's .ckpt) whose model,
    /// optimizer and scheduler match this run's config (--config and the options
    /// above), into a new --run-dir.
    #[arg(long, value_name = "RUN_DIR|FILE")]
    pub(crate) resume: Option<PathBuf>,
    /// Keep training when a batch's loss is NaN or infinite (by default the run stops
    /// there, naming the step and the last good checkpoint, and saves nothing).
    #[arg(long)]
    pub(crate) allow_nonfinite_loss: bool,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub(crate) quiet: bool,
    /// Train on every rank of an MPI run: `mpirun -np N tempo train --distributed`.
    #[arg(long)]
    pub(crate) distributed: bool,
    /// Threads an optimizer step may run on, this one included, as PyTorch's
    /// torch.set_num_threads (default: every CPU the process may run on). With
    /// --distributed and ranks that mpirun does not bind to cores, give each rank its
    /// share. No number changes a result.
    #[arg(long, value_name = "N")]
    pub(crate) threads: Option<usize>,
    /// Sleep this long after each batch (to watch or interrupt a short run).
    #[arg(long, hide = true, value_name = "MS")]
    pub(crate) step_delay_ms: Option<u64>,
}

/// The model: Linear layers with ReLU between them.
fn build_model(sizes: &[usize], rng: &mut Generator) -> Result<Sequential<f32>> {
    let mut model = Sequential::new();
    for (i, pair) in sizes.windows(2).enumerate() {
        if i > 0 {
            model.push(ReLU)?;
        }
        model.push(Linear::new(pair[0], pair[1], true, rng))?;
    }
    Ok(model)
}

/// Everything a run needs, built from its config.
struct Run {
    config: TrainConfig,
    dir: PathBuf,
    train: Dataset,
    test: Dataset,
    model: Sequential<f32>,
    optimizer: Box<dyn Optimizer<f32>>,
    scheduler: Option<Box<dyn LRScheduler>>,
    step_every: StepEvery,
    progress: Progress,
}

/// Runs `tempo train`.
pub(crate) fn run(args: TrainArgs) -> Result<Outcome> {
    if let Some(threads) = args.threads {
        tempo::optim::set_num_threads(threads).context("--threads")?;
    }
    if args.distributed {
        return distributed::run(args);
    }
    let started = Instant::now();
    let mut run = match &args.resume {
        Some(file) if file.is_file() => resume_foreign(file, &args)?,
        Some(dir) => {
            refuse_overrides(&args)?;
            resume(dir, &args)?
        }
        None => start(&args)?,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        // A second handler cannot be installed in one process; training then simply
        // cannot be interrupted gracefully, which is not worth failing for.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    let quiet = args.quiet;
    let outcome = train_loop(&mut run, &args, &interrupted)?;
    run.progress.metrics.write_all(&run.dir)?;
    match outcome {
        Outcome::Interrupted => {
            eprintln!(
                "interrupted: saved a checkpoint after step {} in {}\nresume with: tempo train --resume {}",
                run.progress.step,
                run.dir.display(),
                shell_quote(&run.dir)
            );
        }
        Outcome::Done => {
            if !quiet {
                let acc = run
                    .progress
                    .metrics
                    .epochs
                    .last()
                    .map_or(0.0, |e| e.test_accuracy);
                println!(
                    "done: test accuracy {:.2}% after {} epochs in {:.1}s; checkpoints, metrics.csv, lr.svg and loss.svg are in {}",
                    100.0 * acc,
                    run.config.epochs,
                    started.elapsed().as_secs_f64(),
                    run.dir.display()
                );
            }
        }
    }
    Ok(outcome)
}

/// A new run: config, overrides, a fresh run directory.
fn start(args: &TrainArgs) -> Result<Run> {
    let mut config = match &args.config {
        Some(path) => TrainConfig::load(path)?,
        None => TrainConfig::default_config()?,
    };
    apply_overrides(&mut config, args)?;
    config
        .validate()
        .context("after applying the command-line options")?;
    let dir = match &args.run_dir {
        Some(d) => d.clone(),
        None => default_run_dir(),
    };
    if dir.exists() && checkpoint::latest(&dir)?.is_some() {
        bail!(
            "{} already holds checkpoints: continue it with --resume {}, or choose another --run-dir",
            dir.display(),
            shell_quote(&dir)
        );
    }
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create run directory {}", dir.display()))?;
    let config_text = config.to_toml()?;
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, &config_text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    build(config, config_text, dir)
}

/// A run directory is continued with its own config: only --checkpoint-every and
/// --keep may change.
fn refuse_overrides(args: &TrainArgs) -> Result<()> {
    let given: Vec<&str> = [
        ("--config", args.config.is_some()),
        ("--epochs", args.epochs.is_some()),
        ("--batch-size", args.batch_size.is_some()),
        ("--lr", args.lr.is_some()),
        ("--seed", args.seed.is_some()),
        ("--hidden", args.hidden.is_some()),
        ("--data", args.data.is_some()),
        ("--target-column", args.target_column.is_some()),
        ("--run-dir", args.run_dir.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    if !given.is_empty() {
        bail!(
            "--resume with a run directory continues it with its saved config, so {} cannot be used with it",
            given.join(", ")
        );
    }
    Ok(())
}

/// A new run, from this run's config, that continues from a PyTorch checkpoint: the
/// model, optimizer and scheduler state dicts in `file` (a `torch.save` dict with
/// them at the top level, a Lightning `.ckpt`, or a tempo checkpoint) must match the
/// config's (same parameter names and shapes, same optimizer class, same scheduler
/// class), or nothing is trained and the error names the mismatch.
fn resume_foreign(file: &Path, args: &TrainArgs) -> Result<Run> {
    let object = tempo::ckpt::read_any(file)
        .with_context(|| format!("cannot resume from {}", file.display()))?;
    let mut run = start(args)?;
    match continue_from(&mut run, file, &object, args) {
        Ok(()) => Ok(run),
        Err(e) => {
            // Leave no trace of a run that did not start: the new directory held only
            // its config (remove_dir removes only an empty directory).
            let _ = std::fs::remove_file(run.dir.join("config.toml"));
            let _ = std::fs::remove_dir(&run.dir);
            Err(e)
        }
    }
}

/// Puts the state dicts of a foreign checkpoint into a fresh run; see [`resume_foreign`].
fn continue_from(
    run: &mut Run,
    file: &Path,
    object: &tempo::ckpt::Object,
    args: &TrainArgs,
) -> Result<()> {
    let here = |what: &str| format!("{}: {what}", file.display());
    let parts = ForeignParts::find(object);

    // The model: the same names and shapes, in any order.
    let model_obj = parts.model.with_context(|| {
        here(
            "no model state dict (`state_dict`, `model`, `model_state_dict`, or a dict of tensors)",
        )
    })?;
    let expected = run.model.state_dict().to_tensor_data();
    let mut found = tempo::ckpt::module_state_from_object(model_obj)
        .map_err(|e| anyhow::anyhow!("{}", here(&format!("model: {e}"))))?;
    // Lightning prefixes the module's names with its attribute (`model.`).
    if let Some(prefix) = common_prefix(&found, &expected) {
        for (name, _) in &mut found {
            *name = name[prefix.len()..].to_string();
        }
    }
    for (name, data) in &expected {
        match found.iter().find(|(n, _)| n == name) {
            None => bail!(
                "{}",
                here(&format!(
                    "the model has no `{name}` (the run's model has {}; the file's has {})",
                    names(&expected),
                    names(&found)
                ))
            ),
            Some((_, d)) if d.shape() != data.shape() => bail!(
                "{}",
                here(&format!(
                    "`{name}` has shape {:?}, the run's model needs {:?}",
                    d.shape(),
                    data.shape()
                ))
            ),
            Some(_) => {}
        }
    }
    if found.len() != expected.len() {
        bail!(
            "{}",
            here(&format!(
                "the model has {} tensors, the run's has {} ({})",
                found.len(),
                expected.len(),
                names(&expected)
            ))
        );
    }
    let ordered: Vec<_> = expected
        .iter()
        .filter_map(|(name, _)| found.iter().find(|(n, _)| n == name).cloned())
        .collect();
    let model = StateDict::from_tensor_data(ordered)
        .map_err(|e| anyhow::anyhow!("{}", here(&format!("model: {e}"))))?;
    run.model
        .load_state_dict(&model)
        .map_err(|e| anyhow::anyhow!("{}", here(&format!("model: {e}"))))?;

    // The optimizer: the config's class, told by its group keys.
    let opt_obj = parts.optimizer.with_context(|| {
        here("no optimizer state dict (`optimizer`, `optimizer_states`, `optimizer_state_dict`)")
    })?;
    let want = run.config.optimizer_type().to_string();
    let group = opt_obj
        .get("param_groups")
        .and_then(tempo::ckpt::Object::items)
        .and_then(<[_]>::first);
    let kind = group.and_then(crate::inspect::infer_optimizer);
    if kind != Some(want.as_str()) {
        bail!(
            "{}",
            here(&format!(
                "the optimizer is {}, the run's config has {want}",
                kind.unwrap_or("not one of tempo's optimizers")
            ))
        );
    }
    let optimizer = tempo::ckpt::optimizer_state_from_object(opt_obj)
        .map_err(|e| anyhow::anyhow!("{}", here(&format!("optimizer: {e}"))))?;
    run.optimizer
        .load_state_dict(&optimizer)
        .map_err(|e| anyhow::anyhow!("{}", here(&format!("optimizer: {e}"))))?;

    // The scheduler: present in both or in neither, the same class.
    match (run.scheduler.as_mut(), parts.scheduler) {
        (None, None) => {}
        (Some(_), None) => bail!(
            "{}",
            here(&format!(
                "no scheduler state dict, but the run's config has a {}",
                run.config.scheduler_type().unwrap_or("scheduler")
            ))
        ),
        (None, Some(_)) => bail!(
            "{}",
            here("a scheduler state dict, but the run's config has no scheduler")
        ),
        (Some(s), Some(state)) => {
            let want = run.config.scheduler_type().unwrap_or("?").to_string();
            let kind = crate::inspect::infer_scheduler(state);
            if !kind.split(" or ").any(|k| k == want) {
                bail!(
                    "{}",
                    here(&format!(
                        "the scheduler is {kind}, the run's config has {want}"
                    ))
                );
            }
            let dict = tempo::ckpt::scheduler_state_from_object(state)
                .map_err(|e| anyhow::anyhow!("{}", here(&format!("scheduler: {e}"))))?;
            s.load_state_dict(&dict)
                .map_err(|e| anyhow::anyhow!("{}", here(&format!("scheduler: {e}"))))?;
        }
    }

    // Where it stopped: the file's step (Lightning's `global_step`), else the
    // optimizer's.
    let step = ["global_step", "step"]
        .iter()
        .find_map(|k| object.get(k).and_then(tempo::ckpt::Object::as_i64))
        .or_else(|| {
            optimizer
                .state
                .iter()
                .filter_map(|(_, st)| {
                    st.entries
                        .iter()
                        .find(|(k, _)| k == "step")
                        .and_then(|(_, v)| v.as_f64())
                })
                .reduce(f64::max)
                .map(|s| s as i64)
        })
        .unwrap_or(0);
    let step = u64::try_from(step).with_context(|| here(&format!("a negative step {step}")))?;
    let batches = run.train.len().div_ceil(run.config.batch_size) as u64;
    run.progress.step = step;
    run.progress.epochs_done = step / batches.max(1);
    run.progress.batches_done = step % batches.max(1);
    if !args.quiet {
        println!(
            "continuing {} from step {step} (epoch {}, batch {}); the data order is this run's own",
            file.display(),
            run.progress.epochs_done + 1,
            run.progress.batches_done
        );
    }
    Ok(())
}

/// Where a foreign checkpoint keeps its model, optimizer and scheduler state dicts.
struct ForeignParts<'a> {
    model: Option<&'a tempo::ckpt::Object>,
    optimizer: Option<&'a tempo::ckpt::Object>,
    scheduler: Option<&'a tempo::ckpt::Object>,
}

impl<'a> ForeignParts<'a> {
    fn find(o: &'a tempo::ckpt::Object) -> ForeignParts<'a> {
        use tempo::ckpt::Object;
        let first = |keys: &[&str]| keys.iter().find_map(|k| o.get(k));
        let first_item = |k: &str| o.get(k).and_then(Object::items).and_then(<[_]>::first);
        let is_model = |v: &&Object| {
            v.entries().is_some_and(|e| {
                !e.is_empty()
                    && e.iter()
                        .all(|(k, t)| k.as_str().is_some() && t.as_tensor().is_some())
            })
        };
        let model = first(&["state_dict", "model", "model_state_dict", "net"])
            .or_else(|| o.entries()?.iter().map(|(_, v)| v).find(is_model))
            .or_else(|| Some(o).filter(is_model));
        let optimizer = first(&["optimizer", "optimizer_state_dict"])
            .or_else(|| first_item("optimizer_states"))
            .filter(|v| v.get("param_groups").is_some());
        let scheduler = first(&["scheduler", "lr_scheduler", "scheduler_state_dict"])
            .or_else(|| first_item("lr_schedulers"))
            .map(|v| {
                v.get("scheduler")
                    .filter(|s| s.get("last_epoch").is_some())
                    .unwrap_or(v)
            })
            .filter(|v| v.get("last_epoch").is_some() || v.get("_last_lr").is_some());
        ForeignParts {
            model,
            optimizer,
            scheduler,
        }
    }
}

/// A prefix (`model.`) that, taken off every name in `found`, gives names in
/// `expected`, if the names do not match as they are.
fn common_prefix(
    found: &[(String, tempo::tensor::TensorData)],
    expected: &[(String, tempo::tensor::TensorData)],
) -> Option<String> {
    let (first, _) = expected.first()?;
    if found.iter().any(|(n, _)| n == first) {
        return None;
    }
    let (name, _) = found
        .iter()
        .find(|(n, _)| n.ends_with(&format!(".{first}")))?;
    let prefix = name[..name.len() - first.len()].to_string();
    found
        .iter()
        .all(|(n, _)| n.starts_with(&prefix))
        .then_some(prefix)
}

fn names(entries: &[(String, tempo::tensor::TensorData)]) -> String {
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    names.join(", ")
}

/// An interrupted or finished run, from its directory's config and latest checkpoint.
fn resume(dir: &Path, args: &TrainArgs) -> Result<Run> {
    let (path, saved, skipped) = checkpoint::load_latest(dir)?.with_context(|| {
        format!(
            "{} has no checkpoint (ckpt-*.tempo) to resume from",
            dir.display()
        )
    })?;
    for line in &skipped {
        eprintln!("warning: {line}");
    }
    if !skipped.is_empty() {
        eprintln!(
            "resuming from {}, the newest intact checkpoint",
            path.display()
        );
    }
    let mut config = TrainConfig::parse(&saved.progress.config, &path.display().to_string())?;
    if let Some(n) = args.checkpoint_every {
        config.checkpoint.every = n;
    }
    if let Some(n) = args.keep {
        config.checkpoint.keep = n;
    }
    let mut run = build(config, saved.progress.config.clone(), dir.to_path_buf())?;
    let model = StateDict::from_tensor_data(saved.model)
        .map_err(|e| anyhow::anyhow!("{}: model: {e}", path.display()))?;
    run.model
        .load_state_dict(&model)
        .map_err(|e| anyhow::anyhow!("{}: model: {e}", path.display()))?;
    run.optimizer
        .load_state_dict(&saved.optimizer)
        .map_err(|e| anyhow::anyhow!("{}: optimizer: {e}", path.display()))?;
    match (&mut run.scheduler, &saved.scheduler) {
        (Some(s), Some(state)) => s
            .load_state_dict(state)
            .map_err(|e| anyhow::anyhow!("{}: scheduler: {e}", path.display()))?,
        (None, None) => {}
        _ => bail!(
            "{}: the checkpoint and its config disagree on whether there is a scheduler",
            path.display()
        ),
    }
    run.progress = saved.progress;
    Ok(run)
}

fn apply_overrides(config: &mut TrainConfig, args: &TrainArgs) -> Result<()> {
    if let Some(v) = args.epochs {
        config.epochs = v;
    }
    if let Some(v) = args.batch_size {
        config.batch_size = v;
    }
    if let Some(v) = args.seed {
        config.seed = v;
    }
    if let Some(v) = &args.hidden {
        config.model.hidden = v.clone();
    }
    if let Some(v) = &args.data {
        config.data.path = Some(v.clone());
    }
    if let Some(v) = &args.target_column {
        config.data.target_column = Some(v.clone());
    }
    if let Some(v) = args.checkpoint_every {
        config.checkpoint.every = v;
    }
    if let Some(v) = args.keep {
        config.checkpoint.keep = v;
    }
    if let Some(lr) = args.lr {
        if !(lr.is_finite() && lr > 0.0) {
            bail!("--lr must be a positive number, found {lr}");
        }
        config.set_lr(lr)?;
    }
    Ok(())
}

/// Data, split, model, optimizer and scheduler, as a fresh run builds them.
fn build(config: TrainConfig, config_text: String, dir: PathBuf) -> Result<Run> {
    let data = match &config.data.path {
        None => data::digits(config.data.scale.unwrap_or(data::DIGITS_SCALE))?,
        Some(path) => data::csv_file(
            path,
            config.data.target_column.as_deref(),
            config.data.scale.unwrap_or(1.0),
        )?,
    };
    // One generator drives everything, in this order: the split, the model's init, then
    // one shuffle per epoch.
    let mut rng = Generator::new(config.seed);
    let (train, test) = data::split(&data, config.data.test_fraction, || rng.next_u32())?;
    let mut sizes = vec![data.num_features()];
    sizes.extend(&config.model.hidden);
    sizes.push(data.num_classes);
    let model = build_model(&sizes, &mut rng)?;
    let spec: OptimizerSpec = serde_json::from_value(config.optimizer.clone())
        .map_err(|e| anyhow::anyhow!("bad [optimizer]: {e}"))?;
    let mut optimizer = build_optimizer(&spec, &model.parameters())
        .map_err(|e| anyhow::anyhow!("bad [optimizer]: {e}"))?;
    let batches = train.len().div_ceil(config.batch_size);
    let scheduler = match config.scheduler_spec(batches)? {
        None => None,
        Some(json) => {
            let spec: SchedulerSpec = serde_json::from_value(json)
                .map_err(|e| anyhow::anyhow!("bad [scheduler]: {e}"))?;
            let groups: &mut dyn OptimizerParamGroups = optimizer.as_mut();
            Some(
                build_scheduler(&spec, groups)
                    .map_err(|e| anyhow::anyhow!("bad [scheduler]: {e}"))?,
            )
        }
    };
    let step_every = config.step_every()?;
    let progress = Progress {
        epochs_done: 0,
        batches_done: 0,
        step: 0,
        rng: rng.state(),
        metrics: Metrics::default(),
        config: config_text,
    };
    Ok(Run {
        config,
        dir,
        train,
        test,
        model,
        optimizer,
        scheduler,
        step_every,
        progress,
    })
}

/// What the loop saw when it stopped.
fn train_loop(run: &mut Run, args: &TrainArgs, interrupted: &AtomicBool) -> Result<Outcome> {
    let show_lines = !args.quiet;
    let show_bar = !args.quiet && std::io::stdout().is_terminal();
    let batch_size = run.config.batch_size;
    let n_train = run.train.len();
    let batches = n_train.div_ceil(batch_size) as u64;
    let epochs = run.config.epochs as u64;
    let groups = run.optimizer.num_groups();
    if run.progress.epochs_done >= epochs {
        if show_lines {
            println!("{} already finished its {epochs} epochs", run.dir.display());
        }
        return Ok(Outcome::Done);
    }
    if show_lines {
        let acc_hint = if run.progress.step > 0 {
            format!(", resuming after step {}", run.progress.step)
        } else {
            String::new()
        };
        println!(
            "training {} with {} + {} for {epochs} epochs of {batches} batches{acc_hint}",
            describe_model(&run.model),
            run.config.optimizer_type(),
            run.config.scheduler_type().unwrap_or("no scheduler"),
        );
        println!(
            "data: {}, {} train / {} test samples, {} classes; run directory {}",
            run.train.source,
            n_train,
            run.test.len(),
            run.train.num_classes,
            run.dir.display()
        );
    }
    while run.progress.epochs_done < epochs {
        let epoch = run.progress.epochs_done + 1;
        let epoch_started = Instant::now();
        let mut rng = Generator::new(run.config.seed);
        rng.set_state(&run.progress.rng)
            .map_err(|e| anyhow::anyhow!("restoring the generator: {e}"))?;
        let mut order: Vec<usize> = (0..n_train).collect();
        data::shuffle(&mut order, || rng.next_u32());
        let bar = progress_bar(show_bar, batches, epoch, epochs);
        bar.set_position(run.progress.batches_done);
        while run.progress.batches_done < batches {
            if interrupted.load(Ordering::SeqCst) {
                bar.finish_and_clear();
                save_checkpoint(run)?;
                return Ok(Outcome::Interrupted);
            }
            let b = run.progress.batches_done as usize;
            let rows = &order[b * batch_size..((b + 1) * batch_size).min(n_train)];
            let lrs: Vec<f64> = (0..groups)
                .map(|g| run.optimizer.lr(g).unwrap_or(f64::NAN))
                .collect();
            let momenta: Vec<Option<f64>> = (0..groups)
                .map(|g| run.optimizer.momentum(g).ok())
                .collect();
            let loss = train_batch(run, rows)?;
            if !loss.is_finite() && !args.allow_nonfinite_loss {
                bar.finish_and_clear();
                return Err(diverged(run, loss, epoch));
            }
            run.progress.step += 1;
            run.progress.batches_done += 1;
            if let (Some(s), StepEvery::Batch) = (run.scheduler.as_mut(), run.step_every) {
                // ReduceLROnPlateau stepped per batch follows the training loss.
                step_scheduler(s.as_mut(), run.optimizer.as_mut(), loss)?;
            }
            run.progress.metrics.steps.push(StepRecord {
                step: run.progress.step,
                epoch,
                lrs: lrs.clone(),
                momenta,
                loss,
            });
            bar.set_message(format!("loss {loss:.4}  lr {}", fmt_lr(lrs[0])));
            bar.inc(1);
            if let Some(ms) = args.step_delay_ms {
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
        bar.finish_and_clear();
        // The epoch is complete: evaluate, step a per-epoch scheduler, maybe save.
        let (test_loss, test_accuracy) = evaluate(&run.model, &run.test)?;
        if let (Some(s), StepEvery::Epoch) = (run.scheduler.as_mut(), run.step_every) {
            // ReduceLROnPlateau stepped per epoch follows the held-out loss.
            step_scheduler(s.as_mut(), run.optimizer.as_mut(), test_loss)?;
        }
        let epoch_steps = &run.progress.metrics.steps;
        let this_epoch: Vec<f64> = epoch_steps
            .iter()
            .filter(|s| s.epoch == epoch)
            .map(|s| s.loss)
            .collect();
        let train_loss = this_epoch.iter().sum::<f64>() / this_epoch.len().max(1) as f64;
        let lrs: Vec<f64> = (0..groups)
            .map(|g| run.optimizer.lr(g).unwrap_or(f64::NAN))
            .collect();
        run.progress.metrics.epochs.push(EpochRecord {
            epoch,
            step: run.progress.step,
            lrs: lrs.clone(),
            train_loss,
            test_accuracy,
        });
        run.progress.epochs_done = epoch;
        run.progress.batches_done = 0;
        run.progress.rng = rng.state();
        let every = run.config.checkpoint.every as u64;
        let saved = if epoch == epochs || (every > 0 && epoch.is_multiple_of(every)) {
            save_checkpoint(run)?;
            "  [checkpoint]"
        } else {
            ""
        };
        if show_lines {
            println!(
                "epoch {epoch:>3}/{epochs}  train loss {train_loss:.4}  test accuracy {:>6.2}%  lr {}  {:.2}s{saved}",
                100.0 * test_accuracy,
                fmt_lr(lrs[0]),
                epoch_started.elapsed().as_secs_f64(),
            );
        }
    }
    Ok(Outcome::Done)
}

/// The error of a run whose loss became `loss` (NaN or infinite) at the next step:
/// which step, and the checkpoint to go back to. Nothing of the diverged state is saved.
fn diverged(run: &Run, loss: f64, epoch: u64) -> anyhow::Error {
    let step = run.progress.step + 1;
    let last = match checkpoint::latest(&run.dir) {
        Ok(Some(path)) => format!(
            "the last good checkpoint is {} (continue from it with: tempo train --resume {})",
            path.display(),
            shell_quote(&run.dir)
        ),
        Ok(None) => "no checkpoint was saved before it".to_string(),
        Err(e) => format!("the run directory cannot be listed ({e})"),
    };
    anyhow::anyhow!(
        "the training loss is {loss} at step {step} (epoch {epoch}, batch {} of the epoch): \
         the run diverged, so it stops without saving; {last}; a smaller --lr may help, \
         and --allow-nonfinite-loss keeps going instead",
        run.progress.batches_done + 1
    )
}

/// One optimizer step on the rows `rows` of the training set; returns the batch loss.
fn train_batch(run: &mut Run, rows: &[usize]) -> Result<f64> {
    let x = run.train.features.select(Axis(0), rows).into_dyn();
    let y: Vec<usize> = rows.iter().map(|&r| run.train.labels[r]).collect();
    run.optimizer.zero_grad();
    let logits = run.model.forward(&Tensor::from_array(x))?;
    let loss = cross_entropy(&logits, &y, Reduction::Mean)?;
    loss.backward()?;
    run.optimizer.step().context("optimizer step")?;
    Ok(f64::from(loss.item()?))
}

/// Mean cross-entropy and accuracy on `data`.
fn evaluate(model: &Sequential<f32>, data: &Dataset) -> Result<(f64, f64)> {
    no_grad(|| {
        let logits = model.forward(&Tensor::from_array(data.features.clone().into_dyn()))?;
        let loss = cross_entropy(&logits, &data.labels, Reduction::Mean)?;
        let values = logits.to_array();
        let mut correct = 0usize;
        for (row, &label) in values.outer_iter().zip(&data.labels) {
            let predicted = row
                .iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0;
            correct += usize::from(predicted == label);
        }
        Ok((
            f64::from(loss.item()?),
            correct as f64 / data.len().max(1) as f64,
        ))
    })
}

fn save_checkpoint(run: &Run) -> Result<()> {
    let checkpointer = checkpoint::checkpointer(&run.dir, run.config.checkpoint.keep)?;
    checkpoint::save(
        &checkpointer,
        run.model.state_dict().to_tensor_data(),
        run.optimizer.state_dict(),
        run.scheduler.as_ref().map(|s| s.state_dict()),
        &run.progress,
    )?;
    Ok(())
}

fn progress_bar(visible: bool, batches: u64, epoch: u64, epochs: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(batches),
        if visible {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    let style = ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} batches  {msg}  {elapsed_precise}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(format!("{epoch:>3}/{epochs}"));
    bar
}

fn describe_model(model: &Sequential<f32>) -> String {
    let shapes: Vec<String> = model
        .named_parameters()
        .iter()
        .filter(|(n, _)| n.ends_with("weight"))
        .map(|(_, t)| t.shape())
        .enumerate()
        .flat_map(|(i, s)| {
            // weight is [out, in]
            let mut v = Vec::new();
            if i == 0 {
                v.push(s.get(1).copied().unwrap_or(0).to_string());
            }
            v.push(s.first().copied().unwrap_or(0).to_string());
            v
        })
        .collect();
    format!("a {} MLP", shapes.join("-"))
}

fn fmt_lr(lr: f64) -> String {
    if lr != 0.0 && lr.abs() < 1e-3 {
        format!("{lr:.3e}")
    } else {
        format!("{lr:.5}")
    }
}

/// `runs/<UTC date and time>`, with a suffix if that exists already.
fn default_run_dir() -> PathBuf {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let stamp = format!(
        "{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let base = Path::new("runs").join(&stamp);
    let mut dir = base.clone();
    let mut n = 2;
    while dir.exists() {
        dir = Path::new("runs").join(format!("{stamp}-{n}"));
        n += 1;
    }
    dir
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A path as it can be pasted into a shell.
fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@,".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Steps the run's scheduler: ReduceLROnPlateau follows `metric`, the others ignore it.
fn step_scheduler(
    s: &mut dyn LRScheduler,
    groups: &mut dyn OptimizerParamGroups,
    metric: f64,
) -> Result<()> {
    if s.needs_metric() {
        s.step_with_metric(groups, metric)
    } else {
        s.step(groups)
    }
    .context("scheduler step")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_from_day_counts() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    #[test]
    fn model_layers_follow_the_sizes() {
        let mut rng = Generator::new(0);
        let model = build_model(&[64, 128, 10], &mut rng).unwrap();
        let names: Vec<String> = model
            .named_parameters()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
        assert_eq!(describe_model(&model), "a 64-128-10 MLP");
    }

    #[test]
    fn a_diverged_run_names_its_step_and_last_good_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let config = TrainConfig::default_config().unwrap();
        let text = config.to_toml().unwrap();
        let mut run = build(config, text, dir.path().to_path_buf()).unwrap();
        let before = diverged(&run, f64::NAN, 1).to_string();
        assert!(
            before.contains("loss is NaN at step 1 (epoch 1, batch 1"),
            "{before}"
        );
        assert!(before.contains("no checkpoint was saved"), "{before}");
        run.progress.step = 45;
        run.progress.epochs_done = 1;
        save_checkpoint(&run).unwrap();
        run.progress.step = 52;
        run.progress.batches_done = 7;
        let after = diverged(&run, f64::INFINITY, 2).to_string();
        assert!(
            after.contains("loss is inf at step 53 (epoch 2, batch 8"),
            "{after}"
        );
        assert!(after.contains("ckpt-000000000045.tempo"), "{after}");
        assert!(after.contains("tempo train --resume"), "{after}");
    }

    #[test]
    fn quoting_for_the_resume_hint() {
        assert_eq!(shell_quote(Path::new("runs/a-1")), "runs/a-1");
        assert_eq!(shell_quote(Path::new("my runs/a")), "'my runs/a'");
    }
}
