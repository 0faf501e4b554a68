//! The resolved scenario: plain typed values the simulator uses without re-validating.
//!
//! Every name has been checked and expanded (groups and `"*"` to server names, server names to
//! user IDs), every duration is integer microseconds, every default has been filled in.
//! Maps are `BTreeMap` and lists keep file order, so a run is a function of the file alone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::room_version::{self, RoomVersion};

/// A validated scenario. Built by [`parse_scenario`](super::parse_scenario).
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// The master seed of a run (a sweep cell sets it with `scenario.seed=N`).
    pub seed: u64,
    pub end: EndCondition,
    /// Servers in file order, templates expanded in place.
    pub servers: Vec<ServerSpec>,
    /// Named groups, each expanded to server names (file order of the servers).
    pub groups: BTreeMap<String, Vec<String>>,
    pub rooms: Vec<RoomSpec>,
    pub network: NetworkSpec,
    /// Faults sorted stably by `at_us`.
    pub faults: Vec<FaultSpec>,
    /// The complete script of client actions, sorted stably by `at_us`: for every room a
    /// `create_room` by its creator at the room's start, then the invites (non-public rooms) and
    /// joins of its initial members, then the `[[timeline]]` entries with `count` expanded.
    pub timeline: Vec<ActionSpec>,
    pub workloads: Vec<WorkloadSpec>,
    pub metrics: MetricsSpec,
    /// `[keys]`: how servers learn each other's signing keys.
    pub keys: KeysSpec,
    pub sweep: Option<SweepSpec>,
    /// `[join] mode`: what `send_join` answers with.
    pub join_mode: JoinMode,
    /// `[account_query]`: the MSC4243 design knobs (used by account-key rooms only).
    pub account_query: AccountQuerySpec,
    /// `[participation]`: the acceptor of MSC4345 participation requests and its delay.
    pub participation: ParticipationSpec,
    /// `[[identity_servers]]`, file order: nodes after the homeservers and key notaries.
    pub identity_servers: Vec<IdentityServerSpec>,
    /// `[identity]`: lookups, who checks `key_validity_url`, clients' account data.
    pub identity: IdentitySpec,
    /// What this scenario was parsed from, so a run can store it and re-parse sweep cells.
    pub source: ScenarioSource,
}

impl Scenario {
    pub fn server(&self, name: &str) -> Option<&ServerSpec> {
        self.servers.iter().find(|s| s.name == name)
    }

    pub fn room(&self, name: &str) -> Option<&RoomSpec> {
        self.rooms.iter().find(|r| r.name == name)
    }

    /// The accounts `move` actions open outside portable-account rooms ([`moved_account_id`]),
    /// each with the scenario user it continues.
    pub fn moved_accounts(&self) -> BTreeMap<String, String> {
        let portable = |room: &str| self.room(room).is_some_and(|r| r.version.rules().portable_accounts);
        self.timeline
            .iter()
            .filter(|a| a.action == ActionKind::Move && !portable(&a.room))
            .filter_map(|a| Some((moved_account_id(&a.user, a.server.as_deref()?), a.user.clone())))
            .collect()
    }

    /// Every user ID, server by server in file order.
    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().flat_map(|s| s.users.iter().map(String::as_str))
    }
}

/// The text and arguments a scenario was parsed from.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioSource {
    pub file_name: String,
    /// The file's text, unchanged (not serialised: the run copies the file itself).
    #[serde(skip)]
    pub text: String,
    /// The `--set key=value` overrides applied, in order.
    pub overrides: Vec<String>,
}

impl ScenarioSource {
    /// The scenario file's name without its directories (`quickstart.toml` for
    /// `../scenarios/quickstart.toml`): outputs name the file this way, so they do not depend on
    /// the working directory or on how the path was typed.
    pub fn base_name(&self) -> &str {
        std::path::Path::new(&self.file_name).file_name().and_then(|n| n.to_str()).unwrap_or(&self.file_name)
    }

