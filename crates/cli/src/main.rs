//! The `tempo` command line.
fn main() {
    println!("tempo");
}
