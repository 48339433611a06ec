"""UpdateObjectEncryption (seed 000): change an SSE-S3 / SSE-KMS object to SSE-KMS under a new
key (and optionally an S3 Bucket Key) without moving data; every error the seed lists.

Each test cites the seed sentence it checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from checksums import etag, md5_b64
from conftest import unique_bucket
from harness import assert_client_error, assert_raw_error
from sse_common import (
    ACCOUNT,
    S3_NS,
    allow_sse_c,
    customer_key,
    default_key_arn,
    headers_of,
    kms_client,
    new_key,
    sigv2_request,
    sse_headers,
    ssec_params,
)

MiB = 1024 * 1024

# The seed's messages, word for word (its typographic apostrophes included).
SOURCE_UNENCRYPTED = (
    "The UpdateObjectEncryption operation doesn’t supported unencrypted source objects. Only source objects "
    "encrypted with SSE-S3 or SSE-KMS are supported."
)
SOURCE_TYPE = (
    "The UpdateObjectEncryption operation doesn’t support source objects with the encryption type DSSE-KMS or SSE-C. "
    "Only source objects encrypted with SSE-S3 or SSE-KMS are supported."
)
TARGET_TYPE = (
    "The UpdateObjectEncryption operation doesn’t support updating the encryption type to DSSE-KMS or SSE-C. "
    "Modify the request to specify SSE-KMS for the updated encryption type, and then try again."
)
SIGV4 = (
    "Requests that modify an object encryption configuration require Amazon Web Services Signature Version 4. "
    "Modify the request to use Amazon Web Services Signature Version 4, and then try again."
)
NEW_TYPE = (
    "Requests that modify an object encryption configuration require a valid new encryption type. Valid values are "
    "SSEKMS. Modify the request to specify SSE-KMS for the updated encryption type, and then try again."
)
ARN_MISSING = (
    "Requests that modify an object’s encryption type to SSE-KMS require an Amazon Web Services KMS key Amazon "
    "Resource Name (ARN). Modify the request to specify a KMS key ARN, and then try again."
)
ARN_INVALID = (
    "Requests that modify an object’s encryption type to SSE-KMS require a valid Amazon Web Services KMS key Amazon "
    "Resource Name (ARN). Confirm that you have a correctly formatted KMS key ARN in your request, and then try again."
)
BUCKET_KEY = (
    "The BucketKeyEnabled value isn’t valid. Valid values are true or false. Modify the request to specify a valid "
    "value, and then try again."
)
OTHER_ACCOUNT = (
    "The Amazon Web Services KMS key in the request must be owned by the same account as the bucket. Modify the "
    "request to specify a KMS key from the same account, and then try again."
)
OBJECT_LOCK = (
    "The encryption type for the specified object can’t be updated because that object is protected by S3 Object "
    "Lock. If the object has a governance-mode retention period or a legal hold, you must first remove the Object "
    "Lock status on the object before you issue your UpdateObjectEncryption request. You can’t use the "
    "UpdateObjectEncryption operation with objects that have an Object Lock compliance mode retention period "
    "applied to them."
)

# Response headers that legitimately differ between two HEADs of the same object.
VOLATILE = {"x-amz-request-id", "x-amz-id-2", "date"}


@pytest.fixture(scope="module")
def kms(server):
    return kms_client(server)


@pytest.fixture(scope="module")
def target(kms):
    """A fresh customer managed key of the bucket owner's account."""
    return new_key(kms)["Arn"]


def update(s3, bucket, key, arn, bucket_key=None, **kw):
    sse = {"KMSKeyArn": arn}
    if bucket_key is not None:
        sse["BucketKeyEnabled"] = bucket_key
    return s3.update_object_encryption(Bucket=bucket, Key=key, ObjectEncryption={"SSEKMS": sse}, **kw)


