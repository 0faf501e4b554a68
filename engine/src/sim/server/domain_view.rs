//! MSC4345 §7–§8 and MSC4348 client-side on a homeserver, the asking side: which domain each
//! room-scoped server key belongs to, which name each account has, and how the server shows a
//! sender to its clients. The answering side is `federation/domain.rs`.
//!
//! * MSC4345 §7: the domain in a participation event's `unverified_domain` is verified by asking
//!   that domain's `/_matrix/key/v3/query` whether it advertises the key; the result is cached.
//! * MSC4348 client-side: the account's name (`unsigned.account`) comes from `/query/accounts`
//!   asked of the server whose key co-signs the account's membership.
//! * MSC4345 §8: a sender is shown as `@<name>:<server_domain>` only when the domain is verified
//!   (never from `unverified_domain`) and so is the name; otherwise by its account-key user ID.
//!
//! The key a sender is shown through is the co-signer of its *current membership* in this
//! server's state (a move re-binds it: the new server's key co-signs the new join). Every
//! change of a sender's shown form or of its `unsigned` annotations is a
//! [`SimEvent::PortableShown`] record.
//!
//! Choices where the MSCs are silent:
//! * a server asks only once its own key is accepted in the room (the queried server admits
//!   only participating requesters), and names are cached per (room, server key, account):
//!   a name vouched for by one server is not carried over to another server's domain;
//! * one request is not retried by the request layer; a failed or negative check is retried
//!   on [`RETRY_US`] (checked at the server's next input, no timer of its own), then settled
//!   as unverified;
//! * this server's own key is verified without asking, and so are the names of the accounts
//!   it co-signs for.

use super::requests::Purpose;
use super::{Output, Server};
use crate::protocol::ids;
use crate::protocol::pdu::{ParticipationState, TypedContent};
use crate::protocol::signers;
use crate::sim::event::{SimEvent, Verdict};
use crate::sim::federation::{Outcome, Request, RequestId, Response, ServerIdx};
use crate::sim::server::portable::P;
use crate::sim::time::SimTime;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Delays before the retries of a failed or negative check; after the last, it is settled.
pub const RETRY_US: [u64; 3] = [10_000_000, 30_000_000, 60_000_000];

/// Where one check (a key's domain, or an account's name) stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Check {
    /// To be asked (when this server's own key is accepted in the room).
    Due,
    /// A request is out.
    Asked(RequestId),
    Verified(String),
    /// Not verified; asked again at `retry_at` (`None`: settled).
    Unverified {
        retry_at: Option<SimTime>,
    },
}

#[derive(Debug, Clone)]
struct Entry {
    check: Check,
    /// The domain asked (the key's `unverified_domain`).
    ask: String,
    /// Answers and failures taken so far.
    tries: u32,
}

impl Entry {
    fn due(ask: String) -> Entry {
        Entry { check: Check::Due, ask, tries: 0 }
    }

    fn settled(check: Check, ask: String) -> Entry {
        Entry { check, ask, tries: 0 }
    }

    fn verified(&self) -> Option<&str> {
        match &self.check {
            Check::Verified(v) => Some(v),
            _ => None,
        }
    }

    fn wants_asking(&self, now: SimTime) -> bool {
        match self.check {
            Check::Due => true,
            Check::Unverified { retry_at: Some(t) } => t <= now,
            _ => false,
        }
    }

    /// A negative or failed answer: unverified, retried on [`RETRY_US`].
    fn fail(&mut self, now: SimTime) {
        let retry_at = RETRY_US.get(self.tries as usize).map(|d| now + d);
        self.tries += 1;
        self.check = Check::Unverified { retry_at };
    }
}

/// One server's MSC4345 / MSC4348 client view.
#[derive(Debug, Default)]
pub struct DomainView {
    /// (room ID, server key) → the key's domain.
    domains: BTreeMap<(String, String), Entry>,
    /// (room ID, server key, account key) → the account's name, as that key's server gives it.
    names: BTreeMap<(String, String, String), Entry>,
    /// (room ID, sender) → how this server's clients are shown the sender now, and whether
    /// verified.
    shown: BTreeMap<(String, String), (String, bool, Map<String, Value>)>,
    /// Test only: this server's `/key/v3/query` answers omit its own key (a faulty domain).
    #[doc(hidden)]
    pub omit_own_key_for_test: bool,
}

impl DomainView {
    /// Whether any check is waiting to be asked or retried (cheap gate of the tick).
    fn has_work(&self, now: SimTime) -> bool {
        self.domains
            .values()
            .chain(self.names.values())
            .any(|e| e.wants_asking(now) || matches!(e.check, Check::Asked(_)))
    }
}

