//! `dag verify`: judge a whole room DAG given as PDU lines, as a receiving server would, and
//! produce the report (`verdicts`, states before every event, final state).
//!
//! For every event in topological order (Kahn over prev and auth edges; ties by depth, then
//! event ID): state before = resolution of the states after its prev events; verdict = (if keys
//! are given) content hash and signatures, then the auth rules against its own `auth_events`
//! (stage `auth_events`), then against the auth events selected from the state before (stage
//! `state_before`). State after = state before plus the event if it is an accepted state event.
//! Final state = resolution of the states after the forward extremities.

use super::auth::{self, AuthEventRef};
use super::crypto::{self, SignatureCheck};
use super::dag::{EventIdx, KeyRanks, RoomDag, Stage, StateMap, StateSnapshot, Status};
use super::json;
use super::pdu::{EventKind, Pdu, PduError};
use super::room_version::{self, RoomVersion};
use super::signers;
use super::state_res;
use ed25519_dalek::VerifyingKey;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

/// Public keys by server name and key ID (the `server_keys` of a `--keys` file).
pub type ServerKeys = BTreeMap<String, BTreeMap<String, VerifyingKey>>;

/// A malformed input line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    pub error: PduError,
}

/// Parses the `server_keys` object of a keys file (other top-level fields are ignored).
pub fn parse_server_keys(text: &str) -> Result<ServerKeys, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("line {}, column {}: {e}", e.line(), e.column()))?;
    let Some(servers) = value.get("server_keys").and_then(Value::as_object) else {
        return Err("server_keys: missing or not an object".into());
    };
    let mut out = ServerKeys::new();
    for (server, keys) in servers {
        let Some(keys) = keys.as_object() else {
            return Err(format!("server_keys.{server}: expected an object of key ID → public key"));
        };
        let entry = out.entry(server.clone()).or_default();
        for (key_id, b64) in keys {
            let key = b64
                .as_str()
                .and_then(crypto::verifying_key_from_b64)
                .ok_or_else(|| format!("server_keys.{server}.{key_id}: not an unpadded base64 ed25519 public key"))?;
            entry.insert(key_id.clone(), key);
        }
    }
    Ok(out)
}

/// The room version and the PDUs of a JSON Lines input, each with its 1-based line number.
pub type ParsedLines = (&'static RoomVersion, Vec<(usize, Pdu)>);

/// Parses every non-empty line into a PDU. The room version comes from the create event.
pub fn parse_lines(text: &str) -> Result<ParsedLines, LineError> {
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).collect();
    let version = find_room_version(&lines)?;
    let parsed: Result<Vec<(usize, Pdu)>, LineError> = lines
        .par_iter()
        .map(|(n, l)| {
            Pdu::from_json_bytes(l.as_bytes(), version).map(|p| (*n, p)).map_err(|error| LineError { line: *n, error })
        })
        .collect();
    parsed.map(|p| (version, p))
}

/// Finds the room version: `content.room_version` of the (first) create event.
fn find_room_version(lines: &[(usize, &str)]) -> Result<&'static RoomVersion, LineError> {
    let mut first_error = None;
    for (n, l) in lines {
        let value = match json::parse_strict(l.as_bytes()) {
            Ok(v) => v,
            Err(e) => {
                first_error.get_or_insert(LineError {
                    line: *n,
                    error: PduError { field: "(json)".into(), message: e.to_string() },
                });
                continue;
            }
        };
        if !value.is_object() {
            first_error.get_or_insert(LineError {
                line: *n,
                error: PduError { field: "(json)".into(), message: "a PDU must be a JSON object".into() },
            });
            continue;
        }
        if value.get("type").and_then(Value::as_str) == Some("m.room.create")
            && value.get("prev_events").and_then(Value::as_array).is_some_and(|p| p.is_empty())
        {
            let id = value.get("content").and_then(|c| c.get("room_version")).and_then(Value::as_str).unwrap_or("1");
            return room_version::lookup(id).map_err(|e| LineError {
                line: *n,
                error: PduError { field: "content.room_version".into(), message: e.to_string() },
            });
        }
    }
    Err(first_error.unwrap_or(LineError {
        line: lines.first().map_or(1, |l| l.0),
        error: PduError {
            field: "type".into(),
            message: "no m.room.create event in the input: cannot tell the room version".into(),
        },
    }))
}

