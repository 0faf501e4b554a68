//! Identity in whole runs: invites by e-mail through identity servers that are nodes of the
//! network, third-party invites redeemed by binding (`/3pid/onbind`,
//! `/exchange_third_party_invite`), both `key_validity_url` designs, pepper rotations with and
//! without MSC4004, MSC4004 redirects and the rogue-pusher hijack, and `m.identity_server`
//! account data. Every figure asserted is derived from the scenario's story in the comment
//! above it, not read off a run.

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::protocol::pdu::{Membership, Pdu};
use roomsim_engine::protocol::room_version::V12;
use roomsim_engine::protocol::verify::{self, VerifyOptions};
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::{LogWriter, MemorySink};
use roomsim_engine::sim::replay::replay;
use serde_json::Value;
use std::sync::Arc;

const THIRDPARTY: &str = include_str!("../../scenarios/thirdparty-invite.toml");
const REVOCATION: &str = include_str!("../../scenarios/identity-key-revocation.toml");
const PEPPER: &str = include_str!("../../scenarios/identity-pepper-rotation.toml");
const ACCOUNT_DATA: &str = include_str!("../../scenarios/identity-account-data.toml");
const HIJACK: &str = include_str!("../../scenarios/identity-msc4004-hijack.toml");

struct Run {
    raw: Vec<u8>,
    summary: Value,
    violations: Vec<String>,
    rooms: std::collections::BTreeMap<String, Vec<Arc<Pdu>>>,
    keys: Value,
}

fn run(text: &str, sets: &[&str], seed: u64) -> Run {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let sc = parse_scenario("identity.toml", text, &sets).expect("valid scenario");
    let buf = MemorySink::default();
    let mut world = instrumented_world(&sc, seed, LogWriter::new(Box::new(buf.clone())));
    world.run();
    let result = world.finish(true).expect("finish");
    Run {
        raw: buf.contents(),
        summary: result.summary,
        violations: result.invariant_violations,
        rooms: result.rooms,
        keys: result.keys,
    }
}

fn log_lines(raw: &[u8]) -> Vec<Value> {
    std::str::from_utf8(raw)
        .expect("UTF-8")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect()
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// The member event of `user` holding `membership` in the union DAG.
fn member<'a>(pdus: &'a [Arc<Pdu>], user: &str, membership: Membership) -> Option<&'a Arc<Pdu>> {
    pdus.iter().find(|p| {
        p.event_type == "m.room.member" && p.state_key.as_deref() == Some(user) && p.membership() == Some(membership)
    })
}

