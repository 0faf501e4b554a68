//! One window [t, t+L): pop the inputs due in it, hand each node its inputs (on rayon's pool
//! when there is enough work), then merge what the nodes emitted in node order: log records,
//! the union PDU store, the network's verdict on every send, new queue entries.

use super::schedule::Scheduled;
use super::{World, PARALLEL_MIN_INPUTS};
use crate::protocol::pdu::{Pdu, TypedContent};
use crate::sim::event::{LoggedInput, PduJson, Seq, SimEvent};
use crate::sim::federation::{Message, Request, ServerIdx};
use crate::sim::network::{Middleboxed, Route};
use crate::sim::node::Node;
use crate::sim::server::{room_id_of, Input, Output};
use crate::sim::time::SimTime;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

/// The log form of a send, borrowing the message (deserialises as [`SimEvent::Send`]).
#[derive(Serialize)]
#[serde(tag = "kind", rename = "send")]
struct SendRecord<'a> {
    to: ServerIdx,
    message: &'a Message,
    #[serde(skip_serializing_if = "<[SimTime]>::is_empty")]
    deliver_at: &'a [SimTime],
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<&'a str>,
}

/// The log form of a node input, borrowing the input (deserialises as [`SimEvent::Input`]).
#[derive(Serialize)]
#[serde(tag = "kind", rename = "input")]
struct InputRecord<'a> {
    #[serde(flatten)]
    input: &'a LoggedInput,
}

/// Mutable references to `items[i]` for each `i` of `sorted` (strictly ascending), in that order.
fn disjoint_mut<'a, T>(items: &'a mut [T], sorted: &[ServerIdx]) -> Vec<&'a mut T> {
    let mut out = Vec::with_capacity(sorted.len());
    let mut rest = items;
    let mut offset = 0usize;
    for &i in sorted {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(i as usize - offset);
        let (item, tail) = tail.split_first_mut().expect("index in range");
        out.push(item);
        rest = tail;
        offset = i as usize + 1;
    }
    out
}

/// What one node did with one input of a window.
type Handled = (SimTime, LoggedInput, Vec<Output>);
/// One node's inputs of a window, with their log forms.
type Batch = Vec<(SimTime, Input, LoggedInput)>;

impl World {
    pub(super) fn run_window(&mut self, window_end: SimTime) {
        let n = self.nodes.len();
        if self.window_slot.len() != n {
            self.window_slot = vec![u32::MAX; n];
        }
        // The window's inputs, one batch per node that has any (in order of first input); the
        // cost is O(inputs), not O(nodes), so that 100 000 mostly idle servers stay cheap.
        let mut batches: Vec<(ServerIdx, Batch)> = Vec::new();
        let mut total = 0usize;
        while self.queue.peek().is_some_and(|s| s.time < window_end) {
            let s = self.queue.pop().expect("peeked");
            if matches!(*s.input, Input::Deliver { .. } | Input::Action(_)) {
                self.in_flight -= 1;
            }
            if matches!(*s.input, Input::Deliver { .. }) {
                self.messages_in_flight -= 1;
            }
            self.now = s.time;
            let logged = logged_input(&s);
            if let Some(reason) = self.blocked(&s) {
                self.emit(s.time, Some(s.node), &SimEvent::Blocked { reason: reason.into(), input: logged });
                continue;
            }
            let mut input = *s.input;
            if let Input::Action(a) = &mut input {
                a.room_id = self.room_ids.get(&a.room_name).cloned();
                if let Some(spec) = a.create.as_ref().filter(|s| !s.allow.is_empty()) {
                    a.allow = spec.allow.iter().filter_map(|name| self.room_ids.get(name).cloned()).collect();
                }
            }
            if let (Some((k, event_type)), Input::Deliver { message, .. }) = (&self.skip_for_test, &mut input) {
                if *k == s.node {
                    strip_pdus(message, event_type);
                }
            }
            let logged = match (logged, &input) {
                (LoggedInput::Action(_), Input::Action(a)) => LoggedInput::Action(a.clone()),
                (l, _) => l,
            };
            let slot = &mut self.window_slot[s.node as usize];
            if *slot == u32::MAX {
                *slot = batches.len() as u32;
                batches.push((s.node, Vec::new()));
            }
            total += 1;
            batches[*slot as usize].1.push((s.time, input, logged));
        }
        // Merged in node order, as always: the order never depends on how inputs were gathered.
        batches.sort_unstable_by_key(|(k, _)| *k);
        for (k, _) in &batches {
            self.window_slot[*k as usize] = u32::MAX;
        }
        let busy = batches.len();
        let touched: Vec<ServerIdx> = batches.iter().map(|(k, _)| *k).collect();
        // Small windows run on this thread: handing a handful of inputs to the pool costs more
        // than handling them. Either way the results are merged in the same order, so the choice
        // never changes an output. Real signature checks make each input expensive enough to
        // share out even in small windows.
        let min_inputs = self.parallel_min_inputs.unwrap_or(if self.real_signatures { 2 } else { PARALLEL_MIN_INPUTS });
        let parallel = rayon::current_num_threads() > 1 && busy >= 2 && total >= min_inputs;
        self.stats.windows += 1;
        let nodes = disjoint_mut(&mut self.nodes, &touched);
        let results: Vec<(ServerIdx, Vec<Handled>)> = if parallel {
            self.stats.parallel += 1;
            let work: Vec<((ServerIdx, Batch), &mut Node)> = batches.into_iter().zip(nodes).collect();
            work.into_par_iter().map(|((k, batch), node)| (k, run_node_window(node, batch, window_end))).collect()
        } else {
            batches
                .into_iter()
                .zip(nodes)
                .map(|((k, batch), node)| (k, run_node_window(node, batch, window_end)))
                .collect()
        };
        for (k, handled) in results {
            for (t, logged, outputs) in handled {
                self.log_input(t, k, &logged);
                self.merge_outputs(k, t, outputs);
            }
        }
        self.now = window_end.saturating_sub(1).max(self.now);
        self.after_window(&touched);
    }

