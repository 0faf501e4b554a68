//! The world: nodes, network, scheduler, log and observers. Conservative parallel
//! discrete-event simulation: every message takes at least the network's minimum latency L, so
//! within a window [t, t+L) no node can affect another; each node's inputs of the window are
//! handled in parallel (rayon) and what they emit is merged in a fixed order (node index, then
//! emission order). Results are identical on 1 or N threads.
//!
//! - [`schedule`]: the queues, the scenario's timeline, lazy workloads and sample ticks;
//! - [`window`]: one window: pop, handle (in parallel), merge outputs into log, network, queue;
//! - [`faults`]: the fault timeline;
//! - [`finish`]: the end of a run: observers' findings, the summary, the outputs.
//!
//! The world knows measures only through the [`Observer`] trait.

mod faults;
mod finish;
mod schedule;
mod view;
mod window;
mod workload;

pub use finish::RunResult;
pub(crate) use schedule::action as schedule_action;

use super::federation::{PduStore, ServerIdx};
use super::identity_node::IdentityNode;
use super::log::LogWriter;
use super::network::Network;
use super::node::Node;
use super::notary::Notary;
use super::observe::Observer;
use super::rng::RngStreams;
use super::server::keyring::KeyBook;
use super::server::{Directory, Server, KEY_ID};
use super::time::SimTime;
use crate::protocol::crypto::KeyPair;
use crate::protocol::fasthash::FastMap;
use crate::scenario::Scenario;
use schedule::{Global, Scheduled, WorkloadGen};
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

/// Windows with fewer inputs than this are handled on the calling thread.
const PARALLEL_MIN_INPUTS: usize = 24;

/// A snapshot of a run's advance, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub now_us: SimTime,
    /// The run's current end bound (it shrinks once a quiescence end is reached).
    pub end_us: SimTime,
    pub events: u64,
    pub deliveries: u64,
}

/// How the run's windows were executed (for tests that must reach the parallel path).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    pub windows: u64,
    /// Windows whose nodes were handled on rayon's pool.
    pub parallel: u64,
}

pub struct World {
    scenario: Arc<Scenario>,
    seed: u64,
    pub nodes: Vec<Node>,
    directory: Arc<Directory>,
    network: Network,
    queue: BinaryHeap<Scheduled>,
    globals: BTreeMap<(SimTime, u64), Global>,
    workloads: Vec<WorkloadGen>,
    seq: u64,
    now: SimTime,
    end: SimTime,
    log: LogWriter,
    down: Vec<bool>,
    /// PDUs nodes created, by event ID (the union store), and each room's creation order.
    store: PduStore,
    room_events: BTreeMap<String, Vec<String>>,
    /// Room of every PDU the log has a record of.
    event_room: FastMap<String, String>,
    /// The PDU each event ID resolves to for the log's readers (its latest PDU record).
    logged_pdus: FastMap<String, Arc<crate::protocol::pdu::Pdu>>,
    /// Room ID → room version, from the create events logged.
    room_versions: FastMap<String, String>,
    /// Room name → room ID, once created.
    room_ids: BTreeMap<String, String>,
    observers: Vec<Box<dyn Observer>>,
    /// Deliveries and actions still in the queue (for quiescence).
    in_flight: usize,
    /// Messages in the queue.
    messages_in_flight: usize,
    /// Nodes holding a replica of each room (ascending), kept up to date from the nodes that
    /// handled inputs (replicas are never dropped), and each node's replica count it has seen.
    holders: BTreeMap<String, Vec<ServerIdx>>,
    room_counts: Vec<usize>,
    /// Per node: its position in the window being gathered (`u32::MAX`: no input yet).
    window_slot: Vec<u32>,
    quiet_end_set: bool,
    done: bool,
    /// Why the run stopped early, if a bound stopped it.
    stopped: Option<String>,
    /// Some server verifies real signatures (inputs are expensive).
    real_signatures: bool,
    stats: WindowStats,
    parallel_min_inputs: Option<usize>,
    /// Times each named cap was reached.
    caps: BTreeMap<String, u64>,
    /// Per node: each replica's event count when observers last heard of it.
    replica_lens: Vec<BTreeMap<String, usize>>,
    /// Per room: its union DAG's event count when observers last heard of it.
    room_events_seen: BTreeMap<String, usize>,
    /// Test-only: a server that never receives PDUs of one event type.
    skip_for_test: Option<(ServerIdx, String)>,
}

