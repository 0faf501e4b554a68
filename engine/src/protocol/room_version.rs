//! The room-version table: the one place that says which room versions exist and what rules
//! each one turns on. The scenario parser, the simulated servers and `dag verify` all look
//! versions up here.
//!
//! A room version is one struct of rule flags: a proposal adds flags, not forks. The table has
//! two parts:
//! - [`STABLE`]: the spec's versions this build implements (11 and 12);
//! - [`EXPERIMENTAL`]: proposal versions, each built on a stable base with struct-update syntax
//!   (`RoomVersion { id: "org.matrix.msc4243.12", account_keys: true, ..V12 }`), so that it differs
//!   from its base only in its identifier and the flags it sets.
//!
//! **A knob either acts or is refused.** Whether a version is implemented is not a field (a
//! field would be copied from the base by `..V12` and silently claim support); it is derived
//! from the flags: [`RoomVersion::unimplemented_flags`] lists the flags that are set but whose
//! rules the engine does not implement yet, and [`lookup`] refuses such a version with
//! [`VersionError::NotImplemented`] instead of letting it behave like its base. When a
//! proposal's rules land, its flag leaves `unimplemented_flags` and its versions become usable.
//! [`RoomVersion::by_id`] and [`implemented`] only ever return implemented versions.
//!
//! **Implemented is not simulated.** A flag can be implemented by the protocol layer (signing,
//! who must sign, the auth rules: what `dag verify` judges) before the simulated servers can
//! create rooms that use it. [`RoomVersion::unsimulated_flags`] lists those; the scenario parser
//! looks versions up with [`lookup_simulated`], which refuses them with
//! [`VersionError::NotSimulated`], while `dag verify` uses [`lookup`]. Today that is
//! `account_keys` (MSC4243): `dag verify` judges account-key DAGs, but the simulated servers
//! do not create account-key users yet, so a scenario cannot ask for such a room.

use std::fmt;

/// Which state resolution algorithm a room version uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateResAlgorithm {
    /// State resolution v2 (room versions 2–11): replay starts from the unconflicted state.
    V2,
    /// State resolution v2.1 (room version 12, MSC4297): replay starts empty and the full
    /// conflicted set includes the conflicted state subgraph.
    V2_1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomVersion {
    /// The identifier in `m.room.create`'s `content.room_version`.
    pub id: &'static str,
    /// v11: the create event is an auth event of every other event. v12 (MSC4291): never listed.
    pub create_in_auth_events: bool,
    /// v12 (MSC4291): room ID = `!` + the create event's reference hash; the create has no room_id.
    pub room_id_is_create_hash: bool,
    /// v12 (MSC4289): creators (sender + `additional_creators`) have infinite power.
    pub privileged_creators: bool,
    pub state_res: StateResAlgorithm,
    /// v11 auth rule 4.2.1 / A2.4: check the authorising server's signature on restricted joins.
    pub restricted_joins: bool,
    pub knocking: bool,
    /// MSC4243: user-ID localparts are account keys, and events are signed by the sender's
    /// account key instead of its server's key (`protocol::signers`). Implemented for
    /// `dag verify`; not simulated yet (see the module documentation).
    pub account_keys: bool,
    /// MSC4345: room-scoped server keys. User IDs are `@<localpart>:<server key>`, the server
    /// key signs its users' events, and `m.server.participation` (requested → accepted →
    /// revoked) decides which keys may act in the room (`protocol::auth::participation`).
    pub participation: bool,
    /// MSC4348 (on MSC4345): user IDs are bare account keys `@<account key>`; every event is
    /// signed by the account key and co-signed by an accepted server key, and an account is
    /// bound to the server that co-signed its current membership.
    pub portable_accounts: bool,
    /// How the rules of MSC4345/4348 are read where the text is defective or silent (each
    /// field names its defect); ignored unless `participation` is set.
    pub participation_rules: ParticipationRules,
}

