//! `dag verify`: judge a whole room DAG given as PDU lines, as a receiving server would, and
//! produce the report (`verdicts`, states before every event, final state).
//!
//! The input is first split into one room's PDUs and the lines left out ([`parse_input`]: lines
//! of other rooms, malformed lines). Then, for every event in topological order (Kahn over prev
//! and auth edges; ties by depth, then event ID): state before = resolution of the states after
//! its prev events; verdict = the content hash, the signatures (if keys are given, or in
//! account-key rooms, MSC4243 §3, whose signatures verify with the sender's localpart and need
//! no key file; `protocol::signers` says who must sign), then the auth rules against its own
//! `auth_events`
//! (stage `auth_events`), then against the auth events selected from the state before (stage
//! `state_before`). State after = state before plus the event if it is an accepted state event.
//! Final state = resolution of the states after the forward extremities.

use super::auth::{self, AuthEventRef};
use super::crypto::{self, SignatureCheck};
use super::dag::{EventIdx, KeyRanks, RoomDag, Stage, StateMap, StateSnapshot, Status};
use super::json;
use super::pdu::{EventKind, Pdu, PduError};
use super::redaction;
use super::room_version::{self, RoomVersion};
use super::signers;
use super::state_res::{self, ReadmitRejected};
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

/// A line that is not a well-formed PDU (receipt check 1 fails): it is left out and the rest is
/// judged, as a receiving server drops such an event and goes on (Server-Server API §Checks
/// performed on receipt of a PDU, check 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidLine {
    /// 1-based line number.
    pub line: usize,
    /// The field that is wrong (`(json)` when the line is not a JSON object at all).
    pub field: String,
    pub message: String,
}

/// A line of another room: its `room_id` is not the judged room's, or (v12) it is a create event
/// whose reference hash is not the judged room's ID. Left out, never judged as this room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForeignLine {
    pub line: usize,
    /// The room the line belongs to.
    pub room_id: String,
}

/// A JSON Lines input, split into the judged room's PDUs and the lines left out.
#[derive(Debug)]
pub struct ParsedInput {
    pub version: &'static RoomVersion,
    /// The judged room: the room of a create event that the most lines name.
    pub room_id: String,
    /// The room's PDUs, each with its 1-based line number, in line order.
    pub pdus: Vec<(usize, Pdu)>,
    pub invalid: Vec<InvalidLine>,
    pub foreign: Vec<ForeignLine>,
}

impl ParsedInput {
    /// The PDUs alone, for [`verify_dag`].
    pub fn into_pdus(self) -> Vec<Pdu> {
        self.pdus.into_iter().map(|(_, p)| p).collect()
    }
}

/// Why an input cannot be judged at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The judged room's create event names a room version roomsim does not implement.
    #[error("line {}: {}", .0.line, .0.error)]
    Version(LineError),
    #[error("no m.room.create event (with empty prev_events) names a room: cannot tell which room to judge or its version{}", first_invalid(.0))]
    NoCreate(Option<InvalidLine>),
    /// Two or more rooms are named by equally many lines: `(room ID, lines, line of its create
    /// event)` of each.
    #[error("the input holds {} rooms named by equally many lines ({}): cannot tell which one to judge; split it by room_id", .0.len(), ambiguous_list(.0))]
    Ambiguous(Vec<(String, usize, usize)>),
}

fn ambiguous_list(rooms: &[(String, usize, usize)]) -> String {
    let each: Vec<String> = rooms.iter().map(|(r, n, l)| format!("{r}: {n} lines, create event on line {l}")).collect();
    each.join("; ")
}

fn first_invalid(line: &Option<InvalidLine>) -> String {
    match line {
        Some(l) => format!(" (the first malformed line: line {}: {}: {})", l.line, l.field, l.message),
        None => String::new(),
    }
}

/// One non-empty input line after the JSON parse: the object, or why it is not one.
type RawLine = (usize, Result<serde_json::Map<String, Value>, InvalidLine>);

