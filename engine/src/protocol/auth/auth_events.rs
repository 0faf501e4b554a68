//! The rules about an event's own `auth_events` list: v11 auth rule 2, v12 auth rules 2–3.
//! They are settled once, on receipt; state resolution's replay does not re-run them.

use super::{auth_types, reject, AuthResult};
use crate::protocol::pdu::{EventKind, Pdu};
use crate::protocol::room_version::RoomVersion;

/// One entry of an event's `auth_events`, as the receiver knows it.
#[derive(Debug, Clone, Copy)]
pub struct AuthEventRef<'a> {
    pub pdu: &'a Pdu,
    /// The receiver rejected this auth event earlier.
    pub rejected: bool,
}

/// Checks `pdu`'s `auth_events` list. `room_create` is the create event the `room_id` names,
/// when this server has accepted one (v12 auth rule 2); it is ignored for v11.
pub fn check_auth_events_list(
    version: &RoomVersion,
    pdu: &Pdu,
    auth_events: &[AuthEventRef<'_>],
    room_create: Option<&Pdu>,
) -> AuthResult {
    if pdu.kind == EventKind::Create {
        return Ok(()); // rule 1 decides alone
    }
    // v12 auth rule 2: the room ID must name an accepted create event.
    if version.room_id_is_create_hash {
        let named = pdu.room_id.as_deref().and_then(|r| r.strip_prefix('!'));
        let ok = room_create.is_some_and(|c| Some(&c.event_id[1..]) == named);
        if !ok {
            return Err(super::Rejection {
                rule: "v12 2".into(),
                reason: "room_id does not name an accepted create event".into(),
            });
        }
    }
    let expected = auth_types(version, pdu);
    let mut seen: Vec<(&str, &str)> = Vec::with_capacity(auth_events.len());
    let mut has_create = false;
    for entry in auth_events {
        let auth = entry.pdu;
        let key = (auth.event_type.as_str(), auth.state_key.as_deref().unwrap_or(""));
        // v11 auth rule 2.5 (v12 3.4): auth events come from the same room. A v12 create event
        // has no room_id; listing it is refused below by 3.2 anyway.
        if (auth.kind != EventKind::Create || !version.room_id_is_create_hash) && auth.room_id != pdu.room_id {
            return Err(reject(version, "2.5", format!("auth event {} is from another room", auth.event_id)));
        }
        // v11 auth rule 2.1: no duplicate (type, state_key).
        if seen.contains(&key) {
            return Err(reject(version, "2.1", format!("duplicate auth event for ({}, {})", key.0, key.1)));
        }
        seen.push(key);
        // v11 auth rule 2.2: only the selected auth types (v12: never the create event).
        if auth.state_key.is_none() || !expected.iter().any(|(_, k)| (k.event_type, k.state_key) == key) {
            return Err(reject(version, "2.2", format!("unexpected auth event {} of type {}", auth.event_id, key.0)));
        }
        // v11 auth rule 2.3: no rejected auth events.
        if entry.rejected {
            return Err(reject(version, "2.3", format!("auth event {} was rejected", auth.event_id)));
        }
        has_create |= auth.kind == EventKind::Create;
    }
    // v11 auth rule 2.4: the create event must be among them (removed in v12).
    if version.create_in_auth_events && !has_create {
        return Err(reject(version, "2.4", "no m.room.create among the auth events"));
    }
    Ok(())
}