/// Who may set a server key's participation to `accepted` (open question C2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcceptMode {
    /// MSC4345 §5 rule 1.3 and the "accepted" prose: a user with the `accept` power level.
    Admin,
    /// The join-flow prose of §4: the joining server accepts itself once its request is in
    /// the room.
    SelfAfterRequest,
}

/// MSC4348 account-key revocation (open question D4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountRevocation {
    /// Not in the MSC: only bans remove an account key.
    None,
    /// A leave by the account itself with `content["org.matrix.msc4348.final"] = true` is
    /// final: that account key can never join again.
    SelfSignedLeaveFinal,
}

/// The interpretations of MSC4345 (§5.1 defects D1–D8) and MSC4348 (§8 model) the rules run
/// with. [`ParticipationRules::DEFAULT`] is the reading roomsim defends (open questions C, D).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ParticipationRules {
    /// D1 (C1): rule 1.1.1.5 rejects every correctly co-signed request. `true`: read it as
    /// "allow" (the intent); `false`: as written, so no server can ever join.
    pub fix_request_rule: bool,
    /// C2: who accepts a request.
    pub accept_mode: AcceptMode,
    /// D2 (C3): rule 1.2.1 blocks revoking any state the target key set, so admins could never
    /// revoke a pending request. `true`: block only a current *self-revocation* (the diagram);
    /// `false`: as written.
    pub admin_revokes_pending: bool,
    /// D3 (C4): rule 1.2.2 says "≥ the target server's implicit level", the prose "lower".
    /// `true`: the revoker's level must be strictly above (prose); `false`: `≥` (rules).
    pub revoke_strictly_above: bool,
    /// D4 (C5): rule 1.3 lets an admin accept a key that never requested. `true`: `accepted`
    /// needs current state `requested` and the same `unverified_domain`; `false`: as written.
    pub accept_requires_request: bool,
    /// D8 (C7): `m.server.participation` events are power events in state resolution.
    pub power_events: bool,
    /// MSC4348 D1 (review R2/R3): `false`: an account acts only through the server that
    /// co-signed its current membership; `true`: any accepted server may co-sign its events.
    pub multi_server: bool,
    /// MSC4348 D4.
    pub account_revocation: AccountRevocation,
}

impl ParticipationRules {
    pub const DEFAULT: ParticipationRules = ParticipationRules {
        fix_request_rule: true,
        accept_mode: AcceptMode::Admin,
        admin_revokes_pending: true,
        revoke_strictly_above: true,
        accept_requires_request: true,
        power_events: true,
        multi_server: false,
        account_revocation: AccountRevocation::None,
    };
}

impl Default for ParticipationRules {
    fn default() -> Self {
        ParticipationRules::DEFAULT
    }
}

pub const V11: RoomVersion = RoomVersion {
    id: "11",
    create_in_auth_events: true,
    room_id_is_create_hash: false,
    privileged_creators: false,
    state_res: StateResAlgorithm::V2,
    restricted_joins: true,
    knocking: true,
    account_keys: false,
    participation: false,
    portable_accounts: false,
    participation_rules: ParticipationRules::DEFAULT,
};

pub const V12: RoomVersion = RoomVersion {
    id: "12",
    create_in_auth_events: false,
    room_id_is_create_hash: true,
    privileged_creators: true,
    state_res: StateResAlgorithm::V2_1,
    restricted_joins: true,
    knocking: true,
    account_keys: false,
    participation: false,
    portable_accounts: false,
    participation_rules: ParticipationRules::DEFAULT,
};

/// MSC4243 (account keys) on room version 12.
pub const MSC4243_V12: RoomVersion = RoomVersion { id: "org.matrix.msc4243.12", account_keys: true, ..V12 };

/// MSC4345 (participation) on room version 12.
pub const MSC4345_V12: RoomVersion = RoomVersion { id: "org.matrix.msc4345.12", participation: true, ..V12 };

/// MSC4348 (portable accounts) with MSC4345 (participation), on room version 12: MSC4348 is
/// written on top of MSC4345's server keys.
pub const MSC4348_V12: RoomVersion =
    RoomVersion { id: "org.matrix.msc4348.12", participation: true, portable_accounts: true, ..V12 };

