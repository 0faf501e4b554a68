//! The scenario as a TOML table (`docs/scenarios.md`): the names it declares, dropping whatever
//! names something no longer declared, and rendering the table back to a scenario file.
//!
//! The shrinker edits this table, never the resolved `Scenario`, so every candidate is a
//! scenario file the parser validates like any other.

use std::collections::{BTreeMap, BTreeSet};
use toml::{Table, Value};

/// Users a server has when neither its entry nor `[defaults]` says (`docs/scenarios.md`).
pub const DEFAULT_USERS: i64 = 2;

/// One `[[servers]]` entry: a single server or a template, with its servers' names.
pub struct ServerEntry {
    pub names: Vec<String>,
    /// The entry's own `users`, if it sets one.
    pub own_users: Option<i64>,
    /// Users of each of its servers (its own `users`, else `[defaults]`, else 2).
    pub users: i64,
}

impl ServerEntry {
    /// `hs4` or `hs1..hs3`.
    pub fn label(&self) -> String {
        match self.names.as_slice() {
            [] => "(no server)".to_string(),
            [one] => one.clone(),
            [first, .., last] => format!("{first}..{last}"),
        }
    }
}

/// `[defaults] users`, or 2.
pub fn default_users(t: &Table) -> i64 {
    t.get("defaults").and_then(|d| d.get("users")).and_then(Value::as_integer).unwrap_or(DEFAULT_USERS)
}

/// The `[[servers]]` entries in file order, templates expanded.
pub fn server_entries(t: &Table) -> Vec<ServerEntry> {
    let default = default_users(t);
    tables(t, "servers")
        .map(|e| {
            let names = if let Some(name) = e.get("name").and_then(Value::as_str) {
                vec![name.to_string()]
            } else {
                let prefix = e.get("prefix").and_then(Value::as_str).unwrap_or("");
                let start = e.get("start").and_then(Value::as_integer).unwrap_or(1).max(0);
                // The parser caps a template at 100 000 servers; so does this.
                let count = e.get("count").and_then(Value::as_integer).unwrap_or(0).clamp(0, 100_000);
                (start..start + count).map(|n| format!("{prefix}{n}")).collect()
            };
            let own_users = e.get("users").and_then(Value::as_integer);
            ServerEntry { names, own_users, users: own_users.unwrap_or(default) }
        })
        .collect()
}

/// The tables of the array `key` of `t` (none when it is absent or not an array).
pub fn tables<'t>(t: &'t Table, key: &str) -> impl Iterator<Item = &'t Table> {
    t.get(key).and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_table)
}

/// The strings of a selector value: one string, or a list of them.
pub fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// What a scenario table declares, for deciding which references still name something.
pub struct Names {
    /// Servers in file order with their user counts.
    pub servers: Vec<(String, i64)>,
    users: BTreeMap<String, i64>,
    /// Groups with their member servers, in the file's order.
    pub groups: BTreeMap<String, Vec<String>>,
    pub rooms: BTreeSet<String>,
    /// Key notaries and identity servers: nodes that are not homeservers.
    pub other_nodes: BTreeSet<String>,
    pub notaries: Vec<String>,
    pub identity_servers: Vec<String>,
}

impl Names {
    pub fn of(t: &Table) -> Names {
        let servers: Vec<(String, i64)> =
            server_entries(t).into_iter().flat_map(|e| e.names.into_iter().map(move |n| (n, e.users))).collect();
        let groups = t
            .get("groups")
            .and_then(Value::as_table)
            .map(|g| g.iter().map(|(k, v)| (k.clone(), strings(Some(v)))).collect())
            .unwrap_or_default();
        let rooms =
            tables(t, "rooms").filter_map(|r| r.get("name").and_then(Value::as_str)).map(str::to_string).collect();
        let notaries = strings(t.get("keys").and_then(|k| k.get("notaries")));
        let identity_servers: Vec<String> = tables(t, "identity_servers")
            .filter_map(|s| s.get("name").and_then(Value::as_str))
            .map(String::from)
            .collect();
        let other_nodes = notaries.iter().chain(&identity_servers).cloned().collect();
        Names {
            users: servers.iter().cloned().collect(),
            servers,
            groups,
            rooms,
            other_nodes,
            notaries,
            identity_servers,
        }
    }

