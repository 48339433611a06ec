//! The conformance suite every [`Kms`] implementation passes, and a small benchmark.
//!
//! [`suite`] runs every sub-test; each is public so a backend's test can run one alone. The
//! suite only creates its own keys and uniquely named aliases, so it can run against a shared
//! server. Where an emulator is laxer than AWS, the caller relaxes the matching check with a
//! [`Profile`] flag (and says why where it builds that profile).

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use crate::{
    EncryptionContext, KeyManager, KeyMetadata, KeyState, Kms, KmsError, ReEncryptItem,
    MAX_REENCRYPT_BATCH,
};

/// Which checks a backend can pass. [`Profile::STRICT`] is AWS's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Disabled / pending-deletion keys refuse cryptographic operations.
    pub enforces_key_state: bool,
    /// `KeyMetadata::current_material_version` counts rotations.
    pub tracks_material_versions: bool,
    /// Invalid markers are rejected with `InvalidMarkerException`.
    pub validates_markers: bool,
    /// The reserved `alias/aws/` prefix and alias-as-target are rejected on CreateAlias.
    pub validates_alias_targets: bool,
    /// Decrypt with a `KeyId` naming another key fails with `IncorrectKeyException`.
    pub checks_decrypt_key_id: bool,
    /// ListKeyRotations lists on-demand rotations.
    pub lists_rotations: bool,
    /// EnableKeyRotation keeps `RotationPeriodInDays` and GetKeyRotationStatus reports it.
    pub reports_rotation_period: bool,
    /// ListKeys and ListAliases honour `Limit` and return a `NextMarker` when truncated.
    pub paginates_lists: bool,
    /// The context is bound unambiguously: moving the boundary between a key and its value
    /// (`{"a": "bc"}` versus `{"ab": "c"}`) makes Decrypt fail.
    pub binds_context_unambiguously: bool,
}

impl Profile {
    /// Everything AWS KMS enforces.
    pub const STRICT: Profile = Profile {
        enforces_key_state: true,
        tracks_material_versions: true,
        validates_markers: true,
        validates_alias_targets: true,
        checks_decrypt_key_id: true,
        lists_rotations: true,
        reports_rotation_period: true,
        paginates_lists: true,
        binds_context_unambiguously: true,
    };
}

impl Default for Profile {
    fn default() -> Self {
        Profile::STRICT
    }
}

/// Runs every conformance sub-test with [`Profile::STRICT`].
pub async fn suite(kms: &dyn Kms) {
    suite_with(kms, Profile::STRICT).await
}

/// Runs every conformance sub-test, relaxing what `p` says the backend does not enforce.
pub async fn suite_with(kms: &dyn Kms, p: Profile) {
    keys_and_metadata(kms, p).await;
    key_forms(kms, p).await;
    aliases(kms, p).await;
    encrypt_decrypt(kms, p).await;
    context_binding(kms, p).await;
    wrong_key(kms, p).await;
    data_keys(kms, p).await;
    re_encrypt(kms, p).await;
    re_encrypt_batch(kms, p).await;
    rotation(kms, p).await;
    disabled_key(kms, p).await;
    pending_deletion(kms, p).await;
    listing(kms, p).await;
    random(kms, p).await;
}