/// The spec's room versions this build implements (v11 auth rule 1.3: others are rejected).
pub const STABLE: [&RoomVersion; 2] = [&V11, &V12];

/// Proposal room versions, each a stable version plus flags.
pub const EXPERIMENTAL: [&RoomVersion; 3] = [&MSC4243_V12, &MSC4345_V12, &MSC4348_V12];

/// Every entry of the table, stable first.
pub fn all() -> impl Iterator<Item = &'static RoomVersion> {
    STABLE.into_iter().chain(EXPERIMENTAL)
}

/// The entries the engine implements: the ones [`lookup`] accepts.
pub fn implemented() -> impl Iterator<Item = &'static RoomVersion> {
    all().filter(|v| v.is_implemented())
}

/// The entries the simulator runs: the ones [`lookup_simulated`] accepts.
pub fn simulated() -> impl Iterator<Item = &'static RoomVersion> {
    all().filter(|v| v.is_simulated())
}

/// Who looks a version up: what "supported" means in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `dag verify` and the protocol layer ([`lookup`]).
    Verify,
    /// The scenario parser and the simulated servers ([`lookup_simulated`]).
    Simulate,
}

impl Purpose {
    fn supported(self) -> Vec<&'static RoomVersion> {
        match self {
            Purpose::Verify => implemented().collect(),
            Purpose::Simulate => simulated().collect(),
        }
    }
}

/// Identifiers quoted and joined with ", ": `"11", "12"`.
pub fn id_list<'a>(versions: impl IntoIterator<Item = &'a RoomVersion>) -> String {
    versions.into_iter().map(|v| format!("\"{}\"", v.id)).collect::<Vec<_>>().join(", ")
}

/// Why [`lookup`] or [`lookup_simulated`] refused an identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionError {
    /// Not in the table.
    Unknown(String, Purpose),
    /// In the table, but it sets flags the engine does not implement yet.
    NotImplemented(&'static RoomVersion, Purpose),
    /// Implemented by the protocol layer (`dag verify` judges it), but it sets flags the
    /// simulated servers do not run yet ([`lookup_simulated`] only).
    NotSimulated(&'static RoomVersion),
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionError::Unknown(id, purpose) => {
                write!(
                    f,
                    "unsupported room version \"{id}\"; supported versions are {}",
                    id_list(purpose.supported())
                )?;
                let pending: Vec<&RoomVersion> = all().filter(|v| !v.is_implemented()).collect();
                let unsimulated: Vec<&RoomVersion> = match purpose {
                    Purpose::Verify => Vec::new(),
                    Purpose::Simulate => all().filter(|v| v.is_implemented() && !v.is_simulated()).collect(),
                };
                let mut notes = Vec::new();
                if !pending.is_empty() {
                    notes.push(format!("experimental, not implemented yet: {}", id_list(pending)));
                }
                if !unsimulated.is_empty() {
                    notes.push(format!("not simulated yet, `dag verify` only: {}", id_list(unsimulated)));
                }
                if !notes.is_empty() {
                    write!(f, " ({})", notes.join("; "))?;
                }
                Ok(())
            }
            VersionError::NotImplemented(v, purpose) => write!(
                f,
                "room version \"{}\" is experimental and not implemented yet (the engine lacks {}); \
                 supported versions are {}",
                v.id,
                v.unimplemented_flags().join(", "),
                id_list(purpose.supported())
            ),
            VersionError::NotSimulated(v) => write!(
                f,
                "room version \"{}\" is experimental and the simulator does not run it yet: its {} rules \
                 need room-scoped server keys and the participation handshake, which the simulated servers \
                 do not have yet (`roomsim dag verify` judges such DAGs); simulated versions are {}",
                v.id,
                v.unsimulated_flags().join(", "),
                id_list(simulated())
            ),
        }
    }
}

impl std::error::Error for VersionError {}