    pub fn is_server(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    /// Whether a user ID still exists: its server does, and a `@u<k>` user is among its users.
    /// Other local parts (a moved account's `@u0.hs2:hs3`) count as existing with their server.
    pub fn user_alive(&self, id: &str) -> bool {
        let Some((local, server)) = id.strip_prefix('@').and_then(|r| r.split_once(':')) else { return false };
        let Some(&count) = self.users.get(server) else { return false };
        match local.strip_prefix('u').and_then(|k| k.parse::<i64>().ok()) {
            Some(k) => k < count,
            None => true,
        }
    }

    /// Whether a server or user selector (server, group, `"*"` or user ID) names something.
    pub fn selector_alive(&self, s: &str) -> bool {
        s == "*" || self.is_server(s) || self.groups.contains_key(s) || (s.starts_with('@') && self.user_alive(s))
    }

    /// A selector, a key notary or an identity server (what partitions and crashes name).
    pub fn node_alive(&self, s: &str) -> bool {
        self.selector_alive(s) || self.other_nodes.contains(s)
    }

    /// Every user ID, server by server.
    pub fn all_users(&self) -> Vec<String> {
        self.servers.iter().flat_map(|(s, n)| (0..*n).map(move |k| format!("@u{k}:{s}"))).collect()
    }

    /// User selectors expanded to user IDs, in order, duplicates dropped (as the parser does).
    pub fn expand_users(&self, selectors: &[String]) -> Vec<String> {
        let users_of = |server: &str| -> Vec<String> {
            let n = self.users.get(server).copied().unwrap_or(0);
            (0..n).map(|k| format!("@u{k}:{server}")).collect()
        };
        let mut out: Vec<String> = Vec::new();
        for s in selectors {
            let more = if s == "*" {
                self.all_users()
            } else if s.starts_with('@') {
                vec![s.clone()]
            } else if let Some(members) = self.groups.get(s) {
                members.iter().flat_map(|m| users_of(m)).collect()
            } else {
                users_of(s)
            };
            for u in more {
                if !out.contains(&u) {
                    out.push(u);
                }
            }
        }
        out
    }
}

/// Timeline actions that need an identity server.
const IDENTITY_ACTIONS: &[&str] = &["invite_email", "bind", "set_identity_server"];

/// What filtering a selector did.
#[derive(PartialEq, Eq, Clone, Copy)]
enum Filtered {
    Unchanged,
    Changed,
    /// Something was removed and nothing is left.
    Emptied,
}

/// Keeps the names of a selector value (a string or a list of strings) that `alive` accepts.
fn filter_value(v: &mut Value, alive: &dyn Fn(&str) -> bool) -> Filtered {
    match v {
        Value::String(s) if !alive(s) => Filtered::Emptied,
        Value::Array(items) => {
            let before = items.len();
            items.retain(|x| x.as_str().is_none_or(alive));
            match (items.len() == before, items.is_empty()) {
                (true, _) => Filtered::Unchanged,
                (false, true) => Filtered::Emptied,
                (false, false) => Filtered::Changed,
            }
        }
        _ => Filtered::Unchanged,
    }
}

/// Drops, to a fixpoint, every reference to a server, user, group, room or node the table no
/// longer declares: list entries that name them, and the entries (rooms, actions, faults,
/// workloads, links, …) that cannot stand without them. What this misses the parser refuses,
/// and the candidate is discarded.
pub fn prune(t: &mut Table) {
    for _ in 0..16 {
        let names = Names::of(t);
        let mut p = Pruner { names: &names, changed: false };
        p.prune(t);
        if !p.changed {
            return;
        }
    }
}

struct Pruner<'a> {
    names: &'a Names,
    changed: bool,
}

