//! MSC4243 account keys, the simulator's side: the `/query/accounts` responder
//! ([`query`]) and each observing server's mapping cache ([`cache`]). The protocol side (who
//! signs an event in an account-key room) is in `protocol/`.

pub mod cache;
pub mod query;

#[cfg(test)]
mod tests;
