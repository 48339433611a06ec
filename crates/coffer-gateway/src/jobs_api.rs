//! The admin HTTP API of background jobs, on the admin listener:
//!
//! ```text
//! POST /admin/v1/jobs/reencrypt            create a re-encryption job (JSON body) → 201, the job
//! POST /admin/v1/jobs/rotate               {"key": "<id|ARN|alias>", "buckets": [...]?}: move
//!                                          what a rotated key wraps to its current material → 201
//! GET  /admin/v1/jobs                      {"jobs": [job, ...]}
//! GET  /admin/v1/jobs/{id}                 the job
//! POST /admin/v1/jobs/{id}/pause|resume|cancel
//! GET  /admin/v1/keys/{key}/materials      the key's material versions in use
//!                                          ([`crate::key_usage::KeyMaterials`]; `/` in {key} as %2F)
//! ```
//!
//! Every call needs `Authorization: Bearer <access key id>:<secret access key>` of the gateway's
//! key pair (compared in constant time); the admin listener is loopback by default, and when it
//! listens beyond loopback it must be behind TLS or on a trusted network, as the secret travels
//! in the header. Errors are `{"error": "..."}` with 400, 401, 404, 409 or 503.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use coffer_meta::{
    Command, JobAction, JobKind, JobRecord, MetaError, ReencryptSpec, RotateSpec, SourceFilter,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{S3Error, S3ErrorCode};
use crate::s3::update_encryption::{arn_account, valid_key_arn};
use crate::state::AppState;

/// The job routes, to merge into the admin listener's router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/admin/v1/jobs", get(list))
        .route("/admin/v1/jobs/reencrypt", post(create))
        .route("/admin/v1/jobs/rotate", post(create_rotate))
        .route("/admin/v1/jobs/{id}", get(show))
        .route("/admin/v1/jobs/{id}/{action}", post(control))
        .route("/admin/v1/keys/{key}/materials", get(materials))
        .with_state(state)
}

/// An API error.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.0, &json!({ "error": self.1 }))
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        let status = match &e {
            MetaError::NoSuchBucket(_) => StatusCode::NOT_FOUND,
            MetaError::Invalid(m) if m.starts_with("no such job") => StatusCode::NOT_FOUND,
            MetaError::Invalid(_) | MetaError::PreconditionFailed => StatusCode::CONFLICT,
            MetaError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<S3Error> for ApiError {
    fn from(e: S3Error) -> Self {
        if e.code() == S3ErrorCode::InternalError {
            tracing::warn!(error = ?e.source_error(), "admin API: {}", e.message());
        }
        ApiError(e.code().status(), e.message().to_owned())
    }
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, m.into())
}

/// Checks `Authorization: Bearer <id>:<secret>`.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let denied = || {
        ApiError(
            StatusCode::UNAUTHORIZED,
            "authentication required: Authorization: Bearer <access key id>:<secret access key>"
                .into(),
        )
    };
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(denied)?;
    let token = value.strip_prefix("Bearer ").ok_or_else(denied)?.trim();
    let (id, secret) = token.split_once(':').ok_or_else(denied)?;
    let expected = state.creds.secret_key(id).ok_or_else(denied)?;
    if !constant_time_eq(expected.as_bytes(), secret.as_bytes()) {
        return Err(denied());
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // subtle compares equal-length inputs in constant time (a length mismatch returns early).
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// A job as the API shows it: the record (its `kind` is `{"reencrypt": spec}` or
/// `{"rotate": spec}`) plus `type` (`reencrypt` or `rotate`) and `done`.
pub fn job_json(job: &JobRecord) -> Value {
    let mut v = serde_json::to_value(job).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        let kind = match &job.kind {
            JobKind::Reencrypt(_) => "reencrypt",
            JobKind::Rotate(_) => "rotate",
        };
        m.insert("type".into(), json!(kind));
        m.insert("done".into(), json!(job.counters.done()));
    }
    v
}

