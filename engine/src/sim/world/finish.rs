//! The end of a run: a last sample, the observers' findings, and the run's outputs (summary,
//! metric rows, each room's PDUs, the servers' keys).

use super::World;
use crate::protocol::pdu::Pdu;
use crate::scenario::FaultKind;
use crate::sim::observe::{Findings, MetricRow, WorldView};
use crate::sim::time::to_ms;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a finished run produced.
pub struct RunResult {
    pub summary: Value,
    pub metrics: Vec<MetricRow>,
    /// Each room's PDUs (union over servers), in creation order, by room name.
    pub rooms: BTreeMap<String, Vec<Arc<Pdu>>>,
    /// `{"server_keys": {...}}` for `dag verify --keys`.
    pub keys: Value,
    pub invariant_violations: Vec<String>,
    /// Per room name: events some honest server soft-failed.
    pub soft_failed: BTreeMap<String, BTreeSet<String>>,
    /// `clients.jsonl` lines (empty unless some room uses account keys).
    pub clients: Vec<Value>,
}

impl World {
    /// Ends the run: final sample, observers' findings (invariants checked when asked), outputs.
    pub fn finish(mut self, check_invariants: bool) -> Result<RunResult, String> {
        self.sample();
        self.refresh_holders();
        let log_digest = self.log.finish()?;
        let mut findings = Findings { check_invariants, ..Findings::default() };
        let mut observers = std::mem::take(&mut self.observers);
        for o in observers.iter_mut() {
            o.finish(&mut self, &mut findings);
        }
        let mut rooms_out = BTreeMap::new();
        let mut soft_failed = BTreeMap::new();
        let mut room_summaries = serde_json::Map::new();
        for spec in self.scenario.rooms.clone() {
            let Some(room_id) = self.room_ids.get(&spec.name).cloned() else {
                room_summaries.insert(spec.name.clone(), json!({"room_id": null, "created": false}));
                continue;
            };
            let mut entry = serde_json::Map::new();
            entry.insert("room_id".into(), json!(room_id));
            if let Some(found) = findings.rooms.remove(&spec.name) {
                entry.extend(found);
            }
            room_summaries.insert(spec.name.clone(), Value::Object(entry));
            let mut soft = BTreeSet::new();
            for k in 0..self.nodes.len() as u32 {
                if self.is_honest(k) {
                    soft.extend(
                        self.replica_events(k, &room_id)
                            .into_iter()
                            .filter(|(_, h)| matches!(h, crate::sim::observe::Held::Accepted { soft_failed: true }))
                            .map(|(id, _)| id),
                    );
                }
            }
            soft_failed.insert(spec.name.clone(), soft);
            rooms_out.insert(spec.name.clone(), self.room_pdus(&room_id));
        }
        let faults: Vec<Value> = self.scenario.faults.iter().map(|f| json!({
            "kind": fault_kind_name(&f.kind), "start_ms": to_ms(f.at_us), "end_ms": f.duration_us.map(|d| to_ms(f.at_us + d)), "description": fault_description(&f.kind)
        })).collect();
        let mut notes = findings.notes;
        if let Some(why) = &self.stopped {
            notes.push(why.clone());
        }
        let mut summary = serde_json::Map::new();
        for (k, v) in [
            ("scenario", json!(self.scenario.name)),
            ("seed", json!(self.seed)),
            ("servers", json!(self.servers().count())),
            ("events_created", json!(self.store.len())),
            ("deliveries", json!(self.nodes.iter().map(|n| n.deliveries()).sum::<u64>())),
            ("sim_time_end_ms", json!(to_ms(self.now.min(self.end)))),
            ("rooms", Value::Object(room_summaries)),
            ("faults", json!(faults)),
            ("log_records", json!(self.log.records())),
            ("log_digest", json!(log_digest)),
            // By file name and content, never by the path it was given as (outputs must not
            // depend on the working directory).
            ("scenario_file", json!(self.scenario.source.base_name())),
            ("scenario_sha256", json!(self.scenario.source.sha256())),
            ("overrides", json!(self.scenario.source.overrides)),
            ("invariant_violations", json!(findings.violations.len())),
            ("caps_reached", json!(self.caps)),
            ("keys", self.key_counts()),
            ("notes", json!(notes)),
        ] {
            summary.insert(k.into(), v);
        }
        summary.extend(findings.summary);
        // Every key each server signed with (rotations included); notaries sign no events.
        let keys = json!({"server_keys": self.directory.names.iter().enumerate().take(self.servers().count()).map(|(k, name)| (name.clone(), Value::Object(self.directory.keys_of(k as u32).into_iter().map(|(id, key)| (id, json!(crate::protocol::crypto::b64_encode(key.as_bytes())))).collect()))).collect::<serde_json::Map<String, Value>>()});
        // A large world takes a noticeable time to free (every replica's DAG and states): do it
        // beside the caller, which goes on writing the outputs.
        let _ = std::thread::Builder::new().name("world-drop".into()).spawn(move || drop(self));
        Ok(RunResult {
            summary: Value::Object(summary),
            metrics: findings.metrics,
            rooms: rooms_out,
            keys,
            invariant_violations: findings.violations,
            soft_failed,
            clients: findings.clients,
        })
    }
}

