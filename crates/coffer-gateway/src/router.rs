//! Turns method + host + path + query into a typed [`Endpoint`] before authentication
//! (Garage's `Endpoint::from_request`), as plain `match` functions.

use std::collections::BTreeMap;

use http::Method;
use percent_encoding::percent_decode_str;

use crate::error::{S3Error, S3Result};
use crate::s3_error;

/// The decoded query string: names to values (last one wins; S3 sub-resources carry no duplicates).
#[derive(Debug, Default, Clone)]
pub struct Query(pub BTreeMap<String, String>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = BTreeMap::new();
        if let Some(raw) = raw {
            for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
                map.insert(k.into_owned(), v.into_owned());
            }
        }
        Query(map)
    }

    /// A parameter's value.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether the parameter is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

/// Every S3 operation the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    ListBuckets,
    CreateBucket,
    HeadBucket,
    DeleteBucket,
    GetBucketLocation,
    ListObjects,
    ListObjectsV2,
    ListObjectVersions,
    ListMultipartUploads,
    GetBucketVersioning,
    PutBucketVersioning,
    GetBucketEncryption,
    PutBucketEncryption,
    DeleteBucketEncryption,
    GetObjectLockConfiguration,
    PutObjectLockConfiguration,
    DeleteObjects,
    CreateSession,
    PutObject,
    CopyObject,
    GetObject,
    HeadObject,
    DeleteObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListParts,
    GetObjectRetention,
    PutObjectRetention,
    GetObjectLegalHold,
    PutObjectLegalHold,
    UpdateObjectEncryption,
    KmsApi,
}

impl Op {
    /// The operation name used in metrics and logs.
    pub fn name(self) -> &'static str {
        macro_rules! names { ($($v:ident),*) => { match self { $(Op::$v => stringify!($v),)* } } }
        names!(
            ListBuckets,
            CreateBucket,
            HeadBucket,
            DeleteBucket,
            GetBucketLocation,
            ListObjects,
            ListObjectsV2,
            ListObjectVersions,
            ListMultipartUploads,
            GetBucketVersioning,
            PutBucketVersioning,
            GetBucketEncryption,
            PutBucketEncryption,
            DeleteBucketEncryption,
            GetObjectLockConfiguration,
            PutObjectLockConfiguration,
            DeleteObjects,
            CreateSession,
            PutObject,
            CopyObject,
            GetObject,
            HeadObject,
            DeleteObject,
            CreateMultipartUpload,
            UploadPart,
            UploadPartCopy,
            CompleteMultipartUpload,
            AbortMultipartUpload,
            ListParts,
            GetObjectRetention,
            PutObjectRetention,
            GetObjectLegalHold,
            PutObjectLegalHold,
            UpdateObjectEncryption,
            KmsApi
        )
    }
}

/// A routed request.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The operation.
    pub op: Op,
    /// The bucket, if the request names one.
    pub bucket: Option<String>,
    /// The object key, if the request names one.
    pub key: Option<String>,
    /// The decoded query.
    pub query: Query,
}

/// Splits host-or-path addressing: returns (bucket, key) as decoded strings.
///
/// Virtual-host style applies when the Host header is `<bucket>.<domain>` for one of the
/// configured base domains; otherwise the first path segment is the bucket (path style).
pub fn split_bucket_key(
    host: Option<&str>,
    raw_path: &str,
    domains: &[String],
) -> S3Result<(Option<String>, Option<String>)> {
    let host = host.map(|h| strip_port(h).to_ascii_lowercase());
    let vhost_bucket = host.as_deref().and_then(|h| {
        domains.iter().find_map(|d| {
            h.strip_suffix(d.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .filter(|b| !b.is_empty())
                .map(str::to_string)
        })
    });
    let path = raw_path.strip_prefix('/').unwrap_or(raw_path);
    match vhost_bucket {
        Some(bucket) => {
            let key = decode(path)?;
            Ok((Some(bucket), (!key.is_empty()).then_some(key)))
        }
        None => {
            if path.is_empty() {
                return Ok((None, None));
            }
            let (b, k) = match path.find('/') {
                Some(i) => (&path[..i], Some(&path[i + 1..])),
                None => (path, None),
            };
            let bucket = decode(b)?;
            let key = match k {
                Some(k) if !k.is_empty() => Some(decode(k)?),
                _ => None,
            };
            Ok((Some(bucket), key))
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split(']').next().map(|h| &h[1..]).unwrap_or(host);
    }
    host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
}

fn decode(s: &str) -> S3Result<String> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| s3_error!(InvalidURI, "Couldn't parse the specified URI."))
}

