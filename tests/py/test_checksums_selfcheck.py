"""The test suite's own checksum helpers against the published check values (no server)."""

import base64
import hashlib

import checksums


def test_crc32c_check_value():
    # CRC-32C/ISCSI check value for "123456789".
    assert checksums.crc32c(b"123456789") == 0xE3069283
    assert checksums.crc32c(b"") == 0


def test_crc64nvme_check_value():
    # CRC-64/NVME check value for "123456789" (the CRC S3 calls CRC64NVME).
    assert checksums.crc64nvme(b"123456789") == 0xAE8B14860A799888
    assert checksums.crc64nvme(b"") == 0


def test_incremental_equals_one_shot():
    data = bytes(range(256)) * 37
    for f in (checksums.crc32c, checksums.crc64nvme, checksums.crc32):
        assert f(data[1000:], f(data[:1000])) == f(data)


def test_s3_examples():
    # S3's documented example: CRC32 of "Hello World" is "ShexVg==" (base64 of big-endian).
    assert checksums.b64_checksum("CRC32", b"Hello World") == "ShexVg=="
    assert checksums.b64_checksum("SHA256", b"") == base64.b64encode(hashlib.sha256(b"").digest()).decode()


def test_multipart_etag_shape():
    parts = [b"a" * 10, b"b" * 3]
    joined = hashlib.md5(b"a" * 10).digest() + hashlib.md5(b"b" * 3).digest()
    assert checksums.multipart_etag(parts) == f'"{hashlib.md5(joined).hexdigest()}-2"'


def test_streaming_chunk_signatures_match_aws_example():
    """The chunk-signature chain of harness.signed_chunked_body against the worked example in
    AWS's "Signature Calculations for the Authorization Header: Transferring Payload in Multiple
    Chunks" (64 KiB of 'a', then 1 KiB of 'a', then the final empty chunk)."""
    import harness

    body = harness.signed_chunked_body(
        b"a" * (65536 + 1024),
        65536,
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        "20130524T000000Z",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    )
    sigs = [line.split(b"chunk-signature=")[1].decode() for line in body.split(b"\r\n") if b"chunk-signature=" in line]
    assert sigs == [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]


def test_seed_signature_matches_aws_example():
    """harness.sign_headers (botocore's signer with a fixed payload mode and clock) reproduces the
    seed signature of the same AWS example."""
    import datetime as dt

    from botocore.credentials import Credentials

    import harness

    headers = {
        "Host": "s3.amazonaws.com",
        "Content-Encoding": "aws-chunked",
        "Content-Length": "66824",
        "x-amz-decoded-content-length": "66560",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
    }
    signed = harness.sign_headers(
        "PUT",
        "http://s3.amazonaws.com/examplebucket/chunkObject.txt",
        headers,
        b"",
        Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        when=dt.datetime(2013, 5, 24, tzinfo=dt.timezone.utc),
    )
    assert signed["X-Amz-Date"] == "20130524T000000Z"
    assert harness.seed_signature(signed) == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
