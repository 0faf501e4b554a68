//! Byzantine servers in whole runs: `bad_signatures` (a real signature by a wrong key) is
//! dropped by every honest server in both signature modes, and `withhold` keeps its events
//! from exactly the servers of `withhold_from`.

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::protocol::crypto;
use roomsim_engine::protocol::pdu::Pdu;
use roomsim_engine::protocol::room_version::V12;
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::{LogWriter, MemorySink};
use roomsim_engine::sim::rng::RngStreams;
use roomsim_engine::sim::server::KEY_ID;
use roomsim_engine::sim::world::server_key;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Four honest servers and `evil`, one public v12 room everyone joins, messages from all.
fn scenario(signatures: &str, evil: &str) -> String {
    format!(
        r#"
[scenario]
name = "byz"
end = "quiescence"
max_time = "3m"
quiet_period = "5s"

[defaults]
signatures = "{signatures}"
users = 2

[[servers]]
prefix = "hs"
count = 4

[[servers]]
name = "evil"
{evil}

[[rooms]]
name = "main"
version = "12"
creator = "@u0:hs1"
members = ["*"]

[network]
latency = {{ dist = "uniform", min = "5ms", max = "40ms" }}
min_latency = "5ms"

[[workload]]
room = "main"
users = "*"
start = "5s"
stop = "30s"
messages_per_minute = 20
"#
    )
}

/// Runs `text` with `seed`; the log records, parsed.
fn run(text: &str, seed: u64) -> Vec<Value> {
    let sc = parse_scenario("byz.toml", text, &[]).expect("valid scenario");
    let buf = MemorySink::default();
    let mut world = instrumented_world(&sc, seed, LogWriter::new(Box::new(buf.clone())));
    world.run();
    world.finish(true).expect("finish");
    let log = buf.contents();
    String::from_utf8(log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn kind(r: &Value) -> &str {
    r["kind"].as_str().unwrap_or("")
}

/// Every PDU of the log by event ID.
fn pdus(log: &[Value]) -> BTreeMap<String, Pdu> {
    log.iter()
        .filter(|r| kind(r) == "pdu")
        .map(|r| {
            let map = r["pdu"].as_object().expect("PDU JSON").clone();
            let pdu = Pdu::from_object(map, &V12).expect("a logged PDU parses");
            (r["event_id"].as_str().unwrap().to_owned(), pdu)
        })
        .collect()
}

/// (server, event, decision) of every decision.
fn decisions(log: &[Value]) -> Vec<(String, String, String)> {
    log.iter()
        .filter(|r| kind(r) == "decision")
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("server"), s("event"), s("decision"))
        })
        .collect()
}

#[test]
fn bad_signatures_are_dropped_by_honest_servers_in_both_modes() {
    let seed = 7;
    let evil = "byzantine = \"bad_signatures\"\nbyzantine_probability = 0.5";
    let mut per_mode = Vec::new();
    for mode in ["real", "modelled"] {
        let log = run(&scenario(mode, evil), seed);
        let all = pdus(&log);
        let evil_key = server_key(&RngStreams::new(seed), "evil").public_key();
        // Forged: evil's signature does not verify with evil's published key.
        let forged: BTreeSet<&String> = all
            .iter()
            .filter(|(_, p)| p.sender.ends_with(":evil"))
            .filter(|(_, p)| {
                let sig = crypto::signature_of(&p.json, "evil", KEY_ID).expect("a well-formed signature, no marker");
                !crypto::verify(&evil_key, p.signing_bytes(&V12), &sig)
            })
            .map(|(id, _)| id)
            .collect();
        let honest_evil: BTreeSet<&String> = all
            .iter()
            .filter(|(id, p)| p.sender.ends_with(":evil") && !forged.contains(id))
            .map(|(id, _)| id)
            .collect();
        let mut dropped = 0;
        for (server, event, decision) in decisions(&log) {
            if server == "evil" {
                continue;
            }
            if forged.contains(&event) {
                assert_eq!(decision, "dropped", "{mode}: {server} on forged {event}");
                dropped += 1;
            } else {
                assert_ne!(decision, "dropped", "{mode}: {server} dropped {event}, which is not forged");
            }
        }
        assert!(dropped > 0, "{mode}: some forged event reached an honest server");
        assert!(!honest_evil.is_empty(), "{mode}: evil also sent well-signed events");
        per_mode.push(decisions(&log));
    }
    // A modelled check gives the verdict a real one gives.
    assert_eq!(per_mode[0], per_mode[1], "modelled and real signatures decide alike");
}

