//! The scenario file as written: serde structs mirroring the TOML, with source spans.
//!
//! Everything is `deny_unknown_fields`, and almost every value is `Spanned` so that the
//! resolver can point at it. Values whose meaning depends on another field (a fault's `server`
//! only matters for `kind = "crash"`) are optional here and checked in `resolve`.
//! Internally tagged or untagged serde enums are avoided on purpose: they buffer their input and
//! lose the spans.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize as DeriveDeserialize;
use toml::Spanned;

use super::duration::{DurationUs, SignedDurationUs};
use super::model::{
    ActionKind, Byzantine, CacheKey, Categories, ClientView, JoinMode, JoinRule, KeyDistribution, KeyValidityCheck,
    Measure, OnVerify, SignatureMode, UnknownEncoding,
};
use crate::protocol::identity::Medium;

type Opt<T> = Option<Spanned<T>>;

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    pub scenario: Spanned<RawHeader>,
    #[serde(default)]
    pub defaults: Option<RawKnobs>,
    #[serde(default)]
    pub servers: Vec<Spanned<RawServer>>,
    #[serde(default)]
    pub groups: Option<OrderedMap<Spanned<NameList>>>,
    #[serde(default)]
    pub rooms: Vec<Spanned<RawRoom>>,
    #[serde(default)]
    pub network: Option<RawNetwork>,
    #[serde(default)]
    pub faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    pub timeline: Vec<Spanned<RawAction>>,
    #[serde(default)]
    pub workload: Vec<Spanned<RawWorkload>>,
    #[serde(default)]
    pub metrics: Option<RawMetrics>,
    #[serde(default)]
    pub keys: Option<RawKeys>,
    #[serde(default)]
    pub sweep: Option<Spanned<RawSweep>>,
    #[serde(default)]
    pub join: Option<RawJoin>,
    #[serde(default)]
    pub account_query: Option<RawAccountQuery>,
    #[serde(default)]
    pub participation: Option<Spanned<RawParticipation>>,
    #[serde(default)]
    pub identity_servers: Vec<Spanned<RawIdentityServer>>,
    #[serde(default)]
    pub identity: Option<TableSpan<RawIdentity>>,
}

/// `[[identity_servers]]`: one identity server (a node of its own).
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentityServer {
    pub name: Spanned<String>,
    #[serde(default)]
    pub pepper: Opt<String>,
    #[serde(default)]
    pub alt_peppers: Opt<i64>,
    #[serde(default)]
    pub accept_pushes: Opt<AcceptPushes>,
    #[serde(default)]
    pub trusted_pushers: Opt<Vec<Spanned<String>>>,
    #[serde(default)]
    pub push_to: Opt<Vec<Spanned<String>>>,
    #[serde(default)]
    pub rogue: Opt<bool>,
    #[serde(default)]
    pub bindings: Opt<Vec<Spanned<RawBinding>>>,
    #[serde(default)]
    pub sign_with: Opt<super::model::SignWith>,
    #[serde(default)]
    pub ephemeral_lifetime: Opt<DurationUs>,
}

/// MSC4004 `POST /lookups`: whose pushes an identity server stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, DeriveDeserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AcceptPushes {
    Trusted,
    Anyone,
}

/// One entry of an identity server's `bindings`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBinding {
    pub address: Spanned<String>,
    pub user: Spanned<String>,
    #[serde(default)]
    pub medium: Opt<Medium>,
}

/// `[identity]`: lookups, `key_validity_url` checks, clients' account data.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentity {
    #[serde(default)]
    pub default_server: Opt<String>,
    #[serde(default)]
    pub key_validity_check: Opt<KeyValidityCheck>,
    #[serde(default)]
    pub max_redirects: Opt<i64>,
    #[serde(default)]
    pub pepper_retries: Opt<i64>,
    #[serde(default)]
    pub sync_delay: Opt<DurationUs>,
    #[serde(default)]
    pub auto_join: Opt<bool>,
    #[serde(default)]
    pub auto_join_delay: Opt<DurationUs>,
    #[serde(default)]
    pub accounts: Vec<Spanned<RawIdentityAccount>>,
}

