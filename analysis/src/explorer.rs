//! The run explorer: one self-contained `explorer.html` per room DAG. The layout (layers and
//! the order within each layer) is computed here and shipped as data, with the events, their
//! PDUs, every server's decision on them, the state before every event, each server's forward
//! extremities and current state over time, the faults and client actions; the page (inline
//! script and style, `assets/explorer/`) only draws it on a canvas. Nothing is fetched from the
//! network.
//!
//! Two sources: a run directory (`rooms/<room>.pdus.jsonl`, `keys.json`, `summary.json` and the
//! log's `decision`, `fault` and `action` records; [`write_run_explorers`] writes
//! `explorer/<room>.html`), or any DAG file judged by `dag verify` (the CLI builds an
//! [`ExplorerInput`] with [`Judgement`]s and calls [`render_explorer_with`]).
//!
//! States are `dag verify`'s (the state before each event) and the engine's state resolution
//! over a server's forward extremities (its current state), which [`servers`] rebuilds from
//! the decisions; [`state`] interns and delta-encodes them.

pub mod runlog;
pub mod servers;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roomsim_engine::protocol::dag::Status;
use roomsim_engine::protocol::pdu::Pdu;
use roomsim_engine::protocol::room_version::RoomVersion;
use roomsim_engine::protocol::verify::{self, HashMismatch, ServerKeys, Verified, VerifyOptions};
use serde::Serialize;
use serde_json::{json, Value};

pub use runlog::{read_run_log, ActionMark, Decision, FaultMark, RunLog};

use crate::error::{format_error, read_text, write_file};
use crate::fmt::{esc, natural_cmp};
use crate::AnalysisError;

const SCRIPT: &str = include_str!("../assets/explorer/explorer.js");
const STYLE: &str = include_str!("../assets/explorer/explorer.css");

/// Rounds of barycentric sweeps (down then up) of [`layout`].
const SWEEPS: usize = 4;

/// A layered drawing of a DAG: `layer[i]` and `pos[i]` (0-based position within the layer) of
/// event `i`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub layer: Vec<u32>,
    pub pos: Vec<u32>,
    /// Events per layer.
    pub widths: Vec<u32>,
}

/// Lays out a DAG given, per event, the indices of its parents (prev events; indices outside
/// `0..parents.len()` and self-references are ignored). The layer of an event is 1 + the
/// largest layer of its parents (0 without parents), so every parent is on a layer above its
/// child. Events on a cycle (not a DAG: only malformed input) go on one layer below the rest.
/// Within a layer, events start in index order and are reordered by [`SWEEPS`] rounds of the
/// barycentric heuristic (mean position of parents, then of children; ties keep the previous
/// order). Deterministic: the result depends only on `parents`.
pub fn layout(parents: &[Vec<usize>]) -> Layout {
    let n = parents.len();
    let parents: Vec<Vec<usize>> = parents
        .iter()
        .enumerate()
        .map(|(i, ps)| {
            let mut ps: Vec<usize> = ps.iter().copied().filter(|&p| p < n && p != i).collect();
            ps.sort_unstable();
            ps.dedup();
            ps
        })
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, ps) in parents.iter().enumerate() {
        for &p in ps {
            children[p].push(i);
        }
    }
    // Longest path from a root, in Kahn's order.
    let mut missing: Vec<usize> = parents.iter().map(Vec::len).collect();
    let mut layer: Vec<Option<u32>> = vec![None; n];
    let mut queue: std::collections::VecDeque<usize> = (0..n).filter(|&i| missing[i] == 0).collect();
    while let Some(i) = queue.pop_front() {
        let l = parents[i].iter().filter_map(|&p| layer[p]).map(|l| l + 1).max().unwrap_or(0);
        layer[i] = Some(l);
        for &c in &children[i] {
            missing[c] -= 1;
            if missing[c] == 0 {
                queue.push_back(c);
            }
        }
    }
    let placed_max = layer.iter().flatten().copied().max();
    let cycle_layer = placed_max.map_or(0, |m| m + 1);
    let layer: Vec<u32> = layer.into_iter().map(|l| l.unwrap_or(cycle_layer)).collect();
    let layers = layer.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (i, &l) in layer.iter().enumerate() {
        rows[l as usize].push(i);
    }
    // Centred coordinate of each event: position minus half the layer's width, so that layers
    // of different widths line up on their middles.
    let mut x = vec![0f64; n];
    let place = |rows: &[Vec<usize>], x: &mut [f64], l: usize| {
        let half = (rows[l].len() as f64 - 1.0) / 2.0;
        for (p, &i) in rows[l].iter().enumerate() {
            x[i] = p as f64 - half;
        }
    };
    for l in 0..layers {
        place(&rows, &mut x, l);
    }
    let reorder = |rows: &mut [Vec<usize>], x: &mut [f64], l: usize, neighbours: &[Vec<usize>]| {
        let keyed: Vec<(f64, usize, usize)> = rows[l]
            .iter()
            .enumerate()
            .map(|(p, &i)| {
                let ns = &neighbours[i];
                let key = if ns.is_empty() { x[i] } else { ns.iter().map(|&j| x[j]).sum::<f64>() / ns.len() as f64 };
                (key, p, i)
            })
            .collect();
        let mut keyed = keyed;
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        rows[l] = keyed.into_iter().map(|(_, _, i)| i).collect();
        place(rows, x, l);
    };
    for _ in 0..SWEEPS {
        for l in 1..layers {
            reorder(&mut rows, &mut x, l, &parents);
        }
        for l in (0..layers.saturating_sub(1)).rev() {
            reorder(&mut rows, &mut x, l, &children);
        }
    }
    let mut pos = vec![0u32; n];
    for row in &rows {
        for (p, &i) in row.iter().enumerate() {
            pos[i] = p as u32;
        }
    }
    Layout { layer, pos, widths: rows.iter().map(|r| r.len() as u32).collect() }
}