/// thirdparty-invite: carol@example.org is unbound at 5 s, so @u0:hs1's invite is stored at
/// id.example; @u0:hs3 binds it at 8 s and is invited through the exchange, then joins.
/// bob@example.org is bound to @u0:hs2: @u1:hs1's invite is a plain one. So: 2 lookups, both
/// correct; 1 third-party invite sent, issued once (after 1 issuer check), completed; no
/// receipt checks (the spec's design); each verdict all-accept; and the DAG passes `dag
/// verify` with the run's keys: the invite's `signed` verifies by real ed25519.
#[test]
fn an_invite_by_email_is_stored_bound_exchanged_and_joined_and_dag_verify_accepts_it() {
    for seed in [1, 2, 3] {
        let r = run(THIRDPARTY, &[], seed);
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
        let club = &r.summary["rooms"]["club"];
        assert_eq!(club["auth_disagreements"], 0, "seed {seed}: {club}");
        assert_eq!(club["agreed_at_end"], true, "seed {seed}: {club}");
        let id = &r.summary["identity"];
        assert_eq!((n(&id["lookups"]["total"]), n(&id["lookups"]["correct"])), (2, 2), "seed {seed}: {id}");
        assert_eq!(n(&id["invites_by_email"]["by_lookup"]), 1, "seed {seed}: {id}");
        let tp = &id["third_party_invites"];
        assert_eq!((n(&tp["sent"]), n(&tp["issued"]), n(&tp["completed"])), (1, 1, 1), "seed {seed}: {id}");
        assert_eq!(n(&id["key_validity"]["issuer_checks"]), 1, "seed {seed}: {id}");
        assert_eq!(n(&id["key_validity"]["receipt_checks"]), 0, "seed {seed}: {id}");
        assert_eq!(n(&id["verdicts"]["invites"]["all_accept"]), 1, "seed {seed}: {id}");
        assert_eq!(n(&id["verdicts"]["joins"]["all_accept"]), 1, "seed {seed}: {id}");

        let pdus = &r.rooms["club"];
        let tpi: Vec<&Arc<Pdu>> = pdus.iter().filter(|p| p.event_type == "m.room.third_party_invite").collect();
        assert_eq!(tpi.len(), 1, "seed {seed}");
        let token = tpi[0].state_key.clone().unwrap();
        let invite = member(pdus, "@u0:hs3", Membership::Invite).expect("the third-party invite");
        assert_eq!(invite.sender, "@u0:hs1", "seed {seed}: the sender is the original inviter");
        let signed = &invite.json["content"]["third_party_invite"]["signed"];
        assert_eq!(signed["token"], token.as_str(), "seed {seed}");
        assert_eq!(signed["mxid"], "@u0:hs3", "seed {seed}");
        assert!(signed["signatures"]["id.example"].is_object(), "seed {seed}: {signed}");
        assert!(member(pdus, "@u0:hs3", Membership::Join).is_some(), "seed {seed}: the invitee joined");
        assert!(member(pdus, "@u0:hs2", Membership::Invite).is_some(), "seed {seed}: bob's plain invite");

        let keys = verify::parse_server_keys(&r.keys.to_string()).expect("the run's keys");
        let all: Vec<Pdu> = pdus.iter().map(|p| (**p).clone()).collect();
        let v = verify::verify_dag(&V12, all, &VerifyOptions { keys: Some(keys), ..Default::default() });
        assert_eq!(v.report.verdicts[&invite.event_id].verdict, "accepted", "seed {seed}");
        assert_eq!((v.report.accepted, v.report.rejected), (pdus.len(), 0), "seed {seed}: {:?}", v.report.verdicts);
    }
}

/// identity-key-revocation: id.example revokes its key at 8.2 s, around the time hs1 asks
/// `key_validity_url` and the invite travels. In the spec's design only hs1 asks: in every
/// seed the invite is issued (valid when asked) or refused (revoked first), and every server
/// then agrees on it (no split, no auth disagreement). In the divergent design every server
/// asks at receipt; in the seeds where hs1's check came before the revocation, the others' came
/// after it, so they reject what hs1 accepted: splits, and `auth_disagreements` > 0. `dag
/// verify` (the auth rules alone, which consult no URL) accepts the invite the others rejected,
/// and so do the invariant checks, which flag the servers that rejected it.
#[test]
fn only_the_divergent_key_validity_design_splits_servers() {
    let (mut issued, mut split, mut disagreements) = (0, 0, 0);
    for seed in 1..=20 {
        let spec = run(REVOCATION, &[], seed);
        assert!(spec.violations.is_empty(), "seed {seed}: {:?}", spec.violations);
        let id = &spec.summary["identity"];
        assert_eq!(spec.summary["rooms"]["club"]["auth_disagreements"], 0, "seed {seed}");
        assert_eq!(n(&id["verdicts"]["invites"]["split"]), 0, "seed {seed}: {id}");
        assert_eq!(n(&id["verdicts"]["joins"]["split"]), 0, "seed {seed}: {id}");
        let tp = &id["third_party_invites"];
        let refused: u64 = tp["refused"].as_object().unwrap().values().map(n).sum();
        assert_eq!(n(&tp["issued"]) + refused, 1, "seed {seed}: issued or refused, once: {id}");
        issued += n(&tp["issued"]);

        let every = run(REVOCATION, &["identity.key_validity_check=every_server"], seed);
        let eid = &every.summary["identity"];
        split += n(&eid["verdicts"]["invites"]["split"]);
        disagreements += n(&every.summary["rooms"]["club"]["auth_disagreements"]);
        if n(&eid["verdicts"]["invites"]["split"]) > 0 {
            let pdus = &every.rooms["club"];
            let invite = member(pdus, "@u0:hs3", Membership::Invite).expect("issued");
            let outside: Vec<Value> = log_lines(&every.raw)
                .into_iter()
                .filter(|l| l["kind"] == "decision" && l["event"] == invite.event_id.as_str())
                .filter(|l| l["stage"] == "outside_check")
                .collect();
            assert!(!outside.is_empty(), "seed {seed}: a receipt-time rejection of the split invite");
            // The invariant checks re-judge the union DAG by the rules alone: they catch the
            // servers that rejected it.
            assert!(
                every.violations.iter().any(|v| v.contains("differently from the reference judgement")),
                "seed {seed}: {:?}",
                every.violations
            );
            let keys = verify::parse_server_keys(&every.keys.to_string()).unwrap();
            let all: Vec<Pdu> = pdus.iter().map(|p| (**p).clone()).collect();
            let v = verify::verify_dag(&V12, all, &VerifyOptions { keys: Some(keys), ..Default::default() });
            assert_eq!(v.report.verdicts[&invite.event_id].verdict, "accepted", "seed {seed}: the rules allow it");
        }
    }
    assert!(issued > 0 && issued < 20, "the revocation falls on both sides of hs1's check: {issued} of 20");
    assert!(split > 0, "the divergent design splits servers in some seed");
    assert!(disagreements > 0, "and shows as auth disagreements");
}

