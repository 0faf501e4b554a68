//! [`RoomMeasures`]: agreement and membership of every room over the run, the `metrics.csv`
//! rows and the per-room part of `summary.json`. Definitions: `docs/outputs.md`, "Convergence"
//! and "Membership".
//!
//! Agreement is evaluated after every window in which some server handled an input (within a
//! window of length `network.min_latency` no server can affect another, so this is every
//! moment at which a server's state of a room can have changed, stamped at the window's last
//! microsecond), at every sample tick and at the end. The digests it compares are cheap to ask
//! for: a replica caches its current-state digest until its state changes, and the DAG-state
//! digest is cached here per replica, keyed by the replica's event count (a DAG only grows, and
//! its resolved state is a function of its events).

use super::agreement::{conclude, Conclusion, FaultWindow, Timeline};
use super::disagreements;
use super::membership::{intentions, JoinTrouble, UnionRoom};
use crate::protocol::fasthash::FastSet;
use crate::protocol::room_version::RoomVersion;
use crate::scenario::{FaultKind, FaultSpec, Measure, Scenario};
use crate::sim::event::{LoggedInput, SimEvent, Verdict};
use crate::sim::federation::ServerIdx;
use crate::sim::observe::{Findings, MetricRow, Observer, WorldView};
use crate::sim::server::routing::default_server_of;
use crate::sim::time::{to_ms, SimTime};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// `(number of distinct states, size of the largest agreeing group)`.
pub fn agreement(digests: &[String]) -> (usize, usize) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for d in digests {
        *counts.entry(d).or_default() += 1;
    }
    (counts.len(), counts.values().copied().max().unwrap_or(0))
}

/// Running observations of one room.
struct RoomTrack {
    version: &'static RoomVersion,
    union: Option<UnionRoom>,
    timeline: Timeline,
    /// Events of the union some honest server holds (its own, or one it judged): the events
    /// that can reach every server. One only a byzantine server holds may never arrive.
    reachable: FastSet<String>,
    /// MSC4345: server key → the domain its participation claims (from the union's events).
    key_domains: BTreeMap<String, String>,
    max_event_lag: f64,
    max_forward_extremities: f64,
    /// Servers with a user joined by the union DAG's membership, and the honest ones.
    in_room: BTreeSet<ServerIdx>,
    honest_in_room: BTreeSet<ServerIdx>,
    /// The union's membership generation and the name index's size `in_room` was derived
    /// from (None: not yet).
    in_room_from: Option<(u64, usize)>,
    /// Per server of the room holding a replica: its digests as last read.
    replicas: BTreeMap<ServerIdx, Digests>,
    /// Honest servers of the room holding a replica, per (current digest, DAG digest).
    pairs: BTreeMap<(String, String), usize>,
}

/// A replica's digests as last read; the DAG state is kept to skip digesting an unchanged one.
struct Digests {
    events: usize,
    dag_state: crate::protocol::dag::StateMap,
    dag: String,
    current: String,
}

impl RoomTrack {
    fn pair_of(&self, k: ServerIdx) -> Option<(String, String)> {
        self.replicas.get(&k).map(|d| (d.current.clone(), d.dag.clone()))
    }

    fn count(&mut self, pair: Option<(String, String)>, delta: isize) {
        let Some(pair) = pair else { return };
        let n = self.pairs.entry(pair.clone()).or_default();
        *n = n.checked_add_signed(delta).expect("counted before");
        if *n == 0 {
            self.pairs.remove(&pair);
        }
    }

