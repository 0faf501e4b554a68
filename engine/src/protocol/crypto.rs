//! Hashing and signing (digest `pdu-and-crypto.md` §5, §7, §8): content hash, reference hash
//! (event IDs), ed25519 signatures on JSON objects and events, batch verification.

use super::json::object_to_canonical_bytes;
use super::room_version::RoomVersion;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Padding optional; non-zero trailing bits in the last character tolerated, as Python's
/// decoder (Synapse) does — the spec's own test-vector seed has them.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);

/// Unpadded standard base64 (hashes, signatures, server keys).
pub fn b64_encode(bytes: &[u8]) -> String {
    STANDARD_NO_PAD.encode(bytes)
}

/// URL-safe unpadded base64 (event IDs, v12 room IDs, account keys).
pub fn b64_url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes standard base64, padded or not (decoders SHOULD tolerate padding).
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD_LENIENT.decode(text).ok()
}

/// Decodes either alphabet, padded or not (decision A9: third-party-invite public keys).
pub fn b64_decode_any(text: &str) -> Option<Vec<u8>> {
    STANDARD_LENIENT.decode(text).or_else(|_| URL_SAFE_LENIENT.decode(text)).ok()
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The content hash: sha256 of the canonical PDU without `unsigned`, `signatures`, `hashes`
/// (and any stray `event_id`).
pub fn content_hash(pdu: &Map<String, Value>) -> [u8; 32] {
    // A borrowed view: no copy of the event (BTreeMap order = canonical key order).
    let view: std::collections::BTreeMap<&str, &Value> = pdu
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "unsigned" | "signatures" | "hashes" | "event_id"))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    sha256(&serde_json::to_vec(&view).expect("serialising borrowed JSON cannot fail"))
}

/// Reference hash → event ID (`$` + URL-safe base64), room versions 4+.
pub fn event_id(pdu: &Map<String, Value>, version: &RoomVersion) -> String {
    event_id_from_signing_bytes(&event_signing_bytes(pdu, version))
}

/// The event ID is the hash of exactly the bytes every signature covers.
pub fn event_id_from_signing_bytes(bytes: &[u8]) -> String {
    format!("${}", b64_url_encode(&sha256(bytes)))
}

/// The canonical bytes an event signature covers: the redacted event without `signatures`.
pub fn event_signing_bytes(pdu: &Map<String, Value>, version: &RoomVersion) -> Vec<u8> {
    serde_json::to_vec(&crate::protocol::redaction::redacted_view(pdu, version))
        .expect("serialising borrowed JSON cannot fail")
}

/// The canonical bytes a plain JSON-object signature covers.
pub fn object_signing_bytes(object: &Map<String, Value>) -> Vec<u8> {
    let mut copy = object.clone();
    copy.remove("signatures");
    copy.remove("unsigned");
    object_to_canonical_bytes(&copy)
}

/// The key ID of every account-key signature (MSC4243 §3): a constant, because the key has
/// nothing to do with the claimed domain.
pub const ACCOUNT_KEY_ID: &str = "ed25519:1";

/// The account-key user ID `@<key>:<domain>` of an account key (MSC4243 §2).
pub fn account_user_id(key: &KeyPair, domain: &str) -> String {
    format!("@{}:{domain}", b64_url_encode(key.public_key().as_bytes()))
}

