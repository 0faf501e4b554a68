//! `[[workload]]`: random client activity in a room.

use toml::Spanned;

use super::super::duration::DurationUs;
use super::super::error::{Problem, Res};
use super::super::model::{EndCondition, RoomSpec, WorkloadSpec};
use super::super::names::Names;
use super::super::raw::{NameList, RawWorkload};
use super::super::MAX_EXPANDED_NAMES;
use super::timeline::find_room;
use super::{check_within_end, rate_or_zero};

pub(super) fn resolve(
    raw: &[Spanned<RawWorkload>],
    rooms: &[RoomSpec],
    names: &Names,
    end: &EndCondition,
) -> Res<Vec<WorkloadSpec>> {
    let mut workloads = Vec::new();
    let mut expanded = 0usize;
    for entry in raw {
        let workload = resolve_one(entry, rooms, names, end)?;
        expanded += workload.users.len();
        if expanded > MAX_EXPANDED_NAMES {
            return Err(Problem::at(
                entry.span(),
                format!("workloads name too many users in all: at most {MAX_EXPANDED_NAMES}"),
            ));
        }
        workloads.push(workload);
    }
    Ok(workloads)
}

fn resolve_one(
    entry: &Spanned<RawWorkload>,
    rooms: &[RoomSpec],
    names: &Names,
    end: &EndCondition,
) -> Res<WorkloadSpec> {
    let raw = entry.get_ref();
    let room = find_room(rooms, &raw.room)?;
    let context = format!("workload users of room \"{}\"", room.name);
    let users = match &raw.users {
        Some(list) => names.users_of_list(list.get_ref(), &list.span(), &context)?,
        None => names.users_of_list(&NameList(vec![("*".to_string(), None)]), &entry.span(), &context)?,
    };
    let (start_us, stop_us) = window(raw, room, entry, end)?;
    Ok(WorkloadSpec {
        room: room.name.clone(),
        users,
        start_us,
        stop_us,
        messages_per_minute: rate_or_zero(&raw.messages_per_minute, "messages_per_minute", 60_000.0)?,
        state_changes_per_hour: rate_or_zero(&raw.state_changes_per_hour, "state_changes_per_hour", 3_600_000.0)?,
        churn_per_hour: rate_or_zero(&raw.churn_per_hour, "churn_per_hour", 3_600_000.0)?,
        power_changes_per_hour: rate_or_zero(&raw.power_changes_per_hour, "power_changes_per_hour", 3_600_000.0)?,
    })
}

/// `start` (default: the room's creation) and `stop` (default: the end; required when the run
/// ends at quiescence, which a never-ending workload would prevent).
fn window(raw: &RawWorkload, room: &RoomSpec, entry: &Spanned<RawWorkload>, end: &EndCondition) -> Res<(u64, u64)> {
    let start_us = raw.start.as_ref().map_or(room.start_us, |s| s.get_ref().0);
    let start_span = raw.start.as_ref().map_or_else(|| entry.span(), Spanned::span);
    if start_us < room.start_us {
        let message = format!(
            "workload starts at {} but room \"{}\" is created at {}",
            DurationUs(start_us),
            room.name,
            DurationUs(room.start_us)
        );
        return Err(Problem::at(start_span, message));
    }
    check_within_end(start_us, start_span, end, "workload start")?;
    let stop_us = match (&raw.stop, end) {
        (Some(stop), _) => {
            if stop.get_ref().0 <= start_us {
                return Err(Problem::at(stop.span(), "workload stop must be after its start"));
            }
            // A stop beyond the end is cut at the end (so `--set scenario.end=...` can shorten a
            // run without editing every workload).
            stop.get_ref().0.min(end.bound_us())
        }
        (None, EndCondition::At(end_us)) => *end_us,
        (None, EndCondition::Quiescence { .. }) => {
            return Err(Problem::at(raw.room.span(), "a workload needs `stop` when scenario.end = \"quiescence\""));
        }
    };
    Ok((start_us, stop_us))
}