def kms_expected(arn: str, bucket_key: bool = False) -> dict:
    h = {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": arn}
    if bucket_key:
        h["x-amz-server-side-encryption-bucket-key-enabled"] = "true"
    return h


def stable_headers(resp: dict) -> dict:
    """Every response header but the per-request ones and the encryption ones."""
    return {
        k: v
        for k, v in headers_of(resp).items()
        if k not in VOLATILE and not k.startswith("x-amz-server-side-encryption")
    }


def body_xml(inner: str) -> bytes:
    return f'<ObjectEncryption xmlns="{S3_NS}">{inner}</ObjectEncryption>'.encode()


def raw_update(raw, bucket, key, body: bytes, query: str = "encryption", headers=None):
    h = {"Content-MD5": md5_b64(body)}
    h.update(headers or {})
    return raw("PUT", bucket, key, query=query, body=body, headers=h)


def assert_unchanged(s3, bucket, key, before: dict, **kw):
    """The object's headers (encryption included) are exactly what they were."""
    now = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **kw)
    assert stable_headers(now) == stable_headers(before)
    assert sse_headers(now) == sse_headers(before)


def put_sample(s3, bucket, key, size=4096, **kw) -> tuple[bytes, dict]:
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256", **kw)
    return data, s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")


# ---------------------------------------------------------------------------------------------
# Success: what changes and what does not
# ---------------------------------------------------------------------------------------------
def multipart_object(s3, bucket, key) -> bytes:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(777)]
    mpu = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ChecksumAlgorithm="SHA1", ContentType="application/x-parts",
        Metadata={"kind": "multipart"},
    )
    done = []
    for n, body in enumerate(parts, start=1):
        p = s3.upload_part(Bucket=bucket, Key=key, UploadId=mpu["UploadId"], PartNumber=n, Body=body,
                           ChecksumAlgorithm="SHA1")
        done.append({"PartNumber": n, "ETag": p["ETag"], "ChecksumSHA1": p["ChecksumSHA1"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=mpu["UploadId"], MultipartUpload={"Parts": done})
    return b"".join(parts)


@pytest.mark.parametrize("shape", ["single", "multipart"])
@pytest.mark.parametrize("bucket_key", [None, False, True])
def test_sse_s3_to_sse_kms_preserves_the_object(s3, bucket, target, shape, bucket_key):
    # seed 000: "You can use the UpdateObjectEncryption operation to change encrypted objects from
    #   server-side encryption with Amazon S3 managed keys (SSE-S3) to server-side encryption with Key
    #   Management Service (KMS) keys (SSE-KMS), or to apply S3 Bucket Keys."
    # seed 000: "Additionally, the UpdateObjectEncryption operation preserves all object metadata
    #   properties, including the storage class, creation date, last modified date, ETag, and checksum
    #   properties."
    # seed 000 (BucketKeyEnabled): "If this value isn’t specified, it defaults to false."
    if shape == "single":
        data = os.urandom(3 * MiB + 11)
        s3.put_object(
            Bucket=bucket, Key="obj", Body=data, ChecksumAlgorithm="SHA256", ContentType="text/x-coffer",
            Metadata={"color": "blue"}, StorageClass="STANDARD_IA", CacheControl="max-age=60",
            ContentDisposition="inline", ContentLanguage="fr",
        )
    else:
        data = multipart_object(s3, bucket, "obj")
    before = s3.head_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    assert sse_headers(before) == {"x-amz-server-side-encryption": "AES256"}
    listed_before = s3.list_objects_v2(Bucket=bucket)["Contents"]

    resp = update(s3, bucket, "obj", target, bucket_key)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "RequestCharged" not in resp

    expected = kms_expected(target, bucket_key=bool(bucket_key))
    after = s3.head_object(Bucket=bucket, Key="obj", ChecksumMode="ENABLED")
    assert sse_headers(after) == expected
    assert stable_headers(after) == stable_headers(before)
    for field in ("ETag", "LastModified", "ContentLength", "ContentType", "Metadata"):
        assert after[field] == before[field], field
    if shape == "single":
        assert (after["StorageClass"], after["ChecksumSHA256"]) == ("STANDARD_IA", before["ChecksumSHA256"])
    else:
        assert after["ChecksumSHA1"] == before["ChecksumSHA1"]
        assert after["ETag"].endswith('-3"')
    assert s3.list_objects_v2(Bucket=bucket)["Contents"] == listed_before

    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == data
    assert sse_headers(got) == expected
    ranged = s3.get_object(Bucket=bucket, Key="obj", Range="bytes=1048570-1048590")
    assert ranged["Body"].read() == data[1048570:1048591]
    if shape == "multipart":
        part2 = s3.get_object(Bucket=bucket, Key="obj", PartNumber=2)
        assert part2["Body"].read() == data[5 * MiB : 10 * MiB]


@pytest.mark.parametrize("storage_class", ["GLACIER", "DEEP_ARCHIVE", "INTELLIGENT_TIERING"])
def test_storage_class_is_kept(s3, bucket, target, storage_class):
    # seed 000: "your data isn’t copied, archived objects in the S3 Glacier Flexible Retrieval and S3
    #   Glacier Deep Archive storage classes aren’t restored, and objects in the S3 Intelligent-Tiering
    #   storage class aren’t moved between tiers."
    s3.put_object(Bucket=bucket, Key="k", Body=b"archived", StorageClass=storage_class)
    before = s3.head_object(Bucket=bucket, Key="k")
    assert before["StorageClass"] == storage_class
    update(s3, bucket, "k", target)
    after = s3.head_object(Bucket=bucket, Key="k")
    assert stable_headers(after) == stable_headers(before)
    assert after["StorageClass"] == storage_class
    assert sse_headers(after) == kms_expected(target)
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["StorageClass"]) for o in listed] == [("k", storage_class)]


