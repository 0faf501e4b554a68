//! `report.html` for one run: verdict, summary tables, fault timeline, one chart per
//! (room, measure) found in `metrics.csv`, where to get the room's DAG picture, the scenario
//! text. One file, inline SVG and CSS, readable offline and without scripts. Writing it never
//! starts a process (no Graphviz): DAG pictures come from the run explorer, or from
//! `roomsim dag dot`.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use crate::error::{read_text, write_file};
use crate::fmt::{esc, natural_cmp, num, slug};
use crate::html::{figure, page, table, Cell};
use crate::metrics::{MetricsTable, SeriesKey};
use crate::plots::measures::measure_rank;
use crate::plots::time_series::FaultBand;
use crate::plots::timeline::faults_timeline_svg;
use crate::plots::{describe_measure, Chart, PlotSize, TimeSeriesChart};
use crate::summary::{FieldValue, RoomSummary, RunSummary};
use crate::AnalysisError;

/// Room fields shown first, in this order; any other field follows alphabetically.
const ROOM_FIELD_ORDER: &[&str] = &[
    "servers_expected",
    "servers_in_room",
    "byzantine_in_room",
    "joins_failed",
    "agreed_at_end",
    "time_to_agreement_ms",
    "agreement_reached_ms",
    "divergence_episodes",
    "diverged_ms_total",
    "distinct_final_states",
    "largest_agreeing_group",
    "auth_disagreements",
    "soft_fail_disagreements",
    "max_event_lag",
    "events_missing_at_end",
    "max_forward_extremities",
    "events",
];
/// Run fields shown first.
const RUN_FIELD_ORDER: &[&str] = &["seed", "servers", "events_created", "deliveries", "sim_time_end_ms", "threads"];

/// Everything the report reads from a run directory.
#[derive(Clone, Debug)]
pub struct RunFiles {
    pub dir: PathBuf,
    pub summary: RunSummary,
    /// None when the run has no `metrics.csv`.
    pub metrics: Option<MetricsTable>,
    pub scenario_text: Option<String>,
}

/// Output format of [`write_run_plots`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Svg,
    Png,
}

impl RunFiles {
    /// Reads a run directory: `summary.json` is required, the rest optional.
    pub fn load(run_dir: &Path) -> Result<Self, AnalysisError> {
        let summary = RunSummary::read(&run_dir.join("summary.json"))?;
        let metrics_path = run_dir.join("metrics.csv");
        let metrics = if metrics_path.is_file() { Some(MetricsTable::read(&metrics_path)?) } else { None };
        let scenario_path = run_dir.join("scenario.toml");
        let scenario_text = if scenario_path.is_file() { Some(read_text(&scenario_path)?) } else { None };
        Ok(RunFiles { dir: run_dir.to_owned(), summary, metrics, scenario_text })
    }

    /// The name the report uses for a room as `metrics.csv` writes it (a name or a room ID).
    pub fn room_name(&self, csv_room: &str) -> String {
        self.summary
            .rooms
            .values()
            .find(|r| r.room_id.as_deref() == Some(csv_room))
            .map_or_else(|| csv_room.to_string(), |r| r.name.clone())
    }

    /// Rooms of the summary and of `metrics.csv`, in natural order.
    pub fn room_names(&self) -> Vec<String> {
        let mut names: BTreeSet<String> = self.summary.rooms.keys().cloned().collect();
        if let Some(m) = &self.metrics {
            names.extend(m.rooms().map(|r| self.room_name(r)));
        }
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort_by(|a, b| natural_cmp(a, b));
        names
    }

    /// End of the x axes: the summary's `sim_time_end_ms`, else the last sample.
    pub fn x_end_ms(&self) -> f64 {
        self.summary
            .sim_time_end_ms()
            .or_else(|| self.metrics.as_ref().and_then(MetricsTable::last_time_ms))
            .unwrap_or(0.0)
    }

