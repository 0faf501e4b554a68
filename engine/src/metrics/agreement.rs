//! A room's agreement over time and what follows from it: divergence episodes and the time to
//! the final agreement. Pure functions over a recorded timeline, so that the rules of
//! `docs/outputs.md` ("Convergence") can be checked on hand-built timelines.
//!
//! - **agreement**: every server that should be in the room (by the room's membership in the
//!   union DAG) holds a replica, and they all hold the same DAG state and the same current state;
//! - a **divergence episode** runs from the moment agreement is lost to the moment it is regained
//!   (open when the run ends in disagreement);
//! - a **disruption** is a fault that can separate servers: a partition, a crash, a degrade with
//!   loss. A clock skew or a latency-only degrade delays nothing for good and is not one;
//! - **final agreement**, when the room agrees at the end: the first moment of agreement at or
//!   after the *reference*, the end of the last disruption that ended while the room disagreed
//!   (failing that, the end of the last disruption; failing that, the start of the run). A
//!   disruption still in force when agreement came back (the lossy degrade of `partition-heal`)
//!   has not "ended before" it. Later episodes (a new state change propagating, a scripted join)
//!   are listed and counted but do not move it;
//! - **time to agreement**: from the reference to the final agreement. Never clamped: it cannot
//!   be negative by construction.

use crate::sim::time::SimTime;

/// One fault as it happened in the run: `end_us` None when it was still in force at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultWindow {
    /// Index in the scenario's `faults` list.
    pub index: usize,
    /// `partition`, `crash`, `degrade`, `clock_skew`, `heal_all`.
    pub kind: &'static str,
    pub start_us: SimTime,
    pub end_us: Option<SimTime>,
    /// Can separate servers (partition, crash, degrade with loss).
    pub disruption: bool,
}

impl FaultWindow {
    /// Whether the fault was in force at some moment of `[start, end]` (`end` None: to the end).
    fn overlaps(&self, start: SimTime, end: Option<SimTime>) -> bool {
        let before_end = end.is_none_or(|e| self.start_us <= e);
        let after_start = self.end_us.is_none_or(|fe| fe >= start);
        before_end && after_start
    }
}

/// A stretch of disagreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub start_us: SimTime,
    /// None: the room still disagreed when the run ended.
    pub end_us: Option<SimTime>,
    /// Scenario indices of the faults in force at some moment of the episode.
    pub faults: Vec<usize>,
}

/// Agreement of one room over time: the moments it changed, from the room's first evaluation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// `(time, agreed from then on)`, strictly alternating, times non-decreasing.
    changes: Vec<(SimTime, bool)>,
}

impl Timeline {
    /// Records the room's agreement at `t` (only changes are kept).
    pub fn observe(&mut self, t: SimTime, agreed: bool) {
        if self.changes.last().map(|c| c.1) != Some(agreed) {
            debug_assert!(self.changes.last().is_none_or(|c| c.0 <= t), "agreement observed out of order");
            self.changes.push((t, agreed));
        }
    }

    pub fn changes(&self) -> &[(SimTime, bool)] {
        &self.changes
    }

    /// Agreement at the last observation (None: never observed).
    pub fn agreed_now(&self) -> Option<bool> {
        self.changes.last().map(|c| c.1)
    }
}

/// What a room's timeline concludes at the end of the run (all times µs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conclusion {
    pub episodes: Vec<Episode>,
    /// Total length of the episodes (an open one counts up to the end of the run).
    pub diverged_us_total: SimTime,
    /// The end of the run (an open episode lasts to it).
    pub end_us: SimTime,
    pub agreed_at_end: bool,
    /// When the final agreement began (None: no agreement at the end).
    pub agreement_reached_us: Option<SimTime>,
    /// From the end of the last disruption that ended at or before `agreement_reached_us` (or
    /// from 0) to it.
    pub time_to_agreement_us: Option<SimTime>,
    /// The disruption `time_to_agreement_us` is measured from (None: from the run's start).
    pub measured_from_fault: Option<usize>,
    /// Why `time_to_agreement_us` is None, in words.
    pub why_no_time: Option<String>,
}

