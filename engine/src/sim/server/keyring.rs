//! A server's view of other servers' signing keys (Server-Server API, §"Retrieving server
//! keys"), fetched as Synapse's `Keyring` does: its store first, then the notaries it trusts
//! in order (`PerspectivesKeyFetcher`, `POST /_matrix/key/v2/query`), then the origin itself
//! (`ServerKeyFetcher`, `GET /_matrix/key/v2/server`). Every fetch is an ordinary request
//! (`send_request`), so timeouts, retries, partitions and middleboxes apply to it.
//!
//! A key serves an event when its `valid_until_ts` is at least the event's `origin_server_ts`
//! (room versions 5 and later, §"Signing key validity period"; Synapse asks notaries with
//! that timestamp as `minimum_valid_until_ts`). A PDU whose signing key this server lacks (or
//! holds only with too short a validity) is parked, not judged, until the fetch ends: then it
//! goes through the receipt checks again, or, when no source had the key, it is dropped with a
//! `signature` decision, not stored, and judged again when it is seen again.
//!
//! `keys.distribution = "preshared"` fills the store with every key of the run (the perfect
//! notary of earlier versions): nothing is ever fetched.

use super::requests::{PendingRequest, Purpose};
use super::{Directory, Output, Server};
use crate::protocol::crypto::KeyPair;
use crate::protocol::pdu::Pdu;
use crate::protocol::room_version::RoomVersion;
use crate::protocol::signers;
use crate::scenario::KeyDistribution;
use crate::sim::event::{SimEvent, Verdict};
use crate::sim::federation::keys::{self as wire, FetchedKey, OldKey};
use crate::sim::federation::{Outcome, Request, RequestId, Response, ServerIdx};
use crate::sim::time::SimTime;
use ed25519_dalek::VerifyingKey;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Most PDUs (and deferred requests) one server holds parked for keys; beyond, a PDU is
/// dropped with a `cap_reached` record (it is fetched again when its children arrive).
pub const MAX_PARKED_FOR_KEYS: usize = 10_000;
/// PDUs dropped for want of a key are fetched for again this many times, after 30 s, 60 s,
/// 120 s (a dropped event deep in a joiner's history may never be offered again).
pub const KEY_RETRIES: u32 = 3;
const KEY_RETRY_FIRST_US: u64 = 30_000_000;

/// The run's keys: every key each node signs with during the run, in order (`ed25519:k1`
/// first, then one per `rotate_key` fault), how keys are distributed, and which nodes are
/// notaries. The truth the invariant check, `keys.json` and the modelled ledger read; a server
/// in `federation` mode only knows what it fetched.
#[derive(Debug, Clone)]
pub struct KeyBook {
    pub distribution: KeyDistribution,
    pub validity_us: u64,
    /// Per node index; empty for nodes built without a history (tests): their directory key.
    pub history: Vec<Vec<(String, VerifyingKey)>>,
}

impl Default for KeyBook {
    fn default() -> Self {
        KeyBook { distribution: KeyDistribution::Preshared, validity_us: 24 * 3_600_000_000, history: Vec::new() }
    }
}

impl Directory {
    /// Every key node `k` signs with during the run, by key ID.
    pub fn keys_of(&self, k: ServerIdx) -> Vec<(String, VerifyingKey)> {
        match self.keys.history.get(k as usize) {
            Some(h) if !h.is_empty() => h.clone(),
            _ => self.public_keys.get(k as usize).map(|p| vec![(super::KEY_ID.to_owned(), *p)]).unwrap_or_default(),
        }
    }
}

/// One stored key.
#[derive(Debug, Clone)]
struct Stored {
    key: VerifyingKey,
    valid_until_ts: u64,
}

/// A PDU waiting for a key of `server`.
#[derive(Debug, Clone)]
struct Parked {
    pdu: Arc<Pdu>,
    from: ServerIdx,
    no_catch_up: Option<ServerIdx>,
    key_id: String,
    ts: u64,
}

/// A request whose answer waits for a key (a `send_join`: its answer says whether the join
/// was accepted).
#[derive(Debug, Clone)]
struct Deferred {
    from: ServerIdx,
    id: RequestId,
    body: Request,
    key_id: String,
    ts: u64,
}

