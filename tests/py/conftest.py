"""Fixtures: one `coffer dev` for the session, fresh buckets, clients, raw requests, the aws CLI,
and private servers for tests that kill and restart the process.

On a failing test, the server's stderr written during that test is attached to the report.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import tempfile
from pathlib import Path

import pytest

import harness
from harness import CofferServer

harness.install_localhost_resolver()

_bucket_seq = itertools.count()
_RUN_ID = secrets.token_hex(3)
_servers_for_logs: list[CofferServer] = []


def unique_bucket(prefix: str = "bkt") -> str:
    return f"{prefix}-{_RUN_ID}-{next(_bucket_seq):04d}-{secrets.token_hex(3)}"


def _binary() -> Path:
    binary = harness.find_coffer_bin()
    if binary is None or not binary.exists():
        pytest.fail(
            "coffer binary not found: set COFFER_BIN or build it with `cargo build --bin coffer` "
            "(tests/run-all.sh does both)",
            pytrace=False,
        )
    return binary


def _new_server(tmp_root: Path, name: str) -> CofferServer:
    server = CofferServer(binary=_binary(), workdir=Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_root)))
    _servers_for_logs.append(server)
    error = None
    try:
        server.start()
    except harness.ServerStartError as e:
        error = str(e)
    if error is not None:
        server.kill()
        pytest.fail(error, pytrace=False)
    return server


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("coffer")


@pytest.fixture(scope="session")
def server(tmp_root) -> CofferServer:
    """The shared `coffer dev` process. Tests must not kill it: use `private_server` for that."""
    s = _new_server(tmp_root, "session")
    yield s
    s.cleanup()


@pytest.fixture
def private_server(tmp_root):
    """Factory of servers owned by one test (restart / kill tests). Stopped at teardown."""
    made: list[CofferServer] = []

    def make() -> CofferServer:
        s = _new_server(tmp_root, "private")
        made.append(s)
        return s

    yield make
    for s in made:
        s.cleanup()


@pytest.fixture(scope="session")
def s3(server):
    """Path-style boto3 client with the server's credentials."""
    return server.client()


@pytest.fixture(scope="session")
def s3v(server):
    """Virtual-host-style boto3 client (`http://<bucket>.localhost:PORT`)."""
    return server.client(style="virtual")


@pytest.fixture
def client_factory(server):
    return server.client


@pytest.fixture
def bucket(s3) -> str:
    """A fresh, empty bucket for one test."""
    name = unique_bucket()
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def raw(server):
    """raw(method, bucket=None, key=None, query='', headers=None, body=None, sign=True, ...)"""

    def call(method, bucket=None, key=None, **kw):
        return harness.raw_request(server, method, bucket, key, **kw)

    return call


@pytest.fixture(scope="session")
def aws_cli_path() -> str:
    path = harness.find_aws_cli()
    if not path:
        pytest.fail("aws CLI not found: set COFFER_AWS_CLI (tests/run-all.sh installs it)", pytrace=False)
    return path


@pytest.fixture
def aws(server, aws_cli_path, tmp_path):
    """aws(*args, json_out=True, check=True) runs the aws CLI against the session server."""

    def run(*args: str, check: bool = True, json_out: bool = True, timeout: float = 300):
        cmd = [aws_cli_path, "--endpoint-url", server.endpoint, "--region", harness.REGION, "--output", "json", *args]
        proc = subprocess.run(
            cmd,
            env=harness.aws_env(server),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"aws {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        if json_out and proc.returncode == 0 and proc.stdout.strip():
            return json.loads(proc.stdout)
        return proc

    return run


# ---------------------------------------------------------------------------------------------
# Server log on failure
# ---------------------------------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item._coffer_log_offsets = {id(s): (s.starts, s.log_size()) for s in _servers_for_logs}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        offsets = getattr(item, "_coffer_log_offsets", {})
        for s in _servers_for_logs:
            if not s.starts:
                continue
            starts, size = offsets.get(id(s), (0, 0))
            text = s.stderr_since(size if starts == s.starts else 0)
            if text.strip():
                report.sections.append((f"coffer stderr ({s.workdir.name}, start {s.starts})", text[-8000:]))
