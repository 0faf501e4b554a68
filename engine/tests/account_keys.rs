//! MSC4243 account keys in whole runs (the bundled `scenarios/account-keys-*.toml`): the two
//! designs of unknown keys (`errcode` vs `omit`) differ where the seed says they should (a
//! stripping proxy, a stale cache) and agree where they should (an equivocating domain, an
//! erasure); `auth_disagreements` stays 0 under every fault (the outside check moved from
//! acceptance to display); the request timeout bounds when an invite's room appears; bad knob
//! values are located errors; replay reproduces an account-key run; the invariants (every
//! union DAG re-judged from scratch, account-key signatures checked) hold.

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::{LogWriter, MemorySink};
use roomsim_engine::sim::replay::replay;
use serde_json::Value;

const PROXY: &str = include_str!("../../scenarios/account-keys-proxy.toml");
const STALE: &str = include_str!("../../scenarios/account-keys-stale-cache.toml");
const EQUIVOCATION: &str = include_str!("../../scenarios/account-keys-equivocation.toml");
const ERASURE: &str = include_str!("../../scenarios/account-keys-erasure.toml");

struct Run {
    raw: Vec<u8>,
    summary: Value,
    violations: Vec<String>,
    clients: Vec<Value>,
}

fn run(text: &str, seed: u64, sets: &[&str]) -> Run {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let sc = parse_scenario("ak.toml", text, &sets).expect("valid scenario");
    let buf = MemorySink::default();
    let mut world = instrumented_world(&sc, seed, LogWriter::new(Box::new(buf.clone())));
    world.run();
    let result = world.finish(true).expect("finish");
    Run {
        raw: buf.contents(),
        summary: result.summary,
        violations: result.invariant_violations,
        clients: result.clients,
    }
}

