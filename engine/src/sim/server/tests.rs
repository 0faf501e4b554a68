//! A simulated server's receipt checks against hand-built PDUs: the required signers (shared
//! with `dag verify`), signatures by a wrong key in both signature modes, and a server's own
//! events coming back over federation.

use super::{Directory, Input, Output, RoomReplica, Server, KEY_ID};
use crate::protocol::crypto::{self, KeyPair};
use crate::protocol::pdu::Pdu;
use crate::protocol::room_version::{RoomVersion, V11, V12};
use crate::protocol::test_support::{Ev, RoomBuilder};
use crate::protocol::verify::{self, ServerKeys, VerifyOptions};
use crate::scenario::{parse_scenario, SignatureMode};
use crate::sim::event::{SimEvent, Verdict};
use crate::sim::federation::{Message, Request, ServerIdx};
use crate::sim::rng::RngStreams;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

const NAMES: [&str; 3] = ["hs1", "hs2", "hs3"];

/// The key a simulated server `name` signs with in these tests.
fn sim_key(name: &str) -> KeyPair {
    KeyPair::from_seed(name, KEY_ID, crypto::sha256(name.as_bytes()))
}

fn directory() -> Arc<Directory> {
    Arc::new(Directory {
        names: NAMES.iter().map(|n| n.to_string()).collect(),
        index: NAMES.iter().enumerate().map(|(i, n)| (n.to_string(), i as ServerIdx)).collect(),
        public_keys: NAMES.iter().map(|n| sim_key(n).public_key()).collect(),
        signatures: Default::default(),
        keys: Default::default(),
        accounts: Default::default(),
        portable: Default::default(),
    })
}

/// Server `index` of hs1..hs3 checking signatures in `mode`, holding an (empty) replica of
/// `room_id`.
fn server(
    index: ServerIdx,
    mode: SignatureMode,
    dir: &Arc<Directory>,
    room_id: &str,
    version: &'static RoomVersion,
) -> Server {
    let mode = match mode {
        SignatureMode::Real => "real",
        SignatureMode::Modelled => "modelled",
    };
    let text = format!(
        "[scenario]\nname = \"t\"\nend = \"1s\"\n[defaults]\nsignatures = \"{mode}\"\n[[servers]]\nprefix = \"hs\"\ncount = 3\n"
    );
    let sc = parse_scenario("t.toml", &text, &[]).expect("scenario");
    let name = NAMES[index as usize];
    let spec = &sc.servers[index as usize];
    let rng = RngStreams::new(1).stream(&format!("server/{name}"));
    let mut s = Server::new(index, spec, sim_key(name), rng, dir.clone());
    s.rooms.insert(room_id.to_owned(), RoomReplica::new(room_id.to_owned(), version));
    s
}

/// The same event signed by the simulated servers' keys, by the same entities as before (the
/// event ID does not change: signatures are not part of it).
fn resign(pdu: &Pdu, version: &'static RoomVersion) -> Arc<Pdu> {
    let entities: Vec<String> =
        pdu.json.get("signatures").and_then(Value::as_object).map(|s| s.keys().cloned().collect()).unwrap_or_default();
    let mut map = pdu.json.clone();
    map.remove("signatures");
    for e in entities {
        crypto::sign_event(&mut map, version, &sim_key(&e));
    }
    let out = Pdu::from_object(map, version).expect("well-formed");
    assert_eq!(out.event_id, pdu.event_id);
    Arc::new(out)
}

fn sim_server_keys() -> ServerKeys {
    NAMES.iter().map(|n| (n.to_string(), BTreeMap::from([(KEY_ID.to_owned(), sim_key(n).public_key())]))).collect()
}

/// Delivers `pdus` from `from` in one transaction; the server's decisions by event ID.
fn deliver(s: &mut Server, from: ServerIdx, pdus: Vec<Arc<Pdu>>) -> BTreeMap<String, (Verdict, Option<String>)> {
    let body = Request::Transaction { pdus };
    let out = s.handle(Input::Deliver { from, message: Message::Request { id: 1, body } }, 0);
    out.into_iter()
        .filter_map(|o| match o {
            Output::Event(SimEvent::Decision { event, decision, stage, .. }) => Some((event, (decision, stage))),
            _ => None,
        })
        .collect()
}

