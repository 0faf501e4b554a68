//! `[[identity_servers]]`, `[identity]`, the identity actions and faults: every key resolved
//! to its model value, and each refusal located at the value (line and column) with its reason.

use super::super::*;
use super::mutate;

use crate::protocol::identity::Medium;

/// Every identity key, each with a value other than its default where it has one.
const IDENTITY: &str = r#"[scenario]
name = "identity"
end = "10m"

[[servers]]
name = "hs1"

[[servers]]
name = "hs2"

[[rooms]]
name = "main"
version = "11"
creator = "@u0:hs1"

[[identity_servers]]
name = "id.example"
pepper = "pepper-a"
alt_peppers = 2
accept_pushes = "trusted"
trusted_pushers = ["id.other"]
push_to = ["id.other"]
rogue = false
bindings = [
    { address = "Carol@Example.org", user = "@u0:hs2" },
    { address = "+447700900123", user = "@u1:hs2", medium = "msisdn" },
]

[[identity_servers]]
name = "id.other"
accept_pushes = "anyone"
rogue = true

[identity]
default_server = "id.example"
key_validity_check = "every_server"
max_redirects = 3
pepper_retries = 2
sync_delay = "250ms"
auto_join = true
auto_join_delay = "2s"

[[identity.accounts]]
user = "@u0:hs1"
account_data = "id.other"
clients = ["phone", "laptop"]

[[identity.accounts]]
user = "@u1:hs1"
account_data = "disabled"

[[faults]]
at = "1m"
kind = "rotate_pepper"
server = "id.example"
pepper = "pepper-b"

[[faults]]
at = "2m"
kind = "revoke_identity_key"
server = "id.other"

[[faults]]
at = "3m"
kind = "crash"
server = "id.example"
duration = "10s"

[[faults]]
at = "4m"
kind = "partition"
groups = [["id.example", "hs1"]]
duration = "10s"

[[faults]]
at = "5m"
kind = "rotate_pepper"
server = "id.other"

[[timeline]]
at = "10s"
action = "bind"
user = "@u1:hs1"
address = "Bob@Example.ORG"
server = "id.example"

[[timeline]]
at = "11s"
action = "bind"
user = "@u0:hs2"
address = "dave@example.org"

[[timeline]]
at = "20s"
action = "set_identity_server"
user = "@u0:hs1"
client = "laptop"
identity_server = "id.example"

[[timeline]]
at = "21s"
action = "set_identity_server"
user = "@u1:hs1"
identity_server = "none"

[[timeline]]
at = "22s"
action = "set_identity_server"
user = "@u0:hs2"
identity_server = "default"

[[timeline]]
at = "30s"
action = "invite_email"
room = "main"
user = "@u0:hs1"
client = "phone"
address = "Carol@example.org"
count = 2
every = "5s"
"#;

const MINIMAL: &str =
    "[scenario]\nname = \"m\"\nend = \"1m\"\n[[servers]]\nname = \"hs1\"\n[[servers]]\nname = \"hs2\"\n";

fn parse(text: &str) -> Scenario {
    parse_scenario("identity.toml", text, &[]).unwrap_or_else(|e| panic!("{e}"))
}

/// `text` with `from` (which must occur) replaced by `to`, once.
fn edit(from: &str, to: &str) -> String {
    assert!(IDENTITY.contains(from), "the scenario has no {from:?}");
    IDENTITY.replacen(from, to, 1)
}

/// `text` is refused at the first occurrence of `place` (after the first `after`, when
/// given), with a message containing each of `says`.
#[track_caller]
fn refused(text: &str, after: Option<&str>, place: &str, says: &[&str]) {
    let error = parse_scenario("identity.toml", text, &[]).expect_err("the scenario must be refused");
    let from = after.map_or(0, |a| text.find(a).unwrap_or_else(|| panic!("{a:?} is not in the text")));
    let at = from + text[from..].find(place).unwrap_or_else(|| panic!("{place:?} is not in the text"));
    let line = text[..at].matches('\n').count() + 1;
    let column = text[..at].rsplit('\n').next().unwrap().chars().count() + 1;
    assert_eq!(error.line_column(), Some((line, column)), "{error}");
    let shown = error.to_string();
    assert!(shown.starts_with(&format!("identity.toml:{line}:{column}: ")), "{shown}");
    for fragment in says {
        assert!(error.message().contains(fragment), "{fragment:?} not in: {shown}");
    }
}

