//! MSC4345 (server participation) and MSC4348 (portable accounts) at the protocol layer: every
//! rule of the participation block and of the MSC4348 binding, positive and negative, each
//! reading of a defect ([`ParticipationRules`]) shown to change the verdict, who must sign,
//! redaction, state resolution of a revocation racing an event, and `dag verify` judging the
//! DAGs with no key file.

use super::dag::Stage;
use super::pdu::Pdu;
use super::redaction;
use super::room_version::{
    AcceptMode, AccountRevocation, ParticipationRules, RoomVersion, MSC4345_V12, MSC4348_V12, V12,
};
use super::signers::{required_signers, SignerError, SignerReason};
use super::test_support::{Ev, RoomBuilder};
use super::verify::{self, VerifyOptions};
use serde_json::json;

const P: &str = "m.server.participation";

fn rules(change: impl FnOnce(&mut ParticipationRules)) -> ParticipationRules {
    let mut r = ParticipationRules::DEFAULT;
    change(&mut r);
    r
}

fn v4345(change: impl FnOnce(&mut ParticipationRules)) -> &'static RoomVersion {
    MSC4345_V12.with_participation_rules(rules(change))
}

fn v4348(change: impl FnOnce(&mut ParticipationRules)) -> &'static RoomVersion {
    MSC4348_V12.with_participation_rules(rules(change))
}

fn participation(sender: &str, key: &str, state: &str, domain: &str) -> Ev {
    Ev::state(P, key, sender, json!({"participation": state, "unverified_domain": domain}))
}

fn request(sender: &str, key: &str, domain: &str, via: &str) -> Ev {
    Ev::state(
        P,
        key,
        sender,
        json!({"participation": "requested", "unverified_domain": domain, "request_authorised_via_server": via}),
    )
}

fn rule_of(r: &RoomBuilder, ev: Ev) -> String {
    match r.check(ev) {
        Ok(()) => "accepted".into(),
        Err((_, rejection)) => rejection.rule.into_owned(),
    }
}

/// An MSC4345 room: server keys S1 (hs1), S2 (hs2), S3 (hs3); alice on S1 created it and is
/// joined; bob on S2 and carol on S3 are not in it yet.
struct Room4345 {
    r: RoomBuilder,
    s1: String,
    s2: String,
    s3: String,
    alice: String,
    bob: String,
    carol: String,
}

fn room4345(version: &'static RoomVersion) -> Room4345 {
    let mut r = RoomBuilder::new(version);
    let (s1, s2, s3) = (r.key("hs1"), r.key("hs2"), r.key("hs3"));
    let (alice, bob, carol) = (format!("@alice:{s1}"), format!("@bob:{s2}"), format!("@carol:{s3}"));
    r.add("CREATE", Ev::create(&alice).ts(1));
    // §4 "Room creation": the creator's server accepts itself before the creator joins.
    r.add("P1", participation(&alice, &s1, "accepted", "hs1").ts(2));
    r.add("MA", Ev::join(&alice).ts(3));
    r.add("PL", Ev::power_levels(&alice, json!({"users": {}, "users_default": 0})).ts(4));
    r.add("JR", Ev::join_rules(&alice, "public").ts(5));
    Room4345 { r, s1, s2, s3, alice, bob, carol }
}

impl Room4345 {
    /// S2 requests through S1 and alice accepts it; bob joins.
    fn admit_bob(&mut self) {
        let (bob, s1, s2, alice) = (self.bob.clone(), self.s1.clone(), self.s2.clone(), self.alice.clone());
        self.r.add("R2", request(&bob, &s2, "hs2", &s1));
        self.r.add("A2", participation(&alice, &s2, "accepted", "hs2"));
        self.r.add("MB", Ev::join(&bob));
    }
}

#[test]
fn msc4345_the_creators_server_bootstraps_and_nobody_else_can() {
    let mut t = room4345(&MSC4345_V12);
    // 1.1.1.2: another key's first participation must be a request.
    let (bob, s2) = (t.bob.clone(), t.s2.clone());
    assert_eq!(rule_of(&t.r, participation(&bob, &s2, "accepted", "hs2")), "msc4345 1.1.1.2");
    // Rule 2: an event of a server with no participation is refused before the member rules.
    assert_eq!(rule_of(&t.r, Ev::join(&bob)), "msc4345 2");
    t.admit_bob();
    t.r.add("MSG", Ev::message(&t.bob.clone(), "hi"));
    t.r.verify();
}

