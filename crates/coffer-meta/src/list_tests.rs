//! Listings against a model: S3 order (UTF-8 binary), prefixes, delimiters, markers, pages.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::error::MetaError;
use crate::ops::testutil::*;
use crate::types::*;

/// An entry of a listing: a key with one of its version ids, or a common prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum E {
    Key(String, String),
    Prefix(String),
}

/// The full listing of `items` (in listing order) under `prefix` and `delimiter`.
fn model(items: &[(String, String)], prefix: &str, delimiter: Option<&str>) -> Vec<E> {
    let mut out: Vec<E> = Vec::new();
    for (key, id) in items.iter().filter(|(k, _)| k.starts_with(prefix)) {
        let rest = &key[prefix.len()..];
        let common = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            rest.find(d)
                .map(|i| key[..prefix.len() + i + d.len()].to_string())
        });
        match common {
            Some(c) if out.last() == Some(&E::Prefix(c.clone())) => {}
            Some(c) => out.push(E::Prefix(c)),
            None => out.push(E::Key(key.clone(), id.clone())),
        }
    }
    out
}

fn object_entries(page: &ListPage) -> Vec<E> {
    let mut out: Vec<E> = page
        .objects
        .iter()
        .map(|v| E::Key(v.key.clone(), String::new()))
        .chain(page.common_prefixes.iter().cloned().map(E::Prefix))
        .collect();
    out.sort_by(|a, b| entry_key(a).cmp(entry_key(b)));
    out
}

fn entry_key(e: &E) -> &str {
    match e {
        E::Key(k, _) | E::Prefix(k) => k,
    }
}

fn key_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('a'),
            Just('b'),
            Just('/'),
            Just('\0'),
            Just('é'),
            Just('\u{10FFFF}')
        ],
        1..5,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn delimiter_strategy() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("/".to_string())),
        Just(Some("ab".to_string())),
        Just(Some("é".to_string())),
        Just(Some("\0".to_string())),
        Just(Some(String::new())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn list_objects_matches_the_model(
        keys in proptest::collection::btree_map(key_strategy(), any::<bool>(), 0..24),
        prefix in proptest::option::of(key_strategy()),
        delimiter in delimiter_strategy(),
        start_after in proptest::option::of(key_strategy()),
        max_keys in 0..6usize,
        page_size in 1..4usize,
    ) {
        let t = TestSm::with_bucket("b", Versioning::Enabled);
        for (i, (key, deleted)) in keys.iter().enumerate() {
            t.ok(put("b", key, &format!("v{i}"), i as u32 + 1));
            if *deleted {
                t.ok(delete("b", key, None, &format!("dm{i}")));
            }
        }
        let live: Vec<(String, String)> =
            keys.iter().filter(|(_, d)| !**d).map(|(k, _)| (k.clone(), String::new())).collect();
        let prefix = prefix.unwrap_or_default();
        let all = model(&live, &prefix, delimiter.as_deref());
        let reader = t.sm.reader();

        // One page from `start_after`.
        let expected: Vec<E> = all
            .iter()
            .filter(|e| start_after.as_deref().is_none_or(|s| entry_key(e) > s))
            .cloned()
            .collect();
        let q = ListQuery {
            prefix: prefix.clone(),
            delimiter: delimiter.clone(),
            start_after: start_after.clone(),
            max_keys,
        };
        let page = reader.list_objects("b", &q).unwrap();
        let got = object_entries(&page);
        prop_assert_eq!(&got[..], &expected[..max_keys.min(expected.len())]);
        prop_assert_eq!(page.is_truncated, expected.len() > max_keys);
        prop_assert_eq!(page.next_marker.as_deref(), got.last().map(entry_key));

        // Every page, resuming from next_marker: the whole listing, each entry once.
        let mut pages = Vec::new();
        let mut marker = None;
        loop {
            let q = ListQuery {
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                start_after: marker.clone(),
                max_keys: page_size,
            };
            let page = reader.list_objects("b", &q).unwrap();
            pages.extend(object_entries(&page));
            if !page.is_truncated {
                break;
            }
            marker = page.next_marker.clone();
        }
        prop_assert_eq!(pages, all);
    }

    #[test]
    fn list_versions_pages_match_the_model(
        writes in proptest::collection::vec((key_strategy(), any::<bool>()), 0..24),
        prefix in proptest::option::of(key_strategy()),
        delimiter in delimiter_strategy(),
        page_size in 1..4usize,
    ) {
        let t = TestSm::with_bucket("b", Versioning::Enabled);
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, (key, is_delete)) in writes.iter().enumerate() {
            let id = format!("v{i:03}");
            if *is_delete {
                t.ok(delete("b", key, None, &id));
            } else {
                t.ok(put("b", key, &id, i as u32 + 1));
            }
            versions.entry(key.clone()).or_default().insert(0, id);
        }
        let items: Vec<(String, String)> = versions
            .iter()
            .flat_map(|(k, ids)| ids.iter().map(move |id| (k.clone(), id.clone())))
            .collect();
        let prefix = prefix.unwrap_or_default();
        let all = model(&items, &prefix, delimiter.as_deref());
        let reader = t.sm.reader();

        let mut got = Vec::new();
        let (mut key_marker, mut version_id_marker) = (None, None);
        loop {
            let q = VersionQuery {
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                key_marker: key_marker.clone(),
                version_id_marker: version_id_marker.clone(),
                max_keys: page_size,
            };
            let page = reader.list_object_versions("b", &q).unwrap();
            for (v, latest) in &page.versions {
                let newest = &versions[&v.key][0];
                prop_assert_eq!(*latest, newest == &v.version_id);
            }
            let mut entries: Vec<E> = page
                .versions
                .iter()
                .map(|(v, _)| E::Key(v.key.clone(), v.version_id.clone()))
                .chain(page.common_prefixes.iter().cloned().map(E::Prefix))
                .collect();
            // Versions of a key are newest first: sort stably by key only.
            entries.sort_by(|a, b| entry_key(a).cmp(entry_key(b)));
            prop_assert!(entries.len() <= page_size);
            got.extend(entries);
            if !page.is_truncated {
                break;
            }
            key_marker = page.next_key_marker.clone();
            version_id_marker = page.next_version_id_marker.clone();
        }
        prop_assert_eq!(got, all);
    }
}

