//! Data-parallel training equals one process; the state is sharded; checkpoints move
//! between numbers of ranks.

use tempo_dist::{LocalComm, Sharding};
use tempo_optim::{
    build_optimizer, OptimizerSpec, OptimizerStateDict, StateValue, OPTIMIZER_NAMES,
};

use crate::{
    bits, distributed, distributed_with, on_ranks, params, single, train, SHAPES, SHARDINGS, SPECS,
};

const STEPS: usize = 6;

/// The ranks' parameters are bit for bit a single process's that adds the ranks' partial
/// gradients in the same order, and the consolidated state is that process's state dict.
/// With flat sharding too: an elementwise update of a slice is the update of those
/// elements of the whole tensor, and the slices' states are stitched back.
fn check_equal_to_one_process(spec: &str, size: usize, sharding: Sharding) {
    let (want, reference) = single(spec, STEPS, |_| size);
    let out = on_ranks(size, |comm| {
        let (ps, mut opt) = distributed_with(spec, comm, sharding)?;
        train(&ps, &mut opt, 0, STEPS)?;
        Ok((bits(&ps), opt.consolidated_state_dict(0)?))
    });
    for (rank, (got, state)) in out.into_iter().enumerate() {
        assert!(
            got == bits(&want),
            "{spec}, {size} ranks, {sharding:?}: rank {rank}'s parameters"
        );
        assert_eq!(state.is_some(), rank == 0);
        if let Some(state) = state {
            assert_eq!(
                state,
                reference.state_dict(),
                "{spec}, {size} ranks, {sharding:?}: state"
            );
        }
    }
}

#[test]
fn ranks_equal_one_process_that_sums_in_their_order() {
    for spec in SPECS {
        for size in 1..=4 {
            for sharding in SHARDINGS {
                check_equal_to_one_process(spec, size, sharding);
            }
        }
    }
}

/// Every optimizer of the registry that takes the test model (Muon steps matrices only;
/// LBFGS is refused, as faults.rs checks) is carried by whole-parameter sharding; every
/// elementwise one also by flat sharding, its state cut into slices and stitched back:
/// 3 ranks cut the test model's 32 elements at 11 and 22, inside parameters 0 and 2.
#[test]
fn every_optimizer_of_the_registry_is_carried() {
    let probe = params(SHAPES);
    let mut carried = Vec::new();
    for kind in OPTIMIZER_NAMES {
        let spec = format!(r#"{{"type": "{kind}"}}"#);
        let Ok(opt) = build_optimizer(&OptimizerSpec::from_json(&spec).unwrap(), &probe) else {
            continue;
        };
        if *kind == "LBFGS" {
            continue;
        }
        check_equal_to_one_process(&spec, 3, Sharding::WholeParameters);
        if opt.is_elementwise() {
            check_equal_to_one_process(&spec, 3, Sharding::Flat);
        }
        carried.push(*kind);
    }
    assert!(
        carried.contains(&"Adafactor") && carried.contains(&"AdamW"),
        "{carried:?}"
    );
}

/// Two flat runs on 3 ranks give the same bits.
#[test]
fn flat_runs_repeat_bit_for_bit() {
    let run = || {
        on_ranks(3, |comm| {
            let (ps, mut opt) = distributed_with(SPECS[0], comm, Sharding::Flat)?;
            train(&ps, &mut opt, 0, STEPS)?;
            Ok(bits(&ps))
        })
    };
    let (a, b) = (run(), run());
    assert!(a == b);
    assert!(a.iter().all(|r| r == &a[0]));
}

/// Against a process that sums the whole batch straight through, the ranks differ only
/// by the rounding of a different summation order: each gradient element is a sum of 12
/// terms of size ~1, so the two orders differ by a few ulps (~1e-16 relative), which
/// six steps of these optimizers leave far below 1e-12 relative.
#[test]
fn ranks_equal_a_straight_sum_up_to_rounding() {
    for spec in SPECS {
        let (want, _) = single(spec, STEPS, |_| 1);
        let want: Vec<f64> = want.iter().flat_map(|p| p.to_vec()).collect();
        for sharding in SHARDINGS {
            let out = on_ranks(3, |comm| {
                let (ps, mut opt) = distributed_with(spec, comm, sharding)?;
                train(&ps, &mut opt, 0, STEPS)?;
                Ok(ps.iter().flat_map(|p| p.to_vec()).collect::<Vec<f64>>())
            });
            for got in out {
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                        "{spec}, {sharding:?}: {g} vs {w}"
                    );
                }
            }
        }
    }
}