/// The readings of [`ParticipationRules`] other than the default, each a suffix token of a
/// room version identifier (`org.matrix.msc4348.12-multi-server`): a DAG names the rules it
/// was made under in its create event, so every server and `dag verify` judge it alike.
pub const RULE_TOKENS: [(&str, &str); 8] = [
    ("as-written-request", "D1: rule 1.1.1.5 rejects every request, as written (fix_request_rule = false)"),
    ("self-accept", "C2: the key accepts itself after its request (accept_mode = self_after_request)"),
    ("no-admin-revoke-pending", "D2: rule 1.2.1 as written (admin_revokes_pending = false)"),
    (
        "revoke-geq",
        "D3: revoking needs ≥ the server's implicit level, as the rules say (revoke_strictly_above = false)",
    ),
    ("accept-without-request", "D4: rule 1.3 as written (accept_requires_request = false)"),
    ("participation-not-power", "D8: participation events are not power events (power_events = false)"),
    ("multi-server", "MSC4348 D1: any accepted server co-signs any account's events (multi_server = true)"),
    ("final-leave", "MSC4348 D4: an account's own leave with org.matrix.msc4348.final is final"),
];

impl ParticipationRules {
    /// The suffix tokens of these rules, in [`RULE_TOKENS`] order.
    pub fn tokens(&self) -> Vec<&'static str> {
        let d = ParticipationRules::DEFAULT;
        let set = [
            self.fix_request_rule != d.fix_request_rule,
            self.accept_mode != d.accept_mode,
            self.admin_revokes_pending != d.admin_revokes_pending,
            self.revoke_strictly_above != d.revoke_strictly_above,
            self.accept_requires_request != d.accept_requires_request,
            self.power_events != d.power_events,
            self.multi_server != d.multi_server,
            self.account_revocation != d.account_revocation,
        ];
        RULE_TOKENS.iter().zip(set).filter(|(_, s)| *s).map(|((t, _), _)| *t).collect()
    }

    /// The rules a list of tokens names (`None`: an unknown token, or one twice).
    pub fn from_tokens<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Result<ParticipationRules, String> {
        let mut r = ParticipationRules::DEFAULT;
        let mut seen = Vec::new();
        for t in tokens {
            if seen.contains(&t) {
                return Err(format!("rule token {t:?} appears twice"));
            }
            seen.push(t);
            match t {
                "as-written-request" => r.fix_request_rule = false,
                "self-accept" => r.accept_mode = AcceptMode::SelfAfterRequest,
                "no-admin-revoke-pending" => r.admin_revokes_pending = false,
                "revoke-geq" => r.revoke_strictly_above = false,
                "accept-without-request" => r.accept_requires_request = false,
                "participation-not-power" => r.power_events = false,
                "multi-server" => r.multi_server = true,
                "final-leave" => r.account_revocation = AccountRevocation::SelfSignedLeaveFinal,
                other => {
                    let known: Vec<&str> = RULE_TOKENS.iter().map(|(t, _)| *t).collect();
                    return Err(format!("unknown rule token {other:?} (known: {})", known.join(", ")));
                }
            }
        }
        Ok(r)
    }
}

/// A participation version with rule tokens (`<base>-<token>-<token>…`), interned.
fn lookup_variant(id: &str) -> Option<Result<&'static RoomVersion, String>> {
    let (base, rest) = id.split_once('-')?;
    let base = all().find(|v| v.id == base && v.participation)?;
    // Tokens themselves contain '-': match them greedily against the known list, in order.
    let mut tokens = Vec::new();
    let mut rest = rest;
    while !rest.is_empty() {
        let Some((t, _)) = RULE_TOKENS
            .iter()
            .filter(|(t, _)| rest == *t || rest.starts_with(&format!("{t}-")))
            .max_by_key(|(t, _)| t.len())
        else {
            return Some(Err(format!("unknown rule token in {rest:?}")));
        };
        tokens.push(*t);
        rest = rest[t.len()..].trim_start_matches('-');
    }
    Some(ParticipationRules::from_tokens(tokens).map(|r| base.with_participation_rules(r)))
}

