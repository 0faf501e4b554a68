//! v11 auth rule 1 / v12 auth rule 1: the create event.

use super::{reject, AuthResult};
use crate::protocol::ids;
use crate::protocol::pdu::{Pdu, TypedContent};
use crate::protocol::room_version::RoomVersion;

pub(super) fn check_create(version: &RoomVersion, pdu: &Pdu) -> AuthResult {
    // v11 auth rule 1.1: a create event has no prev_events.
    if !pdu.prev_events.is_empty() {
        return Err(reject(version, "1.1", "m.room.create has prev_events"));
    }
    if version.room_id_is_create_hash {
        // v12 auth rule 1.2: the room ID is the create event's own hash, so it carries none.
        if pdu.room_id.is_some() {
            return Err(reject(version, "1.2", "a v12 m.room.create must not have a room_id"));
        }
    } else {
        // v11 auth rule 1.2: the room ID's domain is the creator's.
        let room_domain = pdu.room_id.as_deref().and_then(ids::domain_of);
        if room_domain != ids::domain_of(&pdu.sender) {
            return Err(reject(version, "1.2", "room_id domain differs from the sender's domain"));
        }
    }
    let TypedContent::Create(content) = &pdu.content else {
        return Err(reject(version, "1", "not a create event"));
    };
    // v11 auth rule 1.3: the room version must be one this server knows.
    match content.room_version.as_deref() {
        Some(v) if v == version.id => {}
        Some(v) => return Err(reject(version, "1.3", format!("room_version {v:?} is not {:?}", version.id))),
        None => return Err(reject(version, "1.3", "room_version is not a string")),
    }
    // v12 auth rule 1.4: additional_creators must be an array of valid user IDs.
    if version.privileged_creators {
        if let Err(why) = &content.additional_creators {
            return Err(Rejection::v12_1_4(why));
        }
    }
    Ok(())
}

use super::Rejection;

impl Rejection {
    fn v12_1_4(why: &str) -> Rejection {
        Rejection { rule: "v12 1.4".into(), reason: why.to_owned().into() }
    }
}
