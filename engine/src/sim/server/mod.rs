//! A simulated homeserver: an explicit state machine. `handle(input, now)` returns outputs
//! (messages to send, timers to set, log records); the world owns time and delivery, the server
//! never sleeps or spawns.

pub(crate) mod actions;
mod byzantine;
pub mod keyring;
pub mod ledger;
mod membership;
pub mod outbound;
mod receipt;
pub(crate) mod requests;
pub mod room;
pub mod routing;
#[cfg(test)]
mod tests;

pub use room::{Decision, RoomReplica};

use super::event::SimEvent;
use super::federation::{Message, Outcome, Request, RequestId, Response, ServerIdx};
use super::time::SimTime;
use crate::protocol::crypto::KeyPair;
use crate::protocol::pdu::Pdu;
use crate::scenario::{ActionKind, Byzantine, JoinRule, RoomSpec, ServerSpec, SignatureMode};
use ed25519_dalek::VerifyingKey;
use outbound::Outbound;
use rand_chacha::ChaCha8Rng;
use requests::{PendingRequest, Purpose};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The key ID every simulated server signs with.
pub const KEY_ID: &str = "ed25519:k1";
/// Most PDUs in one transaction (spec: 50).
pub const MAX_TXN_PDUS: usize = 50;
/// The largest `limit` a replica asks for in one `get_missing_events` request (it starts at
/// `room::FETCH_LIMIT_FIRST`).
pub const MISSING_EVENTS_LIMIT: u32 = 100;

/// Who is who: server names, indices and public keys (a perfect notary: key fetching is not
/// modelled as a failure source in v11/v12 runs), and the signatures their keys made (what a
/// modelled signature check looks up, see [`ledger`]).
#[derive(Debug)]
pub struct Directory {
    pub names: Vec<String>,
    pub index: BTreeMap<String, ServerIdx>,
    pub public_keys: Vec<VerifyingKey>,
    pub signatures: ledger::SignatureLedger,
    /// Every key each node signs with during the run and how keys are distributed
    /// ([`keyring::KeyBook`]).
    pub keys: keyring::KeyBook,
}

impl Directory {
    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<ServerIdx> {
        self.index.get(name).copied()
    }

    /// The home server of a user by the default routing rule (the domain of the user ID): where
    /// the user's client actions are handled.
    pub fn home_of(&self, user_id: &str) -> Option<ServerIdx> {
        routing::default_server_of(user_id).and_then(|d| self.node(d))
    }
}

/// Inputs a server handles.
// As for `LoggedInput`: the large variant (a client action) is the rare one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Input {
    Deliver {
        from: ServerIdx,
        message: Message,
    },
    Timer(Timer),
    Action(ClientAction),
    /// The server crashed: in-memory state (requests in flight, timers) is lost.
    Crash,
    /// The server restarted with its database.
    Restart,
    SetClockSkew {
        skew_us: i64,
    },
    /// A `rotate_key` fault: the server signs with its next key from now on.
    RotateKey {
        keep_old: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "timer", rename_all = "snake_case")]
pub enum Timer {
    RequestTimeout {
        id: RequestId,
    },
    RetryDestination {
        dest: ServerIdx,
    },
    /// Ask again for the missing parents of disconnected events.
    RetryMissing {
        room_id: String,
    },
    /// Fetch `server`'s keys again for the PDUs dropped for want of them (keyring.rs).
    RetryKeys {
        server: String,
    },
}

/// A user's request to their server (what a client would send over the client-server API).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientAction {
    pub user: String,
    pub room_name: String,
    /// Filled in by the world once the room exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    #[serde(rename = "action")]
    pub kind: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_rule: Option<JoinRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// For `create_room`: the room's specification (not logged: replay takes it from the
    /// scenario by room name).
    #[serde(skip)]
    pub create: Option<RoomSpec>,
    /// For remote joins: a server believed to be in the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<ServerIdx>,
}

/// What handling an input produced.
// `Event` is the common output (every decision): kept inline, no allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Output {
    /// Send after `delay_us` of processing (modelled signature cost).
    Send {
        to: ServerIdx,
        message: Message,
        delay_us: u64,
    },
    SetTimer {
        at: SimTime,
        timer: Timer,
    },
    /// What happened (decisions, refusals, joins …): logged and shown to observers.
    Event(SimEvent),
    /// A PDU this server created or co-signed (the world keeps the union store).
    Created {
        room_id: String,
        pdu: Arc<Pdu>,
    },
}

