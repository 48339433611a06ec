//! The values of `x-amz-content-sha256`: how the client says its body is protected.

use super::PayloadMode;
use crate::error::S3Error;
use crate::s3_error;

/// The body is not covered by the signature.
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// aws-chunked with a signature per chunk.
const STREAMING_SIGNED: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
/// aws-chunked with a signature per chunk and a signed trailer.
const STREAMING_SIGNED_TRAILER: &str = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
/// aws-chunked without signatures, with a trailer (what current SDKs send by default).
const STREAMING_UNSIGNED_TRAILER: &str = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
/// SigV4a streaming, which needs SigV4a authentication, which this server does not have.
const STREAMING_ECDSA_PREFIX: &str = "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD";

/// A parsed `x-amz-content-sha256`, before the signing key is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Declared {
    Unsigned,
    Sha256([u8; 32]),
    StreamingSigned { trailer: bool },
    StreamingUnsignedTrailer,
}

impl Declared {
    /// Parses the header value; S3 answers `InvalidArgument` for anything else.
    pub(crate) fn parse(value: &str) -> Result<Self, S3Error> {
        match value {
            UNSIGNED_PAYLOAD => return Ok(Declared::Unsigned),
            STREAMING_SIGNED => return Ok(Declared::StreamingSigned { trailer: false }),
            STREAMING_SIGNED_TRAILER => return Ok(Declared::StreamingSigned { trailer: true }),
            STREAMING_UNSIGNED_TRAILER => return Ok(Declared::StreamingUnsignedTrailer),
            _ => {}
        }
        if value.starts_with(STREAMING_ECDSA_PREFIX) {
            return Err(s3_error!(
                NotImplemented,
                "A header you provided implies functionality that is not implemented"
            )
            .with_detail("Header", "x-amz-content-sha256"));
        }
        let mut hash = [0u8; 32];
        match hex::decode_to_slice(value, &mut hash) {
            Ok(()) => Ok(Declared::Sha256(hash)),
            Err(_) => Err(s3_error!(
                InvalidArgument,
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, \
                 STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, \
                 STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD, \
                 STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER or a valid sha256 value."
            )
            .with_detail("ArgumentName", "x-amz-content-sha256")
            .with_detail("ArgumentValue", value)),
        }
    }

    /// The [`PayloadMode`]; `signed` builds the signed streaming mode from its `trailer` flag.
    pub(crate) fn into_mode(self, signed: impl FnOnce(bool) -> PayloadMode) -> PayloadMode {
        match self {
            Declared::Unsigned => PayloadMode::Unsigned,
            Declared::Sha256(hash) => PayloadMode::Sha256(hash),
            Declared::StreamingSigned { trailer } => signed(trailer),
            Declared::StreamingUnsignedTrailer => PayloadMode::StreamingUnsignedTrailer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::S3ErrorCode;

    #[test]
    fn parses_every_form() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let mut hash = [0u8; 32];
        hex::decode_to_slice(empty, &mut hash).unwrap();
        assert_eq!(Declared::parse(empty).unwrap(), Declared::Sha256(hash));
        assert_eq!(
            Declared::parse(&empty.to_uppercase()).unwrap(),
            Declared::Sha256(hash)
        );
        assert_eq!(
            Declared::parse("UNSIGNED-PAYLOAD").unwrap(),
            Declared::Unsigned
        );
        assert_eq!(
            Declared::parse("STREAMING-AWS4-HMAC-SHA256-PAYLOAD").unwrap(),
            Declared::StreamingSigned { trailer: false }
        );
        assert_eq!(
            Declared::parse("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER").unwrap(),
            Declared::StreamingSigned { trailer: true }
        );
        assert_eq!(
            Declared::parse("STREAMING-UNSIGNED-PAYLOAD-TRAILER").unwrap(),
            Declared::StreamingUnsignedTrailer
        );
    }

    #[test]
    fn refuses_other_values() {
        let short = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85";
        for value in [short, "", "unsigned-payload", "STREAMING-PAYLOAD"] {
            let err = Declared::parse(value).unwrap_err();
            assert_eq!(err.code(), S3ErrorCode::InvalidArgument, "{value}");
            assert!(err
                .to_xml("r")
                .contains("<ArgumentName>x-amz-content-sha256</ArgumentName>"));
        }
        let err = Declared::parse("STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD").unwrap_err();
        assert_eq!(err.code(), S3ErrorCode::NotImplemented);
    }
}
