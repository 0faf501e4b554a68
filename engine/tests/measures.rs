//! The agreement and membership measures on whole runs (definitions: `docs/outputs.md`,
//! "Convergence" and "Membership"): the bundled `partition-heal`, a crash followed by a
//! scripted join, a room that drains, a byzantine member, a server that cannot keep up (the
//! measure must see it), and the `metrics.csv` hygiene (one final sample, `measures` obeyed).

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::scenario::{load_scenario, parse_scenario, Scenario};
use roomsim_engine::sim::log::LogWriter;
use roomsim_engine::sim::world::{RunResult, World};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn bundled(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name);
    load_scenario(&path, &[]).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn run(sc: &Scenario, setup: impl FnOnce(&mut World)) -> RunResult {
    let mut w = instrumented_world(sc, sc.seed, LogWriter::none());
    setup(&mut w);
    w.run();
    w.finish(true).expect("run finishes")
}

fn room<'a>(r: &'a RunResult, name: &str) -> &'a Value {
    &r.summary["rooms"][name]
}

/// The `agreement` series of `metrics.csv`: (time ms, value).
fn agreement_series(r: &RunResult, room: &str) -> Vec<(u64, f64)> {
    r.metrics.iter().filter(|m| m.room == room && m.measure == "agreement").map(|m| (m.time_ms, m.value)).collect()
}

/// Bundled `partition-heal`: the three-way partition runs 30–120 s; conflicting power, ban and
/// join-rule changes on each side (40–55 s) leave the sides with different states, so agreement
/// is lost during the partition and can only come back after 120 s. Transactions that timed
/// out in the partition are retried on Synapse's long schedule (4 s, 16 s, then 60 s, each
/// times [0.8, 1.4), after 10 s timeouts), so the first ones cross again between ~128 s and
/// ~164 s, and one lost on the lossy a↔c degrade (125–145 s) waits another round (≤ 10 s +
/// 84 s): agreement comes back after the degrade's end, which is then the reference,
/// within 145 s + 2 × 94 s. Cross-check at sample granularity: the 1 s `agreement` series is 0
/// at the last whole second before `agreement_reached_ms` and 1 at the first whole second
/// after it.
#[test]
fn partition_heal_agrees_once_the_retried_transactions_cross() {
    let sc = bundled("partition-heal.toml");
    let r = run(&sc, |_| {});
    let m = room(&r, "main");
    assert_eq!(m["agreed_at_end"], true, "{m}");
    let reached = m["agreement_reached_ms"].as_u64().unwrap();
    let time = m["time_to_agreement_ms"].as_u64().unwrap();
    assert!((145_000..145_000 + 2 * 94_000).contains(&reached), "agreement at {reached} ms: {m}");
    assert_eq!(reached, 145_000 + time, "measured from the degrade's end");
    assert!(m["time_to_agreement_from"].as_str().unwrap().contains("(degrade) at 145000 ms"), "{m}");
    let series = agreement_series(&r, "main");
    let before = series.iter().rev().find(|(t, _)| *t < reached).unwrap();
    let after = series.iter().find(|(t, _)| *t >= reached).unwrap();
    assert_eq!((before.1, after.1), (0.0, 1.0), "samples around {reached} ms: {before:?} {after:?}");
    // The episode the partition caused: it starts inside the partition, ends at the agreement,
    // and overlaps the partition.
    let episodes = m["episodes"].as_array().unwrap();
    assert_eq!(m["divergence_episodes"].as_u64().unwrap() as usize, episodes.len());
    let split = episodes.iter().find(|e| e["end_ms"] == reached).expect("the episode that ends at the agreement");
    let start = split["start_ms"].as_u64().unwrap();
    assert!((30_000..120_000).contains(&start), "{split}");
    assert!(split["faults"].as_array().unwrap().iter().any(|f| f["kind"] == "partition"), "{split}");
    let total: u64 = episodes.iter().map(|e| e["length_ms"].as_u64().unwrap()).sum();
    assert_eq!(m["diverged_ms_total"].as_u64().unwrap(), total);
    assert_eq!(r.summary["invariant_violations"], 0);
}

