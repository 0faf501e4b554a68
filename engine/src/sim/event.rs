//! The one typed simulation event. Everything servers and the world report is a [`SimEvent`];
//! it is the only log record (`log.jsonl`, one JSON object per line, see `docs/outputs.md`) and
//! what observers ([`super::observe::Observer`]) learn from. There is no hand-written codec:
//! the log is the serde form of these types.
//!
//! PDUs are written once, as a [`SimEvent::Pdu`] record before their first use; messages,
//! deliveries and decisions name them by event ID ([`pdu_ref`]). A delivery names the message it
//! delivers by the log line of its send (`msg`), so a message is written once however many copies
//! the network makes.

use super::federation::{Message, RequestId, ServerIdx};
use super::server::{ClientAction, Timer};
use super::time::SimTime;
use crate::protocol::pdu::Pdu;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Line number (from 0) of a record in the log: its sequence number.
pub type Seq = u64;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SimEvent {
    // ---- world records -----------------------------------------------------------------
    /// A PDU's first appearance (created, co-signed or forged): its full federation JSON.
    Pdu { event_id: String, room_version: String, pdu: PduJson },
    /// A fault of the scenario's list started or ended.
    Fault { fault: usize, what: String, start: bool },
    /// An input that could not reach its node (node down, link partitioned).
    Blocked { reason: String, input: LoggedInput },
    /// A caching middlebox in front of `server` answered `to` itself.
    /// (`behind` in the log: a line's `server` names the node a record concerns.)
    MiddleboxAnswer {
        #[serde(rename = "behind")]
        server: ServerIdx,
        to: ServerIdx,
        message: Message,
    },
    /// A named bound was reached (see [`crate::sim::bounds`]): what happened instead.
    CapReached { cap: String, limit: u64, consequence: String },

    // ---- a node's inputs -------------------------------------------------------------
    /// The input a node handled (replay feeds exactly these back).
    Input(LoggedInput),

    // ---- a node's outputs ------------------------------------------------------------
    /// A message a node sent, with the network's verdict on it.
    Send {
        to: ServerIdx,
        message: Message,
        /// Arrival times of each copy (empty when dropped).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deliver_at: Vec<SimTime>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dropped: Option<String>,
    },
    /// A server's verdict on a received event (receipt checks, `auth-rules.md` §6).
    Decision {
        event: String,
        decision: Verdict,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A client action as the server handled it.
    Action {
        action: String,
        user: String,
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pending: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// A remote join completed (`send_join` answered).
    Joined { user: String, room: String },
    /// A remote knock was taken (`send_knock` answered with `room_state` stripped state events).
    Knocked { user: String, room: String, room_state: usize },
    /// A remote leave or invite rejection was taken (`send_leave` answered).
    Left { user: String, room: String },
    /// A server applied a redaction: it stores and serves `event` redacted from now on.
    Redacted { room: String, event: String, redaction: String },
    /// A remote join ended without joining: a candidate resident refused it, every candidate
    /// failed in every round, or the joining server crashed (`server/joining.rs`).
    JoinFailed { user: String, room: String, reason: String, rounds: u32 },
    /// A request gave up (error answer, or timed out after its retries).
    RequestFailed { request: String, to: ServerIdx, why: String },
    /// An answer to a request that was no longer waited for.
    LateResponse { id: RequestId },
    /// MSC4243: a server's mapping of an account key claiming `domain` changed, or the key was
    /// first seen (`pending`).
    AccountMapping { key: String, domain: String, mapping: crate::sim::accounts::cache::Mapping },
    /// MSC4243 §6.2: a server re-sent its clients what the `on_verify` design says when a
    /// key's shown form changed (`resends` by kind), in `rooms` rooms its users share with it.
    ClientResend {
        key: String,
        domain: String,
        shown: crate::sim::accounts::view::Shown,
        resends: Vec<String>,
        rooms: u32,
    },
    /// An invite's room appeared on the invitee's client `delay_us` after the invite reached
    /// its server, the inviter shown as `inviter`.
    RoomShown { room: String, user: String, delay_us: u64, inviter: crate::sim::accounts::view::Shown },
    /// MSC4243: a server asked `domain`'s `/query/accounts` about `keys` (none: an erasure poll).
    AccountQuery { domain: String, keys: Vec<String> },
    /// A domain changed one of its accounts (`erased`, `reregistered` under `key`).
    AccountChanged { user: String, change: String, key: String },
    /// MSC4345: a joining server's co-signed request is in the room; its join waits for the
    /// key `key` to be accepted.
    ParticipationRequested { room: String, key: String },
    /// MSC4345: the joining server saw its key accepted `handshake_us` after its request
    /// reached it, and sends its waiting joins.
    ParticipationAccepted { room: String, key: String, handshake_us: u64 },
    /// MSC4345 §8 / MSC4348 client-side: how a server shows `sender` (an account-key user ID)
    /// to its clients changed: `@name:server_domain` when the co-signing key's domain and the
    /// account's name are verified (`verified`), else the account-key user ID itself.
    /// `unsigned`: what the server adds to the events of `sender` it serves its clients
    /// (MSC4348 `unsigned.account`, the bare name, and MSC4345 §8 `unsigned.server_domain`),
    /// each only once verified.
    PortableShown {
        room: String,
        sender: String,
        shown: String,
        verified: bool,
        #[serde(default)]
        unsigned: serde_json::Map<String, serde_json::Value>,
    },
    /// The room's `m.room.server_acl` denies the origin of a request (Server-Server API, Server
    /// Access Control Lists): a PDU of a transaction is dropped, other requests get 403.
    AclDenied {
        room: String,
        origin: String,
        request: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    /// Something a server could not do that is worth reading in the log.
    ServerNote { text: String },
    /// Identity: lookups, invites by e-mail, bindings, key validity, account data.
    Identity(super::identity_event::IdentityEvent),
    /// A byzantine server misbehaved.
    Byzantine {
        behaviour: String,
        event: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        twin: Option<String>,
    },
}

/// A server's verdict on one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Accepted,
    SoftFailed,
    Rejected,
    /// Not stored: signature or hash checks failed before the auth rules.
    Dropped,
    /// Stored as an outlier (a state or auth-chain event held without its prev events), having
    /// passed the check named by the record's `stage`: the rules against its own auth events.
    Outlier,
}

/// A node input as logged: like [`super::server::Input`], with a delivered message named by
/// the line of its send.
// Deliveries, by far the most frequent inputs, are small; a client action (rare) is the large
// variant. Boxing it would save queue memory only for actions.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case")]
pub enum LoggedInput {
    Deliver {
        from: ServerIdx,
        msg: Seq,
    },
    Timer {
        timer: Timer,
    },
    Action(ClientAction),
    Crash,
    Restart,
    ClockSkew {
        skew_us: i64,
    },
    /// A `rotate_key` fault reached the server.
    RotateKey {
        keep_old: bool,
    },
    /// An `erase_account` fault reached the user's domain.
    EraseAccount {
        user: String,
    },
    /// A `reregister_account` fault reached the user's domain.
    ReregisterAccount {
        user: String,
    },
    /// A `rotate_pepper` / `revoke_identity_key` fault reached the identity server.
    Identity(crate::sim::identity_event::IdentityInput),
}

impl SimEvent {
    /// Whether this record is something a node emitted (what replay must reproduce), rather
    /// than an input or a record the world wrote.
    pub fn is_node_output(&self) -> bool {
        !matches!(
            self,
            SimEvent::Pdu { .. }
                | SimEvent::Fault { .. }
                | SimEvent::Blocked { .. }
                | SimEvent::MiddleboxAnswer { .. }
                | SimEvent::Input(_)
        ) && !matches!(self, SimEvent::CapReached { cap, .. } if cap.starts_with("world."))
    }
}

/// A PDU's JSON in a [`SimEvent::Pdu`] record: shared when written, parsed when read back
/// (the reader builds the [`Pdu`] with the record's room version).
#[derive(Debug, Clone)]
pub enum PduJson {
    Shared(Arc<Pdu>),
    Read(Map<String, Value>),
}

impl Serialize for PduJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PduJson::Shared(p) => p.json.serialize(s),
            PduJson::Read(m) => m.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for PduJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Map::deserialize(d).map(PduJson::Read)
    }
}

