//! `POST /_matrix/federation/v1/query/accounts` (MSC4243 §4, §7): the responder's side.
//!
//! A domain answers, for each account key asked, one entry:
//! * known: `{"account_name", "domain", "signatures"}`, the object signed by the account key
//!   itself (entity = the key, key ID `ed25519:1`), so a change of name or domain is detectable;
//! * erased: `{"errcode": "M_ERASED", "domain", "signatures"}`, signed the same way, so that a
//!   DNS takeover cannot erase users without their private keys (§7);
//! * unknown: `{"errcode": "M_UNKNOWN"}` in the seed's and the latest design
//!   ([`UnknownEncoding::Errcode`]), or no entry at all in the older design
//!   ([`UnknownEncoding::Omit`]): the difference the proposal's authors want measured.
//!
//! With `erasure: {id, limit}` the answer also carries every key erased after `id`, requested
//! or not, at most `limit`, and the cursor to resume from with `has_more` (§7, the erasure feed).
//! A batch is at most [`MAX_BATCH`] keys (§4); a larger one is refused with 413 `M_TOO_LARGE`.

use crate::protocol::crypto::{self, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Keys per request (MSC4243 §4: ≈ 90 KB request, ≈ 1 MB response at most).
pub const MAX_BATCH: usize = 2048;

/// The key ID of every account-key signature (MSC4243 §3: a constant, unrelated to the domain).
pub const ACCOUNT_KEY_ID: &str = "ed25519:1";

pub use crate::scenario::UnknownEncoding;

/// The erasure poll of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasurePoll {
    /// The last erasure ID this requester has seen from this server.
    pub id: u64,
    /// How many erased keys it accepts.
    pub limit: u32,
}

/// The request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct QueryAccounts {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub account_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure: Option<ErasurePoll>,
}

/// Where the erasure feed resumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureCursor {
    pub id: u64,
    pub has_more: bool,
}

/// The `200` answer: one entry per key (see the module documentation), keys in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AccountsAnswer {
    pub account_keys: BTreeMap<String, Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erasure: Option<ErasureCursor>,
}

/// A refused request: status and errcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub errcode: &'static str,
}

struct Account {
    name: String,
    key: KeyPair,
    /// The erasure ID, once erased.
    erased: Option<u64>,
}

/// A false name for `(key, true name)`, or `None` for the truth.
pub type Lie<'a> = &'a dyn Fn(&str, &str) -> Option<String>;

/// The accounts of one domain, as its `/query/accounts` answers them.
pub struct AccountDirectory {
    domain: String,
    accounts: BTreeMap<String, Account>,
    /// Erased keys, in erasure order: the erasure ID of `erasures[i]` is `i + 1`.
    erasures: Vec<String>,
}

