//! [`ShardPlan`]: which rank owns (steps, and keeps the optimizer state of) each parameter.

/// Whole parameters assigned to ranks, balanced by size, as PyTorch's
/// `ZeroRedundancyOptimizer` does: parameters in decreasing size (ties by index), each to
/// the rank with the fewest elements so far (ties to the lower rank). Every rank computes
/// the same plan from the same shapes, so no message is needed.
///
/// ```
/// use tempo_dist::ShardPlan;
///
/// let plan = ShardPlan::balanced(&[100, 10, 60, 50], 2);
/// assert_eq!(plan.owners(), &[0, 0, 1, 1]);
/// assert_eq!(plan.elements_per_rank(), vec![110, 110]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    owners: Vec<usize>,
    loads: Vec<usize>,
}

impl ShardPlan {
    /// The plan for parameters of `numels` elements over `ranks` ranks (at least one).
    pub fn balanced(numels: &[usize], ranks: usize) -> Self {
        let mut plan = ShardPlan {
            owners: Vec::new(),
            loads: vec![0; ranks.max(1)],
        };
        plan.extend(numels);
        plan
    }

    /// Assigns further parameters (a new param group) on top of the current loads.
    pub fn extend(&mut self, numels: &[usize]) {
        let base = self.owners.len();
        self.owners.resize(base + numels.len(), 0);
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

    /// The owner of each parameter, in state-dict id order.
    pub fn owners(&self) -> &[usize] {
        &self.owners
    }

    /// The owner of parameter `param`.
    pub fn owner(&self, param: usize) -> Option<usize> {
        self.owners.get(param).copied()
    }

    /// The parameters `rank` owns, in id order.
    pub fn owned_by(&self, rank: usize) -> impl Iterator<Item = usize> + '_ {
        self.owners
            .iter()
            .enumerate()
            .filter(move |(_, &o)| o == rank)
            .map(|(i, _)| i)
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
    fn extending_keeps_earlier_owners() {
        let mut plan = ShardPlan::balanced(&[5, 3], 2);
        let before = plan.owners().to_vec();
        plan.extend(&[4]);
        assert_eq!(&plan.owners()[..2], &before[..]);
        assert_eq!(plan.owner(2), Some(1));
        assert_eq!(plan.elements_per_rank(), vec![5, 7]);
    }
}
