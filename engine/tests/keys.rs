//! Server keys fetched over federation, in whole runs: fetched directly and through a notary,
//! cached (one fetch per origin), refetched after a rotation, served stale by a middlebox
//! cache within its ttl and fresh after, stripped by a proxy, a notary down (direct fallback),
//! preshared keys (nothing fetched); replay reproduces runs with notaries; the invariants hold.

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::{LogWriter, MemorySink};
use roomsim_engine::sim::replay::replay;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Three servers in one public v12 room, messages from everyone from 2 s to `stop`; `extra`
/// is appended (keys, middleboxes, faults).
fn scenario(signatures: &str, stop: &str, extra: &str) -> String {
    format!(
        r#"
[scenario]
name = "keys"
end = "quiescence"
max_time = "5m"
quiet_period = "5s"

[defaults]
signatures = "{signatures}"
users = 2
request_timeout = "2s"
request_retries = 1

[[servers]]
prefix = "hs"
count = 3

[[rooms]]
name = "main"
version = "12"
creator = "@u0:hs1"
members = ["*"]

[network]
latency = {{ dist = "uniform", min = "5ms", max = "30ms" }}
min_latency = "5ms"

[[workload]]
room = "main"
users = "*"
start = "2s"
stop = "{stop}"
messages_per_minute = 30

{extra}
"#
    )
}

struct Run {
    log: Vec<Value>,
    raw: Vec<u8>,
    summary: Value,
    violations: Vec<String>,
}

fn run(text: &str, seed: u64) -> Run {
    let sc = parse_scenario("keys.toml", text, &[]).expect("valid scenario");
    let buf = MemorySink::default();
    let mut world = instrumented_world(&sc, seed, LogWriter::new(Box::new(buf.clone())));
    world.run();
    let result = world.finish(true).expect("finish");
    let raw = buf.contents();
    let log = String::from_utf8(raw.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    Run { log, raw, summary: result.summary, violations: result.invariant_violations }
}

fn kind(r: &Value) -> &str {
    r["kind"].as_str().unwrap_or("")
}

/// Node names by index: the servers, then the notaries.
fn node_name(i: u64, notaries: &[&str]) -> String {
    if i < 3 {
        format!("hs{}", i + 1)
    } else {
        notaries[(i - 3) as usize].to_owned()
    }
}

/// (sender, receiver name, endpoint) of every key request sent (first attempts and retries).
fn key_requests(log: &[Value], notaries: &[&str]) -> Vec<(String, String, String)> {
    log.iter()
        .filter(|r| kind(r) == "send")
        .filter_map(|r| {
            let endpoint = r["message"]["request"]["body"]["endpoint"].as_str()?;
            endpoint.starts_with("key_").then(|| {
                let to = node_name(r["to"].as_u64().unwrap(), notaries);
                (r["server"].as_str().unwrap().to_owned(), to, endpoint.to_owned())
            })
        })
        .collect()
}

/// Per event ID: the key IDs its sender's server signed it with.
fn signing_key_ids(log: &[Value]) -> BTreeMap<String, (String, BTreeSet<String>)> {
    log.iter()
        .filter(|r| kind(r) == "pdu")
        .map(|r| {
            let pdu = &r["pdu"];
            let sender = pdu["sender"].as_str().unwrap();
            let domain = sender.split_once(':').unwrap().1.to_owned();
            let ids = pdu["signatures"][&domain].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
            (r["event_id"].as_str().unwrap().to_owned(), (domain, ids))
        })
        .collect()
}

/// (server, event) → last decision.
fn decisions(log: &[Value]) -> Vec<(String, String, String, String)> {
    log.iter()
        .filter(|r| kind(r) == "decision")
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("server"), s("event"), s("decision"), s("stage"))
        })
        .collect()
}

fn keys(summary: &Value, field: &str) -> u64 {
    summary["keys"][field].as_u64().unwrap_or_else(|| panic!("summary keys.{field}: {}", summary["keys"]))
}

