//! MSC4348 portable accounts on MSC4345 participation, on a homeserver: the in-room IDs of its
//! users (`@<account key>`), the signatures it puts on their events (the account key and its
//! own room-scoped server key, MSC4348 §8.2), the bootstrap participation of a room it creates
//! (MSC4345 §4), the participation handshake of a join (MSC4345 §6, as a generalised
//! `make_join` / `send_join`), and acceptance of pending requests by the room's acceptor.
//!
//! Choices where the MSCs are silent (ARCHITECTURE.md):
//! * a server acts for the accounts of its own users (the world's book holds their keys);
//! * the handshake reuses `make_join` / `send_join`: a resident answers `make_join` for a server
//!   key with no participation with a `requested` participation template naming itself as
//!   `request_authorised_via_server`, co-signs it on `send_join` and answers with the state; the
//!   joining server then waits until its key is accepted and sends the join itself;
//! * requests are accepted by the room's acceptor (`[participation] auto_accept_by`, by default
//!   the creator) `auto_accept_delay` after its server sees them.

use super::actions::Draft;
use super::{ClientAction, Output, Server, Timer};
use crate::protocol::crypto::{self, KeyPair};
use crate::protocol::ids;
use crate::protocol::pdu::{ParticipationState, Pdu, TypedContent};
use crate::protocol::room_version::RoomVersion;
use crate::sim::event::SimEvent;
use crate::sim::time::SimTime;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A join waiting for this server's key to be accepted: since when.
pub type Awaiting = BTreeMap<(String, String), SimTime>;

pub const P: &str = "m.server.participation";

impl Server {
    /// Whether the scenario room `name` has portable accounts.
    pub(crate) fn is_portable_room(&self, name: &str) -> bool {
        self.directory.portable.is_portable_room(name)
    }

    /// The in-room ID of the account named `name`.
    pub(crate) fn portable_id(&self, name: &str) -> String {
        self.directory.portable.account_id(name).unwrap_or_else(|| name.to_owned())
    }

    /// Rewrites a client action in a portable-account room to in-room IDs (`@<account key>`).
    pub(crate) fn portable_action(&self, a: &mut ClientAction) {
        if !self.is_portable_room(&a.room_name) {
            return;
        }
        a.user = self.portable_id(&a.user);
        a.target = a.target.as_deref().map(|t| self.portable_id(t));
        if let Some(spec) = a.create.as_mut() {
            spec.creator = a.user.clone();
            spec.additional_creators = spec.additional_creators.iter().map(|u| self.portable_id(u)).collect();
            spec.power_levels.users = spec.power_levels.users.iter().map(|(u, l)| (self.portable_id(u), *l)).collect();
        }
    }

    /// This server's key in `room_id` (MSC4345 §2).
    pub(crate) fn room_key(&self, room_id: &str) -> Option<KeyPair> {
        self.directory.portable.server_key(&self.name, room_id)
    }

    /// MSC4348 §8.2: signs with the sender's account key, when it is one of this server's
    /// users, and co-signs with this server's room key (a template for another server's user
    /// stays unsigned).
    pub(crate) fn sign_portable(&self, map: &mut Map<String, Value>, version: &RoomVersion) {
        let sender = map.get("sender").and_then(Value::as_str).unwrap_or_default().to_owned();
        let Some(name) = self.directory.portable.owner_of(&sender).map(str::to_owned) else { return };
        if !self.acts_for(&name) {
            return;
        }
        let room_id = match map.get("room_id").and_then(Value::as_str) {
            Some(r) => r.to_owned(),
            // A v12 create event: the room ID is its reference hash, signatures aside.
            None => {
                format!("!{}", &crypto::event_id_from_signing_bytes(&crypto::event_signing_bytes(map, version))[1..])
            }
        };
        let (Some(account), Some(server)) = (self.directory.portable.account(&name), self.room_key(&room_id)) else {
            return;
        };
        crypto::sign_event(map, version, &account);
        crypto::sign_event(map, version, &server);
    }

    /// MSC4345 §4 "Room creation": the creator's server accepts its own key first.
    pub(crate) fn bootstrap_draft(&self, room_id: &str, creator: &str) -> Option<Draft> {
        let key = self.room_key(room_id)?;
        Some(Draft {
            event_type: P,
            state_key: Some(key.entity),
            sender: creator.to_owned(),
            content: json!({"participation": "accepted", "unverified_domain": self.name}),
        })
    }

    /// The participation of `key` in this server's current state of the room.
    pub(crate) fn participation_of(&self, room_id: &str, key: &str) -> Option<ParticipationState> {
        let pdu = self.rooms.get(room_id)?.current_event(P, key)?;
        match &pdu.content {
            TypedContent::Participation(c) => c.participation,
            _ => None,
        }
    }