/// `dag verify`'s verdict on one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Judgement {
    pub verdict: String,
    pub stage: Option<String>,
    pub reason: Option<String>,
}

/// What the explorer of one room shows.
#[derive(Clone, Debug, Default)]
pub struct ExplorerInput {
    pub title: String,
    /// One line under the title (where the data came from).
    pub subtitle: String,
    pub room_id: String,
    pub room_version: String,
    pub pdus: Vec<Arc<Pdu>>,
    /// `dag verify`'s verdicts, by event ID (empty for a run).
    pub judged: BTreeMap<String, Judgement>,
    /// The room's forward extremities, when known (else: events without a non-rejected child).
    pub forward_extremities: Option<Vec<String>>,
    /// Every server's decisions on the room's events, in log order.
    pub decisions: Vec<Decision>,
    pub faults: Vec<FaultMark>,
    /// What each fault is (`summary.json`'s description: a partition's sides), by fault number.
    pub fault_text: BTreeMap<u64, String>,
    /// The client actions of the room servers handled, in log order.
    pub actions: Vec<ActionMark>,
    /// The room's divergence episodes (`summary.json`): start and end (`None`: until the end).
    pub episodes: Vec<(u64, Option<u64>)>,
    /// When the servers agreed for good (`summary.json`'s `agreement_reached_ms`).
    pub agreed_us: Option<u64>,
    /// Signature keys to judge the DAG with (a run's `keys.json`).
    pub keys: Option<ServerKeys>,
    /// End of the time axis (default: the last decision).
    pub t_end_us: Option<u64>,
    /// A link back (the run's report), relative to the page.
    pub back_link: Option<(String, String)>,
}

/// Points of a room at which servers' current states are computed, at most: past it they are
/// sampled (every n-th change of each server's extremities, and its last one), and the page
/// says so.
pub const MAX_STATE_POINTS: usize = 500_000;

/// Client actions other than the scenario's timeline shown on the time axis, at most (messages
/// are never shown; the page counts what is left out).
pub const MAX_ACTION_MARKS: usize = 2_000;

/// Colour class of an event: what some server or `dag verify` made of it.
fn verdict_class(judged: Option<&Judgement>, decisions: &[&Decision]) -> &'static str {
    if let Some(j) = judged {
        return if j.verdict == "accepted" { "accepted" } else { "rejected" };
    }
    let has = |d: &str| decisions.iter().any(|x| x.decision == d);
    if has("rejected") {
        "rejected"
    } else if has("soft_failed") {
        "soft_failed"
    } else if has("accepted") {
        "accepted"
    } else if has("outlier") {
        "outlier"
    } else if decisions.is_empty() {
        "unknown"
    } else {
        "dropped"
    }
}

/// Strings interned in first-use order.
#[derive(Default)]
struct Interner {
    list: Vec<String>,
    index: HashMap<String, usize>,
}

impl Interner {
    fn get(&mut self, s: &str) -> usize {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        self.list.push(s.to_owned());
        self.index.insert(s.to_owned(), self.list.len() - 1);
        self.list.len() - 1
    }
    fn opt(&mut self, s: Option<&str>) -> i64 {
        s.map_or(-1, |s| self.get(s) as i64)
    }
}

/// The DAG judged as the run's servers judge it (with the given keys, a content-hash mismatch
/// going on as the redacted copy, Synapse's readmission): what the state before each event
/// and the servers' current states are computed from.
pub fn reference_judgement(input: &ExplorerInput) -> Verified {
    let version = RoomVersion::by_id(&input.room_version).unwrap_or(&roomsim_engine::protocol::room_version::V11);
    let options = VerifyOptions {
        keys: input.keys.clone(),
        hash_mismatch: HashMismatch::Redact,
        skip_state_digests: true,
        ..Default::default()
    };
    verify::verify_dag(version, input.pdus.iter().map(|p| (**p).clone()).collect(), &options)
}

/// The page's data (see [`explorer_data_with`]), judging the DAG with [`reference_judgement`].
pub fn explorer_data(input: &ExplorerInput) -> Value {
    explorer_data_with(input, &reference_judgement(input))
}