/// Counters for `summary.json`'s `keys` (see `docs/outputs.md`).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyStats {
    pub fetches: u64,
    pub fetch_failures: u64,
    pub parked: u64,
    pub dropped: u64,
}

/// The key store and the fetches in flight.
#[derive(Clone)]
pub struct Keyring {
    /// `preshared`: every key of the run is known (read from the directory, not copied: a
    /// store per server of every server's keys would be quadratic).
    preshared: bool,
    /// Server name → key ID → key and validity (nested, so that a lookup by `&str`s, made for
    /// every signature checked, allocates nothing).
    store: BTreeMap<String, BTreeMap<String, Stored>>,
    /// This server's own keys, oldest first, and which one it signs with.
    own: Vec<KeyPair>,
    current: usize,
    /// Old keys this server still publishes in `old_verify_keys`.
    published_old: Vec<OldKey>,
    /// Notaries asked, in order (node indices and their configured keys).
    trusted: Vec<(ServerIdx, String, VerifyingKey)>,
    /// Servers whose keys are being fetched: the step reached (notaries, then the origin).
    fetching: BTreeMap<String, usize>,
    parked: BTreeMap<String, Vec<Parked>>,
    deferred: BTreeMap<String, Vec<Deferred>>,
    /// Answers carrying PDUs that must be checked together (a `send_join` state, an `/event`,
    /// a `/backfill`), held until `server`'s key is usable, as Synapse fetches the keys of a
    /// whole answer before checking it.
    deferred_answers: BTreeMap<String, Vec<(PendingRequest, Outcome)>>,
    /// PDUs dropped for want of `server`'s key, and the retries already made.
    failed: BTreeMap<String, (u32, Vec<Parked>)>,
    pub stats: KeyStats,
}

impl Keyring {
    pub fn new(directory: &Directory, own: KeyPair, trusted_names: &[String]) -> Keyring {
        let trusted = trusted_names
            .iter()
            .filter_map(|n| {
                let k = directory.node(n)?;
                let (key_id, key) = directory.keys_of(k).into_iter().next()?;
                Some((k, key_id, key))
            })
            .collect();
        Keyring {
            preshared: directory.keys.distribution == KeyDistribution::Preshared,
            store: BTreeMap::new(),
            own: vec![own],
            current: 0,
            published_old: Vec::new(),
            trusted,
            fetching: BTreeMap::new(),
            parked: BTreeMap::new(),
            deferred: BTreeMap::new(),
            deferred_answers: BTreeMap::new(),
            failed: BTreeMap::new(),
            stats: KeyStats::default(),
        }
    }

    /// Every key this server signs with during the run (the first is the one it starts with).
    pub fn set_own_keys(&mut self, keys: Vec<KeyPair>) {
        if !keys.is_empty() {
            self.own = keys;
            self.current = 0;
        }
    }

    /// The key `server` signs with under `key_id`, usable for an event stamped `ts_ms`.
    pub fn usable(
        &self,
        directory: &Directory,
        own_name: &str,
        server: &str,
        key_id: &str,
        ts_ms: u64,
    ) -> Option<VerifyingKey> {
        if server == own_name {
            return self.own.iter().find(|k| k.key_id == key_id).map(KeyPair::public_key);
        }
        if self.preshared {
            let keys = directory.keys_of(directory.node(server)?);
            return keys.into_iter().find(|(id, _)| id == key_id).map(|(_, k)| k);
        }
        let stored = self.store.get(server)?.get(key_id)?;
        (stored.valid_until_ts >= ts_ms).then_some(stored.key)
    }

    fn insert(&mut self, server: &str, fetched: FetchedKey) {
        let entry = self
            .store
            .entry(server.to_owned())
            .or_default()
            .entry(fetched.key_id)
            .or_insert(Stored { key: fetched.key, valid_until_ts: fetched.valid_until_ts });
        if entry.key == fetched.key {
            entry.valid_until_ts = entry.valid_until_ts.max(fetched.valid_until_ts);
        } else {
            *entry = Stored { key: fetched.key, valid_until_ts: fetched.valid_until_ts };
        }
    }

    /// A crash loses the fetches in flight and what waited for them; the store is on disk.
    pub fn crashed(&mut self) {
        self.fetching.clear();
        self.parked.clear();
        self.deferred.clear();
        self.deferred_answers.clear();
        self.failed.clear();
    }

