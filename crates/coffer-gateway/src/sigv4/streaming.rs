//! The signatures of an aws-chunked body (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`).
//!
//! Each chunk signs `AWS4-HMAC-SHA256-PAYLOAD \n time \n scope \n previous signature \n
//! sha256("") \n sha256(chunk)`, chaining from the request's own signature (the seed); the
//! trailer signs `AWS4-HMAC-SHA256-TRAILER \n time \n scope \n previous signature \n
//! sha256(trailer lines)`, chaining from the signature of the final, empty chunk.

use zeroize::Zeroizing;

use super::{hex_sha256, signature_matches, signature_mismatch, PayloadMode};
use crate::error::S3Error;

const PAYLOAD_ALGORITHM: &str = "AWS4-HMAC-SHA256-PAYLOAD";
const TRAILER_ALGORITHM: &str = "AWS4-HMAC-SHA256-TRAILER";
/// Hex SHA-256 of the empty string, the fixed middle line of every chunk's string to sign.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Verifies the chain of chunk signatures and the trailer signature of one request.
pub(crate) struct ChunkSigner {
    key: Zeroizing<[u8; 32]>,
    amz_date: String,
    scope: String,
    previous: String,
}

impl ChunkSigner {
    /// The signer of a [`PayloadMode::StreamingSigned`] body; `None` for other modes.
    pub(crate) fn from_mode(mode: &PayloadMode) -> Option<Self> {
        match mode {
            PayloadMode::StreamingSigned {
                signing_key,
                scope,
                amz_date,
                seed_signature,
                ..
            } => Some(ChunkSigner {
                key: signing_key.clone(),
                amz_date: amz_date.clone(),
                scope: scope.clone(),
                previous: seed_signature.to_ascii_lowercase(),
            }),
            _ => None,
        }
    }

    fn string_to_sign(&self, algorithm: &str, hashes: &str) -> String {
        format!(
            "{algorithm}\n{}\n{}\n{}\n{hashes}",
            self.amz_date, self.scope, self.previous
        )
    }

    /// Checks `provided` against the string to sign and makes it the previous signature.
    fn verify(&mut self, string_to_sign: String, provided: &str) -> Result<(), S3Error> {
        let computed =
            aws_sigv4::sign::v4::calculate_signature(*self.key, string_to_sign.as_bytes());
        if !signature_matches(provided, &computed) {
            return Err(signature_mismatch(None, provided, &string_to_sign));
        }
        self.previous = computed;
        Ok(())
    }

    /// Verifies the signature of one chunk (the final chunk is empty).
    pub(crate) fn verify_chunk(&mut self, data: &[u8], provided: &str) -> Result<(), S3Error> {
        let hashes = format!("{EMPTY_SHA256}\n{}", hex_sha256(data));
        let sts = self.string_to_sign(PAYLOAD_ALGORITHM, &hashes);
        self.verify(sts, provided)
    }

    /// Verifies `x-amz-trailer-signature` over the trailer lines (without the signature line).
    pub(crate) fn verify_trailer(
        &mut self,
        trailers: &[(String, String)],
        provided: &str,
    ) -> Result<(), S3Error> {
        let sts = self.string_to_sign(
            TRAILER_ALGORITHM,
            &hex_sha256(&canonical_trailers(trailers)),
        );
        self.verify(sts, provided)
    }
}

/// `name:value\n` for each trailer, by lowercase name, values trimmed.
fn canonical_trailers(trailers: &[(String, String)]) -> Vec<u8> {
    let mut sorted: Vec<(String, &str)> = trailers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim()))
        .collect();
    sorted.sort();
    let mut out = Vec::new();
    for (name, value) in sorted {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::S3ErrorCode;

    /// The streaming examples of the S3 documentation ("Signature calculation: transfer payload
    /// in multiple chunks" and the trailer variant): 66560 bytes of `a` in chunks of 65536 and
    /// 1024 bytes.
    fn example_signer(seed: &str) -> ChunkSigner {
        let date = chrono::NaiveDate::from_ymd_opt(2013, 5, 24).unwrap();
        let key = super::super::signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            date,
            "us-east-1",
            "s3",
        );
        ChunkSigner::from_mode(&PayloadMode::StreamingSigned {
            signing_key: key,
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            amz_date: "20130524T000000Z".into(),
            seed_signature: seed.into(),
            trailer: false,
        })
        .unwrap()
    }

    #[test]
    fn documented_chunk_signatures_verify() {
        let data = vec![b'a'; 65536];
        let mut signer =
            example_signer("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9");
        signer
            .verify_chunk(
                &data,
                "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            )
            .unwrap();
        signer
            .verify_chunk(
                &data[..1024],
                "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            )
            .unwrap();
        signer
            .verify_chunk(
                b"",
                "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
            )
            .unwrap();
    }

    #[test]
    fn documented_trailer_signature_verifies() {
        let data = vec![b'a'; 65536];
        let mut signer =
            example_signer("106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e");
        for (chunk, sig) in [
            (
                &data[..],
                "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
            ),
            (
                &data[..1024],
                "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
            ),
            (
                &b""[..],
                "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
            ),
        ] {
            signer.verify_chunk(chunk, sig).unwrap();
        }
        let trailers = [("x-amz-checksum-crc32c".to_owned(), "sOO8/Q==".to_owned())];
        signer
            .verify_trailer(
                &trailers,
                "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435",
            )
            .unwrap();
    }

    #[test]
    fn a_chunk_out_of_order_or_changed_fails() {
        let data = vec![b'a'; 65536];
        let seed = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
        // The second chunk's signature is not valid as the first.
        let err = example_signer(seed)
            .verify_chunk(
                &data[..1024],
                "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            )
            .unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::SignatureDoesNotMatch);
        assert!(err
            .to_xml("r")
            .contains("<StringToSign>AWS4-HMAC-SHA256-PAYLOAD\n"));
        // One byte changed.
        let mut changed = data.clone();
        changed[100] = b'b';
        let err = example_signer(seed)
            .verify_chunk(
                &changed,
                "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            )
            .unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::SignatureDoesNotMatch);
    }

    #[test]
    fn uppercase_signatures_are_accepted() {
        let data = vec![b'a'; 65536];
        let mut signer =
            example_signer("4F232C4386841EF735655705268965C44A0E4690BAA4ADEA153F7DB9FA80A0A9");
        signer
            .verify_chunk(
                &data,
                "AD80C730A21E5B8D04586A2213DD63B9A0E99E0E2307B0ADE35A65485A288648",
            )
            .unwrap();
    }

    #[test]
    fn canonical_trailers_sort_and_trim() {
        let trailers = [
            ("X-Amz-Checksum-Sha1".to_owned(), " abc ".to_owned()),
            ("x-amz-checksum-crc32".to_owned(), "def".to_owned()),
        ];
        assert_eq!(
            canonical_trailers(&trailers),
            b"x-amz-checksum-crc32:def\nx-amz-checksum-sha1:abc\n"
        );
    }
}
