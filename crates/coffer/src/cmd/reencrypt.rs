//! `coffer admin reencrypt`: bulk re-encryption jobs through a gateway's admin API
//! (`/admin/v1/jobs`, see `coffer_gateway::jobs_api`), authenticated with
//! `Authorization: Bearer <access key id>:<secret access key>`.
//!
//! The admin API is plain HTTP on a loopback listener by default, so `--admin-endpoint` is
//! `http://host:port`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::admin::{credentials, render, Output};
use super::CmdError;
use crate::cli::{AdminArgs, ReencryptArgs, ReencryptCommand, ReencryptStartArgs};

/// Runs `coffer admin reencrypt`.
pub async fn run(admin: &AdminArgs, args: &ReencryptArgs) -> Result<(), CmdError> {
    let creds = credentials(admin)?;
    let api = Api::new(
        &args.admin_endpoint,
        format!("{}:{}", creds.access_key_id, creds.secret_access_key),
    )?;
    let job = match &args.command {
        ReencryptCommand::Start(start) => {
            let job = api
                .call("POST", "/admin/v1/jobs/reencrypt", Some(start_body(start)))
                .await?;
            if start.wait {
                let id = str_of(&job, "id");
                eprintln!("started job {id}");
                return watch(&api, &id, admin.json).await;
            }
            job
        }
        ReencryptCommand::List => {
            let v = api.call("GET", "/admin/v1/jobs", None).await?;
            print!("{}", render(&list_output(v), admin.json)?);
            return Ok(());
        }
        ReencryptCommand::Show { id } => api.call("GET", &job_path(id, None), None).await?,
        ReencryptCommand::Pause { id } => {
            api.call("POST", &job_path(id, Some("pause")), None).await?
        }
        ReencryptCommand::Resume { id } => {
            api.call("POST", &job_path(id, Some("resume")), None)
                .await?
        }
        ReencryptCommand::Cancel { id } => {
            api.call("POST", &job_path(id, Some("cancel")), None)
                .await?
        }
        ReencryptCommand::Watch { id } => return watch(&api, id, admin.json).await,
    };
    print!("{}", render(&job_output(job), admin.json)?);
    Ok(())
}

fn start_body(a: &ReencryptStartArgs) -> Value {
    json!({
        "bucket": a.bucket,
        "prefix": a.prefix,
        "source": a.source,
        "all_versions": a.all_versions,
        "target_key_arn": a.target_key,
        "bucket_key_enabled": a.bucket_key == "on",
    })
}

fn job_path(id: &str, action: Option<&str>) -> String {
    let id: String = id
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    match action {
        Some(a) => format!("/admin/v1/jobs/{id}/{a}"),
        None => format!("/admin/v1/jobs/{id}"),
    }
}

fn str_of(v: &Value, field: &str) -> String {
    match &v[field] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn u64_of(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, f| &v[*f]).as_u64().unwrap_or(0)
}