/// A v11/v12 room on hs1 with a restricted join rule, and bob of hs2 joining through alice of
/// hs1, signed by `signers`.
fn restricted_room(version: &'static RoomVersion, signers: &[&str]) -> (RoomBuilder, Pdu) {
    let mut r = RoomBuilder::new(version);
    r.add("CREATE", Ev::create("@alice:hs1").ts(1));
    r.add("MA", Ev::join("@alice:hs1").ts(2));
    // v12: the creator's power is implied and may not be listed.
    let users = if version.privileged_creators { json!({}) } else { json!({"@alice:hs1": 100}) };
    r.add("PL", Ev::power_levels("@alice:hs1", json!({ "users": users })).ts(3));
    let allow = json!([{"type": "m.room_membership", "room_id": "!other:hs1"}]);
    r.add(
        "JR",
        Ev::state("m.room.join_rules", "", "@alice:hs1", json!({"join_rule": "restricted", "allow": allow})).ts(4),
    );
    let join =
        Ev::join("@bob:hs2").with("join_authorised_via_users_server", json!("@alice:hs1")).ts(5).signed_by(signers);
    let pdu = r.add_unchecked("JOIN", join);
    (r, pdu)
}

/// `dag verify`'s verdict and stage on `event_id` over `pdus` (sim keys).
fn dag_verdict(version: &'static RoomVersion, pdus: &[Arc<Pdu>], event_id: &str) -> (String, Option<String>) {
    let pdus: Vec<Pdu> = pdus.iter().map(|p| (**p).clone()).collect();
    let v = verify::verify_dag(version, pdus, &VerifyOptions { keys: Some(sim_server_keys()), ..Default::default() });
    let verdict = &v.report.verdicts[event_id];
    (verdict.verdict.to_owned(), verdict.stage.map(|s| s.as_str().to_owned()))
}

#[test]
fn restricted_join_without_the_authorising_servers_signature_same_verdict_as_dag_verify() {
    for version in [&V11, &V12] {
        for mode in [SignatureMode::Real, SignatureMode::Modelled] {
            for (signers, sim_verdict, dag) in [
                (&["hs2"][..], Verdict::Dropped, ("rejected", Some("signature"))),
                (&["hs2", "hs1"][..], Verdict::Accepted, ("accepted", None)),
            ] {
                let (r, join) = restricted_room(version, signers);
                let names = ["CREATE", "MA", "PL", "JR"];
                let mut pdus: Vec<Arc<Pdu>> = names.iter().map(|n| resign(r.pdu(n), version)).collect();
                pdus.push(resign(&join, version));
                let (verdict, stage) = dag_verdict(version, &pdus, &join.event_id);
                assert_eq!((verdict.as_str(), stage.as_deref()), dag, "dag verify, {} {signers:?}", version.id);
                // A third server and the authoriser's own server judge the same way.
                for receiver in [2, 0] {
                    let dir = directory();
                    let mut s = server(receiver, mode, &dir, r.room_id(), version);
                    let decisions = deliver(&mut s, 1, pdus.clone());
                    let (got, got_stage) = &decisions[&join.event_id];
                    assert_eq!(*got, sim_verdict, "server {receiver}, {} {mode:?} {signers:?}", version.id);
                    assert_eq!(got_stage.as_deref(), dag.1, "the same stage as dag verify");
                    for n in names {
                        assert_eq!(decisions[&r.pdu(n).event_id].0, Verdict::Accepted, "{n}");
                    }
                }
            }
        }
    }
}

