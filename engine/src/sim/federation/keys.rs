//! Server keys (Server-Server API, §"Retrieving server keys"): the signed JSON a server
//! publishes at `GET /_matrix/key/v2/server`, what a notary adds for
//! `POST /_matrix/key/v2/query`, and the checks a receiver makes before it stores a key. The
//! objects are real signed JSON (ed25519 over their canonical form, §"Signing JSON"), checked
//! for real whatever `signatures` says: key answers are rare, and the modelled ledger only
//! covers events.

use crate::protocol::crypto::{self, KeyPair};
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// Receivers use the lesser of `valid_until_ts` and 7 days into the future (room versions 5
/// and later, §"Signing key validity period").
pub const MAX_KEY_VALIDITY_MS: u64 = 7 * 24 * 3_600_000;

/// A previous key a server still lists, with the time it stopped using it.
#[derive(Debug, Clone)]
pub struct OldKey {
    pub key_id: String,
    pub key: VerifyingKey,
    pub expired_ts: u64,
}

/// The server's answer to `GET /_matrix/key/v2/server`: its current key in `verify_keys`, the
/// old keys it keeps in `old_verify_keys`, `valid_until_ts`, signed by the current key.
pub fn server_keys_object(current: &KeyPair, old: &[OldKey], valid_until_ts: u64) -> Map<String, Value> {
    let mut old_keys = Map::new();
    for o in old {
        old_keys
            .insert(o.key_id.clone(), json!({"key": crypto::b64_encode(o.key.as_bytes()), "expired_ts": o.expired_ts}));
    }
    let mut object = Map::new();
    object.insert("server_name".into(), json!(current.entity));
    object.insert("valid_until_ts".into(), json!(valid_until_ts));
    object.insert("verify_keys".into(), json!({ current.key_id.clone(): {"key": current.public_key_b64()} }));
    object.insert("old_verify_keys".into(), Value::Object(old_keys));
    sign_remembered(&mut object, current);
    object
}

/// Signatures over key objects known to verify: (public key, signature) → the signed bytes.
/// Every server checks every other server's answers for real (ed25519, §"Signing JSON"), and
/// a key object is signed once but may be checked by many (a notary's countersigned cache
/// entry, the same answer to many servers). Whether a signature verifies is a pure function of
/// (key, signed bytes, signature), so answering from this memo changes no outcome, whatever
/// the order in which threads fill it: an entry exists only for a triple that verifies, and an
/// altered object has other bytes (a miss: checked for real, and it fails).
static KNOWN_GOOD: LazyLock<Mutex<HashMap<([u8; 32], [u8; 64]), Vec<u8>>>> = LazyLock::new(Default::default);
/// Entries kept before the memo starts afresh (a bound on memory, not on correctness).
const KNOWN_GOOD_CAP: usize = 1 << 16;

fn remember_good(key: &VerifyingKey, sig: &Signature, bytes: Vec<u8>) {
    let mut memo = KNOWN_GOOD.lock().unwrap_or_else(|e| e.into_inner());
    if memo.len() >= KNOWN_GOOD_CAP {
        memo.clear();
    }
    memo.insert((key.to_bytes(), sig.to_bytes()), bytes);
}

/// `crypto::verify` through [`KNOWN_GOOD`].
fn verify_remembered(key: &VerifyingKey, bytes: &[u8], sig: &Signature) -> bool {
    let id = (key.to_bytes(), sig.to_bytes());
    let known = KNOWN_GOOD.lock().unwrap_or_else(|e| e.into_inner()).get(&id).is_some_and(|b| b.as_slice() == bytes);
    if known {
        return true;
    }
    let ok = crypto::verify(key, bytes, sig);
    if ok {
        remember_good(key, sig, bytes.to_vec());
    }
    ok
}

/// `crypto::sign_object`, remembering the signature as good: an ed25519 signature made with a
/// key verifies under that key's public half (RFC 8032 §5.1.7), so its first check need not be
/// made for real either.
pub fn sign_remembered(object: &mut Map<String, Value>, key: &KeyPair) {
    crypto::sign_object(object, key);
    if let Some(sig) = crypto::signature_of(object, &key.entity, &key.key_id) {
        remember_good(&key.public_key(), &sig, crypto::object_signing_bytes(object));
    }
}

/// One key a verified answer gave: usable for events up to `valid_until_ts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedKey {
    pub key_id: String,
    pub key: VerifyingKey,
    pub valid_until_ts: u64,
}

/// Checks a key answer for `server` as Synapse's `process_v2_response` does: the right
/// `server_name`, every key of `verify_keys` decodes and has signed the object; returns the
/// current keys (valid until the lesser of `valid_until_ts` and `now_ms` + 7 days) and the old
/// ones (valid until their `expired_ts`).
pub fn verify_server_keys(object: &Map<String, Value>, server: &str, now_ms: u64) -> Result<Vec<FetchedKey>, String> {
    if object.get("server_name").and_then(Value::as_str) != Some(server) {
        return Err(format!("the key answer is not for {server}"));
    }
    let valid_until = object.get("valid_until_ts").and_then(Value::as_u64).ok_or("no valid_until_ts")?;
    let verify_keys = object.get("verify_keys").and_then(Value::as_object).ok_or("no verify_keys")?;
    if verify_keys.is_empty() {
        return Err(format!("{server} lists no verify_keys"));
    }
    let bytes = crypto::object_signing_bytes(object);
    let mut keys = Vec::new();
    for (key_id, entry) in verify_keys {
        let key = entry.get("key").and_then(Value::as_str).and_then(crypto::verifying_key_from_b64);
        let key = key.ok_or_else(|| format!("{server}'s {key_id} does not decode"))?;
        let signed =
            crypto::signature_of(object, server, key_id).is_some_and(|sig| verify_remembered(&key, &bytes, &sig));
        if !signed {
            return Err(format!("the key answer is not signed by {server}'s {key_id}"));
        }
        keys.push(FetchedKey {
            key_id: key_id.clone(),
            key,
            valid_until_ts: valid_until.min(now_ms.saturating_add(MAX_KEY_VALIDITY_MS)),
        });
    }
    if let Some(old) = object.get("old_verify_keys").and_then(Value::as_object) {
        for (key_id, entry) in old {
            let key = entry.get("key").and_then(Value::as_str).and_then(crypto::verifying_key_from_b64);
            let expired = entry.get("expired_ts").and_then(Value::as_u64);
            if let (Some(key), Some(expired)) = (key, expired) {
                keys.push(FetchedKey { key_id: key_id.clone(), key, valid_until_ts: expired });
            }
        }
    }
    Ok(keys)
}