impl AccountDirectory {
    pub fn new(domain: &str) -> AccountDirectory {
        AccountDirectory { domain: domain.to_owned(), accounts: BTreeMap::new(), erasures: Vec::new() }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Registers account `name` with the ed25519 key from `seed`; returns its account key
    /// (URL-safe unpadded base64, MSC4243 §2).
    pub fn register(&mut self, name: &str, seed: [u8; 32]) -> String {
        let probe = KeyPair::from_seed("", ACCOUNT_KEY_ID, seed);
        let key = crypto::b64_url_encode(probe.public_key().as_bytes());
        let pair = KeyPair::from_seed(&key, ACCOUNT_KEY_ID, seed);
        self.accounts.insert(key.clone(), Account { name: name.to_owned(), key: pair, erased: None });
        key
    }

    /// Erases the account of `key` (GDPR, MSC4243 §7); returns its erasure ID, or `None` when
    /// the key is not an account here or is erased already.
    pub fn erase(&mut self, key: &str) -> Option<u64> {
        let account = self.accounts.get_mut(key).filter(|a| a.erased.is_none())?;
        self.erasures.push(key.to_owned());
        let id = self.erasures.len() as u64;
        account.erased = Some(id);
        Some(id)
    }

    /// Forgets the account of `key` (a re-registration or a restore from backup, MSC4243 §2):
    /// the key is answered as unknown from now on. Returns whether it was an account here.
    pub fn forget(&mut self, key: &str) -> bool {
        self.accounts.remove(key).is_some()
    }

    /// The account names registered here, in key order.
    pub fn names(&self) -> impl Iterator<Item = (&str, &str)> {
        self.accounts.iter().map(|(k, a)| (k.as_str(), a.name.as_str()))
    }

    /// The latest erasure ID (0: nothing erased).
    pub fn latest_erasure(&self) -> u64 {
        self.erasures.len() as u64
    }

    /// The account name of `key`, unless unknown or erased.
    pub fn name_of(&self, key: &str) -> Option<&str> {
        self.accounts.get(key).filter(|a| a.erased.is_none()).map(|a| a.name.as_str())
    }

    /// The signed entry for a known or erased key; `None` for a key that is not an account here.
    /// `lie` may give another name for a key: a domain that equivocates signs it all the same
    /// (it holds its users' account keys).
    fn entry(&self, key: &str, lie: Lie<'_>) -> Option<Map<String, Value>> {
        let account = self.accounts.get(key)?;
        let name = lie(key, &account.name).unwrap_or_else(|| account.name.clone());
        let mut object = match account.erased {
            None => json!({"account_name": name, "domain": self.domain}),
            Some(_) => json!({"errcode": "M_ERASED", "domain": self.domain}),
        }
        .as_object()
        .cloned()
        .expect("an object");
        crypto::sign_object(&mut object, &account.key);
        Some(object)
    }

    /// Answers one request (see the module documentation).
    pub fn answer(&self, request: &QueryAccounts, encoding: UnknownEncoding) -> Result<AccountsAnswer, Refusal> {
        self.answer_with(request, encoding, &|_, _| None)
    }

    /// [`AccountDirectory::answer`], naming some keys falsely (see [`AccountDirectory::entry`]).
    pub fn answer_with(
        &self,
        request: &QueryAccounts,
        encoding: UnknownEncoding,
        lie: Lie<'_>,
    ) -> Result<AccountsAnswer, Refusal> {
        if request.account_keys.len() > MAX_BATCH {
            return Err(Refusal { status: 413, errcode: "M_TOO_LARGE" });
        }
        let mut answer = AccountsAnswer::default();
        for key in &request.account_keys {
            match self.entry(key, lie) {
                Some(entry) => {
                    answer.account_keys.insert(key.clone(), entry);
                }
                None if encoding == UnknownEncoding::Errcode => {
                    let entry = json!({"errcode": "M_UNKNOWN"}).as_object().cloned().expect("an object");
                    answer.account_keys.insert(key.clone(), entry);
                }
                None => {}
            }
        }
        if let Some(poll) = request.erasure {
            let from = (poll.id as usize).min(self.erasures.len());
            let feed: Vec<&String> = self.erasures[from..].iter().take(poll.limit as usize).collect();
            for key in &feed {
                answer.account_keys.insert((*key).clone(), self.entry(key, lie).expect("an erased account"));
            }
            let id = (from + feed.len()) as u64;
            answer.erasure = Some(ErasureCursor { id, has_more: id < self.latest_erasure() });
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(i: u8) -> [u8; 32] {
        [i; 32]
    }

    fn directory() -> (AccountDirectory, Vec<String>) {
        let mut d = AccountDirectory::new("hs1.example");
        let keys = (1..=6).map(|i| d.register(&format!("user{i}"), seed(i))).collect();
        (d, keys)
    }

    #[test]
    fn a_known_key_is_answered_with_its_name_signed_by_the_key_itself() {
        let (d, keys) = directory();
        assert_eq!(keys[0].len(), 43, "URL-safe unpadded base64 of 32 bytes");
        assert!(!keys.iter().any(|k| k.contains('+') || k.contains('/')));
        let a =
            d.answer(&QueryAccounts { account_keys: vec![keys[0].clone()], erasure: None }, UnknownEncoding::Errcode);
        let entry = &a.expect("answered").account_keys[&keys[0]];
        assert_eq!(entry["account_name"], "user1");
        assert_eq!(entry["domain"], "hs1.example");
        let sig = crypto::signature_of(entry, &keys[0], ACCOUNT_KEY_ID).expect("signed by the account key");
        let public = crypto::b64_decode_any(&keys[0]).expect("key bytes");
        let public = ed25519_dalek::VerifyingKey::from_bytes(&public.try_into().expect("32 bytes")).expect("a key");
        assert!(crypto::verify(&public, &crypto::object_signing_bytes(entry), &sig));
    }

    #[test]
    fn an_unknown_key_is_an_explicit_errcode_or_omitted_by_design() {
        let (d, keys) = directory();
        let stranger = "A".repeat(43);
        let q = QueryAccounts { account_keys: vec![keys[1].clone(), stranger.clone()], erasure: None };
        let with = d.answer(&q, UnknownEncoding::Errcode).expect("answered");
        assert_eq!(with.account_keys[&stranger], *json!({"errcode": "M_UNKNOWN"}).as_object().unwrap());
        let without = d.answer(&q, UnknownEncoding::Omit).expect("answered");
        assert!(!without.account_keys.contains_key(&stranger));
        assert!(without.account_keys.contains_key(&keys[1]));
    }

    #[test]
    fn batches_above_2048_keys_are_refused() {
        let (d, _) = directory();
        let q = QueryAccounts { account_keys: vec!["A".repeat(43); MAX_BATCH + 1], erasure: None };
        assert_eq!(d.answer(&q, UnknownEncoding::Errcode), Err(Refusal { status: 413, errcode: "M_TOO_LARGE" }));
        let q = QueryAccounts { account_keys: vec!["A".repeat(43); MAX_BATCH], erasure: None };
        assert!(d.answer(&q, UnknownEncoding::Errcode).is_ok());
    }

    /// The digest's constructed poll sequence (MSC4243 §7): from 5 with limit 3, three keys and
    /// `{id 8, has_more}`; from 8, the last one and `{id 9, has_more: false}`.
    #[test]
    fn the_erasure_feed_pages_by_id_and_limit_and_includes_unrequested_keys() {
        let mut d = AccountDirectory::new("hs1.example");
        let keys: Vec<String> = (1..=9).map(|i| d.register(&format!("u{i}"), seed(i))).collect();
        for k in &keys {
            d.erase(k);
        }
        assert_eq!(d.erase(&keys[0]), None, "erased once");
        let poll = |id, limit| QueryAccounts { account_keys: vec![], erasure: Some(ErasurePoll { id, limit }) };
        let a = d.answer(&poll(5, 3), UnknownEncoding::Errcode).expect("answered");
        assert_eq!(a.account_keys.len(), 3);
        assert_eq!(a.erasure, Some(ErasureCursor { id: 8, has_more: true }));
        for k in &keys[5..8] {
            assert_eq!(a.account_keys[k]["errcode"], "M_ERASED");
            assert!(crypto::signature_of(&a.account_keys[k], k, ACCOUNT_KEY_ID).is_some());
        }
        let b = d.answer(&poll(8, 3), UnknownEncoding::Errcode).expect("answered");
        assert_eq!(b.account_keys.keys().collect::<Vec<_>>(), vec![&keys[8]]);
        assert_eq!(b.erasure, Some(ErasureCursor { id: 9, has_more: false }));
        // A requested erased key is answered erased too, and its name is gone.
        assert_eq!(d.name_of(&keys[0]), None);
    }
}
