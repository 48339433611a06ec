//! Directory buckets (seeds 001, 002): the `<base>--<zone-id>--x-s3` names, CreateSession and
//! the session credentials that sign Zonal endpoint requests (`x-amz-s3session-token`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use coffer_meta::SseAlgorithm;
use zeroize::Zeroizing;

use crate::error::S3Result;
use crate::s3::bucket_encryption::directory_msg as msg;
use crate::s3::common::*;
use crate::s3_error;
use crate::sigv4::CredentialProvider;
use crate::state::ReqCtx;
use crate::xml::XmlWriter;

/// The suffix every directory bucket name carries.
pub const SUFFIX: &str = "--x-s3";

/// How long CreateSession credentials last (S3 Express One Zone: five minutes).
pub const SESSION_SECONDS: i64 = 300;

/// Whether a bucket name is a directory bucket's (general purpose names cannot end in `--x-s3`).
pub fn is_directory_name(name: &str) -> bool {
    name.ends_with(SUFFIX)
}

/// Checks `bucket-base-name--zone-id--x-s3` (seed 001) and returns the zone ID.
pub fn validate_name(name: &str) -> S3Result<&str> {
    let invalid = || {
        s3_error!(InvalidBucketName, "The specified bucket is not valid.")
            .with_detail("BucketName", name)
    };
    if !(3..=63).contains(&name.len()) {
        return Err(invalid());
    }
    let rest = name.strip_suffix(SUFFIX).ok_or_else(invalid)?;
    let (base, zone) = rest.rsplit_once("--").ok_or_else(invalid)?;
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|c| alnum(c) || c == b'-')
            && alnum(s.as_bytes()[0])
            && alnum(s.as_bytes()[s.len() - 1])
    };
    if !word(base) || !word(zone) || base.contains("--") || zone.contains("--") {
        return Err(invalid());
    }
    Ok(zone)
}

/// Encryption settings a CreateSession request asked for (REST API override, seed 002).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSse {
    /// `x-amz-server-side-encryption`.
    pub algorithm: SseAlgorithm,
    /// `x-amz-server-side-encryption-aws-kms-key-id`.
    pub kms_key_id: Option<String>,
}

/// One CreateSession grant.
pub struct Session {
    /// The bucket the session is for.
    pub bucket: String,
    /// Temporary access key ID.
    pub access_key_id: String,
    /// Temporary secret.
    pub secret: Zeroizing<String>,
    /// When the credentials stop working.
    pub expires: DateTime<Utc>,
    /// `ReadWrite` or `ReadOnly`.
    pub read_only: bool,
    /// The encryption the session asked for, if any.
    pub sse: Option<SessionSse>,
}

impl CredentialProvider for Session {
    fn secret_key(&self, access_key_id: &str) -> Option<Zeroizing<String>> {
        (access_key_id == self.access_key_id).then(|| self.secret.clone())
    }
}

/// Live sessions by token.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Arc<Session>>>);

impl Sessions {
    /// Records a session under a fresh token; forgets expired ones.
    pub fn insert(&self, token: String, session: Session) {
        let now = Utc::now();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires > now);
        map.insert(token, Arc::new(session));
    }

    /// The live session of a token.
    pub fn get(&self, token: &str) -> Option<Arc<Session>> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(token).filter(|s| s.expires > Utc::now()).cloned()
    }
}

fn random_hex<const N: usize>() -> S3Result<String> {
    let raw: [u8; N] = coffer_crypto::random_bytes().map_err(crate::error::S3Error::internal)?;
    Ok(hex::encode(raw))
}

/// The SigV4 service of a request's credential scope: `s3express` for directory bucket
/// clients, `s3` otherwise.
pub fn signing_service(parts: &http::request::Parts) -> &'static str {
    let from_header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("Credential=").nth(1))
        .map(|c| c.split([',', ' ']).next().unwrap_or("").to_string());
    let from_query = || {
        crate::router::Query::parse(parts.uri.query())
            .get("X-Amz-Credential")
            .map(str::to_string)
    };
    match from_header.or_else(from_query) {
        Some(c) if c.split('/').nth(3) == Some("s3express") => "s3express",
        _ => "s3",
    }
}

