//! A homeserver's identity duties (Client-Server API "Third-party invites", Server-Server API
//! "Third-party invites", Identity Service API "Association lookup"), and its users' clients
//! (`m.identity_server` account data, MSC2230).
//!
//! - **Invite by e-mail** (`invite_email`): the acting client picks its identity server from
//!   its copy of the account data (or the default); none → not attempted. Then
//!   `/hash_details` → `/lookup` with the pepper (after `M_INVALID_PEPPER`, fresh hash details
//!   and a retry, `pepper_retries` times); MSC4004 `third_party_mappings` are followed to the
//!   other server, re-hashing with its pepper, `max_redirects` times, never visiting a server
//!   twice. Found → a plain invite of that user. Not found → `/store-invite` at the client's
//!   identity server and `m.room.third_party_invite` (state key = token) into the room.
//! - **Binding** (`bind`): `/3pid/bind`; the identity server then sends `/3pid/onbind` with the
//!   signed invites. For each, the bound user's server builds the `m.room.member` invite
//!   (`sender` = the inviter, `content.third_party_invite.signed`); it issues it itself when it
//!   is in the room, otherwise it calls `/exchange_third_party_invite` on the inviter's server.
//! - **The issuer** (whichever of the two issues it) verifies `signed` against the room's
//!   `m.room.third_party_invite` keys, asks the `key_validity_url` of the key that verified,
//!   and only then issues the invite (the usual `/v2/invite` co-signing when the invitee is
//!   remote). In the spec's design (`key_validity_check = "issuer"`) no other server asks, so
//!   every server judges the invite by the auth rules alone and all agree. In the divergent
//!   design (`"every_server"`) each server that receives the invite asks too and rejects it
//!   when the key is not valid (`Stage::OutsideCheck`): that can split servers.
//! - The invitee joins `auto_join_delay` after its third-party invite arrives.

use super::actions::Draft;
use super::requests::Purpose;
use super::{ClientAction, Output, Server, Timer};
use crate::protocol::auth::verify_third_party_signed;
use crate::protocol::identity::{lookup_hash, Algorithm, LookupRequest, Medium};
use crate::protocol::pdu::Pdu;
use crate::scenario::{AccountDataSpec, ActionKind, IdentitySpec, KeyValidityCheck};
use crate::sim::event::SimEvent;
use crate::sim::federation::identity::{IdentityRequest, IdentityResponse};
use crate::sim::federation::{Message, Outcome, Request, RequestId, Response, ServerIdx};
use crate::sim::identity_client::{InviteRoute, Preference, UserClients};
use crate::sim::identity_event::{IdentityEvent, LookupOutcome};
use crate::sim::identity_server::OnBindInvite;
use crate::sim::server::routing::default_server_of;
use crate::sim::time::SimTime;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Why an identity request was sent.
#[derive(Debug, Clone)]
pub(crate) enum IdentityPurpose {
    HashDetails {
        invite: u64,
    },
    Lookup {
        invite: u64,
        hash: String,
    },
    StoreInvite {
        invite: u64,
    },
    Bind,
    /// The issuer's `key_validity_url` check of exchange `exchange`.
    IssuerValidity {
        exchange: u64,
    },
    /// The divergent design's check of a received invite event.
    ReceiptValidity {
        event_id: String,
    },
    Exchange,
}

/// An invite by e-mail under way (the client's lookup, then the store).
#[derive(Debug, Clone)]
struct EmailInvite {
    user: String,
    client: String,
    room_name: String,
    room_id: String,
    address: String,
    /// The identity server the client's setting names (where an invite is stored).
    origin: String,
    /// The identity server asked now.
    at: String,
    visited: BTreeSet<String>,
    redirects: u32,
    pepper_retries: u32,
}

/// An invite being issued here: waiting for the `key_validity_url` answer.
#[derive(Debug, Clone)]
struct Issuing {
    /// The invitee's server's `/exchange_third_party_invite` to answer (`None`: issued for a
    /// local invitee's own binding).
    reply: Option<(ServerIdx, RequestId)>,
    room_id: String,
    token: String,
    mxid: String,
    sender: String,
    content: Value,
    public_key: String,
}

