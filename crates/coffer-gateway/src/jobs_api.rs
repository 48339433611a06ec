//! The admin HTTP API of background jobs, on the admin listener:
//!
//! ```text
//! POST /admin/v1/jobs/reencrypt            create a re-encryption job (JSON body) → 201, the job
//! GET  /admin/v1/jobs                      {"jobs": [job, ...]}
//! GET  /admin/v1/jobs/{id}                 the job
//! POST /admin/v1/jobs/{id}/pause|resume|cancel
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
use coffer_meta::{Command, JobAction, JobKind, JobRecord, MetaError, ReencryptSpec, SourceFilter};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::s3::update_encryption::{arn_account, valid_key_arn};
use crate::state::AppState;

/// The job routes, to merge into the admin listener's router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/admin/v1/jobs", get(list))
        .route("/admin/v1/jobs/reencrypt", post(create))
        .route("/admin/v1/jobs/{id}", get(show))
        .route("/admin/v1/jobs/{id}/{action}", post(control))
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

/// A job as the API shows it: the record plus `done`.
pub fn job_json(job: &JobRecord) -> Value {
    let mut v = serde_json::to_value(job).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
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
    let now = chrono::Utc::now();
    let suffix: [u8; 4] = coffer_crypto::random_bytes()
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("random id: {e}")))?;
    let id = format!(
        "re-{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        hex::encode(suffix)
    );
    let spec = ReencryptSpec {
        bucket: req.bucket,
        prefix: req.prefix,
        source,
        all_versions: req.all_versions,
        target_key_arn: req.target_key_arn,
        bucket_key_enabled: req.bucket_key_enabled,
    };
    let record = JobRecord::new(id.clone(), JobKind::Reencrypt(spec), now.timestamp_millis());
    state.meta.apply(Command::CreateJob(record)).await?;
    let job = state
        .meta
        .get_job(&id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "job vanished".into()))?;
    Ok(json_response(StatusCode::CREATED, &job_json(&job)))
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
}
