//! Merging sweep outputs. A sweep (seeds × parameter grid) may run as shards on many machines;
//! each shard's directory holds `cells/<label>/summary.json` and `cells/<label>/cell.json`.
//! [`merge_sweep`] reads every cell of every directory, checks that cells present in several
//! shards agree, and writes `sweep.csv` (the interchange format) and `sweep.html`.
//!
//! The outputs depend only on the set of cells, never on how they were split into shards or on
//! the directories' paths: merging shards equals merging one directory holding all cells.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{format_error, read_json, write_file};
use crate::fmt::{csv_num, esc, natural_cmp, num, sort_values};
use crate::html::{figure, page, table, Cell};
use crate::plots::{Chart, MeanCiChart, MeanCiLine, MeanCiPoint, PlotSize};
use crate::stats::{mean, t_mean_ci};
use crate::summary::RunSummary;
use crate::AnalysisError;

/// Metrics plotted against each parameter, matched by the last segment of the metric path (so
/// `rooms.<room>.convergence_time_ms` matches for every room).
pub const MAIN_METRICS: &[&str] =
    &["time_to_agreement_ms", "distinct_final_states", "auth_disagreements", "deliveries"];
/// Above this many combinations of the other parameters, plots show one marginal line.
const MAX_LINES: usize = 8;

/// One cell of a sweep: a (seed, parameter values) point and its run's summary.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepCell {
    pub index: u64,
    pub seed: u64,
    /// `key=value` overrides of the scenario, split at the first `=`, in file order.
    pub overrides: Vec<(String, String)>,
    pub label: String,
    pub summary: RunSummary,
}