    /// No fetch retry is due (a dropped PDU with retries left keeps the server busy).
    pub fn is_idle(&self) -> bool {
        self.failed.values().all(|(round, p)| p.is_empty() || *round >= KEY_RETRIES)
    }

    fn parked_count(&self) -> usize {
        self.parked.values().map(Vec::len).sum::<usize>()
            + self.deferred.values().map(Vec::len).sum::<usize>()
            + self.deferred_answers.values().map(Vec::len).sum::<usize>()
    }
}

/// The signature key IDs `signer` put on `pdu` (sorted).
pub fn signing_key_ids(pdu: &Pdu, signer: &str) -> Vec<String> {
    pdu.json
        .get("signatures")
        .and_then(|s| s.get(signer))
        .and_then(|s| s.as_object())
        .map(|m| m.keys().filter(|k| k.starts_with("ed25519:")).cloned().collect())
        .unwrap_or_default()
}

impl Server {
    /// This server's clock in milliseconds (what it stamps events with).
    fn clock_ms(&self, now: SimTime) -> u64 {
        crate::sim::time::origin_server_ts(now, self.config.clock_skew_us).max(0) as u64
    }

    /// The key this server signs with now, and what it publishes.
    pub(crate) fn rotate_key(&mut self, keep_old: bool, now: SimTime) {
        let expired_ts = self.clock_ms(now);
        let ring = &mut self.keyring;
        let Some(next) = ring.own.get(ring.current + 1).cloned() else { return };
        let old = ring.own[ring.current].clone();
        if keep_old {
            ring.published_old.push(OldKey { key_id: old.key_id.clone(), key: old.public_key(), expired_ts });
        }
        ring.current += 1;
        self.key = next;
    }

    /// `GET /_matrix/key/v2/server`: this server's signed key object.
    pub(crate) fn answer_server_keys(&self, now: SimTime) -> Outcome {
        let now_ms = self.clock_ms(now);
        let valid_until = now_ms.saturating_add(self.directory.keys.validity_us / 1000);
        let object = wire::server_keys_object(&self.key, &self.keyring.published_old, valid_until);
        Outcome::Ok(Response::ServerKeys { keys: object })
    }

    /// The first required signer of `pdu` whose signing key this server cannot use yet, with
    /// the key ID and the event's timestamp. Signers without any signature or unknown to the
    /// network are left to the signature check (which drops the event). Account keys (MSC4243
    /// §3) are never wanted: the key is the sender's localpart, nothing is fetched.
    pub(crate) fn key_wanted(&self, pdu: &Pdu, version: &'static RoomVersion) -> Option<(String, String, u64)> {
        let required = signers::required_signers(version, pdu).ok()?;
        let ts = pdu.json.get("origin_server_ts").and_then(|t| t.as_u64()).unwrap_or(0);
        for required in required {
            let Some(server) = required.signer.server() else { continue };
            if self.directory.node(server).is_none() {
                continue;
            }
            // `signing_key_ids`, without collecting it: this runs for every PDU received.
            let ids = pdu.json.get("signatures").and_then(|s| s.get(server)).and_then(|s| s.as_object());
            let mut ids = ids.into_iter().flat_map(|m| m.keys()).filter(|k| k.starts_with("ed25519:"));
            let Some(first) = ids.clone().next() else { continue };
            if ids.any(|id| self.keyring.usable(&self.directory, &self.name, server, id, ts).is_some()) {
                continue;
            }
            return Some((server.to_owned(), first.clone(), ts));
        }
        None
    }

    /// Parks a PDU until `server`'s key arrives (starting the fetch). False when the cap is
    /// reached (the caller drops it).
    pub(crate) fn park_for_key(
        &mut self,
        pdu: Arc<Pdu>,
        from: ServerIdx,
        no_catch_up: Option<ServerIdx>,
        (server, key_id, ts): (String, String, u64),
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        if self.keyring.parked.get(&server).is_some_and(|p| p.iter().any(|q| q.pdu.event_id == pdu.event_id)) {
            return;
        }
        if self.keyring.parked_count() >= MAX_PARKED_FOR_KEYS {
            let consequence = format!("{} dropped: it is fetched again when its children arrive", pdu.event_id);
            let ev = SimEvent::CapReached {
                cap: "server.parked_for_keys".into(),
                limit: MAX_PARKED_FOR_KEYS as u64,
                consequence,
            };
            self.record(out, ev);
            return;
        }
        self.keyring.stats.parked += 1;
        self.keyring.parked.entry(server.clone()).or_default().push(Parked { pdu, from, no_catch_up, key_id, ts });
        if !self.keyring.fetching.contains_key(&server) {
            self.fetch_keys(server, 0, now, out);
        }
    }

