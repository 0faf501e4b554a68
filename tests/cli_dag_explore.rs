//! `roomsim dag explore` on every bundled fixture DAG: the page is written, is self-contained
//! (no network URL in a script or style), and embeds exactly as many events as the DAG has,
//! each with `dag verify`'s verdict and the state before it (its digest is the reference's).
//! Bad input is an error naming the file, never a panic.

mod explorer_page;

use explorer_page::embedded;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dags")
}

/// Names of the fixture DAGs (`<name>.jsonl.gz`), sorted.
fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str().and_then(|n| n.strip_suffix(".jsonl.gz")).map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn gunzip_json(path: &Path) -> Value {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn dag_explore_writes_every_fixture_dag_with_all_its_events_and_verdicts() {
    let names = fixtures();
    assert!(names.len() >= 7, "fixtures found: {names:?}");
    let tmp = tempfile::tempdir().unwrap();
    for name in names {
        let dir = fixtures_dir();
        let out = tmp.path().join(format!("{name}.html"));
        let o = Command::new(env!("CARGO_BIN_EXE_roomsim"))
            .args(["dag", "explore"])
            .arg(dir.join(format!("{name}.jsonl.gz")))
            .arg("--keys")
            .arg(dir.join(format!("{name}.meta.json.gz")))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.starts_with(&format!("wrote {}", out.display())), "{name}: {stdout}");
        let html = std::fs::read_to_string(&out).unwrap();
        assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "{name}: nothing fetched");
        let data = embedded(&html);
        let expected = gunzip_json(&dir.join(format!("{name}.expected.json.gz")));
        let ids = data["ids"].as_array().unwrap();
        assert_eq!(ids.len() as u64, expected["events"].as_u64().unwrap(), "{name}: events embedded");
        assert_eq!(data["pdus"].as_array().unwrap().len(), ids.len(), "{name}: one PDU per event");
        let rejected: std::collections::BTreeMap<u64, String> = data["ref_rejected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (r[0].as_u64().unwrap(), data["strings"][r[1].as_u64().unwrap() as usize].as_str().unwrap().to_owned())
            })
            .collect();
        let states = explorer_page::states(&data);
        let mut digests = std::collections::HashMap::new();
        let want = expected["verdicts"].as_object().unwrap();
        for (i, id) in ids.iter().enumerate() {
            let id = id.as_str().unwrap();
            let (verdict, stage) = match rejected.get(&(i as u64)) {
                Some(stage) => ("rejected", Value::from(stage.as_str())),
                None => ("accepted", Value::Null),
            };
            assert_eq!(want[id]["verdict"], verdict, "{name}: {id}");
            assert_eq!(want[id]["stage"].clone(), stage, "{name}: {id}");
            let entry = data["sb"][i].as_u64().expect("every event has a state before") as usize;
            let digest = digests.entry(entry).or_insert_with(|| explorer_page::digest(&states[entry]));
            assert_eq!(want[id]["state_before"].as_str(), Some(digest.as_str()), "{name}: state before {id}");
            for p in data["prev"][i].as_array().unwrap() {
                let p = p.as_u64().unwrap() as usize;
                assert!(
                    data["layer"][p].as_u64() < data["layer"][i].as_u64(),
                    "{name}: a prev event is on a layer above"
                );
            }
        }
    }
}

#[test]
fn dag_explore_default_output_is_beside_the_dag() {
    let tmp = tempfile::tempdir().unwrap();
    let dag = tmp.path().join("room.jsonl.gz");
    std::fs::copy(fixtures_dir().join("v12-e1000-s3-seed102.jsonl.gz"), &dag).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_roomsim")).args(["dag", "explore"]).arg(&dag).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tmp.path().join("room.explorer.html").is_file());
}

#[test]
fn dag_explore_on_bad_input_names_the_file_and_line_and_does_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "not json\n{\"type\": 1}\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_roomsim")).args(["dag", "explore"]).arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("bad.jsonl") && stderr.contains("line 1"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(o.stdout.is_empty(), "no result on stdout");
    let missing = tmp.path().join("missing.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_roomsim")).args(["dag", "explore"]).arg(&missing).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.jsonl"));

    // A malformed line inside a good DAG is left out with a message naming the line.
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(fixtures_dir().join("v12-e1000-s3-seed102.jsonl.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mixed = tmp.path().join("mixed.jsonl");
    std::fs::write(&mixed, format!("{text}{{broken\n")).unwrap();
    let n = text.lines().filter(|l| !l.trim().is_empty()).count() + 1;
    let out = tmp.path().join("mixed.html");
    let o = Command::new(env!("CARGO_BIN_EXE_roomsim"))
        .args(["dag", "explore"])
        .arg(&mixed)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("mixed.jsonl:{n}: invalid, left out")), "{stderr}");
    assert_eq!(embedded(&std::fs::read_to_string(&out).unwrap())["ids"].as_array().unwrap().len(), 1000);
}
