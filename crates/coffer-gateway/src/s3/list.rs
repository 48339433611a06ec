//! ListObjects (v1), ListObjectsV2, ListObjectVersions, DeleteObjects.

use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use coffer_meta::{ListQuery, ObjectVersion, VersionQuery};
use serde::Deserialize;

use super::bucket::read_body;
use super::common::*;
use crate::error::S3Result;
use crate::s3_error;
use crate::state::ReqCtx;
use crate::xml::{self, iso8601_ms, XmlWriter};

/// Parses `max-keys`-style parameters: default 1000, capped at 1000.
pub fn max_param(ctx: &ReqCtx, name: &str) -> S3Result<usize> {
    match ctx.query(name) {
        None => Ok(1000),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n.min(1000) as usize)
            .ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "Provided {name} not an integer or within integer range"
                )
                .with_detail("ArgumentName", name)
                .with_detail("ArgumentValue", v)
            }),
    }
}

/// Encodes names for `encoding-type=url` responses.
pub struct Encoder(bool);

impl Encoder {
    /// From the `encoding-type` parameter; other values are refused as S3 does.
    pub fn from_ctx(ctx: &ReqCtx) -> S3Result<Self> {
        match ctx.query("encoding-type") {
            None => Ok(Encoder(false)),
            Some("url") => Ok(Encoder(true)),
            Some(v) => Err(s3_error!(
                InvalidArgument,
                "Invalid Encoding Method specified in Request"
            )
            .with_detail("ArgumentName", "encoding-type")
            .with_detail("ArgumentValue", v)),
        }
    }

    /// The value to put in the XML.
    pub fn enc(&self, s: &str) -> String {
        if !self.0 {
            return s.to_string();
        }
        const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'_')
            .remove(b'.')
            .remove(b'~')
            .remove(b'/');
        percent_encoding::utf8_percent_encode(s, SET).to_string()
    }

    /// Writes `<EncodingType>url</EncodingType>` when on.
    pub fn write(&self, w: &mut XmlWriter) {
        if self.0 {
            w.elem("EncodingType", "url");
        }
    }
}

fn owner(ctx: &ReqCtx, w: &mut XmlWriter) {
    w.open("Owner")
        .elem("ID", ctx.state.config.owner_id())
        .elem("DisplayName", ctx.state.config.owner_display_name())
        .close("Owner");
}

fn contents(ctx: &ReqCtx, w: &mut XmlWriter, e: &Encoder, o: &ObjectVersion, with_owner: bool) {
    w.open("Contents")
        .elem("Key", e.enc(&o.key))
        .elem("LastModified", iso8601_ms(o.last_modified_ms))
        .elem("ETag", quote(&o.etag));
    if let Some(c) = &o.checksum {
        w.elem("ChecksumAlgorithm", &c.algorithm)
            .elem("ChecksumType", &c.checksum_type);
    }
    w.elem("Size", o.size.to_string());
    if with_owner {
        owner(ctx, w);
    }
    w.elem(
        "StorageClass",
        o.headers.storage_class.as_deref().unwrap_or("STANDARD"),
    );
    w.close("Contents");
}

/// ListObjectsV2 (`v2`) and ListObjects.
pub async fn list_objects(ctx: ReqCtx, v2: bool) -> S3Result<Response> {
    ctx.state.meta.get_bucket(ctx.bucket()).await?;
    let enc = Encoder::from_ctx(&ctx)?;
    let max_keys = max_param(&ctx, "max-keys")?;
    let prefix = ctx.query("prefix").unwrap_or("").to_string();
    let delimiter = ctx
        .query("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let token = if v2 {
        ctx.query("continuation-token")
    } else {
        None
    };
    let start_after = if v2 {
        match token {
            Some(t) => Some(decode_token(t)?),
            None => ctx
                .query("start-after")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        }
    } else {
        ctx.query("marker")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let page = ctx
        .state
        .meta
        .list_objects(
            ctx.bucket(),
            &ListQuery {
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                start_after,
                max_keys,
            },
        )
        .await?;

    // S3 answers max-keys=0 with an empty, untruncated page.
    let page = if max_keys == 0 {
        coffer_meta::ListPage::default()
    } else {
        page
    };
    let mut w = XmlWriter::new("ListBucketResult");
    w.elem("Name", ctx.bucket())
        .elem("Prefix", enc.enc(&prefix));
    if v2 {
        if let Some(t) = token {
            w.elem("ContinuationToken", t);
        }
        if page.is_truncated {
            if let Some(m) = &page.next_marker {
                w.elem("NextContinuationToken", encode_token(m));
            }
        }
        w.elem(
            "KeyCount",
            (page.objects.len() + page.common_prefixes.len()).to_string(),
        );
        if let Some(sa) = ctx.query("start-after") {
            w.elem("StartAfter", enc.enc(sa));
        }
    } else {
        w.elem("Marker", enc.enc(ctx.query("marker").unwrap_or("")));
        if page.is_truncated && delimiter.is_some() {
            w.opt(
                "NextMarker",
                page.next_marker.as_deref().map(|m| enc.enc(m)),
            );
        }
    }
    w.elem("MaxKeys", max_keys.to_string());
    if let Some(d) = &delimiter {
        w.elem("Delimiter", enc.enc(d));
    }
    enc.write(&mut w);
    w.elem("IsTruncated", page.is_truncated.to_string());
    let with_owner = !v2 || ctx.query("fetch-owner") == Some("true");
    for o in &page.objects {
        contents(&ctx, &mut w, &enc, o, with_owner);
    }
    for p in &page.common_prefixes {
        w.open("CommonPrefixes")
            .elem("Prefix", enc.enc(p))
            .close("CommonPrefixes");
    }
    Ok(xml_response(w.finish("ListBucketResult")))
}

fn encode_token(marker: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("coffer1:{marker}"))
}