def test_change_the_customer_managed_key(s3, kms, bucket, server):
    # seed 000: "You can also use the UpdateObjectEncryption operation to change the customer-managed
    #   KMS key used to encrypt your data so that you can comply with custom key-rotation standards."
    first = default_key_arn(server)
    data = os.urandom(10_000)
    s3.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption="aws:kms", SSEKMSKeyId=first)
    before = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    second = new_key(kms)["Arn"]
    update(s3, bucket, "k", second)
    after = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert sse_headers(after) == kms_expected(second)
    assert stable_headers(after) == stable_headers(before)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    # The old key is no longer needed: with it disabled the object still reads.
    old_id = first.rsplit("/", 1)[1]
    kms.disable_key(KeyId=old_id)
    try:
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    finally:
        kms.enable_key(KeyId=old_id)
    # ... and the new one is: with it disabled the object cannot be read.
    second_id = second.rsplit("/", 1)[1]
    kms.disable_key(KeyId=second_id)
    try:
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key="k")
        assert e.value.response["Error"]["Code"] == "KMS.DisabledException"
    finally:
        kms.enable_key(KeyId=second_id)


def test_bucket_key_on_and_off_and_back(s3, kms, bucket):
    # seed 000: "... or to apply S3 Bucket Keys."
    # seed 000 (BucketKeyEnabled): "Setting this value to true causes Amazon S3 to use an S3 Bucket
    #   Key for object encryption with SSE-KMS."
    a, b = new_key(kms)["Arn"], new_key(kms)["Arn"]
    data = os.urandom(2000)
    s3.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption="aws:kms", SSEKMSKeyId=a)
    update(s3, bucket, "k", a, True)
    assert sse_headers(s3.head_object(Bucket=bucket, Key="k")) == kms_expected(a, bucket_key=True)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    update(s3, bucket, "k", b, True)
    assert sse_headers(s3.head_object(Bucket=bucket, Key="k")) == kms_expected(b, bucket_key=True)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == data
    update(s3, bucket, "k", b, False)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert sse_headers(got) == kms_expected(b)
    assert got["Body"].read() == data


def test_sse_kms_object_of_a_bucket_key_default(s3, bucket, target, server):
    # seed 000: "change encrypted objects from ... SSE-S3 to ... SSE-KMS" — here an SSE-KMS object
    #   written under a bucket default with S3 Bucket Keys.
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": default_key_arn(server)},
        "BucketKeyEnabled": True}]})
    s3.put_object(Bucket=bucket, Key="k", Body=b"bucket key object")
    update(s3, bucket, "k", target)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"bucket key object"
    assert sse_headers(got) == kms_expected(target)