#[test]
fn every_identity_key_resolves() {
    let s = parse(IDENTITY);
    assert_eq!(
        s.identity_servers,
        [
            IdentityServerSpec {
                name: "id.example".into(),
                pepper: "pepper-a".into(),
                alt_peppers: 2,
                trusted_pushers: Some(vec!["id.other".into()]),
                bindings: vec![
                    BindingSpec { medium: Medium::Email, address: "carol@example.org".into(), user: "@u0:hs2".into() },
                    BindingSpec { medium: Medium::Msisdn, address: "447700900123".into(), user: "@u1:hs2".into() },
                ],
                push_to: vec!["id.other".into()],
                rogue: false,
                sign_with: crate::scenario::SignWith::LongTerm,
                ephemeral_lifetime_us: None,
            },
            IdentityServerSpec {
                name: "id.other".into(),
                pepper: "id.other/pepper-0".into(),
                alt_peppers: 0,
                trusted_pushers: None,
                bindings: Vec::new(),
                push_to: Vec::new(),
                rogue: true,
                sign_with: crate::scenario::SignWith::LongTerm,
                ephemeral_lifetime_us: None,
            },
        ]
    );
    assert_eq!(
        s.identity,
        IdentitySpec {
            default_server: Some("id.example".into()),
            key_validity_check: KeyValidityCheck::EveryServer,
            max_redirects: 3,
            pepper_retries: 2,
            sync_delay_us: 250_000,
            auto_join_delay_us: Some(2_000_000),
            accounts: vec![
                IdentityAccountSpec {
                    user: "@u0:hs1".into(),
                    account_data: AccountDataSpec::Server("id.other".into()),
                    clients: vec!["phone".into(), "laptop".into()],
                },
                IdentityAccountSpec {
                    user: "@u1:hs1".into(),
                    account_data: AccountDataSpec::Disabled,
                    clients: Vec::new()
                },
            ],
        }
    );
    assert_eq!(s.identity.clients_of("@u0:hs1"), ["phone", "laptop"]);
    assert_eq!(s.identity.clients_of("@u0:hs2"), ["default"]);

    let kinds: Vec<&FaultKind> = s.faults.iter().map(|f| &f.kind).collect();
    assert_eq!(
        kinds,
        [
            &FaultKind::RotatePepper { server: "id.example".into(), pepper: Some("pepper-b".into()) },
            &FaultKind::RevokeIdentityKey { server: "id.other".into() },
            &FaultKind::Crash { server: "id.example".into() },
            // The nodes not listed (servers, then identity servers) form the last side.
            &FaultKind::Partition {
                sides: vec![vec!["id.example".into(), "hs1".into()], vec!["hs2".into(), "id.other".into()]]
            },
            &FaultKind::RotatePepper { server: "id.other".into(), pepper: None },
        ]
    );
    assert_eq!(s.faults[2].duration_us, Some(10_000_000));
    assert_eq!(s.faults[0].duration_us, None);
}

#[test]
fn identity_actions_resolve() {
    let s = parse(IDENTITY);
    let identity: Vec<&ActionSpec> = s
        .timeline
        .iter()
        .filter(|a| matches!(a.action, ActionKind::InviteEmail | ActionKind::Bind | ActionKind::SetIdentityServer))
        .collect();
    let summary: Vec<_> = identity
        .iter()
        .map(|a| {
            (
                a.at_us,
                a.action,
                a.room.as_str(),
                a.user.as_str(),
                a.address.as_deref(),
                a.client.as_deref(),
                a.server.as_deref(),
                a.account_data.clone(),
            )
        })
        .collect();
    use ActionKind::*;
    let none = None::<&str>;
    assert_eq!(
        summary,
        [
            (10_000_000, Bind, "", "@u1:hs1", Some("bob@example.org"), none, Some("id.example"), None),
            (11_000_000, Bind, "", "@u0:hs2", Some("dave@example.org"), none, none, None),
            (
                20_000_000,
                SetIdentityServer,
                "",
                "@u0:hs1",
                none,
                Some("laptop"),
                none,
                Some(AccountDataSpec::Server("id.example".into()))
            ),
            (21_000_000, SetIdentityServer, "", "@u1:hs1", none, none, none, Some(AccountDataSpec::Disabled)),
            (22_000_000, SetIdentityServer, "", "@u0:hs2", none, none, none, Some(AccountDataSpec::Absent)),
            // `count = 2, every = "5s"` repeats the invite.
            (30_000_000, InviteEmail, "main", "@u0:hs1", Some("carol@example.org"), Some("phone"), none, None),
            (35_000_000, InviteEmail, "main", "@u0:hs1", Some("carol@example.org"), Some("phone"), none, None),
        ]
    );
    assert!(identity.iter().all(|a| a.target.is_none() && a.text.is_none() && a.via.is_empty()));
    // Other actions have no identity values.
    let create = s.timeline.iter().find(|a| a.action == CreateRoom).unwrap();
    assert_eq!((&create.address, &create.client, &create.account_data), (&None, &None, &None));
}