    /// `make_join` for a server key that does not participate: the `requested` template this
    /// resident co-signs (MSC4345 §6), or why not.
    pub(crate) fn participation_template(
        &mut self,
        room_id: &str,
        user_id: &str,
        key: &str,
        domain: &str,
        now: SimTime,
    ) -> Result<Option<(Map<String, Value>, &'static RoomVersion)>, String> {
        match self.participation_of(room_id, key) {
            Some(ParticipationState::Accepted) => return Ok(None),
            Some(other) => return Err(format!("the server key is {}", other.as_str())),
            None => {}
        }
        let own = self.room_key(room_id).ok_or("no key in this room")?;
        let d = Draft {
            event_type: P,
            state_key: Some(key.to_owned()),
            sender: user_id.to_owned(),
            content: json!({
                "participation": "requested",
                "unverified_domain": domain,
                "request_authorised_via_server": own.entity,
            }),
        };
        self.draft_on_current(room_id, d, now).map(Some)
    }

    /// `send_join` of a participation request: this resident adds its co-signature (§6 step 4).
    pub(crate) fn cosign_request(&self, pdu: std::sync::Arc<Pdu>) -> Result<std::sync::Arc<Pdu>, String> {
        let TypedContent::Participation(c) = &pdu.content else { return Ok(pdu) };
        let room_id = pdu.room_id.clone().unwrap_or_default();
        let own = self.room_key(&room_id).ok_or("no key in this room")?;
        if c.authorised_via_server.as_deref() != Some(own.entity.as_str()) {
            return Err("the request names another co-signer".into());
        }
        let version = self.rooms.get(&room_id).ok_or("not in the room")?.version;
        let mut map = pdu.json.clone();
        crypto::sign_event(&mut map, version, &own);
        Pdu::from_object(map, version).map(std::sync::Arc::new).map_err(|e| e.to_string())
    }

    /// After every input: requests this server's acceptor should accept, and joins waiting
    /// for this server's key that can go ahead now.
    pub(crate) fn participation_tick(&mut self, now: SimTime, out: &mut Vec<Output>) {
        if !self.directory.portable.is_active() {
            return;
        }
        // Joins waiting for this server's acceptance.
        let ready: Vec<((String, String), SimTime)> = self
            .awaiting
            .iter()
            .filter(|((room_id, _), _)| {
                self.room_key(room_id)
                    .is_some_and(|k| self.participation_of(room_id, &k.entity) == Some(ParticipationState::Accepted))
            })
            .map(|(k, t)| (k.clone(), *t))
            .collect();
        for ((room_id, user), since) in ready {
            self.awaiting.remove(&(room_id.clone(), user.clone()));
            let key = self.room_key(&room_id).map(|k| k.entity).unwrap_or_default();
            self.record(out, SimEvent::ParticipationAccepted { room: room_id.clone(), key, handshake_us: now - since });
            let d = Draft::member(user.clone(), user.clone(), "join");
            match self.create_and_send(&room_id, d, now, out) {
                Ok(_) => self.record(out, SimEvent::Joined { user, room: room_id }),
                Err(reason) => self.record(out, SimEvent::JoinFailed { user, room: room_id, reason, rounds: 1 }),
            }
        }
        // Requests to accept, as the room's acceptor.
        let mut due = Vec::new();
        for (room_id, room) in &self.rooms {
            if !room.version.portable_accounts {
                continue;
            }
            let Some(acceptor) = self.acceptor_of(room_id) else { continue };
            for (key, pdu) in room.current_of_type(P) {
                let TypedContent::Participation(c) = &pdu.content else { continue };
                if c.participation == Some(ParticipationState::Requested)
                    && !self.accepting.contains(&(room_id.clone(), key.clone()))
                {
                    due.push((room_id.clone(), key, acceptor.clone(), c.unverified_domain.clone()));
                }
            }
        }
        for (room_id, key, acceptor, domain) in due {
            self.accepting.insert((room_id.clone(), key.clone()));
            let at = now + self.config.auto_accept_delay_us;
            let timer = Timer::AcceptParticipation { room_id, key, acceptor, domain };
            out.push(Output::SetTimer { at, timer });
        }
    }

    /// The room's acceptor, when it is one of this server's users (its in-room ID).
    fn acceptor_of(&self, room_id: &str) -> Option<String> {
        let room = self.rooms.get(room_id)?;
        let name = self.config.auto_accept_by.clone().or_else(|| {
            let create = room.dag.create().map(|c| room.dag.pdu(c))?;
            self.directory.portable.owner_of(&create.sender).map(str::to_owned)
        })?;
        self.acts_for(&name).then(|| self.portable_id(&name))
    }