/// Episodes and the time to agreement of `timeline`, for a run that ended at `end_us` with
/// `faults` (as they happened).
pub fn conclude(timeline: &Timeline, faults: &[FaultWindow], end_us: SimTime) -> Conclusion {
    let changes = timeline.changes();
    let mut episodes = Vec::new();
    for (i, &(t, agreed)) in changes.iter().enumerate() {
        if agreed {
            continue;
        }
        let end = changes.get(i + 1).map(|c| c.0);
        let overlapping = faults.iter().filter(|f| f.overlaps(t, end)).map(|f| f.index).collect();
        episodes.push(Episode { start_us: t, end_us: end, faults: overlapping });
    }
    let diverged_us_total = episodes.iter().map(|e| e.end_us.unwrap_or(end_us).max(e.start_us) - e.start_us).sum();
    let agreed_at_end = changes.last().is_some_and(|c| c.1);
    // The reference: the end of the last disruption that ended while the room disagreed (the
    // disagreement it left behind is what the room recovers from); failing that, the end of the
    // last disruption (the room agreed when it ended), failing that the start of the run.
    let ended: Vec<&FaultWindow> =
        faults.iter().filter(|f| f.disruption && f.end_us.is_some_and(|e| e <= end_us)).collect();
    let end_of = |f: &FaultWindow| f.end_us.expect("ended");
    let reference = ended
        .iter()
        .filter(|f| agreed_at(changes, end_of(f)) == Some(false))
        .max_by_key(|f| (end_of(f), f.index))
        .or_else(|| ended.iter().max_by_key(|f| (end_of(f), f.index)))
        .map(|f| (end_of(f), f.index));
    let from_us = reference.map_or(0, |r| r.0);
    // The final agreement: the first moment at or after the reference when the room agreed.
    // Later episodes (ordinary propagation of new state, a scripted join) are listed but do not
    // move it, as long as the room agrees at the end.
    let agreement_reached_us = if !agreed_at_end {
        None
    } else if agreed_at(changes, from_us) == Some(true) {
        Some(from_us)
    } else {
        changes.iter().find(|c| c.1 && c.0 >= from_us).map(|c| c.0)
    };
    let (time_to_agreement_us, measured_from_fault, why_no_time) = match agreement_reached_us {
        // `reached >= from_us` by construction: a plain subtraction, nothing to clamp.
        Some(reached) => (Some(reached - from_us), reference.map(|r| r.1), None),
        None if changes.is_empty() => (None, None, Some("the room's agreement was never evaluated".to_owned())),
        None => {
            let since = changes.last().map_or(0, |c| c.0);
            (None, None, Some(format!("did not agree by the end (disagreeing since {} ms)", since / 1000)))
        }
    };
    Conclusion {
        episodes,
        diverged_us_total,
        end_us,
        agreed_at_end,
        agreement_reached_us,
        time_to_agreement_us,
        measured_from_fault,
        why_no_time,
    }
}

