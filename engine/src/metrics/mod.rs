//! Consistency measures, as observers of the world ([`crate::sim::observe::Observer`]): they
//! learn from the simulation's events and query the world through its view; the world knows
//! nothing of them. [`observers`] lists the standard set; [`instrumented_world`] builds a world
//! measured by it.
//!
//! - [`RoomMeasures`]: agreement between servers over time, convergence, auth and soft-fail
//!   disagreements, event lag, the per-room part of `summary.json` and the `metrics.csv` rows;
//! - [`invariants::Invariants`]: the invariant checks of `--check-invariants`.

pub mod invariants;

use crate::scenario::{FaultKind, FaultSpec, Measure, Scenario};
use crate::sim::event::{SimEvent, Verdict};
use crate::sim::federation::ServerIdx;
use crate::sim::log::LogWriter;
pub use crate::sim::observe::MetricRow;
use crate::sim::observe::{Findings, Held, Observer, WorldView};
use crate::sim::time::{to_ms, SimTime};
use crate::sim::world::World;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The standard observers of a run.
pub fn observers(scenario: &Scenario) -> Vec<Box<dyn Observer>> {
    vec![Box::new(RoomMeasures::new(scenario)), Box::new(invariants::Invariants::new(scenario))]
}

/// A world for `scenario` measured by the standard observers.
pub fn instrumented_world(scenario: &Scenario, seed: u64, log: LogWriter) -> World {
    World::new(scenario, seed, log, observers(scenario))
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

/// The per-room measures of `summary.json` and the rows of `metrics.csv`.
pub struct RoomMeasures {
    measures: Vec<Measure>,
    faults: Vec<FaultSpec>,
    trackers: BTreeMap<String, RoomTracker>,
    /// Per room ID: event → verdict bits of honest servers (1 valid, 2 rejected), and the count
    /// of events with both.
    verdicts: BTreeMap<String, (crate::protocol::fasthash::FastMap<String, u8>, u64)>,
    last_fault_end: SimTime,
    rows: Vec<MetricRow>,
}

impl RoomMeasures {
    pub fn new(scenario: &Scenario) -> RoomMeasures {
        RoomMeasures {
            measures: scenario.metrics.measures.clone(),
            faults: scenario.faults.clone(),
            trackers: scenario.rooms.iter().map(|r| (r.name.clone(), RoomTracker::new(&r.name))).collect(),
            verdicts: BTreeMap::new(),
            last_fault_end: 0,
            rows: Vec::new(),
        }
    }

    fn wanted(&self, m: Measure) -> bool {
        self.measures.contains(&m)
    }

    /// Tracks, per room, events some honest server accepted and another rejected (sampled as
    /// `auth_disagreements` over time; must stay 0).
    fn note_decision(&mut self, room: &str, event: &str, decision: Verdict) {
        let bit = match decision {
            Verdict::Rejected => 2u8,
            Verdict::Accepted | Verdict::SoftFailed => 1u8,
            Verdict::Dropped => return,
        };
        let per_room = self.verdicts.entry(room.to_owned()).or_default();
        let flags = per_room.0.entry(event.to_owned()).or_insert(0);
        let before = *flags;
        *flags |= bit;
        if before != 3 && *flags == 3 {
            per_room.1 += 1;
        }
    }

    fn note_fault(&mut self, t: SimTime, i: usize, start: bool) {
        let Some(f) = self.faults.get(i) else { return };
        let heal_all = matches!(f.kind, FaultKind::HealAll);
        if !start || heal_all {
            self.last_fault_end = self.last_fault_end.max(t);
        }
        if start && f.duration_us.is_none() && !matches!(f.kind, FaultKind::HealAll | FaultKind::ClockSkew { .. }) {
            // A fault that never heals: convergence is measured from its start.
            self.last_fault_end = self.last_fault_end.max(t);
        }
    }

    fn digests(view: &mut dyn WorldView, members: &[ServerIdx], room_id: &str) -> Vec<String> {
        members.iter().filter_map(|k| view.replica_stats(*k, room_id).map(|s| s.current_digest)).collect()
    }
}

impl Observer for RoomMeasures {
    fn on_event(&mut self, t: SimTime, node: Option<ServerIdx>, event: &SimEvent, view: &dyn WorldView) {
        match event {
            SimEvent::Decision { event, decision, .. } => {
                let Some(k) = node else { return };
                if !view.is_honest(k) {
                    return;
                }
                if let Some(room) = view.room_of_event(event) {
                    let room = room.to_owned();
                    self.note_decision(&room, event, *decision);
                }
            }
            SimEvent::Fault { fault, start, .. } => self.note_fault(t, *fault, *start),
            _ => {}
        }
    }

    fn on_window(&mut self, t: SimTime, changed_rooms: &[String], view: &mut dyn WorldView) {
        let rooms: Vec<(String, String)> = view
            .rooms()
            .iter()
            .filter(|(_, id)| changed_rooms.binary_search(id).is_ok())
            .map(|(n, i)| (n.clone(), i.clone()))
            .collect();
        for (name, room_id) in rooms {
            let members = view.members(&room_id);
            let digests = Self::digests(view, &members, &room_id);
            if let Some(tr) = self.trackers.get_mut(&name) {
                tr.observe_agreement(t, &digests);
            }
        }
    }

    fn on_sample(&mut self, t: SimTime, view: &mut dyn WorldView) {
        let rooms: Vec<(String, String)> = view.rooms().iter().map(|(n, i)| (n.clone(), i.clone())).collect();
        for (name, room_id) in rooms {
            let members = view.members(&room_id);
            let created = view.room_pdu_count(&room_id) as i64;
            let mut digests = Vec::new();
            let mut per_server = Vec::new();
            for k in &members {
                let Some(r) = view.replica_stats(*k, &room_id) else { continue };
                let lag = (created - r.events as i64).max(0) as f64;
                digests.push(r.current_digest);
                per_server.push((
                    view.node_name(*k).to_owned(),
                    [
                        ("event_lag", lag),
                        ("forward_extremities", r.forward_extremities as f64),
                        ("dag_depth", r.max_depth as f64),
                        ("state_size", r.state_size as f64),
                        ("soft_failed", r.soft_failed as f64),
                        ("rejected", r.rejected as f64),
                    ],
                ));
            }
            let (distinct, largest) = agreement(&digests);
            let outside = if digests.is_empty() { 0.0 } else { 1.0 - largest as f64 / digests.len() as f64 };
            let disagreements = self.verdicts.get(&room_id).map_or(0, |v| v.1) as f64;
            if self.wanted(Measure::DistinctStates) {
                self.rows.push(MetricRow::room(t, &name, "distinct_states", distinct as f64));
            }
            if self.wanted(Measure::LargestAgreeingGroup) {
                self.rows.push(MetricRow::room(t, &name, "outside_largest_group_share", outside));
            }
            if self.wanted(Measure::AuthDisagreements) {
                self.rows.push(MetricRow::room(t, &name, "auth_disagreements", disagreements));
            }
            let (want_lag, want_fx) = (self.wanted(Measure::EventLag), self.wanted(Measure::ForwardExtremities));
            let tracker = self.trackers.get_mut(&name).expect("tracker per room");
            tracker.observe_agreement(t, &digests);
            for (server, measures) in per_server {
                for (m, v) in measures {
                    tracker.observe_server_measure(m, v);
                    if (m == "event_lag" && !want_lag) || (m == "forward_extremities" && !want_fx) {
                        continue;
                    }
                    self.rows.push(MetricRow::server(t, &server, &name, m, v));
                }
            }
        }
        for k in 0..view.node_count() as ServerIdx {
            self.rows.push(MetricRow::server(t, view.node_name(k), "", "deliveries", view.deliveries(k) as f64));
        }
    }

    fn finish(&mut self, view: &mut dyn WorldView, out: &mut Findings) {
        out.metrics.append(&mut self.rows);
        let rooms: Vec<(String, String)> = view.rooms().iter().map(|(n, i)| (n.clone(), i.clone())).collect();
        for (name, room_id) in rooms {
            let Some(tracker) = self.trackers.get(&name) else { continue };
            let summary = room_summary(view, &room_id, tracker, self.last_fault_end);
            let version = view.room_pdus(&room_id).first().and_then(|c| match &c.content {
                crate::protocol::pdu::TypedContent::Create(c) => c.room_version.clone(),
                _ => None,
            });
            let mut entry = summary;
            entry.insert("room_version".into(), json!(version));
            out.rooms.insert(name, entry);
        }
    }
}

/// Per-event verdicts of the honest servers holding a room: (auth disagreements, soft-fail
/// disagreements).
pub fn disagreements(view: &dyn WorldView, room_id: &str) -> (usize, usize) {
    let holders: Vec<ServerIdx> = view.holders(room_id).into_iter().filter(|k| view.is_honest(*k)).collect();
    let mut auth = 0;
    let mut soft = 0;
    for pdu in view.room_pdus(room_id) {
        let mut verdicts: BTreeSet<&str> = BTreeSet::new();
        let mut soft_failed: BTreeSet<bool> = BTreeSet::new();
        for k in &holders {
            match view.held(*k, room_id, &pdu.event_id) {
                Some(Held::Rejected) => {
                    verdicts.insert("rejected");
                }
                Some(Held::Accepted { soft_failed: s }) => {
                    verdicts.insert("valid");
                    soft_failed.insert(s);
                }
                None => {}
            }
        }
        auth += usize::from(verdicts.len() > 1);
        soft += usize::from(soft_failed.len() > 1);
    }
    (auth, soft)
}

/// The measured part of `summary.json`'s `rooms.<name>`.
fn room_summary(
    view: &mut dyn WorldView,
    room_id: &str,
    tracker: &RoomTracker,
    last_fault_end: SimTime,
) -> serde_json::Map<String, Value> {
    let members = view.members(room_id);
    let digests = RoomMeasures::digests(view, &members, room_id);
    let (distinct, largest) = agreement(&digests);
    let converged = distinct == 1;
    let convergence =
        if converged { tracker.agree_since.map(|t| to_ms(t.saturating_sub(last_fault_end))) } else { None };
    let (auth, soft) = disagreements(view, room_id);
    let dag_digests: Vec<String> = members.iter().filter_map(|k| view.dag_state_digest(*k, room_id)).collect();
    let (distinct_dag_states, _) = agreement(&dag_digests);
    let mut final_digests = serde_json::Map::new();
    for k in view.holders(room_id) {
        if let Some(s) = view.replica_stats(k, room_id) {
            final_digests.insert(view.node_name(k).to_owned(), json!(s.current_digest));
        }
    }
    let events = view.room_pdu_count(room_id);
    let v = json!({
        "events": events,
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
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("an object"),
    }
}
