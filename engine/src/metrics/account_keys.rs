//! MSC4243 account keys, measured (`summary.json` `account_keys`, `docs/outputs.md`): what each
//! server learnt from `/query/accounts` and what its clients were shown, against the truth the
//! domains hold (the run's account book, [`WorldView::account_owner`]).
//!
//! The observer reads only the servers' records (`account_mapping`, `room_shown`,
//! `client_resend`, `account_changed`, the `query_accounts` sends) and the replicas' holdings;
//! it never reads a server's cache.

use super::percentiles;
use crate::protocol::ids;
use crate::scenario::{ClientView, Scenario};
use crate::sim::accounts::cache::Mapping;
use crate::sim::accounts::view::{shown_as, Shown};
use crate::sim::event::SimEvent;
use crate::sim::federation::ServerIdx;
use crate::sim::observe::{Findings, Held, MetricRow, Observer, WorldView};
use crate::sim::time::{to_ms, SimTime};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

type Pair = (String, String);

/// The observer. Inert (no `account_keys` entry) when no room of the run uses account keys.
pub struct AccountKeys {
    active: bool,
    view: ClientView,
    rooms: BTreeSet<String>,
    /// (observing server, (key, domain)) → current mapping.
    mapping: BTreeMap<(ServerIdx, Pair), Mapping>,
    seen_at: BTreeMap<(ServerIdx, Pair), SimTime>,
    time_to_verify_us: Vec<u64>,
    /// (server, key) shown a name its domain never bound to the key, or no longer binds.
    wrong: BTreeSet<(ServerIdx, String)>,
    /// Keys a re-registration made outdated, and erased keys.
    outdated: BTreeSet<String>,
    erased: BTreeSet<String>,
    query_requests: u64,
    erasure_polls: u64,
    query_keys: u64,
    asks: BTreeMap<(ServerIdx, String), u64>,
    room_appear_us: Vec<u64>,
    resends: BTreeMap<String, u64>,
    /// Integrals over the samples (event × µs).
    divergent_event_us: u128,
    unverified_event_us: u128,
    last_sample: Option<SimTime>,
    last_counts: (u64, u64),
    rows: Vec<MetricRow>,
    /// Per room ID: how many of its PDUs were read, and the account-key users seen in it
    /// (senders and member targets).
    users_in: BTreeMap<String, (usize, BTreeSet<String>)>,
    /// (server, key, domain) → how that server's clients were last shown the key.
    last_shown: BTreeMap<(ServerIdx, Pair), Shown>,
    /// `clients.jsonl` lines.
    clients: Vec<Value>,
}

impl AccountKeys {
    pub fn new(scenario: &Scenario) -> AccountKeys {
        let rooms: BTreeSet<String> =
            scenario.rooms.iter().filter(|r| r.version.rules().account_keys).map(|r| r.name.clone()).collect();
        AccountKeys {
            active: !rooms.is_empty(),
            view: scenario.account_query.client_view,
            rooms,
            mapping: BTreeMap::new(),
            seen_at: BTreeMap::new(),
            time_to_verify_us: Vec::new(),
            wrong: BTreeSet::new(),
            outdated: BTreeSet::new(),
            erased: BTreeSet::new(),
            query_requests: 0,
            erasure_polls: 0,
            query_keys: 0,
            asks: BTreeMap::new(),
            room_appear_us: Vec::new(),
            resends: BTreeMap::new(),
            divergent_event_us: 0,
            unverified_event_us: 0,
            last_sample: None,
            last_counts: (0, 0),
            rows: Vec::new(),
            users_in: BTreeMap::new(),
            last_shown: BTreeMap::new(),
            clients: Vec::new(),
        }
    }