#[test]
fn msc4345_a_request_needs_an_accepted_co_signer() {
    let t = room4345(&MSC4345_V12);
    let (bob, s1, s2, s3) = (&t.bob, &t.s1, &t.s2, &t.s3);
    assert_eq!(rule_of(&t.r, request(bob, s2, "hs2", s1)), "accepted", "1.1.1.5 read as allow (D1)");
    // 1.1.1.3: the co-signer S3 has no participation; no co-signer at all.
    assert_eq!(rule_of(&t.r, request(bob, s2, "hs2", s3)), "msc4345 1.1.1.3");
    let bare = Ev::state(P, s2, bob, json!({"participation": "requested", "unverified_domain": "hs2"}));
    assert_eq!(rule_of(&t.r, bare), "msc4345 1.1.1.3");
    // The co-signature is a required signature (§6 step 4).
    let pdu = t.r.build(request(bob, s2, "hs2", s1));
    let reasons: Vec<SignerReason> =
        required_signers(&MSC4345_V12, &pdu).unwrap().into_iter().map(|s| s.reason).collect();
    assert_eq!(reasons, [SignerReason::SenderServerKey, SignerReason::RequestAuthorisedVia]);
    let unsigned = t.r.build(request(bob, s2, "hs2", s1).signed_by(&[s2]));
    let mut pdus: Vec<Pdu> = ["CREATE", "P1", "MA", "PL", "JR"].iter().map(|n| t.r.pdu(n).clone()).collect();
    pdus.push(unsigned.clone());
    let verified = verify::verify_dag(&MSC4345_V12, pdus, &VerifyOptions::default());
    let v = &verified.report.verdicts[&unsigned.event_id];
    assert_eq!((v.verdict, v.stage), ("rejected", Some(Stage::Signature)), "{v:?}");
    // D1 as written: even a correct request is rejected.
    let t = room4345(v4345(|r| r.fix_request_rule = false));
    assert_eq!(rule_of(&t.r, request(&t.bob, &t.s2, "hs2", &t.s1)), "msc4345 1.1.1.5");
}

#[test]
fn msc4345_acceptance_by_an_admin_of_a_matching_request() {
    let mut t = room4345(&MSC4345_V12);
    let (alice, bob, carol, s1, s2, s3) =
        (t.alice.clone(), t.bob.clone(), t.carol.clone(), t.s1.clone(), t.s2.clone(), t.s3.clone());
    // D4: no request yet.
    assert_eq!(rule_of(&t.r, participation(&alice, &s2, "accepted", "hs2")), "msc4345 D4");
    t.r.add("R2", request(&bob, &s2, "hs2", &s1));
    // D4: the accepted domain must be the requested one.
    assert_eq!(rule_of(&t.r, participation(&alice, &s2, "accepted", "evil.example")), "msc4345 D4");
    // C2 admin mode: the key cannot accept itself.
    assert_eq!(rule_of(&t.r, participation(&bob, &s2, "accepted", "hs2")), "msc4345 1.1.3");
    // 1.4: someone else cannot request for the key.
    assert_eq!(rule_of(&t.r, request(&alice, &s3, "hs3", &s1)), "msc4345 1.4");
    t.r.add("A2", participation(&alice, &s2, "accepted", "hs2"));
    t.r.add("MB", Ev::join(&bob));
    // 1.3.1: already accepted. 1.3.3: bob (level 0) cannot accept carol's server.
    assert_eq!(rule_of(&t.r, participation(&alice, &s2, "accepted", "hs2")), "msc4345 1.3.1");
    t.r.add("R3", request(&carol, &s3, "hs3", &s2));
    assert_eq!(rule_of(&t.r, participation(&bob, &s3, "accepted", "hs3")), "msc4345 1.3.3");
    // With the accept level lowered to 0, bob may.
    t.r.add("PL2", Ev::power_levels(&alice, json!({"users": {}, "accept": 0})));
    assert_eq!(rule_of(&t.r, participation(&bob, &s3, "accepted", "hs3")), "accepted");
    // D4 as written: an admin accepts a key that never asked.
    let t = room4345(v4345(|r| r.accept_requires_request = false));
    assert_eq!(rule_of(&t.r, participation(&t.alice, &t.s2, "accepted", "hs2")), "accepted");
}

