//! The responder and the mapping cache together, on hand-derived cases: what each design makes
//! of an honest answer, a stripped entry, an explicit unknown, a failure, an erasure.

use super::cache::{CacheConfig, Categories, Mapping, MappingCache, Reason};
use super::query::{AccountDirectory, AccountsAnswer, ErasurePoll, QueryAccounts, UnknownEncoding};

const S: u64 = 1_000_000;

fn hs1() -> (AccountDirectory, String, String) {
    let mut d = AccountDirectory::new("hs1");
    let alice = d.register("alice", [1; 32]);
    let bob = d.register("bob", [2; 32]);
    (d, alice, bob)
}

fn cache(categories: Categories, unknown_encoding: UnknownEncoding) -> MappingCache {
    MappingCache::new(CacheConfig { categories, unknown_encoding, ..CacheConfig::default() })
}

fn ask(d: &AccountDirectory, keys: &[String], encoding: UnknownEncoding) -> AccountsAnswer {
    d.answer(&QueryAccounts { account_keys: keys.to_vec(), erasure: None }, encoding).expect("answered")
}

/// A proxy that strips one entry from the answer (the seed's motivating fault).
fn stripped(mut a: AccountsAnswer, key: &str) -> AccountsAnswer {
    a.account_keys.remove(key);
    a
}

#[test]
fn an_honest_answer_verifies_permanently() {
    let (d, alice, _) = hs1();
    let mut c = cache(Categories::TwoState, UnknownEncoding::Errcode);
    assert!(c.observe(&alice, "hs1", 0));
    assert!(!c.observe(&alice, "hs1", 5), "seen once");
    assert_eq!(c.take_due(0), vec![("hs1".to_owned(), vec![alice.clone()])]);
    c.on_answer(
        "hs1",
        std::slice::from_ref(&alice),
        &ask(&d, std::slice::from_ref(&alice), UnknownEncoding::Errcode),
        2 * S,
    );
    let e = c.get(&alice, "hs1").expect("held");
    assert_eq!(e.mapping, Mapping::Verified { name: "alice".into() });
    assert_eq!((e.verified_at, e.retry_at), (Some(2 * S), None), "cached permanently");
    assert_eq!(c.next_due(), None);
}

/// The trade-off of seed 000: a stripped entry. Under `errcode` the missing key is an anomaly,
/// retried after 10 s (the first anomaly delay) and verified once the proxy lets it through;
/// under `omit` (three categories, the design before the seed) it reads as "not ours": a final
/// unverified mapping retried only after an hour.
#[test]
fn a_stripped_entry_is_retried_soon_with_errcode_and_settled_wrongly_with_omit() {
    let (d, alice, bob) = hs1();
    let keys = vec![alice.clone(), bob.clone()];
    for (encoding, categories, want, retry) in [
        (UnknownEncoding::Errcode, Categories::TwoState, Mapping::Unverified { reason: Reason::Omitted }, 10 * S),
        (UnknownEncoding::Errcode, Categories::ThreeState, Mapping::Unknown { reason: Reason::Omitted }, 10 * S),
        (UnknownEncoding::Omit, Categories::ThreeState, Mapping::Unverified { reason: Reason::Omitted }, 3600 * S),
    ] {
        let mut c = cache(categories, encoding);
        for k in &keys {
            c.observe(k, "hs1", 0);
        }
        let due = c.take_due(0);
        c.on_answer("hs1", &due[0].1, &stripped(ask(&d, &keys, encoding), &alice), S);
        let e = c.get(&alice, "hs1").expect("held");
        assert_eq!(e.mapping, want, "{encoding:?} {categories:?}");
        assert_eq!(e.retry_at, Some(S + retry), "{encoding:?} {categories:?}");
        assert_eq!(c.get(&bob, "hs1").unwrap().mapping, Mapping::Verified { name: "bob".into() });
        // The retry, answered honestly, verifies it.
        let due = c.take_due(S + retry);
        assert_eq!(due, vec![("hs1".to_owned(), vec![alice.clone()])]);
        c.on_answer("hs1", &due[0].1, &ask(&d, &due[0].1, encoding), S + retry + S);
        assert_eq!(c.get(&alice, "hs1").unwrap().mapping, Mapping::Verified { name: "alice".into() });
    }
}

