//! The persistent worker threads that share a step's elementwise work with the caller.
//!
//! One pool per process, started at the first step that has enough work to split:
//! `available_parallelism - 1` workers, which live for the process (the crate
//! documentation says when they start and how they wait). The tests make pools of their
//! own, small enough for Miri, whose workers they stop and join: the pool's tests run
//! under Miri, and its rendezvous under loom, which checks every interleaving of a small
//! pool's threads (`--cfg loom`: `loom_tests` at the bottom of this file). A dispatch
//! posts a type-erased reference to a job on the caller's stack, the caller works on it
//! too, and the dispatch returns only when no worker is inside the job any more. Posting,
//! waking and joining allocate nothing (a mutex, two condition variables and a few
//! counters), so a steady-state step allocates nothing either.
//!
//! Between jobs a worker first spins for [`WORKER_SPIN`] (steps often come back to back,
//! and waking a sleeping thread, on a virtual machine above all, can cost more than a
//! step's share), then sleeps on a condition variable. The caller likewise spins for up
//! to [`CALLER_SPIN`] for the workers to leave a job before it sleeps.
//!
//! A panic in a job, on any thread, stops the job's remaining work, waits for every
//! worker to leave the job and is then raised again on the caller's thread, so no worker
//! ever holds a borrow the caller has given up.

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::PoisonError;
use std::time::Duration;

use crate::OptimError;

use sync::{AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};

/// The synchronisation the pool is built on: the standard library's, or loom's mock of
/// it when the pool's rendezvous is model-checked (tempo-optim's own tests built with
/// `--cfg loom`: every interleaving of a small pool's threads, in `loom_tests` below).
/// The rest of the file is written once against these names. Only the tests switch:
/// tempo-optim built as a dependency keeps the standard library's under `--cfg loom`
/// too, so a crate that model-checks its own code with loom can still depend on it.
mod sync {
    #[cfg(all(test, loom))]
    pub(super) use loom::{
        sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        sync::{Condvar, Mutex, MutexGuard},
    };
    #[cfg(not(all(test, loom)))]
    pub(super) use std::{
        sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        sync::{Condvar, Mutex, MutexGuard},
    };
}

/// How long an idle worker spins for the next job before it sleeps.
const WORKER_SPIN: Duration = Duration::from_micros(100);
/// How long the caller spins for the workers to leave a job before it sleeps (short: a
/// worker that takes longer was probably preempted, and a spinning caller would keep it
/// from the core it could run on).
const CALLER_SPIN: Duration = Duration::from_micros(50);

/// Work that several threads do together: each thread calls [`Share::work`] until it
/// returns, and the work is done when every call has returned.
pub(crate) trait Share: Sync {
    /// Does parts of the work until none is left (or the work was stopped). `thread` is
    /// 0 on the caller and `1 + i` on worker `i`, the same for every job, so that a job
    /// can give each thread the same part at every step.
    fn work(&self, thread: usize);
    /// Makes every current and later call of [`Share::work`] return soon, leaving the
    /// remaining parts undone (after a panic).
    fn stop(&self);
}

/// A panic's payload, as `catch_unwind` returns it.
type Payload = Box<dyn Any + Send>;

/// A posted job: a pointer to a `Share` on the caller's stack, and the function that
/// works on it given that pointer.
#[derive(Clone, Copy)]
struct JobRef {
    data: *const (),
    work: unsafe fn(*const (), usize) -> Result<(), Payload>,
}

// SAFETY: a `JobRef` points to a `Share`, which is `Sync`, and is dereferenced only
// between its posting and the end of `Pool::run`, which waits for every worker that
// took it (see `Pool::run`). Sending the pointer to a worker is sending a `&Share`.
unsafe impl Send for JobRef {}

/// Works on the `S` behind `data`, catching a panic (and then stopping the job).
///
/// # Safety
/// `data` must point to a live `S` for the whole call.
unsafe fn work_erased<S: Share>(data: *const (), thread: usize) -> Result<(), Box<dyn Any + Send>> {
    // SAFETY: guaranteed by the caller: `Pool::run` keeps the `S` alive until this call
    // has returned.
    let job = unsafe { &*data.cast::<S>() };
    panic::catch_unwind(AssertUnwindSafe(|| job.work(thread))).inspect_err(|_| job.stop())
}

/// What the workers and the caller share, under `Pool::state`.
struct State {
    /// The posted job, while the caller is working on it.
    job: Option<JobRef>,
    /// Workers asleep on `Pool::posted`.
    sleeping: usize,
    /// The first panic a worker caught in the current job.
    panic: Option<Payload>,
    /// Set to make the workers return (the process's pool never sets it; the tests'
    /// pools do, to join their workers).
    exit: bool,
}

/// The worker threads and their rendezvous.
pub(crate) struct Pool {
    /// Held for a whole dispatch: one job at a time (callers on other threads wait).
    turn: Mutex<()>,
    state: Mutex<State>,
    /// Incremented at every post, so that a worker takes each job at most once. Written
    /// only under `state`; read without it by spinning workers.
    epoch: AtomicU64,
    /// Workers inside the posted job. Written only under `state`; read without it by
    /// the spinning caller.
    running: AtomicUsize,
    /// Signalled when a job is posted and a worker sleeps.
    posted: Condvar,
    /// Signalled when the last running worker leaves a job.
    left: Condvar,
}

