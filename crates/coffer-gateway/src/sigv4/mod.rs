//! SigV4 verification (DESIGN.md §7): who sent a request, and how its payload is protected.
//!
//! [`verify`] authenticates a request signed in the `Authorization` header or in the query string
//! (a presigned URL) and returns a [`Verified`]: the access key and the [`PayloadMode`] the body
//! must then be checked against (`http::body::BodyReader` does that).
//!
//! # Layout
//! - `canonical`: the canonical request (URI, query string, headers) that both sides sign.
//! - `authorization`: header authentication (`Authorization: AWS4-HMAC-SHA256 ...`).
//! - `presigned`: query authentication (`X-Amz-Algorithm=AWS4-HMAC-SHA256&...`).
//! - `payload`: the values of `x-amz-content-sha256`.
//! - `streaming`: the signatures of aws-chunked chunks and trailers.
//!
//! The checks run in the order S3 runs them: the shape of the request, the scope, the access
//! key, the signature, and only then the time, so a stale request with a bad signature is told
//! about its signature.

mod authorization;
mod canonical;
mod payload;
mod presigned;
mod streaming;

pub(crate) use streaming::ChunkSigner;

use std::fmt;
use std::time::SystemTime;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::S3Error;
use crate::s3_error;

/// The algorithm of header and query authentication.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The last element of a credential scope.
pub const TERMINATOR: &str = "aws4_request";
/// The largest difference S3 accepts between the time of a request and its own.
pub const MAX_SKEW: chrono::Duration = chrono::Duration::minutes(15);
/// The longest validity of a presigned URL, in seconds (seven days).
pub const MAX_EXPIRES: i64 = 604_800;

/// `x-amz-date` and `X-Amz-Date`: ISO 8601 basic format.
const AMZ_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";
/// `ServerTime` and `Expires` in error bodies.
const ISO_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

/// Looks up the secret key of an access key.
pub trait CredentialProvider: Send + Sync {
    /// The secret of `access_key_id`, or `None` if the key does not exist (or is disabled).
    fn secret_key(&self, access_key_id: &str) -> Option<Zeroizing<String>>;
}

/// How the body of a verified request is protected, from `x-amz-content-sha256`.
#[derive(Clone, PartialEq, Eq)]
pub enum PayloadMode {
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD` (or a presigned URL without it).
    Unsigned,
    /// A hex SHA-256 of the body that must be verified when the body has been read.
    Sha256([u8; 32]),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD` (and `-TRAILER`): aws-chunked with chunk signatures
    /// (and a signed trailer). Everything needed to verify the chain of chunk signatures.
    StreamingSigned {
        /// The SigV4 signing key of the request's scope.
        signing_key: Zeroizing<[u8; 32]>,
        /// `yyyymmdd/region/service/aws4_request`.
        scope: String,
        /// The request time, `yyyymmddThhmmssZ`.
        amz_date: String,
        /// The signature of the request, which the first chunk signature chains from.
        seed_signature: String,
        /// Whether a signed trailer follows the last chunk.
        trailer: bool,
    },
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked without chunk signatures, trailing checksum.
    StreamingUnsignedTrailer,
}

impl PayloadMode {
    /// Whether the body is aws-chunked.
    pub fn is_streaming(&self) -> bool {
        matches!(
            self,
            PayloadMode::StreamingSigned { .. } | PayloadMode::StreamingUnsignedTrailer
        )
    }
}

impl fmt::Debug for PayloadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayloadMode::Unsigned => f.write_str("Unsigned"),
            PayloadMode::Sha256(hash) => write!(f, "Sha256({})", hex::encode(hash)),
            PayloadMode::StreamingSigned {
                scope,
                amz_date,
                seed_signature,
                trailer,
                ..
            } => f
                .debug_struct("StreamingSigned")
                .field("signing_key", &"<redacted>")
                .field("scope", scope)
                .field("amz_date", amz_date)
                .field("seed_signature", seed_signature)
                .field("trailer", trailer)
                .finish(),
            PayloadMode::StreamingUnsignedTrailer => f.write_str("StreamingUnsignedTrailer"),
        }
    }
}

