"""The AWS KMS JSON 1.1 API (`X-Amz-Target: TrentService.*`, SigV4 service `kms`) on `coffer dev`'s
S3 port, driven by boto3's `kms` client, the aws CLI (`aws kms`) and `coffer admin`; and the same
API served alone by `coffer kms`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import harness
from harness import REGION
from conftest import unique_bucket

DEFAULT_ALIAS = "alias/coffer-default"
KEY_ARN = re.compile(r"^arn:aws:kms:us-east-1:\d{12}:key/[0-9a-f-]{36}$")


# ---------------------------------------------------------------------------------------------
# Clients and helpers
# ---------------------------------------------------------------------------------------------
def kms_client(endpoint: str, access_key: str, secret_key: str, validate: bool = True):
    session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=REGION)
    cfg = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        parameter_validation=validate,
    )
    return session.client("kms", endpoint_url=endpoint, config=cfg)


@pytest.fixture(scope="module")
def kms(server):
    """boto3 `kms` client pointed at the S3 endpoint of the session server."""
    return kms_client(server.endpoint, server.access_key, server.secret_key)


@pytest.fixture(scope="module")
def kms_raw(server):
    """The same without botocore's parameter validation, to reach the server's own checks."""
    return kms_client(server.endpoint, server.access_key, server.secret_key, validate=False)


def assert_kms_error(excinfo, name: str, status: int = 400) -> str:
    """Check a botocore ClientError against an AWS KMS exception; returns the message."""
    err = excinfo.value
    assert isinstance(err, ClientError), err
    got = err.response.get("Error", {})
    got_status = err.response["ResponseMetadata"]["HTTPStatusCode"]
    assert (got.get("Code"), got_status) == (name, status), f"expected {name}/{status}, got {got!r} {got_status}"
    return got.get("Message", "")


def new_key(kms, description: str = "test key") -> dict:
    meta = kms.create_key(Description=description)["KeyMetadata"]
    assert KEY_ARN.match(meta["Arn"]), meta
    return meta


def alias_arn(key_arn: str, alias: str) -> str:
    return key_arn.split(":key/")[0] + ":" + alias


def unique_alias(prefix: str = "t") -> str:
    return "alias/" + unique_bucket(prefix)


# ---------------------------------------------------------------------------------------------
# boto3
# ---------------------------------------------------------------------------------------------
def test_default_key_alias_exists(kms, server):
    meta = kms.describe_key(KeyId=DEFAULT_ALIAS)["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"
    assert meta["KeyManager"] == "CUSTOMER"
    assert meta["Arn"] == server.ready["default_kms_key_arn"]
    names = [a["AliasName"] for a in kms.list_aliases(KeyId=meta["KeyId"])["Aliases"]]
    assert names == [DEFAULT_ALIAS]


def test_create_and_describe_by_all_four_names(kms):
    meta = new_key(kms, "four names")
    assert meta["Description"] == "four names"
    assert meta["Enabled"] is True
    assert meta["KeyState"] == "Enabled"
    assert meta["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert meta["KeyManager"] == "CUSTOMER"
    alias = unique_alias("four")
    kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    for name in (meta["KeyId"], meta["Arn"], alias, alias_arn(meta["Arn"], alias)):
        got = kms.describe_key(KeyId=name)["KeyMetadata"]
        assert (got["KeyId"], got["Arn"]) == (meta["KeyId"], meta["Arn"]), name
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId="alias/does-not-exist-" + meta["KeyId"][:8])
    assert_kms_error(e, "NotFoundException")
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId="00000000-0000-4000-8000-000000000000")
    assert_kms_error(e, "NotFoundException")


def test_list_keys_pages(kms):
    made = {new_key(kms, f"page {i}")["KeyId"] for i in range(5)}
    seen: list[str] = []
    marker = None
    pages = 0
    while True:
        kw = {"Limit": 2}
        if marker:
            kw["Marker"] = marker
        page = kms.list_keys(**kw)
        pages += 1
        assert len(page["Keys"]) <= 2
        for k in page["Keys"]:
            assert KEY_ARN.match(k["KeyArn"]) and k["KeyArn"].endswith(k["KeyId"]), k
        seen.extend(k["KeyId"] for k in page["Keys"])
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        marker = page["NextMarker"]
    assert pages >= 3
    assert len(seen) == len(set(seen)), "a key was listed twice"
    assert made <= set(seen)
    # The paginator agrees.
    listed = [k["KeyId"] for p in kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 3}) for k in p["Keys"]]
    assert sorted(listed) == sorted(seen)


def test_aliases_create_update_list_delete(kms):
    a = new_key(kms, "alias a")
    b = new_key(kms, "alias b")
    alias = unique_alias("upd")
    kms.create_alias(AliasName=alias, TargetKeyId=a["Arn"])
    with pytest.raises(ClientError) as e:
        kms.create_alias(AliasName=alias, TargetKeyId=b["KeyId"])
    assert_kms_error(e, "AlreadyExistsException")
    entries = kms.list_aliases(KeyId=a["KeyId"])["Aliases"]
    assert [(x["AliasName"], x["TargetKeyId"]) for x in entries] == [(alias, a["KeyId"])]
    assert entries[0]["AliasArn"] == alias_arn(a["Arn"], alias)

    kms.update_alias(AliasName=alias, TargetKeyId=b["KeyId"])
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == b["KeyId"]
    assert kms.list_aliases(KeyId=a["KeyId"])["Aliases"] == []
    all_aliases = [x for p in kms.get_paginator("list_aliases").paginate() for x in p["Aliases"]]
    assert {x["AliasName"]: x.get("TargetKeyId") for x in all_aliases}[alias] == b["KeyId"]
    assert DEFAULT_ALIAS in {x["AliasName"] for x in all_aliases}

    kms.delete_alias(AliasName=alias)
    with pytest.raises(ClientError) as e:
        kms.describe_key(KeyId=alias)
    assert_kms_error(e, "NotFoundException")
    with pytest.raises(ClientError) as e:
        kms.delete_alias(AliasName=alias)
    assert_kms_error(e, "NotFoundException")
    # The key outlives its alias.
    assert kms.describe_key(KeyId=b["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_encrypt_decrypt_with_encryption_context(kms):
    key = new_key(kms)
    ctx = {"purpose": "test", "bucket": "b1"}
    out = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"attack at dawn", EncryptionContext=ctx)
    assert out["KeyId"] == key["Arn"]
    assert out["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    blob = out["CiphertextBlob"]
    assert b"attack at dawn" not in blob

    got = kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
    assert got["Plaintext"] == b"attack at dawn"
    assert got["KeyId"] == key["Arn"]
    # Naming the right key (any form) is fine; naming another is IncorrectKeyException.
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx, KeyId=key["KeyId"])["Plaintext"] == b"attack at dawn"
    other = new_key(kms)
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob, EncryptionContext=ctx, KeyId=other["KeyId"])
    assert_kms_error(e, "IncorrectKeyException")

    for wrong in ({}, {"purpose": "test"}, {"purpose": "test", "bucket": "b2"}, {**ctx, "extra": "x"}):
        with pytest.raises(ClientError) as e:
            kms.decrypt(CiphertextBlob=blob, EncryptionContext=wrong)
        assert_kms_error(e, "InvalidCiphertextException")
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=bytes(tampered), EncryptionContext=ctx)
    assert_kms_error(e, "InvalidCiphertextException")


def test_enable_disable(kms):
    key = new_key(kms)
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    kms.disable_key(KeyId=key["KeyId"])
    meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert (meta["KeyState"], meta["Enabled"]) == ("Disabled", False)
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=key["KeyId"], Plaintext=b"y")
    assert_kms_error(e, "DisabledException")
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob)
    assert_kms_error(e, "DisabledException")
    with pytest.raises(ClientError) as e:
        kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
    assert_kms_error(e, "DisabledException")

    kms.enable_key(KeyId=key["Arn"])
    meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert (meta["KeyState"], meta["Enabled"]) == ("Enabled", True)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_generate_data_key_and_without_plaintext(kms):
    key = new_key(kms)
    ctx = {"aws:s3:arn": "arn:aws:s3:::bucket/key"}
    dk = kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256", EncryptionContext=ctx)
    assert len(dk["Plaintext"]) == 32
    assert dk["KeyId"] == key["Arn"]
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == dk["Plaintext"]
    assert len(kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_128")["Plaintext"]) == 16
    assert len(kms.generate_data_key(KeyId=key["KeyId"], NumberOfBytes=64)["Plaintext"]) == 64
    with pytest.raises(ClientError) as e:
        kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256", NumberOfBytes=32)
    assert_kms_error(e, "ValidationException")

    bare = kms.generate_data_key_without_plaintext(KeyId=key["KeyId"], KeySpec="AES_256", EncryptionContext=ctx)
    assert "Plaintext" not in bare
    assert bare["KeyId"] == key["Arn"]
    assert len(kms.decrypt(CiphertextBlob=bare["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"]) == 32


def test_re_encrypt(kms):
    a = new_key(kms, "re-encrypt source")
    b = new_key(kms, "re-encrypt destination")
    blob = kms.encrypt(KeyId=a["KeyId"], Plaintext=b"moving", EncryptionContext={"k": "1"})["CiphertextBlob"]
    out = kms.re_encrypt(
        CiphertextBlob=blob,
        SourceEncryptionContext={"k": "1"},
        DestinationKeyId=b["KeyId"],
        DestinationEncryptionContext={"k": "2"},
    )
    assert (out["SourceKeyId"], out["KeyId"]) == (a["Arn"], b["Arn"])
    got = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"k": "2"})
    assert (got["Plaintext"], got["KeyId"]) == (b"moving", b["Arn"])
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext={"k": "1"})
    assert_kms_error(e, "InvalidCiphertextException")
    with pytest.raises(ClientError) as e:
        kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"k": "wrong"}, DestinationKeyId=b["KeyId"])
    assert_kms_error(e, "InvalidCiphertextException")


def test_rotation_keeps_old_ciphertext_readable(kms, kms_raw):
    key = new_key(kms, "rotation")
    kid = key["KeyId"]
    status = kms.get_key_rotation_status(KeyId=kid)
    assert status["KeyRotationEnabled"] is False
    old = kms.encrypt(KeyId=kid, Plaintext=b"before rotation")["CiphertextBlob"]

    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    status = kms.get_key_rotation_status(KeyId=kid)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 90
    assert "NextRotationDate" in status
    with pytest.raises(ClientError) as e:
        kms_raw.enable_key_rotation(KeyId=kid, RotationPeriodInDays=30)
    assert_kms_error(e, "ValidationException")

    assert kms.list_key_rotations(KeyId=kid)["Rotations"] == []
    assert kms.rotate_key_on_demand(KeyId=kid)["KeyId"] in (kid, key["Arn"])
    rotations = kms.list_key_rotations(KeyId=kid)["Rotations"]
    assert len(rotations) == 1, rotations
    assert rotations[0]["RotationType"] == "ON_DEMAND"

    new = kms.encrypt(KeyId=kid, Plaintext=b"after rotation")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"before rotation"
    assert kms.decrypt(CiphertextBlob=new)["Plaintext"] == b"after rotation"

    kms.disable_key_rotation(KeyId=kid)
    assert kms.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is False
    assert kms.decrypt(CiphertextBlob=old)["Plaintext"] == b"before rotation"


def test_schedule_and_cancel_deletion(kms, kms_raw):
    key = new_key(kms, "deletion")
    kid = key["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=b"doomed")["CiphertextBlob"]
    for days in (6, 31):
        with pytest.raises(ClientError) as e:
            kms_raw.schedule_key_deletion(KeyId=kid, PendingWindowInDays=days)
        assert_kms_error(e, "ValidationException")
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Enabled"

    before = time.time()
    out = kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    assert out["KeyId"] == key["Arn"]
    assert out["KeyState"] == "PendingDeletion"
    assert out["PendingWindowInDays"] == 7
    deletion = out["DeletionDate"].timestamp()
    assert before + 7 * 86400 - 120 <= deletion <= time.time() + 7 * 86400 + 120, out["DeletionDate"]
    meta = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert (meta["KeyState"], meta["Enabled"]) == ("PendingDeletion", False)
    with pytest.raises(ClientError) as e:
        kms.encrypt(KeyId=kid, Plaintext=b"x")
    assert_kms_error(e, "KMSInvalidStateException")
    with pytest.raises(ClientError) as e:
        kms.decrypt(CiphertextBlob=blob)
    assert_kms_error(e, "KMSInvalidStateException")
    with pytest.raises(ClientError) as e:
        kms.enable_key(KeyId=kid)
    assert_kms_error(e, "KMSInvalidStateException")

    assert kms.cancel_key_deletion(KeyId=kid)["KeyId"] == key["Arn"]
    meta = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert meta["KeyState"] == "Disabled"
    assert "DeletionDate" not in meta
    kms.enable_key(KeyId=kid)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"doomed"
    # The default window is 30 days.
    assert kms.schedule_key_deletion(KeyId=kid)["PendingWindowInDays"] == 30
    kms.cancel_key_deletion(KeyId=kid)


def test_generate_random(kms, kms_raw):
    a = kms.generate_random(NumberOfBytes=32)["Plaintext"]
    b = kms.generate_random(NumberOfBytes=32)["Plaintext"]
    assert len(a) == len(b) == 32 and a != b
    assert len(kms.generate_random(NumberOfBytes=1024)["Plaintext"]) == 1024
    for n in (0, 1025):
        with pytest.raises(ClientError) as e:
            kms_raw.generate_random(NumberOfBytes=n)
        assert_kms_error(e, "ValidationException")


def test_wrong_signature_and_unknown_access_key_are_refused(server):
    bad_secret = kms_client(server.endpoint, server.access_key, server.secret_key + "x")
    with pytest.raises(ClientError) as e:
        bad_secret.list_keys()
    assert_kms_error(e, "InvalidSignatureException")
    unknown = kms_client(server.endpoint, "AKIAUNKNOWNUNKNOWN00", server.secret_key)
    with pytest.raises(ClientError) as e:
        unknown.describe_key(KeyId=DEFAULT_ALIAS)
    assert_kms_error(e, "UnrecognizedClientException")


def test_s3_objects_use_keys_made_through_the_kms_api(kms, s3):
    """SSE-KMS with a key created and aliased over the KMS API; disabling it stops reads."""
    key = new_key(kms, "for s3")
    alias = unique_alias("s3")
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    bucket = unique_bucket("kmsapi")
    s3.create_bucket(Bucket=bucket)
    put = s3.put_object(Bucket=bucket, Key="o", Body=b"payload", ServerSideEncryption="aws:kms", SSEKMSKeyId=alias)
    assert put["SSEKMSKeyId"] == key["Arn"]
    assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"payload"
    kms.disable_key(KeyId=key["KeyId"])
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="o")
    assert e.value.response["Error"]["Code"] == "KMS.DisabledException"
    kms.enable_key(KeyId=key["KeyId"])
    assert s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"payload"


# ---------------------------------------------------------------------------------------------
# aws CLI
# ---------------------------------------------------------------------------------------------
def test_aws_cli_key_lifecycle(aws, tmp_path):
    meta = aws("kms", "create-key", "--description", "from the aws cli")["KeyMetadata"]
    kid = meta["KeyId"]
    assert meta["Description"] == "from the aws cli" and meta["KeyState"] == "Enabled"
    alias = unique_alias("cli")
    aws("kms", "create-alias", "--alias-name", alias, "--target-key-id", kid, json_out=False)
    assert aws("kms", "describe-key", "--key-id", alias)["KeyMetadata"]["Arn"] == meta["Arn"]
    listed = aws("kms", "list-aliases", "--key-id", kid)["Aliases"]
    assert [a["AliasName"] for a in listed] == [alias]
    assert kid in {k["KeyId"] for k in aws("kms", "list-keys")["Keys"]}

    (tmp_path / "plain.txt").write_bytes(b"secret from the cli\n")
    ct = aws(
        "kms", "encrypt", "--key-id", alias, "--plaintext", "fileb://plain.txt",
        "--encryption-context", "app=cli",
    )
    (tmp_path / "ct.bin").write_bytes(base64.b64decode(ct["CiphertextBlob"]))
    pt = aws("kms", "decrypt", "--ciphertext-blob", "fileb://ct.bin", "--encryption-context", "app=cli")
    assert base64.b64decode(pt["Plaintext"]) == b"secret from the cli\n"
    assert pt["KeyId"] == meta["Arn"]
    wrong = aws("kms", "decrypt", "--ciphertext-blob", "fileb://ct.bin", "--encryption-context", "app=other", check=False)
    assert wrong.returncode != 0 and "InvalidCiphertextException" in wrong.stderr, wrong.stderr

    dk = aws("kms", "generate-data-key", "--key-id", kid, "--key-spec", "AES_256")
    assert len(base64.b64decode(dk["Plaintext"])) == 32

    aws("kms", "disable-key", "--key-id", kid, json_out=False)
    refused = aws("kms", "encrypt", "--key-id", kid, "--plaintext", "fileb://plain.txt", check=False)
    assert refused.returncode != 0 and "DisabledException" in refused.stderr, refused.stderr
    aws("kms", "enable-key", "--key-id", kid, json_out=False)

    aws("kms", "enable-key-rotation", "--key-id", kid, json_out=False)
    assert aws("kms", "get-key-rotation-status", "--key-id", kid)["KeyRotationEnabled"] is True
    aws("kms", "rotate-key-on-demand", "--key-id", kid)
    assert len(aws("kms", "list-key-rotations", "--key-id", kid)["Rotations"]) == 1
    pt = aws("kms", "decrypt", "--ciphertext-blob", "fileb://ct.bin", "--encryption-context", "app=cli")
    assert base64.b64decode(pt["Plaintext"]) == b"secret from the cli\n"

    bad = aws("kms", "schedule-key-deletion", "--key-id", kid, "--pending-window-in-days", "5", check=False)
    assert bad.returncode != 0 and "ValidationException" in bad.stderr, bad.stderr
    sched = aws("kms", "schedule-key-deletion", "--key-id", kid, "--pending-window-in-days", "7")
    assert sched["KeyState"] == "PendingDeletion"
    assert aws("kms", "describe-key", "--key-id", kid)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    aws("kms", "cancel-key-deletion", "--key-id", kid)
    assert aws("kms", "describe-key", "--key-id", kid)["KeyMetadata"]["KeyState"] == "Disabled"

    aws("kms", "delete-alias", "--alias-name", alias, json_out=False)
    assert aws("kms", "list-aliases", "--key-id", kid)["Aliases"] == []
    random = aws("kms", "generate-random", "--number-of-bytes", "16")
    assert len(base64.b64decode(random["Plaintext"])) == 16


# ---------------------------------------------------------------------------------------------
# coffer admin
# ---------------------------------------------------------------------------------------------
def admin_env(access_key: str | None, secret_key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFER_"))}
    if access_key is not None:
        env["COFFER_ACCESS_KEY_ID"] = access_key
        env["COFFER_SECRET_ACCESS_KEY"] = secret_key
    return env


def run_admin(endpoint: str, *args: str, env: dict[str, str], check: bool = True, cwd: Path | None = None):
    cmd = [str(harness.find_coffer_bin()), "admin", "--endpoint", endpoint, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=cwd)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@pytest.fixture
def admin(server):
    """admin(*args, json_out=False, check=True): `coffer admin` against the session server."""

    def run(*args: str, json_out: bool = False, check: bool = True):
        extra = ["--json"] if json_out else []
        proc = run_admin(server.endpoint, *args, *extra, env=admin_env(server.access_key, server.secret_key), check=check)
        if json_out and proc.returncode == 0:
            return json.loads(proc.stdout)
        return proc

    return run


def record(text: str) -> dict[str, str]:
    """Parse a `FIELD  VALUE` table; the values must start in one column."""
    lines = [l for l in text.splitlines() if l.strip()]
    starts = set()
    out = {}
    for l in lines:
        m = re.match(r"^(\S+)(\s{2,})(.*)$", l)
        assert m, f"not a FIELD  VALUE line: {l!r}\n{text}"
        out[m.group(1)] = m.group(3)
        starts.add(len(m.group(1)) + len(m.group(2)))
    assert len(starts) == 1, f"values not aligned:\n{text}"
    return out


def rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """Parse a table with a header line, cutting at the header's column starts."""
    lines = [l for l in text.splitlines() if l.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"(?:(?<=\s\s)|^)\S", header)]
    names = [header[s:e].strip() for s, e in zip(starts, starts[1:] + [None])]
    parsed = []
    for l in lines[1:]:
        cells = [l[s:e].strip() if s < len(l) else "" for s, e in zip(starts, starts[1:] + [None])]
        # A cell must not spill into the next column.
        for s in starts[1:]:
            assert s >= len(l) or l[s - 1] == " ", f"column at {s} not aligned in {l!r}\n{text}"
        parsed.append(dict(zip(names, cells)))
    return names, parsed


