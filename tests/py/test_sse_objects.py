"""Per-request server-side encryption of objects: SSE-S3, SSE-KMS (key ID / ARN / alias, the
AWS-managed-style alias/aws/s3, encryption context, Bucket Keys), DSSE-KMS, SSE-C, on PutObject,
CopyObject, CreateMultipartUpload / UploadPart / UploadPartCopy / CompleteMultipartUpload,
GetObject and HeadObject; response headers as AWS returns them.

Each test cites the seed sentence (or, where the seeds are silent, the S3 API behaviour issue 4
names) it checks.
"""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError

from checksums import etag
from conftest import unique_bucket
from harness import assert_client_error, assert_raw_error
from sse_common import (
    AWS_MANAGED_S3_ALIAS,
    allow_sse_c,
    b64_context,
    copy_source_ssec_params,
    customer_key,
    decode_context,
    default_key_arn,
    key_md5,
    kms_client,
    new_key,
    sigv2_request,
    sse_headers,
    ssec_headers,
    ssec_params,
)

KMS_KEY_ID_REQUIRES_KMS_MSG = (
    "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
)
BAD_CONTEXT_MSG = (
    "The header 'x-amz-server-side-encryption-context' shall be Base64-encoded UTF-8 string holding JSON which "
    "represents a string-string map"
)
SSEC_REQUIRED_MSG = (
    "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to "
    "retrieve the object."
)
SSEC_NOT_APPLICABLE_MSG = "The encryption parameters are not applicable to this object."
SSE_HEADER_ON_READ_MSG = "x-amz-server-side-encryption header is not supported for this operation."


@pytest.fixture(scope="module")
def kms(server):
    return kms_client(server)


@pytest.fixture(scope="module")
def key_arn(server):
    return default_key_arn(server)


def kms_expected(arn: str, bucket_key: bool = False) -> dict:
    h = {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": arn}
    if bucket_key:
        h["x-amz-server-side-encryption-bucket-key-enabled"] = "true"
    return h


def without_context(h: dict) -> dict:
    return {k: v for k, v in h.items() if k != "x-amz-server-side-encryption-context"}


def ssec_expected(key: bytes) -> dict:
    return {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key-md5": key_md5(key),
    }


def assert_absent(s3, bucket, key):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# ---------------------------------------------------------------------------------------------
# SSE-S3
# ---------------------------------------------------------------------------------------------
def test_put_get_head_sse_s3(s3, bucket):
    # Issue 4: "x-amz-server-side-encryption (AES256 | aws:kms | aws:kms:dsse) ... Response headers
    #   exactly as AWS returns them."
    data = os.urandom(3000)
    put = s3.put_object(Bucket=bucket, Key="s3", Body=data, ServerSideEncryption="AES256")
    assert sse_headers(put) == {"x-amz-server-side-encryption": "AES256"}
    got = s3.get_object(Bucket=bucket, Key="s3")
    assert got["Body"].read() == data
    assert sse_headers(got) == {"x-amz-server-side-encryption": "AES256"}
    assert sse_headers(s3.head_object(Bucket=bucket, Key="s3")) == {"x-amz-server-side-encryption": "AES256"}


@pytest.mark.parametrize("value", ["AES128", "aws:KMS", "none"])
def test_unsupported_sse_value(raw, s3, bucket, value):
    resp = raw("PUT", bucket, "bad", body=b"x", headers={"x-amz-server-side-encryption": value})
    assert_raw_error(resp, "InvalidArgument", 400, "The encryption method specified is not supported")
    assert_absent(s3, bucket, "bad")


# ---------------------------------------------------------------------------------------------
# SSE-KMS
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["key-id", "key-arn", "alias"])
def test_put_sse_kms_with_key_id_arn_or_alias(s3, kms, bucket, form):
    # Issue 4: "-aws-kms-key-id" on PutObject; S3 reports the key by its ARN.
    meta = new_key(kms, alias=f"alias/obj-{form}-{bucket}")
    value = {"key-id": meta["KeyId"], "key-arn": meta["Arn"], "alias": f"alias/obj-{form}-{bucket}"}[form]
    data = os.urandom(5000)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption="aws:kms", SSEKMSKeyId=value)
    assert sse_headers(put) == kms_expected(meta["Arn"])
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == ("aws:kms", meta["Arn"])
    assert put["ETag"] == etag(data)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == data
    assert sse_headers(got) == kms_expected(meta["Arn"])
    assert sse_headers(s3.head_object(Bucket=bucket, Key="k")) == kms_expected(meta["Arn"])
    ranged = s3.get_object(Bucket=bucket, Key="k", Range="bytes=100-199")
    assert ranged["Body"].read() == data[100:200]


