//! The receipt pipeline of a received PDU (`auth-rules.md` §6, the spec's "Checks performed on
//! receipt of a PDU"): signatures and hash, then the auth rules once its parents are held, or a
//! park-and-fetch when they are not.

use super::{room_id_of, Decision, Output, Server, MAX_TXN_PDUS};
use crate::protocol::crypto;
use crate::protocol::pdu::Pdu;
use crate::protocol::redaction;
use crate::protocol::signers;
use crate::scenario::SignatureMode;
use crate::sim::bounds;
use crate::sim::event::{SimEvent, Verdict};
use crate::sim::federation::ServerIdx;
use crate::sim::time::SimTime;
use std::sync::Arc;

impl Server {
    /// Receipt checks 1–3 (the PDU is well-formed by construction): the required signatures
    /// (`protocol::signers`, the rule `dag verify` applies), then the content hash (a mismatch
    /// continues with the redacted copy). Every PDU that arrives over federation is checked,
    /// those of this server's own domain included: a server trusts its own events when it
    /// creates them (they never pass here), not copies that come back from elsewhere.
    pub(crate) fn check_signatures(
        &mut self,
        pdu: &Arc<Pdu>,
        version: &'static crate::protocol::room_version::RoomVersion,
    ) -> Result<Arc<Pdu>, String> {
        let required = signers::required_signers(version, pdu).map_err(|e| e.to_string())?;
        let ts = pdu.json.get("origin_server_ts").and_then(|t| t.as_u64()).unwrap_or(0);
        for required in required {
            let reason = required.reason.as_str();
            let name = match required.signer {
                signers::Signer::Server(name) => name,
                signers::Signer::AccountKey(account_key) | signers::Signer::ServerKey(account_key) => {
                    // MSC4243 §3: the key is the localpart; no fetch, no validity period.
                    let (key, sig) =
                        signers::account_key_signature(pdu, account_key).map_err(|why| format!("{why} ({reason})"))?;
                    if !self.account_signature_verifies(&key, pdu, version, &sig) {
                        return Err(format!("signature by account key {account_key} does not verify ({reason})"));
                    }
                    continue;
                }
            };
            let Some(server) = self.directory.node(name) else {
                return Err(format!("no public keys known for {name} ({reason})"));
            };
            // The first of the signer's key IDs this server holds a key for, valid at the
            // event's timestamp (keyring.rs).
            let ids = super::keyring::signing_key_ids(pdu, name);
            let usable = ids.iter().find_map(|id| {
                let key = self.keyring.usable(&self.directory, &self.name, name, id, ts)?;
                Some((key, crypto::signature_of(&pdu.json, name, id)?))
            });
            let Some((key, sig)) = usable else {
                if ids.is_empty() {
                    return Err(format!("no valid signature by {name} ({reason})"));
                }
                return Err(format!("no usable key of {name} ({reason})"));
            };
            if !self.signature_verifies(server, &key, pdu, version, &sig) {
                return Err(format!("signature by {name} does not verify ({reason})"));
            }
        }
        if pdu.content_hash_matches() {
            Ok(pdu.clone())
        } else {
            let redacted = redaction::redact(&pdu.json, version);
            Pdu::from_object(redacted, version).map(Arc::new).map_err(|e| e.to_string())
        }
    }

    /// One account-key signature check (MSC4243 §3). The ledger of honest signatures holds
    /// server signatures only, so both modes verify for real; `modelled` still charges
    /// `signature_cost_us`.
    fn account_signature_verifies(
        &mut self,
        key: &ed25519_dalek::VerifyingKey,
        pdu: &Pdu,
        version: &crate::protocol::room_version::RoomVersion,
        sig: &ed25519_dalek::Signature,
    ) -> bool {
        if self.config.signatures == SignatureMode::Modelled {
            self.cost_us += self.config.signature_cost_us;
        }
        crypto::verify(key, pdu.signing_bytes(version), sig)
    }

