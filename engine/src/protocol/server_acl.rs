//! Server ACL matching (Server-Server API, "Server Access Control Lists"): which servers an
//! `m.room.server_acl` content denies. Enforcement is the server's (`sim::server::acl`); the
//! participation measures read the same rule.

use serde_json::Value;

/// Whether the ACL content `content` denies `server` (spec: an IP literal is denied unless
/// `allow_ip_literals`, then `deny` globs, then `allow` globs; no match in `allow` denies).
pub fn denies(content: &Value, server: &str) -> bool {
    let host =
        server.rsplit_once(':').filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit())).map_or(server, |(h, _)| h);
    let list = |field: &str| -> Vec<&str> {
        content
            .get(field)
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |a| a.iter().filter_map(Value::as_str).collect())
    };
    let ip_literal =
        host.starts_with('[') || (host.split('.').count() == 4 && host.split('.').all(|p| p.parse::<u8>().is_ok()));
    if ip_literal && content.get("allow_ip_literals").and_then(Value::as_bool) == Some(false) {
        return true;
    }
    if list("deny").iter().any(|g| glob(g, host)) {
        return true;
    }
    !list("allow").iter().any(|g| glob(g, host))
}

/// `*` matches any run of characters, `?` exactly one (the spec's server ACL globs).
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Iterative matching with one backtrack point (the last `*`).
    let (mut i, mut j, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    while i < p.len() && p[i] == '*' {
        i += 1;
    }
    i == p.len()
}

#[cfg(test)]
mod tests {
    use super::{denies, glob};
    use serde_json::json;

    #[test]
    fn globs_match_as_the_spec_says() {
        assert!(glob("*", "hs1"));
        assert!(glob("*.evil.com", "a.evil.com"));
        assert!(!glob("*.evil.com", "evil.com"));
        assert!(glob("hs?", "hs2"));
        assert!(!glob("hs?", "hs10"));
        assert!(glob("h*s*1", "hxxsyy1"));
    }

    #[test]
    fn deny_wins_over_allow_and_no_allow_denies() {
        let acl = json!({"allow": ["*"], "deny": ["hs2"], "allow_ip_literals": false});
        assert!(denies(&acl, "hs2"));
        assert!(denies(&acl, "hs2:8448"), "ports are ignored");
        assert!(!denies(&acl, "hs3"));
        assert!(denies(&acl, "1.2.3.4"), "IP literals denied");
        assert!(denies(&json!({"deny": []}), "hs1"), "an empty allow list denies everyone");
    }
}
