//! [`LocalComm`]: ranks as threads of one process, for tests and for trying data-parallel
//! training without MPI.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::{Communicator, DistError};

/// A communicator whose ranks are threads of one process, exchanging through shared
/// memory. It behaves like MPI where tempo-dist relies on it: collectives block until
/// every rank has called them, reductions sum in rank order, and a rank that leaves
/// (drops its communicator, for instance because its thread ended or panicked) makes
/// every pending and later collective of the others fail with
/// [`DistError::RankLost`] instead of waiting forever.
///
/// ```
/// use tempo_dist::{Communicator, LocalComm};
///
/// let sums = LocalComm::run(3, |comm| {
///     let mine = [comm.rank() as f64, 1.0];
///     let mut sum = [0.0; 2];
///     comm.all_reduce_sum_f64(&mine, &mut sum).map(|()| sum)
/// });
/// for s in sums {
///     assert_eq!(s?, [3.0, 3.0]);
/// }
/// # Ok::<(), tempo_dist::DistError>(())
/// ```
#[derive(Debug)]
pub struct LocalComm {
    rank: usize,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    size: usize,
    round: Mutex<Round>,
    wake: Condvar,
}

#[derive(Debug)]
struct Round {
    /// Completed rounds so far.
    generation: u64,
    /// This round's contributions.
    slots: Vec<Option<Vec<u8>>>,
    /// The last completed round's contributions, in rank order.
    result: Arc<Vec<Vec<u8>>>,
    /// Ranks that have left.
    left: Vec<bool>,
    /// The rank that left first (the cause; later ones usually left because of it).
    first_left: Option<usize>,
}

impl LocalComm {
    /// The communicators of a group of `size` ranks (give one to each thread).
    pub fn group(size: usize) -> Vec<LocalComm> {
        let shared = Arc::new(Shared {
            size,
            round: Mutex::new(Round {
                generation: 0,
                slots: vec![None; size],
                result: Arc::new(Vec::new()),
                left: vec![false; size],
                first_left: None,
            }),
            wake: Condvar::new(),
        });
        (0..size)
            .map(|rank| LocalComm {
                rank,
                shared: Arc::clone(&shared),
            })
            .collect()
    }

