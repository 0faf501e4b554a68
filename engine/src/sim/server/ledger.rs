//! Modelled signature checks: a lookup in the set of signatures that honest keys really made.
//!
//! Servers always sign with real ed25519 (event IDs, the logged PDUs and `keys.json` stay real,
//! so a run's output passes `dag verify --keys`, and a server checking in `real` mode can
//! receive from one checking in `modelled` mode). What `signatures = "modelled"` saves is the
//! verification, the expensive half (an ed25519 verification costs two to three signings): every time a
//! server signs an event with its own key, the signature is entered here under (server, event
//! ID); a modelled check is then one hash probe comparing the received signature with the one
//! recorded. The event ID is the SHA-256 of exactly the bytes a signature covers (Server-Server
//! API §"Calculating the reference hash for an event"; §"Signing events"), so the entry binds
//! the signature to those bytes: a signature made by any other key, or moved from another
//! event, is not in the set.
//!
//! Why a lookup and not a MAC keyed by the signer's key: a MAC would have to replace the
//! ed25519 signature on the wire (run-wide, breaking mixed real/modelled runs and `dag verify`
//! of the outputs) or travel beside it as a second, unchecked-by-anyone-else tag; the lookup
//! checks the very signature a real verifier checks.
//!
//! Determinism: the ledger memoises a pure predicate, "this signature verifies for this
//! server's key over these bytes". A probe that misses (an event no honest key signed: forged,
//! or built outside a server) falls back to the real ed25519 verification, so a verdict never
//! depends on what the ledger holds at that moment, nor on the order in which parallel servers
//! filled it. (An honest server's signatures are deterministic and entered when made, at least
//! one network latency before anyone can receive them, so honest events always hit.) Only keys
//! that are the directory's key of the server they sign for are entered.
//!
//! Memory: one entry (about 100 bytes) per signature made, a fraction of the PDU itself.

use super::Directory;
use crate::protocol::crypto::KeyPair;
use crate::protocol::fasthash::FastMap;
use crate::protocol::pdu::Pdu;
use crate::sim::federation::ServerIdx;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signature;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Shards of the map (servers sign and check from rayon's threads in a parallel window).
const SHARDS: usize = 64;

type Key = (ServerIdx, [u8; 32]);

/// The signatures honest keys made, by (signer, event ID).
pub struct SignatureLedger {
    shards: Vec<Mutex<FastMap<Key, [u8; 64]>>>,
    /// Modelled checks that missed and paid a real verification (tests read it).
    fallbacks: AtomicU64,
}

impl Default for SignatureLedger {
    fn default() -> Self {
        SignatureLedger {
            shards: (0..SHARDS).map(|_| Mutex::new(FastMap::default())).collect(),
            fallbacks: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for SignatureLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries: usize = self.shards.iter().map(|s| s.lock().expect("ledger lock").len()).sum();
        f.debug_struct("SignatureLedger").field("entries", &entries).finish()
    }
}

/// The 32-byte reference hash an event ID (v4+: `$` + URL-safe base64) names.
fn event_digest(event_id: &str) -> Option<[u8; 32]> {
    // Room for the decoder's length estimate (it may ask for a few bytes more than it writes).
    let mut out = [0u8; 48];
    let text = event_id.strip_prefix('$')?;
    match URL_SAFE_NO_PAD.decode_slice(text, &mut out) {
        Ok(32) => out[..32].try_into().ok(),
        _ => None,
    }
}

impl SignatureLedger {
    fn shard(&self, digest: &[u8; 32]) -> &Mutex<FastMap<Key, [u8; 64]>> {
        &self.shards[digest[0] as usize % SHARDS]
    }

    fn insert(&self, signer: ServerIdx, event_id: &str, signature: &Signature) {
        if let Some(digest) = event_digest(event_id) {
            self.shard(&digest).lock().expect("ledger lock").insert((signer, digest), signature.to_bytes());
        }
    }

    /// Whether `signature` is the one `signer`'s honest key made for `event_id`.
    pub fn holds(&self, signer: ServerIdx, event_id: &str, signature: &Signature) -> bool {
        let Some(digest) = event_digest(event_id) else { return false };
        let shard = self.shard(&digest).lock().expect("ledger lock");
        shard.get(&(signer, digest)).is_some_and(|s| *s == signature.to_bytes())
    }

    /// Counts a modelled check that had to verify for real.
    pub(crate) fn note_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Modelled checks so far that missed the ledger and verified for real.
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

impl Directory {
    /// Enters the signature `key` made on `pdu` for server `signer`, if `key` is that server's
    /// key in the directory (a wrong key's signature is never entered).
    pub fn record_signature(&self, signer: ServerIdx, key: &KeyPair, pdu: &Pdu) {
        if !self.keys_of(signer).iter().any(|(_, k)| *k == key.public_key()) {
            return;
        }
        if let Some(sig) = crate::protocol::crypto::signature_of(&pdu.json, &key.entity, &key.key_id) {
            self.signatures.insert(signer, &pdu.event_id, &sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::crypto;
    use crate::protocol::room_version::V12;
    use crate::protocol::test_support::{Ev, RoomBuilder};
    use std::collections::BTreeMap;

    fn directory(keys: &[KeyPair]) -> Directory {
        Directory {
            names: keys.iter().map(|k| k.entity.clone()).collect(),
            index: keys.iter().enumerate().map(|(i, k)| (k.entity.clone(), i as ServerIdx)).collect::<BTreeMap<_, _>>(),
            public_keys: keys.iter().map(KeyPair::public_key).collect(),
            signatures: SignatureLedger::default(),
            keys: Default::default(),
            accounts: Default::default(),
            portable: Default::default(),
        }
    }

    fn signed(key: &KeyPair) -> Pdu {
        let mut r = RoomBuilder::new(&V12);
        r.add("CREATE", Ev::create("@alice:hs1").ts(1));
        let mut map = r.pdu("CREATE").json.clone();
        map.remove("signatures");
        crypto::sign_event(&mut map, &V12, key);
        Pdu::from_object(map, &V12).unwrap()
    }

    #[test]
    fn holds_exactly_the_honest_signature_of_the_event() {
        let hs1 = KeyPair::from_seed("hs1", "ed25519:k1", [1; 32]);
        let wrong = KeyPair::from_seed("hs1", "ed25519:k1", [2; 32]);
        let dir = directory(&[hs1.clone()]);
        let honest = signed(&hs1);
        let forged = signed(&wrong);
        assert_eq!(honest.event_id, forged.event_id, "signatures are not part of the event ID");
        dir.record_signature(0, &hs1, &honest);
        dir.record_signature(0, &wrong, &forged); // not the directory's key: ignored
        let sig = |p: &Pdu| crypto::signature_of(&p.json, "hs1", "ed25519:k1").unwrap();
        assert!(dir.signatures.holds(0, &honest.event_id, &sig(&honest)));
        assert!(!dir.signatures.holds(0, &forged.event_id, &sig(&forged)));
        assert!(!dir.signatures.holds(1, &honest.event_id, &sig(&honest)), "another signer");
        assert!(!dir.signatures.holds(0, "$AAAA", &sig(&honest)), "another event");
    }
}