/// `[[identity.accounts]]`: one user's `m.identity_server` account data and clients.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIdentityAccount {
    pub user: Spanned<String>,
    #[serde(default)]
    pub account_data: Opt<String>,
    #[serde(default)]
    pub clients: Opt<Vec<Spanned<String>>>,
}

/// `[participation]`: who accepts MSC4345 participation requests in portable-account rooms,
/// and after how long.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawParticipation {
    #[serde(default)]
    pub acceptor: Opt<String>,
    #[serde(default)]
    pub accept_delay: Opt<DurationUs>,
}

/// `[account_query]`: MSC4243's design knobs.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccountQuery {
    #[serde(default)]
    pub unknown_encoding: Opt<UnknownEncoding>,
    #[serde(default)]
    pub categories: Opt<Categories>,
    #[serde(default)]
    pub client_view: Opt<ClientView>,
    #[serde(default)]
    pub on_verify: Opt<OnVerify>,
    #[serde(default)]
    pub retry_anomaly: Opt<Vec<Spanned<DurationUs>>>,
    #[serde(default)]
    pub retry_negative: Opt<Vec<Spanned<DurationUs>>>,
    #[serde(default)]
    pub settle_omitted_after: Opt<i64>,
    #[serde(default)]
    pub timeout: Opt<DurationUs>,
    #[serde(default)]
    pub batch_size: Opt<i64>,
    #[serde(default)]
    pub erasure_poll: Opt<DurationUs>,
    #[serde(default)]
    pub erasure_limit: Opt<i64>,
    #[serde(default)]
    pub domain_backoff: Opt<DurationUs>,
    #[serde(default)]
    pub domain_backoff_max: Opt<DurationUs>,
}

/// `[join]`: how a resident answers `send_join` and a joiner catches up.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJoin {
    #[serde(default)]
    pub mode: Opt<JoinMode>,
}

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeader {
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub seed: Opt<u64>,
    pub end: Spanned<RawEnd>,
    #[serde(default)]
    pub max_time: Opt<DurationUs>,
    #[serde(default)]
    pub quiet_period: Opt<DurationUs>,
}

/// `scenario.end`: a duration or the word "quiescence".
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawEnd {
    At(DurationUs),
    Quiescence,
}

