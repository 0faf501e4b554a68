//! The mapping cache of one observing server (MSC4243 §5, §6.1): per `(account key, claimed
//! domain)`, what the server learnt from `/query/accounts` and when it asks again.
//!
//! States: `Pending` (never answered yet), `Verified{name}` (listed with an object signed by that
//! very key, naming the asked domain: cached permanently), `Unverified{reason}`, `Erased`
//! (terminal: a validly signed `M_ERASED`, the name deleted, never verified again), and, in the
//! seed's three-category design ([`Categories::ThreeState`]), `Unknown{reason}` (no usable
//! answer: retried periodically until verified or unverified).
//!
//! How an answer is read depends on the two design knobs the proposal's authors compare:
//! * [`UnknownEncoding::Errcode`] (seed, latest): only an explicit errcode says "unknown"; a key
//!   missing from a `200` map is an anomaly (a stripping proxy, a stale cache) retried soon;
//! * [`UnknownEncoding::Omit`] (before the seed): a missing key *is* the negative answer;
//! * [`Categories::TwoState`] (latest): every non-verified outcome is `Unverified`, retried on its
//!   reason's schedule (never-answered domains first); [`Categories::ThreeState`] (seed): an
//!   explicit negative is a final `Unverified` (retried only on the long schedule), an anomaly or
//!   a failed request is `Unknown` (retried on the short one).
//!
//! When an omission persists, [`CacheConfig::settle_omitted_after`] chooses between retrying with
//! backoff forever (`None`) and settling as unverified after N omissions: the trade-off the seed
//! discusses, measured rather than assumed.

use super::query::{AccountsAnswer, UnknownEncoding, ACCOUNT_KEY_ID};
use crate::protocol::crypto;
use crate::sim::time::SimTime;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub use crate::scenario::Categories;

/// Why a key is not verified.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum Reason {
    /// The request timed out (after its retries).
    Timeout,
    /// A non-2xx answer.
    Non2xx(u16),
    /// A `200` whose body could not be read.
    Undecodable,
    /// The key was missing from a `200` map.
    Omitted,
    /// An explicit errcode other than `M_ERASED`.
    ExplicitUnknown(String),
    /// The entry's signature does not verify with the key.
    BadSignature,
    /// The entry names another domain than the one asked.
    DomainMismatch,
}

impl Reason {
    /// Whether the domain answered at all (retries prefer domains that never did, §6.1).
    pub fn domain_answered(&self) -> bool {
        !matches!(self, Reason::Timeout | Reason::Non2xx(_))
    }

    /// Whether this reason is an anomaly (retry soon) rather than a negative answer.
    fn is_anomaly(&self, encoding: UnknownEncoding) -> bool {
        match self {
            Reason::Omitted => encoding == UnknownEncoding::Errcode,
            Reason::Timeout | Reason::Non2xx(_) | Reason::Undecodable => true,
            Reason::ExplicitUnknown(_) | Reason::BadSignature | Reason::DomainMismatch => false,
        }
    }
}

/// What a server holds for one `(key, domain)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Mapping {
    Pending,
    Verified { name: String },
    Unverified { reason: Reason },
    Unknown { reason: Reason },
    Erased,
}

impl Mapping {
    /// The name of the state, as `summary.json` counts them.
    pub fn label(&self) -> &'static str {
        match self {
            Mapping::Pending => "pending",
            Mapping::Verified { .. } => "verified",
            Mapping::Unverified { .. } => "unverified",
            Mapping::Unknown { .. } => "unknown",
            Mapping::Erased => "erased",
        }
    }
}

/// Retry delays (µs) after the n-th failed or negative try; the last repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule(pub Vec<u64>);

impl Schedule {
    fn delay(&self, tries: u32) -> Option<u64> {
        let i = (tries.max(1) as usize - 1).min(self.0.len().checked_sub(1)?);
        Some(self.0[i])
    }
}

/// The knobs of one server's cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub categories: Categories,
    pub unknown_encoding: UnknownEncoding,
    /// After an anomaly: a missing key under `errcode`, a timeout, a non-2xx, an unreadable body.
    pub retry_anomaly: Schedule,
    /// After a negative answer (explicit unknown, bad signature, wrong domain; an omission under
    /// `omit`). Empty: never retried.
    pub retry_negative: Schedule,
    /// Settle an omitted key as a negative answer after this many omissions in a row.
    pub settle_omitted_after: Option<u32>,
    /// Keys per request (MSC4243 §4: 2048).
    pub batch_size: usize,
    /// The per-domain global backoff (MSC4243 §10: MUST, against amplification through fake
    /// domains): after the n-th failed request in a row to a domain, nothing is asked of it for
    /// `domain_backoff_first × 2^(n-1)`, at most `domain_backoff_max` (µs).
    pub domain_backoff_first: u64,
    pub domain_backoff_max: u64,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        const S: u64 = 1_000_000;
        CacheConfig {
            categories: Categories::TwoState,
            unknown_encoding: UnknownEncoding::Errcode,
            retry_anomaly: Schedule(vec![10 * S, 30 * S, 60 * S, 300 * S]),
            retry_negative: Schedule(vec![3600 * S, 6 * 3600 * S, 24 * 3600 * S]),
            settle_omitted_after: None,
            batch_size: super::query::MAX_BATCH,
            domain_backoff_first: 5 * S,
            domain_backoff_max: 3600 * S,
        }
    }
}

