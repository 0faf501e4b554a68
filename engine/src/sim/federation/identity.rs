//! The identity endpoints (Identity Service API v2 and the Server-Server API's third-party
//! invite calls) as requests between nodes, so that timeouts, partitions and middleboxes apply
//! to them as to every federation call. A homeserver makes the client's identity calls on its
//! user's behalf (`/hash_details`, `/lookup`, `/3pid/bind`): the client's network position is
//! its homeserver's (ARCHITECTURE.md, departures).

use crate::protocol::identity::{HashDetails, LookupAnswer, LookupRequest, LookupsPush, Medium};
use crate::sim::identity_server::{OnBindInvite, StoredInvite};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum IdentityRequest {
    /// `GET /_matrix/identity/v2/hash_details`.
    HashDetails,
    /// `POST /_matrix/identity/v2/lookup`.
    Lookup(LookupRequest),
    /// MSC4004 `POST /_matrix/identity/v2/lookups`: hashes the sender maps, computed with the
    /// recipient's pepper.
    Lookups(LookupsPush),
    /// `POST /_matrix/identity/v2/store-invite`.
    StoreInvite { medium: Medium, address: String, room_id: String, sender: String },
    /// `POST /_matrix/identity/v2/3pid/bind` (the address's validation is not modelled).
    Bind { medium: Medium, address: String, mxid: String },
    /// `GET /_matrix/identity/v2/pubkey/isvalid` (`ephemeral`: `/pubkey/ephemeral/isvalid`),
    /// as the event's `key_validity_url` names it.
    IsValid { public_key: String, ephemeral: bool },
    /// `PUT /_matrix/federation/v1/3pid/onbind`, from the identity server to the bound user's
    /// homeserver.
    OnBind { medium: Medium, address: String, mxid: String, invites: Vec<OnBindInvite> },
    /// `PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}`: the invitee's server
    /// hands the inviting server the partial `m.room.member` invite (`type`, `room_id`,
    /// `sender`, `state_key`, `content`).
    Exchange { room_id: String, event: Map<String, Value> },
}

impl IdentityRequest {
    pub fn name(&self) -> &'static str {
        match self {
            IdentityRequest::HashDetails => "hash_details",
            IdentityRequest::Lookup(_) => "lookup",
            IdentityRequest::Lookups(_) => "lookups",
            IdentityRequest::StoreInvite { .. } => "store_invite",
            IdentityRequest::Bind { .. } => "3pid_bind",
            IdentityRequest::IsValid { .. } => "pubkey_isvalid",
            IdentityRequest::OnBind { .. } => "3pid_onbind",
            IdentityRequest::Exchange { .. } => "exchange_third_party_invite",
        }
    }

    /// Answers a cache may keep: the GETs (`/hash_details`, `/pubkey/isvalid`). A caching
    /// proxy in front of an identity server can so serve an old pepper or an old validity.
    pub fn cache_key(&self) -> Option<String> {
        match self {
            IdentityRequest::HashDetails => Some("identity/v2/hash_details".into()),
            IdentityRequest::IsValid { public_key, ephemeral } => {
                let path = if *ephemeral { "pubkey/ephemeral/isvalid" } else { "pubkey/isvalid" };
                Some(format!("identity/v2/{path}?public_key={public_key}"))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum IdentityResponse {
    HashDetails(HashDetails),
    Lookup(LookupAnswer),
    StoreInvite(StoredInvite),
    IsValid {
        valid: bool,
    },
    /// `{}`: bind, onbind, exchange and pushes done.
    Done,
}