    /// A request that must wait for a key before it is answered: `send_join`, `send_knock`,
    /// `send_leave` (the answer says whether the resident accepted the membership event, so
    /// the resident awaits the joiner's key as Synapse's handlers do). Returns whether it was
    /// deferred.
    pub(crate) fn defer_for_keys(
        &mut self,
        from: ServerIdx,
        id: RequestId,
        body: &Request,
        now: SimTime,
        out: &mut Vec<Output>,
    ) -> bool {
        let (Request::SendJoin { pdu } | Request::SendKnock { pdu } | Request::SendLeave { pdu }) = body else {
            return false;
        };
        let Some(room) = self.rooms.get(&super::room_id_of(pdu)) else { return false };
        if room.has(&pdu.event_id) {
            return false;
        }
        let Some((server, key_id, ts)) = self.key_wanted(pdu, room.version) else { return false };
        let waiting = self.keyring.deferred.entry(server.clone()).or_default();
        if !waiting.iter().any(|d| d.from == from && d.id == id) {
            if self.keyring.parked_count() >= MAX_PARKED_FOR_KEYS {
                return false; // answered now: the join fails at its signature check
            }
            self.keyring.stats.parked += 1;
            let waiting = self.keyring.deferred.entry(server.clone()).or_default();
            waiting.push(Deferred { from, id, body: body.clone(), key_id, ts });
        }
        if !self.keyring.fetching.contains_key(&server) {
            self.fetch_keys(server, 0, now, out);
        }
        true
    }

    /// The wanted key IDs of `server` with the latest event timestamp each must cover.
    fn wanted_ids(&self, server: &str) -> BTreeMap<String, u64> {
        let mut ids: BTreeMap<String, u64> = BTreeMap::new();
        let parked = self.keyring.parked.get(server).into_iter().flatten().map(|p| (&p.key_id, p.ts));
        let deferred = self.keyring.deferred.get(server).into_iter().flatten().map(|d| (&d.key_id, d.ts));
        let answers: Vec<(String, u64)> = self
            .keyring
            .deferred_answers
            .get(server)
            .into_iter()
            .flatten()
            .filter_map(|(req, outcome)| self.answer_key_wanted(req, outcome))
            .filter(|(s, _, _)| s == server)
            .map(|(_, id, ts)| (id, ts))
            .collect();
        for (id, ts) in parked.chain(deferred).chain(answers.iter().map(|(id, ts)| (id, *ts))) {
            let e = ids.entry(id.clone()).or_default();
            *e = (*e).max(ts);
        }
        ids
    }

    /// Asks the source at `step` for `server`'s keys: the trusted notaries in order, then the
    /// origin; past the last source, what waits for the key is dropped.
    fn fetch_keys(&mut self, server: String, step: usize, now: SimTime, out: &mut Vec<Output>) {
        let wanted = self.wanted_ids(&server);
        if wanted.is_empty() {
            self.keyring.fetching.remove(&server);
            return;
        }
        let notaries = self.keyring.trusted.len();
        let (to, body) = if step < notaries {
            let notary = self.keyring.trusted[step].0;
            (notary, Request::KeyQuery { server_keys: BTreeMap::from([(server.clone(), wanted)]) })
        } else if step == notaries {
            let Some(origin) = self.directory.node(&server) else {
                return self.give_up_keys(&server, now, out);
            };
            (origin, Request::ServerKeys { server_name: server.clone() })
        } else {
            return self.give_up_keys(&server, now, out);
        };
        self.keyring.fetching.insert(server.clone(), step);
        self.keyring.stats.fetches += 1;
        self.send_request(to, body, Purpose::KeyFetch { server, step }, now, out);
    }