impl World {
    /// `summary.json`'s `keys`: key fetching over the run (defined in `docs/outputs.md`).
    fn key_counts(&self) -> Value {
        let mut servers = crate::sim::server::keyring::KeyStats::default();
        for s in self.servers() {
            let k = s.keyring.stats;
            servers.fetches += k.fetches;
            servers.fetch_failures += k.fetch_failures;
            servers.parked += k.parked;
            servers.dropped += k.dropped;
        }
        let notaries: Vec<_> = self.nodes.iter().filter_map(|n| n.as_notary()).collect();
        let boxes = self.network.middlebox_counts();
        json!({
            "distribution": self.scenario.keys.distribution,
            "notaries": notaries.len(),
            "fetches": servers.fetches,
            "fetch_failures": servers.fetch_failures,
            "notary_fetches": notaries.iter().map(|n| n.fetches).sum::<u64>(),
            "notary_fetch_failures": notaries.iter().map(|n| n.fetch_failures).sum::<u64>(),
            "parked_for_keys": servers.parked,
            "dropped_for_keys": servers.dropped,
            "cache_answers": boxes.cache_answers,
            "stale_cache_answers": boxes.stale_answers,
            "entries_stripped": boxes.entries_stripped,
        })
    }
}

fn fault_kind_name(k: &FaultKind) -> &'static str {
    match k {
        FaultKind::Partition { .. } => "partition",
        FaultKind::Crash { .. } => "crash",
        FaultKind::Degrade { .. } => "degrade",
        FaultKind::ClockSkew { .. } => "clock_skew",
        FaultKind::HealAll => "heal_all",
        FaultKind::RotateKey { .. } => "rotate_key",
        FaultKind::EraseAccount { .. } => "erase_account",
        FaultKind::ReregisterAccount { .. } => "reregister_account",
        FaultKind::RotatePepper { .. } => "rotate_pepper",
        FaultKind::RevokeIdentityKey { .. } => "revoke_identity_key",
    }
}

fn fault_description(k: &FaultKind) -> String {
    match k {
        FaultKind::Partition { sides } => sides.iter().map(|s| s.join(",")).collect::<Vec<_>>().join(" | "),
        FaultKind::Crash { server } => server.clone(),
        FaultKind::Degrade { from, to, .. } => format!("{} -> {}", from.join(","), to.join(",")),
        FaultKind::ClockSkew { server, skew_us } => format!("{server} {}ms", skew_us / 1000),
        FaultKind::HealAll => "all".into(),
        FaultKind::RotateKey { server, keep_old } => {
            format!("{server} {}", if *keep_old { "keeps the old key" } else { "drops the old key" })
        }
        FaultKind::EraseAccount { user } | FaultKind::ReregisterAccount { user } => user.clone(),
        FaultKind::RotatePepper { server, .. } | FaultKind::RevokeIdentityKey { server } => server.clone(),
    }
}
