//! The world's queues: node inputs ordered by (time, sequence), world events (faults, sample
//! ticks, workload arrivals) between windows. Workloads and samples are generated lazily, one
//! pending item per generator, so a long `end` costs nothing until it is simulated.

use super::workload;
use super::World;
use crate::scenario::{ActionKind, JoinRule, RoomSpec};
use crate::sim::bounds;
use crate::sim::event::Seq;
use crate::sim::federation::ServerIdx;
use crate::sim::rng::RngStreams;
use crate::sim::server::{ClientAction, Input};
use crate::sim::time::SimTime;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// A node input waiting in the queue.
pub(super) struct Scheduled {
    pub(super) time: SimTime,
    pub(super) seq: u64,
    pub(super) node: ServerIdx,
    /// Boxed: the heap moves its entries on every push and pop (O(log n) each), and an input
    /// can carry a whole message; moving a pointer instead is most of a pop's cost saved.
    pub(super) input: Box<Input>,
    /// For deliveries: the log record of the send (or middlebox answer) delivered.
    pub(super) msg: Seq,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.time, self.seq) == (o.time, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and we want the earliest (time, seq) first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.time, o.seq).cmp(&(self.time, self.seq))
    }
}

/// World-level events, handled between windows.
#[derive(Debug, Clone)]
pub(super) enum Global {
    FaultStart(usize),
    FaultEnd(usize),
    Sample,
    /// The next arrival of workload generator `i`.
    Workload(usize),
}

/// One random workload stream: Poisson arrivals of one kind of action for one user, drawn from
/// `workload/<i>/<user>/<kind>`.
pub(super) struct WorkloadGen {
    room: String,
    user: String,
    users: Vec<String>,
    kind: ActionKind,
    rate_per_s: f64,
    t: f64,
    stop_us: SimTime,
    made: u64,
    join_rule: JoinRule,
    /// What a room directory lookup gives (churn rejoins through it).
    directory: Vec<ServerIdx>,
    rng: ChaCha8Rng,
}

impl WorkloadGen {
    /// The next arrival time, if before the workload's stop.
    fn next_time(&mut self) -> Option<SimTime> {
        let u: f64 = self.rng.gen_range(f64::MIN_POSITIVE..1.0);
        // Platform-independent math (libm), so shards on any machine draw the same times.
        self.t += -libm::log(u) / self.rate_per_s * 1e6;
        (self.t < self.stop_us as f64).then_some(self.t as SimTime)
    }
}

/// A client action with only its kind, room and user set.
pub(crate) fn action(room: &str, user: &str, kind: ActionKind) -> ClientAction {
    ClientAction {
        user: user.to_owned(),
        room_name: room.to_owned(),
        room_id: None,
        kind,
        target: None,
        level: None,
        join_rule: None,
        text: None,
        create: None,
        server: None,
        via: Vec::new(),
        directory: Vec::new(),
        allow: Vec::new(),
        address: None,
        client: None,
        account_data: None,
    }
}

impl World {
    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub(super) fn push(&mut self, time: SimTime, node: ServerIdx, input: Input) {
        self.push_msg(time, node, input, 0);
    }

    pub(super) fn push_msg(&mut self, time: SimTime, node: ServerIdx, input: Input, msg: Seq) {
        if self.queue.len() >= bounds::WORLD_QUEUE {
            if self.stopped.is_none() {
                let why = format!(
                    "the world queue reached its cap of {} inputs at simulated time {} ms: the scenario generates more simultaneous work than roomsim holds; the run stopped there",
                    bounds::WORLD_QUEUE,
                    self.now / 1000
                );
                self.cap_reached(None, "world.queue", bounds::WORLD_QUEUE as u64, why.clone());
                self.stopped = Some(why);
                self.done = true;
            }
            return;
        }
        if matches!(input, Input::Deliver { .. } | Input::Action(_)) {
            self.in_flight += 1;
        }
        if matches!(input, Input::Deliver { .. }) {
            self.messages_in_flight += 1;
        }
        let seq = self.next_seq();
        self.queue.push(Scheduled { time, seq, node, input: Box::new(input), msg });
    }

    pub(super) fn push_global(&mut self, time: SimTime, g: Global) {
        let seq = self.next_seq();
        self.globals.insert((time, seq), g);
    }

    /// The node that handles `user`'s client actions.
    pub(super) fn home_of(&self, user: &str) -> ServerIdx {
        self.home_at(user, self.now)
    }

    /// The node that handles `user`'s client actions at `t`: its domain, or the server of its
    /// latest MSC4348 `move` at or before `t` (the move itself goes to the new server).
    pub(super) fn home_at(&self, user: &str, t: SimTime) -> ServerIdx {
        let domain = || self.directory.home_of(user).expect("the scenario validated user IDs");
        // Moves between servers of one account exist only in portable-account rooms.
        if !self.directory.portable.is_active() {
            return domain();
        }
        let portable = |room: &str| self.directory.portable.is_portable_room(room);
        let moved = self
            .scenario
            .timeline
            .iter()
            .filter(|a| a.action == ActionKind::Move && a.user == user && a.at_us <= t && portable(&a.room));
        moved
            .max_by_key(|a| a.at_us)
            .and_then(|a| a.server.as_deref())
            .and_then(|s| self.directory.node(s))
            .unwrap_or_else(domain)
    }