    /// The answer (or failure) of a key fetch.
    pub(crate) fn on_key_answer(
        &mut self,
        server: String,
        step: usize,
        outcome: Option<Outcome>,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        if self.keyring.fetching.get(&server) != Some(&step) {
            return; // a crash came between: a later fetch owns this server
        }
        let now_ms = self.clock_ms(now);
        let objects = match outcome {
            Some(Outcome::Ok(Response::ServerKeys { keys })) => vec![keys],
            Some(Outcome::Ok(Response::KeyQuery { server_keys })) => {
                let (_, notary_key_id, notary_key) = self.keyring.trusted[step].clone();
                let notary_name = self.directory.names[self.keyring.trusted[step].0 as usize].clone();
                server_keys
                    .into_iter()
                    .filter(|o| wire::notary_signed(o, &notary_name, &notary_key_id, &notary_key))
                    .collect()
            }
            _ => Vec::new(),
        };
        let mut got = false;
        for object in objects {
            if let Ok(keys) = wire::verify_server_keys(&object, &server, now_ms) {
                for k in keys {
                    self.keyring.insert(&server, k);
                }
                got = true;
            }
        }
        if !got {
            self.keyring.stats.fetch_failures += 1;
        }
        self.release_parked(&server, now, out);
        if self.wanted_ids(&server).is_empty() {
            self.keyring.fetching.remove(&server);
        } else {
            self.fetch_keys(server, step + 1, now, out);
        }
    }

    /// A `RetryKeys` timer: the PDUs dropped for `server`'s key are parked again and its keys
    /// fetched from the first source.
    pub(crate) fn retry_keys(&mut self, server: String, now: SimTime, out: &mut Vec<Output>) {
        let Some((round, dropped)) = self.keyring.failed.remove(&server) else { return };
        if dropped.is_empty() {
            return;
        }
        // The next give-up counts one more round.
        self.keyring.failed.insert(server.clone(), (round + 1, Vec::new()));
        self.keyring.stats.parked += dropped.len() as u64;
        self.keyring.parked.entry(server.clone()).or_default().extend(dropped);
        if !self.keyring.fetching.contains_key(&server) {
            self.fetch_keys(server, 0, now, out);
        }
    }

    /// Judges again every parked PDU (and answers every deferred request) whose key is now
    /// usable, and those dropped earlier for want of it.
    fn release_parked(&mut self, server: &str, now: SimTime, out: &mut Vec<Output>) {
        let mut parked = self.keyring.parked.remove(server).unwrap_or_default();
        if let Some((round, dropped)) = self.keyring.failed.remove(server) {
            let (ready, still): (Vec<Parked>, Vec<Parked>) = dropped
                .into_iter()
                .partition(|p| self.keyring.usable(&self.directory, &self.name, server, &p.key_id, p.ts).is_some());
            self.keyring.failed.insert(server.to_owned(), (round, still));
            parked.extend(ready);
        }
        let (ready, waiting): (Vec<Parked>, Vec<Parked>) = parked
            .into_iter()
            .partition(|p| self.keyring.usable(&self.directory, &self.name, server, &p.key_id, p.ts).is_some());
        if !waiting.is_empty() {
            self.keyring.parked.insert(server.to_owned(), waiting);
        }
        let deferred = self.keyring.deferred.remove(server).unwrap_or_default();
        let (ready_requests, waiting): (Vec<Deferred>, Vec<Deferred>) = deferred
            .into_iter()
            .partition(|d| self.keyring.usable(&self.directory, &self.name, server, &d.key_id, d.ts).is_some());
        if !waiting.is_empty() {
            self.keyring.deferred.insert(server.to_owned(), waiting);
        }
        for p in ready {
            self.receive_pdu_catching_up(p.pdu, p.from, now, out, p.no_catch_up);
        }
        for d in ready_requests {
            self.answer_request(d.from, d.id, d.body, now, out);
        }
        // Answers: acted on once this server's key serves them (deferred again if another
        // signer's key is still wanted); those it still does not serve keep waiting.
        let mut still = Vec::new();
        for (req, outcome) in self.keyring.deferred_answers.remove(server).unwrap_or_default() {
            match self.answer_key_wanted(&req, &outcome) {
                Some((s, _, _)) if s == server => still.push((req, outcome)),
                _ => self.on_answer(req, outcome, now, out),
            }
        }
        if !still.is_empty() {
            self.keyring.deferred_answers.entry(server.to_owned()).or_default().extend(still);
        }
    }