def test_optional_parameters_are_accepted(s3, bucket, target):
    # seed 000 Request Syntax: RequestPayer='requester', ExpectedBucketOwner='string',
    #   ChecksumAlgorithm='CRC32'|'CRC32C'|'SHA1'|'SHA256'|'CRC64NVME'
    # seed 000 (RequestCharged): "If present, indicates that the requester was successfully charged".
    for i, alg in enumerate(["CRC32", "SHA1", "SHA256"]):  # CRC32C and CRC64NVME need awscrt
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
        resp = update(s3, bucket, f"k{i}", target, RequestPayer="requester", ExpectedBucketOwner=ACCOUNT,
                      ChecksumAlgorithm=alg)
        assert "RequestCharged" not in resp
        assert s3.head_object(Bucket=bucket, Key=f"k{i}")["SSEKMSKeyId"] == target


def test_content_md5_is_checked(raw, s3, bucket, target):
    # seed 000 (ContentMD5): "The MD5 hash for the request body."
    _, before = put_sample(s3, bucket, "k")
    body = body_xml(f"<SSE-KMS><KMSKeyArn>{target}</KMSKeyArn></SSE-KMS>")
    resp = raw_update(raw, bucket, "k", body, headers={"Content-MD5": md5_b64(b"something else")})
    assert_raw_error(resp, "BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
    assert_unchanged(s3, bucket, "k", before)
    resp = raw("PUT", bucket, "k", query="encryption", body=body)
    assert_raw_error(resp, "InvalidRequest", 400, "Missing required header for this request: Content-MD5")
    assert_unchanged(s3, bucket, "k", before)
    ok = raw_update(raw, bucket, "k", body)
    assert (ok.status, ok.body) == (200, b""), ok
    assert sse_headers(s3.head_object(Bucket=bucket, Key="k")) == kms_expected(target)


def test_checksum_algorithm_without_checksum_is_400(raw, s3, bucket, target):
    # seed 000 (ChecksumAlgorithm): "When you send this header, there must be a corresponding
    #   x-amz-checksum or x-amz-trailer header sent. Otherwise, Amazon S3 fails the request with the
    #   HTTP status code 400 Bad Request."
    _, before = put_sample(s3, bucket, "k")
    body = body_xml(f"<SSE-KMS><KMSKeyArn>{target}</KMSKeyArn></SSE-KMS>")
    resp = raw_update(raw, bucket, "k", body, headers={"x-amz-sdk-checksum-algorithm": "CRC32"})
    assert resp.status == 400, resp
    assert resp.error_code == "InvalidRequest"
    assert_unchanged(s3, bucket, "k", before)


# ---------------------------------------------------------------------------------------------
# The blob is never read or written
# ---------------------------------------------------------------------------------------------
def blob_files(server) -> dict[str, tuple]:
    root = server.data_dir / "blobs"
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (
                hashlib.sha256(p.read_bytes()).hexdigest(), st.st_size, st.st_ino, st.st_mtime_ns,
            )
    return out


def test_blob_files_are_untouched(private_server):
    # seed 000: "Using the UpdateObjectEncryption operation, you can atomically update the
    #   server-side encryption type of an existing object in a general purpose bucket without any
    #   data movement." / "your data isn’t copied"
    server = private_server()
    s3 = server.client()
    kms = kms_client(server)
    bucket = unique_bucket("noblob")
    s3.create_bucket(Bucket=bucket)
    bodies = {"small": os.urandom(100), "chunks": os.urandom(3 * MiB + 1)}
    for k, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=k, Body=body)
    bodies["parts"] = multipart_object(s3, bucket, "parts")
    snapshot = blob_files(server)
    assert len([n for n in snapshot if not n.startswith("tmp/")]) >= 5, snapshot  # 2 singles + 3 parts

    a, b = new_key(kms)["Arn"], new_key(kms)["Arn"]
    for k in bodies:
        update(s3, bucket, k, a)
        update(s3, bucket, k, b, True)
        update(s3, bucket, k, a, False)
    assert blob_files(server) == snapshot

    for k, body in bodies.items():
        got = s3.get_object(Bucket=bucket, Key=k)
        assert got["Body"].read() == body
        assert sse_headers(got) == kms_expected(a)
    assert blob_files(server) == snapshot