def test_admin_key_lifecycle_table_and_json(admin):
    created = admin("key", "create", "--description", "made by coffer admin", json_out=True)
    kid = created["KeyId"]
    assert KEY_ARN.match(created["Arn"]) and created["KeyState"] == "Enabled"
    assert created["Description"] == "made by coffer admin"

    alias = unique_alias("adm")
    out = record(admin("alias", "create", alias.removeprefix("alias/"), kid).stdout)
    assert out["AliasName"] == alias and out["TargetKeyId"] == kid

    desc = record(admin("key", "describe", alias).stdout)
    assert desc["KeyId"] == kid
    assert desc["KeyState"] == "Enabled"
    assert desc["KeyManager"] == "CUSTOMER"
    assert desc["Description"] == "made by coffer admin"
    assert desc["Aliases"] == alias

    names, listed = rows(admin("key", "list").stdout)
    assert names == ["KEY ID", "STATE", "MANAGER", "ALIASES", "DESCRIPTION"]
    mine = [r for r in listed if r["KEY ID"] == kid]
    assert mine == [
        {"KEY ID": kid, "STATE": "Enabled", "MANAGER": "CUSTOMER", "ALIASES": alias, "DESCRIPTION": "made by coffer admin"}
    ]
    assert any(DEFAULT_ALIAS in r["ALIASES"].split(",") for r in listed)
    as_json = admin("key", "list", json_out=True)
    assert {k["KeyId"]: k["Aliases"] for k in as_json}[kid] == [alias]

    names, aliases = rows(admin("alias", "list").stdout)
    assert names == ["ALIAS NAME", "TARGET KEY ID", "ALIAS ARN"]
    assert {"ALIAS NAME": alias, "TARGET KEY ID": kid, "ALIAS ARN": alias_arn(created["Arn"], alias)} in aliases
    assert [a["AliasName"] for a in admin("alias", "list", "--key", kid, json_out=True)] == [alias]

    assert record(admin("key", "disable", kid).stdout)["KeyState"] == "Disabled"
    assert admin("key", "enable", kid, json_out=True)["KeyState"] == "Enabled"

    rotated = admin("key", "rotate", kid, json_out=True)
    assert len(rotated["Rotations"]) == 1 and rotated["Rotations"][0]["RotationType"] == "ON_DEMAND"
    assert record(admin("key", "rotate", kid).stdout)["Rotations"] == "2"

    bad = admin("key", "schedule-deletion", kid, "--days", "3", check=False)
    assert bad.returncode != 0
    assert "ValidationException" in bad.stderr, bad.stderr
    assert bad.stdout == ""
    sched = record(admin("key", "schedule-deletion", kid, "--days", "7").stdout)
    assert sched["KeyState"] == "PendingDeletion" and sched["PendingWindowInDays"] == "7"
    assert admin("key", "describe", kid, json_out=True)["PendingDeletionWindowInDays"] == 7
    assert admin("key", "cancel-deletion", kid, json_out=True)["KeyState"] == "Disabled"

    deleted = admin("alias", "delete", alias, json_out=True)
    assert deleted == {"AliasName": alias, "Deleted": True}
    assert admin("alias", "list", "--key", kid, json_out=True) == []


