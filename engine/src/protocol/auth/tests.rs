//! Unit tests of the authorization rules (digest `auth-rules.md` §3 for v11, §7 for v12): every
//! rule with a case it allows and a case it rejects, on real signed events built with
//! `test_support`. A candidate is judged like `dag verify` judges it — first against its own
//! `auth_events` (selected from the state before it, as a creating server would, unless the test
//! lists them), then against the state before it — and the rejection's rule number is asserted
//! in the room version's own numbering.

use super::{v12_number, AuthState};
use crate::protocol::crypto::{self, KeyPair};
use crate::protocol::dag::Stage;
use crate::protocol::room_version::{RoomVersion, V11, V12};
use crate::protocol::test_support::{server_key, signed_token, Ev, RoomBuilder};
use serde_json::{json, Value};

const ALICE: &str = "@alice:hs1";
const BOB: &str = "@bob:hs2";
const CAROL: &str = "@carol:hs2";
const DAVE: &str = "@dave:hs3";
const ERIN: &str = "@erin:hs1";
const FRANK: &str = "@frank:hs3";
const MAX_INT: i64 = 9_007_199_254_740_991;

const VERSIONS: [&RoomVersion; 2] = [&V11, &V12];

/// The rule as numbered in `v`, from its v11 number (`auth-rules.md` §7 numbering map, written
/// out independently of `v12_number`, which `v12_numbering_map` pins separately).
fn rule(v: &RoomVersion, v11: &str) -> String {
    if !v.room_id_is_create_hash {
        return format!("v11 {v11}");
    }
    let mut parts = v11.split('.');
    let head: u32 = parts.next().unwrap().parse().unwrap();
    let rest: Vec<&str> = parts.collect();
    let join = |h: String, r: &[&str]| if r.is_empty() { h } else { format!("{h}.{}", r.join(".")) };
    let v12 = match (head, rest.as_slice()) {
        (1, ["4"]) => "1.5".to_owned(),
        (1, r) => join("1".into(), r),
        (2, ["4"]) => "2".to_owned(),
        (2, ["5"]) => "3.4".to_owned(),
        (2, r) => join("3".into(), r),
        (9, []) => "10".to_owned(),
        (9, [k, more @ ..]) => {
            let k: u32 = k.parse().unwrap();
            join(format!("10.{}", if k >= 4 { k + 1 } else { k }), more)
        }
        (n, r) => join((n + 1).to_string(), r),
    };
    format!("v12 {v12}")
}

#[track_caller]
fn allowed(r: &RoomBuilder, ev: Ev) {
    if let Err((stage, rejection)) = r.check(ev) {
        panic!("room v{}: expected the event to pass, rejected at stage {}: {rejection}", r.version.id, stage.as_str());
    }
}

/// Asserts a rejection by the rule with v11 number `v11_rule` (mapped for v12 rooms); returns
/// the stage.
#[track_caller]
fn rejected(r: &RoomBuilder, ev: Ev, v11_rule: &str) -> Stage {
    rejected_by(r, ev, &rule(r.version, v11_rule))
}

/// Asserts a rejection citing exactly `full_rule` (e.g. `"v12 10.4"`).
#[track_caller]
fn rejected_by(r: &RoomBuilder, ev: Ev, full_rule: &str) -> Stage {
    match r.check(ev) {
        Ok(()) => panic!("room v{}: expected a rejection by {full_rule}, the event passed", r.version.id),
        Err((stage, rejection)) => {
            assert_eq!(rejection.rule, full_rule, "room v{}: {rejection}", r.version.id);
            stage
        }
    }
}

fn local(user: &str) -> &str {
    &user[1..user.find(':').unwrap()]
}

/// Name of a user's join in the standard room: `J_bob`.
fn jn(user: &str) -> String {
    format!("J_{}", local(user))
}

/// Power-levels content: `users` (plus alice at 100 in v11; v12 creators may not be listed),
/// merged with `extra`'s fields.
fn pl_content(v: &RoomVersion, users: &[(&str, i64)], extra: Value) -> Value {
    let mut map = serde_json::Map::new();
    if !v.privileged_creators {
        map.insert(ALICE.into(), json!(100));
    }
    for (u, l) in users {
        map.insert((*u).into(), json!(l));
    }
    let mut content = json!({ "users": map });
    for (k, val) in extra.as_object().unwrap() {
        content[k] = val.clone();
    }
    content
}

/// The standard room: CREATE by alice, her join MA, power levels PL (`users`, `extra`), join
/// rules JR public, then each of `members` joins (`J_<name>`).
fn room(v: &'static RoomVersion, users: &[(&str, i64)], extra: Value, members: &[&str]) -> RoomBuilder {
    let mut r = RoomBuilder::new(v);
    r.add("CREATE", Ev::create(ALICE).ts(1));
    r.add("MA", Ev::join(ALICE).ts(2));
    r.add("PL", Ev::power_levels(ALICE, pl_content(v, users, extra)).ts(3));
    r.add("JR", Ev::join_rules(ALICE, "public").ts(4));
    for m in members {
        r.add(&jn(m), Ev::join(m));
    }
    r
}

/// `room` with no power-level changes and bob joined.
fn basic(v: &'static RoomVersion) -> RoomBuilder {
    room(v, &[], json!({}), &[BOB])
}

