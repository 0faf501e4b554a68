//! Output hygiene, running the `roomsim` binary: outputs do not depend on the path a scenario
//! was given by; a re-run that fails or is interrupted leaves the earlier run directory byte for
//! byte; every command puts its result on stdout and progress and diagnostics on stderr.

mod common;
use common::{ok, roomsim, roomsim_in, scenario, text};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                all.insert(path.strip_prefix(dir).unwrap().to_owned(), std::fs::read(&path).unwrap());
            }
        }
    }
    all
}

/// Names of the entries of `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn outputs_do_not_depend_on_the_path_the_scenario_was_given_by() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    std::fs::create_dir_all(site.join("scenarios")).unwrap();
    let source = std::fs::read(scenario("quickstart.toml")).unwrap();
    std::fs::write(site.join("scenarios/quickstart.toml"), &source).unwrap();
    // The same file three ways: relative from its folder's parent, bare from its folder, absolute.
    let absolute = site.join("scenarios/quickstart.toml").to_string_lossy().into_owned();
    let runs = [
        (site.clone(), "scenarios/quickstart.toml".to_string(), tmp.path().join("o1")),
        (site.join("scenarios"), "quickstart.toml".to_string(), tmp.path().join("o2")),
        (tmp.path().to_owned(), absolute, tmp.path().join("o3")),
    ];
    let mut outputs = Vec::new();
    for (cwd, path, out) in &runs {
        let o = roomsim_in(cwd, &["run", path, "--out", out.to_str().unwrap(), "--log", "digest"]);
        ok(o, &format!("run {path}"));
        let dir = out.join("quickstart").join("1");
        outputs
            .push((std::fs::read(dir.join("summary.json")).unwrap(), std::fs::read(dir.join("report.html")).unwrap()));
    }
    for (i, (summary, report)) in outputs.iter().enumerate().skip(1) {
        assert!(summary == &outputs[0].0, "summary.json of run {i} differs from run 0");
        assert!(report == &outputs[0].1, "report.html of run {i} differs from run 0");
    }
    let summary: serde_json::Value = serde_json::from_slice(&outputs[0].0).unwrap();
    assert_eq!(summary["scenario_file"], "quickstart.toml");
    assert_eq!(summary["scenario_sha256"], sha256_hex(&source).as_str());
    let tmp_path = tmp.path().to_string_lossy().into_owned();
    assert!(!text(&outputs[0].1).contains(&tmp_path), "report.html holds a path");
    assert!(!text(&outputs[0].1).contains("scenarios/quickstart.toml"), "report.html holds the typed path");
}

#[test]
fn a_sweep_run_from_two_sites_merges() {
    let tmp = tempfile::tempdir().unwrap();
    // Two "cluster sites": the scenario reached by different relative and absolute paths.
    let site_a = tmp.path().join("a");
    std::fs::create_dir_all(&site_a).unwrap();
    std::fs::copy(scenario("sweep-quick.toml"), site_a.join("sweep-quick.toml")).unwrap();
    let out_a = tmp.path().join("out-a");
    let out_b = tmp.path().join("out-b");
    let shard = ["--shard", "1/6"];
    let mut args = vec!["sweep", "sweep-quick.toml", "--out", out_a.to_str().unwrap()];
    args.extend(shard);
    let (stdout, stderr) = ok(roomsim_in(&site_a, &args), "sweep at site a");
    assert!(stdout.contains("wrote "), "the result (where it wrote) is on stdout: {stdout}");
    assert!(stderr.contains("3 cells in this shard, 0 already done, 3 to run"), "progress on stderr: {stderr}");
    let absolute = site_a.join("sweep-quick.toml").to_string_lossy().into_owned();
    let mut args = vec!["sweep", &absolute, "--out", out_b.to_str().unwrap()];
    args.extend(shard);
    ok(roomsim_in(tmp.path(), &args), "sweep at site b");
    let (a, b) = (out_a.join("sweep-quick-sweep"), out_b.join("sweep-quick-sweep"));
    let merged = tmp.path().join("merged");
    let o = roomsim(&["merge", a.to_str().unwrap(), b.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    let (stdout, stderr) = ok(o, "merge of the two sites");
    // Shard 1/6 holds cells 0, 6 and 12; both sites ran them: 3 distinct cells, identical.
    assert!(stdout.contains("merged 3 cells"), "{stdout}\n{stderr}");
    assert!(!stderr.contains("differs"), "{stderr}");
    let csv = std::fs::read_to_string(merged.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3, "{csv}");
    assert!(!csv.lines().next().unwrap().contains("scenario.seed"), "the seed is no parameter column: {csv}");
    assert!(!csv.contains("\"\"\""), "values quoted once: {csv}");
}

/// Runs quickstart into `out` (report included), returns its run directory.
fn good_run(out: &Path) -> PathBuf {
    ok(roomsim(&["run", &scenario("quickstart.toml"), "--out", out.to_str().unwrap()]), "good run");
    out.join("quickstart").join("1")
}

/// `<seed>.partial-<first 12 hex digits of scenario_sha256>`, beside the run directory.
fn partial_dir(dir: &Path) -> PathBuf {
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let tag = &summary["scenario_sha256"].as_str().unwrap()[..12];
    dir.with_file_name(format!("1.partial-{tag}"))
}

#[test]
fn a_failing_rerun_leaves_the_earlier_outputs_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_run(tmp.path());
    let before = files(&dir);
    assert!(before.contains_key(Path::new("log.jsonl.zst")) && before.contains_key(Path::new("report.html")));
    // Occupy the path of the partial directory with a file (not ours to remove): the re-run fails.
    let partial = partial_dir(&dir);
    std::fs::write(&partial, b"someone else's file").unwrap();
    let o = roomsim(&["run", &scenario("quickstart.toml"), "--out", tmp.path().to_str().unwrap()]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&partial.display().to_string()) && err.contains("not a directory"), "{err}");
    assert!(files(&dir) == before, "the earlier run directory changed");
    assert_eq!(std::fs::read(&partial).unwrap(), b"someone else's file");
    // Once the path is free, a re-run replaces the directory, identically (same seed), and
    // leaves neither a partial nor an old copy beside it.
    std::fs::remove_file(&partial).unwrap();
    let again = good_run(tmp.path());
    assert!(files(&again) == before, "a successful re-run differs");
    assert_eq!(entries(dir.parent().unwrap()), ["1"]);
}

