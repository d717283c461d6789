//! [`DistributedOptimizer`]: data-parallel steps over any tempo optimizer but LBFGS,
//! with its state sharded across ranks (ZeRO stage 1).

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use tempo_optim::{
    build_optimizer, GroupSpec, Optimizer, OptimizerSpec, OptimizerStateDict, ParamSelection,
    ParamState,
};
use tempo_param_groups::{Dict, OptimizerParamGroups, ParamGroupError, Value};
use tempo_tensor::Tensor;

use crate::comm::{agree, check_same};
use crate::flat::{cut, stitch, Grads, Layout, SharedGrads, SliceParam};
use crate::{wire, Communicator, DistError, DistFloat, ShardPlan, Sharding, Slice};

/// How the ranks' gradients are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GradReduction {
    /// The mean over ranks (PyTorch's `DistributedDataParallel`): right when every rank's
    /// loss is the mean over its own, equally sized, share of the batch.
    #[default]
    Mean,
    /// The sum over ranks: right when every rank's loss is already divided by the global
    /// batch size (exact for shares of unequal size).
    Sum,
}

/// Settings of a [`DistributedOptimizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistConfig {
    /// Gradient elements per all-reduce message (PyTorch's `bucket_cap_mb` is 25 MB:
    /// 6.5 M f32 elements, the default here). Gradients are flattened into one buffer and
    /// reduced in messages of this size, not one message per tensor; parameters are
    /// broadcast from their owners in messages of the same size. With
    /// [`Sharding::Flat`], each reduce-scatter message moves at most this many elements,
    /// summed over the ranks, and each broadcast of an updated slice at most this many.
    pub bucket_elements: usize,
    /// How the optimizer state is split: whole parameters (the default, as PyTorch's
    /// `ZeroRedundancyOptimizer`) or flat ranges of elements (DeepSpeed ZeRO-1, for
    /// elementwise optimizers).
    pub sharding: Sharding,
    /// How gradients are combined across ranks.
    pub reduction: GradReduction,
    /// Compare the param groups (what a scheduler writes) across ranks before every step
    /// and fail on a difference. On by default in debug builds.
    pub check_groups_every_step: bool,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self {
            bucket_elements: 25 * 1024 * 1024 / 4,
            sharding: Sharding::WholeParameters,
            reduction: GradReduction::Mean,
            check_groups_every_step: cfg!(debug_assertions),
        }
    }
}

/// Where the last [`DistributedOptimizer::step`] spent its time on this rank.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepTimings {
    /// Flattening the gradients, the all-reduce messages, and writing the averages back
    /// (with [`Sharding::Flat`]: flattening and the reduce-scatter messages).
    pub all_reduce: Duration,
    /// The wrapped optimizer's step over this rank's parameters.
    pub local_step: Duration,
    /// Broadcasting the updated parameters from their owners (with [`Sharding::Flat`]:
    /// the updated ranges, slice by slice).
    pub broadcast: Duration,
}

/// Flat sharding's part of a rank: an optimizer of the wrapped kind over this rank's
/// slices, stepping the parameters in place.
struct Shard<T: DistFloat> {
    /// `None` when the rank's range holds no parameter.
    optimizer: Option<Box<dyn Optimizer<T, SliceParam<T>>>>,
    slices: Vec<Slice>,
    /// Every rank's slices, by rank.
    all_slices: Vec<Vec<Slice>>,
    grads: SharedGrads<T>,
    layout: Layout,
    /// The shard optimizer's id of each group's slices.
    group_ids: Vec<Vec<usize>>,
}

