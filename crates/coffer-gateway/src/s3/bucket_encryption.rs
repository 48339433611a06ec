//! PutBucketEncryption, GetBucketEncryption, DeleteBucketEncryption (seeds 001, 003, 004).

use axum::body::Body;
use axum::response::Response;
use coffer_meta::{BucketEncryption, BucketRecord, Command, SseAlgorithm};
use http::StatusCode;
use serde::Deserialize;

use super::bucket::read_body;
use super::common::*;
use crate::error::S3Result;
use crate::s3_error;
use crate::state::{GatewayConfig, ReqCtx};
use crate::xml::{self, XmlWriter};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServerSideEncryptionConfiguration {
    #[serde(rename = "Rule", default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Rule {
    apply_server_side_encryption_by_default: Option<ApplyDefault>,
    bucket_key_enabled: Option<String>,
    blocked_encryption_types: Option<BlockedEncryptionTypes>,
}

#[derive(Deserialize)]
struct ApplyDefault {
    #[serde(rename = "SSEAlgorithm")]
    sse_algorithm: String,
    #[serde(rename = "KMSMasterKeyID")]
    kms_master_key_id: Option<String>,
}

#[derive(Deserialize)]
struct BlockedEncryptionTypes {
    #[serde(rename = "EncryptionType", default)]
    types: Vec<String>,
}

/// The algorithm's name in XML and headers.
pub fn algorithm_name(a: SseAlgorithm) -> &'static str {
    match a {
        SseAlgorithm::Aes256 => "AES256",
        SseAlgorithm::AwsKms => "aws:kms",
        SseAlgorithm::AwsKmsDsse => "aws:kms:dsse",
        SseAlgorithm::SseC => "SSE-C",
    }
}

/// `BlockedEncryptionTypes` value that blocks SSE-C writes.
pub const SSE_C: &str = "SSE-C";
/// `BlockedEncryptionTypes` value that blocks nothing (SSE-C allowed).
pub const NONE: &str = "NONE";

/// A parsed PutBucketEncryption rule: each part is `None` when the request left it out.
struct ParsedRule {
    /// `ApplyServerSideEncryptionByDefault` and `BucketKeyEnabled`, as the stored rule's
    /// algorithm, key and Bucket Key fields (its `blocked_encryption_types` is empty).
    default: Option<BucketEncryption>,
    /// `BlockedEncryptionTypes`: `[SSE-C]` or `[NONE]`.
    blocked: Option<Vec<String>>,
}

/// Parses a PutBucketEncryption body, validating as S3 does.
fn parse_config(raw: &[u8]) -> S3Result<ParsedRule> {
    let cfg: ServerSideEncryptionConfiguration = xml::parse(raw)?;
    // S3 accepts exactly one rule.
    let [rule] = <[Rule; 1]>::try_from(cfg.rules).map_err(|_| xml::malformed())?;
    let blocked = match rule.blocked_encryption_types {
        None => None,
        Some(b) => parse_blocked(b.types)?,
    };
    // ApplyServerSideEncryptionByDefault is optional in a rule (ServerSideEncryptionRule,
    // "Required: No"); the S3 user guide's CLI examples set BlockedEncryptionTypes alone. A rule
    // with neither says nothing.
    let Some(default) = rule.apply_server_side_encryption_by_default else {
        if blocked.is_none() {
            return Err(xml::malformed());
        }
        return Ok(ParsedRule {
            default: None,
            blocked,
        });
    };
    let sse_algorithm = match default.sse_algorithm.as_str() {
        "AES256" => SseAlgorithm::Aes256,
        "aws:kms" => SseAlgorithm::AwsKms,
        "aws:kms:dsse" => SseAlgorithm::AwsKmsDsse,
        _ => return Err(xml::malformed()),
    };
    let kms_master_key_id = default.kms_master_key_id.filter(|k| !k.is_empty());
    if kms_master_key_id.is_some() && sse_algorithm == SseAlgorithm::Aes256 {
        return Err(s3_error!(
            InvalidArgument,
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or aws:kms:dsse"
        ));
    }
    let bucket_key_enabled = match rule.bucket_key_enabled.as_deref().map(str::trim) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(xml::malformed()),
    };
    Ok(ParsedRule {
        default: Some(BucketEncryption {
            sse_algorithm,
            kms_master_key_id,
            bucket_key_enabled,
            blocked_encryption_types: Vec::new(),
        }),
        blocked,
    })
}

