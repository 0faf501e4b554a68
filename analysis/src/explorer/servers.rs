//! Every server's forward extremities over time, rebuilt from its `decision` records.
//!
//! The log does not record extremities; a server keeps them as Synapse's
//! `_calculate_new_extremities` does (`engine/src/sim/server/room.rs`, `store_timeline` and
//! `remove_before_rejected`), and that rule only reads what the decisions say:
//!
//! * only a *live* `accepted` timeline event changes them (soft-failed, rejected and outlier
//!   events never do; nor do backfilled events, history rather than news);
//! * its prev events held at that moment leave the set; so do, walking up from those of them
//!   that the server soft-failed or rejected, every soft-failed or rejected event met and the
//!   prev events (as held when they were stored) of each;
//! * the event enters the set unless a timeline event already names it as a prev event.
//!
//! "Timeline" excludes outliers. A `rejected` record does not say whether the event was
//! judged as a timeline event or as an outlier; it is taken as a timeline event when its prev
//! events are all in the server's timeline or the stage is `state_before` (outliers are judged
//! only against their own auth events).

use std::collections::BTreeSet;

/// A server's verdict, as the log's `decision` records name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Accepted,
    SoftFailed,
    Rejected,
    Outlier,
    Dropped,
}

impl Verdict {
    /// The log's name (`soft_failed`, …); `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Verdict> {
        Some(match name {
            "accepted" => Verdict::Accepted,
            "soft_failed" => Verdict::SoftFailed,
            "rejected" => Verdict::Rejected,
            "outlier" => Verdict::Outlier,
            "dropped" => Verdict::Dropped,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::SoftFailed => "soft_failed",
            Verdict::Rejected => "rejected",
            Verdict::Outlier => "outlier",
            Verdict::Dropped => "dropped",
        }
    }
}

/// One decision as the rule reads it: indices into the page's events and servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub event: usize,
    pub server: usize,
    pub verdict: Verdict,
    /// The event came in a `/backfill` answer (never an extremity).
    pub backfilled: bool,
    /// A rejection at stage `state_before` (only timeline events are judged there).
    pub state_before_stage: bool,
}

/// How one decision changed its server's forward extremities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The decided event entered the set.
    pub added: bool,
    /// Events that left it (ascending).
    pub removed: Vec<usize>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        !self.added && self.removed.is_empty()
    }
}

/// One server's room as its decisions build it.
struct Replica {
    /// The last verdict on each event (`None`: never stored).
    last: Vec<Option<Verdict>>,
    in_timeline: Vec<bool>,
    /// Named as a prev event by a timeline event.
    cited: Vec<bool>,
    /// The prev events held when each event was first stored (the server's DAG prev list).
    stored_prev: Vec<Vec<usize>>,
    extremities: BTreeSet<usize>,
}

impl Replica {
    fn new(n: usize) -> Replica {
        Replica {
            last: vec![None; n],
            in_timeline: vec![false; n],
            cited: vec![false; n],
            stored_prev: vec![Vec::new(); n],
            extremities: BTreeSet::new(),
        }
    }

    fn holds(&self, e: usize) -> bool {
        matches!(self.last[e], Some(v) if v != Verdict::Dropped)
    }

    fn soft_failed_or_rejected(&self, e: usize) -> bool {
        matches!(self.last[e], Some(Verdict::SoftFailed | Verdict::Rejected))
    }

    fn apply(&mut self, step: &Step, prev: &[usize]) -> Change {
        let e = step.event;
        if step.verdict == Verdict::Dropped {
            return Change::default(); // not stored
        }
        if !self.holds(e) {
            self.stored_prev[e] = prev.iter().copied().filter(|&p| self.holds(p)).collect();
        }
        let timeline = match step.verdict {
            Verdict::Outlier | Verdict::Dropped => false,
            Verdict::Accepted | Verdict::SoftFailed => true,
            Verdict::Rejected => step.state_before_stage || prev.iter().all(|&p| self.in_timeline[p]),
        };
        self.last[e] = Some(step.verdict);
        if !timeline {
            return Change::default();
        }
        self.in_timeline[e] = true;
        for &p in prev {
            self.cited[p] = true;
        }
        if step.verdict != Verdict::Accepted || step.backfilled {
            return Change::default();
        }
        let before = self.extremities.clone();
        let held: Vec<usize> = prev.iter().copied().filter(|&p| self.holds(p)).collect();
        for p in &held {
            self.extremities.remove(p);
        }
        // Up from soft-failed or rejected prev events, as `remove_before_rejected`.
        let mut todo: Vec<usize> = held.iter().copied().filter(|&p| self.soft_failed_or_rejected(p)).collect();
        let mut seen: BTreeSet<usize> = todo.iter().copied().collect();
        while let Some(x) = todo.pop() {
            self.extremities.remove(&x);
            for i in 0..self.stored_prev[x].len() {
                let p = self.stored_prev[x][i];
                self.extremities.remove(&p);
                if self.soft_failed_or_rejected(p) && seen.insert(p) {
                    todo.push(p);
                }
            }
        }
        let added = !self.cited[e] && self.extremities.insert(e);
        Change { added, removed: before.difference(&self.extremities).copied().collect() }
    }
}

