//! Consistency measures: observers of the world that sample agreement between servers, and the
//! per-room summary of a finished run (`summary.json`).

pub mod invariants;

use crate::protocol::pdu::Pdu;
use crate::scenario::RoomSpec;
use crate::sim::federation::ServerIdx;
use crate::sim::server::Server;
use crate::sim::time::{to_ms, SimTime};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    pub time_ms: u64,
    /// Empty for room-wide measures.
    pub server: String,
    /// Empty for server-wide measures.
    pub room: String,
    pub measure: String,
    pub value: f64,
}

impl MetricRow {
    pub fn room(t: SimTime, room: &str, measure: &str, value: f64) -> MetricRow {
        MetricRow {
            time_ms: to_ms(t),
            server: String::new(),
            room: room.to_owned(),
            measure: measure.to_owned(),
            value,
        }
    }
    /// CSV line (no header); numbers printed shortest-exact, so output is byte-stable.
    pub fn to_csv(&self) -> String {
        format!("{},{},{},{},{}", self.time_ms, self.server, self.room, self.measure, self.value)
    }
}

/// `(number of distinct states, size of the largest agreeing group)`.
pub fn agreement(digests: &[String]) -> (usize, usize) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in digests {
        *counts.entry(d).or_default() += 1;
    }
    (counts.len(), counts.values().copied().max().unwrap_or(0))
}

/// Running observations of one room.
#[derive(Debug, Clone)]
pub struct RoomTracker {
    pub name: String,
    /// Since when every honest server in the room holds the same state (None: they disagree).
    pub agree_since: Option<SimTime>,
    pub max_event_lag: f64,
    pub max_forward_extremities: f64,
}

impl RoomTracker {
    pub fn new(name: &str) -> RoomTracker {
        RoomTracker { name: name.to_owned(), agree_since: None, max_event_lag: 0.0, max_forward_extremities: 0.0 }
    }
    pub fn observe_agreement(&mut self, now: SimTime, digests: &[String]) {
        let (distinct, _) = agreement(digests);
        if distinct <= 1 {
            self.agree_since.get_or_insert(now);
        } else {
            self.agree_since = None;
        }
    }
    pub fn observe_server_measure(&mut self, measure: &str, value: f64) {
        match measure {
            "event_lag" => self.max_event_lag = self.max_event_lag.max(value),
            "forward_extremities" => self.max_forward_extremities = self.max_forward_extremities.max(value),
            _ => {}
        }
    }
}

/// Per-event verdicts of the servers holding a room: (auth disagreements, soft-fail disagreements).
pub fn disagreements(pdus: &[Arc<Pdu>], servers: &[Server], room_id: &str) -> (usize, usize) {
    let mut auth = 0;
    let mut soft = 0;
    for pdu in pdus {
        let mut verdicts: BTreeSet<&str> = BTreeSet::new();
        let mut soft_failed: BTreeSet<bool> = BTreeSet::new();
        for s in servers.iter().filter(|s| s.is_honest()) {
            let Some(r) = s.rooms.get(room_id) else { continue };
            let Some(i) = r.dag.index_of(&pdu.event_id) else { continue };
            if r.dag.event(i).is_rejected() {
                verdicts.insert("rejected");
            } else {
                verdicts.insert("valid");
                soft_failed.insert(r.is_soft_failed(i));
            }
        }
        auth += usize::from(verdicts.len() > 1);
        soft += usize::from(soft_failed.len() > 1);
    }
    (auth, soft)
}

/// The `rooms.<name>` object of `summary.json`.
pub fn room_summary(
    spec: &RoomSpec,
    room_id: &str,
    pdus: &[Arc<Pdu>],
    servers: &mut [Server],
    members: &[ServerIdx],
    tracker: &RoomTracker,
    last_fault_end: SimTime,
) -> Value {
    let digests: Vec<String> =
        members.iter().map(|k| servers[*k as usize].rooms.get_mut(room_id).expect("member").current_digest()).collect();
    let (distinct, largest) = agreement(&digests);
    let converged = distinct == 1;
    let convergence =
        if converged { tracker.agree_since.map(|t| to_ms(t.saturating_sub(last_fault_end))) } else { None };
    let (auth, soft) = disagreements(pdus, servers, room_id);
    let dag_digests: Vec<String> = members
        .iter()
        .map(|k| {
            let r = &servers[*k as usize].rooms[room_id];
            crate::protocol::dag::state_digest(&r.dag, &r.dag_state())
        })
        .collect();
    let (distinct_dag_states, _) = agreement(&dag_digests);
    let mut final_digests = serde_json::Map::new();
    for s in servers.iter_mut() {
        let name = s.name.clone();
        if let Some(r) = s.rooms.get_mut(room_id) {
            final_digests.insert(name, json!(r.current_digest()));
        }
    }
    json!({
        "room_id": room_id,
        "room_version": spec.version.as_str(),
        "events": pdus.len(),
        "servers_in_room": members.len(),
        "distinct_final_states": distinct,
        "distinct_dag_states": distinct_dag_states,
        "largest_agreeing_group": largest,
        "converged": converged,
        "convergence_time_ms": convergence,
        "auth_disagreements": auth,
        "soft_fail_disagreements": soft,
        "max_event_lag": tracker.max_event_lag,
        "max_forward_extremities": tracker.max_forward_extremities,
        "final_state_digests": final_digests,
    })
}
