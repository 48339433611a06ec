//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts, ListMultipartUploads.
//!
//! The data key of the object to be is generated (and wrapped) when the upload is created; every
//! part is sealed under it in its own blob, with the S3 part number in each chunk's nonce and
//! AAD, so completing an upload only writes metadata.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;
use base64::Engine;
use coffer_meta::{
    Checksum, Command, MetaError, MultipartUpload, ObjectVersion, PartRef, SseAlgorithm,
    UploadQuery, UploadedPart, Versioning, FORMAT_VERSION,
};
use http::StatusCode;
use md5::{Digest, Md5};
use serde::Deserialize;

use super::common::*;
use super::data::{self, BlobSink};
use super::list::{max_param, Encoder};
use super::object::write_condition;
use crate::error::{S3Error, S3Result};
use crate::http::body::{expectations_from_headers, BodyReader, BodySummary};
use crate::http::checksum::{self, ChecksumAlgorithm, Checksummer};
use crate::s3_error;
use crate::sse::{self, CustomerKeyHeaders};
use crate::state::ReqCtx;
use crate::xml::{self, iso8601_ms, XmlWriter};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Smallest part S3 accepts, except for the last one.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest part (and largest copy source).
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Highest part number.
pub const MAX_PART_NUMBER: u32 = 10_000;
/// Largest CompleteMultipartUpload body accepted (10,000 parts with checksums fit easily).
const MAX_COMPLETE_BODY: usize = 16 << 20;

/// `COMPOSITE`: the checksum of the part checksums.
pub const COMPOSITE: &str = "COMPOSITE";
/// `FULL_OBJECT`: the checksum of the whole object (CRCs only, combined from the parts).
pub const FULL_OBJECT: &str = "FULL_OBJECT";
/// The algorithm S3 applies when the client names none.
pub const DEFAULT_ALGORITHM: ChecksumAlgorithm = ChecksumAlgorithm::Crc64Nvme;

/// S3's error for an unknown `x-amz-checksum-algorithm`.
pub fn unsupported_algorithm() -> S3Error {
    s3_error!(
        InvalidRequest,
        "Checksum algorithm provided is unsupported. Please try again with any of the valid types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
    )
}

/// `hex(MD5(concat(binary part MD5s)))-N`: the ETag of a multipart object.
pub fn multipart_etag<'a>(part_etags: impl IntoIterator<Item = &'a str>) -> S3Result<String> {
    let mut md5 = Md5::new();
    let mut n = 0usize;
    for etag in part_etags {
        let raw = hex::decode(etag.trim_matches('"'))
            .map_err(|_| S3Error::internal("part ETag is not hex MD5"))?;
        md5.update(&raw);
        n += 1;
    }
    Ok(format!("{}-{n}", hex::encode(md5.finalize())))
}

// ---------------------------------------------------------------------------------------------
// CreateMultipartUpload
// ---------------------------------------------------------------------------------------------

/// Validates `x-amz-checksum-algorithm` / `x-amz-checksum-type` of CreateMultipartUpload and
/// returns the upload's algorithm and type.
pub fn upload_checksum_settings(
    algorithm: Option<&str>,
    checksum_type: Option<&str>,
) -> S3Result<Option<(ChecksumAlgorithm, &'static str)>> {
    let Some(algorithm) = algorithm else {
        if checksum_type.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header."
            ));
        }
        return Ok(None);
    };
    let alg = ChecksumAlgorithm::from_name(algorithm.trim()).ok_or_else(unsupported_algorithm)?;
    let ty = match checksum_type.map(str::trim) {
        None if alg == ChecksumAlgorithm::Crc64Nvme => FULL_OBJECT,
        None => COMPOSITE,
        Some(t) if t.eq_ignore_ascii_case(COMPOSITE) => COMPOSITE,
        Some(t) if t.eq_ignore_ascii_case(FULL_OBJECT) => FULL_OBJECT,
        Some(_) => {
            return Err(s3_error!(
                InvalidRequest,
                "Value for x-amz-checksum-type header is invalid."
            ))
        }
    };
    if ty == COMPOSITE && alg == ChecksumAlgorithm::Crc64Nvme {
        return Err(s3_error!(
            InvalidRequest,
            "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."
        ));
    }
    if ty == FULL_OBJECT && !alg.is_crc() {
        return Err(s3_error!(
            InvalidRequest,
            "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
            alg.as_str().to_ascii_lowercase()
        ));
    }
    Ok(Some((alg, ty)))
}

/// A new upload ID: 48 random bytes, URL-safe base64 (64 characters), never starting with `-`.
fn new_upload_id() -> S3Result<String> {
    random_token::<48>()
}

/// CreateMultipartUpload.
pub async fn create(ctx: ReqCtx) -> S3Result<Response> {
    let state = ctx.state.clone();
    check_key(ctx.key())?;
    let bucket = state.meta.get_bucket(ctx.bucket()).await?;
    sse::refuse_blocked_sse_c(&ctx, &bucket)?;
    let headers = object_headers(&ctx.parts.headers)?;
    let settings = upload_checksum_settings(
        ctx.header("x-amz-checksum-algorithm"),
        ctx.header("x-amz-checksum-type"),
    )?;
    let (retention, legal_hold) = super::object_lock::lock_for_new_object(&ctx, &bucket)?;
    let sse_req = sse::requested(&ctx.parts.headers, &bucket)?;
    // The data key is generated now; parts are sealed under it as they arrive.
    let okey = sse::new_object_key(&state, ctx.bucket(), ctx.key(), &sse_req).await?;
    let upload = MultipartUpload {
        v: FORMAT_VERSION,
        upload_id: new_upload_id()?,
        key: ctx.key().to_string(),
        initiated_ms: now_ms(),
        headers,
        envelope: okey.envelope.clone(),
        checksum_algorithm: settings.map(|(a, _)| a.as_str().to_string()),
        checksum_type: settings.map(|(_, t)| t.to_string()),
        retention,
        legal_hold,
    };
    let upload_id = upload.upload_id.clone();
    state
        .meta
        .apply(Command::CreateMultipartUpload {
            bucket: ctx.bucket().to_string(),
            upload,
        })
        .await?;

    let mut w = XmlWriter::new("InitiateMultipartUploadResult");
    w.elem("Bucket", ctx.bucket())
        .elem("Key", ctx.key())
        .elem("UploadId", &upload_id);
    let mut h = vec![("content-type", "application/xml".to_string())];
    h.extend(sse::response_headers(&okey.envelope));
    h.extend(sse::context_header(&okey.envelope, ctx.bucket()));
    if let Some((alg, ty)) = settings {
        h.push(("x-amz-checksum-algorithm", alg.as_str().to_string()));
        h.push(("x-amz-checksum-type", ty.to_string()));
    }
    Ok(response(
        StatusCode::OK,
        h,
        Body::from(w.finish("InitiateMultipartUploadResult")),
    ))
}

