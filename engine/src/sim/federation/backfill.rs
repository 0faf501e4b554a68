//! `GET /_matrix/federation/v1/backfill/{roomId}` (Server-Server API, §Retrieving events):
//! history before what a server holds.
//!
//! A server that joined with `join.mode = "state"` holds the room's state as outliers and
//! the join as its first timeline event; right after the join it backfills from the join's
//! prev events, at most [`BACKFILL_LIMIT`] events, once (Synapse backfills when a client
//! paginates back past the join, which every client does on opening a room; the simulated
//! clients are taken to open each room they join once). Backfilled events whose prev events are
//! in the timeline become timeline events (judged, not soft-failed, never forward
//! extremities: history, not news); the others are stored as outliers.

use super::{Outcome, Request, Response, ServerIdx};
use crate::protocol::dag::EventIdx;
use crate::protocol::pdu::Pdu;
use crate::sim::server::receipt::decision_record;
use crate::sim::server::requests::Purpose;
use crate::sim::server::{Output, Server};
use crate::sim::time::SimTime;
use std::collections::{BTreeSet, BinaryHeap};
use std::sync::Arc;

/// Events a joiner backfills after a state join (Synapse's client pagination asks 100 at most
/// per `/backfill`).
pub const BACKFILL_LIMIT: u32 = 100;

impl Server {
    /// Asks `via` for up to [`BACKFILL_LIMIT`] events of history walking back from `from`.
    pub(crate) fn backfill(
        &mut self,
        room_id: &str,
        from: Vec<String>,
        via: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        if from.is_empty() || via == self.index {
            return;
        }
        let body = Request::Backfill { room_id: room_id.to_owned(), v: from, limit: BACKFILL_LIMIT };
        self.send_request(via, body, Purpose::Backfill { room_id: room_id.to_owned() }, now, out);
    }

    /// `/backfill`: the events `v` and their prev events, walking back newest first (by
    /// depth, then event ID), at most `limit`, oldest first in the answer.
    pub(crate) fn answer_backfill(&self, room_id: &str, v: &[String], limit: u32) -> Outcome {
        let Some(room) = self.rooms.get(room_id) else {
            return Outcome::Error { status: 404, errcode: "M_NOT_FOUND".into() };
        };
        let dag = &room.dag;
        let mut frontier: BinaryHeap<(i64, &str, EventIdx)> = BinaryHeap::new();
        let mut seen: BTreeSet<EventIdx> = BTreeSet::new();
        for i in v.iter().filter_map(|id| dag.index_of(id)) {
            if seen.insert(i) {
                frontier.push((dag.pdu(i).depth, dag.pdu(i).event_id.as_str(), i));
            }
        }
        let mut found: Vec<Arc<Pdu>> = Vec::new();
        while let Some((_, _, i)) = frontier.pop() {
            if found.len() >= limit as usize {
                break;
            }
            found.push(dag.event(i).pdu.clone());
            for &p in &dag.event(i).prev {
                if seen.insert(p) {
                    frontier.push((dag.pdu(p).depth, dag.pdu(p).event_id.as_str(), p));
                }
            }
        }
        found.sort_by(|a, b| (a.depth, &a.event_id).cmp(&(b.depth, &b.event_id)));
        Outcome::Ok(Response::Events { pdus: found })
    }

    /// Stores a `/backfill` answer, oldest first: a timeline event when its prev events are in
    /// the timeline (an outlier held already is de-outliered), an outlier otherwise.
    pub(crate) fn on_backfilled(&mut self, room_id: &str, mut pdus: Vec<Arc<Pdu>>, out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get(room_id) else { return };
        let version = room.version;
        pdus.sort_by(|a, b| (a.depth, &a.event_id).cmp(&(b.depth, &b.event_id)));
        for pdu in pdus {
            let room = &self.rooms[room_id];
            if room.in_timeline(&pdu.event_id) || room.pending.contains_key(&pdu.event_id) {
                continue;
            }
            if !pdu.auth_events.iter().all(|a| room.has(a)) {
                continue; // its auth chain is beyond the history asked for: left out
            }
            let held = room.has(&pdu.event_id);
            let timeline = pdu.prev_events.iter().all(|p| room.in_timeline(p));
            if held && !timeline {
                continue;
            }
            let Some(checked) = self.checked_copy(&pdu, version, out) else { continue };
            let room = self.rooms.get_mut(room_id).expect("checked");
            let decision = if timeline { room.ingest_backfilled(checked) } else { room.store_outlier(checked) };
            self.record(out, decision_record(pdu.event_id.clone(), decision));
        }
        self.drain_pending(room_id, out);
    }
}
