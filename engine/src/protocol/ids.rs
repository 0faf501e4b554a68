//! Matrix identifiers and their grammars (digest `pdu-and-crypto.md` §2).
//!
//! The typed wrappers validate once at construction; inside the engine identifiers travel as the
//! strings the PDU carries, because event IDs and user IDs are compared as strings by the rules.

use std::fmt;

/// Longest user ID, room ID or event ID, in bytes.
pub const MAX_ID_BYTES: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {why}")]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
    pub why: &'static str,
}

fn id_error(kind: &'static str, value: &str, why: &'static str) -> IdError {
    IdError { kind, value: value.chars().take(80).collect(), why }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(Box<str>);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                $check(value)?;
                Ok(Self(value.into()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// `hostname [":" port]`.
    ServerName, check_server_name
);
id_type!(
    /// `@localpart:server_name`, historical grammar (any code point but `:` and NUL).
    UserId, check_user_id
);
id_type!(
    /// `!opaque:server_name` (v11) or `!` + 43 URL-safe base64 characters (v12).
    RoomId, check_room_id
);
id_type!(
    /// `$` + reference hash (room versions 4 and later).
    EventId, check_event_id
);

/// Server name grammar: IPv4, `[IPv6]` or a DNS name of `0-9 A-Z a-z - .`, optional `:port`.
pub fn check_server_name(value: &str) -> Result<(), IdError> {
    const KIND: &str = "server name";
    if value.is_empty() || value.len() > MAX_ID_BYTES {
        return Err(id_error(KIND, value, "must be 1 to 255 bytes"));
    }
    let (host, port) = split_port(value);
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(id_error(KIND, value, "port must be 1 to 5 digits"));
        }
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner
            .strip_suffix(']')
            .is_some_and(|ip6| !ip6.is_empty() && ip6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.'))
    } else {
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if host_ok {
        Ok(())
    } else {
        Err(id_error(KIND, value, "hostname must be an IP literal or a DNS name"))
    }
}

fn split_port(value: &str) -> (&str, Option<&str>) {
    if value.starts_with('[') {
        match value.rfind("]:") {
            Some(pos) => (&value[..pos + 1], Some(&value[pos + 2..])),
            None => (value, None),
        }
    } else {
        match value.rfind(':') {
            Some(pos) => (&value[..pos], Some(&value[pos + 1..])),
            None => (value, None),
        }
    }
}

/// The server part of `@user:server` / `!room:server` (everything after the first `:`).
pub fn domain_of(id: &str) -> Option<&str> {
    id.split_once(':').map(|(_, server)| server)
}

/// The localpart of a user ID (between `@` and the first `:`).
pub fn localpart_of(user_id: &str) -> Option<&str> {
    user_id.strip_prefix('@')?.split_once(':').map(|(local, _)| local)
}

/// User ID grammar as receivers must accept it (historical IDs included): `@`, a localpart of any
/// code points except `:` and NUL, `:`, a valid server name; at most 255 bytes.
pub fn check_user_id(value: &str) -> Result<(), IdError> {
    const KIND: &str = "user ID";
    if value.len() > MAX_ID_BYTES {
        return Err(id_error(KIND, value, "longer than 255 bytes"));
    }
    let Some(rest) = value.strip_prefix('@') else {
        return Err(id_error(KIND, value, "must start with '@'"));
    };
    let Some((local, server)) = rest.split_once(':') else {
        return Err(id_error(KIND, value, "must contain ':' before the server name"));
    };
    if local.contains('\0') {
        return Err(id_error(KIND, value, "localpart contains NUL"));
    }
    check_server_name(server).map_err(|_| id_error(KIND, value, "server name is invalid"))
}

/// Room ID: `!opaque:server` (v1–v11) or `!` + 43 URL-safe unpadded base64 characters (v12).
pub fn check_room_id(value: &str) -> Result<(), IdError> {
    const KIND: &str = "room ID";
    if value.len() > MAX_ID_BYTES {
        return Err(id_error(KIND, value, "longer than 255 bytes"));
    }
    let Some(rest) = value.strip_prefix('!') else {
        return Err(id_error(KIND, value, "must start with '!'"));
    };
    if is_url_safe_hash(rest) {
        return Ok(());
    }
    match rest.split_once(':') {
        Some((opaque, server)) if !opaque.contains('\0') => {
            check_server_name(server).map_err(|_| id_error(KIND, value, "server name is invalid"))
        }
        _ => Err(id_error(KIND, value, "must be !opaque:server or ! + 43 base64 characters")),
    }
}

/// Event ID of room versions 4+: `$` + 43 URL-safe base64 characters.
pub fn check_event_id(value: &str) -> Result<(), IdError> {
    match value.strip_prefix('$') {
        Some(hash) if is_url_safe_hash(hash) => Ok(()),
        _ => Err(id_error("event ID", value, "must be '$' + 43 URL-safe base64 characters")),
    }
}

/// The account key of an account-key user ID (MSC4243 §2): the localpart, when it is a 32-byte
/// ed25519 public key in URL-safe unpadded base64 (exactly 43 characters of `A-Z a-z 0-9 - _`,
/// canonical: the unused low bits of the last character are zero). Standard base64 (`+`, `/`)
/// and padding are refused: user IDs appear in URL paths. Whether the 32 bytes are a valid
/// curve point is left to signature verification (a key that is not one verifies nothing).
pub fn account_key_of(user_id: &str) -> Option<&str> {
    use base64::Engine;
    let key = localpart_of(user_id)?;
    if !is_url_safe_hash(key) {
        return None;
    }
    // Strict decoding: no padding, no non-zero trailing bits (one text per key).
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key).ok()?;
    (bytes.len() == 32).then_some(key)
}

/// `value` when it is a 32-byte key in canonical URL-safe unpadded base64 (43 characters, no
/// non-zero trailing bits): the encoding of MSC4243 account keys, and roomsim's for MSC4345
/// server keys and MSC4348 account keys (open question C14).
pub fn as_key(value: &str) -> Option<&str> {
    use base64::Engine;
    if !is_url_safe_hash(value) {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(value).ok()?;
    (bytes.len() == 32).then_some(value)
}

/// MSC4345 §2: the server key of `@localpart:<server key>` (the server part, when it is a key).
pub fn server_key_of(user_id: &str) -> Option<&str> {
    let rest = user_id.strip_prefix('@')?;
    let (local, server) = rest.split_once(':')?;
    if local.contains('\0') {
        return None;
    }
    as_key(server)
}

/// MSC4348 §2 rule 1: the account key of `@<account key>` (no server part).
pub fn portable_key_of(user_id: &str) -> Option<&str> {
    as_key(user_id.strip_prefix('@')?)
}

/// A user ID as a room of `version` writes them: `@<account key>` (MSC4348),
/// `@localpart:<server key>` (MSC4345), or the usual grammar ([`check_user_id`]).
pub fn check_user_id_in(version: &crate::protocol::room_version::RoomVersion, value: &str) -> Result<(), IdError> {
    const KIND: &str = "user ID";
    if version.portable_accounts {
        return portable_key_of(value).map(|_| ()).ok_or_else(|| {
            id_error(KIND, value, "must be '@' + a 43-character URL-safe base64 account key (MSC4348)")
        });
    }
    if version.participation {
        return server_key_of(value).map(|_| ()).ok_or_else(|| {
            id_error(KIND, value, "must be '@localpart:' + a 43-character URL-safe base64 server key (MSC4345)")
        });
    }
    check_user_id(value)
}

/// 43 characters of the URL-safe base64 alphabet: an unpadded 32-byte hash or key.
pub fn is_url_safe_hash(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        for ok in ["hs1.example", "hs1", "1.2.3.4:8448", "[::1]:80", "[1234:5678::abcd]", "a-b.c"] {
            assert!(check_server_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "hs1.example:", "hs1:123456", "hs_1", "[::1", "a b", "x:y:z"] {
            assert!(check_server_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_ids() {
        assert!(UserId::parse("@alice:hs1.example").is_ok());
        assert!(UserId::parse("@:hs1.example").is_ok(), "historical: empty localpart accepted");
        assert!(UserId::parse("@Ünïcode:hs1").is_ok(), "historical IDs accept any code point");
        assert!(UserId::parse("alice:hs1").is_err());
        assert!(UserId::parse("@alice").is_err());
        assert!(UserId::parse("@alice:bad host").is_err());
        assert!(UserId::parse(&format!("@{}:hs1", "a".repeat(260))).is_err());
        assert_eq!(domain_of("@a:b.c:8448"), Some("b.c:8448"));
        assert_eq!(localpart_of("@a:b"), Some("a"));
    }

    #[test]
    fn account_key_user_ids() {
        // MSC4243 §2's example user ID.
        let key = "l8Hft5qXKn1vfHrg3p4-W8gELQVo8N13JkluMfmn2sQ";
        assert_eq!(account_key_of(&format!("@{key}:matrix.org")), Some(key));
        assert_eq!(
            account_key_of("@tamtml8LhZFhegmUUwXzSRBshscwlsi2DjVna0wbtQ0:hs1.example"),
            Some("tamtml8LhZFhegmUUwXzSRBshscwlsi2DjVna0wbtQ0")
        );
        // 42 and 44 characters.
        assert_eq!(account_key_of(&format!("@{}:hs1", &key[..42])), None);
        assert_eq!(account_key_of(&format!("@{key}A:hs1")), None);
        // Standard base64 is refused (`+`, `/`), and so is padding.
        assert_eq!(account_key_of("@l8Hft5qXKn1vfHrg3p4+W8gELQVo8N13JkluMfmn2sQ:hs1"), None);
        assert_eq!(account_key_of("@l8Hft5qXKn1vfHrg3p4/W8gELQVo8N13JkluMfmn2sQ:hs1"), None);
        assert_eq!(account_key_of(&format!("@{key}=:hs1")), None);
        // Non-canonical: the last character carries bits beyond the 32 bytes.
        assert_eq!(account_key_of(&format!("@{}R:hs1", &key[..42])), None);
        // Not a user ID, or a human localpart.
        assert_eq!(account_key_of(key), None);
        assert_eq!(account_key_of("@alice:hs1"), None);
    }

    #[test]
    fn room_and_event_ids() {
        assert!(RoomId::parse("!abc:hs1.example").is_ok());
        assert!(RoomId::parse("!XGvoYwlWLSsgkxcE9V5EvtxVHzES4aI-0ATmE6oNvg8").is_ok());
        assert!(RoomId::parse("!nocolon").is_err());
        assert!(EventId::parse("$XGvoYwlWLSsgkxcE9V5EvtxVHzES4aI-0ATmE6oNvg8").is_ok());
        assert!(EventId::parse("$short").is_err());
        assert!(EventId::parse("$XGvoYwlWLSsgkxcE9V5EvtxVHzES4aI+0ATmE6oNvg8").is_err());
    }
}
