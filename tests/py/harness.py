"""Process and client plumbing for the pytest suite: start `coffer dev`, build boto3 clients, make
raw SigV4-signed requests (for the errors an SDK hides), run the aws CLI.

The server is started exactly as tests/common/process.rs does (STYLE.md point 12): port 0 for
every listener, `--ready-file`, a deadline instead of sleeps, logs kept in the data directory.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator
from unittest import mock
from urllib.parse import quote

import boto3
from botocore.exceptions import ClientError
import botocore.auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

REGION = "us-east-1"
READY_DEADLINE_S = 30.0
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_coffer_bin() -> Path | None:
    """COFFER_BIN, else the debug binary in CARGO_TARGET_DIR / the default cache / ./target."""
    candidates = []
    if os.environ.get("COFFER_BIN"):
        return Path(os.environ["COFFER_BIN"])
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "coffer")
    candidates.append(Path.home() / ".cache" / "coffer-target" / "debug" / "coffer")
    candidates.append(REPO_ROOT / "target" / "debug" / "coffer")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None


def random_access_key() -> str:
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def random_secret_key() -> str:
    alphabet = string.ascii_letters + string.digits + "+/"
    return "".join(secrets.choice(alphabet) for _ in range(40))


class ServerStartError(RuntimeError):
    pass


@dataclass
class CofferServer:
    """One `coffer dev` process on its own data directory; restartable on the same directory."""

    binary: Path
    workdir: Path
    access_key: str = field(default_factory=random_access_key)
    secret_key: str = field(default_factory=random_secret_key)
    proc: subprocess.Popen | None = None
    ready: dict = field(default_factory=dict)
    starts: int = 0

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def ready_file(self) -> Path:
        return self.workdir / "ready.json"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / f"stdout.{self.starts}.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / f"stderr.{self.starts}.log"

    # -- addresses ---------------------------------------------------------------------------
    @property
    def s3_addr(self) -> tuple[str, int]:
        host, port = self.ready["s3"].rsplit(":", 1)
        return host, int(port)

    @property
    def admin_addr(self) -> tuple[str, int]:
        host, port = self.ready["admin"].rsplit(":", 1)
        return host, int(port)

    @property
    def endpoint(self) -> str:
        host, port = self.s3_addr
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return self.s3_addr[1]

    @property
    def admin_endpoint(self) -> str:
        host, port = self.admin_addr
        return f"http://{host}:{port}"

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.access_key, self.secret_key)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.ready_file.exists():
            self.ready_file.unlink()
        self.starts += 1
        env = dict(os.environ)
        env["COFFER_ACCESS_KEY_ID"] = self.access_key
        env["COFFER_SECRET_ACCESS_KEY"] = self.secret_key
        env.setdefault("RUST_BACKTRACE", "1")
        cmd = [
            str(self.binary),
            "dev",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--ready-file",
            str(self.ready_file),
        ]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=self.workdir
            )
        self._wait_ready(cmd)

    def _wait_ready(self, cmd: list[str]) -> None:
        deadline = time.monotonic() + READY_DEADLINE_S
        last_error = "ready file not written"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerStartError(
                    f"coffer exited with status {rc} before it was ready\n{' '.join(cmd)}\n{self.logs()}"
                )
            if self.ready_file.exists():
                try:
                    ready = json.loads(self.ready_file.read_text())
                    if "s3" in ready and "admin" in ready:
                        self.ready = ready
                        return
                    last_error = f"ready file lacks s3/admin: {ready!r}"
                except (json.JSONDecodeError, OSError) as e:  # written but not complete yet
                    last_error = f"ready file not parseable yet: {e}"
            time.sleep(0.02)
        self.kill()
        raise ServerStartError(
            f"coffer not ready after {READY_DEADLINE_S}s ({last_error})\n{' '.join(cmd)}\n{self.logs()}"
        )

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def stop(self) -> None:
        """Teardown: SIGTERM (clean shutdown), SIGKILL if that takes too long."""
        self.kill(signal.SIGTERM, timeout=10.0)

    def restart(self, sig: int = signal.SIGKILL) -> None:
        """Kill the process (SIGKILL by default) and start again on the same data directory."""
        self.kill(sig)
        self.start()

    def logs(self, tail: int = 200) -> str:
        out = []
        for p in (self.stdout_path, self.stderr_path):
            try:
                lines = p.read_text(errors="replace").splitlines()
            except OSError:
                continue
            out.append(f"----- {p.name} (last {tail} lines) -----")
            out.extend(lines[-tail:])
        return "\n".join(out)

    def log_size(self) -> int:
        try:
            return self.stderr_path.stat().st_size
        except OSError:
            return 0

    def stderr_since(self, offset: int, limit: int = 20000) -> str:
        try:
            with open(self.stderr_path, "rb") as f:
                f.seek(offset)
                data = f.read()
        except OSError:
            return ""
        text = data.decode(errors="replace")
        return text[-limit:]

    def cleanup(self) -> None:
        """Stop and drop the data directory; the logs stay next to it for post-mortems."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- clients -----------------------------------------------------------------------------
    def client(
        self,
        style: str = "path",
        trailer: bool = False,
        credentials: tuple[str, str] | None = None,
        **config: object,
    ):
        return make_client(self, style=style, trailer=trailer, credentials=credentials, **config)


