//! Outgoing requests: identifiers, timeouts, retries, and what each request was for.

use super::{Output, Server, Timer};
use crate::sim::federation::{Message, Outcome, Request, RequestId, ServerIdx};
use crate::sim::time::SimTime;

/// Why a request was sent, so that its answer (or its timeout) can be acted on.
#[derive(Debug, Clone)]
pub(crate) enum Purpose {
    Transaction {
        dest: ServerIdx,
    },
    Fetch {
        room_id: String,
    },
    MakeJoin {
        user: String,
        room_id: String,
    },
    SendJoin {
        user: String,
        room_id: String,
    },
    Invite {
        room_id: String,
    },
    MakeKnock {
        user: String,
        room_id: String,
    },
    SendKnock {
        user: String,
        room_id: String,
    },
    MakeLeave {
        user: String,
        room_id: String,
    },
    SendLeave {
        user: String,
        room_id: String,
    },
    /// Keys of `server` from the `step`-th source (trusted notaries in order, then the origin).
    KeyFetch {
        server: String,
        step: usize,
    },
    /// `/state_ids` at `event_id`, a missing prev event of a pending event.
    StateIds {
        room_id: String,
        event_id: String,
    },
    /// `/event/{eventId}` for a gap being bridged.
    GetEvent {
        room_id: String,
    },
    /// `/event_auth` of a pending event whose auth events are not held.
    EventAuth {
        room_id: String,
        event_id: String,
    },
    /// `/backfill` after a `join.mode = "state"` join.
    Backfill {
        room_id: String,
    },
    /// MSC4243 `/query/accounts` of `keys` claiming `domain` (no keys: an erasure poll).
    AccountQuery {
        domain: String,
        keys: Vec<String>,
    },
    /// MSC4345 §7 / MSC4348: a domain check of the client view (`/_matrix/key/v3/query`, the
    /// account names); its cache's schedule is its retry (`server/domain_view.rs`).
    DomainView,
    /// MSC4243 §8: the name → key step of an invite or pre-emptive ban.
    AccountInvite {
        room_id: String,
    },
    /// An identity call (`identity.rs`).
    Identity(super::identity::IdentityPurpose),
}

#[derive(Debug, Clone)]
pub(crate) struct PendingRequest {
    pub(crate) to: ServerIdx,
    pub(crate) body: Request,
    pub(crate) attempts: u32,
    pub(crate) purpose: Purpose,
}

impl Server {
    pub(crate) fn send_request(
        &mut self,
        to: ServerIdx,
        body: Request,
        purpose: Purpose,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        self.send_request_with_timeout(to, body, purpose, self.config.request_timeout_us, now, out);
    }

    /// [`Server::send_request`] with its own timeout.
    pub(crate) fn send_request_with_timeout(
        &mut self,
        to: ServerIdx,
        body: Request,
        purpose: Purpose,
        timeout_us: u64,
        now: SimTime,
        out: &mut Vec<Output>,
    ) {
        let id = self.next_request_id;
        self.next_request_id += 1;
        out.push(Output::Send { to, message: Message::Request { id, body: body.clone() }, delay_us: self.cost_us });
        out.push(Output::SetTimer { at: now + self.cost_us + timeout_us, timer: Timer::RequestTimeout { id } });
        self.requests.insert(id, PendingRequest { to, body, attempts: 1, purpose });
    }

    pub(crate) fn respond(&self, to: ServerIdx, id: RequestId, outcome: Outcome, out: &mut Vec<Output>) {
        out.push(Output::Send { to, message: Message::Response { id, outcome }, delay_us: self.cost_us });
    }
}
