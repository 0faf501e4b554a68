//! Replay: rebuild every node from the log's input records and check that each produces the
//! same outputs — every decision and record, and every message it sends — and reaches the same
//! final state. The log is streamed: memory is the nodes, the PDUs and the messages still in
//! flight, never the log itself.

use super::event::{LoggedInput, Seq, SimEvent};
use super::federation::{Message, ServerIdx};
use super::log::LogReader;
use super::node::Node;
use super::rng::RngStreams;
use super::server::{Input, Output};
use super::world::build_nodes;
use crate::scenario::{ActionKind, Scenario};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufRead;

/// The first place a replay departs from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    pub server: String,
    pub seq: u64,
    pub expected: Value,
    pub got: Value,
}

/// How far a replay got (for progress displays).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayProgress {
    pub records: u64,
    pub sim_time_us: u64,
}

/// An output a replayed node produced, in the comparable form of its log record.
fn comparable_output(o: &Output) -> Option<String> {
    match o {
        Output::Event(ev) => Some(serde_json::to_string(ev).expect("events serialise")),
        Output::Send { to, message, .. } => Some(send_key(*to, message)),
        Output::SetTimer { .. } | Output::Created { .. } => None,
    }
}

fn send_key(to: ServerIdx, message: &Message) -> String {
    serde_json::to_string(&serde_json::json!({"send_to": to, "message": message})).expect("messages serialise")
}

fn comparable_record(ev: &SimEvent) -> String {
    match ev {
        SimEvent::Send { to, message, .. } => send_key(*to, message),
        other => serde_json::to_string(other).expect("events serialise"),
    }
}

fn parse(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::String(s.to_owned()))
}

/// Replays the log read from `log`; returns the final state digests per room ID and server.
/// `progress` is called every 65 536 records.
pub fn replay<R: BufRead>(
    scenario: &Scenario,
    seed: u64,
    log: R,
    mut progress: impl FnMut(ReplayProgress),
) -> Result<BTreeMap<String, BTreeMap<String, String>>, Box<Divergence>> {
    let (mut nodes, directory) = build_nodes(scenario, &RngStreams::new(seed));
    // Messages sent and not yet delivered: the log line of their send → message, copies left.
    let mut in_flight: HashMap<Seq, (Message, usize)> = HashMap::new();
    // Per node: outputs the replayed node produced that the log has not shown yet.
    let mut pending: Vec<VecDeque<String>> = vec![VecDeque::new(); nodes.len()];
    let mut last_seq = 0;
    for item in LogReader::new(log) {
        let (seq, line) = item.map_err(|e| bad(0, e))?;
        last_seq = seq;
        if seq % 65_536 == 0 {
            progress(ReplayProgress { records: seq, sim_time_us: line.t_us });
        }
        let node = match line.server.as_deref() {
            Some(name) => Some(directory.node(name).ok_or_else(|| bad(seq, format!("unknown node {name}")))?),
            None => None,
        };
        match line.event {
            SimEvent::Input(logged) => {
                let k = node.ok_or_else(|| bad(seq, "an input record without a node".into()))?;
                if let Some(extra) = pending[k as usize].pop_front() {
                    return Err(Box::new(Divergence {
                        server: directory.names[k as usize].clone(),
                        seq,
                        expected: Value::String("(no further output before this input)".into()),
                        got: parse(&extra),
                    }));
                }
                let input = to_input(logged, &mut in_flight, scenario).map_err(|e| bad(seq, e))?;
                let outputs = nodes[k as usize].handle(input, line.t_us);
                pending[k as usize].extend(outputs.iter().filter_map(comparable_output));
            }
            SimEvent::Blocked { input: LoggedInput::Deliver { msg, .. }, .. } => {
                take_message(&mut in_flight, msg);
            }
            SimEvent::MiddleboxAnswer { message, .. } => {
                in_flight.insert(seq, (message, 1));
            }
            ev if ev.is_node_output() => {
                let k = node.ok_or_else(|| bad(seq, "a node output without a node".into()))?;
                let want = comparable_record(&ev);
                if let SimEvent::Send { message, deliver_at, .. } = ev {
                    if !deliver_at.is_empty() {
                        in_flight.insert(seq, (message, deliver_at.len()));
                    }
                }
                match pending[k as usize].pop_front() {
                    Some(got) if got == want => {}
                    got => {
                        return Err(Box::new(Divergence {
                            server: directory.names[k as usize].clone(),
                            seq,
                            expected: parse(&want),
                            got: got.map(|g| parse(&g)).unwrap_or(Value::String(
                                "nothing: the replayed server did not produce this output".into(),
                            )),
                        }));
                    }
                }
            }
            _ => {}
        }
    }
    for (k, p) in pending.iter_mut().enumerate() {
        if let Some(extra) = p.pop_front() {
            return Err(Box::new(Divergence {
                server: directory.names[k].clone(),
                seq: last_seq,
                expected: Value::String("(end of log)".into()),
                got: parse(&extra),
            }));
        }
    }
    let mut digests: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for node in nodes.iter_mut() {
        let Node::Homeserver(s) = node else { continue }; // notaries hold no rooms
        let name = s.name.clone();
        for (room_id, r) in s.rooms.iter_mut() {
            digests.entry(room_id.clone()).or_default().insert(name.clone(), r.current_digest());
        }
    }
    Ok(digests)
}

fn take_message(in_flight: &mut HashMap<Seq, (Message, usize)>, msg: Seq) -> Option<Message> {
    let entry = in_flight.get_mut(&msg)?;
    entry.1 -= 1;
    if entry.1 == 0 {
        in_flight.remove(&msg).map(|(m, _)| m)
    } else {
        Some(entry.0.clone())
    }
}

fn to_input(
    logged: LoggedInput,
    in_flight: &mut HashMap<Seq, (Message, usize)>,
    scenario: &Scenario,
) -> Result<Input, String> {
    Ok(match logged {
        LoggedInput::Deliver { from, msg } => {
            let message =
                take_message(in_flight, msg).ok_or_else(|| format!("delivery of record {msg}, which sent nothing"))?;
            Input::Deliver { from, message }
        }
        LoggedInput::Timer { timer } => Input::Timer(timer),
        LoggedInput::Action(mut a) => {
            if a.kind == ActionKind::CreateRoom {
                a.create = scenario.room(&a.room_name).cloned();
            }
            Input::Action(a)
        }
        LoggedInput::Crash => Input::Crash,
        LoggedInput::Restart => Input::Restart,
        LoggedInput::ClockSkew { skew_us } => Input::SetClockSkew { skew_us },
        LoggedInput::RotateKey { keep_old } => Input::RotateKey { keep_old },
        LoggedInput::EraseAccount { user } => Input::EraseAccount { user },
        LoggedInput::ReregisterAccount { user } => Input::ReregisterAccount { user },
        LoggedInput::Identity(f) => Input::Identity(f),
    })
}

fn bad(seq: u64, why: String) -> Box<Divergence> {
    Box::new(Divergence { server: String::new(), seq, expected: Value::Null, got: Value::String(why) })
}
