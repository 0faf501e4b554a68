//! MSC4243 (account keys) at the protocol layer: who must sign (`signers`), the signature stage
//! of `dag verify` (`verify`), on `org.matrix.msc4243.12` rooms built with account-key users;
//! and that room version 12 still needs server keys.

use super::crypto::ACCOUNT_KEY_ID;
use super::dag::Stage;
use super::pdu::Pdu;
use super::room_version::{RoomVersion, MSC4243_V12, V12};
use super::signers::{required_signers, Signer, SignerError, SignerReason};
use super::test_support::{account_key, Ev, RoomBuilder};
use super::verify::{self, Verdict, VerifyOptions};
use serde_json::json;

/// A restricted MSC4243 room: alice (creator, hs1) and bob (hs2), account-key users, bob joined
/// through alice (`join_authorised_via_users_server`). Returns the builder, alice and bob.
fn room() -> (RoomBuilder, String, String) {
    let mut r = RoomBuilder::new(&MSC4243_V12);
    let alice = r.account("alice", "hs1");
    let bob = r.account("bob", "hs2");
    r.add("CREATE", Ev::create(&alice).ts(1));
    r.add("MA", Ev::join(&alice).ts(2));
    r.add(
        "JR",
        Ev::state(
            "m.room.join_rules",
            "",
            &alice,
            json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": "!other:hs1"}]}),
        )
        .ts(3),
    );
    r.add("MB", Ev::join(&bob).with("join_authorised_via_users_server", json!(alice)).ts(4));
    r.add("MSG", Ev::message(&bob, "hi").ts(5));
    (r, alice, bob)
}

const NAMES: [&str; 5] = ["CREATE", "MA", "JR", "MB", "MSG"];

/// `dag verify` with no key file over the named events plus `extra`; the verdict on `extra`.
fn judge_without_keys(r: &RoomBuilder, extra: Option<&Pdu>) -> (verify::Verified, Option<Verdict>) {
    let mut pdus: Vec<Pdu> = NAMES.iter().map(|n| r.pdu(n).clone()).collect();
    pdus.extend(extra.cloned());
    let verified = verify::verify_dag(r.version, pdus, &VerifyOptions::default());
    let verdict = extra.map(|p| verified.report.verdicts[&p.event_id].clone());
    (verified, verdict)
}

fn assert_signature_rejection(verdict: &Verdict, reason_part: &str) {
    assert_eq!((verdict.verdict, verdict.stage), ("rejected", Some(Stage::Signature)), "{verdict:?}");
    let reason = verdict.reason.as_deref().unwrap_or_default();
    assert!(reason.contains(reason_part), "{reason:?} does not contain {reason_part:?}");
}

#[test]
fn msc4243_events_are_signed_by_the_senders_account_key() {
    let (r, alice, _) = room();
    let key = account_key("alice");
    let create = r.pdu("CREATE");
    // MSC4243 §3: signatures[<account key = localpart>]["ed25519:1"], no server signature.
    assert_eq!(alice, format!("@{}:hs1", key.entity));
    let signatures = create.json["signatures"].as_object().unwrap();
    assert_eq!(signatures.keys().collect::<Vec<_>>(), [&key.entity]);
    assert!(signatures[&key.entity].get(ACCOUNT_KEY_ID).is_some());
}

