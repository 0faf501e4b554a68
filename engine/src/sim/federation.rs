//! The messages servers exchange: PDU transactions and request/response calls. Every non-PDU
//! federation call (make/send join, invites, missing events; later `/query/accounts`, key
//! validity, identity lookups) is a [`Request`] answered by a [`Response`] with an HTTP-like
//! [`Outcome`], so timeouts, retries and middleboxes apply to all of them the same way.

use crate::protocol::pdu::Pdu;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// Index of a server in the world (its position in the scenario's server list).
pub type ServerIdx = u32;
/// A request's identifier, unique per sending server.
pub type RequestId = u64;

#[derive(Debug, Clone)]
pub enum Message {
    Request { id: RequestId, body: Request },
    Response { id: RequestId, outcome: Outcome },
}

#[derive(Debug, Clone)]
pub enum Request {
    /// `PUT /_matrix/federation/v1/send/{txnId}`: up to 50 PDUs.
    Transaction { pdus: Vec<Arc<Pdu>> },
    /// `POST /_matrix/federation/v1/get_missing_events/{roomId}`.
    GetMissingEvents { room_id: String, earliest: Vec<String>, latest: Vec<String>, limit: u32 },
    /// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`.
    MakeJoin { room_id: String, user_id: String },
    /// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`.
    SendJoin { pdu: Arc<Pdu> },
    /// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`.
    Invite { pdu: Arc<Pdu> },
}

impl Request {
    /// The key under which a caching middlebox may store this request's answer; `None` for
    /// requests whose answers must not be cached (all of today's: they change state or depend
    /// on it). Lookups such as `/query/accounts` or key-validity checks return `Some`.
    pub fn cache_key(&self) -> Option<String> {
        None
    }

    pub fn name(&self) -> &'static str {
        match self {
            Request::Transaction { .. } => "send",
            Request::GetMissingEvents { .. } => "get_missing_events",
            Request::MakeJoin { .. } => "make_join",
            Request::SendJoin { .. } => "send_join",
            Request::Invite { .. } => "invite",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    Ok(Response),
    /// An HTTP error answer: status and Matrix error code.
    Error {
        status: u16,
        errcode: String,
    },
}

#[derive(Debug, Clone)]
pub enum Response {
    /// `/send` accepted (per-PDU results are not modelled: rejection is not an error).
    Transaction,
    /// A list of events (`get_missing_events`; `send_join`'s state, auth chain and history).
    Events { pdus: Vec<Arc<Pdu>> },
    /// `make_join`'s template.
    MakeJoin(JoinTemplate),
    /// The invite, now co-signed by the invitee's server.
    Invite { pdu: Arc<Pdu> },
}

impl Response {
    /// What a reverse proxy that drops unknown entries leaves of this answer. None of today's
    /// answers has per-key entries a proxy could drop; `/query/accounts` answers will.
    pub fn drop_unknown_entries(&mut self) {}
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTemplate {
    pub room_id: String,
    pub room_version: String,
    pub prev_events: Vec<String>,
    pub auth_events: Vec<String>,
    pub depth: i64,
}

/// PDUs by event ID: the world's union store, used to turn logged references back into PDUs.
pub type PduStore = HashMap<String, Arc<Pdu>>;

fn ids(pdus: &[Arc<Pdu>]) -> Vec<&str> {
    pdus.iter().map(|p| p.event_id.as_str()).collect()
}

impl Message {
    /// The log form: PDUs are named by event ID (their bodies are in `rooms/*.pdus.jsonl`).
    pub fn to_record(&self) -> Value {
        match self {
            Message::Request { id, body } => {
                let b = match body {
                    Request::Transaction { pdus } => json!({"pdus": ids(pdus)}),
                    Request::GetMissingEvents { room_id, earliest, latest, limit } => {
                        json!({"room_id": room_id, "earliest": earliest, "latest": latest, "limit": limit})
                    }
                    Request::MakeJoin { room_id, user_id } => json!({"room_id": room_id, "user_id": user_id}),
                    Request::SendJoin { pdu } | Request::Invite { pdu } => json!({"pdu": pdu.event_id}),
                };
                json!({"request": body.name(), "id": id, "body": b})
            }
            Message::Response { id, outcome } => match outcome {
                Outcome::Error { status, errcode } => json!({"response": id, "status": status, "errcode": errcode}),
                Outcome::Ok(r) => {
                    let b = match r {
                        Response::Transaction => json!({"kind": "send"}),
                        Response::Events { pdus } => json!({"kind": "events", "pdus": ids(pdus)}),
                        Response::MakeJoin(t) => {
                            json!({"kind": "make_join", "room_id": t.room_id, "room_version": t.room_version,
                            "prev_events": t.prev_events, "auth_events": t.auth_events, "depth": t.depth})
                        }
                        Response::Invite { pdu } => json!({"kind": "invite", "pdu": pdu.event_id}),
                    };
                    json!({"response": id, "status": 200, "body": b})
                }
            },
        }
    }

    /// Rebuilds a message from its log form.
    pub fn from_record(v: &Value, store: &PduStore) -> Result<Message, String> {
        let pdu = |x: &Value| -> Result<Arc<Pdu>, String> {
            let id = x.as_str().ok_or("event ID expected")?;
            store.get(id).cloned().ok_or_else(|| format!("event {id} is not in the PDU store"))
        };
        let pdus = |x: &Value| -> Result<Vec<Arc<Pdu>>, String> {
            x.as_array().ok_or("array expected")?.iter().map(pdu).collect()
        };
        let strings = |x: &Value| -> Vec<String> {
            x.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()).unwrap_or_default()
        };
        let s = |x: &Value| x.as_str().unwrap_or_default().to_owned();
        if let Some(name) = v.get("request").and_then(Value::as_str) {
            let id = v["id"].as_u64().ok_or("request id")?;
            let b = &v["body"];
            let body = match name {
                "send" => Request::Transaction { pdus: pdus(&b["pdus"])? },
                "get_missing_events" => Request::GetMissingEvents {
                    room_id: s(&b["room_id"]),
                    earliest: strings(&b["earliest"]),
                    latest: strings(&b["latest"]),
                    limit: b["limit"].as_u64().unwrap_or(0) as u32,
                },
                "make_join" => Request::MakeJoin { room_id: s(&b["room_id"]), user_id: s(&b["user_id"]) },
                "send_join" => Request::SendJoin { pdu: pdu(&b["pdu"])? },
                "invite" => Request::Invite { pdu: pdu(&b["pdu"])? },
                other => return Err(format!("unknown request {other}")),
            };
            return Ok(Message::Request { id, body });
        }
        let id = v["response"].as_u64().ok_or("neither request nor response")?;
        let status = v["status"].as_u64().unwrap_or(0) as u16;
        if status != 200 {
            return Ok(Message::Response { id, outcome: Outcome::Error { status, errcode: s(&v["errcode"]) } });
        }
        let b = &v["body"];
        let r = match b["kind"].as_str().unwrap_or("") {
            "send" => Response::Transaction,
            "events" => Response::Events { pdus: pdus(&b["pdus"])? },
            "make_join" => Response::MakeJoin(JoinTemplate {
                room_id: s(&b["room_id"]),
                room_version: s(&b["room_version"]),
                prev_events: strings(&b["prev_events"]),
                auth_events: strings(&b["auth_events"]),
                depth: b["depth"].as_i64().unwrap_or(0),
            }),
            "invite" => Response::Invite { pdu: pdu(&b["pdu"])? },
            other => return Err(format!("unknown response kind {other}")),
        };
        Ok(Message::Response { id, outcome: Outcome::Ok(r) })
    }
}
