//! What the explorer reads from a run's log: every server's decisions (and which of them
//! stored a backfilled event), the faults, and the client actions servers handled.
//!
//! The log is streamed once; a line is parsed as JSON only when a cheap substring test says it
//! is one of the few kinds read here (most lines are sends and deliveries).

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::format_error;
use crate::AnalysisError;

/// A server's decision on an event (a log `decision` record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub server: String,
    pub event: String,
    pub decision: String,
    pub stage: Option<String>,
    pub reason: Option<String>,
    pub t_us: u64,
    /// Made while the server stored a `/backfill` answer, on one of its events: history, never
    /// a forward extremity (`RoomReplica::ingest_backfilled`).
    pub backfilled: bool,
}

/// A fault starting or ending (a log `fault` record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FaultMark {
    pub t_us: u64,
    pub fault: u64,
    pub what: String,
    pub start: bool,
}

/// A client action as its server handled it (a log `action` record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActionMark {
    pub t_us: u64,
    pub server: String,
    pub action: String,
    pub user: String,
    /// The scenario's room name (a room ID for actions servers make themselves).
    pub room: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The event it created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Why the server refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The scenario's `[[timeline]]` scheduled it (rather than a workload or the room setup).
    pub scripted: bool,
}

/// What the explorer reads from a run's log.
#[derive(Clone, Debug, Default)]
pub struct RunLog {
    /// Every `decision` record, in log order.
    pub decisions: Vec<Decision>,
    /// Every `fault` record, in log order.
    pub faults: Vec<FaultMark>,
    /// Every `action` record, in log order (`scripted` false: see [`mark_scripted`]).
    pub actions: Vec<ActionMark>,
    /// The time of the last of them.
    pub t_end_us: u64,
}

/// Tells apart the decisions a server made on the events of a `/backfill` answer it stored
/// as history (`Server::on_backfilled`: `ingest_backfilled`, no forward extremity) from those
/// it judged live: an answer's event still waiting in the server's pending queue is skipped by
/// the backfill and judged live right after (`drain_pending`).
///
/// So it follows what reaches each server's pending queue: PDUs of a transaction (`/send`) or
/// of a `get_missing_events` answer that the server did not judge in the timeline while it
/// handled that delivery, until it does. Requests are known by (requester, request ID),
/// messages in flight by the log line of their send; everything is read from substrings of the
/// lines (no JSON parse: transactions are most of a log).
#[derive(Default)]
struct Receipts {
    /// `get_missing_events` (`false`) and `backfill` (`true`) requests.
    requests: HashMap<(String, u64), bool>,
    request_ids: BTreeSet<u64>,
    /// Sends still to be delivered: line → (answered request ID, or `None` for a transaction;
    /// the PDUs' event IDs).
    in_flight: HashMap<u64, (Option<u64>, Vec<String>)>,
    /// Per server, the events waiting in its pending queue.
    pending: HashMap<String, BTreeSet<String>>,
    /// Per server, the input it is handling: PDUs it received, and the backfill answer's.
    handling: HashMap<String, Handling>,
    /// The room of every PDU (its `pdu` record).
    room_of: HashMap<String, String>,
    /// The rooms each server holds (it stored an event of them): a server without the room
    /// ignores the room's PDUs.
    holds: BTreeSet<(String, String)>,
    /// Rooms a local user of the server is joining: their PDUs wait for the join's answer
    /// (`Server::early`) and are received then.
    joining: BTreeSet<(String, String)>,
}

#[derive(Default)]
struct Handling {
    received: Vec<String>,
    backfill: BTreeSet<String>,
}

impl Receipts {
    /// A send line (`"kind":"send"`): a request of interest, a transaction, or an answer.
    fn on_send(&mut self, seq: u64, line: &str) {
        let Some(server) = server_of(line) else { return };
        if let Some(id) = number_after(line, "\"request\":{\"id\":") {
            if line.contains("\"endpoint\":\"backfill\"") || line.contains("\"endpoint\":\"get_missing_events\"") {
                self.requests.insert((server.to_owned(), id), line.contains("\"endpoint\":\"backfill\""));
                self.request_ids.insert(id);
                return;
            }
        }
        if !line.contains("\"deliver_at\":[") {
            return; // dropped
        }
        let answered = number_after(line, "\"response\":{\"id\":");
        let transaction = answered.is_none() && line.contains("\"endpoint\":\"send\"");
        let answer = answered.filter(|id| self.request_ids.contains(id) && line.contains("\"kind\":\"events\""));
        if transaction || answer.is_some() {
            self.in_flight.insert(seq, (answer, string_list_after(line, "\"pdus\":[")));
        }
    }

