//! Invariant checks (TigerBeetle style), run by tests and by `roomsim run --check-invariants`:
//! 1. once the last fault healed and the network is quiet, all honest servers in a room hold
//!    the same events and the same DAG state (the resolution over every forward extremity,
//!    soft-failed ones included). Their *current* states may still differ where they
//!    soft-failed differently — allowed by the protocol, and measured, not asserted;
//! 2. every honest server's accept/reject decision agrees with `dag verify` over the final
//!    union DAG (rejection is a deterministic function of the DAG).

use crate::protocol::pdu::Pdu;
use crate::protocol::room_version::RoomVersion;
use crate::protocol::verify::{verify_dag, VerifyOptions};
use crate::sim::federation::ServerIdx;
use crate::sim::server::Server;
use std::collections::BTreeSet;
use std::sync::Arc;

pub fn check_room(
    name: &str,
    pdus: &[Arc<Pdu>],
    servers: &[Server],
    members: &[ServerIdx],
    expect_convergence: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let Some(room_id) = pdus.first().map(|p| crate::sim::server::room_id_of(p)) else { return out };
    // A byzantine server can legitimately leave honest servers with different events (it sends
    // each a different twin, or withholds an event nobody builds on); convergence is only
    // asserted among honest-only rooms. Decisions must agree regardless.
    let byzantine_present = servers.iter().any(|s| !s.is_honest() && s.rooms.contains_key(&room_id));
    if expect_convergence && !byzantine_present {
        let replicas: Vec<_> = members.iter().filter_map(|k| servers[*k as usize].rooms.get(&room_id)).collect();
        let digests: BTreeSet<String> =
            replicas.iter().map(|r| crate::protocol::dag::state_digest(&r.dag, &r.dag_state())).collect();
        let event_counts: BTreeSet<usize> = replicas.iter().map(|r| r.dag.len()).collect();
        if event_counts.len() > 1 {
            out.push(format!("room {name}: honest servers hold different numbers of events ({event_counts:?}) after the faults healed and the network went quiet"));
        }
        if digests.len() > 1 {
            out.push(format!("room {name}: honest servers' DAGs resolve to {} different states after the faults healed and the network went quiet", digests.len()));
        }
    }
    let Some(version) = servers.iter().find_map(|s| s.rooms.get(&room_id)).map(|r| r.version) else { return out };
    out.extend(decisions_match_verify(name, &room_id, version, pdus, servers));
    out
}

fn decisions_match_verify(
    name: &str,
    room_id: &str,
    version: &'static RoomVersion,
    pdus: &[Arc<Pdu>],
    servers: &[Server],
) -> Vec<String> {
    let owned: Vec<Pdu> = pdus.iter().map(|p| (**p).clone()).collect();
    let verified = verify_dag(version, owned, &VerifyOptions::default());
    let mut out = Vec::new();
    for s in servers.iter().filter(|s| s.is_honest()) {
        let Some(r) = s.rooms.get(room_id) else { continue };
        let mut mismatches = Vec::new();
        for (_, e) in r.dag.events() {
            let Some(v) = verified.report.verdicts.get(&e.pdu.event_id) else { continue };
            let ours = if e.is_rejected() { "rejected" } else { "accepted" };
            if v.verdict != ours {
                mismatches.push(format!("{} ({} here, {} by dag verify)", e.pdu.event_id, ours, v.verdict));
            }
        }
        if !mismatches.is_empty() {
            out.push(format!(
                "room {name}: {} decided {} events differently from dag verify, e.g. {}",
                s.name,
                mismatches.len(),
                mismatches[0]
            ));
        }
    }
    out
}
