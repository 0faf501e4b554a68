//! Paired comparison of two designs (A = baseline, B = candidate) run on the same seeds.
//!
//! For every metric of `summary.json` (flattened, see [`RunSummary::metrics`]): count, mean and
//! median of each side with a 95% bootstrap CI of the mean, and the mean of the paired
//! differences B − A (runs matched by seed) with its 95% bootstrap CI; a flag when that CI
//! excludes 0. Null values (a room that never converged) are counted, never silently dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::write_file;
use crate::fmt::{csv_num, esc, num};
use crate::html::{figure, page, table_with_row_classes, Cell};
use crate::plots::{Chart, EcdfChart, EcdfGroup, PlotSize, StripChart, StripGroup};
use crate::stats::{bootstrap_mean_ci, mean, median, BOOTSTRAP_RESAMPLES};
use crate::summary::RunSummary;
use crate::AnalysisError;

/// One design's runs of one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct SideStats {
    /// Runs with a value.
    pub n: u32,
    /// Runs where the metric is null (e.g. `convergence_time_ms` of a room that never converged).
    pub nulls: u32,
    /// Runs whose summary lacks the metric altogether.
    pub missing: u32,
    pub mean: Option<f64>,
    /// For a time-to-event metric the Kaplan–Meier median ([`km_median`]), else the sample
    /// median.
    pub median: Option<f64>,
    /// 95% percentile-bootstrap CI of the mean.
    pub ci95: Option<(f64, f64)>,
}

/// The paired differences B − A of one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct PairedStats {
    /// Seeds with a value on both sides.
    pub pairs: u32,
    pub mean_diff: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    /// The CI lies entirely above or below 0.
    pub ci_excludes_zero: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompareRow {
    pub metric: String,
    pub a: SideStats,
    pub b: SideStats,
    pub diff: PairedStats,
    /// Time-to-event metrics only ([`is_time_to_event`]): the rank comparison that keeps the
    /// runs where the event never happened.
    pub rank: Option<RankTest>,
}

/// Mann–Whitney comparison of a time-to-event metric, every run of both designs included: a
/// run where the event never happened (null, e.g. never converged) is censored at the end of
/// the run, so it ranks after every observed time and ties with the other censored runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RankTest {
    /// U counted for B: pairs (a, b) with b < a, plus half the tied pairs.
    pub u_b: f64,
    /// u_b / (n_a · n_b): the probability that a B run's time is shorter than an A run's (ties
    /// half). 0.5 = no difference.
    pub p_b_lower: f64,
    /// Two-sided p-value, normal approximation with the tie correction.
    pub p_value: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CompareTable {
    pub label_a: String,
    pub label_b: String,
    pub runs_a: u32,
    pub runs_b: u32,
    /// One row per metric, sorted by metric path.
    pub rows: Vec<CompareRow>,
    /// Seeds run by one side only (no pair; they still count in that side's statistics).
    pub unpaired_seeds_a: Vec<u64>,
    pub unpaired_seeds_b: Vec<u64>,
    /// Anything the reader should know (duplicate seeds ...).
    pub notes: Vec<String>,
    /// Per metric, every run's (seed, value) of each side, in input order: the plots' data.
    pub values_a: BTreeMap<String, Vec<(u64, Option<f64>)>>,
    pub values_b: BTreeMap<String, Vec<(u64, Option<f64>)>>,
}

/// Compares design B against design A. Runs are paired by seed; a seed present on one side only
/// is skipped for the paired difference (listed in `unpaired_seeds_*`); if a side repeats a seed,
/// its first run is the one paired (and a note says so).
pub fn compare(a: &[(u64, RunSummary)], b: &[(u64, RunSummary)], label_a: &str, label_b: &str) -> CompareTable {
    let metrics: BTreeSet<&String> = a.iter().chain(b).flat_map(|(_, s)| s.metrics.keys()).collect();
    let values = |side: &[(u64, RunSummary)]| -> BTreeMap<String, Vec<(u64, Option<f64>)>> {
        metrics
            .iter()
            .map(|m| {
                let v = side.iter().filter_map(|(seed, s)| s.metrics.get(*m).map(|v| (*seed, *v))).collect();
                ((*m).clone(), v)
            })
            .collect()
    };
    let (values_a, values_b) = (values(a), values(b));
    let metric_list: Vec<&String> = metrics.iter().copied().collect();
    let rows: Vec<CompareRow> =
        metric_list.par_iter().map(|m| compare_row(m, &values_a[*m], &values_b[*m], a.len(), b.len())).collect();
    let seeds = |side: &[(u64, RunSummary)]| side.iter().map(|(s, _)| *s).collect::<BTreeSet<u64>>();
    let (seeds_a, seeds_b) = (seeds(a), seeds(b));
    let mut notes = Vec::new();
    for (label, side, set) in [(label_a, a, &seeds_a), (label_b, b, &seeds_b)] {
        if set.len() < side.len() {
            notes.push(format!(
                "{label}: {} runs share a seed with an earlier run; only the first run of a seed is paired",
                side.len() - set.len()
            ));
        }
    }
    CompareTable {
        label_a: label_a.to_string(),
        label_b: label_b.to_string(),
        runs_a: a.len() as u32,
        runs_b: b.len() as u32,
        rows,
        unpaired_seeds_a: seeds_a.difference(&seeds_b).copied().collect(),
        unpaired_seeds_b: seeds_b.difference(&seeds_a).copied().collect(),
        notes,
        values_a,
        values_b,
    }
}