    /// One time-series chart per (room, measure) of `metrics.csv`, rooms in natural order and
    /// known measures first; server-wide measures (`room` None) last.
    pub fn charts(&self) -> Vec<(SeriesKey, TimeSeriesChart)> {
        let Some(metrics) = &self.metrics else {
            return Vec::new();
        };
        let mut all = metrics.series(|r| self.room_name(r));
        merge_membership(&mut all);
        let mut out: Vec<(SeriesKey, TimeSeriesChart)> = all
            .iter()
            .map(|(key, series)| {
                let mut chart = TimeSeriesChart::from_series(key, series, &self.summary.faults, self.x_end_ms());
                if key.measure == "agreement" {
                    let room = key.room.as_ref().and_then(|r| self.summary.rooms.get(r));
                    chart.episodes =
                        room.map_or_else(Vec::new, |r| r.episodes.iter().map(FaultBand::from_fault).collect());
                }
                (key.clone(), chart)
            })
            .collect();
        out.sort_by(|(a, _), (b, _)| {
            let room_rank = |k: &SeriesKey| (k.room.is_none(), k.room.clone().unwrap_or_default());
            let (ra, rb) = (room_rank(a), room_rank(b));
            (ra.0.cmp(&rb.0))
                .then_with(|| natural_cmp(&ra.1, &rb.1))
                .then_with(|| measure_rank(&a.measure).cmp(&measure_rank(&b.measure)))
        });
        out
    }
}

/// Per room, `servers_expected` and `servers_in_room` (room-wide series) become one
/// `membership` chart with a line each, so that missing servers show as the gap between them.
fn merge_membership(all: &mut std::collections::BTreeMap<SeriesKey, crate::metrics::MeasureSeries>) {
    let rooms: Vec<Option<String>> =
        all.keys().filter(|k| k.measure == "servers_expected").map(|k| k.room.clone()).collect();
    for room in rooms {
        let key = |measure: &str| SeriesKey { room: room.clone(), measure: measure.to_owned() };
        let (Some(expected), Some(in_room)) =
            (all.remove(&key("servers_expected")), all.remove(&key("servers_in_room")))
        else {
            continue;
        };
        let pick = |s: crate::metrics::MeasureSeries| s.lines.into_values().next().unwrap_or_default();
        let mut lines = std::collections::BTreeMap::new();
        lines.insert("expected".to_owned(), pick(expected));
        lines.insert("in room".to_owned(), pick(in_room));
        all.insert(key("membership"), crate::metrics::MeasureSeries { lines });
    }
}

/// Writes `RUN/report.html` and returns its path.
pub fn write_run_report(run_dir: &Path) -> Result<PathBuf, AnalysisError> {
    let run = RunFiles::load(run_dir)?;
    let html = render_run_report(&run)?;
    let path = run_dir.join("report.html");
    write_file(&path, html.as_bytes())?;
    Ok(path)
}

/// Writes every time-series chart of the run as `RUN/plots/<room>/<measure>.svg|png`
/// (server-wide measures under `plots/server-wide/`). Returns the paths, in report order.
pub fn write_run_plots(run_dir: &Path, format: ImageFormat, size: PlotSize) -> Result<Vec<PathBuf>, AnalysisError> {
    let run = RunFiles::load(run_dir)?;
    let mut paths = Vec::new();
    for (key, chart) in run.charts() {
        let folder = key.room.as_deref().map_or_else(|| "server-wide".to_string(), file_name);
        let stem = run_dir.join("plots").join(folder).join(file_name(&key.measure));
        let chart = Chart::TimeSeries(chart);
        let path = match format {
            ImageFormat::Svg => {
                let path = stem.with_extension("svg");
                write_file(&path, chart.to_svg(size)?.as_bytes())?;
                path
            }
            ImageFormat::Png => {
                let path = stem.with_extension("png");
                chart.write_png(size, &path)?;
                path
            }
        };
        paths.push(path);
    }
    Ok(paths)
}