    /// Reads replica `k` again (digesting its DAG state only when its events changed and the
    /// state they resolve to did too).
    fn refresh(&mut self, k: ServerIdx, room_id: &str, view: &mut dyn WorldView) {
        let counted = self.honest_in_room.contains(&k);
        let before = if counted { self.pair_of(k) } else { None };
        match view.replica_stats(k, room_id) {
            None => {
                self.replicas.remove(&k);
            }
            Some(stats) => {
                if let Some(d) = self.replicas.get_mut(&k).filter(|d| d.events == stats.events) {
                    d.current = stats.current_digest;
                } else if let Some(state) = view.dag_state(k, room_id) {
                    let dag = match self.replicas.get(&k) {
                        Some(d) if d.dag_state.ptr_eq(&state) || d.dag_state == state => d.dag.clone(),
                        _ => view.replica_state_digest(k, room_id, &state).unwrap_or_default(),
                    };
                    self.replicas.insert(
                        k,
                        Digests { events: stats.events, dag_state: state, dag, current: stats.current_digest },
                    );
                }
            }
        }
        if counted {
            let after = self.pair_of(k);
            if before != after {
                self.count(before, -1);
                self.count(after, 1);
            }
        }
    }

    /// Counts the honest servers of the room again (after the membership changed).
    fn recount(&mut self) {
        self.pairs.clear();
        let honest: Vec<ServerIdx> = self.honest_in_room.iter().copied().collect();
        for k in honest {
            let p = self.pair_of(k);
            self.count(p, 1);
        }
    }

    /// Agreement now: no server expected (everyone left), or every honest server of the room
    /// holds a replica and they share one (current, DAG) digest pair. A room whose servers are
    /// all byzantine has no honest view to agree on.
    fn agreed(&self) -> bool {
        if self.in_room.is_empty() {
            return true;
        }
        let holding: usize = self.pairs.values().sum();
        !self.honest_in_room.is_empty() && holding == self.honest_in_room.len() && self.pairs.len() == 1
    }
}

/// The room at one evaluation.
struct Snapshot {
    /// Servers with a user joined by the union DAG's membership (byzantine ones included).
    in_room: BTreeSet<ServerIdx>,
    /// `in_room` plus the servers of the users the scenario means to be joined.
    expected: BTreeSet<ServerIdx>,
    agreed: bool,
    /// Current-state digests of the servers in the room holding a replica.
    current: Vec<(ServerIdx, String)>,
    dag: Vec<String>,
}

/// The per-room measures of `summary.json` and the rows of `metrics.csv`.
pub struct RoomMeasures {
    measures: Vec<Measure>,
    faults: Vec<FaultSpec>,
    rooms: BTreeMap<String, RoomTrack>,
    /// Room name → users the scenario means to be joined at the end.
    intended: BTreeMap<String, BTreeSet<String>>,
    /// Per room: accounts of portable-account rooms moved by the scenario, and where to.
    moved: BTreeMap<String, BTreeMap<String, String>>,
    /// Per room ID: event → verdict bits of honest servers (1 valid, 2 rejected), and the count
    /// of events with both.
    verdicts: BTreeMap<String, (crate::protocol::fasthash::FastMap<String, u8>, u64)>,
    /// Faults as they happened, in order of start.
    fault_windows: Vec<FaultWindow>,
    trouble: JoinTrouble,
    /// Server name → node index (filled on first use).
    index: BTreeMap<String, ServerIdx>,
    rows: Vec<MetricRow>,
    /// The last sample's time and where its rows begin (a second sample at the same time
    /// replaces it: the final sample is written once).
    last_sample: Option<(SimTime, usize)>,
    /// Agreement evaluations made (for the cost measurement in `BENCHMARKS.md`).
    pub evaluations: u64,
}

