//! Integration tests that run the `roomsim` binary on the bundled scenarios: every scenario
//! runs (with invariant checks), outputs are identical on 1 and 2 threads, replay reproduces a
//! run, diff finds where runs part ways, and the PDUs a run writes pass `dag verify`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn roomsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomsim")).args(args).output().expect("run roomsim")
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name).to_string_lossy().into_owned()
}

/// Runs a bundled scenario with a plain `log.jsonl` (the tests read and tamper with it; the
/// compressed default is tested on its own below).
fn run(name: &str, out: &Path, extra: &[&str]) -> PathBuf {
    let sc = scenario(name);
    let mut args = vec![
        "run",
        &sc,
        "--out",
        out.to_str().unwrap(),
        "--check-invariants",
        "--no-report",
        "--log-compression",
        "none",
    ];
    args.extend_from_slice(extra);
    let o = roomsim(&args);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{name}: {stderr}");
    // Results go to stdout, progress and diagnostics to stderr.
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = stdout.lines().find(|l| l.trim_start().starts_with("output: ")).expect("output line on stdout");
    PathBuf::from(line.trim_start().trim_start_matches("output: "))
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&read(&dir.join("summary.json"))).unwrap()
}

fn assert_converged_without_auth_disagreement(dir: &Path) {
    let s = summary(dir);
    for (room, r) in s["rooms"].as_object().unwrap() {
        assert_eq!(r["auth_disagreements"], 0, "{room}: {r}");
        assert_eq!(r["agreed_at_end"], true, "{room}: {r}");
    }
    assert_eq!(s["invariant_violations"], 0);
}

#[test]
fn quickstart_runs_and_is_identical_on_one_and_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let one = run("quickstart.toml", &tmp.path().join("t1"), &["--threads", "1"]);
    let two = run("quickstart.toml", &tmp.path().join("t2"), &["--threads", "2"]);
    for f in ["log.jsonl", "summary.json", "metrics.csv", "keys.json", "rooms/lobby.pdus.jsonl", "rooms/ops.pdus.jsonl"]
    {
        assert!(read(&one.join(f)) == read(&two.join(f)), "{f} differs between 1 and 2 threads");
    }
    assert_converged_without_auth_disagreement(&one);
    let csv = String::from_utf8(read(&one.join("metrics.csv"))).unwrap();
    assert!(csv.starts_with("time_ms,server,room,measure,value\n"));
    assert!(csv.contains(",forward_extremities,"), "DAG width is sampled");
}

#[test]
fn every_small_bundled_scenario_runs_with_invariants() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "partition-heal.toml",
        "equivocation.toml",
        "crash-restart.toml",
        "invite-only.toml",
        "creator-crash.toml",
        "churn.toml",
    ] {
        let dir = run(name, tmp.path(), &[]);
        assert_converged_without_auth_disagreement(&dir);
    }
}

#[test]
fn large_scenario_runs_shrunk() {
    let tmp = tempfile::tempdir().unwrap();
    // Same shape (200 servers, 20 rooms, the partition), a shorter and quieter run.
    let dir = run(
        "large.toml",
        tmp.path(),
        &["--set", "scenario.end=\"150s\"", "--set", "faults.0.at=\"100s\"", "--set", "faults.0.duration=\"20s\""],
    );
    let s = summary(&dir);
    assert!(s["events_created"].as_u64().unwrap() > 0);
}