    /// The account-key rooms (name, ID) in which `user_id` sent or was the target of a
    /// membership event, as far as created so far.
    fn rooms_of(&mut self, view: &dyn WorldView, user_id: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (name, room_id) in view.rooms() {
            if !self.rooms.contains(name) {
                continue;
            }
            let (read, users) = self.users_in.entry(room_id.clone()).or_default();
            for pdu in view.room_pdus_since(room_id, *read) {
                users.insert(pdu.sender.clone());
                if pdu.event_type == "m.room.member" {
                    if let Some(target) = &pdu.state_key {
                        users.insert(target.clone());
                    }
                }
                *read += 1;
            }
            if users.contains(user_id) {
                out.push((name.clone(), room_id.clone()));
            }
        }
        out
    }

    /// A client's name: the account name user ID its server knows it by.
    fn client_name(view: &dyn WorldView, user_id: &str) -> String {
        ids::account_key_of(user_id).and_then(|k| view.account_owner(k)).map_or_else(|| user_id.to_owned(), |(u, _)| u)
    }

    /// One `clients.jsonl` line for every client of server `k` in a room `sender` is in.
    fn tell_clients(&mut self, t: SimTime, k: ServerIdx, sender: &str, line: Value, view: &dyn WorldView) {
        for (room, room_id) in self.rooms_of(view, sender) {
            for client in view.local_joined_users(k, &room_id) {
                let mut entry = json!({
                    "t_ms": to_ms(t),
                    "server": view.node_name(k),
                    "client": Self::client_name(view, &client),
                    "room": room,
                    "sender": sender,
                });
                if let (Value::Object(e), Value::Object(extra)) = (&mut entry, &line) {
                    e.extend(extra.clone());
                }
                self.clients.push(entry);
            }
        }
    }

    /// Whether the domain binds `name` to `key` now (the truth).
    fn binds(&self, view: &dyn WorldView, key: &str, domain: &str, name: &str) -> bool {
        let Some((user, _)) = view.account_owner(key) else { return false };
        ids::localpart_of(&user) == Some(name) && ids::domain_of(&user) == Some(domain) && !self.outdated.contains(key)
    }

    /// How server `k` shows a sender `key` of `domain` (its own users by name).
    fn shown(&self, view: &dyn WorldView, k: ServerIdx, key: &str, domain: &str) -> Shown {
        if view.node_name(k) == domain {
            // A server knows its own accounts.
            let name = view.account_owner(key).and_then(|(u, _)| ids::localpart_of(&u).map(str::to_owned));
            return shown_as(self.view, key, domain, &Mapping::Verified { name: name.unwrap_or_default() });
        }
        let m = self.mapping.get(&(k, (key.to_owned(), domain.to_owned()))).unwrap_or(&Mapping::Pending);
        shown_as(self.view, key, domain, m)
    }

    /// (events two servers holding them show differently, (server, event) pairs shown by an
    /// unverified sender), now, over the account-key rooms.
    fn counts(&self, view: &dyn WorldView) -> (u64, u64, BTreeMap<String, (u64, u64)>) {
        let mut per_room = BTreeMap::new();
        let (mut divergent, mut unverified) = (0, 0);
        for (name, room_id) in view.rooms() {
            if !self.rooms.contains(name) {
                continue;
            }
            let holders: Vec<ServerIdx> = view.holders(room_id).into_iter().filter(|k| view.is_honest(*k)).collect();
            let (mut d, mut u) = (0, 0);
            // A sender every holder shows by one name adds nothing: skip its events' holdings.
            let mut uniform: BTreeMap<&str, bool> = BTreeMap::new();
            let pdus = view.room_pdus(room_id);
            for pdu in &pdus {
                let Some((key, domain)) = ids::account_key_of(&pdu.sender).zip(ids::domain_of(&pdu.sender)) else {
                    continue;
                };
                let same = *uniform.entry(pdu.sender.as_str()).or_insert_with(|| {
                    let mut shown = holders.iter().map(|k| self.shown(view, *k, key, domain));
                    let first = shown.next();
                    matches!(first, Some(Shown::Name(_))) && shown.all(|s| Some(&s) == first.as_ref())
                });
                if same {
                    continue;
                }
                let mut shown = BTreeSet::new();
                for k in &holders {
                    let held = view.held(*k, room_id, &pdu.event_id);
                    if !matches!(held, Some(Held::Accepted { .. })) {
                        continue;
                    }
                    let s = self.shown(view, *k, key, domain);
                    if !matches!(s, Shown::Name(_)) {
                        u += 1;
                    }
                    shown.insert(s);
                }
                d += u64::from(shown.len() > 1);
            }
            divergent += d;
            unverified += u;
            per_room.insert(name.clone(), (d, u));
        }
        (divergent, unverified, per_room)
    }
}

