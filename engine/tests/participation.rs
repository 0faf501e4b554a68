//! MSC4348 portable accounts on MSC4345 server participation in whole runs: three servers share
//! a room of version `org.matrix.msc4348.12`; hs2 and hs3 join through the participation
//! handshake, `@u0:hs2` moves to hs3 at 20 s, the creator revokes hs2's room key at 30 s.
//! The run is sound; every PDU passes `dag verify` with no key file, signed by the account key
//! and co-signed by exactly one server key (a participation request also by its resident); the
//! move rebinds the account to hs3's key; after the revocation nothing co-signed by hs2's key is
//! accepted and hs2's remaining user is refused locally (msc4348 8.3.1); replay reproduces the
//! run; 1 and 2 threads give the same run; `move` and `revoke` are located errors elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::protocol::pdu::Pdu;
use roomsim_engine::protocol::room_version::lookup;
use roomsim_engine::protocol::verify::{verify_dag, VerifyOptions};
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::{LogWriter, MemorySink};
use roomsim_engine::sim::replay::replay;
use serde_json::Value;

const VERSION: &str = "org.matrix.msc4348.12";

const SCENARIO: &str = r#"
[scenario]
name = "participation"
end = "60s"

[defaults]
users = 2

[[servers]]
prefix = "hs"
count = 3

[[rooms]]
name = "main"
version = "org.matrix.msc4348.12"
creator = "@u0:hs1"
join_rule = "public"
members = ["hs1", "hs2", "hs3"]

[[workload]]
room = "main"
users = "*"
messages_per_minute = 6
start = "10s"
stop = "50s"

[[timeline]]
at = "20s"
action = "move"
room = "main"
user = "@u0:hs2"
server = "hs3"

[[timeline]]
at = "30s"
action = "revoke"
room = "main"
user = "@u0:hs1"
server = "hs2"
"#;

/// The seeds every run property is checked on.
const SEEDS: [u64; 3] = [1, 2, 3];

/// When the revocation is made (the scenario's `at`), in µs.
const REVOKE_AT_US: u64 = 30_000_000;

struct Run {
    raw: Vec<u8>,
    summary: Value,
    violations: Vec<String>,
    pdus: Vec<Arc<Pdu>>,
}

fn run(seed: u64) -> Run {
    let sc = parse_scenario("p.toml", SCENARIO, &[]).expect("valid scenario");
    let buf = MemorySink::default();
    let mut world = instrumented_world(&sc, seed, LogWriter::new(Box::new(buf.clone())));
    world.run();
    let mut result = world.finish(true).expect("finish");
    Run {
        raw: buf.contents(),
        summary: result.summary,
        violations: result.invariant_violations,
        pdus: result.rooms.remove("main").expect("room main was created"),
    }
}

/// The log as JSON values, one per line.
fn log_lines(raw: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(raw).expect("the log is UTF-8 JSON Lines");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The signing entities of a PDU (the keys of its `signatures` object).
fn signers(p: &Pdu) -> Vec<String> {
    p.json["signatures"].as_object().expect("signatures object").keys().cloned().collect()
}

/// The account key of the sender (`@<key>` → `<key>`).
fn account_of(p: &Pdu) -> &str {
    p.sender.strip_prefix('@').expect("a user ID")
}

/// The server keys co-signing a PDU: every signer but the sender's account key.
fn co_signers(p: &Pdu) -> Vec<String> {
    signers(p).into_iter().filter(|k| k != account_of(p)).collect()
}

fn content<'a>(p: &'a Pdu, field: &str) -> Option<&'a str> {
    p.json["content"][field].as_str()
}

fn is_participation(p: &Pdu, state: &str) -> bool {
    p.event_type == "m.server.participation" && content(p, "participation") == Some(state)
}

fn is_join(p: &Pdu) -> bool {
    p.event_type == "m.room.member" && content(p, "membership") == Some("join")
}

