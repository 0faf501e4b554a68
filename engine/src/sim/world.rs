//! The world: servers, network, scheduler and log. Conservative parallel discrete-event
//! simulation: every message takes at least the network's minimum latency L, so within a window
//! [t, t+L) no server can affect another; each server's inputs of the window are handled in
//! parallel (rayon) and what they emit is merged in a fixed order (server index, then emission
//! order). Results are identical on 1 or N threads.

use super::federation::{Message, PduStore, ServerIdx};
use super::log::LogWriter;
use super::network::{Degrade, Middleboxed, Network, Route};
use super::rng::RngStreams;
use super::server::{ClientAction, Directory, Input, Output, Server, Timer, KEY_ID};
use super::time::{to_ms, SimTime};
use crate::metrics::{MetricRow, RoomTracker};
use crate::protocol::crypto::KeyPair;
use crate::protocol::pdu::Pdu;
use crate::scenario::{ActionKind, EndCondition, FaultKind, Measure, Scenario};
use rand::Rng;
use rayon::prelude::*;
use serde_json::{json, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

/// Windows with fewer inputs than this are handled on the calling thread.
const PARALLEL_MIN_INPUTS: usize = 24;

/// A server input waiting in the queue.
struct Scheduled {
    time: SimTime,
    seq: u64,
    server: ServerIdx,
    input: Input,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.time, self.seq) == (o.time, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and we want the earliest (time, seq) first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.time, o.seq).cmp(&(self.time, self.seq))
    }
}

/// World-level events, handled between windows.
#[derive(Debug, Clone)]
enum Global {
    FaultStart(usize),
    FaultEnd(usize),
    Sample,
}

/// A snapshot of a run's advance, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub now_us: SimTime,
    /// The run's current end bound (it shrinks once a quiescence end is reached).
    pub end_us: SimTime,
    pub events: u64,
    pub deliveries: u64,
}

/// What a finished run produced.
pub struct RunResult {
    pub summary: Value,
    pub metrics: Vec<MetricRow>,
    /// Each room's PDUs (union over servers), in creation order, by room name.
    pub rooms: BTreeMap<String, Vec<Arc<Pdu>>>,
    /// `{"server_keys": {...}}` for `dag verify --keys`.
    pub keys: Value,
    pub invariant_violations: Vec<String>,
    /// Per room name: events some honest server soft-failed.
    pub soft_failed: BTreeMap<String, std::collections::BTreeSet<String>>,
}

pub struct World {
    scenario: Arc<Scenario>,
    seed: u64,
    pub servers: Vec<Server>,
    directory: Arc<Directory>,
    network: Network,
    queue: BinaryHeap<Scheduled>,
    globals: BTreeMap<(SimTime, u64), Global>,
    seq: u64,
    now: SimTime,
    end: SimTime,
    log: LogWriter,
    down: Vec<bool>,
    /// PDUs by event ID (the union store) and each room's creation order.
    store: PduStore,
    room_events: BTreeMap<String, Vec<String>>,
    /// Room name → room ID, once created.
    room_ids: BTreeMap<String, String>,
    trackers: BTreeMap<String, RoomTracker>,
    metrics: Vec<MetricRow>,
    /// Deliveries and actions still in the queue (for quiescence).
    in_flight: usize,
    /// Messages in the queue.
    messages_in_flight: usize,
    /// Per room ID: event → verdict bits of honest servers (1 valid, 2 rejected), and the count
    /// of events with both.
    verdicts: BTreeMap<String, (std::collections::HashMap<String, u8>, u64)>,
    /// Servers holding a replica of each room, and the replica count it was built from.
    holders: BTreeMap<String, Vec<ServerIdx>>,
    replica_count: usize,
    last_fault_end: SimTime,
    quiet_end_set: bool,
    done: bool,
    /// Some server verifies real signatures (inputs are expensive).
    real_signatures: bool,
}

/// Key material of a simulated server: derived from the run's seed and the server name.
pub fn server_key(streams: &RngStreams, name: &str) -> KeyPair {
    KeyPair::from_seed(name, KEY_ID, streams.seed_bytes(&format!("key/{name}")))
}

