//! Many runs at once: `roomsim compare` (two designs over the same seeds), `roomsim sweep`
//! (a scenario's grid, optionally one shard of it) and `roomsim merge` (shards into one table).

use super::files::{write_atomic, PartialDir};
use super::run::load;
use rayon::prelude::*;
use roomsim_analysis::RunSummary;
use roomsim_engine::scenario::{self, Scenario, SweepCell};
use roomsim_engine::sim::log::LogWriter;
use roomsim_engine::sim::world::RunResult;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs a scenario in memory (the log is only hashed) and writes `summary.json` and
/// `metrics.csv` into `dir` atomically (a sibling `<cell>.partial-<tag>` directory renamed into
/// place, so an interrupted batch never leaves a half-written cell).
fn run_light(sc: &Scenario, seed: u64, dir: &Path, extra: Option<(&str, &[u8])>) -> Result<RunResult, String> {
    let mut world = roomsim_engine::metrics::instrumented_world(sc, seed, LogWriter::sink());
    world.run();
    let result = world.finish(false)?;
    let partial = PartialDir::create(dir, &super::run::partial_tag(sc))?;
    let tmp = partial.path();
    let mut summary = serde_json::to_vec_pretty(&result.summary).map_err(|e| e.to_string())?;
    summary.push(b'\n');
    write_atomic(&tmp.join("summary.json"), &summary)?;
    let mut csv = String::from("time_ms,server,room,measure,value\n");
    for r in &result.metrics {
        csv.push_str(&r.to_csv());
        csv.push('\n');
    }
    write_atomic(&tmp.join("metrics.csv"), csv.as_bytes())?;
    if let Some((name, bytes)) = extra {
        write_atomic(&tmp.join(name), bytes)?;
    }
    partial.commit()?;
    Ok(result)
}

/// A bar over the runs of a batch on stderr (runs completed, events and deliveries per second
/// summed over finished runs); hidden unless enabled and stderr is a terminal.
struct BatchProgress {
    bar: indicatif::ProgressBar,
    started: std::time::Instant,
    events: AtomicU64,
    deliveries: AtomicU64,
}

impl BatchProgress {
    fn new(enabled: bool, len: u64, what: &str) -> Self {
        let bar = if enabled && std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(len);
            b.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{spinner}} {{elapsed_precise}} [{{wide_bar}}] {what} {{pos}}/{{len}} · {{msg}} · eta {{eta}}"
                ))
                .expect("static template")
                .progress_chars("=> "),
            );
            b.set_message("0 events · 0 deliveries");
            b.enable_steady_tick(std::time::Duration::from_millis(250));
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        BatchProgress {
            bar,
            started: std::time::Instant::now(),
            events: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
        }
    }

    /// One run finished.
    fn done(&self, result: &RunResult) {
        let count = |field: &str| result.summary[field].as_u64().unwrap_or(0);
        let events = self.events.fetch_add(count("events_created"), Ordering::Relaxed) + count("events_created");
        let deliveries = self.deliveries.fetch_add(count("deliveries"), Ordering::Relaxed) + count("deliveries");
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{events} events · {deliveries} deliveries · {}/s",
            (deliveries as f64 / secs).round() as u64
        ));
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Parses `1..50` (inclusive) or `1,2,3`.
pub fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    if let Some((a, b)) = text.split_once("..") {
        let a: u64 = a.trim().parse().map_err(|_| format!("--seeds {text}: expected A..B"))?;
        let b: u64 = b.trim().parse().map_err(|_| format!("--seeds {text}: expected A..B"))?;
        if b < a || b - a > 100_000 {
            return Err(format!("--seeds {text}: empty or too large a range"));
        }
        return Ok((a..=b).collect());
    }
    text.split(',').map(|s| s.trim().parse().map_err(|_| format!("--seeds {text}: {s:?} is not a seed"))).collect()
}

pub struct CompareArgs {
    pub scenario: PathBuf,
    pub seeds: String,
    pub set: Vec<String>,
    pub set_a: Vec<String>,
    pub set_b: Vec<String>,
    /// Names of the designs in the outputs; by default their overrides.
    pub label_a: Option<String>,
    pub label_b: Option<String>,
    pub out: PathBuf,
    /// Show a progress bar (on a terminal).
    pub progress: bool,
}

/// `roomsim compare`: both designs on the same seeds, in parallel; paired statistics.
pub fn compare(args: CompareArgs) -> Result<(), String> {
    let seeds = parse_seeds(&args.seeds)?;
    let with = |extra: &[String]| -> Result<Scenario, String> {
        let all: Vec<String> = args.set.iter().chain(extra).cloned().collect();
        load(&args.scenario, &all)
    };
    let (a, b) = (with(&args.set_a)?, with(&args.set_b)?);
    let root = args.out.join(format!("{}-compare", a.name));
    let jobs: Vec<(char, &Scenario, u64)> = seeds.iter().flat_map(|s| [('a', &a, *s), ('b', &b, *s)]).collect();
    let progress = BatchProgress::new(args.progress, jobs.len() as u64, "runs");
    let results: Vec<Result<(char, u64, RunSummary), String>> = jobs
        .par_iter()
        .map(|(side, sc, seed)| {
            let dir = root.join(side.to_string()).join(seed.to_string());
            let r = run_light(sc, *seed, &dir, None)?;
            progress.done(&r);
            let summary = RunSummary::from_value(&r.summary, &dir).map_err(|e| e.to_string())?;
            Ok((*side, *seed, summary))
        })
        .collect();
    progress.finish();
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    for r in results {
        let (side, seed, s) = r?;
        if side == 'a' {
            sa.push((seed, s))
        } else {
            sb.push((seed, s))
        }
    }
    // Bare labels: the outputs add "A = " / "A: " themselves.
    let label = |given: &Option<String>, set: &[String]| match given {
        Some(l) => l.clone(),
        None if set.is_empty() => "scenario as is".to_owned(),
        None => set.join(" "),
    };
    let mut table =
        roomsim_analysis::compare(&sa, &sb, &label(&args.label_a, &args.set_a), &label(&args.label_b, &args.set_b));
    if let Some(warning) = identical_logs_warning(&sa, &sb, seeds.len()) {
        eprintln!("warning: {warning}");
        table.notes.push(warning);
    }
    print!("{}", table.to_text());
    table.write_csv(&root.join("compare.csv")).map_err(|e| e.to_string())?;
    table.write_html(&root.join("compare.html"), true).map_err(|e| e.to_string())?;
    println!("wrote {} and {}", root.join("compare.csv").display(), root.join("compare.html").display());
    Ok(())
}