impl RoomMeasures {
    pub fn new(scenario: &Scenario) -> RoomMeasures {
        let rooms = scenario
            .rooms
            .iter()
            .map(|r| {
                let track = RoomTrack {
                    version: r.version.rules(),
                    union: None,
                    timeline: Timeline::default(),
                    reachable: FastSet::default(),
                    key_domains: BTreeMap::new(),
                    max_event_lag: 0.0,
                    max_forward_extremities: 0.0,
                    in_room: BTreeSet::new(),
                    honest_in_room: BTreeSet::new(),
                    in_room_from: None,
                    replicas: BTreeMap::new(),
                    pairs: BTreeMap::new(),
                };
                (r.name.clone(), track)
            })
            .collect();
        RoomMeasures {
            measures: scenario.metrics.measures.clone(),
            faults: scenario.faults.clone(),
            rooms,
            intended: intentions(scenario),
            moved: super::membership::moved_to(scenario),
            verdicts: BTreeMap::new(),
            fault_windows: Vec::new(),
            trouble: JoinTrouble::default(),
            index: BTreeMap::new(),
            rows: Vec::new(),
            last_sample: None,
            evaluations: 0,
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
            // An outlier's verdict is not a timeline verdict (it may be judged again as one).
            Verdict::Dropped | Verdict::Outlier => return,
        };
        let per_room = self.verdicts.entry(room.to_owned()).or_default();
        let flags = per_room.0.entry(event.to_owned()).or_insert(0);
        let before = *flags;
        *flags |= bit;
        if before != 3 && *flags == 3 {
            per_room.1 += 1;
        }
    }

    /// A fault started or ended: the windows `time_to_agreement_ms` and the episodes read.
    fn note_fault(&mut self, t: SimTime, i: usize, start: bool) {
        let Some(f) = self.faults.get(i) else { return };
        let moment = match f.kind {
            FaultKind::RotateKey { .. } => Some("rotate_key"),
            FaultKind::EraseAccount { .. } => Some("erase_account"),
            FaultKind::ReregisterAccount { .. } => Some("reregister_account"),
            FaultKind::RotatePepper { .. } => Some("rotate_pepper"),
            FaultKind::RevokeIdentityKey { .. } => Some("revoke_identity_key"),
            _ => None,
        };
        if let Some(kind) = moment {
            // A moment, not a window: nothing is cut (what it costs shows in the keys and
            // account-keys counts).
            self.fault_windows.push(FaultWindow { index: i, kind, start_us: t, end_us: Some(t), disruption: false });
            return;
        }
        if matches!(f.kind, FaultKind::HealAll) {
            // Ends every partition, degrade and crash in force.
            for w in self.fault_windows.iter_mut().filter(|w| w.end_us.is_none() && w.kind != "clock_skew") {
                w.end_us = Some(t);
            }
            self.fault_windows.push(FaultWindow {
                index: i,
                kind: "heal_all",
                start_us: t,
                end_us: Some(t),
                disruption: false,
            });
            return;
        }
        if start {
            let (kind, disruption) = match &f.kind {
                FaultKind::Partition { .. } => ("partition", true),
                FaultKind::Crash { .. } => ("crash", true),
                FaultKind::Degrade { loss, .. } => ("degrade", loss.is_some_and(|l| l > 0.0)),
                FaultKind::ClockSkew { .. } => ("clock_skew", false),
                FaultKind::HealAll
                | FaultKind::RotateKey { .. }
                | FaultKind::EraseAccount { .. }
                | FaultKind::ReregisterAccount { .. }
                | FaultKind::RotatePepper { .. }
                | FaultKind::RevokeIdentityKey { .. } => unreachable!("handled above"),
            };
            self.fault_windows.push(FaultWindow { index: i, kind, start_us: t, end_us: None, disruption });
        } else if let Some(w) = self.fault_windows.iter_mut().rev().find(|w| w.index == i && w.end_us.is_none()) {
            w.end_us = Some(t);
        }
    }

    /// Server name → node index.
    fn server_index(&mut self, view: &dyn WorldView) -> &BTreeMap<String, ServerIdx> {
        if self.index.len() != view.node_count() {
            self.index = (0..view.node_count() as ServerIdx).map(|k| (view.node_name(k).to_owned(), k)).collect();
        }
        &self.index
    }