fn state_bytes(state: &OptimizerStateDict) -> usize {
    state
        .state
        .iter()
        .flat_map(|(_, s)| s.entries.iter())
        .map(|(_, v)| match v {
            StateValue::Tensor(t) => t.len() * 8,
            _ => 0,
        })
        .sum()
}

#[test]
fn each_rank_holds_its_share_of_the_state() {
    let spec = SPECS[0];
    let (_, reference) = single(spec, 2, |_| 2);
    let whole = state_bytes(&reference.state_dict());
    let largest = SHAPES
        .iter()
        .map(|s| s.iter().product::<usize>())
        .max()
        .unwrap_or(0);
    for size in [2, 3] {
        let out = on_ranks(size, |comm| {
            let (ps, mut opt) = distributed(spec, comm)?;
            train(&ps, &mut opt, 0, 2)?;
            let local = opt.local_state_dict();
            // Only owned parameters have state.
            for (id, _) in &local.state {
                assert_eq!(opt.plan().owner(*id), Some(opt.rank()));
            }
            Ok(opt.local_state_bytes())
        });
        assert_eq!(out.iter().sum::<usize>(), whole, "{size} ranks: {out:?}");
        // AdamW with amsgrad keeps 3 tensors and a step per parameter: per element 3 f64s.
        let per_element = 3 * 8;
        for bytes in &out {
            assert!(
                *bytes <= whole / size + largest * per_element + 8 * SHAPES.len(),
                "{size} ranks: {out:?} of {whole}"
            );
        }
    }
}

/// Flat sharding splits the state within one element of `1/size` (plus the step count
/// of each slice): here the largest parameter (12 of 32 elements) no longer decides.
#[test]
fn flat_sharding_gives_each_rank_an_equal_share_of_the_state() {
    let spec = SPECS[0];
    let (_, reference) = single(spec, 2, |_| 2);
    let whole = state_bytes(&reference.state_dict());
    let elements: usize = SHAPES.iter().map(|s| s.iter().product::<usize>()).sum();
    let per_element = 3 * 8;
    for size in [2, 3, 4] {
        let out = on_ranks(size, |comm| {
            let (ps, mut opt) = distributed_with(spec, comm, Sharding::Flat)?;
            train(&ps, &mut opt, 0, 2)?;
            let mine = opt.plan().range(opt.rank()).len();
            Ok((opt.local_state_bytes(), mine))
        });
        let ranges: Vec<usize> = out.iter().map(|(_, n)| *n).collect();
        assert_eq!(ranges.iter().sum::<usize>(), elements);
        assert!(ranges.iter().max().unwrap() - ranges.iter().min().unwrap() < size);
        for (bytes, n) in &out {
            // Its elements' tensors, and one 8-byte step per slice.
            assert!(*bytes >= n * per_element, "{size} ranks: {out:?}");
            assert!(
                *bytes <= n * per_element + 8 * SHAPES.len(),
                "{size} ranks: {out:?}"
            );
        }
        let tensors: usize = out.iter().map(|(b, _)| b).sum();
        assert!(tensors >= whole, "{size} ranks: {out:?} of {whole}");
    }
}

/// Saves after 3 steps with `saved` ranks, resumes with `resumed` ranks (0: a plain
/// single-process optimizer), runs 3 more: bit for bit the single process that summed
/// the first 3 steps' gradients in `saved` shares and the rest in `resumed` shares.
fn check_resume(spec: &str, saved: usize, resumed: usize, shardings: (Sharding, Sharding)) {
    let (want, _) = single(spec, STEPS, |t| if t < 3 { saved } else { resumed.max(1) });
    let first = on_ranks(saved, |comm| {
        let (ps, mut opt) = distributed_with(spec, comm, shardings.0)?;
        train(&ps, &mut opt, 0, 3)?;
        Ok((
            ps.iter().map(|p| p.to_array()).collect::<Vec<_>>(),
            opt.consolidated_state_dict(0)?,
        ))
    });
    let values = first[0].0.clone();
    let state = first[0].1.clone().unwrap();
    let restore = |ps: &[tempo_tensor::Tensor<f64>]| {
        for (p, v) in ps.iter().zip(&values) {
            *p.data_mut() = v.clone();
        }
    };
    if resumed == 0 {
        let ps = params(SHAPES);
        restore(&ps);
        let mut opt = crate::optimizer(spec, &ps);
        opt.load_state_dict(&state).unwrap();
        for t in 3..STEPS {
            opt.zero_grad();
            crate::set_grads(&ps, 0..crate::BATCH, t);
            opt.step().unwrap();
        }
        assert!(
            bits(&ps) == bits(&want),
            "{spec}: {saved} ranks -> one process, {shardings:?}"
        );
        return;
    }
    let out = on_ranks(resumed, |comm: LocalComm| {
        let (ps, mut opt) = distributed_with(spec, comm, shardings.1)?;
        restore(&ps);
        opt.load_state_dict(&state)?;
        train(&ps, &mut opt, 3, STEPS - 3)?;
        Ok(bits(&ps))
    });
    for got in out {
        assert!(
            got == bits(&want),
            "{spec}: {saved} ranks -> {resumed} ranks, {shardings:?}"
        );
    }
}

