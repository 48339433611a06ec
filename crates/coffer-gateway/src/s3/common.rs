//! Pieces shared by the object handlers: stored headers, ETags, conditionals, version IDs.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;
use coffer_meta::{BucketRecord, ObjectHeaders, ObjectVersion, Versioning};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::error::{S3Error, S3Result};
use crate::s3_error;
use crate::xml::http_date;

/// S3's maximum key length in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// S3's limit on user-defined metadata (names + values, bytes).
pub const MAX_USER_METADATA: usize = 2048;

/// Builds a response from a status, headers and body.
pub fn response(status: StatusCode, headers: Vec<(&str, String)>, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            r.headers_mut().append(n, v);
        }
    }
    r
}

/// An XML response with status 200.
pub fn xml_response(body: String) -> Response {
    response(
        StatusCode::OK,
        vec![("content-type", "application/xml".into())],
        Body::from(body),
    )
}

/// An empty response with the given status.
pub fn empty(status: StatusCode) -> Response {
    response(status, Vec::new(), Body::empty())
}

/// Validates an object key.
pub fn check_key(key: &str) -> S3Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(s3_error!(KeyTooLongError, "Your key is too long"));
    }
    Ok(())
}

/// Reads the stored headers of a new object from a request.
pub fn object_headers(h: &HeaderMap) -> S3Result<ObjectHeaders> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut user_metadata = BTreeMap::new();
    let mut meta_size = 0;
    for (name, value) in h {
        if let Some(k) = name.as_str().strip_prefix("x-amz-meta-") {
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            meta_size += k.len() + v.len();
            user_metadata.insert(k.to_string(), v);
        }
    }
    if meta_size > MAX_USER_METADATA {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size."
        )
        .with_detail("Size", meta_size.to_string())
        .with_detail("MaxSizeAllowed", MAX_USER_METADATA.to_string()));
    }
    let storage_class = match get("x-amz-storage-class") {
        None => None,
        Some(sc) => {
            const CLASSES: &[&str] = &[
                "STANDARD",
                "REDUCED_REDUNDANCY",
                "STANDARD_IA",
                "ONEZONE_IA",
                "INTELLIGENT_TIERING",
                "GLACIER",
                "DEEP_ARCHIVE",
                "GLACIER_IR",
                "OUTPOSTS",
                "SNOW",
                "EXPRESS_ONEZONE",
            ];
            if !CLASSES.contains(&sc.as_str()) {
                return Err(s3_error!(
                    InvalidStorageClass,
                    "The storage class you specified is not valid"
                )
                .with_detail("StorageClassRequested", sc));
            }
            (sc != "STANDARD").then_some(sc)
        }
    };
    Ok(ObjectHeaders {
        content_type: get("content-type"),
        content_encoding: get("content-encoding").and_then(strip_aws_chunked),
        content_disposition: get("content-disposition"),
        content_language: get("content-language"),
        cache_control: get("cache-control"),
        expires: get("expires"),
        user_metadata,
        storage_class,
        website_redirect_location: get("x-amz-website-redirect-location"),
    })
}

/// `aws-chunked` is a transfer detail, not a stored Content-Encoding.
fn strip_aws_chunked(v: String) -> Option<String> {
    let rest: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && *e != "aws-chunked")
        .collect();
    (!rest.is_empty()).then(|| rest.join(","))
}

/// Headers describing a stored version on GET/HEAD (without body length or range).
pub fn version_headers(bucket: &BucketRecord, v: &ObjectVersion) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("etag", quote(&v.etag)),
        ("last-modified", http_date(v.last_modified_ms)),
        ("accept-ranges", "bytes".to_string()),
        (
            "content-type",
            v.headers
                .content_type
                .clone()
                .unwrap_or_else(|| "binary/octet-stream".into()),
        ),
    ];
    let opt = [
        ("content-encoding", &v.headers.content_encoding),
        ("content-disposition", &v.headers.content_disposition),
        ("content-language", &v.headers.content_language),
        ("cache-control", &v.headers.cache_control),
        ("expires", &v.headers.expires),
        ("x-amz-storage-class", &v.headers.storage_class),
        (
            "x-amz-website-redirect-location",
            &v.headers.website_redirect_location,
        ),
    ];
    for (n, val) in opt {
        if let Some(val) = val {
            out.push((n, val.clone()));
        }
    }
    if bucket.versioning != Versioning::Unversioned {
        out.push(("x-amz-version-id", v.version_id.clone()));
    }
    if let Some(r) = &v.retention {
        out.push(("x-amz-object-lock-mode", r.mode.clone()));
        out.push((
            "x-amz-object-lock-retain-until-date",
            r.retain_until.clone(),
        ));
    }
    if bucket.object_lock_enabled {
        out.push((
            "x-amz-object-lock-legal-hold",
            if v.legal_hold { "ON" } else { "OFF" }.to_string(),
        ));
    }
    if let Some(env) = &v.envelope {
        out.extend(crate::sse::response_headers(env));
    }
    out
}

