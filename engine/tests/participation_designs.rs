//! The participation measures under the designs that have no participation: plain v12 and
//! MSC4243 alone. A `move` there opens a new account on the target server, a `revoke` is an
//! `m.room.server_acl` deny; the measures follow the person across accounts and read the ACL
//! as the revocation. Each expected value is derived by hand from a small scenario with no
//! workload (only the timeline's events), on an ideal network.

use roomsim_engine::metrics::instrumented_world;
use roomsim_engine::scenario::parse_scenario;
use roomsim_engine::sim::log::{LogWriter, MemorySink};
use serde_json::Value;

/// Two servers; `@u0:hs2` is banned at 5 s, then moves to hs1 at 10 s; nothing else happens.
const BAN_THEN_MOVE: &str = r#"
[scenario]
name = "ban-then-move"
end = "30s"

[defaults]
users = 1

[[servers]]
prefix = "hs"
count = 2

[[rooms]]
name = "main"
version = "12"
creator = "@u0:hs1"
join_rule = "public"
members = ["hs1", "hs2"]

[[timeline]]
at = "5s"
action = "ban"
room = "main"
user = "@u0:hs1"
target = "@u0:hs2"

[[timeline]]
at = "10s"
action = "move"
room = "main"
user = "@u0:hs2"
server = "hs1"
"#;

/// Three servers; `@u0:hs1` denies hs2 by ACL at 5 s; `@u0:hs2` speaks at 10 s and 15 s.
const ACL_THEN_SPEAK: &str = r#"
[scenario]
name = "acl-then-speak"
end = "30s"

[defaults]
users = 1

[[servers]]
prefix = "hs"
count = 3

[[rooms]]
name = "main"
version = "12"
creator = "@u0:hs1"
join_rule = "public"
members = ["hs1", "hs2", "hs3"]

[[timeline]]
at = "5s"
action = "revoke"
room = "main"
user = "@u0:hs1"
server = "hs2"

[[timeline]]
at = "10s"
action = "message"
room = "main"
user = "@u0:hs2"

[[timeline]]
at = "15s"
action = "message"
room = "main"
user = "@u0:hs2"
"#;

fn summary(text: &str, sets: &[&str]) -> Value {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let sc = parse_scenario("d.toml", text, &sets).expect("valid scenario");
    let mut world = instrumented_world(&sc, 1, LogWriter::new(Box::new(MemorySink::default())));
    world.run();
    let result = world.finish(true).expect("finish");
    assert!(result.invariant_violations.is_empty(), "{:?}", result.invariant_violations);
    result.summary
}

#[test]
fn a_banned_user_who_moves_outside_portable_rooms_is_a_new_account_and_evades_the_ban() {
    for sets in [&[][..], &["rooms.0.version=\"org.matrix.msc4243.12\""][..]] {
        let s = summary(BAN_THEN_MOVE, sets);
        let p = &s["participation"];
        // By hand: the new account `@u0.hs2:hs1` joins once (through hs1: another key than
        // hs2's, the key of the person's join before the ban): one move. hs2's only user is
        // banned, so hs2 is out of the room and is sent nothing: the join is accepted by hs1
        // alone, which had accepted the ban: 1 evasion, and the move is complete on hs1.
        assert_eq!(p["moves"], 1, "{sets:?}: {p}");
        assert_eq!(p["moves_unfinished"], 0, "{sets:?}: {p}");
        assert_eq!(p["move_completion_ms"]["count"], 1, "{sets:?}: {p}");
        assert_eq!(p["ban_evasion_by_move"], 1, "{sets:?}: {p}");
        assert_eq!(p["events_accepted_after_revocation"]["total"], 0, "{sets:?}: {p}");
        assert_eq!(p["participation_handshake_ms"]["count"], 0, "no handshake outside MSC4345: {p}");
        assert_eq!(s["rooms"]["main"]["distinct_final_states"], 1, "{}", s["rooms"]["main"]);
    }
}

#[test]
fn under_msc4348_the_same_ban_holds_across_the_move() {
    let text = BAN_THEN_MOVE.replace("version = \"12\"", "version = \"org.matrix.msc4348.12\"");
    let p = &summary(&text, &[])["participation"];
    // The ban is on the account key, which the move keeps: the move's join is refused.
    assert_eq!(p["ban_evasion_by_move"], 0, "{p}");
    assert_eq!(p["moves"], 0, "{p}");
}