/// The room key of `domain`: the state key of its accepted participation.
fn server_key(pdus: &[Arc<Pdu>], domain: &str) -> String {
    let keys: Vec<&str> = pdus
        .iter()
        .filter(|p| is_participation(p, "accepted") && content(p, "unverified_domain") == Some(domain))
        .map(|p| p.state_key.as_deref().expect("a state event"))
        .collect();
    assert_eq!(keys.len(), 1, "one accepted participation of {domain}: {keys:?}");
    keys[0].to_owned()
}

fn describe(p: &Pdu) -> String {
    format!(
        "{} {} ts={} sender={} state_key={:?} content={} signers={:?}",
        p.event_id,
        p.event_type,
        p.origin_server_ts,
        p.sender,
        p.state_key,
        Value::Object(p.json["content"].as_object().cloned().unwrap_or_default()),
        signers(p)
    )
}

#[test]
fn a_portable_account_run_is_sound() {
    for seed in SEEDS {
        let r = run(seed);
        let main = &r.summary["rooms"]["main"];
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
        assert_eq!(main["auth_disagreements"], 0, "seed {seed}: {main}");
        assert_eq!(main["agreed_at_end"], true, "seed {seed}: {main}");
        assert_eq!(main["members_missing"], serde_json::json!([]), "seed {seed}: {main}");
        assert_eq!(main["servers_in_room"], 3, "seed {seed}: {main}");
        assert_eq!(main["room_version"], VERSION, "seed {seed}: {main}");
        assert_eq!(main["events"].as_u64(), Some(r.pdus.len() as u64), "seed {seed}: {main}");
    }
}

#[test]
fn every_pdu_passes_dag_verify_with_no_key_file_and_carries_the_msc4348_signatures() {
    let version = lookup(VERSION).expect("the version is implemented");
    for seed in SEEDS {
        let r = run(seed);
        let create: Vec<&Arc<Pdu>> = r.pdus.iter().filter(|p| p.event_type == "m.room.create").collect();
        assert_eq!(create.len(), 1, "seed {seed}");
        assert_eq!(content(create[0], "room_version"), Some(VERSION), "seed {seed}: {}", describe(create[0]));
        let verified = verify_dag(version, r.pdus.iter().map(|p| (**p).clone()).collect(), &VerifyOptions::default());
        let report = &verified.report;
        assert_eq!(report.room_version, VERSION, "seed {seed}");
        assert_eq!(report.events, r.pdus.len(), "seed {seed}");
        assert_eq!(report.verdicts.len(), r.pdus.len(), "seed {seed}: every PDU judged");
        let rejected: Vec<String> = report
            .verdicts
            .iter()
            .filter(|(_, v)| v.verdict != "accepted")
            .map(|(id, v)| format!("{id}: {} {:?}", v.verdict, v.reason))
            .collect();
        assert!(rejected.is_empty(), "seed {seed}: {rejected:?}");
        assert_eq!((report.accepted, report.rejected), (r.pdus.len(), 0), "seed {seed}");
        let mut requests = 0;
        for p in &r.pdus {
            let s = signers(p);
            assert!(s.iter().any(|k| k == account_of(p)), "seed {seed}: signed by the account key: {}", describe(p));
            if is_participation(p, "requested") {
                requests += 1;
                // The account, the requesting server's key (the subject) and the resident's.
                assert_eq!(s.len(), 3, "seed {seed}: {}", describe(p));
                let subject = p.state_key.as_deref().unwrap();
                let via = content(p, "request_authorised_via_server").expect("a request names its resident");
                assert!(s.iter().any(|k| k == subject), "seed {seed}: {}", describe(p));
                assert!(s.iter().any(|k| k == via), "seed {seed}: {}", describe(p));
                assert_ne!(subject, via, "seed {seed}");
            } else {
                assert_eq!(s.len(), 2, "seed {seed}: {}", describe(p));
            }
        }
        // hs2 and hs3 each ask once; hs1 bootstraps.
        assert_eq!(requests, 2, "seed {seed}");
    }
}