/// The body of `POST /admin/v1/jobs/reencrypt`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReencrypt {
    bucket: String,
    #[serde(default)]
    prefix: String,
    /// `any` (default), `sse-s3`, `sse-kms` or `sse-kms:<key ARN>`.
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    all_versions: bool,
    target_key_arn: String,
    #[serde(default)]
    bucket_key_enabled: bool,
}

/// Parses a `--source` value.
pub fn parse_source(s: &str) -> Result<SourceFilter, String> {
    match s {
        "any" => Ok(SourceFilter::Any),
        "sse-s3" => Ok(SourceFilter::SseS3),
        "sse-kms" => Ok(SourceFilter::SseKms(None)),
        _ => match s.strip_prefix("sse-kms:") {
            Some(arn) if valid_key_arn(arn) => Ok(SourceFilter::SseKms(Some(arn.to_owned()))),
            Some(arn) => Err(format!("source key {arn:?} is not a KMS key ARN")),
            None => Err(format!(
                "source {s:?}: expected any, sse-s3, sse-kms or sse-kms:<key ARN>"
            )),
        },
    }
}

async fn create(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers)?;
    let req: CreateReencrypt =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    let source = parse_source(req.source.as_deref().unwrap_or("any")).map_err(bad)?;
    if !valid_key_arn(&req.target_key_arn) {
        return Err(bad(format!(
            "target_key_arn {:?} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)",
            req.target_key_arn
        )));
    }
    if arn_account(&req.target_key_arn) != state.config.account_id {
        return Err(bad("the target key must be owned by the bucket's account"));
    }
    let key = state
        .kms
        .describe_key(&req.target_key_arn)
        .await
        .map_err(|e| bad(format!("target key: {e}")))?;
    if !key.enabled {
        return Err(bad(format!("target key {} is not enabled", key.arn)));
    }
    let bucket = state.meta.get_bucket(&req.bucket).await?;
    if bucket.directory {
        return Err(bad("directory buckets are not supported"));
    }
    let spec = ReencryptSpec {
        bucket: req.bucket,
        prefix: req.prefix,
        source,
        all_versions: req.all_versions,
        target_key_arn: req.target_key_arn,
        bucket_key_enabled: req.bucket_key_enabled,
    };
    create_job(&state, "re", JobKind::Reencrypt(spec)).await
}

/// Creates a job `<prefix>-<UTC time>-<random>` and answers 201 with it.
async fn create_job(state: &AppState, prefix: &str, kind: JobKind) -> Result<Response, ApiError> {
    let now = chrono::Utc::now();
    let suffix: [u8; 4] = coffer_crypto::random_bytes()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("random id: {e}")))?;
    let id = format!(
        "{prefix}-{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        hex::encode(suffix)
    );
    let record = JobRecord::new(id.clone(), kind, now.timestamp_millis());
    state.meta.apply(Command::CreateJob(record)).await?;
    let job = state
        .meta
        .get_job(&id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "job vanished".into()))?;
    Ok(json_response(StatusCode::CREATED, &job_json(&job)))
}

/// The body of `POST /admin/v1/jobs/rotate`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRotate {
    /// Key ID, key ARN, alias name or alias ARN.
    key: String,
    /// Only these buckets; none = every bucket.
    #[serde(default)]
    buckets: Vec<String>,
}

/// A rotation job: everything `key` wraps under an older material moves to the material that
/// is current now (rotate the key first).
async fn create_rotate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers)?;
    let req: CreateRotate =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid JSON body: {e}")))?;
    if req.key.trim().is_empty() {
        return Err(bad("key is empty"));
    }
    let key = state
        .kms
        .describe_key(&req.key)
        .await
        .map_err(|e| bad(format!("key {:?}: {e}", req.key)))?;
    if !key.enabled {
        return Err(bad(format!("key {} is not enabled", key.arn)));
    }
    if arn_account(&key.arn) != state.config.account_id {
        return Err(bad("the key must be owned by the gateway's account"));
    }
    let mut buckets: Vec<String> = Vec::with_capacity(req.buckets.len());
    for b in req.buckets {
        if !buckets.contains(&b) {
            state.meta.get_bucket(&b).await?;
            buckets.push(b);
        }
    }
    let spec = RotateSpec {
        key_arn: key.arn,
        material_version: key.current_material_version,
        buckets,
    };
    create_job(&state, "rot", JobKind::Rotate(spec)).await
}

