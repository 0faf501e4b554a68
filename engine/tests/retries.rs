//! Retries in whole runs, as Synapse's federation sender makes them: after a long partition a
//! backed-off destination is caught up with the newest events only and fetches the rest; a
//! request from the destination ends the backoff at once; a server restarted while it was
//! fetching missing events asks again and converges.

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::{LogWriter, MemorySink};
use serde_json::Value;
use std::collections::BTreeSet;

const MINUTE_US: u64 = 60_000_000;
/// The partition cuts hs3 off from 20 s to 60 min 20 s.
const HEAL_US: u64 = 20_000_000 + 60 * MINUTE_US;

/// hs1 and hs2 talk while hs3 (whose users are silent) is cut off for an hour. Transactions are
/// not retried within the request, and the backoff grows fast (20 min, then ×4 and jitter), so
/// hs1 and hs2 back off from hs3 for over an hour and switch to catch-up. `extra` adds to the
/// file (faults, timeline).
fn scenario(extra: &str) -> String {
    format!(
        r#"
[scenario]
name = "retries"
end = "quiescence"
max_time = "5h"
quiet_period = "30s"

[defaults]
signatures = "modelled"
users = 1
transaction_retries = 0
destination_min_retry_interval = "20m"
destination_retry_multiplier = 4

[[servers]]
prefix = "hs"
count = 3

[groups]
main = ["hs1", "hs2"]
far = ["hs3"]

[[rooms]]
name = "main"
version = "11"
creator = "@u0:hs1"
members = ["*"]

[network]
latency = {{ dist = "uniform", min = "5ms", max = "40ms" }}
min_latency = "5ms"

[[faults]]
at = "20s"
kind = "partition"
groups = [["main"], ["far"]]
duration = "60m"

[[workload]]
room = "main"
users = ["@u0:hs1", "@u0:hs2"]
start = "10s"
stop = "55m"
messages_per_minute = 1
{extra}
"#
    )
}

struct Run {
    log: Vec<Value>,
    /// Per server, the event IDs its replica of the room holds.
    held: Vec<BTreeSet<String>>,
    union: usize,
    violations: Vec<String>,
    /// Per server, the digest of its final state of the room.
    digests: Vec<String>,
}

fn run(text: &str, seed: u64) -> Run {
    let sc = parse_scenario("retries.toml", text, &[]).expect("valid scenario");
    let buf = MemorySink::default();
    let mut world = instrumented_world(&sc, seed, LogWriter::new(Box::new(buf.clone())));
    world.run();
    let held = world
        .servers()
        .map(|s| {
            let room = s.rooms.values().next().expect("one room");
            (0..room.dag.len() as u32).map(|i| room.dag.pdu(i).event_id.clone()).collect()
        })
        .collect();
    let result = world.finish(true).expect("finish");
    let log = buf.contents();
    let log = String::from_utf8(log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let digests = result.summary["rooms"]["main"]["final_state_digests"]
        .as_object()
        .expect("digests")
        .values()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    Run { log, held, union: result.rooms["main"].len(), violations: result.invariant_violations, digests }
}

fn t_us(r: &Value) -> u64 {
    r["t_us"].as_u64().expect("time")
}

/// `server`'s requests to server index `to` with endpoint `endpoint` (time, body).
fn requests<'a>(log: &'a [Value], server: &str, to: u64, endpoint: &str) -> Vec<(u64, &'a Value)> {
    log.iter()
        .filter(|r| r["kind"] == "send" && r["server"] == server && r["to"] == to)
        .filter(|r| r["message"]["request"]["body"]["endpoint"] == endpoint)
        .map(|r| (t_us(r), &r["message"]["request"]["body"]))
        .collect()
}

/// Event IDs `server` created (its `pdu` records come with the creating server).
fn created_between(log: &[Value], sender: &str, from_us: u64, to_us: u64) -> usize {
    log.iter()
        .filter(|r| r["kind"] == "pdu" && (from_us..to_us).contains(&t_us(r)))
        .filter(|r| r["pdu"]["sender"].as_str().is_some_and(|s| s.ends_with(&format!(":{sender}"))))
        .count()
}

