//! `coffer admin reencrypt`: bulk re-encryption jobs through a gateway's admin API
//! (`/admin/v1/jobs`, see `coffer_gateway::jobs_api`), authenticated with
//! `Authorization: Bearer <access key id>:<secret access key>`. The same client serves
//! `coffer admin key rotate --rewrap` (a rotation job, followed like a re-encryption job) and
//! `coffer admin key materials` (`/admin/v1/keys/{key}/materials`).
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
use crate::cli::{AdminArgs, ReencryptCommand, ReencryptStartArgs};

/// Runs `coffer admin reencrypt`.
pub async fn run(admin: &AdminArgs, command: &ReencryptCommand) -> Result<(), CmdError> {
    let api = Api::for_admin(admin)?;
    let job = match command {
        ReencryptCommand::Start(start) => {
            let job = api
                .call("POST", "/admin/v1/jobs/reencrypt", Some(start_body(start)))
                .await?;
            if start.wait {
                return watch_and_report(&api, &str_of(&job, "id"), admin.json).await;
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
        ReencryptCommand::Watch { id } => return watch_and_report(&api, id, admin.json).await,
    };
    print!("{}", render(&job_output(job), admin.json)?);
    Ok(())
}

/// `coffer admin key rotate --rewrap`, after the rotation itself (`rotated`, of key `key_id`):
/// starts the rotation job; unless `!wait`, follows it to the end and adds its summary and the
/// key's materials report. Prints everything (one JSON object with `--json`).
pub(super) async fn rewrap_rotated(
    admin: &AdminArgs,
    rotated: Output,
    key_id: &str,
    buckets: &[String],
    wait: bool,
) -> Result<(), CmdError> {
    let api = Api::for_admin(admin)?;
    let body = json!({ "key": key_id, "buckets": buckets });
    let mut job = api
        .call("POST", "/admin/v1/jobs/rotate", Some(body))
        .await?;
    eprintln!("started rotation job {}", str_of(&job, "id"));
    let mut json = json!({ "Rotation": rotated.json().clone() });
    let mut sections = vec![rotated];
    if wait {
        job = watch(&api, &str_of(&job, "id")).await?;
        let materials = api.call("GET", &materials_path(key_id), None).await?;
        json["Job"] = job.clone();
        json["Materials"] = materials.clone();
        sections.push(job_output(job.clone()));
        sections.push(materials_output(materials));
    } else {
        json["Job"] = job.clone();
        sections.push(job_output(job.clone()));
    }
    print!("{}", render(&Output::Sections(sections, json), admin.json)?);
    job_ended_well(&job)
}

/// `coffer admin key materials KEY`.
pub(super) async fn key_materials(admin: &AdminArgs, key: &str) -> Result<Output, CmdError> {
    let api = Api::for_admin(admin)?;
    Ok(materials_output(
        api.call("GET", &materials_path(key), None).await?,
    ))
}

fn materials_path(key: &str) -> String {
    format!("/admin/v1/keys/{}/materials", escape_segment(key))
}

/// The materials report as VERSION / ENVELOPES / BUCKET KEYS / STATUS (and a row for the
/// envelopes whose material is unknown, if any).
fn materials_output(v: Value) -> Output {
    let current = u64_of(&v, &["CurrentMaterialVersion"]);
    let mut rows: Vec<Vec<String>> = v["Materials"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| {
                    let version = u64_of(m, &["Version"]);
                    let status = if version == current {
                        "current"
                    } else if m["NoLongerNeeded"] == json!(true) {
                        "no longer needed"
                    } else {
                        "in use"
                    };
                    vec![
                        version.to_string(),
                        u64_of(m, &["Envelopes"]).to_string(),
                        u64_of(m, &["BucketKeys"]).to_string(),
                        status.to_owned(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let unknown = u64_of(&v, &["Unknown"]);
    if unknown > 0 {
        rows.push(vec![
            "unknown".into(),
            unknown.to_string(),
            String::new(),
            "in use (not a Coffer keystore blob)".into(),
        ]);
    }
    Output::Rows(
        vec!["VERSION", "ENVELOPES", "BUCKET KEYS", "STATUS"],
        rows,
        v,
    )
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

/// `s` percent-encoded as one path segment (`/` and `:` included).
fn escape_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn job_path(id: &str, action: Option<&str>) -> String {
    let id = escape_segment(id);
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

/// [`watch`], then prints the job's summary.
async fn watch_and_report(api: &Api, id: &str, as_json: bool) -> Result<(), CmdError> {
    eprintln!("following job {id}");
    let job = watch(api, id).await?;
    print!("{}", render(&job_output(job.clone()), as_json)?);
    job_ended_well(&job)
}

/// Follows a job until it is completed, cancelled, failed or paused, drawing a progress bar
/// on stderr; returns it in that state.
async fn watch(api: &Api, id: &str) -> Result<Value, CmdError> {
    let path = job_path(id, None);
    let mut bar = Bar::new();
    loop {
        let job = api.call("GET", &path, None).await?;
        bar.draw(&job);
        if matches!(
            str_of(&job, "state").as_str(),
            "completed" | "cancelled" | "failed" | "paused"
        ) {
            bar.finish();
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// An error for a failed job (the command's exit status), after its summary was printed.
fn job_ended_well(job: &Value) -> Result<(), CmdError> {
    match str_of(job, "state").as_str() {
        "failed" => Err(format!(
            "job {} failed: {}",
            str_of(job, "id"),
            job["error"].as_str().unwrap_or("no reason given")
        )
        .into()),
        _ => Ok(()),
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

/// `reencrypt` or `rotate`: the key of the job's `kind`.
fn job_type(job: &Value) -> String {
    job["kind"]
        .as_object()
        .and_then(|m| m.keys().next().cloned())
        .unwrap_or_default()
}

/// The buckets of a rotation job (`all` when it takes every bucket).
fn rotate_buckets(spec: &Value) -> String {
    let names: Vec<&str> = spec["buckets"]
        .as_array()
        .map(|b| b.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "all".into()
    } else {
        names.join(",")
    }
}

fn on_off(v: &Value) -> String {
    if *v == json!(true) { "on" } else { "off" }.into()
}

/// A job as a FIELD/VALUE table (with the skipped objects' reasons and the first of them).
fn job_output(job: Value) -> Output {
    let kind = job_type(&job);
    let spec = &job["kind"][kind.as_str()];
    let count = |name: &str| u64_of(&job, &["counters", name]).to_string();
    let mut fields = vec![
        ("ID", str_of(&job, "id")),
        ("TYPE", kind.clone()),
        ("STATE", str_of(&job, "state")),
    ];
    if kind == "rotate" {
        fields.extend([
            ("KEY", str_of(spec, "key_arn")),
            ("TO MATERIAL", str_of(spec, "material_version")),
            ("BUCKETS", rotate_buckets(spec)),
        ]);
    } else {
        let source = match &spec["source"] {
            Value::String(s) => s.replace('_', "-"),
            Value::Object(m) => match m.get("sse_kms") {
                Some(Value::String(arn)) => format!("sse-kms:{arn}"),
                _ => "sse-kms".into(),
            },
            _ => String::new(),
        };
        let versions = if spec["all_versions"] == json!(true) {
            "all"
        } else {
            "current"
        };
        fields.extend([
            ("BUCKET", str_of(spec, "bucket")),
            ("PREFIX", str_of(spec, "prefix")),
            ("SOURCE", source),
            ("VERSIONS", versions.into()),
            ("TARGET KEY", str_of(spec, "target_key_arn")),
            ("BUCKET KEY", on_off(&spec["bucket_key_enabled"])),
        ]);
    }
    fields.extend([
        ("TOTAL", str_of(&job, "total")),
        ("DONE", str_of(&job, "done")),
        ("REWRAPPED", count("rewrapped")),
    ]);
    if kind == "rotate" {
        fields.extend([
            ("VIA BUCKET KEY", count("via_bucket_key")),
            ("BUCKET KEYS REWRAPPED", count("bucket_keys_rewrapped")),
        ]);
    }
    let reasons: Vec<String> = job["skipped_by_reason"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    fields.extend([
        ("ALREADY DONE", count("already_done")),
        ("SKIPPED", count("skipped")),
        ("FAILED", count("failed")),
        ("SKIP REASONS", reasons.join(" ")),
    ]);
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

/// The jobs as rows; a rotation job shows its buckets (or `all`) under BUCKET.
fn list_output(v: Value) -> Output {
    let rows = v["jobs"]
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .map(|j| {
                    let kind = job_type(j);
                    let spec = &j["kind"][kind.as_str()];
                    let bucket = if kind == "rotate" {
                        rotate_buckets(spec)
                    } else {
                        str_of(spec, "bucket")
                    };
                    vec![
                        str_of(j, "id"),
                        kind.clone(),
                        str_of(j, "state"),
                        bucket,
                        str_of(spec, "prefix"),
                        format!("{}/{}", str_of(j, "done"), str_of(j, "total")),
                        u64_of(j, &["counters", "rewrapped"]).to_string(),
                        u64_of(j, &["counters", "via_bucket_key"]).to_string(),
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
            "TYPE",
            "STATE",
            "BUCKET",
            "PREFIX",
            "DONE/TOTAL",
            "REWRAPPED",
            "VIA BUCKET KEY",
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
    /// The client of `--admin-endpoint`, with the key pair [`credentials`] finds.
    fn for_admin(admin: &AdminArgs) -> Result<Self, CmdError> {
        let creds = credentials(admin)?;
        Api::new(
            &admin.admin_endpoint,
            format!("{}:{}", creds.access_key_id, creds.secret_access_key),
        )
    }

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
        assert_eq!(
            materials_path("alias/x"),
            "/admin/v1/keys/alias%2Fx/materials"
        );
        assert!(Api::new("https://x:1", String::new()).is_err());
        assert!(Api::new("http://", String::new()).is_err());
        assert!(Api::new("http://h:1/admin", String::new()).is_err());
        let api = Api::new("http://127.0.0.1:9001/", String::new()).unwrap();
        assert_eq!(api.base, "http://127.0.0.1:9001");
    }

    #[test]
    fn rotate_jobs_and_materials_render() {
        let job = json!({
            "id": "rot-1", "type": "rotate", "state": "completed", "total": 7, "done": 7,
            "kind": {"rotate": {"key_arn": "arn:k", "material_version": 2, "buckets": []}},
            "counters": {"rewrapped": 3, "via_bucket_key": 4, "bucket_keys_rewrapped": 1,
                         "already_done": 0, "skipped": 0, "failed": 0},
        });
        let text = render(&job_output(job.clone()), false).unwrap();
        for line in [
            "TYPE                   rotate",
            "KEY                    arn:k",
            "TO MATERIAL            2",
            "BUCKETS                all",
            "REWRAPPED              3",
            "VIA BUCKET KEY         4",
            "BUCKET KEYS REWRAPPED  1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in\n{text}");
        }
        let list = render(&list_output(json!({ "jobs": [job] })), false).unwrap();
        let row: Vec<&str> = list.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            row,
            [
                "rot-1",
                "rotate",
                "completed",
                "all",
                "-",
                "7/7",
                "3",
                "4",
                "0",
                "0"
            ]
        );

        let report = json!({
            "KeyArn": "arn:k", "CurrentMaterialVersion": 3, "Unknown": 2,
            "Materials": [
                {"Version": 1, "Envelopes": 0, "BucketKeys": 0, "NoLongerNeeded": true},
                {"Version": 2, "Envelopes": 5, "BucketKeys": 1, "NoLongerNeeded": false},
                {"Version": 3, "Envelopes": 1, "BucketKeys": 0, "NoLongerNeeded": false},
            ],
        });
        assert_eq!(
            render(&materials_output(report), false).unwrap(),
            "VERSION  ENVELOPES  BUCKET KEYS  STATUS\n\
             1        0          0            no longer needed\n\
             2        5          1            in use\n\
             3        1          0            current\n\
             unknown  2          -            in use (not a Coffer keystore blob)\n"
        );
    }
}
