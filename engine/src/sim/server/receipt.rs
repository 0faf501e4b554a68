//! The receipt pipeline of a received PDU (`auth-rules.md` §6, the spec's "Checks performed on
//! receipt of a PDU"): signatures and hash, then the auth rules once its parents are held, or a
//! park-and-fetch when they are not.

use super::{room_id_of, Decision, Output, Server, KEY_ID};
use crate::protocol::crypto;
use crate::protocol::pdu::Pdu;
use crate::protocol::redaction;
use crate::scenario::SignatureMode;
use crate::sim::bounds;
use crate::sim::event::{SimEvent, Verdict};
use crate::sim::federation::ServerIdx;
use crate::sim::time::SimTime;
use std::sync::Arc;

impl Server {
    /// Receipt checks 1–3 (the PDU is well-formed by construction): signatures, then the
    /// content hash (a mismatch continues with the redacted copy).
    pub(crate) fn check_signatures(
        &mut self,
        pdu: &Arc<Pdu>,
        version: &'static crate::protocol::room_version::RoomVersion,
    ) -> Result<Arc<Pdu>, String> {
        let signer = self.rooms.get(&room_id_of(pdu)).and_then(|r| r.routing.server_of(&pdu.sender));
        let Some(server) = signer.and_then(|s| self.directory.node(s)) else {
            return Err(format!("unknown server of sender {}", pdu.sender));
        };
        if server == self.index {
            return Ok(pdu.clone());
        }
        let server_name = &self.directory.names[server as usize];
        let Some(sig) = crypto::signature_of(&pdu.json, server_name, KEY_ID) else {
            return Err(format!("no valid signature by {server_name}"));
        };
        match self.config.signatures {
            SignatureMode::Real => {
                let bytes = pdu.signing_bytes(version);
                if !crypto::verify(&self.directory.public_keys[server as usize], bytes, &sig) {
                    return Err(format!("signature by {server_name} does not verify"));
                }
            }
            SignatureMode::Modelled => self.cost_us += self.config.signature_cost_us,
        }
        if pdu.content_hash_matches() {
            Ok(pdu.clone())
        } else {
            let redacted = redaction::redact(&pdu.json, version);
            Pdu::from_object(redacted, version).map(Arc::new).map_err(|e| e.to_string())
        }
    }

    /// A PDU arrived (transaction, fetch answer, join): check, judge when connected, or park it
    /// and fetch what is missing from `from`.
    pub(crate) fn receive_pdu(&mut self, pdu: Arc<Pdu>, from: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        self.receive_pdu_catching_up(pdu, from, now, out, None);
    }

    /// [`Server::receive_pdu`], then catches up every server the PDU newly joined to the room
    /// (see [`Server::catch_up_new_server`]), except `no_catch_up` (a joiner answered by
    /// `send_join` with the whole history already).
    pub(crate) fn receive_pdu_catching_up(
        &mut self,
        pdu: Arc<Pdu>,
        from: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
        no_catch_up: Option<ServerIdx>,
    ) {
        let room_id = room_id_of(&pdu);
        let Some(room) = self.rooms.get(&room_id) else {
            return; // not in this room (e.g. an invite for a local user arrives later by /invite)
        };
        // Servers joined before this PDU, when this server is itself resident (a joiner's first
        // history fills an empty room: nobody is "new" to it).
        let joined_before = room.joined_servers().contains(&self.name).then(|| room.joined_servers().clone());
        if room.has(&pdu.event_id) || room.pending.contains_key(&pdu.event_id) {
            return;
        }
        let version = room.version;
        let pdu = match self.check_signatures(&pdu, version) {
            Ok(p) => p,
            Err(why) => {
                self.record(
                    out,
                    SimEvent::Decision {
                        event: pdu.event_id.clone(),
                        decision: Verdict::Dropped,
                        stage: Some("signature".into()),
                        reason: Some(why),
                    },
                );
                return;
            }
        };
        self.deliveries += 1;
        let room = self.rooms.get_mut(&room_id).expect("checked");
        if room.pending.len() >= bounds::PENDING_EVENTS_PER_ROOM && !room.is_connected(&pdu) {
            let ev = SimEvent::CapReached {
                cap: "server.pending_events".into(),
                limit: bounds::PENDING_EVENTS_PER_ROOM as u64,
                consequence: format!("{} dropped: it is fetched again when its children arrive", pdu.event_id),
            };
            self.record(out, ev);
            return;
        }
        room.pending_origin.insert(pdu.event_id.clone(), from);
        room.pending.insert(pdu.event_id.clone(), pdu);
        self.drain_pending(&room_id, out);
        if let Some(before) = joined_before {
            let room = &self.rooms[&room_id];
            let newly: Vec<ServerIdx> = room
                .joined_servers()
                .difference(&before)
                .filter_map(|name| self.directory.node(name))
                .filter(|d| *d != self.index && Some(*d) != no_catch_up)
                .collect();
            for dest in newly {
                self.catch_up_new_server(&room_id, dest, now, out);
            }
        }
        let room = self.rooms.get_mut(&room_id).expect("checked");
        if !room.pending.is_empty() && !room.fetching.contains(&from) {
            self.fetch_missing(&room_id, from, now, out);
        }
    }

    /// A server just joined the room (in this server's current state): send it the latest
    /// event this server created in the room. Events created before this server knew of the
    /// join were not sent there, and a joiner that joined through another resident cannot know
    /// of them; nobody would ever reference them to it if the room then goes quiet. From the
    /// latest one the joiner fetches the rest with `get_missing_events` (like a federation
    /// sender's catch-up of a destination that missed events, which sends the latest event
    /// and lets the destination fill the gap). One event per join transition: bounded.
    /// Byzantine servers do not help (a withholding server would leak what it withholds).
    pub(crate) fn catch_up_new_server(&mut self, room_id: &str, dest: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        if !self.is_honest() {
            return;
        }
        let room = &self.rooms[room_id];
        let latest_own = room
            .dag
            .events()
            .filter(|(_, e)| room.routing.server_of(&e.pdu.sender) == Some(self.name.as_str()))
            .max_by(|(_, a), (_, b)| (a.pdu.depth, &a.pdu.event_id).cmp(&(b.pdu.depth, &b.pdu.event_id)))
            .map(|(_, e)| e.pdu.clone());
        if let Some(pdu) = latest_own {
            self.queue_for(dest, pdu, now, out);
        }
    }

    /// Judges every pending event that became connected.
    pub(crate) fn drain_pending(&mut self, room_id: &str, out: &mut Vec<Output>) {
        let room = self.rooms.get_mut(room_id).expect("caller checked");
        for pdu in room.take_connected_pending() {
            let id = pdu.event_id.clone();
            let decision = room.ingest(pdu);
            let (verdict, stage, reason) = match decision {
                Decision::Accepted => (Verdict::Accepted, None, None),
                Decision::SoftFailed { reason } => (Verdict::SoftFailed, None, Some(reason)),
                Decision::Rejected { stage, reason } => (Verdict::Rejected, Some(stage.as_str().to_owned()), Some(reason)),
            };
            out.push(Output::Event(SimEvent::Decision { event: id, decision: verdict, stage, reason }));
        }
    }
}
