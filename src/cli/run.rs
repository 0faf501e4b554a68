//! `roomsim run`, `check`, `replay` and `diff`: simulate a scenario and write the run directory.

use super::files::{read_text, write_atomic};
use roomsim_engine::metrics::MetricRow;
use roomsim_engine::scenario::{self, Scenario};
use roomsim_engine::sim::log::{LogMode, LogWriter};
use roomsim_engine::sim::replay;
use roomsim_engine::sim::world::{Progress, RunResult, World};
use serde_json::Value;
use std::io::{BufWriter, IsTerminal};
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
    /// What `log.jsonl` receives (`--log full|digest|none`).
    pub log: LogMode,
}

/// Runs a scenario into `dir`; returns the result (summary etc.).
pub fn run_into(scenario: &Scenario, dir: &Path, options: &RunOptions) -> Result<RunResult, String> {
    std::fs::create_dir_all(dir.join("rooms")).map_err(|e| format!("{}: {e}", dir.display()))?;
    // The log is written beside any earlier run's and takes its place only once this run's
    // outputs are written: a failing or interrupted re-run leaves the earlier log intact.
    let log_path = dir.join("log.jsonl.partial");
    let log_file = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log = LogWriter::with_mode(Box::new(BufWriter::with_capacity(1 << 20, log_file)), options.log);
    let mut world = roomsim_engine::metrics::instrumented_world(scenario, options.seed, log);
    let mut bar = RunProgress::new(options.progress, world.end_time());
    let interrupted = interrupt_flag();
    // The loop runs on a worker of rayon's pool, so that windows handled in parallel do not
    // hand work from this thread to the pool and back each time.
    rayon::scope(|_| {
        while world.step() {
            if let Some(b) = &mut bar {
                b.update(&world);
            }
            if interrupted.load(std::sync::atomic::Ordering::Relaxed) {
                eprintln!(
                    "interrupted at simulated time {} ms: writing what the run produced so far",
                    world.now() / 1000
                );
                break;
            }
        }
    });
    if let Some(b) = bar {
        b.finish();
    }
    let stopped_at = world.now();
    let result = world.finish(options.check_invariants).map_err(|e| {
        format!(
            "run stopped at simulated time {} ms: {e}; files already written in {} are intact",
            stopped_at / 1000,
            dir.display()
        )
    })?;
    write_outputs(scenario, dir, &result)?;
    let final_log = dir.join("log.jsonl");
    std::fs::rename(&log_path, &final_log).map_err(|e| format!("{}: {e}", final_log.display()))?;
    Ok(result)
}

/// Set by Ctrl-C: the run stops at the next window and still writes its outputs.
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
    let log_path = dir.join("log.jsonl");
    let file = std::fs::File::open(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    if summary["log_digest"].is_null() || file.metadata().map(|m| m.len() == 0).unwrap_or(true) {
        return Err(format!(
            "{}: the run kept no log (it ran with --log digest or none): there is nothing to replay",
            log_path.display()
        ));
    }
    let records = summary["log_records"].as_u64().unwrap_or(0);
    let bar = replay_bar(records);
    let result = replay::replay(&sc, seed, std::io::BufReader::with_capacity(1 << 20, file), |p| {
        if let Some(b) = &bar {
            b.set_position(p.records);
            b.set_message(format!("simulated {} ms", p.sim_time_us / 1000));
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    match result {
        Err(d) => {
            eprintln!(
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
                            eprintln!(
                                "replay: room {name}: {server} ends in state {:?}, the run ended in {w}",
                                got.get(server)
                            );
                            ok = false;
                        }
                    }
                }
            }
            if ok {
                eprintln!("replay: {records} log records re-applied; every server made the same decisions and sends and reached the same final state");
            }
            Ok(ok)
        }
    }
}

/// `roomsim diff RUN_A RUN_B`: the first log record where two runs part ways.
pub fn diff_command(a: &Path, b: &Path) -> Result<bool, String> {
    let la = read_text(&a.join("log.jsonl"))?;
    let lb = read_text(&b.join("log.jsonl"))?;
    let mut ia = la.lines();
    let mut ib = lb.lines();
    let mut n = 0usize;
    loop {
        n += 1;
        match (ia.next(), ib.next()) {
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
                    x.unwrap_or("(end of log)"),
                    b.display(),
                    y.unwrap_or("(end of log)")
                );
                return Ok(false);
            }
        }
    }
}