    /// sha256 (hex) of the file's text: with [`ScenarioSource::base_name`], what identifies the
    /// scenario in outputs.
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        Sha256::digest(self.text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// When a run stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndCondition {
    /// At this simulated time (µs).
    At(u64),
    /// When no network message has been in flight for `quiet_us`, or at `max_us` at the latest.
    Quiescence { max_us: u64, quiet_us: u64 },
}

impl EndCondition {
    /// The latest simulated time the run can reach (µs).
    pub fn bound_us(&self) -> u64 {
        match *self {
            EndCondition::At(at_us) => at_us,
            EndCondition::Quiescence { max_us, .. } => max_us,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerSpec {
    /// Matrix server name, e.g. `hs1` or `matrix.example.org:8448`.
    pub name: String,
    /// Full user IDs `@u0:<name>` .. `@u{n-1}:<name>`.
    pub users: Vec<String>,
    pub signatures: SignatureMode,
    /// CPU time charged per signature verification when `signatures` is modelled.
    pub signature_cost_us: u64,
    /// Offset added to this server's `origin_server_ts` clock.
    pub clock_skew_us: i64,
    pub byzantine: Byzantine,
    /// Per-event probability that the byzantine behaviour applies.
    pub byzantine_probability: f64,
    /// `withhold`: the servers its events are kept from (`None`: every other server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withhold_from: Option<Vec<String>>,
    pub missing_event_timeout_us: u64,
    /// Timeout of one non-PDU federation request.
    pub request_timeout_us: u64,
    /// Retries after the first attempt of a non-PDU federation request.
    pub request_retries: u32,
    /// Retries after the first attempt of a transaction (`/send`).
    pub transaction_retries: u32,
    /// Per-destination backoff after a transaction's final failure: the first interval, the
    /// factor for each further failure, the cap (Synapse's `destination_*` settings).
    pub destination_min_retry_interval_us: u64,
    pub destination_retry_multiplier: f64,
    pub destination_max_retry_interval_us: u64,
    /// The notaries this server asks for other servers' keys, in order (Synapse's
    /// `trusted_key_servers`); default: every notary of the scenario.
    pub trusted_key_servers: Vec<String>,
}

/// What a resident's `send_join` answer holds, and so how a joiner learns the room.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinMode {
    /// Every event the resident holds; the joiner judges the room from its create event, and
    /// fills gaps with `get_missing_events` only (the behaviour before `[join]` existed).
    FullHistory,
    /// The state before the join event, its auth chain and the join event (Server-Server API,
    /// §Joining rooms, `send_join` v2), held as outliers; gaps too wide for one
    /// `get_missing_events` round are bridged with `/state_ids`, history comes by `/backfill`.
    /// The default: what Synapse and the spec do.
    #[default]
    State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureMode {
    /// Real ed25519 signatures, signed and verified.
    Real,
    /// No cryptography; each verification costs `signature_cost_us` of simulated CPU.
    Modelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Byzantine {
    None,
    /// Sends different events with the same prev_events to different servers.
    Equivocate,
    /// Signs events with a wrong key.
    BadSignatures,
    /// Does not send its events to the servers of `withhold_from` (default: to any server).
    Withhold,
    /// MSC4243: answers `/query/accounts` about its own accounts with a different account name
    /// to some askers (each (key, asker) pair with `byzantine_probability`), signed with the
    /// account key it holds: the equivocation MSC4243 §10 names.
    EquivocateAccounts,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomSpec {
    pub name: String,
    pub version: RoomVersionId,
    pub creator: String,
    /// Room version 12 only (empty otherwise). Not joined automatically.
    pub additional_creators: Vec<String>,
    pub join_rule: JoinRule,
    /// Users who join right after creation (the creator excluded), in order. The timeline
    /// already contains their invites (if the room is not public) and joins.
    pub members: Vec<String>,
    pub power_levels: PowerLevelsOverride,
    /// `restricted` / `knock_restricted` rooms: the rooms (by name, each created before this
    /// one) whose members may join without an invite (`m.room_membership` entries of `allow`).
    pub allow: Vec<String>,
    /// When the creator creates the room.
    pub start_us: u64,
}

/// Changes merged into the default `m.room.power_levels` content at creation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PowerLevelsOverride {
    pub users: BTreeMap<String, i64>,
    pub users_default: Option<i64>,
    pub events_default: Option<i64>,
    pub state_default: Option<i64>,
    pub ban: Option<i64>,
    pub kick: Option<i64>,
    pub redact: Option<i64>,
    pub invite: Option<i64>,
    /// Event type -> level.
    pub events: BTreeMap<String, i64>,
}

/// A room version a scenario may use: an entry of the room-version table
/// ([`crate::protocol::room_version`]) that the simulator runs (implemented *and* simulated:
/// `org.matrix.msc4243.12` is judged by `dag verify` but refused here, since the simulated
/// servers do not create account-key users yet). It can only be obtained from the table, so
/// holding one is the proof; it serialises as its identifier (`"11"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomVersionId(&'static RoomVersion);

impl RoomVersionId {
    pub const V11: RoomVersionId = RoomVersionId(&room_version::V11);
    pub const V12: RoomVersionId = RoomVersionId(&room_version::V12);

    /// Looks `id` up in the room-version table; unknown, not-yet-implemented and not-simulated
    /// versions are refused (the error says which).
    pub fn from_id(id: &str) -> Result<Self, room_version::VersionError> {
        room_version::lookup_simulated(id).map(RoomVersionId)
    }

    pub fn as_str(self) -> &'static str {
        self.0.id
    }

    /// The version's rules.
    pub fn rules(self) -> &'static RoomVersion {
        self.0
    }

    /// Room version 12 (MSC4289) has `additional_creators` and creators with unlimited power.
    pub fn has_creator_power(self) -> bool {
        self.0.privileged_creators
    }
}

impl Serialize for RoomVersionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinRule {
    Public,
    Invite,
    Knock,
    Restricted,
    KnockRestricted,
}

impl JoinRule {
    /// The `join_rule` value of `m.room.join_rules` content.
    pub fn as_str(self) -> &'static str {
        match self {
            JoinRule::Public => "public",
            JoinRule::Invite => "invite",
            JoinRule::Knock => "knock",
            JoinRule::Restricted => "restricted",
            JoinRule::KnockRestricted => "knock_restricted",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkSpec {
    pub latency: LatencyDist,
    /// Floor of every sampled latency, and the width of the parallel window. Always > 0.
    pub min_latency_us: u64,
    /// Probability a message is lost, in [0, 1).
    pub loss: f64,
    /// Probability a message is delivered twice, in [0, 1].
    pub duplicate: f64,
    /// Probability a message gets an extra uniform delay in [0, reorder_delay_us], in [0, 1].
    pub reorder: f64,
    pub reorder_delay_us: u64,
    /// Per-link overrides in file order; a later matching link wins.
    pub links: Vec<LinkSpec>,
    pub middleboxes: Vec<MiddleboxSpec>,
}

/// How one message's latency is drawn (then raised to `min_latency_us`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "dist", rename_all = "snake_case")]
pub enum LatencyDist {
    Fixed {
        value_us: u64,
    },
    Uniform {
        min_us: u64,
        max_us: u64,
    },
    /// exp(N(ln median, sigma²)).
    Lognormal {
        median_us: u64,
        sigma: f64,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct LinkSpec {
    /// Sending servers (groups and `"*"` expanded).
    pub from: Vec<String>,
    /// Receiving servers.
    pub to: Vec<String>,
    /// Also applies from `to` to `from`.
    pub symmetric: bool,
    pub latency: Option<LatencyDist>,
    pub loss: Option<f64>,
}

/// A reverse proxy or cache in front of a server.
#[derive(Debug, Clone, Serialize)]
pub struct MiddleboxSpec {
    pub server: String,
    pub kind: MiddleboxKind,
    /// Probability a request through the middlebox times out, in [0, 1].
    pub timeout_probability: f64,
    /// Reverse proxies, `/query/accounts` (MSC4243 §4's rationale for explicit errcodes): the
    /// probability each per-key entry is removed from an answer, and that a whole answer's
    /// `account_keys` map comes back empty.
    pub strip_account_entries: f64,
    pub strip_account_answers: f64,
    /// Caches: `"path"` keys stored answers by the endpoint alone, ignoring the request body (a
    /// CDN that caches a POST by its URL), so an answer about other keys is served; `"request"`
    /// (default) by endpoint and body.
    pub cache_key: CacheKey,
}

/// What a caching middlebox keys its stored answers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CacheKey {
    #[default]
    Request,
    Path,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MiddleboxKind {
    /// Drops response entries it does not know when `drop_unknown_keys`.
    ReverseProxy { drop_unknown_keys: bool },
    /// Serves responses again for `ttl_us`.
    Cache { ttl_us: u64 },
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultSpec {
    pub at_us: u64,
    /// The fault ends (heals, restarts, reverts) after this long; `None` = never.
    pub duration_us: Option<u64>,
    pub kind: FaultKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Messages only flow within a side. Every server is on exactly one side: the servers the
    /// file did not list form the last side.
    Partition { sides: Vec<Vec<String>> },
    /// The server stops; after `duration_us` it restarts with its database intact.
    Crash { server: String },
    /// Links from `from` to `to` (and back when `symmetric`) get this loss and/or latency.
    Degrade { from: Vec<String>, to: Vec<String>, symmetric: bool, loss: Option<f64>, latency: Option<LatencyDist> },
    /// The server's clock jumps by `skew_us` (replacing its configured skew).
    ClockSkew { server: String, skew_us: i64 },
    /// Ends every partition and degradation in force.
    HealAll,
    /// The server makes a new signing key (`ed25519:k2`, `k3`, …) and signs with it from now
    /// on; `keep_old`: the previous key is listed in `old_verify_keys` (Server-Server API,
    /// §"Retrieving server keys"), otherwise it is no longer published.
    RotateKey { server: String, keep_old: bool },
    /// MSC4243 §7: the user's domain erases its account (GDPR): `/query/accounts` answers the
    /// key with a signed `M_ERASED` from now on and lists it in the erasure feed.
    EraseAccount { user: String },
    /// MSC4243 §2 ("re-registration"): the domain forgets the account and registers its name
    /// again under a new key (a restore from backup, a deleted and re-created account). The old
    /// key is answered as unknown from now on; the user's later actions use the new key, a new
    /// user ID in every room (it must join again).
    ReregisterAccount { user: String },
    /// An identity server rotates its lookup pepper (to `pepper`, or one drawn from the seed).
    RotatePepper { server: String, pepper: Option<String> },
    /// An identity server revokes its long-term key (a compromise): `/pubkey/isvalid` answers
    /// `false` for it from now on, and a new key signs.
    RevokeIdentityKey { server: String },
}

/// `[keys]`: server key distribution.
#[derive(Debug, Clone, Serialize)]
pub struct KeysSpec {
    pub distribution: KeyDistribution,
    /// Key notaries (nodes of their own answering `POST /_matrix/key/v2/query`), file order.
    pub notaries: Vec<String>,
    /// How long a published key is valid (`valid_until_ts` = time of the answer + this).
    pub validity_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDistribution {
    /// Every server knows every key from the start (a perfect notary).
    Preshared,
    /// Keys are fetched over federation (directly or through notaries) and cached.
    Federation,
}

/// One scripted client action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActionSpec {
    pub at_us: u64,
    pub action: ActionKind,
    pub room: String,
    /// The acting user (the sender of the event).
    pub user: String,
    /// invite / kick / ban / unban / power / accept_knock / deny_knock: the user acted upon.
    /// redact: whose latest message to redact (`None` = the acting user's).
    pub target: Option<String>,
    /// power: the target's new level.
    pub level: Option<i64>,
    /// join_rule: the new rule.
    pub join_rule: Option<JoinRule>,
    /// message: the body (`None` = generated); topic: the topic; name: the name.
    pub text: Option<String>,
    /// join: servers to try first, in order (server names; empty = none given).
    pub via: Vec<String>,
    /// move: the server the account moves to; revoke: the server whose key is revoked;
    /// bind: the identity server (`None`: the one the client's account data names).
    pub server: Option<String>,
    /// invite_email / bind: the address (canonical e-mail address, or msisdn for bind).
    pub address: Option<String>,
    /// invite_email / set_identity_server / bind: the acting client (`None`: the user's first).
    pub client: Option<String>,
    /// set_identity_server: the value written.
    pub account_data: Option<AccountDataSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    CreateRoom,
    Join,
    Leave,
    Invite,
    Kick,
    Ban,
    Unban,
    Message,
    Topic,
    Power,
    JoinRule,
    Redact,
    /// Ask to join a `knock` / `knock_restricted` room (make_knock / send_knock when remote).
    Knock,
    /// A resident with invite power invites a user who knocked.
    AcceptKnock,
    /// A resident with kick power sets a knocking user's membership to `leave`.
    DenyKnock,
    /// An invited user declines (make_leave / send_leave through the inviting server).
    RejectInvite,
    /// Sets `m.room.name`.
    Name,
    /// MSC4348: the account joins again through `server`, which acts for it from now on.
    Move,
    /// MSC4345: a user with the `accept` level revokes `server`'s key in the room.
    Revoke,
    /// MSC4348 account-key revocation (the `final-leave` reading): the account leaves with
    /// `org.matrix.msc4348.final: true` in its own, self-signed leave.
    FinalLeave,
    /// An invite by e-mail address: the client looks the address up at its identity server;
    /// found: a plain invite; not found: `/store-invite` and `m.room.third_party_invite`.
    InviteEmail,
    /// The user binds an address at an identity server (`/3pid/bind`, validation instant).
    Bind,
    /// A client writes the user's `m.identity_server` account data.
    SetIdentityServer,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::CreateRoom => "create_room",
            ActionKind::Join => "join",
            ActionKind::Leave => "leave",
            ActionKind::Invite => "invite",
            ActionKind::Kick => "kick",
            ActionKind::Ban => "ban",
            ActionKind::Unban => "unban",
            ActionKind::Message => "message",
            ActionKind::Topic => "topic",
            ActionKind::Power => "power",
            ActionKind::JoinRule => "join_rule",
            ActionKind::Redact => "redact",
            ActionKind::Knock => "knock",
            ActionKind::AcceptKnock => "accept_knock",
            ActionKind::DenyKnock => "deny_knock",
            ActionKind::RejectInvite => "reject_invite",
            ActionKind::Name => "name",
            ActionKind::Move => "move",
            ActionKind::Revoke => "revoke",
            ActionKind::FinalLeave => "final_leave",
            ActionKind::InviteEmail => "invite_email",
            ActionKind::Bind => "bind",
            ActionKind::SetIdentityServer => "set_identity_server",
        }
    }
}

/// Random client activity in one room.
#[derive(Debug, Clone, Serialize)]
pub struct WorkloadSpec {
    pub room: String,
    /// The users who act (full user IDs).
    pub users: Vec<String>,
    pub start_us: u64,
    pub stop_us: u64,
    /// Per user, Poisson.
    pub messages_per_minute: f64,
    /// State changes per user, drawn from the documented mix (`sim/world/workload.rs`).
    pub state_changes_per_hour: f64,
    /// Leave-and-rejoin cycles per user.
    pub churn_per_hour: f64,
    /// Power level changes per user able to make them.
    pub power_changes_per_hour: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricsSpec {
    pub interval_us: u64,
    pub measures: Vec<Measure>,
}

/// A series of `metrics.csv`. The scenario names them as `metrics.csv` does; `measures` lists the
/// series a run writes (all by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Per room: distinct current states among the servers in the room.
    DistinctStates,
    /// Per room: number of servers in the room holding the most common current state.
    LargestAgreeingGroup,
    /// Per room: 1 while the room is in agreement (`docs/outputs.md`, "Convergence"), else 0.
    Agreement,
    /// Per room: servers with a user joined by the union DAG's membership.
    ServersInRoom,
    /// Per room: servers the scenario means to be in the room, plus those in it.
    ServersExpected,
    /// Events accepted by some servers and rejected by others.
    AuthDisagreements,
    /// Per server: events some honest server holds that this one has not received.
    EventLag,
    /// Forward extremities per server and room.
    ForwardExtremities,
    /// Per server: greatest DAG depth.
    DagDepth,
    /// Per server: entries of the current state.
    StateSize,
    /// Per server: events soft-failed, cumulative.
    SoftFailed,
    /// Per server: events rejected, cumulative.
    Rejected,
    /// Server-wide: federation messages delivered, cumulative.
    Deliveries,
}

impl Measure {
    pub const ALL: [Measure; 13] = [
        Measure::DistinctStates,
        Measure::LargestAgreeingGroup,
        Measure::Agreement,
        Measure::ServersInRoom,
        Measure::ServersExpected,
        Measure::AuthDisagreements,
        Measure::EventLag,
        Measure::ForwardExtremities,
        Measure::DagDepth,
        Measure::StateSize,
        Measure::SoftFailed,
        Measure::Rejected,
        Measure::Deliveries,
    ];

    /// The series' name in `metrics.csv` (and in the scenario's `measures`).
    pub fn name(self) -> &'static str {
        match self {
            Measure::DistinctStates => "distinct_states",
            Measure::LargestAgreeingGroup => "largest_agreeing_group",
            Measure::Agreement => "agreement",
            Measure::ServersInRoom => "servers_in_room",
            Measure::ServersExpected => "servers_expected",
            Measure::AuthDisagreements => "auth_disagreements",
            Measure::EventLag => "event_lag",
            Measure::ForwardExtremities => "forward_extremities",
            Measure::DagDepth => "dag_depth",
            Measure::StateSize => "state_size",
            Measure::SoftFailed => "soft_failed",
            Measure::Rejected => "rejected",
            Measure::Deliveries => "deliveries",
        }
    }
}

/// Seeds × parameter grid.
#[derive(Debug, Clone, Serialize)]
pub struct SweepSpec {
    pub seeds: Vec<u64>,
    /// In file order; each value is a TOML literal usable as `--set key=value`.
    pub grid: Vec<SweepParam>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepParam {
    pub key: String,
    pub values: Vec<String>,
}

/// One run of a sweep: a seed and the overrides that give its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepCell {
    /// Position in [`sweep_cells`](super::sweep_cells) order, from 0.
    pub index: usize,
    pub seed: u64,
    /// `key=value` overrides: the grid values, then `scenario.seed=<seed>`. Appending them to
    /// the run's own overrides and re-parsing gives this cell's scenario.
    pub overrides: Vec<String>,
    /// Human-readable, e.g. `network.loss=0.05,seed=3`.
    pub label: String,
}

/// MSC4243 §4: how a domain answers a requested key it does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum UnknownEncoding {
    /// The seed and the latest text: `{"errcode": "M_UNKNOWN"}`; a missing key is an anomaly.
    #[default]
    Errcode,
    /// The design before the seed: the key is left out of the map.
    Omit,
}

/// Which categories a server keeps (open question B2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Categories {
    /// Verified / unverified (+ erased): the latest text.
    #[default]
    TwoState,
    /// Verified / unverified / unknown: the seed.
    ThreeState,
}

/// The `client_view` knob (MSC4243 §6; open question B3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientView {
    #[default]
    Filter,
    InvalidDomain,
    UnderscorePrefix,
}

/// The `on_verify` knob (MSC4243 §6.2; open question B4): what a server sends its clients when
/// a key's mapping changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnVerify {
    /// The latest text: the user's current state events go down the sync stream again.
    #[default]
    ResendStateAfter,
    /// The seed: the member event under the corrected ID and a synthetic leave for the old one.
    ResendMemberAndSyntheticLeave,
    /// Nothing: clients keep what they were shown.
    Nothing,
}

/// `[account_query]`: MSC4243's design knobs and timings (see `docs/scenarios.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountQuerySpec {
    pub unknown_encoding: UnknownEncoding,
    pub categories: Categories,
    pub client_view: ClientView,
    pub on_verify: OnVerify,
    /// Retry delays after an anomaly (timeout, non-2xx, unreadable, a key missing under
    /// `errcode`); the last repeats.
    pub retry_anomaly_us: Vec<u64>,
    /// Retry delays after a negative answer; empty: never asked again.
    pub retry_negative_us: Vec<u64>,
    /// Settle a key omitted this many times in a row as a negative answer (`None`: keep
    /// retrying on the anomaly schedule).
    pub settle_omitted_after: Option<u32>,
    /// Timeout of one `/query/accounts` request (no retries: the cache's schedule retries).
    pub timeout_us: u64,
    /// Keys per request, 1..=2048.
    pub batch_size: usize,
    /// How often each server polls every domain it knows for erasures (MSC4243 §7: at most
    /// 3 days); `erasure_limit` keys per poll.
    pub erasure_poll_us: u64,
    pub erasure_limit: u32,
    /// The per-domain global backoff (§10): first interval and cap.
    pub domain_backoff_us: u64,
    pub domain_backoff_max_us: u64,
}