def test_sse_kms_without_key_id_creates_alias_aws_s3_on_first_use(private_server):
    # seed 004: "The AWS managed key (aws/s3) is used when a AWS KMS key Amazon Resource Name (ARN)
    #   or alias is not provided at request time, nor via the bucket's default encryption configuration."
    # Issue 4: "SSE-KMS without a key ID uses the account's AWS-managed-style key (alias/aws/s3,
    #   created on first use)."
    server = private_server()
    s3 = server.client()
    kms = kms_client(server)
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId=AWS_MANAGED_S3_ALIAS)
    assert e.value.response["Error"]["Code"] == "NotFoundException"
    keys_before = {k["KeyId"] for k in kms.list_keys()["Keys"]}

    bucket = unique_bucket("managed")
    s3.create_bucket(Bucket=bucket)
    put = s3.put_object(Bucket=bucket, Key="a", Body=b"first", ServerSideEncryption="aws:kms")
    managed = kms.describe_key(KeyId=AWS_MANAGED_S3_ALIAS)["KeyMetadata"]
    assert managed["KeyManager"] == "AWS"
    assert managed["Description"] == "Default key that protects my S3 objects when no other key is defined"
    assert managed["KeyState"] == "Enabled"
    assert sse_headers(put) == kms_expected(managed["Arn"])
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases[AWS_MANAGED_S3_ALIAS] == managed["KeyId"]

    # Later requests reuse it: no second key.
    put2 = s3.put_object(Bucket=bucket, Key="b", Body=b"second", ServerSideEncryption="aws:kms")
    assert put2["SSEKMSKeyId"] == managed["Arn"]
    keys_after = {k["KeyId"] for k in kms.list_keys()["Keys"]}
    assert keys_after - keys_before == {managed["KeyId"]}
    for k, body in (("a", b"first"), ("b", b"second")):
        got = s3.get_object(Bucket=bucket, Key=k)
        assert got["Body"].read() == body
        assert sse_headers(got) == kms_expected(managed["Arn"])

    # It survives a restart (same key afterwards).
    server.restart()
    s3 = server.client()
    put3 = s3.put_object(Bucket=bucket, Key="c", Body=b"third", ServerSideEncryption="aws:kms")
    assert put3["SSEKMSKeyId"] == managed["Arn"]
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"first"


def test_sse_kms_encryption_context(s3, bucket, key_arn):
    # Issue 4: "-context (base64 JSON, merged with the default context aws:s3:arn)".
    ctx = {"project": "coffer", "team": "storage"}
    put = s3.put_object(
        Bucket=bucket, Key="ctx/obj", Body=b"with context", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn,
        SSEKMSEncryptionContext=b64_context(ctx),
    )
    assert without_context(sse_headers(put)) == kms_expected(key_arn)
    assert decode_context(put["SSEKMSEncryptionContext"]) == {"aws:s3:arn": f"arn:aws:s3:::{bucket}/ctx/obj", **ctx}
    got = s3.get_object(Bucket=bucket, Key="ctx/obj")
    assert got["Body"].read() == b"with context"
    assert without_context(sse_headers(got)) == kms_expected(key_arn)


@pytest.mark.parametrize(
    "value",
    [
        "not base64!",
        "bm90IGpzb24=",  # "not json"
        b64_context(["a", "list"]),
        b64_context({"n": 1}),
    ],
    ids=["not-base64", "not-json", "not-a-map", "not-string-values"],
)
def test_sse_kms_invalid_encryption_context(raw, s3, bucket, key_arn, value):
    resp = raw(
        "PUT", bucket, "ctx", body=b"x",
        headers={"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-context": value},
    )
    assert_raw_error(resp, "InvalidArgument", 400, BAD_CONTEXT_MSG)
    assert_absent(s3, bucket, "ctx")