/// A key revoked before the bind: id.example signs the binding with its new key, which the
/// room's `m.room.third_party_invite` does not list, so hs1 refuses the exchange (the auth
/// rule's own check) before any `key_validity_url` question; no `m.room.member` invite
/// exists, and no server disagrees.
#[test]
fn a_key_revoked_before_the_exchange_refuses_the_invite_everywhere() {
    for seed in [1, 2] {
        let r = run(REVOCATION, &["faults.0.at=\"6s\""], seed);
        let id = &r.summary["identity"];
        assert_eq!(n(&id["third_party_invites"]["issued"]), 0, "seed {seed}: {id}");
        assert_eq!(n(&id["key_validity"]["issuer_checks"]), 0, "seed {seed}: {id}");
        let refused = &id["third_party_invites"]["refused"]["signed does not verify with the invite's public keys"];
        assert_eq!(n(refused), 1, "seed {seed}: {id}");
        assert!(member(&r.rooms["club"], "@u0:hs3", Membership::Invite).is_none(), "seed {seed}");
        assert_eq!(r.summary["rooms"]["club"]["auth_disagreements"], 0, "seed {seed}");
    }
}

/// identity-pepper-rotation: four lookups straddle a rotation at 5.05 s. MSC4004 keeping one
/// old pepper: nothing is refused, so no retry and nothing lost. Without it and with the spec's
/// one retry, every lookup that met `M_INVALID_PEPPER` succeeds on its retry: all four correct.
/// Without retries, those lookups are lost (and their invites abandoned).
#[test]
fn pepper_rotation_with_and_without_msc4004() {
    for seed in [1, 2, 3] {
        let alt = run(PEPPER, &["identity_servers.0.alt_peppers=1"], seed);
        let l = &alt.summary["identity"]["lookups"];
        assert_eq!((n(&l["correct"]), n(&l["pepper_retries"]), n(&l["lost_to_pepper_rotation"])), (4, 0, 0), "{l}");

        let retry = run(PEPPER, &[], seed);
        let l = &retry.summary["identity"]["lookups"];
        assert_eq!((n(&l["correct"]), n(&l["lost_to_pepper_rotation"])), (4, 0), "seed {seed}: {l}");

        let none = run(PEPPER, &["identity.pepper_retries=0"], seed);
        let l = &none.summary["identity"]["lookups"];
        let lost = n(&l["lost_to_pepper_rotation"]);
        assert_eq!(n(&l["correct"]) + lost, 4, "seed {seed}: {l}");
        assert_eq!(n(&l["pepper_retries"]), 0, "seed {seed}: {l}");
        let abandoned =
            &none.summary["identity"]["invites_by_email"]["abandoned"]["M_INVALID_PEPPER after the retries"];
        assert_eq!(abandoned.as_u64().unwrap_or(0), lost, "seed {seed}");
        if seed == 1 {
            // The first two invites fetched the old pepper and looked up after the rotation.
            assert!(n(&retry.summary["identity"]["lookups"]["pepper_retries"]) >= 1, "seed 1 meets the rotation");
            assert!(lost >= 1, "seed 1 loses a lookup without retries");
        }
    }
}

