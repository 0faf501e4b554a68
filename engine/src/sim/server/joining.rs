//! Remote joins through any resident (Server-Server API, §Joining rooms): the joining server
//! asks its candidate residents in turn for a `make_join` template, moves on when one cannot
//! help, and retries the whole list with backoff before it gives up.
//!
//! The candidates, in order, without duplicates and never this server:
//! 1. the action's `via` servers (a client's `server_name` parameters);
//! 2. the server that invited the user (Synapse appends the inviter's server to the client's
//!    list);
//! 3. the servers this server last saw joined to the room, if it holds a replica (a rejoin after
//!    a leave);
//! 4. when the action names no `via`: what a room directory (alias) lookup gives, which the world
//!    fills in as the servers of the room's scenario members, the creator's first (directory
//!    answers list the room's servers oldest-joined first).
//!
//! Which failures move on to the next candidate follows Synapse's `_try_destination_list`: no
//! answer (after the request's own retries) and 5xx always do; a 4xx does only for the error
//! codes of the endpoint (`make_join`: `M_NOT_FOUND`, and MSC3083's
//! `M_UNABLE_TO_AUTHORISE_JOIN` / `M_UNABLE_TO_GRANT_JOIN`; `send_join`: the MSC3083 two).
//! Any other 4xx (a 403 `M_FORBIDDEN`: the resident says the user may not join) ends the join.
//! A `send_join` that fails over goes on with `make_join` at the next candidate.

use super::actions::Draft;
use super::requests::Purpose;
use super::{ClientAction, Output, Server, Timer};
use crate::protocol::pdu::Membership;
use crate::sim::event::SimEvent;
use crate::sim::federation::{Request, ServerIdx};
use crate::sim::time::SimTime;

/// Rounds over the candidate list before a join is given up (the first included).
pub const JOIN_ROUNDS: u32 = 6;
/// Wait after the first round in which every candidate failed; it doubles after each round.
pub const JOIN_RETRY_FIRST_US: u64 = 5_000_000;
/// The longest wait between two rounds.
pub const JOIN_RETRY_MAX_US: u64 = 60_000_000;

/// The wait after round `round` (from 1) failed: 5 s, 10 s, 20 s, 40 s, then 60 s.
pub fn join_retry_delay_us(round: u32) -> u64 {
    JOIN_RETRY_FIRST_US.saturating_mul(1u64 << (round.saturating_sub(1)).min(20)).min(JOIN_RETRY_MAX_US)
}

/// One user's join under way: the candidates of the current round and where it stands.
#[derive(Debug, Clone)]
pub(crate) struct JoinAttempt {
    via: Vec<ServerIdx>,
    directory: Vec<ServerIdx>,
    candidates: Vec<ServerIdx>,
    /// The candidate being asked.
    next: usize,
    /// The current round, from 1.
    round: u32,
    /// Waiting for the `RetryJoin` timer of this round.
    waiting: bool,
    /// What each candidate of the current round answered.
    errors: Vec<String>,
}

/// How a join request failed.
pub(crate) enum JoinFailure {
    /// No answer within the request's retries.
    Timeout,
    /// An error answer.
    Status { status: u16, errcode: String },
    /// An answer of the wrong kind (Synapse: an invalid response, the next server is tried).
    Invalid,
}

impl JoinFailure {
    fn moves_on(&self, request: &str) -> bool {
        match self {
            JoinFailure::Timeout | JoinFailure::Invalid => true,
            JoinFailure::Status { status, .. } if (500..600).contains(status) => true,
            JoinFailure::Status { status, errcode } if (400..500).contains(status) => {
                let msc3083 = matches!(errcode.as_str(), "M_UNABLE_TO_AUTHORISE_JOIN" | "M_UNABLE_TO_GRANT_JOIN");
                msc3083 || (request == "make_join" && errcode == "M_NOT_FOUND")
            }
            JoinFailure::Status { .. } => false,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            JoinFailure::Timeout => "timeout".to_owned(),
            JoinFailure::Status { status, errcode } => format!("{status} {errcode}"),
            JoinFailure::Invalid => "unexpected answer".to_owned(),
        }
    }
}