# ---------------------------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------------------------
def test_versioned_object_by_version_id(s3, bucket, target):
    # seed 000 (VersionId): "The version ID of the object that you want to update the server-side
    #   encryption type for."
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"]
    before_v1 = s3.head_object(Bucket=bucket, Key="k", VersionId=v1, ChecksumMode="ENABLED")
    update(s3, bucket, "k", target, VersionId=v1)
    old = s3.get_object(Bucket=bucket, Key="k", VersionId=v1)
    assert (old["Body"].read(), old["VersionId"]) == (b"one", v1)
    assert sse_headers(old) == kms_expected(target)
    assert stable_headers(s3.head_object(Bucket=bucket, Key="k", VersionId=v1, ChecksumMode="ENABLED")) == stable_headers(before_v1)
    cur = s3.get_object(Bucket=bucket, Key="k")
    assert (cur["Body"].read(), cur["VersionId"]) == (b"two", v2)
    assert sse_headers(cur) == {"x-amz-server-side-encryption": "AES256"}

    # Without a version ID: the current version.
    update(s3, bucket, "k", target, True)
    cur = s3.get_object(Bucket=bucket, Key="k")
    assert (cur["Body"].read(), cur["VersionId"]) == (b"two", v2)
    assert sse_headers(cur) == kms_expected(target, bucket_key=True)
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]] == [v2, v1]


def test_no_such_key_and_no_such_version(s3, bucket, target):
    # seed 000 Exceptions: "S3.Client.exceptions.NoSuchKey"
    with pytest.raises(ClientError) as e:
        update(s3, bucket, "missing", target)
    assert_client_error(e, "NoSuchKey", 404, "The specified key does not exist.")

    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    bogus = secrets.token_urlsafe(24)[:32].replace("-", "a").replace("_", "b")
    with pytest.raises(ClientError) as e:
        update(s3, bucket, "k", target, VersionId=bogus)
    assert_client_error(e, "NoSuchVersion", 404, "The specified version does not exist.")

    # A current delete marker: the key does not exist.
    s3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError) as e:
        update(s3, bucket, "k", target)
    assert_client_error(e, "NoSuchKey", 404, "The specified key does not exist.")

    with pytest.raises(ClientError) as e:
        update(s3, unique_bucket("nobucket"), "k", target)
    assert_client_error(e, "NoSuchBucket", 404)


# ---------------------------------------------------------------------------------------------
# InvalidRequest
# ---------------------------------------------------------------------------------------------
def test_sse_c_source_is_refused(s3, bucket, target):
    # seed 000: "The UpdateObjectEncryption operation doesn’t support source objects with the
    #   encryption type DSSE-KMS or SSE-C. Only source objects encrypted with SSE-S3 or SSE-KMS are supported."
    # seed 000 Note: "Source objects that are unencrypted, or encrypted with either dual-layer
    #   server-side encryption with KMS keys (DSSE-KMS) or server-side encryption with customer-provided
    #   keys (SSE-C) aren’t supported by this operation."
    allow_sse_c(s3, bucket)  # new buckets block SSE-C writes (issue 7)
    key = customer_key()
    s3.put_object(Bucket=bucket, Key="c", Body=b"ssec", **ssec_params(key))
    before = s3.head_object(Bucket=bucket, Key="c", **ssec_params(key))
    with pytest.raises(ClientError) as e:
        update(s3, bucket, "c", target)
    assert_client_error(e, "InvalidRequest", 400, SOURCE_TYPE)
    after = s3.head_object(Bucket=bucket, Key="c", **ssec_params(key))
    assert sse_headers(after) == sse_headers(before)
    assert s3.get_object(Bucket=bucket, Key="c", **ssec_params(key))["Body"].read() == b"ssec"


def test_dsse_kms_source_is_refused(s3, bucket, target, server):
    # seed 000: "The UpdateObjectEncryption operation doesn’t support source objects with the
    #   encryption type DSSE-KMS or SSE-C. ..."
    s3.put_object(Bucket=bucket, Key="d", Body=b"dsse", ServerSideEncryption="aws:kms:dsse",
                  SSEKMSKeyId=default_key_arn(server))
    with pytest.raises(ClientError) as e:
        update(s3, bucket, "d", target)
    assert_client_error(e, "InvalidRequest", 400, SOURCE_TYPE)
    # Refused before anything changed: still DSSE-KMS, still readable through both layers.
    assert s3.head_object(Bucket=bucket, Key="d")["ServerSideEncryption"] == "aws:kms:dsse"
    assert s3.get_object(Bucket=bucket, Key="d")["Body"].read() == b"dsse"


