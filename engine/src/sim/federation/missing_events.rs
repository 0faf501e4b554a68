//! `POST /_matrix/federation/v1/get_missing_events/{roomId}`: asking for the parents of
//! disconnected events (bounded retries) and answering such requests.

use super::{Outcome, Request, Response, ServerIdx};
use crate::protocol::dag::EventIdx;
use crate::protocol::pdu::Pdu;
use crate::sim::server::requests::Purpose;
use crate::sim::server::{room, Output, Server, Timer, MISSING_EVENTS_LIMIT};
use crate::sim::time::SimTime;
use std::sync::Arc;

impl Server {
    pub(crate) fn fetch_missing(&mut self, room_id: &str, from: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        let room = self.rooms.get_mut(room_id).expect("caller checked");
        let latest: Vec<String> = room
            .pending
            .values()
            .filter(|p| room.lacks(p).any(|id| !room.pending.contains_key(id)))
            .map(|p| p.event_id.clone())
            .collect();
        if latest.is_empty() || room.fetching.contains(&from) || from == self.index {
            return;
        }
        room.fetching.insert(from);
        let earliest = room.prev_events_for_new(20);
        let body = Request::GetMissingEvents { room_id: room_id.to_owned(), earliest, latest, limit: room.fetch_limit };
        self.send_request(from, body, Purpose::Fetch { room_id: room_id.to_owned() }, now, out);
    }

    pub(crate) fn on_fetched(
        &mut self,
        room_id: &str,
        pdus: Vec<Arc<Pdu>>,
        from: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else { return };
        // `state` mode asks one round: the answer's events must not start the next one.
        let one_round = self.config.join_mode == crate::scenario::JoinMode::State;
        if !one_round {
            room.fetching.remove(&from);
        }
        let before = room.pending.len() + room.dag.len();
        for pdu in pdus {
            self.receive_pdu(pdu, from, now, out);
        }
        let room = self.rooms.get_mut(room_id).expect("still there");
        room.fetching.remove(&from);
        let progressed = room.pending.len() + room.dag.len() > before;
        if room.pending.is_empty() {
            room.fetch_limit = room::FETCH_LIMIT_FIRST;
        }
        let still_waiting = !room.pending.is_empty();
        if self.config.join_mode == crate::scenario::JoinMode::State && still_waiting {
            // One round, as Synapse: what it did not connect is bridged with `/state_ids`.
            if progressed {
                self.rooms.get_mut(room_id).expect("still there").fetch_retries_left = room::FETCH_RETRIES;
            }
            self.bridge_gap(room_id, from, now, out);
            return;
        }
        let room = self.rooms.get_mut(room_id).expect("still there");
        if progressed {
            room.fetch_retries_left = room::FETCH_RETRIES;
            if !room.pending.is_empty() {
                // Still disconnected: the gap is wider than one answer, ask for more at once.
                room.fetch_limit = (room.fetch_limit * 2).min(MISSING_EVENTS_LIMIT);
                self.fetch_missing(room_id, from, now, out);
            }
        } else {
            self.arm_missing_retry(room_id, now, out);
        }
    }

    /// Events still wait for missing parents and nobody is being asked: ask again after the
    /// missing-event timeout (a bounded number of times; new events reset the count).
    pub(crate) fn arm_missing_retry(&mut self, room_id: &str, now: SimTime, out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get_mut(room_id) else { return };
        if room.pending.is_empty() || !room.fetching.is_empty() || room.retry_armed || room.fetch_retries_left == 0 {
            return;
        }
        room.fetch_retries_left -= 1;
        room.retry_armed = true;
        out.push(Output::SetTimer {
            at: now + self.config.missing_event_timeout_us,
            timer: Timer::RetryMissing { room_id: room_id.to_owned() },
        });
    }

    /// `get_missing_events`: walk back from `latest` (their prev and auth events, then prev
    /// events), stopping at `earliest`, returning at most `limit` events, oldest first.
    pub(crate) fn answer_missing(&self, room_id: &str, earliest: &[String], latest: &[String], limit: u32) -> Outcome {
        let Some(room) = self.rooms.get(room_id) else {
            return Outcome::Error { status: 404, errcode: "M_NOT_FOUND".into() };
        };
        let dag = &room.dag;
        // The walk runs on the DAG's indices (prev edges are interned at insertion); only the
        // requested IDs are looked up by string.
        let stop: crate::protocol::fasthash::FastSet<EventIdx> =
            earliest.iter().chain(latest).filter_map(|id| dag.index_of(id)).collect();
        // Newest first (by depth, then event ID, as a max-heap), so that a limited answer
        // covers every branch back towards the requester's extremities rather than one branch
        // down to the create event.
        let mut frontier: std::collections::BinaryHeap<(i64, &str, EventIdx)> = std::collections::BinaryHeap::new();
        let mut seen: crate::protocol::fasthash::FastSet<EventIdx> = Default::default();
        let mut push = |i: EventIdx, frontier: &mut std::collections::BinaryHeap<_>| {
            if !stop.contains(&i) && seen.insert(i) {
                let p = dag.pdu(i);
                frontier.push((p.depth, p.event_id.as_str(), i));
            }
        };
        for id in latest {
            if let Some(i) = dag.index_of(id) {
                let ev = dag.event(i);
                for &parent in ev.prev.iter().chain(&ev.auth) {
                    push(parent, &mut frontier);
                }
            }
        }
        let mut found: Vec<Arc<Pdu>> = Vec::new();
        while let Some((_, _, i)) = frontier.pop() {
            if found.len() >= limit as usize {
                break;
            }
            let ev = dag.event(i);
            found.push(ev.pdu.clone());
            // Walk prev events only (as the endpoint does): auth events are in the prev history
            // of honest events, and the first level above covers any that are not.
            for &parent in &ev.prev {
                push(parent, &mut frontier);
            }
        }
        found.sort_by(|a, b| (a.depth, &a.event_id).cmp(&(b.depth, &b.event_id)));
        Outcome::Ok(Response::Events { pdus: found })
    }
}
