"""Key rotation that rewraps (issue 8, item 3) against a real `coffer dev`: `coffer admin key rotate
KEY --rewrap` rotates the KMS key, then a rotation job on the admin API moves every bucket key and
every object data key wrapped under the old material to the new one; `coffer admin key materials`
reports which material versions the stored objects still need.

Objects under the key with an S3 Bucket Key move by rewrapping their bucket key record once
(`via_bucket_key`, `bucket_keys_rewrapped`); the others by rewrapping their own data key
(`rewrapped`). Nothing is re-encrypted: every object reads back byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import harness
from conftest import unique_bucket
from sse_common import kms_client, new_key


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def coffer_admin(server, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`coffer admin ARGS` against the server's KMS API (S3 port) and admin listener."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFER_"))}
    env["COFFER_ACCESS_KEY_ID"] = server.access_key
    env["COFFER_SECRET_ACCESS_KEY"] = server.secret_key
    cmd = [
        str(server.binary),
        "admin",
        *args,
        "--endpoint",
        server.endpoint,
        "--admin-endpoint",
        server.admin_endpoint,
    ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def api(server, method: str, path: str, body: dict | None = None, auth: bool = True):
    """One admin API call; returns (status, JSON)."""
    host, port = server.admin_addr
    headers = {"Host": f"{host}:{port}", "Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = f"Bearer {server.access_key}:{server.secret_key}"
    data = json.dumps(body).encode() if body is not None else b""
    resp = harness.send_raw((host, port), method, path, headers, data)
    return resp.status, json.loads(resp.body)


def materials(server, key: str) -> dict:
    """`coffer admin key materials KEY --json`."""
    return json.loads(ok(coffer_admin(server, "key", "materials", key, "--json")))


def usage(report: dict) -> dict[int, tuple[int, int, bool]]:
    """{version: (envelopes, bucket keys, no longer needed)}."""
    return {m["Version"]: (m["Envelopes"], m["BucketKeys"], m["NoLongerNeeded"]) for m in report["Materials"]}


def table_rows(text: str, header: str) -> list[list[str]]:
    """The rows under the table whose header line starts with `header`, split on 2+ spaces."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append([c for c in line.split("  ") if c.strip()])
    return [[c.strip() for c in r] for r in rows]