#[test]
fn msc4345_self_acceptance_after_a_request_is_a_knob() {
    let mut t = room4345(v4345(|r| r.accept_mode = AcceptMode::SelfAfterRequest));
    let (alice, bob, s1, s2) = (t.alice.clone(), t.bob.clone(), t.s1.clone(), t.s2.clone());
    t.r.add("R2", request(&bob, &s2, "hs2", &s1));
    assert_eq!(rule_of(&t.r, participation(&alice, &s2, "accepted", "hs2")), "msc4345 C2");
    assert_eq!(rule_of(&t.r, participation(&bob, &s2, "accepted", "other.example")), "msc4345 C2");
    t.r.add("A2", participation(&bob, &s2, "accepted", "hs2"));
    t.r.add("MB", Ev::join(&bob));
    t.r.verify();
}

#[test]
fn msc4345_revocation_silences_a_server_for_good() {
    let mut t = room4345(&MSC4345_V12);
    t.admit_bob();
    let (alice, bob, s2) = (t.alice.clone(), t.bob.clone(), t.s2.clone());
    t.r.add("V2", participation(&alice, &s2, "revoked", "hs2"));
    // Rule 2: bob's server is revoked.
    assert_eq!(rule_of(&t.r, Ev::message(&bob, "still here?")), "msc4345 2");
    // 1.3.2: revocation is permanent; 1.1.3: the key cannot take itself back either.
    assert_eq!(rule_of(&t.r, participation(&alice, &s2, "accepted", "hs2")), "msc4345 1.3.2");
    assert_eq!(rule_of(&t.r, participation(&bob, &s2, "accepted", "hs2")), "msc4345 1.1.3");
}

#[test]
fn msc4345_self_revocation_is_final_and_admins_may_revoke_a_pending_request() {
    let mut t = room4345(&MSC4345_V12);
    t.admit_bob();
    let (alice, bob, carol, s2, s3) = (t.alice.clone(), t.bob.clone(), t.carol.clone(), t.s2.clone(), t.s3.clone());
    t.r.add("SELF", participation(&bob, &s2, "revoked", "hs2"));
    // 1.1.2 allowed it; 1.2.1: an admin cannot overwrite a self-revocation.
    assert_eq!(rule_of(&t.r, participation(&alice, &s2, "revoked", "hs2")), "msc4345 1.2.1");
    // D2: a pending request (set by the key itself) can be revoked by an admin by default...
    t.r.add("R3", request(&carol, &s3, "hs3", &t.s1.clone()));
    assert_eq!(rule_of(&t.r, participation(&alice, &s3, "revoked", "hs3")), "accepted");
    // ...and not as written.
    let mut w = room4345(v4345(|r| r.admin_revokes_pending = false));
    let (carol, s1, s3, alice) = (w.carol.clone(), w.s1.clone(), w.s3.clone(), w.alice.clone());
    w.r.add("R3", request(&carol, &s3, "hs3", &s1));
    assert_eq!(rule_of(&w.r, participation(&alice, &s3, "revoked", "hs3")), "msc4345 1.2.1");
}

#[test]
fn msc4345_revoking_needs_more_power_than_the_server_has() {
    // dave on S1 has level 100 but is not a creator; bob on S2 also has 100.
    for (strict, expected) in [(true, "msc4345 1.2.2"), (false, "accepted")] {
        let mut t = room4345(v4345(|r| r.revoke_strictly_above = strict));
        t.admit_bob();
        let (alice, bob, s1, s2) = (t.alice.clone(), t.bob.clone(), t.s1.clone(), t.s2.clone());
        let dave = format!("@dave:{s1}");
        t.r.add("MD", Ev::join(&dave));
        t.r.add("PL2", Ev::power_levels(&alice, json!({"users": {dave.clone(): 100, bob.clone(): 100}})));
        // D3: the prose wants dave's level above S2's implicit level (100); the rules ≥.
        assert_eq!(rule_of(&t.r, participation(&dave, &s2, "revoked", "hs2")), expected, "strict = {strict}");
        // The creator's server has infinite implicit power: nobody revokes it.
        assert_eq!(rule_of(&t.r, participation(&bob, &s1, "revoked", "hs1")), "msc4345 1.2.2");
    }
}

