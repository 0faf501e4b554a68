//! What observers see of the world ([`WorldView`]).

use super::World;
use crate::protocol::pdu::Pdu;
use crate::protocol::verify::ServerKeys;
use crate::sim::federation::ServerIdx;
use crate::sim::node::Node;
use crate::sim::observe::{Held, ReplicaStats, WorldView};
use crate::sim::time::SimTime;
use std::collections::BTreeMap;
use std::sync::Arc;

impl WorldView for World {
    fn now(&self) -> SimTime {
        self.now
    }
    fn node_count(&self) -> usize {
        self.nodes.len()
    }
    fn node_name(&self, k: ServerIdx) -> &str {
        &self.directory.names[k as usize]
    }
    fn is_honest(&self, k: ServerIdx) -> bool {
        self.nodes[k as usize].is_honest_server()
    }
    fn deliveries(&self, k: ServerIdx) -> u64 {
        self.nodes[k as usize].deliveries()
    }
    fn rooms(&self) -> &BTreeMap<String, String> {
        &self.room_ids
    }
    fn room_of_event(&self, event_id: &str) -> Option<&str> {
        self.event_room.get(event_id).map(String::as_str)
    }
    fn room_pdus(&self, room_id: &str) -> Vec<Arc<Pdu>> {
        self.room_events
            .get(room_id)
            .map(|ids| ids.iter().map(|id| self.store[id].clone()).collect())
            .unwrap_or_default()
    }
    fn room_pdus_since(&self, room_id: &str, from: usize) -> Vec<Arc<Pdu>> {
        let ids = self.room_events.get(room_id).map(Vec::as_slice).unwrap_or(&[]);
        ids.get(from..).unwrap_or(&[]).iter().map(|id| self.store[id].clone()).collect()
    }
    fn room_pdu_count(&self, room_id: &str) -> usize {
        self.room_events.get(room_id).map_or(0, Vec::len)
    }
    fn holders(&self, room_id: &str) -> Vec<ServerIdx> {
        self.holders.get(room_id).cloned().unwrap_or_default()
    }
    fn members(&self, room_id: &str) -> Vec<ServerIdx> {
        let holders = self.holders.get(room_id).map(Vec::as_slice).unwrap_or(&[]);
        holders
            .iter()
            .copied()
            .filter(|k| match &self.nodes[*k as usize] {
                Node::Homeserver(s) => s.is_honest() && s.has_joined_user(room_id),
                Node::Notary(_) | Node::IdentityServer(_) => false,
            })
            .collect()
    }
    fn replica_stats(&mut self, k: ServerIdx, room_id: &str) -> Option<ReplicaStats> {
        let r = self.nodes[k as usize].as_server_mut()?.rooms.get_mut(room_id)?;
        Some(ReplicaStats {
            current_digest: r.current_digest(),
            events: r.dag.len(),
            forward_extremities: r.extremities.len(),
            max_depth: r.max_depth,
            state_size: r.current.len(),
            soft_failed: r.soft_failed_count,
            rejected: r.rejected_count,
        })
    }
    fn dag_state_digest(&self, k: ServerIdx, room_id: &str) -> Option<String> {
        let r = self.nodes[k as usize].as_server()?.rooms.get(room_id)?;
        Some(crate::protocol::dag::state_digest(&r.dag, &r.dag_state()))
    }
    fn dag_state(&self, k: ServerIdx, room_id: &str) -> Option<crate::protocol::dag::StateMap> {
        Some(self.nodes[k as usize].as_server()?.rooms.get(room_id)?.dag_state())
    }
    fn replica_state_digest(
        &self,
        k: ServerIdx,
        room_id: &str,
        state: &crate::protocol::dag::StateMap,
    ) -> Option<String> {
        let r = self.nodes[k as usize].as_server()?.rooms.get(room_id)?;
        Some(r.digest_of(state))
    }
    fn held(&self, k: ServerIdx, room_id: &str, event_id: &str) -> Option<Held> {
        let r = self.nodes[k as usize].as_server()?.rooms.get(room_id)?;
        let i = r.dag.index_of(event_id)?;
        Some(if r.is_outlier(i) {
            Held::Outlier { rejected: r.dag.event(i).is_rejected() }
        } else if r.dag.event(i).is_rejected() {
            Held::Rejected
        } else {
            Held::Accepted { soft_failed: r.is_soft_failed(i) }
        })
    }
    fn replica_events(&self, k: ServerIdx, room_id: &str) -> Vec<(String, Held)> {
        let Some(r) = self.nodes[k as usize].as_server().and_then(|s| s.rooms.get(room_id)) else { return Vec::new() };
        r.dag
            .events()
            .map(|(i, e)| {
                let held = if r.is_outlier(i) {
                    Held::Outlier { rejected: e.is_rejected() }
                } else if e.is_rejected() {
                    Held::Rejected
                } else {
                    Held::Accepted { soft_failed: r.is_soft_failed(i) }
                };
                (e.pdu.event_id.clone(), held)
            })
            .collect()
    }
    fn replica_extremities(&self, k: ServerIdx, room_id: &str) -> Vec<String> {
        let Some(r) = self.nodes[k as usize].as_server().and_then(|s| s.rooms.get(room_id)) else { return Vec::new() };
        r.extremities.iter().map(|e| r.dag.pdu(*e).event_id.clone()).collect()
    }
    fn quiet(&self) -> bool {
        self.messages_in_flight == 0 && self.nodes.iter().enumerate().all(|(i, s)| self.down[i] || s.is_idle())
    }
    fn messages_in_flight(&self) -> usize {
        self.messages_in_flight
    }
    fn account_user_ids(&self, room: &str, user: &str) -> Vec<String> {
        let book = &self.directory.accounts;
        if self.directory.portable.is_portable_room(room) {
            return self.directory.portable.account_id(user).into_iter().collect();
        }
        if !book.is_account_room(room) {
            return Vec::new();
        }
        book.keys_of(user).iter().map(|k| k.user_id.clone()).collect()
    }

    fn account_owner(&self, key: &str) -> Option<(String, usize)> {
        self.directory.accounts.owner_of(key).map(|(u, g)| (u.to_owned(), g))
    }

    fn local_joined_users(&self, k: ServerIdx, room_id: &str) -> Vec<String> {
        let Some(s) = self.nodes[k as usize].as_server() else { return Vec::new() };
        let Some(r) = s.rooms.get(room_id) else { return Vec::new() };
        let mut users: Vec<String> = r
            .joined_members()
            .iter()
            .filter(|u| crate::protocol::ids::domain_of(u) == Some(s.name.as_str()))
            .cloned()
            .collect();
        users.sort();
        users
    }

    fn server_keys(&self) -> ServerKeys {
        // Every key each node signed with during the run (rotations included).
        let names = self.directory.names.iter().enumerate();
        names.map(|(k, name)| (name.clone(), self.directory.keys_of(k as ServerIdx).into_iter().collect())).collect()
    }
}
