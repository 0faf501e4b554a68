//! MSC4243 account keys, the simulator's side: the `/query/accounts` responder
//! ([`query`]), each observing server's mapping cache ([`cache`]) and what its clients are shown
//! ([`view`]). The protocol side (who signs an event in an account-key room) is in `protocol/`.
//! Not wired into the simulated servers yet: the scenario parser refuses account-key rooms until
//! they create account-key users.

pub mod book;
pub mod cache;
pub mod query;
pub mod view;

#[cfg(test)]
mod tests;
