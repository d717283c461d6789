//! Benchmarks live in `main.rs`.