/// Converged: no invariant violation (every honest server holds the others' forward
/// extremities once quiet, and judges as the reference does), one final state on all three.
/// Not every event everywhere: with state joins (the default) hs3 bridges the hour it missed
/// with one `get_missing_events` round and `/state_ids`, as Synapse does, and does not fetch
/// the events inside the gap.
fn assert_converged(run: &Run) {
    assert!(run.violations.is_empty(), "{:?}", run.violations);
    assert_eq!(run.digests.len(), 3);
    assert!(run.digests.iter().all(|d| *d == run.digests[0]), "one final state: {:?}", run.digests);
    assert!(run.held.iter().all(|h| !h.is_empty() && h.len() <= run.union));
}

#[test]
fn after_a_long_outage_only_the_newest_events_are_sent_and_the_rest_is_fetched() {
    let run = run(&scenario(""), 3);
    let during = created_between(&run.log, "hs1", HEAL_US - 60 * MINUTE_US, HEAL_US);
    assert!(during >= 20, "hs1 made events during the partition: {during}");
    // hs3 index 2. hs1 tries hs3 again only when its backoff (over an hour) ran out.
    let after: Vec<_> = requests(&run.log, "hs1", 2, "send").into_iter().filter(|(t, _)| *t >= HEAL_US).collect();
    let (first_us, first) = after.first().expect("hs1 catches hs3 up");
    assert!(*first_us >= 85 * MINUTE_US, "the backoff (20 min, then at least 64 min) is kept: {first_us}");
    let first_len = first["pdus"].as_array().unwrap().len();
    assert!(first_len <= 3, "catch-up sends the room's forward extremities, not the queue: {first_len}");
    let sent: usize = after.iter().map(|(_, b)| b["pdus"].as_array().unwrap().len()).sum();
    assert!(sent < during / 2, "hs1 never replays its queue to hs3: {sent} PDUs for {during} events");
    let fetched = requests(&run.log, "hs3", 0, "get_missing_events").len()
        + requests(&run.log, "hs3", 1, "get_missing_events").len();
    assert!(fetched > 0, "hs3 fetches what it missed");
    assert_converged(&run);
}

#[test]
fn a_request_from_the_backed_off_server_ends_the_backoff_at_once() {
    let says = "\n[[timeline]]\nat = \"65m\"\naction = \"message\"\nroom = \"main\"\nuser = \"@u0:hs3\"\n";
    let run = run(&scenario(says), 3);
    let spoke = 65 * MINUTE_US;
    let contact = requests(&run.log, "hs3", 0, "send").into_iter().map(|(t, _)| t).find(|t| *t >= spoke);
    let contact = contact.expect("hs3 sends its message to hs1");
    let (first_us, _) = *requests(&run.log, "hs1", 2, "send").iter().find(|(t, _)| *t >= HEAL_US).expect("catch-up");
    assert!(
        (contact..contact + 1_000_000).contains(&first_us),
        "hs1 catches hs3 up as soon as hs3's transaction arrives ({contact}), not at its backoff's end: {first_us}"
    );
    assert_converged(&run);
}

#[test]
fn a_server_restarted_while_fetching_asks_again_and_converges() {
    let says = "\n[[timeline]]\nat = \"65m\"\naction = \"message\"\nroom = \"main\"\nuser = \"@u0:hs3\"\n";
    let first = run(&scenario(says), 3);
    let fetch_us = requests(&first.log, "hs3", 0, "get_missing_events")
        .into_iter()
        .chain(requests(&first.log, "hs3", 1, "get_missing_events"))
        .map(|(t, _)| t)
        .filter(|t| *t >= HEAL_US)
        .min()
        .expect("hs3 fetches after the heal");
    // The same run, hs3 crashing 1 ms after that request (before any answer: latency ≥ 5 ms).
    let crash_at_us = fetch_us + 1_000;
    let restart_us = crash_at_us + 2 * MINUTE_US;
    let crash = format!(
        "{says}\n[[faults]]\nat = \"{crash_at_us}us\"\nkind = \"crash\"\nserver = \"hs3\"\nduration = \"2m\"\n"
    );
    let again = run(&scenario(&crash), 3);
    let asked_at_restart = requests(&again.log, "hs3", 0, "get_missing_events")
        .into_iter()
        .chain(requests(&again.log, "hs3", 1, "get_missing_events"))
        .any(|(t, _)| t == restart_us);
    assert!(asked_at_restart, "the restart re-arms the lost fetch at once ({restart_us})");
    assert_converged(&again);
}