/// Per server: its users' clients and the identity calls under way.
pub struct IdentityState {
    spec: IdentitySpec,
    clients: BTreeMap<String, UserClients>,
    invites: BTreeMap<u64, EmailInvite>,
    issuing: BTreeMap<u64, Issuing>,
    next: u64,
    /// The divergent design: verdicts of received invites' key checks, by event ID, and the
    /// invites waiting for theirs.
    checked: BTreeMap<String, bool>,
    parked: BTreeMap<String, (Arc<Pdu>, ServerIdx)>,
}

fn preference(spec: &AccountDataSpec) -> Preference {
    match spec {
        AccountDataSpec::Absent => Preference::Absent,
        AccountDataSpec::Disabled => Preference::Disabled,
        AccountDataSpec::Server(name) => Preference::Url(name.clone()),
    }
}

fn preference_text(p: &Preference) -> String {
    match p {
        Preference::Absent => "absent".into(),
        Preference::Disabled => "null".into(),
        Preference::Url(name) => name.clone(),
    }
}

/// `https://<host>/…` → `<host>`.
fn url_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    rest.split('/').next().filter(|h| !h.is_empty())
}

impl Server {
    /// Gives this server's users their clients (each loaded: it has synced the account data).
    pub fn enable_identity(&mut self, spec: &IdentitySpec) {
        let mut clients = BTreeMap::new();
        for user in &self.users {
            let names = spec.clients_of(user);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut uc = UserClients::new(preference(&spec.account_data_of(user)), &refs);
            for c in &names {
                uc.load(c);
            }
            clients.insert(user.clone(), uc);
        }
        self.identity = Some(Box::new(IdentityState {
            spec: spec.clone(),
            clients,
            invites: BTreeMap::new(),
            issuing: BTreeMap::new(),
            next: 1,
            checked: BTreeMap::new(),
            parked: BTreeMap::new(),
        }));
    }

    fn identity_record(&self, out: &mut Vec<Output>, event: IdentityEvent) {
        self.record(out, SimEvent::Identity(event));
    }

    fn client_of(&self, a: &ClientAction) -> Result<String, String> {
        let state = self.identity.as_ref().ok_or("the scenario has no identity servers")?;
        Ok(a.client.clone().unwrap_or_else(|| state.spec.clients_of(&a.user)[0].clone()))
    }

    fn identity_call(
        &mut self,
        to: &str,
        call: IdentityRequest,
        p: IdentityPurpose,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        match self.directory.node(to) {
            Some(k) => self.send_request(k, Request::Identity(call), Purpose::Identity(p), now, out),
            // Validated by the scenario; a URL naming no node is an unreachable server.
            None => self.on_identity_answer(p, None, now, out),
        }
    }

    /// `invite_email`: the client's choice of identity server, then its lookup.
    pub(crate) fn invite_email(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let client = self.client_of(a)?;
        let room_id = a.room_id.clone().ok_or("the room does not exist yet")?;
        let address = a.address.clone().ok_or("invite_email without an address")?;
        let state = self.identity.as_mut().expect("checked by client_of");
        let default = state.spec.default_server.clone();
        let uc = state.clients.get_mut(&a.user).ok_or("not a user of this server")?;
        let stale_before = uc.stale_actions;
        let route = uc.invite_route(&client, default.as_deref());
        let stale = uc.stale_actions > stale_before;
        let (route, why) = match route {
            Some(InviteRoute::Ask(name)) => (Some(name), None),
            Some(InviteRoute::NotAttempted { why }) => (None, Some(why.to_owned())),
            None => (None, Some("the client has not loaded its account data".to_owned())),
        };
        let record = IdentityEvent::InviteByEmail {
            user: a.user.clone(),
            client: client.clone(),
            room: a.room_name.clone(),
            address: address.clone(),
            route: route.clone(),
            why: why.clone(),
            stale,
        };
        self.identity_record(out, record);
        let Some(origin) = route else { return Err(why.unwrap_or_default()) };
        if !self.has_joined_user(&room_id) {
            let why = "this server is not in the room".to_owned();
            let ev = IdentityEvent::InviteAbandoned {
                user: a.user.clone(),
                room: a.room_name.clone(),
                address,
                why: why.clone(),
            };
            self.identity_record(out, ev);
            return Err(why);
        }
        let state = self.identity.as_mut().expect("checked");
        let invite = state.next;
        state.next += 1;
        state.invites.insert(
            invite,
            EmailInvite {
                user: a.user.clone(),
                client,
                room_name: a.room_name.clone(),
                room_id,
                address,
                origin: origin.clone(),
                at: origin.clone(),
                visited: BTreeSet::from([origin.clone()]),
                redirects: 0,
                pepper_retries: 0,
            },
        );
        self.identity_call(&origin, IdentityRequest::HashDetails, IdentityPurpose::HashDetails { invite }, now, out);
        Ok(None)
    }

