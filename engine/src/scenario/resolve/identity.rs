//! `[[identity_servers]]` and `[identity]`: identity servers (Identity Service API, MSC4004),
//! the bindings they start with, and the clients' identity settings.
//!
//! Identity servers are nodes of their own: their names are server names distinct from every
//! homeserver, group, key notary and other identity server. Names an entry refers to
//! (`trusted_pushers`, `push_to`, `default_server`, `account_data`) are checked once every
//! identity server's name is known, so an entry may name one declared after it.

use std::collections::BTreeSet;
use std::ops::Range;

use toml::Spanned;

use super::super::error::{Problem, Res};
use super::super::model::{AccountDataSpec, BindingSpec, IdentityAccountSpec, IdentityServerSpec, IdentitySpec};
use super::super::names::{abbreviate, Names};
use super::super::raw::{AcceptPushes, RawIdentity, RawIdentityAccount, RawIdentityServer, TableSpan};
use super::{check_identifier, duration_or};
use crate::protocol::identity::{canonical, Medium};

/// Most identity servers a scenario may declare.
pub(crate) const MAX_IDENTITY_SERVERS: usize = 256;
/// Upper bound of `max_redirects` and `pepper_retries` (like `request_retries`).
const MAX_RETRIES: i64 = 100;
/// Words that are values of `account_data` and of a `set_identity_server` action's
/// `identity_server`: an identity server may not be named so.
pub(super) const RESERVED: [&str; 4] = ["absent", "disabled", "none", "default"];

/// The identity servers' names in file order, each checked against `names` (servers, groups,
/// notaries) and the others.
pub(super) fn names(raw: &[Spanned<RawIdentityServer>], names: &Names) -> Res<Vec<String>> {
    if let Some(extra) = raw.get(MAX_IDENTITY_SERVERS) {
        return Err(Problem::at(extra.span(), format!("at most {MAX_IDENTITY_SERVERS} identity servers")));
    }
    let mut declared: Vec<String> = Vec::new();
    for entry in raw {
        let name = &entry.get_ref().name;
        let text = name.get_ref();
        super::servers::check_server_name_pub(text, &name.span())?;
        let clash = if names.is_server(text) {
            Some("a homeserver")
        } else if names.is_group(text) {
            Some("a group")
        } else if names.is_notary(text) {
            Some("a key notary")
        } else if declared.contains(text) {
            Some("another identity server")
        } else {
            None
        };
        if let Some(other) = clash {
            let message =
                format!("identity server \"{text}\" has the name of {other}: an identity server is a node of its own");
            return Err(Problem::at(name.span(), message));
        }
        if RESERVED.contains(&text.as_str()) {
            let message = format!(
                "identity server name \"{text}\" is reserved: {} are values of `account_data` and `identity_server`",
                RESERVED.map(|w| format!("\"{w}\"")).join(", ")
            );
            return Err(Problem::at(name.span(), message));
        }
        declared.push(text.clone());
    }
    Ok(declared)
}

/// The identity servers in file order; `names` knows them all ([`names`]).
pub(super) fn servers(raw: &[Spanned<RawIdentityServer>], names: &Names) -> Res<Vec<IdentityServerSpec>> {
    raw.iter().map(|entry| server(entry.get_ref(), names)).collect()
}

