//! A named candle `Var` as a tempo parameter: tempo-optim's [`Param`] over candle's
//! storage, in place on the CPU, through host copies elsewhere.
//!
//! **In place (f32/f64 on a CPU device).** candle hands out `&mut` access to a CPU
//! storage only inside an in-place custom op ([`candle_core::InplaceOp1::cpu_fwd`]).
//! [`Param::lock`] therefore nests one such op per parameter (each call runs the next
//! one inside it), up to [`IN_PLACE_RUN`] deep, and calls tempo's step with the
//! slices of every parameter of the run: no copy, and the run is one multi-threaded
//! batch. The gradients are read under candle's read locks. Before the first lock,
//! everything that can fail is checked (dtype, shape, device, a gradient that shares
//! memory with a parameter, which would deadlock), so a refused step changes nothing.
//!
//! **Host copies (CUDA, Metal, or forced with [`StorageMode::HostCopy`]).** The data
//! and the gradient are copied to host vectors (`to_vec1`), stepped there, and the data
//! is written back with `Var::set`: per step, two device-to-host copies and one
//! host-to-device copy of every parameter (12 bytes per f32 parameter over the bus), on
//! top of the update itself. The numbers are the same as in place.
//!
//! **f16/bf16**: refused with [`OptimError::Storage`] naming the parameter, its dtype
//! and what is supported (f32, f64); keep float32 master weights for such models.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{CpuStorage, DType, Layout, Storage, StorageRef, Tensor, Var};
use tempo_optim::{LockScope, OptimError, Param, Slot, WithSlots};
use tempo_tensor::Float;

/// How many parameters are locked together in place (the depth of the nested in-place
/// ops, and the size of one multi-threaded batch); a step over more parameters runs in
/// several batches, with the same numbers.
///
/// One batch per step is what makes a step as fast as over tempo's own tensors: every
/// further batch is one more hand-off to the worker threads and one more wait for the
/// slowest of them. A level of the nesting takes about 1.2 KiB of stack in an optimized
/// build (candle's in-place op and tempo's level), so a full run of 256 takes about
/// 300 KiB, well within a thread's stack (2 MiB for a thread Rust spawns), and models up
/// to 256 parameter tensors (BERT-base, GPT-2 small) step as one batch. Builds with debug
/// assertions, whose frames may be several times larger, nest at most 64.
pub const IN_PLACE_RUN: usize = if cfg!(debug_assertions) { 64 } else { 256 };

/// How a parameter's storage is stepped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StorageMode {
    /// In place on a CPU device, host copies on any other (the default).
    #[default]
    Auto,
    /// Always through host copies (what a CUDA or Metal device gets; on the CPU, for
    /// tests of that path).
    HostCopy,
}

/// The element types tempo steps on candle: f32 and f64.
pub trait CandleFloat: Float + candle_core::WithDType {
    /// The elements of a CPU storage of this type, to write.
    fn cpu_mut(storage: &mut CpuStorage) -> Option<&mut [Self]>;
    /// The elements of a CPU storage of this type, to read.
    fn cpu_ref(storage: &CpuStorage) -> Option<&[Self]>;
}

impl CandleFloat for f32 {
    fn cpu_mut(storage: &mut CpuStorage) -> Option<&mut [f32]> {
        match storage {
            CpuStorage::F32(v) => Some(v.as_mut_slice()),
            _ => None,
        }
    }
    fn cpu_ref(storage: &CpuStorage) -> Option<&[f32]> {
        match storage {
            CpuStorage::F32(v) => Some(v.as_slice()),
            _ => None,
        }
    }
}

impl CandleFloat for f64 {
    fn cpu_mut(storage: &mut CpuStorage) -> Option<&mut [f64]> {
        match storage {
            CpuStorage::F64(v) => Some(v.as_mut_slice()),
            _ => None,
        }
    }
    fn cpu_ref(storage: &CpuStorage) -> Option<&[f64]> {
        match storage {
            CpuStorage::F64(v) => Some(v.as_slice()),
            _ => None,
        }
    }
}

