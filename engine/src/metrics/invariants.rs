//! Invariant checks (TigerBeetle style), run by tests and by `roomsim run --check-invariants`,
//! as an observer of the world's end:
//! 1. once the last fault healed and the network is quiet, all honest servers in a room hold
//!    the same DAG state (the resolution over every timeline event no timeline event builds
//!    on, soft-failed ones included) and, with `join.mode = "full_history"`, the same events;
//!    with `"state"`, every honest server's forward extremities in its timeline (a state joiner
//!    lacks dead ends older than its join and the inside of bridged gaps, as in Synapse). Their *current* states may still differ where they
//!    soft-failed differently — allowed by the protocol, and measured, not asserted;
//! 2. every honest server agrees with an independent judgement of the room's union DAG (every
//!    PDU any server created), made from scratch by `dag verify`'s procedure *with the run's keys*
//!    (content hashes; signatures verified, or only checked for presence and form when every
//!    server models them), independent of what the replicas computed: the same accepted/rejected
//!    verdict on every event the server holds, and the same resolved state over the events it
//!    holds (rejection, and the DAG's state, are deterministic functions of the DAG).

use crate::protocol::dag::{state_digest, EventIdx, Stage};
use crate::protocol::pdu::{Pdu, TypedContent};
use crate::protocol::room_version::RoomVersion;
use crate::protocol::state_res::ReadmitRejected;
use crate::protocol::verify::{verify_dag, HashMismatch, Verified, VerifyOptions};
use crate::scenario::{FaultKind, Scenario, SignatureMode};
use crate::sim::federation::ServerIdx;
use crate::sim::observe::{Findings, Held, Observer, WorldView};
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct Invariants {
    /// Every fault of the scenario heals (so convergence is expected once the run is quiet). A
    /// key rotation does not: an event signed by a key no longer published may never be
    /// checkable by a server that did not fetch that key in time.
    faults_heal: bool,
    /// Every server models signatures (so the reference judgement does not verify them either).
    modelled_signatures: bool,
    /// `join.mode = "state"`: replicas need not hold the same events (see [`check_room`]).
    state_joins: bool,
}

impl Invariants {
    pub fn new(scenario: &Scenario) -> Invariants {
        Invariants {
            faults_heal: scenario
                .faults
                .iter()
                .all(|f| f.duration_us.is_some() || matches!(f.kind, FaultKind::HealAll | FaultKind::ClockSkew { .. })),
            modelled_signatures: scenario.servers.iter().all(|s| s.signatures == SignatureMode::Modelled),
            state_joins: scenario.join_mode == crate::scenario::JoinMode::State,
        }
    }
}

impl Observer for Invariants {
    fn finish(&mut self, view: &mut dyn WorldView, out: &mut Findings) {
        if !out.check_invariants {
            return;
        }
        // The convergence invariant only holds once nothing is in flight any more.
        let quiet = view.quiet();
        if !quiet {
            out.notes.push(format!(
                "convergence not checked: {} messages still in flight at the end",
                view.messages_in_flight()
            ));
        }
        let rooms: Vec<(String, String)> = view.rooms().iter().map(|(n, i)| (n.clone(), i.clone())).collect();
        for (name, room_id) in rooms {
            let pdus = view.room_pdus(&room_id);
            // A server ACL that denies a server of the room cuts that server off by design
            // (its requests are refused): its later events are not expected to reach the others.
            let members = view.members(&room_id);
            let denied: Vec<&str> = members
                .iter()
                .map(|k| view.node_name(*k))
                .filter(|server| {
                    pdus.iter().any(|p| {
                        p.event_type == "m.room.server_acl"
                            && p.json.get("content").is_some_and(|c| crate::protocol::server_acl::denies(c, server))
                    })
                })
                .collect();
            if !denied.is_empty() {
                out.notes.push(format!(
                    "room {name}: convergence not checked: an m.room.server_acl denies {} (its events are refused by design)",
                    denied.join(", ")
                ));
            }
            let expect_convergence = quiet && self.faults_heal && denied.is_empty();
            out.violations.extend(check_room(
                view,
                &name,
                &room_id,
                &pdus,
                expect_convergence,
                self.modelled_signatures,
                self.state_joins,
            ));
        }
    }
}