/// Per destination name, the event IDs of `sender_domain`'s users that `server` sent in
/// transactions.
fn sent_by(
    log: &[Value],
    server: &str,
    sender_domain: &str,
    all: &BTreeMap<String, Pdu>,
) -> BTreeMap<String, BTreeSet<String>> {
    let names = ["hs1", "hs2", "hs3", "hs4", "evil"];
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in log.iter().filter(|r| kind(r) == "send" && r["server"] == server) {
        let body = &r["message"]["request"]["body"];
        if body["endpoint"] != "send" {
            continue;
        }
        let to = names[r["to"].as_u64().unwrap() as usize].to_owned();
        for id in body["pdus"].as_array().unwrap() {
            let id = id.as_str().unwrap();
            if all[id].sender.ends_with(&format!(":{sender_domain}")) {
                out.entry(to.clone()).or_default().insert(id.to_owned());
            }
        }
    }
    out
}

/// The events `server` logged as withheld.
fn withheld(log: &[Value], server: &str) -> BTreeSet<String> {
    log.iter()
        .filter(|r| kind(r) == "byzantine" && r["server"] == server && r["behaviour"] == "withhold")
        .map(|r| r["event"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn withhold_keeps_events_from_exactly_the_chosen_servers() {
    let evil = "byzantine = \"withhold\"\nwithhold_from = [\"hs2\", \"hs3\"]";
    let log = run(&scenario("modelled", evil), 3);
    let all = pdus(&log);
    let kept = withheld(&log, "evil");
    assert!(kept.len() >= 5, "evil's messages are withheld: {}", kept.len());
    let sent = sent_by(&log, "evil", "evil", &all);
    for to in ["hs2", "hs3"] {
        let leaked: Vec<_> = sent.get(to).into_iter().flatten().filter(|id| kept.contains(*id)).collect();
        assert!(leaked.is_empty(), "withheld events sent to {to}: {leaked:?}");
    }
    for to in ["hs1", "hs4"] {
        let got = sent.get(to).cloned().unwrap_or_default();
        assert!(
            kept.iter().all(|id| got.contains(id)),
            "{to} gets every withheld event: missing {:?}",
            kept.difference(&got)
        );
    }
}

#[test]
fn withhold_without_a_list_keeps_events_from_everyone() {
    let log = run(&scenario("modelled", "byzantine = \"withhold\""), 3);
    let all = pdus(&log);
    let kept = withheld(&log, "evil");
    assert!(!kept.is_empty());
    let sent = sent_by(&log, "evil", "evil", &all);
    for (to, ids) in &sent {
        assert!(ids.iter().all(|id| !kept.contains(id)), "a withheld event was sent to {to}");
    }
    // Not vacuous: transactions are parsed (the honest servers' are there).
    assert!(!sent_by(&log, "hs1", "hs1", &all).is_empty(), "transactions are parsed");
}

#[test]
fn withhold_from_is_refused_where_it_cannot_act() {
    let text = scenario("modelled", "byzantine = \"equivocate\"\nwithhold_from = [\"hs2\"]");
    let e = parse_scenario("byz.toml", &text, &[]).unwrap_err();
    assert!(e.message().contains("only applies to servers with byzantine = \"withhold\""), "{e}");
    let text = scenario("modelled", "byzantine = \"withhold\"\nwithhold_from = [\"hs9\"]");
    let e = parse_scenario("byz.toml", &text, &[]).unwrap_err();
    assert!(e.message().contains("unknown server or group \"hs9\"") || e.message().contains("hs9"), "{e}");
    let text = scenario("modelled", "byzantine = \"withhold\"\nwithhold_from = [\"evil\"]");
    let e = parse_scenario("byz.toml", &text, &[]).unwrap_err();
    assert!(e.message().contains("from nobody but itself"), "{e}");
}