// ---------------------------------------------------------------------------------------------
// UploadPart
// ---------------------------------------------------------------------------------------------

/// Parses `partNumber` (1–10000).
pub fn parse_part_number(raw: Option<&str>) -> S3Result<u32> {
    raw.and_then(|v| v.parse::<u32>().ok())
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive"
            )
            .with_detail("ArgumentName", "partNumber")
            .with_detail("ArgumentValue", raw.unwrap_or_default())
        })
}

fn no_such_upload(upload_id: &str) -> S3Error {
    MetaError::NoSuchUpload(upload_id.to_string()).into()
}

/// The upload named by `uploadId`, which must belong to the request's key.
pub async fn find_upload(ctx: &ReqCtx) -> S3Result<MultipartUpload> {
    let upload_id = ctx.query("uploadId").unwrap_or_default();
    if upload_id.is_empty() {
        return Err(no_such_upload(upload_id));
    }
    let upload = ctx.state.meta.get_upload(ctx.bucket(), upload_id).await?;
    if upload.key != ctx.key() {
        return Err(no_such_upload(upload_id));
    }
    Ok(upload)
}

/// The upload's checksum algorithm, if it was created with one.
pub fn upload_algorithm(upload: &MultipartUpload) -> Option<ChecksumAlgorithm> {
    upload
        .checksum_algorithm
        .as_deref()
        .and_then(ChecksumAlgorithm::from_name)
}

/// The algorithm every part of this upload is checksummed with: the upload's, or S3's default.
pub fn part_algorithm(upload: &MultipartUpload) -> ChecksumAlgorithm {
    upload_algorithm(upload).unwrap_or(DEFAULT_ALGORITHM)
}

/// The data key of an upload, for writing one of its parts. An SSE-C upload needs the same
/// customer key on every part request; other uploads refuse one.
pub async fn open_upload_key(ctx: &ReqCtx, upload: &MultipartUpload) -> S3Result<sse::DataKeys> {
    let ck = sse::customer_key(&ctx.parts.headers, CustomerKeyHeaders::Object)?;
    match (upload.envelope.algorithm == SseAlgorithm::SseC, ck) {
        (true, Some(ck)) => {
            sse::check_customer_key(&upload.envelope, &ck).map_err(|_| {
                s3_error!(InvalidRequest, "The provided encryption parameters did not match the ones used originally.")
            })?;
            sse::open_for_read(&ctx.state, &upload.envelope, &ctx.parts.headers, CustomerKeyHeaders::Object).await
        }
        (false, None) => sse::open_object_key(&ctx.state, &upload.envelope).await,
        _ => Err(s3_error!(
            InvalidRequest,
            "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters."
        )),
    }
}

/// S3 refuses a part whose checksum is not of the upload's algorithm; a COMPOSITE upload also
/// needs every part's checksum from the client (a FULL_OBJECT one can do without: we compute it).
fn check_part_checksum(upload: &MultipartUpload, sent: Option<ChecksumAlgorithm>) -> S3Result<()> {
    let Some(expected) = upload_algorithm(upload) else {
        return Ok(());
    };
    let mismatch = match sent {
        Some(s) => s != expected,
        None => upload.checksum_type.as_deref() != Some(FULL_OBJECT),
    };
    if mismatch {
        return Err(s3_error!(
            InvalidRequest,
            "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
            expected.as_str().to_ascii_lowercase(),
            sent.map(|s| s.as_str().to_ascii_lowercase())
                .unwrap_or_else(|| "null".to_string())
        ));
    }
    Ok(())
}

/// Streams an UploadPart body into a new blob under the upload's key, verifying every digest
/// the request carries. Also returns the part's raw checksum of `algorithm`, computed here when
/// the body carries another one. On any error the blob is discarded.
async fn store_part(
    ctx: &ReqCtx,
    body: Body,
    keys: &sse::DataKeys,
    part_number: u32,
    algorithm: ChecksumAlgorithm,
) -> S3Result<(PartRef, BodySummary, Vec<u8>)> {
    let exp = expectations_from_headers(&ctx.parts.headers, MAX_PART_SIZE)?;
    // The reader computes the client's algorithm, or CRC64NVME when there is none.
    let reader_alg = exp
        .checksum
        .as_ref()
        .map(|(a, _)| *a)
        .unwrap_or(DEFAULT_ALGORITHM);
    let mut own = (reader_alg != algorithm).then(|| Checksummer::new(algorithm));
    let mut reader = BodyReader::new(body, &ctx.parts.headers, &ctx.auth.payload, exp)?;
    let mut sink = BlobSink::create(&ctx.state, keys, part_number).await?;
    let result: S3Result<BodySummary> = async {
        while let Some(chunk) = reader.next().await? {
            ctx.state.metrics.bytes_in.inc_by(chunk.len() as u64);
            if let Some(c) = own.as_mut() {
                c.update(&chunk);
            }
            sink.write(&chunk).await?;
        }
        reader.finish().await
    }
    .await;
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            sink.abort().await;
            return Err(e);
        }
    };
    let raw = match (own, &summary.checksum) {
        (Some(c), _) => c.finish(),
        (None, Some((alg, raw))) if *alg == algorithm => raw.clone(),
        (None, _) => {
            sink.abort().await;
            return Err(S3Error::internal(
                "body summary without the expected checksum",
            ));
        }
    };
    let mut part = sink.finish().await?;
    part.etag = hex::encode(summary.md5);
    part.checksum = Some(B64.encode(&raw));
    Ok((part, summary, raw))
}