/// Three servers, one user each; hs2 is down 10–30 s while hs1 and hs3 change the topic (10
/// topic changes per user per hour and minute... 600/h each from 5 to 50 s): hs2's state goes
/// stale, so agreement is lost during the crash and comes back after the restart (30 s) once
/// hs2 caught up. At 70 s a new user, @u1:hs3 (hs3 has two users, the second not in `members`),
/// joins by script: that join is a new, short episode at or after 70 s. The conclusion must
/// not move: the reference is still the crash's end (30 s) and the final agreement lies before
/// 70 s, so time_to_agreement_ms < 40 000 (the old measure counted from 30 s to the end of the
/// join's episode, > 40 s).
#[test]
fn a_scripted_join_after_a_crash_does_not_reverse_the_conclusion() {
    let text = r#"
[scenario]
name = "crash-then-join"
seed = 7
end = "100s"
[defaults]
users = 1
[[servers]]
name = "hs1"
[[servers]]
name = "hs2"
[[servers]]
name = "hs3"
users = 2
[[rooms]]
name = "main"
version = "11"
creator = "@u0:hs1"
join_rule = "public"
members = ["@u0:hs2", "@u0:hs3"]
[network]
latency = { dist = "fixed", value = "30ms" }
min_latency = "10ms"
[[faults]]
at = "10s"
kind = "crash"
server = "hs2"
duration = "20s"
[[workload]]
room = "main"
users = ["@u0:hs1", "@u0:hs3"]
start = "5s"
stop = "50s"
state_changes_per_hour = 600
[[timeline]]
at = "70s"
action = "join"
room = "main"
user = "@u1:hs3"
"#;
    let sc = parse_scenario("crash-then-join.toml", text, &[]).unwrap();
    let r = run(&sc, |_| {});
    let m = room(&r, "main");
    assert_eq!(m["agreed_at_end"], true, "{m}");
    assert!(m["time_to_agreement_from"].as_str().unwrap().contains("(crash) at 30000 ms"), "{m}");
    let reached = m["agreement_reached_ms"].as_u64().unwrap();
    assert!((30_000..70_000).contains(&reached), "{m}");
    assert_eq!(m["time_to_agreement_ms"].as_u64().unwrap(), reached - 30_000);
    let episodes = m["episodes"].as_array().unwrap();
    assert!(episodes.iter().any(|e| e["start_ms"].as_u64().unwrap() >= 70_000), "the join's episode is listed: {m}");
    assert!(
        episodes.iter().any(|e| e["faults"].as_array().unwrap().iter().any(|f| f["kind"] == "crash")),
        "an episode overlaps the crash: {m}"
    );
    assert_eq!(m["servers_in_room"], 3);
    assert_eq!(m["members_missing"], serde_json::json!([]));
}

/// A room drains: three servers, one user each, all joined. At 10 s the creator makes the room
/// invite-only; at 20 s @u0:hs3 leaves (by script: not meant to be there); at 30 s it tries to
/// join again (by script: meant to be there at the end). Invite-only and not invited, the join
/// fails (v11 auth rule 4.3.5: a join needs `join_rule` public, or the user already joined or
/// invited), so at the end hs3 has no user in the room: 3 servers expected (hs1..hs3), 2 in it,
/// @u0:hs3 missing with the failure named, and no agreement problem (hs1 and hs2 agree).
#[test]
fn a_drained_room_names_its_missing_members_and_why() {
    let text = r#"
[scenario]
name = "drain"
seed = 3
end = "60s"
[defaults]
users = 1
[[servers]]
prefix = "hs"
count = 3
[[rooms]]
name = "main"
version = "11"
creator = "@u0:hs1"
join_rule = "public"
members = ["*"]
[network]
latency = { dist = "fixed", value = "30ms" }
min_latency = "10ms"
[[timeline]]
at = "10s"
action = "join_rule"
room = "main"
user = "@u0:hs1"
join_rule = "invite"
[[timeline]]
at = "20s"
action = "leave"
room = "main"
user = "@u0:hs3"
[[timeline]]
at = "30s"
action = "join"
room = "main"
user = "@u0:hs3"
"#;
    let sc = parse_scenario("drain.toml", text, &[]).unwrap();
    let r = run(&sc, |_| {});
    let m = room(&r, "main");
    assert_eq!(m["servers_expected"], 3, "{m}");
    assert_eq!(m["servers_in_room"], 2, "{m}");
    let missing = m["members_missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{m}");
    assert_eq!(missing[0]["user"], "@u0:hs3");
    let why = missing[0]["why"].as_str().unwrap();
    assert!(why.contains("join") && !why.contains("no failure was logged"), "a logged reason: {why}");
    assert!(m["joins_failed"].as_u64().unwrap() >= 1, "{m}");
    assert_eq!(m["agreed_at_end"], true, "{m}");
}

