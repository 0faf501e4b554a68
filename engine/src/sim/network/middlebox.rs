//! Middleboxes: reverse proxies and caches in front of a server. They see requests to the
//! server and the server's answers. All non-PDU federation calls pass through them, so later
//! lookups (`/query/accounts`, key validity, identity) get proxy and cache behaviour without any
//! change to the scheduler.

use crate::scenario::{CacheKey, MiddleboxKind, MiddleboxSpec};
use crate::sim::federation::{Message, Outcome, Request, RequestId, ServerIdx};
use crate::sim::rng::RngStreams;
use crate::sim::time::SimTime;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// What a middlebox does with a message passing through it.
#[derive(Debug, Clone)]
pub enum Middleboxed {
    Forward(Message),
    Drop(&'static str, Message),
    /// A cache answered instead of the server behind it (the reply goes back to the sender).
    Answer(Message),
}

/// One middlebox in front of `server`. Its draws come from its own stream
/// (`middlebox/<server>`).
pub(super) struct Middlebox {
    server: ServerIdx,
    kind: MiddleboxKind,
    timeout_probability: f64,
    strip_account_entries: f64,
    strip_account_answers: f64,
    cache_key: CacheKey,
    rng: ChaCha8Rng,
    /// Requests seen going in: (requester, request id) → cache key.
    open: BTreeMap<(ServerIdx, RequestId), Option<String>>,
    /// Cached answers: key → (stored at, answer).
    cache: BTreeMap<String, (SimTime, Outcome)>,
    /// When the server behind it last rotated its key (a cached answer stored before is
    /// stale).
    rotated_at: Option<SimTime>,
    counts: MiddleboxCounts,
}

/// What middleboxes did to key answers (`summary.json` `keys`, see `docs/outputs.md`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MiddleboxCounts {
    /// Answers a cache served from its store instead of the server.
    pub cache_answers: u64,
    /// Of those, answers stored before the server's latest key rotation.
    pub stale_answers: u64,
    /// `verify_keys` / `old_verify_keys` entries a proxy removed from key answers.
    pub entries_stripped: u64,
    /// `/query/accounts` per-key entries a proxy removed, and answers it emptied.
    pub account_entries_stripped: u64,
    pub account_answers_stripped: u64,
}

/// The key IDs a `drop_unknown_keys` proxy knows: the one every server starts with. The proxy
/// was configured when the server was deployed; a key made later (`rotate_key`) is unknown to
/// it until someone reconfigures it, which the simulation never does.
pub const PROXY_KNOWN_KEY_ID: &str = crate::sim::server::KEY_ID;

impl Middlebox {
    pub fn new(spec: &MiddleboxSpec, server: ServerIdx, streams: &RngStreams) -> Middlebox {
        Middlebox {
            server,
            kind: spec.kind,
            timeout_probability: spec.timeout_probability,
            strip_account_entries: spec.strip_account_entries,
            strip_account_answers: spec.strip_account_answers,
            cache_key: spec.cache_key,
            rng: streams.stream(&format!("middlebox/{}", spec.server)),
            open: BTreeMap::new(),
            cache: BTreeMap::new(),
            rotated_at: None,
            counts: MiddleboxCounts::default(),
        }
    }

    pub fn key_rotated(&mut self, k: ServerIdx, at: SimTime) {
        if self.server == k {
            self.rotated_at = Some(at);
        }
    }

    pub fn counts(&self) -> MiddleboxCounts {
        self.counts
    }
}

