//! State resolution v2 (room v11) and v2.1 (room v12), sharing their pieces
//! (digest `state-res.md`). Works on a [`RoomDag`]'s interned indices; the caller guarantees
//! that every event of the input states and their auth chains is in the DAG.

mod auth_difference;
mod conflicted_subgraph;
mod ordering;

use super::auth::{self, AuthState};
use super::dag::{EventIdx, KeyIdx, RoomDag, StateMap};
use super::room_version::StateResAlgorithm;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for the event indices that key the maps and sets of state resolution (dense
/// `u32`s, not attacker-chosen strings): one rotate-xor-multiply per word instead of SipHash.
/// Nothing here depends on iteration order (every walk's output is sorted or heap-ordered).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdxHasher(u64);

impl Hasher for IdxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type IdxMap<V> = HashMap<EventIdx, V, BuildHasherDefault<IdxHasher>>;
pub(crate) type IdxSet = HashSet<EventIdx, BuildHasherDefault<IdxHasher>>;

/// How to treat events that this observer rejected earlier when they reappear in a replay
/// (open question A3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadmitRejected {
    /// The spec: replay them like any other event.
    #[default]
    Spec,
    /// Synapse: never admit a previously rejected event.
    Synapse,
}

/// Resolves the given states (any number ≥ 0) into one.
pub fn resolve(dag: &RoomDag, states: &[&StateMap]) -> StateMap {
    resolve_with(dag, states, ReadmitRejected::Synapse)
}

/// [`resolve`] with an explicit choice for previously rejected events.
pub fn resolve_with(dag: &RoomDag, states: &[&StateMap], readmit: ReadmitRejected) -> StateMap {
    let distinct = distinct_states(states);
    match distinct.len() {
        0 => return StateMap::new(),
        1 => return distinct[0].clone(),
        _ => {}
    }
    // Step 0: unconflicted map and conflicted set.
    let (unconflicted, conflicted) = split_conflicts(&distinct);
    if conflicted.is_empty() {
        return unconflicted;
    }
    // Step 1: the full conflicted set.
    let difference = auth_difference::auth_difference(dag, &distinct);
    let subgraph = match dag.version.state_res {
        StateResAlgorithm::V2_1 => conflicted_subgraph::conflicted_subgraph(dag, &conflicted),
        StateResAlgorithm::V2 => Vec::new(),
    };
    let mut full: IdxSet = conflicted.iter().copied().collect();
    full.extend(difference);
    full.extend(subgraph);
    let mut full_sorted: Vec<EventIdx> = full.iter().copied().collect();
    full_sorted.sort_unstable();
    // MSC4345 D8 (open question C7): participation events are power events when chosen.
    let participation_power = dag.version.participation && dag.version.participation_rules.power_events;
    let is_power = |e: &EventIdx| {
        let p = dag.pdu(*e);
        p.is_power_event() || (participation_power && p.kind == super::pdu::EventKind::Participation)
    };
    let power_events: Vec<EventIdx> = full_sorted.iter().copied().filter(is_power).collect();
    let sorted_power = ordering::reverse_topological_power_order(dag, &power_events, &full);
    // Step 2: replay the power events from U (v2) or from nothing (v2.1).
    let start = match dag.version.state_res {
        StateResAlgorithm::V2 => unconflicted.clone(),
        StateResAlgorithm::V2_1 => StateMap::new(),
    };
    let partial = iterative_auth_checks(dag, &sorted_power, start, readmit);
    // Step 3: the other events by mainline order of the resolved power levels.
    let in_power: IdxSet = sorted_power.iter().copied().collect();
    let leftover: Vec<EventIdx> = full_sorted.into_iter().filter(|e| !in_power.contains(e)).collect();
    let power_levels_key = dag.key_index("m.room.power_levels", "");
    let resolved_pl = power_levels_key.and_then(|k| partial.get(&k).copied());
    let sorted_leftover = ordering::mainline_order(dag, &leftover, resolved_pl);
    // Step 4.
    let mut resolved = iterative_auth_checks(dag, &sorted_leftover, partial, readmit);
    // Step 5: unconflicted state always wins.
    for (k, e) in unconflicted.iter() {
        resolved.insert(*k, *e);
    }
    resolved
}

/// Drops duplicate inputs (common: most merges join branches that agree).
fn distinct_states<'a>(states: &[&'a StateMap]) -> Vec<&'a StateMap> {
    let mut out: Vec<&StateMap> = Vec::with_capacity(states.len());
    for s in states {
        if !out.iter().any(|o| o.ptr_eq(s) || *o == *s) {
            out.push(s);
        }
    }
    out
}

/// Splits into the unconflicted map and the conflicted events (sorted, deduplicated).
///
/// Every input is diffed against the first (`OrdMap::diff` walks two sorted maps in step, with
/// no allocation per key); a key that differs anywhere is conflicted, every other key of the
/// first input is unconflicted. Work is proportional to the inputs' sizes only in the walk, and
/// the unconflicted map is the first input with the conflicted keys removed (shared structure).
fn split_conflicts(states: &[&StateMap]) -> (StateMap, Vec<EventIdx>) {
    let first = states[0];
    let mut conflicted_keys: std::collections::BTreeSet<KeyIdx> = std::collections::BTreeSet::new();
    for other in &states[1..] {
        for d in first.diff(other) {
            let key = match d {
                imbl::ordmap::DiffItem::Add(k, _) | imbl::ordmap::DiffItem::Remove(k, _) => *k,
                imbl::ordmap::DiffItem::Update { old: (k, _), .. } => *k,
            };
            conflicted_keys.insert(key);
        }
    }
    let mut unconflicted = first.clone();
    let mut conflicted = Vec::with_capacity(conflicted_keys.len() * states.len());
    for k in &conflicted_keys {
        unconflicted.remove(k);
        conflicted.extend(states.iter().filter_map(|s| s.get(k).copied()));
    }
    conflicted.sort_unstable();
    conflicted.dedup();
    (unconflicted, conflicted)
}

/// Iterative auth checks (state-res definition 9): replay `events` in order on `state`.
pub(crate) fn iterative_auth_checks(
    dag: &RoomDag,
    events: &[EventIdx],
    mut state: StateMap,
    readmit: ReadmitRejected,
) -> StateMap {
    for &idx in events {
        let ev = dag.event(idx);
        if readmit == ReadmitRejected::Synapse && ev.is_rejected() {
            continue;
        }
        let Some(key) = ev.state_key else { continue };
        let auth_state = replay_auth_state(dag, idx, &state);
        if auth::check_state_dependent(dag.version, &ev.pdu, &auth_state).is_ok() {
            state.insert(key, idx);
        }
    }
    state
}

/// For each auth type: the working state's entry, else the event's own (non-rejected) auth event.
fn replay_auth_state<'a>(dag: &'a RoomDag, idx: EventIdx, state: &StateMap) -> AuthState<'a> {
    let ev = dag.event(idx);
    let mut out = AuthState::default();
    for (slot, key) in &ev.auth_slots {
        let from_state = state.get(key).copied().filter(|e| !dag.event(*e).is_rejected());
        let found = from_state.or_else(|| {
            ev.auth.iter().copied().find(|a| dag.event(*a).state_key == Some(*key) && !dag.event(*a).is_rejected())
        });
        out.set(*slot, found.map(|e| dag.pdu(e)));
    }
    dag.add_implied_create(&mut out);
    out
}

#[cfg(test)]
mod tests;