#[test]
fn msc4243_account_key_signatures_are_checked_without_a_key_fetch() {
    // MSC4243 §3, §9: a simulated server verifies account-key signatures with the key in the
    // localpart (nothing parked for a server key), as dag verify does with no key file.
    use crate::protocol::room_version::MSC4243_V12;
    use crate::protocol::test_support::account_key;
    let version = &MSC4243_V12;
    let mut r = RoomBuilder::new(version);
    let alice = r.account("alice", "hs1");
    let bob = r.account("bob", "hs2");
    r.add("CREATE", Ev::create(&alice).ts(1));
    r.add("MA", Ev::join(&alice).ts(2));
    let allow = json!([{"type": "m.room_membership", "room_id": "!other:hs1"}]);
    r.add("JR", Ev::state("m.room.join_rules", "", &alice, json!({"join_rule": "restricted", "allow": allow})).ts(3));
    let join = || Ev::join(&bob).with("join_authorised_via_users_server", json!(alice)).ts(4);
    let both = r.build(join());
    let joiner_only = r.build(join().signed_by(&[&account_key("bob").entity]));
    let by_servers = r.build(join().signed_by(&["hs2", "hs1"]));
    let room: Vec<Arc<Pdu>> = ["CREATE", "MA", "JR"].iter().map(|n| Arc::new(r.pdu(n).clone())).collect();
    for mode in [SignatureMode::Real, SignatureMode::Modelled] {
        for (pdu, expected) in [
            (&both, (Verdict::Accepted, None)),
            (&joiner_only, (Verdict::Dropped, Some("signature".to_owned()))),
            (&by_servers, (Verdict::Dropped, Some("signature".to_owned()))),
        ] {
            let dir = directory();
            let mut s = server(2, mode, &dir, r.room_id(), version);
            let mut pdus = room.clone();
            pdus.push(Arc::new(pdu.clone()));
            let decisions = deliver(&mut s, 1, pdus.clone());
            for p in &room {
                assert_eq!(decisions[&p.event_id].0, Verdict::Accepted, "{mode:?}");
            }
            assert_eq!(decisions[&pdu.event_id], expected, "{mode:?}");
            let (verdict, stage) = {
                let pdus: Vec<Pdu> = pdus.iter().map(|p| (**p).clone()).collect();
                let v = verify::verify_dag(version, pdus, &VerifyOptions::default());
                let v = &v.report.verdicts[&pdu.event_id];
                (v.verdict, v.stage.map(|s| s.as_str().to_owned()))
            };
            assert_eq!(
                (verdict == "accepted", stage),
                (expected.0 == Verdict::Accepted, expected.1),
                "same as dag verify"
            );
        }
    }
}

/// `pdu` with its `hs_name` signature replaced by one made with `key` (a well-formed ed25519
/// signature: no marker string to catch).
fn signed_with(pdu: &Pdu, version: &'static RoomVersion, key: &KeyPair) -> Arc<Pdu> {
    let mut map: Map<String, Value> = pdu.json.clone();
    map.remove("signatures");
    crypto::sign_event(&mut map, version, key);
    Arc::new(Pdu::from_object(map, version).expect("well-formed"))
}

#[test]
fn a_well_formed_signature_by_the_wrong_key_is_dropped_in_both_modes() {
    let version = &V12;
    let mut r = RoomBuilder::new(version);
    r.add("CREATE", Ev::create("@alice:hs1").ts(1));
    r.add("MA", Ev::join("@alice:hs1").ts(2));
    r.add("PL", Ev::power_levels("@alice:hs1", json!({"users": {}})).ts(3));
    r.add("JR", Ev::join_rules("@alice:hs1", "public").ts(4));
    r.add("MB", Ev::join("@bob:hs2").ts(5));
    let message = r.build(Ev::message("@bob:hs2", "hi").ts(6));
    let room: Vec<Arc<Pdu>> = ["CREATE", "MA", "PL", "JR", "MB"].iter().map(|n| resign(r.pdu(n), version)).collect();
    let honest = signed_with(&message, version, &sim_key("hs2"));
    let wrong = KeyPair::from_seed("hs2", KEY_ID, crypto::sha256(b"not hs2's key"));
    let forged = signed_with(&message, version, &wrong);
    let forged_sig = forged.json["signatures"]["hs2"][KEY_ID].as_str().unwrap();
    assert!(crypto::b64_decode(forged_sig).is_some_and(|b| b.len() == 64), "a well-formed signature");
    assert_eq!(forged.event_id, honest.event_id);
    for mode in [SignatureMode::Real, SignatureMode::Modelled] {
        let dir = directory();
        // As if hs1 and hs2 had made their events: their signatures are in the ledger.
        for p in &room {
            let signer = if p.sender.ends_with(":hs2") { 1 } else { 0 };
            dir.record_signature(signer, &sim_key(NAMES[signer as usize]), p);
        }
        dir.record_signature(1, &sim_key("hs2"), &honest);
        dir.record_signature(1, &wrong, &forged); // not hs2's key: never entered
        let mut s = server(2, mode, &dir, r.room_id(), version);
        let decisions = deliver(&mut s, 1, room.clone());
        assert!(decisions.values().all(|(v, _)| *v == Verdict::Accepted), "{decisions:?}");
        let d = deliver(&mut s, 1, vec![forged.clone()]);
        assert_eq!(d[&forged.event_id], (Verdict::Dropped, Some("signature".to_owned())), "{mode:?}");
        let d = deliver(&mut s, 1, vec![honest.clone()]);
        assert_eq!(d[&honest.event_id].0, Verdict::Accepted, "{mode:?}");
        // Modelled: the honest events were lookups; only the forgery paid a real verification.
        let expected_fallbacks = if mode == SignatureMode::Modelled { 1 } else { 0 };
        assert_eq!(dir.signatures.fallbacks(), expected_fallbacks, "{mode:?}");
    }
}

