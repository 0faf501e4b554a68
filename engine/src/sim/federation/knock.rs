//! `make_knock` / `send_knock` (v1) (Server-Server API, §"Knocking upon a room"): a user asks
//! to join a `knock` / `knock_restricted` room through a resident, which judges and sends on the
//! knock and answers with `knock_room_state`, the stripped state the knocker's client is shown.
//! A resident then accepts (an invite, `accept_knock`) or denies (a `leave` by a user with kick
//! power, `deny_knock`); see `sim/server/membership.rs`.

use super::invite::invite_room_state;
use super::{JoinTemplate, Outcome, Request, Response, ServerIdx, StrippedState};
use crate::protocol::pdu::{Membership, Pdu};
use crate::sim::event::SimEvent;
use crate::sim::server::requests::Purpose;
use crate::sim::server::{room_id_of, ClientAction, Output, Server};
use crate::sim::time::SimTime;
use std::sync::Arc;

impl Server {
    pub(crate) fn answer_send_knock(
        &mut self,
        pdu: Arc<Pdu>,
        from: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Outcome {
        let sender = pdu.sender.clone();
        let room_id = room_id_of(&pdu);
        match self.receive_membership(pdu, Membership::Knock, from, now, out) {
            Ok(()) => {
                Outcome::Ok(Response::Knocked { knock_room_state: invite_room_state(&self.rooms[&room_id], &sender) })
            }
            Err(refusal) => super::leave::refused(refusal),
        }
    }

    /// A client's `knock` on a room no local user is joined to: `make_knock` through the
    /// action's resident.
    pub(crate) fn remote_knock(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let room_id = a.room_id.clone().ok_or("the room does not exist yet")?;
        // The action's `via` first, then what the room directory gives (as for a join).
        let via = a
            .via
            .iter()
            .chain(&a.directory)
            .copied()
            .find(|v| *v != self.index)
            .ok_or("no resident server to knock through")?;
        let body = Request::MakeKnock { room_id: room_id.clone(), user_id: a.user.clone() };
        self.send_request(via, body, Purpose::MakeKnock { user: a.user.clone(), room_id }, now, out);
        Ok(None)
    }

    pub(crate) fn on_knock_template(
        &mut self,
        user: String,
        room_id: String,
        t: JoinTemplate,
        via: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(pdu) = self.sign_membership_template(&user, "knock", &room_id, t, now, out) else { return };
        self.send_request(via, Request::SendKnock { pdu }, Purpose::SendKnock { user, room_id }, now, out);
    }

    /// The resident took the knock: remember where (a later `leave` retracts it through the
    /// same server) and log what the client is shown.
    pub(crate) fn on_knocked(
        &mut self,
        user: String,
        room_id: String,
        knock_room_state: Vec<StrippedState>,
        via: ServerIdx,
        out: &mut Vec<Output>,
    ) {
        self.knocks.insert((room_id.clone(), user.clone()), via);
        self.record(out, SimEvent::Knocked { user, room: room_id, room_state: knock_room_state.len() });
    }
}
