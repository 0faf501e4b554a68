//! MSC4345 participation and MSC4348 portable accounts, measured (`summary.json`
//! `participation`, `docs/outputs.md`): moves and how long they take to reach every server,
//! events servers accepted through a key they knew was revoked, bans evaded by moving, and the
//! participation handshake. Inert when no room of the run has portable accounts and no
//! `move` or `revoke` action.
//!
//! The same measures read every design, so that `roomsim compare` can set them side by side.
//! Outside portable-account rooms a *person* is followed across accounts: a `move` there opens
//! a new account on the target server (`scenario::moved_account_id`), which the observer maps
//! back to the person; under MSC4243 an account key maps to its account name. The *key* an
//! event acts through is its MSC4348 co-signer in portable-account rooms, else the domain of
//! the account's name. A revocation is an accepted MSC4345 `revoked` participation event, or,
//! outside participation rooms, the servers the latest `m.room.server_acl` a server accepted
//! denies (the spec's ACL is a state event: a server may later resolve another one; the latest
//! accepted is the approximation, written in `docs/outputs.md`).
//!
//! The observer reads the servers' records (`action`, `decision`, `participation_accepted`) and
//! the PDUs the world holds (what each event is: its type, sender, co-signer); it never reads a
//! server's state.

use super::percentiles;
use crate::protocol::auth::participation::FINAL_LEAVE_FLAG;
use crate::protocol::pdu::{Membership, ParticipationState, Pdu, TypedContent};
use crate::protocol::room_version::RoomVersion;
use crate::protocol::{ids, server_acl, signers};
use crate::scenario::{ActionKind, Scenario};
use crate::sim::event::{SimEvent, Verdict};
use crate::sim::federation::Message;
use crate::sim::federation::ServerIdx;
use crate::sim::observe::{Findings, WorldView};
use crate::sim::time::SimTime;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What the observer knows of one event of a portable-account room.
struct EventInfo {
    pdu: Arc<Pdu>,
    /// The key it acts through (the co-signer, or the domain of the account's name).
    key: Option<String>,
    /// Whose event it is (see the module documentation).
    person: String,
}

pub struct Participation {
    active: bool,
    /// The rooms measured (by name): portable-account rooms and rooms with a move or revoke.
    version: BTreeMap<String, &'static RoomVersion>,
    /// A moved person's new account → the person (the account it started with).
    aliases: BTreeMap<String, String>,
    /// Per (server, room ID): the content of the latest `m.room.server_acl` it accepted.
    acl: BTreeMap<(ServerIdx, String), Value>,
    /// Federation requests by endpoint name, over the whole run.
    requests: BTreeMap<&'static str, u64>,
    accepted_total: u64,
    /// Per room ID: PDUs read so far (creation order), and what each is.
    read: BTreeMap<String, usize>,
    events: BTreeMap<String, EventInfo>,
    /// Per person: the key of each of its joins, in creation order (event ID, key).
    joins: BTreeMap<String, Vec<(String, String)>>,
    /// `move` actions: (account ID, room name, at).
    move_starts: Vec<(String, String, SimTime)>,
    /// Per event: when each server accepted it.
    accepted_at: BTreeMap<String, BTreeMap<ServerIdx, SimTime>>,
    /// Per server: keys whose revocation it accepted.
    revoked: BTreeMap<ServerIdx, BTreeSet<String>>,
    after_revocation: BTreeMap<ServerIdx, u64>,
    /// Per server: banned accounts → the key of their membership before the ban.
    banned: BTreeMap<ServerIdx, BTreeMap<String, Option<String>>>,
    ban_evasion: u64,
    handshake_us: Vec<u64>,
    /// Per server: accounts (senders) whose final leave (MSC4348 account-key revocation) it
    /// accepted, and the events it accepted from them after.
    final_left: BTreeMap<ServerIdx, BTreeSet<String>>,
    after_account_revocation: BTreeMap<ServerIdx, u64>,
}

impl Participation {
    pub fn new(scenario: &Scenario) -> Participation {
        let version: BTreeMap<String, &'static RoomVersion> = scenario
            .rooms
            .iter()
            .filter(|r| {
                r.version.rules().portable_accounts
                    || scenario
                        .timeline
                        .iter()
                        .any(|a| a.room == r.name && matches!(a.action, ActionKind::Move | ActionKind::Revoke))
            })
            .map(|r| (r.name.clone(), r.version.rules()))
            .collect();
        Participation {
            active: !version.is_empty(),
            version,
            aliases: scenario.moved_accounts(),
            acl: BTreeMap::new(),
            requests: BTreeMap::new(),
            accepted_total: 0,
            read: BTreeMap::new(),
            events: BTreeMap::new(),
            joins: BTreeMap::new(),
            move_starts: Vec::new(),
            accepted_at: BTreeMap::new(),
            revoked: BTreeMap::new(),
            after_revocation: BTreeMap::new(),
            banned: BTreeMap::new(),
            ban_evasion: 0,
            handshake_us: Vec::new(),
            final_left: BTreeMap::new(),
            after_account_revocation: BTreeMap::new(),
        }
    }

