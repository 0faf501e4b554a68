//! An identity server's third-party-invite duties (Identity Service API "Invitation storage"
//! and "Ephemeral invitation signing", Server-Server API "Third-party invites"): it stores an
//! invite for an address nobody has bound (`/store-invite`), answers with a token, its
//! long-term key and a fresh ephemeral key; when the address is bound it signs each pending
//! invite's `{mxid, sender, token}` and hands them to the bound user's homeserver
//! (`/3pid/onbind`); and it says whether a key is still valid (`/pubkey/isvalid`,
//! `/pubkey/ephemeral/isvalid`). The association lookup is `protocol::identity::Directory`.
//!
//! Deterministic: every key and token comes from seed bytes the caller draws from the run's
//! seeded streams; nothing reads a clock.

use crate::protocol::crypto::{self, KeyPair};
use crate::protocol::identity::{Directory, Medium};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// `/store-invite`'s answer: what the inviting homeserver puts in `m.room.third_party_invite`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredInvite {
    pub token: String,
    /// `[{public_key, key_validity_url}]`: the long-term key, then the ephemeral one.
    pub public_keys: Vec<PublicKey>,
    /// The redacted address (`c…@e…`): never the address itself.
    pub display_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub public_key: String,
    pub key_validity_url: String,
}

/// Why `/store-invite` refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreInviteError {
    /// `400 M_THREEPID_IN_USE`: the address is bound; the inviter should invite `mxid`.
    #[error("M_THREEPID_IN_USE: bound to {mxid}")]
    InUse { mxid: String },
    /// `400 M_UNRECOGNIZED`: only email invites are stored.
    #[error("M_UNRECOGNIZED: only email addresses can be invited")]
    Medium,
}

/// One invite of `/3pid/onbind`: the homeserver of `mxid` turns it into an `m.room.member`
/// invite whose `sender` is the original inviter and whose `third_party_invite.signed` is this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnBindInvite {
    pub medium: Medium,
    pub address: String,
    pub mxid: String,
    pub room_id: String,
    pub sender: String,
    pub signed: Map<String, Value>,
}

struct Pending {
    medium: Medium,
    address: String,
    room_id: String,
    sender: String,
    /// The invite's ephemeral key pair (its public half is in `public_keys`).
    ephemeral: KeyPair,
}

pub struct IdentityServer {
    /// Its server name (`ids.example`): the entity of its signatures, the host of its URLs.
    pub name: String,
    pub directory: Directory,
    long_term: KeyPair,
    /// Ephemeral public keys still valid, by invite token.
    ephemeral_valid: BTreeSet<String>,
    pending: BTreeMap<String, Pending>,
    key_generation: u32,
}

impl IdentityServer {
    pub fn new(name: &str, directory: Directory, long_term_seed: [u8; 32]) -> IdentityServer {
        IdentityServer {
            name: name.to_owned(),
            directory,
            long_term: KeyPair::from_seed(name, "ed25519:0", long_term_seed),
            ephemeral_valid: BTreeSet::new(),
            pending: BTreeMap::new(),
            key_generation: 0,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}/_matrix/identity/v2/pubkey/{path}", self.name)
    }

    pub fn long_term_public_key(&self) -> String {
        self.long_term.public_key_b64()
    }

