"""Durability: data survives SIGKILL and clean restarts; concurrent PUTs killed mid-flight leave
every acknowledged object intact and no partially written object visible."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import time

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from checksums import etag, multipart_etag

MiB = 1024 * 1024


def populate(s3):
    """A bit of everything; returns what must be found again."""
    s3.create_bucket(Bucket="persist-a")
    s3.create_bucket(Bucket="persist-empty")
    s3.create_bucket(Bucket="persist-eu", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    objects = {}
    for key, size in [("zero", 0), ("one", 1), ("dir/mid", 300_000), ("dir/big", 3 * MiB + 5)]:
        data = os.urandom(size)
        s3.put_object(Bucket="persist-a", Key=key, Body=data, Metadata={"k": key}, ContentType="application/x-p")
        objects[key] = data
    parts = [os.urandom(5 * MiB), os.urandom(1000)]
    uid = s3.create_multipart_upload(Bucket="persist-a", Key="mp")["UploadId"]
    done = []
    for i, p in enumerate(parts, start=1):
        r = s3.upload_part(Bucket="persist-a", Key="mp", UploadId=uid, PartNumber=i, Body=p)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    s3.complete_multipart_upload(Bucket="persist-a", Key="mp", UploadId=uid, MultipartUpload={"Parts": done})
    objects["mp"] = b"".join(parts)
    # An upload still in progress survives too.
    pending = s3.create_multipart_upload(Bucket="persist-a", Key="pending")["UploadId"]
    s3.upload_part(Bucket="persist-a", Key="pending", UploadId=pending, PartNumber=1, Body=b"pending part")
    s3.delete_object(Bucket="persist-a", Key="one")
    del objects["one"]
    return objects, parts, pending


def verify(s3, objects, parts, pending):
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert {"persist-a", "persist-empty", "persist-eu"} <= names
    assert s3.get_bucket_location(Bucket="persist-eu")["LocationConstraint"] == "eu-west-1"
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="persist-a")["Contents"]]
    assert listed == sorted(objects)
    for key, data in objects.items():
        got = s3.get_object(Bucket="persist-a", Key=key)
        assert got["Body"].read() == data, key
        if key == "mp":
            assert got["ETag"] == multipart_etag(parts)
        else:
            assert got["ETag"] == etag(data)
            assert got["Metadata"] == {"k": key}
            assert got["ContentType"] == "application/x-p"
    assert s3.list_objects_v2(Bucket="persist-empty")["KeyCount"] == 0
    listed_parts = s3.list_parts(Bucket="persist-a", Key="pending", UploadId=pending)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in listed_parts] == [(1, etag(b"pending part"))]


def test_data_survives_sigkill(private_server):
    srv = private_server()
    objects, parts, pending = populate(srv.client())
    srv.restart(signal.SIGKILL)
    verify(srv.client(), objects, parts, pending)
    # And the restarted server takes writes.
    s3 = srv.client()
    s3.put_object(Bucket="persist-a", Key="after", Body=b"after restart")
    assert s3.get_object(Bucket="persist-a", Key="after")["Body"].read() == b"after restart"


def test_clean_shutdown_on_sigterm_and_restart(private_server):
    srv = private_server()
    objects, parts, pending = populate(srv.client())
    rc = srv.kill(signal.SIGTERM, timeout=15)
    assert rc == 0, f"coffer exited with {rc} on SIGTERM\n{srv.logs()}"
    srv.start()
    verify(srv.client(), objects, parts, pending)


def test_clean_shutdown_on_sigint(private_server):
    srv = private_server()
    srv.client().create_bucket(Bucket="sigint")
    rc = srv.kill(signal.SIGINT, timeout=15)
    assert rc == 0, f"coffer exited with {rc} on SIGINT\n{srv.logs()}"
    srv.start()
    srv.client().head_bucket(Bucket="sigint")


def test_credentials_and_data_dir_reused_across_restarts(private_server):
    srv = private_server()
    first_ready = dict(srv.ready)
    srv.restart(signal.SIGKILL)
    assert srv.ready["access_key_id"] == first_ready["access_key_id"] == srv.access_key
    assert srv.ready["region"] == "us-east-1"
    assert srv.ready["pid"] == srv.proc.pid


def test_concurrent_writers_killed_mid_flight(private_server):
    srv = private_server()
    bucket = "crash"
    srv.client().create_bucket(Bucket=bucket)
    client = srv.client(max_pool_connections=16, read_timeout=30)

    acked: dict[str, bytes] = {}  # key -> body of a PUT that returned 200
    attempted: dict[str, bytes] = {}  # key -> body sent (maybe committed, maybe not)
    lock = threading.Lock()
    stop = threading.Event()
    enough = threading.Event()
    target_acks = 200

    def writer(tid: int):
        rng = random.Random(tid)
        i = 0
        while not stop.is_set():
            key = f"t{tid}/obj-{i:06d}"
            i += 1
            size = rng.choice([0, 1, 1000, 64 * 1024, 256 * 1024 + 3, 1 * MiB + 17])
            body = rng.randbytes(size)
            with lock:
                attempted[key] = body
            try:
                resp = client.put_object(Bucket=bucket, Key=key, Body=body)
            except (ClientError, BotoCoreError, OSError):
                if stop.is_set():
                    return
                continue
            if resp["ResponseMetadata"]["HTTPStatusCode"] == 200:
                assert resp["ETag"] == etag(body)
                with lock:
                    acked[key] = body
                    if len(acked) >= target_acks:
                        enough.set()

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(8)]
    for t in threads:
        t.start()
    # Kill once enough writes were acknowledged (bounded: at most 20 s of load).
    enough.wait(timeout=20)
    with lock:
        acked_before_kill = len(acked)
    srv.kill(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert acked_before_kill > 0, f"no PUT succeeded before the kill\n{srv.logs()}"
    with lock:
        acked_snapshot = dict(acked)
        attempted_snapshot = dict(attempted)

    srv.start()
    s3 = srv.client()
    # 1. Every acknowledged PUT reads back byte-identical.
    for key, body in acked_snapshot.items():
        got = s3.get_object(Bucket=bucket, Key=key)
        data = got["Body"].read()
        assert hashlib.md5(data).hexdigest() == hashlib.md5(body).hexdigest(), f"acked {key} differs"
        assert got["ETag"] == etag(body)
    # 2. Every listed key reads back fully and is one of the bodies that was sent.
    listed = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        listed += page.get("Contents", [])
    listed_keys = {o["Key"] for o in listed}
    assert set(acked_snapshot) <= listed_keys
    for o in listed:
        key = o["Key"]
        assert key in attempted_snapshot, f"listed key {key} was never written"
        body = attempted_snapshot[key]
        assert o["Size"] == len(body), f"{key}: listed size {o['Size']} != {len(body)}"
        got = s3.get_object(Bucket=bucket, Key=key)
        data = got["Body"].read()
        assert len(data) == got["ContentLength"] == len(body), key
        assert data == body, f"{key}: partial or corrupt object"
    # 3. The store still works after the crash.
    s3.put_object(Bucket=bucket, Key="after-crash", Body=b"ok")
    assert s3.get_object(Bucket=bucket, Key="after-crash")["Body"].read() == b"ok"