/// The auth events of a message by alice in the standard room, by name (v11 lists the create).
fn msg_auth(v: &RoomVersion, names: &[&'static str]) -> Vec<&'static str> {
    let mut out = if v.create_in_auth_events { vec!["CREATE"] } else { vec![] };
    out.extend_from_slice(names);
    out
}

// ---------------------------------------------------------------------------------------------
// Rule numbering

#[test]
fn v12_numbering_map() {
    let table = [
        ("1.1", "1.1"),
        ("1.2", "1.2"),
        ("1.3", "1.3"),
        ("1.4", "1.5"),
        ("2.1", "3.1"),
        ("2.2", "3.2"),
        ("2.3", "3.3"),
        ("2.4", "2"),
        ("2.5", "3.4"),
        ("3", "4"),
        ("4.1", "5.1"),
        ("4.3.5.2", "5.3.5.2"),
        ("4.4.1.8", "5.4.1.8"),
        ("4.8", "5.8"),
        ("5", "6"),
        ("6", "7"),
        ("7", "8"),
        ("8", "9"),
        ("9.1", "10.1"),
        ("9.3", "10.3"),
        ("9.4", "10.5"),
        ("9.8", "10.9"),
        ("9.9", "10.10"),
        ("10", "11"),
    ];
    for (v11, v12) in table {
        assert_eq!(v12_number(v11), v12, "v11 {v11}");
        assert_eq!(rule(&V12, v11), format!("v12 {v12}"));
    }
}

#[test]
fn malformed_events_fail_the_format_check_before_the_rules() {
    for v in VERSIONS {
        let r = basic(v);
        let field = |ev: Ev| r.try_build(ev).map(|_| ()).unwrap_err().field;
        assert_eq!(field(Ev::message(ALICE, "hi").remove("depth")), "depth");
        assert_eq!(field(Ev::message(ALICE, "hi").set("depth", json!("2"))), "depth");
        // Only a v12 create event may lack a room_id.
        assert_eq!(field(Ev::message(ALICE, "hi").remove("room_id")), "room_id");
        assert_eq!(field(Ev::message("alice", "hi")), "sender");
    }
}

// ---------------------------------------------------------------------------------------------
// Rule 1: m.room.create

#[test]
fn create_event_is_allowed_rule_1_4() {
    for v in VERSIONS {
        allowed(&RoomBuilder::new(v), Ev::create(ALICE));
    }
}

#[test]
fn create_with_prev_events_rejected_rule_1_1() {
    for v in VERSIONS {
        let mut r = RoomBuilder::new(v);
        r.add("CREATE", Ev::create(ALICE).ts(1));
        let stage = rejected(&r, Ev::create(ALICE).prev(&["CREATE"]).auth(&[]).ts(2), "1.1");
        assert_eq!(stage, Stage::AuthEvents);
    }
}

#[test]
fn v11_create_room_id_on_another_server_rejected_rule_1_2() {
    let r = RoomBuilder::new(&V11);
    allowed(&r, Ev::create(ALICE).set("room_id", json!("!elsewhere:hs1")));
    rejected(&r, Ev::create(ALICE).set("room_id", json!("!room:hs2")), "1.2");
}

#[test]
fn v12_create_with_room_id_rejected_rule_1_2() {
    let r = RoomBuilder::new(&V12);
    rejected_by(&r, Ev::create(ALICE).set("room_id", json!("!room:hs1")), "v12 1.2");
}

#[test]
fn create_with_unknown_room_version_rejected_rule_1_3() {
    for v in VERSIONS {
        let r = RoomBuilder::new(v);
        rejected(&r, Ev::create_with(ALICE, json!({ "room_version": "99" })), "1.3");
        rejected(&r, Ev::create_with(ALICE, json!({ "room_version": 11 })), "1.3");
        allowed(&r, Ev::create_with(ALICE, json!({ "room_version": v.id })));
    }
}

#[test]
fn v12_additional_creators_must_be_user_ids_rule_1_4() {
    let r = RoomBuilder::new(&V12);
    // IDs on other servers are fine.
    allowed(&r, Ev::create_with(ALICE, json!({ "additional_creators": [BOB, DAVE] })));
    allowed(&r, Ev::create_with(ALICE, json!({ "additional_creators": [] })));
    for bad in [json!(BOB), json!(["bob"]), json!([BOB, 42]), json!({ "a": BOB }), json!(["@bob"])] {
        rejected_by(&r, Ev::create_with(ALICE, json!({ "additional_creators": bad })), "v12 1.4");
    }
    // v11 has no such rule: the field is just content.
    allowed(&RoomBuilder::new(&V11), Ev::create_with(ALICE, json!({ "additional_creators": "nonsense" })));
}

// ---------------------------------------------------------------------------------------------
// Rule 2 (v11) / rules 2–3 (v12): the auth_events list

#[test]
fn duplicate_auth_event_keys_rejected_rule_2_1() {
    for v in VERSIONS {
        let mut r = basic(v);
        r.add("MA2", Ev::join(ALICE).with("displayname", json!("Alice")));
        let stage = rejected(&r, Ev::message(ALICE, "hi").auth(&msg_auth(v, &["PL", "MA", "MA2"])), "2.1");
        assert_eq!(stage, Stage::AuthEvents);
        allowed(&r, Ev::message(ALICE, "hi").auth(&msg_auth(v, &["PL", "MA2"])));
    }
}

#[test]
fn unexpected_auth_event_type_rejected_rule_2_2() {
    for v in VERSIONS {
        let mut r = basic(v);
        r.add("TOPIC", Ev::topic(ALICE, "t"));
        rejected(&r, Ev::message(ALICE, "hi").auth(&msg_auth(v, &["PL", "MA", "TOPIC"])), "2.2");
        // Join rules are selected for joins, invites and knocks only.
        rejected(&r, Ev::message(ALICE, "hi").auth(&msg_auth(v, &["PL", "MA", "JR"])), "2.2");
        // Another user's membership is not selected for a message.
        rejected(&r, Ev::message(ALICE, "hi").auth(&msg_auth(v, &["PL", "MA", "J_bob"])), "2.2");
        allowed(&r, Ev::message(ALICE, "hi").auth(&msg_auth(v, &["PL", "MA"])));
        // A missing entry is not a violation: the rules then run without it.
        allowed(&r, Ev::message(ALICE, "hi").auth(&msg_auth(v, &["MA"])));
    }
}

#[test]
fn join_may_cite_join_rules_and_target_membership_rule_2_2() {
    for v in VERSIONS {
        let mut r = basic(v);
        r.add("LB", Ev::leave(BOB));
        allowed(&r, Ev::join(BOB).auth(&msg_auth(v, &["PL", "JR", "LB"])));
    }
}

#[test]
fn rejected_auth_event_rejected_rule_2_3() {
    for v in VERSIONS {
        let mut r = basic(v);
        // bob has level 0 < state_default 50: his power levels event is rejected by rule 7.
        r.add_rejected("PL_BAD", Ev::power_levels(BOB, pl_content(v, &[(BOB, 0)], json!({}))), &rule(v, "7"));
        let stage = rejected(&r, Ev::message(ALICE, "hi").auth(&msg_auth(v, &["PL_BAD", "MA"])), "2.3");
        assert_eq!(stage, Stage::AuthEvents);
        allowed(&r, Ev::message(ALICE, "hi").auth(&msg_auth(v, &["PL", "MA"])));
    }
}

#[test]
fn v11_missing_create_in_auth_events_rejected_rule_2_4() {
    let r = basic(&V11);
    rejected_by(&r, Ev::message(ALICE, "hi").auth(&["PL", "MA"]), "v11 2.4");
    // v12 never lists the create event: the same list is complete there.
    allowed(&basic(&V12), Ev::message(ALICE, "hi").auth(&["PL", "MA"]));
}

#[test]
fn auth_event_from_another_room_rejected_rule_2_5() {
    for v in VERSIONS {
        let mut other = RoomBuilder::new(v);
        // v11: another room ID; v12: another create event, hence another room ID.
        let create = if v.room_id_is_create_hash {
            Ev::create(ALICE)
        } else {
            Ev::create(ALICE).set("room_id", json!("!other:hs1"))
        };
        other.add("CREATE", create.ts(99));
        other.add("MA", Ev::join(ALICE));
        other.add("PL", Ev::power_levels(ALICE, pl_content(v, &[], json!({}))));
        assert_ne!(other.room_id(), basic(v).room_id());
        let mut r = basic(v);
        r.push("FOREIGN_PL", other.pdu("PL").clone());
        let stage =
            rejected(&r, Ev::message(ALICE, "hi").prev(&["J_bob"]).auth(&msg_auth(v, &["FOREIGN_PL", "MA"])), "2.5");
        assert_eq!(stage, Stage::AuthEvents);
        allowed(&r, Ev::message(ALICE, "hi").prev(&["J_bob"]).auth(&msg_auth(v, &["PL", "MA"])));
    }
}

#[test]
fn v12_room_id_not_naming_the_create_event_rejected_rule_2() {
    let r = basic(&V12);
    let fake = format!("!{}", "A".repeat(43));
    rejected_by(&r, Ev::message(ALICE, "hi").set("room_id", json!(fake)), "v12 2");
    allowed(&r, Ev::message(ALICE, "hi"));
}

#[test]
fn v12_room_whose_create_event_was_rejected_rejects_everything_rule_2() {
    let mut r = RoomBuilder::new(&V12);
    r.add_rejected("CREATE", Ev::create_with(ALICE, json!({ "additional_creators": 5 })), "v12 1.4");
    rejected_by(&r, Ev::join(ALICE), "v12 2");
}

#[test]
fn v12_create_event_listed_in_auth_events_rejected_rule_3_2() {
    let r = basic(&V12);
    let stage = rejected_by(&r, Ev::message(ALICE, "hi").auth(&["CREATE", "PL", "MA"]), "v12 3.2");
    assert_eq!(stage, Stage::AuthEvents);
}

// ---------------------------------------------------------------------------------------------
// Rule 3 (v12 4): m.federate

fn unfederated_room(v: &'static RoomVersion) -> RoomBuilder {
    let mut r = RoomBuilder::new(v);
    r.add("CREATE", Ev::create_with(ALICE, json!({ "m.federate": false })));
    r.add("MA", Ev::join(ALICE));
    r.add("PL", Ev::power_levels(ALICE, pl_content(v, &[], json!({}))));
    r.add("JR", Ev::join_rules(ALICE, "public"));
    r
}

#[test]
fn unfederated_room_refuses_other_servers_rule_3() {
    for v in VERSIONS {
        let r = unfederated_room(v);
        rejected(&r, Ev::join(BOB), "3");
        allowed(&r, Ev::join(ERIN));
        allowed(&r, Ev::message(ALICE, "hi"));
    }
}

#[test]
fn unfederated_room_refuses_membership_targeting_another_server_rule_3_a2_3() {
    for v in VERSIONS {
        let r = unfederated_room(v);
        // Synapse's reading (A2.3): the sender is local, but the target is not.
        rejected(&r, Ev::invite(ALICE, BOB), "3");
        allowed(&r, Ev::invite(ALICE, ERIN));
    }
}

#[test]
fn m_federate_other_than_true_counts_as_false_a2_3() {
    for v in VERSIONS {
        let mut r = RoomBuilder::new(v);
        r.add("CREATE", Ev::create_with(ALICE, json!({ "m.federate": "yes" })));
        r.add("MA", Ev::join(ALICE));
        r.add("JR", Ev::join_rules(ALICE, "public"));
        rejected(&r, Ev::join(BOB), "3");
    }
}

// ---------------------------------------------------------------------------------------------
// Rule 4 (v12 5): m.room.member — shape

#[test]
fn member_event_without_membership_or_state_key_rejected_rule_4_1() {
    for v in VERSIONS {
        let r = basic(v);
        rejected(&r, Ev::state("m.room.member", ALICE, ALICE, json!({ "displayname": "A" })), "4.1");
        rejected(&r, Ev::state("m.room.member", ALICE, ALICE, json!({ "membership": 5 })), "4.1");
        rejected(&r, Ev::new("m.room.member", None, ALICE, json!({ "membership": "join" })), "4.1");
    }
}

#[test]
fn unknown_membership_rejected_rule_4_8() {
    for v in VERSIONS {
        let r = basic(v);
        rejected(&r, Ev::member(ALICE, ALICE, "lurk"), "4.8");
    }
}

// ---------------------------------------------------------------------------------------------
// Joins (4.3)

#[test]
fn creator_first_join_after_create_allowed_rule_4_3_1() {
    for v in VERSIONS {
        let mut r = RoomBuilder::new(v);
        r.add("CREATE", Ev::create(ALICE));
        allowed(&r, Ev::join(ALICE));
        // Anyone else right after the create event: no join rules ⇒ invite (A1) ⇒ 4.3.7.
        rejected(&r, Ev::join(BOB), "4.3.7");
        // Only when the create event is the *only* prev event.
        r.add_rejected("JB", Ev::join(BOB), &rule(v, "4.3.7"));
        rejected(&r, Ev::join(ALICE).prev(&["JB"]), "4.3.7");
    }
}

#[test]
fn v12_additional_creator_has_no_first_join_exemption_rule_5_3_1() {
    let mut r = RoomBuilder::new(&V12);
    r.add("CREATE", Ev::create_with(ALICE, json!({ "additional_creators": [CAROL] })));
    rejected_by(&r, Ev::join(CAROL), "v12 5.3.7");
}

#[test]
fn join_for_someone_else_rejected_rule_4_3_2() {
    for v in VERSIONS {
        let r = basic(v);
        rejected(&r, Ev::member(ALICE, CAROL, "join"), "4.3.2");
        allowed(&r, Ev::join(CAROL));
    }
}

#[test]
fn banned_user_join_rejected_rule_4_3_3() {
    for v in VERSIONS {
        let mut r = basic(v);
        r.add("BAN", Ev::ban(ALICE, BOB));
        rejected(&r, Ev::join(BOB), "4.3.3");
        // Even with an invite-free public room and a fresh join attempt by an unbanned user.
        allowed(&r, Ev::join(CAROL));
    }
}

#[test]
fn invite_only_join_needs_invite_rule_4_3_4() {
    for v in VERSIONS {
        let mut r = basic(v);
        r.add("JR2", Ev::join_rules(ALICE, "invite"));
        rejected(&r, Ev::join(CAROL), "4.3.7");
        // An already joined user may re-join (e.g. a profile change).
        allowed(&r, Ev::join(BOB).with("displayname", json!("Bob")));
        r.add("INV", Ev::invite(ALICE, CAROL));
        allowed(&r, Ev::join(CAROL));
    }
}

#[test]
fn knock_rule_join_needs_invite_rule_4_3_4() {
    for v in VERSIONS {
        let mut r = basic(v);
        r.add("JR2", Ev::join_rules(ALICE, "knock"));
        r.add("KNOCK", Ev::knock(CAROL));
        // Knocking is not an invite.
        rejected(&r, Ev::join(CAROL), "4.3.7");
        r.add("INV", Ev::invite(ALICE, CAROL));
        allowed(&r, Ev::join(CAROL));
    }
}

fn restricted_room(v: &'static RoomVersion, join_rule: &str) -> RoomBuilder {
    // carol has level 10 and dave 0, both joined; inviting needs 5.
    let mut r = room(v, &[(CAROL, 10)], json!({ "invite": 5 }), &[BOB, CAROL, DAVE]);
    r.add(
        "JR2",
        Ev::state(
            "m.room.join_rules",
            "",
            ALICE,
            json!({ "join_rule": join_rule, "allow": [{ "type": "m.room_membership", "room_id": "!space:hs1" }] }),
        ),
    );
    r
}

fn authorised_join(user: &str, authoriser: &str) -> Ev {
    Ev::join(user).with("join_authorised_via_users_server", json!(authoriser))
}

#[test]
fn restricted_join_with_valid_authoriser_allowed_rule_4_3_5_3() {
    for v in VERSIONS {
        for jr in ["restricted", "knock_restricted"] {
            let r = restricted_room(v, jr);
            allowed(&r, authorised_join(ERIN, ALICE));
            // carol (10) has the invite level (5) and is joined.
            allowed(&r, authorised_join(ERIN, CAROL));
        }
    }
}

#[test]
fn restricted_join_without_authoriser_rejected_rule_4_3_5_2() {
    for v in VERSIONS {
        for jr in ["restricted", "knock_restricted"] {
            let r = restricted_room(v, jr);
            rejected(&r, Ev::join(ERIN), "4.3.5.2");
            // Not a string: as good as absent.
            rejected(&r, Ev::join(ERIN).with("join_authorised_via_users_server", json!(5)), "4.3.5.2");
        }
    }
}

#[test]
fn restricted_join_authoriser_not_joined_rejected_rule_4_3_5_2() {
    for v in VERSIONS {
        let mut r = restricted_room(v, "restricted");
        // Never in the room.
        rejected(&r, authorised_join(ERIN, FRANK), "4.3.5.2");
        // Left the room.
        r.add("LC", Ev::leave(CAROL));
        rejected(&r, authorised_join(ERIN, CAROL), "4.3.5.2");
    }
}

#[test]
fn restricted_join_authoriser_below_invite_level_rejected_rule_4_3_5_2() {
    for v in VERSIONS {
        let r = restricted_room(v, "restricted");
        // dave is joined but has 0 < invite 5.
        rejected(&r, authorised_join(ERIN, DAVE), "4.3.5.2");
    }
}

#[test]
fn restricted_join_already_invited_needs_no_authoriser_rule_4_3_5_1() {
    for v in VERSIONS {
        let mut r = restricted_room(v, "restricted");
        r.add("INV", Ev::invite(ALICE, ERIN));
        allowed(&r, Ev::join(ERIN));
        // An already joined user re-joining needs none either.
        allowed(&r, Ev::join(DAVE).with("displayname", json!("D")));
    }
}

#[test]
fn restricted_join_authoriser_server_must_sign_a2_4() {
    for v in VERSIONS {
        let mut r = restricted_room(v, "restricted");
        // Not co-signed by hs1 (alice's server): dropped at the signature stage, before the rules.
        let unsigned = r.add_unchecked("JE_UNSIGNED", authorised_join(ERIN, ALICE).signed_by(&["hs1"]).ts(5000));
        let report = r.verify().report;
        assert_eq!(report.verdicts[&unsigned.event_id].stage, None, "signed by hs1 only: erin is on hs1");
        let bad = r.add_unchecked("JF_BAD", authorised_join(FRANK, ALICE).signed_by(&["hs3"]).ts(5001));
        let good = r.add_unchecked("JF_GOOD", authorised_join(FRANK, ALICE).ts(5002));
        let report = r.verify().report;
        assert_eq!(report.verdicts[&bad.event_id].stage, Some(Stage::Signature));
        assert_eq!(report.verdicts[&good.event_id].verdict, "accepted", "{:?}", report.verdicts[&good.event_id].reason);
        // Only joins need the authorising server's signature (A2.4): a later leave that copies
        // the key, signed by frank's server alone, is accepted (the spec's 4.2.1 would reject it).
        let leave = r.add_unchecked(
            "LF",
            Ev::leave(FRANK).with("join_authorised_via_users_server", json!(ALICE)).prev(&["JF_GOOD"]).ts(5003),
        );
        let report = r.verify().report;
        assert_eq!(
            report.verdicts[&leave.event_id].verdict, "accepted",
            "{:?}",
            report.verdicts[&leave.event_id].reason
        );
    }
}

#[test]
fn public_join_allowed_rule_4_3_6() {
    for v in VERSIONS {
        allowed(&basic(v), Ev::join(CAROL));
    }
}

#[test]
fn private_or_unknown_join_rule_rejects_join_rule_4_3_7() {
    for v in VERSIONS {
        for jr in ["private", "something_else"] {
            let mut r = basic(v);
            r.add("JR2", Ev::join_rules(ALICE, jr));
            rejected(&r, Ev::join(CAROL), "4.3.7");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Invites (4.4)

#[test]
fn invite_by_non_member_rejected_rule_4_4_2() {
    for v in VERSIONS {
        let r = basic(v);
        rejected(&r, Ev::invite(CAROL, DAVE), "4.4.2");
        allowed(&r, Ev::invite(BOB, DAVE));
    }
}

#[test]
fn invite_of_joined_or_banned_user_rejected_rule_4_4_3() {
    for v in VERSIONS {
        let mut r = basic(v);
        rejected(&r, Ev::invite(ALICE, BOB), "4.4.3");
        r.add("BAN", Ev::ban(ALICE, CAROL));
        rejected(&r, Ev::invite(ALICE, CAROL), "4.4.3");
        // Someone who left can be invited back.
        r.add("LB", Ev::leave(BOB));
        allowed(&r, Ev::invite(ALICE, BOB));
    }
}

#[test]
fn invite_needs_invite_level_rule_4_4_4() {
    for v in VERSIONS {
        let mut r = room(v, &[], json!({ "invite": 50 }), &[BOB]);
        rejected(&r, Ev::invite(BOB, CAROL), "4.4.5");
        allowed(&r, Ev::invite(ALICE, CAROL));
        r.add("PL2", Ev::power_levels(ALICE, pl_content(v, &[(BOB, 50)], json!({ "invite": 50 }))));
        allowed(&r, Ev::invite(BOB, CAROL));
    }
}

// ---------------------------------------------------------------------------------------------
// Third-party invites (4.4.1)

const TOKEN: &str = "tok1";

fn identity_key() -> KeyPair {
    server_key("identity.example")
}

fn tpi_content(key: &str) -> Value {
    json!({
        "display_name": "c...@example.org",
        "key_validity_url": "https://identity.example/_matrix/identity/v2/pubkey/isvalid",
        "public_key": key,
        "public_keys": [{ "public_key": key, "key_validity_url": "https://identity.example/_matrix/identity/v2/pubkey/isvalid" }],
    })
}

/// basic room + alice's m.room.third_party_invite for TOKEN.
fn tpi_room(v: &'static RoomVersion) -> RoomBuilder {
    let mut r = basic(v);
    r.add("TPI", Ev::state("m.room.third_party_invite", TOKEN, ALICE, tpi_content(&identity_key().public_key_b64())));
    r
}

fn tpi_invite(sender: &str, target: &str, signed: Value) -> Ev {
    Ev::invite(sender, target)
        .with("third_party_invite", json!({ "display_name": "c...@example.org", "signed": signed }))
}

#[test]
fn third_party_invite_with_valid_signed_token_allowed_rule_4_4_1_7() {
    for v in VERSIONS {
        let r = tpi_room(v);
        let pdu = r.build(tpi_invite(ALICE, CAROL, signed_token(CAROL, TOKEN, &identity_key())));
        // The selected auth events include the m.room.third_party_invite named by the token.
        assert!(pdu.auth_events.contains(&r.id("TPI")));
        assert_eq!(r.check_pdu(&pdu), Ok(()));
    }
}

#[test]
fn third_party_invite_key_in_public_keys_url_safe_allowed_a9() {
    for v in VERSIONS {
        let mut r = basic(v);
        let other = server_key("unrelated.example").public_key_b64();
        let url_safe = crypto::b64_url_encode(identity_key().public_key().as_bytes());
        r.add(
            "TPI",
            Ev::state(
                "m.room.third_party_invite",
                TOKEN,
                ALICE,
                json!({ "display_name": "x", "public_key": other, "public_keys": [{ "public_key": url_safe }] }),
            ),
        );
        allowed(&r, tpi_invite(ALICE, CAROL, signed_token(CAROL, TOKEN, &identity_key())));
    }
}

#[test]
fn third_party_invite_for_banned_target_rejected_rule_4_4_1_1() {
    for v in VERSIONS {
        let mut r = tpi_room(v);
        r.add("BAN", Ev::ban(ALICE, CAROL));
        rejected(&r, tpi_invite(ALICE, CAROL, signed_token(CAROL, TOKEN, &identity_key())), "4.4.1.1");
    }
}

#[test]
fn third_party_invite_without_signed_rejected_rule_4_4_1_2() {
    for v in VERSIONS {
        let r = tpi_room(v);
        rejected(&r, Ev::invite(ALICE, CAROL).with("third_party_invite", json!({ "display_name": "x" })), "4.4.1.2");
        rejected(&r, Ev::invite(ALICE, CAROL).with("third_party_invite", json!({ "signed": "token" })), "4.4.1.2");
    }
}

#[test]
fn third_party_invite_signed_without_token_or_mxid_rejected_rule_4_4_1_3() {
    for v in VERSIONS {
        let r = tpi_room(v);
        let mut no_token = json!({ "mxid": CAROL }).as_object().unwrap().clone();
        crypto::sign_object(&mut no_token, &identity_key());
        rejected(&r, tpi_invite(ALICE, CAROL, Value::Object(no_token)), "4.4.1.3");
        let mut no_mxid = json!({ "token": TOKEN }).as_object().unwrap().clone();
        crypto::sign_object(&mut no_mxid, &identity_key());
        rejected(&r, tpi_invite(ALICE, CAROL, Value::Object(no_mxid)), "4.4.1.3");
    }
}

#[test]
fn third_party_invite_with_wrong_mxid_rejected_rule_4_4_1_4() {
    for v in VERSIONS {
        let r = tpi_room(v);
        rejected(&r, tpi_invite(ALICE, CAROL, signed_token(DAVE, TOKEN, &identity_key())), "4.4.1.4");
    }
}

#[test]
fn third_party_invite_with_unknown_token_rejected_rule_4_4_1_5() {
    for v in VERSIONS {
        let r = tpi_room(v);
        rejected(&r, tpi_invite(ALICE, CAROL, signed_token(CAROL, "no-such-token", &identity_key())), "4.4.1.5");
    }
}

#[test]
fn third_party_invite_revoked_token_rejected_rule_4_4_1_8() {
    for v in VERSIONS {
        let mut r = tpi_room(v);
        // Revocation: the m.room.third_party_invite is replaced by an empty one.
        r.add("REVOKE", Ev::state("m.room.third_party_invite", TOKEN, ALICE, json!({})));
        rejected(&r, tpi_invite(ALICE, CAROL, signed_token(CAROL, TOKEN, &identity_key())), "4.4.1.8");
    }
}

#[test]
fn third_party_invite_by_other_sender_rejected_rule_4_4_1_6() {
    for v in VERSIONS {
        let r = tpi_room(v);
        rejected(&r, tpi_invite(BOB, CAROL, signed_token(CAROL, TOKEN, &identity_key())), "4.4.1.6");
    }
}

#[test]
fn third_party_invite_bad_signature_rejected_rule_4_4_1_8() {
    for v in VERSIONS {
        let r = tpi_room(v);
        // Signed by a key the invite does not list.
        rejected(&r, tpi_invite(ALICE, CAROL, signed_token(CAROL, TOKEN, &server_key("evil.example"))), "4.4.1.8");
        // Signed over another token, then edited.
        let mut edited = signed_token(CAROL, "tok0", &identity_key());
        edited["token"] = json!(TOKEN);
        rejected(&r, tpi_invite(ALICE, CAROL, edited), "4.4.1.8");
        // No signatures at all.
        rejected(&r, tpi_invite(ALICE, CAROL, json!({ "mxid": CAROL, "token": TOKEN })), "4.4.1.8");
    }
}

#[test]
fn third_party_invite_only_first_signature_is_tried_a2_2() {
    // Synapse (A2.2): per public key, only the first `ed25519:` signature of `signed` (in key
    // order) is tried. The spec text would accept any verifying signature.
    for v in VERSIONS {
        let r = tpi_room(v);
        let mut signed = signed_token(CAROL, TOKEN, &identity_key());
        let mut map = signed.as_object().unwrap().clone();
        crypto::sign_object(&mut map, &server_key("aaa.example")); // sorts before identity.example
        rejected(&r, tpi_invite(ALICE, CAROL, Value::Object(map)), "4.4.1.8");
        let mut map = signed.as_object_mut().unwrap().clone();
        crypto::sign_object(&mut map, &server_key("zzz.example")); // sorts after it
        allowed(&r, tpi_invite(ALICE, CAROL, Value::Object(map)));
        // Key IDs not starting with `ed25519:` are skipped.
        signed["signatures"]["aaa.example"] = json!({ "curve25519:1": "AAAA" });
        allowed(&r, tpi_invite(ALICE, CAROL, signed));
    }
}

#[test]
fn third_party_invite_redeemable_after_inviter_left_rule_4_4_1() {
    for v in VERSIONS {
        let mut r = basic(v);
        // bob (level 0, invite level 0) sends the third-party invite, then leaves.
        r.add("TPI", Ev::state("m.room.third_party_invite", TOKEN, BOB, tpi_content(&identity_key().public_key_b64())));
        r.add("LB", Ev::leave(BOB));
        allowed(&r, tpi_invite(BOB, CAROL, signed_token(CAROL, TOKEN, &identity_key())));
        // A plain invite by bob now fails: he is not joined.
        rejected(&r, Ev::invite(BOB, CAROL), "4.4.2");
    }
}

// ---------------------------------------------------------------------------------------------
// Leaves (4.5)

#[test]
fn self_leave_from_join_invite_or_knock_allowed_rule_4_5_1() {
    for v in VERSIONS {
        let mut r = basic(v);
        allowed(&r, Ev::leave(BOB));
        r.add("INV", Ev::invite(ALICE, CAROL));
        allowed(&r, Ev::leave(CAROL)); // rejecting the invite
        r.add("JR2", Ev::join_rules(ALICE, "knock"));
        r.add("KNOCK", Ev::knock(DAVE));
        allowed(&r, Ev::leave(DAVE)); // retracting the knock
    }
}

#[test]
fn self_leave_when_banned_or_absent_rejected_rule_4_5_1() {
    for v in VERSIONS {
        let mut r = basic(v);
        r.add("BAN", Ev::ban(ALICE, BOB));
        rejected(&r, Ev::leave(BOB), "4.5.1");
        rejected(&r, Ev::leave(DAVE), "4.5.1");
        r.add("LA", Ev::leave(ALICE));
        // Leaving twice.
        rejected(&r, Ev::leave(ALICE), "4.5.1");
    }
}

#[test]
fn kick_by_non_member_rejected_rule_4_5_2() {
    for v in VERSIONS {
        let r = basic(v);
        rejected(&r, Ev::kick(CAROL, BOB), "4.5.2");
    }
}

#[test]
fn kick_needs_kick_level_rule_4_5_4() {
    for v in VERSIONS {
        let r = room(v, &[], json!({}), &[BOB, CAROL]);
        rejected(&r, Ev::kick(BOB, CAROL), "4.5.5");
        allowed(&r, Ev::kick(ALICE, BOB));
        // Kicking someone who is not in the room is allowed too (they end up "leave").
        allowed(&r, Ev::kick(ALICE, DAVE));
    }
}

#[test]
fn kick_of_equal_power_rejected_rule_4_5_4() {
    for v in VERSIONS {
        let r = room(v, &[(BOB, 50), (CAROL, 50)], json!({}), &[BOB, CAROL, DAVE]);
        rejected(&r, Ev::kick(BOB, CAROL), "4.5.5");
        allowed(&r, Ev::kick(BOB, DAVE));
        // Nor upwards.
        rejected(&r, Ev::kick(BOB, ALICE), "4.5.5");
    }
}

#[test]
fn unban_needs_ban_level_rule_4_5_3() {
    for v in VERSIONS {
        let mut r = room(v, &[(BOB, 60)], json!({ "ban": 75, "kick": 50 }), &[BOB]);
        r.add("BAN", Ev::ban(ALICE, CAROL));
        rejected(&r, Ev::kick(BOB, CAROL), "4.5.3");
        allowed(&r, Ev::kick(ALICE, CAROL));
    }
}

#[test]
fn unban_also_needs_kick_level_rule_4_5_4() {
    for v in VERSIONS {
        let mut r = room(v, &[(BOB, 60)], json!({ "ban": 50, "kick": 80 }), &[BOB]);
        r.add("BAN", Ev::ban(ALICE, CAROL));
        // bob has the ban level but not the kick level.
        rejected(&r, Ev::kick(BOB, CAROL), "4.5.5");
    }
}

// ---------------------------------------------------------------------------------------------
// Bans (4.6)

#[test]
fn ban_by_non_member_rejected_rule_4_6_1() {
    for v in VERSIONS {
        let r = basic(v);
        rejected(&r, Ev::ban(CAROL, BOB), "4.6.1");
    }
}

#[test]
fn ban_needs_ban_level_rule_4_6_2() {
    for v in VERSIONS {
        let mut r = room(v, &[], json!({}), &[BOB, CAROL]);
        rejected(&r, Ev::ban(BOB, CAROL), "4.6.3");
        allowed(&r, Ev::ban(ALICE, CAROL));
        r.add("PL2", Ev::power_levels(ALICE, pl_content(v, &[(BOB, 10)], json!({ "ban": 10 }))));
        allowed(&r, Ev::ban(BOB, CAROL));
    }
}

#[test]
fn ban_of_equal_power_rejected_rule_4_6_3() {
    for v in VERSIONS {
        let r = room(v, &[(BOB, 50), (CAROL, 50)], json!({}), &[BOB, CAROL]);
        rejected(&r, Ev::ban(BOB, CAROL), "4.6.3");
    }
}

#[test]
fn preemptive_ban_of_non_member_allowed_rule_4_6_2() {
    for v in VERSIONS {
        allowed(&basic(v), Ev::ban(ALICE, DAVE));
    }
}

// ---------------------------------------------------------------------------------------------
// Knocks (4.7)

#[test]
fn knock_allowed_only_under_knock_join_rules_rule_4_7_1() {
    for v in VERSIONS {
        for (jr, ok) in
            [("knock", true), ("knock_restricted", true), ("invite", false), ("public", false), ("restricted", false)]
        {
            let mut r = basic(v);
            r.add("JR2", Ev::join_rules(ALICE, jr));
            if ok {
                allowed(&r, Ev::knock(CAROL));
            } else {
                rejected(&r, Ev::knock(CAROL), "4.7.1");
            }
        }
    }
}

#[test]
fn knock_for_someone_else_rejected_rule_4_7_2() {
    for v in VERSIONS {
        let mut r = basic(v);
        r.add("JR2", Ev::join_rules(ALICE, "knock"));
        rejected(&r, Ev::member(ALICE, CAROL, "knock"), "4.7.2");
    }
}

#[test]
fn knock_while_joined_invited_or_banned_rejected_rule_4_7_4() {
    for v in VERSIONS {
        let mut r = room(v, &[], json!({}), &[BOB, CAROL]);
        r.add("JR2", Ev::join_rules(ALICE, "knock"));
        rejected(&r, Ev::knock(BOB), "4.7.4");
        r.add("INV", Ev::invite(ALICE, DAVE));
        rejected(&r, Ev::knock(DAVE), "4.7.4");
        r.add("BAN", Ev::ban(ALICE, ERIN));
        rejected(&r, Ev::knock(ERIN), "4.7.4");
        // After leaving, knocking again is fine.
        r.add("LC", Ev::leave(CAROL));
        allowed(&r, Ev::knock(CAROL));
    }
}

// ---------------------------------------------------------------------------------------------
// Rules 5–8 (v12 6–9)

#[test]
fn stale_auth_events_pass_but_state_before_rejects() {
    for v in VERSIONS {
        let mut r = basic(v);
        r.add("BAN", Ev::ban(ALICE, BOB));
        // bob cites his old join: fine against its own auth events, not against the state.
        let stage = rejected(&r, Ev::message(BOB, "evading").auth(&msg_auth(v, &["PL", "J_bob"])), "5");
        assert_eq!(stage, Stage::StateBefore);
    }
}

#[test]
fn sender_not_joined_rejected_rule_5() {
    for v in VERSIONS {
        let mut r = basic(v);
        allowed(&r, Ev::message(BOB, "hi"));
        rejected(&r, Ev::message(CAROL, "hi"), "5");
        r.add("INV", Ev::invite(ALICE, CAROL));
        rejected(&r, Ev::message(CAROL, "hi"), "5");
        r.add("LB", Ev::leave(BOB));
        rejected(&r, Ev::message(BOB, "hi"), "5");
        rejected(&r, Ev::topic(BOB, "t"), "5");
    }
}

#[test]
fn third_party_invite_event_needs_invite_level_rule_6() {
    for v in VERSIONS {
        let r = room(v, &[], json!({ "invite": 50, "events": { "m.room.third_party_invite": 1000 } }), &[BOB]);
        let tpi = |sender: &str| {
            Ev::state("m.room.third_party_invite", TOKEN, sender, tpi_content(&identity_key().public_key_b64()))
        };
        rejected(&r, tpi(BOB), "6");
        // Rule 6 decides alone: the events map (1000, above alice's level) is not consulted.
        allowed(&r, tpi(ALICE));
        let r = room(v, &[(BOB, 50)], json!({ "invite": 50, "events": { "m.room.third_party_invite": 1000 } }), &[BOB]);
        allowed(&r, tpi(BOB));
    }
}

#[test]
fn required_level_state_default_and_events_map_rule_7() {
    for v in VERSIONS {
        let r = basic(v);
        rejected(&r, Ev::topic(BOB, "t"), "7");
        allowed(&r, Ev::topic(ALICE, "t"));
        allowed(&r, Ev::message(BOB, "hi"));
        let r = room(v, &[], json!({ "events": { "m.room.topic": 0, "m.room.message": 10 } }), &[BOB]);
        allowed(&r, Ev::topic(BOB, "t"));
        rejected(&r, Ev::message(BOB, "hi"), "7");
        let r = room(v, &[], json!({ "events_default": 5, "state_default": 0 }), &[BOB]);
        rejected(&r, Ev::message(BOB, "hi"), "7");
        allowed(&r, Ev::state("org.example.x", "", BOB, json!({})));
    }
}

#[test]
fn v11_without_power_levels_creator_has_100_rule_7() {
    let mut r = RoomBuilder::new(&V11);
    r.add("CREATE", Ev::create(ALICE));
    r.add("MA", Ev::join(ALICE));
    r.add("JR", Ev::join_rules(ALICE, "public"));
    r.add("JB", Ev::join(BOB));
    allowed(&r, Ev::topic(ALICE, "t"));
    rejected_by(&r, Ev::topic(BOB, "t"), "v11 7");
    allowed(&r, Ev::message(BOB, "hi"));
}

#[test]
fn state_key_of_another_user_rejected_rule_8() {
    for v in VERSIONS {
        let r = basic(v);
        rejected(&r, Ev::state("org.example.profile", BOB, ALICE, json!({})), "8");
        rejected(&r, Ev::state("org.example.profile", "@nobody", ALICE, json!({})), "8");
        allowed(&r, Ev::state("org.example.profile", ALICE, ALICE, json!({})));
        allowed(&r, Ev::state("org.example.profile", "x@y", ALICE, json!({})));
    }
}

// ---------------------------------------------------------------------------------------------
// Power levels (rule 9 / v12 10)

/// alice admin; bob 60, carol 60, dave 30; ban 80; tombstone 100; power levels 50;
/// notifications.room 80. Everyone joined.
fn pl_base(v: &RoomVersion) -> Value {
    pl_content(
        v,
        &[(BOB, 60), (CAROL, 60), (DAVE, 30)],
        json!({
            "ban": 80,
            "events": { "m.room.tombstone": 100, "m.room.power_levels": 50 },
            "notifications": { "room": 80 },
        }),
    )
}

fn pl_room(v: &'static RoomVersion) -> RoomBuilder {
    let mut r = RoomBuilder::new(v);
    r.add("CREATE", Ev::create(ALICE));
    r.add("MA", Ev::join(ALICE));
    r.add("PL", Ev::power_levels(ALICE, pl_base(v)));
    r.add("JR", Ev::join_rules(ALICE, "public"));
    for u in [BOB, CAROL, DAVE] {
        r.add(&jn(u), Ev::join(u));
    }
    r
}

/// bob's power-levels event: the base content edited by `edit`.
fn bob_pl(v: &RoomVersion, edit: impl FnOnce(&mut Value)) -> Ev {
    let mut c = pl_base(v);
    edit(&mut c);
    Ev::power_levels(BOB, c)
}

#[test]
fn power_levels_named_level_not_integer_rejected_rule_9_1() {
    for v in VERSIONS {
        let r = pl_room(v);
        rejected(&r, bob_pl(v, |c| c["ban"] = json!("80")), "9.1");
        rejected(&r, bob_pl(v, |c| c["users_default"] = json!(true)), "9.1");
        rejected(&r, bob_pl(v, |c| c["invite"] = json!(null)), "9.1");
        allowed(&r, bob_pl(v, |c| c["invite"] = json!(10)));
    }
}

#[test]
fn power_levels_events_not_integer_map_rejected_rule_9_2() {
    for v in VERSIONS {
        let r = pl_room(v);
        rejected(&r, bob_pl(v, |c| c["events"]["m.room.name"] = json!("50")), "9.2");
        rejected(&r, bob_pl(v, |c| c["events"] = json!([])), "9.2");
        rejected(&r, bob_pl(v, |c| c["notifications"]["room"] = json!("x")), "9.2");
        allowed(&r, bob_pl(v, |c| c["events"]["m.room.name"] = json!(50)));
    }
}

#[test]
fn power_levels_users_with_bad_user_id_rejected_rule_9_3() {
    for v in VERSIONS {
        let r = pl_room(v);
        rejected(&r, bob_pl(v, |c| c["users"]["not-a-user"] = json!(10)), "9.3");
        rejected(&r, bob_pl(v, |c| c["users"][DAVE] = json!("30")), "9.3");
        // A2.6: users not an object (Synapse crashes) is rejected.
        rejected(&r, bob_pl(v, |c| c["users"] = json!([BOB])), "9.3");
    }
}

#[test]
fn first_power_levels_event_allowed_rule_9_4() {
    for v in VERSIONS {
        let mut r = RoomBuilder::new(v);
        r.add("CREATE", Ev::create(ALICE));
        r.add("MA", Ev::join(ALICE));
        // Levels above alice's own (100 in v11) are fine in the first event…
        let first = pl_content(v, &[(BOB, 1000)], json!({ "ban": 500, "events": { "m.room.name": 700 } }));
        allowed(&r, Ev::power_levels(ALICE, first.clone()));
        r.add("PL", Ev::power_levels(ALICE, pl_content(v, &[], json!({}))));
        // …but not once there is one (v11: `ban` 500 is above alice's 100, the first check to
        // fail; v12 creators have no ceiling).
        if v.privileged_creators {
            allowed(&r, Ev::power_levels(ALICE, first));
        } else {
            rejected(&r, Ev::power_levels(ALICE, first), "9.5");
        }
    }
}

#[test]
fn power_levels_named_level_above_own_rejected_rule_9_5() {
    for v in VERSIONS {
        let r = pl_room(v);
        // Old value (80) above bob's 60.
        rejected(&r, bob_pl(v, |c| c["ban"] = json!(50)), "9.5");
        // Removed: compared raw, absent is not "the default 50".
        rejected(
            &r,
            bob_pl(v, |c| {
                c.as_object_mut().unwrap().remove("ban");
            }),
            "9.5",
        );
        // New value above 60.
        rejected(&r, bob_pl(v, |c| c["kick"] = json!(70)), "9.5");
        // Up to his own level is fine, and adding a key equal to its default is a change too.
        allowed(&r, bob_pl(v, |c| c["kick"] = json!(60)));
        allowed(&r, bob_pl(v, |c| c["redact"] = json!(50)));
        // dave (30) cannot even re-state the (unchanged) levels… he fails rule 7 first.
        rejected(&r, Ev::power_levels(DAVE, pl_base(v)), "7");
    }
}

#[test]
fn power_levels_events_entry_old_value_above_own_rejected_rule_9_6() {
    for v in VERSIONS {
        let r = pl_room(v);
        rejected(
            &r,
            bob_pl(v, |c| {
                c["events"].as_object_mut().unwrap().remove("m.room.tombstone");
            }),
            "9.6",
        );
        rejected(&r, bob_pl(v, |c| c["events"]["m.room.tombstone"] = json!(50)), "9.6");
        rejected(&r, bob_pl(v, |c| c["notifications"]["room"] = json!(50)), "9.6");
        // Unchanged entries above the sender are fine.
        allowed(&r, bob_pl(v, |c| c["events"]["m.room.power_levels"] = json!(60)));
    }
}

#[test]
fn power_levels_events_entry_new_value_above_own_rejected_rule_9_7() {
    for v in VERSIONS {
        let r = pl_room(v);
        rejected(&r, bob_pl(v, |c| c["events"]["m.room.name"] = json!(70)), "9.7");
        rejected(&r, bob_pl(v, |c| c["notifications"]["other"] = json!(61)), "9.7");
        allowed(&r, bob_pl(v, |c| c["events"]["m.room.name"] = json!(60)));
    }
}

#[test]
fn power_levels_demoting_peer_rejected_lowering_self_allowed_rule_9_8() {
    for v in VERSIONS {
        let r = pl_room(v);
        rejected(&r, bob_pl(v, |c| c["users"][CAROL] = json!(0)), "9.8");
        rejected(
            &r,
            bob_pl(v, |c| {
                c["users"].as_object_mut().unwrap().remove(CAROL);
            }),
            "9.8",
        );
        allowed(&r, bob_pl(v, |c| c["users"][DAVE] = json!(0)));
        allowed(
            &r,
            bob_pl(v, |c| {
                c["users"].as_object_mut().unwrap().remove(DAVE);
            }),
        );
        allowed(&r, bob_pl(v, |c| c["users"][BOB] = json!(10)));
        allowed(
            &r,
            bob_pl(v, |c| {
                c["users"].as_object_mut().unwrap().remove(BOB);
            }),
        );
    }
}

#[test]
fn power_levels_raising_above_own_rejected_rule_9_9() {
    for v in VERSIONS {
        let r = pl_room(v);
        rejected(&r, bob_pl(v, |c| c["users"][DAVE] = json!(70)), "9.9");
        rejected(&r, bob_pl(v, |c| c["users"][ERIN] = json!(61)), "9.9");
        rejected(&r, bob_pl(v, |c| c["users"][BOB] = json!(61)), "9.9");
        allowed(&r, bob_pl(v, |c| c["users"][DAVE] = json!(60)));
        allowed(&r, bob_pl(v, |c| c["users"][ERIN] = json!(60)));
    }
}

// ---------------------------------------------------------------------------------------------
// v12 creators (MSC4289)

/// v12 room: alice creates with carol as an additional creator; bob has the top integer level.
fn creators_room() -> RoomBuilder {
    let mut r = RoomBuilder::new(&V12);
    r.add("CREATE", Ev::create_with(ALICE, json!({ "additional_creators": [CAROL] })));
    r.add("MA", Ev::join(ALICE));
    r.add("PL", Ev::power_levels(ALICE, json!({ "users": { BOB: MAX_INT, DAVE: 0 } })));
    r.add("JR", Ev::join_rules(ALICE, "public"));
    for u in [BOB, CAROL, DAVE] {
        r.add(&jn(u), Ev::join(u));
    }
    r
}

#[test]
fn v12_creator_can_kick_and_ban_anyone() {
    let r = creators_room();
    allowed(&r, Ev::kick(ALICE, BOB));
    allowed(&r, Ev::ban(ALICE, BOB));
    // In v11 the same levels are a tie between alice and bob.
    let r11 = room(&V11, &[(BOB, 100)], json!({}), &[BOB]);
    rejected_by(&r11, Ev::kick(ALICE, BOB), "v11 4.5.5");
}

#[test]
fn v12_nobody_can_kick_or_ban_a_creator() {
    let r = creators_room();
    rejected_by(&r, Ev::kick(BOB, ALICE), "v12 5.5.5");
    rejected_by(&r, Ev::ban(BOB, ALICE), "v12 5.6.3");
    // Not even another creator: ∞ is not less than ∞.
    rejected_by(&r, Ev::kick(CAROL, ALICE), "v12 5.5.5");
    rejected_by(&r, Ev::ban(ALICE, CAROL), "v12 5.6.3");
}

#[test]
fn v12_power_levels_listing_a_creator_rejected_rule_10_4() {
    let r = creators_room();
    rejected_by(&r, Ev::power_levels(ALICE, json!({ "users": { ALICE: 100, BOB: 10 } })), "v12 10.4");
    rejected_by(&r, Ev::power_levels(ALICE, json!({ "users": { CAROL: 100 } })), "v12 10.4");
    allowed(&r, Ev::power_levels(ALICE, json!({ "users": { BOB: 10 } })));
    // v11 has no creators to protect.
    let r11 = room(&V11, &[], json!({}), &[BOB]);
    allowed(&r11, Ev::power_levels(ALICE, pl_content(&V11, &[(BOB, 10)], json!({}))));
}

#[test]
fn v12_additional_creator_needs_invite_in_invite_only_room_rule_5_3_7() {
    let mut r = RoomBuilder::new(&V12);
    r.add("CREATE", Ev::create_with(ALICE, json!({ "additional_creators": [CAROL] })));
    r.add("MA", Ev::join(ALICE));
    r.add("JR", Ev::join_rules(ALICE, "invite"));
    rejected_by(&r, Ev::join(CAROL), "v12 5.3.7");
    r.add("INV", Ev::invite(ALICE, CAROL));
    allowed(&r, Ev::join(CAROL));
}

#[test]
fn v12_creators_infinite_without_power_levels_others_zero() {
    let mut r = RoomBuilder::new(&V12);
    r.add("CREATE", Ev::create_with(ALICE, json!({ "additional_creators": [CAROL] })));
    r.add("MA", Ev::join(ALICE));
    r.add("JR", Ev::join_rules(ALICE, "public"));
    r.add("JB", Ev::join(BOB));
    r.add("JC", Ev::join(CAROL));
    rejected_by(&r, Ev::topic(BOB, "t"), "v12 8");
    allowed(&r, Ev::topic(CAROL, "t"));
    // A creator may set any integer level, including the largest one, for others.
    allowed(&r, Ev::power_levels(CAROL, json!({ "users": { BOB: MAX_INT }, "ban": MAX_INT })));
}

#[test]
fn v12_creator_never_stopped_by_rule_10_9() {
    let r = creators_room();
    // Demoting bob from the top level and raising dave to it: both fine for a creator.
    allowed(&r, Ev::power_levels(CAROL, json!({ "users": { BOB: 0, DAVE: MAX_INT }, "kick": MAX_INT })));
    // bob (top integer level) cannot demote a peer at his level.
    let mut r2 = creators_room();
    r2.add("PL2", Ev::power_levels(ALICE, json!({ "users": { BOB: MAX_INT, DAVE: MAX_INT } })));
    rejected_by(&r2, Ev::power_levels(BOB, json!({ "users": { BOB: MAX_INT, DAVE: 0 } })), "v12 10.9");
}

// ---------------------------------------------------------------------------------------------
// The auth-state helpers

#[test]
fn user_power_level_definitions() {
    let r = creators_room();
    let create = r.pdu("CREATE");
    let pl = r.pdu("PL");
    let state = AuthState { create: Some(create), power_levels: Some(pl), ..AuthState::default() };
    assert_eq!(super::user_power_level(&V12, &state, ALICE), i64::MAX);
    assert_eq!(super::user_power_level(&V12, &state, CAROL), i64::MAX);
    assert_eq!(super::user_power_level(&V12, &state, BOB), MAX_INT);
    assert_eq!(super::user_power_level(&V12, &state, ERIN), 0);
    let no_pl = AuthState { create: Some(create), ..AuthState::default() };
    assert_eq!(super::user_power_level(&V12, &no_pl, BOB), 0);
    let r11 = basic(&V11);
    let state = AuthState { create: Some(r11.pdu("CREATE")), ..AuthState::default() };
    assert_eq!(super::user_power_level(&V11, &state, ALICE), 100);
    assert_eq!(super::user_power_level(&V11, &state, BOB), 0);
}