/// Parses a JSON Lines input (one PDU per line, any order) into the PDUs of one room.
///
/// "This room" is the room of a create event (`m.room.create` with empty `prev_events`; v11: its
/// `room_id`; v12: `!` + its reference hash, since the room ID names its create event) that the
/// most lines name by `room_id` (the create event counting for its own room). Lines naming
/// another room are [`ForeignLine`]s; two candidate rooms named by equally many lines are refused
/// ([`InputError::Ambiguous`]). A line that is not a well-formed PDU of the room's version is an
/// [`InvalidLine`] (line number, field, what is wrong); the other lines are still returned.
pub fn parse_input(text: &str) -> Result<ParsedInput, InputError> {
    let lines: Vec<(usize, &str)> =
        text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty()).collect();
    let raw: Vec<RawLine> = lines.par_iter().map(|(n, l)| (*n, parse_object(*n, l))).collect();
    let rooms: Vec<Option<String>> = raw.par_iter().map(|(_, r)| r.as_ref().ok().and_then(room_of)).collect();
    let (room_id, version) = choose_room(&raw, &rooms)?;
    let mut invalid = Vec::new();
    let mut foreign = Vec::new();
    let mut mine: Vec<(usize, serde_json::Map<String, Value>)> = Vec::with_capacity(raw.len());
    for ((n, r), room) in raw.into_iter().zip(rooms) {
        match (r, room) {
            (Err(e), _) => invalid.push(e),
            (Ok(_), Some(other)) if other != room_id => foreign.push(ForeignLine { line: n, room_id: other }),
            (Ok(map), None) if is_room_create(&map) => {
                let (field, message) = why_no_room(&map);
                invalid.push(InvalidLine { line: n, field: field.into(), message });
            }
            // This room's, or naming no room (the PDU parse says what is wrong with it).
            (Ok(map), _) => mine.push((n, map)),
        }
    }
    let parsed: Vec<(usize, Result<Pdu, PduError>)> =
        mine.into_par_iter().map(|(n, map)| (n, Pdu::from_object(map, version))).collect();
    let mut pdus = Vec::with_capacity(parsed.len());
    for (n, p) in parsed {
        match p {
            Ok(p) => pdus.push((n, p)),
            Err(e) => invalid.push(InvalidLine { line: n, field: e.field, message: e.message }),
        }
    }
    invalid.sort_by_key(|l| l.line);
    Ok(ParsedInput { version, room_id, pdus, invalid, foreign })
}

