//! Identity, measured (`summary.json` `identity`, `docs/outputs.md`): lookups against the truth
//! the honest identity servers hold, invites by e-mail and what became of them, third-party
//! invites from `/store-invite` to the invitee's join, the servers' verdicts on the invites and
//! joins, the `key_validity_url` checks, MSC4004 pushes and `m.identity_server` account data.
//!
//! The observer reads only the identity records ([`IdentityEvent`]) and, at the end, the
//! replicas' holdings of the issued invites and of the invitees' joins; it never reads an
//! identity server's directory. The *truth* of an address at time `t` is the user it is bound
//! to at a non-rogue identity server: the scenario's bindings of the identity servers that are
//! not `rogue` (the first such server in file order for an address several bind), replaced by
//! every `Bound` record a non-rogue identity server made at or before `t`. Lookups and invites
//! by lookup are judged at the end, so that a binding recorded later in the same instant counts.
//! Inert (no `identity` entry) when the scenario has no identity servers.

use crate::protocol::pdu::Membership;
use crate::scenario::Scenario;
use crate::sim::event::SimEvent;
use crate::sim::federation::ServerIdx;
use crate::sim::identity_event::{IdentityEvent, LookupOutcome};
use crate::sim::observe::{Findings, Held, Observer, WorldView};
use crate::sim::time::SimTime;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// A lookup as recorded, judged at the end.
struct LookupRecord {
    t: SimTime,
    address: String,
    answered_by: Option<String>,
    mxid: Option<String>,
    outcome: LookupOutcome,
}

/// An issued third-party invite: its `m.room.member` invite event, and whom it invites.
struct Issued {
    room_id: String,
    event_id: String,
    mxid: String,
}

/// How the honest servers holding a room hold one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    AllAccept,
    AllReject,
    Split,
    /// No honest server holding the room holds it.
    Unreceived,
}

/// Verdict counts over events (`none`: invites without a join, for the joins only).
#[derive(Debug, Default)]
struct Tally {
    checked: u64,
    all_accept: u64,
    all_reject: u64,
    split: u64,
    unreceived: u64,
    none: u64,
}

impl Tally {
    fn add(&mut self, verdict: Option<Verdict>) {
        self.checked += 1;
        match verdict {
            Some(Verdict::AllAccept) => self.all_accept += 1,
            Some(Verdict::AllReject) => self.all_reject += 1,
            Some(Verdict::Split) => self.split += 1,
            Some(Verdict::Unreceived) => self.unreceived += 1,
            None => self.none += 1,
        }
    }
}

/// A fault planted in the observer itself, to show that the tests catch it.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plant {
    /// The truth is the scenario's bindings alone: `Bound` records are ignored.
    IgnoreBound,
}

/// The observer (see the module documentation).
pub struct Identity {
    active: bool,
    /// Identity server name → whether it is rogue.
    rogue: BTreeMap<String, bool>,
    /// Address → user, from the non-rogue identity servers' scenario bindings.
    initial: BTreeMap<String, String>,
    /// Address → the `Bound` records of non-rogue identity servers, in log order (time, user).
    bound: BTreeMap<String, Vec<(SimTime, String)>>,
    lookups: Vec<LookupRecord>,
    redirects_followed: u64,
    pepper_retries: u64,
    invites_by_email: u64,
    not_attempted: BTreeMap<String, u64>,
    stale_account_data: u64,
    /// Invites by lookup: (time, address, user invited).
    by_lookup: Vec<(SimTime, String, String)>,
    abandoned: BTreeMap<String, u64>,
    /// `ThirdPartyInviteSent` records, and the distinct tokens → (room ID, address).
    sent: u64,
    tokens: BTreeMap<String, (String, String)>,
    /// Tokens an `InviteIssued` record issued or refused.
    decided: BTreeSet<String>,
    issued: Vec<Issued>,
    refused: BTreeMap<String, u64>,
    issuer_checks: u64,
    issuer_invalid: u64,
    receipt_checks: u64,
    receipt_invalid: u64,
    pushes_stored: u64,
    pushes_refused: u64,
    account_data_writes: u64,
    lost_writes: u64,
    #[cfg(test)]
    plant: Option<Plant>,
}