@pytest.mark.parametrize("inner", ["<DSSE-KMS><KMSKeyArn>{arn}</KMSKeyArn></DSSE-KMS>", "<SSE-C/>"],
                         ids=["dsse-kms", "sse-c"])
def test_dsse_kms_or_sse_c_target_is_refused(raw, s3, bucket, target, inner):
    # seed 000: "The UpdateObjectEncryption operation doesn’t support updating the encryption type to
    #   DSSE-KMS or SSE-C. Modify the request to specify SSE-KMS for the updated encryption type, and
    #   then try again."
    _, before = put_sample(s3, bucket, "k")
    resp = raw_update(raw, bucket, "k", body_xml(inner.format(arn=target)))
    assert_raw_error(resp, "InvalidRequest", 400, TARGET_TYPE)
    assert_unchanged(s3, bucket, "k", before)


@pytest.mark.parametrize("inner", ["<SSE-S3/>", "<SSE-S3></SSE-S3>", ""], ids=["sse-s3", "sse-s3-open", "empty"])
def test_sse_s3_or_no_target_is_refused(raw, s3, bucket, inner):
    # seed 000 Note: "Additionally, you cannot specify SSE-S3 encryption as the requested new
    #   encryption type UpdateObjectEncryption request."
    # seed 000: "Requests that modify an object encryption configuration require a valid new
    #   encryption type. Valid values are SSEKMS. Modify the request to specify SSE-KMS for the
    #   updated encryption type, and then try again."
    _, before = put_sample(s3, bucket, "k")
    resp = raw_update(raw, bucket, "k", body_xml(inner))
    assert_raw_error(resp, "InvalidRequest", 400, NEW_TYPE)
    assert_unchanged(s3, bucket, "k", before)


@pytest.mark.parametrize("inner", ["<SSE-KMS></SSE-KMS>", "<SSE-KMS><BucketKeyEnabled>true</BucketKeyEnabled></SSE-KMS>",
                                   "<SSE-KMS><KMSKeyArn></KMSKeyArn></SSE-KMS>"], ids=["empty", "bucket-key-only", "blank"])
def test_missing_key_arn(raw, s3, bucket, inner):
    # seed 000: "Requests that modify an object’s encryption type to SSE-KMS require an Amazon Web
    #   Services KMS key Amazon Resource Name (ARN). Modify the request to specify a KMS key ARN, and
    #   then try again."
    # seed 000 (KMSKeyArn): "[REQUIRED] ... Required if ObjectEncryption specifies SSEKMS."
    _, before = put_sample(s3, bucket, "k")
    resp = raw_update(raw, bucket, "k", body_xml(inner))
    assert_raw_error(resp, "InvalidRequest", 400, ARN_MISSING)
    assert_unchanged(s3, bucket, "k", before)


@pytest.mark.parametrize(
    "value",
    [
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "alias/coffer-default",
        f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/coffer-default",
        "arn:aws:kms:us-east-1:00000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        f"arn:aws:kms:us-east-1:{ACCOUNT}:key/",
        f"arn:aws:s3:us-east-1:{ACCOUNT}:key/1234abcd",
        f"arn:aws:kms:US-EAST-1:{ACCOUNT}:key/1234abcd",
        f"arn:azure:kms:us-east-1:{ACCOUNT}:key/1234abcd",
    ],
    ids=["key-id", "alias", "alias-arn", "short-account", "empty-key", "not-kms", "upper-region", "partition"],
)
def test_invalid_key_arn(s3, bucket, value):
    # seed 000: "Requests that modify an object’s encryption type to SSE-KMS require a valid Amazon
    #   Web Services KMS key Amazon Resource Name (ARN). Confirm that you have a correctly formatted KMS
    #   key ARN in your request, and then try again."
    # seed 000 (KMSKeyArn): "You must specify the full Amazon Web Services KMS key ARN. The KMS key ID
    #   and KMS key alias aren’t supported." "Pattern: (arn:aws[-a-z0-9]*:kms:[-a-z0-9]*:[0-9]{12}:key/.+)"
    _, before = put_sample(s3, bucket, "k")
    with pytest.raises(ClientError) as e:
        update(s3, bucket, "k", value)
    assert_client_error(e, "InvalidRequest", 400, ARN_INVALID)
    assert_unchanged(s3, bucket, "k", before)