/// Per-server knobs, from the scenario.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub signatures: SignatureMode,
    pub signature_cost_us: u64,
    pub clock_skew_us: i64,
    pub byzantine: Byzantine,
    pub byzantine_probability: f64,
    /// `withhold`: the servers its events are kept from (`None`: all).
    pub withhold_from: Option<std::collections::BTreeSet<String>>,
    pub request_timeout_us: u64,
    pub request_retries: u32,
    pub missing_event_timeout_us: u64,
    /// Notaries asked for keys, in order (`trusted_key_servers`).
    pub trusted_key_servers: Vec<String>,
}

impl ServerConfig {
    pub fn from_spec(spec: &ServerSpec) -> ServerConfig {
        ServerConfig {
            signatures: spec.signatures,
            signature_cost_us: spec.signature_cost_us,
            clock_skew_us: spec.clock_skew_us,
            byzantine: spec.byzantine,
            byzantine_probability: spec.byzantine_probability,
            withhold_from: spec.withhold_from.as_ref().map(|v| v.iter().cloned().collect()),
            request_timeout_us: spec.request_timeout_us,
            request_retries: spec.request_retries,
            missing_event_timeout_us: spec.missing_event_timeout_us.max(1),
            trusted_key_servers: spec.trusted_key_servers.clone(),
        }
    }
}

pub struct Server {
    pub index: ServerIdx,
    pub name: String,
    pub users: Vec<String>,
    pub config: ServerConfig,
    pub(crate) key: KeyPair,
    /// `bad_signatures`: the wrong key it signs with (a real key, drawn from its stream).
    pub(crate) forger: Option<KeyPair>,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) directory: Arc<Directory>,
    pub rooms: BTreeMap<String, RoomReplica>,
    /// Rooms a local user was invited to, with the inviting server (a resident to join via).
    pub(crate) invites: BTreeMap<String, ServerIdx>,
    pub(crate) outbound: Outbound,
    pub(crate) requests: BTreeMap<RequestId, PendingRequest>,
    pub(crate) next_request_id: RequestId,
    /// Per room, the servers joined the last time this server was resident: a server joining
    /// beyond them is caught up (receipt.rs, `catch_up_joined`).
    pub(crate) informed: BTreeMap<String, (u64, std::collections::BTreeSet<String>)>,
    /// PDUs judged (one delivery = one server receiving and judging one PDU).
    pub deliveries: u64,
    /// Processing cost accumulated while handling the current input.
    pub(crate) cost_us: u64,
    /// Other servers' keys as this server knows them, and its own ([`keyring`]).
    pub keyring: keyring::Keyring,
}

impl Server {
    pub fn new(
        index: ServerIdx,
        spec: &ServerSpec,
        key: KeyPair,
        mut rng: ChaCha8Rng,
        directory: Arc<Directory>,
    ) -> Server {
        // Only a `bad_signatures` server draws (its first draw): the others' streams are untouched.
        let forger = (spec.byzantine == Byzantine::BadSignatures)
            .then(|| KeyPair::from_seed(&spec.name, KEY_ID, rand::Rng::gen(&mut rng)));
        let keyring = keyring::Keyring::new(&directory, key.clone(), &spec.trusted_key_servers);
        Server {
            keyring,
            index,
            name: spec.name.clone(),
            users: spec.users.clone(),
            config: ServerConfig::from_spec(spec),
            key,
            forger,
            rng,
            directory,
            rooms: BTreeMap::new(),
            invites: BTreeMap::new(),
            outbound: Outbound::default(),
            requests: BTreeMap::new(),
            next_request_id: 1,
            informed: BTreeMap::new(),
            deliveries: 0,
            cost_us: 0,
        }
    }

    pub fn is_honest(&self) -> bool {
        self.config.byzantine == Byzantine::None
    }

    /// Whether the outbound queues are empty (for quiescence).
    pub fn is_idle(&self) -> bool {
        self.outbound.is_empty()
            && self.requests.is_empty()
            && self.rooms.values().all(|r| !r.retry_armed)
            && self.keyring.is_idle()
    }