pub fn check_room(
    view: &dyn WorldView,
    name: &str,
    room_id: &str,
    pdus: &[Arc<Pdu>],
    expect_convergence: bool,
    modelled_signatures: bool,
    state_joins: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let holders = view.holders(room_id);
    // A byzantine server can legitimately leave honest servers with different events (it sends
    // each a different twin, or withholds an event nobody builds on); convergence is only
    // asserted among honest-only rooms. Decisions must agree regardless.
    let byzantine_present = holders.iter().any(|k| !view.is_honest(*k));
    let members = view.members(room_id);
    if expect_convergence && !byzantine_present {
        let digests: BTreeSet<String> = members.iter().filter_map(|k| view.dag_state_digest(*k, room_id)).collect();
        if state_joins {
            // A state joiner never holds a dead end that ended before it joined (nobody cites
            // it), nor the inside of a gap bridged with `/state_ids`: what must agree is the
            // live frontier. Every member's forward extremity is in every member's timeline.
            let tips: BTreeSet<String> = members.iter().flat_map(|k| view.replica_extremities(*k, room_id)).collect();
            for k in &members {
                let timeline: BTreeSet<String> = view
                    .replica_events(*k, room_id)
                    .into_iter()
                    .filter(|(_, h)| !matches!(h, Held::Outlier { .. }))
                    .map(|(id, _)| id)
                    .collect();
                if let Some(missing) = tips.iter().find(|t| !timeline.contains(*t)) {
                    out.push(format!("room {name}: {} lacks the forward extremity {missing} of another honest server after the faults healed and the network went quiet", view.node_name(*k)));
                }
            }
        } else {
            let event_counts: BTreeSet<usize> =
                members.iter().map(|k| view.replica_events(*k, room_id).len()).collect();
            if event_counts.len() > 1 {
                out.push(format!("room {name}: honest servers hold different numbers of events ({event_counts:?}) after the faults healed and the network went quiet"));
            }
        }
        if digests.len() > 1 {
            out.push(format!("room {name}: honest servers' DAGs resolve to {} different states after the faults healed and the network went quiet", digests.len()));
        }
    }
    let version = pdus.first().and_then(|c| match &c.content {
        TypedContent::Create(c) => c.room_version.as_deref().and_then(RoomVersion::by_id),
        _ => None,
    });
    let Some(version) = version else { return out };
    let honest: Vec<ServerIdx> = holders.into_iter().filter(|k| view.is_honest(*k)).collect();
    let reference = reference_judgement(view, version, pdus, modelled_signatures);
    for k in honest {
        out.extend(server_matches_reference(view, name, room_id, &reference, k));
    }
    out
}

/// The room's union DAG judged from scratch, as the servers judge (Server-Server API §Checks
/// performed on receipt of a PDU): with the run's keys, a content-hash mismatch going on as the
/// redacted copy, Synapse's readmission behaviour (the servers' state resolution).
pub fn reference_judgement(
    view: &dyn WorldView,
    version: &'static RoomVersion,
    pdus: &[Arc<Pdu>],
    modelled_signatures: bool,
) -> Verified {
    let owned: Vec<Pdu> = pdus.iter().map(|p| (**p).clone()).collect();
    let options = VerifyOptions {
        keys: Some(view.server_keys()),
        modelled_signatures,
        hash_mismatch: HashMismatch::Redact,
        readmit_rejected: ReadmitRejected::Synapse,
        skip_state_digests: true,
    };
    verify_dag(version, owned, &options)
}

