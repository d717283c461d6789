//! `tempo train --distributed`: data-parallel training on MPI, started by
//! `mpirun -np N tempo train --distributed [options]`.
//!
//! Every rank builds the same run from the same options (and checks that the others did:
//! a different configuration ends the run on every rank, naming the difference), holds
//! the whole model, and computes the gradient of its share of each global batch (the
//! batch of a single process, split into contiguous slices by rank). The optimizer is a
//! [`DistributedOptimizer`]: gradients are summed across ranks (each rank's loss is its
//! rows' loss divided by the global batch size, so the sum is the single process's
//! mean), and each rank keeps the optimizer state of its share of the parameters.
//! Schedulers, evaluation and metrics run on every rank alike; rank 0 alone shows
//! progress, owns the run directory and writes the checkpoints, which hold the state a
//! single process would save, so `--resume` works with any number of ranks (and without
//! `--distributed`).
//!
//! This module is a child of `train`, whose building blocks (configuration, model,
//! data, evaluation, progress bar) it reuses as they are.

#[cfg(not(feature = "distributed"))]
pub(crate) fn run(_args: super::TrainArgs) -> anyhow::Result<crate::Outcome> {
    anyhow::bail!(
        "this tempo was built without MPI support: build it with `cargo build --release -p tempo-cli --features distributed` \
         (which needs Open MPI: apt-get install libopenmpi-dev openmpi-bin libclang-dev), then run `mpirun -np N tempo train --distributed`"
    )
}

#[cfg(feature = "distributed")]
pub(crate) use mpi_run::run;

#[cfg(feature = "distributed")]
mod mpi_run {
    use std::io::IsTerminal;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use anyhow::{anyhow, bail, Context, Result};
    use ndarray::Axis;
    use tempo::nn::{cross_entropy, Module, Reduction, Sequential};
    use tempo::param_groups::OptimizerParamGroups;
    use tempo::sched::LRScheduler;
    use tempo::tensor::{Generator, Tensor};
    use tempo_dist::{
        check_same, Communicator, DistConfig, DistributedOptimizer, GradReduction, MpiComm,
        MpiRuntime,
    };

    use super::super::{
        apply_overrides, build, default_run_dir, describe_model, evaluate, fmt_lr, progress_bar,
        resume, shell_quote, Run, TrainArgs,
    };
    use crate::checkpoint::{self, Progress};
    use crate::config::{StepEvery, TrainConfig};
    use crate::data::{self, Dataset};
    use crate::metrics::{EpochRecord, StepRecord};
    use crate::Outcome;

    /// A run whose optimizer is sharded across the ranks.
    struct DistRun {
        config: TrainConfig,
        dir: std::path::PathBuf,
        train: Dataset,
        test: Dataset,
        model: Sequential<f32>,
        optimizer: DistributedOptimizer<f32>,
        scheduler: Option<Box<dyn LRScheduler>>,
        step_every: StepEvery,
        progress: Progress,
    }

    /// Ends a step that may fail on some ranks only: every rank learns of any failure,
    /// and every rank returns an error (the failing ones their own).
    fn agree<R>(comm: &MpiComm, during: &str, local: Result<R>) -> Result<R> {
        let message = match &local {
            Ok(_) => Vec::new(),
            Err(e) => format!("!{}", crate::error_chain(e)).into_bytes(),
        };
        let all = comm
            .all_gather_bytes(&message)
            .map_err(|e| anyhow!("{e}"))?;
        let failed = all.iter().enumerate().find(|(_, m)| !m.is_empty());
        match (local, failed) {
            (Err(e), _) => Err(e),
            (Ok(_), Some((rank, m))) => bail!(
                "rank {rank} failed {during}: {}; every rank stops",
                String::from_utf8_lossy(&m[1..])
            ),
            (Ok(v), None) => Ok(v),
        }
    }

    fn dist(e: tempo_dist::DistError) -> anyhow::Error {
        anyhow!("{e}")
    }

