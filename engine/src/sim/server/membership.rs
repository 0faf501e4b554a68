//! Client-initiated membership flows that need another server: remote joins (make/send join
//! through a resident), invites of remote users (co-signed by the invitee's server), knocks
//! (make/send knock when remote) and the residents' answers to them.

use super::actions::Draft;
use super::requests::Purpose;
use super::{ClientAction, Output, Server};
use crate::protocol::pdu::{Membership, Pdu};
use crate::sim::federation::invite::invite_room_state;
use crate::sim::federation::Request;
use crate::sim::time::SimTime;

impl Server {
    pub(crate) fn join(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let room_id = a.room_id.clone().ok_or("the room does not exist yet")?;
        if self.has_joined_user(&room_id) {
            let d = Draft::member(a.user.clone(), a.user.clone(), "join");
            return self.create_and_send(&room_id, d, now, out).map(Some);
        }
        // Remote join: make_join / send_join through the candidate residents (joining.rs).
        self.start_remote_join(a, room_id, now, out)
    }

    pub(crate) fn invite(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let room_id = a.room_id.clone().ok_or("the room does not exist yet")?;
        let mut target = a.target.clone().ok_or("invite without a target")?;
        let room = self.rooms.get(&room_id).ok_or("this server is not in the room")?;
        if room.version.account_keys {
            // MSC4243 §8: only the invitee's domain knows its key.
            match self.accounts.as_ref().and_then(|acc| acc.current.get(&target)) {
                Some(own) => target = own.clone(),
                None => return self.account_invite(&room_id, &a.user, &target, false, now, out),
            }
        }
        let d = Draft::member(a.user.clone(), target.clone(), "invite");
        let target_server =
            room.routing.server_of(&target).and_then(|s| self.directory.node(s)).ok_or("target's server is unknown")?;
        if target_server == self.index {
            return self.create_and_send(&room_id, d, now, out).map(Some);
        }
        // The invitee's server co-signs first (PUT /invite), then the event enters the room.
        let pdu = self.build_checked(&room_id, d, now)?;
        let id = pdu.event_id.clone();
        let room = &self.rooms[&room_id];
        let body = Request::Invite {
            pdu,
            room_version: room.version.id.to_owned(),
            invite_room_state: invite_room_state(room, &a.user),
        };
        self.send_request(target_server, body, Purpose::Invite { room_id }, now, out);
        Ok(Some(id))
    }

    /// Whether the action's room has a joined user of this server (else membership changes go
    /// through a resident: make_leave, make_knock).
    pub(crate) fn joined_locally(&self, a: &ClientAction) -> bool {
        a.room_id.as_deref().is_some_and(|r| self.has_joined_user(r))
    }

    /// Whether a `leave` / `reject_invite` goes through a resident (make_leave): no local user is
    /// joined, and the user has something to leave there (an invite to reject, a knock to
    /// retract). Any other leave is made here, or refused when this server is not in the room.
    pub(crate) fn leaves_remotely(&self, a: &ClientAction) -> bool {
        let knocked = a.room_id.as_ref().is_some_and(|r| self.knocks.contains_key(&(r.clone(), a.user.clone())));
        !self.joined_locally(a) && (a.kind == crate::scenario::ActionKind::RejectInvite || knocked)
    }

    /// `knock`: made here when a local user is joined (this server is resident), otherwise
    /// through the action's resident.
    pub(crate) fn knock(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        if !self.joined_locally(a) {
            return self.remote_knock(a, now, out);
        }
        let room_id = a.room_id.clone().expect("joined");
        let d = Draft::member(a.user.clone(), a.user.clone(), "knock");
        self.create_and_send(&room_id, d, now, out).map(Some)
    }

    /// The target's membership in this server's current state, which must be a knock.
    fn knocking_target(&self, a: &ClientAction) -> Result<String, String> {
        let room_id = a.room_id.as_deref().ok_or("the room does not exist yet")?;
        let room = self.rooms.get(room_id).ok_or("this server is not in the room")?;
        let target = a.target.clone().ok_or("no target")?;
        match room.current_event("m.room.member", &target).and_then(Pdu::membership) {
            Some(Membership::Knock) => Ok(target),
            other => Err(format!("{target} has not knocked (membership {})", other.map_or("none", Membership::as_str))),
        }
    }

    /// `accept_knock`: the knocker is invited (the invite flow, with its power check).
    pub(crate) fn accept_knock(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        self.knocking_target(a)?;
        self.invite(a, now, out)
    }

    /// `deny_knock`: the knocker's membership set to `leave` by the acting user (the kick rule:
    /// kick level, more power than the knocker).
    pub(crate) fn deny_knock(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let target = self.knocking_target(a)?;
        let room_id = a.room_id.clone().expect("checked");
        let d = Draft::member(a.user.clone(), target, "leave");
        self.create_and_send(&room_id, d, now, out).map(Some)
    }
}