/// The page's data, with the states of `verified` (a judgement of the same PDUs). Events come
/// in a deterministic order (depth, then event ID) and are shipped as columns with interned
/// strings; states are delta-encoded ([`state::StateTable`]). See `assets/explorer/explorer.js`
/// for how the page reads it, and `docs/explorer.md`.
pub fn explorer_data_with(input: &ExplorerInput, verified: &Verified) -> Value {
    let mut pdus: Vec<&Arc<Pdu>> = input.pdus.iter().collect();
    pdus.sort_by(|a, b| a.depth.cmp(&b.depth).then_with(|| a.event_id.cmp(&b.event_id)));
    pdus.dedup_by(|a, b| a.event_id == b.event_id);
    let n = pdus.len();
    let index: HashMap<&str, usize> = pdus.iter().enumerate().map(|(i, p)| (p.event_id.as_str(), i)).collect();
    let refs = |ids: &[String]| -> Vec<usize> { ids.iter().filter_map(|id| index.get(id.as_str()).copied()).collect() };
    let parents: Vec<Vec<usize>> = pdus.iter().map(|p| refs(&p.prev_events)).collect();
    let auths: Vec<Vec<usize>> = pdus.iter().map(|p| refs(&p.auth_events)).collect();
    let lay = layout(&parents);

    let mut servers: Vec<String> = input.decisions.iter().map(|d| d.server.clone()).collect();
    servers.sort_by(|a, b| natural_cmp(a, b));
    servers.dedup();
    let server_index: HashMap<&str, usize> = servers.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let mut by_event: Vec<Vec<&Decision>> = vec![Vec::new(); n];
    for d in &input.decisions {
        if let Some(&i) = index.get(d.event.as_str()) {
            by_event[i].push(d);
        }
    }
    let classes: Vec<&str> =
        pdus.iter().enumerate().map(|(i, p)| verdict_class(input.judged.get(&p.event_id), &by_event[i])).collect();
    let forward: Vec<usize> = match &input.forward_extremities {
        Some(ids) => {
            let mut f = refs(ids);
            f.sort_unstable();
            f
        }
        None => {
            let mut has_child = vec![false; n];
            for (i, ps) in parents.iter().enumerate() {
                if classes[i] != "rejected" {
                    for &p in ps {
                        has_child[p] = true;
                    }
                }
            }
            (0..n).filter(|&i| !has_child[i] && classes[i] != "rejected").collect()
        }
    };

    // Columns of the events, strings interned.
    let (mut types, mut senders, mut class_names) = (Interner::default(), Interner::default(), Interner::default());
    let mut keys = Interner::default();
    let mut key_list: Vec<(String, String)> = Vec::new();
    let mut ty = Vec::with_capacity(n);
    let mut snd = Vec::with_capacity(n);
    let mut key = Vec::with_capacity(n);
    for p in &pdus {
        ty.push(types.get(&p.event_type));
        snd.push(senders.get(&p.sender));
        key.push(match &p.state_key {
            Some(sk) => {
                let joined = format!("{}\u{0}{sk}", p.event_type);
                let k = keys.get(&joined);
                if k == key_list.len() {
                    key_list.push((p.event_type.clone(), sk.clone()));
                }
                k as i64
            }
            None => -1,
        });
    }
    let v: Vec<usize> = classes.iter().map(|c| class_names.get(c)).collect();
    // Each PDU without what the columns already say (the page puts it back).
    let rest: Vec<Value> = pdus
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ids = |list: &[usize]| -> Value { list.iter().map(|&j| json!(pdus[j].event_id)).collect() };
            let derived: [(&str, Value); 7] = [
                ("type", json!(p.event_type)),
                ("sender", json!(p.sender)),
                ("state_key", json!(p.state_key)),
                ("room_id", json!(input.room_id)),
                ("depth", json!(p.depth)),
                ("prev_events", ids(&parents[i])),
                ("auth_events", ids(&auths[i])),
            ];
            let mut m = serde_json::Map::new();
            for (k, val) in p.json.iter() {
                if !derived.iter().any(|(dk, dv)| dk == k && dv == val) {
                    m.insert(k.clone(), val.clone());
                }
            }
            Value::Object(m)
        })
        .collect();

    // The reference judgement: verdicts and the state before every event.
    let page_of: Vec<u32> = verified
        .dag
        .events()
        .map(|(_, e)| index.get(e.pdu.event_id.as_str()).map_or(u32::MAX, |&i| i as u32))
        .collect();
    let dag_of: Vec<Option<u32>> = pdus.iter().map(|p| verified.dag.index_of(&p.event_id)).collect();
    let mut table = state::StateTable::new(verified, &page_of, key_list);
    let state_before: Vec<i64> = dag_of.iter().map(|d| d.map_or(-1, |d| table.before(d) as i64)).collect();
    let mut strings = Interner::default();
    let mut reference_rejected = Vec::new();
    for (i, d) in dag_of.iter().enumerate() {
        let Some(d) = d else { continue };
        if let Status::Rejected { stage, reason } = &verified.dag.event(*d).status {
            reference_rejected.push(json!([i, strings.get(stage.as_str()), strings.get(reason)]));
        }
    }

    // Decisions, each with what it did to its server's forward extremities.
    let known: Vec<(&Decision, usize, usize, servers::Verdict)> = input
        .decisions
        .iter()
        .filter_map(|d| {
            let verdict = servers::Verdict::parse(&d.decision)?;
            Some((d, *index.get(d.event.as_str())?, server_index[d.server.as_str()], verdict))
        })
        .collect();
    let steps: Vec<servers::Step> = known
        .iter()
        .map(|(d, e, s, verdict)| servers::Step {
            event: *e,
            server: *s,
            verdict: *verdict,
            backfilled: d.backfilled,
            state_before_stage: d.stage.as_deref() == Some("state_before"),
        })
        .collect();
    let times: Vec<u64> = known.iter().map(|(d, ..)| d.t_us).collect();
    let changes = servers::extremity_changes(&parents, servers.len(), &steps);
    let points = servers::change_points(&steps, &changes, &times, servers.len()).len();
    let stride = points.div_ceil(MAX_STATE_POINTS).max(1);
    let mut current: Vec<Vec<i64>> = vec![Vec::new(); servers.len()];
    servers::replay_points(&steps, &changes, &times, servers.len(), stride, |s, k, set| {
        let tips: Vec<u32> = set.iter().filter_map(|&e| dag_of[e]).collect();
        let state = table.resolve_after(&tips).map_or(-1, i64::from);
        let list = &mut current[s];
        if list.last() != Some(&state) {
            list.extend([times[k] as i64, state]);
        }
    });
    let mut dec = DecisionColumns::default();
    let mut last_t = 0i64;
    for (k, (d, e, s, verdict)) in known.iter().enumerate() {
        dec.e.push(*e);
        dec.s.push(*s);
        dec.d.push(*verdict as usize);
        dec.t.push(d.t_us as i64 - last_t);
        last_t = d.t_us as i64;
        if d.stage.is_some() || d.reason.is_some() {
            dec.why.push([k as i64, strings.opt(d.stage.as_deref()), strings.opt(d.reason.as_deref())]);
        }
        dec.x.push(extremity_code(&changes[k], &parents[*e]));
        if d.backfilled {
            dec.bf.push(k);
        }
    }

    let (actions, actions_left_out) = action_marks(&input.actions, &index);
    let t_end = input
        .t_end_us
        .or_else(|| input.decisions.iter().map(|d| d.t_us).chain(input.faults.iter().map(|f| f.t_us)).max())
        .unwrap_or(0);
    let entries = &table.entries;
    json!({
        "title": input.title,
        "subtitle": input.subtitle,
        "room_id": input.room_id,
        "room_version": input.room_version,
        "layers": lay.widths.len(),
        "widths": lay.widths,
        "ids": pdus.iter().map(|p| p.event_id.as_str()).collect::<Vec<_>>(),
        "types": types.list,
        "ty": ty,
        "senders": senders.list,
        "snd": snd,
        "keys": table.keys.iter().map(|(t, s)| json!([t, s])).collect::<Vec<_>>(),
        "key": key,
        "depth": pdus.iter().map(|p| p.depth).collect::<Vec<_>>(),
        "layer": lay.layer,
        "pos": lay.pos,
        "prev": parents,
        "auth": auths,
        "classes": class_names.list,
        "v": v,
        "pdus": rest,
        "judged": !input.judged.is_empty(),
        "strings": strings.list,
        "ref_rejected": reference_rejected,
        "states": {
            "base": entries.iter().map(|e| e.base.map_or(-1, i64::from)).collect::<Vec<_>>(),
            "delta": entries.iter().map(|e| {
                e.delta.iter().flat_map(|(k, v)| [i64::from(*k), v.map_or(-1, page_event)]).collect::<Vec<_>>()
            }).collect::<Vec<_>>(),
        },
        "sb": state_before,
        "servers": servers,
        "verdicts": ["accepted", "soft_failed", "rejected", "outlier", "dropped"],
        "dec": dec,
        "current": current,
        "current_stride": stride,
        "current_points": points,
        "resolutions": table.resolutions,
        "faults": input.faults,
        "fault_text": input.fault_text,
        "actions": actions,
        "actions_left_out": actions_left_out,
        "episodes": input.episodes,
        "agreed_us": input.agreed_us,
        "forward": forward,
        "t_end_us": t_end,
    })
}