impl Observer for AccountKeys {
    fn on_event(&mut self, t: SimTime, node: Option<ServerIdx>, event: &SimEvent, view: &dyn WorldView) {
        if !self.active {
            return;
        }
        let Some(k) = node else { return };
        match event {
            SimEvent::AccountMapping { key, domain, mapping } => {
                let pair = (key.clone(), domain.clone());
                if *mapping == Mapping::Pending {
                    self.seen_at.entry((k, pair.clone())).or_insert(t);
                }
                if let Mapping::Verified { name } = mapping {
                    if let Some(seen) = self.seen_at.get(&(k, pair.clone())) {
                        self.time_to_verify_us.push(t - seen);
                    }
                    if !self.binds(view, key, domain, name) {
                        self.wrong.insert((k, key.clone()));
                    }
                }
                self.mapping.insert((k, pair.clone()), mapping.clone());
                // What this server's clients are shown for the key now, when it changed.
                if view.node_name(k) != domain {
                    let shown = self.shown(view, k, key, domain);
                    if self.last_shown.get(&(k, pair.clone())) != Some(&shown) {
                        self.last_shown.insert((k, pair), shown.clone());
                        let line = json!({"kind": "sender_shown", "shown": shown, "mapping": mapping.label()});
                        self.tell_clients(t, k, &format!("@{key}:{domain}"), line, view);
                    }
                }
            }
            SimEvent::AccountChanged { user, change, key } => {
                let keys: Vec<String> = view
                    .rooms()
                    .keys()
                    .find(|r| self.rooms.contains(*r))
                    .map(|r| view.account_user_ids(r, user))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|id| ids::account_key_of(id).map(str::to_owned))
                    .collect();
                if change == "erased" {
                    self.erased.insert(key.clone());
                } else {
                    // Every earlier key of the user is outdated: a server still naming one by
                    // the account name shows an outdated name.
                    for old in keys.iter().take_while(|k| *k != key) {
                        self.outdated.insert(old.clone());
                        for ((s, (mk, _)), m) in &self.mapping {
                            if mk == old && matches!(m, Mapping::Verified { .. }) {
                                self.wrong.insert((*s, old.clone()));
                            }
                        }
                    }
                }
            }
            SimEvent::AccountQuery { keys, .. } => {
                if keys.is_empty() {
                    self.erasure_polls += 1;
                } else {
                    self.query_requests += 1;
                }
                self.query_keys += keys.len() as u64;
                for key in keys {
                    *self.asks.entry((k, key.clone())).or_insert(0) += 1;
                }
            }
            SimEvent::RoomShown { room, user, delay_us, inviter } => {
                self.room_appear_us.push(*delay_us);
                let name = view.rooms().iter().find(|(_, id)| *id == room).map_or(room.as_str(), |(n, _)| n.as_str());
                self.clients.push(json!({
                    "t_ms": to_ms(t),
                    "server": view.node_name(k),
                    "client": Self::client_name(view, user),
                    "room": name,
                    "kind": "room_appeared",
                    "delay_ms": to_ms(*delay_us),
                    "inviter": inviter,
                }));
            }
            SimEvent::ClientResend { key, domain, shown, resends, rooms } => {
                for r in resends {
                    *self.resends.entry(r.clone()).or_insert(0) += u64::from(*rooms);
                }
                let line = json!({"kind": "resend", "shown": shown, "resends": resends});
                self.tell_clients(t, k, &format!("@{key}:{domain}"), line, view);
            }
            _ => {}
        }
    }

    fn on_sample(&mut self, t: SimTime, view: &mut dyn WorldView) {
        if !self.active {
            return;
        }
        // Integrated as a step function: each sample's counts hold until the next sample.
        if let Some(last) = self.last_sample {
            let dt = u128::from(t - last);
            self.divergent_event_us += u128::from(self.last_counts.0) * dt;
            self.unverified_event_us += u128::from(self.last_counts.1) * dt;
        }
        let (d, u, per_room) = self.counts(&*view);
        for (room, (rd, ru)) in per_room {
            self.rows.push(MetricRow::room(t, &room, "client_view_divergent_events", rd as f64));
            self.rows.push(MetricRow::room(t, &room, "unverified_events", ru as f64));
        }
        self.last_sample = Some(t);
        self.last_counts = (d, u);
    }

    fn finish(&mut self, view: &mut dyn WorldView, out: &mut Findings) {
        if !self.active {
            return;
        }
        let t = view.now();
        if self.last_sample != Some(t) {
            self.on_sample(t, view);
        }
        let (divergent, unverified, _) = self.counts(&*view);
        out.metrics.append(&mut self.rows);
        let mut states: BTreeMap<&str, u64> =
            ["pending", "verified", "unverified", "unknown", "erased"].into_iter().map(|s| (s, 0)).collect();
        let mut wrongly_unverified = 0u64;
        for ((_, (key, domain)), m) in &self.mapping {
            *states.entry(m.label()).or_insert(0) += 1;
            let owned = view.account_owner(key).is_some_and(|(user, _)| ids::domain_of(&user) == Some(domain.as_str()))
                && !self.outdated.contains(key)
                && !self.erased.contains(key);
            if owned && matches!(m, Mapping::Unverified { .. } | Mapping::Unknown { .. }) {
                wrongly_unverified += 1;
            }
        }
        let retries: Vec<u64> = self.asks.values().map(|n| n - 1).collect();
        let retries_total: u64 = retries.iter().sum();
        let mut m = Map::new();
        m.insert("client_view".into(), json!(self.view));
        m.insert("client_view_divergent_events".into(), json!(divergent));
        m.insert("client_view_divergent_event_seconds".into(), json!((self.divergent_event_us / 1000) as f64 / 1000.0));
        m.insert("unverified_events".into(), json!(unverified));
        m.insert("unverified_event_seconds".into(), json!((self.unverified_event_us / 1000) as f64 / 1000.0));
        m.insert("wrong_name_shown".into(), json!(self.wrong.len()));
        m.insert("time_to_verify_ms".into(), percentiles(&self.time_to_verify_us));
        m.insert("query_requests".into(), json!(self.query_requests));
        m.insert("erasure_polls".into(), json!(self.erasure_polls));
        m.insert("query_keys".into(), json!(self.query_keys));
        m.insert("mapping_states".into(), json!(states));
        m.insert("room_appear_delay_ms".into(), percentiles(&self.room_appear_us));
        m.insert("wrongly_unverified_keys".into(), json!(wrongly_unverified));
        m.insert(
            "retries_per_key".into(),
            json!({
                "mean": if retries.is_empty() { 0.0 } else { retries_total as f64 / retries.len() as f64 },
                "max": retries.iter().max().copied().unwrap_or(0),
            }),
        );
        m.insert("client_resends".into(), json!(self.resends));
        m.insert("client_records".into(), json!(self.clients.len()));
        out.summary.insert("account_keys".into(), Value::Object(m));
        out.clients.append(&mut self.clients);
    }
}