/// CreateSession (`GET /{bucket}?session`).
pub async fn create_session(ctx: ReqCtx) -> S3Result<Response> {
    let name = ctx.bucket().to_string();
    validate_name(&name)?;
    let read_only = match ctx.header("x-amz-create-session-mode") {
        None | Some("ReadWrite") => false,
        Some("ReadOnly") => true,
        Some(other) => {
            return Err(s3_error!(
                InvalidArgument,
                "Invalid value for x-amz-create-session-mode"
            )
            .with_detail("ArgumentName", "x-amz-create-session-mode")
            .with_detail("ArgumentValue", other))
        }
    };
    // The SDKs call CreateSession before CreateBucket when they talk to a custom endpoint: a
    // bucket that does not exist yet gets a session with the SSE-S3 default.
    let bucket = match ctx.state.meta.get_bucket(&name).await {
        Ok(b) => Some(b),
        Err(coffer_meta::MetaError::NoSuchBucket(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let requested_sse = match ctx.header("x-amz-server-side-encryption") {
        None => None,
        Some(_) => {
            let probe = bucket.clone().unwrap_or_else(|| empty_record(&ctx, &name));
            let r = crate::sse::requested(&ctx.parts.headers, &probe)?;
            Some(SessionSse {
                algorithm: r.algorithm,
                kms_key_id: r.kms_key_id,
            })
        }
    };
    if let (Some(b), Some(s)) = (&bucket, &requested_sse) {
        check_override(b, s.algorithm, s.kms_key_id.as_deref())?;
    }
    let token = random_hex::<32>()?;
    let access_key_id = format!("ASIA{}", random_hex::<8>()?.to_ascii_uppercase());
    let secret = Zeroizing::new(random_hex::<20>()?);
    let expires = Utc::now() + Duration::seconds(SESSION_SECONDS);
    let mut w = XmlWriter::new("CreateSessionResult");
    w.open("Credentials")
        .elem("SessionToken", &token)
        .elem("SecretAccessKey", secret.as_str())
        .elem("AccessKeyId", &access_key_id)
        .elem(
            "Expiration",
            expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
        .close("Credentials");
    let body = w.finish("CreateSessionResult");
    // The response reports the encryption new objects of the session get.
    let (algorithm, key) = match (
        &requested_sse,
        bucket.as_ref().and_then(|b| b.encryption.as_ref()),
    ) {
        (Some(s), _) => (s.algorithm, s.kms_key_id.clone()),
        (None, Some(d)) => (d.sse_algorithm, d.kms_master_key_id.clone()),
        (None, None) => (SseAlgorithm::Aes256, None),
    };
    ctx.state.sessions.insert(
        token,
        Session {
            bucket: name.clone(),
            access_key_id,
            secret,
            expires,
            read_only,
            sse: requested_sse,
        },
    );
    let mut headers = vec![(
        "x-amz-server-side-encryption",
        crate::s3::bucket_encryption::algorithm_name(algorithm).to_string(),
    )];
    if algorithm == SseAlgorithm::AwsKms {
        if let Some(k) = key {
            headers.push(("x-amz-server-side-encryption-aws-kms-key-id", k));
        }
        headers.push((
            "x-amz-server-side-encryption-bucket-key-enabled",
            "true".to_string(),
        ));
    }
    let mut resp = xml_response(body);
    for (n, v) in headers {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            resp.headers_mut().insert(n, v);
        }
    }
    Ok(resp)
}

fn empty_record(ctx: &ReqCtx, name: &str) -> coffer_meta::BucketRecord {
    coffer_meta::BucketRecord {
        v: coffer_meta::FORMAT_VERSION,
        name: name.to_string(),
        created_ms: 0,
        region: ctx.state.config.region.clone(),
        owner_id: String::new(),
        versioning: coffer_meta::Versioning::Unversioned,
        object_lock_enabled: false,
        default_retention: None,
        encryption: None,
        directory: true,
    }
}

/// Seed 002: "you can override the encryption settings to SSE-S3 or to SSE-KMS only if you
/// specified the bucket's default encryption with SSE-KMS previously", and the key must be
/// "the same customer managed key that you specified for the directory bucket's default
/// encryption configuration".
pub fn check_override(
    bucket: &coffer_meta::BucketRecord,
    algorithm: SseAlgorithm,
    kms_key_id: Option<&str>,
) -> S3Result<()> {
    let default = bucket.encryption.as_ref();
    let default_alg = default
        .map(|d| d.sse_algorithm)
        .unwrap_or(SseAlgorithm::Aes256);
    match algorithm {
        SseAlgorithm::AwsKmsDsse | SseAlgorithm::SseC => {
            Err(s3_error!(InvalidArgument, "{}", msg::ALGORITHMS))
        }
        SseAlgorithm::Aes256 => Ok(()),
        SseAlgorithm::AwsKms => {
            if default_alg != SseAlgorithm::AwsKms {
                return Err(s3_error!(InvalidArgument, "{}", msg::KMS_NEEDS_DEFAULT));
            }
            let bucket_key = default.and_then(|d| d.kms_master_key_id.as_deref());
            match (kms_key_id, bucket_key) {
                (None, _) => Ok(()),
                (Some(k), Some(b)) if same_key(k, b) => Ok(()),
                (Some(_), _) => Err(s3_error!(InvalidArgument, "{}", msg::SAME_KEY)),
            }
        }
    }
}

/// A key ID and the ARN of the same key name the same key.
pub fn same_key(a: &str, b: &str) -> bool {
    let id = |s: &str| {
        s.rsplit_once("key/")
            .map(|(_, k)| k.to_string())
            .unwrap_or_else(|| s.to_string())
    };
    id(a) == id(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            validate_name("doc-example--usw2-az1--x-s3").unwrap(),
            "usw2-az1"
        );
        for bad in [
            "--x-s3",
            "a--x-s3",
            "-a--usw2-az1--x-s3",
            "A--usw2-az1--x-s3",
            "a--b--c--x-s3",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(same_key("arn:aws:kms:us-east-1:1:key/abc", "abc"));
        assert!(!same_key("abc", "abd"));
    }
}

/// The encryption of a new object in a directory bucket (seed 002): SSE-S3 or SSE-KMS with the
/// bucket's one customer managed key; S3 Bucket Keys always on, except for copies.
pub fn requested(
    headers: &http::HeaderMap,
    bucket: &coffer_meta::BucketRecord,
) -> S3Result<crate::sse::SseRequest> {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if headers.keys().any(|k| {
        k.as_str()
            .starts_with("x-amz-server-side-encryption-customer-")
    }) {
        return Err(s3_error!(InvalidArgument, "{}", msg::ALGORITHMS));
    }
    // Seed 002: "S3 Bucket Keys aren't supported, when you copy SSE-KMS encrypted objects ...
    // through CopyObject, UploadPartCopy".
    let copy = headers.contains_key("x-amz-copy-source");
    let default = bucket.encryption.as_ref();
    let default_alg = default
        .map(|d| d.sse_algorithm)
        .unwrap_or(SseAlgorithm::Aes256);
    let default_key = default
        .filter(|d| d.sse_algorithm == SseAlgorithm::AwsKms)
        .and_then(|d| d.kms_master_key_id.clone());
    let (algorithm, kms_key_id) = match h("x-amz-server-side-encryption") {
        None => {
            if h("x-amz-server-side-encryption-aws-kms-key-id").is_some() {
                return Err(s3_error!(
                    InvalidArgument,
                    "Server Side Encryption with AWS KMS managed key requires HTTP header x-amz-server-side-encryption : aws:kms"
                ));
            }
            (default_alg, default_key)
        }
        Some(v) => {
            let algorithm = match v {
                "AES256" => SseAlgorithm::Aes256,
                "aws:kms" => SseAlgorithm::AwsKms,
                "aws:kms:dsse" => SseAlgorithm::AwsKmsDsse,
                other => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "The encryption method specified is not supported"
                    )
                    .with_detail("ArgumentName", "x-amz-server-side-encryption")
                    .with_detail("ArgumentValue", other))
                }
            };
            let key = h("x-amz-server-side-encryption-aws-kms-key-id");
            check_override(bucket, algorithm, key)?;
            match algorithm {
                SseAlgorithm::AwsKms => (algorithm, default_key),
                _ => (algorithm, None),
            }
        }
    };
    if let Some(b64) = h("x-amz-server-side-encryption-context") {
        // Seed 002: "The value must match the default encryption context — the bucket Amazon
        // Resource Name (ARN). An additional encryption context value is not supported."
        use base64::Engine;
        let arn = format!("arn:aws:s3:::{}", bucket.name);
        let ok = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|raw| {
                serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&raw).ok()
            })
            .is_some_and(|m| m.len() == 1 && m.values().all(|v| *v == arn));
        if !ok || algorithm != SseAlgorithm::AwsKms {
            return Err(s3_error!(InvalidArgument, "{}", msg::CONTEXT));
        }
    }
    Ok(crate::sse::SseRequest {
        algorithm,
        kms_key_id,
        context: None,
        bucket_key: algorithm == SseAlgorithm::AwsKms && !copy,
        customer_key: None,
    })
}

