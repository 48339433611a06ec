//! The decoder of `aws-chunked` bodies:
//!
//! ```text
//! <hex size>[;chunk-signature=<sig>]\r\n<data>\r\n ... 0[;chunk-signature=<sig>]\r\n
//! [<trailer>:<value>\r\n ...][x-amz-trailer-signature:<sig>\r\n]\r\n
//! ```
//!
//! It is fed the raw body as it arrives and hands out the payload. Signed chunks are held until
//! their signature is checked, so at most one chunk is ever buffered (and a signed chunk may
//! not exceed [`MAX_SIGNED_CHUNK`]); unsigned chunks pass through as they arrive. Like S3, every
//! chunk but the last must hold at least [`MIN_CHUNK`] bytes.

use bytes::{Buf, Bytes, BytesMut};

use super::{chunked_body_incomplete, malformed_trailer, too_large};
use crate::error::S3Error;
use crate::s3_error;
use crate::sigv4::ChunkSigner;

/// The smallest size of a chunk that is not the last one.
pub(crate) const MIN_CHUNK: u64 = 8192;
/// The largest signed chunk held for verification (SDKs send 64 KiB).
pub(crate) const MAX_SIGNED_CHUNK: u64 = 16 << 20;
/// The longest chunk header or trailer line.
const MAX_LINE: usize = 4096;
/// The most trailer bytes.
const MAX_TRAILERS: usize = 16 << 10;
const SIGNATURE_TRAILER: &str = "x-amz-trailer-signature";

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Before `<hex size>[;ext]\r\n`.
    Header,
    /// Inside the data of a chunk; a signed chunk carries its signature.
    Data {
        remaining: u64,
        signature: Option<String>,
    },
    /// Before the `\r\n` after a chunk's data.
    DataEnd,
    /// After the final chunk: trailer lines up to an empty line.
    Trailers,
    Done,
}

/// Decodes one aws-chunked body.
pub(crate) struct AwsChunkedDecoder {
    signer: Option<ChunkSigner>,
    /// Whether trailer lines may follow the final chunk.
    trailers_allowed: bool,
    /// `x-amz-decoded-content-length`.
    decoded_length: u64,
    max_len: u64,
    state: State,
    /// Data chunks seen, and the size of the last one.
    chunks: u64,
    last_size: u64,
    /// The sum of the sizes the chunk headers announced.
    announced: u64,
    trailers: Vec<(String, String)>,
    trailer_bytes: usize,
    trailer_signature: Option<String>,
}

impl AwsChunkedDecoder {
    /// A decoder that verifies chunk signatures when `signer` is given.
    pub(crate) fn new(
        signer: Option<ChunkSigner>,
        trailers_allowed: bool,
        decoded_length: u64,
        max_len: u64,
    ) -> Self {
        AwsChunkedDecoder {
            signer,
            trailers_allowed,
            decoded_length,
            max_len,
            state: State::Header,
            chunks: 0,
            last_size: 0,
            announced: 0,
            trailers: Vec::new(),
            trailer_bytes: 0,
            trailer_signature: None,
        }
    }

