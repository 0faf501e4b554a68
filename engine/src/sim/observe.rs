//! Observers: what measures a run. The world knows only the [`Observer`] trait: it calls each
//! observer on every event, after every window, at every sample tick and at the end, and lets
//! it query the world through [`WorldView`]. The measures of `summary.json` and `metrics.csv`
//! (module `metrics`) and the invariant checks are observers; a proposal's measures are more
//! observers, added without touching the world.

use super::event::SimEvent;
use super::federation::ServerIdx;
use super::time::{to_ms, SimTime};
use crate::protocol::pdu::Pdu;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
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
    pub fn server(t: SimTime, server: &str, room: &str, measure: &str, value: f64) -> MetricRow {
        MetricRow {
            time_ms: to_ms(t),
            server: server.to_owned(),
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

/// A replica's figures at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaStats {
    /// Digest of the current state (what clients see), comparable across servers.
    pub current_digest: String,
    pub events: usize,
    pub forward_extremities: usize,
    pub max_depth: i64,
    pub state_size: usize,
    pub soft_failed: u64,
    pub rejected: u64,
}

/// How one replica holds one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Rejected,
    Accepted {
        soft_failed: bool,
    },
    /// Held only as an outlier, `rejected` by the rules against its own auth events or not.
    Outlier {
        rejected: bool,
    },
}

/// What observers may ask of the world. Queries are by room ID and node index.
pub trait WorldView {
    fn now(&self) -> SimTime;
    fn node_count(&self) -> usize;
    fn node_name(&self, k: ServerIdx) -> &str;
    /// Honest homeservers (not byzantine; other node kinds are not honest servers).
    fn is_honest(&self, k: ServerIdx) -> bool;
    /// PDUs node `k` received and judged so far.
    fn deliveries(&self, k: ServerIdx) -> u64;
    /// Rooms created so far: name → room ID.
    fn rooms(&self) -> &BTreeMap<String, String>;
    fn room_of_event(&self, event_id: &str) -> Option<&str>;
    /// Every PDU of a room any server created, in creation order.
    fn room_pdus(&self, room_id: &str) -> Vec<Arc<Pdu>>;
    /// The room's PDUs from position `from` of the creation order on (what was created since a
    /// caller last asked).
    fn room_pdus_since(&self, room_id: &str, from: usize) -> Vec<Arc<Pdu>> {
        self.room_pdus(room_id).into_iter().skip(from).collect()
    }
    /// How many PDUs of a room were created (`room_pdus(room_id).len()` without the copies).
    fn room_pdu_count(&self, room_id: &str) -> usize {
        self.room_pdus(room_id).len()
    }
    /// Nodes holding a replica of the room.
    fn holders(&self, room_id: &str) -> Vec<ServerIdx>;
    /// Honest servers with a user joined in the room by their own current state.
    fn members(&self, room_id: &str) -> Vec<ServerIdx>;
    fn replica_stats(&mut self, k: ServerIdx, room_id: &str) -> Option<ReplicaStats>;
    /// Digest of the state the replica's DAG resolves to (soft-failed tips included).
    fn dag_state_digest(&self, k: ServerIdx, room_id: &str) -> Option<String>;
    /// The state the replica's DAG resolves to, in the replica's own indices (comparable only
    /// with earlier answers for the same replica; [`Self::replica_state_digest`] digests it).
    fn dag_state(&self, k: ServerIdx, room_id: &str) -> Option<crate::protocol::dag::StateMap>;
    /// Digest of a state of the replica (from [`Self::dag_state`]), comparable across servers.
    fn replica_state_digest(
        &self,
        k: ServerIdx,
        room_id: &str,
        state: &crate::protocol::dag::StateMap,
    ) -> Option<String>;
    fn held(&self, k: ServerIdx, room_id: &str, event_id: &str) -> Option<Held>;
    /// Every event a replica holds, with how it holds it, in its DAG order.
    fn replica_events(&self, k: ServerIdx, room_id: &str) -> Vec<(String, Held)>;
    /// A replica's forward extremities, by event ID.
    fn replica_extremities(&self, k: ServerIdx, room_id: &str) -> Vec<String>;
    /// Nothing in flight and every live node idle: the run went quiet.
    fn quiet(&self) -> bool;
    /// Messages still in flight.
    fn messages_in_flight(&self) -> usize;
    /// Every server's public keys (what the run's `keys.json` holds).
    fn server_keys(&self) -> crate::protocol::verify::ServerKeys;
    /// MSC4243: the account key user IDs of the account named `user` in the scenario room
    /// `room` (first key first), empty when the room does not use account keys.
    fn account_user_ids(&self, _room: &str, _user: &str) -> Vec<String> {
        Vec::new()
    }
    /// MSC4243: whose account key `key` is (account name user ID, generation), the truth the
    /// domains hold.
    fn account_owner(&self, _key: &str) -> Option<(String, usize)> {
        None
    }
    /// Users of node `k` (its own domain) whose membership in the room is `join` by `k`'s
    /// current state: the clients that node serves in the room, sorted.
    fn local_joined_users(&self, _k: ServerIdx, _room_id: &str) -> Vec<String> {
        Vec::new()
    }
}

/// What observers contribute to a run's outputs.
#[derive(Debug, Default)]
pub struct Findings {
    /// Whether the invariant checks were asked for (`--check-invariants`).
    pub check_invariants: bool,
    /// Top-level `summary.json` entries.
    pub summary: Map<String, Value>,
    /// Per room name: entries of `summary.json`'s `rooms.<name>`.
    pub rooms: BTreeMap<String, Map<String, Value>>,
    pub metrics: Vec<MetricRow>,
    pub violations: Vec<String>,
    pub notes: Vec<String>,
    /// `clients.jsonl`: what each simulated client was shown and when, in log order.
    pub clients: Vec<Value>,
}

pub trait Observer: Send {
    /// Every event, in log order (`node`: the node it concerns).
    fn on_event(&mut self, _t: SimTime, _node: Option<ServerIdx>, _event: &SimEvent, _view: &dyn WorldView) {}
    /// Every message a node sends (before middleboxes and the network decide its fate), in
    /// log order. Sends are not [`SimEvent`]s on the observer path: most observers ignore them.
    fn on_send(&mut self, _t: SimTime, _from: ServerIdx, _to: ServerIdx, _message: &crate::sim::federation::Message) {}
    /// After every window: the rooms (IDs, sorted) whose replica changed (new events or a new
    /// current state) on some node that handled an input in it, each with those nodes (sorted),
    /// and the rooms in which an event was created (possibly with no node listed).
    fn on_window(&mut self, _t: SimTime, _changed: &[(String, Vec<ServerIdx>)], _view: &mut dyn WorldView) {}
    /// At every sample tick (`metrics.interval`), and once at the end.
    fn on_sample(&mut self, _t: SimTime, _view: &mut dyn WorldView) {}
    /// At the end of the run.
    fn finish(&mut self, _view: &mut dyn WorldView, _out: &mut Findings) {}
}
