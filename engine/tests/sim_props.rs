//! Property tests of the simulated world: for random small scenarios, (1) the same seed gives
//! the same log on 1 and 2 threads, (2) replaying the log reproduces every server's decisions
//! and final state, (3) honest servers never disagree on rejection and their decisions match
//! `dag verify` on the union DAG.

use proptest::prelude::*;
use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::{LogWriter, MemorySink};
use roomsim_engine::sim::replay::replay;
use roomsim_engine::sim::world::WindowStats;

fn scenario_text(servers: u32, version: u32, loss: f64, partition_s: u32, byzantine: &str) -> String {
    format!(
        r#"
[scenario]
name = "prop"
end = "quiescence"
max_time = "5m"
quiet_period = "5s"

[defaults]
signatures = "modelled"
users = 2

[[servers]]
prefix = "hs"
count = {servers}

[[servers]]
name = "evil"
byzantine = "{byzantine}"
byzantine_probability = 0.5

[[rooms]]
name = "main"
version = "{version}"
creator = "@u0:hs1"
members = ["*"]
power_levels = {{ users = {{ "@u0:hs2" = 100, "@u1:evil" = 50 }} }}

[network]
latency = {{ dist = "uniform", min = "5ms", max = "80ms" }}
min_latency = "5ms"
loss = {loss}

[[faults]]
at = "8s"
kind = "partition"
groups = [["hs1"]]
duration = "{partition_s}s"

[[timeline]]
at = "10s"
action = "power"
room = "main"
user = "@u0:hs2"
target = "@u1:evil"
level = 0

[[timeline]]
at = "10s"
action = "ban"
room = "main"
user = "@u0:hs1"
target = "@u1:hs2"

[[workload]]
room = "main"
users = "*"
start = "2s"
stop = "25s"
messages_per_minute = 12
state_changes_per_hour = 120
power_changes_per_hour = 60
"#
    )
}

/// Runs `text` on a pool of `threads`; windows of at least `parallel_from` inputs go to the pool.
fn run_with(
    text: &str,
    seed: u64,
    threads: usize,
    parallel_from: Option<usize>,
) -> (Vec<u8>, roomsim_engine::sim::world::RunResult, WindowStats) {
    let sc = parse_scenario("prop.toml", text, &[]).expect("valid scenario");
    let buf = MemorySink::default();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let (result, stats) = pool.install(|| {
        let mut world = instrumented_world(&sc, seed, LogWriter::new(Box::new(buf.clone())));
        if let Some(n) = parallel_from {
            world.set_parallel_threshold(n);
        }
        world.run();
        let stats = world.window_stats();
        (world.finish(true).expect("finish"), stats)
    });
    let log = buf.contents();
    (log, result, stats)
}

proptest! {
    // A fixed generator seed: CI draws the same 16 cases every time, so a failure is
    // reproducible rather than a coin toss (`PROPTEST_RNG_SEED=<n> PROPTEST_CASES=<m>` explores
    // other cases locally). Inputs known to fail are listed below as ignored tests.
    #![proptest_config(ProptestConfig {
        cases: 16,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_201),
        ..ProptestConfig::default()
    })]

    #[test]
    fn runs_are_deterministic_replayable_and_consistent(
        seed in 0u64..1_000_000,
        servers in 2u32..5,
        version in prop_oneof![Just(11u32), Just(12u32)],
        loss in prop_oneof![Just(0.0f64), Just(0.1)],
        partition_s in 1u32..8,
        byzantine in prop_oneof![Just("none"), Just("equivocate"), Just("withhold"), Just("bad_signatures")],
    ) {
        let text = scenario_text(servers, version, loss, partition_s, byzantine);
        let (log1, r1, s1) = run_with(&text, seed, 1, Some(2));
        let (log2, r2, s2) = run_with(&text, seed, 2, Some(2));
        // The parallel path must really run: on one thread no window goes to the pool, on two
        // every window with inputs for two or more servers does.
        prop_assert_eq!(s1.parallel, 0);
        prop_assert!(s2.parallel > 0, "no window ran in parallel ({} windows)", s2.windows);
        prop_assert_eq!(s1.windows, s2.windows);
        prop_assert!(log1 == log2, "log differs between 1 and 2 threads");
        prop_assert_eq!(&r1.summary, &r2.summary);
        // Invariants: honest servers agree on rejections, match dag verify, and converge.
        prop_assert!(r1.invariant_violations.is_empty(), "{:?}", r1.invariant_violations);
        prop_assert_eq!(&r1.summary["rooms"]["main"]["auth_disagreements"], &serde_json::json!(0));
        // Replay from the log reproduces every decision and the final states.
        let sc = parse_scenario("prop.toml", &text, &[]).unwrap();
        let digests = replay(&sc, seed, &log1[..], |_| {}).map_err(|d| TestCaseError::fail(format!("{d:?}")))?;
        let want = r1.summary["rooms"]["main"]["final_state_digests"].as_object().unwrap().clone();
        let room_id = r1.summary["rooms"]["main"]["room_id"].as_str().unwrap();
        for (server, d) in want {
            prop_assert_eq!(digests[room_id].get(&server).map(String::as_str), d.as_str());
        }
    }
}