/// Asserts `r` failed with the AWS exception `name`.
#[track_caller]
pub fn assert_err<T>(r: Result<T, KmsError>, name: &str, what: &str) {
    match r {
        Ok(_) => panic!("{what}: expected {name}, got success"),
        Err(e) => assert_eq!(e.aws_name(), name, "{what}: expected {name}, got {e}"),
    }
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A unique alias name for this run.
fn unique_alias(tag: &str) -> String {
    format!("alias/suite-{tag}-{}", uuid::Uuid::new_v4().simple())
}

async fn new_key(kms: &dyn Kms, description: &str) -> KeyMetadata {
    kms.create_key(crate::CreateKeyRequest {
        description: description.into(),
        ..Default::default()
    })
    .await
    .expect("CreateKey")
}

/// CreateKey and DescribeKey: metadata fields, unknown keys.
pub async fn keys_and_metadata(kms: &dyn Kms, p: Profile) {
    let tags = [("team".to_string(), "storage".to_string())]
        .into_iter()
        .collect();
    let m = kms
        .create_key(crate::CreateKeyRequest {
            description: "conformance key".into(),
            aws_managed: false,
            tags,
        })
        .await
        .expect("CreateKey");
    assert!(
        crate::arn::parse_key_id(&m.key_id).is_some(),
        "key id is a UUID: {}",
        m.key_id
    );
    assert!(
        crate::arn::is_account_id(&m.aws_account_id),
        "account id: {}",
        m.aws_account_id
    );
    assert!(m.arn.starts_with("arn:aws:kms:"), "{}", m.arn);
    assert!(
        m.arn
            .ends_with(&format!(":{}:key/{}", m.aws_account_id, m.key_id)),
        "{}",
        m.arn
    );
    assert!(m.enabled);
    assert_eq!(m.key_state, KeyState::Enabled);
    assert_eq!(m.key_manager, KeyManager::Customer);
    assert_eq!(m.description, "conformance key");
    assert_eq!(m.deletion_date, None);
    assert_eq!(m.pending_deletion_window_in_days, None);
    assert!(!m.rotation_enabled);
    let now = chrono::Utc::now().timestamp();
    assert!(
        (m.creation_date - now).abs() < 600,
        "creation date {} vs now {now}",
        m.creation_date
    );
    if p.tracks_material_versions {
        assert_eq!(m.current_material_version, 1);
    }
    let d = kms.describe_key(&m.key_id).await.expect("DescribeKey");
    assert_eq!(d.key_id, m.key_id);
    assert_eq!(d.arn, m.arn);
    assert_eq!(d.description, m.description);
    assert_eq!(d.creation_date, m.creation_date);

    let other = new_key(kms, "second").await;
    assert_ne!(other.key_id, m.key_id, "key ids are unique");

    let absent = uuid::Uuid::new_v4().hyphenated().to_string();
    assert_err(
        kms.describe_key(&absent).await,
        "NotFoundException",
        "DescribeKey of an unknown key",
    );
    assert_err(
        kms.describe_key("alias/suite-never-created").await,
        "NotFoundException",
        "unknown alias",
    );
    assert_err(
        kms.describe_key("not a key").await,
        "NotFoundException",
        "garbage key id",
    );
}

/// Every call accepts the four key forms: key ID, key ARN, alias, alias ARN.
pub async fn key_forms(kms: &dyn Kms, _p: Profile) {
    let m = new_key(kms, "forms").await;
    let alias = unique_alias("forms");
    kms.create_alias(&alias, &m.key_id)
        .await
        .expect("CreateAlias");
    let alias_arn = m.arn.replace(&format!("key/{}", m.key_id), &alias);
    let forms = [
        m.key_id.clone(),
        m.arn.clone(),
        alias.clone(),
        alias_arn.clone(),
    ];
    for f in &forms {
        let d = kms
            .describe_key(f)
            .await
            .unwrap_or_else(|e| panic!("DescribeKey {f}: {e}"));
        assert_eq!(d.key_id, m.key_id, "DescribeKey {f}");
        let enc = kms
            .encrypt(f, b"forms", &ctx(&[]))
            .await
            .unwrap_or_else(|e| panic!("Encrypt {f}: {e}"));
        assert_eq!(enc.key_id, m.arn, "Encrypt {f} reports the key ARN");
        for g in &forms {
            let dec = kms
                .decrypt(&enc.ciphertext_blob, &ctx(&[]), Some(g))
                .await
                .unwrap_or_else(|e| panic!("Decrypt with KeyId {g}: {e}"));
            assert_eq!(&dec.plaintext[..], b"forms");
        }
        let gdk = kms
            .generate_data_key(f, &ctx(&[]), 32)
            .await
            .unwrap_or_else(|e| panic!("GDK {f}: {e}"));
        assert_eq!(gdk.key_id, m.arn);
        kms.get_key_rotation_status(f)
            .await
            .unwrap_or_else(|e| panic!("GetKeyRotationStatus {f}: {e}"));
    }
    let aliases = kms
        .list_aliases(Some(&m.arn), None, None)
        .await
        .expect("ListAliases by key ARN");
    assert_eq!(aliases.items.len(), 1);
    assert_eq!(aliases.items[0].alias_arn, alias_arn);
}

/// CreateAlias / UpdateAlias / DeleteAlias / ListAliases.
pub async fn aliases(kms: &dyn Kms, p: Profile) {
    let a = new_key(kms, "alias a").await;
    let b = new_key(kms, "alias b").await;
    let name = unique_alias("alias");
    kms.create_alias(&name, &a.key_id)
        .await
        .expect("CreateAlias");
    assert_err(
        kms.create_alias(&name, &b.key_id).await,
        "AlreadyExistsException",
        "duplicate alias",
    );
    assert_err(
        kms.create_alias("no-prefix", &a.key_id).await,
        "ValidationException",
        "alias without alias/",
    );
    let absent = uuid::Uuid::new_v4().hyphenated().to_string();
    assert_err(
        kms.create_alias(&unique_alias("x"), &absent).await,
        "NotFoundException",
        "alias to unknown key",
    );
    if p.validates_alias_targets {
        assert_err(
            kms.create_alias(
                &format!("alias/aws/suite-{}", uuid::Uuid::new_v4().simple()),
                &a.key_id,
            )
            .await,
            "ValidationException",
            "reserved alias/aws/ prefix",
        );
        assert_err(
            kms.create_alias(&unique_alias("x"), &name).await,
            "ValidationException",
            "alias as a target",
        );
    }

    let listed = kms
        .list_aliases(Some(&a.key_id), None, None)
        .await
        .expect("ListAliases");
    assert_eq!(listed.items.len(), 1, "{listed:?}");
    let entry = &listed.items[0];
    assert_eq!(entry.alias_name, name);
    assert!(
        entry.alias_arn.ends_with(&format!(":{name}")),
        "{}",
        entry.alias_arn
    );
    assert!(
        entry.alias_arn.starts_with("arn:aws:kms:"),
        "{}",
        entry.alias_arn
    );
    assert_eq!(entry.target_key_id, a.key_id);
    assert!(listed.next_marker.is_none());
    let all = collect_aliases(kms, None).await;
    assert!(
        all.iter().any(|e| e.alias_name == name),
        "ListAliases without a key lists it"
    );

    kms.update_alias(&name, &b.arn).await.expect("UpdateAlias");
    assert_eq!(
        kms.describe_key(&name).await.unwrap().key_id,
        b.key_id,
        "alias follows UpdateAlias"
    );
    assert!(kms
        .list_aliases(Some(&a.key_id), None, None)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_err(
        kms.update_alias(&unique_alias("absent"), &b.key_id).await,
        "NotFoundException",
        "UpdateAlias of unknown alias",
    );

    kms.delete_alias(&name).await.expect("DeleteAlias");
    assert_err(
        kms.describe_key(&name).await,
        "NotFoundException",
        "deleted alias",
    );
    assert_err(
        kms.delete_alias(&name).await,
        "NotFoundException",
        "DeleteAlias twice",
    );
    // The key itself is untouched.
    kms.describe_key(&b.key_id)
        .await
        .expect("key survives its alias");
}

async fn collect_aliases(kms: &dyn Kms, key: Option<&str>) -> Vec<crate::AliasEntry> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = kms
            .list_aliases(key, Some(100), marker.as_deref())
            .await
            .expect("ListAliases");
        out.extend(page.items);
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => return out,
        }
    }
}