/// Orders PDUs topologically over their prev and auth edges (Kahn's algorithm on a petgraph
/// graph), ties broken by depth, then event ID. Duplicate event IDs keep the first copy.
pub fn topological_order(pdus: Vec<Pdu>) -> Vec<Pdu> {
    let mut by_id: HashMap<String, usize> = HashMap::with_capacity(pdus.len());
    let mut unique: Vec<Pdu> = Vec::with_capacity(pdus.len());
    for p in pdus {
        if !by_id.contains_key(&p.event_id) {
            by_id.insert(p.event_id.clone(), unique.len());
            unique.push(p);
        }
    }
    let mut graph = petgraph::graph::DiGraph::<usize, ()>::with_capacity(unique.len(), unique.len() * 4);
    let nodes: Vec<_> = (0..unique.len()).map(|i| graph.add_node(i)).collect();
    for (i, p) in unique.iter().enumerate() {
        let mut parents: Vec<usize> =
            p.prev_events.iter().chain(&p.auth_events).filter_map(|id| by_id.get(id).copied()).collect();
        parents.sort_unstable();
        parents.dedup();
        for parent in parents {
            graph.add_edge(nodes[parent], nodes[i], ());
        }
    }
    let mut indegree: Vec<usize> =
        nodes.iter().map(|n| graph.neighbors_directed(*n, petgraph::Incoming).count()).collect();
    let key = |i: usize| Reverse((unique[i].depth, unique[i].event_id.clone(), i));
    let mut ready: BinaryHeap<_> = (0..unique.len()).filter(|i| indegree[*i] == 0).map(key).collect();
    let mut order = Vec::with_capacity(unique.len());
    let mut placed = vec![false; unique.len()];
    while let Some(Reverse((_, _, i))) = ready.pop() {
        order.push(i);
        placed[i] = true;
        for child in graph.neighbors_directed(nodes[i], petgraph::Outgoing) {
            let c = graph[child];
            indegree[c] -= 1;
            if indegree[c] == 0 {
                ready.push(key(c));
            }
        }
    }
    // Events on a cycle (only forged input can make one) go last, by depth and ID; their
    // references to each other are then "missing".
    let mut rest: Vec<usize> = (0..unique.len()).filter(|i| !placed[*i]).collect();
    rest.sort_by(|a, b| (unique[*a].depth, &unique[*a].event_id).cmp(&(unique[*b].depth, &unique[*b].event_id)));
    order.extend(rest);
    let mut slots: Vec<Option<Pdu>> = unique.into_iter().map(Some).collect();
    order.into_iter().map(|i| slots[i].take().expect("each index once")).collect()
}

/// The verdict on one event.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub index: usize,
    pub verdict: &'static str,
    pub stage: Option<Stage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub state_before: String,
}

/// The `--report` document.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub implementation: String,
    pub room_id: String,
    pub room_version: String,
    pub events: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub forward_extremities: Vec<String>,
    pub final_state_digest: String,
    pub final_state: BTreeMap<String, BTreeMap<String, String>>,
    pub verdicts: BTreeMap<String, Verdict>,
}

/// Options of a verification run.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Check content hashes and signatures with these keys.
    pub keys: Option<ServerKeys>,
    /// Skip the per-event state-before digests (only the report file shows them; computing one
    /// costs O(state) per distinct state, which dominates rooms with huge states).
    pub skip_state_digests: bool,
}

/// The judged DAG: the report plus the DAG itself (for `dag dot` and tests).
pub struct Verified {
    pub dag: RoomDag,
    pub report: Report,
    pub final_state: StateMap,
}

