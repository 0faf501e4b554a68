//! A key notary (Server-Server API, §"Querying keys through another server"): a node of its
//! own answering `POST /_matrix/key/v2/query`. It answers from its cache when every key ID
//! asked is there with a `valid_until_ts` at least the `minimum_valid_until_ts` asked;
//! otherwise it fetches `GET /_matrix/key/v2/server` from each origin concerned (one request
//! per origin at a time, with the same timeouts and retries as a server's requests), then
//! answers with what it holds: each origin's own signed object, with the notary's signature
//! added. An origin it could not reach is left out of the answer (or served from its cache,
//! however old). It also publishes its own key at `GET /_matrix/key/v2/server`.
//!
//! Like a server it is a state machine, `handle(input, now) -> outputs`; its inputs are logged
//! and replayed as a server's are.

use super::federation::keys::{self as wire};
use super::federation::{Message, Outcome, Request, RequestId, Response, ServerIdx};
use super::server::{Directory, Input, Output, Timer};
use super::time::SimTime;
use crate::protocol::crypto::KeyPair;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A query waiting for origins to answer.
#[derive(Debug, Clone)]
struct Waiting {
    from: ServerIdx,
    id: RequestId,
    asked: BTreeMap<String, BTreeMap<String, u64>>,
    outstanding: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct Fetch {
    origin: String,
    to: ServerIdx,
    attempts: u32,
}

pub struct Notary {
    pub index: ServerIdx,
    pub name: String,
    key: KeyPair,
    directory: Arc<Directory>,
    request_timeout_us: u64,
    request_retries: u32,
    /// Origin → its last verified key object and the keys it gave (key ID → valid until).
    cache: BTreeMap<String, (Map<String, Value>, BTreeMap<String, u64>)>,
    waiting: Vec<Waiting>,
    requests: BTreeMap<RequestId, Fetch>,
    next_request_id: RequestId,
    /// Fetches from origins, and those that failed (timeout, error, an answer that does not
    /// verify).
    pub fetches: u64,
    pub fetch_failures: u64,
}

impl Notary {
    pub fn new(
        index: ServerIdx,
        key: KeyPair,
        directory: Arc<Directory>,
        request_timeout_us: u64,
        request_retries: u32,
    ) -> Notary {
        Notary {
            index,
            name: key.entity.clone(),
            key,
            directory,
            request_timeout_us: request_timeout_us.max(1),
            request_retries,
            cache: BTreeMap::new(),
            waiting: Vec::new(),
            requests: BTreeMap::new(),
            next_request_id: 1,
            fetches: 0,
            fetch_failures: 0,
        }
    }

    pub fn is_idle(&self) -> bool {
        self.requests.is_empty()
    }

