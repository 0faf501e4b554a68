//! `roomsim dag verify` and `roomsim dag dot`.

use super::files::{read_text, write_atomic};
use clap::Subcommand;
use roomsim_engine::protocol::verify::{self, VerifyOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum DagCommand {
    /// Judge every event of a DAG (auth rules, state resolution) and report verdicts and state.
    Verify {
        /// JSON Lines, one federation PDU per line, any order (`.gz` accepted).
        dag: PathBuf,
        /// `{"server_keys": {server: {key_id: base64 public key}}}`: check hashes and signatures.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Worker threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
}

pub fn run(command: DagCommand) -> Result<ExitCode, String> {
    match command {
        DagCommand::Verify { dag, keys, report, threads } => verify_command(dag, keys, report, threads),
    }
}

fn verify_command(dag: PathBuf, keys: Option<PathBuf>, report: Option<PathBuf>, threads: usize) -> Result<ExitCode, String> {
    super::set_threads(threads);
    let text = read_text(&dag)?;
    let keys = match keys {
        Some(path) => Some(verify::parse_server_keys(&read_text(&path)?).map_err(|e| format!("{}: {e}", path.display()))?),
        None => None,
    };
    let (version, lines) = verify::parse_lines(&text).map_err(|e| format!("{}:{}: {}", dag.display(), e.line, e.error))?;
    let pdus = lines.into_iter().map(|(_, p)| p).collect();
    let verified = verify::verify_dag(version, pdus, &VerifyOptions { keys });
    let r = &verified.report;
    eprintln!(
        "{}: room {} (v{}): {} events, {} accepted, {} rejected; {} forward extremities; final state {} entries, digest {}",
        dag.display(),
        r.room_id,
        r.room_version,
        r.events,
        r.accepted,
        r.rejected,
        r.forward_extremities.len(),
        verified.final_state.len(),
        r.final_state_digest
    );
    let mut by_stage = std::collections::BTreeMap::new();
    for v in r.verdicts.values() {
        if let Some(stage) = v.stage {
            *by_stage.entry(stage.as_str()).or_insert(0usize) += 1;
        }
    }
    for (stage, n) in by_stage {
        eprintln!("  rejected at {stage}: {n}");
    }
    if let Some(path) = report {
        let mut json = serde_json::to_vec_pretty(r).map_err(|e| e.to_string())?;
        json.push(b'\n');
        write_atomic(&path, &json)?;
    }
    Ok(ExitCode::SUCCESS)
}