    /// The acceptor's delay is over: accept the request if it is still pending.
    pub(crate) fn on_accept_participation(
        &mut self,
        room_id: String,
        key: String,
        acceptor: String,
        domain: Option<String>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        self.accepting.remove(&(room_id.clone(), key.clone()));
        if self.participation_of(&room_id, &key) != Some(ParticipationState::Requested) {
            return;
        }
        let d = Draft {
            event_type: P,
            state_key: Some(key),
            sender: acceptor,
            content: json!({"participation": "accepted", "unverified_domain": domain}),
        };
        if let Err(reason) = self.create_and_send(&room_id, d, now, out) {
            self.record(
                out,
                SimEvent::ServerNote { text: format!("could not accept a participation request: {reason}") },
            );
        }
    }

    /// The joining side received its co-signed request in the room: wait for acceptance.
    pub(crate) fn await_acceptance(&mut self, room_id: &str, user: &str, now: SimTime, out: &mut Vec<Output>) {
        self.awaiting.entry((room_id.to_owned(), user.to_owned())).or_insert(now);
        let key = self.room_key(room_id).map(|k| k.entity).unwrap_or_default();
        self.record(out, SimEvent::ParticipationRequested { room: room_id.to_owned(), key });
        self.participation_tick(now, out);
    }
}

/// Whether `pdu` is a participation request.
pub(crate) fn is_request(pdu: &Pdu) -> bool {
    matches!(&pdu.content, TypedContent::Participation(c) if c.participation == Some(ParticipationState::Requested))
}

/// The key-shaped user ID check of a portable-account room.
pub(crate) fn is_account_id(user: &str) -> bool {
    ids::portable_key_of(user).is_some()
}

impl Server {
    /// Whether this server acts for the account named `name`: one of its users, or an
    /// account that moved here.
    pub(crate) fn acts_for(&self, name: &str) -> bool {
        self.users.iter().any(|u| u == name) || self.moved_in.contains(name)
    }

    /// MSC4348 `move`: this server acts for the account from now on and joins it again,
    /// co-signing the join (R8): through the handshake when its key does not participate yet.
    pub(crate) fn move_account(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        if !self.directory.portable.is_portable_room(&a.room_name) {
            // Plain v12 and MSC4243 rooms: the world sends the move as the new account that
            // the person opened here, which joins like any user.
            return self.join(a, now, out);
        }
        let room_id = a.room_id.clone().ok_or("the room does not exist yet")?;
        let name = self.directory.portable.owner_of(&a.user).ok_or("not a portable account")?.to_owned();
        self.moved_in.insert(name);
        let participating = self.rooms.contains_key(&room_id)
            && self
                .room_key(&room_id)
                .is_some_and(|k| self.participation_of(&room_id, &k.entity) == Some(ParticipationState::Accepted));
        // The multi-server reading (MSC4348 D1): any accepted server co-signs any joined
        // account's events, so a participating server just starts acting for it.
        let multi = self.rooms.get(&room_id).is_some_and(|r| r.version.participation_rules.multi_server);
        let joined = self.user_is_joined(&room_id, &a.user);
        if participating && multi && joined {
            self.record(
                out,
                SimEvent::ServerNote { text: format!("{} acts through this server now (multi-server)", a.user) },
            );
            return Ok(None);
        }
        if participating {
            let d = Draft::member(a.user.clone(), a.user.clone(), "join");
            return self.create_and_send(&room_id, d, now, out).map(Some);
        }
        self.start_remote_join(a, room_id, now, out)
    }

    /// MSC4345 `revoke`: the key whose participation claims `a.server` is revoked.
    pub(crate) fn revoke_server(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        if !self.directory.portable.is_portable_room(&a.room_name) {
            return self.deny_server(a, now, out);
        }
        let room_id = a.room_id.clone().ok_or("the room does not exist yet")?;
        let target = a.server.clone().ok_or("revoke without a server")?;
        let room = self.rooms.get(&room_id).ok_or("this server is not in the room")?;
        let key = room
            .current_of_type(P)
            .into_iter()
            .find_map(|(k, p)| match &p.content {
                TypedContent::Participation(c)
                    if c.unverified_domain.as_deref() == Some(target.as_str())
                        && c.participation != Some(ParticipationState::Revoked) =>
                {
                    Some(k)
                }
                _ => None,
            })
            .ok_or_else(|| format!("no participating key claims {target}"))?;
        let d = Draft {
            event_type: P,
            state_key: Some(key),
            sender: a.user.clone(),
            content: json!({"participation": "revoked", "unverified_domain": target}),
        };
        self.create_and_send(&room_id, d, now, out).map(Some)
    }
}
