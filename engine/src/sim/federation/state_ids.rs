//! `GET /_matrix/federation/v1/state_ids/{roomId}` and `GET /_matrix/federation/v1/event/{eventId}`
//! (Server-Server API, §Retrieving events): bridging a gap too wide for `get_missing_events`.
//!
//! In `join.mode = "state"`, a replica asks one `get_missing_events` round (as Synapse does,
//! `_get_missing_events_for_pdu`); events still waiting for prev events nobody sent are then
//! judged as Synapse's `_compute_event_context_with_maybe_missing_prevs` does: the state after
//! each missing prev event is asked with `/state_ids` (the state before it, plus the event
//! itself when it is a state event, `_get_state_ids_after_missing_prev_event`), the events of
//! those states and auth chains it lacks are fetched with `/event/{eventId}` and stored as
//! outliers, the states are resolved (when several prev events) and the waiting event is judged
//! against the result. It no longer waits forever. A waiting event whose auth events are not
//! held has its whole auth chain asked with `/event_auth` (Synapse's
//! `_get_remote_auth_chain_for_event`), stored as outliers.

use super::join::auth_chain;
use super::{Outcome, Request, Response, ServerIdx};
use crate::protocol::dag::StateMap;
use crate::protocol::pdu::Pdu;
use crate::protocol::state_res;
use crate::sim::server::receipt::decision_record;
use crate::sim::server::requests::Purpose;
use crate::sim::server::{Output, Server};
use crate::sim::time::SimTime;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One replica's gap being bridged.
#[derive(Debug, Default)]
pub struct Bridge {
    /// Per missing prev event asked with `/state_ids`: the state before it (`None` until
    /// answered).
    pub states: BTreeMap<String, Option<Vec<String>>>,
    /// Events asked for with `/event`, not answered yet.
    pub fetching: BTreeSet<String>,
    /// Waiting events whose auth chain was asked with `/event_auth`, not answered yet.
    pub auth_fetching: BTreeSet<String>,
    /// Fetched events, stored as outliers once nothing more is awaited.
    pub fetched: Vec<Arc<Pdu>>,
}

impl Bridge {
    pub fn is_idle(&self) -> bool {
        self.states.is_empty() && self.fetching.is_empty() && self.auth_fetching.is_empty()
    }
}

impl Server {
    /// Asks `from` for the state at every prev event that waiting events lack and that nobody
    /// sent (and for missing auth events), once per event.
    pub(crate) fn bridge_gap(&mut self, room_id: &str, from: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get(room_id) else { return };
        let mut ask_state: Vec<String> = Vec::new();
        let mut ask_event: Vec<String> = Vec::new();
        let mut ask_auth: Vec<String> = Vec::new();
        for p in room.pending.values() {
            for id in &p.prev_events {
                if room.in_timeline(id) || room.pending.contains_key(id) || room.bridge.states.contains_key(id) {
                    continue;
                }
                if !ask_state.contains(id) {
                    ask_state.push(id.clone());
                }
            }
        }
        // Auth events missing (and not themselves waiting here): the auth chain of one waiting
        // event that lacks each, unless a chain asked already covers it (it holds the event's
        // auth events).
        let missing_auth = |p: &Pdu| -> Vec<String> {
            p.auth_events.iter().filter(|a| !room.has(a) && !room.pending.contains_key(*a)).cloned().collect()
        };
        let mut covered: BTreeSet<String> = room
            .bridge
            .auth_fetching
            .iter()
            .filter_map(|id| room.pending.get(id))
            .flat_map(|p| p.auth_events.iter().cloned())
            .collect();
        for p in room.pending.values() {
            let missing = missing_auth(p);
            if missing.iter().any(|a| !covered.contains(a)) && !room.bridge.auth_fetching.contains(&p.event_id) {
                ask_auth.push(p.event_id.clone());
                covered.extend(missing);
            }
        }
        for id in &ask_state {
            if !room.has(id) && !room.bridge.fetching.contains(id) && !ask_event.contains(id) {
                ask_event.push(id.clone());
            }
        }
        let room = self.rooms.get_mut(room_id).expect("checked");
        for id in &ask_state {
            room.bridge.states.insert(id.clone(), None);
        }
        room.bridge.auth_fetching.extend(ask_auth.iter().cloned());
        for event_id in ask_auth {
            let body = Request::EventAuth { room_id: room_id.to_owned(), event_id: event_id.clone() };
            let purpose = Purpose::EventAuth { room_id: room_id.to_owned(), event_id };
            self.send_request(from, body, purpose, now, out);
        }
        for event_id in ask_state {
            let body = Request::StateIds { room_id: room_id.to_owned(), event_id: event_id.clone() };
            self.send_request(from, body, Purpose::StateIds { room_id: room_id.to_owned(), event_id }, now, out);
        }
        self.fetch_events(room_id, ask_event, from, now, out);
    }

