"""Bulk re-encryption jobs (issue 8, items 1 and 4) against a real `coffer dev`: the admin API on
the admin listener, `coffer admin reencrypt`, the job runner, its checkpoints and its resumption
after kill -9.

A job walks a bucket (or prefix), rewraps every eligible object's data key under a target KMS key
through the UpdateObjectEncryption code path, skips what that operation refuses (SSE-C, DSSE-KMS,
Object Lock) with a reason, and counts exactly: every selected object version once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import time

import pytest

import harness
from conftest import unique_bucket
from sse_common import allow_sse_c, customer_key, kms_client, new_key, ssec_params


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def api(server, method: str, path: str, body: dict | None = None, auth: str | None = "ok"):
    """One admin API call; returns (status, JSON)."""
    host, port = server.admin_addr
    headers = {"Host": f"{host}:{port}", "Content-Type": "application/json"}
    if auth == "ok":
        headers["Authorization"] = f"Bearer {server.access_key}:{server.secret_key}"
    elif auth is not None:
        headers["Authorization"] = auth
    data = json.dumps(body).encode() if body is not None else b""
    resp = harness.send_raw((host, port), method, path, headers, data)
    return resp.status, json.loads(resp.body)


def create_job(server, **spec) -> dict:
    status, job = api(server, "POST", "/admin/v1/jobs/reencrypt", spec)
    assert status == 201, job
    return job


def get_job(server, job_id: str) -> dict:
    status, job = api(server, "GET", f"/admin/v1/jobs/{job_id}")
    assert status == 200, job
    return job


def wait_job(server, job_id: str, pred, timeout: float = 120.0, what: str = "") -> dict:
    deadline = time.monotonic() + timeout
    job = get_job(server, job_id)
    while time.monotonic() < deadline:
        job = get_job(server, job_id)
        if pred(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {what}: {json.dumps(job)[:3000]}")


def put_many(s3, bucket: str, prefix: str, n: int, **params) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        key = f"{prefix}{i:04d}"
        body = f"{key}:".encode() + os.urandom(64)
        s3.put_object(Bucket=bucket, Key=key, Body=body, **params)
        out[key] = body
    return out


def coffer_cli(server, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFER_"))}
    env["COFFER_ACCESS_KEY_ID"] = server.access_key
    env["COFFER_SECRET_ACCESS_KEY"] = server.secret_key
    cmd = [str(server.binary), "admin", "reencrypt", *args, "--admin-endpoint", server.admin_endpoint]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def assert_under(s3, bucket: str, objects: dict[str, bytes], key_arn: str) -> None:
    for key, body in objects.items():
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "aws:kms", key
        assert head["SSEKMSKeyId"] == key_arn, (key, head["SSEKMSKeyId"])
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body, key


# ---------------------------------------------------------------------------------------------
# A mixed bucket, through the CLI
# ---------------------------------------------------------------------------------------------
def test_job_rewraps_eligible_objects_skips_the_rest_and_counts_exactly(server):
    s3 = server.client()
    kms = kms_client(server)
    old_key = new_key(kms)["Arn"]
    target = new_key(kms)["Arn"]
    bucket = unique_bucket("reenc")
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    allow_sse_c(s3, bucket)

    sse_s3 = put_many(s3, bucket, "data/s3-", 120)
    sse_kms = put_many(s3, bucket, "data/kms-", 80, ServerSideEncryption="aws:kms", SSEKMSKeyId=old_key)
    done_already = put_many(s3, bucket, "data/tgt-", 10, ServerSideEncryption="aws:kms", SSEKMSKeyId=target)
    ssec_key = customer_key()
    ssec = put_many(s3, bucket, "data/ssec-", 20, **ssec_params(ssec_key))
    dsse = put_many(s3, bucket, "data/dsse-", 20, ServerSideEncryption="aws:kms:dsse", SSEKMSKeyId=old_key)
    held = put_many(s3, bucket, "data/hold-", 2, ObjectLockLegalHoldStatus="ON")
    until = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    retained = put_many(
        s3,
        bucket,
        "data/ret-",
        2,
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=old_key,
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )
    outside = put_many(s3, bucket, "other/", 3)

    proc = coffer_cli(
        server, "start", "--bucket", bucket, "--prefix", "data/", "--target-key", target, "--wait"
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    # The summary table.
    summary = dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1)
        for line in proc.stdout.splitlines()
        if re.match(r"^[A-Z][A-Z ]+\s{2,}", line) and not line.startswith("SKIPPED OBJECT")
    )
    assert summary["STATE"] == "completed", proc.stdout
    total = 120 + 80 + 10 + 20 + 20 + 2 + 2
    assert summary["TOTAL"] == str(total)
    assert summary["DONE"] == str(total)
    assert summary["REWRAPPED"] == str(120 + 80)
    assert summary["ALREADY DONE"] == "10"
    assert summary["SKIPPED"] == "44"
    assert summary["FAILED"] == "0"
    assert "objects" in proc.stderr  # the progress bar

    job_id = summary["ID"]
    job = get_job(server, job_id)
    assert job["state"] == "completed"
    assert job["counters"] == {
        "rewrapped": 200,
        "already_done": 10,
        "skipped": 44,
        "failed": 0,
        "via_bucket_key": 0,
        "bucket_keys_rewrapped": 0,
    }
    assert job["skipped_by_reason"] == {
        "sse-c": 20,
        "dsse-kms": 20,
        "object-lock-legal-hold": 2,
        "object-lock-retention": 2,
    }
    listed = {(s["key"], s["reason"]) for s in job["skipped"]}
    assert listed == (
        {(k, "sse-c") for k in ssec}
        | {(k, "dsse-kms") for k in dsse}
        | {(k, "object-lock-legal-hold") for k in held}
        | {(k, "object-lock-retention") for k in retained}
    )

    assert_under(s3, bucket, {**sse_s3, **sse_kms, **done_already}, target)
    # What was skipped or outside the prefix is as it was.
    for key, body in ssec.items():
        got = s3.get_object(Bucket=bucket, Key=key, **ssec_params(ssec_key))
        assert got["Body"].read() == body
    for key in dsse:
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "aws:kms:dsse"
    for key in held:
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    for key in retained:
        assert s3.head_object(Bucket=bucket, Key=key)["SSEKMSKeyId"] == old_key
    for key, body in outside.items():
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256"
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body

    # `list` and `show` know it; /metrics counts what the runner did.
    listing = coffer_cli(server, "list")
    assert listing.returncode == 0 and job_id in listing.stdout, listing
    shown = coffer_cli(server, "show", job_id)
    assert shown.returncode == 0 and "completed" in shown.stdout
    metrics = harness.http_get(server.admin_endpoint + "/metrics").body.decode()
    rewrapped = re.search(r'^coffer_s3_job_objects_total\{outcome="rewrapped"\} (\d+)', metrics, re.M)
    assert rewrapped and int(rewrapped.group(1)) >= 200, metrics
    # The job gauge is set from the runner's listing, right after it finished the job: a
    # moment after the job's record says completed.
    deadline = time.monotonic() + 10
    while not re.search(r'^coffer_s3_jobs\{state="completed"\} [1-9]', metrics, re.M):
        assert time.monotonic() < deadline, metrics
        time.sleep(0.2)
        metrics = harness.http_get(server.admin_endpoint + "/metrics").body.decode()

    # A second job to the same target finds everything done: idempotent by target state.
    again = create_job(server, bucket=bucket, prefix="data/", target_key_arn=target)
    again = wait_job(server, again["id"], lambda j: j["state"] == "completed", what="completed")
    assert again["counters"] == {
        "rewrapped": 0,
        "already_done": 210,
        "skipped": 44,
        "failed": 0,
        "via_bucket_key": 0,
        "bucket_keys_rewrapped": 0,
    }


def test_admin_api_refuses_unauthenticated_and_invalid_requests(server):
    for auth in (None, "Bearer nobody:nothing", f"Bearer {server.access_key}:wrong", "Basic eA=="):
        status, body = api(server, "GET", "/admin/v1/jobs", auth=auth)
        assert status == 401, (auth, body)
        status, _ = api(server, "POST", "/admin/v1/jobs/reencrypt", {"bucket": "x"}, auth=auth)
        assert status == 401
    s3 = server.client()
    bucket = unique_bucket("reenc")
    s3.create_bucket(Bucket=bucket)
    target = new_key(kms_client(server))["Arn"]
    cases = [
        ({"bucket": bucket, "target_key_arn": "alias/x"}, 400),
        ({"bucket": bucket, "target_key_arn": target.replace(":000000000000:", ":111111111111:")}, 400),
        ({"bucket": bucket, "target_key_arn": target, "source": "sse-c"}, 400),
        ({"bucket": bucket, "target_key_arn": target, "unknown": 1}, 400),
        ({"bucket": "no-such-bucket-" + bucket, "target_key_arn": target}, 404),
    ]
    for body, want in cases:
        status, answer = api(server, "POST", "/admin/v1/jobs/reencrypt", body)
        assert status == want, (body, answer)
        assert answer["error"]
    status, _ = api(server, "GET", "/admin/v1/jobs/does-not-exist")
    assert status == 404
    status, _ = api(server, "POST", "/admin/v1/jobs/does-not-exist/pause")
    assert status == 404


# ---------------------------------------------------------------------------------------------
# Pause, resume, kill -9 mid-job, cancel (a slow runner: small pages with a delay between them)
# ---------------------------------------------------------------------------------------------
def test_pause_resume_crash_and_cancel(private_server, monkeypatch):
    monkeypatch.setenv("COFFER_JOBS_PAGE_SIZE", "10")
    monkeypatch.setenv("COFFER_JOBS_PAGE_DELAY_MS", "250")
    monkeypatch.setenv("COFFER_JOBS_LEASE_SECS", "3")
    monkeypatch.setenv("COFFER_JOBS_POLL_MS", "200")
    server = private_server()
    s3 = server.client()
    kms = kms_client(server)
    target = new_key(kms)["Arn"]
    bucket = unique_bucket("reenc")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    objects = put_many(s3, bucket, "k", 150)
    # New versions of 30 keys: the first 30 become older versions, which an all-versions job
    # takes too.
    newer = put_many(s3, bucket, "k", 30)
    total = 180

    job = create_job(server, bucket=bucket, source="sse-s3", all_versions=True, target_key_arn=target)
    job_id = job["id"]
    assert job["state"] == "pending"
    wait_job(server, job_id, lambda j: j["done"] >= 30, what="30 done")

    # Pause: the runner stops at its next checkpoint and releases the job.
    status, _ = api(server, "POST", f"/admin/v1/jobs/{job_id}/pause")
    assert status == 200
    paused = wait_job(server, job_id, lambda j: j["state"] == "paused" and j["owner"] is None, what="released")
    time.sleep(1.0)
    assert get_job(server, job_id)["done"] == paused["done"] < total

    status, resumed = api(server, "POST", f"/admin/v1/jobs/{job_id}/resume")
    assert status == 200 and resumed["state"] in ("pending", "running")
    before_crash = wait_job(server, job_id, lambda j: j["done"] >= paused["done"] + 30, what="progress")
    assert before_crash["done"] < total, "the job finished before the crash; make it slower"

    # kill -9 in the middle; the restarted gateway claims the job when the lease ends and
    # finishes it from the checkpoint.
    server.restart()
    s3, kms = server.client(), kms_client(server)  # new ports
    done = wait_job(server, job_id, lambda j: j["state"] == "completed", timeout=180, what="completed")
    c = done["counters"]
    assert done["total"] == total
    assert done["done"] == total, done
    assert c["skipped"] == 0 and c["failed"] == 0
    # A page's envelopes and its checkpoint are one Raft entry: the page in flight at the kill
    # was either committed whole or not at all, so every version counts as rewrapped once.
    assert c["rewrapped"] == total and c["already_done"] == 0, c

    # Every version, current and older, is under the target and reads back.
    assert_under(s3, bucket, newer, target)
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert len(versions) == total
    for v in versions:
        head = s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        assert head["SSEKMSKeyId"] == target, v
        body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
        assert body.startswith(v["Key"].encode() + b":")
    assert len(objects) == 150

    # Cancel: a job to another key stops where it is, for good.
    other = new_key(kms)["Arn"]
    job2 = create_job(server, bucket=bucket, all_versions=True, target_key_arn=other)
    wait_job(server, job2["id"], lambda j: j["done"] >= 20, what="20 done")
    status, cancelled = api(server, "POST", f"/admin/v1/jobs/{job2['id']}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled"
    settled = wait_job(server, job2["id"], lambda j: j["owner"] is None, what="released")
    time.sleep(1.0)
    final = get_job(server, job2["id"])
    assert final["done"] == settled["done"] < total
    assert final["state"] == "cancelled"
    status, answer = api(server, "POST", f"/admin/v1/jobs/{job2['id']}/resume")
    assert status == 409, answer
    # The objects it rewrapped are under the other key, the rest still under the first target.
    keys = [s3.head_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["SSEKMSKeyId"] for v in versions]
    assert keys.count(other) == final["counters"]["rewrapped"]
    assert keys.count(target) == total - final["counters"]["rewrapped"]
