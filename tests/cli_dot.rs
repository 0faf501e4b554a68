//! Graphviz stays out of `run` and `report`, and `dag dot` is bounded: a run writes its report
//! with no `dot` on PATH (nothing is spawned), and `dag dot` refuses DAGs above its cap, stops a
//! `dot` that runs too long, and says why a picture was not rendered.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn roomsim_with_path(args: &[&str], path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomsim")).args(args).env("PATH", path).output().expect("run roomsim")
}

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel).to_string_lossy().into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A directory with nothing in it, used as PATH: no program can be found.
fn empty_path(tmp: &Path) -> PathBuf {
    let dir = tmp.join("empty-path");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn run_writes_its_report_without_graphviz() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = roomsim_with_path(
        &["run", &repo("scenarios/quickstart.toml"), "--out", out.to_str().unwrap()],
        &empty_path(tmp.path()),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let dir = out.join("quickstart").join("1");
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html written");
    assert!(html.contains("roomsim dag dot rooms/lobby.pdus.jsonl"), "the report says how to draw the DAG");
    let rooms: Vec<String> = std::fs::read_dir(dir.join("rooms"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(rooms.iter().all(|f| f.ends_with(".pdus.jsonl")), "no DOT or SVG from run: {rooms:?}");
    // `report` alone, too.
    std::fs::remove_file(dir.join("report.html")).unwrap();
    let o = roomsim_with_path(&["report", dir.to_str().unwrap()], &empty_path(tmp.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(dir.join("report.html").is_file());
}

#[test]
fn dag_dot_refuses_dags_above_its_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let dag = repo("tests/fixtures/dags/v11-e3000-s20-seed105.jsonl.gz");
    let out = tmp.path().join("big.dot");
    let o = roomsim_with_path(&["dag", "dot", &dag, "--out", out.to_str().unwrap()], &empty_path(tmp.path()));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("3000 events, more than the cap of 2000"), "{err}");
    assert!(err.contains("--max-events 3000"), "{err}");
    assert!(!out.exists());
    assert!(o.stdout.is_empty(), "diagnostics go to stderr");
    // A lower cap given on the command line applies too, and a higher one lets it through.
    let small = repo("tests/fixtures/dags/v12-e1000-s3-seed102.jsonl.gz");
    let o = roomsim_with_path(&["dag", "dot", &small, "--max-events", "999"], &empty_path(tmp.path()));
    assert!(stderr(&o).contains("more than the cap of 999"), "{}", stderr(&o));
    let o = roomsim_with_path(&["dag", "dot", &dag, "--max-events", "3000"], &empty_path(tmp.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("digraph dag {"), "DOT on stdout");
}

#[test]
fn dag_dot_without_graphviz_writes_the_dot_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dag = repo("tests/fixtures/dags/v12-e1000-s3-seed102.jsonl.gz");
    let out = tmp.path().join("g.dot");
    let o = roomsim_with_path(&["dag", "dot", &dag, "--out", out.to_str().unwrap()], &empty_path(tmp.path()));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("Graphviz `dot` is not installed"), "{}", stderr(&o));
    assert!(std::fs::read_to_string(&out).unwrap().starts_with("digraph dag {"));
    assert!(!out.with_extension("svg").exists());
}

/// A stand-in `dot` (a shell script) in its own PATH directory.
#[cfg(unix)]
fn fake_dot(tmp: &Path, name: &str, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dot");
    std::fs::write(&path, format!("#!/bin/sh\nPATH=/usr/bin:/bin\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[cfg(unix)]
#[test]
fn dag_dot_reports_a_failing_dot_with_its_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let path = fake_dot(tmp.path(), "failing", "echo 'Error: syntax error in line 7' >&2\nexit 3");
    let dag = repo("tests/fixtures/dags/v12-e1000-s3-seed102.jsonl.gz");
    let out = tmp.path().join("g.dot");
    let o = roomsim_with_path(&["dag", "dot", &dag, "--out", out.to_str().unwrap()], &path);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("`dot` exited with exit status: 3"), "{err}");
    assert!(err.contains("Error: syntax error in line 7"), "{err}");
    assert!(out.is_file(), "the DOT is kept");
}

#[cfg(unix)]
#[test]
fn dag_dot_stops_a_dot_that_runs_past_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let path = fake_dot(tmp.path(), "slow", "exec sleep 60");
    let dag = repo("tests/fixtures/dags/v12-e1000-s3-seed102.jsonl.gz");
    let out = tmp.path().join("g.dot");
    let started = std::time::Instant::now();
    let o = roomsim_with_path(&["dag", "dot", &dag, "--out", out.to_str().unwrap(), "--timeout", "1"], &path);
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "killed, not waited for");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("still running after 1 s and was stopped"), "{err}");
}
