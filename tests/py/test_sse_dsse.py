"""DSSE-KMS (`x-amz-server-side-encryption: aws:kms:dsse`): dual-layer server-side encryption with
KMS keys, end to end through boto3 — PutObject, GetObject (whole, ranges, part numbers), HeadObject,
multipart uploads, CopyObject and UploadPartCopy to and from DSSE-KMS objects, the bucket default,
and what reaches the disk.

Issue 4, item 3: "DSSE-KMS: two independent layers with two data keys, as DESIGN.md §2 says."
DESIGN.md §2: "DSSE-KMS: two independent layers with two data keys." Each layer is one AES-256-GCM
tag per chunk, so a DSSE-KMS blob is its plaintext plus 2 x 16 bytes per chunk.

Each test cites the seed sentence or the issue-4 sentence it checks.
"""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError

from checksums import etag
from conftest import unique_bucket
from harness import assert_raw_error
from sse_common import (
    AWS_MANAGED_S3_ALIAS,
    b64_context,
    decode_context,
    default_key_arn,
    kms_client,
    new_key,
    sse_headers,
)
from test_bucket_keys_kms_calls import delta, kms_calls

MiB = 1024 * 1024
CHUNK = MiB  # `coffer dev`'s default chunk size (coffer_crypto::DEFAULT_CHUNK_SIZE)
TAG = 16  # AES-256-GCM tag, one per chunk and layer
DSSE = "aws:kms:dsse"


@pytest.fixture(scope="module")
def kms(server):
    return kms_client(server)


@pytest.fixture(scope="module")
def key_arn(server):
    return default_key_arn(server)


def dsse_expected(arn: str) -> dict:
    """What AWS returns for a DSSE-KMS object: the algorithm and the key ARN, never a Bucket Key."""
    return {"x-amz-server-side-encryption": DSSE, "x-amz-server-side-encryption-aws-kms-key-id": arn}


def without_context(h: dict) -> dict:
    return {k: v for k, v in h.items() if k != "x-amz-server-side-encryption-context"}


def put_default(s3, bucket, algorithm, key_id=None, bucket_key=None):
    default = {"SSEAlgorithm": algorithm}
    if key_id is not None:
        default["KMSMasterKeyID"] = key_id
    rule = {"ApplyServerSideEncryptionByDefault": default}
    if bucket_key is not None:
        rule["BucketKeyEnabled"] = bucket_key
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]})


# ---------------------------------------------------------------------------------------------
# PutObject / GetObject / HeadObject
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["key-id", "key-arn", "alias"])
def test_put_get_head_dsse(s3, kms, bucket, form):
    # Issue 4: "x-amz-server-side-encryption (AES256 | aws:kms | aws:kms:dsse), -aws-kms-key-id ...
    #   Response headers exactly as AWS returns them." S3 reports the key by its ARN.
    alias = f"alias/dsse-{form}-{bucket}"
    meta = new_key(kms, alias=alias)
    value = {"key-id": meta["KeyId"], "key-arn": meta["Arn"], "alias": alias}[form]
    data = os.urandom(3 * CHUNK + 12345)
    put = s3.put_object(Bucket=bucket, Key="k", Body=data, ServerSideEncryption=DSSE, SSEKMSKeyId=value)
    assert sse_headers(put) == dsse_expected(meta["Arn"])
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == (DSSE, meta["Arn"])
    assert put["ETag"] == etag(data)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == data
    assert sse_headers(got) == dsse_expected(meta["Arn"])
    assert got["ETag"] == etag(data)
    head = s3.head_object(Bucket=bucket, Key="k")
    assert sse_headers(head) == dsse_expected(meta["Arn"])
    assert head["ContentLength"] == len(data)


def test_empty_dsse_object(s3, bucket, key_arn):
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"", ServerSideEncryption=DSSE, SSEKMSKeyId=key_arn)
    assert sse_headers(put) == dsse_expected(key_arn)
    got = s3.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert sse_headers(got) == dsse_expected(key_arn)


def test_dsse_without_key_id_uses_alias_aws_s3(s3, kms, bucket):
    # Issue 4: "SSE-KMS without a key ID uses the account's AWS-managed-style key (alias/aws/s3,
    #   created on first use)." — DSSE-KMS chooses its KMS key by the same rule.
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"managed", ServerSideEncryption=DSSE)
    arn = kms.describe_key(KeyId=AWS_MANAGED_S3_ALIAS)["KeyMetadata"]["Arn"]
    assert sse_headers(put) == dsse_expected(arn)
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"managed"
    assert sse_headers(got) == dsse_expected(arn)


