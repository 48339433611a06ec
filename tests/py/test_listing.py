"""ListObjectsV2 and ListObjects (v1): paging, prefixes, delimiters, markers, URL encoding."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, unquote_plus

import pytest

from checksums import etag
from conftest import unique_bucket

N_BIG = 2500
HIERARCHY = [
    "a.txt",
    "dir/a",
    "dir/b",
    "dir/sub/c",
    "dir/sub/d",
    "dir/sub/deeper/e",
    "other/x",
    "z",
]


@pytest.fixture(scope="module")
def big_bucket(server, s3):
    name = unique_bucket("big")
    s3.create_bucket(Bucket=name)
    keys = [f"key-{i:05d}" for i in range(N_BIG)]
    client = server.client(max_pool_connections=16)

    def put(k):
        client.put_object(Bucket=name, Key=k, Body=k.encode())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))
    return name, keys


@pytest.fixture(scope="module")
def tree_bucket(s3):
    name = unique_bucket("tree")
    s3.create_bucket(Bucket=name)
    for k in HIERARCHY:
        s3.put_object(Bucket=name, Key=k, Body=k.encode())
    return name


def keys_of(resp):
    return [o["Key"] for o in resp.get("Contents", [])]


def prefixes_of(resp):
    return [p["Prefix"] for p in resp.get("CommonPrefixes", [])]


# ---------------------------------------------------------------------------------------------
# ListObjectsV2
# ---------------------------------------------------------------------------------------------
def test_v2_pages_through_2500_keys_with_default_max_keys(s3, big_bucket):
    bucket, keys = big_bucket
    seen = []
    token = None
    pages = []
    while True:
        kw = {"ContinuationToken": token} if token else {}
        resp = s3.list_objects_v2(Bucket=bucket, **kw)
        pages.append(resp)
        assert resp["MaxKeys"] == 1000
        assert resp["KeyCount"] == len(resp.get("Contents", []))
        assert resp["Name"] == bucket
        if token:
            assert resp["ContinuationToken"] == token
        seen += keys_of(resp)
        if not resp["IsTruncated"]:
            assert "NextContinuationToken" not in resp
            break
        token = resp["NextContinuationToken"]
        assert token
        assert len(pages) < 10
    assert [p["KeyCount"] for p in pages] == [1000, 1000, 500]
    assert seen == keys


def test_v2_contents_fields(s3, big_bucket):
    bucket, _ = big_bucket
    resp = s3.list_objects_v2(Bucket=bucket, MaxKeys=3)
    for o in resp["Contents"]:
        assert o["ETag"] == etag(o["Key"].encode())
        assert o["Size"] == len(o["Key"])
        assert o["StorageClass"] == "STANDARD"
        assert "LastModified" in o
        assert "Owner" not in o  # only with fetch-owner


def test_v2_paginator_with_small_pages(s3, big_bucket):
    bucket, keys = big_bucket
    seen = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 700}):
        assert page["KeyCount"] <= 700
        seen += keys_of(page)
    assert seen == keys


def test_v2_start_after(s3, big_bucket):
    bucket, keys = big_bucket
    resp = s3.list_objects_v2(Bucket=bucket, StartAfter="key-01234", MaxKeys=5)
    assert resp["StartAfter"] == "key-01234"
    assert keys_of(resp) == keys[1235:1240]
    # A StartAfter between keys, and one past the end.
    assert keys_of(s3.list_objects_v2(Bucket=bucket, StartAfter="key-01234x", MaxKeys=1)) == ["key-01235"]
    assert s3.list_objects_v2(Bucket=bucket, StartAfter="zzz")["KeyCount"] == 0


def test_v2_continuation_token_wins_over_start_after(s3, big_bucket):
    bucket, keys = big_bucket
    first = s3.list_objects_v2(Bucket=bucket, MaxKeys=10, StartAfter="key-00100")
    assert keys_of(first) == keys[101:111]
    second = s3.list_objects_v2(
        Bucket=bucket, MaxKeys=10, StartAfter="key-00100", ContinuationToken=first["NextContinuationToken"]
    )
    assert keys_of(second) == keys[111:121]


def test_v2_max_keys_zero(s3, big_bucket):
    bucket, _ = big_bucket
    resp = s3.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert resp["KeyCount"] == 0
    assert "Contents" not in resp
    assert resp["MaxKeys"] == 0
    assert resp["IsTruncated"] is False


def test_v2_max_keys_above_1000_is_capped(s3, big_bucket):
    bucket, _ = big_bucket
    resp = s3.list_objects_v2(Bucket=bucket, MaxKeys=5000)
    assert resp["KeyCount"] == 1000
    assert resp["IsTruncated"]


def test_v2_fetch_owner(s3, tree_bucket):
    owner_id = s3.list_buckets()["Owner"]["ID"]
    resp = s3.list_objects_v2(Bucket=tree_bucket, FetchOwner=True)
    assert all(o["Owner"]["ID"] == owner_id for o in resp["Contents"])
    resp = s3.list_objects_v2(Bucket=tree_bucket)
    assert all("Owner" not in o for o in resp["Contents"])


def test_v2_delimiter(s3, tree_bucket):
    resp = s3.list_objects_v2(Bucket=tree_bucket, Delimiter="/")
    assert keys_of(resp) == ["a.txt", "z"]
    assert prefixes_of(resp) == ["dir/", "other/"]
    assert resp["KeyCount"] == 4
    assert resp["Delimiter"] == "/"


def test_v2_prefix_and_delimiter(s3, tree_bucket):
    resp = s3.list_objects_v2(Bucket=tree_bucket, Prefix="dir/", Delimiter="/")
    assert resp["Prefix"] == "dir/"
    assert keys_of(resp) == ["dir/a", "dir/b"]
    assert prefixes_of(resp) == ["dir/sub/"]
    assert resp["KeyCount"] == 3
    resp = s3.list_objects_v2(Bucket=tree_bucket, Prefix="dir/sub/")
    assert keys_of(resp) == ["dir/sub/c", "dir/sub/d", "dir/sub/deeper/e"]
    assert prefixes_of(resp) == []
    resp = s3.list_objects_v2(Bucket=tree_bucket, Prefix="dir/s")
    assert keys_of(resp) == ["dir/sub/c", "dir/sub/d", "dir/sub/deeper/e"]
    resp = s3.list_objects_v2(Bucket=tree_bucket, Prefix="nothing-here")
    assert resp["KeyCount"] == 0 and "Contents" not in resp


def test_v2_non_slash_delimiter(s3, tree_bucket):
    resp = s3.list_objects_v2(Bucket=tree_bucket, Delimiter=".")
    assert prefixes_of(resp) == ["a."]
    assert "a.txt" not in keys_of(resp)


def test_v2_delimiter_paging_counts_prefixes(s3, tree_bucket):
    """Common prefixes take max-keys slots, and a prefix is never repeated on the next page."""
    entries = []
    token = None
    for _ in range(10):
        kw = {"ContinuationToken": token} if token else {}
        resp = s3.list_objects_v2(Bucket=tree_bucket, Delimiter="/", MaxKeys=1, **kw)
        assert resp["KeyCount"] == 1
        entries += keys_of(resp) + prefixes_of(resp)
        if not resp["IsTruncated"]:
            break
        token = resp["NextContinuationToken"]
    assert entries == ["a.txt", "dir/", "other/", "z"]


# ---------------------------------------------------------------------------------------------
# encoding-type=url, checked on the raw XML (boto3 decodes it transparently)
# ---------------------------------------------------------------------------------------------
ENC_KEYS = ["a b", "c+d", "e%f", "ü/x", "x&<>y", "tab\tkey", "slash/ok"]


@pytest.fixture(scope="module")
def enc_bucket(s3):
    name = unique_bucket("enc")
    s3.create_bucket(Bucket=name)
    for k in ENC_KEYS:
        s3.put_object(Bucket=name, Key=k, Body=b"")
    return name


def test_v2_encoding_type_url_raw(server, enc_bucket):
    from harness import raw_request

    resp = raw_request(server, "GET", enc_bucket, query="encoding-type=url&list-type=2")
    assert resp.status == 200, resp
    root = resp.xml()
    assert root.findtext("EncodingType") == "url"
    raw_keys = [c.findtext("Key") for c in root.findall("Contents")]
    assert len(raw_keys) == len(ENC_KEYS)
    decoded = [unquote_plus(k) for k in raw_keys]
    assert sorted(decoded) == sorted(ENC_KEYS)
    for raw_key, key in zip(raw_keys, decoded):
        if any(ch in key for ch in " +%&<>\tü"):
            assert raw_key != key, f"{key!r} was not URL-encoded"
        assert " " not in raw_key and "\t" not in raw_key


def test_v2_encoding_type_url_prefix_and_delimiter(server, enc_bucket):
    from harness import raw_request

    q = "delimiter=%2F&encoding-type=url&list-type=2"
    resp = raw_request(server, "GET", enc_bucket, query=q)
    assert resp.status == 200, resp
    prefixes = [unquote_plus(p.findtext("Prefix")) for p in resp.xml().findall("CommonPrefixes")]
    assert sorted(prefixes) == ["slash/", "ü/"]
    q = f"encoding-type=url&list-type=2&prefix={quote('ü/', safe='')}"
    resp = raw_request(server, "GET", enc_bucket, query=q)
    root = resp.xml()
    assert unquote_plus(root.findtext("Prefix")) == "ü/"
    assert [unquote_plus(c.findtext("Key")) for c in root.findall("Contents")] == ["ü/x"]


def test_v2_without_encoding_returns_literal_keys(server, enc_bucket):
    from harness import raw_request

    resp = raw_request(server, "GET", enc_bucket, query="list-type=2")
    assert resp.status == 200, resp
    root = resp.xml()
    assert root.find("EncodingType") is None
    assert sorted(c.findtext("Key") for c in root.findall("Contents")) == sorted(ENC_KEYS)


def test_v2_boto3_decodes_url_encoding(s3, enc_bucket):
    assert sorted(keys_of(s3.list_objects_v2(Bucket=enc_bucket))) == sorted(ENC_KEYS)


def test_list_invalid_encoding_type(server, enc_bucket):
    from harness import raw_request

    resp = raw_request(server, "GET", enc_bucket, query="encoding-type=base64&list-type=2")
    assert (resp.status, resp.error_code) == (400, "InvalidArgument"), resp


# ---------------------------------------------------------------------------------------------
# ListObjects (v1)
# ---------------------------------------------------------------------------------------------
def test_v1_paging_with_marker(s3, big_bucket):
    bucket, keys = big_bucket
    seen = []
    marker = None
    for _ in range(5):
        kw = {"Marker": marker} if marker else {}
        resp = s3.list_objects(Bucket=bucket, **kw)
        assert resp["MaxKeys"] == 1000
        if marker:
            assert resp["Marker"] == marker
        page = keys_of(resp)
        seen += page
        # NextMarker is only returned when a delimiter was given.
        assert "NextMarker" not in resp
        if not resp["IsTruncated"]:
            break
        marker = page[-1]
    assert seen == keys


def test_v1_next_marker_with_delimiter(s3, tree_bucket):
    resp = s3.list_objects(Bucket=tree_bucket, Delimiter="/", MaxKeys=2)
    assert resp["IsTruncated"] is True
    assert keys_of(resp) == ["a.txt"]
    assert prefixes_of(resp) == ["dir/"]
    assert resp["NextMarker"] == "dir/"
    resp2 = s3.list_objects(Bucket=tree_bucket, Delimiter="/", MaxKeys=2, Marker=resp["NextMarker"])
    assert prefixes_of(resp2) == ["other/"]
    assert keys_of(resp2) == ["z"]
    assert resp2["IsTruncated"] is False
    assert "NextMarker" not in resp2


def test_v1_prefix_marker_and_max_keys(s3, tree_bucket):
    resp = s3.list_objects(Bucket=tree_bucket, Prefix="dir/", Marker="dir/b", MaxKeys=2)
    assert keys_of(resp) == ["dir/sub/c", "dir/sub/d"]
    assert resp["IsTruncated"] is True
    assert resp["Prefix"] == "dir/"
    resp = s3.list_objects(Bucket=tree_bucket, Prefix="dir/", Marker="dir/sub/d")
    assert keys_of(resp) == ["dir/sub/deeper/e"]
    assert resp["IsTruncated"] is False


def test_v1_contents_have_owner(s3, tree_bucket):
    # ListObjects v1 always includes the owner.
    resp = s3.list_objects(Bucket=tree_bucket)
    assert all(o.get("Owner", {}).get("ID") for o in resp["Contents"])