    /// `/store-invite`. `token_seed` makes the token and the ephemeral key (the spec's token
    /// alphabet is `[0-9a-zA-Z.=_-]`: URL-safe base64 is within it).
    pub fn store_invite(
        &mut self,
        medium: Medium,
        address: &str,
        room_id: &str,
        sender: &str,
        token_seed: [u8; 32],
    ) -> Result<StoredInvite, StoreInviteError> {
        if medium != Medium::Email {
            return Err(StoreInviteError::Medium);
        }
        if let Some(mxid) = self.directory.bound(medium, address) {
            return Err(StoreInviteError::InUse { mxid: mxid.to_owned() });
        }
        let token = crypto::b64_url_encode(&crypto::sha256(&[&token_seed[..], b"token"].concat()));
        let ephemeral =
            KeyPair::from_seed(&self.name, "ed25519:ephemeral", crypto::sha256(&[&token_seed[..], b"key"].concat()));
        let ephemeral_b64 = ephemeral.public_key_b64();
        self.ephemeral_valid.insert(ephemeral_b64.clone());
        self.pending.insert(
            token.clone(),
            Pending {
                medium,
                address: address.to_owned(),
                room_id: room_id.to_owned(),
                sender: sender.to_owned(),
                ephemeral,
            },
        );
        Ok(StoredInvite {
            token,
            public_keys: vec![
                PublicKey { public_key: self.long_term_public_key(), key_validity_url: self.url("isvalid") },
                PublicKey { public_key: ephemeral_b64, key_validity_url: self.url("ephemeral/isvalid") },
            ],
            display_name: redacted(address),
        })
    }

    /// Binds `address` to `mxid` and returns the pending invites for it, each `signed` by the
    /// long-term key (the spec allows either key; the ephemeral one stays valid until
    /// [`Self::expire_ephemeral`]) (`{mxid, sender, token}`, Signing JSON), for `/3pid/onbind`. They can be
    /// had once: the invites are gone afterwards.
    pub fn bind(&mut self, medium: Medium, address: &str, mxid: &str) -> Vec<OnBindInvite> {
        self.bind_signing(medium, address, mxid, false)
    }

    /// [`Self::bind`], each invite signed by its own ephemeral key when `ephemeral` (the spec
    /// allows either key; the ephemeral one is valid for the lifetime the server chose).
    pub fn bind_signing(&mut self, medium: Medium, address: &str, mxid: &str, ephemeral: bool) -> Vec<OnBindInvite> {
        self.directory.bind(medium, address, mxid);
        let tokens: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.medium == medium && p.address == address)
            .map(|(t, _)| t.clone())
            .collect();
        let mut out = Vec::new();
        for token in tokens {
            let p = self.pending.remove(&token).expect("listed above");
            let mut signed = json!({"mxid": mxid, "sender": p.sender, "token": token});
            let object = signed.as_object_mut().expect("an object");
            crypto::sign_object(object, if ephemeral { &p.ephemeral } else { &self.long_term });
            out.push(OnBindInvite {
                medium,
                address: p.address,
                mxid: mxid.to_owned(),
                room_id: p.room_id,
                sender: p.sender,
                signed: object.clone(),
            });
        }
        out
    }

    /// `/pubkey/isvalid` (`ephemeral`: `/pubkey/ephemeral/isvalid`) for `public_key` as given.
    pub fn is_valid(&self, public_key: &str, ephemeral: bool) -> bool {
        let normal = crypto::verifying_key_from_b64(public_key).map(|k| crypto::b64_encode(k.as_bytes()));
        let Some(key) = normal else { return false };
        if ephemeral {
            self.ephemeral_valid.contains(&key)
        } else {
            // Keys are retired only by revocation here: the current key is the valid one.
            key == self.long_term_public_key()
        }
    }

    /// Revokes the long-term key (a compromise, or the scenario's key revocation): a new key
    /// from `seed` signs from now on; the old one answers invalid.
    pub fn revoke_long_term_key(&mut self, seed: [u8; 32]) {
        self.key_generation += 1;
        self.long_term = KeyPair::from_seed(&self.name, &format!("ed25519:{}", self.key_generation), seed);
    }

    /// Ends an ephemeral key's validity (its lifetime is the identity server's choice).
    pub fn expire_ephemeral(&mut self, public_key: &str) {
        if let Some(key) = crypto::verifying_key_from_b64(public_key).map(|k| crypto::b64_encode(k.as_bytes())) {
            self.ephemeral_valid.remove(&key);
        }
    }
}

