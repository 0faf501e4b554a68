//! Evaluating candidates: each candidate scenario text is validated by the scenario parser and,
//! if valid, simulated in memory (no log kept) for one or a few seeds, and the predicate is
//! evaluated on its summary. Candidates of one level run in parallel (rayon); outcomes come back
//! in candidate order, and each candidate's seeds run one after the other, so outcomes and run
//! counts do not depend on the thread count.

use super::predicate::{self, Expr};
use rayon::prelude::*;
use roomsim_engine::scenario::{parse_scenario, Scenario};
use roomsim_engine::sim::log::{LogMode, LogWriter};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What stops the shrink early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Unlimited,
    /// At most this many simulation runs.
    Runs(u64),
    /// No run starts after this much wall time. Results then depend on the machine's speed.
    Time(Duration),
}

impl Budget {
    /// `200` (runs) or a duration such as `5m` or `90s` (wall time).
    pub fn parse(text: &str) -> Result<Budget, String> {
        if let Ok(n) = text.trim().parse::<u64>() {
            return Ok(Budget::Runs(n));
        }
        roomsim_engine::scenario::parse_duration(text)
            .map(|d| Budget::Time(Duration::from_micros(d.0)))
            .map_err(|e| format!("--budget {text}: expected a number of runs (200) or a wall time (5m): {e}"))
    }

    pub fn describe(&self) -> String {
        match self {
            Budget::Unlimited => "no budget".to_string(),
            Budget::Runs(n) => format!("{n} runs"),
            Budget::Time(d) => {
                format!("{} of wall time", roomsim_engine::scenario::format_duration_us(d.as_micros() as u64))
            }
        }
    }
}

/// The outcome of one candidate.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The parser refused it (no run).
    Invalid,
    /// No seed tried made the predicate hold.
    Fails,
    /// The predicate holds with this seed; the run's summary.
    Holds { seed: u64, summary: Arc<Value> },
    /// Not evaluated: the budget ran out.
    Skipped,
}

/// Runs candidates, counts runs, remembers outcomes by scenario text.
pub struct Runner<'a> {
    expr: &'a Expr,
    /// The name candidates are parsed under (messages only).
    file_name: String,
    /// The seeds a candidate may show the predicate with (`--any-seed K`: K seeds from `--seed`).
    seeds: Vec<u64>,
    budget: Budget,
    started: Instant,
    pub runs: u64,
    cache: BTreeMap<String, Outcome>,
}

/// One simulation in memory: no log, no files; the summary.
pub fn simulate(sc: &Scenario, seed: u64) -> Result<Value, String> {
    let log = LogWriter::with_mode(Box::new(std::io::sink()), LogMode::None);
    let run = std::panic::AssertUnwindSafe(|| {
        let mut world = roomsim_engine::metrics::instrumented_world(sc, seed, log);
        world.run();
        world.finish(false).map(|r| r.summary)
    });
    std::panic::catch_unwind(run).unwrap_or_else(|_| Err(format!("the simulator panicked on seed {seed}")))
}

impl<'a> Runner<'a> {
    pub fn new(expr: &'a Expr, file_name: &str, seeds: Vec<u64>, budget: Budget) -> Runner<'a> {
        Runner {
            expr,
            file_name: file_name.to_string(),
            seeds,
            budget,
            started: Instant::now(),
            runs: 0,
            cache: BTreeMap::new(),
        }
    }

    /// Wall time since the shrink started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn out_of_time(&self) -> bool {
        matches!(self.budget, Budget::Time(d) if self.started.elapsed() >= d)
    }

    /// The seeds to try for a candidate: the current scenario's seed first (the likeliest to
    /// still show the predicate), then the others in order.
    fn order(&self, first: u64) -> Vec<u64> {
        let mut seeds = vec![first];
        seeds.extend(self.seeds.iter().copied().filter(|s| *s != first));
        seeds
    }