# ---------------------------------------------------------------------------------------------
# *.localhost resolution: RFC 6761 reserves it for loopback; glibc here does not resolve
# `bucket.localhost`, so virtual-host-style clients would fail before reaching the server.
# Resolve `localhost` and `*.localhost` to 127.0.0.1 in this process (what systemd-resolved and
# browsers do), so that boto3's virtual-host addressing really sends `Host: bucket.localhost:P`.
# ---------------------------------------------------------------------------------------------
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
    if isinstance(host, (bytes, bytearray)):
        host_s = host.decode()
    else:
        host_s = host
    if host_s and (host_s == "localhost" or host_s.endswith(".localhost")):
        return _real_getaddrinfo("127.0.0.1", port, socket.AF_INET, type, proto, flags)
    return _real_getaddrinfo(host, port, family, type, proto, flags)


def install_localhost_resolver() -> None:
    socket.getaddrinfo = _getaddrinfo


# ---------------------------------------------------------------------------------------------
# boto3
# ---------------------------------------------------------------------------------------------
def _force_trailer(params, **_kwargs):
    """What boto3 does by default over TLS: STREAMING-UNSIGNED-PAYLOAD-TRAILER, aws-chunked body
    with the checksum in a trailer. botocore only does it for https endpoints; flip the resolved
    location so the plain-http loopback endpoint gets the same wire format."""
    algo = params.get("context", {}).get("checksum", {}).get("request_algorithm")
    if isinstance(algo, dict) and algo.get("in") == "header":
        algo["in"] = "trailer"


def make_client(
    server: CofferServer,
    style: str = "path",
    trailer: bool = False,
    credentials: tuple[str, str] | None = None,
    **config: object,
):
    ak, sk = credentials or (server.access_key, server.secret_key)
    s3cfg = {"addressing_style": style}
    s3cfg.update(config.pop("s3", {}) or {})
    options: dict = {
        "region_name": REGION,
        "signature_version": "s3v4",
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "connect_timeout": 10,
        "read_timeout": 120,
    }
    options.update(config)
    cfg = Config(s3=s3cfg, **options)
    endpoint = server.endpoint
    if style == "virtual":
        endpoint = f"http://localhost:{server.port}"
    session = boto3.session.Session(aws_access_key_id=ak, aws_secret_access_key=sk, region_name=REGION)
    client = session.client("s3", endpoint_url=endpoint, config=cfg)
    if trailer:
        client.meta.events.register("before-call.s3.PutObject", _force_trailer)
        client.meta.events.register("before-call.s3.UploadPart", _force_trailer)
    return client


