"""Multipart uploads: ETags, listing, abort, part rules, UploadPartCopy, checksums."""

from __future__ import annotations

import base64
import os

import pytest
from botocore.exceptions import ClientError

import checksums
from checksums import b64_checksum, composite_checksum, etag, multipart_etag
from harness import assert_client_error, assert_raw_error

MiB = 1024 * 1024
PART = 5 * MiB
NO_SUCH_UPLOAD_MSG = (
    "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
)


def upload(s3, bucket, key, parts, **create_kwargs):
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_kwargs)
    uid = up["UploadId"]
    done = []
    for i, p in enumerate(parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=p)
        assert r["ETag"] == etag(p)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    return uid, done


def complete(s3, bucket, key, uid, parts, **kw):
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=uid, MultipartUpload={"Parts": parts}, **kw)


@pytest.fixture(scope="module")
def three_parts():
    return [os.urandom(PART), os.urandom(PART), os.urandom(1234)]


def test_multipart_upload_round_trip(s3, bucket, three_parts):
    key = "mp/object.bin"
    up = s3.create_multipart_upload(
        Bucket=bucket, Key=key, Metadata={"m": "v"}, ContentType="application/x-mp", CacheControl="no-store"
    )
    assert up["Bucket"] == bucket and up["Key"] == key and up["UploadId"]
    assert up["ServerSideEncryption"] == "AES256"
    uid = up["UploadId"]
    parts = []
    for i, p in enumerate(three_parts, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=p)
        assert r["ETag"] == etag(p)
        assert r["ServerSideEncryption"] == "AES256"
        parts.append({"PartNumber": i, "ETag": r["ETag"]})
    # Not visible before completion.
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key=key)
    resp = complete(s3, bucket, key, uid, parts)
    expected_etag = multipart_etag(three_parts)
    assert resp["ETag"] == expected_etag
    assert resp["Bucket"] == bucket and resp["Key"] == key
    assert resp["Location"]
    assert resp["ServerSideEncryption"] == "AES256"

    data = b"".join(three_parts)
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == expected_etag
    assert head["Metadata"] == {"m": "v"}
    assert head["ContentType"] == "application/x-mp"
    assert head["CacheControl"] == "no-store"
    assert head["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["ETag"] == expected_etag
    assert got["Body"].read() == data

    # Ranged reads across part boundaries.
    n = len(data)
    for start, end in [
        (PART - 10, PART + 10),
        (2 * PART - 1, 2 * PART),
        (PART - 1, 2 * PART + 5),
        (0, n - 1),
        (n - 100, n - 1),
        (PART, PART),
    ]:
        r = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
        assert r["ContentRange"] == f"bytes {start}-{end}/{n}"
        assert r["Body"].read() == data[start : end + 1], (start, end)
    r = s3.get_object(Bucket=bucket, Key=key, Range="bytes=-2000")
    assert r["Body"].read() == data[-2000:]

    # The upload is gone once completed.
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)
    assert_client_error(e, "NoSuchUpload", 404)


def test_single_small_part(s3, bucket):
    body = b"only part, smaller than 5 MiB"
    uid, parts = upload(s3, bucket, "single", [body])
    resp = complete(s3, bucket, "single", uid, parts)
    assert resp["ETag"] == multipart_etag([body])
    assert s3.get_object(Bucket=bucket, Key="single")["Body"].read() == body


def test_reuploading_a_part_replaces_it(s3, bucket):
    key = "reupload"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    first = os.urandom(PART)
    s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=os.urandom(PART))
    r1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=first)
    r2 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=2, Body=b"tail")
    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed] == [
        (1, etag(first), PART),
        (2, etag(b"tail"), 4),
    ]
    complete(s3, bucket, key, uid, [{"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 2, "ETag": r2["ETag"]}])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == first + b"tail"


def test_non_contiguous_part_numbers(s3, bucket):
    key = "gaps"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    a, b = os.urandom(PART), b"last"
    ra = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=3, Body=a)
    rb = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=7, Body=b)
    resp = complete(s3, bucket, key, uid, [{"PartNumber": 3, "ETag": ra["ETag"]}, {"PartNumber": 7, "ETag": rb["ETag"]}])
    assert resp["ETag"] == multipart_etag([a, b])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == a + b


def test_complete_with_subset_of_uploaded_parts(s3, bucket):
    key = "subset"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    p1 = os.urandom(PART)
    r1 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=1, Body=p1)
    s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=2, Body=b"not used")
    r3 = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=3, Body=b"used")
    complete(s3, bucket, key, uid, [{"PartNumber": 1, "ETag": r1["ETag"]}, {"PartNumber": 3, "ETag": r3["ETag"]}])
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == p1 + b"used"


