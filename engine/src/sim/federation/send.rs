//! `PUT /_matrix/federation/v1/send/{txnId}`: receiving a transaction's PDUs, and the sending
//! side (one transaction in flight per destination, backoff on failure).

use crate::protocol::pdu::Pdu;
use crate::sim::event::SimEvent;
use crate::sim::federation::{Outcome, Request, Response, ServerIdx};
use crate::sim::server::requests::Purpose;
use crate::sim::server::{Output, Server, Timer, MAX_TXN_PDUS};
use crate::sim::time::SimTime;
use std::sync::Arc;

impl Server {
    /// Answers `/send`: every PDU goes through the receipt pipeline (rejection is not an error
    /// of the transaction).
    pub(crate) fn answer_send(
        &mut self,
        pdus: Vec<Arc<Pdu>>,
        from: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Outcome {
        for pdu in pdus {
            self.receive_pdu(pdu, from, now, out);
        }
        Outcome::Ok(Response::Transaction)
    }

    /// Servers that should receive a new event of `room_id`: those of joined members, plus the
    /// target's server for membership events.
    pub(crate) fn destinations(&self, room_id: &str, pdu: &Pdu) -> Vec<ServerIdx> {
        let Some(room) = self.rooms.get(room_id) else { return Vec::new() };
        let mut set: std::collections::BTreeSet<ServerIdx> =
            room.joined_servers().iter().filter_map(|d| self.directory.node(d)).collect();
        if pdu.membership().is_some() {
            if let Some(t) =
                pdu.state_key.as_deref().and_then(|u| room.routing.server_of(u)).and_then(|s| self.directory.node(s))
            {
                set.insert(t);
            }
        }
        set.remove(&self.index);
        set.into_iter().collect()
    }

    /// Queues a PDU for every destination (byzantine servers may withhold or equivocate).
    pub(crate) fn broadcast(
        &mut self,
        room_id: &str,
        pdu: Arc<Pdu>,
        exclude: Option<ServerIdx>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let dests: Vec<ServerIdx> =
            self.destinations(room_id, &pdu).into_iter().filter(|d| Some(*d) != exclude).collect();
        for d in dests {
            self.queue_for(d, pdu.clone(), now, out);
        }
    }

    /// Queues `pdu` for `dest` and sends if the destination is free; a full queue is reported
    /// (the destination catches up with `get_missing_events` when a later event reaches it).
    pub(crate) fn queue_for(&mut self, dest: ServerIdx, pdu: Arc<Pdu>, now: SimTime, out: &mut Vec<Output>) {
        if let Err(full) = self.outbound.enqueue(dest, pdu.clone()) {
            let ev = SimEvent::CapReached {
                cap: "server.outbound_queue".into(),
                limit: full.limit as u64,
                consequence: format!("{} not queued for {}", pdu.event_id, self.directory.names[dest as usize]),
            };
            self.record(out, ev);
            return;
        }
        self.send_next_transaction(dest, now, out);
    }

    pub(crate) fn send_next_transaction(&mut self, dest: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        if let Some(batch) = self.outbound.next_batch(dest, MAX_TXN_PDUS) {
            let count = batch.len();
            self.send_request(
                dest,
                Request::Transaction { pdus: batch },
                Purpose::Transaction { dest, count },
                now,
                out,
            );
        }
    }

    pub(crate) fn transaction_failed(&mut self, dest: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        let delay = self.outbound.failed(dest);
        out.push(Output::SetTimer { at: now + delay, timer: Timer::RetryDestination { dest } });
    }
}