#[test]
fn msc4345_accept_is_a_validated_power_level() {
    let mut t = room4345(&MSC4345_V12);
    t.admit_bob();
    let (alice, bob) = (t.alice.clone(), t.bob.clone());
    let bad = Ev::power_levels(&alice, json!({"users": {}, "accept": "everyone"}));
    assert_eq!(rule_of(&t.r, bad), "v12 10.1");
    // Bob, given 50, cannot move `accept` above his own level (9.5 / v12 10.6).
    t.r.add("PL2", Ev::power_levels(&alice, json!({"users": {bob.clone(): 50}, "accept": 100})));
    let raise = Ev::power_levels(&bob, json!({"users": {bob.clone(): 50}, "accept": 40}));
    assert_eq!(rule_of(&t.r, raise), "v12 10.6");
    // In room version 12 `accept` means nothing: not validated.
    let mut v12 = RoomBuilder::new(&V12);
    v12.add("CREATE", Ev::create("@alice:hs1"));
    v12.add("MA", Ev::join("@alice:hs1"));
    assert_eq!(rule_of(&v12, Ev::power_levels("@alice:hs1", json!({"accept": "everyone"}))), "accepted");
}

#[test]
fn msc4345_redaction_keeps_what_the_rules_read() {
    let t = room4345(&MSC4345_V12);
    let pdu = t.r.build(request(&t.bob, &t.s2, "hs2", &t.s1).with("reason", json!("please")));
    let redacted = redaction::redact(&pdu.json, &MSC4345_V12);
    let content = redacted["content"].as_object().unwrap();
    let mut keys: Vec<&str> = content.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["participation", "request_authorised_via_server", "unverified_domain"], "reason is not kept");
    let pl = t.r.build(Ev::power_levels(&t.alice, json!({"accept": 50, "users": {}})));
    assert_eq!(redaction::redact(&pl.json, &MSC4345_V12)["content"]["accept"], json!(50));
    assert_eq!(redaction::redact(&pl.json, &V12)["content"].get("accept"), None, "v12 drops it");
}

/// A revocation of S2 (ts 20) concurrent with bob's topic (ts 10) on another branch.
fn revocation_race(version: &'static RoomVersion) -> Vec<String> {
    let mut t = room4345(version);
    t.admit_bob();
    let (alice, bob, s2) = (t.alice.clone(), t.bob.clone(), t.s2.clone());
    t.r.add("PLT", Ev::power_levels(&alice, json!({"users": {}, "events": {"m.room.topic": 0}})));
    t.r.add("TOPIC", Ev::topic(&bob, "bob's topic").prev(&["PLT"]).ts(10));
    t.r.add("REVOKE", participation(&alice, &s2, "revoked", "hs2").prev(&["PLT"]).ts(20));
    t.r.add("MERGE", Ev::message(&alice, "merge").prev(&["TOPIC", "REVOKE"]).ts(30));
    let verified = t.r.verify();
    let topics = verified.report.final_state.get("m.room.topic").cloned().unwrap_or_default();
    topics.values().map(|id| t.r.name_of(id)).collect()
}

#[test]
fn msc4345_a_revocation_racing_an_event_is_resolved_by_the_power_event_reading() {
    // D8 (C7): as power events, the revocation is replayed first and bob's topic then fails
    // rule 2; as ordinary state, the earlier topic is applied first and survives.
    assert_eq!(revocation_race(&MSC4345_V12), Vec::<String>::new());
    assert_eq!(revocation_race(v4345(|r| r.power_events = false)), ["TOPIC"]);
    // Deterministic: the same DAG resolves the same way every time.
    assert_eq!(revocation_race(&MSC4345_V12), revocation_race(&MSC4345_V12));
}