fn assert_replays(text: &str, seed: u64, raw: &[u8]) {
    let sc = parse_scenario("keys.toml", text, &[]).unwrap();
    if let Err(d) = replay(&sc, seed, std::io::BufReader::new(raw), |_| {}) {
        panic!("replay departs at {}: {} expected {} got {}", d.seq, d.server, d.expected, d.got);
    }
}

#[test]
fn a_key_is_fetched_directly_once_per_origin_then_served_from_the_store() {
    for mode in ["real", "modelled"] {
        let text = scenario(mode, "20s", "");
        let r = run(&text, 3);
        assert!(r.violations.is_empty(), "{mode}: {:?}", r.violations);
        let requests = key_requests(&r.log, &[]);
        assert!(requests.iter().all(|(_, _, e)| e == "key_server"), "no notaries: only direct fetches");
        let pairs: BTreeSet<(String, String)> = requests.iter().map(|(f, t, _)| (f.clone(), t.clone())).collect();
        assert_eq!(requests.len(), pairs.len(), "{mode}: one fetch per (server, origin): {requests:?}");
        // Every server received PDUs from both others; it fetched each one's key once.
        for from in ["hs1", "hs2", "hs3"] {
            let origins: Vec<_> = pairs.iter().filter(|(f, _)| f == from).collect();
            assert_eq!(origins.len(), 2, "{mode}: {from} fetched {origins:?}");
        }
        let accepted = decisions(&r.log).iter().filter(|d| d.2 == "accepted").count();
        assert!(accepted > 6 * 2, "{mode}: many PDUs judged after two fetches each ({accepted})");
        assert_eq!(keys(&r.summary, "fetches"), 6);
        assert_eq!(keys(&r.summary, "fetch_failures"), 0);
        assert_eq!(keys(&r.summary, "dropped_for_keys"), 0);
        assert!(keys(&r.summary, "parked_for_keys") > 0, "the first PDUs waited for the key");
    }
}