impl Server {
    /// After every input: the shown forms of the members of the portable-account rooms in
    /// which an event was just judged, and the checks due.
    pub(crate) fn domain_view_tick(&mut self, now: SimTime, out: &mut Vec<Output>) {
        if !self.directory.portable.is_active() {
            return;
        }
        let mut dirty: BTreeSet<String> = BTreeSet::new();
        for o in out.iter() {
            let Output::Event(SimEvent::Decision { event, decision, .. }) = o else { continue };
            if matches!(decision, Verdict::Dropped | Verdict::Rejected) {
                continue;
            }
            let room = self.rooms.iter().find(|(_, r)| r.version.portable_accounts && r.dag.index_of(event).is_some());
            if let Some((room_id, _)) = room {
                dirty.insert(room_id.clone());
            }
        }
        for room_id in &dirty {
            self.refresh_shown(room_id, out);
        }
        if self.domain_view.has_work(now) {
            self.ask_due(now, out);
        }
    }

    /// The server key co-signing `user`'s current membership in the room, by this server's state.
    fn co_signer_of(&self, room_id: &str, user: &str) -> Option<String> {
        let room = self.rooms.get(room_id)?;
        let member = room.current_event("m.room.member", user)?;
        signers::acting_server(room.version, member).map(str::to_owned)
    }

    /// The `unverified_domain` of `key`'s participation in this server's state of the room.
    fn claimed_domain(&self, room_id: &str, key: &str) -> Option<String> {
        let pdu = self.rooms.get(room_id)?.current_event(P, key)?;
        match &pdu.content {
            TypedContent::Participation(c) => c.unverified_domain.clone(),
            _ => None,
        }
    }

    /// Creates the checks `(room, key)` and `(room, key, account)` need, if missing.
    fn ensure_checks(&mut self, room_id: &str, key: &str, account_id: &str) {
        let own = self.room_key(room_id).is_some_and(|k| k.entity == key);
        let slot = (room_id.to_owned(), key.to_owned());
        if !self.domain_view.domains.contains_key(&slot) {
            let entry = match (own, self.claimed_domain(room_id, key)) {
                (true, _) => Entry::settled(Check::Verified(self.name.clone()), self.name.clone()),
                (false, Some(d)) if self.directory.node(&d).is_some() => Entry::due(d),
                // MSC4345 §8: no claimed domain, or no such server: shown by the key.
                (false, d) => Entry::settled(Check::Unverified { retry_at: None }, d.unwrap_or_default()),
            };
            self.domain_view.domains.insert(slot.clone(), entry);
        }
        let Some(account) = ids::portable_key_of(account_id) else { return };
        let name_slot = (room_id.to_owned(), key.to_owned(), account.to_owned());
        if self.domain_view.names.contains_key(&name_slot) {
            return;
        }
        let ask = self.domain_view.domains[&slot].ask.clone();
        let entry = if own {
            // The accounts this server co-signs for are its own to name.
            let owner = self.directory.portable.owner_of(account_id).filter(|o| self.acts_for(o));
            match owner.and_then(ids::localpart_of) {
                Some(name) => Entry::settled(Check::Verified(name.to_owned()), ask),
                None => Entry::settled(Check::Unverified { retry_at: None }, ask),
            }
        } else if self.directory.node(&ask).is_some() {
            Entry::due(ask)
        } else {
            Entry::settled(Check::Unverified { retry_at: None }, ask)
        };
        self.domain_view.names.insert(name_slot, entry);
    }

    /// How this server shows `user` in the room now: `@name:domain` and `true` when both are
    /// verified (MSC4345 §8), else its account-key user ID.
    /// The `unsigned` annotations come with it: `account` and `server_domain`, each once verified.
    fn shown_now(&self, room_id: &str, user: &str, key: &str) -> (String, bool, Map<String, Value>) {
        let v = &self.domain_view;
        let domain = v.domains.get(&(room_id.to_owned(), key.to_owned())).and_then(Entry::verified);
        let account = ids::portable_key_of(user).unwrap_or_default();
        let name = v.names.get(&(room_id.to_owned(), key.to_owned(), account.to_owned())).and_then(Entry::verified);
        let mut unsigned = Map::new();
        if let Some(n) = &name {
            unsigned.insert("account".into(), Value::String(n.to_string()));
        }
        if let Some(d) = &domain {
            unsigned.insert("server_domain".into(), Value::String(d.to_string()));
        }
        match (name, domain) {
            (Some(n), Some(d)) => (format!("@{n}:{d}"), true, unsigned),
            _ => (user.to_owned(), false, unsigned),
        }
    }

    /// Recomputes the shown form of every member of the room; records each change.
    fn refresh_shown(&mut self, room_id: &str, out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get(room_id) else { return };
        let members: Vec<String> = room.current_of_type("m.room.member").into_iter().map(|(u, _)| u).collect();
        for user in members {
            let Some(key) = self.co_signer_of(room_id, &user) else { continue };
            self.ensure_checks(room_id, &key, &user);
            let (shown, verified, unsigned) = self.shown_now(room_id, &user, &key);
            let slot = (room_id.to_owned(), user.clone());
            let now_shown = (shown.clone(), verified, unsigned.clone());
            if self.domain_view.shown.get(&slot) == Some(&now_shown) {
                continue;
            }
            self.domain_view.shown.insert(slot, now_shown);
            let room = room_id.to_owned();
            self.record(out, SimEvent::PortableShown { room, sender: user, shown, verified, unsigned });
        }
    }

