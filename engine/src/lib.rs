//! roomsim's deterministic core: the Matrix protocol (PDUs, auth rules, state resolution) and,
//! on top of it, the simulated federation.

pub mod metrics;
pub mod protocol;
pub mod scenario;
pub mod sim;