/// Encrypt and Decrypt round trips, sizes, and malformed ciphertext.
pub async fn encrypt_decrypt(kms: &dyn Kms, _p: Profile) {
    let k = new_key(kms, "encrypt").await;
    let c = ctx(&[("aws:s3:arn", "arn:aws:s3:::bucket/key")]);
    for len in [1usize, 32, 4096] {
        let pt: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let enc = kms.encrypt(&k.key_id, &pt, &c).await.expect("Encrypt");
        assert_eq!(enc.key_id, k.arn);
        if len >= 16 {
            assert!(
                !enc.ciphertext_blob.windows(16).any(|w| w == &pt[..16]),
                "ciphertext contains the plaintext"
            );
        }
        let dec = kms
            .decrypt(&enc.ciphertext_blob, &c, None)
            .await
            .expect("Decrypt");
        assert_eq!(&dec.plaintext[..], &pt[..]);
        assert_eq!(dec.key_id, k.arn);
    }
    let e1 = kms.encrypt(&k.key_id, b"same", &c).await.unwrap();
    let e2 = kms.encrypt(&k.key_id, b"same", &c).await.unwrap();
    assert_ne!(
        e1.ciphertext_blob, e2.ciphertext_blob,
        "encryption is randomized"
    );

    assert_err(
        kms.encrypt(&k.key_id, b"", &c).await,
        "ValidationException",
        "empty plaintext",
    );
    assert_err(
        kms.encrypt(&k.key_id, &[0u8; 4097], &c).await,
        "ValidationException",
        "4097-byte plaintext",
    );
    let absent = uuid::Uuid::new_v4().hyphenated().to_string();
    assert_err(
        kms.encrypt(&absent, b"x", &c).await,
        "NotFoundException",
        "Encrypt with unknown key",
    );

    assert_err(
        kms.decrypt(b"definitely not a ciphertext blob at all", &c, None)
            .await,
        "InvalidCiphertextException",
        "garbage",
    );
    let mut tampered = e1.ciphertext_blob.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01;
    assert_err(
        kms.decrypt(&tampered, &c, None).await,
        "InvalidCiphertextException",
        "flipped tag bit",
    );
    let mut tampered = e1.ciphertext_blob.clone();
    let mid = tampered.len() - 20;
    tampered[mid] ^= 0x80;
    assert_err(
        kms.decrypt(&tampered, &c, None).await,
        "InvalidCiphertextException",
        "flipped ciphertext bit",
    );
}

