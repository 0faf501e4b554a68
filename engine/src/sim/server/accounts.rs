//! MSC4243 account keys on a homeserver: its users' account keys (they sign its users' events
//! in account-key rooms, §3), its `/query/accounts` answers (§4, §7), its mapping cache of other
//! domains' keys (§5–6, [`crate::sim::accounts::cache`]), the name → key step of invites and
//! pre-emptive bans (§8), what its clients are shown and re-sent (§6,
//! [`crate::sim::accounts::view`]), and when an invite's room appears on the invitee's client.
//!
//! A server that is in no account-key room never observes a key: the state is idle.
//!
//! Choices where the MSC is silent (written in ARCHITECTURE.md):
//! * a client names an action's target by account name (as the scenario does); its server
//!   resolves it to the in-room ID the room's member list shows for that account (the latest of
//!   its keys with a membership there), except invites and bans of a user not in the room,
//!   which take the §8 step through the target's domain;
//! * the first power levels and `additional_creators` of a new room name remote users by their
//!   first account key (the room's creator is given them, as a client would paste a key);
//! * one `/query/accounts` request is not retried by the request layer: the cache's retry
//!   schedules are the retries.

use super::requests::Purpose;
use super::{ClientAction, Output, Server, Timer};
use crate::protocol::crypto::{self, KeyPair};
use crate::protocol::ids;
use crate::protocol::pdu::Pdu;
use crate::protocol::room_version::RoomVersion;
use crate::scenario::{AccountQuerySpec, ActionKind, Byzantine};
use crate::sim::accounts::cache::{CacheConfig, Mapping, MappingCache, Reason, Schedule};
use crate::sim::accounts::query::{AccountDirectory, ErasurePoll, QueryAccounts};
use crate::sim::accounts::view;
use crate::sim::event::SimEvent;
use crate::sim::federation::{Outcome, Request, Response, ServerIdx};
use crate::sim::time::SimTime;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A server's account-key state.
pub struct AccountState {
    /// This domain's accounts, as its `/query/accounts` answers them.
    pub(crate) own: AccountDirectory,
    /// Each local user's current key user ID (account name user ID → `@<key>:domain`).
    pub(crate) current: BTreeMap<String, String>,
    /// The signing keys of every account this server ever held, by account key.
    pub(crate) signing: BTreeMap<String, KeyPair>,
    /// Erased local accounts (account name user IDs): their users act no more.
    pub(crate) erased: BTreeSet<String>,
    pub cache: MappingCache,
    pub(crate) spec: AccountQuerySpec,
    /// When the query timer is set for.
    armed: Option<SimTime>,
    /// When every known domain is next polled for erasures.
    erasure_due: Option<SimTime>,
    /// Invites whose room has not appeared on the invitee's client yet: (room ID, local user)
    /// → (received at, inviter's key, inviter's domain).
    appearing: BTreeMap<(String, String), (SimTime, String, String)>,
    /// Invites whose room appeared already (a repeated `/invite` shows nothing new).
    shown: BTreeSet<(String, String)>,
}

impl AccountState {
    pub(crate) fn new(server: &Server, spec: &AccountQuerySpec) -> AccountState {
        let mut own = AccountDirectory::new(&server.name);
        let mut current = BTreeMap::new();
        let mut signing = BTreeMap::new();
        for user in &server.users {
            let Some(first) = server.directory.accounts.keys_of(user).first() else { continue };
            own.register(ids::localpart_of(user).unwrap_or_default(), first.seed);
            current.insert(user.clone(), first.user_id.clone());
            for k in server.directory.accounts.keys_of(user) {
                signing.insert(k.key.clone(), k.pair());
            }
        }
        let config = CacheConfig {
            categories: spec.categories,
            unknown_encoding: spec.unknown_encoding,
            retry_anomaly: Schedule(spec.retry_anomaly_us.clone()),
            retry_negative: Schedule(spec.retry_negative_us.clone()),
            settle_omitted_after: spec.settle_omitted_after,
            batch_size: spec.batch_size,
            domain_backoff_first: spec.domain_backoff_us,
            domain_backoff_max: spec.domain_backoff_max_us,
        };
        AccountState {
            own,
            current,
            signing,
            erased: BTreeSet::new(),
            cache: MappingCache::new(config),
            spec: spec.clone(),
            armed: None,
            erasure_due: None,
            appearing: BTreeMap::new(),
            shown: BTreeSet::new(),
        }
    }
}