fn compare_row(
    metric: &str,
    va: &[(u64, Option<f64>)],
    vb: &[(u64, Option<f64>)],
    runs_a: usize,
    runs_b: usize,
) -> CompareRow {
    let mut row = CompareRow {
        metric: metric.to_string(),
        a: side_stats(va, runs_a, &format!("compare/{metric}/a")),
        b: side_stats(vb, runs_b, &format!("compare/{metric}/b")),
        diff: paired_stats(va, vb, &format!("compare/{metric}/b-a")),
        rank: None,
    };
    if !is_time_to_event(metric) {
        return row;
    }
    // Censored data: a mean over the runs where the event happened is biased towards short
    // times (the slow runs are the ones missing), so there is no mean, interval or paired
    // difference once a run is censored; the Kaplan–Meier median and the rank test use them all.
    let censored = |v: &[(u64, Option<f64>)]| v.iter().any(|x| x.1.is_none());
    let (ca, cb) = (censored(va), censored(vb));
    for (side, values, any) in [(&mut row.a, va, ca), (&mut row.b, vb, cb)] {
        side.median = km_median(&values.iter().map(|v| v.1).collect::<Vec<_>>());
        if any {
            side.mean = None;
            side.ci95 = None;
        }
    }
    if ca || cb {
        row.diff = PairedStats { pairs: row.diff.pairs, mean_diff: None, ci95: None, ci_excludes_zero: false };
    }
    let times = |v: &[(u64, Option<f64>)]| v.iter().map(|x| x.1).collect::<Vec<_>>();
    row.rank = mann_whitney_censored(&times(va), &times(vb));
    row
}

/// Metrics whose null means "the event never happened in the run" (a censored time): the
/// times to agreement (`time_to_agreement_ms`, `convergence_time_ms` of older runs), and any
/// proposal metric named `*_time_ms`.
pub fn is_time_to_event(metric: &str) -> bool {
    is_agreement_time(metric) || metric.ends_with("_time_ms")
}

/// Kaplan–Meier median of times where `None` is censored at the end of the run (after every
/// observed time): the smallest observed t with S(t) ≤ 1/2, S(t) = share of runs whose event
/// had not happened by t. With every censoring after the last event, S(t) is the share of runs
/// with a time > t (censored ones included). None when fewer than half the runs have a time.
pub fn km_median(times: &[Option<f64>]) -> Option<f64> {
    let n = times.len();
    let observed = crate::stats::sorted(&times.iter().filter_map(|t| *t).collect::<Vec<_>>());
    // S(observed[i]) <= 1/2  <=>  (i + 1) runs at or before it, counting ties: 2 (i + 1) >= n
    (0..observed.len())
        .find(|&i| {
            let at_or_before = observed.iter().take_while(|t| **t <= observed[i]).count();
            2 * at_or_before >= n
        })
        .map(|i| observed[i])
}

/// Mann–Whitney U of B against A with censored values (`None`) ranked after every observed
/// value and tied among themselves; None when a side has no runs.
pub fn mann_whitney_censored(a: &[Option<f64>], b: &[Option<f64>]) -> Option<RankTest> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    // +inf orders a censored run after every time and ties it with the other censored runs.
    let key = |t: &Option<f64>| t.unwrap_or(f64::INFINITY);
    let mut u_b = 0.0;
    for x in b {
        for y in a {
            match key(x).total_cmp(&key(y)) {
                std::cmp::Ordering::Less => u_b += 1.0,
                std::cmp::Ordering::Equal => u_b += 0.5,
                std::cmp::Ordering::Greater => {}
            }
        }
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let n = na + nb;
    // tie correction: sum of t^3 - t over groups of equal values
    let all = crate::stats::sorted(&a.iter().chain(b).map(key).collect::<Vec<_>>());
    let mut ties = 0.0;
    let mut i = 0;
    while i < all.len() {
        let j = all[i..].iter().take_while(|v| **v == all[i]).count();
        let t = j as f64;
        ties += t * t * t - t;
        i += j;
    }
    let variance = na * nb / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let p_value = if variance > 0.0 {
        let z = (u_b - na * nb / 2.0) / variance.sqrt();
        (2.0 * (1.0 - crate::stats::normal_cdf(z.abs()))).clamp(0.0, 1.0)
    } else {
        1.0
    };
    Some(RankTest { u_b, p_b_lower: u_b / (na * nb), p_value })
}

