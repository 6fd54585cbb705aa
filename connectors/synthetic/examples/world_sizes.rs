//! Prints the size of a generated world: `cargo run --release -p refbridge-synthetic --example world_sizes -- large 7`.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scale = refbridge_synthetic::Scale::parse(args.get(1).map_or("small", String::as_str))
        .expect("small|medium|large");
    let seed = args.get(2).map_or(7, |s| s.parse().expect("seed"));
    let as_of = chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
    let started = std::time::Instant::now();
    let world =
        refbridge_synthetic::generate(refbridge_synthetic::WorldSpec { seed, scale, as_of });
    let outbound = world
        .referrals
        .iter()
        .filter(|r| r.direction == refbridge_synthetic::Direction::Out)
        .count();
    println!(
        "scale {} seed {seed}: {} reps, {} partners, {} contacts, {} referrals ({outbound} outbound), {} activities in {:.1?}",
        scale.as_str(),
        world.reps.len(),
        world.partners.len(),
        world.contacts.len(),
        world.referrals.len(),
        world.activities.len(),
        started.elapsed()
    );
}