    /// `bind`: `/3pid/bind` at the named identity server or the client's.
    pub(crate) fn bind_address(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let client = self.client_of(a)?;
        let address = a.address.clone().ok_or("bind without an address")?;
        let state = self.identity.as_mut().expect("checked");
        let default = state.spec.default_server.clone();
        let uc = state.clients.get_mut(&a.user).ok_or("not a user of this server")?;
        let server = match &a.server {
            Some(s) => s.clone(),
            None => match uc.invite_route(&client, default.as_deref()) {
                Some(InviteRoute::Ask(name)) => name,
                Some(InviteRoute::NotAttempted { why }) => return Err(why.to_owned()),
                None => return Err("the client has not loaded its account data".into()),
            },
        };
        let call = IdentityRequest::Bind { medium: Medium::Email, address, mxid: a.user.clone() };
        self.identity_call(&server, call, IdentityPurpose::Bind, now, out);
        Ok(None)
    }

    /// `set_identity_server`: the client writes `m.identity_server`; the user's other clients
    /// see it after the sync delay.
    pub(crate) fn set_identity_server(
        &mut self,
        a: &ClientAction,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let client = self.client_of(a)?;
        let value = preference(a.account_data.as_ref().ok_or("set_identity_server without a value")?);
        let state = self.identity.as_mut().expect("checked");
        let delay = state.spec.sync_delay_us;
        let others: Vec<String> = state.spec.clients_of(&a.user).into_iter().filter(|c| *c != client).collect();
        let uc = state.clients.get_mut(&a.user).ok_or("not a user of this server")?;
        let lost_before = uc.lost_writes;
        uc.write(&client, value.clone());
        let lost = uc.lost_writes > lost_before;
        for c in others {
            out.push(Output::SetTimer {
                at: now + delay,
                timer: Timer::IdentitySync { user: a.user.clone(), client: c },
            });
        }
        let ev = IdentityEvent::AccountData { user: a.user.clone(), client, value: preference_text(&value), lost };
        self.identity_record(out, ev);
        Ok(None)
    }

    /// The sync delay is over: `client` holds the account data as it is now.
    pub(crate) fn on_identity_sync(&mut self, user: &str, client: &str) {
        if let Some(uc) = self.identity.as_mut().and_then(|s| s.clients.get_mut(user)) {
            uc.sync(client);
        }
    }