    /// Who acts for the scenario user `user` in `room` at `t`, and through which node. Outside
    /// portable-account rooms a `move` at or before `t` opened a new account on its server
    /// (`scenario::moved_account_id`): the person speaks through that account from then on.
    pub(super) fn acting_at(&self, room: &str, user: &str, t: SimTime) -> (String, ServerIdx) {
        if !self.directory.portable.is_portable_room(room) {
            let moved = self
                .scenario
                .timeline
                .iter()
                .filter(|a| a.action == ActionKind::Move && a.user == user && a.room == room && a.at_us <= t);
            if let Some(target) = moved.max_by_key(|a| a.at_us).and_then(|a| a.server.as_deref()) {
                if let Some(k) = self.directory.node(target) {
                    return (crate::scenario::moved_account_id(user, target), k);
                }
            }
        }
        (user.to_owned(), self.home_at(user, t))
    }

    /// Puts the scenario's rooms, timeline, workloads, faults and first sample on the queues.
    pub(super) fn schedule_scenario(&mut self, streams: &RngStreams) {
        let sc = self.scenario.clone();
        // The scenario lists each room's setup (create, invites, joins) at the room's start;
        // the invites and joins follow a little later, spaced 20 ms apart, as clients would.
        let mut setup_index: BTreeMap<String, u64> = BTreeMap::new();
        for spec in &sc.timeline {
            let mut a = action(&spec.room, &spec.user, spec.action);
            a.target = spec.target.clone();
            a.level = spec.level;
            a.join_rule = spec.join_rule;
            a.text = spec.text.clone();
            let room = sc.room(&spec.room);
            a.server = spec.server.clone();
            a.address = spec.address.clone();
            a.client = spec.client.clone();
            a.account_data = spec.account_data.clone();
            if spec.action == ActionKind::Move {
                a.directory = room.map(|r| self.room_directory(r)).unwrap_or_default();
            }
            if matches!(spec.action, ActionKind::Join | ActionKind::Knock) {
                a.via = spec.via.iter().filter_map(|s| self.directory.node(s)).collect();
                if a.via.is_empty() {
                    a.directory = room.map(|r| self.room_directory(r)).unwrap_or_default();
                }
            }
            let mut at = spec.at_us;
            if spec.action == ActionKind::CreateRoom {
                a.create = room.cloned();
            } else if let Some(r) = room
                .filter(|r| r.start_us == spec.at_us && matches!(spec.action, ActionKind::Join | ActionKind::Invite))
            {
                // Invites go out after a second; in rooms that need them, joins wait two more
                // seconds so that the invites (co-signed by the invitee's server) have landed.
                let needs_invite = r.join_rule != JoinRule::Public;
                let base = if spec.action == ActionKind::Join && needs_invite { 3_000_000 } else { 1_000_000 };
                let i = setup_index.entry(format!("{}/{}", spec.room, spec.action.as_str())).or_default();
                at += base + *i * 20_000;
                *i += 1;
            }
            let (acting, home) = self.acting_at(&spec.room, &spec.user, spec.at_us);
            a.user = acting;
            self.push(at, home, Input::Action(a));
        }
        self.schedule_workloads(streams);
        for spec in sc.identity_servers.iter().filter(|s| !s.push_to.is_empty()) {
            let k = self.directory.node(&spec.name).expect("an identity server is a node");
            self.push(0, k, Input::Identity(crate::sim::identity_event::IdentityInput::PushMappings));
        }
        for (i, f) in sc.faults.iter().enumerate() {
            self.push_global(f.at_us, Global::FaultStart(i));
            if let Some(d) = f.duration_us {
                self.push_global(f.at_us + d, Global::FaultEnd(i));
            }
        }
        let interval = sc.metrics.interval_us.max(1);
        if interval <= self.end {
            self.push_global(interval, Global::Sample);
        }
    }

    /// What a room directory (alias) lookup answers for `room`: the servers of its scenario
    /// members, the creator's first, then in the order of `members` (directories list a room's
    /// servers oldest-joined first).
    pub(super) fn room_directory(&self, room: &RoomSpec) -> Vec<ServerIdx> {
        let mut list: Vec<ServerIdx> = Vec::new();
        for user in std::iter::once(&room.creator).chain(&room.members) {
            let k = self.home_of(user);
            if !list.contains(&k) {
                list.push(k);
            }
        }
        list
    }