    /// Runs `tempo train --distributed` on this rank.
    pub(crate) fn run(args: TrainArgs) -> Result<Outcome> {
        let started = Instant::now();
        let runtime = MpiRuntime::init().map_err(dist)?;
        let world = runtime.world();
        let (rank, size) = (world.rank(), world.size());
        let mut run = setup(&world, &runtime, &args)?;
        let interrupted = Arc::new(AtomicBool::new(false));
        {
            let flag = Arc::clone(&interrupted);
            let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
        }
        let quiet = args.quiet || rank != 0;
        let outcome = train_loop(&mut run, &world, &args, quiet, &interrupted)?;
        let written = if rank == 0 {
            run.progress.metrics.write_all(&run.dir)
        } else {
            Ok(())
        };
        agree(&world, "writing the metrics", written)?;
        match outcome {
            Outcome::Interrupted if rank == 0 => eprintln!(
                "interrupted: saved a checkpoint after step {} in {}\nresume with: mpirun -np N tempo train --distributed --resume {}",
                run.progress.step,
                run.dir.display(),
                shell_quote(&run.dir)
            ),
            Outcome::Done if !quiet => {
                let acc = run
                    .progress
                    .metrics
                    .epochs
                    .last()
                    .map_or(0.0, |e| e.test_accuracy);
                println!(
                    "done: test accuracy {:.2}% after {} epochs on {size} ranks in {:.1}s; checkpoints, metrics.csv, lr.svg and loss.svg are in {}",
                    100.0 * acc,
                    run.config.epochs,
                    started.elapsed().as_secs_f64(),
                    run.dir.display()
                );
            }
            _ => {}
        }
        Ok(outcome)
    }