    /// Evaluates a room's membership and agreement now, reading again the replicas of
    /// `changed` (None: of every server in the room), and records the agreement at `t`. Returns
    /// false for a room not tracked.
    fn evaluate(
        &mut self,
        t: SimTime,
        name: &str,
        room_id: &str,
        changed: Option<&[ServerIdx]>,
        view: &mut dyn WorldView,
    ) -> bool {
        self.evaluations += 1;
        self.server_index(view);
        let RoomMeasures { rooms, index, .. } = self;
        let Some(track) = rooms.get_mut(name) else { return false };
        let union = track.union.get_or_insert_with(|| UnionRoom::new(room_id, track.version));
        let new = view.room_pdus_since(room_id, union.taken);
        for pdu in &new {
            // MSC4348: the creating server is the co-signer's (found by the node that holds
            // the key in its participation claim; honest servers claim their own names).
            if let (Some(k), crate::protocol::pdu::TypedContent::Participation(c)) = (&pdu.state_key, &pdu.content) {
                if let Some(d) = &c.unverified_domain {
                    track.key_domains.entry(k.clone()).or_insert_with(|| d.clone());
                }
            }
            let creator = if track.version.portable_accounts {
                crate::protocol::signers::acting_server(track.version, pdu)
                    .and_then(|key| track.key_domains.get(key))
                    .and_then(|s| index.get(s).copied())
            } else {
                default_server_of(&pdu.sender).and_then(|s| index.get(s).copied())
            };
            if creator.is_some_and(|k| view.is_honest(k)) {
                track.reachable.insert(pdu.event_id.clone());
            }
        }
        union.take(new);
        // The servers in the room are a function of the union's joined users and bindings
        // (and of the name index): recomputed only when those were (most windows add
        // messages, which leave the membership as it was).
        union.joined_users();
        let derived_from = (union.generation, index.len());
        let mut membership_changed = false;
        if track.in_room_from != Some(derived_from) {
            track.in_room_from = Some(derived_from);
            let in_room = union.joined_servers(index);
            membership_changed = in_room != track.in_room;
            if membership_changed {
                track.honest_in_room = in_room.iter().copied().filter(|k| view.is_honest(*k)).collect();
                track.in_room = in_room;
            }
        }
        match changed {
            Some(servers) if !membership_changed => {
                for &k in servers {
                    if track.in_room.contains(&k) {
                        track.refresh(k, room_id, view);
                    }
                }
            }
            _ => {
                let all: Vec<ServerIdx> = track.in_room.iter().copied().collect();
                for k in all {
                    track.refresh(k, room_id, view);
                }
                track.replicas.retain(|k, _| track.in_room.contains(k));
                track.recount();
            }
        }
        let agreed = track.agreed();
        track.timeline.observe(t, agreed);
        true
    }

    /// The room as last evaluated (what samples and the summary read; the per-window
    /// evaluation does not need it).
    fn snapshot(&self, name: &str) -> Option<Snapshot> {
        let track = self.rooms.get(name)?;
        let mut expected = track.in_room.clone();
        if let Some(users) = self.intended.get(name) {
            expected.extend(super::membership::intended_servers(users, self.moved.get(name), &self.index));
        }
        let current = track.replicas.iter().map(|(k, d)| (*k, d.current.clone())).collect();
        let dag = track.replicas.values().map(|d| d.dag.clone()).collect();
        Some(Snapshot { in_room: track.in_room.clone(), expected, agreed: track.agreed(), current, dag })
    }

    /// Every created room of the view: (name, room ID).
    fn created_rooms(view: &dyn WorldView) -> Vec<(String, String)> {
        view.rooms().iter().map(|(n, i)| (n.clone(), i.clone())).collect()
    }

    fn push_room(&mut self, t: SimTime, room: &str, m: Measure, v: f64) {
        if self.wanted(m) {
            self.rows.push(MetricRow::room(t, room, m.name(), v));
        }
    }