/// identity-account-data, counted from its story: writes 2 (phone, laptop); the laptop's write
/// is lost-update (it had not synced the phone's); the phone's invite is not attempted and
/// stale; @u1:hs1's (`null`) not attempted; the laptop's lookup at id.other is stale (the
/// address is bound at id.example) and stores a third-party invite; @u0:hs2's default lookup
/// is correct and a plain invite.
#[test]
fn account_data_decides_whether_and_where_an_invite_is_attempted() {
    for seed in [1, 2] {
        let r = run(ACCOUNT_DATA, &[], seed);
        let id = &r.summary["identity"];
        let ad = &id["account_data"];
        assert_eq!((n(&ad["writes"]), n(&ad["lost_writes"]), n(&ad["stale_actions"])), (2, 1, 1), "{id}");
        let ie = &id["invites_by_email"];
        assert_eq!(n(&ie["total"]), 4, "{id}");
        assert_eq!(n(&ie["not_attempted"]["m.identity_server disables identity servers"]), 2, "{id}");
        assert_eq!((n(&ie["by_lookup"]), n(&ie["third_party"])), (1, 1), "{id}");
        let l = &id["lookups"];
        assert_eq!((n(&l["total"]), n(&l["correct"]), n(&l["stale"])), (2, 1, 1), "{id}");
    }
}

/// identity-msc4004-hijack: with trusted pushers only, id.partner's push is stored and the
/// rogue's refused; dave is found through one redirect, carol is not found (a third-party
/// invite): nothing hijacked. Accepting any pusher, the lookup of carol is redirected to the
/// rogue, which answers @u1:hs3: one hijacked lookup and one hijacked invite.
#[test]
fn a_rogue_pusher_hijacks_only_an_identity_server_that_trusts_anyone() {
    let trusted = run(HIJACK, &[], 1);
    let id = &trusted.summary["identity"];
    assert_eq!((n(&id["pushes"]["stored"]), n(&id["pushes"]["refused"])), (1, 1), "{id}");
    assert_eq!(n(&id["lookups"]["redirects_followed"]), 1, "{id}");
    assert_eq!((n(&id["lookups"]["correct"]), n(&id["hijacked_invites"])), (2, 0), "{id}");
    assert_eq!(n(&id["invites_by_email"]["third_party"]), 1, "{id}");

    let anyone =
        run(HIJACK, &["identity_servers.0.accept_pushes=\"anyone\"", "identity_servers.0.trusted_pushers=[]"], 1);
    let id = &anyone.summary["identity"];
    assert_eq!((n(&id["pushes"]["stored"]), n(&id["pushes"]["refused"])), (2, 0), "{id}");
    assert_eq!((n(&id["lookups"]["hijacked"]), n(&id["hijacked_invites"])), (1, 1), "{id}");
    assert!(member(&anyone.rooms["room"], "@u1:hs3", Membership::Invite).is_some(), "the rogue's user is invited");
}