def test_dsse_ignores_bucket_key_enabled(s3, bucket, key_arn):
    # AWS (Using dual-layer server-side encryption with AWS KMS keys): "S3 Bucket Keys aren't
    #   supported for DSSE-KMS." The flag is ignored and no bucket-key-enabled header is returned.
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"no bucket key", ServerSideEncryption=DSSE,
                        SSEKMSKeyId=key_arn, BucketKeyEnabled=True)
    assert sse_headers(put) == dsse_expected(key_arn)
    assert "BucketKeyEnabled" not in put
    head = s3.head_object(Bucket=bucket, Key="k")
    assert sse_headers(head) == dsse_expected(key_arn)
    assert "BucketKeyEnabled" not in head


def test_dsse_encryption_context(s3, bucket, key_arn):
    # Issue 4: "-context (base64 JSON, merged with the default context aws:s3:arn)".
    ctx = {"project": "coffer", "layer": "both"}
    put = s3.put_object(Bucket=bucket, Key="ctx", Body=b"ctx", ServerSideEncryption=DSSE, SSEKMSKeyId=key_arn,
                        SSEKMSEncryptionContext=b64_context(ctx))
    assert without_context(sse_headers(put)) == dsse_expected(key_arn)
    assert decode_context(put["SSEKMSEncryptionContext"]) == {"aws:s3:arn": f"arn:aws:s3:::{bucket}/ctx", **ctx}
    got = s3.get_object(Bucket=bucket, Key="ctx")
    assert got["Body"].read() == b"ctx"
    assert sse_headers(got) == dsse_expected(key_arn)


def test_encryption_header_on_read_of_dsse_object_is_400(raw, s3, bucket, key_arn):
    # Issue 4: "Encryption headers sent on GET/HEAD of an SSE-KMS object → 400."
    s3.put_object(Bucket=bucket, Key="o", Body=b"body", ServerSideEncryption=DSSE, SSEKMSKeyId=key_arn)
    resp = raw("GET", bucket, "o", headers={"x-amz-server-side-encryption": DSSE})
    assert_raw_error(resp, "InvalidArgument", 400,
                     "x-amz-server-side-encryption header is not supported for this operation.")
    assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"body"


def test_dsse_unknown_key_stores_nothing(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption=DSSE,
                      SSEKMSKeyId="arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    assert e.value.response["Error"]["Code"] == "KMS.NotFoundException"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_dsse_object_is_unreadable_while_its_key_is_disabled(s3, kms, bucket):
    # DESIGN.md §2: the data keys are never stored in plaintext — every read goes through the KMS.
    meta = new_key(kms)
    s3.put_object(Bucket=bucket, Key="k", Body=b"locked", ServerSideEncryption=DSSE, SSEKMSKeyId=meta["Arn"])
    kms.disable_key(KeyId=meta["KeyId"])
    try:
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key="k")
        assert e.value.response["Error"]["Code"] == "KMS.DisabledException"
    finally:
        kms.enable_key(KeyId=meta["KeyId"])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"locked"


# ---------------------------------------------------------------------------------------------
# Ranges
# ---------------------------------------------------------------------------------------------
def test_dsse_ranged_gets(s3, bucket, key_arn):
    # DESIGN.md §2: "A ranged GET reads and opens only the chunks it needs." — with two tags per chunk
    #   the sealed offsets differ from single-layer objects; every range must still land right.
    data = os.urandom(3 * CHUNK + 777)
    s3.put_object(Bucket=bucket, Key="r", Body=data, ServerSideEncryption=DSSE, SSEKMSKeyId=key_arn)
    n = len(data)
    ranges = [
        (0, 0), (0, 99), (CHUNK - 1, CHUNK), (CHUNK, 2 * CHUNK - 1), (CHUNK - 10, 2 * CHUNK + 10),
        (2 * CHUNK + 5, n - 1), (n - 1, n - 1), (12345, 3 * CHUNK + 5),
    ]
    for start, end in ranges:
        got = s3.get_object(Bucket=bucket, Key="r", Range=f"bytes={start}-{end}")
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {start}-{end}/{n}"
        assert got["Body"].read() == data[start:end + 1], (start, end)
        assert sse_headers(got) == dsse_expected(key_arn)
    suffix = s3.get_object(Bucket=bucket, Key="r", Range="bytes=-1000")
    assert suffix["Body"].read() == data[-1000:]
    part = s3.get_object(Bucket=bucket, Key="r", PartNumber=1)
    assert part["Body"].read() == data


