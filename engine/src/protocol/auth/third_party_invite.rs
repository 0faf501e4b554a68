//! v11 auth rule 4.4.1 / v12 5.4.1: invites made from a third-party invite.

use super::{reject, AuthResult, AuthState};
use crate::protocol::crypto;
use crate::protocol::pdu::{Pdu, TypedContent};
use crate::protocol::room_version::RoomVersion;
use serde_json::{Map, Value};

pub(super) fn check_third_party_invite(
    version: &RoomVersion,
    pdu: &Pdu,
    state: &AuthState,
    target: &str,
) -> AuthResult {
    let TypedContent::Member(content) = &pdu.content else { unreachable!("member event") };
    // v11 auth rule 4.4.1.2: `signed` is required.
    let Some(signed) = &content.third_party_signed else {
        return Err(reject(version, "4.4.1.2", "third_party_invite has no signed object"));
    };
    // v11 auth rule 4.4.1.3 (Synapse also requires `signatures`, without which 4.4.1.7 fails).
    let (Some(Value::String(mxid)), Some(Value::String(_token))) = (signed.get("mxid"), signed.get("token")) else {
        return Err(reject(version, "4.4.1.3", "signed lacks mxid or token"));
    };
    // v11 auth rule 4.4.1.4.
    if mxid != target {
        return Err(reject(version, "4.4.1.4", format!("signed.mxid {mxid} differs from state_key {target}")));
    }
    // v11 auth rule 4.4.1.5: the token names an m.room.third_party_invite in the state.
    let Some(invite) = state.third_party_invite else {
        return Err(reject(version, "4.4.1.5", "no m.room.third_party_invite for the token"));
    };
    // v11 auth rule 4.4.1.6: only its sender can redeem it.
    if invite.sender != pdu.sender {
        return Err(reject(version, "4.4.1.6", "sender differs from the third-party invite's sender"));
    }
    let TypedContent::ThirdPartyInvite(tpi) = &invite.content else {
        return Err(reject(version, "4.4.1.5", "token names an event that is not a third-party invite"));
    };
    // v11 auth rule 4.4.1.7 / 4.4.1.8.
    if verify_third_party_signed(signed, &tpi.public_keys) {
        Ok(())
    } else {
        Err(reject(version, "4.4.1.8", "no signature in signed verifies with the invite's public keys"))
    }
}

/// Whether `signed` carries a signature by one of `public_keys` (§4.1). As Synapse does (A2.2):
/// for each public key in order, only the first `ed25519:` signature (entities and key IDs in
/// sorted order) is tried; entity names and key IDs are not matched against anything.
pub fn verify_third_party_signed(signed: &Map<String, Value>, public_keys: &[String]) -> bool {
    let Some(Value::Object(signatures)) = signed.get("signatures") else { return false };
    let first = signatures.iter().find_map(|(entity, block)| {
        let block = block.as_object()?;
        block.keys().find(|k| k.starts_with("ed25519:")).map(|key_id| (entity.as_str(), key_id.as_str()))
    });
    let Some((entity, key_id)) = first else { return false };
    let Some(signature) = crypto::signature_of(signed, entity, key_id) else { return false };
    let message = crypto::object_signing_bytes(signed);
    public_keys
        .iter()
        .any(|key| crypto::verifying_key_from_b64(key).is_some_and(|k| crypto::verify(&k, &message, &signature)))
}