impl Default for AccountQuerySpec {
    fn default() -> AccountQuerySpec {
        const S: u64 = 1_000_000;
        AccountQuerySpec {
            unknown_encoding: UnknownEncoding::Errcode,
            categories: Categories::TwoState,
            client_view: ClientView::Filter,
            on_verify: OnVerify::ResendStateAfter,
            retry_anomaly_us: vec![10 * S, 30 * S, 60 * S, 300 * S],
            retry_negative_us: vec![3600 * S, 6 * 3600 * S, 24 * 3600 * S],
            settle_omitted_after: None,
            timeout_us: 10 * S,
            batch_size: 2048,
            erasure_poll_us: 24 * 3600 * S,
            erasure_limit: 64,
            domain_backoff_us: 5 * S,
            domain_backoff_max_us: 3600 * S,
        }
    }
}

/// `[participation]` (MSC4345 §6): who accepts a server's participation request in a
/// portable-account room, and how long that user takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParticipationSpec {
    /// The accepting user (a scenario user ID); `None`: each room's creator.
    pub acceptor: Option<String>,
    /// From the request reaching the acceptor's server to the acceptance being sent.
    pub accept_delay_us: u64,
}

impl Default for ParticipationSpec {
    fn default() -> ParticipationSpec {
        ParticipationSpec { acceptor: None, accept_delay_us: 1_000_000 }
    }
}