    /// Builds the run on every rank and checks that the ranks agree on it.
    fn setup(world: &MpiComm, runtime: &MpiRuntime, args: &TrainArgs) -> Result<DistRun> {
        let rank = world.rank();
        // Every collective below is reached by every rank, whatever failed locally.
        let run = match &args.resume {
            Some(dir) => {
                let local = resume(dir, args);
                let run = agree(world, "loading the checkpoint", local)?;
                check_same(
                    world,
                    "the training configuration",
                    &config_lines(&run.progress.config),
                )
                .map_err(dist)?;
                run
            }
            None => {
                let local = fresh_config(args);
                let (config, text) = agree(world, "reading the configuration", local)?;
                check_same(world, "the training configuration", &config_lines(&text))
                    .map_err(dist)?;
                // Rank 0 names the run directory.
                let mine = args.run_dir.clone().unwrap_or_else(default_run_dir);
                let names = world
                    .all_gather_bytes(mine.to_string_lossy().as_bytes())
                    .map_err(dist)?;
                let dir = std::path::PathBuf::from(String::from_utf8_lossy(&names[0]).into_owned());
                let local = (|| -> Result<Run> {
                    if rank == 0 {
                        create_run_dir(&dir, &text)?;
                    }
                    build(config, text, dir)
                })();
                agree(world, "setting up the run", local)?
            }
        };
        let Run {
            config,
            dir,
            train,
            test,
            model,
            optimizer,
            scheduler,
            step_every,
            progress,
        } = run;
        let config_dist = DistConfig {
            reduction: GradReduction::Sum,
            ..DistConfig::default()
        };
        let optimizer =
            DistributedOptimizer::new(optimizer, Box::new(runtime.world()), config_dist)
                .map_err(dist)?;
        Ok(DistRun {
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

    fn config_lines(text: &str) -> Vec<String> {
        text.lines().map(String::from).collect()
    }

    fn fresh_config(args: &TrainArgs) -> Result<(TrainConfig, String)> {
        let mut config = match &args.config {
            Some(path) => TrainConfig::load(path)?,
            None => TrainConfig::default_config()?,
        };
        apply_overrides(&mut config, args)?;
        config
            .validate()
            .context("after applying the command-line options")?;
        let text = config.to_toml()?;
        Ok((config, text))
    }

    fn create_run_dir(dir: &std::path::Path, config_text: &str) -> Result<()> {
        if dir.exists() && checkpoint::latest(dir)?.is_some() {
            bail!(
                "{} already holds checkpoints: continue it with --resume {}, or choose another --run-dir",
                dir.display(),
                shell_quote(dir)
            );
        }
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create run directory {}", dir.display()))?;
        let path = dir.join("config.toml");
        std::fs::write(&path, config_text)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    /// Rank `rank`'s slice of a global batch: contiguous, sizes differing by at most one.
    fn share(rows: &[usize], rank: usize, size: usize) -> &[usize] {
        &rows[rank * rows.len() / size..(rank + 1) * rows.len() / size]
    }

    fn train_loop(
        run: &mut DistRun,
        world: &MpiComm,
        args: &TrainArgs,
        quiet: bool,
        interrupted: &AtomicBool,
    ) -> Result<Outcome> {
        let (rank, size) = (world.rank(), world.size());
        let show_bar = !quiet && std::io::stdout().is_terminal();
        let batch_size = run.config.batch_size;
        let n_train = run.train.len();
        let batches = n_train.div_ceil(batch_size) as u64;
        let epochs = run.config.epochs as u64;
        let groups = run.optimizer.num_groups();
        if run.progress.epochs_done >= epochs {
            if !quiet {
                println!("{} already finished its {epochs} epochs", run.dir.display());
            }
            return Ok(Outcome::Done);
        }
        if !quiet {
            let hint = if run.progress.step > 0 {
                format!(", resuming after step {}", run.progress.step)
            } else {
                String::new()
            };
            let state = run.optimizer.plan().elements_per_rank();
            println!(
                "training {} with {} + {} for {epochs} epochs of {batches} batches on {size} ranks{hint}",
                describe_model(&run.model),
                run.config.optimizer_type(),
                run.config.scheduler_type().unwrap_or("no scheduler"),
            );
            println!(
                "data: {}, {} train / {} test samples, {} classes, each global batch of {batch_size} split across the ranks; optimizer state sharded by parameter elements {state:?}; run directory {}",
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
                .map_err(|e| anyhow!("restoring the generator: {e}"))?;
            let mut order: Vec<usize> = (0..n_train).collect();
            data::shuffle(&mut order, || rng.next_u32());
            let bar = progress_bar(show_bar, batches, epoch, epochs);
            bar.set_position(run.progress.batches_done);
            while run.progress.batches_done < batches {
                // Ctrl-C reaches the ranks at different moments: stop when any saw it.
                let mut stop = [0u64];
                world
                    .all_reduce_sum_u64(&[u64::from(interrupted.load(Ordering::SeqCst))], &mut stop)
                    .map_err(dist)?;
                if stop[0] > 0 {
                    bar.finish_and_clear();
                    save_checkpoint(run, world)?;
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
                let loss = train_batch(run, world, share(rows, rank, size), rows.len())?;
                run.progress.step += 1;
                run.progress.batches_done += 1;
                if let (Some(s), StepEvery::Batch) = (run.scheduler.as_mut(), run.step_every) {
                    crate::train::step_scheduler(s.as_mut(), &mut run.optimizer, loss)?;
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
            // Every rank holds the same parameters, so every rank evaluates alike (a
            // per-epoch ReduceLROnPlateau reads the result).
            let (test_loss, test_accuracy) = evaluate(&run.model, &run.test)?;
            if let (Some(s), StepEvery::Epoch) = (run.scheduler.as_mut(), run.step_every) {
                crate::train::step_scheduler(s.as_mut(), &mut run.optimizer, test_loss)?;
            }
            let this_epoch: Vec<f64> = run
                .progress
                .metrics
                .steps
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
                save_checkpoint(run, world)?;
                "  [checkpoint]"
            } else {
                ""
            };
            if !quiet {
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

    /// One data-parallel step: this rank's rows, the gradients of their loss divided by
    /// the global batch size, the distributed step; returns the global batch's mean loss.
    fn train_batch(
        run: &mut DistRun,
        world: &MpiComm,
        rows: &[usize],
        global: usize,
    ) -> Result<f64> {
        run.optimizer.zero_grad();
        let local = (|| -> Result<f64> {
            if rows.is_empty() {
                return Ok(0.0);
            }
            let x = run.train.features.select(Axis(0), rows).into_dyn();
            let y: Vec<usize> = rows.iter().map(|&r| run.train.labels[r]).collect();
            let logits = run.model.forward(&Tensor::from_array(x))?;
            // The single process's mean: the sum of the global batch's losses / its size.
            let loss = cross_entropy(&logits, &y, Reduction::Sum)?.div_scalar(global as f64);
            loss.backward()?;
            Ok(f64::from(loss.item()?))
        })();
        let local = agree(world, "computing its gradients", local)?;
        run.optimizer
            .step()
            .map_err(dist)
            .context("optimizer step")?;
        let mut loss = [0.0f64];
        world
            .all_reduce_sum_f64(&[local], &mut loss)
            .map_err(dist)?;
        Ok(loss[0])
    }

    /// Gathers the optimizer state on rank 0, which writes the checkpoint (atomically:
    /// a failure anywhere leaves the previous one as it was) in a single process's layout.
    fn save_checkpoint(run: &DistRun, world: &MpiComm) -> Result<()> {
        check_same(
            world,
            "the scheduler state",
            &[format!(
                "{:?}",
                run.scheduler.as_ref().map(|s| s.state_dict())
            )],
        )
        .map_err(dist)?;
        let state = run.optimizer.consolidated_state_dict(0).map_err(dist)?;
        let local = match state {
            None => Ok(()),
            Some(optimizer) => (|| {
                let checkpointer = checkpoint::checkpointer(&run.dir, run.config.checkpoint.keep)?;
                checkpoint::save(
                    &checkpointer,
                    run.model.state_dict().to_tensor_data(),
                    optimizer,
                    run.scheduler.as_ref().map(|s| s.state_dict()),
                    &run.progress,
                )
                .map(|_| ())
            })(),
        };
        agree(world, "saving the checkpoint", local)
    }
}
