"""Bucket operations: naming rules, LocationConstraint, ownership conflicts, head/list/delete."""

from __future__ import annotations

import datetime as dt
import secrets

import pytest
from botocore.exceptions import ClientError

from conftest import unique_bucket
from harness import assert_client_error, assert_raw_error

INVALID_BUCKET_MSG = "The specified bucket is not valid."
NO_SUCH_BUCKET_MSG = "The specified bucket does not exist"

BAD_NAMES = [
    pytest.param("ab", id="too-short"),
    pytest.param("a" * 64, id="too-long"),
    pytest.param("MyBucket-" + secrets.token_hex(3), id="uppercase"),
    pytest.param("my_bucket_" + secrets.token_hex(3), id="underscore"),
    pytest.param("192.168.5.4", id="ip-address"),
    pytest.param("xn--bucket-" + secrets.token_hex(3), id="xn--prefix"),
    pytest.param("sthree-bucket-" + secrets.token_hex(3), id="sthree-prefix"),
    pytest.param("bucket-" + secrets.token_hex(3) + "-s3alias", id="-s3alias-suffix"),
    pytest.param("bucket-" + secrets.token_hex(3) + "--ol-s3", id="--ol-s3-suffix"),
    pytest.param("my..bucket-" + secrets.token_hex(3), id="adjacent-dots"),
    pytest.param("-bucket-" + secrets.token_hex(3), id="leading-hyphen"),
    pytest.param("bucket-" + secrets.token_hex(3) + "-", id="trailing-hyphen"),
    pytest.param(".bucket-" + secrets.token_hex(3), id="leading-dot"),
    pytest.param("bucket-" + secrets.token_hex(3) + ".", id="trailing-dot"),
    pytest.param("bucket!" + secrets.token_hex(3), id="bang"),
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_create_bucket_invalid_name(raw, s3, name):
    # Raw request: botocore rejects some of these client-side, S3 must reject all server-side.
    resp = raw("PUT", name)
    assert_raw_error(resp, "InvalidBucketName", 400, INVALID_BUCKET_MSG)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert name not in names


@pytest.mark.parametrize("length", [3, 63])
def test_create_bucket_valid_name_length_limits(s3, length):
    name = ("b" + secrets.token_hex(32))[:length]
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)


def test_create_bucket_with_dots_and_digits(s3):
    name = f"my.bucket.{secrets.token_hex(3)}.2024"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"x")
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"x"