/// Looks up an identifier in the table; refuses unknown and not-yet-implemented versions.
/// What `dag verify` judges (versions that are implemented but not simulated included).
/// A participation version may carry rule tokens ([`RULE_TOKENS`]).
pub fn lookup(id: &str) -> Result<&'static RoomVersion, VersionError> {
    if let Some(found) = lookup_variant(id) {
        return found.map_err(|_| VersionError::Unknown(id.to_owned(), Purpose::Verify));
    }
    match all().find(|v| v.id == id) {
        Some(v) if v.is_implemented() => Ok(v),
        Some(v) => Err(VersionError::NotImplemented(v, Purpose::Verify)),
        None => Err(VersionError::Unknown(id.to_owned(), Purpose::Verify)),
    }
}

/// [`lookup`] for the simulator (the scenario parser): also refuses versions whose flags the
/// simulated servers do not run yet ([`VersionError::NotSimulated`]).
pub fn lookup_simulated(id: &str) -> Result<&'static RoomVersion, VersionError> {
    if let Some(found) = lookup_variant(id) {
        return match found {
            Ok(v) if v.is_simulated() => Ok(v),
            Ok(v) => Err(VersionError::NotSimulated(v)),
            Err(_) => Err(VersionError::Unknown(id.to_owned(), Purpose::Simulate)),
        };
    }
    match all().find(|v| v.id == id) {
        Some(v) if v.is_simulated() => Ok(v),
        Some(v) if v.is_implemented() => Err(VersionError::NotSimulated(v)),
        Some(v) => Err(VersionError::NotImplemented(v, Purpose::Simulate)),
        None => Err(VersionError::Unknown(id.to_owned(), Purpose::Simulate)),
    }
}

