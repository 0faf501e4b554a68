//! Per-room routing: which server each user of a room is joined through. Plain Matrix (v11,
//! v12) has one answer, the domain of the user ID, and that is the default; MSC4348 (portable
//! accounts) binds an account to the server that co-signed its membership, which need not be
//! its domain. Everything that asks "which server is this user on" for a room (destinations,
//! the signer a receiving server requires, joined servers, invite targets) asks the room's
//! [`Routing`], so a proposal changes the binding, not those places.

use crate::protocol::ids;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Routing {
    /// Users bound to a server other than their domain.
    bound: BTreeMap<String, String>,
}

impl Routing {
    /// The server `user` is joined (or would join) through.
    pub fn server_of<'a>(&'a self, user: &'a str) -> Option<&'a str> {
        self.bound.get(user).map(String::as_str).or_else(|| ids::domain_of(user))
    }

    /// Binds `user` to `server` in this room (a proposal's move or co-signed membership).
    pub fn bind(&mut self, user: &str, server: &str) {
        if ids::domain_of(user) == Some(server) {
            self.bound.remove(user);
        } else {
            self.bound.insert(user.to_owned(), server.to_owned());
        }
    }
}

/// Routing for a user outside any room's context (e.g. an invite's target before the room
/// exists on its server): the default rule.
pub fn default_server_of(user: &str) -> Option<&str> {
    ids::domain_of(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_domain_and_bindings_override_it() {
        let mut r = Routing::default();
        assert_eq!(r.server_of("@a:hs1"), Some("hs1"));
        r.bind("@a:hs1", "hs2");
        assert_eq!(r.server_of("@a:hs1"), Some("hs2"));
        assert_eq!(r.server_of("@b:hs1"), Some("hs1"));
        r.bind("@a:hs1", "hs1");
        assert_eq!(r.server_of("@a:hs1"), Some("hs1"));
        assert!(r.bound.is_empty(), "binding back to the domain forgets the override");
    }
}
