//! `make_join` / `send_join` (v2): the resident's answers and the joining server's steps.

use super::{leave, restricted, JoinTemplate, Outcome, Request, Response, ServerIdx};
use crate::protocol::dag::EventIdx;
use crate::protocol::pdu::{Pdu, TypedContent};
use crate::protocol::room_version::RoomVersion;
use crate::scenario::JoinMode;
use crate::sim::event::SimEvent;
use crate::sim::server::requests::Purpose;
use crate::sim::server::{room_id_of, Output, RoomReplica, Server};
use crate::sim::time::SimTime;
use std::collections::BTreeSet;
use std::sync::Arc;

impl Server {
    pub(crate) fn answer_make_join(
        &mut self,
        room_id: &str,
        user_id: &str,
        server_key: Option<&str>,
        from: ServerIdx,
        now: SimTime,
    ) -> Outcome {
        if !self.has_joined_user(room_id) {
            return Outcome::Error { status: 404, errcode: "M_NOT_FOUND".into() };
        }
        // MSC4345 §6: a server key with no participation gets a `requested` template first.
        if let Some(key) = server_key.filter(|_| self.rooms[room_id].version.participation) {
            let domain = self.directory.names.get(from as usize).cloned().unwrap_or_default();
            let template = match self.participation_template(room_id, user_id, key, &domain, now) {
                // Accepted already: a join that the joining server's key co-signs (MSC4348).
                Ok(None) if self.rooms[room_id].version.portable_accounts => {
                    let d = crate::sim::server::actions::Draft::member(user_id.to_owned(), user_id.to_owned(), "join");
                    self.draft_on_current_with(room_id, d, Some(key.to_owned()), now).map(|t| (t, None))
                }
                Ok(None) => Err(String::new()),
                Ok(Some(t)) => Ok((t, Some(key.to_owned()))),
                Err(why) => Err(why),
            };
            match template {
                Err(why) if why.is_empty() => {}
                Ok(((map, version), participation_key)) => {
                    let field = |k: &str| map.get(k).cloned().unwrap_or(serde_json::Value::Null);
                    let ids = |k: &str| -> Vec<String> {
                        map.get(k).and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
                    };
                    return Outcome::Ok(Response::MakeJoin(JoinTemplate {
                        room_id: room_id.to_owned(),
                        room_version: version.id.to_owned(),
                        prev_events: ids("prev_events"),
                        auth_events: ids("auth_events"),
                        depth: field("depth").as_i64().unwrap_or(1),
                        content: Some(field("content")),
                        participation_key,
                    }));
                }
                Err(_) => return Outcome::Error { status: 403, errcode: "M_FORBIDDEN".into() },
            }
        }
        let d = match self.join_draft(room_id, user_id, now) {
            Ok(d) => d,
            Err(refusal) => return leave::refused(refusal),
        };
        let content = restricted::template_content(&d);
        match self.build_checked(room_id, d, now) {
            Ok(template) => Outcome::Ok(Response::MakeJoin(JoinTemplate {
                room_id: room_id.to_owned(),
                room_version: self.rooms[room_id].version.id.to_owned(),
                prev_events: template.prev_events.clone(),
                auth_events: template.auth_events.clone(),
                depth: template.depth,
                content,
                participation_key: None,
            })),
            Err(_) => Outcome::Error { status: 403, errcode: "M_FORBIDDEN".into() },
        }
    }

    pub(crate) fn on_join_template(
        &mut self,
        user: String,
        room_id: String,
        t: JoinTemplate,
        via: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(version) = RoomVersion::by_id(&t.room_version) else { return };
        let d = match t.participation_key {
            // MSC4345 §6: this server's request, signed by the account and this server's key.
            Some(key) => {
                if self.room_key(&room_id).map(|k| k.entity) != Some(key.clone()) {
                    return;
                }
                crate::sim::server::actions::Draft {
                    event_type: crate::sim::server::portable::P,
                    state_key: Some(key),
                    sender: user.clone(),
                    content: t.content.unwrap_or_default(),
                }
            }
            None => restricted::joiner_draft(&user, t.content),
        };
        let pdu = self.sign_new(version, Some(&room_id), d, t.prev_events, t.auth_events, t.depth, now);
        // A participation request is not complete until the resident co-signs it (its
        // co-signed form is what the room holds, so it is the one created).
        if !crate::sim::server::portable::is_request(&pdu) {
            out.push(Output::Created { room_id: room_id.clone(), pdu: pdu.clone() });
        }
        self.send_request(via, Request::SendJoin { pdu }, Purpose::SendJoin { user, room_id }, now, out);
    }