impl Identity {
    pub fn new(scenario: &Scenario) -> Identity {
        let mut initial = BTreeMap::new();
        for spec in scenario.identity_servers.iter().filter(|s| !s.rogue) {
            for b in &spec.bindings {
                initial.entry(b.address.clone()).or_insert_with(|| b.user.clone());
            }
        }
        Identity {
            active: !scenario.identity_servers.is_empty(),
            rogue: scenario.identity_servers.iter().map(|s| (s.name.clone(), s.rogue)).collect(),
            initial,
            bound: BTreeMap::new(),
            lookups: Vec::new(),
            redirects_followed: 0,
            pepper_retries: 0,
            invites_by_email: 0,
            not_attempted: BTreeMap::new(),
            stale_account_data: 0,
            by_lookup: Vec::new(),
            abandoned: BTreeMap::new(),
            sent: 0,
            tokens: BTreeMap::new(),
            decided: BTreeSet::new(),
            issued: Vec::new(),
            refused: BTreeMap::new(),
            issuer_checks: 0,
            issuer_invalid: 0,
            receipt_checks: 0,
            receipt_invalid: 0,
            pushes_stored: 0,
            pushes_refused: 0,
            account_data_writes: 0,
            lost_writes: 0,
            #[cfg(test)]
            plant: None,
        }
    }

    /// The user `address` is bound to at a non-rogue identity server at time `t`.
    fn truth(&self, address: &str, t: SimTime) -> Option<&str> {
        #[cfg(test)]
        if self.plant == Some(Plant::IgnoreBound) {
            return self.initial.get(address).map(String::as_str);
        }
        let later = self.bound.get(address).and_then(|b| b.iter().rev().find(|(at, _)| *at <= t));
        later.map(|(_, user)| user.as_str()).or_else(|| self.initial.get(address).map(String::as_str))
    }

    fn is_rogue(&self, server: Option<&str>) -> bool {
        server.is_some_and(|s| self.rogue.get(s) == Some(&true))
    }

    fn on_identity(&mut self, t: SimTime, node: Option<ServerIdx>, event: &IdentityEvent, view: &dyn WorldView) {
        match event {
            IdentityEvent::Lookup { address, answered_by, mxid, redirects, pepper_retries, outcome, .. } => {
                self.redirects_followed += u64::from(*redirects);
                self.pepper_retries += u64::from(*pepper_retries);
                self.lookups.push(LookupRecord {
                    t,
                    address: address.clone(),
                    answered_by: answered_by.clone(),
                    mxid: mxid.clone(),
                    outcome: *outcome,
                });
            }
            IdentityEvent::InviteByEmail { route, why, stale, .. } => {
                self.invites_by_email += 1;
                if route.is_none() {
                    *self.not_attempted.entry(why.clone().unwrap_or_default()).or_insert(0) += 1;
                }
                if *stale {
                    self.stale_account_data += 1;
                }
            }
            IdentityEvent::InviteAbandoned { why, .. } => *self.abandoned.entry(why.clone()).or_insert(0) += 1,
            IdentityEvent::InvitedByLookup { address, mxid, .. } => {
                self.by_lookup.push((t, address.clone(), mxid.clone()));
            }
            IdentityEvent::ThirdPartyInviteSent { room_id, address, token, .. } => {
                self.sent += 1;
                self.tokens.insert(token.clone(), (room_id.clone(), address.clone()));
            }
            IdentityEvent::Bound { address, mxid, .. } => {
                let Some(k) = node else { return };
                if self.rogue.get(view.node_name(k)) == Some(&false) {
                    self.bound.entry(address.clone()).or_default().push((t, mxid.clone()));
                }
            }
            IdentityEvent::InviteIssued { room_id, token, mxid, event, why } => {
                if let Some(event_id) = event {
                    self.decided.insert(token.clone());
                    self.issued.push(Issued {
                        room_id: room_id.clone(),
                        event_id: event_id.clone(),
                        mxid: mxid.clone(),
                    });
                }
                if let Some(why) = why {
                    self.decided.insert(token.clone());
                    *self.refused.entry(why.clone()).or_insert(0) += 1;
                }
            }
            IdentityEvent::KeyValidity { valid, at_receipt, .. } => {
                if *at_receipt {
                    self.receipt_checks += 1;
                    self.receipt_invalid += u64::from(!valid);
                } else {
                    self.issuer_checks += 1;
                    self.issuer_invalid += u64::from(!valid);
                }
            }
            IdentityEvent::Push { refused, .. } => match refused {
                None => self.pushes_stored += 1,
                Some(_) => self.pushes_refused += 1,
            },
            IdentityEvent::AccountData { lost, .. } => {
                self.account_data_writes += 1;
                self.lost_writes += u64::from(*lost);
            }
        }
    }