/// The account a `move` of `user` to `server` opens outside portable-account rooms: a new user
/// ID on the target server, whose localpart names the old account
/// (`@u1:hs2` → `@u1.hs2:hs3`; characters a localpart may not hold become `=`). In plain v12
/// and MSC4243 rooms an identity is its server's, so moving is starting over.
pub fn moved_account_id(user: &str, server: &str) -> String {
    let local = crate::protocol::ids::localpart_of(user).unwrap_or_default();
    let domain: String = crate::protocol::ids::domain_of(user)
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c.to_ascii_lowercase() } else { '=' })
        .collect();
    format!("@{local}.{domain}:{server}")
}

/// `[[identity_servers]]`: an identity server, a node of its own (Identity Service API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityServerSpec {
    /// Its server name: the host of its URLs and the entity of its signatures.
    pub name: String,
    /// The current `lookup_pepper` of `/hash_details`.
    pub pepper: String,
    /// MSC4004 `alt_lookup_peppers`: how many old peppers stay accepted after a rotation
    /// (0: without MSC4004, a rotation invalidates every hash a client computed before it).
    pub alt_peppers: usize,
    /// MSC4004 `POST /lookups`: whose pushes it stores (`None`: anyone, the attack MSC4004's
    /// security section names; `Some(list)`: only those identity servers).
    pub trusted_pushers: Option<Vec<String>>,
    /// The address bindings it starts with (canonical addresses).
    pub bindings: Vec<BindingSpec>,
    /// MSC4004: identity servers it pushes its bindings' hashes to at the start of the run.
    pub push_to: Vec<String>,
    /// A rogue server: its bindings are claims about addresses it does not own (for the
    /// `hijacked` measures); the truth is what the other identity servers hold.
    pub rogue: bool,
    /// Which key signs the `signed` objects of `/3pid/onbind` (the spec allows either).
    pub sign_with: SignWith,
    /// How long an invite's ephemeral key stays valid after `/store-invite` (`None`: for the
    /// whole run); `/pubkey/ephemeral/isvalid` answers `false` after it.
    pub ephemeral_lifetime_us: Option<u64>,
}

