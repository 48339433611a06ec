"""S3 Bucket Keys cut KMS traffic: KMS calls counted through the `Kms` trait.

The gateway counts every call it makes to its KMS by operation
(`coffer_s3_kms_calls_total{op}` on the admin listener). Issue 4: "1,000 uploads with Bucket
Keys make at most a handful of GenerateDataKey calls; without them, 1,000."
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from conftest import unique_bucket
from harness import http_get
from test_admin import parse_metrics

N = 1000


def kms_calls(server) -> dict[str, float]:
    resp = http_get(server.admin_endpoint + "/metrics")
    assert resp.status == 200, resp
    out: dict[str, float] = {}
    for name, labels, value in parse_metrics(resp.body.decode()):
        if name == "coffer_s3_kms_calls_total":
            op = labels.split('op="', 1)[1].split('"', 1)[0]
            out[op] = value
    return out


def delta(after: dict[str, float], before: dict[str, float], op: str) -> float:
    return after.get(op, 0.0) - before.get(op, 0.0)


def upload_many(s3, bucket: str, **extra) -> None:
    def put(i: int) -> None:
        r = s3.put_object(Bucket=bucket, Key=f"k{i:04d}", Body=b"x" * 64, **extra)
        assert r["ServerSideEncryption"] == "aws:kms"
        assert r.get("BucketKeyEnabled", False) == bool(extra.get("BucketKeyEnabled", False))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(put, range(N)))


def test_bucket_keys_make_a_handful_of_kms_calls_per_thousand_uploads(private_server):
    server = private_server()
    s3 = server.client()
    key_arn = server.ready["default_kms_key_arn"]

    # seed 004: "S3 Bucket Keys decrease the request traffic from Amazon S3 to AWS KMS and reduce
    # the cost of encryption."
    with_bk = unique_bucket("bk")
    s3.create_bucket(Bucket=with_bk)
    before = kms_calls(server)
    upload_many(s3, with_bk, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn, BucketKeyEnabled=True)
    after = kms_calls(server)
    gdk = delta(after, before, "GenerateDataKey") + delta(after, before, "GenerateDataKeyWithoutPlaintext")
    assert gdk <= 5, f"{gdk} data-key calls for {N} uploads with a Bucket Key: {after}"
    assert gdk >= 1, f"no KMS call at all: {after}"

    # The same uploads without Bucket Keys: one GenerateDataKey per object.
    without = unique_bucket("nobk")
    s3.create_bucket(Bucket=without)
    before = kms_calls(server)
    upload_many(s3, without, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_arn)
    after = kms_calls(server)
    assert delta(after, before, "GenerateDataKey") == N, after

    # Reading the Bucket-Key objects back works and costs at most a handful of Decrypt calls.
    before = kms_calls(server)
    for i in range(0, N, 100):
        body = s3.get_object(Bucket=with_bk, Key=f"k{i:04d}")["Body"].read()
        assert body == b"x" * 64
    after = kms_calls(server)
    assert delta(after, before, "Decrypt") <= 5, after
