//! `roomsim shrink`: from a run that shows something to the smallest scenario that still shows
//! it (`docs/shrink.md`).
//!
//! The scenario is edited as a TOML table (`doc`); each pass of `reduce` proposes elementary
//! reductions, applied in chunks as delta debugging does (all at once, then halves, quarters, …,
//! one by one); `runner` validates and simulates the candidates of one level in parallel, and
//! the lowest-index candidate for which the predicate still holds is kept. Passes repeat until a
//! whole round keeps nothing (a fixpoint) or the budget runs out. Then the minimal scenario is
//! written with a header saying how to reproduce it, and run once more as a normal run directory.

mod doc;
pub mod predicate;
mod reduce;
mod runner;

use super::files::write_atomic;
use super::run;
use reduce::{Atom, Pass};
use roomsim_engine::scenario::{self, Scenario};
use roomsim_engine::sim::world::RunResult;
use runner::{Budget, Outcome, Runner};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use toml::Table;

/// The arguments of `roomsim shrink`.
pub struct ShrinkArgs {
    pub scenario: PathBuf,
    pub seed: Option<u64>,
    pub until: String,
    pub out: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub budget: Option<String>,
    pub any_seed: Option<u64>,
    pub set: Vec<String>,
    pub progress: bool,
    /// Only check that the predicate holds for the scenario as given.
    pub check: bool,
}

/// The most seeds `--any-seed` may try per candidate.
const MAX_ANY_SEED: u64 = 1000;

/// Accepted steps at most (a guard: every pass shrinks something, so a shrink ends anyway).
const MAX_STEPS: usize = 100_000;

/// A kept reduction.
struct Step {
    description: String,
    /// `4 → 3 servers`, when the pass counts something.
    measure: Option<String>,
    events: (u64, u64),
    seed: u64,
}

/// The scenario a shrink is at.
struct Current {
    table: Table,
    text: String,
    seed: u64,
    summary: Arc<Value>,
}

/// Why the shrink ended.
enum Ending {
    Fixpoint,
    Budget,
    StepLimit,
}