/// Records a part written to a blob: deletes the blob if meta refuses it, and the blob of the
/// part it replaces once it is recorded.
pub async fn record_part(ctx: &ReqCtx, upload_id: &str, part: PartRef, now: i64) -> S3Result<()> {
    let blob_id = part.blob_id;
    let cmd = Command::PutPart {
        bucket: ctx.bucket().to_string(),
        upload_id: upload_id.to_string(),
        part: UploadedPart {
            part_number: part.part_number,
            checksum: part.checksum.clone(),
            part,
            last_modified_ms: now,
        },
    };
    match ctx.state.meta.apply(cmd).await {
        Ok(out) => {
            data::delete_blobs(&ctx.state.blobs, &out.freed_blobs).await;
            Ok(())
        }
        Err(e) => {
            data::discard_unreferenced(&ctx.state.blobs, &[blob_id], &e).await;
            Err(e.into())
        }
    }
}

/// UploadPart.
pub async fn upload_part(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    // Only an SSE-C part needs the bucket's record (its SSE-C setting): no meta read otherwise.
    if sse::asks_sse_c(&ctx.parts.headers) {
        let bucket = ctx.state.meta.get_bucket(ctx.bucket()).await?;
        sse::refuse_blocked_sse_c(&ctx, &bucket)?;
    }
    let part_number = parse_part_number(ctx.query("partNumber"))?;
    let upload = find_upload(&ctx).await?;
    let sent = expectations_from_headers(&ctx.parts.headers, MAX_PART_SIZE)?
        .checksum
        .map(|(a, _)| a);
    check_part_checksum(&upload, sent)?;
    let algorithm = part_algorithm(&upload);
    let keys = open_upload_key(&ctx, &upload).await?;
    let (part, summary, raw) = store_part(&ctx, body, &keys, part_number, algorithm).await?;
    drop(keys);
    let etag = part.etag.clone();
    record_part(&ctx, &upload.upload_id, part, now_ms()).await?;

    let mut h = vec![("etag", quote(&etag))];
    h.extend(sse::response_headers(&upload.envelope));
    match (&summary.checksum, summary.checksum_defaulted) {
        // The checksum the client sent (and we verified).
        (Some((alg, value)), false) => h.push((alg.header_name(), B64.encode(value))),
        // A FULL_OBJECT upload's part sent without one: the one we computed.
        _ if upload_algorithm(&upload).is_some() => {
            h.push((algorithm.header_name(), B64.encode(&raw)))
        }
        _ => {}
    }
    Ok(response(StatusCode::OK, h, Body::empty()))
}

// ---------------------------------------------------------------------------------------------
// CompleteMultipartUpload
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Debug, Default)]
struct CompleteRequest {
    #[serde(rename = "Part", default)]
    parts: Vec<CompletedPartXml>,
}

#[derive(Deserialize, Debug, Default)]
struct CompletedPartXml {
    #[serde(rename = "PartNumber")]
    part_number: Option<String>,
    #[serde(rename = "ETag")]
    etag: Option<String>,
    #[serde(rename = "ChecksumCRC32")]
    crc32: Option<String>,
    #[serde(rename = "ChecksumCRC32C")]
    crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME")]
    crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA1")]
    sha1: Option<String>,
    #[serde(rename = "ChecksumSHA256")]
    sha256: Option<String>,
}

/// One `<Part>` of a CompleteMultipartUpload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedPart {
    /// `PartNumber` (0 when it cannot name a part).
    pub part_number: u32,
    /// `ETag`, without quotes.
    pub etag: String,
    /// `Checksum*` elements: algorithm and base64 value.
    pub checksums: Vec<(ChecksumAlgorithm, String)>,
}

/// Parses and validates a CompleteMultipartUpload body: well-formed, at least one part, part
/// numbers strictly ascending.
pub fn parse_complete_body(body: &[u8], upload_id: &str) -> S3Result<Vec<RequestedPart>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(s3_error!(
            InvalidRequest,
            "You must specify at least one part"
        ));
    }
    let req: CompleteRequest = xml::parse(body)?;
    if req.parts.is_empty() || req.parts.len() > MAX_PART_NUMBER as usize {
        return Err(xml::malformed());
    }
    let mut out: Vec<RequestedPart> = Vec::with_capacity(req.parts.len());
    let mut previous = i64::MIN;
    for p in req.parts {
        let number = p
            .part_number
            .as_deref()
            .and_then(|n| n.trim().parse::<i64>().ok())
            .ok_or_else(xml::malformed)?;
        let etag = p.etag.ok_or_else(xml::malformed)?;
        if number <= previous {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number."
            )
            .with_detail("UploadId", upload_id));
        }
        previous = number;
        use ChecksumAlgorithm::*;
        let checksums = [
            (Crc32, p.crc32),
            (Crc32c, p.crc32c),
            (Crc64Nvme, p.crc64nvme),
            (Sha1, p.sha1),
            (Sha256, p.sha256),
        ]
        .into_iter()
        .filter_map(|(a, v)| v.map(|v| (a, v.trim().to_string())))
        .collect();
        out.push(RequestedPart {
            // A number that cannot name a part is a part that cannot be found.
            part_number: u32::try_from(number).unwrap_or(0),
            etag: etag.trim().trim_matches('"').to_string(),
            checksums,
        });
    }
    Ok(out)
}

/// What completing an upload produces.
#[derive(Debug, Clone, PartialEq)]
pub struct Assembled {
    /// The object's parts, in order.
    pub parts: Vec<PartRef>,
    /// Total size.
    pub size: u64,
    /// `md5-N`.
    pub etag: String,
    /// The object checksum.
    pub checksum: Option<Checksum>,
}

fn invalid_part(upload_id: &str, p: &RequestedPart) -> S3Error {
    s3_error!(
        InvalidPart,
        "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
    )
    .with_detail("UploadId", upload_id)
    .with_detail("PartNumber", p.part_number.to_string())
    .with_detail("ETag", p.etag.clone())
}

