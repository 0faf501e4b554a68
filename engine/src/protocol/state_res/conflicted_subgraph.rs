//! The conflicted state subgraph of state resolution v2.1 (MSC4297; state-res definition 5):
//! events on some auth path from one conflicted event to another.
//!
//! Any such event lies, in index order, between the oldest conflicted event and a newer one, so
//! the walk backwards from the conflicted events never goes below the smallest conflicted index.

use super::{IdxMap, IdxSet};
use crate::protocol::dag::{EventIdx, RoomDag};

pub(super) fn conflicted_subgraph(dag: &RoomDag, conflicted: &[EventIdx]) -> Vec<EventIdx> {
    let Some(&floor) = conflicted.iter().min() else { return Vec::new() };
    let is_conflicted: IdxSet = conflicted.iter().copied().collect();
    // Events reachable (through auth edges) from some conflicted event, above the floor.
    let mut region: IdxSet = IdxSet::default();
    let mut stack: Vec<EventIdx> = conflicted.to_vec();
    let mut seen: IdxSet = conflicted.iter().copied().collect();
    while let Some(e) = stack.pop() {
        for &a in &dag.event(e).auth {
            if a < floor {
                continue;
            }
            region.insert(a);
            if seen.insert(a) {
                stack.push(a);
            }
        }
    }
    // Which region events reach a conflicted event (processing in increasing index order, so
    // every auth event is decided before the events that cite it).
    let mut ordered: Vec<EventIdx> = region.iter().copied().collect();
    ordered.sort_unstable();
    let mut reaches: IdxMap<bool> = IdxMap::default();
    let mut out = Vec::new();
    for e in ordered {
        let r = dag.event(e).auth.iter().any(|a| is_conflicted.contains(a) || reaches.get(a).copied().unwrap_or(false));
        reaches.insert(e, r);
        // `e` is reachable from a conflicted event (it is in the region); if it also reaches
        // one, it is on a path between two (or is itself a conflicted endpoint).
        if r || is_conflicted.contains(&e) {
            out.push(e);
        }
    }
    out
}