    /// Whether the final chunk and the trailers have been read.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer lines (without `x-amz-trailer-signature`), once done.
    pub(crate) fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    /// Consumes what it can from `buf` and returns the next piece of payload, or `None` when it
    /// needs more input or is done.
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, S3Error> {
        loop {
            match &mut self.state {
                State::Header => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    self.start_chunk(&line)?;
                }
                State::Data {
                    remaining,
                    signature,
                } => {
                    let Some(signer) = &mut self.signer else {
                        if buf.is_empty() {
                            return Ok(None);
                        }
                        let n = buf
                            .len()
                            .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                        *remaining -= n as u64;
                        if *remaining == 0 {
                            self.state = State::DataEnd;
                        }
                        return Ok(Some(buf.split_to(n).freeze()));
                    };
                    // `remaining` is at most MAX_SIGNED_CHUNK here.
                    let size = *remaining as usize;
                    if buf.len() < size + 2 {
                        buf.reserve(size + 2 - buf.len());
                        return Ok(None);
                    }
                    let data = buf.split_to(size).freeze();
                    expect_crlf(buf)?;
                    signer.verify_chunk(&data, signature.as_deref().unwrap_or(""))?;
                    self.state = State::Header;
                    return Ok(Some(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    expect_crlf(buf)?;
                    self.state = State::Header;
                }
                State::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.end_trailers()?;
                    } else {
                        self.add_trailer(&line)?;
                    }
                }
                State::Done => {
                    if !buf.is_empty() {
                        return Err(chunked_body_incomplete());
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// Checks the state at the end of the input (the unread rest is in `buf`).
    pub(crate) fn at_eof(&mut self, buf: &BytesMut) -> Result<(), S3Error> {
        // aws-sdk-rust ends a signed body whose trailer map is empty right after the final
        // chunk, without the empty line.
        let nothing_after_final = self.signer.is_some()
            && self.trailers_allowed
            && self.state == State::Trailers
            && self.trailer_bytes == 0
            && self.trailer_signature.is_none()
            && buf.is_empty();
        if nothing_after_final {
            self.state = State::Done;
        }
        if self.is_done() {
            Ok(())
        } else {
            Err(chunked_body_incomplete())
        }
    }

    fn start_chunk(&mut self, line: &[u8]) -> Result<(), S3Error> {
        let line = std::str::from_utf8(line).map_err(|_| chunked_body_incomplete())?;
        let (size, extensions) = line.split_once(';').unwrap_or((line, ""));
        let size = (!size.is_empty() && size.len() <= 16)
            .then(|| u64::from_str_radix(size, 16).ok())
            .flatten()
            .ok_or_else(chunked_body_incomplete)?;
        let signature = extensions
            .split(';')
            .find_map(|ext| ext.trim().strip_prefix("chunk-signature="))
            .map(str::to_owned);
        if self.signer.is_some() && signature.is_none() {
            return Err(s3_error!(
                SignatureDoesNotMatch,
                "The request signature we calculated does not match the signature you provided. \
                 Check your key and signing method."
            ));
        }
        if size == 0 {
            if let Some(signer) = &mut self.signer {
                signer.verify_chunk(b"", signature.as_deref().unwrap_or(""))?;
            }
            if self.announced != self.decoded_length {
                return Err(chunked_body_incomplete());
            }
            self.state = State::Trailers;
            return Ok(());
        }
        if self.chunks > 0 && self.last_size < MIN_CHUNK {
            return Err(s3_error!(
                InvalidChunkSizeError,
                "Only the last chunk is allowed to have a size less than 8192 bytes"
            )
            .with_detail("Chunk", self.chunks.to_string())
            .with_detail("BadChunkSize", self.last_size.to_string()));
        }
        if self.signer.is_some() && size > MAX_SIGNED_CHUNK {
            return Err(s3_error!(
                InvalidChunkSizeError,
                "Chunk size exceeds the maximum allowed size of {MAX_SIGNED_CHUNK} bytes"
            )
            .with_detail("Chunk", (self.chunks + 1).to_string())
            .with_detail("BadChunkSize", size.to_string()));
        }
        self.announced = self.announced.saturating_add(size);
        if self.announced > self.max_len {
            return Err(too_large(self.max_len));
        }
        if self.announced > self.decoded_length {
            return Err(chunked_body_incomplete());
        }
        self.chunks += 1;
        self.last_size = size;
        self.state = State::Data {
            remaining: size,
            signature,
        };
        Ok(())
    }

    fn add_trailer(&mut self, line: &[u8]) -> Result<(), S3Error> {
        self.trailer_bytes += line.len() + 2;
        if !self.trailers_allowed || self.trailer_bytes > MAX_TRAILERS {
            return Err(malformed_trailer());
        }
        let line = std::str::from_utf8(line).map_err(|_| malformed_trailer())?;
        let (name, value) = line.split_once(':').ok_or_else(malformed_trailer)?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() {
            return Err(malformed_trailer());
        }
        if name.eq_ignore_ascii_case(SIGNATURE_TRAILER) {
            self.trailer_signature = Some(value.to_owned());
        } else if self.trailer_signature.is_some() {
            // The signature covers the lines before it; nothing may follow it.
            return Err(malformed_trailer());
        } else {
            self.trailers.push((name.to_owned(), value.to_owned()));
        }
        Ok(())
    }

    fn end_trailers(&mut self) -> Result<(), S3Error> {
        if let Some(signer) = &mut self.signer {
            if !self.trailers.is_empty() || self.trailer_signature.is_some() {
                let provided = self.trailer_signature.as_deref().unwrap_or("");
                signer.verify_trailer(&self.trailers, provided)?;
            }
        }
        self.state = State::Done;
        Ok(())
    }
}

/// Takes a `\r\n`-terminated line off `buf` (without the terminator), or `None` if the line is
/// not complete yet.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, S3Error> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_LINE {
            return Err(chunked_body_incomplete());
        }
        return Ok(None);
    };
    if end > MAX_LINE {
        return Err(chunked_body_incomplete());
    }
    let line = buf.split_to(end);
    buf.advance(2);
    Ok(Some(line))
}

fn expect_crlf(buf: &mut BytesMut) -> Result<(), S3Error> {
    if !buf.starts_with(b"\r\n") {
        return Err(chunked_body_incomplete());
    }
    buf.advance(2);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::S3ErrorCode;
    use crate::sigv4::PayloadMode;

    fn unsigned(decoded: u64) -> AwsChunkedDecoder {
        AwsChunkedDecoder::new(None, true, decoded, u64::MAX)
    }

    /// Feeds `body` in pieces of `step` bytes; returns the payload or the first error.
    fn run(decoder: &mut AwsChunkedDecoder, body: &[u8], step: usize) -> Result<Vec<u8>, S3Error> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in body.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(data) = decoder.decode(&mut buf)? {
                out.extend_from_slice(&data);
            }
        }
        decoder.at_eof(&buf)?;
        Ok(out)
    }

    fn encode_unsigned(chunks: &[&[u8]], trailers: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for chunk in chunks {
            body.extend_from_slice(format!("{:X}\r\n", chunk.len()).as_bytes());
            body.extend_from_slice(chunk);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n");
        body.extend_from_slice(trailers.as_bytes());
        body.extend_from_slice(b"\r\n");
        body
    }

    #[test]
    fn unsigned_chunks_in_any_pieces() {
        let a = vec![b'a'; 10_000];
        let b = b"tail".to_vec();
        let body = encode_unsigned(&[&a, &b], "x-amz-checksum-crc32:abc=\r\n");
        for step in [1, 2, 3, 7, 100, 8193, body.len()] {
            let mut decoder = unsigned(10_004);
            let out = run(&mut decoder, &body, step).unwrap();
            assert_eq!(out, [a.clone(), b.clone()].concat(), "step {step}");
            assert_eq!(
                decoder.trailers(),
                [("x-amz-checksum-crc32".to_owned(), "abc=".to_owned())]
            );
        }
    }

    #[test]
    fn unsigned_data_is_not_held_back() {
        let mut decoder = unsigned(20_000);
        let mut buf = BytesMut::from(&b"4E20\r\nhello"[..]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn empty_body() {
        let mut decoder = unsigned(0);
        assert_eq!(run(&mut decoder, b"0\r\n\r\n", 1).unwrap(), b"");
        assert!(decoder.is_done());
    }

    #[test]
    fn truncated_bodies_are_incomplete() {
        let a = vec![b'a'; 9000];
        let body = encode_unsigned(&[&a], "");
        for cut in [0, 3, 6, 100, 9006, 9008, body.len() - 2, body.len() - 1] {
            let err = run(&mut unsigned(9000), &body[..cut], 50).unwrap_err();
            assert_eq!(err.code(), S3ErrorCode::IncompleteBody, "cut {cut}");
            assert_eq!(err.message(), "The request body terminated unexpectedly");
        }
    }

    #[test]
    fn decoded_length_must_match() {
        let a = vec![b'a'; 9000];
        let body = encode_unsigned(&[&a], "");
        for decoded in [8999, 9001] {
            let err = run(&mut unsigned(decoded), &body, 100).unwrap_err();
            assert_eq!(err.code(), S3ErrorCode::IncompleteBody, "{decoded}");
        }
        let err = run(
            &mut AwsChunkedDecoder::new(None, true, 9000, 8999),
            &body,
            100,
        )
        .unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::EntityTooLarge);
    }

    #[test]
    fn small_chunks_before_the_last_are_refused() {
        let small = vec![b's'; 8191];
        let body = encode_unsigned(&[&small, b"x"], "");
        let err = run(&mut unsigned(8192), &body, 1000).unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::InvalidChunkSizeError);
        assert!(err
            .to_xml("r")
            .contains("<Chunk>1</Chunk><BadChunkSize>8191</BadChunkSize>"));
        let ok = vec![b's'; 8192];
        let body = encode_unsigned(&[&ok, b"x"], "");
        assert_eq!(run(&mut unsigned(8193), &body, 1000).unwrap().len(), 8193);
    }

    #[test]
    fn malformed_framing() {
        for body in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXY0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\nextra",
            b"11111111111111111\r\n",
        ] {
            let err = run(&mut unsigned(5), body, 3).unwrap_err();
            assert_eq!(err.code(), S3ErrorCode::IncompleteBody, "{body:?}");
        }
        let long_line = vec![b'1'; MAX_LINE + 10];
        assert!(run(&mut unsigned(5), &long_line, 100).is_err());
    }

    #[test]
    fn trailers_must_be_allowed_and_well_formed() {
        let body = encode_unsigned(&[b"hello"], "x-amz-checksum-crc32:abc=\r\n");
        let mut no_trailers = AwsChunkedDecoder::new(None, false, 5, u64::MAX);
        let err = run(&mut no_trailers, &body, 4).unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::MalformedTrailerError);
        let body = encode_unsigned(&[b"hello"], "no colon here\r\n");
        let err = run(&mut unsigned(5), &body, 4).unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::MalformedTrailerError);
    }

    // ---- Signed chunks, with the streaming example of the S3 documentation ----

    const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
    const SEED_TRAILER: &str = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e";

    fn example_mode(seed: &str, trailer: bool) -> PayloadMode {
        PayloadMode::StreamingSigned {
            signing_key: example_key(),
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            amz_date: "20130524T000000Z".into(),
            seed_signature: seed.into(),
            trailer,
        }
    }

    fn example_key() -> zeroize::Zeroizing<[u8; 32]> {
        // kSigning for wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY, 20130524/us-east-1/s3.
        let secret = "AWS4wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        let mut key = secret.as_bytes().to_vec();
        for part in ["20130524", "us-east-1", "s3", "aws4_request"] {
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
            key = ring::hmac::sign(&k, part.as_bytes()).as_ref().to_vec();
        }
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&key);
        out
    }

    /// The documented bodies: 65536 and 1024 bytes of `a`, then the final chunk.
    fn example_body(signatures: [&str; 3], trailers: &[&str]) -> Vec<u8> {
        let a = vec![b'a'; 65536];
        let mut body = Vec::new();
        body.extend_from_slice(format!("10000;chunk-signature={}\r\n", signatures[0]).as_bytes());
        body.extend_from_slice(&a);
        body.extend_from_slice(format!("\r\n400;chunk-signature={}\r\n", signatures[1]).as_bytes());
        body.extend_from_slice(&a[..1024]);
        body.extend_from_slice(format!("\r\n0;chunk-signature={}\r\n", signatures[2]).as_bytes());
        for line in trailers {
            body.extend_from_slice(line.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body
    }

    const SIGNATURES: [&str; 3] = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ];
    const TRAILER_SIGNATURES: [&str; 3] = [
        "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
        "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
        "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
    ];
    const TRAILER_SIGNATURE: &str =
        "x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435";

    fn signed(seed: &str, trailer: bool) -> AwsChunkedDecoder {
        let signer = ChunkSigner::from_mode(&example_mode(seed, trailer));
        AwsChunkedDecoder::new(signer, trailer, 66560, u64::MAX)
    }

    #[test]
    fn documented_signed_body_decodes() {
        let body = example_body(SIGNATURES, &[]);
        for step in [1000, 65536 + 100, body.len()] {
            let out = run(&mut signed(SEED, false), &body, step).unwrap();
            assert_eq!(out, vec![b'a'; 66560], "step {step}");
        }
    }

    #[test]
    fn documented_signed_body_with_trailer_decodes() {
        let body = example_body(
            TRAILER_SIGNATURES,
            &["x-amz-checksum-crc32c:sOO8/Q==", TRAILER_SIGNATURE],
        );
        let mut decoder = signed(SEED_TRAILER, true);
        assert_eq!(run(&mut decoder, &body, 4096).unwrap().len(), 66560);
        assert_eq!(
            decoder.trailers(),
            [("x-amz-checksum-crc32c".to_owned(), "sOO8/Q==".to_owned())]
        );
    }

    #[test]
    fn signed_chunks_are_held_until_verified() {
        let body = example_body(SIGNATURES, &[]);
        let mut decoder = signed(SEED, false);
        let mut buf = BytesMut::from(&body[..60_000]);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&body[60_000..66_000]);
        let first = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(first.len(), 65536);
    }

    #[test]
    fn tampered_signed_bodies_fail() {
        let mut sigs = SIGNATURES;
        let bad = "0".repeat(64);
        for i in 0..3 {
            sigs[i] = &bad;
            let body = example_body(sigs, &[]);
            let err = run(&mut signed(SEED, false), &body, 70_000).unwrap_err();
            assert_eq!(err.code(), S3ErrorCode::SignatureDoesNotMatch, "chunk {i}");
            sigs = SIGNATURES;
        }
        // The data changed under a valid signature.
        let mut body = example_body(SIGNATURES, &[]);
        let at = body.len() - 200;
        body[at] = b'b';
        let err = run(&mut signed(SEED, false), &body, 70_000).unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::SignatureDoesNotMatch);
        // Chunks without signatures.
        let unsigned_body = encode_unsigned(&[&vec![b'a'; 66560]], "");
        let err = run(&mut signed(SEED, false), &unsigned_body, 70_000).unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::SignatureDoesNotMatch);
        // Another seed (another request).
        let body = example_body(SIGNATURES, &[]);
        let err = run(&mut signed(SEED_TRAILER, false), &body, 70_000).unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn tampered_trailers_fail() {
        for trailers in [
            ["x-amz-checksum-crc32c:sOO8/A==", TRAILER_SIGNATURE].as_slice(),
            &["x-amz-checksum-crc32c:sOO8/Q=="],
            &["x-amz-checksum-crc32:sOO8/Q==", TRAILER_SIGNATURE],
            &[TRAILER_SIGNATURE],
        ] {
            let body = example_body(TRAILER_SIGNATURES, trailers);
            let err = run(&mut signed(SEED_TRAILER, true), &body, 4096).unwrap_err();
            assert_eq!(
                err.code(),
                S3ErrorCode::SignatureDoesNotMatch,
                "{trailers:?}"
            );
        }
        // A line after the signature is not covered by it.
        let body = example_body(
            TRAILER_SIGNATURES,
            &[
                "x-amz-checksum-crc32c:sOO8/Q==",
                TRAILER_SIGNATURE,
                "x-amz-meta:1",
            ],
        );
        let err = run(&mut signed(SEED_TRAILER, true), &body, 4096).unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::MalformedTrailerError);
    }

    #[test]
    fn signed_body_without_trailer_lines_may_end_after_the_final_chunk() {
        let mut body = example_body(TRAILER_SIGNATURES, &[]);
        body.truncate(body.len() - 2);
        assert_eq!(
            run(&mut signed(SEED_TRAILER, true), &body, 4096)
                .unwrap()
                .len(),
            66560
        );
    }

    #[test]
    fn oversized_signed_chunks_are_refused_before_buffering() {
        let mut decoder = AwsChunkedDecoder::new(
            ChunkSigner::from_mode(&example_mode(SEED, false)),
            false,
            u64::MAX,
            u64::MAX,
        );
        let header = format!(
            "{:X};chunk-signature={}\r\n",
            MAX_SIGNED_CHUNK + 1,
            "0".repeat(64)
        );
        let mut buf = BytesMut::from(header.as_bytes());
        let err = decoder.decode(&mut buf).unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::InvalidChunkSizeError);
    }
}