#[test]
fn defaults_without_identity_tables() {
    let s = parse(MINIMAL);
    assert!(s.identity_servers.is_empty());
    assert_eq!(s.identity, IdentitySpec::default());
    let text = format!("{MINIMAL}[[identity_servers]]\nname = \"id.example\"\n");
    let s = parse(&text);
    assert_eq!(
        s.identity_servers,
        [IdentityServerSpec {
            name: "id.example".into(),
            pepper: "id.example/pepper-0".into(),
            alt_peppers: 0,
            trusted_pushers: Some(Vec::new()),
            bindings: Vec::new(),
            push_to: Vec::new(),
            rogue: false,
            sign_with: crate::scenario::SignWith::LongTerm,
            ephemeral_lifetime_us: None,
        }]
    );
    assert_eq!(s.identity, IdentitySpec::default());
    assert_eq!(s.identity.key_validity_check, KeyValidityCheck::Issuer);
    assert_eq!(s.identity.auto_join_delay_us, Some(1_000_000));
    // auto_join = false: invitees do not join by themselves.
    let s = parse(&format!("{text}[identity]\nauto_join = false\n"));
    assert_eq!(s.identity.auto_join_delay_us, None);
    // An account entry alone: its data absent, one client "default".
    let s = parse(&format!("{text}[[identity.accounts]]\nuser = \"@u1:hs2\"\n"));
    assert_eq!(
        s.identity.accounts,
        [IdentityAccountSpec { user: "@u1:hs2".into(), account_data: AccountDataSpec::Absent, clients: Vec::new() }]
    );
}

