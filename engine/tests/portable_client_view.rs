//! The MSC4345 §7–§8 / MSC4348 client-side view in whole runs (`summary.json`
//! `portable_client_view`, the servers' `portable_shown` records): every server ends showing
//! every sender of `participation-moves` as `@name:<domain of the server co-signing its current
//! membership>`; each move re-binds the shown domain to the new server at every server; a
//! two-server room costs exactly one lookup of each kind per server; a domain whose key query
//! omits its own key leaves its senders unverified elsewhere (and the servers disagree on how
//! they show them); the run is the same on 1 and 2 threads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::protocol::pdu::Pdu;
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::{LogWriter, MemorySink};
use roomsim_engine::sim::world::World;
use serde_json::Value;

const MOVES: &str = include_str!("../../scenarios/participation-moves.toml");

/// Two servers, one user each: hs1 creates the room, hs2 joins through the handshake, both
/// users talk.
const TWO: &str = r#"
[scenario]
name = "two"
end = "40s"

[defaults]
users = 1

[[servers]]
prefix = "hs"
count = 2

[[rooms]]
name = "main"
version = "org.matrix.msc4348.12"
creator = "@u0:hs1"
join_rule = "public"
members = ["hs1", "hs2"]

[[workload]]
room = "main"
users = "*"
messages_per_minute = 6
start = "5s"
stop = "35s"
"#;

struct Run {
    raw: Vec<u8>,
    summary: Value,
    violations: Vec<String>,
    pdus: Vec<Arc<Pdu>>,
}

/// Runs `text` with seed `seed`; `setup` may plant a fault on the world first.
fn run_with(text: &str, seed: u64, setup: impl FnOnce(&mut World)) -> Run {
    let sc = parse_scenario("s.toml", text, &[]).expect("valid scenario");
    let buf = MemorySink::default();
    let mut world = instrumented_world(&sc, seed, LogWriter::new(Box::new(buf.clone())));
    setup(&mut world);
    world.run();
    let mut result = world.finish(true).expect("finish");
    Run {
        raw: buf.contents(),
        summary: result.summary,
        violations: result.invariant_violations,
        pdus: result.rooms.remove("main").expect("room main was created"),
    }
}

fn run(text: &str, seed: u64) -> Run {
    run_with(text, seed, |_| {})
}

fn log_lines(raw: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(raw).expect("UTF-8 JSON Lines");
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("JSON")).collect()
}

/// `portable_shown` records: (t_us, server, sender, shown, verified), in log order.
fn shown_records(raw: &[u8]) -> Vec<(u64, String, String, String, bool)> {
    log_lines(raw)
        .into_iter()
        .filter(|l| l["kind"] == "portable_shown")
        .map(|l| {
            let s = |k: &str| l[k].as_str().expect("a string").to_owned();
            (l["t_us"].as_u64().expect("t_us"), s("server"), s("sender"), s("shown"), l["verified"] == true)
        })
        .collect()
}

fn content<'a>(p: &'a Pdu, field: &str) -> Option<&'a str> {
    p.json["content"][field].as_str()
}

/// The one server key co-signing an event (its signers but the sender's account key).
fn co_signer(p: &Pdu) -> String {
    let account = p.sender.strip_prefix('@').expect("a user ID");
    let keys: Vec<&String> =
        p.json["signatures"].as_object().expect("signed").keys().filter(|k| *k != account).collect();
    assert_eq!(keys.len(), 1, "one co-signer on a join: {keys:?}");
    keys[0].clone()
}

/// Server key → the domain its accepted participation names.
fn key_domains(pdus: &[Arc<Pdu>]) -> BTreeMap<String, String> {
    pdus.iter()
        .filter(|p| p.event_type == "m.server.participation" && content(p, "participation") == Some("accepted"))
        .filter_map(|p| Some((p.state_key.clone()?, content(p, "unverified_domain")?.to_owned())))
        .collect()
}

/// Per account: its own joins in creation order, (when created in µs of simulated time, by the
/// log's `pdu` record, co-signing key).
fn joins(pdus: &[Arc<Pdu>], raw: &[u8]) -> BTreeMap<String, Vec<(u64, String)>> {
    let created: BTreeMap<String, u64> = log_lines(raw)
        .into_iter()
        .filter(|l| l["kind"] == "pdu")
        .filter_map(|l| Some((l["event_id"].as_str()?.to_owned(), l["t_us"].as_u64()?)))
        .collect();
    let mut out: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for p in pdus {
        let own = p.event_type == "m.room.member" && p.state_key.as_deref() == Some(p.sender.as_str());
        if own && content(p, "membership") == Some("join") {
            out.entry(p.sender.clone()).or_default().push((created[&p.event_id], co_signer(p)));
        }
    }
    out
}