/// One line of `log.jsonl`: time, the node it concerns (if any), the event.
#[derive(Debug, Clone, Deserialize)]
pub struct LogLine {
    pub t_us: SimTime,
    #[serde(default)]
    pub server: Option<String>,
    #[serde(flatten)]
    pub event: SimEvent,
}

/// PDUs inside messages are written as their event IDs. Reading them back needs the PDUs: a
/// reader registers each PDU record it reads with [`pdu_ref::register`] (on its own thread)
/// before it reads messages that name it.
pub mod pdu_ref {
    use super::super::federation::PduStore;
    use crate::protocol::pdu::Pdu;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::cell::RefCell;
    use std::sync::Arc;

    thread_local! {
        static STORE: RefCell<PduStore> = RefCell::new(PduStore::default());
    }

    /// Forgets every registered PDU (a new log is about to be read on this thread).
    pub fn reset() {
        STORE.with(|s| s.borrow_mut().clear());
    }

    /// Makes `pdu` resolvable by its event ID on this thread.
    pub fn register(pdu: Arc<Pdu>) {
        STORE.with(|s| s.borrow_mut().insert(pdu.event_id.clone(), pdu));
    }

    /// Registers every PDU of `store`.
    pub fn register_all(store: &PduStore) {
        STORE.with(|s| s.borrow_mut().extend(store.iter().map(|(k, v)| (k.clone(), v.clone()))));
    }

    fn lookup<E: serde::de::Error>(id: &str) -> Result<Arc<Pdu>, E> {
        STORE.with(|s| {
            s.borrow().get(id).cloned().ok_or_else(|| E::custom(format!("event {id} has no PDU record before its use")))
        })
    }

    pub mod one {
        use super::*;
        pub fn serialize<S: Serializer>(p: &Arc<Pdu>, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&p.event_id)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Pdu>, D::Error> {
            let id = String::deserialize(d)?;
            lookup::<D::Error>(&id)
        }
    }

    pub mod many {
        use super::*;
        use serde::ser::SerializeSeq;
        pub fn serialize<S: Serializer>(ps: &[Arc<Pdu>], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(ps.len()))?;
            for p in ps {
                seq.serialize_element(&p.event_id)?;
            }
            seq.end()
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Arc<Pdu>>, D::Error> {
            let ids = Vec::<String>::deserialize(d)?;
            ids.iter().map(|id| lookup::<D::Error>(id)).collect()
        }
    }
}
