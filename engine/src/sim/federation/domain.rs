//! The lookups behind the MSC4345 / MSC4348 client view, the answering side (the asking side,
//! the cache and what clients are shown: `server/domain_view.rs`):
//!
//! * MSC4345 §7 `POST /_matrix/key/v3/query` (unstable `/_matrix/key/v3/org.matrix.msc4345/query`):
//!   which of the asked room-scoped server keys this server advertises as its own. The queried
//!   server only admits keys used in rooms the requester also participates in;
//! * MSC4348 client-side `/query/accounts` (unstable
//!   `/_matrix/federation/v1/query/org.matrix.4348.accounts`): the account names (bare
//!   localparts) of the asked account keys this server serves, answered only when the asker
//!   shares the room with the account.
//!
//! Choices where the MSCs are silent:
//! * "participates" is read in the answerer's current state of the room: a participation event
//!   whose `unverified_domain` is the asker's server name (the origin of the request, which
//!   federation authenticates), `requested` or `accepted`. A requested server counts: it holds
//!   the room's state from its handshake and sees events co-signed by the others before its own
//!   acceptance reaches every server;
//! * a server "serves" an account in a room when it acts for the account and its own key
//!   co-signs the account's current membership there (after a move the old server no longer
//!   answers for it).

use crate::protocol::ids;
use crate::protocol::pdu::{ParticipationState, TypedContent};
use crate::protocol::signers;
use crate::sim::federation::{Outcome, Response, ServerIdx};
use crate::sim::server::portable::P;
use crate::sim::server::Server;
use std::collections::BTreeMap;

fn refuse(status: u16, errcode: &str) -> Outcome {
    Outcome::Error { status, errcode: errcode.into() }
}

impl Server {
    /// Whether the server `from` participates in `room_id` by this server's current state (see
    /// the module documentation).
    fn asker_participates(&self, room_id: &str, from: ServerIdx) -> bool {
        let (Some(room), Some(asker)) = (self.rooms.get(room_id), self.directory.names.get(from as usize)) else {
            return false;
        };
        room.current_of_type(P).into_iter().any(|(_, pdu)| match &pdu.content {
            TypedContent::Participation(c) => {
                c.unverified_domain.as_deref() == Some(asker.as_str())
                    && matches!(c.participation, Some(ParticipationState::Requested | ParticipationState::Accepted))
            }
            _ => false,
        })
    }

    /// MSC4345 §7: the asked keys this server advertises as its own in `room_id` (its one room
    /// key, if asked); `403 M_FORBIDDEN` to a server that does not participate in the room.
    pub(crate) fn answer_key_v3_query(&self, from: ServerIdx, room_id: &str, server_keys: &[String]) -> Outcome {
        if !self.rooms.contains_key(room_id) {
            return refuse(404, "M_NOT_FOUND");
        }
        if !self.asker_participates(room_id, from) {
            return refuse(403, "M_FORBIDDEN");
        }
        let own = self.room_key(room_id).map(|k| k.entity);
        let omit = self.domain_view.omit_own_key_for_test;
        let server_keys = server_keys.iter().filter(|k| !omit && Some(k.as_str()) == own.as_deref()).cloned().collect();
        Outcome::Ok(Response::KeyV3Query { server_keys })
    }

    /// MSC4348 client-side: the names of the asked accounts this server serves in `room_id`
    /// (see the module documentation), the others omitted; `403 M_FORBIDDEN` to a server that
    /// does not participate in the room.
    pub(crate) fn answer_portable_accounts(&self, from: ServerIdx, room_id: &str, account_keys: &[String]) -> Outcome {
        let Some(room) = self.rooms.get(room_id) else { return refuse(404, "M_NOT_FOUND") };
        if !self.asker_participates(room_id, from) {
            return refuse(403, "M_FORBIDDEN");
        }
        let own = self.room_key(room_id).map(|k| k.entity);
        let mut names = BTreeMap::new();
        for key in account_keys {
            let account_id = format!("@{key}");
            let Some(owner) = self.directory.portable.owner_of(&account_id) else { continue };
            let co_signer =
                room.current_event("m.room.member", &account_id).and_then(|m| signers::acting_server(room.version, m));
            if !self.acts_for(owner) || co_signer.is_none() || co_signer != own.as_deref() {
                continue;
            }
            if let Some(name) = ids::localpart_of(owner) {
                names.insert(key.clone(), name.to_owned());
            }
        }
        Outcome::Ok(Response::PortableAccounts { account_keys: names })
    }
}