/// A request whose signature checked out.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The access key that signed the request.
    pub access_key_id: String,
    /// How the body must be checked.
    pub payload: PayloadMode,
    /// Whether the signature came from the query string.
    pub presigned: bool,
    /// The region of the credential scope.
    pub region: String,
    /// The service of the credential scope.
    pub service: String,
}

/// Verifies a request: header authentication (`Authorization: AWS4-HMAC-SHA256 ...`) or query
/// authentication (`X-Amz-Algorithm=AWS4-HMAC-SHA256&...`, honouring `X-Amz-Expires` against
/// `X-Amz-Date`). Checks the credential scope (its date, `region`, `service` and `aws4_request`),
/// the signature (in constant time) and then the time: 15 minutes of clock skew for header
/// authentication, expiry for presigned URLs.
///
/// `parts.uri` must be the request target as received: its path is still percent-encoded and is
/// canonicalised here, segment by segment.
pub fn verify(
    parts: &http::request::Parts,
    creds: &dyn CredentialProvider,
    region: &str,
    service: &str,
    now: DateTime<Utc>,
) -> Result<Verified, S3Error> {
    verify_inner(parts, None, creds, region, service, now)
}

/// [`verify`] for a request whose body has already been read: JSON APIs such as KMS sign the
/// SHA-256 of the body without sending it in `x-amz-content-sha256`, so their signature can only
/// be checked with the body at hand. When the header is present it is used as in [`verify`].
pub fn verify_with_body(
    parts: &http::request::Parts,
    body: &[u8],
    creds: &dyn CredentialProvider,
    region: &str,
    service: &str,
    now: DateTime<Utc>,
) -> Result<Verified, S3Error> {
    verify_inner(parts, Some(body), creds, region, service, now)
}

fn verify_inner(
    parts: &http::request::Parts,
    body: Option<&[u8]>,
    creds: &dyn CredentialProvider,
    region: &str,
    service: &str,
    now: DateTime<Utc>,
) -> Result<Verified, S3Error> {
    let header = authorization_header(parts);
    let query = parts.uri.query().unwrap_or("");
    let presigned = canonical::query_param(query, "X-Amz-Algorithm").is_some();
    match (header, presigned) {
        (Some(value), true) => Err(s3_error!(
            InvalidArgument,
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified"
        )
        .with_detail("ArgumentName", "Authorization")
        .with_detail("ArgumentValue", value)),
        (Some(value), false) => {
            authorization::verify(parts, value, body, creds, region, service, now)
        }
        (None, true) => presigned::verify(parts, creds, region, service, now),
        (None, false) if is_sigv2_query(query) => Err(sigv2_error()),
        (None, false) => Err(s3_error!(AccessDenied, "Access Denied")),
    }
}

/// Whether the request carries no credentials at all: no `Authorization` header (or an empty
/// one) and no signature parameters in the query string. Callers answer such requests with
/// `AccessDenied`; everything else goes through [`verify`], which rejects what it cannot check.
pub fn is_anonymous(parts: &http::request::Parts) -> bool {
    let query = parts.uri.query().unwrap_or("");
    authorization_header(parts).is_none()
        && canonical::query_param(query, "X-Amz-Algorithm").is_none()
        && canonical::query_param(query, "X-Amz-Signature").is_none()
        && canonical::query_param(query, "X-Amz-Credential").is_none()
        && !is_sigv2_query(query)
}

/// The `Authorization` header, if present and not empty (S3 treats an empty one as absent).
fn authorization_header(parts: &http::request::Parts) -> Option<&str> {
    let value = parts.headers.get(http::header::AUTHORIZATION)?;
    let value = value.to_str().unwrap_or("<non-ASCII>");
    (!value.trim().is_empty()).then_some(value)
}