/// A page event index in a state delta (`-1`: an event the page does not have).
fn page_event(e: u32) -> i64 {
    if e == u32::MAX {
        -1
    } else {
        i64::from(e)
    }
}

/// The decisions as columns: event, server, verdict (index into `verdicts`), time (µs after
/// the previous decision's), `[decision, stage, reason]` for those with a stage or reason
/// (indices into `strings`, -1 none), the change to the server's forward extremities
/// ([`extremity_code`]) and which decisions stored a backfilled event.
#[derive(Default, Serialize)]
struct DecisionColumns {
    e: Vec<usize>,
    s: Vec<usize>,
    d: Vec<usize>,
    t: Vec<i64>,
    why: Vec<[i64; 3]>,
    x: Vec<Value>,
    bf: Vec<usize>,
}

/// A decision's change to its server's forward extremities, compactly: `0` none, `1` the event
/// entered and its prev events left (the common case), `2` it entered and none left, else
/// `[entered (0/1), left…]`.
fn extremity_code(c: &servers::Change, prev: &[usize]) -> Value {
    let mut prev: Vec<usize> = prev.to_vec();
    prev.sort_unstable();
    prev.dedup();
    match (c.added, c.removed.as_slice()) {
        (false, []) => json!(0),
        (true, []) => json!(2),
        (true, removed) if removed == prev.as_slice() => json!(1),
        (added, removed) => {
            let mut x = vec![added as usize];
            x.extend(removed);
            json!(x)
        }
    }
}