/// The change each decision made to its server's forward extremities, in decision order.
/// `prev[e]` are event `e`'s prev events (indices of events the page knows; others left out).
/// Steps naming an event or server out of range change nothing.
pub fn extremity_changes(prev: &[Vec<usize>], servers: usize, steps: &[Step]) -> Vec<Change> {
    let n = prev.len();
    let mut replicas: Vec<Replica> = (0..servers).map(|_| Replica::new(n)).collect();
    steps
        .iter()
        .map(|s| match replicas.get_mut(s.server) {
            Some(r) if s.event < n => r.apply(s, &prev[s.event]),
            _ => Change::default(),
        })
        .collect()
}

/// Replays `changes` (as [`extremity_changes`] made them) and calls `at(server, step, set)`
/// with a server's extremities after each step that changed them and is the last such step of
/// its server at its time (`times[k]`), keeping one point in every `stride` (and always the
/// server's last one).
pub fn replay_points(
    steps: &[Step],
    changes: &[Change],
    times: &[u64],
    servers: usize,
    stride: usize,
    mut at: impl FnMut(usize, usize, &BTreeSet<usize>),
) {
    let stride = stride.max(1);
    let points = change_points(steps, changes, times, servers);
    let mut last_of: Vec<Option<usize>> = vec![None; servers];
    for &k in &points {
        last_of[steps[k].server] = Some(k);
    }
    let mut sets: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); servers];
    let mut counts = vec![0usize; servers];
    let mut next_point = points.iter().peekable();
    for (k, (s, c)) in steps.iter().zip(changes).enumerate() {
        if c.is_empty() || s.server >= servers {
            continue;
        }
        let set = &mut sets[s.server];
        for r in &c.removed {
            set.remove(r);
        }
        if c.added {
            set.insert(s.event);
        }
        while next_point.peek().is_some_and(|&&p| p < k) {
            next_point.next();
        }
        if next_point.peek() == Some(&&k) {
            next_point.next();
            let n = counts[s.server];
            counts[s.server] += 1;
            if n.is_multiple_of(stride) || last_of[s.server] == Some(k) {
                at(s.server, k, set);
            }
        }
    }
}

