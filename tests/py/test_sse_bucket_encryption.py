"""PutBucketEncryption / GetBucketEncryption / DeleteBucketEncryption and the bucket default
encryption of new objects, as seeds 001 (general purpose buckets), 003 and 004 specify them.

Each test cites the seed sentence it checks.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from checksums import b64_checksum, etag, md5_b64
from conftest import unique_bucket
from harness import assert_client_error, assert_raw_error, strip_ns
from sse_common import (
    ACCOUNT,
    AWS_MANAGED_S3_ALIAS,
    S3_NS,
    default_key_arn,
    kms_client,
    new_key,
    sigv2_request,
    sse_headers,
)

MALFORMED_MSG = "The XML you provided was not well-formed or did not validate against our published schema"
KEY_ID_NOT_APPLICABLE_MSG = (
    "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse"
)
SSE_S3_DEFAULT = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False}
OTHER_ACCOUNT = "111122223333"
MISSING_KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


def rules(s3, bucket, **kw) -> list[dict]:
    """The rules GetBucketEncryption reports. Every bucket of this module is new and so blocks SSE-C
    (issue 7, point 2), whatever its default encryption: checked here and taken out, so that the tests
    compare default encryption only."""
    got = s3.get_bucket_encryption(Bucket=bucket, **kw)["ServerSideEncryptionConfiguration"]["Rules"]
    for rule in got:
        assert rule.pop("BlockedEncryptionTypes") == {"EncryptionType": ["SSE-C"]}, got
    return got


def put_default(s3, bucket, algorithm, key_id=None, bucket_key=None, **kw):
    default = {"SSEAlgorithm": algorithm}
    if key_id is not None:
        default["KMSMasterKeyID"] = key_id
    rule = {"ApplyServerSideEncryptionByDefault": default}
    if bucket_key is not None:
        rule["BucketKeyEnabled"] = bucket_key
    return s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]}, **kw)


def config_xml(algorithm: str, key_id: str | None = None, bucket_key: str | None = None) -> bytes:
    inner = f"<SSEAlgorithm>{algorithm}</SSEAlgorithm>"
    if key_id is not None:
        inner += f"<KMSMasterKeyID>{key_id}</KMSMasterKeyID>"
    rule = f"<ApplyServerSideEncryptionByDefault>{inner}</ApplyServerSideEncryptionByDefault>"
    if bucket_key is not None:
        rule += f"<BucketKeyEnabled>{bucket_key}</BucketKeyEnabled>"
    return (
        f'<ServerSideEncryptionConfiguration xmlns="{S3_NS}"><Rule>{rule}</Rule></ServerSideEncryptionConfiguration>'
    ).encode()


@pytest.fixture(scope="module")
def kms(server):
    return kms_client(server)


@pytest.fixture(scope="module")
def key_arn(server):
    return default_key_arn(server)


# ---------------------------------------------------------------------------------------------
# The SSE-S3 default
# ---------------------------------------------------------------------------------------------
def test_new_bucket_reports_sse_s3_default(s3, bucket):
    # seed 001: "By default, all buckets have a default encryption configuration that uses
    #   server-side encryption with Amazon S3 managed keys (SSE-S3)."
    # seed 003: "By default, all buckets have a default encryption configuration that uses
    #   server-side encryption with Amazon S3 managed keys (SSE-S3)."
    # seed 003 (BucketKeyEnabled): "By default, S3 Bucket Key is not enabled."
    assert rules(s3, bucket) == [SSE_S3_DEFAULT]
    # ... and new objects are encrypted with it.
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert sse_headers(put) == {"x-amz-server-side-encryption": "AES256"}
    assert sse_headers(s3.head_object(Bucket=bucket, Key="k")) == {"x-amz-server-side-encryption": "AES256"}


def test_get_bucket_encryption_xml_shape(raw, s3, bucket, key_arn):
    # seed 003 Response Syntax: ServerSideEncryptionConfiguration > Rules[] >
    #   ApplyServerSideEncryptionByDefault {SSEAlgorithm, KMSMasterKeyID}, BucketKeyEnabled.
    resp = raw("GET", bucket, query="encryption")
    assert resp.status == 200, resp
    assert resp.header("content-type") == "application/xml"
    root = ET.fromstring(resp.body)
    assert root.tag == f"{{{S3_NS}}}ServerSideEncryptionConfiguration"
    root = strip_ns(root)
    assert [r.tag for r in root] == ["Rule"]
    rule = root.find("Rule")
    # ... and BlockedEncryptionTypes (issue 7: new buckets block SSE-C).
    assert [c.tag for c in rule] == ["ApplyServerSideEncryptionByDefault", "BucketKeyEnabled", "BlockedEncryptionTypes"]
    assert [(c.tag, c.text) for c in rule.find("ApplyServerSideEncryptionByDefault")] == [("SSEAlgorithm", "AES256")]
    assert rule.findtext("BucketKeyEnabled") == "false"
    assert [(c.tag, c.text) for c in rule.find("BlockedEncryptionTypes")] == [("EncryptionType", "SSE-C")]

    put_default(s3, bucket, "aws:kms", key_arn, True)
    root = strip_ns(ET.fromstring(raw("GET", bucket, query="encryption").body))
    rule = root.find("Rule")
    assert [(c.tag, c.text) for c in rule.find("ApplyServerSideEncryptionByDefault")] == [
        ("SSEAlgorithm", "aws:kms"),
        ("KMSMasterKeyID", key_arn),
    ]
    assert rule.findtext("BucketKeyEnabled") == "true"


def test_get_bucket_encryption_virtual_host_style(s3, s3v, bucket):
    # seed 003: "Returns the default encryption configuration for an Amazon S3 bucket."
    put_default(s3, bucket, "aws:kms", "alias/vhost-key")
    assert rules(s3v, bucket) == [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/vhost-key"},
         "BucketKeyEnabled": False}
    ]


# ---------------------------------------------------------------------------------------------
# PutBucketEncryption: the rule
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["key-id", "key-arn", "alias"])
@pytest.mark.parametrize("bucket_key", [True, False])
def test_put_sse_kms_rule_with_key_id_arn_or_alias(s3, bucket, key_arn, form, bucket_key):
    # seed 001: "You can specify the key ID, key alias, or the Amazon Resource Name (ARN) of the KMS key."
    #   "Key ID: 1234abcd-12ab-34cd-56ef-1234567890ab", "Key ARN: arn:aws:kms:us-east-2:111122223333:key/...",
    #   "Key Alias: alias/alias-name"
    # seed 001: "If you specify default encryption by using SSE-KMS, you can also configure Amazon S3
    #   Bucket Keys."
    key_id = key_arn.rsplit("/", 1)[1]
    value = {
        "key-id": key_id,
        "key-arn": key_arn,
        "alias": "alias/coffer-default",
    }[form]
    put = put_default(s3, bucket, "aws:kms", value, bucket_key)
    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    # seed 003: GetBucketEncryption returns the rule as configured.
    assert rules(s3, bucket) == [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": value},
         "BucketKeyEnabled": bucket_key}
    ]
    # New objects use that key, reported by its ARN, with a Bucket Key when enabled.
    put = s3.put_object(Bucket=bucket, Key=f"obj-{form}", Body=b"payload")
    expected = {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": key_arn}
    if bucket_key:
        expected["x-amz-server-side-encryption-bucket-key-enabled"] = "true"
    assert sse_headers(put) == expected
    got = s3.get_object(Bucket=bucket, Key=f"obj-{form}")
    assert got["Body"].read() == b"payload"
    assert sse_headers(got) == expected
    assert sse_headers(s3.head_object(Bucket=bucket, Key=f"obj-{form}")) == expected


def test_put_sse_s3_rule(s3, bucket):
    # seed 001: SSEAlgorithm 'AES256'|'aws:kms'|'aws:kms:dsse'
    put_default(s3, bucket, "aws:kms", "alias/coffer-default")
    put_default(s3, bucket, "AES256")
    assert rules(s3, bucket) == [SSE_S3_DEFAULT]
    assert s3.put_object(Bucket=bucket, Key="k", Body=b"x")["ServerSideEncryption"] == "AES256"


def test_put_dsse_kms_rule_is_stored(s3, bucket, key_arn):
    # seed 001: "You can optionally configure default encryption for a bucket by using server-side
    #   encryption with Key Management Service (KMS) keys (SSE-KMS) or dual-layer server-side
    #   encryption with Amazon Web Services KMS keys (DSSE-KMS)."
    put_default(s3, bucket, "aws:kms:dsse", key_arn)
    assert rules(s3, bucket) == [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms:dsse", "KMSMasterKeyID": key_arn},
         "BucketKeyEnabled": False}
    ]


def test_dsse_kms_default_applies_to_new_objects(s3, bucket, key_arn):
    # seed 001 (ApplyServerSideEncryptionByDefault): "If a PUT Object request doesn't specify any
    #   server-side encryption, this default encryption will be applied."
    put_default(s3, bucket, "aws:kms:dsse", key_arn)
    put = s3.put_object(Bucket=bucket, Key="dsse", Body=b"two layers")
    assert sse_headers(put) == {
        "x-amz-server-side-encryption": "aws:kms:dsse",
        "x-amz-server-side-encryption-aws-kms-key-id": key_arn,
    }
    assert s3.get_object(Bucket=bucket, Key="dsse")["Body"].read() == b"two layers"


def test_bucket_key_is_not_enabled_by_default(s3, bucket, key_arn):
    # seed 001 (BucketKeyEnabled): "General purpose buckets - By default, S3 Bucket Key is not enabled."
    put_default(s3, bucket, "aws:kms", key_arn)
    assert rules(s3, bucket)[0]["BucketKeyEnabled"] is False
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert sse_headers(put) == {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": key_arn,
    }


@pytest.mark.parametrize("algorithm", ["AES256"])
def test_kms_master_key_id_only_with_kms_algorithms(s3, bucket, key_arn, algorithm):
    # seed 001 (KMSMasterKeyID): "General purpose buckets - This parameter is allowed if and only if
    #   SSEAlgorithm is set to aws:kms or aws:kms:dsse."
    # seed 003: "This parameter is allowed if and only if SSEAlgorithm is set to aws:kms or aws:kms:dsse."
    put_default(s3, bucket, "aws:kms", key_arn, True)
    with pytest.raises(ClientError) as e:
        put_default(s3, bucket, algorithm, key_arn)
    assert_client_error(e, "InvalidArgument", 400, KEY_ID_NOT_APPLICABLE_MSG)
    # The configuration in place is unchanged.
    assert rules(s3, bucket) == [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
         "BucketKeyEnabled": True}
    ]


def test_kms_rule_without_key_id_uses_the_aws_managed_key(s3, kms, bucket):
    # seed 004: "The AWS managed key (aws/s3) is used when a AWS KMS key Amazon Resource Name (ARN)
    #   or alias is not provided at request time, nor via the bucket's default encryption configuration."
    put_default(s3, bucket, "aws:kms")
    assert rules(s3, bucket) == [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": False}
    ]
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"managed")
    managed = kms.describe_key(KeyId=AWS_MANAGED_S3_ALIAS)["KeyMetadata"]
    assert sse_headers(put) == {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": managed["Arn"],
    }
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"managed"


def test_key_is_not_validated_at_put_time(s3, bucket):
    # seed 001: "If you use PutBucketEncryption to set your default bucket encryption to SSE-KMS, you
    #   should verify that your KMS key ID is correct. Amazon S3 doesn't validate the KMS key ID
    #   provided in PutBucketEncryption requests."
    for value in (MISSING_KEY_ID, "alias/does-not-exist", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{MISSING_KEY_ID}"):
        put_default(s3, bucket, "aws:kms", value)
        assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == value
        # The wrong key shows when an object is written: the write fails and stores nothing.
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        assert_client_error(e, "KMS.NotFoundException", 400)
        with pytest.raises(ClientError) as e:
            s3.head_object(Bucket=bucket, Key="k")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_cross_account_key_arn_is_stored_as_given(s3, bucket):
    # seed 001: "If you are using encryption with cross-account or Amazon Web Services service
    #   operations, you must use a fully qualified KMS key ARN."
    arn = f"arn:aws:kms:us-east-2:{OTHER_ACCOUNT}:key/{MISSING_KEY_ID}"
    put_default(s3, bucket, "aws:kms", arn, True)
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": arn}


@pytest.mark.parametrize(
    "body",
    [
        b"<ServerSideEncryptionConfiguration",
        config_xml("DES"),
        config_xml("aws:kms", bucket_key="maybe"),
        f'<ServerSideEncryptionConfiguration xmlns="{S3_NS}"></ServerSideEncryptionConfiguration>'.encode(),
        f'<ServerSideEncryptionConfiguration xmlns="{S3_NS}"><Rule><BucketKeyEnabled>true</BucketKeyEnabled>'
        f"</Rule></ServerSideEncryptionConfiguration>".encode(),
    ],
    ids=["truncated", "unknown-algorithm", "bucket-key-not-boolean", "no-rule", "no-default"],
)
def test_malformed_configuration(raw, s3, bucket, body):
    # seed 001: SSEAlgorithm (string) – [REQUIRED] 'AES256'|'aws:kms'|'aws:kms:dsse'; Rules (list) – [REQUIRED]
    resp = raw("PUT", bucket, query="encryption", body=body, headers={"Content-MD5": md5_b64(body)})
    assert_raw_error(resp, "MalformedXML", 400, MALFORMED_MSG)
    assert rules(s3, bucket) == [SSE_S3_DEFAULT]


def test_raw_put_is_empty_200(raw, s3, bucket):
    # seed 001: "Returns: None" (an empty 200 response).
    body = config_xml("aws:kms", "alias/raw", "true")
    resp = raw("PUT", bucket, query="encryption", body=body, headers={"Content-MD5": md5_b64(body)})
    assert (resp.status, resp.body) == (200, b""), resp
    assert rules(s3, bucket) == [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/raw"},
         "BucketKeyEnabled": True}
    ]


# ---------------------------------------------------------------------------------------------
# Content-MD5 and checksums of the request body
# ---------------------------------------------------------------------------------------------
def test_content_md5(raw, s3, bucket):
    # seed 001 (ContentMD5): "The base64-encoded 128-bit MD5 digest of the server-side encryption configuration."
    body = config_xml("aws:kms", "alias/md5", "true")
    ok = raw("PUT", bucket, query="encryption", body=body, headers={"Content-MD5": md5_b64(body)})
    assert ok.status == 200, ok
    other = config_xml("AES256")
    bad = raw("PUT", bucket, query="encryption", body=other, headers={"Content-MD5": md5_b64(body)})
    assert_raw_error(bad, "BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
    garbled = raw("PUT", bucket, query="encryption", body=other, headers={"Content-MD5": "not-base64!"})
    assert_raw_error(garbled, "InvalidDigest", 400, "The Content-MD5 you specified was invalid.")
    # Neither failed request changed the configuration.
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == "alias/md5"


def test_content_md5_or_checksum_is_required(raw, s3, bucket):
    # seed 001 (ContentMD5): "For requests made using the Amazon Web Services Command Line Interface
    #   (CLI) or Amazon Web Services SDKs, this field is calculated automatically." — the operation
    #   requires a digest of its body (Content-MD5 or an x-amz-checksum-*), as S3 does.
    body = config_xml("aws:kms", "alias/no-digest")
    resp = raw("PUT", bucket, query="encryption", body=body)
    assert_raw_error(resp, "InvalidRequest", 400, "Missing required header for this request: Content-MD5")
    assert rules(s3, bucket) == [SSE_S3_DEFAULT]


@pytest.mark.parametrize("algorithm", ["CRC32", "SHA1", "SHA256"])  # CRC32C needs awscrt
def test_checksum_algorithm_from_boto3(s3, bucket, algorithm):
    # seed 001: ChecksumAlgorithm='CRC32'|'CRC32C'|'SHA1'|'SHA256'
    put_default(s3, bucket, "aws:kms", f"alias/{algorithm.lower()}", ChecksumAlgorithm=algorithm)
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == f"alias/{algorithm.lower()}"


def test_checksum_header_is_verified(raw, s3, bucket):
    # seed 001 (ChecksumAlgorithm): "Indicates the algorithm used to create the checksum for the object ..."
    body = config_xml("aws:kms", "alias/crc")
    ok = raw("PUT", bucket, query="encryption", body=body, headers={"x-amz-checksum-crc32": b64_checksum("CRC32", body)})
    assert ok.status == 200, ok
    other = config_xml("AES256")
    bad = raw("PUT", bucket, query="encryption", body=other, headers={"x-amz-checksum-crc32": b64_checksum("CRC32", body)})
    assert_raw_error(bad, "BadDigest", 400, "The CRC32 you specified did not match the calculated checksum.")
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == "alias/crc"


def test_checksum_algorithm_without_checksum_is_400(raw, s3, bucket):
    # seed 001 (ChecksumAlgorithm): "When you send this header, there must be a corresponding
    #   x-amz-checksum or x-amz-trailer header sent. Otherwise, Amazon S3 fails the request with the
    #   HTTP status code 400 Bad Request."
    body = config_xml("aws:kms", "alias/lonely")
    resp = raw(
        "PUT",
        bucket,
        query="encryption",
        body=body,
        headers={"x-amz-sdk-checksum-algorithm": "CRC32", "Content-MD5": md5_b64(body)},
    )
    assert_raw_error(
        resp,
        "InvalidRequest",
        400,
        "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or x-amz-trailer headers were found.",
    )
    assert rules(s3, bucket) == [SSE_S3_DEFAULT]


def test_individual_checksum_wins_over_checksum_algorithm(raw, s3, bucket):
    # seed 001 (ChecksumAlgorithm): "If you provide an individual checksum, Amazon S3 ignores any
    #   provided ChecksumAlgorithm parameter."
    body = config_xml("aws:kms", "alias/individual")
    resp = raw(
        "PUT",
        bucket,
        query="encryption",
        body=body,
        headers={"x-amz-sdk-checksum-algorithm": "SHA256", "x-amz-checksum-crc32": b64_checksum("CRC32", body)},
    )
    assert resp.status == 200, resp
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == "alias/individual"


# ---------------------------------------------------------------------------------------------
# ExpectedBucketOwner, SigV4, missing buckets
# ---------------------------------------------------------------------------------------------
def test_expected_bucket_owner(s3, bucket):
    # seed 001 / seed 003 (ExpectedBucketOwner): "If the account ID that you provide does not match
    #   the actual owner of the bucket, the request fails with the HTTP status code 403 Forbidden
    #   (access denied)."
    put_default(s3, bucket, "aws:kms", "alias/owned", True, ExpectedBucketOwner=ACCOUNT)
    assert rules(s3, bucket, ExpectedBucketOwner=ACCOUNT)[0]["BucketKeyEnabled"] is True

    with pytest.raises(ClientError) as e:
        put_default(s3, bucket, "AES256", ExpectedBucketOwner=OTHER_ACCOUNT)
    assert_client_error(e, "AccessDenied", 403, "Access Denied")
    with pytest.raises(ClientError) as e:
        s3.get_bucket_encryption(Bucket=bucket, ExpectedBucketOwner=OTHER_ACCOUNT)
    assert_client_error(e, "AccessDenied", 403, "Access Denied")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket_encryption(Bucket=bucket, ExpectedBucketOwner=OTHER_ACCOUNT)
    assert_client_error(e, "AccessDenied", 403, "Access Denied")
    # Nothing changed.
    assert rules(s3, bucket)[0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == "alias/owned"

    deleted = s3.delete_bucket_encryption(Bucket=bucket, ExpectedBucketOwner=ACCOUNT)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert rules(s3, bucket) == [SSE_S3_DEFAULT]


def test_put_bucket_encryption_requires_sigv4(server, s3, bucket):
    # seed 001: "Also, this action requires Amazon Web Services Signature Version 4."
    body = config_xml("aws:kms", "alias/sigv2")
    resp = sigv2_request(
        server, "PUT", bucket, query="encryption", body=body, headers={"Content-MD5": md5_b64(body)}
    )
    assert resp.status == 400, resp
    assert resp.error_code == "InvalidRequest", resp
    assert rules(s3, bucket) == [SSE_S3_DEFAULT]


def test_missing_bucket(s3):
    # seed 001 / 003: Bucket (string) – [REQUIRED] "The name of the bucket ..."
    name = unique_bucket("missing")
    for call in (
        lambda: s3.get_bucket_encryption(Bucket=name),
        lambda: put_default(s3, name, "AES256"),
        lambda: s3.delete_bucket_encryption(Bucket=name),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert_client_error(e, "NoSuchBucket", 404, "The specified bucket does not exist")


# ---------------------------------------------------------------------------------------------
# DeleteBucketEncryption and what the default applies to
# ---------------------------------------------------------------------------------------------
def test_delete_returns_to_sse_s3_default(s3, bucket, key_arn):
    # seed 001: "By default, all buckets have a default encryption configuration that uses
    #   server-side encryption with Amazon S3 managed keys (SSE-S3)." — DeleteBucketEncryption
    #   removes the configured rule, leaving that default.
    put_default(s3, bucket, "aws:kms", key_arn, True)
    kms_obj = s3.put_object(Bucket=bucket, Key="kms", Body=b"under kms")
    assert kms_obj["ServerSideEncryption"] == "aws:kms"
    resp = s3.delete_bucket_encryption(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert rules(s3, bucket) == [SSE_S3_DEFAULT]
    put = s3.put_object(Bucket=bucket, Key="after", Body=b"after")
    assert sse_headers(put) == {"x-amz-server-side-encryption": "AES256"}
    # Deleting again is fine (nothing configured).
    assert s3.delete_bucket_encryption(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    # The object written under the old default keeps its encryption.
    head = s3.head_object(Bucket=bucket, Key="kms")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head["BucketKeyEnabled"]) == ("aws:kms", key_arn, True)
    assert s3.get_object(Bucket=bucket, Key="kms")["Body"].read() == b"under kms"


def test_default_applies_to_new_objects_only(s3, bucket, key_arn):
    # seed 001 (BucketKeyEnabled): "Specifies whether Amazon S3 should use an S3 Bucket Key with
    #   server-side encryption using KMS (SSE-KMS) for new objects in the bucket. Existing objects
    #   are not affected."
    # seed 004: "you can set the default encryption behavior for an S3 bucket so that all new objects
    #   are encrypted when they are stored in the bucket."
    before = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="before", Body=before)
    head_before = s3.head_object(Bucket=bucket, Key="before")
    put_default(s3, bucket, "aws:kms", key_arn, True)
    s3.put_object(Bucket=bucket, Key="after", Body=b"after")

    head = s3.head_object(Bucket=bucket, Key="before")
    assert sse_headers(head) == {"x-amz-server-side-encryption": "AES256"}
    assert (head["ETag"], head["LastModified"]) == (head_before["ETag"], head_before["LastModified"])
    assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == before
    assert sse_headers(s3.head_object(Bucket=bucket, Key="after")) == {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": key_arn,
        "x-amz-server-side-encryption-bucket-key-enabled": "true",
    }


def test_request_encryption_overrides_the_default(s3, bucket, key_arn):
    # seed 001 (ApplyServerSideEncryptionByDefault): "If a PUT Object request doesn't specify any
    #   server-side encryption, this default encryption will be applied." — one that does keeps its own.
    put_default(s3, bucket, "aws:kms", key_arn, True)
    put = s3.put_object(Bucket=bucket, Key="s3", Body=b"x", ServerSideEncryption="AES256")
    assert sse_headers(put) == {"x-amz-server-side-encryption": "AES256"}
    assert sse_headers(s3.head_object(Bucket=bucket, Key="s3")) == {"x-amz-server-side-encryption": "AES256"}
    # An explicit bucket-key-enabled: false turns the default's Bucket Key off for this object.
    put = s3.put_object(Bucket=bucket, Key="nobk", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn,
                        BucketKeyEnabled=False)
    assert sse_headers(put) == {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": key_arn,
    }


def test_default_applies_to_multipart_and_copies(s3, bucket, key_arn):
    # seed 001: "Specifies the default server-side encryption to apply to new objects in the bucket."
    put_default(s3, bucket, "aws:kms", key_arn, True)
    expected = {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": key_arn,
        "x-amz-server-side-encryption-bucket-key-enabled": "true",
    }
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="mpu")
    assert sse_headers(mpu) == expected
    part = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=mpu["UploadId"], PartNumber=1, Body=b"part one")
    assert sse_headers(part) == expected
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mpu", UploadId=mpu["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert sse_headers(done) == expected
    assert s3.get_object(Bucket=bucket, Key="mpu")["Body"].read() == b"part one"

    src_bucket = unique_bucket("src")
    s3.create_bucket(Bucket=src_bucket)
    s3.put_object(Bucket=src_bucket, Key="src", Body=b"copied")
    copy = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": src_bucket, "Key": "src"})
    assert sse_headers(copy) == expected
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"copied"


def test_bucket_key_wraps_many_objects(s3, bucket, kms):
    # seed 004: "When you configure your bucket to use S3 Bucket Keys for SSE-KMS on new objects, AWS
    #   KMS generates a bucket-level key that is used to create a unique data key for objects in the
    #   bucket."
    meta = new_key(kms)
    put_default(s3, bucket, "aws:kms", meta["Arn"], True)
    bodies = {f"o{i}": os.urandom(100 + i) for i in range(20)}
    for k, body in bodies.items():
        put = s3.put_object(Bucket=bucket, Key=k, Body=body)
        assert put["BucketKeyEnabled"] is True and put["SSEKMSKeyId"] == meta["Arn"]
    for k, body in bodies.items():
        got = s3.get_object(Bucket=bucket, Key=k)
        assert got["Body"].read() == body
        assert got["ETag"] == etag(body)
        assert (got["ServerSideEncryption"], got["SSEKMSKeyId"], got["BucketKeyEnabled"]) == ("aws:kms", meta["Arn"], True)
    # The KMS key cannot be bypassed: with the key disabled, objects can no longer be read.
    kms.disable_key(KeyId=meta["KeyId"])
    try:
        fresh = unique_bucket("bk-disabled")
        s3.create_bucket(Bucket=fresh)
        put_default(s3, fresh, "aws:kms", meta["Arn"], False)
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=fresh, Key="k", Body=b"x")
        assert_client_error(e, "KMS.DisabledException", 400)
    finally:
        kms.enable_key(KeyId=meta["KeyId"])


def test_objects_are_encrypted_before_they_reach_the_disk(private_server):
    # seed 004: "When you use server-side encryption, Amazon S3 encrypts an object before saving it to
    #   disk and decrypts it when you download the objects."
    server = private_server()
    s3 = server.client()
    kms = kms_client(server)
    marker = b"COFFER-PLAINTEXT-" + os.urandom(8).hex().encode()
    data = marker * (200_000 // len(marker))
    bucket = unique_bucket("disk")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="sse-s3", Body=data)
    put_default(s3, bucket, "aws:kms", new_key(kms)["Arn"], True)
    s3.put_object(Bucket=bucket, Key="sse-kms", Body=data)
    for k in ("sse-s3", "sse-kms"):
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == data
    stored = 0
    for p in server.data_dir.rglob("*"):
        if p.is_file():
            content = p.read_bytes()
            assert marker not in content, p
            if p.is_relative_to(server.data_dir / "blobs"):
                stored += len(content)
    assert stored >= 2 * len(data)  # the ciphertext is there


def test_only_symmetric_kms_keys(kms):
    # seed 001 (KMSMasterKeyID): "Amazon S3 only supports symmetric encryption KMS keys."
    with pytest.raises(ClientError) as e:
        kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")
    assert e.value.response["Error"]["Code"] == "ValidationException"