/// The room version and the PDUs of an input known to be one well-formed room, each with its
/// 1-based line number (fixtures, benches).
pub type ParsedLines = (&'static RoomVersion, Vec<(usize, Pdu)>);

/// [`parse_input`] for an input that must be one well-formed room: the first malformed or
/// foreign line is an error.
pub fn parse_lines(text: &str) -> Result<ParsedLines, LineError> {
    let input = parse_input(text).map_err(|e| match e {
        InputError::Version(line) => line,
        other => LineError { line: 1, error: PduError { field: "(input)".into(), message: other.to_string() } },
    })?;
    let first_invalid = input.invalid.first().map(|l| (l.line, l.field.clone(), l.message.clone()));
    let first_foreign = input.foreign.first().map(|l| {
        (
            l.line,
            "room_id".to_owned(),
            format!("a line of room {}, not of the judged room {}", l.room_id, input.room_id),
        )
    });
    let first = [first_invalid, first_foreign].into_iter().flatten().min_by_key(|l| l.0);
    match first {
        Some((line, field, message)) => Err(LineError { line, error: PduError { field, message } }),
        None => Ok((input.version, input.pdus)),
    }
}

fn parse_object(line: usize, text: &str) -> Result<serde_json::Map<String, Value>, InvalidLine> {
    let invalid = |message: String| InvalidLine { line, field: "(json)".into(), message };
    match json::parse_strict(text.as_bytes()) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid("a PDU must be a JSON object".into())),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// Whether an object is a room's create event: `m.room.create` with empty `prev_events`.
fn is_room_create(map: &serde_json::Map<String, Value>) -> bool {
    map.get("type").and_then(Value::as_str) == Some("m.room.create")
        && map.get("prev_events").and_then(Value::as_array).is_some_and(|p| p.is_empty())
}

/// The room version a create event states (absent: `"1"`).
fn stated_version(map: &serde_json::Map<String, Value>) -> &str {
    map.get("content").and_then(|c| c.get("room_version")).and_then(Value::as_str).unwrap_or("1")
}

/// The room a line belongs to: its `room_id`; for a create event of a version whose room ID is
/// the create event's hash (v12), `!` + its reference hash (whatever `room_id` it carries).
fn room_of(map: &serde_json::Map<String, Value>) -> Option<String> {
    if map.get("type").and_then(Value::as_str) == Some("m.room.create") {
        if let Ok(version) = room_version::lookup(stated_version(map)) {
            if version.room_id_is_create_hash {
                // As `Pdu::from_object` does: a stray `event_id` is not part of the PDU.
                let bytes = if map.contains_key("event_id") {
                    let mut copy = map.clone();
                    copy.remove("event_id");
                    crypto::event_signing_bytes(&copy, version)
                } else {
                    crypto::event_signing_bytes(map, version)
                };
                let id = crypto::event_id_from_signing_bytes(&bytes);
                return Some(format!("!{}", &id[1..]));
            }
        }
    }
    map.get("room_id").and_then(Value::as_str).map(str::to_owned)
}

/// Why a create event names no room: `(field, message)`.
fn why_no_room(map: &serde_json::Map<String, Value>) -> (&'static str, String) {
    match room_version::lookup(stated_version(map)) {
        Err(e) => ("content.room_version", e.to_string()),
        Ok(v) => ("room_id", format!("missing: a create event of room version {} names its room by room_id", v.id)),
    }
}

/// The judged room and its version: the create event's room that the most lines name.
fn choose_room(raw: &[RawLine], rooms: &[Option<String>]) -> Result<(String, &'static RoomVersion), InputError> {
    // Candidate rooms, each with its first create event (line order).
    let mut creates: BTreeMap<&str, (usize, &serde_json::Map<String, Value>)> = BTreeMap::new();
    for ((n, r), room) in raw.iter().zip(rooms) {
        if let (Ok(map), Some(room)) = (r, room) {
            if is_room_create(map) {
                creates.entry(room.as_str()).or_insert((*n, map));
            }
        }
    }
    if creates.is_empty() {
        // A create event of a version roomsim does not know says so.
        for (n, r) in raw {
            if let Some(map) = r.as_ref().ok().filter(|m| is_room_create(m)) {
                if let Err(e) = room_version::lookup(stated_version(map)) {
                    let error = PduError { field: "content.room_version".into(), message: e.to_string() };
                    return Err(InputError::Version(LineError { line: *n, error }));
                }
            }
        }
        let first = raw.iter().find_map(|(_, r)| r.as_ref().err().cloned());
        return Err(InputError::NoCreate(first));
    }
    let mut lines_of: HashMap<&str, usize> = creates.keys().map(|r| (*r, 0)).collect();
    for room in rooms.iter().flatten() {
        if let Some(n) = lines_of.get_mut(room.as_str()) {
            *n += 1;
        }
    }
    let most = lines_of.values().copied().max().expect("at least one candidate");
    let top: Vec<(String, usize, usize)> = creates
        .iter()
        .filter(|(r, _)| lines_of[*r] == most)
        .map(|(r, (line, _))| ((*r).to_owned(), most, *line))
        .collect();
    if top.len() > 1 {
        return Err(InputError::Ambiguous(top));
    }
    let (room_id, _, line) = top.into_iter().next().expect("one candidate");
    let map = creates[room_id.as_str()].1;
    let version = room_version::lookup(stated_version(map)).map_err(|e| {
        InputError::Version(LineError {
            line,
            error: PduError { field: "content.room_version".into(), message: e.to_string() },
        })
    })?;
    Ok((room_id, version))
}

/// Orders PDUs topologically over their prev and auth edges (Kahn's algorithm on a petgraph
/// graph), ties broken by depth, then event ID. Duplicate event IDs keep the first copy.
pub fn topological_order(pdus: Vec<Pdu>) -> Vec<Pdu> {
    // The first copy of each event ID (IDs borrowed, not cloned).
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(pdus.len());
    let keep: Vec<bool> =
        pdus.iter().enumerate().map(|(i, p)| *first.entry(p.event_id.as_str()).or_insert(i) == i).collect();
    drop(first);
    let unique: Vec<Pdu> = pdus.into_iter().zip(keep).filter_map(|(p, k)| k.then_some(p)).collect();
    let by_id: HashMap<&str, usize> = unique.iter().enumerate().map(|(i, p)| (p.event_id.as_str(), i)).collect();
    let mut graph = petgraph::graph::DiGraph::<usize, ()>::with_capacity(unique.len(), unique.len() * 4);
    let nodes: Vec<_> = (0..unique.len()).map(|i| graph.add_node(i)).collect();
    for (i, p) in unique.iter().enumerate() {
        let mut parents: Vec<usize> =
            p.prev_events.iter().chain(&p.auth_events).filter_map(|id| by_id.get(id.as_str()).copied()).collect();
        parents.sort_unstable();
        parents.dedup();
        for parent in parents {
            graph.add_edge(nodes[parent], nodes[i], ());
        }
    }
    let mut indegree: Vec<usize> =
        nodes.iter().map(|n| graph.neighbors_directed(*n, petgraph::Incoming).count()).collect();
    let key = |i: usize| Reverse((unique[i].depth, unique[i].event_id.as_str(), i));
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
    /// The event's position (from 0) in the processing order: the topological order of
    /// [`topological_order`] (prev and auth events first; ties by depth, then event ID), in
    /// which events are judged. Not the input line order.
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
    /// `synapse` or `spec` (open question A3).
    pub readmit_rejected: &'static str,
    /// Lines that are not well-formed PDUs, left out (line order).
    pub invalid_lines: Vec<InvalidLine>,
    /// Lines of other rooms, left out (line order).
    pub foreign_lines: Vec<ForeignLine>,
    pub verdicts: BTreeMap<String, Verdict>,
}

/// The report's name of a readmission mode.
pub fn readmit_name(mode: ReadmitRejected) -> &'static str {
    match mode {
        ReadmitRejected::Synapse => "synapse",
        ReadmitRejected::Spec => "spec",
    }
}

