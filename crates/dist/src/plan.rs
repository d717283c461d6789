//! [`ShardPlan`]: which rank steps, and keeps the optimizer state of, which parameter
//! elements.

use std::ops::Range;

/// How the optimizer state is split across ranks.
///
/// ```
/// use ndarray::ArrayD;
/// use tempo_dist::{DistConfig, DistributedOptimizer, LocalComm, Sharding};
/// use tempo_optim::{AdamW, AdamWConfig};
/// use tempo_tensor::Tensor;
///
/// // A 6-element weight and a 2-element bias: whole parameters leave one rank 6 of the
/// // 8 elements' state, flat ranges 4 each (the weight is cut after its 4th element).
/// for (sharding, want) in [(Sharding::WholeParameters, [6, 2]), (Sharding::Flat, [4, 4])] {
///     let elements = LocalComm::run(2, |comm| -> Result<usize, tempo_dist::DistError> {
///         let w = Tensor::<f32>::parameter(ArrayD::from_elem(vec![2, 3], 1.0));
///         let b = Tensor::<f32>::parameter(ArrayD::from_elem(vec![2], 0.0));
///         let adamw = AdamW::new(vec![w.clone(), b.clone()], AdamWConfig::default())?;
///         let config = DistConfig { sharding, ..DistConfig::default() };
///         let mut opt = DistributedOptimizer::new(Box::new(adamw), Box::new(comm), config)?;
///         w.set_grad(Some(ArrayD::from_elem(vec![2, 3], 0.5)))?;
///         b.set_grad(Some(ArrayD::from_elem(vec![2], 0.5)))?;
///         opt.step()?;
///         // exp_avg and exp_avg_sq per element, 4 bytes each, and a 4-byte step per slice.
///         let slices = opt.local_state_dict().state.len();
///         Ok((opt.local_state_bytes() - 4 * slices) / 8)
///     });
///     let elements: Vec<usize> = elements.into_iter().map(Result::unwrap).collect();
///     assert_eq!(elements, want);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharding {
    /// Whole parameters, balanced by size, as PyTorch's `ZeroRedundancyOptimizer` does:
    /// works for every optimizer but LBFGS (Adafactor's and Muon's updates need a whole
    /// tensor), but a rank keeps at least the state of the largest parameter it owns, so
    /// the split is far from `1/N` when one tensor dominates the model.
    #[default]
    WholeParameters,
    /// DeepSpeed ZeRO-1's layout: the parameters flattened in id order and cut into `N`
    /// contiguous ranges of nearly equal size (a parameter may straddle two ranks, each
    /// stepping its slice), so every rank keeps `1/N` of the state, within one element.
    /// Only for elementwise optimizers ([`Optimizer::is_elementwise`]); the gradients are
    /// reduce-scattered (each rank receives its range only) and the updated ranges sent
    /// to every rank.
    ///
    /// [`Optimizer::is_elementwise`]: tempo_optim::Optimizer::is_elementwise
    Flat,
}

/// One rank's share of one parameter: the elements `range` (in row-major order) of
/// parameter `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// The parameter, by state-dict id.
    pub param: usize,
    /// Its elements this rank steps.
    pub range: Range<usize>,
}

/// Which rank owns (steps, and keeps the optimizer state of) each parameter element.
/// Every rank computes the same plan from the same shapes, so no message is needed.
///
/// [`balanced`](Self::balanced) assigns whole parameters, as PyTorch's
/// `ZeroRedundancyOptimizer` does: parameters in decreasing size (ties by index), each to
/// the rank with the fewest elements so far (ties to the lower rank).
/// [`flat`](Self::flat) cuts the flattened parameters into equal ranges.
///
/// ```
/// use tempo_dist::ShardPlan;
///
/// let plan = ShardPlan::balanced(&[100, 10, 60, 50], 2);
/// assert_eq!(plan.owners(), &[0, 0, 1, 1]);
/// assert_eq!(plan.elements_per_rank(), vec![110, 110]);
///
/// let flat = ShardPlan::flat(&[100, 30, 40, 50], 2);
/// assert_eq!(flat.elements_per_rank(), vec![110, 110]);
/// assert_eq!(flat.owner(0), Some(0));
/// assert_eq!(flat.owner(1), None); // elements 0..10 on rank 0, 10..30 on rank 1
/// assert_eq!(flat.slices(1)[0].range, 10..30);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// The rank of each parameter's first element (its only rank for whole parameters).
    owners: Vec<usize>,
    numels: Vec<usize>,
    loads: Vec<usize>,
    /// Flat sharding: each parameter's first position in the flattened order, then the
    /// total, and the elements per rank's range (the last range may be shorter).
    flat: Option<(Vec<usize>, usize)>,
}