# ---------------------------------------------------------------------------------------------
# Raw signed requests
# ---------------------------------------------------------------------------------------------
@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def xml(self) -> ET.Element:
        return strip_ns(ET.fromstring(self.body))

    @property
    def error_code(self) -> str | None:
        if not self.body:
            return None
        try:
            root = self.xml()
        except ET.ParseError:
            return None
        return root.findtext("Code") if root.tag == "Error" else None

    @property
    def error_message(self) -> str | None:
        try:
            return self.xml().findtext("Message")
        except ET.ParseError:
            return None

    def __repr__(self) -> str:
        body = self.body[:2000].decode(errors="replace")
        return f"RawResponse(status={self.status}, headers={self.headers}, body={body!r})"


def strip_ns(elem: ET.Element) -> ET.Element:
    for e in elem.iter():
        if isinstance(e.tag, str) and "}" in e.tag:
            e.tag = e.tag.split("}", 1)[1]
    return elem


def quote_key(key: str) -> str:
    return quote(key, safe="/~")


class _FixedPayloadAuth(botocore.auth.S3SigV4Auth):
    """S3SigV4Auth with a caller-chosen x-amz-content-sha256 (streaming modes, UNSIGNED-PAYLOAD,
    or a deliberately wrong hash)."""

    def __init__(self, credentials, service, region, payload_hash: str | None):
        super().__init__(credentials, service, region)
        self._payload_hash = payload_hash

    def payload(self, request):
        if self._payload_hash is not None:
            return self._payload_hash
        return super().payload(request)


@contextmanager
def signing_clock(when: _dt.datetime | None) -> Iterator[None]:
    """Make botocore sign as if the current time were `when` (UTC)."""
    if when is None:
        yield
        return
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda *a, **k: when.replace(tzinfo=None)):
        yield


def sign_headers(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: Credentials,
    payload_hash: str | None = None,
    when: _dt.datetime | None = None,
) -> dict[str, str]:
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers))
    with signing_clock(when):
        _FixedPayloadAuth(credentials, "s3", REGION, payload_hash).add_auth(req)
    return {k: v for k, v in req.headers.items()}


def send_raw(
    addr: tuple[str, int],
    method: str,
    path_qs: str,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float = 60.0,
) -> RawResponse:
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        conn.putrequest(method, path_qs, skip_host=True, skip_accept_encoding=True)
        names = {k.lower() for k in headers}
        for k, v in headers.items():
            conn.putheader(k, v)
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def raw_request(
    server: CofferServer,
    method: str,
    bucket: str | None = None,
    key: str | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    sign: bool = True,
    credentials: Credentials | None = None,
    payload_hash: str | None = None,
    when: _dt.datetime | None = None,
    host: str | None = None,
    virtual: bool = False,
    timeout: float = 60.0,
) -> RawResponse:
    """Send one S3 request exactly as built here. Path style unless `virtual` (then the bucket is
    in the Host header `<bucket>.localhost:PORT`, while the TCP connection goes to 127.0.0.1)."""
    port = server.port
    if virtual:
        assert bucket
        host = host or f"{bucket}.localhost:{port}"
        path = "/" + (quote_key(key) if key is not None else "")
    else:
        host = host or f"127.0.0.1:{port}"
        path = "/"
        if bucket:
            path += quote(bucket, safe="")
            if key is not None:
                path += "/" + quote_key(key)
    path_qs = path + (f"?{query}" if query else "")
    hdrs = {"Host": host}
    hdrs.update(headers or {})
    if sign:
        url = f"http://{host}{path_qs}"
        hdrs = sign_headers(method, url, hdrs, body or b"", credentials or server.credentials, payload_hash, when)
    return send_raw(server.s3_addr, method, path_qs, hdrs, body, timeout=timeout)


def http_get(url: str, timeout: float = 30.0) -> RawResponse:
    """Plain GET (admin endpoints)."""
    from urllib.parse import urlsplit

    u = urlsplit(url)
    path_qs = u.path + (f"?{u.query}" if u.query else "")
    return send_raw((u.hostname, u.port), "GET", path_qs or "/", {"Host": u.netloc}, None, timeout)