    /// An answer (or `None`: no answer) to an identity call.
    pub(crate) fn on_identity_answer(
        &mut self,
        purpose: IdentityPurpose,
        outcome: Option<Outcome>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let answer = match outcome {
            Some(Outcome::Ok(Response::Identity(r))) => Ok(r),
            Some(Outcome::Error { status, errcode }) => Err(format!("{status} {errcode}")),
            Some(Outcome::Ok(_)) => Err("an answer of the wrong kind".into()),
            None => Err("no answer".into()),
        };
        match purpose {
            IdentityPurpose::HashDetails { invite } => match answer {
                Ok(IdentityResponse::HashDetails(details)) => {
                    let Some(inv) = self.identity.as_ref().and_then(|s| s.invites.get(&invite)).cloned() else {
                        return;
                    };
                    let hash = lookup_hash(Algorithm::Sha256, &inv.address, Medium::Email, &details.lookup_pepper);
                    let call = IdentityRequest::Lookup(LookupRequest {
                        algorithm: Algorithm::Sha256,
                        pepper: details.lookup_pepper,
                        addresses: vec![hash.clone()],
                    });
                    self.identity_call(&inv.at, call, IdentityPurpose::Lookup { invite, hash }, now, out);
                }
                _ => self.lookup_done(invite, LookupOutcome::Failed, None, now, out),
            },
            IdentityPurpose::Lookup { invite, hash } => self.on_lookup(invite, &hash, answer, now, out),
            IdentityPurpose::StoreInvite { invite } => self.on_stored(invite, answer, now, out),
            IdentityPurpose::IssuerValidity { exchange } => {
                let valid = matches!(answer, Ok(IdentityResponse::IsValid { valid: true }));
                let why = match &answer {
                    Ok(IdentityResponse::IsValid { valid: false }) => {
                        Some("the identity server says the key is not valid".into())
                    }
                    Ok(IdentityResponse::IsValid { valid: true }) => None,
                    Ok(_) => Some("an answer of the wrong kind".into()),
                    Err(e) => Some(format!("key_validity_url: {e}")),
                };
                self.on_issuer_validity(exchange, valid, why, now, out);
            }
            IdentityPurpose::ReceiptValidity { event_id } => {
                let valid = matches!(answer, Ok(IdentityResponse::IsValid { valid: true }));
                let why = (!valid).then(|| match &answer {
                    Err(e) => format!("key_validity_url: {e}"),
                    _ => "the identity server says the key is not valid".to_owned(),
                });
                let Some(state) = self.identity.as_mut() else { return };
                let Some((pdu, from)) = state.parked.remove(&event_id) else { return };
                state.checked.insert(event_id.clone(), valid);
                let public_key = self.validity_key(&pdu).map(|(k, _)| k).unwrap_or_default();
                let ev = IdentityEvent::KeyValidity { event: event_id, public_key, valid, at_receipt: true, why };
                self.identity_record(out, ev);
                self.receive_pdu(pdu, from, now, out);
            }
            // The binding and the exchange need nothing more here: the identity server and the
            // issuer record what they did.
            IdentityPurpose::Bind | IdentityPurpose::Exchange => {}
        }
    }

    fn on_lookup(
        &mut self,
        invite: u64,
        hash: &str,
        answer: Result<IdentityResponse, String>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(state) = self.identity.as_mut() else { return };
        let (max_redirects, max_retries) = (state.spec.max_redirects, state.spec.pepper_retries);
        let Some(inv) = state.invites.get_mut(&invite) else { return };
        match answer {
            Ok(IdentityResponse::Lookup(found)) => {
                if let Some(mxid) = found.mappings.get(hash).cloned() {
                    return self.lookup_done(invite, LookupOutcome::Found, Some(mxid), now, out);
                }
                // MSC4004: another identity server maps it; ask there with its pepper.
                let next = found
                    .third_party_mappings
                    .iter()
                    .filter(|(_, hashes)| hashes.iter().any(|h| h == hash))
                    .map(|(server, _)| server.clone())
                    .find(|server| !inv.visited.contains(server));
                match next {
                    Some(server) if inv.redirects < max_redirects => {
                        inv.redirects += 1;
                        inv.visited.insert(server.clone());
                        inv.at = server.clone();
                        self.identity_call(
                            &server,
                            IdentityRequest::HashDetails,
                            IdentityPurpose::HashDetails { invite },
                            now,
                            out,
                        );
                    }
                    _ => self.lookup_done(invite, LookupOutcome::NotFound, None, now, out),
                }
            }
            Err(e) if e.ends_with("M_INVALID_PEPPER") && inv.pepper_retries < max_retries => {
                inv.pepper_retries += 1;
                let at = inv.at.clone();
                self.identity_call(
                    &at,
                    IdentityRequest::HashDetails,
                    IdentityPurpose::HashDetails { invite },
                    now,
                    out,
                );
            }
            Err(e) if e.ends_with("M_INVALID_PEPPER") => {
                self.lookup_done(invite, LookupOutcome::InvalidPepper, None, now, out)
            }
            _ => self.lookup_done(invite, LookupOutcome::Failed, None, now, out),
        }
    }

