"""The aws CLI (v1, its own venv) against coffer: `aws s3` and `aws s3api`."""

from __future__ import annotations

import hashlib
import os

from checksums import etag
from conftest import unique_bucket

MiB = 1024 * 1024


def test_aws_s3_high_level_commands(aws, tmp_path):
    bucket = unique_bucket("cli")
    aws("s3", "mb", f"s3://{bucket}", json_out=False)
    listed = aws("s3", "ls", json_out=False).stdout
    assert bucket in listed

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * MiB))
    small = tmp_path / "small.txt"
    small.write_text("hello from the aws cli\n")
    aws("s3", "cp", str(big), f"s3://{bucket}/dir/big.bin", json_out=False)
    aws("s3", "cp", str(small), f"s3://{bucket}/small.txt", json_out=False)

    out = aws("s3", "ls", f"s3://{bucket}/", json_out=False).stdout
    assert "PRE dir/" in out
    assert "small.txt" in out
    out = aws("s3", "ls", "--recursive", f"s3://{bucket}/", json_out=False).stdout
    assert f"{20 * MiB} dir/big.bin" in out

    # 20 MiB is above the CLI's 8 MiB multipart threshold: a multipart ETag.
    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "dir/big.bin")
    assert head["ContentLength"] == 20 * MiB
    assert head["ETag"].endswith('-3"'), head["ETag"]
    assert head["ServerSideEncryption"] == "AES256"

    down = tmp_path / "down.bin"
    aws("s3", "cp", f"s3://{bucket}/dir/big.bin", str(down), json_out=False)
    assert hashlib.sha256(down.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()

    aws("s3", "rm", f"s3://{bucket}/small.txt", json_out=False)
    out = aws("s3", "ls", "--recursive", f"s3://{bucket}/", json_out=False).stdout
    assert "small.txt" not in out
    aws("s3", "rm", "--recursive", f"s3://{bucket}/", json_out=False)
    aws("s3", "rb", f"s3://{bucket}", json_out=False)
    assert bucket not in aws("s3", "ls", json_out=False).stdout


def test_aws_s3_sync(aws, tmp_path):
    bucket = unique_bucket("sync")
    aws("s3", "mb", f"s3://{bucket}", json_out=False)
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    files = {"a.txt": b"a" * 10, "nested/b.bin": os.urandom(70_000), "nested/c d.txt": b"space"}
    for name, data in files.items():
        (src / name).write_bytes(data)
    aws("s3", "sync", str(src), f"s3://{bucket}/tree", json_out=False)
    dst = tmp_path / "dst"
    aws("s3", "sync", f"s3://{bucket}/tree", str(dst), json_out=False)
    for name, data in files.items():
        assert (dst / name).read_bytes() == data


def test_aws_s3api_commands(aws, tmp_path):
    bucket = unique_bucket("api")
    created = aws("s3api", "create-bucket", "--bucket", bucket)
    assert created["Location"] == f"/{bucket}"
    body = tmp_path / "body.bin"
    data = os.urandom(123_456)
    body.write_bytes(data)
    put = aws(
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "k/obj.bin",
        "--body",
        str(body),
        "--content-type",
        "application/x-cli",
        "--metadata",
        "origin=cli,n=1",
    )
    assert put["ETag"] == etag(data)
    assert put["ServerSideEncryption"] == "AES256"

    head = aws("s3api", "head-object", "--bucket", bucket, "--key", "k/obj.bin")
    assert head["ContentLength"] == len(data)
    assert head["ContentType"] == "application/x-cli"
    assert head["Metadata"] == {"origin": "cli", "n": "1"}

    out = tmp_path / "out.bin"
    got = aws("s3api", "get-object", "--bucket", bucket, "--key", "k/obj.bin", str(out))
    assert got["ContentLength"] == len(data)
    assert got["ETag"] == etag(data)
    assert out.read_bytes() == data

    ranged = tmp_path / "ranged.bin"
    got = aws("s3api", "get-object", "--bucket", bucket, "--key", "k/obj.bin", "--range", "bytes=10-19", str(ranged))
    assert got["ContentRange"] == f"bytes 10-19/{len(data)}"
    assert ranged.read_bytes() == data[10:20]

    listed = aws("s3api", "list-objects-v2", "--bucket", bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["k/obj.bin"]
    assert listed["Contents"][0]["Size"] == len(data)

    missing = aws("s3api", "get-object", "--bucket", bucket, "--key", "nope", str(tmp_path / "x"), check=False)
    assert missing.returncode != 0
    assert "NoSuchKey" in missing.stderr

    aws("s3api", "delete-object", "--bucket", bucket, "--key", "k/obj.bin", json_out=False)
    listed = aws("s3api", "list-objects-v2", "--bucket", bucket)
    assert not listed.get("Contents")
    aws("s3api", "delete-bucket", "--bucket", bucket, json_out=False)
