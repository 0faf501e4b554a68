//! A simulated homeserver: an explicit state machine. `handle(input, now)` returns outputs
//! (messages to send, timers to set, log records); the world owns time and delivery, the server
//! never sleeps or spawns.

mod actions;
mod outbound;
pub mod room;

pub use room::{Decision, RoomReplica};

use super::federation::{Message, Outcome, Request, RequestId, Response, ServerIdx};
use super::time::SimTime;
use crate::protocol::crypto::{self, KeyPair};
use crate::protocol::ids;
use crate::protocol::pdu::Pdu;
use crate::protocol::redaction;
use crate::scenario::{ActionKind, Byzantine, JoinRule, RoomSpec, ServerSpec, SignatureMode};
use ed25519_dalek::VerifyingKey;
use outbound::Outbound;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// The key ID every simulated server signs with.
pub const KEY_ID: &str = "ed25519:k1";
/// Most PDUs in one transaction (spec: 50).
pub const MAX_TXN_PDUS: usize = 50;
/// Events returned by one `get_missing_events` answer.
pub const MISSING_EVENTS_LIMIT: u32 = 100;

/// Who is who: server names, indices and public keys (a perfect notary: key fetching is not
/// modelled as a failure source in v11/v12 runs).
#[derive(Debug)]
pub struct Directory {
    pub names: Vec<String>,
    pub index: BTreeMap<String, ServerIdx>,
    pub public_keys: Vec<VerifyingKey>,
}

impl Directory {
    pub fn server_of_user(&self, user_id: &str) -> Option<ServerIdx> {
        ids::domain_of(user_id).and_then(|d| self.index.get(d).copied())
    }
}

/// Inputs a server handles.
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// A user's request to their server (what a client would send over the client-server API).
#[derive(Debug, Clone)]
pub struct ClientAction {
    pub user: String,
    pub room_name: String,
    /// Filled in by the world once the room exists.
    pub room_id: Option<String>,
    pub kind: ActionKind,
    pub target: Option<String>,
    pub level: Option<i64>,
    pub join_rule: Option<JoinRule>,
    pub text: Option<String>,
    /// For `create_room`: the room's specification.
    pub create: Option<RoomSpec>,
    /// For remote joins: a server believed to be in the room.
    pub via: Option<ServerIdx>,
}

/// What handling an input produced.
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
    /// A log record (decisions, refusals, joins …).
    Record(Value),
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
    pub request_timeout_us: u64,
    pub request_retries: u32,
    pub missing_event_timeout_us: u64,
}

impl ServerConfig {
    pub fn from_spec(spec: &ServerSpec) -> ServerConfig {
        ServerConfig {
            signatures: spec.signatures,
            signature_cost_us: spec.signature_cost_us,
            clock_skew_us: spec.clock_skew_us,
            byzantine: spec.byzantine,
            byzantine_probability: spec.byzantine_probability,
            request_timeout_us: spec.request_timeout_us,
            request_retries: spec.request_retries,
            missing_event_timeout_us: spec.missing_event_timeout_us.max(1),
        }
    }
}

/// Why a request was sent, so that its answer (or its timeout) can be acted on.
#[derive(Debug, Clone)]
enum Purpose {
    Transaction { dest: ServerIdx, count: usize },
    Fetch { room_id: String },
    MakeJoin { user: String, room_id: String },
    SendJoin { user: String, room_id: String },
    Invite { room_id: String },
}

#[derive(Debug, Clone)]
struct PendingRequest {
    to: ServerIdx,
    body: Request,
    attempts: u32,
    purpose: Purpose,
}

pub struct Server {
    pub index: ServerIdx,
    pub name: String,
    pub users: Vec<String>,
    pub config: ServerConfig,
    key: KeyPair,
    rng: ChaCha8Rng,
    directory: Arc<Directory>,
    pub rooms: BTreeMap<String, RoomReplica>,
    /// Rooms a local user was invited to, with the inviting server (a resident to join via).
    invites: BTreeMap<String, ServerIdx>,
    outbound: Outbound,
    requests: BTreeMap<RequestId, PendingRequest>,
    next_request_id: RequestId,
    /// PDUs judged (one delivery = one server receiving and judging one PDU).
    pub deliveries: u64,
    /// Processing cost accumulated while handling the current input.
    cost_us: u64,
}

