//! Per-destination PDU queues with one transaction in flight, as Synapse's federation sender
//! keeps them (`PerDestinationQueue`), with its per-destination backoff (`RetryDestinationLimiter`)
//! and its catch-up after an outage.
//!
//! - **Backoff.** A transaction that failed after its own retries marks the destination down:
//!   its retry interval becomes `destination_min_retry_interval` on the first failure, then is
//!   multiplied by `destination_retry_multiplier` and a jitter in [0.8, 1.4) on each further
//!   one, capped at `destination_max_retry_interval`. While the interval has not elapsed since
//!   the last failure nothing is sent there (new events are queued, not sent). Any success, and
//!   any request the destination sends us, resets it ([`Outbound::remote_up`]).
//! - **Catch-up.** Every queued event also records, per room, the newest event queued for the
//!   destination (Synapse's `destination_rooms`) with its position in this server's stream.
//!   When an attempt finds the destination backed off for more than an hour, when the queue
//!   is full, and after a restart (the queue is in memory), the queue is dropped and the
//!   destination is caught up one room at a time: the room's newest event if it is still a
//!   forward extremity, the room's forward extremities otherwise; the receiver fetches the rest
//!   with `get_missing_events`. Memory is one entry per room, however long the outage.
//!
//! The queue stays bounded ([`crate::sim::bounds::OUTBOUND_QUEUE_PER_DESTINATION`]): a PDU that
//! does not fit switches the destination to catch-up, and the caller reports the cap.

use crate::protocol::pdu::Pdu;
use crate::sim::bounds::OUTBOUND_QUEUE_PER_DESTINATION;
use crate::sim::federation::ServerIdx;
use crate::sim::time::SimTime;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// A destination backed off for longer than this is caught up rather than sent its queue
/// (Synapse's `CATCHUP_RETRY_INTERVAL`, one hour).
pub const CATCH_UP_RETRY_INTERVAL_US: u64 = 3_600_000_000;

/// Synapse's per-destination backoff knobs (`destination_*_retry_interval`, `…_multiplier`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    pub min_interval_us: u64,
    pub multiplier: f64,
    pub max_interval_us: u64,
}

impl BackoffPolicy {
    /// The retry interval after one more failure, from the current one (0: the destination
    /// was up) and a jitter factor in [0.8, 1.4).
    pub fn next_interval_us(&self, current_us: u64, jitter: f64) -> u64 {
        if current_us == 0 {
            return self.min_interval_us;
        }
        let next = current_us as f64 * self.multiplier * jitter;
        if next >= self.max_interval_us as f64 {
            self.max_interval_us
        } else {
            next as u64
        }
    }
}

/// One queued PDU and its position in this server's outbound stream.
#[derive(Debug, Clone)]
struct Queued {
    seq: u64,
    pdu: Arc<Pdu>,
}

/// What the transaction in flight carries, so that its acknowledgement moves the right cursor.
#[derive(Debug, Clone)]
enum InFlight {
    /// The first `count` queued PDUs, the last of them at `last_seq`.
    Queue { count: usize, last_seq: u64 },
    /// The catch-up of one room whose newest unsent event is at `seq`.
    CatchUp { seq: u64 },
}

#[derive(Debug)]
struct Destination {
    queue: VecDeque<Queued>,
    in_flight: Option<InFlight>,
    /// Current retry interval (0: the destination is up) and when it last failed.
    retry_interval_us: u64,
    retry_last: SimTime,
    /// The queue was dropped: send rooms from `rooms` until none is left.
    catching_up: bool,
    /// Stream position of the newest event the destination acknowledged (directly, or for
    /// catch-up, the room's newest event at the time).
    last_successful_seq: u64,
    /// Per room, the newest event queued for the destination and not yet covered by an
    /// acknowledgement (Synapse's `destination_rooms` rows newer than `last_successful_seq`).
    rooms: BTreeMap<String, Queued>,
}

impl Default for Destination {
    fn default() -> Destination {
        Destination {
            queue: VecDeque::new(),
            in_flight: None,
            retry_interval_us: 0,
            retry_last: 0,
            catching_up: false,
            last_successful_seq: 0,
            rooms: BTreeMap::new(),
        }
    }
}

impl Destination {
    fn backed_off(&self, now: SimTime) -> bool {
        self.retry_interval_us > 0 && now < self.retry_last + self.retry_interval_us
    }

