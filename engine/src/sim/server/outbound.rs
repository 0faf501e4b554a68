//! Per-destination PDU queues with one transaction in flight and exponential backoff, as a
//! homeserver's federation sender does. Each queue is bounded
//! ([`crate::sim::bounds::OUTBOUND_QUEUE_PER_DESTINATION`]): a PDU that does not fit is not
//! queued, and the caller reports it.

use crate::protocol::pdu::Pdu;
use crate::sim::bounds::OUTBOUND_QUEUE_PER_DESTINATION;
use crate::sim::federation::ServerIdx;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// First retry delay after a failed transaction, and its cap.
pub const BACKOFF_BASE_US: u64 = 500_000;
pub const BACKOFF_CAP_US: u64 = 30_000_000;

/// What a destination's sender is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum SenderState {
    /// Ready to send the next transaction.
    #[default]
    Idle,
    /// A transaction is in flight.
    InFlight,
    /// The last transaction failed; waiting for the retry timer.
    BackingOff,
}

#[derive(Debug, Default)]
struct Destination {
    queue: VecDeque<Arc<Pdu>>,
    state: SenderState,
    backoff_us: u64,
}

#[derive(Debug, Default)]
pub struct Outbound {
    destinations: BTreeMap<ServerIdx, Destination>,
}

/// A PDU did not fit in a destination's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull {
    pub limit: usize,
}

impl Outbound {
    /// Queues `pdu` for `dest`, unless the queue is at its cap.
    pub fn enqueue(&mut self, dest: ServerIdx, pdu: Arc<Pdu>) -> Result<(), QueueFull> {
        self.enqueue_bounded(dest, pdu, OUTBOUND_QUEUE_PER_DESTINATION)
    }

    fn enqueue_bounded(&mut self, dest: ServerIdx, pdu: Arc<Pdu>, limit: usize) -> Result<(), QueueFull> {
        let d = self.destinations.entry(dest).or_default();
        if d.queue.len() >= limit {
            return Err(QueueFull { limit });
        }
        d.queue.push_back(pdu);
        Ok(())
    }

    /// The next batch to send, if the destination is free (nothing in flight, no backoff).
    pub fn next_batch(&mut self, dest: ServerIdx, max: usize) -> Option<Vec<Arc<Pdu>>> {
        let d = self.destinations.get_mut(&dest)?;
        if d.state != SenderState::Idle || d.queue.is_empty() {
            return None;
        }
        d.state = SenderState::InFlight;
        Some(d.queue.iter().take(max).cloned().collect())
    }

    pub fn acked(&mut self, dest: ServerIdx, count: usize) {
        if let Some(d) = self.destinations.get_mut(&dest) {
            for _ in 0..count.min(d.queue.len()) {
                d.queue.pop_front();
            }
            d.state = SenderState::Idle;
            d.backoff_us = 0;
        }
    }

    /// A transaction failed: returns the delay before the retry.
    pub fn failed(&mut self, dest: ServerIdx) -> u64 {
        let d = self.destinations.entry(dest).or_default();
        d.state = SenderState::BackingOff;
        d.backoff_us = if d.backoff_us == 0 { BACKOFF_BASE_US } else { (d.backoff_us * 2).min(BACKOFF_CAP_US) };
        d.backoff_us
    }

    pub fn retry_due(&mut self, dest: ServerIdx) {
        if let Some(d) = self.destinations.get_mut(&dest) {
            if d.state == SenderState::BackingOff {
                d.state = SenderState::Idle;
            }
        }
    }

    /// After a crash: nothing is in flight any more and no retry timer is armed.
    pub fn forget_in_flight(&mut self) {
        for d in self.destinations.values_mut() {
            d.state = SenderState::Idle;
        }
    }

    pub fn destinations_with_work(&self) -> Vec<ServerIdx> {
        self.destinations.iter().filter(|(_, d)| !d.queue.is_empty()).map(|(k, _)| *k).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.destinations.values().all(|d| d.queue.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu() -> Arc<Pdu> {
        let v = serde_json::json!({"auth_events": [], "content": {"room_version": "11"}, "depth": 1,
            "hashes": {"sha256": "o2+qOhRyZh4vRblVuhtMQ2e7sLaIUsWMVGb26OyCrdA"}, "origin_server_ts": 0,
            "prev_events": [], "room_id": "!r:a", "sender": "@a:a", "signatures": {}, "state_key": "",
            "type": "m.room.create"});
        let map = v.as_object().expect("object").clone();
        Arc::new(Pdu::from_object(map, &crate::protocol::room_version::V11).expect("well-formed"))
    }

    #[test]
    fn one_transaction_in_flight_then_backoff_doubles_up_to_its_cap() {
        let mut o = Outbound::default();
        o.enqueue(3, pdu()).unwrap();
        assert_eq!(o.next_batch(3, 50).map(|b| b.len()), Some(1));
        assert!(o.next_batch(3, 50).is_none(), "one transaction in flight");
        assert_eq!(o.failed(3), BACKOFF_BASE_US);
        assert!(o.next_batch(3, 50).is_none(), "backing off");
        o.retry_due(3);
        assert!(o.next_batch(3, 50).is_some());
        let mut last = 0;
        for _ in 0..20 {
            last = o.failed(3);
        }
        assert_eq!(last, BACKOFF_CAP_US);
        o.retry_due(3);
        o.next_batch(3, 50);
        o.acked(3, 1);
        assert!(o.is_empty());
    }

    #[test]
    fn a_full_queue_refuses_and_says_its_limit() {
        let mut o = Outbound::default();
        for _ in 0..3 {
            o.enqueue_bounded(1, pdu(), 3).unwrap();
        }
        assert_eq!(o.enqueue_bounded(1, pdu(), 3), Err(QueueFull { limit: 3 }));
        assert!(o.enqueue_bounded(2, pdu(), 3).is_ok(), "the cap is per destination");
    }
}