    /// Tells observers which replicas changed in this window (new events, or a new current
    /// state), by room: a DAG can grow without its current state changing, and the agreement
    /// measure compares both.
    fn after_window(&mut self, touched: &[ServerIdx]) {
        for &k in touched {
            self.note_rooms(k);
        }
        let mut changed: BTreeMap<String, Vec<ServerIdx>> = BTreeMap::new();
        for &k in touched {
            let Some(s) = self.nodes[k as usize].as_server() else { continue };
            let lens = &mut self.replica_lens[k as usize];
            for (id, r) in &s.rooms {
                let n = r.dag.len();
                let grew = lens.get(id) != Some(&n);
                if grew {
                    lens.insert(id.clone(), n);
                }
                if grew || r.is_dirty() {
                    changed.entry(id.clone()).or_default().push(k);
                }
            }
        }
        // A room whose union DAG grew (an event was created: it may change who should be in
        // the room) is reported even when no replica of it changed.
        for (id, events) in &self.room_events {
            if self.room_events_seen.get(id) != Some(&events.len()) {
                self.room_events_seen.insert(id.clone(), events.len());
                changed.entry(id.clone()).or_default();
            }
        }
        if changed.is_empty() {
            return;
        }
        let changed: Vec<(String, Vec<ServerIdx>)> = changed.into_iter().collect();
        let t = self.now;
        self.observe(|o, w| o.on_window(t, &changed, w));
    }

    fn log_input(&mut self, t: SimTime, k: ServerIdx, logged: &LoggedInput) {
        let name = self.directory.names[k as usize].as_str();
        self.log.append_any(t, Some(name), &InputRecord { input: logged });
    }

    /// Handles one input on one node immediately (world events between windows).
    pub(super) fn deliver_now(&mut self, k: ServerIdx, input: Input) {
        let t = self.now;
        let logged = match &input {
            Input::Crash => LoggedInput::Crash,
            Input::Restart => LoggedInput::Restart,
            Input::SetClockSkew { skew_us } => LoggedInput::ClockSkew { skew_us: *skew_us },
            Input::RotateKey { keep_old } => LoggedInput::RotateKey { keep_old: *keep_old },
            Input::EraseAccount { user } => LoggedInput::EraseAccount { user: user.clone() },
            Input::ReregisterAccount { user } => LoggedInput::ReregisterAccount { user: user.clone() },
            Input::Identity(f) => LoggedInput::Identity(f.clone()),
            Input::Timer(timer) => LoggedInput::Timer { timer: timer.clone() },
            Input::Action(a) => LoggedInput::Action(a.clone()),
            Input::Deliver { .. } => unreachable!("deliveries go through the queue"),
        };
        self.log_input(t, k, &logged);
        let outputs = self.nodes[k as usize].handle(input, t);
        self.merge_outputs(k, t, outputs);
        self.note_rooms(k);
    }