/// The public key an account key names (the URL-safe localpart of an account-key user ID, see
/// [`super::ids::account_key_of`]); `None` when it is not 32 bytes of a valid ed25519 point.
pub fn account_verifying_key(account_key: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(account_key).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// A signing identity: the entity name, the key ID and the key.
#[derive(Clone)]
pub struct KeyPair {
    pub entity: String,
    pub key_id: String,
    pub signing_key: SigningKey,
}

impl KeyPair {
    pub fn from_seed(entity: &str, key_id: &str, seed: [u8; 32]) -> KeyPair {
        KeyPair { entity: entity.into(), key_id: key_id.into(), signing_key: SigningKey::from_bytes(&seed) }
    }
    /// An account key (MSC4243 §3): the entity is the URL-safe unpadded base64 public key (the
    /// localpart of the account's user IDs), the key ID the constant [`ACCOUNT_KEY_ID`].
    pub fn account_from_seed(seed: [u8; 32]) -> KeyPair {
        let signing_key = SigningKey::from_bytes(&seed);
        let entity = b64_url_encode(signing_key.verifying_key().as_bytes());
        KeyPair { entity, key_id: ACCOUNT_KEY_ID.into(), signing_key }
    }
    pub fn public_key(&self) -> VerifyingKey {
        self.signing_key.verifying_key()
    }
    /// Unpadded standard base64 of the public key (the `--keys` / key-server form).
    pub fn public_key_b64(&self) -> String {
        b64_encode(self.public_key().as_bytes())
    }
}

fn insert_signature(object: &mut Map<String, Value>, entity: &str, key_id: &str, sig: &Signature) {
    let signatures = object.entry("signatures").or_insert_with(|| Value::Object(Map::new()));
    if !signatures.is_object() {
        *signatures = Value::Object(Map::new());
    }
    let by_entity = signatures
        .as_object_mut()
        .expect("checked above")
        .entry(entity.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !by_entity.is_object() {
        *by_entity = Value::Object(Map::new());
    }
    by_entity
        .as_object_mut()
        .expect("checked above")
        .insert(key_id.to_owned(), Value::String(b64_encode(&sig.to_bytes())));
}

/// Signs a JSON object (§7.1); other entities' signatures are kept.
pub fn sign_object(object: &mut Map<String, Value>, key: &KeyPair) {
    let sig = key.signing_key.sign(&object_signing_bytes(object));
    insert_signature(object, &key.entity, &key.key_id, &sig);
}

/// Sets `hashes.sha256` to the content hash (§5).
pub fn set_content_hash(pdu: &mut Map<String, Value>) {
    let digest = content_hash(pdu);
    let mut hashes = Map::new();
    hashes.insert("sha256".into(), Value::String(b64_encode(&digest)));
    pdu.insert("hashes".into(), Value::Object(hashes));
}

/// Signs an event (§7.2): the signature covers the redacted copy, content hash included.
/// The caller sets `hashes` first (see [`set_content_hash`]); co-signers just call this again.
pub fn sign_event(pdu: &mut Map<String, Value>, version: &RoomVersion, key: &KeyPair) {
    let sig = key.signing_key.sign(&event_signing_bytes(pdu, version));
    insert_signature(pdu, &key.entity, &key.key_id, &sig);
}

/// Finds `signatures[entity][key_id]` as a decoded signature.
pub fn signature_of(object: &Map<String, Value>, entity: &str, key_id: &str) -> Option<Signature> {
    let text = object.get("signatures")?.get(entity)?.get(key_id)?.as_str()?;
    let bytes: [u8; 64] = b64_decode(text)?.try_into().ok()?;
    Some(Signature::from_bytes(&bytes))
}

/// Parses a public key given as base64 (either alphabet).
pub fn verifying_key_from_b64(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = b64_decode_any(text)?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// Verifies one signature over `message`.
pub fn verify(key: &VerifyingKey, message: &[u8], sig: &Signature) -> bool {
    key.verify(message, sig).is_ok()
}

/// One signature to check in a batch.
pub struct SignatureCheck<'a> {
    pub message: &'a [u8],
    pub signature: Signature,
    pub key: VerifyingKey,
}

/// Verifies many signatures; `true` per item when it verifies. Uses ed25519-dalek's batch
/// verification (one multiscalar multiplication per chunk). Chunks are [`BATCH`] signatures
/// (above 1024, where curve25519-dalek switches to Pippenger's method), the same chunks whatever
/// the thread count, so the answers are too (a batch's verdict is the batch equation's); they
/// run in parallel on rayon's pool, small enough to share out beside other work. A chunk that
/// fails is bisected so that one bad signature costs a few more batches, not a thousand single
/// checks. The output order is the input order.
pub fn verify_batch(checks: &[SignatureCheck<'_>]) -> Vec<bool> {
    use rayon::prelude::*;
    checks.par_chunks(BATCH).flat_map_iter(verify_chunk).collect()
}

/// The batch size of [`verify_batch`].
const BATCH: usize = 4096;

fn verify_chunk(chunk: &[SignatureCheck<'_>]) -> Vec<bool> {
    const SINGLE_BELOW: usize = 16;
    if chunk.len() < SINGLE_BELOW {
        return chunk.iter().map(|c| c.key.verify_strict(c.message, &c.signature).is_ok()).collect();
    }
    let messages: Vec<&[u8]> = chunk.iter().map(|c| c.message).collect();
    let sigs: Vec<Signature> = chunk.iter().map(|c| c.signature).collect();
    let keys: Vec<VerifyingKey> = chunk.iter().map(|c| c.key).collect();
    if ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok() {
        return vec![true; chunk.len()];
    }
    let (left, right) = chunk.split_at(chunk.len() / 2);
    let mut out = verify_chunk(left);
    out.extend(verify_chunk(right));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::json::parse_strict;
    use crate::protocol::room_version::{V11, V12};

    fn vector_key() -> KeyPair {
        let seed = sha256(b"roomsim test vector: hs1.example ed25519:a");
        KeyPair::from_seed("hs1.example", "ed25519:a", seed)
    }

    fn obj(text: &str) -> Map<String, Value> {
        parse_strict(text.as_bytes()).unwrap().as_object().unwrap().clone()
    }

    #[test]
    fn spec_json_signing_vectors() {
        let seed: [u8; 32] = b64_decode("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap().try_into().unwrap();
        let key = KeyPair::from_seed("domain", "ed25519:1", seed);
        let mut empty = Map::new();
        sign_object(&mut empty, &key);
        assert_eq!(
            empty["signatures"]["domain"]["ed25519:1"],
            "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"
        );
        let mut two = obj(r#"{"one":1,"two":"Two"}"#);
        sign_object(&mut two, &key);
        assert_eq!(
            two["signatures"]["domain"]["ed25519:1"],
            "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"
        );
    }

    #[test]
    fn spec_event_vector_content_hash_and_v11_signature() {
        let seed: [u8; 32] = b64_decode("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1").unwrap().try_into().unwrap();
        let key = KeyPair::from_seed("domain", "ed25519:1", seed);
        let mut ev = obj(
            r#"{"room_id":"!x:domain","sender":"@a:domain","origin":"domain","origin_server_ts":1000000,"signatures":{},"hashes":{},"type":"X","content":{},"prev_events":[],"auth_events":[],"depth":3,"unsigned":{"age_ts":1000000}}"#,
        );
        set_content_hash(&mut ev);
        assert_eq!(ev["hashes"]["sha256"], "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
        sign_event(&mut ev, &V11, &key);
        // The digest's pitfall: with v11 redaction (origin dropped) the signature differs from
        // the spec page's pre-v11 vector.
        assert_eq!(
            ev["signatures"]["domain"]["ed25519:1"],
            "Jxp+1glFcZM+nnHpY0EkedRR7u0VmKsJYGnQqIvqus3UvL5X/p1y6wSkLhGoTBel6MZ9lrMIzUqrjqFquWJKBw"
        );
    }

    fn build(version: &RoomVersion, json: &str) -> Map<String, Value> {
        let mut ev = obj(json);
        set_content_hash(&mut ev);
        sign_event(&mut ev, version, &vector_key());
        ev
    }

    #[test]
    fn digest_vectors_v11() {
        assert_eq!(vector_key().public_key_b64(), "CDw7Nvqc05RQ6QikN8hmj48Jcov24dK36hNReIdDg1k");
        let create = build(
            &V11,
            r#"{"type":"m.room.create","state_key":"","sender":"@alice:hs1.example","room_id":"!testroom:hs1.example","content":{"room_version":"11"},"origin_server_ts":1700000000000,"depth":1,"prev_events":[],"auth_events":[]}"#,
        );
        assert_eq!(create["hashes"]["sha256"], "w4I+hkg4lYc4OAunJgWoGVAiYz1w8emthzBvAcUxGT8");
        assert_eq!(
            create["signatures"]["hs1.example"]["ed25519:a"],
            "ERND7z2UV+N/UFuAB6Ofus2imuqKX8Cmp6hbc18Ulyfx1afOe/bNbZp7Ey61Z9wKAhDxZWlk+VIn3F6DQSxcDw"
        );
        let create_id = event_id(&create, &V11);
        assert_eq!(create_id, "$bO23CqmP4wSFGlSLDr5THoSRxr3lHv8Csa9StbKgm84");
        let join = build(
            &V11,
            &format!(
                r#"{{"type":"m.room.member","state_key":"@alice:hs1.example","sender":"@alice:hs1.example","room_id":"!testroom:hs1.example","content":{{"displayname":"Alice","membership":"join"}},"origin_server_ts":1700000000001,"depth":2,"prev_events":["{create_id}"],"auth_events":["{create_id}"]}}"#
            ),
        );
        assert_eq!(join["hashes"]["sha256"], "M/GRFml2XiTyU4VtKwKA23MA9dl59JfX0rMyhDwfXeI");
        assert_eq!(
            String::from_utf8(event_signing_bytes(&join, &V11)).unwrap(),
            r#"{"auth_events":["$bO23CqmP4wSFGlSLDr5THoSRxr3lHv8Csa9StbKgm84"],"content":{"membership":"join"},"depth":2,"hashes":{"sha256":"M/GRFml2XiTyU4VtKwKA23MA9dl59JfX0rMyhDwfXeI"},"origin_server_ts":1700000000001,"prev_events":["$bO23CqmP4wSFGlSLDr5THoSRxr3lHv8Csa9StbKgm84"],"room_id":"!testroom:hs1.example","sender":"@alice:hs1.example","state_key":"@alice:hs1.example","type":"m.room.member"}"#
        );
        assert_eq!(
            join["signatures"]["hs1.example"]["ed25519:a"],
            "+oRTAWZYCUZ/Kfs0iLoT0UpJs0BVOqEwv4/eudMD5e/TQb8zve428e9nOg2f6q3cosUCfFeGyBPoZ4Wv0WYQDg"
        );
        assert_eq!(event_id(&join, &V11), "$rwYM8jQ_UggVd_6B99A0OQkU8cHD9N1TdJ-rOcWeO4A");
    }

    #[test]
    fn digest_vectors_v12() {
        let create = build(
            &V12,
            r#"{"type":"m.room.create","state_key":"","sender":"@alice:hs1.example","content":{"room_version":"12"},"origin_server_ts":1700000000000,"depth":1,"prev_events":[],"auth_events":[]}"#,
        );
        assert_eq!(create["hashes"]["sha256"], "ASocNUd2aUQb55VszelX/xp+CU60YbgfzVogBSPJP48");
        assert_eq!(
            create["signatures"]["hs1.example"]["ed25519:a"],
            "4F3NXb6U19JyHcnENwsT4IQ84779SKWSD5WT/o0jUugT0IZqJtAJXaRwUxyTIkhxsiBiLgFqfveyfq9Ew5LWBA"
        );
        let create_id = event_id(&create, &V12);
        assert_eq!(create_id, "$XGvoYwlWLSsgkxcE9V5EvtxVHzES4aI-0ATmE6oNvg8");
        let room_id = format!("!{}", &create_id[1..]);
        let join = build(
            &V12,
            &format!(
                r#"{{"type":"m.room.member","state_key":"@alice:hs1.example","sender":"@alice:hs1.example","room_id":"{room_id}","content":{{"membership":"join"}},"origin_server_ts":1700000000001,"depth":2,"prev_events":["{create_id}"],"auth_events":[]}}"#
            ),
        );
        assert_eq!(join["hashes"]["sha256"], "B3KJ/CShk307oWU5iNkwJtOwNSNAHMgEXE1gGjTsgHQ");
        assert_eq!(
            join["signatures"]["hs1.example"]["ed25519:a"],
            "GWTnXlY2sQXrzX8IKUGr9b7twRRPhvpAx/Pfjp7Tmqj/FaBOr7SJoapweO9lrlkTQtDn1ww8k4O4etQVJOf0BQ"
        );
        assert_eq!(event_id(&join, &V12), "$Ho78yxOLXZF8XycKpo1EmoZk6BiScGAQKSirhZRdvx4");
    }

    #[test]
    fn msc4243_account_key_vectors() {
        let seed = sha256(b"roomsim test vector: account key of alice on hs1.example");
        let account = SigningKey::from_bytes(&seed);
        let public = b64_url_encode(account.verifying_key().as_bytes());
        assert_eq!(public, "tamtml8LhZFhegmUUwXzSRBshscwlsi2DjVna0wbtQ0");
        let key = KeyPair { entity: public.clone(), key_id: "ed25519:1".into(), signing_key: account };
        let helper = KeyPair::account_from_seed(seed);
        assert_eq!((helper.entity.as_str(), helper.key_id.as_str()), (public.as_str(), ACCOUNT_KEY_ID));
        assert_eq!(account_user_id(&helper, "hs1.example"), format!("@{public}:hs1.example"));
        assert_eq!(account_verifying_key(&public), Some(helper.public_key()));
        assert_eq!(account_verifying_key("tamtml8LhZFhegmUUwXzSRBshscwlsi2DjVna0wbtQ"), None);
        let mut query = obj(r#"{"account_name":"alice","domain":"hs1.example"}"#);
        sign_object(&mut query, &key);
        assert_eq!(
            query["signatures"][&public]["ed25519:1"],
            "NBXNoGX0JKekY2Ky5Xw02AiXqTNAa58YL2UMstmPte15uMekmBrWrDHRwP6ozjDBL1/95Nrv+/md03E7rCanCA"
        );
    }

    #[test]
    fn batch_verification_flags_the_bad_one() {
        let key = vector_key();
        let messages: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut checks: Vec<SignatureCheck> = messages
            .iter()
            .map(|m| SignatureCheck { message: m, signature: key.signing_key.sign(m), key: key.public_key() })
            .collect();
        checks[77].signature = key.signing_key.sign(b"something else");
        let results = verify_batch(&checks);
        assert_eq!(results.iter().filter(|ok| !**ok).count(), 1);
        assert!(!results[77]);
    }
}
