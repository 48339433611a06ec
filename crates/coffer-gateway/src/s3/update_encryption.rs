//! UpdateObjectEncryption (seed 000): rewrap an object's data key under a new KMS key through
//! KMS ReEncrypt and replace the envelope with one compare-and-set. The blob is never read or
//! written; ETag, checksums, size, dates, storage class and metadata are unchanged.

use axum::body::Body;
use axum::response::Response;
use coffer_meta::{Command, Envelope, MetaError, ObjectVersion, SseAlgorithm};
use http::StatusCode;
use serde::Deserialize;

use super::bucket::read_body;
use super::common::*;
use crate::error::{S3Error, S3ErrorCode, S3Result};
use crate::state::{AppState, ReqCtx};
use crate::xml;

/// The seed's messages, word for word (typographic apostrophes included).
pub mod msg {
    /// DSSE-KMS or SSE-C source.
    pub const SOURCE_TYPE: &str = "The UpdateObjectEncryption operation doesn’t support source objects with the encryption type DSSE-KMS or SSE-C. Only source objects encrypted with SSE-S3 or SSE-KMS are supported.";
    /// Unencrypted source.
    pub const SOURCE_UNENCRYPTED: &str = "The UpdateObjectEncryption operation doesn’t supported unencrypted source objects. Only source objects encrypted with SSE-S3 or SSE-KMS are supported.";
    /// DSSE-KMS or SSE-C target.
    pub const TARGET_TYPE: &str = "The UpdateObjectEncryption operation doesn’t support updating the encryption type to DSSE-KMS or SSE-C. Modify the request to specify SSE-KMS for the updated encryption type, and then try again.";
    /// Not SigV4.
    pub const SIGV4: &str = "Requests that modify an object encryption configuration require Amazon Web Services Signature Version 4. Modify the request to use Amazon Web Services Signature Version 4, and then try again.";
    /// No valid new type.
    pub const NEW_TYPE: &str = "Requests that modify an object encryption configuration require a valid new encryption type. Valid values are SSEKMS. Modify the request to specify SSE-KMS for the updated encryption type, and then try again.";
    /// Missing key ARN.
    pub const ARN_MISSING: &str = "Requests that modify an object’s encryption type to SSE-KMS require an Amazon Web Services KMS key Amazon Resource Name (ARN). Modify the request to specify a KMS key ARN, and then try again.";
    /// Malformed key ARN.
    pub const ARN_INVALID: &str = "Requests that modify an object’s encryption type to SSE-KMS require a valid Amazon Web Services KMS key Amazon Resource Name (ARN). Confirm that you have a correctly formatted KMS key ARN in your request, and then try again.";
    /// BucketKeyEnabled not a boolean.
    pub const BUCKET_KEY: &str = "The BucketKeyEnabled value isn’t valid. Valid values are true or false. Modify the request to specify a valid value, and then try again.";
    /// Key of another account.
    pub const OTHER_ACCOUNT: &str = "The Amazon Web Services KMS key in the request must be owned by the same account as the bucket. Modify the request to specify a KMS key from the same account, and then try again.";
    /// Object Lock.
    pub const OBJECT_LOCK: &str = "The encryption type for the specified object can’t be updated because that object is protected by S3 Object Lock. If the object has a governance-mode retention period or a legal hold, you must first remove the Object Lock status on the object before you issue your UpdateObjectEncryption request. You can’t use the UpdateObjectEncryption operation with objects that have an Object Lock compliance mode retention period applied to them.";
}

fn invalid(m: &str) -> S3Error {
    S3Error::new(S3ErrorCode::InvalidRequest, m)
}

fn denied(m: &str) -> S3Error {
    S3Error::new(S3ErrorCode::AccessDenied, m)
}