pub fn shrink(args: ShrinkArgs) -> Result<ExitCode, String> {
    let expr = predicate::parse(&args.until).map_err(|e| format!("--until: {e}"))?;
    let any_seed = args.any_seed.unwrap_or(1);
    if !(1..=MAX_ANY_SEED).contains(&any_seed) {
        return Err(format!("--any-seed {any_seed}: expected 1 to {MAX_ANY_SEED} seeds"));
    }
    let budget = args.budget.as_deref().map(Budget::parse).transpose()?.unwrap_or(Budget::Unlimited);
    let original = run::load(&args.scenario, &args.set)?;
    let seed = args.seed.unwrap_or(original.seed);
    let seeds: Vec<u64> = (0..any_seed).map(|i| seed.wrapping_add(i)).collect();
    let file_name = original.source.base_name().to_string();
    let mut runner = Runner::new(&expr, &file_name, seeds, budget);
    let seeds_said = if any_seed == 1 {
        format!("seed {seed}")
    } else {
        format!("any of seeds {seed}..{}", seed.wrapping_add(any_seed - 1))
    };

    if args.check {
        let (outcome, first) = runner.check(&original, seed);
        return Ok(match outcome {
            Outcome::Holds { seed, summary } => {
                println!("{file_name}: the predicate holds with seed {seed}: {}", predicate::describe(&expr, &summary));
                ExitCode::SUCCESS
            }
            _ => {
                println!(
                    "{file_name}: the predicate does not hold with {seeds_said}: {}",
                    values(&expr, first.as_ref())
                );
                ExitCode::from(1)
            }
        });
    }

    let mut table = scenario::scenario_table(&original.source.file_name, &original.source.text, &args.set)
        .map_err(|e| e.to_string())?;
    let dropped_sweep = table.remove("sweep").is_some();
    let name = minimal_name(&original.name);
    if let Some(toml::Value::Table(s)) = table.get_mut("scenario") {
        s.insert("name".into(), toml::Value::String(name.clone()));
    }
    let text = doc::render(&table);
    let start = scenario::parse_scenario(&file_name, &text, &[])
        .map_err(|e| format!("{file_name}: the scenario as the shrinker writes it does not parse (a bug): {e}"))?;
    let (outcome, first) = runner.check(&start, seed);
    if let Outcome::Skipped = outcome {
        return Err(format!("the budget ({}) allows no run", budget.describe()));
    }
    let Outcome::Holds { seed: found_seed, summary } = outcome else {
        eprintln!(
            "error: the predicate does not hold for {file_name} with {seeds_said}, so there is nothing to shrink: {}",
            values(&expr, first.as_ref())
        );
        return Ok(ExitCode::from(1));
    };
    eprintln!(
        "shrinking {file_name}: the predicate holds with seed {found_seed} ({}); {}",
        predicate::describe(&expr, &summary),
        counts(&table, events(&summary))
    );
    let original_counts = counts(&table, events(&summary));
    let mut shrinker = Shrinker {
        runner,
        current: Current { table, text, seed: found_seed, summary },
        seen: BTreeSet::new(),
        steps: Vec::new(),
        bar: progress_bar(args.progress),
    };
    let ending = shrinker.run();
    if let Some(bar) = &shrinker.bar {
        bar.finish_and_clear();
    }
    let Shrinker { runner, current, steps, .. } = shrinker;
    let elapsed = runner.elapsed();

    // The minimal scenario, with its header.
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("{}.min.toml", stem(&file_name))));
    let out_name = out.file_name().and_then(|n| n.to_str()).unwrap_or("minimal.toml").to_string();
    let mut table = current.table.clone();
    if let Some(toml::Value::Table(s)) = table.get_mut("scenario") {
        s.insert("seed".into(), toml::Value::Integer(current.seed as i64));
    }
    let header = Header {
        name: &name,
        predicate: &args.until,
        expr: &expr,
        summary: &current.summary,
        seed: current.seed,
        start_seed: seed,
        source: &original,
        dropped_sweep,
        out_name: &out_name,
        steps: &steps,
        runs: runner.runs,
        ending: &ending,
        budget,
        original_counts: &original_counts,
        minimal_counts: &counts(&current.table, events(&current.summary)),
    };
    let minimal = format!("{}\n{}", header.render(), doc::render(&table));
    write_atomic(&out, minimal.as_bytes())?;

    let sc = scenario::parse_scenario(&out_name, &minimal, &[]).map_err(|e| format!("{}: {e}", out.display()))?;
    let (dir, result) = run_minimal(&sc, &args.out_dir, current.seed)?;
    if !predicate::eval(&expr, &result.summary) {
        return Err(format!(
            "the minimal scenario's run does not show the predicate ({}); the shrink is not reproducible (a bug)",
            predicate::describe(&expr, &result.summary)
        ));
    }

    println!("minimal scenario: {}", out.display());
    println!("  predicate holds with seed {}: {}", current.seed, predicate::describe(&expr, &result.summary));
    println!("  was: {original_counts}");
    println!("  now: {}", counts(&current.table, events(&result.summary)));
    println!(
        "  {}, {} runs, {:.1} s; {}",
        plural(steps.len(), "step"),
        runner.runs,
        elapsed.as_secs_f64(),
        ending.describe(budget)
    );
    println!("  run: {}", dir.display());
    println!("  report: {}", dir.join("report.html").display());
    Ok(ExitCode::SUCCESS)
}

/// Runs the minimal scenario into `out_dir/<name>/<seed>/` as `roomsim run` does (full log,
/// report, explorer).
fn run_minimal(sc: &Scenario, out_dir: &Path, seed: u64) -> Result<(PathBuf, RunResult), String> {
    let dir = run::run_dir(out_dir, sc, seed);
    let options = run::RunOptions {
        seed,
        check_invariants: false,
        progress: false,
        log: roomsim_engine::sim::log::LogMode::Full,
        log_compression: roomsim_engine::sim::log::LogCompression::Zstd,
    };
    let result = run::run_into(sc, &dir, &options)?;
    if let Err(e) = roomsim_analysis::explorer::write_run_explorers(&dir) {
        eprintln!("  explorer not written: {e}");
    }
    if let Err(e) = roomsim_analysis::report::write_run_report(&dir) {
        eprintln!("  report not written: {e}");
    }
    Ok((dir, result))
}

/// `rooms.main.x = 0`, or why there are no values.
fn values(expr: &predicate::Expr, summary: Option<&Value>) -> String {
    match summary {
        Some(s) => predicate::describe(expr, s),
        None => "no run completed".to_string(),
    }
}

fn events(summary: &Value) -> u64 {
    summary["events_created"].as_u64().unwrap_or(0)
}

