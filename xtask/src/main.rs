//! tempo's automation tasks.
fn main() {}