/// Seeds on which A and B wrote the same log (equal `log_digest`): the two designs behaved
/// identically there. Seeds without a digest on either side are not counted.
pub fn identical_log_seeds(a: &[(u64, RunSummary)], b: &[(u64, RunSummary)]) -> Vec<u64> {
    let b_digest: BTreeMap<u64, &str> =
        b.iter().rev().filter_map(|(seed, s)| s.log_digest.as_deref().map(|d| (*seed, d))).collect();
    let mut seeds: Vec<u64> = a
        .iter()
        .filter(|(seed, s)| s.log_digest.is_some() && s.log_digest.as_deref() == b_digest.get(seed).copied())
        .map(|(seed, _)| *seed)
        .collect();
    seeds.dedup();
    seeds
}

fn side_stats(values: &[(u64, Option<f64>)], runs: usize, stream: &str) -> SideStats {
    let xs: Vec<f64> = values.iter().filter_map(|v| v.1).collect();
    SideStats {
        n: xs.len() as u32,
        nulls: values.iter().filter(|v| v.1.is_none()).count() as u32,
        missing: (runs - values.len()) as u32,
        mean: mean(&xs),
        median: median(&xs),
        ci95: bootstrap_mean_ci(&xs, stream),
    }
}

fn paired_stats(a: &[(u64, Option<f64>)], b: &[(u64, Option<f64>)], stream: &str) -> PairedStats {
    let mut first_b: BTreeMap<u64, Option<f64>> = BTreeMap::new();
    for (seed, v) in b {
        first_b.entry(*seed).or_insert(*v);
    }
    let mut seen = BTreeSet::new();
    let mut diffs = Vec::new();
    for (seed, va) in a {
        if !seen.insert(*seed) {
            continue;
        }
        if let (Some(va), Some(Some(vb))) = (va, first_b.get(seed)) {
            diffs.push(vb - va);
        }
    }
    let ci95 = bootstrap_mean_ci(&diffs, stream);
    PairedStats {
        pairs: diffs.len() as u32,
        mean_diff: mean(&diffs),
        ci95,
        ci_excludes_zero: ci95.is_some_and(|(lo, hi)| lo > 0.0 || hi < 0.0),
    }
}

/// Four decimals are enough for a share or a p-value in a table (the CSV keeps every digit).
fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A room's time to agreement (`convergence_time_ms` in runs written before it was defined).
pub(crate) fn is_agreement_time(metric: &str) -> bool {
    metric.ends_with("time_to_agreement_ms") || metric.ends_with("convergence_time_ms")
}

/// "did not agree" for times to agreement (and the convergence times of older runs), "null"
/// otherwise.
pub(crate) fn null_word(metric: &str) -> &'static str {
    if is_agreement_time(metric) {
        "did not agree"
    } else {
        "null"
    }
}

fn ci_text(ci: Option<(f64, f64)>) -> String {
    ci.map_or_else(String::new, |(lo, hi)| format!("[{}, {}]", num(lo), num(hi)))
}

impl CompareRow {
    /// Marked `*`: the CI of B − A excludes 0, or, for a time-to-event metric with censored runs
    /// (no paired difference), the rank test's p < 0.05.
    pub fn flagged(&self) -> bool {
        self.diff.ci_excludes_zero
            || (self.diff.mean_diff.is_none() && self.rank.as_ref().is_some_and(|r| r.p_value < 0.05))
    }

    /// "did not agree: A 3/50, B 0/50" when either side has nulls or missing values.
    pub fn null_note(&self, runs_a: u32, runs_b: u32) -> String {
        let mut parts = Vec::new();
        if self.a.nulls + self.b.nulls > 0 {
            parts.push(format!(
                "{}: A {}/{runs_a}, B {}/{runs_b}",
                null_word(&self.metric),
                self.a.nulls,
                self.b.nulls
            ));
        }
        if self.a.missing + self.b.missing > 0 {
            parts.push(format!("absent: A {}/{runs_a}, B {}/{runs_b}", self.a.missing, self.b.missing));
        }
        parts.join("; ")
    }

