//! Synthetic run directories in the engine's documented formats (docs/outputs.md), so the
//! analysis can be tested without running simulations.
#![allow(dead_code)]

use std::fmt::Write;
use std::fs;
use std::path::Path;

/// Shape of a synthetic run.
#[derive(Clone, Debug)]
pub struct Synthetic {
    pub seed: u64,
    pub servers: usize,
    /// Extra convergence delay of room `main` (ms); None: it never converges.
    pub main_convergence_ms: Option<u64>,
    pub auth_disagreements: u64,
    /// A member of room `main` the scenario meant to join who is not in it.
    pub missing_member: bool,
    pub invariant_violations: u64,
}

impl Default for Synthetic {
    fn default() -> Self {
        Synthetic {
            seed: 1,
            servers: 4,
            main_convergence_ms: Some(4_000),
            auth_disagreements: 0,
            missing_member: false,
            invariant_violations: 0,
        }
    }
}

pub const SCENARIO_TEXT: &str = "# quickstart: 4 servers, one partition\n\
    # a < b && c > d, \"quoted\" <script>alert(1)</script>\n\
    [network]\nlatency = \"50ms\"\n\n[[faults]]\nkind = \"partition\"\nat = \"20s\"\n";

pub fn summary_json(s: &Synthetic) -> String {
    let conv = s.main_convergence_ms.map_or("null".to_string(), |v| v.to_string());
    let converged = s.main_convergence_ms.is_some();
    let distinct = if converged { 1 } else { 2 };
    format!(
        r#"{{"scenario": "quickstart", "seed": {seed}, "servers": {n}, "events_created": {ev},
  "deliveries": {del}, "sim_time_end_ms": 60000, "threads": 2, "invariant_violations": {violations},
  "rooms": {{
    "main": {{"room_id": "!main:hs1", "room_version": "11", "servers_in_room": {n},
      "distinct_final_states": {distinct}, "largest_agreeing_group": {n}, "agreed_at_end": {converged},
      "time_to_agreement_ms": {conv}, "members_missing": {missing}, "auth_disagreements": {auth}, "soft_fail_disagreements": 2,
      "max_event_lag": 12, "max_forward_extremities": 3, "events": 500}},
    "side": {{"room_id": "!side:hs2", "room_version": "12", "servers_in_room": 2,
      "distinct_final_states": 1, "largest_agreeing_group": 2, "agreed_at_end": true,
      "time_to_agreement_ms": 250, "members_missing": [], "auth_disagreements": 0, "soft_fail_disagreements": 0,
      "max_event_lag": 3, "max_forward_extremities": 1, "events": 40, "proposal_extra_metric": 7.5}}
  }},
  "faults": [{{"kind": "partition", "start_ms": 20000, "end_ms": 35000,
    "description": "hs1,hs2 | hs3,hs4"}}],
  "log_digest": "9f2c4e1d00aa77bb", "scenario_file": "quickstart.toml", "proposal_requests_sent": {req}}}"#,
        seed = s.seed,
        n = s.servers,
        ev = 800 + s.seed * 3,
        del = 2400 + s.seed * 10,
        auth = s.auth_disagreements,
        violations = s.invariant_violations,
        missing = if s.missing_member { r#"[{"user": "@u0:hs4", "why": "join refused: not invited"}]"# } else { "[]" },
        req = 10 + s.seed % 3,
    )
}

pub fn metrics_csv(s: &Synthetic) -> String {
    let mut out = String::from("time_ms,server,room,measure,value\n");
    let servers: Vec<String> = (1..=s.servers).map(|i| format!("hs{i}")).collect();
    let heal_ms = 35_000 + s.main_convergence_ms.unwrap_or(100_000);
    for t in (0..=60_000u64).step_by(1000) {
        let partitioned = (20_000..35_000).contains(&t);
        let diverged = (20_000..heal_ms).contains(&t);
        for (room, id) in [("main", "!main:hs1"), ("side", "side")] {
            // room-wide rows; `main` is written by room ID to check the name mapping
            let distinct = if diverged && room == "main" { 2 } else { 1 };
            let _ = writeln!(out, "{t},,{id},distinct_states,{distinct}");
            let share = if distinct > 1 { 0.5 } else { 0.0 };
            let _ = writeln!(out, "{t},,{id},outside_largest_group_share,{share}");
            let room_servers = if room == "main" { &servers[..] } else { &servers[..2] };
            for (i, srv) in room_servers.iter().enumerate() {
                let lag =
                    if partitioned && i >= 2 { (t - 20_000) / 1000 + i as u64 } else { (i as u64 + t / 1000) % 3 };
                let _ = writeln!(out, "{t},{srv},{room},event_lag,{lag}");
                let fx = 1 + u64::from(partitioned) * (i as u64 % 3);
                let _ = writeln!(out, "{t},{srv},{room},forward_extremities,{fx}");
                let _ = writeln!(out, "{t},{srv},{room},soft_failed,{}", t / 20_000 + i as u64);
                let _ = writeln!(out, "{t},{srv},{room},mapping_pending,{}", (t / 7000 + i as u64) % 4);
            }
        }
        for (i, srv) in servers.iter().enumerate() {
            let _ = writeln!(out, "{t},{srv},,deliveries,{}", t / 100 * (i as u64 + 1));
        }
    }
    out
}

/// Writes a run directory at `dir`.
pub fn write_run(dir: &Path, s: &Synthetic) {
    fs::create_dir_all(dir.join("rooms")).unwrap();
    fs::write(dir.join("summary.json"), summary_json(s)).unwrap();
    fs::write(dir.join("metrics.csv"), metrics_csv(s)).unwrap();
    fs::write(dir.join("scenario.toml"), SCENARIO_TEXT).unwrap();
    fs::write(dir.join("log.jsonl"), "{}\n").unwrap();
    fs::write(dir.join("rooms/main.pdus.jsonl"), "{}\n").unwrap();
}