/// Options of a verification run.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Check signatures with these keys (content hashes are checked with or without keys).
    /// Account-key signatures (MSC4243) are checked with or without keys: they need none.
    pub keys: Option<ServerKeys>,
    /// With `keys`: only check that each required signature is present, by a known key, and
    /// well-formed, without verifying it (the simulator's `signatures = "modelled"`).
    pub modelled_signatures: bool,
    /// What a content-hash mismatch does to the event.
    pub hash_mismatch: HashMismatch,
    /// Whether state resolution may readmit previously rejected events (open question A3).
    pub readmit_rejected: ReadmitRejected,
    /// Skip the per-event state-before digests (only the report file shows them; computing one
    /// costs O(state) per distinct state, which dominates rooms with huge states).
    pub skip_state_digests: bool,
}

impl Default for VerifyOptions {
    /// No keys, hash mismatches rejected, Synapse's readmission behaviour (what the simulated
    /// servers do), digests computed.
    fn default() -> VerifyOptions {
        VerifyOptions {
            keys: None,
            modelled_signatures: false,
            hash_mismatch: HashMismatch::Reject,
            readmit_rejected: ReadmitRejected::Synapse,
            skip_state_digests: false,
        }
    }
}

/// What a content-hash mismatch (Server-Server API §Checks performed on receipt of a PDU,
/// check 3) does to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashMismatch {
    /// `dag verify`'s verdict: rejected at stage `hash`, so that tampering is reported. The event
    /// keeps its event ID, the reference hash of its redacted form, which the tampering of
    /// content that redaction strips does not change.
    #[default]
    Reject,
    /// The spec's receipt step (what a simulated server does): the event goes on as its redacted
    /// copy, judged by the auth rules like any other.
    Redact,
}

/// The judged DAG: the report plus the DAG itself (for `dag dot` and tests).
pub struct Verified {
    pub dag: RoomDag,
    pub report: Report,
    pub final_state: StateMap,
    /// The state before every event (its prev events' states after, resolved), by event index.
    pub states_before: Vec<Arc<StateSnapshot>>,
    /// The state after every event, by event index.
    pub states_after: Vec<Arc<StateSnapshot>>,
    pub readmit_rejected: ReadmitRejected,
    /// How many wavefronts of the judging pass were judged in parallel (0 on one thread); see
    /// [`judge_all`].
    pub parallel_wavefronts: usize,
}

impl Verified {
    /// The resolution of the states after `tips` (the state of an observer whose forward
    /// extremities these are), with the run's readmission mode.
    pub fn resolve_after(&self, tips: &[EventIdx]) -> StateMap {
        let inputs: Vec<&StateMap> = tips.iter().map(|t| &self.states_after[*t as usize].map).collect();
        state_res::resolve_with(&self.dag, &inputs, self.readmit_rejected)
    }
}

