"""CopyObject: metadata directives, copy-source conditionals, self-copy rules, odd keys."""

from __future__ import annotations

import datetime as dt
import os
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from checksums import etag
from conftest import unique_bucket
from harness import assert_client_error

MiB = 1024 * 1024
DAY = dt.timedelta(days=1)
SELF_COPY_MSG = (
    "This copy request is illegal because it is trying to copy an object to itself without changing "
    "the object's metadata, storage class, website redirect location or encryption attributes."
)


@pytest.fixture
def src(s3, bucket):
    data = os.urandom(2 * MiB + 3)
    s3.put_object(
        Bucket=bucket,
        Key="src",
        Body=data,
        Metadata={"a": "1", "origin": "source"},
        ContentType="text/plain",
        CacheControl="max-age=5",
        ContentDisposition="inline",
    )
    head = s3.head_object(Bucket=bucket, Key="src")
    return bucket, "src", data, head


def test_copy_keeps_metadata_by_default(s3, src):
    bucket, key, data, head = src
    resp = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": key})
    assert resp["CopyObjectResult"]["ETag"] == etag(data)
    assert isinstance(resp["CopyObjectResult"]["LastModified"], dt.datetime)
    assert resp["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"a": "1", "origin": "source"}
    assert got["ContentType"] == "text/plain"
    assert got["CacheControl"] == "max-age=5"
    assert got["ContentDisposition"] == "inline"
    assert got["ETag"] == etag(data)
    assert got["ServerSideEncryption"] == "AES256"
    # The source is untouched.
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_copy_with_explicit_copy_directive_ignores_new_metadata(s3, src):
    bucket, key, data, _ = src
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="COPY",
        Metadata={"ignored": "yes"},
    )
    assert s3.head_object(Bucket=bucket, Key="dst")["Metadata"] == {"a": "1", "origin": "source"}


def test_copy_replace_metadata(s3, src):
    bucket, key, data, _ = src
    s3.copy_object(
        Bucket=bucket,
        Key="dst",
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="application/json",
    )
    got = s3.get_object(Bucket=bucket, Key="dst")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"b": "2"}
    assert got["ContentType"] == "application/json"
    assert "CacheControl" not in got
    assert got["ETag"] == etag(data)


def test_copy_across_buckets(s3, src):
    bucket, key, data, _ = src
    other = unique_bucket()
    s3.create_bucket(Bucket=other)
    s3.copy_object(Bucket=other, Key="copied", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=other, Key="copied")["Body"].read() == data


def test_copy_empty_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    resp = s3.copy_object(Bucket=bucket, Key="empty2", CopySource={"Bucket": bucket, "Key": "empty"})
    assert resp["CopyObjectResult"]["ETag"] == etag(b"")
    got = s3.get_object(Bucket=bucket, Key="empty2")
    assert got["ContentLength"] == 0
    assert got["Body"].read() == b""


@pytest.mark.parametrize(
    "cond",
    [
        "if-match-wrong",
        "if-none-match-same",
        "if-modified-since-lm",
        "if-unmodified-since-before",
    ],
)
def test_copy_source_conditionals_fail(s3, src, cond):
    bucket, key, _, head = src
    lm, tag = head["LastModified"], head["ETag"]
    kwargs = {
        "if-match-wrong": {"CopySourceIfMatch": '"0123456789abcdef0123456789abcdef"'},
        "if-none-match-same": {"CopySourceIfNoneMatch": tag},
        "if-modified-since-lm": {"CopySourceIfModifiedSince": lm},
        "if-unmodified-since-before": {"CopySourceIfUnmodifiedSince": lm - DAY},
    }[cond]
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": key}, **kwargs)
    assert_client_error(e, "PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="dst")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_copy_source_conditionals_pass(s3, src):
    bucket, key, data, head = src
    lm, tag = head["LastModified"], head["ETag"]
    cs = {"Bucket": bucket, "Key": key}
    s3.copy_object(Bucket=bucket, Key="d1", CopySource=cs, CopySourceIfMatch=tag)
    s3.copy_object(Bucket=bucket, Key="d2", CopySource=cs, CopySourceIfNoneMatch='"00000000000000000000000000000000"')
    s3.copy_object(Bucket=bucket, Key="d3", CopySource=cs, CopySourceIfModifiedSince=lm - DAY)
    s3.copy_object(Bucket=bucket, Key="d4", CopySource=cs, CopySourceIfUnmodifiedSince=lm)
    for k in ("d1", "d2", "d3", "d4"):
        assert s3.head_object(Bucket=bucket, Key=k)["ETag"] == etag(data)


def test_copy_source_conditional_combinations(s3, src):
    bucket, key, _, head = src
    lm, tag = head["LastModified"], head["ETag"]
    cs = {"Bucket": bucket, "Key": key}
    # if-match true + if-unmodified-since false: S3 copies (200).
    s3.copy_object(Bucket=bucket, Key="c1", CopySource=cs, CopySourceIfMatch=tag, CopySourceIfUnmodifiedSince=lm - DAY)
    # if-none-match false + if-modified-since true: 412.
    with pytest.raises(ClientError) as e:
        s3.copy_object(
            Bucket=bucket, Key="c2", CopySource=cs, CopySourceIfNoneMatch=tag, CopySourceIfModifiedSince=lm - DAY
        )
    assert_client_error(e, "PreconditionFailed", 412)


def test_copy_onto_itself_without_changes_is_illegal(s3, src):
    bucket, key, data, _ = src
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key})
    assert_client_error(e, "InvalidRequest", 400, SELF_COPY_MSG)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key}, MetadataDirective="COPY")
    assert_client_error(e, "InvalidRequest", 400, SELF_COPY_MSG)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_copy_onto_itself_with_replace_updates_metadata(s3, src):
    bucket, key, data, head = src
    s3.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="REPLACE",
        Metadata={"new": "meta"},
        ContentType="application/octet-stream",
    )
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == data
    assert got["Metadata"] == {"new": "meta"}
    assert got["ContentType"] == "application/octet-stream"
    assert got["ETag"] == head["ETag"]


def test_copy_missing_source_key(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "no-such-source"})
    assert_client_error(e, "NoSuchKey", 404, "The specified key does not exist.")


def test_copy_missing_source_bucket(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": unique_bucket("gone"), "Key": "k"})
    assert_client_error(e, "NoSuchBucket", 404)


@pytest.mark.parametrize("key", ["dir/a b+c%d", "ünïcødé/日本語.txt", "with?query&and=eq", "a//b"])
def test_copy_source_with_special_characters(s3, bucket, key):
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key=key + ".copy")["Body"].read() == key.encode()


def test_copy_source_header_forms(raw, s3, bucket):
    """x-amz-copy-source with and without a leading slash, URL-encoded."""
    key = "src key+ü"
    s3.put_object(Bucket=bucket, Key=key, Body=b"forms")
    for i, source in enumerate([f"/{bucket}/{quote(key)}", f"{bucket}/{quote(key)}"]):
        resp = raw("PUT", bucket, f"dst{i}", headers={"x-amz-copy-source": source}, body=b"")
        assert resp.status == 200, resp
        assert resp.xml().tag == "CopyObjectResult"
        assert resp.xml().findtext("ETag") == etag(b"forms")
        assert s3.get_object(Bucket=bucket, Key=f"dst{i}")["Body"].read() == b"forms"