@pytest.mark.parametrize("value", ["yes", "TRUE1", "1"])
def test_invalid_bucket_key_enabled(raw, s3, bucket, target, value):
    # seed 000: "The BucketKeyEnabled value isn’t valid. Valid values are true or false. Modify the
    #   request to specify a valid value, and then try again."
    _, before = put_sample(s3, bucket, "k")
    body = body_xml(f"<SSE-KMS><KMSKeyArn>{target}</KMSKeyArn><BucketKeyEnabled>{value}</BucketKeyEnabled></SSE-KMS>")
    resp = raw_update(raw, bucket, "k", body)
    assert_raw_error(resp, "InvalidRequest", 400, BUCKET_KEY)
    assert_unchanged(s3, bucket, "k", before)


def test_signature_version_2_is_refused(server, s3, bucket, target):
    # seed 000: "Requests that modify an object encryption configuration require Amazon Web Services
    #   Signature Version 4. Modify the request to use Amazon Web Services Signature Version 4, and
    #   then try again."
    _, before = put_sample(s3, bucket, "k")
    body = body_xml(f"<SSE-KMS><KMSKeyArn>{target}</KMSKeyArn></SSE-KMS>")
    resp = sigv2_request(server, "PUT", bucket, "k", query="encryption", body=body, headers={"Content-MD5": md5_b64(body)})
    assert_raw_error(resp, "InvalidRequest", 400, SIGV4)
    assert_unchanged(s3, bucket, "k", before)


# ---------------------------------------------------------------------------------------------
# AccessDenied
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("account", ["111122223333", "999999999999"])
def test_key_of_another_account(s3, bucket, target, account):
    # seed 000: "By default, all UpdateObjectEncryption requests that specify a customer-managed KMS
    #   key are restricted to KMS keys that are owned by the bucket owner’s Amazon Web Services account."
    # seed 000: "The Amazon Web Services KMS key in the request must be owned by the same account as the
    #   bucket. Modify the request to specify a KMS key from the same account, and then try again."
    _, before = put_sample(s3, bucket, "k")
    foreign = target.replace(f":{ACCOUNT}:", f":{account}:")
    with pytest.raises(ClientError) as e:
        update(s3, bucket, "k", foreign)
    assert_client_error(e, "AccessDenied", 403, OTHER_ACCOUNT)
    assert_unchanged(s3, bucket, "k", before)


def test_expected_bucket_owner(s3, bucket, target):
    # seed 000 (ExpectedBucketOwner): "If the account ID that you provide doesn’t match the actual
    #   owner of the bucket, the request fails with the HTTP status code 403 Forbidden (access denied)."
    _, before = put_sample(s3, bucket, "k")
    with pytest.raises(ClientError) as e:
        update(s3, bucket, "k", target, ExpectedBucketOwner="111122223333")
    assert_client_error(e, "AccessDenied", 403, "Access Denied")
    assert_unchanged(s3, bucket, "k", before)
    update(s3, bucket, "k", target, ExpectedBucketOwner=ACCOUNT)
    assert sse_headers(s3.head_object(Bucket=bucket, Key="k")) == kms_expected(target)


def test_unknown_key_in_own_account_leaves_object_unchanged(s3, bucket):
    # seed 000 Permissions: kms:ReEncrypt* on the new key — a key that does not exist cannot be used.
    _, before = put_sample(s3, bucket, "k")
    with pytest.raises(ClientError) as e:
        update(s3, bucket, "k", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    assert_client_error(e, "KMS.NotFoundException", 400)
    assert_unchanged(s3, bucket, "k", before)


@pytest.fixture
def lock_bucket(s3):
    name = unique_bucket("lock")
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def in_days(n: int) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=n)