/// Whether an (in-room) user ID is an account-key user ID.
fn key_and_domain(user_id: &str) -> Option<(&str, &str)> {
    Some((ids::account_key_of(user_id)?, ids::domain_of(user_id)?))
}

impl Server {
    /// Gives this server its account keys (the world calls it when a room of the run uses them).
    pub fn enable_accounts(&mut self, spec: &AccountQuerySpec) {
        if self.directory.accounts.is_active() {
            self.accounts = Some(Box::new(AccountState::new(self, spec)));
        }
    }

    /// The in-room user ID of the account named `name` in `room`: in an account-key room, the
    /// latest of its keys with a membership in the current state (a local user: its current
    /// key), else its first key; elsewhere `name` itself.
    pub(crate) fn in_room_id(&self, room: Option<&super::RoomReplica>, name: &str) -> String {
        // MSC4348: `@<account key>`, the same in every room and on every server.
        if room.is_some_and(|r| r.version.portable_accounts) {
            return self.portable_id(name);
        }
        let Some(acc) = self.accounts.as_ref() else { return name.to_owned() };
        if room.is_some_and(|r| !r.version.account_keys) {
            return name.to_owned();
        }
        if let Some(own) = acc.current.get(name) {
            return own.clone();
        }
        let keys = self.directory.accounts.keys_of(name);
        let member =
            room.and_then(|r| keys.iter().rev().find(|k| r.current_event("m.room.member", &k.user_id).is_some()));
        member.or(keys.first()).map_or_else(|| name.to_owned(), |k| k.user_id.clone())
    }

    /// Rewrites a client action in an account-key room to in-room user IDs (the module
    /// documentation says how targets are resolved). `Err`: why it is refused.
    pub(crate) fn account_action(&self, a: &mut ClientAction) -> Result<(), String> {
        let Some(acc) = self.accounts.as_ref() else { return Ok(()) };
        if !self.directory.accounts.is_account_room(&a.room_name) {
            return Ok(());
        }
        if acc.erased.contains(&a.user) {
            return Err("the account was erased (MSC4243 §7)".into());
        }
        let room = a.room_id.as_ref().and_then(|r| self.rooms.get(r));
        let name = a.user.clone();
        a.user = self.in_room_id(room, &name);
        if let Some(spec) = a.create.as_mut() {
            spec.creator = a.user.clone();
            let first = |u: &String| self.in_room_id(None, u);
            spec.additional_creators = spec.additional_creators.iter().map(first).collect();
            spec.power_levels.users = spec.power_levels.users.iter().map(|(u, l)| (first(u), *l)).collect();
        }
        if let Some(target) = a.target.clone() {
            let keys = self.directory.accounts.keys_of(&target);
            let in_room =
                room.and_then(|r| keys.iter().rev().find(|k| r.current_event("m.room.member", &k.user_id).is_some()));
            a.target = match (a.kind, in_room) {
                (_, Some(k)) if a.kind != ActionKind::Invite => Some(k.user_id.clone()),
                // Invites, and bans of a user not in the room: the name goes to its domain (§8).
                (ActionKind::Invite | ActionKind::Ban, _) => Some(target),
                _ => Some(self.in_room_id(room, &target)),
            };
        }
        Ok(())
    }

    /// MSC4243 §3, §8, §9: signs an event of an account-key room with every account key of
    /// this server's users the event needs: the sender's, the invitee's on an invite, the
    /// authorising user's on a restricted join.
    pub(crate) fn sign_with_accounts(&self, map: &mut Map<String, Value>, version: &RoomVersion) {
        let Some(acc) = self.accounts.as_ref() else { return };
        let field = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        let mut signers = vec![field(map, "sender")];
        let content = map.get("content").and_then(Value::as_object);
        if content.and_then(|c| c.get("membership")).and_then(Value::as_str) == Some("invite") {
            signers.push(field(map, "state_key"));
        }
        signers.push(content.and_then(|c| field(c, "join_authorised_via_users_server")));
        let mut done = BTreeSet::new();
        for user in signers.into_iter().flatten() {
            let Some(key) = ids::account_key_of(&user) else { continue };
            if let Some(pair) = acc.signing.get(key).filter(|_| done.insert(key.to_owned())) {
                crypto::sign_event(map, version, pair);
            }
        }
    }