/// A data-parallel optimizer: every rank holds the whole model, computes gradients on
/// its share of the batch, and calls [`step`](Self::step) (a collective). With whole
/// parameters ([`Sharding::WholeParameters`], the default) a step
///
/// 1. all-reduces the gradients over flattened buckets ([`DistConfig::bucket_elements`]
///    elements per message), so every rank holds the averaged gradients;
/// 2. steps the wrapped optimizer over the parameters this rank *owns* (a
///    [`ShardPlan`]: whole parameters, balanced by size), so optimizer state exists only
///    for those: each rank keeps about `1/size` of it (ZeRO stage 1, PyTorch's
///    `ZeroRedundancyOptimizer`), but at least the state of its largest parameter;
/// 3. broadcasts every updated parameter from its owner.
///
/// With flat ranges ([`Sharding::Flat`], DeepSpeed ZeRO-1's layout) the parameters,
/// flattened in id order, are cut into `size` equal ranges, and a step
///
/// 1. reduce-scatters the flattened gradients: each rank receives the combined gradient
///    of its own range only;
/// 2. steps an optimizer of the wrapped kind, with the same param groups, over the
///    slices of parameters in its range, in place: each rank keeps `1/size` of the
///    state, within one element;
/// 3. sends every rank's updated range to the others (a broadcast per slice, from and
///    into the parameters' memory).
///
/// There each rank's gradients stay its own (the combined gradient exists only range by
/// range, inside the step), and only elementwise optimizers
/// ([`Optimizer::is_elementwise`]) can be cut: Adafactor and Muon are refused with
/// [`DistError::FlatNotElementwise`].
///
/// The wrapped optimizer is any tempo optimizer over the model's parameters, built
/// exactly as a single process builds it; LBFGS, which needs all parameters at once, is
/// refused. Its param groups stay whole on every rank, so a scheduler steps
/// the distributed optimizer as it steps a single one (`&mut DistributedOptimizer` is a
/// `&mut dyn OptimizerParamGroups`): every rank steps its own scheduler, and the groups
/// stay identical (checked before each step in debug builds).
///
/// The state in a checkpoint is the single-process one: [`consolidated_state_dict`]
/// gathers the shards on one rank in PyTorch's layout and numbering, and
/// [`load_state_dict`] takes such a state (saved with any number of ranks, or by one
/// process) and keeps this rank's share. Every method that talks to the other ranks is
/// a collective; a failure on one rank (including a rank that disappears, where the
/// communicator reports it) is an error on every rank, never a hang.
///
/// [`consolidated_state_dict`]: Self::consolidated_state_dict
/// [`load_state_dict`]: Self::load_state_dict
pub struct DistributedOptimizer<T: DistFloat> {
    inner: Box<dyn Optimizer<T>>,
    comm: Box<dyn Communicator>,
    config: DistConfig,
    params: Vec<Tensor<T>>,
    plan: ShardPlan,
    /// Parameter indices in the order they first got state (PyTorch's state-dict order),
    /// the same on every rank.
    order: Vec<usize>,
    /// The keys of each group, for the debug comparison.
    group_keys: Vec<Vec<String>>,
    flat: Vec<T>,
    reduced: Vec<T>,
    /// With [`Sharding::Flat`]: this rank's slices and their optimizer.
    shard: Option<Shard<T>>,
    timings: StepTimings,
}

impl<T: DistFloat> std::fmt::Debug for DistributedOptimizer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistributedOptimizer")
            .field("optimizer", &self.inner.name())
            .field("rank", &self.comm.rank())
            .field("size", &self.comm.size())
            .field("plan", &self.plan)
            .field("config", &self.config)
            .finish()
    }
}

impl<T: DistFloat> DistributedOptimizer<T> {
    /// Wraps `inner` (built over the whole model, as a single process builds it) for the
    /// ranks of `comm`. A collective: every rank must call it with the same optimizer
    /// over parameters of the same shapes.
    ///
    /// Checks, on every rank alike, that all ranks agree on the optimizer, its param
    /// groups and hyperparameters, and every parameter's shape (a difference is a
    /// [`DistError::RankMismatch`] naming it); then copies rank 0's parameter values to
    /// every rank (as `DistributedDataParallel` does), and keeps only this rank's share
    /// of any state `inner` already holds.
    pub fn new(
        inner: Box<dyn Optimizer<T>>,
        comm: Box<dyn Communicator>,
        config: DistConfig,
    ) -> Result<Self, DistError> {
        let local = if inner.name() == "LBFGS" {
            Err(DistError::NotElementwise {
                name: inner.name().to_string(),
            })
        } else if config.sharding == Sharding::Flat && !inner.is_elementwise() {
            Err(DistError::FlatNotElementwise {
                name: inner.name().to_string(),
            })
        } else if config.bucket_elements == 0 {
            Err(DistError::InvalidArgument {
                what: "bucket_elements",
                expected: "at least 1".into(),
                found: "0".into(),
            })
        } else {
            Ok(())
        };
        agree(comm.as_ref(), "setting up the distributed optimizer", local)?;
        let params = inner.params();
        let state = inner.state_dict();
        let group_keys = state
            .param_groups
            .iter()
            .map(|d| {
                d.keys()
                    .filter(|k| *k != "params")
                    .map(String::from)
                    .collect()
            })
            .collect();
        let numels: Vec<usize> = params.iter().map(Tensor::numel).collect();
        let plan = match config.sharding {
            Sharding::WholeParameters => ShardPlan::balanced(&numels, comm.size()),
            Sharding::Flat => ShardPlan::flat(&numels, comm.size()),
        };
        let mut this = Self {
            plan,
            inner,
            comm,
            config,
            params,
            order: Vec::new(),
            group_keys,
            flat: Vec::new(),
            reduced: Vec::new(),
            shard: None,
            timings: StepTimings::default(),
        };
        check_same(
            this.comm.as_ref(),
            "the optimizer and its parameters",
            &this.describe(),
        )?;
        if this.config.sharding == Sharding::Flat {
            let shard = this.build_shard(&state);
            this.shard = Some(agree(
                this.comm.as_ref(),
                "setting up the distributed optimizer",
                shard,
            )?);
        }
        this.broadcast_params(0..this.params.len(), |_| 0)?;
        this.load_state_dict(&state)?;
        Ok(this)
    }

