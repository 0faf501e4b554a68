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
    /// Graphviz DOT of a DAG (rejected events red), to stdout or --out; renders SVG if `dot` exists.
    Dot {
        dag: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(command: DagCommand) -> Result<ExitCode, String> {
    match command {
        DagCommand::Verify { dag, keys, report, threads } => verify_command(dag, keys, report, threads),
        DagCommand::Dot { dag, out } => {
            let text = read_text(&dag)?;
            let (version, lines) =
                verify::parse_lines(&text).map_err(|e| format!("{}:{}: {}", dag.display(), e.line, e.error))?;
            let verified =
                verify::verify_dag(version, lines.into_iter().map(|(_, p)| p).collect(), &VerifyOptions::default());
            let dot = dot_of(&verified, &Default::default());
            match out {
                Some(path) => {
                    write_atomic(&path, dot.as_bytes())?;
                    let svg = path.with_extension("svg");
                    let rendered =
                        std::process::Command::new("dot").arg("-Tsvg").arg(&path).arg("-o").arg(&svg).status();
                    if rendered.is_ok_and(|s| s.success()) {
                        eprintln!("wrote {} and {}", path.display(), svg.display());
                    } else {
                        eprintln!("wrote {} (install graphviz to render it)", path.display());
                    }
                }
                None => print!("{dot}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn verify_command(
    dag: PathBuf,
    keys: Option<PathBuf>,
    report: Option<PathBuf>,
    threads: usize,
) -> Result<ExitCode, String> {
    super::set_threads(threads);
    let text = read_text(&dag)?;
    let keys = match keys {
        Some(path) => {
            Some(verify::parse_server_keys(&read_text(&path)?).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let (version, lines) =
        verify::parse_lines(&text).map_err(|e| format!("{}:{}: {}", dag.display(), e.line, e.error))?;
    let pdus = lines.into_iter().map(|(_, p)| p).collect();
    let skip_state_digests = report.is_none();
    let verified = verify::verify_dag(version, pdus, &VerifyOptions { keys, skip_state_digests });
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
        write_atomic(&path, &verify::report_json(r))?;
    }
    // The process ends here: freeing the DAG and report would only cost time.
    std::mem::forget(verified);
    Ok(ExitCode::SUCCESS)
}

/// Graphviz DOT of a small DAG: prev edges solid, auth edges dashed grey; rejected events red,
/// events some server soft-failed orange, the rest green.
pub fn dot_for_pdus(
    pdus: &[std::sync::Arc<roomsim_engine::protocol::pdu::Pdu>],
    soft_failed: &std::collections::BTreeSet<String>,
) -> String {
    let owned: Vec<roomsim_engine::protocol::pdu::Pdu> = pdus.iter().map(|p| (**p).clone()).collect();
    let Some(version) = owned.iter().find(|p| p.prev_events.is_empty()).and_then(|c| match &c.content {
        roomsim_engine::protocol::pdu::TypedContent::Create(cc) => {
            cc.room_version.as_deref().and_then(roomsim_engine::protocol::room_version::RoomVersion::by_id)
        }
        _ => None,
    }) else {
        return "digraph dag {}\n".into();
    };
    let verified = verify::verify_dag(version, owned, &VerifyOptions::default());
    dot_of(&verified, soft_failed)
}

/// Renders a verified DAG; `soft_failed` marks events to draw orange.
pub fn dot_of(verified: &verify::Verified, soft_failed: &std::collections::BTreeSet<String>) -> String {
    let dag = &verified.dag;
    let mut s = String::from(
        "digraph dag {\n  rankdir=BT;\n  node [shape=box, style=filled, fontname=\"sans-serif\", fontsize=10];\n",
    );
    for (i, e) in dag.events() {
        let p = &e.pdu;
        let label = format!(
            "{}\\n{}{}\\n{}",
            &p.event_id[..8],
            p.event_type.trim_start_matches("m.room."),
            p.state_key.as_deref().map(|k| format!(" {k}")).unwrap_or_default(),
            p.sender
        );
        let colour = if e.is_rejected() {
            "#f4a6a6"
        } else if soft_failed.contains(&p.event_id) {
            "#f7c873"
        } else {
            "#cfe8cf"
        };
        s.push_str(&format!("  e{i} [label=\"{}\", fillcolor=\"{colour}\"];\n", label.replace('"', "'")));
        for prev in &e.prev {
            s.push_str(&format!("  e{i} -> e{prev};\n"));
        }
        for a in &e.auth {
            s.push_str(&format!("  e{i} -> e{a} [style=dashed, color=grey];\n"));
        }
    }
    s.push_str("}\n");
    s
}