/// The steps after which a server's extremities are as they stay until its next change at a
/// later time: of the changing steps of a server at one time, the last. Ascending.
pub fn change_points(steps: &[Step], changes: &[Change], times: &[u64], servers: usize) -> Vec<usize> {
    let mut last: Vec<Option<usize>> = vec![None; servers];
    let mut out = Vec::new();
    for (k, (s, c)) in steps.iter().zip(changes).enumerate() {
        if c.is_empty() || s.server >= servers {
            continue;
        }
        if let Some(j) = last[s.server] {
            if times[j] != times[k] {
                out.push(j);
            }
        }
        last[s.server] = Some(k);
    }
    out.extend(last.into_iter().flatten());
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(event: usize, verdict: Verdict) -> Step {
        Step { event, server: 0, verdict, backfilled: false, state_before_stage: false }
    }

    fn run(prev: &[Vec<usize>], steps: &[Step]) -> BTreeSet<usize> {
        let changes = extremity_changes(prev, 1, steps);
        let mut set = BTreeSet::new();
        for (s, c) in steps.iter().zip(&changes) {
            for r in &c.removed {
                assert!(set.remove(r), "removes only members");
            }
            if c.added {
                assert!(set.insert(s.event));
            }
        }
        set
    }

    /// 0 ← 1 ← {2, 3}: two accepted children of 1 are both extremities; 4 merging them is the
    /// only one.
    #[test]
    fn accepted_events_replace_their_prev_events() {
        let prev = vec![vec![], vec![0], vec![1], vec![1], vec![2, 3]];
        let mut steps: Vec<Step> = (0..4).map(|e| step(e, Verdict::Accepted)).collect();
        assert_eq!(run(&prev, &steps), BTreeSet::from([2, 3]));
        steps.push(step(4, Verdict::Accepted));
        assert_eq!(run(&prev, &steps), BTreeSet::from([4]));
    }

    /// A soft-failed child leaves its parent an extremity (the page's old "accepted without an
    /// accepted child" gave the same here); an accepted event built on the soft-failed one
    /// removes it, its parent, and stops there.
    #[test]
    fn a_soft_failed_child_keeps_its_parent_until_someone_builds_past_it() {
        // 0 ← 1 ← 2 (soft-failed) ← 3 (accepted), and 4 off 1 accepted before 3.
        let prev = vec![vec![], vec![0], vec![1], vec![2], vec![1]];
        let mut steps = vec![step(0, Verdict::Accepted), step(1, Verdict::Accepted), step(2, Verdict::SoftFailed)];
        assert_eq!(run(&prev, &steps), BTreeSet::from([1]), "soft-failed events are never extremities");
        steps.push(step(4, Verdict::Accepted));
        assert_eq!(run(&prev, &steps), BTreeSet::from([4]));
        steps.push(step(3, Verdict::Accepted));
        assert_eq!(run(&prev, &steps), BTreeSet::from([3, 4]));
    }

    /// Where the rule departs from "accepted events without an accepted child": an accepted
    /// event whose only child this server soft-failed, but another accepted event built past
    /// that child, is no extremity (Synapse's `_get_prevs_before_rejected`).
    #[test]
    fn building_past_a_soft_failed_event_removes_its_parent_too() {
        // 0 ← 1 ← 2 (soft-failed); 3 cites 2 and 0; 1 has no accepted child yet is gone.
        let prev = vec![vec![], vec![0], vec![1], vec![2, 0]];
        let steps = vec![
            step(0, Verdict::Accepted),
            step(1, Verdict::Accepted),
            step(2, Verdict::SoftFailed),
            step(3, Verdict::Accepted),
        ];
        assert_eq!(run(&prev, &steps), BTreeSet::from([3]));
    }

    #[test]
    fn outliers_rejections_backfill_and_drops_change_nothing() {
        let prev = vec![vec![], vec![0], vec![1], vec![1], vec![1]];
        let mut backfilled = step(3, Verdict::Accepted);
        backfilled.backfilled = true;
        let steps = vec![
            step(0, Verdict::Accepted),
            step(1, Verdict::Accepted),
            step(2, Verdict::Rejected),
            backfilled,
            step(4, Verdict::Outlier),
            step(4, Verdict::Dropped),
        ];
        let changes = extremity_changes(&prev, 1, &steps);
        assert!(changes[2..].iter().all(Change::is_empty), "{changes:?}");
        assert_eq!(run(&prev, &steps), BTreeSet::from([1]));
    }

    /// An event already named as a prev event by a timeline event (its child arrived first,
    /// judged across a gap) does not enter the set.
    #[test]
    fn a_cited_event_is_no_extremity() {
        let prev = vec![vec![], vec![0], vec![1]];
        let steps = vec![step(0, Verdict::Accepted), step(2, Verdict::Accepted), step(1, Verdict::Accepted)];
        assert_eq!(run(&prev, &steps), BTreeSet::from([2]));
    }

    #[test]
    fn points_keep_the_last_change_per_time_and_sample_by_stride() {
        let prev: Vec<Vec<usize>> = (0..6).map(|e| if e == 0 { vec![] } else { vec![e - 1] }).collect();
        let steps: Vec<Step> = (0..6).map(|e| step(e, Verdict::Accepted)).collect();
        let times = [0, 0, 5, 6, 7, 8];
        let changes = extremity_changes(&prev, 1, &steps);
        assert_eq!(change_points(&steps, &changes, &times, 1), vec![1, 2, 3, 4, 5]);
        let mut seen = Vec::new();
        replay_points(&steps, &changes, &times, 1, 2, |_, k, set| seen.push((k, set.clone())));
        assert_eq!(seen, vec![(1, BTreeSet::from([1])), (3, BTreeSet::from([3])), (5, BTreeSet::from([5]))]);
        // Bad indices are ignored, not a panic.
        let bad =
            [Step { event: 99, server: 7, verdict: Verdict::Accepted, backfilled: false, state_before_stage: false }];
        assert_eq!(extremity_changes(&prev, 1, &bad), vec![Change::default()]);
    }
}