def test_sse_kms_bucket_key_per_request(s3, kms, bucket):
    # seed 004: "S3 Bucket Keys decrease the number of transactions from Amazon S3 to AWS KMS to
    #   reduce the cost of server-side encryption using AWS Key Management Service (SSE-KMS)."
    meta = new_key(kms)
    for i in range(3):
        put = s3.put_object(Bucket=bucket, Key=f"bk{i}", Body=b"bk%d" % i, ServerSideEncryption="aws:kms",
                            SSEKMSKeyId=meta["Arn"], BucketKeyEnabled=True)
        assert sse_headers(put) == kms_expected(meta["Arn"], bucket_key=True)
        assert put["BucketKeyEnabled"] is True
    for i in range(3):
        got = s3.get_object(Bucket=bucket, Key=f"bk{i}")
        assert got["Body"].read() == b"bk%d" % i
        assert sse_headers(got) == kms_expected(meta["Arn"], bucket_key=True)
    head = s3.head_object(Bucket=bucket, Key="bk0")
    assert head["BucketKeyEnabled"] is True


def test_kms_key_id_requires_aws_kms(raw, s3, bucket, key_arn):
    for headers in (
        {"x-amz-server-side-encryption": "AES256", "x-amz-server-side-encryption-aws-kms-key-id": key_arn},
        {"x-amz-server-side-encryption-aws-kms-key-id": key_arn},
    ):
        resp = raw("PUT", bucket, "keyid", body=b"x", headers=headers)
        assert_raw_error(resp, "InvalidArgument", 400, KMS_KEY_ID_REQUIRES_KMS_MSG)
    assert_absent(s3, bucket, "keyid")