/// `1 step`, `2 steps`.
fn plural(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// `4 servers, 8 users, 1 room, 0 actions, 0 faults, 1 workload, 81 events`.
fn counts(t: &Table, events: u64) -> String {
    [
        plural(reduce::servers(t), "server"),
        plural(reduce::users(t), "user"),
        plural(reduce::rooms(t), "room"),
        plural(reduce::actions(t), "timeline action"),
        plural(reduce::faults(t), "fault"),
        plural(reduce::workloads(t), "workload"),
        plural(events as usize, "event"),
    ]
    .join(", ")
}

/// `equivocation` → `equivocation-min` (within the 200-byte identifier limit).
fn minimal_name(name: &str) -> String {
    if name.ends_with("-min") || name.len() + 4 > scenario::MAX_IDENTIFIER_BYTES {
        name.to_string()
    } else {
        format!("{name}-min")
    }
}

fn stem(file_name: &str) -> &str {
    file_name.strip_suffix(".toml").unwrap_or(file_name)
}

fn progress_bar(enabled: bool) -> Option<indicatif::ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("static template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    Some(bar)
}

impl Ending {
    fn describe(&self, budget: Budget) -> String {
        match self {
            Ending::Fixpoint => "ended at a fixpoint: no reduction tried keeps the predicate".to_string(),
            Ending::Budget => format!("stopped by the budget ({}): further reductions may exist", budget.describe()),
            Ending::StepLimit => format!("stopped after {MAX_STEPS} steps"),
        }
    }
}

struct Shrinker<'a> {
    runner: Runner<'a>,
    current: Current,
    /// Every scenario the shrink has been at: never accepted again.
    seen: BTreeSet<String>,
    steps: Vec<Step>,
    bar: Option<indicatif::ProgressBar>,
}

impl Shrinker<'_> {
    /// Runs every pass, round after round, until a round keeps nothing.
    fn run(&mut self) -> Ending {
        let passes = reduce::passes();
        loop {
            let mut kept = false;
            for pass in &passes {
                match self.pass(pass) {
                    Ok(k) => kept |= k,
                    Err(ending) => return ending,
                }
            }
            if !kept {
                return Ending::Fixpoint;
            }
        }
    }

    /// One pass, ddmin-style: its atoms applied in `chunks` chunks, from one chunk (every atom)
    /// to one chunk per atom; a chunk that keeps the predicate is kept and the pass goes on at
    /// the same granularity over the new scenario's atoms. Whether anything was kept.
    fn pass(&mut self, pass: &Pass) -> Result<bool, Ending> {
        let mut kept = false;
        let mut chunks = 1;
        loop {
            let atoms = (pass.atoms)(&self.current.table, &self.current.summary);
            let n = atoms.len();
            if n == 0 {
                return Ok(kept);
            }
            let k = chunks.clamp(1, n);
            let groups: Vec<Vec<&Atom>> = (0..k).map(|i| atoms[i * n / k..(i + 1) * n / k].iter().collect()).collect();
            let tables: Vec<Table> = groups.iter().map(|g| reduce::apply(&self.current.table, g)).collect();
            let texts: Vec<String> = tables.iter().map(doc::render).collect();
            self.show(&format!("{} {n} in {k} chunks", pass.many.trim_end_matches(':')));
            let (outcomes, stopped) = self.runner.evaluate(&texts, self.current.seed);
            // The lowest-index candidate that holds, unless one before it was not evaluated.
            let mut accepted = None;
            for (i, outcome) in outcomes.iter().enumerate() {
                match outcome {
                    Outcome::Skipped => break,
                    Outcome::Holds { seed, summary }
                        if texts[i] != self.current.text && !self.seen.contains(&texts[i]) =>
                    {
                        accepted = Some((i, *seed, summary.clone()));
                        break;
                    }
                    _ => {}
                }
            }
            let found = accepted.is_some();
            if let Some((i, seed, summary)) = accepted {
                let table = tables.into_iter().nth(i).expect("candidate index");
                let text = texts[i].clone();
                self.accept(pass, &groups[i], Current { table, text, seed, summary });
                kept = true;
                if self.steps.len() >= MAX_STEPS {
                    return Err(Ending::StepLimit);
                }
            }
            if stopped {
                return Err(Ending::Budget);
            }
            if !found {
                if k >= n {
                    return Ok(kept);
                }
                chunks = (2 * k).min(n);
            }
        }
    }

    fn accept(&mut self, pass: &Pass, atoms: &[&Atom], next: Current) {
        let owned: Vec<Atom> = atoms.iter().map(|a| (*a).clone()).collect();
        let measure =
            pass.measure.map(|(noun, count)| format!("{} → {} {noun}", count(&self.current.table), count(&next.table)));
        let step = Step {
            description: pass.describe(&owned),
            measure,
            events: (events(&self.current.summary), events(&next.summary)),
            seed: next.seed,
        };
        let previous = std::mem::replace(&mut self.current, next);
        self.seen.insert(previous.text);
        let mut line = format!("step {}: {}", self.steps.len() + 1, step.description);
        let mut facts: Vec<String> = step.measure.iter().cloned().collect();
        facts.push(format!("{} → {} events", step.events.0, step.events.1));
        if step.seed != previous.seed {
            facts.push(format!("now with seed {}", step.seed));
        }
        facts.push(format!("{} runs so far", self.runner.runs));
        line.push_str(&format!(" — {}", facts.join(", ")));
        match &self.bar {
            Some(bar) => bar.println(&line),
            None => eprintln!("{line}"),
        }
        self.steps.push(step);
    }

    fn show(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} steps, {} runs · trying {what}", self.steps.len(), self.runner.runs));
        }
    }
}

