//! Integration tests for the batch commands, running the `roomsim` binary: a sweep split into
//! shards merges to the same `sweep.csv` as the sweep in one process, an interrupted sweep
//! resumes by running only the missing cells, `compare` writes its table and files, and a bad
//! `--shard` is a clean error. These are what scripts/slurm/ relies on (see docs/cluster.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SWEEP: &str = "sweep-quick.toml";
const SWEEP_NAME: &str = "sweep-quick";
const SWEEP_CELLS: usize = 18;

fn roomsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roomsim")).args(args).output().expect("run roomsim")
}

fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name).to_string_lossy().into_owned()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `roomsim ARGS`, requires success, returns stderr.
fn ok(args: &[&str]) -> String {
    let o = roomsim(args);
    let stderr = text(&o.stderr);
    assert!(
        o.status.success(),
        "roomsim {}: {:?}\nstdout:\n{}\nstderr:\n{stderr}",
        args.join(" "),
        o.status,
        text(&o.stdout)
    );
    assert!(!stderr.contains("panicked"), "roomsim {}: {stderr}", args.join(" "));
    stderr
}

/// `roomsim sweep sweep-quick.toml --out OUT [extra]`; returns stderr.
fn sweep(out: &Path, extra: &[&str]) -> String {
    let sc = scenario(SWEEP);
    let mut args = vec!["sweep", sc.as_str(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&args)
}

/// `OUT/sweep-quick-sweep`, the directory `roomsim merge` takes.
fn sweep_dir(out: &Path) -> PathBuf {
    out.join(format!("{SWEEP_NAME}-sweep"))
}

/// Names of the cell directories `roomsim sweep` wrote under OUT.
fn cell_names(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(sweep_dir(out).join("cells"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `roomsim merge DIRS --out OUT`; returns the bytes of OUT/sweep.csv.
fn merge(dirs: &[PathBuf], out: &Path) -> Vec<u8> {
    let mut args = vec!["merge".to_owned()];
    args.extend(dirs.iter().map(|d| d.to_str().unwrap().to_owned()));
    args.extend(["--out".to_owned(), out.to_str().unwrap().to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let stderr = ok(&args);
    assert!(!stderr.contains("missing"), "merge reports missing cells: {stderr}");
    assert!(out.join("sweep.html").is_file(), "no sweep.html in {}", out.display());
    std::fs::read(out.join("sweep.csv")).unwrap()
}

#[test]
fn three_shards_merge_to_the_same_csv_as_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let stderr = sweep(&whole, &["--threads", "2"]);
    assert!(
        stderr.contains(&format!("{SWEEP_CELLS} cells in this shard, 0 already done, {SWEEP_CELLS} to run")),
        "{stderr}"
    );
    assert_eq!(cell_names(&whole).len(), SWEEP_CELLS);
    let single = merge(&[sweep_dir(&whole)], &tmp.path().join("merged-whole"));
    let csv = text(&single);
    assert!(csv.starts_with("index,seed,label,"), "{csv}");
    assert_eq!(csv.lines().count(), SWEEP_CELLS + 1, "{csv}");

    let mut shard_dirs = Vec::new();
    let mut seen = Vec::new();
    for k in 1..=3usize {
        let out = tmp.path().join(format!("shard{k}"));
        let stderr = sweep(&out, &["--shard", &format!("{k}/3"), "--threads", "1"]);
        assert!(
            stderr.contains(&format!("{} cells in this shard, 0 already done", SWEEP_CELLS / 3)),
            "shard {k}/3: {stderr}"
        );
        // Shard K of N holds exactly the cells whose index % N == K - 1.
        for name in cell_names(&out) {
            let index: usize = name[..5].parse().unwrap_or_else(|_| panic!("cell dir {name}"));
            assert_eq!(index % 3, k - 1, "shard {k}/3 ran cell {name}");
            seen.push(name);
        }
        shard_dirs.push(sweep_dir(&out));
    }
    seen.sort();
    assert_eq!(
        seen,
        cell_names(&whole),
        "the shards together are the whole grid, each cell once, same directory names"
    );

    let sharded = merge(&shard_dirs, &tmp.path().join("merged-shards"));
    assert!(
        sharded == single,
        "sweep.csv from 3 shards differs from one process:\n{}\n---\n{}",
        text(&sharded),
        text(&single)
    );
}

#[test]
fn interrupted_sweep_resumes_with_only_the_missing_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    sweep(&out, &[]);
    let before = merge(&[sweep_dir(&out)], &tmp.path().join("merged-before"));

    let cells = cell_names(&out);
    let victim = sweep_dir(&out).join("cells").join(&cells[7]);
    std::fs::remove_dir_all(&victim).unwrap();
    let stderr = sweep(&out, &[]);
    assert!(stderr.contains(&format!("{} already done, 1 to run", SWEEP_CELLS - 1)), "{stderr}");
    assert!(victim.join("summary.json").is_file(), "{} not rewritten", victim.display());
    assert_eq!(cell_names(&out), cells);
    let after = merge(&[sweep_dir(&out)], &tmp.path().join("merged-after"));
    assert!(after == before, "sweep.csv changed after resuming");

    // Nothing left to do: a rerun (here with another thread count) runs no cell.
    let stderr = sweep(&out, &["--threads", "1"]);
    assert!(stderr.contains(&format!("{SWEEP_CELLS} already done, 0 to run")), "{stderr}");
}

#[test]
fn compare_prints_a_table_and_writes_csv_and_html() {
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario("partition-heal.toml");
    let o = roomsim(&[
        "compare",
        &sc,
        "--seeds",
        "1..3",
        "--set-b",
        "network.loss=0.2",
        "--out",
        tmp.path().to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("time_to_agreement_ms"), "no metric in the table:\n{stdout}");
    assert!(!stdout.contains("time_to_agreement_note"), "a text field is not a metric:\n{stdout}");
    assert!(stdout.contains("network.loss=0.2"), "design B's label missing:\n{stdout}");
    let dirs: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with("-compare"))
        .collect();
    assert_eq!(dirs.len(), 1, "one <scenario>-compare directory: {dirs:?}");
    let csv = std::fs::read_to_string(dirs[0].join("compare.csv")).unwrap();
    assert!(csv.lines().next().unwrap_or("").contains("metric"), "{csv}");
    assert!(csv.contains("time_to_agreement_ms"), "{csv}");
    let html = std::fs::read_to_string(dirs[0].join("compare.html")).unwrap();
    assert!(
        html.contains("<html") || html.contains("<!DOCTYPE") || html.contains("<!doctype"),
        "compare.html is not HTML"
    );
}

#[test]
fn bad_shard_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let sc = scenario(SWEEP);
    for shard in ["5/3", "0/3", "3", "a/b"] {
        let out = tmp.path().join("out");
        let o = roomsim(&["sweep", &sc, "--shard", shard, "--out", out.to_str().unwrap()]);
        let stderr = text(&o.stderr);
        assert!(!o.status.success(), "--shard {shard} succeeded");
        assert!(o.status.code().is_some(), "--shard {shard}: killed by a signal");
        assert!(!stderr.contains("panicked"), "--shard {shard} panicked: {stderr}");
        assert!(stderr.contains("invalid shard") && stderr.contains(shard), "--shard {shard}: unclear error: {stderr}");
        assert!(!out.exists(), "--shard {shard} wrote output");
    }
}