fn ak(r: &Run) -> &Value {
    &r.summary["account_keys"]
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn assert_sound(r: &Run, what: &str) {
    assert!(r.violations.is_empty(), "{what}: {:?}", r.violations);
    assert_eq!(n(&r.summary["rooms"]["main"]["auth_disagreements"]), 0, "{what}");
    assert_eq!(r.summary["rooms"]["main"]["agreed_at_end"], true, "{what}");
}

#[test]
fn with_a_stripping_proxy_omit_settles_owned_keys_as_unverified_and_errcode_does_not() {
    for seed in [7, 8] {
        let errcode = run(PROXY, seed, &["account_query.unknown_encoding=errcode"]);
        let omit = run(PROXY, seed, &["account_query.unknown_encoding=omit"]);
        assert_sound(&errcode, "errcode");
        assert_sound(&omit, "omit");
        assert_eq!(n(&ak(&errcode)["wrongly_unverified_keys"]), 0, "seed {seed}: {}", ak(&errcode));
        assert!(n(&ak(&omit)["wrongly_unverified_keys"]) > 0, "seed {seed}: {}", ak(&omit));
        assert!(n(&ak(&omit)["unverified_events"]) > 0, "filtered for good: {}", ak(&omit));
        // errcode pays in requests: the stripped keys are asked again.
        assert!(n(&ak(&errcode)["query_keys"]) > n(&ak(&omit)["query_keys"]));
        assert!(ak(&errcode)["retries_per_key"]["max"].as_u64().unwrap() >= 1);
        assert_eq!(n(&ak(&errcode)["wrong_name_shown"]), 0);
    }
}

#[test]
fn a_path_keyed_stale_cache_hurts_omit_more_than_errcode() {
    let errcode = run(STALE, 11, &[]);
    let omit = run(STALE, 11, &["account_query.unknown_encoding=omit"]);
    assert_sound(&errcode, "errcode");
    assert_sound(&omit, "omit");
    let wrong = |r: &Run| n(&ak(r)["wrongly_unverified_keys"]);
    assert!(wrong(&omit) > wrong(&errcode), "omit {} vs errcode {}", ak(&omit), ak(&errcode));
}

#[test]
fn an_equivocating_domain_shows_wrong_names_under_both_designs_and_no_verdict_changes() {
    for design in ["errcode", "omit"] {
        let r = run(EQUIVOCATION, 5, &[&format!("account_query.unknown_encoding={design}")]);
        assert_sound(&r, design);
        assert!(n(&ak(&r)["wrong_name_shown"]) > 0, "{design}: {}", ak(&r));
        assert!(n(&ak(&r)["client_view_divergent_events"]) > 0, "{design}: {}", ak(&r));
        assert_eq!(n(&ak(&r)["wrongly_unverified_keys"]), 0);
    }
    // An honest hs2: nobody is shown a wrong name and no two servers show an event differently.
    let honest = run(EQUIVOCATION, 5, &["servers.1.byzantine=none"]);
    assert_eq!(n(&ak(&honest)["wrong_name_shown"]), 0, "{}", ak(&honest));
    assert_eq!(n(&ak(&honest)["client_view_divergent_events"]), 0, "{}", ak(&honest));
}

#[test]
fn an_erased_account_is_learnt_by_polling_and_the_timeout_bounds_when_an_invite_appears() {
    let r = run(ERASURE, 3, &[]);
    assert_sound(&r, "erasure");
    assert!(n(&ak(&r)["mapping_states"]["erased"]) > 0, "{}", ak(&r));
    assert!(n(&ak(&r)["erasure_polls"]) > 0);
    // hs6 cannot hear from hs5: the invite by @u0:hs5 appears after the 10 s timeout, no later.
    let delay = &ak(&r)["room_appear_delay_ms"];
    assert_eq!(n(&delay["max"]), 10_000, "{delay}");
    // The invitee's client records the room appearing, with the same delay.
    let appeared: Vec<&Value> = r.clients.iter().filter(|l| l["kind"] == "room_appeared").collect();
    assert_eq!(appeared.len() as u64, n(&delay["count"]), "{appeared:?}");
    assert!(appeared.iter().any(|l| l["delay_ms"] == 10_000 && l["server"] == "hs6"), "{appeared:?}");
    let shorter = run(ERASURE, 3, &["account_query.timeout=3s"]);
    assert_eq!(n(&ak(&shorter)["room_appear_delay_ms"]["max"]), 3_000, "{}", ak(&shorter));
}

#[test]
fn today_s_protocol_runs_the_same_scenario_without_account_keys() {
    let r = run(PROXY, 7, &["rooms.0.version=\"12\""]);
    assert_sound(&r, "v12");
    assert!(r.summary.get("account_keys").is_none(), "no account-key room, no account_keys entry");
    assert!(r.clients.is_empty(), "no account-key room, no clients.jsonl");
}

#[test]
fn replay_reproduces_an_account_key_run() {
    let text = EQUIVOCATION.replace("end = \"5m\"", "end = \"90s\"");
    let r = run(&text, 5, &[]);
    let sc = parse_scenario("ak.toml", &text, &[]).unwrap();
    replay(&sc, 5, std::io::Cursor::new(r.raw), |_| {}).unwrap_or_else(|d| panic!("replay diverged: {d:?}"));
}

#[test]
fn bad_account_query_values_are_located_errors() {
    let cases = [
        ("unknown_encoding = \"errcode\"", "unknown_encoding = \"sometimes\"", "unknown variant"),
        ("unknown_encoding = \"errcode\"", "batch_size = 4096", "batch_size must be between 1 and 2048"),
        ("unknown_encoding = \"errcode\"", "erasure_poll = \"73h\"", "erasure_poll must be at most"),
        ("unknown_encoding = \"errcode\"", "client_view = \"underscore_prefix\"", "needs categories"),
        ("unknown_encoding = \"errcode\"", "retry_anomaly = []", "at least one delay"),
        ("unknown_encoding = \"errcode\"", "timeout = \"0s\"", "greater than 0"),
        ("unknown_encoding = \"errcode\"", "colour = \"blue\"", "unknown field"),
    ];
    for (from, to, expected) in cases {
        let text = PROXY.replace(from, to);
        let line = text.lines().position(|l| l.starts_with(to.split(' ').next().unwrap())).unwrap() + 1;
        let err = parse_scenario("ak.toml", &text, &[]).expect_err(to).to_string();
        assert!(err.contains(expected), "{to}: {err}");
        assert!(err.contains(&format!("ak.toml:{line}:")), "{to}: the error names the line: {err}");
    }
    let strip = PROXY.replace("strip_account_entries = 0.4", "strip_account_entries = 1.5");
    let err = parse_scenario("ak.toml", &strip, &[]).expect_err("1.5").to_string();
    assert!(err.contains("probability"), "{err}");
}

#[test]
fn a_reregistered_account_leaves_caches_showing_an_outdated_name_and_no_verdict_changes() {
    // @u1:hs3 is registered again under a new key at 90 s: every server that verified its
    // first key keeps the name cached permanently (§6.1) although hs3 no longer binds it.
    let text = ERASURE.replace("kind = \"erase_account\"", "kind = \"reregister_account\"");
    let r = run(&text, 3, &[]);
    assert_sound(&r, "reregister");
    assert!(n(&ak(&r)["wrong_name_shown"]) > 0, "{}", ak(&r));
    assert_eq!(n(&ak(&r)["mapping_states"]["erased"]), 0);
    // Without the re-registration nobody is shown an outdated name.
    assert_eq!(n(&ak(&run(ERASURE, 3, &[]))["wrong_name_shown"]), 0);
}

/// A case small enough to count by hand: hs1 and hs2, one user each; @u0:hs2 joins at 1 s and
/// posts 3 messages; a proxy empties every `/query/accounts` answer of hs2. hs1 sees 4 events
/// by hs2's key (its join and the 3 messages) and never verifies it; hs2 verifies hs1's key.
/// So: 2 mapping entries (hs1 → hs2's key unverified, hs2 → hs1's key verified), 1 wrongly
/// unverified key, 4 unverified (server, event) pairs, and 4 events the two servers show
/// differently (hs2 by name, hs1 hidden under `filter`); no wrong name.
#[test]
fn the_account_key_measures_of_a_hand_counted_case() {
    let text = r#"
[scenario]
name = "hand"
end = "60s"

[defaults]
users = 1

[[servers]]
prefix = "hs"
count = 2

[[rooms]]
name = "main"
version = "org.matrix.msc4243.12"
creator = "@u0:hs1"
join_rule = "public"
members = ["@u0:hs1"]

[[timeline]]
at = "1s"
action = "join"
room = "main"
user = "@u0:hs2"

[[timeline]]
at = "5s"
action = "message"
room = "main"
user = "@u0:hs2"
count = 3
every = "1s"

[[network.middleboxes]]
server = "hs2"
kind = "reverse_proxy"
strip_account_answers = 1.0
"#;
    for (design, unverified_state) in [("omit", "unverified"), ("errcode", "unverified")] {
        let r = run(text, 1, &[&format!("account_query.unknown_encoding={design}")]);
        assert_sound(&r, design);
        let a = ak(&r);
        assert_eq!(n(&a["mapping_states"]["verified"]), 1, "{design}: {a}");
        assert_eq!(n(&a["mapping_states"][unverified_state]), 1, "{design}: {a}");
        assert_eq!(n(&a["wrongly_unverified_keys"]), 1, "{design}: {a}");
        assert_eq!(n(&a["unverified_events"]), 4, "{design}: {a}");
        assert_eq!(n(&a["client_view_divergent_events"]), 4, "{design}: {a}");
        assert_eq!(n(&a["wrong_name_shown"]), 0, "{design}: {a}");
        // The clients, by hand: hs1's user is shown hs2's sender hidden when hs1 first sees
        // the key (pending, `filter`) and never otherwise (unverified is hidden too); hs2's user
        // is shown hs1's creator hidden, then by name once verified, with the current state
        // re-sent (`resend_state_after`).
        let lines = |client: &str| -> Vec<String> {
            r.clients
                .iter()
                .filter(|l| l["client"] == client)
                .map(|l| format!("{} {} {}", l["kind"].as_str().unwrap(), l["mapping"], l["shown"]))
                .collect()
        };
        assert_eq!(lines("@u0:hs1"), [r#"sender_shown "pending" {"shown":"hidden"}"#], "{design}");
        assert_eq!(
            lines("@u0:hs2"),
            [
                r#"sender_shown "pending" {"shown":"hidden"}"#,
                r#"sender_shown "verified" {"as":"@u0:hs1","shown":"name"}"#,
                r#"resend null {"as":"@u0:hs1","shown":"name"}"#,
            ],
            "{design}"
        );
        assert_eq!(n(&a["client_records"]), 4, "{design}");
        assert!(r.clients.iter().all(|l| l["room"] == "main" && l["t_ms"].is_u64()), "{design}");
    }
    // The seed's three categories: the emptied answer is an anomaly, so the key is unknown.
    let r = run(text, 1, &["account_query.categories=three_state"]);
    assert_eq!(n(&ak(&r)["mapping_states"]["unknown"]), 1, "{}", ak(&r));
    // Under `omit` the key was asked once (a negative answer, next asked after 1 h); under
    // `errcode` again after 10 s and 30 s (anomalies): retries_per_key.max counts them.
    let omit = run(text, 1, &["account_query.unknown_encoding=omit"]);
    assert_eq!(n(&ak(&omit)["retries_per_key"]["max"]), 0, "{}", ak(&omit));
    let errcode = run(text, 1, &[]);
    assert!(n(&ak(&errcode)["retries_per_key"]["max"]) >= 2, "{}", ak(&errcode));
}

/// A planted fault: hs1's cache reads a key stripped from an answer as verified under a made-up
/// name. `wrong_name_shown` must catch it (and stays 0 without the fault, same seed).
#[test]
fn the_measures_catch_a_server_that_shows_a_name_nobody_bound() {
    let run_with = |plant: bool| {
        let sc = parse_scenario("ak.toml", PROXY, &[]).expect("valid scenario");
        let mut world = instrumented_world(&sc, 7, LogWriter::new(Box::new(MemorySink::default())));
        if plant {
            world.misread_omissions_for_test(0);
        }
        world.run();
        world.finish(true).expect("finish").summary
    };
    let honest = run_with(false);
    let planted = run_with(true);
    assert_eq!(n(&honest["account_keys"]["wrong_name_shown"]), 0);
    assert!(n(&planted["account_keys"]["wrong_name_shown"]) > 0, "{}", planted["account_keys"]);
    assert!(n(&planted["account_keys"]["client_view_divergent_events"]) > 0);
    // Verdicts do not move: the fault is in display only.
    assert_eq!(n(&planted["rooms"]["main"]["auth_disagreements"]), 0);
}

/// Determinism: an account-key run (queries, caches, a stripping proxy) gives the same log and
/// summary on 1 thread and on 2, with small windows really handled on the pool.
#[test]
fn an_account_key_run_is_the_same_on_one_and_two_threads() {
    let sc = parse_scenario("ak.toml", PROXY, &[]).expect("valid scenario");
    let on = |threads: usize| {
        let buf = MemorySink::default();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let (summary, stats) = pool.install(|| {
            let mut world = instrumented_world(&sc, 7, LogWriter::new(Box::new(buf.clone())));
            world.set_parallel_threshold(2);
            world.run();
            let stats = world.window_stats();
            let result = world.finish(true).expect("finish");
            ((result.summary, result.clients), stats)
        });
        (buf.contents(), summary, stats)
    };
    let (log1, summary1, _) = on(1);
    let (log2, summary2, stats2) = on(2);
    assert!(stats2.parallel > 0, "the parallel path was exercised");
    assert!(!summary1.1.is_empty(), "clients recorded");
    assert_eq!(summary1, summary2);
    assert!(log1 == log2, "logs differ between 1 and 2 threads");
}
