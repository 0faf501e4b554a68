//! The messages servers exchange: PDU transactions and request/response calls. Every non-PDU
//! federation call (make/send join, invites, missing events; later `/query/accounts`, key
//! validity, identity lookups) is a [`Request`] answered by a [`Response`] with an HTTP-like
//! [`Outcome`], so timeouts, retries and middleboxes apply to all of them the same way.
//!
//! One file per endpoint family holds the endpoint's server-side handlers (answering a request,
//! acting on an answer): [`send`], [`missing_events`], [`join`] (with [`restricted`] joins),
//! [`invite`], [`knock`], [`leave`], [`domain`] (MSC4345 §7 key query, MSC4348 account
//! names). The wire types are
//! here and derive serde: the log writes them as they are, PDUs by event ID
//! ([`super::event::pdu_ref`]).

pub mod backfill;
pub mod domain;
pub mod identity;
pub mod invite;
pub mod join;
pub mod keys;
pub mod knock;
pub mod leave;
pub mod missing_events;
pub mod restricted;
pub mod send;
pub mod state_ids;

use super::event::pdu_ref;
use crate::protocol::pdu::Pdu;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Index of a node (homeserver, later identity server or key notary) in the world.
pub type ServerIdx = u32;
/// A request's identifier, unique per sending server.
pub type RequestId = u64;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    Request { id: RequestId, body: Request },
    Response { id: RequestId, outcome: Outcome },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "endpoint", rename_all = "snake_case")]
pub enum Request {
    /// `PUT /_matrix/federation/v1/send/{txnId}`: up to 50 PDUs.
    #[serde(rename = "send")]
    Transaction {
        #[serde(with = "pdu_ref::many")]
        pdus: Vec<Arc<Pdu>>,
    },
    /// `POST /_matrix/federation/v1/get_missing_events/{roomId}`.
    GetMissingEvents { room_id: String, earliest: Vec<String>, latest: Vec<String>, limit: u32 },
    /// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`.
    MakeJoin {
        room_id: String,
        user_id: String,
        /// MSC4345 §6 (roomsim's handshake): the joining server's key in the room.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server_key: Option<String>,
    },
    /// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`.
    SendJoin {
        #[serde(with = "pdu_ref::one")]
        pdu: Arc<Pdu>,
    },
    /// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`: the event, the room's version
    /// and the stripped state the invitee's client is shown (`invite_room_state`).
    Invite {
        #[serde(with = "pdu_ref::one")]
        pdu: Arc<Pdu>,
        room_version: String,
        invite_room_state: Vec<StrippedState>,
    },
    /// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`.
    MakeKnock { room_id: String, user_id: String },
    /// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`.
    SendKnock {
        #[serde(with = "pdu_ref::one")]
        pdu: Arc<Pdu>,
    },
    /// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`.
    MakeLeave { room_id: String, user_id: String },
    /// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`.
    SendLeave {
        #[serde(with = "pdu_ref::one")]
        pdu: Arc<Pdu>,
    },
    /// `GET /_matrix/key/v2/server`: the server's own keys (`server_name` is the host asked,
    /// kept so that a cache can key on it).
    #[serde(rename = "key_server")]
    ServerKeys { server_name: String },
    /// `POST /_matrix/key/v2/query` to a notary: per server, per key ID, the
    /// `minimum_valid_until_ts` the answer must meet.
    KeyQuery { server_keys: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> },
    /// `GET /_matrix/federation/v1/state_ids/{roomId}?event_id=…`: the IDs of the state before
    /// an event and of that state's auth chain.
    StateIds { room_id: String, event_id: String },
    /// `GET /_matrix/federation/v1/event/{eventId}`: one event.
    GetEvent { room_id: String, event_id: String },
    /// `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`: the event's whole auth chain
    /// (answered as `Events`, the spec's `auth_chain`).
    EventAuth { room_id: String, event_id: String },
    /// `GET /_matrix/federation/v1/backfill/{roomId}?v=…&limit=…`: history walking back from
    /// (and including) the events `v`.
    Backfill { room_id: String, v: Vec<String>, limit: u32 },
    /// MSC4243 §4 `POST /_matrix/federation/v1/query/accounts` (unstable
    /// `/_matrix/federation/unstable/org.matrix.msc4243/query/accounts`): account names of keys
    /// claiming the asked domain, and the erasure feed.
    QueryAccounts(crate::sim::accounts::query::QueryAccounts),
    /// MSC4243 §8: the name → key step of an invite. The inviting server sends the invite with
    /// the account *name* user ID as `state_key`; the invitee's server answers it rewritten to
    /// the account key user ID and signed by that key (`PUT /_matrix/federation/v2/invite`,
    /// room versions with account keys). `ban`: the pre-emptive ban endpoint (§8, `/v1/ban`),
    /// the same step without the invitee's signature or the stripped state. The event travels
    /// as JSON, not as a PDU of the room: it is not final until the inviter signs the answer.
    AccountInvite {
        event: serde_json::Map<String, serde_json::Value>,
        room_version: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        ban: bool,
    },
    /// MSC4345 §7 `POST /_matrix/key/v3/query` (unstable
    /// `/_matrix/key/v3/org.matrix.msc4345/query`): which of `server_keys` the asked server
    /// advertises as its own in `room_id` ([`domain`]).
    KeyV3Query { room_id: String, server_keys: Vec<String> },
    /// MSC4348 client-side `/query/accounts` (unstable
    /// `/_matrix/federation/v1/query/org.matrix.4348.accounts`): the account names of
    /// `account_keys` the asked server serves in `room_id` ([`domain`]).
    PortableAccounts { room_id: String, account_keys: Vec<String> },
    /// The identity endpoints ([`identity`]).
    Identity(identity::IdentityRequest),
}

