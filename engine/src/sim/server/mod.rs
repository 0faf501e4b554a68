//! A simulated homeserver: an explicit state machine. `handle(input, now)` returns outputs
//! (messages to send, timers to set, log records); the world owns time and delivery, the server
//! never sleeps or spawns.

pub mod accounts;
mod acl;
pub(crate) mod actions;
mod byzantine;
pub mod domain_view;
pub(crate) mod identity;
pub mod joining;
pub mod keyring;
pub mod ledger;
mod membership;
pub mod outbound;
pub mod portable;
pub(crate) mod receipt;
mod redactions;
pub(crate) mod requests;
mod retry;
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
    /// Every account key of the run (MSC4243), and which rooms use them.
    pub accounts: crate::sim::accounts::book::AccountBook,
    /// MSC4348 account keys and MSC4345 room-key secrets, and which rooms use them.
    pub portable: crate::sim::portable::PortableBook,
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
    /// MSC4243 §7: this domain erases the account of a local user.
    EraseAccount {
        user: String,
    },
    /// MSC4243 §2: this domain registers a local user's name again under a new account key.
    ReregisterAccount {
        user: String,
    },
    /// A fault of an identity server (pepper rotation, key revocation).
    Identity(crate::sim::identity_event::IdentityInput),
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
    /// A request's retry delay is over: send it again (`retry.rs`).
    RetryRequest {
        id: RequestId,
    },
    /// The next round over a join's candidate residents (`joining.rs`).
    RetryJoin {
        room_id: String,
        user: String,
        round: u32,
    },
    /// Fetch `server`'s keys again for the PDUs dropped for want of them (keyring.rs).
    RetryKeys {
        server: String,
    },
    /// MSC4243: ask `/query/accounts` for the keys due (accounts.rs).
    AccountQuery,
    /// MSC4243: the query timeout after an invite: its room appears on the client now.
    RoomAppear {
        room_id: String,
        user: String,
    },
    /// MSC4345: the acceptor's delay is over: accept `key`'s request (portable.rs).
    AcceptParticipation {
        room_id: String,
        key: String,
        acceptor: String,
        domain: Option<String>,
    },
    /// A write of `m.identity_server` reaches `user`'s `client` (its sync).
    IdentitySync {
        user: String,
        client: String,
    },
    /// The invitee joins after its third-party invite arrived.
    ThirdPartyJoin {
        room_id: String,
        user: String,
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
    /// MSC4348 `move`: the account's new server; MSC4345 `revoke`: the server revoked. Logged
    /// as `target_server` (a log record's `server` is the node that handled it).
    #[serde(default, rename = "target_server", skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// For remote joins: the servers to try first (the action's `via`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<ServerIdx>,
    /// For remote joins: what a room directory lookup gives (the servers of the room's
    /// scenario members, the creator's first), tried when `via` is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directory: Vec<ServerIdx>,
    /// For `create_room` of a restricted room: the room IDs of its `allow` list (filled in by the
    /// world from the scenario's room names, as `room_id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// invite_email / bind: the third-party address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// invite_email / bind / set_identity_server: the user's client that acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// set_identity_server: the `m.identity_server` value written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_data: Option<crate::scenario::AccountDataSpec>,
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
    /// Retries of a transaction (Synapse's long schedule, `retry.rs`).
    pub transaction_retries: u32,
    /// Per-destination backoff after a transaction's final failure (`outbound.rs`).
    pub backoff: outbound::BackoffPolicy,
    /// Notaries asked for keys, in order (`trusted_key_servers`).
    pub trusted_key_servers: Vec<String>,
    /// The scenario's `[join] mode` (set by the world; the same for every server).
    pub join_mode: crate::scenario::JoinMode,
    /// MSC4345: how long the room's acceptor waits before accepting a request.
    pub auto_accept_delay_us: u64,
    /// MSC4345: the acceptor of portable-account rooms (`None`: each room's creator).
    pub auto_accept_by: Option<String>,
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
            transaction_retries: spec.transaction_retries,
            backoff: outbound::BackoffPolicy {
                min_interval_us: spec.destination_min_retry_interval_us,
                multiplier: spec.destination_retry_multiplier,
                max_interval_us: spec.destination_max_retry_interval_us,
            },
            trusted_key_servers: spec.trusted_key_servers.clone(),
            join_mode: Default::default(),
            auto_accept_delay_us: 1_000_000,
            auto_accept_by: None,
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
    /// Knocks of local users on rooms this server is not in, (room, user) → the server knocked
    /// through (a later `leave` retracts the knock there).
    pub(crate) knocks: BTreeMap<(String, String), ServerIdx>,
    /// Per room, the redactions applied and those waiting for their target.
    pub(crate) redactions: BTreeMap<String, redactions::Redactions>,
    /// Remote joins under way, by (room ID, user).
    pub(crate) joins: BTreeMap<(String, String), joining::JoinAttempt>,
    /// Per room being joined, the events received before the join's answer, with their sender
    /// (Synapse's `room_queues`: events of a room it is joining wait for the join to finish).
    pub(crate) early: BTreeMap<String, Vec<(Arc<Pdu>, ServerIdx)>>,
    pub(crate) outbound: Outbound,
    pub(crate) requests: BTreeMap<RequestId, PendingRequest>,
    pub(crate) next_request_id: RequestId,
    pub(crate) retries: retry::RetryState,
    /// Per room, the servers joined the last time this server was resident: a server joining
    /// beyond them is caught up (receipt.rs, `catch_up_joined`).
    pub(crate) informed: BTreeMap<String, (u64, std::collections::BTreeSet<String>)>,
    /// PDUs judged (one delivery = one server receiving and judging one PDU).
    pub deliveries: u64,
    /// Processing cost accumulated while handling the current input.
    pub(crate) cost_us: u64,
    /// Other servers' keys as this server knows them, and its own ([`keyring`]).
    pub keyring: keyring::Keyring,
    /// MSC4243 account keys ([`accounts`]): `None` when no room of the run uses them.
    pub accounts: Option<Box<accounts::AccountState>>,
    /// MSC4345/4348 joins waiting for this server's key to be accepted (portable.rs).
    pub(crate) awaiting: portable::Awaiting,
    /// Requests this server's acceptor will accept (timer set).
    pub(crate) accepting: std::collections::BTreeSet<(String, String)>,
    /// MSC4348: accounts that moved to this server (names), which it acts for too.
    pub(crate) moved_in: std::collections::BTreeSet<String>,
    /// MSC4345 §7–§8 / MSC4348 client-side: key domains, account names and shown senders
    /// ([`domain_view`]).
    pub domain_view: domain_view::DomainView,
    /// Third-party invites, lookups and the users' clients ([`identity`]): `None` when the
    /// scenario has no identity servers.
    pub identity: Option<Box<identity::IdentityState>>,
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
        let config = ServerConfig::from_spec(spec);
        let keyring = keyring::Keyring::new(&directory, key.clone(), &spec.trusted_key_servers);
        Server {
            keyring,
            index,
            name: spec.name.clone(),
            users: spec.users.clone(),
            outbound: Outbound::new(config.backoff),
            retries: retry::RetryState::new(&rng),
            config,
            key,
            forger,
            rng,
            directory,
            rooms: BTreeMap::new(),
            invites: BTreeMap::new(),
            knocks: BTreeMap::new(),
            redactions: BTreeMap::new(),
            joins: BTreeMap::new(),
            early: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request_id: 1,
            informed: BTreeMap::new(),
            deliveries: 0,
            cost_us: 0,
            accounts: None,
            awaiting: Default::default(),
            accepting: Default::default(),
            moved_in: Default::default(),
            domain_view: Default::default(),
            identity: None,
        }
    }

    pub fn is_honest(&self) -> bool {
        self.config.byzantine == Byzantine::None
    }

    /// Whether the outbound queues are empty (for quiescence).
    pub fn is_idle(&self) -> bool {
        self.outbound.is_empty()
            && self.requests.is_empty()
            && self.joins.is_empty()
            && self.rooms.values().all(|r| !r.retry_armed)
            && self.keyring.is_idle()
            && self.identity_idle()
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
                self.retries.crash();
                self.outbound.crash();
                self.joins_lost_in_crash(&mut out);
                self.early.clear();
                self.keyring.crashed();
                // The acceptor's timers are lost; its next input schedules them again.
                self.accepting.clear();
                for r in self.rooms.values_mut() {
                    r.fetching.clear();
                    r.retry_armed = false;
                }
            }
            Input::Restart => self.on_restart(now, &mut out),
            Input::SetClockSkew { skew_us } => self.config.clock_skew_us = skew_us,
            Input::RotateKey { keep_old } => self.rotate_key(keep_old, now),
            Input::EraseAccount { user } => self.erase_account(&user, now, &mut out),
            Input::ReregisterAccount { user } => self.reregister_account(&user, now, &mut out),
            Input::Identity(_) => {}
        }
        self.observe_judged(now, &mut out);
        self.participation_tick(now, &mut out);
        self.domain_view_tick(now, &mut out);
        out
    }

    pub(crate) fn record(&self, out: &mut Vec<Output>, event: SimEvent) {
        out.push(Output::Event(event));
    }

    fn on_message(&mut self, from: ServerIdx, message: Message, now: SimTime, out: &mut Vec<Output>) {
        if matches!(message, Message::Request { .. } | Message::Response { outcome: Outcome::Ok(_), .. }) {
            self.remote_up(from, now, out);
        }
        match message {
            Message::Request { .. } if self.identity.is_some() => {
                if let Some(Message::Request { id, body }) = self.take_exchange(from, message, now, out) {
                    if self.defer_for_keys(from, id, &body, now, out) {
                        return;
                    }
                    self.answer_request(from, id, body, now, out);
                }
            }
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
                self.on_answer(req, outcome, now, out);
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

    fn on_request(&mut self, from: ServerIdx, mut body: Request, now: SimTime, out: &mut Vec<Output>) -> Outcome {
        if let Some(refused) = self.acl_gate(from, &mut body, out) {
            return refused;
        }
        match body {
            Request::Transaction { pdus } => self.answer_send(pdus, from, now, out),
            Request::GetMissingEvents { room_id, earliest, latest, limit } => {
                self.answer_missing(&room_id, &earliest, &latest, limit)
            }
            Request::MakeJoin { room_id, user_id, server_key } => {
                self.answer_make_join(&room_id, &user_id, server_key.as_deref(), from, now)
            }
            Request::SendJoin { pdu } => self.answer_send_join(pdu, from, now, out),
            Request::Invite { pdu, room_version, .. } => self.answer_invite(pdu, &room_version, from, now, out),
            Request::Identity(call) => self.answer_identity(call, now, out),
            Request::MakeKnock { room_id, user_id } => {
                self.answer_membership_template(&room_id, &user_id, "knock", now)
            }
            Request::SendKnock { pdu } => self.answer_send_knock(pdu, from, now, out),
            Request::MakeLeave { room_id, user_id } => {
                self.answer_membership_template(&room_id, &user_id, "leave", now)
            }
            Request::SendLeave { pdu } => self.answer_send_leave(pdu, from, now, out),
            Request::ServerKeys { .. } => self.answer_server_keys(now),
            // A homeserver is no notary here: notaries are nodes of their own (sim/notary.rs).
            Request::KeyQuery { .. } => Outcome::Error { status: 404, errcode: "M_UNRECOGNIZED".into() },
            Request::StateIds { room_id, event_id } => self.answer_state_ids(&room_id, &event_id),
            Request::GetEvent { room_id, event_id } => self.answer_get_event(&room_id, &event_id),
            Request::EventAuth { room_id, event_id } => self.answer_event_auth(&room_id, &event_id),
            Request::Backfill { room_id, v, limit } => self.answer_backfill(&room_id, &v, limit),
            Request::QueryAccounts(q) => self.answer_query_accounts(from, &q),
            Request::AccountInvite { event, room_version, ban } => {
                self.answer_account_invite(event, &room_version, ban, now, out)
            }
            Request::KeyV3Query { room_id, server_keys } => self.answer_key_v3_query(from, &room_id, &server_keys),
            Request::PortableAccounts { room_id, account_keys } => {
                self.answer_portable_accounts(from, &room_id, &account_keys)
            }
        }
    }

    /// An answer whose PDUs could not be checked (no key of a signer): the request failed as
    /// with an invalid answer.
    pub(crate) fn on_unverifiable_answer(
        &mut self,
        req: PendingRequest,
        why: String,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        self.record(out, SimEvent::RequestFailed { request: req.body.name().into(), to: req.to, why });
        match (&req.purpose, &req.body) {
            (Purpose::GetEvent { room_id }, Request::GetEvent { event_id, .. }) => {
                let (room_id, event_id) = (room_id.clone(), event_id.clone());
                self.on_got_event(&room_id, None, &event_id, out);
                self.arm_missing_retry(&room_id, now, out);
            }
            (Purpose::EventAuth { room_id, event_id }, _) => {
                let (room_id, event_id) = (room_id.clone(), event_id.clone());
                self.on_event_auth(&room_id, &event_id, None, out);
                self.arm_missing_retry(&room_id, now, out);
            }
            (purpose, _) => self.join_request_failed(purpose, req.to, joining::JoinFailure::Invalid, now, out),
        }
    }

    pub(crate) fn on_response(&mut self, req: PendingRequest, outcome: Outcome, now: SimTime, out: &mut Vec<Output>) {
        if matches!(req.purpose, Purpose::DomainView) {
            if let Outcome::Error { status, errcode } = &outcome {
                let why = format!("{status} {errcode}");
                self.record(out, SimEvent::RequestFailed { request: req.body.name().into(), to: req.to, why });
            }
            return self.on_domain_answer(&req.body, req.to, Some(outcome), now, out);
        }
        match (req.purpose, outcome) {
            (Purpose::Transaction { dest, .. }, Outcome::Ok(_)) => {
                self.outbound.acked(dest);
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
                self.join_done(&room_id, &user);
                self.on_joined(user, room_id, pdus, req.to, now, out)
            }
            (Purpose::Invite { room_id }, Outcome::Ok(Response::Invite { pdu })) => {
                self.on_invite_signed(room_id, pdu, now, out)
            }
            (Purpose::MakeKnock { user, room_id }, Outcome::Ok(Response::MembershipTemplate(t))) => {
                self.on_knock_template(user, room_id, t, req.to, now, out)
            }
            (Purpose::SendKnock { user, room_id }, Outcome::Ok(Response::Knocked { knock_room_state })) => {
                self.on_knocked(user, room_id, knock_room_state, req.to, out)
            }
            (Purpose::MakeLeave { user, room_id }, Outcome::Ok(Response::MembershipTemplate(t))) => {
                self.on_leave_template(user, room_id, t, req.to, now, out)
            }
            (Purpose::SendLeave { user, room_id }, Outcome::Ok(Response::Left)) => self.on_left(user, room_id, out),
            (Purpose::KeyFetch { server, step }, outcome) => self.on_key_answer(server, step, Some(outcome), now, out),
            (Purpose::AccountQuery { domain, keys }, outcome) => {
                self.on_accounts_outcome(&domain, &keys, Some(outcome), now, out)
            }
            (Purpose::AccountInvite { room_id }, Outcome::Ok(Response::AccountInvite { event })) => {
                let Request::AccountInvite { event: sent, .. } = &req.body else { unreachable!("an account invite") };
                self.on_account_invite_answer(&room_id, sent, event, req.to, now, out)
            }
            (Purpose::SendJoin { user, room_id }, Outcome::Ok(Response::SendJoin { state, auth_chain, event })) => {
                self.join_done(&room_id, &user);
                self.on_joined_state(user, room_id.clone(), state, auth_chain, event, req.to, now, out);
                self.catch_up_after_answer(&room_id, now, out);
            }
            (Purpose::StateIds { room_id, event_id }, outcome) => {
                let ids = match outcome {
                    Outcome::Ok(Response::StateIds { pdu_ids, auth_chain_ids }) => Some((pdu_ids, auth_chain_ids)),
                    _ => None,
                };
                self.on_state_ids(&room_id, event_id, ids, req.to, now, out);
                self.catch_up_after_answer(&room_id, now, out);
            }
            (Purpose::GetEvent { room_id }, outcome) => {
                let pdu = match outcome {
                    Outcome::Ok(Response::Events { mut pdus }) if pdus.len() == 1 => pdus.pop(),
                    _ => None,
                };
                let Request::GetEvent { event_id, .. } = &req.body else { unreachable!("asked for an event") };
                self.on_got_event(&room_id, pdu, event_id, out);
                self.catch_up_after_answer(&room_id, now, out);
            }
            (Purpose::EventAuth { room_id, event_id }, outcome) => {
                let chain = match outcome {
                    Outcome::Ok(Response::Events { pdus }) => Some(pdus),
                    _ => None,
                };
                self.on_event_auth(&room_id, &event_id, chain, out);
                self.catch_up_after_answer(&room_id, now, out);
            }
            (Purpose::Backfill { room_id }, Outcome::Ok(Response::Events { pdus })) => {
                self.on_backfilled(&room_id, pdus, out);
                self.catch_up_after_answer(&room_id, now, out);
            }
            (Purpose::Identity(p), outcome) => self.on_identity_answer(p, Some(outcome), now, out),
            (purpose, outcome) => {
                let failure = match outcome {
                    Outcome::Error { status, errcode } => joining::JoinFailure::Status { status, errcode },
                    Outcome::Ok(_) => joining::JoinFailure::Invalid,
                };
                let why = failure.describe();
                self.record(out, SimEvent::RequestFailed { request: req.body.name().into(), to: req.to, why });
                self.join_request_failed(&purpose, req.to, failure, now, out);
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
            Timer::RetryJoin { room_id, user, round } => self.on_retry_join(room_id, user, round, now, out),
            Timer::RetryDestination { dest } => self.send_next_transaction(dest, now, out),
            Timer::RetryRequest { id } => self.resend_request(id, now, out),
            Timer::RetryKeys { server } => self.retry_keys(server, now, out),
            Timer::AccountQuery => self.on_account_timer(now, out),
            Timer::RoomAppear { room_id, user } => self.show_room(&room_id, &user, now, out),
            Timer::AcceptParticipation { room_id, key, acceptor, domain } => {
                self.on_accept_participation(room_id, key, acceptor, domain, now, out)
            }
            Timer::IdentitySync { user, client } => self.on_identity_sync(&user, &client),
            Timer::ThirdPartyJoin { room_id, user } => self.on_third_party_join(room_id, user, now, out),
            Timer::RequestTimeout { id } => {
                let Some(req) = self.requests.remove(&id) else { return };
                // Retried with backoff (`retry.rs`) until its schedule is exhausted.
                let Some(req) = self.retry_later(id, req, now, out) else { return };
                if let Purpose::Transaction { dest, .. } = req.purpose {
                    self.transaction_failed(dest, now, out);
                    return;
                }
                self.record(
                    out,
                    SimEvent::RequestFailed { request: req.body.name().into(), to: req.to, why: "timeout".into() },
                );
                if let (Purpose::SendJoin { room_id, .. }, Request::SendJoin { pdu }) = (&req.purpose, &req.body) {
                    self.send_join_gave_up(room_id, pdu.clone(), now, out);
                }
                self.join_request_failed(&req.purpose, req.to, joining::JoinFailure::Timeout, now, out);
                if let Purpose::Fetch { room_id } = &req.purpose {
                    if let Some(r) = self.rooms.get_mut(room_id) {
                        r.fetching.remove(&req.to);
                    }
                    self.arm_missing_retry(room_id, now, out);
                }
                match (&req.purpose, &req.body) {
                    (Purpose::DomainView, _) => self.on_domain_answer(&req.body, req.to, None, now, out),
                    (Purpose::StateIds { room_id, event_id }, _) => {
                        self.on_state_ids(room_id, event_id.clone(), None, req.to, now, out)
                    }
                    (Purpose::GetEvent { room_id }, Request::GetEvent { event_id, .. }) => {
                        self.on_got_event(room_id, None, event_id, out)
                    }
                    (Purpose::EventAuth { room_id, event_id }, _) => self.on_event_auth(room_id, event_id, None, out),
                    (Purpose::KeyFetch { server, step }, _) => {
                        let (server, step) = (server.clone(), *step);
                        self.on_key_answer(server, step, None, now, out)
                    }
                    (Purpose::AccountQuery { domain, keys }, _) => {
                        let (domain, keys) = (domain.clone(), keys.clone());
                        self.on_accounts_outcome(&domain, &keys, None, now, out)
                    }
                    (Purpose::Identity(p), _) => self.on_identity_answer(p.clone(), None, now, out),
                    _ => {}
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