/// Violations of server `k` against the reference: events it decided differently (or holds
/// although the union DAG does not have them), and a different resolved state over the events
/// it holds.
fn server_matches_reference(
    view: &dyn WorldView,
    name: &str,
    room_id: &str,
    reference: &Verified,
    k: ServerIdx,
) -> Vec<String> {
    let server = view.node_name(k);
    let mut out = Vec::new();
    let mut mismatches = Vec::new();
    let mut held: Vec<EventIdx> = Vec::new();
    for (id, how) in view.replica_events(k, room_id) {
        let ours = match how {
            Held::Rejected | Held::Outlier { rejected: true } => "rejected",
            Held::Accepted { .. } | Held::Outlier { rejected: false } => "accepted",
        };
        let Some(idx) = reference.dag.index_of(&id) else {
            mismatches.push(format!("{id} ({ours} here, not in the union DAG)"));
            continue;
        };
        let v = &reference.report.verdicts[&id];
        if let Held::Outlier { rejected } = how {
            if !outlier_agrees(reference, idx, rejected) {
                let why = v.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
                mismatches.push(format!("{id} (outlier {ours} here, {} by the reference judgement{why})", v.verdict));
            }
            continue;
        }
        held.push(idx);
        if v.verdict != ours {
            let why = v.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default();
            mismatches.push(format!("{id} ({ours} here, {} by the reference judgement{why})", v.verdict));
        }
    }
    if let Some(first) = mismatches.first() {
        out.push(format!(
            "room {name}: {server} decided {} events differently from the reference judgement of the union DAG, e.g. {first}",
            mismatches.len()
        ));
    }
    // Its forward extremities: held timeline events no held timeline event names as a prev
    // event.
    let mut referenced = vec![false; reference.dag.len()];
    for e in &held {
        for p in &reference.dag.event(*e).prev {
            referenced[*p as usize] = true;
        }
    }
    let tips: Vec<EventIdx> = held.iter().copied().filter(|e| !referenced[*e as usize]).collect();
    let want = state_digest(&reference.dag, &reference.resolve_after(&tips));
    match view.dag_state_digest(k, room_id) {
        Some(got) if got != want => out.push(format!(
            "room {name}: {server}'s DAG resolves to state {got}, the reference judgement of the same {} events to {want}",
            held.len()
        )),
        _ => {}
    }
    out
}

/// What an outlier's verdict can be compared on: it was judged against its own auth events
/// only, each of them accepted as an outlier whatever the timeline made of it. So an outlier
/// rejected here must be rejected by the reference; one that passed here must not be rejected by
/// the reference except against the state before it (a check an outlier does not get) or for
/// citing an auth event the reference rejected.
fn outlier_agrees(reference: &Verified, idx: EventIdx, rejected: bool) -> bool {
    let v = &reference.report.verdicts[&reference.dag.pdu(idx).event_id];
    let reference_rejected = v.verdict == "rejected";
    if rejected || !reference_rejected {
        return rejected == reference_rejected;
    }
    let cites_rejected = reference.dag.event(idx).auth.iter().any(|a| reference.dag.event(*a).is_rejected());
    v.stage == Some(Stage::StateBefore) || (v.stage == Some(Stage::AuthEvents) && cites_rejected)
}

#[cfg(test)]
mod tests {
    use crate::metrics::instrumented_world;
    use crate::scenario::parse_scenario;
    use crate::sim::log::LogWriter;
    use crate::sim::server::room::Plant;

    /// Three servers chatting in a v11 and a v12 room; the creator sets a topic in each.
    fn scenario(signatures: &str) -> String {
        scenario_with(signatures, "")
    }

    /// [`scenario`] with more `[[servers]]` entries.
    fn scenario_with(signatures: &str, more_servers: &str) -> String {
        format!(
            r#"
[scenario]
name = "plant"
end = "quiescence"
max_time = "2m"
quiet_period = "5s"

[defaults]
signatures = "{signatures}"
users = 2

[[servers]]
prefix = "hs"
count = 3
{more_servers}
[[rooms]]
name = "old"
version = "11"
creator = "@u0:hs1"
members = ["*"]

[[rooms]]
name = "new"
version = "12"
creator = "@u0:hs1"
members = ["*"]

[[timeline]]
at = "5s"
action = "topic"
room = "old"
user = "@u0:hs1"
text = "old topic"

[[timeline]]
at = "5s"
action = "topic"
room = "new"
user = "@u0:hs1"
text = "new topic"

[[workload]]
room = "old"
users = "*"
start = "2s"
stop = "15s"
messages_per_minute = 6

[[workload]]
room = "new"
users = "*"
start = "2s"
stop = "15s"
messages_per_minute = 6
"#
        )
    }

