//! An identity server as a node of the network: it answers the Identity Service API calls
//! ([`crate::sim::federation::identity`]) from its [`IdentityServer`] state, sends
//! `/3pid/onbind` to the bound user's homeserver when a binding completes pending invites, and
//! at the start of a run pushes its bindings to the identity servers its scenario lists
//! (MSC4004 `POST /lookups`, after asking each for its pepper).
//!
//! Its database survives a crash (nothing is lost but what was in flight). Calls it makes
//! itself (onbind, pushes) are sent once, without retries: a lost `/3pid/onbind` leaves the
//! invite pending, which the `identity` measures count.

use super::event::SimEvent;
use super::federation::identity::{IdentityRequest, IdentityResponse};
use super::federation::{Message, Outcome, Request, RequestId, Response, ServerIdx};
use super::identity_event::{IdentityEvent, IdentityInput};
use super::identity_server::{IdentityServer, StoreInviteError};
use super::server::{Directory, Input, Output};
use super::time::SimTime;
use crate::protocol::identity::{lookup_hash, Algorithm, LookupError, LookupsPush, Medium, PushTrust};
use crate::scenario::IdentityServerSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What one of its own requests was for.
#[derive(Debug, Clone)]
enum Sent {
    /// `/hash_details` of a server it pushes to.
    PushDetails,
    /// Answers it does not act on (onbind, the push itself).
    Other,
}

pub struct IdentityNode {
    pub index: ServerIdx,
    pub name: String,
    pub server: IdentityServer,
    directory: Arc<Directory>,
    /// Its bindings as (medium, address) → user ID, for pushes.
    bindings: Vec<(Medium, String)>,
    push_to: Vec<String>,
    /// Seed of the next `/store-invite` token (counter-based: deterministic).
    seed: [u8; 32],
    invites_stored: u64,
    requests: BTreeMap<RequestId, Sent>,
    next_request_id: RequestId,
    sign_with_ephemeral: bool,
    ephemeral_lifetime_us: Option<u64>,
    /// When each ephemeral key was made (`/store-invite`), for its lifetime.
    ephemeral_made: BTreeMap<String, SimTime>,
}

impl IdentityNode {
    pub fn new(index: ServerIdx, spec: &IdentityServerSpec, directory: Arc<Directory>, seed: [u8; 32]) -> IdentityNode {
        let trust = match &spec.trusted_pushers {
            Some(list) => PushTrust::Trusted(list.iter().cloned().collect()),
            None => PushTrust::Anyone,
        };
        let mut dir = crate::protocol::identity::Directory::new(&spec.pepper, spec.alt_peppers, trust);
        for b in &spec.bindings {
            dir.bind(b.medium, &b.address, &b.user);
        }
        let long_term = crate::protocol::crypto::sha256(&[&seed[..], b"long-term"].concat());
        IdentityNode {
            index,
            name: spec.name.clone(),
            server: IdentityServer::new(&spec.name, dir, long_term),
            directory,
            bindings: spec.bindings.iter().map(|b| (b.medium, b.address.clone())).collect(),
            push_to: spec.push_to.clone(),
            seed,
            invites_stored: 0,
            requests: BTreeMap::new(),
            next_request_id: 1,
            sign_with_ephemeral: spec.sign_with == crate::scenario::SignWith::Ephemeral,
            ephemeral_lifetime_us: spec.ephemeral_lifetime_us,
            ephemeral_made: BTreeMap::new(),
        }
    }

    /// It never waits on anything (its own calls have no timers).
    pub fn is_idle(&self) -> bool {
        true
    }

