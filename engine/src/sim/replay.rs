//! Replay: rebuild every server from the log's input records and check that each produces the
//! same decisions (the logged output records) and reaches the same final state. Servers are
//! independent state machines, so each one is replayed on its own, from its own inputs.

use super::federation::PduStore;
use super::log::LogWriter;
use super::world::{input_from_record, World};
use crate::scenario::Scenario;
use serde_json::Value;
use std::collections::BTreeMap;

/// The first place a replay departs from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    pub server: String,
    pub seq: u64,
    pub expected: Value,
    pub got: Value,
}

/// Record kinds the world writes on a server's behalf (network outcomes): not server outputs.
const WORLD_KINDS: [&str; 2] = ["send_dropped", "dropped"];

/// Replays `log_lines`; returns the final state digests per room ID and server.
pub fn replay(
    scenario: &Scenario,
    seed: u64,
    log_lines: &str,
    store: &PduStore,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, Box<Divergence>> {
    let mut world = World::new(scenario, seed, LogWriter::sink());
    let mut per_server: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (n, line) in log_lines.lines().enumerate() {
        let rec: Value = serde_json::from_str(line).map_err(|e| bad(n, format!("unreadable log line: {e}")))?;
        let Some(server) = rec.get("server").and_then(Value::as_str) else { continue };
        if WORLD_KINDS.contains(&rec["kind"].as_str().unwrap_or("")) {
            continue;
        }
        per_server.entry(server.to_owned()).or_default().push(rec);
    }
    for server in world.servers.iter_mut() {
        let Some(records) = per_server.remove(&server.name) else { continue };
        let mut expected: Vec<&Value> = Vec::new();
        let mut i = 0;
        while i < records.len() {
            let rec = &records[i];
            let input = input_from_record(rec, store, scenario).map_err(|e| bad(seq_of(rec) as usize, e))?;
            let Some(input) = input else {
                return Err(Box::new(Divergence {
                    server: server.name.clone(),
                    seq: seq_of(rec),
                    expected: rec.clone(),
                    got: Value::String("an output the replayed server did not produce".into()),
                }));
            };
            let t = rec["t_us"].as_u64().unwrap_or(0);
            let outputs = server.handle(input, t);
            expected.clear();
            i += 1;
            while i < records.len() && input_from_record(&records[i], store, scenario).ok().flatten().is_none() {
                expected.push(&records[i]);
                i += 1;
            }
            let got: Vec<Value> = outputs
                .into_iter()
                .filter_map(|o| match o {
                    super::server::Output::Record(v) => Some(v),
                    _ => None,
                })
                .collect();
            for (k, want) in expected.iter().enumerate() {
                let mut want_body = (*want).clone();
                for key in ["seq", "t_us", "server"] {
                    want_body.as_object_mut().map(|m| m.remove(key));
                }
                let g = got.get(k).cloned().unwrap_or(Value::Null);
                if g != want_body {
                    return Err(Box::new(Divergence {
                        server: server.name.clone(),
                        seq: seq_of(want),
                        expected: want_body,
                        got: g,
                    }));
                }
            }
            if got.len() > expected.len() {
                return Err(Box::new(Divergence {
                    server: server.name.clone(),
                    seq: seq_of(&records[i - 1]),
                    expected: Value::Null,
                    got: got[expected.len()].clone(),
                }));
            }
        }
    }
    let mut digests: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for s in world.servers.iter_mut() {
        let name = s.name.clone();
        for (room_id, r) in s.rooms.iter_mut() {
            digests.entry(room_id.clone()).or_default().insert(name.clone(), r.current_digest());
        }
    }
    Ok(digests)
}

fn seq_of(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or(0)
}

fn bad(n: usize, why: String) -> Box<Divergence> {
    Box::new(Divergence { server: String::new(), seq: n as u64, expected: Value::Null, got: Value::String(why) })
}