/// Signature Version 2 in the query string (`AWSAccessKeyId=...&Signature=...`).
fn is_sigv2_query(query: &str) -> bool {
    canonical::query_param(query, "Signature").is_some()
        && canonical::query_param(query, "AWSAccessKeyId").is_some()
}

fn sigv2_error() -> S3Error {
    s3_error!(
        InvalidRequest,
        "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
    )
}

/// Where the signature parameters came from; it decides the code and wording of errors.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Header,
    Query,
}

impl Source {
    /// An error about the signature parameters, worded as S3 words it for their source.
    fn malformed(self, detail: impl fmt::Display) -> S3Error {
        match self {
            Source::Header => s3_error!(
                AuthorizationHeaderMalformed,
                "The authorization header is malformed; {detail}"
            ),
            Source::Query => s3_error!(
                AuthorizationQueryParametersError,
                "Error parsing the X-Amz-Credential parameter; {detail}"
            ),
        }
    }
}

/// `Credential=AKID/yyyymmdd/region/service/aws4_request`, checked against this server.
struct Credential<'a> {
    access_key_id: &'a str,
    date: NaiveDate,
    /// `yyyymmdd/region/service/aws4_request`.
    scope: &'a str,
    region: &'a str,
    service: &'a str,
}

impl<'a> Credential<'a> {
    fn parse(value: &'a str, source: Source, region: &str, service: &str) -> Result<Self, S3Error> {
        let parts: Vec<&str> = value.split('/').collect();
        let [access_key_id, date, cred_region, cred_service, terminator] = parts[..] else {
            return Err(source.malformed(
                "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
            ));
        };
        let parsed_date = (date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit()))
            .then(|| NaiveDate::parse_from_str(date, "%Y%m%d").ok())
            .flatten()
            .ok_or_else(|| {
                source.malformed(format_args!(
                    "incorrect date format \"{date}\". This date in the credential must be in the format \"yyyyMMdd\"."
                ))
            })?;
        if cred_region != region {
            return Err(source
                .malformed(format_args!(
                    "the region '{cred_region}' is wrong; expecting '{region}'"
                ))
                .with_detail("Region", region));
        }
        if cred_service != service {
            return Err(source.malformed(format_args!(
                "incorrect service \"{cred_service}\". This endpoint belongs to \"{service}\"."
            )));
        }
        if terminator != TERMINATOR {
            return Err(source.malformed(format_args!(
                "incorrect terminal \"{terminator}\". This endpoint uses \"{TERMINATOR}\"."
            )));
        }
        Ok(Credential {
            access_key_id,
            date: parsed_date,
            scope: &value[access_key_id.len() + 1..],
            region: cred_region,
            service: cred_service,
        })
    }

    /// The scope date must be the date of the request time.
    fn check_date(&self, source: Source, request_time: &DateTime<Utc>) -> Result<(), S3Error> {
        if self.date == request_time.date_naive() {
            return Ok(());
        }
        let detail = format!(
            "Invalid credential date \"{}\". This date is not the same as X-Amz-Date: \"{}\".",
            self.date.format("%Y%m%d"),
            request_time.format("%Y%m%d")
        );
        Err(source.malformed(detail))
    }
}

/// Parses `yyyymmddThhmmssZ`.
fn parse_amz_date(value: &str) -> Option<DateTime<Utc>> {
    if value.len() != 16 {
        return None;
    }
    NaiveDateTime::parse_from_str(value, AMZ_DATE_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

fn format_amz_date(time: &DateTime<Utc>) -> String {
    time.format(AMZ_DATE_FORMAT).to_string()
}

fn format_iso(time: &DateTime<Utc>) -> String {
    time.format(ISO_FORMAT).to_string()
}

/// The SigV4 signing key of a scope, derived by `aws-sigv4`.
fn signing_key(secret: &str, date: NaiveDate, region: &str, service: &str) -> Zeroizing<[u8; 32]> {
    let midnight: SystemTime = date.and_time(chrono::NaiveTime::MIN).and_utc().into();
    let derived = aws_sigv4::sign::v4::generate_signing_key(secret, midnight, region, service);
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(derived.as_ref());
    key
}

/// `AWS4-HMAC-SHA256\n<time>\n<scope>\n<hex sha256 of the canonical request>`.
fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request)
    )
}

