//! Subcommands.

mod batch;
mod dag;
pub mod files;
mod run;
mod shrink;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(name = "roomsim", version, about = "Deterministic simulator of Matrix federation")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Work on room DAGs given as JSON Lines of federation PDUs.
    Dag {
        #[command(subcommand)]
        command: dag::DagCommand,
    },
    /// Simulate a scenario and write DIR/<scenario>/<seed>/ (log, PDUs, keys, metrics, summary, report).
    Run {
        scenario: PathBuf,
        /// Master seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Worker threads (0 = one per core). Results do not depend on it.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Override a scenario value: --set network.loss=0.1 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Check invariants at the end (exit 1 if one is violated).
        #[arg(long)]
        check_invariants: bool,
        /// Do not write report.html.
        #[arg(long)]
        no_report: bool,
        /// What log.jsonl receives: `full` (every record), `digest` (only its running sha256,
        /// in summary.json; for sweeps), `none`.
        #[arg(long, default_value = "full", value_parser = parse_log_mode)]
        log: roomsim_engine::sim::log::LogMode,
        /// How a full log is stored: `zstd` (log.jsonl.zst; read it with `zstdcat`) or `none`
        /// (plain log.jsonl). The log digest is the same either way.
        #[arg(long, default_value = "zstd", value_parser = parse_log_compression)]
        log_compression: roomsim_engine::sim::log::LogCompression,
        /// No progress display (it is shown on stderr only when stderr is a terminal).
        #[arg(long)]
        no_progress: bool,
        /// Exit 1 when a room did not reach agreement by the end of the run.
        #[arg(long)]
        fail_on_divergence: bool,
    },
    /// Validate a scenario file without running it.
    Check {
        scenario: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Rebuild every server from a run's log and check it reaches the same decisions and state.
    Replay { run_dir: PathBuf },
    /// Print the first simulation event where two runs part ways.
    Diff { run_a: PathBuf, run_b: PathBuf },
    /// (Re)write report.html and explorer/<room>.html for a run directory.
    Report { run_dir: PathBuf },
    /// Run two designs on the same seeds and compare every summary metric (paired, bootstrap CIs).
    Compare {
        scenario: PathBuf,
        /// Seeds: `1..50` (inclusive) or `1,2,3`.
        #[arg(long, default_value = "1..20")]
        seeds: String,
        /// Override for design A (repeatable).
        #[arg(long = "set-a", value_name = "KEY=VALUE")]
        set_a: Vec<String>,
        /// Override for design B (repeatable).
        #[arg(long = "set-b", value_name = "KEY=VALUE")]
        set_b: Vec<String>,
        /// Override for both designs (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Name of design A in the outputs (default: its --set-a overrides, or "scenario as is").
        #[arg(long)]
        label_a: Option<String>,
        /// Name of design B in the outputs (default: its --set-b overrides, or "scenario as is").
        #[arg(long)]
        label_b: Option<String>,
        #[arg(long, default_value = "out")]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// No progress display (it is shown on stderr only when stderr is a terminal).
        #[arg(long)]
        no_progress: bool,
    },
    /// Run a scenario's [sweep] grid (or one shard of it: --shard K/N); resumes where it stopped.
    Sweep {
        scenario: PathBuf,
        #[arg(long)]
        shard: Option<String>,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long, default_value = "out")]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// No progress display (it is shown on stderr only when stderr is a terminal).
        #[arg(long)]
        no_progress: bool,
    },
    /// Reduce a scenario to the smallest one for which a predicate over summary.json still
    /// holds (docs/shrink.md); writes it with a header and its run directory.
    Shrink {
        scenario: PathBuf,
        /// Master seed (default: the scenario's).
        #[arg(long)]
        seed: Option<u64>,
        /// The predicate, e.g. "rooms.*.auth_disagreements > 0" (docs/shrink.md).
        #[arg(long, value_name = "PREDICATE")]
        until: String,
        /// The minimal scenario file (default: <scenario>.min.toml in the current directory).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Where the minimal scenario's run directory goes (DIR/<name>/<seed>/).
        #[arg(long, value_name = "DIR", default_value_os_t = shrink::default_out_dir())]
        out_dir: PathBuf,
        /// Stop after this many runs (200) or this much wall time (5m; results then depend on
        /// the machine's speed).
        #[arg(long, value_name = "RUNS|TIME")]
        budget: Option<String>,
        /// Keep a reduction if the predicate holds for some seed among K seeds from --seed
        /// (K defaults to 10).
        #[arg(long, value_name = "K", num_args = 0..=1, default_missing_value = "10")]
        any_seed: Option<u64>,
        /// Worker threads (0 = one per core). Results do not depend on it.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Override a scenario value before shrinking (repeatable); the minimal file includes it.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Only check whether the predicate holds for the scenario as given (exit 0 or 1).
        #[arg(long)]
        check: bool,
        /// No progress display (it is shown on stderr only when stderr is a terminal).
        #[arg(long)]
        no_progress: bool,
    },
    /// Merge sweep outputs (shards) into sweep.csv and sweep.html.
    Merge {
        dirs: Vec<PathBuf>,
        #[arg(long, default_value = "out/merged")]
        out: PathBuf,
    },
}