    pub fn handle(&mut self, input: Input, now: SimTime) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Deliver { from, message: Message::Request { id, body } } => {
                self.on_request(from, id, body, now, &mut out)
            }
            Input::Deliver { message: Message::Response { id, outcome }, .. } => {
                if let Some(fetch) = self.requests.remove(&id) {
                    self.on_fetched(fetch.origin, Some(outcome), now, &mut out);
                }
            }
            Input::Timer(Timer::RequestTimeout { id }) => {
                let Some(mut fetch) = self.requests.remove(&id) else { return out };
                if fetch.attempts <= self.request_retries {
                    fetch.attempts += 1;
                    let body = Request::ServerKeys { server_name: fetch.origin.clone() };
                    out.push(Output::Send { to: fetch.to, message: Message::Request { id, body }, delay_us: 0 });
                    out.push(Output::SetTimer {
                        at: now + self.request_timeout_us,
                        timer: Timer::RequestTimeout { id },
                    });
                    self.requests.insert(id, fetch);
                } else {
                    self.on_fetched(fetch.origin, None, now, &mut out);
                }
            }
            Input::Crash => {
                self.requests.clear();
                self.waiting.clear();
            }
            // A notary has no rooms, no clock skew of its own and signs no events.
            Input::Timer(_)
            | Input::Action(_)
            | Input::Restart
            | Input::SetClockSkew { .. }
            | Input::RotateKey { .. }
            | Input::EraseAccount { .. }
            | Input::Identity(_)
            | Input::ReregisterAccount { .. } => {}
        }
        out
    }

    fn now_ms(now: SimTime) -> u64 {
        crate::sim::time::origin_server_ts(now, 0).max(0) as u64
    }

    fn on_request(&mut self, from: ServerIdx, id: RequestId, body: Request, now: SimTime, out: &mut Vec<Output>) {
        match body {
            Request::KeyQuery { server_keys } => {
                let stale: BTreeSet<String> = server_keys
                    .iter()
                    .filter(|(origin, ids)| !self.fresh(origin, ids))
                    .map(|(o, _)| o.clone())
                    .collect();
                if stale.is_empty() {
                    let outcome = self.answer(&server_keys);
                    out.push(Output::Send { to: from, message: Message::Response { id, outcome }, delay_us: 0 });
                    return;
                }
                for origin in &stale {
                    self.fetch(origin, now, out);
                }
                self.waiting.push(Waiting { from, id, asked: server_keys, outstanding: stale });
            }
            Request::ServerKeys { .. } => {
                let valid_until = Self::now_ms(now).saturating_add(self.directory.keys.validity_us / 1000);
                let keys = wire::server_keys_object(&self.key, &[], valid_until);
                let outcome = Outcome::Ok(Response::ServerKeys { keys });
                out.push(Output::Send { to: from, message: Message::Response { id, outcome }, delay_us: 0 });
            }
            _ => {
                let outcome = Outcome::Error { status: 404, errcode: "M_UNRECOGNIZED".into() };
                out.push(Output::Send { to: from, message: Message::Response { id, outcome }, delay_us: 0 });
            }
        }
    }

    /// Whether the cache holds every key ID asked with the validity asked.
    fn fresh(&self, origin: &str, ids: &BTreeMap<String, u64>) -> bool {
        let Some((_, keys)) = self.cache.get(origin) else { return false };
        ids.iter().all(|(id, min)| keys.get(id).is_some_and(|until| until >= min))
    }

    fn fetch(&mut self, origin: &str, now: SimTime, out: &mut Vec<Output>) {
        if self.requests.values().any(|f| f.origin == origin) {
            return;
        }
        let Some(to) = self.directory.node(origin) else {
            return;
        };
        let id = self.next_request_id;
        self.next_request_id += 1;
        self.fetches += 1;
        let body = Request::ServerKeys { server_name: origin.to_owned() };
        out.push(Output::Send { to, message: Message::Request { id, body }, delay_us: 0 });
        out.push(Output::SetTimer { at: now + self.request_timeout_us, timer: Timer::RequestTimeout { id } });
        self.requests.insert(id, Fetch { origin: origin.to_owned(), to, attempts: 1 });
    }

    fn on_fetched(&mut self, origin: String, outcome: Option<Outcome>, now: SimTime, out: &mut Vec<Output>) {
        let verified = match outcome {
            Some(Outcome::Ok(Response::ServerKeys { keys: object })) => {
                wire::verify_server_keys(&object, &origin, Self::now_ms(now)).ok().map(|keys| (object, keys))
            }
            _ => None,
        };
        match verified {
            Some((object, keys)) => {
                let valid = keys.into_iter().map(|k| (k.key_id, k.valid_until_ts)).collect();
                self.cache.insert(origin.clone(), (object, valid));
            }
            None => self.fetch_failures += 1,
        }
        let mut still = Vec::new();
        for mut w in std::mem::take(&mut self.waiting) {
            w.outstanding.remove(&origin);
            if w.outstanding.is_empty() {
                let outcome = self.answer(&w.asked);
                out.push(Output::Send { to: w.from, message: Message::Response { id: w.id, outcome }, delay_us: 0 });
            } else {
                still.push(w);
            }
        }
        self.waiting = still;
    }

    /// The cached objects of the origins asked, each countersigned.
    fn answer(&self, asked: &BTreeMap<String, BTreeMap<String, u64>>) -> Outcome {
        let server_keys = asked
            .keys()
            .filter_map(|origin| self.cache.get(origin))
            .map(|(object, _)| {
                let mut signed = object.clone();
                wire::sign_remembered(&mut signed, &self.key);
                signed
            })
            .collect();
        Outcome::Ok(Response::KeyQuery { server_keys })
    }
}