    /// Drops the queue; what it held is covered by `rooms`.
    fn start_catching_up(&mut self) {
        self.catching_up = true;
        self.queue.clear();
    }

    fn acknowledged_up_to(&mut self, seq: u64) {
        self.last_successful_seq = self.last_successful_seq.max(seq);
        let upto = self.last_successful_seq;
        self.rooms.retain(|_, q| q.seq > upto);
    }
}

/// What the next transaction to a destination should be.
pub enum Batch {
    /// Queued PDUs, oldest first.
    Queue(Vec<Arc<Pdu>>),
    /// Catch-up of `room_id`: the caller picks what to send from the room's newest unsent event.
    CatchUp { room_id: String, newest: Arc<Pdu> },
}

#[derive(Debug)]
pub struct Outbound {
    destinations: BTreeMap<ServerIdx, Destination>,
    policy: BackoffPolicy,
    next_seq: u64,
}

/// A PDU did not fit in a destination's queue (the destination is now caught up instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull {
    pub limit: usize,
}

impl Outbound {
    pub fn new(policy: BackoffPolicy) -> Outbound {
        Outbound { destinations: BTreeMap::new(), policy, next_seq: 0 }
    }

    /// Queues `pdu` of `room_id` for `dest`. In catch-up only the room's newest event is noted;
    /// a full queue switches the destination to catch-up.
    pub fn enqueue(&mut self, dest: ServerIdx, room_id: &str, pdu: Arc<Pdu>) -> Result<(), QueueFull> {
        self.enqueue_bounded(dest, room_id, pdu, OUTBOUND_QUEUE_PER_DESTINATION)
    }

    fn enqueue_bounded(
        &mut self,
        dest: ServerIdx,
        room_id: &str,
        pdu: Arc<Pdu>,
        limit: usize,
    ) -> Result<(), QueueFull> {
        self.next_seq += 1;
        let queued = Queued { seq: self.next_seq, pdu };
        let d = self.destinations.entry(dest).or_default();
        d.rooms.insert(room_id.to_owned(), queued.clone());
        if d.catching_up {
            return Ok(());
        }
        if d.queue.len() >= limit {
            d.start_catching_up();
            return Err(QueueFull { limit });
        }
        d.queue.push_back(queued);
        Ok(())
    }

    /// The next transaction to send to `dest`, if nothing is in flight and the destination is
    /// not backed off (an attempt during a backoff longer than an hour starts the catch-up).
    pub fn next_batch(&mut self, dest: ServerIdx, now: SimTime, max: usize) -> Option<Batch> {
        let d = self.destinations.get_mut(&dest)?;
        if d.in_flight.is_some() {
            return None;
        }
        if d.backed_off(now) {
            if d.retry_interval_us > CATCH_UP_RETRY_INTERVAL_US {
                d.start_catching_up();
            }
            return None;
        }
        if d.catching_up {
            // The room whose newest unsent event is the oldest (Synapse orders by stream).
            match d.rooms.iter().min_by_key(|(_, q)| q.seq) {
                Some((room_id, q)) => {
                    let batch = Batch::CatchUp { room_id: room_id.clone(), newest: q.pdu.clone() };
                    d.in_flight = Some(InFlight::CatchUp { seq: q.seq });
                    return Some(batch);
                }
                None => d.catching_up = false,
            }
        }
        if d.queue.is_empty() {
            return None;
        }
        let batch: Vec<Queued> = d.queue.iter().take(max).cloned().collect();
        let last_seq = batch.last().expect("not empty").seq;
        d.in_flight = Some(InFlight::Queue { count: batch.len(), last_seq });
        Some(Batch::Queue(batch.into_iter().map(|q| q.pdu).collect()))
    }

    /// The transaction in flight to `dest` was acknowledged: the destination is up.
    pub fn acked(&mut self, dest: ServerIdx) {
        let Some(d) = self.destinations.get_mut(&dest) else { return };
        match d.in_flight.take() {
            Some(InFlight::Queue { count, last_seq }) => {
                for _ in 0..count.min(d.queue.len()) {
                    d.queue.pop_front();
                }
                d.acknowledged_up_to(last_seq);
            }
            Some(InFlight::CatchUp { seq }) => d.acknowledged_up_to(seq),
            None => {}
        }
        d.retry_interval_us = 0;
    }