/// Agreement at `t`: the last change at or before it (None: before the first evaluation).
fn agreed_at(changes: &[(SimTime, bool)], t: SimTime) -> Option<bool> {
    changes.iter().take_while(|c| c.0 <= t).last().map(|c| c.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: SimTime = 1_000_000;

    fn fault(index: usize, kind: &'static str, start_s: u64, end_s: Option<u64>) -> FaultWindow {
        let disruption = matches!(kind, "partition" | "crash" | "degrade");
        FaultWindow { index, kind, start_us: start_s * S, end_us: end_s.map(|e| e * S), disruption }
    }

    fn timeline(points: &[(u64, bool)]) -> Timeline {
        let mut t = Timeline::default();
        for &(ms, agreed) in points {
            t.observe(ms * 1000, agreed);
        }
        t
    }

    /// The bundled `partition-heal` shape: agreement from creation (1 s), lost at 40 s during the
    /// partition (30–120 s), regained at 126 s while the lossy degrade (125–145 s) is still on,
    /// then a 0.4 s blip at 136.7 s (a state change crossing the degraded link). hs6's clock skew
    /// (10–70 s) is not a disruption. Reference: the partition, the last disruption that ended
    /// while the room disagreed (at 120 s the room disagreed since 40 s); the degrade ended at
    /// 145 s with the room in agreement. Final agreement: first agreement at or after 120 s =
    /// 126 s → 126 − 120 = 6 s, the blip does not move it. Episodes: 40–126 s (86 s; overlapping
    /// skew, partition and degrade) and 136.7–137.1 s (0.4 s; the degrade): 86.4 s in all.
    #[test]
    fn partition_then_agreement_during_a_lossy_degrade_counts_from_the_partition_end() {
        let faults = [
            fault(0, "partition", 30, Some(120)),
            fault(1, "clock_skew", 10, Some(70)),
            fault(2, "degrade", 125, Some(145)),
        ];
        let points = [(1_000, true), (40_000, false), (126_000, true), (136_700, false), (137_100, true)];
        let c = conclude(&timeline(&points), &faults, 195 * S);
        assert_eq!(c.episodes[0], Episode { start_us: 40 * S, end_us: Some(126 * S), faults: vec![0, 1, 2] });
        assert_eq!(c.episodes[1], Episode { start_us: 136_700_000, end_us: Some(137_100_000), faults: vec![2] });
        assert_eq!(c.diverged_us_total, 86_400_000);
        assert!(c.agreed_at_end);
        assert_eq!(c.agreement_reached_us, Some(126 * S));
        assert_eq!(c.time_to_agreement_us, Some(6 * S));
        assert_eq!(c.measured_from_fault, Some(0));
    }

    /// A clock skew ending at 100 s after a crash that ended at 50 s: agreement lost at 21 s,
    /// back at 60 s. The skew ended later but is not a disruption, so 60 − 50 = 10 s (measured
    /// from the skew's end it would be 60 − 100 < 0, which was formerly clamped to 0).
    #[test]
    fn a_clock_skew_is_not_a_disruption_and_nothing_is_clamped() {
        let faults = [fault(0, "crash", 20, Some(50)), fault(1, "clock_skew", 55, Some(100))];
        let c = conclude(&timeline(&[(0, true), (21_000, false), (60_000, true)]), &faults, 200 * S);
        assert_eq!(c.time_to_agreement_us, Some(10 * S));
        assert_eq!(c.measured_from_fault, Some(0));
    }

    /// A later divergence (a scripted join at 150 s, agreed again at 150.2 s) after the crash
    /// (20–50 s, disagreeing 21–55 s) does not reverse the conclusion: the crash ended while the
    /// room disagreed, the first agreement after 50 s is 55 s → 5 s (the old measure reported
    /// 150.2 − 50 = 100.2 s). Two episodes, 34 s + 0.2 s = 34.2 s, the second overlapping no fault.
    #[test]
    fn a_later_divergence_is_listed_but_does_not_move_the_final_agreement() {
        let faults = [fault(0, "crash", 20, Some(50))];
        let points = [(0, true), (21_000, false), (55_000, true), (150_000, false), (150_200, true)];
        let c = conclude(&timeline(&points), &faults, 300 * S);
        assert_eq!(c.episodes.len(), 2);
        assert_eq!(c.episodes[0].faults, vec![0]);
        assert_eq!(c.episodes[1], Episode { start_us: 150 * S, end_us: Some(150_200_000), faults: vec![] });
        assert_eq!(c.diverged_us_total, 34_200_000);
        assert_eq!(c.agreement_reached_us, Some(55 * S));
        assert_eq!(c.time_to_agreement_us, Some(5 * S));
    }

    /// A partition (10–20 s) during which nothing diverged: the room agreed when it ended, so the
    /// time is 20 − 20 = 0, the only way to get 0.
    #[test]
    fn a_disruption_that_left_no_disagreement_gives_zero() {
        let c = conclude(&timeline(&[(0, true)]), &[fault(0, "partition", 10, Some(20))], 30 * S);
        assert_eq!((c.agreement_reached_us, c.time_to_agreement_us), (Some(20 * S), Some(0)));
        assert!(c.episodes.is_empty());
    }

    /// Disagreeing at the end (lost at 80 s, run ended at 100 s): no time, an open episode of
    /// 20 s, and the reason in words.
    #[test]
    fn no_agreement_at_the_end_gives_no_time_and_says_why() {
        let c = conclude(&timeline(&[(0, true), (80_000, false)]), &[fault(0, "partition", 70, None)], 100 * S);
        assert!(!c.agreed_at_end);
        assert_eq!(c.time_to_agreement_us, None);
        assert_eq!(c.episodes, vec![Episode { start_us: 80 * S, end_us: None, faults: vec![0] }]);
        assert_eq!(c.diverged_us_total, 20 * S);
        assert_eq!(c.why_no_time.as_deref(), Some("did not agree by the end (disagreeing since 80000 ms)"));
    }

    /// No disruption at all: measured from the start of the run (first agreement at 3 s → 3 s).
    #[test]
    fn without_disruptions_time_counts_from_the_start() {
        let c = conclude(&timeline(&[(1_000, false), (3_000, true)]), &[fault(0, "clock_skew", 0, Some(10))], 10 * S);
        assert_eq!(c.time_to_agreement_us, Some(3 * S));
        assert_eq!(c.measured_from_fault, None);
        assert_eq!(c.episodes[0].faults, vec![0]);
    }

    /// Repeated observations of the same agreement keep one change.
    #[test]
    fn the_timeline_keeps_only_changes() {
        let t = timeline(&[(0, true), (1, true), (2, false), (3, false), (4, true)]);
        assert_eq!(t.changes(), &[(0, true), (2_000, false), (4_000, true)]);
    }
}
