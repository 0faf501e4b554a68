//! The identity service's association lookup (Identity Service API v2, "Association lookup";
//! MSC4004 for redirects between identity servers): canonical third-party identifiers, the
//! peppered lookup hash, and the answer of an identity server to `/hash_details`, `/lookup`
//! and MSC4004's `/lookups` push. Pure: no clock, no network; the simulator's identity-server
//! node wraps it.

use super::crypto;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A third-party identifier's medium (Identity Service API, "3PID types").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Medium {
    Email,
    Msisdn,
}

impl Medium {
    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Email => "email",
            Medium::Msisdn => "msisdn",
        }
    }
}

/// Why an address is not a valid 3PID of its medium.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("an email address needs exactly one '@' with text on both sides: {0:?}")]
    Email(String),
    #[error("a phone number (msisdn) is E.164 digits, 7 to 15 of them, without '+' or spaces: {0:?}")]
    Msisdn(String),
}

/// The canonical form of an address, the only form that may be hashed (Identity Service API,
/// "3PID types"): an email is `local@domain` with Unicode caseless matching applied (full
/// case folding: `Strauß@Example.com` → `strauss@example.com`); an msisdn is its E.164 digits
/// without the leading `+` (a `+` is dropped here, anything else but digits is refused).
pub fn canonical(medium: Medium, address: &str) -> Result<String, AddressError> {
    match medium {
        Medium::Email => {
            let folded = caseless::default_case_fold_str(address.trim());
            let mut parts = folded.split('@');
            let (local, domain) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if local.is_empty() || domain.is_empty() || parts.next().is_some() || folded.contains(char::is_whitespace) {
                return Err(AddressError::Email(address.to_owned()));
            }
            Ok(folded)
        }
        Medium::Msisdn => {
            let digits = address.trim().strip_prefix('+').unwrap_or(address.trim());
            if !(7..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(AddressError::Msisdn(address.to_owned()));
            }
            Ok(digits.to_owned())
        }
    }
}

/// A lookup algorithm (`/hash_details` `algorithms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha256,
    None,
}

/// What a client sends for one canonical address (Identity Service API, "Client behaviour"):
/// `sha256`: the URL-safe unpadded base64 of SHA-256 over `"<address> <medium> <pepper>"`;
/// `none`: `"<address> <medium>"` in clear.
pub fn lookup_hash(algorithm: Algorithm, address: &str, medium: Medium, pepper: &str) -> String {
    match algorithm {
        Algorithm::Sha256 => {
            crypto::b64_url_encode(&crypto::sha256(format!("{address} {} {pepper}", medium.as_str()).as_bytes()))
        }
        Algorithm::None => format!("{address} {}", medium.as_str()),
    }
}

/// `GET /_matrix/identity/v2/hash_details`; `alt_lookup_peppers` is MSC4004's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashDetails {
    pub algorithms: Vec<Algorithm>,
    pub lookup_pepper: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alt_lookup_peppers: Vec<String>,
}

/// `POST /_matrix/identity/v2/lookup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRequest {
    pub algorithm: Algorithm,
    pub pepper: String,
    pub addresses: Vec<String>,
}

/// The `200` answer: `mappings` (hash as sent → user ID) and, with MSC4004, hashes this server
/// does not map but knows another identity server does (server → hashes as sent).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupAnswer {
    pub mappings: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub third_party_mappings: BTreeMap<String, Vec<String>>,
}

/// A lookup error (`400`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LookupError {
    /// `M_INVALID_PEPPER`: the pepper is not (or no longer) accepted; the client should fetch
    /// `/hash_details` again and retry once.
    #[error("M_INVALID_PEPPER")]
    InvalidPepper,
    /// `M_INVALID_PARAM`: an algorithm the server does not offer.
    #[error("M_INVALID_PARAM")]
    InvalidParam,
}

/// MSC4004 `POST /_matrix/identity/v2/lookups`: a server declares the hashes it maps,
/// computed with the recipient's pepper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupsPush {
    pub algorithm: Algorithm,
    pub pepper: String,
    pub mappings: BTreeMap<String, Vec<String>>,
}

/// Who an identity server takes MSC4004 pushes from (the MSC: "trusted servers" only; how
/// trust is set up is left open, so it is a list here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PushTrust {
    /// Only the listed servers (the MSC's security section).
    Trusted(BTreeSet<String>),
    /// Any pusher: the attack the MSC's security section names (a rogue server redirects
    /// lookups of addresses it does not own to itself).
    Anyone,
}

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("M_FORBIDDEN: {0} is not a trusted server")]
    Untrusted(String),
    #[error("M_INVALID_PEPPER")]
    InvalidPepper,
}

/// An identity server's association directory: its bindings, its pepper and the peppers it
/// still accepts, and the third-party mappings pushed to it (MSC4004).
#[derive(Debug, Clone)]
pub struct Directory {
    /// (medium, canonical address) → user ID.
    bindings: BTreeMap<(Medium, String), String>,
    pepper: String,
    /// Older peppers still accepted (MSC4004 `alt_lookup_peppers`), newest first.
    alt_peppers: Vec<String>,
    /// How many old peppers stay accepted after a rotation (0 without MSC4004).
    keep_alt: usize,
    offer_none: bool,
    /// Pushed hashes (computed with the pepper they were pushed with): (pepper, hash) → server.
    pushed: BTreeMap<(String, String), String>,
    trust: PushTrust,
}