impl RoomVersion {
    /// Looks up an implemented room version by its identifier (see [`lookup`] for why not).
    /// Versions that are implemented but not simulated are returned too: the simulated servers
    /// never create their rooms, since the scenario parser refuses them ([`lookup_simulated`]).
    pub fn by_id(id: &str) -> Option<&'static RoomVersion> {
        lookup(id).ok()
    }

    /// The flags set in this version whose rules the engine does not implement yet, each named
    /// with its proposal. Empty for a version the engine runs as specified.
    pub fn unimplemented_flags(&self) -> Vec<&'static str> {
        // Destructured without `..`: a new flag does not compile until it is listed here or
        // declared implemented.
        let RoomVersion {
            id: _,
            create_in_auth_events: _,
            room_id_is_create_hash: _,
            privileged_creators: _,
            state_res: _,
            restricted_joins: _,
            knocking: _,
            // MSC4243: implemented (protocol::signers, ids::account_key_of); not simulated yet
            // (see `unsimulated_flags`).
            account_keys: _,
            // MSC4345 and MSC4348: implemented (protocol::auth::participation, signers); not
            // simulated yet (see `unsimulated_flags`).
            participation: _,
            portable_accounts: _,
            participation_rules: _,
        } = self;
        Vec::new()
    }

    pub fn is_implemented(&self) -> bool {
        self.unimplemented_flags().is_empty()
    }

    /// The flags set in this version that the protocol layer implements but the simulated
    /// servers do not run yet, each named with its proposal (see the module documentation).
    pub fn unsimulated_flags(&self) -> Vec<&'static str> {
        // MSC4243 account keys are simulated (`sim/server/accounts.rs`), and so are MSC4348
        // rooms (`sim/server/portable.rs`: accounts, room keys, the participation handshake);
        // MSC4345 alone (server-key user IDs `@local:<key>`) is not.
        if self.participation && !self.portable_accounts {
            return vec!["participation (MSC4345) without portable_accounts (MSC4348)"];
        }
        Vec::new()
    }

    /// This version (a table entry) with other [`ParticipationRules`] (a knob's reading of the
    /// MSCs), identified as `<id>-<token>…` ([`RULE_TOKENS`]), interned so that it lives as
    /// long as the table's entries.
    pub fn with_participation_rules(&'static self, rules: ParticipationRules) -> &'static RoomVersion {
        let base = all().find(|v| v.id == self.id.split('-').next().unwrap_or(self.id)).unwrap_or(self);
        if base.participation_rules == rules {
            return base;
        }
        static INTERNED: std::sync::Mutex<Vec<&'static RoomVersion>> = std::sync::Mutex::new(Vec::new());
        let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
        let id = std::iter::once(base.id).chain(rules.tokens()).collect::<Vec<_>>().join("-");
        if let Some(v) = interned.iter().find(|v| v.id == id) {
            return v;
        }
        let id: &'static str = Box::leak(id.into_boxed_str());
        let v: &'static RoomVersion =
            Box::leak(Box::new(RoomVersion { id, participation_rules: rules, ..base.clone() }));
        interned.push(v);
        v
    }

    /// The table entry this version is a variant of (itself for a table entry).
    pub fn base(&'static self) -> &'static RoomVersion {
        all().find(|v| v.id == self.id.split('-').next().unwrap_or(self.id)).unwrap_or(self)
    }

    /// Whether the simulator runs rooms of this version: implemented, and every flag simulated.
    pub fn is_simulated(&self) -> bool {
        self.is_implemented() && self.unsimulated_flags().is_empty()
    }

    pub fn is_experimental(&self) -> bool {
        !STABLE.iter().any(|v| v.id == self.id)
    }
}

/// Power level of a creator in v12: compares above every JSON integer (which are ≤ 2^53 − 1)
/// and equal to another creator's.
pub const CREATOR_POWER_LEVEL: i64 = i64::MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_stable_versions_and_refuses_others() {
        assert_eq!(lookup("11"), Ok(&V11));
        assert_eq!(lookup("12"), Ok(&V12));
        assert_eq!(lookup_simulated("12"), Ok(&V12));
        assert_eq!(RoomVersion::by_id("12").map(|v| v.id), Some("12"));
        assert_eq!(lookup("13"), Err(VersionError::Unknown("13".into(), Purpose::Verify)));
        assert_eq!(RoomVersion::by_id("1"), None);
        let shown = lookup("13").unwrap_err().to_string();
        assert!(
            shown.starts_with(
                "unsupported room version \"13\"; supported versions are \"11\", \"12\", \"org.matrix.msc4243.12\", \
                 \"org.matrix.msc4345.12\", \"org.matrix.msc4348.12\""
            ),
            "{shown}"
        );
        let shown = lookup_simulated("13").unwrap_err().to_string();
        assert!(
            shown.starts_with(
                "unsupported room version \"13\"; supported versions are \"11\", \"12\", \"org.matrix.msc4243.12\", \
                 \"org.matrix.msc4348.12\" ("
            ),
            "{shown}"
        );
        assert!(shown.contains("not simulated yet, `dag verify` only: \"org.matrix.msc4345.12\""), "{shown}");
        // MSC4243 account keys are simulated (sim/server/accounts.rs).
        assert_eq!(lookup_simulated("org.matrix.msc4243.12"), Ok(&MSC4243_V12));
        assert_eq!(
            implemented().map(|v| v.id).collect::<Vec<_>>(),
            ["11", "12", "org.matrix.msc4243.12", "org.matrix.msc4345.12", "org.matrix.msc4348.12"]
        );
        assert_eq!(
            simulated().map(|v| v.id).collect::<Vec<_>>(),
            ["11", "12", "org.matrix.msc4243.12", "org.matrix.msc4348.12"]
        );
    }

    #[test]
    fn identifiers_are_unique() {
        let ids: Vec<&str> = all().map(|v| v.id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "{ids:?}");
    }

    #[test]
    fn stable_versions_set_no_proposal_flags() {
        for v in STABLE {
            assert!(v.is_implemented() && v.is_simulated() && !v.is_experimental(), "{}", v.id);
            assert!(!v.account_keys && !v.participation && !v.portable_accounts, "{}", v.id);
        }
    }

    #[test]
    fn experimental_entries_differ_from_their_base_only_in_id_and_their_flags() {
        type ClearFlags = fn(&mut RoomVersion);
        let cases: [(&RoomVersion, ClearFlags); 3] = [
            (&MSC4243_V12, |v| v.account_keys = false),
            (&MSC4345_V12, |v| v.participation = false),
            (&MSC4348_V12, |v| {
                v.participation = false;
                v.portable_accounts = false;
            }),
        ];
        for (experimental, clear) in cases {
            assert!(experimental.is_experimental());
            assert_ne!(experimental, &V12);
            let mut back = experimental.clone();
            clear(&mut back);
            back.id = V12.id;
            assert_eq!(back, V12, "{} is V12 plus its flags", experimental.id);
            assert!(experimental.is_implemented(), "{}", experimental.id);
        }
    }

    #[test]
    fn msc4348_rooms_are_simulated_and_msc4345_alone_is_judged_only() {
        assert_eq!(lookup(MSC4345_V12.id), Ok(&MSC4345_V12));
        assert_eq!(lookup_simulated(MSC4345_V12.id), Err(VersionError::NotSimulated(&MSC4345_V12)));
        let shown = lookup_simulated(MSC4345_V12.id).unwrap_err().to_string();
        assert!(shown.contains("participation (MSC4345)"), "{shown}");
        assert!(shown.contains("`roomsim dag verify` judges such DAGs"), "{shown}");
        assert_eq!(lookup_simulated(MSC4348_V12.id), Ok(&MSC4348_V12));
        // Rule tokens are simulated too.
        assert!(lookup_simulated("org.matrix.msc4348.12-multi-server").is_ok());
        assert!(lookup_simulated("org.matrix.msc4345.12-multi-server").is_err());
    }

    #[test]
    fn other_participation_rules_are_interned_once_under_the_same_identifier() {
        let as_written = ParticipationRules { fix_request_rule: false, ..ParticipationRules::DEFAULT };
        let a = MSC4345_V12.with_participation_rules(as_written);
        let b = MSC4345_V12.with_participation_rules(as_written);
        assert!(std::ptr::eq(a, b), "interned");
        assert_eq!(a.id, "org.matrix.msc4345.12-as-written-request");
        assert!(!a.participation_rules.fix_request_rule);
        assert_eq!(MSC4345_V12.with_participation_rules(ParticipationRules::DEFAULT), &MSC4345_V12);
        // The identifier names the rules: lookup gives the same interned version back.
        assert!(std::ptr::eq(lookup("org.matrix.msc4345.12-as-written-request").unwrap(), a));
        let both = rules_of("org.matrix.msc4348.12-multi-server-final-leave");
        assert!(both.multi_server && both.account_revocation == AccountRevocation::SelfSignedLeaveFinal);
        assert!(lookup("org.matrix.msc4348.12-final-leave-multi-server").is_ok(), "any order");
        assert!(lookup("org.matrix.msc4348.12-multi-server-multi-server").is_err(), "twice");
        assert!(lookup("org.matrix.msc4348.12-bogus").is_err());
        assert!(lookup("12-multi-server").is_err(), "only participation versions take rule tokens");
        assert_eq!(a.base(), &MSC4345_V12);
    }

    fn rules_of(id: &str) -> ParticipationRules {
        lookup(id).unwrap().participation_rules
    }

    #[test]
    fn account_key_rooms_are_judged_and_simulated() {
        // MSC4243: the protocol layer (dag verify) implements account_keys and the simulated
        // servers run it (sim/server/accounts.rs).
        assert_eq!(lookup("org.matrix.msc4243.12"), Ok(&MSC4243_V12));
        assert!(MSC4243_V12.is_implemented() && MSC4243_V12.is_simulated());
        assert_eq!(lookup_simulated("org.matrix.msc4243.12"), Ok(&MSC4243_V12));
        assert!(MSC4243_V12.unsimulated_flags().is_empty());
    }
}
