//! `PUT /_matrix/federation/v1/send/{txnId}`: receiving a transaction's PDUs, and the sending
//! side's fan-out (queues, backoff and catch-up: `server/outbound.rs`, `server/retry.rs`).

use crate::protocol::pdu::Pdu;
use crate::sim::event::SimEvent;
use crate::sim::federation::{Outcome, Response, ServerIdx};
use crate::sim::server::{Output, Server};
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
    /// (the destination is then caught up: sent the newest events per room, from which it
    /// fetches the rest with `get_missing_events`).
    pub(crate) fn queue_for(&mut self, dest: ServerIdx, pdu: Arc<Pdu>, now: SimTime, out: &mut Vec<Output>) {
        if let Err(full) = self.outbound.enqueue(dest, &crate::sim::server::room_id_of(&pdu), pdu.clone()) {
            let ev = SimEvent::CapReached {
                cap: "server.outbound_queue".into(),
                limit: full.limit as u64,
                consequence: format!(
                    "queue for {} dropped at {}: it is caught up with the newest event of each room",
                    self.directory.names[dest as usize], pdu.event_id
                ),
            };
            self.record(out, ev);
        }
        self.send_next_transaction(dest, now, out);
    }
}