/// Checks the `Checksum*` elements of one requested part against the upload's settings and the
/// stored part checksum.
fn check_requested_checksum(
    upload: &MultipartUpload,
    req: &RequestedPart,
    stored: Option<&str>,
) -> S3Result<()> {
    let Some(alg) = upload_algorithm(upload) else {
        // An upload created without an algorithm takes no part checksums.
        return match req.checksums.is_empty() {
            true => Ok(()),
            false => Err(invalid_part(&upload.upload_id, req)),
        };
    };
    match req.checksums.iter().find(|(a, _)| *a == alg) {
        Some((_, v)) if Some(v.as_str()) != stored => Err(invalid_part(&upload.upload_id, req)),
        Some(_) => Ok(()),
        None if upload.checksum_type.as_deref() == Some(COMPOSITE) => match req.checksums.first() {
            Some((other, _)) => Err(s3_error!(
                BadDigest,
                "The {} you specified for part {} did not match what we received.",
                other.as_str().to_ascii_lowercase(),
                req.part_number
            )),
            None => Err(s3_error!(
                InvalidRequest,
                "The upload was created using a {} checksum. The complete request must include the checksum for each part. It was missing for part {} in the request.",
                alg.as_str().to_ascii_lowercase(),
                req.part_number
            )),
        },
        None if req.checksums.is_empty() => Ok(()),
        None => Err(invalid_part(&upload.upload_id, req)),
    }
}

/// Matches the requested parts against the uploaded ones and computes the object's ETag, size
/// and checksum, with S3's errors for missing parts, wrong ETags or checksums and small parts.
pub fn assemble(
    upload: &MultipartUpload,
    requested: &[RequestedPart],
    uploaded: &BTreeMap<u32, UploadedPart>,
) -> S3Result<Assembled> {
    let mut parts = Vec::with_capacity(requested.len());
    let mut raw_checksums: Vec<Option<Vec<u8>>> = Vec::with_capacity(requested.len());
    for (i, req) in requested.iter().enumerate() {
        let up = uploaded
            .get(&req.part_number)
            .ok_or_else(|| invalid_part(&upload.upload_id, req))?;
        if up.part.etag != req.etag {
            return Err(invalid_part(&upload.upload_id, req));
        }
        let stored = up.checksum.as_deref().or(up.part.checksum.as_deref());
        check_requested_checksum(upload, req, stored)?;
        if i + 1 < requested.len() && up.part.size < MIN_PART_SIZE {
            return Err(s3_error!(
                EntityTooSmall,
                "Your proposed upload is smaller than the minimum allowed size"
            )
            .with_detail("ProposedSize", up.part.size.to_string())
            .with_detail("MinSizeAllowed", MIN_PART_SIZE.to_string())
            .with_detail("PartNumber", req.part_number.to_string())
            .with_detail("ETag", req.etag.clone()));
        }
        raw_checksums.push(stored.and_then(|s| B64.decode(s).ok()));
        parts.push(up.part.clone());
    }
    let size = parts.iter().map(|p| p.size).sum();
    let etag = multipart_etag(parts.iter().map(|p| p.etag.as_str()))?;
    let checksum = object_checksum(upload, &parts, &raw_checksums)?;
    Ok(Assembled {
        parts,
        size,
        etag,
        checksum,
    })
}

/// The object checksum of a completed upload: COMPOSITE (checksum of the part checksums, `-N`),
/// FULL_OBJECT (the part CRCs combined), or — for an upload created without an algorithm —
/// S3's default full-object CRC64NVME when every part carries one.
fn object_checksum(
    upload: &MultipartUpload,
    parts: &[PartRef],
    raw: &[Option<Vec<u8>>],
) -> S3Result<Option<Checksum>> {
    let algorithm = upload_algorithm(upload);
    let (alg, ty) = match algorithm {
        Some(a) => (a, upload.checksum_type.as_deref().unwrap_or(COMPOSITE)),
        None => (DEFAULT_ALGORITHM, FULL_OBJECT),
    };
    let raws: Option<Vec<Vec<u8>>> = raw
        .iter()
        .map(|r| r.clone().filter(|r| r.len() == alg.digest_len()))
        .collect();
    let Some(raws) = raws else {
        return match algorithm {
            Some(_) => Err(S3Error::internal(
                "a part of a checksummed upload has no checksum",
            )),
            None => Ok(None),
        };
    };
    let value = if ty == COMPOSITE {
        format!(
            "{}-{}",
            B64.encode(checksum::composite(alg, &raws)),
            raws.len()
        )
    } else {
        let with_sizes: Vec<(Vec<u8>, u64)> =
            raws.into_iter().zip(parts.iter().map(|p| p.size)).collect();
        B64.encode(checksum::combine_crc(alg, &with_sizes).map_err(S3Error::internal)?)
    };
    Ok(Some(Checksum {
        algorithm: alg.as_str().to_string(),
        value,
        checksum_type: ty.to_string(),
    }))
}

/// Reads the CompleteMultipartUpload body. Its `x-amz-checksum-*` headers describe the object,
/// not the body, so they are kept away from the body verification.
async fn read_complete_body(ctx: &ReqCtx, body: Body) -> S3Result<bytes::Bytes> {
    let mut headers = ctx.parts.headers.clone();
    if !headers.contains_key("x-amz-trailer") {
        for alg in ChecksumAlgorithm::ALL {
            headers.remove(alg.header_name());
        }
        headers.remove("x-amz-sdk-checksum-algorithm");
    }
    let exp = expectations_from_headers(&headers, MAX_COMPLETE_BODY as u64)?;
    let reader = BodyReader::new(body, &headers, &ctx.auth.payload, exp)?;
    Ok(reader.read_all(MAX_COMPLETE_BODY).await?.0)
}

/// Checks what the Complete request itself says about the object: `x-amz-checksum-type`,
/// a full-object `x-amz-checksum-*` value and `x-amz-mp-object-size`.
fn check_complete_headers(ctx: &ReqCtx, upload: &MultipartUpload, a: &Assembled) -> S3Result<()> {
    if let (Some(asked), Some(ty)) = (
        ctx.header("x-amz-checksum-type"),
        upload.checksum_type.as_deref(),
    ) {
        if !asked.trim().eq_ignore_ascii_case(ty) {
            return Err(s3_error!(
                InvalidRequest,
                "The upload was created using the {ty} checksum mode. The complete request must use the same checksum mode."
            ));
        }
    }
    if let (Some(c), Some(alg)) = (&a.checksum, upload_algorithm(upload)) {
        if c.checksum_type == FULL_OBJECT {
            if let Some(given) = ctx.header(alg.header_name()) {
                if given.trim() != c.value {
                    return Err(s3_error!(
                        BadDigest,
                        "The {} you specified did not match the calculated checksum.",
                        alg.as_str().to_ascii_lowercase()
                    ));
                }
            }
        }
    }
    if let Some(v) = ctx.header("x-amz-mp-object-size") {
        if v.trim().parse::<u64>().ok() != Some(a.size) {
            return Err(s3_error!(
                InvalidRequest,
                "The provided 'x-amz-mp-object-size' header value {v} does not match what was computed: {}",
                a.size
            ));
        }
    }
    Ok(())
}