#[test]
fn own_domain_event_arriving_over_federation_is_checked_in_full() {
    let version = &V11;
    let mut r = RoomBuilder::new(version);
    r.add("CREATE", Ev::create("@alice:hs1").ts(1));
    r.add("MA", Ev::join("@alice:hs1").ts(2));
    r.add("PL", Ev::power_levels("@alice:hs1", json!({"users": {"@alice:hs1": 100}})).ts(3));
    let room: Vec<Arc<Pdu>> = ["CREATE", "MA", "PL"].iter().map(|n| resign(r.pdu(n), version)).collect();
    let message = resign(&r.build(Ev::message("@alice:hs1", "hi").ts(4)), version);
    // The content hash rewritten, the signature left as it was (it covers the hash).
    let mut tampered_hash = message.json.clone();
    tampered_hash["hashes"]["sha256"] = json!(crypto::b64_encode(&crypto::sha256(b"something else")));
    let tampered_hash = Arc::new(Pdu::from_object(tampered_hash, version).unwrap());
    // The body rewritten, hash and signature left: the signature (of the redacted event) still
    // verifies, the hash does not.
    let mut tampered_body = message.json.clone();
    tampered_body["content"]["body"] = json!("bye");
    let tampered_body = Arc::new(Pdu::from_object(tampered_body, version).unwrap());
    assert_eq!(tampered_body.event_id, message.event_id, "non-essential content is not in the event ID");
    for mode in [SignatureMode::Real, SignatureMode::Modelled] {
        let dir = directory();
        // hs1 receives its own domain's events from hs2 (e.g. a fetch answer after a restart).
        let mut s = server(0, mode, &dir, r.room_id(), version);
        let decisions = deliver(&mut s, 1, room.clone());
        assert!(decisions.values().all(|(v, _)| *v == Verdict::Accepted), "{decisions:?}");
        let d = deliver(&mut s, 1, vec![tampered_hash.clone()]);
        assert_eq!(d[&tampered_hash.event_id], (Verdict::Dropped, Some("signature".to_owned())), "{mode:?}");
        // And dag verify refuses it too (it reports the hash mismatch, which it checks first).
        let mut all = room.clone();
        all.push(tampered_hash.clone());
        assert_eq!(dag_verdict(version, &all, &tampered_hash.event_id), ("rejected".to_owned(), Some("hash".into())));
        // A tampered body: stored as its redacted copy (receipt check 3), never as received.
        let d = deliver(&mut s, 1, vec![tampered_body.clone()]);
        assert_eq!(d[&tampered_body.event_id].0, Verdict::Accepted, "{mode:?}");
        let replica = &s.rooms[r.room_id()];
        let idx = replica.dag.index_of(&tampered_body.event_id).expect("stored");
        assert_eq!(replica.dag.pdu(idx).json["content"], json!({}), "{mode:?}: the redacted copy");
    }
}