    /// Runs the scenario with `plant` on hs2's replicas (planted as soon as hs2 holds the
    /// rooms, before any topic is set); the invariant violations.
    fn violations(signatures: &str, plant: Option<Plant>) -> (Vec<String>, crate::sim::world::RunResult) {
        let sc = parse_scenario("plant.toml", &scenario(signatures), &[]).expect("valid scenario");
        let mut world = instrumented_world(&sc, 7, LogWriter::none());
        let hs2 = world.servers().position(|s| s.name == "hs2").expect("hs2");
        let mut planted = false;
        while world.step() {
            if planted {
                continue;
            }
            if world.nodes[hs2].as_server().expect("a homeserver").rooms.len() == 2 {
                assert!(world.now() < 5_000_000, "hs2 joined the rooms after the topics were set");
                let server = world.nodes[hs2].as_server_mut().expect("a homeserver");
                for room in server.rooms.values_mut() {
                    room.plant = plant;
                }
                planted = true;
            }
        }
        assert!(planted, "hs2 never held both rooms");
        let result = world.finish(true).expect("finish");
        (result.invariant_violations.clone(), result)
    }

    #[test]
    fn without_a_plant_there_is_no_violation() {
        for signatures in ["real", "modelled"] {
            assert_eq!(violations(signatures, None).0, Vec::<String>::new(), "signatures = {signatures}");
        }
    }

    #[test]
    fn a_server_that_rejects_topics_is_caught_naming_it_and_the_event() {
        let (found, result) = violations("real", Some(Plant::RejectType("m.room.topic")));
        for room in ["old", "new"] {
            let decided = found
                .iter()
                .find(|v| v.starts_with(&format!("room {room}: hs2 decided 1 events differently")))
                .unwrap_or_else(|| panic!("no verdict violation for room {room}: {found:?}"));
            // It names the event: the topic, rejected here, accepted by the reference.
            assert!(decided.contains("(rejected here, accepted by the reference judgement)"), "{decided}");
            let id = decided.split(", e.g. ").nth(1).and_then(|r| r.split(' ').next()).expect("an event ID");
            let pdu = result.rooms[room].iter().find(|p| p.event_id == id).expect("the named event is the room's");
            assert_eq!(pdu.event_type, "m.room.topic", "{decided}");
            let state = format!("room {room}: hs2's DAG resolves to state ");
            assert!(found.iter().any(|v| v.starts_with(&state)), "no state violation for room {room}: {found:?}");
        }
        // hs2 now also disagrees with the others on the state (invariant 1); every other
        // violation names hs2.
        let convergence = |v: &&String| v.contains("honest servers' DAGs resolve to 2 different states");
        assert_eq!(found.iter().filter(convergence).count(), 2, "{found:?}");
        assert!(found.iter().filter(|v| !convergence(v)).all(|v| v.contains(": hs2")), "only hs2 diverged: {found:?}");
    }

    /// The reference judgement sees what a keyless one cannot: events whose signature a
    /// byzantine server forged are rejected at stage `signature` (honest servers drop them, so
    /// they hold none of them and there is no violation).
    #[test]
    fn the_reference_judgement_checks_signatures_with_the_runs_keys() {
        use crate::protocol::room_version::V12;
        use crate::protocol::verify::{verify_dag, VerifyOptions};
        use crate::sim::observe::WorldView;
        let evil = "\n[[servers]]\nname = \"evil\"\nbyzantine = \"bad_signatures\"\nbyzantine_probability = 0.5\n";
        let sc = parse_scenario("plant.toml", &scenario_with("real", evil), &[]).expect("valid scenario");
        let mut world = instrumented_world(&sc, 7, LogWriter::none());
        world.run();
        let room_id = world.rooms()["new"].clone();
        let pdus = world.room_pdus(&room_id);
        let reference = super::reference_judgement(&world, &V12, &pdus, false);
        let forged: Vec<&String> = reference
            .report
            .verdicts
            .iter()
            .filter(|(_, v)| v.stage == Some(crate::protocol::dag::Stage::Signature))
            .map(|(id, _)| id)
            .collect();
        assert!(!forged.is_empty(), "no forged signature in the run");
        let keyless = verify_dag(&V12, pdus.iter().map(|p| (**p).clone()).collect(), &VerifyOptions::default());
        for id in &forged {
            assert_eq!(keyless.report.verdicts[*id].verdict, "accepted", "a keyless judgement cannot see {id}");
            let p = pdus.iter().find(|p| &p.event_id == *id).expect("in the room");
            assert!(p.sender.ends_with(":evil"), "only evil forges: {id} by {}", p.sender);
        }
        assert_eq!(world.finish(true).expect("finish").invariant_violations, Vec::<String>::new());
    }
}