#[test]
fn msc4345_dag_verify_needs_no_key_file() {
    let mut t = room4345(&MSC4345_V12);
    t.admit_bob();
    t.r.add("MSG", Ev::message(&t.bob.clone(), "hi"));
    let pdus: Vec<Pdu> =
        ["CREATE", "P1", "MA", "PL", "JR", "R2", "A2", "MB", "MSG"].iter().map(|n| t.r.pdu(n).clone()).collect();
    let verified = verify::verify_dag(&MSC4345_V12, pdus.clone(), &VerifyOptions::default());
    assert!(verified.report.verdicts.values().all(|v| v.verdict == "accepted"), "{:?}", verified.report.verdicts);
    // A message signed by another server key than its sender's server part: signature stage.
    let forged = t.r.build(Ev::message(&t.bob, "forged").signed_by(&[&t.s1]));
    let mut with = pdus;
    with.push(forged.clone());
    let verified = verify::verify_dag(&MSC4345_V12, with, &VerifyOptions::default());
    let v = &verified.report.verdicts[&forged.event_id];
    assert_eq!((v.verdict, v.stage), ("rejected", Some(Stage::Signature)), "{v:?}");
    // A user ID that names a domain is not an MSC4345 user ID.
    let err = RoomBuilder::new(&MSC4345_V12).try_build(Ev::create("@alice:hs1")).unwrap_err();
    assert_eq!(err.field, "sender");
}

/// An MSC4348 room: accounts alice (creator), bob, carol, bare keys; server keys S1, S2, S3.
/// alice acts through S1; S2 is accepted and bob joined through it.
struct Room4348 {
    r: RoomBuilder,
    s: [String; 3],
    alice: String,
    bob: String,
}

fn by(ev: Ev, account: &str, servers: &[&str]) -> Ev {
    let key = account.trim_start_matches('@').to_owned();
    let mut all = vec![key.as_str()];
    all.extend_from_slice(servers);
    ev.signed_by(&all)
}

fn room4348(version: &'static RoomVersion) -> Room4348 {
    let mut r = RoomBuilder::new(version);
    let s = [r.key("hs1"), r.key("hs2"), r.key("hs3")];
    let (alice, bob) = (format!("@{}", r.key("alice")), format!("@{}", r.key("bob")));
    let s1 = s[0].as_str();
    r.add("CREATE", by(Ev::create(&alice).ts(1), &alice, &[s1]));
    r.add("P1", by(participation(&alice, s1, "accepted", "hs1").ts(2), &alice, &[s1]));
    r.add("MA", by(Ev::join(&alice).ts(3), &alice, &[s1]));
    r.add("JR", by(Ev::join_rules(&alice, "public").ts(4), &alice, &[s1]));
    // D7: server-only actions are signed by some account: bob's, for S2's request.
    r.add("R2", by(request(&bob, &s[1], "hs2", s1), &bob, &[&s[1], s1]));
    r.add("A2", by(participation(&alice, &s[1], "accepted", "hs2"), &alice, &[s1]));
    r.add("MB", by(Ev::join(&bob), &bob, &[&s[1]]));
    Room4348 { r, s, alice, bob }
}

#[test]
fn msc4348_every_event_is_signed_by_its_account_and_one_accepted_server() {
    let t = room4348(&MSC4348_V12);
    let (bob, s) = (&t.bob, &t.s);
    assert_eq!(rule_of(&t.r, by(Ev::message(bob, "hi"), bob, &[&s[1]])), "accepted");
    let reasons = |ev: Ev| {
        required_signers(&MSC4348_V12, &t.r.build(ev)).map(|l| l.into_iter().map(|s| s.reason).collect::<Vec<_>>())
    };
    assert_eq!(
        reasons(by(Ev::message(bob, "hi"), bob, &[&s[1]])),
        Ok(vec![SignerReason::SenderAccountKey, SignerReason::CoSigningServerKey])
    );
    assert_eq!(reasons(by(Ev::message(bob, "hi"), bob, &[])), Err(SignerError::NoCoSigner));
    assert_eq!(reasons(by(Ev::message(bob, "hi"), bob, &[&s[0], &s[1]])), Err(SignerError::SeveralCoSigners(2)));
    // 8.3.1: co-signed by S3, which has no participation.
    assert_eq!(rule_of(&t.r, by(Ev::message(bob, "hi"), bob, &[&s[2]])), "msc4348 8.3.1");
    // User IDs are bare keys (§2 rule 1).
    let err = RoomBuilder::new(&MSC4348_V12).try_build(Ev::create("@alice:hs1")).unwrap_err();
    assert_eq!(err.field, "sender");
}