/// The time-axis marks of a room's client actions: every scripted one, other actions except
/// messages up to [`MAX_ACTION_MARKS`]. Each `[t_us, server, action, user, target, event
/// index (-1: none in the room), refused, scripted]`; and how many were left out.
fn action_marks(actions: &[ActionMark], index: &HashMap<&str, usize>) -> (Vec<Value>, usize) {
    let mut out = Vec::new();
    let (mut others, mut left_out) = (0usize, 0usize);
    for a in actions {
        if !a.scripted {
            if a.action == "message" || others >= MAX_ACTION_MARKS {
                left_out += 1;
                continue;
            }
            others += 1;
        }
        let event = a.event.as_deref().and_then(|e| index.get(e)).map_or(-1, |&i| i as i64);
        out.push(json!([a.t_us, a.server, a.action, a.user, a.target, event, a.refused, a.scripted]));
    }
    (out, left_out)
}

/// The explorer page of one room, judging its DAG with [`reference_judgement`].
pub fn render_explorer(input: &ExplorerInput) -> String {
    render_explorer_with(input, &reference_judgement(input))
}

/// The explorer page of one room, with the states of `verified` (a judgement of its PDUs).
pub fn render_explorer_with(input: &ExplorerInput, verified: &Verified) -> String {
    let data = explorer_data_with(input, verified);
    // `<` escaped inside the JSON (only strings hold it) so that no `</script>` ends the block.
    let data = serde_json::to_string(&data).expect("JSON values serialize").replace('<', "\\u003c");
    let back = input
        .back_link
        .as_ref()
        .map(|(href, text)| format!("<a href=\"{}\">{}</a>", esc(href), esc(text)))
        .unwrap_or_default();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <header><h1>{title}</h1><span class=\"sub\">{sub}</span> {back}</header>\n\
         <div id=\"controls\">\
         <input id=\"search\" type=\"search\" placeholder=\"search: event ID, sender, type\" size=\"30\">\
         <span id=\"search-result\"></span>\
         <label>colour <select id=\"colour\"><option value=\"verdict\">by verdict</option>\
         <option value=\"type\">by type</option></select></label>\
         <label>server <select id=\"server\"><option value=\"\">(all: union)</option></select></label>\
         <label>diff with <select id=\"server-b\"><option value=\"\">(none)</option></select></label>\
         <button id=\"fit\" type=\"button\">fit</button>\
         </div>\n\
         <div id=\"time\"><label>time <input id=\"slider\" type=\"range\" min=\"0\" max=\"1000\" value=\"1000\"></label>\
         <span id=\"time-label\"></span><div id=\"faults\"></div></div>\n\
         <div id=\"main\"><div id=\"view\"><canvas id=\"dag\"></canvas><div id=\"legend\"></div></div>\
         <aside id=\"side\"><div id=\"server-view\"></div><div id=\"detail\"></div></aside></div>\n\
         <script id=\"data\" type=\"application/json\">{data}</script>\n<script>{SCRIPT}</script>\n\
         </body>\n</html>\n",
        title = esc(&input.title),
        sub = esc(&input.subtitle),
    )
}

/// Reads a DAG file's PDUs (JSON Lines, as `dag verify` does): the room ID, version and PDUs.
pub fn read_pdus(path: &Path) -> Result<(String, String, Vec<Arc<Pdu>>), AnalysisError> {
    let text = read_text(path)?;
    let input = verify::parse_input(&text).map_err(|e| format_error(path, e.to_string()))?;
    if let Some(l) = input.invalid.first() {
        return Err(format_error(path, format!("line {}: {}: {}", l.line, l.field, l.message)));
    }
    let version = input.version.id.to_string();
    Ok((input.room_id.clone(), version, input.into_pdus().into_iter().map(Arc::new).collect()))
}