impl ShardPlan {
    /// The plan for whole parameters of `numels` elements over `ranks` ranks (at least
    /// one).
    pub fn balanced(numels: &[usize], ranks: usize) -> Self {
        let mut plan = ShardPlan {
            owners: Vec::new(),
            numels: Vec::new(),
            loads: vec![0; ranks.max(1)],
            flat: None,
        };
        plan.extend(numels);
        plan
    }

    /// The plan for parameters of `numels` elements flattened in id order and cut into
    /// `ranks` (at least one) contiguous ranges of `ceil(total / ranks)` elements, the
    /// last one shorter when the total does not divide. An empty parameter belongs to the
    /// rank of the position it sits at.
    pub fn flat(numels: &[usize], ranks: usize) -> Self {
        let ranks = ranks.max(1);
        let mut starts = Vec::with_capacity(numels.len() + 1);
        let mut total = 0;
        for &n in numels {
            starts.push(total);
            total += n;
        }
        starts.push(total);
        let block = total.div_ceil(ranks);
        let rank_of = |e: usize| (e.checked_div(block).unwrap_or(0)).min(ranks - 1);
        let owners = starts[..numels.len()].iter().map(|&s| rank_of(s)).collect();
        let loads = (0..ranks)
            .map(|r| (r * block).min(total)..((r + 1) * block).min(total))
            .map(|r| r.len())
            .collect();
        ShardPlan {
            owners,
            numels: numels.to_vec(),
            loads,
            flat: Some((starts, block)),
        }
    }

    /// Whether this is a [`flat`](Self::flat) plan.
    pub fn is_flat(&self) -> bool {
        self.flat.is_some()
    }

    /// Assigns further parameters (a new param group): whole parameters on top of the
    /// current loads; a flat plan is laid out again over all of them.
    pub fn extend(&mut self, numels: &[usize]) {
        if self.flat.is_some() {
            let mut all = self.numels.clone();
            all.extend_from_slice(numels);
            *self = Self::flat(&all, self.loads.len());
            return;
        }
        let base = self.owners.len();
        self.owners.resize(base + numels.len(), 0);
        self.numels.extend_from_slice(numels);
        let mut order: Vec<usize> = (0..numels.len()).collect();
        order.sort_by(|&a, &b| numels[b].cmp(&numels[a]).then(a.cmp(&b)));
        for i in order {
            let rank = (0..self.loads.len())
                .min_by_key(|&r| (self.loads[r], r))
                .unwrap_or(0);
            self.owners[base + i] = rank;
            self.loads[rank] += numels[i];
        }
    }

    /// The rank of each parameter, in state-dict id order: its owner for whole
    /// parameters, the rank of its first element for a flat plan.
    pub fn owners(&self) -> &[usize] {
        &self.owners
    }

    /// The rank that owns all of parameter `param`; `None` for a parameter split between
    /// ranks (flat plans only) or beyond the plan.
    pub fn owner(&self, param: usize) -> Option<usize> {
        let first = *self.owners.get(param)?;
        match &self.flat {
            None => Some(first),
            Some((starts, block)) => {
                let (s, e) = (starts[param], starts[param + 1]);
                let last = if e > s {
                    ((e - 1) / block).min(self.loads.len() - 1)
                } else {
                    first
                };
                (last == first).then_some(first)
            }
        }
    }

