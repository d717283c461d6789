//! Which scheduler wrote a state dict. PyTorch does not save a scheduler's class, so
//! a state dict from elsewhere is recognised by its keys, compared exactly with those
//! of every entry of [`SCHEDULERS`] (never by which key is tested first).

use std::collections::BTreeSet;
use std::sync::OnceLock;

use crate::{build_scheduler, SchedulerSpec, SimulatedGroups, SCHEDULERS};

/// The keys of PyTorch's `LRScheduler` base class. Every scheduler writes them, or not,
/// as its PyTorch version does (`_is_initial` is recent, `verbose` is gone from new
/// versions, Hugging Face Trainer files often lack `_get_lr_called_within_step`): they
/// say nothing of the class and are left out of the comparison.
pub const BASE_STATE_KEYS: &[&str] = &[
    "base_lrs",
    "last_epoch",
    "_step_count",
    "_is_initial",
    "_get_lr_called_within_step",
    "_last_lr",
    "verbose",
];

/// What the registry's schedulers write: each entry's own state keys (one set per
/// variant: CyclicLR and OneCycleLR write their momentum keys only when they cycle
/// it), and the keys they add to the param groups.
struct Known {
    own: Vec<(&'static str, BTreeSet<String>)>,
    group_keys: Vec<String>,
}

fn known() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let mut own: Vec<(&'static str, BTreeSet<String>)> = Vec::new();
        let mut group_keys: Vec<String> = Vec::new();
        for info in SCHEDULERS {
            let Ok(spec) = info.example.parse::<SchedulerSpec>() else {
                continue;
            };
            for spec in [spec.clone(), spec.kwarg("cycle_momentum", false)] {
                let mut groups = SimulatedGroups::sgd(&[0.1], 0.9);
                let before: Vec<String> = group_key_names(&groups);
                let Ok(s) = build_scheduler(&spec, &mut groups) else {
                    continue;
                };
                for k in group_key_names(&groups) {
                    if !before.contains(&k) && !group_keys.contains(&k) {
                        group_keys.push(k);
                    }
                }
                let keys = own_keys(s.state_dict().keys());
                if !own.iter().any(|(n, k)| *n == info.name && *k == keys) {
                    own.push((info.name, keys));
                }
            }
        }
        Known { own, group_keys }
    })
}

fn group_key_names(groups: &SimulatedGroups) -> Vec<String> {
    groups
        .groups()
        .iter()
        .flat_map(|g| g.keys().map(str::to_string))
        .collect()
}

fn own_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    keys.into_iter()
        .filter(|k| !BASE_STATE_KEYS.contains(k))
        .map(str::to_string)
        .collect()
}

/// The names of the schedulers of [`SCHEDULERS`] whose state dict has exactly these
/// keys, less [`BASE_STATE_KEYS`]; empty if none has. Several names come back where
/// classes write the same keys (LambdaLR and MultiplicativeLR). transformers' named
/// schedules are LambdaLRs in PyTorch: they are named only when no class matches.
///
/// ```
/// use tempo_sched::schedulers_with_state_keys;
///
/// let keys = ["step_size", "gamma", "base_lrs", "last_epoch", "_step_count", "_last_lr"];
/// assert_eq!(schedulers_with_state_keys(keys), ["StepLR"]);
/// assert!(schedulers_with_state_keys(["gamma", "beta", "last_epoch"]).is_empty());
/// ```
pub fn schedulers_with_state_keys<'a>(
    keys: impl IntoIterator<Item = &'a str>,
) -> Vec<&'static str> {
    let keys = own_keys(keys);
    let mut names: Vec<&'static str> = Vec::new();
    for (name, own) in &known().own {
        if *own == keys && !names.contains(name) {
            names.push(name);
        }
    }
    if names.iter().any(|n| !n.starts_with("transformers:")) {
        names.retain(|n| !n.starts_with("transformers:"));
    }
    names
}

/// The keys tempo's schedulers add to an optimizer's param groups (`initial_lr`,
/// `max_lr`, `swa_lr`, ...), found by building every entry of [`SCHEDULERS`]: the keys
/// that say a group was scheduled, not which optimizer it belongs to.
pub fn scheduler_group_keys() -> &'static [String] {
    &known().group_keys
}

