//! One server's replica of one room: its DAG, the state after each event, its forward
//! extremities and current state, and the receipt pipeline (`auth-rules.md` §6): drop on bad
//! signatures, reject on the rules against the event's own auth events or the state before it,
//! soft-fail against the current state.

use crate::protocol::auth;
use crate::protocol::dag::{state_digest, EventIdx, RoomDag, Stage, StateMap, Status};
use crate::protocol::pdu::Pdu;
use crate::protocol::room_version::RoomVersion;
use crate::protocol::state_res;
use crate::protocol::verify;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a server decided about one received event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accepted,
    SoftFailed { reason: String },
    Rejected { stage: Stage, reason: String },
}

impl Decision {
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Accepted => "accepted",
            Decision::SoftFailed { .. } => "soft_failed",
            Decision::Rejected { .. } => "rejected",
        }
    }
}

/// Rounds of "ask again after the missing-event timeout" before a replica waits for new events.
pub const FETCH_RETRIES: u32 = 5;
/// Events a replica first asks for in one `get_missing_events` request: Synapse's `limit=10`
/// (it asks once per received event whose prev events are missing).
pub const FETCH_LIMIT_FIRST: u32 = 10;

#[derive(Debug)]
pub struct RoomReplica {
    pub room_id: String,
    pub version: &'static RoomVersion,
    pub dag: RoomDag,
    state_after: Vec<StateMap>,
    soft_failed: Vec<bool>,
    /// Forward extremities: accepted, not soft-failed events nothing else builds on yet.
    pub extremities: BTreeSet<EventIdx>,
    pub current: StateMap,
    current_digest: Option<String>,
    /// Users joined in the current state, and their servers (recomputed with it).
    joined: Vec<String>,
    joined_servers: BTreeSet<String>,
    /// Bumped whenever `joined_servers` changes (so that a caller can tell cheaply).
    joined_servers_generation: u64,
    /// Received events waiting for prev or auth events, by event ID (add with
    /// [`Self::add_pending`]).
    pub pending: BTreeMap<String, Arc<Pdu>>,
    /// Event IDs some pending event references and the DAG does not hold (as of the last
    /// [`Self::take_connected_pending`] or `add_pending`): inserting one of them may connect
    /// a pending event.
    awaited: crate::protocol::fasthash::FastSet<String>,
    /// Some pending event may be connected (see `awaited`); when false, taking is a no-op.
    maybe_connected: bool,
    /// The server each pending event came from (asked for what it is missing).
    pub pending_origin: BTreeMap<String, crate::sim::federation::ServerIdx>,
    /// Servers a `get_missing_events` request is outstanding to.
    pub fetching: BTreeSet<crate::sim::federation::ServerIdx>,
    /// Fetch rounds left before waiting for new information (reset on progress).
    pub fetch_retries_left: u32,
    /// The `limit` of the next `get_missing_events` request: [`FETCH_LIMIT_FIRST`], doubled
    /// (up to `MISSING_EVENTS_LIMIT`) after each answer that helped but left events
    /// disconnected, back to the first limit once nothing waits.
    pub fetch_limit: u32,
    /// A retry of the missing-event fetch is scheduled.
    pub retry_armed: bool,
    pub rejected_count: u64,
    pub soft_failed_count: u64,
    pub max_depth: i64,
    /// Which server each user is joined through (default: the domain of the user ID).
    pub routing: super::routing::Routing,
    /// A deliberate divergence, planted by the tests of the invariant checks.
    #[cfg(test)]
    pub(crate) plant: Option<Plant>,
}

/// A replica that departs from the rules on purpose, for the tests that show the invariant
/// checks catch a divergence.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plant {
    /// Rejects every event of this type at stage `state_before`, whatever the rules say (as a
    /// server that gets the type's required power level wrong, v11 auth rule 10, would).
    RejectType(&'static str),
}

#[cfg(test)]
impl Plant {
    fn apply(self, pdu: &Pdu, status: Status) -> Status {
        match self {
            Plant::RejectType(t) if pdu.event_type == t && status == Status::Accepted => {
                Status::Rejected { stage: Stage::StateBefore, reason: format!("planted: no rule allows {t}") }
            }
            _ => status,
        }
    }
}