    /// Values vary (across both sides); constant metrics get no plot.
    fn varies(&self, t: &CompareTable) -> bool {
        let all = t.values_a[&self.metric].iter().chain(&t.values_b[&self.metric]).filter_map(|v| v.1);
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        lo < hi
    }
}

impl CompareTable {
    fn header_line(&self) -> String {
        format!(
            "A = {} ({} runs), B = {} ({} runs); paired by seed; means with 95% percentile-bootstrap \
             CIs ({BOOTSTRAP_RESAMPLES} resamples); * = CI of B−A excludes 0; times with runs \
             that never converged: no mean, Kaplan–Meier median, Mann–Whitney P(B<A) and p \
             (* when p < 0.05)",
            self.label_a, self.runs_a, self.label_b, self.runs_b
        )
    }

    /// An aligned plain-text table for the terminal.
    pub fn to_text(&self) -> String {
        let header = [
            "metric",
            "n A",
            "mean A",
            "95% CI A",
            "median A",
            "n B",
            "mean B",
            "95% CI B",
            "median B",
            "pairs",
            "B−A",
            "95% CI B−A",
            "P(B<A)",
            "rank p",
            "",
            "nulls",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
        for r in &self.rows {
            rows.push(vec![
                r.metric.clone(),
                r.a.n.to_string(),
                r.a.mean.map_or_else(String::new, num),
                ci_text(r.a.ci95),
                r.a.median.map_or_else(String::new, num),
                r.b.n.to_string(),
                r.b.mean.map_or_else(String::new, num),
                ci_text(r.b.ci95),
                r.b.median.map_or_else(String::new, num),
                r.diff.pairs.to_string(),
                r.diff.mean_diff.map_or_else(String::new, num),
                ci_text(r.diff.ci95),
                r.rank.as_ref().map_or_else(String::new, |t| num(round4(t.p_b_lower))),
                r.rank.as_ref().map_or_else(String::new, |t| num(round4(t.p_value))),
                if r.flagged() { "*".into() } else { String::new() },
                r.null_note(self.runs_a, self.runs_b),
            ]);
        }
        let cols = header.len();
        let widths: Vec<usize> =
            (0..cols).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        let mut out = format!("{}\n", self.header_line());
        for row in &rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                let pad = widths[c] - cell.chars().count();
                // metric and notes left-aligned, numbers right-aligned
                if c == 0 || c == cols - 1 {
                    let _ = write!(line, "{cell}{}", " ".repeat(pad));
                } else {
                    let _ = write!(line, "{}{cell}", " ".repeat(pad));
                }
                if c + 1 < cols {
                    line.push_str("  ");
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        for note in self.extra_notes() {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }

    fn extra_notes(&self) -> Vec<String> {
        let mut notes = self.notes.clone();
        let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
        if !self.unpaired_seeds_a.is_empty() {
            notes.push(format!("seeds only in {} (not paired): {}", self.label_a, list(&self.unpaired_seeds_a)));
        }
        if !self.unpaired_seeds_b.is_empty() {
            notes.push(format!("seeds only in {} (not paired): {}", self.label_b, list(&self.unpaired_seeds_b)));
        }
        notes
    }

    /// Writes `compare.csv`: one row per metric (columns in docs/outputs.md).
    pub fn write_csv(&self, path: &Path) -> Result<(), AnalysisError> {
        let csv_err = |source| AnalysisError::Csv { path: path.to_owned(), source };
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(CSV_COLUMNS).map_err(csv_err)?;
        for r in &self.rows {
            let side = |s: &SideStats| {
                vec![
                    s.n.to_string(),
                    s.nulls.to_string(),
                    s.missing.to_string(),
                    csv_num(s.mean),
                    csv_num(s.median),
                    csv_num(s.ci95.map(|c| c.0)),
                    csv_num(s.ci95.map(|c| c.1)),
                ]
            };
            let mut rec = vec![self.label_a.clone(), self.label_b.clone(), r.metric.clone()];
            rec.extend(side(&r.a));
            rec.extend(side(&r.b));
            rec.extend([
                r.diff.pairs.to_string(),
                csv_num(r.diff.mean_diff),
                csv_num(r.diff.ci95.map(|c| c.0)),
                csv_num(r.diff.ci95.map(|c| c.1)),
                r.diff.ci_excludes_zero.to_string(),
                csv_num(r.rank.as_ref().map(|t| t.p_b_lower)),
                csv_num(r.rank.as_ref().map(|t| t.p_value)),
            ]);
            w.write_record(&rec).map_err(csv_err)?;
        }
        let bytes = w.into_inner().map_err(|e| AnalysisError::Io { path: path.to_owned(), source: e.into_error() })?;
        write_file(path, &bytes)
    }

    /// Writes `compare.html`: the table and, when `plots` is true, a convergence-time ECDF per
    /// room and a strip/box plot of A vs B for every metric whose values vary.
    pub fn write_html(&self, path: &Path, plots: bool) -> Result<(), AnalysisError> {
        write_file(path, self.to_html(plots)?.as_bytes())
    }

    pub fn to_html(&self, plots: bool) -> Result<String, AnalysisError> {
        let title = format!("{} vs {}", self.label_b, self.label_a);
        let mut body = format!("<h1>{}</h1>\n", esc(&title));
        let _ = writeln!(body, "<p class=\"sub\">{}</p>", esc(&self.header_line()));
        let _ = writeln!(
            body,
            "<section class=\"howto\"><p><b>How to read this.</b> Both designs ran the same \
             scenario on the same seeds, so each seed gives a pair of runs that differ only in the \
             design. Each row is one end-of-run metric: its mean (with a 95% confidence interval \
             from {BOOTSTRAP_RESAMPLES} bootstrap resamples) under A = <b>{}</b> and B = <b>{}</b>, \
             and the mean of the per-seed differences B − A. A <b>*</b> marks rows whose \
             difference interval excludes 0: there the designs differ by more than seed-to-seed \
             noise explains. Runs where a metric is null (for convergence times: the room never \
             converged) are counted under the metric's name, not averaged. A convergence time \
             is censored in such a run (it would have been longer than the run): once a design has \
             one, its mean and the paired difference are left out (they would favour the design \
             that fails more), the median is the Kaplan–Meier median (the time by which half the \
             runs converged; none when fewer than half did), and the designs are compared by \
             ranks with every run: P(B&lt;A) is the chance that a B run converges sooner than an \
             A run (non-converged runs rank last, ties count half; 0.5 = no difference), rank p \
             the Mann–Whitney two-sided p-value; * then marks p &lt; 0.05. Grey rows are the \
             same in every run.</p></section>",
            esc(&self.label_a),
            esc(&self.label_b)
        );
        for note in self.extra_notes() {
            let _ = writeln!(body, "<p class=\"note\">{}</p>", esc(&note));
        }
        body.push_str("<h2>Metrics</h2>\n");
        body.push_str(&self.html_table());
        if plots {
            body.push_str(&self.html_plots()?);
        }
        Ok(page(&format!("roomsim comparison: {title}"), &body))
    }

    fn html_table(&self) -> String {
        let headers: Vec<(String, &'static str)> = [
            ("metric", ""),
            ("A mean", "num"),
            ("A 95% CI", "num"),
            ("A median", "num"),
            ("B mean", "num"),
            ("B 95% CI", "num"),
            ("B median", "num"),
            ("pairs", "num"),
            ("B − A", "num"),
            ("B − A 95% CI", "num"),
            ("P(B<A)", "num"),
            ("rank p", "num"),
            ("", ""),
        ]
        .iter()
        .map(|(h, c)| (h.to_string(), *c))
        .collect();
        let rows: Vec<Vec<Cell>> = self
            .rows
            .iter()
            .map(|r| {
                let n = |v: Option<f64>| Cell::num(v.map_or_else(|| "—".into(), num));
                let flag = if r.flagged() { Cell::text("*").with_class("flag") } else { Cell::text("") };
                let rank = |f: fn(&RankTest) -> f64| {
                    Cell::num(r.rank.as_ref().map_or_else(String::new, |t| num(round4(f(t)))))
                };
                let note = r.null_note(self.runs_a, self.runs_b);
                let note =
                    if note.is_empty() { note } else { format!("<span class=\"cellnote\">{}</span>", esc(&note)) };
                vec![
                    Cell { html: format!("<code>{}</code>{note}", esc(&r.metric)), class: "" },
                    n(r.a.mean),
                    Cell::num(ci_text(r.a.ci95)),
                    n(r.a.median),
                    n(r.b.mean),
                    Cell::num(ci_text(r.b.ci95)),
                    n(r.b.median),
                    Cell::num(r.diff.pairs.to_string()),
                    n(r.diff.mean_diff),
                    Cell::num(ci_text(r.diff.ci95)),
                    rank(|t| t.p_b_lower),
                    rank(|t| t.p_value),
                    flag,
                ]
            })
            .collect();
        let row_classes: Vec<&str> = self
            .rows
            .iter()
            .map(|r| {
                if r.flagged() {
                    "flagged"
                } else if !r.varies(self) && r.a.nulls + r.b.nulls == 0 {
                    "constant"
                } else {
                    ""
                }
            })
            .collect();
        table_with_row_classes(&headers, &rows, &row_classes)
    }

    fn html_plots(&self) -> Result<String, AnalysisError> {
        let mut out = String::new();
        let ecdfs: Vec<&CompareRow> = self
            .rows
            .iter()
            .filter(|r| is_agreement_time(&r.metric))
            // a constant time without nulls is a single step: nothing to see
            .filter(|r| r.varies(self) || r.a.nulls + r.b.nulls > 0)
            .collect();
        if !ecdfs.is_empty() {
            out.push_str("<h2>Convergence time</h2>\n<div class=\"plots\">\n");
            for r in ecdfs {
                let svg = Chart::Ecdf(self.ecdf(&r.metric)).to_inline_svg(PlotSize::default())?;
                let caption = "Share of runs converged within x seconds. A curve that levels off \
                               below 1 has runs that never converged; left and higher is better.";
                out.push_str(&figure(&svg, caption));
            }
            out.push_str("</div>\n");
        }
        let varying: Vec<&CompareRow> = self.rows.iter().filter(|r| r.varies(self)).collect();
        if !varying.is_empty() {
            out.push_str(
                "<h2>Values per run</h2>\n<p class=\"note\">One dot per run; boxes span the middle \
                 half with the median; grey lines join the two runs of a seed. Metrics with the \
                 same value in every run are left out.</p>\n<div class=\"plots grid\">\n",
            );
            for r in varying {
                let svg = Chart::Strip(self.strip(&r.metric)).to_inline_svg(PlotSize::new(560, 340))?;
                out.push_str(&figure(&svg, ""));
            }
            out.push_str("</div>\n");
        }
        Ok(out)
    }

    /// The convergence-time ECDF of a metric (values in seconds), A then B.
    pub fn ecdf(&self, metric: &str) -> EcdfChart {
        let group = |label: &str, vals: &[(u64, Option<f64>)], runs: u32| {
            let values: Vec<f64> = vals.iter().filter_map(|v| v.1.map(|x| x / 1000.0)).collect();
            EcdfGroup { label: label.to_string(), missing: runs - values.len() as u32, values }
        };
        EcdfChart {
            title: ecdf_title(metric),
            x_label: "convergence time (s)".into(),
            groups: vec![
                group(&format!("A: {}", self.label_a), &self.values_a[metric], self.runs_a),
                group(&format!("B: {}", self.label_b), &self.values_b[metric], self.runs_b),
            ],
        }
    }

    /// The strip/box chart of one metric, A then B.
    pub fn strip(&self, metric: &str) -> StripChart {
        let group = |label: &str, vals: &[(u64, Option<f64>)]| StripGroup {
            label: label.to_string(),
            points: vals.iter().filter_map(|(s, v)| v.map(|v| (*s, v))).collect(),
            nulls: vals.iter().filter(|v| v.1.is_none()).count() as u32,
        };
        StripChart {
            title: metric.to_string(),
            y_label: if metric.ends_with("_ms") { "ms".into() } else { "value".into() },
            groups: vec![
                group(&format!("A: {}", self.label_a), &self.values_a[metric]),
                group(&format!("B: {}", self.label_b), &self.values_b[metric]),
            ],
            connect_pairs: true,
            null_word: null_word(metric).into(),
        }
    }
}

/// "room main: time to agreement" for `rooms.main.time_to_agreement_ms`.
fn ecdf_title(metric: &str) -> String {
    let field = metric.rsplit('.').next().unwrap_or(metric);
    let words = field.trim_end_matches("_ms").replace('_', " ");
    match metric.strip_prefix("rooms.").and_then(|r| r.rsplit_once('.')) {
        Some((room, _)) => format!("room {room}: {words}"),
        None => words,
    }
}

/// Columns of `compare.csv`.
pub const CSV_COLUMNS: [&str; 24] = [
    "label_a",
    "label_b",
    "metric",
    "a_n",
    "a_null",
    "a_missing",
    "a_mean",
    "a_median",
    "a_ci_lo",
    "a_ci_hi",
    "b_n",
    "b_null",
    "b_missing",
    "b_mean",
    "b_median",
    "b_ci_lo",
    "b_ci_hi",
    "pairs",
    "diff_mean",
    "diff_ci_lo",
    "diff_ci_hi",
    "diff_ci_excludes_zero",
    "p_b_lower",
    "rank_p_value",
];

/// Reads `summary.json` of each run directory, keyed by the seed the summary records.
pub fn read_run_summaries(run_dirs: &[PathBuf]) -> Result<Vec<(u64, RunSummary)>, AnalysisError> {
    run_dirs
        .iter()
        .map(|dir| {
            let path = dir.join("summary.json");
            let summary = RunSummary::read(&path)?;
            let seed =
                summary.seed.ok_or_else(|| crate::error::format_error(&path, "no `seed`; runs are paired by seed"))?;
            Ok((seed, summary))
        })
        .collect()
}

/// The run directories under `root`: `root` itself if it holds `summary.json`, else every
/// `root/*/` and `root/cells/*/` that does, sorted by path.
pub fn find_run_dirs(root: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    if root.join("summary.json").is_file() {
        return Ok(vec![root.to_owned()]);
    }
    let mut dirs = Vec::new();
    for parent in [root.to_owned(), root.join("cells")] {
        if !parent.is_dir() {
            continue;
        }
        let entries =
            std::fs::read_dir(&parent).map_err(|source| AnalysisError::Io { path: parent.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| AnalysisError::Io { path: parent.clone(), source })?;
            if entry.path().join("summary.json").is_file() && !crate::sweep::is_work_dir(&entry.path()) {
                dirs.push(entry.path());
            }
        }
    }
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, conv: Option<f64>, deliveries: f64) -> (u64, RunSummary) {
        let conv = conv.map_or("null".to_string(), |c| c.to_string());
        let json = format!(
            r#"{{"seed": {seed}, "deliveries": {deliveries},
                "rooms": {{"main": {{"convergence_time_ms": {conv}, "converged": true}}}}}}"#
        );
        (seed, RunSummary::parse(&json, Path::new("s.json")).unwrap())
    }

