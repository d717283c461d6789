//! Disagreements and failures end the run on every rank with an error, never a hang.

use tempo_dist::{DistConfig, DistError, DistributedOptimizer, LocalComm, Sharding};
use tempo_optim::{LBFGSConfig, StateValue, LBFGS};
use tempo_param_groups::{OptimizerParamGroups, Value};

use crate::{
    distributed, distributed_with, optimizer, params, single, train, SHAPES, SHARDINGS, SPECS,
};

#[test]
fn lbfgs_is_refused_on_every_rank() {
    let out = LocalComm::run(2, |comm| {
        let ps = params(SHAPES);
        let lbfgs = LBFGS::new(ps, LBFGSConfig::default())?;
        DistributedOptimizer::new(Box::new(lbfgs), Box::new(comm), Default::default()).map(|_| ())
    });
    for o in out {
        assert!(
            matches!(o, Err(DistError::NotElementwise { ref name }) if name == "LBFGS"),
            "{o:?}"
        );
    }
}

/// Adafactor and Muon step whole tensors: flat sharding refuses them on every rank with
/// an error that names them and the way out; whole-parameter sharding takes them.
#[test]
fn optimizers_that_need_whole_tensors_are_refused_by_flat_sharding_only() {
    for kind in ["Adafactor", "Muon"] {
        let spec = format!(r#"{{"type": "{kind}"}}"#);
        let out = LocalComm::run(2, |comm| {
            // Muon steps matrices: a model of matrices only.
            let ps = params(&[&[3, 4], &[2, 2]]);
            let config = DistConfig {
                sharding: Sharding::Flat,
                ..DistConfig::default()
            };
            DistributedOptimizer::new(optimizer(&spec, &ps), Box::new(comm), config).map(|_| ())
        });
        for o in out {
            let Err(e @ DistError::FlatNotElementwise { .. }) = &o else {
                panic!("{kind}: {o:?}");
            };
            let message = e.to_string();
            assert!(
                message.starts_with(&format!("{kind} cannot be sharded by ranges"))
                    && message.contains("Sharding::WholeParameters"),
                "{message}"
            );
        }
        let out = LocalComm::run(2, |comm| {
            let ps = params(&[&[3, 4], &[2, 2]]);
            DistributedOptimizer::new(optimizer(&spec, &ps), Box::new(comm), Default::default())
                .map(|_| ())
        });
        assert!(out.iter().all(Result::is_ok), "{kind}: {out:?}");
    }
}

/// A gradient of the wrong shape on one rank is an error on every rank, under either
/// sharding, before anything moves.
#[test]
fn a_gradient_of_the_wrong_shape_is_an_error_on_every_rank() {
    for sharding in SHARDINGS {
        let out = LocalComm::run(2, |comm| -> Result<_, DistError> {
            let (ps, mut opt) = distributed_with(SPECS[0], comm, sharding)?;
            crate::set_grads(&ps, crate::rows(opt.rank(), 2), 0);
            let before = crate::bits(&ps);
            if opt.rank() == 1 {
                *ps[2].grad_mut() = Some(ndarray::ArrayD::zeros(vec![3]));
            }
            let result = opt.step().map_err(|e| e.to_string());
            Ok((result, before == crate::bits(&ps)))
        });
        for (rank, o) in out.into_iter().enumerate() {
            let (result, unchanged) = o.unwrap();
            let message = result.unwrap_err();
            assert!(
                message.contains("expected shape [7] for parameter 2, found shape [3]"),
                "{sharding:?}, rank {rank}: {message}"
            );
            assert!(unchanged, "{sharding:?}, rank {rank}");
        }
    }
}

fn mismatch(change: impl Fn(usize) -> (Vec<&'static [usize]>, &'static str) + Sync) -> Vec<String> {
    LocalComm::run(3, |comm| {
        let (shapes, spec) = change(tempo_dist::Communicator::rank(&comm));
        let ps = params(&shapes);
        match DistributedOptimizer::new(optimizer(spec, &ps), Box::new(comm), Default::default()) {
            Err(e @ DistError::RankMismatch { .. }) => e.to_string(),
            other => panic!("expected a mismatch, got {other:?}"),
        }
    })
}

#[test]
fn a_rank_with_other_shapes_is_named_on_every_rank() {
    let messages = mismatch(|rank| {
        let mut shapes = SHAPES.to_vec();
        if rank == 2 {
            shapes[3] = &[2, 4];
        }
        (shapes, SPECS[0])
    });
    for m in &messages {
        assert_eq!(m, &messages[0]);
    }
    assert!(
        messages[0].contains("rank 2 disagrees with rank 0"),
        "{}",
        messages[0]
    );
    assert!(
        messages[0].contains("parameter 3 of shape [2, 2, 2]"),
        "{}",
        messages[0]
    );
    assert!(
        messages[0].contains("parameter 3 of shape [2, 4]"),
        "{}",
        messages[0]
    );
}

#[test]
fn a_rank_with_another_group_count_or_optimizer_is_named() {
    let groups = mismatch(|rank| (SHAPES.to_vec(), if rank == 1 { SPECS[3] } else { SPECS[0] }));
    assert!(groups[0].contains("rank 1 disagrees"), "{}", groups[0]);
    assert!(
        groups[0].contains("optimizer AdamW") && groups[0].contains("optimizer Adam`"),
        "{}",
        groups[0]
    );
    let counts = mismatch(|rank| {
        (
            SHAPES.to_vec(),
            if rank == 1 {
                r#"{"type": "Adam", "kwargs": {"lr": 0.05}, "groups": [{"params": [0, 2, 1, 3, 4]}]}"#
            } else {
                SPECS[3]
            },
        )
    });
    assert!(counts[0].contains("rank 1 disagrees"), "{}", counts[0]);
    assert!(
        counts[0].contains("2 param groups") && counts[0].contains("1 param groups"),
        "{}",
        counts[0]
    );
}

#[test]
fn schedulers_that_drift_apart_are_caught_before_the_step() {
    let out = LocalComm::run(2, |comm| {
        let (ps, mut opt) = distributed(SPECS[0], comm)?;
        train(&ps, &mut opt, 0, 1)?;
        // One rank's scheduler writes another lr.
        let lr = if opt.rank() == 1 { 0.02 } else { 0.01 };
        opt.set_lr(0, lr)?;
        train(&ps, &mut opt, 1, 1)
    });
    for o in out {
        let Err(DistError::RankMismatch { rank: 1, what, .. }) = &o else {
            panic!("{o:?}");
        };
        assert_eq!(what, "the param groups");
    }
}

#[test]
fn a_rank_that_dies_mid_run_ends_the_others() {
    let out = LocalComm::run(3, |comm| {
        let (ps, mut opt) = distributed(SPECS[0], comm)?;
        let steps = if opt.rank() == 1 { 2 } else { 5 };
        // Rank 1 stops after two steps: its communicator is dropped with it.
        train(&ps, &mut opt, 0, steps)
    });
    assert!(out[1].is_ok());
    for r in [0, 2] {
        assert!(
            matches!(out[r], Err(DistError::RankLost { rank: 1, .. })),
            "rank {r}: {:?}",
            out[r]
        );
    }
}

#[test]
fn a_state_that_fits_on_no_rank_leaves_every_rank_as_it_was() {
    for sharding in SHARDINGS {
        a_state_that_fits_on_no_rank(sharding);
    }
}

fn a_state_that_fits_on_no_rank(sharding: Sharding) {
    let out = LocalComm::run(2, |comm| -> Result<_, DistError> {
        let (ps, mut opt) = distributed_with(SPECS[0], comm, sharding)?;
        train(&ps, &mut opt, 0, 2)?;
        let before = opt.local_state_dict();
        // A whole state (as every rank reads it from one file) with another lr and one
        // tensor of the wrong shape: parameter 0's, which rank 0 owns. Rank 1, whose
        // part is fine, must not load it either.
        let (_, reference) = single(SPECS[0], 2, |_| 2);
        let mut whole = reference.state_dict();
        let entry = whole.state.iter_mut().find(|(id, _)| *id == 0).unwrap();
        entry
            .1
            .insert("exp_avg", StateValue::tensor(&[5], &[0.0f64; 5]));
        whole.param_groups[0].insert("lr", Value::Float(9.0));
        assert_eq!(opt.plan().owner(0), Some(0));
        let result = opt.load_state_dict(&whole);
        Ok((
            result.map_err(|e| e.to_string()),
            before == opt.local_state_dict(),
            opt.lr(0)?,
        ))
    });
    for (rank, o) in out.into_iter().enumerate() {
        let (result, unchanged, lr) = o.unwrap();
        let message = result.unwrap_err();
        assert!(message.contains("exp_avg"), "rank {rank}: {message}");
        assert!(unchanged, "rank {rank} changed its state");
        assert!((lr - 0.05).abs() < 1e-15, "rank {rank}: lr {lr}");
    }
}

#[test]
fn a_rank_that_dies_while_a_checkpoint_is_gathered_leaves_rank_0_nothing_to_write() {
    let out = LocalComm::run(3, |comm| {
        let (ps, mut opt) = distributed(SPECS[0], comm)?;
        train(&ps, &mut opt, 0, 2)?;
        if opt.rank() == 2 {
            // Ends before the save: its communicator leaves with it.
            return Ok(None);
        }
        opt.consolidated_state_dict(0)
    });
    assert!(matches!(out[2], Ok(None)));
    // Rank 0 gets an error instead of a state, so it writes no checkpoint (and the
    // previous one, written atomically, stays as it was).
    for r in [0, 1] {
        assert!(
            matches!(out[r], Err(DistError::RankLost { rank: 2, .. })),
            "rank {r}: {:?}",
            out[r]
        );
    }
}
