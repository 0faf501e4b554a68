//! The run explorer: one self-contained `explorer.html` per room DAG. The layout (layers and
//! the order within each layer) is computed here and shipped as data, with the events, their
//! PDUs, every server's decision on them and the faults; the page (inline script and style,
//! `assets/explorer/`) only draws it on a canvas. Nothing is fetched from the network.
//!
//! Two sources: a run directory (`rooms/<room>.pdus.jsonl` and the log's `decision` and `fault`
//! records; [`write_run_explorers`] writes `explorer/<room>.html`), or any DAG file judged by
//! `dag verify` (the CLI builds an [`ExplorerInput`] with [`Judgement`]s and calls
//! [`render_explorer`]).

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roomsim_engine::protocol::pdu::Pdu;
use roomsim_engine::protocol::verify;
use serde::Serialize;
use serde_json::{json, Value};

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

/// A server's decision on an event (a log `decision` record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub server: String,
    pub event: String,
    pub decision: String,
    pub stage: Option<String>,
    pub reason: Option<String>,
    pub t_us: u64,
}

/// A fault starting or ending (a log `fault` record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultMark {
    pub t_us: u64,
    pub fault: u64,
    pub what: String,
    pub start: bool,
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
    /// End of the time axis (default: the last decision).
    pub t_end_us: Option<u64>,
    /// A link back (the run's report), relative to the page.
    pub back_link: Option<(String, String)>,
}

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

/// The page's data: events in a deterministic order (depth, then event ID), their layout,
/// PDUs, decisions and faults. See `assets/explorer/explorer.js` for how it is read.
pub fn explorer_data(input: &ExplorerInput) -> Value {
    let mut pdus: Vec<&Arc<Pdu>> = input.pdus.iter().collect();
    pdus.sort_by(|a, b| a.depth.cmp(&b.depth).then_with(|| a.event_id.cmp(&b.event_id)));
    pdus.dedup_by(|a, b| a.event_id == b.event_id);
    let index: HashMap<&str, usize> = pdus.iter().enumerate().map(|(i, p)| (p.event_id.as_str(), i)).collect();
    let refs = |ids: &[String]| -> Vec<usize> { ids.iter().filter_map(|id| index.get(id.as_str()).copied()).collect() };
    let parents: Vec<Vec<usize>> = pdus.iter().map(|p| refs(&p.prev_events)).collect();
    let lay = layout(&parents);

    let mut servers: Vec<String> = input.decisions.iter().map(|d| d.server.clone()).collect();
    servers.sort_by(|a, b| natural_cmp(a, b));
    servers.dedup();
    let server_index: HashMap<&str, usize> = servers.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let mut by_event: Vec<Vec<&Decision>> = vec![Vec::new(); pdus.len()];
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
            let mut has_child = vec![false; pdus.len()];
            for (i, ps) in parents.iter().enumerate() {
                if classes[i] != "rejected" {
                    for &p in ps {
                        has_child[p] = true;
                    }
                }
            }
            (0..pdus.len()).filter(|&i| !has_child[i] && classes[i] != "rejected").collect()
        }
    };
    let events: Vec<Value> = pdus
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut e = json!({
                "id": p.event_id,
                "type": p.event_type,
                "sender": p.sender,
                "depth": p.depth,
                "layer": lay.layer[i],
                "pos": lay.pos[i],
                "prev": parents[i],
                "auth": refs(&p.auth_events),
                "v": classes[i],
            });
            if let Some(k) = &p.state_key {
                e["sk"] = json!(k);
            }
            if let Some(j) = input.judged.get(&p.event_id) {
                e["judged"] = json!(j);
            }
            e
        })
        .collect();
    let json_of: Vec<Value> = pdus
        .iter()
        .map(|p| {
            let mut m = serde_json::Map::new();
            m.insert("event_id".into(), json!(p.event_id));
            m.extend(p.json.iter().map(|(k, v)| (k.clone(), v.clone())));
            Value::Object(m)
        })
        .collect();
    // [event, server, decision, t_us, stage, reason], in log order.
    let decisions: Vec<Value> = input
        .decisions
        .iter()
        .filter_map(|d| {
            let e = *index.get(d.event.as_str())?;
            Some(json!([e, server_index[d.server.as_str()], d.decision, d.t_us, d.stage, d.reason]))
        })
        .collect();
    let t_end = input
        .t_end_us
        .or_else(|| input.decisions.iter().map(|d| d.t_us).chain(input.faults.iter().map(|f| f.t_us)).max())
        .unwrap_or(0);
    json!({
        "title": input.title,
        "subtitle": input.subtitle,
        "room_id": input.room_id,
        "room_version": input.room_version,
        "layers": lay.widths.len(),
        "widths": lay.widths,
        "events": events,
        "pdus": json_of,
        "servers": servers,
        "decisions": decisions,
        "faults": input.faults,
        "forward": forward,
        "t_end_us": t_end,
        "judged": !input.judged.is_empty(),
    })
}