/// Key material of a simulated server: derived from the run's seed and the server name.
pub fn server_key(streams: &RngStreams, name: &str) -> KeyPair {
    KeyPair::from_seed(name, KEY_ID, streams.seed_bytes(&format!("key/{name}")))
}

/// The `n`-th signing key of a node (`ed25519:k1` first, one more per `rotate_key` fault).
pub fn rotated_key(streams: &RngStreams, name: &str, n: usize) -> KeyPair {
    if n == 0 {
        return server_key(streams, name);
    }
    let key_id = format!("ed25519:k{}", n + 1);
    KeyPair::from_seed(name, &key_id, streams.seed_bytes(&format!("key/{name}/k{}", n + 1)))
}

/// The scenario's nodes, freshly started, and their directory (shared by the world and replay):
/// the homeservers in file order, then the key notaries (`[keys] notaries`), then the
/// identity servers (`[[identity_servers]]`).
pub fn build_nodes(scenario: &Scenario, streams: &RngStreams) -> (Vec<Node>, Arc<Directory>) {
    let mut names: Vec<String> = scenario.servers.iter().map(|s| s.name.clone()).collect();
    names.extend(scenario.keys.notaries.iter().cloned());
    names.extend(scenario.identity_servers.iter().map(|s| s.name.clone()));
    // Every key each node signs with during the run: one more per `rotate_key` fault.
    let histories: Vec<Vec<KeyPair>> = names
        .iter()
        .map(|n| {
            let rotations = scenario
                .faults
                .iter()
                .filter(|f| matches!(&f.kind, crate::scenario::FaultKind::RotateKey { server, .. } if server == n))
                .count();
            (0..=rotations).map(|i| rotated_key(streams, n, i)).collect()
        })
        .collect();
    let account_rooms = scenario.rooms.iter().filter(|r| r.version.rules().account_keys).map(|r| r.name.clone());
    let account_users = scenario.user_ids().map(|u| {
        let reregistrations = scenario
            .faults
            .iter()
            .filter(|f| matches!(&f.kind, crate::scenario::FaultKind::ReregisterAccount { user } if user == u))
            .count();
        (u.to_owned(), 1 + reregistrations)
    });
    let accounts = crate::sim::accounts::book::AccountBook::new(account_users, account_rooms.collect(), |u, g| {
        streams.seed_bytes(&format!("account/{u}/{g}"))
    });
    let portable_rooms = scenario.rooms.iter().filter(|r| r.version.rules().portable_accounts).map(|r| r.name.clone());
    let portable = crate::sim::portable::PortableBook::new(
        scenario.user_ids().map(str::to_owned),
        names.iter().cloned(),
        portable_rooms.collect(),
        |what| streams.seed_bytes(what),
    );
    let directory = Arc::new(Directory {
        accounts,
        portable,
        names: names.clone(),
        index: names.iter().enumerate().map(|(i, n)| (n.clone(), i as ServerIdx)).collect(),
        public_keys: histories.iter().map(|h| h[0].public_key()).collect(),
        signatures: Default::default(),
        keys: KeyBook {
            distribution: scenario.keys.distribution,
            validity_us: scenario.keys.validity_us,
            history: histories.iter().map(|h| h.iter().map(|k| (k.key_id.clone(), k.public_key())).collect()).collect(),
        },
    });
    let mut nodes: Vec<Node> = scenario
        .servers
        .iter()
        .zip(&histories)
        .enumerate()
        .map(|(i, (spec, keys))| {
            let mut server = Server::new(
                i as ServerIdx,
                spec,
                keys[0].clone(),
                streams.stream(&format!("server/{}", spec.name)),
                directory.clone(),
            );
            server.keyring.set_own_keys(keys.clone());
            server.config.join_mode = scenario.join_mode;
            server.config.auto_accept_delay_us = scenario.participation.accept_delay_us;
            server.config.auto_accept_by = scenario.participation.acceptor.clone();
            server.enable_accounts(&scenario.account_query);
            if !scenario.identity_servers.is_empty() {
                server.enable_identity(&scenario.identity);
            }
            Node::Homeserver(Box::new(server))
        })
        .collect();
    // A notary times out and retries as the scenario's servers do by default.
    let (timeout_us, retries) =
        scenario.servers.first().map_or((10_000_000, 2), |s| (s.request_timeout_us, s.request_retries));
    for (j, _) in scenario.keys.notaries.iter().enumerate() {
        let k = scenario.servers.len() + j;
        let notary = Notary::new(k as ServerIdx, histories[k][0].clone(), directory.clone(), timeout_us, retries);
        nodes.push(Node::Notary(Box::new(notary)));
    }
    for spec in &scenario.identity_servers {
        let k = nodes.len() as ServerIdx;
        let seed = streams.seed_bytes(&format!("identity-server/{}", spec.name));
        nodes.push(Node::IdentityServer(Box::new(IdentityNode::new(k, spec, directory.clone(), seed))));
    }
    (nodes, directory)
}