    /// The lookup ended: a plain invite, a stored invite, or nothing.
    fn lookup_done(
        &mut self,
        invite: u64,
        outcome: LookupOutcome,
        mxid: Option<String>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(inv) = self.identity.as_ref().and_then(|s| s.invites.get(&invite)).cloned() else { return };
        let answered_by = matches!(outcome, LookupOutcome::Found | LookupOutcome::NotFound).then(|| inv.at.clone());
        let ev = IdentityEvent::Lookup {
            user: inv.user.clone(),
            client: inv.client.clone(),
            address: inv.address.clone(),
            asked: inv.origin.clone(),
            answered_by,
            mxid: mxid.clone(),
            redirects: inv.redirects,
            pepper_retries: inv.pepper_retries,
            outcome,
        };
        self.identity_record(out, ev);
        let abandon = |s: &mut Server, out: &mut Vec<Output>, why: String| {
            s.identity.as_mut().expect("enabled").invites.remove(&invite);
            let ev = IdentityEvent::InviteAbandoned {
                user: inv.user.clone(),
                room: inv.room_name.clone(),
                address: inv.address.clone(),
                why,
            };
            s.identity_record(out, ev);
        };
        match (outcome, mxid) {
            (LookupOutcome::Found, Some(mxid)) => {
                self.identity.as_mut().expect("enabled").invites.remove(&invite);
                let mut a = crate::sim::world::schedule_action(&inv.room_name, &inv.user, ActionKind::Invite);
                a.room_id = Some(inv.room_id.clone());
                a.target = Some(mxid.clone());
                match self.invite(&a, now, out) {
                    Ok(event) => {
                        let ev = IdentityEvent::InvitedByLookup {
                            user: inv.user.clone(),
                            room: inv.room_name.clone(),
                            address: inv.address.clone(),
                            mxid,
                            event,
                        };
                        self.identity_record(out, ev);
                    }
                    Err(why) => abandon(self, out, format!("the invite of {mxid} was refused: {why}")),
                }
            }
            (LookupOutcome::NotFound, _) => {
                let call = IdentityRequest::StoreInvite {
                    medium: Medium::Email,
                    address: inv.address.clone(),
                    room_id: inv.room_id.clone(),
                    sender: inv.user.clone(),
                };
                self.identity_call(&inv.origin, call, IdentityPurpose::StoreInvite { invite }, now, out);
            }
            (LookupOutcome::InvalidPepper, _) => abandon(self, out, "M_INVALID_PEPPER after the retries".into()),
            _ => abandon(self, out, "the lookup failed".into()),
        }
    }

    /// `/store-invite` answered: `m.room.third_party_invite` into the room.
    fn on_stored(
        &mut self,
        invite: u64,
        answer: Result<IdentityResponse, String>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(inv) = self.identity.as_mut().and_then(|s| s.invites.remove(&invite)) else { return };
        let abandon = |s: &Server, out: &mut Vec<Output>, why: String| {
            let ev = IdentityEvent::InviteAbandoned {
                user: inv.user.clone(),
                room: inv.room_name.clone(),
                address: inv.address.clone(),
                why,
            };
            s.identity_record(out, ev);
        };
        let stored = match answer {
            Ok(IdentityResponse::StoreInvite(stored)) => stored,
            Ok(_) => return abandon(self, out, "store-invite: an answer of the wrong kind".into()),
            Err(e) => return abandon(self, out, format!("store-invite: {e}")),
        };
        let Some(first) = stored.public_keys.first() else {
            return abandon(self, out, "store-invite: no public key".into());
        };
        let d = Draft {
            event_type: "m.room.third_party_invite",
            state_key: Some(stored.token.clone()),
            sender: inv.user.clone(),
            content: json!({
                "display_name": stored.display_name,
                "key_validity_url": first.key_validity_url,
                "public_key": first.public_key,
                "public_keys": stored.public_keys,
            }),
        };
        match self.create_and_send(&inv.room_id, d, now, out) {
            Ok(event) => {
                let ev = IdentityEvent::ThirdPartyInviteSent {
                    user: inv.user.clone(),
                    room: inv.room_name.clone(),
                    room_id: inv.room_id.clone(),
                    address: inv.address.clone(),
                    token: stored.token,
                    event,
                };
                self.identity_record(out, ev);
            }
            Err(why) => abandon(self, out, format!("m.room.third_party_invite was refused: {why}")),
        }
    }