/// A name safe as one path component: letters, digits, `-`, `_` and `.` kept, the rest `_`.
fn file_name(s: &str) -> String {
    let name: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    match name.trim_start_matches('.') {
        "" => "_".to_string(),
        n => n.to_string(),
    }
}

/// The report as a string (what [`write_run_report`] writes).
pub fn render_run_report(run: &RunFiles) -> Result<String, AnalysisError> {
    let s = &run.summary;
    let scenario = s.scenario.clone().unwrap_or_else(|| "unnamed scenario".into());
    let seed = s.seed.map_or_else(|| "?".to_string(), |v| v.to_string());
    let title = format!("{scenario} — seed {seed}");
    let mut body = String::new();
    let _ = writeln!(body, "<h1>{}</h1>", esc(&title));
    let _ = writeln!(body, "<p class=\"sub\">{}</p>", esc(&subtitle(run)));
    body.push_str(&how_to_read(run, &scenario, &seed));
    body.push_str(&verdict_banner(s));
    body.push_str(&navigation(run));
    body.push_str("<h2 id=\"summary\">Summary</h2>\n");
    body.push_str(&run_table(s));
    body.push_str(&rooms_table(s));
    body.push_str(&proposal_tables(s));
    body.push_str("<h2 id=\"faults\">Faults</h2>\n");
    let _ =
        writeln!(body, "<div class=\"timeline-box\">{}</div>", faults_timeline_svg(&s.faults, run.x_end_ms(), 1000));
    body.push_str(&room_sections(run)?);
    body.push_str(&scenario_section(run));
    Ok(page(&format!("roomsim report: {title}"), &body))
}

fn subtitle(run: &RunFiles) -> String {
    let s = &run.summary;
    let mut parts = Vec::new();
    if let Some(f) = &s.scenario_file {
        // By name and content hash: a report never holds the path the scenario was given by.
        let name = std::path::Path::new(f).file_name().map_or_else(|| f.clone(), |n| n.to_string_lossy().into_owned());
        match &s.scenario_sha256 {
            Some(h) => parts.push(format!("scenario file {name} (sha256 {})", h.chars().take(16).collect::<String>())),
            None => parts.push(format!("scenario file {name}")),
        }
    }
    if let Some(FieldValue::Number(n)) = s.top_level.get("servers") {
        parts.push(format!("{} servers", num(*n)));
    }
    parts.push(format!("{} rooms", run.room_names().len()));
    parts.push(format!("{} s simulated", num(run.x_end_ms() / 1000.0)));
    if let Some(d) = &s.log_digest {
        parts.push(format!("log digest {}", d.chars().take(16).collect::<String>()));
    }
    parts.join(" · ")
}

fn how_to_read(run: &RunFiles, scenario: &str, seed: &str) -> String {
    let faults = match run.summary.faults.len() {
        0 => "no faults were injected".to_string(),
        1 => "one fault was injected".to_string(),
        n => format!("{n} faults were injected"),
    };
    format!(
        "<section class=\"howto\"><p><b>How to read this.</b> One simulated run of scenario \
         <b>{}</b> with seed <b>{}</b>; {faults}. The banner below is the verdict: green when every \
         room ended with all the servers that should be in it holding the same state (<i>agreement</i>), \
         no event was accepted by one server but rejected by another (<i>auth disagreement</i>, which a \
         correct protocol never produces), no invariant was violated and every member the scenario \
         meant to join is in; amber when members are missing; red lists what went wrong.</p><p>Then come one row per room of \
         end-of-run numbers, the fault timeline, and for each room one chart per measure over \
         simulated time — one line per server, faults shaded — where you can watch divergence \
         rise during a fault and fall after it ends. The run is deterministic: the same scenario \
         and seed reproduce it exactly.</p></section>\n",
        esc(scenario),
        esc(seed)
    )
}

/// The banner at the top of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `ok` (green), `bad` (red) or `warn` (amber).
    pub class: &'static str,
    pub headline: String,
    pub detail: String,
}