    fn push_server(&mut self, t: SimTime, server: &str, room: &str, m: Measure, v: f64) {
        if self.wanted(m) {
            self.rows.push(MetricRow::server(t, server, room, m.name(), v));
        }
    }

    fn sample_room(&mut self, t: SimTime, name: &str, room_id: &str, view: &mut dyn WorldView) {
        if !self.evaluate(t, name, room_id, None, view) {
            return;
        }
        let Some(snap) = self.snapshot(name) else { return };
        let digests: Vec<String> = snap.current.iter().map(|c| c.1.clone()).collect();
        let (distinct, largest) = agreement(&digests);
        let disagreements = self.verdicts.get(room_id).map_or(0, |v| v.1) as f64;
        self.push_room(t, name, Measure::DistinctStates, distinct as f64);
        self.push_room(t, name, Measure::LargestAgreeingGroup, largest as f64);
        self.push_room(t, name, Measure::Agreement, f64::from(u8::from(snap.agreed)));
        self.push_room(t, name, Measure::ServersInRoom, snap.in_room.len() as f64);
        self.push_room(t, name, Measure::ServersExpected, snap.expected.len() as f64);
        self.push_room(t, name, Measure::AuthDisagreements, disagreements);
        let reachable = self.rooms[name].reachable.len() as f64;
        for (k, _) in &snap.current {
            let Some(r) = view.replica_stats(*k, room_id) else { continue };
            let server = view.node_name(*k).to_owned();
            let track = self.rooms.get_mut(name).expect("room tracked");
            track.max_forward_extremities = track.max_forward_extremities.max(r.forward_extremities as f64);
            if view.is_honest(*k) {
                // Everything an honest server holds is reachable (it judged it or made it).
                let lag = reachable - r.events as f64;
                track.max_event_lag = track.max_event_lag.max(lag);
                self.push_server(t, &server, name, Measure::EventLag, lag);
            }
            self.push_server(t, &server, name, Measure::ForwardExtremities, r.forward_extremities as f64);
            self.push_server(t, &server, name, Measure::DagDepth, r.max_depth as f64);
            self.push_server(t, &server, name, Measure::StateSize, r.state_size as f64);
            self.push_server(t, &server, name, Measure::SoftFailed, r.soft_failed as f64);
            self.push_server(t, &server, name, Measure::Rejected, r.rejected as f64);
        }
    }

    /// The measured part of `summary.json`'s `rooms.<name>`.
    fn room_summary(&mut self, name: &str, room_id: &str, view: &mut dyn WorldView) -> Map<String, Value> {
        let t = view.now();
        assert!(self.evaluate(t, name, room_id, None, view), "room tracked");
        let snap = self.snapshot(name).expect("room tracked");
        let names = |set: &BTreeSet<ServerIdx>, view: &dyn WorldView| -> Vec<String> {
            set.iter()
                .map(|k| {
                    let n = view.node_name(*k);
                    if view.is_honest(*k) {
                        n.to_owned()
                    } else {
                        format!("{n} (byzantine)")
                    }
                })
                .collect()
        };
        let digests: Vec<String> = snap.current.iter().map(|c| c.1.clone()).collect();
        let (distinct, largest) = agreement(&digests);
        let (distinct_dag_states, _) = agreement(&snap.dag);
        let (auth, soft) = disagreements(view, room_id);
        let mut final_digests = Map::new();
        for k in view.holders(room_id) {
            if let Some(s) = view.replica_stats(k, room_id) {
                final_digests.insert(view.node_name(k).to_owned(), json!(s.current_digest));
            }
        }
        let byzantine = snap.in_room.iter().filter(|k| !view.is_honest(**k)).count();
        let missing = self.members_missing(name, view);
        let reachable = self.rooms[name].reachable.len();
        let mut events_missing = 0usize;
        for (k, _) in &snap.current {
            if view.is_honest(*k) {
                if let Some(r) = view.replica_stats(*k, room_id) {
                    events_missing += reachable.saturating_sub(r.events);
                }
            }
        }
        let track = &self.rooms[name];
        let c = conclude(&track.timeline, &self.fault_windows, t);
        let mut m = Map::new();
        for (k, v) in [
            ("events", json!(view.room_pdu_count(room_id))),
            ("servers_expected", json!(snap.expected.len())),
            ("servers_in_room", json!(snap.in_room.len())),
            ("byzantine_in_room", json!(byzantine)),
            ("in_room", json!(names(&snap.in_room, view))),
            ("members_missing", json!(missing)),
            ("joins_failed", json!(self.trouble.joins_failed)),
            ("distinct_final_states", json!(distinct)),
            ("distinct_dag_states", json!(distinct_dag_states)),
            ("largest_agreeing_group", json!(largest)),
            ("auth_disagreements", json!(auth)),
            ("soft_fail_disagreements", json!(soft)),
            ("max_event_lag", json!(track.max_event_lag)),
            ("events_missing_at_end", json!(events_missing)),
            ("max_forward_extremities", json!(track.max_forward_extremities)),
            ("final_state_digests", Value::Object(final_digests)),
        ] {
            m.insert(k.into(), v);
        }
        m.extend(self.convergence_fields(&c));
        m
    }

