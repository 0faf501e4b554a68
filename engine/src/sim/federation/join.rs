//! `make_join` / `send_join` (v2): the resident's answers and the joining server's steps.

use super::{leave, restricted, JoinTemplate, Outcome, Request, Response, ServerIdx};
use crate::protocol::pdu::{Pdu, TypedContent};
use crate::protocol::room_version::RoomVersion;
use crate::sim::event::SimEvent;
use crate::sim::server::requests::Purpose;
use crate::sim::server::{room_id_of, Output, RoomReplica, Server};
use crate::sim::time::SimTime;
use std::sync::Arc;

impl Server {
    pub(crate) fn answer_make_join(&mut self, room_id: &str, user_id: &str, now: SimTime) -> Outcome {
        if !self.has_joined_user(room_id) {
            return Outcome::Error { status: 404, errcode: "M_NOT_FOUND".into() };
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
        let d = restricted::joiner_draft(&user, t.content);
        let pdu = self.sign_new(version, Some(&room_id), d, t.prev_events, t.auth_events, t.depth, now);
        out.push(Output::Created { room_id: room_id.clone(), pdu: pdu.clone() });
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
        let pdu = match self.cosign_restricted_join(pdu, out) {
            Ok(p) => p,
            Err(refusal) => return leave::refused(refusal),
        };
        // The answer carries the whole history: no catch-up of the joiner needed.
        self.receive_pdu_catching_up(pdu.clone(), from, now, out, Some(from));
        let room = &self.rooms[&room_id];
        let accepted = room.dag.index_of(&pdu.event_id).is_some_and(|i| !room.dag.event(i).is_rejected());
        if !accepted {
            return Outcome::Error { status: 403, errcode: "M_FORBIDDEN".into() };
        }
        self.broadcast(&room_id, pdu, Some(from), now, out);
        let room = &self.rooms[&room_id];
        let history: Vec<Arc<Pdu>> = room.dag.events().map(|(_, e)| e.pdu.clone()).collect();
        Outcome::Ok(Response::Events { pdus: history })
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
        let Some(create) = pdus.iter().find(|p| p.prev_events.is_empty() && p.event_type == "m.room.create") else {
            return;
        };
        let version = match &create.content {
            TypedContent::Create(c) => c.room_version.as_deref().and_then(RoomVersion::by_id),
            _ => None,
        };
        let Some(version) = version else { return };
        self.rooms.entry(room_id.clone()).or_insert_with(|| RoomReplica::new(room_id.clone(), version));
        for p in pdus {
            self.receive_pdu(p, via, now, out);
        }
        self.record(out, SimEvent::Joined { user, room: room_id });
    }
}
