//! Schedulers made of schedulers.

mod chained;
mod sequential;

pub use chained::ChainedScheduler;
pub use sequential::{SequentialLR, SequentialLRConfig};

use tempo_param_groups::{Dict, Value};

use crate::state::StateReader;
use crate::{LRScheduler, SchedError};

/// Loads each child's dict of `_schedulers` into a copy of the children; all or nothing.
pub(crate) fn load_children(
    r: &mut StateReader<'_>,
    scheduler: &'static str,
    children: &[Box<dyn LRScheduler>],
) -> Result<Vec<Box<dyn LRScheduler>>, SchedError> {
    let items = r.list("_schedulers")?;
    if items.len() != children.len() {
        return Err(SchedError::StateWrongType {
            scheduler,
            key: "_schedulers".into(),
            expected: "one state dict per child scheduler",
            found: format!("{} dicts for {} children", items.len(), children.len()),
        });
    }
    let mut loaded = Vec::with_capacity(children.len());
    for (child, item) in children.iter().zip(items) {
        let d = item.as_dict().ok_or_else(|| SchedError::StateWrongType {
            scheduler,
            key: "_schedulers".into(),
            expected: "a list of dicts",
            found: item.to_string(),
        })?;
        let mut c = child.clone_box();
        c.load_state_dict(d)?;
        loaded.push(c);
    }
    Ok(loaded)
}

pub(crate) fn children_state(children: &[Box<dyn LRScheduler>]) -> Value {
    Value::List(
        children
            .iter()
            .map(|c| Value::Dict(c.state_dict()))
            .collect::<Vec<_>>(),
    )
}

/// An empty dict, for composites' lints-friendly construction.
pub(crate) fn new_dict() -> Dict {
    Dict::new()
}

/// The keys PyTorch's `_initial_step` adds to a composite that is an outer
/// SequentialLR's first child: `_step_count` (0: a composite's own `step` never counts)
/// and `_is_initial` (false at rest).
pub(crate) fn insert_initial_step_keys(d: &mut Dict) {
    d.insert("_step_count", Value::Int(0));
    d.insert("_is_initial", Value::Bool(false));
}

/// Reads the keys of [`insert_initial_step_keys`]: whether they are there.
pub(crate) fn read_initial_step_keys(r: &mut StateReader<'_>) -> Result<bool, SchedError> {
    let count = r.optional("_step_count").is_some();
    if count {
        r.int("_step_count")?;
    }
    let initial = r.optional("_is_initial").is_some();
    if initial {
        r.boolean("_is_initial")?;
    }
    Ok(count || initial)
}
