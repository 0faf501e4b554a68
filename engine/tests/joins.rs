//! Joins through any resident and workloads that behave, on whole runs: the bundled
//! `creator-crash` (joins while the creator's server is down) and `churn` (12 servers), and a
//! join whose only candidate never comes back (`docs/scenarios.md`, "Remote joins").

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::scenario::{load_scenario, parse_scenario, Scenario};
use roomsim_engine::sim::log::{LogWriter, MemorySink};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn bundled(name: &str) -> Scenario {
    bundled_with(name, &[])
}

fn bundled_with(name: &str, sets: &[&str]) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(name);
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    load_scenario(&path, &sets).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs `sc`: its summary and its log records, parsed.
fn run(sc: &Scenario) -> (Value, Vec<Value>) {
    let buf = MemorySink::default();
    let mut world = instrumented_world(sc, sc.seed, LogWriter::new(Box::new(buf.clone())));
    world.run();
    let result = world.finish(true).expect("finish");
    let log = buf.contents();
    let records = String::from_utf8(log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (result.summary, records)
}

fn kind(r: &Value) -> &str {
    r["kind"].as_str().unwrap_or("")
}

/// The `send` records of `server` carrying a request to `endpoint`: (time, destination index).
fn requests(log: &[Value], server: &str, endpoint: &str) -> Vec<(u64, u64)> {
    log.iter()
        .filter(|r| kind(r) == "send" && r["server"] == server)
        .filter(|r| r["message"]["request"]["body"]["endpoint"] == endpoint)
        .map(|r| (r["t_us"].as_u64().unwrap(), r["to"].as_u64().unwrap()))
        .collect()
}

/// `creator-crash`: hs1 (node 0), the creator's server, is down 20–90 s. @u0:hs4 asks hs1 first
/// (the directory's order), times out and joins through hs2 while hs1 is still down; @u0:hs6
/// names `via = ["hs3"]`; @u1:hs4 asks only hs1 and joins once hs1 is back. Everybody ends joined.
#[test]
fn joins_go_through_another_resident_while_the_creator_is_down() {
    let sc = bundled("creator-crash.toml");
    let (summary, log) = run(&sc);
    let room = &summary["rooms"]["main"];
    assert_eq!(room["members_missing"], serde_json::json!([]), "{room}");
    assert_eq!(room["joins_failed"], 0, "{room}");
    assert_eq!(room["agreed_at_end"], true, "{room}");

    let make = requests(&log, "hs4", "make_join");
    assert_eq!(make.first().map(|m| m.1), Some(0), "hs4's first make_join goes to hs1: {make:?}");
    let send = requests(&log, "hs4", "send_join");
    let (t, to) = *send.first().expect("hs4 sent a send_join");
    assert_ne!(to, 0, "the first send_join goes to a resident other than the creator's server");
    assert!((20_000_000..90_000_000).contains(&t), "while hs1 is down: {t} µs");
    let joined =
        |user: &str| log.iter().find(|r| kind(r) == "joined" && r["user"] == user).map(|r| r["t_us"].as_u64().unwrap());
    let t = joined("@u0:hs4").expect("@u0:hs4 joined remotely");
    assert!(t < 90_000_000, "@u0:hs4 joined at {t} µs, before hs1 came back");
    assert_eq!(requests(&log, "hs6", "make_join").first().map(|m| m.1), Some(2), "via = [\"hs3\"] is asked first");
    // @u1:hs4 asked only hs1: rounds while it was down, then a join once a resident was reachable.
    let rounds: Vec<u64> = log
        .iter()
        .filter(|r| kind(r) == "input" && r["server"] == "hs4" && r["timer"]["timer"] == "retry_join")
        .map(|r| r["t_us"].as_u64().unwrap())
        .collect();
    assert!(!rounds.is_empty(), "@u1:hs4's join was retried in rounds");
}

/// `creator-crash` without its notary: a `send_join` answer holds hs1's events, whose key
/// nobody can give while hs1 is down. Such an answer is invalid, not a refusal: the join goes
/// on to its next candidate and round, and completes once hs1 answers key requests again.
#[test]
fn a_join_answer_that_cannot_be_checked_fails_over_and_the_join_completes_later() {
    let sc = bundled_with("creator-crash.toml", &["keys.notaries=[]"]);
    let (summary, log) = run(&sc);
    let room = &summary["rooms"]["main"];
    assert_eq!(room["members_missing"], serde_json::json!([]), "{room}");
    assert_eq!(room["joins_failed"], 0, "{room}");
    assert_eq!(room["agreed_at_end"], true, "{room}");
    let unverifiable: Vec<&Value> = log
        .iter()
        .filter(|r| kind(r) == "request_failed" && r["request"] == "send_join")
        .filter(|r| r["why"].as_str().unwrap_or("").contains("cannot be checked"))
        .collect();
    assert!(!unverifiable.is_empty(), "some send_join answer could not be checked while hs1 was down");
    let joined =
        |user: &str| log.iter().find(|r| kind(r) == "joined" && r["user"] == user).map(|r| r["t_us"].as_u64().unwrap());
    for r in &unverifiable {
        let server = r["server"].as_str().unwrap();
        let t = joined(&format!("@u0:{server}")).expect("joined in the end");
        assert!(t > 90_000_000, "{server} joined at {t} µs, after hs1 came back");
    }
}

/// `churn`: 12 servers, every user leaving and rejoining about once a minute, state and power
/// changes by everyone. Nothing is refused: no leave of a user not joined, no state change
/// without the power; several kinds of state event are made; all end joined.
#[test]
fn churn_leaves_only_when_joined_and_state_changes_respect_power() {
    let sc = bundled("churn.toml");
    assert!(sc.servers.len() >= 10);
    let (summary, log) = run(&sc);
    let actions: Vec<&Value> = log.iter().filter(|r| kind(r) == "action").collect();
    let refused: Vec<&&Value> = actions.iter().filter(|r| r.get("refused").is_some()).collect();
    assert!(refused.is_empty(), "refused actions: {refused:?}");
    let leaves = actions.iter().filter(|r| r["action"] == "leave").count();
    assert!(leaves >= 10, "churn made {leaves} leaves");
    let state_kinds: BTreeSet<&str> = actions
        .iter()
        .filter_map(|r| r["action"].as_str())
        .filter(|a| matches!(*a, "topic" | "name" | "join_rule" | "power"))
        .collect();
    assert!(state_kinds.len() > 1, "state changes of more than one kind: {state_kinds:?}");
    // Power levels need 100: only the creator and @u0:hs3 have it (the workload sets 0 or 50).
    // Topic, name and join rules need 50, which power changes hand out: the no-refusal check
    // above is what shows those respected the sender's power.
    for a in actions.iter().filter(|r| r["action"] == "power") {
        assert!(matches!(a["user"].as_str(), Some("@u0:hs1" | "@u0:hs3")), "{a}");
    }
    // Nothing a workload starts goes on after its stop: no workload action after 240 s.
    let stop_us = sc.workloads[0].stop_us;
    let late: Vec<&&Value> = actions.iter().filter(|r| r["t_us"].as_u64().unwrap() > stop_us).collect();
    assert!(late.is_empty(), "actions after the workload's stop: {late:?}");
    let room = &summary["rooms"]["main"];
    assert_eq!(room["members_missing"], serde_json::json!([]), "{room}");
}

/// The only candidate (the creator's server) crashes before the join and never restarts: the
/// join runs its 6 rounds, is recorded as failed with its reason, counted, and explains the
/// missing member.
#[test]
fn a_join_that_finally_fails_is_recorded_with_its_reason() {
    let text = r#"
[scenario]
name = "lost"
end = "10m"

[defaults]
users = 1

[[servers]]
prefix = "hs"
count = 2

[[rooms]]
name = "main"
version = "12"
creator = "@u0:hs1"

[[faults]]
at = "5s"
kind = "crash"
server = "hs1"

[[timeline]]
at = "10s"
action = "join"
room = "main"
user = "@u0:hs2"
"#;
    let sc = parse_scenario("lost.toml", text, &[]).expect("valid");
    let (summary, log) = run(&sc);
    let failed: Vec<&Value> = log.iter().filter(|r| kind(r) == "join_failed").collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["user"], "@u0:hs2");
    assert_eq!(failed[0]["rounds"], 6);
    let reason = failed[0]["reason"].as_str().unwrap();
    assert!(reason.contains("make_join to hs1: timeout"), "{reason}");
    let ids: BTreeSet<u64> = log
        .iter()
        .filter(|r| kind(r) == "send" && r["server"] == "hs2")
        .filter(|r| r["message"]["request"]["body"]["endpoint"] == "make_join")
        .filter_map(|r| r["message"]["request"]["id"].as_u64())
        .collect();
    assert_eq!(ids.len(), 6, "one make_join a round (its own retries re-send the same request)");
    let room = &summary["rooms"]["main"];
    assert_eq!(room["joins_failed"], 1, "{room}");
    let why = room["members_missing"][0]["why"].as_str().unwrap();
    assert!(why.starts_with("join failed: no candidate resident answered in 6 rounds"), "{why}");
}