/// Judges PDUs (any order) and builds the report.
///
/// On a pool of more than one thread, the work that does not feed the sequential judging pass
/// runs beside it on one helper thread, and everything is merged in event order, so the result
/// does not depend on the thread count:
/// * signatures are verified (in the same batches as on the pool) while the pass runs with the
///   structural checks only (content hashes, which keys must have signed); if a signature then
///   fails, the pass is run again with that verdict (rare: the first pass is then wasted, never
///   wrong);
/// * then the helper computes the state digests of the states the pass has produced, as it
///   produces them.
pub fn verify_dag(version: &'static RoomVersion, pdus: Vec<Pdu>, options: &VerifyOptions) -> Verified {
    let mut spans = Spans::from_env();
    let ordered: Vec<Arc<Pdu>> = topological_order(pdus).into_iter().map(Arc::new).collect();
    spans.mark("topological order");
    // Every event is inserted before any is judged (insertion reads no verdicts), so that the
    // DAG's keys are all known to the digests computed during the pass.
    let mut dag = RoomDag::new(version);
    for (i, pdu) in ordered.iter().enumerate() {
        let idx = dag.insert(pdu.clone());
        debug_assert_eq!(idx as usize, i, "topological_order drops duplicates");
    }
    let digests = !options.skip_state_digests;
    let ranks = digests.then(|| KeyRanks::new(&dag));
    spans.mark("insert, key ranks");
    let (structural, checks, owners) = match &options.keys {
        Some(keys) => signature_and_hash_checks(version, &ordered, keys),
        None => (vec![None; ordered.len()], Vec::new(), Vec::new()),
    };
    spans.mark("hashes, signature checks to make");
    let helper = rayon::current_num_threads() > 1 && (!checks.is_empty() || digests);
    let (ok, pass) = if helper {
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel::<Arc<StateSnapshot>>();
            let (checks, ordered, ranks) = (&checks, &ordered, ranks.as_ref());
            let worker = scope.spawn(move || {
                let ok = crypto::verify_batch_here(checks);
                if let Some(ranks) = ranks {
                    for snapshot in rx {
                        snapshot.digest_ranked(ordered, ranks);
                    }
                }
                ok
            });
            let pass = judge_all(&mut dag, &structural, digests.then_some(&tx));
            drop(tx);
            (worker.join().expect("helper thread"), pass)
        })
    } else {
        let ok = crypto::verify_batch(&checks);
        (ok, judge_all(&mut dag, &structural, None))
    };
    spans.mark("judging pass (beside signatures, digests)");
    let mut pre_checks = structural.clone();
    for (good, owner) in ok.into_iter().zip(owners) {
        if !good && pre_checks[owner].is_none() {
            pre_checks[owner] = Some((Stage::Signature, "a required signature does not verify".into()));
        }
    }
    let pass = if pre_checks == structural { pass } else { judge_all(&mut dag, &pre_checks, None) };
    spans.mark("pass again (a signature failed)");
    if let Some(ranks) = &ranks {
        pass.before.par_iter().for_each(|s| {
            s.digest_ranked(&ordered, ranks);
        });
    }
    spans.mark("remaining digests");
    let mut verdicts = BTreeMap::new();
    for (position, before) in pass.before.iter().enumerate() {
        let idx = position as EventIdx;
        let (verdict, stage, reason) = match &dag.event(idx).status {
            Status::Accepted => ("accepted", None, None),
            Status::Rejected { stage, reason } => ("rejected", Some(*stage), Some(reason.clone())),
            Status::Pending => unreachable!("judged above"),
        };
        let state_before = match &ranks {
            Some(ranks) => before.digest_ranked(&ordered, ranks).to_owned(),
            None => String::new(),
        };
        verdicts
            .insert(dag.pdu(idx).event_id.clone(), Verdict { index: position, verdict, stage, reason, state_before });
    }
    spans.mark("verdicts");
    let extremities = dag.forward_extremities();
    let final_inputs: Vec<&StateMap> = extremities.iter().map(|e| &pass.after[*e as usize].map).collect();
    let final_state = state_res::resolve(&dag, &final_inputs);
    let report = build_report(&dag, version, &final_state, &extremities, verdicts);
    spans.mark("final state, report");
    Verified { dag, report, final_state }
}

