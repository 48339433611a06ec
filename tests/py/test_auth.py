"""SigV4: header auth, presigned URLs, clock skew, payload modes, aws-chunked bodies."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

import harness
from checksums import b64_checksum, etag
from harness import assert_client_error, assert_raw_error

MiB = 1024 * 1024
SIG_MISMATCH_MSG = (
    "The request signature we calculated does not match the signature you provided. Check your key and signing method."
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def urlopen(req, timeout=30):
    """urllib without raising on HTTP errors: returns (status, headers, body)."""
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def error_code(body: bytes) -> str | None:
    return harness.RawResponse(0, {}, body).error_code


def error_message(body: bytes) -> str | None:
    return harness.RawResponse(0, {}, body).error_message


def assert_absent(s3, bucket, key):
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key=key)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# ---------------------------------------------------------------------------------------------
# Header auth
# ---------------------------------------------------------------------------------------------
def test_wrong_secret_key(server, s3, bucket):
    bad = server.client(credentials=(server.access_key, server.secret_key[:-1] + ("A" if server.secret_key[-1] != "A" else "B")))
    with pytest.raises(ClientError) as e:
        bad.list_buckets()
    assert_client_error(e, "SignatureDoesNotMatch", 403, SIG_MISMATCH_MSG)
    with pytest.raises(ClientError) as e:
        bad.put_object(Bucket=bucket, Key="forged", Body=b"x")
    assert_client_error(e, "SignatureDoesNotMatch", 403)
    assert_absent(s3, bucket, "forged")


def test_unknown_access_key(server, s3, bucket):
    bad = server.client(credentials=("AKIAUNKNOWNUNKNOWN00", server.secret_key))
    with pytest.raises(ClientError) as e:
        bad.get_object(Bucket=bucket, Key="k")
    assert_client_error(e, "InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records.")


def test_anonymous_requests_are_denied(raw, s3, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    for method, key, body in [("GET", None, None), ("GET", "private", None), ("PUT", "anon", b"x")]:
        resp = raw(method, bucket, key, body=body, sign=False)
        assert_raw_error(resp, "AccessDenied", 403, "Access Denied")
    resp = raw("GET", None, None, sign=False)  # ListBuckets
    assert_raw_error(resp, "AccessDenied", 403)
    assert_absent(s3, bucket, "anon")


def test_wrong_region_in_credential_scope(server, bucket):
    c = harness.Credentials(server.access_key, server.secret_key)
    hdrs = {"Host": f"127.0.0.1:{server.port}"}
    req = harness.AWSRequest(method="GET", url=f"{server.endpoint}/{bucket}?list-type=2", data=b"", headers=hdrs)
    harness._FixedPayloadAuth(c, "s3", "eu-central-1", None).add_auth(req)
    resp = harness.send_raw(server.s3_addr, "GET", f"/{bucket}?list-type=2", dict(req.headers.items()), None)
    assert_raw_error(resp, "AuthorizationHeaderMalformed", 400)


def test_garbage_authorization_header(raw, bucket):
    resp = raw("GET", bucket, "k", headers={"Authorization": "AWS4-HMAC-SHA256 garbage"}, sign=False)
    assert resp.status in (400, 403), resp
    assert resp.error_code in ("AuthorizationHeaderMalformed", "AccessDenied", "InvalidArgument"), resp


@pytest.mark.parametrize("offset_min", [-20, 20])
def test_request_time_too_skewed(raw, s3, bucket, offset_min):
    when = utcnow() + dt.timedelta(minutes=offset_min)
    resp = raw("PUT", bucket, "skewed", body=b"x", when=when)
    assert_raw_error(
        resp, "RequestTimeTooSkewed", 403, "The difference between the request time and the current time is too large."
    )
    assert_absent(s3, bucket, "skewed")


def test_small_clock_difference_is_accepted(raw, bucket):
    resp = raw("PUT", bucket, "slightly-off", body=b"x", when=utcnow() - dt.timedelta(minutes=10))
    assert resp.status == 200, resp


# ---------------------------------------------------------------------------------------------
# Presigned URLs
# ---------------------------------------------------------------------------------------------
def test_presigned_get(s3, bucket):
    s3.put_object(Bucket=bucket, Key="dir/pre signed+ü", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/pre signed+ü"}, ExpiresIn=300)
    status, headers, body = urlopen(url)
    assert (status, body) == (200, b"presigned body")
    assert headers["etag"] == etag(b"presigned body")


def test_presigned_get_with_response_override(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"x", ContentType="text/plain")
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "o", "ResponseContentDisposition": "attachment; filename=x.bin"},
        ExpiresIn=300,
    )
    status, headers, _ = urlopen(url)
    assert status == 200
    assert headers["content-disposition"] == "attachment; filename=x.bin"


def test_presigned_get_virtual_host(s3v, bucket):
    s3v.put_object(Bucket=bucket, Key="vh", Body=b"virtual presigned")
    url = s3v.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "vh"}, ExpiresIn=300)
    assert f"//{bucket}.localhost:" in url
    status, _, body = urlopen(url)
    assert (status, body) == (200, b"virtual presigned")


def test_presigned_put(s3, bucket):
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "uploaded"}, ExpiresIn=300)
    data = os.urandom(100_000)
    req = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": "application/octet-stream"})
    status, headers, body = urlopen(req)
    assert status == 200, body
    assert headers["etag"] == etag(data)
    assert s3.get_object(Bucket=bucket, Key="uploaded")["Body"].read() == data


def test_presigned_url_for_other_key_is_rejected(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a"}, ExpiresIn=300)
    tampered = url.replace(f"/{bucket}/a?", f"/{bucket}/b?")
    assert tampered != url
    status, _, body = urlopen(tampered)
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")


def test_expired_presigned_url(s3, bucket):
    s3.put_object(Bucket=bucket, Key="exp", Body=b"x")
    # Signed two minutes ago, valid for one: expired a minute ago.
    with harness.signing_clock(utcnow() - dt.timedelta(minutes=2)):
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "exp"}, ExpiresIn=60)
    status, _, body = urlopen(url)
    assert status == 403, body
    assert error_code(body) == "AccessDenied"
    assert error_message(body) == "Request has expired"


def test_presigned_put_expired_stores_nothing(s3, bucket):
    with harness.signing_clock(utcnow() - dt.timedelta(hours=2)):
        url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "late"}, ExpiresIn=3600)
    req = urllib.request.Request(url, data=b"late", method="PUT", headers={"Content-Type": "application/octet-stream"})
    status, _, body = urlopen(req)
    assert (status, error_code(body)) == (403, "AccessDenied")
    assert_absent(s3, bucket, "late")


def test_presigned_expires_more_than_a_week(s3, bucket):
    s3.put_object(Bucket=bucket, Key="w", Body=b"x")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "w"}, ExpiresIn=604801)
    status, _, body = urlopen(url)
    assert (status, error_code(body)) == (400, "AuthorizationQueryParametersError")


def test_presigned_wrong_secret(server, bucket, s3):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    bad = server.client(credentials=(server.access_key, "x" * 40))
    url = bad.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=300)
    status, _, body = urlopen(url)
    assert (status, error_code(body)) == (403, "SignatureDoesNotMatch")


# ---------------------------------------------------------------------------------------------
# Payload modes
# ---------------------------------------------------------------------------------------------
def capture_headers(client, op: str) -> list[dict]:
    seen: list[dict] = []

    def hook(request, **_):
        seen.append({k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()})

    client.meta.events.register(f"before-send.s3.{op}", hook)
    return seen


@pytest.mark.parametrize("size", [0, 1, MiB + 1, 5 * MiB], ids=lambda s: f"{s}B")
def test_boto3_default_trailer_uploads(server, s3, bucket, size):
    """boto3's default for PutObject over TLS: STREAMING-UNSIGNED-PAYLOAD-TRAILER with a CRC32
    trailer (forced here for the plain-http endpoint, see harness._force_trailer)."""
    client = server.client(trailer=True)
    seen = capture_headers(client, "PutObject")
    data = os.urandom(size)
    put = client.put_object(Bucket=bucket, Key="trailer", Body=data)
    sent = seen[-1]
    assert sent["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert "aws-chunked" in sent["content-encoding"]
    assert sent["x-amz-trailer"] == "x-amz-checksum-crc32"
    assert put["ETag"] == etag(data)
    assert put.get("ChecksumCRC32") == b64_checksum("CRC32", data)
    got = s3.get_object(Bucket=bucket, Key="trailer", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ContentLength"] == size
    assert got["ChecksumCRC32"] == b64_checksum("CRC32", data)
    # aws-chunked is a transfer detail, never stored as the object's Content-Encoding.
    assert "aws-chunked" not in (got.get("ContentEncoding") or "")


def test_trailer_upload_keeps_real_content_encoding(server, s3, bucket):
    client = server.client(trailer=True)
    client.put_object(Bucket=bucket, Key="gz", Body=b"\x1f\x8b fake gzip", ContentEncoding="gzip")
    assert s3.head_object(Bucket=bucket, Key="gz")["ContentEncoding"] == "gzip"


def test_trailer_multipart_upload(server, s3, bucket):
    client = server.client(trailer=True)
    parts = [os.urandom(5 * MiB), os.urandom(10)]
    uid = client.create_multipart_upload(Bucket=bucket, Key="mpt")["UploadId"]
    done = []
    for i, p in enumerate(parts, start=1):
        r = client.upload_part(Bucket=bucket, Key="mpt", UploadId=uid, PartNumber=i, Body=p)
        assert r["ETag"] == etag(p)
        done.append({"PartNumber": i, "ETag": r["ETag"]})
    client.complete_multipart_upload(Bucket=bucket, Key="mpt", UploadId=uid, MultipartUpload={"Parts": done})
    assert s3.get_object(Bucket=bucket, Key="mpt")["Body"].read() == b"".join(parts)


def test_unsigned_payload(server, s3, bucket):
    client = server.client(s3={"payload_signing_enabled": False})
    seen = capture_headers(client, "PutObject")
    client.put_object(Bucket=bucket, Key="unsigned", Body=b"unsigned payload")
    assert seen[-1]["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert s3.get_object(Bucket=bucket, Key="unsigned")["Body"].read() == b"unsigned payload"


def test_signed_payload_hash_mismatch(raw, s3, bucket):
    s3.put_object(Bucket=bucket, Key="sha", Body=b"original")
    resp = raw("PUT", bucket, "sha", body=b"tampered", payload_hash=hashlib.sha256(b"something else").hexdigest())
    assert_raw_error(resp, "XAmzContentSHA256Mismatch", 400)
    assert s3.get_object(Bucket=bucket, Key="sha")["Body"].read() == b"original"


# ---------------------------------------------------------------------------------------------
# aws-chunked with chunk signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)
# ---------------------------------------------------------------------------------------------
def streaming_signed_put(server, bucket, key, data, chunk_size=64 * 1024, corrupt_chunk=None, extra_headers=None):
    # The body's length does not depend on the signatures (always 64 hex digits): size it first.
    placeholder = harness.signed_chunked_body(data, chunk_size, "0" * 64, "20000101T000000Z", "x")
    host = f"127.0.0.1:{server.port}"
    path = f"/{bucket}/{harness.quote_key(key)}"
    headers = {
        "Host": host,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "Content-Length": str(len(placeholder)),
        **(extra_headers or {}),
    }
    signed = harness.sign_headers(
        "PUT", f"http://{host}{path}", headers, b"", server.credentials, payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    )
    body = harness.signed_chunked_body(
        data, chunk_size, harness.seed_signature(signed), signed["X-Amz-Date"], server.secret_key, corrupt_chunk
    )
    assert len(body) == len(placeholder)
    return harness.send_raw(server.s3_addr, "PUT", path, signed, body)


def test_streaming_signed_payload(server, s3, bucket):
    data = os.urandom(200_000)
    resp = streaming_signed_put(server, bucket, "chunked", data)
    assert resp.status == 200, resp
    assert resp.header("etag") == etag(data)
    got = s3.get_object(Bucket=bucket, Key="chunked")
    assert got["Body"].read() == data
    assert "aws-chunked" not in (got.get("ContentEncoding") or "")


def test_streaming_signed_payload_empty(server, s3, bucket):
    resp = streaming_signed_put(server, bucket, "chunked-empty", b"")
    assert resp.status == 200, resp
    assert s3.get_object(Bucket=bucket, Key="chunked-empty")["Body"].read() == b""


@pytest.mark.parametrize("corrupt", [0, 2, 3], ids=["first-chunk", "middle-chunk", "final-empty-chunk"])
def test_streaming_bad_chunk_signature(server, s3, bucket, corrupt):
    s3.put_object(Bucket=bucket, Key="chunked-bad", Body=b"previous")
    data = os.urandom(150_000)  # 3 chunks of 64 KiB max + the final empty chunk
    resp = streaming_signed_put(server, bucket, "chunked-bad", data, corrupt_chunk=corrupt)
    assert_raw_error(resp, "SignatureDoesNotMatch", 403)
    assert s3.get_object(Bucket=bucket, Key="chunked-bad")["Body"].read() == b"previous"


# ---------------------------------------------------------------------------------------------
# Truncated aws-chunked bodies
# ---------------------------------------------------------------------------------------------
def trailer_headers(server, bucket, key, decoded_len, content_length):
    host = f"127.0.0.1:{server.port}"
    path = f"/{bucket}/{harness.quote_key(key)}"
    headers = {
        "Host": host,
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(decoded_len),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "Content-Length": str(content_length),
    }
    signed = harness.sign_headers(
        "PUT", f"http://{host}{path}", headers, b"", server.credentials, payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    )
    return path, signed


def test_unsigned_trailer_raw_upload(server, s3, bucket):
    data = os.urandom(100_000)
    body = harness.unsigned_trailer_body(data, 32 * 1024, "x-amz-checksum-crc32", b64_checksum("CRC32", data))
    path, headers = trailer_headers(server, bucket, "raw-trailer", len(data), len(body))
    resp = harness.send_raw(server.s3_addr, "PUT", path, headers, body)
    assert resp.status == 200, resp
    assert resp.header("x-amz-checksum-crc32") == b64_checksum("CRC32", data)
    assert s3.get_object(Bucket=bucket, Key="raw-trailer")["Body"].read() == data


def test_truncated_aws_chunked_body_within_content_length(server, s3, bucket):
    """The HTTP body is complete, but the aws-chunked stream inside it stops mid-chunk."""
    s3.put_object(Bucket=bucket, Key="trunc", Body=b"previous version")
    data = os.urandom(100_000)
    full = harness.unsigned_trailer_body(data, 100_000, "x-amz-checksum-crc32", b64_checksum("CRC32", data))
    truncated = full[: len(full) // 2]
    path, headers = trailer_headers(server, bucket, "trunc", len(data), len(truncated))
    resp = harness.send_raw(server.s3_addr, "PUT", path, headers, truncated)
    assert_raw_error(resp, "IncompleteBody", 400)
    assert s3.get_object(Bucket=bucket, Key="trunc")["Body"].read() == b"previous version"


def read_http_response(sock) -> bytes:
    """Read one HTTP/1.1 response (headers + Content-Length body, or until EOF)."""
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            more = sock.recv(65536)
            if not more:
                return buf
            buf += more
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while length is None or len(rest) < length:
            more = sock.recv(65536)
            if not more:
                break
            rest += more
        return head + b"\r\n\r\n" + rest
    except socket.timeout:
        return buf


def test_truncated_aws_chunked_body_raw_socket(server, s3, bucket):
    """The client announces a Content-Length, sends half of it and half-closes the socket."""
    data = os.urandom(100_000)
    full = harness.unsigned_trailer_body(data, 16 * 1024, "x-amz-checksum-crc32", b64_checksum("CRC32", data))
    path, headers = trailer_headers(server, bucket, "trunc-sock", len(data), len(full))
    head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock = socket.create_connection(server.s3_addr, timeout=30)
    try:
        sock.sendall(head.encode() + full[: len(full) // 2])
        sock.shutdown(socket.SHUT_WR)
        raw_resp = read_http_response(sock)
    finally:
        sock.close()
    status_line = raw_resp.split(b"\r\n", 1)[0].decode(errors="replace")
    assert status_line.startswith("HTTP/1.1 400"), raw_resp[:2000]
    body = raw_resp.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw_resp else b""
    assert b"<Code>IncompleteBody</Code>" in body, raw_resp[:2000]
    assert_absent(s3, bucket, "trunc-sock")
    assert "trunc-sock" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_decoded_length_mismatch(server, s3, bucket):
    """x-amz-decoded-content-length larger than what the chunks carry."""
    data = os.urandom(50_000)
    body = harness.unsigned_trailer_body(data, 16 * 1024, "x-amz-checksum-crc32", b64_checksum("CRC32", data))
    path, headers = trailer_headers(server, bucket, "short", len(data) + 10, len(body))
    resp = harness.send_raw(server.s3_addr, "PUT", path, headers, body)
    assert resp.status == 400, resp
    assert resp.error_code in ("IncompleteBody", "InvalidRequest"), resp
    assert_absent(s3, bucket, "short")
