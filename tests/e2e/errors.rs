//! Error cases with aws-sdk-s3: each gets the S3 error code AWS returns, and stored data
//! stays intact.

use aws_sdk_s3::primitives::ByteStream;
use coffer_tests::{bucket_name, s3_client, Coffer};

fn code<E: aws_sdk_s3::error::ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("<none>").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_errors() {
    let coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let err = s3
        .create_bucket()
        .bucket("Bad_Name")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "InvalidBucketName");
    let err = s3
        .head_bucket()
        .bucket("missing-bucket")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_not_found(), "{err:?}");
    let err = s3
        .list_objects_v2()
        .bucket("missing-bucket")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "NoSuchBucket");

    let bucket = bucket_name("errs");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let err = s3
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "BucketAlreadyOwnedByYou");
    s3.put_object()
        .bucket(&bucket)
        .key("k")
        .body(ByteStream::from_static(b"keep me"))
        .send()
        .await
        .unwrap();
    let err = s3
        .delete_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "BucketNotEmpty");
    let err = s3
        .get_object()
        .bucket(&bucket)
        .key("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(err.is_no_such_key());
    let err = s3
        .abort_multipart_upload()
        .bucket(&bucket)
        .key("k")
        .upload_id("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(code(&err), "NoSuchUpload");
    let body = s3
        .get_object()
        .bucket(&bucket)
        .key("k")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(body.as_ref(), b"keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_are_refused_and_store_nothing() {
    let coffer = Coffer::start();
    let s3 = coffer.s3().await;
    let bucket = bucket_name("sig");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    let creds = aws_credential_types::Credentials::new(
        coffer_tests::ACCESS_KEY,
        "wrong-secret",
        None,
        None,
        "t",
    );
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(coffer.endpoint())
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    let bad = aws_sdk_s3::Client::from_conf(conf);
    let err = bad
        .put_object()
        .bucket(&bucket)
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&err.into_service_error()), "SignatureDoesNotMatch");

    let creds = aws_credential_types::Credentials::new("UNKNOWNKEY", "whatever", None, None, "t");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(coffer.endpoint())
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    let unknown = aws_sdk_s3::Client::from_conf(conf);
    let err = unknown.list_buckets().send().await.unwrap_err();
    assert_eq!(code(&err.into_service_error()), "InvalidAccessKeyId");

    let listed = s3.list_objects_v2().bucket(&bucket).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0));
    let _ = s3_client; // the same constructor serves virtual-host tests elsewhere
}
