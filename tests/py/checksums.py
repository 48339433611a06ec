"""Checksums as S3 defines them, computed independently of botocore and of the server.

CRC32 and the digests come from zlib/hashlib; CRC32C and CRC64NVME are table-driven, pure
Python (botocore needs the optional awscrt for those, and the point is to not trust a client
library for the expected value). Every function takes an optional previous value so a long
object can be fed part by part, like ``zlib.crc32(data, value)``.

S3 puts checksums on the wire as base64 of the big-endian bytes of the CRC / the raw digest.
"""

from __future__ import annotations

import base64
import hashlib
import zlib


def _reflect(value: int, width: int) -> int:
    out = 0
    for _ in range(width):
        out = (out << 1) | (value & 1)
        value >>= 1
    return out


def _table(reflected_poly: int) -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ reflected_poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


# CRC-32C (Castagnoli): poly 0x1EDC6F41, reflected in/out, init and xorout all ones.
_CRC32C_TABLE = _table(_reflect(0x1EDC6F41, 32))
# CRC-64/NVME: poly 0xAD93D23594C93659, reflected in/out, init and xorout all ones.
_CRC64NVME_TABLE = _table(_reflect(0xAD93D23594C93659, 64))
_MASK32 = 0xFFFFFFFF
_MASK64 = 0xFFFFFFFFFFFFFFFF


def crc32c(data: bytes, value: int = 0) -> int:
    table = _CRC32C_TABLE
    crc = value ^ _MASK32
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ _MASK32


def crc64nvme(data: bytes, value: int = 0) -> int:
    table = _CRC64NVME_TABLE
    crc = value ^ _MASK64
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ _MASK64


def crc32(data: bytes, value: int = 0) -> int:
    return zlib.crc32(data, value) & _MASK32


ALGORITHMS = ("CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME")


def raw_checksum(algorithm: str, data: bytes) -> bytes:
    """The checksum's bytes as S3 encodes them (big-endian CRC, raw digest)."""
    algorithm = algorithm.upper()
    if algorithm == "CRC32":
        return crc32(data).to_bytes(4, "big")
    if algorithm == "CRC32C":
        return crc32c(data).to_bytes(4, "big")
    if algorithm == "CRC64NVME":
        return crc64nvme(data).to_bytes(8, "big")
    if algorithm == "SHA1":
        return hashlib.sha1(data).digest()
    if algorithm == "SHA256":
        return hashlib.sha256(data).digest()
    raise ValueError(algorithm)


def b64_checksum(algorithm: str, data: bytes) -> str:
    return base64.b64encode(raw_checksum(algorithm, data)).decode()


def composite_checksum(algorithm: str, parts: list[bytes]) -> str:
    """Multipart COMPOSITE checksum: checksum of the concatenated binary part checksums, '-N'."""
    joined = b"".join(raw_checksum(algorithm, p) for p in parts)
    return f"{b64_checksum(algorithm, joined)}-{len(parts)}"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def etag(data: bytes) -> str:
    """ETag of a single-PUT object: the quoted hex MD5."""
    return f'"{md5_hex(data)}"'


def multipart_etag(parts: list[bytes]) -> str:
    """ETag of a multipart object: '"<md5 of the concatenated binary part md5s>-N"'."""
    joined = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(joined).hexdigest()}-{len(parts)}"'