/// Received redactions (room version 11, "Handling redactions"): applied when the redaction's
/// sender has the redact level or is on the target sender's server, not otherwise; one that
/// arrives before its target waits for it; the applied form is what the server stores, serves
/// and reads as state (same event ID, the state slot still filled).
#[test]
fn received_redactions_are_applied_by_power_or_domain_and_served_redacted() {
    let version = &V11;
    let mut r = RoomBuilder::new(version);
    r.add("CREATE", Ev::create("@alice:hs1").ts(1));
    r.add("MA", Ev::join("@alice:hs1").ts(2));
    r.add("PL", Ev::power_levels("@alice:hs1", json!({"users": {"@alice:hs1": 100}})).ts(3));
    r.add("JR", Ev::join_rules("@alice:hs1", "public").ts(4));
    r.add("MB", Ev::join("@bob:hs2").ts(5));
    r.add("MC", Ev::join("@carol:hs3").ts(6));
    r.add("MD", Ev::join("@dave:hs2").ts(7));
    r.add("TOPIC", Ev::topic("@alice:hs1", "the topic").ts(8));
    r.add("MSG1", Ev::message("@bob:hs2", "MSG1").ts(9));
    r.add("MSG2", Ev::message("@bob:hs2", "MSG2").ts(10));
    // A branch of its own: the redactions below do not build on it.
    r.add("MSG3", Ev::message("@bob:hs2", "MSG3").ts(11).prev(&["MSG2"]));
    let redact = |sender: &str, target: &str, ts: i64| {
        Ev::new("m.room.redaction", None, sender, json!({"redacts": r.id(target)})).ts(ts)
    };
    let (no_power, same_domain, with_power, early) = (
        redact("@carol:hs3", "MSG1", 20).prev(&["MSG2"]),
        redact("@dave:hs2", "MSG2", 21),
        redact("@alice:hs1", "TOPIC", 22),
        redact("@alice:hs1", "MSG3", 23),
    );
    let mut r2 = r;
    for (name, ev) in [("R1", no_power), ("R2", same_domain), ("R3", with_power), ("R4", early)] {
        r2.add(name, ev);
    }
    let r = r2;
    let names = ["CREATE", "MA", "PL", "JR", "MB", "MC", "MD", "TOPIC", "MSG1", "MSG2"];
    let first: Vec<Arc<Pdu>> = names.iter().map(|n| resign(r.pdu(n), version)).collect();
    let redactions: Vec<Arc<Pdu>> = ["R1", "R2", "R3", "R4"].iter().map(|n| resign(r.pdu(n), version)).collect();
    let dir = directory();
    let mut s = server(0, SignatureMode::Real, &dir, r.room_id(), version);
    let mut all = first.clone();
    all.extend(redactions.clone());
    // MSG3 arrives last: R4 (which cites it only by `redacts`) waits for it.
    let decisions = deliver(&mut s, 1, all);
    assert!(decisions.values().all(|(v, _)| *v == Verdict::Accepted), "{decisions:?}");
    let room_id = r.room_id().to_owned();
    assert!(!s.is_redacted(&room_id, &r.id("MSG3")), "its target is not held yet");
    deliver(&mut s, 1, vec![resign(r.pdu("MSG3"), version)]);
    let stored = |s: &Server, name: &str| {
        let room = &s.rooms[&room_id];
        room.dag.pdu(room.dag.index_of(&r.id(name)).expect("held")).clone()
    };
    assert_eq!(stored(&s, "MSG1").json["content"]["body"], json!("MSG1"), "no power, another server: not applied");
    assert!(!s.is_redacted(&room_id, &r.id("MSG1")));
    for name in ["MSG2", "MSG3", "TOPIC"] {
        assert!(s.is_redacted(&room_id, &r.id(name)), "{name} redacted");
        let p = stored(&s, name);
        assert_eq!(p.event_id, r.id(name), "{name}: same event ID");
        assert_eq!(p.json["content"], json!({}), "{name}: stored redacted");
        assert_eq!(p.json["signatures"], resign(r.pdu(name), version).json["signatures"], "{name}: signatures kept");
    }
    // Redacted state is still state: the topic slot holds the (redacted) event.
    let topic = s.rooms[&room_id].current_event("m.room.topic", "").expect("still in the state");
    assert_eq!((topic.event_id.clone(), topic.json["content"].clone()), (r.id("TOPIC"), json!({})));
    // Served redacted: a get_missing_events answer carries the redacted forms, and another
    // server accepts them (receipt check 3 goes on with the redacted copy).
    let body = Request::GetMissingEvents {
        room_id: room_id.clone(),
        earliest: vec![r.id("MD")],
        latest: vec![r.id("R4")],
        limit: 20,
    };
    let out = s.handle(Input::Deliver { from: 2, message: Message::Request { id: 9, body } }, 0);
    let served: Vec<Arc<Pdu>> = out
        .into_iter()
        .find_map(|o| match o {
            Output::Send {
                message: Message::Response { outcome: crate::sim::federation::Outcome::Ok(resp), .. },
                ..
            } => Some(resp.pdus().cloned().collect::<Vec<_>>()),
            _ => None,
        })
        .expect("an answer");
    let msg2 = served.iter().find(|p| p.event_id == r.id("MSG2")).expect("MSG2 served");
    assert_eq!(msg2.json["content"], json!({}), "served redacted");
    let mut other = server(2, SignatureMode::Real, &dir, r.room_id(), version);
    let mut copy = first[..9].to_vec(); // up to MSG1, MSG2's parent
    copy.push(msg2.clone());
    let d = deliver(&mut other, 0, copy);
    assert_eq!(d[&msg2.event_id].0, Verdict::Accepted, "the redacted copy is accepted");
}

