//! Who should be in a room, who is, and why someone the scenario meant to join is not.
//!
//! - [`UnionRoom`]: the room's **union DAG** (every PDU any server created, the DAG
//!   `rooms/<room>.pdus.jsonl` holds), judged as `dag verify` judges it and fed incrementally in
//!   creation order (an event is created after its `prev_events` and `auth_events`, so creation
//!   order is a topological order). Its resolved state's `m.room.member` events with
//!   `membership: join` (Client-Server API, "Room membership"; server-server API, "Joining
//!   rooms") name the users who are in the room; their servers (the user ID's domain) are the
//!   servers that should be.
//! - [`Intentions`]: the users the scenario means to be joined at the end: the room's creator
//!   and `members`, then its timeline in order (`join` adds the user, `leave` removes them,
//!   `kick` and `ban` remove the target); workload churn leaves and rejoins, so it changes no
//!   intention.
//! - [`JoinTrouble`]: per user, the last thing that went wrong with their joining, from the log:
//!   a refused action, a join that failed after trying its candidate residents (a `join_failed`
//!   record), an action blocked at a server that was down, a join event rejected.

use crate::protocol::pdu::{Membership, Pdu};
use crate::protocol::room_version::RoomVersion;
use crate::scenario::{ActionKind, Scenario};
use crate::sim::federation::ServerIdx;
use crate::sim::server::routing::default_server_of;
use crate::sim::server::RoomReplica;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The union DAG of one room and the membership it resolves to.
pub struct UnionRoom {
    replica: RoomReplica,
    /// PDUs of the room taken so far (an index into the world's creation order).
    pub taken: usize,
    /// Taken but not yet connected (a referenced event not yet taken).
    waiting: Vec<Arc<Pdu>>,
    /// The state must be resolved again (a state event was added since).
    stale: bool,
    joined_users: BTreeSet<String>,
    /// MSC4348: joined account → the server its membership's co-signer names
    /// (`unverified_domain` of that key's participation in the resolved state).
    bound: BTreeMap<String, String>,
    /// Bumped whenever `joined_users` and `bound` are recomputed: what was derived from them
    /// at an equal generation is still current (the measures skip recomputing it).
    pub generation: u64,
}