impl RoomReplica {
    pub fn new(room_id: String, version: &'static RoomVersion) -> RoomReplica {
        RoomReplica {
            room_id,
            version,
            dag: RoomDag::new(version),
            state_after: Vec::new(),
            soft_failed: Vec::new(),
            extremities: BTreeSet::new(),
            current: StateMap::new(),
            current_digest: None,
            joined: Vec::new(),
            joined_servers: BTreeSet::new(),
            joined_servers_generation: 0,
            pending: BTreeMap::new(),
            awaited: Default::default(),
            maybe_connected: false,
            pending_origin: BTreeMap::new(),
            fetching: BTreeSet::new(),
            fetch_retries_left: FETCH_RETRIES,
            fetch_limit: FETCH_LIMIT_FIRST,
            retry_armed: false,
            rejected_count: 0,
            soft_failed_count: 0,
            max_depth: 0,
            routing: super::routing::Routing::default(),
            #[cfg(test)]
            plant: None,
        }
    }

    pub fn has(&self, event_id: &str) -> bool {
        self.dag.contains(event_id)
    }

    /// Whether every prev and auth event of `pdu` is held.
    pub fn is_connected(&self, pdu: &Pdu) -> bool {
        pdu.prev_events.iter().chain(&pdu.auth_events).all(|id| self.dag.contains(id))
    }

    /// Runs receipt checks 4–6 on a connected event and stores it.
    pub fn ingest(&mut self, pdu: Arc<Pdu>) -> Decision {
        debug_assert!(self.is_connected(&pdu));
        self.max_depth = self.max_depth.max(pdu.depth);
        if self.awaited.contains(&pdu.event_id) {
            self.maybe_connected = true;
        }
        let idx = self.dag.insert(pdu);
        let before = self.state_before(idx);
        let status = verify::judge(&self.dag, idx, &before, None);
        #[cfg(test)]
        let status = match self.plant {
            Some(plant) => plant.apply(self.dag.pdu(idx), status),
            None => status,
        };
        self.dag.set_status(idx, status.clone());
        let decision = match status {
            Status::Rejected { stage, reason } => Decision::Rejected { stage, reason },
            Status::Accepted => match self.soft_fail_check(idx) {
                Ok(()) => Decision::Accepted,
                Err(reason) => Decision::SoftFailed { reason },
            },
            Status::Pending => unreachable!("judged"),
        };
        let mut after = before;
        if !matches!(decision, Decision::Rejected { .. }) {
            if let Some(key) = self.dag.event(idx).state_key {
                after.insert(key, idx);
            }
        }
        self.state_after.push(after);
        self.soft_failed.push(matches!(decision, Decision::SoftFailed { .. }));
        match &decision {
            Decision::Accepted => {
                let ev = self.dag.event(idx);
                // A non-state event on top of a single extremity has that extremity's state:
                // the extremities' states are the same set as before, so is their resolution.
                let same_inputs =
                    ev.state_key.is_none() && ev.prev.len() == 1 && self.extremities.contains(&ev.prev[0]);
                for p in &self.dag.event(idx).prev {
                    self.extremities.remove(p);
                }
                self.extremities.insert(idx);
                if !same_inputs {
                    self.recompute_current();
                }
            }
            Decision::SoftFailed { .. } => self.soft_failed_count += 1,
            Decision::Rejected { .. } => self.rejected_count += 1,
        }
        decision
    }

    fn state_before(&self, idx: EventIdx) -> StateMap {
        let prev = &self.dag.event(idx).prev;
        match prev.as_slice() {
            [] => StateMap::new(),
            [one] => self.state_after[*one as usize].clone(),
            many => {
                let inputs: Vec<&StateMap> = many.iter().map(|p| &self.state_after[*p as usize]).collect();
                state_res::resolve(&self.dag, &inputs)
            }
        }
    }

    /// Receipt check 6: the rules against the current state.
    fn soft_fail_check(&self, idx: EventIdx) -> Result<(), String> {
        if self.current.is_empty() {
            return Ok(()); // the room's first events
        }
        let state = self.dag.auth_state_from(idx, &self.current);
        auth::check_state_dependent(self.version, self.dag.pdu(idx), &state).map_err(|r| r.to_string())
    }