    /// Random workloads: one generator per (workload, user, kind of action), each with its own
    /// stream, holding only its next arrival.
    fn schedule_workloads(&mut self, streams: &RngStreams) {
        let sc = self.scenario.clone();
        for (wi, w) in sc.workloads.iter().enumerate() {
            let room = sc.room(&w.room);
            let directory = room.map(|r| self.room_directory(r)).unwrap_or_default();
            let join_rule = room.map_or(JoinRule::Public, |r| r.join_rule);
            for user in &w.users {
                let kinds = [
                    (w.messages_per_minute / 60.0, ActionKind::Message),
                    (w.state_changes_per_hour / 3600.0, ActionKind::Topic),
                    (w.churn_per_hour / 3600.0, ActionKind::Leave),
                    (w.power_changes_per_hour / 3600.0, ActionKind::Power),
                ];
                for (rate_per_s, kind) in kinds {
                    if rate_per_s <= 0.0 {
                        continue;
                    }
                    let mut g = WorkloadGen {
                        room: w.room.clone(),
                        user: user.clone(),
                        users: w.users.clone(),
                        kind,
                        rate_per_s,
                        t: w.start_us as f64,
                        stop_us: w.stop_us,
                        made: 0,
                        join_rule,
                        directory: directory.clone(),
                        rng: streams.stream(&format!("workload/{wi}/{user}/{}", kind.as_str())),
                    };
                    if let Some(t) = g.next_time() {
                        let i = self.workloads.len();
                        self.workloads.push(g);
                        self.push_global(t, Global::Workload(i));
                    }
                }
            }
        }
    }

    /// A workload generator's arrival: what the user's client does now (given what its server
    /// shows it, `workload.rs`) goes to the user's server, the next arrival is drawn.
    fn workload_arrival(&mut self, i: usize) {
        let t = self.now;
        let (acting, home) = self.acting_at(&self.workloads[i].room, &self.workloads[i].user, t);
        let room_id = self.room_ids.get(&self.workloads[i].room).cloned();
        let g = &mut self.workloads[i];
        g.made += 1;
        let n = g.made;
        let server = if self.down[home as usize] { None } else { self.nodes[home as usize].as_server() };
        let room = room_id.as_ref().and_then(|id| server?.rooms.get(id));
        // In an account-key room the client's user and its targets are in-room IDs.
        let in_room = |name: &str| server.map_or_else(|| name.to_owned(), |s| s.in_room_id(room, name));
        let user_id = in_room(&acting);
        let view = room.map(|r| workload::ClientView::new(r, &user_id, &in_room));
        let arrival = workload::Arrival {
            kind: g.kind,
            room: &g.room,
            user: &acting,
            users: &g.users,
            n,
            now: t,
            stop_us: g.stop_us,
            join_rule: g.join_rule,
            directory: &g.directory,
        };
        let actions = workload::plan(&arrival, view.as_ref(), &mut g.rng);
        let capped = n >= bounds::WORKLOAD_ACTIONS_PER_GENERATOR;
        let next = if capped { None } else { g.next_time() };
        for (at, a) in actions {
            self.push(at, home, Input::Action(a));
        }
        if let Some(next) = next {
            self.push_global(next, Global::Workload(i));
        } else if capped {
            let user = self.workloads[i].user.clone();
            self.cap_reached(
                Some(home),
                "world.workload_actions",
                bounds::WORKLOAD_ACTIONS_PER_GENERATOR,
                format!("workload generator of {user} stops creating actions"),
            );
        }
    }

    pub(super) fn run_globals(&mut self, t: SimTime) {
        while let Some((&(time, seq), _)) = self.globals.iter().next() {
            if time != t || self.done {
                break;
            }
            let g = self.globals.remove(&(time, seq)).expect("present");
            match g {
                Global::FaultStart(i) => self.fault(i, true),
                Global::FaultEnd(i) => self.fault(i, false),
                Global::Sample => {
                    self.sample();
                    let next = t + self.scenario.metrics.interval_us.max(1);
                    if next <= self.end {
                        self.push_global(next, Global::Sample);
                    }
                }
                Global::Workload(i) => self.workload_arrival(i),
            }
        }
    }

    /// A sample tick: every observer samples.
    pub(super) fn sample(&mut self) {
        let t = self.now;
        self.observe(|o, w| o.on_sample(t, w));
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::parse_scenario;
    use crate::sim::log::LogWriter;
    use crate::sim::world::World;

    /// A run of 99 999 simulated hours with a busy workload is built with one pending item per
    /// generator and one sample tick, not with every arrival and tick of the run in memory.
    #[test]
    fn a_very_long_end_schedules_lazily() {
        let text = r#"
[scenario]
name = "long"
end = "99999h"

[[servers]]
prefix = "hs"
count = 3

[[rooms]]
name = "main"
version = "12"
creator = "@u0:hs1"
members = ["*"]

[[workload]]
room = "main"
users = "*"
start = "1s"
messages_per_minute = 600
churn_per_hour = 60
"#;
        let sc = parse_scenario("long.toml", text, &[]).expect("valid");
        let mut w = World::new(&sc, 1, LogWriter::none(), Vec::new());
        let generators = w.workloads.len();
        let users = sc.workloads[0].users.len();
        assert!(users >= 3);
        assert_eq!(generators, 2 * users, "one generator per user and kind (messages, churn)");
        // Faults: none; samples: one tick; workloads: one arrival each.
        assert_eq!(w.globals.len(), 1 + generators);
        for _ in 0..2_000 {
            w.step();
        }
        assert!(w.globals.len() <= 1 + generators, "still one pending item per generator");
        assert!(w.queue.len() < 10_000, "the queue holds only what is in flight");
    }
}
