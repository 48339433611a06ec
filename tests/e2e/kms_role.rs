//! `coffer kms` as a separate role: a `coffer dev` gateway using it over gRPC
//! (`--kms-endpoint`) stores SSE-S3 and SSE-KMS objects through it, fails fast with a 5xx when
//! it is down (metadata-only requests still work), and reads its objects again once the KMS
//! restarts on the same data directory.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use coffer_tests::{body_of, bucket_name, Coffer, Process, ACCESS_KEY, SECRET_KEY};

/// Starts `coffer kms` with its keystore in `dir/kms-data`, gRPC on `grpc_addr` and the JSON
/// API on a free port.
fn start_kms(dir: &Path, tag: &str, grpc_addr: &str) -> Process {
    let args: Vec<OsString> = vec![
        "kms".into(),
        "--data-dir".into(),
        dir.join("kms-data").into(),
        "--grpc-listen".into(),
        grpc_addr.into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    Process::start(dir, tag, &args)
}

/// An S3 client that does not retry, so the time to the first error is the gateway's.
fn s3_no_retry(endpoint: &str) -> aws_sdk_s3::Client {
    let creds =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "coffer-test");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

async fn get_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e:?}"))
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

/// Asserts that `r` failed with a 5xx S3 error within `limit` of `started`.
fn assert_fast_5xx<T: std::fmt::Debug, E: std::fmt::Debug>(
    what: &str,
    r: Result<T, aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>>,
    started: Instant,
    limit: Duration,
) {
    let elapsed = started.elapsed();
    let err = r.expect_err(&format!("{what} must fail while the KMS is down"));
    let status = err
        .raw_response()
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|| panic!("{what}: no HTTP response: {err:?}"));
    assert!(
        (500..600).contains(&status),
        "{what}: expected a 5xx, got {status}: {err:?}"
    );
    assert!(
        elapsed < limit,
        "{what} took {elapsed:?} to fail (limit {limit:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_over_remote_kms_fails_fast_when_it_is_down_and_recovers() {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-e2e-kms-")
        .tempdir()
        .expect("tempdir");
    let mut kms = start_kms(tmp.path(), "kms-0", "127.0.0.1:0");
    let grpc = format!("http://{}", kms.ready_str("grpc"));
    assert!(!kms.ready_str("http").is_empty(), "{:?}", kms.ready);
    let default_key = kms.ready_str("default_kms_key_arn");
    assert!(
        default_key.starts_with("arn:aws:kms:us-east-1:"),
        "{default_key}"
    );

    let coffer = Coffer::start_with(&["--kms-endpoint", grpc.as_str(), "--kms-timeout-ms", "2000"]);
    // The gateway found the KMS's alias/coffer-default instead of making its own.
    assert_eq!(coffer.ready.default_kms_key_arn, default_key);
    let s3 = coffer.s3().await;
    let bucket = bucket_name("kmsrole");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    let sse_s3 = body_of(300_000, 1);
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("sse-s3")
        .body(ByteStream::from(sse_s3.clone()))
        .send()
        .await
        .expect("SSE-S3 PUT through the remote KMS");
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );

    let sse_kms = body_of(70_000, 2);
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("sse-kms")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id("alias/coffer-default")
        .body(ByteStream::from(sse_kms.clone()))
        .send()
        .await
        .expect("SSE-KMS PUT through the remote KMS");
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(put.ssekms_key_id(), Some(default_key.as_str()));

    // SSE-KMS without a key ID: the account's alias/aws/s3, created on first use over gRPC.
    let aws_managed = body_of(1000, 3);
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("aws-managed")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .body(ByteStream::from(aws_managed.clone()))
        .send()
        .await
        .expect("SSE-KMS PUT with the AWS managed key");
    let aws_managed_arn = put.ssekms_key_id().expect("key ARN").to_string();
    assert_ne!(aws_managed_arn, default_key);

    assert_eq!(get_bytes(&s3, &bucket, "sse-s3").await, sse_s3);
    assert_eq!(get_bytes(&s3, &bucket, "sse-kms").await, sse_kms);
    assert_eq!(get_bytes(&s3, &bucket, "aws-managed").await, aws_managed);

    // The KMS goes away: requests that need a key fail fast with a 5xx; the rest still works.
    kms.kill_with(9);
    let fast = s3_no_retry(&coffer.endpoint());
    let limit = Duration::from_secs(5);
    for (i, sse) in [None, Some(ServerSideEncryption::AwsKms)]
        .into_iter()
        .enumerate()
    {
        let t = Instant::now();
        let r = fast
            .put_object()
            .bucket(&bucket)
            .key(format!("while-down-{i}"))
            .set_server_side_encryption(sse)
            .body(ByteStream::from(body_of(5000, 10 + i as u64)))
            .send()
            .await;
        assert_fast_5xx(&format!("PUT #{i}"), r, t, limit);
    }
    let t = Instant::now();
    let r = fast
        .get_object()
        .bucket(&bucket)
        .key("sse-kms")
        .send()
        .await;
    assert_fast_5xx("GET sse-kms", r, t, limit);

    let listed = fast
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("listing needs no KMS");
    let mut keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["aws-managed", "sse-kms", "sse-s3"]);
    let head = fast
        .head_object()
        .bucket(&bucket)
        .key("sse-kms")
        .send()
        .await
        .expect("HEAD needs no KMS");
    assert_eq!(head.ssekms_key_id(), Some(default_key.as_str()));

    // The KMS comes back on the same data directory and the gRPC address the gateway was given.
    let kms2 = start_kms(tmp.path(), "kms-1", &kms.ready_str("grpc"));
    assert_eq!(kms2.ready_str("default_kms_key_arn"), default_key);
    assert_eq!(get_bytes(&s3, &bucket, "sse-s3").await, sse_s3);
    assert_eq!(get_bytes(&s3, &bucket, "sse-kms").await, sse_kms);
    assert_eq!(get_bytes(&s3, &bucket, "aws-managed").await, aws_managed);
    let again = body_of(2000, 4);
    s3.put_object()
        .bucket(&bucket)
        .key("after-restart")
        .body(ByteStream::from(again.clone()))
        .send()
        .await
        .expect("PUT after the KMS restarted");
    assert_eq!(get_bytes(&s3, &bucket, "after-restart").await, again);
}
