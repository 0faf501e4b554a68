//! roomsim's own room-DAG generator, for benchmarks at sizes the fixtures do not cover.
//!
//! It builds real, signed room v11/v12 PDUs (content hash, ed25519 signature by the sender's
//! server, reference-hash event IDs) the way a set of federating servers would make them:
//!
//! * every server holds its own **view** of the room: the set of events it knows (closed under
//!   `prev_events`) and its forward extremities;
//! * a server appends each event it creates to its own extremities (`prev_events` = its
//!   extremities, at most [`GenParams::max_prev`], newest first), and every so often pulls a peer's
//!   view and merges the peer's extremities into its own;
//! * **netsplits** cut the servers into two groups for a while; servers only sync within their
//!   group, so the DAG forks and conflicting state changes accumulate on both sides until the
//!   split heals and the next merges resolve them;
//! * the state a server creates against is the state before its new event as any receiver
//!   computes it (resolution of the states after the chosen prev events), and `auth_events` are
//!   selected from that state, so honest events are accepted by every receiver;
//! * a small share of events is deliberately bad (non-members and banned users speaking,
//!   state changes without the power for them, stale auth events) so that rejections at both
//!   auth stages are exercised.
//!
//! The whole DAG lives in one [`RoomDag`] on the generator side; server views are index sets
//! over it. Events are judged with [`verify::judge`] as they are made, with the same state
//! before that `dag verify` computes, so [`GeneratedDag::accepted`] is what a verifier will say.
//!
//! [`generate_large_state`] makes a Matrix-HQ-sized room instead: a long, mostly linear chain
//! of joins (100k members by default) with a few short forks that are merged back.
//!
//! Everything is deterministic in the seed (ChaCha8). Signing keys are
//! `KeyPair::from_seed(server, "ed25519:k1", sha256(server name))`.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use roomsim_engine::protocol::crypto::{self, KeyPair};
use roomsim_engine::protocol::dag::{EventIdx, RoomDag, StateMap, Status};
use roomsim_engine::protocol::json;
use roomsim_engine::protocol::pdu::{Membership, Pdu};
use roomsim_engine::protocol::room_version::{RoomVersion, V11, V12};
use roomsim_engine::protocol::state_res;
use roomsim_engine::protocol::verify;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// Parameters of [`generate`].
#[derive(Debug, Clone)]
pub struct GenParams {
    /// Number of events to make (the DAG has exactly this many).
    pub events: usize,
    /// Number of servers taking part.
    pub servers: usize,
    /// Local users per server.
    pub users_per_server: usize,
    /// Room version: 11 or 12.
    pub room_version: u8,
    pub seed: u64,
    /// Most `prev_events` an event may have (the spec's limit is 20).
    pub max_prev: usize,
    /// Chance that the acting server first pulls one peer's view.
    pub sync_prob: f64,
    /// Chance, per event, that a netsplit starts (when none is running).
    pub split_prob: f64,
    /// Length of a netsplit, in events, drawn uniformly from this range.
    pub split_len: (usize, usize),
    /// Share of deliberately bad events.
    pub bad_rate: f64,
}

impl GenParams {
    /// Defaults: 4 users per server, room v11, 20 prev events at most, sync chance 0.35,
    /// netsplits of 50–400 events starting with chance 0.004 per event, 1 % bad events.
    pub fn new(events: usize, servers: usize) -> GenParams {
        GenParams {
            events,
            servers: servers.max(1),
            users_per_server: 4,
            room_version: 11,
            seed: 1,
            max_prev: 20,
            sync_prob: 0.35,
            split_prob: 0.004,
            split_len: (50, 400),
            bad_rate: 0.01,
        }
    }
    pub fn version(&self) -> &'static RoomVersion {
        version_for(self.room_version)
    }
}

/// Parameters of [`generate_large_state`].
#[derive(Debug, Clone)]
pub struct LargeStateParams {
    /// Joined members at the end (one `m.room.member` join each).
    pub users: usize,
    /// Servers the members are spread over (round robin).
    pub servers: usize,
    pub room_version: u8,
    pub seed: u64,
    /// A fork every this many joins.
    pub fork_every: usize,
}