    pub fn handle(&mut self, input: Input, now: SimTime) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Deliver { from, message: Message::Request { id, body } } => {
                let outcome = match body {
                    Request::Identity(call) => self.answer(from, call, now, &mut out),
                    _ => Outcome::Error { status: 404, errcode: "M_UNRECOGNIZED".into() },
                };
                out.push(Output::Send { to: from, message: Message::Response { id, outcome }, delay_us: 0 });
            }
            Input::Deliver { from, message: Message::Response { id, outcome } } => {
                if let Some(Sent::PushDetails) = self.requests.remove(&id) {
                    if let Outcome::Ok(Response::Identity(IdentityResponse::HashDetails(details))) = outcome {
                        self.push(from, &details.lookup_pepper, &mut out);
                    }
                }
            }
            Input::Identity(IdentityInput::RotatePepper { pepper }) => self.server.directory.rotate_pepper(&pepper),
            Input::Identity(IdentityInput::RevokeKey { seed }) => self.server.revoke_long_term_key(seed),
            Input::Identity(IdentityInput::PushMappings) => {
                for target in self.push_to.clone() {
                    let Some(to) = self.directory.node(&target) else { continue };
                    self.send(to, IdentityRequest::HashDetails, Sent::PushDetails, &mut out);
                }
            }
            Input::Crash => self.requests.clear(),
            Input::Timer(_)
            | Input::Action(_)
            | Input::Restart
            | Input::SetClockSkew { .. }
            | Input::RotateKey { .. }
            | Input::EraseAccount { .. }
            | Input::ReregisterAccount { .. } => {}
        }
        out
    }

    fn send(&mut self, to: ServerIdx, call: IdentityRequest, sent: Sent, out: &mut Vec<Output>) {
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.requests.insert(id, sent);
        out.push(Output::Send { to, message: Message::Request { id, body: Request::Identity(call) }, delay_us: 0 });
    }

    fn record(out: &mut Vec<Output>, event: IdentityEvent) {
        out.push(Output::Event(SimEvent::Identity(event)));
    }

    /// MSC4004: its bindings' hashes with the recipient's pepper.
    fn push(&mut self, to: ServerIdx, pepper: &str, out: &mut Vec<Output>) {
        let hashes: Vec<String> =
            self.bindings.iter().map(|(m, a)| lookup_hash(Algorithm::Sha256, a, *m, pepper)).collect();
        let push = LookupsPush {
            algorithm: Algorithm::Sha256,
            pepper: pepper.to_owned(),
            mappings: BTreeMap::from([(self.name.clone(), hashes)]),
        };
        self.send(to, IdentityRequest::Lookups(push), Sent::Other, out);
    }

    fn answer(&mut self, from: ServerIdx, call: IdentityRequest, now: SimTime, out: &mut Vec<Output>) -> Outcome {
        let ok = |r: IdentityResponse| Outcome::Ok(Response::Identity(r));
        let error = |status: u16, errcode: &str| Outcome::Error { status, errcode: errcode.into() };
        match call {
            IdentityRequest::HashDetails => ok(IdentityResponse::HashDetails(self.server.directory.hash_details())),
            IdentityRequest::Lookup(request) => match self.server.directory.lookup(&request) {
                Ok(answer) => ok(IdentityResponse::Lookup(answer)),
                Err(LookupError::InvalidPepper) => error(400, "M_INVALID_PEPPER"),
                Err(LookupError::InvalidParam) => error(400, "M_INVALID_PARAM"),
            },
            IdentityRequest::Lookups(push) => {
                let pusher = self.directory.names.get(from as usize).cloned().unwrap_or_default();
                let hashes = push.mappings.values().map(Vec::len).sum::<usize>() as u32;
                match self.server.directory.push(&pusher, &push) {
                    Ok(_) => {
                        Self::record(out, IdentityEvent::Push { from: pusher, hashes, refused: None });
                        ok(IdentityResponse::Done)
                    }
                    Err(why) => {
                        Self::record(out, IdentityEvent::Push { from: pusher, hashes, refused: Some(why.to_string()) });
                        match why {
                            crate::protocol::identity::PushError::Untrusted(_) => error(403, "M_FORBIDDEN"),
                            crate::protocol::identity::PushError::InvalidPepper => error(400, "M_INVALID_PEPPER"),
                        }
                    }
                }
            }
            IdentityRequest::StoreInvite { medium, address, room_id, sender } => {
                self.invites_stored += 1;
                let token_seed = crate::protocol::crypto::sha256(
                    &[&self.seed[..], b"invite", &self.invites_stored.to_be_bytes()].concat(),
                );
                match self.server.store_invite(medium, &address, &room_id, &sender, token_seed) {
                    Ok(stored) => {
                        for key in stored.public_keys.iter().filter(|k| k.key_validity_url.contains("/ephemeral/")) {
                            self.ephemeral_made.insert(key.public_key.clone(), now);
                        }
                        ok(IdentityResponse::StoreInvite(stored))
                    }
                    Err(StoreInviteError::InUse { .. }) => error(400, "M_THREEPID_IN_USE"),
                    Err(StoreInviteError::Medium) => error(400, "M_UNRECOGNIZED"),
                }
            }
            IdentityRequest::Bind { medium, address, mxid } => {
                let invites = self.server.bind_signing(medium, &address, &mxid, self.sign_with_ephemeral);
                let bound = IdentityEvent::Bound {
                    address: address.clone(),
                    mxid: mxid.clone(),
                    invites: invites.len() as u32,
                };
                Self::record(out, bound);
                if !invites.is_empty() {
                    if let Some(home) = self.directory.home_of(&mxid) {
                        self.send(home, IdentityRequest::OnBind { medium, address, mxid, invites }, Sent::Other, out);
                    }
                }
                ok(IdentityResponse::Done)
            }
            IdentityRequest::IsValid { public_key, ephemeral } => {
                let made = self.ephemeral_made.get(&public_key).copied();
                if let (true, Some(made), Some(life)) = (ephemeral, made, self.ephemeral_lifetime_us) {
                    if now >= made.saturating_add(life) {
                        self.server.expire_ephemeral(&public_key);
                    }
                }
                ok(IdentityResponse::IsValid { valid: self.server.is_valid(&public_key, ephemeral) })
            }
            IdentityRequest::OnBind { .. } | IdentityRequest::Exchange { .. } => error(404, "M_UNRECOGNIZED"),
        }
    }
}
