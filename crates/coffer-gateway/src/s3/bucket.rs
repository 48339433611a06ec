//! CreateBucket, HeadBucket, DeleteBucket, ListBuckets, GetBucketLocation, bucket versioning.

use axum::body::Body;
use axum::response::Response;
use coffer_meta::{BucketRecord, Command, Versioning, FORMAT_VERSION};
use http::StatusCode;
use serde::Deserialize;

use super::common::*;
use crate::error::S3Result;
use crate::http::body::{expectations_from_headers, BodyReader};
use crate::s3_error;
use crate::state::ReqCtx;
use crate::xml::{self, iso8601_ms, XmlWriter};

/// Largest XML configuration body accepted.
pub const MAX_XML_BODY: usize = 1 << 20;

/// Reads a small request body whole, verifying Content-MD5 / checksums / signed payload hash.
pub async fn read_body(ctx: &ReqCtx, body: Body) -> S3Result<bytes::Bytes> {
    let exp = expectations_from_headers(&ctx.parts.headers, MAX_XML_BODY as u64)?;
    let reader = BodyReader::new(body, &ctx.parts.headers, &ctx.auth.payload, exp)?;
    Ok(reader.read_all(MAX_XML_BODY).await?.0)
}

/// S3's bucket naming rules for general purpose buckets.
pub fn validate_bucket_name(name: &str) -> S3Result<()> {
    let invalid = || {
        s3_error!(InvalidBucketName, "The specified bucket is not valid.")
            .with_detail("BucketName", name)
    };
    let bytes = name.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Err(invalid());
    }
    let ok_chars = bytes
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'.' || *c == b'-');
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !ok_chars || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(invalid());
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(invalid());
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(invalid());
    }
    const BAD_PREFIXES: &[&str] = &["xn--", "sthree-", "amzn-s3-demo-"];
    const BAD_SUFFIXES: &[&str] = &["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"];
    if BAD_PREFIXES.iter().any(|p| name.starts_with(p))
        || BAD_SUFFIXES.iter().any(|s| name.ends_with(s))
    {
        return Err(invalid());
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CreateBucketConfiguration {
    location_constraint: Option<String>,
    location: Option<LocationInfo>,
    bucket: Option<BucketInfo>,
}

/// `<Location><Type>AvailabilityZone</Type><Name>zone-id</Name></Location>` (directory buckets).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct LocationInfo {
    #[serde(rename = "Type")]
    kind: Option<String>,
    name: Option<String>,
}

/// `<Bucket><DataRedundancy>SingleAvailabilityZone</DataRedundancy><Type>Directory</Type></Bucket>`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct BucketInfo {
    data_redundancy: Option<String>,
    #[serde(rename = "Type")]
    kind: Option<String>,
}

/// Checks a directory bucket's CreateBucketConfiguration against its name (seed 001: "Bucket
/// names must also follow the format bucket-base-name--zone-id--x-s3").
fn check_directory_config(name: &str, cfg: &CreateBucketConfiguration) -> S3Result<()> {
    let zone = crate::directory::validate_name(name)?;
    let invalid = |what: &str| {
        s3_error!(
            InvalidArgument,
            "Invalid {what} for a directory bucket: expected <Location><Type>AvailabilityZone</Type><Name>{zone}</Name></Location> and <Bucket><Type>Directory</Type></Bucket>"
        )
    };
    let loc = cfg.location.as_ref().ok_or_else(|| invalid("Location"))?;
    if !matches!(
        loc.kind.as_deref(),
        Some("AvailabilityZone") | Some("LocalZone")
    ) {
        return Err(invalid("Location Type"));
    }
    if loc.name.as_deref() != Some(zone) {
        return Err(invalid("Location Name"));
    }
    let b = cfg.bucket.as_ref().ok_or_else(|| invalid("Bucket"))?;
    if b.kind.as_deref() != Some("Directory") {
        return Err(invalid("Bucket Type"));
    }
    if !matches!(
        b.data_redundancy.as_deref(),
        None | Some("SingleAvailabilityZone") | Some("SingleLocalZone")
    ) {
        return Err(invalid("DataRedundancy"));
    }
    if cfg.location_constraint.is_some() {
        return Err(invalid("LocationConstraint"));
    }
    Ok(())
}