/// The `EncryptionType` values of a `BlockedEncryptionTypes`: `SSE-C` or `NONE` (botocore's
/// `EncryptionType` enum), once each, not both. `None` for an empty element, which sets
/// nothing, as an omitted one.
///
/// Any other value is refused as S3 refuses a value outside an enum of this body's schema (as
/// for `SSEAlgorithm`): 400 MalformedXML. No public source shows S3's answer to this exact
/// case; this is the answer S3 gives for the other enums of PutBucketEncryption.
fn parse_blocked(types: Vec<String>) -> S3Result<Option<Vec<String>>> {
    let mut blocked: Vec<String> = Vec::new();
    for t in types {
        let t = t.trim();
        if t != SSE_C && t != NONE {
            return Err(xml::malformed());
        }
        if !blocked.iter().any(|b| b == t) {
            blocked.push(t.to_string());
        }
    }
    if blocked.len() > 1 {
        return Err(s3_error!(
            InvalidArgument,
            "BlockedEncryptionTypes cannot list NONE together with another encryption type"
        )
        .with_detail("ArgumentName", "BlockedEncryptionTypes"));
    }
    Ok((!blocked.is_empty()).then_some(blocked))
}

/// Whether the bucket refuses SSE-C writes (`BlockedEncryptionTypes` = `SSE-C`). A bucket
/// without a recorded setting (created before Coffer knew the setting, or with
/// `allow_sse_c_on_new_buckets`) allows them.
pub fn sse_c_blocked(bucket: &BucketRecord) -> bool {
    bucket
        .encryption
        .as_ref()
        .is_some_and(|e| e.blocked_encryption_types.iter().any(|t| t == SSE_C))
}

/// Whether a stored rule's default encryption is SSE-S3 without a key or Bucket Key: the
/// default every bucket has, whether or not a rule is recorded (e.g. only for the SSE-C setting).
pub fn is_sse_s3_default(rule: &BucketEncryption) -> bool {
    rule.sse_algorithm == SseAlgorithm::Aes256
        && rule.kms_master_key_id.is_none()
        && !rule.bucket_key_enabled
}

/// The encryption configuration CreateBucket records for a new general purpose bucket: SSE-C
/// blocked (S3 since April 2026: "all new general purpose buckets have SSE-C encryption
/// disabled"), unless the operator keeps the earlier behaviour. Recording it (rather than
/// deciding at each request from the server option) keeps a bucket's setting when the option
/// changes later; buckets created before this feature have none recorded and allow SSE-C.
pub fn new_bucket_rule(config: &GatewayConfig) -> Option<BucketEncryption> {
    (!config.allow_sse_c_on_new_buckets).then(|| BucketEncryption {
        blocked_encryption_types: vec![SSE_C.to_string()],
        ..default_rule()
    })
}

/// Operations whose body S3 requires a digest of (`Content-MD5` or an `x-amz-checksum-*`, in a
/// header or announced for the trailer): PutBucketEncryption, UpdateObjectEncryption.
pub fn require_body_digest(ctx: &ReqCtx) -> S3Result<()> {
    let h = &ctx.parts.headers;
    let has_digest = h.contains_key("content-md5")
        || h.contains_key("x-amz-trailer")
        || h.keys().any(|k| k.as_str().starts_with("x-amz-checksum-"));
    if has_digest {
        return Ok(());
    }
    // A declared algorithm without its checksum has its own error (read_body reports it).
    if h.contains_key("x-amz-sdk-checksum-algorithm") {
        return Ok(());
    }
    Err(s3_error!(
        InvalidRequest,
        "Missing required header for this request: Content-MD5"
    ))
}

/// PutBucketEncryption.
pub async fn put(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    let mut bucket = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    require_body_digest(&ctx)?;
    let raw = read_body(&ctx, body).await?;
    let parsed = parse_config(&raw)?;
    if bucket.directory && parsed.blocked.is_some() {
        // BlockedEncryptionTypes: "A bucket-level setting for Amazon S3 general purpose
        // buckets"; directory buckets have no SSE-C to block.
        return Err(s3_error!(
            InvalidArgument,
            "BlockedEncryptionTypes is supported for general purpose buckets only"
        )
        .with_detail("ArgumentName", "BlockedEncryptionTypes"));
    }
    let previous = bucket.encryption.clone();
    // A rule without ApplyServerSideEncryptionByDefault changes only the blocking.
    let mut rule = match parsed.default {
        Some(rule) => rule,
        None => BucketEncryption {
            blocked_encryption_types: Vec::new(),
            ..previous.clone().unwrap_or_else(default_rule)
        },
    };
    // A rule without BlockedEncryptionTypes keeps the bucket's SSE-C setting: S3 accepts such a
    // PutBucketEncryption and GetBucketEncryption goes on reporting the earlier value (seen
    // by Terraform users whose configurations omit it: the next GetBucketEncryption still
    // returns ["SSE-C"] and the plan never converges — trussworks/terraform-aws-logs#333,
    // hashicorp/terraform-provider-aws#47320, cloudposse/terraform-aws-s3-bucket#287).
    rule.blocked_encryption_types = match parsed.blocked {
        Some(b) => b,
        None => previous
            .map(|p| p.blocked_encryption_types)
            .unwrap_or_default(),
    };
    if bucket.directory {
        directory_rule(&ctx, &bucket, &mut rule).await?;
    }
    bucket.encryption = Some(rule);
    ctx.state.meta.apply(Command::UpdateBucket(bucket)).await?;
    Ok(empty(StatusCode::OK))
}

