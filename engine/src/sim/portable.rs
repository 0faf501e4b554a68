//! MSC4348 portable accounts and MSC4345 room-scoped server keys, as the world knows them:
//! every scenario user's account key (`@<key>` in portable-account rooms; leaving and
//! rejoining never changes it, MSC4348 §2 rule 1) and every server's key secret, from which
//! its key in each room is derived (MSC4345 §2: a key per room, for the room's lifetime).
//! Seeds come from the run's seed. The book is the world's truth; a server uses only its own
//! users' keys and its own room keys.

use crate::protocol::crypto::{self, KeyPair};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Default)]
pub struct PortableBook {
    /// Names of the scenario's rooms whose version has `portable_accounts`.
    rooms: BTreeSet<String>,
    /// Account name user ID → account key seed.
    seeds: BTreeMap<String, [u8; 32]>,
    /// `@<key>` → account name user ID.
    owner: BTreeMap<String, String>,
    /// Server name → the secret its room keys derive from.
    server_secrets: BTreeMap<String, [u8; 32]>,
}

impl std::fmt::Debug for PortableBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Seeds are secrets of the run: not printed.
        f.debug_struct("PortableBook").field("rooms", &self.rooms).field("accounts", &self.owner.len()).finish()
    }
}

impl PortableBook {
    pub fn new(
        users: impl IntoIterator<Item = String>,
        servers: impl IntoIterator<Item = String>,
        rooms: BTreeSet<String>,
        seed_of: impl Fn(&str) -> [u8; 32],
    ) -> PortableBook {
        let mut book = PortableBook { rooms, ..PortableBook::default() };
        if book.rooms.is_empty() {
            return book;
        }
        for user in users {
            let seed = seed_of(&format!("portable/account/{user}"));
            let id = format!("@{}", KeyPair::account_from_seed(seed).entity);
            book.owner.insert(id, user.clone());
            book.seeds.insert(user, seed);
        }
        for server in servers {
            let secret = seed_of(&format!("portable/server/{server}"));
            book.server_secrets.insert(server, secret);
        }
        book
    }

    pub fn is_active(&self) -> bool {
        !self.rooms.is_empty()
    }

    /// Whether the scenario room `name` has portable accounts.
    pub fn is_portable_room(&self, name: &str) -> bool {
        self.rooms.contains(name)
    }

    /// The account key pair of the account named `user`.
    pub fn account(&self, user: &str) -> Option<KeyPair> {
        self.seeds.get(user).map(|s| KeyPair::account_from_seed(*s))
    }

    /// `@<account key>` of the account named `user`.
    pub fn account_id(&self, user: &str) -> Option<String> {
        self.account(user).map(|k| format!("@{}", k.entity))
    }

    /// The account name user ID of `@<account key>`.
    pub fn owner_of(&self, account_id: &str) -> Option<&str> {
        self.owner.get(account_id).map(String::as_str)
    }

    /// `server`'s key in the room `room_id` (MSC4345 §2), derived from its secret.
    pub fn server_key(&self, server: &str, room_id: &str) -> Option<KeyPair> {
        let secret = self.server_secrets.get(server)?;
        let mut material = secret.to_vec();
        material.extend_from_slice(room_id.as_bytes());
        Some(KeyPair::account_from_seed(crypto::sha256(&material)))
    }
}