# ---------------------------------------------------------------------------------------------
# Multipart
# ---------------------------------------------------------------------------------------------
def test_multipart_dsse(s3, kms, bucket):
    # Issue 4: per-request encryption on CreateMultipartUpload, UploadPart, CompleteMultipartUpload;
    #   "Response headers exactly as AWS returns them."
    meta = new_key(kms)
    ctx = {"upload": "dsse"}
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="mpu", ServerSideEncryption=DSSE, SSEKMSKeyId=meta["KeyId"],
                                     SSEKMSEncryptionContext=b64_context(ctx), BucketKeyEnabled=True)
    expected = dsse_expected(meta["Arn"])
    assert without_context(sse_headers(mpu)) == expected
    assert decode_context(mpu["SSEKMSEncryptionContext"]) == {"aws:s3:arn": f"arn:aws:s3:::{bucket}/mpu", **ctx}
    parts_data = [os.urandom(5 * MiB + 3), os.urandom(5 * MiB), os.urandom(4321)]
    parts = []
    for n, body in enumerate(parts_data, start=1):
        p = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=mpu["UploadId"], PartNumber=n, Body=body)
        assert sse_headers(p) == expected
        parts.append({"PartNumber": n, "ETag": p["ETag"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=mpu["UploadId"],
                                        MultipartUpload={"Parts": parts})
    assert sse_headers(done) == expected
    whole = b"".join(parts_data)
    got = s3.get_object(Bucket=bucket, Key="mpu")
    assert got["Body"].read() == whole
    assert sse_headers(got) == expected
    assert sse_headers(s3.head_object(Bucket=bucket, Key="mpu")) == expected
    # Ranges across part boundaries, and part numbers.
    b1 = len(parts_data[0])
    for start, end in [(b1 - 5, b1 + 5), (b1 - 1, b1), (0, len(whole) - 1), (2 * b1 - 10, len(whole) - 1)]:
        r = s3.get_object(Bucket=bucket, Key="mpu", Range=f"bytes={start}-{end}")
        assert r["Body"].read() == whole[start:end + 1], (start, end)
    for n, body in enumerate(parts_data, start=1):
        r = s3.get_object(Bucket=bucket, Key="mpu", PartNumber=n)
        assert r["Body"].read() == body
        assert r["PartsCount"] == 3


def test_multipart_with_bucket_default_dsse(s3, bucket, key_arn):
    # seed 001 (ApplyServerSideEncryptionByDefault): "If a PUT Object request doesn't specify any
    #   server-side encryption, this default encryption will be applied."
    put_default(s3, bucket, DSSE, key_arn, bucket_key=True)
    mpu = s3.create_multipart_upload(Bucket=bucket, Key="mpu")
    assert sse_headers(mpu) == dsse_expected(key_arn)
    p = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=mpu["UploadId"], PartNumber=1, Body=b"only part")
    assert sse_headers(p) == dsse_expected(key_arn)
    done = s3.complete_multipart_upload(Bucket=bucket, Key="mpu", UploadId=mpu["UploadId"],
                                        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p["ETag"]}]})
    assert sse_headers(done) == dsse_expected(key_arn)
    assert s3.get_object(Bucket=bucket, Key="mpu")["Body"].read() == b"only part"


# ---------------------------------------------------------------------------------------------
# Bucket default
# ---------------------------------------------------------------------------------------------
def test_bucket_default_dsse_applies_to_new_objects_only(s3, kms, bucket):
    # seed 001: "If a PUT Object request doesn't specify any server-side encryption, this default
    #   encryption will be applied." Issue 4: "The default applies to new objects only."
    meta = new_key(kms)
    s3.put_object(Bucket=bucket, Key="before", Body=b"before")
    put_default(s3, bucket, DSSE, meta["Arn"], bucket_key=True)
    put = s3.put_object(Bucket=bucket, Key="after", Body=b"after")
    # AWS: "S3 Bucket Keys aren't supported for DSSE-KMS" — BucketKeyEnabled in the default is ignored.
    assert sse_headers(put) == dsse_expected(meta["Arn"])
    assert sse_headers(s3.head_object(Bucket=bucket, Key="after")) == dsse_expected(meta["Arn"])
    assert s3.get_object(Bucket=bucket, Key="after")["Body"].read() == b"after"
    assert sse_headers(s3.head_object(Bucket=bucket, Key="before")) == {"x-amz-server-side-encryption": "AES256"}
    # A request's own encryption wins over the default.
    own = s3.put_object(Bucket=bucket, Key="own", Body=b"own", ServerSideEncryption="AES256")
    assert sse_headers(own) == {"x-amz-server-side-encryption": "AES256"}