/// Every part of an upload, by number.
async fn all_parts(ctx: &ReqCtx, upload_id: &str) -> S3Result<BTreeMap<u32, UploadedPart>> {
    let mut out = BTreeMap::new();
    let mut marker = 0;
    loop {
        let (page, more) = ctx
            .state
            .meta
            .list_parts(ctx.bucket(), upload_id, marker, 1000)
            .await?;
        let Some(last) = page.last().map(|p| p.part_number) else {
            break;
        };
        out.extend(page.into_iter().map(|p| (p.part_number, p)));
        if !more || last <= marker {
            break;
        }
        marker = last;
    }
    Ok(out)
}

/// `Location` of a completed object, as the client addressed the bucket.
fn location(ctx: &ReqCtx) -> String {
    const KEY: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    let host = ctx.header("host").unwrap_or("localhost");
    let key = percent_encoding::utf8_percent_encode(ctx.key(), KEY);
    let vhost = host
        .strip_prefix(ctx.bucket())
        .is_some_and(|rest| rest.starts_with('.'));
    if vhost {
        format!("http://{host}/{key}")
    } else {
        format!("http://{host}/{}/{key}", ctx.bucket())
    }
}

/// CompleteMultipartUpload.
pub async fn complete(ctx: ReqCtx, body: Body) -> S3Result<Response> {
    let state = ctx.state.clone();
    let bucket = state.meta.get_bucket(ctx.bucket()).await?;
    let upload = find_upload(&ctx).await?;
    let condition = write_condition(&ctx)?;
    let raw = read_complete_body(&ctx, body).await?;
    let requested = parse_complete_body(&raw, &upload.upload_id)?;
    let uploaded = all_parts(&ctx, &upload.upload_id).await?;
    let assembled = assemble(&upload, &requested, &uploaded)?;
    check_complete_headers(&ctx, &upload, &assembled)?;

    let version = ObjectVersion {
        v: FORMAT_VERSION,
        key: ctx.key().to_string(),
        version_id: version_id_for(&bucket)?,
        seq: 0,
        delete_marker: false,
        size: assembled.size,
        etag: assembled.etag.clone(),
        last_modified_ms: now_ms(),
        headers: upload.headers.clone(),
        checksum: assembled.checksum.clone(),
        multipart_parts: assembled.parts.len() as u32,
        parts: assembled.parts,
        envelope: Some(upload.envelope.clone()),
        retention: upload.retention.clone(),
        legal_hold: upload.legal_hold,
    };
    let version_id = version.version_id.clone();
    let cmd = Command::CompleteMultipartUpload {
        bucket: ctx.bucket().to_string(),
        upload_id: upload.upload_id.clone(),
        version,
        condition,
    };
    let out = state.meta.apply(cmd).await.map_err(|e| match e {
        // A part re-uploaded while this completion ran: meta refuses the stale blob.
        MetaError::Invalid(m) if m.starts_with("InvalidPart") => {
            let stale = requested
                .iter()
                .find(|r| m.contains(&format!("part {} ", r.part_number)));
            invalid_part(&upload.upload_id, stale.unwrap_or(&requested[0]))
        }
        other => other.into(),
    })?;
    // Parts uploaded but not listed, and a replaced `null` version.
    data::delete_blobs(&state.blobs, &out.freed_blobs).await;

    let mut w = XmlWriter::new("CompleteMultipartUploadResult");
    w.elem("Location", location(&ctx))
        .elem("Bucket", ctx.bucket())
        .elem("Key", ctx.key())
        .elem("ETag", quote(&assembled.etag));
    if let Some(c) = &assembled.checksum {
        if let Some(alg) = ChecksumAlgorithm::from_name(&c.algorithm) {
            w.elem(alg.xml_element(), &c.value)
                .elem("ChecksumType", &c.checksum_type);
        }
    }
    let mut h = vec![("content-type", "application/xml".to_string())];
    if bucket.versioning != Versioning::Unversioned {
        h.push(("x-amz-version-id", version_id));
    }
    h.extend(sse::response_headers(&upload.envelope));
    Ok(response(
        StatusCode::OK,
        h,
        Body::from(w.finish("CompleteMultipartUploadResult")),
    ))
}

// ---------------------------------------------------------------------------------------------
// AbortMultipartUpload, ListParts, ListMultipartUploads
// ---------------------------------------------------------------------------------------------

/// AbortMultipartUpload.
pub async fn abort(ctx: ReqCtx) -> S3Result<Response> {
    let state = ctx.state.clone();
    state.meta.get_bucket(ctx.bucket()).await?;
    let upload = find_upload(&ctx).await?;
    let out = state
        .meta
        .apply(Command::AbortMultipartUpload {
            bucket: ctx.bucket().to_string(),
            upload_id: upload.upload_id,
        })
        .await?;
    data::delete_blobs(&state.blobs, &out.freed_blobs).await;
    Ok(empty(StatusCode::NO_CONTENT))
}

fn owner_elem(ctx: &ReqCtx, w: &mut XmlWriter, name: &str) {
    w.open(name)
        .elem("ID", ctx.state.config.owner_id())
        .elem("DisplayName", ctx.state.config.owner_display_name())
        .close(name);
}

fn marker_param(ctx: &ReqCtx, name: &str) -> S3Result<u32> {
    match ctx.query(name) {
        None | Some("") => Ok(0),
        Some(v) => v.parse::<u32>().map_err(|_| {
            s3_error!(
                InvalidArgument,
                "Provided {name} not an integer or within integer range"
            )
            .with_detail("ArgumentName", name)
            .with_detail("ArgumentValue", v)
        }),
    }
}