    fn recompute_current(&mut self) {
        let inputs: Vec<&StateMap> = self.extremities.iter().map(|e| &self.state_after[*e as usize]).collect();
        let next = state_res::resolve(&self.dag, &inputs);
        // Most events (messages) leave the state as it was: nothing to recompute.
        if next.ptr_eq(&self.current) || next == self.current {
            self.current = next;
            return;
        }
        let members_changed = next.clone().diff(&self.current).any(|d| {
            let key = match d {
                imbl::ordmap::DiffItem::Add(k, _) | imbl::ordmap::DiffItem::Remove(k, _) => *k,
                imbl::ordmap::DiffItem::Update { new: (k, _), .. } => *k,
            };
            self.dag.key(key).0 == "m.room.member"
        });
        self.current = next;
        self.current_digest = None;
        if members_changed {
            self.joined = self
                .current
                .iter()
                .filter_map(|(k, e)| {
                    let (t, s) = self.dag.key(*k);
                    (t == "m.room.member"
                        && self.dag.pdu(*e).membership() == Some(crate::protocol::pdu::Membership::Join))
                    .then(|| s.to_owned())
                })
                .collect();
            let servers: BTreeSet<String> =
                self.joined.iter().filter_map(|u| self.routing.server_of(u).map(str::to_owned)).collect();
            if servers != self.joined_servers {
                self.joined_servers = servers;
                self.joined_servers_generation += 1;
            }
        }
    }

    /// Servers with a user joined in the current state (through the room's routing).
    pub fn joined_servers(&self) -> &BTreeSet<String> {
        &self.joined_servers
    }

    /// Changes whenever [`Self::joined_servers`] does.
    pub fn joined_servers_generation(&self) -> u64 {
        self.joined_servers_generation
    }

    /// The state the DAG itself determines: the resolution of the states after every event
    /// nothing builds on, soft-failed and rejected ones included (what `dag verify` reports as
    /// the final state). Servers holding the same events agree on it whatever they soft-failed;
    /// their *current* states can differ until someone builds on a soft-failed event.
    pub fn dag_state(&self) -> StateMap {
        let tips = self.dag.forward_extremities();
        let inputs: Vec<&StateMap> = tips.iter().map(|e| &self.state_after[*e as usize]).collect();
        state_res::resolve(&self.dag, &inputs)
    }

    /// Whether the current state changed since its digest was last taken.
    pub fn is_dirty(&self) -> bool {
        self.current_digest.is_none()
    }

    /// Digest of the current state (comparable across servers: it is over strings).
    pub fn current_digest(&mut self) -> String {
        if self.current_digest.is_none() {
            self.current_digest = Some(state_digest(&self.dag, &self.current));
        }
        self.current_digest.clone().expect("set above")
    }

    pub fn is_soft_failed(&self, idx: EventIdx) -> bool {
        self.soft_failed[idx as usize]
    }

    /// The current `(type, state_key)` entry.
    pub fn current_event(&self, event_type: &str, state_key: &str) -> Option<&Pdu> {
        let k = self.dag.key_index(event_type, state_key)?;
        self.current.get(&k).map(|e| self.dag.pdu(*e))
    }

    /// Users whose current membership is `join`.
    pub fn joined_members(&self) -> &[String] {
        &self.joined
    }

    /// Forward extremities as event IDs, newest (deepest) first, at most `limit`.
    pub fn prev_events_for_new(&self, limit: usize) -> Vec<String> {
        let mut ex: Vec<EventIdx> = self.extremities.iter().copied().collect();
        ex.sort_by_key(|e| (std::cmp::Reverse(self.dag.pdu(*e).depth), self.dag.pdu(*e).event_id.clone()));
        ex.truncate(limit);
        ex.into_iter().map(|e| self.dag.pdu(e).event_id.clone()).collect()
    }