struct Inner {
    name: String,
    var: Var,
    grad: Mutex<Option<Tensor>>,
    mode: StorageMode,
}

/// A named candle [`Var`] with a gradient slot: the parameter type of tempo's
/// optimizers on candle (`Adam<f32, CandleParam>`). Cloning shares it.
///
/// candle keeps gradients apart from variables (a `GradStore`); the optimizer fills
/// each parameter's slot from the store before a step and clears it after.
#[derive(Clone)]
pub struct CandleParam(Arc<Inner>);

impl std::fmt::Debug for CandleParam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CandleParam")
            .field("name", &self.0.name)
            .field("shape", &self.0.var.shape())
            .field("dtype", &self.0.var.dtype())
            .field("mode", &self.0.mode)
            .finish()
    }
}

impl CandleParam {
    /// The variable `var`, named `name`, stepped as `mode` says.
    pub fn new(name: impl Into<String>, var: Var, mode: StorageMode) -> Self {
        Self(Arc::new(Inner {
            name: name.into(),
            var,
            grad: Mutex::new(None),
            mode,
        }))
    }

    /// The parameter's name (`"fc1.weight"`).
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The variable.
    pub fn var(&self) -> &Var {
        &self.0.var
    }

    /// How the storage is stepped.
    pub fn mode(&self) -> StorageMode {
        self.0.mode
    }

    /// Sets (or with `None` clears) the gradient the next step reads.
    pub fn set_grad(&self, grad: Option<Tensor>) {
        *self.grad_slot() = grad;
    }

    /// The gradient the next step reads.
    pub fn grad(&self) -> Option<Tensor> {
        self.grad_slot().clone()
    }

    fn grad_slot(&self) -> MutexGuard<'_, Option<Tensor>> {
        // A poisoned slot still holds a valid Option<Tensor>.
        self.0.grad.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The address of a tensor's storage (equal addresses: shared memory). Takes and
/// releases a read lock.
fn storage_key(t: &Tensor) -> usize {
    let (s, _) = t.storage_and_layout();
    std::ptr::from_ref::<Storage>(&s) as usize
}

fn storage_err(param: usize, reason: String) -> OptimError {
    OptimError::Storage { param, reason }
}

/// A parameter of one lock call, checked.
struct Item {
    id: usize,
    var: Tensor,
    grad: Option<Tensor>,
    in_place: bool,
}

fn check<T: CandleFloat>(
    params: &[CandleParam],
    scope: LockScope,
) -> Result<Vec<Item>, OptimError> {
    let mut items = Vec::new();
    for (id, p) in params.iter().enumerate() {
        let grad = p.grad();
        if grad.is_none() && scope == LockScope::WithGrad {
            continue;
        }
        let var = p.var().as_tensor().clone();
        let supported = |what: &str, dtype: DType| {
            storage_err(
                id,
                format!(
                    "`{}`: {what} has dtype {dtype:?}, but this optimizer steps {:?} (tempo steps f32 and f64 parameters on candle; keep float32 master weights for f16/bf16 models)",
                    p.name(),
                    <T as candle_core::WithDType>::DTYPE
                ),
            )
        };
        if var.dtype() != <T as candle_core::WithDType>::DTYPE {
            return Err(supported("the parameter", var.dtype()));
        }
        if let Some(g) = &grad {
            if g.dims() != var.dims() {
                return Err(OptimError::GradShapeMismatch {
                    param: id,
                    expected: var.dims().to_vec(),
                    got: g.dims().to_vec(),
                });
            }
            if g.dtype() != <T as candle_core::WithDType>::DTYPE {
                return Err(supported("its gradient", g.dtype()));
            }
            if !g.device().same_device(var.device()) {
                return Err(storage_err(
                    id,
                    format!(
                        "`{}`: the gradient is on {:?}, the parameter on {:?}",
                        p.name(),
                        g.device().location(),
                        var.device().location()
                    ),
                ));
            }
        }
        let in_place =
            p.mode() == StorageMode::Auto && var.device().is_cpu() && var.is_contiguous();
        items.push(Item {
            id,
            var,
            grad,
            in_place,
        });
    }
    // A gradient that shares memory with a parameter stepped in place would be read
    // while it is written (and candle's locks would deadlock): refuse it.
    // Sorted by storage, then id, and searched: a step over many parameters stays
    // linear-logarithmic.
    let mut keys: Vec<(usize, usize)> = items
        .iter()
        .filter(|i| i.in_place)
        .map(|i| (storage_key(&i.var), i.id))
        .collect();
    keys.sort_unstable();
    for it in &items {
        if let Some(g) = &it.grad {
            let k = storage_key(g);
            let first = keys.partition_point(|&(pk, _)| pk < k);
            if let Some(&(_, owner)) = keys.get(first).filter(|(pk, _)| *pk == k) {
                return Err(storage_err(
                    it.id,
                    format!(
                        "`{}`: its gradient shares memory with parameter {owner}",
                        params[it.id].name()
                    ),
                ));
            }
        }
    }
    Ok(items)
}

/// A gradient's elements, read through its storage's read guard.
fn grad_slice<'g, T: CandleFloat>(
    id: usize,
    storage: &'g Storage,
    layout: &Layout,
) -> Result<&'g [T], OptimError> {
    let Storage::Cpu(cpu) = storage else {
        return Err(storage_err(id, "the gradient is not on the CPU".into()));
    };
    let all = T::cpu_ref(cpu).ok_or_else(|| storage_err(id, "the gradient's dtype".into()))?;
    layout
        .contiguous_offsets()
        .and_then(|(a, b)| all.get(a..b))
        .ok_or_else(|| storage_err(id, "the gradient is not contiguous".into()))
}