/// One cache entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub mapping: Mapping,
    /// Answers or failures taken so far.
    pub tries: u32,
    /// Omissions in a row.
    pub omissions: u32,
    /// Anomalies, and negative answers, in a row (which retry of its schedule comes next).
    pub anomalies: u32,
    pub negatives: u32,
    /// When to ask again (`None`: never, or a request is out).
    pub retry_at: Option<SimTime>,
    /// When the key was first seen, and when it became verified.
    pub seen_at: SimTime,
    pub verified_at: Option<SimTime>,
}

/// The mapping cache of one server.
#[derive(Debug, Clone, Default)]
pub struct MappingCache {
    pub config: CacheConfig,
    /// Test only (`World::misread_omissions_for_test`): a missing key reads as verified.
    #[doc(hidden)]
    pub misread_omissions_for_test: bool,
    entries: BTreeMap<(String, String), Entry>,
    /// The last erasure ID seen from each domain.
    erasure_cursor: BTreeMap<String, u64>,
    /// Per domain: failed requests in a row, and until when nothing is asked of it.
    backoff: BTreeMap<String, (u32, SimTime)>,
}

impl MappingCache {
    pub fn new(config: CacheConfig) -> MappingCache {
        MappingCache {
            config,
            misread_omissions_for_test: false,
            entries: BTreeMap::new(),
            erasure_cursor: BTreeMap::new(),
            backoff: BTreeMap::new(),
        }
    }

    /// A key seen in a room (a member, a sender): `Pending` and due now if new. Returns whether
    /// it is new.
    pub fn observe(&mut self, key: &str, domain: &str, now: SimTime) -> bool {
        let k = (key.to_owned(), domain.to_owned());
        if self.entries.contains_key(&k) {
            return false;
        }
        let entry = Entry {
            mapping: Mapping::Pending,
            tries: 0,
            omissions: 0,
            anomalies: 0,
            negatives: 0,
            retry_at: Some(now),
            seen_at: now,
            verified_at: None,
        };
        self.entries.insert(k, entry);
        true
    }

    pub fn get(&self, key: &str, domain: &str) -> Option<&Entry> {
        self.entries.get(&(key.to_owned(), domain.to_owned()))
    }

    pub fn entries(&self) -> impl Iterator<Item = (&(String, String), &Entry)> {
        self.entries.iter()
    }

    /// The erasure ID to poll `domain` from.
    pub fn erasure_cursor(&self, domain: &str) -> u64 {
        self.erasure_cursor.get(domain).copied().unwrap_or(0)
    }

    /// Until when `domain` is backed off (`None`: not).
    pub fn backed_off_until(&self, domain: &str, now: SimTime) -> Option<SimTime> {
        self.backoff.get(domain).map(|(_, until)| *until).filter(|until| *until > now)
    }

    /// The keys due at `now`, grouped per domain in batches of at most `batch_size`, domains
    /// that never answered first (§6.1), then by domain name; each batch in key order. A
    /// backed-off domain's keys stay due until its backoff ends. Taking them marks them in
    /// flight.
    pub fn take_due(&mut self, now: SimTime) -> Vec<(String, Vec<String>)> {
        let mut groups: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
        let backoff = &self.backoff;
        for ((key, domain), e) in self.entries.iter_mut() {
            let held_back = backoff.get(domain).is_some_and(|(_, until)| *until > now);
            if e.retry_at.is_some_and(|t| t <= now) && !held_back {
                e.retry_at = None;
                let answered = match &e.mapping {
                    Mapping::Unverified { reason } | Mapping::Unknown { reason } => reason.domain_answered(),
                    _ => false,
                };
                groups.entry((answered, domain.clone())).or_default().push(key.clone());
            }
        }
        let size = self.config.batch_size.max(1);
        groups
            .into_iter()
            .flat_map(|((_, d), keys)| keys.chunks(size).map(|c| (d.clone(), c.to_vec())).collect::<Vec<_>>())
            .collect()
    }

    /// The earliest time something is due (a backed-off domain's keys: when its backoff ends).
    pub fn next_due(&self) -> Option<SimTime> {
        self.entries
            .iter()
            .filter_map(|((_, d), e)| Some(e.retry_at?.max(self.backoff.get(d).map_or(0, |(_, until)| *until))))
            .min()
    }