    /// Whether this server's own key is accepted in the room (it may ask then).
    fn may_ask(&self, room_id: &str) -> bool {
        self.room_key(room_id)
            .is_some_and(|k| self.participation_of(room_id, &k.entity) == Some(ParticipationState::Accepted))
    }

    /// Sends the due checks, one request per (room, domain) and endpoint. A request lost in a
    /// crash (no longer in flight) is due again.
    fn ask_due(&mut self, now: SimTime, out: &mut Vec<Output>) {
        let v = &mut self.domain_view;
        for e in v.domains.values_mut().chain(v.names.values_mut()) {
            if let Check::Asked(id) = e.check {
                if !self.requests.contains_key(&id) {
                    e.check = Check::Due;
                }
            }
        }
        let mut keys: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for ((room_id, key), e) in &self.domain_view.domains {
            if e.wants_asking(now) && self.may_ask(room_id) {
                keys.entry((room_id.clone(), e.ask.clone())).or_default().push(key.clone());
            }
        }
        let mut accounts: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for ((room_id, _, account), e) in &self.domain_view.names {
            if e.wants_asking(now) && self.may_ask(room_id) {
                accounts.entry((room_id.clone(), e.ask.clone())).or_default().insert(account.clone());
            }
        }
        for ((room_id, domain), server_keys) in keys {
            let body = Request::KeyV3Query { room_id: room_id.clone(), server_keys: server_keys.clone() };
            let Some(id) = self.send_domain_request(&domain, body, now, out) else { continue };
            for key in server_keys {
                if let Some(e) = self.domain_view.domains.get_mut(&(room_id.clone(), key)) {
                    e.check = Check::Asked(id);
                }
            }
        }
        for ((room_id, domain), asked) in accounts {
            let account_keys: Vec<String> = asked.into_iter().collect();
            let body = Request::PortableAccounts { room_id: room_id.clone(), account_keys: account_keys.clone() };
            let Some(id) = self.send_domain_request(&domain, body, now, out) else { continue };
            for e in self.domain_view.names.iter_mut().filter_map(|((r, _, a), e)| {
                (*r == room_id && account_keys.contains(a) && e.ask == domain && e.wants_asking(now)).then_some(e)
            }) {
                e.check = Check::Asked(id);
            }
        }
    }

    /// Sends one lookup to `domain`; its ID.
    // `Purpose::DomainView` is never retried by the request layer (this cache's schedule is
    // the retry); its answer and its timeout are routed here (`on_response`, the timeout).
    fn send_domain_request(
        &mut self,
        domain: &str,
        body: Request,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Option<RequestId> {
        let to = self.directory.node(domain)?;
        let id = self.next_request_id;
        let purpose = Purpose::DomainView;
        self.send_request_with_timeout(to, body, purpose, self.config.request_timeout_us, now, out);
        Some(id)
    }

    /// An answer to a lookup, or its failure (`None`: a timeout).
    pub(crate) fn on_domain_answer(
        &mut self,
        body: &Request,
        to: ServerIdx,
        outcome: Option<Outcome>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let asked = self.directory.names.get(to as usize).cloned().unwrap_or_default();
        match body {
            Request::KeyV3Query { room_id, server_keys } => {
                let advertised = match &outcome {
                    Some(Outcome::Ok(Response::KeyV3Query { server_keys })) => server_keys.as_slice(),
                    _ => &[],
                };
                for key in server_keys {
                    let Some(e) = self.domain_view.domains.get_mut(&(room_id.clone(), key.clone())) else { continue };
                    if !matches!(e.check, Check::Asked(_)) || e.ask != asked {
                        continue;
                    }
                    // MSC4345 §7: verified when the domain advertises that same public key.
                    if advertised.contains(key) {
                        e.check = Check::Verified(e.ask.clone());
                    } else {
                        e.fail(now);
                    }
                }
                self.refresh_shown(room_id, out);
            }
            Request::PortableAccounts { room_id, account_keys } => {
                let names = match &outcome {
                    Some(Outcome::Ok(Response::PortableAccounts { account_keys })) => Some(account_keys),
                    _ => None,
                };
                for ((r, _, account), e) in self.domain_view.names.iter_mut() {
                    let mine = r == room_id && e.ask == asked && account_keys.contains(account);
                    if !mine || !matches!(e.check, Check::Asked(_)) {
                        continue;
                    }
                    match names.and_then(|n| n.get(account)) {
                        Some(name) => e.check = Check::Verified(name.clone()),
                        None => e.fail(now),
                    }
                }
                self.refresh_shown(room_id, out);
            }
            _ => {}
        }
    }
}
