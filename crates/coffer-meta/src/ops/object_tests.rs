//! Semantics of PutObject, DeleteObject, UpdateEnvelope and UpdateObjectLock, and the
//! exactness of `freed_blobs` over random command sequences.

use std::collections::BTreeSet;

use proptest::prelude::*;

use crate::error::MetaError;
use crate::ops::testutil::*;
use crate::types::*;

fn current_id(t: &TestSm, key: &str) -> Result<(String, bool), MetaError> {
    t.sm.reader()
        .get_object("b", key, None)
        .map(|v| (v.version_id, v.delete_marker))
}

fn listed_keys(t: &TestSm) -> Vec<String> {
    let q = ListQuery {
        max_keys: 1000,
        ..Default::default()
    };
    let page = t.sm.reader().list_objects("b", &q).unwrap();
    page.objects.into_iter().map(|v| v.key).collect()
}

fn put_cond(key: &str, vid: &str, blob_n: u32, condition: WriteCondition) -> Command {
    Command::PutObject {
        bucket: "b".into(),
        version: version(key, vid, blob_n),
        condition: Some(condition),
    }
}

#[test]
fn unversioned_put_replaces_null_and_delete_removes() {
    let t = TestSm::with_bucket("b", Versioning::Unversioned);
    let first = t.ok(put("b", "k", "null", 1));
    assert!(first.freed_blobs.is_empty());
    assert_eq!(first.version_id.as_deref(), Some("null"));
    let second = t.ok(put("b", "k", "null", 2));
    assert_eq!(second.freed_blobs, vec![blob(1)]);
    assert!(second.seq > first.seq);
    assert_eq!(
        t.sm.reader().get_object("b", "k", None).unwrap().seq,
        second.seq
    );
    assert!(matches!(
        t.run(put("b", "k", "v1", 3)),
        Err(MetaError::Invalid(_))
    ));
    assert!(matches!(
        t.run(put("nope", "k", "null", 3)),
        Err(MetaError::NoSuchBucket(_))
    ));

    let out = t.ok(delete("b", "k", None, "ignored"));
    assert_eq!(out.freed_blobs, vec![blob(2)]);
    assert_eq!((out.version_id, out.delete_marker), (None, false));
    assert!(matches!(current_id(&t, "k"), Err(MetaError::NoSuchKey(_))));
    // Deleting a missing key succeeds and does nothing.
    assert_eq!(
        t.ok(delete("b", "k", None, "ignored")),
        CommandOutput::default()
    );
    assert!(listed_keys(&t).is_empty());
    assert_eq!(t.count_prefix(&crate::keys::kind_prefix("b", 0)[..4]), 0);
}

#[test]
fn enabled_put_adds_versions_and_delete_adds_markers() {
    let t = TestSm::with_bucket("b", Versioning::Enabled);
    t.ok(put("b", "k", "v1", 1));
    let v2 = t.ok(put("b", "k", "v2", 2));
    assert!(v2.freed_blobs.is_empty());
    assert_eq!(current_id(&t, "k").unwrap(), ("v2".into(), false));
    for bad in ["null", "", "v1"] {
        assert!(matches!(
            t.run(put("b", "k", bad, 9)),
            Err(MetaError::Invalid(_))
        ));
    }

    let dm = t.ok(delete("b", "k", None, "dm1"));
    assert_eq!(
        (dm.version_id.as_deref(), dm.delete_marker),
        (Some("dm1"), true)
    );
    assert!(dm.freed_blobs.is_empty());
    // The current version is the delete marker: get returns it, listing hides the key.
    assert_eq!(current_id(&t, "k").unwrap(), ("dm1".into(), true));
    assert!(listed_keys(&t).is_empty());
    assert!(matches!(
        t.run(delete("b", "k", None, "dm1")),
        Err(MetaError::Invalid(_))
    ));

    // Removing the marker makes v2 current again.
    let out = t.ok(delete("b", "k", Some("dm1"), "-"));
    assert_eq!(
        (out.version_id.as_deref(), out.delete_marker),
        (Some("dm1"), true)
    );
    assert_eq!(current_id(&t, "k").unwrap(), ("v2".into(), false));
    assert_eq!(listed_keys(&t), vec!["k".to_string()]);

    // Removing an older version keeps the current one; removing the current falls back.
    assert_eq!(
        t.ok(delete("b", "k", Some("v1"), "-")).freed_blobs,
        vec![blob(1)]
    );
    assert_eq!(current_id(&t, "k").unwrap(), ("v2".into(), false));
    assert_eq!(
        t.ok(delete("b", "k", Some("v2"), "-")).freed_blobs,
        vec![blob(2)]
    );
    assert!(matches!(current_id(&t, "k"), Err(MetaError::NoSuchKey(_))));
    // A version id that does not exist: success, nothing done.
    let out = t.ok(delete("b", "k", Some("zzz"), "-"));
    assert_eq!(
        (out.version_id.as_deref(), out.freed_blobs.len()),
        (Some("zzz"), 0)
    );
    assert!(matches!(
        t.sm.reader().get_object("b", "k", Some("v2")),
        Err(MetaError::NoSuchVersion(_))
    ));
}