/// Delivers every message the servers send each other until none is left (timers ignored);
/// the requests sent, by endpoint name, and each server's decision records.
fn pump(servers: &mut [Server], first: Vec<(ServerIdx, ServerIdx, Message)>) -> (Vec<String>, Vec<Vec<SimEvent>>) {
    let mut queue: std::collections::VecDeque<(ServerIdx, ServerIdx, Message)> = first.into();
    let mut requests = Vec::new();
    let mut records = vec![Vec::new(); servers.len()];
    while let Some((from, to, message)) = queue.pop_front() {
        if let Message::Request { body, .. } = &message {
            requests.push(body.name().to_owned());
        }
        for o in servers[to as usize].handle(Input::Deliver { from, message }, 0) {
            match o {
                Output::Send { to: dest, message, .. } => queue.push_back((to, dest, message)),
                Output::Event(e @ SimEvent::Decision { .. }) => records[to as usize].push(e),
                _ => {}
            }
        }
    }
    (requests, records)
}

/// The room of the gap tests: hs1's alice and hs2's bob joined to a public v11 room.
const GAP_SETUP: [&str; 5] = ["CREATE", "MA", "PL", "JR", "MB"];

fn gap_room() -> RoomBuilder {
    let mut r = RoomBuilder::new(&V11);
    r.add("CREATE", Ev::create("@alice:hs1"));
    r.add("MA", Ev::join("@alice:hs1"));
    r.add("PL", Ev::power_levels("@alice:hs1", json!({"users": {"@alice:hs1": 100}})));
    r.add("JR", Ev::join_rules("@alice:hs1", "public"));
    r.add("MB", Ev::join("@bob:hs2"));
    r
}

/// hs1 and hs2 with real signatures, in `join.mode = "state"`.
fn state_join_servers(room_id: &str) -> Vec<Server> {
    let dir = directory();
    let mut servers: Vec<Server> = (0..2).map(|i| server(i, SignatureMode::Real, &dir, room_id, &V11)).collect();
    for s in &mut servers {
        s.config.join_mode = crate::scenario::JoinMode::State;
    }
    servers
}