    /// A server's input (`"kind":"input"`): ends the one it was handling; a delivery may bring
    /// PDUs or a backfill answer.
    fn on_input(&mut self, server: &str, line: &str) {
        self.end_input(server);
        if line.contains("\"input\":\"action\"") && line.contains("\"action\":\"join\"") {
            if let Some(room) = string_after(line, "\"room_id\":\"") {
                self.joining.insert((server.to_owned(), room.to_owned()));
            }
        }
        let delivered = line
            .contains("\"input\":\"deliver\"")
            .then(|| number_after(line, "\"msg\":"))
            .flatten()
            .and_then(|seq| self.in_flight.remove(&seq));
        let Some((answered, ids)) = delivered else { return };
        let h = match answered {
            None => Handling { received: ids, backfill: BTreeSet::new() },
            Some(id) => match self.requests.get(&(server.to_owned(), id)) {
                Some(false) => Handling { received: ids, backfill: BTreeSet::new() },
                Some(true) => Handling { received: Vec::new(), backfill: ids.into_iter().collect() },
                None => return,
            },
        };
        self.handling.insert(server.to_owned(), h);
    }

    /// What a server received for a room it holds and did not judge in the timeline waits in
    /// its pending queue.
    fn end_input(&mut self, server: &str) {
        let Some(h) = self.handling.remove(server) else { return };
        let held = |e: &String| {
            self.room_of.get(e).is_some_and(|room| {
                let key = (server.to_owned(), room.clone());
                self.holds.contains(&key) || self.joining.contains(&key)
            })
        };
        let waiting: Vec<String> = h.received.into_iter().filter(held).collect();
        if !waiting.is_empty() {
            self.pending.entry(server.to_owned()).or_default().extend(waiting);
        }
    }

    /// A `join_failed` record: what waited for the join is forgotten (unless the server holds
    /// the room, or another join of it is under way: taken as not).
    fn on_join_failed(&mut self, server: &str, line: &str) {
        let Some(room) = string_after(line, "\"room\":\"") else { return };
        let key = (server.to_owned(), room.to_owned());
        self.joining.remove(&key);
        if !self.holds.contains(&key) {
            if let Some(p) = self.pending.get_mut(server) {
                p.retain(|e| self.room_of.get(e) != Some(&key.1));
            }
        }
    }

    /// A `pdu` record: its event's room (a v12 create event's is named by its event ID).
    fn on_pdu(&mut self, line: &str) {
        #[derive(serde::Deserialize)]
        struct Record {
            event_id: String,
            pdu: RoomOnly,
        }
        #[derive(serde::Deserialize)]
        struct RoomOnly {
            room_id: Option<String>,
        }
        if let Ok(r) = serde_json::from_str::<Record>(line) {
            let room = r.pdu.room_id.unwrap_or_else(|| format!("!{}", r.event_id.trim_start_matches('$')));
            self.room_of.insert(r.event_id, room);
        }
    }

    /// A decision; whether it stored a backfilled event.
    fn on_decision(&mut self, server: &str, event: &str, decision: &str) -> bool {
        let waiting = self.pending.get(server).is_some_and(|p| p.contains(event));
        let h = self.handling.get_mut(server);
        let backfilled = !waiting && h.as_ref().is_some_and(|h| h.backfill.contains(event));
        if decision != "dropped" {
            if let Some(room) = self.room_of.get(event) {
                self.holds.insert((server.to_owned(), room.clone()));
            }
        }
        if matches!(decision, "accepted" | "soft_failed" | "rejected") {
            if let Some(p) = self.pending.get_mut(server) {
                p.remove(event);
            }
            if let Some(h) = h {
                h.received.retain(|e| e != event);
            }
        }
        backfilled
    }
}

/// The JSON string right after `key` (no escapes: IDs).
fn string_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let rest = &line[line.find(key)? + key.len()..];
    Some(&rest[..rest.find('"')?])
}