/// Phase timings on stderr when `ROOMSIM_VERIFY_SPANS` is set (for profiling; no effect on
/// the result).
struct Spans(Option<std::time::Instant>);

impl Spans {
    fn from_env() -> Spans {
        Spans(std::env::var_os("ROOMSIM_VERIFY_SPANS").map(|_| std::time::Instant::now()))
    }
    fn mark(&mut self, what: &str) {
        if let Some(t) = &mut self.0 {
            eprintln!("[verify] {what}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            *t = std::time::Instant::now();
        }
    }
}

/// The states of the sequential pass, by event index.
struct Pass {
    before: Vec<Arc<StateSnapshot>>,
    after: Vec<Arc<StateSnapshot>>,
}

/// The sequential pass: for each event in index order, its state before (resolving the states
/// after its prev events), its verdict, its state after. Every state snapshot it makes (each
/// distinct state once) is also sent to `digests`, if given.
fn judge_all(
    dag: &mut RoomDag,
    pre_checks: &[Option<(Stage, String)>],
    digests: Option<&std::sync::mpsc::Sender<Arc<StateSnapshot>>>,
) -> Pass {
    let n = dag.len();
    let mut before_all: Vec<Arc<StateSnapshot>> = Vec::with_capacity(n);
    let mut after_all: Vec<Arc<StateSnapshot>> = Vec::with_capacity(n);
    let made = |snapshot: Arc<StateSnapshot>| {
        if let Some(tx) = digests {
            // The receiver lives until the pass is over.
            let _ = tx.send(snapshot.clone());
        }
        snapshot
    };
    for (position, pre) in pre_checks.iter().enumerate() {
        let idx = position as EventIdx;
        let before = {
            let dag: &RoomDag = dag;
            match dag.event(idx).prev.as_slice() {
                [] => made(StateSnapshot::empty()),
                [one] => after_all[*one as usize].clone(),
                many => {
                    let inputs: Vec<&StateMap> = many.iter().map(|p| &after_all[*p as usize].map).collect();
                    let resolved = state_res::resolve(dag, &inputs);
                    // A merge of branches that agree resolves to one of its inputs: share that
                    // snapshot (and its digest).
                    match many.iter().find(|p| after_all[**p as usize].map.ptr_eq(&resolved)) {
                        Some(p) => after_all[*p as usize].clone(),
                        None => made(StateSnapshot::new(resolved)),
                    }
                }
            }
        };
        let status = judge(dag, idx, &before.map, pre.clone());
        let applies = status == Status::Accepted && dag.event(idx).state_key.is_some();
        dag.set_status(idx, status);
        let after = if applies {
            let mut map = before.map.clone();
            map.insert(dag.event(idx).state_key.expect("state event"), idx);
            made(StateSnapshot::new(map))
        } else {
            before.clone()
        };
        before_all.push(before);
        after_all.push(after);
    }
    Pass { before: before_all, after: after_all }
}

/// Receipt checks 4 and 5 (and the missing-data check) for one event.
pub fn judge(dag: &RoomDag, idx: EventIdx, before: &StateMap, pre_check: Option<(Stage, String)>) -> Status {
    let ev = dag.event(idx);
    if !ev.missing.is_empty() {
        return Status::Rejected {
            stage: Stage::Missing,
            reason: format!("references events not in the DAG: {}", ev.missing.join(", ")),
        };
    }
    if let Some((stage, reason)) = pre_check {
        return Status::Rejected { stage, reason };
    }
    if let Err(r) = check_against_auth_events(dag, idx) {
        return Status::Rejected { stage: Stage::AuthEvents, reason: r.to_string() };
    }
    if ev.pdu.kind != EventKind::Create {
        let state = dag.auth_state_from(idx, before);
        if let Err(r) = auth::check_state_dependent(dag.version, &ev.pdu, &state) {
            return Status::Rejected { stage: Stage::StateBefore, reason: r.to_string() };
        }
    }
    Status::Accepted
}

/// Receipt check 4: the rules against the event's own `auth_events`.
pub fn check_against_auth_events(dag: &RoomDag, idx: EventIdx) -> auth::AuthResult {
    let ev = dag.event(idx);
    let refs: Vec<AuthEventRef> =
        ev.auth.iter().map(|a| AuthEventRef { pdu: dag.pdu(*a), rejected: dag.event(*a).is_rejected() }).collect();
    let create = dag.create().filter(|c| !dag.event(*c).is_rejected()).map(|c| dag.pdu(c));
    auth::check_auth_events_list(dag.version, &ev.pdu, &refs, create)?;
    let state = dag.auth_state_from_own_auth_events(idx);
    auth::check_state_dependent(dag.version, &ev.pdu, &state)
}

/// The structural pre-checks (content hashes; which servers must have signed, with a known key)
/// and the signature checks still to verify, each with the index of its event.
#[allow(clippy::type_complexity)]
fn signature_and_hash_checks<'a>(
    version: &RoomVersion,
    pdus: &'a [Arc<Pdu>],
    keys: &ServerKeys,
) -> (Vec<Option<(Stage, String)>>, Vec<SignatureCheck<'a>>, Vec<usize>) {
    let bytes: Vec<&[u8]> = pdus.par_iter().map(|p| p.signing_bytes(version)).collect();
    let mut checks: Vec<SignatureCheck> = Vec::new();
    let mut owners: Vec<usize> = Vec::new();
    let mut results: Vec<Option<(Stage, String)>> = pdus
        .par_iter()
        .map(|p| {
            (!p.content_hash_matches()).then(|| (Stage::Hash, "content hash does not match hashes.sha256".to_owned()))
        })
        .collect();
    for (i, p) in pdus.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let signers = match signers::required_signers(version, p) {
            Ok(list) => list,
            Err(why) => {
                results[i] = Some((Stage::Signature, why.to_string()));
                continue;
            }
        };
        for signer in signers {
            match signature_checks_for(p, signer.server, keys, bytes[i]) {
                Ok(list) => {
                    for c in list {
                        checks.push(c);
                        owners.push(i);
                    }
                }
                Err(why) => {
                    results[i] = Some((Stage::Signature, why));
                    break;
                }
            }
        }
    }
    (results, checks, owners)
}

