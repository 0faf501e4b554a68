//! Builds and runs a scenario with many servers and few rooms: N servers (default 10 000), 100
//! rooms, each room with a handful of member servers spread over the whole range and a few
//! messages per member. Prints the size of the run and the wall time of each phase, so that
//! what grows with the number of servers (rather than with the work) shows.
//!
//! ```text
//! cargo build --release -p roomsim-benches --example many_servers
//! /usr/bin/time -f "%es %MKB" target/release/examples/many_servers [SERVERS]
//!     [--rooms N] [--members N] [--seed N] [--threads N] [--metrics-interval DURATION]
//! ```

/// The allocator the `roomsim` binary uses (see its `main.rs`), so that the figures are the CLI's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::LogWriter;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

struct Params {
    servers: usize,
    rooms: usize,
    members: usize,
    seed: u64,
    threads: usize,
    /// `[metrics] interval`, if given (the world samples every server at each tick).
    metrics_interval: Option<String>,
}

/// The scenario text: servers `hs1..=hsN` with one user each; room `r{i}` is created by the
/// first of its member servers and joined by the others; every member sends about two messages.
fn scenario_text(p: &Params) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"[scenario]
name = "many_servers"
end = "quiescence"
max_time = "5m"
quiet_period = "5s"

[defaults]
signatures = "modelled"
users = 1

[[servers]]
prefix = "hs"
count = {}
"#,
        p.servers
    );
    if let Some(interval) = &p.metrics_interval {
        let _ = write!(s, "\n[metrics]\ninterval = \"{interval}\"\n");
    }
    // Member servers of all rooms, spread evenly over 1..=N (distinct within a room).
    let slots = p.rooms * p.members;
    let step = (p.servers / slots).max(1);
    for r in 0..p.rooms {
        let users: Vec<String> =
            (0..p.members).map(|j| format!("\"@u0:hs{}\"", 1 + ((r * p.members + j) * step) % p.servers)).collect();
        let _ = write!(
            s,
            r#"
[[rooms]]
name = "r{r}"
version = "{version}"
creator = {creator}
members = [{members}]

[[workload]]
room = "r{r}"
users = [{all}]
start = "10s"
stop = "70s"
messages_per_minute = 2
"#,
            version = if r % 2 == 0 { 11 } else { 12 },
            creator = users[0],
            members = users[1..].join(", "),
            all = users.join(", "),
        );
    }
    s
}

fn parse_args() -> Result<Params, String> {
    let mut p = Params { servers: 10_000, rooms: 100, members: 5, seed: 1, threads: 0, metrics_interval: None };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let flag = args[i].as_str();
        if !flag.starts_with("--") {
            p.servers = flag.parse().map_err(|_| format!("bad server count {flag:?}"))?;
            i += 1;
            continue;
        }
        let value = args.get(i + 1).ok_or(format!("{flag}: missing value"))?;
        let bad = || format!("{flag}: bad value {value:?}");
        match flag {
            "--rooms" => p.rooms = value.parse().map_err(|_| bad())?,
            "--members" => p.members = value.parse().map_err(|_| bad())?,
            "--seed" => p.seed = value.parse().map_err(|_| bad())?,
            "--threads" => p.threads = value.parse().map_err(|_| bad())?,
            "--metrics-interval" => p.metrics_interval = Some(value.clone()),
            _ => return Err(format!("unknown flag {flag}")),
        }
        i += 2;
    }
    if p.members < 1 || p.members > p.servers || p.rooms < 1 {
        return Err("need 1 ≤ members ≤ servers and at least one room".into());
    }
    Ok(p)
}

fn main() -> ExitCode {
    let p = match parse_args() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}\nusage: many_servers [SERVERS] [--rooms N] [--members N] [--seed N] [--threads N] [--metrics-interval DURATION]");
            return ExitCode::from(2);
        }
    };
    let t = Instant::now();
    let text = scenario_text(&p);
    let sc = match parse_scenario("many_servers.toml", &text, &[]) {
        Ok(sc) => sc,
        Err(e) => {
            eprintln!("scenario rejected: {e}");
            return ExitCode::FAILURE;
        }
    };
    let parsed = t.elapsed();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(p.threads).build().expect("thread pool");
    let (built, ran, finished, result) = pool.install(|| {
        let t = Instant::now();
        let mut world = instrumented_world(&sc, p.seed, LogWriter::sink());
        let built = t.elapsed();
        let t = Instant::now();
        world.run();
        let ran = t.elapsed();
        let t = Instant::now();
        let result = world.finish(false);
        (built, ran, t.elapsed(), result)
    });
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("finish failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let s = &result.summary;
    println!(
        "servers {} rooms {} events {} deliveries {} sim_time {} ms",
        s["servers"], p.rooms, s["events_created"], s["deliveries"], s["sim_time_end_ms"]
    );
    println!(
        "wall: parse {:.2}s, World::new {:.2}s, run {:.2}s, finish {:.2}s",
        parsed.as_secs_f64(),
        built.as_secs_f64(),
        ran.as_secs_f64(),
        finished.as_secs_f64()
    );
    ExitCode::SUCCESS
}