    /// The first signer key an answer checked as a whole still needs (see [`Self::on_answer`]).
    fn answer_key_wanted(&self, req: &PendingRequest, outcome: &Outcome) -> Option<(String, String, u64)> {
        match (&req.purpose, outcome) {
            (
                Purpose::SendJoin { .. }
                | Purpose::GetEvent { .. }
                | Purpose::EventAuth { .. }
                | Purpose::Backfill { .. },
                Outcome::Ok(answer),
            ) => answer_version(self, answer).and_then(|v| answer.pdus().find_map(|p| self.key_wanted(p, v))),
            _ => None,
        }
    }

    /// An answer to one of this server's requests: acted on, unless it carries PDUs checked
    /// as a whole (a `send_join` state, an `/event`, a `/backfill`) of which one has a signer
    /// whose key this server cannot use yet; then it waits for that key (the request is done:
    /// its timeout no longer applies).
    pub(crate) fn on_answer(&mut self, req: PendingRequest, outcome: Outcome, now: SimTime, out: &mut Vec<Output>) {
        let Some((server, _, _)) = self.answer_key_wanted(&req, &outcome) else {
            self.on_response(req, outcome, now, out);
            return;
        };
        self.keyring.stats.parked += 1;
        self.keyring.deferred_answers.entry(server.clone()).or_default().push((req, outcome));
        if !self.keyring.fetching.contains_key(&server) {
            self.fetch_keys(server, 0, now, out);
        }
    }

    /// No source had a usable key: what waited for it is dropped (a PDU is judged again when
    /// it is seen again; a deferred `send_join`, `send_knock` or `send_leave` is refused).
    fn give_up_keys(&mut self, server: &str, now: SimTime, out: &mut Vec<Output>) {
        self.keyring.fetching.remove(server);
        let sources = self.keyring.trusted.len();
        let why = |key_id: &str, ts: u64| {
            format!("no key {key_id} of {server} valid at {ts} from {sources} notaries or {server} itself")
        };
        let dropped = self.keyring.parked.remove(server).unwrap_or_default();
        for p in &dropped {
            self.keyring.stats.dropped += 1;
            let ev = SimEvent::Decision {
                event: p.pdu.event_id.clone(),
                decision: Verdict::Dropped,
                stage: Some("signature".into()),
                reason: Some(why(&p.key_id, p.ts)),
            };
            self.record(out, ev);
        }
        if !dropped.is_empty() {
            let entry = self.keyring.failed.entry(server.to_owned()).or_insert((0, Vec::new()));
            let round = entry.0;
            entry.1.extend(dropped);
            entry.1.truncate(MAX_PARKED_FOR_KEYS);
            if round < KEY_RETRIES {
                out.push(Output::SetTimer {
                    at: now + (KEY_RETRY_FIRST_US << round),
                    timer: super::Timer::RetryKeys { server: server.to_owned() },
                });
            }
        }
        for d in self.keyring.deferred.remove(server).unwrap_or_default() {
            self.keyring.stats.dropped += 1;
            if let Request::SendJoin { pdu } | Request::SendKnock { pdu } | Request::SendLeave { pdu } = &d.body {
                let ev = SimEvent::Decision {
                    event: pdu.event_id.clone(),
                    decision: Verdict::Dropped,
                    stage: Some("signature".into()),
                    reason: Some(why(&d.key_id, d.ts)),
                };
                self.record(out, ev);
            }
            let outcome = Outcome::Error { status: 401, errcode: "M_UNAUTHORIZED".into() };
            self.respond(d.from, d.id, outcome, out);
        }
        // An answer that cannot be checked is no answer: the request failed as with an invalid
        // response (Synapse's `_try_destination_list` tries the next destination), so a join
        // goes on to its next candidate or round, a gap's `/event` is asked again later.
        for (req, _) in self.keyring.deferred_answers.remove(server).unwrap_or_default() {
            let why =
                format!("its PDUs cannot be checked: no key of {server} from {sources} notaries or {server} itself");
            self.on_unverifiable_answer(req, why, now, out);
        }
    }
}

/// The room version an answer's PDUs are checked under: the replica's, or for a `send_join`
/// into a room not held yet, the one its create event names.
fn answer_version(server: &Server, answer: &Response) -> Option<&'static RoomVersion> {
    let first = answer.pdus().next()?;
    if let Some(room) = server.rooms.get(&super::room_id_of(first)) {
        return Some(room.version);
    }
    crate::sim::federation::join::created_version(answer.pdus())
}