    /// Handles one input at time `now`.
    pub fn handle(&mut self, input: Input, now: SimTime) -> Vec<Output> {
        let mut out = Vec::new();
        self.cost_us = 0;
        match input {
            Input::Deliver { from, message } => self.on_message(from, message, now, &mut out),
            Input::Timer(t) => self.on_timer(t, now, &mut out),
            Input::Action(a) => self.on_action(a, now, &mut out),
            Input::Crash => {
                self.requests.clear();
                self.keyring.crashed();
                self.outbound.forget_in_flight();
                for r in self.rooms.values_mut() {
                    r.fetching.clear();
                    r.retry_armed = false;
                }
            }
            Input::Restart => {
                for dest in self.outbound.destinations_with_work() {
                    self.send_next_transaction(dest, now, &mut out);
                }
            }
            Input::SetClockSkew { skew_us } => self.config.clock_skew_us = skew_us,
            Input::RotateKey { keep_old } => self.rotate_key(keep_old, now),
        }
        out
    }

    pub(crate) fn record(&self, out: &mut Vec<Output>, event: SimEvent) {
        out.push(Output::Event(event));
    }

    fn on_message(&mut self, from: ServerIdx, message: Message, now: SimTime, out: &mut Vec<Output>) {
        match message {
            Message::Request { id, body } => {
                if self.defer_for_keys(from, id, &body, now, out) {
                    return; // answered once the signer's key is fetched (keyring.rs)
                }
                self.answer_request(from, id, body, now, out);
            }
            Message::Response { id, outcome } => {
                let Some(req) = self.requests.remove(&id) else {
                    self.record(out, SimEvent::LateResponse { id });
                    return;
                };
                self.on_response(req, outcome, now, out);
            }
        }
    }

    pub(crate) fn answer_request(
        &mut self,
        from: ServerIdx,
        id: RequestId,
        body: Request,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let outcome = self.on_request(from, body, now, out);
        self.respond(from, id, outcome, out);
    }

    fn on_request(&mut self, from: ServerIdx, body: Request, now: SimTime, out: &mut Vec<Output>) -> Outcome {
        match body {
            Request::Transaction { pdus } => self.answer_send(pdus, from, now, out),
            Request::GetMissingEvents { room_id, earliest, latest, limit } => {
                self.answer_missing(&room_id, &earliest, &latest, limit)
            }
            Request::MakeJoin { room_id, user_id } => self.answer_make_join(&room_id, &user_id, now),
            Request::SendJoin { pdu } => self.answer_send_join(pdu, from, now, out),
            Request::Invite { pdu, room_version, .. } => self.answer_invite(pdu, &room_version, from, out),
            Request::ServerKeys { .. } => self.answer_server_keys(now),
            // A homeserver is no notary here: notaries are nodes of their own (sim/notary.rs).
            Request::KeyQuery { .. } => Outcome::Error { status: 404, errcode: "M_UNRECOGNIZED".into() },
        }
    }