impl UnionRoom {
    pub fn new(room_id: &str, version: &'static RoomVersion) -> UnionRoom {
        UnionRoom {
            replica: RoomReplica::new(room_id.to_owned(), version),
            taken: 0,
            waiting: Vec::new(),
            stale: false,
            joined_users: BTreeSet::new(),
            bound: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Adds newly created PDUs (in creation order).
    pub fn take(&mut self, pdus: Vec<Arc<Pdu>>) {
        self.taken += pdus.len();
        for pdu in pdus {
            if self.replica.has(&pdu.event_id) {
                continue; // a co-signed invite or redacted copy shares its original's event ID
            }
            self.waiting.push(pdu);
        }
        // Usually everything connects on the first pass; a later PDU may connect an earlier one.
        loop {
            let before = self.waiting.len();
            let mut still = Vec::new();
            for pdu in std::mem::take(&mut self.waiting) {
                if self.replica.has(&pdu.event_id) {
                    continue;
                }
                if self.replica.is_connected(&pdu) {
                    self.stale |= pdu.state_key.is_some();
                    self.replica.ingest(pdu);
                } else {
                    still.push(pdu);
                }
            }
            self.waiting = still;
            if self.waiting.is_empty() || self.waiting.len() == before {
                break;
            }
        }
    }

    /// Users whose membership in the union DAG's resolved state is `join`.
    pub fn joined_users(&mut self) -> &BTreeSet<String> {
        if self.stale {
            self.stale = false;
            self.generation += 1;
            let state = self.replica.dag_state();
            let dag = &self.replica.dag;
            self.joined_users = state
                .iter()
                .filter_map(|(k, e)| {
                    let (t, user) = dag.key(*k);
                    (t == "m.room.member" && dag.pdu(*e).membership() == Some(Membership::Join))
                        .then(|| user.to_owned())
                })
                .collect();
            if self.replica.version.portable_accounts {
                self.bound = portable_bindings(&self.replica, &state, &self.joined_users);
            }
        }
        &self.joined_users
    }

    /// The server `user` is in the room through (after [`Self::joined_users`]): its user ID's
    /// domain, or (MSC4348) the server of the key that co-signed its membership.
    pub fn server_of<'a>(&'a self, user: &'a str) -> Option<&'a str> {
        if self.replica.version.portable_accounts {
            return self.bound.get(user).map(String::as_str);
        }
        default_server_of(user)
    }

    /// The servers of the joined users (brought up to date first), through `index`.
    pub fn joined_servers(&mut self, index: &BTreeMap<String, ServerIdx>) -> BTreeSet<ServerIdx> {
        self.joined_users();
        self.servers_of(&self.joined_users, index)
    }

    /// [`servers_of`] through this room's bindings.
    pub fn servers_of(&self, users: &BTreeSet<String>, index: &BTreeMap<String, ServerIdx>) -> BTreeSet<ServerIdx> {
        users.iter().filter_map(|u| self.server_of(u).and_then(|s| index.get(s).copied())).collect()
    }

    /// The membership event of `user` in the union DAG's resolved state (after [`Self::joined_users`]).
    pub fn membership_event(&self, user: &str) -> Option<&Pdu> {
        let dag = &self.replica.dag;
        let k = dag.key_index("m.room.member", user)?;
        let state = self.replica.dag_state();
        state.get(&k).map(|e| dag.pdu(*e))
    }

    /// Whether the union DAG rejected `event_id` (by the auth rules, as every honest server must).
    pub fn rejected(&self, event_id: &str) -> bool {
        self.replica.dag.index_of(event_id).is_some_and(|i| self.replica.dag.event(i).is_rejected())
    }
}

/// MSC4348 §8.3: each joined account's server, from the co-signer of its membership and that
/// key's participation (`unverified_domain`) in `state`.
fn portable_bindings(
    replica: &RoomReplica,
    state: &crate::protocol::dag::StateMap,
    joined: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let dag = &replica.dag;
    let lookup = |t: &str, s: &str| dag.key_index(t, s).and_then(|k| state.get(&k)).map(|e| dag.pdu(*e));
    let mut out = BTreeMap::new();
    for user in joined {
        let Some(member) = lookup("m.room.member", user) else { continue };
        let Some(key) = crate::protocol::signers::acting_server(replica.version, member) else { continue };
        if let Some(crate::protocol::pdu::TypedContent::Participation(c)) =
            lookup("m.server.participation", key).map(|p| &p.content)
        {
            if let Some(d) = &c.unverified_domain {
                out.insert(user.clone(), d.clone());
            }
        }
    }
    out
}

/// Servers (by index) of a set of users, through `index` (server name → node index).
pub fn servers_of(users: &BTreeSet<String>, index: &BTreeMap<String, ServerIdx>) -> BTreeSet<ServerIdx> {
    users.iter().filter_map(|u| default_server_of(u).and_then(|s| index.get(s).copied())).collect()
}

/// Per room name: where the scenario's `move`s leave accounts of portable-account rooms (user →
/// the server of its last move there). Outside those rooms a move is a new account, which
/// [`intentions`] lists itself.
pub fn moved_to(scenario: &Scenario) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut timeline: Vec<_> = scenario.timeline.iter().filter(|a| a.action == ActionKind::Move).collect();
    timeline.sort_by_key(|a| a.at_us);
    for a in timeline {
        let portable = scenario.room(&a.room).is_some_and(|r| r.version.rules().portable_accounts);
        if let (true, Some(server)) = (portable, &a.server) {
            out.entry(a.room.clone()).or_default().insert(a.user.clone(), server.clone());
        }
    }
    out
}

/// The servers (by index) the users of `users` are meant to be on: each user's domain, or
/// where `moved` says it moved.
pub fn intended_servers(
    users: &BTreeSet<String>,
    moved: Option<&BTreeMap<String, String>>,
    index: &BTreeMap<String, ServerIdx>,
) -> BTreeSet<ServerIdx> {
    users
        .iter()
        .filter_map(|u| {
            let server = moved.and_then(|m| m.get(u)).map(String::as_str).or_else(|| default_server_of(u));
            server.and_then(|s| index.get(s).copied())
        })
        .collect()
}

/// Per room name: the users the scenario means to be joined at the end, in order of intention.
pub fn intentions(scenario: &Scenario) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for room in &scenario.rooms {
        let set = out.entry(room.name.clone()).or_default();
        set.insert(room.creator.clone());
        set.extend(room.members.iter().cloned());
    }
    let mut timeline: Vec<_> = scenario.timeline.iter().collect();
    timeline.sort_by_key(|a| a.at_us); // stable: same-time actions keep file order
    for a in timeline {
        let Some(set) = out.get_mut(&a.room) else { continue };
        match a.action {
            ActionKind::Join => {
                set.insert(a.user.clone());
            }
            ActionKind::Leave | ActionKind::FinalLeave => {
                set.remove(&a.user);
            }
            ActionKind::Kick | ActionKind::Ban => {
                if let Some(t) = &a.target {
                    set.remove(t);
                }
            }
            // Outside portable-account rooms the person's new account is meant to join (the
            // old one stays); a banned person's new account too (nothing stops it).
            ActionKind::Move => {
                let portable = scenario.room(&a.room).is_some_and(|r| r.version.rules().portable_accounts);
                if let (false, Some(server)) = (portable, &a.server) {
                    set.insert(crate::scenario::moved_account_id(&a.user, server));
                }
            }
            _ => {}
        }
    }
    out
}