/// Red when a room did not reach agreement, had auth disagreements, or invariants were
/// violated; amber when members the scenario meant to join are missing (or the summary does not
/// say); green otherwise. Says why in words.
pub fn verdict(s: &RunSummary) -> Verdict {
    if s.rooms.is_empty() {
        return Verdict {
            class: "warn",
            headline: "? The summary lists no rooms".into(),
            detail: "Nothing to judge.".into(),
        };
    }
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut unknown = Vec::new();
    if let Some(n) = s.top_level.get("invariant_violations").and_then(|v| v.as_metric()).filter(|n| *n > 0.0) {
        problems.push(format!("{} invariant violation{}", num(n), if n == 1.0 { "" } else { "s" }));
    }
    let mut rooms: Vec<&RoomSummary> = s.rooms.values().collect();
    rooms.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    for r in &rooms {
        // `converged` is what runs written before `agreed_at_end` recorded.
        match r.fields.get("agreed_at_end").or_else(|| r.fields.get("converged")) {
            Some(FieldValue::Bool(true)) => {}
            Some(FieldValue::Bool(false)) => {
                let states = r
                    .number("distinct_final_states")
                    .map_or(String::new(), |n| format!(" ({} distinct final states)", num(n)));
                problems.push(format!("room {} did not agree by the end{states}", r.name));
            }
            _ => unknown.push(format!("room {}: agreement not recorded", r.name)),
        }
        if let Some(n) = r.number("auth_disagreements").filter(|n| *n > 0.0) {
            problems.push(format!("room {}: {} auth disagreements", r.name, num(n)));
        }
        if !r.members_missing.is_empty() {
            let who: Vec<String> = r.members_missing.iter().map(|(u, why)| format!("{u} ({why})")).collect();
            let plural = if who.len() == 1 { "" } else { "s" };
            warnings.push(format!("room {}: {} member{plural} missing: {}", r.name, who.len(), who.join(", ")));
        }
    }
    let sum = |field: &str| -> f64 { s.rooms.values().filter_map(|r| r.number(field)).sum() };
    let mut notes: Vec<String> = rooms
        .iter()
        .filter(|r| !r.byzantine.is_empty())
        .map(|r| format!("room {}: {} counted in the room", r.name, r.byzantine.join(", ")))
        .collect();
    notes.push(format!(
        "Soft-fail disagreements: {} (allowed: servers may soft-fail differently).",
        num(sum("soft_fail_disagreements"))
    ));
    let (class, mark, mut listed) = if !problems.is_empty() {
        ("bad", "✗", problems)
    } else if !warnings.is_empty() {
        ("warn", "!", std::mem::take(&mut warnings))
    } else if !unknown.is_empty() {
        ("warn", "?", std::mem::take(&mut unknown))
    } else {
        let rooms = match s.rooms.len() {
            1 => "The room reached agreement".to_string(),
            n => format!("All {n} rooms reached agreement"),
        };
        let headline = format!("✓ {rooms}, {} auth disagreements, no member missing", num(sum("auth_disagreements")));
        let mut detail = vec![agreement_detail(s)];
        detail.extend(notes);
        detail.retain(|d| !d.is_empty());
        return Verdict { class: "ok", headline, detail: detail.join(" ") };
    };
    // up to three problems fit the headline; the detail lists every one beyond that
    const SHOWN: usize = 3;
    let rest = listed.split_off(listed.len().min(SHOWN));
    let mut headline = format!("{mark} {}", capitalise(&listed.join("; ")));
    if !rest.is_empty() {
        headline.push_str(&format!(" and {} more", rest.len()));
    }
    let mut detail: Vec<String> = rest;
    detail.extend(warnings);
    detail.extend(unknown);
    detail.extend(notes);
    Verdict { class, headline, detail: detail.join("; ") }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

fn agreement_detail(s: &RunSummary) -> String {
    let times: Vec<String> = s
        .rooms
        .values()
        .filter_map(|r| {
            let t = r.number("time_to_agreement_ms").or_else(|| r.number("convergence_time_ms"))?;
            Some(format!("{} {} s", r.name, num(t / 1000.0)))
        })
        .collect();
    if times.is_empty() {
        return String::new();
    }
    format!("Time to agreement (from the end of the last disruption): {}.", times.join(", "))
}

fn verdict_banner(s: &RunSummary) -> String {
    let v = verdict(s);
    format!(
        "<div class=\"verdict {}\">{}<span class=\"detail\">{}</span></div>\n",
        v.class,
        esc(&v.headline),
        esc(&v.detail)
    )
}

fn navigation(run: &RunFiles) -> String {
    let mut out = String::from("<nav>Jump to: <a href=\"#summary\">summary</a><a href=\"#faults\">faults</a>");
    for room in run.room_names() {
        let _ = write!(out, "<a href=\"#room-{}\">room {}</a>", slug(&room), esc(&room));
    }
    if run.charts().iter().any(|(k, _)| k.room.is_none()) {
        out.push_str("<a href=\"#server-wide\">server-wide</a>");
    }
    out.push_str("<a href=\"#scenario\">scenario</a></nav>\n");
    out
}

fn ordered_fields<'a>(keys: impl Iterator<Item = &'a String>, first: &[&str]) -> Vec<String> {
    let present: BTreeSet<&String> = keys.collect();
    let mut out: Vec<String> = first.iter().filter(|f| present.iter().any(|p| p == f)).map(|f| f.to_string()).collect();
    out.extend(present.into_iter().filter(|p| !first.contains(&p.as_str())).cloned());
    out
}

