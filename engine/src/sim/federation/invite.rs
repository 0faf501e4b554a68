//! `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`: the invitee's server co-signs the
//! invite; the inviting server then sends it to the room. As in the spec's v2 endpoint the
//! request carries the room's version (the invitee may not hold the room) and
//! `invite_room_state`, the stripped state its client is shown.

use super::{Outcome, Response, StrippedState};
use crate::protocol::pdu::{Membership, Pdu};
use crate::protocol::room_version::RoomVersion;
use crate::sim::federation::ServerIdx;
use crate::sim::server::room::RoomReplica;
use crate::sim::server::routing::default_server_of;
use crate::sim::server::{room_id_of, Output, Server};
use crate::sim::time::SimTime;
use std::sync::Arc;

/// State types shown to an invitee (the spec's recommended `invite_room_state`), plus the
/// inviter's membership as Synapse sends it.
const STRIPPED_TYPES: [&str; 6] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
];

/// The stripped state of `room` an invitee is shown for an invite sent by `sender`.
pub fn invite_room_state(room: &RoomReplica, sender: &str) -> Vec<StrippedState> {
    let keys = STRIPPED_TYPES.iter().map(|t| (*t, "")).chain(std::iter::once(("m.room.member", sender)));
    keys.filter_map(|(t, s)| room.current_event(t, s))
        .map(|p| StrippedState {
            event_type: p.event_type.clone(),
            state_key: p.state_key.clone().unwrap_or_default(),
            sender: p.sender.clone(),
            content: p.json.get("content").cloned().unwrap_or_default(),
        })
        .collect()
}

impl Server {
    /// The invitee's server: checks the invite is for one of its users and comes from the
    /// sender's server, co-signs it and remembers where to join through.
    pub(crate) fn answer_invite(
        &mut self,
        pdu: Arc<Pdu>,
        room_version: &str,
        from: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Outcome {
        let Some(version) = RoomVersion::by_id(room_version) else {
            return Outcome::Error { status: 400, errcode: "M_INCOMPATIBLE_ROOM_VERSION".into() };
        };
        let target = pdu.state_key.clone().unwrap_or_default();
        let ours = default_server_of(&target).and_then(|s| self.directory.node(s)) == Some(self.index);
        let from_sender = default_server_of(&pdu.sender).and_then(|s| self.directory.node(s)) == Some(from);
        if !ours || pdu.membership() != Some(Membership::Invite) || !from_sender {
            return Outcome::Error { status: 400, errcode: "M_INVALID_PARAM".into() };
        }
        let Ok(signed) = self.sign_own(pdu.json.clone(), version) else {
            return Outcome::Error { status: 400, errcode: "M_BAD_JSON".into() };
        };
        let room_id = room_id_of(&signed);
        self.invites.insert(room_id.clone(), from);
        out.push(Output::Created { room_id, pdu: signed.clone() });
        self.on_invite_answered(&signed, now, out);
        Outcome::Ok(Response::Invite { pdu: signed })
    }

    /// The inviting server: the co-signed invite enters the room.
    pub(crate) fn on_invite_signed(&mut self, room_id: String, pdu: Arc<Pdu>, now: SimTime, out: &mut Vec<Output>) {
        if !self.rooms.contains_key(&room_id) {
            return;
        }
        self.commit_local(&room_id, pdu.clone(), now, out);
        self.send_with_behaviour(&room_id, pdu, now, out);
    }
}
