//! `make_leave` / `send_leave` (v2) (Server-Server API, §"Leaving Rooms (Rejecting Invites)"):
//! a user whose server is not in the room (an invitee declining, a knocker retracting, a user
//! whose server left) leaves through a resident, which builds the template, receives the
//! signed event and sends it to the room. [`Server::answer_membership_template`] also answers
//! `make_knock` ([`super::knock`]): the two differ only in the membership.

use super::{JoinTemplate, Outcome, Request, Response, ServerIdx};
use crate::protocol::pdu::{Membership, Pdu};
use crate::protocol::room_version::RoomVersion;
use crate::sim::event::SimEvent;
use crate::sim::server::actions::Draft;
use crate::sim::server::requests::Purpose;
use crate::sim::server::routing::default_server_of;
use crate::sim::server::{room_id_of, ClientAction, Output, Server};
use crate::sim::time::SimTime;
use std::sync::Arc;

/// An error answer (status, Matrix error code), small where a whole [`Outcome`] is not.
pub(crate) type Refusal = (u16, &'static str);

/// The answer a refusal gives.
pub(crate) fn refused((status, errcode): Refusal) -> Outcome {
    Outcome::Error { status, errcode: errcode.into() }
}

impl Server {
    /// `make_leave` / `make_knock`: a template for `user_id`'s `membership` event, built on the
    /// current state and refused (403) when the auth rules would not allow it there.
    pub(crate) fn answer_membership_template(
        &mut self,
        room_id: &str,
        user_id: &str,
        membership: &str,
        now: SimTime,
    ) -> Outcome {
        if !self.has_joined_user(room_id) {
            return Outcome::Error { status: 404, errcode: "M_NOT_FOUND".into() };
        }
        let d = Draft::member(user_id.to_owned(), user_id.to_owned(), membership);
        match self.build_checked(room_id, d, now) {
            Ok(t) => Outcome::Ok(Response::MembershipTemplate(JoinTemplate {
                room_id: room_id.to_owned(),
                room_version: self.rooms[room_id].version.id.to_owned(),
                prev_events: t.prev_events.clone(),
                auth_events: t.auth_events.clone(),
                depth: t.depth,
                content: None,
                participation_key: None,
            })),
            Err(_) => Outcome::Error { status: 403, errcode: "M_FORBIDDEN".into() },
        }
    }

    /// Signs `user`'s `membership` event on a resident's template.
    pub(crate) fn sign_membership_template(
        &mut self,
        user: &str,
        membership: &str,
        room_id: &str,
        t: JoinTemplate,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Option<Arc<Pdu>> {
        let version = RoomVersion::by_id(&t.room_version)?;
        let d = Draft::member(user.to_owned(), user.to_owned(), membership);
        let pdu = self.sign_new(version, Some(room_id), d, t.prev_events, t.auth_events, t.depth, now);
        out.push(Output::Created { room_id: room_id.to_owned(), pdu: pdu.clone() });
        Some(pdu)
    }

    /// The resident's side of `send_leave` / `send_knock`: the event must be the `membership` of
    /// its own sender and come from the sender's server; it is judged as any received event and,
    /// once accepted, sent to the room's other servers.
    pub(crate) fn receive_membership(
        &mut self,
        pdu: Arc<Pdu>,
        membership: Membership,
        from: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<(), Refusal> {
        let room_id = room_id_of(&pdu);
        if !self.has_joined_user(&room_id) {
            return Err((404, "M_NOT_FOUND"));
        }
        let own = pdu.state_key.as_deref() == Some(pdu.sender.as_str());
        let from_sender = default_server_of(&pdu.sender).and_then(|s| self.directory.node(s)) == Some(from);
        if pdu.event_type != "m.room.member" || pdu.membership() != Some(membership) || !own || !from_sender {
            return Err((400, "M_INVALID_PARAM"));
        }
        self.receive_pdu(pdu.clone(), from, now, out);
        let room = &self.rooms[&room_id];
        let accepted = room.dag.index_of(&pdu.event_id).is_some_and(|i| !room.dag.event(i).is_rejected());
        if !accepted {
            return Err((403, "M_FORBIDDEN"));
        }
        self.broadcast(&room_id, pdu, Some(from), now, out);
        Ok(())
    }

    pub(crate) fn answer_send_leave(
        &mut self,
        pdu: Arc<Pdu>,
        from: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Outcome {
        match self.receive_membership(pdu, Membership::Leave, from, now, out) {
            Ok(()) => Outcome::Ok(Response::Left),
            Err(refusal) => refused(refusal),
        }
    }

    /// A client's `reject_invite`, or `leave` retracting a knock, when no local user is joined:
    /// through the server that invited it (rejection) or the one it knocked through.
    pub(crate) fn remote_leave(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let room_id = a.room_id.clone().ok_or("the room does not exist yet")?;
        let invited = self.invites.get(&room_id).copied();
        let knocked = self.knocks.get(&(room_id.clone(), a.user.clone())).copied();
        let via = match a.kind {
            crate::scenario::ActionKind::RejectInvite => invited.ok_or("no invite to reject")?,
            _ => knocked.ok_or("no knock to retract")?,
        };
        if via == self.index {
            return Err("this server is not in the room".into());
        }
        let body = Request::MakeLeave { room_id: room_id.clone(), user_id: a.user.clone() };
        self.send_request(via, body, Purpose::MakeLeave { user: a.user.clone(), room_id }, now, out);
        Ok(None)
    }

    pub(crate) fn on_leave_template(
        &mut self,
        user: String,
        room_id: String,
        t: JoinTemplate,
        via: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(pdu) = self.sign_membership_template(&user, "leave", &room_id, t, now, out) else { return };
        self.send_request(via, Request::SendLeave { pdu }, Purpose::SendLeave { user, room_id }, now, out);
    }

    /// The resident took the leave: the user is out (an invite declined, a knock retracted).
    pub(crate) fn on_left(&mut self, user: String, room_id: String, out: &mut Vec<Output>) {
        self.knocks.remove(&(room_id.clone(), user.clone()));
        self.record(out, SimEvent::Left { user, room: room_id });
    }
}
