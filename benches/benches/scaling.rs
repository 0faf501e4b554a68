//! How `dag verify` cost grows with DAG size (1k, 10k, 50k events) and the number of servers
//! (3, 50, 500), on DAGs from roomsim's own generator (`roomsim_benches::generator`), plus the
//! Matrix-HQ-sized room (100k members). Generation is kept out of the timing: DAGs are written
//! once to `target/roomsim-bench-dags/` and reused by later runs.
//!
//! Set `ROOMSIM_BENCH_LARGE_STATE=0` to skip the 100k-state room.

/// The allocator the `roomsim` binary uses (see its `main.rs`), so that the figures are the CLI's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use roomsim_benches::fixtures::{self, Fixture};
use roomsim_benches::generator::{self, GenParams, LargeStateParams};
use roomsim_benches::prepared::Prepared;
use roomsim_engine::protocol::verify::{verify_dag, VerifyOptions};
use std::time::Duration;

fn load_generated(events: usize, servers: usize) -> Fixture {
    let name = format!("gen-v11-e{events}-s{servers}-seed1");
    let (jsonl, keys) = generator::cached(&fixtures::cache_dir(), &name, || {
        eprintln!("[setup] generating {name} (cached for later runs)");
        generator::generate(&GenParams::new(events, servers))
    })
    .expect("writing the generated DAG");
    fixtures::load_files(&name, &jsonl, &keys)
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool")
}

fn scaling(c: &mut Criterion) {
    let one = pool(1);
    let two = pool(2);
    let mut g = c.benchmark_group("scaling_verify_dag");
    g.sample_size(10);
    for events in [1_000usize, 10_000, 50_000] {
        for servers in [3usize, 50, 500] {
            let fx = load_generated(events, servers);
            g.throughput(Throughput::Elements(events as u64));
            let id = BenchmarkId::new("no_keys_1_thread", format!("e{events}-s{servers}"));
            g.bench_function(id, |b| {
                b.iter_batched(
                    || fx.pdus.clone(),
                    |pdus| one.install(|| verify_dag(fx.version, pdus, &VerifyOptions::default())),
                    BatchSize::LargeInput,
                )
            });
            if events == 50_000 && servers == 50 {
                let opts = VerifyOptions { keys: Some(fx.keys.clone()), ..Default::default() };
                let id = BenchmarkId::new("keys_2_threads", format!("e{events}-s{servers}"));
                g.bench_function(id, |b| {
                    b.iter_batched(
                        || fx.pdus.clone(),
                        |pdus| two.install(|| verify_dag(fx.version, pdus, &opts)),
                        BatchSize::LargeInput,
                    )
                });
            }
        }
    }
    g.finish();
}

fn large_state(c: &mut Criterion) {
    if std::env::var("ROOMSIM_BENCH_LARGE_STATE").is_ok_and(|v| v == "0") {
        return;
    }
    let p = LargeStateParams::matrix_hq();
    let name = format!("gen-v11-hq-members{}-s{}", p.users, p.servers);
    let (jsonl, keys) = generator::cached(&fixtures::cache_dir(), &name, || {
        eprintln!("[setup] generating {name} (cached for later runs)");
        generator::generate_large_state(&p)
    })
    .expect("writing the generated DAG");
    let fx = fixtures::load_files(&name, &jsonl, &keys);
    // Whole `verify_dag` is not benched here: it computes a sha256 digest of the whole state
    // before every event for the report, O(events × state) — hours at this size (see
    // BENCHMARKS.md). `Prepared::new` is the same pipeline without the per-event digests.
    let mut g = c.benchmark_group("large_state_hq_100k_members");
    g.sample_size(10);
    g.throughput(Throughput::Elements(fx.pdus.len() as u64));
    g.bench_function("judge_all_without_digests_1_thread", |b| {
        b.iter_batched(|| fx.pdus.clone(), |pdus| Prepared::new(fx.version, pdus), BatchSize::LargeInput)
    });
    let prep = Prepared::new(fx.version, fx.pdus.clone());
    eprintln!(
        "[setup] {name}: {} events, {} accepted, {} merges, final state {} entries",
        prep.dag.len(),
        prep.accepted,
        prep.merges.len(),
        prep.final_state.len()
    );
    g.bench_function("auth_checks_both_stages", |b| b.iter(|| black_box(prep.auth_check_all())));
    g.throughput(Throughput::Elements(prep.merges.len() as u64));
    g.bench_function("resolve_every_merge", |b| b.iter(|| black_box(prep.resolve_all_merges())));
    g.throughput(Throughput::Elements(1));
    g.bench_function("state_digest_of_final_state", |b| b.iter(|| black_box(prep.final_digest())));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = scaling, large_state
}
criterion_main!(benches);
