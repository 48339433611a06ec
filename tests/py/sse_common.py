"""Helpers shared by the server-side-encryption tests (test_sse_*.py, test_update_object_encryption.py):
a boto3 KMS client on the S3 port, SSE-C keys, SigV2-signed raw requests, header access.

The KMS JSON API is served on `coffer dev`'s S3 port, routed by `X-Amz-Target`, so a plain boto3
`kms` client pointed at the S3 endpoint drives the same KMS the gateway uses.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from email.utils import formatdate

import boto3
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config

import harness

ACCOUNT = "000000000000"  # `coffer dev`'s default --account-id
AWS_MANAGED_S3_ALIAS = "alias/aws/s3"
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


def kms_client(server):
    """boto3 KMS client on the S3 endpoint (SigV4, service `kms`)."""
    session = boto3.session.Session(
        aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key, region_name=harness.REGION
    )
    cfg = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    return session.client("kms", endpoint_url=server.endpoint, config=cfg)


def default_key_arn(server) -> str:
    """ARN of the customer managed key `coffer dev` creates on first start (alias/coffer-default)."""
    return server.ready["default_kms_key_arn"]


def new_key(kms, alias: str | None = None) -> dict:
    """Creates a symmetric customer managed key (and an alias for it); returns its KeyMetadata."""
    meta = kms.create_key(Description="coffer sse test key")["KeyMetadata"]
    if alias:
        kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    return meta


def headers_of(resp: dict) -> dict:
    return resp["ResponseMetadata"]["HTTPHeaders"]


def sse_headers(resp: dict) -> dict:
    """The x-amz-server-side-encryption* response headers (lower-cased names)."""
    return {k: v for k, v in headers_of(resp).items() if k.startswith("x-amz-server-side-encryption")}


def b64_context(ctx: dict) -> str:
    return base64.b64encode(json.dumps(ctx).encode()).decode()


def decode_context(value: str) -> dict:
    return json.loads(base64.b64decode(value))


# ---------------------------------------------------------------------------------------------
# SSE-C
# ---------------------------------------------------------------------------------------------
def customer_key() -> bytes:
    return os.urandom(32)


def key_md5(key: bytes) -> str:
    return base64.b64encode(hashlib.md5(key).digest()).decode()


def ssec_params(key: bytes) -> dict:
    """boto3 parameters of an SSE-C request (botocore base64-encodes the key and adds its MD5)."""
    return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}


ALLOW_SSE_C_RULE = {"BlockedEncryptionTypes": {"EncryptionType": ["NONE"]}}


def allow_sse_c(s3, bucket: str) -> None:
    """Allows SSE-C writes to `bucket`: new general purpose buckets block them (S3 since April 2026;
    issue 7). The rule sets BlockedEncryptionTypes alone (as the S3 user guide's CLI example does), so
    the bucket's default encryption stays what it was."""
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [ALLOW_SSE_C_RULE]})


def copy_source_ssec_params(key: bytes) -> dict:
    return {"CopySourceSSECustomerAlgorithm": "AES256", "CopySourceSSECustomerKey": key}


def ssec_headers(key: bytes, md5: str | None = None, prefix: str = "x-amz-server-side-encryption-customer-") -> dict:
    """The SSE-C trio as raw headers (`prefix` selects the copy-source variant)."""
    return {
        f"{prefix}algorithm": "AES256",
        f"{prefix}key": base64.b64encode(key).decode(),
        f"{prefix}key-MD5": md5 if md5 is not None else key_md5(key),
    }


# ---------------------------------------------------------------------------------------------
# Signature Version 2
# ---------------------------------------------------------------------------------------------
def sigv2_request(server, method: str, bucket: str, key: str | None = None, query: str = "", headers=None, body=b""):
    """A request signed with AWS Signature Version 2 (`Authorization: AWS AKID:signature`),
    computed by botocore's HmacV1Auth so that it is a valid SigV2 request, not a garbled one."""
    host = f"127.0.0.1:{server.port}"
    path = "/" + bucket + (("/" + harness.quote_key(key)) if key is not None else "")
    path_qs = path + (f"?{query}" if query else "")
    hdrs = {"Host": host, "Date": formatdate(usegmt=True)}
    hdrs.update(headers or {})
    req = AWSRequest(method=method, url=f"http://{host}{path_qs}", data=body, headers=dict(hdrs))
    botocore.auth.HmacV1Auth(server.credentials).add_auth(req)
    sent = {k: v for k, v in req.headers.items()}
    assert sent["Authorization"].startswith(f"AWS {server.access_key}:"), sent
    return harness.send_raw(server.s3_addr, method, path_qs, sent, body)


def content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()
