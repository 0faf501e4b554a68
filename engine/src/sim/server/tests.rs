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
            } => Some(resp.pdus().to_vec()),
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