impl World {
    pub fn new(scenario: &Scenario, seed: u64, log: LogWriter) -> World {
        let scenario = Arc::new(scenario.clone());
        let streams = RngStreams::new(seed);
        let names: Vec<String> = scenario.servers.iter().map(|s| s.name.clone()).collect();
        let keys: Vec<KeyPair> = names.iter().map(|n| server_key(&streams, n)).collect();
        let directory = Arc::new(Directory {
            names: names.clone(),
            index: names.iter().enumerate().map(|(i, n)| (n.clone(), i as ServerIdx)).collect(),
            public_keys: keys.iter().map(KeyPair::public_key).collect(),
        });
        let servers = scenario
            .servers
            .iter()
            .zip(keys)
            .enumerate()
            .map(|(i, (spec, key))| {
                Server::new(
                    i as ServerIdx,
                    spec,
                    key,
                    streams.stream(&format!("server/{}", spec.name)),
                    directory.clone(),
                )
            })
            .collect();
        let network = Network::new(&scenario.network, &names, &streams);
        let mut world = World {
            end: scenario.end.bound_us(),
            seed,
            servers,
            directory,
            network,
            queue: BinaryHeap::new(),
            globals: BTreeMap::new(),
            seq: 0,
            now: 0,
            log,
            down: vec![false; names.len()],
            store: PduStore::new(),
            room_events: BTreeMap::new(),
            room_ids: BTreeMap::new(),
            trackers: BTreeMap::new(),
            metrics: Vec::new(),
            in_flight: 0,
            messages_in_flight: 0,
            verdicts: BTreeMap::new(),
            holders: BTreeMap::new(),
            replica_count: 0,
            last_fault_end: 0,
            quiet_end_set: false,
            done: false,
            real_signatures: scenario.servers.iter().any(|s| s.signatures == crate::scenario::SignatureMode::Real),
            scenario: scenario.clone(),
        };
        world.schedule_scenario(&streams);
        world
    }

    pub fn now(&self) -> SimTime {
        self.now
    }
    pub fn end_time(&self) -> SimTime {
        self.end
    }
    pub fn log_records(&self) -> u64 {
        self.log.records()
    }

