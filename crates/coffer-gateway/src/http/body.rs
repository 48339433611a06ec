//! [`BodyReader`]: how handlers read a request body.
//!
//! It streams the payload (de-chunking aws-chunked bodies and checking their chunk signatures
//! on the way), stops a body at the handler's size limit, and at the end verifies everything
//! the client said about the body: `x-amz-content-sha256`, `Content-MD5` and one
//! `x-amz-checksum-*` value from a header or a trailer. It always computes the MD5 (the ETag)
//! and one checksum: the client's algorithm, or CRC64NVME, which S3 stores for every new object.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt as _;
use http::HeaderMap;
use md5::{Digest as _, Md5};

use super::aws_chunked::AwsChunkedDecoder;
use super::checksum::{ChecksumAlgorithm, Checksummer};
use super::{malformed_trailer, too_large};
use crate::error::S3Error;
use crate::s3_error;
use crate::sigv4::{ChunkSigner, PayloadMode};

/// What the headers of a request say its body must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectations {
    /// `Content-MD5`, decoded.
    pub content_md5: Option<[u8; 16]>,
    /// The checksum the client sent: its algorithm, and the raw value from the
    /// `x-amz-checksum-*` header, or `None` if it comes in the trailer (`x-amz-trailer`).
    pub checksum: Option<(ChecksumAlgorithm, Option<Vec<u8>>)>,
    /// The length of the payload: `x-amz-decoded-content-length` for an aws-chunked body,
    /// `Content-Length` otherwise.
    pub decoded_length: Option<u64>,
    /// The most bytes the handler accepts.
    pub max_len: u64,
}

/// What was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodySummary {
    /// Bytes of payload.
    pub len: u64,
    /// MD5 of the payload (the ETag of a single-part object).
    pub md5: [u8; 16],
    /// The algorithm and raw value of the payload's checksum. Always present: the client's
    /// algorithm, or CRC64NVME when it asked for none (see `checksum_defaulted`).
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
    /// Whether `checksum` is the CRC64NVME S3 computes when the client asks for no checksum.
    pub checksum_defaulted: bool,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

fn single_checksum_error() -> S3Error {
    s3_error!(
        InvalidRequest,
        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
    )
}

fn checksum_mismatch(algorithm: ChecksumAlgorithm) -> S3Error {
    s3_error!(
        BadDigest,
        "The {algorithm} you specified did not match the calculated checksum."
    )
}

fn parse_length(value: &str, name: &'static str) -> Result<u64, S3Error> {
    value.trim().parse().map_err(|_| {
        s3_error!(InvalidArgument, "Invalid argument.")
            .with_detail("ArgumentName", name)
            .with_detail("ArgumentValue", value)
    })
}

/// Reads `Content-MD5`, the `x-amz-checksum-*` headers, `x-amz-sdk-checksum-algorithm`,
/// `x-amz-trailer` and the payload length, with the errors S3 gives for each. A declared length
/// above `max_len` fails here, before any byte is read.
pub fn expectations_from_headers(
    headers: &HeaderMap,
    max_len: u64,
) -> Result<Expectations, S3Error> {
    let content_md5 = match header(headers, "content-md5") {
        None => None,
        Some(value) => {
            let raw = STANDARD.decode(value.trim()).ok();
            let md5: [u8; 16] = raw.and_then(|raw| raw.try_into().ok()).ok_or_else(|| {
                s3_error!(InvalidDigest, "The Content-MD5 you specified was invalid.")
                    .with_detail("Content-MD5", value)
            })?;
            Some(md5)
        }
    };

    let mut in_header = None;
    for algorithm in ChecksumAlgorithm::ALL {
        let Some(value) = header(headers, algorithm.header_name()) else {
            continue;
        };
        if in_header.is_some() {
            return Err(single_checksum_error());
        }
        let raw = algorithm.decode(value).ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "Value for {} header is invalid.",
                algorithm.header_name()
            )
        })?;
        in_header = Some((algorithm, raw));
    }

    let mut in_trailer = None;
    if let Some(value) = header(headers, "x-amz-trailer") {
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let algorithm = ChecksumAlgorithm::from_header_name(name).ok_or_else(|| {
                s3_error!(
                    InvalidRequest,
                    "The value specified in the x-amz-trailer header is not supported"
                )
            })?;
            if in_trailer.is_some() || in_header.is_some() {
                return Err(single_checksum_error());
            }
            in_trailer = Some(algorithm);
        }
    }

    if let Some(name) = header(headers, "x-amz-sdk-checksum-algorithm") {
        ChecksumAlgorithm::from_name(name.trim()).ok_or_else(|| {
            s3_error!(
                InvalidRequest,
                "Checksum algorithm provided is unsupported. Please try again with any of the \
                 valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
            )
        })?;
        // "If you provide an individual checksum, Amazon S3 ignores any provided
        // ChecksumAlgorithm parameter." (PutBucketEncryption, PutObject, ...): the checksum sent
        // is the one verified, whatever algorithm the SDK header names.
        if in_header.is_none() && in_trailer.is_none() {
            return Err(s3_error!(
                InvalidRequest,
                "x-amz-sdk-checksum-algorithm specified, but no corresponding \
                 x-amz-checksum-* or x-amz-trailer headers were found."
            ));
        }
    }

    let checksum = match (in_header, in_trailer) {
        (Some((algorithm, raw)), _) => Some((algorithm, Some(raw))),
        (None, Some(algorithm)) => Some((algorithm, None)),
        (None, None) => None,
    };

    let streaming =
        header(headers, "x-amz-content-sha256").is_some_and(|v| v.starts_with("STREAMING-"));
    let length_header = if streaming {
        "x-amz-decoded-content-length"
    } else {
        "content-length"
    };
    let decoded_length = header(headers, length_header)
        .map(|v| parse_length(v, length_header))
        .transpose()?;
    if let Some(len) = decoded_length {
        if len > max_len {
            return Err(too_large(max_len).with_detail("ProposedSize", len.to_string()));
        }
    }

    Ok(Expectations {
        content_md5,
        checksum,
        decoded_length,
        max_len,
    })
}