fn field_cell(field: &str, v: Option<&FieldValue>) -> Cell {
    match v {
        None => Cell::num("".into()),
        Some(FieldValue::Bool(b)) => {
            let c = Cell::text(if *b { "yes" } else { "no" });
            if field == "converged" || field == "agreed_at_end" {
                c.with_class(if *b { "good" } else { "bad" })
            } else {
                c
            }
        }
        Some(FieldValue::Null) if field.contains("convergence_time") || field == "time_to_agreement_ms" => {
            Cell::num("did not agree by the end".into()).with_class("bad")
        }
        Some(FieldValue::Null) => Cell::num("—".into()),
        Some(FieldValue::Number(n)) => {
            let bad = (field == "auth_disagreements" && *n > 0.0) || (field == "distinct_final_states" && *n > 1.0);
            let bad = bad || (field == "joins_failed" && *n > 0.0);
            let c = Cell::num(num(*n));
            if bad {
                c.with_class("bad")
            } else {
                c
            }
        }
    }
}

fn run_table(s: &RunSummary) -> String {
    let fields = ordered_fields(s.top_level.keys(), RUN_FIELD_ORDER);
    let headers: Vec<(String, &str)> = fields.iter().map(|f| (f.clone(), "num")).collect();
    let row: Vec<Cell> = fields.iter().map(|f| field_cell(f, s.top_level.get(f))).collect();
    format!("<h3>Run</h3>\n{}", table(&headers, &[row]))
}

/// The proposal measures of one `summary.json` object (present only in runs the proposal
/// applies to), one row per measure as `summary.json` names it (nested fields dotted).
fn proposal_table(s: &RunSummary, prefix: &str, title: &str, note: &str) -> String {
    let rows: Vec<Vec<Cell>> = s
        .metrics
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?, v)))
        .map(|(k, v)| vec![Cell::text(k), Cell::num(v.map_or_else(|| "—".to_owned(), num))])
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let headers = [("measure".to_owned(), ""), ("value".to_owned(), "num")];
    format!("<h3>{title}</h3>\n{}<p class=\"note\">{note}</p>\n", table(&headers, &rows))
}