/// Whether `object` carries a valid signature by the notary `notary` (its key from the
/// `trusted_key_servers` configuration, as Synapse's `PerspectivesKeyFetcher` checks).
pub fn notary_signed(object: &Map<String, Value>, notary: &str, key_id: &str, key: &VerifyingKey) -> bool {
    crypto::signature_of(object, notary, key_id)
        .is_some_and(|sig| verify_remembered(key, &crypto::object_signing_bytes(object), &sig))
}

/// The key IDs a key answer lists (`verify_keys` and `old_verify_keys`).
pub fn listed_key_ids(object: &Map<String, Value>) -> Vec<String> {
    ["verify_keys", "old_verify_keys"]
        .iter()
        .filter_map(|f| object.get(*f).and_then(Value::as_object))
        .flat_map(|m| m.keys().cloned())
        .collect()
}

/// Removes from a key answer every `verify_keys` / `old_verify_keys` entry `known` refuses;
/// returns how many were removed.
pub fn strip_entries(object: &mut Map<String, Value>, known: impl Fn(&str, &str) -> bool) -> u64 {
    let server = object.get("server_name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut stripped = 0;
    for field in ["verify_keys", "old_verify_keys"] {
        if let Some(Value::Object(map)) = object.get_mut(field) {
            let before = map.len();
            map.retain(|key_id, _| known(&server, key_id));
            stripped += (before - map.len()) as u64;
        }
    }
    stripped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_answer_verifies_and_a_stripped_or_altered_one_does_not() {
        let k1 = KeyPair::from_seed("hs1", "ed25519:k1", [1; 32]);
        let k2 = KeyPair::from_seed("hs1", "ed25519:k2", [2; 32]);
        let old = [OldKey { key_id: "ed25519:k1".into(), key: k1.public_key(), expired_ts: 500 }];
        let object = server_keys_object(&k2, &old, 10_000);
        let keys = verify_server_keys(&object, "hs1", 0).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], FetchedKey { key_id: "ed25519:k2".into(), key: k2.public_key(), valid_until_ts: 10_000 });
        assert_eq!(keys[1].valid_until_ts, 500, "an old key is valid until its expired_ts");
        assert!(verify_server_keys(&object, "hs2", 0).is_err(), "another server's answer");
        // The 7-day cap.
        let far = server_keys_object(&k2, &[], u64::MAX / 2);
        assert_eq!(verify_server_keys(&far, "hs1", 1_000).unwrap()[0].valid_until_ts, 1_000 + MAX_KEY_VALIDITY_MS);
        // A proxy that strips the current key breaks the answer: nothing signed it any more.
        let mut stripped = object.clone();
        assert_eq!(strip_entries(&mut stripped, |_, id| id == "ed25519:k1"), 1);
        assert!(verify_server_keys(&stripped, "hs1", 0).is_err());
        let mut altered = object.clone();
        altered.insert("valid_until_ts".into(), json!(20_000));
        assert!(verify_server_keys(&altered, "hs1", 0).is_err(), "a longer validity than signed");
    }

    #[test]
    fn a_remembered_good_signature_does_not_vouch_for_a_tampered_object() {
        let k = KeyPair::from_seed("hs7", "ed25519:k1", [7; 32]);
        let object = server_keys_object(&k, &[], 10_000);
        // Checked twice: the second answer comes from the memo, with the same verdict.
        assert!(verify_server_keys(&object, "hs7", 0).is_ok());
        assert!(verify_server_keys(&object, "hs7", 0).is_ok());
        // Same signature, other bytes: checked for real, and refused.
        let mut altered = object.clone();
        altered.insert("valid_until_ts".into(), json!(20_000));
        assert!(verify_server_keys(&altered, "hs7", 0).is_err());
        let mut other_key = object.clone();
        let k2 = KeyPair::from_seed("hs7", "ed25519:k1", [8; 32]);
        other_key.insert("verify_keys".into(), json!({"ed25519:k1": {"key": k2.public_key_b64()}}));
        assert!(verify_server_keys(&other_key, "hs7", 0).is_err(), "another key under the cached signature");
        // A signature never made, on an object a memo has seen: refused.
        let mut forged = object.clone();
        forged.insert("signatures".into(), json!({"hs7": {"ed25519:k1": crypto::b64_encode(&[0u8; 64])}}));
        assert!(verify_server_keys(&forged, "hs7", 0).is_err());
        // And the good one still verifies afterwards.
        assert!(verify_server_keys(&object, "hs7", 0).is_ok());
    }
}