/// Follows a job until it is completed, cancelled, failed or paused, drawing a progress bar
/// on stderr; then prints its summary.
async fn watch(api: &Api, id: &str, as_json: bool) -> Result<(), CmdError> {
    let path = job_path(id, None);
    let mut bar = Bar::new();
    loop {
        let job = api.call("GET", &path, None).await?;
        let state = str_of(&job, "state");
        bar.draw(&job);
        if matches!(
            state.as_str(),
            "completed" | "cancelled" | "failed" | "paused"
        ) {
            bar.finish();
            print!("{}", render(&job_output(job), as_json)?);
            return match state.as_str() {
                "failed" => Err(format!("job {id} failed").into()),
                _ => Ok(()),
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A progress bar on stderr (indicatif): done/total, rate, ETA; a spinner while the job's
/// total is still being counted. When stderr is not a terminal (a log, a pipe), indicatif draws
/// nothing, so a plain progress line is written every [`PLAIN_PROGRESS_EVERY`] and at the end.
struct Bar {
    bar: ProgressBar,
    plain: bool,
    last_plain: Option<Instant>,
}

/// How often the plain progress line is written when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Bar {
    fn new() -> Self {
        Bar {
            bar: ProgressBar::new_spinner(),
            plain: !std::io::stderr().is_terminal(),
            last_plain: None,
        }
    }

    fn draw(&mut self, job: &Value) {
        let done = u64_of(job, &["done"]);
        match job["total"].as_u64() {
            Some(total) if total > 0 => {
                if self.bar.length() != Some(total) {
                    self.bar.set_style(
                        ProgressStyle::with_template(
                            "{msg} [{bar:30}] {pos}/{len} objects  {per_sec}  ETA {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("#>-"),
                    );
                    self.bar.set_length(total);
                }
            }
            _ => self.bar.set_style(
                ProgressStyle::with_template("{msg} {spinner} {pos} objects (counting...)")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        }
        self.bar.set_message(str_of(job, "state"));
        self.bar.set_position(done);
        if self.plain
            && self
                .last_plain
                .is_none_or(|t| t.elapsed() >= PLAIN_PROGRESS_EVERY)
        {
            self.plain_line();
        }
    }

    /// `running: 120/254 objects, 85.3/s, ETA 2s`.
    fn plain_line(&mut self) {
        let pos = self.bar.position();
        let count = match self.bar.length() {
            Some(len) => format!("{pos}/{len}"),
            None => format!("{pos}/?"),
        };
        eprintln!(
            "{}: {count} objects, {:.1}/s, ETA {}s",
            self.bar.message(),
            self.bar.per_sec(),
            self.bar.eta().as_secs()
        );
        self.last_plain = Some(Instant::now());
    }

    fn finish(&mut self) {
        self.bar.finish();
        if self.plain {
            self.plain_line();
        }
    }
}

/// A job as a FIELD/VALUE table (with the skipped objects' reasons and the first of them).
fn job_output(job: Value) -> Output {
    let spec = &job["kind"]["reencrypt"];
    let source = match &spec["source"] {
        Value::String(s) => s.replace('_', "-"),
        Value::Object(m) => match m.get("sse_kms") {
            Some(Value::String(arn)) => format!("sse-kms:{arn}"),
            _ => "sse-kms".into(),
        },
        _ => String::new(),
    };
    let reasons: Vec<String> = job["skipped_by_reason"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let mut fields = vec![
        ("ID", str_of(&job, "id")),
        ("STATE", str_of(&job, "state")),
        ("BUCKET", str_of(spec, "bucket")),
        ("PREFIX", str_of(spec, "prefix")),
        ("SOURCE", source),
        (
            "VERSIONS",
            if spec["all_versions"] == json!(true) {
                "all"
            } else {
                "current"
            }
            .into(),
        ),
        ("TARGET KEY", str_of(spec, "target_key_arn")),
        (
            "BUCKET KEY",
            if spec["bucket_key_enabled"] == json!(true) {
                "on"
            } else {
                "off"
            }
            .into(),
        ),
        ("TOTAL", str_of(&job, "total")),
        ("DONE", str_of(&job, "done")),
        (
            "REWRAPPED",
            u64_of(&job, &["counters", "rewrapped"]).to_string(),
        ),
        (
            "ALREADY DONE",
            u64_of(&job, &["counters", "already_done"]).to_string(),
        ),
        (
            "SKIPPED",
            u64_of(&job, &["counters", "skipped"]).to_string(),
        ),
        ("FAILED", u64_of(&job, &["counters", "failed"]).to_string()),
        ("SKIP REASONS", reasons.join(" ")),
    ];
    if let Some(e) = job["error"].as_str() {
        fields.push(("ERROR", e.to_owned()));
    }
    if let Some(list) = job["skipped"].as_array() {
        for s in list.iter().take(20) {
            fields.push((
                "SKIPPED OBJECT",
                format!(
                    "{} ({}): {}{}",
                    str_of(s, "key"),
                    str_of(s, "version_id"),
                    str_of(s, "reason"),
                    s["detail"]
                        .as_str()
                        .map(|d| format!(" — {d}"))
                        .unwrap_or_default()
                ),
            ));
        }
        if list.len() > 20 {
            fields.push((
                "SKIPPED OBJECT",
                format!("... {} more (--json shows them)", list.len() - 20),
            ));
        }
    }
    Output::Record(fields, job)
}

fn list_output(v: Value) -> Output {
    let rows = v["jobs"]
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .map(|j| {
                    let spec = &j["kind"]["reencrypt"];
                    vec![
                        str_of(j, "id"),
                        str_of(j, "state"),
                        str_of(spec, "bucket"),
                        str_of(spec, "prefix"),
                        format!("{}/{}", str_of(j, "done"), str_of(j, "total")),
                        u64_of(j, &["counters", "rewrapped"]).to_string(),
                        u64_of(j, &["counters", "skipped"]).to_string(),
                        u64_of(j, &["counters", "failed"]).to_string(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    Output::Rows(
        vec![
            "ID",
            "STATE",
            "BUCKET",
            "PREFIX",
            "DONE/TOTAL",
            "REWRAPPED",
            "SKIPPED",
            "FAILED",
        ],
        rows,
        v,
    )
}

/// The admin API: one HTTP/1.1 request per connection.
struct Api {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    bearer: String,
}

impl Api {
    fn new(endpoint: &str, bearer: String) -> Result<Self, CmdError> {
        let base = endpoint.trim_end_matches('/');
        let authority = base.strip_prefix("http://").ok_or_else(|| {
            format!("--admin-endpoint {endpoint:?}: expected http://host:port (the admin listener)")
        })?;
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("--admin-endpoint {endpoint:?}: expected http://host:port").into());
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Ok(Api {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: base.to_owned(),
            bearer,
        })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CmdError> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {}", self.bearer),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let io = async {
            let resp = self.client.request(request).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, CmdError>((status, body))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(30), io)
            .await
            .map_err(|_| format!("{}: no answer within 30 s", self.base))?
            .map_err(|e| format!("{}: {e}", self.base))?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("HTTP {status}: the answer is not JSON: {e}"))?;
        if !status.is_success() {
            let msg = v["error"].as_str().unwrap_or("unknown error");
            return Err(format!("HTTP {}: {msg}", status.as_u16()).into());
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_paths() {
        assert_eq!(job_path("a b", Some("pause")), "/admin/v1/jobs/a%20b/pause");
        assert!(Api::new("https://x:1", String::new()).is_err());
        assert!(Api::new("http://", String::new()).is_err());
        assert!(Api::new("http://h:1/admin", String::new()).is_err());
        let api = Api::new("http://127.0.0.1:9001/", String::new()).unwrap();
        assert_eq!(api.base, "http://127.0.0.1:9001");
    }
}
