//! Benchmark support for roomsim: a room-DAG generator of our own ([`generator`]), loading of
//! the reference fixtures ([`fixtures`]) and a pre-judged DAG with the state before and after
//! every event ([`prepared`]), so that benches can time one kernel at a time.
//!
//! The benches themselves are in `benches/benches/` (criterion); see `BENCHMARKS.md` at the
//! workspace root for the figures and how to reproduce them.

pub mod fixtures;
pub mod generator;
pub mod prepared;