/// Judges PDUs (any order) and builds the report.
///
/// On a pool of more than one thread the judging pass takes wavefronts in parallel
/// ([`judge_all`]), signatures are verified beside it in the same pool while it runs with the
/// structural checks only (content hashes, which keys must have signed) — if a signature then
/// fails, the pass is run again with that verdict (rare: the first pass is then wasted, never
/// wrong) — and the state digests are made in parallel afterwards. Everything is merged in event
/// order, so the result does not depend on the thread count.
pub fn verify_dag(version: &'static RoomVersion, pdus: Vec<Pdu>, options: &VerifyOptions) -> Verified {
    let mut spans = Spans::from_env();
    let mut ordered: Vec<Pdu> = topological_order(pdus);
    spans.mark("topological order");
    // Receipt check 3, with or without keys: the content hash.
    let hash_ok: Vec<bool> = ordered.par_iter().map(Pdu::content_hash_matches).collect();
    let mut structural: Vec<Option<(Stage, String)>> = vec![None; ordered.len()];
    for (i, ok) in hash_ok.iter().enumerate() {
        if *ok {
            continue;
        }
        let reason = match options.hash_mismatch {
            HashMismatch::Reject => HASH_MISMATCH.to_owned(),
            HashMismatch::Redact => match redacted_copy(&ordered[i], version) {
                Ok(copy) => {
                    ordered[i] = copy;
                    continue;
                }
                Err(e) => format!("{HASH_MISMATCH}, and its redacted copy is not a valid PDU: {e}"),
            },
        };
        structural[i] = Some((Stage::Hash, reason));
    }
    let ordered: Vec<Arc<Pdu>> = ordered.into_iter().map(Arc::new).collect();
    // Every event is inserted before any is judged (insertion reads no verdicts), so that the
    // DAG's keys are all known to the digests computed during the pass.
    let mut dag = RoomDag::new(version);
    for (i, pdu) in ordered.iter().enumerate() {
        let idx = dag.insert(pdu.clone());
        debug_assert_eq!(idx as usize, i, "topological_order drops duplicates");
    }
    let digests = !options.skip_state_digests;
    let ranks = digests.then(|| KeyRanks::new(&dag));
    spans.mark("hashes, insert, key ranks");
    // Signatures are checked when keys are given, and always in account-key rooms (MSC4243 §3:
    // the key is the sender's localpart, so no key file is needed) and participation rooms
    // (MSC4345 §2, MSC4348 §2: every signer is its own public key).
    let no_keys = ServerKeys::new();
    let keyed = version.account_keys || version.participation;
    let (checks, owners) = match (&options.keys, keyed) {
        (Some(keys), _) => signature_checks(version, &ordered, keys, &mut structural),
        (None, true) => signature_checks(version, &ordered, &no_keys, &mut structural),
        (None, false) => (Vec::new(), Vec::new()),
    };
    // Modelled signatures: present, by a known key and well-formed (checked above), not verified.
    let (checks, owners) = if options.modelled_signatures { (Vec::new(), Vec::new()) } else { (checks, owners) };
    spans.mark("hashes, signature checks to make");
    let readmit = options.readmit_rejected;
    // On more than one thread the signatures are verified beside the judging pass in the same
    // pool (work stealing shares the cores between their chunks and the pass's wavefronts);
    // the state digests are made afterwards, in parallel.
    let (ok, pass) = if rayon::current_num_threads() > 1 {
        rayon::join(|| crypto::verify_batch(&checks), || judge_all(&mut dag, &structural, readmit))
    } else {
        let ok = crypto::verify_batch(&checks);
        (ok, judge_all(&mut dag, &structural, readmit))
    };
    spans.mark("judging pass (beside signatures)");
    let mut pre_checks = structural.clone();
    for (good, owner) in ok.into_iter().zip(owners) {
        if !good && pre_checks[owner].is_none() {
            pre_checks[owner] = Some((Stage::Signature, "a required signature does not verify".into()));
        }
    }
    let pass = if pre_checks == structural { pass } else { judge_all(&mut dag, &pre_checks, readmit) };
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
    let final_state = state_res::resolve_with(&dag, &final_inputs, readmit);
    let report = build_report(&dag, version, &final_state, &extremities, verdicts, readmit);
    spans.mark("final state, report");
    Verified {
        dag,
        report,
        final_state,
        states_before: pass.before,
        states_after: pass.after,
        readmit_rejected: readmit,
        parallel_wavefronts: pass.parallel_wavefronts,
    }
}

/// [`verify_dag`] over a parsed input; the report also lists the lines left out.
pub fn verify_input(input: ParsedInput, options: &VerifyOptions) -> Verified {
    let (version, invalid, foreign) = (input.version, input.invalid.clone(), input.foreign.clone());
    let mut verified = verify_dag(version, input.into_pdus(), options);
    verified.report.invalid_lines = invalid;
    verified.report.foreign_lines = foreign;
    verified
}

/// The reason of a stage-`hash` rejection.
const HASH_MISMATCH: &str = "content hash does not match hashes.sha256 (the content was changed after it was hashed)";

/// The copy a receiver goes on with after a content-hash mismatch (Server-Server API §Checks
/// performed on receipt of a PDU, check 3): the event redacted. Same event ID, same signatures.
fn redacted_copy(pdu: &Pdu, version: &'static RoomVersion) -> Result<Pdu, PduError> {
    let copy = Pdu::from_object(redaction::redact(&pdu.json, version), version)?;
    debug_assert_eq!(copy.event_id, pdu.event_id, "redaction keeps the reference hash");
    Ok(copy)
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
    parallel_wavefronts: usize,
}