#[test]
fn utf8_binary_order_and_nul_keys() {
    let t = TestSm::with_bucket("b", Versioning::Unversioned);
    let keys = [
        "a",
        "a\0",
        "a\0b",
        "a\u{1}",
        "aé",
        "a\u{FFFF}",
        "a\u{10000}",
        "B",
        "\0",
    ];
    for (i, k) in keys.iter().enumerate() {
        t.ok(put("b", k, "null", i as u32 + 1));
    }
    let q = ListQuery {
        max_keys: 100,
        ..Default::default()
    };
    let got: Vec<String> =
        t.sm.reader()
            .list_objects("b", &q)
            .unwrap()
            .objects
            .into_iter()
            .map(|v| v.key)
            .collect();
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort(); // String order is UTF-8 byte order.
    assert_eq!(got, expected);
    assert_eq!(got[0], "\0");
    assert_eq!(
        t.sm.reader().get_object("b", "a\0", None).unwrap().key,
        "a\0"
    );
    let q = ListQuery {
        prefix: "a\0".into(),
        max_keys: 100,
        ..Default::default()
    };
    let got: Vec<String> =
        t.sm.reader()
            .list_objects("b", &q)
            .unwrap()
            .objects
            .into_iter()
            .map(|v| v.key)
            .collect();
    assert_eq!(got, vec!["a\0".to_string(), "a\0b".to_string()]);
}

#[test]
fn delimiter_pages_skip_whole_common_prefixes() {
    let t = TestSm::with_bucket("b", Versioning::Unversioned);
    for i in 0..50 {
        t.ok(put("b", &format!("dir/{i:02}"), "null", i + 1));
    }
    t.ok(put("b", "dir0", "null", 100));
    t.ok(put("b", "z", "null", 101));
    let q = |start_after: Option<&str>, max_keys| ListQuery {
        prefix: String::new(),
        delimiter: Some("/".into()),
        start_after: start_after.map(Into::into),
        max_keys,
    };
    let page = t.sm.reader().list_objects("b", &q(None, 1)).unwrap();
    assert_eq!(page.common_prefixes, vec!["dir/".to_string()]);
    assert!(page.is_truncated);
    assert_eq!(page.next_marker.as_deref(), Some("dir/"));
    let page =
        t.sm.reader()
            .list_objects("b", &q(Some("dir/"), 5))
            .unwrap();
    let keys: Vec<_> = page.objects.iter().map(|v| v.key.as_str()).collect();
    assert_eq!(keys, vec!["dir0", "z"]);
    assert!(page.common_prefixes.is_empty() && !page.is_truncated);
    // A marker inside a common prefix does not emit it again.
    let page =
        t.sm.reader()
            .list_objects("b", &q(Some("dir/10"), 5))
            .unwrap();
    assert!(page.common_prefixes.is_empty());
    // max_keys 0: an empty page that says whether anything is left.
    let page =
        t.sm.reader()
            .list_objects("b", &q(Some("dir0"), 0))
            .unwrap();
    assert!(page.objects.is_empty() && page.is_truncated && page.next_marker.is_none());
    let page = t.sm.reader().list_objects("b", &q(Some("z"), 0)).unwrap();
    assert!(!page.is_truncated);
    assert!(matches!(
        t.sm.reader().list_objects("x", &q(None, 1)),
        Err(MetaError::NoSuchBucket(_))
    ));
}