/// Writes `RUN/explorer/<room>.html` for every `RUN/rooms/<room>.pdus.jsonl`, with the log's
/// decisions and faults when the run has a log. Returns the paths, rooms in natural order.
pub fn write_run_explorers(run_dir: &Path) -> Result<Vec<PathBuf>, AnalysisError> {
    let rooms_dir = run_dir.join("rooms");
    let mut rooms: Vec<String> = match std::fs::read_dir(&rooms_dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".pdus.jsonl")).map(str::to_owned))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(AnalysisError::Io { path: rooms_dir, source }),
    };
    rooms.sort_by(|a, b| natural_cmp(a, b));
    if rooms.is_empty() {
        return Ok(Vec::new());
    }
    let log = read_run_log(run_dir)?;
    let RunLog { decisions, faults, mut actions, t_end_us: t_log } = log.clone().unwrap_or_default();
    runlog::mark_scripted(&mut actions, &runlog::scenario_timeline(run_dir));
    let summary = crate::summary::RunSummary::read(&run_dir.join("summary.json")).ok();
    let t_end =
        summary.as_ref().and_then(|s| s.sim_time_end_ms()).map(|ms| (ms * 1000.0) as u64).unwrap_or(t_log).max(t_log);
    let scenario = summary.as_ref().and_then(|s| s.scenario.clone()).unwrap_or_else(|| "run".into());
    let seed = summary.as_ref().and_then(|s| s.seed).map_or_else(|| "?".into(), |s| s.to_string());
    // Signatures are checked with the run's keys when it has them (as the servers did).
    let keys = std::fs::read_to_string(run_dir.join("keys.json")).ok().and_then(|t| verify::parse_server_keys(&t).ok());
    // A fault's description, matched to its start record by kind and time.
    let fault_text: BTreeMap<u64, String> = faults
        .iter()
        .filter(|f| f.start)
        .filter_map(|f| {
            let s =
                summary.as_ref()?.faults.iter().find(|s| s.kind == f.what && (s.start_ms * 1000.0) as u64 == f.t_us)?;
            Some((f.fault, s.description.clone()))
        })
        .collect();
    let mut paths = Vec::new();
    for room in rooms {
        let (room_id, room_version, pdus) = read_pdus(&rooms_dir.join(format!("{room}.pdus.jsonl")))?;
        let ids: std::collections::HashSet<&str> = pdus.iter().map(|p| p.event_id.as_str()).collect();
        let room_decisions: Vec<Decision> =
            decisions.iter().filter(|d| ids.contains(d.event.as_str())).cloned().collect();
        let room_actions: Vec<ActionMark> =
            actions.iter().filter(|a| a.room == room || a.room == room_id).cloned().collect();
        let subtitle = match &log {
            Some(_) => format!("{} events · {} decisions from the run's log", pdus.len(), room_decisions.len()),
            None => format!("{} events · the run has no log, so no decisions", pdus.len()),
        };
        let room_summary = summary.as_ref().and_then(|s| s.rooms.get(&room));
        let ms = |v: f64| (v * 1000.0) as u64;
        let input = ExplorerInput {
            title: format!("{scenario} — seed {seed} — room {room}"),
            subtitle,
            room_id,
            room_version,
            pdus,
            decisions: room_decisions,
            faults: faults.clone(),
            fault_text: fault_text.clone(),
            actions: room_actions,
            episodes: room_summary
                .map(|r| r.episodes.iter().map(|e| (ms(e.start_ms), e.end_ms.map(ms))).collect())
                .unwrap_or_default(),
            agreed_us: room_summary.and_then(|r| r.number("agreement_reached_ms")).map(ms),
            keys: keys.clone(),
            t_end_us: Some(t_end),
            back_link: Some(("../report.html".into(), "report".into())),
            ..Default::default()
        };
        let path = explorer_path(run_dir, &room);
        write_file(&path, render_explorer(&input).as_bytes())?;
        paths.push(path);
    }
    Ok(paths)
}

