//! Invariant checks (TigerBeetle style), run by tests and by `roomsim run --check-invariants`,
//! as an observer of the world's end:
//! 1. once the last fault healed and the network is quiet, all honest servers in a room hold
//!    the same events and the same DAG state (the resolution over every forward extremity,
//!    soft-failed ones included). Their *current* states may still differ where they
//!    soft-failed differently — allowed by the protocol, and measured, not asserted;
//! 2. every honest server's accept/reject decision agrees with `dag verify` over the final
//!    union DAG (rejection is a deterministic function of the DAG).

use crate::protocol::pdu::{Pdu, TypedContent};
use crate::protocol::room_version::RoomVersion;
use crate::protocol::verify::{verify_dag, VerifyOptions};
use crate::scenario::{FaultKind, Scenario};
use crate::sim::federation::ServerIdx;
use crate::sim::observe::{Findings, Held, Observer, WorldView};
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct Invariants {
    /// Every fault of the scenario heals (so convergence is expected once the run is quiet).
    faults_heal: bool,
}

impl Invariants {
    pub fn new(scenario: &Scenario) -> Invariants {
        Invariants {
            faults_heal: scenario
                .faults
                .iter()
                .all(|f| f.duration_us.is_some() || matches!(f.kind, FaultKind::HealAll | FaultKind::ClockSkew { .. })),
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
            out.violations.extend(check_room(view, &name, &room_id, &pdus, quiet && self.faults_heal));
        }
    }
}

pub fn check_room(
    view: &dyn WorldView,
    name: &str,
    room_id: &str,
    pdus: &[Arc<Pdu>],
    expect_convergence: bool,
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
        let event_counts: BTreeSet<usize> = members.iter().map(|k| view.replica_events(*k, room_id).len()).collect();
        if event_counts.len() > 1 {
            out.push(format!("room {name}: honest servers hold different numbers of events ({event_counts:?}) after the faults healed and the network went quiet"));
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
    out.extend(decisions_match_verify(view, name, room_id, version, pdus, &honest));
    out
}

fn decisions_match_verify(
    view: &dyn WorldView,
    name: &str,
    room_id: &str,
    version: &'static RoomVersion,
    pdus: &[Arc<Pdu>],
    honest: &[ServerIdx],
) -> Vec<String> {
    let owned: Vec<Pdu> = pdus.iter().map(|p| (**p).clone()).collect();
    let verified = verify_dag(version, owned, &VerifyOptions::default());
    let mut out = Vec::new();
    for k in honest {
        let mut mismatches = Vec::new();
        for (id, held) in view.replica_events(*k, room_id) {
            let Some(v) = verified.report.verdicts.get(&id) else { continue };
            let ours = if held == Held::Rejected { "rejected" } else { "accepted" };
            if v.verdict != ours {
                mismatches.push(format!("{id} ({ours} here, {} by dag verify)", v.verdict));
            }
        }
        if !mismatches.is_empty() {
            out.push(format!(
                "room {name}: {} decided {} events differently from dag verify, e.g. {}",
                view.node_name(*k),
                mismatches.len(),
                mismatches[0]
            ));
        }
    }
    out
}