/// The `Content-Encoding` to store with an object: the header without its `aws-chunked`
/// coding, which only describes the transfer. `None` if nothing else is left.
pub fn stored_content_encoding(headers: &HeaderMap) -> Option<String> {
    let value = header(headers, "content-encoding")?;
    let is_chunked = |c: &str| c.trim().eq_ignore_ascii_case("aws-chunked");
    if !value.split(',').any(is_chunked) {
        return (!value.trim().is_empty()).then(|| value.to_owned());
    }
    let rest: Vec<&str> = value
        .split(',')
        .filter(|c| !is_chunked(c) && !c.trim().is_empty())
        .map(str::trim)
        .collect();
    (!rest.is_empty()).then(|| rest.join(", "))
}

/// Reads and verifies a request body. See the module documentation.
pub struct BodyReader {
    stream: http_body_util::BodyDataStream<axum::body::Body>,
    /// For aws-chunked bodies: the decoder and the bytes it has not consumed yet.
    chunked: Option<(AwsChunkedDecoder, BytesMut)>,
    md5: Md5,
    checksum: Checksummer,
    checksum_defaulted: bool,
    /// The SHA-256 of a `PayloadMode::Sha256` body, and the value the client signed.
    sha256: Option<(ring::digest::Context, [u8; 32])>,
    exp: Expectations,
    len: u64,
    done: bool,
}