    /// Why a queued input cannot reach its node, if it cannot.
    fn blocked(&self, s: &Scheduled) -> Option<&'static str> {
        if self.down[s.node as usize] {
            return Some("server down");
        }
        match &*s.input {
            Input::Deliver { from, .. } if !self.network.link_up(*from, s.node) => Some("partition"),
            _ => None,
        }
    }

    /// Writes a PDU record unless the log's readers already resolve its event ID to this very
    /// PDU (a co-signed invite or a redacted copy shares its event ID with the original: the
    /// latest record of an ID is what its references mean).
    fn ensure_logged(&mut self, k: ServerIdx, pdu: &Arc<Pdu>) {
        if let Some(current) = self.logged_pdus.get(&pdu.event_id) {
            if Arc::ptr_eq(current, pdu) || current.json == pdu.json {
                return;
            }
        }
        let room_id = room_id_of(pdu);
        let version = match &pdu.content {
            TypedContent::Create(c) if pdu.event_type == "m.room.create" && pdu.state_key.as_deref() == Some("") => {
                c.room_version.clone()
            }
            _ => None,
        }
        .or_else(|| self.room_versions.get(&room_id).cloned())
        .or_else(|| {
            self.nodes[k as usize].as_server().and_then(|s| s.rooms.get(&room_id)).map(|r| r.version.id.to_owned())
        })
        .unwrap_or_else(|| "1".to_owned());
        self.room_versions.entry(room_id.clone()).or_insert_with(|| version.clone());
        self.event_room.entry(pdu.event_id.clone()).or_insert(room_id);
        self.logged_pdus.insert(pdu.event_id.clone(), pdu.clone());
        let ev =
            SimEvent::Pdu { event_id: pdu.event_id.clone(), room_version: version, pdu: PduJson::Shared(pdu.clone()) };
        self.log.append(self.now, None, &ev);
    }

    /// Applies a node's outputs: log records, the union store, the network, timers.
    pub(super) fn merge_outputs(&mut self, k: ServerIdx, t: SimTime, outputs: Vec<Output>) {
        for o in outputs {
            match o {
                Output::Event(ev) => {
                    if let SimEvent::Action { action, room, event: Some(id), .. } = &ev {
                        if action == "create_room" {
                            self.room_ids.insert(room.clone(), id.clone());
                        }
                    }
                    self.emit(t, Some(k), &ev);
                }
                Output::Created { room_id, pdu } => {
                    self.ensure_logged(k, &pdu);
                    if !self.store.contains_key(&pdu.event_id) {
                        self.room_events.entry(room_id).or_default().push(pdu.event_id.clone());
                    }
                    self.store.insert(pdu.event_id.clone(), pdu);
                }
                Output::SetTimer { at, timer } => self.push(at, k, Input::Timer(timer)),
                Output::Send { to, message, delay_us } => self.send(k, to, message, t + delay_us),
            }
        }
    }

    /// A message leaves node `k` at `at`: middleboxes, then the network decide its fate; the
    /// send record carries that fate and the deliveries name the record.
    fn send(&mut self, k: ServerIdx, to: ServerIdx, message: Message, at: SimTime) {
        if !self.observers.is_empty() {
            for o in self.observers.iter_mut() {
                o.on_send(at, k, to, &message);
            }
        }
        for p in message.pdus() {
            self.ensure_logged(k, p);
        }
        let sender = self.directory.names[k as usize].clone();
        // Middleboxes see requests other than `/send` and answers: keep what the sender sent in
        // case a cache answers instead of the server.
        let original = match &message {
            Message::Request { body: Request::Transaction { .. }, .. } => None,
            other => Some(other.clone()),
        };
        let (message, answer) = match self.network.through_middleboxes(k, to, message, at) {
            Middleboxed::Forward(m) => (m, None),
            Middleboxed::Answer(answer) => (original.expect("only non-/send messages are answered"), Some(answer)),
            Middleboxed::Drop(reason, m) => {
                let rec = SendRecord { to, message: &m, deliver_at: &[], dropped: Some(reason) };
                self.log.append_any(at, Some(&sender), &rec);
                return;
            }
        };
        if let Some(answer) = answer {
            // A cache in front of `to` answers: the reply travels back to the sender.
            let rec = SendRecord { to, message: &message, deliver_at: &[], dropped: Some("answered by a cache") };
            self.log.append_any(at, Some(&sender), &rec);
            for p in answer.pdus() {
                self.ensure_logged(to, p);
            }
            let ev = SimEvent::MiddleboxAnswer { server: to, to: k, message: answer.clone() };
            let seq = self.log.append(at, None, &ev);
            let when = at + self.network.min_latency_us();
            self.push_delivery(when, k, to, answer, seq);
            return;
        }
        match self.network.route(k, to, at) {
            Route::Deliver(times) => {
                let rec = SendRecord { to, message: &message, deliver_at: &times, dropped: None };
                let seq = self.log.append_any(at, Some(&sender), &rec);
                let last = times.len() - 1;
                let mut message = Some(message);
                for (i, when) in times.iter().enumerate() {
                    let m = if i == last { message.take().expect("once") } else { message.clone().expect("kept") };
                    self.push_delivery(*when, to, k, m, seq);
                }
            }
            Route::Drop(reason) => {
                let rec = SendRecord { to, message: &message, deliver_at: &[], dropped: Some(reason) };
                self.log.append_any(at, Some(&sender), &rec);
            }
        }
    }

    fn push_delivery(&mut self, when: SimTime, to: ServerIdx, from: ServerIdx, message: Message, seq: Seq) {
        self.push_msg(when, to, Input::Deliver { from, message }, seq);
    }
}