    /// What every rank must share: dtype, optimizer, groups with their hyperparameters,
    /// parameter shapes.
    fn describe(&self) -> Vec<String> {
        let mut lines = vec![
            format!("element type {}", T::DTYPE.torch_name()),
            format!("optimizer {}", self.inner.name()),
            format!("sharding {:?}", self.config.sharding),
            format!("{} elements per bucket", self.config.bucket_elements),
            format!("{} parameters", self.params.len()),
        ];
        for (i, p) in self.params.iter().enumerate() {
            lines.push(format!("parameter {i} of shape {:?}", p.shape()));
        }
        lines.extend(self.describe_groups());
        lines
    }

    fn describe_groups(&self) -> Vec<String> {
        let mut lines = vec![format!("{} param groups", self.inner.num_groups())];
        for (g, keys) in self.group_keys.iter().enumerate() {
            lines.push(format!("param group {g} keys {keys:?}"));
            for key in keys.iter().map(String::as_str).chain(["lr", "initial_lr"]) {
                lines.push(format!(
                    "param group {g} {key} = {:?}",
                    self.inner.get(g, key)
                ));
            }
        }
        lines
    }

    /// Flat sharding: an optimizer of the wrapped kind over this rank's slices, with the
    /// wrapped optimizer's param groups (`state` is its state dict).
    fn build_shard(&self, state: &OptimizerStateDict) -> Result<Shard<T>, DistError> {
        let rank = self.comm.rank();
        let slices = self.plan.slices(rank);
        let block = self.plan.block();
        let starts = self.plan.starts();
        let base = rank * block;
        let grads: SharedGrads<T> = Arc::new(RwLock::new(Grads {
            values: Vec::new(),
            present: vec![false; slices.len()],
        }));
        let params: Vec<SliceParam<T>> = slices
            .iter()
            .enumerate()
            .map(|(j, s)| {
                let offset = (starts[s.param] + s.range.start).saturating_sub(base);
                SliceParam::new(
                    self.params[s.param].clone(),
                    s.range.clone(),
                    offset,
                    j,
                    Arc::clone(&grads),
                )
            })
            .collect();
        // Each parameter's group, from the groups' sizes (ids are numbered group by group).
        let mut group_of = Vec::with_capacity(self.params.len());
        for (g, d) in state.param_groups.iter().enumerate() {
            let n = d
                .get("params")
                .and_then(Value::as_slice)
                .map_or(0, <[Value]>::len);
            group_of.extend(std::iter::repeat_n(g, n));
        }
        let mut group_ids = vec![Vec::new(); state.param_groups.len()];
        for (j, s) in slices.iter().enumerate() {
            let g = group_of.get(s.param).copied().unwrap_or(0);
            if let Some(ids) = group_ids.get_mut(g) {
                ids.push(j);
            }
        }
        let optimizer = if params.is_empty() {
            None
        } else {
            let spec = OptimizerSpec {
                kind: self.inner.name().to_string(),
                kwargs: Default::default(),
                groups: Some(
                    group_ids
                        .iter()
                        .map(|ids| GroupSpec {
                            params: ParamSelection::Indices(ids.clone()),
                            options: Default::default(),
                        })
                        .collect(),
                ),
            };
            let mut opt = build_optimizer::<T, SliceParam<T>>(&spec, &params)?;
            // The wrapped optimizer's hyperparameters, and no state yet (`new` loads it).
            opt.load_state_dict(&OptimizerStateDict {
                state: Vec::new(),
                param_groups: shard_groups(&state.param_groups, &group_ids),
            })?;
            Some(opt)
        };
        Ok(Shard {
            optimizer,
            slices,
            all_slices: (0..self.comm.size()).map(|r| self.plan.slices(r)).collect(),
            grads,
            layout: Layout::new(self.comm.size(), block, self.config.bucket_elements),
            group_ids,
        })
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.comm.rank()
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.comm.size()
    }

    /// The communicator, for the caller's own collectives (averaging a loss, comparing
    /// configurations).
    pub fn communicator(&self) -> &dyn Communicator {
        self.comm.as_ref()
    }

    /// Which rank owns each parameter.
    pub fn plan(&self) -> &ShardPlan {
        &self.plan
    }

    /// The wrapped optimizer (holding state for this rank's parameters only; with
    /// [`Sharding::Flat`] it holds the param groups and no state).
    pub fn inner(&self) -> &dyn Optimizer<T> {
        self.inner.as_ref()
    }

    /// The settings.
    pub fn config(&self) -> &DistConfig {
        &self.config
    }

    /// Where the last step spent its time on this rank.
    pub fn last_step_timings(&self) -> StepTimings {
        self.timings
    }

    /// The parameters, in state-dict id order.
    pub fn params(&self) -> &[Tensor<T>] {
        &self.params
    }

    /// Sets every parameter's gradient to `None`.
    pub fn zero_grad(&mut self) {
        self.inner.zero_grad();
    }

