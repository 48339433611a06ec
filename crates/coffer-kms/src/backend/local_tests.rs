//! Tests of the local keystore that need its internals or a manual clock.

use super::*;
use crate::clock::ManualClock;
use crate::testing::{self, assert_err};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "111122223333";

fn root(b: u8) -> RootKey {
    Zeroizing::new([b; 32])
}

fn open_at(dir: &Path, clock: &ManualClock) -> LocalKms {
    LocalKms::open_with_clock(dir, root(1), REGION, ACCOUNT, Arc::new(clock.clone())).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let kms = LocalKms::open(dir.path(), root(1), REGION, ACCOUNT).unwrap();
    testing::suite(&kms).await;
}

#[tokio::test]
async fn deletion_window_ends_lazily_and_by_purge() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000);
    let kms = open_at(dir.path(), &clock);
    let a = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    let b = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    kms.create_alias("alias/doomed", &a.key_id).await.unwrap();
    let blob = kms
        .encrypt(&a.key_id, b"x", &EncryptionContext::new())
        .await
        .unwrap()
        .ciphertext_blob;
    let m = kms.schedule_key_deletion(&a.key_id, Some(7)).await.unwrap();
    assert_eq!(m.deletion_date, Some(1_700_000_000 + 7 * DAY));
    kms.schedule_key_deletion(&b.key_id, Some(10))
        .await
        .unwrap();

    clock.advance(7 * DAY - 1);
    assert_eq!(
        kms.describe_key(&a.key_id).await.unwrap().key_state,
        KeyState::PendingDeletion
    );
    assert_eq!(kms.purge_expired(clock.now()).unwrap(), 0);
    clock.advance(1);
    // Lazily: the next access deletes it, its material and its alias.
    assert_err(
        kms.describe_key(&a.key_id).await,
        "NotFoundException",
        "after the window",
    );
    assert_err(
        kms.decrypt(&blob, &EncryptionContext::new(), None).await,
        "NotFoundException",
        "decrypt after deletion",
    );
    assert_err(
        kms.describe_key("alias/doomed").await,
        "NotFoundException",
        "alias deleted with the key",
    );
    let prefix = [
        &[keys::MATERIAL][..],
        a.key_id.parse::<Uuid>().unwrap().as_bytes(),
    ]
    .concat();
    assert!(
        kms.inner
            .db
            .prefix_iterator(&prefix)
            .flatten()
            .all(|(k, _)| !k.starts_with(&prefix)),
        "material gone"
    );
    assert!(!kms
        .list_keys(None, None)
        .await
        .unwrap()
        .items
        .iter()
        .any(|e| e.key_id == a.key_id));
    assert!(kms.inner.aliases().unwrap().is_empty());

    // By purge: b's window ends at +10 days.
    clock.advance(3 * DAY);
    assert!(
        !kms.list_keys(None, None)
            .await
            .unwrap()
            .items
            .iter()
            .any(|e| e.key_id == b.key_id),
        "expired keys are not listed"
    );
    assert_eq!(kms.purge_expired(clock.now()).unwrap(), 1);
    assert!(kms
        .inner
        .read_key(&b.key_id.parse().unwrap())
        .unwrap()
        .is_none());
    assert_eq!(
        kms.run_maintenance().await.unwrap(),
        MaintenanceReport::default()
    );
}