/// The judging pass: for each event, its state before (resolving the states after its prev
/// events), its verdict, its state after.
///
/// An event's judgement reads only its ancestors over prev and auth edges (its state before is
/// made of their states after; state resolution walks their auth chains; the auth rules read
/// its auth events). So on more than one thread the events are taken in *wavefronts*: wavefront
/// `w` holds the events whose longest path from a root over those edges has length `w`; none
/// is an ancestor of another, so a wavefront's events are judged in parallel against the
/// verdicts of the wavefronts before it, and their verdicts are stored afterwards in index
/// order. The result is the same as the sequential pass in index order (tested on 1 and 2
/// threads).
fn judge_all(dag: &mut RoomDag, pre_checks: &[Option<(Stage, String)>], readmit: ReadmitRejected) -> Pass {
    let n = dag.len();
    let empty = StateSnapshot::empty();
    let mut before_all: Vec<Arc<StateSnapshot>> = vec![empty.clone(); n];
    let mut after_all: Vec<Arc<StateSnapshot>> = vec![empty; n];
    // One event's judgement, from the verdicts and states of its ancestors.
    let judge_one = |dag: &RoomDag, after_all: &[Arc<StateSnapshot>], idx: EventIdx| -> Judged {
        let before = match dag.event(idx).prev.as_slice() {
            [] => StateSnapshot::empty(),
            [one] => after_all[*one as usize].clone(),
            many => {
                let inputs: Vec<&StateMap> = many.iter().map(|p| &after_all[*p as usize].map).collect();
                let resolved = state_res::resolve_with(dag, &inputs, readmit);
                // A merge of branches that agree resolves to one of its inputs: share that
                // snapshot (and its digest).
                match many.iter().find(|p| after_all[**p as usize].map.ptr_eq(&resolved)) {
                    Some(p) => after_all[*p as usize].clone(),
                    None => StateSnapshot::new(resolved),
                }
            }
        };
        let status = judge(dag, idx, &before.map, pre_checks[idx as usize].clone());
        let after = match dag.event(idx).state_key {
            Some(key) if status == Status::Accepted => {
                let mut map = before.map.clone();
                map.insert(key, idx);
                StateSnapshot::new(map)
            }
            _ => before.clone(),
        };
        (before, status, after)
    };
    fn store(
        dag: &mut RoomDag,
        all: (&mut [Arc<StateSnapshot>], &mut [Arc<StateSnapshot>]),
        idx: EventIdx,
        judged: Judged,
    ) {
        let (before, status, after) = judged;
        dag.set_status(idx, status);
        all.0[idx as usize] = before;
        all.1[idx as usize] = after;
    }
    let mut parallel_wavefronts = 0;
    if rayon::current_num_threads() == 1 {
        for idx in 0..n as EventIdx {
            let judged = judge_one(dag, &after_all, idx);
            store(dag, (&mut before_all, &mut after_all), idx, judged);
        }
    } else {
        for front in wavefronts(dag) {
            // Only merges (state resolutions) are worth sharing out.
            let merges = front.iter().filter(|i| dag.event(**i).prev.len() > 1).count();
            let judged: Vec<_> = if merges > 1 {
                parallel_wavefronts += 1;
                let (dag, after_all) = (&*dag, &after_all);
                front.par_iter().with_max_len(1).map(|i| judge_one(dag, after_all, *i)).collect()
            } else {
                front.iter().map(|i| judge_one(dag, &after_all, *i)).collect()
            };
            for (idx, j) in front.into_iter().zip(judged) {
                store(dag, (&mut before_all, &mut after_all), idx, j);
            }
        }
    }
    Pass { before: before_all, after: after_all, parallel_wavefronts }
}

/// One event's state before, verdict and state after.
type Judged = (Arc<StateSnapshot>, Status, Arc<StateSnapshot>);

