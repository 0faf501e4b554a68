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

/// Runs `dag verify --keys --report` on `dag` with `threads` worker threads; the report bytes.
fn report_bytes(dag: &Path, keys: &Path, threads: usize) -> Vec<u8> {
    let out = tempfile::tempdir().unwrap();
    let report_path = out.path().join("report.json");
    let status = Command::new(env!("CARGO_BIN_EXE_roomsim"))
        .args(["dag", "verify"])
        .arg(dag)
        .arg("--keys")
        .arg(keys)
        .arg("--report")
        .arg(&report_path)
        .args(["--threads", &threads.to_string()])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    std::fs::read(&report_path).unwrap()
}

/// The report does not depend on the thread count (parallel work is merged in a fixed order).
#[test]
fn report_identical_on_1_and_2_threads() {
    let dir = fixtures_dir();
    for name in ["v11-e3000-s6-seed111-rich", "v12-e3000-s6-seed112-rich"] {
        let dag = dir.join(format!("{name}.jsonl.gz"));
        let keys = dir.join(format!("{name}.meta.json.gz"));
        let one = report_bytes(&dag, &keys, 1);
        assert!(one == report_bytes(&dag, &keys, 2), "{name}: reports differ between 1 and 2 threads");
    }
}

/// A wrong signature (the event ID and content hash do not cover signatures): that event is
/// rejected at the signature stage, whatever the thread count (on more than one thread the
/// judging pass first runs without the signature verdicts and is then redone).
#[test]
fn bad_signature_rejected_on_1_and_2_threads() {
    let dir = fixtures_dir();
    let name = "v12-e1000-s3-seed102";
    let bytes = std::fs::read(dir.join(format!("{name}.jsonl.gz"))).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
    let mut lines: Vec<Value> =
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect();
    // Swap the signature of an event for the one of another event by the same server.
    let signature_of = |v: &Value| -> (String, String, String) {
        let (server, block) = v["signatures"].as_object().unwrap().iter().next().unwrap();
        let (key, sig) = block.as_object().unwrap().iter().next().unwrap();
        (server.clone(), key.clone(), sig.as_str().unwrap().to_owned())
    };
    let victim = 10;
    let (server, key, own) = signature_of(&lines[victim]);
    let other = lines.iter().map(signature_of).find(|(s, k, sig)| *s == server && *k == key && *sig != own).unwrap().2;
    lines[victim]["signatures"][&server][&key] = Value::String(other);
    let out = tempfile::tempdir().unwrap();
    let dag = out.path().join("tampered.jsonl");
    std::fs::write(&dag, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let keys = dir.join(format!("{name}.meta.json.gz"));
    let one = report_bytes(&dag, &keys, 1);
    assert!(one == report_bytes(&dag, &keys, 2), "reports differ between 1 and 2 threads");
    let report: Value = serde_json::from_slice(&one).unwrap();
    let victim_id = report["verdicts"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, v)| v["stage"] == "signature")
        .map(|(id, _)| id.clone());
    assert!(victim_id.is_some(), "the tampered event is not rejected at the signature stage");
}

/// `report_json` writes exactly what serde_json's pretty printer writes.
#[test]
fn report_json_is_serde_pretty() {
    use roomsim_engine::protocol::verify;
    let dir = fixtures_dir();
    let name = "v12-e1000-s3-seed102";
    let bytes = std::fs::read(dir.join(format!("{name}.jsonl.gz"))).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).unwrap();
    let (version, lines) = verify::parse_lines(&text).unwrap();
    let verified = verify::verify_dag(version, lines.into_iter().map(|(_, p)| p).collect(), &Default::default());
    let mut want = serde_json::to_vec_pretty(&verified.report).unwrap();
    want.push(b'\n');
    assert!(verify::report_json(&verified.report) == want);
}