fn server(raw: &RawIdentityServer, names: &Names) -> Res<IdentityServerSpec> {
    let name = raw.name.get_ref().clone();
    let label = format!("identity server \"{name}\"");
    let pepper = match &raw.pepper {
        Some(p) if p.get_ref().is_empty() => {
            return Err(Problem::at(p.span(), format!("the `pepper` of {label} must not be empty")))
        }
        Some(p) => p.get_ref().clone(),
        None => format!("{name}/pepper-0"),
    };
    let alt_peppers = match &raw.alt_peppers {
        None => 0,
        Some(n) => {
            let v = *n.get_ref();
            let message = format!("alt_peppers must be an integer from 0 to {}; got {v}", u32::MAX);
            u32::try_from(v).map_err(|_| Problem::at(n.span(), message))? as usize
        }
    };
    let anyone = raw.accept_pushes.as_ref().is_some_and(|a| *a.get_ref() == AcceptPushes::Anyone);
    // With "anyone", an empty list names no one and is accepted: a `--set` cannot remove the
    // key, so `accept_pushes="anyone"` and `trusted_pushers=[]` is how an override turns it off.
    let trusted_pushers = match (&raw.trusted_pushers, anyone) {
        (Some(list), true) if !list.get_ref().is_empty() => {
            return Err(Problem::at(
                list.span(),
                format!(
                    "`trusted_pushers` does not apply to {label}: with accept_pushes = \"anyone\" it stores every \
                     server's pushes"
                ),
            ))
        }
        (_, true) => None,
        (None, false) => Some(Vec::new()),
        (Some(list), false) => Some(identity_list(list.get_ref(), &name, names, "trusted_pushers", &label)?),
    };
    let push_to = match &raw.push_to {
        None => Vec::new(),
        Some(list) => identity_list(list.get_ref(), &name, names, "push_to", &label)?,
    };
    let mut bindings: Vec<BindingSpec> = Vec::new();
    for binding in raw.bindings.iter().flat_map(|b| b.get_ref()) {
        let binding = binding.get_ref();
        let medium = binding.medium.as_ref().map_or(Medium::Email, |m| *m.get_ref());
        let address = address(&binding.address, medium)?;
        if bindings.iter().any(|b| b.medium == medium && b.address == address) {
            let message = format!("{label} binds {} address \"{address}\" twice", medium.as_str());
            return Err(Problem::at(binding.address.span(), message));
        }
        let user = names.user(binding.user.get_ref(), &binding.user.span(), &format!("a binding of {label}"))?;
        bindings.push(BindingSpec { medium, address, user });
    }
    Ok(IdentityServerSpec {
        name,
        pepper,
        alt_peppers,
        trusted_pushers,
        bindings,
        push_to,
        rogue: raw.rogue.as_ref().is_some_and(|r| *r.get_ref()),
        sign_with: raw.sign_with.as_ref().map_or(crate::scenario::SignWith::LongTerm, |s| *s.get_ref()),
        ephemeral_lifetime_us: raw.ephemeral_lifetime.as_ref().map(|d| d.get_ref().0),
    })
}

/// A list of other identity servers (each once, not `own`).
fn identity_list(list: &[Spanned<String>], own: &str, names: &Names, key: &str, label: &str) -> Res<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for item in list {
        let text = item.get_ref();
        if text == own {
            let message = format!("`{key}` of {label} names the server itself");
            return Err(Problem::at(item.span(), message));
        }
        let name = names.identity_server(text, &item.span(), &format!("`{key}` of {label}"))?;
        if out.contains(&name) {
            return Err(Problem::at(item.span(), format!("\"{name}\" is listed twice in `{key}` of {label}")));
        }
        out.push(name);
    }
    Ok(out)
}

/// The canonical form of an address of `medium`, or an error at the value.
pub(super) fn address(value: &Spanned<String>, medium: Medium) -> Res<String> {
    canonical(medium, value.get_ref()).map_err(|e| Problem::at(value.span(), format!("invalid address: {e}")))
}

/// `[identity]` (refused without identity servers); `names` knows the identity servers.
pub(super) fn settings(raw: Option<&TableSpan<RawIdentity>>, names: &Names) -> Res<IdentitySpec> {
    let mut spec = IdentitySpec::default();
    let Some(table) = raw else { return Ok(spec) };
    let raw = &table.value;
    if names.identity_servers().is_empty() {
        let message = "[identity] needs identity servers: the scenario declares no [[identity_servers]], so nothing \
                       would read it";
        return Err(match table.span.clone().or_else(|| first_span(raw)) {
            Some(span) => Problem::at(span, message),
            None => Problem::nowhere(message),
        });
    }
    if let Some(s) = &raw.default_server {
        spec.default_server = Some(names.identity_server(s.get_ref(), &s.span(), "`default_server` of [identity]")?);
    }
    if let Some(k) = &raw.key_validity_check {
        spec.key_validity_check = *k.get_ref();
    }
    spec.max_redirects = count_or(&raw.max_redirects, spec.max_redirects, "max_redirects")?;
    spec.pepper_retries = count_or(&raw.pepper_retries, spec.pepper_retries, "pepper_retries")?;
    spec.sync_delay_us = duration_or(&raw.sync_delay, spec.sync_delay_us);
    let auto_join = raw.auto_join.as_ref().is_none_or(|a| *a.get_ref());
    spec.auto_join_delay_us = match (&raw.auto_join_delay, auto_join) {
        (Some(d), false) => {
            return Err(Problem::at(
                d.span(),
                "`auto_join_delay` does not apply with auto_join = false: invitees do not join by themselves",
            ))
        }
        (_, false) => None,
        (delay, true) => Some(duration_or(delay, spec.auto_join_delay_us.unwrap_or_default())),
    };
    let mut users = BTreeSet::new();
    for account in &raw.accounts {
        let resolved = account_spec(account.get_ref(), names)?;
        if !users.insert(resolved.user.clone()) {
            let user = &account.get_ref().user;
            let message = format!("user {} has two [[identity.accounts]] entries", resolved.user);
            return Err(Problem::at(user.span(), message));
        }
        spec.accounts.push(resolved);
    }
    Ok(spec)
}

