//! What identity servers, and homeservers acting for their users' clients, record about
//! identity (the `identity` measures of `summary.json` read only these, with the PDU and
//! decision records): lookups, invites by e-mail, bindings, the `key_validity_url` checks,
//! MSC4004 pushes and `m.identity_server` account data.

use serde::{Deserialize, Serialize};

/// An identity server's inputs other than messages: its faults, and the start of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fault", rename_all = "snake_case")]
pub enum IdentityInput {
    /// A new `lookup_pepper`.
    RotatePepper { pepper: String },
    /// The long-term key is revoked; a key made from `seed` signs from now on.
    RevokeKey {
        #[serde(with = "seed_hex")]
        seed: [u8; 32],
    },
    /// The run starts: MSC4004 pushes to the identity servers its scenario lists.
    PushMappings,
}

/// How a client's lookup of one address ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookupOutcome {
    /// An identity server mapped the address to a user ID.
    Found,
    /// No identity server asked mapped it (no redirect left, or none offered).
    NotFound,
    /// `M_INVALID_PEPPER` again after the retries: lost to a pepper rotation.
    InvalidPepper,
    /// No answer (timeout, unreachable identity server, an error status).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "identity", rename_all = "snake_case")]
pub enum IdentityEvent {
    /// A client's lookup of `address` ended (`asked`: the identity server it began with;
    /// `answered_by`: the one whose answer ended it, after redirects).
    Lookup {
        user: String,
        client: String,
        address: String,
        asked: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answered_by: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mxid: Option<String>,
        redirects: u32,
        pepper_retries: u32,
        outcome: LookupOutcome,
    },
    /// An invite by e-mail of `address` in `room` by `user` through `client` began: `route` is
    /// the identity server its account data (or the default) names, `None` when the client
    /// has none (the invite is not attempted: `why`). `stale`: the client acted on a copy of
    /// the account data its homeserver no longer holds.
    InviteByEmail {
        user: String,
        client: String,
        room: String,
        address: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        route: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stale: bool,
    },
    /// The invite by e-mail ended before any invite event (`why`: the lookup failed, the store
    /// was refused, the room is not held …).
    InviteAbandoned { user: String, room: String, address: String, why: String },
    /// The lookup found `mxid`: a plain invite of it was made (`event`).
    InvitedByLookup {
        user: String,
        room: String,
        address: String,
        mxid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
    },
    /// `/store-invite` answered and `m.room.third_party_invite` (`event`, state key `token`)
    /// was sent into the room (`room`: its scenario name, `room_id`: its ID).
    ThirdPartyInviteSent { user: String, room: String, room_id: String, address: String, token: String, event: String },
    /// An identity server bound `address` to `mxid` and has `invites` pending invites for it.
    Bound { address: String, mxid: String, invites: u32 },
    /// The server that issues the invite for `token` (the inviting server on
    /// `/exchange_third_party_invite`, or the invitee's when it is in the room) decided on the
    /// invite of `mxid` into room `room_id`:
    /// `event` is the `m.room.member` invite when it issued it, `why` when it refused.
    InviteIssued {
        room_id: String,
        token: String,
        mxid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    /// A `key_validity_url` answer (or its absence) at this server: `at_receipt` when it is
    /// the divergent design's check of a received invite, otherwise the issuer's.
    KeyValidity {
        event: String,
        public_key: String,
        valid: bool,
        at_receipt: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        why: Option<String>,
    },
    /// MSC4004 `POST /lookups` from `from` reached this identity server: stored or refused.
    Push {
        from: String,
        hashes: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// A client of `user` wrote `m.identity_server` (`value`: the identity server, `null`
    /// (disabled) or `absent`); `lost`: it replaced a write it had not synced yet.
    AccountData { user: String, client: String, value: String, lost: bool },
}

mod seed_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(seed: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&seed.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes: Result<Vec<u8>, _> =
            (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16)).collect();
        let bytes = bytes.map_err(serde::de::Error::custom)?;
        bytes.try_into().map_err(|_| serde::de::Error::custom("a seed is 32 bytes (64 hex digits)"))
    }
}