#[test]
fn suspended_replaces_null_version_keeps_others() {
    let t = TestSm::with_bucket("b", Versioning::Enabled);
    t.ok(put("b", "k", "v1", 1));
    t.ok(Command::UpdateBucket(bucket("b", Versioning::Suspended)));
    t.ok(put("b", "k", "null", 2));
    assert_eq!(t.ok(put("b", "k", "null", 3)).freed_blobs, vec![blob(2)]);
    // Delete: the null version becomes a null delete marker; v1 stays.
    let out = t.ok(delete("b", "k", None, "unused"));
    assert_eq!(out.freed_blobs, vec![blob(3)]);
    assert_eq!(
        (out.version_id.as_deref(), out.delete_marker),
        (Some("null"), true)
    );
    assert_eq!(current_id(&t, "k").unwrap(), ("null".into(), true));
    // Deleting again replaces the null marker by a newer null marker.
    let again = t.ok(delete("b", "k", None, "unused"));
    assert!(again.seq > out.seq && again.freed_blobs.is_empty());
    let q = VersionQuery {
        max_keys: 10,
        ..Default::default()
    };
    let page = t.sm.reader().list_object_versions("b", &q).unwrap();
    let ids: Vec<_> = page
        .versions
        .iter()
        .map(|(v, latest)| (v.version_id.as_str(), v.delete_marker, *latest))
        .collect();
    assert_eq!(ids, vec![("null", true, true), ("v1", false, false)]);
}

#[test]
fn write_conditions() {
    let t = TestSm::with_bucket("b", Versioning::Enabled);
    t.ok(put_cond("k", "v1", 1, WriteCondition::IfNoneMatchStar));
    assert!(matches!(
        t.run(put_cond("k", "v2", 2, WriteCondition::IfNoneMatchStar)),
        Err(MetaError::PreconditionFailed)
    ));
    assert!(matches!(
        t.run(put_cond("k", "v2", 2, WriteCondition::IfMatch(etag_of(7)))),
        Err(MetaError::PreconditionFailed)
    ));
    t.ok(put_cond(
        "k",
        "v2",
        2,
        WriteCondition::IfMatch(format!("\"{}\"", etag_of(1))),
    ));
    assert!(matches!(
        t.run(put_cond(
            "other",
            "v3",
            3,
            WriteCondition::IfMatch(etag_of(1))
        )),
        Err(MetaError::NoSuchKey(_))
    ));
    // A delete marker is no current object: If-None-Match succeeds, If-Match fails.
    t.ok(delete("b", "k", None, "dm"));
    assert!(matches!(
        t.run(put_cond("k", "v3", 3, WriteCondition::IfMatch(etag_of(2)))),
        Err(MetaError::NoSuchKey(_))
    ));
    t.ok(put_cond("k", "v3", 3, WriteCondition::IfNoneMatchStar));
    // The failed commands left no trace (their version ids are free, their blobs unreferenced).
    assert_eq!(t.referenced_blobs("b").len(), 3);
}