    /// One signature check. `real`: ed25519. `modelled`: a lookup in the signatures honest keys
    /// made (see [`super::ledger`]), charged `signature_cost_us`; a miss verifies for real, so
    /// both modes give the same verdict and a well-formed signature by a wrong key fails in both.
    fn signature_verifies(
        &mut self,
        server: ServerIdx,
        key: &ed25519_dalek::VerifyingKey,
        pdu: &Pdu,
        version: &crate::protocol::room_version::RoomVersion,
        sig: &ed25519_dalek::Signature,
    ) -> bool {
        match self.config.signatures {
            SignatureMode::Real => crypto::verify(key, pdu.signing_bytes(version), sig),
            SignatureMode::Modelled => {
                self.cost_us += self.config.signature_cost_us;
                let ledger = &self.directory.signatures;
                // The ledger knows honest signatures; the key this server holds must also be
                // one the signer really has (a key it fetched, not any key).
                let honest_key = self.directory.keys_of(server).iter().any(|(_, k)| k == key);
                (honest_key && ledger.holds(server, &pdu.event_id, sig)) || {
                    ledger.note_fallback();
                    crypto::verify(key, pdu.signing_bytes(version), sig)
                }
            }
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
            // Not in this room (e.g. an invite for a local user arrives later by /invite), unless
            // a join is under way: another server's join or message, sent before this server's
            // own join answer arrived, waits for it (as Synapse queues a joining room's events).
            self.hold_for_join(room_id, pdu, from, out);
            return;
        };
        // An event held only as an outlier is taken again: it enters the timeline once its prev
        // events do (Synapse de-outliers a pulled event it held as an outlier).
        if room.in_timeline(&pdu.event_id) || room.pending.contains_key(&pdu.event_id) {
            return;
        }
        let version = room.version;
        if let Some(wanted) = self.key_wanted(&pdu, version) {
            self.park_for_key(pdu, from, no_catch_up, wanted, now, out);
            return;
        }
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
        if self.park_for_validity(&pdu, from, now, out) {
            return; // judged once the key's validity is known (identity.rs)
        }
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
        room.add_pending(pdu);
        self.drain_pending(&room_id, out);
        self.catch_up_joined(&room_id, no_catch_up, now, out);
        let room = self.rooms.get_mut(&room_id).expect("checked");
        if !room.pending.is_empty() && !room.fetching.contains(&from) {
            self.fetch_missing(&room_id, from, now, out);
        }
    }

    /// Holds `pdu` if a local user is joining `room_id` (see [`Server::early`]), bounded.
    fn hold_for_join(&mut self, room_id: String, pdu: Arc<Pdu>, from: ServerIdx, out: &mut Vec<Output>) {
        if !self.joins.keys().any(|(r, _)| *r == room_id) {
            return;
        }
        let held = self.early.entry(room_id).or_default();
        if held.len() >= bounds::EARLY_EVENTS_PER_JOIN {
            let ev = SimEvent::CapReached {
                cap: "server.early_events".into(),
                limit: bounds::EARLY_EVENTS_PER_JOIN as u64,
                consequence: format!("{} dropped: it is fetched again when its children arrive", pdu.event_id),
            };
            self.record(out, ev);
            return;
        }
        if !held.iter().any(|(p, _)| p.event_id == pdu.event_id) {
            held.push((pdu, from));
        }
    }

    /// The join of `room_id` is done: the events held for it are received now.
    pub(crate) fn release_held_for_join(&mut self, room_id: &str, now: SimTime, out: &mut Vec<Output>) {
        if !self.rooms.contains_key(room_id) {
            return;
        }
        for (pdu, from) in self.early.remove(room_id).unwrap_or_default() {
            self.receive_pdu(pdu, from, now, out);
        }
    }

    /// A join of `room_id` failed: what was held for it is forgotten unless another local
    /// user's join of the room is still under way.
    pub(crate) fn forget_held_for_join(&mut self, room_id: &str) {
        let joining = self.joins.keys().any(|(r, _)| r == room_id);
        if !joining {
            self.early.remove(room_id);
        }
    }

    /// After a state join, a bridged gap or a backfill changed the room's timeline (and with
    /// it, maybe, who is joined): catch up the servers that joined meanwhile, as
    /// [`Server::receive_pdu_catching_up`] does for one received PDU.
    pub(crate) fn catch_up_after_answer(&mut self, room_id: &str, now: SimTime, out: &mut Vec<Output>) {
        if self.rooms.contains_key(room_id) {
            self.catch_up_joined(room_id, None, now, out);
        }
    }