/// The strings of the JSON array of strings right after `key` (event IDs hold no escapes).
fn string_list_after(line: &str, key: &str) -> Vec<String> {
    let Some(start) = line.find(key).map(|i| i + key.len()) else { return Vec::new() };
    let Some(len) = line[start..].find(']') else { return Vec::new() };
    line[start..start + len]
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The unsigned integer right after `key` in `line`.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The `decision`, `fault` and `action` records of a run's log; `None` when the run directory
/// holds no log (`--log digest` or `none`).
pub fn read_run_log(run_dir: &Path) -> Result<Option<RunLog>, AnalysisError> {
    let Some((path, reader)) =
        roomsim_engine::sim::log::open_log(run_dir).map_err(|m| format_error(&run_dir.join("log.jsonl"), m))?
    else {
        return Ok(None);
    };
    let mut log = RunLog::default();
    let mut receipts = Receipts::default();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format_error(&path, format!("line {}: {e}", n + 1)))?;
        let bad = |what: &str| format_error(&path, format!("line {}: {what}", n + 1));
        if line.contains("\"kind\":\"input\"") {
            if let Some(server) = server_of(&line) {
                receipts.on_input(server, &line);
            }
            continue;
        }
        if line.contains("\"kind\":\"send\"") {
            receipts.on_send(n as u64, &line);
            continue;
        }
        if line.contains("\"kind\":\"join_failed\"") {
            if let Some(server) = server_of(&line) {
                receipts.on_join_failed(server, &line);
            }
            continue;
        }
        if line.contains("\"kind\":\"pdu\"") {
            receipts.on_pdu(&line);
            continue;
        }
        if line.contains("\"kind\":\"blocked\"") {
            if let Some(seq) = number_after(&line, "\"msg\":") {
                receipts.in_flight.remove(&seq);
            }
            continue;
        }
        if !line.contains("\"kind\":\"decision\"")
            && !line.contains("\"kind\":\"fault\"")
            && !line.contains("\"kind\":\"action\"")
        {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| bad(&format!("invalid JSON: {e}")))?;
        let t_us = v["t_us"].as_u64().ok_or_else(|| bad("no t_us"))?;
        let text = |k: &str| v[k].as_str().map(str::to_owned);
        match v["kind"].as_str() {
            Some("decision") => {
                let server = text("server").ok_or_else(|| bad("decision without server"))?;
                let event = text("event").ok_or_else(|| bad("decision without event"))?;
                let decision = text("decision").ok_or_else(|| bad("decision without decision"))?;
                let backfilled = receipts.on_decision(&server, &event, &decision);
                log.decisions.push(Decision {
                    server,
                    event,
                    decision,
                    stage: text("stage"),
                    reason: text("reason"),
                    t_us,
                    backfilled,
                });
            }
            Some("fault") => log.faults.push(FaultMark {
                t_us,
                fault: v["fault"].as_u64().unwrap_or(0),
                what: text("what").unwrap_or_default(),
                start: v["start"].as_bool().unwrap_or(false),
            }),
            Some("action") => log.actions.push(ActionMark {
                t_us,
                server: text("server").unwrap_or_default(),
                action: text("action").unwrap_or_default(),
                user: text("user").unwrap_or_default(),
                room: text("room").unwrap_or_default(),
                target: text("target"),
                event: text("event"),
                refused: text("refused"),
                scripted: false,
            }),
            _ => continue,
        }
        log.t_end_us = log.t_end_us.max(t_us);
    }
    Ok(Some(log))
}

/// The `"server":"…"` of a log line.
fn server_of(line: &str) -> Option<&str> {
    string_after(line, "\"server\":\"")
}

/// Marks the actions the scenario's `[[timeline]]` scheduled: same time, user, room and action
/// as a timeline entry (given as `(at_us, user, room, action)`).
pub fn mark_scripted(actions: &mut [ActionMark], timeline: &[(u64, String, String, String)]) {
    let scripted: BTreeSet<(u64, &str, &str, &str)> =
        timeline.iter().map(|(t, u, r, a)| (*t, u.as_str(), r.as_str(), a.as_str())).collect();
    for a in actions {
        a.scripted = scripted.contains(&(a.t_us, a.user.as_str(), a.room.as_str(), a.action.as_str()));
    }
}