impl BodyReader {
    /// Prepares to read `body` under `payload` (from `sigv4::verify`) and `exp` (from
    /// [`expectations_from_headers`]).
    pub fn new(
        body: axum::body::Body,
        headers: &HeaderMap,
        payload: &PayloadMode,
        exp: Expectations,
    ) -> Result<Self, S3Error> {
        let trailers_allowed = matches!(
            payload,
            PayloadMode::StreamingUnsignedTrailer
                | PayloadMode::StreamingSigned { trailer: true, .. }
        );
        if matches!(exp.checksum, Some((_, None))) && !trailers_allowed {
            // x-amz-trailer announces a checksum that this kind of body cannot carry.
            return Err(malformed_trailer());
        }
        let chunked = if payload.is_streaming() {
            let decoded_length = exp.decoded_length.ok_or_else(|| {
                s3_error!(
                    MissingContentLength,
                    "You must provide the Content-Length HTTP header."
                )
            })?;
            let decoder = AwsChunkedDecoder::new(
                ChunkSigner::from_mode(payload),
                trailers_allowed,
                decoded_length,
                exp.max_len,
            );
            Some((decoder, BytesMut::new()))
        } else {
            let chunked_transfer = header(headers, "transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
            if chunked_transfer && !headers.contains_key(http::header::CONTENT_LENGTH) {
                return Err(s3_error!(
                    NotImplemented,
                    "A header you provided implies functionality that is not implemented"
                )
                .with_detail("Header", "Transfer-Encoding"));
            }
            None
        };
        let algorithm = exp.checksum.as_ref().map(|(alg, _)| *alg);
        let sha256 = match payload {
            PayloadMode::Sha256(hash) => {
                Some((ring::digest::Context::new(&ring::digest::SHA256), *hash))
            }
            _ => None,
        };
        Ok(BodyReader {
            stream: http_body_util::BodyDataStream::new(body),
            chunked,
            md5: Md5::new(),
            checksum: Checksummer::new(algorithm.unwrap_or(ChecksumAlgorithm::Crc64Nvme)),
            checksum_defaulted: algorithm.is_none(),
            sha256,
            exp,
            len: 0,
            done: false,
        })
    }

    /// The next piece of payload (already de-chunked), or `None` at the end. Fails mid-stream
    /// on a bad chunk signature, a truncated or malformed body, or a body over the limit.
    pub async fn next(&mut self) -> Result<Option<Bytes>, S3Error> {
        loop {
            if self.done {
                return Ok(None);
            }
            if let Some((decoder, buf)) = &mut self.chunked {
                if let Some(data) = decoder.decode(buf)? {
                    self.account(&data)?;
                    return Ok(Some(data));
                }
                if decoder.is_done() {
                    self.end().await?;
                    return Ok(None);
                }
            }
            match self.stream.next().await {
                Some(Ok(bytes)) => match &mut self.chunked {
                    Some((_, buf)) => buf.extend_from_slice(&bytes),
                    None if bytes.is_empty() => {}
                    None => {
                        self.account(&bytes)?;
                        return Ok(Some(bytes));
                    }
                },
                Some(Err(e)) => return Err(self.read_error(e)),
                None => {
                    if let Some((decoder, buf)) = &mut self.chunked {
                        decoder.at_eof(buf)?;
                    }
                    self.end().await?;
                    return Ok(None);
                }
            }
        }
    }

    fn account(&mut self, data: &[u8]) -> Result<(), S3Error> {
        self.len += data.len() as u64;
        if self.len > self.exp.max_len {
            return Err(too_large(self.exp.max_len));
        }
        self.md5.update(data);
        self.checksum.update(data);
        if let Some((context, _)) = &mut self.sha256 {
            context.update(data);
        }
        Ok(())
    }

    /// The end of the payload: its length must be the announced one, and an aws-chunked body
    /// must have nothing after its end.
    async fn end(&mut self) -> Result<(), S3Error> {
        self.done = true;
        if self.chunked.is_some() {
            while let Some(piece) = self.stream.next().await {
                let piece = piece.map_err(|e| self.read_error(e))?;
                if !piece.is_empty() {
                    return Err(super::chunked_body_incomplete());
                }
            }
        }
        match self.exp.decoded_length {
            Some(expected) if expected != self.len => Err(self.incomplete()),
            _ => Ok(()),
        }
    }

    fn incomplete(&self) -> S3Error {
        if self.chunked.is_some() {
            super::chunked_body_incomplete()
        } else {
            s3_error!(
                IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP header"
            )
        }
    }

    /// The connection failed or closed before the body ended.
    fn read_error(&self, error: axum::Error) -> S3Error {
        tracing::debug!(%error, "request body ended early");
        self.incomplete()
    }

    /// Reads what is left, then verifies `x-amz-content-sha256`, `Content-MD5` and the
    /// checksum from the header or the trailer.
    pub async fn finish(mut self) -> Result<BodySummary, S3Error> {
        while self.next().await?.is_some() {}

        if let Some((context, expected)) = self.sha256.take() {
            let computed = context.finish();
            if computed.as_ref() != expected {
                return Err(s3_error!(
                    XAmzContentSHA256Mismatch,
                    "The provided 'x-amz-content-sha256' header does not match what was computed."
                )
                .with_detail("ClientComputedContentSHA256", hex::encode(expected))
                .with_detail("S3ComputedContentSHA256", hex::encode(computed)));
            }
        }

        let md5: [u8; 16] = self.md5.finalize().into();
        if let Some(expected) = self.exp.content_md5 {
            if expected != md5 {
                return Err(s3_error!(
                    BadDigest,
                    "The Content-MD5 you specified did not match what we received."
                )
                .with_detail("ExpectedDigest", STANDARD.encode(expected))
                .with_detail("CalculatedDigest", STANDARD.encode(md5)));
            }
        }

        let trailers = self
            .chunked
            .as_ref()
            .map(|(decoder, _)| decoder.trailers())
            .unwrap_or_default();
        let algorithm = self.checksum.algorithm();
        let expected = match &self.exp.checksum {
            Some((_, Some(raw))) => {
                if !trailers.is_empty() {
                    return Err(malformed_trailer());
                }
                Some(raw.clone())
            }
            Some((_, None)) => Some(trailer_checksum(trailers, algorithm)?),
            None if trailers.is_empty() => None,
            None => return Err(malformed_trailer()),
        };
        let computed = self.checksum.finish();
        if expected.is_some_and(|expected| expected != computed) {
            return Err(checksum_mismatch(algorithm));
        }

        Ok(BodySummary {
            len: self.len,
            md5,
            checksum: Some((algorithm, computed)),
            checksum_defaulted: self.checksum_defaulted,
        })
    }

    /// Reads a small body whole (an XML request), at most `limit` bytes, then verifies it as
    /// [`finish`](Self::finish) does.
    pub async fn read_all(mut self, limit: usize) -> Result<(Bytes, BodySummary), S3Error> {
        let mut out = BytesMut::new();
        while let Some(piece) = self.next().await? {
            if out.len() + piece.len() > limit {
                return Err(too_large(limit as u64));
            }
            out.extend_from_slice(&piece);
        }
        let summary = self.finish().await?;
        Ok((out.freeze(), summary))
    }
}

/// The value of the announced checksum trailer; the only trailer allowed.
fn trailer_checksum(
    trailers: &[(String, String)],
    algorithm: ChecksumAlgorithm,
) -> Result<Vec<u8>, S3Error> {
    let [(name, value)] = trailers else {
        return Err(malformed_trailer());
    };
    if !name.eq_ignore_ascii_case(algorithm.header_name()) {
        return Err(malformed_trailer());
    }
    algorithm.decode(value).ok_or_else(|| {
        s3_error!(
            InvalidRequest,
            "Value for {} trailing header is invalid.",
            algorithm.header_name()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::S3ErrorCode;
    use crate::http::checksum::{checksum, to_base64};

    const DATA: &[u8] = b"123456789";
    const MD5: &str = "JfnnlDI7RTiF9RgfG2JNCw==";
    const CRC32: &str = "y/Q5Jg==";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn stream_body(pieces: &[&[u8]]) -> axum::body::Body {
        let pieces: Vec<Result<Bytes, std::io::Error>> = pieces
            .iter()
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        axum::body::Body::from_stream(futures::stream::iter(pieces))
    }

    fn sha256_mode(data: &[u8]) -> PayloadMode {
        let mut hash = [0u8; 32];
        hash.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
        PayloadMode::Sha256(hash)
    }

    /// Reads `pieces` under the headers and payload mode; the summary or the first error.
    async fn read(
        pairs: &[(&str, &str)],
        payload: &PayloadMode,
        pieces: &[&[u8]],
        max_len: u64,
    ) -> Result<(Vec<u8>, BodySummary), S3Error> {
        let headers = headers(pairs);
        let exp = expectations_from_headers(&headers, max_len)?;
        let mut reader = BodyReader::new(stream_body(pieces), &headers, payload, exp)?;
        let mut out = Vec::new();
        while let Some(piece) = reader.next().await? {
            out.extend_from_slice(&piece);
        }
        Ok((out, reader.finish().await?))
    }

    fn expect_err(result: Result<(Vec<u8>, BodySummary), S3Error>) -> S3Error {
        result.expect_err("reading should fail")
    }

    #[tokio::test]
    async fn plain_body_with_md5_and_checksum() {
        let pairs = [
            ("content-length", "9"),
            ("content-md5", MD5),
            ("x-amz-checksum-crc32", CRC32),
        ];
        let (data, summary) = read(&pairs, &sha256_mode(DATA), &[b"1234", b"", b"56789"], 100)
            .await
            .unwrap();
        assert_eq!(data, DATA);
        assert_eq!(summary.len, 9);
        assert_eq!(to_base64(&summary.md5), MD5);
        assert_eq!(
            summary.checksum,
            Some((
                ChecksumAlgorithm::Crc32,
                checksum(ChecksumAlgorithm::Crc32, DATA)
            ))
        );
        assert!(!summary.checksum_defaulted);
    }

    #[tokio::test]
    async fn crc64nvme_by_default() {
        let (_, summary) = read(
            &[("content-length", "9")],
            &PayloadMode::Unsigned,
            &[DATA],
            100,
        )
        .await
        .unwrap();
        let (alg, raw) = summary.checksum.unwrap();
        assert_eq!(
            (alg, hex::encode(raw).as_str()),
            (ChecksumAlgorithm::Crc64Nvme, "ae8b14860a799888")
        );
        assert!(summary.checksum_defaulted);
    }

    #[tokio::test]
    async fn mismatches_are_reported_at_the_end() {
        let other: &[u8] = b"987654321";
        let err = expect_err(
            read(
                &[("content-md5", MD5)],
                &PayloadMode::Unsigned,
                &[other],
                100,
            )
            .await,
        );
        assert_eq!(err.code(), S3ErrorCode::BadDigest);
        assert_eq!(
            err.message(),
            "The Content-MD5 you specified did not match what we received."
        );
        let xml = err.to_xml("r");
        assert!(
            xml.contains(&format!(
                "<ExpectedDigest>{MD5}</ExpectedDigest><CalculatedDigest>"
            )),
            "{xml}"
        );

        let err = expect_err(
            read(
                &[("x-amz-checksum-crc32", CRC32)],
                &PayloadMode::Unsigned,
                &[other],
                100,
            )
            .await,
        );
        assert_eq!(
            (err.code(), err.message()),
            (
                S3ErrorCode::BadDigest,
                "The CRC32 you specified did not match the calculated checksum."
            )
        );

        let err = expect_err(read(&[], &sha256_mode(DATA), &[other], 100).await);
        assert_eq!(err.code(), S3ErrorCode::XAmzContentSHA256Mismatch);
        assert_eq!(
            err.message(),
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        );
        assert!(err.to_xml("r").contains(
            "<ClientComputedContentSHA256>15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225</ClientComputedContentSHA256>"
        ));
    }

    #[tokio::test]
    async fn every_algorithm_in_a_header() {
        for alg in ChecksumAlgorithm::ALL {
            let value = to_base64(&checksum(alg, DATA));
            let pairs = [(alg.header_name(), value.as_str())];
            let (_, summary) = read(&pairs, &PayloadMode::Unsigned, &[DATA], 100)
                .await
                .unwrap();
            assert_eq!(summary.checksum.unwrap().0, alg);
            let wrong = to_base64(&vec![1u8; alg.digest_len()]);
            let pairs = [(alg.header_name(), wrong.as_str())];
            let err = expect_err(read(&pairs, &PayloadMode::Unsigned, &[DATA], 100).await);
            assert_eq!(
                err.message(),
                format!("The {alg} you specified did not match the calculated checksum.")
            );
        }
    }

    fn header_error(pairs: &[(&str, &str)]) -> S3Error {
        expectations_from_headers(&headers(pairs), 100).unwrap_err()
    }

    #[test]
    fn invalid_content_md5() {
        for value in [
            "not base64!",
            "YWJyYWNhZGFicmE=",
            "25f9e794323b453885f5181f1b624d0b",
            "",
        ] {
            let err = header_error(&[("content-md5", value)]);
            assert_eq!(
                (err.code(), err.message()),
                (
                    S3ErrorCode::InvalidDigest,
                    "The Content-MD5 you specified was invalid."
                ),
                "{value}"
            );
            assert!(err
                .to_xml("r")
                .contains(&format!("<Content-MD5>{value}</Content-MD5>")));
        }
    }

    /// Request headers, and the code and message of the error they get.
    type HeaderCase = (Vec<(&'static str, &'static str)>, S3ErrorCode, String);

    #[test]
    fn checksum_header_rules() {
        let single =
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.";
        let cases: Vec<HeaderCase> = vec![
            (
                vec![("x-amz-checksum-crc32", CRC32), ("x-amz-checksum-crc32c", "4waSgw==")],
                S3ErrorCode::InvalidRequest,
                single.into(),
            ),
            (
                vec![("x-amz-checksum-crc32", CRC32), ("x-amz-trailer", "x-amz-checksum-crc32c")],
                S3ErrorCode::InvalidRequest,
                single.into(),
            ),
            (
                vec![("x-amz-trailer", "x-amz-checksum-crc32, x-amz-checksum-sha1")],
                S3ErrorCode::InvalidRequest,
                single.into(),
            ),
            (
                vec![("x-amz-sdk-checksum-algorithm", "CRC32")],
                S3ErrorCode::InvalidRequest,
                "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or \
                 x-amz-trailer headers were found."
                    .into(),
            ),
            (
                vec![("x-amz-sdk-checksum-algorithm", "MD4"), ("x-amz-checksum-crc32", CRC32)],
                S3ErrorCode::InvalidRequest,
                "Checksum algorithm provided is unsupported. Please try again with any of the valid \
                 types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
                    .into(),
            ),
            (
                vec![("x-amz-checksum-crc32", "y/Q5Jg")],
                S3ErrorCode::InvalidRequest,
                "Value for x-amz-checksum-crc32 header is invalid.".into(),
            ),
            (
                vec![("x-amz-checksum-crc32", "cbf43926")],
                S3ErrorCode::InvalidRequest,
                "Value for x-amz-checksum-crc32 header is invalid.".into(),
            ),
            (
                vec![("x-amz-trailer", "x-amz-meta-foo")],
                S3ErrorCode::InvalidRequest,
                "The value specified in the x-amz-trailer header is not supported".into(),
            ),
            (
                vec![("content-length", "101")],
                S3ErrorCode::EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size".into(),
            ),
        ];
        for (pairs, code, message) in cases {
            let err = header_error(&pairs);
            assert_eq!(
                (err.code(), err.message()),
                (code, message.as_str()),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn an_individual_checksum_wins_over_the_sdk_algorithm() {
        let exp = expectations_from_headers(
            &headers(&[
                ("x-amz-sdk-checksum-algorithm", "SHA256"),
                ("x-amz-checksum-crc32", CRC32),
                ("content-length", "9"),
            ]),
            100,
        )
        .unwrap();
        assert_eq!(
            exp.checksum.as_ref().map(|(alg, _)| *alg),
            Some(ChecksumAlgorithm::Crc32)
        );
    }

    #[test]
    fn expectations_of_the_sdk_headers() {
        let exp = expectations_from_headers(
            &headers(&[
                ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
                ("content-length", "60"),
                ("x-amz-decoded-content-length", "9"),
                ("x-amz-trailer", "x-amz-checksum-crc32"),
                ("x-amz-sdk-checksum-algorithm", "CRC32"),
            ]),
            100,
        )
        .unwrap();
        assert_eq!(
            exp,
            Expectations {
                content_md5: None,
                checksum: Some((ChecksumAlgorithm::Crc32, None)),
                decoded_length: Some(9),
                max_len: 100,
            }
        );
        let exp = expectations_from_headers(
            &headers(&[
                ("content-length", "9"),
                ("x-amz-checksum-sha1", "98O8HYCOBHMq32eZZczDTKeuNEE="),
            ]),
            100,
        )
        .unwrap();
        assert_eq!(exp.decoded_length, Some(9));
        assert_eq!(
            exp.checksum.unwrap().1.unwrap(),
            checksum(ChecksumAlgorithm::Sha1, DATA)
        );
    }

    #[tokio::test]
    async fn short_long_and_broken_plain_bodies() {
        let err = expect_err(
            read(
                &[("content-length", "10")],
                &PayloadMode::Unsigned,
                &[DATA],
                100,
            )
            .await,
        );
        assert_eq!(
            (err.code(), err.message()),
            (
                S3ErrorCode::IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP header"
            )
        );
        let err = expect_err(read(&[], &PayloadMode::Unsigned, &[DATA, DATA], 10).await);
        assert_eq!(err.code(), S3ErrorCode::EntityTooLarge);

        let headers = headers(&[("content-length", "9")]);
        let exp = expectations_from_headers(&headers, 100).unwrap();
        let pieces: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"1234")),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
        ];
        let broken = axum::body::Body::from_stream(futures::stream::iter(pieces));
        let mut reader = BodyReader::new(broken, &headers, &PayloadMode::Unsigned, exp).unwrap();
        assert_eq!(reader.next().await.unwrap().as_deref(), Some(&b"1234"[..]));
        assert_eq!(
            reader.next().await.unwrap_err().code(),
            S3ErrorCode::IncompleteBody
        );
    }

    #[tokio::test]
    async fn chunked_transfer_without_aws_chunked_is_not_implemented() {
        let pairs = [("transfer-encoding", "chunked")];
        let err = expect_err(read(&pairs, &PayloadMode::Unsigned, &[DATA], 100).await);
        assert_eq!(err.code(), S3ErrorCode::NotImplemented);
        assert!(err
            .to_xml("r")
            .contains("<Header>Transfer-Encoding</Header>"));
    }

    #[tokio::test]
    async fn read_all_reads_and_verifies() {
        let headers = headers(&[("content-md5", MD5)]);
        let exp = expectations_from_headers(&headers, 100).unwrap();
        let reader = BodyReader::new(
            stream_body(&[b"12345", b"6789"]),
            &headers,
            &PayloadMode::Unsigned,
            exp.clone(),
        )
        .unwrap();
        let (bytes, summary) = reader.read_all(9).await.unwrap();
        assert_eq!((&bytes[..], summary.len), (DATA, 9));
        let reader = BodyReader::new(
            stream_body(&[b"12345", b"6789"]),
            &headers,
            &PayloadMode::Unsigned,
            exp.clone(),
        )
        .unwrap();
        assert_eq!(
            reader.read_all(8).await.unwrap_err().code(),
            S3ErrorCode::EntityTooLarge
        );
        let reader = BodyReader::new(
            stream_body(&[b"12345", b"6780"]),
            &headers,
            &PayloadMode::Unsigned,
            exp,
        )
        .unwrap();
        assert_eq!(
            reader.read_all(9).await.unwrap_err().code(),
            S3ErrorCode::BadDigest
        );
    }

    // ---- aws-chunked ----

    /// The headers aws-sdk-s3 sends with an unsigned streaming body and a CRC32 trailer.
    fn sdk_unsigned_headers(decoded: &str) -> Vec<(&'static str, String)> {
        vec![
            ("content-encoding", "aws-chunked".into()),
            ("transfer-encoding", "chunked".into()),
            (
                "x-amz-content-sha256",
                "STREAMING-UNSIGNED-PAYLOAD-TRAILER".into(),
            ),
            ("x-amz-decoded-content-length", decoded.into()),
            ("x-amz-trailer", "x-amz-checksum-crc32".into()),
            ("x-amz-sdk-checksum-algorithm", "CRC32".into()),
        ]
    }

    async fn read_unsigned(decoded: &str, body: &[u8]) -> Result<(Vec<u8>, BodySummary), S3Error> {
        let owned = sdk_unsigned_headers(decoded);
        let pairs: Vec<(&str, &str)> = owned.iter().map(|(n, v)| (*n, v.as_str())).collect();
        // Pieces of 7 bytes: framing split anywhere.
        let pieces: Vec<&[u8]> = body.chunks(7).collect();
        read(
            &pairs,
            &PayloadMode::StreamingUnsignedTrailer,
            &pieces,
            1 << 20,
        )
        .await
    }

    #[tokio::test]
    async fn streaming_unsigned_trailer_as_the_sdk_sends_it() {
        let body = format!("9\r\n123456789\r\n0\r\nx-amz-checksum-crc32:{CRC32}\r\n\r\n");
        let (data, summary) = read_unsigned("9", body.as_bytes()).await.unwrap();
        assert_eq!(data, DATA);
        assert_eq!(
            summary.checksum.unwrap(),
            (
                ChecksumAlgorithm::Crc32,
                checksum(ChecksumAlgorithm::Crc32, DATA)
            )
        );
        assert!(!summary.checksum_defaulted);

        let big: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let b64 = to_base64(&checksum(ChecksumAlgorithm::Crc32, &big));
        let mut body = b"4E20\r\n".to_vec();
        body.extend_from_slice(&big);
        body.extend_from_slice(format!("\r\n0\r\nx-amz-checksum-crc32:{b64}\r\n\r\n").as_bytes());
        let (data, _) = read_unsigned("20000", &body).await.unwrap();
        assert_eq!(data, big);
    }

    #[tokio::test]
    async fn bad_trailers() {
        let body = "9\r\n123456789\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n";
        let err = expect_err(read_unsigned("9", body.as_bytes()).await);
        assert_eq!(
            err.message(),
            "The CRC32 you specified did not match the calculated checksum."
        );

        let body = "9\r\n123456789\r\n0\r\nx-amz-checksum-crc32:y/Q5Jg\r\n\r\n";
        let err = expect_err(read_unsigned("9", body.as_bytes()).await);
        assert_eq!(
            (err.code(), err.message()),
            (
                S3ErrorCode::InvalidRequest,
                "Value for x-amz-checksum-crc32 trailing header is invalid."
            )
        );

        for body in [
            "9\r\n123456789\r\n0\r\n\r\n",
            "9\r\n123456789\r\n0\r\nx-amz-checksum-crc32c:4waSgw==\r\n\r\n",
        ] {
            let err = expect_err(read_unsigned("9", body.as_bytes()).await);
            assert_eq!(err.code(), S3ErrorCode::MalformedTrailerError, "{body}");
        }
    }

    #[tokio::test]
    async fn truncated_and_padded_chunked_bodies() {
        let full = format!("9\r\n123456789\r\n0\r\nx-amz-checksum-crc32:{CRC32}\r\n\r\n");
        for cut in [0, 5, 12, 16, full.len() - 1] {
            let err = expect_err(read_unsigned("9", &full.as_bytes()[..cut]).await);
            assert_eq!(err.code(), S3ErrorCode::IncompleteBody, "cut {cut}");
            assert_eq!(err.message(), "The request body terminated unexpectedly");
        }
        let padded = format!("{full}more");
        let err = expect_err(read_unsigned("9", padded.as_bytes()).await);
        assert_eq!(err.code(), S3ErrorCode::IncompleteBody);
        // More payload than x-amz-decoded-content-length, and less.
        assert_eq!(
            expect_err(read_unsigned("8", full.as_bytes()).await).code(),
            S3ErrorCode::IncompleteBody
        );
        assert_eq!(
            expect_err(read_unsigned("10", full.as_bytes()).await).code(),
            S3ErrorCode::IncompleteBody
        );
    }

    #[tokio::test]
    async fn streaming_needs_a_decoded_length() {
        let pairs = [("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")];
        let err = expect_err(
            read(
                &pairs,
                &PayloadMode::StreamingUnsignedTrailer,
                &[b"0\r\n\r\n"],
                100,
            )
            .await,
        );
        assert_eq!(
            (err.code(), err.message()),
            (
                S3ErrorCode::MissingContentLength,
                "You must provide the Content-Length HTTP header."
            )
        );
    }

    // ---- Signed chunks, computed here with ring's HMAC ----

    const KEY: [u8; 32] = [0x42; 32];
    const SCOPE: &str = "20240101/us-east-1/s3/aws4_request";
    const TIME: &str = "20240101T000000Z";
    const SEED: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn hmac_hex(string_to_sign: &str) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &KEY);
        hex::encode(ring::hmac::sign(&key, string_to_sign.as_bytes()))
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
    }

    fn signed_mode(trailer: bool) -> PayloadMode {
        PayloadMode::StreamingSigned {
            signing_key: zeroize::Zeroizing::new(KEY),
            scope: SCOPE.into(),
            amz_date: TIME.into(),
            seed_signature: SEED.into(),
            trailer,
        }
    }

    /// An aws-chunked body with chunk signatures (and a signed trailer when `trailer` is set).
    fn signed_body(chunks: &[&[u8]], trailer: Option<(&str, &str)>) -> Vec<u8> {
        let mut previous = SEED.to_owned();
        let mut body = Vec::new();
        let empty = sha256_hex(b"");
        for chunk in chunks.iter().chain([&&b""[..]]) {
            let sts = format!(
                "AWS4-HMAC-SHA256-PAYLOAD\n{TIME}\n{SCOPE}\n{previous}\n{empty}\n{}",
                sha256_hex(chunk)
            );
            previous = hmac_hex(&sts);
            body.extend_from_slice(
                format!("{:x};chunk-signature={previous}\r\n", chunk.len()).as_bytes(),
            );
            body.extend_from_slice(chunk);
            if !chunk.is_empty() {
                body.extend_from_slice(b"\r\n");
            }
        }
        if let Some((name, value)) = trailer {
            let line = format!("{name}:{value}\n");
            let sts = format!(
                "AWS4-HMAC-SHA256-TRAILER\n{TIME}\n{SCOPE}\n{previous}\n{}",
                sha256_hex(line.as_bytes())
            );
            body.extend_from_slice(
                format!(
                    "{name}:{value}\r\nx-amz-trailer-signature:{}\r\n",
                    hmac_hex(&sts)
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(b"\r\n");
        body
    }

    async fn read_signed(
        trailer: bool,
        decoded: &str,
        body: &[u8],
    ) -> Result<(Vec<u8>, BodySummary), S3Error> {
        let (sha, trailer_header) = if trailer {
            (
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                Some(("x-amz-trailer", "x-amz-checksum-crc32c")),
            )
        } else {
            ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD", None)
        };
        let mut pairs = vec![
            ("content-encoding", "aws-chunked"),
            ("x-amz-content-sha256", sha),
            ("x-amz-decoded-content-length", decoded),
        ];
        pairs.extend(trailer_header);
        let pieces: Vec<&[u8]> = body.chunks(1000).collect();
        read(&pairs, &signed_mode(trailer), &pieces, 1 << 20).await
    }

    #[tokio::test]
    async fn signed_chunks_verify() {
        let first = vec![b'x'; 9000];
        let body = signed_body(&[&first, DATA], None);
        let (data, summary) = read_signed(false, "9009", &body).await.unwrap();
        assert_eq!(data, [&first[..], DATA].concat());
        assert!(summary.checksum_defaulted);

        let crc32c = to_base64(&checksum(ChecksumAlgorithm::Crc32c, DATA));
        let body = signed_body(&[DATA], Some(("x-amz-checksum-crc32c", &crc32c)));
        let (_, summary) = read_signed(true, "9", &body).await.unwrap();
        assert_eq!(summary.checksum.unwrap().0, ChecksumAlgorithm::Crc32c);
    }

    #[tokio::test]
    async fn signed_chunks_tampered_or_truncated_fail() {
        let first = vec![b'x'; 9000];
        let mut body = signed_body(&[&first, DATA], None);
        let at = body.len() - 100;
        body[at] ^= 1;
        let err = expect_err(read_signed(false, "9009", &body).await);
        assert_eq!(err.code(), S3ErrorCode::SignatureDoesNotMatch);

        let body = signed_body(&[&first, DATA], None);
        let err = expect_err(read_signed(false, "9009", &body[..body.len() - 90]).await);
        assert_eq!(err.code(), S3ErrorCode::IncompleteBody);

        // A valid signed trailer with a checksum of other data.
        let wrong = to_base64(&checksum(ChecksumAlgorithm::Crc32c, b"other"));
        let body = signed_body(&[DATA], Some(("x-amz-checksum-crc32c", &wrong)));
        let err = expect_err(read_signed(true, "9", &body).await);
        assert_eq!(
            err.message(),
            "The CRC32C you specified did not match the calculated checksum."
        );

        // x-amz-trailer on a body that cannot have a trailer.
        let headers = headers(&[
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("x-amz-decoded-content-length", "9"),
            ("x-amz-trailer", "x-amz-checksum-crc32"),
        ]);
        let exp = expectations_from_headers(&headers, 100).unwrap();
        let err = BodyReader::new(stream_body(&[]), &headers, &signed_mode(false), exp)
            .err()
            .unwrap();
        assert_eq!(err.code(), S3ErrorCode::MalformedTrailerError);
    }

    #[test]
    fn stored_content_encoding_drops_aws_chunked() {
        let cases = [
            (None, None),
            (Some("aws-chunked"), None),
            (Some("aws-chunked,gzip"), Some("gzip")),
            (Some("gzip, aws-chunked"), Some("gzip")),
            (Some("aws-chunked, aws-chunked"), None),
            (Some("deflate, gzip"), Some("deflate, gzip")),
        ];
        for (sent, stored) in cases {
            let pairs: Vec<(&str, &str)> =
                sent.map(|v| ("content-encoding", v)).into_iter().collect();
            assert_eq!(
                stored_content_encoding(&headers(&pairs)).as_deref(),
                stored,
                "{sent:?}"
            );
        }
    }
}
