//! Preview a schedule without an optimizer or a model: what `tempo plot --csv` prints.
//!
//! Run with `cargo run -p tempo --example preview_schedule`.

use tempo::sched::{build_scheduler, SimulatedGroups};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = "OneCycleLR(max_lr=0.1, total_steps=20, anneal_strategy='cos')".parse()?;
    let mut groups = SimulatedGroups::sgd(&[0.1], 0.9);
    let mut sched = build_scheduler(&spec, &mut groups)?;
    println!("step,lr,momentum");
    for step in 0..20 {
        println!(
            "{step},{},{}",
            groups.lrs()[0],
            groups.momenta()[0].unwrap_or(f64::NAN)
        );
        sched.step(&mut groups)?;
    }
    Ok(())
}