fn decode_token(token: &str) -> S3Result<String> {
    base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("coffer1:").map(str::to_string))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
            .with_detail("ArgumentName", "continuation-token")
        })
}

/// ListObjectVersions.
pub async fn list_versions(ctx: ReqCtx) -> S3Result<Response> {
    ctx.state.meta.get_bucket(ctx.bucket()).await?;
    let enc = Encoder::from_ctx(&ctx)?;
    let max_keys = max_param(&ctx, "max-keys")?;
    let prefix = ctx.query("prefix").unwrap_or("").to_string();
    let delimiter = ctx
        .query("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let key_marker = ctx
        .query("key-marker")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let version_id_marker = ctx
        .query("version-id-marker")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if version_id_marker.is_some() && key_marker.is_none() {
        return Err(s3_error!(
            InvalidArgument,
            "A version-id marker cannot be specified without a key marker."
        ));
    }
    let page = ctx
        .state
        .meta
        .list_object_versions(
            ctx.bucket(),
            &VersionQuery {
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                key_marker: key_marker.clone(),
                version_id_marker: version_id_marker.clone(),
                max_keys,
            },
        )
        .await?;
    let mut w = XmlWriter::new("ListVersionsResult");
    w.elem("Name", ctx.bucket())
        .elem("Prefix", enc.enc(&prefix))
        .elem("KeyMarker", enc.enc(key_marker.as_deref().unwrap_or("")))
        .elem(
            "VersionIdMarker",
            version_id_marker.as_deref().unwrap_or(""),
        );
    if page.is_truncated {
        w.opt(
            "NextKeyMarker",
            page.next_key_marker.as_deref().map(|m| enc.enc(m)),
        );
        w.opt(
            "NextVersionIdMarker",
            page.next_version_id_marker.as_deref(),
        );
    }
    w.elem("MaxKeys", max_keys.to_string());
    if let Some(d) = &delimiter {
        w.elem("Delimiter", enc.enc(d));
    }
    enc.write(&mut w);
    w.elem("IsTruncated", page.is_truncated.to_string());
    for (v, latest) in &page.versions {
        let tag = if v.delete_marker {
            "DeleteMarker"
        } else {
            "Version"
        };
        w.open(tag)
            .elem("Key", enc.enc(&v.key))
            .elem("VersionId", &v.version_id)
            .elem("IsLatest", latest.to_string())
            .elem("LastModified", iso8601_ms(v.last_modified_ms));
        if !v.delete_marker {
            w.elem("ETag", quote(&v.etag));
            if let Some(c) = &v.checksum {
                w.elem("ChecksumAlgorithm", &c.algorithm)
                    .elem("ChecksumType", &c.checksum_type);
            }
            w.elem("Size", v.size.to_string()).elem(
                "StorageClass",
                v.headers.storage_class.as_deref().unwrap_or("STANDARD"),
            );
        }
        owner(&ctx, &mut w);
        w.close(tag);
    }
    for p in &page.common_prefixes {
        w.open("CommonPrefixes")
            .elem("Prefix", enc.enc(p))
            .close("CommonPrefixes");
    }
    Ok(xml_response(w.finish("ListVersionsResult")))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Delete {
    #[serde(default)]
    quiet: Option<bool>,
    #[serde(rename = "Object", default)]
    objects: Vec<DeleteObjectId>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteObjectId {
    key: String,
    version_id: Option<String>,
}

/// DeleteObjects.
pub async fn delete_objects(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    let has_digest = ctx.header("content-md5").is_some()
        || ctx
            .parts
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("x-amz-checksum-"))
        || ctx.header("x-amz-sdk-checksum-algorithm").is_some();
    if !has_digest {
        return Err(s3_error!(
            InvalidRequest,
            "Missing required header for this request: Content-MD5"
        ));
    }
    let bucket = ctx.state.meta.get_bucket(ctx.bucket()).await?;
    let raw = read_body(&ctx, body).await?;
    let req: Delete = xml::parse(&raw)?;
    if req.objects.is_empty() || req.objects.len() > 1000 {
        return Err(xml::malformed());
    }
    let bypass = ctx
        .header("x-amz-bypass-governance-retention")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let quiet = req.quiet.unwrap_or(false);
    let mut w = XmlWriter::new("DeleteResult");
    for o in req.objects {
        let vid = o.version_id.clone().filter(|v| !v.is_empty());
        match super::object::delete_one(&ctx, &bucket, &o.key, vid.clone(), bypass).await {
            Ok(out) => {
                if quiet {
                    continue;
                }
                w.open("Deleted").elem("Key", &o.key);
                w.opt("VersionId", vid.as_deref());
                if out.delete_marker {
                    w.elem("DeleteMarker", "true");
                    if vid.is_none() {
                        w.opt("DeleteMarkerVersionId", out.version_id.as_deref());
                    }
                }
                w.close("Deleted");
            }
            Err(e) => {
                w.open("Error").elem("Key", &o.key);
                w.opt("VersionId", vid.as_deref());
                w.elem("Code", e.code().as_str())
                    .elem("Message", e.message())
                    .close("Error");
            }
        }
    }
    Ok(xml_response(w.finish("DeleteResult")))
}
