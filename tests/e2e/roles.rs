//! The split roles as separate processes: one `coffer meta`, `coffer kms`, `coffer blob` and two
//! `coffer gateway`s started at once. Objects written through one gateway (single PUTs and
//! multipart uploads, SSE-S3 and SSE-KMS) read back byte-identical through the other; both
//! gateways settled on one SSE-S3 key. When the blob node is killed, PUT and GET answer 503
//! quickly; once it is back on its address and data directory, everything works again.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ObjectEncryption, ServerSideEncryption,
    SsekmsEncryption,
};
use coffer_tests::cluster::reserve_port;
use coffer_tests::{
    body_of, bucket_name, coffer_bin, get_bytes, http_status, os_args, s3_client,
    s3_client_no_retry, start_kms, start_single_meta, Process, ACCESS_KEY, SECRET_KEY,
};

fn start_blob(dir: &Path, tag: &str, addr: &str) -> Process {
    let data = dir.join("blob-data");
    let data = data.to_str().unwrap();
    Process::start(
        dir,
        tag,
        &os_args(&["blob", "--data-dir", data, "--listen", addr]),
    )
}

/// Uploads `data` in parts of 5 MiB (the last one shorter) and completes the upload.
async fn multipart_put(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    data: &[u8],
    sse: ServerSideEncryption,
    kms_key: Option<&str>,
) {
    let upload = s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .server_side_encryption(sse.clone())
        .set_ssekms_key_id(kms_key.map(str::to_owned))
        .send()
        .await
        .expect("CreateMultipartUpload");
    assert_eq!(upload.server_side_encryption(), Some(&sse));
    let upload_id = upload.upload_id().unwrap();
    let mut parts = Vec::new();
    for (i, piece) in data.chunks(5 << 20).enumerate() {
        let n = i as i32 + 1;
        let part = s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(n)
            .body(ByteStream::from(piece.to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("UploadPart {n}: {e:?}"));
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(part.e_tag().unwrap())
                .build(),
        );
    }
    s3.complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("CompleteMultipartUpload");
}

/// Asserts that `r` failed with a 503 within `limit` of `started`.
fn assert_fast_503<T: std::fmt::Debug, E: std::fmt::Debug>(
    what: &str,
    r: Result<T, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    started: Instant,
    limit: Duration,
) {
    let elapsed = started.elapsed();
    let err = r.expect_err(&format!("{what} must fail while the blob node is down"));
    let status = err
        .raw_response()
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|| panic!("{what}: no HTTP response: {err:?}"));
    assert_eq!(status, 503, "{what}: {err:?}");
    assert!(
        elapsed < limit,
        "{what} took {elapsed:?} to fail (limit {limit:?})"
    );
}

/// The `SSE-S3 key:` line of a gateway's banner.
fn sse_s3_key_of(dir: &Path, tag: &str) -> String {
    let out = std::fs::read_to_string(dir.join(format!("stdout-{tag}.log"))).unwrap();
    out.lines()
        .find_map(|l| l.trim().strip_prefix("SSE-S3 key:"))
        .unwrap_or_else(|| panic!("no SSE-S3 key line in {tag}'s banner:\n{out}"))
        .trim()
        .to_owned()
}

