//! The persistent worker threads that share a step's elementwise work with the caller.
//!
//! One pool per process, started at the first step that has enough work to split:
//! `available_parallelism - 1` workers, parked on a condition variable between steps.
//! A dispatch posts a type-erased reference to a job on the caller's stack, the caller
//! works on it too, and the dispatch returns only when no worker is inside the job any
//! more. Posting, waking and joining allocate nothing (a mutex, two condition variables
//! and a few counters), so a steady-state step allocates nothing either.
//!
//! A panic in a job, on any thread, stops the job's remaining work, waits for every
//! worker to leave the job and is then raised again on the caller's thread, so no worker
//! ever holds a borrow the caller has given up.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

/// Work that several threads do together: each thread calls [`Share::work`] until it
/// returns, and the work is done when every call has returned.
pub(crate) trait Share: Sync {
    /// Does parts of the work until none is left (or the work was stopped).
    fn work(&self);
    /// Makes every current and later call of [`Share::work`] return soon, leaving the
    /// remaining parts undone (after a panic).
    fn stop(&self);
}

/// A posted job: a pointer to a `Share` on the caller's stack, and the function that
/// works on it given that pointer.
#[derive(Clone, Copy)]
struct JobRef {
    data: *const (),
    work: unsafe fn(*const ()) -> Result<(), Box<dyn Any + Send>>,
}

// SAFETY: a `JobRef` points to a `Share`, which is `Sync`, and is dereferenced only
// between its posting and the end of `Pool::run`, which waits for every worker that
// took it (see `Pool::run`). Sending the pointer to a worker is sending a `&Share`.
unsafe impl Send for JobRef {}

/// Works on the `S` behind `data`, catching a panic (and then stopping the job).
///
/// # Safety
/// `data` must point to a live `S` for the whole call.
unsafe fn work_erased<S: Share>(data: *const ()) -> Result<(), Box<dyn Any + Send>> {
    // SAFETY: guaranteed by the caller: `Pool::run` keeps the `S` alive until this call
    // has returned.
    let job = unsafe { &*data.cast::<S>() };
    panic::catch_unwind(AssertUnwindSafe(|| job.work())).inspect_err(|_| job.stop())
}

/// What the workers and the caller share, under `Pool::state`.
struct State {
    /// The posted job, while the caller is working on it.
    job: Option<JobRef>,
    /// Incremented at every post, so that a worker takes each job at most once.
    epoch: u64,
    /// Workers inside the posted job.
    running: usize,
    /// The first panic a worker caught in the current job.
    panic: Option<Box<dyn Any + Send>>,
}

/// The worker threads and their rendezvous.
pub(crate) struct Pool {
    /// Held for a whole dispatch: one job at a time (callers on other threads wait).
    turn: Mutex<()>,
    state: Mutex<State>,
    /// Signalled when a job is posted.
    posted: Condvar,
    /// Signalled when the last running worker leaves a job.
    left: Condvar,
}

/// Locks `m`, ignoring poisoning: no code panics while holding these locks, and the
/// state they guard is consistent at every unlock.
fn lock<X>(m: &Mutex<X>) -> MutexGuard<'_, X> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The process's pool and the number of threads a job runs on (the workers and the
/// caller), started on first use; `None` on one core or when no worker thread could be
/// started.
pub(crate) fn pool() -> Option<(&'static Pool, usize)> {
    static POOL: OnceLock<Pool> = OnceLock::new();
    static WORKERS: OnceLock<usize> = OnceLock::new();
    let pool = POOL.get_or_init(|| Pool {
        turn: Mutex::new(()),
        state: Mutex::new(State {
            job: None,
            epoch: 0,
            running: 0,
            panic: None,
        }),
        posted: Condvar::new(),
        left: Condvar::new(),
    });
    let workers = *WORKERS.get_or_init(|| {
        let wanted = std::thread::available_parallelism().map_or(1, usize::from) - 1;
        (0..wanted)
            .take_while(|i| {
                std::thread::Builder::new()
                    .name(format!("tempo-optim-{i}"))
                    .spawn(move || pool.serve())
                    .is_ok()
            })
            .count()
    });
    (workers > 0).then_some((pool, workers + 1))
}

impl Pool {
    /// Runs `job` on the caller's thread and on every worker that wakes up in time, and
    /// returns when the job is done and no worker is inside it. A panic in the job, on
    /// any thread, is raised again here once no worker is inside it.
    ///
    /// Must not be called from within a job (it would wait for itself).
    pub(crate) fn run<S: Share>(&self, job: &S) {
        let _turn = lock(&self.turn);
        let posted = JobRef {
            data: std::ptr::from_ref(job).cast(),
            work: work_erased::<S>,
        };
        {
            let mut st = lock(&self.state);
            st.job = Some(posted);
            st.epoch = st.epoch.wrapping_add(1);
        }
        self.posted.notify_all();
        let mine = panic::catch_unwind(AssertUnwindSafe(|| job.work()));
        if mine.is_err() {
            job.stop();
        }
        let theirs = {
            let mut st = lock(&self.state);
            // Workers that have not taken the job yet will not take it any more...
            st.job = None;
            // ...and those that have are waited for: only then may `job` (and what it
            // borrows) go away, normally or by unwinding.
            while st.running > 0 {
                st = self.left.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            st.panic.take()
        };
        if let Err(payload) = mine {
            panic::resume_unwind(payload);
        }
        if let Some(payload) = theirs {
            panic::resume_unwind(payload);
        }
    }

    /// A worker's loop: waits for a job it has not taken yet, works on it, reports.
    fn serve(&self) {
        let mut seen = 0u64;
        loop {
            let job = {
                let mut st = lock(&self.state);
                loop {
                    match st.job {
                        Some(job) if st.epoch != seen => {
                            seen = st.epoch;
                            st.running += 1;
                            break job;
                        }
                        _ => st = self.posted.wait(st).unwrap_or_else(PoisonError::into_inner),
                    }
                }
            };
            // SAFETY: the job was taken (and `running` incremented) under the lock while
            // it was posted, so `Pool::run` keeps its `Share` alive until we decrement
            // `running` below.
            let result = unsafe { (job.work)(job.data) };
            let mut st = lock(&self.state);
            if let Err(payload) = result {
                st.panic.get_or_insert(payload);
            }
            st.running -= 1;
            if st.running == 0 {
                self.left.notify_all();
            }
        }
    }
}
