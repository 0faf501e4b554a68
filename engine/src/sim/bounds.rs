//! Named bounds (TigerBeetle style): every queue and every generator of the simulation has a
//! cap. Reaching one is never silent: it is a [`super::event::SimEvent::CapReached`] record,
//! counted in `summary.json` (`caps_reached`), and where it makes the scenario impossible to
//! simulate faithfully, the run stops with a note saying so.

/// PDUs waiting for one destination in a server's federation sender. Beyond it the queue is
/// dropped and the destination is caught up (`server/outbound.rs`): sent the newest event of
/// each room, from which it fetches the rest with `get_missing_events`, as Synapse catches up a
/// destination after a long outage.
pub const OUTBOUND_QUEUE_PER_DESTINATION: usize = 50_000;

/// Received events one replica keeps waiting for missing parents. Beyond it a new
/// disconnected event is dropped (it is fetched again when its children arrive).
pub const PENDING_EVENTS_PER_ROOM: usize = 100_000;

/// Events of a room a server is joining, received before the join's answer and held until it
/// arrives (`server/receipt.rs`). Beyond it a new one is dropped (it is fetched again when its
/// children arrive).
pub const EARLY_EVENTS_PER_JOIN: usize = 10_000;

/// Inputs waiting in the world's queue. Reaching it stops the run: the scenario generates more
/// simultaneous work than the simulator is meant to hold.
pub const WORLD_QUEUE: usize = 50_000_000;

/// Actions one workload generator (one user, one kind of action) may create in a run.
pub const WORKLOAD_ACTIONS_PER_GENERATOR: u64 = 10_000_000;
