//! Protocol kernels on the 10 000-event reference fixture (`v11-e10000-s10-seed103`), one
//! thread unless the name says otherwise:
//!
//! * `canonical_json`: strict parse + canonical form + reference hash (event ID) per PDU;
//! * `ed25519`: signature verification, single, batched (1 and 2 threads), and the crate's own
//!   batch API on the whole set (the "batch limit");
//! * `auth_checks`: both receipt stages (own `auth_events`, state before), no signatures, over a
//!   pre-judged DAG;
//! * `state_res`: resolving every merge of the DAG (states after each prev event precomputed),
//!   and the final resolution of the forward extremities;
//! * `verify_dag`: the whole `dag verify` pipeline, with and without keys, on 1 and 2 threads
//!   (from parsed PDUs, and from the file's text).
//!
//! Whole-simulation throughput (deliveries/s on 1 and 2 threads) will be added by the
//! simulator's bench once the world exists; see BENCHMARKS.md.

/// The allocator the `roomsim` binary uses (see its `main.rs`), so that the figures are the CLI's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};
use roomsim_benches::fixtures::{self, Fixture, FIXTURE_10K};
use roomsim_benches::prepared::{self, Prepared};
use roomsim_engine::protocol::crypto::{self, SignatureCheck};
use roomsim_engine::protocol::ids;
use roomsim_engine::protocol::json;
use roomsim_engine::protocol::pdu::Pdu;
use roomsim_engine::protocol::verify::{self, verify_dag, VerifyOptions};
use std::sync::OnceLock;
use std::time::Duration;

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| fixtures::load(FIXTURE_10K))
}

fn prepared() -> &'static Prepared {
    static P: OnceLock<Prepared> = OnceLock::new();
    P.get_or_init(|| {
        let fx = fixture();
        let p = Prepared::new(fx.version, fx.pdus.clone());
        prepared::check_against_verify(&p, fx.pdus.clone());
        eprintln!(
            "[setup] {}: {} events, {} accepted, {} merges, {} forward extremities",
            fx.name,
            p.dag.len(),
            p.accepted,
            p.merges.len(),
            p.extremities.len()
        );
        p
    })
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("rayon pool")
}

fn canonical_json(c: &mut Criterion) {
    let fx = fixture();
    let lines = fx.lines();
    let mut g = c.benchmark_group("canonical_json");
    g.throughput(Throughput::Elements(lines.len() as u64));
    // The target's kernel: parse one line strictly, check the format, decode the typed
    // content, compute the canonical form and the reference hash (event ID).
    g.bench_function("parse_and_event_id", |b| {
        b.iter(|| {
            for l in &lines {
                black_box(Pdu::from_json_bytes(l.as_bytes(), fx.version).expect("fixture PDU"));
            }
        })
    });
    // Parts of it, from the already parsed objects.
    g.bench_function("event_id_only", |b| {
        b.iter(|| {
            for p in &fx.pdus {
                black_box(crypto::event_id(&p.json, fx.version));
            }
        })
    });
    g.bench_function("canonical_bytes_only", |b| {
        b.iter(|| {
            for p in &fx.pdus {
                black_box(json::object_to_canonical_bytes(&p.json));
            }
        })
    });
    g.bench_function("content_hash_check", |b| {
        b.iter(|| {
            for p in &fx.pdus {
                black_box(p.content_hash_matches());
            }
        })
    });
    g.finish();
}

/// The sender-server signature of every fixture PDU: (signed bytes, signature, key).
fn signature_inputs() -> Vec<(Vec<u8>, Signature, VerifyingKey)> {
    let fx = fixture();
    fx.pdus
        .iter()
        .filter_map(|p| {
            let server = ids::domain_of(&p.sender)?;
            let (key_id, key) = fx.keys.get(server)?.iter().next()?;
            let sig = crypto::signature_of(&p.json, server, key_id)?;
            Some((crypto::event_signing_bytes(&p.json, fx.version), sig, *key))
        })
        .collect()
}

