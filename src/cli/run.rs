//! `roomsim run`, `check`, `replay` and `diff`: simulate a scenario and write the run directory.

use super::files::{read_text, write_atomic, PartialDir};
use roomsim_engine::metrics::MetricRow;
use roomsim_engine::scenario::{self, Scenario};
use roomsim_engine::sim::log::{LogCompression, LogMode, LogWriter};
use roomsim_engine::sim::replay;
use roomsim_engine::sim::world::{Progress, RunResult, World};
use serde_json::Value;
use std::io::{BufRead, BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Loads a scenario, rendering errors as `file:line:col: message` plus a source excerpt.
pub fn load(path: &Path, overrides: &[String]) -> Result<Scenario, String> {
    scenario::load_scenario(path, overrides).map_err(|e| {
        let plain = e.to_string();
        let fancy = format!("{:?}", miette::Report::new(e));
        if std::io::stderr().is_terminal() {
            format!("{plain}\n{fancy}")
        } else {
            plain
        }
    })
}

/// Where a run's files go: `DIR/<scenario>/<seed>/`.
pub fn run_dir(out: &Path, scenario: &Scenario, seed: u64) -> PathBuf {
    out.join(&scenario.name).join(seed.to_string())
}

/// Options of one run.
pub struct RunOptions {
    pub seed: u64,
    pub check_invariants: bool,
    pub progress: bool,
    /// What the log receives (`--log full|digest|none`).
    pub log: LogMode,
    /// How a full log is stored (`--log-compression zstd|none`).
    pub log_compression: LogCompression,
}

/// The tag of a run's partial directory (`<seed>.partial-<tag>`): the first 12 hex digits of
/// the scenario's sha256 (`scenario_sha256` in summary.json), so it is deterministic.
pub fn partial_tag(scenario: &Scenario) -> String {
    scenario.source.sha256()[..12].to_string()
}

/// Runs a scenario into `dir`; returns the result (summary etc.).
///
/// Everything is written into the sibling `<seed>.partial-<tag>/` and renamed into place when
/// the run is done: a run that fails or is interrupted (Ctrl-C) leaves an earlier `dir` untouched
/// and says where it stopped; the partial directory keeps what the run wrote (an interrupted run
/// writes its outputs so far there) and is replaced by the next run.
pub fn run_into(scenario: &Scenario, dir: &Path, options: &RunOptions) -> Result<RunResult, String> {
    let partial = PartialDir::create(dir, &partial_tag(scenario))?;
    let tmp = partial.path().to_owned();
    std::fs::create_dir_all(tmp.join("rooms")).map_err(|e| format!("{}: {e}", tmp.display()))?;
    let log_path = tmp.join(options.log_compression.file_name());
    let log_file = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log = LogWriter::compressed(
        Box::new(BufWriter::with_capacity(1 << 20, log_file)),
        options.log,
        options.log_compression,
    )
    .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut world = roomsim_engine::metrics::instrumented_world(scenario, options.seed, log);
    let mut bar = RunProgress::new(options.progress, world.end_time());
    let interrupted = interrupt_flag();
    let mut stopped_by_interrupt = false;
    // The loop runs on a worker of rayon's pool, so that windows handled in parallel do not
    // hand work from this thread to the pool and back each time.
    rayon::scope(|_| {
        while world.step() {
            if let Some(b) = &mut bar {
                b.update(&world);
            }
            if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
                stopped_by_interrupt = true;
                break;
            }
        }
    });
    if let Some(b) = bar {
        b.finish();
    }
    let stopped_at = world.now();
    let untouched = if dir.exists() {
        format!("{} is untouched", dir.display())
    } else {
        format!("{} was not created", dir.display())
    };
    let result = world.finish(options.check_invariants).map_err(|e| {
        format!(
            "run stopped at simulated time {} ms: {e}; {untouched}; what it wrote is in {}",
            stopped_at / 1000,
            tmp.display()
        )
    })?;
    write_outputs(scenario, &tmp, &result)
        .map_err(|e| format!("run finished but its outputs could not be written: {e}; {untouched}"))?;
    if stopped_by_interrupt {
        return Err(format!(
            "interrupted at simulated time {} ms; {untouched}; the outputs so far are in {}",
            stopped_at / 1000,
            tmp.display()
        ));
    }
    partial.commit()?;
    Ok(result)
}

/// Set by Ctrl-C: the run stops at the next window and writes its outputs so far into its
/// partial directory, which does not replace the earlier outputs.
fn interrupt_flag() -> Arc<std::sync::atomic::AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<std::sync::atomic::AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = flag.clone();
        // If a handler cannot be installed, Ctrl-C simply ends the process as usual.
        let _ = ctrlc::set_handler(move || f.store(true, std::sync::atomic::Ordering::Relaxed));
        flag
    })
    .clone()
}

fn replay_bar(records: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(records);
    b.set_style(
        indicatif::ProgressStyle::with_template("{spinner} replay {pos}/{len} records [{bar:40}] {msg} {per_sec}")
            .expect("static template"),
    );
    b.enable_steady_tick(std::time::Duration::from_millis(250));
    Some(b)
}