impl Pruner<'_> {
    /// Filters the selector under `key`: returns false when it named something and now names
    /// nothing (the caller drops the entry, or the key when `drop_key_when_empty`).
    fn filter(&mut self, t: &mut Table, key: &str, alive: &dyn Fn(&str) -> bool, drop_key_when_empty: bool) -> bool {
        let Some(v) = t.get_mut(key) else { return true };
        match filter_value(v, alive) {
            Filtered::Unchanged => true,
            Filtered::Changed => {
                self.changed = true;
                true
            }
            Filtered::Emptied => {
                self.changed = true;
                if drop_key_when_empty {
                    t.remove(key);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Whether the single name under `key` (if any) is alive.
    fn single(&self, t: &Table, key: &str, alive: &dyn Fn(&str) -> bool) -> bool {
        t.get(key).and_then(Value::as_str).is_none_or(alive)
    }

    /// Keeps the tables of the array `key` for which `keep` returns true (it may edit them).
    fn retain(&mut self, t: &mut Table, key: &str, mut keep: impl FnMut(&mut Self, &mut Table) -> bool) {
        let Some(Value::Array(items)) = t.get_mut(key) else { return };
        let before = items.len();
        items.retain_mut(|item| match item {
            Value::Table(e) => keep(self, e),
            _ => true,
        });
        if items.len() != before {
            self.changed = true;
            if items.is_empty() {
                t.remove(key);
            }
        }
    }

    fn prune(&mut self, t: &mut Table) {
        let n = self.names;
        let server = |s: &str| n.is_server(s);
        let selector = |s: &str| n.selector_alive(s);
        let node = |s: &str| n.node_alive(s);
        let user = |s: &str| n.user_alive(s);
        let room = |s: &str| n.rooms.contains(s);
        let notary = |s: &str| n.notaries.iter().any(|x| x == s);
        let identity_server = |s: &str| n.identity_servers.iter().any(|x| x == s);
        // Account data and `set_identity_server` name an identity server or one of these.
        let identity_choice = |s: &str| identity_server(s) || ["absent", "disabled", "none", "default"].contains(&s);

        if let Some(Value::Table(groups)) = t.get_mut("groups") {
            let before = groups.len();
            let mut changed = false;
            groups.retain(|_, v| match filter_value(v, &server) {
                Filtered::Unchanged => true,
                Filtered::Changed => {
                    changed = true;
                    true
                }
                Filtered::Emptied => false,
            });
            self.changed |= changed || groups.len() != before;
            if groups.is_empty() {
                t.remove("groups");
            }
        }
        if let Some(Value::Table(d)) = t.get_mut("defaults") {
            self.filter(d, "trusted_key_servers", &notary, false);
        }
        self.retain(t, "servers", |p, s| {
            p.filter(s, "withhold_from", &selector, true);
            p.filter(s, "trusted_key_servers", &notary, false);
            true
        });
        self.retain(t, "rooms", |p, r| {
            if !p.single(r, "creator", &user) {
                return false;
            }
            p.filter(r, "members", &selector, true);
            p.filter(r, "additional_creators", &user, true);
            p.filter(r, "allow", &room, true);
            if let Some(Value::Table(levels)) = r.get_mut("power_levels") {
                if let Some(Value::Table(users)) = levels.get_mut("users") {
                    let before = users.len();
                    users.retain(|id, _| user(id));
                    if users.len() != before {
                        p.changed = true;
                    }
                    if users.is_empty() {
                        levels.remove("users");
                    }
                }
                if levels.is_empty() {
                    r.remove("power_levels");
                }
            }
            true
        });
        if let Some(Value::Table(net)) = t.get_mut("network") {
            self.retain(net, "links", |p, l| {
                p.filter(l, "from", &selector, false) && p.filter(l, "to", &selector, false)
            });
            self.retain(net, "middleboxes", |p, m| p.single(m, "server", &node));
        }
        self.retain(t, "faults", |p, f| match f.get("kind").and_then(Value::as_str) {
            Some("partition") => {
                let Some(Value::Array(sides)) = f.get_mut("groups") else { return true };
                let before = sides.len();
                let mut changed = false;
                sides.retain_mut(|side| match filter_value(side, &node) {
                    Filtered::Unchanged => true,
                    Filtered::Changed => {
                        changed = true;
                        true
                    }
                    Filtered::Emptied => false,
                });
                p.changed |= changed || sides.len() != before;
                !sides.is_empty()
            }
            Some("degrade") => p.filter(f, "from", &selector, false) && p.filter(f, "to", &selector, false),
            Some("erase_account" | "reregister_account") => p.single(f, "user", &user),
            _ => p.single(f, "server", &node),
        });
        let no_identity = n.identity_servers.is_empty();
        self.retain(t, "timeline", |p, a| {
            if !(p.single(a, "room", &room) && p.single(a, "user", &user) && p.single(a, "target", &user)) {
                return false;
            }
            let action = a.get("action").and_then(Value::as_str).unwrap_or("");
            if no_identity && IDENTITY_ACTIONS.contains(&action) || !p.single(a, "identity_server", &identity_choice) {
                return false;
            }
            p.filter(a, "via", &selector, true);
            p.single(a, "server", &node)
        });
        self.retain(t, "workload", |p, w| p.single(w, "room", &room) && p.filter(w, "users", &selector, false));
        if let Some(Value::Table(part)) = t.get_mut("participation") {
            if !self.single(part, "acceptor", &user) {
                part.remove("acceptor");
                self.changed = true;
            }
        }
        self.retain(t, "identity_servers", |p, s| {
            p.retain(s, "bindings", |p, b| p.single(b, "user", &user));
            p.filter(s, "trusted_pushers", &identity_server, false);
            p.filter(s, "push_to", &identity_server, false);
            true
        });
        if no_identity && t.remove("identity").is_some() {
            // `[identity]` is refused without identity servers.
            self.changed = true;
        }
        if let Some(Value::Table(identity)) = t.get_mut("identity") {
            if !self.single(identity, "default_server", &identity_server) {
                identity.remove("default_server");
                self.changed = true;
            }
            self.retain(identity, "accounts", |p, a| {
                if !p.single(a, "account_data", &identity_choice) {
                    a.remove("account_data");
                    p.changed = true;
                }
                p.single(a, "user", &user)
            });
        }
    }
}

/// Removes empty tables (an emptied `[keys]`, `power_levels = {}`), except `[scenario]`.
pub fn drop_empty_tables(t: &mut Table) {
    fn walk(v: &mut Value) {
        match v {
            Value::Table(t) => {
                t.iter_mut().for_each(|(_, v)| walk(v));
                t.retain(|_, v| !matches!(v, Value::Table(x) if x.is_empty()));
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    t.iter_mut().for_each(|(_, v)| walk(v));
    t.retain(|k, v| k == "scenario" || !matches!(v, Value::Table(x) if x.is_empty()));
}

/// Sections in the order `docs/scenarios.md` describes them; others follow by name.
const SECTIONS: &[&str] = &[
    "scenario",
    "defaults",
    "keys",
    "servers",
    "groups",
    "rooms",
    "network",
    "faults",
    "timeline",
    "workload",
    "join",
    "participation",
    "account_query",
    "identity_servers",
    "identity",
    "metrics",
    "sweep",
];

/// Keys shown first in a table, in this order; the others follow by name.
const FIRST_KEYS: &[&str] = &["name", "prefix", "version", "creator", "at", "kind", "action", "room", "user"];

fn rank(order: &[&str], key: &str) -> usize {
    order.iter().position(|k| *k == key).unwrap_or(order.len())
}

fn ordered<'t>(t: &'t Table, order: &[&str]) -> Vec<(&'t String, &'t Value)> {
    let mut entries: Vec<(&String, &Value)> = t.iter().collect();
    entries.sort_by(|a, b| (rank(order, a.0), a.0).cmp(&(rank(order, b.0), b.0)));
    entries
}

fn is_array_of_tables(v: &Value) -> bool {
    matches!(v, Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_table))
}

fn render_key(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

/// A value on one line: arrays as `[a, b]`, tables inline as `{ k = v }`.
fn render_value(v: &Value) -> String {
    match v {
        Value::Array(items) => format!("[{}]", items.iter().map(render_value).collect::<Vec<_>>().join(", ")),
        Value::Table(t) => {
            if t.is_empty() {
                return "{}".to_string();
            }
            let entries: Vec<String> = ordered(t, FIRST_KEYS)
                .into_iter()
                .map(|(k, v)| format!("{} = {}", render_key(k), render_value(v)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
        other => other.to_string(),
    }
}

/// A `[path]` or `[[path]]` section: its plain keys, then its arrays of tables as
/// `[[path.key]]` sections.
fn render_section(out: &mut String, path: &str, t: &Table, array: bool) {
    let (open, close) = if array { ("[[", "]]") } else { ("[", "]") };
    out.push_str(&format!("\n{open}{path}{close}\n"));
    let entries = ordered(t, FIRST_KEYS);
    for (k, v) in &entries {
        if !is_array_of_tables(v) {
            out.push_str(&format!("{} = {}\n", render_key(k), render_value(v)));
        }
    }
    for (k, v) in &entries {
        if is_array_of_tables(v) {
            for item in v.as_array().into_iter().flatten().filter_map(Value::as_table) {
                render_section(out, &format!("{path}.{}", render_key(k)), item, true);
            }
        }
    }
}

/// The table as a scenario file: sections in the documented order, nested tables inline.
pub fn render(t: &Table) -> String {
    let mut out = String::new();
    let entries = ordered(t, SECTIONS);
    for (k, v) in &entries {
        if !v.is_table() && !is_array_of_tables(v) {
            out.push_str(&format!("{} = {}\n", render_key(k), render_value(v)));
        }
    }
    for (k, v) in &entries {
        match v {
            Value::Table(section) => render_section(&mut out, &render_key(k), section, false),
            v if is_array_of_tables(v) => {
                for item in v.as_array().into_iter().flatten().filter_map(Value::as_table) {
                    render_section(&mut out, &render_key(k), item, true);
                }
            }
            _ => {}
        }
    }
    out.trim_start().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomsim_engine::scenario::parse_scenario;

    fn table(text: &str) -> Table {
        toml::from_str(text).unwrap()
    }

    /// The resolved scenario without its source text and sweep (which a shrink drops: its grid
    /// keeps the file's key order), for comparing two files' meaning.
    fn meaning(file: &str, text: &str) -> serde_json::Value {
        let sc = parse_scenario(file, text, &[]).unwrap_or_else(|e| panic!("{file}: {e}\n{text}"));
        let mut v = serde_json::to_value(&sc).unwrap();
        v.as_object_mut().unwrap().remove("source");
        v.as_object_mut().unwrap().remove("sweep");
        v
    }

    #[test]
    fn every_bundled_scenario_renders_to_the_same_scenario() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for path in names.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
            let file = path.file_name().unwrap().to_str().unwrap();
            let text = std::fs::read_to_string(path).unwrap();
            let rendered = render(&table(&text));
            assert_eq!(meaning(file, &text), meaning(file, &rendered), "{file}:\n{rendered}");
            let mut pruned = table(&text);
            prune(&mut pruned);
            assert_eq!(pruned, table(&text), "{file}: nothing to prune in a valid scenario");
        }
    }

    const SMALL: &str = r#"
[scenario]
name = "t"
end = "1m"

[[servers]]
prefix = "hs"
count = 3

[[servers]]
name = "hs4"
users = 3

[groups]
a = ["hs1", "hs4"]
b = ["hs4"]

[[rooms]]
name = "main"
version = "12"
creator = "@u0:hs1"
members = ["b", "@u1:hs2", "hs3"]
power_levels = { users = { "@u2:hs4" = 50 } }

[[faults]]
at = "5s"
kind = "partition"
groups = [["a"], ["hs2"]]

[[faults]]
at = "6s"
kind = "crash"
server = "hs4"

[[timeline]]
at = "10s"
action = "kick"
room = "main"
user = "@u0:hs1"
target = "@u2:hs4"

[[workload]]
room = "main"
users = ["b"]
"#;

    #[test]
    fn names_and_expansion() {
        let t = table(SMALL);
        let n = Names::of(&t);
        assert_eq!(n.servers.len(), 4);
        assert!(n.user_alive("@u2:hs4") && !n.user_alive("@u3:hs4") && !n.user_alive("@u0:hs9"));
        assert!(n.user_alive("@u0.hs2:hs3"), "other local parts live with their server");
        assert_eq!(
            n.expand_users(&["b".into(), "@u0:hs4".into(), "hs1".into()]),
            ["@u0:hs4", "@u1:hs4", "@u2:hs4", "@u0:hs1", "@u1:hs1"]
        );
        assert_eq!(n.expand_users(&["*".into()]).len(), 9);
    }

    #[test]
    fn prune_drops_what_names_a_removed_server() {
        let mut t = table(SMALL);
        // hs4 gone: group b empties (and its uses go), a keeps hs1, the crash and the kick go.
        t["servers"].as_array_mut().unwrap().pop();
        prune(&mut t);
        let groups = t["groups"].as_table().unwrap();
        assert_eq!(groups.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(strings(Some(&t["groups"]["a"])), ["hs1"]);
        let room = &t["rooms"][0];
        assert_eq!(strings(room.get("members")), ["@u1:hs2", "hs3"]);
        assert!(room.get("power_levels").is_none());
        let faults: Vec<&str> = tables(&t, "faults").map(|f| f["kind"].as_str().unwrap()).collect();
        assert_eq!(faults, ["partition"]);
        assert!(t.get("timeline").is_none());
        assert!(t.get("workload").is_none(), "its only selector named a removed group");
        // The creator's server gone: the room goes, and with it what happens in it.
        let mut t = table(SMALL);
        let first = t["servers"][0].as_table_mut().unwrap();
        first.insert("start".into(), Value::Integer(2));
        first.insert("count".into(), Value::Integer(2));
        prune(&mut t);
        assert!(t.get("rooms").is_none() && t.get("timeline").is_none() && t.get("workload").is_none());
    }

    #[test]
    fn renders_sections_in_order_with_inline_tables() {
        let text = render(&table(SMALL));
        assert!(text.starts_with("[scenario]\nname = \"t\"\n"), "{text}");
        assert!(text.contains("power_levels = { users = { \"@u2:hs4\" = 50 } }"), "{text}");
        assert!(text.find("[[servers]]").unwrap() < text.find("[groups]").unwrap());
        let links = "[network]\nloss = 0.1\n\n[[network.links]]\nfrom = \"a\"\n";
        assert!(render(&table(links)).contains(links), "{}", render(&table(links)));
        // Strings and keys that need quoting or escapes come back as they were.
        let odd = table("[[timeline]]\ntext = \"a\\nb \\\"c\\\" 'd' \\\\ é\"\nx = { \"k.y\" = [1, 'two'], z = 1.5 }\n");
        assert_eq!(table(&render(&odd)), odd, "{}", render(&odd));
        let mut t = table("[scenario]\nname = \"t\"\n[keys]\n[rooms.x]\n");
        drop_empty_tables(&mut t);
        assert_eq!(render(&t), "[scenario]\nname = \"t\"\n");
    }
}