impl SweepCell {
    pub fn override_value(&self, key: &str) -> Option<&str> {
        self.overrides.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// What [`merge_sweep`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeOutcome {
    /// Distinct cells merged.
    pub cells: u32,
    /// Cells found in more than one directory with identical contents (merged once).
    pub identical_duplicates: u32,
    /// Cell directories skipped because `summary.json` or `cell.json` is missing (a shard that
    /// did not finish), with the missing file.
    pub incomplete: Vec<PathBuf>,
    /// Indices between the lowest and highest merged index that no directory had.
    pub missing_indices: Vec<u64>,
    pub csv: PathBuf,
    pub html: PathBuf,
}

struct Loaded {
    cell: SweepCell,
    raw_cell: Value,
    raw_summary: Value,
    source: PathBuf,
}

/// Reads the cells of every directory in `dirs`, writes `out/sweep.csv` and `out/sweep.html`.
/// Errors when a cell index appears twice with different contents; identical duplicates (a cell
/// run by two shards) are fine.
pub fn merge_sweep(dirs: &[PathBuf], out: &Path) -> Result<MergeOutcome, AnalysisError> {
    let mut by_index: BTreeMap<u64, Loaded> = BTreeMap::new();
    let mut identical_duplicates = 0;
    let mut incomplete = Vec::new();
    let mut incomplete_labels = BTreeSet::new();
    for dir in dirs {
        for cell_dir in cell_dirs(dir)? {
            let (summary, cell) = (cell_dir.join("summary.json"), cell_dir.join("cell.json"));
            if !summary.is_file() || !cell.is_file() {
                incomplete.push(if cell.is_file() { summary } else { cell });
                incomplete_labels.insert(dir_label(&cell_dir));
                continue;
            }
            let loaded = load_cell(&cell_dir)?;
            match by_index.get(&loaded.cell.index) {
                None => {
                    by_index.insert(loaded.cell.index, loaded);
                }
                Some(first) => {
                    if let Some(difference) = difference(first, &loaded) {
                        return Err(AnalysisError::ConflictingCell {
                            index: loaded.cell.index,
                            first: first.source.clone(),
                            second: loaded.source,
                            difference,
                        });
                    }
                    identical_duplicates += 1;
                }
            }
        }
    }
    if by_index.is_empty() {
        let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(AnalysisError::NoCells { dirs: list.join(", ") });
    }
    // `grid_cells` in cell.json (the whole grid's size) lets merge notice missing trailing cells.
    let grid_cells = by_index.values().filter_map(|l| l.raw_cell.get("grid_cells").and_then(Value::as_u64)).max();
    let cells: Vec<SweepCell> = by_index.into_values().map(|l| l.cell).collect();
    let mut missing_indices = missing_indices(&cells);
    if let Some(total) = grid_cells {
        let present: BTreeSet<u64> = cells.iter().map(|c| c.index).collect();
        missing_indices = (0..total).filter(|i| !present.contains(i)).collect();
    }
    let csv = out.join("sweep.csv");
    write_file(&csv, &sweep_csv(&cells).map_err(|source| AnalysisError::Csv { path: csv.clone(), source })?)?;
    let html = out.join("sweep.html");
    let notes = SweepNotes { missing_indices: missing_indices.clone(), incomplete_labels };
    write_file(&html, sweep_html(&cells, &notes)?.as_bytes())?;
    incomplete.sort();
    Ok(MergeOutcome { cells: cells.len() as u32, identical_duplicates, incomplete, missing_indices, csv, html })
}

fn dir_label(cell_dir: &Path) -> String {
    cell_dir.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// `dir/cells/*/`, sorted.
fn cell_dirs(dir: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    let cells = dir.join("cells");
    let io = |source| AnalysisError::Io { path: cells.clone(), source };
    if !cells.is_dir() {
        return Err(format_error(dir, "not a sweep output directory: no `cells/` folder"));
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&cells).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() && !is_work_dir(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// A cell being written (`<cell>.partial-<tag>`, an interrupted run's leftover) or an earlier
/// copy being replaced (`<cell>.old-<tag>`): never a cell of the sweep.
pub(crate) fn is_work_dir(path: &Path) -> bool {
    let name = dir_label(path);
    name.contains(".partial-") || name.contains(".old-")
}

fn load_cell(cell_dir: &Path) -> Result<Loaded, AnalysisError> {
    let (summary_path, cell_path) = (cell_dir.join("summary.json"), cell_dir.join("cell.json"));
    let raw_summary = read_json(&summary_path)?;
    let raw_cell = read_json(&cell_path)?;
    let summary = RunSummary::from_value(&raw_summary, &summary_path)?;
    let obj = raw_cell.as_object().ok_or_else(|| format_error(&cell_path, "cell.json must be an object"))?;
    let integer = |key: &str| {
        obj.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| format_error(&cell_path, format!("`{key}` must be a non-negative integer")))
    };
    let mut overrides: Vec<(String, String)> = Vec::new();
    if let Some(list) = obj.get("overrides").filter(|v| !v.is_null()) {
        let list = list
            .as_array()
            .ok_or_else(|| format_error(&cell_path, "`overrides` must be an array of \"key=value\" strings"))?;
        for item in list {
            let text = item.as_str().unwrap_or("");
            let Some((k, v)) = text.split_once('=') else {
                return Err(format_error(&cell_path, format!("override {item} is not of the form \"key=value\"")));
            };
            // Values as a table shows them: `faults.0.duration="5s"` is the value `5s`.
            let (k, v) = (k.trim().to_string(), roomsim_engine::scenario::override_value_text(v));
            if overrides.iter().any(|(seen, _)| *seen == k) {
                return Err(format_error(&cell_path, format!("override key `{k}` appears twice")));
            }
            overrides.push((k, v));
        }
    }
    let label = obj.get("label").and_then(Value::as_str).map_or_else(|| dir_label(cell_dir), str::to_owned);
    Ok(Loaded {
        cell: SweepCell { index: integer("index")?, seed: integer("seed")?, overrides, label, summary },
        raw_cell,
        raw_summary,
        source: cell_dir.to_owned(),
    })
}

/// None when two copies of a cell agree; else what differs.
fn difference(a: &Loaded, b: &Loaded) -> Option<String> {
    if a.raw_cell != b.raw_cell {
        return Some(format!("cell.json: {} vs {}", a.raw_cell, b.raw_cell));
    }
    if a.raw_summary == b.raw_summary {
        return None;
    }
    let (ma, mb) = (&a.cell.summary.metrics, &b.cell.summary.metrics);
    let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    for k in keys {
        let (x, y) = (ma.get(k), mb.get(k));
        if x != y {
            let show = |v: Option<&Option<f64>>| match v {
                None => "absent".to_string(),
                Some(None) => "null".to_string(),
                Some(Some(v)) => num(*v),
            };
            return Some(format!("summary.json `{k}`: {} vs {}", show(x), show(y)));
        }
    }
    Some("summary.json differs in a non-numeric field".into())
}

fn missing_indices(cells: &[SweepCell]) -> Vec<u64> {
    let present: BTreeSet<u64> = cells.iter().map(|c| c.index).collect();
    match (present.first(), present.last()) {
        (Some(lo), Some(hi)) => (*lo..=*hi).filter(|i| !present.contains(i)).collect(),
        _ => Vec::new(),
    }
}

/// The override every cell carries for its seed. The seed is the replicate, never a parameter:
/// it has its own column, and the charts average over it.
pub const SEED_OVERRIDE: &str = "scenario.seed";

/// Override keys of all cells (but the seed's), in natural order.
fn parameter_keys(cells: &[SweepCell]) -> Vec<String> {
    let mut keys: Vec<String> = cells
        .iter()
        .flat_map(|c| c.overrides.iter().map(|(k, _)| k.clone()))
        .filter(|k| k != SEED_OVERRIDE)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    keys.sort_by(|a, b| natural_cmp(a, b));
    keys
}

fn metric_keys(cells: &[SweepCell]) -> Vec<String> {
    cells.iter().flat_map(|c| c.summary.metrics.keys().cloned()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// `sweep.csv`: `index,seed,label`, one column per override key, then every flattened metric.
/// An override column is named by its key, prefixed `override:` only if the key collides with
/// a metric or a fixed column.
pub fn sweep_csv(cells: &[SweepCell]) -> Result<Vec<u8>, csv::Error> {
    let params = parameter_keys(cells);
    let metrics = metric_keys(cells);
    let fixed = ["index", "seed", "label"];
    let mut header: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
    for p in &params {
        let collides = fixed.contains(&p.as_str()) || metrics.binary_search(p).is_ok();
        header.push(if collides { format!("override:{p}") } else { p.clone() });
    }
    header.extend(metrics.iter().cloned());
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header)?;
    for c in cells {
        let mut rec = vec![c.index.to_string(), c.seed.to_string(), c.label.clone()];
        rec.extend(params.iter().map(|p| c.override_value(p).unwrap_or("").to_string()));
        rec.extend(metrics.iter().map(|m| csv_num(c.summary.metrics.get(m).copied().flatten())));
        w.write_record(&rec)?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// What the page should say about cells that are not there.
#[derive(Clone, Debug, Default)]
pub struct SweepNotes {
    pub missing_indices: Vec<u64>,
    pub incomplete_labels: BTreeSet<String>,
}

/// `sweep.html`: parameters, the table of cells with the main metrics, and for each parameter
/// with several values the main metrics' means with 95% CIs against it.
pub fn sweep_html(cells: &[SweepCell], notes: &SweepNotes) -> Result<String, AnalysisError> {
    let scenario = cells.iter().find_map(|c| c.summary.scenario.clone()).unwrap_or_else(|| "sweep".into());
    let params = parameter_keys(cells);
    let seeds: BTreeSet<u64> = cells.iter().map(|c| c.seed).collect();
    let mut body = format!("<h1>Sweep: {}</h1>\n", esc(&scenario));
    let _ = writeln!(
        body,
        "<p class=\"sub\">{} cells · {} seeds · {} parameters</p>",
        cells.len(),
        seeds.len(),
        params.len()
    );
    body.push_str(
        "<section class=\"howto\"><p><b>How to read this.</b> Each cell is one run: a seed and one \
         value for each swept parameter. For every parameter with several values, the charts show \
         the mean of the main end-of-run metrics over the seeds of each value (one line per \
         combination of the other parameters; n = the number of seeds), with 95% Student-t \
         confidence intervals (mean ± t(0.975; n − 1) · s / √n) as bars; a point of one seed has \
         no bar. Where bars of two values do not overlap, the parameter matters more than seed \
         noise. The seed is never a parameter. Every metric of every cell is in <a href=\"sweep.csv\">sweep.csv</a>.</p></section>\n",
    );
    if !notes.missing_indices.is_empty() {
        let list: Vec<String> = notes.missing_indices.iter().map(u64::to_string).collect();
        let _ = writeln!(body, "<div class=\"verdict warn\">Cells missing from the merge: {}<span class=\"detail\">A shard may not have finished or not been merged.</span></div>", esc(&list.join(", ")));
    }
    if !notes.incomplete_labels.is_empty() {
        let list: Vec<&str> = notes.incomplete_labels.iter().map(String::as_str).collect();
        let _ = writeln!(
            body,
            "<p class=\"note\">Skipped incomplete cell directories (no summary.json or cell.json): {}</p>",
            esc(&list.join(", "))
        );
    }
    body.push_str(&parameters_table(cells, &params));
    body.push_str(&parameter_plots(cells, &params)?);
    body.push_str(&cells_table(cells, &params));
    Ok(page(&format!("roomsim sweep: {scenario}"), &body))
}

fn values_of(cells: &[SweepCell], key: &str) -> Vec<String> {
    let mut v: Vec<String> = cells
        .iter()
        .filter_map(|c| c.override_value(key).map(str::to_owned))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    sort_values(&mut v);
    v
}

fn parameters_table(cells: &[SweepCell], params: &[String]) -> String {
    if params.is_empty() {
        return "<p class=\"note\">No parameter overrides: the cells differ only by seed.</p>\n".into();
    }
    let headers = vec![("parameter".to_string(), ""), ("values".to_string(), "")];
    let rows: Vec<Vec<Cell>> = params
        .iter()
        .map(|p| {
            vec![
                Cell { html: format!("<code>{}</code>", esc(p)), class: "" },
                Cell::text(&values_of(cells, p).join(", ")),
            ]
        })
        .collect();
    format!("<h2>Parameters</h2>\n{}", table(&headers, &rows))
}

fn main_metric_keys(cells: &[SweepCell]) -> Vec<String> {
    let mut keys: Vec<String> =
        metric_keys(cells).into_iter().filter(|k| MAIN_METRICS.contains(&k.rsplit('.').next().unwrap_or(k))).collect();
    let rank = |k: &str| MAIN_METRICS.iter().position(|m| k.ends_with(m)).unwrap_or(MAIN_METRICS.len());
    keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| natural_cmp(a, b)));
    keys
}

fn cells_table(cells: &[SweepCell], params: &[String]) -> String {
    let metrics = main_metric_keys(cells);
    let mut headers: Vec<(String, &'static str)> = vec![("index".into(), "num"), ("seed".into(), "num")];
    headers.extend(params.iter().map(|p| (p.clone(), "")));
    headers.extend(metrics.iter().map(|m| (m.clone(), "num")));
    headers.push(("label".into(), ""));
    let rows: Vec<Vec<Cell>> = cells
        .iter()
        .map(|c| {
            let mut row = vec![Cell::num(c.index.to_string()), Cell::num(c.seed.to_string())];
            row.extend(params.iter().map(|p| Cell::text(c.override_value(p).unwrap_or(""))));
            row.extend(metrics.iter().map(|m| match c.summary.metrics.get(m) {
                Some(Some(v)) => Cell::num(num(*v)),
                Some(None) if crate::compare::is_agreement_time(m) => Cell::num("never".into()).with_class("bad"),
                Some(None) => Cell::num("—".into()),
                None => Cell::text(""),
            }));
            row.push(Cell::text(&c.label));
            row
        })
        .collect();
    // long tables start folded: the charts are the point
    let open = if cells.len() <= 60 { " open" } else { "" };
    format!(
        "<h2>Cells</h2>\n<details{open}><summary>{} cells with the main metrics \
         (all metrics: sweep.csv)</summary>\n{}</details>\n",
        cells.len(),
        table(&headers, &rows)
    )
}

fn parameter_plots(cells: &[SweepCell], params: &[String]) -> Result<String, AnalysisError> {
    let (constant, metrics): (Vec<String>, Vec<String>) =
        main_metric_keys(cells).into_iter().partition(|m| is_constant(cells, m));
    let mut out = String::new();
    for p in params.iter().filter(|p| values_of(cells, p).len() > 1) {
        let _ = writeln!(out, "<h2>Against <code>{}</code></h2>\n<div class=\"plots grid\">", esc(p));
        for m in &metrics {
            let (chart, nulls) = mean_ci_chart(cells, p, params, m);
            let svg = Chart::MeanCi(chart).to_inline_svg(PlotSize::new(560, 340))?;
            let caption = if nulls > 0 {
                format!("{nulls} cells without a value ({}) are not in the means.", crate::compare::null_word(m))
            } else {
                String::new()
            };
            out.push_str(&figure(&svg, &esc(&caption)));
        }
        out.push_str("</div>\n");
    }
    if !constant.is_empty() && !out.is_empty() {
        let list: Vec<String> = constant
            .iter()
            .map(|m| {
                let v = cells[0].summary.metrics.get(m).copied().flatten();
                format!("<code>{}</code> = {}", esc(m), v.map_or_else(|| "—".into(), num))
            })
            .collect();
        let _ = writeln!(out, "<p class=\"note\">Not plotted, the same in every cell: {}.</p>", list.join(", "));
    }
    Ok(out)
}

/// The other parameters of a chart: each line is one combination of their values.
struct OtherParams<'a> {
    keys: Vec<(&'a String, Vec<String>)>,
}

impl<'a> OtherParams<'a> {
    fn new(cells: &[SweepCell], params: &'a [String], param: &str) -> Self {
        let keys = params.iter().filter(|k| *k != param).map(|k| (k, values_of(cells, k))).collect();
        OtherParams { keys }
    }

    /// A cell's combination as ranks of the values (so lines sort by value); 0 = unset.
    fn group_of(&self, c: &SweepCell) -> Vec<usize> {
        self.keys
            .iter()
            .map(|(k, values)| {
                c.override_value(k).and_then(|v| values.iter().position(|x| x == v)).map_or(0, |i| i + 1)
            })
            .collect()
    }

    fn label_of(&self, group: &[usize]) -> String {
        let parts: Vec<&str> = group
            .iter()
            .zip(&self.keys)
            .map(|(rank, (_, values))| match rank {
                0 => "(unset)",
                r => values[r - 1].as_str(),
            })
            .collect();
        parts.join(", ")
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        names.join(", ")
    }
}

/// The chart of `metric` against parameter `param`, and the number of cells with a null value.
/// One line per combination of the other parameters (ordered by their values), or one marginal
/// line when there are none or more than [`MAX_LINES`] combinations.
pub fn mean_ci_chart(cells: &[SweepCell], param: &str, params: &[String], metric: &str) -> (MeanCiChart, u32) {
    let categories = values_of(cells, param);
    let others = OtherParams::new(cells, params, param);
    let groups: BTreeSet<Vec<usize>> = cells.iter().map(|c| others.group_of(c)).collect();
    let marginal = groups.len() > MAX_LINES || groups.len() <= 1;
    // group → category index → values
    let mut data: BTreeMap<Vec<usize>, BTreeMap<usize, Vec<f64>>> = BTreeMap::new();
    let mut nulls = 0;
    for c in cells {
        let value = c.summary.metrics.get(metric);
        let category = c.override_value(param).and_then(|v| categories.iter().position(|x| x == v));
        match (category, value) {
            (Some(cat), Some(Some(v))) => {
                let g = if marginal { Vec::new() } else { others.group_of(c) };
                data.entry(g).or_default().entry(cat).or_default().push(*v);
            }
            (Some(_), Some(None)) => nulls += 1,
            _ => {}
        }
    }
    let lines = data
        .into_iter()
        .map(|(group, by_cat)| {
            let label = if marginal { "all cells".to_string() } else { others.label_of(&group) };
            mean_ci_line(label, by_cat)
        })
        .collect();
    let chart = MeanCiChart {
        title: metric.to_string(),
        x_label: param.to_string(),
        y_label: if metric.ends_with("_ms") { "ms (mean, 95% CI)".into() } else { "mean, 95% CI".into() },
        legend_title: (!marginal).then(|| others.names()),
        categories,
        lines,
    };
    (chart, nulls)
}

fn mean_ci_line(label: String, by_category: BTreeMap<usize, Vec<f64>>) -> MeanCiLine {
    let points = by_category
        .into_iter()
        .map(|(cat, xs)| MeanCiPoint {
            category: cat,
            mean: mean(&xs).unwrap_or(0.0),
            ci: t_mean_ci(&xs),
            n: xs.len() as u32,
        })
        .collect();
    MeanCiLine { label, points }
}

/// True when every cell has the same value (or null) for `metric`: a flat line, not plotted.
fn is_constant(cells: &[SweepCell], metric: &str) -> bool {
    let mut values = cells.iter().map(|c| c.summary.metrics.get(metric).copied().flatten());
    let first = values.next().flatten();
    values.all(|v| v == first) && cells.iter().all(|c| c.summary.metrics.get(metric).is_some_and(|v| v.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(index: u64, seed: u64, loss: &str, conv: Option<f64>) -> SweepCell {
        let conv = conv.map_or("null".to_string(), |v| v.to_string());
        let json = format!(
            r#"{{"seed": {seed}, "deliveries": {}, "rooms": {{"main": {{"convergence_time_ms": {conv}}}}}}}"#,
            100 + index
        );
        SweepCell {
            index,
            seed,
            // as `roomsim sweep` writes them: the grid values, then the seed
            overrides: vec![("network.loss".into(), loss.into()), ("scenario.seed".into(), seed.to_string())],
            label: format!("c{index}"),
            summary: RunSummary::parse(&json, Path::new("s.json")).unwrap(),
        }
    }

    #[test]
    fn csv_has_fixed_then_parameter_then_metric_columns() {
        let cells = vec![cell(0, 1, "0", Some(10.0)), cell(1, 1, "0.1", None)];
        let csv = String::from_utf8(sweep_csv(&cells).unwrap()).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("index,seed,label,network.loss,deliveries,rooms.main.convergence_time_ms"));
        assert_eq!(lines.next(), Some("0,1,c0,0,100,10"));
        assert_eq!(lines.next(), Some("1,1,c1,0.1,101,"));
    }

    #[test]
    fn means_per_parameter_value_count_nulls() {
        let cells = vec![
            cell(0, 1, "0.1", Some(10.0)),
            cell(1, 2, "0.1", Some(20.0)),
            cell(2, 1, "0.05", Some(5.0)),
            cell(3, 2, "0.05", None),
        ];
        let params = vec!["network.loss".to_string()];
        let (chart, nulls) = mean_ci_chart(&cells, "network.loss", &params, "rooms.main.convergence_time_ms");
        assert_eq!(nulls, 1);
        assert_eq!(chart.categories, ["0.05", "0.1"]);
        assert_eq!(chart.lines.len(), 1);
        let pts = &chart.lines[0].points;
        assert_eq!((pts[0].mean, pts[0].n), (5.0, 1));
        assert_eq!((pts[1].mean, pts[1].n), (15.0, 2));
        assert_eq!(missing_indices(&cells[1..]), Vec::<u64>::new());
        assert_eq!(missing_indices(&[cells[0].clone(), cells[3].clone()]), [1, 2]);
    }

    #[test]
    fn seeds_are_averaged_with_student_t_intervals_never_a_parameter() {
        let cells = vec![
            cell(0, 1, "0.1", Some(10.0)),
            cell(1, 2, "0.1", Some(20.0)),
            cell(2, 1, "0.2", Some(30.0)),
            cell(3, 2, "0.2", Some(50.0)),
        ];
        let params = parameter_keys(&cells);
        assert_eq!(params, ["network.loss"], "scenario.seed is not a parameter");
        let (chart, nulls) = mean_ci_chart(&cells, "network.loss", &params, "rooms.main.convergence_time_ms");
        assert_eq!(nulls, 0);
        assert_eq!(chart.lines.len(), 1, "one line, not one per seed");
        let pts = &chart.lines[0].points;
        // loss 0.1: 10, 20 -> mean 15, s = sqrt((25 + 25) / 1) = 7.0711, s / sqrt(2) = 5,
        // half width = t(0.975; 1) * 5 = 12.706204736 * 5 = 63.53102368
        assert_eq!((pts[0].mean, pts[0].n), (15.0, 2));
        let (lo, hi) = pts[0].ci.unwrap();
        assert!((lo - (15.0 - 63.53102368)).abs() < 1e-6 && (hi - (15.0 + 63.53102368)).abs() < 1e-6, "{lo} {hi}");
        // loss 0.2: 30, 50 -> mean 40, s / sqrt(2) = 10, half width 127.06204736
        assert_eq!((pts[1].mean, pts[1].n), (40.0, 2));
        let (lo, hi) = pts[1].ci.unwrap();
        assert!((lo - (40.0 - 127.06204736)).abs() < 1e-6 && (hi - (40.0 + 127.06204736)).abs() < 1e-6);
        let html = sweep_html(&cells, &SweepNotes::default()).unwrap();
        assert!(html.contains("Against <code>network.loss</code>"));
        assert!(!html.contains("Against <code>scenario.seed</code>"));
    }

    /// Writes `dir/cells/<label>/` as `roomsim sweep` does.
    fn write_cell(dir: &Path, label: &str, cell: &str, summary: &str) {
        let d = dir.join("cells").join(label);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cell.json"), cell).unwrap();
        std::fs::write(d.join("summary.json"), summary).unwrap();
    }

    #[test]
    fn csv_text_is_quoted_once_and_work_dirs_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s");
        // cell.json overrides are TOML values: a string is written `"30s"`; a table has commas
        // and quotes of its own.
        let overrides = |d: &str, seed: u64| {
            format!(
                r#"["faults.0.duration=\"{d}\"", "network.latency={{ dist = \"fixed\", value = \"5ms\" }}", "scenario.seed={seed}"]"#
            )
        };
        let cell0 = format!(r#"{{"index": 0, "seed": 1, "label": "a", "overrides": {}}}"#, overrides("30s", 1));
        let cell1 = format!(r#"{{"index": 1, "seed": 2, "label": "b", "overrides": {}}}"#, overrides("5s", 2));
        write_cell(&dir, "00000-a", &cell0, r#"{"seed": 1, "deliveries": 100, "scenario_file": "s.toml"}"#);
        write_cell(&dir, "00001-b", &cell1, r#"{"seed": 2, "deliveries": 101, "scenario_file": "s.toml"}"#);
        // an interrupted run's leftover and a copy being replaced: not cells
        write_cell(&dir, "00001-b.partial-0123456789ab", &cell1, r#"{"seed": 2, "deliveries": 7}"#);
        write_cell(&dir, "00001-b.old-0123456789ab", &cell1, r#"{"seed": 2, "deliveries": 8}"#);
        let out = tmp.path().join("merged");
        let m = merge_sweep(&[dir], &out).unwrap();
        assert_eq!((m.cells, m.identical_duplicates, m.incomplete.len()), (2, 0, 0));
        let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
        // `30s` unquoted (it needs no CSV quoting); the table quoted once by CSV, its own quotes
        // doubled; no `scenario.seed` column (the seed has its own).
        assert_eq!(
            csv,
            "index,seed,label,faults.0.duration,network.latency,deliveries\n\
             0,1,a,30s,\"{ dist = \"\"fixed\"\", value = \"\"5ms\"\" }\",100\n\
             1,2,b,5s,\"{ dist = \"\"fixed\"\", value = \"\"5ms\"\" }\",101\n"
        );
    }
}