#[test]
fn identity_keys_are_refused_with_their_place_and_reason() {
    // [identity] without identity servers.
    let text = format!("{MINIMAL}[identity]\nmax_redirects = 2\n");
    refused(&text, None, "[identity]", &["[identity] needs identity servers", "no [[identity_servers]]"]);
    // The same, the table only implied by its accounts (no header: at the first account).
    let text = format!("{MINIMAL}[[identity.accounts]]\nuser = \"@u0:hs1\"\n");
    refused(&text, None, "[[identity.accounts]]", &["[identity] needs identity servers"]);
    // Dotted keys: at the first value.
    let text = format!("identity.max_redirects = 2\n{MINIMAL}");
    refused(&text, None, "2", &["[identity] needs identity servers"]);
    // An unknown identity server as default_server.
    let text = edit("default_server = \"id.example\"", "default_server = \"id.nowhere\"");
    refused(
        &text,
        None,
        "\"id.nowhere\"",
        &["unknown identity server \"id.nowhere\"", "`default_server` of [identity]", "id.example, id.other"],
    );
    // A homeserver as default_server.
    let text = edit("default_server = \"id.example\"", "default_server = \"hs1\"");
    refused(&text, Some("default_server"), "\"hs1\"", &["is a homeserver, but an identity server is needed"]);
    // trusted_pushers when anyone's pushes are accepted.
    let text = edit("accept_pushes = \"anyone\"", "accept_pushes = \"anyone\"\ntrusted_pushers = [\"id.example\"]");
    refused(
        &text,
        Some("accept_pushes = \"anyone\""),
        "[\"id.example\"]",
        &["`trusted_pushers` does not apply", "accept_pushes = \"anyone\""],
    );
    // An empty list names no one: accepted, so an override can switch to "anyone".
    let sets =
        ["identity_servers.0.accept_pushes=\"anyone\"".to_owned(), "identity_servers.0.trusted_pushers=[]".to_owned()];
    let s = parse_scenario("identity.toml", IDENTITY, &sets).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.identity_servers[0].trusted_pushers, None);
    // A bad address in a binding.
    let text = edit("\"Carol@Example.org\"", "\"carol\"");
    refused(&text, None, "\"carol\"", &["invalid address", "exactly one '@'"]);
    // A bad phone number.
    let text = edit("\"+447700900123\"", "\"+44 7700\"");
    refused(&text, None, "\"+44 7700\"", &["invalid address", "msisdn"]);
    // An address bound twice on one server (equal once canonical).
    let text =
        edit("\"+447700900123\", user = \"@u1:hs2\", medium = \"msisdn\"", "\"CAROL@example.org\", user = \"@u1:hs2\"");
    refused(&text, None, "\"CAROL@example.org\"", &["binds email address \"carol@example.org\" twice"]);
    // A binding to a user who does not exist.
    let text = edit("user = \"@u0:hs2\" }", "user = \"@u7:hs2\" }");
    refused(&text, None, "\"@u7:hs2\"", &["unknown user \"@u7:hs2\""]);
    // push_to naming the server itself, or an unknown one.
    let text = edit("push_to = [\"id.other\"]", "push_to = [\"id.example\"]");
    refused(
        &text,
        Some("push_to"),
        "\"id.example\"",
        &["`push_to` of identity server \"id.example\" names the server itself"],
    );
    let text = edit("trusted_pushers = [\"id.other\"]", "trusted_pushers = [\"id.other\", \"hs9\"]");
    refused(&text, None, "\"hs9\"", &["unknown identity server \"hs9\""]);
    // Names: a homeserver's, a reserved word, an invalid one.
    let text = edit("name = \"id.other\"", "name = \"hs2\"");
    refused(&text, Some("[[identity_servers]]\nname = \"id.e"), "\"hs2\"", &["has the name of a homeserver"]);
    let text = edit("name = \"id.other\"", "name = \"none\"");
    refused(&text, None, "\"none\"", &["reserved"]);
    let text = edit("name = \"id.other\"", "name = \"id.example\"");
    refused(&text, Some("rogue = false"), "\"id.example\"", &["has the name of another identity server"]);
    // Out of range integers.
    let text = edit("alt_peppers = 2", "alt_peppers = -1");
    refused(&text, None, "-1", &["alt_peppers must be an integer from 0"]);
    let text = edit("max_redirects = 3", "max_redirects = -2");
    refused(&text, None, "-2", &["max_redirects must be between 0 and 100"]);
    // auto_join_delay with auto_join = false.
    let text = edit("auto_join = true", "auto_join = false");
    refused(&text, None, "\"2s\"", &["`auto_join_delay` does not apply with auto_join = false"]);
    // A user with two account entries.
    let text = edit("user = \"@u1:hs1\"\naccount_data", "user = \"@u0:hs1\"\naccount_data");
    refused(
        &text,
        Some("account_data = \"id.other\""),
        "\"@u0:hs1\"",
        &["user @u0:hs1 has two [[identity.accounts]] entries"],
    );
    // account_data that is neither a word nor an identity server; clients empty or repeated.
    let text = edit("account_data = \"disabled\"", "account_data = \"none\"");
    refused(
        &text,
        None,
        "\"none\"",
        &["`account_data` \"none\" is not \"absent\", \"disabled\" or an identity server"],
    );
    let text = edit("clients = [\"phone\", \"laptop\"]", "clients = []");
    refused(&text, None, "[]", &["`clients` must name at least one client"]);
    let text = edit("clients = [\"phone\", \"laptop\"]", "clients = [\"phone\", \"phone\"]");
    refused(&text, Some("\"phone\", "), "\"phone\"]", &["client \"phone\" of @u0:hs1 is listed twice"]);
}

