//! Test helpers: build real, signed PDUs for v11 and v12 rooms by symbolic names, and judge
//! them the way `verify::verify_dag` does.
//!
//! ```ignore
//! let mut r = RoomBuilder::new(&V11);
//! r.add("CREATE", Ev::create("@alice:hs1").ts(1));
//! r.add("MA", Ev::join("@alice:hs1").ts(2));              // prev = last event, auth = selected
//! r.add("PL", Ev::power_levels("@alice:hs1", json!({"users": {"@alice:hs1": 100}}))
//!     .prev(&["MA"]).auth(&["CREATE", "MA"]).ts(3));       // or everything explicit
//! let outcome = r.check(Ev::message("@bob:hs2", "hi"));    // judge a candidate, not added
//! ```
//!
//! Keys are deterministic: every server `S` signs with `ed25519:1`, seed = sha256(`S`). Events
//! are signed by their sender's server, plus (joins naming `join_authorised_via_users_server`)
//! the authorising user's server, unless [`Ev::signed_by`] says otherwise.
//!
//! In rooms whose version has `account_keys` (MSC4243), users are account-key user IDs made by
//! [`RoomBuilder::account`] (`@<key>:hs1`, key seed = sha256(`account key of <name>`)), and
//! events are signed by the sender's account key (`signatures[<key>]["ed25519:1"]`, MSC4243 §3)
//! plus, on a join naming `join_authorised_via_users_server`, the authorising user's account
//! key (MSC4243 §9). [`Ev::signed_by`] takes account keys and server names alike.
//!
//! When an event does not list its `auth_events`, they are selected as a creating server would
//! (`auth-rules.md` §1) from the state before the event, computed like `dag verify` does.
//! `prev_events` default to the last event added.

use super::auth::{self, Rejection};
use super::crypto::{self, KeyPair};
use super::dag::{EventIdx, RoomDag, Stage, StateMap, Status};
use super::ids;
use super::pdu::{EventKind, Pdu, PduError};
use super::room_version::RoomVersion;
use super::state_res;
use super::verify::{self, ServerKeys, Verified, VerifyOptions};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The deterministic signing key of a server (or identity server): entity = `server`,
/// key ID `ed25519:1`, seed = sha256(server name).
pub(crate) fn server_key(server: &str) -> KeyPair {
    KeyPair::from_seed(server, "ed25519:1", crypto::sha256(server.as_bytes()))
}

/// The deterministic account key of a user named `name` (MSC4243 §2): the same under every
/// domain.
pub(crate) fn account_key(name: &str) -> KeyPair {
    KeyPair::account_from_seed(crypto::sha256(format!("account key of {name}").as_bytes()))
}

/// The server of a user ID; a malformed one (format tests) is signed for by `invalid`.
fn domain(user: &str) -> String {
    ids::domain_of(user).unwrap_or("invalid").to_owned()
}

/// The description of one event to build. Names in `prev`/`auth` are symbolic names given to
/// [`RoomBuilder::add`] (a literal `$…` event ID is also accepted).
#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub event_type: String,
    pub state_key: Option<String>,
    pub sender: String,
    pub content: Value,
    pub prev: Option<Vec<String>>,
    pub auth: Option<Vec<String>>,
    pub ts: Option<i64>,
    /// Raw top-level fields set (`Some`) or removed (`None`) after the builder filled them in,
    /// before hashing and signing.
    pub overrides: Vec<(String, Option<Value>)>,
    /// Servers (or account keys) that sign; `None` = the default signers.
    pub signers: Option<Vec<String>>,
}