#[test]
fn the_moved_account_joins_again_through_hs3_and_is_never_co_signed_by_hs2_after() {
    for seed in SEEDS {
        let r = run(seed);
        let (hs2, hs3) = (server_key(&r.pdus, "hs2"), server_key(&r.pdus, "hs3"));
        let mut joins: BTreeMap<&str, Vec<&Arc<Pdu>>> = BTreeMap::new();
        for p in r.pdus.iter().filter(|p| is_join(p)) {
            assert_eq!(p.state_key.as_deref(), Some(p.sender.as_str()), "seed {seed}: own joins only");
            joins.entry(p.state_key.as_deref().unwrap()).or_default().push(p);
        }
        assert_eq!(joins.len(), 6, "seed {seed}: six accounts joined: {:?}", joins.keys());
        let twice: Vec<(&str, &Vec<&Arc<Pdu>>)> =
            joins.iter().filter(|(_, j)| j.len() > 1).map(|(a, j)| (*a, j)).collect();
        assert_eq!(
            twice.len(),
            1,
            "seed {seed}: one account joined twice: {:?}",
            twice.iter().map(|t| t.0).collect::<Vec<_>>()
        );
        let (account, js) = twice[0];
        assert_eq!(js.len(), 2, "seed {seed}");
        let (first, second) = (js[0], js[1]);
        let (k1, k2) = (co_signers(first), co_signers(second));
        assert_eq!(k1, [hs2.clone()], "seed {seed}: the first join through hs2: {}", describe(first));
        assert_eq!(k2, [hs3.clone()], "seed {seed}: the move through hs3: {}", describe(second));
        assert!(second.origin_server_ts > first.origin_server_ts, "seed {seed}");
        // The move's log record names the second join.
        let moves: Vec<Value> =
            log_lines(&r.raw).into_iter().filter(|l| l["kind"] == "action" && l["action"] == "move").collect();
        assert_eq!(moves.len(), 1, "seed {seed}: {moves:?}");
        assert_eq!(moves[0]["user"], "@u0:hs2", "seed {seed}");
        assert_eq!(moves[0]["server"], "hs3", "seed {seed}: handled by the new server");
        assert_eq!(moves[0]["t_us"], 20_000_000, "seed {seed}");
        assert_eq!(moves[0]["event"].as_str(), Some(second.event_id.as_str()), "seed {seed}: {moves:?}");
        // After the move the account speaks through hs3 only.
        let after: Vec<&Arc<Pdu>> = r
            .pdus
            .iter()
            .filter(|p| {
                account_of(p) == account.trim_start_matches('@') && p.origin_server_ts > second.origin_server_ts
            })
            .collect();
        let through_hs2: Vec<String> =
            after.iter().filter(|p| co_signers(p).contains(&hs2)).map(|p| describe(p)).collect();
        assert!(through_hs2.is_empty(), "seed {seed}: {through_hs2:?}");
        assert!(!after.is_empty(), "seed {seed}: the moved account spoke after its move");
        assert!(after.iter().all(|p| co_signers(p) == [hs3.clone()]), "seed {seed}");
    }
}