/// ListParts.
pub async fn list_parts(ctx: ReqCtx) -> S3Result<Response> {
    let state = ctx.state.clone();
    state.meta.get_bucket(ctx.bucket()).await?;
    let max_parts = max_param(&ctx, "max-parts")?;
    let marker = marker_param(&ctx, "part-number-marker")?;
    let upload = find_upload(&ctx).await?;
    let (parts, truncated) = if max_parts == 0 {
        let (rest, _) = state
            .meta
            .list_parts(ctx.bucket(), &upload.upload_id, marker, 1)
            .await?;
        (Vec::new(), !rest.is_empty())
    } else {
        state
            .meta
            .list_parts(ctx.bucket(), &upload.upload_id, marker, max_parts)
            .await?
    };
    let algorithm = upload_algorithm(&upload);

    let mut w = XmlWriter::new("ListPartsResult");
    w.elem("Bucket", ctx.bucket())
        .elem("Key", ctx.key())
        .elem("UploadId", &upload.upload_id);
    owner_elem(&ctx, &mut w, "Initiator");
    owner_elem(&ctx, &mut w, "Owner");
    w.elem(
        "StorageClass",
        upload
            .headers
            .storage_class
            .as_deref()
            .unwrap_or("STANDARD"),
    )
    .elem("PartNumberMarker", marker.to_string())
    .elem(
        "NextPartNumberMarker",
        parts.last().map(|p| p.part_number).unwrap_or(0).to_string(),
    )
    .elem("MaxParts", max_parts.to_string())
    .elem("IsTruncated", truncated.to_string());
    for p in &parts {
        w.open("Part")
            .elem("PartNumber", p.part_number.to_string())
            .elem("LastModified", iso8601_ms(p.last_modified_ms))
            .elem("ETag", quote(&p.part.etag))
            .elem("Size", p.part.size.to_string());
        // Parts of an upload without an algorithm carry our CRC64NVME, which S3 does not list.
        if let (Some(alg), Some(c)) = (
            algorithm,
            p.checksum.as_deref().or(p.part.checksum.as_deref()),
        ) {
            w.elem(alg.xml_element(), c);
        }
        w.close("Part");
    }
    if let (Some(alg), Some(ty)) = (algorithm, upload.checksum_type.as_deref()) {
        w.elem("ChecksumAlgorithm", alg.as_str())
            .elem("ChecksumType", ty);
    }
    Ok(xml_response(w.finish("ListPartsResult")))
}