def test_sse_kms_unknown_key(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms",
                      SSEKMSKeyId="arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    assert_client_error(e, "KMS.NotFoundException", 400)
    assert_absent(s3, bucket, "k")


def test_sse_kms_requires_sigv4(server, s3, bucket, key_arn):
    # Issue 4: "SSE-KMS requests require SigV4."
    resp = sigv2_request(server, "PUT", bucket, "v2", body=b"x",
                         headers={"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": key_arn})
    assert resp.status == 400, resp
    assert resp.error_code == "InvalidRequest", resp
    assert_absent(s3, bucket, "v2")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("stored", ["aws:kms", "AES256"])
@pytest.mark.parametrize("sent", ["aws:kms", "AES256"])
def test_encryption_header_on_read_is_400(raw, s3, bucket, key_arn, method, stored, sent):
    # Issue 4: "Encryption headers sent on GET/HEAD of an SSE-KMS object → 400."
    # (S3's GetObject/HeadObject: "Encryption request headers, like x-amz-server-side-encryption,
    #  should not be sent for ... SSE-KMS ... or SSE-S3 ... you'll get an HTTP 400 Bad Request error.")
    extra = {"SSEKMSKeyId": key_arn} if stored == "aws:kms" else {}
    s3.put_object(Bucket=bucket, Key="o", Body=b"body", ServerSideEncryption=stored, **extra)
    resp = raw(method, bucket, "o", headers={"x-amz-server-side-encryption": sent})
    assert resp.status == 400, resp
    if method == "GET":
        assert_raw_error(resp, "InvalidArgument", 400, SSE_HEADER_ON_READ_MSG)
    else:
        assert resp.body == b""
    # Without the header the object reads fine.
    assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"body"


def test_put_dsse_kms(s3, bucket, key_arn):
    # Issue 4: "x-amz-server-side-encryption (AES256 | aws:kms | aws:kms:dsse)".
    put = s3.put_object(Bucket=bucket, Key="dsse", Body=b"two layers", ServerSideEncryption="aws:kms:dsse",
                        SSEKMSKeyId=key_arn)
    expected = {"x-amz-server-side-encryption": "aws:kms:dsse", "x-amz-server-side-encryption-aws-kms-key-id": key_arn}
    assert sse_headers(put) == expected
    got = s3.get_object(Bucket=bucket, Key="dsse")
    assert got["Body"].read() == b"two layers"
    assert sse_headers(got) == expected


# ---------------------------------------------------------------------------------------------
# CopyObject
# ---------------------------------------------------------------------------------------------
def test_copy_to_sse_kms_with_context(s3, kms, bucket):
    # Issue 4: per-request encryption on CopyObject; the copy is encrypted as the request says.
    meta = new_key(kms)
    data = os.urandom(10_000)
    s3.put_object(Bucket=bucket, Key="src", Body=data, ServerSideEncryption="AES256")
    ctx = {"purpose": "copy"}
    copy = s3.copy_object(
        Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, ServerSideEncryption="aws:kms",
        SSEKMSKeyId=meta["Arn"], SSEKMSEncryptionContext=b64_context(ctx), BucketKeyEnabled=False,
    )
    assert without_context(sse_headers(copy)) == kms_expected(meta["Arn"])
    assert decode_context(copy["SSEKMSEncryptionContext"]) == {"aws:s3:arn": f"arn:aws:s3:::{bucket}/dst", **ctx}
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == data
    assert got["ETag"] == etag(data)
    assert sse_headers(got) == kms_expected(meta["Arn"])
    # The source is untouched.
    assert sse_headers(s3.head_object(Bucket=bucket, Key="src")) == {"x-amz-server-side-encryption": "AES256"}


def test_copy_without_sse_headers_does_not_keep_source_encryption(s3, bucket, key_arn):
    # A copy is a new object: without encryption headers it gets the destination bucket's default
    # (seed 001: "If a PUT Object request doesn't specify any server-side encryption, this default
    # encryption will be applied.").
    s3.put_object(Bucket=bucket, Key="src", Body=b"kms source", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    copy = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert sse_headers(copy) == {"x-amz-server-side-encryption": "AES256"}
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"kms source"


def test_encrypt_existing_object_with_copy_onto_itself(s3, kms, bucket):
    # seed 004: "You can also encrypt existing objects using the Copy Object API."
    meta = new_key(kms)
    data = os.urandom(2 * 1024 * 1024 + 5)
    s3.put_object(Bucket=bucket, Key="existing", Body=data, Metadata={"m": "v"}, ContentType="text/plain")
    copy = s3.copy_object(Bucket=bucket, Key="existing", CopySource={"Bucket": bucket, "Key": "existing"},
                          ServerSideEncryption="aws:kms", SSEKMSKeyId=meta["KeyId"], BucketKeyEnabled=True)
    assert sse_headers(copy) == kms_expected(meta["Arn"], bucket_key=True)
    got = s3.get_object(Bucket=bucket, Key="existing")
    assert got["Body"].read() == data
    assert sse_headers(got) == kms_expected(meta["Arn"], bucket_key=True)
    assert (got["Metadata"], got["ContentType"]) == ({"m": "v"}, "text/plain")


# ---------------------------------------------------------------------------------------------
# Multipart
# ---------------------------------------------------------------------------------------------
def test_multipart_sse_kms_with_context_and_bucket_key(s3, kms, bucket):
    # Issue 4: per-request encryption on CreateMultipartUpload and UploadPart.
    meta = new_key(kms)
    ctx = {"upload": "multipart"}
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="mpu", ServerSideEncryption="aws:kms",
                                     SSEKMSKeyId=meta["KeyId"], SSEKMSEncryptionContext=b64_context(ctx),
                                     BucketKeyEnabled=True)
    expected = kms_expected(meta["Arn"], bucket_key=True)
    assert without_context(sse_headers(mpu)) == expected
    assert decode_context(mpu["SSEKMSEncryptionContext"])["upload"] == "multipart"
    parts_data = [os.urandom(5 * 1024 * 1024), os.urandom(1234)]
    parts = []
    for n, body in enumerate(parts_data, start=1):
        p = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=mpu["UploadId"], PartNumber=n, Body=body)
        assert sse_headers(p) == expected
        parts.append({"PartNumber": n, "ETag": p["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=mpu["UploadId"],
                                        MultipartUpload={"Parts": parts})
    assert sse_headers(done) == expected
    got = s3.get_object(Bucket=bucket, Key="mpu")
    assert got["Body"].read() == b"".join(parts_data)
    assert sse_headers(got) == expected
    assert sse_headers(s3.head_object(Bucket=bucket, Key="mpu")) == expected


def test_multipart_sse_s3(s3, bucket):
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="mpu", ServerSideEncryption="AES256")
    assert sse_headers(mpu) == {"x-amz-server-side-encryption": "AES256"}
    p = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=mpu["UploadId"], PartNumber=1, Body=b"only part")
    assert sse_headers(p) == {"x-amz-server-side-encryption": "AES256"}
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=mpu["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    assert sse_headers(done) == {"x-amz-server-side-encryption": "AES256"}


def test_multipart_sse_c(raw, s3, bucket):
    # Issue 4: SSE-C (-customer-algorithm, -customer-key, -customer-key-MD5) on CreateMultipartUpload
    #   and UploadPart.
    allow_sse_c(s3, bucket)  # new buckets block SSE-C writes (issue 7)
    key = customer_key()
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="mpu", **ssec_params(key))
    assert sse_headers(mpu) == ssec_expected(key)
    uid = mpu["UploadId"]
    body = os.urandom(5 * 1024 * 1024)
    p1 = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=uid, PartNumber=1, Body=body, **ssec_params(key))
    assert sse_headers(p1) == ssec_expected(key)
    # A part without the key, or with another one, is refused.
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mpu", UploadId=uid, PartNumber=2, Body=b"no key")
    assert_client_error(e, "InvalidRequest", 400)
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mpu", UploadId=uid, PartNumber=2, Body=b"other", **ssec_params(customer_key()))
    assert_client_error(e, "InvalidRequest", 400)
    p2 = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=uid, PartNumber=2, Body=b"tail", **ssec_params(key))
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mpu", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}, {"PartNumber": 2, "ETag": p2["ETag"]}]},
    )
    assert sse_headers(done) == ssec_expected(key)
    got = s3.get_object(Bucket=bucket, Key="mpu", **ssec_params(key))
    assert got["Body"].read() == body + b"tail"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mpu")
    assert_client_error(e, "InvalidRequest", 400, SSEC_REQUIRED_MSG)


