//! The Matrix protocol, with no simulation in it: canonical JSON, identifiers, PDUs, hashing and
//! signing, the authorization rules, state resolution and the room DAG. It does no I/O, reads no
//! clock and draws no random numbers; `dag verify` and every simulated server share it.

pub mod auth;
pub mod crypto;
pub mod dag;
pub mod fasthash;
pub mod identity;
pub mod ids;
pub mod json;
#[cfg(test)]
mod msc4243_tests;
#[cfg(test)]
mod participation_tests;
pub mod pdu;
pub mod redaction;
pub mod room_version;
pub mod server_acl;
pub mod signers;
pub mod state_res;
#[cfg(test)]
pub(crate) mod test_support;
pub mod verify;