    /// Runs one scenario over the seeds until the predicate holds: the outcome, the summary of
    /// the first seed's run (for messages), the runs made.
    fn try_seeds(&self, sc: &Scenario, first_seed: u64) -> (Outcome, Option<Value>, u64) {
        let mut runs = 0;
        let mut first_summary = None;
        for seed in self.order(first_seed) {
            if self.out_of_time() {
                return (Outcome::Skipped, first_summary, runs);
            }
            runs += 1;
            let Ok(summary) = simulate(sc, seed) else { continue };
            if predicate::eval(self.expr, &summary) {
                return (Outcome::Holds { seed, summary: Arc::new(summary) }, first_summary, runs);
            }
            first_summary.get_or_insert(summary);
        }
        (Outcome::Fails, first_summary, runs)
    }

    /// Checks the scenario the shrink starts from: the outcome and, when it fails, the first
    /// seed's summary.
    pub fn check(&mut self, sc: &Scenario, first_seed: u64) -> (Outcome, Option<Value>) {
        let (outcome, first, runs) = self.try_seeds(sc, first_seed);
        self.runs += runs;
        (outcome, first)
    }

    /// Evaluates candidates (scenario texts); returns their outcomes in order and whether the
    /// budget stopped the evaluation (some candidates are then `Skipped`).
    pub fn evaluate(&mut self, texts: &[String], current_seed: u64) -> (Vec<Outcome>, bool) {
        let mut outcomes: Vec<Option<Outcome>> = texts.iter().map(|t| self.cache.get(t).cloned()).collect();
        let file_name = &self.file_name;
        let parsed: Vec<Option<Result<Scenario, String>>> = texts
            .par_iter()
            .zip(&outcomes)
            .map(|(text, known)| {
                known.is_none().then(|| parse_scenario(file_name, text, &[]).map_err(|e| e.to_string()))
            })
            .collect();
        // Which valid candidates the run budget allows: a prefix, reserving every seed for each.
        let mut reserved = 0u64;
        let mut stopped = self.out_of_time();
        let mut to_run: Vec<(usize, &Scenario)> = Vec::new();
        for (i, p) in parsed.iter().enumerate() {
            match p {
                None => {}
                Some(Err(_)) => outcomes[i] = Some(Outcome::Invalid),
                Some(Ok(sc)) => {
                    let need = self.seeds.len() as u64;
                    let allowed = match self.budget {
                        Budget::Runs(max) => self.runs + reserved + need <= max,
                        _ => true,
                    };
                    if allowed && !stopped {
                        reserved += need;
                        to_run.push((i, sc));
                    } else {
                        stopped = true;
                        outcomes[i] = Some(Outcome::Skipped);
                    }
                }
            }
        }
        let results: Vec<(usize, Outcome, u64)> = to_run
            .par_iter()
            .map(|(i, sc)| {
                let (outcome, _, runs) = self.try_seeds(sc, current_seed);
                (*i, outcome, runs)
            })
            .collect();
        for (i, outcome, runs) in results {
            self.runs += runs;
            stopped |= matches!(outcome, Outcome::Skipped);
            outcomes[i] = Some(outcome);
        }
        let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Skipped)).collect();
        for (text, outcome) in texts.iter().zip(&outcomes) {
            if !matches!(outcome, Outcome::Skipped) {
                self.cache.entry(text.clone()).or_insert_with(|| outcome.clone());
            }
        }
        (outcomes, stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets() {
        assert_eq!(Budget::parse("200"), Ok(Budget::Runs(200)));
        assert_eq!(Budget::parse("5m"), Ok(Budget::Time(Duration::from_secs(300))));
        assert_eq!(Budget::parse("1.5s"), Ok(Budget::Time(Duration::from_millis(1500))));
        assert!(Budget::parse("lots").unwrap_err().contains("--budget lots"));
        assert_eq!(Budget::Runs(3).describe(), "3 runs");
        assert_eq!(Budget::Time(Duration::from_secs(90)).describe(), "90s of wall time");
    }
}