/// The log form of a queued input.
fn logged_input(s: &Scheduled) -> LoggedInput {
    match &*s.input {
        Input::Deliver { from, .. } => LoggedInput::Deliver { from: *from, msg: s.msg },
        Input::Timer(timer) => LoggedInput::Timer { timer: timer.clone() },
        Input::Action(a) => LoggedInput::Action(a.clone()),
        Input::Crash => LoggedInput::Crash,
        Input::Restart => LoggedInput::Restart,
        Input::SetClockSkew { skew_us } => LoggedInput::ClockSkew { skew_us: *skew_us },
        Input::RotateKey { keep_old } => LoggedInput::RotateKey { keep_old: *keep_old },
        Input::EraseAccount { user } => LoggedInput::EraseAccount { user: user.clone() },
        Input::ReregisterAccount { user } => LoggedInput::ReregisterAccount { user: user.clone() },
        Input::Identity(f) => LoggedInput::Identity(f.clone()),
    }
}

/// Handles a node's inputs of one window in order; self-timers that fall inside the window are
/// handled in it too. Returns, per handled input, its time, its log form and its outputs.
fn run_node_window(node: &mut Node, batch: Vec<(SimTime, Input, LoggedInput)>, window_end: SimTime) -> Vec<Handled> {
    let mut local: BinaryHeap<std::cmp::Reverse<(SimTime, u64, usize)>> = BinaryHeap::new();
    let mut items: Vec<Option<(Input, LoggedInput)>> = Vec::with_capacity(batch.len());
    for (i, (t, input, logged)) in batch.into_iter().enumerate() {
        local.push(std::cmp::Reverse((t, i as u64, i)));
        items.push(Some((input, logged)));
    }
    let mut next_local_seq = items.len() as u64;
    let mut handled = Vec::with_capacity(items.len());
    while let Some(std::cmp::Reverse((t, _, slot))) = local.pop() {
        let (input, logged) = items[slot].take().expect("each input once");
        let mut outputs = node.handle(input, t);
        // Timers due inside this window stay local; later ones go back to the world.
        let mut kept = Vec::with_capacity(outputs.len());
        for o in outputs.drain(..) {
            match o {
                Output::SetTimer { at, timer } if at < window_end => {
                    let logged = LoggedInput::Timer { timer: timer.clone() };
                    items.push(Some((Input::Timer(timer), logged)));
                    local.push(std::cmp::Reverse((at.max(t), next_local_seq, items.len() - 1)));
                    next_local_seq += 1;
                }
                other => kept.push(other),
            }
        }
        handled.push((t, logged, kept));
    }
    handled
}

/// Removes the PDUs of type `event_type` from a message (the test-only fault of
/// [`World::skip_events_for_test`]).
fn strip_pdus(message: &mut Message, event_type: &str) {
    use crate::sim::federation::{Outcome, Response};
    let pdus = match message {
        Message::Request { body: Request::Transaction { pdus }, .. } => pdus,
        Message::Response { outcome: Outcome::Ok(Response::Events { pdus }), .. } => pdus,
        _ => return,
    };
    pdus.retain(|p| p.event_type != event_type);
}