/// `ObjectEncryption`: a tagged union; only `SSE-KMS` is a valid target.
#[derive(Deserialize, Default)]
struct ObjectEncryption {
    #[serde(rename = "SSE-KMS", alias = "SSEKMS")]
    sse_kms: Option<SseKms>,
    #[serde(rename = "SSE-S3", alias = "SSES3")]
    sse_s3: Option<Ignored>,
    #[serde(rename = "DSSE-KMS", alias = "DSSEKMS")]
    dsse_kms: Option<Ignored>,
    #[serde(rename = "SSE-C", alias = "SSEC")]
    sse_c: Option<Ignored>,
}

#[derive(Deserialize, Default)]
struct Ignored {}

#[derive(Deserialize, Default)]
struct SseKms {
    #[serde(rename = "KMSKeyArn")]
    kms_key_arn: Option<String>,
    #[serde(rename = "BucketKeyEnabled")]
    bucket_key_enabled: Option<String>,
}

/// What a valid request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The full key ARN.
    pub key_arn: String,
    /// Use an S3 Bucket Key.
    pub bucket_key_enabled: bool,
}

/// The seed's ARN pattern: `arn:aws[-a-z0-9]*:kms:[-a-z0-9]*:[0-9]{12}:key/.+`.
pub fn valid_key_arn(arn: &str) -> bool {
    let Some(rest) = arn.strip_prefix("arn:aws") else {
        return false;
    };
    let Some((partition_tail, rest)) = rest.split_once(":kms:") else {
        return false;
    };
    if !partition_tail
        .bytes()
        .all(|c| c == b'-' || c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return false;
    }
    let Some((region, rest)) = rest.split_once(':') else {
        return false;
    };
    if !region
        .bytes()
        .all(|c| c == b'-' || c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return false;
    }
    let Some((account, rest)) = rest.split_once(':') else {
        return false;
    };
    account.len() == 12
        && account.bytes().all(|c| c.is_ascii_digit())
        && rest.strip_prefix("key/").is_some_and(|id| !id.is_empty())
}

/// The account field of a key ARN.
pub fn arn_account(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}

/// Parses and validates the request body.
pub fn parse_target(raw: &[u8]) -> S3Result<Target> {
    let enc: ObjectEncryption = xml::parse(raw)?;
    if enc.dsse_kms.is_some() || enc.sse_c.is_some() {
        return Err(invalid(msg::TARGET_TYPE));
    }
    let Some(kms) = enc.sse_kms else {
        let _ = enc.sse_s3;
        return Err(invalid(msg::NEW_TYPE));
    };
    let arn = kms
        .kms_key_arn
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty());
    let Some(key_arn) = arn else {
        return Err(invalid(msg::ARN_MISSING));
    };
    if !valid_key_arn(&key_arn) {
        return Err(invalid(msg::ARN_INVALID));
    }
    let bucket_key_enabled = match kms.bucket_key_enabled.as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(invalid(msg::BUCKET_KEY)),
    };
    Ok(Target {
        key_arn,
        bucket_key_enabled,
    })
}

/// UpdateObjectEncryption.
pub async fn handle(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    let state = ctx.state.clone();
    let bucket = state.meta.get_bucket(ctx.bucket()).await?;
    if bucket.directory {
        return Err(S3Error::new(
            S3ErrorCode::NotImplemented,
            "This operation is not supported for directory buckets.",
        ));
    }
    super::bucket_encryption::require_body_digest(&ctx)?;
    let raw = read_body(&ctx, body).await?;
    let target = parse_target(&raw)?;
    if arn_account(&target.key_arn) != state.config.account_id {
        return Err(denied(msg::OTHER_ACCOUNT));
    }
    let version_id = version_param(ctx.query("versionId"));
    match rewrap_version(&state, ctx.bucket(), ctx.key(), version_id, &target, false).await? {
        Ok(_) => Ok(empty(StatusCode::OK)),
        Err(Refusal::DeleteMarker) => Err(crate::s3_error!(
            NoSuchKey,
            "The specified key does not exist."
        )
        .with_detail("Key", ctx.key())),
        Err(Refusal::Unencrypted) => Err(invalid(msg::SOURCE_UNENCRYPTED)),
        Err(Refusal::SourceType(_)) => Err(invalid(msg::SOURCE_TYPE)),
        Err(Refusal::LegalHold | Refusal::Retention) => Err(denied(msg::OBJECT_LOCK)),
    }
}

