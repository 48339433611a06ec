"""Directory buckets as far as encryption needs them (issue 4 item 7; seeds 001 and 002).

boto3 with a custom endpoint sends directory-bucket requests through CreateSession: it signs
`GET /{bucket}?session` for the `s3express` service, then signs every request for the bucket
with the session's credentials and `x-amz-s3session-token`. The tests below take that real path.

Each test cites the seed sentence it checks.
"""

from __future__ import annotations

import secrets

import pytest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from harness import assert_client_error, assert_raw_error
from sse_common import ACCOUNT, b64_context, kms_client, new_key, sse_headers

ZONE = "use1-az4"

ALGORITHMS_MSG = (
    "For directory buckets, there are only two supported values for server-side encryption: AES256 and aws:kms."
)
ALIAS_MSG = (
    "When you specify an KMS customer managed key for encryption in your directory bucket, only use the key ID "
    "or key ARN. The key alias format of the KMS key isn\u2019t supported."
)
KEY_NOT_FOUND_MSG = "The KMS key ID provided in the PutBucketEncryption request is not valid."
KEY_REQUIRED_MSG = (
    "If you specify --server-side-encryption aws:kms, you must provide an AWS KMS key ID of your customer "
    "managed key. Directory buckets don't use an AWS managed key."
)
AWS_MANAGED_MSG = "The Amazon Web Services managed key ( aws/s3) isn\u2019t supported."
ONE_KEY_MSG = (
    "Your SSE-KMS configuration can only support 1 customer managed key per directory bucket for the lifetime "
    "of the bucket."
)
KMS_NEEDS_DEFAULT_MSG = (
    "To encrypt new objects in a directory bucket with SSE-KMS, you must specify SSE-KMS as the directory "
    "bucket's default encryption configuration with a KMS key (specifically, a customer managed key)."
)
SAME_KEY_MSG = (
    "When you specify server-side encryption settings for new objects with SSE-KMS, you must make sure the "
    "encryption key is the same customer managed key that you specified for the directory bucket's default "
    "encryption configuration."
)
CONTEXT_MSG = (
    "For directory buckets, the encryption context value must match the default encryption context \u2014 the "
    "bucket Amazon Resource Name (ARN). An additional encryption context value is not supported."
)
UPDATE_REFUSED_MSG = "This operation is not supported for directory buckets."


def directory_name() -> str:
    return f"dir{secrets.token_hex(4)}--{ZONE}--x-s3"


def directory_config(zone: str = ZONE) -> dict:
    return {
        "Location": {"Type": "AvailabilityZone", "Name": zone},
        "Bucket": {"DataRedundancy": "SingleAvailabilityZone", "Type": "Directory"},
    }


@pytest.fixture(scope="module", params=["create-session", "s3v4"])
def s3(server, request):
    """Overrides conftest's client. `create-session`: boto3's default auth, which for a directory bucket
    behind a custom endpoint calls CreateSession and signs with the session's credentials and
    `x-amz-s3session-token` (service `s3express`); `s3v4`: the fixtures' pinned signer, the account's
    keys."""
    if request.param == "create-session":
        return server.client(signature_version=None)
    return server.client()


@pytest.fixture
def dbucket(s3) -> str:
    name = directory_name()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration=directory_config())
    return name


@pytest.fixture(scope="module")
def kms(server):
    return kms_client(server)


def put_default(s3, bucket, algorithm, key_id=None, bucket_key=None, **kw):
    default = {"SSEAlgorithm": algorithm}
    if key_id is not None:
        default["KMSMasterKeyID"] = key_id
    rule = {"ApplyServerSideEncryptionByDefault": default}
    if bucket_key is not None:
        rule["BucketKeyEnabled"] = bucket_key
    return s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [rule]}, **kw)


def rule_of(s3, bucket) -> dict:
    return s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]