/// The encryption context is bound: any difference fails with InvalidCiphertextException.
pub async fn context_binding(kms: &dyn Kms, p: Profile) {
    let k = new_key(kms, "context").await;
    let c = ctx(&[("a", "bc"), ("bucket", "photos")]);
    let enc = kms.encrypt(&k.key_id, b"bound", &c).await.unwrap();
    let reordered: EncryptionContext = [("bucket", "photos"), ("a", "bc")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(
        &kms.decrypt(&enc.ciphertext_blob, &reordered, None)
            .await
            .unwrap()
            .plaintext[..],
        b"bound"
    );
    for (what, wrong) in [
        (
            "shifted boundary",
            ctx(&[("ab", "c"), ("bucket", "photos")]),
        ),
        ("empty context", ctx(&[])),
        ("missing pair", ctx(&[("a", "bc")])),
        (
            "extra pair",
            ctx(&[("a", "bc"), ("bucket", "photos"), ("x", "y")]),
        ),
        ("changed value", ctx(&[("a", "bc"), ("bucket", "photos2")])),
    ] {
        if what == "shifted boundary" && !p.binds_context_unambiguously {
            continue;
        }
        assert_err(
            kms.decrypt(&enc.ciphertext_blob, &wrong, None).await,
            "InvalidCiphertextException",
            what,
        );
    }
    let plain = kms
        .encrypt(&k.key_id, b"no context", &ctx(&[]))
        .await
        .unwrap();
    assert_err(
        kms.decrypt(&plain.ciphertext_blob, &ctx(&[("a", "b")]), None)
            .await,
        "InvalidCiphertextException",
        "context added",
    );
}

/// Decrypt with a `KeyId` that did not encrypt fails with IncorrectKeyException.
pub async fn wrong_key(kms: &dyn Kms, p: Profile) {
    let a = new_key(kms, "wrong a").await;
    let b = new_key(kms, "wrong b").await;
    let enc = kms.encrypt(&a.key_id, b"for a", &ctx(&[])).await.unwrap();
    if p.checks_decrypt_key_id {
        assert_err(
            kms.decrypt(&enc.ciphertext_blob, &ctx(&[]), Some(&b.key_id))
                .await,
            "IncorrectKeyException",
            "Decrypt with key B",
        );
        assert_err(
            kms.decrypt(&enc.ciphertext_blob, &ctx(&[]), Some(&b.arn))
                .await,
            "IncorrectKeyException",
            "Decrypt with key B's ARN",
        );
    }
    let dec = kms
        .decrypt(&enc.ciphertext_blob, &ctx(&[]), Some(&a.arn))
        .await
        .unwrap();
    assert_eq!(dec.key_id, a.arn);
}

/// GenerateDataKey and GenerateDataKeyWithoutPlaintext: sizes, bounds, unwrap.
pub async fn data_keys(kms: &dyn Kms, _p: Profile) {
    let k = new_key(kms, "data keys").await;
    let c = ctx(&[("aws:s3:arn", "arn:aws:s3:::b/o")]);
    for n in [1usize, 16, 32, 64, 1024] {
        let g = kms
            .generate_data_key(&k.key_id, &c, n)
            .await
            .unwrap_or_else(|e| panic!("GDK {n}: {e}"));
        assert_eq!(g.key_id, k.arn);
        let pt = g.plaintext.expect("GenerateDataKey returns the plaintext");
        assert_eq!(pt.len(), n);
        let dec = kms
            .decrypt(&g.ciphertext_blob, &c, None)
            .await
            .expect("Decrypt data key");
        assert_eq!(&dec.plaintext[..], &pt[..]);
    }
    let g1 = kms.generate_data_key(&k.key_id, &c, 32).await.unwrap();
    let g2 = kms.generate_data_key(&k.key_id, &c, 32).await.unwrap();
    assert_ne!(
        g1.plaintext.as_deref(),
        g2.plaintext.as_deref(),
        "data keys are random"
    );
    let w = kms
        .generate_data_key_without_plaintext(&k.key_id, &c, 32)
        .await
        .expect("GDK without plaintext");
    assert!(w.plaintext.is_none());
    assert_eq!(w.key_id, k.arn);
    assert_eq!(
        kms.decrypt(&w.ciphertext_blob, &c, None)
            .await
            .unwrap()
            .plaintext
            .len(),
        32
    );
    for n in [0usize, 1025] {
        assert_err(
            kms.generate_data_key(&k.key_id, &c, n).await,
            "ValidationException",
            "GDK out of range",
        );
        assert_err(
            kms.generate_data_key_without_plaintext(&k.key_id, &c, n)
                .await,
            "ValidationException",
            "GDKWP out of range",
        );
    }
    let absent = uuid::Uuid::new_v4().hyphenated().to_string();
    assert_err(
        kms.generate_data_key(&absent, &c, 32).await,
        "NotFoundException",
        "GDK with unknown key",
    );
}

/// ReEncrypt across keys and contexts.
pub async fn re_encrypt(kms: &dyn Kms, p: Profile) {
    let a = new_key(kms, "re-encrypt a").await;
    let b = new_key(kms, "re-encrypt b").await;
    let ca = ctx(&[("aws:s3:arn", "arn:aws:s3:::bucket/old")]);
    let cb = ctx(&[("aws:s3:arn", "arn:aws:s3:::bucket/new"), ("extra", "1")]);
    let g = kms.generate_data_key(&a.key_id, &ca, 32).await.unwrap();
    let dek = g.plaintext.clone().unwrap();

    let r = kms
        .re_encrypt(&g.ciphertext_blob, &ca, None, &b.key_id, &cb)
        .await
        .expect("ReEncrypt a→b");
    assert_eq!(r.source_key_id, a.arn);
    assert_eq!(r.key_id, b.arn);
    let dec = kms
        .decrypt(&r.ciphertext_blob, &cb, None)
        .await
        .expect("Decrypt re-encrypted");
    assert_eq!(&dec.plaintext[..], &dek[..]);
    assert_eq!(dec.key_id, b.arn);
    assert_err(
        kms.decrypt(&r.ciphertext_blob, &ca, None).await,
        "InvalidCiphertextException",
        "old context on new blob",
    );
    if p.checks_decrypt_key_id {
        assert_err(
            kms.decrypt(&r.ciphertext_blob, &cb, Some(&a.key_id)).await,
            "IncorrectKeyException",
            "new blob with old key",
        );
    }

    // Same key, new context only.
    let r2 = kms
        .re_encrypt(&g.ciphertext_blob, &ca, Some(&a.arn), &a.key_id, &cb)
        .await
        .expect("ReEncrypt same key");
    assert_eq!(
        &kms.decrypt(&r2.ciphertext_blob, &cb, None)
            .await
            .unwrap()
            .plaintext[..],
        &dek[..]
    );

    assert_err(
        kms.re_encrypt(&g.ciphertext_blob, &cb, None, &b.key_id, &cb)
            .await,
        "InvalidCiphertextException",
        "wrong source context",
    );
    if p.checks_decrypt_key_id {
        assert_err(
            kms.re_encrypt(&g.ciphertext_blob, &ca, Some(&b.key_id), &b.key_id, &cb)
                .await,
            "IncorrectKeyException",
            "wrong source key",
        );
    }
    let absent = uuid::Uuid::new_v4().hyphenated().to_string();
    assert_err(
        kms.re_encrypt(&g.ciphertext_blob, &ca, None, &absent, &cb)
            .await,
        "NotFoundException",
        "unknown destination",
    );
    if p.enforces_key_state {
        kms.disable_key(&b.key_id).await.unwrap();
        assert_err(
            kms.re_encrypt(&g.ciphertext_blob, &ca, None, &b.key_id, &cb)
                .await,
            "DisabledException",
            "disabled destination",
        );
        assert_err(
            kms.re_encrypt(&r.ciphertext_blob, &cb, None, &a.key_id, &ca)
                .await,
            "DisabledException",
            "disabled source",
        );
        kms.enable_key(&b.key_id).await.unwrap();
    }
}

/// ReEncryptBatch: results in item order, each item failing on its own as ReEncrypt would.
pub async fn re_encrypt_batch(kms: &dyn Kms, p: Profile) {
    let a = new_key(kms, "re-encrypt batch a").await;
    let b = new_key(kms, "re-encrypt batch b").await;
    let ca = ctx(&[("aws:s3:arn", "arn:aws:s3:::bucket/one")]);
    let c2 = ctx(&[("aws:s3:arn", "arn:aws:s3:::bucket/two")]);
    let g1 = kms.generate_data_key(&a.key_id, &ca, 32).await.unwrap();
    let g2 = kms.generate_data_key(&a.key_id, &c2, 32).await.unwrap();
    let item = |blob: &[u8], src: &EncryptionContext, dst: &str| ReEncryptItem {
        ciphertext_blob: blob.to_vec(),
        source_context: src.clone(),
        source_key_id: None,
        destination_key_id: dst.to_owned(),
        destination_context: src.clone(),
    };
    let absent = uuid::Uuid::new_v4().hyphenated().to_string();
    let mut wrong_source = item(&g1.ciphertext_blob, &ca, &b.arn);
    wrong_source.source_key_id = Some(b.key_id.clone());
    let mut with_source = item(&g2.ciphertext_blob, &c2, &b.key_id);
    with_source.source_key_id = Some(a.arn.clone());
    let mut items = vec![
        item(&g1.ciphertext_blob, &ca, &b.key_id),
        item(&g1.ciphertext_blob, &c2, &b.key_id),
        item(&g2.ciphertext_blob, &c2, &b.arn),
        item(&g1.ciphertext_blob, &ca, &absent),
        with_source,
    ];
    if p.checks_decrypt_key_id {
        items.push(wrong_source);
    }
    let res = kms
        .re_encrypt_batch(items.clone())
        .await
        .expect("ReEncryptBatch");
    assert_eq!(res.len(), items.len());
    for (i, (g, c)) in [(0, (&g1, &ca)), (2, (&g2, &c2)), (4, (&g2, &c2))] {
        let r = res[i].as_ref().unwrap_or_else(|e| panic!("item {i}: {e}"));
        assert_eq!(r.source_key_id, a.arn, "item {i}");
        assert_eq!(r.key_id, b.arn, "item {i}");
        let d = kms
            .decrypt(&r.ciphertext_blob, c, None)
            .await
            .unwrap_or_else(|e| panic!("decrypting item {i}: {e}"));
        assert_eq!(d.key_id, b.arn, "item {i}");
        assert_eq!(&d.plaintext[..], &g.plaintext.as_ref().unwrap()[..]);
    }
    assert_err(
        res[1].clone(),
        "InvalidCiphertextException",
        "batch item with the wrong context",
    );
    assert_err(
        res[3].clone(),
        "NotFoundException",
        "batch item with an unknown destination",
    );
    if p.checks_decrypt_key_id {
        assert_err(
            res[5].clone(),
            "IncorrectKeyException",
            "batch item naming another source key",
        );
    }
    assert!(kms.re_encrypt_batch(Vec::new()).await.unwrap().is_empty());
    let over = vec![items[0].clone(); MAX_REENCRYPT_BATCH + 1];
    assert_err(
        kms.re_encrypt_batch(over).await,
        "ValidationException",
        "batch over the maximum",
    );
}

/// Rotation settings, on-demand rotation, old ciphertext still decrypts, ListKeyRotations.
pub async fn rotation(kms: &dyn Kms, p: Profile) {
    let k = new_key(kms, "rotation").await;
    let c = ctx(&[("purpose", "rotation")]);
    let st = kms
        .get_key_rotation_status(&k.key_id)
        .await
        .expect("GetKeyRotationStatus");
    assert!(!st.enabled);
    kms.enable_key_rotation(&k.key_id, Some(90))
        .await
        .expect("EnableKeyRotation");
    let st = kms.get_key_rotation_status(&k.arn).await.unwrap();
    assert!(st.enabled);
    if p.reports_rotation_period {
        assert_eq!(st.rotation_period_in_days, Some(90));
    }
    if let Some(next) = st.next_rotation_date {
        let expect = chrono::Utc::now().timestamp() + 90 * 86_400;
        assert!(
            (next - expect).abs() < 86_400 + 600,
            "next rotation {next}, expected about {expect}"
        );
    }
    assert!(kms.describe_key(&k.key_id).await.unwrap().rotation_enabled);
    for bad in [89u32, 2561] {
        assert_err(
            kms.enable_key_rotation(&k.key_id, Some(bad)).await,
            "ValidationException",
            "rotation period bounds",
        );
    }
    kms.disable_key_rotation(&k.key_id)
        .await
        .expect("DisableKeyRotation");
    assert!(
        !kms.get_key_rotation_status(&k.key_id)
            .await
            .unwrap()
            .enabled
    );

    let old = kms
        .encrypt(&k.key_id, b"before rotation", &c)
        .await
        .unwrap();
    let id = kms
        .rotate_key_on_demand(&k.key_id)
        .await
        .expect("RotateKeyOnDemand");
    assert!(
        id == k.key_id || id == k.arn,
        "RotateKeyOnDemand returns the key: {id}"
    );
    if p.tracks_material_versions {
        assert_eq!(
            kms.describe_key(&k.key_id)
                .await
                .unwrap()
                .current_material_version,
            2
        );
    }
    let new = kms.encrypt(&k.key_id, b"after rotation", &c).await.unwrap();
    assert_eq!(
        &kms.decrypt(&old.ciphertext_blob, &c, None)
            .await
            .expect("old ciphertext after rotation")
            .plaintext[..],
        b"before rotation"
    );
    assert_eq!(
        &kms.decrypt(&new.ciphertext_blob, &c, None)
            .await
            .unwrap()
            .plaintext[..],
        b"after rotation"
    );
    let re = kms
        .re_encrypt(&old.ciphertext_blob, &c, None, &k.key_id, &c)
        .await
        .expect("ReEncrypt onto current material");
    assert_eq!(
        &kms.decrypt(&re.ciphertext_blob, &c, None)
            .await
            .unwrap()
            .plaintext[..],
        b"before rotation"
    );

    kms.rotate_key_on_demand(&k.key_id)
        .await
        .expect("second rotation");
    if p.lists_rotations {
        let all = kms
            .list_key_rotations(&k.key_id, None, None)
            .await
            .expect("ListKeyRotations");
        assert_eq!(all.items.len(), 2, "{all:?}");
        assert!(all.items.iter().all(|r| r.rotation_type == "ON_DEMAND"));
        assert!(all.next_marker.is_none());
        let first = kms
            .list_key_rotations(&k.key_id, Some(1), None)
            .await
            .unwrap();
        assert_eq!(first.items.len(), 1);
        let marker = first.next_marker.expect("truncated page has a marker");
        let second = kms
            .list_key_rotations(&k.key_id, Some(1), Some(&marker))
            .await
            .unwrap();
        assert_eq!(second.items.len(), 1);
        assert_ne!(first.items[0], second.items[0]);
        assert!(second.next_marker.is_none());
        if p.tracks_material_versions {
            assert_eq!(first.items[0].material_version, 2);
            assert_eq!(second.items[0].material_version, 3);
        }
    }
    assert_eq!(
        &kms.decrypt(&old.ciphertext_blob, &c, None)
            .await
            .unwrap()
            .plaintext[..],
        b"before rotation"
    );
}

/// Disabled keys refuse cryptographic operations with DisabledException; EnableKey restores.
pub async fn disabled_key(kms: &dyn Kms, p: Profile) {
    let k = new_key(kms, "disable").await;
    let c = ctx(&[]);
    let enc = kms.encrypt(&k.key_id, b"while enabled", &c).await.unwrap();
    kms.disable_key(&k.key_id).await.expect("DisableKey");
    let d = kms.describe_key(&k.key_id).await.unwrap();
    assert_eq!(d.key_state, KeyState::Disabled);
    assert!(!d.enabled);
    if p.enforces_key_state {
        assert_err(
            kms.encrypt(&k.key_id, b"x", &c).await,
            "DisabledException",
            "Encrypt on disabled key",
        );
        assert_err(
            kms.decrypt(&enc.ciphertext_blob, &c, None).await,
            "DisabledException",
            "Decrypt on disabled key",
        );
        assert_err(
            kms.generate_data_key(&k.key_id, &c, 32).await,
            "DisabledException",
            "GDK on disabled key",
        );
        assert_err(
            kms.generate_data_key_without_plaintext(&k.key_id, &c, 32)
                .await,
            "DisabledException",
            "GDKWP on disabled key",
        );
        assert_err(
            kms.rotate_key_on_demand(&k.key_id).await,
            "DisabledException",
            "rotate a disabled key",
        );
    }
    kms.disable_key(&k.key_id)
        .await
        .expect("DisableKey is idempotent");
    kms.enable_key(&k.key_id).await.expect("EnableKey");
    let d = kms.describe_key(&k.key_id).await.unwrap();
    assert_eq!(d.key_state, KeyState::Enabled);
    assert!(d.enabled);
    assert_eq!(
        &kms.decrypt(&enc.ciphertext_blob, &c, None)
            .await
            .unwrap()
            .plaintext[..],
        b"while enabled"
    );
    kms.enable_key(&k.key_id)
        .await
        .expect("EnableKey is idempotent");
    let absent = uuid::Uuid::new_v4().hyphenated().to_string();
    assert_err(
        kms.disable_key(&absent).await,
        "NotFoundException",
        "DisableKey of unknown key",
    );
}

/// ScheduleKeyDeletion / CancelKeyDeletion and the PendingDeletion state.
pub async fn pending_deletion(kms: &dyn Kms, p: Profile) {
    let k = new_key(kms, "deletion").await;
    let c = ctx(&[]);
    let enc = kms.encrypt(&k.key_id, b"doomed", &c).await.unwrap();
    for bad in [6u32, 31] {
        assert_err(
            kms.schedule_key_deletion(&k.key_id, Some(bad)).await,
            "ValidationException",
            "window bounds",
        );
    }
    let before = chrono::Utc::now().timestamp();
    let m = kms
        .schedule_key_deletion(&k.key_id, Some(7))
        .await
        .expect("ScheduleKeyDeletion");
    assert_eq!(m.key_state, KeyState::PendingDeletion);
    assert!(!m.enabled);
    assert_eq!(m.pending_deletion_window_in_days, Some(7));
    let dd = m.deletion_date.expect("DeletionDate");
    assert!(
        (dd - (before + 7 * 86_400)).abs() < 86_400 + 600,
        "deletion date {dd}"
    );
    let d = kms.describe_key(&k.arn).await.unwrap();
    assert_eq!(d.key_state, KeyState::PendingDeletion);
    assert_eq!(d.deletion_date, Some(dd));
    if p.enforces_key_state {
        assert_err(
            kms.encrypt(&k.key_id, b"x", &c).await,
            "KMSInvalidStateException",
            "Encrypt pending deletion",
        );
        assert_err(
            kms.decrypt(&enc.ciphertext_blob, &c, None).await,
            "KMSInvalidStateException",
            "Decrypt pending deletion",
        );
        assert_err(
            kms.generate_data_key(&k.key_id, &c, 32).await,
            "KMSInvalidStateException",
            "GDK pending deletion",
        );
        assert_err(
            kms.enable_key(&k.key_id).await,
            "KMSInvalidStateException",
            "EnableKey pending deletion",
        );
        assert_err(
            kms.disable_key(&k.key_id).await,
            "KMSInvalidStateException",
            "DisableKey pending deletion",
        );
        assert_err(
            kms.schedule_key_deletion(&k.key_id, Some(7)).await,
            "KMSInvalidStateException",
            "schedule twice",
        );
        assert_err(
            kms.create_alias(&unique_alias("doomed"), &k.key_id).await,
            "KMSInvalidStateException",
            "alias to doomed key",
        );
    }
    let m = kms
        .cancel_key_deletion(&k.key_id)
        .await
        .expect("CancelKeyDeletion");
    assert_eq!(
        m.key_state,
        KeyState::Disabled,
        "CancelKeyDeletion leaves the key Disabled"
    );
    let d = kms.describe_key(&k.key_id).await.unwrap();
    assert_eq!(d.key_state, KeyState::Disabled);
    assert_eq!(d.deletion_date, None);
    if p.enforces_key_state {
        assert_err(
            kms.cancel_key_deletion(&k.key_id).await,
            "KMSInvalidStateException",
            "cancel when not pending",
        );
        assert_err(
            kms.decrypt(&enc.ciphertext_blob, &c, None).await,
            "DisabledException",
            "Decrypt after cancel",
        );
    }
    kms.enable_key(&k.key_id).await.unwrap();
    assert_eq!(
        &kms.decrypt(&enc.ciphertext_blob, &c, None)
            .await
            .unwrap()
            .plaintext[..],
        b"doomed"
    );

    let m = kms
        .schedule_key_deletion(&k.key_id, None)
        .await
        .expect("default window");
    assert_eq!(m.pending_deletion_window_in_days, Some(30));
}

/// ListKeys / ListAliases pagination and limits.
pub async fn listing(kms: &dyn Kms, p: Profile) {
    let mut mine = Vec::new();
    for i in 0..3 {
        mine.push(new_key(kms, &format!("list {i}")).await);
    }
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = kms
            .list_keys(Some(2), marker.as_deref())
            .await
            .expect("ListKeys");
        if p.paginates_lists {
            assert!(page.items.len() <= 2);
        }
        pages += 1;
        seen.extend(page.items);
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
        assert!(pages < 100_000, "ListKeys pagination does not end");
    }
    let ids: std::collections::HashSet<_> = seen.iter().map(|e| e.key_id.clone()).collect();
    assert_eq!(ids.len(), seen.len(), "no key listed twice");
    for m in &mine {
        let e = seen
            .iter()
            .find(|e| e.key_id == m.key_id)
            .unwrap_or_else(|| panic!("ListKeys misses {}", m.key_id));
        assert_eq!(e.key_arn, m.arn);
    }
    if p.paginates_lists {
        assert!(pages >= 2, "3 keys with limit 2 take at least 2 pages");
    }
    for bad in [0u32, 1001] {
        assert_err(
            kms.list_keys(Some(bad), None).await,
            "ValidationException",
            "ListKeys limit",
        );
    }
    if p.validates_markers {
        assert_err(
            kms.list_keys(None, Some("not-a-marker")).await,
            "InvalidMarkerException",
            "ListKeys marker",
        );
    }

    let names: Vec<String> = (0..3).map(|i| unique_alias(&format!("list{i}"))).collect();
    for n in &names {
        kms.create_alias(n, &mine[0].key_id).await.unwrap();
    }
    let mut got = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = kms
            .list_aliases(Some(&mine[0].key_id), Some(1), marker.as_deref())
            .await
            .expect("ListAliases page");
        if p.paginates_lists {
            assert!(page.items.len() <= 1);
        }
        got.extend(page.items.into_iter().map(|a| a.alias_name));
        match page.next_marker {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    got.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(got, want);
}

/// GenerateRandom.
pub async fn random(kms: &dyn Kms, _p: Profile) {
    for n in [1usize, 32, 1024] {
        assert_eq!(
            kms.generate_random(n).await.expect("GenerateRandom").len(),
            n
        );
    }
    assert_ne!(
        kms.generate_random(32).await.unwrap(),
        kms.generate_random(32).await.unwrap()
    );
    for n in [0usize, 1025] {
        assert_err(
            kms.generate_random(n).await,
            "ValidationException",
            "GenerateRandom bounds",
        );
    }
}

/// Operations per second measured by [`bench_ops`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchResult {
    /// GenerateDataKey (32 bytes, with an S3-like context).
    pub gdk_per_s: f64,
    /// Decrypt of such a data key.
    pub decrypt_per_s: f64,
    /// ReEncrypt of such a data key to another key and context.
    pub reencrypt_per_s: f64,
}