impl LargeStateParams {
    /// 100 000 members on 1 000 servers, room v11, a fork every 10 000 joins.
    pub fn matrix_hq() -> LargeStateParams {
        LargeStateParams { users: 100_000, servers: 1_000, room_version: 11, seed: 7, fork_every: 10_000 }
    }
}

fn version_for(v: u8) -> &'static RoomVersion {
    match v {
        11 => &V11,
        12 => &V12,
        other => panic!("room version {other} is not supported by the generator (11 or 12)"),
    }
}

/// What the generator made: the PDUs in creation order (a topological order) and the servers'
/// public keys.
pub struct GeneratedDag {
    pub version: &'static RoomVersion,
    pub room_id: String,
    pub pdus: Vec<Pdu>,
    /// Server name → unpadded base64 ed25519 public key of `ed25519:k1`.
    pub server_keys: BTreeMap<String, String>,
    /// Events the generator's own judge accepted / rejected.
    pub accepted: usize,
    pub rejected: usize,
    /// Events with more than one prev event.
    pub merges: usize,
    /// Netsplits that happened.
    pub splits: usize,
    /// Entries of the state after the last event made.
    pub final_state_len: usize,
}

impl GeneratedDag {
    /// One canonical-JSON PDU per line.
    pub fn write_jsonl(&self, out: &mut impl Write) -> io::Result<()> {
        for pdu in &self.pdus {
            out.write_all(&json::object_to_canonical_bytes(&pdu.json))?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The `--keys` document: `{"server_keys": {server: {"ed25519:k1": key}}, ...}`.
    pub fn keys_json(&self) -> String {
        let keys: Map<String, Value> =
            self.server_keys.iter().map(|(s, k)| (s.clone(), json!({ "ed25519:k1": k }))).collect();
        let doc = json!({
            "server_keys": keys,
            "room_id": self.room_id,
            "room_version": self.version.id,
            "events": self.pdus.len(),
            "generator": "roomsim-benches",
        });
        serde_json::to_string_pretty(&doc).expect("serialisable") + "\n"
    }

    /// Writes `jsonl` and `keys`.
    pub fn write_files(&self, jsonl: &Path, keys: &Path) -> io::Result<()> {
        let mut out = io::BufWriter::new(std::fs::File::create(jsonl)?);
        self.write_jsonl(&mut out)?;
        out.flush()?;
        std::fs::write(keys, self.keys_json())
    }
}

pub fn server_name(n: usize) -> String {
    format!("srv{n}.bench.example")
}

pub fn user_id(server: usize, k: usize) -> String {
    format!("@user{k}:{}", server_name(server))
}

/// The signing key of a server: seed = sha256(server name).
pub fn server_key(name: &str) -> KeyPair {
    KeyPair::from_seed(name, "ed25519:k1", crypto::sha256(name.as_bytes()))
}

/// Shared event-making machinery: the global DAG, the states after every event, keys, clock.
struct Builder {
    version: &'static RoomVersion,
    room_id: String,
    dag: RoomDag,
    after: Vec<StateMap>,
    keys: Vec<KeyPair>,
    clock: i64,
    accepted: usize,
    rejected: usize,
    merges: usize,
}

impl Builder {
    fn new(version: &'static RoomVersion, servers: usize, rng: &mut ChaCha8Rng) -> Builder {
        let room_id = if version.room_id_is_create_hash {
            String::new() // set from the create event
        } else {
            let local: String = (0..18).map(|_| (b'a' + rng.gen_range(0..26u8)) as char).collect();
            format!("!{local}:{}", server_name(0))
        };
        Builder {
            version,
            room_id,
            dag: RoomDag::new(version),
            after: Vec::new(),
            keys: (0..servers).map(|s| server_key(&server_name(s))).collect(),
            clock: 1_750_000_000_000,
            accepted: 0,
            rejected: 0,
            merges: 0,
        }
    }

    fn lookup(&self, state: &StateMap, event_type: &str, state_key: &str) -> Option<EventIdx> {
        self.dag.key_index(event_type, state_key).and_then(|k| state.get(&k).copied())
    }

    fn membership(&self, state: &StateMap, user: &str) -> Option<Membership> {
        self.lookup(state, "m.room.member", user).and_then(|e| self.dag.pdu(e).membership())
    }

    /// Power level of `user` in `state` (v12 creators: `i64::MAX`).
    fn power(&self, state: &StateMap, user: &str) -> i64 {
        if self.version.privileged_creators {
            if let Some(c) = self.dag.create() {
                if self.dag.pdu(c).sender == user {
                    return i64::MAX;
                }
            }
        }
        match self.lookup(state, "m.room.power_levels", "").and_then(|e| self.dag.pdu(e).power_levels()) {
            Some(pl) => pl.users.get(user).copied().unwrap_or_else(|| pl.users_default()),
            None => 0,
        }
    }

    /// The auth types of an event we are about to make (`auth-rules.md` §1; the generator never
    /// makes third-party invites or restricted joins).
    fn auth_events_from(
        &self,
        state: &StateMap,
        event_type: &str,
        sender: &str,
        state_key: Option<&str>,
        content: &Value,
    ) -> Vec<EventIdx> {
        if event_type == "m.room.create" {
            return Vec::new();
        }
        let mut keys: Vec<(&str, &str)> = Vec::with_capacity(5);
        if self.version.create_in_auth_events {
            keys.push(("m.room.create", ""));
        }
        keys.push(("m.room.power_levels", ""));
        keys.push(("m.room.member", sender));
        if event_type == "m.room.member" {
            let target = state_key.unwrap_or("");
            keys.push(("m.room.member", target));
            if matches!(content.get("membership").and_then(Value::as_str), Some("join" | "invite" | "knock")) {
                keys.push(("m.room.join_rules", ""));
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        for (t, s) in keys {
            if let Some(e) = self.lookup(state, t, s) {
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
        out
    }

    /// The state before an event with these prev events (what every receiver computes).
    fn state_at(&self, prevs: &[EventIdx]) -> StateMap {
        match prevs {
            [] => StateMap::new(),
            [one] => self.after[*one as usize].clone(),
            many => {
                let inputs: Vec<&StateMap> = many.iter().map(|p| &self.after[*p as usize]).collect();
                state_res::resolve(&self.dag, &inputs)
            }
        }
    }

    /// Builds, signs, inserts and judges one event. `auth` overrides the auth events selected
    /// from `before` (for deliberately bad events).
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        rng: &mut ChaCha8Rng,
        server: usize,
        sender: &str,
        prevs: &[EventIdx],
        before: &StateMap,
        event_type: &str,
        state_key: Option<&str>,
        content: Value,
        auth: Option<Vec<EventIdx>>,
    ) -> EventIdx {
        self.clock += rng.gen_range(1..2_000);
        let auth = auth.unwrap_or_else(|| self.auth_events_from(before, event_type, sender, state_key, &content));
        let depth = prevs.iter().map(|p| self.dag.pdu(*p).depth).max().unwrap_or(0) + 1;
        let ids = |list: &[EventIdx]| -> Value {
            Value::Array(list.iter().map(|e| Value::String(self.dag.pdu(*e).event_id.clone())).collect())
        };
        let mut map = Map::new();
        map.insert("auth_events".into(), ids(&auth));
        map.insert("prev_events".into(), ids(prevs));
        map.insert("content".into(), content);
        map.insert("depth".into(), json!(depth));
        map.insert("origin_server_ts".into(), json!(self.clock));
        let is_v12_create = event_type == "m.room.create" && self.version.room_id_is_create_hash;
        if !is_v12_create {
            map.insert("room_id".into(), Value::String(self.room_id.clone()));
        }
        map.insert("sender".into(), Value::String(sender.to_owned()));
        if let Some(k) = state_key {
            map.insert("state_key".into(), Value::String(k.to_owned()));
        }
        map.insert("type".into(), Value::String(event_type.to_owned()));
        crypto::set_content_hash(&mut map);
        crypto::sign_event(&mut map, self.version, &self.keys[server]);
        let pdu = Pdu::from_object(map, self.version).expect("the generator makes well-formed PDUs");
        if is_v12_create {
            self.room_id = format!("!{}", &pdu.event_id[1..]);
        }
        let idx = self.dag.insert(Arc::new(pdu));
        assert_eq!(idx as usize, self.after.len(), "the generator never makes duplicates");
        let status = verify::judge(&self.dag, idx, before, None);
        let applies = status == Status::Accepted && self.dag.event(idx).state_key.is_some();
        match status {
            Status::Accepted => self.accepted += 1,
            _ => self.rejected += 1,
        }
        if prevs.len() > 1 {
            self.merges += 1;
        }
        self.dag.set_status(idx, status);
        let after = if applies {
            let mut m = before.clone();
            m.insert(self.dag.event(idx).state_key.expect("state event"), idx);
            m
        } else {
            before.clone()
        };
        self.after.push(after);
        idx
    }

    /// create, creator join, power levels, join rules (public), history visibility: a chain.
    fn initial_events(&mut self, rng: &mut ChaCha8Rng) -> EventIdx {
        let creator = user_id(0, 0);
        let mut prev: Vec<EventIdx> = Vec::new();
        let mut step = |b: &mut Builder, t: &str, sk: Option<&str>, content: Value| {
            let before = b.state_at(&prev);
            let idx = b.add(rng, 0, &creator, &prev, &before, t, sk, content, None);
            prev = vec![idx];
            idx
        };
        step(self, "m.room.create", Some(""), json!({ "room_version": self.version.id }));
        step(self, "m.room.member", Some(&creator), json!({ "membership": "join", "displayname": "creator" }));
        let users = if self.version.privileged_creators { json!({}) } else { json!({ creator.clone(): 100 }) };
        step(
            self,
            "m.room.power_levels",
            Some(""),
            json!({
                "ban": 50, "kick": 50, "redact": 50, "invite": 0,
                "events_default": 0, "state_default": 50, "users_default": 0,
                "events": { "m.room.power_levels": 100, "m.room.name": 50, "m.room.topic": 50,
                            "m.room.join_rules": 100, "m.room.history_visibility": 100 },
                "users": users,
            }),
        );
        step(self, "m.room.join_rules", Some(""), json!({ "join_rule": "public" }));
        step(self, "m.room.history_visibility", Some(""), json!({ "history_visibility": "shared" }))
    }

    fn finish(self, splits: usize) -> GeneratedDag {
        let final_state_len = self.after.last().map_or(0, |s| s.len());
        let server_keys = self.keys.iter().map(|k| (k.entity.clone(), k.public_key_b64())).collect();
        let pdus = self.dag.events().map(|(_, e)| (*e.pdu).clone()).collect();
        GeneratedDag {
            version: self.version,
            room_id: self.room_id,
            pdus,
            server_keys,
            accepted: self.accepted,
            rejected: self.rejected,
            merges: self.merges,
            splits,
            final_state_len,
        }
    }
}

/// A server's view: the events it knows (a bit set closed under `prev_events`) and its
/// forward extremities.
#[derive(Clone, Default)]
struct View {
    known: Vec<u64>,
    ext: Vec<EventIdx>,
}

impl View {
    fn knows(&self, e: EventIdx) -> bool {
        self.known.get(e as usize / 64).is_some_and(|w| w & (1 << (e % 64)) != 0)
    }
    fn learn(&mut self, e: EventIdx) {
        let w = e as usize / 64;
        if self.known.len() <= w {
            self.known.resize(w + 1, 0);
        }
        self.known[w] |= 1 << (e % 64);
    }
    /// Merges `other` into `self`: union of the known sets; the extremities of the union are
    /// the extremities of either side that the other side does not know as a strict ancestor.
    fn merge(&mut self, other: &View) {
        let mut ext: Vec<EventIdx> =
            self.ext.iter().copied().filter(|e| !other.knows(*e) || other.ext.contains(e)).collect();
        for e in &other.ext {
            if (!self.knows(*e) || self.ext.contains(e)) && !ext.contains(e) {
                ext.push(*e);
            }
        }
        if self.known.len() < other.known.len() {
            self.known.resize(other.known.len(), 0);
        }
        for (a, b) in self.known.iter_mut().zip(&other.known) {
            *a |= *b;
        }
        ext.sort_unstable();
        self.ext = ext;
    }
    /// After creating `idx` on top of `prevs`.
    fn append(&mut self, idx: EventIdx, prevs: &[EventIdx]) {
        self.ext.retain(|e| !prevs.contains(e));
        self.ext.push(idx);
        self.learn(idx);
    }
    /// The prev events of the next event: every extremity, or the newest `max` of them.
    fn choose_prevs(&self, max: usize) -> Vec<EventIdx> {
        let mut p = self.ext.clone();
        p.sort_unstable();
        if p.len() > max {
            p.drain(..p.len() - max);
        }
        p
    }
}

/// What the acting server does next.
#[derive(Debug, Clone, Copy)]
enum Action {
    Join,
    Message,
    Topic,
    Name,
    PowerChange,
    Kick,
    Ban,
    Unban,
    Leave,
    BadNonMember,
    BadNoPower,
    BadStaleAuth,
}

/// Generates a room DAG as described in the module documentation.
pub fn generate(params: &GenParams) -> GeneratedDag {
    let version = params.version();
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let n_servers = params.servers;
    let ups = params.users_per_server.max(1);
    let mut b = Builder::new(version, n_servers, &mut rng);
    let last = b.initial_events(&mut rng);
    let mut views = vec![View::default(); n_servers];
    for e in 0..=last {
        views[0].learn(e);
    }
    views[0].ext = vec![last];
    let creator = user_id(0, 0);
    let users: Vec<Vec<String>> = (0..n_servers).map(|s| (0..ups).map(|k| user_id(s, k)).collect()).collect();
    let all_users: Vec<&str> = users.iter().flatten().map(String::as_str).collect();

    // Netsplit: group of each server, and the event count at which it heals.
    let mut split: Option<(Vec<bool>, usize)> = None;
    let mut splits = 0;
    let mut topic_n = 0u64;
    let mut guard = 0usize;
    while b.dag.len() < params.events {
        guard += 1;
        assert!(guard < params.events * 50 + 10_000, "generator made no progress");
        let step = b.dag.len();
        if let Some((_, until)) = &split {
            if step >= *until {
                split = None;
            }
        } else if n_servers > 1 && rng.gen_bool(params.split_prob) {
            let mut side: Vec<bool> = (0..n_servers).map(|_| rng.gen_bool(0.5)).collect();
            side[0] = false;
            side[1] = true;
            let len = rng.gen_range(params.split_len.0..=params.split_len.1.max(params.split_len.0));
            split = Some((side, step + len));
            splits += 1;
        }
        let same_side = |a: usize, c: usize| !matches!(&split, Some((side, _)) if side[a] != side[c]);

        let s = rng.gen_range(0..n_servers);
        // A server that knows nothing yet joins through a resident server (make_join/send_join:
        // it takes the resident's view); otherwise it sometimes pulls a peer's view.
        let needs_resident = views[s].ext.is_empty();
        if needs_resident || (n_servers > 1 && rng.gen_bool(params.sync_prob)) {
            let peers: Vec<usize> =
                (0..n_servers).filter(|t| *t != s && !views[*t].ext.is_empty() && same_side(s, *t)).collect();
            match peers.choose(&mut rng) {
                Some(t) => {
                    let other = views[*t].clone();
                    views[s].merge(&other);
                }
                None if needs_resident => continue,
                None => {}
            }
        }
        let prevs = views[s].choose_prevs(params.max_prev);
        let state = b.state_at(&prevs);

        // Local users by membership, and their power.
        let local = &users[s];
        let mut joined: Vec<&str> = Vec::new();
        let mut can_join: Vec<&str> = Vec::new();
        let mut outside: Vec<&str> = Vec::new();
        let mut banned_local: Vec<&str> = Vec::new();
        for u in local {
            match b.membership(&state, u) {
                Some(Membership::Join) => joined.push(u),
                Some(Membership::Ban) => {
                    banned_local.push(u);
                    outside.push(u)
                }
                _ => {
                    can_join.push(u);
                    outside.push(u)
                }
            }
        }
        let pl_event = b.lookup(&state, "m.room.power_levels", "");
        let power_of = |u: &str| b.power(&state, u);
        let mods: Vec<&str> = joined.iter().copied().filter(|u| power_of(u) >= 50).collect();
        let admins: Vec<&str> = joined.iter().copied().filter(|u| power_of(u) >= 100).collect();
        let weak: Vec<&str> = joined.iter().copied().filter(|u| power_of(u) < 50).collect();

        let mut choices: Vec<(Action, f64)> = Vec::with_capacity(12);
        if !can_join.is_empty() {
            choices.push((Action::Join, if joined.is_empty() { 100.0 } else { 25.0 }));
        }
        if !joined.is_empty() {
            choices.push((Action::Message, 60.0));
            choices.push((Action::Leave, 1.5));
        }
        if !mods.is_empty() {
            choices.push((Action::Topic, 2.5));
            choices.push((Action::Name, 1.5));
            choices.push((Action::Kick, 1.0));
            choices.push((Action::Ban, 0.8));
            choices.push((Action::Unban, 0.8));
        }
        if !admins.is_empty() && pl_event.is_some() {
            choices.push((Action::PowerChange, 3.0));
        }
        if rng.gen_bool(params.bad_rate) {
            choices.clear();
            if !outside.is_empty() {
                choices.push((Action::BadNonMember, 1.0));
            }
            if !weak.is_empty() {
                choices.push((Action::BadNoPower, 1.0));
            }
            if !banned_local.is_empty() {
                choices.push((Action::BadStaleAuth, 2.0));
            }
        }
        let Ok((action, _)) = choices.choose_weighted(&mut rng, |c| c.1) else { continue };
        let pick = |rng: &mut ChaCha8Rng, list: &[&str]| -> String { list.choose(rng).expect("non-empty").to_string() };

        // Targets anywhere in the room, for moderation.
        let member_targets = |want: Membership, below: i64| -> Vec<&str> {
            all_users
                .iter()
                .copied()
                .filter(|u| *u != creator && b.membership(&state, u) == Some(want) && power_of(u) < below.min(50))
                .collect()
        };
        let made = match *action {
            Action::Join => {
                let u = pick(&mut rng, &can_join);
                Some(b.add(
                    &mut rng,
                    s,
                    &u,
                    &prevs,
                    &state,
                    "m.room.member",
                    Some(&u),
                    json!({ "membership": "join" }),
                    None,
                ))
            }
            Action::Message => {
                let u = pick(&mut rng, &joined);
                let body = format!("message {} from {u}", b.dag.len());
                Some(b.add(
                    &mut rng,
                    s,
                    &u,
                    &prevs,
                    &state,
                    "m.room.message",
                    None,
                    json!({ "msgtype": "m.text", "body": body }),
                    None,
                ))
            }
            Action::Leave => {
                let u = pick(&mut rng, &joined);
                Some(b.add(
                    &mut rng,
                    s,
                    &u,
                    &prevs,
                    &state,
                    "m.room.member",
                    Some(&u),
                    json!({ "membership": "leave" }),
                    None,
                ))
            }
            Action::Topic | Action::Name => {
                let u = pick(&mut rng, &mods);
                topic_n += 1;
                let (t, c) = match action {
                    Action::Topic => ("m.room.topic", json!({ "topic": format!("topic {topic_n} by {u}") })),
                    _ => ("m.room.name", json!({ "name": format!("room name {topic_n}") })),
                };
                Some(b.add(&mut rng, s, &u, &prevs, &state, t, Some(""), c, None))
            }
            Action::Kick | Action::Ban | Action::Unban => {
                let u = pick(&mut rng, &mods);
                let mine = power_of(&u);
                let (want, membership) = match action {
                    Action::Kick => (Membership::Join, "leave"),
                    Action::Ban => (Membership::Join, "ban"),
                    _ => (Membership::Ban, "leave"),
                };
                let targets: Vec<&str> = member_targets(want, mine).into_iter().filter(|t| *t != u).collect();
                if targets.is_empty() {
                    None
                } else {
                    let t = pick(&mut rng, &targets);
                    Some(b.add(
                        &mut rng,
                        s,
                        &u,
                        &prevs,
                        &state,
                        "m.room.member",
                        Some(&t),
                        json!({ "membership": membership }),
                        None,
                    ))
                }
            }
            Action::PowerChange => {
                let u = pick(&mut rng, &admins);
                let mine = power_of(&u);
                let pl = b.dag.pdu(pl_event.expect("checked")).json["content"].clone();
                let mut content = pl;
                let candidates: Vec<&str> = all_users
                    .iter()
                    .copied()
                    .filter(|t| *t != u && b.membership(&state, t) == Some(Membership::Join) && power_of(t) < mine)
                    .filter(|t| !(version.privileged_creators && *t == creator))
                    .collect();
                if candidates.is_empty() {
                    None
                } else {
                    let t = pick(&mut rng, &candidates);
                    let users_map = content["users"].as_object_mut().expect("power levels users");
                    let admins_now = users_map.values().filter(|v| v.as_i64() == Some(100)).count();
                    let current = power_of(&t);
                    let new_level = if current >= 50 {
                        0
                    } else if admins_now < 3 && mine >= 100 && rng.gen_bool(0.25) {
                        100
                    } else {
                        50
                    };
                    if new_level == 0 {
                        users_map.remove(t.as_str());
                    } else {
                        users_map.insert(t.clone(), json!(new_level));
                    }
                    if rng.gen_bool(0.1) {
                        // Occasionally retune a named level too.
                        let level = [25, 50][rng.gen_range(0..2)];
                        content["events"]["m.room.topic"] = json!(level);
                    }
                    Some(b.add(&mut rng, s, &u, &prevs, &state, "m.room.power_levels", Some(""), content, None))
                }
            }
            Action::BadNonMember => {
                let u = pick(&mut rng, &outside);
                Some(b.add(
                    &mut rng,
                    s,
                    &u,
                    &prevs,
                    &state,
                    "m.room.message",
                    None,
                    json!({ "msgtype": "m.text", "body": "let me in" }),
                    None,
                ))
            }
            Action::BadNoPower => {
                let u = pick(&mut rng, &weak);
                Some(b.add(
                    &mut rng,
                    s,
                    &u,
                    &prevs,
                    &state,
                    "m.room.topic",
                    Some(""),
                    json!({ "topic": format!("unauthorised by {u}") }),
                    None,
                ))
            }
            Action::BadStaleAuth => {
                // A banned user speaks citing its old join (found among the ban's auth events):
                // passes against its own auth events, fails against the state before.
                let u = pick(&mut rng, &banned_local);
                let ban = b.lookup(&state, "m.room.member", &u).expect("banned user has a member event");
                let old_join = b.dag.event(ban).auth.iter().copied().find(|a| {
                    let p = b.dag.pdu(*a);
                    p.state_key.as_deref() == Some(u.as_str()) && p.membership() == Some(Membership::Join)
                });
                match old_join {
                    None => None,
                    Some(join) => {
                        let mut auth = b.auth_events_from(&state, "m.room.message", &u, None, &json!({}));
                        auth.retain(|a| b.dag.pdu(*a).state_key.as_deref() != Some(u.as_str()));
                        auth.push(join);
                        Some(b.add(
                            &mut rng,
                            s,
                            &u,
                            &prevs,
                            &state,
                            "m.room.message",
                            None,
                            json!({ "msgtype": "m.text", "body": "still here" }),
                            Some(auth),
                        ))
                    }
                }
            }
        };
        if let Some(idx) = made {
            views[s].append(idx, &prevs);
        }
    }
    b.finish(splits)
}

/// Generates a Matrix-HQ-sized room: `users` joins in a mostly linear chain, with a fork every
/// `fork_every` joins (2–3 branches of 2–8 joins, one of them also changing the topic, merged
/// back by the next join).
pub fn generate_large_state(params: &LargeStateParams) -> GeneratedDag {
    let version = version_for(params.room_version);
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let servers = params.servers.max(1);
    let mut b = Builder::new(version, servers, &mut rng);
    let mut tip = vec![b.initial_events(&mut rng)];
    let mut next_user = 1usize; // user 0 of server 0 is the creator
    let join = |b: &mut Builder, rng: &mut ChaCha8Rng, prevs: &[EventIdx], before: &StateMap, n: usize| -> EventIdx {
        let server = n % servers;
        let user = user_id(server, n / servers);
        b.add(rng, server, &user, prevs, before, "m.room.member", Some(&user), json!({ "membership": "join" }), None)
    };
    let mut since_fork = 0usize;
    let mut topic_n = 0;
    while next_user < params.users {
        let before = b.state_at(&tip);
        if since_fork >= params.fork_every && params.users - next_user > 30 {
            since_fork = 0;
            let base = tip.clone();
            let base_state = before;
            let mut tips = Vec::new();
            for branch in 0..rng.gen_range(2..=3) {
                let mut prev = base.clone();
                let mut state = base_state.clone();
                if branch == 0 {
                    topic_n += 1;
                    let creator = user_id(0, 0);
                    let idx = b.add(
                        &mut rng,
                        0,
                        &creator,
                        &prev,
                        &state,
                        "m.room.topic",
                        Some(""),
                        json!({ "topic": format!("fork {topic_n}") }),
                        None,
                    );
                    prev = vec![idx];
                    state = b.after[idx as usize].clone();
                }
                for _ in 0..rng.gen_range(2..=8) {
                    let idx = join(&mut b, &mut rng, &prev, &state, next_user);
                    next_user += 1;
                    prev = vec![idx];
                    state = b.after[idx as usize].clone();
                }
                tips.extend(prev);
            }
            tip = tips;
            continue;
        }
        let idx = join(&mut b, &mut rng, &tip, &before, next_user);
        next_user += 1;
        since_fork += 1;
        tip = vec![idx];
    }
    b.finish(0)
}

/// The generated DAG for `params`, cached as files under `dir` (`NAME.jsonl`, `NAME.keys.json`).
/// Returns the two paths.
pub fn cached(
    dir: &Path,
    name: &str,
    make: impl FnOnce() -> GeneratedDag,
) -> io::Result<(std::path::PathBuf, std::path::PathBuf)> {
    std::fs::create_dir_all(dir)?;
    let jsonl = dir.join(format!("{name}.jsonl"));
    let keys = dir.join(format!("{name}.keys.json"));
    if !(jsonl.exists() && keys.exists()) {
        let dag = make();
        let tmp = dir.join(format!("{name}.jsonl.tmp"));
        dag.write_files(&tmp, &keys)?;
        std::fs::rename(&tmp, &jsonl)?;
    }
    Ok((jsonl, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomsim_engine::protocol::verify::{verify_dag, VerifyOptions};

    #[test]
    fn small_dag_verifies_as_generated() {
        for v in [11, 12] {
            let mut p = GenParams::new(600, 5);
            p.room_version = v;
            p.split_prob = 0.02;
            p.bad_rate = 0.05;
            let g = generate(&p);
            assert_eq!(g.pdus.len(), 600);
            assert!(g.merges > 0, "v{v}: no merges");
            assert!(g.rejected > 0, "v{v}: no rejections");
            let text = {
                let mut out = Vec::new();
                g.write_jsonl(&mut out).unwrap();
                String::from_utf8(out).unwrap()
            };
            let (version, parsed) = verify::parse_lines(&text).unwrap();
            let keys = verify::parse_server_keys(&g.keys_json()).unwrap();
            let pdus = parsed.into_iter().map(|(_, p)| p).collect();
            let out = verify_dag(version, pdus, &VerifyOptions { keys: Some(keys), ..Default::default() });
            assert_eq!(out.report.events, 600);
            assert_eq!(out.report.accepted, g.accepted, "v{v}: verifier and generator disagree");
            assert_eq!(out.report.rejected, g.rejected);
        }
    }

    #[test]
    fn deterministic() {
        let p = GenParams::new(300, 4);
        let a = generate(&p);
        let b = generate(&p);
        assert_eq!(a.pdus.last().unwrap().event_id, b.pdus.last().unwrap().event_id);
    }

    #[test]
    fn large_state_small() {
        let g = generate_large_state(&LargeStateParams {
            users: 2_000,
            servers: 50,
            room_version: 11,
            seed: 3,
            fork_every: 400,
        });
        assert_eq!(g.rejected, 0);
        assert!(g.merges >= 3);
        assert!(g.final_state_len >= 2_000);
    }
}