/// The signature checks proving `server` signed the event: every `ed25519:` signature by a key
/// we know must verify, and there must be at least one.
fn signature_checks_for<'a>(
    pdu: &Pdu,
    server: &str,
    keys: &ServerKeys,
    message: &'a [u8],
) -> Result<Vec<SignatureCheck<'a>>, String> {
    let Some(known) = keys.get(server) else {
        return Err(format!("no public keys known for {server}"));
    };
    let Some(Value::Object(block)) = pdu.json.get("signatures").and_then(|s| s.get(server)) else {
        return Err(format!("not signed by {server}"));
    };
    let mut out = Vec::new();
    for key_id in block.keys().filter(|k| k.starts_with("ed25519:")) {
        let Some(key) = known.get(key_id) else { continue };
        let Some(signature) = crypto::signature_of(&pdu.json, server, key_id) else {
            return Err(format!("signature {server} {key_id} is not valid base64 of 64 bytes"));
        };
        out.push(SignatureCheck { message, signature, key: *key });
    }
    if out.is_empty() {
        return Err(format!("no signature by a known key of {server}"));
    }
    Ok(out)
}

/// The `--report` file: the report as pretty-printed JSON (two-space indent) plus a newline,
/// byte for byte what `serde_json::to_vec_pretty` writes. The verdicts (nearly all of it) are
/// serialised in parallel chunks, joined in key order.
pub fn report_json(report: &Report) -> Vec<u8> {
    /// Every field but the verdicts, which come last.
    #[derive(Serialize)]
    struct Head<'a> {
        implementation: &'a str,
        room_id: &'a str,
        room_version: &'a str,
        events: usize,
        accepted: usize,
        rejected: usize,
        forward_extremities: &'a [String],
        final_state_digest: &'a str,
        final_state: &'a BTreeMap<String, BTreeMap<String, String>>,
    }
    let head = Head {
        implementation: &report.implementation,
        room_id: &report.room_id,
        room_version: &report.room_version,
        events: report.events,
        accepted: report.accepted,
        rejected: report.rejected,
        forward_extremities: &report.forward_extremities,
        final_state_digest: &report.final_state_digest,
        final_state: &report.final_state,
    };
    let mut json = serde_json::to_vec_pretty(&head).expect("a report serialises");
    debug_assert!(json.ends_with(b"\n}"));
    json.truncate(json.len() - 2);
    if report.verdicts.is_empty() {
        json.extend_from_slice(b",\n  \"verdicts\": {}\n}\n");
        return json;
    }
    json.extend_from_slice(b",\n  \"verdicts\": {");
    let entries: Vec<(&String, &Verdict)> = report.verdicts.iter().collect();
    const CHUNK: usize = 2048;
    let chunks: Vec<Vec<u8>> = entries
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(c, chunk)| {
            let mut out = Vec::with_capacity(chunk.len() * 160);
            let mut one = Vec::with_capacity(256);
            for (i, (id, verdict)) in chunk.iter().enumerate() {
                out.extend_from_slice(if c == 0 && i == 0 { b"\n    " } else { b",\n    " });
                serde_json::to_writer(&mut out, id).expect("a string serialises");
                out.extend_from_slice(b": ");
                // The value at nesting depth 2: its own pretty form, indented by four spaces
                // (strings escape their newlines, so every raw newline is layout).
                one.clear();
                serde_json::to_writer_pretty(&mut one, verdict).expect("a verdict serialises");
                for &b in &one {
                    out.push(b);
                    if b == b'\n' {
                        out.extend_from_slice(b"    ");
                    }
                }
            }
            out
        })
        .collect();
    json.reserve(chunks.iter().map(Vec::len).sum::<usize>() + 8);
    for chunk in chunks {
        json.extend_from_slice(&chunk);
    }
    json.extend_from_slice(b"\n  }\n}\n");
    json
}

