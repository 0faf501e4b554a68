//! Room versions as one struct of rule flags: proposals add flags, not forks.

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
}

pub const V11: RoomVersion = RoomVersion {
    id: "11",
    create_in_auth_events: true,
    room_id_is_create_hash: false,
    privileged_creators: false,
    state_res: StateResAlgorithm::V2,
    restricted_joins: true,
    knocking: true,
};

pub const V12: RoomVersion = RoomVersion {
    id: "12",
    create_in_auth_events: false,
    room_id_is_create_hash: true,
    privileged_creators: true,
    state_res: StateResAlgorithm::V2_1,
    restricted_joins: true,
    knocking: true,
};

/// Every room version this build understands (v11 auth rule 1.3: others are rejected).
pub const KNOWN: [&RoomVersion; 2] = [&V11, &V12];

impl RoomVersion {
    /// Looks up a room version by its identifier.
    pub fn by_id(id: &str) -> Option<&'static RoomVersion> {
        KNOWN.iter().copied().find(|v| v.id == id)
    }
}

/// Power level of a creator in v12: compares above every JSON integer (which are ≤ 2^53 − 1)
/// and equal to another creator's.
pub const CREATOR_POWER_LEVEL: i64 = i64::MAX;