#[test]
fn msc4348_an_account_acts_through_the_server_of_its_membership_unless_multi_server() {
    let t = room4348(&MSC4348_V12);
    // 8.3.2: S1 is accepted, but bob's membership was co-signed by S2.
    assert_eq!(rule_of(&t.r, by(Ev::message(&t.bob, "via S1"), &t.bob, &[&t.s[0]])), "msc4348 8.3.2");
    let m = room4348(v4348(|r| r.multi_server = true));
    assert_eq!(rule_of(&m.r, by(Ev::message(&m.bob, "via S1"), &m.bob, &[&m.s[0]])), "accepted");
}

#[test]
fn msc4348_a_move_rebinds_and_a_revocation_silences_until_the_account_moves() {
    let mut t = room4348(&MSC4348_V12);
    let (alice, bob) = (t.alice.clone(), t.bob.clone());
    let [s1, s2, s3] = t.s.clone();
    t.r.add("R3", by(request(&bob, &s3, "hs3", &s1), &bob, &[&s3, &s1]));
    t.r.add("A3", by(participation(&alice, &s3, "accepted", "hs3"), &alice, &[&s1]));
    // 8.3.4: S2 revoked: bob's membership (co-signed by S2) authorises nothing.
    t.r.add("V2", by(participation(&alice, &s2, "revoked", "hs2"), &alice, &[&s1]));
    assert_eq!(rule_of(&t.r, by(Ev::message(&bob, "via S2"), &bob, &[&s2])), "msc4348 8.3.1");
    // 8.3.3: bob re-joins through S3 (a move, R8), then acts through S3 only.
    t.r.add("MOVE", by(Ev::join(&bob), &bob, &[&s3]));
    assert_eq!(rule_of(&t.r, by(Ev::message(&bob, "via S3"), &bob, &[&s3])), "accepted");
    assert_eq!(rule_of(&t.r, by(Ev::message(&bob, "via S1"), &bob, &[&s1])), "msc4348 8.3.2");
    t.r.verify();
}

#[test]
fn msc4348_a_ban_follows_the_account_across_a_move() {
    let mut t = room4348(&MSC4348_V12);
    let (alice, bob) = (t.alice.clone(), t.bob.clone());
    let [s1, _, s3] = t.s.clone();
    t.r.add("R3", by(request(&bob, &s3, "hs3", &s1), &bob, &[&s3, &s1]));
    t.r.add("A3", by(participation(&alice, &s3, "accepted", "hs3"), &alice, &[&s1]));
    t.r.add("BAN", by(Ev::ban(&alice, &bob), &alice, &[&s1]));
    // The account key is the identity: a join through another accepted server is still banned.
    assert_eq!(rule_of(&t.r, by(Ev::join(&bob), &bob, &[&s3])), "v12 5.3.3");
}

#[test]
fn msc4348_account_revocation_by_a_final_leave_is_a_knob() {
    for (mode, expected) in
        [(AccountRevocation::None, "accepted"), (AccountRevocation::SelfSignedLeaveFinal, "msc4348 D4")]
    {
        let mut t = room4348(v4348(|r| r.account_revocation = mode));
        let bob = t.bob.clone();
        let s2 = t.s[1].clone();
        t.r.add("LEAVE", by(Ev::leave(&bob).with("org.matrix.msc4348.final", json!(true)), &bob, &[&s2]));
        assert_eq!(rule_of(&t.r, by(Ev::join(&bob), &bob, &[&s2])), expected, "{mode:?}");
    }
}