    /// The request for `keys` of `domain` failed (timeout or error status): the domain backs off.
    pub fn on_failure(&mut self, domain: &str, keys: &[String], reason: Reason, now: SimTime) {
        let (first, max) = (self.config.domain_backoff_first, self.config.domain_backoff_max);
        let b = self.backoff.entry(domain.to_owned()).or_insert((0, now));
        b.0 += 1;
        b.1 = now + first.saturating_mul(1u64 << (b.0 - 1).min(32)).min(max);
        for key in keys {
            self.settle(key, domain, Err(reason.clone()), now);
        }
    }

    /// A `200` answer for `keys` asked of `domain`.
    pub fn on_answer(&mut self, domain: &str, keys: &[String], answer: &AccountsAnswer, now: SimTime) {
        self.backoff.remove(domain);
        for key in keys {
            let outcome = match answer.account_keys.get(key) {
                Some(entry) => read_entry(key, domain, entry),
                None if self.misread_omissions_for_test => Ok(Read::Verified("ghost".into())),
                None => Err(Reason::Omitted),
            };
            self.settle(key, domain, outcome, now);
        }
        // Erased keys of the feed, requested or not: only those this server holds matter.
        for (key, entry) in &answer.account_keys {
            if !keys.contains(key) && read_entry(key, domain, entry) == Ok(Read::Erased) {
                if let Some(e) = self.entries.get_mut(&(key.clone(), domain.to_owned())) {
                    e.mapping = Mapping::Erased;
                    e.retry_at = None;
                }
            }
        }
        if let Some(cursor) = answer.erasure {
            let c = self.erasure_cursor.entry(domain.to_owned()).or_insert(0);
            *c = (*c).max(cursor.id);
        }
    }

    fn settle(&mut self, key: &str, domain: &str, outcome: Result<Read, Reason>, now: SimTime) {
        let config = self.config.clone();
        let Some(e) = self.entries.get_mut(&(key.to_owned(), domain.to_owned())) else { return };
        if matches!(e.mapping, Mapping::Erased | Mapping::Verified { .. }) {
            // Verified is permanent (§6.1) and Erased terminal (§7), except that a verified
            // key may be erased.
            if outcome == Ok(Read::Erased) {
                e.mapping = Mapping::Erased;
            }
            e.retry_at = None;
            return;
        }
        e.tries += 1;
        match outcome {
            Ok(Read::Verified(name)) => {
                e.mapping = Mapping::Verified { name };
                e.verified_at = Some(now);
                e.omissions = 0;
                e.retry_at = None;
            }
            Ok(Read::Erased) => {
                e.mapping = Mapping::Erased;
                e.retry_at = None;
            }
            Err(reason) => {
                e.omissions = if reason == Reason::Omitted { e.omissions + 1 } else { 0 };
                let settled =
                    reason == Reason::Omitted && config.settle_omitted_after.is_some_and(|n| e.omissions >= n);
                let anomaly = reason.is_anomaly(config.unknown_encoding) && !settled;
                e.mapping = match (config.categories, anomaly) {
                    (Categories::ThreeState, true) => Mapping::Unknown { reason },
                    _ => Mapping::Unverified { reason },
                };
                let (schedule, n) = if anomaly {
                    e.anomalies += 1;
                    e.negatives = 0;
                    (&config.retry_anomaly, e.anomalies)
                } else {
                    e.negatives += 1;
                    e.anomalies = 0;
                    (&config.retry_negative, e.negatives)
                };
                e.retry_at = schedule.delay(n).map(|d| now + d);
            }
        }
    }

    /// How many entries are in each state.
    pub fn state_counts(&self) -> BTreeMap<&'static str, u64> {
        let mut out = BTreeMap::new();
        for e in self.entries.values() {
            *out.entry(e.mapping.label()).or_insert(0) += 1;
        }
        out
    }
}

/// What one entry says.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Read {
    Verified(String),
    Erased,
}

/// The checks a requester makes before believing an entry (MSC4243 §4): the signature by the
/// asked key verifies, and the entry names the asked domain.
fn read_entry(key: &str, domain: &str, entry: &Map<String, Value>) -> Result<Read, Reason> {
    let errcode = entry.get("errcode").and_then(Value::as_str);
    if let Some(code) = errcode.filter(|c| *c != "M_ERASED") {
        return Err(Reason::ExplicitUnknown(code.to_owned()));
    }
    let signed = crypto::signature_of(entry, key, ACCOUNT_KEY_ID)
        .zip(crypto::b64_decode_any(key).and_then(|b| <[u8; 32]>::try_from(b).ok()))
        .and_then(|(sig, bytes)| Some((sig, ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok()?)))
        .is_some_and(|(sig, public)| crypto::verify(&public, &crypto::object_signing_bytes(entry), &sig));
    if !signed {
        return Err(Reason::BadSignature);
    }
    if entry.get("domain").and_then(Value::as_str) != Some(domain) {
        return Err(Reason::DomainMismatch);
    }
    if errcode == Some("M_ERASED") {
        return Ok(Read::Erased);
    }
    match entry.get("account_name").and_then(Value::as_str) {
        Some(name) => Ok(Read::Verified(name.to_owned())),
        None => Err(Reason::Undecodable),
    }
}