/// Builds `spec` on `opt` for its state keys; `None` if it does not build.
#[cfg(test)]
fn state_keys_of(
    spec: &SchedulerSpec,
    opt: &mut dyn tempo_param_groups::OptimizerParamGroups,
) -> Option<Vec<String>> {
    let s = build_scheduler(spec, opt).ok()?;
    Some(s.state_dict().keys().map(str::to_string).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_is_recognised_by_its_own_state_dict() {
        for info in SCHEDULERS {
            let spec: SchedulerSpec = info.example.parse().expect(info.name);
            let mut groups = SimulatedGroups::sgd(&[0.1], 0.9);
            let keys = state_keys_of(&spec, &mut groups).expect(info.name);
            let names = schedulers_with_state_keys(keys.iter().map(String::as_str));
            // transformers' schedules are a PyTorch class underneath (LambdaLR,
            // ReduceLROnPlateau), and are named as that class.
            let class = |n: &&str| !n.starts_with("transformers:");
            let transformers = !class(&info.name);
            assert!(
                names.contains(&info.name) || (transformers && names.iter().any(class)),
                "{}: recognised as {names:?} from {keys:?}",
                info.name
            );
        }
    }

    #[test]
    fn pytorch_key_sets_name_their_class() {
        // PyTorch 2.15's state dicts, less their base-class keys.
        let cases: &[(&[&str], &[&str])] = &[
            (&["step_size", "gamma"], &["StepLR"]),
            (&["milestones", "gamma"], &["MultiStepLR"]),
            (&["gamma"], &["ExponentialLR"]),
            (&["lr_lambdas"], &["LambdaLR", "MultiplicativeLR"]),
            (&["T_max", "eta_min"], &["CosineAnnealingLR"]),
            (
                &["T_0", "T_i", "T_mult", "eta_min", "T_cur"],
                &["CosineAnnealingWarmRestarts"],
            ),
            (&["_milestones", "_schedulers"], &["SequentialLR"]),
            (&["_anneal_strategy", "anneal_epochs"], &["SWALR"]),
        ];
        for (keys, want) in cases {
            let mut with_tail: Vec<&str> = keys.to_vec();
            with_tail.extend(["base_lrs", "last_epoch", "_step_count", "_last_lr"]);
            assert_eq!(&schedulers_with_state_keys(with_tail), want, "{keys:?}");
        }
    }

    #[test]
    fn a_key_more_or_less_is_unknown() {
        assert_eq!(
            schedulers_with_state_keys(["step_size", "gamma"]),
            ["StepLR"]
        );
        assert!(schedulers_with_state_keys(["step_size"]).is_empty());
        assert!(schedulers_with_state_keys(["step_size", "gamma", "warmup"]).is_empty());
        assert!(schedulers_with_state_keys(["last_epoch"]).is_empty());
    }

    #[test]
    fn momentum_cycling_variants_are_both_known() {
        let cyclic = |momentum: bool| {
            let spec: SchedulerSpec = "CyclicLR(base_lr=0.01, max_lr=0.1)".parse().unwrap();
            let spec = spec.kwarg("cycle_momentum", momentum);
            let mut groups = SimulatedGroups::sgd(&[0.1], 0.9);
            state_keys_of(&spec, &mut groups).unwrap()
        };
        let (on, off) = (cyclic(true), cyclic(false));
        assert_ne!(on, off);
        for keys in [on, off] {
            assert_eq!(
                schedulers_with_state_keys(keys.iter().map(String::as_str)),
                ["CyclicLR"]
            );
        }
    }

    #[test]
    fn group_keys_are_the_schedulers_own() {
        let keys = scheduler_group_keys();
        for k in ["initial_lr", "max_lr", "min_lr", "swa_lr"] {
            assert!(keys.iter().any(|g| g == k), "{k} missing from {keys:?}");
        }
        assert!(
            !keys.iter().any(|g| g == "lr" || g == "momentum"),
            "{keys:?}"
        );
    }
}