/// MSC4243's `account_keys`, MSC4345/MSC4348's `participation` and the MSC4348 client view.
fn proposal_tables(s: &RunSummary) -> String {
    let mut out = proposal_table(
        s,
        "account_keys.",
        "Account keys (MSC4243)",
        "What servers learnt from <code>/query/accounts</code> and what their clients were shown \
         (definitions: <code>docs/outputs.md</code>, \"Account keys\"). Times in ms of simulated time.",
    );
    out.push_str(&proposal_table(
        s,
        "participation.",
        "Participation and moves (MSC4345, MSC4348)",
        "Moves, revocations and bans, read alike for every design, and the requests servers made to \
         learn who is who (definitions: <code>docs/outputs.md</code>, \"Participation\"). Times in ms \
         of simulated time.",
    ));
    out.push_str(&proposal_table(
        s,
        "portable_client_view.",
        "Client view (MSC4348)",
        "How servers showed the senders of portable-account rooms to their clients (definitions: \
         <code>docs/outputs.md</code>, \"MSC4348 client view\"). Times in ms of simulated time.",
    ));
    out
}

fn rooms_table(s: &RunSummary) -> String {
    if s.rooms.is_empty() {
        return "<p class=\"note\">The summary lists no rooms.</p>\n".into();
    }
    let fields = ordered_fields(s.rooms.values().flat_map(|r| r.fields.keys()), ROOM_FIELD_ORDER);
    let mut headers: Vec<(String, &str)> = vec![("room".into(), ""), ("version".into(), "")];
    headers.extend(fields.iter().map(|f| (f.clone(), "num")));
    let mut rooms: Vec<&RoomSummary> = s.rooms.values().collect();
    rooms.sort_by(|a, b| natural_cmp(&a.name, &b.name));
    let rows: Vec<Vec<Cell>> = rooms
        .iter()
        .map(|r| {
            let mut row = vec![
                Cell { html: format!("<a href=\"#room-{}\">{}</a>", slug(&r.name), esc(&r.name)), class: "" },
                Cell::text(r.room_version.as_deref().unwrap_or("")),
            ];
            row.extend(fields.iter().map(|f| field_cell(f, r.fields.get(f))));
            row
        })
        .collect();
    format!(
        "<h3>Rooms</h3>\n{}{}<p class=\"note\">Times in ms of simulated time. A room is in \
         <i>agreement</i> when every server that should be in it (by the room's membership in the \
         union DAG of all servers' events) holds the same DAG state and current state; \
         <code>time_to_agreement_ms</code> counts from the end of the last disruption (partition, \
         crash, lossy degrade; not a clock skew) that ended while the room disagreed, to the \
         agreement that followed; later short episodes are counted in \
         <code>divergence_episodes</code> and do not move it.</p>\n",
        table(&headers, &rows),
        missing_members(&rooms)
    )
}

