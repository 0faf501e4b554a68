//! Every account key of a run (MSC4243 §2): for each scenario user, the keys its domain
//! registers for it, one per generation (the first at the start, one more per
//! `reregister_account` fault). Seeds come from the run's seed, so a run's keys are a function
//! of the scenario and the seed. The book is the world's truth (what the domain bound, used by
//! the measures); a server knows only its own users' keys and what `/query/accounts` tells it.

use crate::protocol::crypto::{self, KeyPair};
use std::collections::{BTreeMap, BTreeSet};

/// One account key of a user.
#[derive(Clone)]
pub struct AccountKey {
    pub seed: [u8; 32],
    /// URL-safe unpadded base64 of the public key (the localpart in rooms).
    pub key: String,
    /// `@<key>:<domain>`.
    pub user_id: String,
}

impl AccountKey {
    pub fn new(seed: [u8; 32], domain: &str) -> AccountKey {
        let pair = KeyPair::account_from_seed(seed);
        AccountKey { seed, user_id: crypto::account_user_id(&pair, domain), key: pair.entity }
    }

    pub fn pair(&self) -> KeyPair {
        KeyPair::account_from_seed(self.seed)
    }
}

/// The account keys of a run, and which rooms use them.
#[derive(Default)]
pub struct AccountBook {
    /// Account name user ID → its keys, generation 0 first.
    generations: BTreeMap<String, Vec<AccountKey>>,
    /// Account key → (account name user ID, generation).
    owner: BTreeMap<String, (String, usize)>,
    /// Names of the scenario's rooms whose version has `account_keys`.
    rooms: BTreeSet<String>,
}

impl AccountBook {
    /// `users`: (account name user ID, generations); `seed_of(user, generation)`.
    pub fn new(
        users: impl IntoIterator<Item = (String, usize)>,
        rooms: BTreeSet<String>,
        seed_of: impl Fn(&str, usize) -> [u8; 32],
    ) -> AccountBook {
        let mut book = AccountBook { rooms, ..AccountBook::default() };
        if book.rooms.is_empty() {
            return book;
        }
        for (user, count) in users {
            let domain = crate::protocol::ids::domain_of(&user).unwrap_or_default().to_owned();
            let keys: Vec<AccountKey> =
                (0..count.max(1)).map(|g| AccountKey::new(seed_of(&user, g), &domain)).collect();
            for (g, k) in keys.iter().enumerate() {
                book.owner.insert(k.key.clone(), (user.clone(), g));
            }
            book.generations.insert(user, keys);
        }
        book
    }

    /// Whether any room of the run uses account keys.
    pub fn is_active(&self) -> bool {
        !self.rooms.is_empty()
    }

    /// Whether the scenario room `name` is an account-key room.
    pub fn is_account_room(&self, name: &str) -> bool {
        self.rooms.contains(name)
    }

    /// The keys of a user, generation 0 first.
    pub fn keys_of(&self, user: &str) -> &[AccountKey] {
        self.generations.get(user).map_or(&[], Vec::as_slice)
    }

    /// Who an account key belongs to: (account name user ID, generation).
    pub fn owner_of(&self, key: &str) -> Option<(&str, usize)> {
        self.owner.get(key).map(|(u, g)| (u.as_str(), *g))
    }

    /// Every user with account keys.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.generations.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for AccountBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountBook").field("users", &self.generations.len()).field("rooms", &self.rooms).finish()
    }
}