# seed 001: "Bucket names must also follow the format ``bucket-base-name--zone-id--x-s3 (for example,
# DOC-EXAMPLE-BUCKET--usw2-az1--x-s3)."
def test_create_directory_bucket_put_get_through_session(s3):
    name = directory_name()
    s3.create_bucket(Bucket=name, CreateBucketConfiguration=directory_config())
    s3.head_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"hello")
    got = s3.get_object(Bucket=name, Key="k")
    assert got["Body"].read() == b"hello"
    # seed 002: "Server-side encryption with Amazon S3 managed keys (SSE-S3) is the default".
    assert got["ServerSideEncryption"] == "AES256"
    assert rule_of(s3, name)["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


# seed 001: "Bucket names must also follow the format bucket-base-name--zone-id--x-s3"
def test_directory_bucket_name_and_zone_checked(s3):
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=directory_name(), CreateBucketConfiguration=directory_config("usw2-az1"))
    assert_client_error(e, "InvalidArgument", 400)
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=f"bad_base--{ZONE}--x-s3", CreateBucketConfiguration=directory_config())
    assert e.value.response["Error"]["Code"] == "InvalidBucketName"


# seed 002: "When you use CreateSession with the AWS CLI or the AWS SDKs ... The AWS CLI or the AWS SDKs
# use the bucket's default encryption configuration for the CreateSession request."
def test_create_session_returns_credentials_and_bucket_encryption(s3, kms, dbucket):
    resp = s3.create_session(Bucket=dbucket)
    creds = resp["Credentials"]
    assert creds["AccessKeyId"] and creds["SecretAccessKey"] and creds["SessionToken"]
    assert resp["ServerSideEncryption"] == "AES256"
    key = new_key(kms)
    put_default(s3, dbucket, "aws:kms", key["KeyId"])
    resp = s3.create_session(Bucket=dbucket, SessionMode="ReadOnly")
    assert resp["ServerSideEncryption"] == "aws:kms"
    assert resp["SSEKMSKeyId"] == key["KeyId"]
    assert resp["BucketKeyEnabled"] is True


# seed 001: "For directory buckets, there are only two supported values for server-side encryption:
# AES256 and aws:kms."
def test_dsse_default_refused(s3, kms, dbucket):
    key = new_key(kms)
    with pytest.raises(ClientError) as e:
        put_default(s3, dbucket, "aws:kms:dsse", key["Arn"])
    assert_client_error(e, "InvalidArgument", 400, ALGORITHMS_MSG)


# seed 001: "When you specify an KMS customer managed key for encryption in your directory bucket, only
# use the key ID or key ARN. The key alias format of the KMS key isn't supported."
def test_key_alias_refused(s3, kms, dbucket):
    alias = f"alias/dir-{secrets.token_hex(4)}"
    key = new_key(kms, alias)
    with pytest.raises(ClientError) as e:
        put_default(s3, dbucket, "aws:kms", alias)
    assert_client_error(e, "InvalidArgument", 400, ALIAS_MSG)
    alias_arn = key["Arn"].split(":key/")[0] + ":" + alias
    with pytest.raises(ClientError) as e:
        put_default(s3, dbucket, "aws:kms", alias_arn)
    assert_client_error(e, "InvalidArgument", 400, ALIAS_MSG)
    # Key ID and key ARN are accepted.
    put_default(s3, dbucket, "aws:kms", key["KeyId"])
    put_default(s3, dbucket, "aws:kms", key["Arn"])


# seed 001: "For directory buckets, if you use PutBucketEncryption to set your default bucket encryption
# to SSE-KMS, Amazon S3 validates the KMS key ID provided in PutBucketEncryption requests."
def test_kms_key_validated_at_put(s3, dbucket):
    with pytest.raises(ClientError) as e:
        put_default(s3, dbucket, "aws:kms", "1234abcd-12ab-34cd-56ef-1234567890ab")
    assert_client_error(e, "InvalidArgument", 400, KEY_NOT_FOUND_MSG)
    # seed 002: "If you specify --server-side-encryption aws:kms, you must provide an AWS KMS key ID of your
    # customer managed key. Directory buckets don't use an AWS managed key."
    with pytest.raises(ClientError) as e:
        put_default(s3, dbucket, "aws:kms")
    assert_client_error(e, "InvalidArgument", 400, KEY_REQUIRED_MSG)


