//! The conformance suite of [`DncLists`] stores, run against each store by its own crate's
//! tests (`crates/store/tests/dnc_conformance.rs` for SQLite,
//! `crates/store-postgres/tests/dnc_conformance.rs` for PostgreSQL).
//!
//! Two parts:
//! - **scenarios** ([`run_scenarios`]): entries and their first source, positions taken
//!   only by changes and in order, a second handle on the same data (another node) that
//!   sees each change of the first, the bound on lists, restarts, the audit trail;
//! - **random histories** ([`differential`]): adds and removals through two handles at
//!   random, against the sets they must leave; a copy that catches up now and then from
//!   its position, in small pages, must equal them every time.
//!
//! A store's test provides a [`Harness`]: how to open it, how to open a second handle on
//! the same data, and how to restart it.

use super::{AuditRow, DncChange, DncLists, MAX_LISTS};
use crate::conformance::Rng;
use crate::ErrorKind;
use std::collections::{BTreeMap, BTreeSet};

/// How the suite drives one kind of store.
pub trait Harness {
    /// The store under test.
    type Store: DncLists;

    /// A store with nothing in it.
    fn open(&mut self) -> Self::Store;

    /// A second handle on the data of `store`, as another node (or process) opens it.
    fn another(&mut self, store: &Self::Store) -> Self::Store;

    /// Stops `store` and opens it again on the same data (a restart).
    fn restart(&mut self, store: Self::Store) -> Self::Store;
}

const T0: u64 = 1_800_000_000_000;

/// Every scenario, by name.
#[allow(clippy::type_complexity)]
pub fn scenarios<H: Harness>() -> Vec<(&'static str, fn(&mut H))> {
    vec![
        ("entries keep their first source and survive a restart", entries::<H>),
        ("every change takes the next position, in order", positions::<H>),
        ("a second handle sees each change of the first", two_handles::<H>),
        ("at most MAX_LISTS lists", bounded::<H>),
        ("the audit trail reads back in order, bounded", audit::<H>),
        ("the audit trail forgets decisions past its retention", retention::<H>),
    ]
}

/// Runs every scenario on a fresh store each.
pub fn run_scenarios<H: Harness>(h: &mut H) {
    for (name, scenario) in scenarios::<H>() {
        eprintln!("dnc conformance scenario: {name}");
        scenario(h);
    }
}

/// Every change after `after`, read in pages of `page`.
fn all_changes<S: DncLists>(s: &S, after: (u64, u64), page: usize) -> Vec<DncChange> {
    let mut out: Vec<DncChange> = Vec::new();
    let mut at = after;
    loop {
        let got = s.changes(at, page).expect("changes");
        assert!(got.len() <= page, "a page holds at most its limit");
        let full = got.len() == page;
        if let Some(last) = got.last() {
            at = (last.seq, last.number);
        }
        out.extend(got);
        if !full {
            return out;
        }
    }
}

fn entries<H: Harness>(h: &mut H) {
    let s = h.open();
    assert_eq!(
        s.add("internal", &[15551230001, 15551230002, 15551230001], "api", T0).unwrap(),
        2,
        "twice in one batch"
    );
    assert_eq!(s.add("internal", &[15551230001], "call:x", T0 + 9).unwrap(), 0, "the first entry stays");
    assert!(s.remove("internal", 15551230002).unwrap());
    assert!(!s.remove("internal", 15551230002).unwrap(), "gone already");
    assert!(!s.remove("elsewhere", 15551230001).unwrap(), "no such list");
    let s = h.restart(s);
    let e = s.get("internal", 15551230001).unwrap().expect("kept");
    assert_eq!((e.list.as_str(), e.number, e.source.as_str(), e.added_at), ("internal", 15551230001, "api", T0));
    assert_eq!(s.get("internal", 15551230002).unwrap(), None);
    assert_eq!(s.get("national", 15551230001).unwrap(), None);
    let listed: Vec<(String, u64)> =
        all_changes(&s, (0, 0), 100).into_iter().filter(|c| c.listed).map(|c| (c.list, c.number)).collect();
    assert_eq!(listed, vec![("internal".to_string(), 15551230001)]);
    assert_eq!(s.versions().unwrap(), vec![("internal".to_string(), 2)], "an add and a removal");
}