    /// The transaction in flight failed after its retries: the destination is marked down.
    /// Returns when it may be tried again.
    pub fn failed(&mut self, dest: ServerIdx, now: SimTime, jitter: f64) -> SimTime {
        let policy = self.policy;
        let d = self.destinations.entry(dest).or_default();
        d.in_flight = None;
        d.retry_interval_us = policy.next_interval_us(d.retry_interval_us, jitter);
        d.retry_last = now;
        now + d.retry_interval_us
    }

    /// `dest` showed it is up (it sent us a request, or answered one): its backoff is reset.
    /// Returns whether it was backed off (then the caller wakes its queue, as Synapse's
    /// `notify_remote_server_up` does).
    pub fn remote_up(&mut self, dest: ServerIdx) -> bool {
        let Some(d) = self.destinations.get_mut(&dest) else { return false };
        let was_down = d.retry_interval_us > 0;
        d.retry_interval_us = 0;
        was_down
    }

    /// The current retry interval of `dest` (0: up).
    pub fn retry_interval_us(&self, dest: ServerIdx) -> u64 {
        self.destinations.get(&dest).map_or(0, |d| d.retry_interval_us)
    }

    pub fn is_catching_up(&self, dest: ServerIdx) -> bool {
        self.destinations.get(&dest).is_some_and(|d| d.catching_up)
    }

    /// After a crash: the queues (in memory) and the transactions in flight are lost; what
    /// they held is in the per-room records (the database), so every destination with
    /// unacknowledged events is caught up.
    pub fn crash(&mut self) {
        for d in self.destinations.values_mut() {
            d.in_flight = None;
            d.queue.clear();
            d.catching_up = !d.rooms.is_empty();
        }
    }

    /// Destinations with events they have not acknowledged.
    pub fn destinations_with_work(&self) -> Vec<ServerIdx> {
        self.destinations.iter().filter(|(_, d)| !d.rooms.is_empty()).map(|(k, _)| *k).collect()
    }