#[test]
fn an_interrupted_rerun_leaves_the_earlier_outputs_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_run(tmp.path());
    let before = files(&dir);
    let partial = partial_dir(&dir);
    // A run that would go on for days; interrupt it once it is under way.
    let child = Command::new(env!("CARGO_BIN_EXE_roomsim"))
        .args(["run", &scenario("quickstart.toml"), "--out", tmp.path().to_str().unwrap()])
        .args(["--set", "scenario.end=\"99999h\"", "--no-progress"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !partial.join("log.jsonl.zst").is_file() {
        assert!(started.elapsed().as_secs() < 60, "the run did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = text(&o.stderr);
    assert!(!o.status.success(), "an interrupted run is not a success: {err}");
    assert!(err.contains("interrupted at simulated time"), "{err}");
    assert!(err.contains(&format!("{} is untouched", dir.display())), "{err}");
    assert!(err.contains(&partial.display().to_string()), "says where the partial outputs are: {err}");
    assert!(files(&dir) == before, "the earlier run directory changed");
    assert!(partial.join("summary.json").is_file(), "the outputs so far are in the partial directory");
    // The next run replaces the leftover partial directory and the old outputs.
    let again = good_run(tmp.path());
    assert!(files(&again) == before);
    assert_eq!(entries(dir.parent().unwrap()), ["1"]);
}

#[test]
fn results_go_to_stdout_and_diagnostics_to_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("quickstart.toml");
    // check: the verdict on stdout; an error on stderr only.
    let (out, err) = ok(roomsim(&["check", &sc]), "check");
    assert!(out.contains(": ok (4 servers"), "{out}");
    assert_eq!(err, "");
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[scenario]\nname = \"x\"\nend = \"0s\"\n[[servers]]\nname = \"hs1\"\n").unwrap();
    let o = roomsim(&["check", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(text(&o.stderr).contains("bad.toml:3:7: the scenario must end after 0s"), "{}", text(&o.stderr));

    // report and replay: their result on stdout, nothing on stderr (no terminal: no bar).
    let dir = good_run(&tmp.path().join("out"));
    let (out, err) = ok(roomsim(&["report", dir.to_str().unwrap()]), "report");
    assert!(out.starts_with("wrote ") && out.contains("report.html"), "{out}");
    assert_eq!(err, "");
    let (out, err) = ok(roomsim(&["replay", dir.to_str().unwrap()]), "replay");
    assert!(out.contains("replay: ") && out.contains("log records re-applied"), "{out}");
    assert_eq!(err, "");

    // dag verify: the verdict on stdout.
    let dag = dir.join("rooms/lobby.pdus.jsonl");
    let (out, err) = ok(roomsim(&["dag", "verify", dag.to_str().unwrap()]), "dag verify");
    assert!(out.contains("events,") && out.contains("accepted"), "{out}");
    assert_eq!(err, "");
    // dag dot: the DOT on stdout.
    let (out, err) = ok(roomsim(&["dag", "dot", dag.to_str().unwrap()]), "dag dot");
    assert!(out.starts_with("digraph dag {"), "{out}");
    assert_eq!(err, "");
}

#[test]
fn compare_labels_once_and_warns_when_both_designs_behave_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("partition-heal.toml");
    let out = tmp.path().to_str().unwrap();
    // network.loss is 0 in the scenario: B's override changes nothing.
    let o = roomsim(&[
        "compare",
        &sc,
        "--seeds",
        "1..2",
        "--set-b",
        "network.loss=0.0",
        "--label-a",
        "base",
        "--label-b",
        "same",
        "--out",
        out,
    ]);
    let (stdout, stderr) = ok(o, "compare");
    assert!(stdout.contains("A = base (2 runs), B = same (2 runs)"), "{stdout}");
    assert!(stdout.contains("rooms.") && stdout.contains("wrote "), "results on stdout: {stdout}");
    assert!(
        stderr.contains("warning: A and B produced identical logs on all 2 seeds"),
        "a warning on stderr: {stderr}"
    );
    assert!(!stdout.contains("warning:"), "{stdout}");
    let html = std::fs::read_to_string(tmp.path().join("partition-heal-compare/compare.html")).unwrap();
    for doubled in ["A: A:", "B: B:", "A: base vs", "A = A"] {
        assert!(!html.contains(doubled) && !stdout.contains(doubled), "doubled label {doubled:?}");
    }
    assert!(html.contains("identical logs"), "the page says so too");
    let csv = std::fs::read_to_string(tmp.path().join("partition-heal-compare/compare.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with("base,same,"), "{csv}");

    // Default labels are the overrides, without a doubled "B:".
    let o = roomsim(&["compare", &sc, "--seeds", "1..2", "--set-b", "network.loss=0.2", "--out", out]);
    let (stdout, stderr) = ok(o, "compare with default labels");
    assert!(stdout.contains("A = scenario as is (2 runs), B = network.loss=0.2 (2 runs)"), "{stdout}");
    assert!(!stderr.contains("identical logs"), "{stderr}");
}