/// The progress line of one run on stderr: simulated time against the end bound, events
/// created, deliveries per second of wall time. Only when stderr is a terminal.
struct RunProgress {
    bar: indicatif::ProgressBar,
    started: std::time::Instant,
    last: std::time::Instant,
}

impl RunProgress {
    /// How often the world is asked for its counters (`World::progress` sums over servers).
    const EVERY: std::time::Duration = std::time::Duration::from_millis(100);

    fn new(enabled: bool, end_us: u64) -> Option<Self> {
        if !enabled || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::new(end_us.div_ceil(1000));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{wide_bar}] simulated {prefix} · {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("{} / {}", seconds(0), seconds(end_us.div_ceil(1000))));
        bar.set_message("0 events · 0 deliveries");
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        let now = std::time::Instant::now();
        Some(RunProgress { bar, started: now, last: now - Self::EVERY })
    }

    fn update(&mut self, world: &World) {
        let now = std::time::Instant::now();
        if now.duration_since(self.last) < Self::EVERY {
            return;
        }
        self.last = now;
        self.show(world.progress());
    }

    fn show(&self, p: Progress) {
        let (now_ms, end_ms) = (p.now_us / 1000, p.end_us.div_ceil(1000).max(p.now_us / 1000));
        self.bar.set_length(end_ms);
        self.bar.set_position(now_ms);
        self.bar.set_prefix(format!("{} / {}", seconds(now_ms), seconds(end_ms)));
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} events · {} deliveries · {}/s",
            p.events,
            p.deliveries,
            (p.deliveries as f64 / secs).round() as u64
        ));
    }

    fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// `12.3 s` from milliseconds.
fn seconds(ms: u64) -> String {
    format!("{}.{} s", ms / 1000, (ms % 1000) / 100)
}

fn write_outputs(scenario: &Scenario, dir: &Path, result: &RunResult) -> Result<(), String> {
    for (room, pdus) in &result.rooms {
        let mut text = Vec::new();
        for p in pdus {
            text.extend_from_slice(&p.canonical_bytes());
            text.push(b'\n');
        }
        write_atomic(&dir.join("rooms").join(format!("{room}.pdus.jsonl")), &text)?;
    }
    write_atomic(&dir.join("keys.json"), pretty(&result.keys).as_bytes())?;
    write_atomic(&dir.join("summary.json"), pretty(&result.summary).as_bytes())?;
    write_atomic(&dir.join("metrics.csv"), metrics_csv(&result.metrics).as_bytes())?;
    write_atomic(&dir.join("scenario.toml"), scenario.source.text.as_bytes())?;
    if !result.clients.is_empty() {
        let mut text = String::new();
        for line in &result.clients {
            text.push_str(&serde_json::to_string(line).expect("JSON value"));
            text.push('\n');
        }
        write_atomic(&dir.join("clients.jsonl"), text.as_bytes())?;
    }
    Ok(())
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON value");
    s.push('\n');
    s
}

fn metrics_csv(rows: &[MetricRow]) -> String {
    let mut s = String::from("time_ms,server,room,measure,value\n");
    for r in rows {
        s.push_str(&r.to_csv());
        s.push('\n');
    }
    s
}

/// A short human summary of a run, on stdout (results; progress and diagnostics go to stderr).
pub fn print_summary(dir: &Path, result: &RunResult) {
    let s = &result.summary;
    println!(
        "{} seed {}: {} servers, {} events, {} deliveries, {} log records, simulated {} ms",
        s["scenario"].as_str().unwrap_or(""),
        s["seed"],
        s["servers"],
        s["events_created"],
        s["deliveries"],
        s["log_records"],
        s["sim_time_end_ms"]
    );
    if let Some(rooms) = s["rooms"].as_object() {
        for (name, r) in rooms {
            println!("  room {name}: {}", room_line(r));
        }
    }
    for v in &result.invariant_violations {
        println!("  INVARIANT VIOLATED: {v}");
    }
    for n in s["notes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        println!("  note: {n}");
    }
    if let Some(caps) = s["caps_reached"].as_object().filter(|c| !c.is_empty()) {
        let list: Vec<String> = caps.iter().map(|(k, v)| format!("{k} ×{v}")).collect();
        println!("  bounds reached: {} (see cap_reached records in the log)", list.join(", "));
    }
    println!("  output: {}", dir.display());
}