fn positions<H: Harness>(h: &mut H) {
    let s = h.open();
    assert_eq!(s.position().unwrap(), 0);
    assert_eq!(s.changes((0, 0), 10).unwrap(), Vec::new());
    s.add("a", &[30, 10, 20], "api", T0).unwrap();
    assert_eq!(s.position().unwrap(), 1);
    s.add("a", &[10, 20], "api", T0).unwrap();
    assert_eq!(s.position().unwrap(), 1, "an add that adds nothing changes nothing");
    assert!(!s.remove("a", 99).unwrap());
    assert_eq!(s.position().unwrap(), 1, "nor does a removal of what is not there");
    s.add("b", &[10], "api", T0).unwrap();
    assert!(s.remove("a", 20).unwrap());
    assert_eq!(s.position().unwrap(), 3);
    let change = |seq, list: &str, number, listed| DncChange { seq, list: list.into(), number, listed };
    let expected =
        vec![change(1, "a", 10, true), change(1, "a", 30, true), change(2, "b", 10, true), change(3, "a", 20, false)];
    assert_eq!(all_changes(&s, (0, 0), 100), expected, "everything, in order; 20 is off the list");
    assert_eq!(all_changes(&s, (0, 0), 1), expected, "the same in pages of one");
    assert_eq!(s.changes((1, 10), 100).unwrap(), expected[1..], "after the page that ended at (1, 10)");
    assert_eq!(s.changes((2, 0), 100).unwrap(), expected[2..]);
    // Added again: its new addition is a change after the removal.
    s.add("a", &[20], "call:y", T0 + 1).unwrap();
    assert_eq!(s.changes((3, 20), 100).unwrap(), vec![change(4, "a", 20, true)]);
    assert_eq!(s.versions().unwrap(), vec![("a".to_string(), 3), ("b".to_string(), 1)]);
    assert_eq!(s.get("a", 20).unwrap().expect("back").source, "call:y", "a new entry");
}

fn two_handles<H: Harness>(h: &mut H) {
    let a = h.open();
    let b = h.another(&a);
    a.add("internal", &[15550000001], "api", T0).unwrap();
    // The other node sees it at once: in its position and changes, and in a lookup.
    let p = b.position().unwrap();
    assert_eq!(p, 1);
    assert_eq!(b.changes((0, 0), 10).unwrap().len(), 1);
    assert!(b.get("internal", 15550000001).unwrap().is_some());
    // Both write; positions never repeat, and the changes come in one order for both.
    b.add("internal", &[15550000002], "api", T0).unwrap();
    assert!(a.remove("internal", 15550000001).unwrap());
    assert!(!b.remove("internal", 15550000001).unwrap(), "the other node took it off already");
    assert_eq!(a.position().unwrap(), 3);
    assert_eq!(b.position().unwrap(), 3);
    assert_eq!(all_changes(&a, (0, 0), 10), all_changes(&b, (0, 0), 10));
    assert_eq!(b.versions().unwrap(), vec![("internal".to_string(), 3)]);
    // Rows audited through one are read through the other.
    a.audit(audit_row(T0, "c"));
    assert_eq!(a.audit_rows("c", 0, 10).unwrap().len(), 1);
    assert_eq!(b.audit_rows("c", 0, 10).unwrap().len(), 1);
}

fn bounded<H: Harness>(h: &mut H) {
    let s = h.open();
    for i in 0..MAX_LISTS {
        s.add(&format!("list-{i:02}"), &[1], "api", T0).unwrap();
    }
    let at = s.position().unwrap();
    let e = s.add("one-more", &[1, 2], "api", T0).expect_err("one list too many");
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
    assert!(e.message.contains(&MAX_LISTS.to_string()), "{e}");
    assert_eq!(s.position().unwrap(), at, "nothing changed");
    assert_eq!(s.get("one-more", 1).unwrap(), None);
    assert_eq!(s.versions().unwrap().len(), MAX_LISTS);
    assert_eq!(s.add("list-00", &[2], "api", T0).unwrap(), 1, "a list that exists still grows");
}