#[test]
fn an_acl_revocation_lets_the_denied_server_accept_its_own_events_and_stops_its_sends() {
    let s = summary(ACL_THEN_SPEAK, &[]);
    let p = &s["participation"];
    // By hand: hs2 accepts its user's two messages after it accepted the ACL denying it (the
    // ACL binds requests from hs2, not hs2's own view); hs1 and hs3 refuse them at the door
    // (`/send` from a denied origin) and nobody relays them: 2 on hs2, 0 elsewhere.
    assert_eq!(p["events_accepted_after_revocation"]["total"], 2, "{p}");
    assert_eq!(p["events_accepted_after_revocation"]["per_server"], serde_json::json!({"hs2": 2}), "{p}");
    assert_eq!(p["moves"], 0, "{p}");
    // The two messages reach no other server: 2 events missing on hs1 and on hs3, 4 pairs.
    assert_eq!(s["rooms"]["main"]["events_missing_at_end"], 4, "{}", s["rooms"]["main"]);
    // hs1, hs2 and hs3 each fetch the two other servers' keys once: 6 outside requests.
    assert_eq!(p["outside_requests"]["by_endpoint"]["key_server"], 6, "{p}");
}

#[test]
fn move_to_the_own_domain_is_refused_outside_portable_rooms_but_a_move_elsewhere_is_not() {
    let own = BAN_THEN_MOVE.replace("server = \"hs1\"", "server = \"hs2\"");
    let err = parse_scenario("d.toml", &own, &[]).expect_err("a move to the own domain");
    assert!(err.message().contains("is already on hs2"), "{err}");
    parse_scenario("d.toml", BAN_THEN_MOVE, &[]).expect("a move to another server is valid in v12");
}

/// MSC4348, two servers of two users: `@u0:hs2` leaves with the final flag at 10 s, then tries
/// to join again at 20 s and to speak at 25 s.
const FINAL_LEAVE: &str = r#"
[scenario]
name = "final-leave"
end = "40s"

[defaults]
users = 2

[[servers]]
prefix = "hs"
count = 2

[[rooms]]
name = "main"
version = "org.matrix.msc4348.12"
creator = "@u0:hs1"
join_rule = "public"
members = ["hs1", "hs2"]

[[timeline]]
at = "10s"
action = "final_leave"
room = "main"
user = "@u0:hs2"

[[timeline]]
at = "20s"
action = "join"
room = "main"
user = "@u0:hs2"

[[timeline]]
at = "25s"
action = "message"
room = "main"
user = "@u0:hs2"
"#;

#[test]
fn account_key_revocation_by_a_final_leave_is_a_knob_the_measures_see() {
    // Without the reading the flag means nothing: by hand, the rejoin and the message are each
    // accepted by hs2 and hs1 after both accepted the final leave: 4, 2 per server.
    let s = summary(FINAL_LEAVE, &[]);
    let p = &s["participation"];
    assert_eq!(p["accounts_revoked"], 1, "{p}");
    assert_eq!(p["events_accepted_after_account_revocation"]["total"], 4, "{p}");
    assert_eq!(
        p["events_accepted_after_account_revocation"]["per_server"],
        serde_json::json!({"hs1": 2, "hs2": 2}),
        "{p}"
    );
    // With `-final-leave` (MSC4348 D4) the account never joins again: nothing after.
    let s = summary(FINAL_LEAVE, &["rooms.0.version=\"org.matrix.msc4348.12-final-leave\""]);
    let p = &s["participation"];
    assert_eq!(p["accounts_revoked"], 1, "{p}");
    assert_eq!(p["events_accepted_after_account_revocation"]["total"], 0, "{p}");
    assert_eq!(s["rooms"]["main"]["auth_disagreements"], 0, "{}", s["rooms"]["main"]);
}

#[test]
fn a_final_leave_outside_portable_rooms_is_a_located_error() {
    let text = FINAL_LEAVE.replace("version = \"org.matrix.msc4348.12\"", "version = \"12\"");
    let err = parse_scenario("d.toml", &text, &[]).expect_err("final_leave in v12");
    assert!(err.message().contains("needs a room with portable accounts"), "{err}");
    let line = text.lines().position(|l| l == "action = \"final_leave\"").unwrap() + 1;
    assert_eq!(err.line_column().map(|(l, _)| l), Some(line), "{err}");
}
