//! Per-destination PDU queues with one transaction in flight and exponential backoff, as a
//! homeserver's federation sender does.

use crate::protocol::pdu::Pdu;
use crate::sim::federation::ServerIdx;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// First retry delay after a failed transaction, and its cap.
pub const BACKOFF_BASE_US: u64 = 500_000;
pub const BACKOFF_CAP_US: u64 = 30_000_000;

#[derive(Debug, Default)]
struct Destination {
    queue: VecDeque<Arc<Pdu>>,
    in_flight: bool,
    backoff_us: u64,
    waiting_retry: bool,
}

#[derive(Debug, Default)]
pub struct Outbound {
    destinations: BTreeMap<ServerIdx, Destination>,
}

impl Outbound {
    pub fn enqueue(&mut self, dest: ServerIdx, pdu: Arc<Pdu>) {
        self.destinations.entry(dest).or_default().queue.push_back(pdu);
    }

    /// The next batch to send, if the destination is free (nothing in flight, no backoff).
    pub fn next_batch(&mut self, dest: ServerIdx, max: usize) -> Option<Vec<Arc<Pdu>>> {
        let d = self.destinations.get_mut(&dest)?;
        if d.in_flight || d.waiting_retry || d.queue.is_empty() {
            return None;
        }
        d.in_flight = true;
        Some(d.queue.iter().take(max).cloned().collect())
    }

    pub fn acked(&mut self, dest: ServerIdx, count: usize) {
        if let Some(d) = self.destinations.get_mut(&dest) {
            for _ in 0..count.min(d.queue.len()) {
                d.queue.pop_front();
            }
            d.in_flight = false;
            d.backoff_us = 0;
        }
    }

    /// A transaction failed: returns the delay before the retry.
    pub fn failed(&mut self, dest: ServerIdx) -> u64 {
        let d = self.destinations.entry(dest).or_default();
        d.in_flight = false;
        d.waiting_retry = true;
        d.backoff_us = if d.backoff_us == 0 { BACKOFF_BASE_US } else { (d.backoff_us * 2).min(BACKOFF_CAP_US) };
        d.backoff_us
    }

    pub fn retry_due(&mut self, dest: ServerIdx) {
        if let Some(d) = self.destinations.get_mut(&dest) {
            d.waiting_retry = false;
        }
    }

    /// After a crash: nothing is in flight any more and no retry timer is armed.
    pub fn forget_in_flight(&mut self) {
        for d in self.destinations.values_mut() {
            d.in_flight = false;
            d.waiting_retry = false;
        }
    }

    pub fn destinations_with_work(&self) -> Vec<ServerIdx> {
        self.destinations.iter().filter(|(_, d)| !d.queue.is_empty()).map(|(k, _)| *k).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.destinations.values().all(|d| d.queue.is_empty())
    }
}