/// What went wrong with users' joins, as the log tells it (the latest per user and room).
#[derive(Debug, Default)]
pub struct JoinTrouble {
    /// (room name, user) → reason.
    by_user: BTreeMap<(String, String), String>,
    /// (room ID, event ID) → user, for join events created (to read their decisions).
    join_events: BTreeMap<String, (String, String)>,
    pub joins_failed: u64,
}

impl JoinTrouble {
    /// A join action as a server handled it.
    pub fn action(&mut self, room: &str, user: &str, event: Option<&str>, refused: Option<&str>) {
        if let Some(why) = refused {
            self.joins_failed += 1;
            self.by_user.insert((room.to_owned(), user.to_owned()), format!("join refused: {why}"));
        }
        if let Some(e) = event {
            self.join_events.insert(e.to_owned(), (room.to_owned(), user.to_owned()));
        }
    }

    /// A remote join ended without joining (a `join_failed` record).
    pub fn join_failed(&mut self, room: &str, user: &str, reason: &str) {
        self.joins_failed += 1;
        self.by_user.insert((room.to_owned(), user.to_owned()), format!("join failed: {reason}"));
    }

    /// A join action that could not reach its server.
    pub fn blocked(&mut self, room: &str, user: &str, reason: &str) {
        self.joins_failed += 1;
        self.by_user.insert((room.to_owned(), user.to_owned()), format!("join action blocked: {reason}"));
    }

    /// Why `user` (of server `server`) is not joined to `room` at the end, given the union DAG:
    /// what went wrong with their last join attempt, else their membership event.
    pub fn why_missing(&self, room: &str, user: &str, union: &UnionRoom) -> String {
        if let Some((e, _)) =
            self.join_events.iter().rev().find(|(e, (r, u))| r == room && u == user && union.rejected(e))
        {
            return format!("join event {e} rejected by the auth rules");
        }
        if let Some(why) = self.by_user.get(&(room.to_owned(), user.to_owned())) {
            return why.clone();
        }
        if let Some(m) = union.membership_event(user) {
            let what = match m.membership() {
                Some(Membership::Ban) => Some("banned"),
                Some(Membership::Leave) if m.sender != user => Some("kicked"),
                Some(Membership::Leave) => Some("left"),
                Some(Membership::Invite) => Some("invited, never joined"),
                _ => None,
            };
            if let Some(what) = what {
                return format!("{what} ({} by {})", m.event_id, m.sender);
            }
        }
        "no join completed and no failure was logged (still pending at the end?)".to_owned()
    }
}