impl Directory {
    pub fn new(pepper: &str, keep_alt: usize, trust: PushTrust) -> Directory {
        Directory {
            bindings: BTreeMap::new(),
            pepper: pepper.to_owned(),
            alt_peppers: Vec::new(),
            keep_alt,
            offer_none: false,
            pushed: BTreeMap::new(),
            trust,
        }
    }

    /// Binds a canonical address to a user ID (`/3pid/bind`, after validation).
    pub fn bind(&mut self, medium: Medium, address: &str, user_id: &str) {
        self.bindings.insert((medium, address.to_owned()), user_id.to_owned());
    }

    /// The user ID `address` is bound to, if any.
    pub fn bound(&self, medium: Medium, address: &str) -> Option<&str> {
        self.bindings.get(&(medium, address.to_owned())).map(String::as_str)
    }

    pub fn unbind(&mut self, medium: Medium, address: &str) {
        self.bindings.remove(&(medium, address.to_owned()));
    }

    /// A new pepper; the old one stays accepted if MSC4004 keeps alt peppers.
    pub fn rotate_pepper(&mut self, pepper: &str) {
        let old = std::mem::replace(&mut self.pepper, pepper.to_owned());
        self.alt_peppers.insert(0, old);
        self.alt_peppers.truncate(self.keep_alt);
    }

    pub fn hash_details(&self) -> HashDetails {
        let mut algorithms = vec![Algorithm::Sha256];
        if self.offer_none {
            algorithms.push(Algorithm::None);
        }
        HashDetails { algorithms, lookup_pepper: self.pepper.clone(), alt_lookup_peppers: self.alt_peppers.clone() }
    }

    fn accepts(&self, pepper: &str) -> bool {
        pepper == self.pepper || self.alt_peppers.iter().any(|p| p == pepper)
    }

    /// `/lookup`: the server hashes every binding with the pepper given and compares exactly;
    /// hashes pushed with that pepper by another server come back as `third_party_mappings`.
    pub fn lookup(&self, request: &LookupRequest) -> Result<LookupAnswer, LookupError> {
        if request.algorithm == Algorithm::None && !self.offer_none {
            return Err(LookupError::InvalidParam);
        }
        if !self.accepts(&request.pepper) {
            return Err(LookupError::InvalidPepper);
        }
        let asked: BTreeSet<&str> = request.addresses.iter().map(String::as_str).collect();
        let mut answer = LookupAnswer::default();
        for ((medium, address), user) in &self.bindings {
            let hash = lookup_hash(request.algorithm, address, *medium, &request.pepper);
            if asked.contains(hash.as_str()) {
                answer.mappings.insert(hash, user.clone());
            }
        }
        for hash in asked {
            if answer.mappings.contains_key(hash) {
                continue;
            }
            if let Some(server) = self.pushed.get(&(request.pepper.clone(), hash.to_owned())) {
                answer.third_party_mappings.entry(server.clone()).or_default().push(hash.to_owned());
            }
        }
        Ok(answer)
    }