# ---------------------------------------------------------------------------------------------
# aws-chunked bodies
# ---------------------------------------------------------------------------------------------
def signing_key(secret: str, date: str, region: str = REGION, service: str = "s3") -> bytes:
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, region.encode(), hashlib.sha256).digest()
    k = hmac.new(k, service.encode(), hashlib.sha256).digest()
    return hmac.new(k, b"aws4_request", hashlib.sha256).digest()


def unsigned_trailer_body(data: bytes, chunk_size: int, trailer_name: str, trailer_value: str) -> bytes:
    """STREAMING-UNSIGNED-PAYLOAD-TRAILER body: hex-size chunks, a 0 chunk, then the trailer."""
    out = bytearray()
    for i in range(0, len(data), chunk_size):
        chunk = data[i : i + chunk_size]
        out += f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    out += b"0\r\n"
    out += f"{trailer_name}:{trailer_value}\r\n\r\n".encode()
    return bytes(out)


def signed_chunked_body(
    data: bytes,
    chunk_size: int,
    seed_signature: str,
    timestamp: str,
    secret: str,
    corrupt_chunk: int | None = None,
) -> bytes:
    """STREAMING-AWS4-HMAC-SHA256-PAYLOAD body with a chain of chunk signatures."""
    date = timestamp[:8]
    scope = f"{date}/{REGION}/s3/aws4_request"
    key = signing_key(secret, date)
    prev = seed_signature
    out = bytearray()
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for idx, chunk in enumerate(chunks):
        sts = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                timestamp,
                scope,
                prev,
                EMPTY_SHA256,
                hashlib.sha256(chunk).hexdigest(),
            ]
        )
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        if corrupt_chunk == idx:
            sig = ("0" if sig[0] != "0" else "1") + sig[1:]
        out += f"{len(chunk):x};chunk-signature={sig}\r\n".encode() + chunk + b"\r\n"
        prev = sig
    return bytes(out)


def seed_signature(headers: dict[str, str]) -> str:
    auth = headers["Authorization"]
    return auth.rsplit("Signature=", 1)[1].strip()


# ---------------------------------------------------------------------------------------------
# aws CLI
# ---------------------------------------------------------------------------------------------
def find_aws_cli() -> str | None:
    if os.environ.get("COFFER_AWS_CLI"):
        return os.environ["COFFER_AWS_CLI"]
    venvs = Path(os.environ.get("COFFER_VENV_DIR", Path.home() / ".cache" / "coffer-venvs"))
    cand = venvs / "awscli" / "bin" / "aws"
    if cand.exists():
        return str(cand)
    return shutil.which("aws")


def aws_env(server: CofferServer) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") or k in ("AWS_EC2_METADATA_DISABLED",)
    }
    env.update(
        {
            "AWS_ACCESS_KEY_ID": server.access_key,
            "AWS_SECRET_ACCESS_KEY": server.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_RETRY_MODE": "standard",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_PAGER": "",
        }
    )
    return env


# ---------------------------------------------------------------------------------------------
# Assertions on S3 errors
# ---------------------------------------------------------------------------------------------
def assert_client_error(excinfo, code: str, status: int, message: str | None = None) -> dict:
    """Check a botocore ClientError against the S3 error AWS returns. Returns the Error dict."""
    err = excinfo.value if hasattr(excinfo, "value") else excinfo
    assert isinstance(err, ClientError), err
    got_status = err.response["ResponseMetadata"]["HTTPStatusCode"]
    got = err.response.get("Error", {})
    assert (got.get("Code"), got_status) == (code, status), f"expected {code}/{status}, got {got!r} {got_status}"
    if message is not None:
        assert got.get("Message") == message, f"message: {got.get('Message')!r} != {message!r}"
    return got


def assert_raw_error(resp: RawResponse, code: str, status: int, message: str | None = None) -> None:
    assert (resp.status, resp.error_code) == (status, code), f"expected {code}/{status}, got {resp!r}"
    if message is not None:
        assert resp.error_message == message, f"message: {resp.error_message!r} != {message!r}"