#[test]
fn after_the_revocation_nothing_co_signed_by_hs2_is_accepted_and_hs2_s_user_is_refused() {
    let version = lookup(VERSION).expect("the version is implemented");
    let mut refused_total = 0;
    for seed in SEEDS {
        let r = run(seed);
        let hs2 = server_key(&r.pdus, "hs2");
        let revocations: Vec<usize> = (0..r.pdus.len()).filter(|&i| is_participation(&r.pdus[i], "revoked")).collect();
        assert_eq!(revocations.len(), 1, "seed {seed}");
        let at = revocations[0];
        let revocation = &r.pdus[at];
        assert_eq!(revocation.state_key.as_deref(), Some(hs2.as_str()), "seed {seed}: {}", describe(revocation));
        assert_eq!(content(revocation, "unverified_domain"), Some("hs2"), "seed {seed}");
        // By the creator, through hs1.
        let creator = r.pdus.iter().find(|p| p.event_type == "m.room.create").unwrap();
        assert_eq!(revocation.sender, creator.sender, "seed {seed}");
        assert_eq!(co_signers(revocation), [server_key(&r.pdus, "hs1")], "seed {seed}");
        let verified = verify_dag(version, r.pdus.iter().map(|p| (**p).clone()).collect(), &VerifyOptions::default());
        let accepted = |p: &Pdu| verified.report.verdicts[&p.event_id].verdict == "accepted";
        assert!(accepted(revocation), "seed {seed}");
        // hs2 co-signed events before (its users' joins and messages)...
        let before = r.pdus[..at].iter().filter(|p| co_signers(p).contains(&hs2) && accepted(p)).count();
        assert!(before >= 2, "seed {seed}: hs2 co-signed {before} events before its revocation");
        // ...and nothing after.
        let after: Vec<String> =
            r.pdus[at + 1..].iter().filter(|p| signers(p).contains(&hs2) && accepted(p)).map(|p| describe(p)).collect();
        assert!(after.is_empty(), "seed {seed}: accepted after the revocation, co-signed by hs2: {after:?}");
        // hs2's remaining user is refused locally, by rule msc4348 8.3.1, once hs2 has the
        // revocation; its moved user goes on through hs3.
        let lines = log_lines(&r.raw);
        let actions = |user: &str| -> Vec<&Value> {
            lines
                .iter()
                .filter(|l| l["kind"] == "action" && l["user"] == user && l["t_us"].as_u64().unwrap() > REVOKE_AT_US)
                .collect()
        };
        let u1 = actions("@u1:hs2");
        for l in &u1 {
            assert_eq!(l["server"], "hs2", "seed {seed}: {l}");
            let why = l["refused"].as_str().unwrap_or_else(|| panic!("seed {seed}: not refused: {l}"));
            assert!(why.contains("msc4348 8.3.1"), "seed {seed}: {l}");
            assert!(why.contains(&hs2), "seed {seed}: names the revoked key: {l}");
            assert!(l.get("event").is_none(), "seed {seed}: {l}");
        }
        refused_total += u1.len();
        let u0 = actions("@u0:hs2");
        assert!(!u0.is_empty(), "seed {seed}: the moved user acted after the revocation");
        for l in &u0 {
            assert_eq!(l["server"], "hs3", "seed {seed}: {l}");
            assert!(l.get("refused").is_none() && l["event"].is_string(), "seed {seed}: {l}");
        }
        // Before the revocation @u1:hs2 was served.
        let served_before = lines
            .iter()
            .filter(|l| l["kind"] == "action" && l["user"] == "@u1:hs2" && l["event"].is_string())
            .filter(|l| l["t_us"].as_u64().unwrap() < REVOKE_AT_US)
            .count();
        assert!(served_before >= 1, "seed {seed}: @u1:hs2 joined before the revocation");
    }
    assert!(refused_total > 0, "some action of @u1:hs2 came after the revocation and was refused");
}

/// The log line a replay error names ("log line N (record …)"), to show in a failure.
fn named_line(raw: &[u8], got: &Value) -> String {
    let n = got.as_str().and_then(|s| s.strip_prefix("log line")).and_then(|s| s.split_whitespace().next());
    let line = n
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| String::from_utf8_lossy(raw).lines().nth(n - 1).map(str::to_owned));
    line.unwrap_or_default()
}

#[test]
fn replay_reproduces_a_portable_account_run() {
    // The handshake and acceptance alone (no move, no revoke) replay...
    let quiet = SCENARIO.split("[[timeline]]").next().unwrap();
    let sc = parse_scenario("p.toml", quiet, &[]).unwrap();
    let buf = MemorySink::default();
    let mut world = instrumented_world(&sc, 1, LogWriter::new(Box::new(buf.clone())));
    world.run();
    world.finish(true).expect("finish");
    let raw = buf.contents();
    replay(&sc, 1, std::io::Cursor::new(raw.clone()), |_| {})
        .unwrap_or_else(|d| panic!("no move or revoke: replay diverged: {d:?}\n{}", named_line(&raw, &d.got)));
    // ...and so does the whole run.
    let sc = parse_scenario("p.toml", SCENARIO, &[]).unwrap();
    for seed in [1, 2] {
        let r = run(seed);
        assert!(!r.raw.is_empty());
        replay(&sc, seed, std::io::Cursor::new(r.raw.clone()), |_| {})
            .unwrap_or_else(|d| panic!("seed {seed}: replay diverged: {d:?}\n{}", named_line(&r.raw, &d.got)));
    }
}

