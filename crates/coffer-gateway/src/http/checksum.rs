//! The `x-amz-checksum-*` family: CRC32, CRC32C, CRC64NVME, SHA1 and SHA256.
//!
//! S3 sends checksums as the base64 of the big-endian digest. A multipart object has either a
//! composite checksum (the checksum of the parts' concatenated checksums, suffixed `-N`) or, for
//! the CRCs, a full-object one obtained by combining the parts' CRCs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use crc_fast::CrcAlgorithm;

/// A checksum algorithm of S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumAlgorithm {
    /// CRC-32/ISO-HDLC (the CRC32 of zlib).
    Crc32,
    /// CRC-32/ISCSI (Castagnoli).
    Crc32c,
    /// CRC-64/NVME, the default of new objects.
    Crc64Nvme,
    /// SHA-1.
    Sha1,
    /// SHA-256.
    Sha256,
}

impl ChecksumAlgorithm {
    /// Every algorithm, in the order S3 lists them.
    pub const ALL: [ChecksumAlgorithm; 5] = [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c,
        ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256,
    ];

    /// Parses `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1` or `SHA256` (in any case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.as_str().eq_ignore_ascii_case(name))
    }

    /// The name S3 uses in `x-amz-checksum-algorithm` and in XML (`CRC32`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "CRC32",
            ChecksumAlgorithm::Crc32c => "CRC32C",
            ChecksumAlgorithm::Crc64Nvme => "CRC64NVME",
            ChecksumAlgorithm::Sha1 => "SHA1",
            ChecksumAlgorithm::Sha256 => "SHA256",
        }
    }

    /// The header (and trailer) that carries the value: `x-amz-checksum-crc32`.
    pub fn header_name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgorithm::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgorithm::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgorithm::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgorithm::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The algorithm whose header is `name` (in any case).
    pub fn from_header_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|alg| alg.header_name().eq_ignore_ascii_case(name))
    }

    /// The element of XML bodies that carries the value: `ChecksumCRC32`.
    pub fn xml_element(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32 => "ChecksumCRC32",
            ChecksumAlgorithm::Crc32c => "ChecksumCRC32C",
            ChecksumAlgorithm::Crc64Nvme => "ChecksumCRC64NVME",
            ChecksumAlgorithm::Sha1 => "ChecksumSHA1",
            ChecksumAlgorithm::Sha256 => "ChecksumSHA256",
        }
    }

    /// The length of the raw digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Crc64Nvme => 8,
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        }
    }

    /// Whether the algorithm is a CRC, which S3 can combine into a full-object checksum.
    pub fn is_crc(self) -> bool {
        self.crc().is_some()
    }

    /// Decodes a base64 value sent by a client; `None` unless it is padded base64 of the
    /// digest's length.
    pub fn decode(self, value: &str) -> Option<Vec<u8>> {
        let raw = STANDARD.decode(value.trim()).ok()?;
        (raw.len() == self.digest_len()).then_some(raw)
    }

    fn crc(self) -> Option<CrcAlgorithm> {
        match self {
            ChecksumAlgorithm::Crc32 => Some(CrcAlgorithm::Crc32IsoHdlc),
            ChecksumAlgorithm::Crc32c => Some(CrcAlgorithm::Crc32Iscsi),
            ChecksumAlgorithm::Crc64Nvme => Some(CrcAlgorithm::Crc64Nvme),
            ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256 => None,
        }
    }

    /// The big-endian bytes of a CRC value.
    fn crc_bytes(self, value: u64) -> Vec<u8> {
        let bytes = value.to_be_bytes();
        bytes[8 - self.digest_len()..].to_vec()
    }
}

impl std::fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

enum State {
    Crc(crc_fast::Digest),
    Sha(ring::digest::Context),
}

/// An incremental checksum.
pub struct Checksummer {
    algorithm: ChecksumAlgorithm,
    state: State,
}

