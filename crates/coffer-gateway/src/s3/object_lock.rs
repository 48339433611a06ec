//! Object Lock: bucket configuration, per-version retention and legal hold, and the lock a
//! new version gets from its request headers or the bucket default.

use axum::body::Body;
use axum::response::Response;
use coffer_meta::{BucketRecord, Command, DefaultRetention, Retention};
use http::StatusCode;
use serde::Deserialize;

use super::bucket::read_body;
use super::common::*;
use crate::error::{S3Error, S3ErrorCode, S3Result};
use crate::s3_error;
use crate::state::ReqCtx;
use crate::xml::{self, XmlWriter};

const DAY_MS: i64 = 86_400_000;

fn missing_lock_config() -> S3Error {
    s3_error!(
        InvalidRequest,
        "Bucket is missing Object Lock Configuration"
    )
}

fn parse_date(s: &str) -> S3Result<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.timestamp_millis())
        .map_err(|_| {
            s3_error!(
                InvalidArgument,
                "The retain until date must be provided in ISO 8601 format"
            )
        })
}

fn check_mode(mode: &str) -> S3Result<()> {
    match mode {
        "GOVERNANCE" | "COMPLIANCE" => Ok(()),
        _ => Err(s3_error!(InvalidArgument, "Unknown wormMode directive.")
            .with_detail("ArgumentName", "x-amz-object-lock-mode")
            .with_detail("ArgumentValue", mode)),
    }
}

fn retention_from(mode: &str, until: &str) -> S3Result<Retention> {
    check_mode(mode)?;
    let ms = parse_date(until)?;
    if ms <= now_ms() {
        return Err(s3_error!(
            InvalidArgument,
            "The retain until date must be in the future!"
        ));
    }
    Ok(Retention {
        mode: mode.to_string(),
        retain_until: crate::xml::iso8601_ms(ms),
        retain_until_ms: ms,
    })
}