    /// `agreed_at_end`, `agreement_reached_ms`, `time_to_agreement_ms` and the episodes.
    fn convergence_fields(&self, c: &Conclusion) -> Map<String, Value> {
        // In whole ms, episode by episode, so that the total is the sum of the listed lengths.
        let diverged_ms: u64 = c.episodes.iter().map(|e| to_ms(e.end_us.unwrap_or(c.end_us)) - to_ms(e.start_us)).sum();
        let kind_of = |i: usize| self.fault_windows.iter().find(|w| w.index == i).map_or("?", |w| w.kind);
        let episodes: Vec<Value> = c
            .episodes
            .iter()
            .map(|e| {
                let faults: Vec<Value> = e.faults.iter().map(|i| json!({"index": i, "kind": kind_of(*i)})).collect();
                json!({
                    "start_ms": to_ms(e.start_us),
                    "end_ms": e.end_us.map(to_ms),
                    "length_ms": e.end_us.map(|end| to_ms(end) - to_ms(e.start_us)),
                    "faults": faults,
                })
            })
            .collect();
        let from = match (c.measured_from_fault, c.agreement_reached_us) {
            (Some(i), _) => {
                let end = self.fault_windows.iter().find(|w| w.index == i).and_then(|w| w.end_us).map_or(0, to_ms);
                json!(format!("end of fault {i} ({}) at {end} ms", kind_of(i)))
            }
            (None, Some(_)) => json!("start of the run (no disruption ended before the agreement)"),
            (None, None) => Value::Null,
        };
        let mut m = Map::new();
        for (k, v) in [
            ("agreed_at_end", json!(c.agreed_at_end)),
            ("agreement_reached_ms", json!(c.agreement_reached_us.map(to_ms))),
            ("time_to_agreement_ms", json!(c.time_to_agreement_us.map(to_ms))),
            ("time_to_agreement_from", from),
            ("time_to_agreement_note", json!(c.why_no_time)),
            ("divergence_episodes", json!(c.episodes.len())),
            ("diverged_ms_total", json!(diverged_ms)),
            ("episodes", Value::Array(episodes)),
        ] {
            // Text fields are left out rather than null: a null in summary.json means "a number
            // that does not exist in this run" (e.g. no time to agreement), which the analysis
            // counts; a missing sentence is not one.
            let text_field = matches!(k, "time_to_agreement_from" | "time_to_agreement_note");
            if !(text_field && v.is_null()) {
                m.insert(k.into(), v);
            }
        }
        m
    }