/// One room of the summary in words.
fn room_line(r: &Value) -> String {
    let agreement = match (r["agreed_at_end"].as_bool(), r["time_to_agreement_ms"].as_u64()) {
        (Some(true), Some(ms)) => format!(
            "agreed from {} ms, {ms} ms after the {}",
            r["agreement_reached_ms"],
            r["time_to_agreement_from"].as_str().unwrap_or("start of the run")
        ),
        (Some(false), _) => "did not agree by the end".to_owned(),
        _ => "agreement not recorded".to_owned(),
    };
    let missing = r["members_missing"].as_array().map_or(0, Vec::len);
    let mut line = format!(
        "{} events, {} of {} expected servers in the room, {} distinct final state(s), {agreement}, {} divergence episode(s) ({} ms in all), auth disagreements {}, soft-fail disagreements {}",
        r["events"],
        r["servers_in_room"],
        r["servers_expected"],
        r["distinct_final_states"],
        r["divergence_episodes"],
        r["diverged_ms_total"],
        r["auth_disagreements"],
        r["soft_fail_disagreements"]
    );
    if missing > 0 {
        line.push_str(&format!(", {missing} member(s) missing"));
    }
    line
}

/// Rooms of the run that did not reach agreement by its end.
pub fn rooms_without_agreement(result: &RunResult) -> Vec<String> {
    let Some(rooms) = result.summary["rooms"].as_object() else { return Vec::new() };
    rooms.iter().filter(|(_, r)| r["agreed_at_end"] != Value::Bool(true)).map(|(n, _)| n.clone()).collect()
}

/// `roomsim replay RUN_DIR`.
pub fn replay_command(dir: &Path) -> Result<bool, String> {
    let summary: Value =
        serde_json::from_str(&read_text(&dir.join("summary.json"))?).map_err(|e| format!("summary.json: {e}"))?;
    let overrides: Vec<String> = summary["overrides"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let file_name = summary["scenario_file"].as_str().unwrap_or("scenario.toml");
    let text = read_text(&dir.join("scenario.toml"))?;
    let sc = scenario::parse_scenario(file_name, &text, &overrides).map_err(|e| e.to_string())?;
    let seed = summary["seed"].as_u64().ok_or("summary.json: seed")?;
    let kept_no_log = || {
        format!("{}: the run kept no log (it ran with --log digest or none): there is nothing to replay", dir.display())
    };
    let Some((_, mut file)) = roomsim_engine::sim::log::open_log(dir)? else { return Err(kept_no_log()) };
    if summary["log_digest"].is_null() || file.fill_buf().map(|b| b.is_empty()).unwrap_or(true) {
        return Err(kept_no_log());
    }
    let records = summary["log_records"].as_u64().unwrap_or(0);
    let bar = replay_bar(records);
    let result = replay::replay(&sc, seed, file, |p| {
        if let Some(b) = &bar {
            b.set_position(p.records);
            b.set_message(format!("simulated {} ms", p.sim_time_us / 1000));
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        // The verdict, either way, is the command's result: stdout.
        Err(d) => {
            println!(
                "replay diverged at log record {} on server {}:\n  logged:   {}\n  replayed: {}",
                d.seq, d.server, d.expected, d.got
            );
            Ok(false)
        }
        Ok(digests) => {
            let mut ok = true;
            if let Some(rooms) = summary["rooms"].as_object() {
                for (name, r) in rooms {
                    let Some(room_id) = r["room_id"].as_str() else { continue };
                    let want = r["final_state_digests"].as_object().cloned().unwrap_or_default();
                    let got = digests.get(room_id).cloned().unwrap_or_default();
                    for (server, w) in &want {
                        if got.get(server).map(String::as_str) != w.as_str() {
                            println!(
                                "replay: room {name}: {server} ends in state {:?}, the run ended in {w}",
                                got.get(server)
                            );
                            ok = false;
                        }
                    }
                }
            }
            if ok {
                println!("replay: {records} log records re-applied; every server made the same decisions and sends and reached the same final state");
            }
            Ok(ok)
        }
    }
}

/// `roomsim diff RUN_A RUN_B`: the first log record where two runs part ways.
pub fn diff_command(a: &Path, b: &Path) -> Result<bool, String> {
    let open = |dir: &Path| -> Result<Box<dyn BufRead>, String> {
        roomsim_engine::sim::log::open_log(dir)?
            .map(|(_, r)| r)
            .ok_or_else(|| format!("{}: no log.jsonl.zst or log.jsonl (was it run with --log full?)", dir.display()))
    };
    let mut ia = open(a)?.lines();
    let mut ib = open(b)?.lines();
    let mut n = 0usize;
    loop {
        n += 1;
        let next = |it: &mut std::io::Lines<Box<dyn BufRead>>, dir: &Path| {
            it.next().transpose().map_err(|e| format!("{}: log line {n}: {e}", dir.display()))
        };
        match (next(&mut ia, a)?, next(&mut ib, b)?) {
            (None, None) => {
                println!("identical: {} log records", n - 1);
                return Ok(true);
            }
            (x, y) if x == y => continue,
            (x, y) => {
                println!(
                    "runs part ways at log record {}:\n  {}: {}\n  {}: {}",
                    n - 1,
                    a.display(),
                    x.as_deref().unwrap_or("(end of log)"),
                    b.display(),
                    y.as_deref().unwrap_or("(end of log)")
                );
                return Ok(false);
            }
        }
    }
}