/// A gap wider than one `get_missing_events` round (`join.mode = "state"`): hs2 holds the room
/// up to M1 and receives only X, 25 messages later. One round brings the 10 newest; the rest
/// is bridged with `/state_ids` at the oldest missing prev event (stored as an outlier), so
/// every event received is judged and nothing stays pending.
#[test]
fn a_gap_too_wide_for_one_round_is_bridged_with_state_ids() {
    let mut r = gap_room();
    let names: Vec<String> = (1..=25).map(|i| format!("M{i}")).collect();
    for n in &names {
        r.add(n, Ev::message("@alice:hs1", n));
    }
    r.add("T", Ev::topic("@alice:hs1", "after the gap"));
    let room_id = r.room_id().to_owned();
    let mut servers = state_join_servers(&room_id);
    let pdu = |n: &str| resign(r.pdu(n), &V11);
    let setup = GAP_SETUP;
    let all: Vec<Arc<Pdu>> =
        setup.iter().copied().chain(names.iter().map(String::as_str)).chain(["T"]).map(pdu).collect();
    deliver(&mut servers[0], 2, all);
    deliver(&mut servers[1], 0, setup.iter().copied().chain(["M1"]).map(pdu).collect());
    let x = Message::Request { id: 1, body: Request::Transaction { pdus: vec![pdu("T")] } };
    let (requests, records) = pump(&mut servers, vec![(0, 1, x)]);
    assert_eq!(requests.iter().filter(|r| *r == "get_missing_events").count(), 1, "{requests:?}");
    assert_eq!(requests.iter().filter(|r| *r == "state_ids").count(), 1, "{requests:?}");
    let hs2 = &servers[1].rooms[&room_id];
    assert!(hs2.pending.is_empty(), "nothing waits: {:?}", hs2.pending.keys());
    // The 10 newest and T are timeline events; M15, the missing prev of M16, an outlier; M2..M14
    // (inside the gap) are not held.
    for i in 16..=25 {
        assert!(hs2.in_timeline(&r.id(&format!("M{i}"))), "M{i}");
    }
    assert!(hs2.in_timeline(&r.id("T")));
    let m15 = hs2.dag.index_of(&r.id("M15")).expect("M15 fetched");
    assert!(hs2.is_outlier(m15));
    assert!(!hs2.has(&r.id("M14")));
    let decided = |id: &str| {
        records[1].iter().rev().find_map(|e| match e {
            SimEvent::Decision { event, decision, .. } if event == id => Some(*decision),
            _ => None,
        })
    };
    assert_eq!(decided(&r.id("M15")), Some(Verdict::Outlier));
    assert_eq!(decided(&r.id("M16")), Some(Verdict::Accepted));
    assert_eq!(decided(&r.id("T")), Some(Verdict::Accepted));
    // Its current state is hs1's: the topic after the gap.
    let topic = hs2.current_event("m.room.topic", "").map(|p| p.event_id.clone());
    assert_eq!(topic, Some(r.id("T")));
    // M1 stays a forward extremity: no event hs2 holds cites it (M2 is inside the gap), as in
    // Synapse; hs2's next event merges the two.
    let tips: std::collections::BTreeSet<String> =
        hs2.extremities.iter().map(|e| r.name_of(&hs2.dag.pdu(*e).event_id)).collect();
    assert_eq!(tips, ["M1".to_owned(), "T".to_owned()].into());
}

/// A gap whose waiting events lack an auth event (`join.mode = "state"`): carol joins on hs1
/// and sends 25 messages; hs2 holds the room up to MB and receives only carol's last message.
/// After one `get_missing_events` round the waiting messages lack carol's join (an auth event
/// inside the gap): one `/event_auth` brings the auth chain of one of them, its join is stored
/// as an outlier, and every waiting message is judged, accepted, as on hs1.
#[test]
fn a_gap_lacking_an_auth_event_fetches_the_auth_chain_with_event_auth() {
    let mut r = gap_room();
    r.add("MC", Ev::join("@carol:hs1"));
    let names: Vec<String> = (1..=25).map(|i| format!("C{i}")).collect();
    for n in &names {
        r.add(n, Ev::message("@carol:hs1", n));
    }
    let room_id = r.room_id().to_owned();
    let mut servers = state_join_servers(&room_id);
    let pdu = |n: &str| resign(r.pdu(n), &V11);
    let setup = GAP_SETUP;
    let all: Vec<Arc<Pdu>> =
        setup.iter().copied().chain(["MC"]).chain(names.iter().map(String::as_str)).map(pdu).collect();
    deliver(&mut servers[0], 2, all);
    deliver(&mut servers[1], 0, setup.iter().copied().map(pdu).collect());
    let x = Message::Request { id: 1, body: Request::Transaction { pdus: vec![pdu("C25")] } };
    let (requests, records) = pump(&mut servers, vec![(0, 1, x)]);
    assert_eq!(requests.iter().filter(|r| *r == "event_auth").count(), 1, "{requests:?}");
    let hs2 = &servers[1].rooms[&room_id];
    assert!(hs2.pending.is_empty(), "nothing waits: {:?}", hs2.pending.keys());
    let mc = hs2.dag.index_of(&r.id("MC")).expect("carol's join fetched");
    assert!(!hs2.dag.event(mc).is_rejected());
    let decided = |id: &str| {
        records[1].iter().rev().find_map(|e| match e {
            SimEvent::Decision { event, decision, .. } if event == id => Some(*decision),
            _ => None,
        })
    };
    for i in 16..=25 {
        assert_eq!(decided(&r.id(&format!("C{i}"))), Some(Verdict::Accepted), "C{i}");
    }
    // Carol is joined in hs2's state, as in hs1's.
    let member = hs2.current_event("m.room.member", "@carol:hs1").map(|p| p.event_id.clone());
    assert_eq!(member, Some(r.id("MC")));
}