/// Adds `x-amz-meta-*` headers (they are appended separately because names are dynamic).
pub fn add_user_metadata(resp: &mut Response, v: &ObjectVersion) {
    for (k, val) in &v.headers.user_metadata {
        if let (Ok(n), Ok(hv)) = (
            HeaderName::try_from(format!("x-amz-meta-{k}")),
            HeaderValue::try_from(val.as_str()),
        ) {
            resp.headers_mut().append(n, hv);
        }
    }
}

/// `"etag"`.
pub fn quote(etag: &str) -> String {
    format!("\"{etag}\"")
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/").trim_matches('"'))
        .any(|t| t == "*" || t == etag)
}

fn parse_http_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(s)
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%A, %d-%b-%y %H:%M:%S GMT")
                .ok()
                .map(|d| d.and_utc().fixed_offset())
        })
        .or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.timestamp())
}

/// Which request headers name the conditions (GET/HEAD use the plain names, copies the
/// `x-amz-copy-source-if-*` ones).
pub struct ConditionHeaders {
    /// If-Match.
    pub if_match: &'static str,
    /// If-None-Match.
    pub if_none_match: &'static str,
    /// If-Modified-Since.
    pub if_modified_since: &'static str,
    /// If-Unmodified-Since.
    pub if_unmodified_since: &'static str,
}

/// The conditions of GET and HEAD.
pub const GET_CONDITIONS: ConditionHeaders = ConditionHeaders {
    if_match: "if-match",
    if_none_match: "if-none-match",
    if_modified_since: "if-modified-since",
    if_unmodified_since: "if-unmodified-since",
};

/// The conditions of CopyObject and UploadPartCopy on their source.
pub const COPY_CONDITIONS: ConditionHeaders = ConditionHeaders {
    if_match: "x-amz-copy-source-if-match",
    if_none_match: "x-amz-copy-source-if-none-match",
    if_modified_since: "x-amz-copy-source-if-modified-since",
    if_unmodified_since: "x-amz-copy-source-if-unmodified-since",
};

/// Evaluates conditional headers as S3 does (RFC 7232 precedence). `not_modified` is the
/// error used when If-None-Match / If-Modified-Since fail (304 for GET, 412 for copies).
pub fn check_conditions(
    h: &HeaderMap,
    names: &ConditionHeaders,
    v: &ObjectVersion,
    is_copy: bool,
) -> S3Result<()> {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
    let last_modified = v.last_modified_ms.div_euclid(1000);
    let failed = || {
        s3_error!(
            PreconditionFailed,
            "At least one of the pre-conditions you specified did not hold"
        )
        .with_detail("Condition", "If-Match")
    };
    let not_modified = || -> S3Error {
        if is_copy {
            failed()
        } else {
            S3Error::new(crate::error::S3ErrorCode::NotModified, "Not Modified")
                .with_header("etag", quote(&v.etag))
                .with_header("last-modified", http_date(v.last_modified_ms))
        }
    };
    let if_match = get(names.if_match);
    let if_none_match = get(names.if_none_match);
    if let Some(m) = if_match {
        if !etag_matches(m, &v.etag) {
            return Err(failed());
        }
    } else if let Some(since) = get(names.if_unmodified_since).and_then(parse_http_date) {
        if last_modified > since {
            return Err(failed());
        }
    }
    if let Some(m) = if_none_match {
        if etag_matches(m, &v.etag) {
            return Err(not_modified());
        }
    } else if let Some(since) = get(names.if_modified_since).and_then(parse_http_date) {
        if last_modified <= since {
            return Err(not_modified());
        }
    }
    Ok(())
}

/// A new version ID: 32 URL-safe characters, like S3's.
pub fn new_version_id() -> S3Result<String> {
    random_token::<24>()
}

/// `N` random bytes as URL-safe base64 that never starts with `-` or `_`: command lines (the
/// aws CLI's `--version-id`, `--upload-id`) would take a leading `-` for an option.
pub fn random_token<const N: usize>() -> S3Result<String> {
    use base64::Engine;
    loop {
        let raw: [u8; N] = coffer_crypto::random_bytes().map_err(S3Error::internal)?;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        if id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Ok(id);
        }
    }
}

/// The version ID a new write gets in this bucket.
pub fn version_id_for(bucket: &BucketRecord) -> S3Result<String> {
    match bucket.versioning {
        Versioning::Enabled => new_version_id(),
        _ => Ok("null".to_string()),
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Parses `versionId` (absent or empty = current).
pub fn version_param(q: Option<&str>) -> Option<&str> {
    q.filter(|s| !s.is_empty())
}
