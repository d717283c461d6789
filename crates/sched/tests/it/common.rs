//! The fake optimizer and the `check_*` helpers every test goes through.

use serde_json::Value as Json;
use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};
use tempo_sched::{build_scheduler, LRScheduler, SchedError, SchedulerSpec};

/// The ten-line fake optimizer: its param groups, and nothing else.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct FakeOptimizer {
    pub(crate) groups: Vec<Dict>,
}

impl OptimizerParamGroups for FakeOptimizer {
    fn num_groups(&self) -> usize {
        self.groups.len()
    }
    fn get(&self, group: usize, key: &str) -> Option<&Value> {
        self.groups.get(group)?.get(key)
    }
    fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value> {
        self.groups.get_mut(group)?.get_mut(key)
    }
    fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        let groups = self.groups.len();
        let g = self
            .groups
            .get_mut(group)
            .ok_or(ParamGroupError::NoSuchGroup { group, groups })?;
        g.insert(key, value);
        Ok(())
    }
}

impl FakeOptimizer {
    pub(crate) fn lrs(&self) -> Vec<f64> {
        (0..self.groups.len())
            .map(|g| self.lr(g).expect("every group has an lr"))
            .collect()
    }
    pub(crate) fn momenta(&self) -> Vec<Option<f64>> {
        (0..self.groups.len())
            .map(|g| self.momentum(g).ok())
            .collect()
    }
    /// SGD-like groups with the given lrs and momentum.
    pub(crate) fn sgd(lrs: &[f64], momentum: f64) -> Self {
        let groups = lrs
            .iter()
            .map(|&lr| {
                [
                    ("lr", Value::Float(lr)),
                    ("momentum", Value::Float(momentum)),
                ]
                .into_iter()
                .collect()
            })
            .collect();
        FakeOptimizer { groups }
    }
    /// Adam-like groups with the given lrs and betas.
    pub(crate) fn adam(lrs: &[f64], betas: (f64, f64)) -> Self {
        let groups = lrs
            .iter()
            .map(|&lr| {
                [
                    ("lr", Value::Float(lr)),
                    ("betas", Value::Tuple(vec![betas.0.into(), betas.1.into()])),
                ]
                .into_iter()
                .collect()
            })
            .collect();
        FakeOptimizer { groups }
    }
}

pub(crate) fn json_to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(json_to_value).collect()),
        Json::Object(m) => Value::Dict(
            m.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        ),
    }
}

/// The optimizer's constructor defaults, in PyTorch's order.
fn defaults(kind: &str) -> Vec<(&'static str, Value)> {
    let f = Value::Float;
    match kind {
        "SGD" => vec![
            ("lr", f(1e-3)),
            ("momentum", Value::Int(0)),
            ("dampening", Value::Int(0)),
            ("weight_decay", Value::Int(0)),
            ("nesterov", Value::Bool(false)),
            ("maximize", Value::Bool(false)),
            ("foreach", Value::None),
            ("differentiable", Value::Bool(false)),
            ("fused", Value::None),
        ],
        "Adam" | "AdamW" => vec![
            ("lr", f(1e-3)),
            ("betas", Value::Tuple(vec![f(0.9), f(0.999)])),
            ("eps", f(1e-8)),
            ("weight_decay", Value::Int(0)),
            ("amsgrad", Value::Bool(false)),
            ("maximize", Value::Bool(false)),
            ("foreach", Value::None),
            ("capturable", Value::Bool(false)),
            ("differentiable", Value::Bool(false)),
            ("fused", Value::None),
            ("decoupled_weight_decay", Value::Bool(false)),
        ],
        "RMSprop" => vec![
            ("lr", f(1e-2)),
            ("momentum", Value::Int(0)),
            ("alpha", f(0.99)),
            ("eps", f(1e-8)),
            ("centered", Value::Bool(false)),
            ("weight_decay", Value::Int(0)),
        ],
        other => panic!("test data uses an optimizer the fake does not know: {other}"),
    }
}

fn tuple_if_betas(key: &str, v: Value) -> Value {
    match (key, v) {
        ("betas" | "etas" | "step_sizes", Value::List(items)) => Value::Tuple(items),
        (_, v) => v,
    }
}

/// The groups PyTorch's optimizer would have for a case's `optimizer` field.
pub(crate) fn fake_from_case(optimizer: &Json) -> FakeOptimizer {
    let kind = optimizer["type"].as_str().expect("optimizer.type");
    let mut defs = defaults(kind);
    if let Some(kw) = optimizer.get("kwargs").and_then(Json::as_object) {
        for (k, v) in kw {
            if let Some(slot) = defs.iter_mut().find(|(d, _)| d == k) {
                slot.1 = tuple_if_betas(k, json_to_value(v));
            }
        }
    }
    let groups = optimizer["groups"]
        .as_array()
        .expect("optimizer.groups")
        .iter()
        .map(|g| {
            let mut d = Dict::new();
            for (k, v) in g.as_object().expect("a group is an object") {
                if k != "params" {
                    d.insert(k.clone(), tuple_if_betas(k, json_to_value(v)));
                }
            }
            for (k, v) in &defs {
                d.setdefault(*k, v.clone());
            }
            d
        })
        .collect();
    FakeOptimizer { groups }
}

