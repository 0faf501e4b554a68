//! `roomsim shrink`, running the binary: a planted byzantine equivocation shrinks to at most
//! three servers and a handful of events, the minimal file reproduces the predicate, the result
//! is byte-identical on one and two threads; faults and timeline actions of a richer scenario
//! are reduced; a predicate that does not hold, a bad predicate and bad options are clear
//! errors; the budget stops a shrink and says so; `--any-seed` records the seed it found.

mod common;
use common::{fails, ok, roomsim_in, scenario};
use serde_json::Value;
use std::path::{Path, PathBuf};

const PLANTED: &str = "rooms.*.events_missing_at_end > 0";

/// Shrinks in `dir` (the minimal file is `dir/min.toml`, its run under `dir/out`).
fn shrink(dir: &Path, name: &str, extra: &[&str]) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let sc = scenario(name);
    let mut args = vec!["shrink", &sc, "--out", "min.toml", "--out-dir", "out"];
    args.extend_from_slice(extra);
    ok(roomsim_in(dir, &args), name)
}

/// A file `roomsim check` accepts: (servers, rooms, faults) from its verdict, and its
/// `[[timeline]]` entries.
fn check_counts(dir: &Path, file: &str) -> (usize, usize, usize, usize) {
    let (out, _) = ok(roomsim_in(dir, &["check", file]), "check");
    // `min.toml: ok (3 servers, 1 rooms, 5 timeline actions, 0 faults)`; its timeline actions
    // include each room's creation and joins.
    let numbers: Vec<usize> = out
        .split(['(', ',', ')'])
        .filter_map(|part| part.split_whitespace().next().and_then(|n| n.parse().ok()))
        .collect();
    assert_eq!(numbers.len(), 4, "{out}");
    let actions = std::fs::read_to_string(dir.join(file)).unwrap().matches("\n[[timeline]]\n").count();
    (numbers[0], numbers[1], actions, numbers[3])
}

fn summary(run_dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(run_dir.join("summary.json")).unwrap()).unwrap()
}

/// The run directory the stdout names.
fn run_dir(dir: &Path, stdout: &str) -> PathBuf {
    let line = stdout.lines().find_map(|l| l.trim_start().strip_prefix("run: ")).expect("run line on stdout");
    dir.join(line)
}

#[test]
fn the_planted_equivocation_shrinks_reproduces_and_does_not_depend_on_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let one = tmp.path().join("one");
    let (out, err) = shrink(&one, "equivocation.toml", &["--seed", "1", "--until", PLANTED, "--threads", "1"]);
    assert!(out.starts_with("minimal scenario: min.toml\n"), "{out}");
    assert!(err.lines().any(|l| l.starts_with("step 1: ")), "one line per kept step on stderr:\n{err}");
    assert!(err.contains("removed server"), "{err}");
    let minimal = std::fs::read_to_string(one.join("min.toml")).unwrap();

    // At most three servers, a handful of events; the byzantine server is still there.
    let (servers, rooms, _, faults) = check_counts(&one, "min.toml");
    assert!(servers <= 3, "{servers} servers:\n{minimal}");
    assert_eq!((rooms, faults), (1, 0));
    assert!(minimal.contains("byzantine = \"equivocate\""), "{minimal}");
    let dir = run_dir(&one, &out);
    let s = summary(&dir);
    assert!(s["events_created"].as_u64().unwrap() <= 20, "{}", s["events_created"]);
    assert!(s["rooms"]["main"]["events_missing_at_end"].as_u64().unwrap() > 0);
    assert!(dir.join("report.html").is_file() && dir.join("explorer").is_dir() && dir.join("log.jsonl.zst").is_file());

    // The header says what holds, with which seed, how to reproduce it and what was removed.
    let header: Vec<&str> = minimal.lines().take_while(|l| l.starts_with('#')).collect();
    let header = header.join("\n");
    for needed in [
        "# predicate: rooms.*.events_missing_at_end > 0",
        "# holds with seed 1: rooms.*.events_missing_at_end = ",
        "# shrunk from: equivocation.toml (sha256 ",
        "# reproduce: roomsim run min.toml --seed 1",
        "--until 'rooms.*.events_missing_at_end > 0' --check",
        "ended at a fixpoint",
        "# steps kept:",
        "#   1. ",
    ] {
        assert!(header.contains(needed), "{needed:?} missing from the header:\n{header}");
    }
    assert!(!header.contains(env!("CARGO_MANIFEST_DIR")), "no path of the input in the output:\n{header}");

    // Running the minimal file as the header says reproduces the predicate.
    let (_, _) = ok(roomsim_in(&one, &["run", "min.toml", "--seed", "1", "--out", "again", "--no-report"]), "run");
    let again = summary(&one.join("again/equivocation-min/1"));
    assert!(again["rooms"]["main"]["events_missing_at_end"].as_u64().unwrap() > 0, "{again}");
    assert_eq!(again["log_digest"], s["log_digest"], "the same run as the shrink's own");
    let (checked, _) = ok(roomsim_in(&one, &["shrink", "min.toml", "--until", PLANTED, "--check"]), "check");
    assert!(checked.contains("the predicate holds with seed 1"), "{checked}");

    // Two threads: the same minimal file, byte for byte, and the same step lines.
    let two = tmp.path().join("two");
    let (_, err2) = shrink(&two, "equivocation.toml", &["--seed", "1", "--until", PLANTED, "--threads", "2"]);
    assert_eq!(std::fs::read_to_string(two.join("min.toml")).unwrap(), minimal);
    assert_eq!(err2, err);
}