/// What the minimal file's header comment says.
struct Header<'a> {
    name: &'a str,
    predicate: &'a str,
    expr: &'a predicate::Expr,
    summary: &'a Value,
    seed: u64,
    /// `--seed` (or the scenario's seed).
    start_seed: u64,
    source: &'a Scenario,
    dropped_sweep: bool,
    out_name: &'a str,
    steps: &'a [Step],
    runs: u64,
    ending: &'a Ending,
    budget: Budget,
    original_counts: &'a str,
    minimal_counts: &'a str,
}

/// A word or argument as the shell reads it: as is when safe, else in single quotes.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Header<'_> {
    /// The header: every line a comment, no wall time (the file depends on the inputs only).
    fn render(&self) -> String {
        let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let predicate = one_line(self.predicate);
        let values = predicate::describe(self.expr, self.summary);
        let mut from = format!(
            "{} (sha256 {}), seed {}",
            self.source.source.base_name(),
            &self.source.source.sha256()[..16],
            self.start_seed
        );
        if !self.source.source.overrides.is_empty() {
            let sets: Vec<String> =
                self.source.source.overrides.iter().map(|o| format!("--set {}", shell_quote(&one_line(o)))).collect();
            from.push_str(&format!(", {}", sets.join(" ")));
        }
        let mut lines = vec![
            format!("{} — the smallest scenario `roomsim shrink` found that still shows the predicate", self.name),
            String::new(),
            format!("predicate: {predicate}"),
            format!("holds with seed {}: {values}", self.seed),
            format!("shrunk from: {from}"),
        ];
        if self.dropped_sweep {
            lines.push("  ([sweep] left out: a shrink runs single seeds)".to_string());
        }
        lines.extend([
            format!("reproduce: roomsim run {} --seed {}", shell_quote(self.out_name), self.seed),
            format!("  and read summary.json: {values}"),
            format!(
                "  or: roomsim shrink {} --seed {} --until {} --check",
                shell_quote(self.out_name),
                self.seed,
                shell_quote(&predicate)
            ),
            format!(
                "shrink: {}, {} runs; {}",
                plural(self.steps.len(), "step"),
                self.runs,
                self.ending.describe(self.budget)
            ),
            format!("was: {}", self.original_counts),
            format!("now: {}", self.minimal_counts),
        ]);
        if !self.steps.is_empty() {
            lines.push("steps kept:".to_string());
        }
        for (i, step) in self.steps.iter().enumerate() {
            let measure = step.measure.as_ref().map(|m| format!(" ({m})")).unwrap_or_default();
            lines.push(format!("  {}. {}{measure}", i + 1, one_line(&step.description)));
        }
        lines.iter().map(|l| if l.is_empty() { "#\n".to_string() } else { format!("# {l}\n") }).collect()
    }
}

/// Where the minimal run goes by default.
pub fn default_out_dir() -> PathBuf {
    Path::new("out").join("shrink")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_names() {
        assert_eq!(shell_quote("a.min.toml"), "a.min.toml");
        assert_eq!(shell_quote("rooms.*.x > 0"), "'rooms.*.x > 0'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(minimal_name("equivocation"), "equivocation-min");
        assert_eq!(minimal_name("equivocation-min"), "equivocation-min");
        assert_eq!(stem("a.toml"), "a");
    }
}
