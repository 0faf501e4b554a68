//! A DAG judged once, as `dag verify` does, keeping what the kernels need: the statuses, the
//! state before and after every event, the merges and the forward extremities. Benches time one
//! kernel over it (auth checks, resolution of every merge, final resolution) without the rest.

use roomsim_engine::protocol::auth;
use roomsim_engine::protocol::dag::{state_digest, EventIdx, RoomDag, StateMap, Status};
use roomsim_engine::protocol::pdu::{EventKind, Pdu};
use roomsim_engine::protocol::room_version::RoomVersion;
use roomsim_engine::protocol::state_res;
use roomsim_engine::protocol::verify::{self, check_against_auth_events, judge, topological_order};
use std::sync::Arc;

pub struct Prepared {
    pub version: &'static RoomVersion,
    pub dag: RoomDag,
    /// State before each event (index = `EventIdx`).
    pub before: Vec<StateMap>,
    /// State after each event.
    pub after: Vec<StateMap>,
    /// Events with two or more prev events: their state before is a resolution.
    pub merges: Vec<EventIdx>,
    pub extremities: Vec<EventIdx>,
    pub accepted: usize,
    pub final_state: StateMap,
}

impl Prepared {
    /// Judges `pdus` (any order) exactly as [`verify::verify_dag`] does without keys.
    pub fn new(version: &'static RoomVersion, pdus: Vec<Pdu>) -> Prepared {
        let ordered = topological_order(pdus);
        let mut dag = RoomDag::new(version);
        let mut before_all = Vec::with_capacity(ordered.len());
        let mut after_all: Vec<StateMap> = Vec::with_capacity(ordered.len());
        let mut merges = Vec::new();
        let mut accepted = 0;
        for pdu in ordered {
            let idx = dag.insert(Arc::new(pdu));
            let prev = dag.event(idx).prev.clone();
            let before = match prev.as_slice() {
                [] => StateMap::new(),
                [one] => after_all[*one as usize].clone(),
                many => {
                    merges.push(idx);
                    let inputs: Vec<&StateMap> = many.iter().map(|p| &after_all[*p as usize]).collect();
                    state_res::resolve(&dag, &inputs)
                }
            };
            let status = judge(&dag, idx, &before, None);
            let applies = status == Status::Accepted && dag.event(idx).state_key.is_some();
            if status == Status::Accepted {
                accepted += 1;
            }
            dag.set_status(idx, status);
            let mut after = before.clone();
            if applies {
                after.insert(dag.event(idx).state_key.expect("state event"), idx);
            }
            before_all.push(before);
            after_all.push(after);
        }
        let extremities = dag.forward_extremities();
        let inputs: Vec<&StateMap> = extremities.iter().map(|e| &after_all[*e as usize]).collect();
        let final_state = state_res::resolve(&dag, &inputs);
        Prepared { version, dag, before: before_all, after: after_all, merges, extremities, accepted, final_state }
    }

    pub fn final_digest(&self) -> String {
        state_digest(&self.dag, &self.final_state)
    }

    /// The kernel of the auth-check bench: both receipt stages (own `auth_events`, then the
    /// state before) for every event, no signatures. Returns the number accepted.
    pub fn auth_check_all(&self) -> usize {
        let mut ok = 0;
        for (idx, ev) in self.dag.events() {
            if check_against_auth_events(&self.dag, idx).is_err() {
                continue;
            }
            if ev.pdu.kind != EventKind::Create {
                let state = self.dag.auth_state_from(idx, &self.before[idx as usize]);
                if auth::check_state_dependent(self.version, &ev.pdu, &state).is_err() {
                    continue;
                }
            }
            ok += 1;
        }
        ok
    }

    /// The states after the prev events of a merge.
    pub fn merge_inputs(&self, idx: EventIdx) -> Vec<&StateMap> {
        self.dag.event(idx).prev.iter().map(|p| &self.after[*p as usize]).collect()
    }

    /// The kernel of the all-merges bench: resolves the state before every merge. Returns the
    /// total size of the resolved states (to keep the work observable).
    pub fn resolve_all_merges(&self) -> usize {
        self.merges.iter().map(|m| state_res::resolve(&self.dag, &self.merge_inputs(*m)).len()).sum()
    }

    /// The final resolution of the forward extremities.
    pub fn resolve_final(&self) -> StateMap {
        let inputs: Vec<&StateMap> = self.extremities.iter().map(|e| &self.after[*e as usize]).collect();
        state_res::resolve(&self.dag, &inputs)
    }
}

/// Sanity: the prepared DAG agrees with `verify_dag` (accepted count and final digest).
pub fn check_against_verify(p: &Prepared, pdus: Vec<Pdu>) {
    let v = verify::verify_dag(p.version, pdus, &verify::VerifyOptions::default());
    assert_eq!(v.report.accepted, p.accepted, "prepared DAG disagrees with verify_dag");
    assert_eq!(v.report.final_state_digest, p.final_digest(), "prepared final state disagrees with verify_dag");
    assert_eq!(p.auth_check_all(), p.accepted, "auth kernel disagrees with the judged statuses");
}