/// The events by wavefront (see [`judge_all`]): the length of each event's longest path from a
/// root over prev and auth edges, events of one wavefront in index order. Edges always point to
/// lower indices (the topological order), so one pass in index order computes every length.
fn wavefronts(dag: &RoomDag) -> Vec<Vec<EventIdx>> {
    let mut level: Vec<u32> = Vec::with_capacity(dag.len());
    let mut fronts: Vec<Vec<EventIdx>> = Vec::new();
    for (idx, ev) in dag.events() {
        let l = ev.prev.iter().chain(&ev.auth).map(|p| level[*p as usize] + 1).max().unwrap_or(0);
        level.push(l);
        if fronts.len() <= l as usize {
            fronts.resize_with(l as usize + 1, Vec::new);
        }
        fronts[l as usize].push(idx);
    }
    fronts
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

/// [`judge`] for an event whose state before comes from elsewhere than its prev events in the
/// DAG (a joined room's state from `send_join`, a gap bridged with `/state_ids`, Server-Server
/// API §Retrieving events): its prev events need not be held, its auth events must be.
pub fn judge_with_state(dag: &RoomDag, idx: EventIdx, before: &StateMap) -> Status {
    if let Some(status) = missing_auth_events(dag, idx) {
        return status;
    }
    if let Err(r) = check_against_auth_events(dag, idx) {
        return Status::Rejected { stage: Stage::AuthEvents, reason: r.to_string() };
    }
    let ev = dag.event(idx);
    if ev.pdu.kind != EventKind::Create {
        let state = dag.auth_state_from(idx, before);
        if let Err(r) = auth::check_state_dependent(dag.version, &ev.pdu, &state) {
            return Status::Rejected { stage: Stage::StateBefore, reason: r.to_string() };
        }
    }
    Status::Accepted
}

/// An outlier's judgement (an event held for its place in a state or an auth chain, with no
/// state of its own): only the rules that need nothing but the event's own auth events, receipt
/// check 4. Check 5 (the state before it) needs its prev events, which an outlier lacks.
pub fn judge_outlier(dag: &RoomDag, idx: EventIdx) -> Status {
    if let Some(status) = missing_auth_events(dag, idx) {
        return status;
    }
    match check_against_auth_events(dag, idx) {
        Ok(()) => Status::Accepted,
        Err(r) => Status::Rejected { stage: Stage::AuthEvents, reason: r.to_string() },
    }
}

fn missing_auth_events(dag: &RoomDag, idx: EventIdx) -> Option<Status> {
    let missing: Vec<&str> = dag.pdu(idx).auth_events.iter().filter(|a| !dag.contains(a)).map(String::as_str).collect();
    (!missing.is_empty()).then(|| Status::Rejected {
        stage: Stage::Missing,
        reason: format!("references auth events not in the DAG: {}", missing.join(", ")),
    })
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

/// The signature checks still to verify, each with the index of its event, for every event
/// without a pre-check result yet; an event that lacks a required signature by a known key gets
/// its stage-`signature` result in `results`.
fn signature_checks<'a>(
    version: &RoomVersion,
    pdus: &'a [Arc<Pdu>],
    keys: &ServerKeys,
    results: &mut [Option<(Stage, String)>],
) -> (Vec<SignatureCheck<'a>>, Vec<usize>) {
    // Per event, in parallel: the checks to make and, if a required signature cannot be
    // checked, why (the checks found before it are kept, as a sequential walk would keep them).
    let done: &[Option<(Stage, String)>] = results;
    let per_event: Vec<Option<(Vec<SignatureCheck<'a>>, Option<String>)>> = pdus
        .par_iter()
        .enumerate()
        .map(|(i, p)| done[i].is_none().then(|| event_signature_checks(version, p, keys, p.signing_bytes(version))))
        .collect();
    let mut checks: Vec<SignatureCheck> = Vec::new();
    let mut owners: Vec<usize> = Vec::new();
    for (i, found) in per_event.into_iter().enumerate() {
        let Some((list, failure)) = found else { continue };
        owners.extend(std::iter::repeat_n(i, list.len()));
        checks.extend(list);
        if let Some(why) = failure {
            results[i] = Some((Stage::Signature, why));
        }
    }
    (checks, owners)
}

/// One event's signature checks (every required signer's, `protocol::signers`), and the reason
/// the first signer that cannot be checked fails, if one cannot.
fn event_signature_checks<'a>(
    version: &RoomVersion,
    p: &Pdu,
    keys: &ServerKeys,
    bytes: &'a [u8],
) -> (Vec<SignatureCheck<'a>>, Option<String>) {
    let mut checks = Vec::new();
    let signers = match signers::required_signers(version, p) {
        Ok(list) => list,
        Err(why) => return (checks, Some(why.to_string())),
    };
    for required in signers {
        let checks_for = match required.signer {
            signers::Signer::Server(server) => signature_checks_for(p, server, keys, bytes),
            signers::Signer::AccountKey(key) | signers::Signer::ServerKey(key) => {
                signers::account_key_signature(p, key)
                    .map(|(key, signature)| vec![SignatureCheck { message: bytes, signature, key }])
                    .map_err(|why| format!("{why} ({})", required.reason.as_str()))
            }
        };
        match checks_for {
            Ok(list) => checks.extend(list),
            Err(why) => return (checks, Some(why)),
        }
    }
    (checks, None)
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
        readmit_rejected: &'a str,
        invalid_lines: &'a [InvalidLine],
        foreign_lines: &'a [ForeignLine],
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
        readmit_rejected: report.readmit_rejected,
        invalid_lines: &report.invalid_lines,
        foreign_lines: &report.foreign_lines,
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
    readmit: ReadmitRejected,
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
        readmit_rejected: readmit_name(readmit),
        invalid_lines: Vec::new(),
        foreign_lines: Vec::new(),
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
        let version_error = |text: &str| match parse_input(text) {
            Err(InputError::Version(e)) => e,
            other => panic!("expected a version error, got {other:?}"),
        };
        let e = version_error(&create_line("13"));
        assert_eq!((e.line, e.error.field.as_str()), (1, "content.room_version"));
        assert!(e.error.message.contains("supported versions are \"11\", \"12\""), "{}", e.error.message);
        // An experimental version the table implements is taken from the create event: its
        // user-ID grammar then applies (MSC4345: the server part is a server key).
        let shown = format!("{:?}", parse_input(&format!("\n{}", create_line("org.matrix.msc4345.12"))));
        assert!(!shown.contains("Version("), "{shown}");
        assert!(shown.contains("sender") && shown.contains("MSC4345"), "{shown}");
    }

    use crate::protocol::room_version::{V11, V12};
    use crate::protocol::test_support::{Ev, RoomBuilder};
    use serde_json::json;

    const ALICE: &str = "@alice:hs1";

    /// A small room: create, join, a message; its lines (canonical JSON).
    fn room(version: &'static RoomVersion) -> (RoomBuilder, Vec<String>) {
        let mut r = RoomBuilder::new(version);
        r.add("CREATE", Ev::create(ALICE).ts(1));
        r.add("MA", Ev::join(ALICE).ts(2));
        r.add("MSG", Ev::message(ALICE, "hello").ts(3));
        let lines = ["CREATE", "MA", "MSG"]
            .iter()
            .map(|n| String::from_utf8(r.pdu(n).canonical_bytes()).expect("UTF-8"))
            .collect();
        (r, lines)
    }

    #[test]
    fn a_v12_create_event_claiming_the_rooms_id_is_foreign() {
        // MSC4291: the room ID names exactly one create event, its reference hash; another
        // create event (here a forged one, depth 0, carrying the room's ID) is another room's.
        let (r, mut lines) = room(&V12);
        let forged = r.build(Ev::create(ALICE).ts(0).set("room_id", json!(r.room_id())).set("depth", json!(0)));
        lines.insert(0, String::from_utf8(forged.canonical_bytes()).unwrap());
        let input = parse_input(&lines.join("\n")).expect("one room");
        assert_eq!(input.room_id, r.room_id());
        assert_eq!(input.foreign, vec![ForeignLine { line: 1, room_id: format!("!{}", &forged.event_id[1..]) }]);
        let verified = verify_input(input, &VerifyOptions::default());
        assert_eq!((verified.report.accepted, verified.report.rejected), (3, 0));
    }

    #[test]
    fn hash_mismatch_rejects_or_goes_on_with_the_redacted_copy() {
        for version in [&V11, &V12] {
            let (r, mut lines) = room(version);
            let mut tampered: serde_json::Value = serde_json::from_str(&lines[2]).unwrap();
            tampered["content"]["body"] = json!("changed");
            lines[2] = tampered.to_string();
            let id = r.id("MSG");
            let judge = |hash_mismatch| {
                let input = parse_input(&lines.join("\n")).expect("one room");
                let options = VerifyOptions { keys: Some(r.server_keys()), hash_mismatch, ..Default::default() };
                verify_input(input, &options)
            };
            let rejected = judge(HashMismatch::Reject);
            let v = &rejected.report.verdicts[&id];
            assert_eq!((v.verdict, v.stage), ("rejected", Some(Stage::Hash)), "the same event ID");
            assert!(v.reason.as_deref().unwrap().starts_with("content hash does not match"));
            let redacted = judge(HashMismatch::Redact);
            assert_eq!(redacted.report.verdicts[&id].verdict, "accepted");
            let idx = redacted.dag.index_of(&id).unwrap();
            assert_eq!(redacted.dag.pdu(idx).json["content"], json!({}), "judged as its redacted copy");
        }
    }

    /// Three branches from one point, merged pairwise (two merges in one wavefront), four times
    /// over, with a rejected power-levels change on one branch: the pass on two threads takes
    /// wavefronts in parallel and gives the verdicts and states of the sequential pass.
    #[test]
    fn wavefronts_on_two_threads_give_the_sequential_pass() {
        const BOB: &str = "@bob:hs2";
        let mut r = RoomBuilder::new(&V12);
        let mut pdus: Vec<Pdu> = vec![
            r.add("CREATE", Ev::create(ALICE).ts(1)),
            r.add("MA", Ev::join(ALICE).ts(2)),
            r.add("PL", Ev::power_levels(ALICE, json!({"state_default": 50, "events": {"m.room.topic": 0}})).ts(3)),
            r.add("JR", Ev::join_rules(ALICE, "public").ts(4)),
            r.add("MB", Ev::join(BOB).ts(5)),
        ];
        let mut base = "MB".to_owned();
        let mut ts = 10;
        for k in 0..4 {
            let mut t = |name: String, ev: Ev| {
                ts += 1;
                pdus.push(r.add_unchecked(&name, ev.ts(ts)));
                name
            };
            let a = t(format!("A{k}"), Ev::topic(ALICE, &format!("a{k}")).prev(&[&base]));
            let b = t(format!("B{k}"), Ev::topic(BOB, &format!("b{k}")).prev(&[&base]));
            let c = t(format!("C{k}"), Ev::power_levels(BOB, json!({"users": {BOB: 100}})).prev(&[&base]));
            let ab = t(format!("AB{k}"), Ev::message(ALICE, "ab").prev(&[&a, &b]));
            let bc = t(format!("BC{k}"), Ev::message(BOB, "bc").prev(&[&b, &c]));
            base = t(format!("M{k}"), Ev::topic(ALICE, &format!("m{k}")).prev(&[&ab, &bc]));
        }
        let options = VerifyOptions { keys: Some(r.server_keys()), ..Default::default() };
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
            pool.install(|| verify_dag(&V12, pdus.clone(), &options))
        };
        let (one, two) = (on(1), on(2));
        assert_eq!(one.parallel_wavefronts, 0);
        assert_eq!(two.parallel_wavefronts, 4, "each AB/BC pair is one wavefront of two merges");
        assert_eq!(one.report.rejected, 4, "bob's power-levels changes");
        assert_eq!(report_json(&one.report), report_json(&two.report));
        for i in 0..one.dag.len() {
            assert_eq!(one.states_before[i].map, two.states_before[i].map, "state before event {i}");
            assert_eq!(one.states_after[i].map, two.states_after[i].map, "state after event {i}");
        }
    }
}