#[test]
fn an_explicit_unknown_is_a_negative_answer_and_failures_are_anomalies() {
    let (d, _, _) = hs1();
    let stranger = "B".repeat(43);
    let mut c = cache(Categories::ThreeState, UnknownEncoding::Errcode);
    c.observe(&stranger, "hs1", 0);
    c.take_due(0);
    c.on_answer(
        "hs1",
        std::slice::from_ref(&stranger),
        &ask(&d, std::slice::from_ref(&stranger), UnknownEncoding::Errcode),
        0,
    );
    let e = c.get(&stranger, "hs1").unwrap();
    assert_eq!(e.mapping, Mapping::Unverified { reason: Reason::ExplicitUnknown("M_UNKNOWN".into()) });
    assert_eq!(e.retry_at, Some(3600 * S), "the long schedule");
    // A timeout: unknown in three categories, on the short schedule, backing off 10, 30, 60 s.
    let other = "C".repeat(43);
    c.observe(&other, "hs2", 0);
    let mut t = 0;
    for delay in [10, 30, 60, 300, 300] {
        assert_eq!(c.take_due(t), vec![("hs2".to_owned(), vec![other.clone()])]);
        c.on_failure("hs2", std::slice::from_ref(&other), Reason::Timeout, t);
        let e = c.get(&other, "hs2").unwrap();
        assert_eq!(e.mapping, Mapping::Unknown { reason: Reason::Timeout });
        assert_eq!(e.retry_at, Some(t + delay * S));
        t += delay * S;
    }
}

#[test]
fn a_persistent_omission_settles_after_n_tries_when_configured() {
    let (d, alice, _) = hs1();
    let config = CacheConfig { settle_omitted_after: Some(2), ..CacheConfig::default() };
    let mut c = MappingCache::new(config);
    c.observe(&alice, "hs1", 0);
    let keys = vec![alice.clone()];
    c.take_due(0);
    c.on_answer("hs1", &keys, &stripped(ask(&d, &keys, UnknownEncoding::Errcode), &alice), 0);
    assert_eq!(c.get(&alice, "hs1").unwrap().retry_at, Some(10 * S), "first omission: an anomaly");
    c.take_due(10 * S);
    c.on_answer("hs1", &keys, &stripped(ask(&d, &keys, UnknownEncoding::Errcode), &alice), 10 * S);
    assert_eq!(c.get(&alice, "hs1").unwrap().retry_at, Some(10 * S + 3600 * S), "second: settled, long schedule");
}

#[test]
fn an_entry_naming_another_domain_or_badly_signed_is_not_believed() {
    let (d, alice, _) = hs1();
    let mut c = cache(Categories::TwoState, UnknownEncoding::Errcode);
    c.observe(&alice, "evil", 0);
    c.take_due(0);
    // evil relays hs1's genuine entry: signed by the key, but for domain hs1.
    c.on_answer(
        "evil",
        std::slice::from_ref(&alice),
        &ask(&d, std::slice::from_ref(&alice), UnknownEncoding::Errcode),
        0,
    );
    assert_eq!(c.get(&alice, "evil").unwrap().mapping, Mapping::Unverified { reason: Reason::DomainMismatch });
    // A forged entry: right shape, not signed by the key.
    let mut forged = ask(&d, std::slice::from_ref(&alice), UnknownEncoding::Errcode);
    forged.account_keys.get_mut(&alice).unwrap().insert("account_name".into(), "mallory".into());
    c.observe(&alice, "hs1", 0);
    c.take_due(0);
    c.on_answer("hs1", std::slice::from_ref(&alice), &forged, 0);
    assert_eq!(c.get(&alice, "hs1").unwrap().mapping, Mapping::Unverified { reason: Reason::BadSignature });
}