    /// Pending events that are now connected, in an order that respects their dependencies
    /// (depth order, repeated until no more progress).
    pub fn take_connected_pending(&mut self) -> Vec<Arc<Pdu>> {
        // Nothing can be taken unless some pending event is connected by the DAG alone (the
        // first one taken always is), which can only have happened if a pending event arrived
        // connected or an event it awaited was stored since the last look: the common case of
        // a receipt that waits for its parents costs nothing.
        if !self.maybe_connected {
            debug_assert!(!self.pending.values().any(|p| self.is_connected(p)));
            return Vec::new();
        }
        self.maybe_connected = false;
        if !self.pending.values().any(|p| self.is_connected(p)) {
            return Vec::new();
        }
        let mut candidates: Vec<&Arc<Pdu>> = self.pending.values().collect();
        candidates.sort_by(|a, b| (a.depth, &a.event_id).cmp(&(b.depth, &b.event_id)));
        let mut taken: crate::protocol::fasthash::FastSet<&str> = Default::default();
        let mut out: Vec<Arc<Pdu>> = Vec::new();
        let mut done = vec![false; candidates.len()];
        loop {
            let mut progress = false;
            for (i, p) in candidates.iter().enumerate() {
                if done[i] {
                    continue;
                }
                let ready = p
                    .prev_events
                    .iter()
                    .chain(&p.auth_events)
                    .all(|id| self.dag.contains(id) || taken.contains(id.as_str()));
                if ready {
                    done[i] = true;
                    taken.insert(p.event_id.as_str());
                    out.push(Arc::clone(p));
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        drop(taken);
        for p in &out {
            self.pending.remove(&p.event_id);
            self.pending_origin.remove(&p.event_id);
        }
        // What the remaining pending events still wait for (the taken ones are about to be
        // stored, and an awaited event of those is what `ingest` watches for).
        self.awaited.clear();
        for p in self.pending.values() {
            for id in p.prev_events.iter().chain(&p.auth_events) {
                if !self.dag.contains(id) && !out.iter().any(|t| &t.event_id == id) {
                    self.awaited.insert(id.clone());
                }
            }
        }
        out
    }

    /// Adds a received (or locally made) event to the pending set; [`Self::take_connected_pending`]
    /// takes it once everything it references is stored.
    pub fn add_pending(&mut self, pdu: Arc<Pdu>) {
        let mut connected = true;
        for id in pdu.prev_events.iter().chain(&pdu.auth_events) {
            if !self.dag.contains(id) {
                connected = false;
                self.awaited.insert(id.clone());
            }
        }
        self.maybe_connected |= connected;
        self.pending.insert(pdu.event_id.clone(), pdu);
    }

    /// Event IDs referenced by pending events that nobody holds.
    pub fn missing_ids(&self) -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        for p in self.pending.values() {
            for id in p.prev_events.iter().chain(&p.auth_events) {
                if !self.dag.contains(id) && !self.pending.contains_key(id) {
                    out.insert(id.clone());
                }
            }
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;
    use crate::protocol::room_version::V11;
    use crate::protocol::test_support::{Ev, RoomBuilder};

    const ALICE: &str = "@alice:hs1";

    /// Adds one received event and stores whatever became connected; returns the names taken.
    fn receive(r: &mut RoomReplica, b: &RoomBuilder, name: &str) -> Vec<String> {
        r.add_pending(Arc::new(b.pdu(name).clone()));
        let taken = r.take_connected_pending();
        let names = taken.iter().map(|p| b.name_of(&p.event_id)).collect();
        for p in taken {
            r.ingest(p);
        }
        names
    }

    #[test]
    fn pending_events_are_taken_exactly_when_what_they_await_is_stored() {
        let mut b = RoomBuilder::new(&V11);
        for (name, ev) in [
            ("CREATE", Ev::create(ALICE)),
            ("MA", Ev::join(ALICE)),
            ("PL", Ev::power_levels(ALICE, serde_json::json!({"users": {ALICE: 100}}))),
            ("M1", Ev::message(ALICE, "one")),
            ("M2", Ev::message(ALICE, "two")),
            ("M3", Ev::message(ALICE, "three")),
        ] {
            b.add(name, ev);
        }
        let mut r = RoomReplica::new(b.room_id().to_owned(), &V11);
        for name in ["CREATE", "MA", "PL"] {
            assert_eq!(receive(&mut r, &b, name), [name], "in order: taken at once");
        }
        // M3 and M2 arrive before M1: both wait (M3 for M2, M2 for M1), nothing is taken.
        assert!(receive(&mut r, &b, "M3").is_empty());
        assert!(receive(&mut r, &b, "M2").is_empty());
        assert_eq!(r.pending.len(), 2);
        // Storing M1 connects M2, which connects M3: all three, in dependency order.
        assert_eq!(receive(&mut r, &b, "M1"), ["M1", "M2", "M3"]);
        assert!(r.pending.is_empty());
        // Nothing pending, nothing awaited: taking is a no-op.
        assert!(r.take_connected_pending().is_empty());
        assert_eq!(r.dag.forward_extremities().len(), 1, "one tip: M3");
    }
}