#[test]
fn update_envelope_compare_and_set() {
    let t = TestSm::with_bucket("b", Versioning::Enabled);
    t.ok(put("b", "k", "v1", 1));
    t.ok(put("b", "k", "v2", 2));
    let mut env = envelope(2);
    env.kms_key_arn = Some("arn:aws:kms:us-east-1:111122223333:key/new".into());
    let cmd = |vid: Option<&str>, expected, env: &Envelope| Command::UpdateEnvelope {
        bucket: "b".into(),
        key: "k".into(),
        version_id: vid.map(Into::into),
        expected_generation: expected,
        expected_seq: None,
        envelope: env.clone(),
    };
    assert!(matches!(
        t.run(cmd(None, 5, &env)),
        Err(MetaError::GenerationMismatch {
            expected: 5,
            found: 1
        })
    ));
    assert!(matches!(
        t.run(cmd(None, 1, &envelope(7))),
        Err(MetaError::Invalid(_))
    ));
    // Rewrap the non-current v1: only its envelope changes.
    let before = t.sm.reader().get_object("b", "k", Some("v1")).unwrap();
    t.ok(cmd(Some("v1"), 1, &env));
    let after = t.sm.reader().get_object("b", "k", Some("v1")).unwrap();
    assert_eq!(after.envelope.as_ref(), Some(&env));
    assert_eq!(
        ObjectVersion {
            envelope: before.envelope.clone(),
            ..after
        },
        before
    );
    assert_eq!(
        t.sm.reader().get_object("b", "k", None).unwrap().envelope,
        Some(envelope(1))
    );
    // Rewrap the current one: the current index (what listings return) follows.
    t.ok(cmd(None, 1, &env));
    let q = ListQuery {
        max_keys: 10,
        ..Default::default()
    };
    let listed = t.sm.reader().list_objects("b", &q).unwrap().objects;
    assert_eq!(listed[0].envelope.as_ref(), Some(&env));
    assert!(matches!(
        t.run(cmd(None, 2, &env)),
        Err(MetaError::Invalid(_))
    ));

    t.ok(delete("b", "k", None, "dm"));
    assert!(matches!(
        t.run(cmd(None, 2, &envelope(3))),
        Err(MetaError::NoSuchKey(_))
    ));
    assert!(matches!(
        t.run(cmd(Some("dm"), 2, &envelope(3))),
        Err(MetaError::Invalid(_))
    ));
    assert!(matches!(
        t.run(cmd(Some("v9"), 2, &envelope(3))),
        Err(MetaError::NoSuchVersion(_))
    ));
}

fn retention(mode: &str, until: i64) -> Retention {
    Retention {
        mode: mode.into(),
        retain_until: format!("t{until}"),
        retain_until_ms: until,
    }
}

fn set_retention(r: Option<Retention>, bypass: bool, now_ms: i64) -> Command {
    Command::UpdateObjectLock {
        bucket: "b".into(),
        key: "k".into(),
        version_id: Some("v1".into()),
        retention: Some(r),
        legal_hold: None,
        bypass_governance: bypass,
        now_ms,
    }
}

fn delete_at(vid: &str, now_ms: i64, bypass: bool) -> Command {
    Command::DeleteObject {
        bucket: "b".into(),
        key: "k".into(),
        version_id: Some(vid.into()),
        marker_version_id: "-".into(),
        now_ms,
        bypass_governance: bypass,
    }
}

fn locked<T: std::fmt::Debug>(r: Result<T, MetaError>) -> bool {
    matches!(r, Err(MetaError::ObjectLocked(_)))
}

#[test]
fn compliance_retention_only_extends() {
    let t = TestSm::with_lock_bucket("b");
    t.ok(put("b", "k", "v1", 1));
    t.ok(set_retention(
        Some(retention("COMPLIANCE", 5_000)),
        false,
        1_000,
    ));
    assert!(locked(t.run(set_retention(
        Some(retention("COMPLIANCE", 4_000)),
        true,
        1_000
    ))));
    assert!(locked(t.run(set_retention(None, true, 1_000))));
    assert!(locked(t.run(set_retention(
        Some(retention("GOVERNANCE", 9_000)),
        true,
        1_000
    ))));
    assert!(matches!(
        t.run(set_retention(
            Some(retention("COMPLIANCE", 900)),
            false,
            1_000
        )),
        Err(MetaError::Invalid(_))
    ));
    t.ok(set_retention(
        Some(retention("COMPLIANCE", 6_000)),
        false,
        1_000,
    ));
    assert!(locked(t.run(delete_at("v1", 5_999, true))));
    // A delete without version id only adds a marker: allowed.
    t.ok(delete("b", "k", None, "dm"));
    // Once expired, the retention can be replaced and the version deleted.
    t.ok(set_retention(
        Some(retention("GOVERNANCE", 7_000)),
        false,
        6_000,
    ));
    t.ok(set_retention(None, true, 6_500));
    assert_eq!(
        t.ok(delete_at("v1", 6_500, false)).freed_blobs,
        vec![blob(1)]
    );
}