def test_list_parts(s3, bucket):
    key = "lp"
    bodies = [os.urandom(PART), os.urandom(PART), b"end"]
    uid, parts = upload(s3, bucket, key, bodies)
    resp = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)
    assert resp["Bucket"] == bucket and resp["Key"] == key and resp["UploadId"] == uid
    assert not resp["IsTruncated"]
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in resp["Parts"]] == [
        (i + 1, etag(b), len(b)) for i, b in enumerate(bodies)
    ]
    assert all("LastModified" in p for p in resp["Parts"])
    page = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid, MaxParts=2)
    assert page["IsTruncated"]
    assert page["MaxParts"] == 2
    assert [p["PartNumber"] for p in page["Parts"]] == [1, 2]
    assert page["NextPartNumberMarker"] == 2
    rest = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid, PartNumberMarker=2)
    assert [p["PartNumber"] for p in rest["Parts"]] == [3]
    assert not rest["IsTruncated"]
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)


def test_list_multipart_uploads(s3, bucket):
    u1 = s3.create_multipart_upload(Bucket=bucket, Key="mpu/a")["UploadId"]
    u2 = s3.create_multipart_upload(Bucket=bucket, Key="mpu/b")["UploadId"]
    u3 = s3.create_multipart_upload(Bucket=bucket, Key="mpu/a")["UploadId"]  # same key twice
    u4 = s3.create_multipart_upload(Bucket=bucket, Key="other")["UploadId"]
    resp = s3.list_multipart_uploads(Bucket=bucket)
    assert resp["Bucket"] == bucket
    got = sorted((u["Key"], u["UploadId"]) for u in resp["Uploads"])
    assert got == sorted([("mpu/a", u1), ("mpu/b", u2), ("mpu/a", u3), ("other", u4)])
    # Sorted by key, as S3 does.
    assert [u["Key"] for u in resp["Uploads"]] == sorted(u["Key"] for u in resp["Uploads"])
    assert all("Initiated" in u for u in resp["Uploads"])
    pref = s3.list_multipart_uploads(Bucket=bucket, Prefix="mpu/")
    assert sorted(u["UploadId"] for u in pref["Uploads"]) == sorted([u1, u2, u3])
    delim = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in delim.get("CommonPrefixes", [])] == ["mpu/"]
    assert [u["Key"] for u in delim.get("Uploads", [])] == ["other"]
    for key, uid in [("mpu/a", u1), ("mpu/b", u2), ("mpu/a", u3), ("other", u4)]:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_abort(s3, bucket):
    key = "aborted"
    uid, parts = upload(s3, bucket, key, [b"some data"])
    resp = s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    for call in (
        lambda: s3.list_parts(Bucket=bucket, Key=key, UploadId=uid),
        lambda: s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=2, Body=b"x"),
        lambda: complete(s3, bucket, key, uid, parts),
        lambda: s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert_client_error(e, "NoSuchUpload", 404, NO_SUCH_UPLOAD_MSG)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key=key)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_unknown_upload_id(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="k", UploadId="definitely-not-an-upload", PartNumber=1, Body=b"x")
    assert_client_error(e, "NoSuchUpload", 404)


def test_entity_too_small(s3, bucket):
    key = "small"
    uid, parts = upload(s3, bucket, key, [b"a" * 1024, b"b" * 1024])
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, key, uid, parts)
    err = assert_client_error(e, "EntityTooSmall", 400)
    # S3's wire text (its docs table words it slightly differently).
    assert err["Message"].startswith("Your proposed upload is smaller than the minimum allowed size"), err
    # The upload survives a failed completion.
    assert len(s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]) == 2
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key=key)
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)


def test_entity_too_small_boundary(s3, bucket):
    key = "boundary"
    uid, parts = upload(s3, bucket, key, [os.urandom(PART - 1), b"last"])
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, key, uid, parts)
    assert_client_error(e, "EntityTooSmall", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)


def test_invalid_part_wrong_etag(s3, bucket):
    key = "badetag"
    uid, parts = upload(s3, bucket, key, [b"x" * 100])
    parts[0]["ETag"] = '"0123456789abcdef0123456789abcdef"'
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, key, uid, parts)
    assert_client_error(e, "InvalidPart", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)


def test_invalid_part_not_uploaded(s3, bucket):
    key = "missingpart"
    uid, parts = upload(s3, bucket, key, [os.urandom(PART)])
    parts.append({"PartNumber": 2, "ETag": etag(b"never uploaded")})
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, key, uid, parts)
    assert_client_error(e, "InvalidPart", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)


def test_invalid_part_order(s3, bucket):
    key = "order"
    uid, parts = upload(s3, bucket, key, [os.urandom(PART), b"two"])
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, key, uid, [parts[1], parts[0]])
    assert_client_error(
        e, "InvalidPartOrder", 400, "The list of parts was not in ascending order. Parts must be ordered by part number."
    )
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)


def test_complete_with_no_parts_is_malformed(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="none")["UploadId"]
    with pytest.raises(ClientError) as e:
        complete(s3, bucket, "none", uid, [])
    assert_client_error(e, "MalformedXML", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key="none", UploadId=uid)


@pytest.mark.parametrize("part_number", ["0", "10001", "abc"])
def test_part_number_out_of_range(raw, s3, bucket, part_number):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="pn")["UploadId"]
    resp = raw("PUT", bucket, "pn", query=f"partNumber={part_number}&uploadId={uid}", body=b"x")
    assert_raw_error(resp, "InvalidArgument", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key="pn", UploadId=uid)