    /// Users the scenario means to be joined who are not, by the union DAG, with why.
    fn members_missing(&mut self, name: &str, view: &dyn WorldView) -> Vec<Value> {
        let Some(users) = self.intended.get(name).cloned() else { return Vec::new() };
        let Some(union) = self.rooms.get_mut(name).and_then(|t| t.union.as_mut()) else { return Vec::new() };
        let joined = union.joined_users().clone();
        let union = &self.rooms[name].union.as_ref().expect("just used");
        // In an account-key room (MSC4243) an account is in the room under one of its keys;
        // its latest key with a membership speaks for it.
        let in_room = |u: &str| -> String {
            let ids = view.account_user_ids(name, u);
            ids.iter().rev().find(|id| union.membership_event(id).is_some()).cloned().unwrap_or_else(|| u.to_owned())
        };
        users
            .iter()
            .filter(|u| {
                let ids = view.account_user_ids(name, u);
                !joined.contains(*u) && !ids.iter().any(|id| joined.contains(id))
            })
            .map(|u| json!({"user": u, "why": self.trouble.why_missing(name, &in_room(u), union)}))
            .collect()
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
                    if *decision != Verdict::Dropped {
                        if let Some(track) =
                            view.rooms().iter().find(|(_, id)| **id == room).and_then(|(n, _)| self.rooms.get_mut(n))
                        {
                            track.reachable.insert(event.clone());
                        }
                    }
                    self.note_decision(&room, event, *decision);
                }
            }
            SimEvent::Fault { fault, start, .. } => self.note_fault(t, *fault, *start),
            SimEvent::Action { action, user, room, event, refused, .. } if action == "join" => {
                // A join a server makes by itself (after a third-party invite) names the room
                // by ID: the server does not know the scenario's names.
                let name = view.rooms().iter().find(|(_, id)| *id == room).map_or(room.as_str(), |(n, _)| n.as_str());
                self.trouble.action(name, user, event.as_deref(), refused.as_deref());
            }
            SimEvent::JoinFailed { user, room, reason, .. } => {
                if let Some((name, _)) = view.rooms().iter().find(|(_, id)| *id == room) {
                    self.trouble.join_failed(name, user, reason);
                }
            }
            SimEvent::Blocked { reason, input: LoggedInput::Action(a) }
                if a.kind == crate::scenario::ActionKind::Join =>
            {
                self.trouble.blocked(&a.room_name, &a.user, reason);
            }
            _ => {}
        }
    }

    fn on_window(&mut self, t: SimTime, changed: &[(String, Vec<ServerIdx>)], view: &mut dyn WorldView) {
        for (name, room_id) in Self::created_rooms(view) {
            if let Ok(i) = changed.binary_search_by(|c| c.0.as_str().cmp(&room_id)) {
                self.evaluate(t, &name, &room_id, Some(&changed[i].1), view);
            }
        }
    }

    fn on_sample(&mut self, t: SimTime, view: &mut dyn WorldView) {
        match self.last_sample {
            Some((last, start)) if last == t => self.rows.truncate(start),
            _ => self.last_sample = Some((t, self.rows.len())),
        }
        for (name, room_id) in Self::created_rooms(view) {
            self.sample_room(t, &name, &room_id, view);
        }
        for k in 0..view.node_count() as ServerIdx {
            self.push_server(t, &view.node_name(k).to_owned(), "", Measure::Deliveries, view.deliveries(k) as f64);
        }
    }

    fn finish(&mut self, view: &mut dyn WorldView, out: &mut Findings) {
        out.metrics.append(&mut self.rows);
        for (name, room_id) in Self::created_rooms(view) {
            if !self.rooms.contains_key(&name) {
                continue;
            }
            let mut entry = self.room_summary(&name, &room_id, view);
            let version = view.room_pdus_since(&room_id, 0).first().and_then(|c| match &c.content {
                crate::protocol::pdu::TypedContent::Create(c) => c.room_version.clone(),
                _ => None,
            });
            entry.insert("room_version".into(), json!(version));
            out.rooms.insert(name, entry);
        }
    }
}