/// Replay rebuilds an identity run (identity servers' inputs, the receipt-time checks) from its
/// log, and the run is the same on one and two threads with the parallel path exercised.
#[test]
fn identity_runs_replay_and_are_the_same_on_one_and_two_threads() {
    let sets = vec!["identity.key_validity_check=every_server".to_string()];
    let sc = parse_scenario("identity.toml", REVOCATION, &sets).unwrap();
    for seed in [1, 3] {
        let r = run(REVOCATION, &["identity.key_validity_check=every_server"], seed);
        replay(&sc, seed, std::io::Cursor::new(r.raw.clone()), |_| {})
            .unwrap_or_else(|d| panic!("seed {seed}: replay diverged: {d:?}"));
    }
    let on = |threads: usize| {
        let buf = MemorySink::default();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let (summary, stats) = pool.install(|| {
            let mut world = instrumented_world(&sc, 1, LogWriter::new(Box::new(buf.clone())));
            world.set_parallel_threshold(2);
            world.run();
            let stats = world.window_stats();
            (world.finish(true).expect("finish").summary, stats)
        });
        (buf.contents(), summary, stats)
    };
    let (log1, s1, _) = on(1);
    let (log2, s2, stats2) = on(2);
    assert!(stats2.parallel > 0, "the parallel path was exercised: {stats2:?}");
    assert_eq!(s1, s2);
    assert!(log1 == log2, "logs differ between 1 and 2 threads");
}

/// An identity server down from 4 s to past the end: both lookups (5 s) time out after their
/// retries, so both invites by e-mail are abandoned and no invite event exists; the room
/// itself is unaffected.
#[test]
fn an_identity_server_outage_fails_the_lookups() {
    let down = ["faults.0.kind=\"crash\"", "faults.0.at=\"4s\"", "faults.0.duration=\"50s\""];
    let r = run(REVOCATION, &down, 1);
    let id = &r.summary["identity"];
    assert_eq!((n(&id["lookups"]["total"]), n(&id["lookups"]["failed"])), (2, 2), "{id}");
    assert_eq!(n(&id["invites_by_email"]["abandoned"]["the lookup failed"]), 2, "{id}");
    assert_eq!(n(&id["third_party_invites"]["sent"]), 0, "{id}");
    assert!(r.rooms["club"].iter().all(|p| p.event_type != "m.room.third_party_invite"));
    assert_eq!(r.summary["rooms"]["club"]["auth_disagreements"], 0);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

/// Signing with the invite's ephemeral key (`sign_with = "ephemeral"`): revoking the long-term
/// key changes nothing (the issuer asks `/pubkey/ephemeral/isvalid`, which stays valid), so in
/// every seed the invite is issued and, even in the divergent design, nobody splits. With an
/// ephemeral lifetime of 2 s the key has expired by the bind (8 s, the invite was stored at
/// about 5.2 s): the issuer refuses in every seed.
#[test]
fn an_ephemeral_signing_key_outlives_the_revocation_but_not_its_lifetime() {
    for seed in 1..=5 {
        let eph = ["identity_servers.0.sign_with=\"ephemeral\"", "identity.key_validity_check=\"every_server\""];
        let r = run(REVOCATION, &eph, seed);
        let id = &r.summary["identity"];
        assert_eq!(n(&id["third_party_invites"]["issued"]), 1, "seed {seed}: {id}");
        assert_eq!(n(&id["verdicts"]["invites"]["split"]), 0, "seed {seed}: {id}");
        assert_eq!(n(&id["key_validity"]["receipt_invalid"]), 0, "seed {seed}: {id}");
        assert_eq!(r.summary["rooms"]["club"]["auth_disagreements"], 0, "seed {seed}");
        let invite = member(&r.rooms["club"], "@u0:hs3", Membership::Invite).expect("issued");
        let signed = &invite.json["content"]["third_party_invite"]["signed"]["signatures"]["id.example"];
        assert!(signed.get("ed25519:ephemeral").is_some(), "seed {seed}: signed by the ephemeral key: {signed}");

        let short = ["identity_servers.0.sign_with=\"ephemeral\"", "identity_servers.0.ephemeral_lifetime=\"2s\""];
        let r = run(REVOCATION, &short, seed);
        let id = &r.summary["identity"];
        assert_eq!(n(&id["third_party_invites"]["issued"]), 0, "seed {seed}: {id}");
        assert_eq!(n(&id["key_validity"]["issuer_invalid"]), 1, "seed {seed}: {id}");
    }
}
