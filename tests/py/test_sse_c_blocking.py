"""Issue 7: blocking SSE-C per bucket (`BlockedEncryptionTypes`), SSE-C blocked by default on new
general purpose buckets — through boto3 and the `aws s3api` CLI. Each test names the issue's point it
checks.

S3 user guide, "Blocking or unblocking SSE-C for a general purpose bucket": "When SSE-C is blocked for a
bucket, any PutObject, CopyObject, PostObject, or Multipart Upload ... requests that specify SSE-C
encryption will be rejected with an HTTP 403 AccessDenied error. Existing SSE-C encrypted objects in the
bucket are unaffected, you can still read them with GetObject or HeadObject by providing the required
SSE-C headers." Valid values: "SSE-C, which blocks SSE-C encryption ..., and NONE, which allows the use
SSE-C".
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from conftest import unique_bucket
from harness import assert_client_error, assert_raw_error, strip_ns
from sse_common import (
    ACCOUNT,
    allow_sse_c,
    content_md5,
    copy_source_ssec_params,
    customer_key,
    key_md5,
    sse_headers,
    ssec_headers,
    ssec_params,
)
from test_directory_buckets import directory_config, directory_name

MALFORMED_MSG = "The XML you provided was not well-formed or did not validate against our published schema"
SSE_C_BLOCKED = {"EncryptionType": ["SSE-C"]}
SSE_C_ALLOWED = {"EncryptionType": ["NONE"]}
MiB = 1024 * 1024


def blocked_msg(bucket: str, key: str) -> str:
    # S3's access denied message for this case ("... because this bucket has blocked upload requests that
    # specify Server Side Encryption with Customer provided keys (SSE-C)"); SSE-C writes need s3:PutObject.
    return (
        f'User: arn:aws:iam::{ACCOUNT}:root is not authorized to perform: s3:PutObject on resource: '
        f'"arn:aws:s3:::{bucket}/{key}" because this bucket has blocked upload requests that specify Server '
        "Side Encryption with Customer provided keys (SSE-C)"
    )


def rule(s3, bucket) -> dict:
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert len(rules) == 1, rules
    return rules[0]


def set_blocked(s3, bucket, value: str, default: dict | None = None) -> None:
    r = {"ApplyServerSideEncryptionByDefault": default or {"SSEAlgorithm": "AES256"},
         "BlockedEncryptionTypes": {"EncryptionType": [value]}}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [r]})


def assert_blocked(excinfo, bucket: str, key: str) -> None:
    assert_client_error(excinfo, "AccessDenied", 403, blocked_msg(bucket, key))


def assert_absent(s3, bucket, key) -> None:
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# ---------------------------------------------------------------------------------------------
# Point 1: PutBucketEncryption / GetBucketEncryption carry BlockedEncryptionTypes
# ---------------------------------------------------------------------------------------------
def test_point1_round_trip_and_xml_shape(s3, raw, bucket):
    # Issue 7 point 1: "<BlockedEncryptionTypes><EncryptionType>SSE-C</EncryptionType></BlockedEncryptionTypes>,
    #   values NONE | SSE-C".
    set_blocked(s3, bucket, "NONE")
    assert rule(s3, bucket)["BlockedEncryptionTypes"] == SSE_C_ALLOWED
    set_blocked(s3, bucket, "SSE-C", {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/coffer-default"})
    assert rule(s3, bucket) == {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/coffer-default"},
        "BucketKeyEnabled": False,
        "BlockedEncryptionTypes": SSE_C_BLOCKED,
    }
    root = strip_ns(ET.fromstring(raw("GET", bucket, query="encryption").body))
    blocked = root.find("Rule/BlockedEncryptionTypes")
    assert [(c.tag, c.text) for c in blocked] == [("EncryptionType", "SSE-C")]


@pytest.mark.parametrize("value", ["SSE-KMS", "sse-c", "AES256", ""])
def test_point1_unknown_value_is_400_and_changes_nothing(s3, bucket, value):
    # Issue 7 point 1: "Unknown values → 400". EncryptionType is an enum of the configuration's schema
    # (botocore: "NONE" | "SSE-C"); a value outside it does not validate: MalformedXML, as for SSEAlgorithm.
    with pytest.raises(ClientError) as e:
        set_blocked(s3, bucket, value)
    assert_client_error(e, "MalformedXML", 400, MALFORMED_MSG)
    assert rule(s3, bucket)["BlockedEncryptionTypes"] == SSE_C_BLOCKED


def test_point1_none_with_sse_c_is_400(s3, bucket):
    # Issue 7 point 1: NONE (block nothing) and SSE-C together contradict each other.
    r = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
         "BlockedEncryptionTypes": {"EncryptionType": ["NONE", "SSE-C"]}}
    with pytest.raises(ClientError) as e:
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [r]})
    assert_client_error(e, "InvalidArgument", 400)
    assert rule(s3, bucket)["BlockedEncryptionTypes"] == SSE_C_BLOCKED


def test_point1_omitted_blocked_types_keep_the_setting(s3, bucket):
    # Issue 7 point 1: a PutBucketEncryption without BlockedEncryptionTypes keeps the bucket's SSE-C setting,
    # as S3 does (it accepts the request and GetBucketEncryption still reports the earlier value).
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}, "BucketKeyEnabled": True}]})
    got = rule(s3, bucket)
    assert got["BlockedEncryptionTypes"] == SSE_C_BLOCKED
    assert got["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms"}
    allow_sse_c(s3, bucket)
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    assert rule(s3, bucket)["BlockedEncryptionTypes"] == SSE_C_ALLOWED
    # DeleteBucketEncryption resets the default encryption, not the SSE-C setting.
    s3.delete_bucket_encryption(Bucket=bucket)
    assert rule(s3, bucket) == {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                                "BucketKeyEnabled": False, "BlockedEncryptionTypes": SSE_C_ALLOWED}


def test_point1_rule_with_blocked_types_only_keeps_the_default(s3, bucket):
    # Issue 7 point 1; ServerSideEncryptionRule: ApplyServerSideEncryptionByDefault "Required: No" (the user
    # guide's CLI example sets BlockedEncryptionTypes alone): the default encryption stays.
    default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/coffer-default"}
    set_blocked(s3, bucket, "SSE-C", default)
    allow_sse_c(s3, bucket)
    assert rule(s3, bucket) == {"ApplyServerSideEncryptionByDefault": default, "BucketKeyEnabled": False,
                                "BlockedEncryptionTypes": SSE_C_ALLOWED}
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert sse_headers(put)["x-amz-server-side-encryption"] == "aws:kms"


def test_point1_directory_buckets_refuse_blocked_types(server):
    # Issue 7 point 1: "(general purpose buckets only)"; directory buckets have no SSE-C at all.
    s3 = server.client()
    name = directory_name()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration=directory_config())
    for value in ("SSE-C", "NONE"):
        with pytest.raises(ClientError) as e:
            set_blocked(s3, name, value)
        assert_client_error(e, "InvalidArgument", 400,
                            "BlockedEncryptionTypes is supported for general purpose buckets only")
    got = rule(s3, name)
    assert "BlockedEncryptionTypes" not in got, got


def test_point1_cli_put_and_get(aws):
    # Issue 7 points 1 and 2 through `aws s3api put-bucket-encryption` / `get-bucket-encryption`.
    bucket = unique_bucket("cli-ssec")
    aws("s3api", "create-bucket", "--bucket", bucket)
    assert aws("s3api", "get-bucket-encryption", "--bucket", bucket) == {"ServerSideEncryptionConfiguration": {
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": False,
                   "BlockedEncryptionTypes": SSE_C_BLOCKED}]}}
    config = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                         "BlockedEncryptionTypes": {"EncryptionType": ["NONE"]}}]}
    aws("s3api", "put-bucket-encryption", "--bucket", bucket, "--server-side-encryption-configuration",
        json.dumps(config), json_out=False)
    got = aws("s3api", "get-bucket-encryption", "--bucket", bucket)
    assert got["ServerSideEncryptionConfiguration"]["Rules"][0]["BlockedEncryptionTypes"] == SSE_C_ALLOWED
    config["Rules"][0]["BlockedEncryptionTypes"]["EncryptionType"] = ["SSE-X"]
    proc = aws("s3api", "put-bucket-encryption", "--bucket", bucket, "--server-side-encryption-configuration",
               json.dumps(config), check=False, json_out=False)
    assert proc.returncode != 0
    assert "MalformedXML" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------
# Point 2: new buckets block SSE-C; every SSE-C write is refused before a byte is stored
# ---------------------------------------------------------------------------------------------
def test_point2_new_bucket_reports_sse_s3_with_sse_c_blocked(s3, bucket):
    # Issue 7 point 2: "GetBucketEncryption on a new bucket reports the SSE-S3 default rule with SSE-C blocked".
    assert rule(s3, bucket) == {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                                "BucketKeyEnabled": False, "BlockedEncryptionTypes": SSE_C_BLOCKED}
    # Other writes are not affected.
    put = s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    assert sse_headers(put) == {"x-amz-server-side-encryption": "AES256"}


def test_point2_put_object_is_refused(s3, raw, bucket):
    # Issue 7 point 2: PutObject with SSE-C → 403 AccessDenied, nothing stored.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="c", Body=os.urandom(1000), **ssec_params(customer_key()))
    assert_blocked(e, bucket, "c")
    assert_absent(s3, bucket, "c")
    # Refused before the key is looked at: a malformed SSE-C key gets the same 403, not a 400.
    resp = raw("PUT", bucket, "c", headers=ssec_headers(customer_key(), md5=key_md5(b"other")), body=b"x")
    assert_raw_error(resp, "AccessDenied", 403, blocked_msg(bucket, "c"))
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_point2_copy_object_to_sse_c_is_refused(s3, bucket):
    # Issue 7 point 2: CopyObject with an SSE-C destination → 403, nothing stored.
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
                       **ssec_params(customer_key()))
    assert_blocked(e, bucket, "dst")
    assert_absent(s3, bucket, "dst")


def test_point2_create_multipart_upload_is_refused(s3, bucket):
    # Issue 7 point 2: CreateMultipartUpload with SSE-C → 403 before the upload is created.
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="mpu", **ssec_params(customer_key()))
    assert_blocked(e, bucket, "mpu")
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_point2_upload_part_and_upload_part_copy_are_refused_once_blocked(s3, bucket):
    # Issue 7 point 2: "setting SSE-C on an existing bucket blocks new SSE-C writes" — UploadPart and
    # UploadPartCopy of an SSE-C upload begun while SSE-C was allowed.
    allow_sse_c(s3, bucket)
    key = customer_key()
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mpu", **ssec_params(key))["UploadId"]
    first = s3.upload_part(Bucket=bucket, Key="mpu", UploadId=uid, PartNumber=1, Body=os.urandom(5 * MiB),
                           **ssec_params(key))
    s3.put_object(Bucket=bucket, Key="src", Body=b"copy source")
    set_blocked(s3, bucket, "SSE-C")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mpu", UploadId=uid, PartNumber=2, Body=b"tail", **ssec_params(key))
    assert_blocked(e, bucket, "mpu")
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="mpu", UploadId=uid, PartNumber=3,
                            CopySource={"Bucket": bucket, "Key": "src"}, **ssec_params(key))
    assert_blocked(e, bucket, "mpu")
    parts = s3.list_parts(Bucket=bucket, Key="mpu", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, first["ETag"])]
    s3.abort_multipart_upload(Bucket=bucket, Key="mpu", UploadId=uid)


def test_point2_none_allows_and_sse_c_blocks_again(s3, bucket):
    # Issue 7 point 2: "Setting NONE allows SSE-C again; setting SSE-C on an existing bucket blocks new
    #   SSE-C writes."
    key = customer_key()
    set_blocked(s3, bucket, "NONE")
    put = s3.put_object(Bucket=bucket, Key="a", Body=b"allowed", **ssec_params(key))
    assert sse_headers(put)["x-amz-server-side-encryption-customer-key-md5"] == key_md5(key)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="m", **ssec_params(key))["UploadId"]
    s3.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=uid)
    set_blocked(s3, bucket, "SSE-C")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="b", Body=b"refused", **ssec_params(key))
    assert_blocked(e, bucket, "b")
    assert_absent(s3, bucket, "b")


def test_point2_cli_put_object_is_refused(aws, tmp_path):
    # Issue 7 point 2 through `aws s3api put-object --sse-customer-*`.
    bucket = unique_bucket("cli-ssec")
    aws("s3api", "create-bucket", "--bucket", bucket)
    body = tmp_path / "body"
    body.write_bytes(b"cli body")
    key = customer_key()
    args = ["--sse-customer-algorithm", "AES256", "--sse-customer-key", base64.b64encode(key).decode(),
            "--sse-customer-key-md5", key_md5(key)]
    proc = aws("s3api", "put-object", "--bucket", bucket, "--key", "c", "--body", str(body), *args, check=False,
               json_out=False)
    assert proc.returncode != 0
    assert "AccessDenied" in proc.stderr and "blocked upload requests" in proc.stderr, proc.stderr
    # NONE through the CLI, then the same command succeeds.
    config = {"Rules": [{"BlockedEncryptionTypes": {"EncryptionType": ["NONE"]}}]}
    aws("s3api", "put-bucket-encryption", "--bucket", bucket, "--server-side-encryption-configuration",
        json.dumps(config), json_out=False)
    out = aws("s3api", "put-object", "--bucket", bucket, "--key", "c", "--body", str(body), *args)
    assert out["SSECustomerKeyMD5"] == key_md5(key)


# ---------------------------------------------------------------------------------------------
# Point 3: existing SSE-C objects stay readable and deletable
# ---------------------------------------------------------------------------------------------
def test_point3_existing_sse_c_objects_stay_readable_and_deletable(s3, bucket):
    # Issue 7 point 3; user guide: "Existing SSE-C encrypted objects in the bucket are unaffected, you can
    #   still read them with GetObject or HeadObject by providing the required SSE-C headers."
    allow_sse_c(s3, bucket)
    key = customer_key()
    data = os.urandom(70_000)
    s3.put_object(Bucket=bucket, Key="c", Body=data, **ssec_params(key))
    s3.put_object(Bucket=bucket, Key="d", Body=b"to delete", **ssec_params(key))
    set_blocked(s3, bucket, "SSE-C")
    assert s3.get_object(Bucket=bucket, Key="c", **ssec_params(key))["Body"].read() == data
    ranged = s3.get_object(Bucket=bucket, Key="c", Range="bytes=100-199", **ssec_params(key))
    assert ranged["Body"].read() == data[100:200]
    head = s3.head_object(Bucket=bucket, Key="c", **ssec_params(key))
    assert head["SSECustomerKeyMD5"] == key_md5(key)
    # Still the object's own key that opens it.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", **ssec_params(customer_key()))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    # Reading it as a copy source is a read: a copy to SSE-S3 is allowed.
    copy = s3.copy_object(Bucket=bucket, Key="plain", CopySource={"Bucket": bucket, "Key": "c"},
                          **copy_source_ssec_params(key))
    assert sse_headers(copy) == {"x-amz-server-side-encryption": "AES256"}
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == data
    s3.delete_object(Bucket=bucket, Key="d")
    assert_absent(s3, bucket, "d")


def test_point3_cli_reads_existing_sse_c_object(s3, aws, bucket, tmp_path):
    # Issue 7 point 3 through `aws s3api head-object` / `get-object` with the customer key.
    allow_sse_c(s3, bucket)
    key = customer_key()
    s3.put_object(Bucket=bucket, Key="c", Body=b"cli read", **ssec_params(key))
    set_blocked(s3, bucket, "SSE-C")
    args = ["--sse-customer-algorithm", "AES256", "--sse-customer-key", base64.b64encode(key).decode(),
            "--sse-customer-key-md5", key_md5(key)]
    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "c", *args)
    assert head["SSECustomerKeyMD5"] == key_md5(key)
    out = tmp_path / "out"
    aws("s3api", "get-object", "--bucket", bucket, "--key", "c", *args, str(out))
    assert out.read_bytes() == b"cli read"
    aws("s3api", "delete-object", "--bucket", bucket, "--key", "c")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


# ---------------------------------------------------------------------------------------------
# Point 4: the server-wide option
# ---------------------------------------------------------------------------------------------
def test_point4_allow_sse_c_on_new_buckets_option(private_server, monkeypatch):
    # Issue 7 point 4: "A server-wide option for operators who must keep the pre-2026 behaviour (SSE-C
    #   allowed on new buckets) ... off by default." The setting is recorded at CreateBucket: changing the
    #   option later changes no existing bucket.
    monkeypatch.setenv("COFFER_ALLOW_SSE_C_ON_NEW_BUCKETS", "true")
    server = private_server()
    s3 = server.client()
    old = unique_bucket("legacy")
    s3.create_bucket(Bucket=old)
    assert rule(s3, old)["BlockedEncryptionTypes"] == SSE_C_ALLOWED
    key = customer_key()
    s3.put_object(Bucket=old, Key="c", Body=b"pre-2026", **ssec_params(key))

    # Off (the default): new buckets block SSE-C, the bucket made with the option still allows it.
    monkeypatch.delenv("COFFER_ALLOW_SSE_C_ON_NEW_BUCKETS")
    server.restart()
    s3 = server.client()
    new = unique_bucket("new")
    s3.create_bucket(Bucket=new)
    assert rule(s3, new)["BlockedEncryptionTypes"] == SSE_C_BLOCKED
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=new, Key="c", Body=b"x", **ssec_params(key))
    assert_blocked(e, new, "c")
    assert rule(s3, old)["BlockedEncryptionTypes"] == SSE_C_ALLOWED
    s3.put_object(Bucket=old, Key="c2", Body=b"still allowed", **ssec_params(key))

    # On again: the bucket created while it was off stays blocked.
    monkeypatch.setenv("COFFER_ALLOW_SSE_C_ON_NEW_BUCKETS", "true")
    server.restart()
    s3 = server.client()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=new, Key="c", Body=b"x", **ssec_params(key))
    assert_blocked(e, new, "c")
    assert s3.get_object(Bucket=old, Key="c", **ssec_params(key))["Body"].read() == b"pre-2026"


def test_point4_flag_is_documented_in_help(server):
    # Issue 7 point 4: the option is `coffer dev --allow-sse-c-on-new-buckets` (env
    # COFFER_ALLOW_SSE_C_ON_NEW_BUCKETS).
    out = subprocess.run([str(server.binary), "dev", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--allow-sse-c-on-new-buckets" in out.stdout
    assert "COFFER_ALLOW_SSE_C_ON_NEW_BUCKETS" in out.stdout


def test_point1_raw_put_with_blocked_types_only(raw, s3, bucket):
    # Issue 7 point 1, on the wire: a body with BlockedEncryptionTypes alone, as the user guide's example.
    body = (b'<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule>'
            b"<BlockedEncryptionTypes><EncryptionType>NONE</EncryptionType></BlockedEncryptionTypes>"
            b"</Rule></ServerSideEncryptionConfiguration>")
    resp = raw("PUT", bucket, query="encryption", headers={"Content-MD5": content_md5(body)}, body=body)
    assert resp.status == 200, resp
    assert rule(s3, bucket)["BlockedEncryptionTypes"] == SSE_C_ALLOWED
