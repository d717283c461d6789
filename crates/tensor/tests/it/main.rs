//! tempo-tensor integration tests: gradient checks for every differentiable op,
//! autograd behaviour, shape errors and the random generator.

mod autograd;
mod gradcheck;
mod rng;