    fn design(shift: f64) -> Vec<(u64, RunSummary)> {
        (1..=30)
            .map(|s| run(s, (s % 7 != 0).then_some(1000.0 + (s * 37 % 13) as f64 * 10.0 + shift), 100.0 + s as f64))
            .collect()
    }

    /// Like `design` without runs that never converge: every metric can be averaged.
    fn design_converging(shift: f64) -> Vec<(u64, RunSummary)> {
        (1..=30).map(|s| run(s, Some(1000.0 + (s * 37 % 13) as f64 * 10.0 + shift), 100.0 + s as f64)).collect()
    }

    #[test]
    fn identical_designs_differ_by_exactly_zero() {
        let a = design(0.0);
        let t = compare(&a, &a, "base", "same");
        for r in t.rows.iter().filter(|r| r.metric != "rooms.main.convergence_time_ms") {
            assert_eq!(r.diff.mean_diff, Some(0.0), "{}", r.metric);
            assert_eq!(r.diff.ci95, Some((0.0, 0.0)), "{}", r.metric);
            assert!(!r.flagged());
        }
        let conv = t.rows.iter().find(|r| r.metric == "rooms.main.convergence_time_ms").unwrap();
        assert_eq!((conv.a.n, conv.a.nulls), (26, 4));
        assert!(conv.null_note(t.runs_a, t.runs_b).contains("did not agree: A 4/30, B 4/30"));
        // censored runs: no mean, no paired difference; ranks say "no difference"
        assert_eq!((conv.a.mean, conv.diff.mean_diff), (None, None));
        let rank = conv.rank.as_ref().unwrap();
        assert_eq!(rank.p_b_lower, 0.5);
        assert!(rank.p_value > 0.9999, "{rank:?}");
        assert!(!conv.flagged());
    }