fn candle_err(id: usize, e: candle_core::Error) -> OptimError {
    storage_err(id, format!("candle: {e}"))
}

impl<T: CandleFloat> Param<T> for CandleParam {
    type Scratch = ();

    fn shape(&self) -> Vec<usize> {
        self.0.var.dims().to_vec()
    }

    fn numel(&self) -> usize {
        self.0.var.elem_count()
    }

    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.var.id() == other.0.var.id()
    }

    fn has_grad(&self) -> bool {
        self.grad_slot().is_some()
    }

    fn zero_grad(&self) {
        self.set_grad(None);
    }

    fn lock(
        params: &[Self],
        scope: LockScope,
        _scratch: &mut (),
        f: &mut WithSlots<'_, T>,
    ) -> Result<(), OptimError> {
        let items = check::<T>(params, scope)?;
        // Host copies of what is not stepped in place (and of non-CPU gradients).
        let mut host: Vec<(usize, Vec<T>, Option<Vec<T>>)> = Vec::new();
        for it in items.iter().filter(|i| !i.in_place) {
            let data = it
                .var
                .flatten_all()
                .and_then(|t| t.to_vec1::<T>())
                .map_err(|e| candle_err(it.id, e))?;
            let grad = match &it.grad {
                Some(g) => Some(
                    g.flatten_all()
                        .and_then(|t| t.to_vec1::<T>())
                        .map_err(|e| candle_err(it.id, e))?,
                ),
                None => None,
            };
            host.push((it.id, data, grad));
        }
        // Read guards on the in-place parameters' gradients, held for the whole step,
        // and their elements, both by position in `items`.
        let guards: Vec<Option<(StorageRef<'_>, &Layout)>> = items
            .iter()
            .map(|i| match (&i.grad, i.in_place) {
                (Some(g), true) => Some(g.storage_and_layout()),
                _ => None,
            })
            .collect();
        let mut grads: Vec<Option<&[T]>> = Vec::with_capacity(guards.len());
        for (it, guard) in items.iter().zip(&guards) {
            grads.push(match guard {
                Some((storage, layout)) => Some(grad_slice::<T>(it.id, storage, layout)?),
                None => None,
            });
        }
        // Runs in id order: each run is up to IN_PLACE_RUN in-place parameters, plus the
        // host-copied ones among them.
        let mut host_iter = host.iter_mut().peekable();
        let mut nested: Vec<(usize, &Tensor, Option<&[T]>)> = Vec::new();
        let mut start = 0;
        while start < items.len() {
            let mut end = start;
            let mut in_place = 0;
            while end < items.len() && (in_place < IN_PLACE_RUN || !items[end].in_place) {
                in_place += usize::from(items[end].in_place);
                end += 1;
            }
            let mut slots: Vec<Slot<'_, T>> = Vec::with_capacity(end - start);
            nested.clear();
            for (it, &g) in items[start..end].iter().zip(&grads[start..end]) {
                if it.in_place {
                    nested.push((it.id, &it.var, g));
                } else if let Some((id, data, grad)) = host_iter.next_if(|h| h.0 == it.id) {
                    slots.push(Slot {
                        id: *id,
                        data: data.as_mut_slice(),
                        grad: grad.as_deref(),
                    });
                }
            }
            nest(&nested, slots, f)?;
            start = end;
        }
        // Write the host copies back.
        for (id, data, _) in host {
            let Some(it) = items.iter().find(|i| i.id == id) else {
                continue;
            };
            let t = Tensor::from_vec(data, it.var.dims(), it.var.device())
                .map_err(|e| candle_err(id, e))?;
            params[id].var().set(&t).map_err(|e| candle_err(id, e))?;
        }
        Ok(())
    }
}

