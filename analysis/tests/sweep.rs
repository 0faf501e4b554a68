//! Merging sweep shards: shards merge to the same outputs as one directory with every cell.

mod common;

use std::fs;
use std::path::Path;

use common::{summary_json, Synthetic};
use roomsim_analysis::{merge_sweep, AnalysisError};

/// Cells: seeds 1..=3 × loss ∈ {0, 0.1, 0.25}, index = position in the grid.
fn grid() -> Vec<(u64, u64, &'static str)> {
    let mut cells = Vec::new();
    for (i, loss) in ["0", "0.1", "0.25"].iter().enumerate() {
        for seed in 1..=3u64 {
            cells.push((i as u64 * 3 + seed - 1, seed, *loss));
        }
    }
    cells
}

fn write_cell(dir: &Path, (index, seed, loss): (u64, u64, &str)) {
    let label = format!("{index:03}-loss{loss}-seed{seed}");
    let cell_dir = dir.join("cells").join(&label);
    fs::create_dir_all(&cell_dir).unwrap();
    let conv = (loss != "0.25" || seed != 2).then_some(1000 + (index * 7 % 5) * 300 + (loss.len() as u64) * 400);
    let s = Synthetic { seed, main_convergence_ms: conv, ..Default::default() };
    fs::write(cell_dir.join("summary.json"), summary_json(&s)).unwrap();
    let cell = format!(
        r#"{{"index": {index}, "seed": {seed}, "overrides": ["network.loss={loss}", "network.latency=50ms"], "label": "{label}"}}"#
    );
    fs::write(cell_dir.join("cell.json"), cell).unwrap();
}

#[test]
fn shards_merge_like_one_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (all, s1, s2) = (tmp.path().join("all"), tmp.path().join("shard1"), tmp.path().join("shard2"));
    for (i, c) in grid().into_iter().enumerate() {
        write_cell(&all, c);
        // shards split unevenly and both hold cell 4 (an identical duplicate)
        if i < 5 {
            write_cell(&s1, c);
        }
        if i >= 4 {
            write_cell(&s2, c);
        }
    }
    let one = merge_sweep(&[all], &tmp.path().join("out-one")).unwrap();
    let two = merge_sweep(&[s2, s1], &tmp.path().join("out-two")).unwrap();
    assert_eq!((one.cells, one.identical_duplicates), (9, 0));
    assert_eq!((two.cells, two.identical_duplicates), (9, 1));
    assert!(two.missing_indices.is_empty() && two.incomplete.is_empty());
    for (a, b) in [(&one.csv, &two.csv), (&one.html, &two.html)] {
        assert_eq!(fs::read(a).unwrap(), fs::read(b).unwrap(), "{} differs", b.display());
    }
    let csv = fs::read_to_string(&one.csv).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(header.starts_with("index,seed,label,network.latency,network.loss,deliveries,"), "{header}");
    let indices: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(indices, ["0", "1", "2", "3", "4", "5", "6", "7", "8"]);
    let html = fs::read_to_string(&one.html).unwrap();
    assert!(html.contains("Against <code>network.loss</code>"));
    assert!(!html.contains("Against <code>network.latency</code>"), "single-valued parameters get no plots");
    assert!(html.contains("1 cells without a value (did not agree)"));
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[test]
fn conflicting_duplicates_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (s1, s2) = (tmp.path().join("s1"), tmp.path().join("s2"));
    write_cell(&s1, (0, 1, "0"));
    write_cell(&s2, (0, 1, "0"));
    let summary = s2.join("cells/000-loss0-seed1/summary.json");
    let text = fs::read_to_string(&summary).unwrap().replace("\"deliveries\": 2410", "\"deliveries\": 2411");
    fs::write(&summary, text).unwrap();
    let err = merge_sweep(&[s1, s2], &tmp.path().join("out")).unwrap_err();
    assert!(matches!(err, AnalysisError::ConflictingCell { index: 0, .. }), "{err}");
    assert!(err.to_string().contains("`deliveries`: 2410 vs 2411"), "{err}");
}

#[test]
fn incomplete_cells_and_gaps_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    write_cell(&d, (0, 1, "0"));
    write_cell(&d, (3, 1, "0.1"));
    fs::create_dir_all(d.join("cells/unfinished")).unwrap();
    fs::write(d.join("cells/unfinished/cell.json"), r#"{"index": 1, "seed": 1}"#).unwrap();
    let out = merge_sweep(std::slice::from_ref(&d), &tmp.path().join("out")).unwrap();
    assert_eq!(out.cells, 2);
    assert_eq!(out.incomplete, [d.join("cells/unfinished/summary.json")]);
    assert_eq!(out.missing_indices, [1, 2]);
    let html = fs::read_to_string(&out.html).unwrap();
    assert!(html.contains("Cells missing from the merge: 1, 2"));
    assert!(html.contains("unfinished"));
    let empty = tmp.path().join("empty");
    fs::create_dir_all(empty.join("cells")).unwrap();
    assert!(matches!(merge_sweep(&[empty], &tmp.path().join("o2")), Err(AnalysisError::NoCells { .. })));
}