    #[test]
    fn a_shift_is_detected_and_the_ci_contains_the_means() {
        let t = compare(&design_converging(0.0), &design_converging(50.0), "a", "b");
        let conv = t.rows.iter().find(|r| r.metric == "rooms.main.convergence_time_ms").unwrap();
        assert_eq!(conv.diff.mean_diff, Some(50.0));
        assert_eq!(conv.diff.pairs, 30);
        for s in [&conv.a, &conv.b] {
            let (lo, hi) = s.ci95.unwrap();
            assert!(lo <= s.mean.unwrap() && s.mean.unwrap() <= hi);
        }
        // every pair differs by exactly 50: the interval is the point
        assert_eq!(conv.diff.ci95, Some((50.0, 50.0)));
        assert!(conv.diff.ci_excludes_zero);
        assert!(t.to_text().lines().any(|l| l.starts_with("rooms.main.convergence_time_ms") && l.contains('*')));
        // B is slower: fewer than half the (B, A) pairs have B sooner
        assert!(conv.rank.as_ref().unwrap().p_b_lower < 0.5);
    }

    #[test]
    fn censored_times_by_hand() {
        // A: 100, 200, never, never; B: 50, 150, 250, never (never = censored at the run's end).
        let (a, b) = ([Some(100.0), Some(200.0), None, None], [Some(50.0), Some(150.0), Some(250.0), None]);
        // Kaplan–Meier with censoring after every event: S(t) = share of runs still unconverged.
        // A: S(100) = 3/4, S(200) = 2/4 <= 1/2 -> median 200. B: S(50) = 3/4, S(150) = 2/4 -> 150.
        assert_eq!(km_median(&a), Some(200.0));
        assert_eq!(km_median(&b), Some(150.0));
        // three of four never converged: S stays at 3/4, the median is not reached
        assert_eq!(km_median(&[Some(1.0), None, None, None]), None);
        // no censoring: the smallest t with half the runs at or before it (the lower median)
        assert_eq!(km_median(&[Some(4.0), Some(1.0), Some(3.0), Some(2.0)]), Some(2.0));
        // U for B (b < a counts 1, ties 1/2, never = +inf):
        //   b=50: 4 (below 100, 200, never, never); b=150: 3; b=250: 2 (the two nevers);
        //   b=never: ties with A's two nevers, 2 x 1/2 = 1.  U_B = 10 of 16 pairs -> 0.625.
        // Normal approximation: mean 16/2 = 8; ties: one group of 3 (the nevers), t^3 - t = 24;
        // var = 4*4/12 * ((8+1) - 24/(8*7)) = 1.3333 * 8.5714 = 11.4286, sd 3.38062,
        // z = (10 - 8)/3.38062 = 0.59161, p = 2 (1 - Phi(0.59161)) = 2 (1 - 0.72293) = 0.55414.
        let t = mann_whitney_censored(&a, &b).unwrap();
        assert_eq!(t.u_b, 10.0);
        assert_eq!(t.p_b_lower, 0.625);
        assert!((t.p_value - 0.55414).abs() < 1e-4, "{t:?}");

        let side = |times: &[Option<f64>]| -> Vec<(u64, RunSummary)> {
            times.iter().enumerate().map(|(i, c)| run(i as u64 + 1, *c, 1.0)).collect()
        };
        let table = compare(&side(&a), &side(&b), "a", "b");
        let conv = table.rows.iter().find(|r| r.metric == "rooms.main.convergence_time_ms").unwrap();
        assert_eq!((conv.a.nulls, conv.b.nulls), (2, 1), "censored runs counted per design");
        assert_eq!((conv.a.median, conv.b.median), (Some(200.0), Some(150.0)));
        assert_eq!((conv.a.mean, conv.b.mean, conv.diff.mean_diff), (None, None, None), "no mean of survivors");
        assert_eq!(conv.rank.as_ref().unwrap().u_b, 10.0);
        let csv_path = tempfile::tempdir().unwrap();
        let path = csv_path.path().join("compare.csv");
        table.write_csv(&path).unwrap();
        let csv = std::fs::read_to_string(&path).unwrap();
        let line = csv.lines().find(|l| l.contains("convergence_time_ms")).unwrap();
        assert!(line.starts_with("a,b,rooms.main.convergence_time_ms,2,2,0,,200,,,3,1,0,,150,,,"), "{line}");
        assert!(line.contains(",false,0.625,0.554"), "{line}");
    }

