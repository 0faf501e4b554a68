//! Room states for the page, interned and delta-encoded.
//!
//! Every state the page shows (the state before each event, each server's current state) is
//! an entry of one table; an entry is another entry (its base, or the empty state) plus a short
//! list of changes. The states come from `dag verify`'s own pass (`Verified::states_before`,
//! `states_after`) and the engine's state resolution; nothing here resolves state itself.
//!
//! Entries are added in the verify pass's topological order, so a base always precedes the
//! entry that names it, and states the pass shares (a message has its parent's state) are one
//! entry: the table grows with state events and merges that change something, not with events.

use std::collections::HashMap;
use std::sync::Arc;

use roomsim_engine::protocol::dag::{EventIdx, KeyIdx, StateMap, StateSnapshot};
use roomsim_engine::protocol::state_res;
use roomsim_engine::protocol::verify::Verified;

/// How many candidate bases a new entry is compared with (the closest one is taken).
const BASE_CANDIDATES: usize = 4;

/// One entry: `base` (`None`: the empty state) with `delta` applied, each change a key and
/// the event now in it (`None`: the key is gone). Keys and events are the page's indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub base: Option<u32>,
    pub delta: Vec<(u32, Option<u32>)>,
}

/// The table, with the page's `(type, state_key)` keys.
pub struct StateTable<'a> {
    verified: &'a Verified,
    /// The page index of each verify-DAG event.
    page_of: &'a [u32],
    /// The page's key index of each verify-DAG key (`u32::MAX`: not yet interned).
    key_of: Vec<u32>,
    pub keys: Vec<(String, String)>,
    key_index: HashMap<(String, String), u32>,
    pub entries: Vec<Entry>,
    maps: Vec<StateMap>,
    /// Entries by the snapshot they were made from (identity only: never iterated).
    by_snapshot: HashMap<usize, u32>,
    /// Resolutions already made, by their sorted distinct input entries.
    resolved: HashMap<Vec<u32>, u32>,
    /// The entry of the state before and after each verify-DAG event.
    before: Vec<u32>,
    after: Vec<u32>,
    /// Resolutions of two or more distinct states computed.
    pub resolutions: usize,
}