    /// The person behind a sender: an MSC4243 account key → its account name, a moved
    /// person's new account → the account it started with.
    fn person(&self, view: &dyn WorldView, user: &str) -> String {
        let name = account_name(view, user);
        self.aliases.get(&name).cloned().unwrap_or(name)
    }

    /// Whether server `k` had accepted the revocation of `key` in the room of `pdu`.
    fn is_revoked(&self, k: ServerIdx, pdu: &Pdu, key: &str) -> bool {
        if self.revoked.get(&k).is_some_and(|r| r.contains(key)) {
            return true;
        }
        self.acl
            .get(&(k, pdu.room_id.clone().unwrap_or_default()))
            .is_some_and(|content| server_acl::denies(content, key))
    }

    /// Reads the PDUs created since last time in every portable-account room.
    fn catch_up(&mut self, view: &dyn WorldView) {
        for (name, room_id) in view.rooms() {
            let Some(version) = self.version.get(name).copied() else { continue };
            let from = self.read.get(room_id).copied().unwrap_or(0);
            let new = view.room_pdus_since(room_id, from);
            self.read.insert(room_id.clone(), from + new.len());
            for pdu in new {
                if self.events.contains_key(&pdu.event_id) {
                    continue;
                }
                let account = account_name(view, &pdu.sender);
                let person = self.aliases.get(&account).cloned().unwrap_or_else(|| account.clone());
                let key = if version.portable_accounts {
                    signers::acting_server(version, &pdu).map(str::to_owned)
                } else {
                    ids::domain_of(&account).map(str::to_owned)
                };
                if pdu.membership() == Some(Membership::Join) && pdu.state_key.as_deref() == Some(pdu.sender.as_str()) {
                    if let Some(k) = &key {
                        self.joins.entry(person.clone()).or_default().push((pdu.event_id.clone(), k.clone()));
                    }
                }
                self.events.insert(pdu.event_id.clone(), EventInfo { pdu, key, person });
            }
        }
    }

    fn on_accepted(&mut self, t: SimTime, k: ServerIdx, event_id: &str, view: &dyn WorldView) {
        if !self.events.contains_key(event_id) {
            self.catch_up(view);
        }
        let Some(info) = self.events.get(event_id) else { return };
        let pdu = info.pdu.clone();
        let key = info.key.clone();
        let person = info.person.clone();
        self.accepted_total += 1;
        self.accepted_at.entry(event_id.to_owned()).or_default().entry(k).or_insert(t);
        // Accepted through a key this server had accepted the revocation of.
        if let Some(key) = &key {
            if self.is_revoked(k, &pdu, key) {
                *self.after_revocation.entry(k).or_insert(0) += 1;
            }
        }
        // Accepted from an account whose final leave this server had accepted.
        if self.final_left.get(&k).is_some_and(|f| f.contains(&pdu.sender)) {
            *self.after_account_revocation.entry(k).or_insert(0) += 1;
        }
        let own_leave = pdu.membership() == Some(Membership::Leave) && pdu.state_key.as_deref() == Some(&pdu.sender);
        let flagged = pdu.json.get("content").and_then(|c| c.get(FINAL_LEAVE_FLAG)).and_then(Value::as_bool);
        if own_leave && flagged == Some(true) {
            self.final_left.entry(k).or_default().insert(pdu.sender.clone());
        }
        // Accepted from a banned person through another key than its membership's at the ban.
        if let Some(Some(before)) = self.banned.get(&k).and_then(|b| b.get(&person)) {
            if key.as_deref() != Some(before.as_str()) {
                self.ban_evasion += 1;
            }
        }
        match (&pdu.content, pdu.state_key.as_deref()) {
            (TypedContent::Participation(c), Some(target)) if c.participation == Some(ParticipationState::Revoked) => {
                self.revoked.entry(k).or_default().insert(target.to_owned());
            }
            (TypedContent::Member(m), Some(target)) => match m.membership {
                Some(Membership::Ban) => {
                    let target = self.person(view, target);
                    let before = self.joins.get(&target).and_then(|j| j.last()).map(|(_, key)| key.clone());
                    self.banned.entry(k).or_default().insert(target, before);
                }
                // An unban (a leave set by someone else) ends the ban.
                Some(Membership::Leave) if target != pdu.sender => {
                    let target = self.person(view, target);
                    if let Some(b) = self.banned.get_mut(&k) {
                        b.remove(&target);
                    }
                }
                _ => {}
            },
            _ if pdu.event_type == "m.room.server_acl" && pdu.state_key.as_deref() == Some("") => {
                if let Some(content) = pdu.json.get("content") {
                    self.acl.insert((k, pdu.room_id.clone().unwrap_or_default()), content.clone());
                }
            }
            _ => {}
        }
    }
}