def test_admin_errors_name_the_aws_exception(admin, server):
    missing = admin("key", "describe", "alias/no-such-alias-anywhere", check=False)
    assert missing.returncode != 0
    assert "NotFoundException" in missing.stderr, missing.stderr
    dup = admin("alias", "create", DEFAULT_ALIAS, server.ready["default_kms_key_arn"], check=False)
    assert dup.returncode != 0 and "AlreadyExistsException" in dup.stderr, dup.stderr

    wrong = run_admin(
        server.endpoint, "key", "list", env=admin_env(server.access_key, server.secret_key + "x"), check=False
    )
    assert wrong.returncode != 0 and "InvalidSignatureException" in wrong.stderr, wrong.stderr
    assert server.secret_key not in wrong.stderr


def test_admin_credentials_from_aws_env_and_data_dir(server, tmp_path):
    env = admin_env(None, None)
    env["AWS_ACCESS_KEY_ID"] = server.access_key
    env["AWS_SECRET_ACCESS_KEY"] = server.secret_key
    out = run_admin(server.endpoint, "key", "describe", DEFAULT_ALIAS, "--json", env=env)
    assert json.loads(out.stdout)["Arn"] == server.ready["default_kms_key_arn"]

    data = tmp_path / "data"
    data.mkdir()
    (data / "credentials.json").write_text(
        json.dumps({"access_key_id": server.access_key, "secret_access_key": server.secret_key})
    )
    out = run_admin(server.endpoint, "--data-dir", str(data), "key", "describe", DEFAULT_ALIAS, "--json", env=admin_env(None, None))
    assert json.loads(out.stdout)["Arn"] == server.ready["default_kms_key_arn"]

    none = run_admin(server.endpoint, "--data-dir", str(tmp_path / "empty"), "key", "list", env=admin_env(None, None), check=False)
    assert none.returncode != 0 and "no credentials" in none.stderr, none.stderr


