//! Whole-simulation throughput: deliveries per second (one server receiving and judging one
//! PDU) of a simulated federation, on 1 and 2 threads, with signatures modelled as a cost knob
//! and with real ed25519 verification. The scenario is embedded: one busy room shared by 30
//! servers (so most work is deliveries, not event creation), a partition that heals. The
//! `account_keys` group runs the same room with MSC4243 account keys on and off.

/// The allocator the `roomsim` binary uses (see its `main.rs`), so that the figures are the CLI's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::LogWriter;
use std::time::Duration;

fn scenario(signatures: &str) -> String {
    scenario_of(signatures, "12")
}

fn scenario_of(signatures: &str, version: &str) -> String {
    format!(
        r#"
[scenario]
name = "bench"
end = "120s"

[defaults]
signatures = "{signatures}"
signature_cost = "0us"
users = 2

[[servers]]
prefix = "hs"
count = 30

[[rooms]]
name = "main"
version = "{version}"
creator = "@u0:hs1"
members = ["*"]

[network]
latency = {{ dist = "lognormal", median = "50ms", sigma = 0.5 }}
min_latency = "10ms"

[[faults]]
at = "40s"
kind = "partition"
groups = [["hs1", "hs2", "hs3", "hs4", "hs5", "hs6", "hs7", "hs8", "hs9", "hs10"]]
duration = "20s"

[[workload]]
room = "main"
users = "*"
start = "5s"
stop = "110s"
messages_per_minute = 4
state_changes_per_hour = 10
"#
    )
}

/// Runs the scenario once; returns the number of deliveries.
fn run_once(text: &str) -> u64 {
    let sc = parse_scenario("bench.toml", text, &[]).expect("bench scenario");
    let mut world = roomsim_engine::metrics::instrumented_world(&sc, 1, LogWriter::sink());
    world.run();
    let r = world.finish(false).expect("finish");
    r.summary["deliveries"].as_u64().unwrap_or(0)
}

fn simulation(c: &mut Criterion) {
    let mut g = c.benchmark_group("simulation");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    for signatures in ["modelled", "real"] {
        let text = scenario(signatures);
        let deliveries = run_once(&text);
        eprintln!("[setup] {signatures}: {deliveries} deliveries per run");
        g.throughput(Throughput::Elements(deliveries));
        for threads in [1usize, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            g.bench_function(format!("{signatures}_signatures_{threads}_threads"), |b| {
                b.iter(|| pool.install(|| run_once(&text)))
            });
        }
    }
    g.finish();
}

/// MSC4243 account keys on vs off: the same room as room version 12 and as
/// `org.matrix.msc4243.12` (account keys sign, every server queries `/query/accounts` for the
/// 29 other domains' keys and keeps a mapping cache). Account-key rooms always verify real
/// ed25519 signatures (the key is the user ID), so both sides verify real signatures.
fn account_keys(c: &mut Criterion) {
    let mut g = c.benchmark_group("account_keys");
    g.sample_size(10).measurement_time(Duration::from_secs(15));
    for (label, version) in [("off_v12", "12"), ("on_msc4243", "org.matrix.msc4243.12")] {
        let text = scenario_of("real", version);
        let deliveries = run_once(&text);
        eprintln!("[setup] {label}: {deliveries} deliveries per run");
        g.throughput(Throughput::Elements(deliveries));
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("pool");
        g.bench_function(format!("{label}_1_thread"), |b| b.iter(|| pool.install(|| run_once(&text))));
    }
    g.finish();
}

criterion_group!(benches, simulation, account_keys);
criterion_main!(benches);
