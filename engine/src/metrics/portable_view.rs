//! The MSC4345 §7–§8 / MSC4348 client-side view, measured (`summary.json`
//! `portable_client_view`): how each server shows the senders of portable-account rooms to its
//! clients (`@name:server_domain` once the co-signing key's domain and the account's name are
//! verified, else the account-key user ID), how long verification takes, how long a moved
//! account takes to be shown verified with its new server's domain, and how many lookups it
//! cost. Inert (no entry) when no room of the run has portable accounts.
//!
//! The observer learns from the servers' records (`portable_shown`, `decision`), the lookups
//! they send and the PDUs the world holds (which join is a move: a join of an account co-signed
//! by another server key than its previous join); it never reads a server's cache.
//!
//! * `client_view_divergent_events`: events held accepted by at least two honest servers that
//!   show the sender differently at the end (the definition of MSC4243's measure of that name);
//! * `unverified_events`: (server, event) pairs held accepted at the end whose sender that
//!   server does not show verified; `client_view_divergent_event_seconds` and
//!   `unverified_event_seconds`: both counts integrated over simulated time, sampled every
//!   `[metrics] interval` (each sample's count holds until the next);
//! * `time_to_verified_ms`: per (server, room, sender) first shown unverified, from that first
//!   showing to the first verified one (senders shown verified at once, such as a server's own
//!   accounts, are not counted);
//! * `reverified_after_move_ms`: per move and server accepting the move's join, from the
//!   acceptance to that server showing the account verified with the new server's domain (the
//!   `unverified_domain` of the new key's participation); `reverified_after_move_unfinished`
//!   counts those that never got there.

use super::percentiles;
use crate::protocol::ids;
use crate::protocol::pdu::{Membership, TypedContent};
use crate::protocol::room_version::RoomVersion;
use crate::protocol::signers;
use crate::scenario::Scenario;
use crate::sim::event::{SimEvent, Verdict};
use crate::sim::federation::{Message, Request, ServerIdx};
use crate::sim::observe::{Findings, Held, Observer, WorldView};
use crate::sim::time::SimTime;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// (server, room ID, sender).
type Slot = (ServerIdx, String, String);

pub struct PortableView {
    active: bool,
    /// Portable-account rooms by name, with their version.
    version: BTreeMap<String, &'static RoomVersion>,
    /// How each server shows each sender now: (form, verified).
    shown: BTreeMap<Slot, (String, bool)>,
    /// Slots first shown unverified, since when (removed once verified).
    waiting_since: BTreeMap<Slot, SimTime>,
    /// Slots seen at all.
    seen: BTreeSet<Slot>,
    time_to_verified_us: Vec<u64>,
    /// Per room ID: PDUs read so far (creation order).
    read: BTreeMap<String, usize>,
    /// (room ID, server key) → the domain its first participation claims.
    key_domain: BTreeMap<(String, String), String>,
    /// (room ID, account) → the key co-signing its latest join.
    join_key: BTreeMap<(String, String), String>,
    /// Move joins: event ID → (room ID, account, new key).
    move_joins: BTreeMap<String, (String, String, String)>,
    /// Slots whose move join was accepted: since when, and the domain to be shown.
    reverifying: BTreeMap<Slot, (SimTime, String)>,
    reverified_us: Vec<u64>,
    key_v3_queries: u64,
    portable_account_queries: u64,
    /// Integrals over the samples (event × µs), as MSC4243's measures of the same names.
    divergent_event_us: u128,
    unverified_event_us: u128,
    last_sample: Option<(SimTime, (u64, u64))>,
}

impl PortableView {
    pub fn new(scenario: &Scenario) -> PortableView {
        let version: BTreeMap<String, &'static RoomVersion> = scenario
            .rooms
            .iter()
            .filter(|r| r.version.rules().portable_accounts)
            .map(|r| (r.name.clone(), r.version.rules()))
            .collect();
        PortableView {
            active: !version.is_empty(),
            version,
            shown: BTreeMap::new(),
            waiting_since: BTreeMap::new(),
            seen: BTreeSet::new(),
            time_to_verified_us: Vec::new(),
            read: BTreeMap::new(),
            key_domain: BTreeMap::new(),
            join_key: BTreeMap::new(),
            move_joins: BTreeMap::new(),
            reverifying: BTreeMap::new(),
            reverified_us: Vec::new(),
            key_v3_queries: 0,
            portable_account_queries: 0,
            divergent_event_us: 0,
            unverified_event_us: 0,
            last_sample: None,
        }
    }

    /// Reads the PDUs created since last time: claimed domains of keys, and move joins.
    fn catch_up(&mut self, view: &dyn WorldView) {
        for (name, room_id) in view.rooms() {
            let Some(version) = self.version.get(name).copied() else { continue };
            let from = self.read.get(room_id).copied().unwrap_or(0);
            let new = view.room_pdus_since(room_id, from);
            self.read.insert(room_id.clone(), from + new.len());
            for pdu in new {
                if let (TypedContent::Participation(c), Some(key)) = (&pdu.content, &pdu.state_key) {
                    if let Some(d) = &c.unverified_domain {
                        self.key_domain.entry((room_id.clone(), key.clone())).or_insert_with(|| d.clone());
                    }
                }
                let own_join =
                    pdu.membership() == Some(Membership::Join) && pdu.state_key.as_deref() == Some(pdu.sender.as_str());
                let Some(key) = signers::acting_server(version, &pdu).filter(|_| own_join) else { continue };
                let slot = (room_id.clone(), pdu.sender.clone());
                let before = self.join_key.insert(slot, key.to_owned());
                if before.is_some_and(|b| b != key) {
                    self.move_joins.insert(pdu.event_id.clone(), (room_id.clone(), pdu.sender.clone(), key.to_owned()));
                }
            }
        }
    }