/// The members the scenario meant to join who are not in their room, with why.
fn missing_members(rooms: &[&RoomSummary]) -> String {
    let rows: Vec<Vec<Cell>> = rooms
        .iter()
        .flat_map(|r| {
            r.members_missing.iter().map(|(user, why)| vec![Cell::text(&r.name), Cell::text(user), Cell::text(why)])
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let headers: Vec<(String, &str)> = vec![("room".into(), ""), ("missing member".into(), ""), ("why".into(), "")];
    format!("<h3>Members missing</h3>\n{}", table(&headers, &rows))
}

fn room_sections(run: &RunFiles) -> Result<String, AnalysisError> {
    let charts = run.charts();
    let mut out = String::new();
    if run.metrics.is_none() {
        out.push_str(
            "<p class=\"note\">This run has no <code>metrics.csv</code>, so there are no charts over time.</p>\n",
        );
    }
    for room in run.room_names() {
        let _ = writeln!(out, "<h2 id=\"room-{}\">Room {}</h2>", slug(&room), esc(&room));
        if let Some(r) = run.summary.rooms.get(&room) {
            let id = r.room_id.as_deref().unwrap_or("room ID not recorded");
            let version = r.room_version.as_deref().unwrap_or("?");
            let _ = writeln!(out, "<p class=\"sub\"><code>{}</code> · room version {}</p>", esc(id), esc(version));
        }
        let room_charts: Vec<_> = charts.iter().filter(|(k, _)| k.room.as_deref() == Some(room.as_str())).collect();
        out.push_str(&chart_grid(&room_charts)?);
        out.push_str(&dag_section(run, &room));
    }
    let server_wide: Vec<_> = charts.iter().filter(|(k, _)| k.room.is_none()).collect();
    if !server_wide.is_empty() {
        out.push_str("<h2 id=\"server-wide\">Server-wide measures</h2>\n");
        out.push_str(&chart_grid(&server_wide)?);
    }
    Ok(out)
}

fn chart_grid(charts: &[&(SeriesKey, TimeSeriesChart)]) -> Result<String, AnalysisError> {
    if charts.is_empty() {
        return Ok("<p class=\"note\">No samples for this room in metrics.csv.</p>\n".into());
    }
    let mut out = String::from("<div class=\"plots\">\n");
    for (key, chart) in charts {
        let info = describe_measure(&key.measure);
        let shape = if key.measure == "membership" {
            "One line for the servers expected, one for those in the room."
        } else if chart.lines.len() > 1 || chart.lines.iter().any(|l| l.label != "room-wide") {
            "One line per server."
        } else {
            "One value for the whole room."
        };
        let caption = format!(
            "{} {shape}<span class=\"measure\">measure <code>{}</code> in metrics.csv</span>",
            esc(&info.description),
            esc(&key.measure)
        );
        let svg = Chart::TimeSeries(chart.clone()).to_inline_svg(PlotSize::default())?;
        out.push_str(&figure(&svg, caption.trim()));
    }
    out.push_str("</div>\n");
    Ok(out)
}

/// Where the room's DAG picture comes from: the report draws none (that would mean running
/// Graphviz on every run).
fn dag_section(run: &RunFiles, room: &str) -> String {
    let pdus = format!("rooms/{room}.pdus.jsonl");
    let here = run.dir.join(&pdus).is_file();
    let file = if here {
        format!("<a href=\"{0}\"><code>{0}</code></a>", esc(&pdus))
    } else {
        format!("<code>{}</code>", esc(&pdus))
    };
    format!(
        "<h3>DAG</h3>\n<p class=\"note\">The room's events are in {file} (one federation PDU per \
         line). The report does not draw DAGs; pictures come from the run explorer. With Graphviz \
         installed, <code>roomsim dag dot {0} --out rooms/{1}.dot</code>, run in the run directory, \
         writes the DOT and renders <code>rooms/{1}.svg</code> (DAGs of up to {2} events unless <code>--max-events</code> says \
         otherwise).</p>\n",
        esc(&pdus),
        esc(room),
        DOT_MAX_EVENTS
    ) + &explorer_link(run, room)
}

/// A link to the room's explorer page, when the run directory has one.
fn explorer_link(run: &RunFiles, room: &str) -> String {
    let page = format!("explorer/{room}.html");
    if !run.dir.join(&page).is_file() {
        return String::new();
    }
    format!(
        "<p><a class=\"explorer\" href=\"{0}\">Open the room's explorer</a> (<code>{0}</code>): the DAG \
         drawn layer by layer, every server's decision on each event, and what each server held at \
         any moment of the run.</p>\n",
        esc(&page)
    )
}

/// The default `--max-events` of `roomsim dag dot`, quoted in the report.
const DOT_MAX_EVENTS: usize = 2000;

fn scenario_section(run: &RunFiles) -> String {
    let mut out = String::from("<h2 id=\"scenario\">Scenario</h2>\n");
    match &run.scenario_text {
        Some(text) => {
            let _ = writeln!(
                out,
                "<details><summary>scenario.toml ({} lines) — the exact input of this run</summary>\
                 <pre><code>{}</code></pre></details>",
                text.lines().count(),
                esc(text)
            );
        }
        None => out.push_str("<p class=\"note\">No <code>scenario.toml</code> in the run directory.</p>\n"),
    }
    out
}
