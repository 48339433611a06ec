//! The canonical request of SigV4 as S3 builds it.
//!
//! S3 signs the path once-encoded (no double encoding, no `.`/`..` removal): each segment is
//! decoded and encoded again with the RFC 3986 unreserved set, so `%7E` and `~`, or `%c3` and
//! `%C3`, sign alike and `+` stays a plus. The query string is decoded as a form (`+` is a
//! space), encoded the same way and sorted by name, then value.

use http::request::Parts;
use http::HeaderMap;
use percent_encoding::{percent_decode, percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::S3Error;
use crate::s3_error;

/// Every byte but the unreserved characters of RFC 3986 (`A-Z a-z 0-9 - _ . ~`).
pub(crate) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes every byte outside the unreserved set, with uppercase hex.
pub(crate) fn uri_encode(bytes: &[u8]) -> String {
    percent_encode(bytes, UNRESERVED).to_string()
}

/// The canonical URI of a raw (percent-encoded) path.
pub(crate) fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let segments: Vec<String> = path
        .split('/')
        .map(|segment| uri_encode(&percent_decode(segment.as_bytes()).collect::<Vec<u8>>()))
        .collect();
    segments.join("/")
}

/// Decodes a query component as a form does: `+` is a space, then `%XY` escapes.
fn decode_query_component(raw: &str) -> Vec<u8> {
    let plus_as_space: Vec<u8> = raw
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_decode(&plus_as_space).collect()
}

/// The decoded name and value of each parameter; `?uploads` has an empty value.
fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_query_component(name), decode_query_component(value))
    })
}

/// The decoded value of the first parameter called `name`, compared without regard to case
/// (S3 accepts `x-amz-credential` for `X-Amz-Credential`).
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query_pairs(query)
        .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
        .map(|(_, v)| String::from_utf8_lossy(&v).into_owned())
}

/// The canonical query string; `X-Amz-Signature` is left out of a presigned URL's.
pub(crate) fn canonical_query(query: &str, presigned: bool) -> String {
    let mut pairs: Vec<(String, String)> = query_pairs(query)
        .filter(|(name, _)| !(presigned && name.eq_ignore_ascii_case(b"X-Amz-Signature")))
        .map(|(name, value)| (uri_encode(&name), uri_encode(&value)))
        .collect();
    pairs.sort();
    let mut out = String::with_capacity(query.len() + 8);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    out
}

/// Appends a header value trimmed, with each run of spaces and tabs made one space.
fn push_normalized_value(out: &mut Vec<u8>, value: &[u8]) {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let mut in_space = false;
    let start = value
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    for &b in &value[start..end] {
        if is_space(&b) {
            in_space = true;
            continue;
        }
        if in_space {
            out.push(b' ');
            in_space = false;
        }
        out.push(b);
    }
}