    fn on_response(&mut self, req: PendingRequest, outcome: Outcome, now: SimTime, out: &mut Vec<Output>) {
        match (req.purpose, outcome) {
            (Purpose::Transaction { dest, count }, Outcome::Ok(_)) => {
                self.outbound.acked(dest, count);
                self.send_next_transaction(dest, now, out);
            }
            (Purpose::Transaction { dest, .. }, Outcome::Error { .. }) => self.transaction_failed(dest, now, out),
            (Purpose::Fetch { room_id }, Outcome::Ok(Response::Events { pdus })) => {
                self.on_fetched(&room_id, pdus, req.to, now, out)
            }
            (Purpose::Fetch { room_id }, _) => {
                if let Some(r) = self.rooms.get_mut(&room_id) {
                    r.fetching.remove(&req.to);
                }
                self.arm_missing_retry(&room_id, now, out);
            }
            (Purpose::MakeJoin { user, room_id }, Outcome::Ok(Response::MakeJoin(t))) => {
                self.on_join_template(user, room_id, t, req.to, now, out)
            }
            (Purpose::SendJoin { user, room_id }, Outcome::Ok(Response::Events { pdus })) => {
                self.on_joined(user, room_id, pdus, req.to, now, out)
            }
            (Purpose::Invite { room_id }, Outcome::Ok(Response::Invite { pdu })) => {
                self.on_invite_signed(room_id, pdu, now, out)
            }
            (Purpose::KeyFetch { server, step }, outcome) => self.on_key_answer(server, step, Some(outcome), now, out),
            (purpose, outcome) => {
                let why = match outcome {
                    Outcome::Error { status, errcode } => format!("{status} {errcode}"),
                    Outcome::Ok(_) => "unexpected answer".to_owned(),
                };
                let _ = purpose;
                self.record(out, SimEvent::RequestFailed { request: req.body.name().into(), to: req.to, why });
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, now: SimTime, out: &mut Vec<Output>) {
        match timer {
            Timer::RetryMissing { room_id } => {
                let Some(room) = self.rooms.get_mut(&room_id) else { return };
                room.retry_armed = false;
                // Ask every server that sent us a still-disconnected event, once each.
                let origins: std::collections::BTreeSet<ServerIdx> = room.pending_origin.values().copied().collect();
                for origin in origins {
                    self.fetch_missing(&room_id, origin, now, out);
                }
            }
            Timer::RetryKeys { server } => self.retry_keys(server, now, out),
            Timer::RetryDestination { dest } => {
                self.outbound.retry_due(dest);
                self.send_next_transaction(dest, now, out);
            }
            Timer::RequestTimeout { id } => {
                let Some(mut req) = self.requests.remove(&id) else { return };
                if let Purpose::Transaction { dest, .. } = req.purpose {
                    self.transaction_failed(dest, now, out);
                    return;
                }
                if req.attempts <= self.config.request_retries {
                    req.attempts += 1;
                    out.push(Output::Send {
                        to: req.to,
                        message: Message::Request { id, body: req.body.clone() },
                        delay_us: 0,
                    });
                    out.push(Output::SetTimer {
                        at: now + self.config.request_timeout_us,
                        timer: Timer::RequestTimeout { id },
                    });
                    self.requests.insert(id, req);
                    return;
                }
                self.record(
                    out,
                    SimEvent::RequestFailed { request: req.body.name().into(), to: req.to, why: "timeout".into() },
                );
                if let (Purpose::SendJoin { room_id, .. }, Request::SendJoin { pdu }) = (&req.purpose, &req.body) {
                    self.send_join_gave_up(room_id, pdu.clone(), now, out);
                }
                if let Purpose::Fetch { room_id } = &req.purpose {
                    if let Some(r) = self.rooms.get_mut(room_id) {
                        r.fetching.remove(&req.to);
                    }
                    self.arm_missing_retry(room_id, now, out);
                }
                if let Purpose::KeyFetch { server, step } = req.purpose {
                    self.on_key_answer(server, step, None, now, out);
                }
            }
        }
    }

    /// A `send_join` got no answer within its retries. The resident may well have accepted the
    /// join (only its answer was lost) and sent it on, so the other servers hold an event its
    /// own server never stored; nobody sends a server its own event, and if nothing is built on
    /// it the gap stays. When this server is in the room anyway (another local user joined
    /// meanwhile), it stores its signed join as any local event and sends it to the room (the
    /// others judge it as usual; to those that have it, it is a duplicate). When it is not in
    /// the room, the join simply failed (the user may try again).
    fn send_join_gave_up(&mut self, room_id: &str, pdu: Arc<Pdu>, now: SimTime, out: &mut Vec<Output>) {
        if !self.has_joined_user(room_id) {
            return;
        }
        let room = self.rooms.get_mut(room_id).expect("joined");
        if room.has(&pdu.event_id) || room.pending.contains_key(&pdu.event_id) {
            return;
        }
        room.add_pending(pdu.clone());
        self.drain_pending(room_id, out);
        self.broadcast(room_id, pdu, None, now, out);
    }

    /// Whether a local user is joined to the room according to this server's current state.
    pub fn has_joined_user(&self, room_id: &str) -> bool {
        self.rooms.get(room_id).is_some_and(|r| r.joined_servers().contains(&self.name))
    }
}

/// The room a PDU belongs to (a v12 create event names it by its own hash).
pub fn room_id_of(pdu: &Pdu) -> String {
    match &pdu.room_id {
        Some(r) => r.clone(),
        None => format!("!{}", &pdu.event_id[1..]),
    }
}