#[test]
fn replay_reproduces_a_run_and_detects_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run("partition-heal.toml", tmp.path(), &[]);
    let o = roomsim(&["replay", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Flip one logged decision: replay must stop there.
    let log = String::from_utf8(read(&dir.join("log.jsonl"))).unwrap();
    let tampered = log.replacen("\"decision\":\"accepted\"", "\"decision\":\"rejected\"", 1);
    std::fs::write(dir.join("log.jsonl"), tampered).unwrap();
    let o = roomsim(&["replay", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    // The verdict is replay's result: stdout.
    assert!(String::from_utf8_lossy(&o.stdout).contains("replay diverged at log record"));
}

#[test]
fn the_default_log_is_zstd_compressed_and_replays_diffs_and_digests_as_the_plain_one() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = run("partition-heal.toml", &tmp.path().join("plain"), &[]);
    let sc = scenario("partition-heal.toml");
    let out = tmp.path().join("zst");
    let o = roomsim(&["run", &sc, "--out", out.to_str().unwrap(), "--no-report"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let zst = out.join("partition-heal").join(summary(&plain)["seed"].to_string());
    assert!(zst.join("log.jsonl.zst").exists() && !zst.join("log.jsonl").exists());
    assert_eq!(summary(&zst)["log_digest"], summary(&plain)["log_digest"], "one digest for both forms");
    let (z, p) = (read(&zst.join("log.jsonl.zst")).len(), read(&plain.join("log.jsonl")).len());
    assert!(z * 4 < p, "compressed {z} B vs plain {p} B");
    let o = roomsim(&["replay", zst.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = roomsim(&["diff", zst.to_str().unwrap(), plain.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("identical: "));
    // A plain re-run into the compressed run's directory replaces its log: one log per run.
    let o = roomsim(&["run", &sc, "--out", out.to_str().unwrap(), "--no-report", "--log-compression", "none"]);
    assert!(o.status.success());
    assert!(zst.join("log.jsonl").exists() && !zst.join("log.jsonl.zst").exists());
}

#[test]
fn replay_compares_sends_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run("quickstart.toml", tmp.path(), &[]);
    let log = String::from_utf8(read(&dir.join("log.jsonl"))).unwrap();
    // Redirect one logged send of a transaction to another destination: the replayed server
    // still sends it where it did, so replay must report the send record.
    let (n, line) = log
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(r#""kind":"send","to":1,"#) && l.contains(r#""endpoint":"send""#))
        .expect("a transaction sent to node 1");
    let tampered: Vec<String> = log
        .lines()
        .enumerate()
        .map(|(i, l)| if i == n { line.replacen(r#""to":1,"#, r#""to":2,"#, 1) } else { l.to_owned() })
        .collect();
    std::fs::write(dir.join("log.jsonl"), tampered.join("\n") + "\n").unwrap();
    let o = roomsim(&["replay", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let verdict = String::from_utf8_lossy(&o.stdout);
    assert!(verdict.contains(&format!("replay diverged at log record {n}")), "{verdict}");
}

#[test]
fn a_run_with_log_digest_keeps_the_digest_and_refuses_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let full = run("quickstart.toml", &tmp.path().join("full"), &[]);
    let digest = run("quickstart.toml", &tmp.path().join("digest"), &["--log", "digest"]);
    assert_eq!(summary(&full)["log_digest"], summary(&digest)["log_digest"]);
    assert!(summary(&full)["log_digest"].is_string());
    assert_eq!(read(&digest.join("log.jsonl")).len(), 0);
    let o = roomsim(&["replay", digest.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("kept no log"));
}

#[test]
fn diff_finds_where_two_seeds_part_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let a = run("crash-restart.toml", &tmp.path().join("a"), &["--seed", "1"]);
    let b = run("crash-restart.toml", &tmp.path().join("b"), &["--seed", "2"]);
    let o = roomsim(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("part ways at log record"));
    let o = roomsim(&["diff", a.to_str().unwrap(), a.to_str().unwrap()]);
    assert!(o.status.success());
}

#[test]
fn a_runs_pdus_pass_dag_verify_with_its_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run("quickstart.toml", tmp.path(), &[]);
    for room in ["lobby", "ops"] {
        let report = tmp.path().join(format!("{room}.report.json"));
        let o = roomsim(&[
            "dag",
            "verify",
            dir.join(format!("rooms/{room}.pdus.jsonl")).to_str().unwrap(),
            "--keys",
            dir.join("keys.json").to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let r: serde_json::Value = serde_json::from_slice(&read(&report)).unwrap();
        let bad_signatures = r["verdicts"]
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v["stage"] == "signature" || v["stage"] == "hash")
            .count();
        assert_eq!(bad_signatures, 0, "honest servers' PDUs all verify");
        assert_eq!(r["events"], summary(&dir)["rooms"][room]["events"]);
    }
}

#[test]
fn check_reports_located_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("[scenario]\nname = \"x\"\nend = \"10s\"\nbogus = 1\n[[servers]]\nname = \"hs1\"\n", "4:1"),
        ("[scenario]\nname = \"x\"\nend = \"ten seconds\"\n[[servers]]\nname = \"hs1\"\n", "3:7"),
        ("[scenario]\nname = \"x\"\nend = \"10s\"\n[[servers]]\nname = \"hs1\"\n[[faults]]\nat = \"1s\"\nkind = \"crash\"\nserver = \"hs9\"\n", "9:10"),
    ];
    for (i, (text, loc)) in cases.iter().enumerate() {
        let path = tmp.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let o = roomsim(&["check", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(&format!("bad{i}.toml:{loc}:")), "case {i}: expected location {loc} in {err}");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn experimental_room_version_not_simulated_is_refused_by_check_and_judged_by_dag_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = tmp.path().join("exp.toml");
    let text = "[scenario]\nname = \"x\"\nend = \"10s\"\n[[servers]]\nname = \"hs1\"\n[[rooms]]\nname = \"r\"\n\
                version = \"org.matrix.msc4345.12\"\ncreator = \"@u0:hs1\"\n";
    std::fs::write(&scenario, text).unwrap();
    let o = roomsim(&["check", scenario.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("exp.toml:8:11:"), "{err}");
    assert!(
        err.contains("room version \"org.matrix.msc4345.12\" is experimental and the simulator does not run it yet"),
        "{err}"
    );
    // MSC4243 rooms are simulated.
    std::fs::write(&scenario, text.replace("org.matrix.msc4345.12", "org.matrix.msc4243.12")).unwrap();
    let o = roomsim(&["check", scenario.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let dag = tmp.path().join("exp.jsonl");
    let create = r#"{"auth_events":[],"content":{"room_version":"org.matrix.msc4345.12"},"depth":1,"origin_server_ts":1,"prev_events":[],"sender":"@u0:hs1","state_key":"","type":"m.room.create"}"#;
    std::fs::write(&dag, create).unwrap();
    let o = roomsim(&["dag", "verify", dag.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    // dag verify takes MSC4345 from the create event; a sender that names a domain instead of a
    // server key is then a malformed line, left out and named with its line and field.
    assert!(err.contains("exp.jsonl:1: invalid, left out: sender:") && err.contains("server key (MSC4345)"), "{err}");
    // dag verify judges an MSC4243 DAG (this create event's sender is no account key: it is
    // rejected at the signature stage, not refused).
    std::fs::write(&dag, create.replace("org.matrix.msc4345.12", "org.matrix.msc4243.12")).unwrap();
    let o = roomsim(&["dag", "verify", dag.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("not implemented yet"), "{err}");
    std::fs::write(&dag, create.replace("org.matrix.msc4345.12", "13")).unwrap();
    let o = roomsim(&["dag", "verify", dag.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unsupported room version \"13\"; supported versions are \"11\", \"12\""), "{err}");
}

#[test]
fn dag_verify_names_line_and_field_of_malformed_input() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run("crash-restart.toml", tmp.path(), &[]);
    let text = String::from_utf8(read(&dir.join("rooms/main.pdus.jsonl"))).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[3] = lines[3].replacen("\"depth\":", "\"depth\":\"x\",\"_\":", 1);
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    // The malformed line is an invalid verdict naming its line and field; the rest is judged.
    let o = roomsim(&["dag", "verify", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("bad.jsonl:4: invalid, left out: depth: expected an integer"), "{err}");
    // An event whose parents are absent is rejected with stage `missing`, not a crash.
    let missing = tmp.path().join("missing.jsonl");
    let without_third: Vec<&str> = text.lines().enumerate().filter(|(i, _)| *i != 2).map(|(_, l)| l).collect();
    std::fs::write(&missing, without_third.join("\n")).unwrap();
    let report = tmp.path().join("missing.json");
    let o = roomsim(&["dag", "verify", missing.to_str().unwrap(), "--report", report.to_str().unwrap()]);
    assert!(o.status.success());
    let r: serde_json::Value = serde_json::from_slice(&read(&report)).unwrap();
    assert!(r["verdicts"].as_object().unwrap().values().any(|v| v["stage"] == "missing"));
}

#[test]
fn dag_verify_reads_every_member_of_a_concatenated_gzip_file() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let dir = run("quickstart.toml", tmp.path(), &[]);
    let text = String::from_utf8(read(&dir.join("rooms/lobby.pdus.jsonl"))).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = lines.split_at(lines.len() / 2);
    let mut gz = Vec::new();
    for part in [a, b] {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all((part.join("\n") + "\n").as_bytes()).unwrap();
        gz.extend(e.finish().unwrap());
    }
    let path = tmp.path().join("two-members.jsonl.gz");
    std::fs::write(&path, gz).unwrap();
    let report = tmp.path().join("r.json");
    let o = roomsim(&["dag", "verify", path.to_str().unwrap(), "--report", report.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&read(&report)).unwrap();
    assert_eq!(r["events"].as_u64(), Some(lines.len() as u64), "both gzip members were read");
}

/// A three-way split that never heals, with a ban on one side (45 s) and a join-rule change on
/// another (50 s): the sides end with different states, so room `main` does not agree by the
/// end. `run` says so in words (never "null ms"), exits 0 by default and 1 with
/// `--fail-on-divergence`; the report's banner is red and names the room.
#[test]
fn a_run_that_never_agrees_says_so_and_can_fail() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("partition-heal.toml")).unwrap().replace("duration = \"90s\"", "");
    let path = tmp.path().join("split.toml");
    std::fs::write(&path, text).unwrap();
    let out = tmp.path().join("out");
    let args = ["run", path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--no-progress"];
    let o = roomsim(&args);
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("room main:") && stdout.contains("did not agree by the end"), "{stdout}");
    assert!(!stdout.contains("null ms") && !stdout.contains("null"), "{stdout}");
    let dir = out.join("partition-heal").join("11");
    let s = summary(&dir);
    assert_eq!(s["rooms"]["main"]["agreed_at_end"], false);
    assert_eq!(s["rooms"]["main"]["time_to_agreement_ms"], serde_json::Value::Null);
    let report = String::from_utf8(read(&dir.join("report.html"))).unwrap();
    assert!(report.contains("verdict bad") && report.contains("Room main did not agree by the end"), "banner");
    let mut failing = args.to_vec();
    failing.push("--fail-on-divergence");
    let o = roomsim(&failing);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("room main did not agree by the end of the run"));
}

/// A room that drains: @u0:hs3 leaves at 20 s, the room is invite-only since 10 s, its join
/// at 30 s fails. The report's banner is amber (the room agrees, a member is missing), names
/// the member and why, and lists it in a "Members missing" table.
#[test]
fn missing_members_turn_the_banner_amber() {
    let tmp = tempfile::tempdir().unwrap();
    let text = r#"
[scenario]
name = "drain"
seed = 3
end = "60s"
[defaults]
users = 1
[[servers]]
prefix = "hs"
count = 3
[[rooms]]
name = "main"
version = "11"
creator = "@u0:hs1"
join_rule = "public"
members = ["*"]
[network]
latency = { dist = "fixed", value = "30ms" }
min_latency = "10ms"
[[timeline]]
at = "10s"
action = "join_rule"
room = "main"
user = "@u0:hs1"
join_rule = "invite"
[[timeline]]
at = "20s"
action = "leave"
room = "main"
user = "@u0:hs3"
[[timeline]]
at = "30s"
action = "join"
room = "main"
user = "@u0:hs3"
"#;
    let path = tmp.path().join("drain.toml");
    std::fs::write(&path, text).unwrap();
    let out = tmp.path().join("out");
    let o = roomsim(&["run", path.to_str().unwrap(), "--out", out.to_str().unwrap(), "--fail-on-divergence"]);
    assert!(o.status.success(), "agreement was reached: {}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        stdout.contains("2 of 3 expected servers in the room") && stdout.contains("1 member(s) missing"),
        "{stdout}"
    );
    let report = String::from_utf8(read(&out.join("drain/3/report.html"))).unwrap();
    assert!(report.contains("verdict warn"), "amber banner");
    assert!(report.contains("Room main: 1 member missing: @u0:hs3 (join"), "the banner names the member and why");
    assert!(report.contains("<h3>Members missing</h3>"));
}