#[test]
fn identity_actions_are_refused_with_their_place_and_reason() {
    // bind with a room.
    let text = edit("action = \"bind\"\n", "action = \"bind\"\nroom = \"main\"\n");
    refused(
        &text,
        Some("action = \"bind\""),
        "\"main\"",
        &["`room` does not apply to action \"bind\": it is not done in a room"],
    );
    // set_identity_server with a room.
    let text = edit("action = \"set_identity_server\"\n", "action = \"set_identity_server\"\nroom = \"main\"\n");
    refused(&text, Some("action = \"set_identity_server\""), "\"main\"", &["`room` does not apply"]);
    // Every other action still needs one.
    let text = edit("room = \"main\"\nuser = \"@u0:hs1\"\nclient", "user = \"@u0:hs1\"\nclient");
    refused(&text, None, "\"invite_email\"", &["`room` is required for action \"invite_email\""]);
    // invite_email without address.
    let text = edit("address = \"Carol@example.org\"\n", "");
    refused(&text, None, "\"invite_email\"", &["`address` is required for action \"invite_email\""]);
    // An invalid address in an action.
    let text = edit("address = \"Bob@Example.ORG\"", "address = \"bob at example.org\"");
    refused(&text, None, "\"bob at example.org\"", &["invalid address"]);
    // set_identity_server without identity_server.
    let text = edit("identity_server = \"none\"\n", "");
    refused(
        &text,
        Some("at = \"21s\""),
        "\"set_identity_server\"",
        &["`identity_server` is required for action \"set_identity_server\""],
    );
    // An unknown identity_server value.
    let text = edit("identity_server = \"none\"", "identity_server = \"disabled\"");
    refused(&text, Some("identity_server = "), "\"disabled\"", &["is not \"default\", \"none\" or an identity server"]);
    // identity_server, address and client on actions that do not take them.
    let text = edit("address = \"dave@example.org\"\n", "address = \"dave@example.org\"\nidentity_server = \"none\"\n");
    refused(&text, Some("dave@"), "\"none\"", &["`identity_server` does not apply to action \"bind\""]);
    let text = format!("{IDENTITY}\n[[timeline]]\nat = \"1m\"\naction = \"message\"\nroom = \"main\"\nuser = \"@u0:hs1\"\naddress = \"a@b\"\n");
    refused(&text, Some("action = \"message\""), "\"a@b\"", &["`address` does not apply to action \"message\""]);
    let text = format!("{IDENTITY}\n[[timeline]]\nat = \"1m\"\naction = \"leave\"\nroom = \"main\"\nuser = \"@u0:hs1\"\nclient = \"phone\"\n");
    refused(&text, Some("action = \"leave\""), "\"phone\"", &["`client` does not apply to action \"leave\""]);
    // A client the user does not have.
    let text = edit("client = \"laptop\"", "client = \"tablet\"");
    refused(&text, None, "\"tablet\"", &["unknown client \"tablet\" of @u0:hs1", "phone, laptop"]);
    // invite_email refuses `server` and `target`; bind's server must be an identity server.
    let text = edit("client = \"phone\"\n", "client = \"phone\"\nserver = \"id.example\"\n");
    refused(
        &text,
        Some("client = \"phone\"\nserver"),
        "\"id.example\"",
        &["`server` does not apply to action \"invite_email\""],
    );
    let text = edit("client = \"phone\"\n", "client = \"phone\"\ntarget = \"@u0:hs2\"\n");
    refused(&text, Some("target = "), "\"@u0:hs2\"", &["`target` does not apply to action \"invite_email\""]);
    let text = edit("server = \"id.example\"\n\n[[timeline]]", "server = \"hs2\"\n\n[[timeline]]");
    refused(&text, Some("action = \"bind\""), "\"hs2\"", &["is a homeserver, but an identity server is needed"]);
    // The identity actions need identity servers.
    let text =
        format!("{MINIMAL}[[timeline]]\nat = \"1s\"\naction = \"bind\"\nuser = \"@u0:hs1\"\naddress = \"a@b\"\n");
    refused(&text, None, "\"bind\"", &["action \"bind\" needs identity servers"]);
}