/// The explorer page of one room.
pub fn render_explorer(input: &ExplorerInput) -> String {
    let data = explorer_data(input);
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
         <input id=\"search\" type=\"search\" placeholder=\"search: event ID, sender, type\" size=\"34\">\
         <span id=\"search-result\"></span>\
         <label>colour <select id=\"colour\"><option value=\"verdict\">by verdict</option>\
         <option value=\"type\">by type</option></select></label>\
         <label>server <select id=\"server\"><option value=\"\">(all: union)</option></select></label>\
         <button id=\"fit\" type=\"button\">fit</button>\
         </div>\n\
         <div id=\"time\"><label>time <input id=\"slider\" type=\"range\" min=\"0\" max=\"1000\" value=\"1000\"></label>\
         <span id=\"time-label\"></span><div id=\"faults\"></div></div>\n\
         <div id=\"main\"><div id=\"view\"><canvas id=\"dag\"></canvas><div id=\"legend\"></div></div>\
         <aside id=\"side\"><div id=\"server-view\"></div><div id=\"detail\"><p class=\"note\">Click an event \
         (or search) to see its JSON, every server's decision on it, and its prev and auth events. Wheel: zoom, \
         drag: pan.</p></div></aside></div>\n\
         <script id=\"data\" type=\"application/json\">{data}</script>\n<script>{SCRIPT}</script>\n\
         </body>\n</html>\n",
        title = esc(&input.title),
        sub = esc(&input.subtitle),
    )
}

/// What the explorer reads from a run's log.
#[derive(Clone, Debug, Default)]
pub struct RunLog {
    /// Every `decision` record, in log order.
    pub decisions: Vec<Decision>,
    /// Every `fault` record, in log order.
    pub faults: Vec<FaultMark>,
    /// The time of the last of them.
    pub t_end_us: u64,
}

/// The `decision` and `fault` records of a run's log; `None` when the run directory holds no
/// log (`--log digest` or `none`).
pub fn read_run_log(run_dir: &Path) -> Result<Option<RunLog>, AnalysisError> {
    let Some((path, reader)) =
        roomsim_engine::sim::log::open_log(run_dir).map_err(|m| format_error(&run_dir.join("log.jsonl"), m))?
    else {
        return Ok(None);
    };
    let (mut decisions, mut faults, mut t_end) = (Vec::new(), Vec::new(), 0u64);
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format_error(&path, format!("line {}: {e}", n + 1)))?;
        let is_decision = line.contains("\"kind\":\"decision\"");
        let is_fault = line.contains("\"kind\":\"fault\"");
        if !is_decision && !is_fault {
            continue;
        }
        let bad = |what: &str| format_error(&path, format!("line {}: {what}", n + 1));
        let v: Value = serde_json::from_str(&line).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
        let t_us = v["t_us"].as_u64().ok_or_else(|| bad("no t_us"))?;
        t_end = t_end.max(t_us);
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        match v["kind"].as_str() {
            Some("decision") => decisions.push(Decision {
                server: text("server").ok_or_else(|| bad("decision without server"))?,
                event: text("event").ok_or_else(|| bad("decision without event"))?,
                decision: text("decision").ok_or_else(|| bad("decision without decision"))?,
                stage: text("stage"),
                reason: text("reason"),
                t_us,
            }),
            Some("fault") => faults.push(FaultMark {
                t_us,
                fault: v["fault"].as_u64().unwrap_or(0),
                what: text("what").unwrap_or_default(),
                start: v["start"].as_bool().unwrap_or(false),
            }),
            _ => {}
        }
    }
    Ok(Some(RunLog { decisions, faults, t_end_us: t_end }))
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
    let RunLog { decisions, faults, t_end_us: t_log } = log.clone().unwrap_or_default();
    let summary = crate::summary::RunSummary::read(&run_dir.join("summary.json")).ok();
    let t_end =
        summary.as_ref().and_then(|s| s.sim_time_end_ms()).map(|ms| (ms * 1000.0) as u64).unwrap_or(t_log).max(t_log);
    let scenario = summary.as_ref().and_then(|s| s.scenario.clone()).unwrap_or_else(|| "run".into());
    let seed = summary.as_ref().and_then(|s| s.seed).map_or_else(|| "?".into(), |s| s.to_string());
    let mut paths = Vec::new();
    for room in rooms {
        let (room_id, room_version, pdus) = read_pdus(&rooms_dir.join(format!("{room}.pdus.jsonl")))?;
        let ids: std::collections::HashSet<&str> = pdus.iter().map(|p| p.event_id.as_str()).collect();
        let room_decisions: Vec<Decision> =
            decisions.iter().filter(|d| ids.contains(d.event.as_str())).cloned().collect();
        let subtitle = match &log {
            Some(_) => format!("{} events · {} decisions from the run's log", pdus.len(), room_decisions.len()),
            None => format!("{} events · the run has no log, so no decisions", pdus.len()),
        };
        let input = ExplorerInput {
            title: format!("{scenario} — seed {seed} — room {room}"),
            subtitle,
            room_id,
            room_version,
            pdus,
            decisions: room_decisions,
            faults: faults.clone(),
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
}
