//! Consistency measures, as observers of the world ([`crate::sim::observe::Observer`]): they
//! learn from the simulation's events and query the world through its view; the world knows
//! nothing of them. [`observers`] lists the standard set; [`instrumented_world`] builds a world
//! measured by it.
//!
//! - [`RoomMeasures`] (`room_measures`): agreement between servers over time, divergence
//!   episodes and the time to agreement (`agreement`), who should be in each room and who is
//!   (`membership`), auth and soft-fail disagreements, event lag, the per-room part of
//!   `summary.json` and the `metrics.csv` rows;
//! - [`invariants::Invariants`]: the invariant checks of `--check-invariants`;
//! - [`account_keys::AccountKeys`] (MSC4243) and [`participation::Participation`] (MSC4345 and
//!   MSC4348), [`portable_view::PortableView`] (the MSC4345 §7–§8 / MSC4348 client view): the
//!   proposals' measures;
//! - [`identity::Identity`]: the identity measures (lookups, invites by e-mail, third-party
//!   invites and the servers' verdicts on them).

pub mod account_keys;
pub mod agreement;
pub mod identity;
pub mod invariants;
pub mod membership;
pub mod participation;
pub mod portable_view;
mod room_measures;

pub use room_measures::{agreement, RoomMeasures};

use crate::scenario::Scenario;
use crate::sim::federation::ServerIdx;
use crate::sim::log::LogWriter;
pub use crate::sim::observe::MetricRow;
use crate::sim::observe::{Held, Observer, WorldView};
use crate::sim::world::World;
use std::collections::BTreeSet;

/// The standard observers of a run.
pub fn observers(scenario: &Scenario) -> Vec<Box<dyn Observer>> {
    vec![
        Box::new(RoomMeasures::new(scenario)),
        Box::new(invariants::Invariants::new(scenario)),
        Box::new(account_keys::AccountKeys::new(scenario)),
        Box::new(participation::Participation::new(scenario)),
        Box::new(portable_view::PortableView::new(scenario)),
        Box::new(identity::Identity::new(scenario)),
    ]
}

/// A distribution of durations (µs) as `summary.json` writes it: `count`, and `p50`, `p95`,
/// `max` in ms by nearest rank (the smallest value with at least p % of the values at or below
/// it); `null`s when there are none.
pub(crate) fn percentiles(values: &[u64]) -> serde_json::Value {
    use crate::sim::time::to_ms;
    use serde_json::json;
    if values.is_empty() {
        return json!({"count": 0, "p50": null, "p95": null, "max": null});
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = |p: u64| v[((p * v.len() as u64).div_ceil(100) as usize).clamp(1, v.len()) - 1];
    json!({"count": v.len(), "p50": to_ms(rank(50)), "p95": to_ms(rank(95)), "max": to_ms(*v.last().expect("not empty"))})
}

/// A world for `scenario` measured by the standard observers.
pub fn instrumented_world(scenario: &Scenario, seed: u64, log: LogWriter) -> World {
    World::new(scenario, seed, log, observers(scenario))
}

/// Per-event verdicts of the honest servers holding a room: (auth disagreements, soft-fail
/// disagreements).
pub fn disagreements(view: &dyn WorldView, room_id: &str) -> (usize, usize) {
    let holders: Vec<ServerIdx> = view.holders(room_id).into_iter().filter(|k| view.is_honest(*k)).collect();
    let mut auth = 0;
    let mut soft = 0;
    for pdu in view.room_pdus(room_id) {
        let mut verdicts: BTreeSet<&str> = BTreeSet::new();
        let mut soft_failed: BTreeSet<bool> = BTreeSet::new();
        for k in &holders {
            match view.held(*k, room_id, &pdu.event_id) {
                Some(Held::Rejected) => {
                    verdicts.insert("rejected");
                }
                Some(Held::Accepted { soft_failed: s }) => {
                    verdicts.insert("valid");
                    soft_failed.insert(s);
                }
                // An outlier has no timeline verdict to compare.
                Some(Held::Outlier { .. }) | None => {}
            }
        }
        auth += usize::from(verdicts.len() > 1);
        soft += usize::from(soft_failed.len() > 1);
    }
    (auth, soft)
}