def record(text: str) -> dict[str, str]:
    """A FIELD  VALUE table (the job summary) as a dict: the first value of each field."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("  ", 1)
        if len(parts) == 2 and parts[0].isupper():
            out.setdefault(parts[0].strip(), parts[1].strip())
    return out


def put_many(s3, bucket: str, prefix: str, n: int, **params) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        key = f"{prefix}{i:03d}"
        body = f"{key}:".encode() + os.urandom(300 + i)
        s3.put_object(Bucket=bucket, Key=key, Body=body, **params)
        out[key] = body
    return out


def read_back(s3, bucket: str, objects: dict[str, bytes], key_arn: str | None) -> None:
    for key, body in objects.items():
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body, (bucket, key)
        if key_arn is not None:
            assert got["SSEKMSKeyId"] == key_arn, (bucket, key, got["SSEKMSKeyId"])


def kms_params(key_arn: str, bucket_key: bool) -> dict:
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_arn, "BucketKeyEnabled": bucket_key}


# ---------------------------------------------------------------------------------------------
# rotate --rewrap over two buckets, with and without Bucket Keys
# ---------------------------------------------------------------------------------------------
def test_rotate_rewrap_moves_every_envelope_and_bucket_key_to_the_new_material(private_server, monkeypatch):
    # Small pages: the job crosses pages and buckets.
    monkeypatch.setenv("COFFER_JOBS_PAGE_SIZE", "7")
    monkeypatch.setenv("COFFER_JOBS_POLL_MS", "100")
    server = private_server()
    s3 = server.client()
    kms = kms_client(server)
    key = new_key(kms)
    arn = key["Arn"]
    other = new_key(kms)["Arn"]

    first, second = unique_bucket("rot"), unique_bucket("rot")
    for b in (first, second):
        s3.create_bucket(Bucket=b)
    direct = {
        first: put_many(s3, first, "direct/", 12, **kms_params(arn, False)),
        second: put_many(s3, second, "direct/", 5, **kms_params(arn, False)),
    }
    via_bk = {
        first: put_many(s3, first, "bk/", 9, **kms_params(arn, True)),
        second: put_many(s3, second, "bk/", 4, **kms_params(arn, True)),
    }
    # Not under the rotated key: the job leaves them alone.
    untouched = {
        first: put_many(s3, first, "sse-s3/", 3),
        second: put_many(s3, second, "other-key/", 3, **kms_params(other, True)),
    }
    n_direct = sum(len(v) for v in direct.values())
    n_bk = sum(len(v) for v in via_bk.values())
    for b in (first, second):
        head = s3.head_object(Bucket=b, Key="bk/000")
        assert head.get("BucketKeyEnabled") is True, head

    before = materials(server, arn)
    assert before["KeyArn"] == arn
    assert before["CurrentMaterialVersion"] == 1
    assert before["Unknown"] == 0
    (envelopes, bk_records, gone), = usage(before).values()
    assert envelopes == n_direct + n_bk and not gone
    assert bk_records >= 2  # at least one bucket key per bucket
    other_before = usage(materials(server, other))

    proc = coffer_admin(server, "key", "rotate", key["KeyId"], "--rewrap")
    out = ok(proc)
    assert "objects" in proc.stderr  # the progress (plain lines: stderr is not a terminal)

    # Three tables: the rotation, the job summary, the materials report.
    summary = record(out)
    assert summary["TYPE"] == "rotate", out
    assert summary["STATE"] == "completed", out
    assert summary["KEY"] == arn
    assert summary["TO MATERIAL"] == "2"
    assert summary["BUCKETS"] == "all"
    assert summary["REWRAPPED"] == str(n_direct), out
    assert summary["VIA BUCKET KEY"] == str(n_bk), out
    assert int(summary["BUCKET KEYS REWRAPPED"]) >= 1, out
    assert summary["FAILED"] == "0", out
    rows = table_rows(out, "VERSION")
    assert rows[0] == ["1", "0", "0", "no longer needed"], out
    assert rows[1][0] == "2" and rows[1][3] == "current", out
    assert rows[1][1] == str(n_direct + n_bk), out

    # The job as the admin API shows it.
    status, listing = api(server, "GET", "/admin/v1/jobs")
    assert status == 200
    (job,) = [j for j in listing["jobs"] if j["type"] == "rotate"]
    assert job["kind"] == {"rotate": {"key_arn": arn, "material_version": 2, "buckets": []}}
    c = job["counters"]
    assert c["rewrapped"] == n_direct, job
    assert c["via_bucket_key"] == n_bk, job
    assert c["bucket_keys_rewrapped"] >= 1, job
    assert c["failed"] == 0 and c["skipped"] == 0, job
    assert job["done"] == job["total"], job

    # Every object reads back byte for byte, still under the same key.
    for b in (first, second):
        read_back(s3, b, direct[b], arn)
        read_back(s3, b, via_bk[b], arn)
    read_back(s3, first, untouched[first], None)
    read_back(s3, second, untouched[second], other)

    after = materials(server, arn)
    assert after["CurrentMaterialVersion"] == 2
    assert after["Unknown"] == 0
    assert usage(after) == {1: (0, 0, True), 2: (n_direct + n_bk, bk_records, False)}
    # The other key's bucket key was not touched.
    assert usage(materials(server, other)) == other_before

    # `reencrypt list` and `show` know rotation jobs.
    listed = ok(coffer_admin(server, "reencrypt", "list"))
    row = next(r for r in table_rows(listed, "ID") if r[0] == job["id"])
    assert row[1:4] == ["rotate", "completed", "all"], listed
    shown = record(ok(coffer_admin(server, "reencrypt", "show", job["id"])))
    assert shown["VIA BUCKET KEY"] == str(n_bk)

    # A new object after the rewrap is under material 2; material 1 stays no longer needed.
    s3.put_object(Bucket=first, Key="late", Body=b"late", **kms_params(arn, False))
    assert usage(materials(server, arn))[1] == (0, 0, True)


# ---------------------------------------------------------------------------------------------
# A plain rotation keeps objects readable and the old material in use; --bucket, --no-wait
# ---------------------------------------------------------------------------------------------
def test_plain_rotation_keeps_old_material_in_use_then_rewrap_one_bucket(server):
    s3 = server.client()
    kms = kms_client(server)
    key = new_key(kms)
    arn = key["Arn"]
    bucket, elsewhere = unique_bucket("rot"), unique_bucket("rot")
    for b in (bucket, elsewhere):
        s3.create_bucket(Bucket=b)
    objects = {
        **put_many(s3, bucket, "d/", 4, **kms_params(arn, False)),
        **put_many(s3, bucket, "b/", 3, **kms_params(arn, True)),
    }
    outside = put_many(s3, elsewhere, "d/", 2, **kms_params(arn, False))

    out = ok(coffer_admin(server, "key", "rotate", arn))
    assert "Rotations" in out and "VERSION" not in out  # no job without --rewrap
    table = ok(coffer_admin(server, "key", "materials", arn))
    assert table_rows(table, "VERSION") == [
        ["1", str(len(objects) + len(outside)), "1", "in use"],
        ["2", "0", "0", "current"],
    ], table
    read_back(s3, bucket, objects, arn)
    read_back(s3, elsewhere, outside, arn)
    # New objects are wrapped under material 2.
    late = put_many(s3, bucket, "late/", 2, **kms_params(arn, False))
    assert usage(materials(server, arn))[2] == (2, 0, False)

    # --rewrap of one bucket, without waiting: the job is returned as created (material 3).
    started = json.loads(
        ok(coffer_admin(server, "key", "rotate", arn, "--rewrap", "--bucket", bucket, "--no-wait", "--json"))
    )
    job = started["Job"]
    assert job["type"] == "rotate"
    assert job["kind"]["rotate"] == {"key_arn": arn, "material_version": 3, "buckets": [bucket]}
    assert "Materials" not in started

    # Runner-dependent from here: the job moves `bucket` only.
    deadline = time.monotonic() + 120
    while job["state"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
        status, job = api(server, "GET", f"/admin/v1/jobs/{job['id']}")
        assert status == 200, job
    assert job["state"] == "completed", job
    assert job["counters"]["rewrapped"] == 4 + 2, job
    assert job["counters"]["via_bucket_key"] == 3, job
    report = usage(materials(server, arn))
    # `elsewhere` was not selected: material 1 is still needed for its two objects.
    assert report[1] == (len(outside), 0, False), report
    assert report[2] == (0, 0, True), report
    assert report[3] == (len(objects) + len(late), 1, False), report
    read_back(s3, bucket, {**objects, **late}, arn)
    read_back(s3, elsewhere, outside, arn)


# ---------------------------------------------------------------------------------------------
# The admin API refuses what it cannot do
# ---------------------------------------------------------------------------------------------
def test_rotate_and_materials_api_refuse_unknown_keys_and_unauthenticated_calls(server):
    arn = new_key(kms_client(server))["Arn"]
    status, body = api(server, "POST", "/admin/v1/jobs/rotate", {"key": arn}, auth=False)
    assert status == 401 and body["error"]
    status, body = api(server, "GET", f"/admin/v1/keys/{arn.replace('/', '%2F')}/materials", auth=False)
    assert status == 401 and body["error"]
    missing = arn.rsplit("/", 1)[0] + "/00000000-0000-4000-8000-000000000000"
    for bad in ({"key": missing}, {"key": "alias/no-such-alias"}, {"key": ""}, {"key": arn, "bucket": "x"}, {}):
        status, body = api(server, "POST", "/admin/v1/jobs/rotate", bad)
        assert status == 400, (bad, body)
        assert body["error"], bad
    status, body = api(server, "POST", "/admin/v1/jobs/rotate", {"key": arn, "buckets": ["no-such-bucket-x1"]})
    assert status == 404, body
    status, body = api(server, "GET", "/admin/v1/keys/alias%2Fno-such-alias/materials")
    assert status == 400 and body["error"], body
    # By alias: the report names the key's ARN.
    kms = kms_client(server)
    alias = "alias/" + unique_bucket("rot")
    kms.create_alias(AliasName=alias, TargetKeyId=arn)
    status, body = api(server, "GET", f"/admin/v1/keys/{alias.replace('/', '%2F')}/materials")
    assert status == 200, body
    assert body == {
        "KeyArn": arn,
        "CurrentMaterialVersion": 1,
        "Materials": [{"Version": 1, "Envelopes": 0, "BucketKeys": 0, "NoLongerNeeded": False}],
        "Unknown": 0,
    }
    proc = coffer_admin(server, "key", "materials", "alias/no-such-alias")
    assert proc.returncode != 0 and "HTTP 400" in proc.stderr, proc