fn domain_of(user_id: &str) -> &str {
    user_id.split_once(':').map_or("", |(_, d)| d)
}

#[test]
fn every_server_ends_showing_every_sender_verified_with_its_current_co_signers_domain() {
    for seed in [1, 2] {
        let r = run(MOVES, seed);
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
        let v = &r.summary["portable_client_view"];
        assert_eq!(v["client_view_divergent_events"], 0, "seed {seed}: {v}");
        assert_eq!(v["unverified_events"], 0, "seed {seed}: {v}");
        assert_eq!(v["senders_shown_unverified"], 0, "seed {seed}: {v}");
        let domains = key_domains(&r.pdus);
        let records = shown_records(&r.raw);
        let mut last: BTreeMap<(String, String), (String, bool)> = BTreeMap::new();
        let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (_, server, sender, shown, verified) in &records {
            last.insert((server.clone(), sender.clone()), (shown.clone(), *verified));
            if *verified {
                let name = shown.trim_start_matches('@').split(':').next().unwrap_or_default().to_owned();
                names.entry(sender.clone()).or_default().insert(name);
            }
        }
        let last_unsigned: BTreeMap<(String, String), Value> = log_lines(&r.raw)
            .into_iter()
            .filter(|l| l["kind"] == "portable_shown")
            .map(|l| {
                let s = |k: &str| l[k].as_str().expect("a string").to_owned();
                ((s("server"), s("sender")), l["unsigned"].clone())
            })
            .collect();
        let joins = joins(&r.pdus, &r.raw);
        assert_eq!(joins.len(), 6, "seed {seed}: the six accounts of hs1..hs3 joined");
        for (account, list) in &joins {
            let name = names.get(account).expect("shown by name somewhere");
            assert_eq!(name.len(), 1, "seed {seed}: {account} is shown by one name: {name:?}");
            assert!(name.iter().all(|n| n == "u0" || n == "u1"), "{name:?}");
            let current = &domains[&list.last().expect("a join").1];
            for server in ["hs1", "hs2", "hs3", "hs4"] {
                let (shown, verified) = &last[&(server.to_owned(), account.clone())];
                assert!(verified, "seed {seed}: {server} shows {account} as {shown}");
                assert_eq!(domain_of(shown), current, "seed {seed}: {server} shows {account} as {shown}");
                // The `unsigned` annotations of the events it serves: the bare name and the
                // verified domain of the current co-signer (MSC4348 client-side, MSC4345 §8).
                let unsigned = &last_unsigned[&(server.to_owned(), account.clone())];
                let name = shown.trim_start_matches('@').split(':').next().unwrap_or_default();
                assert_eq!(unsigned["account"], name, "seed {seed}: {server}, {account}: {unsigned}");
                assert_eq!(unsigned["server_domain"], current.as_str(), "seed {seed}: {server}, {account}: {unsigned}");
            }
        }
    }
}

#[test]
fn after_a_move_every_server_shows_the_new_servers_domain() {
    let r = run(MOVES, 1);
    let domains = key_domains(&r.pdus);
    let records = shown_records(&r.raw);
    let mut moves = 0;
    for (account, list) in joins(&r.pdus, &r.raw) {
        for pair in list.windows(2) {
            let ((_, old), (at_us, new)) = (&pair[0], &pair[1]);
            if old == new {
                continue;
            }
            moves += 1;
            let domain = &domains[new];
            for server in ["hs1", "hs2", "hs3", "hs4"] {
                let hit = records.iter().any(|(t, s, who, shown, verified)| {
                    *t >= *at_us && s == server && *who == account && *verified && domain_of(shown) == domain
                });
                assert!(hit, "{server} never showed {account} with {domain} after its move at {at_us} µs");
            }
        }
    }
    assert_eq!(moves, 3, "participation-moves has three moves");
    let v = &r.summary["portable_client_view"];
    // Each move's join reaches all four servers (hs4 with the state of its own join).
    assert_eq!(v["reverified_after_move_ms"]["count"], 12, "{v}");
    assert_eq!(v["reverified_after_move_unfinished"], 0, "{v}");
}

