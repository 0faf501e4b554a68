//! Client-initiated membership flows that need another server: remote joins (make/send join
//! through a resident) and invites of remote users (co-signed by the invitee's server).

use super::actions::Draft;
use super::requests::Purpose;
use super::{ClientAction, Output, Server};
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
        let target = a.target.clone().ok_or("invite without a target")?;
        let d = Draft::member(a.user.clone(), target.clone(), "invite");
        let room = self.rooms.get(&room_id).ok_or("this server is not in the room")?;
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
}
