//! Looking up server, group and user names, with errors that say which names exist.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::error::{Problem, Res};
use super::model::ServerSpec;
use super::raw::NameList;

/// The servers, their users and the groups of a scenario, for resolving references.
pub(crate) struct Names {
    servers: Vec<String>,
    users: BTreeMap<String, Vec<String>>,
    groups: BTreeMap<String, Vec<String>>,
    /// Key notaries: nodes that faults (crash, partition) and middleboxes may name too.
    notaries: Vec<String>,
    /// Identity servers: nodes of their own, named by identity keys, identity actions and
    /// faults (crash, partition, rotate_pepper, revoke_identity_key).
    identity_servers: Vec<String>,
}

impl Names {
    pub fn new(servers: &[ServerSpec], groups: BTreeMap<String, Vec<String>>) -> Self {
        Names {
            servers: servers.iter().map(|s| s.name.clone()).collect(),
            users: servers.iter().map(|s| (s.name.clone(), s.users.clone())).collect(),
            groups,
            notaries: Vec::new(),
            identity_servers: Vec::new(),
        }
    }

    /// These names, with the scenario's identity servers.
    pub fn with_identity_servers(mut self, identity_servers: &[String]) -> Self {
        self.identity_servers = identity_servers.to_vec();
        self
    }

    pub fn is_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    pub fn is_identity_server(&self, name: &str) -> bool {
        self.identity_servers.iter().any(|n| n == name)
    }

    pub fn identity_servers(&self) -> &[String] {
        &self.identity_servers
    }

    /// Exactly one identity server.
    pub fn identity_server(&self, name: &str, span: &Range<usize>, context: &str) -> Res<String> {
        if self.is_identity_server(name) {
            return Ok(name.to_string());
        }
        let known = if self.identity_servers.is_empty() {
            "the scenario declares none ([[identity_servers]])".to_string()
        } else {
            format!("identity servers are {}", abbreviate(&self.identity_servers))
        };
        let message = if self.is_server(name) {
            format!("\"{name}\" in {context} is a homeserver, but an identity server is needed; {known}")
        } else {
            format!("unknown identity server \"{name}\" in {context}; {known}")
        };
        Err(Problem::at(span.clone(), message))
    }

    /// Exactly one node of any kind: a server, a key notary or an identity server (what crash
    /// faults name).
    pub fn any_node(&self, name: &str, span: &Range<usize>, context: &str) -> Res<String> {
        if self.is_identity_server(name) {
            return Ok(name.to_string());
        }
        self.node(name, span, context)
    }

    /// These names, with the scenario's key notaries.
    pub fn with_notaries(mut self, notaries: &[String]) -> Self {
        self.notaries = notaries.to_vec();
        self
    }

    pub fn is_notary(&self, name: &str) -> bool {
        self.notaries.iter().any(|n| n == name)
    }

    pub fn notaries(&self) -> &[String] {
        &self.notaries
    }

    /// Exactly one node: a server or a key notary (what crash faults and middleboxes name).
    pub fn node(&self, name: &str, span: &Range<usize>, context: &str) -> Res<String> {
        if self.is_notary(name) {
            return Ok(name.to_string());
        }
        self.server(name, span, context)
    }