    #[test]
    fn identical_logs_are_found_by_digest() {
        let with_digest = |seed: u64, digest: &str| {
            let json = format!(r#"{{"seed": {seed}, "deliveries": 1, "log_digest": "{digest}"}}"#);
            (seed, RunSummary::parse(&json, Path::new("s.json")).unwrap())
        };
        let a = vec![with_digest(1, "aa"), with_digest(2, "bb"), with_digest(3, "cc")];
        let b = vec![with_digest(1, "aa"), with_digest(2, "xx"), with_digest(3, "cc")];
        assert_eq!(identical_log_seeds(&a, &b), [1, 3]);
        assert_eq!(identical_log_seeds(&a, &a), [1, 2, 3]);
    }

    #[test]
    fn deterministic_and_skips_unpaired_seeds() {
        let a = design(0.0);
        let mut b = design(10.0);
        b.truncate(20);
        b.push(run(99, Some(5.0), 1.0));
        let t1 = compare(&a, &b, "a", "b");
        let t2 = compare(&a, &b, "a", "b");
        assert_eq!(t1, t2);
        assert_eq!(t1.to_text(), t2.to_text());
        assert_eq!(t1.unpaired_seeds_b, [99]);
        assert_eq!(t1.unpaired_seeds_a, (21..=30).collect::<Vec<u64>>());
        let d = t1.rows.iter().find(|r| r.metric == "deliveries").unwrap();
        assert_eq!(d.diff.pairs, 20);
        assert_eq!(d.b.n, 21);
    }
}
