//! The simulated world: homeservers exchanging real PDUs through a faulty network, driven by a
//! deterministic scheduler. Reads time only from [`time::SimTime`] and randomness only from the
//! named streams of [`rng::RngStreams`].
//!
//! Data flows one way: scenario → [`world::World`] → (servers ↔ network) → [`log`] records and
//! metric samples. A server is an explicit state machine (`Server::handle(input, now) → outputs`);
//! the world owns time, delivery and faults.

pub mod accounts;
pub mod bounds;
pub mod event;
pub mod federation;
pub mod identity_client;
pub mod identity_event;
pub mod identity_node;
pub mod identity_server;
pub mod log;
pub mod network;
pub mod node;
pub mod notary;
pub mod observe;
pub mod portable;
pub mod replay;
pub mod rng;
pub mod server;
pub mod time;
pub mod world;
