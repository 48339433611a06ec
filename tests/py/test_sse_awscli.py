"""The aws CLI (v1.46.3, its own venv) against coffer: `aws s3api put-bucket-encryption`,
`get-bucket-encryption`, `delete-bucket-encryption` and `update-object-encryption` (the pinned CLI
has all four), and `aws s3 cp --sse`.
"""

from __future__ import annotations

import json

from conftest import unique_bucket
from sse_common import ACCOUNT, default_key_arn, kms_client, new_key

# A new bucket: SSE-S3, and SSE-C blocked (issue 7).
SSE_C_BLOCKED = {"BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]}}
SSE_S3_DEFAULT = {
    "ServerSideEncryptionConfiguration": {
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False,
                   **SSE_C_BLOCKED}]
    }
}
ARN_INVALID = (
    "Requests that modify an object’s encryption type to SSE-KMS require a valid Amazon Web Services KMS key Amazon "
    "Resource Name (ARN). Confirm that you have a correctly formatted KMS key ARN in your request, and then try again."
)


def make_bucket(aws) -> str:
    bucket = unique_bucket("cli-sse")
    aws("s3api", "create-bucket", "--bucket", bucket)
    return bucket


def test_cli_bucket_encryption_round_trip(aws, server):
    # seed 001: "This operation configures default encryption and Amazon S3 Bucket Keys for an existing bucket."
    # seed 003: "Returns the default encryption configuration for an Amazon S3 bucket. By default, all
    #   buckets have a default encryption configuration that uses server-side encryption with Amazon S3
    #   managed keys (SSE-S3)."
    bucket = make_bucket(aws)
    assert aws("s3api", "get-bucket-encryption", "--bucket", bucket) == SSE_S3_DEFAULT

    arn = default_key_arn(server)
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": arn},
                         "BucketKeyEnabled": True}]}
    out = aws("s3api", "put-bucket-encryption", "--bucket", bucket, "--server-side-encryption-configuration",
              json.dumps(config), json_out=False)
    assert out.stdout.strip() == ""
    # A rule without BlockedEncryptionTypes keeps the bucket's SSE-C setting (issue 7).
    assert aws("s3api", "get-bucket-encryption", "--bucket", bucket, "--expected-bucket-owner", ACCOUNT) == {
        "ServerSideEncryptionConfiguration": {"Rules": [{**config["Rules"][0], **SSE_C_BLOCKED}]}
    }

    # New objects get the default (seed 001: "If a PUT Object request doesn't specify any server-side
    # encryption, this default encryption will be applied.").
    aws("s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", __file__)
    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "k")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"], head["BucketKeyEnabled"]) == ("aws:kms", arn, True)

    out = aws("s3api", "delete-bucket-encryption", "--bucket", bucket, json_out=False)
    assert out.stdout.strip() == ""
    assert aws("s3api", "get-bucket-encryption", "--bucket", bucket) == SSE_S3_DEFAULT


def test_cli_bucket_encryption_errors(aws):
    # seed 001 (KMSMasterKeyID): "General purpose buckets - This parameter is allowed if and only if
    #   SSEAlgorithm is set to aws:kms or aws:kms:dsse."
    # seed 001 (ExpectedBucketOwner): "If the account ID that you provide does not match the actual
    #   owner of the bucket, the request fails with the HTTP status code 403 Forbidden (access denied)."
    bucket = make_bucket(aws)
    bad = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256", "KMSMasterKeyID": "alias/x"}}]}
    proc = aws("s3api", "put-bucket-encryption", "--bucket", bucket, "--server-side-encryption-configuration",
               json.dumps(bad), check=False)
    assert proc.returncode == 255, proc.stderr
    assert "An error occurred (InvalidArgument) when calling the PutBucketEncryption operation (reached max retries: 0): a KMSMasterKeyID is " \
           "not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse" in proc.stderr
    proc = aws("s3api", "get-bucket-encryption", "--bucket", bucket, "--expected-bucket-owner", "111122223333",
               check=False)
    assert proc.returncode == 255, proc.stderr
    assert "An error occurred (AccessDenied) when calling the GetBucketEncryption operation (reached max retries: 0): Access Denied" in proc.stderr
    assert aws("s3api", "get-bucket-encryption", "--bucket", bucket) == SSE_S3_DEFAULT


def test_cli_update_object_encryption(aws, server, tmp_path):
    # seed 000: "Updates the server-side encryption type of an existing encrypted object in a general
    #   purpose bucket." / "preserves all object metadata properties, including the storage class,
    #   creation date, last modified date, ETag, and checksum properties."
    bucket = make_bucket(aws)
    src = tmp_path / "data.bin"
    src.write_bytes(b"cli payload " * 1000)
    aws("s3api", "put-object", "--bucket", bucket, "--key", "k", "--body", str(src), "--content-type", "text/plain")
    before = aws("s3api", "head-object", "--bucket", bucket, "--key", "k")
    assert before["ServerSideEncryption"] == "AES256"

    target = new_key(kms_client(server))["Arn"]
    out = aws("s3api", "update-object-encryption", "--bucket", bucket, "--key", "k", "--object-encryption",
              json.dumps({"SSEKMS": {"KMSKeyArn": target, "BucketKeyEnabled": True}}), json_out=False)
    assert out.stdout.strip() == ""
    after = aws("s3api", "head-object", "--bucket", bucket, "--key", "k")
    assert (after["ServerSideEncryption"], after["SSEKMSKeyId"], after["BucketKeyEnabled"]) == ("aws:kms", target, True)
    for field in ("ETag", "LastModified", "ContentLength", "ContentType"):
        assert after[field] == before[field], field
    down = tmp_path / "down.bin"
    aws("s3api", "get-object", "--bucket", bucket, "--key", "k", str(down))
    assert down.read_bytes() == src.read_bytes()

    # seed 000: "The KMS key ID and KMS key alias aren’t supported."
    proc = aws("s3api", "update-object-encryption", "--bucket", bucket, "--key", "k", "--object-encryption",
               json.dumps({"SSEKMS": {"KMSKeyArn": "alias/coffer-default"}}), check=False)
    assert proc.returncode == 255, proc.stderr
    assert f"An error occurred (InvalidRequest) when calling the UpdateObjectEncryption operation (reached max retries: 0): {ARN_INVALID}" in proc.stderr
    assert aws("s3api", "head-object", "--bucket", bucket, "--key", "k")["SSEKMSKeyId"] == target


def test_cli_cp_with_sse_kms(aws, server, tmp_path):
    # seed 004: "To set up default encryption on a bucket, you can use the Amazon S3 console, AWS CLI,
    #   AWS SDKs, or the REST API." — and per-object encryption from `aws s3 cp --sse`.
    bucket = make_bucket(aws)
    arn = default_key_arn(server)
    src = tmp_path / "f.txt"
    src.write_text("sse from the cli\n")
    aws("s3", "cp", str(src), f"s3://{bucket}/f.txt", "--sse", "aws:kms", "--sse-kms-key-id", arn, json_out=False)
    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "f.txt")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", arn)
    down = tmp_path / "down.txt"
    aws("s3", "cp", f"s3://{bucket}/f.txt", str(down), json_out=False)
    assert down.read_text() == "sse from the cli\n"
