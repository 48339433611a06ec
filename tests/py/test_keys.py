"""Object keys that need care on the wire: spaces, unicode, reserved characters, length limits."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from checksums import etag
from harness import assert_client_error

ODD_KEYS = [
    "with space",
    "  leading and trailing spaces  ",
    "unicode-ключ-ü-日本語-😀",
    "plus+sign+",
    "percent%20literal%",
    "a//double//slash",
    "/leading-slash",
    "trailing-slash/",
    "question?mark=1&amp=2",
    "hash#fragment",
    "tilde~and!bang'quote\"(paren)*star",
    "xml&<>special",
    "semi;colon:comma,at@dollar$",
    "brackets[]{}|^`",
    "tab\there",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_key_round_trip(s3, bucket, key):
    body = key.encode("utf-8")
    put = s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert put["ETag"] == etag(body)
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body
    listed = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == [key]
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == [key]
    s3.delete_object(Bucket=bucket, Key=key)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_odd_keys_listed_in_binary_order(s3, bucket):
    for k in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=b"")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    # S3 lists keys in UTF-8 binary order.
    assert listed == sorted(ODD_KEYS, key=lambda k: k.encode("utf-8"))


def test_keys_differing_only_in_encoding_are_distinct(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a b", Body=b"space")
    s3.put_object(Bucket=bucket, Key="a+b", Body=b"plus")
    s3.put_object(Bucket=bucket, Key="a%20b", Body=b"pct")
    assert s3.get_object(Bucket=bucket, Key="a b")["Body"].read() == b"space"
    assert s3.get_object(Bucket=bucket, Key="a+b")["Body"].read() == b"plus"
    assert s3.get_object(Bucket=bucket, Key="a%20b")["Body"].read() == b"pct"


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k" * 1024, id="1024-ascii"),
        pytest.param("é" * 512, id="1024-bytes-2-byte-chars"),
        pytest.param("d/" * 511 + "xx", id="1024-with-slashes"),
    ],
)
def test_key_of_1024_bytes_is_accepted(s3, bucket, key):
    assert len(key.encode()) == 1024
    s3.put_object(Bucket=bucket, Key=key, Body=b"long")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"long"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == [key]


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k" * 1025, id="1025-ascii"),
        pytest.param("é" * 512 + "x", id="1025-bytes-513-chars"),
    ],
)
def test_key_longer_than_1024_bytes_is_rejected(s3, bucket, key):
    assert len(key.encode()) == 1025
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key=key, Body=b"too long")
    assert_client_error(e, "KeyTooLongError", 400, "Your key is too long")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