    fn fetch_events(&mut self, room_id: &str, ids: Vec<String>, from: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        for event_id in ids {
            let room = self.rooms.get_mut(room_id).expect("caller checked");
            if room.has(&event_id) || !room.bridge.fetching.insert(event_id.clone()) {
                continue;
            }
            let body = Request::GetEvent { room_id: room_id.to_owned(), event_id };
            self.send_request(from, body, Purpose::GetEvent { room_id: room_id.to_owned() }, now, out);
        }
    }

    /// `/state_ids`: the state before a timeline event and the auth chain of that state. An
    /// event held only as an outlier has no state here: 404, as for an unknown one.
    pub(crate) fn answer_state_ids(&self, room_id: &str, event_id: &str) -> Outcome {
        let not_found = Outcome::Error { status: 404, errcode: "M_NOT_FOUND".into() };
        let Some(room) = self.rooms.get(room_id) else { return not_found };
        let Some(idx) = room.dag.index_of(event_id).filter(|i| !room.is_outlier(*i)) else { return not_found };
        let state = room.state_before_event(idx);
        let id_of = |i: &u32| room.dag.pdu(*i).event_id.clone();
        let pdu_ids: Vec<String> = state.values().map(id_of).collect();
        let auth_chain_ids: Vec<String> = auth_chain(room, state.values().copied()).iter().map(id_of).collect();
        Outcome::Ok(Response::StateIds { pdu_ids, auth_chain_ids })
    }

    /// `/event_auth`: the whole auth chain of a held event (timeline or outlier), oldest first.
    pub(crate) fn answer_event_auth(&self, room_id: &str, event_id: &str) -> Outcome {
        let Some((room, idx)) = self.rooms.get(room_id).and_then(|r| r.dag.index_of(event_id).map(|i| (r, i))) else {
            return Outcome::Error { status: 404, errcode: "M_NOT_FOUND".into() };
        };
        let pdus = auth_chain(room, [idx].into_iter()).into_iter().map(|i| room.dag.event(i).pdu.clone()).collect();
        Outcome::Ok(Response::Events { pdus })
    }

    /// An `/event_auth` answer (`None`: failed; the missing-event retry asks again): its events
    /// join the fetched ones, stored as outliers once nothing more is awaited.
    pub(crate) fn on_event_auth(
        &mut self,
        room_id: &str,
        asked: &str,
        chain: Option<Vec<Arc<Pdu>>>,
        out: &mut Vec<Output>,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else { return };
        if !room.bridge.auth_fetching.remove(asked) {
            return;
        }
        for pdu in chain.unwrap_or_default() {
            if !room.has(&pdu.event_id) && !room.bridge.fetched.iter().any(|f| f.event_id == pdu.event_id) {
                room.bridge.fetched.push(pdu);
            }
        }
        self.finish_bridge(room_id, out);
    }