/// ListMultipartUploads.
pub async fn list_uploads(ctx: ReqCtx) -> S3Result<Response> {
    let state = ctx.state.clone();
    state.meta.get_bucket(ctx.bucket()).await?;
    let enc = Encoder::from_ctx(&ctx)?;
    let max_uploads = max_param(&ctx, "max-uploads")?;
    let prefix = ctx.query("prefix").unwrap_or("").to_string();
    let delimiter = ctx
        .query("delimiter")
        .filter(|d| !d.is_empty())
        .map(str::to_string);
    let key_marker = ctx
        .query("key-marker")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    // S3 ignores upload-id-marker without key-marker.
    let upload_id_marker = key_marker
        .as_ref()
        .and_then(|_| ctx.query("upload-id-marker"))
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let page = state
        .meta
        .list_uploads(
            ctx.bucket(),
            &UploadQuery {
                prefix: prefix.clone(),
                delimiter: delimiter.clone(),
                key_marker: key_marker.clone(),
                upload_id_marker: upload_id_marker.clone(),
                max_uploads,
            },
        )
        .await?;

    let mut w = XmlWriter::new("ListMultipartUploadsResult");
    w.elem("Bucket", ctx.bucket())
        .elem("KeyMarker", enc.enc(key_marker.as_deref().unwrap_or("")))
        .elem("UploadIdMarker", upload_id_marker.as_deref().unwrap_or(""));
    let (next_key, next_upload) = match page.is_truncated {
        true => (
            page.next_key_marker.as_deref(),
            page.next_upload_id_marker.as_deref(),
        ),
        false => (None, None),
    };
    w.elem("NextKeyMarker", enc.enc(next_key.unwrap_or("")))
        .elem("NextUploadIdMarker", next_upload.unwrap_or(""));
    if let Some(d) = &delimiter {
        w.elem("Delimiter", enc.enc(d));
    }
    w.elem("Prefix", enc.enc(&prefix))
        .elem("MaxUploads", max_uploads.to_string());
    enc.write(&mut w);
    w.elem("IsTruncated", page.is_truncated.to_string());
    for u in &page.uploads {
        w.open("Upload")
            .elem("Key", enc.enc(&u.key))
            .elem("UploadId", &u.upload_id);
        owner_elem(&ctx, &mut w, "Initiator");
        owner_elem(&ctx, &mut w, "Owner");
        w.elem(
            "StorageClass",
            u.headers.storage_class.as_deref().unwrap_or("STANDARD"),
        )
        .elem("Initiated", iso8601_ms(u.initiated_ms));
        if let (Some(alg), Some(ty)) = (u.checksum_algorithm.as_deref(), u.checksum_type.as_deref())
        {
            w.elem("ChecksumAlgorithm", alg).elem("ChecksumType", ty);
        }
        w.close("Upload");
    }
    for p in &page.common_prefixes {
        w.open("CommonPrefixes")
            .elem("Prefix", enc.enc(p))
            .close("CommonPrefixes");
    }
    Ok(xml_response(w.finish("ListMultipartUploadsResult")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_meta::{Envelope, ObjectHeaders, SseAlgorithm};

    fn upload(alg: Option<&str>, ty: Option<&str>) -> MultipartUpload {
        MultipartUpload {
            v: FORMAT_VERSION,
            upload_id: "UP".into(),
            key: "k".into(),
            initiated_ms: 0,
            headers: ObjectHeaders::default(),
            envelope: Envelope {
                v: FORMAT_VERSION,
                algorithm: SseAlgorithm::Aes256,
                kms_key_arn: None,
                wrapped_dek: Vec::new(),
                context: BTreeMap::new(),
                user_context: None,
                bucket_key_id: None,
                second_wrapped_dek: None,
                sse_c_key_hmac: None,
                sse_c_salt: None,
                sse_c_key_md5: None,
                generation: 0,
            },
            checksum_algorithm: alg.map(str::to_string),
            checksum_type: ty.map(str::to_string),
            retention: None,
            legal_hold: false,
        }
    }

    fn stored_part(n: u32, size: u64, etag: &str, checksum: Option<&[u8]>) -> (u32, UploadedPart) {
        let checksum = checksum.map(|c| B64.encode(c));
        let part = PartRef {
            part_number: n,
            blob_id: [n as u8; 16],
            size,
            chunk_size: 1 << 20,
            etag: etag.to_string(),
            checksum: checksum.clone(),
        };
        (
            n,
            UploadedPart {
                part_number: n,
                part,
                last_modified_ms: 0,
                checksum,
            },
        )
    }

    fn req(n: u32, etag: &str, checksums: Vec<(ChecksumAlgorithm, String)>) -> RequestedPart {
        RequestedPart {
            part_number: n,
            etag: etag.to_string(),
            checksums,
        }
    }

    const E1: &str = "f814893777bcc2295fff05f00e508da6";
    const E2: &str = "7d793037a0760186574b0282f2f435e7";

    #[test]
    fn etag_is_md5_of_part_md5s() {
        assert_eq!(
            multipart_etag([E1, E2]).unwrap(),
            "e09e4fd6265b36115fe3db32df945d84-2"
        );
        assert_eq!(
            multipart_etag([format!("\"{E1}\"").as_str()]).unwrap(),
            format!("{}-1", {
                let mut m = Md5::new();
                m.update(hex::decode(E1).unwrap());
                hex::encode(m.finalize())
            })
        );
        assert!(multipart_etag(["not-hex"]).is_err());
    }

    #[test]
    fn checksum_settings() {
        use ChecksumAlgorithm::*;
        let ok = |a, t| upload_checksum_settings(a, t).unwrap();
        assert_eq!(ok(None, None), None);
        assert_eq!(ok(Some("CRC32"), None), Some((Crc32, "COMPOSITE")));
        assert_eq!(ok(Some("sha256"), None), Some((Sha256, "COMPOSITE")));
        assert_eq!(
            ok(Some("CRC64NVME"), None),
            Some((Crc64Nvme, "FULL_OBJECT"))
        );
        assert_eq!(
            ok(Some("CRC32C"), Some("FULL_OBJECT")),
            Some((Crc32c, "FULL_OBJECT"))
        );
        let err = |a, t| upload_checksum_settings(a, t).unwrap_err();
        let e = err(Some("CRC64NVME"), Some("COMPOSITE"));
        assert_eq!(
            (e.code().as_str(), e.message()),
            (
                "InvalidRequest",
                "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."
            )
        );
        let e = err(Some("SHA1"), Some("FULL_OBJECT"));
        assert_eq!(
            e.message(),
            "The FULL_OBJECT checksum type cannot be used with the sha1 checksum algorithm."
        );
        let e = err(None, Some("COMPOSITE"));
        assert_eq!(e.message(), "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.");
        assert_eq!(err(Some("MD5"), None).code().as_str(), "InvalidRequest");
        assert_eq!(
            err(Some("CRC32"), Some("PARTIAL")).message(),
            "Value for x-amz-checksum-type header is invalid."
        );
    }

    #[test]
    fn upload_ids_are_url_safe_and_start_alphanumeric() {
        for _ in 0..200 {
            let id = new_upload_id().unwrap();
            assert_eq!(id.len(), 64);
            assert!(id.starts_with(|c: char| c.is_ascii_alphanumeric()), "{id}");
            assert!(
                id.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "{id}"
            );
        }
    }

    #[test]
    fn part_numbers() {
        assert_eq!(parse_part_number(Some("1")).unwrap(), 1);
        assert_eq!(parse_part_number(Some("10000")).unwrap(), 10000);
        for bad in [
            None,
            Some("0"),
            Some("10001"),
            Some("-1"),
            Some("x"),
            Some(""),
        ] {
            let e = parse_part_number(bad).unwrap_err();
            assert_eq!(e.code().as_str(), "InvalidArgument");
            assert_eq!(
                e.message(),
                "Part number must be an integer between 1 and 10000, inclusive"
            );
        }
    }

    #[test]
    fn complete_body_validation() {
        let body = format!(
            "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Part><PartNumber>1</PartNumber><ETag>\"{E1}\"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part>\
             <Part><ETag>{E2}</ETag><PartNumber>3</PartNumber></Part></CompleteMultipartUpload>"
        );
        let parts = parse_complete_body(body.as_bytes(), "UP").unwrap();
        assert_eq!(
            parts,
            vec![
                req(1, E1, vec![(ChecksumAlgorithm::Crc32, "AAAAAA==".into())]),
                req(3, E2, vec![])
            ]
        );
        let code = |b: &str| {
            parse_complete_body(b.as_bytes(), "UP")
                .unwrap_err()
                .code()
                .as_str()
        };
        assert_eq!(code("not xml"), "MalformedXML");
        assert_eq!(
            code("<CompleteMultipartUpload></CompleteMultipartUpload>"),
            "MalformedXML"
        );
        assert_eq!(code(""), "InvalidRequest");
        assert_eq!(
            code("<CompleteMultipartUpload><Part><ETag>x</ETag></Part></CompleteMultipartUpload>"),
            "MalformedXML"
        );
        assert_eq!(
            code("<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"),
            "MalformedXML"
        );
        let unordered =
            "<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>a</ETag></Part>\
             <Part><PartNumber>1</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>";
        let e = parse_complete_body(unordered.as_bytes(), "UP").unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.message()),
            ("InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number.")
        );
        let dup = "<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>a</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>";
        assert_eq!(code(dup), "InvalidPartOrder");
    }

    #[test]
    fn assemble_checks_parts() {
        let up = upload(None, None);
        let uploaded: BTreeMap<_, _> = [
            stored_part(1, MIN_PART_SIZE, E1, None),
            stored_part(2, 3, E2, None),
        ]
        .into();
        let a = assemble(&up, &[req(1, E1, vec![]), req(2, E2, vec![])], &uploaded).unwrap();
        assert_eq!(
            (a.size, a.etag.as_str(), a.parts.len()),
            (MIN_PART_SIZE + 3, "e09e4fd6265b36115fe3db32df945d84-2", 2)
        );
        assert_eq!(a.checksum, None);
        // Only part 2: a single small part is fine.
        let a = assemble(&up, &[req(2, E2, vec![])], &uploaded).unwrap();
        assert_eq!((a.size, a.parts[0].part_number), (3, 2));

        let e = assemble(&up, &[req(1, E2, vec![])], &uploaded).unwrap_err();
        assert_eq!(e.code().as_str(), "InvalidPart");
        assert_eq!(
            e.message(),
            "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag."
        );
        assert_eq!(
            assemble(&up, &[req(7, E1, vec![])], &uploaded)
                .unwrap_err()
                .code()
                .as_str(),
            "InvalidPart"
        );
        // A checksum on a part of an upload without algorithm.
        let e = assemble(
            &up,
            &[req(
                1,
                E1,
                vec![(ChecksumAlgorithm::Crc32, "AAAAAA==".into())],
            )],
            &uploaded,
        )
        .unwrap_err();
        assert_eq!(e.code().as_str(), "InvalidPart");

        let small: BTreeMap<_, _> =
            [stored_part(1, 10, E1, None), stored_part(2, 3, E2, None)].into();
        let e = assemble(&up, &[req(1, E1, vec![]), req(2, E2, vec![])], &small).unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.message()),
            (
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size"
            )
        );
    }

    #[test]
    fn assemble_composite_checksum() {
        // Part CRC32s of b"hello " and b"world" (big-endian).
        let c1 = [0xed, 0x81, 0xf9, 0xf6];
        let c2 = [0x3a, 0x77, 0x11, 0x43];
        let up = upload(Some("CRC32"), Some(COMPOSITE));
        let uploaded: BTreeMap<_, _> = [
            stored_part(1, MIN_PART_SIZE, E1, Some(&c1)),
            stored_part(2, 5, E2, Some(&c2)),
        ]
        .into();
        let with = |n, e, c: &[u8]| req(n, e, vec![(ChecksumAlgorithm::Crc32, B64.encode(c))]);
        let a = assemble(&up, &[with(1, E1, &c1), with(2, E2, &c2)], &uploaded).unwrap();
        let c = a.checksum.unwrap();
        let mut joined = c1.to_vec();
        joined.extend_from_slice(&c2);
        let mut h = Checksummer::new(ChecksumAlgorithm::from_name("CRC32").unwrap());
        h.update(&joined);
        assert_eq!(c.value, format!("{}-2", B64.encode(h.finish())));
        assert_eq!(
            (c.algorithm.as_str(), c.checksum_type.as_str()),
            ("CRC32", "COMPOSITE")
        );

        // Missing part checksum, wrong one, and another algorithm's.
        let e = assemble(&up, &[req(1, E1, vec![]), with(2, E2, &c2)], &uploaded).unwrap_err();
        assert_eq!(
            e.message(),
            "The upload was created using a crc32 checksum. The complete request must include the checksum for each part. It was missing for part 1 in the request."
        );
        let e = assemble(&up, &[with(1, E1, &c2), with(2, E2, &c2)], &uploaded).unwrap_err();
        assert_eq!(e.code().as_str(), "InvalidPart");
        let e = assemble(
            &up,
            &[
                req(1, E1, vec![(ChecksumAlgorithm::Sha1, "x".into())]),
                with(2, E2, &c2),
            ],
            &uploaded,
        )
        .unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.message()),
            (
                "BadDigest",
                "The sha1 you specified for part 1 did not match what we received."
            )
        );
    }

    #[test]
    fn assemble_full_object_checksum() {
        let data1 = vec![7u8; MIN_PART_SIZE as usize];
        let data2 = b"tail".to_vec();
        for alg in ["CRC32", "CRC32C", "CRC64NVME"] {
            let crc = |d: &[u8]| {
                let mut h = Checksummer::new(ChecksumAlgorithm::from_name(alg).unwrap());
                h.update(d);
                h.finish()
            };
            let (c1, c2) = (crc(&data1), crc(&data2));
            let whole = crc(&[data1.clone(), data2.clone()].concat());
            let up = upload(Some(alg), Some(FULL_OBJECT));
            let uploaded: BTreeMap<_, _> = [
                stored_part(1, data1.len() as u64, E1, Some(&c1)),
                stored_part(2, data2.len() as u64, E2, Some(&c2)),
            ]
            .into();
            // Part checksums are optional for FULL_OBJECT.
            let a = assemble(&up, &[req(1, E1, vec![]), req(2, E2, vec![])], &uploaded).unwrap();
            let c = a.checksum.unwrap();
            assert_eq!(
                (c.value, c.checksum_type.as_str()),
                (B64.encode(&whole), "FULL_OBJECT"),
                "{alg}"
            );

            // An upload created without an algorithm gets S3's default CRC64NVME.
            if alg == "CRC64NVME" {
                let a = assemble(
                    &upload(None, None),
                    &[req(1, E1, vec![]), req(2, E2, vec![])],
                    &uploaded,
                )
                .unwrap();
                let c = a.checksum.unwrap();
                assert_eq!(
                    (c.algorithm.as_str(), c.value, c.checksum_type.as_str()),
                    ("CRC64NVME", B64.encode(&whole), "FULL_OBJECT")
                );
            }
        }
    }

    #[test]
    fn part_checksum_must_match_upload() {
        let up = upload(Some("SHA256"), Some(COMPOSITE));
        use ChecksumAlgorithm::*;
        assert!(check_part_checksum(&up, Some(Sha256)).is_ok());
        let e = check_part_checksum(&up, Some(Crc32)).unwrap_err();
        assert_eq!(
            (e.code().as_str(), e.message()),
            ("InvalidRequest", "Checksum Type mismatch occurred, expected checksum Type: sha256, actual checksum Type: crc32")
        );
        assert_eq!(
            check_part_checksum(&up, None).unwrap_err().message(),
            "Checksum Type mismatch occurred, expected checksum Type: sha256, actual checksum Type: null"
        );
        let full = upload(Some("CRC32"), Some(FULL_OBJECT));
        assert!(check_part_checksum(&full, None).is_ok());
        assert!(check_part_checksum(&full, Some(Crc32c)).is_err());
        assert!(check_part_checksum(&upload(None, None), Some(Crc32)).is_ok());
    }
}
