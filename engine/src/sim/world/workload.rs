//! What a workload's client does at one arrival, given what its home server shows it (as a
//! client reads its room state through the client-server API before acting).
//!
//! - Nothing is attempted by a user who is not joined (as the home server's current state
//!   says), or whose home server is down: a client does not post to a room it is not in.
//! - **Churn cycle**: at an arrival the user leaves, and rejoins 5–60 s later (uniform) through
//!   the join candidates (`server/joining.rs`). A cycle whose rejoin would fall at or after the
//!   workload's `stop` is not started, so nothing a workload starts goes on after it (the join's
//!   own retries are the server's, as for any join).
//! - **State changes** draw from [`STATE_CHANGE_MIX`] among the kinds the user's power allows
//!   (v11 auth rules 7 and 9, read on the home server's current state); with none allowed,
//!   nothing is attempted. A `join_rules` change restates the room's configured rule, so churn
//!   can always rejoin.
//! - **Power changes** pick a target whose level is below the sender's (rule 9: a peer or a
//!   superior cannot be changed) and a level of 0 or 50 not above the sender's own.

use crate::protocol::auth::{self, AuthState};
use crate::protocol::pdu::{Membership, Pdu};
use crate::scenario::{ActionKind, JoinRule};
use crate::sim::federation::ServerIdx;
use crate::sim::server::{ClientAction, RoomReplica};
use crate::sim::time::SimTime;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The state changes a `state_changes_per_hour` arrival draws from, with their weights.
pub const STATE_CHANGE_MIX: [(ActionKind, u32); 4] =
    [(ActionKind::Topic, 4), (ActionKind::Name, 3), (ActionKind::JoinRule, 1), (ActionKind::Power, 2)];

/// The shortest and longest time out of the room in a churn cycle.
pub const CHURN_AWAY_US: std::ops::Range<u64> = 5_000_000..60_000_000;

/// The power levels the power workload sets.
const POWER_LEVELS_SET: [i64; 2] = [50, 0];

/// The room as the user's home server currently shows it.
pub(super) struct ClientView<'a> {
    room: &'a RoomReplica,
    /// The user's in-room ID (its account key user ID in an account-key room).
    user: &'a str,
    /// Account name → in-room ID (the identity elsewhere).
    in_room: &'a dyn Fn(&str) -> String,
}

impl<'a> ClientView<'a> {
    pub(super) fn new(room: &'a RoomReplica, user: &'a str, in_room: &'a dyn Fn(&str) -> String) -> ClientView<'a> {
        ClientView { room, user, in_room }
    }

    fn joined(&self) -> bool {
        self.room.current_event("m.room.member", self.user).is_some_and(|m| m.membership() == Some(Membership::Join))
    }

    fn auth_state(&self) -> AuthState<'a> {
        AuthState {
            create: self.room.current_event("m.room.create", ""),
            power_levels: self.room.current_event("m.room.power_levels", ""),
            ..AuthState::default()
        }
    }

    fn level_of(&self, user: &str) -> i64 {
        auth::user_power_level(self.room.version, &self.auth_state(), user)
    }

    /// Whether the user's level reaches the one a state event of `event_type` needs (rule 7).
    fn may_send_state(&self, event_type: &str) -> bool {
        let required = self
            .auth_state()
            .power_levels
            .and_then(Pdu::power_levels)
            .map_or(50, |pl| pl.required_level(event_type, true));
        self.level_of(self.user) >= required
    }

    /// Users (account names) whose level the user may change (rule 9: strictly below its own;
    /// not itself).
    fn power_targets(&self, users: &[String]) -> Vec<String> {
        let own = self.level_of(self.user);
        users
            .iter()
            .filter(|u| {
                let id = (self.in_room)(u);
                id != self.user && self.level_of(&id) < own
            })
            .cloned()
            .collect()
    }
}

/// One arrival of a workload generator.
pub(super) struct Arrival<'a> {
    pub(super) kind: ActionKind,
    pub(super) room: &'a str,
    pub(super) user: &'a str,
    pub(super) users: &'a [String],
    /// The arrival's number in its generator (from 1).
    pub(super) n: u64,
    pub(super) now: SimTime,
    pub(super) stop_us: SimTime,
    pub(super) join_rule: JoinRule,
    /// What a room directory lookup gives (for churn's rejoin).
    pub(super) directory: &'a [ServerIdx],
}

/// The actions of one arrival and when each goes to the user's server (none: nothing attempted).
pub(super) fn plan(a: &Arrival, view: Option<&ClientView>, rng: &mut ChaCha8Rng) -> Vec<(SimTime, ClientAction)> {
    let Some(view) = view.filter(|v| v.joined()) else { return Vec::new() };
    let base = |kind| {
        let mut act = super::schedule::action(a.room, a.user, kind);
        act.text = Some(format!("{} {}", kind.as_str(), a.n));
        act
    };
    match a.kind {
        ActionKind::Leave => {
            let back = a.now + rng.gen_range(CHURN_AWAY_US);
            if back >= a.stop_us {
                return Vec::new();
            }
            let mut join = base(ActionKind::Join);
            join.text = None;
            join.directory = a.directory.to_vec();
            let mut leave = base(ActionKind::Leave);
            leave.text = None;
            vec![(a.now, leave), (back, join)]
        }
        ActionKind::Topic => state_change(a, view, rng).map(|act| vec![(a.now, act)]).unwrap_or_default(),
        ActionKind::Power => {
            power_change(a, view, rng, base(ActionKind::Power)).map(|act| vec![(a.now, act)]).unwrap_or_default()
        }
        kind => vec![(a.now, base(kind))],
    }
}

/// A draw from [`STATE_CHANGE_MIX`] among what the user may do.
fn state_change(a: &Arrival, view: &ClientView, rng: &mut ChaCha8Rng) -> Option<ClientAction> {
    let allowed: Vec<(ActionKind, u32)> = STATE_CHANGE_MIX
        .into_iter()
        .filter(|(kind, _)| match kind {
            ActionKind::Topic => view.may_send_state("m.room.topic"),
            ActionKind::Name => view.may_send_state("m.room.name"),
            ActionKind::JoinRule => view.may_send_state("m.room.join_rules"),
            _ => view.may_send_state("m.room.power_levels") && !view.power_targets(a.users).is_empty(),
        })
        .collect();
    let total: u32 = allowed.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut pick = rng.gen_range(0..total);
    let mut kind = allowed[0].0;
    for (k, w) in &allowed {
        if pick < *w {
            kind = *k;
            break;
        }
        pick -= w;
    }
    let mut act = super::schedule::action(a.room, a.user, kind);
    match kind {
        ActionKind::JoinRule => act.join_rule = Some(a.join_rule),
        ActionKind::Power => return power_change(a, view, rng, act),
        _ => act.text = Some(format!("{} {}", kind.as_str(), a.n)),
    }
    Some(act)
}

/// A power change the user may make (rule 9), if any.
fn power_change(a: &Arrival, view: &ClientView, rng: &mut ChaCha8Rng, mut act: ClientAction) -> Option<ClientAction> {
    if !view.may_send_state("m.room.power_levels") {
        return None;
    }
    let targets = view.power_targets(a.users);
    if targets.is_empty() {
        return None;
    }
    let own = view.level_of(view.user);
    let levels: Vec<i64> = POWER_LEVELS_SET.into_iter().filter(|l| *l <= own).collect();
    if levels.is_empty() {
        return None;
    }
    act.target = Some(targets[rng.gen_range(0..targets.len())].clone());
    act.level = Some(levels[rng.gen_range(0..levels.len())]);
    act.text = None;
    Some(act)
}