/// CreateBucket.
pub async fn create(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    let name = ctx.bucket().to_string();
    let directory = crate::directory::is_directory_name(&name);
    if !directory {
        validate_bucket_name(&name)?;
    }
    let raw = read_body(&ctx, body).await?;
    let cfg: CreateBucketConfiguration = if raw.iter().all(u8::is_ascii_whitespace) {
        CreateBucketConfiguration::default()
    } else {
        xml::parse(&raw)?
    };
    if directory {
        check_directory_config(&name, &cfg)?;
    } else if cfg.bucket.is_some() || cfg.location.is_some() {
        // Directory bucket configuration on a general purpose name.
        return Err(
            s3_error!(InvalidBucketName, "The specified bucket is not valid.")
                .with_detail("BucketName", &name),
        );
    }
    let region = match cfg.location_constraint.as_deref() {
        None | Some("") if directory => ctx.state.config.region.clone(),
        None | Some("") => "us-east-1".to_string(),
        Some("us-east-1") => {
            return Err(s3_error!(
                InvalidLocationConstraint,
                "The specified location-constraint is not valid"
            )
            .with_detail("LocationConstraint", "us-east-1"))
        }
        Some(r) if valid_region(r) => r.to_string(),
        Some(r) => {
            return Err(s3_error!(
                InvalidLocationConstraint,
                "The specified location-constraint is not valid"
            )
            .with_detail("LocationConstraint", r))
        }
    };
    let object_lock = ctx
        .header("x-amz-bucket-object-lock-enabled")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let record = BucketRecord {
        v: FORMAT_VERSION,
        name: name.clone(),
        created_ms: now_ms(),
        region,
        owner_id: ctx.state.config.owner_id(),
        // Object Lock requires versioning; S3 enables it with the lock.
        versioning: if object_lock {
            Versioning::Enabled
        } else {
            Versioning::Unversioned
        },
        object_lock_enabled: object_lock,
        default_retention: None,
        // Directory buckets have no SSE-C to block (seed 001: SSE-S3 and SSE-KMS only).
        encryption: if directory {
            None
        } else {
            super::bucket_encryption::new_bucket_rule(&ctx.state.config)
        },
        directory,
    };
    ctx.state.meta.apply(Command::CreateBucket(record)).await?;
    Ok(response(
        StatusCode::OK,
        vec![("location", format!("/{name}"))],
        Body::empty(),
    ))
}

fn valid_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    (3..=4).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit()))
        || r == "EU"
}

/// HeadBucket.
pub async fn head(ctx: ReqCtx) -> S3Result<Response> {
    let b = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    Ok(response(
        StatusCode::OK,
        vec![
            ("x-amz-bucket-region", b.region),
            ("x-amz-access-point-alias", "false".into()),
        ],
        Body::empty(),
    ))
}