impl Checksummer {
    /// A checksum of nothing yet.
    pub fn new(algorithm: ChecksumAlgorithm) -> Self {
        let state = match (algorithm.crc(), algorithm) {
            (Some(crc), _) => State::Crc(crc_fast::Digest::new(crc)),
            (None, ChecksumAlgorithm::Sha1) => State::Sha(ring::digest::Context::new(
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            )),
            (None, _) => State::Sha(ring::digest::Context::new(&ring::digest::SHA256)),
        };
        Checksummer { algorithm, state }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    /// Adds data.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            State::Crc(digest) => digest.update(data),
            State::Sha(context) => context.update(data),
        }
    }

    /// The raw digest (big-endian for the CRCs).
    pub fn finish(self) -> Vec<u8> {
        match self.state {
            State::Crc(digest) => self.algorithm.crc_bytes(digest.finalize()),
            State::Sha(context) => context.finish().as_ref().to_vec(),
        }
    }

    /// The digest as S3 shows it: base64.
    pub fn finish_base64(self) -> String {
        STANDARD.encode(self.finish())
    }
}

/// The raw checksum of `data`.
pub fn checksum(algorithm: ChecksumAlgorithm, data: &[u8]) -> Vec<u8> {
    let mut summer = Checksummer::new(algorithm);
    summer.update(data);
    summer.finish()
}

/// Base64, as S3 sends checksums and Content-MD5.
pub fn to_base64(raw: &[u8]) -> String {
    STANDARD.encode(raw)
}

/// The raw composite checksum of a multipart object: the checksum of the parts' raw checksums
/// concatenated in part order. S3 shows it as base64 suffixed with `-<number of parts>`.
pub fn composite(algorithm: ChecksumAlgorithm, part_checksums_raw: &[Vec<u8>]) -> Vec<u8> {
    let mut summer = Checksummer::new(algorithm);
    for part in part_checksums_raw {
        summer.update(part);
    }
    summer.finish()
}

/// Why [`combine_crc`] could not combine.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CombineError {
    /// SHA1 and SHA256 cannot be combined; S3 allows `FULL_OBJECT` only with the CRCs.
    #[error("{0} checksums cannot be combined into a full-object checksum")]
    NotCrc(ChecksumAlgorithm),
    /// A part's checksum does not have the length of the algorithm's digest.
    #[error("a part checksum is not a {0} value")]
    BadLength(ChecksumAlgorithm),
}