    /// The parameters `rank` owns whole, in id order.
    pub fn owned_by(&self, rank: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.owners.len()).filter(move |&i| self.owner(i) == Some(rank))
    }

    /// What `rank` steps, in id order: whole parameters, or for a flat plan the part of
    /// each parameter inside its range (an empty parameter whole, at its position).
    pub fn slices(&self, rank: usize) -> Vec<Slice> {
        match &self.flat {
            None => self
                .owned_by(rank)
                .map(|param| Slice {
                    param,
                    range: 0..self.numel(param),
                })
                .collect(),
            Some((starts, _)) => {
                let mine = self.range(rank);
                (0..self.owners.len())
                    .filter_map(|param| {
                        let (s, e) = (starts[param], starts[param + 1]);
                        if s == e {
                            return (self.owners[param] == rank)
                                .then_some(Slice { param, range: 0..0 });
                        }
                        let lo = s.max(mine.start);
                        let hi = e.min(mine.end);
                        (lo < hi).then(|| Slice {
                            param,
                            range: lo - s..hi - s,
                        })
                    })
                    .collect()
            }
        }
    }

    /// For a flat plan, `rank`'s range of the flattened parameters (empty for whole
    /// parameters).
    pub fn range(&self, rank: usize) -> Range<usize> {
        match &self.flat {
            None => 0..0,
            Some((starts, block)) => {
                let total = starts[starts.len() - 1];
                (rank * block).min(total)..((rank + 1) * block).min(total)
            }
        }
    }

    /// For a flat plan, each parameter's first position in the flattened order, then
    /// the total.
    pub(crate) fn starts(&self) -> &[usize] {
        self.flat.as_ref().map_or(&[], |(s, _)| s.as_slice())
    }

    /// For a flat plan, the elements of every rank's range but the last (`ceil(total /
    /// ranks)`).
    pub(crate) fn block(&self) -> usize {
        self.flat.as_ref().map_or(0, |(_, b)| *b)
    }

    fn numel(&self, param: usize) -> usize {
        self.numels[param]
    }

    /// The number of parameter elements each rank owns.
    pub fn elements_per_rank(&self) -> Vec<usize> {
        self.loads.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_has_one_owner_and_loads_are_balanced() {
        let numels = [784 * 128, 128, 128 * 128, 128, 128 * 10, 10];
        for ranks in 1..=5 {
            let plan = ShardPlan::balanced(&numels, ranks);
            assert_eq!(plan.owners().len(), numels.len());
            let loads = plan.elements_per_rank();
            assert_eq!(loads.iter().sum::<usize>(), numels.iter().sum::<usize>());
            for (r, &load) in loads.iter().enumerate() {
                let owned: usize = plan.owned_by(r).map(|i| numels[i]).sum();
                assert_eq!(owned, load);
            }
            // Greedy largest-first: no rank exceeds the ideal share by more than the
            // largest parameter.
            let ideal = numels.iter().sum::<usize>().div_ceil(ranks);
            assert!(loads.iter().all(|&l| l <= ideal + numels[0]), "{loads:?}");
        }
    }

    #[test]
    fn flat_slices_cover_every_element_once_in_equal_ranges() {
        let numels = [12, 3, 0, 7, 8, 1, 0];
        let total: usize = numels.iter().sum();
        for ranks in 1..=6 {
            let plan = ShardPlan::flat(&numels, ranks);
            let loads = plan.elements_per_rank();
            assert_eq!(loads.iter().sum::<usize>(), total);
            assert!(
                loads.iter().all(|&l| l <= total.div_ceil(ranks)),
                "{loads:?}"
            );
            let mut seen: Vec<Vec<bool>> = numels.iter().map(|&n| vec![false; n]).collect();
            let mut empty_owners = vec![0; numels.len()];
            for (r, &load) in loads.iter().enumerate() {
                let slices = plan.slices(r);
                assert_eq!(slices.iter().map(|s| s.range.len()).sum::<usize>(), load);
                for s in slices {
                    if numels[s.param] == 0 {
                        empty_owners[s.param] += 1;
                    }
                    for e in s.range.clone() {
                        assert!(!seen[s.param][e], "{ranks} ranks: {s:?}");
                        seen[s.param][e] = true;
                    }
                    let whole = s.range.len() == numels[s.param];
                    assert_eq!(plan.owner(s.param) == Some(r), whole, "{ranks}: {s:?}");
                }
            }
            assert!(seen.iter().flatten().all(|&b| b));
            for (i, &n) in numels.iter().enumerate() {
                assert_eq!(empty_owners[i], usize::from(n == 0), "{ranks} ranks");
            }
        }
    }

    #[test]
    fn extending_keeps_earlier_owners() {
        let mut plan = ShardPlan::balanced(&[5, 3], 2);
        let before = plan.owners().to_vec();
        plan.extend(&[4]);
        assert_eq!(&plan.owners()[..2], &before[..]);
        assert_eq!(plan.owner(2), Some(1));
        assert_eq!(plan.elements_per_rank(), vec![5, 7]);
    }
}
