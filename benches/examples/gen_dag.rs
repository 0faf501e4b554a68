//! Writes a generated room DAG: `OUT.jsonl` (one PDU per line) and `OUT.keys.json`
//! (`{"server_keys": {server: {"ed25519:k1": key}}}`), ready for `roomsim dag verify`.
//!
//! ```text
//! cargo run --release -p roomsim-benches --example gen_dag -- OUT \
//!     [--events N] [--servers N] [--users-per-server N] [--room-version 11|12] [--seed N]
//!     [--sync-prob P] [--split-prob P] [--bad-rate P]
//!     [--large-state USERS]   # Matrix-HQ-sized room instead: USERS joins, mostly linear
//! ```

use roomsim_benches::generator::{generate, generate_large_state, GenParams, LargeStateParams};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: gen_dag OUT [--events N] [--servers N] [--users-per-server N] [--room-version 11|12] [--seed N] [--sync-prob P] [--split-prob P] [--bad-rate P] [--large-state USERS]");
        return ExitCode::from(2);
    }
    let out = PathBuf::from(&args[0]);
    let mut p = GenParams::new(1_000, 3);
    let mut large: Option<usize> = None;
    let mut i = 1;
    while i < args.len() {
        let flag = args[i].as_str();
        let Some(value) = args.get(i + 1) else {
            eprintln!("{flag}: missing value");
            return ExitCode::from(2);
        };
        let bad = || {
            eprintln!("{flag}: bad value {value:?}");
            ExitCode::from(2)
        };
        macro_rules! num {
            () => {
                match value.parse() {
                    Ok(v) => v,
                    Err(_) => return bad(),
                }
            };
        }
        match flag {
            "--events" => p.events = num!(),
            "--servers" => p.servers = num!(),
            "--users-per-server" => p.users_per_server = num!(),
            "--room-version" => p.room_version = num!(),
            "--seed" => p.seed = num!(),
            "--sync-prob" => p.sync_prob = num!(),
            "--split-prob" => p.split_prob = num!(),
            "--bad-rate" => p.bad_rate = num!(),
            "--large-state" => large = Some(num!()),
            _ => {
                eprintln!("unknown option {flag}");
                return ExitCode::from(2);
            }
        }
        i += 2;
    }
    if !matches!(p.room_version, 11 | 12) {
        eprintln!("--room-version: 11 or 12");
        return ExitCode::from(2);
    }
    let start = Instant::now();
    let dag = match large {
        Some(users) => generate_large_state(&LargeStateParams {
            users,
            servers: p.servers,
            room_version: p.room_version,
            seed: p.seed,
            ..LargeStateParams::matrix_hq()
        }),
        None => generate(&p),
    };
    let jsonl = out.with_extension("jsonl");
    let keys = out.with_extension("keys.json");
    if let Err(e) = dag.write_files(&jsonl, &keys) {
        eprintln!("writing {}: {e}", jsonl.display());
        return ExitCode::FAILURE;
    }
    eprintln!(
        "{}: room v{} {}, {} events ({} accepted, {} rejected), {} merges, {} netsplits, final state {} entries; {} servers; {:.2} s",
        jsonl.display(),
        dag.version.id,
        dag.room_id,
        dag.pdus.len(),
        dag.accepted,
        dag.rejected,
        dag.merges,
        dag.splits,
        dag.final_state_len,
        dag.server_keys.len(),
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