#[test]
fn msc4243_required_signers_are_account_keys() {
    let (r, alice, bob) = room();
    let alice_key = account_key("alice").entity;
    let bob_key = account_key("bob").entity;
    let v = &MSC4243_V12;
    // Each required signer as shown (`account key <key>` or the server name), with its reason.
    let signers = |ev: Ev| -> Result<Vec<(String, SignerReason)>, SignerError> {
        let pdu = r.build(ev);
        Ok(required_signers(v, &pdu)?.into_iter().map(|s| (s.signer.to_string(), s.reason)).collect())
    };
    let sender = |key: &str| (format!("account key {key}"), SignerReason::SenderAccountKey);
    assert_eq!(signers(Ev::message(&bob, "hi")).unwrap(), vec![sender(&bob_key)]);
    // Invites: only the inviter's key is required (the invitee's co-signature is not checked).
    let carol = format!("@{}:hs3", account_key("carol").entity);
    assert_eq!(signers(Ev::invite(&alice, &carol)).unwrap(), vec![sender(&alice_key)]);
    // Third-party-invite exemption, as for server keys.
    let tpi = Ev::invite(&alice, &carol).with("third_party_invite", json!({"signed": {"mxid": carol, "token": "t"}}));
    assert_eq!(signers(tpi).unwrap(), Vec::new());
    // MSC4243 §9: a restricted join needs the authorising user's account key, not its server.
    let join = Ev::join(&carol).with("join_authorised_via_users_server", json!(alice));
    let carol_key = account_key("carol").entity;
    assert_eq!(
        signers(join).unwrap(),
        vec![sender(&carol_key), (format!("account key {alice_key}"), SignerReason::AuthorisingAccountKey)]
    );
    // The same key under another domain: one signature covers both.
    let join = Ev::join(&carol).with("join_authorised_via_users_server", json!(format!("@{carol_key}:hs1")));
    assert_eq!(signers(join).unwrap(), vec![sender(&carol_key)]);
    // A sender or an authoriser whose localpart is not a key cannot sign.
    assert_eq!(
        signers(Ev::message("@mallory:hs3", "hi")),
        Err(SignerError::SenderNotAccountKey("@mallory:hs3".into()))
    );
    let join = Ev::join(&carol).with("join_authorised_via_users_server", json!("@alice:hs1"));
    assert_eq!(signers(join), Err(SignerError::AuthoriserNotAccountKey("@alice:hs1".into())));
}

#[test]
fn msc4243_dag_is_accepted_by_dag_verify_without_a_key_file() {
    let (r, _, _) = room();
    // The library path of `roomsim dag verify`: JSON Lines in, room version from the create
    // event, no `--keys`.
    let lines: Vec<String> =
        NAMES.iter().rev().map(|n| String::from_utf8(r.pdu(n).canonical_bytes()).unwrap()).collect();
    let input = verify::parse_input(&lines.join("\n")).expect("one room");
    assert_eq!(input.version, &MSC4243_V12);
    let verified = verify::verify_input(input, &VerifyOptions::default());
    assert_eq!(verified.report.room_version, "org.matrix.msc4243.12");
    assert_eq!((verified.report.accepted, verified.report.rejected), (5, 0), "{:?}", verified.report.verdicts);
    // A key file changes nothing: account-key signatures need none.
    let with_keys = VerifyOptions { keys: Some(r.server_keys()), ..Default::default() };
    let again = verify::verify_dag(r.version, NAMES.iter().map(|n| r.pdu(n).clone()).collect(), &with_keys);
    assert_eq!(again.report.accepted, 5);
}

#[test]
fn msc4243_server_signature_alone_is_rejected_at_the_signature_stage() {
    let (r, _, bob) = room();
    // MSC4243 §3: homeserver signing keys no longer sign events; a server signature is not one.
    let by_server = r.build(Ev::message(&bob, "server signed").signed_by(&["hs2"]).ts(6));
    let (_, verdict) = judge_without_keys(&r, Some(&by_server));
    assert_signature_rejection(&verdict.unwrap(), "not signed by account key");
    // Another account's key is not the sender's.
    let alice_key = account_key("alice").entity;
    let by_other = r.build(Ev::message(&bob, "alice signed").signed_by(&[&alice_key]).ts(6));
    let (_, verdict) = judge_without_keys(&r, Some(&by_other));
    assert_signature_rejection(&verdict.unwrap(), "sender's account key");
    // A signature under the sender's key that does not verify (copied from another event).
    let good = r.build(Ev::message(&bob, "good").ts(6));
    let mut forged = r.build(Ev::message(&bob, "forged").ts(7)).json;
    forged["signatures"] = good.json["signatures"].clone();
    let forged = Pdu::from_object(forged, r.version).unwrap();
    let (_, verdict) = judge_without_keys(&r, Some(&forged));
    assert_signature_rejection(&verdict.unwrap(), "does not verify");
    let (_, verdict) = judge_without_keys(&r, Some(&good));
    assert_eq!(verdict.unwrap().verdict, "accepted");
}

