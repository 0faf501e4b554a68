//! Server ACLs (`m.room.server_acl`, Server-Server API "Server Access Control Lists"): what a
//! plain v12 or MSC4243 room has instead of MSC4345's revocation. An ACL is enforced at the
//! network layer, not by the auth rules: a receiving server refuses *requests* whose origin
//! the room's current ACL denies (each PDU of a `/send` on its own, and `make_join`,
//! `send_join`, `invite`, knocks, leaves, `state_ids`, `backfill`, `event_auth`,
//! `get_missing_events`), while an event of a denied server that another server relays (a
//! missing event fetched from an allowed server) is judged by the auth rules alone and
//! accepted. The scenario's `revoke` action denies a server this way outside portable-account
//! rooms.

use super::actions::Draft;
use super::{ClientAction, Output, Server};
use crate::protocol::server_acl::denies;
use crate::sim::event::SimEvent;
use crate::sim::federation::{Outcome, Request, ServerIdx};
use crate::sim::time::SimTime;
use serde_json::json;
use std::sync::Arc;

const ACL: &str = "m.room.server_acl";

impl Server {
    /// Whether the current state of `room_id` here has an ACL that denies the node `origin`.
    pub(crate) fn acl_denies(&self, room_id: &str, origin: ServerIdx) -> bool {
        let Some(room) = self.rooms.get(room_id) else { return false };
        let Some(acl) = room.current_event(ACL, "") else { return false };
        let Some(name) = self.directory.names.get(origin as usize) else { return false };
        acl.json.get("content").is_some_and(|c| denies(c, name))
    }

    /// The ACL gate in front of a request from `origin`: `Some(403)` when the room it concerns
    /// denies the origin; for a transaction, drops the denied PDUs (the rest go on).
    pub(crate) fn acl_gate(&self, origin: ServerIdx, body: &mut Request, out: &mut Vec<Output>) -> Option<Outcome> {
        let origin_name = || self.directory.names.get(origin as usize).cloned().unwrap_or_default();
        if let Request::Transaction { pdus } = body {
            let before = pdus.len();
            let mut kept: Vec<Arc<crate::protocol::pdu::Pdu>> = Vec::with_capacity(before);
            for pdu in pdus.drain(..) {
                let room_id = super::room_id_of(&pdu);
                if self.acl_denies(&room_id, origin) {
                    let event = Some(pdu.event_id.clone());
                    self.record(
                        out,
                        SimEvent::AclDenied { room: room_id, origin: origin_name(), request: "send".into(), event },
                    );
                } else {
                    kept.push(pdu);
                }
            }
            *pdus = kept;
            return None;
        }
        let room_id = match &*body {
            Request::MakeJoin { room_id, .. }
            | Request::MakeKnock { room_id, .. }
            | Request::MakeLeave { room_id, .. }
            | Request::StateIds { room_id, .. }
            | Request::EventAuth { room_id, .. }
            | Request::Backfill { room_id, .. }
            | Request::GetMissingEvents { room_id, .. } => room_id.clone(),
            Request::SendJoin { pdu }
            | Request::SendKnock { pdu }
            | Request::SendLeave { pdu }
            | Request::Invite { pdu, .. } => super::room_id_of(pdu),
            _ => return None,
        };
        if !self.acl_denies(&room_id, origin) {
            return None;
        }
        self.record(
            out,
            SimEvent::AclDenied { room: room_id, origin: origin_name(), request: body.name().into(), event: None },
        );
        Some(Outcome::Error { status: 403, errcode: "M_FORBIDDEN".into() })
    }

    /// `revoke` outside portable-account rooms: the room's ACL denies `a.server` from now on
    /// (added to the servers it already denies; everything else stays allowed).
    pub(crate) fn deny_server(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let room_id = a.room_id.clone().ok_or("the room does not exist yet")?;
        let target = a.server.clone().ok_or("revoke without a server")?;
        let room = self.rooms.get(&room_id).ok_or("this server is not in the room")?;
        let mut deny: Vec<String> = room
            .current_event(ACL, "")
            .and_then(|p| p.json.get("content")?.get("deny")?.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        if !deny.contains(&target) {
            deny.push(target);
        }
        let d = Draft {
            event_type: ACL,
            state_key: Some(String::new()),
            sender: a.user.clone(),
            content: json!({"allow": ["*"], "deny": deny, "allow_ip_literals": false}),
        };
        self.create_and_send(&room_id, d, now, out).map(Some)
    }
}