/// The retention and legal hold a new version gets: from `x-amz-object-lock-*` headers, else
/// the bucket's default retention.
pub fn lock_for_new_object(
    ctx: &ReqCtx,
    bucket: &BucketRecord,
) -> S3Result<(Option<Retention>, bool)> {
    let mode = ctx.header("x-amz-object-lock-mode");
    let until = ctx.header("x-amz-object-lock-retain-until-date");
    let hold = ctx.header("x-amz-object-lock-legal-hold");
    let any = mode.is_some() || until.is_some() || hold.is_some();
    if any && !bucket.object_lock_enabled {
        return Err(missing_lock_config());
    }
    let legal_hold = match hold {
        None | Some("OFF") => false,
        Some("ON") => true,
        Some(v) => {
            return Err(s3_error!(
                InvalidArgument,
                "Legal Hold must be either of 'ON' or 'OFF'"
            )
            .with_detail("ArgumentName", "x-amz-object-lock-legal-hold")
            .with_detail("ArgumentValue", v))
        }
    };
    let retention = match (mode, until) {
        (Some(m), Some(u)) => Some(retention_from(m, u)?),
        (None, None) => bucket.default_retention.as_ref().map(|d| {
            let days = d.days.map(i64::from).unwrap_or(0)
                + d.years.map(|y| i64::from(y) * 365).unwrap_or(0);
            let ms = now_ms() + days * DAY_MS;
            Retention {
                mode: d.mode.clone(),
                retain_until: crate::xml::iso8601_ms(ms),
                retain_until_ms: ms,
            }
        }),
        _ => {
            return Err(s3_error!(
            InvalidArgument,
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied"
        ))
        }
    };
    Ok((retention, legal_hold))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetentionXml {
    mode: Option<String>,
    retain_until_date: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LegalHoldXml {
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LockConfigXml {
    object_lock_enabled: Option<String>,
    rule: Option<LockRuleXml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LockRuleXml {
    default_retention: DefaultRetentionXml,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DefaultRetentionXml {
    mode: String,
    days: Option<u32>,
    years: Option<u32>,
}

async fn locked_bucket(ctx: &ReqCtx) -> S3Result<BucketRecord> {
    let b = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    if !b.object_lock_enabled {
        return Err(missing_lock_config());
    }
    Ok(b)
}

fn bypass(ctx: &ReqCtx) -> bool {
    ctx.header("x-amz-bypass-governance-retention")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// PutObjectRetention.
pub async fn put_retention(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    locked_bucket(&ctx).await?;
    let raw = read_body(&ctx, body).await?;
    let r: RetentionXml = xml::parse(&raw)?;
    let retention = match (r.mode.as_deref(), r.retain_until_date.as_deref()) {
        (Some(m), Some(u)) => Some(retention_from(m, u)?),
        (None, None) => None,
        _ => return Err(xml::malformed()),
    };
    let version_id = version_param(ctx.query("versionId")).map(str::to_string);
    super::object::find_version(&ctx, version_id.as_deref()).await?;
    ctx.state
        .meta
        .apply(Command::UpdateObjectLock {
            bucket: ctx.bucket().to_string(),
            key: ctx.key().to_string(),
            version_id,
            retention: Some(retention),
            legal_hold: None,
            bypass_governance: bypass(&ctx),
            now_ms: now_ms(),
        })
        .await?;
    Ok(empty(StatusCode::OK))
}

/// GetObjectRetention.
pub async fn get_retention(ctx: ReqCtx) -> S3Result<Response> {
    locked_bucket(&ctx).await?;
    let version_id = version_param(ctx.query("versionId")).map(str::to_string);
    let v = super::object::find_version(&ctx, version_id.as_deref()).await?;
    let r = v.retention.ok_or_else(|| {
        S3Error::new(
            S3ErrorCode::NoSuchObjectLockConfiguration,
            "The specified object does not have a ObjectLock configuration",
        )
    })?;
    let mut w = XmlWriter::new("Retention");
    w.elem("Mode", &r.mode)
        .elem("RetainUntilDate", &r.retain_until);
    Ok(xml_response(w.finish("Retention")))
}

/// PutObjectLegalHold.
pub async fn put_legal_hold(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    locked_bucket(&ctx).await?;
    let raw = read_body(&ctx, body).await?;
    let h: LegalHoldXml = xml::parse(&raw)?;
    let on = match h.status.as_str() {
        "ON" => true,
        "OFF" => false,
        _ => return Err(xml::malformed()),
    };
    let version_id = version_param(ctx.query("versionId")).map(str::to_string);
    super::object::find_version(&ctx, version_id.as_deref()).await?;
    ctx.state
        .meta
        .apply(Command::UpdateObjectLock {
            bucket: ctx.bucket().to_string(),
            key: ctx.key().to_string(),
            version_id,
            retention: None,
            legal_hold: Some(on),
            bypass_governance: false,
            now_ms: now_ms(),
        })
        .await?;
    Ok(empty(StatusCode::OK))
}

/// GetObjectLegalHold.
pub async fn get_legal_hold(ctx: ReqCtx) -> S3Result<Response> {
    locked_bucket(&ctx).await?;
    let version_id = version_param(ctx.query("versionId")).map(str::to_string);
    let v = super::object::find_version(&ctx, version_id.as_deref()).await?;
    let mut w = XmlWriter::new("LegalHold");
    w.elem("Status", if v.legal_hold { "ON" } else { "OFF" });
    Ok(xml_response(w.finish("LegalHold")))
}

/// PutObjectLockConfiguration.
pub async fn put_config(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    let mut b = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    let raw = read_body(&ctx, body).await?;
    let cfg: LockConfigXml = xml::parse(&raw)?;
    if cfg.object_lock_enabled.as_deref() != Some("Enabled") {
        return Err(xml::malformed());
    }
    if !b.object_lock_enabled && b.versioning != coffer_meta::Versioning::Enabled {
        return Err(s3_error!(
            InvalidBucketState,
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
        ));
    }
    b.default_retention = match cfg.rule {
        None => None,
        Some(rule) => {
            let d = rule.default_retention;
            check_mode(&d.mode).map_err(|_| xml::malformed())?;
            match (d.days, d.years) {
                (Some(n), None) | (None, Some(n)) if n > 0 => {}
                (Some(_), Some(_)) | (None, None) => return Err(xml::malformed()),
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "Default retention period must be a positive integer value"
                    ))
                }
            }
            Some(DefaultRetention {
                mode: d.mode,
                days: d.days,
                years: d.years,
            })
        }
    };
    b.object_lock_enabled = true;
    ctx.state.meta.apply(Command::UpdateBucket(b)).await?;
    Ok(empty(StatusCode::OK))
}

/// GetObjectLockConfiguration.
pub async fn get_config(ctx: ReqCtx) -> S3Result<Response> {
    let b = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    if !b.object_lock_enabled {
        return Err(S3Error::new(
            S3ErrorCode::ObjectLockConfigurationNotFoundError,
            "Object Lock configuration does not exist for this bucket",
        )
        .with_detail("BucketName", ctx.bucket()));
    }
    let mut w = XmlWriter::new("ObjectLockConfiguration");
    w.elem("ObjectLockEnabled", "Enabled");
    if let Some(d) = &b.default_retention {
        w.open("Rule")
            .open("DefaultRetention")
            .elem("Mode", &d.mode);
        w.opt("Days", d.days.map(|n| n.to_string()));
        w.opt("Years", d.years.map(|n| n.to_string()));
        w.close("DefaultRetention").close("Rule");
    }
    Ok(xml_response(w.finish("ObjectLockConfiguration")))
}
