//! The same checks on MPI: `examples/dist-check.rs` under `mpirun` (only with the `mpi`
//! feature; CI runs them).