    /// MSC4004 `/lookups` from `pusher`: refused from an untrusted pusher unless the server
    /// trusts anyone, and with a pepper it does not accept. Returns the hashes stored.
    pub fn push(&mut self, pusher: &str, push: &LookupsPush) -> Result<usize, PushError> {
        if let PushTrust::Trusted(servers) = &self.trust {
            if !servers.contains(pusher) {
                return Err(PushError::Untrusted(pusher.to_owned()));
            }
        }
        if !self.accepts(&push.pepper) {
            return Err(PushError::InvalidPepper);
        }
        let mut stored = 0;
        for (server, hashes) in &push.mappings {
            for h in hashes {
                self.pushed.insert((push.pepper.clone(), h.clone()), server.clone());
                stored += 1;
            }
        }
        Ok(stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_s_lookup_vectors() {
        let h = |a: &str, m: Medium, p: &str| lookup_hash(Algorithm::Sha256, a, m, p);
        assert_eq!(h("alice@example.com", Medium::Email, "matrixrocks"), "4kenr7N9drpCJ4AfalmlGQVsOn3o2RHjkADUpXJWZUc");
        assert_eq!(h("bob@example.com", Medium::Email, "matrixrocks"), "LJwSazmv46n0hlMlsb_iYxI0_HXEqy_yj6Jm636cdT8");
        assert_eq!(h("18005552067", Medium::Msisdn, "matrixrocks"), "nlo35_T5fzSGZzJApqu8lgIudJvmOQtDaHtr-I4rU7I");
        // Computed independently (Python hashlib) for other peppers: a rotation changes every hash.
        assert_eq!(
            h("carol@example.org", Medium::Email, "roomsim-pepper-1"),
            "gPKlYOEDKWdxgOM-D6StghGUQyvXJc7qO1PNrxKarNE"
        );
        assert_eq!(
            h("447700900123", Medium::Msisdn, "roomsim-pepper-1"),
            "34Bc_2Ts3vymoZEy6U42FwV5hp460cgYCIr2nEqOlc8"
        );
        assert_eq!(
            h("carol@example.org", Medium::Email, "roomsim-pepper-0"),
            "a-u5rfZM4cNvMHNmr51StQdNTSmu2kT25gtEIvYS3PY"
        );
        assert_eq!(lookup_hash(Algorithm::None, "alice@example.com", Medium::Email, "x"), "alice@example.com email");
    }

    #[test]
    fn addresses_are_canonical_before_hashing() {
        assert_eq!(canonical(Medium::Email, "Strauß@Example.com").unwrap(), "strauss@example.com");
        assert_eq!(canonical(Medium::Email, " Alice@EXAMPLE.com ").unwrap(), "alice@example.com");
        assert!(canonical(Medium::Email, "alice").is_err());
        assert!(canonical(Medium::Email, "a@b@c").is_err());
        assert!(canonical(Medium::Email, "a b@c").is_err());
        assert_eq!(canonical(Medium::Msisdn, "+447700900123").unwrap(), "447700900123");
        assert!(canonical(Medium::Msisdn, "+44 7700 900123").is_err());
        assert!(canonical(Medium::Msisdn, "12345").is_err());
    }

    fn directory(keep_alt: usize) -> Directory {
        let mut d = Directory::new("p0", keep_alt, PushTrust::Trusted(["ids.hs2".to_owned()].into()));
        d.bind(Medium::Email, "alice@example.com", "@alice:hs1");
        d
    }

    fn ask(d: &Directory, pepper: &str, address: &str) -> Result<LookupAnswer, LookupError> {
        let addresses = vec![lookup_hash(Algorithm::Sha256, address, Medium::Email, pepper)];
        d.lookup(&LookupRequest { algorithm: Algorithm::Sha256, pepper: pepper.into(), addresses })
    }

    #[test]
    fn a_rotation_invalidates_the_old_pepper_unless_msc4004_keeps_it() {
        let mut plain = directory(0);
        assert_eq!(ask(&plain, "p0", "alice@example.com").unwrap().mappings.len(), 1);
        plain.rotate_pepper("p1");
        assert_eq!(ask(&plain, "p0", "alice@example.com"), Err(LookupError::InvalidPepper));
        assert_eq!(ask(&plain, "p1", "alice@example.com").unwrap().mappings.len(), 1, "the retry with the new pepper");
        assert!(plain.hash_details().alt_lookup_peppers.is_empty());
        let mut kept = directory(1);
        kept.rotate_pepper("p1");
        assert_eq!(kept.hash_details().alt_lookup_peppers, vec!["p0".to_owned()]);
        assert_eq!(ask(&kept, "p0", "alice@example.com").unwrap().mappings.len(), 1, "MSC4004: still answered");
        kept.rotate_pepper("p2");
        assert_eq!(ask(&kept, "p0", "alice@example.com"), Err(LookupError::InvalidPepper), "only one kept");
        // An unknown address is simply absent.
        assert!(ask(&kept, "p2", "nobody@example.com").unwrap().mappings.is_empty());
        let none = LookupRequest { algorithm: Algorithm::None, pepper: "p2".into(), addresses: vec![] };
        assert_eq!(kept.lookup(&none), Err(LookupError::InvalidParam));
    }

    #[test]
    fn pushes_redirect_lookups_only_from_trusted_servers_unless_anyone_is_trusted() {
        let bob = lookup_hash(Algorithm::Sha256, "bob@example.com", Medium::Email, "p0");
        let push = |server: &str| LookupsPush {
            algorithm: Algorithm::Sha256,
            pepper: "p0".into(),
            mappings: [(server.to_owned(), vec![bob.clone()])].into(),
        };
        let mut d = directory(0);
        assert_eq!(d.push("ids.evil", &push("ids.evil")), Err(PushError::Untrusted("ids.evil".into())));
        assert!(ask(&d, "p0", "bob@example.com").unwrap().third_party_mappings.is_empty());
        assert_eq!(d.push("ids.hs2", &push("ids.hs2")), Ok(1));
        let answer = ask(&d, "p0", "bob@example.com").unwrap();
        assert_eq!(answer.third_party_mappings, [("ids.hs2".to_owned(), vec![bob.clone()])].into());
        // The attack: a server that trusts anyone takes a rogue redirect.
        let mut open = Directory::new("p0", 0, PushTrust::Anyone);
        assert_eq!(open.push("ids.evil", &push("ids.evil")), Ok(1));
        assert_eq!(
            ask(&open, "p0", "bob@example.com").unwrap().third_party_mappings.keys().next().unwrap(),
            "ids.evil"
        );
        // A binding it holds itself wins over any push.
        open.bind(Medium::Email, "bob@example.com", "@bob:hs1");
        let answer = ask(&open, "p0", "bob@example.com").unwrap();
        assert_eq!(answer.mappings.values().next().unwrap(), "@bob:hs1");
        assert!(answer.third_party_mappings.is_empty());
    }
}
