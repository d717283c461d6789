//! tempo's benchmarks.
fn main() {}