    /// Bytes of optimizer state this rank holds (tensor elements times their size): about
    /// `1/size` of what one process holds for the same model.
    pub fn local_state_bytes(&self) -> usize {
        fn bytes(v: &tempo_optim::StateValue) -> usize {
            match v {
                tempo_optim::StateValue::Tensor(t) => t.len() * t.dtype().size(),
                tempo_optim::StateValue::List(items) => items.iter().map(bytes).sum(),
                _ => 0,
            }
        }
        self.local_state_dict()
            .state
            .iter()
            .flat_map(|(_, s)| s.entries.iter().map(|(_, v)| bytes(v)))
            .sum()
    }

    /// This rank's share of the state: every param group, and state for the parameters
    /// this rank owns (with [`Sharding::Flat`]: for the slices of parameters in its
    /// range, by parameter id, a partial slice's tensors one-dimensional). Not a
    /// checkpoint: see [`consolidated_state_dict`](Self::consolidated_state_dict).
    pub fn local_state_dict(&self) -> OptimizerStateDict {
        let mut sd = self.inner.state_dict();
        if let Some(shard) = &self.shard {
            sd.state = shard_state(shard);
        }
        sd
    }

    /// One data-parallel step (a collective); see the type's documentation. Returns
    /// whether any parameter was updated, as a single process would: a parameter takes
    /// part when any rank has a gradient for it (ranks without one contribute zeros).
    /// After the step every such parameter holds the combined gradient on every rank.
    pub fn step(&mut self) -> Result<bool, DistError> {
        let comm = self.comm.as_ref();
        if self.config.check_groups_every_step {
            check_same(comm, "the param groups", &self.describe_groups())?;
        }
        let started = Instant::now();
        if self.shard.is_some() {
            return self.step_flat(started);
        }
        if comm.size() == 1 {
            // Nothing to combine or to share: the wrapped optimizer steps everything.
            let n = self.params.len();
            let present: Vec<usize> = (0..n)
                .filter(|&i| self.params[i].grad().is_some())
                .collect();
            let any = self.inner.step()?;
            self.note_first_steps(&present);
            self.timings = StepTimings {
                local_step: started.elapsed(),
                ..StepTimings::default()
            };
            return Ok(any);
        }
        let n = self.params.len();
        let counts = presence(comm, &self.params)?;
        let present: Vec<usize> = (0..n).filter(|&i| counts[i] > 0).collect();
        if present.is_empty() {
            self.timings = StepTimings::default();
            return Ok(false);
        }
        // 1. Flatten, all-reduce bucket by bucket, write the combined gradients back.
        let total: usize = present.iter().map(|&i| self.params[i].numel()).sum();
        self.flat.clear();
        self.flat.reserve(total);
        for &i in &present {
            let p = &self.params[i];
            match p.grad().as_ref() {
                Some(g) => match g.as_slice() {
                    Some(contiguous) => self.flat.extend_from_slice(contiguous),
                    None => self.flat.extend(g.iter().copied()),
                },
                None => self.flat.extend(std::iter::repeat_n(T::zero(), p.numel())),
            }
        }
        self.reduced.resize(total, T::zero());
        let bucket = self.config.bucket_elements;
        for start in (0..total).step_by(bucket) {
            let end = (start + bucket).min(total);
            T::all_reduce_sum(comm, &self.flat[start..end], &mut self.reduced[start..end])?;
        }
        if self.config.reduction == GradReduction::Mean && comm.size() > 1 {
            let ranks = <T as tempo_tensor::Float>::from_f64(comm.size() as f64);
            for x in &mut self.reduced {
                *x /= ranks;
            }
        }
        let mut at = 0;
        for &i in &present {
            let p = &self.params[i];
            let len = p.numel();
            let src = &self.reduced[at..at + len];
            at += len;
            let mut grad = p.grad_mut();
            match grad.as_mut().filter(|g| g.shape() == p.shape().as_slice()) {
                Some(g) => match g.as_slice_mut() {
                    Some(contiguous) => contiguous.copy_from_slice(src),
                    None => g.iter_mut().zip(src).for_each(|(d, s)| *d = *s),
                },
                None => {
                    *grad = Some(
                        ArrayD::from_shape_vec(IxDyn(&p.shape()), src.to_vec()).map_err(|e| {
                            DistError::InvalidArgument {
                                what: "gradient",
                                expected: format!("{} elements", p.numel()),
                                found: e.to_string(),
                            }
                        })?,
                    );
                }
            }
        }
        let reduced_at = Instant::now();
        // 2. Step this rank's parameters only: the others' gradients are set aside.
        let rank = comm.rank();
        let set_aside: Vec<(usize, Option<ArrayD<T>>)> = present
            .iter()
            .filter(|&&i| self.plan.owner(i) != Some(rank))
            .map(|&i| (i, self.params[i].grad_mut().take()))
            .collect();
        let local = self.inner.step().map_err(DistError::from);
        for (i, g) in set_aside {
            *self.params[i].grad_mut() = g;
        }
        agree(comm, "the optimizer step", local)?;
        let stepped_at = Instant::now();
        // 3. Every updated parameter from its owner.
        let plan = self.plan.clone();
        self.broadcast_params(present.iter().copied(), |i| plan.owner(i).unwrap_or(0))?;
        self.finish_step(&present, started, reduced_at, stepped_at);
        Ok(true)
    }