/// Applies a session to a request it signs: ReadOnly sessions refuse writes, and the encryption
/// a session was created with holds for its PUTs (seed 002: "you can't override the values of
/// the encryption settings ... from the CreateSession request") — except CopyObject and
/// UploadPartCopy, which take their own settings.
pub fn apply_session(
    session: &Session,
    endpoint: &crate::router::Endpoint,
    headers: &mut http::HeaderMap,
) -> S3Result<()> {
    use crate::router::Op;
    let write = !matches!(
        endpoint.op,
        Op::GetObject
            | Op::HeadObject
            | Op::HeadBucket
            | Op::ListObjects
            | Op::ListObjectsV2
            | Op::ListParts
            | Op::ListMultipartUploads
            | Op::GetBucketEncryption
            | Op::GetBucketLocation
            | Op::CreateSession
    );
    if session.read_only && write {
        return Err(s3_error!(AccessDenied, "Access Denied"));
    }
    let Some(sse) = &session.sse else {
        return Ok(());
    };
    if !matches!(endpoint.op, Op::PutObject | Op::CreateMultipartUpload) {
        return Ok(());
    }
    let alg = crate::s3::bucket_encryption::algorithm_name(sse.algorithm);
    let differs = |name: &str, want: Option<&str>| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| match want {
                Some(w) => !same_key(v, w) && v != w,
                None => true,
            })
    };
    if differs("x-amz-server-side-encryption", Some(alg))
        || differs(
            "x-amz-server-side-encryption-aws-kms-key-id",
            sse.kms_key_id.as_deref(),
        )
    {
        return Err(s3_error!(
            InvalidArgument,
            "In the Zonal endpoint API calls (except CopyObject and UploadPartCopy) using the REST API, you can't override the values of the encryption settings from the CreateSession request."
        ));
    }
    if let Ok(v) = http::HeaderValue::from_str(alg) {
        headers.insert("x-amz-server-side-encryption", v);
    }
    if let Some(k) = &sse.kms_key_id {
        if let Ok(v) = http::HeaderValue::from_str(k) {
            headers.insert("x-amz-server-side-encryption-aws-kms-key-id", v);
        }
    }
    Ok(())
}