#[test]
fn an_erasure_from_the_feed_ends_a_verified_mapping_for_good() {
    let (mut d, alice, bob) = hs1();
    let mut c = cache(Categories::TwoState, UnknownEncoding::Errcode);
    c.observe(&alice, "hs1", 0);
    c.take_due(0);
    c.on_answer(
        "hs1",
        std::slice::from_ref(&alice),
        &ask(&d, std::slice::from_ref(&alice), UnknownEncoding::Errcode),
        0,
    );
    assert_eq!(d.erase(&alice), Some(1));
    // An erasure-only poll from the cursor: alice comes back erased though not asked.
    let poll =
        QueryAccounts { account_keys: vec![], erasure: Some(ErasurePoll { id: c.erasure_cursor("hs1"), limit: 64 }) };
    c.on_answer("hs1", &[], &d.answer(&poll, UnknownEncoding::Errcode).unwrap(), 5 * S);
    assert_eq!(c.get(&alice, "hs1").unwrap().mapping, Mapping::Erased);
    assert_eq!(c.erasure_cursor("hs1"), 1);
    // Never verified again, even by a (replayed) old answer.
    let mut old = hs1().0;
    old.register("alice", [1; 32]);
    c.on_answer(
        "hs1",
        std::slice::from_ref(&alice),
        &ask(&old, std::slice::from_ref(&alice), UnknownEncoding::Errcode),
        6 * S,
    );
    assert_eq!(c.get(&alice, "hs1").unwrap().mapping, Mapping::Erased);
    assert_eq!(c.state_counts().get("erased"), Some(&1));
    let _ = bob;
}

/// Retries go to domains that never answered before domains that answered without the key
/// (MSC4243 §6.1), whatever their names.
#[test]
fn due_retries_put_domains_that_never_answered_first() {
    let (d, _, _) = hs1();
    let k1 = "D".repeat(43);
    let k2 = "E".repeat(43);
    let mut c = cache(Categories::TwoState, UnknownEncoding::Errcode);
    c.observe(&k1, "aaa", 0);
    c.observe(&k2, "zzz", 0);
    c.take_due(0);
    // aaa answered (an omission: 10 s anomaly retry), zzz timed out (also 10 s).
    c.on_answer(
        "aaa",
        std::slice::from_ref(&k1),
        &stripped(ask(&d, std::slice::from_ref(&k1), UnknownEncoding::Errcode), &k1),
        0,
    );
    c.on_failure("zzz", std::slice::from_ref(&k2), Reason::Timeout, 0);
    let order: Vec<String> = c.take_due(10 * S).into_iter().map(|(domain, _)| domain).collect();
    assert_eq!(order, ["zzz", "aaa"]);
}

/// MSC4243 §10: a domain that fails is backed off as a whole (5 s, 10 s, 20 s … here), however
/// many keys of it are due, and an answer ends the backoff; due keys are asked in batches.
#[test]
fn a_failing_domain_is_backed_off_as_a_whole_and_keys_go_in_batches() {
    let config = CacheConfig { batch_size: 2, ..CacheConfig::default() };
    let mut c = MappingCache::new(config);
    let keys: Vec<String> = ["F", "G", "H"].iter().map(|k| k.repeat(43)).collect();
    for k in &keys {
        c.observe(k, "victim", 0);
    }
    let due = c.take_due(0);
    assert_eq!(due, vec![("victim".to_owned(), keys[..2].to_vec()), ("victim".to_owned(), keys[2..].to_vec())]);
    c.on_failure("victim", &keys[..2], Reason::Timeout, 0);
    assert_eq!(c.backed_off_until("victim", 0), Some(5 * S));
    c.on_failure("victim", &keys[2..], Reason::Timeout, 0);
    assert_eq!(c.backed_off_until("victim", 0), Some(10 * S), "the second failure in a row doubles it");
    // The keys' own retry is at 10 s (first anomaly delay); the domain's backoff ends then too.
    assert_eq!(c.next_due(), Some(10 * S));
    assert!(c.take_due(9 * S).is_empty());
    // A new key of the backed-off domain waits for the backoff as well.
    c.observe(&"J".repeat(43), "victim", 9 * S);
    assert!(c.take_due(9 * S).is_empty(), "nothing is asked of a backed-off domain");
    let due = c.take_due(10 * S);
    assert_eq!(due.iter().map(|(_, k)| k.len()).sum::<usize>(), 4);
    let (d, _, _) = hs1();
    c.on_answer("victim", &due[0].1, &ask(&d, &due[0].1, UnknownEncoding::Errcode), 11 * S);
    assert_eq!(c.backed_off_until("victim", 11 * S), None, "an answer ends the backoff");
}