#[test]
fn version_markers_resume_inside_a_key() {
    let t = TestSm::with_bucket("b", Versioning::Enabled);
    for i in 1..=3 {
        t.ok(put("b", "k", &format!("v{i}"), i));
    }
    t.ok(put("b", "l", "w1", 9));
    let q = |km: Option<&str>, vm: Option<&str>| VersionQuery {
        key_marker: km.map(Into::into),
        version_id_marker: vm.map(Into::into),
        max_keys: 10,
        ..Default::default()
    };
    let ids = |page: VersionPage| -> Vec<(String, bool)> {
        page.versions
            .into_iter()
            .map(|(v, l)| (v.version_id, l))
            .collect()
    };
    let r = t.sm.reader();
    assert_eq!(
        ids(r
            .list_object_versions("b", &q(Some("k"), Some("v3")))
            .unwrap()),
        vec![
            ("v2".into(), false),
            ("v1".into(), false),
            ("w1".into(), true)
        ]
    );
    assert_eq!(
        ids(r.list_object_versions("b", &q(Some("k"), None)).unwrap()),
        vec![("w1".into(), true)]
    );
    // A version-id marker that no longer exists restarts at the key's newest version.
    assert_eq!(
        r.list_object_versions("b", &q(Some("k"), Some("gone")))
            .unwrap()
            .versions
            .len(),
        4
    );
}

#[test]
fn uploads_list_by_key_then_initiation() {
    let t = TestSm::with_bucket("b", Versioning::Unversioned);
    for (key, id) in [
        ("b/1", "zz"),
        ("a", "u2"),
        ("b/2", "u3"),
        ("a", "u1"),
        ("c", "u5"),
    ] {
        t.ok(create_upload("b", key, id));
    }
    let r = t.sm.reader();
    let mut seen = Vec::new();
    let (mut km, mut um) = (None, None);
    loop {
        let q = UploadQuery {
            key_marker: km.clone(),
            upload_id_marker: um.clone(),
            max_uploads: 2,
            ..Default::default()
        };
        let page = r.list_uploads("b", &q).unwrap();
        seen.extend(page.uploads.iter().map(|u| u.upload_id.clone()));
        if !page.is_truncated {
            break;
        }
        km = page.next_key_marker;
        um = page.next_upload_id_marker;
    }
    assert_eq!(seen, vec!["u2", "u1", "zz", "u3", "u5"]);
    let q = UploadQuery {
        delimiter: Some("/".into()),
        max_uploads: 10,
        ..Default::default()
    };
    let page = r.list_uploads("b", &q).unwrap();
    assert_eq!(page.common_prefixes, vec!["b/".to_string()]);
    assert_eq!(page.uploads.len(), 3);
    assert_eq!(r.get_upload("b", "u3").unwrap().key, "b/2");
}

#[test]
fn list_parts_pages() {
    let t = TestSm::with_bucket("b", Versioning::Unversioned);
    t.ok(create_upload("b", "k", "up"));
    for n in [3, 1, 2, 10_000] {
        t.ok(put_part("b", "up", n, n));
    }
    let r = t.sm.reader();
    let numbers = |marker, max| {
        let (parts, more) = r.list_parts("b", "up", marker, max).unwrap();
        (
            parts.iter().map(|p| p.part_number).collect::<Vec<_>>(),
            more,
        )
    };
    assert_eq!(numbers(0, 2), (vec![1, 2], true));
    assert_eq!(numbers(2, 2), (vec![3, 10_000], false));
    assert_eq!(numbers(3, 0), (vec![], true));
    assert_eq!(numbers(10_000, 5), (vec![], false));
    assert_eq!(numbers(u32::MAX, 5), (vec![], false));
}

#[test]
fn list_buckets_by_name_and_reopen_keeps_everything() {
    let t = TestSm::new();
    for name in ["zeta", "alpha", "mid"] {
        t.ok(Command::CreateBucket(bucket(name, Versioning::Enabled)));
    }
    t.ok(put("mid", "k", "v1", 1));
    t.ok(create_upload("mid", "k", "up"));
    t.ok(put_part("mid", "up", 1, 2));
    let applied = t.sm.last_applied().unwrap();
    let TestSm { sm, dir, .. } = t;
    drop(sm);
    let sm = crate::StateMachine::open(dir.path()).unwrap();
    assert_eq!(sm.last_applied().unwrap(), applied);
    let r = sm.reader();
    let names: Vec<_> = r
        .list_buckets()
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, vec!["alpha", "mid", "zeta"]);
    assert_eq!(r.get_object("mid", "k", None).unwrap().version_id, "v1");
    assert_eq!(r.list_parts("mid", "up", 0, 10).unwrap().0.len(), 1);
    drop(r);
    // Indexes at or below the last applied one are refused and change nothing.
    assert!(matches!(
        sm.apply(applied, &put("mid", "k", "v2", 3)),
        Err(MetaError::Storage(_))
    ));
    assert!(matches!(
        sm.reader().get_object("mid", "k", Some("v2")),
        Err(MetaError::NoSuchVersion(_))
    ));
    sm.apply(applied + 1, &put("mid", "k", "v2", 3)).unwrap();
    sm.advance(applied + 5).unwrap();
    assert_eq!(sm.last_applied().unwrap(), applied + 5);
}