    /// Catches up every server that joined the room since this server last looked while
    /// resident (`Server::informed`), except `no_catch_up`. The first time this server is
    /// resident it only takes note: it has just joined, and the residents catch it up.
    fn catch_up_joined(&mut self, room_id: &str, no_catch_up: Option<ServerIdx>, now: SimTime, out: &mut Vec<Output>) {
        let room = &self.rooms[room_id];
        let generation = room.joined_servers_generation();
        if self.informed.get(room_id).is_some_and(|(g, _)| *g == generation) {
            return; // the joined servers are what this server last looked at
        }
        let joined = room.joined_servers();
        if !joined.contains(&self.name) {
            return; // not resident: it sends nothing to the room, and looks again when it is
        }
        let newly: Vec<ServerIdx> = match self.informed.get(room_id) {
            Some((_, known)) => joined
                .difference(known)
                .filter_map(|name| self.directory.node(name))
                .filter(|d| *d != self.index && Some(*d) != no_catch_up)
                .collect(),
            None => Vec::new(),
        };
        self.informed.insert(room_id.to_owned(), (generation, joined.clone()));
        for dest in newly {
            self.catch_up_new_server(room_id, dest, now, out);
        }
    }

    /// A server just joined the room (in this server's current state): send it this server's
    /// forward extremities of the room. Events made before their makers knew of the join were
    /// not sent there, and a joiner that joined through another resident cannot know of what
    /// that resident had not received yet; if the room then goes quiet, nobody ever references
    /// them to it. From the extremities the joiner fetches the rest with `get_missing_events`
    /// (as a federation sender's catch-up of a destination that missed events sends the
    /// latest and lets the destination fill the gap), so it ends up with everything this
    /// server holds. At most [`MAX_TXN_PDUS`] events per join transition: bounded. Byzantine
    /// servers do not help (a withholding server would leak what it withholds).
    pub(crate) fn catch_up_new_server(&mut self, room_id: &str, dest: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        if !self.is_honest() {
            return;
        }
        let room = &self.rooms[room_id];
        let heads: Vec<Arc<Pdu>> = room
            .prev_events_for_new(MAX_TXN_PDUS)
            .iter()
            .filter_map(|id| room.dag.index_of(id))
            .map(|i| room.dag.event(i).pdu.clone())
            .collect();
        for pdu in heads {
            self.queue_for(dest, pdu, now, out);
        }
    }

    /// Judges every pending event that became connected.
    pub(crate) fn drain_pending(&mut self, room_id: &str, out: &mut Vec<Output>) {
        let room = self.rooms.get_mut(room_id).expect("caller checked");
        let mut judged = Vec::new();
        for pdu in room.take_connected_pending() {
            let id = pdu.event_id.clone();
            judged.push(id.clone());
            let decision = room.ingest(pdu);
            out.push(Output::Event(decision_record(id, decision)));
        }
        self.apply_redactions(room_id, &judged, out);
    }
}

/// The log record of a decision about event `id`.
pub(crate) fn decision_record(id: String, decision: Decision) -> SimEvent {
    let (verdict, stage, reason) = match decision {
        Decision::Accepted => (Verdict::Accepted, None, None),
        Decision::Outlier => (Verdict::Outlier, Some("auth_events".to_owned()), None),
        Decision::SoftFailed { reason } => (Verdict::SoftFailed, None, Some(reason)),
        Decision::Rejected { stage, reason } => (Verdict::Rejected, Some(stage.as_str().to_owned()), Some(reason)),
    };
    SimEvent::Decision { event: id, decision: verdict, stage, reason }
}

impl Server {
    /// The receipt checks 1–3 of a PDU that arrived for a state, an auth chain, a gap or
    /// history (not through [`Server::receive_pdu`]): the checked copy, or `None` after
    /// logging the drop.
    pub(crate) fn checked_copy(
        &mut self,
        pdu: &Arc<Pdu>,
        version: &'static crate::protocol::room_version::RoomVersion,
        out: &mut Vec<Output>,
    ) -> Option<Arc<Pdu>> {
        match self.check_signatures(pdu, version) {
            Ok(p) => {
                self.deliveries += 1;
                Some(p)
            }
            Err(why) => {
                let ev = SimEvent::Decision {
                    event: pdu.event_id.clone(),
                    decision: Verdict::Dropped,
                    stage: Some("signature".into()),
                    reason: Some(why),
                };
                self.record(out, ev);
                None
            }
        }
    }
}