/// Routes a request.
pub fn route(
    method: &Method,
    host: Option<&str>,
    raw_path: &str,
    raw_query: Option<&str>,
    headers: &http::HeaderMap,
    domains: &[String],
) -> S3Result<Endpoint> {
    let query = Query::parse(raw_query);
    if method == Method::POST && headers.contains_key("x-amz-target") {
        return Ok(Endpoint {
            op: Op::KmsApi,
            bucket: None,
            key: None,
            query,
        });
    }
    let (bucket, key) = split_bucket_key(host, raw_path, domains)?;
    let op = match (&bucket, &key) {
        (None, _) => match *method {
            Method::GET => Op::ListBuckets,
            _ => return Err(method_not_allowed()),
        },
        (Some(_), None) => bucket_op(method, &query)?,
        (Some(_), Some(_)) => object_op(method, &query, headers)?,
    };
    Ok(Endpoint {
        op,
        bucket,
        key,
        query,
    })
}

fn bucket_op(method: &Method, q: &Query) -> S3Result<Op> {
    Ok(match *method {
        Method::GET => {
            if q.has("location") {
                Op::GetBucketLocation
            } else if q.has("versioning") {
                Op::GetBucketVersioning
            } else if q.has("encryption") {
                Op::GetBucketEncryption
            } else if q.has("object-lock") {
                Op::GetObjectLockConfiguration
            } else if q.has("versions") {
                Op::ListObjectVersions
            } else if q.has("uploads") {
                Op::ListMultipartUploads
            } else if q.has("session") {
                Op::CreateSession
            } else if let Some(sub) = unsupported_subresource(q) {
                return Err(not_implemented(sub));
            } else if q.get("list-type") == Some("2") {
                Op::ListObjectsV2
            } else {
                Op::ListObjects
            }
        }
        Method::PUT => {
            if q.has("versioning") {
                Op::PutBucketVersioning
            } else if q.has("encryption") {
                Op::PutBucketEncryption
            } else if q.has("object-lock") {
                Op::PutObjectLockConfiguration
            } else if let Some(sub) = unsupported_subresource(q) {
                return Err(not_implemented(sub));
            } else {
                Op::CreateBucket
            }
        }
        Method::HEAD => Op::HeadBucket,
        Method::DELETE => {
            if q.has("encryption") {
                Op::DeleteBucketEncryption
            } else if let Some(sub) = unsupported_subresource(q) {
                return Err(not_implemented(sub));
            } else {
                Op::DeleteBucket
            }
        }
        Method::POST if q.has("delete") => Op::DeleteObjects,
        _ => return Err(method_not_allowed()),
    })
}