/// With the default threshold, a busier scenario (12 servers chatting) reaches the parallel
/// path by itself, and its outputs still do not depend on the thread count.
#[test]
fn a_busy_scenario_runs_windows_in_parallel_with_the_default_threshold() {
    let text = r#"
[scenario]
name = "busy"
end = "40s"

[defaults]
signatures = "modelled"
users = 2

[[servers]]
prefix = "hs"
count = 12

[[rooms]]
name = "main"
version = "12"
creator = "@u0:hs1"
members = ["*"]

[network]
latency = { dist = "uniform", min = "20ms", max = "60ms" }
min_latency = "20ms"

[[workload]]
room = "main"
users = "*"
start = "5s"
stop = "35s"
messages_per_minute = 30
"#;
    let (log1, r1, s1) = run_with(text, 3, 1, None);
    let (log2, r2, s2) = run_with(text, 3, 2, None);
    assert_eq!(s1.parallel, 0);
    assert!(s2.parallel > 0, "no window reached the parallel path ({} windows)", s2.windows);
    assert!(log1 == log2, "log differs between 1 and 2 threads");
    assert_eq!(r1.summary, r2.summary);
}

/// Runs one input of the property test on one thread, in both `join.mode`s, and requires no
/// invariant violation.
fn assert_converges(seed: u64, servers: u32, version: u32, loss: f64, partition_s: u32, byzantine: &str) {
    for mode in ["state", "full_history"] {
        assert_converges_in(mode, seed, servers, version, loss, partition_s, byzantine);
    }
}

/// [`assert_converges`] in one `join.mode`.
fn assert_converges_in(
    mode: &str,
    seed: u64,
    servers: u32,
    version: u32,
    loss: f64,
    partition_s: u32,
    byzantine: &str,
) {
    let text =
        format!("{}\n[join]\nmode = \"{mode}\"\n", scenario_text(servers, version, loss, partition_s, byzantine));
    let (_, r, _) = run_with(&text, seed, 1, None);
    assert!(r.invariant_violations.is_empty(), "{mode}: {:?}", r.invariant_violations);
}

/// Regressions reported from CI ("honest servers hold different numbers of events ({29, 31})").
#[test]
fn regression_seed_838962_converges_after_loss() {
    assert_converges(838962, 2, 11, 0.1, 4, "none");
}

#[test]
fn regression_seed_417530_converges_after_loss() {
    assert_converges(417530, 2, 11, 0.1, 3, "none");
}

/// A server joined through a resident that had not yet received another resident's branch;
/// that branch's maker must catch the joiner up.
#[test]
fn regression_seed_1425433_a_late_joiner_is_caught_up() {
    assert_converges(1425433, 2, 11, 0.1, 6, "none");
}

/// A send_join whose answers were lost (retries exhausted) while its server was resident
/// through another user: the others held the join, its own server did not.
#[test]
fn regression_seed_863184_a_join_whose_answer_was_lost_is_stored() {
    assert_converges(863184, 3, 12, 0.1, 5, "none");
}

/// A server that was banned and rejoined in one send_join answer must catch up a server that
/// joined meanwhile with the events it made before the ban.
#[test]
fn regression_seed_6842029_a_rejoining_server_catches_up_new_members() {
    assert_converges(6842029, 2, 11, 0.1, 4, "none");
}

// Convergence failures at 10 % loss found by sweeping 1 500 inputs, open before `/state_ids`
// and `/backfill`: an honest server ended without some event nobody references to it any more.
// In `join.mode = "state"` the gap is bridged (or the dead end is not required) and they
// converge; in `full_history` they stay open. Run those with
// `cargo test --release -p roomsim-engine --test sim_props -- --ignored`.

#[test]
fn seed_5147363_four_servers_converges_with_state_joins() {
    assert_converges_in("state", 5147363, 4, 11, 0.1, 7, "none");
}

#[test]
fn seed_8568371_four_servers_converges_with_state_joins() {
    assert_converges_in("state", 8568371, 4, 11, 0.1, 5, "none");
}

/// Open before Synapse's forward-extremity rule; converges in both modes now.
#[test]
fn seed_847508_bad_signatures_converges() {
    assert_converges(847508, 4, 11, 0.1, 5, "bad_signatures");
}

#[test]
#[ignore = "open in full_history: a server misses an unreferenced event after loss"]
fn open_seed_5147363_four_servers_full_history() {
    assert_converges_in("full_history", 5147363, 4, 11, 0.1, 7, "none");
}

#[test]
#[ignore = "open in full_history: a server misses an unreferenced event after loss"]
fn open_seed_8568371_four_servers_full_history() {
    assert_converges_in("full_history", 8568371, 4, 11, 0.1, 5, "none");
}