# seed 001: "The Amazon Web Services managed key ( aws/s3) isn't supported."
def test_aws_managed_key_refused(s3, kms, dbucket, bucket):
    # A general purpose bucket's SSE-KMS object without a key creates alias/aws/s3.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms")
    aws_key = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]
    with pytest.raises(ClientError) as e:
        put_default(s3, dbucket, "aws:kms", aws_key["Arn"])
    assert_client_error(e, "InvalidArgument", 400, AWS_MANAGED_MSG)


# seed 001: "S3 Bucket Keys are always enabled for GET and PUT operations in a directory bucket and can't
# be disabled."
def test_bucket_keys_always_on(s3, kms, dbucket):
    key = new_key(kms)
    put_default(s3, dbucket, "aws:kms", key["Arn"], bucket_key=False)
    rule = rule_of(s3, dbucket)
    assert rule["BucketKeyEnabled"] is True
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]}
    # seed 002: "new objects are automatically encrypted and decrypted with SSE-KMS and S3 Bucket Keys
    # during the session."
    put = s3.put_object(Bucket=dbucket, Key="k", Body=b"secret")
    assert put["ServerSideEncryption"] == "aws:kms"
    assert put["BucketKeyEnabled"] is True
    assert put["SSEKMSKeyId"] == key["Arn"]
    # seed 002: "You make a HeadObject API operation request to find the value of
    # x-amz-server-side-encryption-aws-kms-key-id in your response."
    head = s3.head_object(Bucket=dbucket, Key="k")
    assert head["SSEKMSKeyId"] == key["Arn"]
    assert head["BucketKeyEnabled"] is True
    assert s3.get_object(Bucket=dbucket, Key="k")["Body"].read() == b"secret"


# seed 002: "Your SSE-KMS configuration can only support 1 customer managed key per directory bucket for
# the lifetime of the bucket. ... After you specify a customer managed key for SSE-KMS, you can't
# override the customer managed key for the bucket's SSE-KMS configuration."
def test_one_customer_managed_key_for_lifetime(s3, kms, dbucket):
    a, b = new_key(kms), new_key(kms)
    put_default(s3, dbucket, "aws:kms", a["KeyId"])
    with pytest.raises(ClientError) as e:
        put_default(s3, dbucket, "aws:kms", b["KeyId"])
    assert_client_error(e, "InvalidArgument", 400, ONE_KEY_MSG)
    # The same key by its ARN is the same key.
    put_default(s3, dbucket, "aws:kms", a["Arn"])
    # Back to SSE-S3, then SSE-KMS again: still only key A.
    put_default(s3, dbucket, "AES256")
    assert rule_of(s3, dbucket)["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    with pytest.raises(ClientError) as e:
        put_default(s3, dbucket, "aws:kms", b["Arn"])
    assert_client_error(e, "InvalidArgument", 400, ONE_KEY_MSG)
    s3.delete_bucket_encryption(Bucket=dbucket)
    with pytest.raises(ClientError) as e:
        put_default(s3, dbucket, "aws:kms", b["KeyId"])
    assert_client_error(e, "InvalidArgument", 400, ONE_KEY_MSG)
    put_default(s3, dbucket, "aws:kms", a["KeyId"])


# seed 001: "For directory buckets, this header is not supported in this API operation. If you specify
# this header, the request fails with the HTTP status code 501 Not Implemented."
def test_expected_bucket_owner_not_implemented(s3, dbucket):
    with pytest.raises(ClientError) as e:
        put_default(s3, dbucket, "AES256", ExpectedBucketOwner=ACCOUNT)
    assert_client_error(e, "NotImplemented", 501)


# seed 002: "when you specify server-side encryption settings for new objects with SSE-KMS, you must make
# sure the encryption key is the same customer managed key that you specified for the directory bucket's
# default encryption configuration."
def test_put_object_key_must_be_the_bucket_key(s3, kms, dbucket):
    a, b = new_key(kms), new_key(kms)
    put_default(s3, dbucket, "aws:kms", a["KeyId"])
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=dbucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=b["Arn"])
    assert_client_error(e, "InvalidArgument", 400, SAME_KEY_MSG)
    ok = s3.put_object(Bucket=dbucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=a["Arn"])
    assert ok["SSEKMSKeyId"] == a["KeyId"] or ok["SSEKMSKeyId"] == a["Arn"]
    # seed 002: "you can override the encryption settings to SSE-S3 or to SSE-KMS only if you specified the
    # bucket's default encryption with SSE-KMS previously."
    sse_s3 = s3.put_object(Bucket=dbucket, Key="s3", Body=b"x", ServerSideEncryption="AES256")
    assert sse_s3["ServerSideEncryption"] == "AES256"


