//! Server-side encryption through aws-sdk-s3: bucket default encryption, SSE-KMS with a context
//! and a Bucket Key, DSSE-KMS, SSE-C, and UpdateObjectEncryption — the main paths of the seeds.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BlockedEncryptionTypes, EncryptionType, ObjectEncryption, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    SsekmsEncryption,
};
use base64::Engine;
use coffer_tests::{body_of, bucket_name, md5_hex, Coffer};
use md5::Digest;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

async fn put_static(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    body: &'static [u8],
) -> aws_sdk_s3::operation::put_object::PutObjectOutput {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(body))
        .send()
        .await
        .unwrap()
}

/// PutBucketEncryption with this one rule.
async fn put_rule(s3: &aws_sdk_s3::Client, bucket: &str, rule: ServerSideEncryptionRule) {
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// PutBucketEncryption with SSE-S3 as the default and `blocked` as `BlockedEncryptionTypes`.
async fn set_blocked(s3: &aws_sdk_s3::Client, bucket: &str, blocked: EncryptionType) {
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .unwrap();
    let blocked = BlockedEncryptionTypes::builder()
        .encryption_type(blocked)
        .build();
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(default)
        .blocked_encryption_types(blocked)
        .build();
    put_rule(s3, bucket, rule).await;
}

/// The `BlockedEncryptionTypes` GetBucketEncryption reports.
async fn blocked_types(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<EncryptionType> {
    let got = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    let rule = &got.server_side_encryption_configuration().unwrap().rules()[0];
    rule.blocked_encryption_types()
        .map(|b| b.encryption_type().to_vec())
        .unwrap_or_default()
}

/// A PUT without encryption headers gets SSE-S3.
async fn assert_put_is_sse_s3(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    let put = put_static(s3, bucket, key, b"sse-s3").await;
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
}

/// The body of an UpdateObjectEncryption to SSE-KMS under `arn`.
fn sse_kms_target(arn: &str) -> ObjectEncryption {
    ObjectEncryption::Ssekms(
        SsekmsEncryption::builder()
            .kms_key_arn(arn)
            .build()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_default_sse_kms_applies_to_new_objects() {
    let coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let key_arn = coffer.ready.default_kms_key_arn.clone();
    let bucket = bucket_name("sse-default");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    // seed 003: "By default, all buckets have a default encryption configuration that uses
    // server-side encryption with Amazon S3 managed keys (SSE-S3)."
    let got = s3
        .get_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let rule = &got.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm(),
        &ServerSideEncryption::Aes256
    );
    put_static(&s3, &bucket, "before", b"before").await;

    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::AwsKms)
        .kms_master_key_id("alias/coffer-default")
        .build()
        .unwrap();
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(default)
        .bucket_key_enabled(true)
        .build();
    put_rule(&s3, &bucket, rule).await;
    let put = put_static(&s3, &bucket, "after", b"after").await;
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(put.ssekms_key_id(), Some(key_arn.as_str()));
    assert_eq!(put.bucket_key_enabled(), Some(true));
    // seed 004: "you can set the default encryption behavior for an S3 bucket so that all new
    // objects are encrypted when they are stored in the bucket" — existing ones keep theirs.
    let before = s3
        .head_object()
        .bucket(&bucket)
        .key("before")
        .send()
        .await
        .unwrap();
    assert_eq!(
        before.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );
    let after = s3
        .get_object()
        .bucket(&bucket)
        .key("after")
        .send()
        .await
        .unwrap();
    assert_eq!(after.ssekms_key_id(), Some(key_arn.as_str()));
    assert_eq!(
        after.body.collect().await.unwrap().into_bytes().as_ref(),
        b"after"
    );

    // DeleteBucketEncryption returns to SSE-S3.
    s3.delete_bucket_encryption()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_put_is_sse_s3(&s3, &bucket, "later").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_kms_dsse_and_sse_c_round_trips() {
    let coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let key_arn = coffer.ready.default_kms_key_arn.clone();
    let bucket = bucket_name("sse-kinds");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    // New buckets block SSE-C writes (issue 7); this bucket allows them.
    set_blocked(&s3, &bucket, EncryptionType::None).await;
    let data = body_of(3 * (1 << 20) + 5, 11);

    // SSE-KMS with a caller context.
    let ctx = B64.encode(br#"{"project":"coffer"}"#);
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("kms")
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key_arn)
        .ssekms_encryption_context(&ctx)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.e_tag(),
        Some(format!("\"{}\"", md5_hex(&data)).as_str())
    );
    assert_eq!(put.ssekms_key_id(), Some(key_arn.as_str()));

    // DSSE-KMS: both layers, ranged read across a chunk boundary.
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("dsse")
        .server_side_encryption(ServerSideEncryption::AwsKmsDsse)
        .ssekms_key_id(&key_arn)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        put.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKmsDsse)
    );
    let start = (1 << 20) - 7;
    let end = (1 << 20) + 9;
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("dsse")
        .range(format!("bytes={start}-{end}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKmsDsse)
    );
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        &data[start..=end]
    );

    // SSE-C: the customer's key is needed; a wrong one is refused with 403.
    let customer_key = [0x42u8; 32];
    let key_b64 = B64.encode(customer_key);
    let key_md5 = B64.encode(md5::Md5::digest(customer_key));
    s3.put_object()
        .bucket(&bucket)
        .key("ssec")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key_b64)
        .sse_customer_key_md5(&key_md5)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("ssec")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key_b64)
        .sse_customer_key_md5(&key_md5)
        .send()
        .await
        .unwrap();
    assert_eq!(got.sse_customer_key_md5(), Some(key_md5.as_str()));
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        &data[..]
    );
    let wrong = [0x43u8; 32];
    let err = s3
        .get_object()
        .bucket(&bucket)
        .key("ssec")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(B64.encode(wrong))
        .sse_customer_key_md5(B64.encode(md5::Md5::digest(wrong)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    let err = s3
        .get_object()
        .bucket(&bucket)
        .key("ssec")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_object_encryption_rewraps_without_touching_the_data() {
    let coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let key_arn = coffer.ready.default_kms_key_arn.clone();
    let bucket = bucket_name("uoe");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let data = body_of((1 << 20) + 3, 5);
    s3.put_object()
        .bucket(&bucket)
        .key("obj")
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap();
    let before = s3
        .head_object()
        .bucket(&bucket)
        .key("obj")
        .send()
        .await
        .unwrap();
    assert_eq!(
        before.server_side_encryption(),
        Some(&ServerSideEncryption::Aes256)
    );

    s3.update_object_encryption()
        .bucket(&bucket)
        .key("obj")
        .object_encryption(sse_kms_target(&key_arn))
        .send()
        .await
        .unwrap();
    let after = s3
        .get_object()
        .bucket(&bucket)
        .key("obj")
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms)
    );
    assert_eq!(after.ssekms_key_id(), Some(key_arn.as_str()));
    assert_eq!(after.e_tag(), before.e_tag());
    assert_eq!(after.last_modified(), before.last_modified());
    assert_eq!(
        after.body.collect().await.unwrap().into_bytes().as_ref(),
        &data[..]
    );

    // seed 000: "Requests that modify an object’s encryption type to SSE-KMS require a valid
    // Amazon Web Services KMS key Amazon Resource Name (ARN)." (an InvalidRequest error): an
    // alias is not one.
    let err = s3
        .update_object_encryption()
        .bucket(&bucket)
        .key("obj")
        .object_encryption(sse_kms_target("alias/coffer-default"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidRequest"), "{err:?}");
    assert!(err.message().is_some_and(|m| m.starts_with(
        "Requests that modify an object’s encryption type to SSE-KMS require a valid"
    )));
    let err = s3
        .update_object_encryption()
        .bucket(&bucket)
        .key("missing")
        .object_encryption(sse_kms_target(&key_arn))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("NoSuchKey"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_buckets_block_sse_c_until_put_bucket_encryption_allows_it() {
    let coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let bucket = bucket_name("ssec-block");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let customer_key = [0x24u8; 32];
    let key_b64 = B64.encode(customer_key);
    let key_md5 = B64.encode(md5::Md5::digest(customer_key));
    let put_ssec = |key: &'static str| {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .sse_customer_algorithm("AES256")
            .sse_customer_key(&key_b64)
            .sse_customer_key_md5(&key_md5)
            .body(ByteStream::from_static(b"customer"))
            .send()
    };

    // Issue 7, point 2: a new bucket reports SSE-S3 with SSE-C blocked and refuses SSE-C writes
    // with 403 AccessDenied.
    assert_eq!(
        blocked_types(&s3, &bucket).await,
        vec![EncryptionType::SseC]
    );
    let err = put_ssec("refused").await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    assert_eq!(err.code(), Some("AccessDenied"));
    let err = s3
        .head_object()
        .bucket(&bucket)
        .key("refused")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(404));

    // Point 1 and 2: NONE allows SSE-C again.
    set_blocked(&s3, &bucket, EncryptionType::None).await;
    assert_eq!(
        blocked_types(&s3, &bucket).await,
        vec![EncryptionType::None]
    );
    put_ssec("allowed").await.unwrap();

    // SSE-C again blocks new SSE-C writes; point 3: the existing SSE-C object stays readable
    // with its key, and deletable.
    set_blocked(&s3, &bucket, EncryptionType::SseC).await;
    let err = put_ssec("refused").await.unwrap_err();
    assert_eq!(err.code(), Some("AccessDenied"));
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("allowed")
        .sse_customer_algorithm("AES256")
        .sse_customer_key(&key_b64)
        .sse_customer_key_md5(&key_md5)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes().as_ref(),
        b"customer"
    );
    s3.delete_object()
        .bucket(&bucket)
        .key("allowed")
        .send()
        .await
        .unwrap();
    // Other encryption is not affected by the block.
    assert_put_is_sse_s3(&s3, &bucket, "plain").await;
}
