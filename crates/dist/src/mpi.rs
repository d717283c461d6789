//! [`MpiComm`]: the [`Communicator`] on MPI (rsmpi over the system's MPI library).

use std::sync::{Arc, Mutex, MutexGuard};

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::point_to_point::send_receive_into_with_tags;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Equivalence, Root};
use mpi::{Count, Threading};

/// The tag of the two-rank reduce-scatter's messages (the only point-to-point messages
/// tempo-dist sends).
const REDUCE_SCATTER_TAG: mpi::Tag = 17;

use crate::{Communicator, DistError};

/// Serializes every MPI call of the process: MPI is started with
/// `MPI_THREAD_SERIALIZED`, which allows calls from any thread, one at a time.
static MPI_CALLS: Mutex<()> = Mutex::new(());

fn serialized() -> MutexGuard<'static, ()> {
    MPI_CALLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// MPI for this process: `MPI_Init_thread` when started, `MPI_Finalize` when the
/// runtime and every communicator taken from it are gone.
#[derive(Clone)]
pub struct MpiRuntime {
    universe: Arc<Universe>,
}

impl std::fmt::Debug for MpiRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiRuntime").finish_non_exhaustive()
    }
}

impl MpiRuntime {
    /// Starts MPI (once per process). Under `mpirun` the ranks find each other; started
    /// directly, the process is a group of one.
    pub fn init() -> Result<Self, DistError> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| DistError::Mpi {
                message: "MPI was already started in this process".into(),
            })?;
        if threading < Threading::Serialized {
            return Err(DistError::Mpi {
                message: format!(
                    "the MPI library offers thread support {threading:?}, tempo needs Serialized"
                ),
            });
        }
        Ok(Self {
            universe: Arc::new(universe),
        })
    }

    /// All processes of the run (`MPI_COMM_WORLD`).
    pub fn world(&self) -> MpiComm {
        let world = self.universe.world();
        MpiComm {
            rank: usize::try_from(world.rank()).unwrap_or(0),
            size: usize::try_from(world.size()).unwrap_or(1),
            world,
            _runtime: Arc::clone(&self.universe),
        }
    }

    /// Ends every rank of the run at once (`MPI_Abort`), for an error only this rank
    /// knows of, so that the others do not wait for it.
    pub fn abort(&self, code: i32) -> ! {
        self.universe.world().abort(code)
    }
}

/// The world communicator of an [`MpiRuntime`].
///
/// MPI's default error handler ends the whole run on a communication failure, and
/// `mpirun` ends every rank when one dies, so a lost rank never leaves the others
/// waiting; the results here are errors only for arguments tempo-dist can check.
pub struct MpiComm {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    _runtime: Arc<Universe>,
}

impl std::fmt::Debug for MpiComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiComm")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish()
    }
}

// SAFETY: the handle is `MPI_COMM_WORLD`, valid from `MPI_Init_thread` until
// `MPI_Finalize`, which `_runtime` delays until this value is gone. MPI runs with
// `MPI_THREAD_SERIALIZED` (checked in `MpiRuntime::init`), which allows calls from any
// thread provided no two are concurrent; every call below holds `MPI_CALLS`.
#[allow(unsafe_code)]
unsafe impl Send for MpiComm {}

fn count(n: usize) -> Result<Count, DistError> {
    Count::try_from(n).map_err(|_| DistError::InvalidArgument {
        what: "message length",
        expected: format!("at most {} elements", Count::MAX),
        found: n.to_string(),
    })
}

fn same_len(send: usize, recv: usize) -> Result<(), DistError> {
    if send == recv {
        Ok(())
    } else {
        Err(DistError::InvalidArgument {
            what: "receive buffer length",
            expected: send.to_string(),
            found: recv.to_string(),
        })
    }
}

/// Checks that a buffer of `whole` elements holds `ranks` blocks of `block` elements.
fn blocks(whole: usize, block: usize, ranks: usize) -> Result<(), DistError> {
    if block.checked_mul(ranks) == Some(whole) {
        Ok(())
    } else {
        Err(DistError::InvalidArgument {
            what: "buffer length",
            expected: format!("{ranks} blocks of {block} elements"),
            found: format!("{whole} elements"),
        })
    }
}

fn displacements(counts: &[Count]) -> Vec<Count> {
    counts
        .iter()
        .scan(0, |acc, &c| {
            let d = *acc;
            *acc += c;
            Some(d)
        })
        .collect()
}

impl MpiComm {
    fn root(&self, root: usize) -> Result<mpi::topology::Process<'_>, DistError> {
        if root >= self.size {
            return Err(DistError::InvalidArgument {
                what: "root rank",
                expected: format!("a rank below {}", self.size),
                found: root.to_string(),
            });
        }
        Ok(self.world.process_at_rank(root as mpi::Rank))
    }
}

impl MpiComm {
    /// `recv = sum over ranks of send`, elementwise.
    fn sum_into<T: Equivalence>(&self, send: &[T], recv: &mut [T]) -> Result<(), DistError> {
        same_len(send.len(), recv.len())?;
        count(send.len())?;
        if send.is_empty() {
            // Every rank passes the same length, so every rank skips alike.
            return Ok(());
        }
        let _g = serialized();
        self.world
            .all_reduce_into(send, recv, SystemOperation::sum());
        Ok(())
    }