/// The rules of seeds 001 and 002 for a directory bucket's default encryption: AES256 or aws:kms
/// only, a customer managed key named by key ID or key ARN (validated now), one such key for the
/// bucket's lifetime, S3 Bucket Keys always on.
async fn directory_rule(
    ctx: &ReqCtx,
    bucket: &coffer_meta::BucketRecord,
    rule: &mut BucketEncryption,
) -> S3Result<()> {
    // The key of an earlier SSE-KMS configuration, kept for the bucket's lifetime.
    let lifetime_key = bucket
        .encryption
        .as_ref()
        .and_then(|e| e.kms_master_key_id.clone());
    rule.bucket_key_enabled = true;
    match rule.sse_algorithm {
        SseAlgorithm::Aes256 => {
            rule.kms_master_key_id = lifetime_key;
            return Ok(());
        }
        SseAlgorithm::AwsKms => {}
        _ => return Err(s3_error!(InvalidArgument, "{}", directory_msg::ALGORITHMS)),
    }
    let Some(key) = rule.kms_master_key_id.clone() else {
        return Err(s3_error!(
            InvalidArgument,
            "{}",
            directory_msg::KEY_REQUIRED
        ));
    };
    if key.starts_with("alias/") || key.contains(":alias/") {
        return Err(s3_error!(InvalidArgument, "{}", directory_msg::ALIAS));
    }
    let meta = match ctx.state.kms.describe_key(&key).await {
        Ok(m) => m,
        Err(coffer_kms::KmsError::NotFound(_)) | Err(coffer_kms::KmsError::InvalidArn(_)) => {
            return Err(
                s3_error!(InvalidArgument, "{}", directory_msg::KEY_NOT_FOUND)
                    .with_detail("ArgumentName", "KMSMasterKeyID")
                    .with_detail("ArgumentValue", key),
            )
        }
        Err(e) => return Err(e.into()),
    };
    if meta.key_manager == coffer_kms::KeyManager::Aws {
        return Err(s3_error!(InvalidArgument, "{}", directory_msg::AWS_MANAGED));
    }
    if let Some(old) = lifetime_key {
        if !crate::directory::same_key(&old, &meta.arn) && !crate::directory::same_key(&old, &key) {
            return Err(s3_error!(InvalidArgument, "{}", directory_msg::ONE_KEY));
        }
    }
    Ok(())
}

/// Error messages for directory buckets, in the seeds' words.
pub mod directory_msg {
    /// Seed 001.
    pub const ALGORITHMS: &str = "For directory buckets, there are only two supported values for server-side encryption: AES256 and aws:kms.";
    /// Seed 002.
    pub const KEY_REQUIRED: &str = "If you specify --server-side-encryption aws:kms, you must provide an AWS KMS key ID of your customer managed key. Directory buckets don't use an AWS managed key.";
    /// Seed 001.
    pub const ALIAS: &str = "When you specify an KMS customer managed key for encryption in your directory bucket, only use the key ID or key ARN. The key alias format of the KMS key isn’t supported.";
    /// Seed 001: "Amazon S3 validates the KMS key ID provided in PutBucketEncryption requests".
    pub const KEY_NOT_FOUND: &str =
        "The KMS key ID provided in the PutBucketEncryption request is not valid.";
    /// Seed 001.
    pub const AWS_MANAGED: &str = "The Amazon Web Services managed key ( aws/s3) isn’t supported.";
    /// Seed 001.
    pub const ONE_KEY: &str = "Your SSE-KMS configuration can only support 1 customer managed key per directory bucket for the lifetime of the bucket.";
    /// Seed 002: "you can override the encryption settings to SSE-S3 or to SSE-KMS only if you
    /// specified the bucket's default encryption with SSE-KMS previously".
    pub const KMS_NEEDS_DEFAULT: &str = "To encrypt new objects in a directory bucket with SSE-KMS, you must specify SSE-KMS as the directory bucket's default encryption configuration with a KMS key (specifically, a customer managed key).";
    /// Seed 002.
    pub const SAME_KEY: &str = "When you specify server-side encryption settings for new objects with SSE-KMS, you must make sure the encryption key is the same customer managed key that you specified for the directory bucket's default encryption configuration.";
    /// Seed 002.
    pub const CONTEXT: &str = "For directory buckets, the encryption context value must match the default encryption context — the bucket Amazon Resource Name (ARN). An additional encryption context value is not supported.";
}