#[tokio::test]
async fn automatic_rotation_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000);
    let kms = open_at(dir.path(), &clock);
    let k = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    let ctx = EncryptionContext::new();
    let old = kms
        .encrypt(&k.key_id, b"v1", &ctx)
        .await
        .unwrap()
        .ciphertext_blob;
    kms.enable_key_rotation(&k.key_id, Some(90)).await.unwrap();
    let st = kms.get_key_rotation_status(&k.key_id).await.unwrap();
    assert_eq!(st.next_rotation_date, Some(1_700_000_000 + 90 * DAY));

    clock.advance(90 * DAY - 1);
    assert_eq!(kms.rotate_due(clock.now()).unwrap(), 0);
    clock.advance(1);
    let report = kms.run_maintenance().await.unwrap();
    assert_eq!(
        report,
        MaintenanceReport {
            keys_deleted: 0,
            keys_rotated: 1
        }
    );
    let d = kms.describe_key(&k.key_id).await.unwrap();
    assert_eq!(d.current_material_version, 2);
    let rot = kms.list_key_rotations(&k.key_id, None, None).await.unwrap();
    assert_eq!(rot.items.len(), 1);
    assert_eq!(rot.items[0].rotation_type, "AUTOMATIC");
    assert_eq!(rot.items[0].rotation_date, clock.now());
    let st = kms.get_key_rotation_status(&k.key_id).await.unwrap();
    assert_eq!(st.next_rotation_date, Some(clock.now() + 90 * DAY));
    assert_eq!(kms.rotate_due(clock.now()).unwrap(), 0, "not due again");

    // New ciphertexts name material 2; old ones still decrypt with material 1.
    let new = kms
        .encrypt(&k.key_id, b"v2", &ctx)
        .await
        .unwrap()
        .ciphertext_blob;
    assert_eq!(ciphertext::parse(&new).unwrap().0.material_version, 2);
    assert_eq!(ciphertext::parse(&old).unwrap().0.material_version, 1);
    assert_eq!(
        &kms.decrypt(&old, &ctx, None).await.unwrap().plaintext[..],
        b"v1"
    );

    // Disabled keys are not rotated.
    kms.disable_key(&k.key_id).await.unwrap();
    clock.advance(90 * DAY);
    assert_eq!(kms.rotate_due(clock.now()).unwrap(), 0);
}

#[tokio::test]
async fn persists_across_reopen_and_checks_root_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000);
    let ctx: EncryptionContext = [("k".to_string(), "v".to_string())].into();
    let (k, blob) = {
        let kms = open_at(dir.path(), &clock);
        let k = kms
            .create_key(CreateKeyRequest {
                description: "durable".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        kms.create_alias("alias/durable", &k.arn).await.unwrap();
        kms.rotate_key_on_demand(&k.key_id).await.unwrap();
        (
            k,
            kms.encrypt("alias/durable", b"persisted", &ctx)
                .await
                .unwrap()
                .ciphertext_blob,
        )
    };
    let err = LocalKms::open_with_clock(
        dir.path(),
        root(2),
        REGION,
        ACCOUNT,
        Arc::new(clock.clone()),
    )
    .unwrap_err();
    assert!(err.message().contains("different root key"), "{err}");
    let kms = open_at(dir.path(), &clock);
    let d = kms.describe_key("alias/durable").await.unwrap();
    assert_eq!(
        (
            d.key_id.as_str(),
            d.description.as_str(),
            d.current_material_version
        ),
        (k.key_id.as_str(), "durable", 2)
    );
    assert_eq!(
        &kms.decrypt(&blob, &ctx, Some(&k.key_id))
            .await
            .unwrap()
            .plaintext[..],
        b"persisted"
    );
}

#[tokio::test]
async fn material_is_sealed_and_blobs_are_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000);
    let kms = open_at(dir.path(), &clock);
    let k = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    let id: Uuid = k.key_id.parse().unwrap();
    let stored = kms.inner.db.get(keys::material(&id, 1)).unwrap().unwrap();
    assert_eq!(stored.len(), 1 + wrap::NONCE_BYTES + 32 + wrap::TAG_BYTES);
    assert_eq!(stored[0], MATERIAL_V1);
    let material = kms.inner.material(&id, 1).unwrap().unwrap();
    assert!(
        !stored.windows(32).any(|w| w == &material[..]),
        "material is stored sealed"
    );
    // Material sealed for one key/version does not open as another.
    assert!(wrap::open(&kms.inner.root, &stored[1..], &material_aad(&id, 2)).is_err());

    let blob = kms
        .encrypt(&k.key_id, b"hello", &EncryptionContext::new())
        .await
        .unwrap()
        .ciphertext_blob;
    assert_eq!(&blob[..4], b"CKMS");
    assert_eq!(blob[4], 1);
    assert_eq!(&blob[5..21], id.as_bytes());
    assert_eq!(&blob[21..25], &1u32.to_be_bytes());
    assert_eq!(
        blob.len(),
        ciphertext::HEADER_V1_LEN + wrap::NONCE_BYTES + 5 + wrap::TAG_BYTES
    );
    // Rewriting the header's material version breaks authentication, it does not pick
    // another key.
    kms.rotate_key_on_demand(&k.key_id).await.unwrap();
    let mut forged = blob.clone();
    forged[21..25].copy_from_slice(&2u32.to_be_bytes());
    assert_err(
        kms.decrypt(&forged, &EncryptionContext::new(), None).await,
        "InvalidCiphertextException",
        "forged version",
    );
    forged[21..25].copy_from_slice(&9u32.to_be_bytes());
    assert_err(
        kms.decrypt(&forged, &EncryptionContext::new(), None).await,
        "InvalidCiphertextException",
        "unknown version",
    );
}