@pytest.mark.parametrize("lock", ["governance", "legal-hold", "compliance"])
def test_object_lock_is_access_denied(s3, lock_bucket, target, lock):
    # seed 000: "The encryption type for the specified object can’t be updated because that object is
    #   protected by S3 Object Lock. If the object has a governance-mode retention period or a legal
    #   hold, you must first remove the Object Lock status on the object before you issue your
    #   UpdateObjectEncryption request. You can’t use the UpdateObjectEncryption operation with objects
    #   that have an Object Lock compliance mode retention period applied to them."
    kw = {
        "governance": {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": in_days(1)},
        "legal-hold": {"ObjectLockLegalHoldStatus": "ON"},
        "compliance": {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": in_days(1)},
    }[lock]
    vid = s3.put_object(Bucket=lock_bucket, Key="k", Body=b"locked", ChecksumAlgorithm="SHA256", **kw)["VersionId"]
    before = s3.head_object(Bucket=lock_bucket, Key="k", ChecksumMode="ENABLED")
    for extra in ({}, {"VersionId": vid}):
        with pytest.raises(ClientError) as e:
            update(s3, lock_bucket, "k", target, **extra)
        assert_client_error(e, "AccessDenied", 403, OBJECT_LOCK)
    assert_unchanged(s3, lock_bucket, "k", before)

    # "... you must first remove the Object Lock status on the object" — then it works.
    if lock == "legal-hold":
        s3.put_object_legal_hold(Bucket=lock_bucket, Key="k", LegalHold={"Status": "OFF"}, ChecksumAlgorithm="SHA256")
    elif lock == "governance":
        s3.put_object_retention(Bucket=lock_bucket, Key="k", Retention={}, BypassGovernanceRetention=True,
                                ChecksumAlgorithm="SHA256")
    else:
        # Compliance retention cannot be removed: still refused, even with the governance bypass.
        with pytest.raises(ClientError):
            s3.put_object_retention(Bucket=lock_bucket, Key="k", Retention={}, BypassGovernanceRetention=True,
                                    ChecksumAlgorithm="SHA256")
        with pytest.raises(ClientError) as e:
            update(s3, lock_bucket, "k", target)
        assert_client_error(e, "AccessDenied", 403, OBJECT_LOCK)
        return
    update(s3, lock_bucket, "k", target)
    got = s3.get_object(Bucket=lock_bucket, Key="k")
    assert got["Body"].read() == b"locked"
    assert sse_headers(got) == kms_expected(target)


def test_unlocked_version_in_a_lock_bucket(s3, lock_bucket, target):
    # seed 000: only objects "protected by S3 Object Lock" are refused.
    s3.put_object(Bucket=lock_bucket, Key="free", Body=b"free", ChecksumAlgorithm="SHA256")
    update(s3, lock_bucket, "free", target)
    assert sse_headers(s3.head_object(Bucket=lock_bucket, Key="free")) == kms_expected(target)


# ---------------------------------------------------------------------------------------------
# Atomicity against concurrent writes
# ---------------------------------------------------------------------------------------------
ITERATIONS = 96


@pytest.mark.parametrize("versioning", [None, "Enabled", "Suspended"])
def test_concurrent_put_and_update_never_mix_envelopes(server, bucket, target, versioning):
    # seed 000: "you can atomically update the server-side encryption type of an existing object" —
    #   an update racing a PUT of the same key must never attach the old version's data key to the
    #   new version's data: every version stays readable with its own bytes.
    s3 = server.client(max_pool_connections=4)
    if versioning:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning})
    errors: list[BaseException] = []
    for i in range(ITERATIONS):
        old, new = os.urandom(256), os.urandom(256)
        s3.put_object(Bucket=bucket, Key="race", Body=old)
        barrier = threading.Barrier(2)
        # The PUT must commit between the update's read and its compare-and-set: vary which
        # request starts first, and by how much, over the iterations.
        update_delay, put_delay = (i % 8) * 0.0005, ((i // 8) % 4) * 0.0005

        def do_update():
            try:
                barrier.wait()
                time.sleep(update_delay)
                update(s3, bucket, "race", target)
            except ClientError as e:
                # The object always exists; only a lost race after retries may be reported.
                if e.response["Error"]["Code"] != "ConditionalRequestConflict":
                    errors.append(e)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=do_update)
        t.start()
        barrier.wait()
        time.sleep(put_delay)
        s3.put_object(Bucket=bucket, Key="race", Body=new)
        t.join()
        got = s3.get_object(Bucket=bucket, Key="race")
        assert got["Body"].read() == new, f"iteration {i}"
        assert got["ETag"] == etag(new)
    assert not errors, errors