/// DeleteBucket.
pub async fn delete(ctx: ReqCtx) -> S3Result<Response> {
    ctx.state
        .meta
        .apply(Command::DeleteBucket {
            bucket: ctx.bucket().to_string(),
        })
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// ListBuckets.
pub async fn list(ctx: ReqCtx) -> S3Result<Response> {
    let buckets = ctx.state.meta.list_buckets().await?;
    // `GET /` signed for `s3express` is ListDirectoryBuckets; ListBuckets lists general purpose
    // buckets only.
    if crate::directory::signing_service(&ctx.parts) == "s3express" {
        return list_directory(&ctx, &buckets);
    }
    let buckets: Vec<_> = buckets.into_iter().filter(|b| !b.directory).collect();
    let prefix = ctx.query("prefix").unwrap_or("");
    let mut w = XmlWriter::new("ListAllMyBucketsResult");
    w.open("Owner")
        .elem("ID", ctx.state.config.owner_id())
        .elem("DisplayName", ctx.state.config.owner_display_name())
        .close("Owner");
    w.open("Buckets");
    for b in buckets.iter().filter(|b| b.name.starts_with(prefix)) {
        w.open("Bucket")
            .elem("Name", &b.name)
            .elem("CreationDate", iso8601_ms(b.created_ms))
            .elem("BucketRegion", &b.region)
            .close("Bucket");
    }
    w.close("Buckets");
    if !prefix.is_empty() {
        w.elem("Prefix", prefix);
    }
    Ok(xml_response(w.finish("ListAllMyBucketsResult")))
}

/// ListDirectoryBuckets (`max-directory-buckets`, `continuation-token`: the last name listed).
fn list_directory(ctx: &ReqCtx, buckets: &[BucketRecord]) -> S3Result<Response> {
    let max = match ctx.query("max-directory-buckets") {
        None => 1000,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                s3_error!(InvalidArgument, "Invalid max-directory-buckets")
                    .with_detail("ArgumentName", "max-directory-buckets")
                    .with_detail("ArgumentValue", v)
            })?,
    };
    let after = ctx.query("continuation-token").unwrap_or("");
    let mut dirs: Vec<&BucketRecord> = buckets
        .iter()
        .filter(|b| b.directory && b.name.as_str() > after)
        .collect();
    dirs.sort_by(|a, b| a.name.cmp(&b.name));
    let more = dirs.len() > max;
    dirs.truncate(max);
    let mut w = XmlWriter::new("ListAllMyDirectoryBucketsResult");
    w.open("Buckets");
    for b in &dirs {
        w.open("Bucket")
            .elem("Name", &b.name)
            .elem("CreationDate", iso8601_ms(b.created_ms))
            .elem("BucketRegion", &b.region)
            .close("Bucket");
    }
    w.close("Buckets");
    if more {
        if let Some(last) = dirs.last() {
            w.elem("ContinuationToken", &last.name);
        }
    }
    Ok(xml_response(w.finish("ListAllMyDirectoryBucketsResult")))
}

/// GetBucketLocation: empty for us-east-1, as S3 answers.
pub async fn location(ctx: ReqCtx) -> S3Result<Response> {
    let b = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    let body = if b.region == "us-east-1" {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"{}\"/>",
            xml::S3_NS
        )
    } else {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"{}\">{}</LocationConstraint>",
            xml::S3_NS,
            crate::error::xml_escape(&b.region)
        )
    };
    Ok(xml_response(body))
}

/// GetBucketVersioning.
pub async fn get_versioning(ctx: ReqCtx) -> S3Result<Response> {
    let b = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    let mut w = XmlWriter::new("VersioningConfiguration");
    match b.versioning {
        Versioning::Unversioned => {}
        Versioning::Enabled => {
            w.elem("Status", "Enabled");
        }
        Versioning::Suspended => {
            w.elem("Status", "Suspended");
        }
    }
    Ok(xml_response(w.finish("VersioningConfiguration")))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersioningConfiguration {
    status: Option<String>,
    #[serde(rename = "MfaDelete")]
    mfa_delete: Option<String>,
}

/// PutBucketVersioning.
pub async fn put_versioning(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    let raw = read_body(&ctx, body).await?;
    let cfg: VersioningConfiguration = xml::parse(&raw)?;
    let mut b = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    if cfg.mfa_delete.as_deref() == Some("Enabled") {
        return Err(s3_error!(
            NotImplemented,
            "A header you provided implies functionality that is not implemented"
        ));
    }
    let new = match cfg.status.as_deref() {
        Some("Enabled") => Versioning::Enabled,
        Some("Suspended") => {
            if b.object_lock_enabled {
                return Err(s3_error!(
                    InvalidBucketState,
                    "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed."
                ));
            }
            Versioning::Suspended
        }
        None => return Ok(empty(StatusCode::OK)),
        Some(_) => return Err(xml::malformed()),
    };
    b.versioning = new;
    ctx.state.meta.apply(Command::UpdateBucket(b)).await?;
    Ok(empty(StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::validate_bucket_name;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket", "my.bucket.1", "a".repeat(63).as_str()] {
            assert!(validate_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "ABC",
            "a_b",
            "-ab",
            "ab-",
            "a..b",
            "192.168.5.4",
            "xn--abc",
            "abc-s3alias",
            "a.-b",
            "a".repeat(64).as_str(),
            "bucket--x-s3",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad}");
        }
    }
}