    pub fn has_work(&self, dest: ServerIdx) -> bool {
        self.destinations.get(&dest).is_some_and(|d| !d.rooms.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.destinations.values().all(|d| d.rooms.is_empty() && d.in_flight.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdu(n: i64) -> Arc<Pdu> {
        let v = serde_json::json!({"auth_events": [], "content": {"room_version": "11"}, "depth": n,
            "hashes": {"sha256": "o2+qOhRyZh4vRblVuhtMQ2e7sLaIUsWMVGb26OyCrdA"}, "origin_server_ts": 0,
            "prev_events": [], "room_id": "!r:a", "sender": "@a:a", "signatures": {}, "state_key": "",
            "type": "m.room.create"});
        let map = v.as_object().expect("object").clone();
        Arc::new(Pdu::from_object(map, &crate::protocol::room_version::V11).expect("well-formed"))
    }

    const SYNAPSE: BackoffPolicy =
        BackoffPolicy { min_interval_us: 600_000_000, multiplier: 2.0, max_interval_us: 604_800_000_000 };

    fn queue_len(o: &Outbound, dest: ServerIdx) -> usize {
        o.destinations[&dest].queue.len()
    }

    #[test]
    fn backoff_starts_at_the_minimum_then_multiplies_with_jitter_up_to_the_cap() {
        let p = SYNAPSE;
        assert_eq!(p.next_interval_us(0, 1.3), 600_000_000, "the first failure: no jitter");
        assert_eq!(p.next_interval_us(600_000_000, 1.0), 1_200_000_000);
        assert_eq!(p.next_interval_us(600_000_000, 0.8), 960_000_000);
        assert_eq!(p.next_interval_us(400_000_000_000, 1.0), p.max_interval_us, "capped");
    }

    #[test]
    fn one_transaction_in_flight_and_nothing_sent_while_backed_off() {
        let mut o = Outbound::new(SYNAPSE);
        o.enqueue(3, "!r", pdu(1)).unwrap();
        assert!(matches!(o.next_batch(3, 0, 50), Some(Batch::Queue(b)) if b.len() == 1));
        assert!(o.next_batch(3, 0, 50).is_none(), "one transaction in flight");
        let due = o.failed(3, 1_000, 1.0);
        assert_eq!(due, 1_000 + SYNAPSE.min_interval_us);
        o.enqueue(3, "!r", pdu(2)).unwrap();
        assert!(o.next_batch(3, due - 1, 50).is_none(), "backed off: new events wait");
        assert!(matches!(o.next_batch(3, due, 50), Some(Batch::Queue(b)) if b.len() == 2));
        o.acked(3);
        assert_eq!(o.retry_interval_us(3), 0, "a success resets the backoff");
        assert!(o.is_empty());
    }

    #[test]
    fn a_request_from_the_destination_resets_its_backoff() {
        let mut o = Outbound::new(SYNAPSE);
        o.enqueue(1, "!r", pdu(1)).unwrap();
        o.next_batch(1, 0, 50);
        o.failed(1, 0, 1.0);
        assert!(o.next_batch(1, 5, 50).is_none());
        assert!(o.remote_up(1), "it was backed off");
        assert!(!o.remote_up(1), "now it is up");
        assert!(o.next_batch(1, 5, 50).is_some(), "sent at once after the reset");
    }

    #[test]
    fn a_backoff_over_an_hour_drops_the_queue_and_catches_up_the_newest_event_per_room() {
        let mut o = Outbound::new(SYNAPSE);
        for (i, room) in ["!a", "!b", "!a", "!b", "!a"].iter().enumerate() {
            o.enqueue(2, room, pdu(i as i64 + 1)).unwrap();
        }
        o.next_batch(2, 0, 50);
        let mut t = 0;
        while o.retry_interval_us(2) <= CATCH_UP_RETRY_INTERVAL_US {
            let due = o.failed(2, t, 1.0);
            t = due;
            if o.retry_interval_us(2) <= CATCH_UP_RETRY_INTERVAL_US {
                o.next_batch(2, t, 50).expect("retried when due");
            }
        }
        assert_eq!(queue_len(&o, 2), 5, "the queue is kept while the backoff is short");
        let last = o.destinations[&2].retry_last;
        assert!(o.next_batch(2, last + 1, 50).is_none(), "an attempt while backed off");
        assert!(o.is_catching_up(2) && queue_len(&o, 2) == 0, "over an hour: the queue is dropped");
        let due = o.destinations[&2].retry_last + o.retry_interval_us(2);
        // Rooms in the order of their newest event: !b (4th), then !a (5th).
        let Some(Batch::CatchUp { room_id, newest }) = o.next_batch(2, due, 50) else { panic!("catch-up") };
        assert_eq!((room_id.as_str(), newest.depth), ("!b", 4));
        o.acked(2);
        let Some(Batch::CatchUp { room_id, newest }) = o.next_batch(2, due, 50) else { panic!("catch-up") };
        assert_eq!((room_id.as_str(), newest.depth), ("!a", 5));
        o.acked(2);
        assert!(o.next_batch(2, due, 50).is_none() && !o.is_catching_up(2) && o.is_empty());
    }

    #[test]
    fn a_full_queue_switches_to_catch_up_and_says_its_limit() {
        let mut o = Outbound::new(SYNAPSE);
        for i in 0..3 {
            o.enqueue_bounded(1, "!r", pdu(i), 3).unwrap();
        }
        assert_eq!(o.enqueue_bounded(1, "!r", pdu(9), 3), Err(QueueFull { limit: 3 }));
        assert!(o.is_catching_up(1) && queue_len(&o, 1) == 0);
        assert!(o.enqueue_bounded(2, "!r", pdu(1), 3).is_ok(), "the cap is per destination");
        let Some(Batch::CatchUp { newest, .. }) = o.next_batch(1, 0, 50) else { panic!("catch-up") };
        assert_eq!(newest.depth, 9, "the newest event, which did not fit, is the one sent");
    }

    #[test]
    fn a_crash_loses_the_queue_and_the_destination_is_caught_up() {
        let mut o = Outbound::new(SYNAPSE);
        o.enqueue(1, "!r", pdu(1)).unwrap();
        o.enqueue(1, "!r", pdu(2)).unwrap();
        o.next_batch(1, 0, 50);
        o.crash();
        assert!(o.is_catching_up(1));
        let Some(Batch::CatchUp { newest, .. }) = o.next_batch(1, 0, 50) else { panic!("catch-up") };
        assert_eq!(newest.depth, 2);
    }
}