    /// A step with [`Sharding::Flat`]: reduce-scatter, step of this rank's slices,
    /// every rank's slices to the others.
    fn step_flat(&mut self, started: Instant) -> Result<bool, DistError> {
        let comm = self.comm.as_ref();
        let Some(shard) = self.shard.as_mut() else {
            return Ok(false);
        };
        let size = comm.size();
        let n = self.params.len();
        let counts = presence(comm, &self.params)?;
        let present: Vec<usize> = (0..n).filter(|&i| counts[i] > 0).collect();
        if present.is_empty() {
            self.timings = StepTimings::default();
            return Ok(false);
        }
        let layout = shard.layout;
        let starts = self.plan.starts();
        // 1. Flatten every gradient straight to its place in the reduce-scatter buffer
        // (zeros where this rank has none), then reduce-scatter it round by round.
        self.flat.resize(layout.len(), T::zero());
        for (i, p) in self.params.iter().enumerate() {
            let elements = starts[i]..starts[i + 1];
            let grad = p.grad();
            let contiguous = grad.as_ref().map(|g| g.as_standard_layout());
            match contiguous.as_ref().and_then(|g| g.as_slice()) {
                Some(g) => layout.runs(elements.clone(), |e, at, len, _| {
                    let from = e - elements.start;
                    self.flat[at..at + len].copy_from_slice(&g[from..from + len]);
                }),
                None => layout.runs(elements, |_, at, len, _| {
                    self.flat[at..at + len].fill(T::zero());
                }),
            }
        }
        {
            let mut grads = shard.grads.write().unwrap_or_else(PoisonError::into_inner);
            let grads = &mut *grads;
            grads.values.resize(layout.block, T::zero());
            for (at, len) in layout.rounds() {
                T::reduce_scatter_sum(
                    comm,
                    &self.flat[size * at..size * (at + len)],
                    &mut grads.values[at..at + len],
                )?;
            }
            if self.config.reduction == GradReduction::Mean && size > 1 {
                let ranks = <T as tempo_tensor::Float>::from_f64(size as f64);
                for x in &mut grads.values {
                    *x /= ranks;
                }
            }
            for (flag, s) in grads.present.iter_mut().zip(&shard.slices) {
                *flag = counts[s.param] > 0;
            }
        }
        let reduced_at = Instant::now();
        // 2. Step this rank's slices, with the param groups as the scheduler left them.
        let local = match shard.optimizer.as_mut() {
            Some(opt) => sync_groups(self.inner.as_ref(), opt.as_mut(), &shard.group_ids)
                .and_then(|()| opt.step().map_err(DistError::from)),
            None => Ok(false),
        };
        agree(comm, "the optimizer step", local)?;
        let stepped_at = Instant::now();
        // 3. Every rank's updated slices, broadcast from it straight from and into the
        // parameters' memory (no buffer on either side; as fast here as an all-gather,
        // which would need the ranges packed before and unpacked after).
        let bucket = self.config.bucket_elements;
        for (root, slices) in shard.all_slices.iter().enumerate() {
            for s in slices {
                if counts[s.param] == 0 || s.range.is_empty() {
                    continue;
                }
                let mut data = self.params[s.param].data_mut();
                if data.as_slice().is_none() {
                    *data = data.as_standard_layout().into_owned();
                }
                match data.as_slice_mut() {
                    Some(d) => {
                        for chunk in d[s.range.clone()].chunks_mut(bucket) {
                            T::broadcast(comm, root, chunk)?;
                        }
                    }
                    None => {
                        // Not reached (a standard layout is contiguous); every rank must
                        // still take part in the broadcast.
                        let mut v: Vec<T> = data.iter().copied().collect();
                        for chunk in v[s.range.clone()].chunks_mut(bucket) {
                            T::broadcast(comm, root, chunk)?;
                        }
                        data.iter_mut().zip(v).for_each(|(d, x)| *d = x);
                    }
                }
            }
        }
        self.finish_step(&present, started, reduced_at, stepped_at);
        Ok(true)
    }

    /// Ends a distributed step of either sharding: notes the parameters stepped for the
    /// first time and the phases' timings (started, gradients reduced, local step done;
    /// the broadcast ran until now).
    fn finish_step(
        &mut self,
        present: &[usize],
        started: Instant,
        reduced_at: Instant,
        stepped_at: Instant,
    ) {
        self.note_first_steps(present);
        self.timings = StepTimings {
            all_reduce: reduced_at - started,
            local_step: stepped_at - reduced_at,
            broadcast: stepped_at.elapsed(),
        };
    }

    /// Records parameters stepped for the first time, in id order (PyTorch's state order).
    fn note_first_steps(&mut self, present: &[usize]) {
        // Once every parameter has been stepped there is nothing to note (the common
        // case, which would otherwise search `order` for each parameter at every step).
        if self.order.len() >= self.params.len() {
            return;
        }
        for &i in present {
            if !self.order.contains(&i) {
                self.order.push(i);
            }
        }
    }