    /// Rank `r` gets the sum over ranks of block `r` of `send`: with two ranks, one
    /// exchange of the block each needs from the other and a sum (Open MPI's
    /// `MPI_Reduce_scatter_block` reduces the whole buffer on one rank and then
    /// scatters it, which takes twice as long here); with more,
    /// `MPI_Reduce_scatter_block`.
    fn reduce_scatter<T: Equivalence + Copy + std::ops::AddAssign>(
        &self,
        send: &[T],
        recv: &mut [T],
    ) -> Result<(), DistError> {
        blocks(send.len(), recv.len(), self.size)?;
        count(send.len())?;
        if recv.is_empty() {
            return Ok(());
        }
        let _g = serialized();
        if self.size == 2 {
            let n = recv.len();
            let other = 1 - self.rank;
            let peer = self.world.process_at_rank(other as mpi::Rank);
            // The peer's share of this rank's block arrives while this rank's share of
            // the peer's block leaves; then this rank adds its own (a sum of two is the
            // same in either order).
            send_receive_into_with_tags(
                &send[other * n..(other + 1) * n],
                &peer,
                REDUCE_SCATTER_TAG,
                recv,
                &peer,
                REDUCE_SCATTER_TAG,
            );
            for (r, &mine) in recv
                .iter_mut()
                .zip(&send[self.rank * n..(self.rank + 1) * n])
            {
                *r += mine;
            }
        } else {
            self.world
                .reduce_scatter_block_into(send, recv, SystemOperation::sum());
        }
        Ok(())
    }

    /// Every rank's `send`, in rank order, into `recv` (`MPI_Allgather`).
    fn gather_all<T: Equivalence>(&self, send: &[T], recv: &mut [T]) -> Result<(), DistError> {
        blocks(recv.len(), send.len(), self.size)?;
        count(recv.len())?;
        if send.is_empty() {
            return Ok(());
        }
        let _g = serialized();
        self.world.all_gather_into(send, recv);
        Ok(())
    }

    /// `buf` from rank `root` on every rank.
    fn broadcast<T: Equivalence>(&self, root: usize, buf: &mut [T]) -> Result<(), DistError> {
        count(buf.len())?;
        let root = self.root(root)?;
        if buf.is_empty() {
            return Ok(());
        }
        let _g = serialized();
        root.broadcast_into(buf);
        Ok(())
    }
}

impl Communicator for MpiComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), DistError> {
        self.sum_into(send, recv)
    }
    fn all_reduce_sum_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), DistError> {
        self.sum_into(send, recv)
    }
    fn all_reduce_sum_u64(&self, send: &[u64], recv: &mut [u64]) -> Result<(), DistError> {
        self.sum_into(send, recv)
    }
    fn broadcast_f32(&self, root: usize, buf: &mut [f32]) -> Result<(), DistError> {
        self.broadcast(root, buf)
    }
    fn broadcast_f64(&self, root: usize, buf: &mut [f64]) -> Result<(), DistError> {
        self.broadcast(root, buf)
    }
    fn reduce_scatter_sum_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), DistError> {
        self.reduce_scatter(send, recv)
    }
    fn reduce_scatter_sum_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), DistError> {
        self.reduce_scatter(send, recv)
    }
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), DistError> {
        self.gather_all(send, recv)
    }
    fn all_gather_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), DistError> {
        self.gather_all(send, recv)
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>, DistError> {
        let mine = &framed(mine);
        let n = count(mine.len())?;
        let _g = serialized();
        let mut counts = vec![0 as Count; self.size];
        self.world.all_gather_into(&n, &mut counts[..]);
        let displs = displacements(&counts);
        let total = counts.iter().map(|&c| c as usize).sum();
        let mut buf = vec![0u8; total];
        {
            let mut partition = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
            self.world.all_gather_varcount_into(mine, &mut partition);
        }
        Ok(split(&buf, &counts))
    }
    fn gather_bytes(&self, root: usize, mine: &[u8]) -> Result<Option<Vec<Vec<u8>>>, DistError> {
        let mine = &framed(mine);
        let n = count(mine.len())?;
        let root_process = self.root(root)?;
        let _g = serialized();
        if self.rank == root {
            let mut counts = vec![0 as Count; self.size];
            root_process.gather_into_root(&n, &mut counts[..]);
            let displs = displacements(&counts);
            let total: usize = counts.iter().map(|&c| c as usize).sum();
            let mut buf = vec![0u8; total];
            {
                let mut partition = PartitionMut::new(&mut buf[..], &counts[..], &displs[..]);
                root_process.gather_varcount_into_root(mine, &mut partition);
            }
            Ok(Some(split(&buf, &counts)))
        } else {
            root_process.gather_into(&n);
            root_process.gather_varcount_into(mine);
            Ok(None)
        }
    }
}

/// `mine` behind one leading byte. An empty `&[u8]` points at address 1, which Open MPI
/// reads as `MPI_IN_PLACE`; a message is therefore never empty.
fn framed(mine: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mine.len() + 1);
    out.push(0);
    out.extend_from_slice(mine);
    out
}

/// The messages of a gather, each without its leading byte.
fn split(buf: &[u8], counts: &[Count]) -> Vec<Vec<u8>> {
    let mut at = 0;
    counts
        .iter()
        .map(|&c| {
            let c = c as usize;
            let part = buf.get(at + 1..at + c).unwrap_or_default().to_vec();
            at += c;
            part
        })
        .collect()
}
