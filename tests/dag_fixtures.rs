//! Runs `roomsim dag verify` on every bundled fixture DAG and compares the report with the
//! reference implementation's: verdicts, stages, state-before digests, final state and
//! forward extremities must match exactly (reasons may be worded differently).

use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dags")
}

fn gunzip_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check_fixture(name: &str) {
    let dir = fixtures_dir();
    let out = tempfile::tempdir().unwrap();
    let report_path = out.path().join("report.json");
    let status = Command::new(env!("CARGO_BIN_EXE_roomsim"))
        .args(["dag", "verify"])
        .arg(dir.join(format!("{name}.jsonl.gz")))
        .arg("--keys")
        .arg(dir.join(format!("{name}.meta.json.gz")))
        .arg("--report")
        .arg(&report_path)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).unwrap()).unwrap();
    let want = gunzip_json(&dir.join(format!("{name}.expected.json.gz")));
    let mut mismatches = Vec::new();
    for (id, w) in want["verdicts"].as_object().unwrap() {
        let Some(g) = got["verdicts"].get(id) else {
            mismatches.push(format!("{id}: missing from our report"));
            continue;
        };
        for field in ["verdict", "stage", "state_before", "index"] {
            let wv = w.get(field).cloned().unwrap_or(Value::Null);
            let gv = g.get(field).cloned().unwrap_or(Value::Null);
            if wv != gv {
                mismatches.push(format!("{id} (index {}): {field}: want {wv}, got {gv} ({})", w["index"], g["reason"]));
            }
        }
    }
    for field in [
        "events",
        "accepted",
        "rejected",
        "forward_extremities",
        "final_state_digest",
        "final_state",
        "room_id",
        "room_version",
    ] {
        if want[field] != got[field] {
            mismatches.push(format!("{field}: want {}, got {}", want[field], got[field]));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{name}: {} mismatches, first ones:\n{}",
        mismatches.len(),
        mismatches.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn v11_e1000_s3() {
    check_fixture("v11-e1000-s3-seed101");
}
#[test]
fn v12_e1000_s3() {
    check_fixture("v12-e1000-s3-seed102");
}
#[test]
fn v11_e3000_s20() {
    check_fixture("v11-e3000-s20-seed105");
}
#[test]
fn v11_e3000_s6_rich() {
    check_fixture("v11-e3000-s6-seed111-rich");
}
#[test]
fn v12_e3000_s6_rich() {
    check_fixture("v12-e3000-s6-seed112-rich");
}
#[test]
fn v12_e5000_s5() {
    check_fixture("v12-e5000-s5-seed104");
}
#[test]
fn v11_e10000_s10() {
    check_fixture("v11-e10000-s10-seed103");
}