/// `name:value\n` for each signed header; several values of one header are joined with `,`.
/// A signed header the request lacks signs as empty, so the signature will not match.
fn canonical_headers(parts: &Parts, signed_headers: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut values = parts.headers.get_all(*name).iter().peekable();
        if values.peek().is_none() && name.eq_ignore_ascii_case("host") {
            // HTTP/2 carries the host in :authority, which `http` puts in the URI.
            if let Some(authority) = parts.uri.authority() {
                out.extend_from_slice(authority.as_str().as_bytes());
            }
        }
        for (i, value) in values.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_normalized_value(&mut out, value.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// Splits `SignedHeaders` (`host;x-amz-date`).
pub(crate) fn split_signed_headers(value: &str) -> Vec<&str> {
    value.split(';').filter(|name| !name.is_empty()).collect()
}

/// S3 requires `host` and every `x-amz-*` header of the request to be signed.
pub(crate) fn check_signed_headers(headers: &HeaderMap, signed: &[&str]) -> Result<(), S3Error> {
    let is_signed = |name: &str| signed.iter().any(|s| s.eq_ignore_ascii_case(name));
    let mut missing: Vec<&str> = Vec::new();
    if !is_signed("host") {
        missing.push("host");
    }
    for name in headers.keys() {
        let name = name.as_str();
        if name.starts_with("x-amz-") && !is_signed(name) && !missing.contains(&name) {
            missing.push(name);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(s3_error!(
        AccessDenied,
        "There were headers present in the request which were not signed"
    )
    .with_detail("HeadersNotSigned", missing.join(", ")))
}

/// The canonical request:
/// `method \n uri \n query \n headers \n signed-headers \n payload-hash`.
pub(crate) fn canonical_request(
    parts: &Parts,
    signed_headers: &str,
    payload_hash: &str,
    presigned: bool,
) -> Vec<u8> {
    let names = split_signed_headers(signed_headers);
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(parts.uri.path()).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(parts.uri.query().unwrap_or(""), presigned).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&canonical_headers(parts, &names));
    out.push(b'\n');
    out.extend_from_slice(signed_headers.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_segments_are_decoded_then_encoded_once() {
        let cases = [
            ("", "/"),
            ("/", "/"),
            ("/test-bucket/a%20b/a+b", "/test-bucket/a%20b/a%2Bb"),
            (
                "/test-bucket/%c3%bc/%E4%B8%AD",
                "/test-bucket/%C3%BC/%E4%B8%AD",
            ),
            (
                "/test-bucket/!*'()~=&:@$,;",
                "/test-bucket/%21%2A%27%28%29~%3D%26%3A%40%24%2C%3B",
            ),
            (
                "/test-bucket/%21%2A%27%28%29%7E%3D%26%3A",
                "/test-bucket/%21%2A%27%28%29~%3D%26%3A",
            ),
            ("/test-bucket/100%25/100%", "/test-bucket/100%25/100%25"),
            ("/test-bucket//a//b/", "/test-bucket//a//b/"),
            ("/b/a/../c/./d", "/b/a/../c/./d"),
            ("/test%24file.text", "/test%24file.text"),
        ];
        for (path, expected) in cases {
            assert_eq!(canonical_uri(path), expected, "path {path}");
        }
    }

    #[test]
    fn query_is_sorted_by_name_then_value() {
        let cases = [
            ("b=2&a=1", "a=1&b=2"),
            ("a=2&a=1&a=&A=3", "A=3&a=&a=1&a=2"),
            ("acl&b=", "acl=&b="),
            ("uploads", "uploads="),
            ("a=b+c&d=e%2Bf&g=%20", "a=b%20c&d=e%2Bf&g=%20"),
            // By name first: "-" and "." sort below "=".
            ("k=1&k-x=2&k.y=3&k0=4", "k=1&k-x=2&k.y=3&k0=4"),
            (
                "k=%c3%bc~!*'()&l=a=b&m=a:b/c",
                "k=%C3%BC~%21%2A%27%28%29&l=a%3Db&m=a%3Ab%2Fc",
            ),
            ("&&a=1&", "a=1"),
            ("", ""),
        ];
        for (query, expected) in cases {
            assert_eq!(canonical_query(query, false), expected, "query {query}");
        }
    }

    #[test]
    fn presigned_query_leaves_out_the_signature_in_any_case() {
        let q = "X-Amz-Date=1&x-amz-SIGNATURE=ab&versionId=null";
        assert_eq!(canonical_query(q, true), "X-Amz-Date=1&versionId=null");
        assert_eq!(
            canonical_query(q, false),
            "X-Amz-Date=1&versionId=null&x-amz-SIGNATURE=ab"
        );
    }

    #[test]
    fn query_param_is_case_insensitive_and_decoded() {
        let q = "x-amz-credential=AKID%2F20130524%2Fus-east-1&Signature=a+b";
        assert_eq!(
            query_param(q, "X-Amz-Credential").as_deref(),
            Some("AKID/20130524/us-east-1")
        );
        assert_eq!(query_param(q, "signature").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "X-Amz-Date"), None);
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        let parts = http::Request::builder()
            .uri("/")
            .header("x-amz-meta-s", "  a   b \t c  ")
            .header("x-amz-meta-m", "one")
            .header("x-amz-meta-m", " two ")
            .header("host", "example.com")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let out = canonical_headers(
            &parts,
            &["host", "x-amz-meta-m", "x-amz-meta-s", "x-absent"],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "host:example.com\nx-amz-meta-m:one,two\nx-amz-meta-s:a b c\nx-absent:\n"
        );
    }

    #[test]
    fn host_falls_back_to_the_authority() {
        let parts = http::Request::builder()
            .uri("https://bucket.example.com:8443/key")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let out = canonical_headers(&parts, &["host"]);
        assert_eq!(out, b"host:bucket.example.com:8443\n");
    }

    #[test]
    fn unsigned_amz_headers_and_host_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "h".parse().unwrap());
        headers.insert("x-amz-date", "d".parse().unwrap());
        headers.insert("x-amz-meta-color", "red".parse().unwrap());
        headers.insert("content-type", "text/plain".parse().unwrap());
        assert!(
            check_signed_headers(&headers, &["host", "x-amz-date", "x-amz-meta-color"]).is_ok()
        );
        let err = check_signed_headers(&headers, &["host", "x-amz-date"]).unwrap_err();
        assert_eq!(err.code(), crate::error::S3ErrorCode::AccessDenied);
        assert!(err
            .to_xml("r")
            .contains("<HeadersNotSigned>x-amz-meta-color</HeadersNotSigned>"));
        let err = check_signed_headers(&headers, &["x-amz-date", "x-amz-meta-color"]).unwrap_err();
        assert!(err
            .to_xml("r")
            .contains("<HeadersNotSigned>host</HeadersNotSigned>"));
    }
}