    /// `/3pid/onbind`: each invite is issued here (this server is in the room) or handed to
    /// the inviter's server.
    pub(crate) fn on_bind_invites(&mut self, invites: Vec<OnBindInvite>, now: SimTime, out: &mut Vec<Output>) {
        for inv in invites {
            if self.directory.home_of(&inv.mxid) != Some(self.index) {
                continue;
            }
            let token = inv.signed.get("token").and_then(Value::as_str).unwrap_or_default().to_owned();
            let content = json!({"membership": "invite", "third_party_invite": {"signed": inv.signed}});
            if self.has_joined_user(&inv.room_id) {
                self.start_issue(None, &inv.room_id, &token, &inv.mxid, &inv.sender, content, now, out);
                continue;
            }
            let Some(to) = default_server_of(&inv.sender).and_then(|s| self.directory.node(s)) else { continue };
            let mut event = Map::new();
            event.insert("type".into(), json!("m.room.member"));
            event.insert("room_id".into(), json!(inv.room_id));
            event.insert("sender".into(), json!(inv.sender));
            event.insert("state_key".into(), json!(inv.mxid));
            event.insert("content".into(), content);
            let call = IdentityRequest::Exchange { room_id: inv.room_id.clone(), event };
            self.send_request(to, Request::Identity(call), Purpose::Identity(IdentityPurpose::Exchange), now, out);
        }
    }

    /// `/exchange_third_party_invite` from the invitee's server: answered once the key's
    /// validity is known.
    pub(crate) fn on_exchange(
        &mut self,
        from: ServerIdx,
        id: RequestId,
        room_id: String,
        event: Map<String, Value>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let field = |k: &str| event.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        let (sender, mxid) = (field("sender"), field("state_key"));
        let content = event.get("content").cloned().unwrap_or_default();
        let token = content["third_party_invite"]["signed"]["token"].as_str().unwrap_or_default().to_owned();
        let well_formed = field("type") == "m.room.member" && field("room_id") == room_id && !token.is_empty();
        let ours = default_server_of(&sender).and_then(|s| self.directory.node(s)) == Some(self.index);
        let invitee_server = default_server_of(&mxid).and_then(|s| self.directory.node(s)) == Some(from);
        if !well_formed || !ours || !invitee_server || self.identity.is_none() {
            let outcome = Outcome::Error { status: 400, errcode: "M_INVALID_PARAM".into() };
            return self.respond(from, id, outcome, out);
        }
        self.start_issue(Some((from, id)), &room_id, &token, &mxid, &sender, content, now, out);
    }

    /// The issuer: `signed` must verify with a key of the room's `m.room.third_party_invite`,
    /// then that key's `key_validity_url` is asked.
    #[allow(clippy::too_many_arguments)]
    fn start_issue(
        &mut self,
        reply: Option<(ServerIdx, RequestId)>,
        room_id: &str,
        token: &str,
        mxid: &str,
        sender: &str,
        mut content: Value,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let refuse = |s: &mut Server, out: &mut Vec<Output>, why: &str, status: u16, errcode: &str| {
            let ev = IdentityEvent::InviteIssued {
                room_id: room_id.to_owned(),
                token: token.to_owned(),
                mxid: mxid.to_owned(),
                event: None,
                why: Some(why.to_owned()),
            };
            s.identity_record(out, ev);
            if let Some((to, id)) = reply {
                s.respond(to, id, Outcome::Error { status, errcode: errcode.into() }, out);
            }
        };
        if !self.has_joined_user(room_id) {
            return refuse(self, out, "the issuing server is not in the room", 403, "M_FORBIDDEN");
        }
        let room = &self.rooms[room_id];
        let Some(tpi) = room.current_event("m.room.third_party_invite", token) else {
            return refuse(self, out, "no m.room.third_party_invite for the token", 400, "M_INVALID_PARAM");
        };
        if tpi.sender != sender {
            return refuse(self, out, "the sender is not the third-party invite's sender", 400, "M_INVALID_PARAM");
        }
        let tpi_content = tpi.json.get("content").cloned().unwrap_or_default();
        let signed = content["third_party_invite"]["signed"].as_object().cloned().unwrap_or_default();
        let Some((public_key, url)) = verifying_key(&tpi_content, &signed) else {
            return refuse(self, out, "signed does not verify with the invite's public keys", 403, "M_FORBIDDEN");
        };
        // The spec's exchange: the inviting server adds the invite's display name.
        content["third_party_invite"]["display_name"] = tpi_content["display_name"].clone();
        let state = self.identity.as_mut().expect("caller checked");
        let exchange = state.next;
        state.next += 1;
        let issuing = Issuing {
            reply,
            room_id: room_id.to_owned(),
            token: token.to_owned(),
            mxid: mxid.to_owned(),
            sender: sender.to_owned(),
            content,
            public_key: public_key.clone(),
        };
        state.issuing.insert(exchange, issuing);
        let ephemeral = url.contains("/ephemeral/");
        let host = url_host(&url).unwrap_or_default().to_owned();
        let call = IdentityRequest::IsValid { public_key, ephemeral };
        self.identity_call(&host, call, IdentityPurpose::IssuerValidity { exchange }, now, out);
    }