/// Why a version's data key is not rewrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The version is a delete marker.
    DeleteMarker,
    /// No envelope.
    Unencrypted,
    /// SSE-C or DSSE-KMS.
    SourceType(SseAlgorithm),
    /// Object Lock legal hold.
    LegalHold,
    /// Object Lock retention in force.
    Retention,
}

impl Refusal {
    /// A short reason, as re-encryption job reports list it.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::DeleteMarker => "delete-marker",
            Refusal::Unencrypted => "unencrypted",
            Refusal::SourceType(SseAlgorithm::SseC) => "sse-c",
            Refusal::SourceType(_) => "dsse-kms",
            Refusal::LegalHold => "object-lock-legal-hold",
            Refusal::Retention => "object-lock-retention",
        }
    }
}

/// What [`rewrap_version`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrapped {
    /// The envelope now names the target.
    Done,
    /// It already did (only with `skip_if_at_target`); nothing was written.
    AlreadyAtTarget,
}

/// True if `env` is SSE-KMS under the target key with the target Bucket Key setting.
pub fn at_target(env: &Envelope, target: &Target) -> bool {
    env.algorithm == SseAlgorithm::AwsKms
        && env.kms_key_arn.as_deref() == Some(target.key_arn.as_str())
        && env.bucket_key_id.is_some() == target.bucket_key_enabled
}

/// What the rewrap of version `v` to `target` would do, decided from the version alone: the
/// envelope to rewrap, `None` when it is already under the target (only with
/// `skip_if_at_target`), or why the operation refuses it (`now_ms` judges retention).
pub fn check<'v>(
    v: &'v ObjectVersion,
    target: &Target,
    skip_if_at_target: bool,
    now_ms: i64,
) -> Result<Option<&'v Envelope>, Refusal> {
    if v.delete_marker {
        return Err(Refusal::DeleteMarker);
    }
    let Some(env) = &v.envelope else {
        return Err(Refusal::Unencrypted);
    };
    match env.algorithm {
        SseAlgorithm::Aes256 | SseAlgorithm::AwsKms => {}
        a @ (SseAlgorithm::AwsKmsDsse | SseAlgorithm::SseC) => return Err(Refusal::SourceType(a)),
    }
    if skip_if_at_target && at_target(env, target) {
        return Ok(None);
    }
    if v.legal_hold {
        return Err(Refusal::LegalHold);
    }
    if v.retention
        .as_ref()
        .is_some_and(|r| r.retain_until_ms > now_ms)
    {
        return Err(Refusal::Retention);
    }
    Ok(Some(env))
}