# ---------------------------------------------------------------------------------------------
# `coffer kms`: the same API served alone
# ---------------------------------------------------------------------------------------------
class KmsRole:
    """`coffer kms` on port 0 with a ready file, logs in its work directory."""

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = ()):
        self.workdir = workdir
        self.extra_args = list(extra_args)
        self.access_key = harness.random_access_key()
        self.secret_key = harness.random_secret_key()
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        ready_file = self.workdir / "kms-ready.json"
        if ready_file.exists():
            ready_file.unlink()
        env = admin_env(self.access_key, self.secret_key)
        cmd = [
            str(harness.find_coffer_bin()), "kms", "--data-dir", str(self.workdir / "data"),
            "--grpc-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--ready-file", str(ready_file),
            *self.extra_args,
        ]
        with open(self.workdir / f"kms.{self.starts}.out", "wb") as out, open(self.workdir / f"kms.{self.starts}.err", "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + harness.READY_DEADLINE_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"coffer kms exited {self.proc.returncode}:\n{self.stderr()}")
            try:
                self.ready = json.loads(ready_file.read_text())
                return
            except (OSError, json.JSONDecodeError):
                time.sleep(0.02)
        raise AssertionError(f"coffer kms not ready:\n{self.stderr()}")

    def stderr(self) -> str:
        return (self.workdir / f"kms.{self.starts}.err").read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("coffer kms did not stop within 15 s of SIGTERM")
        return self.proc.returncode

    @property
    def endpoint(self) -> str:
        return f"http://{self.ready['http']}"


@pytest.fixture
def kms_role(tmp_path):
    made: list[KmsRole] = []

    def make(*extra_args: str) -> KmsRole:
        role = KmsRole(tmp_path / f"kms-{len(made)}", extra_args)
        role.workdir.mkdir()
        made.append(role)
        return role

    yield make
    for role in made:
        role.stop(signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def moto(tmp_path):
    """moto's KMS emulator (`moto_server` from the test venv) on a free loopback port."""
    binary = Path(sys.executable).parent / "moto_server"
    if not binary.exists():
        binary = Path(shutil.which("moto_server") or "moto_server")
    proc = None
    for _ in range(3):
        port = free_port()
        log = open(tmp_path / "moto.log", "wb")
        proc = subprocess.Popen([str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        if proc.poll() is None:
            break
    assert proc is not None and proc.poll() is None, (tmp_path / "moto.log").read_text(errors="replace")
    yield f"http://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def test_kms_role_serves_the_json_api_and_keeps_keys(kms_role):
    kms_role = kms_role()
    kms_role.start()
    assert set(kms_role.ready) >= {"grpc", "http", "default_kms_key_arn"}, kms_role.ready
    assert kms_role.ready["grpc"] != kms_role.ready["http"]
    kms = kms_client(kms_role.endpoint, kms_role.access_key, kms_role.secret_key)
    default = kms.describe_key(KeyId=DEFAULT_ALIAS)["KeyMetadata"]
    assert default["Arn"] == kms_role.ready["default_kms_key_arn"]
    key = new_key(kms, "on coffer kms")
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"kept", EncryptionContext={"a": "b"})["CiphertextBlob"]

    env = admin_env(kms_role.access_key, kms_role.secret_key)
    out = run_admin(kms_role.endpoint, "key", "describe", key["KeyId"], "--json", env=env)
    assert json.loads(out.stdout)["Description"] == "on coffer kms"
    with pytest.raises(ClientError) as e:
        kms_client(kms_role.endpoint, kms_role.access_key, kms_role.secret_key + "x").list_keys()
    assert_kms_error(e, "InvalidSignatureException")

    # SIGTERM is a clean exit; a restart on the same data directory has the same keys.
    assert kms_role.stop(signal.SIGTERM) == 0
    kms_role.start()
    assert kms_role.ready["default_kms_key_arn"] == default["Arn"]
    kms = kms_client(kms_role.endpoint, kms_role.access_key, kms_role.secret_key)
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"kept"
    aliases = [a["AliasName"] for a in kms.list_aliases(KeyId=default["KeyId"])["Aliases"]]
    assert aliases == [DEFAULT_ALIAS]


def test_kms_role_with_an_aws_kms_backend_config(kms_role, moto, tmp_path):
    """`--backend-config` picks the aws-kms backend (here moto's emulator); the role serves it."""
    cfg = tmp_path / "backend.json"
    cfg.write_text(
        json.dumps(
            {
                "type": "aws-kms",
                "endpoint": moto,
                "region": REGION,
                "access_key_id": "testing",
                "secret_access_key": "testing",
            }
        )
    )
    role = kms_role("--backend-config", str(cfg))
    role.start()
    kms = kms_client(role.endpoint, role.access_key, role.secret_key)
    default = kms.describe_key(KeyId=DEFAULT_ALIAS)["KeyMetadata"]
    assert default["Arn"] == role.ready["default_kms_key_arn"]
    # The key lives in the emulator: moto answers for it directly too.
    upstream = kms_client(moto, "testing", "testing")
    assert upstream.describe_key(KeyId=DEFAULT_ALIAS)["KeyMetadata"]["Arn"] == default["Arn"]

    key = new_key(kms, "through coffer kms into moto")
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"via moto", EncryptionContext={"x": "y"})["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"x": "y"})["Plaintext"] == b"via moto"
    out = run_admin(role.endpoint, "key", "list", "--json", env=admin_env(role.access_key, role.secret_key))
    assert key["KeyId"] in {k["KeyId"] for k in json.loads(out.stdout)}
