//! `tempo-dist`: data-parallel training past one machine, on MPI.
//!
//! PyTorch users scale out with `DistributedDataParallel` and `ZeroRedundancyOptimizer`;
//! tempo's [`DistributedOptimizer`] does both for any tempo optimizer but LBFGS:
//!
//! * every rank holds the whole model and computes gradients on its share of the global
//!   batch; [`step`](DistributedOptimizer::step) combines them over flattened buckets
//!   (not one message per tensor);
//! * the optimizer state is sharded ([`ShardPlan`]), in one of two ways
//!   ([`Sharding`], in [`DistConfig`]):
//!   - whole parameters, balanced by size (the default, as PyTorch's
//!     `ZeroRedundancyOptimizer`; any optimizer but LBFGS): the gradients are
//!     all-reduced, each rank steps, and keeps state for, its own parameters, then
//!     broadcasts them; a rank keeps about `1/N` of the state, but never less than its
//!     largest parameter's;
//!   - flat ranges of elements (DeepSpeed ZeRO-1's layout; elementwise optimizers
//!     only): the flattened parameters are cut into `N` equal ranges, the gradients are
//!     reduce-scattered (each rank receives only its range's), each rank steps its range
//!     (slices of parameters included) and sends it to the others; a rank keeps `1/N` of
//!     the state, within one element, and moves two thirds of the bytes (a
//!     reduce-scatter where the other way all-reduces);
//! * schedulers are unchanged: each rank steps its own against the distributed
//!   optimizer's param groups, which stay identical on every rank;
//! * checkpoints hold the single-process state:
//!   [`consolidated_state_dict`](DistributedOptimizer::consolidated_state_dict) gathers
//!   it on one rank in PyTorch's layout and numbering, and
//!   [`load_state_dict`](DistributedOptimizer::load_state_dict) takes a state saved by
//!   any number of ranks (or one process) and keeps this rank's share;
//! * a disagreement between ranks (optimizer, param groups, shapes) or a failure on one
//!   rank is an error on every rank, never a hang.
//!
//! The ranks talk through a [`Communicator`]: `MpiComm` on MPI (the `mpi` feature;
//! run with `mpirun -np N`), or [`LocalComm`], ranks as threads of one process.
//!
//! ```
//! use ndarray::ArrayD;
//! use tempo_dist::{Communicator, DistConfig, DistributedOptimizer, LocalComm};
//! use tempo_optim::{Adam, AdamConfig};
//! use tempo_tensor::Tensor;
//!
//! // Two ranks as two threads; under MPI each rank is a process running the same code.
//! let results = LocalComm::run(2, |comm| -> Result<Vec<f64>, tempo_dist::DistError> {
//!     let rank = comm.rank();
//!     let w = Tensor::<f64>::parameter(ArrayD::from_elem(vec![3], 1.0));
//!     let b = Tensor::<f64>::parameter(ArrayD::from_elem(vec![1], 0.0));
//!     let adam = Adam::new(vec![w.clone(), b.clone()], AdamConfig::default())?;
//!     let mut opt = DistributedOptimizer::new(Box::new(adam), Box::new(comm), DistConfig::default())?;
//!     // Each rank's gradient from its half of the batch; the step averages them.
//!     w.set_grad(Some(ArrayD::from_elem(vec![3], rank as f64)))?;
//!     b.set_grad(Some(ArrayD::from_elem(vec![1], 1.0)))?;
//!     opt.step()?;
//!     assert_eq!(w.grad().as_ref().unwrap()[[0]], 0.5); // the mean of 0 and 1
//!     // One rank keeps the state of `w`, the other that of `b`.
//!     assert_eq!(opt.local_state_dict().state.len(), 1);
//!     let whole = opt.consolidated_state_dict(0)?;
//!     assert_eq!(whole.map(|s| s.state.len()), (rank == 0).then_some(2));
//!     Ok(w.to_vec())
//! });
//! let (a, b) = (results[0].as_ref().unwrap(), results[1].as_ref().unwrap());
//! assert_eq!(a, b); // every rank holds the same parameters
//! ```

#![deny(unsafe_code)]

mod comm;
mod error;
mod flat;
mod local;
#[cfg(feature = "mpi")]
mod mpi;
mod optimizer;
mod plan;
mod wire;

pub use comm::{agree, check_same, Communicator, DistFloat};
pub use error::DistError;
pub use local::LocalComm;
#[cfg(feature = "mpi")]
pub use mpi::{MpiComm, MpiRuntime};
pub use optimizer::{DistConfig, DistributedOptimizer, GradReduction, StepTimings};
pub use plan::{ShardPlan, Sharding, Slice};