    fn on_issuer_validity(
        &mut self,
        exchange: u64,
        valid: bool,
        why: Option<String>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(is) = self.identity.as_mut().and_then(|s| s.issuing.remove(&exchange)) else { return };
        let ev = IdentityEvent::KeyValidity {
            event: is.token.clone(),
            public_key: is.public_key.clone(),
            valid,
            at_receipt: false,
            why: why.clone(),
        };
        self.identity_record(out, ev);
        let result = match why {
            Some(why) => Err(why),
            None => self.issue_invite(&is, now, out),
        };
        let (event, why) = match result {
            Ok(event) => (Some(event), None),
            Err(why) => (None, Some(why)),
        };
        let outcome = match &why {
            None => Outcome::Ok(Response::Identity(IdentityResponse::Done)),
            Some(_) => Outcome::Error { status: 403, errcode: "M_FORBIDDEN".into() },
        };
        let ev = IdentityEvent::InviteIssued {
            room_id: is.room_id.clone(),
            token: is.token,
            mxid: is.mxid.clone(),
            event,
            why,
        };
        self.identity_record(out, ev);
        if let Some((to, id)) = is.reply {
            self.respond(to, id, outcome, out);
        }
    }

    /// The `m.room.member` invite: made here for a local invitee, else co-signed by the
    /// invitee's server first (`/v2/invite`), as any invite.
    fn issue_invite(&mut self, is: &Issuing, now: SimTime, out: &mut Vec<Output>) -> Result<String, String> {
        let d = Draft {
            event_type: "m.room.member",
            state_key: Some(is.mxid.clone()),
            sender: is.sender.clone(),
            content: is.content.clone(),
        };
        let target = default_server_of(&is.mxid)
            .and_then(|s| self.directory.node(s))
            .ok_or("the invitee's server is unknown")?;
        if target == self.index {
            let event = self.create_and_send(&is.room_id, d, now, out)?;
            self.arm_third_party_join(&is.room_id, &is.mxid, now, out);
            return Ok(event);
        }
        let pdu = self.build_checked(&is.room_id, d, now)?;
        let event = pdu.event_id.clone();
        let room = &self.rooms[&is.room_id];
        let body = Request::Invite {
            pdu,
            room_version: room.version.id.to_owned(),
            invite_room_state: crate::sim::federation::invite::invite_room_state(room, &is.sender),
        };
        self.send_request(target, body, Purpose::Invite { room_id: is.room_id.clone() }, now, out);
        Ok(event)
    }

    /// The invitee's join follows its third-party invite (`auto_join_delay`).
    pub(crate) fn arm_third_party_join(&mut self, room_id: &str, user: &str, now: SimTime, out: &mut Vec<Output>) {
        let Some(delay) = self.identity.as_ref().and_then(|s| s.spec.auto_join_delay_us) else { return };
        let timer = Timer::ThirdPartyJoin { room_id: room_id.to_owned(), user: user.to_owned() };
        out.push(Output::SetTimer { at: now + delay, timer });
    }

    /// A co-signed invite for a local user: a third-party one arms its join.
    pub(crate) fn on_invite_answered(&mut self, pdu: &Pdu, now: SimTime, out: &mut Vec<Output>) {
        let third_party = pdu.json.get("content").and_then(|c| c.get("third_party_invite")).is_some();
        if third_party {
            let room_id = super::room_id_of(pdu);
            self.arm_third_party_join(&room_id, pdu.state_key.as_deref().unwrap_or_default(), now, out);
        }
    }

    pub(crate) fn on_third_party_join(&mut self, room_id: String, user: String, now: SimTime, out: &mut Vec<Output>) {
        let mut a = crate::sim::world::schedule_action(&room_id, &user, ActionKind::Join);
        a.room_id = Some(room_id);
        self.on_action(a, now, out);
    }

