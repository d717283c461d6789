//! The communicator seam: the few collectives data-parallel training needs.

use tempo_tensor::Float;

use crate::DistError;

/// A group of `size` ranks that run the same program and call the same collectives in
/// the same order. Every method is a collective: every rank calls it, with buffers of
/// the same length (except the byte gathers, whose lengths may differ).
///
/// The production implementation is MPI (`MpiComm`, behind the `mpi` feature);
/// [`LocalComm`](crate::LocalComm) runs the ranks as threads of one process.
pub trait Communicator: Send {
    /// This rank, in `0..size()`.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn size(&self) -> usize;
    /// `recv[i] = sum over ranks of send[i]`, on every rank.
    fn all_reduce_sum_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), DistError>;
    /// `recv[i] = sum over ranks of send[i]`, on every rank.
    fn all_reduce_sum_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), DistError>;
    /// `recv[i] = sum over ranks of send[i]`, on every rank.
    fn all_reduce_sum_u64(&self, send: &[u64], recv: &mut [u64]) -> Result<(), DistError>;
    /// Copies `root`'s `buf` into every other rank's `buf`.
    fn broadcast_f32(&self, root: usize, buf: &mut [f32]) -> Result<(), DistError>;
    /// Copies `root`'s `buf` into every other rank's `buf`.
    fn broadcast_f64(&self, root: usize, buf: &mut [f64]) -> Result<(), DistError>;
    /// Reduce-scatter: `send` holds `size()` equal blocks of `recv.len()` elements, and
    /// rank `r` receives the sum over ranks of block `r`.
    fn reduce_scatter_sum_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), DistError>;
    /// Reduce-scatter: `send` holds `size()` equal blocks of `recv.len()` elements, and
    /// rank `r` receives the sum over ranks of block `r`.
    fn reduce_scatter_sum_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), DistError>;
    /// All-gather: `recv` holds `size()` blocks of `send.len()` elements, block `r` being
    /// rank `r`'s `send`, on every rank.
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), DistError>;
    /// All-gather: `recv` holds `size()` blocks of `send.len()` elements, block `r` being
    /// rank `r`'s `send`, on every rank.
    fn all_gather_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), DistError>;
    /// Every rank's `mine`, in rank order, on every rank.
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>, DistError>;
    /// Every rank's `mine`, in rank order, on `root` (`None` elsewhere).
    fn gather_bytes(&self, root: usize, mine: &[u8]) -> Result<Option<Vec<Vec<u8>>>, DistError>;
}

/// The element types tempo-dist moves: f32 and f64, dispatched to the communicator's
/// typed collectives.
pub trait DistFloat: Float {
    /// `recv = sum over ranks of send`.
    fn all_reduce_sum(
        comm: &dyn Communicator,
        send: &[Self],
        recv: &mut [Self],
    ) -> Result<(), DistError>;
    /// `buf = root's buf`.
    fn broadcast(comm: &dyn Communicator, root: usize, buf: &mut [Self]) -> Result<(), DistError>;
    /// `recv = sum over ranks of this rank's block of send`.
    fn reduce_scatter_sum(
        comm: &dyn Communicator,
        send: &[Self],
        recv: &mut [Self],
    ) -> Result<(), DistError>;
    /// `recv = every rank's send, in rank order`.
    fn all_gather(
        comm: &dyn Communicator,
        send: &[Self],
        recv: &mut [Self],
    ) -> Result<(), DistError>;
}

impl DistFloat for f32 {
    fn all_reduce_sum(
        comm: &dyn Communicator,
        send: &[f32],
        recv: &mut [f32],
    ) -> Result<(), DistError> {
        comm.all_reduce_sum_f32(send, recv)
    }
    fn broadcast(comm: &dyn Communicator, root: usize, buf: &mut [f32]) -> Result<(), DistError> {
        comm.broadcast_f32(root, buf)
    }
    fn reduce_scatter_sum(
        comm: &dyn Communicator,
        send: &[f32],
        recv: &mut [f32],
    ) -> Result<(), DistError> {
        comm.reduce_scatter_sum_f32(send, recv)
    }
    fn all_gather(
        comm: &dyn Communicator,
        send: &[f32],
        recv: &mut [f32],
    ) -> Result<(), DistError> {
        comm.all_gather_f32(send, recv)
    }
}

impl DistFloat for f64 {
    fn all_reduce_sum(
        comm: &dyn Communicator,
        send: &[f64],
        recv: &mut [f64],
    ) -> Result<(), DistError> {
        comm.all_reduce_sum_f64(send, recv)
    }
    fn broadcast(comm: &dyn Communicator, root: usize, buf: &mut [f64]) -> Result<(), DistError> {
        comm.broadcast_f64(root, buf)
    }
    fn reduce_scatter_sum(
        comm: &dyn Communicator,
        send: &[f64],
        recv: &mut [f64],
    ) -> Result<(), DistError> {
        comm.reduce_scatter_sum_f64(send, recv)
    }
    fn all_gather(
        comm: &dyn Communicator,
        send: &[f64],
        recv: &mut [f64],
    ) -> Result<(), DistError> {
        comm.all_gather_f64(send, recv)
    }
}

/// Ends a fallible local operation collectively: every rank learns whether any rank
/// failed, and if one did, every rank returns an error (the failing rank its own, the
/// others [`DistError::PeerFailed`] naming the first failing rank and its message).
pub fn agree<R>(
    comm: &dyn Communicator,
    during: &str,
    local: Result<R, DistError>,
) -> Result<R, DistError> {
    let message = match &local {
        Ok(_) => Vec::new(),
        Err(e) => {
            let mut m = e.to_string().into_bytes();
            // A non-empty message marks failure even when the error prints as nothing.
            m.insert(0, b'!');
            m
        }
    };
    let all = comm.all_gather_bytes(&message)?;
    let Some((rank, m)) = all.iter().enumerate().find(|(_, m)| !m.is_empty()) else {
        return local;
    };
    match local {
        Err(e) => Err(e),
        Ok(_) => Err(DistError::PeerFailed {
            rank,
            during: during.to_string(),
            message: String::from_utf8_lossy(&m[1..]).into_owned(),
        }),
    }
}

/// Checks that every rank holds the same `lines` (a description of something all ranks
/// must share); on a difference every rank returns the same
/// [`DistError::RankMismatch`], naming the first disagreeing rank and line.
pub fn check_same(comm: &dyn Communicator, what: &str, lines: &[String]) -> Result<(), DistError> {
    let mine = lines.join("\n").into_bytes();
    let all = comm.all_gather_bytes(&mine)?;
    let reference: Vec<&str> = std::str::from_utf8(&all[0])
        .unwrap_or("")
        .split('\n')
        .collect();
    for (rank, bytes) in all.iter().enumerate().skip(1) {
        if bytes == &all[0] {
            continue;
        }
        let theirs: Vec<&str> = std::str::from_utf8(bytes)
            .unwrap_or("")
            .split('\n')
            .collect();
        let n = reference.len().max(theirs.len());
        for i in 0..n {
            let (a, b) = (reference.get(i), theirs.get(i));
            if a != b {
                return Err(DistError::RankMismatch {
                    rank,
                    what: what.to_string(),
                    expected: a.map_or("nothing more".into(), |s| format!("`{s}`")),
                    found: b.map_or("nothing more".into(), |s| format!("`{s}`")),
                });
            }
        }
    }
    Ok(())
}