/// Renders a rule as GetBucketEncryption returns it.
pub fn render(rule: &BucketEncryption) -> String {
    let mut w = XmlWriter::new("ServerSideEncryptionConfiguration");
    w.open("Rule").open("ApplyServerSideEncryptionByDefault");
    w.elem("SSEAlgorithm", algorithm_name(rule.sse_algorithm));
    // A directory bucket back on AES256 keeps its lifetime key without reporting it.
    if rule.sse_algorithm != SseAlgorithm::Aes256 {
        w.opt("KMSMasterKeyID", rule.kms_master_key_id.as_deref());
    }
    w.close("ApplyServerSideEncryptionByDefault");
    w.elem("BucketKeyEnabled", rule.bucket_key_enabled.to_string());
    if !rule.blocked_encryption_types.is_empty() {
        w.open("BlockedEncryptionTypes");
        for t in &rule.blocked_encryption_types {
            w.elem("EncryptionType", t);
        }
        w.close("BlockedEncryptionTypes");
    }
    w.close("Rule");
    w.finish("ServerSideEncryptionConfiguration")
}

/// The rule a bucket without a configuration reports: SSE-S3 (seed 003, "By default, all
/// buckets have a default encryption configuration that uses ... SSE-S3").
pub fn default_rule() -> BucketEncryption {
    BucketEncryption {
        sse_algorithm: SseAlgorithm::Aes256,
        kms_master_key_id: None,
        bucket_key_enabled: false,
        blocked_encryption_types: Vec::new(),
    }
}

/// GetBucketEncryption.
pub async fn get(ctx: ReqCtx) -> S3Result<Response> {
    let bucket = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    let mut rule = bucket.encryption.unwrap_or_else(default_rule);
    if bucket.directory {
        // Seed 001: "S3 Bucket Keys are always enabled ... and can't be disabled".
        rule.bucket_key_enabled = true;
    } else if rule.blocked_encryption_types.is_empty() {
        // A general purpose bucket that allows SSE-C reports NONE, as S3 does for such buckets
        // (GetBucketEncryption returning BlockedEncryptionTypes ["NONE"]:
        // hashicorp/terraform-provider-aws#47320).
        rule.blocked_encryption_types = vec![NONE.to_string()];
    }
    Ok(xml_response(render(&rule)))
}