/// `GET /admin/v1/keys/{key}/materials`.
async fn materials(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers)?;
    let report = crate::key_usage::key_materials(&state, &key).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::to_value(report).unwrap_or(Value::Null),
    ))
}

async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers)?;
    let jobs = state.meta.list_jobs().await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "jobs": jobs.iter().map(job_json).collect::<Vec<_>>() }),
    ))
}

async fn get_one(state: &AppState, id: &str) -> Result<JobRecord, ApiError> {
    state
        .meta
        .get_job(id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no such job: {id}")))
}

async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers)?;
    Ok(json_response(
        StatusCode::OK,
        &job_json(&get_one(&state, &id).await?),
    ))
}

async fn control(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    authenticate(&state, &headers)?;
    let action = match action.as_str() {
        "pause" => JobAction::Pause,
        "resume" => JobAction::Resume,
        "cancel" => JobAction::Cancel,
        other => {
            return Err(ApiError(
                StatusCode::NOT_FOUND,
                format!("unknown action {other:?}: expected pause, resume or cancel"),
            ))
        }
    };
    get_one(&state, &id).await?;
    state
        .meta
        .apply(Command::ControlJob {
            id: id.clone(),
            action,
            now_ms: chrono::Utc::now().timestamp_millis(),
        })
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &job_json(&get_one(&state, &id).await?),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_or_say_why_not() {
        assert_eq!(parse_source("any"), Ok(SourceFilter::Any));
        assert_eq!(parse_source("sse-s3"), Ok(SourceFilter::SseS3));
        assert_eq!(parse_source("sse-kms"), Ok(SourceFilter::SseKms(None)));
        let arn = "arn:aws:kms:us-east-1:000000000000:key/k";
        assert_eq!(
            parse_source(&format!("sse-kms:{arn}")),
            Ok(SourceFilter::SseKms(Some(arn.into())))
        );
        assert!(parse_source("sse-kms:alias/x").is_err());
        assert!(parse_source("sse-c").is_err());
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn rotate_jobs_show_their_spec_and_counters() {
        let arn = "arn:aws:kms:us-east-1:000000000000:key/k";
        let mut job = JobRecord::new(
            "rot-1".into(),
            JobKind::Rotate(RotateSpec {
                key_arn: arn.into(),
                material_version: 2,
                buckets: vec!["b".into()],
            }),
            1,
        );
        job.counters.rewrapped = 3;
        job.counters.via_bucket_key = 4;
        job.counters.bucket_keys_rewrapped = 1;
        let v = job_json(&job);
        assert_eq!(v["type"], "rotate");
        assert_eq!(v["kind"]["rotate"]["key_arn"], arn);
        assert_eq!(v["kind"]["rotate"]["material_version"], 2);
        assert_eq!(v["kind"]["rotate"]["buckets"], json!(["b"]));
        assert_eq!(v["counters"]["via_bucket_key"], 4);
        assert_eq!(v["counters"]["bucket_keys_rewrapped"], 1);
        // Bucket key records are not objects: done = 3 + 4.
        assert_eq!(v["done"], 7);
        let body: CreateRotate = serde_json::from_str(r#"{"key": "alias/x"}"#).unwrap();
        assert!(body.buckets.is_empty());
        assert!(serde_json::from_str::<CreateRotate>(r#"{"key": "k", "bucket": "b"}"#).is_err());
    }
}
