//! The two orderings of state resolution: reverse topological power ordering
//! (definition 7) and mainline ordering (definition 8).

use super::{IdxMap, IdxSet};
use crate::protocol::dag::{EventIdx, RoomDag};
use crate::protocol::pdu::EventKind;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Kahn's algorithm over the auth edges among `events` plus the events of their auth chains
/// that are in `full` (reached through members of `full` only, as Synapse walks), taking the
/// smallest `(−power, origin_server_ts, event_id)` among the ready events each time.
pub(super) fn reverse_topological_power_order(dag: &RoomDag, events: &[EventIdx], full: &IdxSet) -> Vec<EventIdx> {
    // Build the graph: node -> its auth events inside the graph.
    let mut graph: IdxMap<Vec<EventIdx>> = IdxMap::default();
    let mut stack: Vec<EventIdx> = events.to_vec();
    while let Some(e) = stack.pop() {
        if graph.contains_key(&e) {
            continue;
        }
        let parents: Vec<EventIdx> = dag.event(e).auth.iter().copied().filter(|a| full.contains(a)).collect();
        for &p in &parents {
            if !graph.contains_key(&p) {
                stack.push(p);
            }
        }
        graph.insert(e, parents);
    }
    // Count, per node, the auth events not yet output; invert edges for the release step.
    let mut waiting: IdxMap<usize> = IdxMap::with_capacity_and_hasher(graph.len(), Default::default());
    let mut children: IdxMap<Vec<EventIdx>> = IdxMap::default();
    for (e, parents) in &graph {
        let mut uniq = parents.clone();
        uniq.sort_unstable();
        uniq.dedup();
        waiting.insert(*e, uniq.len());
        for p in uniq {
            children.entry(p).or_default().push(*e);
        }
    }
    let key = |e: EventIdx| {
        let ev = dag.event(e);
        Reverse((Reverse(ev.sender_power), ev.pdu.origin_server_ts, ev.pdu.event_id.as_str()))
    };
    type Ready<'a> = BinaryHeap<(Reverse<(Reverse<i64>, i64, &'a str)>, EventIdx)>;
    let mut ready: Ready = BinaryHeap::new();
    for (e, n) in &waiting {
        if *n == 0 {
            ready.push((key(*e), *e));
        }
    }
    let mut out = Vec::with_capacity(graph.len());
    while let Some((_, e)) = ready.pop() {
        out.push(e);
        if let Some(kids) = children.get(&e) {
            for k in kids {
                let n = waiting.get_mut(k).expect("node");
                *n -= 1;
                if *n == 0 {
                    ready.push((key(*k), *k));
                }
            }
        }
    }
    out
}

/// Sorts `events` by mainline position relative to `power_levels` (∞ — never meeting the
/// mainline — first, then older mainline positions), then `origin_server_ts`, then event ID.
pub(super) fn mainline_order(dag: &RoomDag, events: &[EventIdx], power_levels: Option<EventIdx>) -> Vec<EventIdx> {
    // depth: root of the mainline = 1 … resolved power levels = len; 0 = never meets it.
    let mut mainline = Vec::new();
    let mut cursor = power_levels;
    while let Some(p) = cursor {
        mainline.push(p);
        cursor = dag.event(p).auth_power_levels;
    }
    let depth_of: IdxMap<usize> = mainline.iter().rev().enumerate().map(|(i, e)| (*e, i + 1)).collect();
    let mut memo: IdxMap<usize> = IdxMap::default();
    let mut keyed: Vec<(usize, i64, &str, EventIdx)> = events
        .iter()
        .map(|&e| {
            let d = mainline_depth(dag, e, &depth_of, &mut memo);
            let p = dag.pdu(e);
            (d, p.origin_server_ts, p.event_id.as_str(), e)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, _, _, e)| e).collect()
}

/// Walks from `e` along the power-levels event of each event's auth events until the mainline.
fn mainline_depth(dag: &RoomDag, e: EventIdx, depth_of: &IdxMap<usize>, memo: &mut IdxMap<usize>) -> usize {
    let mut path = Vec::new();
    let mut cursor = Some(e);
    let mut found = 0;
    while let Some(c) = cursor {
        if let Some(d) = depth_of.get(&c) {
            found = *d;
            break;
        }
        if let Some(d) = memo.get(&c) {
            found = *d;
            break;
        }
        path.push(c);
        let ev = dag.event(c);
        debug_assert!(c == e || ev.pdu.kind == EventKind::PowerLevels);
        cursor = ev.auth_power_levels;
    }
    for p in path {
        memo.insert(p, found);
    }
    found
}
