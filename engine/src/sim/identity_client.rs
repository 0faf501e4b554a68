//! A user's clients and their `m.identity_server` account data (Client-Server API, "Identity
//! server discovery"; MSC2230): which identity server, if any, a client asks before an invite
//! by email. The setting lives in the user's global account data on the homeserver; each
//! client holds the copy its last sync brought, so two clients of one user can act on
//! different settings while a write is in flight: the race the scenarios measure.
//!
//! A small deterministic state machine: the homeserver orders writes by arrival (last writer
//! wins, as account data does), every write reaches each other client after the sync delay the
//! caller gives, and a client that has not loaded the account data yet makes no identity
//! request (MSC2230 client rule 1).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The content of `m.identity_server` as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preference {
    /// No event (or no `base_url`): the client's default, never written back (rules 4 and 7).
    Absent,
    /// `{"base_url": "<url>"}`: that identity server (rule 2).
    Url(String),
    /// `{"base_url": null}`: the user chose none; no identity request at all (rule 3).
    Disabled,
}

/// Where an invite by email goes, for one client at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteRoute {
    /// Look the address up at, and store the invite with, this identity server.
    Ask(String),
    /// No identity server: the invite by email is not attempted.
    NotAttempted { why: &'static str },
}

/// What `pref` means for a client whose own default (from `.well-known`) is `default`.
pub fn route(pref: &Preference, default: Option<&str>) -> InviteRoute {
    match pref {
        Preference::Url(url) => InviteRoute::Ask(url.clone()),
        Preference::Disabled => InviteRoute::NotAttempted { why: "m.identity_server disables identity servers" },
        Preference::Absent => match default {
            Some(url) => InviteRoute::Ask(url.to_owned()),
            None => InviteRoute::NotAttempted { why: "no m.identity_server and no default" },
        },
    }
}

/// One user's account data on its homeserver and the copies its clients hold.
#[derive(Debug, Clone)]
pub struct UserClients {
    /// The homeserver's value and its stream position (writes applied).
    server: Preference,
    position: u64,
    /// Per client: the value and position of its last sync (`None`: not loaded yet).
    clients: BTreeMap<String, Option<(Preference, u64)>>,
    /// Counts: writes that replaced a value another client had written since the writer's last
    /// sync (lost updates), and actions a client took on a value the homeserver no longer held.
    pub lost_writes: u64,
    pub stale_actions: u64,
}

impl UserClients {
    pub fn new(initial: Preference, clients: &[&str]) -> UserClients {
        UserClients {
            server: initial,
            position: 0,
            clients: clients.iter().map(|c| (c.to_string(), None)).collect(),
            lost_writes: 0,
            stale_actions: 0,
        }
    }

    /// The client's initial sync: it now knows the account data (rule 1).
    pub fn load(&mut self, client: &str) {
        let current = (self.server.clone(), self.position);
        if let Some(c) = self.clients.get_mut(client) {
            *c = Some(current);
        }
    }

    /// A write from `client` reaches the homeserver. Returns the new position, which each other
    /// client receives with [`Self::sync`] after its sync delay.
    pub fn write(&mut self, client: &str, value: Preference) -> u64 {
        let seen = self.clients.get(client).and_then(|c| c.as_ref()).map_or(0, |(_, p)| *p);
        if seen < self.position {
            self.lost_writes += 1;
        }
        self.server = value;
        self.position += 1;
        let current = (self.server.clone(), self.position);
        if let Some(c) = self.clients.get_mut(client) {
            *c = Some(current);
        }
        self.position
    }

    /// `client` syncs up to the homeserver's current value (rule 5: it switches at once).
    pub fn sync(&mut self, client: &str) {
        if matches!(self.clients.get(client), Some(Some(_))) {
            self.load(client);
        }
    }

    /// Where `client` would send an invite by email now. `None` before its first sync (rule 1:
    /// no identity request before the account data is loaded). Counts a stale action when the
    /// client's copy differs from the homeserver's value.
    pub fn invite_route(&mut self, client: &str, default: Option<&str>) -> Option<InviteRoute> {
        let (pref, _) = self.clients.get(client)?.as_ref()?;
        if *pref != self.server {
            self.stale_actions += 1;
        }
        Some(route(pref, default))
    }

    pub fn server_value(&self) -> &Preference {
        &self.server
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_states_route_as_msc2230_says() {
        let ids = Some("https://ids.example");
        assert_eq!(route(&Preference::Absent, ids), InviteRoute::Ask("https://ids.example".into()));
        assert!(matches!(route(&Preference::Absent, None), InviteRoute::NotAttempted { .. }));
        assert_eq!(route(&Preference::Url("https://other".into()), ids), InviteRoute::Ask("https://other".into()));
        assert!(
            matches!(route(&Preference::Disabled, ids), InviteRoute::NotAttempted { .. }),
            "null wins over the default"
        );
    }

    #[test]
    fn no_identity_request_before_the_account_data_is_loaded() {
        let mut u = UserClients::new(Preference::Url("https://ids.example".into()), &["phone"]);
        assert_eq!(u.invite_route("phone", None), None);
        u.load("phone");
        assert_eq!(u.invite_route("phone", None), Some(InviteRoute::Ask("https://ids.example".into())));
    }

    #[test]
    fn two_clients_racing_a_write_lose_one_and_act_on_a_stale_value() {
        let mut u = UserClients::new(Preference::Absent, &["phone", "laptop"]);
        u.load("phone");
        u.load("laptop");
        // The phone disables identity servers; before the laptop syncs, it sets one: the
        // phone's write is lost (the laptop had not seen it), last writer wins.
        u.write("phone", Preference::Disabled);
        u.write("laptop", Preference::Url("https://ids.example".into()));
        assert_eq!(u.lost_writes, 1);
        assert_eq!(u.server_value(), &Preference::Url("https://ids.example".into()));
        // The phone, not yet synced, still refuses to invite by email: a stale action.
        assert!(matches!(u.invite_route("phone", None), Some(InviteRoute::NotAttempted { .. })));
        assert_eq!(u.stale_actions, 1);
        u.sync("phone");
        assert_eq!(u.invite_route("phone", None), Some(InviteRoute::Ask("https://ids.example".into())));
        assert_eq!(u.stale_actions, 1, "in step again");
    }
}