/// |got - want| <= atol + rtol * |want|, element by element, with the row and group in
/// the message.
pub(crate) fn check_lr_sequence(
    what: &str,
    got: &[Vec<f64>],
    want: &[Vec<f64>],
    rtol: f64,
    atol: f64,
) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} rows, expected {}",
        got.len(),
        want.len()
    );
    for (t, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            g.len(),
            w.len(),
            "{what}: row {t} has {} groups, expected {}",
            g.len(),
            w.len()
        );
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            let ok = (a - b).abs() <= atol + rtol * b.abs() || (a.is_nan() && b.is_nan());
            assert!(
                ok,
                "{what}: row {t} group {i}: got {a:e}, expected {b:e}\n got {g:?}\nwant {w:?}"
            );
        }
    }
}

/// A run's lr rows and momentum rows.
pub(crate) type Rows = (Vec<Vec<f64>>, Vec<Vec<Option<f64>>>);

/// Builds a scheduler on fresh groups.
pub(crate) type Build<'a> =
    &'a dyn Fn(&mut FakeOptimizer) -> Result<Box<dyn LRScheduler>, SchedError>;

/// How a scheduler is stepped in a run.
#[derive(Debug, Clone)]
pub(crate) enum Drive {
    Plain,
    Metrics(Vec<f64>),
    Epochs(Vec<f64>),
}

impl Drive {
    pub(crate) fn step(
        &self,
        s: &mut dyn LRScheduler,
        opt: &mut FakeOptimizer,
        t: usize,
    ) -> Result<(), SchedError> {
        match self {
            Drive::Plain => s.step(opt),
            Drive::Metrics(m) => s.step_with_metric(opt, m[t - 1]),
            Drive::Epochs(e) => s.step_to_epoch(opt, e[t - 1]),
        }
    }
}

/// One run: rows of lrs and momenta (row 0 after construction). With `resume_at = k`,
/// after step k everything is saved, thrown away, rebuilt and loaded (the conformance
/// protocol); with `drop_initial_lr`, the restored groups lose their `initial_lr`.
pub(crate) fn run(
    build: Build<'_>,
    fresh: &FakeOptimizer,
    steps: usize,
    drive: &Drive,
    resume_at: Option<usize>,
    drop_initial_lr: bool,
) -> Result<Rows, SchedError> {
    let mut opt = fresh.clone();
    let mut s = build(&mut opt)?;
    let mut lrs = vec![opt.lrs()];
    let mut moms = vec![opt.momenta()];
    for t in 1..=steps {
        drive.step(s.as_mut(), &mut opt, t)?;
        assert_eq!(
            s.last_lr(),
            opt.lrs().as_slice(),
            "{}: last_lr after step {t}",
            s.name()
        );
        lrs.push(opt.lrs());
        moms.push(opt.momenta());
        if resume_at == Some(t) {
            let mut saved = opt.clone();
            if drop_initial_lr {
                for g in &mut saved.groups {
                    g.remove("initial_lr");
                }
            }
            let state = s.state_dict();
            let mut new_opt = fresh.clone();
            let mut new_s = build(&mut new_opt)?;
            new_opt = saved;
            new_s.load_state_dict(&state)?;
            assert_eq!(
                new_s.state_dict(),
                state,
                "{}: state round trip at {t}",
                s.name()
            );
            opt = new_opt;
            s = new_s;
        }
    }
    Ok((lrs, moms))
}

pub(crate) fn build_spec(
    spec: &SchedulerSpec,
) -> impl Fn(&mut FakeOptimizer) -> Result<Box<dyn LRScheduler>, SchedError> + '_ {
    move |opt: &mut FakeOptimizer| build_scheduler(spec, opt)
}

fn bits(rows: &[Vec<f64>]) -> Vec<Vec<u64>> {
    rows.iter()
        .map(|r| r.iter().map(|x| x.to_bits()).collect())
        .collect()
}

fn mom_bits(rows: &[Vec<Option<f64>>]) -> Vec<Vec<Option<u64>>> {
    rows.iter()
        .map(|r| r.iter().map(|x| x.map(f64::to_bits)).collect())
        .collect()
}

/// Resume after step k, for every k in `1..steps`, (with and without `initial_lr` in
/// the restored groups) gives the straight run bit for bit.
pub(crate) fn check_resume(
    what: &str,
    build: Build<'_>,
    fresh: &FakeOptimizer,
    steps: usize,
    drive: &Drive,
) {
    let (lrs, moms) =
        run(build, fresh, steps, drive, None, false).unwrap_or_else(|e| panic!("{what}: {e}"));
    for k in 1..steps {
        for drop in [false, true] {
            let (l, m) = run(build, fresh, steps, drive, Some(k), drop)
                .unwrap_or_else(|e| panic!("{what}: resume at {k}: {e}"));
            assert_eq!(
                bits(&l),
                bits(&lrs),
                "{what}: lr after resume at {k} (drop initial_lr: {drop})\n{l:?}\n{lrs:?}"
            );
            assert_eq!(
                mom_bits(&m),
                mom_bits(&moms),
                "{what}: momentum after resume at {k}"
            );
        }
    }
}