#[test]
fn a_portable_account_run_is_the_same_on_one_and_two_threads() {
    let sc = parse_scenario("p.toml", SCENARIO, &[]).expect("valid scenario");
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
    assert!(out1.1.len() > 20, "a real run: {} events", out1.1.len());
    assert!(out1.2.is_empty(), "{:?}", out1.2);
    assert_eq!(out1, out2);
    assert!(log1 == log2, "logs differ between 1 and 2 threads");
}

#[test]
fn move_and_revoke_outside_portable_account_rooms_are_new_accounts_and_acls_and_bad_moves_are_located_errors() {
    let v12 = SCENARIO.replace("version = \"org.matrix.msc4348.12\"", "version = \"12\"");
    assert_ne!(v12, SCENARIO);
    // Under v12 the same timeline is valid: the move opens `@u0.hs3:hs3` on hs3 (the person
    // starts over there), the revoke becomes an `m.room.server_acl` deny of hs2.
    let sc = parse_scenario("p.toml", &v12, &[]).expect("move and revoke are valid in v12");
    let hs3 = sc.servers.iter().find(|s| s.name == "hs3").expect("hs3");
    assert!(hs3.users.iter().any(|u| u == "@u0.hs2:hs3"), "the new account exists: {:?}", hs3.users);
    assert_eq!(sc.moved_accounts().get("@u0.hs2:hs3").map(String::as_str), Some("@u0:hs2"));
    let line_of = |text: &str, needle: &str| text.lines().position(|l| l == needle).unwrap() + 1;
    // A v12 move to the user's own domain is refused, located at the action.
    let text = v12.replacen("server = \"hs3\"\n", "server = \"hs2\"\n", 1);
    assert_ne!(text, v12);
    let err = parse_scenario("p.toml", &text, &[]).expect_err("move to the own domain");
    assert!(err.message().contains("is already on hs2"), "{err}");
    assert!(err.message().contains("action \"move\""), "{err}");
    let (line, _) = err.line_column().unwrap_or_else(|| panic!("not located: {err}"));
    assert_eq!(line, line_of(&text, "action = \"move\""), "{err}");
    assert!(err.to_string().starts_with(&format!("p.toml:{line}:")), "{err}");
    // A move with no `server`, in a portable-account room.
    let text = SCENARIO.replacen("server = \"hs3\"\n", "", 1);
    assert_ne!(text, SCENARIO);
    let err = parse_scenario("p.toml", &text, &[]).expect_err("move without server");
    assert!(err.message().contains("needs `server`"), "{err}");
    assert!(err.message().contains("action \"move\""), "{err}");
    let (line, _) = err.line_column().unwrap_or_else(|| panic!("not located: {err}"));
    assert_eq!(line, line_of(&text, "action = \"move\""), "{err}");
}

/// A bundled scenario's `participation` summary (seed 1), with `sets` applied.
fn bundled(text: &str, sets: &[&str]) -> (Value, Vec<String>) {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let sc = parse_scenario("b.toml", text, &sets).expect("valid scenario");
    let mut world = instrumented_world(&sc, 1, LogWriter::new(Box::new(MemorySink::default())));
    world.run();
    let result = world.finish(true).expect("finish");
    let rooms = &result.summary["rooms"]["main"];
    assert_eq!(rooms["auth_disagreements"], 0, "{rooms}");
    (result.summary["participation"].clone(), result.invariant_violations)
}

const MULTI: &str = "rooms.0.version=\"org.matrix.msc4348.12-multi-server\"";

