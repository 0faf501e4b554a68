//! `roomsim dag verify`, `roomsim dag dot` and `roomsim dag explore`.

use super::files::{read_text, write_atomic};
use clap::{Subcommand, ValueEnum};
use roomsim_engine::protocol::state_res::ReadmitRejected;
use roomsim_engine::protocol::verify::{self, VerifyOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

#[derive(Subcommand, Debug)]
pub enum DagCommand {
    /// Judge every event of a DAG (auth rules, state resolution) and report verdicts and state.
    Verify {
        /// JSON Lines, one federation PDU per line, any order (`.gz` accepted).
        dag: PathBuf,
        /// `{"server_keys": {server: {key_id: base64 public key}}}`: check hashes and signatures.
        /// Account-key rooms (MSC4243) have their signatures checked without it.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Worker threads (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Whether state resolution may readmit an event rejected earlier (open question A3):
        /// `synapse` never does, `spec` replays it like any other event. On a DAG judged from
        /// scratch the two agree (see docs/dag-verify.md).
        #[arg(long, value_enum, default_value_t = Readmit::Synapse)]
        readmit_rejected: Readmit,
    },
    /// Graphviz DOT of a DAG (rejected events red), to stdout or --out; with --out, also renders
    /// FILE.svg when Graphviz `dot` is installed.
    Dot {
        dag: PathBuf,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Refuse DAGs with more events than this (Graphviz takes minutes on large DAGs).
        #[arg(long, value_name = "N", default_value_t = DOT_MAX_EVENTS)]
        max_events: usize,
        /// Stop `dot` after this many seconds (0 = no limit).
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        timeout: u64,
    },
    /// Write the explorer page of a DAG (one self-contained HTML file: zoomable DAG, every
    /// event's verdict from `dag verify`, its JSON, prev and auth events).
    Explore {
        /// JSON Lines, one federation PDU per line, any order (`.gz` accepted).
        dag: PathBuf,
        /// Server keys, as for `dag verify --keys`: check hashes and signatures.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// The page to write (default: beside the DAG, `<name>.explorer.html`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `--readmit-rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Readmit {
    Synapse,
    Spec,
}

impl From<Readmit> for ReadmitRejected {
    fn from(r: Readmit) -> ReadmitRejected {
        match r {
            Readmit::Synapse => ReadmitRejected::Synapse,
            Readmit::Spec => ReadmitRejected::Spec,
        }
    }
}

/// Default cap of `dag dot` on the events of a DAG (`--max-events` overrides it).
pub const DOT_MAX_EVENTS: usize = 2000;

pub fn run(command: DagCommand) -> Result<ExitCode, String> {
    match command {
        DagCommand::Verify { dag, keys, report, threads, readmit_rejected } => {
            verify_command(dag, keys, report, threads, readmit_rejected.into())
        }
        DagCommand::Dot { dag, out, max_events, timeout } => dot_command(&dag, out.as_deref(), max_events, timeout),
        DagCommand::Explore { dag, keys, out } => explore_command(&dag, keys.as_deref(), out.as_deref()),
    }
}

/// `<dir>/<name>.explorer.html` for `<dir>/<name>.jsonl[.gz]`.
fn default_explorer_path(dag: &Path) -> PathBuf {
    let name = dag.file_name().map_or_else(|| "dag".to_string(), |n| n.to_string_lossy().into_owned());
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    let stem = stem.strip_suffix(".jsonl").or_else(|| stem.strip_suffix(".json")).unwrap_or(stem);
    dag.with_file_name(format!("{stem}.explorer.html"))
}

fn explore_command(dag: &Path, keys: Option<&Path>, out: Option<&Path>) -> Result<ExitCode, String> {
    use roomsim_analysis::explorer::{render_explorer_with, ExplorerInput, Judgement};
    let text = read_text(dag)?;
    let keys = match keys {
        Some(path) => {
            Some(verify::parse_server_keys(&read_text(path)?).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let input = parse_input(dag, &text)?;
    let options = VerifyOptions { keys, skip_state_digests: true, ..Default::default() };
    let verified = verify::verify_input(input, &options);
    let r = &verified.report;
    let judged = r
        .verdicts
        .iter()
        .map(|(id, v)| {
            let j = Judgement {
                verdict: v.verdict.to_string(),
                stage: v.stage.map(|s| s.as_str().to_string()),
                reason: v.reason.clone(),
            };
            (id.clone(), j)
        })
        .collect();
    let name = dag.file_name().map_or_else(|| dag.display().to_string(), |n| n.to_string_lossy().into_owned());
    let page = ExplorerInput {
        title: format!("{name} — room {}", r.room_id),
        subtitle: format!(
            "room version {} · {} events, {} accepted, {} rejected (dag verify{})",
            r.room_version,
            r.events,
            r.accepted,
            r.rejected,
            if options.keys.is_some() { ", signatures checked" } else { ", without --keys" }
        ),
        room_id: r.room_id.clone(),
        room_version: r.room_version.clone(),
        pdus: verified.dag.events().map(|(_, e)| e.pdu.clone()).collect(),
        judged,
        forward_extremities: Some(r.forward_extremities.clone()),
        ..Default::default()
    };
    let path = out.map_or_else(|| default_explorer_path(dag), Path::to_owned);
    write_atomic(&path, render_explorer_with(&page, &verified).as_bytes())?;
    println!(
        "wrote {}: {} events ({} accepted, {} rejected), {} forward extremities",
        path.display(),
        r.events,
        r.accepted,
        r.rejected,
        r.forward_extremities.len()
    );
    std::mem::forget(verified);
    Ok(ExitCode::SUCCESS)
}

fn dot_command(dag: &Path, out: Option<&Path>, max_events: usize, timeout: u64) -> Result<ExitCode, String> {
    let text = read_text(dag)?;
    let input = parse_input(dag, &text)?;
    if input.pdus.len() > max_events {
        return Err(format!(
            "{}: {} events, more than the cap of {max_events} of `dag dot` (Graphviz takes minutes \
             on DAGs this size and the picture is unreadable); pass --max-events {} to draw it anyway",
            dag.display(),
            input.pdus.len(),
            input.pdus.len()
        ));
    }
    let verified = verify::verify_input(input, &VerifyOptions::default());
    let dot = dot_of(&verified, &Default::default());
    let Some(path) = out else {
        print!("{dot}");
        return Ok(ExitCode::SUCCESS);
    };
    write_atomic(path, dot.as_bytes())?;
    let svg = path.with_extension("svg");
    let limit = (timeout > 0).then(|| Duration::from_secs(timeout));
    match render_svg(path, &svg, limit) {
        Ok(()) => {
            println!("wrote {} and {}", path.display(), svg.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(DotFailure::NotInstalled) => {
            println!("wrote {}", path.display());
            eprintln!(
                "{}: not rendered: Graphviz `dot` is not installed (not found on PATH); \
                 install graphviz, or render it elsewhere with `dot -Tsvg {} -o {}`",
                path.display(),
                path.display(),
                svg.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            let _ = std::fs::remove_file(&svg);
            println!("wrote {}", path.display());
            eprintln!("rendering {} failed: {failure}", svg.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Why `dot` did not render a picture.
#[derive(Debug)]
enum DotFailure {
    NotInstalled,
    Spawn(std::io::Error),
    Exit { status: std::process::ExitStatus, stderr: String },
    TimedOut(Duration),
}

impl std::fmt::Display for DotFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DotFailure::NotInstalled => write!(f, "Graphviz `dot` is not installed"),
            DotFailure::Spawn(e) => write!(f, "could not start `dot`: {e}"),
            DotFailure::Exit { status, stderr } if stderr.trim().is_empty() => {
                write!(f, "`dot` exited with {status} (it printed nothing on stderr)")
            }
            DotFailure::Exit { status, stderr } => write!(f, "`dot` exited with {status}:\n{}", stderr.trim_end()),
            DotFailure::TimedOut(limit) => write!(
                f,
                "`dot` was still running after {} s and was stopped (raise --timeout, or 0 for no limit)",
                limit.as_secs()
            ),
        }
    }
}

/// Runs `dot -Tsvg DOT -o SVG`, killing it once `limit` has passed.
fn render_svg(dot: &Path, svg: &Path, limit: Option<Duration>) -> Result<(), DotFailure> {
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .arg(dot)
        .arg("-o")
        .arg(svg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DotFailure::NotInstalled
            } else {
                DotFailure::Spawn(e)
            }
        })?;
    // Read stderr on the side so that a chatty `dot` never blocks on a full pipe.
    let mut pipe = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(DotFailure::Spawn(e)),
        }
        if let Some(limit) = limit.filter(|l| started.elapsed() >= *l) {
            let _ = child.kill();
            let _ = child.wait();
            // The reader ends when the pipe closes; it is not waited for, in case `dot` left a
            // child behind that holds the pipe open.
            drop(reader);
            return Err(DotFailure::TimedOut(limit));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = reader.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(DotFailure::Exit { status, stderr })
    }
}

fn verify_command(
    dag: PathBuf,
    keys: Option<PathBuf>,
    report: Option<PathBuf>,
    threads: usize,
    readmit_rejected: ReadmitRejected,
) -> Result<ExitCode, String> {
    super::set_threads(threads);
    let text = read_text(&dag)?;
    let keys = match keys {
        Some(path) => {
            Some(verify::parse_server_keys(&read_text(&path)?).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let input = parse_input(&dag, &text)?;
    let options = VerifyOptions { keys, readmit_rejected, skip_state_digests: report.is_none(), ..Default::default() };
    let verified = verify::verify_input(input, &options);
    let r = &verified.report;
    // The verdict is the command's result: stdout.
    println!(
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
        println!("  rejected at {stage}: {n}");
    }
    if let Some(path) = report {
        write_atomic(&path, &verify::report_json(r))?;
    }
    // The process ends here: freeing the DAG and report would only cost time.
    std::mem::forget(verified);
    Ok(ExitCode::SUCCESS)
}

/// Parses a DAG file, saying on stderr which lines were left out and why.
fn parse_input(dag: &Path, text: &str) -> Result<verify::ParsedInput, String> {
    let input = verify::parse_input(text).map_err(|e| format!("{}: {e}", dag.display()))?;
    for l in &input.invalid {
        eprintln!("{}:{}: invalid, left out: {}: {}", dag.display(), l.line, l.field, l.message);
    }
    if !input.foreign.is_empty() {
        let mut rooms: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
        for l in &input.foreign {
            rooms.entry(&l.room_id).or_default().push(l.line);
        }
        eprintln!(
            "{}: {} lines of {} other room(s) left out (judging room {}, named by the most lines):",
            dag.display(),
            input.foreign.len(),
            rooms.len(),
            input.room_id
        );
        for (room, lines) in rooms {
            let shown: Vec<String> = lines.iter().take(5).map(usize::to_string).collect();
            let more = if lines.len() > 5 { ", …" } else { "" };
            eprintln!("  room {room}: {} lines (line {}{more})", lines.len(), shown.join(", "));
        }
    }
    Ok(input)
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