/// The key an identity server signs a third-party invite's `signed` object with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignWith {
    /// Its long-term key (`/pubkey/isvalid`): valid until revoked.
    LongTerm,
    /// The invite's ephemeral key (`/pubkey/ephemeral/isvalid`): valid for its lifetime.
    Ephemeral,
}

/// One 3PID binding: `address` (canonical for its medium) belongs to `user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindingSpec {
    pub medium: crate::protocol::identity::Medium,
    pub address: String,
    pub user: String,
}

/// Who checks an invite's `key_validity_url` (Server-Server API §"Third-party invites").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyValidityCheck {
    /// The spec's design: only the server that issues the invite (the inviting server on
    /// `/exchange_third_party_invite`, or the invitee's server when it is in the room) asks;
    /// every other server applies the auth rules alone, so all reach one verdict.
    Issuer,
    /// The divergent design: every server asks when the invite arrives and rejects it when
    /// the identity server says the key is not valid (or cannot be reached).
    EveryServer,
}

/// `m.identity_server` account data as a scenario sets it (MSC2230).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountDataSpec {
    /// No event: the client's default.
    Absent,
    /// `{"base_url": null}`: no identity server.
    Disabled,
    /// `{"base_url": "https://<name>"}`: that identity server.
    Server(String),
}