/// Locks `rest[0]` in place through candle's in-place op, adds its slot to `acc`, and
/// recurses; with nothing left, sorts the slots by id and calls `f`.
fn nest<T: CandleFloat>(
    rest: &[(usize, &Tensor, Option<&[T]>)],
    mut acc: Vec<Slot<'_, T>>,
    f: &mut WithSlots<'_, T>,
) -> Result<(), OptimError> {
    let Some(&(id, var, grad)) = rest.first() else {
        acc.sort_unstable_by_key(|s| s.id);
        return f(&mut acc);
    };
    let op = Level {
        id,
        grad,
        rest: &rest[1..],
        acc: RefCell::new(Some(acc)),
        f: RefCell::new(Some(f)),
        result: RefCell::new(Ok(())),
    };
    let candle = var.inplace_op1(&op);
    let result = op.result.into_inner();
    match candle {
        Ok(()) => result,
        // The op stores tempo's own errors in `result` and reports a marker to candle.
        Err(e) => result.and(Err(candle_err(id, e))),
    }
}

/// One level of the nesting: candle's in-place op over parameter `id`.
struct Level<'a, 'f, 'g, T> {
    id: usize,
    grad: Option<&'a [T]>,
    rest: &'a [(usize, &'a Tensor, Option<&'a [T]>)],
    acc: RefCell<Option<Vec<Slot<'a, T>>>>,
    f: RefCell<Option<&'f mut WithSlots<'g, T>>>,
    result: RefCell<Result<(), OptimError>>,
}

impl<T: CandleFloat> candle_core::InplaceOp1 for Level<'_, '_, '_, T> {
    fn name(&self) -> &'static str {
        "tempo-step"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (Some(acc), Some(f)) = (self.acc.take(), self.f.take()) else {
            return Ok(());
        };
        let data = T::cpu_mut(storage).and_then(|all| {
            layout
                .contiguous_offsets()
                .and_then(move |(a, b)| all.get_mut(a..b))
        });
        let Some(data) = data else {
            *self.result.borrow_mut() = Err(storage_err(
                self.id,
                "the parameter's storage is not a contiguous CPU storage of the step's dtype"
                    .into(),
            ));
            return Err(candle_core::Error::Msg("tempo-step refused".into()));
        };
        let mut acc: Vec<Slot<'_, T>> = acc;
        acc.push(Slot {
            id: self.id,
            data,
            grad: self.grad,
        });
        let r = nest(self.rest, acc, f);
        let failed = r.is_err();
        *self.result.borrow_mut() = r;
        if failed {
            return Err(candle_core::Error::Msg("tempo-step failed".into()));
        }
        Ok(())
    }
}
