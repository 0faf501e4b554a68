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
    /// Stored as an outlier (part of a state or an auth chain given from elsewhere, without its
    /// prev events): it passed the rules against its own auth events, the only ones an outlier
    /// gets (see `verify::judge_outlier`).
    Outlier,
    SoftFailed {
        reason: String,
    },
    Rejected {
        stage: Stage,
        reason: String,
    },
}

impl Decision {
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Accepted => "accepted",
            Decision::Outlier => "outlier",
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
    /// The state before each timeline event judged against a given state (a join from
    /// `send_join`, a gap bridged with `/state_ids`): its prev events are not in the timeline,
    /// so that state cannot be recomputed from theirs, and `/state_ids` or a `send_join` answer
    /// at it must give what it was judged against.
    given_before: BTreeMap<EventIdx, StateMap>,
    soft_failed: Vec<bool>,
    /// Events held only as outliers: usable as auth events, never forward extremities, not in
    /// the timeline, no state of their own (their `state_after` entry is empty and unused).
    outlier: Vec<bool>,
    /// Prev event IDs some timeline event names (held or not).
    cited: crate::protocol::fasthash::FastSet<String>,
    /// Timeline events no timeline event names as a prev event: what the DAG state resolves.
    timeline_tips: BTreeSet<EventIdx>,
    /// Forward extremities, as Synapse's `_calculate_new_extremities` keeps them: accepted, not
    /// soft-failed timeline events nothing builds on yet, with no soft-failed or rejected
    /// ancestors an accepted event built past (see [`Self::remove_before_rejected`]).
    pub extremities: BTreeSet<EventIdx>,
    pub current: StateMap,
    current_digest: Option<String>,
    /// Recent resolutions of sets of timeline events' states (see [`ResolveMemo`]).
    resolved: ResolveMemo,
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
    /// A gap being bridged with `/state_ids` (`join.mode = "state"`).
    pub bridge: crate::sim::federation::state_ids::Bridge,
    pub rejected_count: u64,
    pub soft_failed_count: u64,
    pub max_depth: i64,
    /// Which server each user is joined through (default: the domain of the user ID).
    pub routing: super::routing::Routing,
    /// Events an outside check at receipt rejects although the rules may allow them (the
    /// divergent `key_validity_url` design, `identity.rs`), with the reason.
    pub(crate) outside_rejections: BTreeMap<String, String>,
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
    /// Never soft-fails: accepts every event that passes the auth rules, whatever the current
    /// state says (a server that skips the spec's soft-failure check, `auth-rules` step 6).
    NoSoftFail,
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
            given_before: BTreeMap::new(),
            soft_failed: Vec::new(),
            outlier: Vec::new(),
            cited: Default::default(),
            timeline_tips: BTreeSet::new(),
            extremities: BTreeSet::new(),
            current: StateMap::new(),
            current_digest: None,
            resolved: ResolveMemo::default(),
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
            bridge: Default::default(),
            rejected_count: 0,
            soft_failed_count: 0,
            max_depth: 0,
            routing: super::routing::Routing::default(),
            outside_rejections: BTreeMap::new(),
            #[cfg(test)]
            plant: None,
        }
    }

    /// An outside check rejects `event_id` when it is judged (see `outside_rejections`).
    pub(crate) fn reject_outside(&mut self, event_id: &str, reason: &str) {
        self.outside_rejections.insert(event_id.to_owned(), reason.to_owned());
    }

    pub fn has(&self, event_id: &str) -> bool {
        self.dag.contains(event_id)
    }

    /// Whether the event is held as a timeline event (not only as an outlier): Synapse's
    /// `have_events_in_timeline`, what a prev event must be for an event to be judged from it.
    pub fn in_timeline(&self, event_id: &str) -> bool {
        self.dag.index_of(event_id).is_some_and(|i| !self.outlier[i as usize])
    }

    pub fn is_outlier(&self, idx: EventIdx) -> bool {
        self.outlier[idx as usize]
    }

    /// What `pdu` waits for before it can be judged as a timeline event: prev events not in the
    /// timeline, auth events not held at all.
    pub fn lacks<'a>(&'a self, pdu: &'a Pdu) -> impl Iterator<Item = &'a String> + 'a {
        let prevs = pdu.prev_events.iter().filter(|id| !self.in_timeline(id));
        prevs.chain(pdu.auth_events.iter().filter(|id| !self.dag.contains(id)))
    }

    /// Whether every prev event of `pdu` is in the timeline and every auth event held.
    pub fn is_connected(&self, pdu: &Pdu) -> bool {
        self.lacks(pdu).next().is_none()
    }

    /// Runs receipt checks 4–6 on a connected event and stores it.
    pub fn ingest(&mut self, pdu: Arc<Pdu>) -> Decision {
        debug_assert!(self.is_connected(&pdu));
        self.store_timeline(pdu, None, true)
    }

    /// Stores an event whose state before is given (the joined room's state from `send_join`,
    /// or a gap's state resolved from `/state_ids` answers) and judges it against that state;
    /// it becomes a timeline event although its prev events may not be held.
    pub fn ingest_with_state(&mut self, pdu: Arc<Pdu>, before: StateMap) -> Decision {
        self.store_timeline(pdu, Some(before), true)
    }

    /// Stores a backfilled event whose prev events are in the timeline: judged as any timeline
    /// event but not soft-failed and never a forward extremity (Synapse persists backfilled
    /// events with `backfilled=True`: history, not news).
    pub fn ingest_backfilled(&mut self, pdu: Arc<Pdu>) -> Decision {
        debug_assert!(self.is_connected(&pdu));
        self.store_timeline(pdu, None, false)
    }

    /// Stores an event as an outlier, judged against its own auth events only (its auth events
    /// must be held).
    pub fn store_outlier(&mut self, pdu: Arc<Pdu>) -> Decision {
        debug_assert!(pdu.auth_events.iter().all(|a| self.dag.contains(a)) && !self.dag.contains(&pdu.event_id));
        if self.awaited.contains(&pdu.event_id) {
            self.maybe_connected = true;
        }
        let idx = self.dag.insert(pdu);
        let status = verify::judge_outlier(&self.dag, idx);
        self.dag.set_status(idx, status.clone());
        self.state_after.push(StateMap::new());
        self.soft_failed.push(false);
        self.outlier.push(true);
        match status {
            Status::Rejected { stage, reason } => Decision::Rejected { stage, reason },
            _ => Decision::Outlier,
        }
    }

    /// A timeline event: new, or an outlier de-outliered now that its prev events are in the
    /// timeline (Synapse re-persists a pulled outlier as a timeline event).
    fn store_timeline(&mut self, pdu: Arc<Pdu>, given: Option<StateMap>, live: bool) -> Decision {
        self.max_depth = self.max_depth.max(pdu.depth);
        if self.awaited.contains(&pdu.event_id) {
            self.maybe_connected = true;
        }
        let promoted = self.dag.index_of(&pdu.event_id);
        let idx = self.dag.insert(pdu);
        let across_gap = given.is_some();
        let (before, status) = match given {
            Some(before) => {
                let status = verify::judge_with_state(&self.dag, idx, &before);
                self.given_before.insert(idx, before.clone());
                (before, status)
            }
            None => {
                let before = self.state_before(idx);
                self.remember_before(idx, &before);
                let status = if self.dag.event(idx).missing.is_empty() {
                    verify::judge(&self.dag, idx, &before, None)
                } else {
                    // A de-outliered event: its prev events arrived after it.
                    verify::judge_with_state(&self.dag, idx, &before)
                };
                (before, status)
            }
        };
        #[cfg(test)]
        let status = match self.plant {
            Some(plant) => plant.apply(self.dag.pdu(idx), status),
            None => status,
        };
        let status = match (status, self.outside_rejections.get(&self.dag.pdu(idx).event_id)) {
            (Status::Accepted, Some(reason)) => Status::Rejected { stage: Stage::OutsideCheck, reason: reason.clone() },
            (status, _) => status,
        };
        self.dag.set_status(idx, status.clone());
        let decision = match status {
            Status::Rejected { stage, reason } => Decision::Rejected { stage, reason },
            Status::Accepted if !live => Decision::Accepted,
            Status::Accepted => match self.soft_fail_check(idx, across_gap.then_some(&before)) {
                Ok(()) => Decision::Accepted,
                #[cfg(test)]
                Err(_) if self.plant == Some(Plant::NoSoftFail) => Decision::Accepted,
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
        let soft_failed = matches!(decision, Decision::SoftFailed { .. });
        if promoted.is_some() {
            // A remembered resolution never read an outlier's (empty) state, but the event's
            // status changed too: forget them all rather than reason about which read it.
            self.resolved.clear();
            self.state_after[idx as usize] = after;
            self.soft_failed[idx as usize] = soft_failed;
            self.outlier[idx as usize] = false;
        } else {
            self.state_after.push(after);
            self.soft_failed.push(soft_failed);
            self.outlier.push(false);
        }
        self.note_timeline(idx);
        match &decision {
            Decision::Accepted if live => {
                let ev = self.dag.event(idx);
                // Its prev events held now, by ID: an event stored first as an outlier (before
                // its prev events arrived) has a DAG prev list of what was held back then.
                let prev: Vec<EventIdx> = if ev.missing.is_empty() {
                    ev.prev.clone()
                } else {
                    ev.pdu.prev_events.iter().filter_map(|id| self.dag.index_of(id)).collect()
                };
                // A non-state event on top of a single extremity has that extremity's state:
                // the extremities' states are the same set as before, so is their resolution.
                let same_inputs = ev.state_key.is_none() && prev.len() == 1 && self.extremities.contains(&prev[0]);
                let old_extremities = same_inputs.then(|| ResolveMemo::key(self.extremities.iter().copied()));
                for p in &prev {
                    self.extremities.remove(p);
                }
                self.remove_before_rejected(&prev);
                let extends = !self.cited.contains(&self.dag.pdu(idx).event_id);
                if extends {
                    self.extremities.insert(idx);
                }
                if !same_inputs || !extends {
                    // (An event already cited by a stored one, e.g. a parent arriving after
                    // its child, takes `prev` out of the extremities without replacing it:
                    // the inputs changed.)
                    self.recompute_current();
                } else if let (Some(old), false) = (old_extremities, across_gap) {
                    // The new extremities' states are the old ones' with `prev`'s state
                    // replaced by an equal one (this event's, which is `prev`'s: accepted,
                    // not a state event, one prev, judged from it): the same list of maps, so
                    // the same resolution, whatever event indices name them.
                    if let Some(known) = self.resolved.get(&old).cloned() {
                        self.resolved.insert(ResolveMemo::key(self.extremities.iter().copied()), known);
                    }
                }
            }
            Decision::Accepted | Decision::Outlier => {}
            Decision::SoftFailed { .. } => self.soft_failed_count += 1,
            Decision::Rejected { .. } => self.rejected_count += 1,
        }
        decision
    }

    /// Synapse's `_calculate_new_extremities` after an accepted event built on `prev`: the
    /// soft-failed or rejected ones among them, their prev events (whatever their verdict), and
    /// so on up the graph while the events met are soft-failed or rejected
    /// (`_get_prevs_before_rejected`), leave the extremities; otherwise the parent of a
    /// soft-failed event stays a "dangling extremity" that every new event cites.
    fn remove_before_rejected(&mut self, prev: &[EventIdx]) {
        let mut todo: Vec<EventIdx> = prev.iter().copied().filter(|p| self.is_soft_failed_or_rejected(*p)).collect();
        let mut seen: BTreeSet<EventIdx> = todo.iter().copied().collect();
        while let Some(e) = todo.pop() {
            self.extremities.remove(&e);
            for &p in &self.dag.event(e).prev {
                self.extremities.remove(&p);
                if self.is_soft_failed_or_rejected(p) && seen.insert(p) {
                    todo.push(p);
                }
            }
        }
    }

    fn is_soft_failed_or_rejected(&self, idx: EventIdx) -> bool {
        self.soft_failed[idx as usize] || self.dag.event(idx).is_rejected()
    }

    /// Keeps [`Self::timeline_tips`] as `idx` joins the timeline.
    fn note_timeline(&mut self, idx: EventIdx) {
        let pdu = self.dag.event(idx).pdu.clone();
        for p in &pdu.prev_events {
            self.cited.insert(p.clone());
            if let Some(i) = self.dag.index_of(p) {
                self.timeline_tips.remove(&i);
            }
        }
        if !self.cited.contains(&pdu.event_id) {
            self.timeline_tips.insert(idx);
        }
    }

    /// The state before a timeline event: its prev events' states after, resolved when several
    /// (prev events are found by ID: a de-outliered event's may have been stored after it).
    fn state_before(&self, idx: EventIdx) -> StateMap {
        if let Some(given) = self.given_before.get(&idx) {
            return given.clone();
        }
        let pdu = self.dag.pdu(idx);
        let prev: Vec<EventIdx> = if self.dag.event(idx).missing.is_empty() {
            self.dag.event(idx).prev.clone()
        } else {
            pdu.prev_events.iter().filter_map(|id| self.dag.index_of(id)).collect()
        };
        match prev.as_slice() {
            [] => StateMap::new(),
            [one] => self.state_after[*one as usize].clone(),
            many => self.resolve_states_of(many).0,
        }
    }

    /// The resolution of the states after `events` (timeline events), from the memo when it
    /// holds this set; the key to remember it under when it did not.
    fn resolve_states_of(&self, events: &[EventIdx]) -> (StateMap, Option<Vec<EventIdx>>) {
        let key = ResolveMemo::key(events.iter().copied());
        if let Some(hit) = self.resolved.get(&key) {
            return (hit.clone(), None);
        }
        let inputs: Vec<&StateMap> = events.iter().map(|p| &self.state_after[*p as usize]).collect();
        (state_res::resolve(&self.dag, &inputs), Some(key))
    }

    /// Replaces a held event by its redacted form (see `RoomDag::replace_pdu`). The rules and
    /// state resolution read the new form from now on, so remembered resolutions are dropped.
    pub fn replace_pdu(&mut self, idx: EventIdx, pdu: Arc<Pdu>) {
        self.dag.replace_pdu(idx, pdu);
        self.resolved.clear();
    }

    /// Remembers the resolution `state_before` just made for `idx`, when it resolved several
    /// prev events' states (the next event built on the same extremities reads it again).
    fn remember_before(&mut self, idx: EventIdx, before: &StateMap) {
        if self.given_before.contains_key(&idx) {
            return;
        }
        let prev: Vec<EventIdx> = if self.dag.event(idx).missing.is_empty() {
            self.dag.event(idx).prev.clone()
        } else {
            self.dag.pdu(idx).prev_events.iter().filter_map(|id| self.dag.index_of(id)).collect()
        };
        if prev.len() > 1 {
            let key = ResolveMemo::key(prev.into_iter());
            if self.resolved.get(&key).is_none() {
                self.resolved.insert(key, before.clone());
            }
        }
    }

    /// The state before a held timeline event (what `send_join` answers with for the join).
    pub fn state_before_event(&self, idx: EventIdx) -> StateMap {
        self.state_before(idx)
    }

    /// The state after a held timeline event (what `/state_ids` at one of its children starts
    /// from).
    pub fn state_after_event(&self, idx: EventIdx) -> &StateMap {
        &self.state_after[idx as usize]
    }

    /// Receipt check 6: the rules against the current state. For an event across a gap (its
    /// prev events not in the timeline, judged against `gap_state`), the "current state" is the
    /// resolution of the forward extremities' states and the event's state before, as Synapse's
    /// `_check_for_soft_fail` does when the event has missing prev events (a server that was
    /// away must not soft-fail what it simply has not seen, yet a ban it holds still counts).
    fn soft_fail_check(&self, idx: EventIdx, gap_state: Option<&StateMap>) -> Result<(), String> {
        if self.current.is_empty() {
            return Ok(()); // the room's first events
        }
        let across_gap;
        let current = match gap_state {
            Some(before) => {
                let mut inputs: Vec<&StateMap> =
                    self.extremities.iter().map(|e| &self.state_after[*e as usize]).collect();
                inputs.push(before);
                across_gap = state_res::resolve(&self.dag, &inputs);
                &across_gap
            }
            None => &self.current,
        };
        let state = self.dag.auth_state_from(idx, current);
        auth::check_state_dependent(self.version, self.dag.pdu(idx), &state).map_err(|r| r.to_string())
    }

    fn recompute_current(&mut self) {
        let extremities: Vec<EventIdx> = self.extremities.iter().copied().collect();
        let (next, fresh) = self.resolve_states_of(&extremities);
        if let Some(key) = fresh {
            self.resolved.insert(key, next.clone());
        }
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
            let t = self.dag.key(key).0;
            t == "m.room.member" || (self.version.participation && t == "m.server.participation")
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
            if self.version.portable_accounts {
                self.bind_portable_accounts();
            }
            let mut servers: BTreeSet<String> =
                self.joined.iter().filter_map(|u| self.routing.server_of(u).map(str::to_owned)).collect();
            if self.version.participation {
                // MSC4345: a server that requested or holds participation is a participant
                // (it hears of its acceptance and of the room), whether or not a user of it
                // is joined yet.
                servers.extend(self.participant_domains());
            }
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

    /// The state the DAG itself determines: the resolution of the states after every timeline
    /// event no timeline event builds on, soft-failed and rejected ones included (what `dag verify` reports as
    /// the final state). Servers holding the same events agree on it whatever they soft-failed;
    /// their *current* states can differ until someone builds on a soft-failed event.
    pub fn dag_state(&self) -> StateMap {
        // Usually the tips are the forward extremities, whose resolution is remembered.
        let tips: Vec<EventIdx> = self.timeline_tips.iter().copied().collect();
        self.resolve_states_of(&tips).0
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

    /// Digest of `state` (a state of this replica's DAG): the current state's cached digest
    /// when `state` is the current state (the DAG state usually is), else computed.
    pub fn digest_of(&self, state: &StateMap) -> String {
        match &self.current_digest {
            Some(d) if state.ptr_eq(&self.current) => d.clone(),
            _ => state_digest(&self.dag, state),
        }
    }

    pub fn is_soft_failed(&self, idx: EventIdx) -> bool {
        self.soft_failed[idx as usize]
    }

    /// MSC4348 §8.3 (routing): each joined account is on the server whose key co-signed its
    /// current membership, found by that key's `unverified_domain` (MSC4345 §3.2: "for
    /// routing").
    fn bind_portable_accounts(&mut self) {
        let domains = self.key_domains();
        for user in self.joined.clone() {
            let Some(member) = self.current_event("m.room.member", &user) else { continue };
            let key = crate::protocol::signers::acting_server(self.version, member).map(str::to_owned);
            if let Some(domain) = key.and_then(|k| domains.get(&k).cloned()) {
                self.routing.bind(&user, &domain);
            }
        }
    }

    /// Server key → the `unverified_domain` its current participation names.
    fn key_domains(&self) -> BTreeMap<String, String> {
        self.current_of_type("m.server.participation")
            .into_iter()
            .filter_map(|(k, p)| match &p.content {
                crate::protocol::pdu::TypedContent::Participation(c) => c.unverified_domain.clone().map(|d| (k, d)),
                _ => None,
            })
            .collect()
    }

    /// Domains of the keys whose current participation is `requested` or `accepted`.
    fn participant_domains(&self) -> Vec<String> {
        use crate::protocol::pdu::{ParticipationState, TypedContent};
        self.current_of_type("m.server.participation")
            .into_iter()
            .filter_map(|(_, p)| match &p.content {
                TypedContent::Participation(c)
                    if matches!(
                        c.participation,
                        Some(ParticipationState::Requested | ParticipationState::Accepted)
                    ) =>
                {
                    c.unverified_domain.clone()
                }
                _ => None,
            })
            .collect()
    }

    /// The current state's events of `event_type`, by state key.
    pub fn current_of_type(&self, event_type: &str) -> Vec<(String, &Pdu)> {
        self.current
            .iter()
            .filter_map(|(k, e)| {
                let (t, s) = self.dag.key(*k);
                (t == event_type).then(|| (s.to_owned(), self.dag.pdu(*e)))
            })
            .collect()
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
                let ready = self.lacks(p).all(|id| taken.contains(id.as_str()));
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
        let mut awaited = std::mem::take(&mut self.awaited);
        awaited.clear();
        for p in self.pending.values() {
            for id in self.lacks(p) {
                if !out.iter().any(|t| &t.event_id == id) {
                    awaited.insert(id.clone());
                }
            }
        }
        self.awaited = awaited;
        out
    }

    /// Adds a received (or locally made) event to the pending set; [`Self::take_connected_pending`]
    /// takes it once everything it references is stored.
    pub fn add_pending(&mut self, pdu: Arc<Pdu>) {
        let lacking: Vec<String> = self.lacks(&pdu).cloned().collect();
        let connected = lacking.is_empty();
        self.awaited.extend(lacking);
        self.maybe_connected |= connected;
        self.pending.insert(pdu.event_id.clone(), pdu);
    }

    /// Event IDs referenced by pending events that nobody holds.
    pub fn missing_ids(&self) -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        for p in self.pending.values() {
            for id in self.lacks(p) {
                if !self.pending.contains_key(id) {
                    out.insert(id.clone());
                }
            }
        }
        out.into_iter().collect()
    }
}

/// The last few state resolutions a replica made, keyed by the sorted set of timeline events
/// whose states after were resolved. The same set is resolved several times in a row: the
/// current state over the forward extremities, the state before the next event built on all of
/// them (its prev events), the DAG state over the timeline tips (usually the extremities).
///
/// Sound because a resolution (state resolution v2 / v2.1, Server-Server API §"Room State
/// Resolution") is a function of the *set* of input states (order and duplicates do not
/// matter) and of the events those states and their auth chains name, and neither changes
/// for a held timeline event: its state after is set once when it is stored, its auth chain
/// is fixed by its `auth_events`. The two ways a held event does change (an outlier promoted
/// to the timeline, re-judged; a redaction applied to it) clear the memo.
#[derive(Debug, Default)]
struct ResolveMemo {
    /// Most recent last.
    entries: Vec<(Vec<EventIdx>, StateMap)>,
}

impl ResolveMemo {
    /// Entries kept: a handful covers the sets resolved around one event.
    const CAPACITY: usize = 4;

    fn key(events: impl Iterator<Item = EventIdx>) -> Vec<EventIdx> {
        let mut key: Vec<EventIdx> = events.collect();
        key.sort_unstable();
        key.dedup();
        key
    }

    fn get(&self, key: &[EventIdx]) -> Option<&StateMap> {
        self.entries.iter().rev().find(|(k, _)| k.as_slice() == key).map(|(_, s)| s)
    }

    fn insert(&mut self, key: Vec<EventIdx>, state: StateMap) {
        self.entries.retain(|(k, _)| *k != key);
        if self.entries.len() == Self::CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push((key, state));
    }

    fn clear(&mut self) {
        self.entries.clear();
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

#[cfg(test)]
mod extremity_tests {
    use super::*;
    use crate::protocol::room_version::V11;
    use crate::protocol::test_support::{Ev, RoomBuilder};

    const ALICE: &str = "@alice:hs1";
    const BOB: &str = "@bob:hs2";

    /// A room where Bob talks on a branch (Q, then M1, M2) that Alice's ban (BAN) cuts off; a
    /// replica that receives the ban first soft-fails M1 and M2; Alice then builds on both tips.
    fn banned_branch() -> RoomBuilder {
        let mut b = RoomBuilder::new(&V11);
        for (name, ev) in [
            ("CREATE", Ev::create(ALICE)),
            ("MA", Ev::join(ALICE)),
            ("PL", Ev::power_levels(ALICE, serde_json::json!({"users": {ALICE: 100}}))),
            ("JR", Ev::join_rules(ALICE, "public")),
            ("MB", Ev::join(BOB)),
            ("P", Ev::message(ALICE, "before")),
            ("Q", Ev::message(BOB, "bob's branch").prev(&["P"])),
            ("BAN", Ev::ban(ALICE, BOB).prev(&["P"])),
            ("M1", Ev::message(BOB, "after the ban").prev(&["Q"])),
            ("M2", Ev::message(BOB, "still talking").prev(&["M1"])),
            ("A1", Ev::message(ALICE, "merge").prev(&["BAN", "M2"])),
        ] {
            b.add(name, ev);
        }
        b
    }

    fn extremity_names(r: &RoomReplica, b: &RoomBuilder) -> Vec<String> {
        r.extremities.iter().map(|e| b.name_of(&r.dag.pdu(*e).event_id)).collect()
    }

    /// Synapse's `_calculate_new_extremities`: an accepted event built on a soft-failed one
    /// removes that event, its soft-failed ancestors and their prev events (Q here), which the
    /// old rule left as a dangling extremity.
    #[test]
    fn an_accepted_event_on_soft_failed_ones_removes_them_and_their_parents() {
        let b = banned_branch();
        let mut r = RoomReplica::new(b.room_id().to_owned(), &V11);
        let mut decisions = BTreeMap::new();
        for name in ["CREATE", "MA", "PL", "JR", "MB", "P", "Q", "BAN", "M1", "M2"] {
            decisions.insert(name, r.ingest(Arc::new(b.pdu(name).clone())));
        }
        assert!(matches!(decisions["M1"], Decision::SoftFailed { .. }), "{:?}", decisions["M1"]);
        assert!(matches!(decisions["M2"], Decision::SoftFailed { .. }), "{:?}", decisions["M2"]);
        assert_eq!(decisions["Q"], Decision::Accepted);
        // Soft-failed events are never extremities: Q and the ban are.
        assert_eq!(extremity_names(&r, &b), ["Q", "BAN"]);
        assert_eq!(r.ingest(Arc::new(b.pdu("A1").clone())), Decision::Accepted);
        assert_eq!(extremity_names(&r, &b), ["A1"], "M2, M1 and M1's parent Q are gone");
        // The DAG state resolves the timeline's tips: A1 only.
        assert_eq!(r.timeline_tips.len(), 1);
    }

    /// An event held first as an outlier (its prev event not held yet) and taken into the
    /// timeline once its prev event is: that prev event stops being an extremity (the DAG's
    /// prev list of the outlier, made when the prev was missing, does not name it).
    #[test]
    fn a_de_outliered_event_removes_its_prev_event_from_the_extremities() {
        let mut b = RoomBuilder::new(&V11);
        b.add("CREATE", Ev::create(ALICE));
        b.add("MA", Ev::join(ALICE));
        b.add("PL", Ev::power_levels(ALICE, serde_json::json!({"users": {ALICE: 100}})));
        b.add("M1", Ev::message(ALICE, "one"));
        b.add("M2", Ev::message(ALICE, "two"));
        let mut r = RoomReplica::new(b.room_id().to_owned(), &V11);
        for name in ["CREATE", "MA", "PL"] {
            r.ingest(Arc::new(b.pdu(name).clone()));
        }
        assert_eq!(r.store_outlier(Arc::new(b.pdu("M2").clone())), Decision::Outlier);
        assert_eq!(r.ingest(Arc::new(b.pdu("M1").clone())), Decision::Accepted);
        assert_eq!(extremity_names(&r, &b), ["M1"]);
        let m2 = Arc::new(b.pdu("M2").clone());
        assert!(r.is_connected(&m2));
        assert_eq!(r.ingest(m2), Decision::Accepted);
        assert_eq!(extremity_names(&r, &b), ["M2"], "M1 has a child in the timeline now");
    }

    /// A parent stored after its child (the child came across a gap, with a given state): the
    /// parent's own prev event leaves the extremities without the parent replacing it, so the
    /// current state is resolved again, from the child alone. The branch left out (T) has the
    /// later topic, which a resolution that still counted it would pick.
    #[test]
    fn a_parent_stored_after_its_child_changes_the_current_state() {
        let mut b = RoomBuilder::new(&V11);
        b.add("CREATE", Ev::create(ALICE).ts(1));
        b.add("MA", Ev::join(ALICE).ts(2));
        b.add("PL", Ev::power_levels(ALICE, serde_json::json!({"users": {ALICE: 100}})).ts(3));
        b.add("T2", Ev::topic(ALICE, "older").prev(&["PL"]).ts(4));
        b.add("T", Ev::topic(ALICE, "newer").prev(&["PL"]).ts(5));
        b.add_unchecked("P", Ev::message(ALICE, "parent").prev(&["T"]).ts(6));
        b.add_unchecked("C", Ev::message(ALICE, "child").prev(&["P"]).ts(7));
        let mut r = RoomReplica::new(b.room_id().to_owned(), &V11);
        for name in ["CREATE", "MA", "PL", "T"] {
            assert_eq!(r.ingest(Arc::new(b.pdu(name).clone())), Decision::Accepted, "{name}");
        }
        assert_eq!(r.store_outlier(Arc::new(b.pdu("T2").clone())), Decision::Outlier);
        let idx = |r: &RoomReplica, name: &str| r.dag.index_of(&b.id(name)).expect("held");
        let mut given = StateMap::new();
        for name in ["CREATE", "MA", "PL", "T2"] {
            let i = idx(&r, name);
            given.insert(r.dag.event(i).state_key.expect("state"), i);
        }
        assert_eq!(r.ingest_with_state(Arc::new(b.pdu("C").clone()), given), Decision::Accepted);
        assert_eq!(extremity_names(&r, &b), ["T", "C"]);
        let topic = |r: &RoomReplica| r.current_event("m.room.topic", "").map(|p| b.name_of(&p.event_id));
        assert_eq!(topic(&r).as_deref(), Some("T"), "T and C resolved: the later topic");
        assert_eq!(r.ingest(Arc::new(b.pdu("P").clone())), Decision::Accepted);
        assert_eq!(extremity_names(&r, &b), ["C"], "T has a child now; P has one already");
        assert_eq!(topic(&r).as_deref(), Some("T2"), "the current state is C's alone");
    }

    /// A state-mode joiner: the state before the join and its auth chain as outliers, the
    /// join judged against that state; later events are judged from the join's state; a
    /// backfill of the history de-outliers the state events.
    #[test]
    fn outliers_hold_a_given_state_and_are_de_outliered_by_history() {
        let mut b = banned_branch();
        b.add("MC", Ev::join("@carol:hs3").prev(&["A1"]));
        b.add("A2", Ev::message(ALICE, "welcome").prev(&["MC"]));
        // The resident: everything in order.
        let mut resident = RoomReplica::new(b.room_id().to_owned(), &V11);
        let order = ["CREATE", "MA", "PL", "JR", "MB", "P", "Q", "BAN", "M1", "M2", "A1", "MC", "A2"];
        for name in order {
            resident.ingest(Arc::new(b.pdu(name).clone()));
        }
        let mc = resident.dag.index_of(&b.id("MC")).expect("held");
        let state: Vec<EventIdx> = resident.state_before_event(mc).values().copied().collect();
        let mut chain: BTreeSet<EventIdx> = BTreeSet::new();
        let mut todo: Vec<EventIdx> =
            state.iter().chain([&mc]).flat_map(|i| resident.dag.event(*i).auth.clone()).collect();
        while let Some(i) = todo.pop() {
            if chain.insert(i) {
                todo.extend(resident.dag.event(i).auth.iter().copied());
            }
        }
        chain.extend(state.iter().copied());
        // The joiner stores them (DAG order: auth events first) as outliers.
        let mut joiner = RoomReplica::new(b.room_id().to_owned(), &V11);
        for i in &chain {
            assert_eq!(joiner.store_outlier(resident.dag.event(*i).pdu.clone()), Decision::Outlier);
        }
        assert!(joiner.extremities.is_empty() && joiner.timeline_tips.is_empty(), "outliers are no tips");
        assert!(!joiner.in_timeline(&b.id("CREATE")), "an outlier is not in the timeline");
        let mut before = StateMap::new();
        for i in &state {
            let j = joiner.dag.index_of(&resident.dag.pdu(*i).event_id).expect("stored");
            before.insert(joiner.dag.event(j).state_key.expect("a state event"), j);
        }
        let join = resident.dag.event(mc).pdu.clone();
        assert_eq!(joiner.ingest_with_state(join, before), Decision::Accepted);
        assert_eq!(extremity_names(&joiner, &b), ["MC"]);
        // Its state before (what `/state_ids` at it answers) is the state it was judged
        // against, although its prev event A1 is not held to recompute it from.
        let jmc = joiner.dag.index_of(&b.id("MC")).expect("held");
        assert_eq!(joiner.state_before_event(jmc).len(), state.len());
        assert_eq!(
            state_digest(&joiner.dag, &joiner.state_before_event(jmc)),
            state_digest(&resident.dag, &resident.state_before_event(mc))
        );
        assert_eq!(joiner.current_digest(), state_digest(&resident.dag, resident.state_after_event(mc)));
        // A later event builds on the join: connected, judged from the join's state.
        let a2 = Arc::new(b.pdu("A2").clone());
        assert!(joiner.is_connected(&a2));
        assert_eq!(joiner.ingest(a2), Decision::Accepted);
        // Backfilled history (oldest first) turns the outliers into timeline events.
        for name in &order[..11] {
            let pdu = Arc::new(b.pdu(name).clone());
            assert!(joiner.is_connected(&pdu), "{name}: its prev events are in the timeline");
            let d = joiner.ingest_backfilled(pdu);
            let want = resident.dag.event(resident.dag.index_of(&b.id(name)).unwrap()).is_rejected();
            assert_eq!(matches!(d, Decision::Rejected { .. }), want, "{name}: {d:?}");
            assert!(joiner.in_timeline(&b.id(name)), "{name}");
        }
        assert_eq!(extremity_names(&joiner, &b), ["A2"], "backfilled events are never extremities");
        assert_eq!(
            state_digest(&joiner.dag, &joiner.dag_state()),
            state_digest(&resident.dag, &resident.dag_state()),
            "the same timeline resolves to the same DAG state"
        );
    }
}
