"""Object round trips, headers, ranges, conditionals, overrides, deletes."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from botocore.exceptions import ClientError

from checksums import etag, md5_b64
from harness import assert_client_error, assert_raw_error

MiB = 1024 * 1024
SIZES = [0, 1, MiB + 1, 5 * MiB]
PRECONDITION_MSG = "At least one of the pre-conditions you specified did not hold"


def status_of(exc: ClientError) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


def headers_of(resp: dict) -> dict:
    return resp["ResponseMetadata"]["HTTPHeaders"]


@pytest.mark.parametrize("size", SIZES, ids=[f"{s}B" for s in SIZES])
def test_put_get_head_delete_round_trip(s3, bucket, size):
    data = os.urandom(size)
    key = f"obj-{size}"
    put = s3.put_object(Bucket=bucket, Key=key, Body=data)
    assert put["ETag"] == etag(data)
    assert put["ServerSideEncryption"] == "AES256"

    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["ContentLength"] == size
    assert head["ETag"] == etag(data)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "binary/octet-stream"
    assert head["AcceptRanges"] == "bytes"
    assert isinstance(head["LastModified"], dt.datetime)
    age = dt.datetime.now(dt.timezone.utc) - head["LastModified"]
    assert dt.timedelta(seconds=-5) < age < dt.timedelta(minutes=5)

    got = s3.get_object(Bucket=bucket, Key=key)
    body = got["Body"].read()
    assert len(body) == size
    assert body == data
    assert got["ContentLength"] == size
    assert got["ETag"] == etag(data)
    assert got["ServerSideEncryption"] == "AES256"
    assert got["LastModified"] == head["LastModified"]

    deleted = s3.delete_object(Bucket=bucket, Key=key)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert status_of(e.value) == 404


def test_overwrite_replaces_content_and_metadata(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", Metadata={"a": "1"}, ContentType="text/plain")
    s3.put_object(Bucket=bucket, Key="k", Body=b"second version", Metadata={"b": "2"})
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["Body"].read() == b"second version"
    assert got["Metadata"] == {"b": "2"}
    assert got["ContentType"] == "binary/octet-stream"
    assert got["ETag"] == etag(b"second version")


def test_metadata_and_standard_headers_round_trip(s3, bucket):
    expires = dt.datetime(2037, 1, 1, tzinfo=dt.timezone.utc)
    s3.put_object(
        Bucket=bucket,
        Key="meta",
        Body=b"payload",
        Metadata={"color": "Blue", "Multi-Word-Key": "v a l u e", "n": "42"},
        ContentType="text/x-coffer; charset=utf-8",
        CacheControl="max-age=60, private",
        ContentDisposition='attachment; filename="report.txt"',
        ContentEncoding="gzip",
        ContentLanguage="en-US",
        Expires=expires,
    )
    for resp in (s3.head_object(Bucket=bucket, Key="meta"), s3.get_object(Bucket=bucket, Key="meta")):
        # S3 lower-cases user metadata names and keeps values as sent.
        assert resp["Metadata"] == {"color": "Blue", "multi-word-key": "v a l u e", "n": "42"}
        assert resp["ContentType"] == "text/x-coffer; charset=utf-8"
        assert resp["CacheControl"] == "max-age=60, private"
        assert resp["ContentDisposition"] == 'attachment; filename="report.txt"'
        assert resp["ContentEncoding"] == "gzip"
        assert resp["ContentLanguage"] == "en-US"
        assert headers_of(resp)["expires"] == "Thu, 01 Jan 2037 00:00:00 GMT"
        assert headers_of(resp)["x-amz-meta-color"] == "Blue"


def test_metadata_too_large(s3, bucket):
    # User metadata is limited to 2 KB (names + values).
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="big-meta", Body=b"x", Metadata={"m": "v" * 2100})
    assert_client_error(e, "MetadataTooLarge", 400)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="big-meta")


# ---------------------------------------------------------------------------------------------
# Range
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def obj1000(s3, bucket):
    data = os.urandom(1000)
    s3.put_object(Bucket=bucket, Key="r", Body=data)
    return bucket, "r", data


@pytest.mark.parametrize(
    "rng,start,end",
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-10", 10, 10),
        ("bytes=990-", 990, 999),
        ("bytes=0-", 0, 999),
        ("bytes=-10", 990, 999),
        ("bytes=-1000", 0, 999),
        ("bytes=-5000", 0, 999),  # suffix longer than the object: whole object
        ("bytes=995-2000", 995, 999),  # end beyond the object clamps
        ("bytes=500-999", 500, 999),
    ],
)
def test_get_range(s3, obj1000, rng, start, end):
    bucket, key, data = obj1000
    got = s3.get_object(Bucket=bucket, Key=key, Range=rng)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {start}-{end}/1000"
    assert got["ContentLength"] == end - start + 1
    assert got["Body"].read() == data[start : end + 1]
    assert got["ETag"] == etag(data)


def test_head_range(s3, obj1000):
    bucket, key, _ = obj1000
    head = s3.head_object(Bucket=bucket, Key=key, Range="bytes=100-199")
    assert head["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert head["ContentLength"] == 100
    assert head["ContentRange"] == "bytes 100-199/1000"


@pytest.mark.parametrize("rng", ["bytes=1000-", "bytes=1000-1005", "bytes=5000-6000"])
def test_get_range_not_satisfiable(s3, obj1000, rng):
    bucket, key, _ = obj1000
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key=key, Range=rng)
    assert_client_error(e, "InvalidRange", 416, "The requested range is not satisfiable")
    assert headers_of(e.value.response)["content-range"] == "bytes */1000"


def test_get_range_with_invalid_syntax_is_ignored(s3, obj1000):
    # RFC 7233 / S3: a Range header that does not parse is ignored; the whole object is sent.
    bucket, key, data = obj1000
    got = s3.get_object(Bucket=bucket, Key=key, Range="bytes=abc")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == data


def test_range_on_large_object_crosses_chunks(s3, bucket):
    data = os.urandom(3 * MiB + 17)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    for start, end in [(MiB - 5, MiB + 5), (0, 2 * MiB), (2 * MiB + 100, 3 * MiB + 16), (3 * MiB, 3 * MiB + 16)]:
        got = s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={start}-{end}")
        assert got["Body"].read() == data[start : end + 1], (start, end)


# ---------------------------------------------------------------------------------------------
# Conditional requests
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def cond_obj(s3, bucket):
    s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")
    head = s3.head_object(Bucket=bucket, Key="c")
    return bucket, "c", head["ETag"], head["LastModified"]


DAY = dt.timedelta(days=1)


def _get(s3, bucket, key, method="get", **cond):
    fn = s3.get_object if method == "get" else s3.head_object
    try:
        resp = fn(Bucket=bucket, Key=key, **cond)
        return resp["ResponseMetadata"]["HTTPStatusCode"], resp, None
    except ClientError as e:
        return status_of(e), e.response, e


@pytest.mark.parametrize("method", ["get", "head"])
def test_if_match(s3, cond_obj, method):
    bucket, key, etag_, _ = cond_obj
    assert _get(s3, bucket, key, method, IfMatch=etag_)[0] == 200
    status, resp, exc = _get(s3, bucket, key, method, IfMatch='"0123456789abcdef0123456789abcdef"')
    assert status == 412
    if method == "get":
        assert_client_error(exc, "PreconditionFailed", 412, PRECONDITION_MSG)
        assert resp["Error"].get("Condition") == "If-Match"


@pytest.mark.parametrize("method", ["get", "head"])
def test_if_none_match(s3, cond_obj, method):
    bucket, key, etag_, _ = cond_obj
    status, resp, _ = _get(s3, bucket, key, method, IfNoneMatch=etag_)
    assert status == 304
    # A 304 carries the validator.
    assert headers_of(resp).get("etag") == etag_
    assert _get(s3, bucket, key, method, IfNoneMatch='"0123456789abcdef0123456789abcdef"')[0] == 200


@pytest.mark.parametrize("method", ["get", "head"])
def test_if_modified_since(s3, cond_obj, method):
    bucket, key, _, lm = cond_obj
    # Last-Modified has second precision: "not modified since exactly that second" must hold.
    assert _get(s3, bucket, key, method, IfModifiedSince=lm)[0] == 304
    assert _get(s3, bucket, key, method, IfModifiedSince=lm - DAY)[0] == 200


@pytest.mark.parametrize("method", ["get", "head"])
def test_if_unmodified_since(s3, cond_obj, method):
    bucket, key, _, lm = cond_obj
    assert _get(s3, bucket, key, method, IfUnmodifiedSince=lm)[0] == 200
    assert _get(s3, bucket, key, method, IfUnmodifiedSince=lm + DAY)[0] == 200
    status, resp, exc = _get(s3, bucket, key, method, IfUnmodifiedSince=lm - DAY)
    assert status == 412
    if method == "get":
        assert_client_error(exc, "PreconditionFailed", 412, PRECONDITION_MSG)


@pytest.mark.parametrize("method", ["get", "head"])
def test_conditional_combinations(s3, cond_obj, method):
    bucket, key, etag_, lm = cond_obj
    wrong = '"0123456789abcdef0123456789abcdef"'
    # If-Match true + If-Unmodified-Since false -> 200 (If-Match wins, RFC 7232 section 6).
    assert _get(s3, bucket, key, method, IfMatch=etag_, IfUnmodifiedSince=lm - DAY)[0] == 200
    # If-None-Match false (matches) + If-Modified-Since true -> 304.
    assert _get(s3, bucket, key, method, IfNoneMatch=etag_, IfModifiedSince=lm - DAY)[0] == 304
    # If-None-Match true (no match) + If-Modified-Since false -> 200 (If-Modified-Since ignored).
    assert _get(s3, bucket, key, method, IfNoneMatch=wrong, IfModifiedSince=lm)[0] == 200
    # If-Match false dominates anything else -> 412.
    assert _get(s3, bucket, key, method, IfMatch=wrong, IfNoneMatch=wrong)[0] == 412
    assert _get(s3, bucket, key, method, IfMatch=wrong, IfModifiedSince=lm - DAY)[0] == 412
    # If-Match true + If-None-Match false -> 304.
    assert _get(s3, bucket, key, method, IfMatch=etag_, IfNoneMatch=etag_)[0] == 304


def test_conditional_on_missing_key(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="nope", IfMatch='"abc"')
    assert status_of(e.value) in (404, 412)


# ---------------------------------------------------------------------------------------------
# response-* overrides
# ---------------------------------------------------------------------------------------------
def test_response_header_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"override me", ContentType="text/plain")
    expires = dt.datetime(2036, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    got = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/x-override",
        ResponseContentLanguage="fr-CA",
        ResponseExpires=expires,
        ResponseCacheControl="no-cache",
        ResponseContentDisposition='attachment; filename="o.bin"',
        ResponseContentEncoding="identity",
    )
    h = headers_of(got)
    assert h["content-type"] == "application/x-override"
    assert h["content-language"] == "fr-CA"
    assert h["expires"] == "Sun, 01 Jun 2036 12:00:00 GMT"
    assert h["cache-control"] == "no-cache"
    assert h["content-disposition"] == 'attachment; filename="o.bin"'
    assert h["content-encoding"] == "identity"
    assert got["Body"].read() == b"override me"
    # Overrides do not change what is stored.
    assert s3.head_object(Bucket=bucket, Key="o")["ContentType"] == "text/plain"


def test_response_overrides_rejected_for_anonymous(raw, s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x")
    resp = raw("GET", bucket, "o", query="response-content-type=text%2Fhtml", sign=False)
    assert resp.status in (400, 403), resp


# ---------------------------------------------------------------------------------------------
# Missing keys and deletes
# ---------------------------------------------------------------------------------------------
def test_get_missing_key(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="missing/key.txt")
    err = assert_client_error(e, "NoSuchKey", 404, "The specified key does not exist.")
    assert err.get("Key") == "missing/key.txt"


def test_get_missing_key_raw_error_document(raw, bucket):
    resp = raw("GET", bucket, "missing key")
    assert_raw_error(resp, "NoSuchKey", 404, "The specified key does not exist.")
    root = resp.xml()
    assert root.findtext("Key") == "missing key"
    assert root.findtext("RequestId")
    assert resp.header("x-amz-request-id")
    assert "xml" in (resp.header("content-type") or "")


def test_head_missing_key_has_no_body(s3, raw, bucket):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="missing")
    assert status_of(e.value) == 404
    resp = raw("HEAD", bucket, "missing")
    assert resp.status == 404
    assert resp.body == b""


def test_delete_missing_key_is_204(s3, bucket):
    resp = s3.delete_object(Bucket=bucket, Key="never-existed")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_delete_objects(s3, bucket):
    for k in ("a", "b", "dir/c d&<e>"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    resp = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "a"}, {"Key": "b"}, {"Key": "dir/c d&<e>"}, {"Key": "missing"}]},
    )
    assert sorted(d["Key"] for d in resp.get("Deleted", [])) == ["a", "b", "dir/c d&<e>", "missing"]
    assert not resp.get("Errors")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_delete_objects_quiet(s3, bucket):
    for k in ("q1", "q2", "keep"):
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    resp = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "q1"}, {"Key": "q2"}, {"Key": "nope"}], "Quiet": True}
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert not resp.get("Deleted")
    assert not resp.get("Errors")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep"]


def test_delete_objects_malformed_xml(raw, s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    body = b"<Delete><Object><Key>a</Key></Object>"
    resp = raw("POST", bucket, query="delete=", body=body, headers={"Content-MD5": md5_b64(body)})
    assert_raw_error(resp, "MalformedXML", 400)
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"x"


def test_delete_objects_more_than_1000_keys_is_malformed(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"k{i}"} for i in range(1001)]})
    assert_client_error(e, "MalformedXML", 400)


def test_delete_objects_without_integrity_header_is_rejected(raw, s3, bucket):
    # DeleteObjects requires Content-MD5 or an x-amz-checksum-* header.
    s3.put_object(Bucket=bucket, Key="a", Body=b"x")
    body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    resp = raw("POST", bucket, query="delete=", body=body)
    assert resp.status == 400, resp
    assert resp.error_code in ("InvalidRequest", "MissingContentMD5"), resp
    assert s3.get_object(Bucket=bucket, Key="a")["Body"].read() == b"x"


def test_entity_too_large_is_rejected_before_reading(raw, bucket):
    # A single PUT may not exceed 5 GiB; the declared length alone decides.
    resp = raw(
        "PUT",
        bucket,
        "huge",
        headers={"Content-Length": str(5 * 1024**3 + 1)},
        body=None,
        payload_hash="UNSIGNED-PAYLOAD",
        timeout=20,
    )
    assert_raw_error(resp, "EntityTooLarge", 400)