/// The measures of the bundled scenarios, counted by hand from their timelines:
/// `participation-moves` has three `move` actions, each a join through another server (the
/// second to hs4, which joins through the handshake first), all reaching every server; under
/// the multi-server reading the two moves to servers already in the room need no join, and
/// only the move to hs4 (a server that must join first) is one. A banned account's move is
/// refused (no move, no evasion); nothing is accepted through the revoked key.
#[test]
fn the_participation_measures_of_the_bundled_scenarios() {
    let moves = include_str!("../../scenarios/participation-moves.toml");
    let (p, v) = bundled(moves, &[]);
    assert!(v.is_empty(), "{v:?}");
    assert_eq!((p["moves"].as_u64(), p["moves_unfinished"].as_u64()), (Some(3), Some(0)), "{p}");
    assert_eq!(p["move_completion_ms"]["count"], 3, "{p}");
    // hs2, hs3 and hs4 each joined through the handshake once.
    assert_eq!(p["participation_handshake_ms"]["count"].as_u64().map(|c| c >= 3), Some(true), "{p}");
    let (m, v) = bundled(moves, &[MULTI]);
    assert!(v.is_empty(), "{v:?}");
    assert_eq!((m["moves"].as_u64(), m["moves_without_join"].as_u64()), (Some(1), Some(2)), "{m}");

    let (b, v) = bundled(include_str!("../../scenarios/portable-ban-evasion.toml"), &[]);
    assert!(v.is_empty(), "{v:?}");
    assert_eq!((b["moves"].as_u64(), b["ban_evasion_by_move"].as_u64()), (Some(0), Some(0)), "{b}");

    let race = include_str!("../../scenarios/participation-revocation-race.toml");
    let (r, v) = bundled(race, &[]);
    assert!(v.is_empty(), "{v:?}");
    assert_eq!(r["events_accepted_after_revocation"]["total"], 0, "{r}");
    assert_eq!(r["moves"], 1, "@u1:hs2 moves to hs3 after its server was revoked: {r}");
}

/// `[participation]`: the acceptor's delay is the floor of every handshake (from the request
/// reaching the room to its acceptance); an acceptor without the `accept` level (100 by
/// default; `@u1:hs1` has 0) accepts nothing, so no server gets past its request; unknown
/// users and portable-less scenarios are located errors.
#[test]
fn the_acceptor_and_its_delay_come_from_the_scenario() {
    let moves = include_str!("../../scenarios/participation-moves.toml");
    let (p, _) = bundled(moves, &[]);
    let p50 = |p: &Value| p["participation_handshake_ms"]["p50"].as_f64().unwrap_or(0.0);
    assert!(p50(&p) >= 1000.0 && p50(&p) < 5000.0, "the default acceptor waits 1 s: {p}");
    let (slow, v) = bundled(moves, &["participation.accept_delay=\"5s\""]);
    assert!(v.is_empty(), "{v:?}");
    assert!(p50(&slow) >= 5000.0, "a 5 s acceptor: {slow}");
    assert!(p50(&slow) - p50(&p) >= 3500.0, "the delay moves every handshake: {p} → {slow}");
    let (weak, _) = bundled(moves, &["participation.acceptor=\"@u1:hs1\""]);
    assert_eq!(weak["participation_handshake_ms"]["count"], 0, "an acceptor without power accepts nothing: {weak}");

    let with = |table: &str| format!("{SCENARIO}\n[participation]\n{table}\n");
    let text = with("acceptor = \"@u9:hs1\"");
    let err = parse_scenario("p.toml", &text, &[]).expect_err("unknown acceptor");
    assert!(err.message().contains("acceptor"), "{err}");
    assert!(err.line_column().is_some(), "not located: {err}");
    let text = with("accept_delay = 3");
    assert!(parse_scenario("p.toml", &text, &[]).is_err(), "a delay is a duration");
    let text = with("acceptr = \"@u0:hs1\"");
    let err = parse_scenario("p.toml", &text, &[]).expect_err("unknown key");
    assert!(err.to_string().contains("acceptr"), "{err}");
    let v12 = with("accept_delay = \"2s\"").replace(VERSION, "12");
    let v12 = v12.split("[[timeline]]").next().unwrap().to_owned() + "\n[participation]\naccept_delay = \"2s\"\n";
    let err = parse_scenario("p.toml", &v12, &[]).expect_err("no portable room");
    assert!(err.message().contains("needs a room with portable accounts"), "{err}");
    let (line, _) = err.line_column().unwrap_or_else(|| panic!("not located: {err}"));
    assert!(line > 1, "{err}");
}