/// Bundled `equivocation`: four servers, hs4 byzantine (equivocates), every user joined. hs4 is
/// in the room by the DAG's membership: counted (4 servers in the room, 1 byzantine) and
/// labelled "hs4 (byzantine)"; the honest three must agree.
#[test]
fn byzantine_servers_are_counted_and_labelled() {
    let sc = bundled("equivocation.toml");
    let r = run(&sc, |_| {});
    let m = room(&r, "main");
    assert_eq!(m["servers_in_room"], 4, "{m}");
    assert_eq!(m["byzantine_in_room"], 1, "{m}");
    let labels: Vec<&str> = m["in_room"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(labels, ["hs1", "hs2", "hs3", "hs4 (byzantine)"]);
    assert_eq!(m["agreed_at_end"], true, "{m}");
    let largest = m["largest_agreeing_group"].as_u64().unwrap();
    assert!(largest >= 3, "the honest three share one state, the byzantine one is counted too: {m}");
}

const SMALL: &str = r#"
[scenario]
name = "small"
seed = 1
end = "40s"
[defaults]
users = 1
[[servers]]
prefix = "hs"
count = 3
[[rooms]]
name = "main"
version = "11"
creator = "@u0:hs1"
join_rule = "public"
members = ["*"]
[network]
latency = { dist = "fixed", value = "30ms" }
min_latency = "10ms"
[[timeline]]
at = "10s"
action = "topic"
room = "main"
user = "@u0:hs1"
text = "one"
[[timeline]]
at = "12s"
action = "message"
room = "main"
user = "@u0:hs1"
"#;

/// The check can fail: hs2 never receives `m.room.topic` events (a test-only switch of the
/// world). The topic set at 10 s reaches hs1 and hs3 but not hs2, and hs2 cannot apply the
/// message built on it either: hs2's state lacks the topic, so agreement is lost at ~10 s and
/// never comes back. Expected: not agreed at the end, no time (said in words), one open episode
/// starting in 10–11 s, and the sampled `agreement` series ending at 0. Without the switch the
/// same scenario agrees.
#[test]
fn a_server_that_skips_events_is_seen_diverging() {
    let sc = parse_scenario("small.toml", SMALL, &[]).unwrap();
    let healthy = run(&sc, |_| {});
    assert_eq!(room(&healthy, "main")["agreed_at_end"], true);
    let r = run(&sc, |w| w.skip_events_for_test(1, "m.room.topic"));
    let m = room(&r, "main");
    assert_eq!(m["agreed_at_end"], false, "{m}");
    assert_eq!(m["time_to_agreement_ms"], Value::Null);
    assert!(m["time_to_agreement_note"].as_str().unwrap().starts_with("did not agree by the end"), "{m}");
    let last = m["episodes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["end_ms"], Value::Null, "{m}");
    assert!((10_000..11_000).contains(&last["start_ms"].as_u64().unwrap()), "{m}");
    assert_eq!(agreement_series(&r, "main").last().unwrap().1, 0.0);
    assert_eq!(m["distinct_final_states"], 2, "hs2 without the topic, hs1 and hs3 with it: {m}");
}

/// `metrics.csv` hygiene: the run ends at 40 s, exactly on a sample tick, and its final
/// sample is written once (no two rows with the same time, server, room and measure); with
/// `measures = ["agreement", "event_lag"]` those are the only series (`deliveries` and the
/// per-server DAG figures are left out too).
#[test]
fn the_final_sample_is_written_once_and_measures_limit_the_series() {
    let sc = parse_scenario("small.toml", SMALL, &[]).unwrap();
    let r = run(&sc, |_| {});
    let keys: Vec<_> = r.metrics.iter().map(|m| (m.time_ms, &m.server, &m.room, &m.measure)).collect();
    let unique: BTreeSet<_> = keys.iter().collect();
    assert_eq!(keys.len(), unique.len(), "a sample was written twice");
    assert_eq!(r.metrics.iter().map(|m| m.time_ms).max(), Some(40_000));
    let limited = format!("{SMALL}\n[metrics]\nmeasures = [\"agreement\", \"event_lag\"]\n");
    let sc = parse_scenario("small.toml", &limited, &[]).unwrap();
    let r = run(&sc, |_| {});
    let names: BTreeSet<&str> = r.metrics.iter().map(|m| m.measure.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["agreement", "event_lag"]));
}