#[test]
fn msc4243_restricted_join_needs_the_authorisers_account_key() {
    let (r, alice, _) = room();
    let mut r = r;
    let carol = r.account("carol", "hs3");
    let carol_key = account_key("carol").entity;
    let join = || Ev::join(&carol).with("join_authorised_via_users_server", json!(alice)).ts(6);
    // Signed by the joiner only: the authoriser's account key is missing (MSC4243 §9).
    let unsigned = r.build(join().signed_by(&[&carol_key]));
    let (_, verdict) = judge_without_keys(&r, Some(&unsigned));
    assert_signature_rejection(&verdict.unwrap(), "authorising account key");
    // Signed by the authoriser's server instead: still missing.
    let by_server = r.build(join().signed_by(&[&carol_key, "hs1"]));
    let (_, verdict) = judge_without_keys(&r, Some(&by_server));
    assert_signature_rejection(&verdict.unwrap(), "authorising account key");
    // Both account keys: accepted.
    let signed = r.build(join());
    let (_, verdict) = judge_without_keys(&r, Some(&signed));
    assert_eq!(verdict.unwrap().verdict, "accepted");
}

#[test]
fn msc4243_sender_that_is_no_account_key_fails_the_signature_check() {
    let (r, _, _) = room();
    let ev = r.build(Ev::message("@bob:hs2", "hi").ts(6));
    let (_, verdict) = judge_without_keys(&r, Some(&ev));
    assert_signature_rejection(&verdict.unwrap(), "is not an account-key user ID");
}

#[test]
fn v12_dag_still_needs_server_keys() {
    let v: &'static RoomVersion = &V12;
    let mut r = RoomBuilder::new(v);
    r.add("CREATE", Ev::create("@alice:hs1").ts(1));
    r.add("MA", Ev::join("@alice:hs1").ts(2));
    let pdus = || vec![r.pdu("CREATE").clone(), r.pdu("MA").clone()];
    let pdu = r.build(Ev::message("@alice:hs1", "hi").ts(3));
    assert_eq!(required_signers(v, &pdu).unwrap()[0].signer, Signer::Server("hs1"));
    // With the server's key: accepted.
    let keys = r.server_keys();
    let ok = verify::verify_dag(v, pdus(), &VerifyOptions { keys: Some(keys.clone()), ..Default::default() });
    assert_eq!(ok.report.accepted, 2);
    // A key file without hs1's key: rejected at the signature stage.
    let mut missing = keys.clone();
    missing.remove("hs1");
    let bad = verify::verify_dag(v, pdus(), &VerifyOptions { keys: Some(missing), ..Default::default() });
    let verdict = &bad.report.verdicts[&r.id("MA")];
    assert_eq!((verdict.verdict, verdict.stage), ("rejected", Some(Stage::Signature)));
    assert_eq!(verdict.reason.as_deref(), Some("no public keys known for hs1"));
    // An account-key signature is no server signature in v12.
    let mut a = RoomBuilder::new(v);
    let alice = a.account("alice", "hs1");
    a.add_unchecked("CREATE", Ev::create(&alice).ts(1).signed_by(&[&account_key("alice").entity]));
    let judged =
        verify::verify_dag(v, vec![a.pdu("CREATE").clone()], &VerifyOptions { keys: Some(keys), ..Default::default() });
    let verdict = &judged.report.verdicts[&a.id("CREATE")];
    assert_eq!((verdict.verdict, verdict.stage), ("rejected", Some(Stage::Signature)));
}