impl Ev {
    pub fn new(event_type: &str, state_key: Option<&str>, sender: &str, content: Value) -> Ev {
        Ev {
            event_type: event_type.into(),
            state_key: state_key.map(str::to_owned),
            sender: sender.into(),
            content,
            prev: None,
            auth: None,
            ts: None,
            overrides: Vec::new(),
            signers: None,
        }
    }
    /// A state event.
    pub fn state(event_type: &str, state_key: &str, sender: &str, content: Value) -> Ev {
        Ev::new(event_type, Some(state_key), sender, content)
    }
    /// `m.room.create`, with `room_version` filled in by the builder when absent.
    pub fn create(sender: &str) -> Ev {
        Ev::state("m.room.create", "", sender, json!({}))
    }
    pub fn create_with(sender: &str, content: Value) -> Ev {
        Ev::state("m.room.create", "", sender, content)
    }
    pub fn member(sender: &str, target: &str, membership: &str) -> Ev {
        Ev::state("m.room.member", target, sender, json!({ "membership": membership }))
    }
    pub fn join(user: &str) -> Ev {
        Ev::member(user, user, "join")
    }
    pub fn leave(user: &str) -> Ev {
        Ev::member(user, user, "leave")
    }
    pub fn knock(user: &str) -> Ev {
        Ev::member(user, user, "knock")
    }
    pub fn invite(sender: &str, target: &str) -> Ev {
        Ev::member(sender, target, "invite")
    }
    /// A leave by someone else: a kick, or an unban when the target is banned.
    pub fn kick(sender: &str, target: &str) -> Ev {
        Ev::member(sender, target, "leave")
    }
    pub fn ban(sender: &str, target: &str) -> Ev {
        Ev::member(sender, target, "ban")
    }
    pub fn power_levels(sender: &str, content: Value) -> Ev {
        Ev::state("m.room.power_levels", "", sender, content)
    }
    pub fn join_rules(sender: &str, rule: &str) -> Ev {
        Ev::state("m.room.join_rules", "", sender, json!({ "join_rule": rule }))
    }
    pub fn topic(sender: &str, topic: &str) -> Ev {
        Ev::state("m.room.topic", "", sender, json!({ "topic": topic }))
    }
    pub fn message(sender: &str, body: &str) -> Ev {
        Ev::new("m.room.message", None, sender, json!({ "msgtype": "m.text", "body": body }))
    }

