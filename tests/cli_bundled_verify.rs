//! Every bundled scenario's DAGs pass `roomsim dag verify --keys` with the verdicts the simulated
//! servers reached: each honest server's decision on each event it judged (from the run's log)
//! must be the one `dag verify` reaches from scratch on the room's union DAG. Rejection is a
//! function of the DAG only (Server-Server API, "Checks performed on receipt of a PDU", checks
//! 1–5), so a server that rejects what the DAG allows, or accepts what it rejects, fails here;
//! soft failure (check 6) depends on the server's current state and is compared as "accepted".

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn roomsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomsim")).args(args).output().expect("run roomsim")
}

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Shortens what would make the suite slow; everything else runs as bundled.
fn overrides_for(name: &str) -> Vec<&'static str> {
    match name {
        "large.toml" => {
            vec!["--set", "scenario.end=\"120s\"", "--set", "faults.0.at=\"80s\"", "--set", "faults.0.duration=\"20s\""]
        }
        _ => vec![],
    }
}

fn run(path: &Path, out: &Path) -> PathBuf {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let mut args = vec![
        "run",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--check-invariants",
        "--no-report",
        "--log-compression",
        "none",
    ];
    args.extend(overrides_for(&name));
    let o = roomsim(&args);
    assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = stdout.lines().find(|l| l.trim_start().starts_with("output: ")).expect("output line on stdout");
    PathBuf::from(line.trim_start().trim_start_matches("output: "))
}

/// The verdict class two judges must agree on.
fn class(decision: &str) -> Option<&'static str> {
    match decision {
        "accepted" | "soft_failed" => Some("accepted"),
        "rejected" => Some("rejected"),
        // Dropped before judgement (a signature that does not verify): `dag verify` reports
        // these as rejected at stage `signature`.
        "dropped" => Some("rejected"),
        // Outliers (state received on a join) are checked against their own auth events only;
        // they are compared as "not rejected by the DAG" below.
        "outlier" => Some("outlier"),
        _ => None,
    }
}

#[test]
fn every_bundled_scenarios_dags_pass_dag_verify_with_the_servers_verdicts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 6, "the bundled scenarios are found");
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let scenario = roomsim_engine::scenario::load_scenario(&path, &[]).expect("bundled scenarios parse");
        let byzantine: BTreeSet<String> = scenario
            .servers
            .iter()
            .filter(|s| s.byzantine != roomsim_engine::scenario::Byzantine::None)
            .map(|s| s.name.clone())
            .collect();
        let dir = run(&path, &tmp.path().join(name.trim_end_matches(".toml")));
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["invariant_violations"], 0, "{name}: invariants");

        // The reference: `dag verify --keys` on each room's PDUs.
        let mut reference: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
        let rooms: Vec<PathBuf> = std::fs::read_dir(dir.join("rooms"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".pdus.jsonl"))
            .collect();
        assert!(!rooms.is_empty(), "{name}: rooms written");
        for room in rooms {
            let report = tmp.path().join("report.json");
            let o = roomsim(&[
                "dag",
                "verify",
                room.to_str().unwrap(),
                "--keys",
                dir.join("keys.json").to_str().unwrap(),
                "--report",
                report.to_str().unwrap(),
            ]);
            assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
            let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
            for (id, v) in r["verdicts"].as_object().unwrap() {
                let verdict = v["verdict"].as_str().unwrap().to_owned();
                let stage = v["stage"].as_str().map(str::to_owned);
                reference.insert(id.clone(), (verdict, stage));
            }
        }

        // Every honest server's decisions, from the log.
        let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
        let mut compared = 0usize;
        let mut mismatches: Vec<String> = Vec::new();
        for line in log.lines() {
            let rec: serde_json::Value = serde_json::from_str(line).unwrap();
            if rec["kind"] != "decision" {
                continue;
            }
            let server = rec["server"].as_str().unwrap_or_default();
            if byzantine.contains(server) {
                continue;
            }
            let event = rec["event"].as_str().unwrap();
            let decision = rec["decision"].as_str().unwrap();
            let Some(class) = class(decision) else { panic!("{name}: unknown decision {decision}") };
            let Some((verdict, stage)) = reference.get(event) else {
                mismatches.push(format!("{server} judged {event}, which no room file holds"));
                continue;
            };
            compared += 1;
            let agrees = match class {
                "outlier" => verdict == "accepted",
                "rejected" if decision == "dropped" => verdict == "rejected" && stage.as_deref() == Some("signature"),
                c => verdict == c,
            };
            if !agrees {
                mismatches.push(format!(
                    "{server}: {event} {decision} (stage {:?}), dag verify: {verdict} (stage {stage:?})",
                    rec["stage"]
                ));
            }
        }
        assert!(compared > 0, "{name}: decisions compared");
        assert!(
            mismatches.is_empty(),
            "{name}: {} mismatches, first: {:?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(5)]
        );
    }
}