    /// The `lookups` object.
    fn lookups_summary(&self) -> Value {
        let (mut correct, mut stale, mut hijacked, mut lost, mut failed) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for l in &self.lookups {
            let truth = self.truth(&l.address, l.t);
            match l.outcome {
                LookupOutcome::Found if l.mxid.is_some() && l.mxid.as_deref() == truth => correct += 1,
                LookupOutcome::Found if self.is_rogue(l.answered_by.as_deref()) => hijacked += 1,
                LookupOutcome::Found => stale += 1,
                LookupOutcome::NotFound if truth.is_none() => correct += 1,
                LookupOutcome::NotFound => stale += 1,
                LookupOutcome::InvalidPepper => lost += 1,
                LookupOutcome::Failed => failed += 1,
            }
        }
        json!({
            "total": self.lookups.len(),
            "correct": correct,
            "stale": stale,
            "hijacked": hijacked,
            "lost_to_pepper_rotation": lost,
            "failed": failed,
            "redirects_followed": self.redirects_followed,
            "pepper_retries": self.pepper_retries,
        })
    }
}

/// How the honest servers holding `room_id` hold `event_id`: an accepted event (soft-failed or
/// not) or an outlier not rejected counts as accepted; a rejected event or a rejected outlier
/// as rejected.
fn verdict(view: &dyn WorldView, room_id: &str, event_id: &str) -> Verdict {
    let (mut accept, mut reject) = (false, false);
    for k in view.holders(room_id).into_iter().filter(|k| view.is_honest(*k)) {
        match view.held(k, room_id, event_id) {
            Some(Held::Accepted { .. } | Held::Outlier { rejected: false }) => accept = true,
            Some(Held::Rejected | Held::Outlier { rejected: true }) => reject = true,
            None => {}
        }
    }
    match (accept, reject) {
        (true, false) => Verdict::AllAccept,
        (false, true) => Verdict::AllReject,
        (true, true) => Verdict::Split,
        (false, false) => Verdict::Unreceived,
    }
}

/// The invitee's join: the first `m.room.member` join of `mxid` (its state key) created after
/// the invite in the room's creation order (from the room's start when the invite is not
/// among the room's PDUs).
fn join_of(view: &dyn WorldView, room_id: &str, invite: &str, mxid: &str) -> Option<String> {
    let pdus = view.room_pdus(room_id);
    let from = pdus.iter().position(|p| p.event_id == invite).map_or(0, |i| i + 1);
    pdus[from..]
        .iter()
        .find(|p| {
            p.event_type == "m.room.member"
                && p.state_key.as_deref() == Some(mxid)
                && p.membership() == Some(Membership::Join)
        })
        .map(|p| p.event_id.clone())
}

