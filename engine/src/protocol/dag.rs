//! `RoomDag`: one observer's copy of a room's event graph. Events are interned into dense `u32`
//! indices in the order the observer accepted them into its store (always a topological order:
//! an event is inserted after its auth and prev events), `(type, state_key)` pairs into `u32`
//! keys, and everything the auth rules and state resolution read per event is precomputed at
//! insertion. PDUs themselves are `Arc`-shared between observers.

use super::auth::{self, Slot};
use super::pdu::{EventKind, Pdu};
use super::room_version::{RoomVersion, CREATOR_POWER_LEVEL};
use crate::protocol::fasthash::FastMap;
use petgraph::graph::DiGraph;
use sha2::Digest as _;
use std::sync::{Arc, OnceLock};

pub type EventIdx = u32;
pub type KeyIdx = u32;
/// Room state: `(type, state_key)` key → event, a persistent map so that copies share structure.
pub type StateMap = imbl::OrdMap<KeyIdx, EventIdx>;

/// A state together with its lazily computed digest.
#[derive(Debug)]
pub struct StateSnapshot {
    pub map: StateMap,
    digest: OnceLock<String>,
}

impl StateSnapshot {
    pub fn new(map: StateMap) -> Arc<StateSnapshot> {
        Arc::new(StateSnapshot { map, digest: OnceLock::new() })
    }
    pub fn empty() -> Arc<StateSnapshot> {
        StateSnapshot::new(StateMap::new())
    }
    /// First 16 hex digits of sha256 over the sorted lines `type \0 state_key \0 event_id \n`.
    pub fn digest(&self, dag: &RoomDag) -> &str {
        self.digest.get_or_init(|| state_digest(dag, &self.map))
    }
    /// [`Self::digest`] through a precomputed key order (every key of the state must be in
    /// `ranks`); the same value, without comparing strings.
    /// `pdus[i]` is event `i`'s PDU.
    pub fn digest_ranked(&self, pdus: &[Arc<Pdu>], ranks: &KeyRanks) -> &str {
        self.digest.get_or_init(|| ranks.digest(pdus, &self.map))
    }
}

/// The keys of a DAG in the digest's line order (by type, then state key), each with its line
/// prefix `type \0 state_key \0`, for digests that sort integers instead of strings.
#[derive(Debug)]
pub struct KeyRanks {
    rank: Vec<u32>,
    prefix: Vec<Vec<u8>>,
}

impl KeyRanks {
    /// Ranks every key interned in `dag` so far.
    pub fn new(dag: &RoomDag) -> KeyRanks {
        let mut order: Vec<KeyIdx> = (0..dag.keys.len() as KeyIdx).collect();
        order.sort_unstable_by(|a, b| dag.key(*a).cmp(&dag.key(*b)));
        let mut rank = vec![0; order.len()];
        for (r, k) in order.iter().enumerate() {
            rank[*k as usize] = r as u32;
        }
        let prefix = dag
            .keys
            .iter()
            .map(|(t, s)| {
                let mut line = Vec::with_capacity(t.len() + s.len() + 2);
                line.extend_from_slice(t.as_bytes());
                line.push(0);
                line.extend_from_slice(s.as_bytes());
                line.push(0);
                line
            })
            .collect();
        KeyRanks { rank, prefix }
    }

    /// [`state_digest`] of `state`; `pdus[i]` is event `i`'s PDU (the DAG itself is not
    /// needed).
    pub fn digest(&self, pdus: &[Arc<Pdu>], state: &StateMap) -> String {
        let mut entries: Vec<(u32, KeyIdx, EventIdx)> =
            state.iter().map(|(k, e)| (self.rank[*k as usize], *k, *e)).collect();
        entries.sort_unstable_by_key(|e| e.0);
        let mut hasher = sha2::Sha256::new();
        let mut line = Vec::with_capacity(160);
        for (_, k, e) in entries {
            line.clear();
            line.extend_from_slice(&self.prefix[k as usize]);
            line.extend_from_slice(pdus[e as usize].event_id.as_bytes());
            line.push(b'\n');
            hasher.update(&line);
        }
        hex16(&hasher.finalize())
    }
}