def test_upload_part_copy_with_ranges(s3, bucket):
    src = os.urandom(2 * PART + 777)
    s3.put_object(Bucket=bucket, Key="copy-src", Body=src)
    small = b"small tail object"
    s3.put_object(Bucket=bucket, Key="copy-src-2", Body=small)
    key = "assembled"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    ranges = [(0, PART - 1), (PART, 2 * PART + 776)]
    slices = []
    parts = []
    for i, (a, b) in enumerate(ranges, start=1):
        r = s3.upload_part_copy(
            Bucket=bucket,
            Key=key,
            UploadId=uid,
            PartNumber=i,
            CopySource={"Bucket": bucket, "Key": "copy-src"},
            CopySourceRange=f"bytes={a}-{b}",
        )
        piece = src[a : b + 1]
        assert r["CopyPartResult"]["ETag"] == etag(piece)
        assert "LastModified" in r["CopyPartResult"]
        slices.append(piece)
        parts.append({"PartNumber": i, "ETag": r["CopyPartResult"]["ETag"]})
    # A whole-object part copy (no range) as the last part.
    r = s3.upload_part_copy(
        Bucket=bucket, Key=key, UploadId=uid, PartNumber=3, CopySource={"Bucket": bucket, "Key": "copy-src-2"}
    )
    assert r["CopyPartResult"]["ETag"] == etag(small)
    slices.append(small)
    parts.append({"PartNumber": 3, "ETag": r["CopyPartResult"]["ETag"]})
    resp = complete(s3, bucket, key, uid, parts)
    assert resp["ETag"] == multipart_etag(slices)
    expected = b"".join(slices)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == expected
    r = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={PART - 3}-{PART + 3}")
    assert r["Body"].read() == expected[PART - 3 : PART + 4]


def test_upload_part_copy_range_outside_source(s3, bucket):
    s3.put_object(Bucket=bucket, Key="tiny-src", Body=b"0123456789")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="bad-range")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(
            Bucket=bucket,
            Key="bad-range",
            UploadId=uid,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "tiny-src"},
            CopySourceRange="bytes=5-100",
        )
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 416)
    s3.abort_multipart_upload(Bucket=bucket, Key="bad-range", UploadId=uid)


def test_composite_crc32_checksum(s3, bucket):
    key = "crc32-composite"
    bodies = [os.urandom(PART), os.urandom(PART), os.urandom(4321)]
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32")
    assert up.get("ChecksumAlgorithm") == "CRC32"
    uid = up["UploadId"]
    parts = []
    for i, b in enumerate(bodies, start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=b, ChecksumAlgorithm="CRC32")
        assert r["ChecksumCRC32"] == b64_checksum("CRC32", b)
        parts.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=uid)["Parts"]
    assert [p.get("ChecksumCRC32") for p in listed] == [p["ChecksumCRC32"] for p in parts]
    resp = complete(s3, bucket, key, uid, parts)
    expected = composite_checksum("CRC32", bodies)
    assert resp["ChecksumCRC32"] == expected
    assert resp.get("ChecksumType") == "COMPOSITE"
    assert resp["ETag"] == multipart_etag(bodies)
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == expected
    assert head.get("ChecksumType") == "COMPOSITE"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"".join(bodies)


def test_composite_checksum_wrong_part_checksum_rejected(s3, bucket):
    key = "crc32-bad-part"
    uid = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=uid,
            PartNumber=1,
            Body=b"part data",
            ChecksumCRC32=b64_checksum("CRC32", b"other data"),
        )
    assert_client_error(e, "BadDigest", 400)
    assert not s3.list_parts(Bucket=bucket, Key=key, UploadId=uid).get("Parts")
    s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)


def test_full_object_crc64nvme_checksum(s3, bucket):
    key = "crc64-full"
    bodies = [os.urandom(PART), os.urandom(1500)]
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC64NVME", ChecksumType="FULL_OBJECT")
    assert up.get("ChecksumAlgorithm") == "CRC64NVME"
    assert up.get("ChecksumType") == "FULL_OBJECT"
    uid = up["UploadId"]
    parts = []
    running = 0
    for i, b in enumerate(bodies, start=1):
        part_crc = b64_checksum("CRC64NVME", b)
        running = checksums.crc64nvme(b, running)
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=uid, PartNumber=i, Body=b, ChecksumCRC64NVME=part_crc)
        assert r.get("ChecksumCRC64NVME") == part_crc
        parts.append({"PartNumber": i, "ETag": r["ETag"], "ChecksumCRC64NVME": part_crc})
    full = base64.b64encode(running.to_bytes(8, "big")).decode()
    assert full == b64_checksum("CRC64NVME", b"".join(bodies))
    resp = complete(s3, bucket, key, uid, parts, ChecksumCRC64NVME=full, ChecksumType="FULL_OBJECT")
    assert resp["ChecksumCRC64NVME"] == full
    assert resp.get("ChecksumType") == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == full
    assert head.get("ChecksumType") == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["ChecksumCRC64NVME"] == full
    assert got["Body"].read() == b"".join(bodies)