def test_bucket_default_dsse_without_key_uses_alias_aws_s3(s3, kms, bucket):
    put_default(s3, bucket, DSSE)
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"managed default")
    arn = kms.describe_key(KeyId=AWS_MANAGED_S3_ALIAS)["KeyMetadata"]["Arn"]
    assert sse_headers(put) == dsse_expected(arn)
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"managed default"


# ---------------------------------------------------------------------------------------------
# CopyObject / UploadPartCopy
# ---------------------------------------------------------------------------------------------
def test_copy_dsse_to_dsse_sse_kms_and_sse_s3(s3, kms, bucket, key_arn):
    # Issue 4: per-request encryption on CopyObject; the copy is encrypted as the request says.
    other = new_key(kms)
    data = os.urandom(2 * CHUNK + 99)
    s3.put_object(Bucket=bucket, Key="src", Body=data, ServerSideEncryption=DSSE, SSEKMSKeyId=key_arn)
    src = {"Bucket": bucket, "Key": "src"}
    to_dsse = s3.copy_object(Bucket=bucket, Key="dsse", CopySource=src, ServerSideEncryption=DSSE,
                             SSEKMSKeyId=other["Arn"])
    assert sse_headers(to_dsse) == dsse_expected(other["Arn"])
    to_kms = s3.copy_object(Bucket=bucket, Key="kms", CopySource=src, ServerSideEncryption="aws:kms",
                            SSEKMSKeyId=other["Arn"])
    assert sse_headers(to_kms) == {"x-amz-server-side-encryption": "aws:kms",
                                   "x-amz-server-side-encryption-aws-kms-key-id": other["Arn"]}
    # Without encryption headers a copy takes the destination's default (here SSE-S3), not the source's.
    plain = s3.copy_object(Bucket=bucket, Key="s3", CopySource=src)
    assert sse_headers(plain) == {"x-amz-server-side-encryption": "AES256"}
    for k, expected in [("dsse", dsse_expected(other["Arn"])),
                        ("kms", {"x-amz-server-side-encryption": "aws:kms",
                                 "x-amz-server-side-encryption-aws-kms-key-id": other["Arn"]}),
                        ("s3", {"x-amz-server-side-encryption": "AES256"})]:
        got = s3.get_object(Bucket=bucket, Key=k)
        assert got["Body"].read() == data, k
        assert got["ETag"] == etag(data), k
        assert sse_headers(got) == expected, k
    assert sse_headers(s3.head_object(Bucket=bucket, Key="src")) == dsse_expected(key_arn)


def test_copy_into_dsse_and_onto_itself(s3, bucket, key_arn):
    # Issue 4: CopyObject with x-amz-server-side-encryption: aws:kms:dsse; copying an object onto itself
    #   with new encryption attributes is a change (S3: "...without changing the object's metadata,
    #   storage class, website redirect location or encryption attributes").
    data = os.urandom(CHUNK + 5)
    s3.put_object(Bucket=bucket, Key="obj", Body=data, ServerSideEncryption="AES256")
    copy = s3.copy_object(Bucket=bucket, Key="obj", CopySource={"Bucket": bucket, "Key": "obj"},
                          ServerSideEncryption=DSSE, SSEKMSKeyId=key_arn)
    assert sse_headers(copy) == dsse_expected(key_arn)
    got = s3.get_object(Bucket=bucket, Key="obj")
    assert got["Body"].read() == data
    assert sse_headers(got) == dsse_expected(key_arn)