    /// Where the run stands (for progress displays): simulated time, its bound, PDUs created,
    /// deliveries so far.
    pub fn progress(&self) -> Progress {
        Progress {
            now_us: self.now,
            end_us: self.end,
            events: self.store.len() as u64,
            deliveries: self.servers.iter().map(|s| s.deliveries).sum(),
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn push(&mut self, time: SimTime, server: ServerIdx, input: Input) {
        if matches!(input, Input::Deliver { .. } | Input::Action(_)) {
            self.in_flight += 1;
        }
        if matches!(input, Input::Deliver { .. }) {
            self.messages_in_flight += 1;
        }
        let seq = self.next_seq();
        self.queue.push(Scheduled { time, seq, server, input });
    }

    fn push_global(&mut self, time: SimTime, g: Global) {
        let seq = self.next_seq();
        self.globals.insert((time, seq), g);
    }

    fn server_of(&self, user: &str) -> ServerIdx {
        self.directory.server_of_user(user).expect("the scenario validated user IDs")
    }

    /// Puts the scenario's rooms, timeline, workloads, faults and samples on the queues.
    fn schedule_scenario(&mut self, streams: &RngStreams) {
        let sc = self.scenario.clone();
        for room in &sc.rooms {
            self.trackers.insert(room.name.clone(), RoomTracker::new(&room.name));
        }
        // The scenario lists each room's setup (create, invites, joins) at the room's start;
        // the invites and joins follow a little later, spaced 20 ms apart, as clients would.
        let mut setup_index: BTreeMap<String, u64> = BTreeMap::new();
        for spec in &sc.timeline {
            let mut a = action(&spec.room, &spec.user, spec.action);
            a.target = spec.target.clone();
            a.level = spec.level;
            a.join_rule = spec.join_rule;
            a.text = spec.text.clone();
            let room = sc.room(&spec.room);
            a.via = room.map(|r| self.server_of(&r.creator));
            let mut at = spec.at_us;
            if spec.action == ActionKind::CreateRoom {
                a.create = room.cloned();
            } else if let Some(r) = room
                .filter(|r| r.start_us == spec.at_us && matches!(spec.action, ActionKind::Join | ActionKind::Invite))
            {
                // Invites go out after a second; in rooms that need them, joins wait two more
                // seconds so that the invites (co-signed by the invitee's server) have landed.
                let needs_invite = r.join_rule != crate::scenario::JoinRule::Public;
                let base = if spec.action == ActionKind::Join && needs_invite { 3_000_000 } else { 1_000_000 };
                let i = setup_index.entry(format!("{}/{}", spec.room, spec.action.as_str())).or_default();
                at += base + *i * 20_000;
                *i += 1;
            }
            self.push(at, self.server_of(&spec.user), Input::Action(a));
        }
        self.schedule_workloads(streams);
        for (i, f) in sc.faults.iter().enumerate() {
            self.push_global(f.at_us, Global::FaultStart(i));
            if let Some(d) = f.duration_us {
                self.push_global(f.at_us + d, Global::FaultEnd(i));
            }
        }
        let interval = sc.metrics.interval_us.max(1);
        let mut t = interval;
        while t <= self.end {
            self.push_global(t, Global::Sample);
            t += interval;
        }
    }

    /// Random workloads: Poisson arrivals per user, drawn from `workload/<i>/<user>`.
    fn schedule_workloads(&mut self, streams: &RngStreams) {
        let sc = self.scenario.clone();
        for (wi, w) in sc.workloads.iter().enumerate() {
            let via = sc.room(&w.room).map(|r| self.server_of(&r.creator));
            for user in &w.users {
                let mut rng = streams.stream(&format!("workload/{wi}/{user}"));
                let kinds = [
                    (w.messages_per_minute / 60.0, ActionKind::Message),
                    (w.state_changes_per_hour / 3600.0, ActionKind::Topic),
                    (w.churn_per_hour / 3600.0, ActionKind::Leave),
                    (w.power_changes_per_hour / 3600.0, ActionKind::Power),
                ];
                for (rate_per_s, kind) in kinds {
                    if rate_per_s <= 0.0 {
                        continue;
                    }
                    let mut t = w.start_us as f64;
                    let mut n = 0u64;
                    loop {
                        let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                        t += -u.ln() / rate_per_s * 1e6;
                        if t >= w.stop_us as f64 || n >= 1_000_000 {
                            break;
                        }
                        n += 1;
                        let at = t as SimTime;
                        let mut a = action(&w.room, user, kind);
                        a.via = via;
                        a.text = Some(format!("{} {n}", kind.as_str()));
                        if kind == ActionKind::Power {
                            let target = &w.users[rng.gen_range(0..w.users.len())];
                            a.target = Some(target.clone());
                            a.level = Some(if rng.gen_bool(0.5) { 50 } else { 0 });
                        }
                        self.push(at, self.server_of(user), Input::Action(a.clone()));
                        if kind == ActionKind::Leave {
                            // Churn: leave, then come back after 5–60 s.
                            let back = at + rng.gen_range(5_000_000..60_000_000);
                            let mut j = a;
                            j.kind = ActionKind::Join;
                            self.push(back, self.server_of(user), Input::Action(j));
                        }
                    }
                }
            }
        }
    }

    /// Runs to the end.
    pub fn run(&mut self) {
        while self.step() {}
    }

    /// Advances by one window (or one batch of world events). Returns false when the run ended.
    pub fn step(&mut self) -> bool {
        if self.done {
            return false;
        }
        let next_q = self.queue.peek().map(|s| s.time);
        let next_g = self.globals.keys().next().map(|k| k.0);
        let next = match (next_q, next_g) {
            (None, None) => {
                self.done = true;
                return false;
            }
            (a, b) => a.unwrap_or(SimTime::MAX).min(b.unwrap_or(SimTime::MAX)),
        };
        if next > self.end {
            self.now = self.end;
            self.done = true;
            return false;
        }
        if next_g == Some(next) {
            self.now = next;
            self.run_globals(next);
            return true;
        }
        let window_end = (next + self.network.min_latency_us()).min(next_g.unwrap_or(SimTime::MAX)).min(self.end + 1);
        self.run_window(window_end);
        self.check_quiescence();
        true
    }

    fn run_globals(&mut self, t: SimTime) {
        while let Some((&(time, seq), _)) = self.globals.iter().next() {
            if time != t {
                break;
            }
            let g = self.globals.remove(&(time, seq)).expect("present");
            match g {
                Global::FaultStart(i) => self.fault(i, true),
                Global::FaultEnd(i) => self.fault(i, false),
                Global::Sample => self.sample(),
            }
        }
    }

    fn fault(&mut self, i: usize, start: bool) {
        let f = self.scenario.faults[i].clone();
        let t = self.now;
        let idx = |names: &[String], dir: &Directory| -> Vec<bool> {
            (0..dir.names.len()).map(|k| names.contains(&dir.names[k])).collect()
        };
        let what = match (&f.kind, start) {
            (FaultKind::Partition { sides }, true) => {
                let mut side_of = vec![sides.len() as u32; self.servers.len()];
                for (si, side) in sides.iter().enumerate() {
                    for name in side {
                        if let Some(&k) = self.directory.index.get(name) {
                            side_of[k as usize] = si as u32;
                        }
                    }
                }
                self.network.partition(i, side_of);
                "partition"
            }
            (FaultKind::Partition { .. }, false) => {
                self.network.heal_partition(i);
                "heal"
            }
            (FaultKind::Crash { server }, _) => {
                let k = self.directory.index[server];
                self.down[k as usize] = !start;
                let input = if start { Input::Crash } else { Input::Restart };
                // Crash and restart are inputs of the server (logged, replayable), handled now.
                self.deliver_now(k, input);
                self.down[k as usize] = start;
                if start {
                    "crash"
                } else {
                    "restart"
                }
            }
            (FaultKind::Degrade { from, to, symmetric, loss, latency }, true) => {
                self.network.degrade(Degrade {
                    id: i,
                    from: idx(from, &self.directory),
                    to: idx(to, &self.directory),
                    symmetric: *symmetric,
                    loss: *loss,
                    latency: *latency,
                });
                "degrade"
            }
            (FaultKind::Degrade { .. }, false) => {
                self.network.end_degrade(i);
                "degrade_end"
            }
            (FaultKind::ClockSkew { server, skew_us }, _) => {
                let k = self.directory.index[server];
                let skew = if start { *skew_us } else { self.scenario.servers[k as usize].clock_skew_us };
                self.deliver_now(k, Input::SetClockSkew { skew_us: skew });
                if start {
                    "clock_skew"
                } else {
                    "clock_skew_end"
                }
            }
            (FaultKind::HealAll, _) => {
                self.network.heal_all();
                for k in 0..self.servers.len() {
                    if self.down[k] {
                        self.down[k] = false;
                        self.deliver_now(k as ServerIdx, Input::Restart);
                    }
                }
                "heal_all"
            }
        };
        if !start || matches!(f.kind, FaultKind::HealAll) {
            self.last_fault_end = self.last_fault_end.max(t);
        }
        if start && f.duration_us.is_none() && !matches!(f.kind, FaultKind::HealAll | FaultKind::ClockSkew { .. }) {
            // A fault that never heals: convergence is measured from its start.
            self.last_fault_end = self.last_fault_end.max(t);
        }
        self.log.append(t, None, json!({"kind": "fault", "fault": i, "what": what, "start": start}));
    }

    /// Handles one input on one server immediately (world events between windows).
    fn deliver_now(&mut self, k: ServerIdx, input: Input) {
        let t = self.now;
        let rec = input_record(&input);
        let name = self.servers[k as usize].name.clone();
        self.log.append(t, Some(&name), rec);
        let outputs = self.servers[k as usize].handle(input, t);
        self.merge_outputs(k, t, outputs);
    }

    fn run_window(&mut self, window_end: SimTime) {
        let n = self.servers.len();
        let mut inputs: Vec<Vec<(SimTime, Input)>> = (0..n).map(|_| Vec::new()).collect();
        while self.queue.peek().is_some_and(|s| s.time < window_end) {
            let s = self.queue.pop().expect("peeked");
            if matches!(s.input, Input::Deliver { .. } | Input::Action(_)) {
                self.in_flight -= 1;
            }
            if matches!(s.input, Input::Deliver { .. }) {
                self.messages_in_flight -= 1;
            }
            self.now = s.time;
            if let Some(reason) = self.blocked(&s) {
                self.log.append(
                    s.time,
                    Some(&self.servers[s.server as usize].name.clone()),
                    json!({"kind": "dropped", "reason": reason, "input": input_record(&s.input)}),
                );
                continue;
            }
            let mut input = s.input;
            if let Input::Action(a) = &mut input {
                a.room_id = self.room_ids.get(&a.room_name).cloned();
            }
            inputs[s.server as usize].push((s.time, input));
        }
        let touched: Vec<bool> = inputs.iter().map(|b| !b.is_empty()).collect();
        // Small windows run on this thread: handing a handful of inputs to the pool costs more
        // than handling them. Either way the results are merged in the same order, so the choice
        // never changes an output.
        let total: usize = inputs.iter().map(Vec::len).sum();
        let busy = inputs.iter().filter(|b| !b.is_empty()).count();
        // Real signature checks make each input expensive enough to share out even in small
        // windows.
        let min_inputs = if self.real_signatures { 2 } else { PARALLEL_MIN_INPUTS };
        let parallel = rayon::current_num_threads() > 1 && busy >= 2 && total >= min_inputs;
        let results: Vec<Vec<(SimTime, Value, Vec<Output>)>> = if parallel {
            self.servers
                .par_iter_mut()
                .zip(inputs.into_par_iter())
                .map(|(server, batch)| run_server_window(server, batch, window_end))
                .collect()
        } else {
            self.servers
                .iter_mut()
                .zip(inputs)
                .map(
                    |(server, batch)| {
                        if batch.is_empty() {
                            Vec::new()
                        } else {
                            run_server_window(server, batch, window_end)
                        }
                    },
                )
                .collect()
        };
        for (k, handled) in results.into_iter().enumerate() {
            let name = self.servers[k].name.clone();
            for (t, rec, outputs) in handled {
                self.log.append(t, Some(&name), rec);
                self.merge_outputs(k as ServerIdx, t, outputs);
            }
        }
        self.now = window_end.saturating_sub(1).max(self.now);
        self.track_agreement(&touched);
    }

    /// Why a queued input cannot reach its server, if it cannot.
    fn blocked(&self, s: &Scheduled) -> Option<&'static str> {
        if self.down[s.server as usize] {
            return Some("server down");
        }
        match &s.input {
            Input::Deliver { from, .. } if !self.network.link_up(*from, s.server) => Some("partition"),
            _ => None,
        }
    }

    /// Applies a server's outputs: log records, the union store, the network, timers.
    fn merge_outputs(&mut self, k: ServerIdx, t: SimTime, outputs: Vec<Output>) {
        let name = self.servers[k as usize].name.clone();
        for o in outputs {
            match o {
                Output::Record(rec) => {
                    if rec["kind"] == "decision" && self.servers[k as usize].is_honest() {
                        self.note_decision(&rec);
                    }
                    if rec["kind"] == "action" && rec["action"] == "create_room" {
                        if let (Some(room), Some(id)) = (rec["room"].as_str(), rec["event"].as_str()) {
                            self.room_ids.insert(room.to_owned(), id.to_owned());
                        }
                    }
                    self.log.append(t, Some(&name), rec);
                }
                Output::Created { room_id, pdu } => {
                    if !self.store.contains_key(&pdu.event_id) {
                        self.room_events.entry(room_id).or_default().push(pdu.event_id.clone());
                    }
                    self.store.insert(pdu.event_id.clone(), pdu);
                }
                Output::SetTimer { at, timer } => self.push(at, k, Input::Timer(timer)),
                Output::Send { to, message, delay_us } => {
                    let at = t + delay_us;
                    let (to, message) = match self.network.through_middleboxes(k, to, message, at) {
                        Middleboxed::Forward(m) => (to, m),
                        Middleboxed::Answer(m) => {
                            // The cache answers from in front of `to`: the reply travels back.
                            let when = at + self.network.min_latency_us();
                            self.push(when, k, Input::Deliver { from: to, message: m });
                            continue;
                        }
                        Middleboxed::Drop(reason, m) => {
                            let to_name = self.servers[to as usize].name.clone();
                            self.log.append(at, Some(&name), json!({"kind": "send_dropped", "to": to_name, "reason": reason, "message": m.to_record()}));
                            continue;
                        }
                    };
                    match self.network.route(k, to, at) {
                        Route::Deliver(times) => {
                            for when in times {
                                self.push(when, to, Input::Deliver { from: k, message: message.clone() });
                            }
                        }
                        Route::Drop(reason) => {
                            let to_name = self.servers[to as usize].name.clone();
                            self.log.append(at, Some(&name), json!({"kind": "send_dropped", "to": to_name, "reason": reason, "message": message.to_record()}));
                        }
                    }
                }
            }
        }
    }

    /// Tracks, per room, events some honest server accepted and another rejected (sampled as
    /// `auth_disagreements` over time; must stay 0).
    fn note_decision(&mut self, rec: &Value) {
        let (Some(room), Some(event)) = (rec["room"].as_str(), rec["event"].as_str()) else { return };
        let bit = match rec["decision"].as_str() {
            Some("rejected") => 2u8,
            Some("accepted" | "soft_failed") => 1u8,
            _ => return,
        };
        let per_room = self.verdicts.entry(room.to_owned()).or_default();
        let flags = per_room.0.entry(event.to_owned()).or_insert(0);
        let before = *flags;
        *flags |= bit;
        if before != 3 && *flags == 3 {
            per_room.1 += 1;
        }
    }

    fn check_quiescence(&mut self) {
        let EndCondition::Quiescence { quiet_us, .. } = self.scenario.end else { return };
        if self.quiet_end_set || self.in_flight > 0 {
            return;
        }
        let faults_pending = self.globals.values().any(|g| matches!(g, Global::FaultStart(_) | Global::FaultEnd(_)));
        let busy = self.servers.iter().enumerate().any(|(i, s)| !self.down[i] && !s.is_idle());
        if !faults_pending && !busy {
            self.end = self.end.min(self.now + quiet_us);
            self.quiet_end_set = true;
        }
    }

    /// The honest servers with a joined user in `room_id` (by their own current state).
    fn servers_in_room(&self, room_id: &str) -> Vec<ServerIdx> {
        let holders = self.holders.get(room_id).map(Vec::as_slice).unwrap_or(&[]);
        holders
            .iter()
            .copied()
            .filter(|k| self.servers[*k as usize].is_honest() && self.servers[*k as usize].has_joined_user(room_id))
            .collect()
    }

    /// Refreshes which servers hold a replica of each room (only when replicas were added).
    fn refresh_holders(&mut self) {
        let replicas: usize = self.servers.iter().map(|s| s.rooms.len()).sum();
        if replicas == self.replica_count {
            return;
        }
        self.replica_count = replicas;
        self.holders.clear();
        for (k, s) in self.servers.iter().enumerate() {
            for room_id in s.rooms.keys() {
                self.holders.entry(room_id.clone()).or_default().push(k as ServerIdx);
            }
        }
    }

    /// After every window: does every honest server in each room whose state changed in this
    /// window (on some server that handled inputs) hold the same state?
    fn track_agreement(&mut self, touched: &[bool]) {
        self.refresh_holders();
        let mut dirty: std::collections::BTreeSet<&String> = std::collections::BTreeSet::new();
        for (k, s) in self.servers.iter().enumerate() {
            if touched[k] {
                dirty.extend(s.rooms.iter().filter(|(_, r)| r.is_dirty()).map(|(id, _)| id));
            }
        }
        let rooms: Vec<(String, String)> =
            self.room_ids.iter().filter(|(_, i)| dirty.contains(i)).map(|(n, i)| (n.clone(), i.clone())).collect();
        for (name, room_id) in rooms {
            let members = self.servers_in_room(&room_id);
            let digests: Vec<String> = members
                .iter()
                .map(|k| self.servers[*k as usize].rooms.get_mut(&room_id).expect("member").current_digest())
                .collect();
            let now = self.now;
            if let Some(t) = self.trackers.get_mut(&name) {
                t.observe_agreement(now, &digests);
            }
        }
    }

    fn sample(&mut self) {
        self.refresh_holders();
        let t = self.now;
        let rooms: Vec<(String, String)> = self.room_ids.iter().map(|(n, i)| (n.clone(), i.clone())).collect();
        for (name, room_id) in rooms {
            let members = self.servers_in_room(&room_id);
            let created = self.room_events.get(&room_id).map_or(0, |v| v.len()) as i64;
            let mut digests = Vec::new();
            let mut per_server = Vec::new();
            for k in &members {
                let server = &mut self.servers[*k as usize];
                let r = server.rooms.get_mut(&room_id).expect("member");
                digests.push(r.current_digest());
                let lag = (created - r.dag.len() as i64).max(0) as f64;
                per_server.push((
                    server.name.clone(),
                    [
                        ("event_lag", lag),
                        ("forward_extremities", r.extremities.len() as f64),
                        ("dag_depth", r.max_depth as f64),
                        ("state_size", r.current.len() as f64),
                        ("soft_failed", r.soft_failed_count as f64),
                        ("rejected", r.rejected_count as f64),
                    ],
                ));
            }
            let tracker = self.trackers.get_mut(&name).expect("tracker per room");
            tracker.observe_agreement(t, &digests);
            let (distinct, largest) = crate::metrics::agreement(&digests);
            let outside = if digests.is_empty() { 0.0 } else { 1.0 - largest as f64 / digests.len() as f64 };
            let disagreements = self.verdicts.get(&room_id).map_or(0, |v| v.1) as f64;
            let wanted = |m: Measure| self.scenario.metrics.measures.contains(&m);
            if wanted(Measure::DistinctStates) {
                self.metrics.push(MetricRow::room(t, &name, "distinct_states", distinct as f64));
            }
            if wanted(Measure::LargestAgreeingGroup) {
                self.metrics.push(MetricRow::room(t, &name, "outside_largest_group_share", outside));
            }
            if wanted(Measure::AuthDisagreements) {
                self.metrics.push(MetricRow::room(t, &name, "auth_disagreements", disagreements));
            }
            for (server, measures) in per_server {
                for (m, v) in measures {
                    tracker.observe_server_measure(m, v);
                    let skip = (m == "event_lag" && !wanted(Measure::EventLag))
                        || (m == "forward_extremities" && !wanted(Measure::ForwardExtremities));
                    if skip {
                        continue;
                    }
                    self.metrics.push(MetricRow {
                        time_ms: to_ms(t),
                        server: server.clone(),
                        room: name.clone(),
                        measure: m.into(),
                        value: v,
                    });
                }
            }
        }
        for s in &self.servers {
            self.metrics.push(MetricRow {
                time_ms: to_ms(t),
                server: s.name.clone(),
                room: String::new(),
                measure: "deliveries".into(),
                value: s.deliveries as f64,
            });
        }
    }

    /// Ends the run: final measures, invariant checks, outputs.
    pub fn finish(mut self, check_invariants: bool) -> Result<RunResult, String> {
        self.sample();
        self.refresh_holders();
        let log_digest = self.log.finish()?;
        let mut rooms_out = BTreeMap::new();
        let mut soft_failed = BTreeMap::new();
        let mut room_summaries = serde_json::Map::new();
        let mut violations = Vec::new();
        // The convergence invariant only holds once nothing is in flight any more.
        let quiet =
            self.messages_in_flight == 0 && self.servers.iter().enumerate().all(|(i, s)| self.down[i] || s.is_idle());
        let mut notes: Vec<String> = Vec::new();
        if check_invariants && !quiet {
            notes.push(format!(
                "convergence not checked: {} messages still in flight at the end",
                self.messages_in_flight
            ));
        }
        for spec in self.scenario.rooms.clone() {
            let Some(room_id) = self.room_ids.get(&spec.name).cloned() else {
                room_summaries.insert(spec.name.clone(), json!({"room_id": null, "created": false}));
                continue;
            };
            let pdus: Vec<Arc<Pdu>> = self
                .room_events
                .get(&room_id)
                .map(|ids| ids.iter().map(|id| self.store[id].clone()).collect())
                .unwrap_or_default();
            let members = self.servers_in_room(&room_id);
            let summary = crate::metrics::room_summary(
                &spec,
                &room_id,
                &pdus,
                &mut self.servers,
                &members,
                &self.trackers[&spec.name],
                self.last_fault_end,
            );
            if check_invariants {
                violations.extend(crate::metrics::invariants::check_room(
                    &spec.name,
                    &pdus,
                    &self.servers,
                    &members,
                    quiet
                        && self.scenario.faults.iter().all(|f| {
                            f.duration_us.is_some()
                                || matches!(f.kind, FaultKind::HealAll | FaultKind::ClockSkew { .. })
                        }),
                ));
            }
            room_summaries.insert(spec.name.clone(), summary);
            let mut soft = std::collections::BTreeSet::new();
            for s in self.servers.iter().filter(|s| s.is_honest()) {
                if let Some(r) = s.rooms.get(&room_id) {
                    soft.extend(
                        r.dag.events().filter(|(i, _)| r.is_soft_failed(*i)).map(|(_, e)| e.pdu.event_id.clone()),
                    );
                }
            }
            soft_failed.insert(spec.name.clone(), soft);
            rooms_out.insert(spec.name.clone(), pdus);
        }
        let faults: Vec<Value> = self.scenario.faults.iter().map(|f| json!({
            "kind": fault_kind_name(&f.kind), "start_ms": to_ms(f.at_us), "end_ms": f.duration_us.map(|d| to_ms(f.at_us + d)), "description": fault_description(&f.kind)
        })).collect();
        let summary = json!({
            "scenario": self.scenario.name,
            "seed": self.seed,
            "servers": self.servers.len(),
            "events_created": self.store.len(),
            "deliveries": self.servers.iter().map(|s| s.deliveries).sum::<u64>(),
            "sim_time_end_ms": to_ms(self.now.min(self.end)),
            "rooms": room_summaries,
            "faults": faults,
            "log_records": self.log.records(),
            "log_digest": log_digest,
            "scenario_file": self.scenario.source.file_name,
            "overrides": self.scenario.source.overrides,
            "invariant_violations": violations.len(),
            "notes": notes,
        });
        let keys = json!({"server_keys": self.servers.iter().enumerate().map(|(i, s)| (s.name.clone(), json!({KEY_ID: crate::protocol::crypto::b64_encode(self.directory.public_keys[i].as_bytes())}))).collect::<serde_json::Map<String, Value>>()});
        Ok(RunResult {
            summary,
            metrics: self.metrics,
            rooms: rooms_out,
            keys,
            invariant_violations: violations,
            soft_failed,
        })
    }
}

/// Handles a server's inputs of one window in order; self-timers that fall inside the window are
/// handled in it too. Returns, per handled input, its time, its log record and its outputs.
fn run_server_window(
    server: &mut Server,
    batch: Vec<(SimTime, Input)>,
    window_end: SimTime,
) -> Vec<(SimTime, Value, Vec<Output>)> {
    let mut local: BinaryHeap<std::cmp::Reverse<(SimTime, u64, usize)>> = BinaryHeap::new();
    let mut items: Vec<Option<Input>> = Vec::new();
    for (i, (t, input)) in batch.into_iter().enumerate() {
        local.push(std::cmp::Reverse((t, i as u64, i)));
        items.push(Some(input));
    }
    let mut next_local_seq = items.len() as u64;
    let mut handled = Vec::new();
    while let Some(std::cmp::Reverse((t, _, slot))) = local.pop() {
        let input = items[slot].take().expect("each input once");
        let rec = input_record(&input);
        let mut outputs = server.handle(input, t);
        // Timers due inside this window stay local; later ones go back to the world.
        let mut kept = Vec::with_capacity(outputs.len());
        for o in outputs.drain(..) {
            match o {
                Output::SetTimer { at, timer } if at < window_end => {
                    items.push(Some(Input::Timer(timer)));
                    local.push(std::cmp::Reverse((at.max(t), next_local_seq, items.len() - 1)));
                    next_local_seq += 1;
                }
                other => kept.push(other),
            }
        }
        handled.push((t, rec, kept));
    }
    handled
}

/// The log record of a server input (what replay feeds back).
pub fn input_record(input: &Input) -> Value {
    match input {
        Input::Deliver { from, message } => json!({"kind": "deliver", "from": from, "message": message.to_record()}),
        Input::Timer(Timer::RequestTimeout { id }) => json!({"kind": "timer", "timer": "request_timeout", "id": id}),
        Input::Timer(Timer::RetryDestination { dest }) => {
            json!({"kind": "timer", "timer": "retry_destination", "dest": dest})
        }
        Input::Timer(Timer::RetryMissing { room_id }) => {
            json!({"kind": "timer", "timer": "retry_missing", "room_id": room_id})
        }
        Input::Action(a) => {
            json!({"kind": "input_action", "action": a.kind.as_str(), "user": a.user, "room": a.room_name,
            "room_id": a.room_id, "target": a.target, "level": a.level, "join_rule": a.join_rule.map(|j| j.as_str()), "text": a.text, "via": a.via})
        }
        Input::Crash => json!({"kind": "crash"}),
        Input::Restart => json!({"kind": "restart"}),
        Input::SetClockSkew { skew_us } => json!({"kind": "clock_skew", "skew_us": skew_us}),
    }
}

/// Rebuilds a server input from its log record (`create_room` needs the scenario's room spec).
pub fn input_from_record(rec: &Value, store: &PduStore, scenario: &Scenario) -> Result<Option<Input>, String> {
    let s = |k: &str| rec.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(Some(match rec["kind"].as_str().unwrap_or("") {
        "deliver" => Input::Deliver {
            from: rec["from"].as_u64().ok_or("from")? as ServerIdx,
            message: Message::from_record(&rec["message"], store)?,
        },
        "timer" => match rec["timer"].as_str() {
            Some("request_timeout") => Input::Timer(Timer::RequestTimeout { id: rec["id"].as_u64().ok_or("id")? }),
            Some("retry_destination") => {
                Input::Timer(Timer::RetryDestination { dest: rec["dest"].as_u64().ok_or("dest")? as ServerIdx })
            }
            Some("retry_missing") => Input::Timer(Timer::RetryMissing { room_id: s("room_id").ok_or("room_id")? }),
            other => return Err(format!("unknown timer {other:?}")),
        },
        "input_action" => {
            let kind: ActionKind = serde_json::from_value(rec["action"].clone()).map_err(|e| e.to_string())?;
            let room_name = s("room").unwrap_or_default();
            let mut a = action(&room_name, &s("user").unwrap_or_default(), kind);
            a.room_id = s("room_id");
            a.target = s("target");
            a.level = rec["level"].as_i64();
            a.join_rule = serde_json::from_value(rec["join_rule"].clone()).ok();
            a.text = s("text");
            a.via = rec["via"].as_u64().map(|v| v as ServerIdx);
            if kind == ActionKind::CreateRoom {
                a.create = scenario.room(&room_name).cloned();
            }
            Input::Action(a)
        }
        "crash" => Input::Crash,
        "restart" => Input::Restart,
        "clock_skew" => Input::SetClockSkew { skew_us: rec["skew_us"].as_i64().ok_or("skew_us")? },
        _ => return Ok(None),
    }))
}

fn action(room: &str, user: &str, kind: ActionKind) -> ClientAction {
    ClientAction {
        user: user.to_owned(),
        room_name: room.to_owned(),
        room_id: None,
        kind,
        target: None,
        level: None,
        join_rule: None,
        text: None,
        create: None,
        via: None,
    }
}

fn fault_kind_name(k: &FaultKind) -> &'static str {
    match k {
        FaultKind::Partition { .. } => "partition",
        FaultKind::Crash { .. } => "crash",
        FaultKind::Degrade { .. } => "degrade",
        FaultKind::ClockSkew { .. } => "clock_skew",
        FaultKind::HealAll => "heal_all",
    }
}

fn fault_description(k: &FaultKind) -> String {
    match k {
        FaultKind::Partition { sides } => sides.iter().map(|s| s.join(",")).collect::<Vec<_>>().join(" | "),
        FaultKind::Crash { server } => server.clone(),
        FaultKind::Degrade { from, to, .. } => format!("{} -> {}", from.join(","), to.join(",")),
        FaultKind::ClockSkew { server, skew_us } => format!("{server} {}ms", skew_us / 1000),
        FaultKind::HealAll => "all".into(),
    }
}