/// A stripped state event (`type`, `state_key`, `sender`, `content`), as in `invite_room_state`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrippedState {
    #[serde(rename = "type")]
    pub event_type: String,
    pub state_key: String,
    pub sender: String,
    pub content: serde_json::Value,
}

impl Request {
    /// The key under which a caching middlebox may store this request's answer; `None` for
    /// requests whose answers must not be cached (all of today's: they change state or depend
    /// on it). Lookups such as `/query/accounts` or key-validity checks return `Some`.
    pub fn cache_key(&self) -> Option<String> {
        match self {
            // Key lookups are plain GETs / idempotent queries: caches may keep them.
            Request::ServerKeys { server_name } => Some(format!("key/v2/server/{server_name}")),
            // Per servers and key IDs asked, not per `minimum_valid_until_ts` (a timestamp per
            // event: keyed on it, no two queries would ever share an entry).
            Request::KeyQuery { server_keys } => {
                let asked: Vec<String> = server_keys
                    .iter()
                    .map(|(server, ids)| format!("{server}:{}", ids.keys().cloned().collect::<Vec<_>>().join(",")))
                    .collect();
                Some(format!("key/v2/query/{}", asked.join(";")))
            }
            // MSC4243 §4's rationale: CDNs and proxies may cache this POST (keyed on its body,
            // or misconfigured on its path alone: see `Middlebox`).
            Request::QueryAccounts(q) => Some(format!("query/accounts/{}", q.account_keys.join(","))),
            // MSC4345 §2: a server's key in a room is fixed for the room's lifetime, so the
            // answer to a participating asker does not change.
            Request::KeyV3Query { room_id, server_keys } => {
                Some(format!("key/v3/query/{room_id}/{}", server_keys.join(",")))
            }
            // Changes with every move (MSC4348: the serving server of an account changes).
            Request::PortableAccounts { .. } => None,
            Request::Identity(r) => r.cache_key(),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Request::Transaction { .. } => "send",
            Request::GetMissingEvents { .. } => "get_missing_events",
            Request::MakeJoin { .. } => "make_join",
            Request::SendJoin { .. } => "send_join",
            Request::Invite { .. } => "invite",
            Request::MakeKnock { .. } => "make_knock",
            Request::SendKnock { .. } => "send_knock",
            Request::MakeLeave { .. } => "make_leave",
            Request::SendLeave { .. } => "send_leave",
            Request::ServerKeys { .. } => "key_server",
            Request::KeyQuery { .. } => "key_query",
            Request::StateIds { .. } => "state_ids",
            Request::GetEvent { .. } => "event",
            Request::EventAuth { .. } => "event_auth",
            Request::Backfill { .. } => "backfill",
            Request::QueryAccounts(_) => "query_accounts",
            Request::AccountInvite { ban: false, .. } => "account_invite",
            Request::AccountInvite { ban: true, .. } => "ban",
            Request::KeyV3Query { .. } => "key_v3_query",
            Request::PortableAccounts { .. } => "portable_accounts",
            Request::Identity(r) => r.name(),
        }
    }