#[test]
fn faults_and_timeline_actions_are_reduced() {
    let tmp = tempfile::tempdir().unwrap();
    let until = "rooms.main.soft_fail_disagreements > 0";
    let (out, err) = shrink(tmp.path(), "partition-heal.toml", &["--until", until]);
    for step in ["removed fault", "removed action", "removed server", "no noise:", "back to"] {
        assert!(err.contains(step), "no {step:?} step:\n{err}");
    }
    // From 6 servers, 4 timeline actions and 3 faults.
    let (servers, _, actions, faults) = check_counts(tmp.path(), "min.toml");
    assert!(servers <= 3 && actions < 4 && faults < 3, "{servers} servers, {actions} actions, {faults} faults");
    let s = summary(&run_dir(tmp.path(), &out));
    assert!(s["rooms"]["main"]["soft_fail_disagreements"].as_u64().unwrap() > 0);
    let minimal = std::fs::read_to_string(tmp.path().join("min.toml")).unwrap();
    assert!(minimal.contains("seed = 11"), "the seed it holds with is the file's own:\n{minimal}");
    let (checked, _) = ok(roomsim_in(tmp.path(), &["shrink", "min.toml", "--until", until, "--check"]), "check");
    assert!(checked.contains("holds with seed 11"), "{checked}");
}

#[test]
fn a_predicate_that_does_not_hold_at_the_start_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("equivocation.toml");
    let o = roomsim_in(tmp.path(), &["shrink", &sc, "--seed", "1", "--until", "rooms.main.auth_disagreements > 0"]);
    let err = fails(o, 1, "does not hold");
    assert!(err.contains("does not hold for equivocation.toml with seed 1"), "{err}");
    assert!(err.contains("rooms.main.auth_disagreements = 0"), "the values the paths had:\n{err}");
    let o = roomsim_in(tmp.path(), &["shrink", &sc, "--seed", "1", "--until", "rooms.nope.x > 0"]);
    assert!(fails(o, 1, "names nothing").contains("rooms.nope.x = (nothing)"));
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing written");
    let o = roomsim_in(tmp.path(), &["shrink", &sc, "--until", PLANTED, "--check"]);
    let _ = fails(o, 1, "--check with the scenario's seed 5");
}

#[test]
fn bad_predicates_and_options_are_located_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("equivocation.toml");
    let err = fails(roomsim_in(tmp.path(), &["shrink", &sc, "--until", "rooms.main.x >"]), 2, "bad predicate");
    assert!(err.contains("--until: predicate, column 15: expected a number"), "{err}");
    assert!(err.contains(&format!("\n  rooms.main.x >\n  {}^", " ".repeat(14))), "a caret under the column:\n{err}");
    let err = fails(roomsim_in(tmp.path(), &["shrink", &sc, "--until", "servers = 4"]), 2, "= for ==");
    assert!(err.contains("column 9") && err.contains("`==`, not `=`"), "{err}");
    let err =
        fails(roomsim_in(tmp.path(), &["shrink", &sc, "--until", "servers > 0", "--budget", "lots"]), 2, "budget");
    assert!(err.contains("--budget lots"), "{err}");
    let err =
        fails(roomsim_in(tmp.path(), &["shrink", &sc, "--until", "servers > 0", "--any-seed", "0"]), 2, "any-seed");
    assert!(err.contains("--any-seed 0"), "{err}");
    let err =
        fails(roomsim_in(tmp.path(), &["shrink", &sc, "--until", "servers > 0", "--set", "network.lose=1"]), 2, "set");
    assert!(err.contains("unknown field `lose`"), "{err}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn the_budget_stops_a_shrink_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let until = "rooms.main.soft_fail_disagreements > 0";
    let (out, _) = shrink(tmp.path(), "partition-heal.toml", &["--until", until, "--budget", "12"]);
    assert!(out.contains("stopped by the budget (12 runs)"), "{out}");
    let minimal = std::fs::read_to_string(tmp.path().join("min.toml")).unwrap();
    let line = minimal.lines().find(|l| l.starts_with("# shrink: ")).unwrap();
    let runs: u64 = line.split(", ").nth(1).and_then(|r| r.split(' ').next()).unwrap().parse().unwrap();
    assert!(runs <= 12, "{line}");
    assert!(line.contains("stopped by the budget"), "{line}");
    // What it kept so far still shows the predicate.
    let s = summary(&run_dir(tmp.path(), &out));
    assert!(s["rooms"]["main"]["soft_fail_disagreements"].as_u64().unwrap() > 0);
}

#[test]
fn any_seed_keeps_what_some_seed_shows_and_records_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    // Seed 5 (the scenario's) does not show it; seeds 6 and 7 do.
    let until = "rooms.main.byzantine_in_room > 0 && rooms.main.events_missing_at_end > 0";
    let (out, _) =
        shrink(tmp.path(), "equivocation.toml", &["--until", until, "--any-seed", "3", "--set", "network.loss=0.01"]);
    let seed_line = out.lines().find(|l| l.contains("predicate holds with seed")).unwrap();
    let seed: u64 = seed_line.split("seed ").nth(1).and_then(|s| s.split(':').next()).unwrap().parse().unwrap();
    assert!((6..=7).contains(&seed), "{out}");
    let minimal = std::fs::read_to_string(tmp.path().join("min.toml")).unwrap();
    assert!(minimal.contains(&format!("# reproduce: roomsim run min.toml --seed {seed}\n")), "{minimal}");
    assert!(minimal.contains(&format!("seed = {seed}\n")), "{minimal}");
    assert!(minimal.contains("seed 5, --set network.loss=0.01"), "the overrides are named:\n{minimal}");
    let (servers, _, _, _) = check_counts(tmp.path(), "min.toml");
    assert!(servers <= 3, "{minimal}");
}
