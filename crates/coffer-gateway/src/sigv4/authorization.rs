//! Header authentication: `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
//! Signature=...`, with the time in `x-amz-date` (or `Date`).

use chrono::{DateTime, Utc};
use http::request::Parts;

use super::payload::Declared;
use super::{
    canonical, format_amz_date, format_iso, hex_sha256, parse_amz_date, sigv2_error, Credential,
    CredentialProvider, Signed, Source, Verified, ALGORITHM, MAX_SKEW,
};
use crate::error::S3Error;
use crate::s3_error;

/// The three components of the header.
struct Components<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_components(params: &str) -> Result<Components<'_>, S3Error> {
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in params.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let Some((name, value)) = component.split_once('=') else {
            return Err(Source::Header.malformed(format_args!(
                "the authorization component \"{component}\" is malformed."
            )));
        };
        let slot = match name.trim() {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed_headers,
            "Signature" => &mut signature,
            _ => continue,
        };
        slot.get_or_insert(value.trim());
    }
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) => Ok(Components {
            credential,
            signed_headers,
            signature,
        }),
        _ => Err(Source::Header.malformed(
            "the authorization header requires three components: Credential, SignedHeaders, and Signature.",
        )),
    }
}

/// The request time from `x-amz-date`, or else from `Date`, with the value as sent.
fn request_time(parts: &Parts) -> Result<(DateTime<Utc>, String), S3Error> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(value) = header("x-amz-date") {
        if let Some(time) = parse_amz_date(value) {
            return Ok((time, value.to_owned()));
        }
    }
    if let Some(value) = header("date") {
        if let Ok(time) = DateTime::parse_from_rfc2822(value) {
            return Ok((time.with_timezone(&Utc), value.to_owned()));
        }
    }
    Err(s3_error!(
        AccessDenied,
        "AWS authentication requires a valid Date or x-amz-date header"
    ))
}

/// The payload hash the client signed, and what it declares about the body.
fn payload_hash(
    parts: &Parts,
    body: Option<&[u8]>,
    service: &str,
) -> Result<(String, Declared), S3Error> {
    match parts.headers.get("x-amz-content-sha256") {
        Some(value) => {
            let value = value.to_str().unwrap_or("<non-ASCII>");
            Ok((value.to_owned(), Declared::parse(value)?))
        }
        None if service == "s3" || service == "s3express" => Err(s3_error!(
            InvalidRequest,
            "Missing required header for this request: x-amz-content-sha256"
        )),
        // Other services sign the hash of the body without sending it. Without the body at
        // hand, only an empty body can match.
        None => {
            let hash = hex_sha256(body.unwrap_or_default());
            let declared = Declared::parse(&hash)?;
            Ok((hash, declared))
        }
    }
}

pub(super) fn verify(
    parts: &Parts,
    value: &str,
    body: Option<&[u8]>,
    creds: &dyn CredentialProvider,
    region: &str,
    service: &str,
    now: DateTime<Utc>,
) -> Result<Verified, S3Error> {
    let params = match value.strip_prefix(ALGORITHM) {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest,
        _ if value.starts_with("AWS ") => return Err(sigv2_error()),
        _ => {
            return Err(s3_error!(InvalidArgument, "Unsupported Authorization Type")
                .with_detail("ArgumentName", "Authorization")
                .with_detail("ArgumentValue", value))
        }
    };
    let components = parse_components(params)?;
    let credential = Credential::parse(components.credential, Source::Header, region, service)?;
    let (time, time_as_sent) = request_time(parts)?;
    credential.check_date(Source::Header, &time)?;
    let (hash, declared) = payload_hash(parts, body, service)?;
    let signed_headers = canonical::split_signed_headers(components.signed_headers);
    canonical::check_signed_headers(&parts.headers, &signed_headers)?;

    let signed = Signed {
        credential,
        amz_date: format_amz_date(&time),
        canonical_request: canonical::canonical_request(
            parts,
            components.signed_headers,
            &hash,
            false,
        ),
        signature: components.signature,
    };
    let key = signed.check(creds)?;

    if (now - time).abs() > MAX_SKEW {
        return Err(s3_error!(
            RequestTimeTooSkewed,
            "The difference between the request time and the current time is too large."
        )
        .with_detail("RequestTime", time_as_sent)
        .with_detail("ServerTime", format_iso(&now))
        .with_detail(
            "MaxAllowedSkewMilliseconds",
            MAX_SKEW.num_milliseconds().to_string(),
        ));
    }
    Ok(signed.verified(key, declared, false))
}