impl World {
    /// A world for `scenario` and `seed`, writing `log`, measured by `observers`.
    pub fn new(scenario: &Scenario, seed: u64, log: LogWriter, observers: Vec<Box<dyn Observer>>) -> World {
        let scenario = Arc::new(scenario.clone());
        let streams = RngStreams::new(seed);
        let (nodes, directory) = build_nodes(&scenario, &streams);
        let network = Network::new(&scenario.network, &directory.names, &streams);
        let n = nodes.len();
        let mut world = World {
            end: scenario.end.bound_us(),
            seed,
            nodes,
            directory,
            network,
            queue: BinaryHeap::new(),
            globals: BTreeMap::new(),
            workloads: Vec::new(),
            seq: 0,
            now: 0,
            log,
            down: vec![false; n],
            store: PduStore::default(),
            room_events: BTreeMap::new(),
            event_room: FastMap::default(),
            logged_pdus: FastMap::default(),
            room_versions: FastMap::default(),
            room_ids: BTreeMap::new(),
            observers,
            in_flight: 0,
            messages_in_flight: 0,
            holders: BTreeMap::new(),
            room_counts: Vec::new(),
            window_slot: Vec::new(),
            quiet_end_set: false,
            done: false,
            stopped: None,
            real_signatures: scenario.servers.iter().any(|s| s.signatures == crate::scenario::SignatureMode::Real),
            stats: WindowStats::default(),
            parallel_min_inputs: None,
            caps: BTreeMap::new(),
            replica_lens: vec![BTreeMap::new(); n],
            room_events_seen: BTreeMap::new(),
            skip_for_test: None,
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
    pub fn window_stats(&self) -> WindowStats {
        self.stats
    }

    /// Windows with at least this many inputs (over at least two nodes) are handled on rayon's
    /// pool when it has more than one thread (default 24; real signatures: 2). Outputs never
    /// depend on it: tests lower it to drive small scenarios through the parallel path.
    pub fn set_parallel_threshold(&mut self, min_inputs: usize) {
        self.parallel_min_inputs = Some(min_inputs.max(1));
    }

    /// **Test only** (breaks replay): server `k` never receives PDUs of type `event_type` (they
    /// are taken out of every transaction and `get_missing_events`/`send_join` answer before it
    /// handles them), so it cannot apply them or anything built on them. Lets tests check that
    /// the agreement measure sees a server that does not keep up.
    #[doc(hidden)]
    pub fn skip_events_for_test(&mut self, k: ServerIdx, event_type: &str) {
        self.skip_for_test = Some((k, event_type.to_owned()));
    }

    /// **Test only**: server `k`'s mapping cache takes a key missing from a `/query/accounts`
    /// answer as verified under a made-up name (a broken client of MSC4243 §4), so that tests
    /// can check the `account_keys` measures catch a server showing names nobody bound.
    #[doc(hidden)]
    pub fn misread_omissions_for_test(&mut self, k: ServerIdx) {
        if let Some(acc) = self.nodes[k as usize].as_server_mut().and_then(|s| s.accounts.as_mut()) {
            acc.cache.misread_omissions_for_test = true;
        }
    }

    /// Where the run stands (for progress displays): simulated time, its bound, PDUs created,
    /// deliveries so far.
    pub fn progress(&self) -> Progress {
        Progress {
            now_us: self.now,
            end_us: self.end,
            events: self.store.len() as u64,
            deliveries: self.nodes.iter().map(Node::deliveries).sum(),
        }
    }

    /// The homeservers of the world, in index order.
    pub fn servers(&self) -> impl Iterator<Item = &Server> {
        self.nodes.iter().filter_map(Node::as_server)
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
            return !self.done;
        }
        let window_end = (next + self.network.min_latency_us()).min(next_g.unwrap_or(SimTime::MAX)).min(self.end + 1);
        self.run_window(window_end);
        self.check_quiescence();
        !self.done
    }

    /// Calls `f` on every observer with the world as its view.
    fn observe(&mut self, mut f: impl FnMut(&mut dyn Observer, &mut World)) {
        let mut observers = std::mem::take(&mut self.observers);
        for o in observers.iter_mut() {
            f(o.as_mut(), self);
        }
        self.observers = observers;
    }

    fn check_quiescence(&mut self) {
        let crate::scenario::EndCondition::Quiescence { quiet_us, .. } = self.scenario.end else { return };
        if self.quiet_end_set || self.in_flight > 0 {
            return;
        }
        let faults_pending = self.globals.values().any(|g| matches!(g, Global::FaultStart(_) | Global::FaultEnd(_)));
        let workloads_pending = self.globals.values().any(|g| matches!(g, Global::Workload(_)));
        let busy = self.nodes.iter().enumerate().any(|(i, s)| !self.down[i] && !s.is_idle());
        if !faults_pending && !workloads_pending && !busy {
            self.end = self.end.min(self.now + quiet_us);
            self.quiet_end_set = true;
        }
    }

    /// Refreshes which nodes hold a replica of each room (only when replicas were added).
    /// Adds node `k` to the holders of rooms it has gained a replica of since last noted.
    /// O(its rooms) when its replica count changed, O(1) otherwise.
    fn note_rooms(&mut self, k: ServerIdx) {
        if self.room_counts.len() != self.nodes.len() {
            self.room_counts.resize(self.nodes.len(), 0);
        }
        let Some(s) = self.nodes[k as usize].as_server() else { return };
        if s.rooms.len() == self.room_counts[k as usize] {
            return;
        }
        self.room_counts[k as usize] = s.rooms.len();
        for room_id in s.rooms.keys() {
            let list = self.holders.entry(room_id.clone()).or_default();
            if let Err(at) = list.binary_search(&k) {
                list.insert(at, k);
            }
        }
    }

    /// Notes every node's replicas (at the start and the end of a run).
    fn refresh_holders(&mut self) {
        for k in 0..self.nodes.len() {
            self.note_rooms(k as ServerIdx);
        }
    }

    /// Counts a reached cap and logs it.
    fn cap_reached(&mut self, node: Option<ServerIdx>, cap: &str, limit: u64, consequence: String) {
        *self.caps.entry(cap.to_owned()).or_default() += 1;
        let ev = super::event::SimEvent::CapReached { cap: cap.to_owned(), limit, consequence };
        self.emit(self.now, node, &ev);
    }

    /// Logs an event and shows it to the observers.
    fn emit(&mut self, t: SimTime, node: Option<ServerIdx>, ev: &super::event::SimEvent) {
        let name = node.map(|k| self.directory.names[k as usize].as_str());
        self.log.append(t, name, ev);
        if !self.observers.is_empty() {
            let mut observers = std::mem::take(&mut self.observers);
            for o in observers.iter_mut() {
                o.on_event(t, node, ev, self);
            }
            self.observers = observers;
        }
    }
}