impl<'a> StateTable<'a> {
    /// The table of `verified`'s states before and after every event. `page_of[i]` is the page
    /// index of verify-DAG event `i`; `keys` the page's keys already interned (state events'
    /// own keys, in page order).
    pub fn new(verified: &'a Verified, page_of: &'a [u32], keys: Vec<(String, String)>) -> StateTable<'a> {
        let key_index = keys.iter().cloned().enumerate().map(|(i, k)| (k, i as u32)).collect();
        let mut t = StateTable {
            verified,
            page_of,
            key_of: Vec::new(),
            keys,
            key_index,
            entries: Vec::new(),
            maps: Vec::new(),
            by_snapshot: HashMap::new(),
            resolved: HashMap::new(),
            before: Vec::with_capacity(page_of.len()),
            after: Vec::with_capacity(page_of.len()),
            resolutions: 0,
        };
        let dag = &verified.dag;
        for i in 0..dag.len() {
            let prevs: Vec<u32> = dag.event(i as EventIdx).prev.iter().map(|p| t.after[*p as usize]).collect();
            let b = t.snapshot(&verified.states_before[i], &prevs);
            let a = t.snapshot(&verified.states_after[i], &[b]);
            t.before.push(b);
            t.after.push(a);
        }
        t
    }

    /// The entry of the state before verify-DAG event `i`.
    pub fn before(&self, i: EventIdx) -> u32 {
        self.before[i as usize]
    }

    /// The entry of the state after verify-DAG event `i`.
    pub fn after(&self, i: EventIdx) -> u32 {
        self.after[i as usize]
    }

    /// The resolution of the states after `tips` (verify-DAG events), as a server whose forward
    /// extremities they are holds it: the engine's state resolution, with the reference's
    /// readmission mode. `None` without tips.
    pub fn resolve_after(&mut self, tips: &[EventIdx]) -> Option<u32> {
        let mut inputs: Vec<u32> = tips.iter().map(|t| self.after[*t as usize]).collect();
        inputs.sort_unstable();
        inputs.dedup();
        match inputs.as_slice() {
            [] => return None,
            [one] => return Some(*one),
            _ => {}
        }
        if let Some(&e) = self.resolved.get(&inputs) {
            return Some(e);
        }
        let maps: Vec<&StateMap> = inputs.iter().map(|e| &self.maps[*e as usize]).collect();
        let map = state_res::resolve_with(&self.verified.dag, &maps, self.verified.readmit_rejected);
        self.resolutions += 1;
        let e = self.add_map(map, &inputs);
        self.resolved.insert(inputs, e);
        Some(e)
    }

    /// The entry of a snapshot of the verify pass: the known one, or a new entry based on the
    /// closest of `candidates`.
    fn snapshot(&mut self, s: &Arc<StateSnapshot>, candidates: &[u32]) -> u32 {
        let id = Arc::as_ptr(s) as usize;
        if let Some(&e) = self.by_snapshot.get(&id) {
            return e;
        }
        let e = self.add_map(s.map.clone(), candidates);
        self.by_snapshot.insert(id, e);
        e
    }

    /// A state as an entry: a candidate that is the same state, or a new entry on the candidate
    /// it differs least from (the empty state when there is none).
    fn add_map(&mut self, map: StateMap, candidates: &[u32]) -> u32 {
        if let Some(&c) = candidates.iter().find(|c| self.maps[**c as usize].ptr_eq(&map)) {
            return c;
        }
        let mut best: Option<(u32, Delta)> = None;
        for &c in candidates.iter().take(BASE_CANDIDATES) {
            let d = delta(&self.maps[c as usize], &map);
            if best.as_ref().is_none_or(|(_, b)| d.len() < b.len()) {
                best = Some((c, d));
            }
        }
        let (base, changes) = match best {
            Some((c, d)) => (Some(c), d),
            None => (None, delta(&StateMap::new(), &map)),
        };
        let delta = changes.into_iter().map(|(k, e)| (self.page_key(k), e.map(|e| self.page_of[e as usize]))).collect();
        self.entries.push(Entry { base, delta });
        self.maps.push(map);
        (self.entries.len() - 1) as u32
    }

    /// The page's index of a verify-DAG key.
    fn page_key(&mut self, k: KeyIdx) -> u32 {
        let k = k as usize;
        if self.key_of.len() <= k {
            self.key_of.resize(k + 1, u32::MAX);
        }
        if self.key_of[k] == u32::MAX {
            let (t, s) = self.verified.dag.key(k as KeyIdx);
            let pair = (t.to_owned(), s.to_owned());
            let next = self.keys.len() as u32;
            let i = *self.key_index.entry(pair.clone()).or_insert(next);
            if i == next {
                self.keys.push(pair);
            }
            self.key_of[k] = i;
        }
        self.key_of[k]
    }
}

/// Changes to a state: a key and the event now in it (`None`: the key is gone).
pub type Delta = Vec<(KeyIdx, Option<EventIdx>)>;

/// The changes that turn `from` into `to`, by key.
pub fn delta(from: &StateMap, to: &StateMap) -> Delta {
    let mut out: Delta = to.iter().filter(|(k, e)| from.get(*k) != Some(*e)).map(|(k, e)| (*k, Some(*e))).collect();
    out.extend(from.keys().filter(|k| !to.contains_key(*k)).map(|k| (*k, None)));
    out.sort_unstable();
    out
}

/// An entry's state, rebuilt from its chain of bases (what the page does): key → event.
pub fn materialize(entries: &[Entry], e: u32) -> std::collections::BTreeMap<u32, u32> {
    let mut chain = Vec::new();
    let mut at = Some(e);
    while let Some(i) = at {
        let Some(entry) = entries.get(i as usize) else { break };
        chain.push(entry);
        // Bases precede their entries; anything else is malformed input: stop.
        at = entry.base.filter(|b| *b < i);
    }
    let mut state = std::collections::BTreeMap::new();
    for entry in chain.into_iter().rev() {
        for (k, v) in &entry.delta {
            match v {
                Some(v) => state.insert(*k, *v),
                None => state.remove(k),
            };
        }
    }
    state
}
