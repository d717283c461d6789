//! Data-parallel training equals one process; the state is sharded; checkpoints move
//! between numbers of ranks.

use tempo_dist::LocalComm;
use tempo_optim::{OptimizerStateDict, StateValue};

use crate::{bits, distributed, on_ranks, params, single, train, SHAPES, SPECS};

const STEPS: usize = 6;

/// The ranks' parameters are bit for bit a single process's that adds the ranks' partial
/// gradients in the same order, and the consolidated state is that process's state dict.
fn check_equal_to_one_process(spec: &str, size: usize) {
    let (want, reference) = single(spec, STEPS, |_| size);
    let out = on_ranks(size, |comm| {
        let (ps, mut opt) = distributed(spec, comm)?;
        train(&ps, &mut opt, 0, STEPS)?;
        Ok((bits(&ps), opt.consolidated_state_dict(0)?))
    });
    for (rank, (got, state)) in out.into_iter().enumerate() {
        assert!(
            got == bits(&want),
            "{spec}, {size} ranks: rank {rank}'s parameters"
        );
        assert_eq!(state.is_some(), rank == 0);
        if let Some(state) = state {
            assert_eq!(state, reference.state_dict(), "{spec}, {size} ranks: state");
        }
    }
}

#[test]
fn ranks_equal_one_process_that_sums_in_their_order() {
    for spec in SPECS {
        for size in 1..=4 {
            check_equal_to_one_process(spec, size);
        }
    }
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
        let out = on_ranks(3, |comm| {
            let (ps, mut opt) = distributed(spec, comm)?;
            train(&ps, &mut opt, 0, STEPS)?;
            Ok(ps.iter().flat_map(|p| p.to_vec()).collect::<Vec<f64>>())
        });
        for got in out {
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-12 * w.abs().max(1.0),
                    "{spec}: {g} vs {w}"
                );
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

/// Saves after 3 steps with `saved` ranks, resumes with `resumed` ranks (0: a plain
/// single-process optimizer), runs 3 more: bit for bit the single process that summed
/// the first 3 steps' gradients in `saved` shares and the rest in `resumed` shares.
fn check_resume(spec: &str, saved: usize, resumed: usize) {
    let (want, _) = single(spec, STEPS, |t| if t < 3 { saved } else { resumed.max(1) });
    let first = on_ranks(saved, |comm| {
        let (ps, mut opt) = distributed(spec, comm)?;
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
            "{spec}: {saved} ranks -> one process"
        );
        return;
    }
    let out = on_ranks(resumed, |comm: LocalComm| {
        let (ps, mut opt) = distributed(spec, comm)?;
        restore(&ps);
        opt.load_state_dict(&state)?;
        train(&ps, &mut opt, 3, STEPS - 3)?;
        Ok(bits(&ps))
    });
    for got in out {
        assert!(
            got == bits(&want),
            "{spec}: {saved} ranks -> {resumed} ranks"
        );
    }
}

#[test]
fn a_checkpoint_resumes_with_any_number_of_ranks() {
    for spec in SPECS {
        for (saved, resumed) in [(2, 0), (2, 1), (2, 2), (2, 3), (3, 2), (1, 3)] {
            check_resume(spec, saved, resumed);
        }
    }
}

#[test]
fn parameters_without_gradients_on_some_ranks_take_zeros_there() {
    let spec = SPECS[1];
    let out = on_ranks(2, |comm| {
        let (ps, mut opt) = distributed(spec, comm)?;
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
    assert_eq!(out[0].1, out[1].1);
    let state = out[0].2.clone().unwrap();
    let ids: Vec<usize> = state.state.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![0, 1, 2, 3]);
}

#[test]
fn a_rank_may_own_nothing() {
    let out = on_ranks(3, |comm| {
        let p = tempo_tensor::Tensor::<f64>::parameter(ndarray::ArrayD::from_elem(vec![2], 1.0));
        let sgd = crate::optimizer(SPECS[1], std::slice::from_ref(&p));
        let mut opt =
            tempo_dist::DistributedOptimizer::new(sgd, Box::new(comm), Default::default())?;
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
    assert_eq!(holders, 1);
}