    /// `/event/{eventId}`: the event, as a one-PDU answer.
    pub(crate) fn answer_get_event(&self, room_id: &str, event_id: &str) -> Outcome {
        let found = self.rooms.get(room_id).and_then(|r| r.dag.index_of(event_id).map(|i| r.dag.event(i).pdu.clone()));
        match found {
            Some(pdu) => Outcome::Ok(Response::Events { pdus: vec![pdu] }),
            None => Outcome::Error { status: 404, errcode: "M_NOT_FOUND".into() },
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_state_ids(
        &mut self,
        room_id: &str,
        event_id: String,
        ids: Option<(Vec<String>, Vec<String>)>,
        from: ServerIdx,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let Some(room) = self.rooms.get_mut(room_id) else { return };
        let Some((pdu_ids, auth_chain_ids)) = ids else {
            // Failed: forget the ask; the missing-event retry asks again.
            room.bridge.states.remove(&event_id);
            self.finish_bridge(room_id, out);
            self.arm_missing_retry(room_id, now, out);
            return;
        };
        let wanted: Vec<String> = pdu_ids.iter().chain(&auth_chain_ids).filter(|id| !room.has(id)).cloned().collect();
        room.bridge.states.insert(event_id, Some(pdu_ids));
        self.fetch_events(room_id, wanted, from, now, out);
        self.finish_bridge(room_id, out);
    }

    pub(crate) fn on_got_event(&mut self, room_id: &str, pdu: Option<Arc<Pdu>>, asked: &str, out: &mut Vec<Output>) {
        let Some(room) = self.rooms.get_mut(room_id) else { return };
        room.bridge.fetching.remove(asked);
        if let Some(pdu) = pdu.filter(|p| p.event_id == asked) {
            room.bridge.fetched.push(pdu);
        }
        self.finish_bridge(room_id, out);
    }

    /// Once every `/state_ids` and `/event` answer is in: stores the fetched events as
    /// outliers, then judges each waiting event whose prev events are all in the timeline or
    /// have a known state, against the resolution of their states after.
    fn finish_bridge(&mut self, room_id: &str, out: &mut Vec<Output>) {
        let room = &self.rooms[room_id];
        if !room.bridge.fetching.is_empty()
            || !room.bridge.auth_fetching.is_empty()
            || room.bridge.states.values().any(Option::is_none)
        {
            return;
        }
        let mut fetched = std::mem::take(&mut self.rooms.get_mut(room_id).expect("checked").bridge.fetched);
        fetched.sort_by(|a, b| (a.depth, &a.event_id).cmp(&(b.depth, &b.event_id)));
        self.store_outliers(room_id, fetched, out);
        loop {
            let room = self.rooms.get_mut(room_id).expect("checked");
            // The oldest waiting event whose every prev event has a state here.
            let ready = room.pending.values().find(|p| {
                p.auth_events.iter().all(|a| room.has(a))
                    && !p.prev_events.iter().all(|id| room.in_timeline(id))
                    && p.prev_events.iter().all(|id| {
                        room.in_timeline(id) || (room.has(id) && matches!(room.bridge.states.get(id), Some(Some(_))))
                    })
            });
            let Some(pdu) = ready.cloned() else { break };
            let mut afters: Vec<StateMap> = Vec::new();
            for id in &pdu.prev_events {
                let i = room.dag.index_of(id).expect("held");
                if room.in_timeline(id) {
                    afters.push(room.state_after_event(i).clone());
                    continue;
                }
                let mut after = StateMap::new();
                for s in room.bridge.states[id].as_ref().expect("answered") {
                    if let Some(j) = room.dag.index_of(s).filter(|j| !room.dag.event(*j).is_rejected()) {
                        if let Some(key) = room.dag.event(j).state_key {
                            after.insert(key, j);
                        }
                    }
                }
                let ev = room.dag.event(i);
                if let (Some(key), false) = (ev.state_key, ev.is_rejected()) {
                    after.insert(key, i);
                }
                afters.push(after);
            }
            let before = match afters.as_slice() {
                [one] => one.clone(),
                many => state_res::resolve(&room.dag, &many.iter().collect::<Vec<_>>()),
            };
            room.pending.remove(&pdu.event_id);
            room.pending_origin.remove(&pdu.event_id);
            let id = pdu.event_id.clone();
            let decision = room.ingest_with_state(pdu, before);
            self.record(out, decision_record(id, decision));
            self.drain_pending(room_id, out);
        }
        let room = self.rooms.get_mut(room_id).expect("checked");
        if room.bridge.fetching.is_empty()
            && room.bridge.auth_fetching.is_empty()
            && room.bridge.states.values().all(Option::is_some)
        {
            room.bridge.states.clear();
        }
    }
}