/// Where [`write_run_explorers`] writes a room's page.
pub fn explorer_path(run_dir: &Path, room: &str) -> PathBuf {
    run_dir.join("explorer").join(format!("{room}.html"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DAG with a fork: 0 → 1 → {2, 3} → 4, plus 5 off 0 and 6 merging 5 and 2.
    fn forked() -> Vec<Vec<usize>> {
        vec![vec![], vec![0], vec![1], vec![1], vec![2, 3], vec![0], vec![5, 2]]
    }

    fn check_layers(parents: &[Vec<usize>], l: &Layout) {
        assert_eq!(l.layer.len(), parents.len(), "every event placed");
        for (i, ps) in parents.iter().enumerate() {
            for &p in ps {
                assert!(
                    l.layer[p] < l.layer[i],
                    "parent {p} (layer {}) above child {i} (layer {})",
                    l.layer[p],
                    l.layer[i]
                );
            }
        }
        // Positions within each layer are a permutation of 0..width.
        for (layer, &w) in l.widths.iter().enumerate() {
            let mut ps: Vec<u32> =
                (0..parents.len()).filter(|&i| l.layer[i] as usize == layer).map(|i| l.pos[i]).collect();
            ps.sort_unstable();
            assert_eq!(ps, (0..w).collect::<Vec<_>>(), "layer {layer}");
        }
    }

    #[test]
    fn layout_places_every_event_below_its_parents_deterministically() {
        let p = forked();
        let l = layout(&p);
        check_layers(&p, &l);
        assert_eq!(l.layer, vec![0, 1, 2, 2, 3, 1, 3]);
        assert_eq!(layout(&p), l, "deterministic");
    }

    #[test]
    fn layout_of_a_random_dag_respects_prev_edges_and_is_deterministic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let n: usize = 3000;
        let parents: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                if i == 0 {
                    vec![]
                } else {
                    (0..rng.gen_range(1..4)).map(|_| rng.gen_range(i.saturating_sub(20)..i)).collect()
                }
            })
            .collect();
        let l = layout(&parents);
        check_layers(&parents, &l);
        assert_eq!(layout(&parents), l);
    }

    #[test]
    fn barycentric_pass_untangles_two_crossed_chains() {
        // Roots a=0, b=1; layer 1 holds 2 (child of b) then 3 (child of a): crossed in index order.
        let p = vec![vec![], vec![], vec![1], vec![0]];
        let l = layout(&p);
        check_layers(&p, &l);
        assert!(l.pos[3] < l.pos[2], "the child of the left root moves left: {l:?}");
    }

    #[test]
    fn layout_survives_bad_references_and_cycles() {
        let p = vec![vec![9, 0], vec![2], vec![1], vec![0]];
        let l = layout(&p);
        assert_eq!(l.layer.len(), 4);
        assert_eq!(l.layer[0], 0);
        assert_eq!(l.layer[3], 1);
        assert_eq!((l.layer[1], l.layer[2]), (2, 2), "the cycle goes below the rest");
    }

    /// A v11 room built by hand (content hashes, no signatures: judged without keys).
    mod hand_made {
        use super::*;
        use roomsim_engine::protocol::crypto;
        use roomsim_engine::protocol::room_version::V11;

        pub const ROOM: &str = "!room:hs1";

        pub fn pdu(t: &str, sk: Option<&str>, sender: &str, content: Value, prev: &[&Pdu], auth: &[&Pdu]) -> Pdu {
            let mut m = serde_json::Map::new();
            m.insert("type".into(), json!(t));
            if let Some(k) = sk {
                m.insert("state_key".into(), json!(k));
            }
            m.insert("sender".into(), json!(sender));
            m.insert("room_id".into(), json!(ROOM));
            m.insert("content".into(), content);
            m.insert("prev_events".into(), json!(prev.iter().map(|p| &p.event_id).collect::<Vec<_>>()));
            m.insert("auth_events".into(), json!(auth.iter().map(|p| &p.event_id).collect::<Vec<_>>()));
            m.insert("depth".into(), json!(prev.iter().map(|p| p.depth).max().unwrap_or(0) + 1));
            m.insert("origin_server_ts".into(), json!(1_700_000_000_000i64 + prev.len() as i64));
            m.insert("signatures".into(), json!({}));
            crypto::set_content_hash(&mut m);
            Pdu::from_object(m, &V11).expect("a valid PDU")
        }

        /// create, Alice's join, power levels (Bob may send state), public join rules, Bob's
        /// join; then a fork: Alice sets the topic (A), Bob the name (B); Alice's message M
        /// merges them. Returned in that order.
        pub fn forked_room() -> Vec<Pdu> {
            let (alice, bob) = ("@alice:hs1", "@bob:hs2");
            let create = pdu("m.room.create", Some(""), alice, json!({"room_version": "11"}), &[], &[]);
            let ja = pdu("m.room.member", Some(alice), alice, json!({"membership": "join"}), &[&create], &[&create]);
            let pl = pdu(
                "m.room.power_levels",
                Some(""),
                alice,
                json!({"users": {alice: 100, bob: 50}, "state_default": 50}),
                &[&ja],
                &[&create, &ja],
            );
            let jr =
                pdu("m.room.join_rules", Some(""), alice, json!({"join_rule": "public"}), &[&pl], &[&create, &ja, &pl]);
            let jb = pdu("m.room.member", Some(bob), bob, json!({"membership": "join"}), &[&jr], &[&create, &pl, &jr]);
            let a = pdu("m.room.topic", Some(""), alice, json!({"topic": "one"}), &[&jb], &[&create, &ja, &pl]);
            let b = pdu("m.room.name", Some(""), bob, json!({"name": "two"}), &[&jb], &[&create, &jb, &pl]);
            let m = pdu(
                "m.room.message",
                None,
                alice,
                json!({"body": "hi", "msgtype": "m.text"}),
                &[&a, &b],
                &[&create, &ja, &pl],
            );
            vec![create, ja, pl, jr, jb, a, b, m]
        }
    }

    /// The page's JSON data of `input`, and its state entry `e` rebuilt as (type, key) → event ID.
    fn page_state(data: &Value, e: i64) -> BTreeMap<(String, String), String> {
        let entries: Vec<state::Entry> = data["states"]["base"]
            .as_array()
            .unwrap()
            .iter()
            .zip(data["states"]["delta"].as_array().unwrap())
            .map(|(b, d)| {
                let d: Vec<i64> = d.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
                state::Entry {
                    base: u32::try_from(b.as_i64().unwrap()).ok(),
                    delta: d.chunks(2).map(|c| (c[0] as u32, u32::try_from(c[1]).ok())).collect(),
                }
            })
            .collect();
        if e < 0 {
            return BTreeMap::new();
        }
        state::materialize(&entries, e as u32)
            .into_iter()
            .map(|(k, ev)| {
                let key = &data["keys"][k as usize];
                let id = data["ids"][ev as usize].as_str().unwrap().to_owned();
                ((key[0].as_str().unwrap().to_owned(), key[1].as_str().unwrap().to_owned()), id)
            })
            .collect()
    }

    fn input_of(pdus: &[Pdu], decisions: Vec<Decision>) -> ExplorerInput {
        ExplorerInput {
            room_id: hand_made::ROOM.into(),
            room_version: "11".into(),
            pdus: pdus.iter().cloned().map(Arc::new).collect(),
            decisions,
            ..Default::default()
        }
    }

    fn index_of(data: &Value, id: &str) -> usize {
        data["ids"].as_array().unwrap().iter().position(|x| x == id).expect("the event is on the page")
    }

    #[test]
    fn the_state_before_each_event_is_dag_verifys_delta_encoded() {
        let pdus = hand_made::forked_room();
        let data = explorer_data(&input_of(&pdus, Vec::new()));
        let before =
            |name: usize| page_state(&data, data["sb"][index_of(&data, &pdus[name].event_id)].as_i64().unwrap());
        let key = |t: &str, k: &str| (t.to_owned(), k.to_owned());
        assert!(before(0).is_empty(), "nothing before the create event");
        let at_a = before(5);
        assert_eq!(at_a.len(), 5, "create, two members, power levels, join rules: {at_a:?}");
        assert_eq!(at_a[&key("m.room.member", "@bob:hs2")], pdus[4].event_id);
        assert_eq!(before(6), at_a, "both branches start from Bob's join");
        let at_m = before(7);
        assert_eq!(at_m.len(), 7, "the merge resolves both branches in: {at_m:?}");
        assert_eq!(at_m[&key("m.room.topic", "")], pdus[5].event_id);
        assert_eq!(at_m[&key("m.room.name", "")], pdus[6].event_id);
        // Shared states are one entry: the empty state, one per state event and the merge (on
        // the topic's branch, with the name added), not one per event.
        assert_eq!(data["states"]["base"], json!([-1, 0, 1, 2, 3, 4, 5, 5, 6]), "{}", data["states"]);
        assert_eq!(data["states"]["delta"][8].as_array().unwrap().len(), 2, "one change: {}", data["states"]);
        assert_eq!(data["ref_rejected"], json!([]), "every event is accepted");
        // The PDU minus what the columns say; deterministic.
        assert_eq!(data["pdus"][0].get("prev_events"), None);
        assert_eq!(explorer_data(&input_of(&pdus, Vec::new())), data);
    }

    fn decision(server: &str, p: &Pdu, decision: &str, t_us: u64) -> Decision {
        Decision {
            server: server.into(),
            event: p.event_id.clone(),
            decision: decision.into(),
            stage: None,
            reason: (decision == "soft_failed").then(|| "not allowed by the current state".into()),
            t_us,
            backfilled: false,
        }
    }

    /// hs1 accepts everything; hs2 accepts up to Alice's topic, soft-fails Bob's name and never
    /// gets the merge. Their extremities and current states part on the name.
    #[test]
    fn servers_current_states_and_extremities_diverge_where_one_soft_failed() {
        let pdus = hand_made::forked_room();
        let mut decisions = Vec::new();
        for (i, p) in pdus.iter().enumerate() {
            decisions.push(decision("hs1", p, "accepted", 10 * i as u64));
            if i < 6 {
                decisions.push(decision("hs2", p, "accepted", 10 * i as u64 + 1));
            } else if i == 6 {
                decisions.push(decision("hs2", p, "soft_failed", 61));
            }
        }
        let data = explorer_data(&input_of(&pdus, decisions));
        assert_eq!(data["servers"], json!(["hs1", "hs2"]));
        let last = |s: usize| data["current"][s].as_array().unwrap().last().unwrap().as_i64().unwrap();
        let (one, two) = (page_state(&data, last(0)), page_state(&data, last(1)));
        let differ: Vec<&(String, String)> =
            one.keys().chain(two.keys()).filter(|k| one.get(*k) != two.get(*k)).collect();
        assert_eq!(differ, [&("m.room.name".to_owned(), String::new())], "{one:?} vs {two:?}");
        // Extremities: replay the changes the page ships.
        let extremities = |s: usize| {
            let dec = &data["dec"];
            let mut set = std::collections::BTreeSet::new();
            for (k, x) in dec["x"].as_array().unwrap().iter().enumerate() {
                if dec["s"][k].as_u64() != Some(s as u64) {
                    continue;
                }
                let e = dec["e"][k].as_u64().unwrap();
                let prev: Vec<u64> =
                    data["prev"][e as usize].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
                let (added, removed): (bool, Vec<u64>) = match x {
                    Value::Number(n) if n.as_u64() == Some(0) => (false, vec![]),
                    Value::Number(n) if n.as_u64() == Some(1) => (true, prev),
                    Value::Number(_) => (true, vec![]),
                    list => {
                        let l: Vec<u64> = list.as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
                        (l[0] == 1, l[1..].to_vec())
                    }
                };
                for r in removed {
                    set.remove(&r);
                }
                if added {
                    set.insert(e);
                }
            }
            set.into_iter().map(|e| data["ids"][e as usize].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(extremities(0), [pdus[7].event_id.clone()], "hs1: the merge");
        assert_eq!(extremities(1), [pdus[5].event_id.clone()], "hs2: the topic (the soft-failed name is none)");
        // A soft-failed decision carries its reason.
        assert_eq!(data["dec"]["why"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn bad_input_gives_a_page_not_a_panic() {
        let pdus = hand_made::forked_room();
        // Decisions on unknown events, unknown verdicts; an event whose prev is missing.
        let stray = Decision { event: "$nope".into(), ..decision("hs1", &pdus[0], "accepted", 5) };
        let odd = decision("hs1", &pdus[1], "maybe", 6);
        let data = explorer_data(&input_of(&pdus[1..], vec![stray, odd]));
        assert_eq!(data["ids"].as_array().unwrap().len(), 7);
        assert_eq!(data["dec"]["e"], json!([]), "neither decision is shown");
        let html = render_explorer(&input_of(&[], Vec::new()));
        assert!(html.contains("<script id=\"data\""));
    }
}