fn build_report(
    dag: &RoomDag,
    version: &RoomVersion,
    final_state: &StateMap,
    extremities: &[EventIdx],
    verdicts: BTreeMap<String, Verdict>,
) -> Report {
    let mut final_map: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (k, e) in final_state.iter() {
        let (t, s) = dag.key(*k);
        final_map.entry(t.to_owned()).or_default().insert(s.to_owned(), dag.pdu(*e).event_id.clone());
    }
    let mut fx: Vec<String> = extremities.iter().map(|e| dag.pdu(*e).event_id.clone()).collect();
    fx.sort();
    let accepted = verdicts.values().filter(|v| v.verdict == "accepted").count();
    let room_id = dag
        .events()
        .find_map(|(_, e)| e.pdu.room_id.clone())
        .or_else(|| dag.create().map(|c| format!("!{}", &dag.pdu(c).event_id[1..])))
        .unwrap_or_default();
    Report {
        implementation: format!("roomsim {}", env!("CARGO_PKG_VERSION")),
        room_id,
        room_version: version.id.to_owned(),
        events: verdicts.len(),
        accepted,
        rejected: verdicts.len() - accepted,
        forward_extremities: fx,
        final_state_digest: super::dag::state_digest(dag, final_state),
        final_state: final_map,
        verdicts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_line(version: &str) -> String {
        format!(
            r#"{{"auth_events":[],"content":{{"room_version":"{version}"}},"depth":1,"origin_server_ts":1,"prev_events":[],"sender":"@a:hs1","state_key":"","type":"m.room.create"}}"#
        )
    }

    #[test]
    fn room_version_comes_from_the_create_event_via_the_table() {
        let e = parse_lines(&create_line("13")).unwrap_err();
        assert_eq!((e.line, e.error.field.as_str()), (1, "content.room_version"));
        assert!(e.error.message.contains("supported versions are \"11\", \"12\""), "{}", e.error.message);
        let e = parse_lines(&format!("\n{}", create_line("org.matrix.msc4345.12"))).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(
            e.error
                .message
                .starts_with("room version \"org.matrix.msc4345.12\" is experimental and not implemented yet"),
            "{}",
            e.error.message
        );
    }
}