impl<'de> Deserialize<'de> for RawEnd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EndVisitor;
        impl Visitor<'_> for EndVisitor {
            type Value = RawEnd;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"10m\", or \"quiescence\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawEnd, E> {
                if v == "quiescence" {
                    return Ok(RawEnd::Quiescence);
                }
                super::duration::parse_duration(v)
                    .map(RawEnd::At)
                    .map_err(|e| E::custom(format!("{e} (or write \"quiescence\")")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawEnd, E> {
                Err(E::custom(format!("durations need a unit: write \"{v}s\" or \"{v}m\", not {v}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawEnd, E> {
                Err(E::custom(format!("durations need a unit: write \"{v}s\", not {v}")))
            }
        }
        deserializer.deserialize_any(EndVisitor)
    }
}

/// Declares the per-server knobs once, for both `[defaults]` and `[[servers]]` (which accepts
/// every `[defaults]` key). `#[serde(flatten)]` would do this but cannot be combined with
/// `deny_unknown_fields`.
macro_rules! server_structs {
    (
        knobs { $($knob:ident: $knob_ty:ty),* $(,)? }
        server_only { $($own:ident: $own_ty:ty),* $(,)? }
    ) => {
        #[derive(Debug, Clone, Default, DeriveDeserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct RawKnobs {
            $( #[serde(default)] pub $knob: Opt<$knob_ty>, )*
        }

        #[derive(Debug, DeriveDeserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct RawServer {
            $( #[serde(default)] pub $own: Opt<$own_ty>, )*
            $( #[serde(default)] pub $knob: Opt<$knob_ty>, )*
        }

        impl RawServer {
            /// This entry's knobs; unset ones fall back to `[defaults]`.
            pub fn knobs(&self) -> RawKnobs {
                RawKnobs { $( $knob: self.$knob.clone(), )* }
            }
        }

        impl RawKnobs {
            /// `self`, with unset knobs taken from `fallback`.
            pub fn or(self, fallback: &RawKnobs) -> RawKnobs {
                RawKnobs { $( $knob: self.$knob.or_else(|| fallback.$knob.clone()), )* }
            }
        }
    };
}

server_structs! {
    knobs {
        signatures: SignatureMode,
        signature_cost: DurationUs,
        users: u32,
        clock_skew: SignedDurationUs,
        missing_event_timeout: DurationUs,
        request_timeout: DurationUs,
        request_retries: u32,
        transaction_retries: u32,
        destination_min_retry_interval: DurationUs,
        destination_retry_multiplier: f64,
        destination_max_retry_interval: DurationUs,
        trusted_key_servers: Vec<Spanned<String>>,
    }
    server_only {
        name: String,
        prefix: String,
        count: u32,
        start: u32,
        byzantine: Byzantine,
        byzantine_probability: f64,
        withhold_from: NameList,
    }
}

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoom {
    pub name: Spanned<String>,
    pub version: Spanned<RawVersion>,
    pub creator: Spanned<String>,
    #[serde(default)]
    pub join_rule: Opt<JoinRule>,
    #[serde(default)]
    pub members: Opt<NameList>,
    #[serde(default)]
    pub power_levels: Option<RawPowerLevels>,
    #[serde(default)]
    pub additional_creators: Opt<NameList>,
    #[serde(default)]
    pub start: Opt<DurationUs>,
    #[serde(default)]
    pub allow: Opt<Vec<Spanned<String>>>,
}

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPowerLevels {
    #[serde(default)]
    pub users: Option<OrderedMap<Spanned<i64>>>,
    #[serde(default)]
    pub users_default: Opt<i64>,
    #[serde(default)]
    pub events_default: Opt<i64>,
    #[serde(default)]
    pub state_default: Opt<i64>,
    #[serde(default)]
    pub ban: Opt<i64>,
    #[serde(default)]
    pub kick: Opt<i64>,
    #[serde(default)]
    pub redact: Opt<i64>,
    #[serde(default)]
    pub invite: Opt<i64>,
    #[serde(default)]
    pub events: Option<OrderedMap<Spanned<i64>>>,
}

/// A room version identifier as written; looked up in the room-version table by the resolver.
#[derive(Debug)]
pub(crate) struct RawVersion(pub String);

/// Room versions are strings in Matrix; a bare number gets a hint rather than a type error.
impl<'de> Deserialize<'de> for RawVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VersionVisitor;
        impl Visitor<'_> for VersionVisitor {
            type Value = RawVersion;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a room version string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawVersion, E> {
                Ok(RawVersion(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawVersion, E> {
                Err(E::custom(format!("room versions are strings: write \"{v}\"")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawVersion, E> {
                Err(E::custom(format!("room versions are strings: write \"{v}\"")))
            }
        }
        deserializer.deserialize_any(VersionVisitor)
    }
}

#[derive(Debug, Default, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    #[serde(default)]
    pub latency: Opt<RawLatency>,
    #[serde(default)]
    pub min_latency: Opt<DurationUs>,
    #[serde(default)]
    pub loss: Opt<f64>,
    #[serde(default)]
    pub duplicate: Opt<f64>,
    #[serde(default)]
    pub reorder: Opt<f64>,
    #[serde(default)]
    pub reorder_delay: Opt<DurationUs>,
    #[serde(default)]
    pub links: Vec<Spanned<RawLink>>,
    #[serde(default)]
    pub middleboxes: Vec<Spanned<RawMiddlebox>>,
}

/// `{ dist = "...", ... }`: which parameters apply depends on `dist`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLatency {
    pub dist: Spanned<DistName>,
    #[serde(default)]
    pub value: Opt<DurationUs>,
    #[serde(default)]
    pub min: Opt<DurationUs>,
    #[serde(default)]
    pub max: Opt<DurationUs>,
    #[serde(default)]
    pub median: Opt<DurationUs>,
    #[serde(default)]
    pub sigma: Opt<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, DeriveDeserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DistName {
    Fixed,
    Uniform,
    Lognormal,
}

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    pub from: Spanned<NameList>,
    pub to: Spanned<NameList>,
    #[serde(default)]
    pub symmetric: Option<bool>,
    #[serde(default)]
    pub latency: Opt<RawLatency>,
    #[serde(default)]
    pub loss: Opt<f64>,
}

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMiddlebox {
    pub server: Spanned<String>,
    pub kind: Spanned<MiddleboxName>,
    #[serde(default)]
    pub drop_unknown_keys: Opt<bool>,
    #[serde(default)]
    pub cache_ttl: Opt<DurationUs>,
    #[serde(default)]
    pub timeout_probability: Opt<f64>,
    #[serde(default)]
    pub strip_account_entries: Opt<f64>,
    #[serde(default)]
    pub strip_account_answers: Opt<f64>,
    #[serde(default)]
    pub cache_key: Opt<CacheKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, DeriveDeserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MiddleboxName {
    ReverseProxy,
    Cache,
}

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    pub at: Spanned<DurationUs>,
    pub kind: Spanned<FaultName>,
    #[serde(default)]
    pub duration: Opt<DurationUs>,
    #[serde(default)]
    pub groups: Opt<Vec<Spanned<NameList>>>,
    #[serde(default)]
    pub server: Opt<String>,
    #[serde(default)]
    pub from: Opt<NameList>,
    #[serde(default)]
    pub to: Opt<NameList>,
    #[serde(default)]
    pub symmetric: Opt<bool>,
    #[serde(default)]
    pub loss: Opt<f64>,
    #[serde(default)]
    pub latency: Opt<RawLatency>,
    #[serde(default)]
    pub skew: Opt<SignedDurationUs>,
    #[serde(default)]
    pub keep_old: Opt<bool>,
    #[serde(default)]
    pub user: Opt<String>,
    /// rotate_pepper: the new pepper (default: one drawn from the seed).
    #[serde(default)]
    pub pepper: Opt<String>,
}

/// `[keys]`.
#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKeys {
    #[serde(default)]
    pub distribution: Opt<KeyDistribution>,
    #[serde(default)]
    pub notaries: Opt<Vec<Spanned<String>>>,
    #[serde(default)]
    pub validity: Opt<DurationUs>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, DeriveDeserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FaultName {
    Partition,
    Crash,
    Degrade,
    ClockSkew,
    HealAll,
    RotateKey,
    EraseAccount,
    ReregisterAccount,
    RotatePepper,
    RevokeIdentityKey,
}

impl FaultName {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultName::Partition => "partition",
            FaultName::Crash => "crash",
            FaultName::Degrade => "degrade",
            FaultName::ClockSkew => "clock_skew",
            FaultName::HealAll => "heal_all",
            FaultName::RotateKey => "rotate_key",
            FaultName::EraseAccount => "erase_account",
            FaultName::ReregisterAccount => "reregister_account",
            FaultName::RotatePepper => "rotate_pepper",
            FaultName::RevokeIdentityKey => "revoke_identity_key",
        }
    }
}

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAction {
    pub at: Spanned<DurationUs>,
    pub action: Spanned<ActionKind>,
    /// Required by every action but `bind` and `set_identity_server` (checked in `resolve`).
    #[serde(default)]
    pub room: Opt<String>,
    #[serde(default)]
    pub user: Opt<String>,
    #[serde(default)]
    pub target: Opt<String>,
    #[serde(default)]
    pub level: Opt<i64>,
    #[serde(default)]
    pub join_rule: Opt<JoinRule>,
    #[serde(default)]
    pub text: Opt<String>,
    /// join: the servers to try first (as a client's `server_name` query parameters).
    #[serde(default)]
    pub via: Opt<NameList>,
    /// move: the account's new server; revoke: the server whose key is revoked; bind: the
    /// identity server.
    #[serde(default)]
    pub server: Opt<String>,
    /// invite_email, bind: the e-mail address.
    #[serde(default)]
    pub address: Opt<String>,
    /// invite_email, bind, set_identity_server: the acting client.
    #[serde(default)]
    pub client: Opt<String>,
    /// set_identity_server: an identity server's name, "none" or "default".
    #[serde(default)]
    pub identity_server: Opt<String>,
    #[serde(default)]
    pub count: Opt<u32>,
    #[serde(default)]
    pub every: Opt<DurationUs>,
}

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkload {
    pub room: Spanned<String>,
    #[serde(default)]
    pub users: Opt<NameList>,
    #[serde(default)]
    pub start: Opt<DurationUs>,
    #[serde(default)]
    pub stop: Opt<DurationUs>,
    #[serde(default)]
    pub messages_per_minute: Opt<f64>,
    #[serde(default)]
    pub state_changes_per_hour: Opt<f64>,
    #[serde(default)]
    pub churn_per_hour: Opt<f64>,
    #[serde(default)]
    pub power_changes_per_hour: Opt<f64>,
}

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    #[serde(default)]
    pub interval: Opt<DurationUs>,
    #[serde(default)]
    pub measures: Option<Vec<Spanned<Measure>>>,
}

#[derive(Debug, DeriveDeserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSweep {
    /// `"a..b"` or a list of integers; checked in `sweep`.
    #[serde(default)]
    pub seeds: Opt<toml::Value>,
    #[serde(default)]
    pub grid: Option<OrderedMap<Spanned<Vec<Spanned<toml::Value>>>>>,
}