def test_create_bucket_default_location_is_us_east_1(s3):
    name = unique_bucket()
    resp = s3.create_bucket(Bucket=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["Location"] == f"/{name}"
    # us-east-1 is reported as an empty LocationConstraint.
    assert s3.get_bucket_location(Bucket=name).get("LocationConstraint") is None


def test_create_bucket_with_location_constraint(s3):
    name = unique_bucket()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"


def test_create_bucket_location_constraint_us_east_1_is_invalid(s3):
    # AWS: us-east-1 must be expressed by omitting the constraint.
    name = unique_bucket()
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-east-1"})
    assert_client_error(e, "InvalidLocationConstraint", 400)


def test_create_bucket_malformed_xml(raw, s3):
    name = unique_bucket()
    resp = raw("PUT", name, body=b"<CreateBucketConfiguration><LocationConstraint>eu-west-1")
    assert_raw_error(resp, "MalformedXML", 400)
    assert resp.error_message.startswith(
        "The XML you provided was not well-formed or did not validate against our published schema"
    )
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_create_bucket_again_is_already_owned_by_you(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=bucket)
    err = assert_client_error(
        e,
        "BucketAlreadyOwnedByYou",
        409,
        "Your previous request to create the named bucket succeeded and you already own it.",
    )
    assert err.get("BucketName") == bucket


def test_head_bucket(s3, bucket):
    resp = s3.head_bucket(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["ResponseMetadata"]["HTTPHeaders"].get("x-amz-bucket-region") == "us-east-1"


def test_head_missing_bucket_is_404_without_body(s3, raw):
    name = unique_bucket()
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    resp = raw("HEAD", name)
    assert resp.status == 404
    assert resp.body == b""


def test_list_buckets(s3):
    before = dt.datetime.now(dt.timezone.utc)
    names = [unique_bucket() for _ in range(3)]
    for n in names:
        s3.create_bucket(Bucket=n)
    resp = s3.list_buckets()
    assert resp["Owner"]["ID"]
    listed = {b["Name"]: b for b in resp["Buckets"]}
    for n in names:
        assert n in listed
        created = listed[n]["CreationDate"]
        assert created.tzinfo is not None
        # Second precision at most; allow some clock slack.
        assert before - dt.timedelta(seconds=5) <= created <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5)
    # Sorted by name, as S3 returns them.
    all_names = [b["Name"] for b in resp["Buckets"]]
    assert all_names == sorted(all_names)


def test_delete_bucket(s3):
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    resp = s3.delete_bucket(Bucket=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # The name can be reused.
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)


def test_delete_non_empty_bucket(s3, bucket):
    s3.put_object(Bucket=bucket, Key="obj", Body=b"data")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    err = assert_client_error(e, "BucketNotEmpty", 409, "The bucket you tried to delete is not empty")
    assert err.get("BucketName") == bucket
    # Still there, object intact; once emptied it deletes.
    assert s3.get_object(Bucket=bucket, Key="obj")["Body"].read() == b"data"
    s3.delete_object(Bucket=bucket, Key="obj")
    assert s3.delete_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_delete_missing_bucket(s3):
    name = unique_bucket()
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    err = assert_client_error(e, "NoSuchBucket", 404, NO_SUCH_BUCKET_MSG)
    assert err.get("BucketName") == name


@pytest.mark.parametrize(
    "op",
    [
        "put_object",
        "get_object",
        "head_object_status",
        "delete_object",
        "list_objects_v2",
        "list_objects",
        "create_multipart_upload",
        "list_multipart_uploads",
        "get_bucket_location",
        "delete_objects",
        "copy_object",
    ],
)
def test_no_such_bucket(s3, op):
    name = unique_bucket("missing")
    calls = {
        "put_object": lambda: s3.put_object(Bucket=name, Key="k", Body=b"x"),
        "get_object": lambda: s3.get_object(Bucket=name, Key="k"),
        "delete_object": lambda: s3.delete_object(Bucket=name, Key="k"),
        "list_objects_v2": lambda: s3.list_objects_v2(Bucket=name),
        "list_objects": lambda: s3.list_objects(Bucket=name),
        "create_multipart_upload": lambda: s3.create_multipart_upload(Bucket=name, Key="k"),
        "list_multipart_uploads": lambda: s3.list_multipart_uploads(Bucket=name),
        "get_bucket_location": lambda: s3.get_bucket_location(Bucket=name),
        "delete_objects": lambda: s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": "k"}]}),
        "copy_object": lambda: s3.copy_object(Bucket=name, Key="k2", CopySource={"Bucket": name, "Key": "k"}),
    }
    if op == "head_object_status":
        with pytest.raises(ClientError) as e:
            s3.head_object(Bucket=name, Key="k")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return
    with pytest.raises(ClientError) as e:
        calls[op]()
    assert_client_error(e, "NoSuchBucket", 404, NO_SUCH_BUCKET_MSG)


def test_virtual_host_style_bucket_lifecycle(s3v, s3):
    name = unique_bucket("vhost")
    s3v.create_bucket(Bucket=name)
    s3v.head_bucket(Bucket=name)
    s3v.put_object(Bucket=name, Key="dir/obj.txt", Body=b"virtual", ContentType="text/plain")
    got = s3v.get_object(Bucket=name, Key="dir/obj.txt")
    assert got["Body"].read() == b"virtual"
    assert got["ContentType"] == "text/plain"
    # The same object through path style: addressing is only a different spelling.
    assert s3.get_object(Bucket=name, Key="dir/obj.txt")["Body"].read() == b"virtual"
    assert [o["Key"] for o in s3v.list_objects_v2(Bucket=name)["Contents"]] == ["dir/obj.txt"]
    s3v.delete_object(Bucket=name, Key="dir/obj.txt")
    s3v.delete_bucket(Bucket=name)
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=name)


def test_virtual_host_style_raw_host_header(raw, s3, bucket):
    """Virtual-host addressing decided by the Host header alone (TCP goes to 127.0.0.1)."""
    resp = raw("PUT", bucket, "vh/key", body=b"hello", virtual=True)
    assert resp.status == 200, resp
    assert s3.get_object(Bucket=bucket, Key="vh/key")["Body"].read() == b"hello"
    resp = raw("GET", bucket, "vh/key", virtual=True)
    assert (resp.status, resp.body) == (200, b"hello"), resp
    resp = raw("GET", bucket, None, query="list-type=2", virtual=True)
    assert resp.status == 200, resp
    assert [c.findtext("Key") for c in resp.xml().findall("Contents")] == ["vh/key"]