    pub fn is_server(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    pub fn all_servers(&self) -> &[String] {
        &self.servers
    }

    /// Exactly one server.
    pub fn server(&self, name: &str, span: &Range<usize>, context: &str) -> Res<String> {
        if self.is_server(name) {
            return Ok(name.to_string());
        }
        let servers = abbreviate(&self.servers);
        let message = if self.groups.contains_key(name) {
            format!("\"{name}\" in {context} is a group, but a single server is needed; servers are {servers}")
        } else if self.is_identity_server(name) {
            format!("\"{name}\" in {context} is an identity server, but a homeserver is needed; servers are {servers}")
        } else {
            format!("unknown server \"{name}\" in {context}; servers are {servers}")
        };
        Err(Problem::at(span.clone(), message))
    }

    /// A server, a group or `"*"`, as server names.
    pub fn servers_of(&self, name: &str, span: &Range<usize>, context: &str) -> Res<Vec<String>> {
        if name == "*" {
            return Ok(self.servers.clone());
        }
        if self.is_server(name) {
            return Ok(vec![name.to_string()]);
        }
        if let Some(members) = self.groups.get(name) {
            return Ok(members.clone());
        }
        Err(Problem::at(span.clone(), self.unknown_server_or_group(name, context)))
    }

    /// Every name of the list expanded to servers; duplicates dropped, first occurrence kept.
    pub fn servers_of_list(&self, list: &NameList, whole: &Range<usize>, context: &str) -> Res<Vec<String>> {
        let mut servers = Vec::new();
        for (name, span) in list.spanned(whole) {
            servers.extend(self.servers_of(&name, &span, context)?);
        }
        Ok(dedup(servers))
    }

    /// One existing user ID.
    pub fn user(&self, id: &str, span: &Range<usize>, context: &str) -> Res<String> {
        let Some((_, server)) = id.strip_prefix('@').and_then(|rest| rest.split_once(':')) else {
            let message = format!("\"{id}\" in {context} is not a user ID; user IDs look like \"@u0:hs1\"");
            return Err(Problem::at(span.clone(), message));
        };
        let Some(users) = self.users.get(server) else {
            let message = format!(
                "unknown user \"{id}\" in {context}: there is no server \"{server}\"; servers are {}",
                abbreviate(&self.servers)
            );
            return Err(Problem::at(span.clone(), message));
        };
        if users.iter().any(|u| u == id) {
            return Ok(id.to_string());
        }
        let message = format!("unknown user \"{id}\" in {context}; {server} has users {}", abbreviate(users));
        Err(Problem::at(span.clone(), message))
    }

    /// A user ID, or a server / group / `"*"` standing for all their users.
    pub fn users_of(&self, name: &str, span: &Range<usize>, context: &str) -> Res<Vec<String>> {
        if name.starts_with('@') {
            return Ok(vec![self.user(name, span, context)?]);
        }
        let servers = self.servers_of(name, span, context).map_err(|_| {
            let message =
                format!("{}; or give a user ID like \"@u0:hs1\"", self.unknown_server_or_group(name, context));
            Problem::at(span.clone(), message)
        })?;
        Ok(servers.iter().flat_map(|s| self.users[s].iter().cloned()).collect())
    }

    /// Every name of the list expanded to user IDs; duplicates dropped, first occurrence kept.
    pub fn users_of_list(&self, list: &NameList, whole: &Range<usize>, context: &str) -> Res<Vec<String>> {
        let mut users = Vec::new();
        for (name, span) in list.spanned(whole) {
            users.extend(self.users_of(&name, &span, context)?);
        }
        Ok(dedup(users))
    }

    fn unknown_server_or_group(&self, name: &str, context: &str) -> String {
        let servers = abbreviate(&self.servers);
        if self.is_identity_server(name) {
            return format!(
                "\"{name}\" in {context} is an identity server, but homeservers are needed here; servers are {servers}"
            );
        }
        if self.groups.is_empty() {
            return format!("unknown server \"{name}\" in {context}; servers are {servers}");
        }
        let groups: Vec<String> = self.groups.keys().cloned().collect();
        format!(
            "unknown server or group \"{name}\" in {context}; servers are {servers}; groups are {}",
            abbreviate(&groups)
        )
    }
}

/// Drops repeated names, keeping the first occurrence (so order stays the file's).
pub(crate) fn dedup(names: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    names.into_iter().filter(|n| seen.insert(n.clone())).collect()
}

/// A short description of a list of names: numbered runs become `hs1..hs4`, long lists are cut.
pub(crate) fn abbreviate(names: &[String]) -> String {
    const SHOWN: usize = 8;
    if names.is_empty() {
        return "(none)".to_string();
    }
    let runs = runs(names);
    let shown: Vec<String> = runs.iter().take(SHOWN).map(|r| r.describe()).collect();
    let mut text = shown.join(", ");
    if runs.len() > SHOWN {
        text.push_str(&format!(" and {} more", runs.len() - SHOWN));
    }
    text
}

/// Consecutive names `<prefix><n><suffix>`, `<prefix><n+1><suffix>`, ...
struct Run<'a> {
    first: &'a str,
    last: &'a str,
    len: usize,
}

impl Run<'_> {
    fn describe(&self) -> String {
        match self.len {
            1 => self.first.to_string(),
            2 => format!("{}, {}", self.first, self.last),
            _ => format!("{}..{}", self.first, self.last),
        }
    }
}

fn runs(names: &[String]) -> Vec<Run<'_>> {
    let mut runs: Vec<Run> = Vec::new();
    let mut previous: Option<(&str, u64, &str)> = None;
    for name in names {
        let parts = numbered(name);
        let continues = match (previous, parts) {
            (Some((p, n, s)), Some((p2, n2, s2))) => p == p2 && s == s2 && n.checked_add(1) == Some(n2),
            _ => false,
        };
        match runs.last_mut() {
            Some(run) if continues => {
                run.last = name;
                run.len += 1;
            }
            _ => runs.push(Run { first: name, last: name, len: 1 }),
        }
        previous = parts;
    }
    runs
}

/// Splits `name` at its first run of digits: "@u12:hs1" -> ("@u", 12, ":hs1").
fn numbered(name: &str) -> Option<(&str, u64, &str)> {
    let start = name.find(|c: char| c.is_ascii_digit())?;
    let len = name[start..].find(|c: char| !c.is_ascii_digit()).unwrap_or(name.len() - start);
    let digits = &name[start..start + len];
    // "hs01" does not follow "hs00" in a way `hs00..hs01` would describe unambiguously.
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    Some((&name[..start], digits.parse().ok()?, &name[start + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn abbreviates_numbered_runs() {
        assert_eq!(abbreviate(&names(&["hs1", "hs2", "hs3", "hs4"])), "hs1..hs4");
        assert_eq!(abbreviate(&names(&["hs1", "hs2", "eu1", "eu2", "eu3"])), "hs1, hs2, eu1..eu3");
        assert_eq!(abbreviate(&names(&["@u0:hs1", "@u1:hs1", "@u2:hs1"])), "@u0:hs1..@u2:hs1");
        assert_eq!(abbreviate(&names(&["alpha", "beta"])), "alpha, beta");
        let many: Vec<String> = (0..12).map(|i| format!("s{}", i * 2)).collect();
        assert_eq!(abbreviate(&many), "s0, s2, s4, s6, s8, s10, s12, s14 and 4 more");
    }
}