/// The account name behind a sender: an MSC4243 account key user ID → its owner, any other
/// user ID as it is.
fn account_name(view: &dyn WorldView, user: &str) -> String {
    ids::account_key_of(user).and_then(|k| view.account_owner(k)).map_or_else(|| user.to_owned(), |(name, _)| name)
}

/// Endpoints that ask about identities and keys rather than carry the room: server keys
/// (`/key/v2/server`, `/key/v2/query`), MSC4243's `/query/accounts`, and the MSC4348 client
/// view's domain and name checks (MSC4345 §7 `/key/v3/query`, the account lookup).
const OUTSIDE: [&str; 5] = ["key_server", "key_query", "query_accounts", "key_v3_query", "portable_accounts"];

impl crate::sim::observe::Observer for Participation {
    fn on_event(&mut self, t: SimTime, node: Option<ServerIdx>, event: &SimEvent, view: &dyn WorldView) {
        if !self.active {
            return;
        }
        let Some(k) = node else { return };
        match event {
            SimEvent::Decision { event, decision: Verdict::Accepted, .. } if view.is_honest(k) => {
                self.on_accepted(t, k, event, view);
            }
            SimEvent::Action { action, user, room, refused: None, .. } if action == "move" => {
                if let Some(version) = self.version.get(room) {
                    if version.portable_accounts {
                        for id in view.account_user_ids(room, user) {
                            self.move_starts.push((id, room.clone(), t));
                        }
                    } else {
                        let person = self.person(view, user);
                        self.move_starts.push((person, room.clone(), t));
                    }
                }
            }
            SimEvent::ParticipationAccepted { handshake_us, .. } => self.handshake_us.push(*handshake_us),
            _ => {}
        }
    }

    fn on_send(&mut self, _t: SimTime, _from: ServerIdx, _to: ServerIdx, message: &Message) {
        if let Message::Request { body, .. } = message {
            if self.active {
                *self.requests.entry(body.name()).or_insert(0) += 1;
            }
        }
    }