    pub(crate) fn answer_send_join(
        &mut self,
        pdu: Arc<Pdu>,
        from: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Outcome {
        let room_id = room_id_of(&pdu);
        if !self.rooms.contains_key(&room_id) {
            return Outcome::Error { status: 404, errcode: "M_NOT_FOUND".into() };
        }
        let pdu = match self.cosign_request(pdu) {
            Ok(p) => p,
            Err(_) => return Outcome::Error { status: 403, errcode: "M_FORBIDDEN".into() },
        };
        if crate::sim::server::portable::is_request(&pdu) {
            // The co-signed request is the event's form from now on (the world's store too).
            out.push(Output::Created { room_id: room_id.clone(), pdu: pdu.clone() });
        }
        let pdu = match self.cosign_restricted_join(pdu, out) {
            Ok(p) => p,
            Err(refusal) => return leave::refused(refusal),
        };
        // The answer brings the joiner up to its join (the whole history, or the state and its
        // auth chain): this resident does not catch it up as a newly joined server.
        self.receive_pdu_catching_up(pdu.clone(), from, now, out, Some(from));
        let room = &self.rooms[&room_id];
        let accepted = room.dag.index_of(&pdu.event_id).is_some_and(|i| !room.dag.event(i).is_rejected());
        if !accepted {
            return Outcome::Error { status: 403, errcode: "M_FORBIDDEN".into() };
        }
        self.broadcast(&room_id, pdu.clone(), Some(from), now, out);
        let room = &self.rooms[&room_id];
        match self.config.join_mode {
            JoinMode::FullHistory => {
                let history: Vec<Arc<Pdu>> = room.dag.events().map(|(_, e)| e.pdu.clone()).collect();
                Outcome::Ok(Response::Events { pdus: history })
            }
            JoinMode::State => state_answer(room, &pdu),
        }
    }

    pub(crate) fn on_joined(
        &mut self,
        user: String,
        room_id: String,
        pdus: Vec<Arc<Pdu>>,
        via: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(version) = created_version(pdus.iter()) else { return };
        self.rooms.entry(room_id.clone()).or_insert_with(|| RoomReplica::new(room_id.clone(), version));
        for p in pdus {
            self.receive_pdu(p, via, now, out);
        }
        self.release_held_for_join(&room_id, now, out);
        if self.user_is_joined(&room_id, &user) || !self.rooms[&room_id].version.participation {
            self.record(out, SimEvent::Joined { user, room: room_id });
        } else {
            self.await_acceptance(&room_id, &user, now, out);
        }
    }
}

/// The room version the room's create event (the one without prev events) among `pdus` names.
pub(crate) fn created_version<'a>(mut pdus: impl Iterator<Item = &'a Arc<Pdu>>) -> Option<&'static RoomVersion> {
    let create = pdus.find(|p| p.prev_events.is_empty() && p.event_type == "m.room.create")?;
    match &create.content {
        TypedContent::Create(c) => c.room_version.as_deref().and_then(RoomVersion::by_id),
        _ => None,
    }
}

/// The `send_join` v2 answer of Server-Server API §Joining rooms: the state before the join
/// event as this resident resolved it, the auth chain of that state and of the join event
/// (oldest first: the joiner stores each after its auth events), and the join event.
fn state_answer(room: &RoomReplica, join: &Arc<Pdu>) -> Outcome {
    let idx = room.dag.index_of(&join.event_id).expect("accepted above");
    let state: Vec<EventIdx> = room.state_before_event(idx).values().copied().collect();
    let chain = auth_chain(room, state.iter().copied().chain([idx]));
    let pdus = |ids: &mut dyn Iterator<Item = EventIdx>| ids.map(|i| room.dag.event(i).pdu.clone()).collect();
    let state_set: BTreeSet<EventIdx> = state.iter().copied().collect();
    Outcome::Ok(Response::SendJoin {
        state: pdus(&mut sorted(state.iter().copied()).into_iter()),
        auth_chain: pdus(&mut chain.into_iter().filter(|i| !state_set.contains(i))),
        event: join.clone(),
    })
}

/// Every event in the auth chains of `from` (not `from` themselves unless one is in another's
/// chain), in DAG order: an event comes after its auth events.
pub(crate) fn auth_chain(room: &RoomReplica, from: impl Iterator<Item = EventIdx>) -> Vec<EventIdx> {
    let mut seen: BTreeSet<EventIdx> = BTreeSet::new();
    let mut todo: Vec<EventIdx> = from.flat_map(|i| room.dag.event(i).auth.clone()).collect();
    while let Some(i) = todo.pop() {
        if seen.insert(i) {
            todo.extend(room.dag.event(i).auth.iter().copied());
        }
    }
    seen.into_iter().collect()
}