/// Passes a message through the middleboxes in front of its receiver (requests) or its sender
/// (answers), in scenario order. PDU transactions pass untouched: proxies forward `/send` as is.
pub(super) fn pass(
    middleboxes: &mut [Middlebox],
    from: ServerIdx,
    to: ServerIdx,
    message: Message,
    at: SimTime,
) -> Middleboxed {
    let mut message = message;
    for mb in middleboxes.iter_mut() {
        match &mut message {
            Message::Request { body: Request::Transaction { .. }, .. } => {}
            Message::Request { id, body } if mb.server == to => {
                if mb.timeout_probability > 0.0 && mb.rng.gen_bool(mb.timeout_probability.min(1.0)) {
                    return Middleboxed::Drop("middlebox timeout", message);
                }
                let key = match (mb.cache_key, body.cache_key()) {
                    // A cache keyed on the path alone: every query to this endpoint shares one entry.
                    (CacheKey::Path, Some(_)) => Some(body.name().to_owned()),
                    (_, key) => key,
                };
                if let (MiddleboxKind::Cache { ttl_us }, Some(k)) = (mb.kind, &key) {
                    if let Some((stored, outcome)) = mb.cache.get(k) {
                        if at.saturating_sub(*stored) < ttl_us {
                            mb.counts.cache_answers += 1;
                            if mb.rotated_at.is_some_and(|r| *stored < r) {
                                mb.counts.stale_answers += 1;
                            }
                            return Middleboxed::Answer(Message::Response { id: *id, outcome: outcome.clone() });
                        }
                    }
                }
                mb.open.insert((from, *id), key);
            }
            Message::Response { id, outcome } if mb.server == from => {
                let Some(key) = mb.open.remove(&(to, *id)) else { continue };
                if let Outcome::Ok(response) = outcome {
                    if let MiddleboxKind::ReverseProxy { drop_unknown_keys: true } = mb.kind {
                        mb.counts.entries_stripped +=
                            response.drop_unknown_entries(&|_server, key_id| key_id == PROXY_KNOWN_KEY_ID);
                    }
                    if let crate::sim::federation::Response::QueryAccounts(answer) = response {
                        strip_accounts(mb, answer);
                    }
                }
                if let (MiddleboxKind::Cache { .. }, Some(k)) = (mb.kind, key) {
                    mb.cache.insert(k, (at, outcome.clone()));
                }
            }
            _ => {}
        }
    }
    Middleboxed::Forward(message)
}

/// A reverse proxy's damage to a `/query/accounts` answer (MSC4243 §4: "stale caches or
/// reverse proxies that drop entries"): the whole map emptied with `strip_account_answers`,
/// else each entry removed with `strip_account_entries`. Draws only when configured.
fn strip_accounts(mb: &mut Middlebox, answer: &mut crate::sim::accounts::query::AccountsAnswer) {
    if !matches!(mb.kind, MiddleboxKind::ReverseProxy { .. }) || answer.account_keys.is_empty() {
        return;
    }
    if mb.strip_account_answers > 0.0 && mb.rng.gen_bool(mb.strip_account_answers.min(1.0)) {
        mb.counts.account_answers_stripped += 1;
        mb.counts.account_entries_stripped += answer.account_keys.len() as u64;
        answer.account_keys.clear();
        return;
    }
    if mb.strip_account_entries > 0.0 {
        let p = mb.strip_account_entries.min(1.0);
        let before = answer.account_keys.len();
        let rng = &mut mb.rng;
        answer.account_keys.retain(|_, _| !rng.gen_bool(p));
        mb.counts.account_entries_stripped += (before - answer.account_keys.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_middlebox_that_times_out_swallows_requests_but_not_transactions() {
        let spec = MiddleboxSpec {
            server: "b".into(),
            kind: MiddleboxKind::ReverseProxy { drop_unknown_keys: true },
            timeout_probability: 1.0,
            strip_account_entries: 0.0,
            strip_account_answers: 0.0,
            cache_key: Default::default(),
        };
        let mut boxes = vec![Middlebox::new(&spec, 1, &RngStreams::new(1))];
        let join = Message::Request {
            id: 1,
            body: Request::MakeJoin { room_id: "!r:a".into(), user_id: "@u:a".into(), server_key: None },
        };
        assert!(matches!(pass(&mut boxes, 0, 1, join, 0), Middleboxed::Drop(..)));
        let txn = Message::Request { id: 2, body: Request::Transaction { pdus: vec![] } };
        assert!(matches!(pass(&mut boxes, 0, 1, txn, 0), Middleboxed::Forward(_)));
        let reverse = Message::Request {
            id: 3,
            body: Request::MakeJoin { room_id: "!r:b".into(), user_id: "@u:b".into(), server_key: None },
        };
        assert!(
            matches!(pass(&mut boxes, 1, 0, reverse, 0), Middleboxed::Forward(_)),
            "only requests to b pass b's box"
        );
    }
}
