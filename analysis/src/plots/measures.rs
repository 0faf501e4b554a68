//! Nicer titles and units for the measures known today. Only labels: a measure missing here is
//! plotted all the same, with its name as title and "value" as unit.

/// How to label one measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasureInfo {
    pub title: String,
    /// Y axis label.
    pub unit: String,
    /// One sentence for a figure caption; empty for unknown measures.
    pub description: String,
    /// A share in 0..1: the y axis is fixed to that range.
    pub is_share: bool,
}

/// (name, title, unit, description, is_share)
const KNOWN: &[(&str, &str, &str, &str, bool)] = &[
    (
        "distinct_states",
        "distinct current states",
        "states",
        "How many different current states the servers in the room hold; 1 means all agree.",
        false,
    ),
    (
        "agreement",
        "agreement",
        "1 = agreed",
        "1 while every server that should be in the room holds the same DAG and current state; divergence episodes (exact, from summary.json) marked along the x axis.",
        false,
    ),
    (
        "membership",
        "servers expected and in the room",
        "servers",
        "Servers the scenario and the DAG's membership expect in the room, and servers with a user joined by the union DAG's membership.",
        false,
    ),
    (
        "servers_in_room",
        "servers in the room",
        "servers",
        "Servers with a user joined by the union DAG's membership.",
        false,
    ),
    (
        "servers_expected",
        "servers expected",
        "servers",
        "Servers the scenario means to be in the room, plus those in it.",
        false,
    ),
    (
        "largest_agreeing_group",
        "largest agreeing group",
        "servers",
        "Servers of the room holding the most common current state (byzantine ones included).",
        false,
    ),
    (
        "largest_agreeing_group_share",
        "largest agreeing group",
        "share of servers",
        "Share of the room's servers that hold the most common current state.",
        true,
    ),
    (
        "outside_largest_group_share",
        "servers outside the largest agreeing group",
        "share of servers",
        "Share of the room's servers whose current state differs from the most common one.",
        true,
    ),
    (
        "event_lag",
        "event lag",
        "events not yet received",
        "Events of the room that exist somewhere but this server has not received yet.",
        false,
    ),
    (
        "forward_extremities",
        "forward extremities",
        "events",
        "Events with no known children at this server; many means the DAG is not being merged.",
        false,
    ),
    ("dag_depth", "DAG depth", "depth", "Greatest depth of the room DAG at this server.", false),
    (
        "state_size",
        "current state size",
        "state entries",
        "Number of (type, state_key) entries in this server's current state of the room.",
        false,
    ),
    (
        "soft_failed",
        "soft-failed events (cumulative)",
        "events",
        "Events this server accepted into the DAG but soft-failed (hidden from clients).",
        false,
    ),
    ("rejected", "rejected events (cumulative)", "events", "Events this server rejected under the auth rules.", false),
    (
        "deliveries",
        "federation deliveries (cumulative)",
        "deliveries",
        "Federation messages delivered to this server so far.",
        false,
    ),
    (
        "mapping_verified",
        "account-key mappings verified",
        "mappings",
        "Account-key mappings this server has verified (MSC4243).",
        false,
    ),
    (
        "mapping_unverified",
        "account-key mappings unverified",
        "mappings",
        "Account-key mappings this server could not verify (MSC4243).",
        false,
    ),
    (
        "mapping_pending",
        "account-key mappings pending",
        "mappings",
        "Account-key mapping queries still in flight at this server (MSC4243).",
        false,
    ),
    (
        "client_view_divergence",
        "client-view divergence",
        "events shown differently",
        "Events whose sender this server shows its clients differently from other servers.",
        false,
    ),
];

/// Labels for `measure`, generic when it is not in the known table.
pub fn describe_measure(measure: &str) -> MeasureInfo {
    match KNOWN.iter().find(|k| k.0 == measure) {
        Some(&(_, title, unit, description, is_share)) => {
            MeasureInfo { title: title.into(), unit: unit.into(), description: description.into(), is_share }
        }
        None => MeasureInfo {
            title: measure.replace('_', " "),
            unit: "value".into(),
            description: String::new(),
            is_share: false,
        },
    }
}

/// Position of `measure` in the report: known measures in table order, then the rest by name.
pub(crate) fn measure_rank(measure: &str) -> (usize, String) {
    let pos = KNOWN.iter().position(|k| k.0 == measure).unwrap_or(KNOWN.len());
    (pos, measure.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_measures_get_generic_labels() {
        let m = describe_measure("proposal_widgets_seen");
        assert_eq!(m.title, "proposal widgets seen");
        assert_eq!(m.unit, "value");
        assert!(describe_measure("outside_largest_group_share").is_share);
        assert!(measure_rank("distinct_states") < measure_rank("aaa"));
    }
}