#[test]
fn identity_faults_are_refused_with_their_place_and_reason() {
    // rotate_pepper on a homeserver.
    let text = edit("kind = \"rotate_pepper\"\nserver = \"id.example\"", "kind = \"rotate_pepper\"\nserver = \"hs1\"");
    refused(
        &text,
        Some("rotate_pepper"),
        "\"hs1\"",
        &["\"hs1\" in fault \"rotate_pepper\" is a homeserver, but an identity server is needed"],
    );
    // revoke_identity_key on an unknown name.
    let text = edit("server = \"id.other\"\n", "server = \"id.gone\"\n");
    refused(&text, None, "\"id.gone\"", &["unknown identity server \"id.gone\" in fault \"revoke_identity_key\""]);
    // An identity server where a homeserver is needed.
    let text =
        format!("{IDENTITY}\n[[faults]]\nat = \"6m\"\nkind = \"clock_skew\"\nserver = \"id.other\"\nskew = \"1s\"\n");
    refused(&text, Some("clock_skew"), "\"id.other\"", &["is an identity server, but a homeserver is needed"]);
    let text = format!(
        "{IDENTITY}\n[[faults]]\nat = \"6m\"\nkind = \"degrade\"\nfrom = \"id.other\"\nto = \"*\"\nloss = 0.5\n"
    );
    refused(&text, Some("degrade"), "\"id.other\"", &["is an identity server, but homeservers are needed here"]);
    // `pepper` on other kinds, `duration` on rotations, an empty pepper, a rotation to the
    // pepper in force.
    let text = edit("server = \"id.other\"\n", "server = \"id.other\"\npepper = \"x\"\n");
    refused(&text, None, "\"x\"", &["`pepper` does not apply to fault \"revoke_identity_key\""]);
    let text = edit("pepper = \"pepper-b\"", "pepper = \"pepper-b\"\nduration = \"1s\"");
    refused(&text, None, "\"1s\"", &["`duration` does not apply to fault \"rotate_pepper\""]);
    let text = edit("pepper = \"pepper-b\"", "pepper = \"\"");
    refused(&text, Some("rotate_pepper"), "\"\"", &["must not be empty"]);
    let text = edit("pepper = \"pepper-b\"", "pepper = \"pepper-a\"");
    refused(
        &text,
        Some("rotate_pepper"),
        "\"pepper-a\"",
        &["would change nothing", "already uses pepper \"pepper-a\""],
    );
    // A second rotation back to the first pepper is a change.
    let text = format!(
        "{IDENTITY}\n[[faults]]\nat = \"6m\"\nkind = \"rotate_pepper\"\nserver = \"id.example\"\npepper = \"pepper-a\"\n"
    );
    assert_eq!(
        parse(&text).faults.last().unwrap().kind,
        FaultKind::RotatePepper { server: "id.example".into(), pepper: Some("pepper-a".into()) }
    );
}

/// Every key of the identity tables is documented in `docs/scenarios.md`.
#[test]
fn docs_mention_every_identity_key() {
    let docs = include_str!("../../../../docs/scenarios.md");
    let anchors = [
        "[[identity_servers]]\n",
        "[identity]\n",
        "[[identity.accounts]]\n",
        "{ address = \"Carol@Example.org\", ",
        "[[faults]]\n",
        "[[timeline]]\n",
    ];
    let unknown = "zzz_unknown = 1";
    for anchor in anchors {
        let separator = if anchor.ends_with('\n') { "\n" } else { ", " };
        let text = IDENTITY.replacen(anchor, &format!("{anchor}{unknown}{separator}"), 1);
        let error = parse_scenario("identity.toml", &text, &[]).unwrap_err();
        let expected =
            error.message().split_once("expected").map(|(_, list)| list).unwrap_or_else(|| panic!("{error}"));
        for key in expected.split('`').skip(1).step_by(2) {
            let documented = docs.contains(&format!("`{key}`")) || docs.contains(&format!("{key}]"));
            assert!(documented, "key `{key}` is not in docs/scenarios.md");
        }
    }
    assert!(docs.contains("## Identity servers and third-party invites"));
}

/// Random edits of the identity scenario give a scenario or a located error, never a panic.
#[test]
fn identity_mutations_never_panic() {
    use rand_chacha::rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x1d3471);
    let mut accepted = 0;
    for _ in 0..2_000 {
        let text = mutate(IDENTITY, &mut rng);
        match parse_scenario("mutant.toml", &text, &[]) {
            Ok(_) => accepted += 1,
            Err(e) => {
                if let Some((line, _)) = e.line_column() {
                    assert!(line <= text.lines().count() + 1, "{e}");
                }
            }
        }
    }
    assert!(accepted > 50, "only {accepted} mutants parsed");
}