fn counts(map: &BTreeMap<String, u64>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn tally(t: &Tally, with_none: bool) -> Value {
    let mut v = json!({
        "checked": t.checked,
        "all_accept": t.all_accept,
        "all_reject": t.all_reject,
        "split": t.split,
        "unreceived": t.unreceived,
    });
    if with_none {
        v["none"] = json!(t.none);
    }
    v
}

impl Observer for Identity {
    fn on_event(&mut self, t: SimTime, node: Option<ServerIdx>, event: &SimEvent, view: &dyn WorldView) {
        if !self.active {
            return;
        }
        if let SimEvent::Identity(e) = event {
            self.on_identity(t, node, e, view);
        }
    }

    fn finish(&mut self, view: &mut dyn WorldView, out: &mut Findings) {
        if !self.active {
            return;
        }
        let view: &dyn WorldView = &*view;
        // Verdicts on each distinct issued invite event, and on the invitee's join.
        let (mut invites, mut joins) = (Tally::default(), Tally::default());
        let mut checked = BTreeSet::new();
        for i in &self.issued {
            if !checked.insert((i.room_id.clone(), i.event_id.clone())) {
                continue;
            }
            invites.add(Some(verdict(view, &i.room_id, &i.event_id)));
            joins.add(join_of(view, &i.room_id, &i.event_id, &i.mxid).map(|j| verdict(view, &i.room_id, &j)));
        }
        let hijacked_invites =
            self.by_lookup.iter().filter(|(t, address, mxid)| self.truth(address, *t) != Some(mxid.as_str())).count();
        let pending = self.tokens.keys().filter(|token| !self.decided.contains(*token)).count();
        let identity = json!({
            "lookups": self.lookups_summary(),
            "invites_by_email": {
                "total": self.invites_by_email,
                "not_attempted": counts(&self.not_attempted),
                "stale_account_data": self.stale_account_data,
                "by_lookup": self.by_lookup.len(),
                "third_party": self.sent,
                "abandoned": counts(&self.abandoned),
            },
            "third_party_invites": {
                "sent": self.sent,
                "issued": self.issued.len(),
                "refused": counts(&self.refused),
                "pending": pending,
                "completed": joins.all_accept,
            },
            "hijacked_invites": hijacked_invites,
            "verdicts": {"invites": tally(&invites, false), "joins": tally(&joins, true)},
            "key_validity": {
                "issuer_checks": self.issuer_checks,
                "issuer_invalid": self.issuer_invalid,
                "receipt_checks": self.receipt_checks,
                "receipt_invalid": self.receipt_invalid,
            },
            "pushes": {"stored": self.pushes_stored, "refused": self.pushes_refused},
            "account_data": {
                "writes": self.account_data_writes,
                "lost_writes": self.lost_writes,
                "stale_actions": self.stale_account_data,
            },
        });
        out.summary.insert("identity".into(), identity);
    }
}

#[cfg(test)]
mod tests {
    use super::{Identity, Plant};
    use crate::protocol::dag::StateMap;
    use crate::protocol::identity::Medium;
    use crate::protocol::pdu::Pdu;
    use crate::protocol::room_version::V12;
    use crate::protocol::test_support::{Ev, RoomBuilder};
    use crate::protocol::verify::ServerKeys;
    use crate::scenario::{parse_scenario, BindingSpec, IdentityServerSpec, Scenario};
    use crate::sim::event::SimEvent;
    use crate::sim::federation::ServerIdx;
    use crate::sim::identity_event::{IdentityEvent, LookupOutcome};
    use crate::sim::observe::{Findings, Held, Observer, ReplicaStats, WorldView};
    use crate::sim::time::SimTime;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// Nodes of the fake world: three honest homeservers, then the identity servers.
    const NODES: [&str; 5] = ["hs1", "hs2", "hs3", "is1", "evil"];
    const HS1: Option<ServerIdx> = Some(0);
    const HS2: Option<ServerIdx> = Some(1);
    const IS1: Option<ServerIdx> = Some(3);
    const EVIL: Option<ServerIdx> = Some(4);

    /// A world reduced to what the observer asks: node names, honesty, rooms' PDUs, holders and
    /// holdings.
    #[derive(Default)]
    struct FakeView {
        rooms: BTreeMap<String, String>,
        pdus: BTreeMap<String, Vec<Arc<Pdu>>>,
        holders: BTreeMap<String, Vec<ServerIdx>>,
        /// (node, event ID) → how it holds the event.
        held: BTreeMap<(ServerIdx, String), Held>,
    }

    impl WorldView for FakeView {
        fn now(&self) -> SimTime {
            60_000_000
        }
        fn node_count(&self) -> usize {
            NODES.len()
        }
        fn node_name(&self, k: ServerIdx) -> &str {
            NODES[k as usize]
        }
        fn is_honest(&self, k: ServerIdx) -> bool {
            NODES[k as usize].starts_with("hs")
        }
        fn deliveries(&self, _k: ServerIdx) -> u64 {
            0
        }
        fn rooms(&self) -> &BTreeMap<String, String> {
            &self.rooms
        }
        fn room_of_event(&self, event_id: &str) -> Option<&str> {
            self.pdus.iter().find(|(_, p)| p.iter().any(|p| p.event_id == event_id)).map(|(r, _)| r.as_str())
        }
        fn room_pdus(&self, room_id: &str) -> Vec<Arc<Pdu>> {
            self.pdus.get(room_id).cloned().unwrap_or_default()
        }
        fn holders(&self, room_id: &str) -> Vec<ServerIdx> {
            self.holders.get(room_id).cloned().unwrap_or_default()
        }
        fn members(&self, room_id: &str) -> Vec<ServerIdx> {
            self.holders(room_id)
        }
        fn replica_stats(&mut self, _k: ServerIdx, _room_id: &str) -> Option<ReplicaStats> {
            None
        }
        fn dag_state_digest(&self, _k: ServerIdx, _room_id: &str) -> Option<String> {
            None
        }
        fn dag_state(&self, _k: ServerIdx, _room_id: &str) -> Option<StateMap> {
            None
        }
        fn replica_state_digest(&self, _k: ServerIdx, _room_id: &str, _state: &StateMap) -> Option<String> {
            None
        }
        fn held(&self, k: ServerIdx, _room_id: &str, event_id: &str) -> Option<Held> {
            self.held.get(&(k, event_id.to_owned())).copied()
        }
        fn replica_events(&self, _k: ServerIdx, _room_id: &str) -> Vec<(String, Held)> {
            Vec::new()
        }
        fn replica_extremities(&self, _k: ServerIdx, _room_id: &str) -> Vec<String> {
            Vec::new()
        }
        fn quiet(&self) -> bool {
            true
        }
        fn messages_in_flight(&self) -> usize {
            0
        }
        fn server_keys(&self) -> ServerKeys {
            ServerKeys::new()
        }
    }

    /// A minimal scenario (three homeservers, one room), without identity servers.
    fn bare() -> Scenario {
        let text = r#"
[scenario]
name = "identity"
end = "60s"

[defaults]
users = 2

[[servers]]
prefix = "hs"
count = 3

[[rooms]]
name = "lobby"
version = "12"
creator = "@u0:hs1"
members = ["*"]
"#;
        parse_scenario("identity.toml", text, &[]).expect("valid scenario")
    }

    fn binding(address: &str, user: &str) -> BindingSpec {
        BindingSpec { medium: Medium::Email, address: address.to_owned(), user: user.to_owned() }
    }

    fn server(name: &str, rogue: bool, bindings: Vec<BindingSpec>) -> IdentityServerSpec {
        IdentityServerSpec {
            name: name.to_owned(),
            pepper: "matrixrocks".to_owned(),
            alt_peppers: 0,
            trusted_pushers: None,
            bindings,
            push_to: Vec::new(),
            rogue,
            sign_with: crate::scenario::SignWith::LongTerm,
            ephemeral_lifetime_us: None,
        }
    }

    /// [`bare`] with `is1` (honest: alice → @u0:hs1) and `evil` (rogue: it claims alice for
    /// @u0:hs3).
    fn with_identity_servers() -> Scenario {
        let mut sc = bare();
        sc.identity_servers = vec![
            server("is1", false, vec![binding("alice@example.org", "@u0:hs1")]),
            server("evil", true, vec![binding("alice@example.org", "@u0:hs3")]),
        ];
        sc
    }

    fn s(t: u64) -> SimTime {
        t * 1_000_000
    }

    fn lookup(address: &str, answered_by: &str, mxid: Option<&str>, outcome: LookupOutcome) -> IdentityEvent {
        IdentityEvent::Lookup {
            user: "@u0:hs1".into(),
            client: "default".into(),
            address: address.into(),
            asked: "is1".into(),
            answered_by: Some(answered_by.into()),
            mxid: mxid.map(str::to_owned),
            redirects: 0,
            pepper_retries: 0,
            outcome,
        }
    }

    fn with_redirects(mut e: IdentityEvent, n: u32, retries: u32) -> IdentityEvent {
        if let IdentityEvent::Lookup { redirects, pepper_retries, .. } = &mut e {
            *redirects = n;
            *pepper_retries = retries;
        }
        e
    }

    fn bound(address: &str, mxid: &str) -> IdentityEvent {
        IdentityEvent::Bound { address: address.into(), mxid: mxid.into(), invites: 0 }
    }

    fn by_email(route: Option<&str>, why: Option<&str>, stale: bool) -> IdentityEvent {
        IdentityEvent::InviteByEmail {
            user: "@u0:hs1".into(),
            client: "default".into(),
            room: "lobby".into(),
            address: "alice@example.org".into(),
            route: route.map(str::to_owned),
            why: why.map(str::to_owned),
            stale,
        }
    }

    fn by_lookup(address: &str, mxid: &str) -> IdentityEvent {
        IdentityEvent::InvitedByLookup {
            user: "@u0:hs1".into(),
            room: "lobby".into(),
            address: address.into(),
            mxid: mxid.into(),
            event: None,
        }
    }

    fn sent(room_id: &str, token: &str) -> IdentityEvent {
        IdentityEvent::ThirdPartyInviteSent {
            user: "@u0:hs1".into(),
            room: "lobby".into(),
            room_id: room_id.into(),
            address: format!("{token}@example.org"),
            token: token.into(),
            event: format!("$tpi-{token}"),
        }
    }

    fn issued(room_id: &str, token: &str, mxid: &str, event: Option<&str>, why: Option<&str>) -> IdentityEvent {
        IdentityEvent::InviteIssued {
            room_id: room_id.into(),
            token: token.into(),
            mxid: mxid.into(),
            event: event.map(str::to_owned),
            why: why.map(str::to_owned),
        }
    }

    fn abandoned(why: &str) -> IdentityEvent {
        IdentityEvent::InviteAbandoned {
            user: "@u0:hs1".into(),
            room: "lobby".into(),
            address: "dave@example.org".into(),
            why: why.into(),
        }
    }

    fn key_validity(valid: bool, at_receipt: bool) -> IdentityEvent {
        IdentityEvent::KeyValidity { event: "$inv".into(), public_key: "pk".into(), valid, at_receipt, why: None }
    }

    fn push(refused: Option<&str>) -> IdentityEvent {
        IdentityEvent::Push { from: "evil".into(), hashes: 3, refused: refused.map(str::to_owned) }
    }

    fn account_data(lost: bool) -> IdentityEvent {
        IdentityEvent::AccountData { user: "@u0:hs1".into(), client: "phone".into(), value: "is1".into(), lost }
    }

    /// Feeds `events` (time, emitting node, record) to an observer of `sc` over `view`; the
    /// `identity` entry it writes, if any.
    fn run(
        sc: &Scenario,
        plant: Option<Plant>,
        events: Vec<(SimTime, Option<ServerIdx>, IdentityEvent)>,
        view: &mut FakeView,
    ) -> Option<Value> {
        let mut obs = Identity::new(sc);
        obs.plant = plant;
        for (t, node, e) in events {
            obs.on_event(t, node, &SimEvent::Identity(e), &*view);
        }
        let mut out = Findings::default();
        obs.finish(view, &mut out);
        out.summary.get("identity").cloned()
    }

    /// The lookups of [`lookups_and_counts`], each with its hand-derived class. The truth:
    /// alice → @u0:hs1 (is1's binding; evil's claim is not the truth) until is1's `Bound` at
    /// 4 s makes it @u2:hs3; bob unbound until is1's `Bound` at 2 s (@u1:hs2); carol never
    /// bound at an honest server (only evil's `Bound`); dave never bound.
    fn lookup_sequence() -> Vec<(SimTime, Option<ServerIdx>, IdentityEvent)> {
        vec![
            // correct: truth(alice, 1 s) = @u0:hs1.
            (s(1), HS1, lookup("alice@example.org", "is1", Some("@u0:hs1"), LookupOutcome::Found)),
            // A rogue server's binding is not the truth.
            (s(1), EVIL, bound("carol@example.org", "@u0:hs3")),
            // hijacked: truth(carol) = none, answered by the rogue evil (1 redirect).
            (
                s(1),
                HS1,
                with_redirects(lookup("carol@example.org", "evil", Some("@u0:hs3"), LookupOutcome::Found), 1, 0),
            ),
            // correct: is1's Bound of bob comes later in the log but at the same instant (2 s).
            // An observer judging lookups as they come would call this one stale.
            (s(2), HS1, lookup("bob@example.org", "is1", Some("@u1:hs2"), LookupOutcome::Found)),
            (s(2), IS1, bound("bob@example.org", "@u1:hs2")),
            // stale: not found, but bob is bound since 2 s (after 1 pepper retry).
            (s(3), HS2, with_redirects(lookup("bob@example.org", "is1", None, LookupOutcome::NotFound), 0, 1)),
            // correct: dave is bound nowhere.
            (s(3), HS2, lookup("dave@example.org", "is1", None, LookupOutcome::NotFound)),
            (s(4), IS1, bound("alice@example.org", "@u2:hs3")),
            // stale: found the old binding of alice, from the honest is1.
            (s(5), HS1, lookup("alice@example.org", "is1", Some("@u0:hs1"), LookupOutcome::Found)),
            // hijacked: evil's claim of alice, after 2 redirects.
            (
                s(5),
                HS1,
                with_redirects(lookup("alice@example.org", "evil", Some("@u0:hs3"), LookupOutcome::Found), 2, 0),
            ),
            // lost to the pepper rotation (1 pepper retry).
            (s(6), HS1, with_redirects(lookup("alice@example.org", "is1", None, LookupOutcome::InvalidPepper), 0, 1)),
            // failed.
            (s(6), HS1, lookup("alice@example.org", "is1", None, LookupOutcome::Failed)),
        ]
    }

    /// Every other kind of record once or more, after the lookups.
    fn other_records() -> Vec<(SimTime, Option<ServerIdx>, IdentityEvent)> {
        let room = "!room:hs1";
        vec![
            // 4 invites by e-mail: 2 not attempted (no identity server), 2 on stale account data
            // (one of them not attempted).
            (s(7), HS1, by_email(Some("is1"), None, false)),
            (s(7), HS1, by_email(None, Some("no_identity_server"), false)),
            (s(7), HS1, by_email(None, Some("no_identity_server"), true)),
            (s(7), HS1, by_email(Some("is1"), None, true)),
            // 2 invites by lookup: carol's (truth none) is hijacked; bob's at 7 s is right.
            (s(7), HS1, by_lookup("carol@example.org", "@u0:hs3")),
            (s(7), HS1, by_lookup("bob@example.org", "@u1:hs2")),
            // 3 third-party invites: A issued, B refused, C never decided (pending).
            (s(8), HS1, sent(room, "tokA")),
            (s(8), HS1, sent(room, "tokB")),
            (s(8), HS1, sent(room, "tokC")),
            (s(9), HS1, issued(room, "tokA", "@u1:hs2", Some("$invA"), None)),
            (s(9), HS1, issued(room, "tokB", "@u2:hs3", None, Some("key_invalid"))),
            (s(9), HS1, abandoned("lookup_failed")),
            (s(9), HS1, abandoned("store_refused")),
            (s(9), HS1, abandoned("lookup_failed")),
            // Issuer checks: 2, 1 invalid; receipt checks: 1, invalid.
            (s(9), HS1, key_validity(true, false)),
            (s(9), HS1, key_validity(false, false)),
            (s(9), HS2, key_validity(false, true)),
            // Pushes: 2 stored, 1 refused.
            (s(9), IS1, push(None)),
            (s(9), IS1, push(None)),
            (s(9), IS1, push(Some("untrusted_pusher"))),
            // Account data: 2 writes, 1 lost.
            (s(9), HS1, account_data(false)),
            (s(9), HS1, account_data(true)),
        ]
    }

    /// (1) The hand-derived counts of [`lookup_sequence`] and [`other_records`]: 9 lookups,
    /// 3 correct (alice at 1 s, bob at 2 s, dave), 2 stale (bob not found at 3 s, alice's old
    /// binding at 5 s), 2 hijacked (carol, alice through evil), 1 lost, 1 failed; redirects
    /// 1 + 2 = 3, pepper retries 1 + 1 = 2. The issued invite `$invA` is in no room the view
    /// holds: unreceived, and no join.
    #[test]
    fn lookups_and_counts_are_the_hand_derived_ones() {
        let sc = with_identity_servers();
        let mut events = lookup_sequence();
        events.extend(other_records());
        let got = run(&sc, None, events, &mut FakeView::default()).expect("an identity entry");
        let expected = json!({
            "lookups": {"total": 9, "correct": 3, "stale": 2, "hijacked": 2, "lost_to_pepper_rotation": 1,
                        "failed": 1, "redirects_followed": 3, "pepper_retries": 2},
            "invites_by_email": {"total": 4, "not_attempted": {"no_identity_server": 2}, "stale_account_data": 2,
                                 "by_lookup": 2, "third_party": 3,
                                 "abandoned": {"lookup_failed": 2, "store_refused": 1}},
            "third_party_invites": {"sent": 3, "issued": 1, "refused": {"key_invalid": 1}, "pending": 1,
                                    "completed": 0},
            "hijacked_invites": 1,
            "verdicts": {
                "invites": {"checked": 1, "all_accept": 0, "all_reject": 0, "split": 0, "unreceived": 1},
                "joins": {"checked": 1, "all_accept": 0, "all_reject": 0, "split": 0, "unreceived": 0, "none": 1},
            },
            "key_validity": {"issuer_checks": 2, "issuer_invalid": 1, "receipt_checks": 1, "receipt_invalid": 1},
            "pushes": {"stored": 2, "refused": 1},
            "account_data": {"writes": 2, "lost_writes": 1, "stale_actions": 2},
        });
        assert_eq!(got, expected);
    }

    /// The planted fault: a truth that ignores `Bound` records calls bob's lookup at 2 s stale
    /// (truth none), bob's not-found at 3 s correct and alice's old binding at 5 s correct:
    /// correct 4, stale 1, which the counts of the test above reject.
    #[test]
    fn a_truth_that_ignores_bindings_is_caught() {
        let sc = with_identity_servers();
        let got = run(&sc, Some(Plant::IgnoreBound), lookup_sequence(), &mut FakeView::default()).expect("entry");
        assert_eq!((&got["lookups"]["correct"], &got["lookups"]["stale"]), (&json!(4), &json!(1)), "{got}");
        assert_ne!((&got["lookups"]["correct"], &got["lookups"]["stale"]), (&json!(3), &json!(2)));
    }

    /// A room with two third-party invites and the invitees' joins, held by hs1–hs3 (honest)
    /// and evil (not honest: its holdings do not count).
    fn verdict_world() -> (FakeView, String, [String; 2]) {
        let mut r = RoomBuilder::new(&V12);
        r.add_unchecked("CREATE", Ev::create("@u0:hs1"));
        r.add_unchecked("J0", Ev::join("@u0:hs1"));
        // u2 was in the room before, and left: that join is not the join of the invite.
        let old_join = r.add_unchecked("J2OLD", Ev::join("@u2:hs3"));
        let old_leave = r.add_unchecked("L2", Ev::leave("@u2:hs3"));
        let inv1 = r.add_unchecked("INV1", Ev::invite("@u0:hs1", "@u1:hs2"));
        let inv2 = r.add_unchecked("INV2", Ev::invite("@u0:hs1", "@u2:hs3"));
        let j1 = r.add_unchecked("J1", Ev::join("@u1:hs2"));
        let j2 = r.add_unchecked("J2", Ev::join("@u2:hs3"));
        let room_id = r.room_id().to_owned();
        let mut view = FakeView::default();
        view.rooms.insert("lobby".into(), room_id.clone());
        let pdus = ["CREATE", "J0"].map(|n| r.pdu(n).clone()).into_iter().chain([
            old_join.clone(),
            old_leave,
            inv1.clone(),
            inv2.clone(),
            j1.clone(),
            j2.clone(),
        ]);
        view.pdus.insert(room_id.clone(), pdus.map(Arc::new).collect());
        view.holders.insert(room_id.clone(), vec![0, 1, 2, 4]);
        let accepted = Held::Accepted { soft_failed: false };
        for k in [0, 1, 2] {
            // The old join is accepted everywhere (a join search from the room's start would
            // find it).
            view.held.insert((k, old_join.event_id.clone()), accepted);
            view.held.insert((k, j1.event_id.clone()), accepted);
            view.held.insert((k, inv2.event_id.clone()), accepted);
        }
        // INV2: hs3 holds it as an outlier not rejected (accepted); evil's rejection does not
        // count. J2: held by no honest server.
        view.held.insert((2, inv2.event_id.clone()), Held::Outlier { rejected: false });
        view.held.insert((4, inv2.event_id.clone()), Held::Rejected);
        view.held.insert((4, j2.event_id.clone()), accepted);
        (view, room_id, [inv1.event_id, inv2.event_id])
    }

    /// (2) INV1 accepted by hs1 and hs2, rejected by hs3 → split; INV2 accepted by all three
    /// honest holders → all_accept. J1 (u1's join) accepted by all → all_accept (1
    /// completed); J2 (u2's join after INV2; not the older J2OLD) held by no honest server →
    /// unreceived. A planted rejection of J1 by hs2 turns it into split.
    #[test]
    fn verdicts_split_all_accept_and_unreceived() {
        let sc = with_identity_servers();
        let (mut view, room_id, [inv1, inv2]) = verdict_world();
        for (k, held) in [(0, Held::Accepted { soft_failed: true }), (1, Held::Accepted { soft_failed: false })] {
            view.held.insert((k, inv1.clone()), held);
        }
        view.held.insert((2, inv1.clone()), Held::Rejected);
        let events = vec![
            (s(1), HS1, sent(&room_id, "t1")),
            (s(1), HS1, sent(&room_id, "t2")),
            (s(2), HS1, issued(&room_id, "t1", "@u1:hs2", Some(&inv1), None)),
            (s(2), HS1, issued(&room_id, "t2", "@u2:hs3", Some(&inv2), None)),
        ];
        let got = run(&sc, None, events.clone(), &mut view).expect("an identity entry");
        assert_eq!(
            got["verdicts"],
            json!({
                "invites": {"checked": 2, "all_accept": 1, "all_reject": 0, "split": 1, "unreceived": 0},
                "joins": {"checked": 2, "all_accept": 1, "all_reject": 0, "split": 0, "unreceived": 1, "none": 0},
            })
        );
        assert_eq!(
            got["third_party_invites"],
            json!({"sent": 2, "issued": 2, "refused": {}, "pending": 0, "completed": 1})
        );

        // hs3 accepting INV1 too: both invites all_accept.
        view.held.insert((2, inv1.clone()), Held::Accepted { soft_failed: false });
        let got = run(&sc, None, events.clone(), &mut view).expect("an identity entry");
        assert_eq!(
            got["verdicts"]["invites"],
            json!({"checked": 2, "all_accept": 2, "all_reject": 0, "split": 0, "unreceived": 0})
        );
        // A rejected outlier of J1 at hs2: u1's join is split, nothing completed.
        let j1 = view.pdus[&room_id][6].event_id.clone();
        view.held.insert((1, j1), Held::Outlier { rejected: true });
        let got = run(&sc, None, events, &mut view).expect("an identity entry");
        assert_eq!(got["verdicts"]["joins"]["split"], 1);
        assert_eq!(got["third_party_invites"]["completed"], 0);
    }

    /// (3) Without identity servers the observer writes nothing, whatever it is fed.
    #[test]
    fn no_identity_servers_no_identity_entry() {
        let sc = bare();
        assert!(sc.identity_servers.is_empty());
        let mut events = lookup_sequence();
        events.extend(other_records());
        assert_eq!(run(&sc, None, events, &mut FakeView::default()), None);
    }
}