impl Server {
    /// Starts a remote join of `a.user` (not yet resident here), or joins the one under way.
    pub(crate) fn start_remote_join(
        &mut self,
        a: &ClientAction,
        room_id: String,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> Result<Option<String>, String> {
        let key = (room_id, a.user.clone());
        if self.joins.contains_key(&key) {
            return Ok(None); // the client's second request waits on the first, as Synapse's linearizer does
        }
        // MSC4345: one handshake per server and room; other users wait for its acceptance.
        if super::portable::is_account_id(&a.user)
            && (self.joins.keys().any(|(r, _)| *r == key.0) || self.awaiting.keys().any(|(r, _)| *r == key.0))
        {
            self.awaiting.entry(key).or_insert(now);
            return Ok(None);
        }
        let candidates = self.join_candidates(&key.0, &a.via, &a.directory);
        if candidates.is_empty() {
            return Err("no resident server to join through".into());
        }
        let attempt = JoinAttempt {
            via: a.via.clone(),
            directory: a.directory.clone(),
            candidates,
            next: 0,
            round: 1,
            waiting: false,
            errors: Vec::new(),
        };
        self.joins.insert(key.clone(), attempt);
        self.ask_join_candidate(&key, now, out);
        Ok(None)
    }

    /// The servers to ask, in order (see the module's documentation).
    pub(crate) fn join_candidates(&self, room_id: &str, via: &[ServerIdx], directory: &[ServerIdx]) -> Vec<ServerIdx> {
        let mut list: Vec<ServerIdx> = via.to_vec();
        list.extend(self.invites.get(room_id).copied());
        if let Some(room) = self.rooms.get(room_id) {
            list.extend(room.joined_servers().iter().filter_map(|s| self.directory.node(s)));
        }
        if via.is_empty() {
            list.extend_from_slice(directory);
        }
        let mut seen = std::collections::BTreeSet::new();
        list.retain(|k| *k != self.index && seen.insert(*k));
        list
    }

    fn ask_join_candidate(&mut self, key: &(String, String), now: SimTime, out: &mut Vec<Output>) {
        let attempt = &self.joins[key];
        let to = attempt.candidates[attempt.next];
        let (room_id, user) = key.clone();
        // MSC4345 §6: in a portable-account room the joining server names its key.
        let portable = super::portable::is_account_id(&user);
        let server_key = self.room_key(&room_id).filter(|_| portable).map(|k| k.entity);
        let body = Request::MakeJoin { room_id: room_id.clone(), user_id: user.clone(), server_key };
        self.send_request(to, body, Purpose::MakeJoin { user, room_id }, now, out);
    }

    /// The join of `user` ended well (`send_join` answered): nothing more to try.
    pub(crate) fn join_done(&mut self, room_id: &str, user: &str) {
        self.joins.remove(&(room_id.to_owned(), user.to_owned()));
    }

    /// A `make_join` or `send_join` to `to` failed: the next candidate, the next round, or the end.
    pub(crate) fn join_request_failed(
        &mut self,
        purpose: &Purpose,
        to: ServerIdx,
        failure: JoinFailure,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let (request, key) = match purpose {
            Purpose::MakeJoin { user, room_id } => ("make_join", (room_id.clone(), user.clone())),
            Purpose::SendJoin { user, room_id } => ("send_join", (room_id.clone(), user.clone())),
            _ => return,
        };
        if self.user_is_joined(&key.0, &key.1) {
            // A `send_join` whose answer was lost, stored here anyway (`send_join_gave_up`).
            self.joins.remove(&key);
            return;
        }
        let name = self.directory.names.get(to as usize).cloned().unwrap_or_else(|| to.to_string());
        let Some(attempt) = self.joins.get_mut(&key) else { return };
        attempt.errors.push(format!("{request} to {name}: {}", failure.describe()));
        if !failure.moves_on(request) {
            let reason = format!("{request} to {name} refused the join ({})", failure.describe());
            return self.join_failed(key, reason, out);
        }
        attempt.next += 1;
        if attempt.next < attempt.candidates.len() {
            return self.ask_join_candidate(&key, now, out);
        }
        if attempt.round >= JOIN_ROUNDS {
            let reason =
                format!("no candidate resident answered in {JOIN_ROUNDS} rounds (last: {})", attempt.errors.join("; "));
            return self.join_failed(key, reason, out);
        }
        attempt.waiting = true;
        let (round, at) = (attempt.round, now + join_retry_delay_us(attempt.round));
        out.push(Output::SetTimer { at, timer: Timer::RetryJoin { room_id: key.0, user: key.1, round } });
    }

    /// The backoff after a round ended: the next round, over the candidates known now.
    pub(crate) fn on_retry_join(
        &mut self,
        room_id: String,
        user: String,
        round: u32,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let key = (room_id, user);
        let Some(attempt) = self.joins.get(&key).filter(|a| a.waiting && a.round == round) else {
            return; // a timer of an attempt lost in a crash
        };
        let (via, directory) = (attempt.via.clone(), attempt.directory.clone());
        if self.has_joined_user(&key.0) {
            // Another local user joined meanwhile: the join is a local event now.
            self.joins.remove(&key);
            let d = Draft::member(key.1.clone(), key.1.clone(), "join");
            if let Err(why) = self.create_and_send(&key.0, d, now, out) {
                self.record(out, SimEvent::JoinFailed { user: key.1, room: key.0, reason: why, rounds: round });
            }
            return;
        }
        let candidates = self.join_candidates(&key.0, &via, &directory);
        let attempt = self.joins.get_mut(&key).expect("checked");
        if candidates.is_empty() {
            return self.join_failed(key, "no resident server to join through".into(), out);
        }
        *attempt =
            JoinAttempt { candidates, next: 0, round: round + 1, waiting: false, errors: Vec::new(), via, directory };
        self.ask_join_candidate(&key, now, out);
    }

    fn join_failed(&mut self, key: (String, String), reason: String, out: &mut Vec<Output>) {
        let rounds = self.joins.remove(&key).map_or(0, |a| a.round);
        self.forget_held_for_join(&key.0);
        self.record(out, SimEvent::JoinFailed { user: key.1, room: key.0, reason, rounds });
    }

    /// The server crashed: the joins under way are lost (their clients get an error).
    pub(crate) fn joins_lost_in_crash(&mut self, out: &mut Vec<Output>) {
        for ((room, user), a) in std::mem::take(&mut self.joins) {
            let reason = "the joining server crashed during the join".to_owned();
            self.record(out, SimEvent::JoinFailed { user, room, reason, rounds: a.round });
        }
    }

    /// Whether this server's current state of the room has `user` joined.
    pub(crate) fn user_is_joined(&self, room_id: &str, user: &str) -> bool {
        self.rooms
            .get(room_id)
            .and_then(|r| r.current_event("m.room.member", user))
            .is_some_and(|m| m.membership() == Some(Membership::Join))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::crypto::{self, KeyPair};
    use crate::scenario::{parse_scenario, ActionKind};
    use crate::sim::federation::{Message, Outcome, RequestId};
    use crate::sim::rng::RngStreams;
    use crate::sim::server::{Directory, Input, KEY_ID};
    use std::sync::Arc;

    const ROOM: &str = "!room:hs1";
    const USER: &str = "@u0:hs3";

    /// hs3 (node 2) of hs1..hs3, holding no replica: every join it makes is remote.
    fn joiner() -> Server {
        let names = ["hs1", "hs2", "hs3"];
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
        let text = "[scenario]\nname = \"t\"\nend = \"1s\"\n[[servers]]\nprefix = \"hs\"\ncount = 3\n";
        let sc = parse_scenario("t.toml", text, &[]).expect("scenario");
        Server::new(2, &sc.servers[2], key("hs3"), RngStreams::new(1).stream("server/hs3"), dir)
    }

    fn join(via: Vec<ServerIdx>, directory: Vec<ServerIdx>) -> Input {
        Input::Action(ClientAction {
            user: USER.into(),
            room_name: "main".into(),
            room_id: Some(ROOM.into()),
            kind: ActionKind::Join,
            target: None,
            level: None,
            join_rule: None,
            text: None,
            create: None,
            server: None,
            via,
            directory,
            allow: Vec::new(),
            address: None,
            client: None,
            account_data: None,
        })
    }

    /// The `make_join` requests among `out`: (destination, request ID).
    fn make_joins(out: &[Output]) -> Vec<(ServerIdx, RequestId)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { to, message: Message::Request { id, body: Request::MakeJoin { .. } }, .. } => {
                    Some((*to, *id))
                }
                _ => None,
            })
            .collect()
    }

    fn answer(
        s: &mut Server,
        (to, id): (ServerIdx, RequestId),
        status: u16,
        errcode: &str,
        now: SimTime,
    ) -> Vec<Output> {
        let outcome = Outcome::Error { status, errcode: errcode.into() };
        s.handle(Input::Deliver { from: to, message: Message::Response { id, outcome } }, now)
    }

    fn join_failed(out: &[Output]) -> Option<(String, u32)> {
        out.iter().find_map(|o| match o {
            Output::Event(SimEvent::JoinFailed { reason, rounds, .. }) => Some((reason.clone(), *rounds)),
            _ => None,
        })
    }

    #[test]
    fn candidates_are_via_then_inviter_then_directory_without_self_or_repeats() {
        let mut s = joiner();
        s.invites.insert(ROOM.into(), 1);
        assert_eq!(s.join_candidates(ROOM, &[], &[0, 2, 1]), vec![1, 0], "inviter first, then the directory");
        assert_eq!(s.join_candidates(ROOM, &[0], &[1]), vec![0, 1], "via first; the directory only without via");
    }

    #[test]
    fn a_404_moves_on_to_the_next_candidate() {
        let mut s = joiner();
        let out = s.handle(join(vec![], vec![0, 1]), 0);
        let first = make_joins(&out);
        assert_eq!(first.iter().map(|m| m.0).collect::<Vec<_>>(), vec![0]);
        let out = answer(&mut s, first[0], 404, "M_NOT_FOUND", 1_000);
        assert_eq!(make_joins(&out).iter().map(|m| m.0).collect::<Vec<_>>(), vec![1], "hs2 asked next");
        assert!(join_failed(&out).is_none());
    }

    #[test]
    fn a_timeout_moves_on_to_the_next_candidate_after_the_request_retries() {
        let mut s = joiner();
        let out = s.handle(join(vec![], vec![0, 1]), 0);
        let (_, id) = make_joins(&out)[0];
        let retries = s.config.request_retries;
        let mut out = Vec::new();
        for i in 0..=retries {
            let at = u64::from(i + 1) * 10_000_000;
            out = s.handle(Input::Timer(Timer::RequestTimeout { id }), at);
            if i < retries {
                // The retry waits out its backoff (retry.rs), then re-sends the same request.
                let retry = out.iter().find_map(|o| match o {
                    Output::SetTimer { at, timer: Timer::RetryRequest { id: r } } if *r == id => Some(*at),
                    _ => None,
                });
                let retry_at = retry.expect("a retry is scheduled, not a new candidate");
                assert!(make_joins(&out).is_empty(), "nothing sent before the backoff");
                let resent = s.handle(Input::Timer(Timer::RetryRequest { id }), retry_at);
                assert_eq!(make_joins(&resent), vec![(0, id)], "a re-send of the same request, not a new candidate");
            }
        }
        assert_eq!(make_joins(&out).iter().map(|m| m.0).collect::<Vec<_>>(), vec![1], "hs2 asked after hs1 timed out");
    }

    #[test]
    fn a_403_ends_the_join_with_its_reason() {
        let mut s = joiner();
        let out = s.handle(join(vec![], vec![0, 1]), 0);
        let out = answer(&mut s, make_joins(&out)[0], 403, "M_FORBIDDEN", 1_000);
        assert!(make_joins(&out).is_empty(), "no other candidate after a refusal");
        let (reason, rounds) = join_failed(&out).expect("recorded");
        assert_eq!((reason.as_str(), rounds), ("make_join to hs1 refused the join (403 M_FORBIDDEN)", 1));
        assert!(s.joins.is_empty() && s.is_idle());
    }

    /// Every round fails at once (404 from the only candidate): the rounds start 5, 10, 20, 40
    /// and 60 s after the previous one failed; the sixth failure ends the join.
    #[test]
    fn rounds_back_off_5_10_20_40_60_s_then_the_join_fails() {
        let mut s = joiner();
        let mut now = 0;
        let mut ask = make_joins(&s.handle(join(vec![0], vec![]), now))[0];
        let mut waits = Vec::new();
        for round in 1..=JOIN_ROUNDS {
            now += 1_000;
            let out = answer(&mut s, ask, 404, "M_NOT_FOUND", now);
            if round == JOIN_ROUNDS {
                let (reason, rounds) = join_failed(&out).expect("recorded after the last round");
                assert_eq!(rounds, JOIN_ROUNDS);
                assert!(
                    reason.contains("in 6 rounds") && reason.contains("make_join to hs1: 404 M_NOT_FOUND"),
                    "{reason}"
                );
                break;
            }
            assert!(join_failed(&out).is_none(), "round {round}");
            let (at, timer) = out
                .iter()
                .find_map(|o| match o {
                    Output::SetTimer { at, timer: t @ Timer::RetryJoin { .. } } => Some((*at, t.clone())),
                    _ => None,
                })
                .expect("next round armed");
            waits.push(at - now);
            now = at;
            ask = make_joins(&s.handle(Input::Timer(timer), now))[0];
        }
        assert_eq!(waits, vec![5_000_000, 10_000_000, 20_000_000, 40_000_000, 60_000_000]);
        assert!(s.joins.is_empty());
    }
}