#[test]
fn a_checkpoint_resumes_with_any_number_of_ranks() {
    for spec in SPECS {
        for (saved, resumed) in [(2, 0), (2, 1), (2, 2), (2, 3), (3, 2), (1, 3)] {
            check_resume(spec, saved, resumed, (SHARDINGS[0], SHARDINGS[0]));
        }
    }
}

/// The same with flat sharding on either side: a checkpoint does not say how it was
/// sharded.
#[test]
fn a_flat_checkpoint_resumes_with_any_number_of_ranks_and_either_sharding() {
    use Sharding::{Flat, WholeParameters};
    for spec in SPECS {
        for (saved, resumed) in [(2, 0), (2, 1), (2, 3), (3, 2), (1, 3), (4, 3)] {
            check_resume(spec, saved, resumed, (Flat, Flat));
        }
        check_resume(spec, 3, 2, (Flat, WholeParameters));
        check_resume(spec, 2, 3, (WholeParameters, Flat));
    }
}

#[test]
fn parameters_without_gradients_on_some_ranks_take_zeros_there() {
    for sharding in SHARDINGS {
        parameters_without_gradients(sharding);
    }
}

fn parameters_without_gradients(sharding: Sharding) {
    let spec = SPECS[1];
    let out = on_ranks(2, |comm| {
        let (ps, mut opt) = distributed_with(spec, comm, sharding)?;
        crate::set_grads(&ps, crate::rows(opt.rank(), 2), 0);
        // Parameter 2 has a gradient on rank 1 only; parameter 4 on no rank.
        if opt.rank() == 0 {
            ps[2].set_grad(None)?;
        }
        ps[4].set_grad(None)?;
        let before = ps[4].to_vec();
        assert!(opt.step()?);
        assert_eq!(ps[4].to_vec(), before);
        assert!(ps[4].grad().is_none());
        let state = opt.consolidated_state_dict(0)?;
        let grad = ps[2].grad().clone();
        Ok((bits(&ps), grad, state))
    });
    assert!(out[0].0 == out[1].0);
    if sharding == Sharding::WholeParameters {
        // Flat sharding leaves each rank its own gradients.
        assert_eq!(out[0].1, out[1].1);
    }
    let state = out[0].2.clone().unwrap();
    let ids: Vec<usize> = state.state.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![0, 1, 2, 3]);
}

#[test]
fn a_rank_may_own_nothing() {
    for sharding in SHARDINGS {
        a_rank_owning_nothing(sharding);
    }
}

fn a_rank_owning_nothing(sharding: Sharding) {
    let out = on_ranks(3, |comm| {
        let p = tempo_tensor::Tensor::<f64>::parameter(ndarray::ArrayD::from_elem(vec![2], 1.0));
        let sgd = crate::optimizer(SPECS[1], std::slice::from_ref(&p));
        let config = tempo_dist::DistConfig {
            sharding,
            ..Default::default()
        };
        let mut opt = tempo_dist::DistributedOptimizer::new(sgd, Box::new(comm), config)?;
        p.set_grad(Some(ndarray::ArrayD::from_elem(vec![2], opt.rank() as f64)))?;
        opt.step()?;
        Ok((p.to_vec(), opt.local_state_bytes()))
    });
    // The mean gradient is 1; Nesterov's first step moves by lr * (g + momentum * g).
    for (v, _) in &out {
        for x in v {
            assert!((x - (1.0 - 0.1 * 1.9)).abs() < 1e-15, "{v:?}");
        }
    }
    let holders = out.iter().filter(|(_, b)| *b > 0).count();
    // Whole: one rank; flat: the 2 elements on ranks 0 and 1, none on rank 2.
    let want = if sharding == Sharding::Flat { 2 } else { 1 };
    assert_eq!(holders, want, "{sharding:?}");
    assert_eq!(out[2].1, 0, "{sharding:?}");
}