    fn finish(&mut self, view: &mut dyn WorldView, out: &mut Findings) {
        if !self.active {
            return;
        }
        self.catch_up(&*view);
        // A move: a join whose account's previous join was co-signed by another key.
        let mut moves = Vec::new();
        for (account, joins) in &self.joins {
            for pair in joins.windows(2) {
                if pair[0].1 != pair[1].1 {
                    moves.push((account.clone(), pair[1].0.clone()));
                }
            }
        }
        // Completion: from the move action to the move's join accepted by every honest server
        // holding the room at the end.
        let mut completion = Vec::new();
        let mut unfinished = 0u64;
        let mut without_join = 0u64;
        for (account, room, t0) in &self.move_starts {
            let Some(room_id) = view.rooms().get(room).cloned() else { continue };
            let rejoined = moves
                .iter()
                .any(|(a, e)| a == account && self.accepted_at.get(e).is_some_and(|m| m.values().any(|t| t >= t0)));
            // The multi-server reading: a participating server acts for a joined account
            // without a new join; nothing has to reach the other servers.
            if !rejoined && self.version.get(room).is_some_and(|v| v.participation_rules.multi_server) {
                without_join += 1;
                continue;
            }
            // The servers in the room at the end (with a joined user): one that left gets nothing.
            let holders: Vec<ServerIdx> = view.members(&room_id).into_iter().filter(|k| view.is_honest(*k)).collect();
            let join = moves
                .iter()
                .find(|(a, e)| a == account && self.accepted_at.get(e).is_some_and(|m| m.values().any(|t| t >= t0)));
            let done = join.and_then(|(_, e)| {
                let at = self.accepted_at.get(e)?;
                holders.iter().map(|k| at.get(k).copied()).collect::<Option<Vec<SimTime>>>()?.into_iter().max()
            });
            match done {
                Some(t) => completion.push(t - t0),
                None => unfinished += 1,
            }
        }
        let mut per_server = Map::new();
        for (k, n) in &self.after_revocation {
            per_server.insert(view.node_name(*k).to_owned(), json!(n));
        }
        let auth: u64 = self
            .version
            .keys()
            .filter_map(|name| out.rooms.get(name).and_then(|r| r.get("auth_disagreements")).and_then(Value::as_u64))
            .sum();
        let mut m = Map::new();
        m.insert("moves".into(), json!(moves.len()));
        m.insert("move_completion_ms".into(), percentiles(&completion));
        m.insert("moves_unfinished".into(), json!(unfinished));
        m.insert("moves_without_join".into(), json!(without_join));
        m.insert(
            "events_accepted_after_revocation".into(),
            json!({"total": self.after_revocation.values().sum::<u64>(), "per_server": per_server}),
        );
        m.insert("ban_evasion_by_move".into(), json!(self.ban_evasion));
        let revoked_accounts: BTreeSet<&String> = self.final_left.values().flatten().collect();
        let mut per_server = Map::new();
        for (k, n) in &self.after_account_revocation {
            per_server.insert(view.node_name(*k).to_owned(), json!(n));
        }
        m.insert("accounts_revoked".into(), json!(revoked_accounts.len()));
        m.insert(
            "events_accepted_after_account_revocation".into(),
            json!({"total": self.after_account_revocation.values().sum::<u64>(), "per_server": per_server}),
        );
        m.insert("participation_handshake_ms".into(), percentiles(&self.handshake_us));
        m.insert("auth_disagreements".into(), json!(auth));
        // The checks a design makes servers ask of the network (not the room's own traffic).
        let outside: u64 = self.requests.iter().filter(|(name, _)| OUTSIDE.contains(name)).map(|(_, n)| n).sum();
        m.insert(
            "outside_requests".into(),
            json!({
                "total": outside,
                "per_accepted_event": if self.accepted_total == 0 { 0.0 } else {
                    (outside as f64 / self.accepted_total as f64 * 1000.0).round() / 1000.0
                },
                "by_endpoint": self.requests.iter().filter(|(name, _)| OUTSIDE.contains(name))
                    .map(|(name, n)| (name.to_string(), json!(n))).collect::<Map<String, Value>>(),
            }),
        );
        if auth > 0 {
            out.notes.push(format!(
                "participation: {auth} auth disagreement(s) in portable-account rooms: correct servers never disagree \
                 unless a byzantine server or a fault (see `faults`) makes them hold different events"
            ));
        }
        out.summary.insert("participation".into(), Value::Object(m));
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::instrumented_world;
    use crate::scenario::parse_scenario;
    use crate::sim::log::LogWriter;
    use crate::sim::server::room::Plant;
    use serde_json::Value;

    /// The revocation race with `plant` on hs1's replica of the room (from the moment hs1
    /// holds it); the `participation` summary.
    fn race(plant: Option<Plant>) -> Value {
        let text = include_str!("../../../scenarios/participation-revocation-race.toml");
        let sc = parse_scenario("race.toml", text, &[]).expect("valid scenario");
        let mut world = instrumented_world(&sc, 1, LogWriter::none());
        let hs1 = world.servers().position(|s| s.name == "hs1").expect("hs1");
        let mut planted = false;
        while world.step() {
            if !planted {
                let server = world.nodes[hs1].as_server_mut().expect("a homeserver");
                for room in server.rooms.values_mut() {
                    room.plant = plant;
                    planted = true;
                }
            }
        }
        assert!(planted, "hs1 never held the room");
        let result = world.finish(true).expect("finish");
        result.summary["participation"].clone()
    }

    /// The check can fail: hs1 revokes hs2's key while partitioned from hs2 and hs3, and
    /// hs2's messages of the partition reach it after the heal. A correct hs1 soft-fails them
    /// (their auth events predate the revocation; its current state has it): 0 accepted after
    /// the revocation. A planted hs1 that never soft-fails accepts them, and the measure names
    /// hs1.
    #[test]
    fn a_server_that_skips_soft_failure_is_caught_by_events_accepted_after_revocation() {
        let honest = race(None);
        assert_eq!(honest["events_accepted_after_revocation"]["total"], 0, "{honest}");
        let planted = race(Some(Plant::NoSoftFail));
        let after = &planted["events_accepted_after_revocation"];
        let hs1 = after["per_server"]["hs1"].as_u64().unwrap_or(0);
        assert!(hs1 > 0, "the planted hs1 accepted hs2's partition messages after the revocation: {after}");
        assert_eq!(after["total"].as_u64(), Some(hs1), "only hs1 is faulty: {after}");
    }
}