#[test]
fn governance_retention_and_legal_hold() {
    let t = TestSm::with_lock_bucket("b");
    let mut v = version("k", "v1", 1);
    v.retention = Some(retention("GOVERNANCE", 5_000));
    t.ok(Command::PutObject {
        bucket: "b".into(),
        version: v,
        condition: None,
    });
    assert!(locked(t.run(delete_at("v1", 1_000, false))));
    assert!(locked(t.run(set_retention(
        Some(retention("GOVERNANCE", 4_000)),
        false,
        1_000
    ))));
    assert!(locked(t.run(set_retention(
        Some(retention("COMPLIANCE", 9_000)),
        false,
        1_000
    ))));
    t.ok(set_retention(
        Some(retention("GOVERNANCE", 8_000)),
        false,
        1_000,
    ));
    t.ok(set_retention(
        Some(retention("GOVERNANCE", 3_000)),
        true,
        1_000,
    ));

    let hold = |on| Command::UpdateObjectLock {
        bucket: "b".into(),
        key: "k".into(),
        version_id: None,
        retention: None,
        legal_hold: Some(on),
        bypass_governance: false,
        now_ms: 1_000,
    };
    t.ok(hold(true));
    let cur = t.sm.reader().get_object("b", "k", None).unwrap();
    assert!(cur.legal_hold);
    assert_eq!(cur.retention, Some(retention("GOVERNANCE", 3_000)));
    // Legal hold wins over the bypass and over an expired retention.
    assert!(locked(t.run(delete_at("v1", 9_000, true))));
    t.ok(hold(false));
    assert!(locked(t.run(delete_at("v1", 1_000, false))));
    t.ok(delete_at("v1", 1_000, true));
}

#[test]
fn object_lock_needs_a_lock_bucket() {
    let t = TestSm::with_bucket("b", Versioning::Enabled);
    t.ok(put("b", "k", "v1", 1));
    assert!(matches!(
        t.run(set_retention(
            Some(retention("GOVERNANCE", 5_000)),
            false,
            1_000
        )),
        Err(MetaError::Invalid(_))
    ));
    let mut v = version("k", "v2", 2);
    v.legal_hold = true;
    let cmd = Command::PutObject {
        bucket: "b".into(),
        version: v,
        condition: None,
    };
    assert!(matches!(t.run(cmd), Err(MetaError::Invalid(_))));
}

/// One step of a random workload over two keys of bucket "b".
#[derive(Debug, Clone)]
enum Op {
    Put {
        key: u8,
        reuse_blob: bool,
    },
    Delete {
        key: u8,
    },
    DeleteVersion {
        key: u8,
        pick: usize,
    },
    SetVersioning(Versioning),
    CreateUpload {
        key: u8,
    },
    PutPart {
        upload: usize,
        part: u32,
        reuse_blob: bool,
    },
    Complete {
        upload: usize,
        use_mask: u8,
    },
    Abort {
        upload: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2u8, any::<bool>()).prop_map(|(key, reuse_blob)| Op::Put { key, reuse_blob }),
        2 => (0..2u8).prop_map(|key| Op::Delete { key }),
        2 => (0..2u8, 0..4usize).prop_map(|(key, pick)| Op::DeleteVersion { key, pick }),
        1 => prop_oneof![Just(Versioning::Enabled), Just(Versioning::Suspended)]
            .prop_map(Op::SetVersioning),
        2 => (0..2u8).prop_map(|key| Op::CreateUpload { key }),
        4 => (0..3usize, 1..4u32, any::<bool>())
            .prop_map(|(upload, part, reuse_blob)| Op::PutPart { upload, part, reuse_blob }),
        2 => (0..3usize, any::<u8>()).prop_map(|(upload, use_mask)| Op::Complete { upload, use_mask }),
        1 => (0..3usize).prop_map(|upload| Op::Abort { upload }),
    ]
}