#[test]
fn msc4348_an_unfederated_room_compares_server_keys() {
    let mut r = RoomBuilder::new(&MSC4348_V12);
    let (s1, s2) = (r.key("hs1"), r.key("hs2"));
    let alice = format!("@{}", r.key("alice"));
    r.add("CREATE", by(Ev::create_with(&alice, json!({"m.federate": false})).ts(1), &alice, &[&s1]));
    r.add("P1", by(participation(&alice, &s1, "accepted", "hs1"), &alice, &[&s1]));
    r.add("MA", by(Ev::join(&alice), &alice, &[&s1]));
    // D5: the same account through another server key is another server.
    let through_s2 = by(Ev::message(&alice, "hi"), &alice, &[&s2]);
    assert_eq!(rule_of(&r, through_s2), "v12 4");
    assert_eq!(rule_of(&r, by(Ev::message(&alice, "hi"), &alice, &[&s1])), "accepted");
}

#[test]
fn msc4348_dag_verify_judges_the_dag_without_keys() {
    let t = room4348(&MSC4348_V12);
    let pdus: Vec<Pdu> = ["CREATE", "P1", "MA", "JR", "R2", "A2", "MB"].iter().map(|n| t.r.pdu(n).clone()).collect();
    let verified = verify::verify_dag(&MSC4348_V12, pdus, &VerifyOptions::default());
    let verdicts: Vec<(&str, Option<&str>)> =
        verified.report.verdicts.values().map(|v| (v.verdict, v.reason.as_deref())).collect();
    assert!(verdicts.iter().all(|(v, _)| *v == "accepted"), "{verdicts:?}");
}

/// The DAG of `tests/fixtures/participation/msc4348-move-revocation.pdus.jsonl` (what the CLI
/// test gives `roomsim dag verify`): bob joins through S2, S3 is admitted, S2 is revoked, a
/// message through S2 (rejected, 8.3.1), bob moves to S3 and speaks through it.
fn move_and_revocation_dag() -> (RoomBuilder, Vec<&'static str>) {
    let mut t = room4348(&MSC4348_V12);
    let (alice, bob) = (t.alice.clone(), t.bob.clone());
    let [s1, s2, s3] = t.s.clone();
    t.r.add("R3", by(request(&bob, &s3, "hs3", &s1), &bob, &[&s3, &s1]));
    t.r.add("A3", by(participation(&alice, &s3, "accepted", "hs3"), &alice, &[&s1]));
    t.r.add("V2", by(participation(&alice, &s2, "revoked", "hs2"), &alice, &[&s1]));
    t.r.add_rejected("LATE", by(Ev::message(&bob, "through revoked S2"), &bob, &[&s2]), "msc4348 8.3.1");
    t.r.add("MOVE", by(Ev::join(&bob).prev(&["V2"]), &bob, &[&s3]));
    t.r.add("HI", by(Ev::message(&bob, "through S3"), &bob, &[&s3]));
    let names = vec!["CREATE", "P1", "MA", "JR", "R2", "A2", "MB", "R3", "A3", "V2", "LATE", "MOVE", "HI"];
    (t.r, names)
}

#[test]
fn the_msc4348_fixture_is_the_move_and_revocation_dag() {
    let (r, names) = move_and_revocation_dag();
    let mut text = String::new();
    for n in &names {
        text.push_str(&String::from_utf8(r.pdu(n).canonical_bytes()).unwrap());
        text.push('\n');
    }
    let path =
        concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/participation/msc4348-move-revocation.pdus.jsonl");
    if std::env::var_os("ROOMSIM_BLESS").is_some() {
        std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
        std::fs::write(path, &text).unwrap();
    }
    let stored = std::fs::read_to_string(path).expect("fixture present (ROOMSIM_BLESS=1 writes it)");
    assert_eq!(stored, text, "the fixture is this DAG");
    let verified = r.verify();
    let rejected: Vec<String> = verified
        .report
        .verdicts
        .iter()
        .filter(|(_, v)| v.verdict != "accepted")
        .map(|(id, v)| format!("{} {}", r.name_of(id), v.reason.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].starts_with("LATE auth rule msc4348 8.3.1"), "{rejected:?}");
}