    /// Runs `f` on `size` threads, one rank each, and returns their results in rank order.
    /// A rank whose `f` panics leaves the group (the others' collectives fail), and its
    /// panic is resumed here once every thread has ended.
    pub fn run<R: Send>(size: usize, f: impl Fn(LocalComm) -> R + Sync) -> Vec<R> {
        let f = &f;
        std::thread::scope(|s| {
            let handles: Vec<_> = LocalComm::group(size)
                .into_iter()
                .map(|comm| s.spawn(move || f(comm)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        // A rank that panicked while holding the lock leaves consistent data behind (every
        // update is a single assignment), so a poisoned lock is still usable.
        self.shared
            .round
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The one primitive: every rank contributes bytes, every rank gets all of them.
    fn exchange(
        &self,
        mine: Vec<u8>,
        during: &'static str,
    ) -> Result<Arc<Vec<Vec<u8>>>, DistError> {
        let mut round = self.lock();
        let lost = |round: &Round| {
            (0..self.shared.size)
                .any(|r| round.left[r] && round.slots[r].is_none())
                .then(|| round.first_left.unwrap_or(0))
        };
        if let Some(rank) = lost(&round) {
            return Err(DistError::RankLost { rank, during });
        }
        round.slots[self.rank] = Some(mine);
        if round.slots.iter().all(Option::is_some) {
            let all: Vec<Vec<u8>> = round
                .slots
                .iter_mut()
                .map(|s| s.take().unwrap_or_default())
                .collect();
            round.result = Arc::new(all);
            round.generation += 1;
            self.shared.wake.notify_all();
            return Ok(Arc::clone(&round.result));
        }
        let generation = round.generation;
        loop {
            round = self
                .shared
                .wake
                .wait(round)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if round.generation != generation {
                return Ok(Arc::clone(&round.result));
            }
            if let Some(rank) = lost(&round) {
                // Withdraw, so the round cannot complete with a stale contribution.
                round.slots[self.rank] = None;
                return Err(DistError::RankLost { rank, during });
            }
        }
    }

    /// [`exchange`](Self::exchange) of `send`'s elements, `N` bytes each.
    fn exchange_values<const N: usize, X: Copy>(
        &self,
        send: &[X],
        to_bytes: fn(X) -> [u8; N],
        during: &'static str,
    ) -> Result<Arc<Vec<Vec<u8>>>, DistError> {
        self.exchange(send.iter().flat_map(|&x| to_bytes(x)).collect(), during)
    }

    fn reduce<const N: usize, X: Copy>(
        &self,
        send: &[X],
        recv: &mut [X],
        to_bytes: fn(X) -> [u8; N],
        from_bytes: fn([u8; N]) -> X,
        add: fn(X, X) -> X,
        during: &'static str,
    ) -> Result<(), DistError> {
        check_len(send.len(), recv.len())?;
        let all = self.exchange_values(send, to_bytes, during)?;
        for (rank, bytes) in all.iter().enumerate() {
            check_len(bytes.len(), N * recv.len())?;
            accumulate(recv, rank, bytes, from_bytes, add);
        }
        Ok(())
    }

    /// Rank `r` gets the sum, in rank order, of every rank's block `r` of `send`.
    fn reduce_scatter<const N: usize, X: Copy>(
        &self,
        send: &[X],
        recv: &mut [X],
        to_bytes: fn(X) -> [u8; N],
        from_bytes: fn([u8; N]) -> X,
        add: fn(X, X) -> X,
    ) -> Result<(), DistError> {
        check_len(send.len(), recv.len() * self.shared.size)?;
        let all = self.exchange_values(send, to_bytes, "a reduce-scatter")?;
        let block = N * recv.len();
        for (rank, bytes) in all.iter().enumerate() {
            check_len(bytes.len(), block * self.shared.size)?;
            let ours = &bytes[self.rank * block..(self.rank + 1) * block];
            accumulate(recv, rank, ours, from_bytes, add);
        }
        Ok(())
    }

    /// Every rank's `send`, in rank order, into `recv`.
    fn gather_all<const N: usize, X: Copy>(
        &self,
        send: &[X],
        recv: &mut [X],
        to_bytes: fn(X) -> [u8; N],
        from_bytes: fn([u8; N]) -> X,
    ) -> Result<(), DistError> {
        check_len(recv.len(), send.len() * self.shared.size)?;
        let all = self.exchange_values(send, to_bytes, "an all-gather")?;
        for (bytes, block) in all.iter().zip(recv.chunks_mut(send.len().max(1))) {
            check_len(bytes.len(), N * send.len())?;
            for (slot, chunk) in block.iter_mut().zip(bytes.chunks_exact(N)) {
                let mut b = [0u8; N];
                b.copy_from_slice(chunk);
                *slot = from_bytes(b);
            }
        }
        Ok(())
    }

    fn bcast<const N: usize, X: Copy>(
        &self,
        root: usize,
        buf: &mut [X],
        to_bytes: fn(X) -> [u8; N],
        from_bytes: fn([u8; N]) -> X,
    ) -> Result<(), DistError> {
        self.check_root(root)?;
        let mine = if self.rank == root {
            buf.iter().flat_map(|&x| to_bytes(x)).collect()
        } else {
            Vec::new()
        };
        let all = self.exchange(mine, "a broadcast")?;
        if self.rank != root {
            check_len(all[root].len(), N * buf.len())?;
            for (slot, chunk) in buf.iter_mut().zip(all[root].chunks_exact(N)) {
                let mut b = [0u8; N];
                b.copy_from_slice(chunk);
                *slot = from_bytes(b);
            }
        }
        Ok(())
    }

    fn check_root(&self, root: usize) -> Result<(), DistError> {
        if root >= self.shared.size {
            return Err(DistError::InvalidArgument {
                what: "root rank",
                expected: format!("a rank below {}", self.shared.size),
                found: root.to_string(),
            });
        }
        Ok(())
    }
}

/// Adds rank `rank`'s elements (`bytes`, `N` bytes each) into `recv`, in rank order: rank
/// 0's are copied, every later rank's added.
fn accumulate<const N: usize, X: Copy>(
    recv: &mut [X],
    rank: usize,
    bytes: &[u8],
    from_bytes: fn([u8; N]) -> X,
    add: fn(X, X) -> X,
) {
    for (slot, chunk) in recv.iter_mut().zip(bytes.chunks_exact(N)) {
        let mut b = [0u8; N];
        b.copy_from_slice(chunk);
        let x = from_bytes(b);
        *slot = if rank == 0 { x } else { add(*slot, x) };
    }
}

fn check_len(got: usize, expected: usize) -> Result<(), DistError> {
    if got != expected {
        return Err(DistError::InvalidArgument {
            what: "buffer length",
            expected: expected.to_string(),
            found: got.to_string(),
        });
    }
    Ok(())
}

impl Drop for LocalComm {
    fn drop(&mut self) {
        let mut round = self.lock();
        round.left[self.rank] = true;
        round.first_left.get_or_insert(self.rank);
        self.shared.wake.notify_all();
    }
}

impl Communicator for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_reduce_sum_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), DistError> {
        self.reduce(
            send,
            recv,
            f32::to_le_bytes,
            f32::from_le_bytes,
            |a, b| a + b,
            "an all-reduce",
        )
    }
    fn all_reduce_sum_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), DistError> {
        self.reduce(
            send,
            recv,
            f64::to_le_bytes,
            f64::from_le_bytes,
            |a, b| a + b,
            "an all-reduce",
        )
    }
    fn all_reduce_sum_u64(&self, send: &[u64], recv: &mut [u64]) -> Result<(), DistError> {
        self.reduce(
            send,
            recv,
            u64::to_le_bytes,
            u64::from_le_bytes,
            u64::wrapping_add,
            "an all-reduce",
        )
    }
    fn broadcast_f32(&self, root: usize, buf: &mut [f32]) -> Result<(), DistError> {
        self.bcast(root, buf, f32::to_le_bytes, f32::from_le_bytes)
    }
    fn broadcast_f64(&self, root: usize, buf: &mut [f64]) -> Result<(), DistError> {
        self.bcast(root, buf, f64::to_le_bytes, f64::from_le_bytes)
    }
    fn reduce_scatter_sum_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), DistError> {
        self.reduce_scatter(send, recv, f32::to_le_bytes, f32::from_le_bytes, |a, b| {
            a + b
        })
    }
    fn reduce_scatter_sum_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), DistError> {
        self.reduce_scatter(send, recv, f64::to_le_bytes, f64::from_le_bytes, |a, b| {
            a + b
        })
    }
    fn all_gather_f32(&self, send: &[f32], recv: &mut [f32]) -> Result<(), DistError> {
        self.gather_all(send, recv, f32::to_le_bytes, f32::from_le_bytes)
    }
    fn all_gather_f64(&self, send: &[f64], recv: &mut [f64]) -> Result<(), DistError> {
        self.gather_all(send, recv, f64::to_le_bytes, f64::from_le_bytes)
    }
    fn all_gather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>, DistError> {
        Ok(self
            .exchange(mine.to_vec(), "an all-gather")?
            .as_ref()
            .clone())
    }
    fn gather_bytes(&self, root: usize, mine: &[u8]) -> Result<Option<Vec<Vec<u8>>>, DistError> {
        self.check_root(root)?;
        let all = self.exchange(mine.to_vec(), "a gather")?;
        Ok((self.rank == root).then(|| all.as_ref().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collectives_agree_across_ranks() {
        let out = LocalComm::run(3, |comm| -> Result<_, DistError> {
            let r = comm.rank();
            let mut sum = [0u64; 2];
            comm.all_reduce_sum_u64(&[r as u64, 10], &mut sum)?;
            let mut b = [r as f32; 3];
            comm.broadcast_f32(2, &mut b)?;
            let gathered = comm.gather_bytes(1, &[r as u8; 2][..r])?;
            let all = comm.all_gather_bytes(&[r as u8])?;
            Ok((sum, b, gathered, all))
        });
        for (rank, o) in out.into_iter().enumerate() {
            let (sum, b, gathered, all) = o.unwrap();
            assert_eq!(sum, [3, 30]);
            assert!(b.iter().all(|&x| x.to_bits() == 2.0f32.to_bits()));
            assert_eq!(gathered.is_some(), rank == 1);
            if let Some(g) = gathered {
                assert_eq!(g, vec![vec![], vec![1], vec![2, 2]]);
            }
            assert_eq!(all, vec![vec![0], vec![1], vec![2]]);
        }
    }

    #[test]
    fn reduce_scatter_and_all_gather_move_blocks() {
        let out = LocalComm::run(3, |comm| -> Result<_, DistError> {
            let r = comm.rank() as f64;
            // Block b of rank r holds 10 * b + r.
            let send: Vec<f64> = (0..3)
                .flat_map(|b| [10.0 * b as f64 + r, 100.0 + r])
                .collect();
            let mut mine = [0.0; 2];
            comm.reduce_scatter_sum_f64(&send, &mut mine)?;
            let mut all = [0.0f32; 6];
            comm.all_gather_f32(&[r as f32, -(r as f32)], &mut all)?;
            Ok((mine, all))
        });
        for (rank, o) in out.into_iter().enumerate() {
            let (mine, all) = o.unwrap();
            let want = [30.0 * rank as f64 + 3.0, 303.0];
            assert_eq!(mine.map(f64::to_bits), want.map(f64::to_bits));
            let want = [0.0f32, -0.0, 1.0, -1.0, 2.0, -2.0];
            assert_eq!(all.map(f32::to_bits), want.map(f32::to_bits));
        }
    }

    #[test]
    fn a_rank_that_leaves_fails_the_others_instead_of_hanging() {
        let out = LocalComm::run(3, |comm| {
            if comm.rank() == 1 {
                return Ok(());
            }
            let mut x = [0.0f64];
            comm.all_reduce_sum_f64(&[1.0], &mut x)
        });
        assert!(matches!(out[1], Ok(())));
        for r in [0, 2] {
            assert!(
                matches!(out[r], Err(DistError::RankLost { rank: 1, .. })),
                "rank {r}: {:?}",
                out[r]
            );
        }
    }

    #[test]
    fn mismatched_buffer_lengths_are_errors() {
        let out = LocalComm::run(2, |comm| {
            let n = 2 + comm.rank();
            let mut x = vec![0.0f32; n];
            comm.all_reduce_sum_f32(&vec![1.0; n], &mut x)
        });
        assert!(out
            .iter()
            .all(|o| matches!(o, Err(DistError::InvalidArgument { .. }))));
    }
}