    /// The PDUs this request carries (the log writes each PDU once, before its first use).
    pub fn pdus(&self) -> &[Arc<Pdu>] {
        match self {
            Request::Transaction { pdus } => pdus,
            Request::SendJoin { pdu }
            | Request::Invite { pdu, .. }
            | Request::SendKnock { pdu }
            | Request::SendLeave { pdu } => std::slice::from_ref(pdu),
            Request::GetMissingEvents { .. }
            | Request::MakeJoin { .. }
            | Request::MakeKnock { .. }
            | Request::MakeLeave { .. }
            | Request::ServerKeys { .. }
            | Request::KeyQuery { .. }
            | Request::StateIds { .. }
            | Request::GetEvent { .. }
            | Request::EventAuth { .. }
            | Request::Backfill { .. }
            | Request::QueryAccounts(_)
            | Request::AccountInvite { .. }
            | Request::KeyV3Query { .. }
            | Request::PortableAccounts { .. }
            | Request::Identity(_) => &[],
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(Response),
    /// An HTTP error answer: status and Matrix error code.
    Error {
        status: u16,
        errcode: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    /// `/send` accepted (per-PDU results are not modelled: rejection is not an error).
    #[serde(rename = "send")]
    Transaction,
    /// A list of events (`get_missing_events`; `send_join`'s state, auth chain and history).
    Events {
        #[serde(with = "pdu_ref::many")]
        pdus: Vec<Arc<Pdu>>,
    },
    /// `make_join`'s template.
    MakeJoin(JoinTemplate),
    /// The invite, now co-signed by the invitee's server.
    Invite {
        #[serde(with = "pdu_ref::one")]
        pdu: Arc<Pdu>,
    },
    /// `make_knock`'s or `make_leave`'s template (the same fields as `make_join`'s).
    MembershipTemplate(JoinTemplate),
    /// `send_knock` accepted: the stripped state the knocking user's client is shown.
    Knocked { knock_room_state: Vec<StrippedState> },
    /// `send_leave` accepted (an empty object in the spec).
    Left,
    /// `GET /_matrix/key/v2/server`'s signed key object ([`keys::server_keys_object`]).
    ServerKeys { keys: serde_json::Map<String, serde_json::Value> },
    /// A notary's `server_keys`: each origin's signed object with the notary's signature added.
    KeyQuery { server_keys: Vec<serde_json::Map<String, serde_json::Value>> },
    /// `send_join` v2 in `join.mode = "state"` (Server-Server API, §Joining rooms): the state
    /// before the join event, the auth chain of that state and of the join, and the join event.
    SendJoin {
        #[serde(with = "pdu_ref::many")]
        state: Vec<Arc<Pdu>>,
        #[serde(with = "pdu_ref::many")]
        auth_chain: Vec<Arc<Pdu>>,
        #[serde(with = "pdu_ref::one")]
        event: Arc<Pdu>,
    },
    /// `/state_ids`: the state before the event and its auth chain, by event ID.
    StateIds { pdu_ids: Vec<String>, auth_chain_ids: Vec<String> },
    /// `/query/accounts`' `200` (MSC4243 §4).
    QueryAccounts(crate::sim::accounts::query::AccountsAnswer),
    /// The rewritten event of an [`Request::AccountInvite`] (MSC4243 §8), as JSON.
    AccountInvite { event: serde_json::Map<String, serde_json::Value> },
    /// [`Request::KeyV3Query`]'s `200`: the asked keys the server advertises as its own.
    KeyV3Query { server_keys: Vec<String> },
    /// [`Request::PortableAccounts`]'s `200`: account key → account name (a bare localpart),
    /// for the accounts the server serves; other keys are omitted.
    PortableAccounts { account_keys: std::collections::BTreeMap<String, String> },
    /// An identity endpoint's `200` ([`identity`]).
    Identity(identity::IdentityResponse),
}

impl Response {
    /// What a reverse proxy that drops unknown entries leaves of this answer: the per-key
    /// entries of key answers (`verify_keys`, `old_verify_keys`) that `known(server, key_id)`
    /// refuses. Returns how many it removed. The other answers have no per-key entries.
    pub fn drop_unknown_entries(&mut self, known: &dyn Fn(&str, &str) -> bool) -> u64 {
        match self {
            Response::ServerKeys { keys: object } => keys::strip_entries(object, known),
            Response::KeyQuery { server_keys } => {
                server_keys.iter_mut().map(|object| keys::strip_entries(object, known)).sum()
            }
            _ => 0,
        }
    }

    pub fn pdus(&self) -> impl Iterator<Item = &Arc<Pdu>> {
        self.pdu_lists().into_iter().flatten()
    }

    fn pdu_lists(&self) -> [&[Arc<Pdu>]; 3] {
        match self {
            Response::Events { pdus } => [pdus, &[], &[]],
            Response::Invite { pdu } => [std::slice::from_ref(pdu), &[], &[]],
            Response::SendJoin { state, auth_chain, event } => [state, auth_chain, std::slice::from_ref(event)],
            Response::Transaction
            | Response::MakeJoin(_)
            | Response::StateIds { .. }
            | Response::MembershipTemplate(_)
            | Response::Knocked { .. }
            | Response::Left
            | Response::ServerKeys { .. }
            | Response::KeyQuery { .. }
            | Response::QueryAccounts(_)
            | Response::AccountInvite { .. }
            | Response::KeyV3Query { .. }
            | Response::PortableAccounts { .. }
            | Response::Identity(_) => [&[], &[], &[]],
        }
    }
}

impl Message {
    /// The PDUs this message carries.
    pub fn pdus(&self) -> impl Iterator<Item = &Arc<Pdu>> {
        let lists = match self {
            Message::Request { body, .. } => [body.pdus(), &[], &[]],
            Message::Response { outcome: Outcome::Ok(r), .. } => r.pdu_lists(),
            Message::Response { .. } => [&[][..], &[], &[]],
        };
        lists.into_iter().flatten()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTemplate {
    pub room_id: String,
    pub room_version: String,
    pub prev_events: Vec<String>,
    pub auth_events: Vec<String>,
    pub depth: i64,
    /// The template event's `content` where it carries more than the membership (a restricted
    /// join's `join_authorised_via_users_server`); the joiner signs it as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<serde_json::Value>,
    /// MSC4345 §6: the template is a `requested` participation of this server key (the
    /// joining server's), not a join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participation_key: Option<String>,
}

/// PDUs by event ID: the world's union store, used to turn logged references back into PDUs.
pub type PduStore = crate::protocol::fasthash::FastMap<String, Arc<Pdu>>;