fn to_command(t: &TestSm, op: &Op, n: u32, last_blob: &mut u32) -> Command {
    let key = |k: &u8| format!("k{k}");
    let versioning = t.sm.reader().get_bucket("b").unwrap().versioning;
    let vid = |n: u32| match versioning {
        Versioning::Enabled => format!("v{n}"),
        _ => "null".into(),
    };
    // A "reused" blob replays the last write's blob (a retried command), otherwise a new one.
    let mut blob_for = |reuse: bool| {
        if !reuse || *last_blob == 0 {
            *last_blob = n;
        }
        *last_blob
    };
    let uploads =
        t.sm.reader()
            .list_uploads(
                "b",
                &UploadQuery {
                    max_uploads: 100,
                    ..Default::default()
                },
            )
            .unwrap()
            .uploads;
    let upload_id = |i: &usize| {
        uploads
            .get(*i)
            .map_or_else(|| "gone".to_string(), |u| u.upload_id.clone())
    };
    match op {
        Op::Put { key: k, reuse_blob } => put("b", &key(k), &vid(n), blob_for(*reuse_blob)),
        Op::Delete { key: k } => delete("b", &key(k), None, &format!("dm{n}")),
        Op::DeleteVersion { key: k, pick } => {
            let q = VersionQuery {
                prefix: key(k),
                max_keys: 100,
                ..Default::default()
            };
            let versions =
                t.sm.reader()
                    .list_object_versions("b", &q)
                    .unwrap()
                    .versions;
            let id = versions
                .get(*pick)
                .map_or("missing".to_string(), |(v, _)| v.version_id.clone());
            delete("b", &key(k), Some(&id), "-")
        }
        Op::SetVersioning(v) => Command::UpdateBucket(bucket("b", *v)),
        Op::CreateUpload { key: k } => create_upload("b", &key(k), &format!("up{n}")),
        Op::PutPart {
            upload,
            part,
            reuse_blob,
        } => put_part("b", &upload_id(upload), *part, blob_for(*reuse_blob)),
        Op::Complete { upload, use_mask } => {
            let id = upload_id(upload);
            let (parts, _) =
                t.sm.reader()
                    .list_parts("b", &id, 0, 100)
                    .unwrap_or_default();
            let key = uploads
                .get(*upload)
                .map_or("k0".to_string(), |u| u.key.clone());
            let mut v = version(&key, &vid(n), 0);
            v.parts = parts
                .iter()
                .filter(|p| use_mask & (1 << p.part_number) != 0)
                .map(|p| p.part.clone())
                .collect();
            Command::CompleteMultipartUpload {
                bucket: "b".into(),
                upload_id: id,
                version: v,
                condition: None,
            }
        }
        Op::Abort { upload } => Command::AbortMultipartUpload {
            bucket: "b".into(),
            upload_id: upload_id(upload),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// `freed_blobs` of every command is exactly the set of blobs referenced by some version or
    /// part before it and by none after it (counted by a full scan, not by the reference counts),
    /// without duplicates; and a failed command changes nothing.
    #[test]
    fn freed_blobs_are_exact(ops in proptest::collection::vec(op(), 1..40)) {
        let t = TestSm::with_bucket("b", Versioning::Unversioned);
        let mut last_blob = 0;
        for (i, op) in ops.iter().enumerate() {
            let cmd = to_command(&t, op, i as u32 + 1, &mut last_blob);
            let before = t.referenced_blobs("b");
            let result = t.run(cmd.clone());
            let after = t.referenced_blobs("b");
            match result {
                Ok(out) => {
                    let freed: BTreeSet<_> = out.freed_blobs.iter().copied().collect();
                    prop_assert_eq!(freed.len(), out.freed_blobs.len(), "duplicates in {:?}", out);
                    let expected: BTreeSet<_> =
                        before.keys().filter(|b| !after.contains_key(*b)).copied().collect();
                    prop_assert_eq!(freed, expected, "{:?}", cmd);
                }
                Err(MetaError::Storage(e)) => prop_assert!(false, "storage error {e}"),
                Err(_) => prop_assert_eq!(before, after, "{:?} failed but changed references", cmd),
            }
        }
        // The reference counts agree with the records.
        for (blob_id, count) in t.referenced_blobs("b") {
            let raw = t.sm.db().get_cf(t.sm.cf(), crate::keys::blob_ref("b", &blob_id)).unwrap().unwrap();
            prop_assert_eq!(crate::codec::decode_u64(&raw).unwrap(), count as u64);
        }
        prop_assert_eq!(
            t.count_prefix(&crate::keys::kind_prefix("b", crate::keys::BLOB_REF)),
            t.referenced_blobs("b").len()
        );
    }
}

#[test]
fn update_envelope_refuses_a_version_replaced_in_place() {
    // Unversioned bucket: a new PUT replaces the `null` version; a rewrap read before it must
    // not land on the new data, even when the generations happen to match.
    let t = TestSm::with_bucket("b", Versioning::Unversioned);
    t.ok(put("b", "k", "null", 1));
    let old = t.sm.reader().get_object("b", "k", None).unwrap();
    t.ok(put("b", "k", "null", 1));
    let new = t.sm.reader().get_object("b", "k", None).unwrap();
    assert_ne!(old.seq, new.seq);
    let rewrap = |seq| Command::UpdateEnvelope {
        bucket: "b".into(),
        key: "k".into(),
        version_id: None,
        expected_generation: 1,
        expected_seq: Some(seq),
        envelope: envelope(2),
    };
    assert!(matches!(
        t.run(rewrap(old.seq)),
        Err(MetaError::GenerationMismatch { .. })
    ));
    assert_eq!(
        t.sm.reader().get_object("b", "k", None).unwrap().envelope,
        Some(envelope(1))
    );
    t.ok(rewrap(new.seq));
    assert_eq!(
        t.sm.reader().get_object("b", "k", None).unwrap().envelope,
        Some(envelope(2))
    );
}