/// `coffer admin key list --json` against the KMS's JSON API.
fn kms_keys(kms_http: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(coffer_bin())
        .args(["admin", "--json", "--endpoint"])
        .arg(format!("http://{kms_http}"))
        .args(["key", "list"])
        .env("COFFER_ACCESS_KEY_ID", ACCESS_KEY)
        .env("COFFER_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .expect("coffer admin");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .expect("a JSON array of keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_over_separate_roles() {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-e2e-roles-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path();

    let (_meta, meta_addr) = start_single_meta(dir);
    let kms = start_kms(dir);
    let default_key = kms.ready_str("default_kms_key_arn");
    let blob_addr = reserve_port();
    let mut blob = start_blob(dir, "blob-0", &blob_addr);
    assert_eq!(blob.ready_str("listen"), blob_addr);

    // Both gateways start at once, racing to settle the SSE-S3 key.
    let gateway_args = os_args(&[
        "gateway",
        "--meta",
        &meta_addr,
        "--kms",
        &format!("http://{}", kms.ready_str("grpc")),
        "--blob",
        &format!("http://{blob_addr}"),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let (gw1, gw2) = std::thread::scope(|s| {
        let a = s.spawn(|| Process::start(dir, "gw1", &gateway_args));
        let b = s.spawn(|| Process::start(dir, "gw2", &gateway_args));
        (a.join().unwrap(), b.join().unwrap())
    });
    let key1 = sse_s3_key_of(dir, "gw1");
    assert_eq!(key1, sse_s3_key_of(dir, "gw2"), "the gateways disagree");
    // The alias settled the race: it names the key both use. A gateway that lost the race may
    // have created a spare key first; AWS managed keys cannot be deleted, so it stays, unused
    // and without the alias.
    let keys = kms_keys(&kms.ready_str("http"));
    let aliased: Vec<_> = keys
        .iter()
        .filter(|k| {
            k["Aliases"]
                .as_array()
                .unwrap()
                .contains(&"alias/coffer-sse-s3".into())
        })
        .collect();
    assert_eq!(aliased.len(), 1, "{keys:?}");
    assert_eq!(aliased[0]["Arn"], key1.as_str());
    assert_eq!(aliased[0]["Description"], "Coffer S3-managed key (SSE-S3)");
    let candidates = keys
        .iter()
        .filter(|k| k["Description"] == "Coffer S3-managed key (SSE-S3)")
        .count();
    assert!((1..=2).contains(&candidates), "{keys:?}");
    for gw in [&gw1, &gw2] {
        assert_eq!(http_status(&gw.ready_str("admin"), "/health/ready"), 200);
    }
    let e1 = format!("http://{}", gw1.ready_str("s3"));
    let e2 = format!("http://{}", gw2.ready_str("s3"));
    let (s1, s2) = (s3_client(&e1, true).await, s3_client(&e2, true).await);

    let bucket = bucket_name("roles");
    s1.create_bucket().bucket(&bucket).send().await.unwrap();

    // Single PUTs through gateway 1: SSE-S3 (the default) and SSE-KMS.
    let plain = body_of((3 << 20) + 17, 1);
    let put = s1
        .put_object()
        .bucket(&bucket)
        .key("sse-s3")
        .body(ByteStream::from(plain.clone()))
        .send()
        .await
        .expect("SSE-S3 PUT");
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    let kms_body = body_of(200_001, 2);
    let put = s1
        .put_object()
        .bucket(&bucket)
        .key("sse-kms")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&default_key)
        .body(ByteStream::from(kms_body.clone()))
        .send()
        .await
        .expect("SSE-KMS PUT");
    assert_eq!(put.ssekms_key_id(), Some(default_key.as_str()));

    // Multipart uploads through gateway 1.
    let mp_s3 = body_of((11 << 20) + 5, 3);
    multipart_put(
        &s1,
        &bucket,
        "mp-sse-s3",
        &mp_s3,
        ServerSideEncryption::Aes256,
        None,
    )
    .await;
    let mp_kms = body_of((6 << 20) + 99, 4);
    multipart_put(
        &s1,
        &bucket,
        "mp-sse-kms",
        &mp_kms,
        ServerSideEncryption::AwsKms,
        Some(&default_key),
    )
    .await;

    // Everything reads back byte-identical through gateway 2, whole and by range.
    assert_eq!(get_bytes(&s2, &bucket, "sse-s3").await, plain);
    assert_eq!(get_bytes(&s2, &bucket, "sse-kms").await, kms_body);
    assert_eq!(get_bytes(&s2, &bucket, "mp-sse-s3").await, mp_s3);
    assert_eq!(get_bytes(&s2, &bucket, "mp-sse-kms").await, mp_kms);
    let (from, to) = ((5 << 20) - 10, (5 << 20) + 10);
    let ranged = s2
        .get_object()
        .bucket(&bucket)
        .key("mp-sse-s3")
        .range(format!("bytes={from}-{to}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ranged.body.collect().await.unwrap().into_bytes().as_ref(),
        &mp_s3[from..=to]
    );
    let head = s2
        .head_object()
        .bucket(&bucket)
        .key("mp-sse-kms")
        .send()
        .await
        .unwrap();
    assert_eq!(head.ssekms_key_id(), Some(default_key.as_str()));

    // UpdateObjectEncryption through gateway 2, seen through gateway 1.
    s2.update_object_encryption()
        .bucket(&bucket)
        .key("sse-s3")
        .object_encryption(ObjectEncryption::Ssekms(
            SsekmsEncryption::builder()
                .kms_key_arn(&default_key)
                .build()
                .unwrap(),
        ))
        .send()
        .await
        .expect("UpdateObjectEncryption");
    let after = s1
        .get_object()
        .bucket(&bucket)
        .key("sse-s3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(after.ssekms_key_id(), Some(default_key.as_str()));
    assert_eq!(
        after.body.collect().await.unwrap().into_bytes().as_ref(),
        &plain[..]
    );

    // DELETE through gateway 2; gone through gateway 1.
    s2.delete_object()
        .bucket(&bucket)
        .key("mp-sse-kms")
        .send()
        .await
        .unwrap();
    let err = s1
        .get_object()
        .bucket(&bucket)
        .key("mp-sse-kms")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));

    // The blob node dies: PUT and GET answer 503 quickly, through either gateway; listing
    // needs no blob.
    blob.kill_with(9);
    let limit = Duration::from_secs(10);
    for (i, endpoint) in [&e1, &e2].into_iter().enumerate() {
        let fast = s3_client_no_retry(endpoint);
        let t = Instant::now();
        let r = fast
            .put_object()
            .bucket(&bucket)
            .key(format!("while-down-{i}"))
            .body(ByteStream::from(body_of(2 << 20, 10 + i as u64)))
            .send()
            .await;
        assert_fast_503(&format!("PUT via gateway {}", i + 1), r, t, limit);
        let t = Instant::now();
        let r = fast
            .get_object()
            .bucket(&bucket)
            .key("sse-kms")
            .send()
            .await;
        assert_fast_503(&format!("GET via gateway {}", i + 1), r, t, limit);
        let listed = fast
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .expect("listing needs no blob");
        assert_eq!(listed.key_count(), Some(3));
    }

    // Back on the same address and data directory: the same gateways work again.
    let _blob = start_blob(dir, "blob-1", &blob_addr);
    assert_eq!(get_bytes(&s2, &bucket, "sse-kms").await, kms_body);
    let again = body_of(70_000, 20);
    s2.put_object()
        .bucket(&bucket)
        .key("after-restart")
        .body(ByteStream::from(again.clone()))
        .send()
        .await
        .expect("PUT after the blob node restarted");
    assert_eq!(get_bytes(&s1, &bucket, "after-restart").await, again);
    assert_eq!(get_bytes(&s1, &bucket, "mp-sse-s3").await, mp_s3);
}

/// `coffer gateway` refuses to start without its access key pair, with a clear message.
#[test]
fn gateway_needs_credentials_from_the_environment() {
    let out = std::process::Command::new(coffer_bin())
        .args([
            "gateway",
            "--meta",
            "127.0.0.1:1",
            "--kms",
            "http://127.0.0.1:1",
            "--blob",
            "http://127.0.0.1:1",
        ])
        .env_remove("COFFER_ACCESS_KEY_ID")
        .env_remove("COFFER_SECRET_ACCESS_KEY")
        .output()
        .expect("coffer gateway");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("COFFER_ACCESS_KEY_ID") && stderr.contains("COFFER_SECRET_ACCESS_KEY"),
        "{stderr}"
    );
}
