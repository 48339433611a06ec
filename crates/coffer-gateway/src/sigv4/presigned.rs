//! Query authentication (presigned URLs): `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`,
//! `X-Amz-Expires`, `X-Amz-SignedHeaders` and `X-Amz-Signature` in the query string.

use chrono::{DateTime, Utc};
use http::request::Parts;

use super::payload::{Declared, UNSIGNED_PAYLOAD};
use super::{
    canonical, format_amz_date, format_iso, parse_amz_date, Credential, CredentialProvider, Signed,
    Source, Verified, ALGORITHM, MAX_EXPIRES, MAX_SKEW,
};
use crate::error::S3Error;
use crate::s3_error;

fn parameters_error(message: &str) -> S3Error {
    s3_error!(AuthorizationQueryParametersError, "{message}")
}

/// `X-Amz-Expires`: whole seconds, at most a week. Zero is accepted here and has always expired.
fn parse_expires(value: &str) -> Result<i64, S3Error> {
    let seconds: i64 = value
        .parse()
        .map_err(|_| parameters_error("X-Amz-Expires should be a number"))?;
    if seconds < 0 {
        return Err(parameters_error("X-Amz-Expires must be non-negative"));
    }
    if seconds > MAX_EXPIRES {
        return Err(parameters_error(
            "X-Amz-Expires must be less than a week (in seconds); that is, the given \
             X-Amz-Expires must be less than 604800 seconds",
        ));
    }
    Ok(seconds)
}

/// The payload hash of a presigned request: `X-Amz-Content-Sha256` if the URL or the request
/// has one, otherwise `UNSIGNED-PAYLOAD`.
fn payload_hash(parts: &Parts, query: &str) -> Result<(String, Declared), S3Error> {
    let value = canonical::query_param(query, "X-Amz-Content-Sha256").or_else(|| {
        parts
            .headers
            .get("x-amz-content-sha256")
            .map(|v| v.to_str().unwrap_or("<non-ASCII>").to_owned())
    });
    let value = value.unwrap_or_else(|| UNSIGNED_PAYLOAD.to_owned());
    let declared = Declared::parse(&value)?;
    Ok((value, declared))
}

pub(super) fn verify(
    parts: &Parts,
    creds: &dyn CredentialProvider,
    region: &str,
    service: &str,
    now: DateTime<Utc>,
) -> Result<Verified, S3Error> {
    let query = parts.uri.query().unwrap_or("");
    let param = |name: &str| canonical::query_param(query, name);
    let (
        Some(algorithm),
        Some(credential),
        Some(signature),
        Some(date),
        Some(signed_headers),
        Some(expires),
    ) = (
        param("X-Amz-Algorithm"),
        param("X-Amz-Credential"),
        param("X-Amz-Signature"),
        param("X-Amz-Date"),
        param("X-Amz-SignedHeaders"),
        param("X-Amz-Expires"),
    )
    else {
        return Err(parameters_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, \
             X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and \
             X-Amz-Expires parameters.",
        ));
    };
    if algorithm != ALGORITHM {
        return Err(parameters_error(
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256 and AWS4-ECDSA-P256-SHA256\"",
        ));
    }
    let time = parse_amz_date(&date).ok_or_else(|| {
        parameters_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    })?;
    let expires = parse_expires(&expires)?;
    let credential = Credential::parse(&credential, Source::Query, region, service)?;
    credential.check_date(Source::Query, &time)?;
    let names = canonical::split_signed_headers(&signed_headers);
    canonical::check_signed_headers(&parts.headers, &names)?;
    let (hash, declared) = payload_hash(parts, query)?;

    let signed = Signed {
        credential,
        amz_date: format_amz_date(&time),
        canonical_request: canonical::canonical_request(parts, &signed_headers, &hash, true),
        signature: &signature,
    };
    let key = signed.check(creds)?;

    if time > now + MAX_SKEW {
        return Err(s3_error!(AccessDenied, "Request is not yet valid")
            .with_detail("X-Amz-Date", date)
            .with_detail("ServerTime", format_iso(&now)));
    }
    let end = time + chrono::Duration::seconds(expires);
    if expires == 0 || now > end {
        return Err(s3_error!(AccessDenied, "Request has expired")
            .with_detail("X-Amz-Expires", expires.to_string())
            .with_detail("Expires", format_iso(&end))
            .with_detail("ServerTime", format_iso(&now)));
    }
    Ok(signed.verified(key, declared, true))
}