def test_upload_part_copy_to_and_from_dsse(s3, bucket, key_arn):
    # Issue 4: per-request encryption on UploadPartCopy: a DSSE-KMS source into an SSE-S3 upload, and
    #   an SSE-S3 source (ranges) into a DSSE-KMS upload.
    data = os.urandom(6 * MiB + 17)
    s3.put_object(Bucket=bucket, Key="dsse-src", Body=data, ServerSideEncryption=DSSE, SSEKMSKeyId=key_arn)
    s3.put_object(Bucket=bucket, Key="s3-src", Body=data, ServerSideEncryption="AES256")
    split = 5 * MiB
    for src_key, dst_key, create, expected in [
        ("dsse-src", "to-s3", {"ServerSideEncryption": "AES256"}, {"x-amz-server-side-encryption": "AES256"}),
        ("s3-src", "to-dsse", {"ServerSideEncryption": DSSE, "SSEKMSKeyId": key_arn}, dsse_expected(key_arn)),
        ("dsse-src", "dsse-to-dsse", {"ServerSideEncryption": DSSE, "SSEKMSKeyId": key_arn}, dsse_expected(key_arn)),
    ]:
        mpu = s3.create_multipart_upload(Bucket=bucket, Key=dst_key, **create)
        uid = mpu["UploadId"]
        etags = []
        for n, rng in [(1, f"bytes=0-{split - 1}"), (2, f"bytes={split}-{len(data) - 1}")]:
            pc = s3.upload_part_copy(Bucket=bucket, Key=dst_key, UploadId=uid, PartNumber=n,
                                     CopySource={"Bucket": bucket, "Key": src_key}, CopySourceRange=rng)
            assert sse_headers(pc) == expected, dst_key
            etags.append({"PartNumber": n, "ETag": pc["CopyPartResult"]["ETag"]})
        done = s3.complete_multipart_upload(Bucket=bucket, Key=dst_key, UploadId=uid,
                                            MultipartUpload={"Parts": etags})
        assert sse_headers(done) == expected, dst_key
        got = s3.get_object(Bucket=bucket, Key=dst_key)
        assert got["Body"].read() == data, dst_key
        assert sse_headers(got) == expected, dst_key
        r = s3.get_object(Bucket=bucket, Key=dst_key, Range=f"bytes={split - 3}-{split + 3}")
        assert r["Body"].read() == data[split - 3:split + 4], dst_key


# ---------------------------------------------------------------------------------------------
# At rest, and the KMS calls
# ---------------------------------------------------------------------------------------------
def blob_sizes(server) -> dict[str, int]:
    root = server.data_dir / "blobs"
    # Not the temp files of writes in progress, nor the blobs' checksum sidecars (`.sum`).
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and not str(p.relative_to(root)).startswith("tmp") and p.suffix != ".sum"}


def test_dsse_blob_at_rest_has_two_tags_per_chunk_and_no_plaintext(private_server):
    # seed 004: "When you use server-side encryption, Amazon S3 encrypts an object before saving it to
    #   disk and decrypts it when you download the objects." DESIGN.md §2: "DSSE-KMS: two independent
    #   layers with two data keys" — every chunk carries one 16-byte GCM tag per layer.
    server = private_server()
    s3 = server.client()
    key_arn = default_key_arn(server)
    bucket = unique_bucket("dsse-disk")
    s3.create_bucket(Bucket=bucket)
    marker = b"COFFER-DSSE-PLAINTEXT-" + os.urandom(8).hex().encode()
    data = marker * ((2 * CHUNK + 4096) // len(marker))
    chunks = -(-len(data) // CHUNK)
    assert chunks == 3
    layers = {}
    for name, extra, per_chunk in [("dsse", {"ServerSideEncryption": DSSE, "SSEKMSKeyId": key_arn}, 2 * TAG),
                                   ("kms", {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_arn}, TAG)]:
        before = blob_sizes(server)
        s3.put_object(Bucket=bucket, Key=name, Body=data, **extra)
        new = {k: v for k, v in blob_sizes(server).items() if k not in before}
        assert len(new) == 1, new
        (size,) = new.values()
        layers[name] = size
        assert size == len(data) + chunks * per_chunk, (name, size)
    assert layers["dsse"] - layers["kms"] == chunks * TAG
    for k in ("dsse", "kms"):
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == data
    for p in server.data_dir.rglob("*"):
        if p.is_file():
            assert marker not in p.read_bytes(), p


def test_dsse_makes_two_data_keys_per_object_and_opens_both(private_server):
    # Issue 4 item 3 / DESIGN.md §2: "two independent layers with two data keys" — two GenerateDataKey
    #   calls per DSSE-KMS object (no Bucket Key), and two Decrypt calls to read it.
    server = private_server()
    s3 = server.client()
    key_arn = default_key_arn(server)
    bucket = unique_bucket("dsse-calls")
    s3.create_bucket(Bucket=bucket)
    n = 5
    before = kms_calls(server)
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x" * 100, ServerSideEncryption=DSSE, SSEKMSKeyId=key_arn,
                      BucketKeyEnabled=True)
    after = kms_calls(server)
    assert delta(after, before, "GenerateDataKey") == 2 * n, after
    assert delta(after, before, "GenerateDataKeyWithoutPlaintext") == 0, after
    before = kms_calls(server)
    for i in range(n):
        assert s3.get_object(Bucket=bucket, Key=f"k{i}")["Body"].read() == b"x" * 100
    after = kms_calls(server)
    assert delta(after, before, "Decrypt") == 2 * n, after
    # HEAD needs no data key.
    before = kms_calls(server)
    s3.head_object(Bucket=bucket, Key="k0")
    assert delta(kms_calls(server), before, "Decrypt") == 0