/// Measures GenerateDataKey, Decrypt and ReEncrypt, `n` calls each, one at a time.
pub async fn bench_ops(kms: &dyn Kms, n: usize) -> BenchResult {
    bench_ops_with(kms, n, 1).await
}

/// [`bench_ops`] with `concurrency` calls in flight.
pub async fn bench_ops_with(kms: &dyn Kms, n: usize, concurrency: usize) -> BenchResult {
    let n = n.max(1);
    let concurrency = concurrency.max(1);
    let a = new_key(kms, "bench a").await;
    let b = new_key(kms, "bench b").await;
    let c = ctx(&[("aws:s3:arn", "arn:aws:s3:::bench/object")]);
    let c2 = ctx(&[("aws:s3:arn", "arn:aws:s3:::bench/object2")]);

    let t = Instant::now();
    let blobs: Vec<Vec<u8>> = stream::iter(0..n)
        .map(|_| kms.generate_data_key(&a.key_id, &c, 32))
        .buffer_unordered(concurrency)
        .map(|r| r.expect("GenerateDataKey").ciphertext_blob)
        .collect()
        .await;
    let gdk = rate(n, t.elapsed());

    let t = Instant::now();
    stream::iter(&blobs)
        .map(|blob| kms.decrypt(blob, &c, None))
        .buffer_unordered(concurrency)
        .for_each(|r| {
            assert_eq!(r.expect("Decrypt").plaintext.len(), 32);
            async {}
        })
        .await;
    let decrypt = rate(n, t.elapsed());

    let t = Instant::now();
    stream::iter(&blobs)
        .map(|blob| kms.re_encrypt(blob, &c, None, &b.key_id, &c2))
        .buffer_unordered(concurrency)
        .for_each(|r| {
            r.expect("ReEncrypt");
            async {}
        })
        .await;
    let reencrypt = rate(n, t.elapsed());

    BenchResult {
        gdk_per_s: gdk,
        decrypt_per_s: decrypt,
        reencrypt_per_s: reencrypt,
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}