/// Locks `m`, ignoring poisoning: no code panics while holding these locks, and the
/// state they guard is consistent at every unlock.
fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Spins until `done` holds or `limit` has passed; returns whether `done` holds.
#[cfg(not(all(test, loom)))]
fn spin_until(limit: Duration, done: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    loop {
        for _ in 0..64 {
            if done() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() > limit {
            return done();
        }
    }
}

/// [`spin_until`] under loom, which has no clock: two looks at `done`. Each look is a
/// point where loom may run another thread or not, so a model takes both ways out of a
/// spin: the job (or the workers' leaving) found spinning, and the sleep on the condition
/// variable while the other thread is anywhere in between. Without
/// `loom::hint::spin_loop`: loom runs a thread that yields only when no other can run,
/// so a yielding spin would always outlast the threads it waits for.
#[cfg(all(test, loom))]
fn spin_until(_limit: Duration, done: impl Fn() -> bool) -> bool {
    done() || done()
}

/// The number of threads asked for with [`set_num_threads`] (`None`: the default), and
/// the number the process's pool started with (`None`: not started). The pool starts
/// under this lock, so a request either comes before the start and is followed, or after
/// it and is checked against it.
struct Threads {
    requested: Option<usize>,
    started: Option<usize>,
}

static THREADS: std::sync::Mutex<Threads> = std::sync::Mutex::new(Threads {
    requested: None,
    started: None,
});

/// The default number of threads: every CPU this process may run on.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Sets the number of threads that tempo-optim's shared steps run on, the calling thread
/// included, as PyTorch's `torch.set_num_threads`: `threads - 1` worker threads start at
/// the first shared step (see the crate documentation), instead of one fewer than the
/// CPUs the process may run on. `1` starts none: every step runs on the calling thread.
///
/// Call it before the first shared step, for instance when several processes share one
/// machine (the ranks of a distributed run), each with its part of the cores. Afterwards
/// the workers are running: asking for the number they started with is `Ok`, any other
/// is an `Err` that names it. `0` is an `Err`. More threads than CPUs is allowed, as in
/// PyTorch. No number changes a step's result, only how it is shared.
///
/// ```
/// tempo_optim::set_num_threads(1).unwrap();
/// assert_eq!(tempo_optim::num_threads(), 1);
/// assert!(tempo_optim::set_num_threads(0).is_err());
/// ```
pub fn set_num_threads(threads: usize) -> Result<(), OptimError> {
    let err = |expected: String| OptimError::NumThreads {
        requested: threads,
        expected,
    };
    if threads == 0 {
        return Err(err("at least 1".into()));
    }
    let mut t = THREADS.lock().unwrap_or_else(PoisonError::into_inner);
    match t.started {
        Some(started) if started != threads => Err(err(format!(
            "{started}: the threads started with {started} in all at the first shared step \
             (call set_num_threads before it)"
        ))),
        Some(_) => Ok(()),
        None => {
            t.requested = Some(threads);
            Ok(())
        }
    }
}

/// The number of threads tempo-optim's shared steps run on, the calling thread included:
/// the number they started with if they have, else the number they will start with
/// ([`set_num_threads`]'s, or the CPUs this process may run on). As PyTorch's
/// `torch.get_num_threads`.
pub fn num_threads() -> usize {
    let t = THREADS.lock().unwrap_or_else(PoisonError::into_inner);
    t.started.or(t.requested).unwrap_or_else(default_threads)
}

/// The process's pool and the number of threads a job runs on (the workers and the
/// caller), started on first use with [`num_threads`] threads; `None` with one thread
/// or when no worker thread could be started.
#[cfg(not(all(test, loom)))]
pub(crate) fn pool() -> Option<(&'static Pool, usize)> {
    use std::sync::OnceLock;
    static POOL: Pool = Pool::new();
    static WORKERS: OnceLock<usize> = OnceLock::new();
    let workers = *WORKERS.get_or_init(|| {
        let mut t = THREADS.lock().unwrap_or_else(PoisonError::into_inner);
        let wanted = t.requested.unwrap_or_else(default_threads) - 1;
        let workers = (0..wanted)
            .take_while(|&i| {
                std::thread::Builder::new()
                    .name(format!("tempo-optim-{i}"))
                    .spawn(move || POOL.serve(i + 1))
                    .is_ok()
            })
            .count();
        t.started = Some(workers + 1);
        workers
    });
    (workers > 0).then_some((&POOL, workers + 1))
}

/// Under loom the process has no pool (loom's primitives live only inside a model, and
/// the models make pools of their own): every step runs on the calling thread.
#[cfg(all(test, loom))]
pub(crate) fn pool() -> Option<(&'static Pool, usize)> {
    None
}

/// Runs `b` on the calling thread and `a` on one of tempo-optim's worker threads (the
/// ones that share its steps: see the crate documentation), and returns when both have
/// run. If no worker takes `a` by the time `b` is done (or there is none: one core), `a`
/// runs on the calling thread after `b`. Allocates nothing once the workers are started.
///
/// A panic in either is raised again on the calling thread once neither runs any more
/// (`a` is then not started if it was not yet). Called from within `a` or `b`, it runs
/// both on the thread it was called on.
///
/// tempo's benchmarks run their memory-bandwidth references with it, on the same
/// threads and with the same dispatch as an optimizer step.
///
/// ```
/// let (mut left, mut right) = (vec![1.0f32; 4], vec![2.0f32; 4]);
/// tempo_optim::join(
///     || right.iter_mut().for_each(|x| *x *= 2.0),
///     || left.iter_mut().for_each(|x| *x += 1.0),
/// );
/// assert_eq!((left, right), (vec![2.0; 4], vec![4.0; 4]));
/// ```
pub fn join<A: FnOnce() + Send, B: FnOnce() + Send>(a: A, b: B) {
    join_on(pool().map(|(pool, _)| pool), a, b);
}

/// [`join`] on `pool`, or on the calling thread alone.
fn join_on<A: FnOnce() + Send, B: FnOnce() + Send>(pool: Option<&Pool>, a: A, b: B) {
    let job = Join {
        a: Mutex::new(Some(a)),
        b: Mutex::new(Some(b)),
        stopped: AtomicBool::new(false),
    };
    match pool {
        Some(pool) => pool.run(&job),
        None => job.work(0),
    }
}

/// The job of [`join`]: `b` for the caller, `a` for whichever thread takes it first.
struct Join<A, B> {
    a: Mutex<Option<A>>,
    b: Mutex<Option<B>>,
    stopped: AtomicBool,
}

impl<A: FnOnce() + Send, B: FnOnce() + Send> Share for Join<A, B> {
    fn work(&self, thread: usize) {
        if thread == 0 {
            let b = lock(&self.b).take();
            if let Some(b) = b {
                b();
            }
        }
        if !self.stopped.load(Ordering::SeqCst) {
            let a = lock(&self.a).take();
            if let Some(a) = a {
                a();
            }
        }
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

#[cfg(not(all(test, loom)))]
thread_local! {
    /// Whether this thread is inside a job: a worker (always), or a caller in
    /// [`Pool::run`]. A job that dispatches another runs it on its own thread.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

// Under loom, one per model thread (loom's threads share one thread of the process, and
// so would share a `std` thread-local); loom's macro takes no `const` initialiser.
#[cfg(all(test, loom))]
loom::thread_local! {
    static IN_JOB: Cell<bool> = Cell::new(false);
}

/// Sets [`IN_JOB`] for the caller of [`Pool::run`], and clears it when the run ends,
/// also by unwinding.
struct InJob;

impl InJob {
    fn enter() -> Self {
        IN_JOB.with(|j| j.set(true));
        InJob
    }
}

impl Drop for InJob {
    fn drop(&mut self) {
        IN_JOB.with(|j| j.set(false));
    }
}

/// An empty [`Pool`]: the body of `Pool::new`, a `const fn` for the process's static
/// pool, and an ordinary one under loom, whose primitives have no `const` constructors.
macro_rules! empty_pool {
    () => {
        Pool {
            turn: Mutex::new(()),
            state: Mutex::new(State {
                job: None,
                sleeping: 0,
                panic: None,
                exit: false,
            }),
            epoch: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            posted: Condvar::new(),
            left: Condvar::new(),
        }
    };
}

impl Pool {
    /// A pool without workers: threads become its workers by calling [`Pool::serve`].
    #[cfg(not(all(test, loom)))]
    const fn new() -> Self {
        empty_pool!()
    }

    /// A pool without workers: threads become its workers by calling [`Pool::serve`].
    #[cfg(all(test, loom))]
    fn new() -> Self {
        empty_pool!()
    }

    /// Runs `job` on the caller's thread and on every worker that comes in time, and
    /// returns when the job is done and no worker is inside it. A panic in the job, on
    /// any thread, is raised again here once no worker is inside it.
    ///
    /// Called from within a job (on a worker, or by a job's caller), it runs `job` on
    /// the calling thread alone: waiting for the other threads could wait for itself.
    pub(crate) fn run<S: Share>(&self, job: &S) {
        if IN_JOB.with(Cell::get) {
            let r = panic::catch_unwind(AssertUnwindSafe(|| job.work(0)));
            if let Err(payload) = r {
                job.stop();
                panic::resume_unwind(payload);
            }
            return;
        }
        let turn = lock(&self.turn);
        let in_job = InJob::enter();
        let posted = JobRef {
            data: std::ptr::from_ref(job).cast(),
            work: work_erased::<S>,
        };
        let wake = {
            let mut st = lock(&self.state);
            st.job = Some(posted);
            self.epoch.fetch_add(1, Ordering::SeqCst);
            st.sleeping > 0
        };
        if wake {
            self.posted.notify_all();
        }
        let mine = panic::catch_unwind(AssertUnwindSafe(|| job.work(0)));
        if mine.is_err() {
            job.stop();
        }
        // Workers that have not taken the job yet will not take it any more...
        lock(&self.state).job = None;
        // ...and those that have are waited for: only then may `job` (and what it
        // borrows) go away, normally or by unwinding. They are usually finishing their
        // last chunk: spin a little before sleeping.
        spin_until(CALLER_SPIN, || self.running.load(Ordering::SeqCst) == 0);
        let theirs = {
            let mut st = lock(&self.state);
            while self.running.load(Ordering::SeqCst) > 0 {
                st = self.left.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            st.panic.take()
        };
        // The job is over: the turn passes on before a panic is raised again, so that
        // no lock is released by unwinding (nor poisoned; under loom, whose mutexes
        // cannot be locked again once poisoned, that lets the models raise panics).
        drop(in_job);
        drop(turn);
        if let Err(payload) = mine {
            panic::resume_unwind(payload);
        }
        if let Some(payload) = theirs {
            panic::resume_unwind(payload);
        }
    }

    /// The loop of the worker that works as `thread`: waits for a job it has not taken
    /// yet, works on it, reports.
    fn serve(&self, thread: usize) {
        #[cfg(all(test, not(loom)))]
        tests::IN_WORKER.with(|w| w.set(true));
        IN_JOB.with(|j| j.set(true));
        let mut seen = 0u64;
        loop {
            spin_until(WORKER_SPIN, || self.epoch.load(Ordering::SeqCst) != seen);
            let job = {
                let mut st = lock(&self.state);
                loop {
                    let epoch = self.epoch.load(Ordering::SeqCst);
                    match st.job {
                        Some(job) if epoch != seen => {
                            seen = epoch;
                            self.running.fetch_add(1, Ordering::SeqCst);
                            break job;
                        }
                        _ if st.exit => return,
                        _ => {
                            // A job posted and retracted while we spun is not ours.
                            seen = epoch;
                            st.sleeping += 1;
                            st = self.posted.wait(st).unwrap_or_else(PoisonError::into_inner);
                            st.sleeping -= 1;
                        }
                    }
                }
            };
            // SAFETY: the job was taken (and `running` incremented) under the lock while
            // it was posted, so `Pool::run` keeps its `Share` alive until we decrement
            // `running` below.
            let result = unsafe { (job.work)(job.data, thread) };
            let mut st = lock(&self.state);
            if let Err(payload) = result {
                st.panic.get_or_insert(payload);
            }
            if self.running.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.left.notify_all();
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
pub(crate) mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::time::{Duration, Instant};

    thread_local! {
        /// Set by the workers when they start.
        pub(super) static IN_WORKER: Cell<bool> = const { Cell::new(false) };
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    /// Allocations made on worker threads, by any test of this binary.
    static WORKER_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
    /// Held by the tests that make workers allocate (panics box their payload) and by
    /// the test that checks that they do not.
    static WORKER_ALLOCATION_TESTS: Mutex<()> = Mutex::new(());

    /// The system allocator, counting allocations per thread and on worker threads.
    struct Counting;

    // SAFETY: every call forwards to `System` unchanged; the counters are a const
    // thread-local (no allocation, no destructor) and an atomic.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: forwarded unchanged from our caller.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded unchanged from our caller.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            // SAFETY: forwarded unchanged from our caller.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    fn count() {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        if IN_WORKER.try_with(Cell::get).unwrap_or(false) {
            WORKER_ALLOCATIONS.fetch_add(1, SeqCst);
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    fn allocations() -> usize {
        ALLOCATIONS.with(Cell::get)
    }

    /// Waits (at most a minute) until `cond` holds; returns whether it does.
    fn wait_for(cond: impl Fn() -> bool) -> bool {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > Duration::from_secs(60) {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// Stops the workers of a test pool when dropped (also when the test panics), so
    /// that the scope holding them can join them.
    struct ShutDown<'a>(&'a Pool);

    impl Drop for ShutDown<'_> {
        fn drop(&mut self) {
            lock(&self.0.state).exit = true;
            self.0.posted.notify_all();
        }
    }

    /// Runs `f` with a pool of its own, of `workers` worker threads, which are joined
    /// before it returns (small enough for Miri, unlike the process's pool, whose workers
    /// live for the process).
    pub(crate) fn with_pool<R>(workers: usize, f: impl FnOnce(&Pool) -> R) -> R {
        let pool = Pool::new();
        std::thread::scope(|s| {
            for i in 0..workers {
                let pool = &pool;
                s.spawn(move || pool.serve(i + 1));
            }
            let _shut_down = ShutDown(&pool);
            f(&pool)
        })
    }

    /// Parts handed out by a counter, each recording the thread that ran it.
    /// With `await_worker`, the caller takes no part before a worker has entered.
    struct Parts {
        next: AtomicUsize,
        ran_on: Vec<AtomicUsize>,
        stopped: AtomicBool,
        await_worker: bool,
        entered: AtomicUsize,
    }

    impl Parts {
        fn new(n: usize, await_worker: bool) -> Self {
            Parts {
                next: AtomicUsize::new(0),
                ran_on: (0..n).map(|_| AtomicUsize::new(usize::MAX)).collect(),
                stopped: AtomicBool::new(false),
                await_worker,
                entered: AtomicUsize::new(0),
            }
        }
    }

    impl Share for Parts {
        fn work(&self, thread: usize) {
            if thread != 0 {
                self.entered.fetch_add(1, SeqCst);
            } else if self.await_worker {
                assert!(wait_for(|| self.entered.load(SeqCst) > 0), "no worker came");
            }
            while !self.stopped.load(SeqCst) {
                let i = self.next.fetch_add(1, SeqCst);
                let Some(slot) = self.ran_on.get(i) else {
                    return;
                };
                let before = slot.swap(thread, SeqCst);
                assert_eq!(before, usize::MAX, "part {i} ran twice");
                std::thread::yield_now();
            }
        }
        fn stop(&self) {
            self.stopped.store(true, SeqCst);
        }
    }

    #[test]
    fn pool_runs_every_part_of_every_job_once() {
        let _serial = lock(&WORKER_ALLOCATION_TESTS);
        with_pool(2, |pool| {
            // Jobs back to back (workers spinning) and after a pause (workers asleep);
            // in every other one the caller waits for a worker to come.
            for k in 0..6 {
                if k == 3 {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let job = Parts::new(12, k % 2 == 0);
                pool.run(&job);
                let threads: Vec<usize> = job.ran_on.iter().map(|t| t.load(SeqCst)).collect();
                assert!(threads.iter().all(|&t| t <= 2), "job {k}: {threads:?}");
                if k % 2 == 0 {
                    assert!(threads.iter().any(|&t| t != 0), "job {k}: {threads:?}");
                }
            }
        });
    }

    #[test]
    fn pool_run_from_within_a_job_runs_it_on_that_thread() {
        let _serial = lock(&WORKER_ALLOCATION_TESTS);
        with_pool(1, |pool| {
            let inner_threads = Mutex::new(Vec::new());
            let job = probe(
                |entered| {
                    assert!(wait_for(|| entered.load(SeqCst) > 0));
                    let inner = Parts::new(3, false);
                    pool.run(&inner);
                    lock(&inner_threads).extend(inner.ran_on.iter().map(|t| t.load(SeqCst)));
                },
                || {
                    let inner = Parts::new(3, false);
                    pool.run(&inner);
                    lock(&inner_threads).extend(inner.ran_on.iter().map(|t| t.load(SeqCst)));
                },
            );
            pool.run(&job);
            let mut threads = std::mem::take(&mut *lock(&inner_threads));
            threads.sort_unstable();
            // Each nested job ran whole on the thread that posted it, as thread 0.
            assert_eq!(threads, [0; 6]);
        });
    }

    #[test]
    fn pool_join_runs_both_closures_once() {
        let _serial = lock(&WORKER_ALLOCATION_TESTS);
        with_pool(1, |pool| {
            let (mut left, mut right) = (vec![0u32; 5], vec![0u32; 7]);
            for round in 1..=3u32 {
                join_on(
                    Some(pool),
                    || right.iter_mut().for_each(|x| *x += round),
                    || left.iter_mut().for_each(|x| *x += 10 * round),
                );
            }
            assert_eq!((left, right), (vec![60; 5], vec![6; 7]));
            // Nested: the inner join runs on the thread of the outer closure.
            let (mut a, mut b, mut c) = (0, 0, 0);
            join_on(
                Some(pool),
                || join_on(Some(pool), || a += 1, || b += 2),
                || c += 3,
            );
            assert_eq!((a, b, c), (1, 2, 3));
        });
        // Without workers (one core).
        let (mut a, mut b) = (0, 0);
        join_on(None, || a += 1, || b += 2);
        assert_eq!((a, b), (1, 2));
    }

    #[test]
    fn pool_join_raises_a_panic_of_either_closure() {
        let _serial = lock(&WORKER_ALLOCATION_TESTS);
        with_pool(1, |pool| {
            for a_panics in [false, true] {
                let ran = AtomicUsize::new(0);
                let r = panic::catch_unwind(AssertUnwindSafe(|| {
                    join_on(
                        Some(pool),
                        || {
                            ran.fetch_add(1, SeqCst);
                            assert!(!a_panics, "a failed");
                        },
                        || {
                            ran.fetch_add(1, SeqCst);
                            assert!(a_panics, "b failed");
                        },
                    );
                }));
                let payload = r.expect_err("the panic reaches the caller");
                let want = if a_panics { "a failed" } else { "b failed" };
                assert_eq!(payload.downcast_ref::<&str>(), Some(&want));
                // `a` is not started after `b` panicked, unless a worker had taken it.
                assert!(ran.load(SeqCst) >= 1);
            }
        });
    }

    /// A job that runs `on_worker` on the worker threads and, on the caller, waits for
    /// a worker to have entered before running `on_caller`.
    struct Probe<C, W> {
        caller: std::thread::ThreadId,
        entered: AtomicUsize,
        on_caller: C,
        on_worker: W,
    }

    impl<C: Fn(&AtomicUsize) + Sync, W: Fn() + Sync> Share for Probe<C, W> {
        fn work(&self, thread: usize) {
            assert_eq!(thread == 0, std::thread::current().id() == self.caller);
            if thread == 0 {
                (self.on_caller)(&self.entered);
            } else {
                self.entered.fetch_add(1, SeqCst);
                (self.on_worker)();
            }
        }
        fn stop(&self) {}
    }

    fn probe<C: Fn(&AtomicUsize) + Sync, W: Fn() + Sync>(
        on_caller: C,
        on_worker: W,
    ) -> Probe<C, W> {
        Probe {
            caller: std::thread::current().id(),
            entered: AtomicUsize::new(0),
            on_caller,
            on_worker,
        }
    }

    #[test]
    fn pool_raises_a_worker_panic_on_the_caller_after_the_job() {
        with_pool(1, a_worker_panic_is_raised_on_the_caller_after_the_job);
    }

    fn a_worker_panic_is_raised_on_the_caller_after_the_job(pool: &Pool) {
        let _serial = lock(&WORKER_ALLOCATION_TESTS);
        let caller_done = AtomicBool::new(false);
        let job = probe(
            |entered| {
                assert!(
                    wait_for(|| entered.load(SeqCst) > 0),
                    "no worker took the job"
                );
                caller_done.store(true, SeqCst);
            },
            || panic!("worker kernel failed"),
        );
        let r = panic::catch_unwind(AssertUnwindSafe(|| pool.run(&job)));
        let payload = r.expect_err("the worker's panic reaches the caller");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"worker kernel failed")
        );
        assert!(
            caller_done.load(SeqCst),
            "the caller finished its own share first"
        );
        // The pool still works.
        let ran = AtomicUsize::new(0);
        let job = probe(
            |entered| {
                assert!(wait_for(|| entered.load(SeqCst) > 0));
            },
            || {
                ran.fetch_add(1, SeqCst);
            },
        );
        pool.run(&job);
        assert!(ran.load(SeqCst) > 0);
    }

    #[test]
    fn pool_waits_for_the_workers_inside_the_job_after_a_caller_panic() {
        with_pool(2, a_caller_panic_waits_for_the_workers_inside_the_job);
    }

    fn a_caller_panic_waits_for_the_workers_inside_the_job(pool: &Pool) {
        let _serial = lock(&WORKER_ALLOCATION_TESTS);
        let worker_left = AtomicBool::new(false);
        let job = probe(
            |entered| {
                assert!(
                    wait_for(|| entered.load(SeqCst) > 0),
                    "no worker took the job"
                );
                panic!("caller kernel failed");
            },
            || {
                std::thread::sleep(Duration::from_millis(50));
                worker_left.store(true, SeqCst);
            },
        );
        let r = panic::catch_unwind(AssertUnwindSafe(|| pool.run(&job)));
        let payload = r.expect_err("the caller's panic is raised again");
        assert_eq!(
            payload.downcast_ref::<&str>(),
            Some(&"caller kernel failed")
        );
        assert!(
            worker_left.load(SeqCst),
            "run returned while a worker was still inside the job"
        );
    }

    // Steps of 2^16 elements and more: far too slow under Miri.
    #[test]
    #[cfg_attr(miri, ignore)]
    fn workers_allocate_nothing_in_steady_state_steps() {
        use crate::{Adam, AdamConfig, Optimizer, RMSprop, RMSpropConfig};
        use ndarray::ArrayD;
        use tempo_tensor::Tensor;

        let Some((pool, _)) = pool() else { return };
        let _serial = lock(&WORKER_ALLOCATION_TESTS);
        // The counter sees worker allocations.
        let before = WORKER_ALLOCATIONS.load(SeqCst);
        let job = probe(
            |entered| assert!(wait_for(|| entered.load(SeqCst) > 0)),
            || drop(std::hint::black_box(vec![1u8; 16])),
        );
        pool.run(&job);
        assert!(WORKER_ALLOCATIONS.load(SeqCst) > before);

        let sizes = [1000, 70_000, 1, 65_537, 4096, 130_000];
        let params: Vec<Tensor<f32>> = sizes
            .iter()
            .map(|&n| Tensor::parameter(ArrayD::from_elem(vec![n], 0.5f32)))
            .collect();
        for p in &params {
            let g = ArrayD::from_shape_fn(p.shape(), |i| (i[0] as f32 * 0.37).sin());
            p.set_grad(Some(g)).unwrap();
        }
        let adam = AdamConfig {
            amsgrad: true,
            ..Default::default()
        };
        let rms = RMSpropConfig {
            momentum: 0.9,
            centered: true,
            ..Default::default()
        };
        let mut opts: Vec<Box<dyn Optimizer<f32>>> = vec![
            Box::new(Adam::new(params.clone(), adam).unwrap()),
            Box::new(RMSprop::new(params.clone(), rms).unwrap()),
        ];
        for opt in &mut opts {
            opt.step().unwrap();
            let (mine, theirs) = (allocations(), WORKER_ALLOCATIONS.load(SeqCst));
            for _ in 0..20 {
                opt.step().unwrap();
            }
            assert_eq!(allocations() - mine, 0, "the stepping thread allocated");
            assert_eq!(
                WORKER_ALLOCATIONS.load(SeqCst) - theirs,
                0,
                "a worker allocated"
            );
        }
    }
}

/// The pool's rendezvous model-checked with loom: each model runs a small pool on loom's
/// primitives, and loom runs it under every interleaving of its threads (for the larger
/// models, every one with at most a few preemptions), failing on a deadlock, a lost
/// wakeup (a thread left asleep for ever), an assertion, or an access to a job's memory
/// that is not ordered before `Pool::run` returns. Run with
/// `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p tempo-optim --lib
/// --release pool::loom_tests -- --test-threads=1` (one model at a time is the faster on
/// two cores; `LOOM_MAX_PREEMPTIONS` sets another bound for every model).
///
/// Not modelled: the process's pool, whose workers never exit (the models build pools
/// of their own, like the Miri tests' `with_pool`); the spins' real durations (two looks
/// here, which is enough to take both ways out of a spin); pools and jobs larger than
/// these, and the larger models' interleavings beyond their preemption bound.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread::JoinHandle;
    use Ordering::SeqCst;

    /// Runs `model` under every interleaving loom explores with at most `preemptions`
    /// preemptions each (`None`: any number), unless `LOOM_MAX_PREEMPTIONS` gives another
    /// bound, and checks that it explored more than one (the count is printed:
    /// `--nocapture` shows it). The bounds below keep the whole suite within a minute on
    /// two cores; one more preemption costs each of the larger models five to ten times
    /// as long.
    fn check(name: &str, preemptions: Option<usize>, model: impl Fn() + Sync + Send + 'static) {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = preemptions;
        }
        let bound = builder.preemption_bound;
        // A counter of the process, outside the model: loom does not see it.
        let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&executions);
        builder.check(move || {
            counter.fetch_add(1, SeqCst);
            model();
        });
        let executions = executions.load(SeqCst);
        println!("{name}: {executions} executions, preemption bound {bound:?}");
        assert!(executions > 1, "{name}: one interleaving only");
    }

    /// A pool of `workers` worker threads, running.
    fn start(workers: usize) -> (Arc<Pool>, Vec<JoinHandle<()>>) {
        let pool = Arc::new(Pool::new());
        let handles = (0..workers)
            .map(|i| {
                let pool = Arc::clone(&pool);
                loom::thread::spawn(move || pool.serve(i + 1))
            })
            .collect();
        (pool, handles)
    }

    /// Makes the workers return (what the tests' `ShutDown` does) and joins them: loom
    /// fails the model if one of them never does.
    fn shut_down(pool: &Pool, workers: Vec<JoinHandle<()>>) {
        lock(&pool.state).exit = true;
        pool.posted.notify_all();
        for worker in workers {
            assert!(worker.join().is_ok(), "a worker panicked");
        }
        assert_eq!(pool.running.load(SeqCst), 0);
    }

    /// A cell that one thread writes and another reads without synchronisation of its
    /// own: loom fails the model unless the write happens before the read, or the other
    /// way round.
    struct Slot(UnsafeCell<usize>);

    // SAFETY: in these models a `Slot` is written only by the one thread that a job
    // hands it to (the thread that drew its index from `Parts::next`, the one that runs
    // a `join` closure, or the thread of its number in `Panics`), and read by the
    // thread that ran the job, after `Pool::run` has returned or unwound; that every
    // write happens before that read is what loom checks, in every execution.
    unsafe impl Sync for Slot {}

    impl Slot {
        fn new() -> Self {
            Slot(UnsafeCell::new(0))
        }

        fn bump(&self) {
            // SAFETY: see `impl Sync for Slot` (loom checks the claim).
            self.0.with_mut(|v| unsafe { *v += 1 });
        }

        fn get(&self) -> usize {
            // SAFETY: see `impl Sync for Slot` (loom checks the claim).
            self.0.with(|v| unsafe { *v })
        }
    }

    /// A job of parts handed out by a counter, each a [`Slot`] bumped by the thread that
    /// drew it; it counts the calls of `work` on each thread and the threads inside it.
    struct Parts {
        next: AtomicUsize,
        parts: Vec<Slot>,
        calls: Vec<AtomicUsize>,
        inside: AtomicUsize,
    }

    impl Parts {
        /// `n` parts, for a pool of `threads` threads (the workers and the caller).
        fn new(n: usize, threads: usize) -> Self {
            Parts {
                next: AtomicUsize::new(0),
                parts: (0..n).map(|_| Slot::new()).collect(),
                calls: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
                inside: AtomicUsize::new(0),
            }
        }

        /// What must hold once `Pool::run` has returned: no thread inside the job, the
        /// caller's call made, no worker's made twice, every part run exactly once (and
        /// written before now: loom checks that at each `get`).
        fn check_done(&self) {
            assert_eq!(self.inside.load(SeqCst), 0, "a thread is inside the job");
            assert_eq!(self.calls[0].load(SeqCst), 1, "the caller's call");
            for (t, calls) in self.calls.iter().enumerate().skip(1) {
                assert!(calls.load(SeqCst) <= 1, "worker {t} took the job twice");
            }
            for (i, part) in self.parts.iter().enumerate() {
                assert_eq!(part.get(), 1, "part {i}");
            }
        }
    }

    /// Runs `job` on `pool`, whose only caller this thread is, and checks it done, with
    /// no worker left running.
    fn run_alone(pool: &Pool, job: &Parts) {
        pool.run(job);
        job.check_done();
        assert_eq!(pool.running.load(SeqCst), 0, "a worker is running");
    }

    impl Share for Parts {
        fn work(&self, thread: usize) {
            self.calls[thread].fetch_add(1, SeqCst);
            self.inside.fetch_add(1, SeqCst);
            while let Some(part) = self.parts.get(self.next.fetch_add(1, SeqCst)) {
                part.bump();
            }
            self.inside.fetch_sub(1, SeqCst);
        }

        fn stop(&self) {}
    }

    #[test]
    fn one_worker_runs_one_job_and_exits() {
        check("one_worker_runs_one_job_and_exits", None, || {
            let (pool, workers) = start(1);
            let job = Parts::new(2, 2);
            run_alone(&pool, &job);
            shut_down(&pool, workers);
        });
    }

    /// The worker must take each job at most once, and must not miss the second one by
    /// taking the first one's epoch for it (or sleep through it).
    #[test]
    fn one_worker_runs_two_jobs_back_to_back() {
        check("one_worker_runs_two_jobs_back_to_back", Some(5), || {
            let (pool, workers) = start(1);
            let first = Parts::new(1, 2);
            run_alone(&pool, &first);
            let second = Parts::new(1, 2);
            run_alone(&pool, &second);
            // Still: the worker did not come back to the first job.
            first.check_done();
            shut_down(&pool, workers);
        });
    }

    #[test]
    fn two_workers_run_one_job_and_exit() {
        check("two_workers_run_one_job_and_exit", Some(3), || {
            let (pool, workers) = start(2);
            let job = Parts::new(2, 3);
            run_alone(&pool, &job);
            shut_down(&pool, workers);
        });
    }

    /// Exit while the worker has not started yet, spins, or sleeps.
    #[test]
    fn an_idle_worker_exits() {
        check("an_idle_worker_exits", None, || {
            let (pool, workers) = start(1);
            shut_down(&pool, workers);
        });
    }

    #[test]
    fn join_runs_each_closure_once() {
        check("join_runs_each_closure_once", None, || {
            let (pool, workers) = start(1);
            let (a, b) = (Slot::new(), Slot::new());
            join_on(Some(&pool), || a.bump(), || b.bump());
            assert_eq!((a.get(), b.get()), (1, 1));
            shut_down(&pool, workers);
        });
    }

    /// A job that runs a job of its own on every thread that enters it.
    struct Nested<'a> {
        pool: &'a Pool,
        threads: usize,
        inner_done: AtomicUsize,
    }

    impl Share for Nested<'_> {
        fn work(&self, _thread: usize) {
            let inner = Parts::new(1, self.threads);
            self.pool.run(&inner);
            // It ran whole on this thread, as the caller's part.
            inner.check_done();
            assert!(inner.calls[1..].iter().all(|c| c.load(SeqCst) == 0));
            self.inner_done.fetch_add(1, SeqCst);
        }

        fn stop(&self) {}
    }

    /// A job posted from within a job (on the worker or on the caller) runs on the
    /// thread that posted it: waiting for the others would wait for itself. This needs
    /// `IN_JOB` to be per thread (loom's `thread_local!`).
    #[test]
    fn a_job_run_from_within_a_job_stays_on_its_thread() {
        check(
            "a_job_run_from_within_a_job_stays_on_its_thread",
            None,
            || {
                let (pool, workers) = start(1);
                let job = Nested {
                    pool: &pool,
                    threads: 2,
                    inner_done: AtomicUsize::new(0),
                };
                pool.run(&job);
                assert!((1..=2).contains(&job.inner_done.load(SeqCst)));
                shut_down(&pool, workers);
            },
        );
    }

    /// Two callers on two threads: one job at a time (`Pool::turn`), each done when its
    /// `run` returns.
    #[test]
    fn two_callers_take_turns() {
        check("two_callers_take_turns", Some(3), || {
            let (pool, workers) = start(1);
            let other = {
                let pool = Arc::clone(&pool);
                loom::thread::spawn(move || {
                    let job = Parts::new(1, 2);
                    pool.run(&job);
                    job.check_done();
                })
            };
            let job = Parts::new(1, 2);
            pool.run(&job);
            job.check_done();
            assert!(other.join().is_ok(), "the other caller failed");
            shut_down(&pool, workers);
        });
    }

    /// The message of the panics the models below raise on purpose.
    const PLANNED: &str = "a planned panic of a loom model";

    /// Keeps the default panic hook quiet about [`PLANNED`] panics (a model raises one
    /// in each of its thousands of executions); every other panic is reported as usual.
    fn quiet_planned_panics() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let report = panic::take_hook();
            panic::set_hook(Box::new(move |info| {
                if info.payload().downcast_ref::<&str>() != Some(&PLANNED) {
                    report(info);
                }
            }));
        });
    }

    /// A job in which the caller (`on_caller`) or the workers panic: the others write
    /// a [`Slot`] each, so that loom checks their writes against the caller's reads.
    struct Panics {
        on_caller: bool,
        wrote: Vec<Slot>,
        calls: Vec<AtomicUsize>,
    }

    impl Share for Panics {
        fn work(&self, thread: usize) {
            self.calls[thread].fetch_add(1, SeqCst);
            self.wrote[thread].bump();
            if (thread == 0) == self.on_caller {
                panic::panic_any(PLANNED);
            }
        }

        fn stop(&self) {}
    }

    /// Runs a [`Panics`] job on a pool of one worker, checks what `run` raised and that
    /// nothing of the job ran after it, then that the pool still runs a job.
    fn check_panic(on_caller: bool) {
        quiet_planned_panics();
        let (pool, workers) = start(1);
        let job = Panics {
            on_caller,
            wrote: vec![Slot::new(), Slot::new()],
            calls: vec![AtomicUsize::new(0), AtomicUsize::new(0)],
        };
        let raised = panic::catch_unwind(AssertUnwindSafe(|| pool.run(&job)));
        let worker_came = job.calls[1].load(SeqCst);
        assert!(worker_came <= 1, "the worker took the job twice");
        // The caller's panic always comes back, a worker's when it took the job.
        match raised {
            Ok(()) => assert!(!on_caller && worker_came == 0, "a panic was lost"),
            Err(payload) => {
                assert_eq!(payload.downcast_ref::<&str>(), Some(&PLANNED));
                assert!(on_caller || worker_came == 1);
            }
        }
        // Every write of the job happened before `run` returned (or unwound).
        assert_eq!(job.wrote[0].get(), 1);
        assert_eq!(job.wrote[1].get(), worker_came);
        assert_eq!(pool.running.load(SeqCst), 0, "a worker is running");
        let next = Parts::new(1, 2);
        run_alone(&pool, &next);
        shut_down(&pool, workers);
    }

    /// A worker's panic is raised on the caller once the job is done, and the pool goes
    /// on working.
    #[test]
    fn a_worker_panic_reaches_the_caller_after_the_job() {
        check(
            "a_worker_panic_reaches_the_caller_after_the_job",
            Some(5),
            || check_panic(false),
        );
    }

    /// A panic of the caller's part is raised again only once no worker is inside the
    /// job (whose memory goes away with the unwinding).
    #[test]
    fn a_caller_panic_waits_for_the_workers_inside_the_job() {
        check(
            "a_caller_panic_waits_for_the_workers_inside_the_job",
            Some(5),
            || check_panic(true),
        );
    }
}