/// `join.mode` scenario: hs1 and hs2 talk and change the topic; hs3 joins at 20 s, then talks.
fn late_join_scenario(mode: &str) -> crate::scenario::Scenario {
    let text = format!(
        r#"
[scenario]
name = "late-join"
end = "quiescence"
max_time = "2m"
quiet_period = "5s"

[defaults]
signatures = "modelled"
users = 1

[[servers]]
prefix = "hs"
count = 3

[join]
mode = "{mode}"

[[rooms]]
name = "main"
version = "11"
creator = "@u0:hs1"
members = ["@u0:hs1", "@u0:hs2"]

[[timeline]]
at = "3s"
action = "message"
room = "main"
user = "@u0:hs2"
count = 12
every = "1s"

[[timeline]]
at = "8s"
action = "topic"
room = "main"
user = "@u0:hs1"
text = "before hs3"

[[timeline]]
at = "20s"
action = "join"
room = "main"
user = "@u0:hs3"

[[timeline]]
at = "25s"
action = "message"
room = "main"
user = "@u0:hs3"
count = 3
every = "1s"
"#
    );
    parse_scenario("late-join.toml", &text, &[]).expect("valid scenario")
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A state-mode join: hs3 gets the state and auth chain as outliers and the join as its first
/// timeline event, backfills the history (fewer than 100 events: all of it, de-outliered),
/// accepts later events, and the run converges with every invariant holding. `full_history`
/// gives the same room without outliers, `/backfill` or `/state_ids`.
#[test]
fn a_state_join_holds_outliers_backfills_history_and_converges() {
    use crate::metrics::instrumented_world;
    use crate::sim::log::LogWriter;
    use crate::sim::observe::WorldView;
    for mode in ["state", "full_history"] {
        let sc = late_join_scenario(mode);
        let buf = SharedBuf::default();
        let mut world = instrumented_world(&sc, 5, LogWriter::new(Box::new(buf.clone())));
        world.run();
        let room_id = world.rooms()["main"].clone();
        let hs1 = world.servers().find(|s| s.name == "hs1").expect("hs1");
        let hs3 = world.servers().find(|s| s.name == "hs3").expect("hs3");
        let (r1, r3) = (&hs1.rooms[&room_id], &hs3.rooms[&room_id]);
        assert!(hs3.has_joined_user(&room_id), "{mode}: hs3 joined");
        assert_eq!(r3.dag.len(), r1.dag.len(), "{mode}: hs3 holds every event");
        let create = r1.dag.pdu(r1.dag.create().expect("create")).event_id.clone();
        assert!(r3.in_timeline(&create), "{mode}: the history reached back to the create event");
        assert!(r3.dag.events().all(|(i, _)| !r3.is_outlier(i)), "{mode}: the backfill de-outliered every outlier");
        assert!(r3.pending.is_empty(), "{mode}");
        let result = world.finish(true).expect("finish");
        assert_eq!(result.invariant_violations, Vec::<String>::new(), "{mode}");
        let log = String::from_utf8(buf.0.lock().unwrap().clone()).expect("utf-8");
        let hs3_outliers =
            log.lines().filter(|l| l.contains(r#""server":"hs3""#) && l.contains(r#""decision":"outlier""#)).count();
        let backfills = log.matches(r#""endpoint":"backfill""#).count();
        if mode == "state" {
            assert!(hs3_outliers >= 5, "hs3 stored the state and auth chain as outliers ({hs3_outliers})");
            assert!(backfills >= 1, "hs3 backfilled");
        } else {
            assert_eq!((hs3_outliers, backfills), (0, 0), "full_history: no outlier, no backfill");
        }
    }
}
