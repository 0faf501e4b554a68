//! The auth difference (state-res definition 4), in Synapse's reading (A2.1): each state set's
//! chain includes the set's own events.
//!
//! Instead of materialising whole auth chains, walk backwards from every state event at once in
//! decreasing index order (indices are a topological order of the auth DAG), carrying per event
//! the bitmask of the state sets that reach it. When an event is popped its mask is final (every
//! event that can reach it has a larger index and was popped before). The walk stops as soon as
//! every queued event is reached by all sets: everything below is in every chain. The cost is
//! proportional to the region where the chains differ, not to their length.

use super::IdxMap;
use crate::protocol::dag::{EventIdx, RoomDag, StateMap};
use std::collections::BinaryHeap;

pub(super) fn auth_difference(dag: &RoomDag, states: &[&StateMap]) -> Vec<EventIdx> {
    let words = states.len().div_ceil(64);
    let mut masks = Masks { words, slots: IdxMap::default(), bits: Vec::new() };
    let mut heap = BinaryHeap::new();
    let mut partial_in_heap = 0usize;
    let full = full_mask(states.len());
    for (i, s) in states.iter().enumerate() {
        for (_, e) in s.iter() {
            let (slot, fresh) = masks.slot(*e);
            if fresh {
                heap.push(*e);
            }
            masks.set_bit(slot, i);
        }
    }
    for e in heap.iter() {
        if !masks.is_full(masks.slots[e], &full) {
            partial_in_heap += 1;
        }
    }
    let mut difference = Vec::new();
    while let Some(e) = heap.pop() {
        if partial_in_heap == 0 {
            break;
        }
        let slot = masks.slots[&e];
        let is_full = masks.is_full(slot, &full);
        if !is_full {
            partial_in_heap -= 1;
            difference.push(e);
        }
        for &a in &dag.event(e).auth {
            let (a_slot, fresh) = masks.slot(a);
            let was_full = !fresh && masks.is_full(a_slot, &full);
            masks.or_into(a_slot, slot);
            let now_full = masks.is_full(a_slot, &full);
            if fresh {
                heap.push(a);
                if !now_full {
                    partial_in_heap += 1;
                }
            } else if !was_full && now_full {
                partial_in_heap -= 1;
            }
        }
    }
    difference
}

fn full_mask(n: usize) -> Vec<u64> {
    let mut out = vec![u64::MAX; n.div_ceil(64)];
    if !n.is_multiple_of(64) {
        *out.last_mut().expect("n > 0") = (1u64 << (n % 64)) - 1;
    }
    out
}

/// Bitmasks per visited event, stored contiguously.
struct Masks {
    words: usize,
    slots: IdxMap<usize>,
    bits: Vec<u64>,
}

impl Masks {
    fn slot(&mut self, e: EventIdx) -> (usize, bool) {
        if let Some(s) = self.slots.get(&e) {
            return (*s, false);
        }
        let s = self.bits.len() / self.words;
        self.bits.extend(std::iter::repeat_n(0, self.words));
        self.slots.insert(e, s);
        (s, true)
    }
    fn set_bit(&mut self, slot: usize, bit: usize) {
        self.bits[slot * self.words + bit / 64] |= 1 << (bit % 64);
    }
    fn or_into(&mut self, dst: usize, src: usize) {
        for w in 0..self.words {
            let v = self.bits[src * self.words + w];
            self.bits[dst * self.words + w] |= v;
        }
    }
    fn is_full(&self, slot: usize, full: &[u64]) -> bool {
        self.bits[slot * self.words..(slot + 1) * self.words] == *full
    }
}