/// The scenario's timeline as `(at_us, user, room, action)`, from the run's `scenario.toml`
/// (empty when it is missing or does not parse).
pub fn scenario_timeline(run_dir: &Path) -> Vec<(u64, String, String, String)> {
    let Ok(text) = std::fs::read_to_string(run_dir.join("scenario.toml")) else { return Vec::new() };
    match roomsim_engine::scenario::parse_scenario("scenario.toml", &text, &[]) {
        Ok(s) => {
            s.timeline.iter().map(|a| (a.at_us, a.user.clone(), a.room.clone(), a.action.as_str().to_owned())).collect()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backfill_answer_marks_its_events_except_those_already_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [
            // 0-4: hs2, in room !r, gets $p in a transaction and cannot judge it yet (pending);
            // hs3 is not in the room (it ignores $p).
            r#"{"t_us":0,"kind":"pdu","event_id":"$r","room_version":"11","pdu":{"room_id":"!r:hs1"}}"#,
            r#"{"t_us":0,"kind":"pdu","event_id":"$p","room_version":"11","pdu":{"room_id":"!r:hs1"}}"#,
            r#"{"t_us":0,"server":"hs2","kind":"decision","event":"$r","decision":"accepted"}"#,
            r#"{"t_us":1,"server":"hs1","kind":"send","to":1,"message":{"request":{"id":3,"body":{"endpoint":"send","pdus":["$p"]}}},"deliver_at":[2]}"#,
            r#"{"t_us":2,"server":"hs2","kind":"input","input":"deliver","from":0,"msg":3}"#,
            // 5-7: hs2 asks for history; the answer holds $a, $b, $p.
            r#"{"t_us":3,"server":"hs2","kind":"send","to":0,"message":{"request":{"id":7,"body":{"endpoint":"backfill","room_id":"!r:hs1","v":["$a"],"limit":100}}},"deliver_at":[4]}"#,
            r#"{"t_us":4,"server":"hs1","kind":"send","to":1,"message":{"response":{"id":7,"outcome":{"ok":{"kind":"events","pdus":["$a","$b","$p"]}}}},"deliver_at":[5]}"#,
            r#"{"t_us":5,"server":"hs2","kind":"input","input":"deliver","from":0,"msg":6}"#,
            r#"{"t_us":5,"server":"hs2","kind":"decision","event":"$b","decision":"accepted"}"#,
            r#"{"t_us":5,"server":"hs2","kind":"decision","event":"$p","decision":"accepted"}"#,
            r#"{"t_us":5,"server":"hs2","kind":"decision","event":"$c","decision":"accepted"}"#,
            r#"{"t_us":6,"server":"hs2","kind":"input","input":"timer","timer":{}}"#,
            r#"{"t_us":6,"server":"hs2","kind":"decision","event":"$b","decision":"accepted"}"#,
            r#"{"t_us":7,"server":"hs3","kind":"input","input":"deliver","from":0,"msg":6}"#,
            r#"{"t_us":7,"server":"hs3","kind":"decision","event":"$a","decision":"accepted"}"#,
            r#"{"t_us":8,"server":"hs1","kind":"action","action":"ban","user":"@u:hs1","room":"main","target":"@v:hs2","event":"$x"}"#,
        ];
        std::fs::write(dir.path().join("log.jsonl"), lines.join("\n") + "\n").unwrap();
        let mut log = read_run_log(dir.path()).unwrap().expect("a log");
        let marks: Vec<(&str, &str, bool)> =
            log.decisions.iter().map(|d| (d.server.as_str(), d.event.as_str(), d.backfilled)).collect();
        assert_eq!(
            marks,
            [
                ("hs2", "$r", false),
                ("hs2", "$b", true),
                ("hs2", "$p", false),
                ("hs2", "$c", false),
                ("hs2", "$b", false),
                ("hs3", "$a", false)
            ],
            "$p waited in hs2's pending queue; the answer was hs2's, not hs3's"
        );
        assert_eq!(log.actions.len(), 1);
        assert_eq!(log.t_end_us, 8);
        mark_scripted(&mut log.actions, &[(8, "@u:hs1".into(), "main".into(), "ban".into())]);
        assert!(log.actions[0].scripted);
    }

    #[test]
    fn a_bad_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("log.jsonl"), "{\"kind\":\"decision\",\"t_us\":1}\n").unwrap();
        let e = read_run_log(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