/// The rewrap of UpdateObjectEncryption and of re-encryption jobs: reads the version (the
/// current one without `version_id`), refuses what the operation refuses, rewraps its data key
/// through KMS ReEncrypt and replaces the envelope with one compare-and-set on its generation
/// and `seq`; a concurrent PUT, DELETE or rewrap makes it read and decide again (5 times).
/// With `skip_if_at_target`, a version already under the target is left alone.
pub async fn rewrap_version(
    state: &AppState,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    target: &Target,
    skip_if_at_target: bool,
) -> S3Result<Result<Rewrapped, Refusal>> {
    for _ in 0..5 {
        let v = state.meta.get_object(bucket, key, version_id).await?;
        let env = match check(&v, target, skip_if_at_target, now_ms()) {
            Ok(Some(env)) => env,
            Ok(None) => return Ok(Ok(Rewrapped::AlreadyAtTarget)),
            Err(refusal) => return Ok(Err(refusal)),
        };
        let new_env = crate::sse::rewrap(
            state,
            bucket,
            key,
            env,
            &target.key_arn,
            target.bucket_key_enabled,
        )
        .await?;
        let cmd = Command::UpdateEnvelope {
            bucket: bucket.to_string(),
            key: key.to_string(),
            version_id: Some(v.version_id.clone()),
            expected_generation: env.generation,
            expected_seq: Some(v.seq),
            envelope: Envelope {
                generation: env.generation + 1,
                ..new_env
            },
        };
        match state.meta.apply(cmd).await {
            Ok(_) => return Ok(Ok(Rewrapped::Done)),
            Err(MetaError::GenerationMismatch { .. }) => continue,
            Err(MetaError::NoSuchVersion(_)) if version_id.is_none() => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(S3Error::new(
        S3ErrorCode::ConditionalRequestConflict,
        "The conditional request cannot succeed due to a conflicting operation against this resource.",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(inner: &str) -> Vec<u8> {
        format!("<ObjectEncryption xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{inner}</ObjectEncryption>").into_bytes()
    }

    #[test]
    fn arn_pattern_of_the_seed() {
        // Seed 000: "Pattern: (arn:aws[-a-z0-9]*:kms:[-a-z0-9]*:[0-9]{12}:key/.+)".
        assert!(valid_key_arn(
            "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert!(valid_key_arn(
            "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/x"
        ));
        assert!(!valid_key_arn("1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(!valid_key_arn("alias/my-key"));
        assert!(!valid_key_arn(
            "arn:aws:kms:us-east-1:000000000000:alias/my-key"
        ));
        assert!(!valid_key_arn("arn:aws:kms:us-east-1:00000000000:key/x"));
        assert!(!valid_key_arn("arn:aws:kms:us-east-1:000000000000:key/"));
    }

    #[test]
    fn target_validation_messages() {
        let arn = "arn:aws:kms:us-east-1:000000000000:key/k";
        assert_eq!(
            parse_target(&body(&format!("<SSE-KMS><KMSKeyArn>{arn}</KMSKeyArn><BucketKeyEnabled>true</BucketKeyEnabled></SSE-KMS>"))).unwrap(),
            Target { key_arn: arn.into(), bucket_key_enabled: true }
        );
        // "Requests that modify an object’s encryption type to SSE-KMS require an ... ARN."
        assert_eq!(
            parse_target(&body("<SSE-KMS></SSE-KMS>"))
                .unwrap_err()
                .message(),
            msg::ARN_MISSING
        );
        // "... require a valid ... ARN" — key IDs and aliases are refused.
        assert_eq!(
            parse_target(&body("<SSE-KMS><KMSKeyArn>alias/x</KMSKeyArn></SSE-KMS>"))
                .unwrap_err()
                .message(),
            msg::ARN_INVALID
        );
        // "The BucketKeyEnabled value isn’t valid."
        let e = parse_target(&body(&format!("<SSE-KMS><KMSKeyArn>{arn}</KMSKeyArn><BucketKeyEnabled>yes</BucketKeyEnabled></SSE-KMS>"))).unwrap_err();
        assert_eq!(e.message(), msg::BUCKET_KEY);
        // "... require a valid new encryption type. Valid values are SSEKMS."
        assert_eq!(
            parse_target(&body("<SSE-S3/>")).unwrap_err().message(),
            msg::NEW_TYPE
        );
        assert_eq!(
            parse_target(&body("")).unwrap_err().message(),
            msg::NEW_TYPE
        );
        // "... doesn’t support updating the encryption type to DSSE-KMS or SSE-C."
        assert_eq!(
            parse_target(&body("<DSSE-KMS/>")).unwrap_err().message(),
            msg::TARGET_TYPE
        );
        assert_eq!(
            parse_target(&body("<SSE-C/>")).unwrap_err().code(),
            S3ErrorCode::InvalidRequest
        );
    }
}