impl Server {
    pub fn new(
        index: ServerIdx,
        spec: &ServerSpec,
        key: KeyPair,
        rng: ChaCha8Rng,
        directory: Arc<Directory>,
    ) -> Server {
        Server {
            index,
            name: spec.name.clone(),
            users: spec.users.clone(),
            config: ServerConfig::from_spec(spec),
            key,
            rng,
            directory,
            rooms: BTreeMap::new(),
            invites: BTreeMap::new(),
            outbound: Outbound::default(),
            requests: BTreeMap::new(),
            next_request_id: 1,
            deliveries: 0,
            cost_us: 0,
        }
    }

    pub fn is_honest(&self) -> bool {
        self.config.byzantine == Byzantine::None
    }

    /// Whether the outbound queues are empty (for quiescence).
    pub fn is_idle(&self) -> bool {
        self.outbound.is_empty() && self.requests.is_empty() && self.rooms.values().all(|r| !r.retry_armed)
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
        }
        out
    }

    fn record(&self, out: &mut Vec<Output>, v: Value) {
        out.push(Output::Record(v));
    }

    fn send_request(&mut self, to: ServerIdx, body: Request, purpose: Purpose, now: SimTime, out: &mut Vec<Output>) {
        let id = self.next_request_id;
        self.next_request_id += 1;
        out.push(Output::Send { to, message: Message::Request { id, body: body.clone() }, delay_us: self.cost_us });
        out.push(Output::SetTimer {
            at: now + self.cost_us + self.config.request_timeout_us,
            timer: Timer::RequestTimeout { id },
        });
        self.requests.insert(id, PendingRequest { to, body, attempts: 1, purpose });
    }

    fn respond(&self, to: ServerIdx, id: RequestId, outcome: Outcome, out: &mut Vec<Output>) {
        out.push(Output::Send { to, message: Message::Response { id, outcome }, delay_us: self.cost_us });
    }

    fn on_message(&mut self, from: ServerIdx, message: Message, now: SimTime, out: &mut Vec<Output>) {
        match message {
            Message::Request { id, body } => {
                let outcome = self.on_request(from, body, now, out);
                self.respond(from, id, outcome, out);
            }
            Message::Response { id, outcome } => {
                let Some(req) = self.requests.remove(&id) else {
                    self.record(out, json!({"kind": "late_response", "id": id}));
                    return;
                };
                self.on_response(req, outcome, now, out);
            }
        }
    }

    fn on_request(&mut self, from: ServerIdx, body: Request, now: SimTime, out: &mut Vec<Output>) -> Outcome {
        match body {
            Request::Transaction { pdus } => {
                for pdu in pdus {
                    self.receive_pdu(pdu, from, now, out);
                }
                Outcome::Ok(Response::Transaction)
            }
            Request::GetMissingEvents { room_id, earliest, latest, limit } => {
                self.answer_missing(&room_id, &earliest, &latest, limit)
            }
            Request::MakeJoin { room_id, user_id } => self.answer_make_join(&room_id, &user_id, now),
            Request::SendJoin { pdu } => self.answer_send_join(pdu, from, now, out),
            Request::Invite { pdu } => self.answer_invite(pdu, from, out),
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
            (purpose, outcome) => {
                let why = match outcome {
                    Outcome::Error { status, errcode } => format!("{status} {errcode}"),
                    Outcome::Ok(_) => "unexpected answer".to_owned(),
                };
                self.record(out, json!({"kind": "request_failed", "request": req.body.name(), "to": self.directory.names[req.to as usize], "why": why, "purpose": format!("{purpose:?}")}));
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
                self.record(out, json!({"kind": "request_failed", "request": req.body.name(), "to": self.directory.names[req.to as usize], "why": "timeout"}));
                if let Purpose::Fetch { room_id } = &req.purpose {
                    if let Some(r) = self.rooms.get_mut(room_id) {
                        r.fetching.remove(&req.to);
                    }
                    self.arm_missing_retry(room_id, now, out);
                }
            }
        }
    }

    /// Receipt checks 1–3 (the PDU is well-formed by construction): signatures, then the
    /// content hash (a mismatch continues with the redacted copy).
    fn check_signatures(
        &mut self,
        pdu: &Arc<Pdu>,
        version: &'static crate::protocol::room_version::RoomVersion,
    ) -> Result<Arc<Pdu>, String> {
        let Some(server) = self.directory.server_of_user(&pdu.sender) else {
            return Err(format!("unknown server of sender {}", pdu.sender));
        };
        if server == self.index {
            return Ok(pdu.clone());
        }
        let server_name = &self.directory.names[server as usize];
        let Some(sig) = crypto::signature_of(&pdu.json, server_name, KEY_ID) else {
            return Err(format!("no valid signature by {server_name}"));
        };
        match self.config.signatures {
            SignatureMode::Real => {
                let bytes = pdu.signing_bytes(version);
                if !crypto::verify(&self.directory.public_keys[server as usize], bytes, &sig) {
                    return Err(format!("signature by {server_name} does not verify"));
                }
            }
            SignatureMode::Modelled => self.cost_us += self.config.signature_cost_us,
        }
        if pdu.content_hash_matches() {
            Ok(pdu.clone())
        } else {
            let redacted = redaction::redact(&pdu.json, version);
            Pdu::from_object(redacted, version).map(Arc::new).map_err(|e| e.to_string())
        }
    }

    /// A PDU arrived (transaction, fetch answer, join): check, judge when connected, or park it
    /// and fetch what is missing from `from`.
    fn receive_pdu(&mut self, pdu: Arc<Pdu>, from: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        let room_id = room_id_of(&pdu);
        let Some(room) = self.rooms.get(&room_id) else {
            return; // not in this room (e.g. an invite for a local user arrives later by /invite)
        };
        if room.has(&pdu.event_id) || room.pending.contains_key(&pdu.event_id) {
            return;
        }
        let version = room.version;
        let pdu = match self.check_signatures(&pdu, version) {
            Ok(p) => p,
            Err(why) => {
                self.record(out, json!({"kind": "decision", "room": room_id, "event": pdu.event_id, "decision": "dropped", "stage": "signature", "reason": why}));
                return;
            }
        };
        self.deliveries += 1;
        let room = self.rooms.get_mut(&room_id).expect("checked");
        room.pending_origin.insert(pdu.event_id.clone(), from);
        room.pending.insert(pdu.event_id.clone(), pdu);
        self.drain_pending(&room_id, out);
        let room = self.rooms.get_mut(&room_id).expect("checked");
        if !room.pending.is_empty() && !room.fetching.contains(&from) {
            self.fetch_missing(&room_id, from, now, out);
        }
    }

    /// Judges every pending event that became connected.
    fn drain_pending(&mut self, room_id: &str, out: &mut Vec<Output>) {
        let room = self.rooms.get_mut(room_id).expect("caller checked");
        for pdu in room.take_connected_pending() {
            let id = pdu.event_id.clone();
            let decision = room.ingest(pdu);
            let (stage, reason) = match &decision {
                Decision::Accepted => (None, None),
                Decision::SoftFailed { reason } => (None, Some(reason.clone())),
                Decision::Rejected { stage, reason } => (Some(stage.as_str()), Some(reason.clone())),
            };
            out.push(Output::Record(json!({"kind": "decision", "room": room_id, "event": id, "decision": decision.label(), "stage": stage, "reason": reason})));
        }
    }

    fn fetch_missing(&mut self, room_id: &str, from: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        let room = self.rooms.get_mut(room_id).expect("caller checked");
        let latest: Vec<String> = room
            .pending
            .values()
            .filter(|p| {
                p.prev_events
                    .iter()
                    .chain(&p.auth_events)
                    .any(|id| !room.dag.contains(id) && !room.pending.contains_key(id))
            })
            .map(|p| p.event_id.clone())
            .collect();
        if latest.is_empty() || room.fetching.contains(&from) || from == self.index {
            return;
        }
        room.fetching.insert(from);
        let earliest = room.prev_events_for_new(20);
        let body =
            Request::GetMissingEvents { room_id: room_id.to_owned(), earliest, latest, limit: MISSING_EVENTS_LIMIT };
        self.send_request(from, body, Purpose::Fetch { room_id: room_id.to_owned() }, now, out);
    }

    fn on_fetched(&mut self, room_id: &str, pdus: Vec<Arc<Pdu>>, from: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get_mut(room_id) else { return };
        room.fetching.remove(&from);
        let before = room.pending.len() + room.dag.len();
        for pdu in pdus {
            self.receive_pdu(pdu, from, now, out);
        }
        let room = self.rooms.get_mut(room_id).expect("still there");
        let progressed = room.pending.len() + room.dag.len() > before;
        if progressed {
            room.fetch_retries_left = room::FETCH_RETRIES;
            if !room.pending.is_empty() {
                self.fetch_missing(room_id, from, now, out);
            }
        } else {
            self.arm_missing_retry(room_id, now, out);
        }
    }

    /// Events still wait for missing parents and nobody is being asked: ask again after the
    /// missing-event timeout (a bounded number of times; new events reset the count).
    fn arm_missing_retry(&mut self, room_id: &str, now: SimTime, out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get_mut(room_id) else { return };
        if room.pending.is_empty() || !room.fetching.is_empty() || room.retry_armed || room.fetch_retries_left == 0 {
            return;
        }
        room.fetch_retries_left -= 1;
        room.retry_armed = true;
        out.push(Output::SetTimer {
            at: now + self.config.missing_event_timeout_us,
            timer: Timer::RetryMissing { room_id: room_id.to_owned() },
        });
    }

    /// `get_missing_events`: walk back from `latest` (their prev and auth events, then prev
    /// events), stopping at `earliest`, returning at most `limit` events, oldest first.
    fn answer_missing(&self, room_id: &str, earliest: &[String], latest: &[String], limit: u32) -> Outcome {
        let Some(room) = self.rooms.get(room_id) else {
            return Outcome::Error { status: 404, errcode: "M_NOT_FOUND".into() };
        };
        let stop: HashSet<&str> = earliest.iter().chain(latest).map(String::as_str).collect();
        // Newest first (by depth), so that a limited answer covers every branch back towards
        // the requester's extremities rather than one branch down to the create event.
        let mut frontier: std::collections::BinaryHeap<(i64, String)> = std::collections::BinaryHeap::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut push = |id: &String, frontier: &mut std::collections::BinaryHeap<(i64, String)>| {
            if let Some(i) = room.dag.index_of(id) {
                if !stop.contains(id.as_str()) && seen.insert(id.clone()) {
                    frontier.push((room.dag.pdu(i).depth, id.clone()));
                }
            }
        };
        for id in latest {
            if let Some(i) = room.dag.index_of(id) {
                let p = room.dag.pdu(i);
                for parent in p.prev_events.iter().chain(&p.auth_events) {
                    push(parent, &mut frontier);
                }
            }
        }
        let mut found: Vec<Arc<Pdu>> = Vec::new();
        while let Some((_, id)) = frontier.pop() {
            if found.len() >= limit as usize {
                break;
            }
            let ev = room.dag.event(room.dag.index_of(&id).expect("pushed only if held"));
            found.push(ev.pdu.clone());
            // Walk prev events only (as the endpoint does): auth events are in the prev history
            // of honest events, and the first level above covers any that are not.
            for parent in &ev.pdu.prev_events {
                push(parent, &mut frontier);
            }
        }
        found.sort_by(|a, b| (a.depth, &a.event_id).cmp(&(b.depth, &b.event_id)));
        Outcome::Ok(Response::Events { pdus: found })
    }

    /// Servers that should receive a new event of `room_id`: those of joined members, plus the
    /// target's server for membership events.
    fn destinations(&self, room_id: &str, pdu: &Pdu) -> Vec<ServerIdx> {
        let Some(room) = self.rooms.get(room_id) else { return Vec::new() };
        let mut set: std::collections::BTreeSet<ServerIdx> =
            room.joined_servers().iter().filter_map(|d| self.directory.index.get(d).copied()).collect();
        if pdu.membership().is_some() {
            if let Some(t) = pdu.state_key.as_deref().and_then(|u| self.directory.server_of_user(u)) {
                set.insert(t);
            }
        }
        set.remove(&self.index);
        set.into_iter().collect()
    }

    /// Queues a PDU for every destination (byzantine servers may withhold or equivocate).
    fn broadcast(
        &mut self,
        room_id: &str,
        pdu: Arc<Pdu>,
        exclude: Option<ServerIdx>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let dests: Vec<ServerIdx> =
            self.destinations(room_id, &pdu).into_iter().filter(|d| Some(*d) != exclude).collect();
        for d in dests {
            self.outbound.enqueue(d, pdu.clone());
            self.send_next_transaction(d, now, out);
        }
    }

    fn send_next_transaction(&mut self, dest: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        if let Some(batch) = self.outbound.next_batch(dest, MAX_TXN_PDUS) {
            let count = batch.len();
            self.send_request(
                dest,
                Request::Transaction { pdus: batch },
                Purpose::Transaction { dest, count },
                now,
                out,
            );
        }
    }

    fn transaction_failed(&mut self, dest: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        let delay = self.outbound.failed(dest);
        out.push(Output::SetTimer { at: now + delay, timer: Timer::RetryDestination { dest } });
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