/// A name or a list of names (`"eu"` or `["hs1", "eu"]`), each with its span when known.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameList(pub Vec<(String, Option<Range<usize>>)>);

impl NameList {
    /// Each name with its own span, or `whole` (the span of the list) for a lone string.
    pub fn spanned(&self, whole: &Range<usize>) -> Vec<(String, Range<usize>)> {
        self.0.iter().map(|(n, s)| (n.clone(), s.clone().unwrap_or_else(|| whole.clone()))).collect()
    }
}

impl<'de> Deserialize<'de> for NameList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamesVisitor;
        impl<'de> Visitor<'de> for NamesVisitor {
            type Value = NameList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name or a list of names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NameList, E> {
                Ok(NameList(vec![(v.to_string(), None)]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NameList, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Spanned<String>>()? {
                    let span = name.span();
                    names.push((name.into_inner(), Some(span)));
                }
                Ok(NameList(names))
            }
        }
        deserializer.deserialize_any(NamesVisitor)
    }
}

/// A table with its span when the TOML has one. A table with a header (`[identity]`) has one;
/// a table only implied by a sub-table (`[[identity.accounts]]` alone) or by dotted keys has
/// none, and `Spanned` refuses it ("expected a borrowed string"). This speaks `Spanned`'s
/// protocol with the deserialiser when offered, and reads the plain table otherwise.
#[derive(Debug)]
pub(crate) struct TableSpan<T> {
    pub span: Option<Range<usize>>,
    pub value: T,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TableSpan<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde_spanned::__unstable::{END_FIELD, NAME, START_FIELD, VALUE_FIELD};
        struct TableVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for TableVisitor<T> {
            type Value = TableSpan<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TableSpan<T>, A::Error> {
                let first = map.next_key::<String>()?;
                if first.as_deref() != Some(START_FIELD) {
                    let replay = Replay { first, map };
                    let value = T::deserialize(de::value::MapAccessDeserializer::new(replay))?;
                    return Ok(TableSpan { span: None, value });
                }
                let start: usize = map.next_value()?;
                let (mut end, mut value) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        END_FIELD => end = Some(map.next_value::<usize>()?),
                        VALUE_FIELD => value = Some(map.next_value::<T>()?),
                        other => return Err(de::Error::unknown_field(other, &[END_FIELD, VALUE_FIELD])),
                    }
                }
                match (end, value) {
                    (Some(end), Some(value)) => Ok(TableSpan { span: Some(start..end), value }),
                    _ => Err(de::Error::custom("a spanned table without its end or value")),
                }
            }
        }
        deserializer.deserialize_struct(NAME, &[START_FIELD, END_FIELD, VALUE_FIELD], TableVisitor(PhantomData))
    }
}

/// A map whose first key was already read.
struct Replay<A> {
    first: Option<String>,
    map: A,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Replay<A> {
    type Error = A::Error;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        match self.first.take() {
            Some(key) => seed.deserialize(de::value::StringDeserializer::<A::Error>::new(key)).map(Some),
            None => self.map.next_key_seed(seed),
        }
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A TOML table kept in file order, with each key's span.
#[derive(Debug)]
pub(crate) struct OrderedMap<V>(pub Vec<(Spanned<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    entries.push((key, map.next_value::<V>()?));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}