/// When A and B wrote the same log on some seeds, the designs behaved identically there: the
/// overrides may change nothing the scenario exercises (or nothing at all).
fn identical_logs_warning(a: &[(u64, RunSummary)], b: &[(u64, RunSummary)], seeds: usize) -> Option<String> {
    let same = roomsim_analysis::compare::identical_log_seeds(a, b);
    if same.is_empty() {
        return None;
    }
    if same.len() == seeds {
        return Some(format!(
            "A and B produced identical logs on all {seeds} seeds: the two designs behaved identically \
             (do the --set-a/--set-b overrides change anything this scenario exercises?)"
        ));
    }
    let list: Vec<String> = same.iter().map(u64::to_string).collect();
    Some(format!(
        "A and B produced identical logs on {} of {seeds} seeds ({}): there the designs behaved identically",
        same.len(),
        list.join(", ")
    ))
}

/// `roomsim sweep`: this shard's cells, in parallel; finished cells are skipped (resume).
pub fn sweep(path: &Path, set: &[String], shard: Option<&str>, out: &Path, progress: bool) -> Result<(), String> {
    let sc = load(path, set)?;
    let cells = scenario::sweep_cells(&sc);
    if sc.sweep.is_none() {
        return Err(format!("{}: no [sweep] table", path.display()));
    }
    let grid_cells = cells.len();
    let mine: Vec<SweepCell> = match shard {
        Some(text) => {
            let (k, n) = scenario::parse_shard(text)?;
            scenario::shard(&cells, k, n)
        }
        None => cells,
    };
    let dir = out.join(format!("{}-sweep", sc.name)).join("cells");
    let todo: Vec<&SweepCell> = mine.iter().filter(|c| !cell_dir(&dir, c).join("summary.json").exists()).collect();
    eprintln!(
        "{}: {} cells in this shard, {} already done, {} to run",
        sc.name,
        mine.len(),
        mine.len() - todo.len(),
        todo.len()
    );
    let progress = BatchProgress::new(progress, todo.len() as u64, "cells");
    let results: Vec<Result<(), String>> = todo
        .par_iter()
        .map(|cell| {
            let overrides: Vec<String> = sc.source.overrides.iter().chain(&cell.overrides).cloned().collect();
            let cell_sc = scenario::parse_scenario(&sc.source.file_name, &sc.source.text, &overrides).map_err(|e| e.to_string())?;
            let meta = serde_json::json!({"index": cell.index, "seed": cell.seed, "overrides": cell.overrides, "label": cell.label, "grid_cells": grid_cells});
            let meta = serde_json::to_vec_pretty(&meta).map_err(|e| e.to_string())?;
            let r = run_light(&cell_sc, cell.seed, &cell_dir(&dir, cell), Some(("cell.json", &meta)))?;
            progress.done(&r);
            Ok(())
        })
        .collect();
    progress.finish();
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    println!("wrote {}", dir.display());
    Ok(())
}

/// `cells/<index>-<label>`. A file name holds at most 255 bytes, and a grid of many or long
/// values makes long labels: a label over [`MAX_LABEL_BYTES`] is cut and ends in a hash of the
/// whole label, so folder names stay distinct and deterministic.
fn cell_dir(dir: &Path, cell: &SweepCell) -> PathBuf {
    let label: String =
        cell.label.chars().map(|c| if c.is_ascii_alphanumeric() || "=.,_-".contains(c) { c } else { '_' }).collect();
    let label = if label.len() > MAX_LABEL_BYTES {
        // FNV-1a, 64 bit: stable across platforms and releases (unlike std's hasher).
        let hash =
            cell.label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        format!("{}~{hash:016x}", &label[..MAX_LABEL_BYTES - 17])
    } else {
        label
    };
    dir.join(format!("{:05}-{label}", cell.index))
}

/// Longest cell label kept whole in a folder name; with the index, the `.partial-<tag>` suffix
/// of a cell being written (21 bytes) and some room to spare, under the 255-byte limit.
const MAX_LABEL_BYTES: usize = 160;

/// `roomsim merge`: shards into `sweep.csv` and `sweep.html`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<(), String> {
    let m = roomsim_analysis::merge_sweep(dirs, out).map_err(|e| e.to_string())?;
    println!("merged {} cells into {} and {}", m.cells, m.csv.display(), m.html.display());
    if !m.missing_indices.is_empty() {
        eprintln!("warning: cells missing from the grid: {:?}", m.missing_indices);
    }
    Ok(())
}