# seed 002: "you can override the encryption settings to SSE-S3 or to SSE-KMS only if you specified the
# bucket's default encryption with SSE-KMS previously."
def test_kms_override_needs_kms_default(s3, kms, dbucket):
    key = new_key(kms)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=dbucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=key["Arn"])
    assert_client_error(e, "InvalidArgument", 400, KMS_NEEDS_DEFAULT_MSG)
    # seed 001: "there are only two supported values for server-side encryption: AES256 and aws:kms."
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=dbucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms:dsse")
    assert_client_error(e, "InvalidArgument", 400, ALGORITHMS_MSG)


# seed 002: "S3 Bucket Keys aren't supported, when you copy SSE-KMS encrypted objects from general purpose
# buckets to directory buckets ... through CopyObject"
def test_copy_into_directory_bucket_uses_bucket_default_without_bucket_key(s3, kms, dbucket, bucket):
    key = new_key(kms)
    put_default(s3, dbucket, "aws:kms", key["KeyId"])
    s3.put_object(Bucket=bucket, Key="src", Body=b"copied")
    resp = s3.copy_object(Bucket=dbucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    h = sse_headers(resp)
    assert h["x-amz-server-side-encryption"] == "aws:kms"
    assert h.get("x-amz-server-side-encryption-bucket-key-enabled", "false") == "false"
    assert s3.get_object(Bucket=dbucket, Key="dst")["Body"].read() == b"copied"


# seed 000: "This operation is not supported for directory buckets"
def test_update_object_encryption_refused(s3, kms, dbucket):
    key = new_key(kms)
    s3.put_object(Bucket=dbucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.update_object_encryption(
            Bucket=dbucket, Key="k", ObjectEncryption={"SSEKMS": {"KMSKeyArn": key["Arn"]}}
        )
    assert_client_error(e, "NotImplemented", 501, UPDATE_REFUSED_MSG)


def rest_session(raw, bucket, headers=None):
    resp = raw("GET", bucket, query="session", headers=headers or {})
    assert resp.status == 200, resp
    c = resp.xml().find("Credentials")
    creds = {e.tag: e.text for e in c}
    assert set(creds) == {"SessionToken", "SecretAccessKey", "AccessKeyId", "Expiration"}
    return resp, Credentials(creds["AccessKeyId"], creds["SecretAccessKey"]), creds["SessionToken"]


# seed 002: "When you use CreateSession with the REST API to authenticate and authorize Zonal endpoint API
# requests except CopyObject and UploadPartCopy, you can override the encryption settings to SSE-S3 or to
# SSE-KMS only if you specified the bucket's default encryption with SSE-KMS previously."
def test_rest_create_session_override(raw, s3, kms, dbucket):
    key = new_key(kms)
    # No SSE-KMS default yet: a session asking for SSE-KMS is refused.
    resp = raw("GET", dbucket, query="session", headers={"x-amz-server-side-encryption": "aws:kms"})
    assert_raw_error(resp, "InvalidArgument", 400, KMS_NEEDS_DEFAULT_MSG)
    put_default(s3, dbucket, "aws:kms", key["KeyId"])
    resp, creds, token = rest_session(raw, dbucket, {"x-amz-server-side-encryption": "AES256"})
    assert resp.header("x-amz-server-side-encryption") == "AES256"
    put = raw("PUT", dbucket, "k", body=b"x", credentials=creds, headers={"x-amz-s3session-token": token})
    assert put.status == 200, put
    assert put.header("x-amz-server-side-encryption") == "AES256"
    # seed 002: "In the Zonal endpoint API calls (except CopyObject and UploadPartCopy) using the REST
    # API, you can't override the values of the encryption settings (x-amz-server-side-encryption, ...)
    # from the CreateSession request."
    put = raw(
        "PUT", dbucket, "k2", body=b"x", credentials=creds,
        headers={"x-amz-s3session-token": token, "x-amz-server-side-encryption": "aws:kms"},
    )
    assert_raw_error(put, "InvalidArgument", 400)
    # A session without override uses the bucket default: SSE-KMS with the bucket's key.
    resp, creds, token = rest_session(raw, dbucket)
    assert resp.header("x-amz-server-side-encryption") == "aws:kms"
    assert resp.header("x-amz-server-side-encryption-bucket-key-enabled") == "true"
    put = raw("PUT", dbucket, "k3", body=b"x", credentials=creds, headers={"x-amz-s3session-token": token})
    assert put.header("x-amz-server-side-encryption") == "aws:kms"


def test_session_token_bound_to_bucket_and_mode(raw, s3, dbucket):
    other = directory_name()
    s3.create_bucket(Bucket=other, CreateBucketConfiguration=directory_config())
    _, creds, token = rest_session(raw, dbucket, {"x-amz-create-session-mode": "ReadOnly"})
    h = {"x-amz-s3session-token": token}
    assert raw("GET", dbucket, query="list-type=2", credentials=creds, headers=h).status == 200
    # ReadOnly sessions cannot write.
    assert_raw_error(raw("PUT", dbucket, "k", body=b"x", credentials=creds, headers=h), "AccessDenied", 403)
    # The session is for its bucket only.
    assert_raw_error(raw("GET", other, query="list-type=2", credentials=creds, headers=h), "AccessDenied", 403)
    # Unknown tokens and the wrong secret are refused.
    bad = {"x-amz-s3session-token": "nope"}
    assert_raw_error(raw("GET", dbucket, query="list-type=2", credentials=creds, headers=bad), "AccessDenied", 403)
    resp = raw("GET", dbucket, query="list-type=2", headers=h)
    assert resp.status == 403, resp
    # A general purpose bucket name has no sessions.
    assert raw("GET", "not-a-directory-bucket", query="session").status == 400


def session_client(server):
    """A boto3 client left to its default auth choice: for a directory bucket behind a custom endpoint
    that is CreateSession (the fixtures' clients pin `s3v4`, which signs with the account keys)."""
    return server.client(signature_version=None)


# seed 002: "For Zonal endpoint (object-level) API operations except CopyObject and UploadPartCopy, you
# authenticate and authorize requests through CreateSession for low latency."
def test_boto3_signs_with_session_credentials(server):
    client = session_client(server)
    seen = []
    client.meta.events.register(
        "before-send.s3", lambda request, **kw: seen.append((request.url, dict(request.headers)))
    )
    name = directory_name()
    client.create_bucket(Bucket=name, CreateBucketConfiguration=directory_config())
    client.put_object(Bucket=name, Key="k", Body=b"x")
    assert client.get_object(Bucket=name, Key="k")["Body"].read() == b"x"
    print([u for u, _ in seen])
    assert seen[0][0].endswith(f"/{name}?session")
    assert b"/s3express/aws4_request" in seen[0][1]["Authorization"]
    later = [h for url, h in seen[1:]]
    assert later and all("x-amz-s3session-token" in h for h in later)
    assert all(b"/s3express/aws4_request" in h["Authorization"] for h in later)


# seed 002: "the encryption settings that you provide in the CreateMultipartUpload request must match the
# default encryption configuration of the destination bucket."
def test_multipart_upload_uses_bucket_key_and_default(s3, kms, dbucket):
    a, b = new_key(kms), new_key(kms)
    put_default(s3, dbucket, "aws:kms", a["KeyId"])
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=dbucket, Key="m", ServerSideEncryption="aws:kms", SSEKMSKeyId=b["KeyId"])
    assert_client_error(e, "InvalidArgument", 400, SAME_KEY_MSG)
    up = s3.create_multipart_upload(Bucket=dbucket, Key="m")
    assert up["ServerSideEncryption"] == "aws:kms"
    assert up["BucketKeyEnabled"] is True
    part = b"p" * (5 * 1024 * 1024)
    e1 = s3.upload_part(Bucket=dbucket, Key="m", UploadId=up["UploadId"], PartNumber=1, Body=part)["ETag"]
    e2 = s3.upload_part(Bucket=dbucket, Key="m", UploadId=up["UploadId"], PartNumber=2, Body=b"tail")["ETag"]
    s3.complete_multipart_upload(
        Bucket=dbucket, Key="m", UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
    )
    got = s3.get_object(Bucket=dbucket, Key="m")
    assert got["Body"].read() == part + b"tail"
    assert got["SSEKMSKeyId"] == a["Arn"] and got["BucketKeyEnabled"] is True


# seed 002: "If you specify x-amz-server-side-encryption:aws:kms, ... The value must match the default
# encryption context — the bucket Amazon Resource Name (ARN). An additional encryption context value is
# not supported."
def test_encryption_context_must_be_the_bucket_arn(s3, kms, dbucket):
    key = new_key(kms)
    put_default(s3, dbucket, "aws:kms", key["KeyId"])
    arn = f"arn:aws:s3:::{dbucket}"
    ok = s3.put_object(
        Bucket=dbucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms",
        SSEKMSEncryptionContext=b64_context({"aws:s3:arn": arn}),
    )
    assert ok["ServerSideEncryption"] == "aws:kms"
    for ctx in ({"aws:s3:arn": arn, "extra": "v"}, {"aws:s3:arn": f"{arn}/k"}):
        with pytest.raises(ClientError) as e:
            s3.put_object(
                Bucket=dbucket, Key="k", Body=b"x", ServerSideEncryption="aws:kms",
                SSEKMSEncryptionContext=b64_context(ctx),
            )
        assert_client_error(e, "InvalidArgument", 400, CONTEXT_MSG)


# seed 002: "If your object uses SSE-KMS, don't send encryption request headers for GET requests and HEAD
# requests, or you'll get an HTTP 400 BadRequest error."
def test_sse_headers_on_get_refused(s3, kms, dbucket, raw):
    key = new_key(kms)
    put_default(s3, dbucket, "aws:kms", key["KeyId"])
    s3.put_object(Bucket=dbucket, Key="k", Body=b"x")
    resp = raw("GET", dbucket, "k", headers={"x-amz-server-side-encryption": "aws:kms"})
    assert resp.status == 400, resp


# seed 002: "S3 Bucket Keys are always enabled for GET and PUT operations in a directory bucket and can't be
# disabled. S3 Bucket Keys aren't supported, when you copy SSE-KMS encrypted objects ... In this case,
# Amazon S3 makes a call to AWS KMS every time a copy request is made for a KMS-encrypted object."
def test_bucket_keys_save_kms_calls_but_copies_call_kms(server, s3, kms, dbucket):
    from test_bucket_keys_kms_calls import delta, kms_calls

    key = new_key(kms)
    put_default(s3, dbucket, "aws:kms", key["KeyId"], bucket_key=False)
    before = kms_calls(server)
    for i in range(20):
        s3.put_object(Bucket=dbucket, Key=f"k{i}", Body=b"x", BucketKeyEnabled=False)
    after = kms_calls(server)
    gdk = delta(after, before, "GenerateDataKey") + delta(after, before, "GenerateDataKeyWithoutPlaintext")
    assert gdk <= 2, after
    before = kms_calls(server)
    for i in range(3):
        s3.copy_object(Bucket=dbucket, Key=f"c{i}", CopySource={"Bucket": dbucket, "Key": "k0"})
    after = kms_calls(server)
    assert delta(after, before, "GenerateDataKey") == 3, after


# seed 001: "Directory bucket names must be unique in the chosen Zone" — ListDirectoryBuckets lists them,
# ListBuckets lists general purpose buckets only.
def test_list_directory_buckets(s3, dbucket, bucket):
    names = []
    token = None
    while True:
        kw = {"MaxDirectoryBuckets": 2}
        if token:
            kw["ContinuationToken"] = token
        page = s3.list_directory_buckets(**kw)
        names += [b["Name"] for b in page["Buckets"]]
        token = page.get("ContinuationToken")
        if not token:
            break
    assert dbucket in names and bucket not in names
    assert len(names) == len(set(names))
    general = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert bucket in general and dbucket not in general