/// Where a table without a header starts: its first key's value, or its first account.
fn first_span(raw: &RawIdentity) -> Option<Range<usize>> {
    let spans = [
        raw.default_server.as_ref().map(Spanned::span),
        raw.key_validity_check.as_ref().map(Spanned::span),
        raw.max_redirects.as_ref().map(Spanned::span),
        raw.pepper_retries.as_ref().map(Spanned::span),
        raw.sync_delay.as_ref().map(Spanned::span),
        raw.auto_join.as_ref().map(Spanned::span),
        raw.auto_join_delay.as_ref().map(Spanned::span),
        raw.accounts.first().map(Spanned::span),
    ];
    spans.into_iter().flatten().min_by_key(|s| s.start)
}

fn count_or(value: &Option<Spanned<i64>>, default: u32, what: &str) -> Res<u32> {
    let Some(value) = value else { return Ok(default) };
    let v = *value.get_ref();
    if (0..=MAX_RETRIES).contains(&v) {
        return Ok(v as u32);
    }
    Err(Problem::at(value.span(), format!("{what} must be between 0 and {MAX_RETRIES}; got {v}")))
}

fn account_spec(raw: &RawIdentityAccount, names: &Names) -> Res<IdentityAccountSpec> {
    let user = names.user(raw.user.get_ref(), &raw.user.span(), "[[identity.accounts]]")?;
    let account_data = match &raw.account_data {
        None => AccountDataSpec::Absent,
        Some(value) => account_data(value, names, "`account_data`", ["absent", "disabled"])?,
    };
    let mut clients: Vec<String> = Vec::new();
    if let Some(list) = &raw.clients {
        if list.get_ref().is_empty() {
            return Err(Problem::at(
                list.span(),
                "`clients` must name at least one client (leave it out for one client named \"default\")",
            ));
        }
        for client in list.get_ref() {
            check_identifier(client, "client name")?;
            if clients.contains(client.get_ref()) {
                let message = format!("client \"{}\" of {user} is listed twice", client.get_ref());
                return Err(Problem::at(client.span(), message));
            }
            clients.push(client.get_ref().clone());
        }
    }
    Ok(IdentityAccountSpec { user, account_data, clients })
}

/// `m.identity_server` account data: `absent` / `disabled` are the words of
/// `[[identity.accounts]]`, `default` / `none` those of a `set_identity_server` action.
pub(super) fn account_data(
    value: &Spanned<String>,
    names: &Names,
    what: &str,
    [absent, disabled]: [&str; 2],
) -> Res<AccountDataSpec> {
    let text = value.get_ref();
    if text == absent {
        return Ok(AccountDataSpec::Absent);
    }
    if text == disabled {
        return Ok(AccountDataSpec::Disabled);
    }
    if names.is_identity_server(text) {
        return Ok(AccountDataSpec::Server(text.clone()));
    }
    Err(unknown_value(value.span(), text, what, [absent, disabled], names.identity_servers()))
}

fn unknown_value(span: Range<usize>, text: &str, what: &str, words: [&str; 2], servers: &[String]) -> Problem {
    let message = format!(
        "{what} \"{text}\" is not \"{}\", \"{}\" or an identity server; identity servers are {}",
        words[0],
        words[1],
        abbreviate(servers)
    );
    Problem::at(span, message)
}