def test_upload_part_copy_from_sse_c_source_into_sse_kms_upload(s3, bucket, key_arn):
    # Issue 4: "the x-amz-copy-source-server-side-encryption-customer-* trio on copies" (UploadPartCopy).
    allow_sse_c(s3, bucket)  # new buckets block SSE-C writes (issue 7)
    src_key = customer_key()
    data = os.urandom(6 * 1024 * 1024)
    s3.put_object(Bucket=bucket, Key="src", Body=data, **ssec_params(src_key))
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="dst", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    uid = mpu["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "src"})
    assert_client_error(e, "InvalidRequest", 400, SSEC_REQUIRED_MSG)
    pc = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange="bytes=0-5242879",
                             **copy_source_ssec_params(src_key))
    assert sse_headers(pc) == kms_expected(key_arn)
    pc2 = s3.upload_part_copy(Bucket=bucket, Key="dst", UploadId=uid, PartNumber=2,
                              CopySource={"Bucket": bucket, "Key": "src"},
                              CopySourceRange=f"bytes=5242880-{len(data) - 1}", **copy_source_ssec_params(src_key))
    s3.complete_multipart_upload(
        Bucket=bucket, Key="dst", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": pc["CopyPartResult"]["ETag"]},
                                   {"PartNumber": 2, "ETag": pc2["CopyPartResult"]["ETag"]}]},
    )
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == data
    assert sse_headers(got) == kms_expected(key_arn)


# ---------------------------------------------------------------------------------------------
# SSE-C
# ---------------------------------------------------------------------------------------------
def test_sse_c_put_get_head(s3, bucket):
    # Issue 4: "SSE-C (-customer-algorithm, -customer-key, -customer-key-MD5)".
    allow_sse_c(s3, bucket)  # new buckets block SSE-C writes (issue 7)
    key = customer_key()
    data = os.urandom(70_000)
    put = s3.put_object(Bucket=bucket, Key="c", Body=data, **ssec_params(key))
    assert sse_headers(put) == ssec_expected(key)
    assert put["ETag"] == etag(data)
    got = s3.get_object(Bucket=bucket, Key="c", **ssec_params(key))
    assert got["Body"].read() == data
    assert sse_headers(got) == ssec_expected(key)
    head = s3.head_object(Bucket=bucket, Key="c", **ssec_params(key))
    assert sse_headers(head) == ssec_expected(key)
    assert head["ContentLength"] == len(data)
    ranged = s3.get_object(Bucket=bucket, Key="c", Range="bytes=65530-65545", **ssec_params(key))
    assert ranged["Body"].read() == data[65530:65546]


def test_sse_c_wrong_key_is_403_and_missing_key_is_400(s3, bucket):
    # Issue 4: "A wrong SSE-C key → 403 before any data is read; a missing one → 400."
    allow_sse_c(s3, bucket)  # new buckets block SSE-C writes (issue 7)
    key = customer_key()
    s3.put_object(Bucket=bucket, Key="c", Body=b"secret", **ssec_params(key))
    wrong = customer_key()
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", **ssec_params(wrong))
    assert_client_error(e, "AccessDenied", 403, "Access Denied")
    assert "Body" not in e.value.response
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", **ssec_params(wrong))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c")
    assert_client_error(e, "InvalidRequest", 400, SSEC_REQUIRED_MSG)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # A wrong key on a ranged read is refused the same way.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", Range="bytes=0-1", **ssec_params(wrong))
    assert_client_error(e, "AccessDenied", 403)