    fn on_shown(&mut self, t: SimTime, slot: Slot, shown: &str, verified: bool) {
        if self.seen.insert(slot.clone()) && !verified {
            self.waiting_since.insert(slot.clone(), t);
        }
        if verified {
            if let Some(since) = self.waiting_since.remove(&slot) {
                self.time_to_verified_us.push(t - since);
            }
            let domain = ids::domain_of(shown);
            if let Some((since, _)) = self.reverifying.get(&slot).filter(|(_, d)| Some(d.as_str()) == domain) {
                self.reverified_us.push(t - since);
                self.reverifying.remove(&slot);
            }
        }
        self.shown.insert(slot, (shown.to_owned(), verified));
    }

    /// Adds the last sample's counts, held until `t` (a step function).
    fn integrate(&mut self, t: SimTime) {
        if let Some((last, (d, u))) = self.last_sample {
            let dt = u128::from(t.saturating_sub(last));
            self.divergent_event_us += u128::from(d) * dt;
            self.unverified_event_us += u128::from(u) * dt;
        }
    }

    /// (divergent events, unverified (server, event) pairs) now, over the portable rooms.
    fn counts(&self, view: &dyn WorldView) -> (u64, u64) {
        let (mut divergent, mut unverified) = (0, 0);
        for (name, room_id) in view.rooms() {
            if !self.version.contains_key(name) {
                continue;
            }
            let holders: Vec<ServerIdx> = view.holders(room_id).into_iter().filter(|k| view.is_honest(*k)).collect();
            for pdu in view.room_pdus(room_id) {
                let mut forms = BTreeSet::new();
                let mut accepted = 0;
                for k in &holders {
                    if !matches!(view.held(*k, room_id, &pdu.event_id), Some(Held::Accepted { .. })) {
                        continue;
                    }
                    accepted += 1;
                    let slot = (*k, room_id.clone(), pdu.sender.clone());
                    let (form, verified) = self.shown.get(&slot).cloned().unwrap_or((pdu.sender.clone(), false));
                    unverified += u64::from(!verified);
                    forms.insert(form);
                }
                divergent += u64::from(accepted >= 2 && forms.len() > 1);
            }
        }
        (divergent, unverified)
    }
}

impl Observer for PortableView {
    fn on_event(&mut self, t: SimTime, node: Option<ServerIdx>, event: &SimEvent, view: &dyn WorldView) {
        if !self.active {
            return;
        }
        let Some(k) = node else { return };
        match event {
            SimEvent::PortableShown { room, sender, shown, verified, .. } => {
                self.on_shown(t, (k, room.clone(), sender.clone()), shown, *verified)
            }
            SimEvent::Decision { event, decision: Verdict::Accepted, .. } => {
                self.catch_up(view);
                let Some((room_id, account, key)) = self.move_joins.get(event) else { return };
                let Some(domain) = self.key_domain.get(&(room_id.clone(), key.clone())) else { return };
                self.reverifying.insert((k, room_id.clone(), account.clone()), (t, domain.clone()));
            }
            _ => {}
        }
    }

    fn on_sample(&mut self, t: SimTime, view: &mut dyn WorldView) {
        if !self.active {
            return;
        }
        self.integrate(t);
        let counts = self.counts(&*view);
        self.last_sample = Some((t, counts));
    }

    fn on_send(&mut self, _t: SimTime, _from: ServerIdx, _to: ServerIdx, message: &Message) {
        match message {
            Message::Request { body: Request::KeyV3Query { .. }, .. } => self.key_v3_queries += 1,
            Message::Request { body: Request::PortableAccounts { .. }, .. } => self.portable_account_queries += 1,
            _ => {}
        }
    }

    fn finish(&mut self, view: &mut dyn WorldView, out: &mut Findings) {
        if !self.active {
            return;
        }
        let (divergent, unverified) = self.counts(&*view);
        // The last sample (taken at the end) closes the integral.
        self.integrate(view.now());
        let verified_senders = self.shown.values().filter(|(_, v)| *v).count();
        let mut m = Map::new();
        m.insert("client_view_divergent_events".into(), json!(divergent));
        m.insert("unverified_events".into(), json!(unverified));
        let seconds = |us: u128| (us / 1000) as f64 / 1000.0;
        m.insert("client_view_divergent_event_seconds".into(), json!(seconds(self.divergent_event_us)));
        m.insert("unverified_event_seconds".into(), json!(seconds(self.unverified_event_us)));
        m.insert("time_to_verified_ms".into(), percentiles(&self.time_to_verified_us));
        m.insert("reverified_after_move_ms".into(), percentiles(&self.reverified_us));
        m.insert("reverified_after_move_unfinished".into(), json!(self.reverifying.len()));
        m.insert("senders_shown_verified".into(), json!(verified_senders));
        m.insert("senders_shown_unverified".into(), json!(self.shown.len() - verified_senders));
        m.insert("key_v3_queries".into(), json!(self.key_v3_queries));
        m.insert("portable_account_queries".into(), json!(self.portable_account_queries));
        out.summary.insert("portable_client_view".into(), Value::Object(m));
    }
}
