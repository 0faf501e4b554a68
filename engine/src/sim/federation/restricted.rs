//! Restricted rooms (Server-Server API, §"Restricted rooms"; room versions 8+, v11 auth rule
//! 4.3.5): a user who is not invited may join when they are a member of a room of the join
//! rules' `allow` list. The resident answering `make_join` checks that membership in its own view
//! of the allowed rooms, names one of its joined users with invite power in the template's
//! `join_authorised_via_users_server`, and co-signs the join in `send_join`; every receiver then
//! requires that server's signature (`protocol::signers`, checked on receipt).

use super::leave::Refusal;
use crate::protocol::ids;
use crate::protocol::pdu::{Membership, Pdu};
use crate::sim::server::actions::content_of;
use crate::sim::server::actions::Draft;
use crate::sim::server::{room_id_of, Output, Server};
use crate::sim::time::SimTime;
use serde_json::{json, Value};
use std::sync::Arc;

/// The rooms of a join rules content's `allow` list (`m.room_membership` entries), in order.
pub fn allowed_rooms(join_rules: &Pdu) -> Vec<String> {
    let content = content_of(join_rules);
    let Some(allow) = content.get("allow").and_then(Value::as_array) else { return Vec::new() };
    allow
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some("m.room_membership"))
        .filter_map(|e| e.get("room_id").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The `m.room.join_rules` content a room is created with: `allow` entries only for the
/// restricted rules.
pub fn join_rules_content(join_rule: &str, allow: &[String]) -> Value {
    if allow.is_empty() || !matches!(join_rule, "restricted" | "knock_restricted") {
        return json!({ "join_rule": join_rule });
    }
    let allow: Vec<Value> = allow.iter().map(|r| json!({"type": "m.room_membership", "room_id": r})).collect();
    json!({ "join_rule": join_rule, "allow": allow })
}

/// The template's extra content (`None` for a plain join): what the joiner must sign as given.
pub(crate) fn template_content(d: &Draft) -> Option<Value> {
    d.content.get("join_authorised_via_users_server").map(|_| d.content.clone())
}

/// The joiner's join event on a template: its content as given when it carries one (it must
/// still be the user's own join), otherwise the plain membership.
pub(crate) fn joiner_draft(user: &str, content: Option<Value>) -> Draft {
    let mut d = Draft::member(user.to_owned(), user.to_owned(), "join");
    if let Some(c) = content.filter(|c| c.get("membership").and_then(Value::as_str) == Some("join")) {
        d.content = c;
    }
    d
}

impl Server {
    /// The join draft `make_join` builds its template from. In a restricted room, for a user
    /// neither invited nor joined, a member of an allowed room (in this server's view): the
    /// content names the first of this server's joined users whose join, authorised by them,
    /// passes the auth rules on the current state (joined, invite level). Refusals as Synapse
    /// answers them: 400 `M_UNABLE_TO_AUTHORISE_JOIN` when this server is in none of the allowed
    /// rooms, 403 when the user is in none, 400 `M_UNABLE_TO_GRANT_JOIN` when no local user may
    /// authorise. A `knock_restricted` room falls back to the plain join (which then needs an
    /// invite).
    pub(crate) fn join_draft(&mut self, room_id: &str, user_id: &str, now: SimTime) -> Result<Draft, Refusal> {
        let plain = Draft::member(user_id.to_owned(), user_id.to_owned(), "join");
        let room = &self.rooms[room_id];
        let Some(rules) = room.current_event("m.room.join_rules", "") else { return Ok(plain) };
        let rule = content_of(rules).get("join_rule").and_then(Value::as_str).unwrap_or("invite").to_owned();
        if !room.version.restricted_joins || !matches!(rule.as_str(), "restricted" | "knock_restricted") {
            return Ok(plain);
        }
        let current = room.current_event("m.room.member", user_id).and_then(Pdu::membership);
        if matches!(current, Some(Membership::Invite | Membership::Join)) {
            return Ok(plain);
        }
        let allowed = allowed_rooms(rules);
        let known: Vec<&String> = allowed.iter().filter(|r| self.has_joined_user(r)).collect();
        let member_of_one = known.iter().any(|r| {
            self.rooms[r.as_str()].current_event("m.room.member", user_id).and_then(Pdu::membership)
                == Some(Membership::Join)
        });
        if !member_of_one {
            return match (rule.as_str(), known.is_empty()) {
                ("knock_restricted", _) => Ok(plain),
                (_, true) => Err((400, "M_UNABLE_TO_AUTHORISE_JOIN")),
                (_, false) => Err((403, "M_FORBIDDEN")),
            };
        }
        let candidates: Vec<String> =
            room.joined_members().iter().filter(|u| ids::domain_of(u) == Some(self.name.as_str())).cloned().collect();
        for authoriser in candidates {
            let content = json!({"membership": "join", "join_authorised_via_users_server": authoriser});
            if self.build_checked(room_id, joiner_draft(user_id, Some(content.clone())), now).is_ok() {
                return Ok(joiner_draft(user_id, Some(content)));
            }
        }
        Err((400, "M_UNABLE_TO_GRANT_JOIN"))
    }

    /// `send_join` of a join naming one of this server's users as its authoriser: co-signed
    /// here (the resident signs what it authorised). A join naming a user of another server is
    /// left as it is (that server's signature is then missing and receivers drop it); a name
    /// that is not one of this server's users is refused.
    pub(crate) fn cosign_restricted_join(&mut self, pdu: Arc<Pdu>, out: &mut Vec<Output>) -> Result<Arc<Pdu>, Refusal> {
        let authoriser =
            content_of(&pdu).get("join_authorised_via_users_server").and_then(Value::as_str).map(str::to_owned);
        let Some(authoriser) = authoriser else { return Ok(pdu) };
        if ids::domain_of(&authoriser) != Some(self.name.as_str()) {
            return Ok(pdu);
        }
        if !self.users.contains(&authoriser) {
            return Err((400, "M_INVALID_PARAM"));
        }
        let version = self.rooms.get(&room_id_of(&pdu)).map(|r| r.version);
        let Some(version) = version else { return Err((404, "M_NOT_FOUND")) };
        let signed = self.sign_own(pdu.json.clone(), version).map_err(|_| (400, "M_BAD_JSON"))?;
        out.push(Output::Created { room_id: room_id_of(&signed), pdu: signed.clone() });
        Ok(signed)
    }
}