/// DeleteBucketEncryption: back to the SSE-S3 default.
pub async fn delete(ctx: ReqCtx) -> S3Result<Response> {
    let mut bucket = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    // A directory bucket's customer managed key stays its key for the bucket's lifetime
    // (seed 002): back to SSE-S3, remembering the key.
    let lifetime_key = bucket
        .encryption
        .as_ref()
        .and_then(|e| e.kms_master_key_id.clone())
        .filter(|_| bucket.directory);
    // The SSE-C setting is not default encryption: DeleteBucketEncryption resets the default
    // to SSE-S3 and keeps it, as a PutBucketEncryption without BlockedEncryptionTypes does.
    let blocked = bucket
        .encryption
        .as_ref()
        .map(|e| e.blocked_encryption_types.clone())
        .unwrap_or_default();
    bucket.encryption = match lifetime_key {
        Some(k) => Some(BucketEncryption {
            kms_master_key_id: Some(k),
            bucket_key_enabled: true,
            ..default_rule()
        }),
        None if !blocked.is_empty() => Some(BucketEncryption {
            blocked_encryption_types: blocked,
            ..default_rule()
        }),
        None => None,
    };
    ctx.state.meta.apply(Command::UpdateBucket(bucket)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_kms_rule() {
        let body = br#"<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>alias/k</KMSMasterKeyID></ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>"#;
        let parsed = parse_config(body).unwrap();
        assert_eq!(parsed.blocked, None);
        let rule = parsed.default.unwrap();
        assert_eq!(rule.sse_algorithm, SseAlgorithm::AwsKms);
        assert_eq!(rule.kms_master_key_id.as_deref(), Some("alias/k"));
        assert!(rule.bucket_key_enabled);
        assert_eq!(
            render(&rule),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ServerSideEncryptionConfiguration \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ApplyServerSideEncryptionByDefault>\
             <SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>alias/k</KMSMasterKeyID>\
             </ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule>\
             </ServerSideEncryptionConfiguration>"
        );
    }

    #[test]
    fn key_id_only_with_kms_algorithms() {
        // Seed 003: KMSMasterKeyID "can only be used when you set the value of SSEAlgorithm
        // as aws:kms or aws:kms:dsse".
        let body = br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"#;
        assert_eq!(
            parse_config(body).err().unwrap().code().as_str(),
            "InvalidArgument"
        );
        let two = br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"#;
        assert_eq!(
            parse_config(two).err().unwrap().code().as_str(),
            "MalformedXML"
        );
        let bad = br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>DES</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"#;
        assert_eq!(
            parse_config(bad).err().unwrap().code().as_str(),
            "MalformedXML"
        );
    }

    fn with_blocked(inner: &str) -> Vec<u8> {
        format!(
            "<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault>\
             <SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault>\
             <BlockedEncryptionTypes>{inner}</BlockedEncryptionTypes></Rule>\
             </ServerSideEncryptionConfiguration>"
        )
        .into_bytes()
    }

    fn code(body: &[u8]) -> String {
        parse_config(body)
            .err()
            .unwrap()
            .code()
            .as_str()
            .to_string()
    }

    #[test]
    fn blocked_encryption_types_values() {
        let blocked = |inner: &str| parse_config(&with_blocked(inner)).unwrap().blocked;
        assert_eq!(
            blocked("<EncryptionType>SSE-C</EncryptionType>"),
            Some(vec!["SSE-C".to_string()])
        );
        assert_eq!(
            blocked("<EncryptionType>NONE</EncryptionType>"),
            Some(vec!["NONE".to_string()])
        );
        // Repeating a value is the same as giving it once; an empty element sets nothing.
        assert_eq!(
            blocked("<EncryptionType>SSE-C</EncryptionType><EncryptionType>SSE-C</EncryptionType>"),
            Some(vec!["SSE-C".to_string()])
        );
        assert_eq!(blocked(""), None);
        // Outside the EncryptionType enum: refused like the other enums of this body.
        for bad in ["SSE-KMS", "sse-c", "AES256", ""] {
            let inner = format!("<EncryptionType>{bad}</EncryptionType>");
            assert_eq!(code(&with_blocked(&inner)), "MalformedXML", "{bad:?}");
        }
        assert_eq!(
            code(&with_blocked(
                "<EncryptionType>NONE</EncryptionType><EncryptionType>SSE-C</EncryptionType>"
            )),
            "InvalidArgument"
        );
    }

    #[test]
    fn rule_with_blocked_types_only() {
        let body = b"<ServerSideEncryptionConfiguration><Rule><BlockedEncryptionTypes>\
            <EncryptionType>NONE</EncryptionType></BlockedEncryptionTypes></Rule>\
            </ServerSideEncryptionConfiguration>";
        let parsed = parse_config(body).unwrap();
        assert!(parsed.default.is_none());
        assert_eq!(parsed.blocked, Some(vec!["NONE".to_string()]));
        let empty =
            b"<ServerSideEncryptionConfiguration><Rule></Rule></ServerSideEncryptionConfiguration>";
        assert_eq!(code(empty), "MalformedXML");
    }

    #[test]
    fn renders_blocked_types_and_records_new_buckets() {
        let config = GatewayConfig {
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            domains: vec![],
            chunk_size: 65536,
            max_put_size: 1,
            sse_s3_key_arn: String::new(),
            allow_sse_c_on_new_buckets: false,
        };
        let rule = new_bucket_rule(&config).unwrap();
        assert!(render(&rule).ends_with(
            "<BucketKeyEnabled>false</BucketKeyEnabled><BlockedEncryptionTypes>\
             <EncryptionType>SSE-C</EncryptionType></BlockedEncryptionTypes></Rule>\
             </ServerSideEncryptionConfiguration>"
        ));
        let legacy = GatewayConfig {
            allow_sse_c_on_new_buckets: true,
            ..config
        };
        assert!(new_bucket_rule(&legacy).is_none());
    }
}
