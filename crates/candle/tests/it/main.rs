//! tempo-candle's integration tests: stepping candle variables (in place and through
//! host copies) against tempo's tensors, param groups by name, errors, PyTorch's
//! training traces with candle-nn models, exact resume and checkpoints.

mod resume;
mod step;
mod training;