/// `carol@example.org` → `c…@e…`: the first character of the local part and of the domain.
fn redacted(address: &str) -> String {
    let (local, domain) = address.split_once('@').unwrap_or((address, ""));
    let first = |s: &str| s.chars().next().map(String::from).unwrap_or_default();
    format!("{}…@{}…", first(local), first(domain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::auth::verify_third_party_signed;
    use crate::protocol::identity::PushTrust;

    fn server() -> IdentityServer {
        IdentityServer::new("ids.example", Directory::new("p0", 0, PushTrust::Anyone), [7; 32])
    }

    #[test]
    fn a_stored_invite_is_signed_at_binding_and_verifies_with_the_invite_s_keys() {
        let mut ids = server();
        let invite = ids.store_invite(Medium::Email, "carol@example.org", "!r:hs1", "@alice:hs1", [1; 32]).unwrap();
        assert_eq!(invite.display_name, "c…@e…");
        assert_eq!(invite.public_keys.len(), 2);
        assert!(invite.token.chars().all(|c| c.is_ascii_alphanumeric() || "-_.=".contains(c)), "{}", invite.token);
        assert!(invite.public_keys[1].key_validity_url.ends_with("/pubkey/ephemeral/isvalid"));
        let keys: Vec<String> = invite.public_keys.iter().map(|k| k.public_key.clone()).collect();
        assert!(ids.is_valid(&keys[0], false) && ids.is_valid(&keys[1], true));
        let onbind = ids.bind(Medium::Email, "carol@example.org", "@carol:hs3");
        assert_eq!(onbind.len(), 1);
        let signed = &onbind[0].signed;
        assert_eq!(signed["mxid"], "@carol:hs3");
        assert_eq!(signed["token"], invite.token.as_str());
        assert_eq!(onbind[0].sender, "@alice:hs1");
        assert!(verify_third_party_signed(signed, &keys), "the auth rule's check passes");
        // A forged object (another mxid) does not verify.
        let mut forged = signed.clone();
        forged.insert("mxid".into(), json!("@mallory:hs4"));
        assert!(!verify_third_party_signed(&forged, &keys));
        // Once only: a second bind has nothing left.
        assert!(ids.bind(Medium::Email, "carol@example.org", "@carol:hs3").is_empty());
    }

    #[test]
    fn a_bound_address_is_not_stored_and_only_email_is() {
        let mut ids = server();
        ids.bind(Medium::Email, "carol@example.org", "@carol:hs3");
        assert_eq!(
            ids.store_invite(Medium::Email, "carol@example.org", "!r:hs1", "@alice:hs1", [1; 32]),
            Err(StoreInviteError::InUse { mxid: "@carol:hs3".into() })
        );
        assert_eq!(
            ids.store_invite(Medium::Msisdn, "447700900123", "!r:hs1", "@alice:hs1", [1; 32]),
            Err(StoreInviteError::Medium)
        );
    }

    #[test]
    fn a_revoked_long_term_key_is_invalid_but_its_old_signatures_still_verify() {
        let mut ids = server();
        let invite = ids.store_invite(Medium::Email, "carol@example.org", "!r:hs1", "@alice:hs1", [1; 32]).unwrap();
        let old = invite.public_keys[0].public_key.clone();
        ids.revoke_long_term_key([9; 32]);
        assert!(!ids.is_valid(&old, false), "revoked");
        assert!(ids.is_valid(&ids.long_term_public_key(), false), "the new key is valid");
        // Signed after the revocation: by the new key, which the invite event does not list.
        let onbind = ids.bind(Medium::Email, "carol@example.org", "@carol:hs3");
        let keys: Vec<String> = invite.public_keys.iter().map(|k| k.public_key.clone()).collect();
        assert!(!verify_third_party_signed(&onbind[0].signed, &keys), "the auth rule refuses it everywhere");
        // The ephemeral key, expired, is invalid too; the URL-safe form is accepted when asked.
        let eph = invite.public_keys[1].public_key.clone();
        let url_safe = eph.replace('+', "-").replace('/', "_");
        assert!(ids.is_valid(&url_safe, true));
        ids.expire_ephemeral(&eph);
        assert!(!ids.is_valid(&eph, true));
    }
}