    /// Broadcasts the parameters `ids` (in id order), each from `owner(id)`, one bucketed
    /// message stream per owner.
    fn broadcast_params(
        &mut self,
        ids: impl Iterator<Item = usize>,
        owner: impl Fn(usize) -> usize,
    ) -> Result<(), DistError> {
        let comm = self.comm.as_ref();
        let ids: Vec<usize> = ids.collect();
        let rank = comm.rank();
        for root in 0..comm.size() {
            let mine: Vec<usize> = ids.iter().copied().filter(|&i| owner(i) == root).collect();
            let total: usize = mine.iter().map(|&i| self.params[i].numel()).sum();
            if total == 0 {
                continue;
            }
            self.flat.clear();
            if rank == root {
                for &i in &mine {
                    let data = self.params[i].data();
                    match data.as_slice() {
                        Some(contiguous) => self.flat.extend_from_slice(contiguous),
                        None => self.flat.extend(data.iter().copied()),
                    }
                }
            } else {
                self.flat.resize(total, T::zero());
            }
            let bucket = self.config.bucket_elements;
            for start in (0..total).step_by(bucket) {
                let end = (start + bucket).min(total);
                T::broadcast(comm, root, &mut self.flat[start..end])?;
            }
            if rank != root {
                let mut at = 0;
                for &i in &mine {
                    let mut data = self.params[i].data_mut();
                    let len = data.len();
                    let src = &self.flat[at..at + len];
                    match data.as_slice_mut() {
                        Some(contiguous) => contiguous.copy_from_slice(src),
                        None => data.iter_mut().zip(src).for_each(|(d, s)| *d = *s),
                    }
                    at += len;
                }
            }
        }
        Ok(())
    }

    /// The whole optimizer state, gathered on rank `root` in the layout one process
    /// would have (PyTorch's numbering, state in first-step order): `Some` on `root`,
    /// `None` elsewhere. A collective. Write it with tempo-ckpt as any optimizer's state.
    pub fn consolidated_state_dict(
        &self,
        root: usize,
    ) -> Result<Option<OptimizerStateDict>, DistError> {
        let comm = self.comm.as_ref();
        let local = self.local_state_dict();
        let gathered = comm.gather_bytes(root, &wire::encode(&local.state))?;
        let merged = match gathered {
            None => Ok(None),
            Some(all) if self.shard.is_some() => self.merge_flat(all, local.param_groups).map(Some),
            Some(all) => self.merge(all, local.param_groups).map(Some),
        };
        agree(comm, "consolidating the optimizer state", merged)
    }

    fn merge(
        &self,
        all: Vec<Vec<u8>>,
        param_groups: Vec<tempo_param_groups::Dict>,
    ) -> Result<OptimizerStateDict, DistError> {
        let mut by_id: Vec<Option<ParamState>> = vec![None; self.params.len()];
        for (rank, bytes) in all.iter().enumerate() {
            for (id, state) in wire::decode(bytes, rank)? {
                let slot = by_id.get_mut(id).ok_or_else(|| DistError::Malformed {
                    rank,
                    reason: format!(
                        "state for parameter {id}, beyond the {} parameters",
                        self.params.len()
                    ),
                })?;
                if slot.is_some() || self.plan.owner(id) != Some(rank) {
                    return Err(DistError::Malformed {
                        rank,
                        reason: format!(
                            "state for parameter {id}, which rank {} owns",
                            self.plan.owner(id).unwrap_or(0)
                        ),
                    });
                }
                *slot = Some(state);
            }
        }
        let mut state = Vec::new();
        let ordered = self.order.iter().copied().chain(0..self.params.len());
        for id in ordered {
            if let Some(s) = by_id[id].take() {
                state.push((id, s));
            }
        }
        Ok(OptimizerStateDict {
            state,
            param_groups,
        })
    }

