//! Unit tests of state resolution v2 (room v11) and v2.1 (room v12) on real signed events:
//! the two worked examples of `state-res.md` §7 and §8 (with their intermediate sets), and
//! hand-written conflicts whose expected results are derived step by step in the comments.
//!
//! Every scenario is built in both room versions. v12 differences in the construction: the
//! create event is never listed in `auth_events` (it is implied by the room ID, which is `!` +
//! the create event's hash), and power levels never list a creator (v12 auth rule 10.4), so
//! "alice: 100" becomes "alice is a creator (infinite)".

use super::{auth_difference::auth_difference, conflicted_subgraph::conflicted_subgraph, ordering, split_conflicts};
use super::{resolve, resolve_with, ReadmitRejected};
use crate::protocol::dag::{EventIdx, RoomDag, StateMap};
use crate::protocol::room_version::{RoomVersion, CREATOR_POWER_LEVEL, V11, V12};
use crate::protocol::test_support::{states_after, Ev, RoomBuilder};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const ALICE: &str = "@alice:hs1";
const BOB: &str = "@bob:hs2";
const CAROL: &str = "@carol:hs3";

const VERSIONS: [&RoomVersion; 2] = [&V11, &V12];

/// An auth-events list written with the create event, as v11 needs it; v12 drops it.
fn a(v: &RoomVersion, names: &[&'static str]) -> Vec<&'static str> {
    names.iter().copied().filter(|n| v.create_in_auth_events || *n != "CREATE").collect()
}

/// Power-levels content `{"users": …}`; v12 leaves the creator (alice) out.
fn users(v: &RoomVersion, list: &[(&str, i64)]) -> Value {
    let map: serde_json::Map<String, Value> = list
        .iter()
        .filter(|(u, _)| !v.privileged_creators || *u != ALICE)
        .map(|(u, l)| ((*u).to_owned(), json!(l)))
        .collect();
    json!({ "users": map })
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    out.sort();
    out
}

fn idx(r: &RoomBuilder, dag: &RoomDag, name: &str) -> EventIdx {
    dag.index_of(&r.id(name)).unwrap()
}

fn idx_set(r: &RoomBuilder, dag: &RoomDag, names: &[&str]) -> BTreeSet<EventIdx> {
    names.iter().map(|n| idx(r, dag, n)).collect()
}

fn names(r: &RoomBuilder, dag: &RoomDag, events: &[EventIdx]) -> Vec<String> {
    events.iter().map(|e| r.name_of(&dag.pdu(*e).event_id)).collect()
}

/// Resolves `states` in both input orders and asserts that the result is `expected` either way.
#[track_caller]
fn assert_resolves(r: &RoomBuilder, dag: &RoomDag, states: &[&StateMap], expected: &[&str]) {
    let got = resolve(dag, states);
    assert_eq!(r.names_in(dag, &got), sorted(expected), "room v{}", r.version.id);
    let mut reversed = states.to_vec();
    reversed.reverse();
    assert_eq!(resolve(dag, &reversed), got, "room v{}: input order changed the result", r.version.id);
}

/// The full conflicted set of step 1, as `resolve` computes it.
fn full_conflicted_set(dag: &RoomDag, states: &[&StateMap]) -> BTreeSet<EventIdx> {
    let (_, conflicted) = split_conflicts(states);
    let mut full: BTreeSet<EventIdx> = conflicted.iter().copied().collect();
    full.extend(auth_difference(dag, states));
    if dag.version.state_res == crate::protocol::room_version::StateResAlgorithm::V2_1 {
        full.extend(conflicted_subgraph(dag, &conflicted));
    }
    full
}

// ---------------------------------------------------------------------------------------------
// state-res.md §7: worked example 1 — demotion beats a concurrent topic (v2 and v2.1 agree)

fn example_1(v: &'static RoomVersion) -> RoomBuilder {
    let mut r = RoomBuilder::new(v);
    r.add("CREATE", Ev::create(ALICE).ts(1));
    r.add("MA", Ev::join(ALICE).prev(&["CREATE"]).auth(&a(v, &["CREATE"])).ts(2));
    r.add(
        "PL1",
        Ev::power_levels(ALICE, users(v, &[(ALICE, 100), (BOB, 50)]))
            .prev(&["MA"])
            .auth(&a(v, &["CREATE", "MA"]))
            .ts(3),
    );
    r.add("JR", Ev::join_rules(ALICE, "public").prev(&["PL1"]).auth(&a(v, &["CREATE", "PL1", "MA"])).ts(4));
    r.add("MB", Ev::join(BOB).prev(&["JR"]).auth(&a(v, &["CREATE", "PL1", "JR"])).ts(5));
    // Branch A.
    r.add("T1", Ev::topic(BOB, "bob's").prev(&["MB"]).auth(&a(v, &["CREATE", "PL1", "MB"])).ts(6));
    // Branch B: bob back to 0.
    r.add(
        "PL2",
        Ev::power_levels(ALICE, users(v, &[(ALICE, 100)])).prev(&["MB"]).auth(&a(v, &["CREATE", "PL1", "MA"])).ts(7),
    );
    r.add("T2", Ev::topic(ALICE, "alice's").prev(&["PL2"]).auth(&a(v, &["CREATE", "PL2", "MA"])).ts(8));
    r
}

const EXAMPLE_1_RESULT: [&str; 6] = ["CREATE", "MA", "JR", "MB", "PL2", "T2"];

#[test]
fn worked_example_1_demotion_beats_concurrent_topic() {
    for v in VERSIONS {
        let r = example_1(v);
        let verified = r.verify();
        assert_eq!(verified.report.rejected, 0);
        let dag = &verified.dag;
        let s_a = r.state_of(dag, &["CREATE", "MA", "PL1", "JR", "MB", "T1"]);
        let s_b = r.state_of(dag, &["CREATE", "MA", "PL2", "JR", "MB", "T2"]);
        // The DAG gives exactly the digest's two state sets.
        let after = states_after(dag);
        assert_eq!(after[idx(&r, dag, "T1") as usize], s_a);
        assert_eq!(after[idx(&r, dag, "T2") as usize], s_b);
        assert_resolves(&r, dag, &[&s_a, &s_b], &EXAMPLE_1_RESULT);
    }
}

#[test]
fn worked_example_1_intermediate_sets() {
    for v in VERSIONS {
        let r = example_1(v);
        let verified = r.verify();
        let dag = &verified.dag;
        let s_a = r.state_of(dag, &["CREATE", "MA", "PL1", "JR", "MB", "T1"]);
        let s_b = r.state_of(dag, &["CREATE", "MA", "PL2", "JR", "MB", "T2"]);
        let (unconflicted, conflicted) = split_conflicts(&[&s_a, &s_b]);
        assert_eq!(r.names_in(dag, &unconflicted), sorted(&["CREATE", "MA", "JR", "MB"]));
        assert_eq!(conflicted.iter().copied().collect::<BTreeSet<_>>(), idx_set(&r, dag, &["PL1", "PL2", "T1", "T2"]));
        // Auth difference (chains including the state events): {T1, PL2, T2}.
        let diff: BTreeSet<EventIdx> = auth_difference(dag, &[&s_a, &s_b]).into_iter().collect();
        assert_eq!(diff, idx_set(&r, dag, &["T1", "PL2", "T2"]));
        let full = full_conflicted_set(dag, &[&s_a, &s_b]);
        let full_hash: super::IdxSet = full.iter().copied().collect();
        let power: Vec<EventIdx> = full.iter().copied().filter(|e| dag.pdu(*e).is_power_event()).collect();
        let sorted_power = ordering::reverse_topological_power_order(dag, &power, &full_hash);
        let leftover: Vec<EventIdx> = full.iter().copied().filter(|e| !sorted_power.contains(e)).collect();
        let mainline = ordering::mainline_order(dag, &leftover, Some(idx(&r, dag, "PL2")));
        if v.state_res == crate::protocol::room_version::StateResAlgorithm::V2 {
            // v2: F = {PL1, PL2, T1, T2}; X = PL1 then PL2; leftovers T1 (position 1), T2 (0).
            assert_eq!(full, idx_set(&r, dag, &["PL1", "PL2", "T1", "T2"]));
            assert_eq!(names(&r, dag, &sorted_power), ["PL1", "PL2"]);
            assert_eq!(names(&r, dag, &mainline), ["T1", "T2"]);
        } else {
            // v2.1: the subgraph T1 → MB → JR → PL1 adds MB and JR; X = PL1, JR (ts 4), PL2
            // (ts 7); leftovers MB (position 1, ts 5), T1 (1, ts 6), T2 (0).
            let subgraph: BTreeSet<EventIdx> = conflicted_subgraph(dag, &conflicted).into_iter().collect();
            assert!(
                subgraph.is_superset(&idx_set(&r, dag, &["MB", "JR"])),
                "{:?}",
                names(&r, dag, &subgraph.iter().copied().collect::<Vec<_>>())
            );
            assert_eq!(full, idx_set(&r, dag, &["PL1", "PL2", "T1", "T2", "JR", "MB"]));
            assert_eq!(names(&r, dag, &sorted_power), ["PL1", "JR", "PL2"]);
            assert_eq!(names(&r, dag, &mainline), ["MB", "T1", "T2"]);
        }
    }
}

#[test]
fn worked_example_1_merge_event_sees_the_resolved_state() {
    for v in VERSIONS {
        let mut r = example_1(v);
        // A merge with prev events [T1, T2]: its auth events are selected from the resolution.
        let merge = r.add("MERGE", Ev::message(ALICE, "merged").prev(&["T1", "T2"]).ts(9));
        let expect_pl = r.id("PL2");
        assert!(merge.auth_events.contains(&expect_pl), "the merge must cite PL2");
        let verified = r.verify();
        assert_eq!(verified.report.rejected, 0);
        assert_eq!(r.names_in(&verified.dag, &verified.final_state), sorted(&EXAMPLE_1_RESULT));
        // And bob, demoted in the resolved state, can no longer set the topic after the merge.
        let after_merge = r.check(Ev::topic(BOB, "again").prev(&["MERGE"]));
        assert!(after_merge.is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// state-res.md §8: worked example 2 — a v2 state reset that v2.1 avoids (MSC4297 problem A)

fn example_2(v: &'static RoomVersion) -> RoomBuilder {
    let mut r = RoomBuilder::new(v);
    r.add("CREATE", Ev::create(ALICE).ts(1));
    r.add("MA", Ev::join(ALICE).prev(&["CREATE"]).auth(&a(v, &["CREATE"])).ts(2));
    r.add("PL", Ev::power_levels(ALICE, users(v, &[(ALICE, 100)])).prev(&["MA"]).auth(&a(v, &["CREATE", "MA"])).ts(3));
    r.add("JR1", Ev::join_rules(ALICE, "public").prev(&["PL"]).auth(&a(v, &["CREATE", "PL", "MA"])).ts(4));
    r.add("MB", Ev::join(BOB).prev(&["JR1"]).auth(&a(v, &["CREATE", "PL", "JR1"])).ts(5));
    r.add("JR2", Ev::join_rules(ALICE, "invite").prev(&["MB"]).auth(&a(v, &["CREATE", "PL", "MA"])).ts(6));
    r.add("ML", Ev::leave(ALICE).prev(&["JR2"]).auth(&a(v, &["CREATE", "PL", "MA"])).ts(7));
    r
}

#[test]
fn worked_example_2_stale_join_rules_v2_state_reset_v2_1_correct() {
    for v in VERSIONS {
        let r = example_2(v);
        let verified = r.verify();
        assert_eq!(verified.report.rejected, 0);
        let dag = &verified.dag;
        // The honest state after ML, and the faulty one with the stale JR1.
        let s1 = r.state_of(dag, &["CREATE", "ML", "PL", "MB", "JR2"]);
        let s2 = r.state_of(dag, &["CREATE", "ML", "PL", "MB", "JR1"]);
        assert_eq!(states_after(dag)[idx(&r, dag, "ML") as usize], s1);
        let (unconflicted, conflicted) = split_conflicts(&[&s1, &s2]);
        assert_eq!(r.names_in(dag, &unconflicted), sorted(&["CREATE", "ML", "PL", "MB"]));
        assert_eq!(conflicted, vec![idx(&r, dag, "JR1"), idx(&r, dag, "JR2")]);
        let diff: Vec<EventIdx> = auth_difference(dag, &[&s1, &s2]);
        assert_eq!(names(&r, dag, &diff), ["JR2"]);
        // Neither join-rules event reaches the other: no subgraph.
        assert!(conflicted_subgraph(dag, &conflicted).is_empty());
        if v.state_res == crate::protocol::room_version::StateResAlgorithm::V2 {
            // v2 replays JR1 and JR2 on U, where alice has left: both fail rule 5, and the room
            // is left with no join rules at all.
            assert_resolves(&r, dag, &[&s1, &s2], &["CREATE", "ML", "PL", "MB"]);
        } else {
            // v2.1 starts empty: each falls back to its own auth events (alice joined), JR2
            // (ts 6) is replayed after JR1 (ts 4) and wins.
            assert_resolves(&r, dag, &[&s1, &s2], &["CREATE", "ML", "PL", "MB", "JR2"]);
        }
    }
}

#[test]
fn conflicted_subgraph_replays_chain_of_promotions_msc4297_problem_b() {
    // state-res.md §5, problem B: alice promotes bob (PL2), bob promotes carol (PL3), carol sets
    // the topic T. A faulty /state_ids answer gives a state with the stale PL1 but T in it.
    //
    // S1 = {CREATE, MA, PL3, JR, MB, MC, T}; S2 = the same with PL1. Conflicted = {PL1, PL3}.
    // Auth difference = ∅: T's auth chain (T → PL3 → PL2 → PL1) puts every power-levels event
    // in both sides' chains. So v2's F = {PL1, PL3}: PL2 is missing. The power ordering sees no
    // edge between PL1 and PL3 inside F and sorts by power: PL1 (alice) first, then PL3 (bob,
    // 50). v2 replay on U (no power levels in it): PL1 passes, PL3 fails — bob has 0 under PL1.
    // Result: PL1 — bob's and carol's promotions are reset.
    // v2.1: PL2 lies on the path PL3 → PL2 → PL1 (and JR, MB on PL3 → MB → JR → PL1), so
    // F = {PL1, JR, MB, PL2, PL3}; all are replayed (MB is in PL3's auth chain): PL1, JR (alice,
    // ts 4), PL2 (alice, ts 10), MB (bob, 0 under PL1), PL3 (needs PL2 and MB). From empty each
    // passes in turn. Result: PL3, the correct state.
    for v in VERSIONS {
        let mut r = three_members(v, &[(ALICE, 100)]);
        r.add("PL2", Ev::power_levels(ALICE, users(v, &[(ALICE, 100), (BOB, 50)])).ts(10));
        r.add("PL3", Ev::power_levels(BOB, users(v, &[(ALICE, 100), (BOB, 50), (CAROL, 50)])).ts(11));
        r.add("T", Ev::topic(CAROL, "carol's").ts(12));
        let verified = r.verify();
        let dag = &verified.dag;
        let s1 = r.state_of(dag, &["CREATE", "MA", "PL3", "JR", "MB", "MC", "T"]);
        let s2 = r.state_of(dag, &["CREATE", "MA", "PL1", "JR", "MB", "MC", "T"]);
        assert_eq!(states_after(dag)[idx(&r, dag, "T") as usize], s1);
        assert!(auth_difference(dag, &[&s1, &s2]).is_empty());
        if v.state_res == crate::protocol::room_version::StateResAlgorithm::V2 {
            assert_eq!(full_conflicted_set(dag, &[&s1, &s2]), idx_set(&r, dag, &["PL1", "PL3"]));
            assert_resolves(&r, dag, &[&s1, &s2], &["CREATE", "MA", "PL1", "JR", "MB", "MC", "T"]);
        } else {
            assert_eq!(full_conflicted_set(dag, &[&s1, &s2]), idx_set(&r, dag, &["PL1", "JR", "MB", "PL2", "PL3"]));
            assert_resolves(&r, dag, &[&s1, &s2], &["CREATE", "MA", "PL3", "JR", "MB", "MC", "T"]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-written conflicts

/// CREATE, MA, PL1 (alice 100, bob 50 — or in v12 alice a creator), JR public, MB, MC (carol).
fn three_members(v: &'static RoomVersion, pl1_users: &[(&str, i64)]) -> RoomBuilder {
    let mut r = RoomBuilder::new(v);
    r.add("CREATE", Ev::create(ALICE).ts(1));
    r.add("MA", Ev::join(ALICE).ts(2));
    r.add("PL1", Ev::power_levels(ALICE, users(v, pl1_users)).ts(3));
    r.add("JR", Ev::join_rules(ALICE, "public").ts(4));
    r.add("MB", Ev::join(BOB).ts(5));
    r.add("MC", Ev::join(CAROL).ts(6));
    r
}

#[test]
fn ban_vs_power_levels_demotion_undoes_concurrent_ban() {
    // Fork after MC. Branch A: bob (50) bans carol (0) — valid there. Branch B: alice demotes
    // bob to 0 (PL2).
    //
    // S_A = {CREATE, MA, PL1, JR, MB, carol: BAN}, S_B = {CREATE, MA, PL2, JR, MB, carol: MC}.
    // U = {CREATE, MA, JR, MB}; conflicted = {PL1, PL2, BAN, MC}.
    // v2: auth difference = {BAN, PL2} (BAN cites MC, PL2 cites PL1), F = {PL1, PL2, BAN, MC}.
    //   Power events PL1, PL2, BAN; X adds MC (in BAN's auth chain and in F). Kahn with power
    //   from each event's own auth events: PL1 (no in-set auth), then PL2 (alice 100) before MC
    //   (carol 0), then BAN (needs MC). Replay on U: PL1 ok (first), PL2 ok (alice lowers bob),
    //   MC ok (public), BAN fails: bob has 0 under PL2 < ban 50. No leftovers.
    // v2.1: the subgraph adds JR (MC → JR → PL1) and MB (BAN → MB → JR); X = PL1, JR, PL2, MB,
    //   MC, BAN (JR before PL2 on ts, MB (50) before MC (0)); from empty every event but BAN
    //   passes, for the same reason.
    // Both: {CREATE, MA, JR, MB, MC, PL2}: the demotion wins and carol stays joined.
    for v in VERSIONS {
        let mut r = three_members(v, &[(ALICE, 100), (BOB, 50)]);
        r.add("BAN", Ev::ban(BOB, CAROL).prev(&["MC"]).ts(10));
        r.add("PL2", Ev::power_levels(ALICE, users(v, &[(ALICE, 100)])).prev(&["MC"]).ts(11));
        let verified = r.verify();
        let dag = &verified.dag;
        let after = states_after(dag);
        let s_a = &after[idx(&r, dag, "BAN") as usize];
        let s_b = &after[idx(&r, dag, "PL2") as usize];
        assert_resolves(&r, dag, &[s_a, s_b], &["CREATE", "MA", "JR", "MB", "MC", "PL2"]);
        let full = full_conflicted_set(dag, &[s_a, s_b]);
        let expected_full: &[&str] = if v.state_res == crate::protocol::room_version::StateResAlgorithm::V2 {
            &["PL1", "PL2", "BAN", "MC"]
        } else {
            &["PL1", "PL2", "BAN", "MC", "JR", "MB"]
        };
        assert_eq!(full, idx_set(&r, dag, expected_full));
    }
}

#[test]
fn topic_vs_ban_ban_replayed_first_drops_topic() {
    // auth-rules.md §6's example. carol has 50 (may set the topic). Fork after MC. Branch B:
    // alice bans carol. Branch C: carol sets the topic.
    //
    // S_B = {CREATE, MA, PL1, JR, MB, carol: BAN}; S_C = {…, carol: MC, topic: TOPIC}.
    // U = {CREATE, MA, PL1, JR, MB}; conflicted = {BAN, MC, TOPIC}; auth difference
    // {BAN, TOPIC}; F = {BAN, MC, TOPIC} in both versions (BAN → MC and TOPIC → MC are direct
    // edges: no intermediate events). X = {BAN, MC} (MC is in BAN's auth chain), ordered MC, BAN.
    // Replay (from U, or from empty with fallback to own auth events): MC ok, BAN ok (alice
    // 100/∞ > carol 50). Leftover TOPIC: carol's membership is now BAN ⇒ rule 5 (v12 6) fails.
    // Result: {CREATE, MA, PL1, JR, MB, BAN} — no topic.
    for v in VERSIONS {
        let mut r = three_members(v, &[(ALICE, 100), (CAROL, 50)]);
        r.add("BAN", Ev::ban(ALICE, CAROL).prev(&["MC"]).ts(10));
        r.add("TOPIC", Ev::topic(CAROL, "mine").prev(&["MC"]).ts(11));
        let verified = r.verify();
        let dag = &verified.dag;
        let after = states_after(dag);
        let s_b = &after[idx(&r, dag, "BAN") as usize];
        let s_c = &after[idx(&r, dag, "TOPIC") as usize];
        assert_eq!(full_conflicted_set(dag, &[s_b, s_c]), idx_set(&r, dag, &["BAN", "MC", "TOPIC"]));
        assert_resolves(&r, dag, &[s_b, s_c], &["CREATE", "MA", "PL1", "JR", "MB", "BAN"]);
        // A server that had BAN when TOPIC arrived would judge it against its current state:
        // soft failure. Here: TOPIC fails against the state after BAN.
        let soft = r.check(Ev::topic(CAROL, "mine").prev(&["BAN"]).auth(&a(v, &["CREATE", "PL1", "MC"])).ts(12));
        assert!(soft.is_err());
    }
}

#[test]
fn concurrent_joins_both_survive() {
    // Fork after JR: bob joins on one branch (ts 10), carol on the other (ts 11).
    // U = {CREATE, MA, PL1, JR}; conflicted = {MB, MC} (each key missing on one side);
    // auth difference = {MB, MC}; F = {MB, MC}; v2.1 subgraph: neither reaches the other.
    // No power events: R = U (v2) or ∅ (v2.1). Leftovers by mainline: both cite PL1 (same
    // position), so by ts: MB, MC. Both pass (public; in v2.1 via their own auth events JR,
    // PL1). Result: U + MB + MC.
    for v in VERSIONS {
        let mut r = RoomBuilder::new(v);
        r.add("CREATE", Ev::create(ALICE).ts(1));
        r.add("MA", Ev::join(ALICE).ts(2));
        r.add("PL1", Ev::power_levels(ALICE, users(v, &[(ALICE, 100)])).ts(3));
        r.add("JR", Ev::join_rules(ALICE, "public").ts(4));
        r.add("MB", Ev::join(BOB).prev(&["JR"]).ts(10));
        r.add("MC", Ev::join(CAROL).prev(&["JR"]).ts(11));
        let verified = r.verify();
        let dag = &verified.dag;
        let after = states_after(dag);
        let (s1, s2) = (&after[idx(&r, dag, "MB") as usize], &after[idx(&r, dag, "MC") as usize]);
        assert_eq!(full_conflicted_set(dag, &[s1, s2]), idx_set(&r, dag, &["MB", "MC"]));
        assert_resolves(&r, dag, &[s1, s2], &["CREATE", "MA", "PL1", "JR", "MB", "MC"]);
        // The final state of the DAG (two forward extremities) is the same resolution.
        assert_eq!(r.names_in(dag, &verified.final_state), sorted(&["CREATE", "MA", "PL1", "JR", "MB", "MC"]));
    }
}

fn join_rules_vs_join(v: &'static RoomVersion, jr2_ts: i64) -> RoomBuilder {
    let mut r = RoomBuilder::new(v);
    r.add("CREATE", Ev::create(ALICE).ts(1));
    r.add("MA", Ev::join(ALICE).ts(2));
    r.add("PL", Ev::power_levels(ALICE, users(v, &[(ALICE, 100)])).ts(3));
    r.add("JR1", Ev::join_rules(ALICE, "public").ts(4));
    // Branch A: alice closes the room. Branch B: carol joins under the public rule.
    r.add("JR2", Ev::join_rules(ALICE, "invite").prev(&["JR1"]).ts(jr2_ts));
    r.add("MC", Ev::join(CAROL).prev(&["JR1"]).ts(11));
    r
}

#[test]
fn join_rules_vs_join_closing_the_room_undoes_concurrent_join() {
    // S_A = {CREATE, MA, PL, JR2}; S_B = {CREATE, MA, PL, JR1, carol: MC}. U = {CREATE, MA, PL};
    // conflicted = {JR1, JR2, MC}; auth difference = {JR1, JR2, MC} (JR1 is only in B's chains:
    // JR2 does not cite join rules); F = the same (v2.1: MC → JR1 is a direct edge, JR2 reaches
    // neither). X = {JR1, JR2}, both alice, ordered by ts: JR1 (4), JR2 (10): JR2 ends up in R.
    // Leftover MC is replayed against JR2 (invite) with no invite ⇒ rejected (4.3.7).
    // Result: {CREATE, MA, PL, JR2}: carol's concurrent join is lost.
    for v in VERSIONS {
        let r = join_rules_vs_join(v, 10);
        let verified = r.verify();
        let dag = &verified.dag;
        let after = states_after(dag);
        let (s_a, s_b) = (&after[idx(&r, dag, "JR2") as usize], &after[idx(&r, dag, "MC") as usize]);
        assert_eq!(full_conflicted_set(dag, &[s_a, s_b]), idx_set(&r, dag, &["JR1", "JR2", "MC"]));
        assert_resolves(&r, dag, &[s_a, s_b], &["CREATE", "MA", "PL", "JR2"]);
    }
}

#[test]
fn join_rules_vs_join_skewed_clock_lets_the_join_survive() {
    // The same DAG, but JR2 carries an *older* timestamp (3) than JR1 (4): no auth edge orders
    // the two join-rules events, so ts does — JR2, then JR1 — and the stale public rule JR1 ends
    // up in R. MC then passes. Result: {CREATE, MA, PL, JR1, MC}. (State resolution never
    // reads prev_events or depth.)
    for v in VERSIONS {
        let r = join_rules_vs_join(v, 3);
        let verified = r.verify();
        let dag = &verified.dag;
        let after = states_after(dag);
        let (s_a, s_b) = (&after[idx(&r, dag, "JR2") as usize], &after[idx(&r, dag, "MC") as usize]);
        assert_resolves(&r, dag, &[s_a, s_b], &["CREATE", "MA", "PL", "JR1", "MC"]);
    }
}

#[test]
fn readmit_rejected_spec_vs_synapse_a3() {
    // T_REJ: bob's topic citing PL1 (bob 50) although PL2 (bob 0) precedes it: it passes its own
    // auth events and is rejected against the state before it. A (faulty) state set that holds
    // it, resolved against one that has no topic: F = {T_REJ}, no power events; the leftover
    // replay judges it with PL1 (v2: U holds PL1; v2.1: its own auth events) ⇒ it passes.
    // Spec (A3): it enters the state. Synapse (the default): a rejected event never does.
    for v in VERSIONS {
        let mut r = RoomBuilder::new(v);
        r.add("CREATE", Ev::create(ALICE).ts(1));
        r.add("MA", Ev::join(ALICE).ts(2));
        r.add("PL1", Ev::power_levels(ALICE, users(v, &[(ALICE, 100), (BOB, 50)])).ts(3));
        r.add("JR", Ev::join_rules(ALICE, "public").ts(4));
        r.add("MB", Ev::join(BOB).ts(5));
        r.add("PL2", Ev::power_levels(ALICE, users(v, &[(ALICE, 100)])).ts(6));
        let seven = if v.privileged_creators { "v12 8" } else { "v11 7" };
        r.add_rejected("T_REJ", Ev::topic(BOB, "t").auth(&a(v, &["CREATE", "PL1", "MB"])).ts(7), seven);
        let verified = r.verify();
        let dag = &verified.dag;
        assert_eq!(verified.report.verdicts[&r.id("T_REJ")].stage, Some(crate::protocol::dag::Stage::StateBefore));
        let base = ["CREATE", "MA", "PL1", "JR", "MB"];
        let mut with: Vec<&str> = base.to_vec();
        with.push("T_REJ");
        let s1 = r.state_of(dag, &with);
        let s2 = r.state_of(dag, &base);
        let spec = resolve_with(dag, &[&s1, &s2], ReadmitRejected::Spec);
        assert_eq!(r.names_in(dag, &spec), sorted(&with));
        let synapse = resolve_with(dag, &[&s1, &s2], ReadmitRejected::Synapse);
        assert_eq!(r.names_in(dag, &synapse), sorted(&base));
        assert_eq!(resolve(dag, &[&s1, &s2]), synapse, "the default is Synapse's behaviour");
    }
}

#[test]
fn v12_creator_power_event_sorts_before_top_integer_level() {
    // bob has the largest integer level (2^53 − 1) and alice is a creator. Two concurrent
    // join-rules changes: bob's (ts 10) and alice's (ts 20). v12: alice's sorts first (∞ > any
    // integer), so bob's is replayed last and wins. v11 (alice 100 = bob 100): the tie goes to
    // ts, bob's first, alice's last and winning.
    let max = 9_007_199_254_740_991_i64;
    for v in VERSIONS {
        let bob_level = if v.privileged_creators { max } else { 100 };
        let mut r = RoomBuilder::new(v);
        r.add("CREATE", Ev::create(ALICE).ts(1));
        r.add("MA", Ev::join(ALICE).ts(2));
        r.add("PL", Ev::power_levels(ALICE, users(v, &[(ALICE, 100), (BOB, bob_level)])).ts(3));
        r.add("JR", Ev::join_rules(ALICE, "public").ts(4));
        r.add("MB", Ev::join(BOB).ts(5));
        r.add("JR_BOB", Ev::join_rules(BOB, "invite").prev(&["MB"]).ts(10));
        r.add("JR_ALICE", Ev::join_rules(ALICE, "knock").prev(&["MB"]).ts(20));
        let verified = r.verify();
        let dag = &verified.dag;
        let alice_power = dag.event(idx(&r, dag, "JR_ALICE")).sender_power;
        assert_eq!(alice_power, if v.privileged_creators { CREATOR_POWER_LEVEL } else { 100 });
        let after = states_after(dag);
        let (s1, s2) = (&after[idx(&r, dag, "JR_BOB") as usize], &after[idx(&r, dag, "JR_ALICE") as usize]);
        let winner = if v.privileged_creators { "JR_BOB" } else { "JR_ALICE" };
        assert_resolves(&r, dag, &[s1, s2], &["CREATE", "MA", "PL", "MB", winner]);
    }
}

#[test]
fn trivial_inputs() {
    for v in VERSIONS {
        let r = example_1(v);
        let verified = r.verify();
        let dag = &verified.dag;
        let s_a = r.state_of(dag, &["CREATE", "MA", "PL1", "JR", "MB", "T1"]);
        let s_b = r.state_of(dag, &["CREATE", "MA", "PL2", "JR", "MB", "T2"]);
        assert!(resolve(dag, &[]).is_empty());
        assert_eq!(resolve(dag, &[&s_a]), s_a);
        assert_eq!(resolve(dag, &[&s_a, &s_a.clone(), &s_a]), s_a);
        // Duplicated inputs change nothing.
        assert_eq!(resolve(dag, &[&s_a, &s_b, &s_a, &s_b]), resolve(dag, &[&s_b, &s_a]));
        // Resolving with the empty state: every key is conflicted (missing on one side).
        let empty = StateMap::new();
        let with_empty = resolve(dag, &[&s_b, &empty]);
        assert_eq!(resolve(dag, &[&empty, &s_b]), with_empty);
    }
}