/// `[[identity.accounts]]`: one user's `m.identity_server` and clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityAccountSpec {
    pub user: String,
    pub account_data: AccountDataSpec,
    /// Its clients' names (each holds its own copy of the account data).
    pub clients: Vec<String>,
}

/// `[identity]`: the identity design knobs. Present (with defaults) in every scenario; read
/// only when the scenario has identity servers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentitySpec {
    /// The clients' default identity server (`.well-known`); `None`: no default.
    pub default_server: Option<String>,
    pub key_validity_check: KeyValidityCheck,
    /// MSC4004 `third_party_mappings` redirects a client follows for one address (0: none).
    pub max_redirects: u32,
    /// Lookups again after `M_INVALID_PEPPER` (with fresh `/hash_details`); the spec: 1.
    pub pepper_retries: u32,
    /// How long an account-data write takes to reach the user's other clients (sync).
    pub sync_delay_us: u64,
    /// How long after its third-party invite arrives the invitee joins (`None`: it does not
    /// join by itself; a `join` action can).
    pub auto_join_delay_us: Option<u64>,
    /// Per user (users not listed: account data absent, one client named `default`).
    pub accounts: Vec<IdentityAccountSpec>,
}

impl Default for IdentitySpec {
    fn default() -> IdentitySpec {
        IdentitySpec {
            default_server: None,
            key_validity_check: KeyValidityCheck::Issuer,
            max_redirects: 1,
            pepper_retries: 1,
            sync_delay_us: 500_000,
            auto_join_delay_us: Some(1_000_000),
            accounts: Vec::new(),
        }
    }
}

impl IdentitySpec {
    /// The clients of `user` (`default` when the scenario lists none).
    pub fn clients_of(&self, user: &str) -> Vec<String> {
        match self.accounts.iter().find(|a| a.user == user) {
            Some(a) if !a.clients.is_empty() => a.clients.clone(),
            _ => vec!["default".to_owned()],
        }
    }

    pub fn account_data_of(&self, user: &str) -> AccountDataSpec {
        self.accounts.iter().find(|a| a.user == user).map_or(AccountDataSpec::Absent, |a| a.account_data.clone())
    }
}