fn audit_row(at: u64, campaign: &str) -> AuditRow {
    AuditRow {
        campaign: campaign.into(),
        attempt: at % 1000,
        lead_id: 1,
        number: "+13055550123".into(),
        at,
        timezone: "America/New_York".into(),
        local_time: "2026-01-15 20:30:00 EST".into(),
        region: "US-FL".into(),
        rules: "US-FL 08:00-20:00".into(),
        lists: "internal@1".into(),
        decision: "dialed".into(),
    }
}

fn audit<H: Harness>(h: &mut H) {
    let s = h.open();
    for at in [T0 + 5, T0 + 6, T0 + 7] {
        s.audit(audit_row(at, "a"));
    }
    s.audit(audit_row(T0 + 8, "b"));
    let rows = s.audit_rows("a", T0 + 6, 10).unwrap();
    assert_eq!(rows.iter().map(|r| r.at).collect::<Vec<_>>(), [T0 + 6, T0 + 7]);
    assert_eq!(rows[0], audit_row(T0 + 6, "a"));
    assert_eq!(s.audit_rows("a", 0, 1).unwrap().len(), 1, "bounded");
    assert_eq!(s.audit_rows("none", 0, 10).unwrap(), Vec::new());
    let s = h.restart(s);
    assert_eq!(s.audit_rows("a", 0, 10).unwrap().len(), 3, "kept across a restart");
}

fn retention<H: Harness>(h: &mut H) {
    let s = h.open();
    let hour = 3_600_000;
    s.audit(audit_row(T0 + 10 * hour, "a"));
    s.audit(audit_row(T0 + 11 * hour, "a"));
    let at = |s: &H::Store| s.audit_rows("a", 0, 10).unwrap().iter().map(|r| r.at).collect::<Vec<_>>();
    assert_eq!(at(&s), [T0 + 10 * hour, T0 + 11 * hour]);
    // Five years and half an hour after the first: it goes, the second stays.
    let later = T0 + 10 * hour + super::AUDIT_RETENTION_MS + hour / 2;
    s.audit(audit_row(later, "a"));
    assert_eq!(at(&s), [T0 + 11 * hour, later]);
}

/// Random adds and removals through two handles on one store, `steps` of them, against
/// the sets they must leave; a copy catches up from its position now and then, in pages
/// of a random size, and must equal them each time.
pub fn differential<H: Harness>(h: &mut H, seed: u64, steps: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let a = h.open();
    let b = h.another(&a);
    let lists = ["internal", "national", "state-fl"];
    let mut want: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut copy: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    let mut copy_at = (0, 0);
    for step in 0..steps {
        let s = if rng.chance(50) { &a } else { &b };
        let list = lists[rng.below(lists.len() as u64) as usize];
        let set = want.entry(list.to_string()).or_default();
        if rng.chance(65) {
            let numbers: Vec<u64> = (0..1 + rng.below(5)).map(|_| 1 + rng.below(40)).collect();
            let new: BTreeSet<u64> = numbers.iter().copied().filter(|n| !set.contains(n)).collect();
            let added = s.add(list, &numbers, "api", T0 + step as u64).unwrap();
            assert_eq!(added, new.len(), "seed {seed} step {step}: add {numbers:?} to {list}");
            set.extend(new);
        } else {
            let n = 1 + rng.below(40);
            let removed = s.remove(list, n).unwrap();
            assert_eq!(removed, set.remove(&n), "seed {seed} step {step}: remove {n} from {list}");
        }
        if rng.chance(30) || step + 1 == steps {
            let reader = if rng.chance(50) { &a } else { &b };
            let position = reader.position().unwrap();
            let page = 1 + rng.below(8) as usize;
            for c in all_changes(reader, copy_at, page) {
                copy_at = (c.seq, c.number);
                let l = copy.entry(c.list).or_default();
                if c.listed {
                    l.insert(c.number);
                } else {
                    l.remove(&c.number);
                }
            }
            assert!(copy_at.0 >= position, "seed {seed} step {step}: the changes reach the position read before");
            copy.retain(|_, s| !s.is_empty());
            let mut expected = want.clone();
            expected.retain(|_, s| !s.is_empty());
            assert_eq!(copy, expected, "seed {seed} step {step}: the copy caught up");
        }
    }
}