/// Lowercase hex SHA-256.
pub(crate) fn hex_sha256(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// Compares a provided signature with a computed one (lowercase hex) in constant time. S3
/// accepts the provided one in either case.
pub(crate) fn signature_matches(provided: &str, computed: &str) -> bool {
    let provided = provided.to_ascii_lowercase();
    provided.as_bytes().ct_eq(computed.as_bytes()).into()
}

/// `SignatureDoesNotMatch` with the strings S3 shows the client so it can compare its own.
pub(crate) fn signature_mismatch(
    access_key_id: Option<&str>,
    provided: &str,
    string_to_sign: &str,
) -> S3Error {
    let mut err = s3_error!(
        SignatureDoesNotMatch,
        "The request signature we calculated does not match the signature you provided. \
         Check your key and signing method."
    );
    if let Some(id) = access_key_id {
        err = err.with_detail("AWSAccessKeyId", id);
    }
    err.with_detail("StringToSign", string_to_sign)
        .with_detail("SignatureProvided", provided)
        .with_detail("StringToSignBytes", spaced_hex(string_to_sign.as_bytes()))
}

/// `47 45 54` as S3 shows bytes in error bodies.
fn spaced_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn unknown_key(access_key_id: &str) -> S3Error {
    s3_error!(
        InvalidAccessKeyId,
        "The AWS Access Key Id you provided does not exist in our records."
    )
    .with_detail("AWSAccessKeyId", access_key_id)
}

/// Everything but the time checked: the canonical request signed with the key of the scope.
struct Signed<'a> {
    credential: Credential<'a>,
    amz_date: String,
    canonical_request: Vec<u8>,
    signature: &'a str,
}

impl Signed<'_> {
    /// Looks the key up and checks the signature. Returns the signing key and the access key.
    fn check(&self, creds: &dyn CredentialProvider) -> Result<Zeroizing<[u8; 32]>, S3Error> {
        let id = self.credential.access_key_id;
        let secret = creds.secret_key(id).ok_or_else(|| unknown_key(id))?;
        let key = signing_key(
            &secret,
            self.credential.date,
            self.credential.region,
            self.credential.service,
        );
        let sts = string_to_sign(
            &self.amz_date,
            self.credential.scope,
            &self.canonical_request,
        );
        let computed = aws_sigv4::sign::v4::calculate_signature(*key, sts.as_bytes());
        if !signature_matches(self.signature, &computed) {
            let canonical = String::from_utf8_lossy(&self.canonical_request);
            return Err(signature_mismatch(Some(id), self.signature, &sts)
                .with_detail("CanonicalRequest", canonical.as_ref())
                .with_detail("CanonicalRequestBytes", spaced_hex(&self.canonical_request)));
        }
        Ok(key)
    }

    /// The [`Verified`] of a request whose signature and time checked out.
    fn verified(
        self,
        key: Zeroizing<[u8; 32]>,
        payload: payload::Declared,
        presigned: bool,
    ) -> Verified {
        let payload = payload.into_mode(|trailer| PayloadMode::StreamingSigned {
            signing_key: key,
            scope: self.credential.scope.to_owned(),
            amz_date: self.amz_date.clone(),
            seed_signature: self.signature.to_ascii_lowercase(),
            trailer,
        });
        Verified {
            access_key_id: self.credential.access_key_id.to_owned(),
            payload,
            presigned,
            region: self.credential.region.to_owned(),
            service: self.credential.service.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