fn object_op(method: &Method, q: &Query, headers: &http::HeaderMap) -> S3Result<Op> {
    let copy = headers.contains_key("x-amz-copy-source");
    Ok(match *method {
        Method::GET => {
            if q.has("uploadId") {
                Op::ListParts
            } else if q.has("retention") {
                Op::GetObjectRetention
            } else if q.has("legal-hold") {
                Op::GetObjectLegalHold
            } else if let Some(sub) = unsupported_subresource(q) {
                return Err(not_implemented(sub));
            } else {
                Op::GetObject
            }
        }
        Method::HEAD => Op::HeadObject,
        Method::PUT => {
            if q.has("partNumber") && q.has("uploadId") {
                if copy {
                    Op::UploadPartCopy
                } else {
                    Op::UploadPart
                }
            } else if q.has("retention") {
                Op::PutObjectRetention
            } else if q.has("legal-hold") {
                Op::PutObjectLegalHold
            } else if q.has("encryption") {
                Op::UpdateObjectEncryption
            } else if let Some(sub) = unsupported_subresource(q) {
                return Err(not_implemented(sub));
            } else if copy {
                Op::CopyObject
            } else {
                Op::PutObject
            }
        }
        Method::DELETE => {
            if q.has("uploadId") {
                Op::AbortMultipartUpload
            } else {
                Op::DeleteObject
            }
        }
        Method::POST => {
            if q.has("uploads") {
                Op::CreateMultipartUpload
            } else if q.has("uploadId") {
                Op::CompleteMultipartUpload
            } else {
                return Err(method_not_allowed());
            }
        }
        _ => return Err(method_not_allowed()),
    })
}

/// Sub-resources of S3 that Coffer does not implement: answered with `NotImplemented`
/// rather than mistaken for a plain GET/PUT.
fn unsupported_subresource(q: &Query) -> Option<&'static str> {
    const SUBS: &[&str] = &[
        "acl",
        "policy",
        "cors",
        "lifecycle",
        "tagging",
        "website",
        "logging",
        "notification",
        "replication",
        "requestPayment",
        "accelerate",
        "analytics",
        "inventory",
        "metrics",
        "ownershipControls",
        "publicAccessBlock",
        "intelligent-tiering",
        "policyStatus",
        "restore",
        "select",
        "torrent",
        "attributes",
    ];
    SUBS.iter().copied().find(|s| q.has(s))
}

fn not_implemented(sub: &str) -> S3Error {
    s3_error!(
        NotImplemented,
        "A header or query you provided requested a function that is not implemented: {sub}"
    )
}

fn method_not_allowed() -> S3Error {
    s3_error!(
        MethodNotAllowed,
        "The specified method is not allowed against this resource."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: Method, host: &str, path: &str, q: Option<&str>) -> Endpoint {
        route(
            &method,
            Some(host),
            path,
            q,
            &http::HeaderMap::new(),
            &["localhost".into()],
        )
        .unwrap()
    }

    #[test]
    fn path_and_virtual_host_style() {
        let e = r(Method::GET, "127.0.0.1:9000", "/b/a%20b/c", None);
        assert_eq!(
            (e.op, e.bucket.as_deref(), e.key.as_deref()),
            (Op::GetObject, Some("b"), Some("a b/c"))
        );
        let e = r(Method::GET, "b.localhost:9000", "/a%2Bb", None);
        assert_eq!(
            (e.op, e.bucket.as_deref(), e.key.as_deref()),
            (Op::GetObject, Some("b"), Some("a+b"))
        );
        let e = r(Method::GET, "localhost:9000", "/", None);
        assert_eq!(e.op, Op::ListBuckets);
        let e = r(
            Method::GET,
            "b.localhost",
            "/",
            Some("list-type=2&prefix=x"),
        );
        assert_eq!(
            (e.op, e.query.get("prefix")),
            (Op::ListObjectsV2, Some("x"))
        );
    }

    #[test]
    fn sub_resources() {
        assert_eq!(
            r(Method::POST, "h", "/b/k", Some("uploads")).op,
            Op::CreateMultipartUpload
        );
        assert_eq!(
            r(Method::PUT, "h", "/b/k", Some("partNumber=1&uploadId=x")).op,
            Op::UploadPart
        );
        assert_eq!(
            r(Method::PUT, "h", "/b/k", Some("encryption")).op,
            Op::UpdateObjectEncryption
        );
        assert_eq!(
            r(Method::DELETE, "h", "/b", Some("encryption")).op,
            Op::DeleteBucketEncryption
        );
        assert_eq!(
            r(Method::POST, "h", "/b", Some("delete")).op,
            Op::DeleteObjects
        );
        let err = route(
            &Method::GET,
            Some("h"),
            "/b",
            Some("acl"),
            &http::HeaderMap::new(),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.code().as_str(), "NotImplemented");
    }
}