#[test]
fn preshared_keys_are_never_fetched() {
    let text = scenario("modelled", "10s", "[keys]\ndistribution = \"preshared\"");
    let r = run(&text, 3);
    assert!(key_requests(&r.log, &[]).is_empty());
    assert_eq!(keys(&r.summary, "fetches"), 0);
    assert_eq!(keys(&r.summary, "parked_for_keys"), 0);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

#[test]
fn keys_come_through_the_notary_and_directly_when_the_notary_is_down() {
    let notary = "[keys]\nnotaries = [\"notary1\"]";
    let text = scenario("modelled", "15s", notary);
    let r = run(&text, 5);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let requests = key_requests(&r.log, &["notary1"]);
    let from_servers: Vec<_> = requests.iter().filter(|(f, _, _)| f.starts_with("hs")).collect();
    assert!(!from_servers.is_empty());
    assert!(
        from_servers.iter().all(|(_, to, e)| to == "notary1" && e == "key_query"),
        "servers ask the notary only: {from_servers:?}"
    );
    let notary_fetches: BTreeSet<_> =
        requests.iter().filter(|(f, _, _)| f == "notary1").map(|(_, to, e)| (to.clone(), e.clone())).collect();
    assert!(notary_fetches.iter().all(|(_, e)| e == "key_server"), "the notary fetches from origins");
    assert_eq!(keys(&r.summary, "notary_fetches") as usize, notary_fetches.len(), "one fetch per origin");
    assert_eq!(keys(&r.summary, "dropped_for_keys"), 0);
    assert_eq!(r.summary["servers"], 3, "the notary is no homeserver");
    assert_replays(&text, 5, &r.raw);

    // The notary down for the whole run: queries time out, servers fall back to the origins.
    let down = format!("{notary}\n\n[[faults]]\nat = \"0s\"\nkind = \"crash\"\nserver = \"notary1\"");
    let text = scenario("modelled", "15s", &down);
    let r = run(&text, 5);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    let requests = key_requests(&r.log, &["notary1"]);
    assert!(requests.iter().any(|(_, to, e)| to == "notary1" && e == "key_query"));
    assert!(requests.iter().any(|(_, to, e)| to.starts_with("hs") && e == "key_server"), "direct fallback");
    assert!(keys(&r.summary, "fetch_failures") > 0);
    assert_eq!(keys(&r.summary, "dropped_for_keys"), 0, "every key came from the origin");
    let accepted = decisions(&r.log).iter().filter(|d| d.2 == "accepted").count();
    assert!(accepted > 10, "the room works without the notary ({accepted})");
    assert_replays(&text, 5, &r.raw);
}

#[test]
fn after_a_rotation_without_old_keys_the_new_key_is_fetched_and_accepted() {
    for mode in ["real", "modelled"] {
        let rotate = "[[faults]]\nat = \"8s\"\nkind = \"rotate_key\"\nserver = \"hs1\"\nkeep_old = false";
        let text = scenario(mode, "20s", rotate);
        let r = run(&text, 9);
        assert!(r.violations.is_empty(), "{mode}: {:?}", r.violations);
        let signed = signing_key_ids(&r.log);
        let by_k2: BTreeSet<&String> = signed
            .iter()
            .filter(|(_, (domain, ids))| domain == "hs1" && ids.contains("ed25519:k2"))
            .map(|(id, _)| id)
            .collect();
        assert!(!by_k2.is_empty(), "{mode}: hs1 signs with its new key after the rotation");
        // The stored k1 does not serve k2: each other server fetches hs1's keys a second time.
        let requests = key_requests(&r.log, &[]);
        for from in ["hs2", "hs3"] {
            let n = requests.iter().filter(|(f, t, _)| f == from && t == "hs1").count();
            assert_eq!(n, 2, "{mode}: {from} fetched hs1's keys {n} times");
        }
        for (server, event, decision, _) in decisions(&r.log) {
            if by_k2.contains(&event) && server != "hs1" {
                assert_eq!(decision, "accepted", "{mode}: {server} on {event} signed by k2");
            }
        }
        assert_replays(&text, 9, &r.raw);
    }
}

#[test]
fn a_cache_serves_the_stale_key_within_its_ttl_and_the_fresh_one_after() {
    // hs1's keys are cached in front of it from the first fetch (about 2 s) for 20 s; hs1
    // rotates at 8 s without keeping the old key. Until the cached answer expires, a fetch of
    // hs1's keys gets k1 only: events signed by k2 cannot be checked and are dropped; after,
    // the fresh answer lets them in (and the dropped ones come back by get_missing_events).
    let extra = "[[network.middleboxes]]\nserver = \"hs1\"\nkind = \"cache\"\ncache_ttl = \"20s\"\n\n\
                 [[faults]]\nat = \"8s\"\nkind = \"rotate_key\"\nserver = \"hs1\"\nkeep_old = false";
    let text = scenario("modelled", "40s", extra);
    let r = run(&text, 11);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(keys(&r.summary, "cache_answers") > 0, "{}", r.summary["keys"]);
    assert!(keys(&r.summary, "stale_cache_answers") > 0, "{}", r.summary["keys"]);
    assert!(keys(&r.summary, "dropped_for_keys") > 0, "{}", r.summary["keys"]);
    let signed = signing_key_ids(&r.log);
    let k2 = |e: &str| signed.get(e).is_some_and(|(d, ids)| d == "hs1" && ids.contains("ed25519:k2"));
    let all = decisions(&r.log);
    let dropped: Vec<_> = all.iter().filter(|d| d.2 == "dropped" && k2(&d.1)).collect();
    assert!(!dropped.is_empty());
    assert!(dropped.iter().all(|d| d.3 == "signature"), "dropped at stage signature");
    // After the ttl, the same events (fetched again) are accepted by the same servers.
    for d in &dropped {
        assert!(
            all.iter().any(|a| a.0 == d.0 && a.1 == d.1 && a.2 == "accepted"),
            "{} never accepted {} once the cache expired",
            d.0,
            d.1
        );
    }
    assert_replays(&text, 11, &r.raw);
}

#[test]
fn a_proxy_that_drops_unknown_keys_strips_the_rotated_key() {
    let extra = "[[network.middleboxes]]\nserver = \"hs1\"\nkind = \"reverse_proxy\"\ndrop_unknown_keys = true\n\n\
                 [[faults]]\nat = \"8s\"\nkind = \"rotate_key\"\nserver = \"hs1\"\nkeep_old = true";
    let text = scenario("real", "20s", extra);
    let r = run(&text, 13);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(keys(&r.summary, "entries_stripped") > 0, "{}", r.summary["keys"]);
    assert!(keys(&r.summary, "fetch_failures") > 0, "a stripped answer does not verify");
    let signed = signing_key_ids(&r.log);
    let k2 = |e: &str| signed.get(e).is_some_and(|(d, ids)| d == "hs1" && ids.contains("ed25519:k2"));
    let all = decisions(&r.log);
    assert!(all.iter().any(|d| d.0 != "hs1" && k2(&d.1) && d.2 == "dropped"));
    assert!(!all.iter().any(|d| d.0 != "hs1" && k2(&d.1) && d.2 == "accepted"), "nobody can get k2 through the proxy");
    // Before the rotation the proxy knew every key: hs1's k1 events were accepted.
    assert!(all.iter().any(|d| d.0 != "hs1" && signed.get(&d.1).is_some_and(|(s, _)| s == "hs1") && d.2 == "accepted"));
    // By hand: hs2 and hs3 each lack exactly hs1's k2-signed events (hs1 holds every event:
    // the others' events never depend on a key it cannot get), so the room's
    // events_missing_at_end is twice their number.
    let k2_events: BTreeSet<&String> = signed.keys().filter(|e| k2(e)).collect();
    assert!(!k2_events.is_empty());
    assert_eq!(
        r.summary["rooms"]["main"]["events_missing_at_end"].as_u64(),
        Some(2 * k2_events.len() as u64),
        "{} k2 events",
        k2_events.len()
    );
}

#[test]
fn key_settings_are_checked_with_their_location() {
    let bad = [
        ("[keys]\ndistribution = \"gossip\"", "gossip"),
        ("[keys]\nnotaries = [\"hs1\"]", "a node of its own"),
        ("[keys]\ndistribution = \"preshared\"\nnotaries = [\"n1\"]", "only apply"),
        ("[[faults]]\nat = \"1s\"\nkind = \"rotate_key\"\nserver = \"hs1\"", "keep_old"),
        (
            "[[faults]]\nat = \"1s\"\nkind = \"rotate_key\"\nserver = \"hs1\"\nkeep_old = true\nduration = \"1s\"",
            "duration",
        ),
        ("[[faults]]\nat = \"1s\"\nkind = \"crash\"\nserver = \"notary9\"", "notary9"),
    ];
    for (extra, expected) in bad {
        let text = scenario("modelled", "10s", extra);
        let err = parse_scenario("keys.toml", &text, &[]).expect_err(extra);
        let shown = err.message().to_owned();
        assert!(shown.contains(expected), "{extra}: {shown}");
        assert!(err.line_column().is_some(), "{extra}: the error is located");
    }
    let trusted = scenario("modelled", "10s", "[keys]\nnotaries = [\"n1\"]")
        .replace("request_retries = 1", "request_retries = 1\ntrusted_key_servers = [\"n2\"]");
    let err = parse_scenario("keys.toml", &trusted, &[]).expect_err("unknown notary");
    assert!(err.message().contains("unknown notary \"n2\""), "{}", err.message());
    assert!(err.line_column().is_some());
    // A notary may be crashed and put on a partition side.
    let ok = "[keys]\nnotaries = [\"n1\"]\n\n[[faults]]\nat = \"1s\"\nkind = \"crash\"\nserver = \"n1\"\nduration = \"2s\"\n\n\
              [[faults]]\nat = \"4s\"\nkind = \"partition\"\ngroups = [[\"n1\", \"hs1\"]]\nduration = \"2s\"";
    parse_scenario("keys.toml", &scenario("modelled", "10s", ok), &[]).expect("notaries are nameable in faults");
}
