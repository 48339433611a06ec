"""Content-MD5 and the x-amz-checksum-* family: verified on upload (header or trailer), stored,
returned with x-amz-checksum-mode: ENABLED; mismatches rejected without touching stored data."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError

import harness
from checksums import ALGORITHMS, b64_checksum, md5_b64
from harness import assert_client_error, assert_raw_error

SDK_ALGORITHMS = ("CRC32", "SHA1", "SHA256")  # what botocore computes without awscrt
PREVIOUS = b"previous version, must survive"


@pytest.fixture
def existing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=PREVIOUS)
    return bucket, "obj"


def assert_intact(s3, bucket, key):
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == PREVIOUS


# ---------------------------------------------------------------------------------------------
# Content-MD5
# ---------------------------------------------------------------------------------------------
def test_content_md5_correct(s3, bucket):
    data = os.urandom(10_000)
    s3.put_object(Bucket=bucket, Key="md5", Body=data, ContentMD5=md5_b64(data))
    assert s3.get_object(Bucket=bucket, Key="md5")["Body"].read() == data


def test_content_md5_mismatch_is_bad_digest(s3, existing):
    bucket, key = existing
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key=key, Body=b"new content", ContentMD5=md5_b64(b"other content"))
    assert_client_error(e, "BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
    assert_intact(s3, bucket, key)


@pytest.mark.parametrize("value", ["not base64!!", "AAAA", md5_b64(b"x")[:-4]])
def test_content_md5_malformed_is_invalid_digest(raw, s3, existing, value):
    bucket, key = existing
    resp = raw("PUT", bucket, key, body=b"new content", headers={"Content-MD5": value})
    assert_raw_error(resp, "InvalidDigest", 400, "The Content-MD5 you specified was invalid.")
    assert_intact(s3, bucket, key)


def test_content_md5_on_upload_part(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"part", ContentMD5=md5_b64(b"nope"))
    assert_client_error(e, "BadDigest", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=uid)


# ---------------------------------------------------------------------------------------------
# x-amz-checksum-* in headers
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ALGORITHMS)
@pytest.mark.parametrize("size", [0, 300_001], ids=["empty", "300001B"])
def test_checksum_header_round_trip(s3, bucket, algo, size):
    data = os.urandom(size)
    expected = b64_checksum(algo, data)
    member = f"Checksum{algo}"
    if algo in SDK_ALGORITHMS:
        put = s3.put_object(Bucket=bucket, Key="ck", Body=data, ChecksumAlgorithm=algo)
    else:
        put = s3.put_object(Bucket=bucket, Key="ck", Body=data, **{member: expected})
    assert put.get(member) == expected
    got = s3.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got.get(member) == expected
    assert got.get("ChecksumType") == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head.get(member) == expected
    # Without checksum mode, no checksum headers.
    plain = s3.head_object(Bucket=bucket, Key="ck")
    assert not any(k.startswith("x-amz-checksum-") for k in plain["ResponseMetadata"]["HTTPHeaders"])


@pytest.mark.parametrize("algo", SDK_ALGORITHMS)
def test_checksum_explicit_header_matches_sdk(raw, s3, bucket, algo):
    """The same value sent by hand (raw request) is accepted and returned."""
    data = os.urandom(12345)
    value = b64_checksum(algo, data)
    resp = raw("PUT", bucket, "explicit", body=data, headers={f"x-amz-checksum-{algo.lower()}": value})
    assert resp.status == 200, resp
    assert resp.header(f"x-amz-checksum-{algo.lower()}") == value
    got = s3.get_object(Bucket=bucket, Key="explicit", ChecksumMode="ENABLED")
    assert got[f"Checksum{algo}"] == value


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_wrong_checksum_header_is_bad_digest(s3, existing, algo):
    bucket, key = existing
    wrong = b64_checksum(algo, b"not the body")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key=key, Body=b"the body", **{f"Checksum{algo}": wrong})
    assert_client_error(e, "BadDigest", 400)
    assert_intact(s3, bucket, key)


def test_wrong_crc32_header_raw(raw, s3, existing):
    bucket, key = existing
    resp = raw("PUT", bucket, key, body=b"new", headers={"x-amz-checksum-crc32": b64_checksum("CRC32", b"old")})
    assert_raw_error(resp, "BadDigest", 400)
    assert_intact(s3, bucket, key)


@pytest.mark.parametrize("value", ["not-base64!", "AAAAAAAA", ""], ids=["garbage", "wrong-length", "empty"])
def test_malformed_checksum_header(raw, s3, existing, value):
    bucket, key = existing
    resp = raw("PUT", bucket, key, body=b"new", headers={"x-amz-checksum-crc32": value})
    assert resp.status == 400, resp
    assert resp.error_code in ("InvalidRequest", "InvalidArgument", "BadDigest"), resp
    assert_intact(s3, bucket, key)


def test_multiple_checksum_headers_rejected(raw, s3, existing):
    bucket, key = existing
    data = b"two checksums"
    resp = raw(
        "PUT",
        bucket,
        key,
        body=data,
        headers={"x-amz-checksum-crc32": b64_checksum("CRC32", data), "x-amz-checksum-sha256": b64_checksum("SHA256", data)},
    )
    assert_raw_error(resp, "InvalidRequest", 400)
    assert_intact(s3, bucket, key)


# ---------------------------------------------------------------------------------------------
# x-amz-checksum-* in an aws-chunked trailer (STREAMING-UNSIGNED-PAYLOAD-TRAILER)
# ---------------------------------------------------------------------------------------------
def put_with_trailer(server, bucket, key, data, algo, value):
    name = f"x-amz-checksum-{algo.lower()}"
    body = harness.unsigned_trailer_body(data, 64 * 1024, name, value)
    host = f"127.0.0.1:{server.port}"
    path = f"/{bucket}/{harness.quote_key(key)}"
    headers = {
        "Host": host,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": name,
        "x-amz-sdk-checksum-algorithm": algo,
        "Content-Length": str(len(body)),
    }
    signed = harness.sign_headers(
        "PUT", f"http://{host}{path}", headers, b"", server.credentials, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    )
    return harness.send_raw(server.s3_addr, "PUT", path, signed, body)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_checksum_trailer_round_trip(server, s3, bucket, algo):
    data = os.urandom(150_000)
    value = b64_checksum(algo, data)
    resp = put_with_trailer(server, bucket, "tr", data, algo, value)
    assert resp.status == 200, resp
    got = s3.get_object(Bucket=bucket, Key="tr", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got[f"Checksum{algo}"] == value


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_wrong_checksum_trailer_is_bad_digest(server, s3, existing, algo):
    bucket, key = existing
    data = os.urandom(150_000)
    resp = put_with_trailer(server, bucket, key, data, algo, b64_checksum(algo, b"something else"))
    assert_raw_error(resp, "BadDigest", 400)
    assert_intact(s3, bucket, key)