fn hex16(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(16);
    for b in &digest[..8] {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// The state digest of the report format.
pub fn state_digest(dag: &RoomDag, state: &StateMap) -> String {
    let mut entries: Vec<(&str, &str, &str)> = state
        .iter()
        .map(|(k, e)| {
            let (t, s) = dag.key(*k);
            (t, s, dag.pdu(*e).event_id.as_str())
        })
        .collect();
    entries.sort_unstable();
    let mut bytes = Vec::with_capacity(entries.len() * 96);
    for (t, s, e) in entries {
        bytes.extend_from_slice(t.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(s.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(e.as_bytes());
        bytes.push(b'\n');
    }
    let digest = super::crypto::sha256(&bytes);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// What the observer decided about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Accepted,
    Rejected {
        stage: Stage,
        reason: String,
    },
    /// Not judged yet.
    Pending,
}

/// The receipt stage that rejected an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Missing,
    Signature,
    Hash,
    AuthEvents,
    StateBefore,
    /// Not a rule of the room: an outside check at receipt (the divergent `key_validity_url`
    /// design of third-party invites, which the spec forbids).
    OutsideCheck,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Missing => "missing",
            Stage::Signature => "signature",
            Stage::Hash => "hash",
            Stage::AuthEvents => "auth_events",
            Stage::StateBefore => "state_before",
            Stage::OutsideCheck => "outside_check",
        }
    }
}

/// Per-event data precomputed at insertion.
#[derive(Debug)]
pub struct DagEvent {
    pub pdu: Arc<Pdu>,
    pub prev: Vec<EventIdx>,
    pub auth: Vec<EventIdx>,
    /// Referenced prev/auth events this observer does not hold.
    pub missing: Vec<String>,
    /// The event's own `(type, state_key)` key, for state events.
    pub state_key: Option<KeyIdx>,
    /// The event's auth types (§1), interned.
    pub auth_slots: Vec<(Slot, KeyIdx)>,
    /// The `m.room.power_levels` event among the event's own auth events (mainline walks).
    pub auth_power_levels: Option<EventIdx>,
    /// The sender's power level measured from the event's own auth events (state-res §6).
    pub sender_power: i64,
    pub status: Status,
}

impl DagEvent {
    pub fn is_rejected(&self) -> bool {
        matches!(self.status, Status::Rejected { .. })
    }
}

/// One observer's room graph.
#[derive(Debug)]
pub struct RoomDag {
    pub version: &'static RoomVersion,
    events: Vec<DagEvent>,
    by_id: FastMap<String, EventIdx>,
    keys: Vec<(String, String)>,
    /// type → state_key → key (two levels so lookups by `&str` allocate nothing).
    key_index: FastMap<String, FastMap<String, KeyIdx>>,
    create: Option<EventIdx>,
    /// Events no held event lists as a prev event (kept on insertion).
    tips: std::collections::BTreeSet<EventIdx>,
}

impl RoomDag {
    pub fn new(version: &'static RoomVersion) -> RoomDag {
        RoomDag {
            version,
            events: Vec::new(),
            by_id: FastMap::default(),
            keys: Vec::new(),
            key_index: FastMap::default(),
            create: None,
            tips: Default::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
    pub fn event(&self, idx: EventIdx) -> &DagEvent {
        &self.events[idx as usize]
    }
    pub fn pdu(&self, idx: EventIdx) -> &Pdu {
        &self.events[idx as usize].pdu
    }
    pub fn events(&self) -> impl Iterator<Item = (EventIdx, &DagEvent)> {
        self.events.iter().enumerate().map(|(i, e)| (i as EventIdx, e))
    }
    pub fn index_of(&self, event_id: &str) -> Option<EventIdx> {
        self.by_id.get(event_id).copied()
    }
    pub fn contains(&self, event_id: &str) -> bool {
        self.by_id.contains_key(event_id)
    }
    /// The room's create event, once inserted (the first create event without prev events).
    pub fn create(&self) -> Option<EventIdx> {
        self.create
    }
    /// The `(type, state_key)` of an interned key.
    pub fn key(&self, key: KeyIdx) -> (&str, &str) {
        let (t, s) = &self.keys[key as usize];
        (t, s)
    }
    pub fn key_index(&self, event_type: &str, state_key: &str) -> Option<KeyIdx> {
        self.key_index.get(event_type)?.get(state_key).copied()
    }
    pub fn set_status(&mut self, idx: EventIdx, status: Status) {
        self.events[idx as usize].status = status;
    }
    /// Replaces a held event by another form of the same event: its redacted form (same event
    /// ID, same signatures), once a redaction is applied. What was precomputed at insertion is
    /// kept; the rules read the new form from now on.
    pub fn replace_pdu(&mut self, idx: EventIdx, pdu: Arc<Pdu>) {
        debug_assert_eq!(self.events[idx as usize].pdu.event_id, pdu.event_id, "the same event");
        self.events[idx as usize].pdu = pdu;
    }

    fn intern_key(&mut self, event_type: &str, state_key: &str) -> KeyIdx {
        if let Some(i) = self.key_index(event_type, state_key) {
            return i;
        }
        let i = self.keys.len() as KeyIdx;
        self.keys.push((event_type.to_owned(), state_key.to_owned()));
        self.key_index.entry(event_type.to_owned()).or_default().insert(state_key.to_owned(), i);
        i
    }

    /// Inserts an event (status `Pending`). Its prev and auth events should already be present;
    /// absent ones are recorded in `missing`. Returns the existing index for a duplicate.
    pub fn insert(&mut self, pdu: Arc<Pdu>) -> EventIdx {
        if let Some(i) = self.by_id.get(&pdu.event_id) {
            return *i;
        }
        let idx = self.events.len() as EventIdx;
        let mut missing = Vec::new();
        let mut lookup = |ids: &[String]| -> Vec<EventIdx> {
            ids.iter()
                .filter_map(|id| {
                    let found = self.by_id.get(id).copied();
                    if found.is_none() {
                        missing.push(id.clone());
                    }
                    found
                })
                .collect()
        };
        let prev = lookup(&pdu.prev_events);
        let auth = lookup(&pdu.auth_events);
        let state_key = pdu.state_key.as_deref().map(|s| self.intern_key(&pdu.event_type, s));
        let auth_slots = auth::auth_types(self.version, &pdu)
            .into_iter()
            .map(|(slot, k)| (slot, self.intern_key(k.event_type, k.state_key)))
            .collect();
        let auth_power_levels = auth.iter().copied().find(|a| {
            let p = self.pdu(*a);
            p.kind == EventKind::PowerLevels && p.state_key.as_deref() == Some("")
        });
        let is_room_create = pdu.kind == EventKind::Create && pdu.prev_events.is_empty() && self.create.is_none();
        let sender_power = self.power_for_ordering(&pdu, &auth, auth_power_levels);
        self.by_id.insert(pdu.event_id.clone(), idx);
        for p in &prev {
            self.tips.remove(p);
        }
        self.tips.insert(idx);
        self.events.push(DagEvent {
            pdu,
            prev,
            auth,
            missing,
            state_key,
            auth_slots,
            auth_power_levels,
            sender_power,
            status: Status::Pending,
        });
        if is_room_create {
            self.create = Some(idx);
        }
        idx
    }

    /// State-res §6: the sender's level from the event's own auth events.
    fn power_for_ordering(&self, pdu: &Pdu, auth: &[EventIdx], pl: Option<EventIdx>) -> i64 {
        if self.version.privileged_creators {
            let create = self.create.map(|c| self.pdu(c));
            if auth::is_creator(create, &pdu.sender) {
                return CREATOR_POWER_LEVEL;
            }
        }
        if let Some(levels) = pl.and_then(|p| self.pdu(p).power_levels()) {
            return levels.users.get(&pdu.sender).copied().unwrap_or_else(|| levels.users_default());
        }
        let creator_in_auth = auth.iter().map(|a| self.pdu(*a)).find(|p| p.kind == EventKind::Create);
        match creator_in_auth {
            Some(create) if create.sender == pdu.sender => 100,
            _ => 0,
        }
    }

    /// Forward extremities: events no other event of the DAG names as a prev event.
    pub fn forward_extremities(&self) -> Vec<EventIdx> {
        // An event's prev list holds the events held when it was inserted, and events are
        // inserted after their prev events, so the set kept on insertion is exactly this.
        debug_assert!({
            let mut referenced = vec![false; self.events.len()];
            for e in &self.events {
                for p in &e.prev {
                    referenced[*p as usize] = true;
                }
            }
            (0..self.events.len() as EventIdx).filter(|i| !referenced[*i as usize]).eq(self.tips.iter().copied())
        });
        self.tips.iter().copied().collect()
    }

    /// The DAG as a petgraph graph: nodes are event indices, edges point from an event to its
    /// prev events (`false`) and auth events (`true`).
    pub fn to_graph(&self) -> DiGraph<EventIdx, bool> {
        let mut g = DiGraph::with_capacity(self.events.len(), self.events.len() * 4);
        let nodes: Vec<_> = (0..self.events.len() as EventIdx).map(|i| g.add_node(i)).collect();
        for (i, e) in self.events.iter().enumerate() {
            for p in &e.prev {
                g.add_edge(nodes[i], nodes[*p as usize], false);
            }
            for a in &e.auth {
                g.add_edge(nodes[i], nodes[*a as usize], true);
            }
        }
        g
    }

    /// The state the rules read when judging `idx` against `state` (for the auth-type slots).
    pub fn auth_state_from<'a>(&'a self, idx: EventIdx, state: &StateMap) -> auth::AuthState<'a> {
        let ev = self.event(idx);
        let mut out = auth::AuthState::default();
        for (slot, key) in &ev.auth_slots {
            out.set(*slot, state.get(key).map(|e| self.pdu(*e)));
        }
        self.add_implied_create(&mut out);
        out
    }

    /// The state the rules read when judging `idx` against its own `auth_events`.
    pub fn auth_state_from_own_auth_events(&self, idx: EventIdx) -> auth::AuthState<'_> {
        let ev = self.event(idx);
        let mut out = auth::AuthState::default();
        for (slot, key) in &ev.auth_slots {
            let found = ev.auth.iter().copied().find(|a| self.event(*a).state_key == Some(*key));
            out.set(*slot, found.map(|a| self.pdu(a)));
        }
        self.add_implied_create(&mut out);
        out
    }

    /// v12: the create event is implied by `room_id` and always available to the rules.
    pub(crate) fn add_implied_create<'a>(&'a self, state: &mut auth::AuthState<'a>) {
        if !self.version.create_in_auth_events {
            state.create = self.create.filter(|c| !self.event(*c).is_rejected()).map(|c| self.pdu(c));
        }
    }
}