    /// [`merge`](Self::merge) for [`Sharding::Flat`]: each rank sent the states of its
    /// slices, which are stitched back into whole parameters.
    fn merge_flat(
        &self,
        all: Vec<Vec<u8>>,
        param_groups: Vec<tempo_param_groups::Dict>,
    ) -> Result<OptimizerStateDict, DistError> {
        let n = self.params.len();
        // Each parameter's slices, in rank (so element) order: (rank, elements).
        let mut expected: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        for rank in 0..all.len() {
            for s in self.plan.slices(rank) {
                expected[s.param].push((rank, s.range.len()));
            }
        }
        let mut pieces: Vec<Vec<(usize, ParamState)>> = vec![Vec::new(); n];
        for (rank, bytes) in all.iter().enumerate() {
            for (id, state) in wire::decode(bytes, rank)? {
                let theirs = id < n && expected[id].iter().any(|&(r, _)| r == rank);
                if !theirs || pieces[id].iter().any(|(r, _)| *r == rank) {
                    return Err(DistError::Malformed {
                        rank,
                        reason: format!(
                            "state for parameter {id}, which has no slice of its own on rank {rank}"
                        ),
                    });
                }
                pieces[id].push((rank, state));
            }
        }
        let mut by_id: Vec<Option<ParamState>> = vec![None; n];
        for (id, got) in pieces.into_iter().enumerate() {
            if got.is_empty() {
                continue;
            }
            if got.len() != expected[id].len() {
                let missing = expected[id]
                    .iter()
                    .find(|(r, _)| !got.iter().any(|(g, _)| g == r))
                    .map_or(0, |&(r, _)| r);
                return Err(DistError::Malformed {
                    rank: missing,
                    reason: format!(
                        "no state for its slice of parameter {id}, which another rank has state for"
                    ),
                });
            }
            let ranks: Vec<usize> = got.iter().map(|(r, _)| *r).collect();
            let lens: Vec<usize> = expected[id].iter().map(|&(_, l)| l).collect();
            let states: Vec<ParamState> = got.into_iter().map(|(_, s)| s).collect();
            by_id[id] = Some(stitch(
                &states,
                &lens,
                &ranks,
                id,
                &self.params[id].shape(),
            )?);
        }
        let mut state = Vec::new();
        for id in self.order.iter().copied().chain(0..n) {
            if let Some(s) = by_id[id].take() {
                state.push((id, s));
            }
        }
        Ok(OptimizerStateDict {
            state,
            param_groups,
        })
    }

    /// Loads a whole optimizer state (a single process's, or a consolidated one saved
    /// with any number of ranks): every rank keeps the param groups and the state of the
    /// parameters it owns. A collective, and all or nothing: when the state does not fit
    /// on any rank, every rank returns an error and keeps its previous state.
    pub fn load_state_dict(&mut self, state_dict: &OptimizerStateDict) -> Result<(), DistError> {
        if self.shard.is_some() {
            return self.load_flat(state_dict);
        }
        let rank = self.comm.rank();
        let ids = saved_ids(state_dict);
        let local = OptimizerStateDict {
            state: state_dict
                .state
                .iter()
                .filter(|(id, _)| match ids.as_ref().and_then(|m| flat_of(m, *id)) {
                    Some(flat) => self.plan.owner(flat) == Some(rank),
                    // Ids the groups do not list: the wrapped optimizer names the error.
                    None => true,
                })
                .cloned()
                .collect(),
            param_groups: state_dict.param_groups.clone(),
        };
        let backup = self.inner.state_dict();
        let loaded = self.inner.load_state_dict(&local).map_err(DistError::from);
        let ok = loaded.is_ok();
        if let Err(e) = agree(self.comm.as_ref(), "loading the optimizer state", loaded) {
            if ok {
                // Another rank refused the state: put ours back as it was.
                let _ = self.inner.load_state_dict(&backup);
            }
            return Err(e);
        }
        self.order = first_step_order(state_dict, ids.as_deref());
        Ok(())
    }
}

impl<T: DistFloat> DistributedOptimizer<T> {
    /// [`load_state_dict`](Self::load_state_dict) for [`Sharding::Flat`]: the wrapped
    /// optimizer takes the param groups (and no state), this rank's slices the cut
    /// states of their parameters.
    fn load_flat(&mut self, state_dict: &OptimizerStateDict) -> Result<(), DistError> {
        let Some(shard) = self.shard.as_mut() else {
            return Ok(());
        };
        let ids = saved_ids(state_dict);
        let groups_only = OptimizerStateDict {
            state: Vec::new(),
            param_groups: state_dict.param_groups.clone(),
        };
        let backup = (
            self.inner.state_dict(),
            shard.optimizer.as_ref().map(|o| o.state_dict()),
        );
        let mut local = || -> Result<(), DistError> {
            // The groups first: the wrapped optimizer checks them against every parameter.
            self.inner.load_state_dict(&groups_only)?;
            let mut state = Vec::new();
            for (id, saved) in &state_dict.state {
                let Some(param) = ids.as_ref().and_then(|m| flat_of(m, *id)) else {
                    // The wrapped optimizer refused ids its groups do not list.
                    continue;
                };
                let Some(j) = shard.slices.iter().position(|s| s.param == param) else {
                    continue;
                };
                let s = &shard.slices[j];
                let shape = self.params[param].shape();
                let whole = s.range.start == 0 && s.range.end == self.params[param].numel();
                let piece = if whole {
                    saved.clone()
                } else {
                    cut(saved, param, &shape, &s.range)?
                };
                state.push((j, piece));
            }
            if let Some(opt) = shard.optimizer.as_mut() {
                opt.load_state_dict(&OptimizerStateDict {
                    state,
                    param_groups: shard_groups(&state_dict.param_groups, &shard.group_ids),
                })?;
            }
            Ok(())
        };
        let loaded = local();
        if let Err(e) = agree(self.comm.as_ref(), "loading the optimizer state", loaded) {
            // This rank's part may have loaded (or half of it): put it back as it was.
            let _ = self.inner.load_state_dict(&backup.0);
            if let (Some(opt), Some(saved)) = (shard.optimizer.as_mut(), backup.1.as_ref()) {
                let _ = opt.load_state_dict(saved);
            }
            return Err(e);
        }
        self.order = first_step_order(state_dict, ids.as_deref());
        Ok(())
    }
}