    /// The key of the invite's `m.room.third_party_invite` that verifies its `signed`, with
    /// that key's `key_validity_url` (from the event's auth events as this server holds them).
    fn validity_key(&self, pdu: &Pdu) -> Option<(String, String)> {
        let content = pdu.json.get("content")?;
        let signed = content.get("third_party_invite")?.get("signed")?.as_object()?;
        let token = signed.get("token")?.as_str()?;
        let room = self.rooms.get(&super::room_id_of(pdu))?;
        let tpi = pdu
            .auth_events
            .iter()
            .filter_map(|id| room.dag.index_of(id))
            .map(|i| room.dag.pdu(i))
            .find(|p| p.event_type == "m.room.third_party_invite" && p.state_key.as_deref() == Some(token))?;
        verifying_key(tpi.json.get("content")?, signed)
    }

    /// The divergent design, at receipt: a third-party invite not created here waits for its
    /// key's `key_validity_url` answer. Returns true when the PDU was parked.
    pub(crate) fn park_for_validity(
        &mut self,
        pdu: &Arc<Pdu>,
        from: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> bool {
        let Some(state) = self.identity.as_ref() else { return false };
        if state.spec.key_validity_check != KeyValidityCheck::EveryServer
            || pdu.event_type != "m.room.member"
            || pdu.membership() != Some(crate::protocol::pdu::Membership::Invite)
            || pdu.json.get("content").and_then(|c| c.get("third_party_invite")).is_none()
        {
            return false;
        }
        if let Some(valid) = state.checked.get(&pdu.event_id).copied() {
            if !valid {
                let room = self.rooms.get_mut(&super::room_id_of(pdu)).expect("caller holds the room");
                room.reject_outside(&pdu.event_id, "key_validity_url: the key is not valid");
            }
            return false;
        }
        if state.parked.contains_key(&pdu.event_id) {
            return true;
        }
        let Some((public_key, url)) = self.validity_key(pdu) else { return false };
        let state = self.identity.as_mut().expect("checked");
        state.parked.insert(pdu.event_id.clone(), (pdu.clone(), from));
        let host = url_host(&url).unwrap_or_default().to_owned();
        let call = IdentityRequest::IsValid { public_key, ephemeral: url.contains("/ephemeral/") };
        self.identity_call(&host, call, IdentityPurpose::ReceiptValidity { event_id: pdu.event_id.clone() }, now, out);
        true
    }

    /// Whether the identity state waits on nothing (for quiescence).
    pub(crate) fn identity_idle(&self) -> bool {
        self.identity.as_ref().is_none_or(|s| s.parked.is_empty() && s.issuing.is_empty() && s.invites.is_empty())
    }

    /// Answers the identity calls a homeserver serves (`/3pid/onbind`); the exchange is
    /// answered later ([`Server::on_exchange`]).
    pub(crate) fn answer_identity(&mut self, call: IdentityRequest, now: SimTime, out: &mut Vec<Output>) -> Outcome {
        match call {
            IdentityRequest::OnBind { invites, .. } if self.identity.is_some() => {
                self.on_bind_invites(invites, now, out);
                Outcome::Ok(Response::Identity(IdentityResponse::Done))
            }
            _ => Outcome::Error { status: 404, errcode: "M_UNRECOGNIZED".into() },
        }
    }

    /// Routes an incoming identity message that needs its request ID (the exchange).
    pub(crate) fn take_exchange(
        &mut self,
        from: ServerIdx,
        message: Message,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Option<Message> {
        match message {
            Message::Request { id, body: Request::Identity(IdentityRequest::Exchange { room_id, event }) } => {
                self.on_exchange(from, id, room_id, event, now, out);
                None
            }
            other => Some(other),
        }
    }
}

/// The first key of `public_keys` (then `public_key`) that verifies `signed`, with its
/// `key_validity_url`.
fn verifying_key(tpi_content: &Value, signed: &Map<String, Value>) -> Option<(String, String)> {
    let mut keys: Vec<(String, String)> = tpi_content
        .get("public_keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|k| {
            Some((k.get("public_key")?.as_str()?.to_owned(), k.get("key_validity_url")?.as_str()?.to_owned()))
        })
        .collect();
    if let (Some(k), Some(u)) = (
        tpi_content.get("public_key").and_then(Value::as_str),
        tpi_content.get("key_validity_url").and_then(Value::as_str),
    ) {
        keys.push((k.to_owned(), u.to_owned()));
    }
    keys.into_iter().find(|(k, _)| verify_third_party_signed(signed, std::slice::from_ref(k)))
}
