//! What a server shows its clients as the sender of an account-key event (MSC4243 §6), per the
//! `client_view` design knob, and what it re-sends when a mapping changes (§6.2, per `on_verify`).
//!
//! * [`ClientView::Filter`] (the latest text): a verified key is shown as its account name user
//!   ID `@name:domain`; the events of any other key are filtered out of what clients receive.
//! * [`ClientView::InvalidDomain`] (the alternative §6 considered): a verified key by name, any
//!   other as `@<key>:invalid` (`invalid` is a reserved TLD: the ID cannot be a real user's).
//! * [`ClientView::UnderscorePrefix`] (the seed): verified by name, unverified as
//!   `@<key>:invalid`, unknown or not yet answered as `@_<key>:<domain>`.
//!
//! An erased key is hidden in every design (§7: its events MUST NOT go to sync). Every event a
//! client receives carries `unsigned.sender_account` = `{key, user_id}`, `user_id` only when
//! verified (§6, "gradual compatibility").

use super::cache::Mapping;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use crate::scenario::ClientView;

pub use crate::scenario::OnVerify;

/// How a sender is shown.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "shown", content = "as")]
pub enum Shown {
    /// By its account name user ID.
    Name(String),
    /// By a raw key form (`@<key>:invalid`, `@_<key>:domain`).
    Raw(String),
    /// Not at all: the event is filtered out.
    Hidden,
}

/// How `mapping` of `(key, domain)` is shown under `view`.
pub fn shown_as(view: ClientView, key: &str, domain: &str, mapping: &Mapping) -> Shown {
    match (mapping, view) {
        (Mapping::Verified { name }, _) => Shown::Name(format!("@{name}:{domain}")),
        (Mapping::Erased, _) | (_, ClientView::Filter) => Shown::Hidden,
        (_, ClientView::InvalidDomain) | (Mapping::Unverified { .. }, ClientView::UnderscorePrefix) => {
            Shown::Raw(format!("@{key}:invalid"))
        }
        (Mapping::Pending | Mapping::Unknown { .. }, ClientView::UnderscorePrefix) => {
            Shown::Raw(format!("@_{key}:{domain}"))
        }
    }
}

/// The `unsigned.sender_account` object of an event sent to clients (§6).
pub fn sender_account(key: &str, shown: &Shown) -> Value {
    match shown {
        Shown::Name(user_id) => json!({"key": key, "user_id": user_id}),
        Shown::Raw(_) | Shown::Hidden => json!({"key": key}),
    }
}

/// What a server sends a client about one user when its shown form changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resend {
    /// The user's current state events (its member event and the state it sent), as `sender`.
    CurrentState { sender: String },
    /// Its member event again, under the corrected ID.
    Member { user_id: String },
    /// A synthetic leave for the ID the client was shown before.
    SyntheticLeave { user_id: String },
}

/// What `on_verify` sends when a user's shown form goes from `before` to `after`.
pub fn on_change(on_verify: OnVerify, before: &Shown, after: &Shown) -> Vec<Resend> {
    if before == after {
        return Vec::new();
    }
    match (on_verify, before, after) {
        (OnVerify::Nothing, _, _) => Vec::new(),
        (OnVerify::ResendStateAfter, _, Shown::Name(user_id)) => vec![Resend::CurrentState { sender: user_id.clone() }],
        (OnVerify::ResendStateAfter, _, _) => Vec::new(),
        (OnVerify::ResendMemberAndSyntheticLeave, Shown::Raw(old), new) => {
            let mut out = Vec::new();
            if let Shown::Name(id) | Shown::Raw(id) = new {
                out.push(Resend::Member { user_id: id.clone() });
            }
            out.push(Resend::SyntheticLeave { user_id: old.clone() });
            out
        }
        (OnVerify::ResendMemberAndSyntheticLeave, _, Shown::Name(user_id)) => {
            vec![Resend::Member { user_id: user_id.clone() }]
        }
        (OnVerify::ResendMemberAndSyntheticLeave, _, _) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::accounts::cache::Reason;

    const KEY: &str = "tamtml8LhZFhegmUUwXzSRBshscwlsi2DjVna0wbtQ0";

    fn all_views(mapping: &Mapping) -> [Shown; 3] {
        [ClientView::Filter, ClientView::InvalidDomain, ClientView::UnderscorePrefix]
            .map(|v| shown_as(v, KEY, "hs1.example", mapping))
    }

    #[test]
    fn each_design_shows_each_state_as_the_msc_says() {
        let name = Shown::Name("@alice:hs1.example".into());
        let invalid = Shown::Raw(format!("@{KEY}:invalid"));
        let underscore = Shown::Raw(format!("@_{KEY}:hs1.example"));
        assert_eq!(all_views(&Mapping::Verified { name: "alice".into() }), [name.clone(), name.clone(), name]);
        let unverified = Mapping::Unverified { reason: Reason::ExplicitUnknown("M_UNKNOWN".into()) };
        assert_eq!(all_views(&unverified), [Shown::Hidden, invalid.clone(), invalid.clone()]);
        let unknown = Mapping::Unknown { reason: Reason::Timeout };
        assert_eq!(all_views(&unknown), [Shown::Hidden, invalid.clone(), underscore.clone()]);
        assert_eq!(all_views(&Mapping::Pending), [Shown::Hidden, invalid, underscore]);
        assert_eq!(all_views(&Mapping::Erased), [Shown::Hidden, Shown::Hidden, Shown::Hidden]);
    }

    #[test]
    fn sender_account_names_the_user_only_when_verified() {
        let shown = shown_as(ClientView::Filter, KEY, "hs1.example", &Mapping::Verified { name: "alice".into() });
        assert_eq!(sender_account(KEY, &shown), json!({"key": KEY, "user_id": "@alice:hs1.example"}));
        assert_eq!(sender_account(KEY, &Shown::Hidden), json!({"key": KEY}));
    }

    /// The seed's rule (§6.2 of the seed revision): a client shown `@_<key>:domain` gets the
    /// member event under the new ID and a synthetic leave of the old one; the latest text sends
    /// the current state only when the key becomes verified.
    #[test]
    fn a_changed_mapping_resends_what_each_design_says() {
        let underscore = Shown::Raw(format!("@_{KEY}:hs1.example"));
        let invalid = Shown::Raw(format!("@{KEY}:invalid"));
        let name = Shown::Name("@alice:hs1.example".into());
        let seed = OnVerify::ResendMemberAndSyntheticLeave;
        assert_eq!(
            on_change(seed, &underscore, &name),
            [
                Resend::Member { user_id: "@alice:hs1.example".into() },
                Resend::SyntheticLeave { user_id: format!("@_{KEY}:hs1.example") }
            ]
        );
        assert_eq!(
            on_change(seed, &underscore, &invalid),
            [
                Resend::Member { user_id: format!("@{KEY}:invalid") },
                Resend::SyntheticLeave { user_id: format!("@_{KEY}:hs1.example") }
            ]
        );
        assert_eq!(on_change(seed, &Shown::Hidden, &name), [Resend::Member { user_id: "@alice:hs1.example".into() }]);
        let latest = OnVerify::ResendStateAfter;
        assert_eq!(
            on_change(latest, &Shown::Hidden, &name),
            [Resend::CurrentState { sender: "@alice:hs1.example".into() }]
        );
        assert!(on_change(latest, &name, &Shown::Hidden).is_empty(), "no retraction signal exists (§7)");
        assert!(on_change(OnVerify::Nothing, &Shown::Hidden, &name).is_empty());
        assert!(on_change(seed, &name, &name).is_empty());
    }
}