/// How many ranks have a gradient for each parameter (a collective, which also checks
/// every rank's gradients' shapes: one of another shape is an error on every rank).
fn presence<T: DistFloat>(
    comm: &dyn Communicator,
    params: &[Tensor<T>],
) -> Result<Vec<u64>, DistError> {
    let n = params.len();
    let mut bad = None;
    let mut mine = Vec::with_capacity(n + 1);
    for (i, p) in params.iter().enumerate() {
        let grad = p.grad();
        if let Some(g) = grad.as_ref() {
            let shape = p.shape();
            if g.shape() != shape.as_slice() && bad.is_none() {
                bad = Some(DistError::InvalidArgument {
                    what: "gradient",
                    expected: format!("shape {shape:?} for parameter {i}"),
                    found: format!("shape {:?}", g.shape()),
                });
            }
        }
        mine.push(u64::from(grad.is_some()));
    }
    mine.push(u64::from(bad.is_some()));
    let mut counts = vec![0u64; n + 1];
    comm.all_reduce_sum_u64(&mine, &mut counts)?;
    if counts[n] > 0 {
        agree(comm, "the optimizer step", bad.map_or(Ok(()), Err))?;
    }
    counts.truncate(n);
    Ok(counts)
}

/// The state of a shard's slices, by parameter id.
fn shard_state<T: DistFloat>(shard: &Shard<T>) -> Vec<(usize, ParamState)> {
    let Some(opt) = &shard.optimizer else {
        return Vec::new();
    };
    opt.state_dict()
        .state
        .into_iter()
        .filter_map(|(j, s)| shard.slices.get(j).map(|slice| (slice.param, s)))
        .collect()
}

/// The param groups `groups` with each group's `params` replaced by the shard
/// optimizer's ids of its slices.
fn shard_groups(groups: &[Dict], group_ids: &[Vec<usize>]) -> Vec<Dict> {
    groups
        .iter()
        .zip(group_ids)
        .map(|(d, ids)| {
            let mut d = d.clone();
            let list = ids.iter().map(|&j| Value::Int(j as i64)).collect();
            d.insert("params", Value::List(list));
            d
        })
        .collect()
}

/// Copies every hyperparameter of the wrapped optimizer's groups (what a scheduler
/// writes) into the shard optimizer's that differs.
fn sync_groups<T: DistFloat>(
    inner: &dyn Optimizer<T>,
    shard: &mut dyn Optimizer<T, SliceParam<T>>,
    group_ids: &[Vec<usize>],
) -> Result<(), DistError> {
    // The wrapped optimizer holds no state in flat sharding: this copies only groups.
    let groups = inner.state_dict().param_groups;
    for (g, d) in groups.iter().enumerate().take(group_ids.len()) {
        for (key, value) in d.iter() {
            if key != "params" && shard.get(g, key) != Some(value) {
                shard.set(g, key, value.clone())?;
            }
        }
    }
    Ok(())
}

/// For each saved id, its flat parameter index (PyTorch's `dict(zip(...))`: a repeated id
/// maps to its last position); `None` when the groups do not list ids.
fn saved_ids(sd: &OptimizerStateDict) -> Option<Vec<(i64, usize)>> {
    let mut map: Vec<(i64, usize)> = Vec::new();
    let mut flat = 0;
    for d in &sd.param_groups {
        for id in d.get("params").and_then(Value::as_slice)? {
            let id = id.as_i64()?;
            match map.iter_mut().find(|(i, _)| *i == id) {
                Some(slot) => slot.1 = flat,
                None => map.push((id, flat)),
            }
            flat += 1;
        }
    }
    Some(map)
}

fn flat_of(map: &[(i64, usize)], id: usize) -> Option<usize> {
    map.iter().find(|(i, _)| *i == id as i64).map(|&(_, f)| f)
}

/// The parameters (flat indices) in the order a loaded state lists them: the order in
/// which they first got state; empty when the groups do not list ids.
fn first_step_order(sd: &OptimizerStateDict, ids: Option<&[(i64, usize)]>) -> Vec<usize> {
    match ids {
        Some(m) => sd
            .state
            .iter()
            .filter_map(|(id, _)| flat_of(m, *id))
            .collect(),
        None => Vec::new(),
    }
}

/// The wrapped optimizer's groups, lent in place (it reads them at its step).
impl<T: DistFloat> OptimizerParamGroups for DistributedOptimizer<T> {
    fn num_groups(&self) -> usize {
        self.inner.num_groups()
    }
    fn get(&self, group: usize, key: &str) -> Option<&Value> {
        self.inner.get(group, key)
    }
    fn get_mut(&mut self, group: usize, key: &str) -> Option<&mut Value> {
        self.inner.get_mut(group, key)
    }
    fn insert(&mut self, group: usize, key: &str, value: Value) -> Result<(), ParamGroupError> {
        self.inner.insert(group, key, value)
    }
}