/// The raw full-object CRC of a multipart object, from each part's raw CRC and length in part
/// order (the `FULL_OBJECT` checksum type).
pub fn combine_crc(
    algorithm: ChecksumAlgorithm,
    parts: &[(Vec<u8>, u64)],
) -> Result<Vec<u8>, CombineError> {
    let crc = algorithm.crc().ok_or(CombineError::NotCrc(algorithm))?;
    let width = algorithm.digest_len();
    let mut combined: Option<u64> = None;
    for (raw, len) in parts {
        if raw.len() != width {
            return Err(CombineError::BadLength(algorithm));
        }
        let mut be = [0u8; 8];
        be[8 - width..].copy_from_slice(raw);
        let value = u64::from_be_bytes(be);
        combined = Some(match combined {
            None => value,
            Some(acc) => crc_fast::checksum_combine(crc, acc, value, *len),
        });
    }
    Ok(algorithm.crc_bytes(combined.unwrap_or_else(|| crc_fast::checksum(crc, b""))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// base64(CRC32(CRC32("hello") ‖ CRC32(" world"))), computed independently (Python zlib).
    const COMPOSITE_HELLO_WORLD: &str = "otMqCw==";

    /// The check values of the algorithms ("123456789") and "hello world".
    #[test]
    fn known_values() {
        let cases = [
            (ChecksumAlgorithm::Crc32, "cbf43926", "DUoRhQ=="),
            (ChecksumAlgorithm::Crc32c, "e3069283", "yZRlqg=="),
            (
                ChecksumAlgorithm::Crc64Nvme,
                "ae8b14860a799888",
                "jSnVw/bqjr4=",
            ),
            (
                ChecksumAlgorithm::Sha1,
                "f7c3bc1d808e04732adf679965ccc34ca7ae3441",
                "Kq5sNclPz7QV2+lfQIuc6R7oRu0=",
            ),
            (
                ChecksumAlgorithm::Sha256,
                "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225",
                "uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek=",
            ),
        ];
        for (alg, check, hello) in cases {
            assert_eq!(hex::encode(checksum(alg, b"123456789")), check, "{alg}");
            assert_eq!(to_base64(&checksum(alg, b"hello world")), hello, "{alg}");
        }
        // The trailer of the documented streaming example: 66560 bytes of 'a'.
        let a = vec![b'a'; 66560];
        assert_eq!(
            to_base64(&checksum(ChecksumAlgorithm::Crc32c, &a)),
            "sOO8/Q=="
        );
        // Of nothing.
        assert_eq!(
            to_base64(&checksum(ChecksumAlgorithm::Crc32, b"")),
            "AAAAAA=="
        );
    }

    #[test]
    fn incremental_equals_one_shot() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for alg in ChecksumAlgorithm::ALL {
            let mut summer = Checksummer::new(alg);
            for piece in data.chunks(777) {
                summer.update(piece);
            }
            assert_eq!(summer.algorithm(), alg);
            assert_eq!(summer.finish(), checksum(alg, &data), "{alg}");
        }
    }

    #[test]
    fn names() {
        for alg in ChecksumAlgorithm::ALL {
            assert_eq!(ChecksumAlgorithm::from_name(alg.as_str()), Some(alg));
            assert_eq!(
                ChecksumAlgorithm::from_name(&alg.as_str().to_lowercase()),
                Some(alg)
            );
            assert_eq!(
                ChecksumAlgorithm::from_header_name(alg.header_name()),
                Some(alg)
            );
            assert_eq!(
                alg.header_name(),
                format!("x-amz-checksum-{}", alg.as_str().to_lowercase())
            );
            assert_eq!(alg.xml_element(), format!("Checksum{}", alg.as_str()));
        }
        assert_eq!(ChecksumAlgorithm::from_name("MD5"), None);
        assert_eq!(
            ChecksumAlgorithm::from_header_name("x-amz-checksum-type"),
            None
        );
    }

    #[test]
    fn decode_checks_base64_and_length() {
        assert_eq!(
            ChecksumAlgorithm::Crc32.decode("DUoRhQ=="),
            Some(vec![0x0d, 0x4a, 0x11, 0x85])
        );
        assert_eq!(ChecksumAlgorithm::Crc32.decode("DUoRhQ"), None);
        assert_eq!(ChecksumAlgorithm::Crc32.decode("0d4a1185"), None);
        assert_eq!(ChecksumAlgorithm::Crc32c.decode("jSnVw/bqjr4="), None);
        assert_eq!(ChecksumAlgorithm::Sha256.decode("not base64!"), None);
    }

    #[test]
    fn composite_is_the_checksum_of_the_part_checksums() {
        let parts: Vec<Vec<u8>> = [&b"part one"[..], b"part two", b"three"]
            .iter()
            .map(|p| checksum(ChecksumAlgorithm::Sha256, p))
            .collect();
        let concatenated: Vec<u8> = parts.concat();
        assert_eq!(
            composite(ChecksumAlgorithm::Sha256, &parts),
            checksum(ChecksumAlgorithm::Sha256, &concatenated)
        );
        // A known value: the CRC32 of the CRC32s of "hello" (3610a686) and " world".
        let crcs = [
            checksum(ChecksumAlgorithm::Crc32, b"hello"),
            checksum(ChecksumAlgorithm::Crc32, b" world"),
        ];
        assert_eq!(hex::encode(&crcs[0]), "3610a686");
        assert_eq!(
            to_base64(&composite(ChecksumAlgorithm::Crc32, &crcs)),
            COMPOSITE_HELLO_WORLD
        );
    }

    #[test]
    fn combined_crcs_equal_the_crc_of_the_whole() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let cuts = [0usize, 1, 8192, 30_000, 50_000];
        for alg in [
            ChecksumAlgorithm::Crc32,
            ChecksumAlgorithm::Crc32c,
            ChecksumAlgorithm::Crc64Nvme,
        ] {
            let parts: Vec<(Vec<u8>, u64)> = cuts
                .windows(2)
                .map(|w| (checksum(alg, &data[w[0]..w[1]]), (w[1] - w[0]) as u64))
                .collect();
            assert_eq!(combine_crc(alg, &parts), Ok(checksum(alg, &data)), "{alg}");
            assert_eq!(combine_crc(alg, &parts[..1]), Ok(checksum(alg, &data[..1])));
            assert_eq!(combine_crc(alg, &[]), Ok(checksum(alg, b"")));
        }
        assert_eq!(
            combine_crc(ChecksumAlgorithm::Sha256, &[]),
            Err(CombineError::NotCrc(ChecksumAlgorithm::Sha256))
        );
        assert_eq!(
            combine_crc(ChecksumAlgorithm::Crc32, &[(vec![1, 2], 2)]),
            Err(CombineError::BadLength(ChecksumAlgorithm::Crc32))
        );
    }
}