fn ed25519(c: &mut Criterion) {
    let inputs = signature_inputs();
    let checks: Vec<SignatureCheck> =
        inputs.iter().map(|(m, s, k)| SignatureCheck { message: m, signature: *s, key: *k }).collect();
    let good = pool(1).install(|| crypto::verify_batch(&checks)).iter().filter(|ok| **ok).count();
    eprintln!("[setup] ed25519: {} signatures, {} verify", checks.len(), good);
    let messages: Vec<&[u8]> = inputs.iter().map(|(m, _, _)| m.as_slice()).collect();
    let sigs: Vec<Signature> = inputs.iter().map(|(_, s, _)| *s).collect();
    let keys: Vec<VerifyingKey> = inputs.iter().map(|(_, _, k)| *k).collect();
    let one = pool(1);
    let two = pool(2);

    let mut g = c.benchmark_group("ed25519");
    g.throughput(Throughput::Elements(checks.len() as u64));
    g.sample_size(10);
    g.bench_function("single", |b| {
        b.iter(|| {
            for c in &checks {
                black_box(crypto::verify(&c.key, c.message, &c.signature));
            }
        })
    });
    g.bench_function("batched_1_thread", |b| b.iter(|| one.install(|| black_box(crypto::verify_batch(&checks)))));
    g.bench_function("batched_2_threads", |b| b.iter(|| two.install(|| black_box(crypto::verify_batch(&checks)))));
    // The crate's batch limit: ed25519-dalek's batch API on all signatures at once, 1 thread.
    g.bench_function("dalek_one_batch_1_thread", |b| {
        b.iter(|| black_box(ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok()))
    });
    // The same in chunks (crypto::verify_batch uses 64 per rayon task): below ~95 signatures
    // per batch curve25519-dalek uses Straus' method, above it Pippenger's, which is cheaper
    // per point as the batch grows.
    for chunk in [64usize, 256, 1024] {
        g.bench_function(format!("dalek_chunks_of_{chunk}_1_thread"), |b| {
            b.iter(|| {
                for ((m, s), k) in messages.chunks(chunk).zip(sigs.chunks(chunk)).zip(keys.chunks(chunk)) {
                    black_box(ed25519_dalek::verify_batch(m, s, k).is_ok());
                }
            })
        });
    }
    // The 2-thread limit: one batch per thread (two halves).
    g.bench_function("dalek_two_halves_2_threads", |b| {
        let half = messages.len() / 2;
        b.iter(|| {
            two.install(|| {
                rayon::join(
                    || ed25519_dalek::verify_batch(&messages[..half], &sigs[..half], &keys[..half]).is_ok(),
                    || ed25519_dalek::verify_batch(&messages[half..], &sigs[half..], &keys[half..]).is_ok(),
                )
            })
        })
    });
    g.finish();
}

fn auth_checks(c: &mut Criterion) {
    let p = prepared();
    let mut g = c.benchmark_group("auth_checks");
    g.throughput(Throughput::Elements(p.dag.len() as u64));
    g.bench_function("both_stages_no_signatures", |b| b.iter(|| black_box(p.auth_check_all())));
    g.finish();
}

fn state_res(c: &mut Criterion) {
    let p = prepared();
    let mut g = c.benchmark_group("state_res");
    g.throughput(Throughput::Elements(p.merges.len() as u64));
    g.bench_function("every_merge", |b| b.iter(|| black_box(p.resolve_all_merges())));
    g.throughput(Throughput::Elements(1));
    g.bench_function("final_extremities", |b| b.iter(|| black_box(p.resolve_final())));
    g.finish();
}

fn whole_verify(c: &mut Criterion) {
    let fx = fixture();
    let with_keys = VerifyOptions { keys: Some(fx.keys.clone()), ..Default::default() };
    let without = VerifyOptions::default();
    let pools = [(1, pool(1)), (2, pool(2))];
    let mut g = c.benchmark_group("verify_dag");
    g.throughput(Throughput::Elements(fx.pdus.len() as u64));
    g.sample_size(10);
    for (threads, pool) in &pools {
        for (label, opts) in [("no_keys", &without), ("keys", &with_keys)] {
            g.bench_function(format!("{label}/{threads}_thread"), |b| {
                b.iter_batched(
                    || fx.pdus.clone(),
                    |pdus| pool.install(|| verify_dag(fx.version, pdus, opts)),
                    BatchSize::LargeInput,
                )
            });
            // What the CLI does (minus file I/O and report writing): parse the text, verify.
            g.bench_function(format!("{label}/{threads}_thread/from_text"), |b| {
                b.iter(|| {
                    pool.install(|| {
                        let (version, parsed) = verify::parse_lines(&fx.text).expect("fixture");
                        verify_dag(version, parsed.into_iter().map(|(_, p)| p).collect(), opts)
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = canonical_json, ed25519, auth_checks, state_res, whole_verify
}
criterion_main!(benches);
