//! PutBucketEncryption, GetBucketEncryption, DeleteBucketEncryption (seeds 001, 003, 004).

use axum::body::Body;
use axum::response::Response;
use coffer_meta::{BucketEncryption, Command, SseAlgorithm};
use http::StatusCode;
use serde::Deserialize;

use super::bucket::read_body;
use super::common::*;
use crate::error::S3Result;
use crate::s3_error;
use crate::state::ReqCtx;
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

/// Parses a PutBucketEncryption body into the stored rule, validating as S3 does.
fn parse_config(raw: &[u8]) -> S3Result<BucketEncryption> {
    let cfg: ServerSideEncryptionConfiguration = xml::parse(raw)?;
    // S3 accepts exactly one rule.
    let [rule] = <[Rule; 1]>::try_from(cfg.rules).map_err(|_| xml::malformed())?;
    let default = rule
        .apply_server_side_encryption_by_default
        .ok_or_else(xml::malformed)?;
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
    let mut blocked = Vec::new();
    if let Some(b) = rule.blocked_encryption_types {
        for t in b.types {
            match t.as_str() {
                "SSE-C" | "NONE" => {
                    if !blocked.contains(&t) {
                        blocked.push(t)
                    }
                }
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Invalid BlockedEncryptionTypes value: {t}"
                    )
                    .with_detail("ArgumentName", "BlockedEncryptionTypes")
                    .with_detail("ArgumentValue", t))
                }
            }
        }
    }
    Ok(BucketEncryption {
        sse_algorithm,
        kms_master_key_id,
        bucket_key_enabled,
        blocked_encryption_types: blocked,
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
    let rule = parse_config(&raw)?;
    bucket.encryption = Some(rule);
    ctx.state.meta.apply(Command::UpdateBucket(bucket)).await?;
    Ok(empty(StatusCode::OK))
}

/// Renders a rule as GetBucketEncryption returns it.
pub fn render(rule: &BucketEncryption) -> String {
    let mut w = XmlWriter::new("ServerSideEncryptionConfiguration");
    w.open("Rule").open("ApplyServerSideEncryptionByDefault");
    w.elem("SSEAlgorithm", algorithm_name(rule.sse_algorithm));
    w.opt("KMSMasterKeyID", rule.kms_master_key_id.as_deref());
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
    let rule = bucket.encryption.unwrap_or_else(default_rule);
    Ok(xml_response(render(&rule)))
}

/// DeleteBucketEncryption: back to the SSE-S3 default.
pub async fn delete(ctx: ReqCtx) -> S3Result<Response> {
    let mut bucket = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    bucket.encryption = None;
    ctx.state.meta.apply(Command::UpdateBucket(bucket)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_renders_kms_rule() {
        let body = br#"<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>alias/k</KMSMasterKeyID></ApplyServerSideEncryptionByDefault><BucketKeyEnabled>true</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>"#;
        let rule = parse_config(body).unwrap();
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
            parse_config(body).unwrap_err().code().as_str(),
            "InvalidArgument"
        );
        let two = br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"#;
        assert_eq!(
            parse_config(two).unwrap_err().code().as_str(),
            "MalformedXML"
        );
        let bad = br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>DES</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"#;
        assert_eq!(
            parse_config(bad).unwrap_err().code().as_str(),
            "MalformedXML"
        );
    }
}