/// Two servers, one remote sender each way: hs2 asks hs1 once about hs1's key and once about
/// hs1's account, after hs2's own key is accepted; hs1 asks hs2 the same once hs2's join is
/// co-signed by hs2's key. Nothing fails, so nothing is retried: 2 + 2 lookups in all.
#[test]
fn two_servers_cost_one_lookup_of_each_kind_per_server() {
    for seed in [1, 2, 3] {
        let r = run(TWO, seed);
        let v = &r.summary["portable_client_view"];
        assert_eq!((v["key_v3_queries"].as_u64(), v["portable_account_queries"].as_u64()), (Some(2), Some(2)), "{v}");
        let mut per: BTreeMap<(String, String), u64> = BTreeMap::new();
        for l in log_lines(&r.raw) {
            let endpoint = l["message"]["request"]["body"]["endpoint"].as_str().unwrap_or_default().to_owned();
            if l["kind"] == "send" && (endpoint == "key_v3_query" || endpoint == "portable_accounts") {
                *per.entry((l["server"].as_str().unwrap_or_default().to_owned(), endpoint)).or_insert(0) += 1;
            }
        }
        let expected: BTreeMap<(String, String), u64> = [
            (("hs1".into(), "key_v3_query".into()), 1),
            (("hs1".into(), "portable_accounts".into()), 1),
            (("hs2".into(), "key_v3_query".into()), 1),
            (("hs2".into(), "portable_accounts".into()), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(per, expected, "seed {seed}");
        assert_eq!(v["unverified_events"], 0, "seed {seed}: {v}");
        assert_eq!(v["time_to_verified_ms"]["count"], 2, "seed {seed}: one remote sender per server: {v}");
    }
}

/// A faulty hs2 whose `/key/v3/query` answers omit its own key: hs1 never verifies hs2's
/// domain, so it shows `@u0:hs2` by its account key while hs2 shows it by name. hs1 asks
/// again on the retry schedule (10 s, 30 s, 60 s: 1 + 3 key queries in a 3-minute run) and
/// settles.
#[test]
fn a_domain_that_omits_its_key_leaves_its_senders_unverified_and_the_view_divergent() {
    let long = TWO.replace("end = \"40s\"", "end = \"3m\"").replace("stop = \"35s\"", "stop = \"170s\"");
    assert_ne!(long, TWO);
    let honest = run(&long, 1);
    let planted = run_with(&long, 1, |world| {
        let hs2 = world.servers().position(|s| s.name == "hs2").expect("hs2");
        world.nodes[hs2].as_server_mut().expect("a homeserver").domain_view.omit_own_key_for_test = true;
    });
    let (h, p) = (&honest.summary["portable_client_view"], &planted.summary["portable_client_view"]);
    assert_eq!((h["unverified_events"].as_u64(), h["client_view_divergent_events"].as_u64()), (Some(0), Some(0)));
    assert!(p["unverified_events"].as_u64().unwrap_or(0) > 0, "{p}");
    assert!(p["client_view_divergent_events"].as_u64().unwrap_or(0) > 0, "{p}");
    assert_eq!(p["key_v3_queries"], 5, "hs2 asks once, hs1 once and three retries: {p}");
    // Integrated over time: the unverified events of the planted run outweigh the honest run's
    // short pending windows, and its divergence lasts (the honest run's is only while pending).
    let secs = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {v}"));
    assert!(secs(p, "unverified_event_seconds") > secs(h, "unverified_event_seconds"), "{p} vs {h}");
    assert!(secs(p, "client_view_divergent_event_seconds") > 0.0, "{p}");
    let hs1_last = shown_records(&planted.raw).into_iter().filter(|r| r.1 == "hs1" && !r.3.contains(":hs1")).last();
    let (_, _, sender, shown, verified) = hs1_last.expect("hs1 shows hs2's user");
    assert_eq!((shown.as_str(), verified), (sender.as_str(), false), "hs1 shows hs2's user by its account key");
}

#[test]
fn a_portable_client_view_run_is_the_same_on_one_and_two_threads() {
    let sc = parse_scenario("s.toml", MOVES, &[]).expect("valid scenario");
    let on = |threads: usize| {
        let buf = MemorySink::default();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let (out, stats) = pool.install(|| {
            let mut world = instrumented_world(&sc, 1, LogWriter::new(Box::new(buf.clone())));
            world.set_parallel_threshold(2);
            world.run();
            let stats = world.window_stats();
            let result = world.finish(true).expect("finish");
            let ids: Vec<String> = result.rooms["main"].iter().map(|p| p.event_id.clone()).collect();
            ((result.summary, ids, result.invariant_violations), stats)
        });
        (buf.contents(), out, stats)
    };
    let (log1, out1, _) = on(1);
    let (log2, out2, stats2) = on(2);
    assert!(stats2.parallel > 0, "the parallel path was exercised");
    assert!(out1.0["portable_client_view"]["key_v3_queries"].as_u64().unwrap_or(0) > 0, "{}", out1.0);
    assert!(String::from_utf8_lossy(&log1).contains("\"portable_shown\""), "shown records are logged");
    assert_eq!(out1, out2);
    assert!(log1 == log2, "logs differ between 1 and 2 threads");
}