def test_sse_c_header_validation(raw, s3, bucket):
    allow_sse_c(s3, bucket)  # new buckets block SSE-C writes (issue 7)
    key = customer_key()
    cases = [
        (ssec_headers(key, md5=key_md5(b"x" * 32)), "InvalidArgument",
         "The calculated MD5 hash of the key did not match the hash that was provided."),
        (ssec_headers(key[:16]), "InvalidArgument", "The secret key was invalid for the specified algorithm."),
        ({**ssec_headers(key), "x-amz-server-side-encryption-customer-algorithm": "AES128"},
         "InvalidEncryptionAlgorithmError", "The Encryption request you specified is not valid. Supported value: AES256."),
        ({k: v for k, v in ssec_headers(key).items() if not k.endswith("key-MD5")}, "InvalidArgument",
         "Requests specifying Server Side Encryption with Customer provided keys must provide the client calculated MD5 of the secret key."),
        ({k: v for k, v in ssec_headers(key).items() if not k.endswith("-key")}, "InvalidArgument",
         "Requests specifying Server Side Encryption with Customer provided keys must provide an appropriate secret key."),
        ({**ssec_headers(key), "x-amz-server-side-encryption": "AES256"}, "InvalidArgument",
         "Server Side Encryption with Customer provided key is incompatible with the encryption method specified"),
    ]
    for headers, code, message in cases:
        resp = raw("PUT", bucket, "c", body=b"x", headers=headers)
        assert_raw_error(resp, code, 400, message)
    assert_absent(s3, bucket, "c")


def test_sse_c_headers_on_a_non_sse_c_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="plain", **ssec_params(customer_key()))
    assert_client_error(e, "InvalidRequest", 400, SSEC_NOT_APPLICABLE_MSG)


def test_copy_sse_c_source(s3, bucket):
    # Issue 4: "the x-amz-copy-source-server-side-encryption-customer-* trio on copies".
    allow_sse_c(s3, bucket)  # new buckets block SSE-C writes (issue 7)
    src_key, dst_key = customer_key(), customer_key()
    data = os.urandom(20_000)
    s3.put_object(Bucket=bucket, Key="src", Body=data, **ssec_params(src_key))
    source = {"Bucket": bucket, "Key": "src"}

    # Missing source key → 400; wrong source key → 403; nothing is written.
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source)
    assert_client_error(e, "InvalidRequest", 400, SSEC_REQUIRED_MSG)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, **copy_source_ssec_params(customer_key()))
    assert_client_error(e, "AccessDenied", 403)
    assert_absent(s3, bucket, "dst")

    # Into SSE-C under another key.
    copy = s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, **copy_source_ssec_params(src_key),
                          **ssec_params(dst_key))
    assert sse_headers(copy) == ssec_expected(dst_key)
    assert s3.get_object(Bucket=bucket, Key="dst", **ssec_params(dst_key))["Body"].read() == data
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="dst", **ssec_params(src_key))
    assert_client_error(e, "AccessDenied", 403)

    # Into SSE-S3 (no destination encryption headers).
    copy = s3.copy_object(Bucket=bucket, Key="plain", CopySource=source, **copy_source_ssec_params(src_key))
    assert sse_headers(copy) == {"x-amz-server-side-encryption": "AES256"}
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == data

    # The copy-source trio on a source that is not SSE-C is refused.
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="again", CopySource={"Bucket": bucket, "Key": "plain"},
                       **copy_source_ssec_params(src_key))
    assert_client_error(e, "InvalidRequest", 400, SSEC_NOT_APPLICABLE_MSG)


def test_copy_sse_kms_object_into_sse_c(s3, bucket, key_arn):
    allow_sse_c(s3, bucket)  # new buckets block SSE-C writes (issue 7)
    key = customer_key()
    s3.put_object(Bucket=bucket, Key="src", Body=b"kms", ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    copy = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"}, **ssec_params(key))
    assert sse_headers(copy) == ssec_expected(key)
    assert s3.get_object(Bucket=bucket, Key="dst", **ssec_params(key))["Body"].read() == b"kms"
