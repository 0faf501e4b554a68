//! Retries as Synapse's federation client makes them (`MatrixFederationHttpClient`): a request
//! that got no answer is sent again after a delay that grows, with a jitter in [0.8, 1.4);
//! the per-destination backoff a transaction's final failure starts lives in [`super::outbound`].
//!
//! - Transactions (`/send`) use the *long* schedule: up to `transaction_retries` (Synapse's
//!   `max_long_retries`, 10) retries after 4 s, 16 s, then 60 s each (`max_long_retry_delay`).
//! - Every other request uses the *short* schedule: up to `request_retries` (Synapse's
//!   `max_short_retries`, 3) retries after 0.5 s, 1 s, then 2 s each (`max_short_retry_delay`).
//! - A request waiting for its retry is sent at once when its destination shows it is up again
//!   after a backoff (Synapse's sleeper is woken by `notify_remote_server_up`).
//! - Synapse's federation sender wakes destinations with unsent events once a minute
//!   (`WAKEUP_RETRY_PERIOD_SEC`), from its start: a destination whose backoff ran out is tried
//!   at the next such tick, or earlier when a new event for it is queued.

use super::outbound::Batch;
use super::requests::Purpose;
use super::{room, Output, Server, Timer, MAX_TXN_PDUS};
use crate::protocol::pdu::Pdu;
use crate::sim::federation::{Message, Request, RequestId, ServerIdx};
use crate::sim::time::SimTime;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;
use std::sync::Arc;

/// First delay of the short schedule and its cap (`max_short_retry_delay`).
pub const SHORT_RETRY_FIRST_US: u64 = 500_000;
pub const MAX_SHORT_RETRY_DELAY_US: u64 = 2_000_000;
/// First delay of the long schedule and its cap (`max_long_retry_delay`).
pub const LONG_RETRY_FIRST_US: u64 = 4_000_000;
pub const MAX_LONG_RETRY_DELAY_US: u64 = 60_000_000;
/// How often the federation sender wakes destinations with unsent events.
pub const WAKE_UP_PERIOD_US: u64 = 60_000_000;
/// The ChaCha stream (of the server's seed) the jitter is drawn from: the server's other draws
/// (room IDs, byzantine choices) do not move when a retry happens.
const JITTER_STREAM: u64 = 1;

/// Delay before retry number `retries_done + 1` of the short schedule: 0.5 s doubling, capped.
pub fn short_retry_delay_us(retries_done: u32, jitter: f64) -> u64 {
    let base = SHORT_RETRY_FIRST_US.saturating_mul(1u64 << retries_done.min(32)).min(MAX_SHORT_RETRY_DELAY_US);
    (base as f64 * jitter) as u64
}

/// Delay before retry number `retries_done + 1` of the long schedule: 4 s times 4 each time,
/// capped.
pub fn long_retry_delay_us(retries_done: u32, jitter: f64) -> u64 {
    let base = LONG_RETRY_FIRST_US.saturating_mul(4u64.saturating_pow(retries_done)).min(MAX_LONG_RETRY_DELAY_US);
    (base as f64 * jitter) as u64
}

/// The first wake-up tick (every [`WAKE_UP_PERIOD_US`] from `boot`) at or after `due`.
pub fn wake_up_tick(boot: SimTime, due: SimTime) -> SimTime {
    if due <= boot {
        return boot + WAKE_UP_PERIOD_US;
    }
    let periods = (due - boot).div_ceil(WAKE_UP_PERIOD_US).max(1);
    boot + periods * WAKE_UP_PERIOD_US
}

/// A server's retry bookkeeping that is not per destination.
#[derive(Debug)]
pub(crate) struct RetryState {
    jitter: ChaCha8Rng,
    /// Requests waiting for their retry timer (still in `Server::requests`).
    sleeping: BTreeSet<RequestId>,
    /// When the server (last) started: the phase of the wake-up ticks.
    boot: SimTime,
}