pub fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Dag { command } => dag::run(command),
        Command::Run {
            scenario,
            seed,
            out,
            threads,
            set,
            check_invariants,
            no_report,
            log,
            log_compression,
            no_progress,
            fail_on_divergence,
        } => {
            set_threads(threads);
            let sc = run::load(&scenario, &set)?;
            let seed = seed.unwrap_or(sc.seed);
            let dir = run::run_dir(&out, &sc, seed);
            let result = run::run_into(
                &sc,
                &dir,
                &run::RunOptions { seed, check_invariants, progress: !no_progress, log, log_compression },
            )?;
            if !no_report {
                match roomsim_analysis::explorer::write_run_explorers(&dir) {
                    Ok(paths) if !paths.is_empty() => {
                        println!("  explorer: {}", dir.join("explorer").display());
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("  explorer not written: {e}"),
                }
                match roomsim_analysis::report::write_run_report(&dir) {
                    Ok(path) => println!("  report: {}", path.display()),
                    Err(e) => eprintln!("  report not written: {e}"),
                }
            }
            run::print_summary(&dir, &result);
            let diverged = run::rooms_without_agreement(&result);
            for room in &diverged {
                eprintln!("room {room} did not agree by the end of the run");
            }
            let failed = (check_invariants && !result.invariant_violations.is_empty())
                || (fail_on_divergence && !diverged.is_empty());
            // The process ends here: freeing a large run's result would only cost time.
            std::mem::forget(result);
            Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Check { scenario, set } => {
            let sc = run::load(&scenario, &set)?;
            // The verdict is the command's result: stdout (errors go to stderr).
            println!(
                "{}: ok ({} servers, {} rooms, {} timeline actions, {} faults)",
                scenario.display(),
                sc.servers.len(),
                sc.rooms.len(),
                sc.timeline.len(),
                sc.faults.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay { run_dir } => {
            Ok(if run::replay_command(&run_dir)? { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Diff { run_a, run_b } => {
            Ok(if run::diff_command(&run_a, &run_b)? { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Report { run_dir } => {
            let explorers = roomsim_analysis::explorer::write_run_explorers(&run_dir).map_err(|e| e.to_string())?;
            for p in explorers {
                println!("wrote {}", p.display());
            }
            let path = roomsim_analysis::report::write_run_report(&run_dir).map_err(|e| e.to_string())?;
            println!("wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare { scenario, seeds, set_a, set_b, set, label_a, label_b, out, threads, no_progress } => {
            set_threads(threads);
            batch::compare(batch::CompareArgs {
                scenario,
                seeds,
                set,
                set_a,
                set_b,
                label_a,
                label_b,
                out,
                progress: !no_progress,
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep { scenario, shard, set, out, threads, no_progress } => {
            set_threads(threads);
            batch::sweep(&scenario, &set, shard.as_deref(), &out, !no_progress)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Shrink { scenario, seed, until, out, out_dir, budget, any_seed, threads, set, check, no_progress } => {
            set_threads(threads);
            shrink::shrink(shrink::ShrinkArgs {
                scenario,
                seed,
                until,
                out,
                out_dir,
                budget,
                any_seed,
                set,
                progress: !no_progress,
                check,
            })
        }
        Command::Merge { dirs, out } => {
            batch::merge(&dirs, &out)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_log_compression(s: &str) -> Result<roomsim_engine::sim::log::LogCompression, String> {
    roomsim_engine::sim::log::LogCompression::parse(s)
        .ok_or_else(|| format!("--log-compression {s}: expected zstd or none"))
}

fn parse_log_mode(s: &str) -> Result<roomsim_engine::sim::log::LogMode, String> {
    roomsim_engine::sim::log::LogMode::parse(s).ok_or_else(|| format!("--log {s}: expected full, digest or none"))
}

/// Sets the size of rayon's global pool (`--threads`); 0 = rayon's default.
pub fn set_threads(threads: usize) {
    if threads > 0 {
        // Fails only if the pool was built already, in which case the first setting stands.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
    }
}
