//! Paired comparison on synthetic runs read from run directories.

mod common;

use std::path::{Path, PathBuf};

use common::{write_run, Synthetic};
use roomsim_analysis::compare::CSV_COLUMNS;
use roomsim_analysis::{compare, find_run_dirs, read_run_summaries, CompareTable};

/// Writes `seeds` runs of one design under `root/<seed>/`; `conv` gives main's convergence.
fn design(root: &Path, seeds: std::ops::RangeInclusive<u64>, conv: impl Fn(u64) -> Option<u64>) -> Vec<PathBuf> {
    seeds
        .map(|seed| {
            let dir = root.join(seed.to_string());
            write_run(&dir, &Synthetic { seed, main_convergence_ms: conv(seed), ..Default::default() });
            dir
        })
        .collect()
}

fn tables() -> (CompareTable, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let a_dirs = design(&tmp.path().join("a"), 1..=20, |s| Some(3000 + s * 100));
    // B converges 500 ms faster, except seeds 5 and 10 never converge
    let b_dirs = design(&tmp.path().join("b"), 1..=20, |s| (s % 5 != 0).then_some(2500 + s * 100));
    assert_eq!(find_run_dirs(&tmp.path().join("a")).unwrap().len(), 20);
    let a = read_run_summaries(&a_dirs).unwrap();
    let b = read_run_summaries(&b_dirs).unwrap();
    (compare(&a, &b, "errcode", "omit"), tmp)
}

#[test]
fn paired_difference_and_null_counts() {
    let (t, _tmp) = tables();
    let row = t.rows.iter().find(|r| r.metric == "rooms.main.time_to_agreement_ms").unwrap();
    assert_eq!((row.a.n, row.a.nulls, row.b.n, row.b.nulls), (20, 0, 16, 4));
    assert_eq!(row.diff.pairs, 16);
    // B never converges on 4 seeds: its times there are censored, so no mean and no paired
    // difference (the -500 ms over the 16 pairs that converged would hide B's failures).
    assert_eq!((row.b.mean, row.diff.mean_diff), (None, None));
    assert_eq!(row.a.mean, Some(4050.0), "A has no censored run: 3000 + 100 * mean(1..=20)");
    // Kaplan–Meier medians: the 10th of 20 sorted times. A: 3000 + 100 * 10 = 4000; B's observed
    // times 2500 + 100 s for s not a multiple of 5: the 10th is s = 12, 3700.
    assert_eq!((row.a.median, row.b.median), (Some(4000.0), Some(3700.0)));
    // Mann–Whitney with the 4 censored B runs ranked last. B(s) < A(s') iff s' > s - 5, a tie
    // at s' = s - 5: s = 1..4 beat all 20 A runs (80); s = 6..9: 25 - s wins + 1/2 (72);
    // s = 11..14: 52; s = 16..19: 32; censored B runs beat none. U_B = 236 of 400 pairs.
    // Ties: 12 pairs of equal times and the 4 censored: sum t^3 - t = 12 * 6 + 60 = 132;
    // var = 400/12 * (41 - 132 / (40 * 39)) = 1363.85, z = (236 - 200) / 36.930 = 0.9748,
    // p = 2 (1 - Phi(0.9748)) = 0.3297: B's faster runs do not outweigh its failures.
    let rank = row.rank.as_ref().unwrap();
    assert_eq!((rank.u_b, rank.p_b_lower), (236.0, 0.59));
    assert!((rank.p_value - 0.3297).abs() < 1e-3, "{rank:?}");
    assert!(!row.flagged());
    assert!(row.null_note(t.runs_a, t.runs_b).contains("did not agree: A 0/20, B 4/20"));
    // agreed_at_end is a 0/1 metric: its mean is the share of runs that reached agreement
    let conv = t.rows.iter().find(|r| r.metric == "rooms.main.agreed_at_end").unwrap();
    assert_eq!(conv.b.mean, Some(0.8));
    // identity fields are not metrics
    assert!(t.rows.iter().all(|r| r.metric != "seed" && r.metric != "threads"));
}

#[test]
fn outputs_are_deterministic_and_self_contained() {
    let (t1, tmp) = tables();
    let (t2, _tmp2) = tables();
    assert_eq!(t1, t2);
    assert_eq!(t1.to_text(), t2.to_text());
    let (csv1, csv2) = (tmp.path().join("1/compare.csv"), tmp.path().join("2/compare.csv"));
    t1.write_csv(&csv1).unwrap();
    t2.write_csv(&csv2).unwrap();
    let csv = std::fs::read_to_string(&csv1).unwrap();
    assert_eq!(csv, std::fs::read_to_string(&csv2).unwrap());
    assert_eq!(csv.lines().next().unwrap(), CSV_COLUMNS.join(","));
    assert_eq!(csv.lines().count(), 1 + t1.rows.len());
    let (h1, h2) = (tmp.path().join("1/compare.html"), tmp.path().join("2/compare.html"));
    t1.write_html(&h1, true).unwrap();
    t2.write_html(&h2, true).unwrap();
    let html = std::fs::read_to_string(&h1).unwrap();
    assert_eq!(html, std::fs::read_to_string(&h2).unwrap());
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    assert!(html.contains("omit vs errcode"));
    assert!(html.contains("did not agree: A 0/20, B 4/20"));
    assert!(html.contains("room main: time to agreement"), "ECDF chart");
    assert!(html.contains("16/20 reached"));
    assert!(html.matches("<svg").count() >= 3, "ECDF + strip plots");
    let without_plots = t1.to_html(false).unwrap();
    assert!(!without_plots.contains("<svg"));
}