    pub fn prev(mut self, names: &[&str]) -> Ev {
        self.prev = Some(names.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn auth(mut self, names: &[&str]) -> Ev {
        self.auth = Some(names.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn ts(mut self, ts: i64) -> Ev {
        self.ts = Some(ts);
        self
    }
    /// Sets `content[key]`.
    pub fn with(mut self, key: &str, value: Value) -> Ev {
        self.content.as_object_mut().expect("content is an object").insert(key.into(), value);
        self
    }
    /// Sets a raw top-level field (e.g. `room_id`) after the builder's defaults.
    pub fn set(mut self, field: &str, value: Value) -> Ev {
        self.overrides.push((field.into(), Some(value)));
        self
    }
    /// Removes a raw top-level field after the builder's defaults.
    pub fn remove(mut self, field: &str) -> Ev {
        self.overrides.push((field.into(), None));
        self
    }
    /// Exactly these servers (or account keys registered with [`RoomBuilder::account`]) sign.
    pub fn signed_by(mut self, servers: &[&str]) -> Ev {
        self.signers = Some(servers.iter().map(|s| s.to_string()).collect());
        self
    }
}

/// Why a candidate failed: the receipt stage and the rule.
pub(crate) type Checked = Result<(), (Stage, Rejection)>;

/// A room under construction: its PDUs in the order added, by name.
pub(crate) struct RoomBuilder {
    pub version: &'static RoomVersion,
    pdus: Vec<Pdu>,
    names: BTreeMap<String, String>,
    room_id: Option<String>,
    servers: BTreeSet<String>,
    last: Option<String>,
    /// Events added with [`RoomBuilder::add`]: `verify` asserts that they stay accepted.
    must_pass: BTreeSet<String>,
    /// Account keys by public key (MSC4243), registered by [`RoomBuilder::account`].
    accounts: BTreeMap<String, KeyPair>,
}

impl RoomBuilder {
    pub fn new(version: &'static RoomVersion) -> RoomBuilder {
        RoomBuilder {
            version,
            pdus: Vec::new(),
            names: BTreeMap::new(),
            room_id: None,
            servers: BTreeSet::new(),
            last: None,
            must_pass: BTreeSet::new(),
            accounts: BTreeMap::new(),
        }
    }

    /// Registers the account key of the user named `name` (see [`account_key`]) so that the
    /// builder can sign with it, and returns its account-key user ID `@<key>:<domain>`.
    pub fn account(&mut self, name: &str, domain: &str) -> String {
        let key = account_key(name);
        let user = crypto::account_user_id(&key, domain);
        self.accounts.insert(key.entity.clone(), key);
        user
    }

    /// Registers a key named `name` (seed = sha256(`key of <name>`)): an MSC4345 server key or
    /// an MSC4348 account key, its own entity name. Returns the key (URL-safe base64).
    pub fn key(&mut self, name: &str) -> String {
        let key = KeyPair::account_from_seed(crypto::sha256(format!("key of {name}").as_bytes()));
        let entity = key.entity.clone();
        self.accounts.insert(entity.clone(), key);
        entity
    }

    /// The room ID (v11: `!room:<creator's server>`; v12: `!` + the create event's hash).
    pub fn room_id(&self) -> &str {
        self.room_id.as_deref().expect("no create event yet")
    }

    /// The event ID of a named event.
    pub fn id(&self, name: &str) -> String {
        if name.starts_with('$') {
            return name.to_owned();
        }
        self.names.get(name).unwrap_or_else(|| panic!("no event named {name:?}")).clone()
    }

    /// The symbolic name of an event ID (or the ID itself when unnamed).
    pub fn name_of(&self, event_id: &str) -> String {
        self.names.iter().find(|(_, id)| *id == event_id).map_or_else(|| event_id.to_owned(), |(n, _)| n.clone())
    }

    pub fn pdu(&self, name: &str) -> &Pdu {
        let id = self.id(name);
        self.pdus.iter().find(|p| p.event_id == id).expect("named events are stored")
    }

    /// The public keys of every server that signed something here.
    pub fn server_keys(&self) -> ServerKeys {
        self.servers
            .iter()
            .map(|s| (s.clone(), BTreeMap::from([("ed25519:1".to_owned(), server_key(s).public_key())])))
            .collect()
    }

    /// Builds, hashes and signs an event without adding it.
    pub fn build(&self, ev: Ev) -> Pdu {
        self.try_build(ev).unwrap_or_else(|e| panic!("test event does not parse: {e}"))
    }

    /// [`RoomBuilder::build`], returning the format error of a malformed event.
    pub fn try_build(&self, ev: Ev) -> Result<Pdu, PduError> {
        let map = self.build_object(&ev, None);
        let map = match &ev.auth {
            Some(_) => map,
            None if ev.event_type == "m.room.create" => map,
            None => {
                // Select the auth events from the state before the event (§1): build the event
                // once to learn its auth types, then look them up.
                let provisional = Pdu::from_object(map, self.version)?;
                let auth_ids = self.select_auth_events(&provisional);
                self.build_object(&ev, Some(auth_ids))
            }
        };
        Pdu::from_object(map, self.version)
    }

    fn build_object(&self, ev: &Ev, auth_ids: Option<Vec<String>>) -> Map<String, Value> {
        let is_create = ev.event_type == "m.room.create";
        let prev: Vec<String> = match (&ev.prev, is_create) {
            (Some(p), _) => p.iter().map(|n| self.id(n)).collect(),
            (None, true) => Vec::new(),
            (None, false) => self.last.iter().map(|n| self.id(n)).collect(),
        };
        let auth: Vec<String> = match (&ev.auth, auth_ids) {
            (Some(a), _) => a.iter().map(|n| self.id(n)).collect(),
            (None, Some(ids)) => ids,
            (None, None) => Vec::new(),
        };
        let depth = prev
            .iter()
            .filter_map(|id| self.pdus.iter().find(|p| &p.event_id == id))
            .map(|p| p.depth)
            .max()
            .map_or(1, |d| d + 1);
        let mut content = ev.content.clone();
        if is_create && content.get("room_version").is_none() {
            content.as_object_mut().expect("object").insert("room_version".into(), Value::from(self.version.id));
        }
        let mut map = Map::new();
        map.insert("type".into(), Value::from(ev.event_type.clone()));
        if let Some(k) = &ev.state_key {
            map.insert("state_key".into(), Value::from(k.clone()));
        }
        map.insert("sender".into(), Value::from(ev.sender.clone()));
        let room_id = match (&self.room_id, is_create) {
            (Some(r), _) => Some(r.clone()),
            // v11: the room ID's server is the creator's; v12 create events carry none.
            (None, true) if !self.version.room_id_is_create_hash => Some(format!("!room:{}", domain(&ev.sender))),
            _ => None,
        };
        if !(is_create && self.version.room_id_is_create_hash) {
            if let Some(r) = room_id {
                map.insert("room_id".into(), Value::from(r));
            }
        }
        map.insert("content".into(), content);
        map.insert("prev_events".into(), json!(prev));
        map.insert("auth_events".into(), json!(auth));
        map.insert("depth".into(), Value::from(depth));
        map.insert("origin_server_ts".into(), Value::from(ev.ts.unwrap_or(1000 + self.pdus.len() as i64)));
        map.insert("signatures".into(), json!({}));
        for (field, value) in &ev.overrides {
            match value {
                Some(v) => map.insert(field.clone(), v.clone()),
                None => map.remove(field),
            };
        }
        crypto::set_content_hash(&mut map);
        for entity in self.signers_of(ev) {
            match self.accounts.get(&entity) {
                Some(account) => crypto::sign_event(&mut map, self.version, account),
                None => crypto::sign_event(&mut map, self.version, &server_key(&entity)),
            }
        }
        map
    }

    fn signers_of(&self, ev: &Ev) -> Vec<String> {
        if let Some(s) = &ev.signers {
            return s.clone();
        }
        // MSC4345: the sender's server key, a request's co-signer, a restricted join's
        // authoriser's server key. MSC4348: the account key only (tests name the co-signer).
        if self.version.participation {
            if self.version.portable_accounts {
                return ids::portable_key_of(&ev.sender).map(str::to_owned).into_iter().collect();
            }
            let mut out: Vec<String> = ids::server_key_of(&ev.sender).map(str::to_owned).into_iter().collect();
            for field in ["request_authorised_via_server", "join_authorised_via_users_server"] {
                let named = ev.content.get(field).and_then(Value::as_str);
                let key = named.and_then(|v| ids::as_key(v).or_else(|| ids::server_key_of(v)));
                if let Some(k) = key.filter(|k| !out.iter().any(|o| o == k)) {
                    out.push(k.to_owned());
                }
            }
            return out;
        }
        // MSC4243 §3, §9: account keys (the users' localparts) instead of servers; a sender
        // that is no registered account is signed for by its server (and fails the check).
        let signer_of = |user: &str| -> Option<String> {
            match ids::account_key_of(user).filter(|_| self.version.account_keys) {
                Some(key) if self.accounts.contains_key(key) => Some(key.to_owned()),
                _ => ids::domain_of(user).map(str::to_owned),
            }
        };
        let mut out = vec![signer_of(&ev.sender).unwrap_or_else(|| domain(&ev.sender))];
        let authoriser = ev.content.get("join_authorised_via_users_server").and_then(Value::as_str);
        if ev.content.get("membership").and_then(Value::as_str) == Some("join") {
            if let Some(d) = authoriser.and_then(signer_of) {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        out
    }

    /// The auth events a creating server would select for `pdu` from the state before it.
    fn select_auth_events(&self, pdu: &Pdu) -> Vec<String> {
        let verified = self.verify();
        let states = states_after(&verified.dag);
        let prev: Vec<EventIdx> = pdu.prev_events.iter().filter_map(|id| verified.dag.index_of(id)).collect();
        let before = resolve_prevs(&verified.dag, &prev, &states);
        let mut out: Vec<String> = Vec::new();
        for (_, key) in auth::auth_types(self.version, pdu) {
            let Some(k) = verified.dag.key_index(key.event_type, key.state_key) else { continue };
            if let Some(e) = before.get(&k) {
                let id = verified.dag.pdu(*e).event_id.clone();
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
        out
    }

    /// Adds an event without judging it (it may be one that the test expects to be rejected).
    pub fn add_unchecked(&mut self, name: &str, ev: Ev) -> Pdu {
        let pdu = self.build(ev);
        self.push(name, pdu.clone());
        pdu
    }

    /// Adds an event that must pass the receipt checks; panics with the rejection otherwise.
    pub fn add(&mut self, name: &str, ev: Ev) -> Pdu {
        let pdu = self.build(ev);
        if let Err((stage, rejection)) = self.check_pdu(&pdu) {
            panic!("setup event {name} was rejected at stage {}: {rejection}", stage.as_str());
        }
        self.must_pass.insert(pdu.event_id.clone());
        self.push(name, pdu.clone());
        pdu
    }

    /// Adds an event that must be rejected by `rule` (e.g. `"v11 7"`).
    pub fn add_rejected(&mut self, name: &str, ev: Ev, rule: &str) -> Pdu {
        let pdu = self.build(ev);
        match self.check_pdu(&pdu) {
            Ok(()) => panic!("setup event {name} was expected to be rejected by {rule} but passed"),
            Err((_, r)) => assert_eq!(r.rule, rule, "setup event {name}: {r}"),
        }
        self.push(name, pdu.clone());
        pdu
    }

    /// Adds a PDU built elsewhere (e.g. an event of another room).
    pub fn push(&mut self, name: &str, pdu: Pdu) {
        assert!(self.names.insert(name.to_owned(), pdu.event_id.clone()).is_none(), "duplicate name {name}");
        if pdu.kind == EventKind::Create && self.room_id.is_none() {
            self.room_id = Some(match &pdu.room_id {
                Some(r) => r.clone(),
                None => format!("!{}", &pdu.event_id[1..]),
            });
        }
        for server in pdu.json.get("signatures").and_then(Value::as_object).into_iter().flat_map(|s| s.keys()) {
            if !self.accounts.contains_key(server) {
                self.servers.insert(server.clone());
            }
        }
        self.last = Some(name.to_owned());
        self.pdus.push(pdu);
    }

    /// `verify::verify_dag` over every event added so far, with every signing server's key.
    /// Panics if an event added with [`RoomBuilder::add`] is not accepted (signatures included).
    pub fn verify(&self) -> Verified {
        let verified = verify::verify_dag(
            self.version,
            self.pdus.clone(),
            &VerifyOptions { keys: Some(self.server_keys()), ..Default::default() },
        );
        for id in &self.must_pass {
            let v = &verified.report.verdicts[id];
            assert_eq!(
                v.verdict,
                "accepted",
                "setup event {} was rejected by dag verify: {:?}",
                self.name_of(id),
                v.reason
            );
        }
        verified
    }

    /// Judges a candidate event (not added): builds it, then runs receipt check 4 (own
    /// `auth_events`, stage `auth_events`) and check 5 (the state before it, stage
    /// `state_before`) as `verify::judge` does, returning the first rejection with its rule.
    pub fn check(&self, ev: Ev) -> Checked {
        let pdu = self.build(ev);
        self.check_pdu(&pdu)
    }

    pub fn check_pdu(&self, pdu: &Pdu) -> Checked {
        let mut verified = self.verify();
        let states = states_after(&verified.dag);
        let dag = &mut verified.dag;
        let idx = dag.insert(Arc::new(pdu.clone()));
        assert_eq!(idx as usize, states.len(), "candidate {} is already in the room", pdu.event_id);
        assert!(dag.event(idx).missing.is_empty(), "candidate cites unknown events: {:?}", dag.event(idx).missing);
        let before = resolve_prevs(dag, &dag.event(idx).prev.clone(), &states);
        let result = verify::check_against_auth_events(dag, idx).map_err(|r| (Stage::AuthEvents, r)).and_then(|()| {
            if pdu.kind == EventKind::Create {
                return Ok(());
            }
            let state = dag.auth_state_from(idx, &before);
            auth::check_state_dependent(self.version, pdu, &state).map_err(|r| (Stage::StateBefore, r))
        });
        // The same judgement through `verify::judge`, which `dag verify` uses.
        let status = verify::judge(dag, idx, &before, None);
        match (&result, &status) {
            (Ok(()), Status::Accepted) => {}
            (Err((stage, r)), Status::Rejected { stage: s, reason }) => {
                assert_eq!((stage, r.to_string()), (s, reason.clone()), "verify::judge disagrees");
            }
            _ => panic!("verify::judge disagrees: {result:?} vs {status:?}"),
        }
        result
    }

    /// A state map made of named events (for feeding state resolution directly).
    pub fn state_of(&self, dag: &RoomDag, names: &[&str]) -> StateMap {
        let mut map = StateMap::new();
        for n in names {
            let idx = dag.index_of(&self.id(n)).unwrap_or_else(|| panic!("{n} is not in the DAG"));
            let key = dag.event(idx).state_key.unwrap_or_else(|| panic!("{n} is not a state event"));
            assert!(map.insert(key, idx).is_none(), "{n}: two events for one key");
        }
        map
    }

    /// The names of a state map's events, sorted.
    pub fn names_in(&self, dag: &RoomDag, state: &StateMap) -> Vec<String> {
        let mut out: Vec<String> = state.values().map(|e| self.name_of(&dag.pdu(*e).event_id)).collect();
        out.sort();
        out
    }
}

/// The state after every event of a judged DAG (index order), computed as `verify_dag` does.
pub(crate) fn states_after(dag: &RoomDag) -> Vec<StateMap> {
    let mut out: Vec<StateMap> = Vec::with_capacity(dag.len());
    for (idx, ev) in dag.events() {
        let mut after = resolve_prevs(dag, &ev.prev, &out);
        if ev.status == Status::Accepted {
            if let Some(k) = ev.state_key {
                after.insert(k, idx);
            }
        }
        out.push(after);
    }
    out
}

/// The state before an event with these prev events.
pub(crate) fn resolve_prevs(dag: &RoomDag, prev: &[EventIdx], states: &[StateMap]) -> StateMap {
    match prev {
        [] => StateMap::new(),
        [one] => states[*one as usize].clone(),
        many => {
            let inputs: Vec<&StateMap> = many.iter().map(|p| &states[*p as usize]).collect();
            state_res::resolve(dag, &inputs)
        }
    }
}

/// Signs a third-party-invite `signed` object with an identity server's key (§4.1).
pub(crate) fn signed_token(mxid: &str, token: &str, identity_key: &KeyPair) -> Value {
    let mut signed = json!({ "mxid": mxid, "token": token }).as_object().cloned().expect("object");
    crypto::sign_object(&mut signed, identity_key);
    Value::Object(signed)
}