fn sorted(ids: impl Iterator<Item = EventIdx>) -> Vec<EventIdx> {
    let mut v: Vec<EventIdx> = ids.collect();
    v.sort_unstable();
    v
}

impl Server {
    /// The joiner's side of a `join.mode = "state"` answer (Synapse's `_auth_and_persist_outliers`,
    /// then the join judged against the given state): each state and auth-chain event passes the
    /// receipt checks 1–3 and the rules against its own auth events and is stored as an
    /// outlier; the join event is judged against the state (the rejected outliers left out) and
    /// becomes the room's first timeline event and forward extremity. Then the history before
    /// the join is backfilled (see [`Server::backfill`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_joined_state(
        &mut self,
        user: String,
        room_id: String,
        state: Vec<Arc<Pdu>>,
        auth_chain: Vec<Arc<Pdu>>,
        event: Arc<Pdu>,
        via: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(version) = created_version(state.iter()) else { return };
        self.rooms.entry(room_id.clone()).or_insert_with(|| RoomReplica::new(room_id.clone(), version));
        let state_ids: BTreeSet<String> = state.iter().map(|p| p.event_id.clone()).collect();
        let mut given: Vec<Arc<Pdu>> = auth_chain.into_iter().chain(state).collect();
        given.sort_by(|a, b| (a.depth, &a.event_id).cmp(&(b.depth, &b.event_id)));
        self.store_outliers(&room_id, given, out);
        let room = self.rooms.get_mut(&room_id).expect("created above");
        let mut before = crate::protocol::dag::StateMap::new();
        for id in &state_ids {
            let Some(i) = room.dag.index_of(id) else { continue };
            if let (Some(key), false) = (room.dag.event(i).state_key, room.dag.event(i).is_rejected()) {
                before.insert(key, i);
            }
        }
        if room.in_timeline(&event.event_id) {
            return; // a second answer for the same join (a retried request)
        }
        if let Some(missing) = event.auth_events.iter().find(|a| !room.has(a)) {
            // The answer's auth chain did not pass its checks (a signature): the join cannot be
            // judged, so it failed; a replica holding nothing but outliers is not kept.
            let reason = format!("send_join answer from node {via} lacks a checked auth event {missing}");
            if room.extremities.is_empty() {
                self.rooms.remove(&room_id);
            }
            self.record(out, SimEvent::JoinFailed { user, room: room_id.clone(), reason, rounds: 1 });
            self.forget_held_for_join(&room_id);
            return;
        }
        let id = event.event_id.clone();
        let prev_events = event.prev_events.clone();
        let event_pdu = event.clone();
        let decision = room.ingest_with_state(event, before);
        let joined = matches!(decision, crate::sim::server::Decision::Accepted);
        self.record(out, crate::sim::server::receipt::decision_record(id, decision));
        self.drain_pending(&room_id, out);
        self.release_held_for_join(&room_id, now, out);
        let request = crate::sim::server::portable::is_request(&event_pdu);
        if joined && request {
            self.await_acceptance(&room_id, &user, now, out);
            self.backfill(&room_id, prev_events, via, now, out);
        } else if joined {
            self.record(out, SimEvent::Joined { user, room: room_id.clone() });
            self.backfill(&room_id, prev_events, via, now, out);
        }
    }

    /// Stores events given as a state, an auth chain or a gap's state as outliers, each once
    /// its auth events are held (repeated passes over `pdus`, oldest first); events already held
    /// are skipped and those whose auth events never arrive are left out.
    pub(crate) fn store_outliers(&mut self, room_id: &str, mut pdus: Vec<Arc<Pdu>>, out: &mut Vec<Output>) {
        let version = self.rooms[room_id].version;
        loop {
            let mut progress = false;
            let mut rest = Vec::new();
            for pdu in pdus {
                let room = &self.rooms[room_id];
                if room.has(&pdu.event_id) {
                    continue;
                }
                if !pdu.auth_events.iter().all(|a| room.has(a)) {
                    rest.push(pdu);
                    continue;
                }
                progress = true;
                let Some(checked) = self.checked_copy(&pdu, version, out) else { continue };
                let room = self.rooms.get_mut(room_id).expect("caller checked");
                let decision = room.store_outlier(checked);
                self.record(out, crate::sim::server::receipt::decision_record(pdu.event_id.clone(), decision));
            }
            pdus = rest;
            if !progress || pdus.is_empty() {
                return;
            }
        }
    }
}