#[tokio::test]
async fn reserved_aliases_and_managed_keys() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000);
    let kms: Arc<dyn Kms> = Arc::new(open_at(dir.path(), &clock));
    let k = kms
        .create_key(CreateKeyRequest {
            aws_managed: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(k.key_manager, KeyManager::Aws);
    assert!(k.rotation_enabled);
    assert_err(
        kms.create_alias("alias/aws/s3", &k.key_id).await,
        "ValidationException",
        "reserved",
    );
    kms.create_reserved_alias("alias/aws/s3", &k.key_id)
        .await
        .unwrap();
    assert_eq!(
        kms.describe_key("alias/aws/s3").await.unwrap().key_id,
        k.key_id
    );
    assert_err(
        kms.delete_alias("alias/aws/s3").await,
        "ValidationException",
        "delete reserved alias",
    );
    assert_err(
        kms.disable_key(&k.key_id).await,
        "ValidationException",
        "disable managed key",
    );
    assert_err(
        kms.schedule_key_deletion(&k.key_id, None).await,
        "ValidationException",
        "delete managed key",
    );
    assert_err(
        kms.disable_key_rotation(&k.key_id).await,
        "ValidationException",
        "managed key rotation",
    );
    // Keys in other accounts or regions do not exist here.
    let foreign = k.arn.replace(ACCOUNT, "999999999999");
    assert_err(
        kms.describe_key(&foreign).await,
        "NotFoundException",
        "foreign account",
    );
    let foreign = k.arn.replace(REGION, "eu-west-1");
    assert_err(
        kms.describe_key(&foreign).await,
        "NotFoundException",
        "foreign region",
    );
}

#[test]
fn config_validation() {
    let dir = tempfile::tempdir().unwrap();
    assert!(LocalKms::open(dir.path(), root(1), REGION, "12345").is_err());
    assert!(LocalKms::open(dir.path(), root(1), "", ACCOUNT).is_err());
    assert!(LocalKms::open(dir.path(), root(1), "us east", ACCOUNT).is_err());
}

fn batch_item(blob: &[u8], ctx: &EncryptionContext, dst: &str) -> ReEncryptItem {
    ReEncryptItem {
        ciphertext_blob: blob.to_vec(),
        source_context: ctx.clone(),
        source_key_id: None,
        destination_key_id: dst.to_owned(),
        destination_context: ctx.clone(),
    }
}

#[tokio::test]
async fn re_encrypt_batch_items_fail_alone_and_match_single_calls() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_700_000_000);
    let kms = open_at(dir.path(), &clock);
    let c = EncryptionContext::from([("aws:s3:arn".into(), "arn:aws:s3:::b/k".into())]);
    let other = EncryptionContext::from([("aws:s3:arn".into(), "arn:aws:s3:::b/other".into())]);
    let a = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    let disabled = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    let doomed = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    kms.create_alias("alias/batch-dest", &a.key_id)
        .await
        .unwrap();
    let enc = |k: String, ctx: EncryptionContext| {
        let kms = kms.clone();
        async move {
            kms.encrypt(&k, b"data key", &ctx)
                .await
                .unwrap()
                .ciphertext_blob
        }
    };
    let v1 = enc(a.key_id.clone(), c.clone()).await;
    kms.rotate_key_on_demand(&a.key_id).await.unwrap();
    let v2 = enc(a.key_id.clone(), other.clone()).await;
    kms.rotate_key_on_demand(&a.key_id).await.unwrap();
    let of_disabled = enc(disabled.key_id.clone(), c.clone()).await;
    let of_doomed = enc(doomed.key_id.clone(), c.clone()).await;
    kms.disable_key(&disabled.key_id).await.unwrap();
    kms.schedule_key_deletion(&doomed.key_id, Some(7))
        .await
        .unwrap();
    clock.advance(7 * DAY);
    let mut corrupt = v1.clone();
    *corrupt.last_mut().unwrap() ^= 1;

    let items = vec![
        batch_item(&v1, &c, &a.key_id),               // 0: v1 → current
        batch_item(&v2, &other, "alias/batch-dest"),  // 1: v2 → current, by alias
        batch_item(&v1, &other, &a.key_id),           // 2: wrong context
        batch_item(&corrupt, &c, &a.arn),             // 3: tampered
        batch_item(b"not a coffer blob", &c, &a.arn), // 4: foreign blob
        batch_item(&[], &c, &a.arn),                  // 5: empty
        batch_item(&of_disabled, &c, &a.key_id),      // 6: disabled source
        batch_item(&v1, &c, &disabled.key_id),        // 7: disabled destination
        batch_item(&of_doomed, &c, &a.key_id),        // 8: source past its deletion window
        batch_item(&v1, &c, "alias/none"),            // 9: unknown destination alias
        batch_item(&v2, &other, &disabled.arn),       // 10: disabled destination again
        batch_item(&v1, &c, &a.arn),                  // 11: v1 again
    ];
    let res = kms.re_encrypt_batch(items.clone()).await.unwrap();
    assert_eq!(res.len(), items.len());
    for i in [0, 1, 11] {
        let r = res[i].as_ref().unwrap_or_else(|e| panic!("item {i}: {e}"));
        assert_eq!(
            (r.source_key_id.as_str(), r.key_id.as_str()),
            (&*a.arn, &*a.arn)
        );
        let h = ciphertext::material_of(&r.ciphertext_blob).unwrap();
        assert_eq!(
            h.material_version, 3,
            "item {i} moves to the current material"
        );
        let ctx = &items[i].destination_context;
        let d = kms.decrypt(&r.ciphertext_blob, ctx, None).await.unwrap();
        assert_eq!(&d.plaintext[..], b"data key");
    }
    let expected = [
        (2, "InvalidCiphertextException"),
        (3, "InvalidCiphertextException"),
        (4, "InvalidCiphertextException"),
        (5, "ValidationException"),
        (6, "DisabledException"),
        (7, "DisabledException"),
        (8, "NotFoundException"),
        (9, "NotFoundException"),
        (10, "DisabledException"),
    ];
    for (i, name) in expected {
        assert_err(res[i].clone(), name, &format!("batch item {i}"));
    }
    // Each item fails exactly as its single ReEncrypt does (same exception and message).
    for (i, it) in items.iter().enumerate() {
        let single = kms
            .re_encrypt(
                &it.ciphertext_blob,
                &it.source_context,
                it.source_key_id.as_deref(),
                &it.destination_key_id,
                &it.destination_context,
            )
            .await;
        match (&res[i], single) {
            (Ok(_), Ok(_)) => {}
            (Err(b), Err(s)) => {
                assert_eq!(
                    (b.aws_name(), b.message()),
                    (s.aws_name(), s.message()),
                    "item {i}"
                )
            }
            (b, s) => panic!("item {i}: batch {:?}, single {:?}", b.is_ok(), s.is_ok()),
        }
    }
    // The lookup of the doomed key deleted it, as a single call does.
    assert_err(
        kms.describe_key(&doomed.key_id).await,
        "NotFoundException",
        "key past its window",
    );
}

#[tokio::test]
async fn re_encrypt_batch_limits() {
    let dir = tempfile::tempdir().unwrap();
    let kms = LocalKms::open(dir.path(), root(1), REGION, ACCOUNT).unwrap();
    let k = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    let c = EncryptionContext::new();
    let blob = kms
        .encrypt(&k.key_id, b"x", &c)
        .await
        .unwrap()
        .ciphertext_blob;
    let full = vec![batch_item(&blob, &c, &k.key_id); MAX_REENCRYPT_BATCH];
    let res = kms.re_encrypt_batch(full.clone()).await.unwrap();
    assert_eq!(res.len(), MAX_REENCRYPT_BATCH);
    assert!(res.iter().all(Result::is_ok));
    let mut over = full;
    over.push(batch_item(&blob, &c, &k.key_id));
    assert_err(
        kms.re_encrypt_batch(over).await,
        "ValidationException",
        "more than MAX_REENCRYPT_BATCH items",
    );
    assert!(kms.re_encrypt_batch(Vec::new()).await.unwrap().is_empty());
}