impl RetryState {
    pub(crate) fn new(server_rng: &ChaCha8Rng) -> RetryState {
        let mut jitter = server_rng.clone();
        jitter.set_stream(JITTER_STREAM);
        jitter.set_word_pos(0);
        RetryState { jitter, sleeping: BTreeSet::new(), boot: 0 }
    }

    /// A jitter factor in [0.8, 1.4), as Synapse draws it for every delay.
    pub(crate) fn jitter(&mut self) -> f64 {
        self.jitter.gen_range(0.8..1.4)
    }

    /// A crash: requests in flight and their timers are gone.
    pub(crate) fn crash(&mut self) {
        self.sleeping.clear();
    }
}

impl Server {
    /// A request got no answer in time. Schedules its retry and returns `None`, or returns the
    /// request when its schedule is exhausted (the caller gives up on it).
    pub(crate) fn retry_later(
        &mut self,
        id: RequestId,
        req: super::requests::PendingRequest,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Option<super::requests::PendingRequest> {
        if matches!(req.purpose, Purpose::AccountQuery { .. } | Purpose::DomainView) {
            return Some(req); // the caches' schedules are their retries
        }
        let is_transaction = matches!(req.purpose, Purpose::Transaction { .. });
        let limit = if is_transaction { self.config.transaction_retries } else { self.config.request_retries };
        if req.attempts > limit {
            return Some(req);
        }
        let jitter = self.retries.jitter();
        let retries_done = req.attempts - 1;
        let delay = if is_transaction {
            long_retry_delay_us(retries_done, jitter)
        } else {
            short_retry_delay_us(retries_done, jitter)
        };
        self.requests.insert(id, req);
        self.retries.sleeping.insert(id);
        out.push(Output::SetTimer { at: now + delay, timer: Timer::RetryRequest { id } });
        None
    }

    /// A request's retry delay is over (or its destination came back): send it again.
    pub(crate) fn resend_request(&mut self, id: RequestId, now: SimTime, out: &mut Vec<Output>) {
        if !self.retries.sleeping.remove(&id) {
            return; // answered late meanwhile, or already woken
        }
        let Some(req) = self.requests.get_mut(&id) else { return };
        req.attempts += 1;
        out.push(Output::Send {
            to: req.to,
            message: Message::Request { id, body: req.body.clone() },
            delay_us: self.cost_us,
        });
        out.push(Output::SetTimer {
            at: now + self.cost_us + self.config.request_timeout_us,
            timer: Timer::RequestTimeout { id },
        });
    }

    /// `from` contacted us (a request) or answered us: if it was backed off, it is up again,
    /// so its queue and the requests waiting to be retried there go now.
    pub(crate) fn remote_up(&mut self, from: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        if !self.outbound.remote_up(from) {
            return;
        }
        let waiting: Vec<RequestId> = self
            .retries
            .sleeping
            .iter()
            .copied()
            .filter(|id| self.requests.get(id).is_some_and(|r| r.to == from))
            .collect();
        for id in waiting {
            self.resend_request(id, now, out);
        }
        self.send_next_transaction(from, now, out);
    }

    /// A transaction failed for good: back off from the destination and wake it at the first
    /// wake-up tick after the backoff.
    pub(crate) fn transaction_failed(&mut self, dest: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        let jitter = self.retries.jitter();
        let due = self.outbound.failed(dest, now, jitter);
        let at = wake_up_tick(self.retries.boot, due);
        out.push(Output::SetTimer { at, timer: Timer::RetryDestination { dest } });
    }

    /// Sends the next transaction to `dest` if it is free: queued PDUs, or the catch-up of one
    /// room.
    pub(crate) fn send_next_transaction(&mut self, dest: ServerIdx, now: SimTime, out: &mut Vec<Output>) {
        let pdus = match self.outbound.next_batch(dest, now, MAX_TXN_PDUS) {
            None => return,
            Some(Batch::Queue(pdus)) => pdus,
            Some(Batch::CatchUp { room_id, newest }) => self.catch_up_pdus(&room_id, newest),
        };
        self.send_request(dest, Request::Transaction { pdus }, Purpose::Transaction { dest }, now, out);
    }

    /// What catching up a room sends (Synapse's `_catch_up_transmission_loop`): the newest
    /// event queued for the destination if it is still a forward extremity, else the room's
    /// forward extremities (the receiver fetches what lies between with
    /// `get_missing_events`). A byzantine server sends only the event it queued (its
    /// extremities may hold what it withholds).
    fn catch_up_pdus(&self, room_id: &str, newest: Arc<Pdu>) -> Vec<Arc<Pdu>> {
        let Some(room) = self.rooms.get(room_id) else { return vec![newest] };
        if !self.is_honest() {
            return vec![newest];
        }
        let heads = room.prev_events_for_new(MAX_TXN_PDUS);
        if heads.is_empty() || heads.contains(&newest.event_id) {
            return vec![newest];
        }
        heads.iter().filter_map(|id| room.dag.index_of(id)).map(|i| room.dag.event(i).pdu.clone()).collect()
    }

    /// After a restart: what the crash lost is re-armed. The crash lost every request in flight
    /// and every timer: transaction retries and destination wake-ups (the destinations with
    /// unsent events are caught up from the next wake-up tick, a minute after the start, or
    /// at the next event for them), `get_missing_events` requests and their retries (asked
    /// again at once, from every server that sent a still-disconnected event). Joins and
    /// invites in flight are not resumed: their users try again.
    pub(crate) fn on_restart(&mut self, now: SimTime, out: &mut Vec<Output>) {
        self.retries.boot = now;
        for dest in self.outbound.destinations_with_work() {
            out.push(Output::SetTimer { at: now + WAKE_UP_PERIOD_US, timer: Timer::RetryDestination { dest } });
        }
        let waiting: Vec<String> =
            self.rooms.iter().filter(|(_, r)| !r.pending.is_empty()).map(|(id, _)| id.clone()).collect();
        for room_id in waiting {
            let room = self.rooms.get_mut(&room_id).expect("listed");
            room.fetch_retries_left = room::FETCH_RETRIES;
            let origins: BTreeSet<ServerIdx> = room.pending_origin.values().copied().collect();
            for origin in origins {
                self.fetch_missing(&room_id, origin, now, out);
            }
            self.arm_missing_retry(&room_id, now, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_schedule_doubles_from_half_a_second_to_two() {
        let d: Vec<u64> = (0..5).map(|k| short_retry_delay_us(k, 1.0)).collect();
        assert_eq!(d, [500_000, 1_000_000, 2_000_000, 2_000_000, 2_000_000]);
        assert_eq!(short_retry_delay_us(0, 0.8), 400_000);
    }

    #[test]
    fn long_schedule_quadruples_from_four_seconds_to_sixty() {
        let d: Vec<u64> = (0..4).map(|k| long_retry_delay_us(k, 1.0)).collect();
        assert_eq!(d, [4_000_000, 16_000_000, 60_000_000, 60_000_000]);
        assert_eq!(long_retry_delay_us(40, 1.0), MAX_LONG_RETRY_DELAY_US, "no overflow");
    }

    #[test]
    fn wake_up_ticks_are_whole_minutes_from_the_start() {
        assert_eq!(wake_up_tick(0, 1), 60_000_000);
        assert_eq!(wake_up_tick(0, 60_000_000), 60_000_000);
        assert_eq!(wake_up_tick(5, 60_000_006), 120_000_005);
        assert_eq!(wake_up_tick(10, 3), 60_000_010);
    }

    #[test]
    fn jitter_is_within_synapses_range_and_leaves_the_server_stream_alone() {
        let server = crate::sim::rng::RngStreams::new(1).stream("server/hs1");
        let mut state = RetryState::new(&server);
        let draws: Vec<f64> = (0..100).map(|_| state.jitter()).collect();
        assert!(draws.iter().all(|j| (0.8..1.4).contains(j)));
        let mut again = RetryState::new(&server);
        assert_eq!(again.jitter(), draws[0], "reproducible from the seed");
        let mut plain = server.clone();
        assert_ne!(plain.gen_range(0.8..1.4), draws[0], "another stream than the server's own");
    }

    use crate::protocol::crypto::{self, KeyPair};
    use crate::protocol::room_version::V11;
    use crate::sim::event::SimEvent;
    use crate::sim::federation::Response;
    use crate::sim::server::{Directory, Input, RoomReplica, KEY_ID};
    use std::sync::Arc;

    const SECOND_US: u64 = 1_000_000;

    /// hs1 of hs1..hs2, seed 1, with `knobs` in `[defaults]`.
    fn server(knobs: &str) -> Server {
        let names = ["hs1", "hs2"];
        let key = |n: &str| KeyPair::from_seed(n, KEY_ID, crypto::sha256(n.as_bytes()));
        let dir = Arc::new(Directory {
            names: names.iter().map(|n| n.to_string()).collect(),
            index: names.iter().enumerate().map(|(i, n)| (n.to_string(), i as ServerIdx)).collect(),
            public_keys: names.iter().map(|n| key(n).public_key()).collect(),
            signatures: Default::default(),
            keys: Default::default(),
            accounts: Default::default(),
            portable: Default::default(),
        });
        let text = format!(
            "[scenario]\nname = \"t\"\nend = \"1s\"\n[defaults]\n{knobs}\n[[servers]]\nprefix = \"hs\"\ncount = 2\n"
        );
        let sc = crate::scenario::parse_scenario("t.toml", &text, &[]).expect("scenario");
        Server::new(0, &sc.servers[0], key("hs1"), jitter_source(), dir)
    }

    /// The server stream of hs1 under seed 1 (its retry jitter is drawn beside it).
    fn jitter_source() -> ChaCha8Rng {
        crate::sim::rng::RngStreams::new(1).stream("server/hs1")
    }

    fn pdu(prev: &[&str]) -> Arc<Pdu> {
        let v = serde_json::json!({"auth_events": [], "content": {"body": "hi", "msgtype": "m.text"}, "depth": 5,
            "hashes": {"sha256": "o2+qOhRyZh4vRblVuhtMQ2e7sLaIUsWMVGb26OyCrdA"}, "origin_server_ts": 0,
            "prev_events": prev, "room_id": "!r:hs1", "sender": "@u0:hs1", "signatures": {},
            "type": "m.room.message"});
        let map = v.as_object().expect("object").clone();
        Arc::new(Pdu::from_object(map, &V11).expect("well-formed"))
    }

    /// The requests sent (id, destination, endpoint).
    fn sent(out: &[Output]) -> Vec<(RequestId, ServerIdx, &'static str)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { to, message: Message::Request { id, body }, .. } => Some((*id, *to, body.name())),
                _ => None,
            })
            .collect()
    }

    fn timer_at(out: &[Output], wanted: &Timer) -> Option<SimTime> {
        out.iter().find_map(|o| match o {
            Output::SetTimer { at, timer } if timer == wanted => Some(*at),
            _ => None,
        })
    }

    #[test]
    fn a_transaction_is_retried_on_the_long_schedule_then_its_destination_backs_off() {
        let mut s = server("transaction_retries = 2\ndestination_min_retry_interval = \"90s\"");
        let mut jitter = RetryState::new(&jitter_source());
        let mut out = Vec::new();
        s.queue_for(1, pdu(&[]), 0, &mut out);
        let [(id, 1, "send")] = sent(&out)[..] else { panic!("one transaction to hs2: {:?}", sent(&out)) };
        let mut timeout_at = timer_at(&out, &Timer::RequestTimeout { id }).expect("timeout");
        assert_eq!(timeout_at, 10 * SECOND_US, "request_timeout");
        // Two retries: 4 s then 16 s after the timeouts, times the jitter of seed 1.
        for (retries_done, base_us) in [(0, 4 * SECOND_US), (1, 16 * SECOND_US)] {
            let out = s.handle(Input::Timer(Timer::RequestTimeout { id }), timeout_at);
            let retry_at = timer_at(&out, &Timer::RetryRequest { id }).expect("a retry is scheduled");
            assert_eq!(retry_at, timeout_at + long_retry_delay_us(retries_done, jitter.jitter()));
            let delay = retry_at - timeout_at;
            assert!((base_us * 8 / 10..base_us * 14 / 10).contains(&delay), "{delay} around {base_us}");
            assert!(sent(&out).is_empty(), "nothing is sent before the delay");
            let out = s.handle(Input::Timer(Timer::RetryRequest { id }), retry_at);
            assert_eq!(sent(&out), [(id, 1, "send")], "the same transaction again");
            timeout_at = timer_at(&out, &Timer::RequestTimeout { id }).expect("timeout");
        }
        // The third timeout: the destination backs off 90 s, and is woken at the next minute tick.
        let out = s.handle(Input::Timer(Timer::RequestTimeout { id }), timeout_at);
        jitter.jitter();
        assert_eq!(s.outbound.retry_interval_us(1), 90 * SECOND_US);
        let wake = timer_at(&out, &Timer::RetryDestination { dest: 1 }).expect("wake-up");
        assert_eq!(wake, wake_up_tick(0, timeout_at + 90 * SECOND_US));
        assert_eq!(wake % WAKE_UP_PERIOD_US, 0);
        let mut queued = Vec::new();
        s.queue_for(1, pdu(&[]), timeout_at + SECOND_US, &mut queued);
        assert!(sent(&queued).is_empty(), "a backed-off destination is not sent new events");
        // The next failure multiplies the interval by 2 and the jitter.
        let out = s.handle(Input::Timer(Timer::RetryDestination { dest: 1 }), wake);
        let [(id2, 1, "send")] = sent(&out)[..] else { panic!("retried at the wake-up") };
        let mut t = timer_at(&out, &Timer::RequestTimeout { id: id2 }).expect("timeout");
        for _ in 0..3 {
            let out = s.handle(Input::Timer(Timer::RequestTimeout { id: id2 }), t);
            match timer_at(&out, &Timer::RetryRequest { id: id2 }) {
                Some(at) => {
                    jitter.jitter();
                    t = timer_at(
                        &s.handle(Input::Timer(Timer::RetryRequest { id: id2 }), at),
                        &Timer::RequestTimeout { id: id2 },
                    )
                    .expect("timeout");
                }
                None => break,
            }
        }
        let expected = s.config.backoff.next_interval_us(90 * SECOND_US, jitter.jitter());
        assert_eq!(s.outbound.retry_interval_us(1), expected);
        assert!((144 * SECOND_US..252 * SECOND_US).contains(&expected), "90 s × 2 × [0.8, 1.4): {expected}");
    }

    #[test]
    fn a_request_from_the_destination_resets_its_backoff_and_sends_at_once() {
        let mut s = server("transaction_retries = 0");
        let mut out = Vec::new();
        s.queue_for(1, pdu(&[]), 0, &mut out);
        let [(id, 1, "send")] = sent(&out)[..] else { panic!("a transaction") };
        s.handle(Input::Timer(Timer::RequestTimeout { id }), 10 * SECOND_US);
        assert_eq!(s.outbound.retry_interval_us(1), 600 * SECOND_US, "Synapse's default: 10 minutes");
        let request =
            Request::GetMissingEvents { room_id: "!r:hs1".into(), earliest: vec![], latest: vec![], limit: 10 };
        let out =
            s.handle(Input::Deliver { from: 1, message: Message::Request { id: 9, body: request } }, 11 * SECOND_US);
        assert_eq!(s.outbound.retry_interval_us(1), 0, "hs2 contacted us: it is up");
        assert!(sent(&out).iter().any(|(_, to, e)| *to == 1 && *e == "send"), "the queue goes at once");
    }

    #[test]
    fn other_requests_are_retried_on_the_short_schedule_then_given_up() {
        let mut s = server("");
        let mut jitter = RetryState::new(&jitter_source());
        let mut out = Vec::new();
        let body = Request::GetMissingEvents { room_id: "!r:hs1".into(), earliest: vec![], latest: vec![], limit: 10 };
        s.send_request(1, body, Purpose::Fetch { room_id: "!r:hs1".into() }, 0, &mut out);
        let [(id, 1, "get_missing_events")] = sent(&out)[..] else { panic!("a request") };
        let mut timeout_at = timer_at(&out, &Timer::RequestTimeout { id }).expect("timeout");
        // Synapse's default max_short_retries: 3 retries, 0.5 s, 1 s, 2 s.
        for retries_done in 0..3 {
            let out = s.handle(Input::Timer(Timer::RequestTimeout { id }), timeout_at);
            let retry_at = timer_at(&out, &Timer::RetryRequest { id }).expect("retry");
            assert_eq!(retry_at - timeout_at, short_retry_delay_us(retries_done, jitter.jitter()));
            let out = s.handle(Input::Timer(Timer::RetryRequest { id }), retry_at);
            assert_eq!(sent(&out).len(), 1);
            timeout_at = timer_at(&out, &Timer::RequestTimeout { id }).expect("timeout");
        }
        let out = s.handle(Input::Timer(Timer::RequestTimeout { id }), timeout_at);
        let gave_up =
            out.iter().any(|o| matches!(o, Output::Event(SimEvent::RequestFailed { why, .. }) if why == "timeout"));
        assert!(gave_up && s.requests.is_empty(), "given up after the third retry");
        assert_eq!(s.outbound.retry_interval_us(1), 0, "only transactions back a destination off");
    }

    #[test]
    fn a_late_answer_while_waiting_for_the_retry_ends_the_request() {
        let mut s = server("");
        let mut out = Vec::new();
        let body = Request::GetMissingEvents { room_id: "!r:hs1".into(), earliest: vec![], latest: vec![], limit: 10 };
        s.send_request(1, body, Purpose::Fetch { room_id: "!r:hs1".into() }, 0, &mut out);
        let [(id, ..)] = sent(&out)[..] else { panic!("a request") };
        let out = s.handle(Input::Timer(Timer::RequestTimeout { id }), 10 * SECOND_US);
        let retry_at = timer_at(&out, &Timer::RetryRequest { id }).expect("retry");
        let answer =
            Message::Response { id, outcome: crate::sim::federation::Outcome::Ok(Response::Events { pdus: vec![] }) };
        s.handle(Input::Deliver { from: 1, message: answer }, 10 * SECOND_US + 1);
        let out = s.handle(Input::Timer(Timer::RetryRequest { id }), retry_at);
        assert!(sent(&out).is_empty() && s.requests.is_empty(), "answered: not sent again");
    }

    #[test]
    fn a_restart_asks_again_for_the_missing_events_the_crash_lost() {
        let mut s = server("");
        let mut room = RoomReplica::new("!r:hs1".into(), &V11);
        let waiting = pdu(&["$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
        room.add_pending(waiting.clone());
        room.pending_origin.insert(waiting.event_id.clone(), 1);
        room.fetching.insert(1);
        s.rooms.insert("!r:hs1".into(), room);
        s.handle(Input::Crash, SECOND_US);
        let out = s.handle(Input::Restart, 5 * SECOND_US);
        let fetch = out.iter().find_map(|o| match o {
            Output::Send {
                to: 1,
                message: Message::Request { body: Request::GetMissingEvents { latest, .. }, .. },
                ..
            } => Some(latest.clone()),
            _ => None,
        });
        assert_eq!(fetch, Some(vec![waiting.event_id.clone()]), "the pending event's parents are asked for again");
    }
}