    /// MSC4243 §8, inviting side: the invite (or pre-emptive ban) of the account named
    /// `target` at another domain goes there with the name as `state_key`.
    pub(crate) fn account_invite(
        &mut self,
        room_id: &str,
        sender: &str,
        target: &str,
        ban: bool,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let membership = if ban { "ban" } else { "invite" };
        let d = super::actions::Draft::member(sender.to_owned(), target.to_owned(), membership);
        let (event, version) = self.draft_on_current(room_id, d, now)?;
        let to = ids::domain_of(target).and_then(|d| self.directory.node(d)).ok_or("target's server is unknown")?;
        let body = Request::AccountInvite { event, room_version: version.id.to_owned(), ban };
        self.send_request(to, body, Purpose::AccountInvite { room_id: room_id.to_owned() }, now, out);
        Ok(None)
    }

    /// MSC4243 §8, the invitee's domain: the name in `state_key` replaced by the account's key
    /// user ID, the content hash recomputed, signed by the invitee's account key (not for a ban).
    pub(crate) fn answer_account_invite(
        &mut self,
        mut event: Map<String, Value>,
        room_version: &str,
        ban: bool,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Outcome {
        let err = |status, errcode: &str| Outcome::Error { status, errcode: errcode.into() };
        let Some(version) = RoomVersion::by_id(room_version).filter(|v| v.account_keys) else {
            return err(400, "M_INCOMPATIBLE_ROOM_VERSION");
        };
        let Some(acc) = self.accounts.as_ref() else { return err(400, "M_UNRECOGNIZED") };
        let name = event.get("state_key").and_then(Value::as_str).unwrap_or_default().to_owned();
        let Some(key_user) = acc.current.get(&name).filter(|_| !acc.erased.contains(&name)).cloned() else {
            return err(404, "M_NOT_FOUND");
        };
        let sender = event.get("sender").and_then(Value::as_str).unwrap_or_default().to_owned();
        event.insert("state_key".into(), json!(key_user));
        event.remove("signatures");
        crypto::set_content_hash(&mut event);
        if !ban {
            self.sign_with_accounts(&mut event, version);
            // The invitee's client is shown the room once the inviter's key is settled here, or
            // after the query timeout at the latest (the seed's "do not delay new rooms").
            if let Some((key, domain)) = key_and_domain(&sender) {
                let room_id = event.get("room_id").and_then(Value::as_str).unwrap_or_default().to_owned();
                let (key, domain) = (key.to_owned(), domain.to_owned());
                self.observe_key(&key, &domain, now, out);
                let acc = self.accounts.as_mut().expect("checked");
                let slot = (room_id.clone(), name.clone());
                if acc.shown.contains(&slot) || acc.appearing.contains_key(&slot) {
                    return Outcome::Ok(Response::AccountInvite { event });
                }
                acc.appearing.insert((room_id.clone(), name.clone()), (now, key.clone(), domain.clone()));
                out.push(Output::SetTimer {
                    at: now + acc.spec.timeout_us,
                    timer: Timer::RoomAppear { room_id, user: name },
                });
                self.show_settled_rooms(now, out);
                self.arm_account_timer(now, out);
            }
        }
        Outcome::Ok(Response::AccountInvite { event })
    }

    /// MSC4243 §8, inviting side again: the answer must be the event sent with only
    /// `state_key` changed, to an account key of the asked domain; the inviter signs it and it
    /// enters the room if the current state still authorises it.
    pub(crate) fn on_account_invite_answer(
        &mut self,
        room_id: &str,
        sent: &Map<String, Value>,
        event: Map<String, Value>,
        to: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(version) = self.rooms.get(room_id).map(|r| r.version) else { return };
        let asked = sent.get("state_key").and_then(Value::as_str).and_then(ids::domain_of);
        let given = event.get("state_key").and_then(Value::as_str).and_then(key_and_domain);
        let same = |k: &str| k == "state_key" || k == "hashes" || k == "signatures" || sent.get(k) == event.get(k);
        let fail = |s: &mut Server, out: &mut Vec<Output>, why: &str| {
            s.record(out, SimEvent::RequestFailed { request: "account_invite".into(), to, why: why.into() });
        };
        if given.map(|(_, d)| d) != asked || !event.keys().chain(sent.keys()).all(|k| same(k)) {
            return fail(self, out, "the answer is not the invite sent with its state_key rewritten (MSC4243 §8)");
        }
        let mut map = event;
        self.sign_with_accounts(&mut map, version);
        let Ok(pdu) = Pdu::from_object(map, version) else {
            return fail(self, out, "the rewritten invite is not a well-formed PDU");
        };
        let pdu = Arc::new(pdu);
        if let Err(why) = self.check_on_current(room_id, &pdu) {
            return fail(self, out, &format!("the rewritten event is not authorised: {why}"));
        }
        self.commit_local(room_id, pdu.clone(), now, out);
        self.send_with_behaviour(room_id, pdu, now, out);
    }

    /// After each input: the account keys of the events this server just judged (senders, and
    /// targets of membership events) enter its cache.
    pub(crate) fn observe_judged(&mut self, now: SimTime, out: &mut Vec<Output>) {
        if self.accounts.is_none() {
            return;
        }
        let mut seen: Vec<(String, String)> = Vec::new();
        for o in out.iter() {
            let Output::Event(SimEvent::Decision { event, decision, .. }) = o else { continue };
            if matches!(decision, crate::sim::event::Verdict::Dropped | crate::sim::event::Verdict::Rejected) {
                continue;
            }
            let Some(pdu) = self
                .rooms
                .values()
                .filter(|r| r.version.account_keys)
                .find_map(|r| r.dag.index_of(event).map(|i| r.dag.event(i).pdu.clone()))
            else {
                continue;
            };
            let target = pdu.state_key.as_deref().filter(|_| pdu.event_type == "m.room.member");
            for user in std::iter::once(pdu.sender.as_str()).chain(target) {
                if let Some((key, domain)) = key_and_domain(user).filter(|(_, d)| *d != self.name) {
                    seen.push((key.to_owned(), domain.to_owned()));
                }
            }
        }
        if seen.is_empty() {
            return;
        }
        let mut events = Vec::new();
        for (key, domain) in seen {
            self.observe_key_into(&key, &domain, now, &mut events);
        }
        out.extend(events.into_iter().map(Output::Event));
        self.arm_account_timer(now, out);
    }

    fn observe_key(&mut self, key: &str, domain: &str, now: SimTime, out: &mut Vec<Output>) {
        let mut events = Vec::new();
        self.observe_key_into(key, domain, now, &mut events);
        out.extend(events.into_iter().map(Output::Event));
    }

    fn observe_key_into(&mut self, key: &str, domain: &str, now: SimTime, events: &mut Vec<SimEvent>) {
        let Some(acc) = self.accounts.as_mut() else { return };
        if domain == self.name {
            return;
        }
        if acc.cache.observe(key, domain, now) {
            events.push(SimEvent::AccountMapping {
                key: key.to_owned(),
                domain: domain.to_owned(),
                mapping: Mapping::Pending,
            });
            acc.erasure_due.get_or_insert(now + acc.spec.erasure_poll_us);
        }
    }

    /// Sets the query timer for the cache's next due key or erasure poll.
    pub(crate) fn arm_account_timer(&mut self, now: SimTime, out: &mut Vec<Output>) {
        let Some(acc) = self.accounts.as_mut() else { return };
        let next = [acc.cache.next_due(), acc.erasure_due].into_iter().flatten().min();
        let Some(at) = next.map(|t| t.max(now)) else { return };
        if acc.armed.is_some_and(|armed| armed <= at) {
            return;
        }
        acc.armed = Some(at);
        out.push(Output::SetTimer { at, timer: Timer::AccountQuery });
    }

    /// The query timer: every due key, grouped per domain in batches (never-answered domains
    /// first), and, when due, an erasure poll of every domain known.
    pub(crate) fn on_account_timer(&mut self, now: SimTime, out: &mut Vec<Output>) {
        let Some(acc) = self.accounts.as_mut() else { return };
        if acc.armed.is_some_and(|t| t > now) {
            return; // an earlier timer, superseded
        }
        acc.armed = None;
        let mut batches = acc.cache.take_due(now);
        if acc.erasure_due.is_some_and(|t| t <= now) {
            acc.erasure_due = Some(now + acc.spec.erasure_poll_us);
            let domains: BTreeSet<String> = acc.cache.entries().map(|((_, d), _)| d.clone()).collect();
            for d in domains {
                if !batches.iter().any(|(b, _)| *b == d) && acc.cache.backed_off_until(&d, now).is_none() {
                    batches.push((d, Vec::new()));
                }
            }
        }
        for (domain, keys) in batches {
            let acc = self.accounts.as_ref().expect("checked");
            let erasure = Some(ErasurePoll { id: acc.cache.erasure_cursor(&domain), limit: acc.spec.erasure_limit });
            let timeout = acc.spec.timeout_us;
            let Some(to) = self.directory.node(&domain) else {
                // No such server: as a failed connection.
                self.settle_accounts(&domain, &keys, None, now, out);
                continue;
            };
            out.push(Output::Event(SimEvent::AccountQuery { domain: domain.clone(), keys: keys.clone() }));
            let body = Request::QueryAccounts(QueryAccounts { account_keys: keys.clone(), erasure });
            self.send_request_with_timeout(to, body, Purpose::AccountQuery { domain, keys }, timeout, now, out);
        }
        self.arm_account_timer(now, out);
    }

    /// MSC4243 §4, §7: this domain's answer (an `equivocate_accounts` server names some keys
    /// falsely, see [`Byzantine::EquivocateAccounts`]).
    pub(crate) fn answer_query_accounts(&self, from: ServerIdx, q: &QueryAccounts) -> Outcome {
        let Some(acc) = self.accounts.as_ref() else {
            return Outcome::Error { status: 404, errcode: "M_UNRECOGNIZED".into() };
        };
        let asker = self.directory.names.get(from as usize).cloned().unwrap_or_default();
        let p = self.config.byzantine_probability;
        let equivocate = self.config.byzantine == Byzantine::EquivocateAccounts;
        let names: Vec<String> = acc.own.names().map(|(_, n)| n.to_owned()).collect();
        let lie = |key: &str, name: &str| -> Option<String> {
            if !equivocate || !draw(&format!("{key}/{asker}"), p) {
                return None;
            }
            // Another account's name of this domain (impersonation), else a made-up one.
            Some(names.iter().find(|n| *n != name).cloned().unwrap_or_else(|| format!("{name}-impostor")))
        };
        match acc.own.answer_with(q, acc.spec.unknown_encoding, &lie) {
            Ok(answer) => Outcome::Ok(Response::QueryAccounts(answer)),
            Err(refusal) => Outcome::Error { status: refusal.status, errcode: refusal.errcode.into() },
        }
    }

    /// An answer (or its failure: `None`, a timeout) to a `/query/accounts` request.
    pub(crate) fn on_accounts_outcome(
        &mut self,
        domain: &str,
        keys: &[String],
        outcome: Option<Outcome>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        self.settle_accounts(domain, keys, outcome, now, out);
        self.arm_account_timer(now, out);
    }

    fn settle_accounts(
        &mut self,
        domain: &str,
        keys: &[String],
        outcome: Option<Outcome>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(acc) = self.accounts.as_mut() else { return };
        let before: BTreeMap<String, Mapping> = acc
            .cache
            .entries()
            .filter(|((_, d), _)| d == domain)
            .map(|((k, _), e)| (k.clone(), e.mapping.clone()))
            .collect();
        match outcome {
            Some(Outcome::Ok(Response::QueryAccounts(answer))) => {
                let more = answer.erasure.is_some_and(|e| e.has_more);
                acc.cache.on_answer(domain, keys, &answer, now);
                if more {
                    acc.erasure_due = Some(now);
                }
            }
            Some(Outcome::Ok(_)) => acc.cache.on_failure(domain, keys, Reason::Undecodable, now),
            Some(Outcome::Error { status, .. }) => acc.cache.on_failure(domain, keys, Reason::Non2xx(status), now),
            None => acc.cache.on_failure(domain, keys, Reason::Timeout, now),
        }
        let view = acc.spec.client_view;
        let on_verify = acc.spec.on_verify;
        let changed: Vec<(String, Mapping, Mapping)> = acc
            .cache
            .entries()
            .filter(|((_, d), _)| d == domain)
            .filter_map(|((k, _), e)| {
                let old = before.get(k)?;
                (*old != e.mapping).then(|| (k.clone(), old.clone(), e.mapping.clone()))
            })
            .collect();
        for (key, old, new) in changed {
            let (was, now_shown) = (view::shown_as(view, &key, domain, &old), view::shown_as(view, &key, domain, &new));
            out.push(Output::Event(SimEvent::AccountMapping { key: key.clone(), domain: domain.into(), mapping: new }));
            let resends = view::on_change(on_verify, &was, &now_shown);
            let rooms = self.rooms_shared_with(&format!("@{key}:{domain}"));
            if !resends.is_empty() && rooms > 0 {
                out.push(Output::Event(SimEvent::ClientResend {
                    key,
                    domain: domain.into(),
                    shown: now_shown,
                    resends: resends.iter().map(resend_kind).map(str::to_owned).collect(),
                    rooms,
                }));
            }
        }
        self.show_settled_rooms(now, out);
    }

    /// Rooms in which `user_id` has a membership and a local user is joined (whose clients a
    /// re-send reaches).
    fn rooms_shared_with(&self, user_id: &str) -> u32 {
        self.rooms
            .values()
            .filter(|r| r.version.account_keys && r.current_event("m.room.member", user_id).is_some())
            .filter(|r| r.joined_servers().contains(&self.name))
            .count() as u32
    }

    /// Invites whose inviter's key is no longer pending appear on their client now.
    fn show_settled_rooms(&mut self, now: SimTime, out: &mut Vec<Output>) {
        let Some(acc) = self.accounts.as_mut() else { return };
        let settled: Vec<(String, String)> = acc
            .appearing
            .iter()
            .filter(|(_, (_, key, domain))| {
                acc.cache.get(key, domain).is_some_and(|e| !matches!(e.mapping, Mapping::Pending))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (room, user) in settled {
            self.show_room(&room, &user, now, out);
        }
    }

    /// The room of an invite appears on the invitee's client, with the inviter shown as the
    /// cache says now (the timer after the query timeout, or the inviter's key settled).
    pub(crate) fn show_room(&mut self, room_id: &str, user: &str, now: SimTime, out: &mut Vec<Output>) {
        let Some(acc) = self.accounts.as_mut() else { return };
        let slot = (room_id.to_owned(), user.to_owned());
        let Some((since, key, domain)) = acc.appearing.remove(&slot) else { return };
        acc.shown.insert(slot);
        let mapping = acc.cache.get(&key, &domain).map_or(Mapping::Pending, |e| e.mapping.clone());
        let inviter = view::shown_as(acc.spec.client_view, &key, &domain, &mapping);
        out.push(Output::Event(SimEvent::RoomShown {
            room: room_id.to_owned(),
            user: user.to_owned(),
            delay_us: now - since,
            inviter,
        }));
    }

    /// An `erase_account` fault: the account's key is answered `M_ERASED` from now on (§7).
    pub(crate) fn erase_account(&mut self, user: &str, _now: SimTime, out: &mut Vec<Output>) {
        let Some(acc) = self.accounts.as_mut() else { return };
        let Some(key) = acc.current.get(user).and_then(|u| ids::account_key_of(u)).map(str::to_owned) else { return };
        acc.own.erase(&key);
        acc.erased.insert(user.to_owned());
        self.record(out, SimEvent::AccountChanged { user: user.to_owned(), change: "erased".into(), key });
    }

    /// A `reregister_account` fault: the old key is forgotten (answered as unknown), the name
    /// registered again under the user's next key (§2).
    pub(crate) fn reregister_account(&mut self, user: &str, _now: SimTime, out: &mut Vec<Output>) {
        let Some(acc) = self.accounts.as_mut() else { return };
        let keys = self.directory.accounts.keys_of(user);
        let Some(old) = acc.current.get(user).cloned() else { return };
        let next = keys.iter().position(|k| k.user_id == old).map(|i| i + 1);
        let Some(next) = next.and_then(|i| keys.get(i)) else { return };
        if let Some(old_key) = ids::account_key_of(&old) {
            acc.own.forget(old_key);
        }
        acc.own.register(ids::localpart_of(user).unwrap_or_default(), next.seed);
        acc.current.insert(user.to_owned(), next.user_id.clone());
        acc.erased.remove(user);
        self.record(
            out,
            SimEvent::AccountChanged { user: user.into(), change: "reregistered".into(), key: next.key.clone() },
        );
    }
}

fn resend_kind(r: &view::Resend) -> &'static str {
    match r {
        view::Resend::CurrentState { .. } => "current_state",
        view::Resend::Member { .. } => "member",
        view::Resend::SyntheticLeave { .. } => "synthetic_leave",
    }
}

/// A deterministic draw with probability `p` keyed by `what` (an equivocating domain lies to
/// the same asker about the same key every time).
fn draw(what: &str, p: f64) -> bool {
    let h = crypto::sha256(what.as_bytes());
    let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes")) as f64 / u64::MAX as f64;
    x < p
}
